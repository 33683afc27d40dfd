//! Our client replays the Perl client's recorded backups
//! (`fixtures/wire/sessions/run{1,2}-plain`). A replay server answers each
//! request with the reply recorded for that exact line, so every request our
//! client sends must be byte-identical to the Perl client's. What the client
//! decodes must agree with what the Perl client stored in its state db
//! (`perl-store/.../<user>.state.sql`): folders, meta and fmeta stats and
//! sha1s, message GUIDs.

mod common;
mod protocol_support;

use std::collections::HashMap;
use std::path::Path;

use mailvault::protocol::client::{Client, ClientOptions};
use mailvault::source::{Source, SourceError};
use protocol_support::*;

fn call_client(client: &mut Client, call: &Call) -> Result<Decoded, SourceError> {
    let mut sink = Collect::default();
    Ok(match call {
        Call::Ping => client.ping().map(|()| Decoded::Ping)?,
        Call::Users => Decoded::Users(client.users()?),
        Call::UserStats { user } => Decoded::UserStats(client.user_files(user)?),
        Call::UserFiles { user, items } => {
            client.fetch_user_files(user, items, &mut sink)?;
            collected(sink, None)
        }
        Call::Folders { user } => Decoded::Folders(client.folders(user)?),
        Call::MetaStats { user, folder } => {
            let (stats, id) = client.folder_meta_stat(user, folder)?;
            Decoded::MetaStats(stats, id)
        }
        Call::MetaFiles {
            user,
            folder,
            items,
        } => {
            let id = client.fetch_folder_meta(user, folder, items, &mut sink)?;
            collected(sink, Some(id))
        }
        Call::Messages { user, folder, uids } => {
            let id = client.fetch_messages(user, folder, uids, &mut sink)?;
            collected(sink, Some(id))
        }
    })
}

/// Each connection of a run: the recorded exchanges, and what our client got
/// when it asked the same questions of the replay server.
struct Replayed {
    who: String,
    exchanges: Vec<(Call, Decoded, Decoded)>,
}

fn replay_run(dir: &Path, run: &str) -> Vec<Replayed> {
    let sessions = session_files(dir, run);
    let mut replies: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut recorded = Vec::new();
    for (who, c2s, s2c) in &sessions {
        let split = split_session(c2s, s2c);
        for (line, reply, _) in &split {
            let previous = replies.insert(line.clone(), reply.clone());
            assert!(previous.is_none_or(|p| &p == reply), "{who}: two replies");
        }
        recorded.push((who.clone(), split));
    }
    let addr = replay_server(replies);
    let mut options = ClientOptions::new(SLOT);
    options.retries = 0;
    recorded
        .into_iter()
        .map(|(who, split)| {
            let mut client = Client::connect(&addr.to_string(), &options).unwrap();
            let exchanges = split
                .into_iter()
                .map(|(line, _, expected)| {
                    let call = parse_call(&line);
                    let got = call_client(&mut client, &call)
                        .unwrap_or_else(|e| panic!("{who}: {call:?}: {e}"));
                    (call, expected, got)
                })
                .collect();
            let counters = client.counters();
            assert_eq!(counters.connections, 1, "{who}: no reconnections");
            Replayed { who, exchanges }
        })
        .collect()
}

fn state_dump(dir: &Path, store: &str, user: &str) -> String {
    let path = dir.join(format!("perl-store/{store}/{user}.state.sql"));
    std::fs::read_to_string(path).unwrap()
}

/// folderid → uniqueid, from the `folders` table.
fn folder_ids(dump: &str) -> HashMap<String, String> {
    sql_rows(dump, "folders")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect()
}

/// A row's (sha1, size, mtime, inode) as the Perl client stored them.
fn stored(row: &[String]) -> (String, u64, i64, u64) {
    (
        row[2].clone(),
        row[3].parse().unwrap(),
        row[4].parse().unwrap(),
        row[5].parse().unwrap(),
    )
}

fn seen_as(got: &Got) -> (String, u64, i64, u64) {
    (
        got.sha1.to_hex(),
        got.stat.size,
        got.stat.mtime,
        got.stat.inode,
    )
}

