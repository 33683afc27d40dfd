//! Pure codecs: bytes in, values out, and back. No sockets, no SQL, no policy.

pub mod cyrus_header;
pub mod cyrus_index;
pub mod dlist;
pub mod guid;

pub use guid::Guid;
pub mod cyrusdb;
pub mod flat;
pub mod mailbox_name;
pub mod mailboxes_db;
pub mod seen_db;
pub mod skiplist;
pub mod subs_db;
pub mod twoskip;
