//! The parser and renderer of the reference text format.

use super::util::{data, flawed_session, read, reference_or_skip};
use cbtsim::summary::SessionSummary;
use cbtsim::termination::{Budget, TerminationReason};
use cbtsim::text_format::{Anomaly, parse, render};
use cbtsim::{Speaker, Transcript, Turn};

#[test]
fn the_reference_parses_into_twelve_turns_a_termination_and_five_sections() {
    let Some(reference) =
        reference_or_skip("the_reference_parses_into_twelve_turns_a_termination_and_five_sections")
    else {
        return;
    };
    let parsed = parse(&read(&reference)).unwrap();
    let t = &parsed.transcript;
    assert_eq!(t.session_number, 1);
    assert_eq!(t.turns.len(), 12);
    assert_eq!(t.turns[0].speaker, Speaker::Patient);
    for (i, turn) in t.turns.iter().enumerate() {
        let expected = if i % 2 == 0 {
            Speaker::Patient
        } else {
            Speaker::Therapist
        };
        assert_eq!(turn.speaker, expected, "turn {}", i + 1);
    }
    assert!(t.turns[8].text.ends_with("It's just hard to break"));
    assert_eq!(
        t.turns[3].text.split("\n\n").count(),
        6,
        "turn 4 has six paragraphs"
    );
    let reason = t.termination.as_ref().unwrap();
    assert_eq!(reason.display_name(), "Natural Session End");
    assert_eq!(reason.details(), r"Detected end phrase: '\btake care\b'");
    assert_eq!(
        *reason,
        TerminationReason::NaturalEnd {
            phrase: r"\btake care\b".into(),
            speaker: Some(Speaker::Therapist)
        }
    );
    let s = t.summary.as_ref().unwrap();
    let sizes = [
        s.main_topics.len(),
        s.techniques.len(),
        s.helpful.len(),
        s.homework.len(),
        s.insights.len(),
    ];
    assert_eq!(sizes, [5, 4, 4, 3, 4]);
    assert_eq!(
        s.homework[2],
        "Write down three things they're proud of about themselves (beyond accomplishments)"
    );
    assert_eq!(
        parsed.anomalies,
        vec![Anomaly::DuplicateHeader {
            header: "Session Summary:".into(),
            line: 111
        }]
    );
}

#[test]
fn the_flawed_session_parses_into_twelve_turns_a_termination_and_five_sections() {
    let parsed = parse(&read(&flawed_session())).unwrap();
    let t = &parsed.transcript;
    assert_eq!(t.session_number, 1);
    assert_eq!(t.turns.len(), 12);
    for (i, turn) in t.turns.iter().enumerate() {
        let expected = if i % 2 == 0 {
            Speaker::Patient
        } else {
            Speaker::Therapist
        };
        assert_eq!(turn.speaker, expected, "turn {}", i + 1);
    }
    // Turn 7 is the one cut off mid-sentence.
    assert!(t.turns[6].text.ends_with("everything is fine and then I"));
    // Turn 10's second paragraph is the stage direction, kept as a paragraph.
    let paragraphs: Vec<&str> = t.turns[9].text.split("\n\n").collect();
    assert_eq!(paragraphs.len(), 8, "turn 10 has eight paragraphs");
    assert_eq!(
        paragraphs[1],
        "(Nova pauses, giving Greta a moment with that thought before going on.)"
    );
    let reason = t.termination.as_ref().unwrap();
    assert_eq!(reason.display_name(), "Natural Session End");
    assert_eq!(reason.details(), r"Detected end phrase: '\btake care\b'");
    assert_eq!(
        *reason,
        TerminationReason::NaturalEnd {
            phrase: r"\btake care\b".into(),
            speaker: Some(Speaker::Therapist)
        }
    );
    let s = t.summary.as_ref().unwrap();
    let sizes = [
        s.main_topics.len(),
        s.techniques.len(),
        s.helpful.len(),
        s.homework.len(),
        s.insights.len(),
    ];
    assert_eq!(sizes, [4, 5, 3, 4, 4]);
    assert_eq!(
        s.homework[0],
        "Keep a thought record for moments of guilt, especially at night"
    );
    // The second "Session Summary:" is on line 113 of the fixture.
    assert_eq!(
        parsed.anomalies,
        vec![Anomaly::DuplicateHeader {
            header: "Session Summary:".into(),
            line: 113
        }]
    );
}

