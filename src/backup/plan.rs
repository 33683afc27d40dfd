//! Deciding what a run must fetch, from the server's stats and the store's
//! state alone: no file is read to decide.
//!
//! A folder is unchanged when the stat (size, mtime, inode) of every meta
//! file the server lists equals the stored one and the store holds no meta
//! file the server no longer lists (the Perl client misses that case: a
//! vanished file never made its folder dirty). A uniqueid already known
//! under another name is a rename: when its files are unchanged, only the
//! `imap/<name>/` link is written.

use std::collections::{BTreeMap, BTreeSet};

use crate::source::{FileStat, FolderStatus, MetaFile};
use crate::store::FileStat as StoredStat;

/// What to do with one folder the server listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderPlan {
    /// Nothing changed.
    Skip,
    /// Same files, new name: write the link only.
    Link,
    /// Fetch meta files and missing messages; `link` when the name is new.
    Fetch { link: bool },
}

/// The stored state of one folder, as the plan needs it.
#[derive(Debug, Clone, Default)]
pub struct StoredFolder {
    /// The uniqueid the store's live link of this name points at.
    pub linked_uniqueid: Option<String>,
    /// The stored meta files of the listed folder's uniqueid.
    pub files: BTreeMap<MetaFile, StoredStat>,
    /// They were stored within a second of their last change: their stat
    /// cannot show a change made later in that same second.
    pub recheck: bool,
}

pub fn plan_folder(listed: &FolderStatus, stored: &StoredFolder) -> FolderPlan {
    let link = stored.linked_uniqueid.as_deref() != Some(listed.uniqueid.as_str());
    if stored.recheck || files_changed(&listed.files, &stored.files) {
        FolderPlan::Fetch { link }
    } else if link {
        FolderPlan::Link
    } else {
        FolderPlan::Skip
    }
}

fn files_changed(listed: &[(MetaFile, FileStat)], stored: &BTreeMap<MetaFile, StoredStat>) -> bool {
    if stored.is_empty() {
        return true;
    }
    let listed_kinds: BTreeSet<MetaFile> = listed.iter().map(|(k, _)| *k).collect();
    let vanished = stored.keys().any(|k| !listed_kinds.contains(k));
    vanished
        || listed
            .iter()
            .any(|(kind, stat)| !same(stat, stored.get(kind)))
}

fn same(server: &FileStat, stored: Option<&StoredStat>) -> bool {
    stored.is_some_and(|s| {
        s.sha1.is_some()
            && s.size == server.size
            && i64::try_from(s.mtime).ok() == Some(server.mtime)
            && s.inode == server.inode
    })
}

/// Whether a stored user file (seen, sub) must be fetched again.
pub fn user_file_changed(server: &FileStat, stored: Option<&StoredStat>) -> bool {
    !same(server, stored)
}

/// Names listed more than once in one FMULTISTATUS: the server is confused
/// about them, so they are skipped with an error rather than guessed at.
pub fn duplicate_names(folders: &[FolderStatus]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    folders
        .iter()
        .filter(|f| !seen.insert(f.name.as_str()))
        .map(|f| f.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(size: u64, mtime: i64, inode: u64) -> FileStat {
        FileStat { size, mtime, inode }
    }

    fn stored(size: u64, mtime: u64, inode: u64) -> StoredStat {
        StoredStat {
            size,
            mtime,
            inode,
            sha1: Some("da39a3ee5e6b4b0d3255bfef95601890afd80709".into()),
            offset: 0,
        }
    }

    fn listed(files: &[(MetaFile, FileStat)]) -> FolderStatus {
        FolderStatus {
            name: "INBOX".into(),
            uniqueid: "u1".into(),
            jmapid: "-".into(),
            files: files.to_vec(),
        }
    }

    fn known(files: &[(MetaFile, StoredStat)]) -> StoredFolder {
        StoredFolder {
            linked_uniqueid: Some("u1".into()),
            files: files.iter().cloned().collect(),
            recheck: false,
        }
    }

    #[test]
    fn equal_stats_skip_the_folder() {
        let f = listed(&[
            (MetaFile::Header, stat(10, 5, 1)),
            (MetaFile::Index, stat(20, 6, 2)),
        ]);
        let s = known(&[
            (MetaFile::Header, stored(10, 5, 1)),
            (MetaFile::Index, stored(20, 6, 2)),
        ]);
        assert_eq!(plan_folder(&f, &s), FolderPlan::Skip);
    }

    #[test]
    fn any_difference_in_size_mtime_or_inode_fetches() {
        let s = known(&[(MetaFile::Index, stored(20, 6, 2))]);
        for changed in [stat(21, 6, 2), stat(20, 7, 2), stat(20, 6, 3)] {
            let f = listed(&[(MetaFile::Index, changed)]);
            assert_eq!(plan_folder(&f, &s), FolderPlan::Fetch { link: false });
        }
    }

    #[test]
    fn a_vanished_file_fetches() {
        let f = listed(&[(MetaFile::Index, stat(20, 6, 2))]);
        let s = known(&[
            (MetaFile::Index, stored(20, 6, 2)),
            (MetaFile::Annotations, stored(336, 6, 3)),
        ]);
        assert_eq!(plan_folder(&f, &s), FolderPlan::Fetch { link: false });
    }

    #[test]
    fn a_known_uniqueid_under_a_new_name_is_only_linked() {
        let f = listed(&[(MetaFile::Index, stat(20, 6, 2))]);
        let s = StoredFolder {
            linked_uniqueid: None,
            ..known(&[(MetaFile::Index, stored(20, 6, 2))])
        };
        assert_eq!(plan_folder(&f, &s), FolderPlan::Link);
    }

    #[test]
    fn a_folder_stored_in_the_second_of_its_last_change_is_fetched_again() {
        let f = listed(&[(MetaFile::Index, stat(20, 6, 2))]);
        let s = StoredFolder {
            recheck: true,
            ..known(&[(MetaFile::Index, stored(20, 6, 2))])
        };
        assert_eq!(plan_folder(&f, &s), FolderPlan::Fetch { link: false });
    }

    #[test]
    fn a_new_folder_is_fetched_and_linked() {
        let f = listed(&[(MetaFile::Index, stat(20, 6, 2))]);
        assert_eq!(
            plan_folder(&f, &StoredFolder::default()),
            FolderPlan::Fetch { link: true }
        );
    }

    #[test]
    fn names_listed_twice_are_found() {
        let mut a = listed(&[]);
        let b = a.clone();
        a.name = "INBOX.x".into();
        let c = a.clone();
        assert_eq!(
            duplicate_names(&[a, b, c]),
            BTreeSet::from(["INBOX.x".to_string()])
        );
    }
}
