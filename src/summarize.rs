//! Writing the session summary: the five sections of the reference, asked
//! of a summarizer model as JSON valid against a schema (constrained
//! decoding on the embedded backend, `response_format` over HTTP),
//! validated, checked against the transcript, asked for once more when
//! invalid, then extracted from the transcript and marked so, and only
//! with nothing to extract a recorded failure: never a silently empty
//! summary (docs/sessions.md).

use crate::lint;
use crate::model::schema;
use crate::model::{Conversation, Message, ModelError, Prompt, Request, Role, Sampling};
use crate::session::SessionUsage;
use crate::summary::SessionSummary;
use crate::text_format;
use crate::transcript::Transcript;
use serde_json::{Value, json};

/// The longest summary item the schema allows. A model held to the schema
/// (a grammar) is stopped there, mid-word: such an item is cut off.
const MAX_ITEM_CHARS: usize = 100;

/// The JSON schema a summary must satisfy.
pub fn summary_schema() -> Value {
    let list = |min: u64| {
        json!({
            "type": "array",
            "minItems": min,
            "maxItems": 4,
            "items": {"type": "string", "minLength": 3, "maxLength": MAX_ITEM_CHARS}
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
        match parse(&done.text, &schema).and_then(|s| grounded(s, transcript)) {
            Ok(summary) => return Ok(summary),
            Err(e) => {
                usage.rejected_replies += 1;
                problem = Some(e);
            }
        }
    }
    // The summarizer could not do it: what the transcript itself shows,
    // marked as such, rather than no summary.
    extract(transcript).ok_or_else(|| SummaryError::Invalid(problem.unwrap_or_default()))
}

/// A summary built from the transcript alone, marked `extracted`: the
/// patient's most said content words as the main topics and the CBT
/// techniques the therapist used. `None` when the patient said nothing
/// with content.
pub fn extract(transcript: &Transcript) -> Option<SessionSummary> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for turn in transcript
        .turns
        .iter()
        .filter(|t| t.speaker == crate::speaker::Speaker::Patient)
    {
        for word in lint::content_words(&turn.text) {
            match counts.iter_mut().find(|(w, _)| *w == word) {
                Some((_, n)) => *n += 1,
                None => counts.push((word, 1)),
            }
        }
    }
    // Most said first; among equals, the first said.
    counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let main_topics: Vec<String> = counts.into_iter().take(3).map(|(w, _)| w).collect();
    if main_topics.is_empty() {
        return None;
    }
    let techniques = crate::eval::metrics::measure(transcript, 0)
        .techniques
        .iter()
        .map(|key| key.replace('_', " "))
        .collect();
    Some(SessionSummary {
        main_topics,
        techniques,
        extracted: true,
        ..SessionSummary::default()
    })
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

/// The summary with only the items the transcript bears out: an item cut
/// off, copied word for word from a turn (five words or more), or with no
/// content word said in the session is dropped, and a homework item must
/// be a task the therapist set and the patient agreed to (it may use the
/// task's own words). Without a main topic left, the summary is invalid.
pub fn grounded(
    mut summary: SessionSummary,
    transcript: &Transcript,
) -> Result<SessionSummary, String> {
    let turns: Vec<String> = transcript
        .turns
        .iter()
        .map(|t| lint::plain_words(&t.text).join(" "))
        .collect();
    let said: std::collections::HashSet<String> = transcript
        .turns
        .iter()
        .flat_map(|t| lint::content_words(&t.text))
        .collect();
    let agreed = agreed_homework(transcript);
    // A small model fills an empty section with its heading ("- Main
    // topics discussed"): no heading is an item.
    let headings: Vec<String> = crate::summary::SummarySection::ALL
        .iter()
        .map(|s| lint::plain_words(s.heading()).join(" "))
        .collect();
    for section in crate::summary::SummarySection::ALL {
        summary.items_mut(section).retain(|item| {
            let words = lint::content_words(item);
            let plain = lint::plain_words(item).join(" ");
            let homework = section == crate::summary::SummarySection::Homework;
            let copied = !homework
                && plain.split(' ').count() >= 5
                && turns.iter().any(|t| t.contains(&plain));
            let bears_out = words.iter().any(|w| said.contains(w));
            let shared = words.iter().filter(|w| agreed.contains(*w)).count();
            let agreed_to = !homework || (shared > 0 && shared >= words.len().min(2));
            let heading = headings.contains(&plain);
            !is_cut_off(item) && !copied && bears_out && agreed_to && !heading
        });
    }
    if summary.main_topics.is_empty() {
        return Err("no main topic is borne out by the transcript".into());
    }
    Ok(summary)
}

/// The content words of every task the therapist set that the patient's
/// next turn agreed to (the model's words, not the session structure's
/// opening, which says "homework" to every patient).
fn agreed_homework(transcript: &Transcript) -> std::collections::HashSet<String> {
    transcript
        .turns
        .windows(2)
        .filter(|pair| {
            pair[0].speaker == crate::speaker::Speaker::Therapist
                && crate::eval::metrics::sets_homework(&pair[0].text)
                && agrees(&pair[1].text)
        })
        .flat_map(|pair| {
            let set = &pair[0];
            let task = set
                .meta
                .opening
                .as_deref()
                .and_then(|o| set.text.strip_prefix(o))
                .unwrap_or(&set.text);
            lint::content_words(task)
        })
        .collect()
}

/// Whether a patient's turn says yes to what was asked, without a "but"
/// or a "not" taking it back.
fn agrees(text: &str) -> bool {
    let text = text.to_lowercase().replace('\u{2019}', "'");
    let words = lint::plain_words(&text);
    let first = words.first().map(String::as_str).unwrap_or_default();
    let yes = [
        "yes",
        "yeah",
        "okay",
        "ok",
        "sure",
        "definitely",
        "alright",
        "absolutely",
    ]
    .contains(&first)
        || [
            "i'll try",
            "i'll do",
            "i'll give",
            "i will try",
            "i will do",
            "i can do",
            "i can try",
            "i could try",
            "sounds good",
            "sounds useful",
            "sounds helpful",
            "i'd like to try",
            "i'm willing",
            "let's do",
            "i can give it",
        ]
        .iter()
        .any(|p| text.contains(p));
    let taken_back = words.iter().any(|w| {
        [
            "not", "but", "can't", "won't", "don't", "cannot", "no", "never",
        ]
        .contains(&w.as_str())
    });
    yes && !taken_back
}

/// Words an English phrase does not end on: an item ending on one stopped
/// mid-phrase ("… this week, I have an").
const NOT_LAST: &[&str] = &[
    "a", "an", "the", "my", "your", "our", "their", "and", "or", "because", "of", "if", "than",
];

/// An item that stops mid-thought: a trailing comma, dash, colon,
/// semicolon, underscore or ellipsis, a last word no phrase ends on, or a
/// bracket or curly quote left open.
pub fn is_cut_off(item: &str) -> bool {
    let trimmed = item.trim_end();
    // As written: a capital is a name's ("Plan A").
    let last_word = trimmed
        .rsplit(char::is_whitespace)
        .next()
        .unwrap_or_default();
    let open = |a: char, b: char| trimmed.matches(a).count() > trimmed.matches(b).count();
    // At the schema's limit (cleaning may take a few spaces off) and not
    // at a sentence's end: stopped by the limit.
    let at_limit = trimmed.chars().count() + 4 >= MAX_ITEM_CHARS
        && !trimmed.ends_with(['.', '!', '?', '"', '\'', ')', '\u{201d}']);
    at_limit
        || NOT_LAST.contains(&last_word)
        || trimmed.ends_with([',', '-', ':', '_', ';', '\u{2026}', '\u{2014}', '\u{2013}'])
        || trimmed.ends_with("...")
        || open('[', ']')
        || open('(', ')')
        || open('{', '}')
        || open('\u{201c}', '\u{201d}')
}

/// A section's items as the turns' guards would leave them: no hidden
/// characters or chat-template tokens, one line each (the text format keeps
/// one line per item); an item stuck repeating itself, or said already in
/// this or an earlier section (`seen`), is dropped.
fn clean_items(items: &mut Vec<String>, seen: &mut std::collections::HashSet<String>) {
    items.retain_mut(|item| {
        let text = lint::without_template_tokens(&lint::without_hidden_characters(item));
        *item = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let words = lint::plain_words(item);
        let key = words.join(" ");
        // The small model restates an item in a later section with only
        // its first word changed ("This was not…" / "It was not…"): a
        // long item is the same when all but its first word are.
        let tail =
            (words.len() >= SAME_BUT_FIRST_WORD).then(|| format!("…{}", words[1..].join(" ")));
        let said = seen.contains(&key) || tail.as_ref().is_some_and(|t| seen.contains(t));
        if item.is_empty() || lint::degenerate_repetition(item).is_some() || said {
            return false;
        }
        seen.insert(key);
        seen.extend(tail);
        true
    });
}

/// Items of at least this many words are the same item when only their
/// first word differs.
const SAME_BUT_FIRST_WORD: usize = 6;

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

        // Said again with only the first word changed (seen on the default
        // model); short items that differ in their first word are kept.
        let restated = serde_json::json!({
            "main_topics": [
                "this was not really helpful or important, I just wanted to focus on myself",
                "Mornings are hard",
                "Evenings are hard"
            ],
            "techniques": [], "helpful": [], "homework": [],
            "insights": ["It was not really helpful or important, I just wanted to focus on myself."]
        });
        let summary = parse(&restated.to_string(), &summary_schema()).unwrap();
        assert_eq!(summary.main_topics.len(), 3);
        assert!(summary.insights.is_empty(), "{:?}", summary.insights);

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
            "Could you try keeping a sleep diary this week?",
        ));
        t.turns
            .push(Turn::new(Speaker::Patient, "Yes, I can do that."));
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
    fn two_invalid_replies_give_a_summary_extracted_from_the_transcript() {
        let model = ScriptedModel::new([r#"{"main_topics": []}"#, "not json"]);
        let mut usage = SessionUsage::default();
        let summary = summarize(
            &mut *model.conversation().unwrap(),
            &transcript(),
            false,
            &mut usage,
        )
        .unwrap();
        assert!(summary.extracted);
        assert_eq!(summary.main_topics, ["sleep"]);
        assert!(summary.homework.is_empty());
        assert_eq!(usage.rejected_replies, 2);

        // With nothing to extract, it is a recorded failure.
        let mut bare = Transcript::new(1);
        bare.turns.push(Turn::new(Speaker::Patient, "Hi."));
        let model = ScriptedModel::new(["not json", "not json"]);
        let error = summarize(
            &mut *model.conversation().unwrap(),
            &bare,
            false,
            &mut usage,
        )
        .unwrap_err();
        assert!(matches!(error, SummaryError::Invalid(_)), "{error}");
    }

    #[test]
    fn items_the_transcript_does_not_bear_out_are_dropped() {
        let summary = SessionSummary {
            main_topics: vec![
                "Sleep problems".into(),
                // Said nowhere in the session.
                "Her mother's car accident".into(),
                "Sleep and the diary (and".into(),
            ],
            techniques: vec!["Could you try keeping a sleep diary".into()],
            helpful: vec!["homework: [".into(), "Naming the problem with sleep".into()],
            homework: vec!["Keep a sleep diary".into(), "Call a friend".into()],
            insights: vec![],
            extracted: false,
        };
        let kept = grounded(summary, &transcript()).unwrap();
        assert_eq!(kept.main_topics, ["Sleep problems"]);
        assert!(kept.techniques.is_empty(), "copied from a turn");
        assert_eq!(kept.helpful, ["Naming the problem with sleep"]);
        assert_eq!(kept.homework, ["Keep a sleep diary"]);

        // The agreed task may be said in the therapist's own words.
        let words = SessionSummary {
            main_topics: vec!["Sleep".into()],
            homework: vec!["Try keeping a sleep diary this week".into()],
            ..SessionSummary::default()
        };
        assert_eq!(
            grounded(words, &transcript()).unwrap().homework,
            ["Try keeping a sleep diary this week"]
        );

        // Homework the patient did not agree to is not homework.
        let mut refused = transcript();
        refused.turns[2].text = "I don't think I can.".into();
        let summary = SessionSummary {
            main_topics: vec!["Sleep".into()],
            homework: vec!["Keep a sleep diary".into()],
            ..SessionSummary::default()
        };
        assert!(grounded(summary, &refused).unwrap().homework.is_empty());

        // A section's heading is not an item, even in words the session said.
        let mut recapped = transcript();
        recapped.turns.push(Turn::new(
            Speaker::Therapist,
            "Let me recap the main topics we've discussed: sleep.",
        ));
        let headings = SessionSummary {
            main_topics: vec!["Sleep".into(), "Main topics discussed".into()],
            insights: vec!["Insights/realizations".into()],
            ..SessionSummary::default()
        };
        let kept = grounded(headings, &recapped).unwrap();
        assert_eq!(kept.main_topics, ["Sleep"]);
        assert!(kept.insights.is_empty());

        let none = SessionSummary {
            main_topics: vec!["Her mother's car accident".into()],
            ..SessionSummary::default()
        };
        assert!(grounded(none, &transcript()).is_err());
    }

    #[test]
    fn a_yes_taken_back_is_not_agreement() {
        for yes in [
            "Yes, I can do that.",
            "Okay.",
            "Sure, I'll try it.",
            "That sounds useful.",
        ] {
            assert!(agrees(yes), "{yes}");
        }
        for no in [
            "Okay, but I can't.",
            "That sounds hard.",
            "I'll think about it... no.",
            "I will not do that.",
            "I'd like to, but I have no time.",
        ] {
            assert!(!agrees(no), "{no}");
        }
    }

    #[test]
    fn cut_off_items_are_told_apart_from_whole_ones() {
        for cut in [
            "homework: [",
            "Sleep,",
            "The plan \u{2014}",
            "Grief\u{2026}",
            "He said \u{201c}never",
            // Stopped by the schema's 100 characters (seen on the default
            // model).
            "I am not good enough for this because of my work stress and perfectionism; If you can't show up on 1",
            "If you can't see the evidence for or against it, and there are some reasons why you would not be a",
            // Stopped short of the limit (seen on the default model).
            "my grandmother died four months ago Mom is too far away to see this week, I have an",
            "Worry about the exam and",
        ] {
            assert!(is_cut_off(cut), "{cut}");
        }
        for whole in [
            "A 12\" screen",
            "Naming the thought",
            "Mum's \"perfect\" standard",
            "It's (mostly) work",
            "Noticing the thought that a missed deadline means being demoted, and weighing the evidence for it.",
            "Plan A",
            "Vitamin A.",
            "What the worry is made of.",
        ] {
            assert!(!is_cut_off(whole), "{whole}");
        }
    }
}
