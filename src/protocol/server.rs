//! The server loop: answers the backup protocol from any [`Source`], with
//! backupcyrusd's exact reply shapes and quirks (spec §1.3-§1.5):
//!
//! * `QUIT` → `OK` then close; `PING` → `OK`/`DONE PING`, no slot needed;
//! * a wrong slot → `NO iam <servername>` (checked before anything else);
//! * nothing after the slot → `NO bad command` (USERS excepted);
//! * an unknown command → `NO unknown command <cmd>`;
//! * FDATA/FMETA without enough arguments → `NO missing user` (sic);
//! * per-item failures inside the reply, LF-only lines, lowercase sha1,
//!   %-escaped tokens, case-insensitive commands, CRLF accepted.
//!
//! Where backupcyrusd stays silent on a malformed argument (a bad quote or
//! literal in user or folder) we answer `NO bad argument`, so a client never
//! waits for a reply that is not coming. Hostile input (an endless line, a
//! literal over the cap, a stream that ends inside one) closes the connection;
//! so does a source that fails after the reply has begun, because the client
//! could no longer tell where the reply ends. Nothing here panics on input.

use std::io::{self, BufWriter, Read, Write};

use sha1::{Digest, Sha1};

use super::auth::{self, Role};
use super::codec;
use super::request::{Astring, Limits, RequestError, RequestReader, Term, MID_LINE};
use crate::formats::Guid;
use crate::source::{
    FileHead, FileSink, FolderId, ItemFailure, MetaFile, SinkError, Source, SourceError, UserFile,
};

/// Most item tokens accepted in one request (a Perl FDATA batch has 1024).
pub const MAX_ITEMS: usize = 100_000;

/// How a server presents itself and what it insists on.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The slot every command but PING/QUIT must carry (imapd.conf `servername`).
    pub servername: String,
    /// When set, clients must pass our AUTH handshake first (see `auth.rs`).
    pub secret: Option<Vec<u8>>,
    pub limits: Limits,
}

impl ServerOptions {
    pub fn new(servername: impl Into<String>) -> ServerOptions {
        ServerOptions {
            servername: servername.into(),
            secret: None,
            limits: Limits::default(),
        }
    }
}

/// Why a connection was closed by us rather than by the client.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("bad input from the client: {0}")]
    Request(#[from] RequestError),
    #[error("I/O error writing a reply: {0}")]
    Io(#[from] io::Error),
    #[error("the source failed in the middle of a reply: {0}")]
    SourceMidReply(SourceError),
    #[error("the source answered {answered} items where {asked} were asked for")]
    SourceContract { asked: usize, answered: usize },
    #[error("the client failed authentication")]
    AuthFailed,
}

/// Serve one connection until the client quits or hangs up.
pub fn serve_connection<R: Read, W: Write>(
    input: R,
    output: W,
    source: &mut dyn Source,
    options: &ServerOptions,
) -> Result<(), ServerError> {
    let mut session = Session {
        input: RequestReader::new(input, options.limits),
        out: BufWriter::new(output),
        source,
        options,
        auth: match options.secret {
            Some(_) => AuthState::Required { challenge: None },
            None => AuthState::Open,
        },
    };
    let result = session.run();
    let flushed = session.out.flush();
    result?;
    flushed.map_err(ServerError::from)
}

enum AuthState {
    Open,
    Required { challenge: Option<(String, String)> },
}

/// A decoded user/folder argument; `None` when it was not an astring.
struct Arg {
    value: Option<String>,
    term: Term,
}

struct Session<'a, R, W: Write> {
    input: RequestReader<R>,
    out: BufWriter<W>,
    source: &'a mut dyn Source,
    options: &'a ServerOptions,
    auth: AuthState,
}

