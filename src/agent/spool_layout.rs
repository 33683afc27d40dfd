//! Where Cyrus keeps a mailbox's files and a user's files (spec
//! `cyrus-formats.md` §5, §6).
//!
//! Two layouts coexist on one server: the legacy one, where the path follows
//! the mailbox name (2.x to 3.4, and 3.6+ mailboxes typed `l`), and the uuid
//! one of 3.6+, where every mailbox is a flat directory named by its uniqueid.
//! The layout is always decided from the mailboxes.db entry, never guessed
//! from the name.

use std::path::{Path, PathBuf};

use super::imapd_conf::ImapdConf;

/// A mailbox whose files cannot be located.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("mailbox {mailbox}: partition {partition:?} is not configured")]
    UnknownPartition { mailbox: String, partition: String },
    #[error("mailbox {mailbox}: the uuid layout needs a uniqueid, and it has none")]
    NoUniqueid { mailbox: String },
    #[error("mailbox {mailbox}: name or uniqueid {part:?} would leave the spool")]
    UnsafeName { mailbox: String, part: String },
}

/// What decides a mailbox's directory: its mailboxes.db entry.
#[derive(Debug, Clone, Copy)]
pub struct MailboxPlace<'a> {
    /// Internal name, `.`-separated: `user.bob.Sent`, `example.com!user.bob`.
    pub internal_name: &'a str,
    pub partition: &'a str,
    pub uniqueid: Option<&'a str>,
    /// The mailbox is typed `l` (or predates 3.6): name-based directories.
    pub legacy: bool,
}

/// The meta files of a mailbox, by the name `metapartition_files` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaFileKind {
    Header,
    Index,
    Cache,
    Expunge,
    Annotations,
}

impl MetaFileKind {
    pub fn file_name(self) -> &'static str {
        match self {
            MetaFileKind::Header => "cyrus.header",
            MetaFileKind::Index => "cyrus.index",
            MetaFileKind::Cache => "cyrus.cache",
            MetaFileKind::Expunge => "cyrus.expunge",
            MetaFileKind::Annotations => "cyrus.annotations",
        }
    }

    fn conf_name(self) -> &'static str {
        match self {
            MetaFileKind::Header => "header",
            MetaFileKind::Index => "index",
            MetaFileKind::Cache => "cache",
            MetaFileKind::Expunge => "expunge",
            MetaFileKind::Annotations => "annotations",
        }
    }
}

/// A user's own files in the config directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserFileKind {
    Seen,
    Sub,
}

impl UserFileKind {
    fn suffix(self) -> &'static str {
        match self {
            UserFileKind::Seen => "seen",
            UserFileKind::Sub => "sub",
        }
    }
}

/// Resolves paths for one Cyrus configuration.
#[derive(Debug, Clone)]
pub struct SpoolLayout {
    conf: ImapdConf,
}

impl SpoolLayout {
    pub fn new(conf: ImapdConf) -> SpoolLayout {
        SpoolLayout { conf }
    }

    pub fn conf(&self) -> &ImapdConf {
        &self.conf
    }

    /// The directory holding the mailbox's `<uid>.` message files.
    pub fn data_dir(&self, mbox: &MailboxPlace) -> Result<PathBuf, LayoutError> {
        let root = partition_root(&self.conf.partitions, mbox)?;
        Ok(root.join(self.relative_dir(mbox)?))
    }

    /// The directory holding ARCHIVED messages (3.0+), or the data directory
    /// when no archive partition is configured.
    pub fn archive_dir(&self, mbox: &MailboxPlace) -> Result<PathBuf, LayoutError> {
        match self.conf.archive_partitions.get(mbox.partition) {
            Some(root) => Ok(root.join(self.relative_dir(mbox)?)),
            None => self.data_dir(mbox),
        }
    }

