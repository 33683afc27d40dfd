//! Where each field sits in each minor version (spec §2.2, §2.3).
//!
//! A version's layout is a list of segments; a segment is a run of fields
//! shared by several versions. Reader and writer both walk these tables, so
//! an offset is written down exactly once.

use super::{IndexHeader, IndexRecord, Timestamp};

/// How a field is stored on disk. Every integer is big-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    U32,
    U64,
    /// u32 seconds since the epoch (v ≤ 19).
    Secs32,
    /// u64 nanoseconds since the epoch (v20).
    Nanos64,
}

impl Kind {
    pub fn width(self) -> usize {
        match self {
            Kind::U32 | Kind::Secs32 => 4,
            Kind::U64 | Kind::Nanos64 => 8,
        }
    }
}

/// One field of `T` at a byte offset. Values pass through as u64 (times as
/// nanoseconds) so one loop serves every field.
pub struct Field<T: 'static> {
    pub name: &'static str,
    pub offset: usize,
    pub kind: Kind,
    pub get: fn(&T) -> u64,
    pub set: fn(&mut T, u64),
}

/// The shape of one minor version.
pub struct Layout {
    pub version: u32,
    pub header_size: usize,
    pub record_size: usize,
    pub header: &'static [&'static [Field<IndexHeader>]],
    pub record: &'static [&'static [Field<IndexRecord>]],
    /// The 20-byte GUID (v10+).
    pub guid_at: Option<usize>,
    /// The obsolete 12-byte message UUID (v7–v9).
    pub legacy_uuid_at: Option<usize>,
}

impl Layout {
    /// v12 and later end the header and every record with a CRC32.
    pub fn has_crcs(&self) -> bool {
        self.version >= 12
    }

    pub fn header_fields(&self) -> impl Iterator<Item = &'static Field<IndexHeader>> {
        self.header.iter().flat_map(|segment| segment.iter())
    }

    pub fn record_fields(&self) -> impl Iterator<Item = &'static Field<IndexRecord>> {
        self.record.iter().flat_map(|segment| segment.iter())
    }
}

/// The layout of `version`, or `None` for versions that do not exist.
pub fn layout(version: u32) -> Option<&'static Layout> {
    LAYOUTS.iter().find(|l| l.version == version)
}

macro_rules! int {
    ($f:ident, $off:expr, $kind:ident) => {
        Field {
            name: stringify!($f),
            offset: $off,
            kind: Kind::$kind,
            get: |x| x.$f as u64,
            set: |x, v| x.$f = v as _,
        }
    };
}

macro_rules! time {
    ($f:ident, $off:expr, $kind:ident) => {
        Field {
            name: stringify!($f),
            offset: $off,
            kind: Kind::$kind,
            get: |x| x.$f.0,
            set: |x, v| x.$f = Timestamp(v),
        }
    };
}

macro_rules! user_flags {
    ($i:literal, $off:expr) => {
        Field {
            name: concat!("user_flags[", $i, "]"),
            offset: $off,
            kind: Kind::U32,
            get: |x| u64::from(x.user_flags[$i]),
            set: |x, v| x.user_flags[$i] = v as u32,
        }
    };
}

/// The stored flags word is split into its IMAP half and its internal half.
const SYSTEM_FLAGS_AT_32: Field<IndexRecord> = system_flags(32);

const fn system_flags(offset: usize) -> Field<IndexRecord> {
    Field {
        name: "system_flags",
        offset,
        kind: Kind::U32,
        get: |x| u64::from(x.system_flags | x.internal_flags),
        set: |x, v| {
            x.system_flags = v as u32 & 0xFFFF;
            x.internal_flags = v as u32 & 0xFFFF_0000;
        },
    }
}

// ---- header segments ----

/// Bytes 0–59, identical in v6–v19.
static H_COMMON: &[Field<IndexHeader>] = &[
    int!(generation_no, 0, U32),
    int!(format, 4, U32),
    int!(minor_version, 8, U32),
    int!(start_offset, 12, U32),
    int!(record_size, 16, U32),
    int!(num_records, 20, U32),
    time!(last_appenddate, 24, Secs32),
    int!(last_uid, 28, U32),
    int!(quota_mailbox_used, 32, U64),
    time!(pop3_last_login, 40, Secs32),
    int!(uidvalidity, 44, U32),
    int!(deleted, 48, U32),
    int!(answered, 52, U32),
    int!(flagged, 56, U32),
];
static H_OPTIONS: &[Field<IndexHeader>] =
    &[int!(options, 60, U32), int!(leaked_cache_records, 64, U32)];
