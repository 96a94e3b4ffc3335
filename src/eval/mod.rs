//! Evaluating stored sessions: deterministic metrics (`metrics`) and the
//! CTRS judge (`ctrs`), each stored with the session (docs/evaluation.md).
//! Evaluating again skips what is already stored for the same judge and
//! rubric version, unless forced.

pub mod agreement;
pub mod ctrs;
pub mod judge;
pub mod metrics;
pub mod outcomes;
pub mod report;
pub mod safety;

use crate::model::ChatModel;
use crate::store::{Store, StoreError};
use ctrs::{CtrsScore, JudgeError, RUBRIC_VERSION};
use metrics::SessionMetrics;
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The version of the metrics' definitions (docs/evaluation.md).
pub const METRICS_VERSION: &str = "metrics-1";

/// What to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalSettings {
    pub metrics: bool,
    pub ctrs: bool,
    pub safety: bool,
    /// The patient's answers to the PHQ-9, GAD-7 and a session rating.
    pub outcomes: bool,
    /// Evaluate again what is already stored.
    pub force: bool,
    /// Sessions evaluated at once.
    pub concurrency: u32,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<outcomes::PatientOutcomes>,
    /// Parts asked for that this session cannot have (`outcomes` for a
    /// session without a persona, e.g. an imported transcript).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<&'static str>,
    /// What was read from the store rather than evaluated now.
    pub reused: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("session {session}: {cause}")]
    Judge { session: i64, cause: JudgeError },
    #[error(
        "the CTRS and the safety rubric need a judge model (--judge SPEC, or `judge` in [models])"
    )]
    NoJudge,
    #[error(
        "the patient-reported outcomes need a patient model (--patient-model SPEC, or `patient` in [models])"
    )]
    NoPatient,
    #[error(
        "a person's ratings are under the rater name {0:?}, which names the judge model: rename the rater"
    )]
    ReservedRater(String),
    #[error(
        "{rater} scored session {session}'s {item} {file} in a ratings file and {stored} in the store: keep one"
    )]
    ConflictingRating {
        rater: String,
        session: i64,
        item: String,
        file: u32,
        stored: u32,
    },
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
/// each is done (a failure keeps what was stored before it), up to
/// `settings.concurrency` sessions at once (the judge's calls are the slow
/// part; an HTTP backend's own limits still hold). `progress` hears of each
/// session as it starts.
pub fn evaluate(
    store: &Mutex<Store>,
    sessions: &[i64],
    judge: Option<&dyn ChatModel>,
    patient: Option<&dyn ChatModel>,
    settings: EvalSettings,
    progress: &(dyn Fn(i64) + Sync),
) -> Result<Evaluated, EvalError> {
    if (settings.ctrs || settings.safety) && judge.is_none() {
        return Err(EvalError::NoJudge);
    }
    if settings.outcomes && patient.is_none() {
        return Err(EvalError::NoPatient);
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::new());
    let workers = (settings.concurrency.max(1) as usize).min(sessions.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&session) = sessions.get(index) else {
                        break;
                    };
                    progress(session);
                    let result = evaluate_one(store, session, judge, patient, settings);
                    if result.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    lock(&results).push((index, result));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(index, _)| *index);
    let mut evaluated = Evaluated {
        sessions: Vec::new(),
        not_ended: Vec::new(),
    };
    for (index, result) in results {
        match result? {
            Some(evaluation) => evaluated.sessions.push(evaluation),
            None => evaluated.not_ended.push(sessions[index]),
        }
    }
    Ok(evaluated)
}

