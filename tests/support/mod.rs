//! What the end-to-end backup tests share: the `mailvault` binary run as a
//! subprocess (backup, ls, verify) and the store's view of a user read back
//! through `mailvault ls --json`, the way an operator would see it.

// Each test binary compiles its own copy and uses only some of these.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, ExitStatus};

/// The built `mailvault` binary.
pub fn mailvault() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailvault"))
}

/// A `mailvault backup ... --json` run: its exit status and summary.
pub struct BackupRun {
    pub status: ExitStatus,
    pub summary: serde_json::Value,
    pub stderr: String,
}

impl BackupRun {
    /// The summary line of `user`.
    pub fn user(&self, user: &str) -> &serde_json::Value {
        self.summary["users"]
            .as_array()
            .and_then(|users| users.iter().find(|u| u["user"] == user))
            .unwrap_or_else(|| panic!("no line for {user} in {:#}", self.summary))
    }

    pub fn outcome(&self, user: &str) -> String {
        self.user(user)["outcome"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn count(&self, user: &str, field: &str) -> u64 {
        self.user(user)[field].as_u64().unwrap_or(u64::MAX)
    }

    /// The user's error lines joined, for assertions on what they name.
    pub fn errors(&self, user: &str) -> String {
        self.user(user)["errors"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter_map(|l| l.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }
}

/// Runs `mailvault backup --json` with `args` and parses the summary.
pub fn backup(args: &[&str], envs: &[(&str, &str)]) -> BackupRun {
    let out = mailvault()
        .arg("backup")
        .arg("--json")
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run mailvault backup");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "mailvault backup {args:?}: no JSON summary ({e}), status {}\nstdout: {}\nstderr: {stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        )
    });
    BackupRun {
        status: out.status,
        summary,
        stderr,
    }
}

/// `mailvault verify --full` must pass on `store`.
pub fn assert_verifies(store: &Path) {
    let out = mailvault()
        .args(["verify", "--full", "--store"])
        .arg(store)
        .output()
        .expect("run mailvault verify");
    assert!(
        out.status.success(),
        "mailvault verify --full {}: {}\n{}{}",
        store.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ls_json(store: &Path, folder: Option<&str>) -> serde_json::Value {
    let mut cmd = mailvault();
    cmd.args(["ls", "--json", "--store"]).arg(store);
    if let Some(f) = folder {
        cmd.arg(f);
    }
    let out = cmd.output().expect("run mailvault ls");
    assert!(
        out.status.success(),
        "mailvault ls {} {folder:?}: {}",
        store.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("mailvault ls --json")
}

/// One message as both sides can state it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Message {
    pub uid: u32,
    pub guid: String,
    /// System flags and keywords, sorted, without `\Recent`.
    pub flags: Vec<String>,
}

/// A folder of the store: live messages and expunged-but-kept ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredFolder {
    pub live: Vec<Message>,
    pub expunged: Vec<Message>,
}

/// The store's live folders and their messages, through `mailvault ls --json`.
pub fn store_view(store: &Path) -> BTreeMap<String, StoredFolder> {
    let folders = ls_json(store, None);
    let mut view = BTreeMap::new();
    for f in folders["folders"].as_array().into_iter().flatten() {
        if f["state"] != "live" {
            continue;
        }
        let name = f["name"].as_str().expect("folder name").to_string();
        let listing = ls_json(store, Some(&name));
        let mut folder = StoredFolder::default();
        for m in listing["messages"].as_array().into_iter().flatten() {
            let all: Vec<String> = m["flags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect();
            let expunged = all.iter().any(|f| f == "[EXPUNGED]");
            // Internal flags (`[EXPUNGED]`, `[UNLINKED]`...) are not IMAP's.
            let mut flags: Vec<String> = all.into_iter().filter(|f| !f.starts_with('[')).collect();
            flags.sort();
            let message = Message {
                uid: m["uid"].as_u64().expect("uid") as u32,
                guid: m["guid"].as_str().unwrap_or("-").to_string(),
                flags,
            };
            if expunged {
                folder.expunged.push(message);
            } else {
                folder.live.push(message);
            }
        }
        folder.live.sort();
        folder.expunged.sort();
        view.insert(name, folder);
    }
    view
}

/// Per live folder, the GUIDs of its non-expunged messages.
pub fn guid_sets(store: &Path) -> BTreeMap<String, BTreeSet<String>> {
    store_view(store)
        .into_iter()
        .map(|(name, f)| (name, f.live.into_iter().map(|m| m.guid).collect()))
        .collect()
}

/// The size of the user's data file (`*.tar` or `*.tar.gz`): unchanged
/// when a run appended nothing.
pub fn data_size(store: &Path) -> u64 {
    std::fs::read_dir(store)
        .expect("store dir")
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".gz")
        })
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}
