//! Helpers shared by the test modules.

use std::path::PathBuf;

/// The `cbtsim` binary built for this test run. Its default store is in a
/// folder of this test run's, never the user's.
pub fn cbtsim() -> assert_cmd::Command {
    let mut command = assert_cmd::Command::cargo_bin("cbtsim").expect("the cbtsim binary is built");
    command.env("XDG_DATA_HOME", data_home());
    command
}

/// The same, as a process to start and stop.
pub fn cbtsim_process() -> std::process::Command {
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("cbtsim"));
    command.env("XDG_DATA_HOME", data_home());
    command
}

/// The data folder of the default store in tests: under target/, shared by
/// the tests (which so also write one store from many processes at once).
fn data_home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("data-home")
}

/// A file under tests/data.
pub fn data(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(relative)
}

/// The reference transcript in ../shared.
pub fn reference() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/000_79f15302b794e4fc.txt")
}

pub fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs cbtsim and returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let output = cbtsim().args(args).output().expect("cbtsim runs");
    (
        output.status.code().expect("cbtsim exits with a code"),
        String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    )
}

/// `cbtsim list --db DB --json`, parsed.
pub fn listed(db: impl AsRef<std::path::Path>) -> Vec<serde_json::Value> {
    let db = db.as_ref().to_str().expect("a UTF-8 path");
    let (code, listed, stderr) = run(&["list", "--db", db, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&listed).expect("list --json prints JSON")
}
