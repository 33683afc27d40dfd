//! Properties: no input makes the reader panic, and whatever a version can
//! hold survives writer → reader unchanged. Which fields each version holds
//! is restated here from the spec (§2.2, §2.3), independently of the layout
//! tables, so the tables are checked rather than trusted.

use mailvault::formats::cyrus_index::{
    parse_index, write_index, IndexHeader, IndexRecord, Timestamp,
};
use mailvault::formats::Guid;
use proptest::prelude::*;

const VERSIONS: [u32; 14] = [6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20];

fn sizes(v: u32) -> (u32, u32) {
    match v {
        6 => (76, 60),
        7 => (76, 72),
        8 => (92, 80),
        9 => (96, 80),
        10 => (96, 88),
        12 => (128, 96),
        13 => (128, 104),
        14 | 15 => (160, 104),
        16..=19 => (160, 112),
        _ => (192, 144),
    }
}

/// A time as version `v` can store it.
fn time(v: u32, raw: u64) -> Timestamp {
    if v >= 20 {
        Timestamp(raw)
    } else {
        Timestamp::from_secs(raw % (1 << 32))
    }
}

fn record_for(v: u32, uid: u32, n: &[u64], guid: [u8; 20], uuid: [u8; 12]) -> IndexRecord {
    let at = |i: usize| n[i];
    let if_v = |ok: bool, x: u64| if ok { x } else { 0 };
    let raw_flags = at(8) as u32;
    IndexRecord {
        uid,
        internaldate: time(v, at(0)),
        sentdate: time(v, at(1)),
        size: if v >= 20 { at(2) } else { at(2) % (1 << 32) },
        header_size: at(3) as u32,
        gmtime: if v >= 12 {
            time(v, at(4))
        } else {
            Timestamp(0)
        },
        content_offset: if_v(v < 12, at(5)) as u32,
        cache_offset: at(6) as u32,
        last_updated: time(v, at(7)),
        system_flags: raw_flags & 0xFFFF,
        internal_flags: raw_flags & 0xFFFF_0000,
        user_flags: [at(9) as u32, at(10) as u32, at(11) as u32, at(12) as u32],
        content_lines: if_v(v <= 14, at(13)) as u32,
        savedate: if v >= 15 {
            time(v, at(14))
        } else {
            Timestamp(0)
        },
        cache_version: at(15) as u32,
        legacy_uuid: if (7..=9).contains(&v) { uuid } else { [0; 12] },
        guid: if v >= 10 { Guid(guid) } else { Guid::NULL },
        modseq: if_v(v >= 8, at(16)),
        cid: if_v(v >= 13, at(17)),
        createdmodseq: if_v(v >= 16, at(18)),
        basecid: if_v(v >= 20, at(19)),
        cache_crc: if_v(v >= 12, at(20)) as u32,
        record_crc: 0,
    }
}

fn header_for(v: u32, n: &[u64], num_records: u32) -> IndexHeader {
    let at = |i: usize| n[i];
    let if_v = |ok: bool, x: u64| if ok { x } else { 0 };
    let (start_offset, record_size) = sizes(v);
    let highestmodseq = if v >= 8 { at(13) } else { 1 };
    let last_repack_time = if v >= 12 {
        time(v, at(17))
    } else {
        Timestamp(0)
    };
    IndexHeader {
        generation_no: at(0) as u32,
        format: at(1) as u32,
        minor_version: v,
        start_offset,
        record_size,
        num_records,
        last_appenddate: time(v, at(2)),
        last_uid: at(3) as u32,
        quota_mailbox_used: at(4),
        pop3_last_login: time(v, at(5)),
        uidvalidity: at(6) as u32,
        deleted: at(7) as u32,
        answered: at(8) as u32,
        flagged: at(9) as u32,
        options: at(10) as u32,
        leaked_cache_records: at(11) as u32,
        highestmodseq,
        deletedmodseq: if v >= 12 { at(14) } else { highestmodseq },
        exists: if v >= 12 { at(15) as u32 } else { num_records },
        first_expunged: if v >= 12 {
            time(v, at(16))
        } else {
            Timestamp(0)
        },
        last_repack_time,
        header_file_crc: if_v(v >= 12, at(18)) as u32,
        synccrcs_basic: if_v(v >= 12, at(19)) as u32,
        recentuid: if_v(v >= 12, at(20)) as u32,
        recenttime: if v >= 12 {
            time(v, at(21))
        } else {
            Timestamp(0)
        },
        pop3_show_after: if v >= 13 {
            time(v, at(22))
        } else {
            Timestamp(0)
        },
        quota_annot_used: match v {
            20 => at(23),
            13..=19 => at(23) % (1 << 32),
            _ => 0,
        },
        synccrcs_annot: if_v(v >= 13, at(24)) as u32,
        unseen: if_v(v >= 14, at(25)) as u32,
        createdmodseq: if_v(v >= 16, at(26)),
        changes_epoch: if v >= 17 {
            time(v, at(27))
        } else {
            last_repack_time
        },
        quota_deleted_used: if_v(v >= 18, at(28)),
        quota_expunged_used: if_v(v >= 18, at(29)),
        header_crc: 0,
    }
}

