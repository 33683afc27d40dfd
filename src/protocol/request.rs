//! Reading requests on the server side, token by token, the way backupcyrusd
//! does, so that its quirks come out the same: a command with no slot takes
//! the next line's first word as the slot, CR is whitespace, leftover text is
//! discarded. `user` and `folder` are IMAP astrings (atom, `"quoted"`, or a
//! `{n}`/`{n+}` literal, which needs CRLF after the brace and, when
//! synchronising, a `+ go ahead` from us).
//!
//! Unlike backupcyrusd, every token and every discarded line has a cap: a
//! peer that exceeds one gets an error and the connection is closed.
//!
//! Output is flushed before any read that would block, as backupcyrusd's
//! `prot_setflushonread` does, so a client that pipelines never waits on us.

use std::io::{self, Read, Write};

use super::codec::MAX_LINE;

/// The byte that ended a token; `None` when the stream ended.
pub type Term = Option<u8>;

/// A terminator that is neither LF nor the end: the rest of the line is still
/// unread. What backupcyrusd's parsers signal by returning EOF mid-stream.
pub const MID_LINE: Term = Some(0);

/// Caps against hostile clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest word, atom or quoted string.
    pub max_word: usize,
    /// Largest literal we accept (names are short; there is no upload).
    pub max_literal: usize,
    /// Most bytes discarded from the rest of one line.
    pub max_discard: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_word: MAX_LINE,
            max_literal: MAX_LINE,
            max_discard: MAX_LINE,
        }
    }
}

/// Input that ends the conversation: the connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("a word longer than {0} bytes")]
    WordTooLong(usize),
    #[error("a literal of {size} bytes, over the limit of {limit}")]
    LiteralTooLarge { size: u64, limit: usize },
    #[error("the connection ended inside a literal")]
    EofInLiteral,
    #[error("more than {0} bytes of leftover text on one line")]
    LineTooLong(usize),
    #[error("I/O error on the connection: {0}")]
    Io(#[from] io::Error),
}

/// One astring argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Astring {
    /// The (not yet %-decoded) value and the byte after it.
    Value(Vec<u8>, Term),
    /// Not an astring here (empty, an unterminated quote, a bad literal
    /// head, a NUL inside a literal). The rest of the line should be dropped.
    Malformed,
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn ends_word(b: u8) -> bool {
    is_c_space(b) || matches!(b, b'(' | b')' | b'"')
}

/// Reads request tokens from a connection.
pub struct RequestReader<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    pushback: Option<u8>,
    limits: Limits,
}

impl<R: Read> RequestReader<R> {
    pub fn new(inner: R, limits: Limits) -> RequestReader<R> {
        RequestReader {
            inner,
            buf: vec![0; 8192],
            pos: 0,
            len: 0,
            pushback: None,
            limits,
        }
    }

