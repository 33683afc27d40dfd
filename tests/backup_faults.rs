//! `mailvault backup` (the binary) against servers that misbehave, over real
//! TCP: our server loop (`protocol::listen`) serves an in-memory spool
//! through a [`Faulty`] source (NO for a folder, a folder listed twice, an
//! index that does not parse), behind a [`Proxy`] that breaks the wire (a
//! connection closed without any reply, a wrong SHA1 in a `DONE` line, a
//! connection dropped in the middle of a message body).
//!
//! For every fault: the run reports the user (and the folder) it hit, the
//! other users go on, `mailvault verify --full` passes on every store, what
//! was fetched before the fault is committed whole or not at all, and the
//! next run without the fault completes with everything stored.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mailvault::formats::cyrus_index::{write_index, IndexHeader, IndexRecord, Timestamp};
use mailvault::formats::Guid;
use mailvault::protocol::listen::{listen, ListenOptions, SourceFactory};
use mailvault::protocol::memory::{MemoryFile, MemoryFolder, MemorySource, MemoryUser};
use mailvault::protocol::server::ServerOptions;
use mailvault::source::{
    FileSink, FileStat, FolderId, FolderStatus, MetaFile, Source, SourceError, UserFile,
};
use support::{assert_verifies, backup, store_view, BackupRun};

const SLOT: &str = "mvlab";
const USERS: [&str; 3] = ["alice", "bob", "carol"];
const FOLDERS: [&str; 3] = ["INBOX", "INBOX.Work", "INBOX.Zeta"];

fn file(bytes: &[u8], inode: u64) -> MemoryFile {
    MemoryFile {
        mtime: 1_700_000_000,
        inode,
        bytes: bytes.to_vec(),
    }
}

/// A message body unique to its user, folder and uid, big enough that a
/// drop in its middle leaves a recognisable prefix on the wire.
fn body(user: &str, folder: &str, uid: u32) -> Vec<u8> {
    let mut text = format!(
        "From: sender@example.org\r\nTo: {user}@example.com\r\nSubject: {folder} {uid}\r\n\r\n"
    );
    for line in 0..200 {
        text.push_str(&format!(
            "{user} {folder} uid {uid} line {line} of the body\r\n"
        ));
    }
    text.into_bytes()
}

fn folder(user: &str, name: &str, n: usize) -> MemoryFolder {
    let uids: Vec<u32> = (1..=3).collect();
    let records: Vec<IndexRecord> = uids
        .iter()
        .map(|&uid| {
            let b = body(user, name, uid);
            IndexRecord {
                uid,
                internaldate: Timestamp::from_secs(1_700_000_000 + u64::from(uid)),
                size: b.len() as u64,
                guid: Guid::of(&b),
                modseq: u64::from(uid),
                ..Default::default()
            }
        })
        .collect();
    let header = IndexHeader {
        minor_version: 17,
        uidvalidity: 42,
        last_uid: 3,
        exists: 3,
        highestmodseq: 10,
        ..Default::default()
    };
    let index = write_index(&header, &records).expect("write a cyrus.index");
    let base = 100 * n as u64;
    let mut meta = BTreeMap::new();
    meta.insert(
        MetaFile::Header,
        file(format!("header of {name}").as_bytes(), base + 1),
    );
    meta.insert(MetaFile::Index, file(&index, base + 2));
    MemoryFolder {
        name: name.into(),
        uniqueid: format!("uid-{user}-{n}"),
        jmapid: "-".into(),
        meta,
        messages: uids
            .iter()
            .map(|&uid| {
                (
                    uid,
                    file(&body(user, name, uid), base + 10 + u64::from(uid)),
                )
            })
            .collect(),
    }
}

fn spool() -> MemorySource {
    MemorySource {
        users: USERS
            .iter()
            .map(|user| {
                let mut files = BTreeMap::new();
                files.insert(UserFile::Sub, file(b"\x1fVER\x1f\t3\nNINBOX\t\n", 3));
                MemoryUser {
                    name: user.to_string(),
                    files,
                    folders: FOLDERS
                        .iter()
                        .enumerate()
                        .map(|(n, f)| folder(user, f, n))
                        .collect(),
                }
            })
            .collect(),
    }
}

