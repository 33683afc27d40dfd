//! The appliance's configuration: a TOML file plus `MAILVAULT_*` environment
//! overrides, read into [`RawConfig`] (which mirrors the file and rejects
//! unknown keys), then checked once into [`Settings`], the validated form
//! every component shares. A reload builds a new `Settings` or keeps the old
//! one and says why.
//!
//! Environment overrides use `__` between levels:
//! `MAILVAULT_STORE__ROOT=/backup` sets `[store] root`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// The file, as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub backup: RawBackup,
    #[serde(default)]
    pub network: RawNetwork,
    #[serde(default)]
    pub servers: Vec<RawServer>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub root: Option<PathBuf>,
    /// `gzip` (default) or `none`.
    pub compression: Option<String>,
    pub gzip_level: Option<u32>,
    pub member_size_mib: Option<u64>,
    pub retention_days: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub database: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawBackup {
    pub workers: Option<usize>,
    pub users_per_batch: Option<usize>,
    pub uids_per_fdata: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    pub connect_timeout_secs: Option<u64>,
    pub io_timeout_secs: Option<u64>,
    pub retries: Option<u32>,
    pub retry_delay_secs: Option<u64>,
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// The servername the server answers to (backupcyrusd's "slot").
    pub slot: String,
    /// Servers on one RAIDset never run two backups at once.
    pub raidset: Option<String>,
    /// `host:port` of a backupcyrusd or `mailvault agent`.
    pub address: Option<String>,
    /// The `imapd.conf` of a Cyrus on this host: read its spool directly.
    pub local_spool: Option<PathBuf>,
}

/// How the data file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip { level: u32 },
}

/// Where a server's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerSource {
    Network { address: String },
    LocalSpool { imapd_conf: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub slot: String,
    pub raidset: String,
    pub source: ServerSource,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub store_root: PathBuf,
    pub compression: Compression,
    pub member_size: u64,
    pub retention: Duration,
    pub state_database: PathBuf,
    pub workers: usize,
    pub users_per_batch: usize,
    pub uids_per_fdata: usize,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    pub retries: u32,
    pub retry_delay: Duration,
    pub secret: Option<String>,
    pub servers: Vec<Server>,
}

impl Settings {
    /// Reads `path` (TOML) with `MAILVAULT_*` overrides and validates it.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let raw = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("MAILVAULT")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(overrides())),
            )
            .build()
            .and_then(|c| c.try_deserialize::<RawConfig>())
            .map_err(|e| ConfigError::Load {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        Settings::from_raw(raw)
    }

    /// Checks every value once, so nothing downstream re-validates.
    pub fn from_raw(raw: RawConfig) -> Result<Settings, ConfigError> {
        let store = raw.store;
        let compression = match store.compression.as_deref().unwrap_or("gzip") {
            "none" => Compression::None,
            "gzip" => Compression::Gzip {
                level: in_range("store.gzip_level", store.gzip_level.unwrap_or(6), 1, 9)?,
            },
            other => {
                return Err(invalid(
                    "store.compression",
                    format!("{other:?} is not one of \"gzip\", \"none\""),
                ))
            }
        };
        let member_mib = in_range(
            "store.member_size_mib",
            store.member_size_mib.unwrap_or(32),
            1,
            4096,
        )?;
        let backup = raw.backup;
        let net = raw.network;
        if net.secret.as_deref().is_some_and(|s| s.len() < 16) {
            return Err(invalid("network.secret", "must be at least 16 characters"));
        }
        Ok(Settings {
            store_root: store.root.unwrap_or_else(|| PathBuf::from("var/stores")),
            compression,
            member_size: member_mib << 20,
            retention: days(store.retention_days.unwrap_or(7)),
            state_database: raw
                .state
                .database
                .unwrap_or_else(|| PathBuf::from("var/state.sqlite3")),
            workers: in_range("backup.workers", backup.workers.unwrap_or(8), 1, 256)?,
            users_per_batch: in_range(
                "backup.users_per_batch",
                backup.users_per_batch.unwrap_or(50),
                1,
                10_000,
            )?,
            uids_per_fdata: in_range(
                "backup.uids_per_fdata",
                backup.uids_per_fdata.unwrap_or(1024),
                1,
                100_000,
            )?,
            connect_timeout: secs(
                "network.connect_timeout_secs",
                net.connect_timeout_secs.unwrap_or(10),
            )?,
            io_timeout: secs(
                "network.io_timeout_secs",
                net.io_timeout_secs.unwrap_or(600),
            )?,
            retries: in_range("network.retries", net.retries.unwrap_or(3), 0, 100)?,
            retry_delay: Duration::from_secs(net.retry_delay_secs.unwrap_or(5)),
            secret: net.secret,
            servers: servers(raw.servers)?,
        })
    }

    pub fn server(&self, slot: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.slot == slot)
    }
}

