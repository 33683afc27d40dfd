//! Checks a store against itself. Quick: the directory holds only store
//! files, every gzip member's SHA-1 and extent, the data file's length, and
//! every state offset lands on a header of the right name. Full: also every
//! `files/` body hashes to its name, every other file to its sha1 linkname,
//! and every `cyrus.index` copy parses as a rebuild would read it.
//! Problems are collected, not fatal; verify never writes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use rusqlite::Connection;
use sha1::{Digest, Sha1};

use super::error::{At, Result};
use super::index_copy::parse_backup_index;
use super::reader::stream_all;
use super::user_store::{UserStore, STATE_FILE};
use crate::formats::backup_tar::{EntryKey, SYMLINK};
use crate::formats::gzip_members::MemberInfo;
use crate::formats::Guid;

/// One problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub place: String,
    pub problem: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub entries: u64,
    pub members: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn add(&mut self, place: String, problem: String) {
        self.problems.push(Problem { place, problem });
    }
}

/// (name, linkname) of each entry by offset, from one pass over the stream.
type Headers = HashMap<u64, (String, String)>;

impl UserStore {
    pub fn verify(&self, full: bool) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for name in foreign_files(self.dir())? {
            report.add(
                self.dir().join(&name).display().to_string(),
                "foreign file: a store holds only backupstate.sqlite3, backupdata-*.tar[.gz] and .lock".into(),
            );
        }
        let Some((_, size, _, offset)) = self.status()? else {
            return Ok(report);
        };
        self.verify_length(size, &mut report);
        if self.is_compressed() {
            if let Err(e) = self.verify_members(size, offset, &mut report) {
                report.add(self.data_path().display().to_string(), e.to_string());
            }
        }
        let headers = self.scan(full, offset, &mut report)?;
        check_offsets(self.conn(), &headers, &mut report).at(self.state_path())?;
        Ok(report)
    }

    /// The data file must be exactly as long as the committed size: longer
    /// is an uncommitted tail (the next writable open cuts it), shorter is
    /// damage.
    fn verify_length(&self, size: u64, report: &mut VerifyReport) {
        let path = self.data_path();
        match std::fs::metadata(&path) {
            Ok(md) if md.len() == size => {}
            Ok(md) if md.len() > size => report.add(
                path.display().to_string(),
                format!(
                    "{} bytes, but only {size} are committed (a torn append)",
                    md.len()
                ),
            ),
            Ok(md) => report.add(
                path.display().to_string(),
                format!(
                    "{} bytes, but the state says {size} were committed: truncated",
                    md.len()
                ),
            ),
            Err(e) => report.add(path.display().to_string(), e.to_string()),
        }
    }

    fn verify_members(&self, size: u64, offset: u64, report: &mut VerifyReport) -> Result<()> {
        let members = self.members()?;
        let path = self.data_path();
        let mut file = File::open(&path).at(&path)?;
        let (mut cpos, mut upos) = (0, 0);
        for m in &members {
            report.members += 1;
            let place = format!("{} member at {}", path.display(), m.compressed_offset);
            if m.compressed_offset != cpos || m.uncompressed_offset != upos {
                report.add(
                    place.clone(),
                    format!("expected at {cpos} (inflated {upos})"),
                );
            }
            if member_sha1(&mut file, m).ok() != Some(m.sha1) {
                report.add(
                    place,
                    "compressed bytes do not match the recorded sha1".into(),
                );
            }
            cpos = m.compressed_offset + m.compressed_len;
            upos = m.uncompressed_offset + m.uncompressed_len;
        }
        if !members.is_empty() && (cpos != size || upos != offset) {
            report.add(
                path.display().to_string(),
                format!("members end at {cpos}/{upos}, status says {size}/{offset}"),
            );
        }
        Ok(())
    }

    fn scan(&self, full: bool, end: u64, report: &mut VerifyReport) -> Result<Headers> {
        let path = self.data_path();
        let mut headers = Headers::new();
        let mut tar = match stream_all(&path, self.is_compressed()) {
            Ok(t) => t,
            Err(e) => {
                report.add(path.display().to_string(), e.to_string());
                return Ok(headers);
            }
        };
        // The entry before a break in the stream is the one it damaged.
        let mut last: Option<(String, u64)> = None;
        loop {
            let e = match tar.next_entry() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(err) => {
                    let place = match &last {
                        Some((name, offset)) => {
                            format!("{} (after {name} at {offset})", path.display())
                        }
                        None => path.display().to_string(),
                    };
                    report.add(place, err.to_string());
                    break;
                }
            };
            last = Some((e.header.name.clone(), e.offset));
            report.entries += 1;
            let h = &e.header;
            if full && h.typeflag != SYMLINK && h.size > 0 {
                let key = EntryKey::parse(&h.name);
                let is_index = matches!(&key, EntryKey::FolderFile { name, .. } if name == "index");
                let expected = match key {
                    EntryKey::File(g) => Some(g.to_hex()),
                    _ => (!h.linkname.is_empty()).then(|| h.linkname.clone()),
                };
                if is_index {
                    let place = format!("{} at {}", h.name, e.offset);
                    match tar.read_body() {
                        Ok(body) => {
                            let actual = Guid::of(&body).to_hex();
                            if expected.as_ref().is_some_and(|x| *x != actual) {
                                report.add(
                                    place.clone(),
                                    format!(
                                        "content sha1 {actual} does not match its name/linkname"
                                    ),
                                );
                            }
                            if let Err(err) = parse_backup_index(&body) {
                                report.add(place, format!("cyrus.index does not parse: {err}"));
                            }
                        }
                        Err(_) => report.add(place, "body truncated".into()),
                    }
                    headers.insert(e.offset, (h.name.clone(), h.linkname.clone()));
                    continue;
                }
                let mut hasher = Sha1::new();
                let mut buf = vec![0u8; 64 * 1024];
                let mut body = tar.body_reader();
                let ok = loop {
                    match body.read(&mut buf) {
                        Ok(0) => break true,
                        Ok(n) => hasher.update(&buf[..n]),
                        Err(_) => break false,
                    }
                };
                let actual = Guid::from(hasher).to_hex();
                if !ok {
                    report.add(
                        format!("{} at {}", h.name, e.offset),
                        "body truncated".into(),
                    );
                } else if expected.as_ref().is_some_and(|x| *x != actual) {
                    report.add(
                        format!("{} at {}", h.name, e.offset),
                        format!("content sha1 {actual} does not match its name/linkname"),
                    );
                }
            }
            headers.insert(e.offset, (h.name.clone(), h.linkname.clone()));
        }
        if tar.position() != end {
            report.add(
                path.display().to_string(),
                format!(
                    "tar stream ends at {} but status.offset is {end}",
                    tar.position()
                ),
            );
        }
        Ok(headers)
    }
}

