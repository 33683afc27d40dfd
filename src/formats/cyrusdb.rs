//! One read-only view over any cyrusdb file: the backend is detected from
//! the first bytes, as `cyrusdb_detect` does (cyrus-formats §7.1), and every
//! backend answers the same sorted iteration, prefix scan and lookup.
//!
//! The whole file is held in memory. `mailboxes.db`, seen and subscription
//! databases are small next to the mail they describe, and a snapshot in
//! memory cannot change under the reader while Cyrus keeps writing.
//! Twoskip files are walked lazily over that buffer; skiplist and flat files
//! are replayed or parsed once, when opened.

use std::path::Path;

use thiserror::Error;

use super::flat::{Flat, FlatError};
use super::skiplist::{Skiplist, SkiplistError};
use super::twoskip::{Twoskip, TwoskipError};

/// The storage backends a cyrusdb file can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Twoskip,
    Skiplist,
    Flat,
    /// Berkeley DB (btree or hash): recognised, not readable here.
    BerkeleyDb,
}

const TWOSKIP_MARK: &[u8] = b"\xA1\x02\x8B\x0Dtwoskip file";
const SKIPLIST_MARK: &[u8] = b"\xA1\x02\x8B\x0Dskiplist file";
const BDB_BTREE: u32 = 0x053162;
const BDB_HASH: u32 = 0x061561;

/// The backend of a file, from its first 16 bytes. Anything that is not a
/// known binary format is taken to be flat text, as Cyrus does.
pub fn detect(bytes: &[u8]) -> Backend {
    if bytes.starts_with(TWOSKIP_MARK) {
        return Backend::Twoskip;
    }
    if bytes.starts_with(SKIPLIST_MARK) {
        return Backend::Skiplist;
    }
    if is_berkeley(bytes) {
        return Backend::BerkeleyDb;
    }
    Backend::Flat
}

/// BDB writes its magic in host byte order, so accept either.
fn is_berkeley(bytes: &[u8]) -> bool {
    let Some(word) = bytes.get(12..16).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
        return false;
    };
    [u32::from_be_bytes(word), u32::from_le_bytes(word)]
        .iter()
        .any(|magic| *magic == BDB_BTREE || *magic == BDB_HASH)
}

