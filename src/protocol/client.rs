//! The blocking client: a [`Source`] backed by a backupcyrusd (or a
//! `mailvault agent`) over TCP.
//!
//! * Connecting retries `retries` times, `retry_delay` apart (the Perl client
//!   tries 3 times, 5 s apart); every socket read and write has `io_timeout`.
//! * After any error but a command-level `NO` the connection is dropped and
//!   the next call reconnects. A call that failed on the transport before the
//!   sink heard anything (typically a connection the server closed while we
//!   idled) is retried once on a fresh connection.
//! * FDATA is pipelined: UIDs go out in batches of `fdata_batch` (1024, as
//!   the Perl client), and batch k+1 is already on the wire while batch k's
//!   reply is read, so a round trip is not paid per batch.
//! * When a secret is configured, the AUTH handshake (`auth.rs`) runs first.
//! * `expunge` (a 2.3 folder's `cyrus.expunge`) is asked for only once the
//!   server has shown it is `mailvault agent`: it passed our AUTH, or it
//!   listed an `expunge` STAT. A stock backupcyrusd does neither, so it never
//!   sees the item (it would leave it unanswered, which breaks the reply).
//! * The agent's further user files (`sieve/<script>`, listed by `META
//!   <user>` after seen and sub) are remembered from the `user_files` call,
//!   so a stock server is asked nothing more than before.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::auth::{self, Role};
use super::codec::{self, Request, DEFAULT_PORT};
use super::reply::{is_extra_user_file, ReplyReader};
use crate::formats::Guid;
use crate::source::{
    FileHead, FileSink, FileStat, FolderId, FolderStatus, ItemFailure, MetaFile, SinkError, Source,
    SourceError, UserFile,
};

/// How to reach and talk to one server.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The servername every command carries.
    pub slot: String,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    /// Further connection attempts after the first fails.
    pub retries: u32,
    pub retry_delay: Duration,
    /// Shared secret for our AUTH extension; `None` for a stock server.
    pub secret: Option<Vec<u8>>,
    /// UIDs per FDATA request.
    pub fdata_batch: usize,
}

impl ClientOptions {
    /// The Perl client's behaviour: 3 connection attempts 5 s apart,
    /// FDATA batches of 1024.
    pub fn new(slot: impl Into<String>) -> ClientOptions {
        ClientOptions {
            slot: slot.into(),
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(600),
            retries: 2,
            retry_delay: Duration::from_secs(5),
            secret: None,
            fdata_batch: 1024,
        }
    }
}

/// Traffic so far, across reconnections.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub commands_sent: u64,
    pub connections: u64,
}

#[derive(Default)]
struct SharedCounters {
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    commands_sent: AtomicU64,
    connections: AtomicU64,
}

/// Counts the bytes that pass through a stream.
struct Counting<S> {
    inner: S,
    counters: Arc<SharedCounters>,
}

impl<S: Read> Read for Counting<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counters
            .bytes_received
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<S: Write> Write for Counting<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.counters
            .bytes_sent
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One open TCP connection.
struct Connection {
    reader: ReplyReader<BufReader<Counting<TcpStream>>>,
    writer: BufWriter<Counting<TcpStream>>,
    slot: String,
    counters: Arc<SharedCounters>,
}

