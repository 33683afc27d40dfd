//! Streaming reader: validates the header, then yields one record at a time,
//! so a 100 000-message index never has to sit in memory.

use std::io::{ErrorKind, Read};

use super::layout::{layout, Field, Kind, Layout};
use super::{Guid, IndexError, IndexHeader, IndexRecord};

/// Reads a `cyrus.index` (or, with [`IndexReader::allow_unordered`], a
/// `cyrus.expunge`). Iteration stops after the first error.
pub struct IndexReader<R> {
    inner: R,
    header: IndexHeader,
    layout: &'static Layout,
    records_read: u32,
    previous_uid: Option<u32>,
    check_order: bool,
    finished: bool,
}

impl<R: Read> IndexReader<R> {
    /// Reads and checks the header: version, sizes and (v12+) CRC.
    pub fn new(mut inner: R) -> Result<IndexReader<R>, IndexError> {
        let (header, layout) = read_header(&mut inner)?;
        Ok(IndexReader {
            inner,
            header,
            layout,
            records_read: 0,
            previous_uid: None,
            check_order: true,
            finished: false,
        })
    }

    /// Rejects a file too short for the records its header announces. Use it
    /// when the length is known (a file's metadata, a buffer), so a torn copy
    /// fails before any record is trusted.
    pub fn check_len(self, file_len: u64) -> Result<IndexReader<R>, IndexError> {
        let needed = u64::from(self.header.num_records)
            .saturating_mul(self.layout.record_size as u64)
            .saturating_add(self.layout.header_size as u64);
        if needed > file_len {
            return Err(IndexError::PastEnd {
                num_records: self.header.num_records,
                needed,
                file_len,
            });
        }
        Ok(self)
    }

    /// For `cyrus.expunge`, whose records are in expunge order, not uid order.
    pub fn allow_unordered(mut self) -> IndexReader<R> {
        self.check_order = false;
        self
    }

    pub fn header(&self) -> &IndexHeader {
        &self.header
    }

    fn read_record(&mut self) -> Result<IndexRecord, IndexError> {
        let number = self.records_read + 1;
        let mut buf = vec![0; self.layout.record_size];
        let have = read_full(&mut self.inner, &mut buf)?;
        if have < buf.len() {
            return Err(IndexError::TruncatedRecord {
                record: number,
                have,
                need: buf.len(),
            });
        }
        let record = decode_record(self.layout, &buf);
        if self.layout.has_crcs() {
            check_record_crc(&buf, number, record.uid)?;
        }
        self.check_uid_order(number, record.uid)?;
        Ok(record)
    }

    fn check_uid_order(&mut self, record: u32, uid: u32) -> Result<(), IndexError> {
        if let Some(previous) = self.previous_uid.filter(|_| self.check_order) {
            if uid <= previous {
                return Err(IndexError::UidOrder {
                    record,
                    uid,
                    previous,
                });
            }
        }
        self.previous_uid = Some(uid);
        Ok(())
    }
}

impl<R: Read> Iterator for IndexReader<R> {
    type Item = Result<IndexRecord, IndexError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished || self.records_read >= self.header.num_records {
            return None;
        }
        let result = self.read_record();
        self.records_read += 1;
        self.finished = result.is_err();
        Some(result)
    }
}

/// The whole file at once, with its length checked against `num_records`.
pub fn parse_index(bytes: &[u8]) -> Result<(IndexHeader, Vec<IndexRecord>), IndexError> {
    let reader = IndexReader::new(bytes)?.check_len(bytes.len() as u64)?;
    collect(reader)
}

/// A `cyrus.expunge` file: the same layout, records in expunge order.
pub fn parse_expunge(bytes: &[u8]) -> Result<(IndexHeader, Vec<IndexRecord>), IndexError> {
    let reader = IndexReader::new(bytes)?
        .check_len(bytes.len() as u64)?
        .allow_unordered();
    collect(reader)
}

fn collect<R: Read>(reader: IndexReader<R>) -> Result<(IndexHeader, Vec<IndexRecord>), IndexError> {
    let header = reader.header().clone();
    let records = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((header, records))
}

