//! The embedded backend: llama.cpp in-process through `llama-cpp-2`.
//!
//! The weights are loaded once per [`EmbeddedModel`] and shared. Each
//! conversation has a llama.cpp context, owned by the model's one thread
//! (contexts are tied to it by design: requests and streamed text go over
//! channels), and keeps the tokens its KV cache holds. A request
//! decodes only what follows the longest common prefix of its prompt and
//! those tokens; from the first difference on, the cache is dropped and
//! re-decoded. Results do not depend on the cache: sampling state is built
//! afresh for every request from the prompt and the seed.

use super::{
    ChatModel, Completion, Conversation, FinishReason, ModelError, Prompt, Request, Sampling,
    Usage, find_stop, safe_prefix_len,
};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use serde::Serialize;
use std::io::Read;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// How conversations on an embedded model are set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// Tokens of context per conversation.
    pub context_size: u32,
    /// Tokens per llama.cpp batch while reading a prompt; prompts are read
    /// in chunks aligned to multiples of this.
    pub batch_size: u32,
    /// Reuse only what gives bit-for-bit the result of a fresh read.
    ///
    /// llama.cpp's logits depend on how tokens were batched (measured here:
    /// reading a 75-token prompt as 6 + 69 tokens instead of 75 moved the
    /// top logits by about 0.2), so a cache filled in other batches than a
    /// fresh read would use changes sampled text. With `exact_reuse`, only
    /// whole aligned prompt chunks are reused (a reply, decoded one token
    /// at a time, is read again with the next prompt), and a conversation
    /// gives the same text with its cache as without. Without it, the whole
    /// common prefix is reused: fewer tokens processed, results that may
    /// differ from a cache-less run.
    pub exact_reuse: bool,
    /// Threads for decoding; the number of cores by default.
    pub threads: u32,
    /// A built-in llama.cpp chat template by name (`chatml`, `gemma`,
    /// `llama3`, ...), for models whose GGUF has none or a wrong one.
    pub chat_template: Option<String>,
}

impl Default for EmbeddedConfig {
    fn default() -> EmbeddedConfig {
        EmbeddedConfig {
            context_size: 8192,
            batch_size: 32,
            exact_reuse: true,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get() as u32),
            chat_template: None,
        }
    }
}

/// Facts about a loaded GGUF model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub size: u64,
    pub architecture: String,
    pub parameters: u64,
    pub context_length: u32,
    /// Whether the GGUF carries its own chat template.
    pub chat_template: bool,
}

/// A GGUF model loaded into memory, shared by its conversations.
///
/// One thread per model owns every conversation's llama.cpp context and
/// runs their requests one at a time. With a thread per conversation (as
/// before), each had its own OpenMP team: more threads than cores, so
/// OpenMP let its workers sleep between tokens and a session decoded at
/// 25 tokens/s where one conversation alone decoded at 38.
#[derive(Clone)]
pub struct EmbeddedModel {
    shared: Arc<Shared>,
    /// To the model's thread; it ends when the model and all its
    /// conversations are dropped.
    jobs: mpsc::Sender<Job>,
}

struct Shared {
    model: LlamaModel,
    path: PathBuf,
    config: EmbeddedConfig,
    template: Option<LlamaChatTemplate>,
}

/// llama.cpp's backend may be initialised once per process.
fn backend() -> Result<&'static LlamaBackend, ModelError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs every load and decode to stderr; cbtsim reports
            // what matters itself.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ModelError::Backend(format!("cannot start llama.cpp: {e}")))
}

/// One llama.cpp operation at a time in the process: creating a context
/// from a model (unsound in parallel: it may write to the model) and
/// computing a batch. Each decode already uses every core (`threads`), so
/// two at once (the sessions of a batch) would only oversubscribe them;
/// concurrent sessions interleave their decodes instead.
static LLAMA: Mutex<()> = Mutex::new(());

fn llama_lock() -> std::sync::MutexGuard<'static, ()> {
    LLAMA.lock().unwrap_or_else(|e| e.into_inner())
}

