//! The embedded backend: llama.cpp in-process through `llama-cpp-2`.
//!
//! The weights are loaded once per [`EmbeddedModel`] and shared. One thread
//! per model owns every llama.cpp context (contexts are tied to it by
//! design: requests and streamed text go over channels). A conversation
//! keeps the tokens its KV cache holds, and a request decodes only what
//! follows the longest common prefix of its prompt and those tokens.
//!
//! - `serial`: the default. Each conversation has a context of its own and
//!   requests run one at a time; a conversation's text does not depend on
//!   its cache or on other conversations.
//! - `batched`: `parallel` of 2 or more. One context shared by the
//!   conversations, whose replies are decoded together; faster for
//!   concurrent sessions, not reproducible run to run.
//! - `reply`: sampling one reply, a token at a time, for both.
//! - `bare`: the bare loop `bench model` compares the backend with.

mod bare;
mod batched;
mod reply;
mod serial;

pub use batched::MAX_PARALLEL;

use super::{ChatModel, Completion, Conversation, ModelError, Prompt, Request, Sampling};
use bare::BareJob;
use llama_cpp_2::DecodeError;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use serde::Serialize;
use std::io::Read;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

/// How conversations on an embedded model are set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// Tokens of context per conversation.
    pub context_size: u32,
    /// Tokens per llama.cpp batch while reading a prompt; prompts are read
    /// in chunks aligned to multiples of this (in batched mode: at most
    /// this many prompt tokens go into each batch).
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
    /// Requests decoded together in one llama.cpp batch: 1 (the default)
    /// runs them one at a time, each conversation in a context of its own,
    /// reproducibly; 2 or more shares one context among the conversations
    /// and decodes up to this many replies at once (see `batched`), which
    /// is faster when sessions run side by side but makes a session's text
    /// depend on what else was decoding. `exact_reuse` does not apply then.
    pub parallel: u32,
}

impl Default for EmbeddedConfig {
    fn default() -> EmbeddedConfig {
        EmbeddedConfig {
            context_size: 8192,
            batch_size: 32,
            exact_reuse: true,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get() as u32),
            chat_template: None,
            parallel: 1,
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
    /// Positions a sliding-window attention layer sees (0: none).
    pub sliding_window: u32,
}

/// A GGUF model loaded into memory, shared by its conversations.
///
/// One thread per model owns every conversation's llama.cpp context and
/// runs their requests (one at a time, or batched: see `parallel`). With a
/// thread per conversation (as before), each had its own OpenMP team: more
/// threads than cores, so OpenMP let its workers sleep between tokens and
/// a session decoded at 25 tokens/s where one conversation alone decoded
/// at 38.
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
    /// Tokens a sliding-window layer attends to (0: the model has none).
    sliding_window: u32,
    batching: BatchCounts,
}

/// What batched mode did, for `bench batch` and the tests.
#[derive(Default)]
struct BatchCounts {
    /// llama.cpp batches that decoded reply tokens.
    batches: AtomicU64,
    /// Reply tokens in them, over all batches.
    replies: AtomicU64,
    /// The most replies in one batch.
    widest: AtomicU64,
}

/// How many replies batched mode decoded together (all zero in serial mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Batching {
    /// llama.cpp batches that decoded reply tokens.
    pub batches: u64,
    /// Reply tokens in those batches.
    pub reply_tokens: u64,
    /// The most reply tokens in one batch.
    pub widest: u64,
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
            sliding_window: sliding_window(&model),
            model,
            path: path.to_path_buf(),
            config,
            template,
            batching: BatchCounts::default(),
        });
        let (jobs, inbox) = mpsc::channel();
        let owned = shared.clone();
        std::thread::Builder::new()
            .name("cbtsim-llama".into())
            .spawn(move || match owned.config.parallel {
                0 | 1 => serial::work(&owned, &inbox),
                parallel => batched::work(&owned, &inbox, parallel.min(MAX_PARALLEL)),
            })
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
        let job = Job::Bare(BareJob {
            prompt: prompt.to_string(),
            sampling: sampling.clone(),
            sequences: sequences.max(1),
            done,
        });
        self.jobs.send(job).map_err(|_| thread_gone())?;
        result.recv().map_err(|_| thread_gone())?
    }

    /// How many replies were decoded together so far (batched mode).
    pub fn batching(&self) -> Batching {
        let counts = &self.shared.batching;
        Batching {
            batches: counts.batches.load(Ordering::Relaxed),
            reply_tokens: counts.replies.load(Ordering::Relaxed),
            widest: counts.widest.load(Ordering::Relaxed),
        }
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
            sliding_window: self.shared.sliding_window,
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
    Bare(BareJob),
}