/// Names in `dir` that are not store files. The state's sqlite companions
/// (`-journal`, `-wal`, `-shm`) belong to it.
pub fn foreign_files(dir: &std::path::Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let name = entry.at(dir)?.file_name().to_string_lossy().into_owned();
        let state_file = name == STATE_FILE
            || ["-journal", "-wal", "-shm"]
                .iter()
                .any(|s| name == format!("{STATE_FILE}{s}"));
        let data_file = name.starts_with("backupdata-")
            && (name.ends_with(".tar") || name.ends_with(".tar.gz"));
        if !(state_file || data_file || name == ".lock") {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

fn member_sha1(file: &mut File, m: &MemberInfo) -> std::io::Result<Guid> {
    file.seek(SeekFrom::Start(m.compressed_offset))?;
    let len = usize::try_from(m.compressed_len).map_err(|_| std::io::ErrorKind::InvalidData)?;
    let mut bytes = Vec::with_capacity(len.min(64 << 20));
    file.take(m.compressed_len).read_to_end(&mut bytes)?;
    if bytes.len() != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Guid::of(&bytes))
}

fn check_offsets(
    conn: &Connection,
    headers: &Headers,
    report: &mut VerifyReport,
) -> rusqlite::Result<()> {
    let mut expect = |place: String, offset: i64, pred: &dyn Fn(&str, &str) -> bool| {
        let found = u64::try_from(offset).ok().and_then(|o| headers.get(&o));
        match found {
            Some((n, l)) if pred(n, l) => {}
            Some((n, _)) => report.add(place, format!("offset {offset} holds {n:?}")),
            None => report.add(place, format!("offset {offset} is not an entry")),
        }
    };
    for (guid, offset) in rows(conn, "SELECT guid, offset FROM files")? {
        let want = format!("files/{guid}");
        expect(format!("files row {guid}"), offset, &|n, _| n == want);
    }
    let q = "SELECT f.uniqueid || '/cyrus.' || m.name || char(0) || coalesce(m.sha1, ''), m.offset FROM fmeta m JOIN folders f USING (folderid)";
    for (key, offset) in rows(conn, q)? {
        let (name, sha1) = key.split_once('\0').unwrap_or((&key, ""));
        let want = format!("folders/{name}");
        expect(format!("fmeta row {name}"), offset, &|n, l| {
            n == want && l == sha1
        });
    }
    for (key, offset) in rows(conn, "SELECT type || '/' || name, offset FROM meta")? {
        expect(format!("meta row {key}"), offset, &|n, _| n == key);
    }
    for (name, offset) in rows(conn, "SELECT name, offset FROM imap")? {
        let want = format!("imap/{name}/");
        expect(format!("imap row {name}"), offset, &|n, _| {
            n == want || n.starts_with(&format!("imap/{name}"))
        });
    }
    Ok(())
}

fn rows(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut st = conn.prepare(sql)?;
    let r = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    r.collect()
}