static H_MODSEQ: &[Field<IndexHeader>] = &[int!(highestmodseq, 68, U64)];
static H_V12: &[Field<IndexHeader>] = &[
    int!(deletedmodseq, 76, U64),
    int!(exists, 84, U32),
    time!(first_expunged, 88, Secs32),
    time!(last_repack_time, 92, Secs32),
    int!(header_file_crc, 96, U32),
    int!(synccrcs_basic, 100, U32),
    int!(recentuid, 104, U32),
    time!(recenttime, 108, Secs32),
];
static H_V13: &[Field<IndexHeader>] = &[
    time!(pop3_show_after, 112, Secs32),
    int!(quota_annot_used, 116, U32),
    int!(synccrcs_annot, 120, U32),
];
static H_UNSEEN: &[Field<IndexHeader>] = &[int!(unseen, 124, U32)];
static H_CREATEDMODSEQ: &[Field<IndexHeader>] = &[int!(createdmodseq, 128, U64)];
static H_EPOCH: &[Field<IndexHeader>] = &[time!(changes_epoch, 136, Secs32)];
static H_V18: &[Field<IndexHeader>] = &[
    int!(quota_deleted_used, 140, U64),
    int!(quota_expunged_used, 148, U64),
];
/// v19 reordered everything after byte 60 for alignment.
static H_V19: &[Field<IndexHeader>] = &[
    int!(exists, 60, U32),
    int!(options, 64, U32),
    int!(leaked_cache_records, 68, U32),
    int!(highestmodseq, 72, U64),
    int!(deletedmodseq, 80, U64),
    time!(first_expunged, 88, Secs32),
    time!(last_repack_time, 92, Secs32),
    int!(header_file_crc, 96, U32),
    int!(synccrcs_basic, 100, U32),
    int!(recentuid, 104, U32),
    time!(recenttime, 108, Secs32),
    time!(pop3_show_after, 112, Secs32),
    int!(quota_annot_used, 116, U32),
    int!(synccrcs_annot, 120, U32),
    int!(unseen, 124, U32),
    int!(createdmodseq, 128, U64),
    int!(quota_deleted_used, 136, U64),
    int!(quota_expunged_used, 144, U64),
    time!(changes_epoch, 152, Secs32),
];
/// v20 (3.13): 64-bit nanosecond times, a different order again.
static H_V20: &[Field<IndexHeader>] = &[
    int!(generation_no, 0, U32),
    int!(format, 4, U32),
    int!(minor_version, 8, U32),
    int!(start_offset, 12, U32),
    int!(record_size, 16, U32),
    int!(num_records, 20, U32),
    time!(last_appenddate, 24, Nanos64),
    int!(quota_mailbox_used, 32, U64),
    time!(pop3_last_login, 40, Nanos64),
    int!(deleted, 48, U32),
    int!(answered, 52, U32),
    int!(flagged, 56, U32),
    int!(exists, 60, U32),
    int!(options, 64, U32),
    int!(leaked_cache_records, 68, U32),
    int!(highestmodseq, 72, U64),
    int!(deletedmodseq, 80, U64),
    int!(last_uid, 88, U32),
    int!(uidvalidity, 92, U32),
    int!(header_file_crc, 96, U32),
    int!(synccrcs_basic, 100, U32),
    time!(recenttime, 104, Nanos64),
    time!(pop3_show_after, 112, Nanos64),
    int!(synccrcs_annot, 120, U32),
    int!(unseen, 124, U32),
    int!(createdmodseq, 128, U64),
    int!(quota_deleted_used, 136, U64),
    int!(quota_expunged_used, 144, U64),
    int!(quota_annot_used, 152, U64),
    time!(changes_epoch, 160, Nanos64),
    time!(first_expunged, 168, Nanos64),
    time!(last_repack_time, 176, Nanos64),
    int!(recentuid, 184, U32),
];

// ---- record segments ----