/// The `MAILVAULT_<SECTION>__<KEY>` variables. Every setting lives in a
/// section, so variables without `__` (such as the test suite's
/// `MAILVAULT_LAB`) are not settings and are left alone.
fn overrides() -> config::Map<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("MAILVAULT_") && k.contains("__"))
        .collect()
}

fn servers(raw: Vec<RawServer>) -> Result<Vec<Server>, ConfigError> {
    let mut seen = BTreeSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, s)| {
            let key = |field: &str| format!("servers[{i}].{field}");
            if s.slot.is_empty() || s.slot.contains(char::is_whitespace) {
                return Err(invalid(key("slot"), "must be a non-empty word"));
            }
            if !seen.insert(s.slot.clone()) {
                return Err(invalid(
                    key("slot"),
                    format!("{:?} is listed twice", s.slot),
                ));
            }
            let source = match (s.address, s.local_spool) {
                (Some(address), None) => {
                    check_address(&address).map_err(|p| invalid(key("address"), p))?;
                    ServerSource::Network { address }
                }
                (None, Some(imapd_conf)) => ServerSource::LocalSpool { imapd_conf },
                _ => {
                    return Err(invalid(
                        key("address"),
                        "give exactly one of `address` and `local_spool`",
                    ))
                }
            };
            Ok(Server {
                raidset: s.raidset.unwrap_or_else(|| s.slot.clone()),
                slot: s.slot,
                source,
            })
        })
        .collect()
}

/// `host:port`, where the port is a number; the host is resolved at connect time.
fn check_address(address: &str) -> Result<(), String> {
    if address.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("{address:?} is not host:port")),
    }
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, ConfigError> {
    if v < lo || v > hi {
        return Err(invalid(key, format!("{v} is outside {lo}..={hi}")));
    }
    Ok(v)
}

fn secs(key: &str, v: u64) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(in_range(key, v, 1, 86_400)?))
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        Settings::load(&path)
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
        let s = Settings::load(&path).unwrap();
        assert_eq!(s.servers.len(), 1);
        assert!(matches!(
            s.servers[0].source,
            ServerSource::LocalSpool { .. }
        ));
    }

    #[test]
    fn defaults_are_the_designs() {
        let s = parse("").unwrap();
        assert_eq!(s.workers, 8);
        assert_eq!(s.users_per_batch, 50);
        assert_eq!(s.compression, Compression::Gzip { level: 6 });
        assert_eq!(s.member_size, 32 << 20);
        assert_eq!(s.retention, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("[store]\ncompression = \"lz4\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "store.compression: \"lz4\" is not one of \"gzip\", \"none\""
        );
        let e = parse("[backup]\nworkers = 0\n").unwrap_err();
        assert_eq!(e.to_string(), "backup.workers: 0 is outside 1..=256");
        let e = parse("[[servers]]\nslot = \"a\"\n").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("servers[0].address: give exactly one"));
        let e = parse("[[servers]]\nslot = \"a\"\naddress = \"nohost\"\n").unwrap_err();
        assert!(e.to_string().contains("is not host:port"));
        let e = parse("[store]\nroot = \"/x\"\ncolour = 1\n").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }

    #[test]
    fn environment_variables_override_the_file() {
        // No other test looks at network.retries, so setting it here races with nothing.
        std::env::set_var("MAILVAULT_NETWORK__RETRIES", "7");
        let s = parse("[network]\nretries = 2\n");
        std::env::remove_var("MAILVAULT_NETWORK__RETRIES");
        assert_eq!(s.unwrap().retries, 7);
    }

    #[test]
    fn servers_keep_their_raidset() {
        let s = parse(
            "[[servers]]\nslot = \"a\"\naddress = \"10.0.0.1:2901\"\nraidset = \"r1\"\n\
             [[servers]]\nslot = \"b\"\naddress = \"imap-b:2901\"\n",
        )
        .unwrap();
        assert_eq!(s.servers[0].raidset, "r1");
        assert_eq!(s.servers[1].raidset, "b");
        assert!(s.server("b").is_some());
    }
}
