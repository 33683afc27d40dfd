//! Opening the [`Source`] a server's settings name: a network client for a
//! backupcyrusd or `mailvault agent`, or the spool reader in-process for a
//! Cyrus on this host.

use std::path::Path;

use crate::agent::spool::Spool;
use crate::config::{Server, ServerSource, Settings};
use crate::protocol::client::{Client, ClientOptions};
use crate::source::{Source, SourceError};

/// A server that cannot be reached or read.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("server {slot} ({address}): {source}")]
    Network {
        slot: String,
        address: String,
        #[source]
        source: Box<SourceError>,
    },
    #[error("server {slot}: local spool {conf}: {message}")]
    Spool {
        slot: String,
        conf: String,
        message: String,
    },
}

/// The client options a network server gets from the settings.
pub fn client_options(slot: &str, settings: &Settings) -> ClientOptions {
    ClientOptions {
        connect_timeout: settings.connect_timeout,
        io_timeout: settings.io_timeout,
        retries: settings.retries,
        retry_delay: settings.retry_delay,
        secret: settings.secret.as_ref().map(|s| s.as_bytes().to_vec()),
        fdata_batch: settings.uids_per_fdata,
        ..ClientOptions::new(slot)
    }
}

pub fn open_source(
    server: &Server,
    settings: &Settings,
) -> Result<Box<dyn Source + Send>, ConnectError> {
    match &server.source {
        ServerSource::Network { address } => {
            let client = Client::connect(address, &client_options(&server.slot, settings))
                .map_err(|source| ConnectError::Network {
                    slot: server.slot.clone(),
                    address: address.clone(),
                    source: Box::new(source),
                })?;
            Ok(Box::new(client))
        }
        ServerSource::LocalSpool { imapd_conf } => {
            Ok(Box::new(open_spool(&server.slot, imapd_conf)?))
        }
    }
}

fn open_spool(slot: &str, conf: &Path) -> Result<Spool, ConnectError> {
    Spool::open(conf).map_err(|e| ConnectError::Spool {
        slot: slot.to_owned(),
        conf: conf.display().to_string(),
        message: e.to_string(),
    })
}