enum Event {
    Delta(String),
    Done(Result<Completion, ModelError>),
}

/// A conversation: its cache lives on the model's thread.
struct EmbeddedConversation {
    id: u64,
    jobs: mpsc::Sender<Job>,
}

fn thread_gone() -> ModelError {
    ModelError::Backend("the model's thread stopped".into())
}

impl EmbeddedConversation {
    fn open(jobs: mpsc::Sender<Job>) -> Result<EmbeddedConversation, ModelError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
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

impl Shared {
    /// A request's prompt as tokens, checked against the context size.
    fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<LlamaToken>, ModelError> {
        let tokens = self.tokenize(prompt)?;
        let context = self.config.context_size;
        if tokens.is_empty() {
            return Err(ModelError::Backend("the prompt is empty".into()));
        }
        if tokens.len() >= context as usize {
            return Err(ModelError::ContextTooLong {
                prompt_tokens: tokens.len() as u32,
                context,
            });
        }
        Ok(tokens)
    }

    fn tokenize(&self, prompt: &Prompt) -> Result<Vec<LlamaToken>, ModelError> {
        let vocab = self.model.vocab();
        match prompt {
            Prompt::Text(text) => Ok(vocab.tokenize(text.as_bytes(), true, false)),
            Prompt::Chat(messages) => {
                let template = self.template.as_ref().ok_or_else(|| {
                    ModelError::Backend(format!(
                        "{} has no chat template: use a completion (text) prompt, or name a \
                         built-in template such as chatml or gemma",
                        self.path.display()
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
                    .model
                    .apply_chat_template(template, &chat, true)
                    .map_err(|e| {
                        ModelError::Backend(format!("cannot apply the chat template: {e}"))
                    })?;
                Ok(vocab.tokenize(text.as_bytes(), true, true))
            }
        }
    }
}

/// A llama.cpp context of `cells` tokens of cache shared by `sequences`
/// sequences, read in batches of up to `batch` tokens.
fn new_context(
    shared: &Shared,
    cells: u32,
    batch: u32,
    sequences: u32,
) -> Result<LlamaContext<'_>, ModelError> {
    let threads = shared.config.threads as i32;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(cells))
        .with_n_batch(batch)
        .with_n_ubatch(batch)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_n_seq_max(sequences)
        // One cache for all sequences, so that it holds whatever mix of
        // long and short conversations there is.
        .with_kv_unified(sequences > 1)
        // Keep the full cache for sliding-window layers too, so that a
        // cache can be cut back to any common prefix.
        .with_swa_full(true);
    let _one_at_a_time = llama_lock();
    shared
        .model
        .new_context(backend()?, params)
        .map_err(|e| ModelError::Backend(format!("cannot create a llama.cpp context: {e}")))
}

/// The model's sliding attention window, from its GGUF metadata.
fn sliding_window(model: &LlamaModel) -> u32 {
    let architecture = model
        .meta_val_str("general.architecture")
        .unwrap_or_default();
    model
        .meta_val_str(&format!("{architecture}.attention.sliding_window"))
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Computes a batch, holding the process's llama.cpp lock.
fn decode(ctx: &mut LlamaContext<'_>, batch: &mut LlamaBatch<'_>) -> Result<(), DecodeError> {
    let _one_at_a_time = llama_lock();
    ctx.decode(batch)
}

fn decode_failed(e: DecodeError) -> ModelError {
    ModelError::Backend(format!("llama.cpp decode failed: {e}"))
}

/// How many of `cached` to keep for `prompt`: the longest common prefix,
/// but never the prompt's last token (its logits start the reply). With
/// `exactly = Some((reusable, chunk))`, only whole chunks of the first
/// `reusable` tokens (see `exact_reuse`).
fn reused_prefix(
    cached: &[LlamaToken],
    prompt: &[LlamaToken],
    exactly: Option<(usize, usize)>,
) -> usize {
    let common = cached
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count();
    let keep = common.min(prompt.len().saturating_sub(1));
    match exactly {
        Some((reusable, chunk)) => keep.min(reusable) / chunk * chunk,
        None => keep,
    }
}