/// Parses and renders a file whose only flaw of layout is a second
/// `Session Summary:` header right after the first: the rendering is the file
/// without it, and parses back to the same transcript.
fn renders_canonically_with_the_summary_header_once(text: &str) {
    let parsed = parse(text).unwrap();
    let rendered = render(&parsed.transcript);
    let expected = text.replacen(
        "Session Summary:\n\nSession Summary:\n",
        "Session Summary:\n",
        1,
    );
    assert_ne!(expected, text, "the file has the doubled header");
    assert_eq!(rendered, expected);
    assert_eq!(parse(&rendered).unwrap().transcript, parsed.transcript);
}

#[test]
fn the_reference_renders_canonically_with_the_summary_header_once() {
    // Kept on the reference itself: it shows that what we render is the
    // reference's own layout, byte for byte.
    let Some(reference) =
        reference_or_skip("the_reference_renders_canonically_with_the_summary_header_once")
    else {
        return;
    };
    renders_canonically_with_the_summary_header_once(&read(&reference));
}

#[test]
fn the_flawed_session_renders_canonically_with_the_summary_header_once() {
    renders_canonically_with_the_summary_header_once(&read(&flawed_session()));
}

#[test]
fn canonical_files_round_trip_byte_for_byte() {
    for name in [
        "therapist-first-max-turns.txt",
        "patient-ended-no-summary.txt",
        "clean-natural-end.txt",
    ] {
        let text = read(&data(&format!("transcripts/{name}")));
        let parsed = parse(&text).unwrap();
        assert!(parsed.anomalies.is_empty(), "{name}");
        assert_eq!(render(&parsed.transcript), text, "{name}");
    }
}

#[test]
fn therapist_first_with_an_empty_summary_section() {
    let parsed = parse(&read(&data("transcripts/therapist-first-max-turns.txt"))).unwrap();
    let t = parsed.transcript;
    assert_eq!(t.session_number, 3);
    assert_eq!(t.turns[0].speaker, Speaker::Therapist);
    assert_eq!(t.turns.len(), 5);
    assert_eq!(
        t.termination,
        Some(TerminationReason::MaxTurns { limit: 5 })
    );
    let s = t.summary.unwrap();
    assert!(s.helpful.is_empty());
    assert_eq!(s.homework.len(), 2);
}

#[test]
fn a_transcript_without_a_summary() {
    let t = parse(&read(&data("transcripts/patient-ended-no-summary.txt")))
        .unwrap()
        .transcript;
    assert_eq!(t.summary, None);
    assert_eq!(
        t.termination,
        Some(TerminationReason::PatientEnded {
            reason: "said they had to leave".into()
        })
    );
}

#[test]
fn odd_spacing_is_normalised() {
    let parsed = parse(&read(&data("transcripts/odd-spacing.txt"))).unwrap();
    let t = &parsed.transcript;
    assert_eq!(t.session_number, 2);
    assert_eq!(
        t.turns[0].text,
        "I tried the thought record.\n\nIt was harder than I expected.\nI only did it twice."
    );
    assert_eq!(
        t.turns[1].text,
        "Twice is a start.\n\nWhat got in the way the other days?"
    );
    assert_eq!(
        t.termination,
        Some(TerminationReason::Interrupted { after_turns: 2 })
    );
    let s = t.summary.as_ref().unwrap();
    assert_eq!(s.main_topics, vec!["Thought record review"]);
    assert_eq!(
        s.homework,
        vec![
            "Complete a thought record daily",
            "Note the strongest emotion"
        ]
    );
    assert_eq!(parsed.anomalies.len(), 1);
    insta::assert_snapshot!(render(t));
}

