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

/// The reference transcript in ../shared, or None when it is not there: it
/// lies beside the repository on the CI machine only, not in a clone.
pub fn reference() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/000_79f15302b794e4fc.txt");
    path.is_file().then_some(path)
}

/// The reference transcript for a test of facts about the reference itself;
/// without it, says on stderr that the test was skipped and returns None (the
/// test then returns early). Each such test has a twin on
/// [`flawed_session`], so a clone alone still covers the behaviour.
pub fn reference_or_skip(test: &str) -> Option<PathBuf> {
    let path = reference();
    if path.is_none() {
        eprintln!("{test}: skipped: ../shared/reference is not beside this repository");
    }
    path
}

/// Our own transcript with the reference's kinds of defects, in its layout:
/// 12 turns from the patient, a cut-off patient turn (7), a stage direction
/// in parentheses (10), a template placeholder (12), `Session Summary:`
/// written twice, a natural end on "take care" and a five-section summary.
pub fn flawed_session() -> PathBuf {
    data("transcripts/flawed-session.txt")
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

/// Held by every test that runs the real model (in this process, in a
/// spawned cbtsim, or in the llama.cpp server), so that only one runs at a
/// time. Each llama.cpp instance has a team of OpenMP threads as large as
/// the machine's cores, and the team spins at every barrier of every token:
/// two teams on 2 cores stall each other at each barrier. Side by side, a
/// 6-turn default-model batch took 600 s and a 2-session course 978 s;
/// alone, each takes well under a minute.
pub fn real_model() -> std::sync::MutexGuard<'static, ()> {
    static REAL_MODEL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that failed while holding it says nothing about the others.
    REAL_MODEL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends SIGINT (what Ctrl-C sends) to a running cbtsim and waits for it.
pub fn interrupt(child: std::process::Child) -> std::process::Output {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -INT {}", child.id());
    child.wait_with_output().expect("cbtsim exits")
}

/// A loopback port free a moment ago (for a server a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