impl EmbeddedModel {
    /// Loads a GGUF file. A missing file, a file that is not GGUF and a
    /// file llama.cpp cannot load are errors that name the path.
    pub fn load(path: &Path, config: EmbeddedConfig) -> Result<EmbeddedModel, ModelError> {
        check_gguf_header(path)?;
        let backend = backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| {
                ModelError::Backend(format!(
                    "llama.cpp could not load {} ({e}); the file may be truncated or corrupt",
                    path.display()
                ))
            })?;
        let template = match &config.chat_template {
            Some(name) => Some(LlamaChatTemplate::new(name).map_err(|e| {
                ModelError::Backend(format!("invalid chat template name {name:?}: {e}"))
            })?),
            None => model.chat_template(None).ok(),
        };
        let shared = Arc::new(Shared {
            model,
            path: path.to_path_buf(),
            config,
            template,
        });
        let (jobs, inbox) = mpsc::channel();
        let owned = shared.clone();
        std::thread::Builder::new()
            .name("cbtsim-llama".into())
            .spawn(move || work(&owned, &inbox))
            .map_err(|e| ModelError::Backend(format!("cannot start the model's thread: {e}")))?;
        Ok(EmbeddedModel { shared, jobs })
    }

    /// The yardstick of `cbtsim bench model`: a bare llama-cpp-2 decoding
    /// loop with the given sampler, with none of the backend's machinery,
    /// continuing `prompt` in `sequences` ways at once: one token of each
    /// sequence per llama.cpp batch (1: the plain loop; more: what decoding
    /// several sessions' replies together would give). Each sequence has
    /// its own seed and stops at the end of text or `max_tokens`.
    ///
    /// It runs on the model's thread, as requests do: on another thread it
    /// would bring a second OpenMP team, and two teams on the same cores
    /// slow each other down (that, not the loop, is what was measured at
    /// first: half the backend's speed). Returns (tokens of all sequences,
    /// milliseconds).
    pub fn bare_decode(
        &self,
        prompt: &str,
        sampling: &Sampling,
        sequences: u32,
    ) -> Result<(u32, f64), ModelError> {
        let (done, result) = mpsc::channel();
        let job = Job::Bare {
            prompt: prompt.to_string(),
            sampling: sampling.clone(),
            sequences: sequences.max(1),
            done,
        };
        self.jobs.send(job).map_err(|_| thread_gone())?;
        result.recv().map_err(|_| thread_gone())?
    }

    pub fn info(&self) -> ModelInfo {
        let model = &self.shared.model;
        ModelInfo {
            path: self.shared.path.clone(),
            size: std::fs::metadata(&self.shared.path).map_or(0, |m| m.len()),
            architecture: model
                .meta_val_str("general.architecture")
                .unwrap_or_else(|_| "unknown".into()),
            parameters: model.n_params(),
            context_length: model.n_ctx_train(),
            chat_template: model.chat_template(None).is_ok(),
        }
    }

    /// Whether chat prompts can be used (the GGUF or the config names a template).
    pub fn has_chat_template(&self) -> bool {
        self.shared.template.is_some()
    }

    /// Number of tokens `text` is, as a completion prompt (with BOS).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.shared
            .model
            .vocab()
            .tokenize(text.as_bytes(), true, false)
            .len()
    }
}

fn check_gguf_header(path: &Path) -> Result<(), ModelError> {
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| {
        ModelError::ModelMissing(format!(
            "cannot open the model file {}: {e}",
            path.display()
        ))
    })?;
    if file.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
        return Err(ModelError::Backend(format!(
            "{} is not a GGUF model file",
            path.display()
        )));
    }
    Ok(())
}

impl ChatModel for EmbeddedModel {
    fn describe(&self) -> String {
        format!("local:{}", self.shared.path.display())
    }

    fn conversation(&self) -> Result<Box<dyn Conversation>, ModelError> {
        Ok(Box::new(EmbeddedConversation::open(self.jobs.clone())?))
    }

    fn chat(&self) -> bool {
        self.has_chat_template()
    }

    fn tokens_in(&self, text: &str) -> Option<u32> {
        Some(self.count_tokens(text) as u32)
    }
}

enum Job {
    Open {
        id: u64,
        ready: mpsc::Sender<Result<(), ModelError>>,
    },
    Run {
        id: u64,
        request: Request,
        events: mpsc::Sender<Event>,
    },
    Forget {
        id: u64,
    },
    Close {
        id: u64,
    },
    /// `bench model`'s yardstick, run on this thread like every request.
    Bare {
        prompt: String,
        sampling: Sampling,
        sequences: u32,
        done: mpsc::Sender<Result<(u32, f64), ModelError>>,
    },
}

enum Event {
    Delta(String),
    Done(Result<Completion, ModelError>),
}

