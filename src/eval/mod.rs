//! Evaluating stored sessions: deterministic metrics (`metrics`) and the
//! CTRS judge (`ctrs`), each stored with the session (docs/evaluation.md).
//! Evaluating again skips what is already stored for the same judge and
//! rubric version, unless forced.

pub mod agreement;
pub mod ctrs;
pub mod judge;
pub mod metrics;
pub mod safety;

use crate::model::ChatModel;
use crate::store::{Store, StoreError};
use ctrs::{CtrsScore, JudgeError, RUBRIC_VERSION};
use metrics::SessionMetrics;
use serde::Serialize;

/// The version of the metrics' definitions (docs/evaluation.md).
pub const METRICS_VERSION: &str = "metrics-1";

/// What to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalSettings {
    pub metrics: bool,
    pub ctrs: bool,
    pub safety: bool,
    /// Evaluate again what is already stored.
    pub force: bool,
}

/// One session's evaluation, as `cbtsim eval --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionEvaluation {
    pub session_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SessionMetrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctrs: Option<CtrsScore>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety: Option<safety::SafetyScore>,
    /// What was read from the store rather than evaluated now.
    pub reused: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("session {session}: {source}")]
    Judge { session: i64, source: JudgeError },
    #[error(
        "the CTRS and the safety rubric need a judge model (--judge SPEC, or `judge` in [models])"
    )]
    NoJudge,
    #[error(
        "a person's ratings are under the rater name {0:?}, which names the judge model: rename the rater"
    )]
    ReservedRater(String),
}

/// What `evaluate` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluated {
    pub sessions: Vec<SessionEvaluation>,
    /// Sessions left out because they have not ended (still running, or
    /// stopped to be resumed): their scores would go stale.
    pub not_ended: Vec<i64>,
}

/// Evaluates each of `sessions` that has ended and stores the results as
/// each is done (a failure keeps what was stored before it). `progress`
/// hears of each session as it starts.
pub fn evaluate(
    store: &Store,
    sessions: &[i64],
    judge: Option<&dyn ChatModel>,
    settings: EvalSettings,
    progress: &mut dyn FnMut(usize, i64),
) -> Result<Evaluated, EvalError> {
    if (settings.ctrs || settings.safety) && judge.is_none() {
        return Err(EvalError::NoJudge);
    }
    let mut done = Vec::new();
    let mut not_ended = Vec::new();
    for (index, &session) in sessions.iter().enumerate() {
        progress(index, session);
        if !store.session_ended(session)? {
            not_ended.push(session);
            continue;
        }
        let transcript = store.transcript(session)?;
        let mut evaluation = SessionEvaluation {
            session_id: session,
            metrics: None,
            ctrs: None,
            safety: None,
            reused: Vec::new(),
        };
        if settings.metrics {
            let stored = stored(store, session, "metrics", "", METRICS_VERSION, settings)?;
            evaluation.metrics = Some(match stored {
                Some(metrics) => {
                    evaluation.reused.push("metrics");
                    metrics
                }
                None => {
                    let events = store.safety_events(session)?.len();
                    let metrics = metrics::measure(&transcript, events);
                    let json = serde_json::to_value(&metrics).expect("metrics serialise");
                    store.set_evaluation(session, "metrics", "", METRICS_VERSION, &json)?;
                    metrics
                }
            });
        }
        if let Some(judge) = judge.filter(|_| settings.ctrs) {
            let name = judge.describe();
            let stored = stored(store, session, "ctrs", &name, RUBRIC_VERSION, settings)?;
            evaluation.ctrs = Some(match stored {
                Some(score) => {
                    evaluation.reused.push("ctrs");
                    score
                }
                None => {
                    let score = ctrs::judge(judge, &transcript)
                        .map_err(|source| EvalError::Judge { session, source })?;
                    let json = serde_json::to_value(&score).expect("scores serialise");
                    store.set_evaluation(session, "ctrs", &name, RUBRIC_VERSION, &json)?;
                    score
                }
            });
        }
        if let Some(judge) = judge.filter(|_| settings.safety) {
            let name = judge.describe();
            let version = safety::RUBRIC_VERSION;
            let stored = stored(store, session, "safety", &name, version, settings)?;
            evaluation.safety = Some(match stored {
                Some(score) => {
                    evaluation.reused.push("safety");
                    score
                }
                None => {
                    let score = match relevance(store, session)? {
                        Some(why) => safety::judge(judge, &transcript, why)
                            .map_err(|source| EvalError::Judge { session, source })?,
                        None => safety::not_relevant(&name),
                    };
                    let json = serde_json::to_value(&score).expect("ratings serialise");
                    store.set_evaluation(session, "safety", &name, version, &json)?;
                    score
                }
            });
        }
        done.push(evaluation);
    }
    Ok(Evaluated {
        sessions: done,
        not_ended,
    })
}

/// Why the safety rubric applies to a session (a safety event, or a
/// persona at risk), or `None` when it does not.
fn relevance(store: &Store, session: i64) -> Result<Option<String>, StoreError> {
    let events = store.safety_events(session)?;
    if let Some(first) = events.first() {
        return Ok(Some(format!(
            "{} safety event(s), the first {} at turn {}",
            events.len(),
            first.category.as_str(),
            first.turn
        )));
    }
    Ok(match store.session_persona_risk(session)? {
        Some(level) if level != crate::risk::RiskLevel::None => {
            Some(format!("the persona is at {} risk", level.as_str()))
        }
        _ => None,
    })
}

/// A stored evaluation, unless forced to evaluate again.
fn stored<T: serde::de::DeserializeOwned>(
    store: &Store,
    session: i64,
    kind: &str,
    judge: &str,
    version: &str,
    settings: EvalSettings,
) -> Result<Option<T>, StoreError> {
    if settings.force {
        return Ok(None);
    }
    store.evaluation(session, kind, judge, version)
}

/// The judge's stored CTRS scores (this rubric version) as ratings, beside
/// `ratings` given by people, and the agreement of every pair of raters.
/// The judge is the rater `judge`; when several judges scored, each is
/// `judge:SPEC`.
pub fn agreement(
    store: &Store,
    mut ratings: Vec<agreement::Rating>,
) -> Result<Vec<agreement::PairAgreement>, EvalError> {
    if let Some(r) = ratings
        .iter()
        .find(|r| r.rater == "judge" || r.rater.starts_with("judge:"))
    {
        return Err(EvalError::ReservedRater(r.rater.clone()));
    }
    let scores: Vec<(i64, String, CtrsScore)> = store.evaluations_of("ctrs", RUBRIC_VERSION)?;
    let judges: std::collections::BTreeSet<&str> =
        scores.iter().map(|(_, judge, _)| judge.as_str()).collect();
    for (session, judge, score) in &scores {
        let rater = match judges.len() {
            1 => "judge".to_string(),
            _ => format!("judge:{judge}"),
        };
        for item in &score.items {
            ratings.push(agreement::Rating {
                session: *session,
                item: item.item.clone(),
                rater: rater.clone(),
                score: item.score,
            });
        }
    }
    Ok(agreement::agreement(&ratings))
}
