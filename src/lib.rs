//! mailvault: a backup appliance for Cyrus IMAP mail stores.
//!
//! The crate is laid out as in `DESIGN.md` §7: pure codecs in [`formats`], the
//! wire protocol in [`protocol`], the spool reader in [`agent`], the per-user
//! store in [`store`], and the actors that schedule it all in [`actors`].
#![forbid(unsafe_code)]

pub mod agent;
pub mod backup;
pub mod cli;
pub mod config;
pub mod connect;
pub mod formats;
pub mod progress;
pub mod protocol;
pub mod source;
pub mod store;
