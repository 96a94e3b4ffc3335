//! Several conversations decoding together (`[embedded] parallel = N`, N of
//! 2 or more): one llama.cpp context with a sequence per conversation, and
//! a scheduler on the model's thread that puts the next token of every
//! reply being written, plus a chunk of a prompt being read, into each
//! llama.cpp batch. One batch of N tokens costs little more than one token
//! (`bench model`: 4 sequences decode 2.25 times as many tokens per second
//! as one), so sessions run side by side finish sooner.
//!
//! The price is reproducibility: llama.cpp's logits depend on the batch a
//! token was decoded in, so a conversation's text depends on which others
//! happened to decode beside it. That is why it is opt-in.
//!
//! At most `parallel` requests are in flight; more wait their turn. Each
//! conversation keeps its sequence and cache between requests (the longest
//! common prefix is reused, like `exact_reuse = false`) until the cache is
//! needed for others: then the conversations idle longest lose theirs.

use super::reply::Reply;
use super::{BareJob, Event, Job, Shared, decode, decode_failed, new_context, reused_prefix};
use crate::model::{ModelError, Request};
use llama_cpp_2::DecodeError;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Instant;

/// Sequences per request in flight: the two agents of a session keep
/// their caches while a summarizer or safety model is asked, with room over.
const SEQUENCES_PER_SLOT: u32 = 4;

/// The largest `parallel`: llama.cpp allows 256 sequences per context.
pub const MAX_PARALLEL: u32 = 64;

/// The model's thread in batched mode.
pub(super) fn work(shared: &Shared, inbox: &mpsc::Receiver<Job>, parallel: u32) {
    let mut scheduler = Scheduler::new(shared, parallel);
    loop {
        if scheduler.idle() {
            match inbox.recv() {
                Ok(job) => scheduler.take(job),
                Err(_) => return,
            }
        }
        while let Ok(job) = inbox.try_recv() {
            scheduler.take(job);
        }
        scheduler.admit();
        scheduler.step();
    }
}

struct Scheduler<'m> {
    shared: &'m Shared,
    /// Created when the first conversation opens.
    ctx: Option<LlamaContext<'m>>,
    batch: LlamaBatch<'static>,
    conversations: HashMap<u64, Cached>,
    /// Sequence ids no conversation holds.
    free: Vec<i32>,
    waiting: VecDeque<Waiting>,
    active: Vec<Active>,
    parallel: usize,
    /// Sequences in the context.
    sequences: u32,
    /// Cells of the shared cache: `parallel` conversations of full length.
    capacity: usize,
    /// Counts steps, to know which conversations idled longest.
    clock: u64,
}

/// A conversation's place in the shared cache.
struct Cached {
    seq: Option<i32>,
    /// The tokens its sequence holds, in order.
    tokens: Vec<LlamaToken>,
    used_at: u64,
    /// Asked to forget: its next prompt is read, not shared.
    forgotten: bool,
}

struct Waiting {
    id: u64,
    request: Request,
    events: mpsc::Sender<Event>,
}

/// A request in flight.
struct Active {
    id: u64,
    seq: i32,
    request: Request,
    prompt: Vec<LlamaToken>,
    /// Prompt tokens found in the cache, its own or shared.
    kept: usize,
    /// Whether it may take another conversation's cache.
    shares: bool,
    started: Instant,
    events: mpsc::Sender<Event>,
    /// None while the prompt is being read.
    reply: Option<Reply>,
    /// The reply's token to decode in the next batch.
    next: Option<LlamaToken>,
}

/// What one active request put in the batch being decoded.
struct Fed {
    active: usize,
    tokens: Vec<LlamaToken>,
    /// Where the logits of its last token are, when it asked for them.
    logits_at: Option<i32>,
}

