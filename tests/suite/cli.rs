//! The command line: exact interfaces other tools rely on, exit codes and errors.

use super::util::{data, flawed_session, read, reference_or_skip, run};
use serde_json::Value;
use std::path::Path;

/// `transcript parse FILE` on a 12-turn session that opens with the patient
/// and ends naturally on "take care", checked against the documented JSON;
/// `summary_sizes` are the item counts of the five summary sections.
fn parse_prints_the_documented_json(file: &Path, summary_sizes: [usize; 5]) {
    let (code, stdout, _) = run(&["transcript", "parse", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["session_number"], 1);
    assert_eq!(json["turns"].as_array().unwrap().len(), 12);
    assert_eq!(json["turns"][0]["speaker"], "patient");
    assert_eq!(json["turns"][1]["speaker"], "therapist");
    assert_eq!(json["termination"]["reason"], "Natural Session End");
    assert_eq!(
        json["termination"]["details"],
        r"Detected end phrase: '\btake care\b'"
    );
    let sizes: Vec<usize> = [
        "main_topics",
        "techniques",
        "helpful",
        "homework",
        "insights",
    ]
    .iter()
    .map(|k| json["summary"][k].as_array().unwrap().len())
    .collect();
    assert_eq!(sizes, summary_sizes);
}

#[test]
fn transcript_parse_prints_the_documented_json() {
    let Some(reference) = reference_or_skip("transcript_parse_prints_the_documented_json") else {
        return;
    };
    parse_prints_the_documented_json(&reference, [5, 4, 4, 3, 4]);
}

#[test]
fn transcript_parse_prints_the_documented_json_for_the_flawed_session() {
    // The same check on our own fixture, so it runs from a clone alone.
    parse_prints_the_documented_json(&flawed_session(), [4, 5, 3, 4, 4]);
}

#[test]
fn no_termination_and_no_summary_are_null() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.txt");
    std::fs::write(&file, "Session Number: 2\n\nTherapist: Hello.\n").unwrap();
    let (code, stdout, _) = run(&["transcript", "parse", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["termination"], Value::Null);
    assert_eq!(json["summary"], Value::Null);
}

#[test]
fn parse_then_render_round_trips_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let original = data("transcripts/clean-natural-end.txt");
    let (_, json, _) = run(&["transcript", "parse", original.to_str().unwrap()]);
    let json_file = dir.path().join("t.json");
    std::fs::write(&json_file, json).unwrap();
    let (code, text, _) = run(&["transcript", "render", json_file.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(text, read(&original));
}

/// `transcript lint --json FILE`, which must exit 1: the JSON, and each
/// finding's kind and turn.
fn linted_kinds_and_turns(file: &Path) -> (Value, Vec<(String, Value)>) {
    let (code, stdout, _) = run(&["transcript", "lint", "--json", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    let json: Value = serde_json::from_str(&stdout).unwrap();
    let found = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap().to_string(), f["turn"].clone()))
        .collect();
    (json, found)
}

#[test]
fn lint_reports_the_reference_defects_and_exits_1() {
    let Some(reference) = reference_or_skip("lint_reports_the_reference_defects_and_exits_1")
    else {
        return;
    };
    let (code, stdout, _) = run(&["transcript", "lint", reference.to_str().unwrap()]);
    assert_eq!(code, 1);
    insta::assert_snapshot!(stdout);

    let (json, found) = linted_kinds_and_turns(&reference);
    assert_eq!(
        found,
        vec![
            ("truncated_turn".to_string(), Value::from(9)),
            ("placeholder".to_string(), Value::from(12)),
            ("stage_direction".to_string(), Value::from(12)),
            ("duplicate_header".to_string(), Value::Null),
        ]
    );
    assert_eq!(json["findings"][1]["excerpt"], "[insert time and date]");
}

#[test]
fn lint_reports_the_flawed_session_defects_and_exits_1() {
    // Spelled out rather than snapshotted: each line is a defect written into
    // the fixture on purpose (see util::flawed_session).
    let (code, stdout, _) = run(&["transcript", "lint", flawed_session().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        stdout,
        concat!(
            "turn 7: truncated_turn: \"...core, and I end up telling him everything is fine and then I\"\n",
            "turn 10: stage_direction: \"(Nova pauses, giving Greta a moment with that thought before going on.)\"\n",
            "turn 12: placeholder: \"[insert date and time]\"\n",
            "duplicate_header: \"Session Summary:\"\n",
        )
    );

    let (json, found) = linted_kinds_and_turns(&flawed_session());
    assert_eq!(
        found,
        vec![
            ("truncated_turn".to_string(), Value::from(7)),
            ("stage_direction".to_string(), Value::from(10)),
            ("placeholder".to_string(), Value::from(12)),
            ("duplicate_header".to_string(), Value::Null),
        ]
    );
    assert_eq!(json["findings"][2]["excerpt"], "[insert date and time]");
}

#[test]
fn lint_exits_0_on_a_clean_file_and_reads_json_too() {
    let clean = data("transcripts/clean-natural-end.txt");
    let (code, stdout, _) = run(&["transcript", "lint", clean.to_str().unwrap()]);
    assert_eq!((code, stdout.as_str()), (0, ""));

    let dir = tempfile::tempdir().unwrap();
    let json_file = dir.path().join("leak.json");
    std::fs::write(
        &json_file,
        r#"{"session_number": 1, "turns": [
            {"speaker": "patient", "text": "Hi.\nTherapist: Welcome."}]}"#,
    )
    .unwrap();
    let (code, stdout, _) = run(&["transcript", "lint", "--json", json_file.to_str().unwrap()]);
    assert_eq!(code, 1);
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["findings"][0]["kind"], "role_leak");
}

