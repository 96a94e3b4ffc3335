//! `cbtsim batch` as a user runs it: the grid, the store, a kill and
//! `resume --all`, dry runs and model checks, and the default model.

use super::fault_server::{FaultServer, Reply, chat_reply, json as fault_json};
use super::util::{cbtsim_process, listed, run};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// (session id, session number, course id, positions of its turns), per session.
fn stored_sessions(db: &std::path::Path) -> Vec<(i64, u32, Option<i64>, Vec<i64>)> {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return Vec::new();
    };
    let Ok(mut statement) = conn.prepare(
        "SELECT s.id, s.session_number, s.course_id, t.position FROM sessions s
         LEFT JOIN turns t ON t.session_id = s.id ORDER BY s.id, t.position",
    ) else {
        return Vec::new();
    };
    let rows: Vec<(i64, u32, Option<i64>, Option<i64>)> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default();
    let mut sessions: BTreeMap<i64, (u32, Option<i64>, Vec<i64>)> = BTreeMap::new();
    for (id, number, course, position) in rows {
        let entry = sessions.entry(id).or_insert((number, course, Vec::new()));
        entry.2.extend(position);
    }
    sessions
        .into_iter()
        .map(|(id, (number, course, positions))| (id, number, course, positions))
        .collect()
}

/// 3 personas x 2 repeats x 2 sessions of 6 turns, 2 courses at a time,
/// each reply taking 30 ms: long enough to be stopped mid-way. Returns once
/// at least `turns` turns are stored.
fn start_a_slow_batch(db: &std::path::Path, turns: usize) -> std::process::Child {
    let mut child = cbtsim_process()
        .args([
            "batch",
            "--personas",
            "alicia-rodriguez,samuel-okafor,mei-lin-chen",
            "--repeats",
            "2",
            "--sessions",
            "2",
            "--max-turns",
            "6",
            "--concurrency",
            "2",
            "--model",
            "scripted?delay_ms=30",
            "--db",
        ])
        .arg(db)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while stored_turns(db) < turns {
        assert!(Instant::now() < deadline, "no turns stored");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the batch ended before it was stopped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn stored_turns(db: &std::path::Path) -> usize {
    stored_sessions(db).iter().map(|s| s.3.len()).sum()
}

/// `resume --all` after a stop: all 12 sessions of the slow batch, each
/// once, turns contiguous, and what was stored before kept as it was.
fn resume_finishes_the_slow_batch(db: &std::path::Path) {
    let before = stored_sessions(db);
    let (code, stdout, stderr) = run(&["resume", "--db", db.to_str().unwrap(), "--all"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("6 courses, 12 sessions: 6 finished, 0 failed"),
        "{stdout}"
    );

    let after = stored_sessions(db);
    assert_eq!(after.len(), 12, "every session once: {after:?}");
    let mut seen = std::collections::BTreeSet::new();
    for (id, number, course, positions) in &after {
        assert!(
            seen.insert((*course, *number)),
            "session {number} of course {course:?} twice"
        );
        assert_eq!(
            positions,
            &(0..6).collect::<Vec<i64>>(),
            "session {id}: contiguous"
        );
    }
    for (id, number, course, positions) in &before {
        let now = after
            .iter()
            .find(|s| s.0 == *id)
            .expect("a stored session is kept");
        assert_eq!((now.1, now.2), (*number, *course));
        assert_eq!(&now.3[..positions.len()], &positions[..]);
    }
    let rows = listed(db);
    let courses: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "course").collect();
    assert_eq!(courses.len(), 6);
    let (code, _, stderr) = run(&["resume", "--db", db.to_str().unwrap(), "--all"]);
    assert_eq!(code, 0);
    assert!(stderr.contains("nothing to resume"), "{stderr}");
}

#[test]
fn a_batch_killed_mid_way_finishes_with_resume_all_and_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("batch.db");
    let mut child = start_a_slow_batch(&db, 20);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let kept = stored_turns(&db);
    assert!(kept < 12 * 6, "killed before the end: {kept} turns");
    resume_finishes_the_slow_batch(&db);
}

#[test]
fn ctrl_c_stops_a_batch_from_starting_work_and_resume_all_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("batch.db");
    let child = start_a_slow_batch(&db, 10);
    let started = stored_sessions(&db).len();
    let output = super::util::interrupt(child);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stdout}{stderr}");
    // The running courses stop after their turn and no new one starts: at
    // most the 2 running courses had begun a session more when it landed.
    let stored = stored_sessions(&db);
    assert!(
        stored.len() <= started + 2 && stored.len() < 12,
        "{} sessions at the signal, {} after",
        started,
        stored.len()
    );
    // The summary counts the interrupted courses: at least one.
    let interrupted: u32 = stdout
        .split(", ")
        .find_map(|part| part.strip_suffix(" interrupted")?.parse().ok())
        .unwrap_or_else(|| panic!("no count of interrupted courses: {stdout}"));
    assert!(interrupted >= 1, "{stdout}");
    // The stopped sessions say so in the store.
    let rows = listed(&db);
    assert!(
        rows.iter()
            .any(|r| r["termination_reason"] == "Interrupted"),
        "{rows:?}"
    );
    resume_finishes_the_slow_batch(&db);
}

