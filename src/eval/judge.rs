//! Asking a judge model for a structured verdict on a session: the answer
//! must be JSON valid against a schema, and its quotes must be copied from
//! the transcript. Shared by the CTRS and the safety rubric.

use crate::model::{ChatModel, Message, ModelError, Prompt, Request, Role, Sampling};
use crate::session::SessionUsage;
use crate::transcript::Transcript;
use serde_json::Value;

/// Why a judge gave no verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JudgeError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(
        "the judge ({judge}) gave no answer valid against the {rubric} schema in {tries} tries"
    )]
    Invalid {
        judge: String,
        rubric: &'static str,
        tries: u32,
    },
}

/// What a rubric asks of a judge.
/// An item of a judge's answer that quotes the transcript as its evidence.
pub trait Quoted {
    /// The item's key (`agenda`, `detect`).
    fn key(&self) -> &str;
    fn evidence(&self) -> &str;
    fn evidence_mut(&mut self) -> &mut String;
}

pub struct Rubric<'a, T> {
    /// Its name in messages (`CTRS`, `safety`).
    pub name: &'static str,
    /// What the judge is asked to do, and the items.
    pub instruction: &'a str,
    pub items: &'a str,
    pub schema: Value,
    /// Reads an answer valid against the schema, or says why it is not.
    pub parse: &'a dyn Fn(&str) -> Result<Vec<T>, String>,
}

/// A judge's answer and how it was obtained.
pub struct Asked<T> {
    /// Each item's evidence is its quote when kept, else empty.
    pub answer: Vec<T>,
    /// Items whose quotes are not in the transcript, even when asked again.
    pub unquoted: Vec<String>,
    /// Answers that were not valid against the schema.
    pub invalid_answers: u32,
    pub usage: SessionUsage,
}

/// Asks `judge` about `transcript` with `rubric`: three requests at most.
/// An invalid answer is asked for again once, with the validator's reason;
/// quotes not in any turn are asked for again once, each named. When
/// asking again fails (the backend), the valid answer already given is
/// kept. A quote is kept only if it is copied from the transcript and more
/// than punctuation; otherwise its evidence is emptied.
pub fn ask<T: Quoted>(
    judge: &dyn ChatModel,
    transcript: &Transcript,
    rubric: &Rubric<'_, T>,
) -> Result<Asked<T>, JudgeError> {
    let mut conversation = judge.conversation()?;
    let mut usage = SessionUsage::default();
    let mut invalid_answers = 0;
    let mut correction: Option<String> = None;
    // The last valid answer, and the items whose quotes it made up.
    let mut answer: Option<(Vec<T>, Vec<String>)> = None;
    for attempt in 0..3u32 {
        let request = Request {
            prompt: prompt(judge.chat(), transcript, rubric, correction.as_deref()),
            sampling: Sampling {
                temperature: 0.0,
                max_tokens: 2048,
                seed: attempt,
                ..Sampling::default()
            },
            json_schema: Some(rubric.schema.clone()),
        };
        let done = match conversation.complete(&request) {
            Ok(done) => done,
            Err(_) if answer.is_some() => break,
            Err(e) => return Err(e.into()),
        };
        usage.count(&done.usage);
        match (rubric.parse)(&done.text) {
            Err(why) => {
                invalid_answers += 1;
                if invalid_answers == 2 {
                    break;
                }
                correction = Some(format!(
                    "An earlier answer was not valid ({why}). Answer with one JSON object \
                     holding every item as asked."
                ));
            }
            Ok(given) => {
                let made_up: Vec<(String, String)> = given
                    .iter()
                    .filter(|i| !quoted(transcript, i.evidence()))
                    .map(|i| (i.key().to_string(), i.evidence().to_string()))
                    .collect();
                let items = made_up.iter().map(|(item, _)| item.clone()).collect();
                if made_up.is_empty() || answer.is_some() {
                    answer = Some((given, items));
                    break;
                }
                let listed: Vec<String> = made_up
                    .iter()
                    .map(|(item, quote)| format!("{item}: {quote:?}"))
                    .collect();
                correction = Some(format!(
                    "An earlier answer quoted words that are not in the transcript ({}). \
                     Quote the transcript word for word, or give an empty string.",
                    listed.join("; ")
                ));
                answer = Some((given, items));
            }
        }
    }
    match answer {
        Some((mut answer, unquoted)) => {
            for item in &mut answer {
                let kept = !unquoted.iter().any(|u| u == item.key())
                    && !trimmed(item.evidence()).is_empty();
                if !kept {
                    item.evidence_mut().clear();
                }
            }
            Ok(Asked {
                answer,
                unquoted,
                invalid_answers,
                usage,
            })
        }
        None => Err(JudgeError::Invalid {
            judge: judge.describe(),
            rubric: rubric.name,
            tries: invalid_answers,
        }),
    }
}

/// The session as the judge reads it: the dialogue only, without the
/// model-written summary or the ending, which say nothing of what the
/// therapist did.
pub(crate) fn dialogue(transcript: &Transcript) -> String {
    let turns = Transcript {
        termination: None,
        summary: None,
        ..transcript.clone()
    };
    crate::text_format::render(&turns)
}

fn prompt<T>(
    chat: bool,
    transcript: &Transcript,
    rubric: &Rubric<'_, T>,
    correction: Option<&str>,
) -> Prompt {
    let task = format!(
        "{}\n\nItems:\n{}\nThe session:\n\n{}\n",
        rubric.instruction,
        rubric.items,
        dialogue(transcript).trim_end()
    );
    let correction = correction.map(|c| format!("\n{c}\n")).unwrap_or_default();
    if chat {
        Prompt::Chat(vec![
            Message::new(Role::System, rubric.instruction),
            Message::new(Role::User, format!("{task}{correction}")),
        ])
    } else {
        Prompt::Text(format!("{task}{correction}\nRatings as JSON:"))
    }
}

/// Whether `quote` is empty or copied from one of the transcript's turns.
/// A speaker's label, quotation marks, ellipses at either end, spacing and
/// curly apostrophes are not held against it.
pub fn quoted(transcript: &Transcript, quote: &str) -> bool {
    let quote = trimmed(quote);
    quote.is_empty()
        || transcript
            .turns
            .iter()
            .any(|t| plain(&t.text).contains(&quote))
}

/// A quote without what surrounds it (see `quoted`), in plain form.
pub fn trimmed(quote: &str) -> String {
    let mut quote = plain(quote);
    for label in ["Therapist:", "Patient:"] {
        if let Some(rest) = quote.strip_prefix(label) {
            quote = rest.trim_start().to_string();
        }
    }
    let edges = |c: char| c.is_whitespace() || "\"'.…".contains(c);
    quote.trim_matches(edges).to_string()
}

/// `text` with straight quotation marks and apostrophes, and every run of
/// whitespace made one space.
fn plain(text: &str) -> String {
    let straight: String = text
        .chars()
        .map(|c| match c {
            '‘' | '’' => '\'',
            '“' | '”' => '"',
            other => other,
        })
        .collect();
    straight.split_whitespace().collect::<Vec<_>>().join(" ")
}
