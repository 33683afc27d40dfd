//! Entries of `mailboxes.db`, in every key and value form Cyrus has written
//! (cyrus-formats §7.2–§7.6), and the two questions a backup asks of it:
//! which users exist, and which folders one user has.
//!
//! Key forms: up to 3.4 the key is the internal name; from 3.6 the mailbox
//! records are keyed `N` + database name, beside `I` (by uniqueid), `A`
//! (reverse ACL) and `$…` records, which are skipped. Value forms: 2.x
//! `"<mbtype> <partition> <acl>"`, and from 2.5 a dlist `%(…)`.

use thiserror::Error;

use super::cyrusdb::{CyrusDb, CyrusDbError};
use super::dlist::{Dlist, DlistError};
use super::mailbox_name::{MailboxName, NameConfig, NameError};

/// What can be wrong with a `mailboxes.db` record.
#[derive(Debug, Error)]
pub enum MailboxesDbError {
    #[error(transparent)]
    Db(#[from] CyrusDbError),
    #[error("mailboxes.db key {key:?}: {source}")]
    Name {
        key: String,
        #[source]
        source: NameError,
    },
    #[error("mailboxes.db key {key:?}: the key is not UTF-8")]
    KeyNotUtf8 { key: String },
    #[error("mailboxes.db entry {name}: {source}")]
    Dlist {
        name: String,
        #[source]
        source: DlistError,
    },
    #[error("mailboxes.db entry {name}: {problem}")]
    Value { name: String, problem: String },
}

/// What kind of mailbox an entry is (the 3.6+ first T letter; the 2.x bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MailboxKind {
    #[default]
    Email,
    Netnews,
    Collection,
    Calendar,
    Addressbook,
    Submission,
    PushSubscription,
    Sieve,
}

impl MailboxKind {
    fn from_letter(letter: u8) -> Option<MailboxKind> {
        Some(match letter {
            b'e' => MailboxKind::Email,
            b'n' => MailboxKind::Netnews,
            b'b' => MailboxKind::Collection,
            b'c' => MailboxKind::Calendar,
            b'a' => MailboxKind::Addressbook,
            b's' => MailboxKind::Submission,
            b'p' => MailboxKind::PushSubscription,
            b'f' => MailboxKind::Sieve,
            _ => return None,
        })
    }

    /// The 3.6+ kind letter.
    pub fn letter(self) -> char {
        match self {
            MailboxKind::Email => 'e',
            MailboxKind::Netnews => 'n',
            MailboxKind::Collection => 'b',
            MailboxKind::Calendar => 'c',
            MailboxKind::Addressbook => 'a',
            MailboxKind::Submission => 's',
            MailboxKind::PushSubscription => 'p',
            MailboxKind::Sieve => 'f',
        }
    }
}

/// The mailbox type: its kind and flags (§7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailboxType {
    pub kind: MailboxKind,
    /// A tombstone: the name is gone, the record stays for replication.
    pub deleted: bool,
    /// A placeholder parent with no files.
    pub intermediate: bool,
    /// Lives on another server of a murder.
    pub remote: bool,
    /// Being created.
    pub reserved: bool,
    /// Being moved between servers.
    pub moving: bool,
    /// Name-based directories (§5.3) rather than uuid ones (§5.4). True for
    /// every entry of a ≤3.4 database, where no other layout exists.
    pub legacy_dirs: bool,
}

impl MailboxType {
    /// The T letters, 2.5–3.4 or 3.6+ alike: the kind letters mean the same
    /// in both, so the first one found gives the kind.
    pub fn from_letters(letters: &[u8]) -> MailboxType {
        let mut mbtype = MailboxType::default();
        let mut kind = None;
        for &letter in letters {
            match letter {
                b'd' => mbtype.deleted = true,
                b'i' => mbtype.intermediate = true,
                b'r' => mbtype.remote = true,
                b'z' => mbtype.reserved = true,
                b'm' => mbtype.moving = true,
                b'l' => mbtype.legacy_dirs = true,
                other => kind = kind.or(MailboxKind::from_letter(other)),
            }
        }
        mbtype.kind = kind.unwrap_or_default();
        mbtype
    }

