//! Benchmarks that print figures (never timed tests: the machines are
//! shared and noisy). `bench model` measures a chat model's prefill and
//! decode speed and what keeping each speaker's KV cache saves over a
//! 20-turn exchange.

pub mod batch;
pub mod quality;
pub mod safety;
pub mod session;
pub mod store;

use crate::model::spec::{Config, ModelSpec};
use crate::plan::{PlanKind, PlanModels, RunPlan, SessionPlan};
use crate::runner::{self, RoleModels, RunError, RunOutcome, Runner, Unobserved};
use crate::store::Store;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// The sessions a benchmark runs: one model for every role, one persona,
/// a fixed length.
#[derive(Debug, Clone)]
pub struct BenchSessions {
    pub model: ModelSpec,
    pub persona: String,
    pub turns: u32,
    /// Tokens a reply may have.
    pub max_tokens: u32,
    pub candidates: u32,
    pub config: Config,
}

impl BenchSessions {
    /// A plan of such sessions, without summaries, each exactly `turns`
    /// long (no natural end before the last turn), so that runs compare.
    pub fn plan(&self, kind: PlanKind) -> RunPlan {
        let mut plan = one_model_plan(kind, vec![self.persona.clone()], &self.model, &self.config);
        plan.session.max_turns = self.turns;
        plan.session.min_turns = self.turns;
        plan.session.max_reply_tokens = self.max_tokens;
        plan.session.candidates = self.candidates;
        plan.summaries = false;
        plan
    }
}

/// A plan of the config's default sessions with one model in every role
/// (no safety model), planned at a fixed date so that runs compare.
fn one_model_plan(
    kind: PlanKind,
    personas: Vec<String>,
    model: &ModelSpec,
    config: &Config,
) -> RunPlan {
    let spec = model.to_string();
    let mut session = SessionPlan::new("Nova", "2026-01-01T10:00:00".parse().expect("a date"));
    session.apply_config(config);
    let models = PlanModels {
        therapist: spec.clone(),
        patient: spec.clone(),
        summarizer: spec,
        safety: None,
    };
    RunPlan::new(kind, personas, models, session, config.clone())
}

/// Stores `plan` as a run in `store` and runs it to its end, unobserved;
/// returns the outcome and how long it took.
fn run_timed(
    store: Store,
    plan: &RunPlan,
    models: &RoleModels,
) -> Result<(RunOutcome, Duration), RunError> {
    run_timed_in(&Mutex::new(store), plan, models)
}

/// `run_timed` into a store the caller reads afterwards.
fn run_timed_in(
    store: &Mutex<Store>,
    plan: &RunPlan,
    models: &RoleModels,
) -> Result<(RunOutcome, Duration), RunError> {
    let run = runner::create(&mut store.lock().unwrap_or_else(|e| e.into_inner()), plan)?;
    let started = Instant::now();
    let clock = || started.elapsed();
    let outcome = Runner {
        store,
        models,
        interrupted: &AtomicBool::new(false),
        observer: &Unobserved,
        clock: &clock,
        leasing: &crate::worker::Leasing::for_this_process(crate::worker::DEFAULT_LEASE),
    }
    .execute(run, plan)?;
    Ok((outcome, started.elapsed()))
}

