//! A [`Source`] held in memory: users, folders and files given as values.
//!
//! It answers as backupcyrusd does for a server configured with
//! `unixhierarchysep: no` and `altnamespace: no`: an unknown user has no
//! files and no folders; FMETA on a missing folder names the internal name
//! (`user.alice.nope`), FDATA the name as sent. It lets the server loop be
//! exercised without a spool, and gives backup tests a server to back up.

use std::collections::BTreeMap;

use super::codec;
use crate::source::{
    deliver, FileHead, FileSink, FileStat, FolderId, FolderStatus, ItemFailure, MetaFile, Source,
    SourceError, UserFile,
};

/// One file's bytes and the stat the server reports for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryFile {
    pub mtime: i64,
    pub inode: u64,
    pub bytes: Vec<u8>,
}

impl MemoryFile {
    pub fn stat(&self) -> FileStat {
        FileStat {
            size: self.bytes.len() as u64,
            mtime: self.mtime,
            inode: self.inode,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryFolder {
    /// External name (`INBOX.Trips 2024`).
    pub name: String,
    pub uniqueid: String,
    pub jmapid: String,
    pub meta: BTreeMap<MetaFile, MemoryFile>,
    pub messages: BTreeMap<u32, MemoryFile>,
}

impl MemoryFolder {
    fn id(&self) -> FolderId {
        FolderId {
            uniqueid: self.uniqueid.clone(),
            jmapid: self.jmapid.clone(),
        }
    }

    fn meta_stats(&self) -> Vec<(MetaFile, FileStat)> {
        self.meta
            .iter()
            .map(|(f, file)| (*f, file.stat()))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryUser {
    pub name: String,
    pub files: BTreeMap<UserFile, MemoryFile>,
    /// In the order FMULTISTATUS lists them.
    pub folders: Vec<MemoryFolder>,
}

/// See the module doc.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemorySource {
    /// In the order USERS lists them.
    pub users: Vec<MemoryUser>,
}

/// Cyrus's internal name for an external one, in the netnews namespace:
/// `INBOX.a` of `carol.smith` is `user.carol^smith.a`.
pub fn internal_name(user: &str, folder: &str) -> String {
    let inbox = format!("user.{}", user.replace('.', "^"));
    match folder.strip_prefix("INBOX") {
        Some("") => inbox,
        Some(rest) if rest.starts_with('.') => format!("{inbox}{rest}"),
        _ => folder.to_string(),
    }
}

impl MemorySource {
    fn user(&self, user: &str) -> Option<&MemoryUser> {
        self.users.iter().find(|u| u.name == user)
    }

    fn folder(&self, user: &str, folder: &str) -> Option<&MemoryFolder> {
        self.user(user)?.folders.iter().find(|f| f.name == folder)
    }

    fn folder_for_fmeta(&self, user: &str, folder: &str) -> Result<&MemoryFolder, SourceError> {
        self.folder(user, folder)
            .ok_or_else(|| SourceError::No(codec::no_such_folder(&internal_name(user, folder))))
    }
}

fn send(
    sink: &mut dyn FileSink,
    name: &str,
    file: Option<&MemoryFile>,
    absent: ItemFailure,
) -> Result<(), SourceError> {
    match file {
        Some(file) => {
            let head = FileHead {
                name: name.to_string(),
                stat: file.stat(),
            };
            deliver(sink, &head, &mut file.bytes.as_slice()).map(drop)
        }
        None => sink
            .missing(name, &absent)
            .map_err(|source| SourceError::Sink {
                item: name.to_string(),
                source,
            }),
    }
}

impl Source for MemorySource {
    fn ping(&mut self) -> Result<(), SourceError> {
        Ok(())
    }

    fn users(&mut self) -> Result<Vec<String>, SourceError> {
        Ok(self.users.iter().map(|u| u.name.clone()).collect())
    }

    fn user_files(&mut self, user: &str) -> Result<Vec<(UserFile, FileStat)>, SourceError> {
        Ok(self
            .user(user)
            .map(|u| u.files.iter().map(|(f, file)| (*f, file.stat())).collect())
            .unwrap_or_default())
    }

    fn fetch_user_files(
        &mut self,
        user: &str,
        items: &[UserFile],
        sink: &mut dyn FileSink,
    ) -> Result<(), SourceError> {
        for item in items {
            let file = self.user(user).and_then(|u| u.files.get(item));
            send(sink, item.name(), file, ItemFailure::NoSuchFile)?;
        }
        Ok(())
    }

    fn folders(&mut self, user: &str) -> Result<Vec<FolderStatus>, SourceError> {
        let folders = self
            .user(user)
            .map(|u| u.folders.as_slice())
            .unwrap_or_default();
        Ok(folders
            .iter()
            .map(|f| FolderStatus {
                name: f.name.clone(),
                uniqueid: f.uniqueid.clone(),
                jmapid: f.jmapid.clone(),
                files: f.meta_stats(),
            })
            .collect())
    }

    fn folder_meta_stat(
        &mut self,
        user: &str,
        folder: &str,
    ) -> Result<(Vec<(MetaFile, FileStat)>, FolderId), SourceError> {
        let folder = self.folder_for_fmeta(user, folder)?;
        Ok((folder.meta_stats(), folder.id()))
    }

    fn fetch_folder_meta(
        &mut self,
        user: &str,
        folder: &str,
        items: &[MetaFile],
        sink: &mut dyn FileSink,
    ) -> Result<FolderId, SourceError> {
        let folder = self.folder_for_fmeta(user, folder)?;
        for item in items {
            let absent = match item {
                MetaFile::MailboxAnnotations => ItemFailure::Empty,
                _ => ItemFailure::NoSuchFile,
            };
            send(sink, item.name(), folder.meta.get(item), absent)?;
        }
        Ok(folder.id())
    }

    fn fetch_messages(
        &mut self,
        user: &str,
        folder: &str,
        uids: &[u32],
        sink: &mut dyn FileSink,
    ) -> Result<FolderId, SourceError> {
        let found = self
            .folder(user, folder)
            .ok_or_else(|| SourceError::No(codec::no_such_folder(folder)))?;
        for uid in uids {
            let name = uid.to_string();
            send(
                sink,
                &name,
                found.messages.get(uid),
                ItemFailure::NoSuchFile,
            )?;
        }
        Ok(found.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_names_follow_the_netnews_namespace() {
        assert_eq!(internal_name("alice", "INBOX"), "user.alice");
        assert_eq!(internal_name("alice", "INBOX.nope"), "user.alice.nope");
        assert_eq!(
            internal_name("carol.smith", "INBOX.a"),
            "user.carol^smith.a"
        );
        assert_eq!(
            internal_name("alice", "DELETED.user.alice.Junk.6B079A55"),
            "DELETED.user.alice.Junk.6B079A55"
        );
    }
}
