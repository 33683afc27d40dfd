//! What a backup needs from a Cyrus server, whoever provides it.
//!
//! Three things implement or serve [`Source`]: the network client
//! ([`crate::protocol::client::Client`], which talks to a stock `backupcyrusd`),
//! the local spool reader (`agent`), and the server loop
//! ([`crate::protocol::server`]), which answers the wire protocol from any
//! `Source` (so `mailvault agent` is the server loop over a spool source).
//!
//! Bodies are streamed: a [`FileSink`] is handed a reader that yields exactly
//! `size` bytes, so a message set never sits in memory. Each body is then
//! confirmed with [`FileSink::verified`] and the SHA-1 the bytes hashed to,
//! only after the producer agreed on it (for the network client: after the
//! `DONE <name> <sha1>` line matched). A sink must treat a body as provisional
//! until then; if the source returns an error instead, the body must be dropped.
//!
//! Contract for the three `fetch_*` methods: the sink sees exactly one event
//! (`file` + `verified`, or `missing`) per requested item, in request order.
//! The server loop relies on it to name FDATA items as the client sent them.

use std::io::{self, Read};

use sha1::{Digest, Sha1};

use crate::formats::Guid;

/// `stat()` of a file on the Cyrus server, as the wire reports it.
/// The backup compares all three to decide whether a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileStat {
    pub size: u64,
    pub mtime: i64,
    pub inode: u64,
}

/// The per-folder files FMETA and FMULTISTATUS know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetaFile {
    Header,
    Index,
    Annotations,
    /// Synthesised by the server from the global annotations db: mtime 0,
    /// a 16-bit "inode" taken from the body's SHA-1.
    MailboxAnnotations,
    /// `cyrus.expunge` of a Cyrus 2.3 folder (index version < 12), served by
    /// `mailvault agent` only. Stock servers ignore unknown FMETA items, so
    /// a client may always ask for it.
    Expunge,
}

impl MetaFile {
    /// All four, in the order backupcyrusd lists them and the Perl client asks.
    pub const ALL: [MetaFile; 4] = [
        MetaFile::Header,
        MetaFile::Index,
        MetaFile::Annotations,
        MetaFile::MailboxAnnotations,
    ];

    /// [`MetaFile::ALL`] and `expunge`: everything `mailvault agent` knows.
    pub const WITH_EXPUNGE: [MetaFile; 5] = [
        MetaFile::Header,
        MetaFile::Index,
        MetaFile::Annotations,
        MetaFile::MailboxAnnotations,
        MetaFile::Expunge,
    ];

    /// The item name on the wire (and the part after `cyrus.` in the store).
    pub fn name(self) -> &'static str {
        match self {
            MetaFile::Header => "header",
            MetaFile::Index => "index",
            MetaFile::Annotations => "annotations",
            MetaFile::MailboxAnnotations => "mailbox_annotations",
            MetaFile::Expunge => "expunge",
        }
    }

    /// Exact, case-sensitive, as backupcyrusd's `strcmp`: the four items a
    /// stock server knows (it ignores `expunge`).
    pub fn from_name(name: &str) -> Option<MetaFile> {
        MetaFile::ALL.into_iter().find(|m| m.name() == name)
    }

    /// [`MetaFile::from_name`] plus `expunge`: what our server accepts.
    pub fn from_agent_name(name: &str) -> Option<MetaFile> {
        MetaFile::WITH_EXPUNGE
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// The per-user files META knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserFile {
    Seen,
    Sub,
}

impl UserFile {
    /// Both, in the order backupcyrusd lists them.
    pub const ALL: [UserFile; 2] = [UserFile::Seen, UserFile::Sub];

    pub fn name(self) -> &'static str {
        match self {
            UserFile::Seen => "seen",
            UserFile::Sub => "sub",
        }
    }

    pub fn from_name(name: &str) -> Option<UserFile> {
        UserFile::ALL.into_iter().find(|u| u.name() == name)
    }
}

/// Which incarnation of a folder answered: a rename keeps the uniqueid, a
/// delete-and-recreate does not.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FolderId {
    pub uniqueid: String,
    pub jmapid: String,
}

