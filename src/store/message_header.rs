//! The few header fields a listing shows (From, Subject, Date), read from
//! the top of a stored message: the header block is unfolded (RFC 5322
//! §2.2.3) and RFC 2047 encoded words are decoded best effort. UTF-8,
//! US-ASCII and ISO-8859-1 (and Windows-1252 read as Latin-1) decode
//! exactly; any other charset is taken as UTF-8 with lossy replacement,
//! which is what a listing needs and keeps us free of a charset crate.

use serde::Serialize;

/// How much of a message is read for its header: enough for any sane one.
pub const HEADER_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeaderSummary {
    pub from: Option<String>,
    pub subject: Option<String>,
    pub date: Option<String>,
}

/// The header block: everything before the first empty line (CRLF or LF).
pub fn header_block(message: &[u8]) -> &[u8] {
    let mut at = 0;
    while at < message.len() {
        let rest = message.get(at..).unwrap_or_default();
        if rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            return message.get(..at).unwrap_or_default();
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => at += nl + 1,
            None => return message,
        }
    }
    message
}

/// Unfolded `(name, raw value)` fields in order; lines that are not
/// fields (no colon) are skipped.
pub fn fields(block: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(block);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push_str(line);
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    out
}

/// From, Subject and Date of a message (the first of each), decoded.
pub fn summarize(message: &[u8]) -> HeaderSummary {
    let mut summary = HeaderSummary::default();
    for (name, value) in fields(header_block(message)) {
        let slot = match name.to_ascii_lowercase().as_str() {
            "from" => &mut summary.from,
            "subject" => &mut summary.subject,
            "date" => &mut summary.date,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(decode_words(&value));
        }
    }
    summary
}

/// Decodes every RFC 2047 encoded word in `value`. Whitespace between two
/// adjacent encoded words is dropped, as §6.2 requires; a malformed word is
/// left as written.
pub fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        match encoded_word(candidate) {
            Some((decoded, len)) => {
                if !(after_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&decoded);
                rest = candidate.get(len..).unwrap_or_default();
                after_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = candidate.get(2..).unwrap_or_default();
                after_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// One `=?charset?enc?text?=` at the start of `s`: its text and its length.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (charset, rest) = inner.split_once('?')?;
    let (encoding, rest) = rest.split_once('?')?;
    let end = rest.find("?=")?;
    let text = rest.get(..end)?;
    if text.contains(' ') || charset.is_empty() {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => base64(text)?,
        "Q" | "q" => q_decode(text)?,
        _ => return None,
    };
    let len = 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
    Some((to_text(charset, &bytes), len))
}

fn to_text(charset: &str, bytes: &[u8]) -> String {
    // RFC 2231 allows a language after '*'.
    let charset = charset.split('*').next().unwrap_or(charset);
    match charset.to_ascii_lowercase().as_str() {
        "iso-8859-1" | "latin1" | "iso8859-1" | "windows-1252" | "cp1252" => {
            bytes.iter().map(|&b| char::from(b)).collect()
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn q_decode(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = b.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xFF) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_fields_are_unfolded_and_the_body_is_not_read() {
        let msg = b"From: Alice <a@example.net>\r\nSubject: a long\r\n  subject\r\nDate: Thu, 2 Jan 2025 08:15:00 +0000\r\n\r\nSubject: not a header\r\n";
        let s = summarize(msg);
        assert_eq!(s.from.as_deref(), Some("Alice <a@example.net>"));
        assert_eq!(s.subject.as_deref(), Some("a long  subject"));
        assert_eq!(s.date.as_deref(), Some("Thu, 2 Jan 2025 08:15:00 +0000"));
    }

    #[test]
    fn bare_lf_messages_and_missing_fields() {
        let s = summarize(b"Subject: hi\n\nFrom: body\n");
        assert_eq!(s.subject.as_deref(), Some("hi"));
        assert_eq!(s.from, None);
        assert_eq!(s.date, None);
    }

    #[test]
    fn rfc2047_examples_decode() {
        // RFC 2047 §8.
        assert_eq!(
            decode_words("=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?= <keld@dkuug.dk>"),
            "Keld Jørn Simonsen <keld@dkuug.dk>"
        );
        assert_eq!(
            decode_words("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)"),
            "(ab)"
        );
        assert_eq!(decode_words("(=?ISO-8859-1?Q?a?= b)"), "(a b)");
        assert_eq!(
            decode_words("=?UTF-8?B?w6l0w6kgMjAyNA==?= trip"),
            "été 2024 trip"
        );
        assert_eq!(decode_words("=?utf-8?q?caf=C3=A9?="), "café");
    }

    #[test]
    fn malformed_words_are_left_as_written() {
        assert_eq!(decode_words("=?utf-8?x?abc?="), "=?utf-8?x?abc?=");
        assert_eq!(decode_words("a =? b"), "a =? b");
        assert_eq!(decode_words("=?utf-8?q?=Z1?="), "=?utf-8?q?=Z1?=");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = summarize(&data);
            let _ = decode_words(&String::from_utf8_lossy(&data));
        }

        #[test]
        fn arbitrary_encoded_words_never_panic(s in "=\\?[a-z0-9*-]{0,8}\\?[BbQqx]\\?[ -~]{0,20}\\?=") {
            let _ = decode_words(&s);
        }
    }
}
