//! The OpenAI-compatible HTTP backend (OpenAI, vLLM, Ollama, llama.cpp's
//! server, llama-cpp-python's server, ...).
//!
//! A thin client on reqwest's blocking API rather than async-openai: cbtsim's
//! agents are synchronous, the wire format is small, and we need control of
//! what async-openai hides — dialects of `response_format`, extra sampling
//! fields for local servers, Retry-After, and the exact handling of a cut
//! stream. Only this module knows HTTP and the OpenAI wire format.

use super::{
    ChatModel, Completion, Conversation, FinishReason, ModelError, Prompt, Request, Usage,
    find_stop, safe_prefix_len, schema,
};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How structured output is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StructuredOutput {
    /// `response_format: {"type": "json_schema", "json_schema": {...}}` (OpenAI, vLLM).
    JsonSchema,
    /// `response_format: {"type": "json_object", "schema": {...}}` (llama-cpp-python).
    JsonObjectSchema,
    /// No server support: the schema goes into the prompt, the reply is
    /// validated, and an invalid reply is asked for once more.
    Instructions,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// e.g. `http://127.0.0.1:8080/v1`
    pub base_url: String,
    pub model: String,
    /// The environment variable holding the API key. The key itself is
    /// read when the model is created and never logged or stored.
    pub api_key_env: String,
    pub connect_timeout: Duration,
    /// Longest wait for the response to start, and between streamed chunks.
    pub read_timeout: Duration,
    /// Retries after the first attempt, on connection errors, 408, 429 and 5xx.
    pub max_retries: u32,
    /// First backoff delay; doubled on each retry (with jitter), capped at `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// At most this many requests start in any `rate_window` (None: no limit).
    pub requests_per_minute: Option<u32>,
    /// The window of `requests_per_minute`: a minute, shortened only by tests.
    pub rate_window: Duration,
    /// At most this many requests in flight at once, over all conversations.
    pub max_concurrency: u32,
    /// Stream replies (SSE) rather than waiting for the whole reply.
    pub stream: bool,
    /// Send `top_k` and `repeat_penalty`, which local servers take and
    /// OpenAI's API does not.
    pub extended_sampling: bool,
    /// The first dialect to try for structured output; a server that
    /// rejects it moves the model on to the next one.
    pub structured_output: StructuredOutput,
    /// A hosted API (OpenAI's): the API key must be set, and the model
    /// must be among those the server lists. Local servers often list a
    /// file name and serve any model name, so neither is required there.
    pub hosted: bool,
    /// An instruct model that takes chat messages; false for a base model,
    /// which is given text to continue.
    pub chat: bool,
}

impl HttpConfig {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> HttpConfig {
        HttpConfig {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            model: model.into(),
            api_key_env: "OPENAI_API_KEY".into(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(300),
            max_retries: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            requests_per_minute: None,
            rate_window: Duration::from_secs(60),
            max_concurrency: 4,
            stream: true,
            extended_sampling: true,
            structured_output: StructuredOutput::JsonSchema,
            hosted: false,
            chat: true,
        }
    }
}

/// A model behind an OpenAI-compatible server. Cheap to clone; clones
/// share the connection pool, the limits and what was learnt of the dialect.
#[derive(Clone)]
pub struct HttpModel {
    inner: Arc<Inner>,
}

struct Inner {
    config: HttpConfig,
    client: reqwest::blocking::Client,
    api_key: Option<String>,
    dialect: Mutex<StructuredOutput>,
    in_flight: (Mutex<u32>, Condvar),
    recent_starts: Mutex<VecDeque<Instant>>,
}

impl HttpModel {
    pub fn new(config: HttpConfig) -> Result<HttpModel, ModelError> {
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.read_timeout)
            .build()
            .map_err(|e| ModelError::Backend(format!("cannot set up the HTTP client: {e}")))?;
        let api_key = std::env::var(&config.api_key_env)
            .ok()
            .filter(|k| !k.is_empty());
        Ok(HttpModel {
            inner: Arc::new(Inner {
                dialect: Mutex::new(config.structured_output),
                config,
                client,
                api_key,
                in_flight: (Mutex::new(0), Condvar::new()),
                recent_starts: Mutex::new(VecDeque::new()),
            }),
        })
    }