/// Every fmeta/meta row and every file of the Perl state is what our client
/// decoded from the same bytes.
fn check_against_state(run: &Replayed, dump: &str, all_rows: bool) {
    let user = &run.who;
    let ids = folder_ids(dump);
    let mut fmeta: HashMap<(String, String), (String, u64, i64, u64)> = HashMap::new();
    let mut meta = HashMap::new();
    let mut messages = HashMap::new();
    for (call, _, got) in &run.exchanges {
        let Decoded::Files { files, id, .. } = got else {
            continue;
        };
        for file in files {
            match (call, id) {
                (Call::MetaFiles { .. }, Some(id)) => {
                    fmeta.insert((id.uniqueid.clone(), file.name.clone()), seen_as(file));
                }
                (Call::UserFiles { .. }, _) => {
                    meta.insert(file.name.clone(), seen_as(file));
                }
                (Call::Messages { .. }, _) => {
                    messages.insert(file.sha1.to_hex(), file.stat.size);
                }
                _ => {}
            }
        }
    }
    let mut checked = 0;
    for row in sql_rows(dump, "fmeta") {
        let key = (ids[&row[0]].clone(), row[1].clone());
        match fmeta.get(&key) {
            Some(ours) => assert_eq!(ours, &stored(&row), "{user} fmeta {key:?}"),
            None => assert!(!all_rows, "{user}: fmeta {key:?} never fetched"),
        }
        checked += usize::from(fmeta.contains_key(&key));
    }
    assert_eq!(
        checked,
        fmeta.len(),
        "{user}: every fetched meta file is in the state"
    );
    for row in sql_rows(dump, "meta") {
        if let Some(ours) = meta.get(&row[1]) {
            assert_eq!(ours, &stored(&row), "{user} meta {}", row[1]);
        }
    }
    let files: HashMap<String, u64> = sql_rows(dump, "files")
        .into_iter()
        .map(|r| (r[1].clone(), r[2].parse().unwrap()))
        .collect();
    for (guid, size) in &messages {
        assert_eq!(files.get(guid), Some(size), "{user}: file {guid}");
    }
    if all_rows {
        assert_eq!(
            messages.len(),
            files.len(),
            "{user}: all files fetched once"
        );
    }
}

#[test]
fn run1_our_client_decodes_every_reply_as_the_perl_client_did() {
    let Some(dir) = fixtures("run1_our_client_decodes_every_reply_as_the_perl_client_did") else {
        return;
    };
    let runs = replay_run(&dir, "run1-plain");
    assert_eq!(runs.len(), 4);
    for run in &runs {
        for (call, expected, got) in &run.exchanges {
            assert_eq!(got, expected, "{}: {call:?}", run.who);
        }
        let Some(user) = run.who.split_once('-').map(|(_, u)| u) else {
            panic!()
        };
        if user == "getusers" {
            let (_, _, users) = &run.exchanges[0];
            let names = ["alice", "bob", "carol.smith"].map(String::from).to_vec();
            assert_eq!(users, &Decoded::Users(names));
            continue;
        }
        let run = Replayed {
            who: user.to_string(),
            exchanges: run.exchanges.clone(),
        };
        let dump = state_dump(&dir, "after-run1/plain", user);
        check_against_state(&run, &dump, true);
        let ours: Vec<String> = run
            .exchanges
            .iter()
            .find_map(|(_, _, got)| match got {
                Decoded::Folders(folders) => {
                    Some(folders.iter().map(|f| f.uniqueid.clone()).collect())
                }
                _ => None,
            })
            .unwrap();
        let mut theirs: Vec<String> = folder_ids(&dump).into_values().collect();
        let mut ours_sorted = ours.clone();
        theirs.sort();
        ours_sorted.sort();
        assert_eq!(ours_sorted, theirs, "{user}: folders");
    }
}

#[test]
fn run2_incremental_replies_agree_with_the_final_perl_state() {
    let Some(dir) = fixtures("run2_incremental_replies_agree_with_the_final_perl_state") else {
        return;
    };
    for run in replay_run(&dir, "run2-plain") {
        for (call, expected, got) in &run.exchanges {
            assert_eq!(got, expected, "{}: {call:?}", run.who);
        }
        let user = run.who.split_once('-').map(|(_, u)| u.to_string()).unwrap();
        if user == "getusers" {
            continue;
        }
        let dump = state_dump(&dir, "plain", &user);
        // Unchanged meta files were not fetched: their stats must match.
        for (call, _, got) in &run.exchanges {
            if let (Call::UserStats { .. }, Decoded::UserStats(stats)) = (call, got) {
                for (file, stat) in stats {
                    let row = sql_rows(&dump, "meta")
                        .into_iter()
                        .find(|r| r[1] == file.name())
                        .unwrap();
                    let (_, size, mtime, inode) = stored(&row);
                    assert_eq!((size, mtime, inode), (stat.size, stat.mtime, stat.inode));
                }
            }
        }
        let run = Replayed {
            who: user,
            exchanges: run.exchanges,
        };
        check_against_state(&run, &dump, false);
    }
}