/// One session's evaluation: `None` when it has not ended.
type Outcome = Result<Option<SessionEvaluation>, EvalError>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One session's evaluation, or `None` when it has not ended. The store is
/// held only to read and to write, never while the judge thinks.
fn evaluate_one(
    store: &Mutex<Store>,
    session: i64,
    judge: Option<&dyn ChatModel>,
    patient: Option<&dyn ChatModel>,
    settings: EvalSettings,
) -> Outcome {
    if !lock(store).session_ended(session)? {
        return Ok(None);
    }
    let transcript = lock(store).transcript(session)?;
    let mut evaluation = SessionEvaluation {
        session_id: session,
        metrics: None,
        ctrs: None,
        safety: None,
        outcomes: None,
        unavailable: Vec::new(),
        reused: Vec::new(),
    };
    let reused = &mut evaluation.reused;
    if settings.metrics {
        evaluation.metrics = Some(stored_or_made(
            store,
            (session, "metrics", "", METRICS_VERSION),
            settings,
            reused,
            || {
                let events = lock(store).safety_events(session)?.len();
                Ok(metrics::measure(&transcript, events))
            },
        )?);
    }
    if let Some(judge) = judge.filter(|_| settings.ctrs) {
        let name = judge.describe();
        evaluation.ctrs = Some(stored_or_made(
            store,
            (session, "ctrs", &name, RUBRIC_VERSION),
            settings,
            reused,
            || ctrs::judge(judge, &transcript).map_err(|cause| EvalError::Judge { session, cause }),
        )?);
    }
    if let Some(judge) = judge.filter(|_| settings.safety) {
        let name = judge.describe();
        evaluation.safety = Some(stored_or_made(
            store,
            (session, "safety", &name, safety::RUBRIC_VERSION),
            settings,
            reused,
            || {
                let (relevant, disclosed) = relevance(&lock(store), session)?;
                match relevant {
                    Some(why) => safety::judge(judge, &transcript, why, disclosed)
                        .map_err(|cause| EvalError::Judge { session, cause }),
                    None => Ok(safety::not_relevant(&name)),
                }
            },
        )?);
    }
    if let Some(patient) = patient.filter(|_| settings.outcomes) {
        let name = patient.describe();
        // (Read first: a guard in the match itself would be held through it.)
        let persona = lock(store).session_persona(session)?;
        match persona {
            None => evaluation.unavailable.push("outcomes"),
            Some(persona) => {
                evaluation.outcomes = Some(stored_or_made(
                    store,
                    (session, "outcomes", &name, outcomes::VERSION),
                    settings,
                    reused,
                    || {
                        outcomes::ask(patient, &persona, &transcript)
                            .map_err(|cause| EvalError::Judge { session, cause })
                    },
                )?);
            }
        }
    }
    Ok(Some(evaluation))
}

/// Why the safety rubric applies to a session (a safety event, or a
/// persona at risk), or `None` when it does not; and whether the patient
/// disclosed a risk (the session recorded a safety event).
fn relevance(store: &Store, session: i64) -> Result<(Option<String>, bool), StoreError> {
    let events = store.safety_events(session)?;
    if let Some(first) = events.first() {
        let why = format!(
            "{} safety event(s), the first {} at turn {}",
            events.len(),
            first.category.as_str(),
            first.turn
        );
        return Ok((Some(why), true));
    }
    let why = match store.session_persona(session)? {
        Some(p) if p.risk.level != crate::risk::RiskLevel::None => {
            Some(format!("the persona is at {} risk", p.risk.level.as_str()))
        }
        _ => None,
    };
    Ok((why, false))
}

/// A session's evaluation of one kind: (session, kind, judge or patient
/// model, version).
type Key<'a> = (i64, &'static str, &'a str, &'a str);

/// The stored evaluation under `key` (named in `reused`), unless forced;
/// else the one `make` makes, stored as soon as it is made.
fn stored_or_made<T: Serialize + serde::de::DeserializeOwned>(
    store: &Mutex<Store>,
    (session, kind, by, version): Key<'_>,
    settings: EvalSettings,
    reused: &mut Vec<&'static str>,
    make: impl FnOnce() -> Result<T, EvalError>,
) -> Result<T, EvalError> {
    if !settings.force {
        let stored: Option<T> = lock(store).evaluation(session, kind, by, version)?;
        if let Some(stored) = stored {
            reused.push(kind);
            return Ok(stored);
        }
    }
    let made = make()?;
    let json = serde_json::to_value(&made).expect("evaluations serialise");
    lock(store).set_evaluation(session, kind, by, version, &json)?;
    Ok(made)
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
    // People's ratings stored with the sessions (`cbtsim serve`) count as
    // a file's do; the same rating in both counts once, and two different
    // scores of one item by one rater are not chosen between silently.
    let given: std::collections::HashMap<(i64, &str, &str), u32> = ratings
        .iter()
        .map(|r| ((r.session, r.item.as_str(), r.rater.as_str()), r.score))
        .collect();
    let mut stored = Vec::new();
    for (session, item, rater, score) in store.ratings(None)? {
        match given.get(&(session, item.as_str(), rater.as_str())) {
            Some(&file) if file == score => continue,
            Some(&file) => {
                return Err(EvalError::ConflictingRating {
                    rater,
                    session,
                    item,
                    file,
                    stored: score,
                });
            }
            None => stored.push((session, item, rater, score)),
        }
    }
    for (session, item, rater, score) in stored {
        ratings.push(agreement::Rating {
            session,
            item,
            rater,
            score,
        });
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