impl<'m> Scheduler<'m> {
    fn new(shared: &'m Shared, parallel: u32) -> Scheduler<'m> {
        let config = &shared.config;
        let sequences = parallel * SEQUENCES_PER_SLOT;
        Scheduler {
            shared,
            ctx: None,
            batch: LlamaBatch::new((config.batch_size + parallel) as usize, 1),
            conversations: HashMap::new(),
            free: (0..sequences as i32).rev().collect(),
            waiting: VecDeque::new(),
            active: Vec::new(),
            parallel: parallel as usize,
            sequences,
            capacity: (config.context_size * parallel) as usize,
            clock: 0,
        }
    }

    fn idle(&self) -> bool {
        self.active.is_empty() && self.waiting.is_empty()
    }

    fn take(&mut self, job: Job) {
        match job {
            Job::Open { id, ready } => {
                let opened = self.context().map(|_| ());
                if opened.is_ok() {
                    let cached = Cached {
                        seq: None,
                        tokens: Vec::new(),
                        used_at: self.clock,
                        forgotten: false,
                    };
                    self.conversations.insert(id, cached);
                }
                let _ = ready.send(opened);
            }
            Job::Run {
                id,
                request,
                events,
            } => {
                if self.conversations.contains_key(&id) {
                    self.waiting.push_back(Waiting {
                        id,
                        request,
                        events,
                    });
                } else {
                    let error = ModelError::Backend(format!("no conversation {id}"));
                    let _ = events.send(Event::Done(Err(error)));
                }
            }
            // A conversation asks only between its own requests.
            Job::Forget { id } => {
                self.drop_cache(id);
                if let Some(cached) = self.conversations.get_mut(&id) {
                    cached.forgotten = true;
                }
            }
            Job::Close { id } => {
                self.waiting.retain(|w| w.id != id);
                self.active.retain(|a| a.id != id);
                self.drop_cache(id);
                if let Some(seq) = self.conversations.remove(&id).and_then(|c| c.seq) {
                    self.free.push(seq);
                }
            }
            Job::Bare(bare) => BareJob::run(bare, self.shared),
        }
    }

    fn context(&mut self) -> Result<&mut LlamaContext<'m>, ModelError> {
        if self.ctx.is_none() {
            let config = &self.shared.config;
            self.ctx = Some(new_context(
                self.shared,
                self.capacity as u32,
                config.batch_size + self.parallel as u32,
                self.sequences,
            )?);
        }
        Ok(self.ctx.as_mut().expect("just created"))
    }

    /// Empties a conversation's sequence; it keeps the sequence id.
    fn drop_cache(&mut self, id: u64) {
        let Some(cached) = self.conversations.get_mut(&id) else {
            return;
        };
        if let (Some(seq), Some(ctx)) = (cached.seq, self.ctx.as_mut()) {
            let _ = ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        }
        cached.tokens.clear();
    }

    /// Whether a request of conversation `id` is in flight or waiting (a
    /// waiting one is about to need its cache).
    fn in_use(&self, id: u64) -> bool {
        self.active.iter().any(|a| a.id == id) || self.waiting.iter().any(|w| w.id == id)
    }

    /// The conversations not in use that hold a cache, longest idle first.
    fn idle_conversations(&self) -> Vec<u64> {
        let mut idle: Vec<(u64, u64)> = self
            .conversations
            .iter()
            .filter(|(id, c)| c.seq.is_some() && !self.in_use(**id))
            .map(|(id, c)| (c.used_at, *id))
            .collect();
        idle.sort_unstable();
        idle.into_iter().map(|(_, id)| id).collect()
    }

    fn used(&self) -> usize {
        self.conversations.values().map(|c| c.tokens.len()).sum()
    }

    /// Drops idle caches, longest idle first, until `cells` are free.
    fn make_room(&mut self, cells: usize) {
        for id in self.idle_conversations() {
            if self.capacity.saturating_sub(self.used()) >= cells {
                return;
            }
            self.drop_cache(id);
        }
    }

