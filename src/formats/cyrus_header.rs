//! `cyrus.header`: a mailbox's uniqueid, quota root, ACL and user-flag names
//! (spec §1). Two forms exist after the same 115-byte magic: the text lines
//! of 2.x–3.5 and the single dlist line of 3.6+. Both are read; both are
//! written the way Cyrus writes them, so a restore can target either era.

use serde::Serialize;

use super::dlist::{Dlist, DlistError};

/// The 115 bytes every `cyrus.header` starts with.
pub const MAGIC: &[u8; 115] = b"\xa1\x02\x8b\x0dCyrus mailbox header\n\"The best thing about this system was that it had lots of goals.\"\n\t--Jim Morris on Andrew\n";

/// `MAX_USER_FLAGS`: four 32-bit words of user-flag bits in each index record.
pub const MAX_USER_FLAGS: usize = 128;

/// Which of the two layouts after the magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderForm {
    /// Three lines: quota root and uniqueid, flag names, ACL (2.x–3.5).
    Text,
    /// One `%(...)` line (3.6+).
    Dlist,
}

/// A decoded `cyrus.header`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CyrusHeader {
    /// `T`: the 3.6+ type string (`e`, `el`, `fl`...); absent from text headers.
    pub mailbox_type: Option<String>,
    /// `N`: the internal name (`user.bob.Sent`); absent from text headers.
    pub name: Option<String>,
    pub uniqueid: String,
    /// `J`: the JMAP mailbox id, 3.13+.
    pub jmapid: Option<String>,
    pub quotaroot: Option<String>,
    /// `(identifier, rights)` in file order; a negative right's identifier starts with `-`.
    pub acl: Vec<(String, String)>,
    /// Position = user-flag bit number; `None` is an unused slot.
    pub user_flags: Vec<Option<String>>,
    /// The form this header was read in (what `to_bytes` reproduces byte for byte).
    pub form: HeaderForm,
}

/// Why a `cyrus.header` could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("cyrus.header: the magic is missing or wrong")]
    BadMagic,
    #[error("cyrus.header: the dlist line is bad: {0}")]
    Dlist(#[from] DlistError),
    #[error("cyrus.header: the dlist line is not a %(...) key-value list")]
    NotKvList,
    #[error("cyrus.header: no uniqueid (the mailbox needs reconstruct)")]
    NoUniqueid,
    #[error("cyrus.header: key {0} has the wrong kind of value")]
    BadValue(&'static str),
    #[error("cyrus.header: the {0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("cyrus.header: the ACL line has an identifier without rights")]
    OddAcl,
    #[error("cyrus.header: more than {MAX_USER_FLAGS} user flags ({0})")]
    TooManyFlags(usize),
}

impl CyrusHeader {
    /// Reads either form; the byte after the magic (`%` or not) tells which.
    pub fn parse(bytes: &[u8]) -> Result<CyrusHeader, HeaderError> {
        let body = bytes
            .strip_prefix(&MAGIC[..])
            .ok_or(HeaderError::BadMagic)?;
        let header = if body.first() == Some(&b'%') {
            parse_dlist_form(body)?
        } else {
            parse_text_form(body)?
        };
        if header.user_flags.len() > MAX_USER_FLAGS {
            return Err(HeaderError::TooManyFlags(header.user_flags.len()));
        }
        Ok(header)
    }

    /// The file as Cyrus writes it in `form` (text loses `T`, `N` and `J`).
    pub fn to_bytes(&self, form: HeaderForm) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        match form {
            HeaderForm::Text => self.write_text(&mut out),
            HeaderForm::Dlist => {
                out.extend_from_slice(&self.to_dlist().to_bytes());
                out.push(b'\n');
            }
        }
        out
    }

    /// The name of user-flag bit `bit`, if that slot is defined.
    pub fn user_flag(&self, bit: usize) -> Option<&str> {
        self.user_flags.get(bit)?.as_deref()
    }

    /// The `%(T N I J Q A U)` value, keys in Cyrus's write order.
    pub fn to_dlist(&self) -> Dlist {
        let mut pairs: Vec<(String, Dlist)> = Vec::new();
        let mut put = |key: &str, value: &Option<String>| {
            if let Some(v) = value {
                pairs.push((key.to_string(), Dlist::atom(v.as_str())));
            }
        };
        put("T", &self.mailbox_type);
        put("N", &self.name);
        put("I", &Some(self.uniqueid.clone()));
        put("J", &self.jmapid);
        put("Q", &self.quotaroot);
        let acl = self
            .acl
            .iter()
            .map(|(id, r)| (id.clone(), Dlist::atom(r.as_str())));
        pairs.push(("A".to_string(), Dlist::Kv(acl.collect())));
        let flags = self.defined_flag_slots();
        if !flags.is_empty() {
            let items = flags.iter().map(|f| match f {
                Some(name) => Dlist::atom(name.as_str()),
                None => Dlist::Nil,
            });
            pairs.push(("U".to_string(), Dlist::List(items.collect())));
        }
        Dlist::Kv(pairs)
    }

    /// The flag slots up to the last defined one: trailing holes carry no information.
    fn defined_flag_slots(&self) -> &[Option<String>] {
        let used = self
            .user_flags
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |i| i + 1);
        self.user_flags.get(..used).unwrap_or_default()
    }

    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.quotaroot.as_deref().unwrap_or("").as_bytes());
        out.push(b'\t');
        out.extend_from_slice(self.uniqueid.as_bytes());
        out.push(b'\n');
        for flag in self.defined_flag_slots() {
            out.extend_from_slice(flag.as_deref().unwrap_or("").as_bytes());
            out.push(b' ');
        }
        out.push(b'\n');
        for (id, rights) in &self.acl {
            out.extend_from_slice(id.as_bytes());
            out.push(b'\t');
            out.extend_from_slice(rights.as_bytes());
            out.push(b'\t');
        }
        out.push(b'\n');
    }
}

