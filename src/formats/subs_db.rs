//! Subscription databases (cyrus-formats §6.2): which folders a user is
//! subscribed to, as internal names.
//!
//! Up to 3.4 each key is an internal name. From 3.6 a `\x1FVER\x1F` record
//! gives the version (2, or 3 from 3.12) and each subscription is `N` + the
//! 3.6 database name, with the owner's own INBOX written as `INBOX`. Version
//! 2 replaced the INBOX prefix wherever it matched (so `user.matthew` became
//! `INBOXhew` in matt's file); version 3 only at a separator. Reading undoes
//! exactly what each version did.

use thiserror::Error;

use super::cyrusdb::{CyrusDb, CyrusDbError};
use super::mailbox_name::{MailboxName, NameConfig, NameError};

const VERSION_KEY: &[u8] = b"\x1FVER\x1F";

#[derive(Debug, Error)]
pub enum SubsError {
    #[error(transparent)]
    Db(#[from] CyrusDbError),
    #[error("subscription {key:?}: {source}")]
    Name {
        key: String,
        #[source]
        source: NameError,
    },
    #[error("subscription {key:?}: the name is not UTF-8")]
    NotUtf8 { key: String },
    #[error("subscription file version {0:?} is not understood")]
    Version(String),
}

/// The layout of a subscription database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubsVersion {
    /// 2.x–3.4: internal names.
    Legacy,
    /// 3.6–3.10.
    V2,
    /// 3.12+.
    V3,
}

/// The decoded subscriptions of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriptions {
    pub version: SubsVersion,
    /// Internal names, in database order.
    pub folders: Vec<String>,
}

fn version(db: &CyrusDb) -> Result<SubsVersion, SubsError> {
    match db.get(VERSION_KEY)? {
        None => Ok(SubsVersion::Legacy),
        Some(v) if v == b"2" => Ok(SubsVersion::V2),
        Some(v) if v == b"3" => Ok(SubsVersion::V3),
        Some(v) => Err(SubsError::Version(String::from_utf8_lossy(&v).into_owned())),
    }
}

/// `userid`'s subscriptions stored in `db`.
pub fn subscriptions(
    db: &CyrusDb,
    userid: &str,
    cfg: &NameConfig,
) -> Result<Subscriptions, SubsError> {
    let version = version(db)?;
    let inbox = MailboxName::inbox_of(userid).to_dbname(cfg);
    let mut folders = Vec::new();
    for record in db.iter() {
        let (key, _) = record?;
        let name = match version {
            SubsVersion::Legacy => Some(legacy_name(&key)?),
            SubsVersion::V2 | SubsVersion::V3 => versioned_name(&key, version, &inbox, cfg)?,
        };
        folders.extend(name);
    }
    Ok(Subscriptions { version, folders })
}

fn lossy(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn legacy_name(key: &[u8]) -> Result<String, SubsError> {
    String::from_utf8(key.to_vec()).map_err(|_| SubsError::NotUtf8 { key: lossy(key) })
}

/// The internal name of an `N` record, `None` for any other record.
fn versioned_name(
    key: &[u8],
    version: SubsVersion,
    inbox: &[u8],
    cfg: &NameConfig,
) -> Result<Option<String>, SubsError> {
    let Some(stored) = key.strip_prefix(b"N") else {
        return Ok(None);
    };
    let dbname = restore_inbox(stored, version, inbox);
    let name = MailboxName::from_dbname(&dbname, cfg).map_err(|source| SubsError::Name {
        key: lossy(key),
        source,
    })?;
    Ok(Some(name.to_internal(cfg)))
}

/// Puts the owner's INBOX database name back where the file says `INBOX`.
fn restore_inbox(stored: &[u8], version: SubsVersion, inbox: &[u8]) -> Vec<u8> {
    let Some(rest) = stored.strip_prefix(b"INBOX") else {
        return stored.to_vec();
    };
    let at_boundary = rest.is_empty() || rest.first() == Some(&0x1F);
    if version == SubsVersion::V3 && !at_boundary {
        return stored.to_vec();
    }
    [inbox, rest].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn subs(bytes: &[u8], userid: &str) -> Subscriptions {
        let db = CyrusDb::from_bytes("sub", bytes.to_vec()).unwrap();
        subscriptions(&db, userid, &NameConfig::default()).unwrap()
    }

    #[test]
    fn a_2x_file_lists_internal_names() {
        let got = subs(b"user.bob\t\nuser.bob.Sent\t\n", "bob");
        assert_eq!(got.version, SubsVersion::Legacy);
        assert_eq!(got.folders, vec!["user.bob", "user.bob.Sent"]);
    }

    /// bob's real 3.13 sub file, from wire capture 08.
    #[test]
    fn a_v3_file_restores_the_inbox() {
        let got = subs(
            b"\x1FVER\x1F\t3\nNINBOX\t\nNINBOX\x1FTrips 2024\t\nNINBOX\x1Fx\t\nNINBOX\x1Fx\x1Fy\t\n",
            "bob",
        );
        assert_eq!(got.version, SubsVersion::V3);
        assert_eq!(
            got.folders,
            vec![
                "user.bob",
                "user.bob.Trips 2024",
                "user.bob.x",
                "user.bob.x.y"
            ]
        );
    }

    #[test]
    fn another_users_folder_and_a_dotted_userid() {
        let got = subs(
            b"\x1FVER\x1F\t2\nNINBOX\x1Fa.b\t\nNuser\x1Fbob\t\n",
            "carol.smith",
        );
        assert_eq!(got.folders, vec!["user.carol^smith.a^b", "user.bob"]);
    }

    #[test]
    fn v2_replaced_the_prefix_anywhere_and_v3_only_at_a_boundary() {
        let v2 = subs(b"\x1FVER\x1F\t2\nNINBOXhew\t\n", "matt");
        assert_eq!(v2.folders, vec!["user.matthew"]);
        let v3 = subs(b"\x1FVER\x1F\t3\nNINBOXes\t\n", "matt");
        assert_eq!(v3.folders, vec!["INBOXes"]);
    }

    proptest! {
        #[test]
        fn arbitrary_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(db) = CyrusDb::from_bytes("fuzz", bytes) {
                let _ = subscriptions(&db, "bob", &NameConfig::default());
            }
        }
    }
}