    /// Starts waiting requests while fewer than `parallel` are in flight.
    fn admit(&mut self) {
        while self.active.len() < self.parallel {
            let Some(waiting) = self.waiting.pop_front() else {
                return;
            };
            match self.start(&waiting) {
                Ok(active) => self.active.push(active),
                Err(e) => {
                    let _ = waiting.events.send(Event::Done(Err(e)));
                }
            }
        }
    }

    fn start(&mut self, waiting: &Waiting) -> Result<Active, ModelError> {
        let prompt = self.shared.prompt_tokens(&waiting.request.prompt)?;
        let seq = self.sequence_for(waiting.id)?;
        self.context()?;
        let kept = self.cut_back(waiting.id, seq, &prompt);
        let cached = self.conversations.get_mut(&waiting.id).expect("admitted");
        // After `forget`, a conversation reads its next prompt itself.
        let shares = !std::mem::take(&mut cached.forgotten);
        let kept = match shares {
            true => self.share(waiting.id, seq, &prompt)?.unwrap_or(kept),
            false => kept,
        };
        Ok(Active {
            id: waiting.id,
            seq,
            request: waiting.request.clone(),
            prompt,
            kept,
            shares,
            started: Instant::now(),
            events: waiting.events.clone(),
            reply: None,
            next: None,
        })
    }

    /// Cuts conversation `id`'s cache back to the longest prefix `prompt`
    /// shares with it; returns how many tokens it keeps.
    fn cut_back(&mut self, id: u64, seq: i32, prompt: &[LlamaToken]) -> usize {
        let ctx = self.ctx.as_mut().expect("made before requests start");
        let cached = self.conversations.get_mut(&id).expect("admitted");
        let mut kept = reused_prefix(&cached.tokens, prompt, None);
        if kept < cached.tokens.len()
            && !ctx
                .clear_kv_cache_seq(Some(seq as u32), Some(kept as u32), None)
                .unwrap_or(false)
        {
            kept = 0;
        }
        if !holds(ctx, seq, kept, self.shared.sliding_window) {
            kept = 0;
        }
        if kept == 0 {
            let _ = ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        }
        cached.tokens.truncate(kept);
        kept
    }

    /// When another conversation's cache holds more of `prompt` than
    /// conversation `id` does (the sessions of a batch often open with the
    /// same prompt), its cells are shared with `id`'s sequence instead of
    /// being read again. Returns how many prompt tokens `id` then holds,
    /// when it took a share.
    fn share(
        &mut self,
        id: u64,
        seq: i32,
        prompt: &[LlamaToken],
    ) -> Result<Option<usize>, ModelError> {
        let ctx = self.ctx.as_mut().expect("made before requests start");
        let held = self.conversations[&id].tokens.len();
        // Less than a chunk is not worth it (every prompt shares the BOS).
        let worth = held + self.shared.config.batch_size as usize;
        let window = self.shared.sliding_window;
        let donor = self
            .conversations
            .iter()
            .filter(|(other, _)| **other != id)
            .filter_map(|(_, c)| Some((c.seq?, reused_prefix(&c.tokens, prompt, None))))
            .filter(|&(donor, common)| common >= worth && holds(ctx, donor, common, window))
            .max_by_key(|&(_, common)| common);
        let Some((donor, common)) = donor else {
            return Ok(None);
        };
        let _ = ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        ctx.kv_cache_seq_cp(donor, seq, Some(0), Some(common as u32))
            .map_err(|e| ModelError::Backend(format!("cannot share a cache: {e}")))?;
        let cached = self.conversations.get_mut(&id).expect("looked up above");
        cached.tokens = prompt[..common].to_vec();
        Ok(Some(common))
    }

    /// The conversation's sequence id, taking a free one or the one of the
    /// conversation idle longest.
    fn sequence_for(&mut self, id: u64) -> Result<i32, ModelError> {
        if let Some(seq) = self.conversations.get(&id).and_then(|c| c.seq) {
            return Ok(seq);
        }
        let seq = match self.free.pop() {
            Some(seq) => seq,
            None => {
                let idle = self.idle_conversations();
                let oldest = *idle.first().ok_or_else(|| {
                    ModelError::Backend("no free llama.cpp sequence for a conversation".into())
                })?;
                self.drop_cache(oldest);
                let cached = self.conversations.get_mut(&oldest).expect("listed");
                cached
                    .seq
                    .take()
                    .expect("idle conversations hold a sequence")
            }
        };
        if let Some(cached) = self.conversations.get_mut(&id) {
            cached.seq = Some(seq);
        }
        Ok(seq)
    }

