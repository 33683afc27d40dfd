//! Our writers against a real Cyrus 3.6 (the lab of `scripts/test`, in
//! `$MAILVAULT_LAB`): a mailbox made entirely by mailvault (spec
//! cyrus-formats §8.2, recipe B) is registered and reconstructed by Cyrus and
//! then shows over IMAP exactly what we wrote; and `mailvault inspect
//! mailboxes-db` reads the lab's database as `ctl_mboxlist -d` dumps it.
//!
//! The messages come from user1's INBOX (the lab's populated mail: flags,
//! keywords, an expunged record); the new mailboxes are made under a user of
//! their own, `rtuser1`, so no other test sees them. Each run names its
//! mailboxes afresh, so runs never collide.
//!
//! Index versions: Cyrus 3.6 writes minor version 17 and reads every version
//! from 6 up to its own. We write 10, 12, 13, 16 and 17 here. Versions 19
//! and 20 (Cyrus 3.10+) are newer than 3.6, which refuses to open them; the
//! last test shows that refusal rather than leaving it unsaid.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File, FileTimes};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailvault::agent::imapd_conf::ImapdConf;
use mailvault::formats::cyrus_header::{CyrusHeader, HeaderForm};
use mailvault::formats::cyrus_index::{parse_index, write_index, IndexHeader, IndexRecord};
use mailvault::formats::Guid;
use serde_json::Value;

/// The index versions our writer makes and Cyrus 3.6 reads.
const VERSIONS_36_READS: [u32; 5] = [10, 12, 13, 16, 17];
/// The source of real messages and records.
const SOURCE_USER: &str = "user1";
/// Owner of every mailbox these tests create.
const RT_USER: &str = "rtuser1";

/// Logs in and, per argv, creates a user (as the admin) or prints one
/// folder as IMAP shows it. Internaldates become epoch seconds.
const IMAP_SNIPPET: &str = r#"
import imaplib, json, re, sys, time
port, login, password, cmd, arg = sys.argv[1:6]
imap = imaplib.IMAP4("127.0.0.1", int(port))
imap.login(login, password)
typ, data = imap.list('""', '""')
m = re.search(rb'\(.*?\) "(.)"', data[0])
sep = m.group(1).decode() if m else "."
if cmd == "create-user":
    typ, data = imap.create("user" + sep + arg)
    if typ != "OK" and b"exists" not in data[0].lower():
        sys.exit("CREATE %s: %r" % (arg, data))
else:
    typ, data = imap.select('"INBOX%s%s"' % (sep, arg), readonly=True)
    if typ != "OK":
        sys.exit("SELECT %s: %r" % (arg, data))
    uidvalidity = int(imap.response("UIDVALIDITY")[1][0])
    msgs = []
    if int(data[0]):
        typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE DIGEST.SHA1 INTERNALDATE)")
        for item in data:
            s = (item[0] if isinstance(item, tuple) else item).decode()
            msgs.append({
                "uid": int(re.search(r"UID (\d+)", s).group(1)),
                "flags": sorted(f for f in re.search(r"FLAGS \(([^)]*)\)", s).group(1).split()
                                if f != "\\Recent"),
                "size": int(re.search(r"RFC822\.SIZE (\d+)", s).group(1)),
                "guid": re.search(r"DIGEST\.SHA1 ([0-9a-f]{40})", s).group(1),
                "internaldate": int(time.mktime(imaplib.Internaldate2tuple(s.encode()))),
            })
    print(json.dumps({"uidvalidity": uidvalidity, "messages": msgs}))
imap.logout()
"#;

/// The lab, as `scripts/lab/start.sh` describes it in `lab.env`.
struct Lab {
    env: BTreeMap<String, String>,
    conf: PathBuf,
    bin: PathBuf,
}

impl Lab {
    fn find() -> Option<Lab> {
        let root = common::lab("MAILVAULT_LAB")?;
        let text = fs::read_to_string(root.join("lab.env"))
            .unwrap_or_else(|e| panic!("{}/lab.env: {e}", root.display()));
        let env: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let conf = PathBuf::from(&env["IMAPD_CONF"]);
        let bin = PathBuf::from(env.get("CYRUS_BIN").map_or("/usr/lib/cyrus/bin", |b| b));
        Some(Lab { env, conf, bin })
    }

