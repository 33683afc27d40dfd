//! The wire codec, pure: %XX escaping, request lines, reply lines.
//!
//! Requests go one per LF-terminated line, tokens separated by single spaces.
//! Variable tokens are %XX-escaped with uppercase hex; the two sides disagree
//! on the safe set (the Perl client keeps `,`, the server keeps `~`), which is
//! harmless because both decode any `%XX`. We escape bytes >= 0x80 as one
//! `%XX` each, where backupcyrusd's C prints `%FFFFFFxx`.
//!
//! Replies are LF-terminated lines: `OK`, a command-level `NO <text>` (no
//! `DONE` after it), list lines, `DATA` heads followed by raw bodies, and a
//! final `DONE <CMD> ...`. Bodies are not this module's business: the reader
//! counts bytes (see `reply.rs`).

use crate::formats::Guid;
use crate::source::{FileHead, FileStat, FolderId, FolderStatus, ItemFailure, MetaFile, UserFile};

/// The longest line either side accepts. Real lines are under 200 bytes;
/// an FDATA batch of 1024 UIDs is about 11 KiB.
pub const MAX_LINE: usize = 64 * 1024;

/// The largest body a DATA line may announce. Streams are never buffered, so
/// this only bounds how long a lying server can keep us reading.
pub const MAX_BODY_SIZE: u64 = 1 << 36;

/// backupcyrusd's usual TCP port.
pub const DEFAULT_PORT: u16 = 2901;

/// A line that does not say what its first word promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("malformed {what} line: {line:?}")]
    Malformed { what: &'static str, line: String },
    #[error("bad {field} {value:?} in {line:?}")]
    BadNumber {
        field: &'static str,
        value: String,
        line: String,
    },
    #[error("DATA {name} announces {size} bytes, over the limit of {MAX_BODY_SIZE}")]
    TooBig { name: String, size: u64 },
    #[error("token {0:?} is not UTF-8 once %-decoded")]
    NotUtf8(String),
}

fn is_client_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b',')
}

