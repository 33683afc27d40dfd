//! The server loop against hostile or broken clients: it answers with a
//! clear NO or closes that one connection, never panics, and keeps serving
//! everyone else.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mailvault::protocol::client::{Client, ClientOptions};
use mailvault::protocol::listen::{bind, ListenOptions, ServerHandle, SourceFactory};
use mailvault::protocol::memory::{MemoryFile, MemoryFolder, MemorySource, MemoryUser};
use mailvault::protocol::server::{serve_connection, ServerOptions};
use mailvault::source::Source;
use proptest::prelude::*;

const SLOT: &str = "backup.example";
const BIG: usize = 16 * 1024 * 1024;

fn source() -> MemorySource {
    let file = |bytes: Vec<u8>| MemoryFile {
        mtime: 1,
        inode: 2,
        bytes,
    };
    MemorySource {
        users: vec![MemoryUser {
            name: "u".into(),
            files: BTreeMap::new(),
            folders: vec![MemoryFolder {
                name: "INBOX".into(),
                uniqueid: "id-1".into(),
                jmapid: "P-1".into(),
                meta: BTreeMap::new(),
                messages: BTreeMap::from([
                    (1, file(b"small".to_vec())),
                    (2, file(vec![b'x'; BIG])),
                ]),
            }],
        }],
    }
}

fn start(listen: ListenOptions) -> ServerHandle {
    let src = source();
    let factory: Arc<dyn SourceFactory> =
        Arc::new(move || Ok(Box::new(src.clone()) as Box<dyn Source + Send>));
    bind("127.0.0.1:0", factory, listen).unwrap()
}

fn default_server() -> ServerHandle {
    start(ListenOptions::new(ServerOptions::new(SLOT)))
}

fn raw(server: &ServerHandle) -> TcpStream {
    let stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

fn everything(mut stream: TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// Another client is served normally.
fn still_serving(server: &ServerHandle) {
    let mut options = ClientOptions::new(SLOT);
    options.retries = 0;
    let mut client = Client::connect(&server.local_addr().to_string(), &options).unwrap();
    let mut sink = Vec::new();
    client.ping().unwrap();
    assert_eq!(client.users().unwrap(), ["u"]);
    let mut collect = Keep(&mut sink);
    client
        .fetch_messages("u", "INBOX", &[1], &mut collect)
        .unwrap();
    assert_eq!(sink, b"small");
}

struct Keep<'a>(&'a mut Vec<u8>);

impl mailvault::source::FileSink for Keep<'_> {
    fn file(
        &mut self,
        _: &mailvault::source::FileHead,
        body: &mut dyn Read,
    ) -> Result<(), mailvault::source::SinkError> {
        body.read_to_end(self.0)?;
        Ok(())
    }
    fn verified(
        &mut self,
        _: &mailvault::source::FileHead,
        _: mailvault::formats::Guid,
    ) -> Result<(), mailvault::source::SinkError> {
        Ok(())
    }
    fn missing(
        &mut self,
        _: &str,
        _: &mailvault::source::ItemFailure,
    ) -> Result<(), mailvault::source::SinkError> {
        Ok(())
    }
}

