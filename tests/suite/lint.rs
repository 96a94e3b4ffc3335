//! The transcript linter, on the reference, on our own flawed session, on
//! hand-written defects, and on text that must not be flagged.

use super::util::{data, flawed_session, read, reference_or_skip};
use cbtsim::lint::{FindingKind, lint_parsed, turn_defects};
use cbtsim::text_format::parse;

fn findings_of(text: &str) -> Vec<(FindingKind, Option<usize>)> {
    lint_parsed(&parse(text).unwrap())
        .into_iter()
        .map(|f| (f.kind, f.turn))
        .collect()
}

fn kinds(text: &str) -> Vec<FindingKind> {
    turn_defects(text).into_iter().map(|(k, _)| k).collect()
}

#[test]
fn the_reference_has_exactly_its_four_known_defects() {
    let Some(reference) = reference_or_skip("the_reference_has_exactly_its_four_known_defects")
    else {
        return;
    };
    assert_eq!(
        findings_of(&read(&reference)),
        vec![
            (FindingKind::TruncatedTurn, Some(9)),
            (FindingKind::Placeholder, Some(12)),
            (FindingKind::StageDirection, Some(12)),
            (FindingKind::DuplicateHeader, None),
        ]
    );
}

#[test]
fn the_flawed_session_has_exactly_its_four_defects() {
    // The reference's kinds of defects, at turns of our own fixture: the
    // patient's turn 7 stops at "and then I", turn 10 has a paragraph in
    // parentheses, turn 12 says "[insert date and time]", and the summary
    // header is written twice. Nothing else in it may be flagged.
    assert_eq!(
        findings_of(&read(&flawed_session())),
        vec![
            (FindingKind::TruncatedTurn, Some(7)),
            (FindingKind::StageDirection, Some(10)),
            (FindingKind::Placeholder, Some(12)),
            (FindingKind::DuplicateHeader, None),
        ]
    );
}

#[test]
fn hand_written_defects_are_all_found() {
    let findings = lint_parsed(&parse(&read(&data("transcripts/defects.txt"))).unwrap());
    let text: String = findings.iter().map(|f| format!("{f}\n")).collect();
    insta::assert_snapshot!(text);
}

#[test]
fn clean_transcripts_lint_clean() {
    for name in [
        "clean-natural-end.txt",
        "therapist-first-max-turns.txt",
        "patient-ended-no-summary.txt",
    ] {
        let text = read(&data(&format!("transcripts/{name}")));
        assert_eq!(findings_of(&text), vec![], "{name}");
    }
}

#[test]
fn truncation() {
    assert_eq!(
        kinds("It's just hard to break"),
        vec![FindingKind::TruncatedTurn]
    );
    assert_eq!(
        kinds("Here is what I suggest:"),
        vec![FindingKind::TruncatedTurn]
    );
    assert_eq!(
        kinds("I was going to say -"),
        vec![FindingKind::TruncatedTurn]
    );
    for fine in [
        "That makes sense.",
        "Does it?",
        "Wow!",
        "She said, \"I'm proud of you.\"",
        "It trailed off\u{2026}",
        "I'd rate it a 4 (out of 10).",
    ] {
        assert_eq!(kinds(fine), vec![], "{fine}");
    }
}

#[test]
fn placeholders() {
    for slot in [
        "Our next session will be in [insert time and date].",
        "Thank you, [Name].",
        "See you on <date>.",
        "Hello {client_name}.",
        "Call {{hotline}} any time.",
        "We meet again on ____.",
        "I'll see you at [Time] on [Day].",
    ] {
        assert!(kinds(slot).contains(&FindingKind::Placeholder), "{slot}");
    }
    for fine in [
        "Aim for 95% instead of 100% (a realistic standard).",
        "See the worksheet [link](https://example.org/sheet).",
        "I rated it <5 before and >3 after.",
        "Use the [ABC] model: activating event, belief, consequence.",
    ] {
        assert!(!kinds(fine).contains(&FindingKind::Placeholder), "{fine}");
    }
}

