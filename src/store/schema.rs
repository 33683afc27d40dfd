//! The v5 schema exactly as `Cyrus::Backup::State` creates it (spec §3.1),
//! and our `mv_*` tables, which the Perl tools never look at.

use rusqlite::{Connection, OptionalExtension};

/// Version of our own tables, kept in `mv_schema`.
pub const SCHEMA_VERSION: i64 = 1;

/// Copied in shape from a Perl-made `backupstate.sqlite3`.
pub const V5_DDL: &str = "
CREATE TABLE folders (
  folderid INTEGER PRIMARY KEY,
  uniqueid TEXT,
  UNIQUE (uniqueid)
);
CREATE TABLE status (
  filename TEXT NOT NULL,
  size INTEGER NOT NULL,
  mtime INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  version INTEGER NOT NULL DEFAULT 5,
  PRIMARY KEY (filename)
);
CREATE TABLE meta (
  type TEXT NOT NULL,
  name TEXT NOT NULL,
  sha1 TEXT,
  size INTEGER NOT NULL,
  mtime INTEGER NOT NULL,
  inode INTEGER NOT NULL,
  stale INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  PRIMARY KEY (type, name)
);
CREATE TABLE imap (
  name TEXT NOT NULL,
  folderid INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  PRIMARY KEY (name, folderid)
);
CREATE TABLE fmeta (
  folderid INTEGER NOT NULL,
  name TEXT NOT NULL,
  sha1 TEXT,
  size INTEGER NOT NULL,
  mtime INTEGER NOT NULL,
  inode INTEGER NOT NULL,
  stale INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  PRIMARY KEY (folderid, name)
);
CREATE TABLE indexed (
  folderid INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  fileid INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  PRIMARY KEY (folderid, uid)
);
CREATE TABLE files (
  fileid INTEGER PRIMARY KEY,
  guid TEXT NOT NULL,
  size INTEGER NOT NULL,
  refcount INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  UNIQUE (guid)
);
CREATE TRIGGER upref AFTER INSERT ON indexed
BEGIN
  UPDATE files SET refcount = refcount + 1 WHERE fileid = new.fileid;
END;
CREATE TRIGGER downref AFTER DELETE ON indexed
BEGIN
  UPDATE files SET refcount = refcount - 1 WHERE fileid = old.fileid;
END;
CREATE TRIGGER changeref AFTER UPDATE OF fileid ON indexed
BEGIN
  UPDATE files SET refcount = refcount + 1 WHERE fileid = new.fileid;
  UPDATE files SET refcount = refcount - 1 WHERE fileid = old.fileid;
END;
";

/// Our tables. `mv_members`: one row per gzip member. `mv_history`: every
/// `cyrus.index` copy in the tar. `mv_runs`: one row per committed append
/// transaction that stored something (one that found nothing to store
/// leaves no trace: see the commit protocol in `user_store`). `mv_recheck`:
/// files whose stored copy was read within a second of their last change,
/// so their (size, mtime, inode) cannot tell a later change in that same
/// second: the next run fetches them whatever their stat says.
pub const MV_DDL: &str = "
CREATE TABLE IF NOT EXISTS mv_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS mv_members (
  member INTEGER PRIMARY KEY,
  coffset INTEGER NOT NULL,
  clength INTEGER NOT NULL,
  uoffset INTEGER NOT NULL,
  ulength INTEGER NOT NULL,
  sha1 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mv_history (
  uniqueid TEXT NOT NULL,
  offset INTEGER NOT NULL,
  mtime INTEGER NOT NULL,
  PRIMARY KEY (uniqueid, offset)
);
CREATE TABLE IF NOT EXISTS mv_recheck (key TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mv_runs (
  run INTEGER PRIMARY KEY,
  started INTEGER NOT NULL,
  ended INTEGER NOT NULL,
  outcome TEXT NOT NULL,
  bytes_added INTEGER NOT NULL,
  messages_added INTEGER NOT NULL
);
";

/// Whether the v5 tables exist (the Perl test is the `status` table).
pub fn has_v5(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name = 'status'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

pub fn has_ours(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name = 'mv_schema'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// The tables [`ensure`] creates: the v5 `status` (its marker, as for
/// [`has_v5`]) and every table of [`MV_DDL`].
const ENSURED_TABLES: [&str; 6] = [
    "status",
    "mv_schema",
    "mv_members",
    "mv_history",
    "mv_recheck",
    "mv_runs",
];

/// Whether every table [`ensure`] creates exists and the version row is there.
fn complete(conn: &Connection) -> rusqlite::Result<bool> {
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'
         AND name IN (?1, ?2, ?3, ?4, ?5, ?6)",
        ENSURED_TABLES,
        |r| r.get(0),
    )?;
    if tables != ENSURED_TABLES.len() as i64 {
        return Ok(false);
    }
    conn.query_row("SELECT count(*) FROM mv_schema", [], |r| r.get::<_, i64>(0))
        .map(|n| n > 0)
}

/// Creates whatever is missing: the v5 tables, then ours with the version row.
/// A store that has them all (every open after the first) only reads.
pub fn ensure(conn: &Connection) -> rusqlite::Result<()> {
    if complete(conn)? {
        return Ok(());
    }
    if !has_v5(conn)? {
        conn.execute_batch(&format!("BEGIN; {V5_DDL} COMMIT;"))?;
    }
    conn.execute_batch(MV_DDL)?;
    let v: Option<i64> = conn
        .query_row("SELECT version FROM mv_schema", [], |r| r.get(0))
        .optional()?;
    if v.is_none() {
        conn.execute(
            "INSERT INTO mv_schema (version) VALUES (?1)",
            [SCHEMA_VERSION],
        )?;
    }
    Ok(())
}

/// Our schema version, if our tables exist.
pub fn version(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    if !has_ours(conn)? {
        return Ok(None);
    }
    conn.query_row("SELECT max(version) FROM mv_schema", [], |r| r.get(0))
}
