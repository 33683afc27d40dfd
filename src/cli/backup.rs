//! `mailvault backup`: a one-shot run over some users (or all of them) of
//! one server or every configured server, with a progress bar on a
//! terminal, a summary at the end (or `--json`), and the outcome of each
//! user recorded in the state database.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::backup::{backup_listed, list_user, unchanged, BackupOptions, Outcome, UserReport};
use crate::config::{Compression, RawConfig, RawServer, RawStore, Server, Settings};
use crate::connect::open_source;
use crate::progress::{NoProgress, Progress, TerminalProgress};
use crate::source::Source;
use crate::store::state_db::{self, SqliteStateDb, StateDb};
use crate::store::user_store::STATE_FILE;
use crate::store::{user_dir, LockMode, StoreOptions, UserStore};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The appliance's configuration file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// With --config: the slot of the server to back up (default: every server).
    /// Without: the HOST:PORT of a backupcyrusd or mailvault agent.
    #[arg(long)]
    server: Option<String>,
    /// Without --config: the servername (slot) the server answers to.
    #[arg(long)]
    servername: Option<String>,
    /// Without --config: where the per-user stores live.
    #[arg(long)]
    store_root: Option<PathBuf>,
    /// Without --config: read the spool of this imapd.conf directly, no network.
    #[arg(long)]
    spool_conf: Option<PathBuf>,
    /// Back up every user the server lists.
    #[arg(long)]
    all: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Users backed up at once, each thread with its own connection (or
    /// spool reader): hides one user's waits (network, fsync) behind
    /// another's work.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: u32,
    /// The users to back up.
    users: Vec<String>,
}