    /// The numeric mbtype of 2.x values and ≤3.4 dumps.
    pub fn from_legacy_bits(bits: u32) -> MailboxType {
        let has = |bit: u32| bits & bit != 0;
        let kind = [
            (4, MailboxKind::Netnews),
            (32, MailboxKind::Calendar),
            (64, MailboxKind::Addressbook),
            (128, MailboxKind::Collection),
            (512, MailboxKind::Submission),
            (1024, MailboxKind::PushSubscription),
        ]
        .into_iter()
        .find(|(bit, _)| has(*bit))
        .map(|(_, kind)| kind)
        .unwrap_or_default();
        MailboxType {
            kind,
            remote: has(1),
            reserved: has(2),
            moving: has(8),
            deleted: has(16),
            intermediate: has(256),
            legacy_dirs: true,
        }
    }

    /// The 3.6+ T string (kind letter, then flag letters in alphabetical
    /// order), whatever form the type was read from, so that one spelling
    /// describes entries of every database version.
    pub fn letters(&self) -> String {
        let flags = [
            (self.deleted, 'd'),
            (self.intermediate, 'i'),
            (self.legacy_dirs, 'l'),
            (self.moving, 'm'),
            (self.remote, 'r'),
            (self.reserved, 'z'),
        ];
        std::iter::once(self.kind.letter())
            .chain(flags.into_iter().filter(|(on, _)| *on).map(|(_, l)| l))
            .collect()
    }

    /// A folder with files of its own on this server: what a backup copies.
    pub fn is_live(&self) -> bool {
        !(self.deleted || self.intermediate || self.remote || self.reserved || self.moving)
    }
}

/// One mailbox as `mailboxes.db` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailboxEntry {
    /// Cyrus internal name: `user.bob.Sent`, `example.com!user.bob`.
    pub internal_name: String,
    pub mbtype: MailboxType,
    /// Empty only for records without files (tombstones, intermediates).
    pub partition: String,
    /// The murder server, for remote mailboxes.
    pub server: Option<String>,
    pub uniqueid: Option<String>,
    pub uidvalidity: Option<u32>,
    /// `(identifier, rights)` in stored order.
    pub acl: Vec<(String, String)>,
    pub createdmodseq: Option<u64>,
    pub foldermodseq: Option<u64>,
    /// Seconds since the epoch.
    pub mtime: Option<i64>,
}

/// How a database spells its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// ≤3.4: the internal name.
    InternalNames,
    /// 3.6+: `N` + database name, beside `I`, `A` and `$` records.
    DbNames,
}

