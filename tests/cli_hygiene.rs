//! The command line behaves in a pipeline and explains itself: a reader
//! that stops early (`| head`) ends the command quietly, every `--help`
//! documents every option, and errors name the file, user or folder.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mailvault::formats::cyrus_index::{write_index, IndexHeader, IndexRecord};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn mailvault(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailvault"))
        .current_dir(repo())
        .args(args)
        .output()
        .expect("run mailvault")
}

/// An index far bigger than a pipe's buffer once printed as a table.
fn big_index(dir: &Path) -> PathBuf {
    let header = IndexHeader {
        minor_version: 17,
        uidvalidity: 1,
        last_uid: 5000,
        ..IndexHeader::default()
    };
    let records: Vec<IndexRecord> = (1..=5000)
        .map(|uid| IndexRecord {
            uid,
            size: 100,
            ..IndexRecord::default()
        })
        .collect();
    let path = dir.join("cyrus.index");
    std::fs::write(&path, write_index(&header, &records).unwrap()).unwrap();
    path
}

#[test]
fn a_reader_that_closes_after_one_line_ends_the_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let index = big_index(tmp.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailvault"))
        .args(["inspect", "cyrus-index"])
        .arg(&index)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("minor version 17"), "{first:?}");
    // The reader is gone; the command still has ~400 KB to write.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert!(stderr.is_empty(), "nothing to say: {stderr}");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn every_help_documents_every_option_and_argument() {
    let commands: &[&[&str]] = &[
        &[],
        &["agent"],
        &["backup"],
        &["inspect"],
        &["inspect", "cyrus-index"],
        &["inspect", "cyrus-header"],
        &["inspect", "mailboxes-db"],
        &["report"],
        &["rebuild-state"],
        &["verify"],
        &["ls"],
        &["cat"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = mailvault(&args);
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains("Usage: mailvault"), "{args:?}: {help}");
        // clap prints an undocumented option or argument as a bare line.
        for line in help.lines() {
            let item = line.trim();
            let bare = (item.starts_with('-') || item.starts_with('<'))
                && !item.contains("  ")
                && line.starts_with("  ")
                && !help.contains(&format!("{item}\n          "));
            assert!(!bare, "{args:?}: {item:?} has no description\n{help}");
        }
    }
}

fn failure(args: &[&str]) -> String {
    let out = mailvault(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn errors_name_the_file_the_user_and_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere/cyrus.index");
    let stderr = failure(&["inspect", "cyrus-index", missing.to_str().unwrap()]);
    assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");

    let stores = tmp.path().join("stores");
    let stores = stores.to_str().unwrap();
    let backup = |user: &str| {
        mailvault(&[
            "backup",
            "--spool-conf",
            "sample/cyrus-3.6/imapd.conf",
            "--servername",
            "mvlab",
            "--store-root",
            stores,
            "--json",
            user,
        ])
    };
    let out = backup("../nobody");
    assert_eq!(out.status.code(), Some(1));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = summary["users"][0]["errors"][0].as_str().unwrap();
    assert!(error.contains("../nobody"), "{error}");

    assert!(backup("user2").status.success());
    let store = format!("{stores}/user2");
    let stderr = failure(&["ls", "--store", &store, "INBOX.Nowhere"]);
    assert!(stderr.contains("INBOX.Nowhere"), "{stderr}");
}
