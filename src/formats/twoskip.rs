//! Twoskip, the cyrusdb backend of `mailboxes.db`, seen and annotation
//! databases from Cyrus 2.5 on (cyrus-formats §7.8).
//!
//! The reader works on a `&[u8]` of the whole file rather than on a file
//! handle: callers read (or map) the file once and every walk is then a pure
//! function of those bytes. Nothing is ever written.
//!
//! Records are reached only by following pointers from the DUMMY, never by a
//! linear scan, because DELETE records carry no key and replaced records stay
//! in the file. Only bytes below the header's `current_size` are trusted; the
//! rest is an uncommitted transaction.

use thiserror::Error;

/// The 20 bytes every twoskip file starts with.
pub const MAGIC: &[u8; 20] = b"\xA1\x02\x8B\x0Dtwoskip file\0\0\0\0";

const HEADER_LEN: usize = 64;
const DUMMY_OFFSET: u64 = 64;
/// Filler Cyrus writes when it rewrites a record in place; 8 bytes, skipped.
const BLANK: &[u8; 8] = b" BLANK\x07\xA0";
const FLAG_DIRTY: u32 = 1;

/// What can be wrong with a twoskip file. Offsets are absolute file offsets.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TwoskipError {
    #[error("twoskip: {len} bytes is too short for the 64-byte header")]
    ShortHeader { len: usize },
    #[error("twoskip: bad magic")]
    BadMagic,
    #[error("twoskip: unsupported version {0}")]
    Version(u32),
    #[error("twoskip: header CRC32 mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderCrc { stored: u32, computed: u32 },
    #[error("twoskip: current_size {current_size} is beyond the {len}-byte file")]
    CurrentSizeBeyondFile { current_size: u64, len: usize },
    #[error("twoskip: record at offset {offset} runs past the committed end {end}")]
    Truncated { offset: u64, end: u64 },
    #[error("twoskip: record at offset {offset} is not 8-byte aligned")]
    Misaligned { offset: u64 },
    #[error("twoskip: record at offset {offset}: head CRC32 mismatch")]
    HeadCrc { offset: u64 },
    #[error("twoskip: record at offset {offset}: tail CRC32 mismatch")]
    TailCrc { offset: u64 },
    #[error("twoskip: record at offset {offset} has unknown type byte {type_byte:#04x}")]
    UnknownType { offset: u64, type_byte: u8 },
    #[error("twoskip: offset {offset} holds a {found:?} record where a key record was expected")]
    UnexpectedType { offset: u64, found: RecordType },
    #[error("twoskip: the level-0 chain does not end after {steps} records (a pointer loop)")]
    Loop { steps: u64 },
}

/// The record types of §7.8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    Dummy,
    Record,
    Delete,
    Commit,
}

impl RecordType {
    fn from_byte(b: u8) -> Option<RecordType> {
        match b {
            b'=' => Some(RecordType::Dummy),
            b'+' => Some(RecordType::Record),
            b'-' => Some(RecordType::Delete),
            b'$' => Some(RecordType::Commit),
            _ => None,
        }
    }
}

/// The 64-byte file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwoskipHeader {
    pub version: u32,
    pub generation: u64,
    pub num_records: u64,
    pub repack_size: u64,
    pub current_size: u64,
    pub flags: u32,
}

impl TwoskipHeader {
    /// A dirty file had a transaction open when it was copied: its
    /// higher-level pointers may point into the uncommitted tail.
    pub fn is_dirty(&self) -> bool {
        self.flags & FLAG_DIRTY != 0
    }
}

/// A validated twoskip file: header checked, records read on demand.
#[derive(Debug, Clone, Copy)]
pub struct Twoskip<'a> {
    /// The committed bytes only (`..current_size`).
    committed: &'a [u8],
    header: TwoskipHeader,
}

/// One record, borrowed from the file.
#[derive(Debug, Clone, Copy)]
struct Record<'a> {
    offset: u64,
    kind: RecordType,
    pointers: &'a [u8],
    key: &'a [u8],
    value: &'a [u8],
    /// Offset just past the record, padding included.
    end: u64,
}

