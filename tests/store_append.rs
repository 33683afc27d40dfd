//! Our own writes: what an append transaction leaves on disk and in the
//! state, abort, locking, recovery of a torn tail, rebuild equality, verify
//! finding damage, and bad user names.

use std::path::Path;

use mailvault::formats::Guid;
use mailvault::store::rebuild::rebuild_state;
use mailvault::store::{user_dir, FileMeta, LockMode, StoreError, StoreOptions, UserStore};
use rusqlite::Connection;

fn msg(n: u32) -> Vec<u8> {
    format!(
        "Subject: message {n}\r\n\r\n{}\r\n",
        "body ".repeat(n as usize % 700)
    )
    .into_bytes()
}

fn opts(compress: bool) -> StoreOptions {
    StoreOptions {
        compress,
        member_bound: 8 * 1024,
        ..StoreOptions::default()
    }
}

/// One backup run: 40 messages in two folders, meta, index copies, links.
fn run(store: &mut UserStore, first: u32, time: u64) -> Vec<Guid> {
    let mut tx = store.begin(time).unwrap();
    let mut guids = Vec::new();
    for n in first..first + 40 {
        let body = msg(n);
        let g = Guid::of(&body);
        tx.add_message(
            &g,
            &FileMeta::new(
                body.len() as u64,
                1_700_000_000 + u64::from(n),
                1000 + u64::from(n),
            ),
            &body[..],
        )
        .unwrap();
        guids.push(g);
    }
    let sub = b"\x1fVER\x1f\t3\nNINBOX\t\n".to_vec();
    tx.add_meta(
        "sub",
        &FileMeta::new(sub.len() as u64, time, 7),
        &Guid::of(&sub),
        &sub[..],
    )
    .unwrap();
    for (name, uid) in [("INBOX", "u-inbox"), ("INBOX/with/slash", "u-slash")] {
        let recs: Vec<(u32, Guid)> = guids
            .iter()
            .enumerate()
            .map(|(i, g)| (first + i as u32, *g))
            .collect();
        let index = v20_index(&recs, time);
        tx.set_indexed(uid, &recs).unwrap();
        tx.add_folder_file(
            uid,
            "index",
            &FileMeta::new(index.len() as u64, time, 9),
            &Guid::of(&index),
            &index[..],
        )
        .unwrap();
        if tx.store().folder_for_name(name).unwrap().is_none() {
            tx.link(name, uid).unwrap();
        }
    }
    tx.commit().unwrap();
    guids
}

/// A minimal, valid minor-version-20 cyrus.index holding `recs`.
fn v20_index(recs: &[(u32, Guid)], time: u64) -> Vec<u8> {
    let mut h = vec![0u8; 192];
    h[8..12].copy_from_slice(&20u32.to_be_bytes());
    h[12..16].copy_from_slice(&192u32.to_be_bytes());
    h[16..20].copy_from_slice(&144u32.to_be_bytes());
    h[20..24].copy_from_slice(&(recs.len() as u32).to_be_bytes());
    h[24..32].copy_from_slice(&time.to_be_bytes());
    let crc = crc32fast::hash(&h[..188]);
    h[188..].copy_from_slice(&crc.to_be_bytes());
    for (uid, g) in recs {
        let mut r = vec![0u8; 144];
        r[0..4].copy_from_slice(&uid.to_be_bytes());
        r[60..80].copy_from_slice(&g.0);
        h.extend_from_slice(&r);
    }
    h
}