    /// Decodes one batch: the next token of every reply being written and
    /// up to `batch_size` tokens of prompts being read.
    fn step(&mut self) {
        if self.active.is_empty() {
            return;
        }
        self.clock += 1;
        // A prompt waiting for its turn to be read may meanwhile have been
        // read by another conversation.
        for i in 0..self.active.len() {
            let active = &self.active[i];
            if active.reply.is_some() || !active.shares {
                continue;
            }
            let (id, seq) = (active.id, active.seq);
            let held = self.conversations[&id].tokens.len();
            // Lent out for the call rather than copied at every step.
            let prompt = std::mem::take(&mut self.active[i].prompt);
            let shared = self.share(id, seq, &prompt);
            self.active[i].prompt = prompt;
            match shared {
                Ok(Some(common)) => self.active[i].kept += common - held,
                Ok(None) => {}
                Err(e) => return self.fail_all(e),
            }
        }
        let decoding = self.active.iter().filter(|a| a.next.is_some()).count();
        let prefill: usize = self
            .active
            .iter()
            .filter(|a| a.reply.is_none())
            .map(|a| a.prompt.len() - self.conversations[&a.id].tokens.len())
            .sum();
        let chunk = self.shared.config.batch_size as usize;
        self.make_room(decoding + prefill.min(chunk));
        let room = self.capacity.saturating_sub(self.used() + decoding);

        let fed = match self.fill_batch(room) {
            Ok(fed) => fed,
            Err(e) => return self.fail_all(e),
        };
        if fed.is_empty() {
            // Cannot happen: `parallel` conversations of full length fit.
            let full = ModelError::Backend("the shared llama.cpp cache is full".into());
            return self.fail_all(full);
        }
        if let Err(e) = self.decode() {
            self.fail_all(e);
            return;
        }
        self.record(decoding);

        let mut done = Vec::new();
        for fed in fed {
            let cached = self
                .conversations
                .get_mut(&self.active[fed.active].id)
                .expect("active requests have a conversation");
            cached.tokens.extend_from_slice(&fed.tokens);
            cached.used_at = self.clock;
            let Some(logits_at) = fed.logits_at else {
                continue;
            };
            let room = cached.tokens.len() < self.shared.config.context_size as usize;
            if let Some(finished) = self.advance(fed.active, logits_at, room) {
                done.push((fed.active, finished));
            }
        }
        for (i, result) in done.into_iter().rev() {
            let active = self.active.remove(i);
            let _ = active.events.send(Event::Done(result));
        }
    }

    /// Puts the next token of every reply being written, and up to
    /// `batch_size` prompt tokens (no more than `room`), into the batch.
    fn fill_batch(&mut self, mut room: usize) -> Result<Vec<Fed>, ModelError> {
        let mut budget = self.shared.config.batch_size as usize;
        self.batch.clear();
        let mut fed = Vec::new();
        for (i, active) in self.active.iter().enumerate() {
            let at = self.conversations[&active.id].tokens.len();
            let tokens: Vec<LlamaToken> = match (&active.reply, active.next) {
                (Some(_), Some(token)) => vec![token],
                (Some(_), None) => Vec::new(),
                (None, _) => {
                    let take = (active.prompt.len() - at).min(budget).min(room);
                    budget -= take;
                    room -= take;
                    active.prompt[at..at + take].to_vec()
                }
            };
            if tokens.is_empty() {
                continue;
            }
            let ends_prompt = active.reply.is_none() && at + tokens.len() == active.prompt.len();
            let wants_logits = active.reply.is_some() || ends_prompt;
            for (j, &token) in tokens.iter().enumerate() {
                let logits = wants_logits && j + 1 == tokens.len();
                self.batch
                    .add(token, (at + j) as i32, &[active.seq], logits)
                    .map_err(|e| ModelError::Backend(format!("batch: {e}")))?;
            }
            fed.push(Fed {
                active: i,
                tokens,
                logits_at: wants_logits.then(|| self.batch.n_tokens() - 1),
            });
        }
        Ok(fed)
    }