/// One folder of an FMULTISTATUS reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FolderStatus {
    /// External name, %-decoded (`INBOX.Trips 2024`).
    pub name: String,
    pub uniqueid: String,
    pub jmapid: String,
    /// Only the files that exist, in server order.
    pub files: Vec<(MetaFile, FileStat)>,
}

impl FolderStatus {
    pub fn id(&self) -> FolderId {
        FolderId {
            uniqueid: self.uniqueid.clone(),
            jmapid: self.jmapid.clone(),
        }
    }

    pub fn stat(&self, file: MetaFile) -> Option<FileStat> {
        self.files.iter().find(|(f, _)| *f == file).map(|(_, s)| *s)
    }
}

/// The head of one streamed file: its item name (`sub`, `index`, a UID) and stat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHead {
    pub name: String,
    pub stat: FileStat,
}

/// Why one requested item came back without a body. The item failed; the
/// command did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemFailure {
    /// `NO no such file <name>`: no record, or no file on disk.
    NoSuchFile,
    /// `NO failed to open file <name>`: it exists but could not be opened.
    FailedToOpen,
    /// `NO empty mailbox_annotations`: the folder has no mailbox annotations.
    Empty,
    /// Any other `NO` line inside a reply, text after `NO `.
    Other(String),
}

/// Where streamed files go (a store, a restore target, the wire).
pub trait FileSink {
    /// Consume the body of `head`. The reader yields at most `head.stat.size`
    /// bytes; whatever is left unread is drained by the caller. Nothing is
    /// final until [`FileSink::verified`].
    fn file(&mut self, head: &FileHead, body: &mut dyn Read) -> Result<(), SinkError>;

    /// The body last given to [`FileSink::file`] hashed to `sha1`, and the
    /// producer confirmed it.
    fn verified(&mut self, head: &FileHead, sha1: Guid) -> Result<(), SinkError>;

    /// The item `name` has no body, for the reason given.
    fn missing(&mut self, name: &str, why: &ItemFailure) -> Result<(), SinkError>;
}

/// A sink refused or failed to take a file.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("I/O error in the sink: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Refused(String),
}

/// Why a `Source` call failed. Rules: `No` is the server's own refusal and is
/// reported verbatim; everything else says where it happened. Only transport
/// trouble ([`SourceError::is_retryable`]) is worth trying again.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A command-level `NO <text>`; `text` is exactly what followed `NO `.
    #[error("server refused: NO {0}")]
    No(String),
    #[error("I/O error {during}: {source}")]
    Io {
        during: String,
        #[source]
        source: io::Error,
    },
    /// The peer broke the protocol (an unexpected line, a bad number...).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The body of `item` did not hash to what the server announced.
    #[error("sha1 mismatch for {item}: server said {announced}, the bytes hash to {computed}")]
    Sha1Mismatch {
        item: String,
        announced: String,
        computed: Guid,
    },
    /// The connection ended where a reply was expected.
    #[error("connection closed {0}")]
    Closed(String),
    /// Two FDATA batches of one fetch were answered by different folders.
    #[error("folder {folder} changed during the fetch: {before} then {after}")]
    FolderChanged {
        folder: String,
        before: String,
        after: String,
    },
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("sink failed on {item}: {source}")]
    Sink {
        item: String,
        #[source]
        source: SinkError,
    },
}

impl SourceError {
    /// Whether a new attempt (a new connection) may succeed where this failed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SourceError::Io { .. }
                | SourceError::Closed(_)
                | SourceError::Sha1Mismatch { .. }
                | SourceError::FolderChanged { .. }
        )
    }

    pub fn io(during: impl Into<String>, source: io::Error) -> SourceError {
        SourceError::Io {
            during: during.into(),
            source,
        }
    }
}

/// What a backup needs from one Cyrus server (see the module doc for the
/// streaming and ordering contract).
pub trait Source {
    /// `PING`: is the server there.
    fn ping(&mut self) -> Result<(), SourceError>;

    /// `USERS`: every user with an INBOX, in the server's order.
    fn users(&mut self) -> Result<Vec<String>, SourceError>;

