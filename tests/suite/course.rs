//! Courses: each session builds on the summaries and homework before it.

use super::util::run;
use serde_json::Value;

fn sessions(stdout: &str) -> Vec<Value> {
    serde_json::from_str(stdout).unwrap()
}

#[test]
fn a_scripted_course_carries_homework_forward() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        format!("scripted:{}", path.display())
    };
    let therapist = write(
        "t.txt",
        "How was the week?\n---\nWhat got in the way?\n---\nLet's plan it.\n",
    );
    let patient = write("p.txt", "Not bad.\n---\nI was tired.\n---\nOkay.\n");
    let summarizer = write(
        "s.txt",
        r#"{"main_topics": ["Sleep"], "techniques": ["Sleep diary"], "helpful": [], "homework": ["Keep a sleep diary"], "insights": []}
---
{"main_topics": ["Morning routine"], "techniques": [], "helpful": [], "homework": ["Walk every morning"], "insights": []}
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
        "2",
        "--candidates",
        "1",
        "--therapist-model",
        &therapist,
        "--patient-model",
        &patient,
        "--summarizer-model",
        &summarizer,
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let sessions = sessions(&stdout);
    assert_eq!(sessions.len(), 3);
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
    assert!(notes(2, "therapist").contains("reviewing the homework: Walk every morning"));
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
    let (code, stdout, stderr) = run(&[
        "course",
        "--persona",
        "kenji-watanabe",
        "--sessions",
        "3",
        "--max-turns",
        "6",
        "--seed",
        "2",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let sessions = sessions(&stdout);
    assert_eq!(sessions.len(), 3);
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