    /// Moves request `i` on from the logits at `logits_at`; returns its
    /// result when it is done.
    fn advance(
        &mut self,
        i: usize,
        logits_at: i32,
        room: bool,
    ) -> Option<Result<crate::model::Completion, ModelError>> {
        let model = &self.shared.model;
        let ctx = self.ctx.as_ref().expect("a batch was decoded in it");
        let active = &mut self.active[i];
        let mut reply = match active.reply.take() {
            Some(reply) => reply,
            None => {
                let prefill_ms = active.started.elapsed().as_millis() as u64;
                match Reply::new(
                    model,
                    &active.request,
                    &active.prompt,
                    active.kept,
                    prefill_ms,
                ) {
                    Ok(reply) => reply,
                    Err(e) => return Some(Err(e)),
                }
            }
        };
        let events = &active.events;
        let mut on_delta = |text: &str| {
            let _ = events.send(Event::Delta(text.to_string()));
        };
        active.next = reply.advance(model, ctx, logits_at, room, &mut on_delta);
        if active.next.is_some() {
            active.reply = Some(reply);
            None
        } else {
            Some(Ok(reply.finish(&mut on_delta)))
        }
    }

    /// Decodes the batch; when llama.cpp finds no room in the cache, the
    /// idle conversations' caches are dropped and it is tried once more.
    fn decode(&mut self) -> Result<(), ModelError> {
        let ctx = self
            .ctx
            .as_mut()
            .expect("requests run after a conversation opened");
        match decode(ctx, &mut self.batch) {
            Err(DecodeError::NoKvCacheSlot) => {
                for id in self.idle_conversations() {
                    self.drop_cache(id);
                }
                let ctx = self.ctx.as_mut().expect("still there");
                decode(ctx, &mut self.batch).map_err(decode_failed)
            }
            other => other.map_err(decode_failed),
        }
    }

    /// Every request in flight gets `error`, and their caches are dropped:
    /// what a failed batch left in them is unknown.
    fn fail_all(&mut self, error: ModelError) {
        for active in std::mem::take(&mut self.active) {
            self.drop_cache(active.id);
            let _ = active.events.send(Event::Done(Err(error.clone())));
        }
    }

    /// Counts a batch that decoded replies (a batch that only read a
    /// prompt says nothing of how many replies were written together).
    fn record(&self, decoding: usize) {
        if decoding == 0 {
            return;
        }
        let stats = &self.shared.batching;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.replies.fetch_add(decoding as u64, Ordering::Relaxed);
        stats.widest.fetch_max(decoding as u64, Ordering::Relaxed);
    }
}

/// Whether sequence `seq` can go on after its first `kept` tokens: the
/// cache still holds every position the next token attends to. In a cache
/// shared by several sequences, llama.cpp gives the cells of positions that
/// fell out of a sequence's sliding window (`window` tokens; 0 when the
/// model has none) to other sequences' tokens, so the sliding-window layers
/// may have lost positions that cutting back to `kept`, or sharing the first
/// `kept`, would need again. Positions held are contiguous, so the lowest
/// tells.
fn holds(ctx: &LlamaContext<'_>, seq: i32, kept: usize, window: u32) -> bool {
    if kept == 0 {
        return true;
    }
    let first_needed = (kept + 1).saturating_sub(window as usize);
    let lowest = ctx.kv_cache_seq_pos_min(seq);
    lowest >= 0 && lowest as usize <= first_needed
}