    /// `META <user>`: stat of the user's seen/sub files that exist. An
    /// unknown user has none.
    fn user_files(&mut self, user: &str) -> Result<Vec<(UserFile, FileStat)>, SourceError>;

    /// `META <user> <items>`: stream the requested user files.
    fn fetch_user_files(
        &mut self,
        user: &str,
        items: &[UserFile],
        sink: &mut dyn FileSink,
    ) -> Result<(), SourceError>;

    /// `META <user>` in stat mode, after seen and sub: further per-user files
    /// the source serves as META items named `<dir>/<file>` (the agent's
    /// pre-3.6 sieve scripts, `sieve/<script>`). Stock backupcyrusd has none.
    fn extra_user_files(&mut self, _user: &str) -> Result<Vec<(String, FileStat)>, SourceError> {
        Ok(Vec::new())
    }

    /// `META <user> <dir>/<file>`: stream one of [`Source::extra_user_files`].
    fn fetch_extra_user_file(
        &mut self,
        _user: &str,
        name: &str,
        sink: &mut dyn FileSink,
    ) -> Result<(), SourceError> {
        sink.missing(name, &ItemFailure::NoSuchFile)
            .map_err(|source| SourceError::Sink {
                item: name.to_string(),
                source,
            })
    }

    /// Whether FMETA's `expunge` item means something here. Sources that
    /// answer like stock backupcyrusd say no, and the server then ignores the
    /// item as backupcyrusd does.
    fn serves_expunge(&self) -> bool {
        false
    }

    /// `FMULTISTATUS <user>`: every folder of the user with its meta stats.
    fn folders(&mut self, user: &str) -> Result<Vec<FolderStatus>, SourceError>;

    /// `FMETA <user> <folder>`: stat of the folder's meta files that exist.
    fn folder_meta_stat(
        &mut self,
        user: &str,
        folder: &str,
    ) -> Result<(Vec<(MetaFile, FileStat)>, FolderId), SourceError>;

    /// `FMETA <user> <folder> <items>`: stream the requested meta files, all
    /// from one consistent snapshot of the folder.
    fn fetch_folder_meta(
        &mut self,
        user: &str,
        folder: &str,
        items: &[MetaFile],
        sink: &mut dyn FileSink,
    ) -> Result<FolderId, SourceError>;

    /// `FDATA <user> <folder> <uids>`: stream the message files of `uids`
    /// (expunged-but-present ones included). Item names are the UIDs in decimal.
    fn fetch_messages(
        &mut self,
        user: &str,
        folder: &str,
        uids: &[u32],
        sink: &mut dyn FileSink,
    ) -> Result<FolderId, SourceError>;
}

/// Hashes what it passes through; never yields more than `remaining` bytes.
/// Used by producers to deliver a body to a sink and learn its SHA-1.
pub struct HashingReader<R> {
    inner: R,
    remaining: u64,
    hasher: Sha1,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, size: u64) -> HashingReader<R> {
        HashingReader {
            inner,
            remaining: size,
            hasher: Sha1::new(),
        }
    }

    /// Bytes still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Read (and hash) whatever the consumer left, then give the digest.
    /// Fails with `UnexpectedEof` if the inner reader ends early: a short body
    /// must never pass for a whole one.
    pub fn finish(mut self) -> io::Result<Guid> {
        io::copy(&mut self, &mut io::sink())?;
        if self.remaining > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("body ended {} bytes short", self.remaining),
            ));
        }
        Ok(Guid::from(self.hasher))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Deliver one local body to a sink: `file`, drain, hash, `verified`.
