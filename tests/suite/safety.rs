//! The crisis detector on the labelled set, and `cbtsim safety check`.

use super::util::{cbtsim, data, read};
use cbtsim::RiskLevel;
use cbtsim::safety::{self, Category};

struct Labelled {
    risk: bool,
    category: String,
    text: String,
}

fn labelled(file: &str) -> Vec<Labelled> {
    read(&data(file))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            let label = fields.next().unwrap();
            Labelled {
                risk: label == "risk",
                category: fields.next().unwrap().to_string(),
                text: fields.next().unwrap().to_string(),
            }
        })
        .collect()
}

/// Recall, false-positive rate and the misses of the detector on a set.
struct Scores {
    recall: f64,
    false_positive_rate: f64,
    missed: Vec<String>,
    false_alarms: Vec<String>,
}

fn score(name: &str, set: &[Labelled]) -> Scores {
    let risky: Vec<&Labelled> = set.iter().filter(|l| l.risk).collect();
    let safe: Vec<&Labelled> = set.iter().filter(|l| !l.risk).collect();
    let mut missed = Vec::new();
    let mut false_alarms = Vec::new();
    let mut category_right = 0;
    for item in set {
        let d = safety::detect(&item.text);
        match (item.risk, d.flagged) {
            (true, false) => missed.push(item.text.clone()),
            (false, true) => false_alarms.push(format!("{} ({:?})", item.text, d.matches)),
            (true, true) if d.category.as_str() == item.category => category_right += 1,
            _ => {}
        }
    }
    let recall = 1.0 - missed.len() as f64 / risky.len() as f64;
    let false_positive_rate = false_alarms.len() as f64 / safe.len() as f64;
    println!(
        "crisis detector on {name}: recall {:.3} ({} of {}), false-positive rate {:.3} ({} of {}), category right {} of {}",
        recall,
        risky.len() - missed.len(),
        risky.len(),
        false_positive_rate,
        false_alarms.len(),
        safe.len(),
        category_right,
        risky.len()
    );
    println!("missed: {missed:#?}\nfalse alarms: {false_alarms:#?}");
    Scores {
        recall,
        false_positive_rate,
        missed,
        false_alarms,
    }
}

#[test]
fn recall_and_false_positives_on_the_labelled_set() {
    let set = labelled("crisis/labelled.tsv");
    assert!(set.iter().filter(|l| l.risk).count() >= 40);
    assert!(set.iter().filter(|l| !l.risk).count() >= 40);
    let s = score("labelled.tsv", &set);
    assert!(s.recall >= 0.95, "missed {:#?}", s.missed);
    assert!(
        s.false_positive_rate <= 0.05,
        "false alarms {:#?}",
        s.false_alarms
    );
}

#[test]
fn recall_and_false_positives_on_the_held_out_set() {
    // Seen while generalising the rules (see the file's header).
    let set = labelled("crisis/heldout.tsv");
    let s = score("heldout.tsv", &set);
    assert!(s.recall >= 0.9, "missed {:#?}", s.missed);
    assert!(
        s.false_positive_rate <= 0.1,
        "false alarms {:#?}",
        s.false_alarms
    );
}

#[test]
fn recall_and_false_positives_on_the_blind_set() {
    // Written after the last change to the rules: the figures to quote.
    let set = labelled("crisis/heldout2.tsv");
    let s = score("heldout2.tsv", &set);
    assert!(s.recall >= 0.7, "missed {:#?}", s.missed);
    assert!(
        s.false_positive_rate <= 0.2,
        "false alarms {:#?}",
        s.false_alarms
    );
}

#[test]
fn imminent_risk_needs_a_decision_or_a_time() {
    let d = safety::detect("I'm going to end it tonight, I've made up my mind.");
    assert_eq!(
        (d.category, d.level),
        (Category::Intent, RiskLevel::Imminent)
    );
    let d = safety::detect("I've been thinking about suicide a lot lately.");
    assert_eq!(
        (d.category, d.level),
        (Category::ActiveIdeation, RiskLevel::High)
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
