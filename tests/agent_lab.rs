//! `mailvault agent` against a running Cyrus: the built binary, run as user
//! cyrus, served over TCP and checked against what Cyrus itself says (IMAP
//! LIST / DIGEST.SHA1 through `scripts/lab/lab.py dump`, `ctl_mboxlist -d`).
//!
//! Needs `MAILVAULT_LAB` (uuid layout, `unixhierarchysep: yes`) and, for the
//! legacy-layout tests, `MAILVAULT_LAB_LEGACY` (`LEGACY_DIRS=yes HASHSPOOL=yes
//! UNIXHIERSEP=no`). Without them the tests say SKIPPED, or fail when
//! `MAILVAULT_REQUIRE_LAB=1`. The lab is never modified except by the
//! deliveries of the FMETA test (Cyrus's own LMTP); damage is done to copies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mailvault::agent::imapd_conf::ImapdConf;
use mailvault::agent::spool::Spool;
use mailvault::agent::spool_layout::{MailboxPlace, SpoolLayout};
use mailvault::formats::cyrus_header::CyrusHeader;
use mailvault::formats::cyrus_index::parse_index;
use mailvault::formats::cyrusdb::CyrusDb;
use mailvault::formats::mailbox_name::NameConfig;
use mailvault::formats::mailboxes_db::{user_folders, DeletedFolders};
use mailvault::formats::Guid;
use mailvault::protocol::client::{Client, ClientOptions};
use mailvault::source::{FileHead, FileSink, ItemFailure, MetaFile, SinkError, Source};

mod common;

use common::{as_cyrus, lab_env, AgentProcess};

/// The lab is shared: tests that deliver mail must not race the ones that
/// compare counts, so every test here takes this lock.
static LAB_LOCK: Mutex<()> = Mutex::new(());

struct Lab {
    dir: PathBuf,
    env: HashMap<String, String>,
}

impl Lab {
    /// The lab named by `var`, or `None` after saying why the test is skipped.
    fn find(var: &str, test: &str) -> Option<Lab> {
        let dir = common::lab_for(test, var)?;
        let env = lab_env(&dir);
        Some(Lab { dir, env })
    }

    fn conf(&self) -> PathBuf {
        PathBuf::from(&self.env["IMAPD_CONF"])
    }

    fn servername(&self) -> String {
        self.env["SERVERNAME"].clone()
    }

    fn env_file(&self) -> PathBuf {
        self.dir.join("lab.env")
    }

    /// Cyrus's IMAP view of `user` (folders, uids, sha1s).
    fn imap_dump(&self, user: &str) -> serde_json::Value {
        let out = Command::new("python3")
            .arg(repo().join("scripts/lab/lab.py"))
            .args(["dump", "--env"])
            .arg(self.env_file())
            .arg(user)
            .output()
            .expect("python3 lab.py dump");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        all[user].clone()
    }

