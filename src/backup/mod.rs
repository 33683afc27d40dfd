//! One user's backup: the algorithm of DESIGN.md §4 over any [`Source`] and a
//! [`UserStore`], with no actors inside (the one-shot command, the daemon's
//! workers and the tests all call [`backup_user`]).
//!
//! Steps: the user's seen/sub files when their stat changed; the folder list;
//! deletion markers for names the server no longer lists; then per folder,
//! in server order, the plan of [`plan`]: skip, link only (a rename), or
//! fetch the meta files under the server's lock, parse `cyrus.index`, fetch
//! the messages whose GUID the store lacks (each verified against its GUID
//! before it is appended), then append the index, the other meta files and
//! the name link. Messages are deduplicated across all of the user's folders.
//!
//! Failures are contained: a folder whose index does not parse, whose
//! message changed underfoot or is missing, or that the server refuses, is
//! reported and skipped (its stored state stays as it was, the outcome is
//! `Partial`); a broken connection ends the user's run after committing what
//! was verified; only store failures and a failed folder list fail the user.

pub mod listing;
pub mod plan;
pub mod sinks;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::formats::cyrus_index::{parse_expunge, parse_index, IndexRecord};
use crate::formats::Guid;
use crate::progress::Progress;
use crate::source::{FolderStatus, MetaFile, Source, SourceError, UserFile};
use crate::store::{AppendTx, FileMeta, StoreError, UserStore};
pub use listing::Listing;
use plan::{duplicate_names, plan_folder, user_file_changed, FolderPlan, StoredFolder};
use sinks::{Collect, MessageProblem, MessageSink, Received};

/// Tunables of one user's run.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Commit and start a new transaction once one has added this many bytes,
    /// so a crash in a huge first backup loses at most this much work.
    pub checkpoint_bytes: u64,
}

impl Default for BackupOptions {
    fn default() -> BackupOptions {
        BackupOptions {
            checkpoint_bytes: 256 << 20,
        }
    }
}

/// How a user's run ended when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// Some folders were skipped with an error; the rest is stored.
    Partial,
}

/// A folder that was not backed up, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FolderError {
    pub folder: String,
    pub problem: String,
}

/// What one user's run did.
#[derive(Debug, Clone, Serialize)]
pub struct UserReport {
    pub user: String,
    pub outcome: Outcome,
    pub folders_seen: u64,
    /// Folders for which something new was stored.
    pub folders_changed: u64,
    pub messages_fetched: u64,
    pub bytes_fetched: u64,
    /// Files stored within a second of their last change: the next run
    /// fetches them again (so it must not be skipped by fingerprint).
    pub unsettled: u64,
    pub folder_errors: Vec<FolderError>,
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A user whose backup failed as a whole. Nothing of the failed run is
/// visible in the store, apart from checkpoints committed before the failure.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("user {user}: {during}: {source}")]
    Source {
        user: String,
        during: &'static str,
        #[source]
        source: Box<SourceError>,
    },
    #[error("user {user}: store: {source}")]
    Store {
        user: String,
        #[source]
        source: Box<StoreError>,
    },
}

impl BackupError {
    /// Whether trying the user again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            BackupError::Source { source, .. } => source.is_retryable(),
            BackupError::Store { source, .. } => matches!(**source, StoreError::Locked(_)),
        }
    }
}

/// Backs up `user` from `source` into `store`.
pub fn backup_user(
    source: &mut dyn Source,
    store: &mut UserStore,
    user: &str,
    options: &BackupOptions,
    progress: &dyn Progress,
) -> Result<UserReport, BackupError> {
    let listing = list_user(source, user)?;
    backup_listed(source, store, user, &listing, options, progress)
}

/// META and FMULTISTATUS for `user`: the first step of every run, apart so
/// a caller can decide from its fingerprint whether to open the store.
pub fn list_user(source: &mut dyn Source, user: &str) -> Result<Listing, BackupError> {
    Listing::fetch(source, user).map_err(|(during, source)| BackupError::Source {
        user: user.to_owned(),
        during,
        source: Box::new(source),
    })
}

/// The report of a user skipped because its listing has the fingerprint of
/// its last complete backup: every folder seen, none changed.
pub fn unchanged(user: &str, listing: &Listing, took: Duration) -> UserReport {
    UserReport {
        user: user.to_owned(),
        outcome: Outcome::Ok,
        folders_seen: listing.folders.len() as u64,
        folders_changed: 0,
        messages_fetched: 0,
        bytes_fetched: 0,
        unsettled: 0,
        folder_errors: Vec::new(),
        duration: took,
    }
}

