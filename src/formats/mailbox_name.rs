//! Mailbox names in their three spellings (cyrus-formats §5.3, §7.3):
//!
//! * internal, `[domain!][DELETED.]user.carol^smith.a^b[.HEXTIME]`: `.`
//!   separates, `^` stands for a real `.` (in userids always, in folder
//!   names with `unixhierarchysep`);
//! * 3.6+ database, `[domain 0x1D][DELETED 0x1F]user 0x1F carol.smith 0x1F a.b`:
//!   real dots, 0x1F separates;
//! * external, what a user's IMAP session and backupcyrusd print: `INBOX`,
//!   `INBOX.a^b` or `INBOX/a.b`, `user.bob.x` for another user's folder,
//!   `DELETED.user.bob.x.65A1B2C3`, or the altnamespace forms.
//!
//! All three go through [`MailboxName`], the parts Cyrus's `mbname_t` holds.
//! Names stay modified UTF-7: nothing here decodes it.

use thiserror::Error;

/// The imapd.conf settings that shape names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameConfig {
    /// `unixhierarchysep`: `/` separates external names instead of `.`.
    pub unixhierarchysep: bool,
    /// `altnamespace`: the user's folders appear beside INBOX, not under it.
    pub altnamespace: bool,
    /// `deletedprefix` (default `DELETED`).
    pub deleted_prefix: String,
    /// `userprefix` (altnamespace only; default `Other Users`).
    pub user_prefix: String,
    /// `sharedprefix` (altnamespace only; default `Shared Folders`).
    pub shared_prefix: String,
    /// `altprefix` (altnamespace only; default `Alt Folders`).
    pub alt_prefix: String,
}

impl Default for NameConfig {
    fn default() -> NameConfig {
        NameConfig {
            unixhierarchysep: false,
            altnamespace: false,
            deleted_prefix: "DELETED".into(),
            user_prefix: "Other Users".into(),
            shared_prefix: "Shared Folders".into(),
            alt_prefix: "Alt Folders".into(),
        }
    }
}

impl NameConfig {
    /// The external hierarchy separator.
    pub fn separator(&self) -> char {
        if self.unixhierarchysep {
            '/'
        } else {
            '.'
        }
    }
}

/// A 3.6+ database name that cannot be a mailbox name.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NameError {
    #[error("database name {0:?} is not UTF-8")]
    NotUtf8(Vec<u8>),
    #[error("database name {0:?} is empty")]
    Empty(Vec<u8>),
}

const DB_SEP: u8 = 0x1F;
const DB_DOMAIN_SEP: u8 = 0x1D;

/// A mailbox name taken apart. Parts hold real names: a `.` is a `.`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailboxName {
    pub domain: Option<String>,
    /// The deletion time of a `DELETED.…` name (its last part, in hex).
    pub deleted: Option<u32>,
    /// The owner's local part, for `user.<localpart>…` names.
    pub localpart: Option<String>,
    /// The folders below the INBOX (or the whole name of a shared mailbox).
    pub boxes: Vec<String>,
}

impl MailboxName {
    /// The INBOX of `userid` (`bob`, `carol.smith`, `bob@example.com`).
    pub fn inbox_of(userid: &str) -> MailboxName {
        let (localpart, domain) = match userid.rsplit_once('@') {
            Some((local, domain)) => (local, Some(domain.to_string())),
            None => (userid, None),
        };
        MailboxName {
            domain,
            deleted: None,
            localpart: Some(localpart.to_string()),
            boxes: Vec::new(),
        }
    }

    /// Parses an internal name, as `mbname_from_intname` does.
    pub fn from_internal(internal: &str, cfg: &NameConfig) -> MailboxName {
        let (domain, rest) = match internal.split_once('!') {
            Some((domain, rest)) => (Some(domain.to_string()), rest),
            None => (None, internal),
        };
        let parts = rest.split('.').map(|p| p.replace('^', ".")).collect();
        MailboxName::from_parts(domain, parts, cfg)
    }

    /// Parses a 3.6+ database name, as `mbname_from_dbname` does.
    pub fn from_dbname(dbname: &[u8], cfg: &NameConfig) -> Result<MailboxName, NameError> {
        let text = std::str::from_utf8(dbname).map_err(|_| NameError::NotUtf8(dbname.to_vec()))?;
        if text.is_empty() {
            return Err(NameError::Empty(dbname.to_vec()));
        }
        let (domain, rest) = match text.split_once(char::from(DB_DOMAIN_SEP)) {
            Some((domain, rest)) => (Some(domain.to_string()), rest),
            None => (None, text),
        };
        let parts = rest.split(char::from(DB_SEP)).map(str::to_string).collect();
        Ok(MailboxName::from_parts(domain, parts, cfg))
    }

