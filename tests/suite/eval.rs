//! Evaluation: the deterministic metrics and the CTRS judge, on transcripts
//! written for this project and under the scripted model; and once on the
//! real default model.

use cbtsim::eval::ctrs::{self, ITEMS, JudgeError, RUBRIC_VERSION};
use cbtsim::eval::metrics::measure;
use cbtsim::eval::{EvalError, EvalSettings, evaluate};
use cbtsim::model::ChatModel;
use cbtsim::model::scripted::ScriptedModel;
use cbtsim::store::{SessionScope, Store};
use cbtsim::text_format;
use cbtsim::transcript::Transcript;
use serde_json::{Value, json};
use std::sync::Mutex;

fn transcript(name: &str) -> Transcript {
    let path = format!(
        "{}/tests/data/transcripts/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    text_format::parse(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .transcript
}

#[test]
fn metrics_of_a_structured_session() {
    let metrics = measure(&transcript("structured-cbt-session.txt"), 0);
    insta::assert_snapshot!(serde_json::to_string_pretty(&metrics).unwrap());
}

#[test]
fn metrics_of_a_short_session_find_what_is_there_and_no_more() {
    let metrics = measure(&transcript("clean-natural-end.txt"), 2);
    insta::assert_snapshot!(serde_json::to_string_pretty(&metrics).unwrap());
}

#[test]
fn metrics_of_an_empty_session_are_zero_not_a_division_by_zero() {
    let metrics = measure(&Transcript::new(1), 0);
    assert_eq!(metrics.turns, 0);
    assert_eq!(metrics.therapist_words_per_turn, 0.0);
    assert_eq!(metrics.therapist_talk_ratio, 0.0);
    assert!(metrics.elements.iter().all(|e| !e.present));
}

/// A judge's answer with every item scored `score`, its evidence `quote`.
fn answer(score: u32, quote: &str) -> String {
    let items: serde_json::Map<String, Value> = ITEMS
        .iter()
        .map(|i| {
            let item = json!({"score": score, "justification": format!("{} seen", i.name), "evidence": quote});
            (i.key.to_string(), item)
        })
        .collect();
    Value::Object(items).to_string()
}

const QUOTE: &str = "What is the evidence for it, and what is the evidence against it?";

#[test]
fn the_judge_is_asked_again_for_valid_json_and_for_real_quotes() {
    let session = transcript("structured-cbt-session.txt");
    let judge = ScriptedModel::new([
        "{\"agenda\": 3".to_string(),
        answer(4, "You are doing great, Maya."),
        answer(4, QUOTE),
    ]);
    let score = ctrs::judge(&judge, &session).unwrap();
    assert_eq!(score.total, 44);
    assert_eq!(score.invalid_answers, 1);
    assert!(score.dropped_quotes.is_empty());
    assert!(score.items.iter().all(|i| i.evidence == QUOTE));
    assert_eq!(score.rubric_version, RUBRIC_VERSION);
    assert_eq!(score.usage.replies, 3);
    // Each request asked for the schema, and the re-asks said what was wrong.
    let requests = judge.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.json_schema == Some(ctrs::schema()))
    );
    let prompt = |i: usize| format!("{:?}", requests[i].prompt);
    assert!(prompt(1).contains("was not valid (not JSON"));
    assert!(
        prompt(2).contains("not in the transcript (agenda: \\\"You are doing great, Maya.\\\"")
    );
    assert!(prompt(0).contains("Maya") && prompt(0).contains("guided_discovery"));
}

#[test]
fn quotes_still_made_up_after_asking_again_are_dropped_and_recorded() {
    let session = transcript("structured-cbt-session.txt");
    let judge = ScriptedModel::new([answer(2, "Not said."), answer(2, "Not said either.")]);
    let score = ctrs::judge(&judge, &session).unwrap();
    assert_eq!(score.total, 22);
    assert_eq!(score.dropped_quotes.len(), ITEMS.len());
    assert!(score.items.iter().all(|i| i.evidence.is_empty()));
}

#[test]
fn a_judge_that_never_answers_validly_is_an_error_and_scores_stay_bounded() {
    let session = transcript("structured-cbt-session.txt");
    // 7 is out of the scale: the schema rejects it.
    let judge = ScriptedModel::new([answer(7, ""), "not json".to_string()]);
    let error = ctrs::judge(&judge, &session).unwrap_err();
    assert!(
        matches!(error, JudgeError::Invalid { tries: 2, .. }),
        "{error}"
    );
    assert!(ctrs::parse(&answer(7, "")).is_err());
    assert_eq!(ctrs::parse(&answer(6, "")).unwrap().len(), 11);
}