#[test]
fn a_one_gigabyte_line_is_cut_off_early_without_being_buffered() {
    let server = default_server();
    let mut stream = raw(&server);
    let chunk = vec![b'A'; 64 * 1024];
    let mut sent = 0usize;
    while sent < 1 << 30 {
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 1 << 30, "the server read a whole gigabyte");
    still_serving(&server);
    let closed = || server.stats().closed_on_error.load(Ordering::SeqCst);
    for _ in 0..100 {
        if closed() > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(closed(), 1, "closed by us, for the endless word");
    server.shutdown();
}

#[test]
fn an_oversized_literal_is_refused_before_go_ahead() {
    let server = default_server();
    let mut stream = raw(&server);
    stream
        .write_all(format!("FMETA {SLOT} u {{99999999}}\r\n").as_bytes())
        .unwrap();
    assert_eq!(everything(stream), b"", "closed without an invitation");
    still_serving(&server);
    server.shutdown();
}

#[test]
fn a_literal_that_lies_about_its_size_ends_the_connection() {
    let server = default_server();
    let mut stream = raw(&server);
    stream
        .write_all(format!("FMETA {SLOT} u {{10}}\r\nabc").as_bytes())
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(everything(stream), b"+ go ahead\r\n");
    still_serving(&server);
    server.shutdown();
}

#[test]
fn a_client_that_hangs_up_mid_data_only_ends_its_own_connection() {
    let server = default_server();
    let mut stream = raw(&server);
    stream
        .write_all(format!("FDATA {SLOT} u INBOX 2 2 2\n").as_bytes())
        .unwrap();
    let mut head = [0u8; 4096];
    stream.read_exact(&mut head).unwrap();
    assert!(head.starts_with(b"OK\nDATA 2 16777216 1 2\n"));
    drop(stream);
    still_serving(&server);
    server.shutdown();
}

#[test]
fn garbage_and_empty_lines_get_no_then_quit_still_works() {
    let server = default_server();
    let mut stream = raw(&server);
    stream
        .write_all(b"\n\n(((\n\"\x00\xff\nBOGUS\n{5}\nQUIT\n")
        .unwrap();
    let reply = String::from_utf8(everything(stream)).unwrap();
    let lines: Vec<&str> = reply.lines().collect();
    assert!(lines.len() >= 3, "{reply:?}");
    let (last, rest) = lines.split_last().unwrap();
    assert!(rest.iter().all(|l| l.starts_with("NO ")), "{reply:?}");
    assert_eq!(*last, "OK", "QUIT was still understood");
    still_serving(&server);
    server.shutdown();
}

#[test]
fn the_connection_cap_and_the_allow_list_are_enforced() {
    let mut capped = ListenOptions::new(ServerOptions::new(SLOT));
    capped.max_connections = 1;
    let server = start(capped);
    let first = raw(&server);
    (&first).write_all(b"PING\n").unwrap();
    let mut ok = [0u8; 13];
    (&first).read_exact(&mut ok).unwrap();
    let second = raw(&server);
    assert_eq!(everything(second), b"NO too many connections\n");
    drop(first);
    server.shutdown();

    let mut listen = ListenOptions::new(ServerOptions::new(SLOT));
    listen.allow = vec!["10.0.0.0/8".parse().unwrap()];
    let server = start(listen);
    let mut stream = raw(&server);
    let _ = stream.write_all(b"PING\n");
    assert_eq!(everything(stream), b"");
    assert_eq!(server.stats().refused.load(Ordering::SeqCst), 1);
    server.shutdown();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_requests_never_panic_the_server(input in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut out = Vec::new();
        let mut src = source();
        let _ = serve_connection(&input[..], &mut out, &mut src, &ServerOptions::new(SLOT));
    }

    #[test]
    fn plausible_requests_never_panic_the_server(
        words in proptest::collection::vec(
            prop::sample::select(vec!["FDATA", "FMETA", "META", "FMULTISTATUS", "USERS", "PING",
                "backup.example", "u", "INBOX", "\"IN BOX\"", "{3}\r\nabc", "{2+}\r\nxy", "1", "2",
                "header", "seen", "\n", "\r\n", " ", "%", "\"", "(", "AUTH", "PROOF"]),
            0..30),
    ) {
        let input: String = words.join(" ");
        let mut out = Vec::new();
        let mut src = source();
        let mut options = ServerOptions::new(SLOT);
        options.secret = Some(b"k".to_vec());
        let _ = serve_connection(input.as_bytes(), &mut out, &mut src, &options);
        let _ = serve_connection(input.as_bytes(), &mut out, &mut src, &ServerOptions::new(SLOT));
    }
}
