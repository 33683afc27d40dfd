//! `mailvault backup` end to end against the real Cyrus 3.6 of the lab:
//! the built binaries (`mailvault agent` as user cyrus over TCP, `mailvault
//! backup`, `ls`, `verify`) checked against what Cyrus itself says over IMAP
//! (`scripts/lab/lab.py dump`: LIST, UID FETCH FLAGS DIGEST.SHA1).
//!
//! Every run of this file creates its own users (a per-run prefix) so that
//! the lab, which persists between runs in development, and the other lab
//! tests are undisturbed. Needs `MAILVAULT_LAB`; the legacy-layout test
//! needs `MAILVAULT_LAB_LEGACY` (`unixhierarchysep: no`, names use `.`).

mod common;
mod support;

use common::AgentProcess;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use mailvault::agent::spool::Spool;
use mailvault::backup::{backup_user, BackupOptions, Outcome};
use mailvault::progress::NoProgress;
use mailvault::store::{user_dir, StoreOptions, UserStore};
use support::{assert_verifies, backup, data_size, guid_sets, store_view, BackupRun, Message};

struct Lab {
    dir: PathBuf,
    env: HashMap<String, String>,
}

impl Lab {
    fn find(var: &str) -> Option<Lab> {
        let dir = common::lab(var)?;
        let env = common::lab_env(&dir);
        Some(Lab { dir, env })
    }

    fn conf(&self) -> PathBuf {
        PathBuf::from(&self.env["IMAPD_CONF"])
    }

    fn servername(&self) -> &str {
        &self.env["SERVERNAME"]
    }

    /// `lab.py <command> --env LAB/lab.env <args>`, which must succeed.
    fn lab_py(&self, command: &str, args: &[&str]) -> Vec<u8> {
        let out = Command::new("python3")
            .arg(repo().join("scripts/lab/lab.py"))
            .arg(command)
            .arg("--env")
            .arg(self.dir.join("lab.env"))
            .args(args)
            .output()
            .expect("python3 lab.py");
        assert!(
            out.status.success(),
            "lab.py {command} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn change(&self, user: &str, action: &[&str]) {
        let mut args = vec![user];
        args.extend_from_slice(action);
        self.lab_py("change", &args);
    }

    /// Cyrus's IMAP view of each user: folder → messages.
    fn imap_view(&self, users: &[String]) -> BTreeMap<String, BTreeMap<String, Vec<Message>>> {
        let args: Vec<&str> = users.iter().map(String::as_str).collect();
        let dump: serde_json::Value =
            serde_json::from_slice(&self.lab_py("dump", &args)).expect("lab.py dump JSON");
        users
            .iter()
            .map(|u| {
                let folders = dump[u]["folders"]
                    .as_object()
                    .unwrap_or_else(|| panic!("no folders for {u} in the dump"))
                    .iter()
                    .map(|(name, f)| (name.clone(), imap_messages(&f["messages"])))
                    .collect();
                (u.clone(), folders)
            })
            .collect()
    }
}

fn imap_messages(list: &serde_json::Value) -> Vec<Message> {
    let mut messages: Vec<Message> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let mut flags: Vec<String> = m["flags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect();
            flags.sort();
            Message {
                uid: m["uid"].as_u64().expect("uid") as u32,
                guid: m["guid"].as_str().expect("guid").to_string(),
                flags,
            }
        })
        .collect();
    messages.sort();
    messages
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A store root the agent-run and the local-source run can both write as root.
fn temp_root(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(name)
        .tempdir()
        .expect("temp dir")
}

/// A per-run user prefix: the lab keeps its users between runs.
fn unique_prefix() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("e2e{}x{}x", t % 1_000_000_000, std::process::id())
}

struct Run<'a> {
    lab: &'a Lab,
    agent: AgentProcess,
    root: PathBuf,
    users: Vec<String>,
    /// The IMAP view at the last comparison, to know which UIDs IMAP lost.
    last_imap: BTreeMap<String, BTreeMap<String, Vec<Message>>>,
}

