//! Every file the spool reader touches goes through here, so that what it
//! did can be counted: tests assert that FMULTISTATUS opens no message
//! file, and the benchmark reports bytes read.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::source::FileStat;

/// Live counters, shared between a [`crate::agent::spool::Spool`] and
/// whoever watches it.
#[derive(Debug, Default)]
pub struct SpoolCounters {
    files_opened: AtomicU64,
    message_files_opened: AtomicU64,
    bytes_read: AtomicU64,
    stat_calls: AtomicU64,
}

/// A snapshot of [`SpoolCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolCounts {
    /// Every `open()`: databases, meta files, message files, sieve scripts.
    pub files_opened: u64,
    /// Opens of `<uid>.` message files only.
    pub message_files_opened: u64,
    pub bytes_read: u64,
    /// `stat()` calls on paths (an `fstat` of an open file is not counted).
    pub stat_calls: u64,
}

impl SpoolCounters {
    pub fn snapshot(&self) -> SpoolCounts {
        SpoolCounts {
            files_opened: self.files_opened.load(Ordering::Relaxed),
            message_files_opened: self.message_files_opened.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            stat_calls: self.stat_calls.load(Ordering::Relaxed),
        }
    }
}

/// What kind of file is opened, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Message,
    Other,
}

/// Opens, reads and stats files, counting as it goes.
#[derive(Debug, Clone, Default)]
pub struct CountedFs {
    counters: Arc<SpoolCounters>,
}

impl CountedFs {
    pub fn counters(&self) -> Arc<SpoolCounters> {
        Arc::clone(&self.counters)
    }

    /// `stat()` of `path`; `None` when it does not exist.
    pub fn stat(&self, path: &Path) -> io::Result<Option<FileStat>> {
        Ok(self.metadata(path)?.as_ref().map(file_stat))
    }

    /// `stat()` of `path` with everything it tells; `None` when it does not exist.
    pub fn metadata(&self, path: &Path) -> io::Result<Option<Metadata>> {
        self.counters.stat_calls.fetch_add(1, Ordering::Relaxed);
        match std::fs::metadata(path) {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens `path` for reading, with its `fstat`; `None` when it does not exist.
    pub fn open(&self, path: &Path, kind: FileKind) -> io::Result<Option<(File, FileStat)>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        self.counters.files_opened.fetch_add(1, Ordering::Relaxed);
        if kind == FileKind::Message {
            self.counters
                .message_files_opened
                .fetch_add(1, Ordering::Relaxed);
        }
        let stat = file_stat(&file.metadata()?);
        Ok(Some((file, stat)))
    }

    /// Counts an open made elsewhere (the index lock opens its own file).
    pub fn opened_elsewhere(&self) {
        self.counters.files_opened.fetch_add(1, Ordering::Relaxed);
    }

    /// The whole of an open file, from its start.
    pub fn read_all(&self, mut file: &File) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        self.counted(bytes.len());
        Ok(bytes)
    }

    /// The whole of `path` with its stat; `None` when it does not exist.
    pub fn read(&self, path: &Path) -> io::Result<Option<(Vec<u8>, FileStat)>> {
        let Some((file, stat)) = self.open(path, FileKind::Other)? else {
            return Ok(None);
        };
        Ok(Some((self.read_all(&file)?, stat)))
    }

    /// A reader that counts the bytes that pass through it.
    pub fn reader<R: Read>(&self, inner: R) -> CountingReader<R> {
        CountingReader {
            inner,
            counters: Arc::clone(&self.counters),
        }
    }

    fn counted(&self, n: usize) {
        self.counters
            .bytes_read
            .fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// See [`CountedFs::reader`].
pub struct CountingReader<R> {
    inner: R,
    counters: Arc<SpoolCounters>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counters
            .bytes_read
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The three numbers the wire reports.
pub fn file_stat(meta: &Metadata) -> FileStat {
    FileStat {
        size: meta.len(),
        mtime: meta.mtime(),
        inode: meta.ino(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_opens_stats_and_bytes_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.");
        std::fs::write(&path, b"hello").unwrap();
        let fs = CountedFs::default();
        assert_eq!(fs.stat(&path).unwrap().unwrap().size, 5);
        assert_eq!(fs.stat(&dir.path().join("nope")).unwrap(), None);
        let (file, stat) = fs.open(&path, FileKind::Message).unwrap().unwrap();
        assert_eq!(stat.size, 5);
        let mut body = String::new();
        fs.reader(file).read_to_string(&mut body).unwrap();
        assert_eq!(fs.read(&path).unwrap().unwrap().0, b"hello");
        assert_eq!(
            fs.counters().snapshot(),
            SpoolCounts {
                files_opened: 2,
                message_files_opened: 1,
                bytes_read: 10,
                stat_calls: 2,
            }
        );
    }
}
