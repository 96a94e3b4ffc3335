//! Chat models: one vendor-neutral trait and its backends.
//!
//! Agents hold a [`Conversation`] opened from a [`ChatModel`]. A conversation
//! is where a backend may keep state between requests: the embedded backend
//! keeps the KV cache of the previous prompt and reply there, so a request
//! that extends it only processes its new tokens. The HTTP backend is
//! stateless; the scripted one records what it is asked.
//!
//! Only `embedded` knows llama.cpp and only `http` knows HTTP and the
//! OpenAI wire format; everything else speaks the types of this module.

mod bert;
pub mod default_model;
pub mod embedded;
pub mod encoder;
pub mod http;
pub mod pool;
pub mod schema;
pub mod scripted;
pub mod spec;

use serde::Serialize;
use std::time::Duration;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
        }
    }
}

/// What the model continues: a chat (for instruct models, through a chat
/// template) or raw text (for base models).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Prompt {
    Chat(Vec<Message>),
    Text(String),
}

/// Sampling settings. `temperature` 0 means greedy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub repeat_penalty: f32,
    pub seed: u32,
    pub max_tokens: u32,
    /// Generation stops before the first of these; it is not in the text.
    pub stop: Vec<String>,
}

impl Default for Sampling {
    fn default() -> Sampling {
        Sampling {
            temperature: 0.7,
            top_p: 0.95,
            top_k: 40,
            repeat_penalty: 1.1,
            seed: 0,
            max_tokens: 256,
            stop: Vec::new(),
        }
    }
}

/// One generation request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request {
    pub prompt: Prompt,
    pub sampling: Sampling,
    /// When set, the reply must be JSON valid against this schema.
    pub json_schema: Option<serde_json::Value>,
}

impl Request {
    pub fn text(prompt: impl Into<String>) -> Request {
        Request {
            prompt: Prompt::Text(prompt.into()),
            sampling: Sampling::default(),
            json_schema: None,
        }
    }

    pub fn chat(messages: Vec<Message>) -> Request {
        Request {
            prompt: Prompt::Chat(messages),
            sampling: Sampling::default(),
            json_schema: None,
        }
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its reply (end-of-generation token).
    Stop,
    /// `max_tokens` or the context size was reached.
    Length,
    /// One of the request's stop sequences was produced.
    StopSequence,
}

impl FinishReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::StopSequence => "stop_sequence",
        }
    }
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    /// Prompt tokens that were already processed (KV cache) and not decoded again.
    pub cached_prompt_tokens: u32,
    pub completion_tokens: u32,
    /// The server gave no counts (llama-cpp-python's server sends none in a
    /// stream), so these are estimates from the text's length: a count
    /// that is not known is never 0.
    pub estimated: bool,
}

/// Characters per token, for counts a server did not give.
pub const ESTIMATED_CHARS_PER_TOKEN: usize = 4;

impl Usage {
    /// Counts estimated from the length of the prompt and the reply.
    pub fn estimate(prompt: &Prompt, reply: &str) -> Usage {
        let prompt_chars = match prompt {
            Prompt::Text(text) => text.len(),
            Prompt::Chat(messages) => messages.iter().map(|m| m.content.len()).sum(),
        };
        let tokens = |chars: usize| chars.div_ceil(ESTIMATED_CHARS_PER_TOKEN) as u32;
        Usage {
            prompt_tokens: tokens(prompt_chars),
            cached_prompt_tokens: 0,
            completion_tokens: tokens(reply.len()),
            estimated: true,
        }
    }
}

/// The result of one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completion {
    pub text: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    /// Time spent processing the prompt, in milliseconds.
    pub prefill_ms: u64,
    /// Time spent generating, in milliseconds.
    pub decode_ms: u64,
}

/// Why a request failed, classified so callers know whether to retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("cannot reach the model server: {0}")]
    Unreachable(String),
    #[error("the model server timed out: {0}")]
    Timeout(String),
    #[error("rate limited by the model server{}: {message}", retry_after.map(|d| format!(" (retry after {} ms)", d.as_millis())).unwrap_or_default())]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("the model server failed (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    #[error("the request was refused (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the prompt is {prompt_tokens} tokens, more than the context of {context} tokens")]
    ContextTooLong { prompt_tokens: u32, context: u32 },
    #[error("invalid response from the model: {0}")]
    InvalidResponse(String),
    #[error("{0}")]
    ModelMissing(String),
    #[error("the model failed: {0}")]
    Backend(String),
}

