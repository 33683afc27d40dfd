//! A Cyrus 2.3-shaped spool, end to end: built in a temporary directory from
//! real Cyrus data, then backed up locally (`mailvault backup --spool-conf`)
//! and over TCP through `mailvault agent` run as user cyrus.
//!
//! The ingredients are real: the v10 `cyrus.index` that Cyrus itself wrote
//! (`reconstruct -V 9`, then `-V 10`, by `scripts/lab/index_versions.py`),
//! its message files, and `mailboxes.db`/seen files converted to skiplist by
//! Cyrus's `cvt_cyrusdb`. What 2.3 did and 3.6 cannot is done with our own
//! writers: the records an `expunge_mode: delayed` expunge moves out of the
//! index go into a v10 `cyrus.expunge` (in expunge order, not uid order),
//! their message files staying in place; the header is the 2.x text form;
//! paths are the legacy ones with `hashimapspool: yes`.
//!
//! Needs `MAILVAULT_LAB` and `MAILVAULT_INDEX_VERSIONS` (set by scripts/test
//! as root); without them every test here says SKIPPED.

mod common;

use common::{as_cyrus, AgentProcess};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mailvault::formats::cyrus_header::{CyrusHeader, HeaderForm};
use mailvault::formats::cyrus_index::{
    encode_header, encode_record, parse_expunge, parse_index, write_index, IndexHeader,
    IndexRecord, Timestamp,
};
use mailvault::formats::Guid;
use mailvault::store::UserStore;

const USER: &str = "alice";
const SERVERNAME: &str = "old23";
/// The 2.x rights of an owner.
const RIGHTS: &str = "lrswipkxtecda";
/// Besides the record 3.6 already expunged, this uid is "expunged" too.
const ALSO_EXPUNGED: u32 = 6;
const SIEVE_SCRIPT: &[u8] = b"require \"vacation\";\r\nvacation \"gone fishing\";\r\n";

/// Where the real inputs come from.
struct Lab {
    env: HashMap<String, String>,
    v10: PathBuf,
}

impl Lab {
    fn find() -> Option<Lab> {
        let dir = common::lab("MAILVAULT_LAB")?;
        let versions = common::lab("MAILVAULT_INDEX_VERSIONS")?;
        let text = std::fs::read_to_string(dir.join("lab.env"))
            .unwrap_or_else(|e| panic!("{}/lab.env: {e}", dir.display()));
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Lab {
            env,
            v10: versions.join("v10"),
        })
    }

    fn bin(&self, tool: &str) -> PathBuf {
        let dir = self
            .env
            .get("CYRUS_BIN")
            .map_or("/usr/lib/cyrus/bin", String::as_str);
        Path::new(dir).join(tool)
    }

    /// Runs a Cyrus tool as user cyrus with the lab's imapd.conf.
    fn run(&self, tool: &str, args: &[&str]) -> String {
        let out = as_cyrus(self.bin(tool).as_os_str())
            .arg("-C")
            .arg(&self.env["IMAPD_CONF"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The directory of the folder `index_versions.py` converted to v10:
    /// its message files are the ones the v10 index describes.
    fn v10_messages(&self) -> PathBuf {
        PathBuf::from(self.run("mbpath", &["user/user1/Versions/v10"]).trim())
    }

    /// Cyrus's own flat → skiplist conversion.
    fn to_skiplist(&self, flat: &Path, out: &Path) {
        chown_tree(flat.parent().unwrap());
        self.run("cvt_cyrusdb", &[s(flat), "flat", s(out), "skiplist"]);
        std::fs::remove_file(flat).unwrap();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn chown_tree(path: &Path) {
    let cyrus = nix::unistd::User::from_name("cyrus").unwrap().unwrap();
    std::os::unix::fs::lchown(path, Some(cyrus.uid.as_raw()), None).unwrap();
    if path.is_dir() && !path.is_symlink() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path());
        }
    }
}

/// 2.x's uniqueid: `%08x%08x` of a name hash and the uidvalidity.
fn uniqueid_2x(name: &str, uidvalidity: u32) -> String {
    let hash = name
        .bytes()
        .fold(0u64, |h, c| (h * 251 + u64::from(c)) % 2_147_484_043);
    format!("{hash:08x}{uidvalidity:08x}")
}

fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Timestamp::from_secs(secs)
}

