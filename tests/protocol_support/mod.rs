//! Shared by the `protocol_*` tests: the captured fixtures, a collecting
//! sink, decoding a captured reply the way its request asks, a server that
//! replays captured replies, and an in-memory source built from the captures.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use mailvault::formats::Guid;
use mailvault::protocol::codec;
use mailvault::protocol::memory::{MemoryFile, MemoryFolder, MemorySource, MemoryUser};
use mailvault::protocol::reply::ReplyReader;
use mailvault::source::{
    FileHead, FileSink, FileStat, FolderId, FolderStatus, ItemFailure, MetaFile, SinkError,
    SourceError, UserFile,
};

pub const SLOT: &str = "imap-a.example.net";

/// The fixture folder, or `None` (after saying so loudly) when absent.
pub fn fixtures(test: &str) -> Option<PathBuf> {
    crate::common::shared_fixtures_for(test)
}

/// `NN-name.request` / `.response` pairs of `wire/`, in file order.
pub fn wire_pairs(dir: &std::path::Path) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let wire = dir.join("wire");
    let mut names: Vec<String> = std::fs::read_dir(&wire)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".request").map(str::to_string)
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let req = std::fs::read(wire.join(format!("{n}.request"))).unwrap();
            let resp = std::fs::read(wire.join(format!("{n}.response"))).unwrap();
            (n, req, resp)
        })
        .collect()
}

/// One received file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub name: String,
    pub stat: FileStat,
    pub bytes: Vec<u8>,
    pub sha1: Guid,
}

/// Keeps every verified file and every missing item, in order.
#[derive(Debug, Default)]
pub struct Collect {
    pending: Option<Vec<u8>>,
    pub files: Vec<Got>,
    pub missing: Vec<(String, ItemFailure)>,
    /// Item names in the order the sink heard of them.
    pub order: Vec<String>,
}

impl FileSink for Collect {
    fn file(&mut self, _head: &FileHead, body: &mut dyn Read) -> Result<(), SinkError> {
        let mut bytes = Vec::new();
        body.read_to_end(&mut bytes)?;
        self.pending = Some(bytes);
        Ok(())
    }
    fn verified(&mut self, head: &FileHead, sha1: Guid) -> Result<(), SinkError> {
        let bytes = self
            .pending
            .take()
            .ok_or_else(|| SinkError::Refused("verified without a file".into()))?;
        assert_eq!(bytes.len() as u64, head.stat.size);
        self.order.push(head.name.clone());
        self.files.push(Got {
            name: head.name.clone(),
            stat: head.stat,
            bytes,
            sha1,
        });
        Ok(())
    }
    fn missing(&mut self, name: &str, why: &ItemFailure) -> Result<(), SinkError> {
        self.order.push(name.to_string());
        self.missing.push((name.to_string(), why.clone()));
        Ok(())
    }
}

/// What a request means, recovered from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Ping,
    Users,
    UserStats {
        user: String,
    },
    UserFiles {
        user: String,
        items: Vec<UserFile>,
    },
    Folders {
        user: String,
    },
    MetaStats {
        user: String,
        folder: String,
    },
    MetaFiles {
        user: String,
        folder: String,
        items: Vec<MetaFile>,
    },
    Messages {
        user: String,
        folder: String,
        uids: Vec<u32>,
    },
}

/// Tokens of a well-formed request line: split on spaces, a `"..."` token
/// kept whole, the arguments %-decoded.
fn request_tokens(line: &[u8]) -> Vec<String> {
    let text = String::from_utf8(line.to_vec()).unwrap();
    let text = text.trim_end_matches(['\r', '\n']);
    let mut tokens = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap();
            tokens.push(quoted[..end].to_string());
            rest = quoted[end + 1..].trim_start_matches(' ');
        } else {
            let (tok, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            tokens.push(String::from_utf8(codec::decode(tok.as_bytes())).unwrap());
            rest = tail;
        }
    }
    tokens
}

