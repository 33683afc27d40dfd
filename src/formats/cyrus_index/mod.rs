//! `cyrus.index` and `cyrus.expunge`: a mailbox's per-message records
//! (spec §2, §3). Every minor version from 6 to 20 is read (11 was never
//! released) through one table of field offsets per version ([`layout`]), and
//! the same table drives the writer, so reading and writing cannot disagree.
//!
//! Values are held in one version-independent shape: the union of every
//! version's fields, times as nanoseconds since the epoch. Fields a version
//! lacks read as zero, or as the defaults Cyrus 3.x's own reader gives them.

mod flags;
pub mod layout;
mod reader;
mod writer;

use std::path::PathBuf;

use serde::Serialize;

use super::cyrus_header::CyrusHeader;
use super::Guid;

pub use flags::*;
pub use reader::{parse_expunge, parse_index, IndexReader};
pub use writer::{encode_header, encode_record, write_index, IndexWriteError};

/// A time in nanoseconds since the Unix epoch. Versions up to 19 store whole
/// seconds (held here × 10⁹); v20 stores nanoseconds. One unit for all
/// versions lets callers compare and convert without knowing the version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

const NANOS_PER_SEC: u64 = 1_000_000_000;

impl Timestamp {
    pub fn from_secs(secs: u64) -> Timestamp {
        Timestamp(secs.saturating_mul(NANOS_PER_SEC))
    }

    /// Whole seconds, as versions ≤ 19 store them and as file mtimes use them.
    pub fn secs(self) -> u64 {
        self.0 / NANOS_PER_SEC
    }

    pub fn subsec_nanos(self) -> u32 {
        // The remainder is below 10⁹, so it always fits.
        u32::try_from(self.0 % NANOS_PER_SEC).unwrap_or(0)
    }
}

/// The index header: every field of every version (spec §2.2), by its spec name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IndexHeader {
    pub generation_no: u32,
    pub format: u32,
    pub minor_version: u32,
    pub start_offset: u32,
    pub record_size: u32,
    /// Records in the file; in v6–v10 (and in `cyrus.expunge`) this is the `exists` field.
    pub num_records: u32,
    pub last_appenddate: Timestamp,
    pub last_uid: u32,
    pub quota_mailbox_used: u64,
    pub pop3_last_login: Timestamp,
    pub uidvalidity: u32,
    pub deleted: u32,
    pub answered: u32,
    pub flagged: u32,
    pub options: u32,
    pub leaked_cache_records: u32,
    /// v8+; 1 when reading v6/v7.
    pub highestmodseq: u64,
    /// v12+; equals `highestmodseq` when reading older versions.
    pub deletedmodseq: u64,
    /// v12+; equals `num_records` when reading older versions.
    pub exists: u32,
    pub first_expunged: Timestamp,
    pub last_repack_time: Timestamp,
    pub header_file_crc: u32,
    /// `synccrcs.basic` (v12: the whole-mailbox `sync_crc`).
    pub synccrcs_basic: u32,
    pub recentuid: u32,
    pub recenttime: Timestamp,
    pub pop3_show_after: Timestamp,
    pub quota_annot_used: u64,
    pub synccrcs_annot: u32,
    pub unseen: u32,
    pub createdmodseq: u64,
    /// v17+; equals `last_repack_time` when reading older versions. (Cyrus
    /// substitutes "now" when that is 0; a pure codec cannot, so it stays 0.)
    pub changes_epoch: Timestamp,
    pub quota_deleted_used: u64,
    pub quota_expunged_used: u64,
    /// The CRC32 stored in the file (v12+; 0 before). The writer computes its own.
    pub header_crc: u32,
}