fn read_header<R: Read>(inner: &mut R) -> Result<(IndexHeader, &'static Layout), IndexError> {
    let mut prefix = [0u8; 12];
    let have = read_full(inner, &mut prefix)?;
    if have < prefix.len() {
        return Err(IndexError::TruncatedHeader {
            have,
            need: prefix.len(),
        });
    }
    let layout = layout_for(u32_at(&prefix, 8))?;
    let mut buf = prefix.to_vec();
    buf.resize(layout.header_size, 0);
    let have = 12 + read_full(inner, buf.get_mut(12..).unwrap_or_default())?;
    if have < layout.header_size {
        return Err(IndexError::TruncatedHeader {
            have,
            need: layout.header_size,
        });
    }
    let header = decode_header(layout, &buf);
    check_sizes(layout, &header)?;
    if layout.has_crcs() {
        check_header_crc(&buf)?;
    }
    Ok((header, layout))
}

fn layout_for(version: u32) -> Result<&'static Layout, IndexError> {
    match version {
        11 => Err(IndexError::Version11),
        v => layout(v).ok_or(IndexError::UnknownVersion(v)),
    }
}

fn check_sizes(layout: &Layout, header: &IndexHeader) -> Result<(), IndexError> {
    let checks = [
        ("start_offset", header.start_offset, layout.header_size),
        ("record_size", header.record_size, layout.record_size),
    ];
    for (field, found, expected) in checks {
        let expected = u32::try_from(expected).unwrap_or(u32::MAX);
        if found != expected {
            return Err(IndexError::SizeMismatch {
                version: layout.version,
                field,
                found,
                expected,
            });
        }
    }
    Ok(())
}

/// CRC32 of everything before the last 4 bytes, compared with those 4 bytes.
fn crc_of(buf: &[u8]) -> (u32, u32) {
    let split = buf.len().saturating_sub(4);
    let (body, tail) = buf.split_at(split);
    (u32_at(tail, 0), crc32fast::hash(body))
}

fn check_header_crc(buf: &[u8]) -> Result<(), IndexError> {
    match crc_of(buf) {
        (stored, computed) if stored != computed => Err(IndexError::HeaderCrc { stored, computed }),
        _ => Ok(()),
    }
}

fn check_record_crc(buf: &[u8], record: u32, uid: u32) -> Result<(), IndexError> {
    match crc_of(buf) {
        (stored, computed) if stored != computed => Err(IndexError::RecordCrc {
            record,
            uid,
            stored,
            computed,
        }),
        _ => Ok(()),
    }
}

fn decode_header(layout: &Layout, buf: &[u8]) -> IndexHeader {
    let mut header = IndexHeader::default();
    for field in layout.header_fields() {
        decode_field(field, buf, &mut header);
    }
    if layout.has_crcs() {
        header.header_crc = crc_of(buf).0;
    }
    apply_old_version_defaults(layout.version, &mut header);
    header
}

/// What Cyrus 3.x's `mailbox_buf_to_index_header` gives fields an old
/// version lacks (spec §2.2). The POP3_NEW_UIDL-when-empty rule is left
/// out: it would change `options`, and the writer must reproduce the file.
fn apply_old_version_defaults(version: u32, header: &mut IndexHeader) {
    if version < 12 {
        header.exists = header.num_records;
    }
    if version < 8 {
        header.highestmodseq = 1;
    }
    if version < 12 {
        header.deletedmodseq = header.highestmodseq;
    }
    if version < 17 {
        header.changes_epoch = header.last_repack_time;
    }
}

pub(super) fn decode_record(layout: &Layout, buf: &[u8]) -> IndexRecord {
    let mut record = IndexRecord::default();
    for field in layout.record_fields() {
        decode_field(field, buf, &mut record);
    }
    if let Some(bytes) = layout.guid_at.and_then(|at| buf.get(at..at + 20)) {
        record.guid = Guid(bytes.try_into().unwrap_or_default());
    }
    if let Some(bytes) = layout.legacy_uuid_at.and_then(|at| buf.get(at..at + 12)) {
        record.legacy_uuid = bytes.try_into().unwrap_or_default();
    }
    if layout.has_crcs() {
        record.record_crc = crc_of(buf).0;
    }
    record
}

fn decode_field<T>(field: &Field<T>, buf: &[u8], target: &mut T) {
    let at = field.offset;
    let value = match field.kind {
        Kind::U32 => u64::from(u32_at(buf, at)),
        Kind::U64 | Kind::Nanos64 => u64_at(buf, at),
        Kind::Secs32 => u64::from(u32_at(buf, at)) * 1_000_000_000,
    };
    (field.set)(target, value);
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    buf.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// Like `read_exact`, but says how much was there when the input ends early.
fn read_full<R: Read>(inner: &mut R, buf: &mut [u8]) -> Result<usize, IndexError> {
    let mut filled = 0;
    while filled < buf.len() {
        match inner.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(IndexError::Io(e)),
        }
    }
    Ok(filled)
}
