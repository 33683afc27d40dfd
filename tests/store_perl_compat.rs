//! Stores written by the real Perl client (`perl-store/`, EXPECTED.md): we
//! open every one read-only and reproduce the ground truth, read every
//! message back, and rebuilding the state from the data file alone gives
//! the same v5 rows as the state the Perl tools made.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mailvault::formats::Guid;
use mailvault::store::rebuild::rebuild_state;
use mailvault::store::UserStore;
use rusqlite::{Connection, OpenFlags};

fn root() -> Option<PathBuf> {
    common::shared_fixtures().map(|dir| dir.join("perl-store"))
}

const VARIANTS: [&str; 4] = ["plain", "gz", "after-run1/plain", "after-run1/gz"];
const USERS: [&str; 3] = ["alice", "bob", "carol.smith"];

fn live(store: &UserStore) -> BTreeSet<(String, String)> {
    store.live_folders().unwrap().into_iter().collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn alice_after_run_2_matches_expected_md() {
    let Some(root) = root() else { return };
    for variant in ["plain", "gz"] {
        let store = UserStore::open_read_only(&root.join(variant).join("meta/alice")).unwrap();
        assert_eq!(
            live(&store),
            set(&[
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
            ])
        );
        let deleted: BTreeSet<String> = store
            .folders()
            .unwrap()
            .into_iter()
            .filter(|f| f.deleted.is_some())
            .map(|f| f.name)
            .collect();
        assert_eq!(
            deleted,
            ["INBOX.Junk", "INBOX.Old"].map(String::from).into()
        );
        assert_eq!(store.folder_for_name("INBOX.Old").unwrap(), None);
        let inbox = store
            .indexed("56f0f8a8-6f74-4ae9-a1d8-b4be690984d7")
            .unwrap();
        assert_eq!(inbox.len(), 7);
        assert_eq!(
            inbox[4],
            (
                5,
                "dce8cfc50eb1ab6e1c46a9159a806bb53cd697cb".parse().unwrap()
            )
        );
        assert_eq!(
            inbox[6].1.to_hex(),
            "3a885c12a4f4382e845e6c7a3cb0f5d643111899"
        );
        let ab = store
            .indexed("d7cbff9c-469e-4fb0-b649-49e7592bde62")
            .unwrap();
        assert_eq!(ab[1].1.to_hex(), "2dfa045bcc8aaf68fcd5dd6d814f5553d65b9387");
        let sub = store.meta_state("sub").unwrap().unwrap();
        assert_eq!(
            sub.sha1.as_deref(),
            Some("414c12ea171b1cc0d0ebc27371c2c03dded65046")
        );
        assert_eq!(sub.size, 66);
        assert!(store.meta_state("seen").unwrap().is_none());
        let idx = store
            .folder_file_state("56f0f8a8-6f74-4ae9-a1d8-b4be690984d7", "index")
            .unwrap()
            .unwrap();
        assert_eq!(
            idx.sha1.as_deref(),
            Some("e415214d27629e56b5aa07c9eb4c336926f3f071")
        );
        assert_eq!(idx.offset, 61440);
    }
}

/// All GUIDs in `files`, from the Perl sqlite directly.
fn perl_guids(dir: &Path) -> Vec<Guid> {
    let conn = Connection::open_with_flags(
        dir.join("backupstate.sqlite3"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut st = conn.prepare("SELECT guid FROM files").unwrap();
    let rows = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(|g| g.unwrap().parse().unwrap()).collect()
}

#[test]
fn every_message_of_every_perl_store_reads_back_with_its_sha1() {
    let Some(root) = root() else { return };
    let expected_counts = [("alice", 15, 14), ("bob", 6, 6), ("carol.smith", 4, 4)];
    for variant in VARIANTS {
        for (user, run2, run1) in expected_counts {
            let dir = root.join(variant).join("meta").join(user);
            let store = UserStore::open_read_only(&dir).unwrap();
            let guids = perl_guids(&dir);
            let want = if variant.starts_with("after-run1") {
                run1
            } else {
                run2
            };
            assert_eq!(guids.len(), want, "{variant}/{user}");
            for g in &guids {
                assert!(store.has_message(g).unwrap());
                let body = store.read_message(g).unwrap();
                assert_eq!(Guid::of(&body), *g);
            }
            let report = store.verify(true).unwrap();
            assert!(report.is_ok(), "{variant}/{user}: {:?}", report.problems);
        }
    }
}

fn table(conn: &Connection, sql: &str) -> Vec<String> {
    let mut st = conn.prepare(sql).unwrap();
    let n = st.column_count();
    let rows = st
        .query_map([], |r| {
            let cols: Vec<String> = (0..n)
                .map(|i| format!("{:?}", r.get::<_, rusqlite::types::Value>(i).unwrap()))
                .collect();
            Ok(cols.join("|"))
        })
        .unwrap();
    let mut v: Vec<String> = rows.map(Result::unwrap).collect();
    v.sort();
    v
}

const V5_TABLES: [&str; 7] = [
    "SELECT * FROM folders",
    "SELECT * FROM files",
    "SELECT * FROM indexed",
    "SELECT * FROM imap",
    "SELECT * FROM meta",
    "SELECT * FROM fmeta",
    "SELECT filename, size, offset, version FROM status",
];

#[test]
fn rebuilding_a_perl_store_gives_the_perl_rows_table_by_table() {
    let Some(root) = root() else { return };
    for variant in VARIANTS {
        for user in USERS {
            let meta = root.join(variant).join("meta").join(user);
            let name = mailvault::store::rebuild::find_data_file(
                &root.join(variant).join("data").join(user),
            )
            .unwrap();
            let tmp = tempfile::tempdir().unwrap();
            std::fs::copy(
                root.join(variant).join("data").join(user).join(&name),
                tmp.path().join(&name),
            )
            .unwrap();
            rebuild_state(tmp.path(), false).unwrap();
            let ours = Connection::open(tmp.path().join("backupstate.sqlite3")).unwrap();
            let perl = Connection::open_with_flags(
                meta.join("backupstate.sqlite3"),
                OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            for sql in V5_TABLES {
                assert_eq!(
                    table(&ours, sql),
                    table(&perl, sql),
                    "{variant}/{user}: {sql}"
                );
            }
            assert!(
                rebuild_state(tmp.path(), false).is_err(),
                "refuses to overwrite"
            );
            let store = UserStore::open_read_only(tmp.path()).unwrap();
            assert!(store.verify(false).unwrap().is_ok());
        }
    }
}
