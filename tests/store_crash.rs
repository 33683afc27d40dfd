//! Crash safety with a real process: the test binary re-executes itself as
//! a child that appends commit after commit, printing each GUID only after
//! its commit returned; the parent SIGKILLs it at random moments, reopens
//! the store (recovering any torn tail), verifies it, checks that every
//! GUID reported committed reads back, and starts the next child.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mailvault::formats::Guid;
use mailvault::store::{FileMeta, LockMode, StoreOptions, UserStore};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const CHILD_ENV: &str = "MAILVAULT_CRASH_CHILD_DIR";
const KILLS: usize = 200;

fn options() -> StoreOptions {
    StoreOptions {
        compress: true,
        member_bound: 16 * 1024,
        lock: LockMode::Wait,
        ..StoreOptions::default()
    }
}

/// Small xorshift so the test needs no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn child(dir: &str) {
    let seed = u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut rng = Rng(seed);
    let mut store = UserStore::open(std::path::Path::new(dir), options()).unwrap();
    loop {
        let mut tx = store.begin(1_800_000_000).unwrap();
        let mut added = Vec::new();
        for _ in 0..(1 + rng.next() % 8) {
            let len = 200 + (rng.next() % 6000) as usize;
            let body: Vec<u8> = (0..len).map(|_| (rng.next() % 251) as u8).collect();
            let g = Guid::of(&body);
            tx.add_message(&g, &FileMeta::new(len as u64, 1, 1), &body[..])
                .unwrap();
            added.push(g);
        }
        tx.commit().unwrap();
        for g in added {
            println!("{g}");
        }
    }
}

#[test]
fn killed_writers_never_lose_a_commit_or_leave_a_broken_store() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut committed: Vec<Guid> = Vec::new();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let started = Instant::now();
    for round in 0..KILLS {
        let mut c = Command::new(&exe)
            .args([
                "--exact",
                "killed_writers_never_lose_a_commit_or_leave_a_broken_store",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = c.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(g) = line.trim().parse::<Guid>() {
                    let _ = tx.send(g);
                }
            }
        });
        std::thread::sleep(Duration::from_millis(20 + rng.next() % 120));
        kill(Pid::from_raw(c.id() as i32), Signal::SIGKILL).unwrap();
        c.wait().unwrap();
        reader.join().unwrap();
        committed.extend(rx.try_iter());

        let store = UserStore::open(dir.path(), options()).unwrap();
        if round % 50 == 49 || round == KILLS - 1 {
            let report = store.verify(round == KILLS - 1).unwrap();
            assert!(report.is_ok(), "round {round}: {:?}", report.problems);
            for g in &committed {
                assert_eq!(
                    Guid::of(&store.read_message(g).unwrap()),
                    *g,
                    "round {round}"
                );
            }
        } else {
            for g in committed.iter().rev().take(5) {
                assert!(store.has_message(g).unwrap(), "round {round}: {g} lost");
            }
        }
    }
    eprintln!(
        "{KILLS} kills, {} committed messages, {:?}",
        committed.len(),
        started.elapsed()
    );
    assert!(committed.len() > KILLS, "children did commit work");
    let mut store = UserStore::open(dir.path(), options()).unwrap();
    let body = b"one more after all the crashes".to_vec();
    let mut tx = store.begin(1).unwrap();
    tx.add_message(
        &Guid::of(&body),
        &FileMeta::new(body.len() as u64, 1, 1),
        &body[..],
    )
    .unwrap();
    tx.commit().unwrap();
    assert!(store.verify(true).unwrap().is_ok());
}
