//! Writing the session summary: the five sections of the reference, asked
//! of a summarizer model as JSON valid against a schema (constrained
//! decoding on the embedded backend, `response_format` over HTTP),
//! validated, asked for once more when invalid, and otherwise a recorded
//! failure, never a silently empty summary.

use crate::lint;
use crate::model::schema;
use crate::model::{Conversation, Message, ModelError, Prompt, Request, Role, Sampling};
use crate::session::SessionUsage;
use crate::summary::SessionSummary;
use crate::text_format;
use crate::transcript::Transcript;
use serde_json::{Value, json};

/// The JSON schema a summary must satisfy.
pub fn summary_schema() -> Value {
    let list = |min: u64| {
        json!({
            "type": "array",
            "minItems": min,
            "maxItems": 4,
            "items": {"type": "string", "minLength": 3, "maxLength": 100}
        })
    };
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["main_topics", "techniques", "helpful", "homework", "insights"],
        "properties": {
            "main_topics": list(1),
            "techniques": list(0),
            "helpful": list(0),
            "homework": list(0),
            "insights": list(0)
        }
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    #[error("the summarizer failed: {0}")]
    Model(#[from] ModelError),
    #[error("the summarizer's reply is not a valid summary, even when asked again: {0}")]
    Invalid(String),
}

const INSTRUCTION: &str = "Summarise the therapy session above as JSON with five lists of short \
phrases: main_topics (main topics discussed), techniques (techniques or exercises introduced), \
helpful (things that appeared helpful or important), homework (homework assigned) and insights \
(insights or realisations). Use only what was said in the session.";

/// Asks `summarizer` for the summary of `transcript`.
pub fn summarize(
    summarizer: &mut dyn Conversation,
    transcript: &Transcript,
    chat: bool,
    usage: &mut SessionUsage,
) -> Result<SessionSummary, SummaryError> {
    let mut turns = String::new();
    for turn in &transcript.turns {
        turns.push_str(&text_format::render_turn(turn));
        turns.push('\n');
    }
    let prompt = |problem: Option<&str>| {
        let again = problem
            .map(|p| format!(" The previous answer was invalid ({p}); answer again."))
            .unwrap_or_default();
        if chat {
            Prompt::Chat(vec![
                Message::new(Role::System, "You write summaries of CBT sessions as JSON."),
                Message::new(Role::User, format!("{turns}\n{INSTRUCTION}{again}")),
            ])
        } else {
            Prompt::Text(format!(
                "Session Number: {}\n\n{turns}\n{INSTRUCTION}{again}\n\nJSON:",
                transcript.session_number
            ))
        }
    };
    let schema = summary_schema();
    let mut problem: Option<String> = None;
    for attempt in 0..2u32 {
        let request = Request {
            prompt: prompt(problem.as_deref()),
            sampling: Sampling {
                temperature: 0.3,
                max_tokens: 600,
                seed: attempt,
                ..Sampling::default()
            },
            json_schema: Some(schema.clone()),
        };
        let done = summarizer.complete(&request)?;
        usage.count(&done.usage);
        match parse(&done.text, &schema) {
            Ok(summary) => return Ok(summary),
            Err(e) => {
                usage.rejected_replies += 1;
                problem = Some(e);
            }
        }
    }
    Err(SummaryError::Invalid(problem.unwrap_or_default()))
}

/// Reads and validates a summary reply.
pub fn parse(text: &str, schema: &Value) -> Result<SessionSummary, String> {
    let value: Value = serde_json::from_str(text.trim()).map_err(|e| format!("not JSON: {e}"))?;
    schema::validate(schema, &value)?;
    let mut summary: SessionSummary =
        serde_json::from_value(value).map_err(|e| format!("not a summary: {e}"))?;
    // Sections in order, so an item said twice stays in the first.
    let mut seen = std::collections::HashSet::new();
    for section in crate::summary::SummarySection::ALL {
        clean_items(summary.items_mut(section), &mut seen);
    }
    if summary.main_topics.is_empty() {
        return Err("no main topic is left once its items are cleaned".into());
    }
    Ok(summary)
}

/// A section's items as the turns' guards would leave them: no hidden
/// characters or chat-template tokens, one line each (the text format keeps
/// one line per item); an item stuck repeating itself, or said already in
/// this or an earlier section (`seen`), is dropped.
fn clean_items(items: &mut Vec<String>, seen: &mut std::collections::HashSet<String>) {
    items.retain_mut(|item| {
        let text = lint::without_template_tokens(&lint::without_hidden_characters(item));
        *item = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let key = lint::plain_words(item).join(" ");
        !item.is_empty() && lint::degenerate_repetition(item).is_none() && seen.insert(key)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_items_are_cleaned_and_told_once() {
        let reply = serde_json::json!({
            "main_topics": [
                "Work stress after the missed deadline.",
                "work stress after the missed deadline",
                "Work  stress\nafter the missed deadline.",
                "Sleep [/INST]",
            ],
            "techniques": ["Thought record", "very very very very very very very"],
            "helpful": ["Thought record.", "Naming the thought"],
            "homework": ["Write one thought record\u{1b}[0m."],
            "insights": []
        });
        let summary = parse(&reply.to_string(), &summary_schema()).unwrap();
        assert_eq!(
            summary.main_topics,
            ["Work stress after the missed deadline.", "Sleep"]
        );
        assert_eq!(summary.techniques, ["Thought record"]);
        // Said in an earlier section already.
        assert_eq!(summary.helpful, ["Naming the thought"]);
        assert_eq!(summary.homework, ["Write one thought record."]);

        let empty = serde_json::json!({
            "main_topics": ["<|im_end|> [/INST]"],
            "techniques": [], "helpful": [], "homework": [], "insights": []
        });
        assert!(parse(&empty.to_string(), &summary_schema()).is_err());
    }
    use crate::model::ChatModel;
    use crate::model::scripted::ScriptedModel;
    use crate::speaker::Speaker;
    use crate::turn::Turn;

    fn transcript() -> Transcript {
        let mut t = Transcript::new(1);
        t.turns.push(Turn::new(Speaker::Patient, "I can't sleep."));
        t.turns.push(Turn::new(
            Speaker::Therapist,
            "Let's keep a sleep diary this week.",
        ));
        t
    }

    const VALID: &str = r#"{"main_topics": ["Sleep problems"], "techniques": ["Sleep diary"],
        "helpful": [], "homework": ["Keep a sleep diary"], "insights": []}"#;

    #[test]
    fn an_invalid_reply_is_asked_for_again() {
        let model = ScriptedModel::new(["Sure! Here is the summary: sleep.", VALID]);
        let mut usage = SessionUsage::default();
        let summary = summarize(
            &mut *model.conversation().unwrap(),
            &transcript(),
            false,
            &mut usage,
        )
        .unwrap();
        assert_eq!(summary.homework, ["Keep a sleep diary"]);
        assert_eq!((usage.replies, usage.rejected_replies), (2, 1));
        let requests = model.requests();
        assert_eq!(requests.len(), 2);
        assert!(requests[0].json_schema.is_some());
        let Prompt::Text(second) = &requests[1].prompt else {
            panic!()
        };
        assert!(second.contains("previous answer was invalid"));
    }

    #[test]
    fn two_invalid_replies_are_a_recorded_failure() {
        let model = ScriptedModel::new([r#"{"main_topics": []}"#, "not json"]);
        let mut usage = SessionUsage::default();
        let error = summarize(
            &mut *model.conversation().unwrap(),
            &transcript(),
            false,
            &mut usage,
        )
        .unwrap_err();
        assert!(matches!(error, SummaryError::Invalid(_)), "{error}");
    }
}