impl KeyForm {
    /// 3.6+ keys contain the 0x1F separator (or 0x1D for domains), which
    /// no internal name can.
    pub fn detect(db: &CyrusDb) -> Result<KeyForm, MailboxesDbError> {
        // 3.6+ files sort the `I<uniqueid>` records (one per mailbox) before
        // the `N` ones: look at the first `N` records before walking them all.
        for record in db.iter_prefix(b"N").take(8) {
            let (key, _) = record?;
            if key.iter().any(|&b| b == 0x1F || b == 0x1D) {
                return Ok(KeyForm::DbNames);
            }
        }
        for record in db.iter() {
            let (key, _) = record?;
            if key.iter().any(|&b| b == 0x1F || b == 0x1D) {
                return Ok(KeyForm::DbNames);
            }
        }
        Ok(KeyForm::InternalNames)
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The internal name a key stands for, or `None` for keys that are not
/// mailbox records.
fn key_name(
    form: KeyForm,
    key: &[u8],
    cfg: &NameConfig,
) -> Result<Option<String>, MailboxesDbError> {
    match form {
        KeyForm::DbNames => {
            let Some(dbname) = key.strip_prefix(b"N") else {
                return Ok(None);
            };
            let name =
                MailboxName::from_dbname(dbname, cfg).map_err(|source| MailboxesDbError::Name {
                    key: lossy(key),
                    source,
                })?;
            Ok(Some(name.to_internal(cfg)))
        }
        KeyForm::InternalNames => {
            if key.first() == Some(&b'$') {
                return Ok(None);
            }
            let name = std::str::from_utf8(key)
                .map_err(|_| MailboxesDbError::KeyNotUtf8 { key: lossy(key) })?;
            Ok(Some(name.to_string()))
        }
    }
}

/// Decodes one record. `Ok(None)` for records that are not mailboxes.
pub fn decode_record(
    form: KeyForm,
    key: &[u8],
    value: &[u8],
    cfg: &NameConfig,
) -> Result<Option<MailboxEntry>, MailboxesDbError> {
    let Some(name) = key_name(form, key, cfg)? else {
        return Ok(None);
    };
    let mut entry = decode_value(&name, value)?;
    if form == KeyForm::InternalNames {
        entry.mbtype.legacy_dirs = true;
    }
    Ok(Some(entry))
}

/// Decodes a value of either form for the mailbox `name`.
pub fn decode_value(name: &str, value: &[u8]) -> Result<MailboxEntry, MailboxesDbError> {
    if value.starts_with(b"%(") {
        decode_dlist(name, value)
    } else {
        decode_legacy(name, value)
    }
}

fn value_error(name: &str, problem: impl Into<String>) -> MailboxesDbError {
    MailboxesDbError::Value {
        name: name.to_string(),
        problem: problem.into(),
    }
}

/// 2.x: `"<mbtype decimal> <[server!]partition> <acl>"`, the ACL as
/// `id TAB rights TAB` pairs.
fn decode_legacy(name: &str, value: &[u8]) -> Result<MailboxEntry, MailboxesDbError> {
    let text = std::str::from_utf8(value).map_err(|_| value_error(name, "value is not UTF-8"))?;
    let mut fields = text.splitn(3, ' ');
    let bits = fields
        .next()
        .and_then(|t| t.parse::<u32>().ok())
        .ok_or_else(|| value_error(name, format!("bad mbtype in {text:?}")))?;
    let place = fields
        .next()
        .ok_or_else(|| value_error(name, format!("no partition in {text:?}")))?;
    let (server, partition) = match place.split_once('!') {
        Some((server, partition)) => (Some(server.to_string()), partition.to_string()),
        None => (None, place.to_string()),
    };
    Ok(MailboxEntry {
        internal_name: name.to_string(),
        mbtype: MailboxType::from_legacy_bits(bits),
        partition,
        server,
        acl: tab_acl(fields.next().unwrap_or_default()),
        ..MailboxEntry::default()
    })
}

fn tab_acl(text: &str) -> Vec<(String, String)> {
    let parts: Vec<&str> = text.split('\t').collect();
    parts
        .chunks(2)
        .filter_map(|pair| match pair {
            [id, rights] if !id.is_empty() => Some((id.to_string(), rights.to_string())),
            _ => None,
        })
        .collect()
}

/// 2.5+: `%(A %(…) I … P … S … T … V … C … F … M …)`.
fn decode_dlist(name: &str, value: &[u8]) -> Result<MailboxEntry, MailboxesDbError> {
    let parsed = Dlist::parse(value).map_err(|source| MailboxesDbError::Dlist {
        name: name.to_string(),
        source,
    })?;
    let text = |key: &str| -> Option<String> { parsed.get(key)?.as_bytes().map(lossy) };
    Ok(MailboxEntry {
        internal_name: name.to_string(),
        mbtype: MailboxType::from_letters(text("T").unwrap_or_default().as_bytes()),
        partition: text("P").unwrap_or_default(),
        server: text("S").filter(|s| !s.is_empty()),
        uniqueid: text("I"),
        uidvalidity: number(name, "V", text("V"))?,
        acl: dlist_acl(parsed.get("A")),
        createdmodseq: number(name, "C", text("C"))?,
        foldermodseq: number(name, "F", text("F"))?,
        mtime: number(name, "M", text("M"))?,
    })
}

fn number<T: std::str::FromStr>(
    name: &str,
    field: &str,
    text: Option<String>,
) -> Result<Option<T>, MailboxesDbError> {
    text.map(|t| {
        t.parse()
            .map_err(|_| value_error(name, format!("field {field} is not a number: {t:?}")))
    })
    .transpose()
}

/// The ACL is a key-value list; very old dlist values kept the 2.x string.
fn dlist_acl(value: Option<&Dlist>) -> Vec<(String, String)> {
    match value {
        Some(Dlist::Kv(pairs)) => pairs
            .iter()
            .map(|(id, rights)| (id.clone(), rights.as_bytes().map(lossy).unwrap_or_default()))
            .collect(),
        Some(Dlist::Atom(text)) => tab_acl(&lossy(text)),
        _ => Vec::new(),
    }
}

/// Every mailbox entry, in database order.
pub fn entries(db: &CyrusDb, cfg: &NameConfig) -> Result<Vec<MailboxEntry>, MailboxesDbError> {
    let form = KeyForm::detect(db)?;
    let mut out = Vec::new();
    for record in db.iter() {
        let (key, value) = record?;
        out.extend(decode_record(form, &key, &value, cfg)?);
    }
    Ok(out)
}

/// Whether to list a user's `DELETED.…` folders too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletedFolders {
    Exclude,
    /// After the live ones, as backupcyrusd's FMULTISTATUS does.
    Include,
}

/// One user's folders (§7.6): the INBOX, then its descendants in database
/// order, then optionally the user's deleted folders. Only live entries
/// (see [`MailboxType::is_live`]).
pub fn user_folders(
    db: &CyrusDb,
    userid: &str,
    cfg: &NameConfig,
    deleted: DeletedFolders,
) -> Result<Vec<MailboxEntry>, MailboxesDbError> {
    let form = KeyForm::detect(db)?;
    let inbox = MailboxName::inbox_of(userid);
    let mut folders = subtree(db, form, &inbox, cfg, |name| name.deleted.is_none())?;
    if deleted == DeletedFolders::Include {
        // The deleted copies sit under `DELETED.user.<localpart>`.
        let graveyard = MailboxName {
            domain: inbox.domain.clone(),
            deleted: None,
            localpart: None,
            boxes: vec![
                cfg.deleted_prefix.clone(),
                "user".into(),
                inbox.localpart.clone().unwrap_or_default(),
            ],
        };
        folders.extend(subtree(db, form, &graveyard, cfg, |name| {
            name.deleted.is_some() && name.userid() == inbox.userid()
        })?);
    }
    Ok(folders)
}

/// The live entries at or below `root` whose parsed name passes `keep`.
fn subtree(
    db: &CyrusDb,
    form: KeyForm,
    root: &MailboxName,
    cfg: &NameConfig,
    keep: impl Fn(&MailboxName) -> bool,
) -> Result<Vec<MailboxEntry>, MailboxesDbError> {
    let (prefix, separator) = match form {
        KeyForm::DbNames => ([b"N".as_slice(), &root.to_dbname(cfg)].concat(), 0x1F),
        KeyForm::InternalNames => (root.to_internal(cfg).into_bytes(), b'.'),
    };
    // ≤3.4 files may use the "mbox" collation, so they are walked whole.
    let records = match form {
        KeyForm::DbNames => db.iter_prefix(&prefix),
        KeyForm::InternalNames => db.iter(),
    };
    let mut out = Vec::new();
    for record in records {
        let (key, value) = record?;
        let Some(rest) = key.strip_prefix(prefix.as_slice()) else {
            continue;
        };
        if !(rest.is_empty() || rest.first() == Some(&separator)) {
            continue;
        }
        let Some(entry) = decode_record(form, &key, &value, cfg)? else {
            continue;
        };
        if entry.mbtype.is_live() && keep(&MailboxName::from_internal(&entry.internal_name, cfg)) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Every user with a live INBOX, in database order: what USERS answers.
pub fn users(db: &CyrusDb, cfg: &NameConfig) -> Result<Vec<String>, MailboxesDbError> {
    Ok(entries(db, cfg)?
        .into_iter()
        .filter(|entry| entry.mbtype.is_live())
        .map(|entry| MailboxName::from_internal(&entry.internal_name, cfg))
        .filter(MailboxName::is_inbox)
        .filter_map(|name| name.userid())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> NameConfig {
        NameConfig::default()
    }

    #[test]
    fn a_2x_value_gives_type_partition_and_acl() {
        let entry = decode_record(
            KeyForm::InternalNames,
            b"user.bob.Sent",
            b"0 default bob\tlrswipkxtecda\tanyone\tp\t",
            &cfg(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(entry.internal_name, "user.bob.Sent");
        assert_eq!(entry.partition, "default");
        assert_eq!(entry.server, None);
        assert!(entry.mbtype.is_live() && entry.mbtype.legacy_dirs);
        assert_eq!(
            entry.acl,
            vec![
                ("bob".to_string(), "lrswipkxtecda".to_string()),
                ("anyone".to_string(), "p".to_string())
            ]
        );
        assert_eq!(entry.uniqueid, None);
    }

    #[test]
    fn a_remote_2x_value_splits_server_and_partition() {
        let entry = decode_value("user.bob", b"1 imap2!default bob\tlrs\t").unwrap();
        assert_eq!(entry.server.as_deref(), Some("imap2"));
        assert_eq!(entry.partition, "default");
        assert!(entry.mbtype.remote && !entry.mbtype.is_live());
    }

    #[test]
    fn a_3_4_dlist_value_under_an_internal_name() {
        let entry = decode_record(
            KeyForm::InternalNames,
            b"example.com!user.bob.Cal",
            b"%(A %(bob lrswipkxtecdan) I 5a6b7c8d-0000-4000-8000-000000000001 P default \
              T c V 1700000002 C 3 F 4 M 1795658654)",
            &cfg(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(entry.internal_name, "example.com!user.bob.Cal");
        assert_eq!(entry.mbtype.kind, MailboxKind::Calendar);
        assert!(entry.mbtype.legacy_dirs);
        assert_eq!(
            entry.uniqueid.as_deref(),
            Some("5a6b7c8d-0000-4000-8000-000000000001")
        );
        assert_eq!(entry.uidvalidity, Some(1700000002));
        assert_eq!(
            (entry.createdmodseq, entry.foldermodseq),
            (Some(3), Some(4))
        );
        assert_eq!(entry.mtime, Some(1795658654));
    }

    #[test]
    fn a_3_6_n_record_with_a_dotted_folder() {
        let entry = decode_record(
            KeyForm::DbNames,
            b"Nuser\x1Fcarol\x1Fa.b",
            b"%(T el I aaaa0000-0000-4000-8000-000000000003 P default V 1700000001 \
              M 1795658670 A %(carol lrswipkxtecdan))",
            &cfg(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(entry.internal_name, "user.carol.a^b");
        assert_eq!(entry.mbtype.kind, MailboxKind::Email);
        assert!(entry.mbtype.legacy_dirs);
        assert_eq!(entry.createdmodseq, None);
    }

    #[test]
    fn i_a_and_dollar_records_are_not_mailboxes() {
        for key in [&b"I0b1c2d3e"[..], b"A\x1Ebob", b"$RACL"] {
            let decoded = decode_record(KeyForm::DbNames, key, b"%(T e)", &cfg()).unwrap();
            assert_eq!(decoded, None);
        }
        let racl = decode_record(KeyForm::InternalNames, b"$RACL\x00bob", b"", &cfg()).unwrap();
        assert_eq!(racl, None);
    }

    #[test]
    fn type_letters_of_tombstones_and_intermediates() {
        let tomb = MailboxType::from_letters(b"ed");
        assert!(tomb.deleted && !tomb.is_live());
        assert!(MailboxType::from_letters(b"ei").intermediate);
        assert_eq!(MailboxType::from_letters(b"f").kind, MailboxKind::Sieve);
        assert_eq!(MailboxType::from_letters(b"").kind, MailboxKind::Email);
        assert!(MailboxType::from_legacy_bits(16).deleted);
    }

    #[test]
    fn letters_spell_any_type_the_3_6_way() {
        for text in ["e", "el", "ed", "fl", "cdilmrz", "ei"] {
            assert_eq!(MailboxType::from_letters(text.as_bytes()).letters(), text);
        }
        // 2.x: a deleted calendar; every ≤3.4 entry has name-based directories.
        assert_eq!(MailboxType::from_legacy_bits(16 | 32).letters(), "cdl");
    }

    #[test]
    fn a_bad_number_names_the_mailbox_and_field() {
        let err = decode_value("user.bob", b"%(V soon)").unwrap_err();
        assert_eq!(
            err.to_string(),
            "mailboxes.db entry user.bob: field V is not a number: \"soon\""
        );
    }

    /// A 3.6 database as flat text: bob's INBOX and folders, a tombstone, a
    /// deleted folder, and "bobby", whose name merely starts with "bob".
    fn bob_db() -> CyrusDb {
        let lines: [&[u8]; 7] = [
            b"NDELETED\x1Fuser\x1Fbob\x1FOld\x1F65A1B2C3\t%(T e I d1 P default)\n",
            b"Nuser\x1Fbob\t%(T e I b0 P default)\n",
            b"Nuser\x1Fbob\x1FGone\t%(T ed I g0)\n",
            b"Nuser\x1Fbob\x1FSent\t%(T e I b1 P default)\n",
            b"Nuser\x1Fbob\x1FSent\x1F2024\t%(T e I b2 P p2)\n",
            b"Nuser\x1Fbobby\t%(T e I y0 P default)\n",
            b"Ib0\t%(T e N user\x1Fbob P default)\n",
        ];
        CyrusDb::from_bytes("mailboxes.db", lines.concat()).unwrap()
    }

    #[test]
    fn user_folders_lists_the_inbox_then_live_descendants_then_deleted_ones() {
        let db = bob_db();
        let names = |deleted| -> Vec<String> {
            user_folders(&db, "bob", &cfg(), deleted)
                .unwrap()
                .into_iter()
                .map(|e| e.internal_name)
                .collect()
        };
        assert_eq!(
            names(DeletedFolders::Exclude),
            vec!["user.bob", "user.bob.Sent", "user.bob.Sent.2024"]
        );
        assert_eq!(
            names(DeletedFolders::Include),
            vec![
                "user.bob",
                "user.bob.Sent",
                "user.bob.Sent.2024",
                "DELETED.user.bob.Old.65A1B2C3"
            ]
        );
        assert_eq!(users(&db, &cfg()).unwrap(), vec!["bob", "bobby"]);
    }

    #[test]
    fn a_2x_database_is_listed_the_same_way() {
        let db = CyrusDb::from_bytes(
            "mailboxes.db",
            b"user.bob\t0 default bob\tlrs\t\nuser.bob-x\t0 default x\tlrs\t\n\
              user.bob.Sent\t0 default bob\tlrs\t\n"
                .to_vec(),
        )
        .unwrap();
        assert_eq!(KeyForm::detect(&db).unwrap(), KeyForm::InternalNames);
        let folders = user_folders(&db, "bob", &cfg(), DeletedFolders::Exclude).unwrap();
        let names: Vec<_> = folders.iter().map(|e| e.internal_name.as_str()).collect();
        assert_eq!(names, vec!["user.bob", "user.bob.Sent"]);
        assert_eq!(users(&db, &cfg()).unwrap(), vec!["bob", "bob-x"]);
    }

    proptest! {
        #[test]
        fn arbitrary_values_never_panic(
            key in proptest::collection::vec(any::<u8>(), 0..30),
            value in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let _ = decode_record(KeyForm::DbNames, &key, &value, &cfg());
            let _ = decode_record(KeyForm::InternalNames, &key, &value, &cfg());
        }
    }
}
