//! One user's store: `<dir>/backupstate.sqlite3`, `<dir>/backupdata-<epoch>.tar[.gz]`
//! and `<dir>/.lock`.
//!
//! Commit protocol (one [`AppendTx`]):
//! 1. `BEGIN IMMEDIATE` on sqlite; entries are appended to the data file
//!    (for `.gz`, into gzip members of at most `member_bound` uncompressed
//!    bytes, cut only between entries) while their rows go into the open
//!    transaction.
//! 2. Commit: close the open member, `fsync` the data file, then write
//!    `status` (size on disk, uncompressed offset) with the member rows and
//!    `COMMIT`. Nothing is visible before this last step.
//! 3. Abort (or drop, or a crash): roll back sqlite and cut the data file
//!    back to the committed `status.size`; the next writable open does the
//!    same for a crash ([`recover`](super::recover)).
//! 4. A transaction that appended nothing and changed no row (a no-change
//!    run) commits as a rollback: no `fsync`, no write to the state file,
//!    and no `mv_runs` row, so that checking an unchanged user costs reads
//!    only. `mv_runs` therefore lists the transactions that stored something.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};
use sha1::{Digest, Sha1};

use super::error::{At, Result, StoreError};
use super::lock::{LockMode, StoreLock};
use super::reader;
use super::recover::recover_data_file;
use super::schema;
use super::state::{self, FileStat, FolderRow, HistoryEntry, IndexedError};
use crate::formats::backup_tar::{
    encode_header, file_name, folder_file_name, imap_name, meta_name, padding_len, EntryHeader,
};
use crate::formats::gzip_members::{scan_members, MemberInfo, MemberWriter};
use crate::formats::Guid;

pub const STATE_FILE: &str = "backupstate.sqlite3";

/// How a writable store behaves.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// New data files are `.tar.gz` (an existing file keeps its kind).
    pub compress: bool,
    pub level: u32,
    /// A new gzip member starts once the current one passes this many
    /// uncompressed bytes.
    pub member_bound: u64,
    pub lock: LockMode,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            compress: true,
            level: 6,
            member_bound: 32 << 20,
            lock: LockMode::Fail,
        }
    }
}

/// The stat the server reports for a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub size: u64,
    pub mtime: u64,
    pub inode: u64,
}

/// The directory of `user` under `root`. Names that could escape `root`
/// or collide with our own files are refused.
pub fn user_dir(root: &Path, user: &str) -> Result<PathBuf> {
    let bad = user.is_empty()
        || user == "."
        || user == ".."
        || user.starts_with('.')
        || user.contains('/')
        || user.contains('\0');
    if bad {
        return Err(StoreError::BadUserName(user.to_string()));
    }
    Ok(root.join(user))
}

