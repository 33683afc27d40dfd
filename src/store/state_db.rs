//! The appliance's own bookkeeping: which users exist on which server, when
//! each was last backed up, and what went wrong. SQLite by default, behind
//! [`StateDb`] so another database can stand in.
//!
//! This is not a user's `backupstate.sqlite3` (that indexes one user's data
//! file); it is one small database for the whole appliance.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

/// Bumped when the schema changes; older databases are migrated on open.
const SCHEMA_VERSION: i64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StateDbError {
    #[error("state database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(
        "state database has schema version {found}, newer than this mailvault ({SCHEMA_VERSION})"
    )]
    TooNew { found: i64 },
}

/// What the appliance knows of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub user: String,
    pub slot: String,
    pub raidset: String,
    /// Unix time of the last backup that completed without error.
    pub last_backed_up: Option<i64>,
    pub last_attempt: Option<i64>,
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub failures: u32,
    /// Size of the user's store after the last backup.
    pub bytes: u64,
}

/// How one user's backup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok {
        bytes: u64,
    },
    /// Some folders failed: the rest was stored, `last_backed_up` stays.
    Partial {
        bytes: u64,
        error: String,
    },
    Failed {
        error: String,
    },
}

/// One row of the age report: users whose last backup is `hours` old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeBucket {
    /// Whole hours since the last backup; `None` for never backed up.
    pub hours: Option<u64>,
    pub users: u64,
}

/// The appliance's state, whatever database keeps it.
pub trait StateDb: Send {
    /// Records the users a server lists, adding new ones; users no longer
    /// listed are kept (their backups still exist) but not scheduled.
    fn sync_users(
        &mut self,
        slot: &str,
        raidset: &str,
        users: &[String],
    ) -> Result<(), StateDbError>;
    /// Records one user (named on a command line), leaving the others as they are.
    fn sync_user(&mut self, slot: &str, raidset: &str, user: &str) -> Result<(), StateDbError>;
    /// Users of `slot` not backed up since `before` (never-backed-up first, then oldest first).
    fn due_users(&mut self, slot: &str, before: i64) -> Result<Vec<String>, StateDbError>;
    fn record(&mut self, user: &str, at: i64, outcome: &Outcome) -> Result<(), StateDbError>;
    fn user(&mut self, user: &str) -> Result<Option<UserRecord>, StateDbError>;
    /// For each user of `slot` whose last run was complete: the fingerprint
    /// recorded with it (see [`crate::backup::Listing`]) and the store's size.
    fn fingerprints(&mut self, slot: &str) -> Result<HashMap<String, (String, u64)>, StateDbError>;
    /// Records the fingerprint of a complete run, or forgets it (`None`)
    /// after any other outcome, so the next run looks at the store again.
    fn set_fingerprint(
        &mut self,
        user: &str,
        fingerprint: Option<&str>,
    ) -> Result<(), StateDbError>;
    /// The seed system's "backups per hour of age" table.
    fn age_histogram(&mut self, now: i64) -> Result<Vec<AgeBucket>, StateDbError>;
}

/// The default [`StateDb`]: one SQLite file.
pub struct SqliteStateDb {
    conn: Connection,
}

impl SqliteStateDb {
    pub fn open(path: &Path) -> Result<SqliteStateDb, StateDbError> {
        let open_err = |source| StateDbError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // Two small writes per user: with WAL, NORMAL syncs at checkpoints,
        // not at each commit. A power cut may lose the last outcomes (the
        // next run records them again); it cannot corrupt the database.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(open_err)?;
        let mut db = SqliteStateDb { conn };
        db.migrate()?;
        Ok(db)
    }

    fn migrate(&mut self) -> Result<(), StateDbError> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema (version INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS users (
                 user TEXT PRIMARY KEY,
                 slot TEXT NOT NULL,
                 raidset TEXT NOT NULL,
                 listed INTEGER NOT NULL DEFAULT 1,
                 last_backed_up INTEGER,
                 last_attempt INTEGER,
                 last_error TEXT,
                 failures INTEGER NOT NULL DEFAULT 0,
                 bytes INTEGER NOT NULL DEFAULT 0,
                 fingerprint TEXT);
             CREATE INDEX IF NOT EXISTS users_due ON users(slot, last_backed_up);",
        )?;
        let found: Option<i64> = self
            .conn
            .query_row("SELECT version FROM schema", [], |r| r.get(0))
            .optional()?;
        match found {
            None => {
                self.conn
                    .execute("INSERT INTO schema (version) VALUES (?1)", [SCHEMA_VERSION])?;
            }
            Some(v) if v > SCHEMA_VERSION => return Err(StateDbError::TooNew { found: v }),
            Some(1) => {
                // Version 2 added the fingerprint of the last complete backup.
                self.conn.execute_batch(
                    "ALTER TABLE users ADD COLUMN fingerprint TEXT;
                     UPDATE schema SET version = 2;",
                )?;
            }
            Some(_) => {}
        }
        Ok(())
    }
}