    /// Recognises the deleted prefix and the `user` hierarchy in `parts`.
    fn from_parts(domain: Option<String>, mut parts: Vec<String>, cfg: &NameConfig) -> MailboxName {
        let mut deleted = None;
        if parts.len() > 2 && parts.first() == Some(&cfg.deleted_prefix) {
            let stamp = parts.last().and_then(|s| u32::from_str_radix(s, 16).ok());
            if let Some(stamp) = stamp.filter(|s| *s != 0) {
                parts.remove(0);
                parts.pop();
                deleted = Some(stamp);
            }
        }
        let mut localpart = None;
        if parts.len() > 1 && parts.first().map(String::as_str) == Some("user") {
            parts.remove(0);
            localpart = Some(parts.remove(0));
        }
        MailboxName {
            domain,
            deleted,
            localpart,
            boxes: parts,
        }
    }

    /// The parts in order, with the `user` and deleted markers, real dots.
    fn parts(&self, cfg: &NameConfig) -> Vec<String> {
        let mut parts = Vec::new();
        if self.deleted.is_some() {
            parts.push(cfg.deleted_prefix.clone());
        }
        if let Some(local) = &self.localpart {
            parts.push("user".to_string());
            parts.push(local.clone());
        }
        parts.extend(self.boxes.iter().cloned());
        if let Some(stamp) = self.deleted {
            parts.push(format!("{stamp:X}"));
        }
        parts
    }

    /// The internal name: `example.com!user.carol^smith.a^b`.
    pub fn to_internal(&self, cfg: &NameConfig) -> String {
        let parts: Vec<String> = self
            .parts(cfg)
            .iter()
            .map(|p| p.replace('.', "^"))
            .collect();
        let name = parts.join(".");
        match &self.domain {
            Some(domain) => format!("{domain}!{name}"),
            None => name,
        }
    }

    /// The 3.6+ database name: `example.com\x1Duser\x1Fcarol.smith\x1Fa.b`.
    pub fn to_dbname(&self, cfg: &NameConfig) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(domain) = &self.domain {
            out.extend_from_slice(domain.as_bytes());
            out.push(DB_DOMAIN_SEP);
        }
        let parts = self.parts(cfg);
        out.extend_from_slice(parts.join("\x1F").as_bytes());
        out
    }

    /// The owner: `carol.smith`, or `bob@example.com` with a domain.
    pub fn userid(&self) -> Option<String> {
        let local = self.localpart.as_ref()?;
        Some(match &self.domain {
            Some(domain) => format!("{local}@{domain}"),
            None => local.clone(),
        })
    }

    /// Whether this is a user's INBOX (live, no sub-folder).
    pub fn is_inbox(&self) -> bool {
        self.localpart.is_some() && self.deleted.is_none() && self.boxes.is_empty()
    }

    /// The name as `userid`'s own IMAP session (and backupcyrusd) shows it,
    /// following `mbname_extname` for a non-admin. `None` for names that
    /// have no external form there (a deleted mailbox under altnamespace, a
    /// mailbox of another domain).
    pub fn to_external(&self, cfg: &NameConfig, userid: &str) -> Option<String> {
        let viewer = MailboxName::inbox_of(userid);
        if self.domain != viewer.domain {
            return None;
        }
        let body = if cfg.altnamespace {
            self.alt_external(cfg, &viewer)?
        } else {
            self.standard_external(cfg, &viewer)?
        };
        Some(match self.deleted {
            Some(stamp) => format!("{body}{}{stamp:X}", cfg.separator()),
            None => body,
        })
    }

    fn standard_external(&self, cfg: &NameConfig, viewer: &MailboxName) -> Option<String> {
        let mut out = Vec::new();
        if self.deleted.is_some() {
            out.push(cfg.deleted_prefix.clone());
        }
        match &self.localpart {
            None => {
                let first = self.boxes.first()?;
                if first.eq_ignore_ascii_case("INBOX") {
                    return None;
                }
            }
            Some(local) if self.deleted.is_some() || self.localpart != viewer.localpart => {
                out.push("user".into());
                out.push(external_part(local, cfg));
            }
            Some(_) => out.push("INBOX".into()),
        }
        out.extend(self.boxes.iter().map(|b| external_part(b, cfg)));
        Some(join_external(&out, cfg))
    }

    fn alt_external(&self, cfg: &NameConfig, viewer: &MailboxName) -> Option<String> {
        if self.deleted.is_some() {
            return None;
        }
        let boxes: Vec<String> = self.boxes.iter().map(|b| external_part(b, cfg)).collect();
        let mut out = Vec::new();
        match &self.localpart {
            None => {
                let first = boxes.first()?;
                if boxes.len() == 1 && first == "user" {
                    return Some(cfg.user_prefix.clone());
                }
                out.push(cfg.shared_prefix.clone());
            }
            Some(local) if self.localpart != viewer.localpart => {
                out.push(cfg.user_prefix.clone());
                out.push(external_part(local, cfg));
            }
            Some(_) => {
                let Some(first) = self.boxes.first() else {
                    return Some("INBOX".into());
                };
                if self.needs_alt_prefix(first, cfg) {
                    out.push(cfg.alt_prefix.clone());
                }
            }
        }
        out.extend(boxes);
        Some(join_external(&out, cfg))
    }

    /// An own folder whose top level would be mistaken for INBOX or for one
    /// of the namespace prefixes goes under the alt prefix.
    fn needs_alt_prefix(&self, top: &str, cfg: &NameConfig) -> bool {
        if top.eq_ignore_ascii_case("INBOX") {
            return self.boxes.len() == 1 || top != "INBOX";
        }
        [&cfg.user_prefix, &cfg.shared_prefix, &cfg.alt_prefix]
            .iter()
            .any(|prefix| *prefix == top)
    }
}

