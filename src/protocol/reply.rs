//! Reading replies: whole lines for heads, counted bytes for bodies.
//!
//! A body is exactly `size` raw bytes and the `DONE <name> <sha1>` line
//! starts right after its last byte (bodies often end without LF), so bodies
//! are read by count, never by line. Each body streams to the sink through a
//! hashing reader; the announced sha1 is compared, lowercase and
//! case-sensitively as the Perl client does, before the sink hears
//! [`FileSink::verified`].
//!
//! The functions here work on any `BufRead`, so the captured replies of a real
//! backupcyrusd are parsed by the same code the client runs.

use std::io::{self, BufRead, Read};

use super::codec::{self, CodecError, ReplyLine, MAX_LINE};
use crate::source::{
    FileSink, FileStat, FolderId, FolderStatus, HashingReader, ItemFailure, MetaFile, SourceError,
    UserFile,
};

/// A `META <user>` stat reply: seen/sub, and the agent's further files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserListing {
    pub files: Vec<(UserFile, FileStat)>,
    /// `<dir>/<file>` items, in server order.
    pub extra: Vec<(String, FileStat)>,
}

/// `<dir>/<file>`: one slash with a name on each side.
pub fn is_extra_user_file(item: &str) -> bool {
    item.split_once('/')
        .is_some_and(|(dir, file)| !dir.is_empty() && !file.is_empty() && !file.contains('/'))
}

/// Reads the replies of one connection.
pub struct ReplyReader<R> {
    inner: R,
    /// The command whose reply is being read, for error messages.
    context: &'static str,
}

impl<R: BufRead> ReplyReader<R> {
    pub fn new(inner: R) -> ReplyReader<R> {
        ReplyReader {
            inner,
            context: "reply",
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    fn closed(&self, how: &str) -> SourceError {
        SourceError::Closed(format!("{how} the reply to {}", self.context))
    }

    fn protocol(&self, what: impl std::fmt::Display) -> SourceError {
        SourceError::Protocol(format!("in the reply to {}: {what}", self.context))
    }

    fn io(&self, e: io::Error) -> SourceError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return self.closed("in the middle of a body in");
        }
        SourceError::io(format!("reading the reply to {}", self.context), e)
    }