    /// The path of a meta file, on the metapartition when configured for it.
    pub fn meta_file(
        &self,
        mbox: &MailboxPlace,
        kind: MetaFileKind,
    ) -> Result<PathBuf, LayoutError> {
        let meta_root = self.conf.meta_partitions.get(mbox.partition);
        let dir = match meta_root {
            Some(root) if self.conf.on_meta_partition(kind.conf_name()) => {
                root.join(self.relative_dir(mbox)?)
            }
            _ => self.data_dir(mbox)?,
        };
        Ok(dir.join(kind.file_name()))
    }

    /// The path of message `uid`: `<dir>/<uid>.`.
    pub fn message_file(
        &self,
        mbox: &MailboxPlace,
        uid: u32,
        archived: bool,
    ) -> Result<PathBuf, LayoutError> {
        let dir = if archived {
            self.archive_dir(mbox)?
        } else {
            self.data_dir(mbox)?
        };
        Ok(dir.join(format!("{uid}.")))
    }

    /// A user's seen or subscription file. `inbox` is the user's INBOX entry:
    /// a uuid-layout INBOX keeps the user's files under its uniqueid (3.6+).
    pub fn user_file(
        &self,
        userid: &str,
        inbox: &MailboxPlace,
        kind: UserFileKind,
    ) -> Result<PathBuf, LayoutError> {
        let config = &self.conf.config_directory;
        if !inbox.legacy {
            let dir = uuid_dir(inbox)?;
            return Ok(config
                .join("user")
                .join(dir)
                .join(format!("{}.db", kind.suffix())));
        }
        check_component(inbox.internal_name, userid)?;
        let (domain, local) = split_domain(userid, '@');
        let mut path = config.to_path_buf();
        if let (Some(domain), true) = (domain, self.conf.virt_domains) {
            path.push("domain");
            path.push(self.hash(domain).to_string());
            path.push(domain);
        }
        path.push("user");
        path.push(self.hash(local).to_string());
        path.push(format!("{local}.{}", kind.suffix()));
        Ok(path)
    }

    /// The sieve directory of a user (scripts live only here before 3.6).
    pub fn sieve_dir(
        &self,
        userid: &str,
        inbox: &MailboxPlace,
    ) -> Result<Option<PathBuf>, LayoutError> {
        let Some(root) = &self.conf.sieve_dir else {
            return Ok(None);
        };
        if !inbox.legacy {
            return Ok(Some(root.join(uuid_dir(inbox)?)));
        }
        check_component(inbox.internal_name, userid)?;
        let (domain, local) = split_domain(userid, '@');
        let mut path = root.clone();
        if let (Some(domain), true) = (domain, self.conf.virt_domains) {
            path.push("domain");
            path.push(self.hash(domain).to_string());
            path.push(domain);
        }
        path.push(self.hash(local).to_string());
        path.push(local);
        Ok(Some(path))
    }

    /// The path of a mailbox's directory below its partition root.
    fn relative_dir(&self, mbox: &MailboxPlace) -> Result<PathBuf, LayoutError> {
        if mbox.legacy {
            self.legacy_dir(mbox)
        } else {
            uuid_dir(mbox)
        }
    }

    fn legacy_dir(&self, mbox: &MailboxPlace) -> Result<PathBuf, LayoutError> {
        let (domain, name) = split_domain(mbox.internal_name, '!');
        let mut path = PathBuf::new();
        if let (Some(domain), true) = (domain, self.conf.virt_domains) {
            check_component(mbox.internal_name, domain)?;
            path.push("domain");
            if self.conf.hash_imap_spool {
                path.push(self.hash(domain).to_string());
            }
            path.push(domain);
        }
        let parts: Vec<&str> = name.split('.').collect();
        for part in &parts {
            check_component(mbox.internal_name, part)?;
        }
        if self.conf.hash_imap_spool {
            let hashed = parts.get(1).unwrap_or(&parts[0]);
            path.push(self.hash(hashed).to_string());
        }
        path.extend(parts);
        Ok(path)
    }

    /// Cyrus's `dir_hash_c`: one letter that spreads directories.
    pub fn hash(&self, s: &str) -> char {
        dir_hash(s, self.conf.full_dir_hash)
    }
}