/// Source-level faults, switched on and off between runs.
#[derive(Debug, Clone, Default)]
struct Faults {
    /// `(user, folder)` whose FMETA is answered NO.
    refuse: Option<(String, String)>,
    /// `(user, folder)` that FMULTISTATUS lists twice.
    twice: Option<(String, String)>,
    /// `(user, folder)` whose cyrus.index is garbage.
    bad_index: Option<(String, String)>,
}

/// The in-memory spool with [`Faults`] applied.
struct Faulty {
    inner: MemorySource,
    faults: Faults,
}

fn hit(fault: &Option<(String, String)>, user: &str, folder: &str) -> bool {
    fault
        .as_ref()
        .is_some_and(|(u, f)| u == user && f == folder)
}

impl Faulty {
    fn new(faults: Faults) -> Faulty {
        let mut inner = spool();
        if let Some((u, f)) = &faults.bad_index {
            let folder = inner
                .users
                .iter_mut()
                .filter(|x| &x.name == u)
                .flat_map(|x| x.folders.iter_mut())
                .find(|x| &x.name == f)
                .expect("the folder to damage");
            // A new inode too, so the plan sees a changed file.
            folder
                .meta
                .insert(MetaFile::Index, file(b"this is not a cyrus.index", 9999));
        }
        Faulty { inner, faults }
    }
}

impl Source for Faulty {
    fn ping(&mut self) -> Result<(), SourceError> {
        self.inner.ping()
    }
    fn users(&mut self) -> Result<Vec<String>, SourceError> {
        self.inner.users()
    }
    fn user_files(&mut self, user: &str) -> Result<Vec<(UserFile, FileStat)>, SourceError> {
        self.inner.user_files(user)
    }
    fn fetch_user_files(
        &mut self,
        user: &str,
        items: &[UserFile],
        sink: &mut dyn FileSink,
    ) -> Result<(), SourceError> {
        self.inner.fetch_user_files(user, items, sink)
    }
    fn folders(&mut self, user: &str) -> Result<Vec<FolderStatus>, SourceError> {
        let mut folders = self.inner.folders(user)?;
        if let Some(dup) = folders
            .iter()
            .find(|f| hit(&self.faults.twice, user, &f.name))
            .cloned()
        {
            folders.push(dup);
        }
        Ok(folders)
    }
    fn folder_meta_stat(
        &mut self,
        user: &str,
        folder: &str,
    ) -> Result<(Vec<(MetaFile, FileStat)>, FolderId), SourceError> {
        self.inner.folder_meta_stat(user, folder)
    }
    fn fetch_folder_meta(
        &mut self,
        user: &str,
        folder: &str,
        items: &[MetaFile],
        sink: &mut dyn FileSink,
    ) -> Result<FolderId, SourceError> {
        if hit(&self.faults.refuse, user, folder) {
            return Err(SourceError::No("Permission denied".into()));
        }
        self.inner.fetch_folder_meta(user, folder, items, sink)
    }
    fn fetch_messages(
        &mut self,
        user: &str,
        folder: &str,
        uids: &[u32],
        sink: &mut dyn FileSink,
    ) -> Result<FolderId, SourceError> {
        self.inner.fetch_messages(user, folder, uids, sink)
    }
}

/// What the proxy does to the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wire {
    Pass,
    /// Close at once, without any reply, on every request naming this user.
    CloseOn(String),
    /// Announce a wrong SHA1 in the `DONE` line of this user's first message.
    WrongSha1(String),
    /// Cut the connection halfway through this user's second message body.
    CutMidData(String),
}

/// A TCP proxy in front of the server loop that injects [`Wire`] faults.
/// Faults other than `CloseOn` fire once.
struct Proxy {
    addr: String,
    wire: Arc<Mutex<Wire>>,
}

