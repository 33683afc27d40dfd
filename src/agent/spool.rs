//! The spool reader: a [`Source`] over one Cyrus instance's own files, given
//! its `imapd.conf`, answering as backupcyrusd would (spec backup-protocol
//! §1.4-§1.6) for any Cyrus from 2.3 to 3.12.
//!
//! * USERS and FMULTISTATUS read `mailboxes.db` (under a shared lock, copied
//!   into memory, lock released). FMULTISTATUS only `stat()`s `cyrus.header`,
//!   `cyrus.index`, `cyrus.annotations` (and `cyrus.expunge`): it never opens
//!   or stats a message file. The counters prove it.
//! * FMETA takes the shared lock Cyrus's readers take on `cyrus.index`, reads
//!   header, index, annotations (and expunge) into memory, checks the index,
//!   releases the lock, and only then writes to the client: a slow client
//!   never holds up Cyrus, unlike backupcyrusd which writes under the lock.
//! * FDATA reads the index under the lock to learn which uids have records
//!   and which are ARCHIVED, releases it, then streams the message files.
//!   Expunged-but-present records are served; for Cyrus 2.3 folders (index
//!   version < 12) the records of `cyrus.expunge` too. backupcyrusd keeps a
//!   name lock while streaming so cleanup cannot unlink a file under it; we
//!   take no name lock, so a file unlinked in between is `NO no such file`.
//! * jmapid: Cyrus ≤ 3.12 has none (3.13 derives `P-F`-like ids from the
//!   created modseq); we always send `-`.
//! * Sieve: before 3.6 scripts live only in `sievedir`, so for users whose
//!   INBOX has the legacy layout META also lists and serves every file of
//!   the user's sieve directory as an item `sieve/<file>` (`defaultbc`, a
//!   symlink to the active bytecode, is served as the bytes it points to).
//!   3.6+ uuid users keep their scripts in the `#sieve` folder, which is
//!   backed up like any folder.
//! * Every name from a client is checked first ([`super::client_names`]);
//!   every damaged file is a `NO` or a per-item failure, never a panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::client_names::{check_file, check_folder, check_user, BadName};
use super::db_cache::{DbCache, FileVersion};
use super::imapd_conf::{ConfError, ImapdConf};
use super::index_lock::SharedIndexLock;
use super::mailbox_annotations::{mailbox_annotations, synthetic_inode, to_json};
use super::spool_io::{CountedFs, FileKind, SpoolCounters};
use super::spool_layout::{MailboxPlace, MetaFileKind, SpoolLayout, UserFileKind};
use crate::formats::cyrus_header::CyrusHeader;
use crate::formats::cyrus_index::{parse_expunge, parse_index, IndexRecord};
use crate::formats::cyrusdb::CyrusDb;
use crate::formats::mailbox_name::{user_inbox_internal, MailboxName, NameConfig};
use crate::formats::mailboxes_db::{self, DeletedFolders, KeyForm, MailboxEntry};
use crate::source::{
    deliver, FileHead, FileSink, FileStat, FolderId, FolderStatus, ItemFailure, MetaFile, Source,
    SourceError, UserFile,
};

/// How long FMETA/FDATA wait for Cyrus to let go of an index or database.
pub const DEFAULT_LOCK_PATIENCE: Duration = Duration::from_secs(10);

/// What we send as jmapid: Cyrus ≤ 3.12 has none.
pub const NO_JMAPID: &str = "-";

/// The first index minor version without `cyrus.expunge` (Cyrus 2.4).
const FIRST_MERGED_EXPUNGE_VERSION: u32 = 12;

/// The META item prefix for sieve scripts.
const SIEVE_PREFIX: &str = "sieve/";

/// A spool that cannot be served at all.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(transparent)]
    Conf(#[from] ConfError),
}

/// See the module doc.
#[derive(Debug, Clone)]
pub struct Spool {
    layout: SpoolLayout,
    names: NameConfig,
    fs: CountedFs,
    /// `mailboxes.db` and `annotations.db`, parsed, while unchanged.
    dbs: DbCache<CyrusDb>,
    lock_patience: Duration,
}