    /// The structured-output dialect the model uses now.
    pub fn dialect(&self) -> StructuredOutput {
        *lock(&self.inner.dialect)
    }
}

impl ChatModel for HttpModel {
    /// The spec that names this model (`BASE_URL#MODEL[?base]`).
    fn describe(&self) -> String {
        let config = &self.inner.config;
        super::spec::ModelSpec::Http {
            base_url: config.base_url.clone(),
            model: config.model.clone(),
            base: !config.chat,
        }
        .to_string()
    }

    fn conversation(&self) -> Result<Box<dyn Conversation>, ModelError> {
        Ok(Box::new(self.clone()))
    }

    fn chat(&self) -> bool {
        self.inner.config.chat
    }

    /// Asks the server for its models (`GET /models`).
    fn check(&self) -> Result<(), ModelError> {
        let config = &self.inner.config;
        if config.hosted && self.inner.api_key.is_none() {
            return Err(ModelError::Refused {
                status: 401,
                message: format!(
                    "{} is not set: the API key for {} comes from it",
                    config.api_key_env, config.base_url
                ),
            });
        }
        let url = format!("{}/models", config.base_url);
        let mut http = self.inner.client.get(&url);
        if let Some(key) = &self.inner.api_key {
            http = http.bearer_auth(key);
        }
        let response = http.send().map_err(|e| transport_error(&url, &e))?;
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        if status == 401 || status == 403 {
            return Err(ModelError::Refused {
                status,
                message: format!("{url}: the API key was refused ({})", clip(&text)),
            });
        }
        if !(200..300).contains(&status) {
            // Some servers have no model list; that they answer is enough.
            return if config.hosted {
                Err(status_error(status, None, &text))
            } else {
                Ok(())
            };
        }
        let listed: Vec<String> = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("data").and_then(Value::as_array).cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str).map(String::from))
            .collect();
        if config.hosted && !listed.contains(&config.model) {
            return Err(ModelError::ModelMissing(format!(
                "{} has no model {:?}",
                config.base_url, config.model
            )));
        }
        Ok(())
    }
}