#[test]
fn a_dry_run_prints_the_grid_and_an_estimate_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dry.db");
    let config = dir.path().join("cbtsim.toml");
    std::fs::write(
        &config,
        "[prices.scripted]\nprompt = 1.0\ncompletion = 2.0\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&[
        "--config",
        config.to_str().unwrap(),
        "batch",
        "--personas",
        "a*",
        "--repeats",
        "3",
        "--sessions",
        "2",
        "--max-turns",
        "10",
        "--model",
        "scripted",
        "--dry-run",
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(
            "2 personas (alicia-rodriguez, aroha-ngata) x 3 repeats = 6 courses of 2 sessions: 12 sessions, at most 120 turns"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("estimated cost: $"), "{stdout}");
    assert!(stdout.contains("models: ok"), "{stdout}");
    assert!(!db.exists(), "a dry run stores nothing");

    let (code, stdout, _) = run(&[
        "batch",
        "--personas",
        "all",
        "--model",
        "scripted",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["estimate"]["courses"], 9);
    assert_eq!(report["estimate"]["turns"], 9 * 20);
    assert!(
        report["estimate"]["models"][0]["prompt_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn a_model_that_cannot_be_used_stops_the_run_before_its_first_turn() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("none.db");
    for command in ["run", "course"] {
        let output = super::util::cbtsim()
            .env_remove("OPENAI_API_KEY")
            .args([
                command,
                "--persona",
                "alicia-rodriguez",
                "--model",
                "openai:gpt-4o-mini",
                "--db",
                db.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("OPENAI_API_KEY is not set"), "{stderr}");
        assert!(!db.exists(), "nothing is stored: {stderr}");
    }
    // An endpoint that does not answer, in a batch's dry run.
    let (code, stdout, _) = run(&[
        "batch",
        "--personas",
        "alicia-rodriguez",
        "--model",
        "http://127.0.0.1:9/v1#m",
        "--dry-run",
    ]);
    assert_eq!(code, 2);
    assert!(
        stdout.contains("models: the therapist and patient and summarizer model"),
        "{stdout}"
    );
    assert!(stdout.contains("cannot reach"), "{stdout}");
    // A persona that does not exist stops a batch before it starts.
    let (code, _, stderr) = run(&[
        "batch",
        "--personas",
        "alicia-rodriguez,nobody",
        "--model",
        "scripted",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no persona 'nobody'"), "{stderr}");
}

#[test]
fn the_http_concurrency_cap_holds_across_the_courses_of_a_batch() {
    let replies: Vec<Reply> = (0..12)
        .map(|i| Reply::Slow {
            pause: Duration::from_millis(150),
            body: chat_reply(&format!(
                "A reply that is different every time, number {i}."
            )),
        })
        .collect();
    let server = FaultServer::start(replies);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cbtsim.toml");
    std::fs::write(
        &config,
        "[http]\nmax_concurrency = 1\nstream = false\nmax_retries = 0\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&[
        "--config",
        config.to_str().unwrap(),
        "batch",
        "--personas",
        "alicia-rodriguez,samuel-okafor,mei-lin-chen",
        "--concurrency",
        "3",
        "--max-turns",
        "2",
        "--model",
        &format!("{}#m", server.base_url),
        "--summarizer-model",
        "scripted",
        "--no-store",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(server.request_count(), 6, "3 courses of 2 turns");
    assert_eq!(
        server
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one request at a time over all courses"
    );
}

#[test]
fn a_role_on_two_endpoints_finishes_its_batch_when_one_fails() {
    // One server fails every request (HTTP 500); the other answers.
    let failing = FaultServer::start(Vec::new());
    let replies: Vec<Reply> = (0..4)
        .map(|i| {
            fault_json(
                200,
                &chat_reply(&format!("Reply number {i}, from the server that works.")),
            )
        })
        .collect();
    let working = FaultServer::start(replies);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cbtsim.toml");
    // The two endpoints as a config names them for a role.
    std::fs::write(
        &config,
        format!(
            "[models]\ntherapist = \"{f}#m,{w}#m\"\npatient = \"{f}#m,{w}#m\"\n\n[http]\nstream = false\nmax_retries = 0\n",
            f = failing.base_url,
            w = working.base_url
        ),
    )
    .unwrap();
    let db = dir.path().join("pool.db");
    let (code, stdout, stderr) = run(&[
        "--config",
        config.to_str().unwrap(),
        "batch",
        "--personas",
        "alicia-rodriguez,samuel-okafor",
        "--max-turns",
        "2",
        "--summarizer-model",
        "scripted",
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let turns: Vec<i64> = listed(&db)
        .iter()
        .filter(|r| r["kind"] == "session")
        .map(|r| r["turns"].as_i64().unwrap())
        .collect();
    assert_eq!(turns, [2, 2], "both sessions ran to their end");
    assert_eq!(working.request_count(), 4, "every turn on the working one");
    assert_eq!(
        failing.request_count(),
        1,
        "the failing endpoint is skipped after it fails"
    );
}

#[test]
fn a_batch_on_the_default_model() {
    let _real_model = super::util::real_model();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("default.db");
    let (code, stdout, stderr) = run(&[
        "batch",
        "--personas",
        "alicia-rodriguez,samuel-okafor",
        "--concurrency",
        "2",
        "--max-turns",
        "6",
        "--candidates",
        "1",
        "--db",
        db.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["finished"], true);
    let courses = report["courses"].as_array().unwrap();
    assert_eq!(courses.len(), 2);
    for course in courses {
        assert_eq!(course["status"]["status"], "finished", "{course}");
        assert_eq!(course["sessions"].as_array().unwrap().len(), 1);
    }
    // Tokens per role on the embedded model, as stored.
    let roles: Vec<&str> = report["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["patient", "summarizer", "therapist"]);
    for total in report["tokens"].as_array().unwrap() {
        assert!(total["prompt_tokens"].as_i64().unwrap() > 0, "{total}");
        assert!(
            total["model"].as_str().unwrap().starts_with("local:"),
            "{total}"
        );
    }
    // Everything is in the store: both sessions, each with its turns,
    // ending and summary.
    let sessions: Vec<Value> = listed(&db)
        .into_iter()
        .filter(|r| r["kind"] == "session")
        .collect();
    assert_eq!(sessions.len(), 2);
    for session in &sessions {
        assert!(session["turns"].as_i64().unwrap() >= 2, "{session}");
        assert!(!session["termination_reason"].is_null(), "{session}");
        let id = session["id"].to_string();
        let (code, shown, _) = run(&[
            "show",
            "--db",
            db.to_str().unwrap(),
            &id,
            "--format",
            "json",
        ]);
        assert_eq!(code, 0);
        let shown: Value = serde_json::from_str(&shown).unwrap();
        assert!(!shown["summary"].is_null() || shown["turns"].as_array().unwrap().is_empty());
    }
}