impl StateDb for SqliteStateDb {
    fn sync_users(
        &mut self,
        slot: &str,
        raidset: &str,
        users: &[String],
    ) -> Result<(), StateDbError> {
        let tx = self.conn.transaction()?;
        tx.execute("UPDATE users SET listed = 0 WHERE slot = ?1", [slot])?;
        {
            let mut upsert = tx.prepare(
                "INSERT INTO users (user, slot, raidset) VALUES (?1, ?2, ?3)
                 ON CONFLICT(user) DO UPDATE SET slot = ?2, raidset = ?3, listed = 1",
            )?;
            for user in users {
                upsert.execute(params![user, slot, raidset])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn sync_user(&mut self, slot: &str, raidset: &str, user: &str) -> Result<(), StateDbError> {
        self.conn.execute(
            "INSERT INTO users (user, slot, raidset) VALUES (?1, ?2, ?3)
             ON CONFLICT(user) DO UPDATE SET slot = ?2, raidset = ?3",
            params![user, slot, raidset],
        )?;
        Ok(())
    }

    fn due_users(&mut self, slot: &str, before: i64) -> Result<Vec<String>, StateDbError> {
        let mut stmt = self.conn.prepare(
            "SELECT user FROM users
             WHERE slot = ?1 AND listed = 1 AND (last_backed_up IS NULL OR last_backed_up < ?2)
             ORDER BY last_backed_up IS NOT NULL, last_backed_up, user",
        )?;
        let users = stmt
            .query_map(params![slot, before], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(users)
    }

    fn record(&mut self, user: &str, at: i64, outcome: &Outcome) -> Result<(), StateDbError> {
        match outcome {
            Outcome::Ok { bytes } => self.conn.execute(
                "UPDATE users SET last_backed_up = ?2, last_attempt = ?2, last_error = NULL,
                 failures = 0, bytes = ?3 WHERE user = ?1",
                params![user, at, *bytes as i64],
            )?,
            Outcome::Partial { bytes, error } => self.conn.execute(
                "UPDATE users SET last_attempt = ?2, last_error = ?3, failures = failures + 1,
                 bytes = ?4 WHERE user = ?1",
                params![user, at, error, *bytes as i64],
            )?,
            Outcome::Failed { error } => self.conn.execute(
                "UPDATE users SET last_attempt = ?2, last_error = ?3, failures = failures + 1
                 WHERE user = ?1",
                params![user, at, error],
            )?,
        };
        Ok(())
    }

    fn user(&mut self, user: &str) -> Result<Option<UserRecord>, StateDbError> {
        let row = self
            .conn
            .query_row(
                "SELECT user, slot, raidset, last_backed_up, last_attempt, last_error, failures, bytes
                 FROM users WHERE user = ?1",
                [user],
                |r| {
                    Ok(UserRecord {
                        user: r.get(0)?,
                        slot: r.get(1)?,
                        raidset: r.get(2)?,
                        last_backed_up: r.get(3)?,
                        last_attempt: r.get(4)?,
                        last_error: r.get(5)?,
                        failures: r.get(6)?,
                        bytes: r.get::<_, i64>(7)? as u64,
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    fn fingerprints(&mut self, slot: &str) -> Result<HashMap<String, (String, u64)>, StateDbError> {
        let mut stmt = self.conn.prepare(
            "SELECT user, fingerprint, bytes FROM users WHERE slot = ?1 AND fingerprint IS NOT NULL",
        )?;
        let rows = stmt.query_map([slot], |r| {
            Ok((
                r.get::<_, String>(0)?,
                (r.get::<_, String>(1)?, r.get::<_, i64>(2)? as u64),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_fingerprint(
        &mut self,
        user: &str,
        fingerprint: Option<&str>,
    ) -> Result<(), StateDbError> {
        self.conn.execute(
            "UPDATE users SET fingerprint = ?2 WHERE user = ?1",
            params![user, fingerprint],
        )?;
        Ok(())
    }

    fn age_histogram(&mut self, now: i64) -> Result<Vec<AgeBucket>, StateDbError> {
        let mut stmt = self.conn.prepare(
            "SELECT CASE WHEN last_backed_up IS NULL THEN NULL
                         ELSE MAX(0, (?1 - last_backed_up) / 3600) END AS hours,
                    COUNT(*)
             FROM users WHERE listed = 1
             GROUP BY hours ORDER BY hours IS NULL, hours",
        )?;
        let buckets = stmt
            .query_map([now], |r| {
                Ok(AgeBucket {
                    hours: r.get::<_, Option<i64>>(0)?.map(|h| h as u64),
                    users: r.get::<_, i64>(1)? as u64,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, SqliteStateDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteStateDb::open(&dir.path().join("state.sqlite3")).unwrap();
        (dir, db)
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn never_backed_up_users_come_first_then_the_oldest() {
        let (_d, mut db) = db();
        db.sync_users("a", "r1", &names(&["u1", "u2", "u3"]))
            .unwrap();
        db.record("u1", 1000, &Outcome::Ok { bytes: 10 }).unwrap();
        db.record("u3", 500, &Outcome::Ok { bytes: 10 }).unwrap();
        assert_eq!(db.due_users("a", 2000).unwrap(), names(&["u2", "u3", "u1"]));
        assert_eq!(db.due_users("a", 900).unwrap(), names(&["u2", "u3"]));
        assert!(db.due_users("b", 2000).unwrap().is_empty());
    }

    #[test]
    fn a_partial_backup_does_not_advance_last_backed_up() {
        let (_d, mut db) = db();
        db.sync_users("a", "r1", &names(&["u1"])).unwrap();
        db.record("u1", 1000, &Outcome::Ok { bytes: 10 }).unwrap();
        let partial = Outcome::Partial {
            bytes: 20,
            error: "folder INBOX/x: corrupt index".into(),
        };
        db.record("u1", 2000, &partial).unwrap();
        let u = db.user("u1").unwrap().unwrap();
        assert_eq!(u.last_backed_up, Some(1000));
        assert_eq!(u.last_attempt, Some(2000));
        assert_eq!(u.failures, 1);
        assert_eq!(u.bytes, 20);
        assert_eq!(
            u.last_error.as_deref(),
            Some("folder INBOX/x: corrupt index")
        );
    }

    #[test]
    fn users_no_longer_listed_are_kept_but_not_due() {
        let (_d, mut db) = db();
        db.sync_users("a", "r1", &names(&["u1", "u2"])).unwrap();
        db.sync_users("a", "r1", &names(&["u2"])).unwrap();
        assert_eq!(db.due_users("a", 10).unwrap(), names(&["u2"]));
        assert!(db.user("u1").unwrap().is_some());
    }

    #[test]
    fn the_age_histogram_counts_users_per_hour_of_age() {
        let (_d, mut db) = db();
        db.sync_users("a", "r1", &names(&["u1", "u2", "u3", "u4"]))
            .unwrap();
        let now = 100 * 3600;
        db.record("u1", now - 1800, &Outcome::Ok { bytes: 1 })
            .unwrap();
        db.record("u2", now - 600, &Outcome::Ok { bytes: 1 })
            .unwrap();
        db.record("u3", now - 26 * 3600, &Outcome::Ok { bytes: 1 })
            .unwrap();
        let h = db.age_histogram(now).unwrap();
        assert_eq!(
            h,
            vec![
                AgeBucket {
                    hours: Some(0),
                    users: 2
                },
                AgeBucket {
                    hours: Some(26),
                    users: 1
                },
                AgeBucket {
                    hours: None,
                    users: 1
                },
            ]
        );
    }

    #[test]
    fn fingerprints_are_kept_per_user_and_forgotten_on_request() {
        let (_d, mut db) = db();
        db.sync_users("a", "r1", &names(&["u1", "u2"])).unwrap();
        db.record("u1", 10, &Outcome::Ok { bytes: 7 }).unwrap();
        db.set_fingerprint("u1", Some("f1")).unwrap();
        db.set_fingerprint("u2", Some("f2")).unwrap();
        db.set_fingerprint("u2", None).unwrap();
        let known = db.fingerprints("a").unwrap();
        assert_eq!(known.len(), 1);
        assert_eq!(known["u1"], ("f1".to_string(), 7));
        assert!(db.fingerprints("b").unwrap().is_empty());
    }

    #[test]
    fn a_version_1_database_gains_the_fingerprint_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE schema (version INTEGER NOT NULL); INSERT INTO schema VALUES (1);
             CREATE TABLE users (user TEXT PRIMARY KEY, slot TEXT NOT NULL, raidset TEXT NOT NULL,
               listed INTEGER NOT NULL DEFAULT 1, last_backed_up INTEGER, last_attempt INTEGER,
               last_error TEXT, failures INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0);
             INSERT INTO users (user, slot, raidset) VALUES ('u', 'a', 'r');",
        )
        .unwrap();
        drop(old);
        let mut db = SqliteStateDb::open(&path).unwrap();
        db.set_fingerprint("u", Some("f")).unwrap();
        assert_eq!(db.fingerprints("a").unwrap()["u"].0, "f");
    }

    #[test]
    fn reopening_keeps_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite3");
        SqliteStateDb::open(&path)
            .unwrap()
            .sync_users("a", "r", &names(&["u"]))
            .unwrap();
        assert!(SqliteStateDb::open(&path)
            .unwrap()
            .user("u")
            .unwrap()
            .is_some());
    }
}