pub struct UserStore {
    dir: PathBuf,
    state_path: PathBuf,
    conn: Connection,
    data_name: String,
    gz: bool,
    writable: bool,
    has_ours: bool,
    /// Members found by scanning, for read-only opens of stores without
    /// `mv_members` (Perl-made): scanned once, on first random access.
    scanned: std::cell::OnceCell<Vec<MemberInfo>>,
    opts: StoreOptions,
    _lock: Option<StoreLock>,
    /// A read-only open of a store with a hot journal reads this private,
    /// rolled-back copy of the state file (see [`open_committed`]).
    _rollback_copy: Option<tempfile::TempDir>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn is_gz(name: &str) -> bool {
    name.ends_with(".gz")
}

impl UserStore {
    /// Opens (creating if needed) a store for writing: takes the lock,
    /// creates the schema, recovers a torn append, and indexes the gzip
    /// members of a store that has none recorded (a Perl-written one).
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<UserStore> {
        std::fs::create_dir_all(dir).at(dir)?;
        let lock = StoreLock::acquire(dir, opts.lock)?;
        let state_path = dir.join(STATE_FILE);
        let conn = Connection::open(&state_path).at(&state_path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .at(&state_path)?;
        schema::ensure(&conn).at(&state_path)?;
        check_schema(&conn, &state_path)?;
        let status = state::status(&conn).at(&state_path)?;
        let data_name = match &status {
            Some((name, ..)) => name.clone(),
            None => new_data_name(&opts),
        };
        let mut store = UserStore {
            dir: dir.to_path_buf(),
            state_path,
            conn,
            gz: is_gz(&data_name),
            data_name,
            writable: true,
            has_ours: true,
            scanned: Default::default(),
            opts,
            _lock: Some(lock),
            _rollback_copy: None,
        };
        recover_data_file(&store.data_path(), status.as_ref().map_or(0, |s| s.1))?;
        store.index_members_if_missing()?;
        Ok(store)
    }

    /// Opens for reading only: no lock, no write of any kind (works on a
    /// read-only directory, e.g. the Perl fixtures).
    pub fn open_read_only(dir: &Path) -> Result<UserStore> {
        let state_path = dir.join(STATE_FILE);
        if !state_path.is_file() {
            return Err(StoreError::Io {
                path: state_path,
                source: io::Error::new(io::ErrorKind::NotFound, "no state file"),
            });
        }
        let (conn, rollback_copy) = open_committed(&state_path)?;
        check_schema(&conn, &state_path)?;
        let status = state::status(&conn).at(&state_path)?;
        let data_name = status.map(|s| s.0).unwrap_or_default();
        let has_ours = schema::has_ours(&conn).at(&state_path)?;
        Ok(UserStore {
            dir: dir.to_path_buf(),
            state_path,
            conn,
            gz: is_gz(&data_name),
            data_name,
            writable: false,
            has_ours,
            scanned: Default::default(),
            opts: StoreOptions::default(),
            _lock: None,
            _rollback_copy: rollback_copy,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data file, through the metadir link of a Perl-made store.
    pub fn data_path(&self) -> PathBuf {
        reader::resolve_data_path(&self.dir, &self.data_name)
    }

    pub fn is_compressed(&self) -> bool {
        self.gz
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// The committed status: (filename, size on disk, mtime, uncompressed offset).
    pub fn status(&self) -> Result<Option<(String, u64, u64, u64)>> {
        state::status(&self.conn).at(&self.state_path)
    }

    fn index_members_if_missing(&mut self) -> Result<()> {
        let Some((_, size, _, offset)) = self.status()? else {
            return Ok(());
        };
        if !self.gz || size == 0 || !state::members(&self.conn).at(&self.state_path)?.is_empty() {
            return Ok(());
        }
        let path = self.data_path();
        let members = scan_members(File::open(&path).at(&path)?).at(&path)?;
        check_members(&path, &members, size, offset)?;
        let tx = self.conn.unchecked_transaction().at(&self.state_path)?;
        for m in &members {
            state::add_member(&tx, m).at(&self.state_path)?;
        }
        tx.commit().at(&self.state_path)
    }

    /// The gzip members, from `mv_members`, or by scanning the file when a
    /// read-only open finds none recorded.
    pub fn members(&self) -> Result<Vec<MemberInfo>> {
        if !self.gz {
            return Ok(Vec::new());
        }
        if self.has_ours {
            let recorded = state::members(&self.conn).at(&self.state_path)?;
            if !recorded.is_empty() || self.writable {
                return Ok(recorded);
            }
        }
        if let Some(m) = self.scanned.get() {
            return Ok(m.clone());
        }
        let path = self.data_path();
        let found = scan_members(File::open(&path).at(&path)?).at(&path)?;
        Ok(self.scanned.get_or_init(|| found).clone())
    }

    /// The members random access to `offset` needs: the one holding it
    /// when `mv_members` knows, else every member.
    pub(crate) fn members_for(&self, offset: u64) -> Result<Vec<MemberInfo>> {
        if self.gz && self.has_ours {
            if let Some(m) = state::member_for(&self.conn, offset).at(&self.state_path)? {
                return Ok(vec![m]);
            }
        }
        self.members()
    }

    /// Starts an append transaction; `run_time` stamps links and markers.
    pub fn begin(&mut self, run_time: u64) -> Result<AppendTx<'_>> {
        if !self.writable {
            return Err(StoreError::ReadOnly(self.dir.clone()));
        }
        let (size, offset) = self.status()?.map_or((0, 0), |s| (s.1, s.3));
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .at(&self.state_path)?;
        let changes_at_begin = self.conn.total_changes();
        Ok(AppendTx {
            store: self,
            sink: None,
            run_time,
            started: now(),
            committed_size: size,
            pos: offset,
            new_members: Vec::new(),
            bytes_added: 0,
            messages_added: 0,
            changes_at_begin,
            poisoned: None,
            done: false,
        })
    }

    // ---- queries the backup needs ----

    pub fn has_message(&self, guid: &Guid) -> Result<bool> {
        state::has_file(&self.conn, guid).at(&self.state_path)
    }

    pub fn meta_state(&self, name: &str) -> Result<Option<FileStat>> {
        state::meta_state(&self.conn, name).at(&self.state_path)
    }

    /// Whether the copy of `key` (`folder:<uniqueid>`, `meta:<name>`) was
    /// stored within a second of its last change (see `mv_recheck`).
    pub fn needs_recheck(&self, key: &str) -> Result<bool> {
        state::needs_recheck(&self.conn, key).at(&self.state_path)
    }

    pub fn folder_file_state(&self, uniqueid: &str, name: &str) -> Result<Option<FileStat>> {
        state::folder_file_state(&self.conn, uniqueid, name).at(&self.state_path)
    }

    /// Every stored meta file of the folder, by name.
    pub fn folder_files(&self, uniqueid: &str) -> Result<Vec<(String, FileStat)>> {
        state::folder_files(&self.conn, uniqueid).at(&self.state_path)
    }

    pub fn live_folders(&self) -> Result<Vec<(String, String)>> {
        state::live_folders(&self.conn).at(&self.state_path)
    }

    pub fn folder_for_name(&self, name: &str) -> Result<Option<String>> {
        state::folder_for_name(&self.conn, name).at(&self.state_path)
    }

    pub fn indexed(&self, uniqueid: &str) -> Result<Vec<(u32, Guid)>> {
        state::indexed(&self.conn, uniqueid).at(&self.state_path)
    }

    // ---- queries for ls / restore ----

    /// Every folder name the store knows, live or deleted.
    pub fn folders(&self) -> Result<Vec<FolderRow>> {
        state::folders(&self.conn).at(&self.state_path)
    }

    /// Every `cyrus.index` copy of a folder, oldest first.
    pub fn index_history(&self, uniqueid: &str) -> Result<Vec<HistoryEntry>> {
        if !self.has_ours {
            return Ok(Vec::new());
        }
        state::history(&self.conn, uniqueid).at(&self.state_path)
    }

    /// The latest `cyrus.index` copy with mtime at or before `time`.
    pub fn index_at(&self, uniqueid: &str, time: u64) -> Result<Option<HistoryEntry>> {
        Ok(self
            .index_history(uniqueid)?
            .into_iter()
            .filter(|h| h.mtime <= time)
            .max_by_key(|h| (h.mtime, h.offset)))
    }

    /// Any entry by its offset: header and whole body.
    pub fn read_entry_at(&self, offset: u64) -> Result<(EntryHeader, Vec<u8>)> {
        let path = self.data_path();
        let members = self.members_for(offset)?;
        let (e, mut tar) = reader::entry_at(&path, self.gz, &members, offset)?;
        let body = tar.read_body().at(&path)?;
        Ok((e.header, body))
    }

    /// A message's bytes, checked against its GUID.
    pub fn read_message(&self, guid: &Guid) -> Result<Vec<u8>> {
        let (offset, mut body) = self.open_message(guid)?;
        let mut out = Vec::new();
        let path = self.data_path();
        body.read_to_end(&mut out).at(&path)?;
        let actual = Guid::of(&out);
        if actual != *guid {
            return Err(StoreError::ContentMismatch {
                path,
                name: file_name(guid),
                offset,
                expected: guid.to_hex(),
                actual,
            });
        }
        Ok(out)
    }

    /// A message as a stream (offset of its entry, body reader). The caller
    /// checks the SHA-1 if it cares; [`read_message`](Self::read_message) does.
    pub fn open_message(&self, guid: &Guid) -> Result<(u64, impl Read)> {
        let offset = state::file_offset(&self.conn, guid)
            .at(&self.state_path)?
            .ok_or(StoreError::NoSuchMessage(*guid))?;
        let path = self.data_path();
        let members = self.members_for(offset)?;
        let (e, tar) = reader::entry_at(&path, self.gz, &members, offset)?;
        let expected = file_name(guid);
        if e.header.name != expected {
            return Err(StoreError::OffsetMismatch {
                path,
                offset,
                expected,
                found: e.header.name,
            });
        }
        Ok((offset, tar.into_body()))
    }
}

/// A read-only connection to the committed state of `state_path`.
///
/// A writer killed inside a transaction leaves a hot `-journal`, and only a
/// writer may roll it back: a read-only connection then fails with
/// `SQLITE_READONLY_ROLLBACK`. A writer killed before its first commit
/// leaves a state file with no tables at all. Either way `verify` and `ls`
/// could not run on the store until the next backup. Instead of writing to
/// the store, the state file and its journal are copied aside, the copy is
/// rolled back there (and given the empty schema if it has none, since
/// nothing was ever committed), and the copy is read; it lives as long as
/// the returned directory.
fn open_committed(state_path: &Path) -> Result<(Connection, Option<tempfile::TempDir>)> {
    let conn =
        Connection::open_with_flags(state_path, OpenFlags::SQLITE_OPEN_READ_ONLY).at(state_path)?;
    match count_tables(&conn) {
        Ok(n) if n > 0 => Ok((conn, None)),
        Err(e) if !needs_rollback(&e) => Err(e).at(state_path),
        _ => {
            drop(conn);
            let (copy, dir) = rolled_back_copy(state_path)?;
            let conn = Connection::open_with_flags(&copy, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .at(state_path)?;
            Ok((conn, Some(dir)))
        }
    }
}

/// Reads the schema, which is where a hot journal is noticed.
fn count_tables(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
}

fn needs_rollback(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ReadOnly)
}

/// The state file and its journal copied into a new private directory, and
/// the copy rolled back by a writable open there.
fn rolled_back_copy(state_path: &Path) -> Result<(PathBuf, tempfile::TempDir)> {
    let dir = tempfile::tempdir().at(state_path)?;
    let copy = dir.path().join(STATE_FILE);
    std::fs::copy(state_path, &copy).at(state_path)?;
    let mut journal = state_path.as_os_str().to_owned();
    journal.push("-journal");
    let mut journal_copy = copy.as_os_str().to_owned();
    journal_copy.push("-journal");
    match std::fs::copy(&journal, &journal_copy) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).at(Path::new(&journal)),
    }
    let writer = Connection::open(&copy).at(state_path)?;
    if count_tables(&writer).at(state_path)? == 0 {
        schema::ensure(&writer).at(state_path)?;
    }
    drop(writer);
    Ok((copy, dir))
}

fn check_schema(conn: &Connection, path: &Path) -> Result<()> {
    match schema::version(conn).at(path)? {
        Some(v) if v > schema::SCHEMA_VERSION => Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found: v,
            supported: schema::SCHEMA_VERSION,
        }),
        _ => Ok(()),
    }
}

pub(crate) fn check_members(
    path: &Path,
    members: &[MemberInfo],
    size: u64,
    offset: u64,
) -> Result<()> {
    let end = members
        .last()
        .map_or(0, |m| m.compressed_offset + m.compressed_len);
    let len: u64 = members.iter().map(|m| m.uncompressed_len).sum();
    if end != size || len != offset {
        return Err(StoreError::MembersMismatch {
            path: path.to_path_buf(),
            members_end: end,
            members_len: len,
            size,
            offset,
        });
    }
    Ok(())
}

fn new_data_name(opts: &StoreOptions) -> String {
    let ext = if opts.compress { "tar.gz" } else { "tar" };
    format!("backupdata-{}.{ext}", now())
}

/// Where appended bytes go.
enum Sink {
    Plain(BufWriter<File>),
    Gz(MemberWriter<BufWriter<File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gz(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gz(w) => w.flush(),
        }
    }
}

/// What a commit added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitSummary {
    pub bytes_added: u64,
    pub messages_added: u64,
    pub size: u64,
    pub offset: u64,
}