use crate::model::embedded::EmbeddedModel;
use crate::model::{ChatModel, Conversation, ModelError, Request, Sampling};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ModelBench {
    pub model: String,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    /// Decode speed of the backend against a bare llama.cpp loop on the
    /// same model, threads, prompt and sampler: greedy, then the sessions'
    /// sampler (embedded models only; empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decode_vs_bare: Vec<DecodeVsBare>,
    /// Several continuations of one prompt decoded together in the bare
    /// loop, one token of each per llama.cpp batch: what decoding several
    /// sessions' replies at once would give (embedded models only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub batched_decode: Vec<BatchedDecode>,
    pub multi_turn: MultiTurn,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecodeVsBare {
    /// "greedy", or "session" (the sessions' default sampler: top-k,
    /// top-p, temperature and the repetition penalty, seeded).
    pub sampler: &'static str,
    pub tokens: u32,
    pub backend_tokens_per_s: f64,
    pub bare_tokens_per_s: f64,
    /// backend / bare; 1.0 means no overhead.
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchedDecode {
    pub sequences: u32,
    /// Tokens of all sequences together.
    pub tokens: u32,
    pub tokens_per_s: f64,
    /// tokens_per_s over that of one sequence, measured in the same run.
    pub vs_one: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MultiTurn {
    pub turns: u32,
    /// Tokens of the final transcript prompt and its reply.
    pub transcript_tokens: u32,
    pub kept: Replay,
    pub dropped: Replay,
    /// dropped wall time / kept wall time.
    pub speedup: f64,
    /// Whether both replays produced the same transcript (the cache must
    /// not change results).
    pub same_text: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Replay {
    /// Prompt tokens actually decoded (not served from the cache), both speakers.
    pub prompt_tokens_processed: u32,
    /// The same for each speaker, with the length of its final prompt.
    pub per_speaker: [SpeakerTokens; 2],
    pub wall_ms: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SpeakerTokens {
    pub prompt_tokens_processed: u32,
    pub final_prompt_tokens: u32,
}

pub const TURNS: u32 = 20;
const REPLY_TOKENS: u32 = 48;

const PREFILL_TEXT: &str = "The therapist and the patient went over the week together, \
looking at the moments when the patient's mood dropped and what went through their mind. ";

/// What both speakers' prompts share: the session so far starts here.
const EXCHANGE_START: &str = "Session Number: 1\n\n\
Patient: Hi. I have been feeling low for a few weeks and I am not sleeping well.\n\n\
Therapist: Thank you for telling me. On a scale from 0 to 10, how would you rate your mood this week?";

/// An example session both speakers' prompts carry ahead of the live one,
/// as few-shot prompts for a base model do.
const EXAMPLE_SESSION: &str = "Example session:\n\n\
Patient: I've been dreading work all week. My manager moved a deadline up and I keep thinking I'll mess it up.\n\n\
Therapist: That sounds stressful. When you picture messing it up, what exactly do you see happening?\n\n\
Patient: I see myself presenting and someone pointing out a mistake, and everyone realising I'm not good at my job.\n\n\
Therapist: So the thought is 'if I make one mistake, everyone will see I'm not good enough'. How strongly do you believe that right now, from 0 to 100?\n\n\
Patient: Maybe 80. It feels very true when I'm at my desk.\n\n\
Therapist: Let's look at it together. What evidence do you have that supports the thought, and what evidence doesn't fit it?\n\n\
Patient: Last month I made an error in a report and my manager just asked me to fix it. Nobody said anything else. But I still felt awful for days.\n\n\
Therapist: So when a mistake did happen, the outcome was a request to fix it, not people deciding you were bad at your job. What would you say to a colleague who had the same thought?\n\n\
Patient: I'd tell them one mistake doesn't define them, and that everybody makes errors. I guess I'm harder on myself than on other people.\n\n\
Therapist: That's an important observation. This week, would you be willing to write down the thought each time it shows up, rate how much you believe it, and write one piece of evidence that doesn't fit?\n\n\
Patient: Yes, I can try that. I'll keep a note on my phone.\n\n\
Therapist: Good. Before we finish, how was today's session for you? Was there anything that didn't feel helpful?\n\n\
Patient: It helped to slow down and look at the thought. I didn't expect that.\n\n\
Live session:\n\n";

/// Each speaker's own instructions, ahead of the example and the shared
/// transcript, as the agents' prompts will have them.
const SPEAKER_HEADERS: [&str; 2] = [
    "The following is a transcript of a cognitive behavioural therapy session. The patient is \
Sam, 34, a nurse who has felt low since a break-up in the spring, sleeps badly, and has stopped \
seeing friends. Sam answers in two or three sentences, honestly but a little guardedly, and talks \
about concrete situations from the past week: long night shifts, an empty flat, a sister who calls \
on Sundays. Sam does not give advice and does not speak for the therapist. Sam tends to think \
'nothing I do makes a difference' and 'people get tired of me', feels sad and ashamed, and copes by \
staying in bed and cancelling plans.\n\n",
    "The following is a transcript of a cognitive behavioural therapy session. The therapist is \
Nova, a warm and structured CBT therapist. Nova checks the patient's mood on a scale from 0 to 10, \
sets an agenda together with the patient, asks one question at a time, uses Socratic questions to \
look at automatic thoughts and the evidence for and against them, names thinking traps such as \
all-or-nothing thinking or mind reading, suggests small behavioural experiments, summarises, agrees \
on homework, and asks for feedback. Nova never writes the patient's lines and never uses \
placeholders.\n\n",
];

/// The numbers of sequences decoded together in `batched_decode`, beyond
/// the one sequence of the session-sampler bare run.
const BATCHED_SEQUENCES: [u32; 3] = [2, 4, 8];

/// Runs the model benchmark; `progress` is told each stage.
pub fn bench_model(
    model: &dyn ChatModel,
    embedded: Option<&EmbeddedModel>,
    progress: &mut dyn FnMut(&str),
) -> Result<ModelBench, ModelError> {
    progress("prefill");
    let mut conversation = model.conversation()?;
    let mut request = Request::text(PREFILL_TEXT.repeat(30));
    request.sampling.max_tokens = 1;
    let done = conversation.complete(&request)?;
    let prefill_tokens_per_s = per_second(done.usage.prompt_tokens, done.prefill_ms as f64);

    progress("decode");
    // Greedy and without a repetition penalty, then with the sessions' own
    // sampler; each measured the same way in the bare loop.
    let decode_prompt = format!(
        "{}{EXAMPLE_SESSION}{EXCHANGE_START}\n\nPatient:",
        SPEAKER_HEADERS[0]
    );
    let greedy = Sampling {
        max_tokens: 128,
        temperature: 0.0,
        repeat_penalty: 1.0,
        ..Sampling::default()
    };
    let session = Sampling {
        max_tokens: 128,
        seed: 7,
        ..Sampling::default()
    };
    let mut decode_tokens_per_s = 0.0;
    let mut decode_vs_bare = Vec::new();
    let mut batched_decode: Vec<BatchedDecode> = Vec::new();
    for (label, sampling) in [("greedy", greedy), ("session", session.clone())] {
        let mut request = Request::text(decode_prompt.clone());
        request.sampling = sampling.clone();
        let done = model.conversation()?.complete(&request)?;
        let backend = per_second(done.usage.completion_tokens, done.decode_ms as f64);
        if label == "greedy" {
            decode_tokens_per_s = backend;
        }
        let Some(embedded) = embedded else { break };
        progress(&format!("bare llama.cpp loop, {label} sampler"));
        let (tokens, ms) = embedded.bare_decode(&decode_prompt, &sampling, 1)?;
        let bare = per_second(tokens, ms);
        decode_vs_bare.push(DecodeVsBare {
            sampler: label,
            tokens,
            backend_tokens_per_s: backend,
            bare_tokens_per_s: bare,
            ratio: if bare > 0.0 { backend / bare } else { 0.0 },
        });
        if label == "session" {
            // One sequence in the batched measurement is this very run.
            batched_decode.push(BatchedDecode {
                sequences: 1,
                tokens,
                tokens_per_s: bare,
                vs_one: 1.0,
            });
        }
    }

    if let Some(embedded) = embedded {
        let one = batched_decode.first().map_or(0.0, |b| b.tokens_per_s);
        for sequences in BATCHED_SEQUENCES {
            progress(&format!("bare loop, {sequences} sequences in one batch"));
            let (tokens, ms) = embedded.bare_decode(&decode_prompt, &session, sequences)?;
            let tokens_per_s = per_second(tokens, ms);
            batched_decode.push(BatchedDecode {
                sequences,
                tokens,
                tokens_per_s,
                vs_one: if one > 0.0 { tokens_per_s / one } else { 0.0 },
            });
        }
    }

    progress("20 turns, cache kept");
    let (kept, kept_text, transcript_tokens) = replay(model, true)?;
    progress("20 turns, cache dropped before every turn");
    let (dropped, dropped_text, _) = replay(model, false)?;
    let speedup = if kept.wall_ms > 0 {
        dropped.wall_ms as f64 / kept.wall_ms as f64
    } else {
        0.0
    };
    Ok(ModelBench {
        model: model.describe(),
        prefill_tokens_per_s,
        decode_tokens_per_s,
        decode_vs_bare,
        batched_decode,
        multi_turn: MultiTurn {
            turns: TURNS,
            transcript_tokens,
            kept,
            dropped,
            speedup,
            same_text: kept_text == dropped_text,
        },
    })
}

/// Plays a two-speaker exchange, each speaker with its own conversation;
/// `keep_cache` false drops each conversation's cache before every turn,
/// which is what a stateless client costs.
fn replay(model: &dyn ChatModel, keep_cache: bool) -> Result<(Replay, String, u32), ModelError> {
    let mut speakers: [Box<dyn Conversation>; 2] = [model.conversation()?, model.conversation()?];
    let labels = ["Patient", "Therapist"];
    let mut transcript = EXCHANGE_START.to_string();
    let mut per_speaker = [SpeakerTokens::default(); 2];
    let mut transcript_tokens = 0;
    let started = Instant::now();
    for turn in 0..TURNS {
        let who = (turn % 2) as usize;
        let prompt = format!(
            "{}{EXAMPLE_SESSION}{transcript}\n\n{}:",
            SPEAKER_HEADERS[who], labels[who]
        );
        let mut request = Request::text(prompt);
        request.sampling.max_tokens = REPLY_TOKENS;
        request.sampling.seed = turn;
        request.sampling.stop = vec!["\n".into()];
        if !keep_cache {
            speakers[who].forget();
        }
        let done = speakers[who].complete(&request)?;
        let usage = done.usage;
        per_speaker[who].prompt_tokens_processed +=
            usage.prompt_tokens - usage.cached_prompt_tokens;
        per_speaker[who].final_prompt_tokens = usage.prompt_tokens;
        transcript_tokens = usage.prompt_tokens + usage.completion_tokens;
        let reply = done.text.trim();
        let reply = if reply.is_empty() { "Okay." } else { reply };
        transcript = format!("{transcript}\n\n{}: {reply}", labels[who]);
    }
    let replay = Replay {
        prompt_tokens_processed: per_speaker.iter().map(|s| s.prompt_tokens_processed).sum(),
        per_speaker,
        wall_ms: started.elapsed().as_millis() as u64,
    };
    Ok((replay, transcript, transcript_tokens))
}

fn per_second(tokens: u32, ms: f64) -> f64 {
    if ms <= 0.0 {
        0.0
    } else {
        tokens as f64 * 1000.0 / ms
    }
}