    /// One line without its LF (a CR before it is dropped too).
    pub fn read_raw_line(&mut self) -> Result<Vec<u8>, SourceError> {
        let mut line = Vec::new();
        let limit = (MAX_LINE + 1) as u64;
        let n = (&mut self.inner)
            .take(limit)
            .read_until(b'\n', &mut line)
            .map_err(|e| self.io(e))?;
        if n == 0 {
            return Err(self.closed("before"));
        }
        if line.pop() != Some(b'\n') {
            if line.len() >= MAX_LINE {
                return Err(self.protocol(format!("a line longer than {MAX_LINE} bytes")));
            }
            return Err(self.closed("in the middle of a line of"));
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(line)
    }

    pub fn read_line(&mut self) -> Result<ReplyLine, SourceError> {
        let line = self.read_raw_line()?;
        codec::parse_reply_line(&line).map_err(|e: CodecError| self.protocol(e))
    }

    /// The first line: `OK`, or the command's `NO <text>`.
    pub fn expect_ok(&mut self, command: &'static str) -> Result<(), SourceError> {
        self.context = command;
        match self.read_line()? {
            ReplyLine::Ok => Ok(()),
            ReplyLine::No(text) => Err(SourceError::No(text)),
            other => Err(self.protocol(format!("expected OK, got {other:?}"))),
        }
    }

    fn unexpected(&self, line: &ReplyLine) -> SourceError {
        self.protocol(format!("unexpected {line:?}"))
    }

    /// Check a `DONE <command> ...` line and return what follows the command.
    fn done_of(&self, tokens: Vec<String>) -> Result<Vec<String>, SourceError> {
        match tokens.split_first() {
            Some((word, rest)) if word == self.context => Ok(rest.to_vec()),
            _ => Err(self.protocol(format!("unexpected DONE {}", tokens.join(" ")))),
        }
    }

    fn folder_id(&self, tokens: Vec<String>) -> Result<FolderId, SourceError> {
        match <[String; 2]>::try_from(self.done_of(tokens)?) {
            Ok([uniqueid, jmapid]) => Ok(FolderId { uniqueid, jmapid }),
            Err(rest) => Err(self.protocol(format!("DONE without uniqueid/jmapid: {rest:?}"))),
        }
    }

    /// `PING` → `OK`, `DONE PING`.
    pub fn read_ping(&mut self) -> Result<(), SourceError> {
        self.expect_ok("PING")?;
        match self.read_line()? {
            ReplyLine::Done(tokens) => self.done_of(tokens).map(drop),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Our AUTH extension's replies: `OK`, `<key> <value>`, `DONE <command>`.
    pub fn read_value(&mut self, command: &'static str, key: &str) -> Result<String, SourceError> {
        self.expect_ok(command)?;
        let value = match self.read_line()? {
            ReplyLine::Value { key: k, value } if k == key => value,
            other => return Err(self.unexpected(&other)),
        };
        match self.read_line()? {
            ReplyLine::Done(tokens) => self.done_of(tokens).map(|_| value),
            other => Err(self.unexpected(&other)),
        }
    }

    /// `USERS` → `OK`, `USER <id>`..., `DONE USERS`.
    pub fn read_users(&mut self) -> Result<Vec<String>, SourceError> {
        self.expect_ok("USERS")?;
        let mut users = Vec::new();
        loop {
            match self.read_line()? {
                ReplyLine::User(user) => users.push(user),
                ReplyLine::Done(tokens) => return self.done_of(tokens).map(|_| users),
                other => return Err(self.unexpected(&other)),
            }
        }
    }

    /// `META <user>` → `OK`, `STAT seen|sub ...`, `DONE META`.
    pub fn read_user_stats(&mut self) -> Result<Vec<(UserFile, FileStat)>, SourceError> {
        self.read_user_listing().map(|listing| listing.files)
    }

    /// [`ReplyReader::read_user_stats`], keeping also the `<dir>/<file>`
    /// items `mailvault agent` lists after seen and sub (a pre-3.6 user's
    /// `sieve/<script>`). backupcyrusd never sends such an item.
    pub fn read_user_listing(&mut self) -> Result<UserListing, SourceError> {
        self.expect_ok("META")?;
        let mut listing = UserListing::default();
        loop {
            match self.read_line()? {
                ReplyLine::Stat {
                    folder: None,
                    item,
                    stat,
                } => match UserFile::from_name(&item) {
                    Some(file) => listing.files.push((file, stat)),
                    None if is_extra_user_file(&item) => listing.extra.push((item, stat)),
                    None => tracing::warn!(item, "META: ignoring an unknown user file"),
                },
                ReplyLine::Done(tokens) => return self.done_of(tokens).map(|_| listing),
                other => return Err(self.unexpected(&other)),
            }
        }
    }

    /// `FMULTISTATUS <user>` → `OK`, `FOLDER`/`STAT <folder> ...`, `DONE FMULTISTATUS`.
    /// A `STAT <folder> expunge` (a 2.3 folder, only `mailvault agent`
    /// sends it) is kept like the four stock items.
    pub fn read_folders(&mut self) -> Result<Vec<FolderStatus>, SourceError> {
        self.expect_ok("FMULTISTATUS")?;
        let mut folders: Vec<FolderStatus> = Vec::new();
        loop {
            match self.read_line()? {
                ReplyLine::Folder {
                    name,
                    uniqueid,
                    jmapid,
                } => folders.push(FolderStatus {
                    name,
                    uniqueid,
                    jmapid,
                    files: Vec::new(),
                }),
                ReplyLine::Stat {
                    folder: Some(name),
                    item,
                    stat,
                } => self.add_folder_stat(&mut folders, &name, &item, stat)?,
                ReplyLine::Done(tokens) => return self.done_of(tokens).map(|_| folders),
                other => return Err(self.unexpected(&other)),
            }
        }
    }

    fn add_folder_stat(
        &self,
        folders: &mut [FolderStatus],
        name: &str,
        item: &str,
        stat: FileStat,
    ) -> Result<(), SourceError> {
        let Some(folder) = folders.iter_mut().rev().find(|f| f.name == name) else {
            return Err(self.protocol(format!("STAT for {name:?} before its FOLDER line")));
        };
        match MetaFile::from_agent_name(item) {
            Some(file) => folder.files.push((file, stat)),
            None => tracing::warn!(folder = name, item, "ignoring an unknown folder file"),
        }
        Ok(())
    }

    /// `FMETA <user> <folder>` → `OK`, `STAT <item> ...`, `DONE FMETA <uniqueid> <jmapid>`.
    pub fn read_meta_stats(
        &mut self,
    ) -> Result<(Vec<(MetaFile, FileStat)>, FolderId), SourceError> {
        self.expect_ok("FMETA")?;
        let mut stats = Vec::new();
        loop {
            match self.read_line()? {
                ReplyLine::Stat {
                    folder: None,
                    item,
                    stat,
                } => match MetaFile::from_agent_name(&item) {
                    Some(file) => stats.push((file, stat)),
                    None => tracing::warn!(item, "FMETA: ignoring an unknown folder file"),
                },
                ReplyLine::Done(tokens) => return Ok((stats, self.folder_id(tokens)?)),
                other => return Err(self.unexpected(&other)),
            }
        }
    }

    /// A file list (`META`/`FMETA`/`FDATA` with items): `OK`, then one DATA
    /// block or `NO` line per item in `expected` order, then
    /// `DONE <command> ...`, whose trailing tokens are returned.
    pub fn read_files(
        &mut self,
        command: &'static str,
        expected: &[String],
        sink: &mut dyn FileSink,
    ) -> Result<Vec<String>, SourceError> {
        self.expect_ok(command)?;
        let mut next = expected.iter();
        loop {
            match self.read_line()? {
                ReplyLine::Data(head) => {
                    self.expect_item(next.next(), &head.name)?;
                    self.read_body(&head, sink)?;
                }
                ReplyLine::No(text) => {
                    let (name, why) = codec::parse_item_failure(&text);
                    if let ItemFailure::Other(text) = why {
                        return Err(self.protocol(format!("NO {text} inside a file list")));
                    }
                    self.expect_item(next.next(), &name)?;
                    sink.missing(&name, &why)
                        .map_err(|source| SourceError::Sink {
                            item: name.clone(),
                            source,
                        })?;
                }
                ReplyLine::Done(tokens) => {
                    if let Some(missing) = next.next() {
                        return Err(self.protocol(format!("no answer for item {missing}")));
                    }
                    return self.done_of(tokens);
                }
                other => return Err(self.unexpected(&other)),
            }
        }
    }

    /// [`ReplyReader::read_files`] for FMETA and FDATA, whose DONE carries the folder id.
    pub fn read_folder_files(
        &mut self,
        command: &'static str,
        expected: &[String],
        sink: &mut dyn FileSink,
    ) -> Result<FolderId, SourceError> {
        let tokens = self.read_files(command, expected, sink)?;
        let mut done = vec![command.to_string()];
        done.extend(tokens);
        self.folder_id(done)
    }

    fn expect_item(&self, expected: Option<&String>, got: &str) -> Result<(), SourceError> {
        match expected {
            Some(name) if name == got => Ok(()),
            Some(name) => Err(self.protocol(format!("got item {got:?} where {name:?} was due"))),
            None => Err(self.protocol(format!("item {got:?} was not asked for"))),
        }
    }

    /// Stream one body to the sink, then check its DONE line.
    fn read_body(
        &mut self,
        head: &crate::source::FileHead,
        sink: &mut dyn FileSink,
    ) -> Result<(), SourceError> {
        let sink_error = |source| SourceError::Sink {
            item: head.name.clone(),
            source,
        };
        let mut body = HashingReader::new(&mut self.inner, head.stat.size);
        sink.file(head, &mut body).map_err(sink_error)?;
        let computed = body.finish().map_err(|e| self.io(e))?;
        let announced = match self.read_line()? {
            ReplyLine::Done(tokens) => match <[String; 2]>::try_from(tokens) {
                Ok([name, sha1]) if name == head.name => sha1,
                Ok([name, _]) => {
                    return Err(self.protocol(format!("DONE {name} after DATA {}", head.name)))
                }
                Err(tokens) => return Err(self.protocol(format!("bad DONE {tokens:?}"))),
            },
            other => return Err(self.unexpected(&other)),
        };
        if announced != computed.to_hex() {
            return Err(SourceError::Sha1Mismatch {
                item: head.name.clone(),
                announced,
                computed,
            });
        }
        sink.verified(head, computed).map_err(sink_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::Guid;
    use crate::source::{FileHead, SinkError};

    #[derive(Default)]
    struct Collect {
        pending: Vec<u8>,
        files: Vec<(String, Vec<u8>, Guid)>,
        missing: Vec<(String, ItemFailure)>,
    }

    impl FileSink for Collect {
        fn file(&mut self, _: &FileHead, body: &mut dyn Read) -> Result<(), SinkError> {
            self.pending.clear();
            body.read_to_end(&mut self.pending)?;
            Ok(())
        }
        fn verified(&mut self, head: &FileHead, sha1: Guid) -> Result<(), SinkError> {
            let body = std::mem::take(&mut self.pending);
            self.files.push((head.name.clone(), body, sha1));
            Ok(())
        }
        fn missing(&mut self, name: &str, why: &ItemFailure) -> Result<(), SinkError> {
            self.missing.push((name.into(), why.clone()));
            Ok(())
        }
    }

    fn names(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_body_without_final_newline_is_followed_directly_by_done() {
        let sha1 = Guid::of(b"[1]");
        let reply = format!("OK\nDATA mailbox_annotations 3 0 7\n[1]DONE mailbox_annotations {sha1}\nDONE FMETA u-1 P-F\n");
        let mut r = ReplyReader::new(reply.as_bytes());
        let mut sink = Collect::default();
        let id = r
            .read_folder_files("FMETA", &names(&["mailbox_annotations"]), &mut sink)
            .unwrap();
        assert_eq!(id.uniqueid, "u-1");
        assert_eq!(
            sink.files,
            vec![("mailbox_annotations".into(), b"[1]".to_vec(), sha1)]
        );
    }

    #[test]
    fn a_wrong_sha1_fails_naming_the_item_and_is_never_verified() {
        let reply = format!(
            "OK\nDATA 7 3 0 7\nabcDONE 7 {}\nDONE FDATA u P\n",
            Guid::of(b"abd")
        );
        let mut sink = Collect::default();
        let err = ReplyReader::new(reply.as_bytes())
            .read_files("FDATA", &names(&["7"]), &mut sink)
            .unwrap_err();
        assert!(
            matches!(&err, SourceError::Sha1Mismatch { item, .. } if item == "7"),
            "{err}"
        );
        assert!(sink.files.is_empty());
    }

    #[test]
    fn uppercase_sha1_is_refused_as_the_perl_client_does() {
        let upper = Guid::of(b"abc").to_hex().to_uppercase();
        let reply = format!("OK\nDATA 7 3 0 7\nabcDONE 7 {upper}\nDONE FDATA u P\n");
        let err = ReplyReader::new(reply.as_bytes())
            .read_files("FDATA", &names(&["7"]), &mut Collect::default())
            .unwrap_err();
        assert!(matches!(err, SourceError::Sha1Mismatch { .. }));
    }

    #[test]
    fn a_connection_that_ends_mid_body_is_closed_not_a_short_file() {
        let reply = b"OK\nDATA 7 100 0 7\nonly a little";
        let mut sink = Collect::default();
        let err = ReplyReader::new(&reply[..])
            .read_files("FDATA", &names(&["7"]), &mut sink)
            .unwrap_err();
        assert!(matches!(err, SourceError::Closed(_)), "{err}");
        assert!(err.is_retryable());
        assert!(sink.files.is_empty());
    }

    #[test]
    fn command_level_no_is_a_typed_refusal() {
        let err = ReplyReader::new(&b"NO no such folder INBOX.nope\n"[..])
            .read_files("FDATA", &names(&["1"]), &mut Collect::default())
            .unwrap_err();
        assert!(matches!(&err, SourceError::No(t) if t == "no such folder INBOX.nope"));
        assert!(!err.is_retryable());
    }

    #[test]
    fn items_out_of_order_or_missing_are_protocol_errors() {
        let reply = b"OK\nNO no such file 2\nDONE FDATA u P\n";
        let err = ReplyReader::new(&reply[..])
            .read_files("FDATA", &names(&["1"]), &mut Collect::default())
            .unwrap_err();
        assert!(matches!(err, SourceError::Protocol(_)), "{err}");
        let reply = b"OK\nDONE FDATA u P\n";
        let err = ReplyReader::new(&reply[..])
            .read_files("FDATA", &names(&["1"]), &mut Collect::default())
            .unwrap_err();
        assert!(matches!(err, SourceError::Protocol(_)), "{err}");
    }

    #[test]
    fn an_endless_line_is_refused_after_the_limit() {
        let reply = vec![b'O'; MAX_LINE * 3];
        let err = ReplyReader::new(&reply[..]).read_users().unwrap_err();
        assert!(matches!(err, SourceError::Protocol(_)), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_replies_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = ReplyReader::new(&bytes[..]).read_folders();
            let _ = ReplyReader::new(&bytes[..]).read_files("FDATA", &names(&["1", "2"]), &mut Collect::default());
            let _ = ReplyReader::new(&bytes[..]).read_meta_stats();
        }

        #[test]
        fn arbitrary_bodies_behind_valid_heads_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100), size in 0u64..120) {
            let mut reply = format!("OK\nDATA 1 {size} 0 0\n").into_bytes();
            reply.extend_from_slice(&body);
            let _ = ReplyReader::new(&reply[..]).read_files("FDATA", &names(&["1"]), &mut Collect::default());
        }
    }
}