impl Run<'_> {
    fn backup(&self) -> BackupRun {
        let root = self.root.to_string_lossy().into_owned();
        let mut args = vec![
            "--server",
            self.agent.addr.as_str(),
            "--servername",
            self.lab.servername(),
            "--store-root",
            root.as_str(),
        ];
        args.extend(self.users.iter().map(String::as_str));
        let run = backup(&args, &[]);
        assert!(
            run.status.success(),
            "backup failed: {:#}\n{}",
            run.summary,
            run.stderr
        );
        for u in &self.users {
            assert_eq!(run.outcome(u), "ok", "{u}: {:#}", run.summary);
        }
        run
    }

    fn store(&self, user: &str) -> PathBuf {
        user_dir(&self.root, user).expect("user dir")
    }

    /// The store's view of every user equals Cyrus's: same folders, and in
    /// each the same UIDs, GUIDs and flags; expunged messages the store keeps
    /// are exactly among the ones IMAP no longer shows.
    fn compare(&mut self, step: &str) {
        let imap = self.lab.imap_view(&self.users);
        for user in &self.users {
            let stored = store_view(&self.store(user));
            let theirs = &imap[user];
            // With delete_mode: delayed, FMULTISTATUS lists the `DELETED.*`
            // copy of a deleted folder (as backupcyrusd does), which IMAP hides.
            let names: BTreeSet<&String> = theirs.keys().collect();
            let ours: BTreeSet<&String> = stored
                .keys()
                .filter(|n| !n.starts_with("DELETED"))
                .collect();
            assert_eq!(ours, names, "{step}: {user}: folders (store vs IMAP)");
            // A folder IMAP lost lives on in the store, messages and all,
            // under its new name or as its delayed-delete copy.
            let before = self.last_imap.get(user);
            for (lost, messages) in before.into_iter().flatten() {
                if theirs.contains_key(lost) {
                    continue;
                }
                let kept = stored.iter().any(|(name, f)| {
                    before.is_some_and(|b| !b.contains_key(name)) && &f.live == messages
                });
                assert!(
                    kept,
                    "{step}: {user}: folder {lost} vanished from IMAP and the store has no copy of its messages"
                );
            }
            for (folder, messages) in theirs {
                let mine = &stored[folder];
                assert_eq!(
                    &mine.live, messages,
                    "{step}: {user} {folder}: messages (store vs IMAP)"
                );
                let visible: BTreeSet<u32> = messages.iter().map(|m| m.uid).collect();
                for m in &mine.expunged {
                    assert!(
                        !visible.contains(&m.uid),
                        "{step}: {user} {folder}: uid {} is expunged in the store but IMAP shows it",
                        m.uid
                    );
                }
                let expunged: BTreeSet<u32> = mine.expunged.iter().map(|m| m.uid).collect();
                let before = self.last_imap.get(user).and_then(|f| f.get(folder));
                for m in before.into_iter().flatten() {
                    if !visible.contains(&m.uid) {
                        assert!(
                            expunged.contains(&m.uid),
                            "{step}: {user} {folder}: IMAP lost uid {} but the store does not hold it as expunged",
                            m.uid
                        );
                    }
                }
            }
        }
        self.last_imap = imap;
    }
}

