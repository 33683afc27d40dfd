//! Accepting connections for the server loop: a thread per connection up to
//! a cap, an allow-list of client networks, an idle timeout (backupcyrusd's
//! is 600 s). Each connection gets its own [`Source`] from a factory, so a
//! misbehaving client only ever ends its own connection.

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::server::{serve_connection, ServerOptions};
use crate::source::{Source, SourceError};

/// Makes the source that serves one connection.
pub trait SourceFactory: Send + Sync + 'static {
    fn open(&self) -> Result<Box<dyn Source + Send>, SourceError>;
}

impl<F> SourceFactory for F
where
    F: Fn() -> Result<Box<dyn Source + Send>, SourceError> + Send + Sync + 'static,
{
    fn open(&self) -> Result<Box<dyn Source + Send>, SourceError> {
        self()
    }
}

/// A network clients may connect from: `10.1.0.0/16`, `::1`, `192.0.2.7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedNet {
    addr: IpAddr,
    prefix: u8,
}

/// An allow-list entry that is not an address or `address/prefix`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an address or network: {0:?}")]
pub struct BadNet(pub String);

impl FromStr for AllowedNet {
    type Err = BadNet;

    fn from_str(s: &str) -> Result<AllowedNet, BadNet> {
        let bad = || BadNet(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(AllowedNet { addr, prefix })
    }
}

impl fmt::Display for AllowedNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl AllowedNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, bits: u32, prefix: u8) -> bool {
    let shift = bits.saturating_sub(u32::from(prefix));
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

/// How the listener behaves.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    pub server: ServerOptions,
    /// Connections served at once; more are told `NO too many connections`.
    pub max_connections: usize,
    /// Empty means everyone (backupcyrusd's stance: trust the network).
    pub allow: Vec<AllowedNet>,
    pub idle_timeout: Duration,
}

impl ListenOptions {
    pub fn new(server: ServerOptions) -> ListenOptions {
        ListenOptions {
            server,
            max_connections: 64,
            allow: Vec::new(),
            idle_timeout: Duration::from_secs(600),
        }
    }

    fn allows(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(ip))
    }
}

/// What happened to connections so far.
#[derive(Debug, Default)]
pub struct ListenStats {
    pub active: AtomicUsize,
    pub accepted: AtomicU64,
    /// Refused for the allow-list or the cap.
    pub refused: AtomicU64,
    /// Closed by us for bad input or a failing source.
    pub closed_on_error: AtomicU64,
}

/// A running listener. Dropping it leaves it running; call
/// [`ServerHandle::shutdown`] to stop accepting.
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<ListenStats>,
    accept_thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> &ListenStats {
        &self.stats
    }

    /// Stop accepting; connections in progress finish on their own.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
                SocketAddr::V6(_) => IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

/// Bind `addr` and serve in the background.
pub fn bind(
    addr: impl ToSocketAddrs,
    factory: Arc<dyn SourceFactory>,
    options: ListenOptions,
) -> io::Result<ServerHandle> {
    listen(TcpListener::bind(addr)?, factory, options)
}

/// Serve connections from `listener` in the background.
pub fn listen(
    listener: TcpListener,
    factory: Arc<dyn SourceFactory>,
    options: ListenOptions,
) -> io::Result<ServerHandle> {
    let local_addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ListenStats::default());
    let accept_thread = {
        let (stop, stats) = (Arc::clone(&stop), Arc::clone(&stats));
        std::thread::Builder::new()
            .name(format!("listen {local_addr}"))
            .spawn(move || accept_loop(&listener, &factory, &options, &stop, &stats))?
    };
    Ok(ServerHandle {
        local_addr,
        stop,
        stats,
        accept_thread: Some(accept_thread),
    })
}

fn accept_loop(
    listener: &TcpListener,
    factory: &Arc<dyn SourceFactory>,
    options: &ListenOptions,
    stop: &AtomicBool,
    stats: &Arc<ListenStats>,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match stream {
            Ok(stream) => admit(stream, factory, options, stats),
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Counts a connection as active for as long as it lives.
struct ActiveGuard(Arc<ListenStats>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn admit(
    mut stream: TcpStream,
    factory: &Arc<dyn SourceFactory>,
    options: &ListenOptions,
    stats: &Arc<ListenStats>,
) {
    let peer = stream.peer_addr().ok();
    if !peer.is_some_and(|p| options.allows(p.ip())) {
        tracing::warn!(?peer, "refused: not in the allow-list");
        stats.refused.fetch_add(1, Ordering::SeqCst);
        return;
    }
    if stats.active.fetch_add(1, Ordering::SeqCst) >= options.max_connections {
        stats.active.fetch_sub(1, Ordering::SeqCst);
        stats.refused.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(?peer, "refused: too many connections");
        let _ = stream.write_all(b"NO too many connections\n");
        return;
    }
    stats.accepted.fetch_add(1, Ordering::SeqCst);
    let guard = ActiveGuard(Arc::clone(stats));
    let (factory, options) = (Arc::clone(factory), options.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("serve {peer:?}"))
        .spawn(move || {
            let _guard = guard;
            if let Err(e) = serve_tcp(stream, factory.as_ref(), &options) {
                tracing::warn!(?peer, error = %e, "connection closed on error");
                _guard.0.closed_on_error.fetch_add(1, Ordering::SeqCst);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(?peer, error = %e, "could not start a connection thread");
    }
}

fn serve_tcp(
    stream: TcpStream,
    factory: &dyn SourceFactory,
    options: &ListenOptions,
) -> Result<(), Box<dyn std::error::Error>> {
    // Replies end in a short DONE line after the bodies; with Nagle it waits
    // for the client's delayed ACK (~40 ms per command).
    stream.set_nodelay(true)?;
    let timeout = Some(options.idle_timeout).filter(|t| !t.is_zero());
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    let mut source = match factory.open() {
        Ok(source) => source,
        Err(e) => {
            let line = super::codec::no_line(&format!("source unavailable: {e}"));
            (&stream).write_all(line.as_bytes())?;
            return Err(e.into());
        }
    };
    let reader = stream.try_clone()?;
    serve_connection(reader, stream, source.as_mut(), &options.server)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_entries_match_their_networks() {
        let net: AllowedNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let host: AllowedNet = "::1".parse().unwrap();
        assert!(host.contains("::1".parse().unwrap()));
        assert!(!host.contains("::2".parse().unwrap()));
        let all: AllowedNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<AllowedNet>().is_err());
        assert!("example.net".parse::<AllowedNet>().is_err());
    }
}
