//! A damaged or foreign index is refused with an error that names the
//! problem; `cyrus.expunge` is read without the uid-order rule.

use mailvault::formats::cyrus_index::{
    encode_record, parse_expunge, parse_index, write_index, IndexError, IndexHeader, IndexReader,
    IndexRecord, IndexWriteError, Timestamp,
};

fn records(uids: &[u32]) -> Vec<IndexRecord> {
    uids.iter()
        .map(|&uid| IndexRecord {
            uid,
            size: 100 + u64::from(uid),
            internaldate: Timestamp::from_secs(1_700_000_000 + u64::from(uid)),
            ..Default::default()
        })
        .collect()
}

fn file(version: u32, uids: &[u32]) -> Vec<u8> {
    let header = IndexHeader {
        minor_version: version,
        uidvalidity: 1_795_662_396,
        last_uid: uids.last().copied().unwrap_or(0),
        ..Default::default()
    };
    write_index(&header, &records(uids)).unwrap()
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[test]
fn version_11_is_refused_as_never_released() {
    let mut f = file(12, &[1]);
    put_u32(&mut f, 8, 11);
    let err = parse_index(&f).unwrap_err();
    assert!(matches!(err, IndexError::Version11), "{err}");
    assert!(err.to_string().contains("never released"));
}

#[test]
fn unknown_versions_are_refused() {
    for v in [0, 5, 21, 0xFFFF_FFFF] {
        let mut f = file(17, &[1]);
        put_u32(&mut f, 8, v);
        assert!(matches!(parse_index(&f), Err(IndexError::UnknownVersion(x)) if x == v));
    }
}

#[test]
fn a_short_header_is_truncated() {
    let f = file(17, &[1]);
    assert!(matches!(
        parse_index(&f[..50]),
        Err(IndexError::TruncatedHeader {
            have: 50,
            need: 160
        })
    ));
    assert!(matches!(
        parse_index(&f[..5]),
        Err(IndexError::TruncatedHeader { have: 5, need: 12 })
    ));
}

#[test]
fn sizes_that_disagree_with_the_version_are_refused() {
    let mut f = file(10, &[1]);
    put_u32(&mut f, 12, 128);
    let err = parse_index(&f).unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::SizeMismatch {
                version: 10,
                field: "start_offset",
                found: 128,
                expected: 96
            }
        ),
        "{err}"
    );
    let mut f = file(17, &[1]);
    put_u32(&mut f, 16, 104);
    assert!(matches!(
        parse_index(&f),
        Err(IndexError::SizeMismatch {
            field: "record_size",
            ..
        })
    ));
}

#[test]
fn a_changed_header_byte_fails_the_header_crc() {
    let mut f = file(17, &[1, 2]);
    f[45] ^= 1; // inside uidvalidity
    assert!(matches!(parse_index(&f), Err(IndexError::HeaderCrc { .. })));
}

#[test]
fn a_changed_record_byte_fails_that_records_crc() {
    for (version, header) in [(12, 128), (17, 160), (19, 160), (20, 192)] {
        let record_size = (f_len(version, 3) - header) / 3;
        let mut f = file(version, &[4, 5, 6]);
        f[header + record_size + 13] ^= 0x80; // record 2, inside size or internaldate
        let err = parse_index(&f).unwrap_err();
        assert!(
            matches!(
                err,
                IndexError::RecordCrc {
                    record: 2,
                    uid: 5,
                    ..
                }
            ),
            "v{version}: {err}"
        );
    }
}

fn f_len(version: u32, n: u32) -> usize {
    let uids: Vec<u32> = (1..=n).collect();
    file(version, &uids).len()
}

#[test]
fn num_records_past_the_end_is_refused_when_the_length_is_known() {
    let f = file(17, &[1, 2, 3]);
    let short = &f[..f.len() - 1];
    let err = parse_index(short).unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::PastEnd {
                num_records: 3,
                needed: 496,
                file_len: 495
            }
        ),
        "{err}"
    );
    // Streaming without a length finds out at the last record.
    let results: Vec<_> = IndexReader::new(short).unwrap().collect();
    assert_eq!(results.len(), 3);
    assert!(matches!(
        results[2],
        Err(IndexError::TruncatedRecord {
            record: 3,
            have: 111,
            need: 112
        })
    ));
}

