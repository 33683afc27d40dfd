//! The `mailbox_annotations` pseudo-file backupcyrusd synthesises from the
//! global `annotations.db` (spec backup-protocol §1.5, cyrus-formats §6).
//!
//! Records are keyed `<mailbox>\0<entry>\0<userid>\0`, where `<mailbox>` is
//! the uniqueid from 3.6 on and the internal name up to 3.4; the owner's
//! private values carry the userid `[.OwNeR.]`, which the reply spells as
//! the owner. A value is a length (the first four bytes of a big-endian
//! `unsigned long`, eight bytes wide on the 64-bit servers we read), the
//! bytes, a NUL, a deprecated content type, a modseq and flags. The reply is
//! `[[entry, userid, value], …]` in key order, formatted as jansson's
//! `JSON_INDENT(2)` does, with no final newline.

use sha1::{Digest, Sha1};

use crate::formats::cyrusdb::{CyrusDb, CyrusDbError};

/// How Cyrus 3.6+ spells "the mailbox owner" in private annotation keys.
pub const OWNER_PLACEHOLDER: &str = "[.OwNeR.]";

/// The width of the length field: `sizeof(unsigned long)` on 64-bit Linux.
const LENGTH_FIELD: usize = 8;

/// One mailbox-level annotation: `[entry, userid, value]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxAnnotation {
    pub entry: String,
    /// Empty for a shared value.
    pub userid: String,
    pub value: Vec<u8>,
}

/// A record of `annotations.db` that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum AnnotationError {
    #[error(transparent)]
    Db(#[from] CyrusDbError),
    #[error("{file}: annotation key {key:?} of {mailbox}: {problem}")]
    Record {
        file: String,
        mailbox: String,
        key: String,
        problem: &'static str,
    },
}

/// The annotations of the mailbox keyed `mailbox` (its uniqueid, or its
/// internal name before 3.6), in key order. `owner` replaces the owner
/// placeholder. Records with an empty value are deletions and are skipped.
pub fn mailbox_annotations(
    db: &CyrusDb,
    mailbox: &str,
    owner: &str,
) -> Result<Vec<MailboxAnnotation>, AnnotationError> {
    let mut prefix = mailbox.as_bytes().to_vec();
    prefix.push(0);
    let mut out = Vec::new();
    for record in db.iter_prefix(&prefix) {
        let (key, value) = record?;
        let bad = |problem| AnnotationError::Record {
            file: db.file().to_string(),
            mailbox: mailbox.to_string(),
            key: String::from_utf8_lossy(&key).into_owned(),
            problem,
        };
        let rest = key.get(prefix.len()..).unwrap_or_default();
        let mut parts = rest.split(|&b| b == 0);
        let entry = parts.next().ok_or_else(|| bad("no entry"))?;
        let userid = parts.next().ok_or_else(|| bad("no userid"))?;
        let value = decode_value(&value).ok_or_else(|| bad("value shorter than its length"))?;
        if value.is_empty() {
            continue;
        }
        let userid = String::from_utf8_lossy(userid);
        out.push(MailboxAnnotation {
            entry: String::from_utf8_lossy(entry).into_owned(),
            userid: if userid == OWNER_PLACEHOLDER {
                owner.to_string()
            } else {
                userid.into_owned()
            },
            value: value.to_vec(),
        });
    }
    Ok(out)
}

/// The value bytes of a stored annotation value.
fn decode_value(stored: &[u8]) -> Option<&[u8]> {
    let len_bytes: [u8; 4] = stored.get(..4)?.try_into().ok()?;
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).ok()?;
    let end = LENGTH_FIELD.checked_add(len)?;
    stored.get(LENGTH_FIELD..end)
}

/// The body backupcyrusd sends: jansson `JSON_INDENT(2)`, no final newline.
pub fn to_json(annotations: &[MailboxAnnotation]) -> Vec<u8> {
    if annotations.is_empty() {
        return b"[]".to_vec();
    }
    let triples: Vec<String> = annotations
        .iter()
        .map(|a| {
            let fields = [
                json_string(a.entry.as_bytes()),
                json_string(a.userid.as_bytes()),
                json_string(&a.value),
            ];
            format!("[\n    {}\n  ]", fields.join(",\n    "))
        })
        .collect();
    format!("[\n  {}\n]", triples.join(",\n  ")).into_bytes()
}

/// A JSON string as jansson writes it: `"` and `\` escaped, control bytes
/// as `\b \f \n \r \t` or `\u00XX`, everything else (UTF-8 included) as is.
fn json_string(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// backupcyrusd's "inode" for the synthetic file: the first two bytes of
/// the body's SHA-1 as a little-endian `uint16`.
pub fn synthetic_inode(body: &[u8]) -> u64 {
    let digest = Sha1::digest(body);
    u64::from(u16::from_le_bytes([digest[0], digest[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIXTURE_15: &str = "[\n  [\n    \"/comment\",\n    \"\",\n    \"team folder\"\n  ],\n  [\n    \"/comment\",\n    \"alice\",\n    \"alice private note\"\n  ]\n]";

    fn note(entry: &str, userid: &str, value: &str) -> MailboxAnnotation {
        MailboxAnnotation {
            entry: entry.into(),
            userid: userid.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn json_matches_what_backupcyrusd_sent_for_alice_work() {
        let body = to_json(&[
            note("/comment", "", "team folder"),
            note("/comment", "alice", "alice private note"),
        ]);
        assert_eq!(String::from_utf8(body.clone()).unwrap(), FIXTURE_15);
        assert_eq!(body.len(), 116, "DATA mailbox_annotations 116 0 4691");
        assert_eq!(synthetic_inode(&body), 4691);
    }

    #[test]
    fn the_wire_fixture_body_is_reproduced_byte_for_byte() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/wire/15-fmeta-data-alice-INBOX.Work.response"
        );
        let Ok(response) = std::fs::read(path) else {
            std::io::Write::write_all(
                &mut std::io::stderr(),
                b"SKIPPED (../shared/fixtures absent): the_wire_fixture_body_is_reproduced_byte_for_byte\n",
            )
            .unwrap();
            return;
        };
        let head = b"DATA mailbox_annotations 116 0 4691\n";
        let at = response
            .windows(head.len())
            .position(|w| w == head)
            .unwrap();
        let body = &response[at + head.len()..at + head.len() + 116];
        assert_eq!(body, FIXTURE_15.as_bytes());
    }

    #[test]
    fn special_use_inode_matches_fixture_16() {
        let body = to_json(&[note("/specialuse", "alice", "\\Sent")]);
        assert_eq!(body.len(), 56, "STAT mailbox_annotations 56 0 53023");
        assert_eq!(synthetic_inode(&body), 53023);
    }

    #[test]
    fn control_bytes_and_quotes_are_escaped_like_jansson() {
        assert_eq!(json_string(b"a\"b\\c\n\x01/"), "\"a\\\"b\\\\c\\n\\u0001/\"");
        assert_eq!(json_string("Entwürfe".as_bytes()), "\"Entwürfe\"");
    }

    #[test]
    fn stored_values_carry_a_big_endian_length_in_an_eight_byte_field() {
        let stored = b"\0\0\0\x0b\0\0\0\0team folder\0text/plain\0\0\0\0\0\0\0\0\0\0";
        assert_eq!(decode_value(stored), Some(&b"team folder"[..]));
        assert_eq!(decode_value(b"\0\0\0\x0bshort"), None);
        assert_eq!(decode_value(b"\0\0"), None);
    }

    proptest! {
        #[test]
        fn arbitrary_values_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_value(&bytes);
            let _ = json_string(&bytes);
        }
    }
}