    /// A Cyrus tool run as user cyrus; its output, whatever its status.
    fn tool(&self, tool: &str, args: &[&str]) -> Output {
        Command::new("setpriv")
            .args(["--reuid=cyrus", "--regid=mail", "--init-groups", "--"])
            .arg(self.bin.join(tool))
            .arg("-C")
            .arg(&self.conf)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
    }

    /// A Cyrus tool that must succeed; its stdout and stderr together.
    fn run(&self, tool: &str, args: &[&str]) -> String {
        let out = self.tool(tool, args);
        let text = both(&out);
        assert!(out.status.success(), "{tool} {args:?} failed: {text}");
        text
    }

    /// A Cyrus tool that must succeed; its stdout alone.
    fn run_stdout(&self, tool: &str, args: &[&str]) -> String {
        let out = self.tool(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            both(&out)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    fn mbpath(&self, mbox: &str) -> PathBuf {
        PathBuf::from(self.run_stdout("mbpath", &[mbox]).trim())
    }

    fn imap(&self, login: &str, password: &str, cmd: &str, arg: &str) -> String {
        let out = Command::new("python3")
            .args([
                "-c",
                IMAP_SNIPPET,
                &self.env["IMAP_PORT"],
                login,
                password,
                cmd,
                arg,
            ])
            .output()
            .expect("python3 runs");
        assert!(out.status.success(), "IMAP {cmd} {arg}: {}", both(&out));
        String::from_utf8(out.stdout).expect("the snippet prints UTF-8")
    }

    /// Creates [`RT_USER`] once per test process, however many tests ask:
    /// two saslpasswd2 runs at once would race on the sasldb.
    fn ensure_rt_user(&self) {
        static CREATED: std::sync::Once = std::sync::Once::new();
        CREATED.call_once(|| self.create_user(RT_USER));
    }

    /// Creates `user` (password `pass`) like `scripts/lab/lab.py` does.
    fn create_user(&self, user: &str) {
        let sasldb = format!("{}/lib/sasldb2", self.env["LAB_DIR"]);
        let mut child = Command::new("saslpasswd2")
            .args([
                "-p",
                "-c",
                "-f",
                &sasldb,
                "-u",
                &self.env["SERVERNAME"],
                user,
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("saslpasswd2 runs");
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(self.env["USER_PASS"].as_bytes()).unwrap();
        drop(stdin);
        assert!(child.wait().unwrap().success(), "saslpasswd2 {user}");
        chown_to_cyrus(Path::new(&sasldb));
        let admin = (&self.env["ADMIN_USER"], &self.env["ADMIN_PASS"]);
        self.imap(admin.0, admin.1, "create-user", user);
    }

    fn partition_root(&self) -> PathBuf {
        let conf = ImapdConf::load(&self.conf).expect("the lab's imapd.conf loads");
        conf.partitions
            .get("default")
            .expect("partition-default")
            .clone()
    }
}

fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn chown_to_cyrus(path: &Path) {
    let status = Command::new("chown")
        .arg("cyrus:mail")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown {}", path.display());
}

/// A real folder: its header, index and the message file of every record.
struct Source {
    header: CyrusHeader,
    index: IndexHeader,
    records: Vec<IndexRecord>,
    files: BTreeMap<u32, Vec<u8>>,
}

fn read_source(lab: &Lab) -> Source {
    let dir = lab.mbpath(&format!("user/{SOURCE_USER}"));
    let header = CyrusHeader::parse(&fs::read(dir.join("cyrus.header")).unwrap()).unwrap();
    let (index, records) = parse_index(&fs::read(dir.join("cyrus.index")).unwrap()).unwrap();
    let files = records
        .iter()
        .filter_map(|r| Some((r.uid, fs::read(dir.join(format!("{}.", r.uid))).ok()?)))
        .collect();
    Source {
        header,
        index,
        records,
        files,
    }
}

/// 20 characters of `[0-9a-z]`, the alphabet of the uniqueids Debian's 3.6
/// build makes (it makes 24); unique per call.
fn fresh_uniqueid(seed: &str) -> String {
    let digest = Guid::of(format!("{seed} {:?}", SystemTime::now()).as_bytes());
    digest
        .0
        .iter()
        .map(|b| char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[usize::from(b % 36)]))
        .collect()
}

/// What recipe B writes for one new mailbox.
struct NewMailbox {
    /// Internal name, `user.rtuser1.<folder>`.
    name: String,
    /// The user's own name for it, below INBOX.
    folder: String,
    uniqueid: String,
    uidvalidity: u32,
    dir: PathBuf,
    records: Vec<IndexRecord>,
    user_flags: Vec<Option<String>>,
}

/// The records as Cyrus must re-derive their cache: no cache offset,
/// version or CRC, so that reconstruct re-parses every message. Versions
/// before 12 cannot hold an expunged record (2.3 moved them to
/// `cyrus.expunge`), so those are left out there, files and all.
fn without_cache(
    records: &[IndexRecord],
    files: &BTreeMap<u32, Vec<u8>>,
    version: u32,
) -> Vec<IndexRecord> {
    records
        .iter()
        .filter(|r| files.contains_key(&r.uid))
        .filter(|r| version >= 12 || !r.is_expunged())
        .map(|r| IndexRecord {
            cache_offset: 0,
            cache_version: 0,
            cache_crc: 0,
            ..r.clone()
        })
        .collect()
}

fn plan(lab: &Lab, src: &Source, version: u32, stamp: u64) -> NewMailbox {
    let folder = format!("rt{stamp}v{version}");
    let uniqueid = fresh_uniqueid(&folder);
    let dir = lab
        .partition_root()
        .join("uuid")
        .join(&uniqueid[0..1])
        .join(&uniqueid[1..2])
        .join(&uniqueid);
    NewMailbox {
        name: format!("user.{RT_USER}.{folder}"),
        folder,
        uniqueid,
        uidvalidity: u32::try_from(stamp % 1_000_000_000).unwrap() + version,
        dir,
        records: without_cache(&src.records, &src.files, version),
        user_flags: src.header.user_flags.clone(),
    }
}

/// Writes the header, index, cache and message files, owned by cyrus;
/// returns the index bytes written.
fn write_mailbox(src: &Source, new: &NewMailbox, version: u32) -> Vec<u8> {
    let header = CyrusHeader {
        mailbox_type: Some("e".into()),
        name: Some(new.name.clone()),
        uniqueid: new.uniqueid.clone(),
        jmapid: None,
        quotaroot: None,
        acl: vec![(RT_USER.into(), "lrswipkxtecdan".into())],
        user_flags: new.user_flags.clone(),
        form: HeaderForm::Dlist,
    };
    let header_bytes = header.to_bytes(HeaderForm::Dlist);
    let index = IndexHeader {
        minor_version: version,
        uidvalidity: new.uidvalidity,
        header_file_crc: crc32fast::hash(&header_bytes),
        generation_no: 0,
        ..src.index.clone()
    };
    let index_bytes = write_index(&index, &new.records).expect("our writer takes the records");
    fs::create_dir_all(&new.dir).unwrap();
    for (name, bytes) in [
        ("cyrus.header", header_bytes),
        ("cyrus.index", index_bytes.clone()),
        ("cyrus.cache", 0u32.to_be_bytes().to_vec()),
    ] {
        fs::write(new.dir.join(name), bytes).unwrap();
    }
    for r in &new.records {
        let path = new.dir.join(format!("{}.", r.uid));
        fs::write(&path, &src.files[&r.uid]).unwrap();
        let mtime = UNIX_EPOCH + Duration::from_secs(r.internaldate.secs());
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(mtime))
            .unwrap();
    }
    chown_tree(&new.dir);
    index_bytes
}

/// The mailbox directory and its `uuid/x/y` parents, as Cyrus would own them.
fn chown_tree(dir: &Path) {
    let status = Command::new("chown")
        .args(["-R", "cyrus:mail"])
        .arg(dir.parent().unwrap().parent().unwrap())
        .status()
        .unwrap();
    assert!(status.success());
}

/// The flags IMAP shows for a record: system flags and keywords. Before
/// version 12 nobody's `\Seen` lived in the index (2.3 kept it in the seen
/// database, the owner's too), and Cyrus 3.6 does not take it from there.
fn imap_flags(r: &IndexRecord, names: &[Option<String>], version: u32) -> Vec<String> {
    let mut flags: Vec<String> = r
        .flag_names(names)
        .into_iter()
        .filter(|f| !f.starts_with('['))
        .filter(|f| version >= 12 || f != "\\Seen")
        .collect();
    flags.sort();
    flags
}

/// What the folder must show over IMAP: every record not expunged.
fn expected_view(new: &NewMailbox, version: u32) -> Value {
    let messages: Vec<Value> = new
        .records
        .iter()
        .filter(|r| !r.is_expunged())
        .map(|r| {
            serde_json::json!({
                "uid": r.uid,
                "flags": imap_flags(r, &new.user_flags, version),
                "size": r.size,
                "guid": r.guid.to_hex(),
                "internaldate": r.internaldate.secs(),
            })
        })
        .collect();
    serde_json::json!({"uidvalidity": new.uidvalidity, "messages": messages})
}

/// The lines of reconstruct's output that recipe B does not explain. It
/// must rebuild the cache we left empty ("rewrote cache for N"), may fix
/// the header's sync CRCs, and re-derives `gmtime` each time for versions
/// before 12, which have no field to keep it in. Anything else (a "guid
/// mismatch", a "rediscovered" file, another field it disagreed with) is a
/// record we wrote wrong.
fn unexplained(output: &str, name: &str, mbox: &str, version: u32) -> Vec<String> {
    output
        .lines()
        .filter(|line| !line.is_empty() && *line != mbox)
        .filter(|line| {
            let Some(rest) = line.strip_prefix(name) else {
                return true;
            };
            let cache = rest.starts_with(" rewrote cache for ");
            let sync_crc = rest.starts_with(": updating sync_crc");
            let gmtime =
                version < 12 && rest.starts_with(" uid ") && rest.ends_with(" mismatch: gmtime");
            !(cache || sync_crc || gmtime)
        })
        .map(str::to_string)
        .collect()
}

/// What reconstruct may change in a record we wrote: the cache location and
/// CRCs (it rebuilt the cache), and so the record's CRC, modseq and
/// last_updated; before v12 also the body offset it re-derives.
const REWRITTEN_BY_RECONSTRUCT: [&str; 7] = [
    "cache_offset",
    "cache_version",
    "cache_crc",
    "record_crc",
    "modseq",
    "last_updated",
    "content_offset",
];

/// `field: ours -> theirs` for every record field that differs, other than
/// those reconstruct must rewrite.
fn changed_fields(ours: &IndexRecord, theirs: &IndexRecord) -> Vec<String> {
    let (Value::Object(a), Value::Object(b)) = (
        serde_json::to_value(ours).unwrap(),
        serde_json::to_value(theirs).unwrap(),
    ) else {
        unreachable!("records serialize as objects")
    };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .filter(|(k, _)| !REWRITTEN_BY_RECONSTRUCT.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}: {v} -> {}", b[k]))
        .collect()
}

fn stamp() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `reconstruct -P` took the uniqueid and name from our header and the
/// uidvalidity from our index, as `mailvault inspect mailboxes-db` reads.
fn assert_registered(lab: &Lab, new: &NewMailbox) {
    let (_dir, db) = scratch_mailboxes_db(lab);
    let folders = inspect_mailboxes_db(lab, &db, &["--user", RT_USER]);
    let entry = folders
        .iter()
        .find(|e| e["name"] == new.name.as_str())
        .unwrap_or_else(|| panic!("{} is not among {RT_USER}'s folders", new.name));
    assert_eq!(entry["uniqueid"], new.uniqueid.as_str());
    assert_eq!(entry["uidvalidity"], new.uidvalidity);
    assert_eq!(entry["partition"], "default");
    assert_eq!(entry["mbtype"], "e");
    assert_eq!(
        entry["acl"],
        serde_json::json!([[RT_USER, "lrswipkxtecdan"]])
    );
}

#[test]
fn only_what_recipe_b_predicts_passes_as_explained() {
    let output = "user.u.f uid 3 mismatch: gmtime\n\
                  user.u.f rewrote cache for 3 (offset 0 to 4, crc 0 to 1/1)\n\
                  user.u.f: updating sync_crc 1 => 2\n\
                  user.u.f uid 4: guid mismatch\n\
                  user.u.f uid 5 mismatch: size\n\
                  user/u/f\n";
    assert_eq!(
        unexplained(output, "user.u.f", "user/u/f", 10),
        [
            "user.u.f uid 4: guid mismatch",
            "user.u.f uid 5 mismatch: size"
        ]
    );
    assert_eq!(unexplained(output, "user.u.f", "user/u/f", 17).len(), 3);
}

#[test]
fn a_mailbox_we_write_in_every_version_cyrus_36_reads_shows_our_records_over_imap() {
    let Some(lab) = Lab::find() else { return };
    lab.ensure_rt_user();
    let src = read_source(&lab);
    assert!(
        src.records.len() >= 5 && src.header.user_flags.iter().flatten().count() > 0,
        "user1's INBOX should have messages and keywords (lab.py populate)"
    );
    let stamp = stamp();
    for version in VERSIONS_36_READS {
        let new = plan(&lab, &src, version, stamp);
        let written = write_mailbox(&src, &new, version);
        lab.run("reconstruct", &["-P", new.dir.to_str().unwrap()]);
        let mbox = format!("user/{RT_USER}/{}", new.folder);
        assert_eq!(
            lab.mbpath(&mbox),
            new.dir,
            "v{version}: registered where we wrote it"
        );
        let output = lab.run("reconstruct", &[&mbox]);
        assert_eq!(
            unexplained(&output, &new.name, &mbox, version),
            Vec::<String>::new(),
            "v{version}: reconstruct said:\n{output}"
        );
        assert_registered(&lab, &new);
        let (_, ours) = parse_index(&written).unwrap();
        let (after, theirs) = parse_index(&fs::read(new.dir.join("cyrus.index")).unwrap()).unwrap();
        assert_eq!(
            after.minor_version, version,
            "reconstruct keeps the version"
        );
        assert_eq!(after.uidvalidity, new.uidvalidity);
        assert_eq!(theirs.len(), ours.len(), "v{version}: record count");
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(
                changed_fields(a, b),
                Vec::<String>::new(),
                "v{version} uid {}",
                a.uid
            );
        }
        let shown: Value =
            serde_json::from_str(&lab.imap(RT_USER, &lab.env["USER_PASS"], "fetch", &new.folder))
                .unwrap();
        assert_eq!(shown, expected_view(&new, version), "v{version}: IMAP view");
    }
}

/// `mailvault inspect mailboxes-db --json FILE ARGS…`, parsed.
fn inspect_mailboxes_db(lab: &Lab, file: &Path, args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_mailvault"))
        .args(["inspect", "mailboxes-db", "--json", "--imapd-conf"])
        .arg(&lab.conf)
        .arg(file)
        .args(args)
        .output()
        .expect("run mailvault");
    assert!(
        out.status.success(),
        "inspect {}: {}",
        file.display(),
        both(&out)
    );
    match serde_json::from_slice(&out.stdout).expect("inspect prints JSON") {
        Value::Array(entries) => entries,
        other => panic!("inspect printed {other}"),
    }
}

/// A copy of the lab's mailboxes.db in a directory the cyrus user owns
/// (never the live file, which Cyrus keeps changing).
fn scratch_mailboxes_db(lab: &Lab) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("mailboxes.db");
    fs::copy(
        Path::new(&lab.env["LAB_DIR"]).join("lib/mailboxes.db"),
        &copy,
    )
    .unwrap();
    chown_to_cyrus(dir.path());
    chown_to_cyrus(&copy);
    (dir, copy)
}