impl ModelError {
    /// Whether trying again later may succeed (connection errors, timeouts,
    /// rate limits and server errors; never other refusals).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ModelError::Unreachable(_)
                | ModelError::Timeout(_)
                | ModelError::RateLimited { .. }
                | ModelError::Server { .. }
        )
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ModelError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The same error, its message followed by `note` (which endpoint,
    /// what else failed); its kind, and so whether and when to retry, kept.
    pub fn noted(self, note: &str) -> ModelError {
        let add = |message: String| format!("{message} ({note})");
        match self {
            ModelError::Unreachable(m) => ModelError::Unreachable(add(m)),
            ModelError::Timeout(m) => ModelError::Timeout(add(m)),
            ModelError::RateLimited {
                retry_after,
                message,
            } => ModelError::RateLimited {
                retry_after,
                message: add(message),
            },
            ModelError::Server { status, message } => ModelError::Server {
                status,
                message: add(message),
            },
            ModelError::Refused { status, message } => ModelError::Refused {
                status,
                message: add(message),
            },
            ModelError::InvalidResponse(m) => ModelError::InvalidResponse(add(m)),
            ModelError::ModelMissing(m) => ModelError::ModelMissing(add(m)),
            ModelError::Backend(m) => ModelError::Backend(add(m)),
            // Said in numbers alone; no server is to blame.
            e @ ModelError::ContextTooLong { .. } => e,
        }
    }
}

/// A model that conversations can be opened on. Weights or connections are
/// shared by all of its conversations.
pub trait ChatModel: Send + Sync {
    /// How the model was chosen, e.g. `local:/path/model.gguf`.
    fn describe(&self) -> String;

    /// Opens a conversation: the state one agent keeps across its turns.
    fn conversation(&self) -> Result<Box<dyn Conversation>, ModelError>;

    /// Whether the model takes chat prompts (instruct models) rather than
    /// text to continue (base models).
    fn chat(&self) -> bool {
        true
    }

    /// Whether the model can be used at all, checked before a run starts
    /// rather than discovered at its first turn: an API key that is
    /// needed is set, the server answers, the model exists.
    fn check(&self) -> Result<(), ModelError> {
        Ok(())
    }

    /// How many tokens `text` is to this model, where it can tell without
    /// asking a server (the embedded model's tokenizer).
    fn tokens_in(&self, _text: &str) -> Option<u32> {
        None
    }
}

/// A sequence of requests from one agent. Backends may keep state between
/// requests (the embedded backend keeps its KV cache); results never depend
/// on that state, only speed does.
pub trait Conversation: Send {
    /// Runs a request, calling `on_delta` with each piece of text as it is
    /// generated. The pieces add up to the returned text.
    fn stream(
        &mut self,
        request: &Request,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError>;

    /// Runs a request without streaming.
    fn complete(&mut self, request: &Request) -> Result<Completion, ModelError> {
        self.stream(request, &mut |_| {})
    }

    /// Drops any cached state, so the next request starts from nothing.
    fn forget(&mut self) {}

    /// A person typing this side's turns (`cbtsim play`), not a model: the
    /// session takes their turns as typed, with no prompt, guard or
    /// candidates.
    fn person(&mut self) -> Option<&mut dyn crate::play::Person> {
        None
    }
}

/// Finds the first stop sequence in `text`: (byte offset, sequence).
pub fn find_stop<'a>(text: &str, stop: &'a [String]) -> Option<(usize, &'a str)> {
    stop.iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()).map(|i| (i, s.as_str())))
        .min_by_key(|(i, _)| *i)
}

/// How much of `text` can be shown without risking showing the start of a
/// stop sequence that later tokens complete: the length of `text` minus its
/// longest suffix that is a proper prefix of a stop sequence.
pub fn safe_prefix_len(text: &str, stop: &[String]) -> usize {
    let mut hold = 0;
    for s in stop {
        for (i, _) in s.char_indices().skip(1) {
            if text.ends_with(&s[..i]) {
                hold = hold.max(i);
            }
        }
    }
    text.len() - hold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_sequences_are_found_earliest_first() {
        let stop = vec!["\nPatient:".to_string(), "\n\n".to_string()];
        assert_eq!(find_stop("Hi.\n\nPatient: x", &stop), Some((3, "\n\n")));
        assert_eq!(find_stop("Hi.\nPatient: x", &stop), Some((3, "\nPatient:")));
        assert_eq!(find_stop("Hi.", &stop), None);
    }

    #[test]
    fn a_possible_start_of_a_stop_sequence_is_held_back() {
        let stop = vec!["\nPatient:".to_string()];
        assert_eq!(safe_prefix_len("Hello\nPat", &stop), 5);
        assert_eq!(safe_prefix_len("Hello", &stop), 5);
        assert_eq!(safe_prefix_len("Hello\n", &stop), 5);
    }
}
