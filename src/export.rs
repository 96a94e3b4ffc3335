//! Exports of stored sessions: the reference text format, full JSON,
//! JSONL for OpenAI chat fine-tuning (the therapist as assistant),
//! ShareGPT, and Markdown.

use crate::choice::choice_enum;
use crate::session::prompt::THERAPIST_FOR_EXPORT;
use crate::speaker::Speaker;
use crate::store::StoredSession;
use crate::{markdown, text_format};
use serde_json::{Value, json};

choice_enum! {
    /// An export format.
    pub enum Format {
        Text => "text",
        Json => "json",
        JsonlOpenai => "jsonl-openai",
        Sharegpt => "sharegpt",
        Markdown => "markdown",
    }
}

/// One exported file: its name (for formats written a file per session)
/// and its contents.
pub struct Exported {
    pub name: String,
    pub contents: String,
}

impl Format {
    /// Whether the format writes one file per session (into a folder).
    pub fn file_per_session(self) -> bool {
        matches!(self, Format::Text | Format::Markdown)
    }
}

/// Exports sessions; one file for JSON and the JSONL formats, a file per
/// session for text and Markdown.
pub fn export(sessions: &[StoredSession], format: Format) -> Vec<Exported> {
    match format {
        Format::Text | Format::Markdown => sessions
            .iter()
            .map(|s| {
                let (body, extension) = match format {
                    Format::Text => (text_format::render(&s.transcript), "txt"),
                    _ => (markdown::render(&s.transcript), "md"),
                };
                Exported {
                    name: format!("{}.{extension}", file_stem(s)),
                    contents: body,
                }
            })
            .collect(),
        Format::Json => {
            let all: Vec<Value> = sessions
                .iter()
                .map(|s| {
                    let mut value =
                        serde_json::to_value(&s.transcript).expect("a transcript serialises");
                    value["id"] = json!(s.id);
                    value["persona"] = json!(s.persona);
                    value["course"] = json!(s.course);
                    value["mood"] = json!(s.mood);
                    value["safety_events"] = json!(s.safety_events);
                    value
                })
                .collect();
            vec![Exported {
                name: "sessions.json".into(),
                contents: format!(
                    "{}\n",
                    serde_json::to_string_pretty(&all).expect("JSON serialises")
                ),
            }]
        }
        Format::JsonlOpenai | Format::Sharegpt => {
            let lines: String = sessions
                .iter()
                .map(|s| format!("{}\n", line(s, format)))
                .collect();
            vec![Exported {
                name: "sessions.jsonl".into(),
                contents: lines,
            }]
        }
    }
}

fn line(session: &StoredSession, format: Format) -> Value {
    let turns = &session.transcript.turns;
    if format == Format::JsonlOpenai {
        let mut messages = vec![json!({"role": "system", "content": THERAPIST_FOR_EXPORT})];
        messages.extend(turns.iter().map(|t| {
            let role = match t.speaker {
                Speaker::Patient => "user",
                Speaker::Therapist => "assistant",
            };
            json!({"role": role, "content": t.text})
        }));
        json!({ "messages": messages })
    } else {
        let conversations: Vec<Value> = turns
            .iter()
            .map(|t| {
                let from = match t.speaker {
                    Speaker::Patient => "human",
                    Speaker::Therapist => "gpt",
                };
                json!({"from": from, "value": t.text})
            })
            .collect();
        json!({ "conversations": conversations })
    }
}

fn file_stem(s: &StoredSession) -> String {
    let persona = s.persona.as_deref().unwrap_or("imported");
    match s.course {
        Some(course) => format!(
            "{persona}-course{course}-session{}",
            s.transcript.session_number
        ),
        None => format!("{persona}-session{}", s.id),
    }
}
