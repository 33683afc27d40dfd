//! The store's command line, run as a user would run it (the built binary),
//! on copies of the Perl-written stores (`perl-store/`, EXPECTED.md) and on
//! stores written here by `UserStore`: `ls` (now and `--at`), `cat`,
//! `verify` (intact and damaged), `rebuild-state`, and that the read
//! commands never write.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mailvault::formats::cyrus_header::{CyrusHeader, HeaderForm};
use mailvault::formats::cyrus_index::{write_index, IndexHeader, IndexRecord, Timestamp};
use mailvault::formats::Guid;
use mailvault::store::{FileMeta, StoreOptions, UserStore};
use rusqlite::Connection;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mailvault");

fn perl_root() -> Option<PathBuf> {
    let p = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/perl-store"
    ));
    p.is_dir().then(|| p.to_path_buf())
}

fn skipped(test: &str) {
    let line = format!("SKIPPED (../shared/fixtures absent): {test}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// A writable flat copy of a Perl store: the state and the data file itself
/// (the metadir only holds a link to it).
fn perl_copy(root: &Path, variant: &str, user: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let meta = root.join(variant).join("meta").join(user);
    let data = root.join(variant).join("data").join(user);
    for dir in [&meta, &data] {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name();
            let is_link_stub = dir == &meta && name.to_string_lossy().starts_with("backupdata-");
            if is_link_stub {
                continue;
            }
            let to = tmp.path().join(&name);
            std::fs::copy(e.path(), &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    tmp
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(args: &[&str]) -> Value {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn ls(store: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["ls", "--store", store.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    json(&args)
}

/// name → (uniqueid, state) of `ls --json`.
fn folders(v: &Value) -> BTreeMap<String, (String, String)> {
    v["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                (
                    f["uniqueid"].as_str().unwrap().to_string(),
                    f["state"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// uid → (guid, flags as a set) of `ls FOLDER --json`.
fn messages(v: &Value) -> BTreeMap<u64, (String, BTreeSet<String>)> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let flags = m["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_string())
                .collect();
            (
                m["uid"].as_u64().unwrap(),
                (m["guid"].as_str().unwrap().to_string(), flags),
            )
        })
        .collect()
}

fn flags(s: &str) -> BTreeSet<String> {
    s.split_whitespace()
        .filter(|f| *f != "-")
        .map(String::from)
        .collect()
}

const ALICE_INBOX: [(u64, &str, &str); 7] = [
    (1, "b7ed6e137fcf82ff937612f65d33d19029b20aeb", "\\Seen"),
    (2, "2dfa045bcc8aaf68fcd5dd6d814f5553d65b9387", "\\Flagged"),
    (
        3,
        "b09d73556ed1765890a48f88342d771a2a667739",
        "\\Answered \\Seen",
    ),
    (
        4,
        "3e68b369b282049023bac92c8cbf2ca2f79d8bfc",
        "\\Seen $Important $Label1",
    ),
    (
        5,
        "dce8cfc50eb1ab6e1c46a9159a806bb53cd697cb",
        "\\Deleted \\Seen [EXPUNGED]",
    ),
    (6, "387dc38441b5932b3b1822f30f95d2ef3802547e", "\\Draft"),
    (7, "3a885c12a4f4382e845e6c7a3cb0f5d643111899", "-"),
];

fn expected(rows: &[(u64, &str, &str)]) -> BTreeMap<u64, (String, BTreeSet<String>)> {
    rows.iter()
        .map(|(u, g, f)| (*u, (g.to_string(), flags(f))))
        .collect()
}

#[test]
fn ls_of_the_perl_stores_equals_expected_md() {
    let Some(root) = perl_root() else {
        return skipped("ls_of_the_perl_stores_equals_expected_md");
    };
    for variant in ["plain", "gz"] {
        let alice = root.join(variant).join("meta/alice");
        let f = folders(&ls(&alice, &[]));
        let live: BTreeMap<&str, &str> = f
            .iter()
            .filter(|(_, (_, s))| s == "live")
            .map(|(n, (u, _))| (n.as_str(), u.as_str()))
            .collect();
        assert_eq!(
            live,
            BTreeMap::from([
                ("INBOX", "56f0f8a8-6f74-4ae9-a1d8-b4be690984d7"),
                ("INBOX.Archive", "3fb2c040-02ac-45f5-b4ac-bad0bd4ad9b2"),
                ("INBOX.Sent", "f312de12-6930-4832-8ba5-4d359c9ccc3d"),
                ("INBOX.Work", "34d30f17-2781-4529-9c8b-d49e49fefcc6"),
                ("INBOX.a", "450bd824-866e-40aa-ac02-396e2b359d68"),
                ("INBOX.a.b", "d7cbff9c-469e-4fb0-b649-49e7592bde62"),
                (
                    "DELETED.user.alice.Junk.6B079A55",
                    "1df0a254-296f-4c8e-b889-de06b9424586"
                ),
            ]),
            "{variant}"
        );
        assert_eq!(f["INBOX.Old"].1, "deleted");
        assert_eq!(f["INBOX.Junk"].1, "deleted");

        let inbox = ls(&alice, &["INBOX"]);
        assert_eq!(messages(&inbox), expected(&ALICE_INBOX), "{variant}");
        let m1 = &inbox["messages"][0];
        assert_eq!(m1["from"], "Sender A1 <a1@senders.example>");
        assert_eq!(m1["subject"], "fixture A1 for alice");
        assert_eq!(m1["internaldate"], "2025-01-02T08:15:00Z");
        assert_eq!(m1["size"], 1206);

        let ab = messages(&ls(&alice, &["INBOX.a.b"]));
        assert_eq!(
            ab,
            expected(&[
                (1, "a7bb7ebc843ea1b28cb8aff695f6152461687cf1", "\\Flagged"),
                (
                    2,
                    "2dfa045bcc8aaf68fcd5dd6d814f5553d65b9387",
                    "\\Flagged \\Seen"
                ),
            ])
        );
        let work = messages(&ls(&alice, &["INBOX.Work"]));
        assert_eq!(
            work,
            expected(&[
                (1, "b7ed6e137fcf82ff937612f65d33d19029b20aeb", "-"),
                (
                    2,
                    "b09d73556ed1765890a48f88342d771a2a667739",
                    "\\Answered \\Seen"
                ),
                (3, "0ddae4f8dbb6a8de3792a788e8051f6d46b30c6c", "-"),
                (4, "06a53ee337d79844d221c39b104b787e00bf0a40", "\\Seen"),
            ])
        );

        let bob = root.join(variant).join("meta/bob");
        let trips = messages(&ls(&bob, &["INBOX.Trips 2024"]));
        assert_eq!(
            trips,
            expected(&[
                (1, "499255c5b2c1d79cae2a0d86bd797a3140bde140", "\\Flagged"),
                (2, "b944dadd3f5f1a948393d43281158aa42b327dd7", "-"),
            ])
        );
        let bob_inbox = messages(&ls(&bob, &["INBOX"]));
        assert_eq!(bob_inbox[&3].1, flags("$Label2"));

        let carol = root.join(variant).join("meta/carol.smith");
        let f = folders(&ls(&carol, &[]));
        assert_eq!(
            f.keys().collect::<Vec<_>>(),
            ["INBOX", "INBOX.Notes", "INBOX.Notes.2025"]
        );
    }
}

#[test]
fn ls_at_a_time_between_run_1_and_run_2_shows_run_1() {
    let Some(root) = perl_root() else {
        return skipped("ls_at_a_time_between_run_1_and_run_2_shows_run_1");
    };
    // Run 1 linked at 1795660355, run 2 at 1795660374.
    for variant in ["plain", "gz"] {
        let alice = root.join(variant).join("meta/alice");
        for at in [
            "1795660360",
            "2026-11-26T02:32:40Z",
            "2026-11-26T03:32:40+01:00",
        ] {
            let f = folders(&ls(&alice, &["--at", at]));
            assert_eq!(
                f.keys().collect::<Vec<_>>(),
                [
                    "INBOX",
                    "INBOX.Junk",
                    "INBOX.Old",
                    "INBOX.Sent",
                    "INBOX.Work",
                    "INBOX.a",
                    "INBOX.a.b"
                ],
                "{variant} at {at}"
            );
            assert_eq!(f["INBOX.Old"].0, "3fb2c040-02ac-45f5-b4ac-bad0bd4ad9b2");
        }
        let ab = messages(&ls(&alice, &["--at", "1795660360", "INBOX.a.b"]));
        assert_eq!(
            ab,
            expected(&[
                (1, "a7bb7ebc843ea1b28cb8aff695f6152461687cf1", "\\Flagged"),
                (2, "2dfa045bcc8aaf68fcd5dd6d814f5553d65b9387", "\\Flagged"),
            ])
        );
        let inbox = messages(&ls(&alice, &["--at", "1795660360", "INBOX"]));
        assert_eq!(inbox, expected(&ALICE_INBOX[..6]));
        let old = messages(&ls(&alice, &["--at", "1795660360", "INBOX.Old"]));
        assert_eq!(old.len(), 2);
        let o = run(&[
            "ls",
            "--store",
            alice.to_str().unwrap(),
            "--at",
            "1795660360",
            "INBOX.Archive",
        ]);
        assert!(!o.status.success(), "INBOX.Archive did not exist yet");
        let now = folders(&ls(&alice, &["--at", "1795660400"]));
        assert!(now.contains_key("INBOX.Archive") && !now.contains_key("INBOX.Old"));
        assert!(folders(&ls(&alice, &["--at", "1795660000"])).is_empty());
    }
}

#[test]
fn cat_writes_bytes_whose_sha1_is_the_guid() {
    let Some(root) = perl_root() else {
        return skipped("cat_writes_bytes_whose_sha1_is_the_guid");
    };
    for variant in ["plain", "gz"] {
        let alice = root.join(variant).join("meta/alice");
        for (_, guid, _) in ALICE_INBOX {
            let o = run(&["cat", "--store", alice.to_str().unwrap(), guid]);
            assert!(o.status.success());
            assert_eq!(Guid::of(&o.stdout).to_hex(), guid);
        }
        let missing = "0000000000000000000000000000000000000000";
        let o = run(&["cat", "--store", alice.to_str().unwrap(), missing]);
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("not in the store"));
        assert!(o.stdout.is_empty());
    }
}

fn verify(store: &Path, full: bool) -> (i32, Value) {
    let mut args = vec!["verify", "--store", store.to_str().unwrap(), "--json"];
    if full {
        args.push("--full");
    }
    let o = run(&args);
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.code().unwrap(), v)
}

fn problems(v: &Value) -> String {
    v["problems"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| format!("{}: {}\n", p["place"], p["problem"]))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn verify_passes_on_every_intact_perl_store() {
    let Some(root) = perl_root() else {
        return skipped("verify_passes_on_every_intact_perl_store");
    };
    for variant in ["plain", "gz", "after-run1/plain", "after-run1/gz"] {
        for user in ["alice", "bob", "carol.smith"] {
            let dir = root.join(variant).join("meta").join(user);
            for full in [false, true] {
                let (code, v) = verify(&dir, full);
                assert_eq!(code, 0, "{variant}/{user}: {}", problems(&v));
                assert_eq!(v["ok"], true);
                assert!(v["entries"].as_u64().unwrap() > 10);
            }
        }
    }
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
}

fn data_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("backupdata-")
        })
        .unwrap()
}

#[test]
fn verify_names_a_damaged_gzip_member_of_a_perl_store() {
    let Some(root) = perl_root() else {
        return skipped("verify_names_a_damaged_gzip_member_of_a_perl_store");
    };
    let copy = perl_copy(&root, "gz", "alice");
    assert_eq!(verify(copy.path(), false).0, 0);
    let data = data_file(copy.path());
    // Run 2's member starts at 9006 (the run-1 file size); hit run 1's.
    flip_byte(&data, 4000);
    let (code, v) = verify(copy.path(), false);
    assert_eq!(code, 1);
    let text = problems(&v);
    assert!(text.contains(&data.display().to_string()), "{text}");
}

#[test]
fn verify_names_a_truncated_tar_and_an_overwritten_message() {
    let Some(root) = perl_root() else {
        return skipped("verify_names_a_truncated_tar_and_an_overwritten_message");
    };
    let copy = perl_copy(&root, "plain", "alice");
    let data = data_file(copy.path());
    // files/2dfa045b… has its header at 3072, its body at 3584.
    flip_byte(&data, 3584 + 100);
    let (code, v) = verify(copy.path(), false);
    assert_eq!(
        code,
        0,
        "a quick check reads headers only: {}",
        problems(&v)
    );
    let (code, v) = verify(copy.path(), true);
    assert_eq!(code, 1);
    let text = problems(&v);
    assert!(
        text.contains("files/2dfa045bcc8aaf68fcd5dd6d814f5553d65b9387 at 3072"),
        "{text}"
    );

    let copy = perl_copy(&root, "plain", "alice");
    let data = data_file(copy.path());
    let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    f.set_len(60_000).unwrap();
    let (code, v) = verify(copy.path(), false);
    assert_eq!(code, 1);
    let text = problems(&v);
    assert!(text.contains("truncated"), "{text}");
    // The message cut in the middle is named, and so are the rows that
    // point past the cut.
    assert!(
        text.contains("after files/3a885c12a4f4382e845e6c7a3cb0f5d643111899 at 58368"),
        "{text}"
    );
    assert!(
        text.contains("fmeta row 56f0f8a8-6f74-4ae9-a1d8-b4be690984d7/cyrus.index"),
        "{text}"
    );
    assert!(text.contains("imap row INBOX.Archive"), "{text}");
}

#[test]
fn verify_reports_foreign_files_and_cannot_run_without_a_store() {
    let Some(root) = perl_root() else {
        return skipped("verify_reports_foreign_files_and_cannot_run_without_a_store");
    };
    let copy = perl_copy(&root, "plain", "bob");
    std::fs::write(copy.path().join("notes.txt"), b"hello").unwrap();
    let (code, v) = verify(copy.path(), false);
    assert_eq!(code, 1);
    assert!(problems(&v).contains("notes.txt"), "{}", problems(&v));
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(verify(empty.path(), false).0, 2);
}

fn v5_tables(path: &Path) -> Vec<Vec<String>> {
    let conn = Connection::open(path).unwrap();
    [
        "status", "imap", "folders", "files", "indexed", "meta", "fmeta",
    ]
    .iter()
    .map(|t| {
        let mut st = conn
            .prepare(&format!("SELECT * FROM {t} ORDER BY 1, 2"))
            .unwrap();
        let n = st.column_count();
        let rows = st
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get::<_, rusqlite::types::Value>(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    })
    .collect()
}

#[test]
fn rebuild_state_refuses_to_overwrite_and_with_force_gives_the_perl_tables() {
    let Some(root) = perl_root() else {
        return skipped("rebuild_state_refuses_to_overwrite_and_with_force_gives_the_perl_tables");
    };
    for variant in ["plain", "gz"] {
        for user in ["alice", "bob"] {
            let copy = perl_copy(&root, variant, user);
            let state = copy.path().join("backupstate.sqlite3");
            let before = std::fs::read(&state).unwrap();
            let dir = copy.path().to_str().unwrap();
            let o = run(&["rebuild-state", "--store", dir]);
            assert!(!o.status.success());
            assert!(String::from_utf8_lossy(&o.stderr).contains("refuses to overwrite"));
            assert_eq!(std::fs::read(&state).unwrap(), before);

            let o = run(&["rebuild-state", "--store", dir, "--force"]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let perl = root
                .join(variant)
                .join("meta")
                .join(user)
                .join("backupstate.sqlite3");
            let mut want = v5_tables(&perl);
            let mut got = v5_tables(&state);
            // status.mtime is the data file's mtime, which the copy changed.
            want[0].clear();
            got[0].clear();
            assert_eq!(got, want, "{variant}/{user}");
            assert_eq!(verify(copy.path(), true).0, 0);
            let o = Command::new(BIN)
                .args(["ls", "--store", dir])
                .output()
                .unwrap();
            assert!(stdout(&o).contains("INBOX"));
        }
    }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.insert(p.clone(), std::fs::read(&p).unwrap());
    }
    out
}

fn set_mode_recursively(dir: &Path, file: u32, directory: u32) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(file)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(directory)).unwrap();
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs the binary as `nobody` when we are root (root ignores modes).
fn run_unprivileged(args: &[&str]) -> Output {
    if is_root() && Path::new("/usr/bin/setpriv").exists() {
        let mut full = vec!["--reuid=nobody", "--regid=nogroup", "--clear-groups", BIN];
        full.extend_from_slice(args);
        return Command::new("/usr/bin/setpriv")
            .args(full)
            .output()
            .unwrap();
    }
    run(args)
}

#[test]
fn ls_cat_and_verify_work_on_a_read_only_copy_and_change_nothing() {
    let Some(root) = perl_root() else {
        return skipped("ls_cat_and_verify_work_on_a_read_only_copy_and_change_nothing");
    };
    for variant in ["plain", "gz"] {
        let outer = tempfile::tempdir().unwrap();
        std::fs::set_permissions(outer.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = perl_copy(&root, variant, "alice");
        let dir = outer.path().join("alice");
        std::fs::create_dir(&dir).unwrap();
        for (p, bytes) in snapshot(copy.path()) {
            std::fs::write(dir.join(p.file_name().unwrap()), bytes).unwrap();
        }
        set_mode_recursively(&dir, 0o444, 0o555);
        let before = snapshot(&dir);
        let d = dir.to_str().unwrap();
        let guid = ALICE_INBOX[3].1;
        for args in [
            vec!["ls", "--store", d],
            vec!["ls", "--store", d, "INBOX", "--json"],
            vec!["ls", "--store", d, "--at", "1795660360", "INBOX.Old"],
            vec!["cat", "--store", d, guid],
            vec!["verify", "--store", d, "--full"],
        ] {
            let o = run_unprivileged(&args);
            assert!(
                o.status.success(),
                "{variant} {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            if args[0] == "cat" {
                assert_eq!(Guid::of(&o.stdout).to_hex(), guid);
            }
        }
        assert_eq!(
            snapshot(&dir),
            before,
            "{variant}: files changed or appeared"
        );
        set_mode_recursively(&dir, 0o644, 0o755);
    }
}

// ---- stores written here by UserStore ----

const T1: u64 = 1_800_000_000;
const T2: u64 = 1_800_003_600;

fn message(n: u32) -> Vec<u8> {
    let subject = if n == 1 {
        "=?UTF-8?B?w6l0w6kgMjAyNA==?= =?ISO-8859-1?Q?_r=E9sum=E9?=".to_string()
    } else {
        format!("message {n}")
    };
    format!(
        "From: Sender {n} <s{n}@example.net>\r\nSubject: {subject}\r\n\
         Date: Mon, 6 Jan 2025 10:00:{:02} +0000\r\n\r\n{}\r\n",
        n % 60,
        format!("line {n} of the body\r\n").repeat(40 + n as usize * 7)
    )
    .into_bytes()
}

fn header_bytes(uniqueid: &str) -> Vec<u8> {
    CyrusHeader {
        mailbox_type: Some("e".into()),
        name: Some(format!("user.dave.{uniqueid}")),
        uniqueid: uniqueid.into(),
        jmapid: None,
        quotaroot: Some("user.dave".into()),
        acl: vec![("dave".into(), "lrswipkxtecdan".into())],
        user_flags: vec![Some("$Label1".into()), Some("$Important".into())],
        form: HeaderForm::Dlist,
    }
    .to_bytes(HeaderForm::Dlist)
}

/// A v20 index of `(uid, message number, system flags, user flags)`.
fn index_bytes(records: &[Rec], time: u64) -> Vec<u8> {
    let header = IndexHeader {
        minor_version: 20,
        last_uid: records.last().map_or(0, |r| r.0),
        ..Default::default()
    };
    let recs: Vec<IndexRecord> = records
        .iter()
        .map(|&(uid, n, sys, user)| {
            let body = message(n);
            IndexRecord {
                uid,
                internaldate: Timestamp::from_secs(time - 100 + u64::from(uid)),
                size: body.len() as u64,
                system_flags: sys,
                user_flags: [user, 0, 0, 0],
                guid: Guid::of(&body),
                ..Default::default()
            }
        })
        .collect();
    write_index(&header, &recs).unwrap()
}

/// `(uid, message number, system flags, user flags)` of one index record.
type Rec = (u32, u32, u32, u32);

/// One run: messages, then per folder index, header, link.
fn backup_run(
    store: &mut UserStore,
    time: u64,
    folders: &[(&str, &str, Vec<Rec>)],
    renamed_away: &[&str],
) {
    let mut tx = store.begin(time).unwrap();
    for name in renamed_away {
        tx.mark_deleted(name).unwrap();
    }
    for (name, uniqueid, records) in folders {
        for &(_, n, _, _) in records {
            let body = message(n);
            let meta = FileMeta::new(body.len() as u64, time, u64::from(n));
            tx.add_message(&Guid::of(&body), &meta, &body[..]).unwrap();
        }
        let index = index_bytes(records, time);
        let pairs: Vec<(u32, Guid)> = records
            .iter()
            .map(|&(uid, n, _, _)| (uid, Guid::of(&message(n))))
            .collect();
        tx.set_indexed(uniqueid, &pairs).unwrap();
        let meta = FileMeta::new(index.len() as u64, time, 1);
        tx.add_folder_file(uniqueid, "index", &meta, &Guid::of(&index), &index[..])
            .unwrap();
        let header = header_bytes(uniqueid);
        let meta = FileMeta::new(header.len() as u64, time, 2);
        tx.add_folder_file(uniqueid, "header", &meta, &Guid::of(&header), &header[..])
            .unwrap();
        if tx.store().folder_for_name(name).unwrap().as_deref() != Some(*uniqueid) {
            tx.link(name, uniqueid).unwrap();
        }
    }
    tx.commit().unwrap();
}

const SEEN: u32 = 1 << 4;
const FLAGGED: u32 = 1 << 1;

/// Two runs like the Perl fixtures': a rename and a flag change between.
fn our_store(compress: bool) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        compress,
        member_bound: 16 * 1024,
        ..StoreOptions::default()
    };
    let mut store = UserStore::open(tmp.path(), opts).unwrap();
    let inbox: Vec<_> = (1..=30).map(|n| (n, n, SEEN, 0)).collect();
    let mut old = vec![(1, 40, 0, 0b11), (2, 41, FLAGGED, 0)];
    backup_run(
        &mut store,
        T1,
        &[
            ("INBOX", "u-inbox", inbox.clone()),
            ("INBOX.Old", "u-old", old.clone()),
        ],
        &[],
    );
    old[1].2 |= SEEN;
    backup_run(
        &mut store,
        T2,
        &[("INBOX", "u-inbox", inbox), ("INBOX.Archive", "u-old", old)],
        &["INBOX.Old"],
    );
    tmp
}

#[test]
fn ls_and_cat_on_our_own_stores_now_and_at_run_1() {
    for compress in [false, true] {
        let tmp = our_store(compress);
        let dir = tmp.path();
        let f = folders(&ls(dir, &[]));
        assert_eq!(
            f["INBOX.Archive"],
            ("u-old".to_string(), "live".to_string())
        );
        assert_eq!(f["INBOX.Old"].1, "deleted");

        let inbox = ls(dir, &["INBOX"]);
        let m = &inbox["messages"][0];
        assert_eq!(m["subject"], "été 2024 résumé");
        assert_eq!(m["from"], "Sender 1 <s1@example.net>");
        assert_eq!(m["date"], "Mon, 6 Jan 2025 10:00:01 +0000");
        assert_eq!(inbox["messages"].as_array().unwrap().len(), 30);
        for m in inbox["messages"].as_array().unwrap() {
            let n = m["uid"].as_u64().unwrap() as u32;
            assert_eq!(m["guid"].as_str().unwrap(), Guid::of(&message(n)).to_hex());
            assert_eq!(m["subject"].as_str().unwrap() == "été 2024 résumé", n == 1);
        }

        let archive = messages(&ls(dir, &["INBOX.Archive"]));
        assert_eq!(archive[&1].1, flags("$Label1 $Important"));
        assert_eq!(archive[&2].1, flags("\\Flagged \\Seen"));

        let at = (T1 + 10).to_string();
        let then = folders(&ls(dir, &["--at", &at]));
        assert_eq!(then.keys().collect::<Vec<_>>(), ["INBOX", "INBOX.Old"]);
        let old = messages(&ls(dir, &["--at", &at, "INBOX.Old"]));
        assert_eq!(old[&2].1, flags("\\Flagged"));

        let guid = Guid::of(&message(17)).to_hex();
        let o = run(&["cat", "--store", dir.to_str().unwrap(), &guid]);
        assert!(o.status.success());
        assert_eq!(o.stdout, message(17));
        assert_eq!(verify(dir, true).0, 0, "{}", problems(&verify(dir, true).1));
    }
}

#[test]
fn verify_names_the_damaged_member_of_our_store() {
    let tmp = our_store(true);
    let dir = tmp.path();
    let conn = Connection::open(dir.join("backupstate.sqlite3")).unwrap();
    let members: Vec<(i64, i64)> = conn
        .prepare("SELECT coffset, clength FROM mv_members ORDER BY coffset")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(conn);
    assert!(members.len() >= 3, "{members:?}");
    let (coffset, clength) = members[1];
    flip_byte(&data_file(dir), (coffset + clength / 2) as u64);
    let (code, v) = verify(dir, false);
    assert_eq!(code, 1);
    let text = problems(&v);
    assert!(
        text.contains(&format!(
            "member at {coffset}\": \"compressed bytes do not match"
        )),
        "{text}"
    );
    let others = members.iter().filter(|(c, _)| *c != coffset);
    for (c, _) in others {
        assert!(!text.contains(&format!("member at {c}\"")), "{text}");
    }
}
