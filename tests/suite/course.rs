//! Courses: each session builds on the summaries and homework before it.

use super::util::{listed, run};
use serde_json::Value;

fn sessions(stdout: &str) -> Vec<Value> {
    serde_json::from_str(stdout).unwrap()
}

/// Session 1 starts at Alicia's baseline (PHQ-9 12, GAD-7 11); each later
/// one moves by the homework done (-2, -1, 0) and the life events before it
/// (+1 before session 2, +2 before session 3), as the store keeps it too.
fn mood_carries_forward(sessions: &[Value], db: &std::path::Path) {
    let mood = |s: &Value| {
        (
            s["mood"]["phq9"].as_i64().unwrap(),
            s["mood"]["gad7"].as_i64().unwrap(),
        )
    };
    assert_eq!(mood(&sessions[0]), (12, 11));
    assert!(sessions[0]["homework_done"].is_null());
    for (i, life_event) in [(1, 1), (2, 2)] {
        let relief = match sessions[i]["homework_done"].as_str() {
            Some("done") => 2,
            Some("partly") => 1,
            Some("not_done") => 0,
            other => panic!("session {}: homework_done {other:?}", i + 1),
        };
        let (phq9, gad7) = mood(&sessions[i - 1]);
        assert_eq!(
            mood(&sessions[i]),
            (phq9 - relief + life_event, gad7 - relief + life_event)
        );
        let told = sessions[i]["carry_over"]["therapist"].to_string();
        assert!(
            told.contains(&format!(
                "At session {i} the scores were PHQ-9 {phq9}, GAD-7 {gad7}."
            )),
            "{told}"
        );
    }
    let rows = listed(db);
    let stored: Vec<&Value> = rows
        .iter()
        .filter(|r| r["kind"] == "session")
        .map(|r| &r["mood"])
        .collect();
    let printed: Vec<&Value> = sessions.iter().map(|s| &s["mood"]).collect();
    assert_eq!(stored, printed);
}