impl<R: Read, W: Write> Session<'_, R, W> {
    fn run(&mut self) -> Result<(), ServerError> {
        loop {
            let (command, term) = self.input.word(&mut self.out)?;
            if term.is_none() {
                return Ok(());
            }
            let upper = command.to_ascii_uppercase();
            if upper == b"QUIT" {
                self.send("OK\n")?;
                return Ok(());
            }
            let term = match upper.as_slice() {
                b"PING" => self.send("OK\nDONE PING\n").map(|_| term)?,
                _ => self.slotted(&upper, &command)?,
            };
            self.input.eat_line(term, &mut self.out)?;
            self.out.flush()?;
        }
    }

    fn send(&mut self, text: &str) -> io::Result<()> {
        self.out.write_all(text.as_bytes())
    }

    /// Everything after the command word for commands that need a slot.
    fn slotted(&mut self, upper: &[u8], command: &[u8]) -> Result<Term, ServerError> {
        let (slot, term) = self.input.word(&mut self.out)?;
        if slot != self.options.servername.as_bytes() {
            let line = format!("NO iam {}\n", self.options.servername);
            self.send(&line)?;
            return Ok(term);
        }
        let is_auth = matches!(upper, b"AUTH" | b"PROOF");
        if !(is_auth || self.authorised()) {
            self.send("NO authentication required\n")?;
            return Ok(term);
        }
        if upper == b"USERS" {
            self.users()?;
            return Ok(term);
        }
        if term != Some(b' ') {
            self.send("NO bad command\n")?;
            return Ok(term);
        }
        match upper {
            b"FDATA" => self.fdata(),
            b"FMETA" => self.fmeta(),
            b"FMULTISTATUS" => self.fmultistatus(),
            b"META" => self.meta(),
            b"AUTH" if self.options.secret.is_some() => self.auth_challenge(),
            b"PROOF" if self.options.secret.is_some() => self.auth_proof(),
            _ => {
                self.out.write_all(b"NO unknown command ")?;
                self.out.write_all(command)?;
                self.send("\n")?;
                Ok(term)
            }
        }
    }

    fn authorised(&self) -> bool {
        matches!(self.auth, AuthState::Open)
    }

    /// A user or folder argument: an astring, %-decoded.
    fn uri_arg(&mut self) -> Result<Arg, ServerError> {
        Ok(match self.input.astring(&mut self.out)? {
            Astring::Value(raw, term) => Arg {
                value: Some(String::from_utf8_lossy(&codec::decode(&raw)).into_owned()),
                term,
            },
            Astring::Malformed => Arg {
                value: None,
                term: MID_LINE,
            },
        })
    }

    /// The item words after the fixed arguments.
    fn items(&mut self, mut term: Term) -> Result<(Vec<String>, Term), ServerError> {
        let mut items = Vec::new();
        while term == Some(b' ') {
            let (word, next) = self.input.word(&mut self.out)?;
            items.push(String::from_utf8_lossy(&word).into_owned());
            if items.len() > MAX_ITEMS {
                return Err(RequestError::LineTooLong(MAX_ITEMS).into());
            }
            term = next;
        }
        Ok((items, term))
    }

    fn users(&mut self) -> Result<(), ServerError> {
        match self.source.users() {
            Ok(users) => {
                let mut reply = String::from("OK\n");
                users
                    .iter()
                    .for_each(|u| reply.push_str(&codec::user_line(u)));
                reply.push_str(&codec::done_line("USERS", None));
                self.send(&reply)?;
            }
            Err(e) => self.refuse(&e)?,
        }
        Ok(())
    }

    /// A command-level failure before anything was sent: one `NO` line.
    fn refuse(&mut self, error: &SourceError) -> io::Result<()> {
        let text = match error {
            SourceError::No(text) => text.clone(),
            other => other.to_string(),
        };
        self.send(&codec::no_line(&text))
    }

    fn fdata(&mut self) -> Result<Term, ServerError> {
        let user = self.uri_arg()?;
        let Some(user_name) = user.value.filter(|_| user.term == Some(b' ')) else {
            self.send("NO missing user\n")?;
            return Ok(user.term);
        };
        let folder = self.uri_arg()?;
        let folder_name = folder.value.unwrap_or_default();
        let (tokens, term) = self.items(folder.term)?;
        let uids: Vec<u32> = tokens.iter().map(|t| atoi_uid(t)).collect();
        let mut sink = WireSink::new(&mut self.out, Some(tokens));
        let result = self
            .source
            .fetch_messages(&user_name, &folder_name, &uids, &mut sink)
            .map(Some);
        finish_file_reply(sink, result, "FDATA")?;
        Ok(term)
    }

    fn fmeta(&mut self) -> Result<Term, ServerError> {
        let user = self.uri_arg()?;
        let Some(user_name) = user.value else {
            self.send("NO bad argument\n")?;
            return Ok(user.term);
        };
        if user.term != Some(b' ') {
            if user.term.is_some() {
                self.send("NO missing user\n")?;
            }
            return Ok(user.term);
        }
        let folder = self.uri_arg()?;
        let Some(folder_name) = folder.value else {
            self.send("NO bad argument\n")?;
            return Ok(folder.term);
        };
        if folder.term.is_none() {
            return Ok(None);
        }
        if folder.term != Some(b' ') {
            self.fmeta_stat(&user_name, &folder_name)?;
            return Ok(folder.term);
        }
        let (words, term) = self.items(folder.term)?;
        let items: Vec<MetaFile> = words
            .iter()
            .filter_map(|w| MetaFile::from_agent_name(w))
            .filter(|m| *m != MetaFile::Expunge || self.source.serves_expunge())
            .collect();
        let mut sink = WireSink::new(&mut self.out, None);
        let result = self
            .source
            .fetch_folder_meta(&user_name, &folder_name, &items, &mut sink)
            .map(Some);
        finish_file_reply(sink, result, "FMETA")?;
        Ok(term)
    }

    fn fmeta_stat(&mut self, user: &str, folder: &str) -> Result<(), ServerError> {
        match self.source.folder_meta_stat(user, folder) {
            Ok((stats, id)) => {
                let mut reply = String::from("OK\n");
                for (file, stat) in &stats {
                    reply.push_str(&codec::stat_line(None, file.name(), stat));
                }
                reply.push_str(&codec::done_line("FMETA", Some(&id)));
                self.send(&reply)?;
            }
            Err(e) => self.refuse(&e)?,
        }
        Ok(())
    }

    fn fmultistatus(&mut self) -> Result<Term, ServerError> {
        let user = self.uri_arg()?;
        let Some(user_name) = user.value else {
            self.send("NO bad argument\n")?;
            return Ok(user.term);
        };
        if user.term.is_none() {
            return Ok(None);
        }
        match self.source.folders(&user_name) {
            Ok(folders) => {
                self.send("OK\n")?;
                for folder in &folders {
                    let mut lines = codec::folder_line(folder);
                    for (file, stat) in &folder.files {
                        lines.push_str(&codec::stat_line(Some(&folder.name), file.name(), stat));
                    }
                    self.send(&lines)?;
                }
                self.send(&codec::done_line("FMULTISTATUS", None))?;
            }
            Err(e) => self.refuse(&e)?,
        }
        Ok(user.term)
    }

    fn meta(&mut self) -> Result<Term, ServerError> {
        let user = self.uri_arg()?;
        let Some(user_name) = user.value else {
            self.send("NO bad argument\n")?;
            return Ok(user.term);
        };
        if user.term.is_none() {
            return Ok(None);
        }
        if user.term != Some(b' ') {
            self.meta_stat(&user_name)?;
            return Ok(user.term);
        }
        let (words, term) = self.items(user.term)?;
        let mut sink = WireSink::new(&mut self.out, None);
        let result = fetch_user_items(self.source, &user_name, &words, &mut sink).map(|()| None);
        finish_file_reply(sink, result, "META")?;
        Ok(term)
    }

    fn meta_stat(&mut self, user: &str) -> Result<(), ServerError> {
        match self.source.user_files(user) {
            Ok(stats) => {
                let mut reply = String::from("OK\n");
                for (file, stat) in &stats {
                    reply.push_str(&codec::stat_line(None, file.name(), stat));
                }
                match self.source.extra_user_files(user) {
                    Ok(extra) => extra.iter().for_each(|(name, stat)| {
                        reply.push_str(&codec::stat_line(None, name, stat));
                    }),
                    Err(e) => return Ok(self.refuse(&e)?),
                }
                reply.push_str(&codec::done_line("META", None));
                self.send(&reply)?;
            }
            Err(e) => self.refuse(&e)?,
        }
        Ok(())
    }

    fn auth_challenge(&mut self) -> Result<Term, ServerError> {
        let (nonce, term) = self.input.word(&mut self.out)?;
        let client_nonce = String::from_utf8_lossy(&nonce).into_owned();
        if !auth::is_valid_nonce(&client_nonce) {
            self.send("NO bad nonce\n")?;
            return Ok(term);
        }
        let server_nonce = auth::new_nonce()?;
        let reply = format!("OK\nNONCE {server_nonce}\nDONE AUTH\n");
        self.auth = AuthState::Required {
            challenge: Some((client_nonce, server_nonce)),
        };
        self.send(&reply)?;
        Ok(term)
    }

    fn auth_proof(&mut self) -> Result<Term, ServerError> {
        let (proof, term) = self.input.word(&mut self.out)?;
        let proof = String::from_utf8_lossy(&proof).into_owned();
        let (
            AuthState::Required {
                challenge: Some((client, server)),
            },
            Some(secret),
        ) = (&self.auth, &self.options.secret)
        else {
            self.send("NO no challenge pending\n")?;
            return Ok(term);
        };
        let slot = &self.options.servername;
        let expected = auth::proof(secret, Role::Client, slot, client, server);
        if !auth::proofs_equal(&proof, &expected) {
            self.send("NO authentication failed\n")?;
            return Err(ServerError::AuthFailed);
        }
        let ours = auth::proof(secret, Role::Server, slot, client, server);
        self.auth = AuthState::Open;
        self.send(&format!("OK\nPROOF {ours}\nDONE PROOF\n"))?;
        Ok(term)
    }
}

