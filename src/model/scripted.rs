//! A scripted model for deterministic tests of the engine and for
//! benchmarks of everything but the model. Never a default.
//!
//! Replies come from a script, in order; when the script runs out (or there
//! is none) each reply is a numbered filler sentence, and a request with a
//! JSON schema gets the smallest instance valid against it. Every request is
//! recorded, so tests can check what agents asked.

use super::{
    ChatModel, Completion, Conversation, FinishReason, ModelError, Request, Usage, find_stop,
};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Separates replies in a script file: a line holding only `---`.
pub const SCRIPT_SEPARATOR: &str = "---";

#[derive(Clone, Default)]
pub struct ScriptedModel {
    state: Arc<Mutex<State>>,
    source: String,
    /// How long each reply takes.
    delay: std::time::Duration,
}

#[derive(Default)]
struct State {
    replies: VecDeque<String>,
    served: usize,
    requests: Vec<Request>,
}

impl ScriptedModel {
    /// A model that answers with `replies` in order, then with filler.
    pub fn new(replies: impl IntoIterator<Item = impl Into<String>>) -> ScriptedModel {
        ScriptedModel {
            state: Arc::new(Mutex::new(State {
                replies: replies.into_iter().map(Into::into).collect(),
                ..State::default()
            })),
            source: "scripted".into(),
            delay: std::time::Duration::ZERO,
        }
    }

    /// The same model, each reply taking `delay` (so a test can stop work
    /// mid-way); described as `...?delay_ms=N`.
    pub fn with_delay(mut self, delay: std::time::Duration) -> ScriptedModel {
        self.delay = delay;
        if !delay.is_zero() {
            self.source = format!("{}?delay_ms={}", self.source, delay.as_millis());
        }
        self
    }

    /// Reads a script: replies separated by lines holding only `---`.
    pub fn from_file(path: &Path) -> Result<ScriptedModel, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ModelError::ModelMissing(format!("cannot read the script {}: {e}", path.display()))
        })?;
        let mut model = ScriptedModel::new(parse_script(&text));
        model.source = format!("scripted:{}", path.display());
        Ok(model)
    }

    /// Every request received so far, in order, from all conversations.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the data intact.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn parse_script(text: &str) -> Vec<String> {
    let mut replies = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == SCRIPT_SEPARATOR {
            replies.push(String::new());
        } else {
            let reply = replies.last_mut().expect("never empty");
            if !reply.is_empty() {
                reply.push('\n');
            }
            reply.push_str(line);
        }
    }
    replies
        .into_iter()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect()
}

impl ChatModel for ScriptedModel {
    fn describe(&self) -> String {
        self.source.clone()
    }

    fn conversation(&self) -> Result<Box<dyn Conversation>, ModelError> {
        Ok(Box::new(self.clone()))
    }

    /// Scripted replies stand in for a base model: agents send it
    /// transcript prompts, the path the default model takes.
    fn chat(&self) -> bool {
        false
    }
}

