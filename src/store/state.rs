//! The rows of `backupstate.sqlite3`, kept exactly as `Cyrus::Backup::State`
//! keeps them (spec §3.2): [`apply_entry`] is its `addheader`,
//! [`set_indexed`] the table half of `ParseIndex`. Everything here runs
//! inside the caller's transaction.

use rusqlite::{params, Connection, OptionalExtension};

use crate::formats::backup_tar::{
    decode_folder_name, encode_folder_name, link_target, EntryHeader, EntryKey,
};
use crate::formats::gzip_members::MemberInfo;
use crate::formats::Guid;

type Sql<T> = rusqlite::Result<T>;

/// The stat the backup compares with the server's, and the stored sha1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    pub mtime: u64,
    pub inode: u64,
    pub sha1: Option<String>,
    pub offset: u64,
}

/// One `imap` row, with the name decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderRow {
    pub name: String,
    pub uniqueid: String,
    /// `None` when live; the deletion time otherwise.
    pub deleted: Option<u64>,
    pub offset: u64,
}

/// One `cyrus.index` copy of a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryEntry {
    pub offset: u64,
    pub mtime: u64,
}

/// Sqlite integers are signed; offsets and sizes are not.
fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// `folderid(uniqueid)`: 0 for `""`, created on first use.
pub fn folderid(conn: &Connection, uniqueid: &str) -> Sql<i64> {
    if uniqueid.is_empty() {
        return Ok(0);
    }
    if let Some(id) = find_folderid(conn, uniqueid)? {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO folders (uniqueid) VALUES (?1)")?
        .execute([uniqueid])?;
    Ok(conn.last_insert_rowid())
}

pub fn find_folderid(conn: &Connection, uniqueid: &str) -> Sql<Option<i64>> {
    conn.prepare_cached("SELECT folderid FROM folders WHERE uniqueid = ?1")?
        .query_row([uniqueid], |r| r.get(0))
        .optional()
}

pub fn fileid(conn: &Connection, guid: &str) -> Sql<Option<i64>> {
    conn.prepare_cached("SELECT fileid FROM files WHERE guid = ?1")?
        .query_row([guid], |r| r.get(0))
        .optional()
}

/// Records one tar entry written (or read) at `offset`, as `addheader` does.
pub fn apply_entry(conn: &Connection, h: &EntryHeader, offset: u64) -> Sql<()> {
    match EntryKey::parse(&h.name) {
        EntryKey::File(g) => add_file(conn, &g.to_hex(), h.size, offset),
        EntryKey::LegacyFile(name) => add_file(conn, &name, h.size, offset),
        EntryKey::FolderFile { uniqueid, name } => add_fmeta(conn, &uniqueid, &name, h, offset),
        EntryKey::Imap { tar_name } => add_imap(conn, &tar_name, h, offset),
        EntryKey::Meta { kind, name } if kind != "sieve" => add_meta(conn, &kind, &name, h, offset),
        EntryKey::Meta { .. } | EntryKey::Other(_) => Ok(()),
    }
}

/// The first copy wins: later duplicates are left for compaction.
fn add_file(conn: &Connection, guid: &str, size: u64, offset: u64) -> Sql<()> {
    if fileid(conn, guid)?.is_none() {
        conn.prepare_cached(
            "INSERT INTO files (guid, size, refcount, offset) VALUES (?1, ?2, 0, ?3)",
        )?
        .execute(params![guid, i(size), i(offset)])?;
    }
    Ok(())
}

fn add_fmeta(
    conn: &Connection,
    uniqueid: &str,
    name: &str,
    h: &EntryHeader,
    offset: u64,
) -> Sql<()> {
    let fid = folderid(conn, uniqueid)?;
    keep_latest(conn, "fmeta", "folderid", &fid, name, h, offset)
}

fn add_meta(conn: &Connection, kind: &str, name: &str, h: &EntryHeader, offset: u64) -> Sql<()> {
    keep_latest(conn, "meta", "type", &kind, name, h, offset)
}

/// `meta` and `fmeta` keep a file's latest copy alike (Perl's `addheader`):
/// a new copy replaces the row and adds the old copy's size to `stale`; a
/// size-0 delete marker removes the row.
fn keep_latest(
    conn: &Connection,
    table: &str,
    key_column: &str,
    key: &dyn rusqlite::ToSql,
    name: &str,
    h: &EntryHeader,
    offset: u64,
) -> Sql<()> {
    let old: Option<(i64, i64)> = conn
        .prepare_cached(&format!(
            "SELECT stale, size FROM {table} WHERE {key_column} = ?1 AND name = ?2"
        ))?
        .query_row(params![key, name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if h.size == 0 {
        conn.prepare_cached(&format!(
            "DELETE FROM {table} WHERE {key_column} = ?1 AND name = ?2"
        ))?
        .execute(params![key, name])?;
        return Ok(());
    }
    let stale = old.map_or(0, |(s, z)| s + z);
    conn.prepare_cached(&format!(
        "REPLACE INTO {table} ({key_column}, name, sha1, size, mtime, inode, stale, offset)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(params![
        key,
        name,
        h.linkname,
        i(h.size),
        i(h.mtime),
        i(h.devminor),
        stale,
        i(offset)
    ])?;
    Ok(())
}

/// A live name that gets a new link or a marker is marked deleted (at the
/// entry's mtime, pointing at the entry); a non-empty target then makes
/// (name, folder) live. Only the highest-offset row for the name is looked
/// at, as the Perl `get` does.
fn add_imap(conn: &Connection, tar_name: &str, h: &EntryHeader, offset: u64) -> Sql<()> {
    let latest_deleted: Option<i64> = conn
        .query_row(
            "SELECT deleted FROM imap WHERE name = ?1 ORDER BY offset DESC LIMIT 1",
            [tar_name],
            |r| r.get(0),
        )
        .optional()?;
    if latest_deleted == Some(0) {
        conn.prepare_cached(
            "UPDATE imap SET deleted = ?1, offset = ?2 WHERE name = ?3 AND deleted = 0",
        )?
        .execute(params![i(h.mtime), i(offset), tar_name])?;
    }
    let fid = folderid(conn, link_target(&h.linkname).unwrap_or(""))?;
    if fid != 0 {
        conn.prepare_cached("REPLACE INTO imap VALUES (?1, ?2, 0, ?3)")?
            .execute(params![tar_name, fid, i(offset)])?;
    }
    Ok(())
}

/// Error from [`set_indexed`]: a record whose message the store lacks.
#[derive(Debug)]
pub enum IndexedError {
    Sql(rusqlite::Error),
    MissingFile { uid: u32, guid: Guid },
}

impl From<rusqlite::Error> for IndexedError {
    fn from(e: rusqlite::Error) -> Self {
        IndexedError::Sql(e)
    }
}

/// Makes the folder's `indexed` rows match `records` (ascending uids, the
/// UNLINKED ones already left out): rows for uids gone from the index are
/// deleted unless their `deleted` column is set, new uids are inserted, and
/// uids in both are left alone (the GUID is not rechecked, as in Perl).
pub fn set_indexed(
    conn: &Connection,
    uniqueid: &str,
    records: &[(u32, Guid)],
) -> Result<(), IndexedError> {
    let fid = folderid(conn, uniqueid)?;
    let existing = indexed_rows(conn, fid)?;
    let (todel, toadd) = merge(&existing, records);
    for uid in todel {
        conn.prepare_cached("DELETE FROM indexed WHERE folderid = ?1 AND uid = ?2")?
            .execute(params![fid, uid])?;
    }
    for (uid, guid) in toadd {
        let Some(file) = fileid(conn, &guid.to_hex())? else {
            return Err(IndexedError::MissingFile { uid, guid });
        };
        conn.prepare_cached(
            "INSERT INTO indexed (folderid, uid, fileid, deleted) VALUES (?1, ?2, ?3, 0)",
        )?
        .execute(params![fid, uid, file])?;
    }
    Ok(())
}

fn indexed_rows(conn: &Connection, fid: i64) -> Sql<Vec<(u32, i64)>> {
    let mut st = conn
        .prepare_cached("SELECT uid, deleted FROM indexed WHERE folderid = ?1 ORDER BY uid ASC")?;
    let rows = st.query_map([fid], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?)))?;
    rows.collect()
}

/// The merge-join of `ParseIndex`: (uids to delete, records to add).
fn merge(db: &[(u32, i64)], index: &[(u32, Guid)]) -> (Vec<u32>, Vec<(u32, Guid)>) {
    let (mut d, mut x) = (0, 0);
    let (mut todel, mut toadd) = (Vec::new(), Vec::new());
    loop {
        match (db.get(d), index.get(x)) {
            (Some(&(du, _)), Some(&(iu, _))) if du == iu => {
                d += 1;
                x += 1;
            }
            (dbrow, Some(&rec)) if dbrow.is_none_or(|&(du, _)| rec.0 < du) => {
                toadd.push(rec);
                x += 1;
            }
            (Some(&(du, deleted)), _) => {
                if deleted == 0 {
                    todel.push(du);
                }
                d += 1;
            }
            _ => break,
        }
    }
    (todel, toadd)
}

pub fn has_file(conn: &Connection, guid: &Guid) -> Sql<bool> {
    Ok(fileid(conn, &guid.to_hex())?.is_some())
}

pub fn file_offset(conn: &Connection, guid: &Guid) -> Sql<Option<u64>> {
    conn.prepare_cached("SELECT offset FROM files WHERE guid = ?1")?
        .query_row([guid.to_hex()], |r| r.get::<_, i64>(0))
        .optional()
        .map(|o| o.map(u))
}

fn stat_row(r: &rusqlite::Row<'_>) -> Sql<FileStat> {
    Ok(FileStat {
        size: u(r.get(0)?),
        mtime: u(r.get(1)?),
        inode: u(r.get(2)?),
        sha1: r.get(3)?,
        offset: u(r.get(4)?),
    })
}

pub fn meta_state(conn: &Connection, name: &str) -> Sql<Option<FileStat>> {
    conn.prepare_cached(
        "SELECT size, mtime, inode, sha1, offset FROM meta WHERE type = 'meta' AND name = ?1",
    )?
    .query_row([name], stat_row)
    .optional()
}

pub fn folder_file_state(conn: &Connection, uniqueid: &str, name: &str) -> Sql<Option<FileStat>> {
    conn.prepare_cached(
        "SELECT fm.size, fm.mtime, fm.inode, fm.sha1, fm.offset FROM fmeta fm
         JOIN folders f ON f.folderid = fm.folderid WHERE f.uniqueid = ?1 AND fm.name = ?2",
    )?
    .query_row(params![uniqueid, name], stat_row)
    .optional()
}

/// Every stored meta file of a folder, by name: one query where
/// [`folder_file_state`] per file would be one each.
pub fn folder_files(conn: &Connection, uniqueid: &str) -> Sql<Vec<(String, FileStat)>> {
    let mut st = conn.prepare_cached(
        "SELECT fm.size, fm.mtime, fm.inode, fm.sha1, fm.offset, fm.name FROM fmeta fm
         JOIN folders f ON f.folderid = fm.folderid WHERE f.uniqueid = ?1",
    )?;
    let rows = st.query_map([uniqueid], |r| Ok((r.get::<_, String>(5)?, stat_row(r)?)))?;
    rows.collect()
}

/// Every `imap` row, names decoded, in offset order.
pub fn folders(conn: &Connection) -> Sql<Vec<FolderRow>> {
    let mut st = conn.prepare_cached(
        "SELECT i.name, f.uniqueid, i.deleted, i.offset FROM imap i
         JOIN folders f ON f.folderid = i.folderid ORDER BY i.offset, i.name",
    )?;
    let rows = st.query_map([], |r| {
        let deleted: i64 = r.get(2)?;
        Ok(FolderRow {
            name: decode_folder_name(&r.get::<_, String>(0)?),
            uniqueid: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            deleted: (deleted != 0).then_some(u(deleted)),
            offset: u(r.get(3)?),
        })
    })?;
    rows.collect()
}

pub fn live_folders(conn: &Connection) -> Sql<Vec<(String, String)>> {
    Ok(folders(conn)?
        .into_iter()
        .filter(|f| f.deleted.is_none())
        .map(|f| (f.name, f.uniqueid))
        .collect())
}

pub fn folder_for_name(conn: &Connection, name: &str) -> Sql<Option<String>> {
    conn.prepare_cached(
        "SELECT f.uniqueid FROM imap i JOIN folders f ON f.folderid = i.folderid
         WHERE i.name = ?1 AND i.deleted = 0 AND i.folderid <> 0 ORDER BY i.offset DESC LIMIT 1",
    )?
    .query_row([encode_folder_name(name)], |r| r.get(0))
    .optional()
}

pub fn indexed(conn: &Connection, uniqueid: &str) -> Sql<Vec<(u32, Guid)>> {
    let mut st = conn.prepare_cached(
        "SELECT x.uid, fl.guid FROM indexed x JOIN folders f ON f.folderid = x.folderid
         JOIN files fl ON fl.fileid = x.fileid WHERE f.uniqueid = ?1 ORDER BY x.uid",
    )?;
    let rows = st.query_map([uniqueid], |r| {
        Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (uid, g) = row?;
        if let Ok(guid) = g.parse() {
            out.push((uid, guid));
        }
    }
    Ok(out)
}

/// (messages, bytes) of a folder's `indexed` rows.
pub fn indexed_totals(conn: &Connection, uniqueid: &str) -> Sql<(u64, u64)> {
    conn.prepare_cached(
        "SELECT count(*), coalesce(sum(fl.size), 0) FROM indexed x
         JOIN folders f ON f.folderid = x.folderid
         JOIN files fl ON fl.fileid = x.fileid WHERE f.uniqueid = ?1",
    )?
    .query_row([uniqueid], |r| Ok((u(r.get(0)?), u(r.get(1)?))))
}

/// The status row: (filename, size, mtime, offset).
pub fn status(conn: &Connection) -> Sql<Option<(String, u64, u64, u64)>> {
    conn.prepare_cached("SELECT filename, size, mtime, offset FROM status")?
        .query_row([], |r| {
            Ok((r.get(0)?, u(r.get(1)?), u(r.get(2)?), u(r.get(3)?)))
        })
        .optional()
}

pub fn set_status(
    conn: &Connection,
    filename: &str,
    size: u64,
    mtime: u64,
    offset: u64,
) -> Sql<()> {
    conn.prepare_cached("DELETE FROM status")?.execute([])?;
    conn.prepare_cached(
        "INSERT INTO status (filename, size, mtime, offset, version) VALUES (?1, ?2, ?3, ?4, 5)",
    )?
    .execute(params![filename, i(size), i(mtime), i(offset)])?;
    Ok(())
}

pub fn add_member(conn: &Connection, m: &MemberInfo) -> Sql<()> {
    conn.prepare_cached("INSERT INTO mv_members (coffset, clength, uoffset, ulength, sha1) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(
        params![i(m.compressed_offset), i(m.compressed_len), i(m.uncompressed_offset), i(m.uncompressed_len), m.sha1.to_hex()],
    )?;
    Ok(())
}

pub fn members(conn: &Connection) -> Sql<Vec<MemberInfo>> {
    let mut st = conn.prepare_cached(
        "SELECT coffset, clength, uoffset, ulength, sha1 FROM mv_members ORDER BY coffset",
    )?;
    let rows = st.query_map([], |r| {
        Ok(MemberInfo {
            compressed_offset: u(r.get(0)?),
            compressed_len: u(r.get(1)?),
            uncompressed_offset: u(r.get(2)?),
            uncompressed_len: u(r.get(3)?),
            sha1: r.get::<_, String>(4)?.parse().unwrap_or_default(),
        })
    })?;
    rows.collect()
}

/// The member holding uncompressed `offset`.
pub fn member_for(conn: &Connection, offset: u64) -> Sql<Option<MemberInfo>> {
    conn.prepare_cached(
        "SELECT coffset, clength, uoffset, ulength, sha1 FROM mv_members
         WHERE uoffset <= ?1 ORDER BY uoffset DESC LIMIT 1",
    )?
    .query_row([i(offset)], |r| {
        Ok(MemberInfo {
            compressed_offset: u(r.get(0)?),
            compressed_len: u(r.get(1)?),
            uncompressed_offset: u(r.get(2)?),
            uncompressed_len: u(r.get(3)?),
            sha1: r.get::<_, String>(4)?.parse().unwrap_or_default(),
        })
    })
    .optional()
}

/// Whether `key` was stored too close to its last change to trust its stat.
pub fn needs_recheck(conn: &Connection, key: &str) -> Sql<bool> {
    conn.prepare_cached("SELECT count(*) FROM mv_recheck WHERE key = ?1")?
        .query_row([key], |r| r.get::<_, i64>(0))
        .map(|n| n > 0)
}

pub fn set_recheck(conn: &Connection, key: &str, recheck: bool) -> Sql<()> {
    let sql = if recheck {
        "INSERT OR IGNORE INTO mv_recheck (key) VALUES (?1)"
    } else {
        "DELETE FROM mv_recheck WHERE key = ?1"
    };
    conn.prepare_cached(sql)?.execute([key])?;
    Ok(())
}

pub fn add_history(conn: &Connection, uniqueid: &str, offset: u64, mtime: u64) -> Sql<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO mv_history (uniqueid, offset, mtime) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![uniqueid, i(offset), i(mtime)])?;
    Ok(())
}

