//! The Fastmail backup wire protocol that Cyrus's `backupcyrusd` speaks
//! (spec `backup-protocol-and-format.md` §1): the pure codec, reading
//! replies, the blocking client, our optional AUTH extension, and a server
//! loop that answers the protocol from any [`crate::source::Source`].

pub mod auth;
pub mod client;
pub mod codec;
pub mod listen;
pub mod memory;
pub mod reply;
pub mod request;
pub mod server;
