//! What every integration test needs to find its real-world inputs, and to
//! say so loudly when they are missing.
//!
//! libtest captures `eprintln!` and shows it only for failing tests, so a
//! skipped test used to look exactly like a passing one. [`skip`] writes to
//! the process's stderr handle directly, which libtest does not capture:
//! `cargo test 2>&1 | grep SKIPPED` lists every test that checked nothing.

// Each test binary compiles its own copy and uses only some of these.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// Set to `1` (as `scripts/test` does when it started a lab) to turn a
/// missing lab from a skip into a failure.
pub const REQUIRE_LAB: &str = "MAILVAULT_REQUIRE_LAB";

/// Says, past libtest's capture, that `test` checked nothing and why.
pub fn skip(test: &str, why: &str) {
    let line = format!("SKIPPED {test}: {why}\n");
    // Nothing sensible is left to do if stderr itself is gone.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The running test's name: libtest runs each test on a thread named after it.
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string()
}

/// `../shared/fixtures` beside the repository (the real Cyrus captures of
/// NOTES.md), or `None` after a loud skip of the running test.
pub fn shared_fixtures() -> Option<PathBuf> {
    shared_fixtures_for(&current_test())
}

/// [`shared_fixtures`] for callers that name the test themselves.
pub fn shared_fixtures_for(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures"));
    if dir.is_dir() {
        Some(dir)
    } else {
        skip(test, "../shared/fixtures absent");
        None
    }
}

/// The lab directory named by the environment variable `var` (set by
/// `scripts/test`), or `None` after a loud skip.
///
/// # Panics
/// When `MAILVAULT_REQUIRE_LAB=1` and `var` is unset: a run that promised a
/// lab must not pass by skipping.
pub fn lab(var: &str) -> Option<PathBuf> {
    lab_for(&current_test(), var)
}

/// [`lab`] for callers that name the test themselves.
pub fn lab_for(test: &str, var: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(var) {
        return Some(PathBuf::from(dir));
    }
    if std::env::var(REQUIRE_LAB).as_deref() == Ok("1") {
        panic!("{REQUIRE_LAB}=1 but {var} is not set ({test}): start a lab with scripts/test");
    }
    skip(
        test,
        &format!("no lab ({var} is not set; scripts/test sets it when run as root)"),
    );
    None
}

/// `KEY=value` lines of a lab's `lab.env` (written by `scripts/lab/start.sh`).
pub fn lab_env(dir: &std::path::Path) -> std::collections::HashMap<String, String> {
    let path = dir.join("lab.env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `program` run as user cyrus, as Cyrus's own tools and our agent must run.
pub fn as_cyrus(program: &std::ffi::OsStr) -> std::process::Command {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=cyrus", "--regid=mail", "--init-groups"])
        .arg(program);
    cmd
}

/// The built `mailvault agent` running as user cyrus on a free loopback
/// port; killed when dropped.
pub struct AgentProcess {
    pub child: std::process::Child,
    pub addr: String,
}

impl AgentProcess {
    pub fn start(conf: &std::path::Path, servername: &str) -> AgentProcess {
        use std::time::{Duration, Instant};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = as_cyrus(env!("CARGO_BIN_EXE_mailvault").as_ref())
            .arg("agent")
            .arg("--imapd-conf")
            .arg(conf)
            .args(["--listen", &addr, "--servername", servername])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start the agent");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "the agent never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        AgentProcess { child, addr }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
