//! `mailvault rebuild-state`: recreates `backupstate.sqlite3` (the v5 tables
//! and ours) from the data file alone, as Perl's `RebuildState` does.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::store::lock::StoreLock;
use crate::store::rebuild::rebuild_state;
use crate::store::LockMode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The user's store directory.
    #[arg(long)]
    store: PathBuf,
    /// Replace an existing state (it is kept until the new one is complete).
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // A writer appending meanwhile would leave the new state behind the file.
    let _lock = StoreLock::acquire(&args.store, LockMode::Fail)?;
    let summary = rebuild_state(&args.store, args.force)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "rebuilt {}: {} entries from {}, {} bytes of tar",
        args.store.display(),
        summary.entries,
        summary.data_file,
        summary.offset
    )?;
    Ok(ExitCode::SUCCESS)
}