impl Record<'_> {
    fn pointer(&self, i: usize) -> Option<u64> {
        let start = i.checked_mul(8)?;
        read_u64(self.pointers, start)
    }
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    let bytes = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(bytes.try_into().ok()?))
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn parse_header(bytes: &[u8]) -> Result<TwoskipHeader, TwoskipError> {
    let head = bytes
        .get(..HEADER_LEN)
        .ok_or(TwoskipError::ShortHeader { len: bytes.len() })?;
    if !head.starts_with(MAGIC) {
        return Err(TwoskipError::BadMagic);
    }
    let field32 = |at| read_u32(head, at).unwrap_or_default();
    let field64 = |at| read_u64(head, at).unwrap_or_default();
    let stored = field32(60);
    let computed = crc32fast::hash(head.get(..60).unwrap_or_default());
    if stored != computed {
        return Err(TwoskipError::HeaderCrc { stored, computed });
    }
    let header = TwoskipHeader {
        version: field32(20),
        generation: field64(24),
        num_records: field64(32),
        repack_size: field64(40),
        current_size: field64(48),
        flags: field32(56),
    };
    if header.version != 1 {
        return Err(TwoskipError::Version(header.version));
    }
    Ok(header)
}

impl<'a> Twoskip<'a> {
    /// Checks the header and keeps the committed part of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Twoskip<'a>, TwoskipError> {
        let header = parse_header(bytes)?;
        let too_big = TwoskipError::CurrentSizeBeyondFile {
            current_size: header.current_size,
            len: bytes.len(),
        };
        let end = usize::try_from(header.current_size).map_err(|_| too_big.clone())?;
        let committed = bytes.get(..end).ok_or(too_big)?;
        Ok(Twoskip { committed, header })
    }

    pub fn header(&self) -> TwoskipHeader {
        self.header
    }

    fn end(&self) -> u64 {
        self.header.current_size
    }

    /// Every live record in key order.
    pub fn iter(&self) -> TwoskipIter<'a> {
        TwoskipIter::starting_after(*self, DUMMY_OFFSET)
    }

    /// The records whose key starts with `prefix`, in key order.
    ///
    /// Assumes the file is sorted by raw bytes, as every 3.6+ database is;
    /// a ≤3.4 `mailboxes.db` written with `improved_mboxlist_sort` is not, and
    /// must be filtered from [`Twoskip::iter`] instead.
    pub fn iter_prefix(&self, prefix: &[u8]) -> impl Iterator<Item = TwoskipItem> + 'a {
        let owned_prefix = prefix.to_vec();
        self.iter_from(prefix).take_while(move |item| match item {
            Ok((key, _)) => key.starts_with(&owned_prefix),
            Err(_) => true,
        })
    }

    /// The records whose key is ≥ `start`, in key order.
    pub fn iter_from(&self, start: &[u8]) -> impl Iterator<Item = TwoskipItem> + 'a {
        let owned_start = start.to_vec();
        let from = self.descend(start).unwrap_or(DUMMY_OFFSET);
        TwoskipIter::starting_after(*self, from).skip_while(move |item| match item {
            Ok((key, _)) => key.as_slice() < owned_start.as_slice(),
            Err(_) => false,
        })
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, TwoskipError> {
        match self.iter_from(key).next() {
            Some(Ok((found, value))) if found == key => Ok(Some(value)),
            Some(Err(e)) => Err(e),
            _ => Ok(None),
        }
    }

    /// Reads every record between the header and `current_size` in file
    /// order, skipping BLANK filler, and verifies both CRCs of each: the
    /// consistency check Cyrus runs before a repack. Returns how many
    /// records (of any type) it read.
    pub fn check(&self) -> Result<u64, TwoskipError> {
        let mut offset = DUMMY_OFFSET;
        let mut count = 0u64;
        while offset < self.end() {
            if self.is_blank(offset) {
                offset = offset.saturating_add(8);
                continue;
            }
            offset = self.record_at(offset)?.end;
            count = count.saturating_add(1);
        }
        Ok(count)
    }

    fn is_blank(&self, offset: u64) -> bool {
        let Ok(at) = usize::try_from(offset) else {
            return false;
        };
        at.checked_add(8)
            .and_then(|end| self.committed.get(at..end))
            .is_some_and(|b| b == BLANK)
    }

    /// Parses and CRC-checks the record at `offset`.
    fn record_at(&self, offset: u64) -> Result<Record<'a>, TwoskipError> {
        let end = self.end();
        let truncated = TwoskipError::Truncated { offset, end };
        if offset % 8 != 0 {
            return Err(TwoskipError::Misaligned { offset });
        }
        let start = usize::try_from(offset).map_err(|_| truncated.clone())?;
        let b = self.committed;
        let type_byte = *b.get(start).ok_or(truncated.clone())?;
        let kind = RecordType::from_byte(type_byte)
            .ok_or(TwoskipError::UnknownType { offset, type_byte })?;
        let level = *b.get(start + 1).ok_or(truncated.clone())?;
        let mut pos = start.checked_add(8).ok_or(truncated.clone())?;
        let mut keylen = u64::from(read_u16(b, start + 2).ok_or(truncated.clone())?);
        let mut vallen = u64::from(read_u32(b, start + 4).ok_or(truncated.clone())?);
        if keylen == u64::from(u16::MAX) {
            keylen = read_u64(b, pos).ok_or(truncated.clone())?;
            pos += 8;
        }
        if vallen == u64::from(u32::MAX) {
            vallen = read_u64(b, pos).ok_or(truncated.clone())?;
            pos += 8;
        }
        let ptr_len = (usize::from(level) + 1) * 8;
        let pointers = b.get(pos..pos + ptr_len).ok_or(truncated.clone())?;
        pos += ptr_len;
        let crc_head = read_u32(b, pos).ok_or(truncated.clone())?;
        let crc_tail = read_u32(b, pos + 4).ok_or(truncated.clone())?;
        if crc32fast::hash(b.get(start..pos).ok_or(truncated.clone())?) != crc_head {
            return Err(TwoskipError::HeadCrc { offset });
        }
        pos += 8;
        let keylen = usize::try_from(keylen).map_err(|_| truncated.clone())?;
        let vallen = usize::try_from(vallen).map_err(|_| truncated.clone())?;
        let data_len = keylen.checked_add(vallen).ok_or(truncated.clone())?;
        let padded = data_len
            .checked_next_multiple_of(8)
            .ok_or(truncated.clone())?;
        let data_end = pos.checked_add(padded).ok_or(truncated.clone())?;
        let data = b.get(pos..data_end).ok_or(truncated.clone())?;
        if crc32fast::hash(data) != crc_tail {
            return Err(TwoskipError::TailCrc { offset });
        }
        Ok(Record {
            offset,
            kind,
            pointers,
            key: data.get(..keylen).unwrap_or_default(),
            value: data.get(keylen..data_len).unwrap_or_default(),
            end: data_end as u64,
        })
    }

    /// The level-0 successor of `record`: whichever of its two level-0
    /// pointers is the newer one still inside the committed file.
    fn next_level0(&self, record: &Record<'_>) -> u64 {
        let end = self.end();
        let first = record.pointer(0).unwrap_or(0);
        let Some(second) = record
            .pointer(1)
            .filter(|_| record.kind != RecordType::Delete)
        else {
            return first;
        };
        if first >= end {
            second
        } else if second >= end {
            first
        } else {
            first.max(second)
        }
    }

    /// Skiplist descent through levels 1..: the offset of the last record
    /// whose key is below `key`. `None` when the higher levels cannot be
    /// trusted (a dirty file, or anything odd on the way); the caller then
    /// walks from the DUMMY.
    fn descend(&self, key: &[u8]) -> Option<u64> {
        if self.header.is_dirty() {
            return None;
        }
        let mut current = self.record_at(DUMMY_OFFSET).ok()?;
        let levels = current.pointers.len() / 8;
        let mut budget = self.step_limit();
        for pointer_index in (2..levels).rev() {
            loop {
                budget = budget.checked_sub(1)?;
                let Some(next) = current.pointer(pointer_index) else {
                    break;
                };
                if next == 0 || next >= self.end() {
                    break;
                }
                let candidate = self.record_at(next).ok()?;
                if candidate.kind != RecordType::Record {
                    return None;
                }
                if candidate.key >= key {
                    break;
                }
                current = candidate;
            }
        }
        Some(current.offset)
    }

    /// No honest chain visits more records than fit in the file.
    fn step_limit(&self) -> u64 {
        self.end() / 8 + 1
    }
}

