//! The store's view of a `cyrus.index` copy: uid, GUID and system flags of
//! each record, for index minor versions 10 to 20 (the range the Perl
//! `ParseIndex` accepts). This is all a rebuild needs to refill `indexed`;
//! the full reader is `formats::cyrus_index`, which replaces this on merge.

use crate::formats::Guid;

/// `system_flags` bit 30: the message file is gone; never backed up.
pub const UNLINKED: u32 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRecord {
    pub uid: u32,
    pub guid: Guid,
    pub system_flags: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("cyrus.index is {0} bytes, too short for a header")]
    TooShort(usize),
    #[error("cyrus.index minor version {0} is outside 10..=20")]
    Version(u32),
    #[error("cyrus.index header claims start_offset {start} and record_size {size}, too small for version {version}")]
    Layout { version: u32, start: u32, size: u32 },
    #[error("cyrus.index header CRC mismatch (stored {stored:08x}, computed {computed:08x})")]
    HeaderCrc { stored: u32, computed: u32 },
    #[error("cyrus.index holds {have} bytes of records, {num} records of {size} need more")]
    Truncated { have: usize, num: u32, size: u32 },
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Record offset of `system_flags`: v20 moved it.
fn sysflags_at(version: u32) -> usize {
    if version >= 20 {
        36
    } else {
        32
    }
}

/// Parses the records of a whole `cyrus.index`. The header CRC is checked
/// for v12+, as the Perl reader's `strict_crc` does.
pub fn index_records(bytes: &[u8]) -> Result<Vec<IndexRecord>, IndexError> {
    let short = || IndexError::TooShort(bytes.len());
    let version = be32(bytes, 8).ok_or_else(short)?;
    if !(10..=20).contains(&version) {
        return Err(IndexError::Version(version));
    }
    let start = be32(bytes, 12).ok_or_else(short)?;
    let size = be32(bytes, 16).ok_or_else(short)?;
    let num = be32(bytes, 20).ok_or_else(short)?;
    if start < 32 || size < 80 {
        return Err(IndexError::Layout {
            version,
            start,
            size,
        });
    }
    let header = bytes.get(..start as usize).ok_or_else(short)?;
    if version >= 12 {
        check_header_crc(header)?;
    }
    let body = &bytes[start as usize..];
    let need = (num as usize).checked_mul(size as usize);
    if need.is_none_or(|n| n > body.len()) {
        return Err(IndexError::Truncated {
            have: body.len(),
            num,
            size,
        });
    }
    let sys = sysflags_at(version);
    Ok(body
        .chunks_exact(size as usize)
        .take(num as usize)
        .filter_map(|r| record(r, sys))
        .collect())
}

fn record(r: &[u8], sys: usize) -> Option<IndexRecord> {
    let mut guid = [0u8; 20];
    guid.copy_from_slice(r.get(60..80)?);
    Some(IndexRecord {
        uid: be32(r, 0)?,
        guid: Guid(guid),
        system_flags: be32(r, sys)?,
    })
}

fn check_header_crc(header: &[u8]) -> Result<(), IndexError> {
    let split = header.len().saturating_sub(4);
    let stored = be32(header, split).ok_or(IndexError::TooShort(header.len()))?;
    let computed = crc32fast::hash(&header[..split]);
    if stored != computed {
        return Err(IndexError::HeaderCrc { stored, computed });
    }
    Ok(())
}

/// The `(uid, guid)` pairs a backup keeps: every record not UNLINKED.
pub fn backed_up(records: &[IndexRecord]) -> Vec<(u32, Guid)> {
    records
        .iter()
        .filter(|r| r.system_flags & UNLINKED == 0)
        .map(|r| (r.uid, r.guid))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(folder: &str) -> Option<Vec<u8>> {
        let p = format!(
            "{}/../shared/fixtures/spool-3.13/{folder}/cyrus.index",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(p).ok()
    }

    #[test]
    fn reads_a_real_v20_index_with_its_expunged_record() {
        let Some(bytes) = spool("INBOX") else {
            eprintln!("SKIPPED (../shared/fixtures absent): reads_a_real_v20_index_with_its_expunged_record");
            return;
        };
        let recs = index_records(&bytes).unwrap();
        let uids: Vec<u32> = recs.iter().map(|r| r.uid).collect();
        assert_eq!(uids, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            recs[0].guid.to_hex(),
            "b7ed6e137fcf82ff937612f65d33d19029b20aeb"
        );
        assert_eq!(
            recs[4].guid.to_hex(),
            "dce8cfc50eb1ab6e1c46a9159a806bb53cd697cb"
        );
        assert_eq!(backed_up(&recs).len(), 7);
    }

    #[test]
    fn a_corrupt_header_crc_is_refused() {
        let Some(mut bytes) = spool("INBOX") else {
            eprintln!("SKIPPED (../shared/fixtures absent): a_corrupt_header_crc_is_refused");
            return;
        };
        bytes[30] ^= 1;
        assert!(matches!(
            index_records(&bytes),
            Err(IndexError::HeaderCrc { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..1024)) {
            let _ = index_records(&data);
        }
    }
}