impl Conversation for ScriptedModel {
    fn stream(
        &mut self,
        request: &Request,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError> {
        let reply = {
            let mut state = self.lock();
            state.requests.push(request.clone());
            state.served += 1;
            let n = state.served;
            match (state.replies.pop_front(), &request.json_schema) {
                (Some(reply), _) => reply,
                (None, Some(schema)) => minimal_instance(schema).to_string(),
                (None, None) => format!("Scripted reply {n}."),
            }
        };
        // Outside the lock: other conversations go on meanwhile.
        std::thread::sleep(self.delay);
        let (mut text, mut finish_reason) = (reply, FinishReason::Stop);
        if let Some((at, _)) = find_stop(&text, &request.sampling.stop) {
            text.truncate(at);
            finish_reason = FinishReason::StopSequence;
        }
        // One "token" per word, so max_tokens cuts replies as a model would.
        let words: Vec<&str> = text.split_inclusive(' ').collect();
        let limit = request.sampling.max_tokens as usize;
        if words.len() > limit {
            text = words[..limit].concat().trim_end().to_string();
            finish_reason = FinishReason::Length;
        }
        for word in text.split_inclusive(' ') {
            on_delta(word);
        }
        let prompt_words = match &request.prompt {
            super::Prompt::Text(t) => t.split_whitespace().count(),
            super::Prompt::Chat(m) => m.iter().map(|m| m.content.split_whitespace().count()).sum(),
        };
        Ok(Completion {
            usage: Usage {
                prompt_tokens: prompt_words as u32,
                cached_prompt_tokens: 0,
                completion_tokens: text.split_whitespace().count() as u32,
                estimated: false,
            },
            text,
            finish_reason,
            prefill_ms: 0,
            decode_ms: 0,
        })
    }
}

/// The smallest JSON value valid against a (simple) JSON schema: objects
/// with their required properties, arrays of `minItems` items, the first
/// enum value, the minimum number, a string of `minLength` characters.
pub fn minimal_instance(schema: &Value) -> Value {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values.first().cloned().unwrap_or(Value::Null);
    }
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    let kind = match schema.get("type") {
        Some(Value::Array(kinds)) => kinds.first().and_then(Value::as_str).unwrap_or("null"),
        Some(Value::String(kind)) => kind.as_str(),
        _ if schema.get("properties").is_some() => "object",
        _ => "null",
    };
    match kind {
        "object" => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let required = schema.get("required").and_then(Value::as_array);
            let mut object = Map::new();
            for name in required.into_iter().flatten().filter_map(Value::as_str) {
                let property = properties.and_then(|p| p.get(name)).unwrap_or(&Value::Null);
                object.insert(name.to_string(), minimal_instance(property));
            }
            Value::Object(object)
        }
        "array" => {
            let count = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let item = schema.get("items").unwrap_or(&Value::Null);
            Value::Array((0..count).map(|_| minimal_instance(item)).collect())
        }
        "string" => {
            let length = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
            Value::String("x".repeat(length as usize))
        }
        "integer" => Value::from(schema.get("minimum").and_then(Value::as_i64).unwrap_or(0)),
        "number" => Value::from(schema.get("minimum").and_then(Value::as_f64).unwrap_or(0.0)),
        "boolean" => Value::Bool(false),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Request;
    use serde_json::json;

    #[test]
    fn replies_come_in_order_then_filler_and_requests_are_recorded() {
        let model = ScriptedModel::new(["First.", "Second."]);
        let mut conversation = model.conversation().unwrap();
        let texts: Vec<String> = (0..3)
            .map(|i| {
                conversation
                    .complete(&Request::text(format!("prompt {i}")))
                    .unwrap()
                    .text
            })
            .collect();
        assert_eq!(texts, ["First.", "Second.", "Scripted reply 3."]);
        assert_eq!(model.requests().len(), 3);
        assert_eq!(
            model.requests()[1].prompt,
            crate::model::Prompt::Text("prompt 1".into())
        );
    }

    #[test]
    fn stop_sequences_and_max_tokens_apply() {
        let model = ScriptedModel::new(["One two.\nPatient: three", "a b c d e"]);
        let mut c = model.conversation().unwrap();
        let mut request = Request::text("x");
        request.sampling.stop = vec!["\nPatient:".into()];
        let done = c.complete(&request).unwrap();
        assert_eq!(
            (done.text.as_str(), done.finish_reason),
            ("One two.", FinishReason::StopSequence)
        );
        request.sampling.max_tokens = 3;
        let done = c.complete(&request).unwrap();
        assert_eq!(
            (done.text.as_str(), done.finish_reason),
            ("a b c", FinishReason::Length)
        );
    }

    #[test]
    fn a_schema_gets_a_minimal_valid_instance() {
        let schema = json!({
            "type": "object",
            "required": ["topics", "mood", "kind"],
            "properties": {
                "topics": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                "mood": {"type": "integer", "minimum": 0},
                "kind": {"enum": ["a", "b"]}
            }
        });
        assert_eq!(
            minimal_instance(&schema),
            json!({"topics": ["x"], "mood": 0, "kind": "a"})
        );
    }

    #[test]
    fn scripts_split_on_separator_lines() {
        assert_eq!(
            parse_script("Hi.\n\nSecond line.\n---\nBye.\n---\n"),
            ["Hi.\n\nSecond line.", "Bye."]
        );
    }
}