/// Bytes 0–51 except 20, identical in v6–v19.
static R_COMMON: &[Field<IndexRecord>] = &[
    int!(uid, 0, U32),
    time!(internaldate, 4, Secs32),
    time!(sentdate, 8, Secs32),
    int!(size, 12, U32),
    int!(header_size, 16, U32),
    int!(cache_offset, 24, U32),
    time!(last_updated, 28, Secs32),
    SYSTEM_FLAGS_AT_32,
    user_flags!(0, 36),
    user_flags!(1, 40),
    user_flags!(2, 44),
    user_flags!(3, 48),
];
static R_CONTENT_OFFSET: &[Field<IndexRecord>] = &[int!(content_offset, 20, U32)];
static R_GMTIME: &[Field<IndexRecord>] = &[time!(gmtime, 20, Secs32)];
static R_LINES: &[Field<IndexRecord>] = &[int!(content_lines, 52, U32)];
static R_SAVEDATE: &[Field<IndexRecord>] = &[time!(savedate, 52, Secs32)];
static R_CACHE_VERSION: &[Field<IndexRecord>] = &[int!(cache_version, 56, U32)];
static R_MODSEQ_72: &[Field<IndexRecord>] = &[int!(modseq, 72, U64)];
static R_MODSEQ_80: &[Field<IndexRecord>] = &[int!(modseq, 80, U64)];
static R_V12: &[Field<IndexRecord>] = &[int!(cache_crc, 88, U32)];
static R_V13: &[Field<IndexRecord>] = &[int!(cid, 88, U64), int!(cache_crc, 96, U32)];
static R_V16: &[Field<IndexRecord>] = &[
    int!(cid, 88, U64),
    int!(createdmodseq, 96, U64),
    int!(cache_crc, 104, U32),
];
static R_V20: &[Field<IndexRecord>] = &[
    int!(uid, 0, U32),
    int!(cache_offset, 4, U32),
    time!(internaldate, 8, Nanos64),
    time!(sentdate, 16, Nanos64),
    int!(size, 24, U64),
    int!(header_size, 32, U32),
    system_flags(36),
    user_flags!(0, 40),
    user_flags!(1, 44),
    user_flags!(2, 48),
    user_flags!(3, 52),
    int!(cache_version, 56, U32),
    int!(modseq, 80, U64),
    int!(cid, 88, U64),
    int!(createdmodseq, 96, U64),
    time!(gmtime, 104, Nanos64),
    time!(last_updated, 112, Nanos64),
    time!(savedate, 120, Nanos64),
    int!(basecid, 128, U64),
    int!(cache_crc, 136, U32),
];

const fn v(
    version: u32,
    header_size: usize,
    record_size: usize,
    header: &'static [&'static [Field<IndexHeader>]],
    record: &'static [&'static [Field<IndexRecord>]],
) -> Layout {
    Layout {
        version,
        header_size,
        record_size,
        header,
        record,
        guid_at: if version >= 10 { Some(60) } else { None },
        legacy_uuid_at: if version >= 7 && version <= 9 {
            Some(60)
        } else {
            None
        },
    }
}

static HEADER_V6: &[&[Field<IndexHeader>]] = &[H_COMMON, H_OPTIONS];
static HEADER_V8: &[&[Field<IndexHeader>]] = &[H_COMMON, H_OPTIONS, H_MODSEQ];
static HEADER_V12: &[&[Field<IndexHeader>]] = &[H_COMMON, H_OPTIONS, H_MODSEQ, H_V12];
static HEADER_V13: &[&[Field<IndexHeader>]] = &[H_COMMON, H_OPTIONS, H_MODSEQ, H_V12, H_V13];
static HEADER_V14: &[&[Field<IndexHeader>]] =
    &[H_COMMON, H_OPTIONS, H_MODSEQ, H_V12, H_V13, H_UNSEEN];
static HEADER_V16: &[&[Field<IndexHeader>]] = &[
    H_COMMON,
    H_OPTIONS,
    H_MODSEQ,
    H_V12,
    H_V13,
    H_UNSEEN,
    H_CREATEDMODSEQ,
];
static HEADER_V17: &[&[Field<IndexHeader>]] = &[
    H_COMMON,
    H_OPTIONS,
    H_MODSEQ,
    H_V12,
    H_V13,
    H_UNSEEN,
    H_CREATEDMODSEQ,
    H_EPOCH,
];
static HEADER_V18: &[&[Field<IndexHeader>]] = &[
    H_COMMON,
    H_OPTIONS,
    H_MODSEQ,
    H_V12,
    H_V13,
    H_UNSEEN,
    H_CREATEDMODSEQ,
    H_EPOCH,
    H_V18,
];
static HEADER_V19: &[&[Field<IndexHeader>]] = &[H_COMMON, H_V19];
static HEADER_V20: &[&[Field<IndexHeader>]] = &[H_V20];

static RECORD_V6: &[&[Field<IndexRecord>]] =
    &[R_COMMON, R_CONTENT_OFFSET, R_LINES, R_CACHE_VERSION];
