//! The client against our own server: pipelined FDATA batches, the AUTH
//! extension, reconnecting after the server dropped an idle connection.

mod common;
mod protocol_support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mailvault::protocol::client::{Client, ClientOptions};
use mailvault::protocol::listen::{bind, ListenOptions, SourceFactory};
use mailvault::protocol::memory::MemorySource;
use mailvault::protocol::server::{serve_connection, ServerOptions};
use mailvault::source::{Source, SourceError};
use protocol_support::*;

fn factory(source: MemorySource) -> Arc<dyn SourceFactory> {
    Arc::new(move || Ok(Box::new(source.clone()) as Box<dyn Source + Send>))
}

fn options() -> ClientOptions {
    let mut options = ClientOptions::new(SLOT);
    options.retries = 0;
    options.io_timeout = std::time::Duration::from_secs(10);
    options
}

/// A server that answers request k only once request k+1 has arrived, or
/// after 300 ms of silence; it counts those silences. A pipelining client
/// makes it wait only for the last request.
fn demanding_server(source: MemorySource, silences: Arc<AtomicUsize>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut line = Vec::new();
        loop {
            let arrived = match reader.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    pending.push(std::mem::take(&mut line));
                    true
                }
                Err(_) => false,
            };
            if !arrived && !pending.is_empty() {
                silences.fetch_add(1, Ordering::SeqCst);
            }
            if pending.len() >= 2 || (!arrived && !pending.is_empty()) {
                let request = pending.remove(0);
                let mut out = Vec::new();
                let mut source = source.clone();
                serve_connection(
                    &request[..],
                    &mut out,
                    &mut source,
                    &ServerOptions::new(SLOT),
                )
                .unwrap();
                writer.write_all(&out).unwrap();
            }
        }
    });
    addr
}

#[test]
fn fdata_batches_are_pipelined_and_arrive_in_order() {
    let Some(dir) = fixtures("fdata_batches_are_pipelined_and_arrive_in_order") else {
        return;
    };
    let silences = Arc::new(AtomicUsize::new(0));
    let addr = demanding_server(run1_source(&dir), Arc::clone(&silences));
    let mut options = options();
    options.fdata_batch = 2;
    let mut client = Client::connect(&addr.to_string(), &options).unwrap();
    let mut sink = Collect::default();
    let uids = [1, 2, 3, 4, 5, 6, 7];
    let id = client
        .fetch_messages("alice", "INBOX", &uids, &mut sink)
        .unwrap();
    assert_eq!(id.uniqueid, "56f0f8a8-6f74-4ae9-a1d8-b4be690984d7");
    assert_eq!(sink.order, ["1", "2", "3", "4", "5", "6", "7"]);
    assert_eq!(sink.files.len(), 6, "uid 7 does not exist in run 1");
    assert_eq!(client.counters().commands_sent, 4, "7 uids in batches of 2");
    assert_eq!(
        silences.load(Ordering::SeqCst),
        1,
        "only the last batch had no successor on the wire"
    );
    let body_bytes: u64 = sink.files.iter().map(|f| f.stat.size).sum();
    assert!(client.counters().bytes_received > body_bytes);
}

#[test]
fn a_refused_batch_leaves_the_connection_usable() {
    let Some(dir) = fixtures("a_refused_batch_leaves_the_connection_usable") else {
        return;
    };
    let server = bind(
        "127.0.0.1:0",
        factory(run1_source(&dir)),
        ListenOptions::new(ServerOptions::new(SLOT)),
    )
    .unwrap();
    let mut options = options();
    options.fdata_batch = 1;
    let mut client = Client::connect(&server.local_addr().to_string(), &options).unwrap();
    let err = client
        .fetch_messages("alice", "INBOX.nope", &[1, 2, 3], &mut Collect::default())
        .unwrap_err();
    assert!(
        matches!(&err, SourceError::No(t) if t == "no such folder INBOX.nope"),
        "{err}"
    );
    assert_eq!(client.users().unwrap(), ["alice", "bob", "carol.smith"]);
    assert_eq!(client.counters().connections, 1);
    server.shutdown();
}

#[test]
fn a_connection_dropped_while_idle_is_replaced_transparently() {
    let Some(dir) = fixtures("a_connection_dropped_while_idle_is_replaced_transparently") else {
        return;
    };
    let mut listen = ListenOptions::new(ServerOptions::new(SLOT));
    listen.idle_timeout = Duration::from_millis(150);
    let server = bind("127.0.0.1:0", factory(run1_source(&dir)), listen).unwrap();
    let mut client = Client::connect(&server.local_addr().to_string(), &options()).unwrap();
    client.ping().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let folders = client.folders("bob").unwrap();
    assert_eq!(folders.len(), 4);
    assert_eq!(client.counters().connections, 2, "one reconnection");
    server.shutdown();
}

#[test]
fn auth_succeeds_with_the_shared_secret_only() {
    let Some(dir) = fixtures("auth_succeeds_with_the_shared_secret_only") else {
        return;
    };
    let mut server_options = ServerOptions::new(SLOT);
    server_options.secret = Some(b"s3cret".to_vec());
    let server = bind(
        "127.0.0.1:0",
        factory(run1_source(&dir)),
        ListenOptions::new(server_options),
    )
    .unwrap();
    let addr = server.local_addr().to_string();

    let mut good = options();
    good.secret = Some(b"s3cret".to_vec());
    let mut client = Client::connect(&addr, &good).unwrap();
    assert_eq!(client.users().unwrap().len(), 3);

    let mut bad = options();
    bad.secret = Some(b"guess".to_vec());
    let err = Client::connect(&addr, &bad).err().unwrap();
    assert!(matches!(err, SourceError::Auth(_)), "{err}");

    let mut anonymous = Client::connect(&addr, &options()).unwrap();
    anonymous.ping().unwrap();
    let err = anonymous.users().unwrap_err();
    assert!(
        matches!(&err, SourceError::No(t) if t == "authentication required"),
        "{err}"
    );
    server.shutdown();
}

#[test]
fn a_stock_server_refuses_auth_clearly() {
    let Some(dir) = fixtures("a_stock_server_refuses_auth_clearly") else {
        return;
    };
    let server = bind(
        "127.0.0.1:0",
        factory(run1_source(&dir)),
        ListenOptions::new(ServerOptions::new(SLOT)),
    )
    .unwrap();
    let mut with_secret = options();
    with_secret.secret = Some(b"s3cret".to_vec());
    let err = Client::connect(&server.local_addr().to_string(), &with_secret)
        .err()
        .unwrap();
    assert!(
        matches!(&err, SourceError::Auth(t) if t.contains("unknown command AUTH")),
        "{err}"
    );
    server.shutdown();
}

#[test]
fn connecting_to_nothing_fails_after_the_configured_retries() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut options = options();
    options.retries = 2;
    options.retry_delay = std::time::Duration::from_millis(10);
    let started = std::time::Instant::now();
    let err = Client::connect(&addr.to_string(), &options).err().unwrap();
    assert!(matches!(err, SourceError::Io { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(started.elapsed() >= std::time::Duration::from_millis(20));
}
