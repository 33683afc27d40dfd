//! `mailvault inspect`: decode a Cyrus file for people (a table) and for
//! tests and scripts (`--json`).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::formats::cyrus_header::CyrusHeader;
use crate::formats::cyrus_index::{
    index_to_json, IndexHeader, IndexReader, IndexRecord, Timestamp,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// A `cyrus.index` (or `cyrus.expunge`) of any minor version, 6 to 20.
    CyrusIndex {
        file: PathBuf,
        /// The folder's `cyrus.header`, to name user flags (default: beside FILE).
        #[arg(long)]
        header: Option<PathBuf>,
        /// Read FILE as a 2.3 `cyrus.expunge` (records not in uid order).
        #[arg(long)]
        expunge: bool,
        #[arg(long)]
        json: bool,
    },
    /// A `cyrus.header`, text (2.x-3.5) or dlist (3.6+) form.
    CyrusHeader {
        file: PathBuf,
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
    if json {
        let value = index_to_json(&index_header, &records, cyrus_header.as_ref());
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_index(&index_header, &records, cyrus_header.as_ref());
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

fn print_index(h: &IndexHeader, records: &[IndexRecord], names: Option<&CyrusHeader>) {
    println!(
        "minor version {}, {} records, exists {}, last uid {}, uidvalidity {}, highest modseq {}",
        h.minor_version, h.num_records, h.exists, h.last_uid, h.uidvalidity, h.highestmodseq
    );
    let flags: &[Option<String>] = names.map_or(&[], |n| &n.user_flags);
    println!(
        "{:>8}  {:<20}  {:>9}  {:<40}  {:>8}  flags",
        "uid", "internaldate", "size", "guid", "modseq"
    );
    for r in records {
        println!(
            "{:>8}  {:<20}  {:>9}  {:<40}  {:>8}  {}",
            r.uid,
            utc(r.internaldate),
            r.size,
            r.guid,
            r.modseq,
            r.flag_names(flags).join(" ")
        );
    }
}

fn cyrus_header(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let header =
        CyrusHeader::parse(&bytes).with_context(|| format!("parsing {}", file.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&header)?);
    } else {
        println!("uniqueid   {}", header.uniqueid);
        if let Some(name) = &header.name {
            println!("name       {name}");
        }
        if let Some(t) = &header.mailbox_type {
            println!("type       {t}");
        }
        if let Some(q) = &header.quotaroot {
            println!("quotaroot  {q}");
        }
        let acl: Vec<String> = header
            .acl
            .iter()
            .map(|(id, r)| format!("{id}={r}"))
            .collect();
        println!("acl        {}", acl.join(" "));
        let flags: Vec<&str> = header
            .user_flags
            .iter()
            .map(|f| f.as_deref().unwrap_or("-"))
            .collect();
        println!("user flags {}", flags.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}

/// `2025-01-02T08:15:00Z`, whole seconds.
pub(crate) fn utc(t: Timestamp) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.secs()),
    )
    .to_string()
}