fn parse_dlist_form(body: &[u8]) -> Result<CyrusHeader, HeaderError> {
    let d = Dlist::parse(body)?;
    if d.as_kv().is_none() {
        return Err(HeaderError::NotKvList);
    }
    let text = |key: &'static str| -> Result<Option<String>, HeaderError> {
        match d.get(key) {
            None | Some(Dlist::Nil) => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or(HeaderError::BadValue(key)),
        }
    };
    Ok(CyrusHeader {
        mailbox_type: text("T")?,
        name: text("N")?,
        uniqueid: text("I")?.ok_or(HeaderError::NoUniqueid)?,
        jmapid: text("J")?,
        quotaroot: text("Q")?,
        acl: dlist_acl(d.get("A"))?,
        user_flags: dlist_flags(d.get("U"))?,
        form: HeaderForm::Dlist,
    })
}

fn dlist_acl(value: Option<&Dlist>) -> Result<Vec<(String, String)>, HeaderError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let pairs = value.as_kv().ok_or(HeaderError::BadValue("A"))?;
    pairs
        .iter()
        .map(|(id, rights)| {
            let rights = rights.as_str().ok_or(HeaderError::BadValue("A"))?;
            Ok((id.clone(), rights.to_string()))
        })
        .collect()
}

fn dlist_flags(value: Option<&Dlist>) -> Result<Vec<Option<String>>, HeaderError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let items = value.as_list().ok_or(HeaderError::BadValue("U"))?;
    items
        .iter()
        .map(|item| match item {
            Dlist::Nil => Ok(None),
            other => other
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or(HeaderError::BadValue("U")),
        })
        .collect()
}

fn parse_text_form(body: &[u8]) -> Result<CyrusHeader, HeaderError> {
    let mut lines = body.split(|&b| b == b'\n');
    let first = utf8(lines.next().unwrap_or_default(), "quota root line")?;
    let (quotaroot, rest) = first.split_once('\t').ok_or(HeaderError::NoUniqueid)?;
    // 3.6+ readers stop the uniqueid at a second TAB.
    let uniqueid = rest.split('\t').next().unwrap_or_default();
    if uniqueid.is_empty() {
        return Err(HeaderError::NoUniqueid);
    }
    let flags = utf8(lines.next().unwrap_or_default(), "flag line")?;
    let acl = utf8(lines.next().unwrap_or_default(), "ACL line")?;
    Ok(CyrusHeader {
        mailbox_type: None,
        name: None,
        uniqueid: uniqueid.to_string(),
        jmapid: None,
        quotaroot: (!quotaroot.is_empty()).then(|| quotaroot.to_string()),
        acl: text_acl(acl)?,
        user_flags: text_flags(flags),
        form: HeaderForm::Text,
    })
}

fn utf8<'a>(line: &'a [u8], what: &'static str) -> Result<&'a str, HeaderError> {
    std::str::from_utf8(line).map_err(|_| HeaderError::NotUtf8(what))
}

/// Split on single spaces; an empty token is an unused slot. The writer's
/// trailing space leaves one empty token at the end, which is not a slot.
fn text_flags(line: &str) -> Vec<Option<String>> {
    let mut slots: Vec<Option<String>> = line
        .split(' ')
        .map(|t| (!t.is_empty()).then(|| t.to_string()))
        .collect();
    while slots.last().is_some_and(Option::is_none) {
        slots.pop();
    }
    slots
}

