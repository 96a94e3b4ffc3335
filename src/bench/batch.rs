//! `bench batch`: the same batch of sessions at several concurrency
//! levels, side by side in one run: sessions per hour and tokens per second
//! at each, so that where a backend saturates shows.

use super::BenchSessions;
use crate::model::spec::Models;
use crate::plan::PlanKind;
use crate::runner::{CourseStatus, RoleModels, RunError};
use crate::store::Store;
use serde::Serialize;

pub struct BatchBenchSettings {
    pub each: BenchSessions,
    /// Sessions at each level.
    pub sessions: u32,
    pub levels: Vec<u32>,
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
    // Loaded once, shared by every level.
    let roles = RoleModels::open(&plan, &mut Models::new(settings.each.config.clone()))?;
    let mut levels = Vec::new();
    for &concurrency in &settings.levels {
        progress(&format!(
            "{} sessions, {concurrency} at a time",
            settings.sessions
        ));
        plan.concurrency = concurrency.max(1);
        let (outcome, wall) = super::run_timed(Store::in_memory()?, &plan, &roles)?;
        let wall = wall.as_secs_f64();
        let sum = |f: fn(&crate::store::TokenTotal) -> i64| {
            outcome.tokens.iter().map(f).sum::<i64>() as f64
        };
        levels.push(Level {
            concurrency: plan.concurrency,
            wall_s: wall,
            sessions_per_hour: f64::from(settings.sessions) * 3600.0 / wall,
            completion_tokens_per_s: sum(|t| t.completion_tokens) / wall,
            prompt_tokens_per_s: sum(|t| t.prompt_tokens) / wall,
            estimated: outcome.tokens.iter().any(|t| t.estimated),
            failed_courses: outcome
                .courses
                .iter()
                .filter(|c| c.status != CourseStatus::Finished)
                .count(),
        });
    }
    Ok(BatchBench {
        model: roles.therapist.describe(),
        sessions: settings.sessions,
        turns: settings.each.turns,
        levels,
        peak_rss_mb: super::session::peak_rss_mb(),
    })
}