impl Conversation for HttpModel {
    fn stream(
        &mut self,
        request: &Request,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError> {
        let Some(schema) = &request.json_schema else {
            return self.inner.with_retries(request, None, on_delta);
        };
        loop {
            let dialect = self.dialect();
            if dialect == StructuredOutput::Instructions {
                return self.inner.by_instructions(request, schema, on_delta);
            }
            match self.inner.validated(request, schema, dialect, on_delta) {
                // A server that does not speak this dialect refuses the
                // request: move on to the next one and remember it.
                Err(ModelError::Refused { message, .. }) if mentions_response_format(&message) => {
                    let next = match dialect {
                        StructuredOutput::JsonSchema => StructuredOutput::JsonObjectSchema,
                        _ => StructuredOutput::Instructions,
                    };
                    *lock(&self.inner.dialect) = next;
                }
                other => return other,
            }
        }
    }
}

fn mentions_response_format(message: &str) -> bool {
    let message = message.to_lowercase();
    ["response_format", "json_schema", "json_object"]
        .iter()
        .any(|w| message.contains(w))
}

impl Inner {
    fn with_retries(
        &self,
        request: &Request,
        dialect: Option<StructuredOutput>,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError> {
        let mut attempt = 0;
        loop {
            let mut streamed_anything = false;
            let result = {
                let _slot = self.start_request();
                self.send(request, dialect, &mut |text| {
                    streamed_anything = true;
                    on_delta(text)
                })
            };
            match result {
                // Text already shown cannot be taken back, so a failure
                // after the first streamed piece is not retried.
                Err(e)
                    if e.is_retryable()
                        && attempt < self.config.max_retries
                        && !streamed_anything =>
                {
                    std::thread::sleep(self.backoff(attempt, e.retry_after()));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The delay before retry number `attempt` (from 0): the server's
    /// Retry-After when given, else exponential backoff with jitter.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(delay) = retry_after {
            return delay;
        }
        let base = self
            .config
            .initial_backoff
            .saturating_mul(1 << attempt.min(16))
            .min(self.config.max_backoff);
        // Up to half the delay again, so that clients retrying together spread out.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
        let jitter = base.as_millis() as u64 / 2;
        base + Duration::from_millis(if jitter == 0 { 0 } else { nanos % jitter })
    }

    /// Waits for a place under the concurrency cap and the rate limit.
    fn start_request(&self) -> Slot<'_> {
        let (count, freed) = &self.in_flight;
        let mut in_flight = lock(count);
        while *in_flight >= self.config.max_concurrency.max(1) {
            in_flight = freed.wait(in_flight).unwrap_or_else(|e| e.into_inner());
        }
        *in_flight += 1;
        drop(in_flight);
        if let Some(limit) = self.config.requests_per_minute {
            let window = self.config.rate_window;
            loop {
                let mut starts = lock(&self.recent_starts);
                let now = Instant::now();
                while starts
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= window)
                {
                    starts.pop_front();
                }
                if (starts.len() as u32) < limit.max(1) {
                    starts.push_back(now);
                    break;
                }
                let wait = window - now.duration_since(starts[0]);
                drop(starts);
                std::thread::sleep(wait);
            }
        }
        Slot { inner: self }
    }

    fn send(
        &self,
        request: &Request,
        dialect: Option<StructuredOutput>,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError> {
        let (endpoint, body) = self.body(request, dialect);
        let url = format!("{}/{endpoint}", self.config.base_url);
        let mut http = self.client.post(&url).json(&body);
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key);
        }
        let started = Instant::now();
        let response = http.send().map_err(|e| transport_error(&url, &e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(Duration::from_secs_f64);
            let text = response.text().unwrap_or_default();
            return Err(status_error(status, retry_after, &text));
        }
        let mut completion = if self.config.stream {
            read_stream(response, endpoint, &request.sampling.stop, on_delta)?
        } else {
            let text = response.text().map_err(|e| transport_error(&url, &e))?;
            let json: Value = serde_json::from_str(&text).map_err(|e| {
                ModelError::InvalidResponse(format!("not JSON ({e}): {}", clip(&text)))
            })?;
            let completion = parse_reply(&json, endpoint)?;
            on_delta(&completion.text);
            completion
        };
        completion.decode_ms = started.elapsed().as_millis() as u64;
        if completion.usage == UNKNOWN {
            completion.usage = Usage::estimate(&request.prompt, &completion.text);
        }
        // Servers take a limited number of stop sequences; apply them all here too.
        if let Some((at, _)) = find_stop(&completion.text, &request.sampling.stop) {
            completion.text.truncate(at);
            completion.finish_reason = FinishReason::StopSequence;
        }
        Ok(completion)
    }

    fn body(&self, request: &Request, dialect: Option<StructuredOutput>) -> (&'static str, Value) {
        let s = &request.sampling;
        let (endpoint, mut body) = match &request.prompt {
            Prompt::Chat(messages) => {
                let messages: Vec<Value> = messages
                    .iter()
                    .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
                    .collect();
                ("chat/completions", json!({ "messages": messages }))
            }
            Prompt::Text(text) => ("completions", json!({ "prompt": text })),
        };
        body["model"] = json!(self.config.model);
        body["temperature"] = json!(s.temperature);
        body["top_p"] = json!(s.top_p);
        body["max_tokens"] = json!(s.max_tokens);
        body["seed"] = json!(s.seed);
        if !s.stop.is_empty() {
            // OpenAI's API takes at most four.
            body["stop"] = json!(s.stop.iter().take(4).collect::<Vec<_>>());
        }
        if self.config.extended_sampling {
            body["top_k"] = json!(s.top_k);
            body["repeat_penalty"] = json!(s.repeat_penalty);
        }
        if self.config.stream {
            body["stream"] = json!(true);
            if !self.config.extended_sampling {
                body["stream_options"] = json!({"include_usage": true});
            }
        }
        if let Some(schema) = &request.json_schema {
            match dialect {
                Some(StructuredOutput::JsonSchema) => {
                    body["response_format"] = json!({
                        "type": "json_schema",
                        "json_schema": {"name": "reply", "schema": schema, "strict": true}
                    });
                }
                Some(StructuredOutput::JsonObjectSchema) => {
                    body["response_format"] = json!({"type": "json_object", "schema": schema});
                }
                Some(StructuredOutput::Instructions) | None => {}
            }
        }
        (endpoint, body)
    }

    /// Structured output through `response_format`. Servers enforce schemas
    /// only partly (llama-cpp-python's grammar ignores numeric bounds, for
    /// one), so the reply is validated and asked for once more if invalid.
    fn validated(
        &self,
        request: &Request,
        schema: &Value,
        dialect: StructuredOutput,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError> {
        asked_until_valid(schema, |_| {
            self.with_retries(request, Some(dialect), on_delta)
        })
    }

    /// Structured output for servers without it: instructions in the
    /// prompt, validation of the reply, and one re-ask when it is invalid.
    fn by_instructions(
        &self,
        request: &Request,
        schema: &Value,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError> {
        let instruction = format!(
            "Reply with only a JSON value, no other text, valid against this JSON schema:\n{schema}"
        );
        asked_until_valid(schema, |problem| {
            let asked = match problem {
                None => with_instruction(request, &instruction),
                Some(problem) => with_instruction(
                    request,
                    &format!(
                        "{instruction}\nYour previous reply was invalid ({problem}). Try again."
                    ),
                ),
            };
            self.with_retries(&asked, None, on_delta)
        })
    }
}

/// Asks for a reply valid against `schema`, and once more if it is not;
/// `ask` is told what was wrong with the first reply.
fn asked_until_valid(
    schema: &Value,
    mut ask: impl FnMut(Option<&str>) -> Result<Completion, ModelError>,
) -> Result<Completion, ModelError> {
    let mut problem: Option<String> = None;
    for _ in 0..2 {
        let completion = ask(problem.as_deref())?;
        match check_json(&completion.text, schema) {
            Ok(()) => return Ok(completion),
            Err(e) => problem = Some(e),
        }
    }
    Err(ModelError::InvalidResponse(format!(
        "the reply is not valid against the schema, even when asked again: {}",
        problem.unwrap_or_default()
    )))
}

/// Parses a reply as JSON and validates it against `schema`.
pub fn check_json(text: &str, schema: &Value) -> Result<(), String> {
    let value: Value = serde_json::from_str(text.trim()).map_err(|e| format!("not JSON: {e}"))?;
    schema::validate(schema, &value)
}

fn with_instruction(request: &Request, instruction: &str) -> Request {
    let mut asked = request.clone();
    asked.json_schema = None;
    match &mut asked.prompt {
        Prompt::Chat(messages) => {
            messages.push(super::Message::new(super::Role::System, instruction))
        }
        Prompt::Text(text) => {
            *text = format!("{instruction}\n\n{text}");
        }
    }
    asked
}

struct Slot<'a> {
    inner: &'a Inner,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let (count, freed) = &self.inner.in_flight;
        *lock(count) -= 1;
        freed.notify_one();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn transport_error(url: &str, e: &reqwest::Error) -> ModelError {
    if e.is_timeout() {
        ModelError::Timeout(format!("{url}: no answer within the read timeout"))
    } else if e.is_connect() {
        ModelError::Unreachable(format!("{url}: {e}"))
    } else if e.is_body() || e.is_decode() {
        ModelError::InvalidResponse(format!("{url}: {e}"))
    } else {
        ModelError::Unreachable(format!("{url}: {e}"))
    }
}

fn status_error(status: u16, retry_after: Option<Duration>, body: &str) -> ModelError {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("detail"))
                .or_else(|| v.get("error"))
                .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
        })
        .unwrap_or_else(|| clip(body));
    let lower = message.to_lowercase();
    // A server that does not take our `response_format` refuses it, some
    // with 400, some (llama-cpp-python) with a 500 validation error; either
    // way retrying will not help, and `stream` moves on to another dialect.
    if lower.contains("response_format") && (400..=599).contains(&status) {
        return ModelError::Refused { status, message };
    }
    match status {
        408 => ModelError::Timeout(format!("HTTP 408: {message}")),
        429 => ModelError::RateLimited {
            retry_after,
            message,
        },
        500..=599 => ModelError::Server { status, message },
        404 if lower.contains("model") => ModelError::ModelMissing(message),
        400 if lower.contains("context")
            && (lower.contains("length") || lower.contains("exceed")) =>
        {
            ModelError::ContextTooLong {
                prompt_tokens: 0,
                context: 0,
            }
        }
        _ => ModelError::Refused { status, message },
    }
}

/// Reads a non-streamed reply.
fn parse_reply(json: &Value, endpoint: &str) -> Result<Completion, ModelError> {
    let choice = json.pointer("/choices/0").ok_or_else(|| {
        ModelError::InvalidResponse(format!("no choices in {}", clip(&json.to_string())))
    })?;
    let text = if endpoint == "completions" {
        choice.get("text")
    } else {
        choice.pointer("/message/content")
    }
    .and_then(Value::as_str)
    .ok_or_else(|| {
        ModelError::InvalidResponse(format!("no text in {}", clip(&choice.to_string())))
    })?;
    Ok(Completion {
        text: text.to_string(),
        finish_reason: finish_reason(choice.get("finish_reason")),
        // Filled in by `send` when the server gave no counts.
        usage: usage(json.get("usage")).unwrap_or(UNKNOWN),
        prefill_ms: 0,
        decode_ms: 0,
    })
}

/// Usage a server did not give, until `send` estimates it.
const UNKNOWN: Usage = Usage {
    prompt_tokens: 0,
    cached_prompt_tokens: 0,
    completion_tokens: 0,
    estimated: true,
};

fn finish_reason(value: Option<&Value>) -> FinishReason {
    match value.and_then(Value::as_str) {
        Some("length") => FinishReason::Length,
        _ => FinishReason::Stop,
    }
}

/// The counts a server gave, if it gave any.
fn usage(value: Option<&Value>) -> Option<Usage> {
    let value = value.filter(|u| u.is_object())?;
    let number = |pointer: &str| value.pointer(pointer).and_then(Value::as_u64);
    Some(Usage {
        prompt_tokens: number("/prompt_tokens")? as u32,
        cached_prompt_tokens: number("/prompt_tokens_details/cached_tokens").unwrap_or(0) as u32,
        completion_tokens: number("/completion_tokens")? as u32,
        estimated: false,
    })
}

/// Reads a server-sent-event stream. It must end with `data: [DONE]` or a
/// finish reason: a stream that stops before is an error, not a short reply.
fn read_stream(
    response: reqwest::blocking::Response,
    endpoint: &str,
    stop: &[String],
    on_delta: &mut dyn FnMut(&str),
) -> Result<Completion, ModelError> {
    let reader = BufReader::new(response);
    let mut text = String::new();
    let mut shown = 0;
    let mut finish = None;
    let mut usage_seen = UNKNOWN;
    let mut done = false;
    for line in reader.lines() {
        let line = line.map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                ModelError::Timeout(format!("the stream stalled: {e}"))
            } else {
                ModelError::InvalidResponse(format!("the stream broke off: {e}"))
            }
        })?;
        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            break;
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| {
            ModelError::InvalidResponse(format!("bad stream chunk ({e}): {}", clip(data)))
        })?;
        if let Some(error) = chunk.get("error") {
            return Err(ModelError::Server {
                status: 500,
                message: error.to_string(),
            });
        }
        if let Some(given) = usage(chunk.get("usage")) {
            usage_seen = given;
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            continue;
        };
        let piece = if endpoint == "completions" {
            choice.get("text")
        } else {
            choice.pointer("/delta/content")
        };
        if let Some(piece) = piece.and_then(Value::as_str) {
            text.push_str(piece);
            let safe = safe_prefix_len(&text, stop);
            if find_stop(&text, stop).is_none() && safe > shown {
                on_delta(&text[shown..safe]);
                shown = safe;
            }
        }
        if let Some(reason) = choice.get("finish_reason").filter(|r| !r.is_null()) {
            finish = Some(finish_reason(Some(reason)));
        }
    }
    if !done && finish.is_none() {
        return Err(ModelError::InvalidResponse(format!(
            "the stream ended before the reply was finished (after {} characters)",
            text.len()
        )));
    }
    let end = find_stop(&text, stop).map_or(text.len(), |(at, _)| at);
    if end > shown {
        on_delta(&text[shown..end]);
    }
    Ok(Completion {
        text,
        finish_reason: finish.unwrap_or(FinishReason::Stop),
        usage: usage_seen,
        prefill_ms: 0,
        decode_ms: 0,
    })
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}
