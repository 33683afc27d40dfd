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
        // `mailvault ls | head`: the reader has all it wanted.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailvault: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// Whether the error is stdout's reader having gone away. Rust ignores
/// SIGPIPE, so a closed pipe surfaces as this error from the next write;
/// every command writes through `writeln!(out, ..)?` so it ends up here.
/// Only an `io::Error` of our own (possibly with context) counts: a peer's
/// socket breaking inside a backup arrives as a `SourceError` and stays a
/// failure.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
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