/// A real name part as it appears externally: a `.` inside it stays a `.`
/// when `/` separates, and becomes `^` when `.` does.
fn external_part(part: &str, cfg: &NameConfig) -> String {
    if cfg.unixhierarchysep {
        part.to_string()
    } else {
        part.replace('.', "^")
    }
}

fn join_external(parts: &[String], cfg: &NameConfig) -> String {
    parts.join(&cfg.separator().to_string())
}

/// `internal` as a 3.6+ database name.
pub fn internal_to_dbname(internal: &str, cfg: &NameConfig) -> Vec<u8> {
    MailboxName::from_internal(internal, cfg).to_dbname(cfg)
}

/// A 3.6+ database name as an internal name.
pub fn dbname_to_internal(dbname: &[u8], cfg: &NameConfig) -> Result<String, NameError> {
    Ok(MailboxName::from_dbname(dbname, cfg)?.to_internal(cfg))
}

/// `internal` as `userid` sees it (see [`MailboxName::to_external`]).
pub fn internal_to_external(internal: &str, cfg: &NameConfig, userid: &str) -> Option<String> {
    MailboxName::from_internal(internal, cfg).to_external(cfg, userid)
}

/// The internal name of `userid`'s INBOX: `user.carol^smith`.
pub fn user_inbox_internal(userid: &str, cfg: &NameConfig) -> String {
    MailboxName::inbox_of(userid).to_internal(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn netnews() -> NameConfig {
        NameConfig::default()
    }

    fn unix() -> NameConfig {
        NameConfig {
            unixhierarchysep: true,
            ..NameConfig::default()
        }
    }

    fn alt() -> NameConfig {
        NameConfig {
            unixhierarchysep: true,
            altnamespace: true,
            ..NameConfig::default()
        }
    }

    #[test]
    fn internal_and_database_names_convert_both_ways() {
        let cases: [(&str, &[u8]); 5] = [
            ("user.bob", b"user\x1Fbob"),
            ("user.carol^smith.a^b", b"user\x1Fcarol.smith\x1Fa.b"),
            ("example.com!user.alice", b"example.com\x1Duser\x1Falice"),
            (
                "DELETED.user.carol.Old.65A1B2C3",
                b"DELETED\x1Fuser\x1Fcarol\x1FOld\x1F65A1B2C3",
            ),
            ("user.user1.Entw&APw-rfe", b"user\x1Fuser1\x1FEntw&APw-rfe"),
        ];
        for (internal, db) in cases {
            assert_eq!(internal_to_dbname(internal, &netnews()), db, "{internal}");
            assert_eq!(dbname_to_internal(db, &netnews()).unwrap(), internal);
        }
    }

    /// What backupcyrusd printed in the fixtures (`unixhierarchysep: no`):
    /// wire captures 10, 12 and 60.
    #[test]
    fn external_names_match_backupcyrusd_in_the_netnews_namespace() {
        let cfg = netnews();
        let ext = |internal, user| internal_to_external(internal, &cfg, user);
        assert_eq!(ext("user.alice", "alice").as_deref(), Some("INBOX"));
        assert_eq!(ext("user.alice.a.b", "alice").as_deref(), Some("INBOX.a.b"));
        assert_eq!(
            ext("user.carol^smith.Notes.2025", "carol.smith").as_deref(),
            Some("INBOX.Notes.2025")
        );
        assert_eq!(
            ext("DELETED.user.alice.Junk.6B079A55", "alice").as_deref(),
            Some("DELETED.user.alice.Junk.6B079A55")
        );
        assert_eq!(ext("user.bob.x", "alice").as_deref(), Some("user.bob.x"));
        assert_eq!(ext("shared.box", "alice").as_deref(), Some("shared.box"));
    }

    #[test]
    fn a_dot_in_a_folder_shows_as_a_dot_with_unixhierarchysep() {
        let cfg = unix();
        let ext = |internal, user| internal_to_external(internal, &cfg, user);
        assert_eq!(ext("user.carol.a^b", "carol").as_deref(), Some("INBOX/a.b"));
        assert_eq!(
            ext("user.carol^smith", "bob").as_deref(),
            Some("user/carol.smith")
        );
        assert_eq!(
            ext("DELETED.user.bob.Old.65A1B2C3", "bob").as_deref(),
            Some("DELETED/user/bob/Old/65A1B2C3")
        );
    }

    #[test]
    fn altnamespace_lifts_folders_beside_inbox() {
        let cfg = alt();
        let ext = |internal, user| internal_to_external(internal, &cfg, user);
        assert_eq!(ext("user.bob", "bob").as_deref(), Some("INBOX"));
        assert_eq!(ext("user.bob.Sent", "bob").as_deref(), Some("Sent"));
        assert_eq!(
            ext("user.bob.INBOX", "bob").as_deref(),
            Some("Alt Folders/INBOX")
        );
        assert_eq!(
            ext("user.carol.x", "bob").as_deref(),
            Some("Other Users/carol/x")
        );
        assert_eq!(
            ext("shared.x", "bob").as_deref(),
            Some("Shared Folders/shared/x")
        );
        assert_eq!(ext("DELETED.user.bob.Old.65A1B2C3", "bob"), None);
    }

    #[test]
    fn virtual_domains_stay_inside_their_domain() {
        let cfg = netnews();
        assert_eq!(
            user_inbox_internal("bob@example.com", &cfg),
            "example.com!user.bob"
        );
        assert_eq!(
            internal_to_external("example.com!user.bob.Sent", &cfg, "bob@example.com").as_deref(),
            Some("INBOX.Sent")
        );
        assert_eq!(
            internal_to_external("example.com!user.bob.Sent", &cfg, "bob@other.org"),
            None
        );
        let name = MailboxName::from_internal("example.com!user.bob", &cfg);
        assert_eq!(name.userid().as_deref(), Some("bob@example.com"));
        assert!(name.is_inbox());
    }

    #[test]
    fn a_deleted_name_needs_a_hex_stamp() {
        let name = MailboxName::from_internal("DELETED.user.bob.Old.65A1B2C3", &netnews());
        assert_eq!(name.deleted, Some(0x65A1B2C3));
        assert_eq!(name.userid().as_deref(), Some("bob"));
        assert_eq!(name.boxes, vec!["Old".to_string()]);
        let not_deleted = MailboxName::from_internal("DELETED.user.bob.Old", &netnews());
        assert_eq!(not_deleted.deleted, None);
        assert_eq!(not_deleted.localpart, None);
    }

    proptest! {
        #[test]
        fn arbitrary_database_names_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..60)) {
            if let Ok(name) = MailboxName::from_dbname(&bytes, &netnews()) {
                let _ = name.to_external(&alt(), "bob");
                let _ = name.to_external(&netnews(), "bob");
                let _ = name.to_internal(&netnews());
            }
        }

        #[test]
        fn user_folder_names_round_trip(
            user in "[a-z][a-z.]{0,8}",
            folders in proptest::collection::vec("[A-Za-z0-9 &.-]{1,8}", 0..4),
        ) {
            let mut name = MailboxName::inbox_of(&user);
            name.boxes = folders;
            let cfg = netnews();
            let internal = name.to_internal(&cfg);
            prop_assert_eq!(MailboxName::from_internal(&internal, &cfg), name.clone());
            let db = name.to_dbname(&cfg);
            prop_assert_eq!(MailboxName::from_dbname(&db, &cfg).unwrap(), name);
        }
    }
}