#[test]
fn stage_directions() {
    for aside in [
        "( Session ends with a warm smile and a nod of encouragement ).",
        "*smiles* That's a good question.",
        "(sighs) I don't know.",
        "[pauses] It's hard to say.",
        "I see. *takes a deep breath* Let's go on.",
        "Thank you.\n\n*The therapist nods slowly.*",
    ] {
        assert!(
            kinds(aside).contains(&FindingKind::StageDirection),
            "{aside}"
        );
    }
    for fine in [
        "That was *really* hard for me.",
        "It felt like (to be honest) a relief.",
        "Setting realistic standards (95% vs 100%) helped.",
    ] {
        assert!(
            !kinds(fine).contains(&FindingKind::StageDirection),
            "{fine}"
        );
    }
}

#[test]
fn role_leaks() {
    for leak in [
        "I hear you.\nPatient: Thanks.",
        "I hear you. Therapist: How does that feel?",
        "Okay.\n  **Therapist:** Let's begin.",
        "Client: I feel awful.",
        // Labels a base model invents for a third speaker.
        "To sum up, we talked about work.\n\nSpeaker 3 (0970): Dear listener, thank you.",
        "I see.\nUser: What should I do?",
    ] {
        assert!(kinds(leak).contains(&FindingKind::RoleLeak), "{leak}");
    }
    for fine in [
        "Be patient: change takes time.",
        "My therapist said I should rest.",
        "As your therapist, I want to check in.",
        "The speaker at the conference said one thing: rest.",
        "Every user of the app: that's who I worry about.",
    ] {
        assert!(!kinds(fine).contains(&FindingKind::RoleLeak), "{fine}");
    }
}

#[test]
fn empty_turns_and_repeated_speakers() {
    let text = "Session Number: 1\n\nPatient: Hi.\n\nPatient:\n\nTherapist: Hello.\n";
    assert_eq!(
        findings_of(text),
        vec![
            (FindingKind::SameSpeakerTwice, Some(2)),
            (FindingKind::EmptyTurn, Some(2)),
        ]
    );
}

/// Odd model output (issue: chat-template tokens, hidden characters,
/// degenerate repetition) is a defect the linter names, and the guards
/// share these checks, so no session of cbtsim's holds them.
#[test]
fn odd_model_output_is_found() {
    assert_eq!(
        kinds("[/INST] How was your week?"),
        [FindingKind::TemplateToken]
    );
    assert_eq!(
        kinds("<start_of_turn>model How was your week?<end_of_turn>"),
        [FindingKind::TemplateToken, FindingKind::TemplateToken]
    );
    assert_eq!(
        kinds("How was\u{200B} your week?"),
        [FindingKind::HiddenCharacter]
    );
    let defects = turn_defects("How was \u{202E}your week\x1b[0m?");
    let shown: Vec<&str> = defects.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(shown, ["ESC [", "U+202E"], "named, never printed raw");
    assert_eq!(
        kinds(&format!("I feel {}.", "very ".repeat(40).trim())),
        [FindingKind::DegenerateRepetition]
    );
    assert_eq!(
        kinds("You have what you need, patient."),
        [FindingKind::RoleWordAddress]
    );
    // Reported as hidden, not also as a turn that ends oddly.
    assert_eq!(
        kinds("Is that okay?\x1b[0m"),
        [FindingKind::HiddenCharacter]
    );
    for fine in [
        "Be gentle, patient, and kind to yourself.",
        "My daughter is a \u{1F469}\u{200D}\u{2695}\u{FE0F} now.",
        "As a patient, you can ask for a break.",
        "No, no, no, no. I didn't mean that.",
        "It took <2 hours> that day? No, more.",
        "Ça va. I'm okay \u{1F642}.",
        "I'm so, so tired.",
    ] {
        assert_eq!(kinds(fine), [], "{fine:?}");
    }
}
