//! Store benchmarks (run by `bench/store.sh`; std and the crate only).
//!
//! `store_bench corpus DIR COUNT SEED` writes COUNT messages of 2-50 KB as
//! `DIR/files/<sha1>`; `store_bench append STORE CORPUS FOLDERS` appends
//! them in one run spread over FOLDERS folders (with index and header
//! copies) and prints `secs state_bytes data_bytes vmhwm_kb`;
//! `store_bench read STORE GUID` reads one message and prints
//! `secs vmhwm_kb`. Each mode runs in its own process so VmHWM is its own.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mailvault::formats::cyrus_index::{write_index, IndexHeader, IndexRecord, Timestamp};
use mailvault::formats::Guid;
use mailvault::store::{FileMeta, StoreOptions, UserStore};

const WORDS: &[&str] = &[
    "the", "backup", "of", "mail", "server", "message", "meeting", "project", "report", "please",
    "find", "attached", "regards", "thanks", "tomorrow", "invoice", "schedule", "review", "draft",
    "budget", "quarter", "customer", "update", "agenda", "notes", "travel", "office", "team",
    "deadline", "question", "answer", "weekly", "monthly", "and", "to", "for", "with", "on",
];

/// A deterministic pseudo-random generator (xorshift), so runs compare.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn message(rng: &mut Rng, n: u64) -> Vec<u8> {
    let size = 2048 + (rng.next() % (48 * 1024)) as usize;
    let mut m = format!(
        "From: Sender {} <s{}@example.net>\r\nTo: user@example.org\r\nSubject: message {n} {:x}\r\n\
         Date: Mon, 6 Jan 2025 10:{:02}:00 +0000\r\nMessage-ID: <{n}.{:x}@example.net>\r\n\r\n",
        n % 97,
        n % 97,
        rng.next(),
        n % 60,
        rng.next()
    );
    while m.len() < size {
        let w = WORDS[(rng.next() % WORDS.len() as u64) as usize];
        m.push_str(w);
        m.push_str(if rng.next() % 12 == 0 { "\r\n" } else { " " });
    }
    if rng.next() % 4 == 0 {
        // Some attachment-like base64 noise, which does not compress well.
        let mut noise = String::new();
        for _ in 0..(size / 8) {
            noise.push(char::from(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                    [(rng.next() % 64) as usize],
            ));
        }
        m.push_str("\r\n");
        m.push_str(&noise);
    }
    m.into_bytes()
}

fn vmhwm_kb() -> u64 {
    let s = fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn corpus(dir: &Path, count: u64, seed: u64) {
    let files = dir.join("files");
    fs::create_dir_all(&files).unwrap();
    let mut rng = Rng(seed | 1);
    for n in 0..count {
        let m = message(&mut rng, n);
        fs::write(files.join(Guid::of(&m).to_hex()), &m).unwrap();
    }
}

fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn append(store_dir: &Path, corpus_dir: &Path, folders: usize) {
    let files = corpus_files(corpus_dir);
    let start = Instant::now();
    let mut store = UserStore::open(store_dir, StoreOptions::default()).unwrap();
    let mut tx = store.begin(1_800_000_000).unwrap();
    let per = files.len().div_ceil(folders.max(1));
    for (f, chunk) in files.chunks(per.max(1)).enumerate() {
        let uniqueid = format!("bench-folder-{f}");
        let mut records = Vec::new();
        for (i, path) in chunk.iter().enumerate() {
            let body = fs::read(path).unwrap();
            let guid = Guid::of(&body);
            let meta = FileMeta::new(body.len() as u64, 1_800_000_000, i as u64);
            tx.add_message(&guid, &meta, &body[..]).unwrap();
            records.push(IndexRecord {
                uid: i as u32 + 1,
                internaldate: Timestamp::from_secs(1_700_000_000 + i as u64),
                size: body.len() as u64,
                guid,
                ..Default::default()
            });
        }
        let header = IndexHeader {
            minor_version: 20,
            ..Default::default()
        };
        let index = write_index(&header, &records).unwrap();
        let pairs: Vec<(u32, Guid)> = records.iter().map(|r| (r.uid, r.guid)).collect();
        tx.set_indexed(&uniqueid, &pairs).unwrap();
        let meta = FileMeta::new(index.len() as u64, 1_800_000_000, 1);
        tx.add_folder_file(&uniqueid, "index", &meta, &Guid::of(&index), &index[..])
            .unwrap();
        tx.link(&format!("INBOX.folder{f}"), &uniqueid).unwrap();
    }
    tx.commit().unwrap();
    let secs = start.elapsed().as_secs_f64();
    drop(store);
    let state = fs::metadata(store_dir.join("backupstate.sqlite3"))
        .unwrap()
        .len();
    let data: u64 = fs::read_dir(store_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("backupdata-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    println!("{secs:.3} {state} {data} {}", vmhwm_kb());
}

/// A daily run's worth of new mail into an existing store: `count` corpus
/// messages made new (a header line in front) in one folder, one commit.
/// Its peak memory must not depend on how big the store already is.
fn increment(store_dir: &Path, corpus_dir: &Path, count: usize) {
    let files = corpus_files(corpus_dir);
    let start = Instant::now();
    let mut store = UserStore::open(store_dir, StoreOptions::default()).unwrap();
    let mut tx = store.begin(1_800_000_100).unwrap();
    let mut pairs = Vec::new();
    for (i, path) in files.iter().take(count).enumerate() {
        let mut body = format!("X-Increment: {i}\r\n").into_bytes();
        body.extend(fs::read(path).unwrap());
        let guid = Guid::of(&body);
        let meta = FileMeta::new(body.len() as u64, 1_800_000_100, i as u64);
        tx.add_message(&guid, &meta, &body[..]).unwrap();
        pairs.push((i as u32 + 1, guid));
    }
    tx.set_indexed("bench-increment", &pairs).unwrap();
    tx.commit().unwrap();
    println!("{:.3} {}", start.elapsed().as_secs_f64(), vmhwm_kb());
}

fn read(store_dir: &Path, guid: &str) {
    let guid: Guid = guid.parse().unwrap();
    let start = Instant::now();
    let store = UserStore::open_read_only(store_dir).unwrap();
    let bytes = store.read_message(&guid).unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(Guid::of(&bytes), guid);
    println!("{secs:.4} {}", vmhwm_kb());
}

fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus_dir, store) = (dir.path().join("corpus"), dir.path().join("store"));
    corpus(&corpus_dir, 30, 1);
    append(&store, &corpus_dir, 3);
    increment(&store, &corpus_dir, 10);
    let last = corpus_files(&corpus_dir).pop().unwrap();
    read(&store, &last.file_name().unwrap().to_string_lossy());
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["corpus", dir, count, seed] => {
            corpus(Path::new(dir), count.parse().unwrap(), seed.parse().unwrap())
        }
        ["append", store, corpus_dir, folders] => {
            append(Path::new(store), Path::new(corpus_dir), folders.parse().unwrap())
        }
        ["read", store, guid] => read(Path::new(store), guid),
        ["increment", store, corpus_dir, count] => {
            increment(Path::new(store), Path::new(corpus_dir), count.parse().unwrap())
        }
        // `cargo test --all-targets` runs this with no arguments: a small
        // run through every mode keeps the benchmark's code working.
        [] => smoke(),
        _ => eprintln!("usage: store_bench corpus DIR COUNT SEED | append STORE CORPUS FOLDERS | read STORE GUID | increment STORE CORPUS COUNT (see bench/store.sh)"),
    }
}
