//! `bench batch`: the same batch of sessions at several concurrency
//! levels, side by side in one run: sessions per hour and tokens per second
//! at each, so that where a backend saturates shows. On the embedded model
//! each level can also run in batched mode (`[embedded] parallel` set to
//! the level), to compare decoding sessions together with one at a time.

use super::BenchSessions;
use crate::model::ModelError;
use crate::model::default_model;
use crate::model::embedded::EmbeddedModel;
use crate::model::spec::{ModelSpec, Models};
use crate::plan::{PlanKind, RunPlan};
use crate::runner::{CourseStatus, RoleModels, RunError};
use crate::store::Store;
use serde::Serialize;
use std::sync::Arc;

pub struct BatchBenchSettings {
    pub each: BenchSessions,
    /// Sessions at each level.
    pub sessions: u32,
    pub levels: Vec<u32>,
    /// The modes to run each level in: `false` one request at a time (the
    /// embedded default, or whatever the model is), `true` batched
    /// (embedded only).
    pub batched: Vec<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchBench {
    pub model: String,
    pub sessions: u32,
    pub turns: u32,
    pub levels: Vec<Level>,
    /// The process's peak resident memory over all levels, in MB.
    pub peak_rss_mb: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub concurrency: u32,
    /// Run with `[embedded] parallel` = the concurrency (2 at least).
    pub batched: bool,
    /// Replies decoded together, on average: reply tokens per llama.cpp
    /// batch that decoded any (batched mode).
    pub replies_per_batch: Option<f64>,
    pub wall_s: f64,
    pub sessions_per_hour: f64,
    /// Tokens generated per second, over all sessions.
    pub completion_tokens_per_s: f64,
    /// Prompt tokens (as the backend counts them) per second.
    pub prompt_tokens_per_s: f64,
    /// Whether any counts were estimates (a server that gave none).
    pub estimated: bool,
    pub failed_courses: usize,
}

pub fn bench_batch(
    settings: &BatchBenchSettings,
    progress: &mut dyn FnMut(&str),
) -> Result<BatchBench, RunError> {
    let mut plan = settings.each.plan(PlanKind::Batch);
    plan.repeats = settings.sessions;
    let batched_path = match (&settings.each.model, settings.batched.contains(&true)) {
        (_, false) => None,
        (ModelSpec::Local(Some(path)), true) => Some(path.clone()),
        (ModelSpec::Local(None), true) => Some(default_model::locate().map_err(|e| {
            model_error(
                &settings.each.model,
                ModelError::ModelMissing(e.to_string()),
            )
        })?),
        (spec, true) => {
            let why = "batched decoding is a setting of the embedded model (local)";
            return Err(model_error(spec, ModelError::Backend(why.into())));
        }
    };
    // Loaded once, shared by every level run one request at a time (a
    // batched level loads a model of its own, with its `parallel`).
    let roles = match settings.batched.contains(&false) {
        true => Some(RoleModels::open(
            &plan,
            &mut Models::new(settings.each.config.clone()),
        )?),
        false => None,
    };
    let mut levels = Vec::new();
    for &concurrency in &settings.levels {
        plan.concurrency = concurrency.max(1);
        for &batched in &settings.batched {
            progress(&format!(
                "{} sessions, {} at a time{}",
                settings.sessions,
                plan.concurrency,
                if batched { ", batched" } else { "" }
            ));
            let level = match &batched_path {
                Some(path) if batched => {
                    let mut config = settings.each.config.embedded_config();
                    // Batched mode needs 2 at least; at concurrency 1 it shows
                    // what the shared context costs a session alone.
                    config.parallel = plan.concurrency.max(2);
                    let model = EmbeddedModel::load(path, config)
                        .map_err(|e| model_error(&settings.each.model, e))?;
                    let mut models = Models::new(settings.each.config.clone());
                    models.insert(settings.each.model.clone(), Arc::new(model.clone()));
                    let roles = RoleModels::open(&plan, &mut models)?;
                    let mut level = run_level(&plan, &roles, settings.sessions)?;
                    let counts = model.batching();
                    level.batched = true;
                    level.replies_per_batch = (counts.batches > 0)
                        .then(|| counts.reply_tokens as f64 / counts.batches as f64);
                    level
                }
                _ => {
                    let roles = roles.as_ref().expect("opened for levels run unbatched");
                    run_level(&plan, roles, settings.sessions)?
                }
            };
            levels.push(level);
        }
    }
    let model = match (&roles, &batched_path) {
        (Some(roles), _) => roles.therapist.describe(),
        (None, Some(path)) => format!("local:{}", path.display()),
        (None, None) => settings.each.model.to_string(),
    };
    Ok(BatchBench {
        model,
        sessions: settings.sessions,
        turns: settings.each.turns,
        levels,
        peak_rss_mb: super::session::peak_rss_mb(),
    })
}

/// Runs `plan` (its `repeats` are the sessions) once and measures it.
fn run_level(plan: &RunPlan, roles: &RoleModels, sessions: u32) -> Result<Level, RunError> {
    let (outcome, wall) = super::run_timed(Store::in_memory()?, plan, roles)?;
    let wall = wall.as_secs_f64();
    let sum =
        |f: fn(&crate::store::TokenTotal) -> i64| outcome.tokens.iter().map(f).sum::<i64>() as f64;
    Ok(Level {
        concurrency: plan.concurrency,
        batched: false,
        replies_per_batch: None,
        wall_s: wall,
        sessions_per_hour: f64::from(sessions) * 3600.0 / wall,
        completion_tokens_per_s: sum(|t| t.completion_tokens) / wall,
        prompt_tokens_per_s: sum(|t| t.prompt_tokens) / wall,
        estimated: outcome.tokens.iter().any(|t| t.estimated),
        failed_courses: outcome
            .courses
            .iter()
            .filter(|c| c.status != CourseStatus::Finished)
            .count(),
    })
}

/// `bench batch --db URL --workers 1,2,4`: the same batch queued in a
/// store and drained by 1, 2, 4 ... workers (threads of this process, each
/// with a connection of its own, as separate machines would have), side by
/// side.
pub struct WorkersBenchSettings {
    pub each: BenchSessions,
    /// Sessions (courses of one session) in each level's batch.
    pub sessions: u32,
    pub workers: Vec<u32>,
    /// The store the batches are queued in: name a scratch one (workers
    /// drain every queued batch in it, and the bench's stay).
    pub db: std::path::PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkersBench {
    pub model: String,
    pub store: String,
    pub sessions: u32,
    pub turns: u32,
    pub levels: Vec<WorkersLevel>,
    /// What a turn costs the store on its own (`bench store`, 200 turns):
    /// the fenced write and a lease renewal.
    pub store_per_turn: super::store::StoreFigures,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkersLevel {
    pub workers: u32,
    pub wall_s: f64,
    pub sessions_per_hour: f64,
    /// Sessions per hour over the first level's.
    pub speedup: f64,
    pub failed_courses: usize,
}

pub fn bench_workers(
    settings: &WorkersBenchSettings,
    progress: &mut dyn FnMut(&str),
) -> Result<WorkersBench, RunError> {
    use crate::worker::{Leasing, Worker, WorkerSettings};
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;
    let mut plan = settings.each.plan(PlanKind::Batch);
    plan.repeats = settings.sessions;
    let mut store = Store::open(&settings.db)?;
    let shown = store.path().display().to_string();
    // Opened once and shared, as `Models` shares weights between roles.
    let models = Mutex::new(Models::new(settings.each.config.clone()));
    // Opened (and the guards' patterns compiled) before the first level,
    // so that it does not pay for what the others reuse.
    RoleModels::open(&plan, &mut models.lock().unwrap_or_else(|e| e.into_inner()))?;
    let mut levels: Vec<WorkersLevel> = Vec::new();
    for &workers in &settings.workers {
        let workers = workers.max(1);
        progress(&format!(
            "{} sessions queued in {shown}, {workers} worker(s)",
            settings.sessions
        ));
        let run = crate::runner::create(&mut store, &plan)?;
        store.queue_run(run)?;
        let started = std::time::Instant::now();
        let outcomes = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..workers)
                .map(|w| {
                    let models = &models;
                    scope.spawn(move || -> Result<_, RunError> {
                        let store = Mutex::new(Store::open(&settings.db)?);
                        let leasing = Leasing::new(
                            format!("bench-{}-{w}", std::process::id()),
                            crate::worker::DEFAULT_LEASE,
                        );
                        let clock = || started.elapsed();
                        Worker {
                            store: &store,
                            models,
                            leasing: &leasing,
                            settings: &WorkerSettings {
                                concurrency: 1,
                                until_idle: true,
                                model: None,
                                poll: std::time::Duration::from_millis(100),
                                only_run: Some(run),
                            },
                            interrupted: &AtomicBool::new(false),
                            observer: &crate::runner::Unobserved,
                            clock: &clock,
                        }
                        .work()
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("a bench worker does not panic"))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let wall = started.elapsed().as_secs_f64();
        let sessions_per_hour = f64::from(settings.sessions) * 3600.0 / wall;
        levels.push(WorkersLevel {
            workers,
            wall_s: wall,
            sessions_per_hour,
            speedup: levels
                .first()
                .map_or(1.0, |first| sessions_per_hour / first.sessions_per_hour),
            failed_courses: outcomes
                .iter()
                .map(|o| o.count(|s| *s != CourseStatus::Finished))
                .sum(),
        });
    }
    progress("the store's cost per turn");
    let figures = super::store::bench_store(&mut store, 200)?;
    Ok(WorkersBench {
        model: settings.each.model.to_string(),
        store: shown,
        sessions: settings.sessions,
        turns: settings.each.turns,
        levels,
        store_per_turn: figures.stores[0].clone(),
    })
}

fn model_error(spec: &ModelSpec, cause: ModelError) -> RunError {
    RunError::Model {
        spec: spec.to_string(),
        roles: vec!["therapist", "patient"],
        cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::Config;

    #[test]
    fn batched_mode_is_refused_for_a_model_other_than_the_embedded_one() {
        let settings = BatchBenchSettings {
            each: BenchSessions {
                model: "scripted".parse().unwrap(),
                persona: "alicia-rodriguez".into(),
                turns: 2,
                max_tokens: 8,
                candidates: 1,
                config: Config::default(),
            },
            sessions: 1,
            levels: vec![1],
            batched: vec![false, true],
        };
        let error = bench_batch(&settings, &mut |_| {}).err().unwrap();
        assert!(error.to_string().contains("embedded model"), "{error}");
    }
}
