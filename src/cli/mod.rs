//! The `mailvault` command line: one module per command, each a thin layer
//! that parses arguments, calls the library and prints.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod agent;
mod backup;
mod cat;
mod inspect;
mod ls;
mod rebuild_state;
mod report;
mod verify;

#[derive(Debug, Parser)]
#[command(
    name = "mailvault",
    version,
    about = "Backups of Cyrus IMAP mail stores"
)]
pub struct Cli {
    /// More log output (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a Cyrus spool over the backup protocol (in place of backupcyrusd).
    Agent(agent::Args),
    /// Back up users now: named ones, or --all.
    Backup(backup::Args),
    /// Decode a Cyrus file: cyrus.index, cyrus.header, mailboxes.db.
    Inspect(inspect::Args),
    /// Backup age per user: how many users were last backed up N hours ago.
    Report(report::Args),
    /// Rebuild a store's backupstate.sqlite3 from its data file.
    RebuildState(rebuild_state::Args),
    /// Check a store's data file and state against each other.
    Verify(verify::Args),
    /// List a store's folders, or one folder's messages, now or at a past time.
    Ls(ls::Args),
    /// Write one stored message to stdout.
    Cat(cat::Args),
}

/// Parses the command line, runs the command, and maps the outcome to an exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Agent(args) => agent::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Report(args) => report::run(args),
        Command::RebuildState(args) => rebuild_state::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Ls(args) => ls::run(args),
        Command::Cat(args) => cat::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mailvault: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. Many errors already quote their
/// cause in their own message; a cause is added only when it says more.
fn describe(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
    }
    out
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
