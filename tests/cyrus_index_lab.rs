//! Real indexes of minor versions 6–17, made by a running Cyrus 3.6 with
//! `reconstruct -V N` (`scripts/lab/index-versions`), compared with what
//! Cyrus's own `mbexamine` printed for the same folder.
//!
//! `$MAILVAULT_INDEX_VERSIONS/v<N>/{cyrus.index,cyrus.header,mbexamine.txt}`;
//! without the variable the test skips, unless `MAILVAULT_REQUIRE_LAB=1`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mailvault::formats::cyrus_header::CyrusHeader;
use mailvault::formats::cyrus_index::{parse_index, write_index, IndexHeader, IndexRecord};

fn lab_dirs() -> Option<Vec<(u32, PathBuf)>> {
    let root = common::lab("MAILVAULT_INDEX_VERSIONS")?;
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", Path::new(&root).display()))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let n = path
                .file_name()?
                .to_str()?
                .strip_prefix('v')?
                .parse()
                .ok()?;
            Some((n, path))
        })
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no v<N> directories under the lab root");
    Some(dirs)
}

/// What `mbexamine` says about a folder.
struct Examined {
    header: BTreeMap<String, String>,
    user_flags: Vec<String>,
    uniqueid: String,
    /// Per record: `KEY -> value` (`USERFLAGS` holds its four words, highest first).
    records: Vec<BTreeMap<String, String>>,
}

/// Splits `A: 1  B: 2` and `UID:00000001 SIZE:5` lines into key/value pairs.
fn pairs(text: &str) -> Vec<(String, String)> {
    let text = text.replace("LASTUPD :", "LASTUPD:").replace(": ", ":");
    let mut out = Vec::new();
    let mut tokens = text.split_whitespace().peekable();
    while let Some(token) = tokens.next() {
        let Some((key, value)) = token.split_once(':') else {
            continue;
        };
        if key == "USERFLAGS" {
            let words: Vec<&str> = std::iter::once(value)
                .chain(tokens.by_ref().take(3))
                .collect();
            out.push((key.to_string(), words.join(" ")));
        } else {
            out.push((key.to_string(), value.to_string()));
        }
    }
    out
}

