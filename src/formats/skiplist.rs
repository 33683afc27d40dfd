//! Skiplist, the cyrusdb backend of 2.3/2.4 `mailboxes.db` and of 3.x
//! `conversations.db` (cyrus-formats §7.9).
//!
//! Rather than trusting the in-file forward pointers (which Cyrus patches in
//! place and repairs on recovery), the reader rebuilds the contents the way
//! recovery does: the checkpointed INORDER nodes before `logstart`, then the
//! log after it, applied one committed transaction at a time. An unfinished
//! transaction at the end of the file is ignored, as Cyrus ignores it.
//!
//! Works on a `&[u8]` of the whole file; the records borrow from it.

use std::collections::{BTreeMap, HashMap};

use thiserror::Error;

/// The 20 bytes every skiplist file starts with.
pub const MAGIC: &[u8; 20] = b"\xA1\x02\x8B\x0Dskiplist file\0\0\0";

const HEADER_LEN: usize = 48;
const INORDER: u32 = 1;
const ADD: u32 = 2;
const DELETE: u32 = 4;
const COMMIT: u32 = 255;
const DUMMY: u32 = 257;
const POINTER_END: u32 = u32::MAX;

/// What can be wrong with a skiplist file. Offsets are absolute.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SkiplistError {
    #[error("skiplist: {len} bytes is too short for the 48-byte header")]
    ShortHeader { len: usize },
    #[error("skiplist: bad magic")]
    BadMagic,
    #[error("skiplist: unsupported version {0}")]
    Version(u32),
    #[error("skiplist: logstart {logstart} is outside the {len}-byte file")]
    BadLogstart { logstart: u32, len: usize },
    #[error("skiplist: node at offset {offset} runs past the end of the file")]
    Truncated { offset: usize },
    #[error("skiplist: node at offset {offset} has unknown type {node_type}")]
    UnknownType { offset: usize, node_type: u32 },
    #[error("skiplist: node at offset {offset} (type {node_type}) is out of place")]
    OutOfPlace { offset: usize, node_type: u32 },
    #[error("skiplist: DELETE at offset {offset} names offset {target}, which holds no record")]
    DeleteOfUnknown { offset: usize, target: u32 },
}

/// The 48-byte file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkiplistHeader {
    pub version: u32,
    pub version_minor: u32,
    pub maxlevel: u32,
    pub curlevel: u32,
    /// May be stale; the replayed record count is authoritative.
    pub listsize: u32,
    pub logstart: u32,
    pub last_recovery: u32,
}

/// The replayed contents of a skiplist file, sorted by raw key bytes.
#[derive(Debug, Clone)]
pub struct Skiplist<'a> {
    header: SkiplistHeader,
    records: BTreeMap<&'a [u8], &'a [u8]>,
}

/// One node as read from the file.
#[derive(Debug, Clone, Copy)]
enum Node<'a> {
    Dummy,
    Inorder { key: &'a [u8], value: &'a [u8] },
    Add { key: &'a [u8], value: &'a [u8] },
    Delete { target: u32 },
    Commit,
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn parse_header(bytes: &[u8]) -> Result<SkiplistHeader, SkiplistError> {
    let head = bytes
        .get(..HEADER_LEN)
        .ok_or(SkiplistError::ShortHeader { len: bytes.len() })?;
    if !head.starts_with(MAGIC) {
        return Err(SkiplistError::BadMagic);
    }
    let field = |at| read_u32(head, at).unwrap_or_default();
    let header = SkiplistHeader {
        version: field(20),
        version_minor: field(24),
        maxlevel: field(28),
        curlevel: field(32),
        listsize: field(36),
        logstart: field(40),
        last_recovery: field(44),
    };
    if header.version != 1 {
        return Err(SkiplistError::Version(header.version));
    }
    let logstart_ok =
        usize::try_from(header.logstart).is_ok_and(|at| at >= HEADER_LEN && at <= bytes.len());
    if !logstart_ok {
        return Err(SkiplistError::BadLogstart {
            logstart: header.logstart,
            len: bytes.len(),
        });
    }
    Ok(header)
}

/// Reads a length-prefixed, 4-byte-padded byte string at `at`.
fn read_counted(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = usize::try_from(read_u32(b, at)?).ok()?;
    let start = at.checked_add(4)?;
    let data = b.get(start..start.checked_add(len)?)?;
    let next = start.checked_add(len.checked_next_multiple_of(4)?)?;
    Some((data, next))
}