/// A conversation: a llama.cpp context on the model's thread.
struct EmbeddedConversation {
    id: u64,
    jobs: mpsc::Sender<Job>,
}

fn thread_gone() -> ModelError {
    ModelError::Backend("the model's thread stopped".into())
}

impl EmbeddedConversation {
    fn open(jobs: mpsc::Sender<Job>) -> Result<EmbeddedConversation, ModelError> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (ready, started) = mpsc::channel();
        jobs.send(Job::Open { id, ready })
            .map_err(|_| thread_gone())?;
        started.recv().map_err(|_| thread_gone())??;
        Ok(EmbeddedConversation { id, jobs })
    }
}

impl Conversation for EmbeddedConversation {
    fn stream(
        &mut self,
        request: &Request,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError> {
        let (events, inbox) = mpsc::channel();
        let job = Job::Run {
            id: self.id,
            request: request.clone(),
            events,
        };
        self.jobs.send(job).map_err(|_| thread_gone())?;
        for event in inbox {
            match event {
                Event::Delta(text) => on_delta(&text),
                Event::Done(result) => return result,
            }
        }
        Err(thread_gone())
    }

    fn forget(&mut self) {
        let _ = self.jobs.send(Job::Forget { id: self.id });
    }
}

impl Drop for EmbeddedConversation {
    fn drop(&mut self) {
        let _ = self.jobs.send(Job::Close { id: self.id });
    }
}

/// The model's thread: every conversation's context, one request at a time.
fn work(shared: &Shared, inbox: &mpsc::Receiver<Job>) {
    let mut sessions: std::collections::HashMap<u64, Session<'_>> = Default::default();
    for job in inbox {
        match job {
            Job::Open { id, ready } => match Session::new(shared) {
                Ok(session) => {
                    sessions.insert(id, session);
                    let _ = ready.send(Ok(()));
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            },
            Job::Run {
                id,
                request,
                events,
            } => {
                let result = match sessions.get_mut(&id) {
                    Some(session) => session.run(&request, &mut |text| {
                        let _ = events.send(Event::Delta(text.to_string()));
                    }),
                    None => Err(ModelError::Backend(format!("no conversation {id}"))),
                };
                let _ = events.send(Event::Done(result));
            }
            Job::Forget { id } => {
                if let Some(session) = sessions.get_mut(&id) {
                    session.forget();
                }
            }
            Job::Close { id } => {
                sessions.remove(&id);
            }
            Job::Bare {
                prompt,
                sampling,
                sequences,
                done,
            } => {
                let _ = done.send(bare_decode(shared, &prompt, &sampling, sequences));
            }
        }
    }
}

/// The state of one conversation on its thread.
struct Session<'m> {
    shared: &'m Shared,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    /// The tokens whose keys and values are in the context, in order.
    cached: Vec<LlamaToken>,
    /// How many of `cached` were read as whole aligned chunks of a prompt,
    /// and so can be reused exactly (the rest: a prompt's last partial chunk
    /// and the reply, decoded one token at a time). See `exact_reuse`.
    reusable: usize,
}

impl<'m> Session<'m> {
    fn new(shared: &'m Shared) -> Result<Session<'m>, ModelError> {
        let config = &shared.config;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(config.context_size))
            .with_n_batch(config.batch_size)
            .with_n_ubatch(config.batch_size)
            .with_n_threads(config.threads as i32)
            .with_n_threads_batch(config.threads as i32)
            // Keep the full cache for sliding-window layers too, so that the
            // cache can be cut back to any common prefix.
            .with_swa_full(true);

        let ctx = {
            let _one_at_a_time = llama_lock();
            shared.model.new_context(backend()?, params)
        }
        .map_err(|e| ModelError::Backend(format!("cannot create a llama.cpp context: {e}")))?;
        Ok(Session {
            shared,
            ctx,
            batch: LlamaBatch::new(config.batch_size as usize, 1),
            cached: Vec::new(),
            reusable: 0,
        })
    }

    fn forget(&mut self) {
        self.ctx.clear_kv_cache();
        self.cached.clear();
        self.reusable = 0;
    }

