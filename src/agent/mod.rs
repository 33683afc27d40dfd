//! The spool side: reading a Cyrus instance's files directly, for `mailvault
//! agent` (any Cyrus from 2.3 to 3.12) and for the in-process local source.

pub mod client_names;
pub mod db_cache;
pub mod imapd_conf;
pub mod index_lock;
pub mod mailbox_annotations;
pub mod server;
pub mod spool;
pub mod spool_io;
pub mod spool_layout;