/// One append transaction. Dropping it without [`commit`](Self::commit)
/// aborts it.
pub struct AppendTx<'a> {
    store: &'a mut UserStore,
    sink: Option<Sink>,
    run_time: u64,
    started: u64,
    committed_size: u64,
    pos: u64,
    new_members: Vec<MemberInfo>,
    bytes_added: u64,
    messages_added: u64,
    /// The connection's `total_changes` at `BEGIN`, to see that no row changed.
    changes_at_begin: u64,
    poisoned: Option<String>,
    done: bool,
}

impl AppendTx<'_> {
    pub fn has_message(&self, guid: &Guid) -> Result<bool> {
        self.store.has_message(guid)
    }

    pub fn store(&self) -> &UserStore {
        self.store
    }

    /// Bytes appended so far (uncompressed), to decide when to checkpoint.
    pub fn bytes_added(&self) -> u64 {
        self.bytes_added
    }

    /// Appends `files/<guid>` unless the store has it already (then `false`).
    /// The body is hashed as it streams; a mismatch fails the transaction.
    pub fn add_message(&mut self, guid: &Guid, meta: &FileMeta, body: impl Read) -> Result<bool> {
        if self.store.has_message(guid)? {
            return Ok(false);
        }
        let hex = guid.to_hex();
        let h = EntryHeader::file(&file_name(guid), &hex, meta.size, meta.mtime, meta.inode);
        self.append(&h, body, Some(guid))?;
        self.messages_added += 1;
        Ok(true)
    }

    /// Appends `meta/<name>` (`seen`, `sub`); `sha1` is the server's.
    pub fn add_meta(
        &mut self,
        name: &str,
        meta: &FileMeta,
        sha1: &Guid,
        body: impl Read,
    ) -> Result<()> {
        let h = EntryHeader::file(
            &meta_name(name),
            &sha1.to_hex(),
            meta.size,
            meta.mtime,
            meta.inode,
        );
        self.append(&h, body, Some(sha1)).map(|_| ())
    }

    /// Appends `folders/<uniqueid>/cyrus.<name>`; an index copy is also
    /// recorded in `mv_history`.
    pub fn add_folder_file(
        &mut self,
        uniqueid: &str,
        name: &str,
        meta: &FileMeta,
        sha1: &Guid,
        body: impl Read,
    ) -> Result<()> {
        let h = EntryHeader::file(
            &folder_file_name(uniqueid, name),
            &sha1.to_hex(),
            meta.size,
            meta.mtime,
            meta.inode,
        );
        let offset = self.append(&h, body, Some(sha1))?;
        if name == "index" {
            let r = state::add_history(&self.store.conn, uniqueid, offset, meta.mtime);
            self.sql(r)?;
        }
        Ok(())
    }

    /// Appends a delete marker for a folder file, if the state has it
    /// (as the Perl `delfile`). Returns whether a marker was written.
    pub fn delete_folder_file(&mut self, uniqueid: &str, name: &str) -> Result<bool> {
        if self.store.folder_file_state(uniqueid, name)?.is_none() {
            return Ok(false);
        }
        self.append(
            &EntryHeader::delete_marker(&folder_file_name(uniqueid, name)),
            io::empty(),
            None,
        )?;
        Ok(true)
    }

    /// Marks `key` to be fetched again on the next run whatever its stat says,
    /// or clears the mark.
    pub fn set_recheck(&mut self, key: &str, recheck: bool) -> Result<()> {
        let r = state::set_recheck(&self.store.conn, key, recheck);
        self.sql(r)
    }

    /// Appends `imap/<name>/ -> <uniqueid>` stamped with the run time.
    pub fn link(&mut self, name: &str, uniqueid: &str) -> Result<()> {
        let h = EntryHeader::link(&imap_name(name), uniqueid, self.run_time);
        self.append(&h, io::empty(), None).map(|_| ())
    }

    /// Appends the deletion marker `imap/<name>/ -> ""`.
    pub fn mark_deleted(&mut self, name: &str) -> Result<()> {
        self.link(name, "")
    }

    /// Makes the folder's `indexed` rows match the index just fetched
    /// (ascending uids, UNLINKED records left out). Every GUID must already
    /// be in the store.
    pub fn set_indexed(&mut self, uniqueid: &str, records: &[(u32, Guid)]) -> Result<()> {
        match state::set_indexed(&self.store.conn, uniqueid, records) {
            Ok(()) => Ok(()),
            Err(IndexedError::Sql(e)) => self.sql(Err(e)),
            Err(IndexedError::MissingFile { uid, guid }) => Err(StoreError::MissingFile {
                uniqueid: uniqueid.to_string(),
                uid,
                guid,
            }),
        }
    }

    fn sql<T>(&mut self, r: rusqlite::Result<T>) -> Result<T> {
        r.map_err(|e| {
            self.poisoned = Some(e.to_string());
            StoreError::Sql {
                path: self.store.state_path.clone(),
                source: e,
            }
        })
    }

    fn check_poison(&self) -> Result<()> {
        match &self.poisoned {
            Some(why) => Err(StoreError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Writes one entry and records it; returns its offset.
    fn append(&mut self, h: &EntryHeader, body: impl Read, expect: Option<&Guid>) -> Result<u64> {
        self.check_poison()?;
        let offset = self.pos;
        if let Err(e) = self.write_entry(h, body, expect) {
            self.poisoned = Some(e.to_string());
            return Err(e);
        }
        let r = state::apply_entry(&self.store.conn, h, offset);
        self.sql(r)?;
        Ok(offset)
    }

    fn write_entry(
        &mut self,
        h: &EntryHeader,
        body: impl Read,
        expect: Option<&Guid>,
    ) -> Result<()> {
        let path = self.store.data_path();
        let header = encode_header(h).at(&path)?;
        self.cut_member_if_full()?;
        let sink = self.sink()?;
        sink.write_all(&header).at(&path)?;
        let mut hash = HashingWrite {
            inner: &mut *sink,
            hash: Sha1::new(),
        };
        let got = io::copy(&mut body.take(h.size), &mut hash).at(&path)?;
        let actual = Guid::from(hash.hash);
        if got != h.size {
            return Err(StoreError::ShortBody {
                name: h.name.clone(),
                got,
                expected: h.size,
            });
        }
        if let Some(g) = expect.filter(|_| h.size > 0) {
            if actual != *g {
                return Err(StoreError::ContentMismatch {
                    path,
                    name: h.name.clone(),
                    offset: self.pos,
                    expected: g.to_hex(),
                    actual,
                });
            }
        }
        sink.write_all(&vec![0u8; padding_len(h.size)]).at(&path)?;
        let len = h.stream_len();
        self.pos += len;
        self.bytes_added += len;
        Ok(())
    }

    fn cut_member_if_full(&mut self) -> Result<()> {
        let bound = self.store.opts.member_bound;
        if let Some(Sink::Gz(w)) = &mut self.sink {
            if w.member_uncompressed_len() >= bound {
                let path = self.store.data_path();
                if let Some(m) = w.finish_member().at(&path)? {
                    self.new_members.push(m);
                }
            }
        }
        Ok(())
    }

    fn sink(&mut self) -> Result<&mut Sink> {
        if self.sink.is_none() {
            let path = self.store.data_path();
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .at(&path)?;
            let w = BufWriter::with_capacity(256 * 1024, file);
            self.sink = Some(if self.store.gz {
                Sink::Gz(MemberWriter::new(
                    w,
                    self.store.opts.level,
                    self.committed_size,
                    self.pos,
                ))
            } else {
                Sink::Plain(w)
            });
        }
        self.sink
            .as_mut()
            .ok_or_else(|| StoreError::Poisoned("no data file".into()))
    }

    /// Finishes the member, fsyncs the data file, then commits the state.
    pub fn commit(mut self) -> Result<CommitSummary> {
        self.check_poison()?;
        if self.changed_nothing() {
            self.done = true;
            let sp = &self.store.state_path;
            self.store.conn.execute_batch("ROLLBACK").at(sp)?;
            return Ok(CommitSummary {
                bytes_added: 0,
                messages_added: 0,
                size: self.committed_size,
                offset: self.pos,
            });
        }
        let path = self.store.data_path();
        let file = self.close_sink(&path)?;
        let (size, mtime) = match &file {
            Some(f) => {
                f.sync_all().at(&path)?;
                let md = f.metadata().at(&path)?;
                let mtime = md
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                (md.len(), mtime)
            }
            None => (self.committed_size, 0),
        };
        let conn = &self.store.conn;
        let sp = self.store.state_path.clone();
        for m in &self.new_members {
            state::add_member(conn, m).at(&sp)?;
        }
        if file.is_some() {
            state::set_status(conn, &self.store.data_name, size, mtime, self.pos).at(&sp)?;
        }
        state::add_run(
            conn,
            self.started,
            now(),
            "ok",
            self.bytes_added,
            self.messages_added,
        )
        .at(&sp)?;
        conn.execute_batch("COMMIT").at(&sp)?;
        self.done = true;
        Ok(CommitSummary {
            bytes_added: self.bytes_added,
            messages_added: self.messages_added,
            size,
            offset: self.pos,
        })
    }

    /// Nothing appended to the data file and no row written.
    fn changed_nothing(&self) -> bool {
        self.sink.is_none()
            && self.new_members.is_empty()
            && self.store.conn.total_changes() == self.changes_at_begin
    }

    fn close_sink(&mut self, path: &Path) -> Result<Option<File>> {
        let Some(sink) = self.sink.take() else {
            return Ok(None);
        };
        let w = match sink {
            Sink::Plain(w) => w,
            Sink::Gz(g) => {
                let (w, last) = g.into_inner().at(path)?;
                self.new_members.extend(last);
                w
            }
        };
        let f = w.into_inner().map_err(|e| StoreError::Io {
            path: path.to_path_buf(),
            source: e.into_error(),
        })?;
        Ok(Some(f))
    }

    /// Drops everything this transaction wrote.
    pub fn abort(mut self) -> Result<()> {
        self.rollback()
    }

    fn rollback(&mut self) -> Result<()> {
        self.done = true;
        drop(self.sink.take());
        let sp = self.store.state_path.clone();
        self.store.conn.execute_batch("ROLLBACK").at(&sp)?;
        let path = self.store.data_path();
        if path.exists() {
            recover_data_file(&path, self.committed_size)?;
        }
        Ok(())
    }
}

impl Drop for AppendTx<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.rollback() {
                tracing::error!("aborting append to {}: {e}", self.store.dir.display());
            }
        }
    }
}

struct HashingWrite<'a, W: Write> {
    inner: &'a mut W,
    hash: Sha1,
}

impl<W: Write> Write for HashingWrite<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl FileMeta {
    pub fn new(size: u64, mtime: u64, inode: u64) -> FileMeta {
        FileMeta { size, mtime, inode }
    }
}