type RecordSeed = (u32, Vec<u64>, [u8; 20], [u8; 12]);

fn record_seed() -> impl Strategy<Value = RecordSeed> {
    (
        1u32..1000,
        proptest::collection::vec(any::<u64>(), 21),
        any::<[u8; 20]>(),
        any::<[u8; 12]>(),
    )
}

fn without_crcs(mut h: IndexHeader, mut recs: Vec<IndexRecord>) -> (IndexHeader, Vec<IndexRecord>) {
    h.header_crc = 0;
    for r in &mut recs {
        r.record_crc = 0;
    }
    (h, recs)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let _ = parse_index(&bytes);
    }

    /// Past the version check and with sealed CRCs, random field values must
    /// still decode without a panic, and whatever decodes must re-encode.
    #[test]
    fn sealed_random_files_decode_and_reencode(
        vi in 0..VERSIONS.len(),
        n in 0u32..4,
        noise in proptest::collection::vec(any::<u8>(), 192 + 4 * 144),
    ) {
        let v = VERSIONS[vi];
        let (hs, rs) = sizes(v);
        let (hs, rs) = (hs as usize, rs as usize);
        let mut f = noise[..hs + n as usize * rs].to_vec();
        f[8..12].copy_from_slice(&v.to_be_bytes());
        f[12..16].copy_from_slice(&(hs as u32).to_be_bytes());
        f[16..20].copy_from_slice(&(rs as u32).to_be_bytes());
        f[20..24].copy_from_slice(&n.to_be_bytes());
        if v >= 12 {
            seal(&mut f[..hs]);
            for i in 0..n as usize {
                seal(&mut f[hs + i * rs..hs + (i + 1) * rs]);
            }
        }
        if let Ok((h, recs)) = parse_index(&f) {
            let again = parse_index(&write_index(&h, &recs).unwrap()).unwrap();
            prop_assert_eq!(without_crcs(again.0, again.1), without_crcs(h, recs));
        }
    }

    #[test]
    fn what_a_version_holds_survives_write_then_read(
        vi in 0..VERSIONS.len(),
        header_seed in proptest::collection::vec(any::<u64>(), 30),
        seeds in proptest::collection::vec(record_seed(), 0..5),
    ) {
        let v = VERSIONS[vi];
        let mut uid = 0;
        let records: Vec<IndexRecord> = seeds
            .iter()
            .map(|(step, n, guid, uuid)| {
                uid += step;
                record_for(v, uid, n, *guid, *uuid)
            })
            .collect();
        let header = header_for(v, &header_seed, records.len() as u32);
        let bytes = write_index(&header, &records).unwrap();
        let (start, size) = sizes(v);
        prop_assert_eq!(bytes.len(), (start + size * records.len() as u32) as usize);
        let (h, recs) = parse_index(&bytes).unwrap();
        prop_assert_eq!(write_index(&h, &recs).unwrap(), bytes);
        prop_assert_eq!(without_crcs(h, recs), (header, records));
    }
}

fn seal(buf: &mut [u8]) {
    let split = buf.len() - 4;
    let crc = crc32fast::hash(&buf[..split]);
    buf[split..].copy_from_slice(&crc.to_be_bytes());
}
