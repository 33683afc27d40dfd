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
