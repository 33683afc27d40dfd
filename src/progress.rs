//! Progress is injected: the backup reports through [`Progress`], and the
//! caller decides what that means — nothing in tests ([`NoProgress`]), bars
//! on a terminal ([`TerminalProgress`]), counters in the daemon.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Events of a backup run. Every method has a do-nothing default so a
/// reporter implements only what it shows.
pub trait Progress: Send + Sync {
    /// The run will back up `users` users.
    fn users_planned(&self, _users: u64) {}
    fn user_started(&self, _user: &str) {}
    fn user_finished(&self, _user: &str) {}
    /// A folder was looked at; `changed` folders were fetched.
    fn folder_seen(&self, _changed: bool) {}
    /// A message of `bytes` bytes was fetched and stored.
    fn message_stored(&self, _bytes: u64) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// A bar of users, with folders, messages, bytes and the rate beside it.
pub struct TerminalProgress {
    bar: ProgressBar,
    counts: parking_lot::Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    folders: u64,
    changed: u64,
    messages: u64,
    bytes: u64,
}

impl TerminalProgress {
    pub fn new() -> TerminalProgress {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} users ({per_sec}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        TerminalProgress {
            bar,
            counts: parking_lot::Mutex::new(Counts::default()),
        }
    }

    pub fn finish(&self) {
        self.bar.finish();
    }

    fn show(&self, c: &Counts) {
        self.bar.set_message(format!(
            "folders {} ({} changed), messages {}, {}",
            c.folders,
            c.changed,
            c.messages,
            indicatif::HumanBytes(c.bytes)
        ));
    }
}

impl Default for TerminalProgress {
    fn default() -> TerminalProgress {
        TerminalProgress::new()
    }
}

impl Progress for TerminalProgress {
    fn users_planned(&self, users: u64) {
        self.bar.inc_length(users);
    }

    fn user_finished(&self, _user: &str) {
        self.bar.inc(1);
    }

    fn folder_seen(&self, changed: bool) {
        let mut c = self.counts.lock();
        c.folders += 1;
        c.changed += u64::from(changed);
        self.show(&c);
    }

    fn message_stored(&self, bytes: u64) {
        let mut c = self.counts.lock();
        c.messages += 1;
        c.bytes += bytes;
        self.show(&c);
    }
}
