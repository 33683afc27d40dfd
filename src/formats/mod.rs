//! Pure codecs: bytes in, values out, and back. No sockets, no SQL, no policy.

pub mod guid;

pub use guid::Guid;
pub mod cyrusdb;
pub mod flat;
pub mod skiplist;
pub mod twoskip;
