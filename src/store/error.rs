//! Store errors. Rules: every variant names the file or the place (offset,
//! GUID, folder) and the problem; bad bytes on disk are errors, never panics.

use std::path::PathBuf;

use crate::formats::backup_tar::TarError;
use crate::formats::gzip_members::GzError;
use crate::formats::Guid;
use crate::store::index_copy::IndexCopyError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("user name {0:?} cannot name a store directory (empty, '.', '..', '/' or NUL)")]
    BadUserName(String),
    #[error("store {0} is locked by another writer")]
    Locked(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: sqlite: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: data file is {actual} bytes but the state says {expected} were committed; refusing to touch it")]
    DataFileShorter {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("{path}: {source}")]
    Tar { path: PathBuf, source: TarError },
    #[error("{path}: {source}")]
    Gzip { path: PathBuf, source: GzError },
    #[error("{path}: gzip members end at {members_end} (inflated {members_len}) but the state says {size} ({offset})")]
    MembersMismatch {
        path: PathBuf,
        members_end: u64,
        members_len: u64,
        size: u64,
        offset: u64,
    },
    #[error("{path}: offset {offset} holds {found:?}, expected {expected:?}")]
    OffsetMismatch {
        path: PathBuf,
        offset: u64,
        expected: String,
        found: String,
    },
    #[error("{path}: no entry at offset {offset}")]
    NoEntryAt { path: PathBuf, offset: u64 },
    #[error("{path}: entry {name:?} at offset {offset}: content sha1 {actual} does not match {expected}")]
    ContentMismatch {
        path: PathBuf,
        name: String,
        offset: u64,
        expected: String,
        actual: Guid,
    },
    #[error("message {0} is not in the store")]
    NoSuchMessage(Guid),
    #[error("folder {uniqueid}: uid {uid} refers to {guid}, which is not in the store")]
    MissingFile {
        uniqueid: String,
        uid: u32,
        guid: Guid,
    },
    #[error("body for {name:?} ended after {got} of {expected} bytes")]
    ShortBody {
        name: String,
        got: u64,
        expected: u64,
    },
    #[error("{path}: state file exists; rebuild refuses to overwrite it without force")]
    StateExists { path: PathBuf },
    #[error("{dir}: expected one backupdata-*.tar[.gz], found {found:?}")]
    NoDataFile { dir: PathBuf, found: Vec<String> },
    #[error("{path}: cyrus.index copy at offset {offset}: {source}")]
    Index {
        path: PathBuf,
        offset: u64,
        source: IndexCopyError,
    },
    #[error("{path}: schema version {found} is newer than this program's {supported}")]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("the append transaction failed earlier ({0}); it can only be aborted")]
    Poisoned(String),
    #[error("store {0} was opened read-only")]
    ReadOnly(PathBuf),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches a path to the lower-level errors.
pub(crate) trait At<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> At<T> for std::result::Result<T, std::io::Error> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl<T> At<T> for std::result::Result<T, rusqlite::Error> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| StoreError::Sql {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl<T> At<T> for std::result::Result<T, TarError> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| StoreError::Tar {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl<T> At<T> for std::result::Result<T, GzError> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| StoreError::Gzip {
            path: path.to_path_buf(),
            source,
        })
    }
}