/// Header counters over `records`, as 2.3 keeps them (over every record
/// of the file: 2.3 had no expunged records inside an index).
fn counted(header: &IndexHeader, records: &[IndexRecord]) -> IndexHeader {
    let has = |flag: u32| {
        records
            .iter()
            .filter(|r| r.system_flags & flag != 0)
            .count() as u32
    };
    IndexHeader {
        num_records: records.len() as u32,
        exists: records.len() as u32,
        answered: has(1),
        flagged: has(2),
        deleted: has(4),
        quota_mailbox_used: records.iter().map(|r| r.size).sum(),
        ..header.clone()
    }
}

/// A built 2.3 spool and what a backup of it must hold.
struct Spool23 {
    dir: tempfile::TempDir,
    inbox_uniqueid: String,
    /// Every message of an index or expunge record: (uid in INBOX, GUID).
    messages: Vec<(u32, Guid)>,
    expunged_uids: Vec<u32>,
    expunge_file: Vec<u8>,
}

impl Spool23 {
    fn conf(&self) -> PathBuf {
        self.dir.path().join("imapd.conf")
    }

    /// Builds the spool; with `null_guids` the records carry no GUID, as
    /// 2.3 wrote them under `guid_mode: none`.
    fn build(lab: &Lab, null_guids: bool) -> Spool23 {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let guid_mode = if null_guids { "none" } else { "sha1" };
        std::fs::write(
            root.join("imapd.conf"),
            format!(
                "configdirectory: {r}/lib\npartition-default: {r}/spool\nsievedir: {r}/sieve\n\
                 servername: {SERVERNAME}\nunixhierarchysep: no\naltnamespace: no\n\
                 hashimapspool: yes\nexpunge_mode: delayed\nguid_mode: {guid_mode}\n",
                r = root.display()
            ),
        )
        .unwrap();
        let h = 'a'; // dir_hash of "alice"
        let inbox = root.join(format!("spool/{h}/user/{USER}"));
        let sent = inbox.join("Sent");
        std::fs::create_dir_all(&sent).unwrap();

        let bytes = std::fs::read(lab.v10.join("cyrus.index")).unwrap();
        let (header, records) = parse_index(&bytes).unwrap();
        assert_eq!(header.minor_version, 10, "the lab's v10 index is not v10");
        let source = lab.v10_messages();
        let records: Vec<IndexRecord> = records
            .into_iter()
            .map(|mut r| {
                if null_guids {
                    r.guid = Guid::NULL;
                }
                r
            })
            .collect();
        let (mut expunged, kept): (Vec<IndexRecord>, Vec<IndexRecord>) = records
            .into_iter()
            .partition(|r| r.is_expunged() || r.uid == ALSO_EXPUNGED);
        assert!(expunged.len() >= 2, "the v10 folder has no expunged record");
        // 2.3 has no internal flags; the expunge file lists in expunge order.
        expunged.reverse();
        let kept: Vec<IndexRecord> = kept
            .into_iter()
            .map(|r| IndexRecord {
                internal_flags: 0,
                ..r
            })
            .collect();
        let expunged: Vec<IndexRecord> = expunged
            .into_iter()
            .map(|r| IndexRecord {
                internal_flags: 0,
                last_updated: now(),
                ..r
            })
            .collect();

        let mut messages = Vec::new();
        for r in kept.iter().chain(&expunged) {
            let file = format!("{}.", r.uid);
            let body = std::fs::read(source.join(&file)).unwrap();
            std::fs::write(inbox.join(&file), &body).unwrap();
            messages.push((r.uid, Guid::of(&body)));
        }
        messages.sort();
        std::fs::copy(source.join("cyrus.cache"), inbox.join("cyrus.cache")).unwrap();
        let index = write_index(&counted(&header, &kept), &kept).unwrap();
        std::fs::write(inbox.join("cyrus.index"), index).unwrap();
        let expunge_header = IndexHeader {
            last_appenddate: now(),
            ..counted(&header, &expunged)
        };
        let mut expunge_file = encode_header(&expunge_header, expunged.len() as u32).unwrap();
        for r in &expunged {
            expunge_file.extend(encode_record(10, r).unwrap());
        }
        std::fs::write(inbox.join("cyrus.expunge"), &expunge_file).unwrap();

        let cyrus_header =
            CyrusHeader::parse(&std::fs::read(lab.v10.join("cyrus.header")).unwrap()).unwrap();
        let text_header = |name: &str| {
            let h = CyrusHeader {
                mailbox_type: None,
                name: None,
                uniqueid: uniqueid_2x(name, header.uidvalidity),
                jmapid: None,
                quotaroot: Some(format!("user.{USER}")),
                acl: vec![(USER.to_string(), RIGHTS.to_string())],
                ..cyrus_header.clone()
            };
            (h.uniqueid.clone(), h.to_bytes(HeaderForm::Text))
        };
        let (inbox_uniqueid, bytes) = text_header(&format!("user.{USER}"));
        std::fs::write(inbox.join("cyrus.header"), bytes).unwrap();

        // Sent: two of the INBOX's messages again, same uids, no expunge file.
        let sent_records: Vec<IndexRecord> = kept.iter().skip(1).take(2).cloned().collect();
        for r in &sent_records {
            let file = format!("{}.", r.uid);
            std::fs::copy(inbox.join(&file), sent.join(&file)).unwrap();
        }
        let index = write_index(&counted(&header, &sent_records), &sent_records).unwrap();
        std::fs::write(sent.join("cyrus.index"), index).unwrap();
        let (_, bytes) = text_header(&format!("user.{USER}.Sent"));
        std::fs::write(sent.join("cyrus.header"), bytes).unwrap();

        // mailboxes.db, 2.x value form, as a skiplist written by Cyrus.
        let lib = root.join("lib");
        std::fs::create_dir_all(lib.join(format!("user/{h}"))).unwrap();
        let flat = lib.join("mailboxes.flat");
        let value = format!("0 default {USER}\t{RIGHTS}\t");
        std::fs::write(
            &flat,
            format!("user.{USER}\t{value}\nuser.{USER}.Sent\t{value}\n"),
        )
        .unwrap();
        lab.to_skiplist(&flat, &lib.join("mailboxes.db"));
        // <user>.seen (skiplist) and <user>.sub (flat, internal names).
        let flat = lib.join(format!("user/{h}/seen.flat"));
        let t = now().secs();
        std::fs::write(&flat, format!("{inbox_uniqueid}\t1 {t} 8 {t} 1:5\n")).unwrap();
        lab.to_skiplist(&flat, &lib.join(format!("user/{h}/{USER}.seen")));
        std::fs::write(
            lib.join(format!("user/{h}/{USER}.sub")),
            format!("user.{USER}.Sent\t\n"),
        )
        .unwrap();
        let sieve = root.join(format!("sieve/{h}/{USER}"));
        std::fs::create_dir_all(&sieve).unwrap();
        std::fs::write(sieve.join("vacation.script"), SIEVE_SCRIPT).unwrap();
        chown_tree(root);

        let expunged_uids = expunged.iter().map(|r| r.uid).collect();
        Spool23 {
            dir,
            inbox_uniqueid,
            messages,
            expunged_uids,
            expunge_file,
        }
    }