/// META items in request order: seen and sub (anything else unknown is
/// ignored, as backupcyrusd does), and `<dir>/<file>` extra files for sources
/// that have them. Without extra items it is one `fetch_user_files` call.
fn fetch_user_items(
    source: &mut dyn Source,
    user: &str,
    words: &[String],
    sink: &mut dyn FileSink,
) -> Result<(), SourceError> {
    if !words.iter().any(|w| w.contains('/')) {
        let items: Vec<UserFile> = words
            .iter()
            .filter_map(|w| UserFile::from_name(w))
            .collect();
        return source.fetch_user_files(user, &items, sink);
    }
    for word in words {
        if let Some(file) = UserFile::from_name(word) {
            source.fetch_user_files(user, &[file], sink)?;
        } else if word.contains('/') {
            source.fetch_extra_user_file(user, word, sink)?;
        }
    }
    Ok(())
}

/// C's `atoi` as backupcyrusd applies it to UID tokens: leading digits, and
/// anything unparseable is 0, a UID that never exists.
fn atoi_uid(token: &str) -> u32 {
    let digits: String = token.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

/// Close a file-list reply: `DONE`, or the command's `NO` if nothing was
/// sent yet, or an error that closes the connection.
fn finish_file_reply<W: Write>(
    mut sink: WireSink<'_, W>,
    result: Result<Option<FolderId>, SourceError>,
    command: &str,
) -> Result<(), ServerError> {
    match result {
        Ok(id) => {
            if let Some(names) = &sink.names {
                if sink.answered != names.len() {
                    return Err(ServerError::SourceContract {
                        asked: names.len(),
                        answered: sink.answered,
                    });
                }
            }
            sink.start()?;
            sink.out
                .write_all(codec::done_line(command, id.as_ref()).as_bytes())?;
            Ok(())
        }
        Err(e) if !sink.started => {
            let text = match e {
                SourceError::No(text) => text,
                other => other.to_string(),
            };
            sink.out.write_all(codec::no_line(&text).as_bytes())?;
            Ok(())
        }
        Err(e) => Err(ServerError::SourceMidReply(e)),
    }
}

/// Puts streamed files on the wire: `OK` before the first one, then
/// `DATA`/body/`DONE` or a `NO` line per item.
struct WireSink<'a, W: Write> {
    out: &'a mut BufWriter<W>,
    /// FDATA names items by the tokens as the client sent them.
    names: Option<Vec<String>>,
    answered: usize,
    started: bool,
}

