//! Cyrus's `imapd.conf`: the settings the agent needs to find a spool.
//!
//! The file is `key: value` lines; `#` starts a comment line. Cyrus accepts
//! `yes/no`, `on/off`, `true/false`, `1/0` for booleans. We read only what
//! locating mailboxes and user files depends on, and keep every partition
//! setting so any layout (metapartitions, archive partitions) resolves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// An `imapd.conf` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {problem}")]
    Invalid {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{path}: no `configdirectory` setting")]
    NoConfigDirectory { path: PathBuf },
}

/// The subset of a Cyrus configuration that decides where files live and how
/// names are spelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapdConf {
    pub config_directory: PathBuf,
    /// `partition-<name>`: the data roots.
    pub partitions: BTreeMap<String, PathBuf>,
    /// `metapartition-<name>`: where the files in `metapartition_files` live instead.
    pub meta_partitions: BTreeMap<String, PathBuf>,
    /// `archivepartition-<name>`: where ARCHIVED messages live.
    pub archive_partitions: BTreeMap<String, PathBuf>,
    /// `metapartition_files`: which meta files move to the metapartition.
    pub meta_partition_files: Vec<String>,
    pub hash_imap_spool: bool,
    pub full_dir_hash: bool,
    pub virt_domains: bool,
    pub unix_hierarchy_sep: bool,
    pub alt_namespace: bool,
    pub servername: Option<String>,
    pub sieve_dir: Option<PathBuf>,
    /// `mboxlist_db_path`, when mailboxes.db is not in the config directory.
    pub mboxlist_db_path: Option<PathBuf>,
    /// `annotation_db_path`, likewise for annotations.db.
    pub annotation_db_path: Option<PathBuf>,
}

impl ImapdConf {
    pub fn load(path: &Path) -> Result<ImapdConf, ConfError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfError::Read {
            path: path.to_owned(),
            source,
        })?;
        let conf = ImapdConf::parse(&text, path)?;
        Ok(conf.relative_to(path.parent().unwrap_or(Path::new("."))))
    }

    /// Resolves relative paths against `base`, the directory of the file. Cyrus
    /// wants absolute paths; relative ones let a sample spool travel with its
    /// configuration.
    pub fn relative_to(mut self, base: &Path) -> ImapdConf {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.config_directory);
        let maps = [
            &mut self.partitions,
            &mut self.meta_partitions,
            &mut self.archive_partitions,
        ];
        maps.into_iter().flat_map(|m| m.values_mut()).for_each(fix);
        [
            &mut self.sieve_dir,
            &mut self.mboxlist_db_path,
            &mut self.annotation_db_path,
        ]
        .into_iter()
        .flatten()
        .for_each(fix);
        self
    }

    /// Parses the text of an `imapd.conf`; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ImapdConf, ConfError> {
        let settings = settings(text, path)?;
        let get = |key: &str| settings.get(key).map(|(_, v)| v.as_str());
        let flag = |key: &str, default: bool| match get(key) {
            None => Ok(default),
            Some(v) => parse_bool(v).ok_or_else(|| ConfError::Invalid {
                path: path.to_owned(),
                line: settings[key].0,
                problem: format!("{key}: {v:?} is not a boolean"),
            }),
        };
        let config_directory = get("configdirectory").map(PathBuf::from).ok_or_else(|| {
            ConfError::NoConfigDirectory {
                path: path.to_owned(),
            }
        })?;
        Ok(ImapdConf {
            config_directory,
            partitions: prefixed(&settings, "partition-"),
            meta_partitions: prefixed(&settings, "metapartition-"),
            archive_partitions: prefixed(&settings, "archivepartition-"),
            meta_partition_files: get("metapartition_files")
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            hash_imap_spool: flag("hashimapspool", false)?,
            full_dir_hash: flag("fulldirhash", false)?,
            virt_domains: get("virtdomains").is_some_and(|v| parse_bool(v) != Some(false)),
            unix_hierarchy_sep: flag("unixhierarchysep", true)?,
            alt_namespace: flag("altnamespace", true)?,
            servername: get("servername").map(str::to_owned),
            sieve_dir: get("sievedir").map(PathBuf::from),
            mboxlist_db_path: get("mboxlist_db_path").map(PathBuf::from),
            annotation_db_path: get("annotation_db_path").map(PathBuf::from),
        })
    }

    pub fn mailboxes_db(&self) -> PathBuf {
        self.mboxlist_db_path
            .clone()
            .unwrap_or_else(|| self.config_directory.join("mailboxes.db"))
    }

    pub fn annotations_db(&self) -> PathBuf {
        self.annotation_db_path
            .clone()
            .unwrap_or_else(|| self.config_directory.join("annotations.db"))
    }

    /// Whether `file` (`header`, `index`, `expunge`, ...) lives on the metapartition.
    pub fn on_meta_partition(&self, file: &str) -> bool {
        self.meta_partition_files.iter().any(|f| f == file)
    }
}

