//! The crisis detector on the labelled set, and `cbtsim safety check`.

use super::util::cbtsim;
use cbtsim::RiskLevel;
use cbtsim::safety::{self, Category};

#[test]
fn imminent_risk_needs_a_decision_or_a_time() {
    let d = safety::detect("I'm going to end it tonight, I've made up my mind.");
    assert_eq!(
        (d.category, d.level),
        (Category::SuicidalIntent, RiskLevel::Imminent)
    );
    let d = safety::detect("I've been thinking about suicide a lot lately.");
    assert_eq!(
        (d.category, d.level),
        (Category::SuicidalThoughts, RiskLevel::High)
    );
}

#[test]
fn the_protocol_gives_the_locale_resources() {
    let us = safety::resources_for("us").unwrap();
    let text = safety::resources_text(&us);
    assert!(text.contains("988") && text.contains("911"), "{text}");
    let gb = safety::resources_for("GB").unwrap();
    assert!(safety::resources_text(&gb).contains("116 123"));
    let d = safety::detect("I want to kill myself.");
    let instruction = safety::protocol_instruction(&d, &us);
    assert!(instruction.contains("988"));
    assert!(instruction.contains("safe right now"));
    assert!(safety::resources_for("XX").is_none());
}

#[test]
fn safety_check_prints_one_json_object_per_line() {
    let output = cbtsim()
        .args(["safety", "check"])
        .write_stdin("This deadline is killing me.\nI've been saving up my pills and I'll take them tonight.\n\nMy husband hits me.\n")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "blank lines are skipped");
    assert_eq!(lines[0]["flagged"], false);
    assert_eq!(lines[0]["category"], "none");
    assert_eq!(lines[0]["level"], "none");
    assert_eq!(lines[0]["text"], "This deadline is killing me.");
    assert_eq!(lines[1]["flagged"], true);
    assert_eq!(lines[1]["level"], "imminent");
    assert_eq!(lines[2]["category"], "abuse");
}
