//! Cyrus "dlist" text: the `%(key value ...)` syntax of 3.6+ `cyrus.header`,
//! of mailboxes.db values (2.5+) and of quota values (spec §7.5).
//!
//! A scalar keeps no memory of how it was written (atom, quoted string or
//! literal): Cyrus chooses the form from the bytes when it prints, and so do
//! we, which is what makes `print(parse(x)) == x` hold for Cyrus's output.

use std::fmt;

/// One dlist value.
#[derive(Clone, PartialEq, Eq)]
pub enum Dlist {
    /// A scalar, whatever form it was written in: atom, `"quoted"` or `{n}` literal.
    Atom(Vec<u8>),
    /// `( v v ... )`
    List(Vec<Dlist>),
    /// `%( k v k v ... )`, in file order; keys may repeat, [`Dlist::get`] takes the first.
    Kv(Vec<(String, Dlist)>),
    /// `NIL`: no value (for example a hole in a `cyrus.header` flag list).
    Nil,
}

/// Why a dlist text could not be parsed. `at` is the byte offset of the problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DlistError {
    #[error("dlist: unexpected end of input at byte {at}")]
    UnexpectedEnd { at: usize },
    #[error("dlist: unexpected byte {byte:#04x} at byte {at}")]
    Unexpected { byte: u8, at: usize },
    #[error("dlist: bad literal length at byte {at}")]
    BadLiteral { at: usize },
    #[error("dlist: key at byte {at} is not UTF-8")]
    BadKey { at: usize },
    #[error("dlist: nesting deeper than {MAX_DEPTH} at byte {at}")]
    TooDeep { at: usize },
    #[error("dlist: trailing bytes after the value at byte {at}")]
    Trailing { at: usize },
}

/// Deep enough for any Cyrus value (mailboxes.db history nests three levels),
/// shallow enough that hostile input cannot overflow the stack.
pub const MAX_DEPTH: usize = 64;

/// Cyrus's `imparse_isatom` limit: 1024 bytes and longer are never atoms.
const ATOM_MAX: usize = 1023;

/// `prot_printstring` quotes only strings shorter than this; longer ones become literals.
const QUOTED_MAX: usize = 1023;

impl Dlist {
    /// Builds a scalar from text or bytes.
    pub fn atom(value: impl Into<Vec<u8>>) -> Dlist {
        Dlist::Atom(value.into())
    }

    /// Builds a key-value list from `(key, value)` pairs.
    pub fn kv<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Dlist)>) -> Dlist {
        Dlist::Kv(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Parses exactly one value; spaces and a final line end (`cyrus.header`
    /// ends in LF) may follow it.
    pub fn parse(input: &[u8]) -> Result<Dlist, DlistError> {
        let mut p = Parser { input, pos: 0 };
        let value = p.value(0)?;
        p.skip_line_end();
        if p.pos < input.len() {
            return Err(DlistError::Trailing { at: p.pos });
        }
        Ok(value)
    }

    /// The value of the first `key` in a key-value list; `None` for anything else.
    pub fn get(&self, key: &str) -> Option<&Dlist> {
        self.as_kv()?.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Dlist::Atom(b) => Some(b),
            _ => None,
        }
    }

    /// The scalar as UTF-8 text; `None` for non-scalars and for non-UTF-8 bytes.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()?).ok()
    }

    /// The scalar as a decimal number, the way Cyrus stores uidvalidity, modseqs and mtimes.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_str()?.parse().ok()
    }

    pub fn as_list(&self) -> Option<&[Dlist]> {
        match self {
            Dlist::List(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_kv(&self) -> Option<&[(String, Dlist)]> {
        match self {
            Dlist::Kv(pairs) => Some(pairs),
            _ => None,
        }
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, Dlist::Nil)
    }

    /// The text Cyrus would write for this value.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.print(&mut out);
        out
    }

    fn print(&self, out: &mut Vec<u8>) {
        match self {
            Dlist::Atom(bytes) => print_scalar(bytes, out),
            Dlist::Nil => out.extend_from_slice(b"NIL"),
            Dlist::List(items) => print_list(items, out),
            Dlist::Kv(pairs) => print_kv(pairs, out),
        }
    }
}

impl fmt::Debug for Dlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

fn print_list(items: &[Dlist], out: &mut Vec<u8>) {
    out.push(b'(');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        item.print(out);
    }
    out.push(b')');
}

fn print_kv(pairs: &[(String, Dlist)], out: &mut Vec<u8>) {
    out.extend_from_slice(b"%(");
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        print_scalar(key.as_bytes(), out);
        out.push(b' ');
        value.print(out);
    }
    out.push(b')');
}