#[test]
fn backups_through_the_agent_match_what_cyrus_shows_after_every_change() {
    let Some(lab) = Lab::find("MAILVAULT_LAB") else {
        return;
    };
    let prefix = unique_prefix();
    lab.lab_py(
        "populate",
        &[
            "--users",
            "3",
            "--folders",
            "5",
            "--msgs",
            "4",
            "--prefix",
            &prefix,
        ],
    );
    let users: Vec<String> = (1..=3).map(|i| format!("{prefix}{i}")).collect();
    let root = temp_root("mv-e2e-agent");
    let mut run = Run {
        lab: &lab,
        agent: AgentProcess::start(&lab.conf(), lab.servername()),
        root: root.path().to_owned(),
        users: users.clone(),
        last_imap: BTreeMap::new(),
    };
    let u1 = users[0].as_str();

    // First backup: everything is fetched, and the store equals IMAP.
    let first = run.backup();
    for u in &users {
        assert!(
            first.count(u, "messages_fetched") > 0,
            "{u}: {:#}",
            first.summary
        );
        assert_eq!(
            first.count(u, "folders_changed"),
            first.count(u, "folders_seen")
        );
    }
    run.compare("first backup");

    // No change: nothing is fetched, nothing is appended.
    let sizes: Vec<u64> = users.iter().map(|u| data_size(&run.store(u))).collect();
    let again = run.backup();
    for (u, size) in users.iter().zip(&sizes) {
        assert_eq!(
            again.count(u, "folders_changed"),
            0,
            "{u}: {:#}",
            again.summary
        );
        assert_eq!(again.count(u, "messages_fetched"), 0, "{u}");
        assert_eq!(again.count(u, "bytes_fetched"), 0, "{u}");
        assert_eq!(data_size(&run.store(u)), *size, "{u}: the data file grew");
    }
    run.compare("second backup, no change");

    // One change at a time, each followed by a run and the comparison.
    lab.lab_py("deliver", &[u1]);
    let r = run.backup();
    assert_eq!(
        r.count(u1, "messages_fetched"),
        1,
        "deliver: {:#}",
        r.summary
    );
    assert_eq!(r.count(&users[1], "messages_fetched"), 0);
    run.compare("deliver");

    lab.change(u1, &["flag", "INBOX", "1", "\\Flagged $Work"]);
    let r = run.backup();
    assert_eq!(r.count(u1, "messages_fetched"), 0, "flag: {:#}", r.summary);
    assert_eq!(r.count(u1, "folders_changed"), 1, "flag: {:#}", r.summary);
    run.compare("flag + keyword");

    lab.change(u1, &["expunge", "INBOX", "2"]);
    let r = run.backup();
    assert_eq!(
        r.count(u1, "messages_fetched"),
        0,
        "expunge: {:#}",
        r.summary
    );
    run.compare("expunge");

    lab.change(u1, &["rename", "INBOX/Sent", "INBOX/Sent 2024"]);
    let r = run.backup();
    assert_eq!(
        r.count(u1, "messages_fetched"),
        0,
        "a renamed folder refetched its messages: {:#}",
        r.summary
    );
    run.compare("rename");

    lab.change(u1, &["delete", "INBOX/Work.Projects"]);
    let r = run.backup();
    assert_eq!(
        r.count(u1, "messages_fetched"),
        0,
        "delete: {:#}",
        r.summary
    );
    run.compare("delete");

    lab.change(u1, &["create", "INBOX/New/Deep/er"]);
    lab.change(u1, &["append", "INBOX/New/Deep/er"]);
    let r = run.backup();
    assert_eq!(
        r.count(u1, "messages_fetched"),
        1,
        "nested: {:#}",
        r.summary
    );
    run.compare("nested folders with '/' in their names");

    // The same users through the local source: the same messages per folder.
    let local = temp_root("mv-e2e-local");
    let conf = lab.conf();
    let mut args: Vec<&str> = vec![
        "--spool-conf",
        conf.to_str().expect("utf-8 path"),
        "--servername",
        lab.servername(),
        "--store-root",
        local.path().to_str().expect("utf-8 path"),
    ];
    args.extend(users.iter().map(String::as_str));
    let by_spool = backup(&args, &[]);
    assert!(by_spool.status.success(), "{:#}", by_spool.summary);
    for u in &users {
        let via_agent = guid_sets(&run.store(u));
        let via_spool = guid_sets(&user_dir(local.path(), u).expect("user dir"));
        assert_eq!(via_spool, via_agent, "{u}: local source vs agent");
    }

    // A run with no change through the library reads no message file.
    let spool = Spool::open(&conf).expect("open the lab's spool");
    let counters = spool.counters();
    let mut source = spool;
    let mut folders = 0;
    for u in &users {
        let dir = user_dir(local.path(), u).expect("user dir");
        let mut store = UserStore::open(&dir, StoreOptions::default()).expect("open store");
        let report = backup_user(
            &mut source,
            &mut store,
            u,
            &BackupOptions::default(),
            &NoProgress,
        )
        .expect("backup through the spool");
        assert_eq!(report.outcome, Outcome::Ok);
        assert_eq!(report.folders_changed, 0, "{u}: {report:?}");
        assert_eq!(report.messages_fetched, 0, "{u}");
        folders += report.folders_seen;
    }
    let counts = counters.snapshot();
    assert_eq!(counts.message_files_opened, 0, "{counts:?}");
    // Meta files and the user's seen/sub only: a bounded number per folder,
    // never one per message.
    assert!(
        counts.stat_calls <= 6 * folders + 6 * users.len() as u64,
        "{counts:?} for {folders} folders"
    );

    for u in &users {
        assert_verifies(&run.store(u));
        assert_verifies(&user_dir(local.path(), u).expect("user dir"));
    }
}

#[test]
fn a_first_backup_of_the_legacy_lab_matches_what_cyrus_shows() {
    let Some(lab) = Lab::find("MAILVAULT_LAB_LEGACY") else {
        return;
    };
    // The users scripts/test populated; this test changes nothing.
    let users = vec!["user1".to_string(), "user2".to_string()];
    let root = temp_root("mv-e2e-legacy");
    let mut run = Run {
        lab: &lab,
        agent: AgentProcess::start(&lab.conf(), lab.servername()),
        root: root.path().to_owned(),
        users: users.clone(),
        last_imap: BTreeMap::new(),
    };
    let first = run.backup();
    for u in &users {
        assert!(first.count(u, "messages_fetched") > 0, "{u}");
    }
    run.compare("legacy first backup");
    let view = store_view(&run.store("user1"));
    assert!(
        view.keys().any(|name| name.starts_with("INBOX.")),
        "netnews names expected: {:?}",
        view.keys()
    );
    for u in &users {
        assert_verifies(&run.store(u));
    }
}