/// One user's line in the summary.
#[derive(Debug, Serialize)]
struct UserLine {
    user: String,
    server: String,
    outcome: &'static str,
    folders_seen: u64,
    folders_changed: u64,
    messages_fetched: u64,
    bytes_fetched: u64,
    duration: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
struct Totals {
    users: u64,
    ok: u64,
    partial: u64,
    failed: u64,
    folders_seen: u64,
    folders_changed: u64,
    messages_fetched: u64,
    bytes_fetched: u64,
    duration: f64,
}

#[derive(Debug, Serialize)]
struct Summary {
    users: Vec<UserLine>,
    totals: Totals,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.all && args.users.is_empty() {
        bail!("name the users to back up, or give --all");
    }
    let settings = settings(&args)?;
    let servers = chosen_servers(&args, &settings)?;
    let progress: Box<dyn Progress> = if !args.json && std::io::stderr().is_terminal() {
        Box::new(TerminalProgress::new())
    } else {
        Box::new(NoProgress)
    };
    let mut state = open_state_db(&settings)?;
    let started = Instant::now();
    let mut lines = Vec::new();
    for server in servers {
        lines.extend(backup_server(
            &server,
            &settings,
            &args,
            &*progress,
            &mut *state,
        )?);
    }
    let summary = summarize(lines, started.elapsed());
    print_summary(&summary, args.json)?;
    let clean = summary.totals.partial == 0 && summary.totals.failed == 0;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The configuration file, or one made of the command-line flags.
fn settings(args: &Args) -> anyhow::Result<Settings> {
    if let Some(path) = &args.config {
        if args.store_root.is_some() || args.spool_conf.is_some() || args.servername.is_some() {
            bail!("--store-root, --spool-conf and --servername are for runs without --config");
        }
        return Ok(Settings::load(path)?);
    }
    let (Some(root), Some(slot)) = (&args.store_root, &args.servername) else {
        bail!("without --config, give --servername and --store-root (and --server HOST:PORT or --spool-conf FILE)");
    };
    let server = RawServer {
        slot: slot.clone(),
        raidset: None,
        address: args.server.clone(),
        local_spool: args.spool_conf.clone(),
    };
    let mut raw = RawConfig {
        store: RawStore {
            root: Some(root.clone()),
            ..RawStore::default()
        },
        servers: vec![server],
        ..RawConfig::default()
    };
    raw.state.database = Some(root.join(".mailvault-state.sqlite3"));
    Ok(Settings::from_raw(raw)?)
}

fn chosen_servers(args: &Args, settings: &Settings) -> anyhow::Result<Vec<Server>> {
    let slot = args.server.as_deref().filter(|_| args.config.is_some());
    match slot {
        Some(slot) => match settings.server(slot) {
            Some(s) => Ok(vec![s.clone()]),
            None => bail!("no server with slot {slot:?} in the configuration"),
        },
        None if settings.servers.is_empty() => bail!("the configuration names no server"),
        None if !args.all && settings.servers.len() > 1 => {
            bail!("the configuration names several servers: say which with --server SLOT")
        }
        None => Ok(settings.servers.clone()),
    }
}

fn open_state_db(settings: &Settings) -> anyhow::Result<Box<dyn StateDb>> {
    if let Some(dir) = settings
        .state_database
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(Box::new(SqliteStateDb::open(&settings.state_database)?))
}

fn store_options(settings: &Settings) -> StoreOptions {
    let (compress, level) = match settings.compression {
        Compression::None => (false, 6),
        Compression::Gzip { level } => (true, level),
    };
    StoreOptions {
        compress,
        level,
        member_bound: settings.member_size,
        lock: LockMode::Fail,
    }
}

fn backup_server(
    server: &Server,
    settings: &Settings,
    args: &Args,
    progress: &dyn Progress,
    state: &mut dyn StateDb,
) -> anyhow::Result<Vec<UserLine>> {
    let mut source = open_source(server, settings)?;
    let users = if args.all {
        let users = source
            .users()
            .with_context(|| format!("server {}: USERS", server.slot))?;
        state.sync_users(&server.slot, &server.raidset, &users)?;
        users
    } else {
        args.users.clone()
    };
    let known = state.fingerprints(&server.slot)?;
    progress.users_planned(users.len() as u64);
    std::fs::create_dir_all(&settings.store_root)
        .with_context(|| format!("creating {}", settings.store_root.display()))?;
    let mut lines = Vec::new();
    if args.jobs <= 1 || users.len() <= 1 {
        for user in &users {
            let started = Instant::now();
            let result = backup_one(&mut *source, settings, &known, user, progress);
            lines.push(record(state, server, user, result, started.elapsed())?);
        }
        return Ok(lines);
    }
    let mut sources = vec![source];
    for _ in 1..args.jobs.min(users.len() as u32) {
        sources.push(open_source(server, settings)?);
    }
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for mut source in sources {
            let (done_tx, next, users, known) = (done_tx.clone(), &next, &users, &known);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(user) = users.get(i) else { break };
                let started = Instant::now();
                let result = backup_one(&mut *source, settings, known, user, progress);
                if done_tx.send((i, result, started.elapsed())).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);
        // The state database stays on this thread; outcomes are recorded
        // as they come, the summary keeps the order of `users`.
        let mut done = Vec::with_capacity(users.len());
        for (i, result, took) in done_rx {
            done.push((i, record(state, server, &users[i], result, took)?));
        }
        done.sort_by_key(|(i, _)| *i);
        lines.extend(done.into_iter().map(|(_, line)| line));
        Ok(())
    })?;
    Ok(lines)
}

/// What one user's run left: its report, its store's size, and the
/// fingerprint to keep when the run was complete.
struct Done {
    report: UserReport,
    bytes: u64,
    fingerprint: String,
}

/// Previous fingerprints by user: `(fingerprint, store size)`.
type Known = HashMap<String, (String, u64)>;

/// Backs up one user, or skips the store altogether when the server's
/// listing and the store file are exactly as the last complete run left them.
fn backup_one(
    source: &mut dyn Source,
    settings: &Settings,
    known: &Known,
    user: &str,
    progress: &dyn Progress,
) -> anyhow::Result<Done> {
    let started = Instant::now();
    let dir = user_dir(&settings.store_root, user)?;
    let listing = list_user(source, user)?;
    let seen = listing.fingerprint();
    if let Some((previous, bytes)) = known.get(user) {
        if store_stamp(&dir).is_some_and(|stamp| *previous == format!("{seen} {stamp}")) {
            progress.user_started(user);
            progress.user_finished(user);
            let report = unchanged(user, &listing, started.elapsed());
            let fingerprint = previous.clone();
            return Ok(Done {
                report,
                bytes: *bytes,
                fingerprint,
            });
        }
    }
    let mut store = UserStore::open(&dir, store_options(settings))?;
    let report = backup_listed(
        source,
        &mut store,
        user,
        &listing,
        &BackupOptions::default(),
        progress,
    )?;
    let bytes = store.status()?.map_or(0, |(_, size, _, _)| size);
    drop(store);
    let stamp = store_stamp(&dir).unwrap_or_default();
    Ok(Done {
        report,
        bytes,
        fingerprint: format!("{seen} {stamp}"),
    })
}