impl Connection {
    fn send(&mut self, request: &Request<'_>) -> Result<(), SourceError> {
        let line = codec::request_line(request, &self.slot);
        self.writer
            .write_all(&line)
            .and_then(|()| self.writer.flush())
            .map_err(|e| SourceError::io(format!("sending {}", request.command()), e))?;
        self.counters.commands_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// `META <user> <dir>/<file>`: a request `Request::Meta` cannot spell,
    /// its items being the two stock ones. Items go raw, as the stock ones
    /// do (the server does not decode them), so `item` must be one word of
    /// visible ASCII without `%` ([`is_extra_user_file`] and the caller).
    fn send_extra_meta(&mut self, user: &str, item: &str) -> Result<(), SourceError> {
        let line = format!(
            "META {} {} {item}\n",
            codec::encode_client(self.slot.as_bytes()),
            codec::encode_client(user.as_bytes()),
        );
        self.writer
            .write_all(line.as_bytes())
            .and_then(|()| self.writer.flush())
            .map_err(|e| SourceError::io("sending META", e))?;
        self.counters.commands_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A blocking protocol client; see the module doc.
pub struct Client {
    addr: String,
    options: ClientOptions,
    conn: Option<Connection>,
    counters: Arc<SharedCounters>,
    /// The server proved to be `mailvault agent` (see the module doc).
    agent: bool,
    /// The further user files the last `META <user>` listed, and for whom.
    extra_listed: Option<(String, Vec<(String, FileStat)>)>,
}

impl Client {
    /// Connect (with retries) and authenticate if a secret is configured.
    /// `addr` is `host` or `host:port`; the port defaults to 2901.
    pub fn connect(addr: &str, options: &ClientOptions) -> Result<Client, SourceError> {
        let mut client = Client {
            addr: addr.to_string(),
            options: options.clone(),
            conn: None,
            counters: Arc::default(),
            agent: false,
            extra_listed: None,
        };
        client.connection()?;
        // Only our agent knows AUTH: a stock server refuses it, and then
        // `connection` has failed.
        client.agent = options.secret.is_some();
        Ok(client)
    }

    /// Remember that the server listed an `expunge` file: only our agent does.
    fn note_expunge<'a>(&mut self, mut files: impl Iterator<Item = &'a (MetaFile, FileStat)>) {
        if files.any(|(file, _)| *file == MetaFile::Expunge) {
            self.agent = true;
        }
    }

    pub fn counters(&self) -> Counters {
        let c = &self.counters;
        Counters {
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            commands_sent: c.commands_sent.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
        }
    }

    /// Say QUIT and wait for its OK (the Perl client just hangs up).
    pub fn quit(mut self) -> Result<(), SourceError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        conn.send(&Request::Quit)?;
        conn.reader.expect_ok("QUIT")
    }

    fn connection(&mut self) -> Result<&mut Connection, SourceError> {
        if self.conn.is_none() {
            self.conn = Some(self.open_with_retries()?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| SourceError::Closed("right after connecting".into()))
    }

    fn open_with_retries(&self) -> Result<Connection, SourceError> {
        let mut attempt = 0;
        loop {
            match self.open() {
                Ok(conn) => return Ok(conn),
                Err(e) if e.is_retryable() && attempt < self.options.retries => {
                    attempt += 1;
                    tracing::warn!(addr = %self.addr, attempt, error = %e, "connect failed, retrying");
                    std::thread::sleep(self.options.retry_delay);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn resolve(&self) -> Result<Vec<SocketAddr>, SourceError> {
        let during = || format!("resolving {}", self.addr);
        let with_port = match self.addr.rsplit_once(':') {
            Some((_, port)) if port.parse::<u16>().is_ok() && !self.addr.ends_with(']') => {
                self.addr.clone()
            }
            _ => format!("{}:{DEFAULT_PORT}", self.addr),
        };
        with_port
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(|e| SourceError::io(during(), e))
    }

    fn open(&self) -> Result<Connection, SourceError> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in self.resolve()? {
            match TcpStream::connect_timeout(&addr, self.options.connect_timeout) {
                Ok(stream) => return self.start(stream),
                Err(e) => last = e,
            }
        }
        Err(SourceError::io(
            format!("connecting to {}", self.addr),
            last,
        ))
    }

    fn start(&self, stream: TcpStream) -> Result<Connection, SourceError> {
        let during = |e| SourceError::io(format!("setting up the connection to {}", self.addr), e);
        let timeout = Some(self.options.io_timeout).filter(|t| !t.is_zero());
        stream.set_read_timeout(timeout).map_err(during)?;
        stream.set_write_timeout(timeout).map_err(during)?;
        stream.set_nodelay(true).map_err(during)?;
        let counting = |inner| Counting {
            inner,
            counters: Arc::clone(&self.counters),
        };
        let reader = counting(stream.try_clone().map_err(during)?);
        let mut conn = Connection {
            reader: ReplyReader::new(BufReader::with_capacity(256 * 1024, reader)),
            writer: BufWriter::new(counting(stream)),
            slot: self.options.slot.clone(),
            counters: Arc::clone(&self.counters),
        };
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        if let Some(secret) = &self.options.secret {
            authenticate(&mut conn, secret)?;
        }
        Ok(conn)
    }

    /// Run `op` on a live connection. `op` returns, with its error, whether
    /// the sink has heard nothing yet (so that trying again is harmless).
    fn run<T>(
        &mut self,
        mut op: impl FnMut(&mut Connection, &ClientOptions) -> Result<T, (SourceError, bool)>,
    ) -> Result<T, SourceError> {
        let mut retried = false;
        loop {
            let options = self.options.clone();
            let conn = self.connection()?;
            let (error, untouched) = match op(conn, &options) {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            if !matches!(error, SourceError::No(_)) {
                self.conn = None;
            }
            let transport = matches!(error, SourceError::Io { .. } | SourceError::Closed(_));
            if !(transport && untouched) || retried {
                return Err(error);
            }
            tracing::info!(addr = %self.addr, error = %error, "retrying on a new connection");
            retried = true;
        }
    }

    /// [`Client::run`] for calls without a sink: always safe to repeat.
    fn run_plain<T>(
        &mut self,
        mut op: impl FnMut(&mut Connection) -> Result<T, SourceError>,
    ) -> Result<T, SourceError> {
        self.run(|conn, _| op(conn).map_err(|e| (e, true)))
    }
}

fn authenticate(conn: &mut Connection, secret: &[u8]) -> Result<(), SourceError> {
    let refused = |e: SourceError| match e {
        SourceError::No(text) => SourceError::Auth(format!("the server said NO {text}")),
        other => other,
    };
    let client_nonce = auth::new_nonce().map_err(|e| SourceError::io("making a nonce", e))?;
    conn.send(&Request::Auth {
        nonce: &client_nonce,
    })?;
    let server_nonce = conn.reader.read_value("AUTH", "NONCE").map_err(refused)?;
    if !auth::is_valid_nonce(&server_nonce) {
        return Err(SourceError::Auth(format!(
            "bad server nonce {server_nonce:?}"
        )));
    }
    let slot = conn.slot.clone();
    let ours = auth::proof(secret, Role::Client, &slot, &client_nonce, &server_nonce);
    conn.send(&Request::Proof { proof: &ours })?;
    let theirs = conn.reader.read_value("PROOF", "PROOF").map_err(refused)?;
    let expected = auth::proof(secret, Role::Server, &slot, &client_nonce, &server_nonce);
    if !auth::proofs_equal(&theirs, &expected) {
        return Err(SourceError::Auth(
            "the server does not know the secret".into(),
        ));
    }
    Ok(())
}

/// Wraps the caller's sink to know whether it has heard anything yet.
struct Tracked<'a> {
    inner: &'a mut dyn FileSink,
    events: usize,
}

impl FileSink for Tracked<'_> {
    fn file(&mut self, head: &FileHead, body: &mut dyn Read) -> Result<(), SinkError> {
        self.events += 1;
        self.inner.file(head, body)
    }
    fn verified(&mut self, head: &FileHead, sha1: Guid) -> Result<(), SinkError> {
        self.inner.verified(head, sha1)
    }
    fn missing(&mut self, name: &str, why: &ItemFailure) -> Result<(), SinkError> {
        self.events += 1;
        self.inner.missing(name, why)
    }
}

/// Reads and forgets a reply nobody wants any more.
struct Discard;

impl FileSink for Discard {
    fn file(&mut self, _: &FileHead, _: &mut dyn Read) -> Result<(), SinkError> {
        Ok(())
    }
    fn verified(&mut self, _: &FileHead, _: Guid) -> Result<(), SinkError> {
        Ok(())
    }
    fn missing(&mut self, _: &str, _: &ItemFailure) -> Result<(), SinkError> {
        Ok(())
    }
}

fn uid_names(uids: &[u32]) -> Vec<String> {
    uids.iter().map(u32::to_string).collect()
}

/// FDATA in pipelined batches; see the module doc.
fn fetch_pipelined(
    conn: &mut Connection,
    batch_size: usize,
    user: &str,
    folder: &str,
    uids: &[u32],
    sink: &mut dyn FileSink,
) -> Result<FolderId, SourceError> {
    let batches: Vec<&[u32]> = match uids.is_empty() {
        true => vec![uids],
        false => uids.chunks(batch_size.max(1)).collect(),
    };
    let request = |uids| Request::FData { user, folder, uids };
    let mut sent = 0;
    for batch in batches.iter().take(2) {
        conn.send(&request(batch))?;
        sent += 1;
    }
    let mut first: Option<FolderId> = None;
    for (k, batch) in batches.iter().enumerate() {
        let id = match conn
            .reader
            .read_folder_files("FDATA", &uid_names(batch), sink)
        {
            Err(SourceError::No(text)) => {
                drain(conn, &batches[k + 1..sent])?;
                return Err(SourceError::No(text));
            }
            other => other?,
        };
        if let Some(before) = &first {
            if *before != id {
                return Err(SourceError::FolderChanged {
                    folder: folder.to_string(),
                    before: before.uniqueid.clone(),
                    after: id.uniqueid,
                });
            }
        }
        first.get_or_insert(id);
        if let Some(next) = batches.get(sent) {
            conn.send(&request(next))?;
            sent += 1;
        }
    }
    first.ok_or_else(|| SourceError::Protocol("FDATA sent no batch".into()))
}

/// Read the replies to requests already sent, so the connection stays in step.
fn drain(conn: &mut Connection, outstanding: &[&[u32]]) -> Result<(), SourceError> {
    for batch in outstanding {
        match conn
            .reader
            .read_folder_files("FDATA", &uid_names(batch), &mut Discard)
        {
            Ok(_) | Err(SourceError::No(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Source for Client {
    fn ping(&mut self) -> Result<(), SourceError> {
        self.run_plain(|conn| {
            conn.send(&Request::Ping)?;
            conn.reader.read_ping()
        })
    }

    fn users(&mut self) -> Result<Vec<String>, SourceError> {
        self.run_plain(|conn| {
            conn.send(&Request::Users)?;
            conn.reader.read_users()
        })
    }

    fn user_files(&mut self, user: &str) -> Result<Vec<(UserFile, FileStat)>, SourceError> {
        let listing = self.run_plain(|conn| {
            conn.send(&Request::Meta { user, items: &[] })?;
            conn.reader.read_user_listing()
        })?;
        self.extra_listed = Some((user.to_string(), listing.extra));
        Ok(listing.files)
    }

    fn extra_user_files(&mut self, user: &str) -> Result<Vec<(String, FileStat)>, SourceError> {
        match self.extra_listed.take() {
            Some((listed_for, extra)) if listed_for == user => Ok(extra),
            _ => {
                let listing = self.run_plain(|conn| {
                    conn.send(&Request::Meta { user, items: &[] })?;
                    conn.reader.read_user_listing()
                })?;
                Ok(listing.extra)
            }
        }
    }

    fn fetch_extra_user_file(
        &mut self,
        user: &str,
        name: &str,
        sink: &mut dyn FileSink,
    ) -> Result<(), SourceError> {
        let sink_error = |source| SourceError::Sink {
            item: name.to_string(),
            source,
        };
        let plain = name.bytes().all(|b| b.is_ascii_graphic() && b != b'%');
        if !plain || !is_extra_user_file(name) {
            return sink
                .missing(name, &ItemFailure::NoSuchFile)
                .map_err(sink_error);
        }
        let names = vec![name.to_string()];
        let mut tracked = Tracked {
            inner: sink,
            events: 0,
        };
        self.run(|conn, _| {
            let before = tracked.events;
            let result = conn
                .send_extra_meta(user, name)
                .and_then(|()| conn.reader.read_files("META", &names, &mut tracked));
            match result {
                Ok(rest) if rest.is_empty() => Ok(()),
                Ok(rest) => Err(SourceError::Protocol(format!("DONE META {rest:?}"))),
                Err(e) => Err(e),
            }
            .map_err(|e| (e, tracked.events == before))
        })
    }

    fn fetch_user_files(
        &mut self,
        user: &str,
        items: &[UserFile],
        sink: &mut dyn FileSink,
    ) -> Result<(), SourceError> {
        if items.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = items.iter().map(|i| i.name().to_string()).collect();
        let mut tracked = Tracked {
            inner: sink,
            events: 0,
        };
        self.run(|conn, _| {
            let before = tracked.events;
            let result = conn
                .send(&Request::Meta { user, items })
                .and_then(|()| conn.reader.read_files("META", &names, &mut tracked));
            match result {
                Ok(rest) if rest.is_empty() => Ok(()),
                Ok(rest) => Err(SourceError::Protocol(format!("DONE META {rest:?}"))),
                Err(e) => Err(e),
            }
            .map_err(|e| (e, tracked.events == before))
        })
    }

    fn serves_expunge(&self) -> bool {
        self.agent
    }

    fn folders(&mut self, user: &str) -> Result<Vec<FolderStatus>, SourceError> {
        let folders = self.run_plain(|conn| {
            conn.send(&Request::FMultiStatus { user })?;
            conn.reader.read_folders()
        })?;
        self.note_expunge(folders.iter().flat_map(|f| f.files.iter()));
        Ok(folders)
    }

    fn folder_meta_stat(
        &mut self,
        user: &str,
        folder: &str,
    ) -> Result<(Vec<(MetaFile, FileStat)>, FolderId), SourceError> {
        let found = self.run_plain(|conn| {
            conn.send(&Request::FMeta {
                user,
                folder,
                items: &[],
            })?;
            conn.reader.read_meta_stats()
        })?;
        self.note_expunge(found.0.iter());
        Ok(found)
    }

    fn fetch_folder_meta(
        &mut self,
        user: &str,
        folder: &str,
        items: &[MetaFile],
        sink: &mut dyn FileSink,
    ) -> Result<FolderId, SourceError> {
        if items.is_empty() {
            return self.folder_meta_stat(user, folder).map(|(_, id)| id);
        }
        let names: Vec<String> = items.iter().map(|i| i.name().to_string()).collect();
        let mut tracked = Tracked {
            inner: sink,
            events: 0,
        };
        self.run(|conn, _| {
            let before = tracked.events;
            conn.send(&Request::FMeta {
                user,
                folder,
                items,
            })
            .and_then(|()| conn.reader.read_folder_files("FMETA", &names, &mut tracked))
            .map_err(|e| (e, tracked.events == before))
        })
    }

    fn fetch_messages(
        &mut self,
        user: &str,
        folder: &str,
        uids: &[u32],
        sink: &mut dyn FileSink,
    ) -> Result<FolderId, SourceError> {
        let mut tracked = Tracked {
            inner: sink,
            events: 0,
        };
        self.run(|conn, options| {
            let before = tracked.events;
            fetch_pipelined(conn, options.fdata_batch, user, folder, uids, &mut tracked)
                .map_err(|e| (e, tracked.events == before))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A one-connection server answering FMULTISTATUS with `stats` and
    /// anything else with a refusal; it reports every request line.
    fn scripted(stats: &'static str) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut out = stream.try_clone().unwrap();
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                let reply = if line.starts_with("FMULTISTATUS") {
                    format!("OK\nFOLDER INBOX u1 -\n{stats}DONE FMULTISTATUS\n")
                } else {
                    "NO not in this script\n".to_string()
                };
                let _ = tx.send(line);
                if out.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        });
        (addr, rx)
    }

    fn client(addr: &str) -> Client {
        let mut options = ClientOptions::new("s");
        options.retries = 0;
        Client::connect(addr, &options).unwrap()
    }

    #[test]
    fn a_stock_server_is_never_asked_for_expunge() {
        let (addr, requests) = scripted("STAT INBOX index 10 1 2\n");
        let mut c = client(&addr);
        let folders = c.folders("bob").unwrap();
        assert_eq!(folders[0].files.len(), 1);
        assert!(!c.serves_expunge());
        let _ = c.fetch_folder_meta("bob", "INBOX", &MetaFile::ALL, &mut Discard);
        let sent: Vec<String> = requests.try_iter().collect();
        assert!(sent.iter().all(|l| !l.contains("expunge")), "{sent:?}");
    }

    #[test]
    fn an_expunge_stat_shows_the_server_is_our_agent() {
        let (addr, _requests) = scripted("STAT INBOX index 10 1 2\nSTAT INBOX expunge 96 1 3\n");
        let mut c = client(&addr);
        assert!(!c.serves_expunge(), "nothing known before a reply");
        let folders = c.folders("bob").unwrap();
        assert_eq!(
            folders[0].stat(MetaFile::Expunge),
            Some(FileStat {
                size: 96,
                mtime: 1,
                inode: 3
            })
        );
        assert!(c.serves_expunge());
    }
}