impl<'a, W: Write> WireSink<'a, W> {
    fn new(out: &'a mut BufWriter<W>, names: Option<Vec<String>>) -> WireSink<'a, W> {
        WireSink {
            out,
            names,
            answered: 0,
            started: false,
        }
    }

    fn start(&mut self) -> io::Result<()> {
        if !self.started {
            self.started = true;
            self.out.write_all(b"OK\n")?;
        }
        Ok(())
    }

    /// The wire name of the next item, and count it as answered.
    fn next_name(&mut self, own: &str) -> Result<String, SinkError> {
        let index = self.answered;
        self.answered += 1;
        match &self.names {
            None => Ok(own.to_string()),
            Some(names) => names
                .get(index)
                .cloned()
                .ok_or_else(|| SinkError::Refused(format!("item {own} was not asked for"))),
        }
    }
}

impl<W: Write> FileSink for WireSink<'_, W> {
    fn file(&mut self, head: &FileHead, body: &mut dyn Read) -> Result<(), SinkError> {
        self.start()?;
        let name = self.next_name(&head.name)?;
        let wire_head = FileHead {
            name: name.clone(),
            stat: head.stat,
        };
        self.out
            .write_all(codec::data_line(&wire_head).as_bytes())?;
        let sha1 = copy_hashing(body, self.out, head.stat.size)?;
        self.out
            .write_all(codec::item_done_line(&name, &sha1).as_bytes())?;
        Ok(())
    }

