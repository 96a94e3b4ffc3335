//! `bench session`: one full session through the runner, with storage on,
//! timed from the outside: how long the model worked, how long everything
//! else took, how many prompt tokens the model read against the least it
//! could have read (each agent's final prompt once), and how far the wall
//! time is from what the model alone needs for that work.

use super::BenchSessions;
use crate::model::spec::Models;
use crate::model::{ChatModel, Completion, Conversation, ModelError, Request};
use crate::plan::PlanKind;
use crate::runner::{RoleModels, RunError};
use crate::store::Store;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct SessionBench {
    pub model: String,
    /// Turns spoken (a session may end before the limit).
    pub turns: u32,
    /// The session, from its first turn to its ending stored.
    pub wall_s: f64,
    /// Process start to the first model call, less the model's loading.
    pub startup_ms: f64,
    /// Loading the weights.
    pub model_load_ms: f64,
    /// Opening the agents' conversations (llama.cpp contexts), counted
    /// neither as start-up nor as orchestration.
    pub contexts_ms: f64,
    pub model_ms_per_turn: f64,
    /// Everything but model time: prompts, guards, termination, safety, storage.
    pub orchestration_ms_per_turn: f64,
    /// Prompt tokens the model read (not served from its cache), all agents.
    pub prompt_tokens_processed: u64,
    /// The sum over the agents of the length of each one's last prompt.
    pub final_prompt_tokens: u64,
    pub processed_per_final: f64,
    /// Tokens generated, every candidate counted.
    pub generated_tokens: u64,
    /// Prefill and decode speed within the session's own calls, where the
    /// backend times them (the embedded one does).
    pub session_prefill_tokens_per_s: Option<f64>,
    pub session_decode_tokens_per_s: Option<f64>,
    /// The transcript's length in the model's tokens, where it can count them.
    pub transcript_tokens: Option<u32>,
    /// Measured in this run, after the session, on the same model.
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    /// The final prompts at the prefill speed plus the generated tokens at
    /// the decode speed: what the model alone needs for the session.
    pub ideal_s: f64,
    pub wall_per_ideal: f64,
    pub peak_rss_mb: f64,
}

/// What the timed models saw.
#[derive(Default)]
struct Log {
    first_call: Option<Instant>,
    model_time: Duration,
    /// Opening conversations (for the embedded model: creating a llama.cpp
    /// context), which is loading, not orchestration.
    opening_time: Duration,
    /// The part of it before the first call.
    opening_before_first_call: Duration,
    processed: u64,
    generated: u64,
    prefill_ms: u64,
    decode_ms: u64,
    /// Each agent's last prompt length, by role.
    last_prompt: [u64; 2],
}

/// A model whose every call is timed and counted, for one role.
struct Timed {
    inner: Arc<dyn ChatModel>,
    role: usize,
    log: Arc<Mutex<Log>>,
}

impl ChatModel for Timed {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn conversation(&self) -> Result<Box<dyn Conversation>, ModelError> {
        let started = Instant::now();
        let inner = self.inner.conversation()?;
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.opening_time += started.elapsed();
        if log.first_call.is_none() {
            log.opening_before_first_call += started.elapsed();
        }
        Ok(Box::new(TimedConversation {
            inner,
            role: self.role,
            log: self.log.clone(),
        }))
    }
    fn chat(&self) -> bool {
        self.inner.chat()
    }
}

struct TimedConversation {
    inner: Box<dyn Conversation>,
    role: usize,
    log: Arc<Mutex<Log>>,
}