/// One of a user's folders as mailboxes.db lists it.
struct Folder {
    entry: MailboxEntry,
    external: String,
}

impl Folder {
    fn place(&self) -> MailboxPlace<'_> {
        MailboxPlace {
            internal_name: &self.entry.internal_name,
            partition: &self.entry.partition,
            uniqueid: self.entry.uniqueid.as_deref(),
            legacy: self.entry.mbtype.legacy_dirs,
        }
    }
}

/// mailboxes.db as one command sees it.
struct Mailboxes {
    db: Arc<CyrusDb>,
    form: KeyForm,
}

/// Meta files read under the index lock: `(bytes, stat)` of those that exist.
type MetaSnapshot = HashMap<MetaFile, (Vec<u8>, FileStat)>;

fn refused(text: impl Into<String>) -> SourceError {
    SourceError::No(text.into())
}

fn bad_name(e: BadName) -> SourceError {
    refused(e.to_string())
}

fn sink_error(item: &str) -> impl FnOnce(crate::source::SinkError) -> SourceError + '_ {
    move |source| SourceError::Sink {
        item: item.to_string(),
        source,
    }
}

impl Spool {
    /// Reads `imapd.conf` and serves the instance it describes.
    pub fn open(imapd_conf: &Path) -> Result<Spool, SpoolError> {
        Ok(Spool::new(ImapdConf::load(imapd_conf)?))
    }

    pub fn new(conf: ImapdConf) -> Spool {
        let names = NameConfig {
            unixhierarchysep: conf.unix_hierarchy_sep,
            altnamespace: conf.alt_namespace,
            ..NameConfig::default()
        };
        Spool {
            layout: SpoolLayout::new(conf),
            names,
            fs: CountedFs::default(),
            dbs: DbCache::default(),
            lock_patience: DEFAULT_LOCK_PATIENCE,
        }
    }

    /// How long to wait for a lock Cyrus holds before answering `NO`.
    pub fn with_lock_patience(mut self, patience: Duration) -> Spool {
        self.lock_patience = patience;
        self
    }

    /// Counters of what this spool (and its clones) opened, read and stat'ed.
    pub fn counters(&self) -> Arc<SpoolCounters> {
        self.fs.counters()
    }

    /// The configuration's `servername`, backupcyrusd's slot.
    pub fn servername(&self) -> Option<&str> {
        self.layout.conf().servername.as_deref()
    }

    /// A cyrus database copied into memory under a shared lock, so a commit
    /// in progress is never seen half-written; the copy serves later
    /// commands while the file is unchanged ([`super::db_cache`]). `None`
    /// when it does not exist.
    fn read_db(&self, path: &Path) -> Result<Option<Arc<CyrusDb>>, SourceError> {
        let cannot = |what: &str, e: std::io::Error| {
            refused(format!("cannot {what} {}: {e}", path.display()))
        };
        let Some(now) = self.fs.metadata(path).map_err(|e| cannot("stat", e))? else {
            self.dbs.forget(path);
            return Ok(None);
        };
        if let Some(db) = self.dbs.get(path, &FileVersion::of(&now)) {
            return Ok(Some(db));
        }
        let lock = match SharedIndexLock::acquire(path, self.lock_patience) {
            Ok(lock) => lock,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(cannot("lock", e)),
        };
        self.fs.opened_elsewhere();
        let read = lock.file().metadata().map_err(|e| cannot("stat", e))?;
        let bytes = self
            .fs
            .read_all(lock.file())
            .map_err(|e| cannot("read", e))?;
        drop(lock);
        let db = CyrusDb::from_bytes(path.display().to_string(), bytes)
            .map_err(|e| refused(format!("cannot read the database: {e}")))?;
        Ok(Some(self.dbs.put(path, FileVersion::of(&read), db)))
    }

