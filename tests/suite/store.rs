//! The store: sessions stored as they happen, listed and shown back. The
//! tests that `on_both_stores!` names run on a SQLite file and on a
//! PostgreSQL database; the others are about what only a file has
//! (permissions, a full disk, older schema versions, the data folder).

use super::test_db::{TestDb, on_both_stores};
use super::util::{cbtsim_process, listed, run};
use cbtsim::store::{SCHEMA_VERSION, Store};
use serde_json::Value;

on_both_stores!(
    a_run_is_stored_turn_by_turn_and_shown_back,
    list_shows_courses_and_sessions,
    a_store_from_a_newer_cbtsim_is_refused_untouched,
    imported_transcripts_export_in_every_format,
    a_broken_file_imports_nothing,
    a_run_killed_mid_session_resumes_where_it_stopped,
    a_course_stopped_by_a_failed_backend_resumes_with_its_memory,
    ctrl_c_stops_a_run_after_the_turn_and_resume_finishes_it,
    a_second_process_cannot_run_a_run_that_is_running,
    sessions_are_found_by_their_words_and_runs_by_how_far_they_came,
);

fn a_run_is_stored_turn_by_turn_and_shown_back(store: TestDb) {
    let db = store.db();
    let (code, stdout, stderr) = run(&[
        "run",
        "--persona",
        "alicia-rodriguez",
        "--model",
        "scripted",
        "--max-turns",
        "4",
        "--db",
        db,
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let ran: Value = serde_json::from_str(&stdout).unwrap();

    let (code, shown, _) = run(&["show", "--db", db, "--last", "--format", "json"]);
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["turns"].as_array().unwrap().len(), 4);
    for key in ["session_number", "termination", "summary"] {
        assert_eq!(shown[key], ran[key], "{key}");
    }
    for (a, b) in shown["turns"]
        .as_array()
        .unwrap()
        .iter()
        .zip(ran["turns"].as_array().unwrap())
    {
        assert_eq!(
            (&a["speaker"], &a["text"], &a["meta"]),
            (&b["speaker"], &b["text"], &b["meta"])
        );
    }

    let (code, text, _) = run(&["show", "--db", db, "1"]);
    assert_eq!(code, 0);
    assert_eq!(
        cbtsim::text_format::parse(&text)
            .unwrap()
            .transcript
            .turns
            .len(),
        4
    );
    let (code, markdown, _) = run(&["show", "--db", db, "1", "--format", "markdown"]);
    assert_eq!(code, 0);
    assert!(markdown.starts_with("# Session 1\n\n**Patient:**"));

    let (code, _, stderr) = run(&["show", "--db", db, "7"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no session 7"), "{stderr}");
}

fn list_shows_courses_and_sessions(store: TestDb) {
    let db = store.db();
    let (code, _, stderr) = run(&[
        "course",
        "--persona",
        "jordan-blake",
        "--model",
        "scripted",
        "--sessions",
        "2",
        "--max-turns",
        "2",
        "--db",
        db,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let rows = listed(db);
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["course", "session", "session"]);
    for row in &rows {
        assert_eq!(row["persona"], "jordan-blake");
        assert_eq!(row["termination_reason"], "Max Turns Reached");
        assert!(row["started_at"].as_str().unwrap().starts_with("20"));
        assert!(row["id"].is_i64() && row["turns"].is_i64());
    }
    assert_eq!(rows[2]["session_number"], 2);

    let (code, _, stderr) = run(&["list", "--db", &store.absent()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("absent"), "{stderr}");
}

fn a_store_from_a_newer_cbtsim_is_refused_untouched(store: TestDb) {
    let db = store.db();
    Store::open(std::path::Path::new(db))
        .unwrap()
        .start_run("run", &serde_json::json!({}))
        .unwrap();
    store.set_schema_version(SCHEMA_VERSION + 1);
    let file = || std::fs::read(db).ok();
    let before = file();
    let (code, _, stderr) = run(&["list", "--db", db]);
    assert_eq!(code, 2);
    assert!(stderr.contains("newer cbtsim"), "{stderr}");
    let (code, _, _) = run(&[
        "run",
        "--persona",
        "david-levin",
        "--model",
        "scripted",
        "--db",
        db,
    ]);
    assert_eq!(code, 2);
    assert_eq!(file(), before, "nothing was written to the file");
    assert_eq!(store.count("runs"), 1, "nothing was written");
    assert_eq!(store.schema_version(), SCHEMA_VERSION + 1);
}

/// Runs `cbtsim export` with these arguments; it must succeed.
fn export(args: &[&str]) {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    let (code, _, stderr) = run(&all);
    assert_eq!(code, 0, "{stderr}");
}

fn imported_transcripts_export_in_every_format(store: TestDb) {
    let db = store.db();
    let dir = store.dir();
    // Our own 12-turn flawed session, which the store keeps as it is.
    let flawed = super::util::flawed_session();
    let (code, stdout, stderr) = run(&["import", "--db", db, flawed.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.ends_with(": session 1 (12 turns)\n"), "{stdout}");
    let (code, _, _) = run(&[
        "course",
        "--persona",
        "kenji-watanabe",
        "--model",
        "scripted",
        "--sessions",
        "2",
        "--max-turns",
        "3",
        "--db",
        db,
    ]);
    assert_eq!(code, 0);

    // Text: a file per session, each parsing back to what was stored.
    let folder = dir.join("text");
    export(&[
        "--db",
        db,
        "--all",
        "--format",
        "text",
        "--out",
        folder.to_str().unwrap(),
    ]);
    let original = cbtsim::text_format::parse(&std::fs::read_to_string(&flawed).unwrap()).unwrap();
    let exported = std::fs::read_to_string(folder.join("imported-session1.txt")).unwrap();
    assert_eq!(
        cbtsim::text_format::parse(&exported).unwrap().transcript,
        original.transcript
    );
    let course =
        std::fs::read_to_string(folder.join("kenji-watanabe-course1-session2.txt")).unwrap();
    assert_eq!(
        cbtsim::text_format::parse(&course)
            .unwrap()
            .transcript
            .session_number,
        2
    );

    // JSONL for OpenAI fine-tuning: the therapist is the assistant.
    let jsonl = dir.join("openai.jsonl");
    export(&[
        "--db",
        db,
        "--course",
        "1",
        "--format",
        "jsonl-openai",
        "--out",
        jsonl.to_str().unwrap(),
    ]);
    let lines: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "one line per session of the course");
    let messages = lines[0]["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[1]["role"], "user");
    assert_eq!(messages[2]["role"], "assistant");

    // ShareGPT: human and gpt.
    let sharegpt = dir.join("sharegpt.jsonl");
    export(&[
        "--db",
        db,
        "--all",
        "--format",
        "sharegpt",
        "--out",
        sharegpt.to_str().unwrap(),
    ]);
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&sharegpt)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["conversations"][0]["from"], "human");
    assert_eq!(first["conversations"][1]["from"], "gpt");
    assert_eq!(first["conversations"].as_array().unwrap().len(), 12);

    // JSON and Markdown.
    let json = dir.join("all.json");
    export(&[
        "--db",
        db,
        "--all",
        "--format",
        "json",
        "--out",
        json.to_str().unwrap(),
    ]);
    let all: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(all.len(), 3);
    let md = dir.join("md");
    export(&[
        "--db",
        db,
        "--all",
        "--format",
        "markdown",
        "--out",
        md.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read_to_string(md.join("imported-session1.md"))
            .unwrap()
            .contains("## Session summary")
    );
}

fn a_broken_file_imports_nothing(store: TestDb) {
    let db = std::path::Path::new(store.db());
    let good = super::util::data("transcripts/clean-natural-end.txt");
    let bad = store.dir().join("bad.txt");
    std::fs::write(&bad, "Session Number: 1\n\nNova: hello\n").unwrap();
    let (code, _, stderr) = run(&[
        "import",
        "--db",
        db.to_str().unwrap(),
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.txt") && stderr.contains("line 3"),
        "{stderr}"
    );
    let (code, listed, _) = run(&["list", "--db", db.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(listed.trim(), "[]");
}

fn a_run_killed_mid_session_resumes_where_it_stopped(store: TestDb) {
    let _real_model = super::util::real_model();
    let db = std::path::Path::new(store.db());
    let mut child = cbtsim_process()
        .args([
            "run",
            "--persona",
            "tomasz-nowak",
            "--max-turns",
            "6",
            "--seed",
            "5",
            "--candidates",
            "1",
            "--db",
        ])
        .arg(db)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while store.stored_turns().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no turns stored");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = store.stored_turns();
    assert!(before.len() >= 2 && before.len() < 6, "{before:?}");

    let rows = listed(db);
    assert_eq!(rows[0]["termination_reason"], Value::Null, "unfinished");

    let (code, _, stderr) = run(&["resume", "--db", db.to_str().unwrap(), "--last"]);
    assert_eq!(code, 0, "{stderr}");
    let after = store.stored_turns();
    let positions: Vec<i64> = after.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        positions,
        (0..after.len() as i64).collect::<Vec<_>>(),
        "contiguous, none duplicated"
    );
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "nothing already stored changed"
    );
    for pair in after.windows(2) {
        assert_ne!(pair[0].1, pair[1].1, "speakers alternate across the resume");
    }
    let (_, shown, _) = run(&[
        "show",
        "--db",
        db.to_str().unwrap(),
        "--last",
        "--format",
        "json",
    ]);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert!(!shown["termination"]["reason"].is_null());
    assert!(!shown["summary"].is_null());
    let (code, _, stderr) = run(&["resume", "--db", db.to_str().unwrap(), "--all"]);
    assert_eq!(code, 0);
    assert!(stderr.contains("nothing to resume"), "{stderr}");

    // No store at all: said so, and none is created.
    let missing = store.absent();
    let (code, _, stderr) = run(&["resume", "--db", &missing, "--last"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("absent"), "{stderr}");
    if let TestDb::Sqlite { .. } = store {
        assert!(stderr.contains("no store at"), "{stderr}");
        assert!(!std::path::Path::new(&missing).exists());
    }
}

#[test]
fn an_older_store_is_migrated_and_usage_is_kept_per_role_and_model() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    {
        // A store as the first schema version wrote it, with a run in it.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(cbtsim::store::MIGRATIONS[0]).unwrap();
        conn.execute_batch("PRAGMA user_version = 1").unwrap();
        conn.execute(
            "INSERT INTO runs (command, settings, started_at) VALUES ('run', '{}', 'then')",
            [],
        )
        .unwrap();
    }
    let (code, _, stderr) = run(&[
        "run",
        "--persona",
        "aroha-ngata",
        "--model",
        "scripted",
        "--max-turns",
        "4",
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let runs: i64 = conn
        .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 2, "the old run is kept");
    let totals = Store::open(&db).unwrap().token_totals(None).unwrap();
    let roles: Vec<(&str, Option<&str>)> = totals
        .iter()
        .map(|t| (t.role.as_str(), t.model.as_deref()))
        .collect();
    assert_eq!(
        roles,
        [
            ("patient", Some("scripted")),
            ("summarizer", Some("scripted")),
            ("therapist", Some("scripted"))
        ]
    );
    assert!(totals.iter().all(|t| t.completion_tokens > 0));
}

/// Whether the tests run as root, who may write any file whatever its mode.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = tempfile::NamedTempFile::new().unwrap();
    probe.as_file().metadata().unwrap().uid() == 0
}

#[test]
fn a_read_only_store_is_refused_by_name_and_left_as_it_was() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("store");
    let db = folder.join("cbtsim.db");
    // A 12-turn session to find again once the store is read-only.
    let flawed = super::util::flawed_session();
    let (code, _, stderr) = run(&[
        "import",
        "--db",
        db.to_str().unwrap(),
        flawed.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let before = std::fs::read(&db).unwrap();
    let mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    mode(dir.path(), 0o755);
    mode(&folder, 0o555);
    mode(&db, 0o444);

    // Root writes whatever the mode says, so as root cbtsim runs as nobody.
    let as_reader = |args: &[&str]| {
        let mut command = cbtsim_process();
        command.args(args).env("HOME", dir.path());
        if running_as_root() {
            command.uid(65534).gid(65534);
        }
        let output = command.output().expect("cbtsim runs");
        (
            output.status.code().unwrap(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let db_arg = db.to_str().unwrap();
    for args in [
        vec![
            "run",
            "--persona",
            "alicia-rodriguez",
            "--model",
            "scripted",
            "--max-turns",
            "4",
            "--db",
            db_arg,
        ],
        vec!["import", "--db", db_arg, flawed.to_str().unwrap()],
    ] {
        let (code, _, stderr) = as_reader(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{db_arg} is read-only")),
            "{args:?}: {stderr}"
        );
    }

    // What is stored can still be read.
    let (code, listed, stderr) = as_reader(&["list", "--db", db_arg, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&listed).unwrap().len(),
        1
    );
    let (code, shown, stderr) = as_reader(&["show", "--db", db_arg, "--last"]);
    assert_eq!(code, 0, "{stderr}");
    let shown = cbtsim::text_format::parse(&shown).unwrap().transcript;
    assert_eq!(shown.turns.len(), 12);

    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the store is unchanged"
    );
    assert!(!folder.join("cbtsim.db-wal").exists());
    mode(&folder, 0o755);
    mode(&db, 0o644);
    assert_eq!(stored_turns(&db).len(), 12, "the imported session is kept");
}

#[test]
fn a_full_disk_stops_the_session_keeps_what_was_stored_and_resume_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cbtsim.db");
    let db_arg = db.to_str().unwrap();
    // A 12-turn session stored first: the first 12 rows of the turns table
    // below are its own.
    let flawed = super::util::flawed_session();
    let (code, _, stderr) = run(&["import", "--db", db_arg, flawed.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let imported = dir.path().join("imported.json");
    export(&[
        "--db",
        db_arg,
        "--all",
        "--format",
        "json",
        "--out",
        imported.to_str().unwrap(),
    ]);

    // The persona comes from a file that is gone by the time of resume:
    // the run continues with the snapshot stored when it started.
    let persona = dir.path().join("gone.toml");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/personas/tomasz-nowak.toml"),
        &persona,
    )
    .unwrap();

    // Files may not grow past 64 KiB: the disk is "full" a few turns in.
    // SIGXFSZ is ignored so the write fails instead of killing cbtsim.
    let output = std::process::Command::new("bash")
        .args(["-c", "trap '' XFSZ; ulimit -f 64; exec \"$0\" \"$@\""])
        .arg(assert_cmd::cargo::cargo_bin("cbtsim"))
        .args([
            "run",
            "--persona",
            persona.to_str().unwrap(),
            "--model",
            "scripted",
            "--max-turns",
            "40",
            "--no-summary",
            "--db",
            db_arg,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot store the turn") && stderr.contains(db_arg),
        "{stderr}"
    );
    assert!(
        stderr.contains("may be full") || stderr.contains("disk is full"),
        "{stderr}"
    );

    let kept = stored_turns(&db);
    let spoken = kept.len() - 12;
    assert!(
        spoken >= 2,
        "some turns were stored before the disk filled: {kept:?}"
    );
    std::fs::remove_file(&persona).unwrap();

    let (code, _, stderr) = run(&["resume", "--db", db_arg, "--last"]);
    assert_eq!(code, 0, "{stderr}");
    let after = stored_turns(&db);
    assert_eq!(&after[..kept.len()], &kept[..], "nothing stored was lost");
    assert_eq!(after.len(), 12 + 40, "the session went on to its 40 turns");
    let positions: Vec<i64> = after[12..].iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, (0..40).collect::<Vec<i64>>());

    let again = dir.path().join("again.json");
    export(&[
        "--db",
        db_arg,
        "--all",
        "--format",
        "json",
        "--out",
        again.to_str().unwrap(),
    ]);
    let first = |path: &std::path::Path| {
        let sessions: Value = serde_json::from_str(&super::util::read(path)).unwrap();
        sessions[0].clone()
    };
    assert_eq!(
        first(&again),
        first(&imported),
        "the imported session is unchanged"
    );
    let rows = listed(db_arg);
    assert_eq!(
        rows[1]["persona"], "gone",
        "the id of the file it came from"
    );
    assert_eq!(rows[1]["termination_reason"], "Max Turns Reached");
}

#[test]
fn a_run_is_stored_in_the_data_folder_unless_told_not_to() {
    let data = tempfile::tempdir().unwrap();
    let cbtsim = |args: &[&str]| {
        super::util::cbtsim()
            .env("XDG_DATA_HOME", data.path())
            .args(args)
            .assert()
            .success()
    };
    let session = [
        "run",
        "--persona",
        "alicia-rodriguez",
        "--model",
        "scripted",
        "--max-turns",
        "2",
    ];
    cbtsim(&[&session[..], &["--no-store"]].concat());
    let store = data.path().join("cbtsim/cbtsim.db");
    assert!(!store.exists(), "--no-store keeps nothing");

    let ran = cbtsim(&session);
    let said = String::from_utf8(ran.get_output().stderr.clone()).unwrap();
    assert!(
        said.contains(&format!("stored as run 1 in {}", store.display())),
        "{said}"
    );
    let listed = cbtsim(&["list", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.get_output().stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["turns"], 2);
}

/// A fault server with `replies` chat replies, each after `pause_ms`.
fn slow_server(replies: usize, pause_ms: u64) -> super::fault_server::FaultServer {
    use super::fault_server::{FaultServer, Reply, chat_reply};
    FaultServer::start(
        (1..=replies)
            .map(|i| Reply::Slow {
                pause: std::time::Duration::from_millis(pause_ms),
                body: chat_reply(&format!("This is reply number {i}, said slowly.")),
            })
            .collect(),
    )
}

/// A config (no retries, no streaming) and a model spec that send every
/// request to the fault server, one scripted reply each.
fn through_fault_server(
    dir: &std::path::Path,
    server: &super::fault_server::FaultServer,
) -> (std::path::PathBuf, String) {
    let config = dir.join("cbtsim.toml");
    std::fs::write(&config, "[http]\nmax_retries = 0\nstream = false\n").unwrap();
    (config, format!("{}#test-model", server.base_url))
}

fn a_course_stopped_by_a_failed_backend_resumes_with_its_memory(store: TestDb) {
    use super::fault_server::{FaultServer, chat_reply, json};
    let ok = |text: &str| json(200, &chat_reply(text));
    let summary = |topic: &str, homework: &str| {
        let homework: Vec<&str> = [homework].into_iter().filter(|h| !h.is_empty()).collect();
        ok(&serde_json::json!({
            "main_topics": [topic], "techniques": [], "helpful": [],
            "homework": homework, "insights": []
        })
        .to_string())
    };
    // Three turns a session, so that the patient can agree to homework
    // (a summary keeps only homework the patient agreed to).
    let server = FaultServer::start(vec![
        ok("I slept badly again."),
        ok("Could you try keeping a sleep diary this week?"),
        ok("Yes, I will."),
        summary("Sleep", "Keep a sleep diary"),
        ok("I kept the diary most nights."),
        json(500, "the server fell over"),
        // What `cbtsim resume` gets: session 2 goes on, then session 3.
        ok("What did the diary show you? Could you try walking every morning?"),
        ok("Okay, I can try that."),
        summary("The sleep diary", "Walking every morning"),
        ok("I walked on three mornings."),
        ok("That is a real step. What made those mornings possible?"),
        ok("Having a plan the night before."),
        summary("Walks on three mornings", ""),
    ]);
    let dir = store.dir();
    let (config, model) = through_fault_server(dir, &server);
    let db_arg = store.db();
    let (code, _, stderr) = run(&[
        "--config",
        config.to_str().unwrap(),
        "course",
        "--persona",
        "alicia-rodriguez",
        "--sessions",
        "3",
        "--max-turns",
        "3",
        "--model",
        &model,
        "--next-session",
        "Thursday at 10:00",
        "--db",
        db_arg,
    ]);
    assert_eq!(code, 1, "a failed backend stops the course: {stderr}");
    // A URL's `?` and `&` are quoted for the shell.
    let named = match store {
        TestDb::Sqlite { .. } => db_arg.to_string(),
        TestDb::Postgres { .. } => format!("'{db_arg}'"),
    };
    assert!(
        stderr.contains(&format!("cbtsim resume --db {named} --last")),
        "{stderr}"
    );
    let ended = |rows: &[Value]| -> Vec<(i64, String)> {
        rows.iter()
            .filter(|r| r["kind"] == "session")
            .map(|r| {
                (
                    r["turns"].as_i64().unwrap(),
                    r["termination_reason"].to_string(),
                )
            })
            .collect()
    };
    let max_turns = "\"Max Turns Reached\"".to_string();
    assert_eq!(
        ended(&listed(db_arg)),
        [
            (3, max_turns.clone()),
            (1, "\"Backend Failure\"".to_string())
        ]
    );

    let (code, _, stderr) = run(&["resume", "--db", db_arg, "--last"]);
    assert_eq!(code, 0, "{stderr}");
    let rows = listed(db_arg);
    assert_eq!(ended(&rows), vec![(3, max_turns); 3]);
    assert_eq!(rows[1]["mood"], serde_json::json!({"phq9": 12, "gad7": 11}));

    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 13);
    assert_eq!(
        requests[5], requests[6],
        "the resumed turn is asked exactly as the failed one was"
    );
    assert!(
        requests[6].contains("Keep a sleep diary"),
        "{}",
        requests[6]
    );
    assert!(requests[6].contains("At session 1 the scores were PHQ-9 12, GAD-7 11."));
    assert!(
        requests[9].contains("Homework from last session: Walking every morning"),
        "session 3's patient gets session 2's homework: {}",
        requests[9]
    );
    let summaries = dir.join("all.json");
    export(&[
        "--db",
        db_arg,
        "--all",
        "--format",
        "json",
        "--out",
        summaries.to_str().unwrap(),
    ]);
    let sessions: Value = serde_json::from_str(&super::util::read(&summaries)).unwrap();
    let topics: Vec<&Value> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["summary"]["main_topics"][0])
        .collect();
    assert_eq!(
        topics,
        ["Sleep", "The sleep diary", "Walks on three mornings"]
    );
}

fn ctrl_c_stops_a_run_after_the_turn_and_resume_finishes_it(store: TestDb) {
    // Slow replies give time to press Ctrl-C mid-session.
    let server = slow_server(20, 300);
    let (config, model) = through_fault_server(store.dir(), &server);
    let db = std::path::Path::new(store.db());
    let child = cbtsim_process()
        .arg("--config")
        .arg(&config)
        .args([
            "run",
            "--persona",
            "jordan-blake",
            "--max-turns",
            "6",
            "--model",
            &model,
            "--db",
        ])
        .arg(db)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while store.stored_turns().len() < 2 {
        assert!(started.elapsed().as_secs() < 60, "no turns stored");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = super::util::interrupt(child);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopping after this turn"), "{stderr}");
    let kept = store.stored_turns();
    assert!(kept.len() >= 2 && kept.len() < 6, "{kept:?}");

    assert_eq!(listed(db)[0]["termination_reason"], "Interrupted");

    let (code, _, stderr) = run(&["resume", "--db", db.to_str().unwrap(), "--last"]);
    assert_eq!(code, 0, "{stderr}");
    let after = store.stored_turns();
    assert_eq!(&after[..kept.len()], &kept[..]);
    let positions: Vec<i64> = after.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, (0..6).collect::<Vec<i64>>());
    assert_eq!(listed(db)[0]["termination_reason"], "Max Turns Reached");
}

fn a_second_process_cannot_run_a_run_that_is_running(store: TestDb) {
    // Slow enough that the run is still going when the second starts.
    let server = slow_server(8, 1000);
    let (config, model) = through_fault_server(store.dir(), &server);
    let mut child = cbtsim_process()
        .arg("--config")
        .arg(&config)
        .args([
            "run",
            "--persona",
            "jordan-blake",
            "--max-turns",
            "8",
            "--no-summary",
            "--model",
            &model,
            "--db",
            store.db(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while store.stored_turns().is_empty() {
        assert!(started.elapsed().as_secs() < 60, "no turns stored");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (code, _, stderr) = run(&["resume", "--db", store.db(), "--last"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("being run by another cbtsim process"),
        "{stderr}"
    );
    assert!(child.wait().unwrap().success());
    let turns = store.stored_turns();
    let positions: Vec<i64> = turns.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, (0..8).collect::<Vec<i64>>(), "each turn once");
}

#[test]
fn a_password_in_the_url_is_never_shown_or_stored() {
    let store = TestDb::postgres();
    // The test server trusts loopback, so any password is accepted.
    let url = store
        .db()
        .replace("postgres://cbtsim@", "postgres://cbtsim:hunter2@");
    let (code, stdout, stderr) = run(&[
        "run",
        "--persona",
        "mei-lin-chen",
        "--model",
        "scripted",
        "--max-turns",
        "2",
        "--db",
        &url,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("stored as run 1 in postgres://cbtsim@"),
        "{stderr}"
    );
    assert!(!format!("{stdout}{stderr}").contains("hunter2"));
    let (code, _, stderr) = run(&["show", "--db", &url, "999"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no session 999") && !stderr.contains("hunter2"),
        "{stderr}"
    );
    let stored = store.query("SELECT plan, settings FROM runs");
    assert_eq!(stored.len(), 1, "the run is stored and read back");
    assert!(!stored.concat().concat().contains("hunter2"), "{stored:?}");
    assert!(
        !stored.concat().concat().contains("postgres://"),
        "{stored:?}"
    );
}

#[test]
fn a_server_that_takes_only_tls_and_a_password_is_reached_with_both() {
    use super::pg_server::{PgServer, TcpAccess};
    let server = PgServer::start_with_tls(TcpAccess { password: "s3cret" });
    server.database("tls_test");
    let home = tempfile::tempdir().unwrap();
    let cbtsim_with = |url: &str, password: Option<&str>, args: &[&str]| {
        let mut command = super::util::cbtsim();
        // No password file but the test's own.
        command.env("HOME", home.path()).env_remove("PGPASSFILE");
        match password {
            Some(p) => command.env("PGPASSWORD", p),
            None => command.env_remove("PGPASSWORD"),
        };
        let mut all = args.to_vec();
        all.extend(["--db", url]);
        command.args(&all).output().unwrap()
    };
    let list = ["list", "--json"];
    let run_one = [
        "run",
        "--persona",
        "kenji-watanabe",
        "--model",
        "scripted",
        "--max-turns",
        "2",
    ];
    let tls = format!("{}?sslmode=require", server.tcp_url("tls_test"));
    // Without the password: refused, and said so.
    let out = cbtsim_with(&tls, None, &run_one);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
    // With PGPASSWORD, over TLS (the server takes nothing else on TCP).
    let out = cbtsim_with(&tls, Some("s3cret"), &run_one);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // In the clear: the server refuses it.
    let clear = format!("{}?sslmode=disable", server.tcp_url("tls_test"));
    let out = cbtsim_with(&clear, Some("s3cret"), &list);
    assert_eq!(out.status.code(), Some(2));
    // With the password from the password file instead.
    let pgpass = home.path().join(".pgpass");
    std::fs::write(&pgpass, "127.0.0.1:*:tls_test:cbtsim:s3cret\n").unwrap();
    let out = cbtsim_with(&tls, None, &list);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["persona"], "kenji-watanabe");
    assert_eq!(listed[0]["turns"], 2);
}

/// Every stored turn of a SQLite file as (position, speaker).
fn stored_turns(db: &std::path::Path) -> Vec<(i64, String)> {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return Vec::new();
    };
    let Ok(mut statement) =
        conn.prepare("SELECT position, speaker FROM turns ORDER BY session_id, position")
    else {
        return Vec::new();
    };
    statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// What the web app browses: a search over personas, endings and turns
/// (wildcards taken literally), runs with their progress, evaluations.
fn sessions_are_found_by_their_words_and_runs_by_how_far_they_came(store: TestDb) {
    use cbtsim::store::BrowseFilter;
    let db = store.db();
    let (code, _, stderr) = run(&[
        "batch",
        "--personas",
        "alicia-rodriguez,david-levin",
        "--model",
        "scripted",
        "--max-turns",
        "4",
        "--db",
        db,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let opened = Store::open(std::path::Path::new(db)).unwrap();
    let text = |t: &str| BrowseFilter {
        text: Some(t.into()),
        ..BrowseFilter::default()
    };
    let all = opened.browse(&BrowseFilter::default()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, 2, "newest first");
    assert!(all.iter().all(|s| s.run == Some(1) && s.turns == 4));
    let david = opened.browse(&text("DAVID")).unwrap();
    assert_eq!(david.iter().map(|s| s.id).collect::<Vec<_>>(), [2]);
    // Every session's turns say "Scripted reply"; an ending's words too.
    assert_eq!(opened.browse(&text("scripted REPLY")).unwrap().len(), 2);
    assert_eq!(opened.browse(&text("max turns")).unwrap().len(), 2);
    // `%` and `_` are characters to find, not wildcards.
    assert!(opened.browse(&text("%")).unwrap().is_empty());
    assert!(opened.browse(&text("Scripted_reply")).unwrap().is_empty());
    let course = opened
        .browse(&BrowseFilter {
            course: all[1].course,
            ..BrowseFilter::default()
        })
        .unwrap();
    assert_eq!(course.len(), 1);

    let runs = opened.runs().unwrap();
    assert_eq!(runs.len(), 1);
    let run_row = &runs[0];
    assert_eq!(
        (
            run_row.command.as_str(),
            run_row.courses,
            run_row.sessions,
            run_row.sessions_ended,
            run_row.turns
        ),
        ("batch", 2, 2, 2, 8)
    );
    assert!(run_row.finished_at.is_some() && !run_row.queued);
    assert!(opened.run_row(7).is_err());

    assert!(opened.session_evaluations(1).unwrap().is_empty());
    opened
        .set_evaluation(1, "metrics", "", "1", &serde_json::json!({"questions": 2}))
        .unwrap();
    let evaluations = opened.session_evaluations(1).unwrap();
    assert_eq!(evaluations.len(), 1);
    assert_eq!(evaluations[0].result["questions"], 2);
}
