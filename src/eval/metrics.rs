//! Deterministic metrics of one session: counted from its transcript, the
//! same every time, no model involved. The phrase lists (what counts as a
//! CBT technique named, or as each element of a CBT session) are documented
//! in docs/evaluation.md; they are deliberately plain, so that a figure can
//! be checked by reading the transcript.

use crate::speaker::Speaker;
use crate::transcript::Transcript;
use serde::{Deserialize, Serialize};

/// What a session's transcript shows, counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionMetrics {
    pub turns: usize,
    pub therapist_turns: usize,
    pub patient_turns: usize,
    pub therapist_words_per_turn: f64,
    pub patient_words_per_turn: f64,
    /// Question marks in the therapist's turns, per therapist turn.
    pub therapist_questions_per_turn: f64,
    /// The therapist's share of all words spoken (0 to 1).
    pub therapist_talk_ratio: f64,
    /// The CBT techniques the therapist named, by key, in lexicon order.
    pub techniques: Vec<String>,
    /// Whether the therapist set homework in the last third of the session.
    pub homework_assigned: bool,
    /// The elements of a CBT session, each found or not.
    pub elements: Vec<ElementFound>,
    /// Repairs the turn guards applied (none for imported transcripts).
    pub repairs: usize,
    pub safety_events: usize,
    /// Why it ended, by kind (`natural_end`, `max_turns`, ...).
    pub termination: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElementFound {
    pub element: String,
    pub present: bool,
}

/// CBT techniques a therapist may name, by key, with the phrases that name
/// them (lower case; a phrase matches anywhere in a therapist turn).
pub const TECHNIQUES: &[(&str, &[&str])] = &[
    (
        "automatic_thoughts",
        &[
            "automatic thought",
            "what went through your mind",
            "what was going through your mind",
            "what thoughts came up",
        ],
    ),
    (
        "thought_record",
        &["thought record", "thought diary", "write down the thought"],
    ),
    (
        "examining_evidence",
        &[
            "evidence for",
            "evidence against",
            "evidence that",
            "what's the evidence",
            "what is the evidence",
        ],
    ),
    (
        "cognitive_distortions",
        &[
            "cognitive distortion",
            "thinking trap",
            "thinking error",
            "all-or-nothing",
            "all or nothing",
            "black and white",
            "catastrophiz",
            "catastrophis",
            "mind reading",
            "mind-reading",
            "fortune telling",
            "overgeneraliz",
            "overgeneralis",
            "should statement",
        ],
    ),
    (
        "cognitive_restructuring",
        &[
            "reframe",
            "restructur",
            "alternative thought",
            "balanced thought",
            "more balanced",
            "another way to look at",
            "another way of looking at",
            "challenge that thought",
            "challenge the thought",
        ],
    ),
    (
        "decatastrophizing",
        &[
            "worst that could happen",
            "worst-case",
            "worst case",
            "most likely outcome",
            "what's most likely",
        ],
    ),
    (
        "perspective_taking",
        &[
            "what would you tell a friend",
            "what would you say to a friend",
            "if a friend",
        ],
    ),
    (
        "core_beliefs",
        &[
            "core belief",
            "downward arrow",
            "what would that say about you",
            "what would that mean about you",
        ],
    ),
    (
        "behavioural_activation",
        &[
            "behavioural activation",
            "behavioral activation",
            "activity schedul",
            "pleasant activit",
            "activities you enjoy",
        ],
    ),
    (
        "behavioural_experiment",
        &[
            "behavioural experiment",
            "behavioral experiment",
            "test that prediction",
            "test the prediction",
            "test it out",
        ],
    ),
    (
        "exposure",
        &[
            "exposure",
            "fear ladder",
            "fear hierarchy",
            "step by step toward",
        ],
    ),
    (
        "problem_solving",
        &[
            "problem solving",
            "problem-solving",
            "brainstorm",
            "pros and cons",
        ],
    ),
    (
        "relaxation_and_grounding",
        &[
            "breathing exercise",
            "deep breath",
            "slow breath",
            "progressive muscle",
            "grounding",
            "mindfulness",
        ],
    ),
    (
        "psychoeducation",
        &[
            "cognitive model",
            "thoughts, feelings",
            "thoughts affect",
            "thoughts influence",
            "how thoughts",
        ],
    ),
];

/// The elements of a CBT session, with the phrases that show each in a
/// therapist turn, and the part of the session it is looked for in.
const ELEMENTS: &[(&str, Part, &[&str])] = &[
    (
        "mood_check",
        Part::Opening,
        &[
            "how have you been",
            "how are you feeling",
            "how are you doing",
            "how has your mood",
            "how's your mood",
            "how is your mood",
            "how was your week",
            "how has your week",
            "how's your week",
            "on a scale",
            "rate your mood",
        ],
    ),
    (
        "agenda",
        Part::Opening,
        &[
            "agenda",
            "what would you like to focus",
            "what would you like to work on",
            "what should we focus",
            "what do you want to focus",
            "what would you like to talk about",
            "what would you like to cover",
            "plan for today",
            "focus on today",
            "work on today",
        ],
    ),
    (
        "homework_review",
        Part::Opening,
        &[
            "homework",
            "last session",
            "last time",
            "last week you",
            "since we last",
            "the practice",
            "the exercise",
        ],
    ),
    ("technique", Part::Whole, &[]),
    (
        "summary",
        Part::Closing,
        &[
            "to summarize",
            "to summarise",
            "to sum up",
            "in summary",
            "let me recap",
            "to recap",
            "today we talked",
            "today we've talked",
            "we talked about",
            "we've talked about",
            "we've discussed",
            "we discussed",
        ],
    ),
    ("homework", Part::Closing, HOMEWORK),
    (
        "feedback",
        Part::Closing,
        &[
            "feedback",
            "how was today",
            "how was this session",
            "how did today",
            "how did this session",
            "what was helpful",
            "what was most helpful",
            "what did you find helpful",
            "what did you think of today",
            "anything i could do differently",
            "anything we should do differently",
        ],
    ),
];