/// The fields `ctl_mboxlist -d` prints, in its spelling (numbers as strings,
/// 0 for a number the record lacks, the ACL as an object), taken from one
/// entry of ours.
fn as_dumped(ours: &Value) -> Value {
    let text = |field: &str| match &ours[field] {
        Value::Null => Value::String("0".into()),
        Value::String(s) => Value::String(s.clone()),
        number => Value::String(number.to_string()),
    };
    let acl: serde_json::Map<String, Value> = ours["acl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| (pair[0].as_str().unwrap().to_string(), pair[1].clone()))
        .collect();
    serde_json::json!({
        "name": ours["name"],
        "mtime": text("mtime"),
        "uidvalidity": text("uidvalidity"),
        "createdmodseq": text("createdmodseq"),
        "foldermodseq": text("foldermodseq"),
        "mbtype": ours["mbtype"],
        // A tombstone has no partition: we print "", ctl_mboxlist leaves the key out.
        "partition": match ours["partition"].as_str() {
            Some("") => Value::Null,
            _ => ours["partition"].clone(),
        },
        "acl": acl,
        "uniqueid": ours["uniqueid"],
    })
}

/// The same fields of a `ctl_mboxlist -d` entry.
fn dumped_fields(entry: &Value) -> Value {
    let keep = [
        "name",
        "mtime",
        "uidvalidity",
        "createdmodseq",
        "foldermodseq",
        "mbtype",
        "partition",
        "acl",
        "uniqueid",
    ];
    Value::Object(
        keep.iter()
            .map(|k| (k.to_string(), entry[*k].clone()))
            .collect(),
    )
}

#[test]
fn inspect_mailboxes_db_lists_what_ctl_mboxlist_dumps_from_every_backend() {
    let Some(lab) = Lab::find() else { return };
    let (dir, twoskip) = scratch_mailboxes_db(&lab);
    let dump: Value = serde_json::from_str(
        &lab.run_stdout("ctl_mboxlist", &["-d", "-f", twoskip.to_str().unwrap()]),
    )
    .unwrap();
    let dump = dump.as_object().expect("ctl_mboxlist -d prints an object");
    assert!(dump.len() > 10, "the lab's mailboxes.db looks empty");
    let mut files = vec![twoskip.clone()];
    for backend in ["skiplist", "flat"] {
        let to = dir.path().join(format!("mailboxes.{backend}"));
        lab.run(
            "cvt_cyrusdb",
            &[
                twoskip.to_str().unwrap(),
                "twoskip",
                to.to_str().unwrap(),
                backend,
            ],
        );
        files.push(to);
    }
    for file in &files {
        let ours = inspect_mailboxes_db(&lab, file, &[]);
        let listed: BTreeMap<String, &Value> = ours
            .iter()
            .map(|e| (e["name"].as_str().unwrap().to_string(), e))
            .collect();
        for (name, entry) in dump {
            let mine = listed
                .get(name)
                .unwrap_or_else(|| panic!("{}: {name} missing", file.display()));
            assert_eq!(as_dumped(mine), dumped_fields(entry), "{}", file.display());
        }
        for (name, entry) in &listed {
            let intermediate = entry["mbtype"].as_str().unwrap().contains('i');
            assert!(
                dump.contains_key(name) || intermediate,
                "{}: {name} is not in the dump",
                file.display()
            );
        }
        let user1 = inspect_mailboxes_db(&lab, file, &["--user", SOURCE_USER]);
        let names: Vec<&str> = user1.iter().map(|e| e["name"].as_str().unwrap()).collect();
        let inbox = format!("user.{SOURCE_USER}");
        let mut expected: Vec<&str> = dump
            .keys()
            .map(String::as_str)
            .filter(|n| *n == inbox || n.starts_with(&format!("{inbox}.")))
            .collect();
        assert_eq!(names.first(), Some(&inbox.as_str()), "INBOX first");
        let mut sorted = names.clone();
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected, "{}: --user {SOURCE_USER}", file.display());
    }
}

/// 3.6 opens no index newer than its own v17: `reconstruct -P` says so
/// (and still exits 0, so the words are what to check) and registers
/// nothing. The refused files are removed again.
#[test]
fn versions_newer_than_cyrus_36_are_refused_by_it() {
    let Some(lab) = Lab::find() else { return };
    lab.ensure_rt_user();
    let src = read_source(&lab);
    let stamp = stamp();
    for version in [19, 20] {
        let new = plan(&lab, &src, version, stamp);
        write_mailbox(&src, &new, version);
        let said = lab.run("reconstruct", &["-P", new.dir.to_str().unwrap()]);
        fs::remove_dir_all(&new.dir).unwrap();
        assert!(
            said.contains(&format!("failed to open mailbox {}", new.name))
                && said.contains("Mailbox has an invalid format"),
            "v{version}: reconstruct -P said: {said}"
        );
        let mbox = format!("user/{RT_USER}/{}", new.folder);
        let lookup = lab.tool("mbpath", &[&mbox]);
        assert!(
            !lookup.status.success(),
            "v{version}: {mbox} was registered"
        );
    }
}