/// Skips the forward pointers up to and including the terminator.
fn skip_pointers(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let pointer = read_u32(b, at)?;
        at = at.checked_add(4)?;
        if pointer == POINTER_END {
            return Some(at);
        }
    }
}

/// Parses the node at `offset`; returns it and the offset after it.
fn parse_node(b: &[u8], offset: usize) -> Result<(Node<'_>, usize), SkiplistError> {
    let truncated = SkiplistError::Truncated { offset };
    let node_type = read_u32(b, offset).ok_or(truncated.clone())?;
    let body = offset + 4;
    match node_type {
        DELETE => {
            let target = read_u32(b, body).ok_or(truncated)?;
            Ok((Node::Delete { target }, body + 4))
        }
        COMMIT => Ok((Node::Commit, body)),
        DUMMY | INORDER | ADD => {
            let (key, at) = read_counted(b, body).ok_or(truncated.clone())?;
            let (value, at) = read_counted(b, at).ok_or(truncated.clone())?;
            let next = skip_pointers(b, at).ok_or(truncated)?;
            let node = match node_type {
                DUMMY => Node::Dummy,
                INORDER => Node::Inorder { key, value },
                _ => Node::Add { key, value },
            };
            Ok((node, next))
        }
        _ => Err(SkiplistError::UnknownType { offset, node_type }),
    }
}

/// The live records while replaying, with the offset each one was written at
/// so that DELETE (which names an offset) can find its key.
#[derive(Default)]
struct Replay<'a> {
    records: BTreeMap<&'a [u8], (usize, &'a [u8])>,
    keys_by_offset: HashMap<usize, &'a [u8]>,
}

impl<'a> Replay<'a> {
    fn insert(&mut self, offset: usize, key: &'a [u8], value: &'a [u8]) {
        self.records.insert(key, (offset, value));
        self.keys_by_offset.insert(offset, key);
    }

    fn delete(&mut self, offset: usize, target: u32) -> Result<(), SkiplistError> {
        let unknown = SkiplistError::DeleteOfUnknown { offset, target };
        let at = usize::try_from(target).map_err(|_| unknown.clone())?;
        let key = self.keys_by_offset.remove(&at).ok_or(unknown)?;
        if self
            .records
            .get(key)
            .is_some_and(|(written, _)| *written == at)
        {
            self.records.remove(key);
        }
        Ok(())
    }