    fn mailboxes(&self) -> Result<Mailboxes, SourceError> {
        let path = self.layout.conf().mailboxes_db();
        let db = self
            .read_db(&path)?
            .ok_or_else(|| refused(format!("{} does not exist", path.display())))?;
        let form = KeyForm::detect(&db).map_err(|e| refused(e.to_string()))?;
        Ok(Mailboxes { db, form })
    }

    /// The user's folders in FMULTISTATUS order, with their external names.
    fn user_folders(&self, mailboxes: &Mailboxes, user: &str) -> Result<Vec<Folder>, SourceError> {
        let entries =
            mailboxes_db::user_folders(&mailboxes.db, user, &self.names, DeletedFolders::Include)
                .map_err(|e| refused(e.to_string()))?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                let external = MailboxName::from_internal(&entry.internal_name, &self.names)
                    .to_external(&self.names, user)?;
                Some(Folder { entry, external })
            })
            .collect())
    }

    fn find_folder(
        &self,
        mailboxes: &Mailboxes,
        user: &str,
        folder: &str,
    ) -> Result<Option<Folder>, SourceError> {
        Ok(self
            .user_folders(mailboxes, user)?
            .into_iter()
            .find(|f| f.external == folder))
    }

    /// The user's INBOX entry, for the user files; `None` for no such user.
    fn inbox(
        &self,
        mailboxes: &Mailboxes,
        user: &str,
    ) -> Result<Option<MailboxEntry>, SourceError> {
        let name = MailboxName::inbox_of(user);
        let key = match mailboxes.form {
            KeyForm::DbNames => [b"N".as_slice(), &name.to_dbname(&self.names)].concat(),
            KeyForm::InternalNames => name.to_internal(&self.names).into_bytes(),
        };
        let Some(value) = mailboxes.db.get(&key).map_err(|e| refused(e.to_string()))? else {
            return Ok(None);
        };
        let entry = mailboxes_db::decode_record(mailboxes.form, &key, &value, &self.names)
            .map_err(|e| refused(e.to_string()))?;
        Ok(entry.filter(|e| e.mbtype.is_live()))
    }

    /// The internal name backupcyrusd names in FMETA's `NO no such folder`.
    fn internal_guess(&self, user: &str, folder: &str) -> String {
        let inbox = user_inbox_internal(user, &self.names);
        let sep = self.names.separator();
        match folder.strip_prefix("INBOX") {
            Some("") => inbox,
            Some(rest) if rest.starts_with(sep) => {
                let parts: Vec<String> = rest
                    .split(sep)
                    .skip(1)
                    .map(|p| {
                        if self.names.unixhierarchysep {
                            p.replace('.', "^")
                        } else {
                            p.to_string()
                        }
                    })
                    .collect();
                format!("{inbox}.{}", parts.join("."))
            }
            _ => folder.to_string(),
        }
    }

    fn meta_path(&self, folder: &Folder, kind: MetaFileKind) -> Result<PathBuf, SourceError> {
        self.layout
            .meta_file(&folder.place(), kind)
            .map_err(|e| refused(e.to_string()))
    }

    /// The folder's uniqueid: from mailboxes.db, or (2.x) from its header.
    fn uniqueid(&self, folder: &Folder) -> Result<String, SourceError> {
        if let Some(id) = &folder.entry.uniqueid {
            return Ok(id.clone());
        }
        let path = self.meta_path(folder, MetaFileKind::Header)?;
        let (bytes, _) = self
            .fs
            .read(&path)
            .map_err(|e| refused(format!("cannot read {}: {e}", path.display())))?
            .ok_or_else(|| refused(format!("{} does not exist", path.display())))?;
        CyrusHeader::parse(&bytes)
            .map(|h| h.uniqueid)
            .map_err(|e| refused(format!("{}: {e}", path.display())))
    }

    fn folder_id(&self, folder: &Folder) -> Result<FolderId, SourceError> {
        Ok(FolderId {
            uniqueid: self.uniqueid(folder)?,
            jmapid: NO_JMAPID.to_string(),
        })
    }

    /// The `mailbox_annotations` body, empty when the folder has none.
    fn mailbox_annotations_body(
        &self,
        annotations: Option<&CyrusDb>,
        form: KeyForm,
        folder: &Folder,
        user: &str,
    ) -> Result<Vec<u8>, SourceError> {
        let Some(db) = annotations else {
            return Ok(Vec::new());
        };
        let key = match form {
            KeyForm::DbNames => self.uniqueid(folder)?,
            KeyForm::InternalNames => folder.entry.internal_name.clone(),
        };
        let found = mailbox_annotations(db, &key, user).map_err(|e| refused(e.to_string()))?;
        Ok(if found.is_empty() {
            Vec::new()
        } else {
            to_json(&found)
        })
    }

    fn annotations_db(&self) -> Result<Option<Arc<CyrusDb>>, SourceError> {
        self.read_db(&self.layout.conf().annotations_db())
    }

    /// `stat()` of the folder's meta files, and the synthetic annotations.
    fn meta_stats(
        &self,
        folder: &Folder,
        annotations_body: &[u8],
    ) -> Result<Vec<(MetaFile, FileStat)>, SourceError> {
        let mut out = Vec::new();
        let on_disk = [
            (MetaFile::Header, MetaFileKind::Header),
            (MetaFile::Index, MetaFileKind::Index),
            (MetaFile::Annotations, MetaFileKind::Annotations),
        ];
        for (file, kind) in on_disk {
            if let Some(stat) = self.stat_meta(folder, kind)? {
                out.push((file, stat));
            }
        }
        if !annotations_body.is_empty() {
            out.push((
                MetaFile::MailboxAnnotations,
                annotations_stat(annotations_body),
            ));
        }
        if let Some(stat) = self.stat_meta(folder, MetaFileKind::Expunge)? {
            out.push((MetaFile::Expunge, stat));
        }
        Ok(out)
    }

    fn stat_meta(
        &self,
        folder: &Folder,
        kind: MetaFileKind,
    ) -> Result<Option<FileStat>, SourceError> {
        let path = self.meta_path(folder, kind)?;
        self.fs
            .stat(&path)
            .map_err(|e| refused(format!("cannot stat {}: {e}", path.display())))
    }

    /// Header, index, annotations and (when asked) expunge, read under the
    /// index lock; the lock is gone when this returns. The index is checked
    /// (CRCs, length) so a torn or damaged one is refused, not served.
    fn meta_snapshot(
        &self,
        folder: &Folder,
        with_expunge: bool,
    ) -> Result<MetaSnapshot, SourceError> {
        let index_path = self.meta_path(folder, MetaFileKind::Index)?;
        let mut snapshot = MetaSnapshot::new();
        let lock = match SharedIndexLock::acquire(&index_path, self.lock_patience) {
            Ok(lock) => Some(lock),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(refused(format!(
                    "cannot lock {}: {e}",
                    index_path.display()
                )))
            }
        };
        if let Some(lock) = &lock {
            self.fs.opened_elsewhere();
            let read =
                |e: std::io::Error| refused(format!("cannot read {}: {e}", index_path.display()));
            let stat = super::spool_io::file_stat(&lock.file().metadata().map_err(read)?);
            let bytes = self.fs.read_all(lock.file()).map_err(read)?;
            snapshot.insert(MetaFile::Index, (bytes, stat));
        }
        let mut others = vec![
            (MetaFile::Header, MetaFileKind::Header),
            (MetaFile::Annotations, MetaFileKind::Annotations),
        ];
        if with_expunge {
            others.push((MetaFile::Expunge, MetaFileKind::Expunge));
        }
        for (file, kind) in others {
            let path = self.meta_path(folder, kind)?;
            let found = self
                .fs
                .read(&path)
                .map_err(|e| refused(format!("cannot read {}: {e}", path.display())))?;
            if let Some(found) = found {
                snapshot.insert(file, found);
            }
        }
        drop(lock);
        if let Some((bytes, _)) = snapshot.get(&MetaFile::Index) {
            parse_index(bytes).map_err(|e| refused(format!("{}: {e}", index_path.display())))?;
        }
        Ok(snapshot)
    }

    /// uid → ARCHIVED, for every record of the index (expunged ones too)
    /// and, for 2.3 folders, of `cyrus.expunge`.
    fn records(&self, folder: &Folder) -> Result<HashMap<u32, bool>, SourceError> {
        let snapshot = self.meta_snapshot(folder, true)?;
        let index_path = self.meta_path(folder, MetaFileKind::Index)?;
        let (bytes, _) = snapshot
            .get(&MetaFile::Index)
            .ok_or_else(|| refused(format!("{} does not exist", index_path.display())))?;
        let (header, records) =
            parse_index(bytes).map_err(|e| refused(format!("{}: {e}", index_path.display())))?;
        let mut uids: HashMap<u32, bool> = records.iter().map(uid_and_archived).collect();
        if header.minor_version < FIRST_MERGED_EXPUNGE_VERSION {
            if let Some((bytes, _)) = snapshot.get(&MetaFile::Expunge) {
                let path = self.meta_path(folder, MetaFileKind::Expunge)?;
                let (_, expunged) = parse_expunge(bytes)
                    .map_err(|e| refused(format!("{}: {e}", path.display())))?;
                for (uid, archived) in expunged.iter().map(uid_and_archived) {
                    uids.entry(uid).or_insert(archived);
                }
            }
        }
        Ok(uids)
    }

    /// Streams one message file, or reports it missing.
    fn send_message(
        &self,
        folder: &Folder,
        uid: u32,
        archived: Option<bool>,
        sink: &mut dyn FileSink,
    ) -> Result<(), SourceError> {
        let name = uid.to_string();
        let Some(archived) = archived else {
            return sink
                .missing(&name, &ItemFailure::NoSuchFile)
                .map_err(sink_error(&name));
        };
        let path = self
            .layout
            .message_file(&folder.place(), uid, archived)
            .map_err(|e| refused(e.to_string()))?;
        match self.fs.open(&path, FileKind::Message) {
            Ok(Some((file, stat))) => {
                let head = FileHead { name, stat };
                deliver(sink, &head, &mut self.fs.reader(file)).map(drop)
            }
            Ok(None) => sink
                .missing(&name, &ItemFailure::NoSuchFile)
                .map_err(sink_error(&name)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open a message file");
                sink.missing(&name, &ItemFailure::FailedToOpen)
                    .map_err(sink_error(&name))
            }
        }
    }

    fn user_file_path(
        &self,
        user: &str,
        inbox: &MailboxEntry,
        kind: UserFileKind,
    ) -> Result<PathBuf, SourceError> {
        self.layout
            .user_file(user, &place_of(inbox), kind)
            .map_err(|e| refused(e.to_string()))
    }

    /// The sieve directory of a legacy-layout user, `None` otherwise.
    fn legacy_sieve_dir(&self, user: &str) -> Result<Option<PathBuf>, SourceError> {
        let mailboxes = self.mailboxes()?;
        let Some(inbox) = self.inbox(&mailboxes, user)? else {
            return Ok(None);
        };
        if !inbox.mbtype.legacy_dirs {
            return Ok(None);
        }
        self.layout
            .sieve_dir(user, &place_of(&inbox))
            .map_err(|e| refused(e.to_string()))
    }
}

