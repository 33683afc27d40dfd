//! What `mailvault ls` shows: the folders of a store (now, or as they were at
//! a past time) and the messages of one folder as its `cyrus.index` copy
//! lists them, with From/Subject/Date read from each stored message.
//!
//! The state db knows only the latest name of each folder, so a past view
//! replays the `imap/` links of the data file ([`Timeline`]); the folder's
//! index copy at that time comes from `mv_history`, or, in a Perl-made store
//! that has no such table, from the same scan.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use serde::Serialize;

use super::error::{At, Result, StoreError};
use super::index_copy::IndexCopyError;
use super::message_header::{summarize, HeaderSummary, HEADER_LIMIT};
use super::reader::{stream_all, stream_at};
use super::state::{self, HistoryEntry};
use super::user_store::UserStore;
use crate::formats::backup_tar::{decode_folder_name, file_name, link_target, EntryKey, TarReader};
use crate::formats::cyrus_header::CyrusHeader;
use crate::formats::cyrus_index::{parse_index, IndexRecord};
use crate::formats::Guid;

/// One folder as `ls` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FolderListing {
    pub name: String,
    pub uniqueid: String,
    /// Records kept by the backup (UNLINKED ones are not).
    pub messages: u64,
    /// Their total size.
    pub bytes: u64,
    /// When the name was deleted; `None` while live.
    pub deleted: Option<u64>,
}

/// One message of a folder's index copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageListing {
    pub uid: u32,
    /// Seconds since the epoch.
    pub internaldate: u64,
    pub size: u64,
    /// System flags, keywords (named by the folder's `cyrus.header`), then
    /// internal flags such as `[EXPUNGED]`.
    pub flags: Vec<String>,
    /// `None` for index versions before 10, which have no GUIDs.
    #[serde(serialize_with = "guid_hex")]
    pub guid: Option<Guid>,
    #[serde(flatten)]
    pub header: HeaderSummary,
}

fn guid_hex<S: serde::Serializer>(
    guid: &Option<Guid>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match guid {
        Some(g) => s.serialize_str(&g.to_hex()),
        None => s.serialize_none(),
    }
}

/// An `imap/` link or marker as found in the data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    pub offset: u64,
    /// Decoded folder name.
    pub name: String,
    /// `None` for a deletion marker.
    pub uniqueid: Option<String>,
    pub mtime: u64,
}

/// Every link and every `cyrus.index` copy in a data file, in file order:
/// what a store looked like at any time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    pub links: Vec<LinkEvent>,
    pub indexes: HashMap<String, Vec<HistoryEntry>>,
}

impl Timeline {
    /// The live `(name, uniqueid)` pairs at `time`: links and markers whose
    /// mtime (the backup run's time) is at or before it, replayed in order.
    pub fn folders_at(&self, time: u64) -> BTreeMap<String, String> {
        let mut live = BTreeMap::new();
        for l in self.links.iter().filter(|l| l.mtime <= time) {
            match &l.uniqueid {
                Some(u) => live.insert(l.name.clone(), u.clone()),
                None => live.remove(&l.name),
            };
        }
        live
    }

    /// The latest index copy of `uniqueid` whose mtime is at or before `time`.
    pub fn index_at(&self, uniqueid: &str, time: u64) -> Option<HistoryEntry> {
        latest_at(self.indexes.get(uniqueid)?, time)
    }
}

fn latest_at(history: &[HistoryEntry], time: u64) -> Option<HistoryEntry> {
    history
        .iter()
        .filter(|h| h.mtime <= time)
        .max_by_key(|h| (h.mtime, h.offset))
        .copied()
}

/// Past this gap a reader is reopened at the next wanted offset rather than
/// read on to it (plain files only: seeking is free there).
const PLAIN_WALK_LIMIT: u64 = 256 * 1024;

impl UserStore {
    /// Every folder name the state knows, live or deleted, with what its
    /// `indexed` rows hold.
    pub fn folder_listings(&self) -> Result<Vec<FolderListing>> {
        let mut out = Vec::new();
        for f in self.folders()? {
            let (messages, bytes) =
                state::indexed_totals(self.conn(), &f.uniqueid).at(self.state_path())?;
            out.push(FolderListing {
                name: f.name,
                uniqueid: f.uniqueid,
                messages,
                bytes,
                deleted: f.deleted,
            });
        }
        Ok(out)
    }