    fn verified(&mut self, _head: &FileHead, _sha1: Guid) -> Result<(), SinkError> {
        Ok(())
    }

    fn missing(&mut self, name: &str, why: &ItemFailure) -> Result<(), SinkError> {
        self.start()?;
        let name = self.next_name(name)?;
        self.out
            .write_all(codec::item_failure_line(&name, why).as_bytes())?;
        Ok(())
    }
}

/// Copy exactly `size` bytes and hash them; a body that ends early would
/// leave the client reading our next line as data, so it is an error.
fn copy_hashing(body: &mut dyn Read, out: &mut dyn Write, size: u64) -> Result<Guid, SinkError> {
    let mut hasher = Sha1::new();
    let mut remaining = size;
    let mut buf = vec![0u8; 64 * 1024];
    while remaining > 0 {
        let want = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = match body.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(SinkError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file ended {remaining} bytes before its announced size"),
                )))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        remaining -= n as u64;
    }
    Ok(Guid::from(hasher))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoi_takes_leading_digits_and_defaults_to_zero() {
        assert_eq!(atoi_uid("42"), 42);
        assert_eq!(atoi_uid("42abc"), 42);
        assert_eq!(atoi_uid("abc"), 0);
        assert_eq!(atoi_uid(""), 0);
        assert_eq!(atoi_uid("99999999999"), 0);
    }
}