fn tables(path: &Path) -> Vec<Vec<String>> {
    let conn = Connection::open(path).unwrap();
    [
        "folders",
        "files",
        "indexed",
        "imap",
        "meta",
        "fmeta",
        "mv_members",
        "mv_history",
    ]
    .iter()
    .map(|t| {
        let mut st = conn.prepare(&format!("SELECT * FROM {t}")).unwrap();
        let n = st.column_count();
        let rows = st
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get::<_, rusqlite::types::Value>(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap();
        let mut v: Vec<String> = rows.map(Result::unwrap).collect();
        v.sort();
        v
    })
    .collect()
}

#[test]
fn appended_messages_read_back_and_rebuild_gives_the_same_tables() {
    for compress in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut store = UserStore::open(dir.path(), opts(compress)).unwrap();
        let mut all = run(&mut store, 1, 1_800_000_000);
        all.extend(run(&mut store, 30, 1_800_000_100));
        for g in &all {
            assert_eq!(Guid::of(&store.read_message(g).unwrap()), *g);
        }
        assert_eq!(
            store
                .folder_for_name("INBOX/with/slash")
                .unwrap()
                .as_deref(),
            Some("u-slash")
        );
        assert_eq!(store.indexed("u-inbox").unwrap().len(), 40);
        assert_eq!(store.index_history("u-inbox").unwrap().len(), 2);
        let at = store.index_at("u-inbox", 1_800_000_050).unwrap().unwrap();
        let (h, body) = store.read_entry_at(at.offset).unwrap();
        assert_eq!(h.name, "folders/u-inbox/cyrus.index");
        assert_eq!(&body[24..32], &1_800_000_000u64.to_be_bytes());
        if compress {
            assert!(
                store.members().unwrap().len() > 2,
                "member bound splits a run"
            );
        }
        assert!(store.verify(true).unwrap().is_ok());
        drop(store);

        let state = dir.path().join("backupstate.sqlite3");
        let before = tables(&state);
        assert!(matches!(
            rebuild_state(dir.path(), false),
            Err(StoreError::StateExists { .. })
        ));
        rebuild_state(dir.path(), true).unwrap();
        assert_eq!(tables(&state), before, "compress={compress}");
    }
}

#[test]
fn gnu_tar_and_zcat_read_what_the_store_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = UserStore::open(dir.path(), opts(true)).unwrap();
    run(&mut store, 1, 1_800_000_000);
    run(&mut store, 50, 1_800_000_100);
    let path = store.data_path();
    let out = std::process::Command::new("tar")
        .arg("tzf")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        listing.lines().filter(|l| l.starts_with("files/")).count(),
        80
    );
    assert!(listing.contains("imap/INBOX%2Fwith%2Fslash/"));
}

#[test]
fn abort_and_drop_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = UserStore::open(dir.path(), opts(true)).unwrap();
    run(&mut store, 1, 1_800_000_000);
    let status = store.status().unwrap();
    let len = std::fs::metadata(store.data_path()).unwrap().len();
    let body = msg(999);
    let g = Guid::of(&body);
    let mut tx = store.begin(1_800_000_500).unwrap();
    tx.add_message(&g, &FileMeta::new(body.len() as u64, 1, 1), &body[..])
        .unwrap();
    tx.abort().unwrap();
    {
        let mut tx = store.begin(1_800_000_600).unwrap();
        tx.add_message(&g, &FileMeta::new(body.len() as u64, 1, 1), &body[..])
            .unwrap();
    }
    assert!(!store.has_message(&g).unwrap());
    assert_eq!(store.status().unwrap(), status);
    assert_eq!(std::fs::metadata(store.data_path()).unwrap().len(), len);
}

#[test]
fn a_body_that_does_not_match_its_guid_fails_the_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = UserStore::open(dir.path(), opts(false)).unwrap();
    let body = msg(1);
    let wrong = Guid::of(b"something else");
    let mut tx = store.begin(1).unwrap();
    let err = tx
        .add_message(&wrong, &FileMeta::new(body.len() as u64, 1, 1), &body[..])
        .unwrap_err();
    assert!(matches!(err, StoreError::ContentMismatch { .. }), "{err}");
    assert!(matches!(tx.commit(), Err(StoreError::Poisoned(_))));
    assert!(!store.has_message(&wrong).unwrap());
}

#[test]
fn a_second_writer_is_refused_or_waits() {
    let dir = tempfile::tempdir().unwrap();
    let store = UserStore::open(dir.path(), opts(true)).unwrap();
    assert!(matches!(
        UserStore::open(dir.path(), opts(true)),
        Err(StoreError::Locked(_))
    ));
    let p = dir.path().to_path_buf();
    let waiter = std::thread::spawn(move || {
        UserStore::open(
            &p,
            StoreOptions {
                lock: LockMode::Wait,
                ..opts(true)
            },
        )
        .is_ok()
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!waiter.is_finished());
    drop(store);
    assert!(waiter.join().unwrap());
}

#[test]
fn a_torn_tail_is_cut_and_a_short_file_is_reported_not_wiped() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = UserStore::open(dir.path(), opts(true)).unwrap();
    run(&mut store, 1, 1_800_000_000);
    let path = store.data_path();
    let len = std::fs::metadata(&path).unwrap().len();
    drop(store);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all_at_end(b"torn garbage");
    let store = UserStore::open(dir.path(), opts(true)).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    assert!(store.verify(false).unwrap().is_ok());
    drop(store);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 10).unwrap();
    let err = UserStore::open(dir.path(), opts(true)).err().unwrap();
    assert!(
        matches!(err, StoreError::DataFileShorter { expected, actual, .. } if expected == len && actual == len - 10)
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        len - 10,
        "never wiped"
    );
}