    /// One pass over the data file collecting links and index copies.
    pub fn timeline(&self) -> Result<Timeline> {
        let path = self.data_path();
        let mut tar = stream_all(&path, self.is_compressed())?;
        let mut t = Timeline::default();
        while let Some(e) = tar.next_entry().at(&path)? {
            let h = &e.header;
            match EntryKey::parse(&h.name) {
                EntryKey::Imap { tar_name } => t.links.push(LinkEvent {
                    offset: e.offset,
                    name: decode_folder_name(&tar_name),
                    uniqueid: link_target(&h.linkname).map(str::to_string),
                    mtime: h.mtime,
                }),
                EntryKey::FolderFile { uniqueid, name } if name == "index" && h.size > 0 => {
                    t.indexes.entry(uniqueid).or_default().push(HistoryEntry {
                        offset: e.offset,
                        mtime: h.mtime,
                    })
                }
                _ => {}
            }
        }
        Ok(t)
    }

    /// The folders live at `time`, counted from their index copies of then.
    pub fn folder_listings_at(&self, timeline: &Timeline, time: u64) -> Result<Vec<FolderListing>> {
        let mut out = Vec::new();
        for (name, uniqueid) in timeline.folders_at(time) {
            let (messages, bytes) = match self.index_copy_at(timeline, &uniqueid, time)? {
                Some(h) => {
                    let records = self.index_records_at(h.offset)?;
                    let kept = records.iter().filter(|r| !r.is_unlinked());
                    kept.fold((0, 0), |(n, b), r| (n + 1, b + r.size))
                }
                None => (0, 0),
            };
            out.push(FolderListing {
                name,
                uniqueid,
                messages,
                bytes,
                deleted: None,
            });
        }
        Ok(out)
    }

    /// The index copy of a folder at `time`: from `mv_history` when the
    /// store keeps it, else from the timeline's scan.
    pub fn index_copy_at(
        &self,
        timeline: &Timeline,
        uniqueid: &str,
        time: u64,
    ) -> Result<Option<HistoryEntry>> {
        let history = self.index_history(uniqueid)?;
        if history.is_empty() {
            return Ok(timeline.index_at(uniqueid, time));
        }
        Ok(latest_at(&history, time))
    }

    /// The folder's current index copy: the state's `fmeta` row, else the
    /// last one in `mv_history`.
    pub fn latest_index_copy(&self, uniqueid: &str) -> Result<Option<u64>> {
        if let Some(s) = self.folder_file_state(uniqueid, "index")? {
            return Ok(Some(s.offset));
        }
        Ok(self.index_history(uniqueid)?.last().map(|h| h.offset))
    }

    /// The uniqueid a folder argument names: a live name, else the latest
    /// deleted row of that name, else a uniqueid itself.
    pub fn resolve_folder(&self, folder: &str) -> Result<Option<String>> {
        if let Some(u) = self.folder_for_name(folder)? {
            return Ok(Some(u));
        }
        let rows = self.folders()?;
        if let Some(f) = rows.iter().rev().find(|f| f.name == folder) {
            return Ok(Some(f.uniqueid.clone()));
        }
        Ok(rows
            .into_iter()
            .find(|f| f.uniqueid == folder)
            .map(|f| f.uniqueid))
    }

    /// The records of the index copy at `offset`, in any version the codec
    /// reads (versions before 10 list without GUIDs).
    pub fn index_records_at(&self, offset: u64) -> Result<Vec<IndexRecord>> {
        let (_, body) = self.read_entry_at(offset)?;
        let (_, records) = parse_index(&body).map_err(|e| StoreError::Index {
            path: self.data_path(),
            offset,
            source: IndexCopyError::Parse(e),
        })?;
        Ok(records)
    }

    /// The user-flag names of a folder, from its latest `cyrus.header` copy
    /// (Cyrus only ever adds names, so the latest names every older bit).
    pub fn user_flag_names(&self, uniqueid: &str) -> Result<Vec<Option<String>>> {
        let Some(stat) = self.folder_file_state(uniqueid, "header")? else {
            return Ok(Vec::new());
        };
        let (_, body) = self.read_entry_at(stat.offset)?;
        Ok(CyrusHeader::parse(&body)
            .map(|h| h.user_flags)
            .unwrap_or_default())
    }

    /// The messages of the index copy at `index_offset`, with header fields.
    pub fn folder_messages(
        &self,
        uniqueid: &str,
        index_offset: u64,
    ) -> Result<Vec<MessageListing>> {
        let records = self.index_records_at(index_offset)?;
        let names = self.user_flag_names(uniqueid)?;
        let guids: Vec<Guid> = records
            .iter()
            .filter(|r| r.guid != Guid::default())
            .map(|r| r.guid)
            .collect();
        let headers = self.message_headers(&guids)?;
        Ok(records
            .iter()
            .map(|r| {
                let guid = (r.guid != Guid::default()).then_some(r.guid);
                MessageListing {
                    uid: r.uid,
                    internaldate: r.internaldate.secs(),
                    size: r.size,
                    flags: r.flag_names(&names),
                    guid,
                    header: guid
                        .and_then(|g| headers.get(&g).cloned())
                        .unwrap_or_default(),
                }
            })
            .collect())
    }