/// Backs up `user` from a listing already fetched with [`list_user`].
pub fn backup_listed(
    source: &mut dyn Source,
    store: &mut UserStore,
    user: &str,
    listing: &Listing,
    options: &BackupOptions,
    progress: &dyn Progress,
) -> Result<UserReport, BackupError> {
    let started = Instant::now();
    progress.user_started(user);
    let mut run = Run {
        user,
        progress,
        report: UserReport {
            user: user.to_owned(),
            outcome: Outcome::Ok,
            folders_seen: 0,
            folders_changed: 0,
            messages_fetched: 0,
            bytes_fetched: 0,
            unsettled: 0,
            folder_errors: Vec::new(),
            duration: Duration::ZERO,
        },
        fetched: HashSet::new(),
    };
    run.all(source, store, listing, options)?;
    run.report.duration = started.elapsed();
    if !run.report.folder_errors.is_empty() {
        run.report.outcome = Outcome::Partial;
    }
    progress.user_finished(user);
    Ok(run.report)
}

/// Why one folder was not backed up.
enum FolderFailure {
    /// This folder only; go on with the next.
    Folder(String),
    /// The connection is gone: no further folder can be fetched.
    Transport(String),
    Store(Box<StoreError>),
}

impl From<StoreError> for FolderFailure {
    fn from(e: StoreError) -> FolderFailure {
        FolderFailure::Store(Box::new(e))
    }
}

impl FolderFailure {
    fn from_source(during: &str, e: SourceError) -> FolderFailure {
        match e {
            SourceError::Sink { source, .. } => FolderFailure::Store(Box::new(
                StoreError::Poisoned(format!("{during}: {source}")),
            )),
            e if e.is_retryable() || matches!(e, SourceError::Protocol(_)) => {
                FolderFailure::Transport(format!("{during}: {e}"))
            }
            e => FolderFailure::Folder(format!("{during}: {e}")),
        }
    }
}

struct Run<'a> {
    user: &'a str,
    progress: &'a dyn Progress,
    report: UserReport,
    /// GUIDs fetched in this run, so a message in two changed folders is fetched once.
    fetched: HashSet<Guid>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn file_meta(r: &Received) -> FileMeta {
    FileMeta::new(r.stat.size, r.stat.mtime.max(0) as u64, r.stat.inode)
}

