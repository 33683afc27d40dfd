//! `mailvault inspect` on real Cyrus files: what people and scripts see.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> Option<PathBuf> {
    common::shared_fixtures()
}

fn mailvault(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailvault"))
        .args(args)
        .output()
        .expect("run mailvault")
}

#[test]
fn inspect_cyrus_index_json_has_every_record_with_flag_names() {
    let Some(fx) = fixtures() else { return };
    let index = fx.join("spool-3.13/INBOX/cyrus.index");
    let out = mailvault(&["inspect", "cyrus-index", "--json", index.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["header"]["minor_version"], 20);
    assert_eq!(v["header"]["uidvalidity"], 1795660353u64);
    let records = v["records"].as_array().unwrap();
    assert_eq!(records.len(), 7);
    assert_eq!(records[3]["uid"], 4);
    assert_eq!(
        records[3]["guid"],
        "3e68b369b282049023bac92c8cbf2ca2f79d8bfc"
    );
    let flags: Vec<&str> = records[3]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(flags, ["\\Seen", "$Label1", "$Important"]);
    let expunged: Vec<&str> = records[4]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(expunged.contains(&"[EXPUNGED]"), "{expunged:?}");
}

#[test]
fn inspect_cyrus_header_prints_the_uniqueid_and_flags() {
    let Some(fx) = fixtures() else { return };
    let header = fx.join("spool-3.13/INBOX/cyrus.header");
    let out = mailvault(&["inspect", "cyrus-header", header.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("uniqueid   56f0f8a8-6f74-4ae9-a1d8-b4be690984d7"),
        "{text}"
    );
    assert!(text.contains("user flags $Label1 $Important"), "{text}");
}

#[test]
fn a_file_that_is_not_an_index_is_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("cyrus.index");
    std::fs::write(&bogus, b"this is not an index, it is a sentence of text").unwrap();
    let out = mailvault(&["inspect", "cyrus-index", bogus.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(bogus.to_str().unwrap()) && err.contains("unknown minor version"),
        "{err}"
    );
}