impl Proxy {
    fn start(upstream: String, wire: Wire) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let wire = Arc::new(Mutex::new(wire));
        let shared = Arc::clone(&wire);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let wire = Arc::clone(&shared);
                std::thread::spawn(move || relay(client, server, wire));
            }
        });
        Proxy { addr, wire }
    }

    fn set(&self, wire: Wire) {
        *self.wire.lock().expect("wire lock") = wire;
    }
}

fn relay(client: TcpStream, server: TcpStream, wire: Arc<Mutex<Wire>>) {
    let (c2, s2) = (client.try_clone(), server.try_clone());
    let (Ok(c2), Ok(s2)) = (c2, s2) else {
        return;
    };
    // The user of the request in flight: replies name uids, not users.
    let user = Arc::new(Mutex::new(String::new()));
    let requests = {
        let (wire, user) = (Arc::clone(&wire), Arc::clone(&user));
        std::thread::spawn(move || client_to_server(c2, s2, &wire, &user))
    };
    server_to_client(server, client, &wire, &user);
    let _ = requests.join();
}

fn hang_up(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

fn client_to_server(
    client: TcpStream,
    mut server: TcpStream,
    wire: &Mutex<Wire>,
    user: &Mutex<String>,
) {
    let mut reader = BufReader::new(&client);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => {
                let _ = server.shutdown(Shutdown::Write);
                return;
            }
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let named = USERS
            .iter()
            .find(|u| text.split_whitespace().any(|t| t.trim_matches('"') == **u));
        if let Some(u) = named {
            *user.lock().expect("user lock") = u.to_string();
        }
        if let Wire::CloseOn(target) = &*wire.lock().expect("wire lock") {
            if named.is_some_and(|u| *u == target) {
                hang_up(&client, &server);
                return;
            }
        }
        if server.write_all(&line).is_err() {
            return;
        }
    }
}

fn is_uid(token: Option<&str>) -> bool {
    token.is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
}

fn server_to_client(
    server: TcpStream,
    mut client: TcpStream,
    wire: &Mutex<Wire>,
    user: &Mutex<String>,
) {
    let mut reader = BufReader::new(&server);
    let mut line = Vec::new();
    let mut bodies_seen = 0;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => {
                let _ = client.shutdown(Shutdown::Write);
                return;
            }
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let current = user.lock().expect("user lock").clone();
        let mut fault = wire.lock().expect("wire lock");
        let message = is_uid(tokens.get(1).copied());
        let done = tokens.first() == Some(&"DONE") && message && tokens.len() == 3;
        if done && *fault == Wire::WrongSha1(current.clone()) {
            *fault = Wire::Pass;
            let wrong = Guid::of(b"not this body");
            line = format!("DONE {} {wrong}\n", tokens[1]).into_bytes();
        }
        if client.write_all(&line).is_err() {
            return;
        }
        if tokens.first() == Some(&"DATA") {
            let size: u64 = tokens.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
            let cut = message && *fault == Wire::CutMidData(current.clone()) && {
                bodies_seen += 1;
                bodies_seen == 2
            };
            let pass = if cut { size / 2 } else { size };
            if cut {
                *fault = Wire::Pass;
            }
            drop(fault);
            let copied = std::io::copy(&mut (&mut reader).take(pass), &mut client);
            if cut || copied.map_or(true, |n| n < pass) {
                let _ = client.flush();
                hang_up(&client, &server);
                return;
            }
        }
    }
}

/// The server loop over [`Faulty`] on a loopback port, with the proxy in front.
struct Server {
    faults: Arc<Mutex<Faults>>,
    proxy: Proxy,
}