fn is_server_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn encode_with(bytes: &[u8], safe: fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if safe(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escape as the Perl client does: everything outside `[A-Za-z0-9-_.,]`.
pub fn encode_client(bytes: &[u8]) -> String {
    encode_with(bytes, is_client_safe)
}

/// Escape as backupcyrusd does: everything outside `[A-Za-z0-9-._~]`.
pub fn encode_server(bytes: &[u8]) -> String {
    encode_with(bytes, is_server_safe)
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Decode every `%XX` (either case); a `%` not followed by two hex digits
/// stays as it is.
pub fn decode(token: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    let mut i = 0;
    while let Some(&b) = token.get(i) {
        let pair = (token.get(i + 1).copied().and_then(hex_value))
            .zip(token.get(i + 2).copied().and_then(hex_value));
        match (b, pair) {
            (b'%', Some((hi, lo))) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// [`decode`], then insist on UTF-8 (folder and user names are text).
pub fn decode_utf8(token: &[u8]) -> Result<String, CodecError> {
    String::from_utf8(decode(token))
        .map_err(|_| CodecError::NotUtf8(String::from_utf8_lossy(token).into_owned()))
}

/// One request, as the client sends it. Empty `items` asks for stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    Ping,
    Quit,
    Users,
    Meta {
        user: &'a str,
        items: &'a [UserFile],
    },
    FMultiStatus {
        user: &'a str,
    },
    FMeta {
        user: &'a str,
        folder: &'a str,
        items: &'a [MetaFile],
    },
    FData {
        user: &'a str,
        folder: &'a str,
        uids: &'a [u32],
    },
    /// Our extension, see `auth.rs`.
    Auth {
        nonce: &'a str,
    },
    /// Our extension, see `auth.rs`.
    Proof {
        proof: &'a str,
    },
}

impl Request<'_> {
    /// The command word, which also ends the reply (`DONE <word>`).
    pub fn command(&self) -> &'static str {
        match self {
            Request::Ping => "PING",
            Request::Quit => "QUIT",
            Request::Users => "USERS",
            Request::Meta { .. } => "META",
            Request::FMultiStatus { .. } => "FMULTISTATUS",
            Request::FMeta { .. } => "FMETA",
            Request::FData { .. } => "FDATA",
            Request::Auth { .. } => "AUTH",
            Request::Proof { .. } => "PROOF",
        }
    }

    fn arguments(&self) -> Vec<String> {
        let enc = |s: &str| encode_client(s.as_bytes());
        match *self {
            Request::Ping | Request::Quit | Request::Users => vec![],
            Request::Meta { user, items } => std::iter::once(enc(user))
                .chain(items.iter().map(|i| i.name().to_string()))
                .collect(),
            Request::FMultiStatus { user } => vec![enc(user)],
            Request::FMeta {
                user,
                folder,
                items,
            } => [enc(user), enc(folder)]
                .into_iter()
                .chain(items.iter().map(|i| i.name().to_string()))
                .collect(),
            Request::FData { user, folder, uids } => [enc(user), enc(folder)]
                .into_iter()
                .chain(uids.iter().map(u32::to_string))
                .collect(),
            Request::Auth { nonce } => vec![enc(nonce)],
            Request::Proof { proof } => vec![enc(proof)],
        }
    }
}

/// The bytes of one request line, LF-terminated, the slot %-escaped like
/// every other variable token (as the Perl client does).
pub fn request_line(request: &Request<'_>, slot: &str) -> Vec<u8> {
    let mut line = request.command().to_string();
    if !matches!(request, Request::Ping | Request::Quit) {
        line.push(' ');
        line.push_str(&encode_client(slot.as_bytes()));
    }
    for arg in request.arguments() {
        line.push(' ');
        line.push_str(&arg);
    }
    line.push('\n');
    line.into_bytes()
}

/// One reply line, tokens %-decoded where they are names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyLine {
    /// `OK`, with any further tokens (our AUTH extension uses none either).
    Ok,
    /// `NO <text>`, the text exactly as sent (it may hold %-escapes).
    No(String),
    /// `DONE <tokens...>`, decoded: `DONE META`, `DONE FMETA <uid> <jmapid>`,
    /// `DONE <item> <sha1>`.
    Done(Vec<String>),
    Data(FileHead),
    /// `STAT [folder] <item> <size> <mtime> <inode>`; the folder appears
    /// only in FMULTISTATUS replies.
    Stat {
        folder: Option<String>,
        item: String,
        stat: FileStat,
    },
    Folder {
        name: String,
        uniqueid: String,
        jmapid: String,
    },
    User(String),
    /// Our AUTH extension's `NONCE <hex>` and `PROOF <hex>` lines.
    Value {
        key: String,
        value: String,
    },
}

fn lossy(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

fn malformed(what: &'static str, line: &[u8]) -> CodecError {
    CodecError::Malformed {
        what,
        line: lossy(line),
    }
}

fn digits(value: &[u8], max_len: usize) -> bool {
    !value.is_empty() && value.len() <= max_len && value.iter().all(u8::is_ascii_digit)
}

fn parse_u64(field: &'static str, value: &[u8], line: &[u8]) -> Result<u64, CodecError> {
    let bad = || CodecError::BadNumber {
        field,
        value: lossy(value),
        line: lossy(line),
    };
    if !digits(value, 20) {
        return Err(bad());
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)
}

fn parse_i64(field: &'static str, value: &[u8], line: &[u8]) -> Result<i64, CodecError> {
    let (negative, magnitude) = match value.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, value),
    };
    let n = parse_u64(field, magnitude, line)?;
    let bad = || CodecError::BadNumber {
        field,
        value: lossy(value),
        line: lossy(line),
    };
    let signed = if negative {
        -i128::from(n)
    } else {
        i128::from(n)
    };
    i64::try_from(signed).map_err(|_| bad())
}

fn parse_stat(fields: &[&[u8]], line: &[u8]) -> Result<FileStat, CodecError> {
    match fields {
        [size, mtime, inode] => Ok(FileStat {
            size: parse_u64("size", size, line)?,
            mtime: parse_i64("mtime", mtime, line)?,
            inode: parse_u64("inode", inode, line)?,
        }),
        _ => Err(malformed("stat", line)),
    }
}

fn decoded(token: &[u8]) -> Result<String, CodecError> {
    decode_utf8(token)
}

/// Split on single spaces, as the Perl client does.
pub fn tokens(line: &[u8]) -> Vec<&[u8]> {
    line.split(|&b| b == b' ').collect()
}

/// Parse one reply line (without its LF).
pub fn parse_reply_line(line: &[u8]) -> Result<ReplyLine, CodecError> {
    let toks = tokens(line);
    let (first, rest) = toks.split_first().ok_or_else(|| malformed("reply", line))?;
    match *first {
        b"OK" => Ok(ReplyLine::Ok),
        b"NO" => Ok(ReplyLine::No(lossy(line.get(3..).unwrap_or_default()))),
        b"DONE" => rest
            .iter()
            .map(|t| decoded(t))
            .collect::<Result<_, _>>()
            .map(ReplyLine::Done),
        b"DATA" => parse_data(rest, line).map(ReplyLine::Data),
        b"STAT" => parse_stat_line(rest, line),
        b"FOLDER" => match rest {
            [name, uniqueid, jmapid] => Ok(ReplyLine::Folder {
                name: decoded(name)?,
                uniqueid: decoded(uniqueid)?,
                jmapid: decoded(jmapid)?,
            }),
            _ => Err(malformed("FOLDER", line)),
        },
        b"USER" => match rest {
            [user] => Ok(ReplyLine::User(decoded(user)?)),
            _ => Err(malformed("USER", line)),
        },
        b"NONCE" | b"PROOF" => match rest {
            [value] => Ok(ReplyLine::Value {
                key: lossy(first),
                value: decoded(value)?,
            }),
            _ => Err(malformed("AUTH", line)),
        },
        _ => Err(malformed("reply", line)),
    }
}

fn parse_data(rest: &[&[u8]], line: &[u8]) -> Result<FileHead, CodecError> {
    let (name, numbers) = rest.split_first().ok_or_else(|| malformed("DATA", line))?;
    let head = FileHead {
        name: decoded(name)?,
        stat: parse_stat(numbers, line)?,
    };
    if head.stat.size > MAX_BODY_SIZE {
        return Err(CodecError::TooBig {
            name: head.name,
            size: head.stat.size,
        });
    }
    Ok(head)
}

fn parse_stat_line(rest: &[&[u8]], line: &[u8]) -> Result<ReplyLine, CodecError> {
    let (folder, item, numbers) = match rest {
        [item, a, b, c] => (None, item, [*a, *b, *c]),
        [folder, item, a, b, c] => (Some(decoded(folder)?), item, [*a, *b, *c]),
        _ => return Err(malformed("STAT", line)),
    };
    Ok(ReplyLine::Stat {
        folder,
        item: decoded(item)?,
        stat: parse_stat(&numbers, line)?,
    })
}

/// Split the text of a `NO` line inside a file list into the item it names
/// and why it failed. Text we do not recognise names no item.
pub fn parse_item_failure(text: &str) -> (String, ItemFailure) {
    let name = |rest: &str| String::from_utf8_lossy(&decode(rest.as_bytes())).into_owned();
    if let Some(rest) = text.strip_prefix("no such file ") {
        (name(rest), ItemFailure::NoSuchFile)
    } else if let Some(rest) = text.strip_prefix("failed to open file ") {
        (name(rest), ItemFailure::FailedToOpen)
    } else if let Some(rest) = text.strip_prefix("empty ") {
        (name(rest), ItemFailure::Empty)
    } else {
        (String::new(), ItemFailure::Other(text.to_string()))
    }
}

// ---- Server-side formatting: exactly backupcyrusd's shapes. ----

fn enc(s: &str) -> String {
    encode_server(s.as_bytes())
}

fn numbers(stat: &FileStat) -> String {
    format!("{} {} {}", stat.size, stat.mtime, stat.inode)
}

/// `DATA <name> <size> <mtime> <inode>\n`
pub fn data_line(head: &FileHead) -> String {
    format!("DATA {} {}\n", enc(&head.name), numbers(&head.stat))
}

/// `DONE <name> <sha1>\n`, sha1 in lowercase as the Perl client requires.
pub fn item_done_line(name: &str, sha1: &Guid) -> String {
    format!("DONE {} {}\n", enc(name), sha1.to_hex())
}

/// `STAT [<folder>] <item> <size> <mtime> <inode>\n`
pub fn stat_line(folder: Option<&str>, item: &str, stat: &FileStat) -> String {
    match folder {
        Some(folder) => format!("STAT {} {} {}\n", enc(folder), enc(item), numbers(stat)),
        None => format!("STAT {} {}\n", enc(item), numbers(stat)),
    }
}

/// `FOLDER <name> <uniqueid> <jmapid>\n`
pub fn folder_line(folder: &FolderStatus) -> String {
    format!(
        "FOLDER {} {} {}\n",
        enc(&folder.name),
        enc(&folder.uniqueid),
        enc(&folder.jmapid)
    )
}

/// `USER <userid>\n`
pub fn user_line(user: &str) -> String {
    format!("USER {}\n", enc(user))
}

/// `DONE <CMD>\n` or `DONE <CMD> <uniqueid> <jmapid>\n`.
pub fn done_line(command: &str, id: Option<&FolderId>) -> String {
    match id {
        Some(id) => format!("DONE {command} {} {}\n", enc(&id.uniqueid), enc(&id.jmapid)),
        None => format!("DONE {command}\n"),
    }
}

/// The `NO` line for an item without a body.
pub fn item_failure_line(name: &str, why: &ItemFailure) -> String {
    match why {
        ItemFailure::NoSuchFile => format!("NO no such file {}\n", enc(name)),
        ItemFailure::FailedToOpen => format!("NO failed to open file {}\n", enc(name)),
        ItemFailure::Empty => format!("NO empty {}\n", enc(name)),
        ItemFailure::Other(text) => format!("NO {}\n", one_line(text)),
    }
}

/// A command-level `NO <text>\n`; line breaks in `text` cannot be allowed
/// to start a line of their own.
pub fn no_line(text: &str) -> String {
    format!("NO {}\n", one_line(text))
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// The text of backupcyrusd's `NO no such folder <name>`, for sources to
/// return as [`crate::source::SourceError::No`]. FMETA names the internal
/// name there and FDATA the name as sent; the source knows which it has.
pub fn no_such_folder(name: &str) -> String {
    format!("no such folder {}", enc(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn client_escaping_matches_the_perl_client() {
        assert_eq!(encode_client(b"INBOX.Trips 2024"), "INBOX.Trips%202024");
        assert_eq!(encode_client(b"a,b~c"), "a,b%7Ec");
        assert_eq!(encode_client(b"carol.smith"), "carol.smith");
    }

    #[test]
    fn server_escaping_matches_backupcyrusd_and_fixes_high_bytes() {
        assert_eq!(encode_server(b"a,b~c"), "a%2Cb~c");
        assert_eq!(encode_server("Résumé".as_bytes()), "R%C3%A9sum%C3%A9");
        assert_eq!(encode_server(b"\xff"), "%FF");
    }

    #[test]
    fn decoding_takes_either_case_and_leaves_stray_percents() {
        assert_eq!(decode(b"a%2cb%2C"), b"a,b,");
        assert_eq!(decode(b"100%"), b"100%");
        assert_eq!(decode(b"%zz%4"), b"%zz%4");
        assert_eq!(decode(b"%C3%A9"), "é".as_bytes());
    }

    #[test]
    fn request_lines_are_what_the_perl_client_sends() {
        let slot = "imap-a.example.net";
        let line = request_line(
            &Request::FMeta {
                user: "bob",
                folder: "INBOX.Trips 2024",
                items: &MetaFile::ALL,
            },
            slot,
        );
        assert_eq!(
            line,
            b"FMETA imap-a.example.net bob INBOX.Trips%202024 header index annotations mailbox_annotations\n"
        );
        assert_eq!(request_line(&Request::Ping, slot), b"PING\n");
        let fdata = Request::FData {
            user: "alice",
            folder: "INBOX",
            uids: &[1, 2, 5, 99],
        };
        assert_eq!(
            request_line(&fdata, slot),
            b"FDATA imap-a.example.net alice INBOX 1 2 5 99\n"
        );
    }

    #[test]
    fn reply_lines_of_each_kind() {
        assert_eq!(parse_reply_line(b"OK").unwrap(), ReplyLine::Ok);
        assert_eq!(
            parse_reply_line(b"NO no such folder user.alice.nope").unwrap(),
            ReplyLine::No("no such folder user.alice.nope".into())
        );
        assert_eq!(
            parse_reply_line(b"STAT INBOX.Trips%202024 header 215 1795660353 10052035").unwrap(),
            ReplyLine::Stat {
                folder: Some("INBOX.Trips 2024".into()),
                item: "header".into(),
                stat: FileStat {
                    size: 215,
                    mtime: 1795660353,
                    inode: 10052035
                }
            }
        );
        assert_eq!(
            parse_reply_line(b"DATA 5 435 1736578800 10051644").unwrap(),
            ReplyLine::Data(FileHead {
                name: "5".into(),
                stat: FileStat {
                    size: 435,
                    mtime: 1736578800,
                    inode: 10051644
                }
            })
        );
        assert!(parse_reply_line(b"DATA 5 4x5 1 1").is_err());
        assert!(parse_reply_line(b"DATA 5 +435 1 1").is_err());
        assert!(matches!(
            parse_reply_line(b"DATA 5 99999999999999999 1 1"),
            Err(CodecError::TooBig { .. })
        ));
        assert!(parse_reply_line(b"").is_err());
        assert!(parse_reply_line(b"HELLO").is_err());
    }

    #[test]
    fn item_failures_name_their_item() {
        assert_eq!(
            parse_item_failure("no such file 99"),
            ("99".into(), ItemFailure::NoSuchFile)
        );
        assert_eq!(
            parse_item_failure("empty mailbox_annotations"),
            ("mailbox_annotations".into(), ItemFailure::Empty)
        );
        assert_eq!(
            parse_item_failure("failed to open file seen"),
            ("seen".into(), ItemFailure::FailedToOpen)
        );
    }

    #[test]
    fn server_lines_have_backupcyrusd_shapes() {
        let stat = FileStat {
            size: 56,
            mtime: 0,
            inode: 53023,
        };
        assert_eq!(
            stat_line(Some("INBOX.Sent"), "mailbox_annotations", &stat),
            "STAT INBOX.Sent mailbox_annotations 56 0 53023\n"
        );
        assert_eq!(
            item_failure_line("mailbox_annotations", &ItemFailure::Empty),
            "NO empty mailbox_annotations\n"
        );
        assert_eq!(no_line("a\nb"), "NO a b\n");
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip_through_either_escaping(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(decode(encode_client(&bytes).as_bytes()), bytes.clone());
            prop_assert_eq!(decode(encode_server(&bytes).as_bytes()), bytes.clone());
            let escaped = encode_server(&bytes);
            prop_assert!(escaped.bytes().all(|b| b.is_ascii_graphic()));
        }

        #[test]
        fn reply_parser_never_panics(line in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_reply_line(&line);
            let _ = decode(&line);
            let _ = parse_item_failure(&String::from_utf8_lossy(&line));
        }

        #[test]
        fn reply_parser_never_panics_on_plausible_lines(
            word in prop::sample::select(vec!["OK", "NO", "DONE", "DATA", "STAT", "FOLDER", "USER", "NONCE"]),
            rest in proptest::collection::vec("[0-9a-z%-]{0,12}", 0..7),
        ) {
            let line = std::iter::once(word.to_string()).chain(rest).collect::<Vec<_>>().join(" ");
            let _ = parse_reply_line(line.as_bytes());
        }

        #[test]
        fn data_and_stat_lines_round_trip(name in "\\PC{1,20}", size in 0..MAX_BODY_SIZE, mtime in any::<i64>(), inode in any::<u64>()) {
            let head = FileHead { name: name.clone(), stat: FileStat { size, mtime, inode } };
            let line = data_line(&head);
            let parsed = parse_reply_line(line.trim_end_matches('\n').as_bytes());
            prop_assert_eq!(parsed, Ok(ReplyLine::Data(head.clone())));
            let stat = stat_line(Some(&name), "index", &head.stat);
            let parsed = parse_reply_line(stat.trim_end_matches('\n').as_bytes());
            prop_assert_eq!(parsed, Ok(ReplyLine::Stat { folder: Some(name), item: "index".into(), stat: head.stat }));
        }
    }
}