pub fn history(conn: &Connection, uniqueid: &str) -> Sql<Vec<HistoryEntry>> {
    let mut st = conn.prepare_cached(
        "SELECT offset, mtime FROM mv_history WHERE uniqueid = ?1 ORDER BY offset",
    )?;
    let rows = st.query_map([uniqueid], |r| {
        Ok(HistoryEntry {
            offset: u(r.get(0)?),
            mtime: u(r.get(1)?),
        })
    })?;
    rows.collect()
}

pub fn add_run(
    conn: &Connection,
    started: u64,
    ended: u64,
    outcome: &str,
    bytes: u64,
    messages: u64,
) -> Sql<()> {
    conn.prepare_cached("INSERT INTO mv_runs (started, ended, outcome, bytes_added, messages_added) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(
        params![i(started), i(ended), outcome, i(bytes), i(messages)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(n: u8) -> Guid {
        Guid([n; 20])
    }

    #[test]
    fn merge_adds_new_uids_and_drops_vanished_ones_unless_marked_deleted() {
        let db = [(1, 0), (2, 0), (4, 7)];
        let index = [(1, g(1)), (3, g(3)), (5, g(5))];
        let (del, add) = merge(&db, &index);
        assert_eq!(del, [2]);
        assert_eq!(add, [(3, g(3)), (5, g(5))]);
    }
}