    /// Everything a backup of this spool must hold, checked in `store`.
    fn check_store(&self, store_root: &Path) {
        let store = UserStore::open_read_only(&store_root.join(USER)).unwrap();
        for (uid, guid) in &self.messages {
            assert!(
                store.has_message(guid).unwrap(),
                "message uid {uid} ({guid}) is not in the store"
            );
            assert_eq!(Guid::of(&store.read_message(guid).unwrap()), *guid);
        }
        let rows: HashMap<u32, Guid> = store
            .indexed(&self.inbox_uniqueid)
            .unwrap()
            .into_iter()
            .collect();
        for uid in &self.expunged_uids {
            let expected = self.messages.iter().find(|(u, _)| u == uid).unwrap().1;
            assert_eq!(rows.get(uid), Some(&expected), "expunged uid {uid}");
        }
        let expunge = store
            .folder_file_state(&self.inbox_uniqueid, "expunge")
            .unwrap()
            .expect("cyrus.expunge is stored");
        assert_eq!(
            expunge.sha1.as_deref(),
            Some(Guid::of(&self.expunge_file).to_hex().as_str())
        );
        assert!(store.meta_state("seen").unwrap().is_some(), "seen stored");
        assert!(store.meta_state("sub").unwrap().is_some(), "sub stored");
        // The script is a meta file Perl's tools index too, so a rerun
        // finds it unchanged (see the rerun check) and its bytes read back.
        let sieve = store
            .meta_state("sieve.vacation.script")
            .unwrap()
            .expect("the sieve script is stored");
        assert_eq!(sieve.size, SIEVE_SCRIPT.len() as u64);
        let (_, body) = store.read_entry_at(sieve.offset).unwrap();
        assert_eq!(body, SIEVE_SCRIPT);
    }
}