/// Cyrus's directory hash: the first letter of `s` (`q` for a non-letter),
/// or with `fulldirhash` a letter `A`..`W` from a shift-xor hash of the bytes
/// before the first `.`.
pub fn dir_hash(s: &str, full: bool) -> char {
    if full {
        let n = s
            .bytes()
            .take_while(|&c| c != b'.')
            .fold(0u32, |n, c| ((n << 3) ^ (n >> 5)) ^ u32::from(c));
        char::from(b'A' + (n % 23) as u8)
    } else {
        match s.bytes().next().map(|c| c.to_ascii_lowercase()) {
            Some(c @ b'a'..=b'z') => char::from(c),
            _ => 'q',
        }
    }
}

fn partition_root<'c>(
    roots: &'c std::collections::BTreeMap<String, PathBuf>,
    mbox: &MailboxPlace,
) -> Result<&'c Path, LayoutError> {
    roots
        .get(mbox.partition)
        .map(PathBuf::as_path)
        .ok_or_else(|| LayoutError::UnknownPartition {
            mailbox: mbox.internal_name.to_owned(),
            partition: mbox.partition.to_owned(),
        })
}

/// `uuid/<u0>/<u1>/<uniqueid>`.
fn uuid_dir(mbox: &MailboxPlace) -> Result<PathBuf, LayoutError> {
    let id = mbox.uniqueid.ok_or_else(|| LayoutError::NoUniqueid {
        mailbox: mbox.internal_name.to_owned(),
    })?;
    check_component(mbox.internal_name, id)?;
    let mut chars = id.chars();
    let (Some(a), Some(b)) = (chars.next(), chars.next()) else {
        return Err(LayoutError::UnsafeName {
            mailbox: mbox.internal_name.to_owned(),
            part: id.to_owned(),
        });
    };
    Ok(["uuid", &a.to_string(), &b.to_string(), id]
        .iter()
        .collect())
}

/// `domain!rest` or `local@domain` split into the domain and the rest.
fn split_domain(name: &str, sep: char) -> (Option<&str>, &str) {
    match (sep, name.split_once(sep)) {
        ('!', Some((domain, rest))) => (Some(domain), rest),
        ('@', Some((local, domain))) => (Some(domain), local),
        _ => (None, name),
    }
}

