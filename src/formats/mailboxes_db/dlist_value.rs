//! The dlist text values of `mailboxes.db` (cyrus-formats §7.5): atoms,
//! quoted strings, literals, NIL, lists and key-value lists.
//!
//! Private to `mailboxes_db`; to be folded into `formats::dlist` after the
//! merge.

use thiserror::Error;

/// Deeper nesting than any Cyrus value has is refused, so that hostile input
/// cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DlistError {
    #[error("dlist: unexpected end at byte {at}")]
    End { at: usize },
    #[error("dlist: unexpected byte {byte:#04x} at byte {at}")]
    Unexpected { at: usize, byte: u8 },
    #[error("dlist: bad literal length at byte {at}")]
    BadLiteral { at: usize },
    #[error("dlist: nested deeper than {MAX_DEPTH} at byte {at}")]
    TooDeep { at: usize },
    #[error("dlist: trailing bytes from byte {at}")]
    Trailing { at: usize },
}

/// A parsed dlist value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An atom, quoted string or literal: the bytes are what matters.
    Str(Vec<u8>),
    Nil,
    List(Vec<Value>),
    KvList(Vec<(Vec<u8>, Value)>),
}

impl Value {
    /// The field `key` of a key-value list.
    pub fn field(&self, key: &[u8]) -> Option<&Value> {
        match self {
            Value::KvList(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Parses one complete value; nothing may follow it but spaces or a line end.
pub fn parse(bytes: &[u8]) -> Result<Value, DlistError> {
    let mut parser = Parser { bytes, at: 0 };
    let value = parser.value(0)?;
    parser.skip_spaces();
    while matches!(parser.peek(), Some(b'\r' | b'\n')) {
        parser.at += 1;
    }
    if parser.at < bytes.len() {
        return Err(DlistError::Trailing { at: parser.at });
    }
    Ok(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), DlistError> {
        match self.peek() {
            Some(b) if b == byte => {
                self.at += 1;
                Ok(())
            }
            Some(b) => Err(DlistError::Unexpected {
                at: self.at,
                byte: b,
            }),
            None => Err(DlistError::End { at: self.at }),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, DlistError> {
        if depth > MAX_DEPTH {
            return Err(DlistError::TooDeep { at: self.at });
        }
        match self.peek() {
            None => Err(DlistError::End { at: self.at }),
            Some(b'%') => {
                self.at += 1;
                self.expect(b'(')?;
                self.kvlist(depth)
            }
            Some(b'(') => {
                self.at += 1;
                self.list(depth)
            }
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            // An atom cannot start here: it would be empty and never advance.
            Some(byte @ (b')' | b'\r' | b'\n')) => {
                Err(DlistError::Unexpected { at: self.at, byte })
            }
            Some(_) => Ok(self.atom()),
        }
    }

    /// Items up to the closing `)`, after the opening `(`.
    fn items(&mut self, depth: usize) -> Result<Vec<Value>, DlistError> {
        let mut items = Vec::new();
        loop {
            self.skip_spaces();
            if self.peek() == Some(b')') {
                self.at += 1;
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
        }
    }

    fn list(&mut self, depth: usize) -> Result<Value, DlistError> {
        Ok(Value::List(self.items(depth)?))
    }

    fn kvlist(&mut self, depth: usize) -> Result<Value, DlistError> {
        let mut pairs = Vec::new();
        loop {
            self.skip_spaces();
            if self.peek() == Some(b')') {
                self.at += 1;
                return Ok(Value::KvList(pairs));
            }
            let key_at = self.at;
            let Value::Str(key) = self.value(depth + 1)? else {
                return Err(DlistError::Unexpected {
                    at: key_at,
                    byte: self.bytes.get(key_at).copied().unwrap_or_default(),
                });
            };
            self.skip_spaces();
            let value = self.value(depth + 1)?;
            pairs.push((key, value));
        }
    }

    /// A bare item ends at a space, a bracket or a line end (so it is never
    /// empty: `value` only calls this on another byte); `NIL` is no value.
    fn atom(&mut self) -> Value {
        let start = self.at;
        while let Some(b) = self.peek() {
            if matches!(b, b' ' | b'(' | b')' | b'\r' | b'\n') {
                break;
            }
            self.at += 1;
        }
        let atom = self.bytes.get(start..self.at).unwrap_or_default();
        if atom == b"NIL" {
            Value::Nil
        } else {
            Value::Str(atom.to_vec())
        }
    }

    fn quoted(&mut self) -> Result<Value, DlistError> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(DlistError::End { at: self.at }),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Value::Str(out));
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escaped = self.peek().ok_or(DlistError::End { at: self.at })?;
                    out.push(escaped);
                    self.at += 1;
                }
                Some(b) => {
                    out.push(b);
                    self.at += 1;
                }
            }
        }
    }

    /// `{n}` or `{n+}`, CRLF (or LF), then n raw bytes.
    fn literal(&mut self) -> Result<Value, DlistError> {
        let open = self.at;
        self.expect(b'{')?;
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        let digits = self.bytes.get(start..self.at).unwrap_or_default();
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or(DlistError::BadLiteral { at: open })?;
        if self.peek() == Some(b'+') {
            self.at += 1;
        }
        self.expect(b'}')?;
        if self.peek() == Some(b'\r') {
            self.at += 1;
        }
        self.expect(b'\n')?;
        let end = self
            .at
            .checked_add(len)
            .ok_or(DlistError::BadLiteral { at: open })?;
        let data = self.bytes.get(self.at..end).ok_or(DlistError::End {
            at: self.bytes.len(),
        })?;
        self.at = end;
        Ok(Value::Str(data.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(text: &str) -> Value {
        Value::Str(text.as_bytes().to_vec())
    }

    #[test]
    fn a_real_3_6_record_parses() {
        let value = parse(
            b"%(T e I 0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d P default V 1700000001 C 1 F 1 \
              M 1795658654 A %(bob lrswipkxtecdan admin lrswipkxtecdan))",
        )
        .unwrap();
        assert_eq!(value.field(b"T"), Some(&s("e")));
        assert_eq!(value.field(b"V"), Some(&s("1700000001")));
        assert_eq!(
            value.field(b"A"),
            Some(&Value::KvList(vec![
                (b"bob".to_vec(), s("lrswipkxtecdan")),
                (b"admin".to_vec(), s("lrswipkxtecdan")),
            ]))
        );
    }

    #[test]
    fn a_line_end_inside_a_list_is_an_error_not_an_endless_loop() {
        assert!(parse(b"(\n").is_err());
        assert!(parse(b"%(A \r)").is_err());
    }

    #[test]
    fn quoted_literal_nil_and_empty_lists() {
        let value =
            parse(b"%(N \"example.com\x1Duser\x1Falice\" X {3}\r\na b S NIL H () A %())").unwrap();
        assert_eq!(value.field(b"N"), Some(&s("example.com\x1Duser\x1Falice")));
        assert_eq!(value.field(b"X"), Some(&s("a b")));
        assert_eq!(value.field(b"S"), Some(&Value::Nil));
        assert_eq!(value.field(b"H"), Some(&Value::List(vec![])));
        assert_eq!(value.field(b"A"), Some(&Value::KvList(vec![])));
    }

    #[test]
    fn damage_is_reported_with_its_position() {
        assert_eq!(parse(b"%(T e"), Err(DlistError::End { at: 5 }));
        assert_eq!(parse(b"%(T e) x"), Err(DlistError::Trailing { at: 7 }));
        assert!(matches!(
            parse(&[b'('; 100]),
            Err(DlistError::TooDeep { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }
    }
}
