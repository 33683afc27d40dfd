//! `mailvault report`: the seed system's "backups per hour of age" table.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::config::Settings;
use crate::store::state_db::{SqliteStateDb, StateDb};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The appliance's configuration (for the state database's path).
    #[arg(long)]
    config: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(&args.config)?;
    let mut db = SqliteStateDb::open(&settings.state_database)
        .with_context(|| format!("opening {}", settings.state_database.display()))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let buckets = db.age_histogram(now)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let rows: Vec<_> = buckets
            .iter()
            .map(|b| serde_json::json!({"hours": b.hours, "users": b.users}))
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "{:>12}  users", "age (hours)")?;
    for b in &buckets {
        let age = b
            .hours
            .map_or_else(|| "never".to_owned(), |h| h.to_string());
        writeln!(out, "{age:>12}  {}", b.users)?;
    }
    Ok(ExitCode::SUCCESS)
}