/// One item of a walk: a `(key, value)` pair, or the error that ended it.
pub type TwoskipItem = Result<(Vec<u8>, Vec<u8>), TwoskipError>;

/// Walks the level-0 chain. Yields at most one error, then stops.
#[derive(Debug, Clone)]
pub struct TwoskipIter<'a> {
    db: Twoskip<'a>,
    /// The record whose successor comes next; `None` once finished.
    after: Option<u64>,
    steps: u64,
}

impl<'a> TwoskipIter<'a> {
    fn starting_after(db: Twoskip<'a>, offset: u64) -> TwoskipIter<'a> {
        TwoskipIter {
            db,
            after: Some(offset),
            steps: 0,
        }
    }

    fn advance(&mut self, after: u64) -> Result<Option<Record<'a>>, TwoskipError> {
        let previous = self.db.record_at(after)?;
        let mut next = self.db.next_level0(&previous);
        loop {
            if next == 0 {
                return Ok(None);
            }
            self.steps += 1;
            if self.steps > self.db.step_limit() {
                return Err(TwoskipError::Loop { steps: self.steps });
            }
            let record = self.db.record_at(next)?;
            match record.kind {
                RecordType::Record => return Ok(Some(record)),
                RecordType::Delete => next = record.pointer(0).unwrap_or(0),
                found => {
                    return Err(TwoskipError::UnexpectedType {
                        offset: next,
                        found,
                    })
                }
            }
        }
    }
}