#[test]
fn errors_name_the_file_and_line_and_exit_2() {
    let (code, stdout, stderr) = run(&["transcript", "lint", "no/such/file.txt"]);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert!(stderr.contains("no/such/file.txt"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "Session Number: 1\n\nNova: hello\n").unwrap();
    for command in ["parse", "lint"] {
        let (code, _, stderr) = run(&["transcript", command, bad.to_str().unwrap()]);
        assert_eq!(code, 2);
        assert!(stderr.contains("bad.txt"), "{stderr}");
        assert!(stderr.contains("line 3"), "{stderr}");
    }
    let (code, _, stderr) = run(&["transcript", "render", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a JSON transcript"), "{stderr}");
}

#[test]
fn persona_list_json_has_the_documented_fields() {
    let (code, stdout, _) = run(&["persona", "list", "--json"]);
    assert_eq!(code, 0);
    let rows: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert!(rows.len() >= 8);
    for row in &rows {
        for key in ["id", "name", "problems", "style", "risk"] {
            assert!(!row[key].is_null(), "{key} in {row}");
        }
    }
    assert!(rows.iter().any(|r| r["id"] == "alicia-rodriguez"));
}

#[test]
fn persona_show_by_id_and_by_file() {
    let (code, stdout, _) = run(&["persona", "show", "alicia-rodriguez"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("Alicia Rodriguez (alicia-rodriguez), 29, she/her"));
    assert!(stdout.contains("Risk: none"));

    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("personas/samuel-okafor.toml");
    let (code, stdout, _) = run(&["persona", "show", "--json", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["risk"]["level"], "high");
    assert_eq!(json["risk"]["disclosure"], "after_trust");

    let (code, _, stderr) = run(&["persona", "show", "nobody-here"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("nobody-here"), "{stderr}");
    assert!(
        stderr.contains("alicia-rodriguez"),
        "lists the library ids: {stderr}"
    );
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["transcript", "--help"],
        vec!["transcript", "parse", "--help"],
        vec!["transcript", "render", "--help"],
        vec!["transcript", "lint", "--help"],
        vec!["persona", "--help"],
        vec!["persona", "list", "--help"],
        vec!["persona", "show", "--help"],
        vec!["persona", "check", "--help"],
    ] {
        let (code, stdout, _) = run(&args);
        assert_eq!(code, 0, "{args:?}");
        assert!(stdout.contains("Usage:"), "{args:?}");
    }
}