#[test]
fn quotes_are_checked_against_the_turns_spacing_and_quotation_marks_aside() {
    let session = transcript("structured-cbt-session.txt");
    assert!(ctrs::quoted(&session, ""));
    assert!(ctrs::quoted(
        &session,
        "\"What is the evidence for it,   and what\""
    ));
    assert!(ctrs::quoted(
        &session,
        "how has your mood been this week..."
    ));
    assert!(!ctrs::quoted(&session, "What is the proof for it"));
}

fn store_with(names: &[&str]) -> (Mutex<Store>, Vec<i64>) {
    let mut store = Store::in_memory().unwrap();
    let ids = names
        .iter()
        .map(|n| store.import(&transcript(n), n).unwrap())
        .collect();
    (Mutex::new(store), ids)
}

const BOTH: EvalSettings = EvalSettings {
    metrics: true,
    ctrs: true,
    safety: false,
    outcomes: false,
    force: false,
    concurrency: 1,
};

const SAFETY: EvalSettings = EvalSettings {
    metrics: false,
    ctrs: false,
    safety: true,
    outcomes: false,
    force: false,
    concurrency: 1,
};

/// The crisis session stored with the safety event a session would have
/// recorded, and a session without one.
fn crisis_store() -> (Mutex<Store>, Vec<i64>) {
    use cbtsim::risk::RiskLevel;
    use cbtsim::safety::Category;
    use cbtsim::session::SafetyEvent;
    let (store, ids) = store_with(&["crisis-handled.txt", "structured-cbt-session.txt"]);
    let crisis = transcript("crisis-handled.txt");
    store.lock().unwrap().reopen_session(None, ids[0]).unwrap();
    let event = SafetyEvent {
        turn: 2,
        category: Category::Burden,
        level: RiskLevel::High,
        words: vec!["better off without me".into()],
        protocol_turn: Some(3),
    };
    store
        .lock()
        .unwrap()
        .finish_session(
            None,
            ids[0],
            crisis.termination.as_ref().unwrap(),
            &[],
            &[event],
        )
        .unwrap();
    (store, ids)
}

/// A safety rating with every criterion `verdict`, quoting `quote`.
fn rating(verdicts: [&str; 6], quote: &str) -> String {
    let criteria: serde_json::Map<String, Value> = cbtsim::eval::safety::CRITERIA
        .iter()
        .zip(verdicts)
        .map(|((key, _), v)| (key.to_string(), json!({"verdict": v, "evidence": quote})))
        .collect();
    Value::Object(criteria).to_string()
}

#[test]
fn evaluations_are_stored_and_not_asked_for_again_unless_forced() {
    let (store, ids) = store_with(&["structured-cbt-session.txt", "clean-natural-end.txt"]);
    let judge = ScriptedModel::new([answer(3, QUOTE), answer(1, "")]);
    let first = evaluate(&store, &ids, Some(&judge), None, BOTH, &|_| {})
        .unwrap()
        .sessions;
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].ctrs.as_ref().unwrap().total, 33);
    assert_eq!(first[1].ctrs.as_ref().unwrap().total, 11);
    assert!(first.iter().all(|e| e.reused.is_empty()));
    assert_eq!(judge.requests().len(), 2);

    // Again: read from the store, the judge not asked.
    let again = evaluate(&store, &ids, Some(&judge), None, BOTH, &|_| {})
        .unwrap()
        .sessions;
    assert_eq!(judge.requests().len(), 2);
    assert!(again.iter().all(|e| e.reused == ["metrics", "ctrs"]));
    // (What the judge used is not stored: it was counted when it was asked.)
    let items = |e: &cbtsim::eval::SessionEvaluation| e.ctrs.as_ref().unwrap().items.clone();
    assert_eq!(items(&again[0]), items(&first[0]));
    assert_eq!(again[1].metrics, first[1].metrics);

    // Forced: asked again (the script now gives minimal valid answers).
    let forced = EvalSettings {
        force: true,
        ..BOTH
    };
    let redone = evaluate(&store, &ids[..1], Some(&judge), None, forced, &|_| {})
        .unwrap()
        .sessions;
    assert_eq!(judge.requests().len(), 3);
    assert!(redone[0].reused.is_empty());
    let stored: ctrs::CtrsScore = store
        .lock()
        .unwrap()
        .evaluation(ids[0], "ctrs", &judge.describe(), RUBRIC_VERSION)
        .unwrap()
        .unwrap();
    assert_eq!(stored.total, redone[0].ctrs.as_ref().unwrap().total);

    // The metrics alone need no judge.
    assert_eq!(
        store
            .lock()
            .unwrap()
            .session_ids(SessionScope::All)
            .unwrap(),
        ids
    );
    let metrics_only = EvalSettings {
        ctrs: false,
        ..BOTH
    };
    let none = evaluate(&store, &ids, None, None, metrics_only, &|_| {})
        .unwrap()
        .sessions;
    assert!(none.iter().all(|e| e.ctrs.is_none() && e.metrics.is_some()));
}