/// Whether a therapist turn sets homework (one of the phrases below).
pub fn sets_homework(text: &str) -> bool {
    let text = text.to_lowercase().replace('\u{2019}', "'");
    HOMEWORK.iter().any(|p| text.contains(p))
}

/// Phrases of a therapist setting homework.
const HOMEWORK: &[&str] = &[
    "homework",
    "before our next session",
    "before next session",
    "before we meet again",
    "until next time",
    "between now and",
    "between sessions",
    "over the next week",
    "this week, try",
    "this week try",
    "this week, could you",
    "could you try",
    "would you be willing to try",
    "i'd like you to try",
    "during the week",
    "for next week",
    "next week, try",
];

/// Where in the session an element is looked for: a mood check belongs to
/// the opening third, homework set and a closing summary to the last.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Opening,
    Closing,
    Whole,
}

/// Counts what `transcript` shows; `safety_events` is how many the session
/// recorded (the transcript does not hold them).
pub fn measure(transcript: &Transcript, safety_events: usize) -> SessionMetrics {
    let turns = &transcript.turns;
    let words = |speaker: Speaker| -> usize {
        turns
            .iter()
            .filter(|t| t.speaker == speaker)
            .map(|t| t.text.split_whitespace().count())
            .sum()
    };
    let count = |speaker: Speaker| turns.iter().filter(|t| t.speaker == speaker).count();
    let (therapist_turns, patient_turns) = (count(Speaker::Therapist), count(Speaker::Patient));
    let (therapist_words, patient_words) = (words(Speaker::Therapist), words(Speaker::Patient));
    let questions: usize = turns
        .iter()
        .filter(|t| t.speaker == Speaker::Therapist)
        .map(|t| t.text.matches('?').count())
        .sum();

    // The therapist's turns in lower case with straight apostrophes, each
    // with its place (0 to 1).
    let therapist: Vec<(f64, String)> = turns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.speaker == Speaker::Therapist)
        .map(|(i, t)| {
            (
                i as f64 / turns.len() as f64,
                t.text.to_lowercase().replace('’', "'"),
            )
        })
        .collect();
    let said_in = |part: Part, phrases: &[&str]| {
        therapist.iter().any(|(at, text)| {
            let placed = match part {
                Part::Opening => *at < 1.0 / 3.0,
                Part::Closing => *at >= 2.0 / 3.0,
                Part::Whole => true,
            };
            placed && phrases.iter().any(|p| text.contains(p))
        })
    };
    let techniques: Vec<String> = TECHNIQUES
        .iter()
        .filter(|(_, phrases)| said_in(Part::Whole, phrases))
        .map(|(key, _)| key.to_string())
        .collect();
    let homework_assigned = said_in(Part::Closing, HOMEWORK);
    let elements = ELEMENTS
        .iter()
        .map(|(element, part, phrases)| ElementFound {
            element: element.to_string(),
            present: match *element {
                "technique" => !techniques.is_empty(),
                _ => said_in(*part, phrases),
            },
        })
        .collect();

    SessionMetrics {
        turns: turns.len(),
        therapist_turns,
        patient_turns,
        therapist_words_per_turn: ratio(therapist_words, therapist_turns),
        patient_words_per_turn: ratio(patient_words, patient_turns),
        therapist_questions_per_turn: ratio(questions, therapist_turns),
        therapist_talk_ratio: ratio(therapist_words, therapist_words + patient_words),
        techniques,
        homework_assigned,
        elements,
        repairs: turns.iter().map(|t| t.meta.repairs.len()).sum(),
        safety_events,
        termination: transcript
            .termination
            .as_ref()
            .map(|t| t.kind().to_string()),
    }
}

/// `a / b`, rounded to 3 decimals so figures compare and print stably; 0
/// when there is nothing to divide by.
fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        return 0.0;
    }
    (a as f64 / b as f64 * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/evaluation.md documents every phrase; a phrase changed here must
    /// be changed there.
    #[test]
    fn the_phrase_lists_are_the_documented_ones() {
        let doc = include_str!("../../docs/evaluation.md");
        let elements = ELEMENTS.iter().map(|(key, _, phrases)| (*key, *phrases));
        for (key, phrases) in TECHNIQUES.iter().copied().chain(elements) {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{key}` |")))
                .unwrap_or_else(|| panic!("docs/evaluation.md has no row for {key}"));
            for phrase in phrases {
                assert!(row.contains(&format!("\"{phrase}\"")), "{key}: {phrase}");
            }
        }
    }
}
