//! What the server says of a user before anything is fetched (META and
//! FMULTISTATUS), and its fingerprint.
//!
//! A user whose listing has the fingerprint of the last complete backup,
//! and whose store is untouched since, has nothing to fetch: the caller may
//! skip opening the store at all. That is most users on most nights, so it
//! is where a no-change run spends its time.

use std::fmt::Write;

use sha1::{Digest, Sha1};

use crate::formats::Guid;
use crate::source::{FileStat, FolderStatus, Source, SourceError, UserFile};

/// The answers a run starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub user_files: Vec<(UserFile, FileStat)>,
    /// `<dir>/<file>` items beyond seen and sub (our agent's sieve scripts).
    pub extra_files: Vec<(String, FileStat)>,
    pub folders: Vec<FolderStatus>,
}

impl Listing {
    /// META (stat mode) and FMULTISTATUS; `during` names the failed command.
    pub fn fetch(
        source: &mut dyn Source,
        user: &str,
    ) -> Result<Listing, (&'static str, SourceError)> {
        Ok(Listing {
            user_files: source.user_files(user).map_err(|e| ("META", e))?,
            extra_files: source.extra_user_files(user).map_err(|e| ("META", e))?,
            folders: source.folders(user).map_err(|e| ("FMULTISTATUS", e))?,
        })
    }

    /// SHA-1 of every name, uniqueid and stat in the listing, in server order.
    pub fn fingerprint(&self) -> Guid {
        let mut text = String::new();
        let stat = |s: &FileStat| format!("{} {} {}", s.size, s.mtime, s.inode);
        for (file, s) in &self.user_files {
            let _ = writeln!(text, "U {} {}", file.name(), stat(s));
        }
        for (item, s) in &self.extra_files {
            let _ = writeln!(text, "X {item} {}", stat(s));
        }
        for f in &self.folders {
            let _ = writeln!(text, "F {} {} {}", f.name, f.uniqueid, f.jmapid);
            for (file, s) in &f.files {
                let _ = writeln!(text, "S {} {}", file.name(), stat(s));
            }
        }
        Guid::from(Sha1::new_with_prefix(text.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MetaFile;

    fn listing() -> Listing {
        let stat = FileStat {
            size: 10,
            mtime: 20,
            inode: 30,
        };
        Listing {
            user_files: vec![(UserFile::Sub, stat)],
            extra_files: vec![],
            folders: vec![FolderStatus {
                name: "INBOX".into(),
                uniqueid: "u1".into(),
                jmapid: "-".into(),
                files: vec![(MetaFile::Index, stat)],
            }],
        }
    }

    #[test]
    fn any_change_of_a_name_uniqueid_or_stat_changes_the_fingerprint() {
        let base = listing().fingerprint();
        assert_eq!(listing().fingerprint(), base);
        let mut renamed = listing();
        renamed.folders[0].name = "INBOX.x".into();
        let mut recreated = listing();
        recreated.folders[0].uniqueid = "u2".into();
        let mut touched = listing();
        touched.folders[0].files[0].1.mtime += 1;
        let mut seen = listing();
        seen.user_files[0].1.inode += 1;
        let mut sieve = listing();
        sieve
            .extra_files
            .push(("sieve/main.script".into(), FileStat::default()));
        for other in [renamed, recreated, touched, seen, sieve] {
            assert_ne!(other.fingerprint(), base, "{other:?}");
        }
    }
}