impl Run<'_> {
    fn source_err(&self, during: &'static str) -> impl FnOnce(SourceError) -> BackupError + '_ {
        move |source| BackupError::Source {
            user: self.user.to_owned(),
            during,
            source: Box::new(source),
        }
    }

    fn store_err(&self) -> impl FnOnce(StoreError) -> BackupError + '_ {
        move |source| BackupError::Store {
            user: self.user.to_owned(),
            source: Box::new(source),
        }
    }

    fn all(
        &mut self,
        source: &mut dyn Source,
        store: &mut UserStore,
        listing: &Listing,
        options: &BackupOptions,
    ) -> Result<(), BackupError> {
        let run_time = now();
        let folders = &listing.folders;
        let mut tx = store.begin(run_time).map_err(self.store_err())?;
        self.user_files(source, &mut tx, &listing.user_files)?;
        self.extra_user_files(source, &mut tx, &listing.extra_files)?;
        let duplicates = duplicate_names(folders);
        self.mark_vanished(&mut tx, folders)?;
        for folder in folders {
            if duplicates.contains(&folder.name) {
                self.folder_error(
                    &folder.name,
                    "the server listed this folder more than once".into(),
                );
                continue;
            }
            match self.folder(source, &mut tx, folder) {
                Ok(()) => {}
                Err(FolderFailure::Folder(problem)) => self.folder_error(&folder.name, problem),
                Err(FolderFailure::Transport(problem)) => {
                    self.folder_error(&folder.name, problem);
                    break;
                }
                Err(FolderFailure::Store(e)) => return Err(self.store_err()(*e)),
            }
            if tx.bytes_added() >= options.checkpoint_bytes {
                tx.commit().map_err(self.store_err())?;
                tx = store.begin(run_time).map_err(self.store_err())?;
            }
        }
        tx.commit().map_err(self.store_err())?;
        Ok(())
    }

    fn folder_error(&mut self, folder: &str, problem: String) {
        tracing::warn!(user = self.user, folder, "{problem}");
        self.report.folder_errors.push(FolderError {
            folder: folder.to_owned(),
            problem,
        });
    }

    /// `seen` and `sub`, fetched again when their stat changed.
    fn user_files(
        &mut self,
        source: &mut dyn Source,
        tx: &mut AppendTx,
        listed: &[(UserFile, crate::source::FileStat)],
    ) -> Result<(), BackupError> {
        let mut changed = Vec::new();
        for (file, stat) in listed {
            let store = tx.store();
            let stored = store.meta_state(file.name()).map_err(self.store_err())?;
            let recheck = store
                .needs_recheck(&meta_key(file.name()))
                .map_err(self.store_err())?;
            if recheck || user_file_changed(stat, stored.as_ref()) {
                changed.push(*file);
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        let mut got = Collect::default();
        let read_at = now();
        source
            .fetch_user_files(self.user, &changed, &mut got)
            .map_err(self.source_err("META"))?;
        for (name, file) in &got.files {
            let stored = tx.store().meta_state(name).map_err(self.store_err())?;
            if !already_stored(file, stored.as_ref()) {
                tx.add_meta(name, &file_meta(file), &file.sha1, &file.bytes[..])
                    .map_err(self.store_err())?;
            }
            let racy = unsettled(&file.stat, read_at);
            self.report.unsettled += u64::from(racy);
            tx.set_recheck(&meta_key(name), racy)
                .map_err(self.store_err())?;
        }
        Ok(())
    }

    /// Per-user files beyond seen and sub, named `<dir>/<file>` on the wire:
    /// the sieve scripts our agent serves for Cyrus before 3.6. They are
    /// stored as `meta/<dir>.<file>` (`meta/sieve.main.script`), a name the
    /// Perl tools index and keep through compaction like `seen` and `sub`.
    fn extra_user_files(
        &mut self,
        source: &mut dyn Source,
        tx: &mut AppendTx,
        listed: &[(String, crate::source::FileStat)],
    ) -> Result<(), BackupError> {
        for (item, stat) in listed {
            let Some((dir, file)) = item.split_once('/') else {
                continue;
            };
            let name = format!("{dir}.{file}");
            let stored = tx.store().meta_state(&name).map_err(self.store_err())?;
            if !user_file_changed(stat, stored.as_ref()) {
                continue;
            }
            let mut got = Collect::default();
            source
                .fetch_extra_user_file(self.user, item, &mut got)
                .map_err(self.source_err("META"))?;
            if let Some(file) = got.files.get(item) {
                tx.add_meta(&name, &file_meta(file), &file.sha1, &file.bytes[..])
                    .map_err(self.store_err())?;
            }
        }
        Ok(())
    }

    /// A deletion marker for every live name the server no longer lists.
    fn mark_vanished(
        &mut self,
        tx: &mut AppendTx,
        folders: &[FolderStatus],
    ) -> Result<(), BackupError> {
        let listed: HashSet<&str> = folders.iter().map(|f| f.name.as_str()).collect();
        for (name, _) in tx.store().live_folders().map_err(self.store_err())? {
            if !listed.contains(name.as_str()) {
                tx.mark_deleted(&name).map_err(self.store_err())?;
            }
        }
        Ok(())
    }

    fn folder(
        &mut self,
        source: &mut dyn Source,
        tx: &mut AppendTx,
        folder: &FolderStatus,
    ) -> Result<(), FolderFailure> {
        let stored = stored_folder(tx, folder)?;
        let plan = plan_folder(folder, &stored);
        self.report.folders_seen += 1;
        self.progress
            .folder_seen(matches!(plan, FolderPlan::Fetch { .. }));
        match plan {
            FolderPlan::Skip => Ok(()),
            FolderPlan::Link => Ok(tx.link(&folder.name, &folder.uniqueid)?),
            FolderPlan::Fetch { link } => {
                // Changed means something new was stored: a folder fetched
                // only to recheck it (see `mv_recheck`) may turn out unchanged.
                let before = tx.bytes_added();
                self.fetch_folder(source, tx, folder, link)?;
                if tx.bytes_added() > before {
                    self.report.folders_changed += 1;
                }
                Ok(())
            }
        }
    }

    fn fetch_folder(
        &mut self,
        source: &mut dyn Source,
        tx: &mut AppendTx,
        folder: &FolderStatus,
        link: bool,
    ) -> Result<(), FolderFailure> {
        let mut meta = Collect::default();
        // Only our agent serves a 2.3 folder's cyrus.expunge.
        let items: &[MetaFile] = if source.serves_expunge() {
            &MetaFile::WITH_EXPUNGE
        } else {
            &MetaFile::ALL
        };
        let read_at = now();
        let id = source
            .fetch_folder_meta(self.user, &folder.name, items, &mut meta)
            .map_err(|e| FolderFailure::from_source("FMETA", e))?;
        // The folder may have been replaced since FMULTISTATUS: trust FMETA.
        let uniqueid = if id.uniqueid.is_empty() {
            folder.uniqueid.clone()
        } else {
            id.uniqueid
        };
        let Some(index) = meta.files.get(MetaFile::Index.name()) else {
            return Err(FolderFailure::Folder(
                "the server sent no cyrus.index".into(),
            ));
        };
        let records = records(index, meta.files.get("expunge"))?;
        let rows = self.messages(source, tx, folder, &uniqueid, &records)?;
        tx.set_indexed(&uniqueid, &rows)?;
        self.meta_files(tx, &uniqueid, &meta, items)?;
        let racy = meta.files.values().any(|f| unsettled(&f.stat, read_at));
        self.report.unsettled += u64::from(racy);
        tx.set_recheck(&folder_key(&uniqueid), racy)?;
        if link || uniqueid != folder.uniqueid {
            tx.link(&folder.name, &uniqueid)?;
        }
        Ok(())
    }

    /// Fetches what the store lacks; returns the folder's `(uid, guid)` rows.
    fn messages(
        &mut self,
        source: &mut dyn Source,
        tx: &mut AppendTx,
        folder: &FolderStatus,
        uniqueid: &str,
        records: &[IndexRecord],
    ) -> Result<Vec<(u32, Guid)>, FolderFailure> {
        let mut need = self.needs(tx, uniqueid, records)?;
        if !need.fetch.is_empty() {
            self.fetch(source, tx, folder, &mut need)?;
        }
        for (uid, guid) in need.duplicates {
            if self.fetched.contains(&guid) {
                need.rows.insert(uid, guid);
            }
        }
        Ok(need.rows.into_iter().collect())
    }

    /// Sorts a folder's records into those the store can already answer and
    /// those to fetch. A record without a GUID (Cyrus 2.3 without
    /// `guid_mode: sha1`) keeps the GUID its uid had in the last backup.
    fn needs(
        &self,
        tx: &AppendTx,
        uniqueid: &str,
        records: &[IndexRecord],
    ) -> Result<Needs, StoreError> {
        let known: HashMap<u32, Guid> = tx.store().indexed(uniqueid)?.into_iter().collect();
        let mut need = Needs::default();
        let mut fetching = HashSet::new();
        for r in records.iter().filter(|r| !r.is_unlinked()) {
            if r.is_expunged() {
                need.expunged.insert(r.uid);
            }
            let guid = if r.guid.is_null() {
                known.get(&r.uid).copied()
            } else {
                Some(r.guid)
            };
            match guid {
                Some(g) if self.fetched.contains(&g) || tx.has_message(&g)? => {
                    need.rows.insert(r.uid, g);
                }
                Some(g) if !fetching.insert(g) => need.duplicates.push((r.uid, g)),
                guid => {
                    need.fetch.insert(r.uid, guid);
                }
            }
        }
        Ok(need)
    }

    /// FDATA of every uid in `need.fetch`, each verified and appended as it arrives.
    fn fetch(
        &mut self,
        source: &mut dyn Source,
        tx: &mut AppendTx,
        folder: &FolderStatus,
        need: &mut Needs,
    ) -> Result<(), FolderFailure> {
        let mut uids: Vec<u32> = need.fetch.keys().copied().collect();
        uids.sort_unstable();
        let mut sink = MessageSink::new(tx, &need.fetch, &need.expunged, self.progress);
        let result = source.fetch_messages(self.user, &folder.name, &uids, &mut sink);
        self.report.messages_fetched += sink.messages;
        self.report.bytes_fetched += sink.bytes;
        self.fetched.extend(sink.stored.values().copied());
        need.rows.extend(sink.stored.iter().map(|(u, g)| (*u, *g)));
        let problems = std::mem::take(&mut sink.problems);
        result.map_err(|e| FolderFailure::from_source("FDATA", e))?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(FolderFailure::Folder(describe(&problems)))
        }
    }

    /// Appends the index and the other meta files that changed, and delete
    /// markers for the ones the server no longer has. Only the items asked
    /// for are considered: a server not asked for `expunge` has not said
    /// that a stored one is gone.
    fn meta_files(
        &mut self,
        tx: &mut AppendTx,
        uniqueid: &str,
        meta: &Collect,
        asked: &[MetaFile],
    ) -> Result<(), FolderFailure> {
        let index = MetaFile::Index.name();
        let others = asked.iter().map(|m| m.name()).filter(|n| *n != index);
        for name in std::iter::once(index).chain(others) {
            match meta.files.get(name) {
                Some(file) => {
                    let stored = tx.store().folder_file_state(uniqueid, name)?;
                    if !already_stored(file, stored.as_ref()) {
                        tx.add_folder_file(
                            uniqueid,
                            name,
                            &file_meta(file),
                            &file.sha1,
                            &file.bytes[..],
                        )?;
                    }
                }
                None => {
                    tx.delete_folder_file(uniqueid, name)?;
                }
            }
        }
        Ok(())
    }
}

