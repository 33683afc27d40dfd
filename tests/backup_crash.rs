//! A real `mailvault backup` process killed with SIGKILL at random points of
//! a first backup of the sample spool (`sample/cyrus-3.6`, written by a real
//! Cyrus 3.6, read through the local source as `config/example.toml` says):
//! after every kill each user store passes `mailvault verify --full`, and a
//! final uninterrupted run stores every message a clean run stores.
//!
//! The kill times come from a seed printed on failure; set
//! `MAILVAULT_CRASH_SEED` to replay a run.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{assert_verifies, guid_sets, mailvault};

const KILLS: usize = 30;
/// Kills against one store before starting a fresh one: both first backups
/// and runs resuming after a crash are cut.
const KILLS_PER_STORE: usize = 2;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `mailvault backup --config config/example.toml --all` into `dir`.
fn backup_command(dir: &Path) -> Command {
    let mut cmd = mailvault();
    cmd.current_dir(repo())
        .args([
            "backup",
            "--config",
            "config/example.toml",
            "--all",
            "--json",
        ])
        .env("MAILVAULT_STORE__ROOT", dir.join("stores"))
        .env("MAILVAULT_STATE__DATABASE", dir.join("state.sqlite3"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn complete_run(dir: &Path) {
    let out = backup_command(dir).output().expect("run mailvault backup");
    assert!(
        out.status.success(),
        "an uninterrupted run failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn user_stores(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir.join("stores")) else {
        return Vec::new();
    };
    let mut stores: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("backupstate.sqlite3").exists())
        .collect();
    stores.sort();
    stores
}

type Messages = BTreeMap<String, BTreeMap<String, std::collections::BTreeSet<String>>>;

/// Per user, per folder, the GUIDs stored.
fn messages(dir: &Path) -> Messages {
    user_stores(dir)
        .into_iter()
        .map(|s| {
            let user = s.file_name().map(|n| n.to_string_lossy().into_owned());
            (user.unwrap_or_default(), guid_sets(&s))
        })
        .collect()
}

/// xorshift64*: kill times without a dependency, replayable from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn seed() -> u64 {
    std::env::var("MAILVAULT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        })
}

#[test]
fn sigkill_at_random_points_of_a_first_backup_leaves_verifiable_stores() {
    if !repo().join("sample/cyrus-3.6/imapd.conf").exists() {
        eprintln!("SKIPPED sigkill test: sample/cyrus-3.6 absent");
        return;
    }
    let clean = tempfile::tempdir().expect("temp dir");
    let started = std::time::Instant::now();
    complete_run(clean.path());
    let clean_took = started.elapsed();
    let want = messages(clean.path());
    assert!(!want.is_empty(), "the clean run stored no user");
    for store in user_stores(clean.path()) {
        assert_verifies(&store);
    }

    let seed = seed();
    let mut rng = Rng(seed);
    // Kill anywhere from the start to a little past a clean run's length.
    let span = (clean_took.as_millis() as u64).max(200) * 11 / 10;
    let mut dir = tempfile::tempdir().expect("temp dir");
    let mut span = span;
    let mut kills = 0;
    let mut attempts = 0;
    // Count only kills that hit a running backup; a run that finished first
    // (the machine is shared, timings vary) shortens the span instead.
    while kills < KILLS && attempts < 3 * KILLS {
        attempts += 1;
        if kills > 0 && kills % KILLS_PER_STORE == 0 {
            dir = tempfile::tempdir().expect("temp dir");
        }
        let at = Duration::from_millis(5 + rng.next() % span);
        let mut child = backup_command(dir.path())
            .spawn()
            .expect("start mailvault backup");
        std::thread::sleep(at);
        let running = child.try_wait().expect("poll the backup").is_none();
        let _ = child.kill();
        let _ = child.wait();
        if running {
            kills += 1;
        } else {
            span = (span * 3 / 4).max(50);
            dir = tempfile::tempdir().expect("temp dir");
            continue;
        }
        let kill = kills;
        eprintln!("verifying after kill {kill} at {at:?} (MAILVAULT_CRASH_SEED={seed})");
        // The stores are independent: check them side by side.
        std::thread::scope(|s| {
            let checks: Vec<_> = user_stores(dir.path())
                .into_iter()
                .map(|store| s.spawn(move || assert_verifies(&store)))
                .collect();
            for check in checks {
                if let Err(panic) = check.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        });
    }
    assert!(
        kills >= KILLS * 2 / 3,
        "only {kills} of {attempts} kills hit a running backup (seed {seed})"
    );

    // The last store was cut once or twice: one more run completes it.
    complete_run(dir.path());
    assert_eq!(
        messages(dir.path()),
        want,
        "after the kills (seed {seed}), not every message is stored"
    );
    for store in user_stores(dir.path()) {
        assert_verifies(&store);
    }
}

/// A writer killed inside a sqlite transaction leaves a hot `-journal` that
/// only a writer may roll back. `verify` and `ls` open the store read-only and
/// must still read its committed state, without writing to the store.
#[test]
fn verify_reads_a_store_whose_writer_was_killed_mid_transaction() {
    if !repo().join("sample/cyrus-3.6/imapd.conf").exists() {
        eprintln!("SKIPPED hot journal test: sample/cyrus-3.6 absent");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    complete_run(dir.path());
    let store = user_stores(dir.path()).remove(0);
    let before = guid_sets(&store);
    let state = store.join("backupstate.sqlite3");
    // A transaction big enough to spill into the database file, then SIGKILL.
    let script = r#"
import os, signal, sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA cache_size=2")
c.execute("BEGIN IMMEDIATE")
c.execute("CREATE TABLE spill(x)")
c.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<2000) INSERT INTO spill SELECT randomblob(500) FROM n")
os.kill(os.getpid(), signal.SIGKILL)
"#;
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&state)
        .status()
        .expect("python3");
    assert!(!status.success(), "the writer was meant to die");
    let journal = store.join("backupstate.sqlite3-journal");
    assert!(journal.exists(), "no hot journal was left");
    let db_bytes = std::fs::read(&state).expect("state file");
    let journal_bytes = std::fs::read(&journal).expect("journal");

    assert_verifies(&store);
    assert_eq!(guid_sets(&store), before, "ls after the kill");
    assert_eq!(
        std::fs::read(&state).expect("state"),
        db_bytes,
        "verify wrote"
    );
    assert_eq!(std::fs::read(&journal).expect("journal"), journal_bytes);
    // The next writer rolls the journal back and goes on.
    complete_run(dir.path());
    assert_eq!(guid_sets(&store), before);
    assert_verifies(&store);
}

/// A writer killed before its first commit leaves a state file with no
/// tables (empty, or with a hot journal of the schema's creation): the
/// store holds nothing yet, and reads as an empty store.
#[test]
fn verify_reads_a_store_killed_before_its_first_commit_as_empty() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    std::fs::write(empty.join("backupstate.sqlite3"), b"").expect("state file");
    assert_verifies(&empty);
    assert!(guid_sets(&empty).is_empty());

    let torn = dir.path().join("torn");
    std::fs::create_dir(&torn).expect("mkdir");
    let script = r#"
import os, signal, sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA cache_size=2")
c.execute("BEGIN IMMEDIATE")
c.execute("CREATE TABLE status(x)")
c.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<2000) INSERT INTO status SELECT randomblob(500) FROM n")
os.kill(os.getpid(), signal.SIGKILL)
"#;
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(torn.join("backupstate.sqlite3"))
        .status()
        .expect("python3");
    assert!(!status.success(), "the writer was meant to die");
    assert!(torn.join("backupstate.sqlite3-journal").exists());
    assert_verifies(&torn);
    assert!(guid_sets(&torn).is_empty());
}
