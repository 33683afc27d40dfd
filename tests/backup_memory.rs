//! The per-user algorithm against an in-memory server: what a run fetches,
//! what it stores, and how it contains failures.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use mailvault::backup::{backup_user, BackupOptions, Outcome, UserReport};
use mailvault::formats::cyrus_index::{
    write_index, IndexHeader, IndexRecord, Timestamp, FLAG_INTERNAL_EXPUNGED,
};
use mailvault::formats::Guid;
use mailvault::progress::NoProgress;
use mailvault::protocol::memory::{MemoryFile, MemoryFolder, MemorySource, MemoryUser};
use mailvault::source::{
    FileSink, FileStat, FolderId, FolderStatus, MetaFile, Source, SourceError, UserFile,
};
use mailvault::store::{StoreOptions, UserStore};

fn file(bytes: &[u8], inode: u64) -> MemoryFile {
    MemoryFile {
        mtime: 1_700_000_000,
        inode,
        bytes: bytes.to_vec(),
    }
}

fn message(n: u32) -> Vec<u8> {
    format!("From: a@example.org\r\nSubject: message {n}\r\n\r\nbody {n}\r\n").into_bytes()
}

/// A folder whose cyrus.index (v17, written by our writer) lists `msgs`
/// (uid, body, system flags, internal flags).
fn folder(name: &str, uniqueid: &str, msgs: &[(u32, Vec<u8>, u32, u32)]) -> MemoryFolder {
    let records: Vec<IndexRecord> = msgs
        .iter()
        .map(|(uid, body, flags, internal)| IndexRecord {
            uid: *uid,
            internaldate: Timestamp::from_secs(1_700_000_000 + u64::from(*uid)),
            size: body.len() as u64,
            system_flags: *flags,
            internal_flags: *internal,
            guid: Guid::of(body),
            modseq: u64::from(*uid),
            ..Default::default()
        })
        .collect();
    let header = IndexHeader {
        minor_version: 17,
        uidvalidity: 42,
        last_uid: msgs.iter().map(|m| m.0).max().unwrap_or(0),
        exists: msgs.len() as u32,
        highestmodseq: 100,
        ..Default::default()
    };
    let index = write_index(&header, &records).unwrap();
    let mut meta = BTreeMap::new();
    meta.insert(
        MetaFile::Header,
        file(format!("header of {name}").as_bytes(), 7),
    );
    meta.insert(MetaFile::Index, file(&index, 8));
    MemoryFolder {
        name: name.into(),
        uniqueid: uniqueid.into(),
        jmapid: "-".into(),
        meta,
        messages: msgs
            .iter()
            .map(|(uid, body, ..)| (*uid, file(body, 1000 + u64::from(*uid))))
            .collect(),
    }
}

fn alice() -> MemorySource {
    let mut files = BTreeMap::new();
    files.insert(UserFile::Sub, file(b"\x1fVER\x1f\t3\nNINBOX\t\n", 3));
    let inbox = folder(
        "INBOX",
        "u-inbox",
        &[
            (1, message(1), 0x10, 0),
            (2, message(2), 0, 0),
            (3, message(3), 0x14, FLAG_INTERNAL_EXPUNGED),
        ],
    );
    // uid 1 of Work is byte-identical to INBOX uid 1: one file in the store.
    let work = folder(
        "INBOX.Work",
        "u-work",
        &[(1, message(1), 0, 0), (2, message(20), 0, 0)],
    );
    MemorySource {
        users: vec![MemoryUser {
            name: "alice".into(),
            files,
            folders: vec![inbox, work],
        }],
    }
}

/// Counts the calls that cost the server I/O.
struct Counting<S> {
    inner: S,
    fmeta: usize,
    fdata_uids: usize,
    fail_fmeta_of: Option<String>,
    /// Close the connection after this many FDATA files.
    drop_after_files: Option<usize>,
}

impl<S> Counting<S> {
    fn new(inner: S) -> Counting<S> {
        Counting {
            inner,
            fmeta: 0,
            fdata_uids: 0,
            fail_fmeta_of: None,
            drop_after_files: None,
        }
    }
}

/// Passes `limit` files on, then fails as a dropped connection would.
struct Cutoff<'a> {
    inner: &'a mut dyn FileSink,
    left: usize,
}

impl FileSink for Cutoff<'_> {
    fn file(
        &mut self,
        head: &mailvault::source::FileHead,
        body: &mut dyn Read,
    ) -> Result<(), mailvault::source::SinkError> {
        if self.left == 0 {
            return Err(mailvault::source::SinkError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset mid-DATA",
            )));
        }
        self.left -= 1;
        self.inner.file(head, body)
    }
    fn verified(
        &mut self,
        head: &mailvault::source::FileHead,
        sha1: Guid,
    ) -> Result<(), mailvault::source::SinkError> {
        self.inner.verified(head, sha1)
    }
    fn missing(
        &mut self,
        name: &str,
        why: &mailvault::source::ItemFailure,
    ) -> Result<(), mailvault::source::SinkError> {
        self.inner.missing(name, why)
    }
}

