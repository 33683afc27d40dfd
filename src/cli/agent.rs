//! `mailvault agent`: serve a Cyrus spool over the backup protocol, in place
//! of backupcyrusd. Refuses to run as root (run it as the cyrus user).
//! SIGTERM or SIGINT stops accepting and lets the connections in progress
//! finish; a second signal exits at once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{SigSet, Signal};

use crate::agent::imapd_conf::ImapdConf;
use crate::agent::server::{Agent, AgentOptions, DEFAULT_LISTEN};
use crate::protocol::listen::AllowedNet;

/// How long a stopping agent waits for connections (backupcyrusd's idle timeout).
const DRAIN: Duration = Duration::from_secs(600);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Cyrus instance's imapd.conf.
    #[arg(long)]
    imapd_conf: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: String,
    /// A client network allowed to connect (repeatable; default: anyone who can reach it).
    #[arg(long)]
    allow: Vec<AllowedNet>,
    /// A file holding the shared secret of our AUTH extension.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// The slot clients must send (default: imapd.conf's `servername`).
    #[arg(long)]
    servername: Option<String>,
    /// Connections served at once.
    #[arg(long, default_value_t = 64)]
    max_connections: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if nix::unistd::geteuid().is_root() {
        bail!("refusing to run as root: run `mailvault agent` as the cyrus user");
    }
    // Blocked before any thread starts, so every thread inherits the mask
    // and the signals are only ever taken by `wait` below.
    let signals = shutdown_signals();
    signals.thread_block().context("blocking SIGTERM/SIGINT")?;
    let conf = ImapdConf::load(&args.imapd_conf)?;
    let secret = match &args.secret_file {
        Some(path) => Some(read_secret(path)?),
        None => None,
    };
    let options = AgentOptions {
        listen: args.listen,
        allow: args.allow,
        secret,
        servername: args.servername,
        max_connections: args.max_connections,
    };
    let agent = Agent::start(conf, options)?;
    tracing::info!(addr = %agent.local_addr(), "serving");
    eprintln!("mailvault agent: listening on {}", agent.local_addr());
    let signal = signals.wait().context("waiting for a signal")?;
    tracing::info!(?signal, "stopping: no new connections");
    std::thread::spawn(move || {
        if let Ok(again) = signals.wait() {
            eprintln!("mailvault agent: {again:?} again, exiting now");
            std::process::exit(1);
        }
    });
    let left = agent.stop(DRAIN);
    if left > 0 {
        eprintln!("mailvault agent: {left} connections still open after {DRAIN:?}");
    }
    Ok(ExitCode::SUCCESS)
}

fn shutdown_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set
}

fn read_secret(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading the secret {}", path.display()))?;
    let secret = bytes.trim_ascii_end().to_vec();
    if secret.is_empty() {
        bail!("{}: the secret is empty", path.display());
    }
    Ok(secret)
}