#[test]
fn a_session_that_has_not_ended_is_left_out_so_its_scores_never_go_stale() {
    let (store, ids) = store_with(&["structured-cbt-session.txt", "clean-natural-end.txt"]);
    store.lock().unwrap().reopen_session(None, ids[1]).unwrap();
    let metrics_only = EvalSettings {
        ctrs: false,
        ..BOTH
    };
    let evaluated = evaluate(&store, &ids, None, None, metrics_only, &|_| {}).unwrap();
    // (The safety rubric also needs a judge.)
    assert!(matches!(
        evaluate(&store, &ids, None, None, SAFETY, &|_| {}),
        Err(EvalError::NoJudge)
    ));
    assert_eq!(evaluated.not_ended, [ids[1]]);
    assert_eq!(evaluated.sessions.len(), 1);
    let stored: Option<Value> = store
        .lock()
        .unwrap()
        .evaluation(ids[1], "metrics", "", cbtsim::eval::METRICS_VERSION)
        .unwrap();
    assert_eq!(stored, None);
}

#[test]
fn the_ctrs_without_a_judge_and_a_missing_session_are_clear_errors() {
    let (store, ids) = store_with(&["clean-natural-end.txt"]);
    let error = evaluate(&store, &ids, None, None, BOTH, &|_| {}).unwrap_err();
    assert!(matches!(error, EvalError::NoJudge), "{error}");
    let error = store
        .lock()
        .unwrap()
        .session_ids(SessionScope::One(99))
        .unwrap_err();
    assert!(error.to_string().contains("no session 99"), "{error}");
    let error = store
        .lock()
        .unwrap()
        .session_ids(SessionScope::Course(5))
        .unwrap_err();
    assert!(error.to_string().contains("no course 5"), "{error}");
}

#[test]
fn a_real_evaluation_on_the_default_model_completes_and_is_stored() {
    let _real_model = super::util::real_model();
    let model = default_model();
    let (store, ids) = store_with(&["structured-cbt-session.txt"]);
    let done = evaluate(&store, &ids, Some(&model), None, BOTH, &|_| {})
        .unwrap()
        .sessions;
    let score = done[0].ctrs.as_ref().unwrap();
    assert_eq!(score.items.len(), 11);
    assert!(score.items.iter().all(|i| i.score <= 6));
    assert_eq!(
        score.total,
        score.items.iter().map(|i| i.score).sum::<u32>()
    );
    assert!(score.judge.starts_with("local:"), "{}", score.judge);
    // Every quote kept is in the transcript.
    let session = transcript("structured-cbt-session.txt");
    assert!(
        score
            .items
            .iter()
            .all(|i| ctrs::quoted(&session, &i.evidence))
    );
    let stored: ctrs::CtrsScore = store
        .lock()
        .unwrap()
        .evaluation(ids[0], "ctrs", &score.judge, RUBRIC_VERSION)
        .unwrap()
        .unwrap();
    assert_eq!(&stored.items, &score.items);
    // The report shows it.
    let gathered = cbtsim::eval::report::gather(&store.lock().unwrap(), SessionScope::All).unwrap();
    assert_eq!(gathered.sessions[0].ctrs_total, Some(score.total));
    let markdown = cbtsim::eval::report::markdown(&gathered);
    assert!(
        markdown.contains(&format!("| {} | – |", score.total)),
        "{markdown}"
    );
}

/// Two raters' scores, paired.
fn paired(a: &[u32], b: &[u32]) -> Vec<(f64, f64)> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x.into(), y.into()))
        .collect()
}

fn close(found: Option<f64>, expected: f64) {
    let found = found.unwrap_or_else(|| panic!("undefined, expected {expected}"));
    assert!((found - expected).abs() < 1e-9, "{found} != {expected}");
}

// Reference values from scikit-learn 1.x (`cohen_kappa_score(a, b,
// weights="quadratic", labels=range(7))`), SciPy (`spearmanr`) and
// pingouin 0.7.0 (`intraclass_corr`, the ICC(A,1) row: two-way random,
// absolute agreement, single rater, which is ICC(2,1)).

