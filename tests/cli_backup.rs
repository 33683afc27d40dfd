//! `mailvault backup` on the sample spool a real Cyrus 3.6 wrote, through the
//! local source: the README's first command, then what a rerun, `ls` and
//! `cat` show.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mailvault::agent::spool::Spool;
use mailvault::formats::Guid;
use mailvault::source::Source;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs mailvault from the repository root with the store redirected to `tmp`.
fn mailvault(tmp: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailvault"))
        .args(args)
        .current_dir(repo())
        .env("MAILVAULT_STORE__ROOT", tmp.join("stores"))
        .env("MAILVAULT_STATE__DATABASE", tmp.join("state.sqlite3"))
        .output()
        .expect("run mailvault")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "status {:?}\nstdout {}\nstderr {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON summary")
}

#[test]
fn the_example_config_backs_up_the_sample_and_a_rerun_fetches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "backup",
        "--config",
        "config/example.toml",
        "--all",
        "--json",
    ];
    let first = json(&mailvault(tmp.path(), &args));
    let totals = &first["totals"];
    assert_eq!(totals["users"], 3);
    assert_eq!(totals["ok"], 3);
    assert!(
        totals["messages_fetched"].as_u64().unwrap() > 200,
        "{totals}"
    );

    let second = json(&mailvault(tmp.path(), &args));
    assert_eq!(second["totals"]["ok"], 3);
    assert_eq!(second["totals"]["folders_changed"], 0);
    assert_eq!(second["totals"]["messages_fetched"], 0);

    // The store holds every folder the spool has, and every message reads back.
    let mut spool = Spool::open(&repo().join("sample/cyrus-3.6/imapd.conf")).unwrap();
    let store = tmp.path().join("stores/user1");
    let ls = json(&mailvault(
        tmp.path(),
        &["ls", "--store", store.to_str().unwrap(), "--json"],
    ));
    let listed: Vec<&str> = ls["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    let on_server: Vec<String> = spool
        .folders("user1")
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(listed, on_server);

    let inbox = json(&mailvault(
        tmp.path(),
        &["ls", "--store", store.to_str().unwrap(), "INBOX", "--json"],
    ));
    let guid = inbox["messages"][0]["guid"].as_str().unwrap().to_owned();
    let cat = mailvault(
        tmp.path(),
        &["cat", "--store", store.to_str().unwrap(), &guid],
    );
    assert!(cat.status.success());
    assert_eq!(Guid::of(&cat.stdout).to_hex(), guid);
}

#[test]
fn a_run_without_a_config_file_needs_only_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("elsewhere");
    let out = mailvault(
        tmp.path(),
        &[
            "backup",
            "--spool-conf",
            "sample/cyrus-3.6/imapd.conf",
            "--servername",
            "mvlab",
            "--store-root",
            root.to_str().unwrap(),
            "--json",
            "user2",
        ],
    );
    let summary = json(&out);
    assert_eq!(summary["users"][0]["user"], "user2");
    assert_eq!(summary["users"][0]["outcome"], "ok");
    assert!(root.join("user2/backupstate.sqlite3").is_file());
}

#[test]
fn a_hostile_user_name_fails_that_user_only() {
    let tmp = tempfile::tempdir().unwrap();
    let out = mailvault(
        tmp.path(),
        &[
            "backup",
            "--config",
            "config/example.toml",
            "--json",
            "../x",
            "user3",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed user makes the exit status 1"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["users"][0]["outcome"], "failed");
    assert!(summary["users"][0]["errors"][0]
        .as_str()
        .unwrap()
        .contains("../x"));
    assert_eq!(summary["users"][1]["outcome"], "ok");
    assert!(!tmp.path().join("x").exists() && !tmp.path().join("stores/../x").exists());
}

#[test]
fn jobs_back_up_users_in_parallel_with_the_same_result_in_the_same_order() {
    let serial = tempfile::tempdir().unwrap();
    let parallel = tempfile::tempdir().unwrap();
    let args = |jobs: &'static str| {
        [
            "backup",
            "--config",
            "config/example.toml",
            "--all",
            "--json",
            "--jobs",
            jobs,
        ]
    };
    let without_times = |summary: &serde_json::Value| -> Vec<serde_json::Value> {
        let mut users = summary["users"].as_array().unwrap().clone();
        for u in &mut users {
            u.as_object_mut().unwrap().remove("duration");
        }
        users
    };
    let one = json(&mailvault(serial.path(), &args("1")));
    let three = json(&mailvault(parallel.path(), &args("3")));
    assert_eq!(three["totals"]["ok"], 3);
    assert_eq!(without_times(&three), without_times(&one));

    let rerun = json(&mailvault(parallel.path(), &args("3")));
    assert_eq!(rerun["totals"]["ok"], 3);
    assert_eq!(rerun["totals"]["messages_fetched"], 0);
    // Every outcome reached the state database, written by the main thread.
    let state = rusqlite::Connection::open(parallel.path().join("state.sqlite3")).unwrap();
    let recorded: i64 = state
        .query_row(
            "SELECT count(*) FROM users WHERE last_attempt IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(recorded, 3);
}

#[test]
fn a_store_changed_or_lost_since_the_last_run_is_looked_at_again() {
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "backup",
        "--config",
        "config/example.toml",
        "--json",
        "user1",
    ];
    let first = json(&mailvault(tmp.path(), &args));
    let fetched = first["totals"]["messages_fetched"].as_u64().unwrap();
    assert!(fetched > 0);
    // Unchanged server, untouched store: nothing to do (the store is not even opened).
    assert_eq!(
        json(&mailvault(tmp.path(), &args))["totals"]["messages_fetched"],
        0
    );
    // The store is lost: the server did not change, but everything must come again.
    std::fs::remove_dir_all(tmp.path().join("stores/user1")).unwrap();
    let again = json(&mailvault(tmp.path(), &args));
    assert_eq!(again["totals"]["messages_fetched"].as_u64(), Some(fetched));
    // The state is rebuilt from the data file (a changed state file): the run opens the store and finds nothing missing.
    let store = tmp.path().join("stores/user1");
    let out = mailvault(
        tmp.path(),
        &[
            "rebuild-state",
            "--store",
            store.to_str().unwrap(),
            "--force",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = json(&mailvault(tmp.path(), &args));
    assert_eq!(after["totals"]["messages_fetched"], 0);
    assert_eq!(after["totals"]["ok"], 1);
}