    fn getc(&mut self, out: &mut dyn Write) -> Result<Option<u8>, RequestError> {
        if let Some(b) = self.pushback.take() {
            return Ok(Some(b));
        }
        if self.pos >= self.len {
            out.flush()?;
            self.len = loop {
                match self.inner.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            self.pos = 0;
        }
        let byte = self
            .buf
            .get(self.pos)
            .copied()
            .filter(|_| self.pos < self.len);
        self.pos += usize::from(byte.is_some());
        Ok(byte)
    }

    fn unget(&mut self, c: Term) {
        self.pushback = c;
    }

    /// Bytes up to whitespace, `(`, `)` or `"` (not included).
    pub fn word(&mut self, out: &mut dyn Write) -> Result<(Vec<u8>, Term), RequestError> {
        self.word_from(Vec::new(), out)
    }

    fn word_from(
        &mut self,
        mut word: Vec<u8>,
        out: &mut dyn Write,
    ) -> Result<(Vec<u8>, Term), RequestError> {
        loop {
            match self.getc(out)? {
                Some(b) if !ends_word(b) => word.push(b),
                term => return Ok((word, term)),
            }
            if word.len() > self.limits.max_word {
                return Err(RequestError::WordTooLong(self.limits.max_word));
            }
        }
    }

    /// An IMAP astring: atom, quoted string or literal.
    pub fn astring(&mut self, out: &mut dyn Write) -> Result<Astring, RequestError> {
        match self.getc(out)? {
            None => Ok(Astring::Value(Vec::new(), None)),
            Some(c @ (b' ' | b'(' | b')' | b'\r' | b'\n')) => {
                self.unget(Some(c));
                Ok(Astring::Malformed)
            }
            Some(b'"') => self.quoted(out),
            Some(b'{') => self.literal(out),
            Some(first) => {
                let (atom, term) = self.word_from(vec![first], out)?;
                Ok(Astring::Value(atom, term))
            }
        }
    }

    fn quoted(&mut self, out: &mut dyn Write) -> Result<Astring, RequestError> {
        let mut value = Vec::new();
        loop {
            let c = match self.getc(out)? {
                Some(b'\\') => self.getc(out)?,
                Some(b'"') => return Ok(Astring::Value(value, self.getc(out)?)),
                Some(c @ (b'\r' | b'\n')) => {
                    self.unget(Some(c));
                    return Ok(Astring::Malformed);
                }
                c => c,
            };
            let Some(c) = c else {
                return Ok(Astring::Value(value, None));
            };
            value.push(c);
            if value.len() > self.limits.max_word {
                return Err(RequestError::WordTooLong(self.limits.max_word));
            }
        }
    }

    fn literal(&mut self, out: &mut dyn Write) -> Result<Astring, RequestError> {
        let (size, mut c) = self.literal_size(out)?;
        let Some(size) = size else {
            self.unget(c);
            return Ok(Astring::Malformed);
        };
        let limit = self.limits.max_literal;
        let in_limit = usize::try_from(size).is_ok_and(|n| n <= self.limits.max_literal);
        let synchronising = c != Some(b'+');
        if !synchronising {
            c = self.getc(out)?;
        }
        for expected in [b'}', b'\r', b'\n'] {
            if c != Some(expected) {
                self.unget(c);
                return Ok(Astring::Malformed);
            }
            if expected != b'\n' {
                c = self.getc(out)?;
            }
        }
        if !in_limit {
            return Err(RequestError::LiteralTooLarge { size, limit });
        }
        if synchronising {
            out.write_all(b"+ go ahead\r\n")?;
            out.flush()?;
        }
        let value = self.literal_body(size, out)?;
        let term = self.getc(out)?;
        if value.contains(&0) {
            self.unget(term);
            return Ok(Astring::Malformed);
        }
        Ok(Astring::Value(value, term))
    }

    /// The digits of `{n`: the size (None without digits) and the byte after.
    fn literal_size(&mut self, out: &mut dyn Write) -> Result<(Option<u64>, Term), RequestError> {
        let mut size: Option<u64> = None;
        loop {
            let c = self.getc(out)?;
            let Some(digit @ b'0'..=b'9') = c else {
                return Ok((size, c));
            };
            let grown = size.unwrap_or(0) * 10 + u64::from(digit - b'0');
            if grown > u64::from(u32::MAX) {
                return Err(RequestError::LiteralTooLarge {
                    size: grown,
                    limit: self.limits.max_literal,
                });
            }
            size = Some(grown);
        }
    }

    fn literal_body(&mut self, size: u64, out: &mut dyn Write) -> Result<Vec<u8>, RequestError> {
        let mut value = Vec::new();
        for _ in 0..size {
            value.push(self.getc(out)?.ok_or(RequestError::EofInLiteral)?);
        }
        Ok(value)
    }

    /// Drop the rest of the line that `term` ended a token of.
    pub fn eat_line(&mut self, term: Term, out: &mut dyn Write) -> Result<(), RequestError> {
        if matches!(term, None | Some(b'\n')) {
            return Ok(());
        }
        self.eat_rest_of_line(out)
    }

    /// Drop everything up to and including the next LF.
    pub fn eat_rest_of_line(&mut self, out: &mut dyn Write) -> Result<(), RequestError> {
        let mut dropped = 0usize;
        loop {
            match self.getc(out)? {
                None | Some(b'\n') => return Ok(()),
                Some(_) => dropped += 1,
            }
            if dropped > self.limits.max_discard {
                return Err(RequestError::LineTooLong(self.limits.max_discard));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reader(input: &[u8]) -> RequestReader<&[u8]> {
        RequestReader::new(input, Limits::default())
    }

    #[test]
    fn words_end_at_whitespace_parens_and_quotes() {
        let mut out = Vec::new();
        let mut r = reader(b"FMETA slot\r\nx(y");
        assert_eq!(r.word(&mut out).unwrap(), (b"FMETA".to_vec(), Some(b' ')));
        assert_eq!(r.word(&mut out).unwrap(), (b"slot".to_vec(), Some(b'\r')));
        assert_eq!(r.word(&mut out).unwrap(), (b"".to_vec(), Some(b'\n')));
        assert_eq!(r.word(&mut out).unwrap(), (b"x".to_vec(), Some(b'(')));
        assert_eq!(r.word(&mut out).unwrap(), (b"y".to_vec(), None));
    }

    #[test]
    fn astrings_of_all_three_forms() {
        let mut out = Vec::new();
        let mut r = reader(b"INBOX.Trips%202024 \"INBOX.Trips 2024\" {4}\r\nab\"c {2+}\r\nxy\n");
        assert_eq!(
            r.astring(&mut out).unwrap(),
            Astring::Value(b"INBOX.Trips%202024".to_vec(), Some(b' '))
        );
        assert_eq!(
            r.astring(&mut out).unwrap(),
            Astring::Value(b"INBOX.Trips 2024".to_vec(), Some(b' '))
        );
        assert!(out.is_empty());
        assert_eq!(
            r.astring(&mut out).unwrap(),
            Astring::Value(b"ab\"c".to_vec(), Some(b' '))
        );
        assert_eq!(out, b"+ go ahead\r\n", "a synchronising literal is invited");
        assert_eq!(
            r.astring(&mut out).unwrap(),
            Astring::Value(b"xy".to_vec(), Some(b'\n'))
        );
        assert_eq!(out, b"+ go ahead\r\n", "a non-synchronising one is not");
    }

    #[test]
    fn quoted_strings_take_backslash_escapes() {
        let mut out = Vec::new();
        let mut r = reader(b"\"a\\\"b\\\\c\" ");
        assert_eq!(
            r.astring(&mut out).unwrap(),
            Astring::Value(b"a\"b\\c".to_vec(), Some(b' '))
        );
    }

    #[test]
    fn malformed_astrings_leave_the_line_to_be_eaten() {
        let mut out = Vec::new();
        for input in [
            &b" x\nNEXT"[..],
            b"\"open\nNEXT",
            b"{x}\nNEXT",
            b"{3}x\nNEXT",
            b"{3}\nNEXT",
        ] {
            let mut r = reader(input);
            assert_eq!(
                r.astring(&mut out).unwrap(),
                Astring::Malformed,
                "{input:?}"
            );
            r.eat_rest_of_line(&mut out).unwrap();
            assert_eq!(r.word(&mut out).unwrap().0, b"NEXT", "{input:?}");
        }
    }

    #[test]
    fn oversized_or_lying_literals_end_the_connection() {
        let mut out = Vec::new();
        let big = format!("{{{}}}\r\n", MAX_LINE + 1);
        assert!(matches!(
            reader(big.as_bytes()).astring(&mut out),
            Err(RequestError::LiteralTooLarge { .. })
        ));
        assert!(matches!(
            reader(b"{99999999999}\r\n").astring(&mut out),
            Err(RequestError::LiteralTooLarge { .. })
        ));
        assert!(matches!(
            reader(b"{10}\r\nabc").astring(&mut out),
            Err(RequestError::EofInLiteral)
        ));
    }

    #[test]
    fn endless_words_and_lines_are_capped() {
        let mut out = Vec::new();
        let long = vec![b'a'; MAX_LINE + 10];
        assert!(matches!(
            reader(&long).word(&mut out),
            Err(RequestError::WordTooLong(_))
        ));
        assert!(matches!(
            reader(&long).eat_rest_of_line(&mut out),
            Err(RequestError::LineTooLong(_))
        ));
    }

    #[test]
    fn output_is_flushed_before_a_read_that_could_block() {
        struct Flushes(usize);
        impl Write for Flushes {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                self.0 += 1;
                Ok(())
            }
        }
        let mut out = Flushes(0);
        let mut r = reader(b"PING\n");
        r.word(&mut out).unwrap();
        assert_eq!(out.0, 1);
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            let mut r = reader(&input);
            for _ in 0..20 {
                if r.astring(&mut out).is_err() || r.word(&mut out).is_err() || r.eat_rest_of_line(&mut out).is_err() {
                    break;
                }
            }
        }
    }
}
