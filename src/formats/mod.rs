//! Pure codecs: bytes in, values out, and back. No sockets, no SQL, no policy.

pub mod guid;

pub use guid::Guid;
pub mod backup_tar;
pub mod gzip_members;