impl<S: Source> Source for Counting<S> {
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
        self.inner.folders(user)
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
        self.fmeta += 1;
        if self.fail_fmeta_of.as_deref() == Some(folder) {
            return Err(SourceError::No(format!("no such folder {folder}")));
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
        self.fdata_uids += uids.len();
        match self.drop_after_files {
            Some(left) => {
                let mut cut = Cutoff { inner: sink, left };
                match self.inner.fetch_messages(user, folder, uids, &mut cut) {
                    Err(SourceError::Sink { item, .. }) => {
                        Err(SourceError::Closed(format!("while reading {item}")))
                    }
                    other => other,
                }
            }
            None => self.inner.fetch_messages(user, folder, uids, sink),
        }
    }
}

fn run(source: &mut dyn Source, store: &mut UserStore) -> UserReport {
    backup_user(
        source,
        store,
        "alice",
        &BackupOptions::default(),
        &NoProgress,
    )
    .unwrap()
}

fn open(dir: &std::path::Path) -> UserStore {
    UserStore::open(dir, StoreOptions::default()).unwrap()
}

fn live(store: &UserStore) -> BTreeMap<String, String> {
    store.live_folders().unwrap().into_iter().collect()
}

fn verify_clean(store: &UserStore) {
    let report = store.verify(true).unwrap();
    assert!(report.is_ok(), "verify: {:?}", report.problems);
}

#[test]
fn a_first_backup_stores_each_distinct_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let mut source = Counting::new(alice());
    let report = run(&mut source, &mut store);
    assert_eq!(report.outcome, Outcome::Ok);
    assert_eq!(report.folders_seen, 2);
    assert_eq!(report.folders_changed, 2);
    // 4 distinct bodies: INBOX 1,2,3 (3 is expunged but present) and Work 2.
    assert_eq!(report.messages_fetched, 4);
    assert_eq!(
        source.fdata_uids, 4,
        "Work uid 1 is INBOX uid 1: not fetched again"
    );
    assert_eq!(
        live(&store),
        BTreeMap::from([
            ("INBOX".into(), "u-inbox".into()),
            ("INBOX.Work".into(), "u-work".into())
        ])
    );
    let inbox: Vec<u32> = store
        .indexed("u-inbox")
        .unwrap()
        .iter()
        .map(|(u, _)| *u)
        .collect();
    assert_eq!(inbox, [1, 2, 3]);
    assert_eq!(store.indexed("u-work").unwrap()[0].1, Guid::of(&message(1)));
    assert_eq!(
        store.read_message(&Guid::of(&message(20))).unwrap(),
        message(20)
    );
    assert!(store.meta_state("sub").unwrap().is_some());
    verify_clean(&store);
}

#[test]
fn a_rerun_without_changes_fetches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    run(&mut alice(), &mut store);
    let before = store.status().unwrap();
    let mut source = Counting::new(alice());
    let report = run(&mut source, &mut store);
    assert_eq!((source.fmeta, source.fdata_uids), (0, 0));
    assert_eq!((report.folders_changed, report.messages_fetched), (0, 0));
    assert_eq!(store.status().unwrap(), before, "nothing appended");
}

#[test]
fn a_rename_only_moves_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    run(&mut alice(), &mut store);
    let mut renamed = alice();
    renamed.users[0].folders[1].name = "INBOX.Archive".into();
    let mut source = Counting::new(renamed);
    let report = run(&mut source, &mut store);
    assert_eq!((source.fmeta, source.fdata_uids), (0, 0));
    assert_eq!(report.outcome, Outcome::Ok);
    assert_eq!(
        live(&store).get("INBOX.Archive").map(String::as_str),
        Some("u-work")
    );
    assert!(!live(&store).contains_key("INBOX.Work"));
    let deleted: Vec<String> = store
        .folders()
        .unwrap()
        .into_iter()
        .filter(|f| f.deleted.is_some())
        .map(|f| f.name)
        .collect();
    assert!(deleted.contains(&"INBOX.Work".to_string()), "{deleted:?}");
}

#[test]
fn a_flag_change_fetches_the_index_but_no_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    run(&mut alice(), &mut store);
    let mut flagged = alice();
    let work = folder(
        "INBOX.Work",
        "u-work",
        &[(1, message(1), 0x02, 0), (2, message(20), 0x10, 0)],
    );
    flagged.users[0].folders[1] = work;
    flagged.users[0].folders[1]
        .meta
        .get_mut(&MetaFile::Index)
        .unwrap()
        .mtime += 5;
    let mut source = Counting::new(flagged);
    let report = run(&mut source, &mut store);
    assert_eq!((source.fmeta, source.fdata_uids), (1, 0));
    assert_eq!(report.folders_changed, 1);
    assert_eq!(
        store.index_history("u-work").unwrap().len(),
        2,
        "both index copies kept"
    );
}

