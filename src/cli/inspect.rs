//! `mailvault inspect`: decode a Cyrus file for people (a table) and for
//! tests and scripts (`--json`).

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::agent::imapd_conf::ImapdConf;
use crate::formats::cyrus_header::CyrusHeader;
use crate::formats::cyrus_index::{
    index_to_json, IndexHeader, IndexReader, IndexRecord, Timestamp,
};
use crate::formats::cyrusdb::CyrusDb;
use crate::formats::mailbox_name::NameConfig;
use crate::formats::mailboxes_db::{self, DeletedFolders, MailboxEntry};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// A `cyrus.index` (or `cyrus.expunge`) of any minor version, 6 to 20.
    CyrusIndex {
        /// The `cyrus.index` (or `cyrus.expunge`) to read.
        file: PathBuf,
        /// The folder's `cyrus.header`, to name user flags (default: beside FILE).
        #[arg(long)]
        header: Option<PathBuf>,
        /// Read FILE as a 2.3 `cyrus.expunge` (records not in uid order).
        #[arg(long)]
        expunge: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A `cyrus.header`, text (2.x-3.5) or dlist (3.6+) form.
    CyrusHeader {
        /// The `cyrus.header` to read.
        file: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A `mailboxes.db` (twoskip, skiplist or flat; 2.x to 3.x value forms):
    /// every mailbox entry, in database order.
    MailboxesDb {
        /// The `mailboxes.db` to read.
        file: PathBuf,
        /// Only this user's live folders, then their deleted ones, in the
        /// order backupcyrusd lists them.
        #[arg(long)]
        user: Option<String>,
        /// The server's imapd.conf, for the name settings (default: Cyrus 3's
        /// defaults, `unixhierarchysep: yes`).
        #[arg(long)]
        imapd_conf: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.what {
        What::CyrusIndex {
            file,
            header,
            expunge,
            json,
        } => cyrus_index(&file, header.as_deref(), expunge, json),
        What::CyrusHeader { file, json } => cyrus_header(&file, json),
        What::MailboxesDb {
            file,
            user,
            imapd_conf,
            json,
        } => mailboxes_db(&file, user.as_deref(), imapd_conf.as_deref(), json),
    }
}

fn cyrus_index(
    file: &Path,
    header: Option<&Path>,
    expunge: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let cyrus_header = folder_header(file, header)?;
    let input = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let len = input.metadata()?.len();
    let reader = IndexReader::new(BufReader::new(input)).map_err(|e| e.at(file))?;
    let mut reader = reader.check_len(len).map_err(|e| e.at(file))?;
    if expunge {
        reader = reader.allow_unordered();
    }
    let index_header = reader.header().clone();
    let records: Vec<IndexRecord> = reader.collect::<Result<_, _>>().map_err(|e| e.at(file))?;
    let mut out = std::io::stdout().lock();
    if json {
        let value = index_to_json(&index_header, &records, cyrus_header.as_ref());
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        print_index(&mut out, &index_header, &records, cyrus_header.as_ref())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The header that names the index's user flags: given, or `cyrus.header`
/// beside the index when there is one.
fn folder_header(index: &Path, given: Option<&Path>) -> anyhow::Result<Option<CyrusHeader>> {
    let beside = index.with_file_name("cyrus.header");
    let path = match given {
        Some(p) => p.to_owned(),
        None if beside.is_file() => beside,
        None => return Ok(None),
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let header =
        CyrusHeader::parse(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    Ok(Some(header))
}

fn print_index(
    out: &mut impl Write,
    h: &IndexHeader,
    records: &[IndexRecord],
    names: Option<&CyrusHeader>,
) -> std::io::Result<()> {
    writeln!(
        out,
        "minor version {}, {} records, exists {}, last uid {}, uidvalidity {}, highest modseq {}",
        h.minor_version, h.num_records, h.exists, h.last_uid, h.uidvalidity, h.highestmodseq
    )?;
    let flags: &[Option<String>] = names.map_or(&[], |n| &n.user_flags);
    writeln!(
        out,
        "{:>8}  {:<20}  {:>9}  {:<40}  {:>8}  flags",
        "uid", "internaldate", "size", "guid", "modseq"
    )?;
    for r in records {
        writeln!(
            out,
            "{:>8}  {:<20}  {:>9}  {:<40}  {:>8}  {}",
            r.uid,
            utc(r.internaldate),
            r.size,
            r.guid,
            r.modseq,
            r.flag_names(flags).join(" ")
        )?;
    }
    Ok(())
}

fn cyrus_header(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let header =
        CyrusHeader::parse(&bytes).with_context(|| format!("parsing {}", file.display()))?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&header)?)?;
    } else {
        writeln!(out, "uniqueid   {}", header.uniqueid)?;
        if let Some(name) = &header.name {
            writeln!(out, "name       {name}")?;
        }
        if let Some(t) = &header.mailbox_type {
            writeln!(out, "type       {t}")?;
        }
        if let Some(q) = &header.quotaroot {
            writeln!(out, "quotaroot  {q}")?;
        }
        let acl: Vec<String> = header
            .acl
            .iter()
            .map(|(id, r)| format!("{id}={r}"))
            .collect();
        writeln!(out, "acl        {}", acl.join(" "))?;
        let flags: Vec<&str> = header
            .user_flags
            .iter()
            .map(|f| f.as_deref().unwrap_or("-"))
            .collect();
        writeln!(out, "user flags {}", flags.join(" "))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn mailboxes_db(
    file: &Path,
    user: Option<&str>,
    imapd_conf: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let cfg = name_config(imapd_conf)?;
    let db = CyrusDb::open(file)?;
    let entries = match user {
        Some(user) => mailboxes_db::user_folders(&db, user, &cfg, DeletedFolders::Include)?,
        None => mailboxes_db::entries(&db, &cfg)?,
    };
    let mut out = std::io::stdout().lock();
    if json {
        let list: Vec<serde_json::Value> = entries.iter().map(entry_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
    } else {
        print_entries(&mut out, &entries)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Names in a 3.6+ database depend on `unixhierarchysep`; Cyrus 3 defaults it on.
fn name_config(imapd_conf: Option<&Path>) -> anyhow::Result<NameConfig> {
    let Some(path) = imapd_conf else {
        return Ok(NameConfig {
            unixhierarchysep: true,
            ..NameConfig::default()
        });
    };
    let conf = ImapdConf::load(path)?;
    Ok(NameConfig {
        unixhierarchysep: conf.unix_hierarchy_sep,
        altnamespace: conf.alt_namespace,
        ..NameConfig::default()
    })
}

/// One entry as JSON. The ACL is a list of pairs because its order is the
/// stored order; `mbtype` is spelled the 3.6+ way for every version.
fn entry_json(e: &MailboxEntry) -> serde_json::Value {
    let acl: Vec<[&str; 2]> = e.acl.iter().map(|(id, r)| [id.as_str(), r]).collect();
    serde_json::json!({
        "name": e.internal_name,
        "mbtype": e.mbtype.letters(),
        "partition": e.partition,
        "server": e.server,
        "uniqueid": e.uniqueid,
        "uidvalidity": e.uidvalidity,
        "createdmodseq": e.createdmodseq,
        "foldermodseq": e.foldermodseq,
        "mtime": e.mtime,
        "acl": acl,
    })
}

fn print_entries(out: &mut impl Write, entries: &[MailboxEntry]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<40}  {:<5}  {:<10}  {:<36}  {:>10}  acl",
        "name", "type", "partition", "uniqueid", "uidvalidity"
    )?;
    for e in entries {
        let acl: Vec<String> = e.acl.iter().map(|(id, r)| format!("{id}={r}")).collect();
        writeln!(
            out,
            "{:<40}  {:<5}  {:<10}  {:<36}  {:>10}  {}",
            e.internal_name,
            e.mbtype.letters(),
            e.partition,
            e.uniqueid.as_deref().unwrap_or("-"),
            e.uidvalidity.map_or("-".to_string(), |v| v.to_string()),
            acl.join(" ")
        )?;
    }
    Ok(())
}

/// `2025-01-02T08:15:00Z`, whole seconds.
pub(crate) fn utc(t: Timestamp) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.secs()),
    )
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_2x_entry_prints_as_json_with_3_6_type_letters_and_ordered_acl() {
        let entry =
            mailboxes_db::decode_value("user.bob", b"16 imap2!p2 bob\tlrs\tanyone\tp\t").unwrap();
        let json = entry_json(&entry);
        assert_eq!(json["name"], "user.bob");
        assert_eq!(json["mbtype"], "edl");
        assert_eq!(json["partition"], "p2");
        assert_eq!(json["server"], "imap2");
        assert_eq!(json["uniqueid"], serde_json::Value::Null);
        assert_eq!(
            json["acl"],
            serde_json::json!([["bob", "lrs"], ["anyone", "p"]])
        );
    }
}