fn place_of(entry: &MailboxEntry) -> MailboxPlace<'_> {
    MailboxPlace {
        internal_name: &entry.internal_name,
        partition: &entry.partition,
        uniqueid: entry.uniqueid.as_deref(),
        legacy: entry.mbtype.legacy_dirs,
    }
}

fn uid_and_archived(record: &IndexRecord) -> (u32, bool) {
    (record.uid, record.is_archived())
}

/// backupcyrusd's stat of the synthetic file: its length, mtime 0, and an
/// "inode" from its SHA-1.
fn annotations_stat(body: &[u8]) -> FileStat {
    FileStat {
        size: body.len() as u64,
        mtime: 0,
        inode: synthetic_inode(body),
    }
}

fn user_file_kind(file: UserFile) -> UserFileKind {
    match file {
        UserFile::Seen => UserFileKind::Seen,
        UserFile::Sub => UserFileKind::Sub,
    }
}

impl Source for Spool {
    fn ping(&mut self) -> Result<(), SourceError> {
        Ok(())
    }

    fn users(&mut self) -> Result<Vec<String>, SourceError> {
        let mailboxes = self.mailboxes()?;
        mailboxes_db::users(&mailboxes.db, &self.names).map_err(|e| refused(e.to_string()))
    }

    fn user_files(&mut self, user: &str) -> Result<Vec<(UserFile, FileStat)>, SourceError> {
        check_user(user).map_err(bad_name)?;
        let mailboxes = self.mailboxes()?;
        let Some(inbox) = self.inbox(&mailboxes, user)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for file in UserFile::ALL {
            let path = self.user_file_path(user, &inbox, user_file_kind(file))?;
            let stat = self
                .fs
                .stat(&path)
                .map_err(|e| refused(format!("cannot stat {}: {e}", path.display())))?;
            out.extend(stat.map(|s| (file, s)));
        }
        Ok(out)
    }

