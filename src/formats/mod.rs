//! Pure codecs: bytes in, values out, and back. No sockets, no SQL, no policy.

pub mod backup_tar;
pub mod cyrus_header;
pub mod cyrus_index;
pub mod cyrusdb;
pub mod dlist;
pub mod flat;
pub mod guid;
pub mod gzip_members;
pub mod mailbox_name;
pub mod mailboxes_db;
pub mod seen_db;
pub mod skiplist;
pub mod subs_db;
pub mod twoskip;

pub use guid::Guid;
