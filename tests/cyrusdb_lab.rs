//! The three readers against databases written by a running Cyrus, checked
//! against Cyrus's own tools (`cyr_dbtool … show`, `ctl_mboxlist -d`).
//!
//! Needs `MAILVAULT_LAB` (a lab laid out like `/tmp/explore/cyrus`) and
//! `CYRUS_BIN` (default `/usr/lib/cyrus/bin`). The Cyrus tools run as user
//! cyrus through `setpriv`, since CI runs as root.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use mailvault::formats::cyrusdb::{Backend, CyrusDb};

struct Lab {
    root: PathBuf,
    bin: PathBuf,
}

impl Lab {
    /// The lab, or `None` after saying why the test is skipped.
    fn find(test: &str) -> Option<Lab> {
        let root = common::lab_for(test, "MAILVAULT_LAB")?;
        let bin = std::env::var_os("CYRUS_BIN").unwrap_or_else(|| "/usr/lib/cyrus/bin".into());
        Some(Lab {
            root,
            bin: bin.into(),
        })
    }

    fn conf(&self) -> PathBuf {
        self.root.join("etc/imapd.conf")
    }

    /// Runs a Cyrus tool as user cyrus and returns its stdout.
    fn run(&self, tool: &str, args: &[&str]) -> Vec<u8> {
        let out = Command::new("setpriv")
            .args(["--reuid=cyrus", "--regid=mail", "--init-groups"])
            .arg(self.bin.join(tool))
            .arg("-C")
            .arg(self.conf())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A scratch directory the cyrus user can write into, holding a copy of
    /// mailboxes.db (never the live file).
    fn scratch_copy(&self) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("mailboxes.db");
        std::fs::copy(self.root.join("lib/mailboxes.db"), &copy).unwrap();
        chown_to_cyrus(dir.path());
        chown_to_cyrus(&copy);
        (dir, copy)
    }

    fn convert(&self, from: &Path, to: &Path, backend: &str) {
        self.run("cvt_cyrusdb", &[s(from), "twoskip", s(to), backend]);
    }

    /// `cyr_dbtool <file> <backend> show`, split into records.
    fn show(&self, file: &Path, backend: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let out = self.run("cyr_dbtool", &[s(file), backend, "show"]);
        parse_show(&out)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn chown_to_cyrus(path: &Path) {
    let status = Command::new("chown")
        .arg("cyrus:mail")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown {}", path.display());
}

/// `key TAB value LF` lines. Values in mailboxes.db contain no LF.
fn parse_show(out: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    out.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let tab = line
                .iter()
                .position(|&b| b == b'\t')
                .expect("TAB in show line");
            (line[..tab].to_vec(), line[tab + 1..].to_vec())
        })
        .collect()
}

#[test]
fn all_three_readers_agree_with_cyr_dbtool() {
    let Some(lab) = Lab::find("all_three_readers_agree_with_cyr_dbtool") else {
        return;
    };
    let (dir, twoskip) = lab.scratch_copy();
    let skiplist = dir.path().join("mailboxes.skiplist");
    let flat = dir.path().join("mailboxes.flat");
    lab.convert(&twoskip, &skiplist, "skiplist");
    lab.convert(&twoskip, &flat, "flat");

    let expected = lab.show(&twoskip, "twoskip");
    assert!(expected.len() > 10, "the lab's mailboxes.db looks empty");
    for (file, backend, name) in [
        (&twoskip, Backend::Twoskip, "twoskip"),
        (&skiplist, Backend::Skiplist, "skiplist"),
        (&flat, Backend::Flat, "flat"),
    ] {
        assert_eq!(
            lab.show(file, name),
            expected,
            "cyr_dbtool on the {name} copy"
        );
        let db = CyrusDb::open(file).unwrap();
        assert_eq!(db.backend(), backend);
        assert_eq!(db.records().unwrap(), expected, "{name} reader");
        for (key, value) in &expected {
            assert_eq!(db.get(key).unwrap().as_ref(), Some(value), "{name} get");
        }
        let n_records: Vec<_> = expected
            .iter()
            .filter(|(k, _)| k.starts_with(b"N"))
            .cloned()
            .collect();
        let by_prefix: Vec<_> = db.iter_prefix(b"N").collect::<Result<_, _>>().unwrap();
        assert_eq!(by_prefix, n_records, "{name} prefix scan");
    }
}

/// One user's live folders per `ctl_mboxlist -d`: (name, uniqueid, partition)
/// of every entry under `user.<u>` whose type is not a tombstone etc.
fn dumped_folders(dump: &serde_json::Value, inbox: &str) -> Vec<(String, String, String)> {
    let entries = dump.as_object().expect("ctl_mboxlist -d prints an object");
    entries
        .iter()
        .filter(|(name, _)| *name == inbox || name.starts_with(&format!("{inbox}.")))
        .filter(|(_, e)| {
            let mbtype = e["mbtype"].as_str().unwrap_or_default();
            !mbtype.chars().any(|c| "dirzm".contains(c))
        })
        .map(|(name, e)| {
            let text = |field: &str| e[field].as_str().unwrap_or_default().to_string();
            (name.clone(), text("uniqueid"), text("partition"))
        })
        .collect()
}

#[test]
fn user_folders_and_users_agree_with_ctl_mboxlist() {
    use mailvault::formats::mailbox_name::{user_inbox_internal, NameConfig};
    use mailvault::formats::mailboxes_db::{user_folders, users, DeletedFolders};

    let Some(lab) = Lab::find("user_folders_and_users_agree_with_ctl_mboxlist") else {
        return;
    };
    let (dir, twoskip) = lab.scratch_copy();
    let skiplist = dir.path().join("mailboxes.skiplist");
    lab.convert(&twoskip, &skiplist, "skiplist");
    let dump: serde_json::Value =
        serde_json::from_slice(&lab.run("ctl_mboxlist", &["-d", "-f", s(&twoskip)])).unwrap();
    let cfg = NameConfig {
        unixhierarchysep: true,
        ..NameConfig::default()
    };
    for file in [&twoskip, &skiplist] {
        let db = CyrusDb::open(file).unwrap();
        let userids = users(&db, &cfg).unwrap();
        assert!(!userids.is_empty(), "the lab has users");
        let mut expected_users: Vec<String> = dump
            .as_object()
            .unwrap()
            .iter()
            .filter(|(name, e)| {
                name.matches('.').count() == 1
                    && name.starts_with("user.")
                    && !e["mbtype"].as_str().unwrap_or_default().contains('d')
            })
            .map(|(name, _)| name["user.".len()..].replace('^', "."))
            .collect();
        expected_users.sort();
        let mut sorted = userids.clone();
        sorted.sort();
        assert_eq!(sorted, expected_users);
        for userid in &userids {
            let inbox = user_inbox_internal(userid, &cfg);
            let mut expected = dumped_folders(&dump, &inbox);
            let got: Vec<_> = user_folders(&db, userid, &cfg, DeletedFolders::Exclude)
                .unwrap()
                .into_iter()
                .map(|e| (e.internal_name, e.uniqueid.unwrap_or_default(), e.partition))
                .collect();
            assert_eq!(got.first().map(|f| f.0.as_str()), Some(inbox.as_str()));
            expected.sort();
            let mut sorted = got.clone();
            sorted.sort();
            assert_eq!(sorted, expected, "folders of {userid}");
        }
    }
}