/// For sources that read files themselves (the spool reader); the network
/// client checks the server's DONE line between the two calls instead.
pub fn deliver(
    sink: &mut dyn FileSink,
    head: &FileHead,
    body: &mut dyn Read,
) -> Result<Guid, SourceError> {
    let mut reader = HashingReader::new(body, head.stat.size);
    sink.file(head, &mut reader)
        .map_err(|source| SourceError::Sink {
            item: head.name.clone(),
            source,
        })?;
    let sha1 = reader
        .finish()
        .map_err(|e| SourceError::io(format!("reading {}", head.name), e))?;
    sink.verified(head, sha1)
        .map_err(|source| SourceError::Sink {
            item: head.name.clone(),
            source,
        })?;
    Ok(sha1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        pending: Vec<u8>,
        done: Vec<(String, Vec<u8>, Guid)>,
        missing: Vec<(String, ItemFailure)>,
    }

    impl FileSink for Collect {
        fn file(&mut self, _head: &FileHead, body: &mut dyn Read) -> Result<(), SinkError> {
            self.pending.clear();
            body.read_to_end(&mut self.pending)?;
            Ok(())
        }
        fn verified(&mut self, head: &FileHead, sha1: Guid) -> Result<(), SinkError> {
            let body = std::mem::take(&mut self.pending);
            self.done.push((head.name.clone(), body, sha1));
            Ok(())
        }
        fn missing(&mut self, name: &str, why: &ItemFailure) -> Result<(), SinkError> {
            self.missing.push((name.to_string(), why.clone()));
            Ok(())
        }
    }

    fn head(name: &str, size: u64) -> FileHead {
        FileHead {
            name: name.into(),
            stat: FileStat {
                size,
                mtime: 1,
                inode: 2,
            },
        }
    }

    #[test]
    fn deliver_hashes_exactly_size_bytes_and_confirms_them() {
        let mut sink = Collect::default();
        let mut input: &[u8] = b"hello worldEXTRA";
        let sha1 = deliver(&mut sink, &head("1", 11), &mut input).unwrap();
        assert_eq!(sha1, Guid::of(b"hello world"));
        assert_eq!(sink.done, vec![("1".into(), b"hello world".to_vec(), sha1)]);
        assert_eq!(input, b"EXTRA", "the next item's bytes are untouched");
    }

    #[test]
    fn a_short_body_is_an_error_and_never_verified() {
        let mut sink = Collect::default();
        let mut input: &[u8] = b"short";
        let err = deliver(&mut sink, &head("index", 100), &mut input).unwrap_err();
        assert!(matches!(err, SourceError::Io { .. }), "{err}");
        assert!(sink.done.is_empty());
    }

    #[test]
    fn a_sink_that_reads_nothing_still_gets_the_hash_of_the_whole_body() {
        struct Lazy(Option<Guid>);
        impl FileSink for Lazy {
            fn file(&mut self, _: &FileHead, _: &mut dyn Read) -> Result<(), SinkError> {
                Ok(())
            }
            fn verified(&mut self, _: &FileHead, sha1: Guid) -> Result<(), SinkError> {
                self.0 = Some(sha1);
                Ok(())
            }
            fn missing(&mut self, _: &str, _: &ItemFailure) -> Result<(), SinkError> {
                Ok(())
            }
        }
        let mut sink = Lazy(None);
        deliver(&mut sink, &head("sub", 3), &mut &b"abc"[..]).unwrap();
        assert_eq!(sink.0, Some(Guid::of(b"abc")));
    }

    #[test]
    fn item_names_round_trip_and_are_case_sensitive() {
        for m in MetaFile::ALL {
            assert_eq!(MetaFile::from_name(m.name()), Some(m));
        }
        for u in UserFile::ALL {
            assert_eq!(UserFile::from_name(u.name()), Some(u));
        }
        assert_eq!(MetaFile::from_name("Header"), None);
        assert_eq!(MetaFile::from_name("cache"), None);
    }

    #[test]
    fn expunge_is_ours_only() {
        assert_eq!(
            MetaFile::from_name("expunge"),
            None,
            "stock servers ignore it"
        );
        assert_eq!(
            MetaFile::from_agent_name("expunge"),
            Some(MetaFile::Expunge)
        );
        assert_eq!(MetaFile::from_agent_name("header"), Some(MetaFile::Header));
    }

    #[test]
    fn only_transport_trouble_is_retryable() {
        assert!(!SourceError::No("no such folder user.x".into()).is_retryable());
        assert!(!SourceError::Protocol("x".into()).is_retryable());
        assert!(SourceError::Closed("x".into()).is_retryable());
        assert!(SourceError::io("x", io::ErrorKind::TimedOut.into()).is_retryable());
    }
}