    fn fetch_user_files(
        &mut self,
        user: &str,
        items: &[UserFile],
        sink: &mut dyn FileSink,
    ) -> Result<(), SourceError> {
        check_user(user).map_err(bad_name)?;
        let mailboxes = self.mailboxes()?;
        let inbox = self.inbox(&mailboxes, user)?;
        for &item in items {
            let found = match &inbox {
                Some(inbox) => {
                    let path = self.user_file_path(user, inbox, user_file_kind(item))?;
                    self.fs
                        .read(&path)
                        .map_err(|e| refused(format!("cannot read {}: {e}", path.display())))?
                }
                None => None,
            };
            send_bytes(sink, item.name(), found, ItemFailure::NoSuchFile)?;
        }
        Ok(())
    }

    fn extra_user_files(&mut self, user: &str) -> Result<Vec<(String, FileStat)>, SourceError> {
        check_user(user).map_err(bad_name)?;
        let Some(dir) = self.legacy_sieve_dir(user)? else {
            return Ok(Vec::new());
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(refused(format!("cannot list {}: {e}", dir.display()))),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| check_file(name).is_ok())
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let path = dir.join(&name);
            if let Ok(Some(stat)) = self.fs.stat(&path) {
                if path.is_file() {
                    out.push((format!("{SIEVE_PREFIX}{name}"), stat));
                }
            }
        }
        Ok(out)
    }

    fn fetch_extra_user_file(
        &mut self,
        user: &str,
        name: &str,
        sink: &mut dyn FileSink,
    ) -> Result<(), SourceError> {
        check_user(user).map_err(bad_name)?;
        let Some(file) = name
            .strip_prefix(SIEVE_PREFIX)
            .filter(|f| check_file(f).is_ok())
        else {
            return send_bytes(sink, name, None, ItemFailure::NoSuchFile);
        };
        let found = match self.legacy_sieve_dir(user)? {
            Some(dir) => {
                let path = dir.join(file);
                self.fs
                    .read(&path)
                    .map_err(|e| refused(format!("cannot read {}: {e}", path.display())))?
            }
            None => None,
        };
        send_bytes(sink, name, found, ItemFailure::NoSuchFile)
    }

    fn serves_expunge(&self) -> bool {
        true
    }

    fn folders(&mut self, user: &str) -> Result<Vec<FolderStatus>, SourceError> {
        check_user(user).map_err(bad_name)?;
        let mailboxes = self.mailboxes()?;
        let folders = self.user_folders(&mailboxes, user)?;
        if folders.is_empty() {
            return Ok(Vec::new());
        }
        let annotations = self.annotations_db()?;
        let mut out = Vec::with_capacity(folders.len());
        for folder in &folders {
            let body = self.mailbox_annotations_body(
                annotations.as_deref(),
                mailboxes.form,
                folder,
                user,
            )?;
            out.push(FolderStatus {
                name: folder.external.clone(),
                uniqueid: self.uniqueid(folder)?,
                jmapid: NO_JMAPID.to_string(),
                files: self.meta_stats(folder, &body)?,
            });
        }
        Ok(out)
    }

    fn folder_meta_stat(
        &mut self,
        user: &str,
        folder: &str,
    ) -> Result<(Vec<(MetaFile, FileStat)>, FolderId), SourceError> {
        check_user(user).map_err(bad_name)?;
        check_folder(folder).map_err(bad_name)?;
        let mailboxes = self.mailboxes()?;
        let found = self.find_folder(&mailboxes, user, folder)?.ok_or_else(|| {
            refused(format!(
                "no such folder {}",
                self.internal_guess(user, folder)
            ))
        })?;
        let annotations = self.annotations_db()?;
        let body =
            self.mailbox_annotations_body(annotations.as_deref(), mailboxes.form, &found, user)?;
        Ok((self.meta_stats(&found, &body)?, self.folder_id(&found)?))
    }

    fn fetch_folder_meta(
        &mut self,
        user: &str,
        folder: &str,
        items: &[MetaFile],
        sink: &mut dyn FileSink,
    ) -> Result<FolderId, SourceError> {
        check_user(user).map_err(bad_name)?;
        check_folder(folder).map_err(bad_name)?;
        let mailboxes = self.mailboxes()?;
        let found = self.find_folder(&mailboxes, user, folder)?.ok_or_else(|| {
            refused(format!(
                "no such folder {}",
                self.internal_guess(user, folder)
            ))
        })?;
        let id = self.folder_id(&found)?;
        let mut snapshot = self.meta_snapshot(&found, items.contains(&MetaFile::Expunge))?;
        if items.contains(&MetaFile::MailboxAnnotations) {
            let annotations = self.annotations_db()?;
            let body = self.mailbox_annotations_body(
                annotations.as_deref(),
                mailboxes.form,
                &found,
                user,
            )?;
            if !body.is_empty() {
                let stat = annotations_stat(&body);
                snapshot.insert(MetaFile::MailboxAnnotations, (body, stat));
            }
        }
        for &item in items {
            let absent = match item {
                MetaFile::MailboxAnnotations => ItemFailure::Empty,
                _ => ItemFailure::NoSuchFile,
            };
            send_bytes(sink, item.name(), snapshot.remove(&item), absent)?;
        }
        Ok(id)
    }

    fn fetch_messages(
        &mut self,
        user: &str,
        folder: &str,
        uids: &[u32],
        sink: &mut dyn FileSink,
    ) -> Result<FolderId, SourceError> {
        check_user(user).map_err(bad_name)?;
        check_folder(folder).map_err(bad_name)?;
        let mailboxes = self.mailboxes()?;
        let found = self
            .find_folder(&mailboxes, user, folder)?
            .ok_or_else(|| refused(format!("no such folder {folder}")))?;
        let id = self.folder_id(&found)?;
        let records = self.records(&found)?;
        for &uid in uids {
            self.send_message(&found, uid, records.get(&uid).copied(), sink)?;
        }
        Ok(id)
    }
}

/// One in-memory file to the sink, or its absence.
fn send_bytes(
    sink: &mut dyn FileSink,
    name: &str,
    found: Option<(Vec<u8>, FileStat)>,
    absent: ItemFailure,
) -> Result<(), SourceError> {
    match found {
        Some((bytes, stat)) => {
            let head = FileHead {
                name: name.to_string(),
                stat: FileStat {
                    size: bytes.len() as u64,
                    ..stat
                },
            };
            deliver(sink, &head, &mut bytes.as_slice()).map(drop)
        }
        None => sink.missing(name, &absent).map_err(sink_error(name)),
    }
}