    /// From/Subject/Date of each stored message among `guids` (those not in
    /// the store are left out). Messages are visited in file order so that a
    /// compressed store inflates each member at most about once.
    pub fn message_headers(&self, guids: &[Guid]) -> Result<HashMap<Guid, HeaderSummary>> {
        let mut wanted = Vec::new();
        for g in guids {
            if let Some(offset) = state::file_offset(self.conn(), g).at(self.state_path())? {
                wanted.push((offset, *g));
            }
        }
        wanted.sort();
        wanted.dedup();
        let path = self.data_path();
        let mut out = HashMap::new();
        let mut cur: Option<TarReader<Box<dyn Read>>> = None;
        for (offset, guid) in wanted {
            if !self.can_walk_to(cur.as_ref().map(|t| t.position()), offset)? {
                let members = self.members_for(offset)?;
                let stream = stream_at(&path, self.is_compressed(), &members, offset)?;
                cur = Some(TarReader::starting_at(stream, offset));
            }
            let Some(tar) = cur.as_mut() else { continue };
            let entry = loop {
                match tar.next_entry().at(&path)? {
                    Some(e) if e.offset < offset => continue,
                    Some(e) if e.offset == offset => break e,
                    _ => return Err(StoreError::NoEntryAt { path, offset }),
                }
            };
            if entry.header.name != file_name(&guid) {
                return Err(StoreError::OffsetMismatch {
                    path,
                    offset,
                    expected: file_name(&guid),
                    found: entry.header.name,
                });
            }
            let mut top = Vec::new();
            let limit = HEADER_LIMIT as u64;
            tar.body_reader()
                .take(limit)
                .read_to_end(&mut top)
                .at(&path)?;
            out.insert(guid, summarize(&top));
        }
        Ok(out)
    }

    /// Whether reading on from `pos` to `offset` is cheaper than reopening:
    /// in a compressed file, when the gap is no longer than the inflating
    /// a reopen would do from the start of `offset`'s member.
    fn can_walk_to(&self, pos: Option<u64>, offset: u64) -> Result<bool> {
        let Some(pos) = pos.filter(|&p| p <= offset) else {
            return Ok(false);
        };
        let gap = offset - pos;
        if !self.is_compressed() {
            return Ok(gap <= PLAIN_WALK_LIMIT);
        }
        let member_start = self
            .members_for(offset)?
            .iter()
            .rev()
            .find(|m| m.uncompressed_offset <= offset)
            .map_or(0, |m| m.uncompressed_offset);
        Ok(gap <= offset - member_start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(offset: u64, name: &str, uniqueid: Option<&str>, mtime: u64) -> LinkEvent {
        LinkEvent {
            offset,
            name: name.into(),
            uniqueid: uniqueid.map(Into::into),
            mtime,
        }
    }

    #[test]
    fn a_rename_between_runs_shows_the_old_name_before_and_the_new_one_after() {
        let t = Timeline {
            links: vec![
                link(0, "INBOX.Old", Some("u1"), 100),
                link(512, "INBOX.Junk", Some("u2"), 100),
                link(1024, "INBOX.Old", None, 200),
                link(1536, "INBOX.Junk", None, 200),
                link(2048, "INBOX.Archive", Some("u1"), 200),
            ],
            indexes: HashMap::new(),
        };
        let before: Vec<_> = t.folders_at(150).into_keys().collect();
        assert_eq!(before, ["INBOX.Junk", "INBOX.Old"]);
        let after: Vec<_> = t.folders_at(200).into_iter().collect();
        assert_eq!(after, [("INBOX.Archive".to_string(), "u1".to_string())]);
        assert!(t.folders_at(99).is_empty());
    }

    #[test]
    fn the_index_copy_at_a_time_is_the_latest_not_after_it() {
        let h = |offset, mtime| HistoryEntry { offset, mtime };
        let history = [h(10, 100), h(20, 200), h(30, 200)];
        assert_eq!(latest_at(&history, 99), None);
        assert_eq!(latest_at(&history, 150), Some(h(10, 100)));
        assert_eq!(latest_at(&history, 200), Some(h(30, 200)));
    }
}