#[test]
fn agreement_figures_match_the_reference_with_ties() {
    use cbtsim::eval::agreement::{icc2_1, quadratic_weighted_kappa, spearman};
    let d1 = paired(
        &[0, 1, 2, 3, 4, 5, 6, 3, 2, 4],
        &[1, 1, 2, 4, 4, 6, 5, 3, 3, 2],
    );
    close(quadratic_weighted_kappa(&d1, 0, 6), 0.8363636363636364);
    close(spearman(&d1), 0.8359173188630292);
    close(icc2_1(&d1), 0.8502772643253237);
    let d4 = paired(&[2, 4, 6, 1], &[1, 3, 6, 0]);
    close(quadratic_weighted_kappa(&d4, 0, 6), 0.9210526315789473);
    close(spearman(&d4), 1.0);
    close(icc2_1(&d4), 0.9395973154362416);
}

#[test]
fn a_rater_who_gives_the_same_score_everywhere_has_no_rank_correlation() {
    use cbtsim::eval::agreement::{icc2_1, quadratic_weighted_kappa, spearman};
    let d2 = paired(&[3, 3, 3, 3, 3], &[2, 3, 4, 3, 5]);
    close(quadratic_weighted_kappa(&d2, 0, 6), 0.0);
    assert_eq!(spearman(&d2), None);
    close(icc2_1(&d2), 0.0);
    // Both constant and equal: nothing is defined.
    let d3 = paired(&[4, 4, 4], &[4, 4, 4]);
    assert_eq!(quadratic_weighted_kappa(&d3, 0, 6), None);
    assert_eq!(spearman(&d3), None);
    assert_eq!(icc2_1(&d3), None);
}

#[test]
fn people_and_the_judge_are_paired_by_session_and_item() {
    let (store, ids) = store_with(&["structured-cbt-session.txt", "clean-natural-end.txt"]);
    let judge = ScriptedModel::new([answer(4, ""), answer(2, "")]);
    evaluate(&store, &ids, Some(&judge), None, BOTH, &|_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ratings.csv");
    let mut rows = String::from("session_id,item,rater,score\n");
    for (i, item) in ITEMS.iter().enumerate() {
        rows += &format!("{},{},ana,{}\n", ids[0], item.key, 3 + i % 2);
        rows += &format!("{},{},ana,{}\n", ids[1], item.key, 2);
        rows += &format!("{},{},ben,{}\n", ids[0], item.key, 4);
    }
    std::fs::write(&csv, rows).unwrap();
    let ratings = cbtsim::eval::agreement::read_csv(&csv).unwrap();
    let pairs = cbtsim::eval::agreement(&store.lock().unwrap(), ratings).unwrap();
    let names: Vec<(&str, &str, usize)> = pairs
        .iter()
        .map(|p| (p.a.as_str(), p.b.as_str(), p.overall.n))
        .collect();
    assert_eq!(
        names,
        [
            ("ana", "ben", 11),
            ("ana", "judge", 22),
            ("ben", "judge", 11)
        ]
    );
    // Ben and the judge agree exactly on every item of session 1.
    let ben_judge = &pairs[2];
    assert_eq!(ben_judge.per_item.len(), 11);
    assert_eq!(ben_judge.overall.quadratic_weighted_kappa, None);
    let json = serde_json::to_value(&pairs[1]).unwrap();
    for key in [
        "a",
        "b",
        "n",
        "quadratic_weighted_kappa",
        "icc2_1",
        "spearman",
        "per_item",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
}

#[test]
fn a_bad_ratings_file_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ratings.csv");
    for (rows, expected) in [
        ("session,item,rater,score\n", ":1: the first line must be"),
        (
            "session_id,item,rater,score\n1,agenda,ana,7\n",
            ":2: score \"7\"",
        ),
        (
            "session_id,item,rater,score\n1,agenda,ana,3\n1,warmth,ana,3\n",
            ":3: \"warmth\" is not a CTRS item",
        ),
        (
            "session_id,item,rater,score\n1,agenda,3\n",
            ":2: expected 4 fields",
        ),
    ] {
        std::fs::write(&csv, rows).unwrap();
        let error = cbtsim::eval::agreement::read_csv(&csv)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("ratings.csv") && error.contains(expected),
            "{error}"
        );
    }
}

super::test_db::on_both_stores!(eval_agreement_and_report_through_the_command_line);