#[test]
fn a_message_that_changed_underfoot_fails_its_folder_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let mut source = alice();
    // The file of Work uid 2 no longer matches the GUID its index names.
    source.users[0].folders[1]
        .messages
        .get_mut(&2)
        .unwrap()
        .bytes = b"rewritten".to_vec();
    let report = run(&mut source, &mut store);
    assert_eq!(report.outcome, Outcome::Partial);
    assert_eq!(report.folder_errors.len(), 1);
    assert_eq!(report.folder_errors[0].folder, "INBOX.Work");
    assert!(
        report.folder_errors[0]
            .problem
            .contains("uid 2 changed underfoot"),
        "{:?}",
        report.folder_errors
    );
    assert!(
        live(&store).contains_key("INBOX"),
        "the other folder is backed up"
    );
    assert!(
        !live(&store).contains_key("INBOX.Work"),
        "the failed folder is not linked"
    );
    verify_clean(&store);
}

#[test]
fn a_corrupt_index_is_a_named_folder_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let mut source = alice();
    let index = &mut source.users[0].folders[0]
        .meta
        .get_mut(&MetaFile::Index)
        .unwrap()
        .bytes;
    let last = index.len() - 1;
    index[last] ^= 0xff; // breaks the last record's CRC
    let report = run(&mut source, &mut store);
    assert_eq!(report.outcome, Outcome::Partial);
    assert_eq!(report.folder_errors[0].folder, "INBOX");
    assert!(
        report.folder_errors[0].problem.contains("cyrus.index"),
        "{:?}",
        report.folder_errors
    );
    assert!(live(&store).contains_key("INBOX.Work"));
    verify_clean(&store);
}

#[test]
fn a_refused_folder_and_a_folder_listed_twice_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let mut twice = alice();
    let dup = twice.users[0].folders[1].clone();
    twice.users[0].folders.push(dup);
    let mut source = Counting::new(twice);
    source.fail_fmeta_of = Some("INBOX".into());
    let report = run(&mut source, &mut store);
    assert_eq!(report.outcome, Outcome::Partial);
    let failed: BTreeSet<&str> = report
        .folder_errors
        .iter()
        .map(|e| e.folder.as_str())
        .collect();
    assert_eq!(failed, BTreeSet::from(["INBOX", "INBOX.Work"]));
    assert!(report
        .folder_errors
        .iter()
        .any(|e| e.problem.contains("more than once")));
    verify_clean(&store);
}

#[test]
fn a_connection_lost_mid_fdata_keeps_what_was_verified_and_the_next_run_completes() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let mut source = Counting::new(alice());
    source.drop_after_files = Some(1);
    let report = run(&mut source, &mut store);
    assert_eq!(report.outcome, Outcome::Partial);
    assert_eq!(
        report.folder_errors.len(),
        1,
        "the run stops at the broken folder"
    );
    assert_eq!(report.folder_errors[0].folder, "INBOX");
    assert!(
        store.has_message(&Guid::of(&message(1))).unwrap(),
        "the verified message is committed"
    );
    assert!(live(&store).is_empty());
    verify_clean(&store);
    let again = run(&mut alice(), &mut store);
    assert_eq!(again.outcome, Outcome::Ok);
    assert_eq!(again.messages_fetched, 3, "only what the first run lacked");
    verify_clean(&store);
}

#[test]
fn a_deleted_folder_gets_a_deletion_marker() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    run(&mut alice(), &mut store);
    let mut fewer = alice();
    fewer.users[0].folders.pop();
    run(&mut fewer, &mut store);
    assert_eq!(live(&store).keys().collect::<Vec<_>>(), ["INBOX"]);
    let work = store
        .folders()
        .unwrap()
        .into_iter()
        .find(|f| f.name == "INBOX.Work")
        .unwrap();
    assert!(work.deleted.is_some());
    assert_eq!(
        store.indexed("u-work").unwrap().len(),
        2,
        "kept until compaction ages it out"
    );
}

#[test]
fn a_flag_change_in_the_same_second_as_the_last_backup_is_not_missed() {
    // A minute ahead, so that the runs below read the files no later than
    // the second of their last change whatever the clock does meanwhile.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 60;
    let in_this_second = |mut source: MemorySource| {
        for f in &mut source.users[0].folders {
            f.meta.get_mut(&MetaFile::Index).unwrap().mtime = now;
        }
        source
    };
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let first = run(&mut in_this_second(alice()), &mut store);
    assert_eq!(
        first.unsettled, 2,
        "both indexes were read in the second they changed"
    );
    // Cyrus rewrites a record in place: same size, same inode, same second.
    let mut flagged = in_this_second(alice());
    flagged.users[0].folders[1] = folder(
        "INBOX.Work",
        "u-work",
        &[(1, message(1), 0x02, 0), (2, message(20), 0, 0)],
    );
    let flagged = in_this_second(flagged);
    let mut source = Counting::new(flagged.clone());
    run(&mut source, &mut store);
    assert_eq!(
        source.fmeta, 2,
        "both folders are fetched again despite equal stats"
    );
    let latest = store
        .index_history("u-work")
        .unwrap()
        .last()
        .copied()
        .unwrap();
    let (_, bytes) = store.read_entry_at(latest.offset).unwrap();
    let work_index = &flagged.users[0].folders[1].meta[&MetaFile::Index].bytes;
    assert_eq!(&bytes, work_index, "the stored index is the flagged one");
}
