//! The global Cyrus databases (`mailboxes.db`, `annotations.db`) kept in
//! memory between requests while their file stays the same.
//!
//! A backup asks for the same `mailboxes.db` several times per user (META,
//! FMULTISTATUS, FMETA and FDATA of each changed folder); reading and
//! copying it each time made the database, not the user, the cost of a
//! no-change run. The file is read under Cyrus's shared lock as before; the
//! copy is reused while `stat()` of the path still gives what the `fstat()`
//! of the locked file gave: device, inode, size, mtime and ctime (to the
//! nanosecond). Cyrus rewrites a database by renaming a new file over it
//! (a new inode) and commits twoskip and skiplist records by appending (a
//! new size and mtime), so either way the next request reads it again.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileVersion {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileVersion {
    pub fn of(meta: &Metadata) -> FileVersion {
        FileVersion {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Parsed databases by path, each with the version it was read from.
type Entries<T> = HashMap<PathBuf, (FileVersion, Arc<T>)>;

/// See the module doc. Clones share the cache.
#[derive(Debug)]
pub struct DbCache<T> {
    entries: Arc<Mutex<Entries<T>>>,
}

impl<T> Clone for DbCache<T> {
    fn clone(&self) -> Self {
        DbCache {
            entries: Arc::clone(&self.entries),
        }
    }
}

impl<T> Default for DbCache<T> {
    fn default() -> Self {
        DbCache {
            entries: Arc::default(),
        }
    }
}

impl<T> DbCache<T> {
    /// The copy of `path` read when it was at `version`, if that is the one kept.
    pub fn get(&self, path: &Path, version: &FileVersion) -> Option<Arc<T>> {
        let entries = self.entries.lock();
        match entries.get(path) {
            Some((kept, value)) if kept == version => Some(Arc::clone(value)),
            _ => None,
        }
    }

    /// Keeps `value`, read from `path` at `version`, in place of any older copy.
    pub fn put(&self, path: &Path, version: FileVersion, value: T) -> Arc<T> {
        let value = Arc::new(value);
        self.entries
            .lock()
            .insert(path.to_path_buf(), (version, Arc::clone(&value)));
        value
    }

    /// Forgets `path` (it is gone).
    pub fn forget(&self, path: &Path) {
        self.entries.lock().remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(path: &Path) -> FileVersion {
        FileVersion::of(&std::fs::metadata(path).unwrap())
    }

    #[test]
    fn a_copy_is_reused_only_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailboxes.db");
        std::fs::write(&path, b"one").unwrap();
        let cache = DbCache::default();
        let v1 = version(&path);
        assert!(cache.get(&path, &v1).is_none());
        cache.put(&path, v1, "parsed one".to_string());
        assert_eq!(*cache.clone().get(&path, &v1).unwrap(), "parsed one");

        // An append (a twoskip commit) changes the size.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"+"))
            .unwrap();
        let v2 = version(&path);
        assert_ne!(v1, v2);
        assert!(cache.get(&path, &v2).is_none());

        // A rewrite renamed over it is a new inode, even at the same size.
        let new = dir.path().join("mailboxes.db.NEW");
        std::fs::write(&new, b"two!").unwrap();
        std::fs::rename(&new, &path).unwrap();
        let v3 = version(&path);
        assert_ne!(v2, v3);
        assert!(cache.get(&path, &v3).is_none());
        cache.put(&path, v3, "parsed two".to_string());
        assert_eq!(*cache.get(&path, &v3).unwrap(), "parsed two");

        cache.forget(&path);
        assert!(cache.get(&path, &v3).is_none());
    }
}