    /// `ctl_mboxlist -d`: internal name → uniqueid.
    fn mboxlist(&self) -> BTreeMap<String, String> {
        let bin = self
            .env
            .get("CYRUS_BIN")
            .cloned()
            .unwrap_or("/usr/lib/cyrus/bin".into());
        let out = as_cyrus(Path::new(&bin).join("ctl_mboxlist").as_os_str())
            .arg("-C")
            .arg(self.conf())
            .arg("-d")
            .output()
            .expect("ctl_mboxlist");
        assert!(out.status.success());
        let dump: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        dump.as_object()
            .unwrap()
            .iter()
            .map(|(name, e)| (name.clone(), e["uniqueid"].as_str().unwrap().to_string()))
            .collect()
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What these tests do with a running agent beyond [`AgentProcess`].
trait AgentExt {
    fn client(&self, slot: &str) -> Client;
    fn raw(&self, request: &[u8]) -> Vec<u8>;
    fn stop(self) -> std::process::ExitStatus;
}

impl AgentExt for AgentProcess {
    fn client(&self, slot: &str) -> Client {
        let mut options = ClientOptions::new(slot);
        options.retries = 0;
        options.io_timeout = Duration::from_secs(60);
        Client::connect(&self.addr, &options).expect("connect to the agent")
    }

    fn raw(&self, request: &[u8]) -> Vec<u8> {
        raw(&self.addr, request)
    }

    /// SIGTERM, and the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the agent ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One raw request then QUIT on a new connection; everything the server sent.
fn raw(addr: &str, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    stream.write_all(b"QUIT\n").unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    reply
}

/// Keeps every streamed body.
#[derive(Default)]
struct Collect {
    pending: Vec<u8>,
    files: Vec<(FileHead, Vec<u8>, Guid)>,
    missing: Vec<(String, ItemFailure)>,
}

impl FileSink for Collect {
    fn file(&mut self, _head: &FileHead, body: &mut dyn Read) -> Result<(), SinkError> {
        self.pending.clear();
        body.read_to_end(&mut self.pending)?;
        Ok(())
    }
    fn verified(&mut self, head: &FileHead, sha1: Guid) -> Result<(), SinkError> {
        let body = std::mem::take(&mut self.pending);
        self.files.push((head.clone(), body, sha1));
        Ok(())
    }
    fn missing(&mut self, name: &str, why: &ItemFailure) -> Result<(), SinkError> {
        self.missing.push((name.to_string(), why.clone()));
        Ok(())
    }
}

/// Every user, folder and message the agent serves equals Cyrus's view.
fn check_against_cyrus(lab: &Lab) -> usize {
    let agent = AgentProcess::start(&lab.conf(), &lab.servername());
    let mut client = agent.client(&lab.servername());
    client.ping().unwrap();
    let users = client.users().unwrap();
    let mboxlist = lab.mboxlist();
    let inboxes: Vec<String> = mboxlist
        .keys()
        .filter_map(|n| n.strip_prefix("user."))
        .filter(|rest| !rest.contains('.'))
        .map(str::to_string)
        .collect();
    assert_eq!(users, inboxes, "USERS == the INBOXes of ctl_mboxlist -d");
    let mut messages = 0;
    for user in &users {
        let imap = lab.imap_dump(user);
        let imap_folders = imap["folders"].as_object().unwrap();
        let folders = client.folders(user).unwrap();
        let live: Vec<_> = folders
            .iter()
            .filter(|f| !f.name.starts_with("DELETED"))
            .collect();
        let names: BTreeSet<&str> = live.iter().map(|f| f.name.as_str()).collect();
        let imap_names: BTreeSet<&str> = imap_folders.keys().map(String::as_str).collect();
        assert_eq!(names, imap_names, "{user}: FMULTISTATUS names == IMAP LIST");
        let prefix = format!("user.{user}.");
        let ids: BTreeSet<&str> = live.iter().map(|f| f.uniqueid.as_str()).collect();
        let cyrus_ids: BTreeSet<&str> = mboxlist
            .iter()
            .filter(|(n, _)| **n == format!("user.{user}") || n.starts_with(&prefix))
            .map(|(_, id)| id.as_str())
            .collect();
        assert_eq!(ids, cyrus_ids, "{user}: uniqueids == ctl_mboxlist -d");
        for folder in &live {
            assert!(folder.stat(MetaFile::Header).is_some(), "{}", folder.name);
            assert!(folder.stat(MetaFile::Index).is_some(), "{}", folder.name);
            let expected = imap_folders[&folder.name]["messages"].as_array().unwrap();
            let uids: Vec<u32> = expected
                .iter()
                .map(|m| m["uid"].as_u64().unwrap() as u32)
                .collect();
            let mut sink = Collect::default();
            let id = client
                .fetch_messages(user, &folder.name, &uids, &mut sink)
                .unwrap();
            assert_eq!(id.uniqueid, folder.uniqueid);
            assert_eq!(id.jmapid, "-");
            assert!(sink.missing.is_empty(), "{:?}", sink.missing);
            assert_eq!(sink.files.len(), expected.len(), "{}", folder.name);
            for ((head, body, sha1), m) in sink.files.iter().zip(expected) {
                assert_eq!(head.name, m["uid"].to_string());
                // Folders converted to index versions before 10 (the lab's
                // `Versions/v6`..`v9`) have no GUIDs: Cyrus reports zeros.
                let imap_guid = m["guid"].as_str().unwrap();
                if imap_guid != Guid::NULL.to_hex() {
                    assert_eq!(sha1.to_string(), imap_guid);
                }
                assert_eq!(Guid::of(body), *sha1);
                assert_eq!(body.len() as u64, m["size"].as_u64().unwrap());
            }
            messages += uids.len();
        }
    }
    client.quit().unwrap();
    assert!(
        agent.stop().success(),
        "SIGTERM ends the agent with status 0"
    );
    messages
}

#[test]
fn agent_serves_what_cyrus_shows_uuid_layout() {
    let Some(lab) = Lab::find("MAILVAULT_LAB", "agent_serves_what_cyrus_shows_uuid_layout") else {
        return;
    };
    let _guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    assert!(check_against_cyrus(&lab) > 0);
    // The lab's tricky names are among them (lab.py FOLDERS).
    let agent = AgentProcess::start(&lab.conf(), &lab.servername());
    let names: Vec<String> = agent
        .client(&lab.servername())
        .folders("user1")
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    for name in [
        "INBOX/Work.Projects",
        "INBOX/Entw&APw-rfe",
        "INBOX/Deep/a/b/c",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
}

#[test]
fn agent_serves_what_cyrus_shows_legacy_layout() {
    let Some(lab) = Lab::find(
        "MAILVAULT_LAB_LEGACY",
        "agent_serves_what_cyrus_shows_legacy_layout",
    ) else {
        return;
    };
    let _guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    assert!(check_against_cyrus(&lab) > 0);
}

#[test]
fn fmultistatus_opens_no_message_file() {
    let Some(lab) = Lab::find("MAILVAULT_LAB", "fmultistatus_opens_no_message_file") else {
        return;
    };
    let _guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut spool = Spool::open(&lab.conf()).unwrap();
    let counters = spool.counters();
    let folders = spool.folders("user1").unwrap();
    assert!(folders.len() >= 7);
    let after = counters.snapshot();
    assert_eq!(after.message_files_opened, 0);
    assert_eq!(
        after.files_opened, 2,
        "mailboxes.db and annotations.db only"
    );
    assert_eq!(
        after.stat_calls,
        2 + 4 * folders.len() as u64,
        "the two databases; header, index, annotations, expunge of each folder"
    );
    // Asked again, the unchanged databases are not read again: a stat each.
    assert_eq!(spool.folders("user1").unwrap(), folders);
    let again = counters.snapshot();
    assert_eq!(
        again.files_opened, 2,
        "mailboxes.db and annotations.db kept"
    );
    assert_eq!(again.bytes_read, after.bytes_read);
    assert_eq!(again.stat_calls, 2 * after.stat_calls);
    let mut sink = Collect::default();
    spool
        .fetch_messages("user1", "INBOX", &[1], &mut sink)
        .unwrap();
    assert_eq!(counters.snapshot().message_files_opened, 1);
    assert_eq!(sink.files.len(), 1);
}

#[test]
fn a_folder_cyrus_creates_is_seen_by_a_spool_that_kept_mailboxes_db() {
    let Some(lab) = Lab::find(
        "MAILVAULT_LAB",
        "a_folder_cyrus_creates_is_seen_by_a_spool_that_kept_mailboxes_db",
    ) else {
        return;
    };
    let _guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // Not deleted afterwards: Cyrus would keep a tombstone that the other
    // tests' comparison with `ctl_mboxlist -d` would trip over.
    let probe = format!(
        "INBOX/probe-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let names = |spool: &mut Spool| -> Vec<String> {
        spool
            .folders("user4")
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect()
    };
    let mut spool = Spool::open(&lab.conf()).unwrap();
    assert!(!names(&mut spool).contains(&probe));
    let status = Command::new("python3")
        .arg(repo().join("scripts/lab/lab.py"))
        .args(["change", "--env"])
        .arg(lab.env_file())
        .args(["user4", "create", &probe])
        .status()
        .unwrap();
    assert!(status.success(), "lab.py change create");
    let names = names(&mut spool);
    assert!(names.contains(&probe), "{probe} in {names:?}");
}

#[test]
fn fmeta_snapshots_stay_consistent_while_cyrus_delivers() {
    let Some(lab) = Lab::find(
        "MAILVAULT_LAB",
        "fmeta_snapshots_stay_consistent_while_cyrus_delivers",
    ) else {
        return;
    };
    let _guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let agent = AgentProcess::start(&lab.conf(), &lab.servername());
    let env_file = lab.env_file();
    let deliveries = std::thread::spawn(move || {
        for _ in 0..50 {
            let status = Command::new("python3")
                .arg(repo().join("scripts/lab/lab.py"))
                .args(["deliver", "--env"])
                .arg(&env_file)
                .arg("user1")
                .status()
                .unwrap();
            assert!(status.success());
        }
    });
    let mut client = agent.client(&lab.servername());
    let mut snapshots = 0;
    let mut last_uids = BTreeSet::new();
    while !deliveries.is_finished() || snapshots < 5 {
        let mut sink = Collect::default();
        let id = client
            .fetch_folder_meta("user1", "INBOX", &MetaFile::ALL, &mut sink)
            .unwrap();
        let file = |name: &str| {
            sink.files
                .iter()
                .find(|(h, _, _)| h.name == name)
                .map(|(_, b, _)| b.clone())
                .unwrap()
        };
        let header = CyrusHeader::parse(&file("header")).unwrap();
        let (index, records) = parse_index(&file("index")).expect("every index parses, CRCs ok");
        assert_eq!(header.uniqueid, id.uniqueid);
        assert_eq!(index.num_records as usize, records.len());
        for r in &records {
            assert!(r.uid <= index.last_uid, "uid {} > last_uid", r.uid);
            for bit in r.user_flag_bits() {
                assert!(header.user_flag(bit).is_some(), "flag bit {bit} has a name");
            }
        }
        last_uids = records.iter().map(|r| r.uid).collect();
        snapshots += 1;
    }
    deliveries.join().unwrap();
    assert!(snapshots >= 5, "{snapshots} snapshots");
    assert!(last_uids.len() >= 50, "the deliveries are in the index");
}

#[test]
fn hostile_names_get_no_and_the_agent_keeps_serving() {
    let Some(lab) = Lab::find(
        "MAILVAULT_LAB",
        "hostile_names_get_no_and_the_agent_keeps_serving",
    ) else {
        return;
    };
    let _guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let agent = AgentProcess::start(&lab.conf(), &lab.servername());
    let slot = lab.servername();
    let long = "a".repeat(1500);
    let requests = [
        format!("FMETA {slot} ../x INBOX\n"),
        format!("FMULTISTATUS {slot} a/b\n"),
        format!("META {slot} a%00b\n"),
        format!("FDATA {slot} {long} INBOX 1\n"),
        format!("FDATA {slot} user1 INBOX/../../x 1\n"),
        format!("FMETA {slot} user1 INBOX%00 header\n"),
    ];
    // Several clients at once: each gets its NO, none disturbs the others.
    let threads: Vec<_> = requests
        .iter()
        .map(|request| {
            let (addr, request) = (agent.addr.clone(), request.clone());
            std::thread::spawn(move || raw(&addr, request.as_bytes()))
        })
        .collect();
    for (request, thread) in requests.iter().zip(threads) {
        let reply = String::from_utf8(thread.join().unwrap()).unwrap();
        assert!(
            reply.starts_with("NO bad "),
            "{request:?} answered {reply:?}"
        );
    }
    let mut client = agent.client(&slot);
    client.ping().unwrap();
    assert!(!client.folders("user1").unwrap().is_empty());
}

/// A private spool: user1's INBOX and Archive copied from the lab with a copy
/// of mailboxes.db, owned by cyrus, for damage the lab must never see.
struct PrivateSpool {
    dir: tempfile::TempDir,
    inbox: PathBuf,
    archive: PathBuf,
}

fn private_spool(lab: &Lab, sieve: bool) -> PrivateSpool {
    let conf = ImapdConf::load(&lab.conf()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in ["lib", "spool", "sieve"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let db_path = root.join("lib/mailboxes.db");
    std::fs::copy(conf.mailboxes_db(), &db_path).unwrap();
    let text = format!(
        "configdirectory: {root}/lib\npartition-default: {root}/spool\nsievedir: {root}/sieve\n\
         servername: private\nunixhierarchysep: {}\naltnamespace: no\nhashimapspool: {}\n",
        if conf.unix_hierarchy_sep { "yes" } else { "no" },
        if conf.hash_imap_spool { "yes" } else { "no" },
        root = root.display()
    );
    std::fs::write(root.join("imapd.conf"), text).unwrap();
    let names = NameConfig {
        unixhierarchysep: conf.unix_hierarchy_sep,
        ..NameConfig::default()
    };
    let db = CyrusDb::open(&db_path).unwrap();
    let entries = user_folders(&db, "user1", &names, DeletedFolders::Exclude).unwrap();
    let lab_layout = SpoolLayout::new(conf);
    let ours = SpoolLayout::new(ImapdConf::load(&root.join("imapd.conf")).unwrap());
    let mut copied = Vec::new();
    for entry in entries.iter().take(2) {
        let place = MailboxPlace {
            internal_name: &entry.internal_name,
            partition: &entry.partition,
            uniqueid: entry.uniqueid.as_deref(),
            legacy: entry.mbtype.legacy_dirs,
        };
        let (from, to) = (
            lab_layout.data_dir(&place).unwrap(),
            ours.data_dir(&place).unwrap(),
        );
        std::fs::create_dir_all(&to).unwrap();
        for file in std::fs::read_dir(&from).unwrap() {
            let file = file.unwrap();
            if file.file_type().unwrap().is_file() {
                std::fs::copy(file.path(), to.join(file.file_name())).unwrap();
            }
        }
        if sieve && copied.is_empty() {
            let sieve_dir = ours.sieve_dir("user1", &place).unwrap().unwrap();
            std::fs::create_dir_all(&sieve_dir).unwrap();
            std::fs::write(sieve_dir.join("vacation.script"), b"keep;\r\n").unwrap();
        }
        copied.push(to);
    }
    chown_tree(root);
    let archive = copied.pop().unwrap();
    let inbox = copied.pop().unwrap();
    PrivateSpool {
        dir,
        inbox,
        archive,
    }
}

fn chown_tree(path: &Path) {
    let cyrus = nix::unistd::User::from_name("cyrus").unwrap().unwrap();
    std::os::unix::fs::chown(path, Some(cyrus.uid.as_raw()), None).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path());
        }
    }
}

#[test]
fn damaged_files_give_clear_refusals_and_the_agent_keeps_serving() {
    let Some(lab) = Lab::find(
        "MAILVAULT_LAB",
        "damaged_files_give_clear_refusals_and_the_agent_keeps_serving",
    ) else {
        return;
    };
    let _guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let spool = private_spool(&lab, false);
    let conf = spool.dir.path().join("imapd.conf");
    let agent = AgentProcess::start(&conf, "private");
    let mut client = agent.client("private");
    let folders = client.folders("user1").unwrap();
    let (inbox, archive) = (folders[0].name.clone(), folders[1].name.clone());

    // A message file gone: that item is `NO no such file`, the others come.
    let index = std::fs::read(spool.archive.join("cyrus.index")).unwrap();
    let (_, records) = parse_index(&index).unwrap();
    let uids: Vec<u32> = records.iter().map(|r| r.uid).collect();
    std::fs::remove_file(spool.archive.join(format!("{}.", uids[0]))).unwrap();
    let mut sink = Collect::default();
    client
        .fetch_messages("user1", &archive, &uids, &mut sink)
        .unwrap();
    assert_eq!(
        sink.missing,
        vec![(uids[0].to_string(), ItemFailure::NoSuchFile)]
    );
    assert_eq!(sink.files.len(), uids.len() - 1);

    // A corrupt index: FMETA and FDATA refuse with a NO naming the problem.
    let path = spool.inbox.join("cyrus.index");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xFF;
    std::fs::write(&path, bytes).unwrap();
    for request in [
        format!("FMETA private user1 {inbox} header index\n"),
        format!("FDATA private user1 {inbox} 1\n"),
    ] {
        let reply = String::from_utf8_lossy(&agent.raw(request.as_bytes())).into_owned();
        assert!(
            reply.starts_with("NO ") && reply.contains("CRC"),
            "{request:?}: {reply:?}"
        );
    }

    // A truncated mailboxes.db: NO, and PING still answers.
    let db = spool.dir.path().join("lib/mailboxes.db");
    let len = std::fs::metadata(&db).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    file.set_len(len / 2).unwrap();
    let reply = String::from_utf8_lossy(&agent.raw(b"USERS private\n")).into_owned();
    assert!(reply.starts_with("NO "), "{reply:?}");
    let reply = String::from_utf8_lossy(&agent.raw(b"FMULTISTATUS private user1\n")).into_owned();
    assert!(reply.starts_with("NO "), "{reply:?}");
    assert_eq!(agent.raw(b"PING\n"), b"OK\nDONE PING\nOK\n");
    // The agent lets open connections finish before it exits on SIGTERM.
    drop(client);
    assert!(agent.stop().success());
}

#[test]
fn legacy_users_get_their_sieve_scripts_as_meta_items() {
    let Some(lab) = Lab::find(
        "MAILVAULT_LAB_LEGACY",
        "legacy_users_get_their_sieve_scripts_as_meta_items",
    ) else {
        return;
    };
    let _guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let spool = private_spool(&lab, true);
    let agent = AgentProcess::start(&spool.dir.path().join("imapd.conf"), "private");
    let stat = String::from_utf8(agent.raw(b"META private user1\n")).unwrap();
    assert!(stat.contains("STAT sieve%2Fvacation.script 7 "), "{stat:?}");
    let data = agent.raw(b"META private user1 sieve/vacation.script sieve/../x\n");
    let text = String::from_utf8_lossy(&data);
    assert!(
        text.starts_with("OK\nDATA sieve%2Fvacation.script 7 "),
        "{text:?}"
    );
    assert!(text.contains("keep;\r\nDONE sieve%2Fvacation.script "));
    assert!(
        text.contains("NO no such file sieve%2F..%2Fx\n"),
        "{text:?}"
    );
}

#[test]
fn mailbox_annotations_come_from_cyrus_annotations_db() {
    let Some(lab) = Lab::find(
        "MAILVAULT_LAB",
        "mailbox_annotations_come_from_cyrus_annotations_db",
    ) else {
        return;
    };
    let _guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // Cyrus writes the annotations (idempotent: the same values every run).
    let script = format!(
        "import imaplib\n\
         imaplib.Commands['SETMETADATA'] = ('AUTH', 'SELECTED')\n\
         i = imaplib.IMAP4('127.0.0.1', {port})\n\
         i.login('user4', {password:?})\n\
         t, d = i._simple_command('SETMETADATA', 'INBOX', '(/shared/comment \"team folder\" /private/comment \"private note\")')\n\
         assert t == 'OK', d\n\
         i.logout()\n",
        port = lab.env["IMAP_PORT"],
        password = lab.env["USER_PASS"],
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
    let agent = AgentProcess::start(&lab.conf(), &lab.servername());
    let mut client = agent.client(&lab.servername());
    let mut sink = Collect::default();
    client
        .fetch_folder_meta("user4", "INBOX", &[MetaFile::MailboxAnnotations], &mut sink)
        .unwrap();
    let (head, body, _) = &sink.files[0];
    let json: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            ["/comment", "", "team folder"],
            ["/comment", "user4", "private note"]
        ]),
        "the owner placeholder is spelled as the owner"
    );
    assert_eq!(head.stat.mtime, 0);
    let digest = Guid::of(body).to_string();
    let inode = u16::from_str_radix(&format!("{}{}", &digest[2..4], &digest[0..2]), 16).unwrap();
    assert_eq!(head.stat.inode, u64::from(inode));
    let status = client.folders("user4").unwrap();
    let inbox = status.iter().find(|f| f.name == "INBOX").unwrap();
    assert_eq!(inbox.stat(MetaFile::MailboxAnnotations), Some(head.stat));
    // A folder without annotations says so per item.
    let mut sink = Collect::default();
    client
        .fetch_folder_meta("user1", "INBOX", &[MetaFile::MailboxAnnotations], &mut sink)
        .unwrap();
    assert_eq!(
        sink.missing,
        vec![("mailbox_annotations".to_string(), ItemFailure::Empty)]
    );
}