/// The backend-specific problem inside a [`CyrusDbError`].
#[derive(Debug, Error)]
pub enum CyrusDbProblem {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Twoskip(#[from] TwoskipError),
    #[error(transparent)]
    Skiplist(#[from] SkiplistError),
    #[error(transparent)]
    Flat(#[from] FlatError),
    #[error("{0:?} databases are not supported")]
    Unsupported(Backend),
}

/// A problem with one database file, naming the file.
#[derive(Debug, Error)]
#[error("{file}: {problem}")]
pub struct CyrusDbError {
    pub file: String,
    pub problem: CyrusDbProblem,
}

/// A record as the iterators yield it.
pub type DbRecord = (Vec<u8>, Vec<u8>);

#[derive(Debug)]
enum Contents {
    /// The raw bytes; walked on demand.
    Twoskip(Vec<u8>),
    /// Replayed or parsed records, sorted by key.
    Sorted(Vec<DbRecord>),
}

/// An opened database file.
#[derive(Debug)]
pub struct CyrusDb {
    file: String,
    backend: Backend,
    contents: Contents,
}

impl CyrusDb {
    /// Reads and opens the file at `path`.
    pub fn open(path: &Path) -> Result<CyrusDb, CyrusDbError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| CyrusDbError {
            file: file.clone(),
            problem: e.into(),
        })?;
        CyrusDb::from_bytes(file, bytes)
    }

    /// Opens a database already in memory; `file` names it in errors.
    pub fn from_bytes(file: impl Into<String>, bytes: Vec<u8>) -> Result<CyrusDb, CyrusDbError> {
        let file = file.into();
        let backend = detect(&bytes);
        match load(backend, bytes) {
            Ok(contents) => Ok(CyrusDb {
                file,
                backend,
                contents,
            }),
            Err(problem) => Err(CyrusDbError { file, problem }),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The name given at open, used in errors.
    pub fn file(&self) -> &str {
        &self.file
    }

    fn error(&self, problem: impl Into<CyrusDbProblem>) -> CyrusDbError {
        CyrusDbError {
            file: self.file.clone(),
            problem: problem.into(),
        }
    }

    /// Every record in key order. A damaged twoskip chain ends the walk
    /// with one error item.
    pub fn iter(&self) -> Box<dyn Iterator<Item = Result<DbRecord, CyrusDbError>> + '_> {
        self.iter_prefix(b"")
    }

    /// The records whose key starts with `prefix`, in key order.
    pub fn iter_prefix<'s>(
        &'s self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<DbRecord, CyrusDbError>> + 's> {
        match &self.contents {
            Contents::Twoskip(bytes) => match Twoskip::parse(bytes) {
                Ok(db) => Box::new(
                    db.iter_prefix(prefix)
                        .map(|item| item.map_err(|e| self.error(e))),
                ),
                Err(e) => Box::new(std::iter::once(Err(self.error(e)))),
            },
            Contents::Sorted(records) => {
                let start = records.partition_point(|(k, _)| k.as_slice() < prefix);
                let prefix = prefix.to_vec();
                Box::new(
                    records
                        .get(start..)
                        .unwrap_or_default()
                        .iter()
                        .take_while(move |(k, _)| k.starts_with(&prefix))
                        .map(|record| Ok(record.clone())),
                )
            }
        }
    }

    /// All records, or the first error.
    pub fn records(&self) -> Result<Vec<DbRecord>, CyrusDbError> {
        self.iter().collect()
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, CyrusDbError> {
        match &self.contents {
            Contents::Twoskip(bytes) => Twoskip::parse(bytes)
                .and_then(|db| db.get(key))
                .map_err(|e| self.error(e)),
            Contents::Sorted(records) => Ok(records
                .binary_search_by(|(k, _)| k.as_slice().cmp(key))
                .ok()
                .and_then(|i| records.get(i))
                .map(|(_, v)| v.clone())),
        }
    }
}

fn load(backend: Backend, bytes: Vec<u8>) -> Result<Contents, CyrusDbProblem> {
    match backend {
        Backend::Twoskip => {
            Twoskip::parse(&bytes)?;
            Ok(Contents::Twoskip(bytes))
        }
        Backend::Skiplist => {
            let db = Skiplist::parse(&bytes)?;
            let records = db.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
            Ok(Contents::Sorted(records))
        }
        Backend::Flat => Ok(Contents::Sorted(Flat::parse(&bytes)?.into_records())),
        Backend::BerkeleyDb => Err(CyrusDbProblem::Unsupported(backend)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn detection_follows_the_magic() {
        assert_eq!(detect(crate::formats::twoskip::MAGIC), Backend::Twoskip);
        assert_eq!(detect(crate::formats::skiplist::MAGIC), Backend::Skiplist);
        assert_eq!(detect(b"user.bob\t\n"), Backend::Flat);
        assert_eq!(detect(b""), Backend::Flat);
        let mut bdb = vec![0u8; 16];
        bdb[12..16].copy_from_slice(&BDB_BTREE.to_le_bytes());
        assert_eq!(detect(&bdb), Backend::BerkeleyDb);
    }

    #[test]
    fn berkeley_files_are_refused_with_the_file_name() {
        let mut bdb = vec![0u8; 64];
        bdb[12..16].copy_from_slice(&BDB_HASH.to_be_bytes());
        let err = CyrusDb::from_bytes("/var/lib/cyrus/mailboxes.db", bdb).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/var/lib/cyrus/mailboxes.db: BerkeleyDb databases are not supported"
        );
    }

    #[test]
    fn a_flat_file_answers_get_and_prefix() {
        let db =
            CyrusDb::from_bytes("sub", b"NINBOX\t\nNINBOX\x1Fa\t\nNother\t\n".to_vec()).unwrap();
        assert_eq!(db.backend(), Backend::Flat);
        assert_eq!(db.get(b"NINBOX").unwrap(), Some(Vec::new()));
        assert_eq!(db.get(b"NOPE").unwrap(), None);
        assert_eq!(db.iter_prefix(b"NINBOX").count(), 2);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(db) = CyrusDb::from_bytes("fuzz", bytes) {
                let _ = db.records();
                let _ = db.get(b"N");
            }
        }
    }
}