/// Size and modification time of the store's state file: any change to the
/// store (a run, a compaction, a restore from a snapshot) changes it.
fn store_stamp(dir: &Path) -> Option<String> {
    let md = std::fs::metadata(dir.join(STATE_FILE)).ok()?;
    let mtime = md.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(format!("{}:{}", md.len(), mtime.as_nanos()))
}

/// Records the outcome in the state database and makes the summary line.
fn record(
    state: &mut dyn StateDb,
    server: &Server,
    user: &str,
    result: anyhow::Result<Done>,
    took: Duration,
) -> anyhow::Result<UserLine> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let (line, outcome, fingerprint) = match result {
        Ok(Done {
            report,
            bytes,
            fingerprint,
        }) => {
            let errors: Vec<String> = report
                .folder_errors
                .iter()
                .map(|e| format!("{}: {}", e.folder, e.problem))
                .collect();
            let outcome = match report.outcome {
                Outcome::Ok => state_db::Outcome::Ok { bytes },
                Outcome::Partial => state_db::Outcome::Partial {
                    bytes,
                    error: errors.join("; "),
                },
            };
            // A run that stored files in the second they changed must not
            // vouch for the next one: those files are fetched again then.
            let complete = report.outcome == Outcome::Ok && report.unsettled == 0;
            (
                line_of(server, &report, errors),
                outcome,
                complete.then_some(fingerprint),
            )
        }
        Err(e) => {
            let error = format!("{e:#}");
            tracing::error!(user, "{error}");
            let line = UserLine {
                user: user.to_owned(),
                server: server.slot.clone(),
                outcome: "failed",
                folders_seen: 0,
                folders_changed: 0,
                messages_fetched: 0,
                bytes_fetched: 0,
                duration: took.as_secs_f64(),
                errors: vec![error.clone()],
            };
            (line, state_db::Outcome::Failed { error }, None)
        }
    };
    state.sync_user(&server.slot, &server.raidset, user)?;
    state.record(user, now, &outcome)?;
    state.set_fingerprint(user, fingerprint.as_deref())?;
    Ok(line)
}

fn line_of(server: &Server, r: &UserReport, errors: Vec<String>) -> UserLine {
    UserLine {
        user: r.user.clone(),
        server: server.slot.clone(),
        outcome: match r.outcome {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
        },
        folders_seen: r.folders_seen,
        folders_changed: r.folders_changed,
        messages_fetched: r.messages_fetched,
        bytes_fetched: r.bytes_fetched,
        duration: r.duration.as_secs_f64(),
        errors,
    }
}

fn summarize(users: Vec<UserLine>, took: Duration) -> Summary {
    let mut t = Totals {
        duration: took.as_secs_f64(),
        ..Totals::default()
    };
    for u in &users {
        t.users += 1;
        match u.outcome {
            "ok" => t.ok += 1,
            "partial" => t.partial += 1,
            _ => t.failed += 1,
        }
        t.folders_seen += u.folders_seen;
        t.folders_changed += u.folders_changed;
        t.messages_fetched += u.messages_fetched;
        t.bytes_fetched += u.bytes_fetched;
    }
    Summary { users, totals: t }
}

fn print_summary(s: &Summary, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(s)?)?;
        return Ok(());
    }
    for u in &s.users {
        writeln!(
            out,
            "{:<24} {:<8} folders {:>4} ({:>3} changed)  messages {:>6}  {:>10}  {:.2}s",
            u.user,
            u.outcome,
            u.folders_seen,
            u.folders_changed,
            u.messages_fetched,
            indicatif::HumanBytes(u.bytes_fetched).to_string(),
            u.duration
        )?;
        for e in &u.errors {
            writeln!(out, "    {e}")?;
        }
    }
    let t = &s.totals;
    let rate = t.users as f64 / t.duration.max(1e-9);
    writeln!(out,
        "{} users ({} ok, {} partial, {} failed), {} folders ({} changed), {} messages, {} in {:.2}s ({:.1} users/s)",
        t.users,
        t.ok,
        t.partial,
        t.failed,
        t.folders_seen,
        t.folders_changed,
        t.messages_fetched,
        indicatif::HumanBytes(t.bytes_fetched),
        t.duration,
        rate
    )?;
    Ok(())
}