    fn apply(&mut self, pending: &[(usize, Node<'a>)]) -> Result<(), SkiplistError> {
        for (offset, node) in pending {
            match *node {
                Node::Add { key, value } => self.insert(*offset, key, value),
                Node::Delete { target } => self.delete(*offset, target)?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// Reads the checkpointed part: a DUMMY, then INORDER nodes up to logstart.
fn read_checkpoint<'a>(
    b: &'a [u8],
    logstart: usize,
    replay: &mut Replay<'a>,
) -> Result<(), SkiplistError> {
    let mut offset = HEADER_LEN;
    while offset < logstart {
        let (node, next) = parse_node(b, offset)?;
        match node {
            Node::Dummy if offset == HEADER_LEN => {}
            Node::Inorder { key, value } if offset > HEADER_LEN => {
                replay.insert(offset, key, value)
            }
            _ => {
                let node_type = read_u32(b, offset).unwrap_or_default();
                return Err(SkiplistError::OutOfPlace { offset, node_type });
            }
        }
        offset = next;
    }
    Ok(())
}

/// Replays the log after logstart, one committed transaction at a time. A
/// node that does not parse after the last COMMIT is an unfinished write.
fn replay_log<'a>(
    b: &'a [u8],
    logstart: usize,
    replay: &mut Replay<'a>,
) -> Result<(), SkiplistError> {
    let mut offset = logstart;
    let mut pending: Vec<(usize, Node<'a>)> = Vec::new();
    while offset < b.len() {
        let Ok((node, next)) = parse_node(b, offset) else {
            return Ok(());
        };
        match node {
            Node::Commit => replay.apply(&std::mem::take(&mut pending))?,
            Node::Add { .. } | Node::Delete { .. } => pending.push((offset, node)),
            Node::Dummy if offset == HEADER_LEN => {}
            _ => {
                let node_type = read_u32(b, offset).unwrap_or_default();
                return Err(SkiplistError::OutOfPlace { offset, node_type });
            }
        }
        offset = next;
    }
    Ok(())
}

impl<'a> Skiplist<'a> {
    /// Checks the header and replays the whole file.
    pub fn parse(bytes: &'a [u8]) -> Result<Skiplist<'a>, SkiplistError> {
        let header = parse_header(bytes)?;
        let logstart = header.logstart as usize;
        let mut replay = Replay::default();
        read_checkpoint(bytes, logstart, &mut replay)?;
        replay_log(bytes, logstart, &mut replay)?;
        let records = replay
            .records
            .into_iter()
            .map(|(key, (_, value))| (key, value))
            .collect();
        Ok(Skiplist { header, records })
    }

    pub fn header(&self) -> SkiplistHeader {
        self.header
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every live record in raw key order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        self.records.iter().map(|(k, v)| (*k, *v))
    }

    /// The records whose key starts with `prefix`.
    pub fn iter_prefix<'s>(
        &'s self,
        prefix: &'s [u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 's {
        self.records
            .range::<[u8], _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (*k, *v))
    }

    pub fn get(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.records.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counted(out: &mut Vec<u8>, data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }

    fn node(out: &mut Vec<u8>, node_type: u32, key: &[u8], value: &[u8]) -> u32 {
        let offset = out.len() as u32;
        out.extend_from_slice(&node_type.to_be_bytes());
        counted(out, key);
        counted(out, value);
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&POINTER_END.to_be_bytes());
        offset
    }

    fn header(logstart: u32) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for field in [1u32, 2, 20, 1, 0, logstart, 0] {
            out.extend_from_slice(&field.to_be_bytes());
        }
        out
    }

    /// A checkpoint with two records, then a log that replaces one, deletes
    /// the other, and ends in an uncommitted ADD.
    fn sample() -> Vec<u8> {
        let mut file = header(0);
        node(&mut file, DUMMY, b"", b"");
        let a = node(&mut file, INORDER, b"user.alice", b"0 default alice\tlrs\t");
        let b = node(&mut file, INORDER, b"user.bob", b"0 default bob\tlrs\t");
        let logstart = file.len() as u32;
        file[40..44].copy_from_slice(&logstart.to_be_bytes());
        file.extend_from_slice(&DELETE.to_be_bytes());
        file.extend_from_slice(&a.to_be_bytes());
        node(&mut file, ADD, b"user.alice", b"0 other alice\tlrs\t");
        file.extend_from_slice(&COMMIT.to_be_bytes());
        file.extend_from_slice(&DELETE.to_be_bytes());
        file.extend_from_slice(&b.to_be_bytes());
        file.extend_from_slice(&COMMIT.to_be_bytes());
        node(&mut file, ADD, b"user.carol", b"uncommitted");
        file
    }

    #[test]
    fn replay_applies_committed_transactions_only() {
        let file = sample();
        let db = Skiplist::parse(&file).unwrap();
        let records: Vec<_> = db.iter().collect();
        assert_eq!(
            records,
            vec![(&b"user.alice"[..], &b"0 other alice\tlrs\t"[..])]
        );
        assert_eq!(db.get(b"user.bob"), None);
        assert_eq!(db.get(b"user.carol"), None);
    }

    #[test]
    fn a_delete_of_an_offset_with_no_record_is_an_error() {
        let mut file = header(0);
        node(&mut file, DUMMY, b"", b"");
        let logstart = file.len() as u32;
        file[40..44].copy_from_slice(&logstart.to_be_bytes());
        file.extend_from_slice(&DELETE.to_be_bytes());
        file.extend_from_slice(&999u32.to_be_bytes());
        file.extend_from_slice(&COMMIT.to_be_bytes());
        assert_eq!(
            Skiplist::parse(&file).unwrap_err(),
            SkiplistError::DeleteOfUnknown {
                offset: logstart as usize,
                target: 999
            }
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Skiplist::parse(&bytes);
        }

        #[test]
        fn arbitrary_log_after_a_valid_header_never_panics(
            tail in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut file = sample();
            file.extend_from_slice(&tail);
            let _ = Skiplist::parse(&file).map(|db| db.iter().count());
        }
    }
}
