//! Seen-state records (cyrus-formats §6.1): key the mailbox uniqueid, value
//! `"1 <lastread> <lastuid> <lastchange> <seenuids>"`.

use thiserror::Error;

use super::cyrusdb::{CyrusDb, CyrusDbError};

#[derive(Debug, Error)]
pub enum SeenError {
    #[error(transparent)]
    Db(#[from] CyrusDbError),
    #[error("seen record {key:?}: {problem}")]
    Value { key: String, problem: String },
}

/// What one user has seen in one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRecord {
    /// When the user last read the mailbox (seconds).
    pub lastread: i64,
    /// The highest UID when it was last read.
    pub lastuid: u32,
    /// When the seen set last changed (seconds).
    pub lastchange: i64,
    /// An IMAP sequence set such as `1:5,7`; empty when nothing is seen.
    pub seenuids: String,
}

fn field<T: std::str::FromStr>(key: &str, name: &str, text: Option<&str>) -> Result<T, SeenError> {
    let problem = |what: &str| SeenError::Value {
        key: key.to_string(),
        problem: format!("{name} {what}"),
    };
    text.ok_or_else(|| problem("is missing"))?
        .parse()
        .map_err(|_| problem("is not a number"))
}

impl SeenRecord {
    /// Decodes the value stored under `key` (used in errors only).
    pub fn parse(key: &str, value: &[u8]) -> Result<SeenRecord, SeenError> {
        let text = std::str::from_utf8(value).map_err(|_| SeenError::Value {
            key: key.to_string(),
            problem: "value is not UTF-8".into(),
        })?;
        let mut fields = text.splitn(5, ' ');
        let version: u32 = field(key, "version", fields.next())?;
        if version != 1 {
            return Err(SeenError::Value {
                key: key.to_string(),
                problem: format!("unknown version {version}"),
            });
        }
        Ok(SeenRecord {
            lastread: field(key, "lastread", fields.next())?,
            lastuid: field(key, "lastuid", fields.next())?,
            lastchange: field(key, "lastchange", fields.next())?,
            seenuids: fields.next().unwrap_or_default().to_string(),
        })
    }
}

/// Every record of a seen database: `(uniqueid, record)` in key order.
pub fn seen_records(db: &CyrusDb) -> Result<Vec<(String, SeenRecord)>, SeenError> {
    db.iter()
        .map(|record| {
            let (key, value) = record?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let seen = SeenRecord::parse(&key, &value)?;
            Ok((key, seen))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_live_example_of_the_spec() {
        let seen = SeenRecord::parse("0b1c", b"1 1795658792 5 0 1:2").unwrap();
        assert_eq!(
            seen,
            SeenRecord {
                lastread: 1795658792,
                lastuid: 5,
                lastchange: 0,
                seenuids: "1:2".into()
            }
        );
    }

    #[test]
    fn an_empty_seen_set_keeps_its_trailing_space_form() {
        let seen = SeenRecord::parse("x", b"1 1795660353 4 1795660353 ").unwrap();
        assert_eq!(seen.seenuids, "");
        assert_eq!(seen.lastuid, 4);
    }

    #[test]
    fn other_versions_are_refused() {
        let err = SeenRecord::parse("x", b"2 1 2 3 1").unwrap_err();
        assert_eq!(err.to_string(), "seen record \"x\": unknown version 2");
    }

    proptest! {
        #[test]
        fn arbitrary_values_never_panic(value in proptest::collection::vec(any::<u8>(), 0..60)) {
            let _ = SeenRecord::parse("x", &value);
        }
    }
}