#[test]
fn the_built_spool_reads_back_as_2_3_wrote_it() {
    let Some(lab) = Lab::find() else { return };
    let spool = Spool23::build(&lab, false);
    let inbox = spool.dir.path().join("spool/a/user/alice");
    let (header, records) =
        parse_index(&std::fs::read(inbox.join("cyrus.index")).unwrap()).unwrap();
    assert_eq!(header.minor_version, 10);
    assert!(records
        .iter()
        .all(|r| !spool.expunged_uids.contains(&r.uid)));
    let (_, expunged) = parse_expunge(&spool.expunge_file).unwrap();
    let uids: Vec<u32> = expunged.iter().map(|r| r.uid).collect();
    assert_eq!(uids, spool.expunged_uids);
    assert!(uids.windows(2).any(|w| w[0] > w[1]), "not in uid order");
    let header = CyrusHeader::parse(&std::fs::read(inbox.join("cyrus.header")).unwrap()).unwrap();
    assert_eq!(header.form, HeaderForm::Text);
    // Cyrus's own tool reads our skiplist the way we wrote it.
    let dump = lab.run(
        "cyr_dbtool",
        &[
            s(&spool.dir.path().join("lib/mailboxes.db")),
            "skiplist",
            "show",
        ],
    );
    assert!(
        dump.contains("user.alice.Sent\t0 default alice\tlrswipkxtecda\t"),
        "{dump}"
    );
}

fn mailvault(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailvault"))
        .args(args)
        .output()
        .expect("run mailvault")
}

/// `mailvault backup ... --json alice`: the one user's summary line.
fn backup(source: &[&str], store_root: &Path) -> serde_json::Value {
    let mut args = vec!["backup"];
    args.extend_from_slice(source);
    args.extend(["--servername", SERVERNAME, "--store-root", s(store_root)]);
    args.extend(["--json", USER]);
    let out = mailvault(&args);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "backup printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let user = summary["users"][0].clone();
    assert_eq!(user["outcome"], "ok", "{summary:#}");
    user
}

/// Backs up twice through `source`: the first run stores everything, the
/// second finds nothing to fetch.
fn back_up_and_rerun(spool: &Spool23, source: &[&str]) {
    let stores = tempfile::tempdir().unwrap();
    let first = backup(source, stores.path());
    assert_eq!(
        first["messages_fetched"].as_u64(),
        Some(
            spool
                .messages
                .iter()
                .map(|(_, g)| g)
                .collect::<std::collections::HashSet<_>>()
                .len() as u64
        ),
        "{first:#}"
    );
    spool.check_store(stores.path());
    let data_len = || {
        let store = UserStore::open_read_only(&stores.path().join(USER)).unwrap();
        std::fs::metadata(store.data_path()).unwrap().len()
    };
    let before = data_len();
    let second = backup(source, stores.path());
    assert_eq!(second["messages_fetched"], 0, "{second:#}");
    assert_eq!(second["folders_changed"], 0, "{second:#}");
    assert_eq!(
        data_len(),
        before,
        "a rerun appends nothing, sieve scripts included"
    );
}

fn local(spool: &Spool23) {
    let conf = spool.conf();
    back_up_and_rerun(spool, &["--spool-conf", s(&conf)]);
}

fn over_tcp(spool: &Spool23) {
    let agent = AgentProcess::start(&spool.conf(), SERVERNAME);
    back_up_and_rerun(spool, &["--server", &agent.addr]);
}

#[test]
fn a_2_3_spool_backs_up_locally_with_its_expunged_messages() {
    let Some(lab) = Lab::find() else { return };
    local(&Spool23::build(&lab, false));
}

#[test]
fn a_2_3_spool_without_guids_backs_up_locally_by_file_sha1() {
    let Some(lab) = Lab::find() else { return };
    local(&Spool23::build(&lab, true));
}

#[test]
fn a_2_3_spool_backs_up_through_the_agent_over_tcp() {
    let Some(lab) = Lab::find() else { return };
    over_tcp(&Spool23::build(&lab, false));
}

#[test]
fn a_2_3_spool_without_guids_backs_up_through_the_agent_over_tcp() {
    let Some(lab) = Lab::find() else { return };
    over_tcp(&Spool23::build(&lab, true));
}
