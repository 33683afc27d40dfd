//! The store's reading of a `cyrus.index` copy, through the full reader in
//! `formats::cyrus_index`, under the rules the Perl `ParseIndex` keeps: only
//! minor versions 10 to 20 are backed up, since versions before 10 carry no
//! GUID and a message cannot be named without one; the header CRC is
//! checked (`strict_crc`), record CRCs and uid order are not. A rebuild
//! must accept every copy the Perl rebuild accepts, and `verify --full`
//! asks exactly whether a rebuild could use each copy (damage to a copy's
//! bytes is caught by its sha1 first).

use std::borrow::Cow;

use crate::formats::cyrus_index::layout::layout;
use crate::formats::cyrus_index::{IndexError, IndexHeader, IndexReader, IndexRecord};
use crate::formats::Guid;

/// The versions `ParseIndex` accepts (`$MAX_INDEXVERSION` is 20).
pub const BACKUP_VERSIONS: std::ops::RangeInclusive<u32> = 10..=20;

#[derive(Debug, thiserror::Error)]
pub enum IndexCopyError {
    #[error("{0}")]
    Parse(#[from] IndexError),
    #[error("cyrus.index minor version {0} is outside 10..=20 (before 10 there are no GUIDs)")]
    Version(u32),
}

/// Parses a whole copy as the Perl `ParseIndex` reads it, refusing the
/// versions a backup cannot use.
pub fn parse_backup_index(bytes: &[u8]) -> Result<(IndexHeader, Vec<IndexRecord>), IndexCopyError> {
    let bytes = with_record_crcs_resealed(bytes);
    let reader = IndexReader::new(&bytes[..])?
        .check_len(bytes.len() as u64)?
        .allow_unordered();
    let header = reader.header().clone();
    check_version(&header)?;
    let records = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((header, records))
}

fn check_version(header: &IndexHeader) -> Result<(), IndexCopyError> {
    if !BACKUP_VERSIONS.contains(&header.minor_version) {
        return Err(IndexCopyError::Version(header.minor_version));
    }
    Ok(())
}

/// The Perl reader ignores record CRCs; ours checks them. Resealing each
/// record of a copy makes ours ignore them too, without a second reader.
fn with_record_crcs_resealed(bytes: &[u8]) -> Cow<'_, [u8]> {
    let version = match bytes.get(8..12) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => return Cow::Borrowed(bytes),
    };
    let Some(l) = layout(version).filter(|l| l.has_crcs() && l.record_size >= 4) else {
        return Cow::Borrowed(bytes);
    };
    let mut out = bytes.to_vec();
    let mut at = l.header_size;
    while let Some(record) = at
        .checked_add(l.record_size)
        .and_then(|end| out.get_mut(at..end))
    {
        let (body, crc) = record.split_at_mut(l.record_size - 4);
        crc.copy_from_slice(&crc32fast::hash(body).to_be_bytes());
        at += l.record_size;
    }
    Cow::Owned(out)
}

/// The `(uid, guid)` pairs a backup keeps: every record not UNLINKED
/// (expunged but present records are kept, as the Perl client does).
pub fn backed_up(records: &[IndexRecord]) -> Vec<(u32, Guid)> {
    records
        .iter()
        .filter(|r| !r.is_unlinked())
        .map(|r| (r.uid, r.guid))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::cyrus_index::{write_index, FLAG_INTERNAL_UNLINKED};

    fn spool(folder: &str) -> Option<Vec<u8>> {
        let p = format!(
            "{}/../shared/fixtures/spool-3.13/{folder}/cyrus.index",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(p).ok()
    }

    fn skipped(test: &str) {
        use std::io::Write;
        let line = format!("SKIPPED (../shared/fixtures absent): {test}\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    #[test]
    fn a_real_v20_index_keeps_its_expunged_record() {
        let Some(bytes) = spool("INBOX") else {
            return skipped("a_real_v20_index_keeps_its_expunged_record");
        };
        let (header, records) = parse_backup_index(&bytes).unwrap();
        assert_eq!(header.minor_version, 20);
        let kept = backed_up(&records);
        let uids: Vec<u32> = kept.iter().map(|r| r.0).collect();
        assert_eq!(uids, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            kept[0].1.to_hex(),
            "b7ed6e137fcf82ff937612f65d33d19029b20aeb"
        );
        assert_eq!(
            kept[4].1.to_hex(),
            "dce8cfc50eb1ab6e1c46a9159a806bb53cd697cb"
        );
    }

    #[test]
    fn a_corrupt_header_crc_is_refused() {
        let Some(mut bytes) = spool("INBOX") else {
            return skipped("a_corrupt_header_crc_is_refused");
        };
        bytes[30] ^= 1;
        assert!(matches!(
            parse_backup_index(&bytes),
            Err(IndexCopyError::Parse(IndexError::HeaderCrc { .. }))
        ));
    }

    fn index_of(version: u32, records: &[IndexRecord]) -> Vec<u8> {
        let header = IndexHeader {
            minor_version: version,
            ..Default::default()
        };
        write_index(&header, records).unwrap()
    }

    #[test]
    fn versions_before_10_have_no_guids_and_are_refused() {
        let bytes = index_of(
            9,
            &[IndexRecord {
                uid: 1,
                ..Default::default()
            }],
        );
        assert!(
            crate::formats::cyrus_index::parse_index(&bytes).is_ok(),
            "the codec itself reads v9"
        );
        assert!(matches!(
            parse_backup_index(&bytes),
            Err(IndexCopyError::Version(9))
        ));
    }

    #[test]
    fn unlinked_records_are_not_backed_up() {
        let records = [
            IndexRecord {
                uid: 1,
                guid: Guid([1; 20]),
                ..Default::default()
            },
            IndexRecord {
                uid: 2,
                guid: Guid([2; 20]),
                internal_flags: FLAG_INTERNAL_UNLINKED,
                ..Default::default()
            },
        ];
        let (_, parsed) = parse_backup_index(&index_of(12, &records)).unwrap();
        assert_eq!(backed_up(&parsed), [(1, Guid([1; 20]))]);
    }

    #[test]
    fn record_crcs_are_ignored_as_in_perl_though_cyrus_checks_them() {
        let Some(mut bytes) = spool("INBOX") else {
            return skipped("record_crcs_are_ignored_as_in_perl_though_cyrus_checks_them");
        };
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(parse_backup_index(&bytes).unwrap().1.len(), 7);
        assert!(matches!(
            crate::formats::cyrus_index::parse_index(&bytes),
            Err(IndexError::RecordCrc { record: 7, .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..1024)) {
            let _ = parse_backup_index(&data);
        }
    }
}
