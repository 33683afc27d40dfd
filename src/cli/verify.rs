//! `mailvault verify`: checks a store against itself and names each bad
//! member, entry or message. Exit status 0: all is well; 1: problems found;
//! 2: the check could not run. Never writes to the store.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::store::{UserStore, VerifyReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The user's store directory.
    #[arg(long)]
    store: PathBuf,
    /// Also re-hash every stored file and parse every cyrus.index copy.
    #[arg(long)]
    full: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = match UserStore::open_read_only(&args.store).and_then(|s| s.verify(args.full)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "mailvault verify: {}: could not run: {e}",
                args.store.display()
            );
            return Ok(ExitCode::from(2));
        }
    };
    if args.json {
        print_json(&args, &report)?;
    } else {
        print_text(&args, &report)?;
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_json(args: &Args, report: &VerifyReport) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let value = serde_json::json!({
        "store": args.store,
        "full": args.full,
        "ok": report.is_ok(),
        "entries": report.entries,
        "members": report.members,
        "problems": report.problems,
    });
    writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    Ok(())
}

fn print_text(args: &Args, report: &VerifyReport) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for p in &report.problems {
        writeln!(out, "BAD {}: {}", p.place, p.problem)?;
    }
    let mode = if args.full { "full" } else { "quick" };
    let verdict = if report.is_ok() {
        "ok".to_string()
    } else {
        format!("{} problem(s)", report.problems.len())
    };
    writeln!(
        out,
        "{}: {mode} check of {} entries, {} gzip members: {verdict}",
        args.store.display(),
        report.entries,
        report.members
    )?;
    Ok(())
}
