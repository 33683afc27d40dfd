//! `mailvault agent` as a library: the [`Spool`] served over the backup
//! protocol by [`crate::protocol::listen`], one Spool per connection, with a
//! count of live connections so a shutdown can let them finish.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::imapd_conf::ImapdConf;
use super::spool::Spool;
use super::spool_io::SpoolCounters;
use crate::protocol::listen::{bind, AllowedNet, ListenOptions, ServerHandle};
use crate::protocol::server::ServerOptions;
use crate::source::{
    FileSink, FileStat, FolderId, FolderStatus, MetaFile, Source, SourceError, UserFile,
};

/// backupcyrusd's port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2901";

/// How the agent listens.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub listen: String,
    /// Empty: anyone who can reach the address.
    pub allow: Vec<AllowedNet>,
    /// Our AUTH extension's shared secret, when set.
    pub secret: Option<Vec<u8>>,
    /// The slot; defaults to imapd.conf's `servername`.
    pub servername: Option<String>,
    pub max_connections: usize,
}

impl Default for AgentOptions {
    fn default() -> AgentOptions {
        AgentOptions {
            listen: DEFAULT_LISTEN.into(),
            allow: Vec::new(),
            secret: None,
            servername: None,
            max_connections: 64,
        }
    }
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no --servername given and imapd.conf has no `servername`")]
    NoServername,
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: io::Error,
    },
}

/// A running agent.
pub struct Agent {
    handle: ServerHandle,
    live: Arc<AtomicUsize>,
}

impl Agent {
    /// Binds and serves in the background.
    pub fn start(conf: ImapdConf, options: AgentOptions) -> Result<Agent, AgentError> {
        let servername = options
            .servername
            .clone()
            .or_else(|| conf.servername.clone())
            .ok_or(AgentError::NoServername)?;
        let live = Arc::new(AtomicUsize::new(0));
        let factory = {
            let live = Arc::clone(&live);
            move || -> Result<Box<dyn Source + Send>, SourceError> {
                let spool = Spool::new(conf.clone());
                let counters = spool.counters();
                Ok(Box::new(Live::new(spool, &live, counters)))
            }
        };
        let mut server = ServerOptions::new(servername);
        server.secret = options.secret.clone();
        let mut listen = ListenOptions::new(server);
        listen.allow = options.allow.clone();
        listen.max_connections = options.max_connections;
        let handle =
            bind(options.listen.as_str(), Arc::new(factory), listen).map_err(|source| {
                AgentError::Listen {
                    addr: options.listen.clone(),
                    source,
                }
            })?;
        Ok(Agent { handle, live })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// Connections being served now.
    pub fn live_connections(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Stops accepting, then waits up to `patience` for the connections in
    /// progress to end. Returns how many were still open.
    pub fn stop(self, patience: Duration) -> usize {
        let live = Arc::clone(&self.live);
        self.handle.shutdown();
        let deadline = Instant::now() + patience;
        while live.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        live.load(Ordering::SeqCst)
    }
}

/// A source that counts itself live until dropped (the connection ended),
/// and then logs what the connection read of the spool, so an operator (and
/// bench/backup.sh) can see that a no-change run opened no message file.
struct Live<S> {
    inner: S,
    live: Arc<AtomicUsize>,
    counters: Arc<SpoolCounters>,
}

impl<S> Live<S> {
    fn new(inner: S, live: &Arc<AtomicUsize>, counters: Arc<SpoolCounters>) -> Live<S> {
        live.fetch_add(1, Ordering::SeqCst);
        Live {
            inner,
            live: Arc::clone(live),
            counters,
        }
    }
}

impl<S> Drop for Live<S> {
    fn drop(&mut self) {
        let c = self.counters.snapshot();
        tracing::info!(
            files_opened = c.files_opened,
            message_files_opened = c.message_files_opened,
            bytes_read = c.bytes_read,
            stat_calls = c.stat_calls,
            "connection ended"
        );
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<S: Source> Source for Live<S> {
    fn ping(&mut self) -> Result<(), SourceError> {
        self.inner.ping()
    }
    fn users(&mut self) -> Result<Vec<String>, SourceError> {
        self.inner.users()
    }
    fn user_files(&mut self, user: &str) -> Result<Vec<(UserFile, FileStat)>, SourceError> {
        self.inner.user_files(user)
    }
    fn fetch_user_files(
        &mut self,
        user: &str,
        items: &[UserFile],
        sink: &mut dyn FileSink,
    ) -> Result<(), SourceError> {
        self.inner.fetch_user_files(user, items, sink)
    }
    fn extra_user_files(&mut self, user: &str) -> Result<Vec<(String, FileStat)>, SourceError> {
        self.inner.extra_user_files(user)
    }
    fn fetch_extra_user_file(
        &mut self,
        user: &str,
        name: &str,
        sink: &mut dyn FileSink,
    ) -> Result<(), SourceError> {
        self.inner.fetch_extra_user_file(user, name, sink)
    }
    fn serves_expunge(&self) -> bool {
        self.inner.serves_expunge()
    }
    fn folders(&mut self, user: &str) -> Result<Vec<FolderStatus>, SourceError> {
        self.inner.folders(user)
    }
    fn folder_meta_stat(
        &mut self,
        user: &str,
        folder: &str,
    ) -> Result<(Vec<(MetaFile, FileStat)>, FolderId), SourceError> {
        self.inner.folder_meta_stat(user, folder)
    }
    fn fetch_folder_meta(
        &mut self,
        user: &str,
        folder: &str,
        items: &[MetaFile],
        sink: &mut dyn FileSink,
    ) -> Result<FolderId, SourceError> {
        self.inner.fetch_folder_meta(user, folder, items, sink)
    }
    fn fetch_messages(
        &mut self,
        user: &str,
        folder: &str,
        uids: &[u32],
        sink: &mut dyn FileSink,
    ) -> Result<FolderId, SourceError> {
        self.inner.fetch_messages(user, folder, uids, sink)
    }
}
