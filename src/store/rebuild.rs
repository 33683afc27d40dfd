//! Rebuilds `backupstate.sqlite3` from the data file alone, as
//! `Cyrus::Backup::RebuildState` does (spec §3.3), plus our `mv_members` and
//! `mv_history`. `mv_runs` is history, not data, and starts empty.
//!
//! The new state is built in `backupstate.sqlite3.NEW` and renamed over the
//! old one only when complete.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rusqlite::Connection;
use sha1::{Digest, Sha1};

use super::error::{At, Result, StoreError};
use super::index_copy::{backed_up, parse_backup_index};
use super::reader::stream_all;
use super::schema;
use super::state::{self, IndexedError};
use super::user_store::{check_members, STATE_FILE};
use crate::formats::backup_tar::{EntryKey, TarReader};
use crate::formats::gzip_members::scan_members;
use crate::formats::Guid;

/// What a rebuild found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildSummary {
    pub entries: u64,
    pub offset: u64,
    pub data_file: String,
}

/// The one `backupdata-*.tar[.gz]` in `dir` (other files are left alone).
pub fn find_data_file(dir: &Path) -> Result<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let name = entry.at(dir)?.file_name().to_string_lossy().into_owned();
        if name.starts_with("backupdata-") && (name.ends_with(".tar") || name.ends_with(".tar.gz"))
        {
            found.push(name);
        }
    }
    if found.len() != 1 {
        return Err(StoreError::NoDataFile {
            dir: dir.to_path_buf(),
            found,
        });
    }
    Ok(found.remove(0))
}

/// Rebuilds the state of the store in `dir`. An existing state is only
/// replaced when `force` is set.
pub fn rebuild_state(dir: &Path, force: bool) -> Result<RebuildSummary> {
    let state_path = dir.join(STATE_FILE);
    if state_path.exists() && !force {
        return Err(StoreError::StateExists { path: state_path });
    }
    let data_file = find_data_file(dir)?;
    let new_path: PathBuf = dir.join(format!("{STATE_FILE}.NEW"));
    let _ = std::fs::remove_file(&new_path);
    let summary = build(dir, &data_file, &new_path)?;
    std::fs::rename(&new_path, &state_path).at(&state_path)?;
    Ok(summary)
}

fn build(dir: &Path, data_file: &str, new_path: &Path) -> Result<RebuildSummary> {
    let data_path = super::reader::resolve_data_path(dir, data_file);
    let gz = data_file.ends_with(".gz");
    let conn = Connection::open(new_path).at(new_path)?;
    schema::ensure(&conn).at(new_path)?;
    conn.execute_batch("BEGIN").at(new_path)?;
    let mut tar = stream_all(&data_path, gz)?;
    let entries = replay(&conn, &mut tar, &data_path, new_path)?;
    let offset = tar.position();
    let md = std::fs::metadata(&data_path).at(&data_path)?;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    if gz {
        let members = scan_members(File::open(&data_path).at(&data_path)?).at(&data_path)?;
        check_members(&data_path, &members, md.len(), offset)?;
        for m in &members {
            state::add_member(&conn, m).at(new_path)?;
        }
    }
    state::set_status(&conn, data_file, md.len(), mtime, offset).at(new_path)?;
    conn.execute_batch("COMMIT").at(new_path)?;
    Ok(RebuildSummary {
        entries,
        offset,
        data_file: data_file.to_string(),
    })
}

/// Replays every entry in order, as `RebuildState`'s callback does.
fn replay<R: Read>(
    conn: &Connection,
    tar: &mut TarReader<R>,
    data: &Path,
    sp: &Path,
) -> Result<u64> {
    let mut seen_files = std::collections::HashSet::new();
    let mut n = 0;
    while let Some(e) = tar.next_entry().at(data)? {
        n += 1;
        let mut h = e.header.clone();
        let key = EntryKey::parse(&h.name);
        let is_index = matches!(&key, EntryKey::FolderFile { name, .. } if name == "index");
        let needs_sha1 =
            !matches!(key, EntryKey::Imap { .. }) && h.linkname.is_empty() && h.size > 0;
        if is_index || needs_sha1 {
            let body = tar.read_body().at(data)?;
            if let EntryKey::FolderFile { uniqueid, .. } = &key {
                if is_index {
                    reindex(conn, uniqueid, &body, e.offset, h.mtime, data, sp)?;
                }
            }
            if needs_sha1 {
                h.linkname = Guid::from(Sha1::new_with_prefix(&body)).to_hex();
            }
        }
        if let EntryKey::LegacyFile(old) = &key {
            if old.starts_with("02") && !h.linkname.is_empty() {
                h.name = format!("files/{}", h.linkname);
            }
        }
        if h.name.starts_with("files/") && !seen_files.insert(h.name.clone()) {
            continue;
        }
        state::apply_entry(conn, &h, e.offset).at(sp)?;
    }
    Ok(n)
}

fn reindex(
    conn: &Connection,
    uniqueid: &str,
    body: &[u8],
    offset: u64,
    mtime: u64,
    data: &Path,
    sp: &Path,
) -> Result<()> {
    let (_, records) = parse_backup_index(body).map_err(|source| StoreError::Index {
        path: data.to_path_buf(),
        offset,
        source,
    })?;
    match state::set_indexed(conn, uniqueid, &backed_up(&records)) {
        Ok(()) => {}
        Err(IndexedError::Sql(e)) => {
            return Err(StoreError::Sql {
                path: sp.to_path_buf(),
                source: e,
            })
        }
        Err(IndexedError::MissingFile { uid, guid }) => {
            return Err(StoreError::MissingFile {
                uniqueid: uniqueid.to_string(),
                uid,
                guid,
            })
        }
    }
    state::add_history(conn, uniqueid, offset, mtime).at(sp)
}