impl Server {
    fn start(wire: Wire, faults: Faults) -> Server {
        let faults = Arc::new(Mutex::new(faults));
        let current = Arc::clone(&faults);
        let factory: Arc<dyn SourceFactory> =
            Arc::new(move || -> Result<Box<dyn Source + Send>, SourceError> {
                let faults = current.lock().expect("faults lock").clone();
                Ok(Box::new(Faulty::new(faults)))
            });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the server");
        let handle = listen(
            listener,
            factory,
            ListenOptions::new(ServerOptions::new(SLOT)),
        )
        .expect("serve");
        let proxy = Proxy::start(handle.local_addr().to_string(), wire);
        Server { faults, proxy }
    }

    /// The fault is gone: every later connection is served normally.
    fn heal(&self) {
        *self.faults.lock().expect("faults lock") = Faults::default();
        self.proxy.set(Wire::Pass);
    }
}

/// A config with an uncompressed store (so bodies can be looked for in the
/// data file) and quick retries.
fn config(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("mailvault.toml");
    let text = format!(
        "[store]\nroot = {root:?}\ncompression = \"none\"\n\n[state]\ndatabase = {db:?}\n\n\
         [network]\nretries = 1\nretry_delay_secs = 0\nio_timeout_secs = 20\n\n\
         [[servers]]\nslot = \"{SLOT}\"\naddress = \"{server}\"\n",
        root = dir.join("stores"),
        db = dir.join("state.sqlite3"),
    );
    std::fs::write(&path, text).expect("write the config");
    path
}

fn run(config: &Path) -> BackupRun {
    let config = config.to_str().expect("utf-8 path");
    let mut args = vec!["--config", config];
    args.extend(USERS);
    backup(&args, &[])
}

fn store(dir: &Path, user: &str) -> PathBuf {
    dir.join("stores").join(user)
}