trait AppendBytes {
    fn write_all_at_end(self, b: &[u8]);
}

impl AppendBytes for std::fs::File {
    fn write_all_at_end(mut self, b: &[u8]) {
        use std::io::Write;
        self.write_all(b).unwrap();
    }
}

#[test]
fn verify_reports_a_corrupt_member_and_a_body_that_does_not_match_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = UserStore::open(dir.path(), opts(false)).unwrap();
    let guids = run(&mut store, 1, 1_800_000_000);
    let path = store.data_path();
    let (_, body) = store.read_entry_at(0).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[512] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let report = store.verify(true).unwrap();
    assert!(!report.is_ok());
    assert!(
        report.problems[0]
            .place
            .starts_with(&format!("files/{}", guids[0])),
        "{:?}",
        report.problems
    );
    assert!(store.read_message(&guids[0]).is_err());
    assert_ne!(body[0], bytes[512]);

    let dir = tempfile::tempdir().unwrap();
    let mut store = UserStore::open(dir.path(), opts(true)).unwrap();
    run(&mut store, 1, 1_800_000_000);
    let path = store.data_path();
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let report = store.verify(false).unwrap();
    assert!(
        report.problems.iter().any(|p| p.problem.contains("sha1")),
        "{:?}",
        report.problems
    );
}

#[test]
fn user_names_that_escape_the_root_are_refused() {
    let root = Path::new("/srv/mailvault");
    for bad in ["", ".", "..", "../x", "a/b", ".lock", "a\0b"] {
        assert!(
            matches!(user_dir(root, bad), Err(StoreError::BadUserName(_))),
            "{bad:?}"
        );
    }
    assert_eq!(
        user_dir(root, "carol.smith").unwrap(),
        root.join("carol.smith")
    );
}

#[test]
fn a_read_only_open_never_writes_and_refuses_to_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = UserStore::open(dir.path(), opts(true)).unwrap();
    run(&mut store, 1, 1_800_000_000);
    drop(store);
    let before = std::fs::read(dir.path().join("backupstate.sqlite3")).unwrap();
    let mut ro = UserStore::open_read_only(dir.path()).unwrap();
    assert!(ro.verify(true).unwrap().is_ok());
    assert!(matches!(ro.begin(1), Err(StoreError::ReadOnly(_))));
    drop(ro);
    assert_eq!(
        std::fs::read(dir.path().join("backupstate.sqlite3")).unwrap(),
        before
    );
}

#[test]
fn a_transaction_that_stores_nothing_writes_nothing_and_records_no_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = UserStore::open(dir.path(), opts(true)).unwrap();
    run(&mut store, 1, 1_800_000_000);
    let runs = |dir: &Path| -> i64 {
        Connection::open(dir.join("backupstate.sqlite3"))
            .unwrap()
            .query_row("SELECT count(*) FROM mv_runs", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(runs(dir.path()), 1);
    let state = std::fs::read(dir.path().join("backupstate.sqlite3")).unwrap();
    let data = std::fs::read(store.data_path()).unwrap();
    let status = store.status().unwrap();

    // A no-change run: the guids it looks up are all there already.
    let known = Guid::of(&msg(1));
    let tx = store.begin(1_800_000_100).unwrap();
    assert!(tx.has_message(&known).unwrap());
    let summary = tx.commit().unwrap();
    assert_eq!((summary.bytes_added, summary.messages_added), (0, 0));
    assert_eq!(summary.size, data.len() as u64);

    assert_eq!(
        runs(dir.path()),
        1,
        "no run row for a run that stored nothing"
    );
    assert_eq!(
        std::fs::read(dir.path().join("backupstate.sqlite3")).unwrap(),
        state
    );
    assert_eq!(std::fs::read(store.data_path()).unwrap(), data);
    assert_eq!(store.status().unwrap(), status);

    // A link alone (a rename) stores something: it commits and is recorded.
    let mut tx = store.begin(1_800_000_200).unwrap();
    tx.link("INBOX/renamed", "u-slash").unwrap();
    tx.commit().unwrap();
    assert_eq!(runs(dir.path()), 2);
    assert_eq!(
        store.folder_for_name("INBOX/renamed").unwrap().as_deref(),
        Some("u-slash")
    );
}