/// A path component taken from a name must stay inside its parent.
fn check_component(mailbox: &str, part: &str) -> Result<(), LayoutError> {
    let bad = part.is_empty()
        || part == "."
        || part == ".."
        || part.contains(['/', '\0'])
        || part.len() > 255;
    if bad {
        return Err(LayoutError::UnsafeName {
            mailbox: mailbox.to_owned(),
            part: part.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(extra: &str) -> SpoolLayout {
        let text = format!(
            "configdirectory: /c\npartition-default: /var/spool/cyrus/mail\n\
             metapartition-default: /meta\narchivepartition-default: /arch\nsievedir: /sieve\n{extra}"
        );
        SpoolLayout::new(ImapdConf::parse(&text, Path::new("imapd.conf")).unwrap())
    }

    fn legacy(name: &str) -> MailboxPlace<'_> {
        MailboxPlace {
            internal_name: name,
            partition: "default",
            uniqueid: None,
            legacy: true,
        }
    }

    #[test]
    fn full_dir_hash_matches_the_letters_cyrus_uses() {
        // spec §5.3: checked against Cyrus
        assert_eq!(dir_hash("bob", true), 'E');
        assert_eq!(dir_hash("carol", true), 'B');
        assert_eq!(dir_hash("alice", true), 'L');
        assert_eq!(dir_hash("example.com", true), 'O');
        assert_eq!(dir_hash("Bob", false), 'b');
        assert_eq!(dir_hash("1abc", false), 'q');
    }

    #[test]
    fn legacy_paths_follow_the_spec_table() {
        let plain = layout("");
        let sent = plain.data_dir(&legacy("user.bob.Sent")).unwrap();
        assert_eq!(sent, Path::new("/var/spool/cyrus/mail/user/bob/Sent"));
        let hashed = layout("hashimapspool: yes\n");
        let inbox = hashed.data_dir(&legacy("user.bob")).unwrap();
        assert_eq!(inbox, Path::new("/var/spool/cyrus/mail/b/user/bob"));
        let full = layout("hashimapspool: yes\nfulldirhash: yes\n");
        assert_eq!(
            full.data_dir(&legacy("user.bob")).unwrap(),
            Path::new("/var/spool/cyrus/mail/E/user/bob")
        );
        let domains = layout("hashimapspool: yes\nvirtdomains: yes\n");
        assert_eq!(
            domains.data_dir(&legacy("example.com!user.bob")).unwrap(),
            Path::new("/var/spool/cyrus/mail/domain/e/example.com/b/user/bob")
        );
        let shared = hashed.data_dir(&legacy("shared.folder")).unwrap();
        assert_eq!(shared, Path::new("/var/spool/cyrus/mail/f/shared/folder"));
    }

    #[test]
    fn uuid_paths_ignore_the_name_and_the_hash_settings() {
        let l = layout("hashimapspool: yes\nfulldirhash: yes\n");
        let mbox = MailboxPlace {
            internal_name: "user.bob.Sent",
            partition: "default",
            uniqueid: Some("5a6b7c8d-0000-4000-8000-000000000001"),
            legacy: false,
        };
        assert_eq!(
            l.data_dir(&mbox).unwrap(),
            Path::new("/var/spool/cyrus/mail/uuid/5/a/5a6b7c8d-0000-4000-8000-000000000001")
        );
        assert_eq!(
            l.message_file(&mbox, 7, true).unwrap(),
            Path::new("/arch/uuid/5/a/5a6b7c8d-0000-4000-8000-000000000001/7.")
        );
        assert_eq!(
            l.user_file("bob", &mbox, UserFileKind::Seen).unwrap(),
            Path::new("/c/user/uuid/5/a/5a6b7c8d-0000-4000-8000-000000000001/seen.db")
        );
    }

    #[test]
    fn meta_files_move_only_when_listed() {
        let l = layout("metapartition_files: index header\n");
        let mbox = legacy("user.bob");
        assert_eq!(
            l.meta_file(&mbox, MetaFileKind::Index).unwrap(),
            Path::new("/meta/user/bob/cyrus.index")
        );
        assert_eq!(
            l.meta_file(&mbox, MetaFileKind::Cache).unwrap(),
            Path::new("/var/spool/cyrus/mail/user/bob/cyrus.cache")
        );
    }

    #[test]
    fn user_files_are_always_hashed() {
        let l = layout("");
        let inbox = legacy("user.bob");
        assert_eq!(
            l.user_file("bob", &inbox, UserFileKind::Sub).unwrap(),
            Path::new("/c/user/b/bob.sub")
        );
        let v = layout("virtdomains: yes\n");
        let inbox = legacy("example.com!user.alice");
        assert_eq!(
            v.user_file("alice@example.com", &inbox, UserFileKind::Seen)
                .unwrap(),
            Path::new("/c/domain/e/example.com/user/a/alice.seen")
        );
        assert_eq!(
            l.sieve_dir("bob", &legacy("user.bob")).unwrap().unwrap(),
            Path::new("/sieve/b/bob")
        );
    }

    #[test]
    fn hostile_names_never_leave_the_spool() {
        let l = layout("");
        for name in ["user.bob..x", "user.../x", "user.a/../../etc"] {
            assert!(
                matches!(
                    l.data_dir(&legacy(name)),
                    Err(LayoutError::UnsafeName { .. })
                ),
                "{name}"
            );
        }
        let bad_id = MailboxPlace {
            uniqueid: Some("../../etc"),
            legacy: false,
            ..legacy("user.x")
        };
        assert!(l.data_dir(&bad_id).is_err());
        assert!(l
            .user_file("../x", &legacy("user.x"), UserFileKind::Seen)
            .is_err());
        let unknown = MailboxPlace {
            partition: "nope",
            ..legacy("user.x")
        };
        assert!(matches!(
            l.data_dir(&unknown),
            Err(LayoutError::UnknownPartition { .. })
        ));
    }
}