#[test]
fn a_scripted_course_carries_homework_forward() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("course.db");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        format!("scripted:{}", path.display())
    };
    // Three turns a session: the patient agrees to the homework the
    // therapist sets (a summary keeps only homework the patient agreed to).
    let therapist = write(
        "t.txt",
        "Could you try keeping a sleep diary?\n---\nCould you try walking every morning?\n---\n\
         Let's review how it went.\n",
    );
    let patient = write(
        "p.txt",
        "My sleep is bad.\n---\nOkay, I will.\n---\nI slept a bit better.\n---\n\
         Yes, I can do that.\n---\nI walked twice.\n---\nOkay.\n",
    );
    let summarizer = write(
        "s.txt",
        r#"{"main_topics": ["Sleep"], "techniques": ["Sleep diary"], "helpful": [], "homework": ["Keep a sleep diary"], "insights": []}
---
{"main_topics": ["Morning routine"], "techniques": [], "helpful": [], "homework": ["Walking every morning"], "insights": []}
---
{"main_topics": ["Review"], "techniques": [], "helpful": [], "homework": [], "insights": []}
"#,
    );
    let (code, stdout, stderr) = run(&[
        "course",
        "--persona",
        "alicia-rodriguez",
        "--sessions",
        "3",
        "--max-turns",
        "3",
        "--candidates",
        "1",
        "--no-structure",
        "--therapist-model",
        &therapist,
        "--patient-model",
        &patient,
        "--summarizer-model",
        &summarizer,
        "--json",
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let sessions = sessions(&stdout);
    assert_eq!(sessions.len(), 3);
    mood_carries_forward(&sessions, &db);
    let notes = |i: usize, who: &str| sessions[i]["carry_over"][who].to_string();
    assert_eq!(
        sessions[0]["carry_over"]["therapist"],
        serde_json::json!([])
    );
    assert!(notes(1, "therapist").contains("reviewing the homework: Keep a sleep diary"));
    assert!(notes(1, "patient").contains("Homework from last session: Keep a sleep diary"));
    assert!(
        notes(1, "patient").contains("praised her team"),
        "the life event before session 2"
    );
    assert!(notes(2, "therapist").contains("Session 1 covered: Sleep"));
    assert!(notes(2, "therapist").contains("reviewing the homework: Walking every morning"));
    for (i, s) in sessions.iter().enumerate() {
        assert_eq!(s["session_number"], i + 1);
        assert!(!s["summary"].is_null());
    }

    // The text form: every session parses back on its own.
    let (code, text, _) = run(&[
        "course",
        "--persona",
        "alicia-rodriguez",
        "--sessions",
        "2",
        "--max-turns",
        "2",
        "--candidates",
        "1",
        "--model",
        "scripted",
    ]);
    assert_eq!(code, 0);
    let parts: Vec<&str> = text.split("\nSession Number: ").collect();
    assert_eq!(parts.len(), 2);
    let second = format!("Session Number: {}", parts[1]);
    let parsed = cbtsim::text_format::parse(&second).unwrap();
    assert_eq!(parsed.transcript.session_number, 2);
    assert!(parsed.transcript.summary.is_some());
}

#[test]
fn a_course_on_the_default_model() {
    let _real_model = super::util::real_model();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("course.db");
    let db_arg = db.to_str().unwrap();
    let (code, stdout, stderr) = run(&[
        "course",
        "--persona",
        "kenji-watanabe",
        // Two sessions are enough to show the memory carried over; a third
        // only costs CI minutes.
        "--sessions",
        "2",
        "--max-turns",
        "6",
        "--seed",
        "2",
        "--json",
        "--db",
        db_arg,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let sessions = sessions(&stdout);
    assert_eq!(sessions.len(), 2);
    stored_as_printed(&sessions, db_arg, dir.path());
    for (i, s) in sessions.iter().enumerate() {
        assert!(!s["termination"]["reason"].is_null());
        assert!(
            !s["summary"].is_null(),
            "session {}: {}",
            i + 1,
            s["summary_error"]
        );
        if i > 0 {
            // Session k is told the homework session k-1's summary set.
            let homework: Vec<String> = sessions[i - 1]["summary"]["homework"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap().to_string())
                .collect();
            let told = sessions[i]["carry_over"]["therapist"].to_string();
            let expected = if homework.is_empty() {
                "none was set".to_string()
            } else {
                homework.join("; ")
            };
            assert!(
                told.contains(&expected.replace('"', "\\\"")),
                "{told} lacks {expected}"
            );
        }
    }
}

/// Every session of the course is in the store with its ending, summary and
/// mood, and its text export parses back to what was printed.
fn stored_as_printed(sessions: &[Value], db: &str, dir: &std::path::Path) {
    let rows = listed(db);
    assert_eq!(rows[0]["kind"], "course");
    assert_eq!(rows[0]["session_number"], sessions.len());
    let stored: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "session").collect();
    assert_eq!(stored.len(), sessions.len());
    for (row, printed) in stored.iter().zip(sessions) {
        assert_eq!(row["termination_reason"], printed["termination"]["reason"]);
        assert_eq!(row["turns"], printed["turns"].as_array().unwrap().len());
        assert_eq!(row["mood"], printed["mood"]);
    }

    let out = dir.join("export");
    let (code, _, stderr) = run(&[
        "export",
        "--db",
        db,
        "--course",
        "1",
        "--format",
        "text",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let mut files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), sessions.len());
    for (file, printed) in files.iter().zip(sessions) {
        let (code, parsed, stderr) = run(&["transcript", "parse", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {stderr}", file.display());
        let parsed: Value = serde_json::from_str(&parsed).unwrap();
        let texts = |s: &Value| -> Vec<String> {
            s["turns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["text"].to_string())
                .collect()
        };
        assert_eq!(texts(&parsed), texts(printed), "{}", file.display());
        // The text form has no place for the mark of an extracted summary.
        let mut summary = printed["summary"].clone();
        if let Some(fields) = summary.as_object_mut() {
            fields.remove("extracted");
        }
        assert_eq!(parsed["summary"], summary, "{}", file.display());
        assert_eq!(parsed["session_number"], printed["session_number"]);
    }
}
