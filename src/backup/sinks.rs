//! Where fetched files go during a backup.
//!
//! Meta files (a folder's header, index, annotations; a user's seen and sub)
//! are small enough to hold in memory, and the index must be parsed before
//! anything is written, so [`Collect`] keeps them. Messages stream:
//! [`MessageSink`] spools each body (to memory, or to a temporary file when
//! it is large), and appends it only once its SHA-1 is known to equal the
//! GUID the folder's index names, so a message that changed underfoot fails
//! its folder without touching the store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::formats::Guid;
use crate::progress::Progress;
use crate::source::{FileHead, FileSink, FileStat, ItemFailure, SinkError};
use crate::store::{AppendTx, FileMeta};

/// Bodies up to this size are held in memory; larger ones go to a temporary file.
const IN_MEMORY_LIMIT: usize = 8 << 20;

/// One file received whole and verified.
#[derive(Debug, Clone)]
pub struct Received {
    pub stat: FileStat,
    pub sha1: Guid,
    pub bytes: Vec<u8>,
}

/// Keeps every verified file in memory, by item name.
#[derive(Debug, Default)]
pub struct Collect {
    pending: Vec<u8>,
    pub files: BTreeMap<String, Received>,
    pub missing: BTreeMap<String, ItemFailure>,
}

impl FileSink for Collect {
    fn file(&mut self, _head: &FileHead, body: &mut dyn Read) -> Result<(), SinkError> {
        self.pending.clear();
        body.read_to_end(&mut self.pending)?;
        Ok(())
    }

    fn verified(&mut self, head: &FileHead, sha1: Guid) -> Result<(), SinkError> {
        let bytes = std::mem::take(&mut self.pending);
        self.files.insert(
            head.name.clone(),
            Received {
                stat: head.stat,
                sha1,
                bytes,
            },
        );
        Ok(())
    }

    fn missing(&mut self, name: &str, why: &ItemFailure) -> Result<(), SinkError> {
        self.missing.insert(name.to_owned(), why.clone());
        Ok(())
    }
}

/// A body being received: in memory while small, then in a temporary file.
#[derive(Default)]
struct Spool {
    memory: Vec<u8>,
    file: Option<std::fs::File>,
}

impl Spool {
    fn fill(&mut self, body: &mut dyn Read) -> io::Result<()> {
        self.memory.clear();
        self.file = None;
        let mut limited = body.take(IN_MEMORY_LIMIT as u64 + 1);
        limited.read_to_end(&mut self.memory)?;
        if self.memory.len() > IN_MEMORY_LIMIT {
            let mut file = tempfile::tempfile()?;
            file.write_all(&self.memory)?;
            io::copy(body, &mut file)?;
            file.seek(SeekFrom::Start(0))?;
            self.memory.clear();
            self.file = Some(file);
        }
        Ok(())
    }

    fn reader(&mut self) -> Box<dyn Read + '_> {
        match &mut self.file {
            Some(file) => Box::new(file),
            None => Box::new(&self.memory[..]),
        }
    }
}

/// Why a message could not be backed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageProblem {
    /// The file's SHA-1 is not the GUID its index record names.
    ChangedUnderfoot { uid: u32, expected: Guid, got: Guid },
    /// The server has no file for a record that is not expunged.
    Missing { uid: u32, why: String },
}

/// Appends verified messages to the store as they arrive.
pub struct MessageSink<'t, 's> {
    tx: &'t mut AppendTx<'s>,
    /// uid -> the GUID its record names; `None` when the index has no GUIDs
    /// (Cyrus 2.3 without `guid_mode: sha1`): the file's own SHA-1 is taken.
    expected: &'t HashMap<u32, Option<Guid>>,
    /// Expunged records whose files may be gone already (a race with cleanup).
    expunged: &'t HashSet<u32>,
    progress: &'t dyn Progress,
    spool: Spool,
    /// uid -> GUID of every message now in the store.
    pub stored: BTreeMap<u32, Guid>,
    pub problems: Vec<MessageProblem>,
    /// uids of expunged records whose files had gone: left out of the index rows.
    pub vanished: Vec<u32>,
    pub messages: u64,
    pub bytes: u64,
}

impl<'t, 's> MessageSink<'t, 's> {
    pub fn new(
        tx: &'t mut AppendTx<'s>,
        expected: &'t HashMap<u32, Option<Guid>>,
        expunged: &'t HashSet<u32>,
        progress: &'t dyn Progress,
    ) -> MessageSink<'t, 's> {
        MessageSink {
            tx,
            expected,
            expunged,
            progress,
            spool: Spool::default(),
            stored: BTreeMap::new(),
            problems: Vec::new(),
            vanished: Vec::new(),
            messages: 0,
            bytes: 0,
        }
    }

    fn uid(name: &str) -> Result<u32, SinkError> {
        name.parse()
            .map_err(|_| SinkError::Refused(format!("the server sent item {name:?}, not a uid")))
    }
}

impl FileSink for MessageSink<'_, '_> {
    fn file(&mut self, _head: &FileHead, body: &mut dyn Read) -> Result<(), SinkError> {
        self.spool.fill(body)?;
        Ok(())
    }

    fn verified(&mut self, head: &FileHead, sha1: Guid) -> Result<(), SinkError> {
        let uid = Self::uid(&head.name)?;
        let Some(expected) = self.expected.get(&uid) else {
            return Err(SinkError::Refused(format!(
                "the server sent uid {uid}, which was not asked for"
            )));
        };
        if let Some(expected) = expected {
            if *expected != sha1 {
                self.problems.push(MessageProblem::ChangedUnderfoot {
                    uid,
                    expected: *expected,
                    got: sha1,
                });
                return Ok(());
            }
        }
        let meta = FileMeta::new(
            head.stat.size,
            head.stat.mtime.max(0) as u64,
            head.stat.inode,
        );
        let added = self
            .tx
            .add_message(&sha1, &meta, self.spool.reader())
            .map_err(|e| SinkError::Refused(e.to_string()))?;
        if added {
            self.messages += 1;
            self.bytes += head.stat.size;
            self.progress.message_stored(head.stat.size);
        }
        self.stored.insert(uid, sha1);
        Ok(())
    }

    fn missing(&mut self, name: &str, why: &ItemFailure) -> Result<(), SinkError> {
        let uid = Self::uid(name)?;
        if self.expunged.contains(&uid) {
            self.vanished.push(uid);
        } else {
            self.problems.push(MessageProblem::Missing {
                uid,
                why: format!("{why:?}"),
            });
        }
        Ok(())
    }
}