#[test]
fn uids_out_of_order_are_refused_in_an_index_but_not_in_an_expunge_file() {
    // v10, the last version with cyrus.expunge, has no CRCs to re-seal.
    let mut f = file(10, &[1, 2, 3]);
    let (a, b) = (96 + 88, 96 + 2 * 88);
    let second = f[a..a + 88].to_vec();
    let third = f[b..b + 88].to_vec();
    f[a..a + 88].copy_from_slice(&third);
    f[b..b + 88].copy_from_slice(&second);
    let err = parse_index(&f).unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::UidOrder {
                record: 3,
                uid: 2,
                previous: 3
            }
        ),
        "{err}"
    );
    let (_, recs) = parse_expunge(&f).unwrap();
    assert_eq!(recs.iter().map(|r| r.uid).collect::<Vec<_>>(), [1, 3, 2]);
}

#[test]
fn iteration_stops_after_the_first_error() {
    let mut f = file(17, &[1, 2, 3]);
    f[160 + 3] ^= 1;
    let results: Vec<_> = IndexReader::new(&f[..]).unwrap().collect();
    assert_eq!(results.len(), 1);
    assert!(results[0].is_err());
}

#[test]
fn an_error_can_name_its_file() {
    let err = parse_index(b"short")
        .unwrap_err()
        .at("/srv/spool/user/bob/cyrus.index");
    let text = err.to_string();
    assert!(
        text.starts_with("/srv/spool/user/bob/cyrus.index: truncated header"),
        "{text}"
    );
    assert!(matches!(err.kind(), IndexError::TruncatedHeader { .. }));
}

#[test]
fn the_writer_refuses_values_the_version_cannot_hold() {
    let big = IndexRecord {
        uid: 9,
        size: 1 << 32,
        ..Default::default()
    };
    assert_eq!(
        encode_record(17, &big),
        Err(IndexWriteError::DoesNotFit {
            version: 17,
            field: "size",
            value: 1 << 32,
            uid: Some(9)
        })
    );
    assert!(encode_record(20, &big).is_ok());
    let late = IndexRecord {
        internaldate: Timestamp::from_secs(1 << 32),
        ..Default::default()
    };
    assert!(matches!(
        encode_record(19, &late),
        Err(IndexWriteError::DoesNotFit {
            field: "internaldate",
            ..
        })
    ));
    let header = IndexHeader {
        minor_version: 17,
        quota_annot_used: 1 << 32,
        ..Default::default()
    };
    assert!(matches!(
        write_index(&header, &[]),
        Err(IndexWriteError::DoesNotFit {
            field: "quota_annot_used",
            ..
        })
    ));
    let header = IndexHeader {
        minor_version: 11,
        ..Default::default()
    };
    assert_eq!(
        write_index(&header, &[]),
        Err(IndexWriteError::UnsupportedVersion(11))
    );
}

#[test]
fn the_writer_refuses_records_out_of_uid_order() {
    let header = IndexHeader {
        minor_version: 17,
        ..Default::default()
    };
    assert_eq!(
        write_index(&header, &records(&[1, 3, 3])),
        Err(IndexWriteError::UidOrder {
            uid: 3,
            previous: 3
        })
    );
}

#[test]
fn old_versions_read_with_the_cyrus_3_defaults() {
    let header = IndexHeader {
        minor_version: 6,
        last_repack_time: Timestamp::from_secs(1_600_000_000),
        ..Default::default()
    };
    let f = write_index(&header, &records(&[1, 2])).unwrap();
    let (h, recs) = parse_index(&f).unwrap();
    assert_eq!(h.exists, 2);
    assert_eq!(h.highestmodseq, 1);
    assert_eq!(h.deletedmodseq, 1);
    assert_eq!(
        h.changes_epoch,
        Timestamp(0),
        "v6 has no last_repack_time to copy"
    );
    assert!(recs.iter().all(|r| r.guid.is_null()));
}