fn text_acl(line: &str) -> Result<Vec<(String, String)>, HeaderError> {
    let mut fields: Vec<&str> = line.split('\t').collect();
    if fields.last() == Some(&"") {
        fields.pop();
    }
    if fields.len() % 2 != 0 {
        return Err(HeaderError::OddAcl);
    }
    Ok(fields
        .chunks(2)
        .filter_map(|pair| match pair {
            [id, rights] => Some((id.to_string(), rights.to_string())),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn with_magic(body: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn the_magic_is_115_bytes() {
        assert_eq!(MAGIC.len(), 115);
    }

    #[test]
    fn the_2_4_test_file_text_header_reads_and_writes_back() {
        // The 195-byte header of cassandane's quota_upgrade_v2_4 mailbox (spec §1.2).
        let file = with_magic(
            b"user.cassandane\t41f1e8b64e71fd5c\n\ncassandane\tlrswipkxtecda\tadmin\tlrswipkxtecda\t\n",
        );
        assert_eq!(file.len(), 195);
        let h = CyrusHeader::parse(&file).unwrap();
        assert_eq!(h.form, HeaderForm::Text);
        assert_eq!(h.quotaroot.as_deref(), Some("user.cassandane"));
        assert_eq!(h.uniqueid, "41f1e8b64e71fd5c");
        assert!(h.user_flags.is_empty());
        assert_eq!(h.acl[1], ("admin".into(), "lrswipkxtecda".into()));
        assert_eq!(h.to_bytes(HeaderForm::Text), file);
    }

    #[test]
    fn text_flags_keep_holes_at_their_bit_positions() {
        let file = with_magic(b"\tabc\n$a  $c \nbob\tlrs\t\n");
        let h = CyrusHeader::parse(&file).unwrap();
        assert_eq!(h.quotaroot, None);
        assert_eq!(
            h.user_flags,
            vec![Some("$a".into()), None, Some("$c".into())]
        );
        assert_eq!(h.user_flag(2), Some("$c"));
        assert_eq!(h.user_flag(1), None);
        assert_eq!(h.to_bytes(HeaderForm::Text), file);
    }

    #[test]
    fn the_sieve_dlist_header_round_trips() {
        let line = b"%(T fl N user.cassandane.#sieve I fdd075f1-3d32-4b09-9544-d4c44476b2a0 A %(cassandane lrswipkxtecdan admin lrswipkxtecdan anyone p))\n";
        let file = with_magic(line);
        let h = CyrusHeader::parse(&file).unwrap();
        assert_eq!(h.form, HeaderForm::Dlist);
        assert_eq!(h.mailbox_type.as_deref(), Some("fl"));
        assert_eq!(h.name.as_deref(), Some("user.cassandane.#sieve"));
        assert_eq!(h.acl.len(), 3);
        assert_eq!(h.to_bytes(HeaderForm::Dlist), file);
    }

    #[test]
    fn dlist_holes_are_nil() {
        let file = with_magic(b"%(I x A %() U ($a NIL $c))\n");
        let h = CyrusHeader::parse(&file).unwrap();
        assert_eq!(
            h.user_flags,
            vec![Some("$a".into()), None, Some("$c".into())]
        );
        assert_eq!(h.to_bytes(HeaderForm::Dlist), file);
    }

    #[test]
    fn converting_dlist_to_text_keeps_what_text_can_hold() {
        let file = with_magic(b"%(T e N user.bob I u1 Q user.bob A %(bob lrs) U ($x))\n");
        let h = CyrusHeader::parse(&file).unwrap();
        let text = h.to_bytes(HeaderForm::Text);
        assert_eq!(text, with_magic(b"user.bob\tu1\n$x \nbob\tlrs\t\n"));
        let back = CyrusHeader::parse(&text).unwrap();
        assert_eq!(
            (back.uniqueid, back.acl, back.user_flags),
            (h.uniqueid, h.acl, h.user_flags)
        );
    }

    #[test]
    fn damaged_headers_are_named_errors() {
        assert_eq!(CyrusHeader::parse(b"junk"), Err(HeaderError::BadMagic));
        assert_eq!(
            CyrusHeader::parse(&with_magic(b"user.bob\n\n\n")),
            Err(HeaderError::NoUniqueid)
        );
        assert_eq!(
            CyrusHeader::parse(&with_magic(b"%(T e A %())\n")),
            Err(HeaderError::NoUniqueid)
        );
        assert_eq!(
            CyrusHeader::parse(&with_magic(b"\tu\n\nbob\n")),
            Err(HeaderError::OddAcl)
        );
        assert!(matches!(
            CyrusHeader::parse(&with_magic(b"%(I u A %(")),
            Err(HeaderError::Dlist(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_after_the_magic_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = CyrusHeader::parse(&with_magic(&body));
            let _ = CyrusHeader::parse(&body);
        }
    }
}