impl Iterator for TwoskipIter<'_> {
    type Item = TwoskipItem;

    fn next(&mut self) -> Option<TwoskipItem> {
        let after = self.after.take()?;
        match self.advance(after) {
            Ok(Some(record)) => {
                self.after = Some(record.offset);
                Some(Ok((record.key.to_vec(), record.value.to_vec())))
            }
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The empty `cyrus.annotations` described in cyrus-formats' appendix:
    /// a header and a DUMMY of level 31, nothing else.
    fn empty_db() -> Vec<u8> {
        let mut dummy = vec![b'=', 31, 0, 0, 0, 0, 0, 0];
        dummy.extend_from_slice(&[0u8; 32 * 8]);
        let head_crc = crc32fast::hash(&dummy);
        dummy.extend_from_slice(&head_crc.to_be_bytes());
        dummy.extend_from_slice(&crc32fast::hash(&[]).to_be_bytes());
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&1u32.to_be_bytes());
        file.extend_from_slice(&0u64.to_be_bytes());
        file.extend_from_slice(&0u64.to_be_bytes());
        file.extend_from_slice(&0u64.to_be_bytes());
        file.extend_from_slice(&((64 + dummy.len()) as u64).to_be_bytes());
        file.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&file);
        file.extend_from_slice(&crc.to_be_bytes());
        file.extend_from_slice(&dummy);
        file
    }

    #[test]
    fn an_empty_database_is_336_bytes_and_has_no_records() {
        let file = empty_db();
        assert_eq!(file.len(), 336);
        let db = Twoskip::parse(&file).unwrap();
        assert_eq!(db.iter().count(), 0);
        assert_eq!(db.check(), Ok(1));
    }

    #[test]
    fn a_flipped_header_byte_is_a_header_crc_error() {
        let mut file = empty_db();
        file[30] ^= 1;
        assert!(matches!(
            Twoskip::parse(&file),
            Err(TwoskipError::HeaderCrc { .. })
        ));
    }

    #[test]
    fn a_flipped_dummy_byte_names_offset_64() {
        let mut file = empty_db();
        file[100] ^= 1;
        let db = Twoskip::parse(&file).unwrap();
        let first = db.iter().next();
        assert_eq!(first, Some(Err(TwoskipError::HeadCrc { offset: 64 })));
    }

    #[test]
    fn current_size_beyond_the_file_is_refused() {
        let mut file = empty_db();
        file.truncate(200);
        assert!(matches!(
            Twoskip::parse(&file),
            Err(TwoskipError::CurrentSizeBeyondFile { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(db) = Twoskip::parse(&bytes) {
                let _ = db.iter().count();
                let _ = db.check();
                let _ = db.get(b"x");
            }
        }

        #[test]
        fn arbitrary_records_after_a_valid_header_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut file = empty_db();
            file.truncate(64);
            file.extend_from_slice(&tail);
            let size = (file.len() as u64).to_be_bytes();
            file[48..56].copy_from_slice(&size);
            let crc = crc32fast::hash(&file[..60]).to_be_bytes();
            file[60..64].copy_from_slice(&crc);
            let db = Twoskip::parse(&file).unwrap();
            let _ = db.iter().count();
            let _ = db.iter_prefix(b"N").count();
            let _ = db.check();
        }
    }
}
