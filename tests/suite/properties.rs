//! Property tests: no input makes the parser, renderer or linter panic;
//! canonical transcripts round-trip byte for byte and lint clean.

use cbtsim::lint::{lint_parsed, lint_transcript};
use cbtsim::summary::SessionSummary;
use cbtsim::termination::{Budget, TerminationReason};
use cbtsim::text_format::{parse, render};
use cbtsim::{Speaker, Transcript, Turn};
use proptest::prelude::*;

const WORDS: &[&str] = &[
    "I", "feel", "tired", "work", "sleep", "my", "mother", "called", "again", "and", "it", "was",
    "hard", "we", "could", "try", "a", "thought", "record", "this", "week", "what", "do", "you",
    "notice", "when", "that", "happens", "café", "naïve", "—", "95%", "(maybe)", "\"okay\"",
];

fn sentence() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["I", "We", "It", "My", "What", "This"][..]),
        prop::collection::vec(prop::sample::select(WORDS), 0..12),
        prop::sample::select(&[".", "?", "!"][..]),
    )
        .prop_map(|(first, words, end)| {
            let rest: String = words.iter().map(|w| format!(" {w}")).collect();
            format!("{first}{rest}{end}")
        })
}

fn turn_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::collection::vec(sentence(), 1..4), 1..4).prop_map(|paragraphs| {
        paragraphs
            .into_iter()
            .map(|p| p.join(" "))
            .collect::<Vec<_>>()
            .join("\n\n")
    })
}

fn item() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(WORDS), 1..8).prop_map(|w| w.join(" "))
}

fn summary() -> impl Strategy<Value = SessionSummary> {
    let items = || prop::collection::vec(item(), 0..4);
    (items(), items(), items(), items(), items()).prop_map(
        |(main_topics, techniques, helpful, homework, insights)| SessionSummary {
            main_topics,
            techniques,
            helpful,
            homework,
            insights,
            // Not part of the text form.
            extracted: false,
        },
    )
}

fn reason(last: Option<Speaker>) -> impl Strategy<Value = TerminationReason> {
    let n = 1u32..500;
    prop_oneof![
        Just(TerminationReason::NaturalEnd {
            phrase: r"\btake care\b".into(),
            speaker: last
        }),
        n.clone()
            .prop_map(|limit| TerminationReason::MaxTurns { limit }),
        item().prop_map(|reason| TerminationReason::PatientEnded { reason }),
        (n.clone(), item())
            .prop_map(|(turn, category)| TerminationReason::SafetyEscalation { turn, category }),
        (0u64..10_000, 1u64..10_000).prop_map(|(used, limit)| {
            TerminationReason::BudgetExhausted {
                budget: Budget::Tokens { used, limit },
            }
        }),
        (n.clone(), n.clone()).prop_map(|(turn, earlier_turn)| {
            TerminationReason::ConversationLoop { turn, earlier_turn }
        }),
        item().prop_map(|error| TerminationReason::BackendFailure { error }),
        n.prop_map(|after_turns| TerminationReason::Interrupted { after_turns }),
    ]
}

fn canonical_transcript() -> impl Strategy<Value = Transcript> {
    (
        1u32..50,
        any::<bool>(),
        prop::collection::vec(turn_text(), 1..8),
        any::<bool>(),
        prop::option::of(summary()),
    )
        .prop_flat_map(|(number, patient_first, texts, ended, summary)| {
            let first = if patient_first {
                Speaker::Patient
            } else {
                Speaker::Therapist
            };
            let turns: Vec<Turn> = texts
                .into_iter()
                .enumerate()
                .map(|(i, text)| {
                    let speaker = if i % 2 == 0 { first } else { first.other() };
                    Turn::new(speaker, text)
                })
                .collect();
            let last = turns.last().map(|t| t.speaker);
            let termination = if ended {
                reason(last).prop_map(Some).boxed()
            } else {
                Just(None).boxed()
            };
            (Just(number), Just(turns), termination, Just(summary))
        })
        .prop_map(|(session_number, turns, termination, summary)| Transcript {
            session_number,
            turns,
            termination,
            summary,
        })
}

/// Text made of the format's own pieces in any order, plus noise.
fn format_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("Session Number: 1".to_string()),
        Just("Session Number: x".to_string()),
        Just("Patient: hello".to_string()),
        Just("Therapist:".to_string()),
        Just("Termination Details:".to_string()),
        Just("Reason: Natural Session End".to_string()),
        Just("Details: Detected end phrase: 'x'".to_string()),
        Just("Session Summary:".to_string()),
        Just("Homework assigned:".to_string()),
        Just("Main topics discussed:".to_string()),
        Just("- an item".to_string()),
        Just("1. a task".to_string()),
        Just("".to_string()),
        Just("\r".to_string()),
        Just("  Therapist: [Name] *smiles*".to_string()),
        "\\PC{0,30}",
    ];
    (any::<bool>(), prop::collection::vec(piece, 0..30)).prop_map(|(header, pieces)| {
        let body = pieces.join("\n");
        if header {
            format!("Session Number: 7\n{body}")
        } else {
            body
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn canonical_transcripts_round_trip_byte_for_byte(t in canonical_transcript()) {
        let text = render(&t);
        let parsed = parse(&text).unwrap();
        prop_assert!(parsed.anomalies.is_empty());
        prop_assert_eq!(&parsed.transcript, &t);
        prop_assert_eq!(render(&parsed.transcript), text);
    }

    #[test]
    fn clean_canonical_transcripts_lint_clean(t in canonical_transcript()) {
        prop_assert_eq!(lint_transcript(&t), vec![]);
        prop_assert_eq!(lint_parsed(&parse(&render(&t)).unwrap()), vec![]);
    }

    #[test]
    fn no_input_panics_and_parsing_is_a_fixed_point(text in format_soup()) {
        if let Ok(parsed) = parse(&text) {
            let _ = lint_parsed(&parsed);
            let rendered = render(&parsed.transcript);
            let again = parse(&rendered).unwrap();
            prop_assert_eq!(&again.transcript, &parsed.transcript);
            prop_assert_eq!(render(&again.transcript), rendered);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC*") {
        if let Ok(parsed) = parse(&text) {
            let _ = lint_parsed(&parsed);
            let _ = render(&parsed.transcript);
        }
    }
}