/// What a changed folder needs, from its index records.
#[derive(Default)]
struct Needs {
    /// uid -> GUID the store already holds.
    rows: BTreeMap<u32, Guid>,
    /// uid -> the GUID to expect (`None`: take the file's own SHA-1).
    fetch: HashMap<u32, Option<Guid>>,
    /// Further uids of a GUID already being fetched for another uid.
    duplicates: Vec<(u32, Guid)>,
    /// Expunged records: their files may be gone already.
    expunged: HashSet<u32>,
}

fn stored_folder(tx: &AppendTx, folder: &FolderStatus) -> Result<StoredFolder, StoreError> {
    let store = tx.store();
    let mut stored: HashMap<String, _> =
        store.folder_files(&folder.uniqueid)?.into_iter().collect();
    let mut files = BTreeMap::new();
    for kind in MetaFile::WITH_EXPUNGE {
        if let Some(stat) = stored.remove(kind.name()) {
            files.insert(kind, stat);
        }
    }
    Ok(StoredFolder {
        linked_uniqueid: store.folder_for_name(&folder.name)?,
        files,
        recheck: store.needs_recheck(&folder_key(&folder.uniqueid))?,
    })
}

/// Whether the store's copy has the received file's bytes and stat: a file
/// fetched again only to recheck it is not appended a second time, while a
/// file rewritten with the same bytes (a new inode) is, so its stat settles.
fn already_stored(file: &Received, stored: Option<&crate::store::FileStat>) -> bool {
    stored.is_some_and(|s| {
        s.sha1.as_deref() == Some(file.sha1.to_hex().as_str())
            && s.size == file.stat.size
            && i64::try_from(s.mtime).ok() == Some(file.stat.mtime)
            && s.inode == file.stat.inode
    })
}

