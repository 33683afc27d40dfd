//! `mailvault ls`: a store's folders, or one folder's messages, now or as
//! they were at a past time. Never writes to the store.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{anyhow, Context};

use crate::store::browse::{FolderListing, MessageListing};
use crate::store::UserStore;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The user's store directory (the one holding backupstate.sqlite3).
    #[arg(long)]
    store: PathBuf,
    /// List this folder's messages (an IMAP name, or a uniqueid).
    folder: Option<String>,
    /// Show the store as it was at this time: RFC 3339 or unix seconds.
    #[arg(long)]
    at: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = UserStore::open_read_only(&args.store)
        .with_context(|| format!("opening store {}", args.store.display()))?;
    let at = args.at.as_deref().map(parse_time).transpose()?;
    match args.folder {
        None => list_folders(&store, at, args.json),
        Some(f) => list_messages(&store, &f, at, args.json),
    }
}

fn list_folders(store: &UserStore, at: Option<u64>, json: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let folders = match at {
        Some(t) => store.folder_listings_at(&store.timeline()?, t)?,
        None => store.folder_listings()?,
    };
    if json {
        let rows: Vec<_> = folders.iter().map(folder_json).collect();
        let value = serde_json::json!({ "at": at, "folders": rows });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<40} {:<38} {:>8} {:>12}  state",
        "folder", "uniqueid", "messages", "bytes"
    )?;
    for f in &folders {
        writeln!(
            out,
            "{:<40} {:<38} {:>8} {:>12}  {}",
            f.name,
            f.uniqueid,
            f.messages,
            f.bytes,
            state_text(f)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn folder_json(f: &FolderListing) -> serde_json::Value {
    serde_json::json!({
        "name": f.name,
        "uniqueid": f.uniqueid,
        "messages": f.messages,
        "bytes": f.bytes,
        "deleted": f.deleted,
        "state": if f.deleted.is_some() { "deleted" } else { "live" },
    })
}

fn state_text(f: &FolderListing) -> String {
    match f.deleted {
        Some(t) => format!("deleted {}", rfc3339(t)),
        None => "live".into(),
    }
}

fn list_messages(
    store: &UserStore,
    folder: &str,
    at: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let (uniqueid, index) = match at {
        Some(t) => {
            let timeline = store.timeline()?;
            let live = timeline.folders_at(t);
            let uniqueid = live
                .get(folder)
                .cloned()
                .or_else(|| live.values().find(|u| *u == folder).cloned())
                .ok_or_else(|| anyhow!("no folder {folder:?} at {}", rfc3339(t)))?;
            let index = store.index_copy_at(&timeline, &uniqueid, t)?;
            (uniqueid, index.map(|h| h.offset))
        }
        None => {
            let uniqueid = store
                .resolve_folder(folder)?
                .ok_or_else(|| anyhow!("no folder {folder:?} in the store"))?;
            let index = store.latest_index_copy(&uniqueid)?;
            (uniqueid, index)
        }
    };
    let index =
        index.ok_or_else(|| anyhow!("folder {folder:?} ({uniqueid}) has no cyrus.index copy"))?;
    let messages = store.folder_messages(&uniqueid, index)?;
    if json {
        let rows: Vec<_> = messages.iter().map(message_json).collect();
        let value = serde_json::json!({
            "folder": folder,
            "uniqueid": uniqueid,
            "at": at,
            "index_offset": index,
            "messages": rows,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:>6}  {:<20} {:>8}  {:<40}  {:<30}  {:<30}  subject",
        "uid", "internaldate", "size", "guid", "flags", "from"
    )?;
    for m in &messages {
        writeln!(
            out,
            "{:>6}  {:<20} {:>8}  {:<40}  {:<30}  {:<30}  {}",
            m.uid,
            rfc3339(m.internaldate),
            m.size,
            m.guid.map(|g| g.to_hex()).unwrap_or_else(|| "-".into()),
            m.flags.join(" "),
            m.header.from.as_deref().unwrap_or(""),
            m.header.subject.as_deref().unwrap_or(""),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn message_json(m: &MessageListing) -> serde_json::Value {
    let mut v = serde_json::to_value(m).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("internaldate".into(), rfc3339(m.internaldate).into());
    }
    v
}

/// Unix seconds as RFC 3339 UTC.
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Unix seconds, or RFC 3339 with `Z` or a `±HH:MM` offset.
pub fn parse_time(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().with_context(|| format!("time {text:?}"));
    }
    let bad = || anyhow!("time {text:?} is neither unix seconds nor RFC 3339");
    let (local, offset) = split_offset(text).ok_or_else(bad)?;
    let t = humantime::parse_rfc3339(&format!("{local}Z")).map_err(|_| bad())?;
    let secs = t.duration_since(UNIX_EPOCH).map_err(|_| bad())?.as_secs();
    secs.checked_add_signed(-offset).ok_or_else(bad)
}

/// The local part and the offset east of UTC in seconds.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(local) = text.strip_suffix(['Z', 'z']) {
        return Some((local, 0));
    }
    let at = text.len().checked_sub(6)?;
    let (local, tz) = text.split_at_checked(at)?;
    let sign = match tz.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = tz.get(1..)?.split_once(':')?;
    let minutes = h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?;
    Some((local, sign * minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_unix_seconds_or_rfc3339_with_any_offset() {
        assert_eq!(parse_time("1795660360").unwrap(), 1_795_660_360);
        assert_eq!(parse_time("2025-01-02T08:15:00Z").unwrap(), 1_735_805_700);
        assert_eq!(
            parse_time("2025-01-02T09:15:00+01:00").unwrap(),
            1_735_805_700
        );
        assert_eq!(
            parse_time("2025-01-02T03:15:00-05:00").unwrap(),
            1_735_805_700
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("").is_err());
        assert_eq!(rfc3339(1_735_805_700), "2025-01-02T08:15:00Z");
    }
}