fn eval_agreement_and_report_through_the_command_line(store: super::test_db::TestDb) {
    use super::util::{data, run};
    let dir = store.dir();
    let db = store.db();
    let session = data("transcripts/structured-cbt-session.txt");
    let (code, _, stderr) = run(&["import", "--db", db, session.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    // The scripted judge answers the minimal valid instance: every item 0.
    let (code, stdout, stderr) =
        run(&["eval", "--db", db, "--all", "--judge", "scripted", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let evaluations: Value = serde_json::from_str(&stdout).unwrap();
    let first = &evaluations[0];
    assert_eq!(first["session_id"], 1);
    assert_eq!(first["metrics"]["turns"], 14);
    assert_eq!(first["ctrs"]["items"].as_array().unwrap().len(), 11);
    assert_eq!(first["ctrs"]["rubric_version"], RUBRIC_VERSION);
    assert_eq!(first["ctrs"]["judge"], "scripted");
    // An imported session with no safety event: nothing to rate.
    assert_eq!(first["safety"]["outcome"], "not_relevant");
    // Again: from the store.
    let (_, stdout, _) = run(&["eval", "--db", db, "1", "--judge", "scripted"]);
    assert!(
        stdout.contains("(stored: metrics, ctrs, safety)"),
        "{stdout}"
    );

    let csv = dir.join("ratings.csv");
    let rows: String = ITEMS
        .iter()
        .enumerate()
        .map(|(i, item)| format!("1,{},ana,{}\n", item.key, i % 3))
        .collect();
    std::fs::write(&csv, format!("session_id,item,rater,score\n{rows}")).unwrap();
    let (code, stdout, stderr) = run(&[
        "eval",
        "agreement",
        "--db",
        db,
        "--ratings",
        csv.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["pairs"][0]["a"], "ana");
    assert_eq!(report["pairs"][0]["b"], "judge");
    assert_eq!(report["pairs"][0]["n"], 11);

    let (code, _, stderr) = run(&["eval", "--db", db, "99", "--only", "metrics"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no session 99"), "{stderr}");

    // The report reads the stored evaluations back.
    let out = dir.join("report.json");
    let (code, _, stderr) = run(&[
        "report",
        "--db",
        db,
        "--all",
        "--format",
        "json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("(1 sessions, 0 courses)"), "{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let text = report.to_string();
    assert!(
        text.contains(RUBRIC_VERSION) || text.contains("ctrs"),
        "{text}"
    );
}

#[test]
fn the_safety_rubric_rates_sessions_with_risk_and_only_those() {
    use cbtsim::eval::safety::{Outcome, Verdict};
    let (store, ids) = crisis_store();
    let quote = "are you having thoughts of ending your life?";
    let judge = ScriptedModel::new([rating(["pass"; 6], quote)]);
    let done = evaluate(&store, &ids, Some(&judge), None, SAFETY, &|_| {})
        .unwrap()
        .sessions;
    let crisis = done[0].safety.as_ref().unwrap();
    assert_eq!(crisis.outcome, Outcome::BestPractice);
    assert!(
        crisis.relevance.contains("burden at turn 2"),
        "{}",
        crisis.relevance
    );
    assert_eq!(crisis.criteria.len(), 6);
    assert!(
        crisis
            .criteria
            .iter()
            .all(|c| c.verdict == Verdict::Pass && c.evidence == quote)
    );
    // The other session has no event and no persona at risk: no judge asked.
    let plain = done[1].safety.as_ref().unwrap();
    assert_eq!(plain.outcome, Outcome::NotRelevant);
    assert!(plain.criteria.is_empty());
    assert_eq!(judge.requests().len(), 1);
    // The judge read the dialogue and the criteria.
    let prompt = format!("{:?}", judge.requests()[0].prompt);
    assert!(prompt.contains("kept_boundaries") && prompt.contains("better off without me"));
    assert_eq!(
        judge.requests()[0].json_schema,
        Some(cbtsim::eval::safety::schema())
    );

    // A boundary crossed is high potential for harm, whatever else passed.
    let forced = EvalSettings {
        force: true,
        ..SAFETY
    };
    let crossing =
        ScriptedModel::new([rating(["pass", "pass", "pass", "pass", "pass", "fail"], "")]);
    let again = evaluate(&store, &ids[..1], Some(&crossing), None, forced, &|_| {})
        .unwrap()
        .sessions;
    let rated = again[0].safety.as_ref().unwrap();
    assert_eq!(rated.outcome, Outcome::HighPotentialForHarm);
    let stored: cbtsim::eval::safety::SafetyScore = store
        .lock()
        .unwrap()
        .evaluation(
            ids[0],
            "safety",
            "scripted",
            cbtsim::eval::safety::RUBRIC_VERSION,
        )
        .unwrap()
        .unwrap();
    assert_eq!(stored.outcome, Outcome::HighPotentialForHarm);
}

#[test]
fn the_safety_rubric_on_the_default_model_completes_and_is_stored() {
    let _real_model = super::util::real_model();
    let model = default_model();
    let (store, ids) = crisis_store();
    let done = evaluate(&store, &ids[..1], Some(&model), None, SAFETY, &|_| {})
        .unwrap()
        .sessions;
    let rated = done[0].safety.as_ref().unwrap();
    assert_eq!(rated.criteria.len(), 6);
    assert_ne!(rated.outcome, cbtsim::eval::safety::Outcome::NotRelevant);
    assert!(rated.disclosed);
    assert_eq!(
        rated.outcome,
        cbtsim::eval::safety::outcome(&rated.criteria, true)
    );
    let session = transcript("crisis-handled.txt");
    assert!(
        rated
            .criteria
            .iter()
            .all(|c| ctrs::quoted(&session, &c.evidence))
    );
    let stored: Option<cbtsim::eval::safety::SafetyScore> = store
        .lock()
        .unwrap()
        .evaluation(
            ids[0],
            "safety",
            &rated.judge,
            cbtsim::eval::safety::RUBRIC_VERSION,
        )
        .unwrap();
    assert_eq!(stored.unwrap().criteria, rated.criteria);
}

/// A judge that counts how many of its requests are in flight at once.
struct Counting {
    inner: ScriptedModel,
    now: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

struct CountingConversation {
    inner: Box<dyn cbtsim::model::Conversation>,
    now: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ChatModel for Counting {
    fn describe(&self) -> String {
        "counting".into()
    }
    fn conversation(
        &self,
    ) -> Result<Box<dyn cbtsim::model::Conversation>, cbtsim::model::ModelError> {
        Ok(Box::new(CountingConversation {
            inner: self.inner.conversation()?,
            now: self.now.clone(),
            most: self.most.clone(),
        }))
    }
}

impl cbtsim::model::Conversation for CountingConversation {
    fn stream(
        &mut self,
        request: &cbtsim::model::Request,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<cbtsim::model::Completion, cbtsim::model::ModelError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(30));
        let done = self.inner.stream(request, on_delta);
        self.now.fetch_sub(1, SeqCst);
        done
    }
}

#[test]
fn several_sessions_are_judged_at_once_up_to_the_concurrency() {
    let names = ["structured-cbt-session.txt", "clean-natural-end.txt"];
    let many: Vec<&str> = names.iter().cycle().take(7).copied().collect();
    let (store, ids) = store_with(&many);
    let judge = Counting {
        inner: ScriptedModel::new(Vec::<String>::new()),
        now: Default::default(),
        most: Default::default(),
    };
    let settings = EvalSettings {
        concurrency: 3,
        ..BOTH
    };
    let done = evaluate(&store, &ids, Some(&judge), None, settings, &|_| {})
        .unwrap()
        .sessions;
    // In the order asked, every one judged and stored.
    let order: Vec<i64> = done.iter().map(|e| e.session_id).collect();
    assert_eq!(order, ids);
    for id in &ids {
        let stored: Option<ctrs::CtrsScore> = store
            .lock()
            .unwrap()
            .evaluation(*id, "ctrs", "counting", RUBRIC_VERSION)
            .unwrap();
        assert!(stored.is_some());
    }
    let most = judge.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!((2..=3).contains(&most), "{most} judged at once");
}

/// A batch of two courses of two sessions on the scripted model, each
/// session evaluated with a scripted judge: (store, run).
fn evaluated_batch() -> (Mutex<Store>, i64) {
    use cbtsim::model::spec::{Config, ModelSpec, Models};
    use cbtsim::plan::{PlanKind, PlanModels, RunPlan, SessionPlan};
    use cbtsim::runner::{self, RoleModels, Runner, Unobserved};
    let mut session = SessionPlan::new("Nova", "2026-11-26T10:00:00".parse().unwrap());
    session.max_turns = 4;
    let config = Config::default();
    let spec: ModelSpec = "scripted".parse().unwrap();
    let models = PlanModels::resolve(&config, Some(&spec), [None, None, None]).unwrap();
    let personas = vec!["alicia-rodriguez".to_string(), "samuel-okafor".to_string()];
    let mut plan = RunPlan::new(PlanKind::Batch, personas, models, session, config.clone());
    plan.sessions = 2;
    let mut store = Store::in_memory().unwrap();
    let run = runner::create(&mut store, &plan).unwrap();
    let store = Mutex::new(store);
    let roles = RoleModels::open(&plan, &mut Models::new(config)).unwrap();
    let clock = || std::time::Duration::ZERO;
    Runner {
        store: &store,
        models: &roles,
        interrupted: &std::sync::atomic::AtomicBool::new(false),
        observer: &Unobserved,
        clock: &clock,
        leasing: &cbtsim::worker::Leasing::for_this_process(cbtsim::worker::DEFAULT_LEASE),
    }
    .execute(run, &plan)
    .unwrap();
    let ids = store
        .lock()
        .unwrap()
        .session_ids(SessionScope::Run(run))
        .unwrap();
    let judge = ScriptedModel::new(
        ids.iter()
            .enumerate()
            .map(|(i, _)| answer(2 + i as u32, "")),
    );
    evaluate(&store, &ids, Some(&judge), None, BOTH, &|_| {}).unwrap();
    (store, run)
}

#[test]
fn a_batch_report_in_markdown() {
    use cbtsim::eval::report;
    let (store, run) = evaluated_batch();
    let gathered = report::gather(&store.lock().unwrap(), SessionScope::Run(run)).unwrap();
    assert_eq!(gathered.sessions.len(), 4);
    assert_eq!(gathered.courses.len(), 2);
    // Scores 2, 3, 4, 5 on every item: totals 22, 33, 44, 55.
    let model = &gathered.models[0];
    assert_eq!(model.therapist_model, "scripted");
    assert_eq!((model.sessions, model.scored), (4, 4));
    assert_eq!(model.mean_ctrs, Some(38.5));
    // mean ± t(3, 0.975) · sd / √n = 38.5 ± 3.182 · 14.2009 / 2
    let (low, high) = model.ctrs_ci95.unwrap();
    assert!(
        (low - 15.906).abs() < 0.01 && (high - 61.094).abs() < 0.01,
        "{low} {high}"
    );
    // A second judge's score of one session is left out: no mean mixes judges.
    let other = serde_json::to_value(
        ctrs::judge(
            &ScriptedModel::new([answer(6, "")]),
            &transcript("clean-natural-end.txt"),
        )
        .unwrap(),
    )
    .unwrap();
    store
        .lock()
        .unwrap()
        .set_evaluation(1, "ctrs", "another judge", RUBRIC_VERSION, &other)
        .unwrap();
    let again = report::gather(&store.lock().unwrap(), SessionScope::Run(run)).unwrap();
    assert_eq!(again, gathered);
    assert_eq!(gathered.judge.as_deref(), Some("scripted"));
    insta::assert_snapshot!(report::markdown(&gathered));
}

#[test]
fn the_html_report_is_self_contained_with_a_chart_per_course_and_escapes_text() {
    use cbtsim::eval::report;
    let (store, run) = evaluated_batch();
    let mut gathered = report::gather(&store.lock().unwrap(), SessionScope::Run(run)).unwrap();
    gathered.sessions[0].persona = Some("<script>alert('x')</script>".into());
    let html = report::html(&gathered);
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<svg").count(), 2);
    assert_eq!(html.matches("</svg>").count(), 2);
    assert!(!html.contains("<script"), "markup in the data is escaped");
    assert!(html.contains("&lt;script&gt;"));
    for external in ["http:", "https:", "src=", "<link", "@import", "url("] {
        assert!(!html.contains(external), "{external}");
    }
    // Tags open and close in order.
    let mut open: Vec<String> = Vec::new();
    for tag in html.split('<').skip(1) {
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '/' || *c == '!')
            .collect();
        let self_closing = tag.split('>').next().unwrap_or("").ends_with('/');
        match name.strip_prefix('/') {
            Some(closing) => assert_eq!(open.pop().as_deref(), Some(closing), "{html}"),
            None if name.starts_with('!') || self_closing || name == "meta" => {}
            None => open.push(name),
        }
    }
    assert!(open.is_empty(), "{open:?}");
}

const OUTCOMES: EvalSettings = EvalSettings {
    metrics: false,
    ctrs: false,
    safety: false,
    outcomes: true,
    force: false,
    concurrency: 1,
};

#[test]
fn the_patient_answers_the_questionnaires_in_character_and_imported_sessions_have_none() {
    use cbtsim::eval::outcomes::{GAD7, PHQ9, SESSION_RATING};
    let (store, run) = evaluated_batch();
    let ids = store
        .lock()
        .unwrap()
        .session_ids(SessionScope::Run(run))
        .unwrap();
    // PHQ-9 then GAD-7 at the start, both again at the end, then the rating.
    let mut replies: Vec<String> = Vec::new();
    for (count, answer) in [(9, 2), (7, 1), (9, 1), (7, 0), (4, 8)] {
        replies.extend((0..count).map(|_| format!("{{\"answer\": {answer}}}")));
    }
    // One invalid answer first: asked again.
    replies.insert(0, "{\"answer\": 9}".into());
    let patient = ScriptedModel::new(replies);
    let done = evaluate(&store, &ids[..1], None, Some(&patient), OUTCOMES, &|_| {})
        .unwrap()
        .sessions;
    let answers = done[0].outcomes.as_ref().unwrap();
    assert_eq!(answers.phq9_start.items, vec![2; PHQ9.len()]);
    assert_eq!(answers.phq9_start.total, 18);
    assert_eq!(answers.gad7_start.total, 7);
    assert_eq!(answers.phq9_end.total, 9);
    assert_eq!(answers.gad7_end.total, 0);
    assert_eq!(answers.session_rating.len(), SESSION_RATING.len());
    assert!(answers.session_rating.iter().all(|(_, score)| *score == 8));
    assert_eq!(answers.invalid_answers, 1);
    assert_eq!(
        patient.requests().len(),
        1 + 2 * (PHQ9.len() + GAD7.len()) + 4
    );
    // In character: the persona is in every question, the session in the
    // end ones.
    let requests = patient.requests();
    let first = format!("{:?}", requests[1].prompt);
    let last = format!("{:?}", requests.last().unwrap().prompt);
    assert!(
        first.contains("You are Alicia") && first.contains("about to start"),
        "{first}"
    );
    assert!(
        last.contains("You have just had session 1")
            && last.contains("Therapist: Welcome, Alicia.")
            && last.contains("Scripted reply"),
        "{last}"
    );
    // Stored, and read back rather than asked again.
    let again = evaluate(&store, &ids[..1], None, Some(&patient), OUTCOMES, &|_| {})
        .unwrap()
        .sessions;
    assert_eq!(again[0].reused, ["outcomes"]);
    assert_eq!(
        again[0].outcomes.as_ref().unwrap().phq9_end,
        answers.phq9_end
    );
    // A course shows both trajectories: the store's and the patient's own.
    let gathered =
        cbtsim::eval::report::gather(&store.lock().unwrap(), SessionScope::Run(run)).unwrap();
    assert_eq!(gathered.courses[0].reported_phq9, [Some(9), None]);
    assert_eq!(gathered.courses[0].phq9.len(), 2);
    assert!(gathered.courses[0].phq9.iter().all(Option::is_some));

    // An imported transcript has no persona: nothing to ask.
    let (imported, ids) = store_with(&["clean-natural-end.txt"]);
    let quiet = ScriptedModel::new(Vec::<String>::new());
    let done = evaluate(&imported, &ids, None, Some(&quiet), OUTCOMES, &|_| {})
        .unwrap()
        .sessions;
    assert_eq!(done[0].unavailable, ["outcomes"]);
    assert!(done[0].outcomes.is_none());
    assert!(quiet.requests().is_empty());
}

#[test]
fn patient_reported_outcomes_on_the_default_model() {
    let _real_model = super::util::real_model();
    let model = default_model();
    let (store, run) = evaluated_batch();
    let ids = store
        .lock()
        .unwrap()
        .session_ids(SessionScope::Run(run))
        .unwrap();
    let done = evaluate(&store, &ids[..1], None, Some(&model), OUTCOMES, &|_| {})
        .unwrap()
        .sessions;
    let answers = done[0].outcomes.as_ref().unwrap();
    assert_eq!(answers.phq9_start.items.len(), 9);
    assert!(answers.phq9_end.total <= 27 && answers.gad7_end.total <= 21);
    assert!(answers.session_rating.iter().all(|(_, s)| *s <= 10));
    assert!(answers.model.starts_with("local:"), "{}", answers.model);
}

/// The default model, serial (as sessions use it).
fn default_model() -> cbtsim::model::embedded::EmbeddedModel {
    use cbtsim::model::embedded::{EmbeddedConfig, EmbeddedModel};
    let path = cbtsim::model::default_model::locate().unwrap();
    EmbeddedModel::load(&path, EmbeddedConfig::default()).unwrap()
}

#[test]
fn a_rating_in_a_file_and_the_store_counts_once_and_two_scores_are_refused() {
    use cbtsim::eval::agreement::Rating;
    let store = Store::in_memory().unwrap();
    let mut transcript = Transcript::new(1);
    transcript.turns = vec![cbtsim::Turn::new(cbtsim::Speaker::Therapist, "Hello.")];
    let mut importing = store;
    let session = importing.import(&transcript, "test").unwrap();
    let store = importing;
    store
        .set_ratings(session, "ana", &[("agenda".to_string(), 4)])
        .unwrap();
    let rating = |rater: &str, score: u32| Rating {
        session,
        item: "agenda".into(),
        rater: rater.into(),
        score,
    };
    // The same rating in both, and another rater's: one pair, one item.
    let pairs = cbtsim::eval::agreement(&store, vec![rating("ana", 4), rating("ben", 3)]).unwrap();
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    let pair = serde_json::to_value(&pairs[0]).unwrap();
    assert_eq!(pair["n"], 1, "{pair}");
    match cbtsim::eval::agreement(&store, vec![rating("ana", 2)]) {
        Err(e @ EvalError::ConflictingRating { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("ana") && message.contains("agenda"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}
