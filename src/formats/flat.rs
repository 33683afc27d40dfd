//! Flat, the text cyrusdb backend: one `key TAB value LF` per record, the
//! default for subscription files (cyrus-formats §6.2, §7.10).
//!
//! From 2.5 on Cyrus escapes NUL, TAB, CR and LF inside keys and values as
//! `0xFF, 0x80|c`, and 0xFF itself as `0xFF 0xFF`; 2.4 and earlier wrote raw
//! bytes. Mailbox names are 7-bit (modified UTF-7), so a 0xFF anywhere in the
//! file means it is escaped.

use thiserror::Error;

/// What can be wrong with a flat file. Offsets are absolute.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FlatError {
    #[error("flat: line at offset {offset} has no TAB between key and value")]
    NoTab { offset: usize },
    #[error("flat: the last line, at offset {offset}, has no final LF")]
    NoFinalNewline { offset: usize },
    #[error("flat: escape byte 0xFF at offset {offset} ends its field")]
    DanglingEscape { offset: usize },
}

/// Whether the file uses the 2.5+ 0xFF escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escaping {
    /// 2.5 and later.
    Escaped,
    /// 2.4 and earlier: bytes as they are.
    Raw,
}

impl Escaping {
    /// Escaped exactly when an escape byte appears.
    pub fn detect(bytes: &[u8]) -> Escaping {
        if bytes.contains(&0xFF) {
            Escaping::Escaped
        } else {
            Escaping::Raw
        }
    }
}

/// The records of a flat file, sorted by raw key bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flat {
    pub escaping: Escaping,
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Undoes the 2.5+ escaping of one field that starts at file offset `base`.
fn unescape(field: &[u8], base: usize) -> Result<Vec<u8>, FlatError> {
    let mut out = Vec::with_capacity(field.len());
    let mut bytes = field.iter().enumerate();
    while let Some((i, &b)) = bytes.next() {
        if b != 0xFF {
            out.push(b);
            continue;
        }
        let (_, &escaped) = bytes
            .next()
            .ok_or(FlatError::DanglingEscape { offset: base + i })?;
        out.push(if escaped == 0xFF {
            0xFF
        } else {
            escaped & 0x7F
        });
    }
    Ok(out)
}

fn decode_field(field: &[u8], base: usize, escaping: Escaping) -> Result<Vec<u8>, FlatError> {
    match escaping {
        Escaping::Escaped => unescape(field, base),
        Escaping::Raw => Ok(field.to_vec()),
    }
}

/// Splits one line (without its LF) that starts at file offset `offset`.
fn parse_line(
    line: &[u8],
    offset: usize,
    escaping: Escaping,
) -> Result<(Vec<u8>, Vec<u8>), FlatError> {
    let tab = line
        .iter()
        .position(|&b| b == b'\t')
        .ok_or(FlatError::NoTab { offset })?;
    let key = decode_field(line.get(..tab).unwrap_or_default(), offset, escaping)?;
    let value_at = tab + 1;
    let value = decode_field(
        line.get(value_at..).unwrap_or_default(),
        offset + value_at,
        escaping,
    )?;
    Ok((key, value))
}

impl Flat {
    /// Parses `bytes`, detecting the escaping.
    pub fn parse(bytes: &[u8]) -> Result<Flat, FlatError> {
        Flat::parse_with(bytes, Escaping::detect(bytes))
    }

    /// Parses `bytes` with a known escaping.
    pub fn parse_with(bytes: &[u8], escaping: Escaping) -> Result<Flat, FlatError> {
        let mut records = Vec::new();
        let mut offset = 0;
        while offset < bytes.len() {
            let rest = bytes.get(offset..).unwrap_or_default();
            let newline = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or(FlatError::NoFinalNewline { offset })?;
            let line = rest.get(..newline).unwrap_or_default();
            records.push(parse_line(line, offset, escaping)?);
            offset += newline + 1;
        }
        records.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Flat { escaping, records })
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every record in raw key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.records
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// The records whose key starts with `prefix`.
    pub fn iter_prefix<'s>(
        &'s self,
        prefix: &'s [u8],
    ) -> impl Iterator<Item = (&'s [u8], &'s [u8])> + 's {
        let start = self.records.partition_point(|(k, _)| k.as_slice() < prefix);
        self.records
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.records
            .binary_search_by(|(k, _)| k.as_slice().cmp(key))
            .ok()
            .and_then(|i| self.records.get(i))
            .map(|(_, v)| v.as_slice())
    }

    /// Gives up the records, sorted by key.
    pub fn into_records(self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// carol.smith's real 3.13 `sub.db`, from wire capture 09.
    const CAROL_SUB: &[u8] = b"\x1FVER\x1F\t3\nNINBOX\t\nNINBOX\x1FNotes\t\n";

    #[test]
    fn a_real_subscription_file_has_three_records() {
        let flat = Flat::parse(CAROL_SUB).unwrap();
        assert_eq!(flat.escaping, Escaping::Raw);
        let keys: Vec<_> = flat.iter().map(|(k, _)| k.to_vec()).collect();
        assert_eq!(
            keys,
            vec![
                b"\x1FVER\x1F".to_vec(),
                b"NINBOX".to_vec(),
                b"NINBOX\x1FNotes".to_vec()
            ]
        );
        assert_eq!(flat.get(b"\x1FVER\x1F"), Some(&b"3"[..]));
        assert_eq!(flat.iter_prefix(b"NINBOX\x1F").count(), 1);
    }

    #[test]
    fn escaped_tab_newline_and_ff_come_back() {
        let flat = Flat::parse(b"a\xFF\x89b\tv\xFF\x8A\xFF\xFF\xFF\x80\n").unwrap();
        assert_eq!(flat.escaping, Escaping::Escaped);
        assert_eq!(flat.get(b"a\tb"), Some(&b"v\n\xFF\0"[..]));
    }

    #[test]
    fn a_2_4_file_keeps_its_bytes() {
        let flat = Flat::parse(b"user.bob.Sent\t\nuser.bob\t\n").unwrap();
        assert_eq!(flat.escaping, Escaping::Raw);
        assert_eq!(flat.len(), 2);
        assert_eq!(flat.iter().next().map(|(k, _)| k), Some(&b"user.bob"[..]));
    }

    #[test]
    fn errors_name_the_offset() {
        assert_eq!(
            Flat::parse(b"a\t\nnotab\n"),
            Err(FlatError::NoTab { offset: 3 })
        );
        assert_eq!(
            Flat::parse(b"a\t\nb\t"),
            Err(FlatError::NoFinalNewline { offset: 3 })
        );
        assert_eq!(
            Flat::parse(b"a\xFF\tb\n"),
            Err(FlatError::DanglingEscape { offset: 1 })
        );
        assert_eq!(
            Flat::parse(b"ab\tc\xFF\n"),
            Err(FlatError::DanglingEscape { offset: 4 })
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(flat) = Flat::parse(&bytes) {
                let _ = flat.iter_prefix(b"N").count();
            }
        }
    }
}