fn data_file(dir: &Path, user: &str) -> Vec<u8> {
    let Ok(entries) = std::fs::read_dir(store(dir, user)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tar"))
        .flat_map(|e| std::fs::read(e.path()).unwrap_or_default())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every store present passes `verify --full`.
fn verify_all(dir: &Path) {
    for user in USERS {
        if store(dir, user).join("backupstate.sqlite3").exists() {
            assert_verifies(&store(dir, user));
        }
    }
}

/// The store holds exactly the spool: every folder, every message.
fn assert_complete(dir: &Path, user: &str) {
    let view = store_view(&store(dir, user));
    let names: BTreeSet<&str> = view.keys().map(String::as_str).collect();
    assert_eq!(names, FOLDERS.into_iter().collect(), "{user}: folders");
    for f in FOLDERS {
        let guids: Vec<(u32, String)> = view[f]
            .live
            .iter()
            .map(|m| (m.uid, m.guid.clone()))
            .collect();
        let want: Vec<(u32, String)> = (1..=3)
            .map(|uid| (uid, Guid::of(&body(user, f, uid)).to_hex()))
            .collect();
        assert_eq!(guids, want, "{user} {f}: messages");
    }
}

/// Runs with the fault, checks what `check` wants of that run, verifies
/// every store, heals the server and checks the next run completes.
fn scenario(wire: Wire, faults: Faults, check: impl FnOnce(&BackupRun, &Path)) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(wire, faults);
    let cfg = config(dir.path(), &server.proxy.addr);
    let faulty = run(&cfg);
    assert_eq!(
        faulty.status.code(),
        Some(1),
        "a run with a fault exits 1: {:#}\n{}",
        faulty.summary,
        faulty.stderr
    );
    check(&faulty, dir.path());
    verify_all(dir.path());
    server.heal();
    let next = run(&cfg);
    assert!(next.status.success(), "{:#}\n{}", next.summary, next.stderr);
    for user in USERS {
        assert_eq!(next.outcome(user), "ok", "{:#}", next.summary);
        assert_complete(dir.path(), user);
    }
    verify_all(dir.path());
}

#[test]
fn a_server_that_closes_without_a_reply_fails_that_user_and_the_others_go_on() {
    scenario(Wire::CloseOn("bob".into()), Faults::default(), |r, dir| {
        assert_eq!(r.outcome("bob"), "failed", "{:#}", r.summary);
        assert!(!r.errors("bob").is_empty());
        for user in ["alice", "carol"] {
            assert_eq!(r.outcome(user), "ok", "{:#}", r.summary);
            assert_complete(dir, user);
        }
    });
}

#[test]
fn a_wrong_sha1_in_a_done_line_refuses_the_body_and_names_the_folder() {
    scenario(
        Wire::WrongSha1("alice".into()),
        Faults::default(),
        |r, dir| {
            assert_eq!(r.outcome("alice"), "partial", "{:#}", r.summary);
            assert!(r.errors("alice").contains("INBOX"), "{}", r.errors("alice"));
            let refused = body("alice", "INBOX", 1);
            assert!(
                !contains(&data_file(dir, "alice"), &refused),
                "the refused body was stored"
            );
            let view = store_view(&store(dir, "alice"));
            assert!(
                !view.contains_key("INBOX"),
                "INBOX stored regardless: {view:?}"
            );
            for user in ["bob", "carol"] {
                assert_eq!(r.outcome(user), "ok", "{:#}", r.summary);
            }
        },
    );
}

#[test]
fn a_connection_dropped_mid_data_commits_whole_messages_or_none() {
    scenario(
        Wire::CutMidData("alice".into()),
        Faults::default(),
        |r, dir| {
            assert_ne!(r.outcome("alice"), "ok", "{:#}", r.summary);
            assert!(r.errors("alice").contains("INBOX"), "{}", r.errors("alice"));
            let data = data_file(dir, "alice");
            // uid 1 came whole before the drop: stored whole or not at all;
            // uid 2 was cut: nothing of it may look stored.
            let whole = body("alice", "INBOX", 1);
            let cut = body("alice", "INBOX", 2);
            let half = &cut[..cut.len() / 2];
            assert!(!contains(&data, half), "a cut body was stored");
            if contains(&data, &whole[..64]) {
                assert!(
                    contains(&data, &whole),
                    "a partial body of uid 1 was stored"
                );
            }
            for user in ["bob", "carol"] {
                assert_eq!(r.outcome(user), "ok", "{:#}", r.summary);
            }
        },
    );
}

fn alice(folder: &str) -> Option<(String, String)> {
    Some(("alice".into(), folder.into()))
}

/// The other folders of alice, and the other users, are stored in full.
fn only_folder_failed(r: &BackupRun, dir: &Path, folder: &str, words: &str) {
    assert_eq!(r.outcome("alice"), "partial", "{:#}", r.summary);
    let errors = r.errors("alice");
    assert!(
        errors.contains(folder),
        "the error names {folder}: {errors}"
    );
    assert!(errors.contains(words), "the error says {words:?}: {errors}");
    let view = store_view(&store(dir, "alice"));
    for f in FOLDERS.iter().filter(|f| **f != folder) {
        assert_eq!(view[*f].live.len(), 3, "alice {f}");
    }
    for user in ["bob", "carol"] {
        assert_eq!(r.outcome(user), "ok", "{:#}", r.summary);
        assert_complete(dir, user);
    }
}

#[test]
fn a_folder_answered_no_is_skipped_and_named() {
    let faults = Faults {
        refuse: alice("INBOX.Work"),
        ..Faults::default()
    };
    scenario(Wire::Pass, faults, |r, dir| {
        only_folder_failed(r, dir, "INBOX.Work", "Permission denied");
    });
}

#[test]
fn a_folder_listed_twice_is_skipped_and_named() {
    let faults = Faults {
        twice: alice("INBOX.Work"),
        ..Faults::default()
    };
    scenario(Wire::Pass, faults, |r, dir| {
        only_folder_failed(r, dir, "INBOX.Work", "more than once");
    });
}

#[test]
fn a_cyrus_index_that_does_not_parse_is_skipped_and_named() {
    let faults = Faults {
        bad_index: alice("INBOX.Zeta"),
        ..Faults::default()
    };
    scenario(Wire::Pass, faults, |r, dir| {
        only_folder_failed(r, dir, "INBOX.Zeta", "cyrus.index");
    });
}