/// One message record: every field of every version (spec §2.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IndexRecord {
    pub uid: u32,
    pub internaldate: Timestamp,
    pub sentdate: Timestamp,
    pub size: u64,
    pub header_size: u32,
    /// v12+: the Date: header as full UTC time.
    pub gmtime: Timestamp,
    /// v6–v10 only: the body offset, in the slot v12 reused for `gmtime`.
    pub content_offset: u32,
    /// The low 32 bits of the cache offset as stored; see [`IndexRecord::cache_offset_full`].
    pub cache_offset: u32,
    pub last_updated: Timestamp,
    /// IMAP flags: the low 16 bits of the stored word.
    pub system_flags: u32,
    /// Cyrus-internal flags: the high 16 bits of the same word, unshifted.
    pub internal_flags: u32,
    /// User flag *i* is bit `i % 32` of `user_flags[i / 32]`.
    pub user_flags: [u32; 4],
    /// v6–v14, NNTP only; kept so files rewrite byte for byte.
    pub content_lines: u32,
    /// v15+.
    pub savedate: Timestamp,
    /// As stored: low 16 bits the cache format, high 16 bits extend `cache_offset` (3.2+).
    pub cache_version: u32,
    /// v7–v9's obsolete 12-byte message UUID, kept for byte-exact rewriting.
    #[serde(serialize_with = "hex_bytes")]
    pub legacy_uuid: [u8; 12],
    /// v10+: SHA-1 of the message file; null before.
    #[serde(serialize_with = "guid_hex")]
    pub guid: Guid,
    /// v8+.
    pub modseq: u64,
    /// v13+: conversation id.
    pub cid: u64,
    /// v16+.
    pub createdmodseq: u64,
    /// v20.
    pub basecid: u64,
    /// v12+.
    pub cache_crc: u32,
    /// The CRC32 stored in the file (v12+; 0 before). The writer computes its own.
    pub record_crc: u32,
}

impl IndexRecord {
    /// The real `cyrus.cache` offset: 3.2+ keeps bits 32–47 in `cache_version`'s high half.
    pub fn cache_offset_full(&self) -> u64 {
        u64::from(self.cache_offset) | (u64::from(self.cache_version & 0xFFFF_0000) << 16)
    }
}

/// Why an index or expunge file could not be read. The caller adds the path
/// with [`IndexError::at`].
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("truncated header: {have} of {need} bytes")]
    TruncatedHeader { have: usize, need: usize },
    #[error("minor version 11 was never released (a Fastmail-internal format)")]
    Version11,
    #[error("unknown minor version {0}")]
    UnknownVersion(u32),
    #[error("{field} is {found}, but minor version {version} needs {expected}")]
    SizeMismatch {
        version: u32,
        field: &'static str,
        found: u32,
        expected: u32,
    },
    #[error("header CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderCrc { stored: u32, computed: u32 },
    #[error("record {record} (uid {uid}) CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    RecordCrc {
        record: u32,
        uid: u32,
        stored: u32,
        computed: u32,
    },
    #[error("num_records {num_records} needs {needed} bytes but the file has {file_len}")]
    PastEnd {
        num_records: u32,
        needed: u64,
        file_len: u64,
    },
    #[error("record {record} is truncated: {have} of {need} bytes")]
    TruncatedRecord {
        record: u32,
        have: usize,
        need: usize,
    },
    #[error("record {record}: uid {uid} does not follow uid {previous}")]
    UidOrder {
        record: u32,
        uid: u32,
        previous: u32,
    },
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("{path}: {source}")]
    At {
        path: PathBuf,
        #[source]
        source: Box<IndexError>,
    },
}

impl IndexError {
    /// Names the file the problem was found in.
    pub fn at(self, path: impl Into<PathBuf>) -> IndexError {
        IndexError::At {
            path: path.into(),
            source: Box::new(self),
        }
    }

    /// The problem itself, without the path wrapper.
    pub fn kind(&self) -> &IndexError {
        match self {
            IndexError::At { source, .. } => source.kind(),
            other => other,
        }
    }
}

/// The JSON `mailvault inspect` prints: the header, the `cyrus.header` when
/// given, and every record with its flag names (keywords need the header).
pub fn index_to_json(
    header: &IndexHeader,
    records: &[IndexRecord],
    cyrus_header: Option<&CyrusHeader>,
) -> serde_json::Value {
    let names = cyrus_header.map_or(&[][..], |h| &h.user_flags[..]);
    let records: Vec<serde_json::Value> = records.iter().map(|r| record_json(r, names)).collect();
    serde_json::json!({
        "header": header,
        "cyrus_header": cyrus_header,
        "records": records,
    })
}

fn record_json(record: &IndexRecord, names: &[Option<String>]) -> serde_json::Value {
    let mut value = serde_json::to_value(record).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("flags".into(), record.flag_names(names).into());
    }
    value
}

fn guid_hex<S: serde::Serializer>(guid: &Guid, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&guid.to_hex())
}

fn hex_bytes<S: serde::Serializer>(bytes: &[u8; 12], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}