impl Conversation for TimedConversation {
    fn stream(
        &mut self,
        request: &Request,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError> {
        let started = Instant::now();
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first_call
            .get_or_insert(started);
        let done = self.inner.stream(request, on_delta);
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.model_time += started.elapsed();
        if let Ok(done) = &done {
            let u = done.usage;
            log.processed += u64::from(u.prompt_tokens - u.cached_prompt_tokens);
            log.generated += u64::from(u.completion_tokens);
            log.prefill_ms += done.prefill_ms;
            log.decode_ms += done.decode_ms;
            log.last_prompt[self.role] = u64::from(u.prompt_tokens);
        }
        done
    }

    fn forget(&mut self) {
        self.inner.forget();
    }
}

/// Runs the benchmark; `process_start` is when the process started.
pub fn bench_session(
    settings: &BenchSessions,
    process_start: Instant,
    progress: &mut dyn FnMut(&str),
) -> Result<SessionBench, RunError> {
    let spec = settings.model.to_string();
    let plan = settings.plan(PlanKind::Run);

    progress("loading the model");
    let loading = Instant::now();
    let opened = RoleModels::open(&plan, &mut Models::new(settings.config.clone()))?;
    let model_load_ms = loading.elapsed().as_secs_f64() * 1000.0;
    let log = Arc::new(Mutex::new(Log::default()));
    let timed = |inner: &Arc<dyn ChatModel>, role| -> Arc<dyn ChatModel> {
        Arc::new(Timed {
            inner: inner.clone(),
            role,
            log: log.clone(),
        })
    };
    let roles = RoleModels {
        therapist: timed(&opened.therapist, 0),
        patient: timed(&opened.patient, 1),
        summarizer: None,
        safety: None,
    };

    // Storage on, in a file of its own that is removed afterwards.
    let db = std::env::temp_dir().join(format!("cbtsim-bench-{}.db", std::process::id()));
    progress("the session");
    let outcome = Store::open(&db)
        .map_err(RunError::from)
        .and_then(|store| super::run_timed(store, &plan, &roles));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let (outcome, wall) = outcome?;
    let session = outcome
        .courses
        .first()
        .and_then(|c| c.sessions.first())
        .ok_or_else(|| RunError::Plan(crate::plan::PlanError::Invalid("no session ran".into())))?;
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    let turns = session.transcript.turns.len() as u32;
    let model_ms = log.model_time.as_secs_f64() * 1000.0;
    let contexts_ms = log.opening_time.as_secs_f64() * 1000.0;
    let wall_ms = wall.as_secs_f64() * 1000.0;
    let startup_ms = log.first_call.map_or(0.0, |first| {
        (first - process_start).as_secs_f64() * 1000.0
            - model_load_ms
            - log.opening_before_first_call.as_secs_f64() * 1000.0
    });
    let final_prompt_tokens: u64 = log.last_prompt.iter().sum();

    progress("prefill and decode speed");
    let model_error = |cause| RunError::Model {
        spec: spec.clone(),
        roles: vec!["therapist", "patient"],
        cause,
    };
    let (prefill, decode) = speeds(&*opened.therapist, final_prompt_tokens).map_err(model_error)?;
    let ideal_s = final_prompt_tokens as f64 / prefill + log.generated as f64 / decode;
    Ok(SessionBench {
        model: opened.therapist.describe(),
        turns,
        wall_s: wall_ms / 1000.0,
        startup_ms,
        model_load_ms,
        contexts_ms,
        model_ms_per_turn: model_ms / f64::from(turns.max(1)),
        orchestration_ms_per_turn: (wall_ms - model_ms - contexts_ms).max(0.0)
            / f64::from(turns.max(1)),
        prompt_tokens_processed: log.processed,
        final_prompt_tokens,
        processed_per_final: log.processed as f64 / final_prompt_tokens.max(1) as f64,
        generated_tokens: log.generated,
        session_prefill_tokens_per_s: (log.prefill_ms > 0)
            .then(|| log.processed as f64 * 1000.0 / log.prefill_ms as f64),
        session_decode_tokens_per_s: (log.decode_ms > 0)
            .then(|| log.generated as f64 * 1000.0 / log.decode_ms as f64),
        transcript_tokens: opened
            .therapist
            .tokens_in(&crate::text_format::render(&session.transcript)),
        prefill_tokens_per_s: prefill,
        decode_tokens_per_s: decode,
        ideal_s,
        wall_per_ideal: if ideal_s > 0.0 {
            wall.as_secs_f64() / ideal_s
        } else {
            0.0
        },
        peak_rss_mb: peak_rss_mb(),
    })
}

/// Prefill speed on a prompt about as long as an agent's final prompt, and
/// decode speed over 128 tokens, in tokens per second.
fn speeds(model: &dyn ChatModel, final_prompt_tokens: u64) -> Result<(f64, f64), ModelError> {
    let sentence = "The therapist and the patient went over the week together, looking at the \
moments when the patient's mood dropped and what went through their mind. ";
    // About 30 tokens a sentence; as long as the longer agent's last prompt.
    let repeats = (final_prompt_tokens / 2 / 30).max(1) as usize;
    let mut request = Request::text(sentence.repeat(repeats));
    request.sampling.max_tokens = 1;
    let done = model.conversation()?.complete(&request)?;
    let prefill = per_second(done.usage.prompt_tokens, done.prefill_ms);
    let mut request = Request::text(format!("{sentence}\n\nPatient:"));
    request.sampling.max_tokens = 128;
    request.sampling.stop = Vec::new();
    let done = model.conversation()?.complete(&request)?;
    let decode = per_second(done.usage.completion_tokens, done.decode_ms);
    Ok((prefill, decode))
}

fn per_second(tokens: u32, ms: u64) -> f64 {
    if ms == 0 {
        f64::INFINITY
    } else {
        f64::from(tokens) * 1000.0 / ms as f64
    }
}

/// The process's peak resident memory (Linux), in MB; 0 where unknown.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
