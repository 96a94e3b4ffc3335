//! The SQLite store: sessions stored as they happen, listed and shown back.

use super::util::run;
use cbtsim::store::{SCHEMA_VERSION, Store};
use serde_json::Value;

#[test]
fn a_run_is_stored_turn_by_turn_and_shown_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested/cbtsim.db");
    let db = db.to_str().unwrap();
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

#[test]
fn list_shows_courses_and_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cbtsim.db");
    let db = db.to_str().unwrap();
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
    let (code, listed, _) = run(&["list", "--db", db, "--json"]);
    assert_eq!(code, 0);
    let rows: Vec<Value> = serde_json::from_str(&listed).unwrap();
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["course", "session", "session"]);
    for row in &rows {
        assert_eq!(row["persona"], "jordan-blake");
        assert_eq!(row["termination_reason"], "Max Turns Reached");
        assert!(row["started_at"].as_str().unwrap().starts_with("20"));
        assert!(row["id"].is_i64() && row["turns"].is_i64());
    }
    assert_eq!(rows[2]["session_number"], 2);

    let (code, _, stderr) = run(&[
        "list",
        "--db",
        dir.path().join("absent.db").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("absent.db"), "{stderr}");
}

#[test]
fn a_store_from_a_newer_cbtsim_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("future.db");
    {
        let store = Store::open(&db).unwrap();
        store.start_run("run", &serde_json::json!({})).unwrap();
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();
    drop(conn);
    let before = std::fs::read(&db).unwrap();
    let (code, _, stderr) = run(&["list", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("newer cbtsim"), "{stderr}");
    let (code, _, _) = run(&[
        "run",
        "--persona",
        "david-levin",
        "--model",
        "scripted",
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert_eq!(std::fs::read(&db).unwrap(), before, "nothing was written");
}