static RECORD_V8: &[&[Field<IndexRecord>]] = &[
    R_COMMON,
    R_CONTENT_OFFSET,
    R_LINES,
    R_CACHE_VERSION,
    R_MODSEQ_72,
];
static RECORD_V10: &[&[Field<IndexRecord>]] = &[
    R_COMMON,
    R_CONTENT_OFFSET,
    R_LINES,
    R_CACHE_VERSION,
    R_MODSEQ_80,
];
static RECORD_V12: &[&[Field<IndexRecord>]] = &[
    R_COMMON,
    R_GMTIME,
    R_LINES,
    R_CACHE_VERSION,
    R_MODSEQ_80,
    R_V12,
];
static RECORD_V13: &[&[Field<IndexRecord>]] = &[
    R_COMMON,
    R_GMTIME,
    R_LINES,
    R_CACHE_VERSION,
    R_MODSEQ_80,
    R_V13,
];
static RECORD_V15: &[&[Field<IndexRecord>]] = &[
    R_COMMON,
    R_GMTIME,
    R_SAVEDATE,
    R_CACHE_VERSION,
    R_MODSEQ_80,
    R_V13,
];
static RECORD_V16: &[&[Field<IndexRecord>]] = &[
    R_COMMON,
    R_GMTIME,
    R_SAVEDATE,
    R_CACHE_VERSION,
    R_MODSEQ_80,
    R_V16,
];
static RECORD_V20: &[&[Field<IndexRecord>]] = &[R_V20];

/// Every version Cyrus ever released (11 never was).
static LAYOUTS: [Layout; 14] = [
    v(6, 76, 60, HEADER_V6, RECORD_V6),
    v(7, 76, 72, HEADER_V6, RECORD_V6),
    v(8, 92, 80, HEADER_V8, RECORD_V8),
    v(9, 96, 80, HEADER_V8, RECORD_V8),
    v(10, 96, 88, HEADER_V8, RECORD_V10),
    v(12, 128, 96, HEADER_V12, RECORD_V12),
    v(13, 128, 104, HEADER_V13, RECORD_V13),
    v(14, 160, 104, HEADER_V14, RECORD_V13),
    v(15, 160, 104, HEADER_V14, RECORD_V15),
    v(16, 160, 112, HEADER_V16, RECORD_V16),
    v(17, 160, 112, HEADER_V17, RECORD_V16),
    v(18, 160, 112, HEADER_V18, RECORD_V16),
    v(19, 160, 112, HEADER_V19, RECORD_V16),
    v(20, 192, 144, HEADER_V20, RECORD_V20),
];

/// The minor versions this crate reads and writes.
pub fn supported_versions() -> impl Iterator<Item = u32> {
    LAYOUTS.iter().map(|l| l.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fields must lie inside the header or record, before its CRC, and
    /// never overlap: that is what makes the tables trustworthy.
    fn check_no_overlap(
        version: u32,
        size: usize,
        crc: bool,
        spans: &mut Vec<(usize, usize, &str)>,
    ) {
        let limit = if crc { size - 4 } else { size };
        spans.sort();
        for pair in spans.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "v{version}: {pair:?} overlap");
        }
        for (start, end, name) in spans.iter() {
            assert!(
                *start < *end && *end <= limit,
                "v{version}: {name} out of bounds"
            );
        }
    }

    #[test]
    fn every_layout_is_consistent_with_its_sizes() {
        for l in LAYOUTS.iter() {
            let mut spans: Vec<_> = l
                .header_fields()
                .map(|f| (f.offset, f.offset + f.kind.width(), f.name))
                .collect();
            check_no_overlap(l.version, l.header_size, l.has_crcs(), &mut spans);
            let mut spans: Vec<_> = l
                .record_fields()
                .map(|f| (f.offset, f.offset + f.kind.width(), f.name))
                .collect();
            if let Some(at) = l.guid_at {
                spans.push((at, at + 20, "guid"));
            }
            if let Some(at) = l.legacy_uuid_at {
                spans.push((at, at + 12, "legacy_uuid"));
            }
            check_no_overlap(l.version, l.record_size, l.has_crcs(), &mut spans);
        }
    }

    #[test]
    fn version_11_and_unknown_versions_have_no_layout() {
        assert!(layout(11).is_none());
        assert!(layout(5).is_none());
        assert!(layout(21).is_none());
        assert_eq!(supported_versions().count(), 14);
    }
}
