//! The per-user store: an append-only `backupdata-<epoch>.tar[.gz]` in the
//! Cyrus::Backup v5 dialect plus its `backupstate.sqlite3` index, with our
//! own `mv_*` tables beside the v5 ones (DESIGN.md §5, `docs/format.md`).
//!
//! [`UserStore`] is the one writer of a user's files; read-only opens take
//! no lock and never write. [`state_db`] is the appliance's own state: when
//! each user was last backed up.

pub mod browse;
pub mod error;
pub mod index_copy;
pub mod lock;
pub mod message_header;
pub mod reader;
pub mod rebuild;
pub mod recover;
pub mod schema;
pub mod state;
pub mod state_db;
pub mod user_store;
pub mod verify;

pub use error::StoreError;
pub use lock::LockMode;
pub use state::{FileStat, FolderRow, HistoryEntry};
pub use user_store::{user_dir, AppendTx, CommitSummary, FileMeta, StoreOptions, UserStore};
pub use verify::{Problem, VerifyReport};