/// The call a well-formed request line makes.
pub fn parse_call(line: &[u8]) -> Call {
    let t = request_tokens(line);
    let cmd = t[0].to_ascii_uppercase();
    let arg = |i: usize| t[i].clone();
    match (cmd.as_str(), t.len()) {
        ("PING", _) => Call::Ping,
        ("USERS", _) => Call::Users,
        ("META", 3) => Call::UserStats { user: arg(2) },
        ("META", _) => Call::UserFiles {
            user: arg(2),
            items: t[3..]
                .iter()
                .filter_map(|i| UserFile::from_name(i))
                .collect(),
        },
        ("FMULTISTATUS", _) => Call::Folders { user: arg(2) },
        ("FMETA", 4) => Call::MetaStats {
            user: arg(2),
            folder: arg(3),
        },
        ("FMETA", _) => Call::MetaFiles {
            user: arg(2),
            folder: arg(3),
            items: t[4..]
                .iter()
                .filter_map(|i| MetaFile::from_name(i))
                .collect(),
        },
        ("FDATA", _) => Call::Messages {
            user: arg(2),
            folder: arg(3),
            uids: t[4..].iter().map(|u| u.parse().unwrap()).collect(),
        },
        _ => panic!("not a well-formed request: {t:?}"),
    }
}

/// What a reply said, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Ping,
    Users(Vec<String>),
    UserStats(Vec<(UserFile, FileStat)>),
    Folders(Vec<FolderStatus>),
    MetaStats(Vec<(MetaFile, FileStat)>, FolderId),
    Files {
        files: Vec<Got>,
        missing: Vec<(String, ItemFailure)>,
        order: Vec<String>,
        id: Option<FolderId>,
    },
}

pub fn collected(sink: Collect, id: Option<FolderId>) -> Decoded {
    Decoded::Files {
        files: sink.files,
        missing: sink.missing,
        order: sink.order,
        id,
    }
}

/// Decode the reply to `call` from `reader`, exactly as the client would.
pub fn decode_reply<R: BufRead>(
    call: &Call,
    reader: &mut ReplyReader<R>,
) -> Result<Decoded, SourceError> {
    let names = |items: Vec<&str>| items.into_iter().map(String::from).collect::<Vec<_>>();
    let mut sink = Collect::default();
    Ok(match call {
        Call::Ping => reader.read_ping().map(|()| Decoded::Ping)?,
        Call::Users => Decoded::Users(reader.read_users()?),
        Call::UserStats { .. } => Decoded::UserStats(reader.read_user_stats()?),
        Call::UserFiles { items, .. } => {
            let expected = names(items.iter().map(|i| i.name()).collect());
            let rest = reader.read_files("META", &expected, &mut sink)?;
            assert!(rest.is_empty());
            collected(sink, None)
        }
        Call::Folders { .. } => Decoded::Folders(reader.read_folders()?),
        Call::MetaStats { .. } => {
            let (stats, id) = reader.read_meta_stats()?;
            Decoded::MetaStats(stats, id)
        }
        Call::MetaFiles { items, .. } => {
            let expected = names(items.iter().map(|i| i.name()).collect());
            let id = reader.read_folder_files("FMETA", &expected, &mut sink)?;
            collected(sink, Some(id))
        }
        Call::Messages { uids, .. } => {
            let expected: Vec<String> = uids.iter().map(u32::to_string).collect();
            let id = reader.read_folder_files("FDATA", &expected, &mut sink)?;
            collected(sink, Some(id))
        }
    })
}

/// A recorded conversation: each request line with the exact bytes of its reply.
pub fn split_session(c2s: &[u8], s2c: &[u8]) -> Vec<(Vec<u8>, Vec<u8>, Decoded)> {
    let mut reader = ReplyReader::new(s2c);
    let mut out = Vec::new();
    for line in c2s.split_inclusive(|&b| b == b'\n') {
        let before = reader.get_ref().len();
        let decoded = decode_reply(&parse_call(line), &mut reader).unwrap();
        let start = s2c.len() - before;
        let end = s2c.len() - reader.get_ref().len();
        out.push((line.to_vec(), s2c[start..end].to_vec(), decoded));
    }
    assert!(
        reader.get_ref().is_empty(),
        "the whole session was consumed"
    );
    out
}

/// `(who, c2s, s2c)` for each connection of a recorded run, in order.
pub fn session_files(dir: &std::path::Path, run: &str) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let run_dir = dir.join("wire/sessions").join(run);
    let mut names: Vec<String> = std::fs::read_dir(&run_dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".c2s").map(str::to_string)
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let c2s = std::fs::read(run_dir.join(format!("{n}.c2s"))).unwrap();
            let s2c = std::fs::read(run_dir.join(format!("{n}.s2c"))).unwrap();
            (n, c2s, s2c)
        })
        .collect()
}

