//! Pure codecs: bytes in, values out, and back. No sockets, no SQL, no policy.

pub mod cyrus_header;
pub mod cyrus_index;
pub mod dlist;
pub mod guid;

pub use guid::Guid;