#[test]
fn crlf_line_ends_parse_like_lf() {
    let lf = read(&flawed_session());
    assert!(!lf.contains('\r'), "the fixture itself has LF line ends");
    let crlf = lf.replace('\n', "\r\n");
    assert_eq!(parse(&crlf).unwrap(), parse(&lf).unwrap());
}

#[test]
fn every_termination_reason_renders_and_parses_back() {
    let reasons = [
        TerminationReason::NaturalEnd {
            phrase: r"\bsee you next (week|time|session)\b".into(),
            speaker: Some(Speaker::Therapist),
        },
        TerminationReason::MaxTurns { limit: 30 },
        TerminationReason::PatientEnded {
            reason: "said 'I'm done for today' and left".into(),
        },
        TerminationReason::SafetyEscalation {
            turn: 2,
            category: "suicidal intent".into(),
        },
        TerminationReason::BudgetExhausted {
            budget: Budget::Tokens {
                used: 8192,
                limit: 8000,
            },
        },
        TerminationReason::BudgetExhausted {
            budget: Budget::Seconds {
                used: 600,
                limit: 600,
            },
        },
        TerminationReason::ConversationLoop {
            turn: 2,
            earlier_turn: 1,
        },
        TerminationReason::BackendFailure {
            error: "timed out after 3 retries".into(),
        },
        TerminationReason::Interrupted { after_turns: 2 },
    ];
    let mut rendered_all = String::new();
    for reason in reasons {
        let transcript = Transcript {
            session_number: 1,
            turns: vec![
                Turn::new(Speaker::Patient, "Hello."),
                Turn::new(Speaker::Therapist, "Hello, welcome."),
            ],
            termination: Some(reason),
            summary: Some(SessionSummary::default()),
        };
        let text = render(&transcript);
        assert_eq!(parse(&text).unwrap().transcript, transcript);
        let tail = text.split("Termination Details:\n").nth(1).unwrap();
        rendered_all += tail.split("\n\n").next().unwrap();
        rendered_all += "\n";
    }
    insta::assert_snapshot!(rendered_all);
}

#[test]
fn json_and_text_agree() {
    let t = parse(&read(&flawed_session())).unwrap().transcript;
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(json["termination"]["reason"], "Natural Session End");
    assert_eq!(json["turns"][0]["speaker"], "patient");
    assert_eq!(json["summary"]["homework"].as_array().unwrap().len(), 4);
    let back: Transcript = serde_json::from_value(json).unwrap();
    assert_eq!(back, t);
    // A minimal hand-written JSON transcript, without the extra fields.
    let minimal: Transcript = serde_json::from_str(
        r#"{"session_number": 4, "turns": [{"speaker": "therapist", "text": "Hi."}],
            "termination": {"reason": "Max Turns Reached", "details": "Reached the maximum of 1 turns"}}"#,
    )
    .unwrap();
    assert_eq!(
        minimal.termination,
        Some(TerminationReason::MaxTurns { limit: 1 })
    );
    assert_eq!(minimal.summary, None);
}

#[test]
fn malformed_files_are_rejected_with_the_line() {
    let cases = [
        ("", 1, "no 'Session Number: N' header"),
        ("Patient: hi\n", 1, "expected 'Session Number: N'"),
        ("Session Number: one\n", 1, "whole number"),
        ("Session Number: 1\n\nhello\n", 3, "expected a turn"),
        (
            "Session Number: 1\n\nPatient: hi.\n\n\nTermination Details:\nDetails: x\n",
            6,
            "no 'Reason:' line",
        ),
        (
            "Session Number: 1\n\nPatient: hi.\n\n\nTermination Details:\nReason: x\nwhat\n",
            8,
            "expected 'Reason:' or 'Details:'",
        ),
        (
            "Session Number: 1\n\nPatient: hi.\n\n\nSession Summary:\n\n- floating item\n",
            8,
            "section heading",
        ),
    ];
    for (text, line, message) in cases {
        let error = parse(text).unwrap_err();
        assert_eq!(error.line, line, "{text:?}: {error}");
        assert!(error.message.contains(message), "{text:?}: {error}");
    }
}