/// `prot_printastring`: an atom when it can be, else a quoted string, else a literal.
fn print_scalar(bytes: &[u8], out: &mut Vec<u8>) {
    if is_atom(bytes) {
        out.extend_from_slice(bytes);
    } else if is_quotable(bytes) {
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
        out.extend_from_slice(bytes);
    }
}

/// Cyrus's `imparse_isatom`, plus the rule that the word `NIL` must be quoted.
pub fn is_atom(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= ATOM_MAX
        && bytes != b"NIL"
        && bytes.iter().all(|&b| is_atom_byte(b))
}

fn is_atom_byte(b: u8) -> bool {
    (0x1F..0x7F).contains(&b) && !b" {()\"%*\\".contains(&b)
}

/// `prot_printstring`'s quoted form; a NUL is also sent to a literal because
/// Cyrus's C strings could never have held one quoted.
fn is_quotable(bytes: &[u8]) -> bool {
    bytes.len() <= QUOTED_MAX
        && bytes
            .iter()
            .all(|&b| b < 0x80 && b != 0 && !b"\r\n\"%\\".contains(&b))
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn next(&mut self) -> Result<u8, DlistError> {
        let b = self
            .peek()
            .ok_or(DlistError::UnexpectedEnd { at: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    fn expect(&mut self, want: u8) -> Result<(), DlistError> {
        let at = self.pos;
        match self.next()? {
            b if b == want => Ok(()),
            byte => Err(DlistError::Unexpected { byte, at }),
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// What may follow a whole value: spaces, then CR and LF bytes.
    fn skip_line_end(&mut self) {
        self.skip_spaces();
        while matches!(self.peek(), Some(b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Dlist, DlistError> {
        if depth > MAX_DEPTH {
            return Err(DlistError::TooDeep { at: self.pos });
        }
        match self.peek() {
            None => Err(DlistError::UnexpectedEnd { at: self.pos }),
            Some(b'%') => self.kv_list(depth),
            Some(b'(') => self.list(depth),
            Some(b'"') => self.quoted().map(Dlist::Atom),
            Some(b'{') => self.literal().map(Dlist::Atom),
            Some(_) => self.bare(),
        }
    }

    fn kv_list(&mut self, depth: usize) -> Result<Dlist, DlistError> {
        self.expect(b'%')?;
        self.expect(b'(')?;
        let mut pairs = Vec::new();
        loop {
            self.skip_spaces();
            if self.peek() == Some(b')') {
                self.pos += 1;
                return Ok(Dlist::Kv(pairs));
            }
            let key = self.key()?;
            self.skip_spaces();
            pairs.push((key, self.value(depth + 1)?));
        }
    }

    fn list(&mut self, depth: usize) -> Result<Dlist, DlistError> {
        self.expect(b'(')?;
        let mut items = Vec::new();
        loop {
            self.skip_spaces();
            if self.peek() == Some(b')') {
                self.pos += 1;
                return Ok(Dlist::List(items));
            }
            items.push(self.value(depth + 1)?);
        }
    }

    /// Cyrus reads a key as an astring (`getastring`) and prints it with
    /// `prot_printastring`, so an ACL identifier with a space comes quoted.
    fn key(&mut self) -> Result<String, DlistError> {
        let at = self.pos;
        let key = match self.peek() {
            Some(b'"') => self.quoted()?,
            Some(b'{') => self.literal()?,
            _ => self.word().to_vec(),
        };
        if key.is_empty() && self.pos == at {
            let byte = self.peek().ok_or(DlistError::UnexpectedEnd { at })?;
            return Err(DlistError::Unexpected { byte, at });
        }
        String::from_utf8(key).map_err(|_| DlistError::BadKey { at })
    }

    /// Bytes up to a space, a bracket or a line end: "the parser splits bare
    /// items at SP and strips trailing `)`".
    fn word(&mut self) -> &[u8] {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b" ()\r\n".contains(&b) {
                break;
            }
            self.pos += 1;
        }
        self.input.get(start..self.pos).unwrap_or_default()
    }

    fn bare(&mut self) -> Result<Dlist, DlistError> {
        let at = self.pos;
        let word = self.word();
        match word {
            b"" => {
                let byte = self.peek().ok_or(DlistError::UnexpectedEnd { at })?;
                Err(DlistError::Unexpected { byte, at })
            }
            b"NIL" => Ok(Dlist::Nil),
            _ => Ok(Dlist::Atom(word.to_vec())),
        }
    }

    fn quoted(&mut self) -> Result<Vec<u8>, DlistError> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.next()? {
                b'"' => return Ok(out),
                b'\\' => out.push(self.next()?),
                b => out.push(b),
            }
        }
    }

    /// `{n}` or `{n+}`, CRLF (a bare LF is tolerated), then n raw bytes.
    fn literal(&mut self) -> Result<Vec<u8>, DlistError> {
        let at = self.pos;
        self.expect(b'{')?;
        let digits_start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = self.input.get(digits_start..self.pos).unwrap_or_default();
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(DlistError::BadLiteral { at })?;
        if self.peek() == Some(b'+') {
            self.pos += 1;
        }
        self.expect(b'}')?;
        if self.peek() == Some(b'\r') {
            self.pos += 1;
        }
        self.expect(b'\n')?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.input.len())
            .ok_or(DlistError::UnexpectedEnd {
                at: self.input.len(),
            })?;
        let bytes = self.input.get(self.pos..end).unwrap_or_default().to_vec();
        self.pos = end;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SANDBOX_HEADER: &[u8] = b"%(T e N user.bob I 0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d A %(bob lrswipkxtecdan admin lrswipkxtecdan carol lrs) U ($Important))";
    const MBOXLIST_VALUE: &[u8] = b"%(T e I 0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d P default V 1700000001 C 1 F 1 M 1795658654 A %(bob lrswipkxtecdan admin lrswipkxtecdan))";

    #[test]
    fn a_line_end_inside_a_list_is_an_error_not_an_endless_loop() {
        for input in [&b"(\n"[..], b"%(A \r)", b"(a \r\n b)", b"%(\n"] {
            assert!(
                Dlist::parse(input).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn a_real_header_line_parses_into_keys_and_prints_back_identically() {
        let d = Dlist::parse(SANDBOX_HEADER).unwrap();
        assert_eq!(d.get("T").and_then(Dlist::as_str), Some("e"));
        assert_eq!(d.get("N").and_then(Dlist::as_str), Some("user.bob"));
        let acl = d.get("A").and_then(Dlist::as_kv).unwrap();
        assert_eq!(acl.len(), 3);
        assert_eq!(acl[2].0, "carol");
        assert_eq!(acl[2].1.as_str(), Some("lrs"));
        let flags = d.get("U").and_then(Dlist::as_list).unwrap();
        assert_eq!(flags, &[Dlist::atom("$Important")]);
        assert_eq!(d.to_bytes(), SANDBOX_HEADER);
    }

    #[test]
    fn a_mailboxes_db_value_gives_numbers_and_round_trips() {
        let d = Dlist::parse(MBOXLIST_VALUE).unwrap();
        assert_eq!(d.get("V").and_then(Dlist::as_u64), Some(1_700_000_001));
        assert_eq!(d.get("M").and_then(Dlist::as_u64), Some(1_795_658_654));
        assert!(d.get("S").is_none());
        assert_eq!(d.to_bytes(), MBOXLIST_VALUE);
    }

    #[test]
    fn the_domain_separator_forces_quoting_but_0x1f_stays_an_atom() {
        assert_eq!(Dlist::atom("user\x1fbob").to_bytes(), b"user\x1fbob");
        assert_eq!(
            Dlist::atom("example.com\x1duser\x1falice").to_bytes(),
            b"\"example.com\x1duser\x1falice\""
        );
    }

    #[test]
    fn scalars_choose_atom_quoted_or_literal_as_cyrus_does() {
        assert_eq!(Dlist::atom("abc").to_bytes(), b"abc");
        assert_eq!(Dlist::atom("").to_bytes(), b"\"\"");
        assert_eq!(Dlist::atom("NIL").to_bytes(), b"\"NIL\"");
        assert_eq!(Dlist::atom("Trips 2024").to_bytes(), b"\"Trips 2024\"");
        assert_eq!(Dlist::atom("a*b").to_bytes(), b"\"a*b\"");
        assert_eq!(Dlist::atom("a\\b").to_bytes(), b"{3}\r\na\\b");
        assert_eq!(Dlist::atom("50%").to_bytes(), b"{3}\r\n50%");
        assert_eq!(Dlist::atom("caf\u{e9}").to_bytes(), b"{5}\r\ncaf\xc3\xa9");
        assert_eq!(Dlist::atom("x".repeat(1023)).to_bytes().len(), 1023);
        let long = Dlist::atom("x".repeat(1024)).to_bytes();
        assert!(long.starts_with(b"{1024}\r\n"));
    }

    #[test]
    fn nil_is_a_hole_but_quoted_nil_is_text() {
        let d = Dlist::parse(b"(a NIL \"NIL\" b)").unwrap();
        let items = d.as_list().unwrap();
        assert_eq!(items[1], Dlist::Nil);
        assert_eq!(items[2], Dlist::atom("NIL"));
        assert_eq!(d.to_bytes(), b"(a NIL \"NIL\" b)");
    }

    #[test]
    fn quoted_escapes_and_both_literal_forms_parse() {
        let d = Dlist::parse(b"(\"a\\\"b\\\\c\" {3}\r\nx y {2+}\r\n%( ())").unwrap();
        let items = d.as_list().unwrap();
        assert_eq!(items[0].as_bytes(), Some(&b"a\"b\\c"[..]));
        assert_eq!(items[1].as_bytes(), Some(&b"x y"[..]));
        assert_eq!(items[2].as_bytes(), Some(&b"%("[..]));
        assert_eq!(items[3], Dlist::List(vec![]));
    }

    #[test]
    fn empty_lists_print_as_cyrus_prints_them() {
        assert_eq!(Dlist::Kv(vec![]).to_bytes(), b"%()");
        assert_eq!(Dlist::parse(b"%(H ())").unwrap().to_bytes(), b"%(H ())");
    }

    #[test]
    fn broken_input_is_an_error_not_a_panic() {
        assert!(matches!(
            Dlist::parse(b"%(A"),
            Err(DlistError::UnexpectedEnd { .. })
        ));
        assert!(matches!(
            Dlist::parse(b"{9}\r\nab"),
            Err(DlistError::UnexpectedEnd { .. })
        ));
        assert!(matches!(
            Dlist::parse(b"{x}\r\n"),
            Err(DlistError::BadLiteral { .. })
        ));
        assert!(matches!(
            Dlist::parse(b"(a) b"),
            Err(DlistError::Trailing { .. })
        ));
        let deep = "(".repeat(MAX_DEPTH + 2);
        assert!(matches!(
            Dlist::parse(deep.as_bytes()),
            Err(DlistError::TooDeep { .. })
        ));
    }

    #[test]
    fn a_3_6_i_record_gives_its_quoted_name_nil_and_empty_lists() {
        let d = Dlist::parse(
            b"%(T el N \"example.com\x1Duser\x1Falice\" X {3}\r\na b S NIL H () A %())",
        )
        .unwrap();
        assert_eq!(
            d.get("N").and_then(Dlist::as_bytes),
            Some(&b"example.com\x1Duser\x1Falice"[..])
        );
        assert_eq!(d.get("X").and_then(Dlist::as_str), Some("a b"));
        assert!(d.get("S").is_some_and(Dlist::is_nil));
        assert_eq!(d.get("H"), Some(&Dlist::List(vec![])));
        assert_eq!(d.get("A"), Some(&Dlist::Kv(vec![])));
    }

    #[test]
    fn keys_are_astrings_so_an_acl_identifier_with_a_space_round_trips() {
        let text = b"%(A %(\"group:Domain Users\" lrs {3}\r\nh\xc3\xa9 l bob lrswipkxtecdan))";
        let d = Dlist::parse(text).unwrap();
        let acl = d.get("A").and_then(Dlist::as_kv).unwrap();
        assert_eq!(acl[0].0, "group:Domain Users");
        assert_eq!(acl[1].0, "h\u{e9}");
        assert_eq!(acl[2].0, "bob");
        assert_eq!(d.to_bytes(), text);
    }

    #[test]
    fn spaces_and_line_ends_may_follow_the_value() {
        assert_eq!(
            Dlist::parse(b"%(T e) \r\n\n").unwrap(),
            Dlist::kv([("T", Dlist::atom("e"))])
        );
    }

    #[test]
    fn damage_is_reported_with_its_position() {
        assert_eq!(
            Dlist::parse(b"%(T e"),
            Err(DlistError::UnexpectedEnd { at: 5 })
        );
        assert_eq!(
            Dlist::parse(b"%(T e) x"),
            Err(DlistError::Trailing { at: 7 })
        );
        assert_eq!(
            Dlist::parse(b"%(\xff x)"),
            Err(DlistError::BadKey { at: 2 })
        );
        assert_eq!(Dlist::parse(b"%()x)"), Err(DlistError::Trailing { at: 3 }));
    }

    fn arb_dlist() -> impl Strategy<Value = Dlist> {
        let leaf = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Dlist::Atom),
            Just(Dlist::Nil),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Dlist::List),
                proptest::collection::vec(("(?s).{0,6}", inner), 0..6).prop_map(Dlist::Kv),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Dlist::parse(&bytes);
        }

        #[test]
        fn every_printed_value_parses_back_to_itself(d in arb_dlist()) {
            prop_assert_eq!(Dlist::parse(&d.to_bytes()).unwrap(), d);
        }
    }
}