/// Answers each request line with the recorded reply to that exact line;
/// anything else gets a `NO` that names it, so a client whose requests are
/// not byte-identical to the Perl client's fails loudly.
pub fn replay_server(replies: HashMap<Vec<u8>, Vec<u8>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let replies = replies.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = Vec::new();
                while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                    let reply = replies.get(&line).cloned().unwrap_or_else(|| {
                        format!(
                            "NO replay has no answer for {:?}\n",
                            String::from_utf8_lossy(&line)
                        )
                        .into_bytes()
                    });
                    if stream.write_all(&reply).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    addr
}

fn memory_file(got: &Got) -> MemoryFile {
    MemoryFile {
        mtime: got.stat.mtime,
        inode: got.stat.inode,
        bytes: got.bytes.clone(),
    }
}

/// The server's state at the time of run 1, rebuilt from what it sent: the
/// run-1 sessions (every folder's meta files, the messages fetched) plus the
/// wire captures 01-39 (the messages the sessions did not need).
pub fn run1_source(dir: &std::path::Path) -> MemorySource {
    let mut exchanges: Vec<(Call, Decoded)> = Vec::new();
    for (_, c2s, s2c) in session_files(dir, "run1-plain") {
        for (line, _, decoded) in split_session(&c2s, &s2c) {
            exchanges.push((parse_call(&line), decoded));
        }
    }
    for (name, req, resp) in wire_pairs(dir) {
        if !resp.starts_with(b"OK\n") || name.as_str() >= "39" || name.starts_with("02") {
            continue;
        }
        let call = parse_call(&req);
        let decoded = decode_reply(&call, &mut ReplyReader::new(&resp[..])).unwrap();
        exchanges.push((call, decoded));
    }
    let mut source = MemorySource::default();
    for (call, decoded) in &exchanges {
        apply(&mut source, call, decoded);
    }
    source
}

fn user_mut<'a>(source: &'a mut MemorySource, name: &str) -> &'a mut MemoryUser {
    let at = match source.users.iter().position(|u| u.name == name) {
        Some(at) => at,
        None => {
            source.users.push(MemoryUser {
                name: name.to_string(),
                ..MemoryUser::default()
            });
            source.users.len() - 1
        }
    };
    &mut source.users[at]
}

fn folder_mut<'a>(source: &'a mut MemorySource, user: &str, folder: &str) -> &'a mut MemoryFolder {
    user_mut(source, user)
        .folders
        .iter_mut()
        .find(|f| f.name == folder)
        .unwrap_or_else(|| panic!("{user} {folder} fetched before FMULTISTATUS listed it"))
}

fn apply(source: &mut MemorySource, call: &Call, decoded: &Decoded) {
    match (call, decoded) {
        (Call::Users, Decoded::Users(users)) => users.iter().for_each(|u| {
            user_mut(source, u);
        }),
        (Call::UserFiles { user, .. }, Decoded::Files { files, .. }) if !files.is_empty() => {
            for got in files {
                let file = UserFile::from_name(&got.name).unwrap();
                user_mut(source, user).files.insert(file, memory_file(got));
            }
        }
        (Call::Folders { user }, Decoded::Folders(folders)) if !folders.is_empty() => {
            let u = user_mut(source, user);
            for f in folders {
                if !u.folders.iter().any(|known| known.name == f.name) {
                    u.folders.push(MemoryFolder {
                        name: f.name.clone(),
                        uniqueid: f.uniqueid.clone(),
                        jmapid: f.jmapid.clone(),
                        ..MemoryFolder::default()
                    });
                }
            }
        }
        (Call::MetaFiles { user, folder, .. }, Decoded::Files { files, .. }) => {
            let f = folder_mut(source, user, folder);
            for got in files {
                let file = MetaFile::from_name(&got.name).unwrap();
                f.meta.insert(file, memory_file(got));
            }
        }
        (Call::Messages { user, folder, .. }, Decoded::Files { files, .. }) => {
            let f = folder_mut(source, user, folder);
            for got in files {
                f.messages
                    .insert(got.name.parse().unwrap(), memory_file(got));
            }
        }
        _ => {}
    }
}

/// The rows of one table in a `sqlite3 .dump`, values split on commas and
/// unquoted (the fixture values hold no commas).
pub fn sql_rows(dump: &str, table: &str) -> Vec<Vec<String>> {
    let prefix = format!("INSERT INTO {table} VALUES(");
    dump.lines()
        .filter_map(|l| l.strip_prefix(&prefix)?.strip_suffix(");"))
        .map(|values| {
            values
                .split(',')
                .map(|v| v.trim_matches('\'').to_string())
                .collect()
        })
        .collect()
}