    fn tokenize(&self, prompt: &Prompt) -> Result<Vec<LlamaToken>, ModelError> {
        let vocab = self.shared.model.vocab();
        match prompt {
            Prompt::Text(text) => Ok(vocab.tokenize(text.as_bytes(), true, false)),
            Prompt::Chat(messages) => {
                let template = self.shared.template.as_ref().ok_or_else(|| {
                    ModelError::Backend(format!(
                        "{} has no chat template: use a completion (text) prompt, or name a \
                         built-in template such as chatml or gemma",
                        self.shared.path.display()
                    ))
                })?;
                let chat = messages
                    .iter()
                    .map(|m| LlamaChatMessage::new(m.role.as_str().into(), m.content.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ModelError::Backend(format!("invalid chat message: {e}")))?;
                // llama.cpp's built-in templates fold system messages into the
                // first user turn for formats without a system role (gemma).
                let text = self
                    .shared
                    .model
                    .apply_chat_template(template, &chat, true)
                    .map_err(|e| {
                        ModelError::Backend(format!("cannot apply the chat template: {e}"))
                    })?;
                Ok(vocab.tokenize(text.as_bytes(), true, true))
            }
        }
    }

    fn run(
        &mut self,
        request: &Request,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError> {
        let prompt = self.tokenize(&request.prompt)?;
        let context = self.ctx.n_ctx();
        if prompt.is_empty() {
            return Err(ModelError::Backend("the prompt is empty".into()));
        }
        if prompt.len() >= context as usize {
            return Err(ModelError::ContextTooLong {
                prompt_tokens: prompt.len() as u32,
                context,
            });
        }

        // Reuse the longest common prefix (only its whole chunks, with
        // exact reuse), but always decode at least the prompt's last token:
        // its logits start the reply.
        let exact = self.shared.config.exact_reuse;
        let chunk = self.shared.config.batch_size.max(1) as usize;
        let common = self
            .cached
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count();
        let mut keep = common.min(prompt.len() - 1);
        if exact {
            keep = keep.min(self.reusable) / chunk * chunk;
        }
        if keep < self.cached.len() {
            let cut = self
                .ctx
                .clear_kv_cache_seq(Some(0), Some(keep as u32), None)
                .unwrap_or(false);
            if !cut {
                self.forget();
                keep = 0;
            }
            self.cached.truncate(keep);
        }

        let started = Instant::now();
        let mut logits_at = self.decode(&prompt[keep..])?;
        self.reusable = prompt.len() / chunk * chunk;
        let prefill_ms = started.elapsed().as_millis() as u64;

        let vocab = self.shared.model.vocab();
        let mut chain = sampler_chain(&request.sampling, self.shared.model.n_vocab());
        let history = prompt.len().saturating_sub(PENALTY_WINDOW as usize);
        chain.accept_many(&prompt[history..]);
        let mut grammar = match &request.json_schema {
            Some(schema) => Some(self.grammar(schema)?),
            None => None,
        };

        let started = Instant::now();
        let mut text = String::new();
        let mut pending = Vec::new();
        let mut shown = 0;
        let mut completion_tokens = 0u32;
        let mut finish_reason = FinishReason::Length;
        while completion_tokens < request.sampling.max_tokens {
            if self.cached.len() >= context as usize {
                break;
            }
            let token = self.next_token(&mut chain, grammar.as_mut(), logits_at);
            if vocab.is_eog(token) {
                finish_reason = FinishReason::Stop;
                break;
            }
            completion_tokens += 1;
            vocab.token_to_piece_into(token, &mut pending, false, None);
            take_utf8(&mut pending, &mut text);
            if let Some((at, _)) = find_stop(&text, &request.sampling.stop) {
                text.truncate(at);
                finish_reason = FinishReason::StopSequence;
                break;
            }
            let safe = safe_prefix_len(&text, &request.sampling.stop);
            if safe > shown {
                on_delta(&text[shown..safe]);
                shown = safe;
            }
            logits_at = self.decode(&[token])?;
        }
        if finish_reason != FinishReason::StopSequence && !pending.is_empty() {
            text.push_str(&String::from_utf8_lossy(&pending));
        }
        if text.len() > shown {
            on_delta(&text[shown..]);
        }
        Ok(Completion {
            text,
            finish_reason,
            usage: Usage {
                prompt_tokens: prompt.len() as u32,
                cached_prompt_tokens: keep as u32,
                completion_tokens,
                estimated: false,
            },
            prefill_ms,
            decode_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Decodes `tokens` after the cached ones, in chunks of `batch_size`
    /// (aligned, when the cached tokens are a whole number of chunks);
    /// returns the batch index of the last token's logits.
    fn decode(&mut self, tokens: &[LlamaToken]) -> Result<i32, ModelError> {
        let chunk_size = self.shared.config.batch_size as usize;
        let mut last = 0;
        for (i, chunk) in tokens.chunks(chunk_size).enumerate() {
            let final_chunk = (i + 1) * chunk_size >= tokens.len();
            self.batch.clear();
            for (j, &token) in chunk.iter().enumerate() {
                let position = (self.cached.len() + j) as i32;
                let wants_logits = final_chunk && j + 1 == chunk.len();
                self.batch
                    .add(token, position, &[0], wants_logits)
                    .map_err(|e| ModelError::Backend(format!("batch: {e}")))?;
            }
            let _one_at_a_time = llama_lock();
            self.ctx
                .decode(&mut self.batch)
                .map_err(|e| ModelError::Backend(format!("llama.cpp decode failed: {e}")))?;
            self.cached.extend_from_slice(chunk);
            last = self.batch.n_tokens() - 1;
        }
        Ok(last)
    }

    /// Picks the next token and records it in the samplers' state.
    ///
    /// With a grammar, it samples without the grammar first and checks only
    /// the chosen token against it; only when that token is rejected is the
    /// grammar applied to the whole vocabulary (as llama.cpp's own common
    /// sampler does: a grammar over all 262,144 entries at every step is
    /// several times slower).
    fn next_token(
        &self,
        chain: &mut LlamaSampler,
        grammar: Option<&mut LlamaSampler>,
        logits_at: i32,
    ) -> LlamaToken {
        let Some(grammar) = grammar else {
            // `sample` applies the chain and also accepts the token: accepting
            // it again would advance the sampler state twice.
            return chain.sample(&self.ctx, logits_at);
        };
        let mut candidates = self.ctx.token_data_array_ith(logits_at);
        candidates.apply_sampler(chain);
        let mut token = selected(&candidates);
        let mut single =
            LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 1.0, 0.0)], false);
        single.apply_sampler(grammar);
        if !single.data.first().is_some_and(|d| d.logit().is_finite()) {
            let mut candidates = self.ctx.token_data_array_ith(logits_at);
            candidates.apply_sampler(grammar);
            candidates.apply_sampler(chain);
            token = selected(&candidates);
        }
        chain.accept(token);
        grammar.accept(token);
        token
    }

    fn grammar(&self, schema: &serde_json::Value) -> Result<LlamaSampler, ModelError> {
        let gbnf = llama_cpp_2::json_schema_to_grammar(&schema.to_string()).map_err(|e| {
            ModelError::Backend(format!("cannot turn the JSON schema into a grammar: {e}"))
        })?;
        LlamaSampler::grammar(&self.shared.model, &gbnf, "root")
            .map_err(|e| ModelError::Backend(format!("invalid grammar: {e}")))
    }
}

/// Tokens of recent history the repetition penalty looks at.
const PENALTY_WINDOW: i32 = 64;

fn sampler_chain(sampling: &Sampling, n_vocab: i32) -> LlamaSampler {
    let mut samplers = Vec::new();
    // The penalty sampler visits the whole vocabulary at every step; at
    // 1.0 it changes nothing, so it is left out.
    if sampling.repeat_penalty != 1.0 {
        samplers.push(LlamaSampler::penalties(
            n_vocab,
            PENALTY_WINDOW,
            sampling.repeat_penalty,
            0.0,
            0.0,
        ));
    }
    if sampling.temperature <= 0.0 {
        samplers.push(LlamaSampler::greedy());
    } else {
        samplers.push(LlamaSampler::top_k(sampling.top_k as i32));
        samplers.push(LlamaSampler::top_p(sampling.top_p, 1));
        samplers.push(LlamaSampler::temp(sampling.temperature));
        samplers.push(LlamaSampler::dist(sampling.seed));
    }
    LlamaSampler::chain_simple(samplers)
}

fn selected(candidates: &LlamaTokenDataArray) -> LlamaToken {
    candidates
        .selected_token()
        .or_else(|| candidates.data.first().map(|d| d.id()))
        .expect("a sampler chain ending in greedy or dist selects a token")
}

/// Moves the complete UTF-8 characters at the start of `pending` into
/// `text`; a character split across tokens waits for its next bytes.
fn take_utf8(pending: &mut Vec<u8>, text: &mut String) {
    match std::str::from_utf8(pending) {
        Ok(s) => {
            text.push_str(s);
            pending.clear();
        }
        Err(e) if e.error_len().is_none() => {
            let valid = e.valid_up_to();
            text.push_str(std::str::from_utf8(&pending[..valid]).expect("checked valid"));
            pending.drain(..valid);
        }
        Err(_) => {
            text.push_str(&String::from_utf8_lossy(pending));
            pending.clear();
        }
    }
}

/// See [`EmbeddedModel::bare_decode`].
fn bare_decode(
    shared: &Shared,
    prompt: &str,
    sampling: &Sampling,
    sequences: u32,
) -> Result<(u32, f64), ModelError> {
    let config = &shared.config;
    let width = config.batch_size.max(sequences);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(config.context_size))
        .with_n_batch(width)
        .with_n_ubatch(width)
        .with_n_threads(config.threads as i32)
        .with_n_threads_batch(config.threads as i32)
        .with_n_seq_max(sequences)
        // One cache for all sequences: the prompt is stored once.
        .with_kv_unified(true)
        // As the backend's contexts (`Session::new`): the same work.
        .with_swa_full(true);
    let mut ctx = {
        let _one_at_a_time = llama_lock();
        shared.model.new_context(backend()?, params)
    }
    .map_err(|e| ModelError::Backend(format!("cannot create a llama.cpp context: {e}")))?;
    let decode_error = |e| ModelError::Backend(format!("llama.cpp decode failed: {e}"));
    let batch_error = |e| ModelError::Backend(format!("batch: {e}"));
    let vocab = shared.model.vocab();
    let tokens = vocab.tokenize(prompt.as_bytes(), true, false);
    let all: Vec<i32> = (0..sequences as i32).collect();

    // Reading the prompt is not what is measured: the backend's own code
    // does it. Its tokens belong to every sequence.
    let mut batch = LlamaBatch::new(width as usize, sequences as i32);
    let mut last = 0;
    for (i, chunk) in tokens.chunks(config.batch_size as usize).enumerate() {
        batch.clear();
        for (j, &token) in chunk.iter().enumerate() {
            let position = i * config.batch_size as usize + j;
            let wants_logits = position + 1 == tokens.len();
            batch
                .add(token, position as i32, &all, wants_logits)
                .map_err(batch_error)?;
        }
        let _one_at_a_time = llama_lock();
        ctx.decode(&mut batch).map_err(decode_error)?;
        last = batch.n_tokens() - 1;
    }

    let history = tokens.len().saturating_sub(PENALTY_WINDOW as usize);
    let mut chains: Vec<LlamaSampler> = (0..sequences)
        .map(|i| {
            let seeded = Sampling {
                seed: sampling.seed.wrapping_add(i),
                ..sampling.clone()
            };
            let mut chain = sampler_chain(&seeded, shared.model.n_vocab());
            chain.accept_many(&tokens[history..]);
            chain
        })
        .collect();
    // (sequence, where its logits are in the last batch, tokens it has made)
    let mut live: Vec<(usize, i32, u32)> = (0..sequences as usize).map(|s| (s, last, 0)).collect();
    let mut generated = 0;
    let started = Instant::now();
    while !live.is_empty() {
        batch.clear();
        let mut next = Vec::with_capacity(live.len());
        for &(seq, logits_at, made) in &live {
            if made >= sampling.max_tokens {
                continue;
            }
            let token = chains[seq].sample(&ctx, logits_at);
            if vocab.is_eog(token) {
                continue;
            }
            let position = (tokens.len() as u32 + made) as i32;
            batch
                .add(token, position, &[seq as i32], true)
                .map_err(batch_error)?;
            next.push((seq, batch.n_tokens() - 1, made + 1));
            generated += 1;
        }
        if next.is_empty() {
            break;
        }
        // The backend's decode takes this lock too: the same work.
        let _one_at_a_time = llama_lock();
        ctx.decode(&mut batch).map_err(decode_error)?;
        live = next;
    }
    Ok((generated, started.elapsed().as_secs_f64() * 1000.0))
}

#[cfg(test)]
mod tests {
    use super::take_utf8;

    #[test]
    fn characters_split_across_tokens_wait_for_their_bytes() {
        let mut pending = Vec::new();
        let mut text = String::new();
        let bytes = "é!".as_bytes();
        pending.extend_from_slice(&bytes[..1]);
        take_utf8(&mut pending, &mut text);
        assert_eq!(text, "");
        pending.extend_from_slice(&bytes[1..]);
        take_utf8(&mut pending, &mut text);
        assert_eq!(text, "é!");
        assert!(pending.is_empty());
    }
}