/// `Header Size: 76 bytes  Record Size: 60 bytes`: items are two spaces apart.
fn header_pairs(line: &str) -> Vec<(String, String)> {
    line.split("  ")
        .filter_map(|item| item.trim().split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn is_record_start(line: &str) -> bool {
    let bytes = line.as_bytes();
    bytes.len() > 7
        && bytes[..6].iter().all(u8::is_ascii_digit)
        && bytes[6..].starts_with(b"> UID:")
}

fn examine(text: &str) -> Examined {
    let (head, body) = text
        .split_once("Message Info:")
        .expect("no Message Info section");
    let header = head
        .lines()
        .skip_while(|l| !l.contains("Index Header Info"))
        .flat_map(header_pairs)
        .collect();
    let field = |prefix: &str| {
        head.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let mut records: Vec<BTreeMap<String, String>> = Vec::new();
    for line in body.lines() {
        if is_record_start(line) {
            records.push(BTreeMap::new());
        }
        if is_record_start(line) || line.starts_with("      >") {
            if let Some(current) = records.last_mut() {
                current.extend(pairs(line));
            }
        }
    }
    Examined {
        header,
        user_flags: field("User Flags:")
            .split_whitespace()
            .map(String::from)
            .collect(),
        uniqueid: field("Unique ID:"),
        records,
    }
}

fn num(map: &BTreeMap<String, String>, key: &str, at: &str) -> u64 {
    let v = map
        .get(key)
        .unwrap_or_else(|| panic!("{at}: mbexamine printed no {key}"));
    // Header values may carry a unit or a date after the number: `(1795662396) Thu Nov ...`.
    v.split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .parse()
        .unwrap_or_else(|_| panic!("{at}: {key} = {v:?}"))
}

fn check_header(h: &IndexHeader, ex: &Examined, at: &str) {
    let m = &ex.header;
    assert_eq!(
        u64::from(h.minor_version),
        num(m, "Minor Version", at),
        "{at}"
    );
    assert_eq!(
        u64::from(h.generation_no),
        num(m, "Generation Number", at),
        "{at}"
    );
    assert_eq!(u64::from(h.start_offset), num(m, "Header Size", at), "{at}");
    assert_eq!(u64::from(h.record_size), num(m, "Record Size", at), "{at}");
    assert_eq!(
        u64::from(h.exists),
        num(m, "Number of Messages", at),
        "{at}"
    );
    assert_eq!(h.quota_mailbox_used, num(m, "Mailbox Size", at), "{at}");
    assert_eq!(
        h.last_appenddate.secs(),
        num(m, "Last Append Date", at),
        "{at}"
    );
    assert_eq!(u64::from(h.uidvalidity), num(m, "UIDValidity", at), "{at}");
    assert_eq!(u64::from(h.last_uid), num(m, "Last UID", at), "{at}");
    assert_eq!(u64::from(h.deleted), num(m, "Deleted", at), "{at}");
    assert_eq!(u64::from(h.answered), num(m, "Answered", at), "{at}");
    assert_eq!(u64::from(h.flagged), num(m, "Flagged", at), "{at}");
    assert_eq!(
        h.pop3_last_login.secs(),
        num(m, "Last POP3 Login", at),
        "{at}"
    );
    assert_eq!(h.highestmodseq, num(m, "Highest Mod Sequence", at), "{at}");
}

fn hex32(map: &BTreeMap<String, String>, key: &str, at: &str) -> u32 {
    u32::from_str_radix(&map[key], 16).unwrap_or_else(|_| panic!("{at}: {key}"))
}

fn check_record(r: &IndexRecord, m: &BTreeMap<String, String>, version: u32, at: &str) {
    assert_eq!(u64::from(r.uid), num(m, "UID", at), "{at}");
    assert_eq!(r.internaldate.secs(), num(m, "INT_DATE", at), "{at}");
    assert_eq!(r.sentdate.secs(), num(m, "SENTDATE", at), "{at}");
    assert_eq!(r.savedate.secs(), num(m, "SAVEDATE", at), "{at}");
    assert_eq!(r.size, num(m, "SIZE", at), "{at}");
    assert_eq!(u64::from(r.header_size), num(m, "HDRSIZE", at), "{at}");
    assert_eq!(r.last_updated.secs(), num(m, "LASTUPD", at), "{at}");
    assert_eq!(r.system_flags, hex32(m, "SYSFLAGS", at), "{at}");
    assert_eq!(
        u64::from(r.cache_version & 0xFFFF),
        num(m, "CACHEVER", at),
        "{at}"
    );
    let words: Vec<u32> = m["USERFLAGS"]
        .split(' ')
        .map(|w| u32::from_str_radix(w, 16).unwrap())
        .collect();
    let mut printed = r.user_flags;
    printed.reverse(); // mbexamine prints the highest word first
    assert_eq!(words, printed, "{at}: USERFLAGS");
    if version >= 7 {
        assert_eq!(r.guid.to_hex(), m["GUID"], "{at}");
    }
    if version >= 8 {
        assert_eq!(r.modseq, num(m, "MODSEQ", at), "{at}");
    }
}

fn check_version_dir(n: u32, dir: &Path) {
    let at = dir.display().to_string();
    let index = std::fs::read(dir.join("cyrus.index")).unwrap();
    let header = CyrusHeader::parse(&std::fs::read(dir.join("cyrus.header")).unwrap()).unwrap();
    let ex = examine(&std::fs::read_to_string(dir.join("mbexamine.txt")).unwrap());
    let (h, records) = parse_index(&index).unwrap_or_else(|e| panic!("{}", e.at(&at)));

    assert_eq!(
        h.minor_version, n,
        "{at}: the v{n} directory holds a v{} index",
        h.minor_version
    );
    check_header(&h, &ex, &at);
    assert_eq!(header.uniqueid, ex.uniqueid, "{at}");
    let flags: Vec<String> = header.user_flags.iter().flatten().cloned().collect();
    assert_eq!(flags, ex.user_flags, "{at}");

    // mbexamine leaves out expunged records.
    let live: Vec<&IndexRecord> = records.iter().filter(|r| !r.is_expunged()).collect();
    assert_eq!(live.len(), ex.records.len(), "{at}: live records");
    for (r, m) in live.iter().zip(&ex.records) {
        check_record(r, m, n, &format!("{at} uid {}", r.uid));
    }
    assert_eq!(
        write_index(&h, &records).unwrap(),
        index,
        "{at}: writer round trip"
    );
}

#[test]
fn every_lab_version_matches_mbexamine_and_writes_back_identically() {
    let Some(dirs) = lab_dirs() else {
        return;
    };
    for (n, dir) in &dirs {
        check_version_dir(*n, dir);
        eprintln!("checked v{n}: {}", dir.display());
    }
}
