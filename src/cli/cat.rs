//! `mailvault cat`: one stored message to stdout, checked against its GUID
//! before a byte is written. Never writes to the store.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::formats::Guid;
use crate::store::UserStore;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The user's store directory.
    #[arg(long)]
    store: PathBuf,
    /// The message's GUID (40 hex digits, the SHA-1 of its bytes).
    guid: Guid,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = UserStore::open_read_only(&args.store)
        .with_context(|| format!("opening store {}", args.store.display()))?;
    let bytes = store.read_message(&args.guid)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes).context("writing to stdout")?;
    out.flush().context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}