/// The `mv_recheck` keys of a folder and of a user file.
fn folder_key(uniqueid: &str) -> String {
    format!("folder:{uniqueid}")
}

fn meta_key(name: &str) -> String {
    format!("meta:{name}")
}

/// A file changed in the second its read began, or later: a change made
/// after the read in that same second would leave its stat as it is.
fn unsettled(stat: &crate::source::FileStat, read_at: u64) -> bool {
    stat.mtime >= i64::try_from(read_at).unwrap_or(i64::MAX)
}

/// The index's records, plus a 2.3 `cyrus.expunge`'s (expunged but present).
fn records(
    index: &Received,
    expunge: Option<&Received>,
) -> Result<Vec<IndexRecord>, FolderFailure> {
    let (_, mut records) = parse_index(&index.bytes)
        .map_err(|e| FolderFailure::Folder(format!("cyrus.index: {e}")))?;
    if let Some(expunge) = expunge {
        let (_, extra) = parse_expunge(&expunge.bytes)
            .map_err(|e| FolderFailure::Folder(format!("cyrus.expunge: {e}")))?;
        let present: HashSet<u32> = records.iter().map(|r| r.uid).collect();
        records.extend(
            extra
                .into_iter()
                .filter(|r| !present.contains(&r.uid))
                .map(|mut r| {
                    r.internal_flags |= crate::formats::cyrus_index::FLAG_INTERNAL_EXPUNGED;
                    r
                }),
        );
    }
    Ok(records)
}

fn describe(problems: &[MessageProblem]) -> String {
    let parts: Vec<String> = problems
        .iter()
        .take(5)
        .map(|p| match p {
            MessageProblem::ChangedUnderfoot { uid, expected, got } => {
                format!("message uid {uid} changed underfoot: the index says {expected}, the file is {got}")
            }
            MessageProblem::Missing { uid, why } => format!("message uid {uid} is missing ({why})"),
        })
        .collect();
    let more = problems.len().saturating_sub(parts.len());
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("{}{tail}", parts.join("; "))
}
