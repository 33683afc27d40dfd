//! Writer for any supported version (spec §2.7, §8.2 recipe B): exact sizes,
//! zeroed spare bytes, CRCs computed last. Values that do not fit the chosen
//! version are refused rather than silently cut, except sub-second parts of
//! times, which versions up to 19 cannot hold and which are dropped.

use super::layout::{layout, Field, Kind, Layout};
use super::{IndexHeader, IndexRecord};

/// Why an index could not be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexWriteError {
    #[error("cannot write minor version {0}")]
    UnsupportedVersion(u32),
    #[error("{field} = {value} does not fit minor version {version}{}", uid.map(|u| format!(" (uid {u})")).unwrap_or_default())]
    DoesNotFit {
        version: u32,
        field: &'static str,
        value: u64,
        uid: Option<u32>,
    },
    #[error("uid {uid} does not follow uid {previous}: records must be in ascending uid order")]
    UidOrder { uid: u32, previous: u32 },
    #[error("{0} records are more than an index can count")]
    TooManyRecords(usize),
}

/// The whole file for `header.minor_version`. `start_offset`, `record_size`
/// and `num_records` are taken from the version and from `records`; the
/// stored CRC fields of the inputs are ignored and recomputed.
pub fn write_index(
    header: &IndexHeader,
    records: &[IndexRecord],
) -> Result<Vec<u8>, IndexWriteError> {
    check_uid_order(records)?;
    let count =
        u32::try_from(records.len()).map_err(|_| IndexWriteError::TooManyRecords(records.len()))?;
    let mut out = encode_header(header, count)?;
    for record in records {
        out.extend_from_slice(&encode_record(header.minor_version, record)?);
    }
    Ok(out)
}

/// The header alone, for a writer that streams its records.
pub fn encode_header(header: &IndexHeader, num_records: u32) -> Result<Vec<u8>, IndexWriteError> {
    let layout = writable(header.minor_version)?;
    let mut header = header.clone();
    header.start_offset = size_u32(layout.header_size);
    header.record_size = size_u32(layout.record_size);
    header.num_records = num_records;
    let mut buf = vec![0; layout.header_size];
    for field in layout.header_fields() {
        encode_field(layout, field, &header, &mut buf, None)?;
    }
    if layout.has_crcs() {
        seal_with_crc(&mut buf);
    }
    Ok(buf)
}

/// One record in the layout of `version`.
pub fn encode_record(version: u32, record: &IndexRecord) -> Result<Vec<u8>, IndexWriteError> {
    let layout = writable(version)?;
    let mut buf = vec![0; layout.record_size];
    for field in layout.record_fields() {
        encode_field(layout, field, record, &mut buf, Some(record.uid))?;
    }
    if let Some(at) = layout.guid_at {
        put(&mut buf, at, &record.guid.0);
    }
    if let Some(at) = layout.legacy_uuid_at {
        put(&mut buf, at, &record.legacy_uuid);
    }
    if layout.has_crcs() {
        seal_with_crc(&mut buf);
    }
    Ok(buf)
}

fn writable(version: u32) -> Result<&'static Layout, IndexWriteError> {
    layout(version).ok_or(IndexWriteError::UnsupportedVersion(version))
}

fn size_u32(size: usize) -> u32 {
    // Layout sizes are at most 192.
    u32::try_from(size).unwrap_or(u32::MAX)
}

fn check_uid_order(records: &[IndexRecord]) -> Result<(), IndexWriteError> {
    for pair in records.windows(2) {
        if let [a, b] = pair {
            if b.uid <= a.uid {
                return Err(IndexWriteError::UidOrder {
                    uid: b.uid,
                    previous: a.uid,
                });
            }
        }
    }
    Ok(())
}

fn encode_field<T>(
    layout: &Layout,
    field: &Field<T>,
    source: &T,
    buf: &mut [u8],
    uid: Option<u32>,
) -> Result<(), IndexWriteError> {
    let value = (field.get)(source);
    let too_big = || IndexWriteError::DoesNotFit {
        version: layout.version,
        field: field.name,
        value,
        uid,
    };
    match field.kind {
        Kind::U32 => {
            let v = u32::try_from(value).map_err(|_| too_big())?;
            put(buf, field.offset, &v.to_be_bytes());
        }
        Kind::Secs32 => {
            let v = u32::try_from(value / 1_000_000_000).map_err(|_| too_big())?;
            put(buf, field.offset, &v.to_be_bytes());
        }
        Kind::U64 | Kind::Nanos64 => put(buf, field.offset, &value.to_be_bytes()),
    }
    Ok(())
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(slot) = buf.get_mut(at..at + bytes.len()) {
        slot.copy_from_slice(bytes);
    }
}

/// Stores CRC32 of all preceding bytes in the last four.
fn seal_with_crc(buf: &mut [u8]) {
    let split = buf.len().saturating_sub(4);
    let crc = crc32fast::hash(buf.get(..split).unwrap_or_default());
    put(buf, split, &crc.to_be_bytes());
}