/// `key -> (line number, value)`; a later line overrides an earlier one, as in Cyrus.
type Settings = BTreeMap<String, (usize, String)>;

fn settings(text: &str, path: &Path) -> Result<Settings, ConfError> {
    let mut out = Settings::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once(':').ok_or_else(|| ConfError::Invalid {
            path: path.to_owned(),
            line: n + 1,
            problem: format!("expected `key: value`, found {line:?}"),
        })?;
        out.insert(
            key.trim().to_ascii_lowercase(),
            (n + 1, value.trim().to_owned()),
        );
    }
    Ok(out)
}

fn prefixed(settings: &Settings, prefix: &str) -> BTreeMap<String, PathBuf> {
    settings
        .iter()
        .filter_map(|(k, (_, v))| Some((k.strip_prefix(prefix)?.to_owned(), PathBuf::from(v))))
        .collect()
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" | "t" | "y" => Some(true),
        "0" | "no" | "off" | "false" | "f" | "n" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = "\
# generated
configdirectory: /srv/cyrus/lib
defaultpartition: default
partition-default: /srv/cyrus/spool
partition-big: /srv/big
metapartition-default: /srv/meta
metapartition_files: header index expunge
archivepartition-default: /srv/archive
sievedir: /srv/sieve
servername: imap-a.example.net
unixhierarchysep: no
altnamespace: off
hashimapspool: true
virtdomains: userid
";

    #[test]
    fn reads_what_locating_a_mailbox_needs() {
        let conf = ImapdConf::parse(LAB, Path::new("imapd.conf")).unwrap();
        assert_eq!(conf.config_directory, Path::new("/srv/cyrus/lib"));
        assert_eq!(conf.partitions["default"], Path::new("/srv/cyrus/spool"));
        assert_eq!(conf.partitions["big"], Path::new("/srv/big"));
        assert_eq!(conf.meta_partitions["default"], Path::new("/srv/meta"));
        assert_eq!(
            conf.archive_partitions["default"],
            Path::new("/srv/archive")
        );
        assert!(conf.on_meta_partition("index") && !conf.on_meta_partition("cache"));
        assert!(conf.hash_imap_spool && !conf.full_dir_hash);
        assert!(conf.virt_domains, "virtdomains: userid means on");
        assert!(!conf.unix_hierarchy_sep && !conf.alt_namespace);
        assert_eq!(conf.servername.as_deref(), Some("imap-a.example.net"));
        assert_eq!(
            conf.mailboxes_db(),
            Path::new("/srv/cyrus/lib/mailboxes.db")
        );
    }

    #[test]
    fn defaults_follow_cyrus() {
        let conf = ImapdConf::parse("configdirectory: /c\n", Path::new("x")).unwrap();
        assert!(conf.unix_hierarchy_sep && conf.alt_namespace);
        assert!(!conf.hash_imap_spool && !conf.virt_domains);
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let text =
            "configdirectory: lib\npartition-default: spool\npartition-x: /abs\nsievedir: s\n";
        let conf = ImapdConf::parse(text, Path::new("c"))
            .unwrap()
            .relative_to(Path::new("/sample"));
        assert_eq!(conf.config_directory, Path::new("/sample/lib"));
        assert_eq!(conf.partitions["default"], Path::new("/sample/spool"));
        assert_eq!(conf.partitions["x"], Path::new("/abs"));
        assert_eq!(conf.sieve_dir.as_deref(), Some(Path::new("/sample/s")));
    }

    #[test]
    fn errors_name_the_line() {
        let err = ImapdConf::parse(
            "configdirectory: /c\nhashimapspool: maybe\n",
            Path::new("x"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "x:2: hashimapspool: \"maybe\" is not a boolean"
        );
        let err = ImapdConf::parse("partition-default /x\n", Path::new("y")).unwrap_err();
        assert!(err.to_string().starts_with("y:1: expected `key: value`"));
        assert!(matches!(
            ImapdConf::parse("", Path::new("z")),
            Err(ConfError::NoConfigDirectory { .. })
        ));
    }
}
