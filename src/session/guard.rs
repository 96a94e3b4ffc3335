//! Turn guards: every generated reply passes through here before it becomes
//! a turn. Defects are repaired where a repair keeps the speaker's meaning
//! (and the repair is recorded), or the reply is rejected so another
//! candidate is used. The checks are the linter's, so a session's output
//! lints clean.

use crate::lint::{
    degenerate_repetition, hidden_characters, placeholders, plain_words, role_word_addresses,
    stage_directions, template_tokens, truncation, with_names_for_role_words,
    without_hidden_characters, without_template_tokens,
};
use crate::model::FinishReason;
use crate::speaker::Speaker;
use crate::turn::Repair;
use regex::Regex;
use std::sync::LazyLock;

/// What a guard needs to know about a reply.
pub struct Reply<'a> {
    pub speaker: Speaker,
    pub text: &'a str,
    pub finish_reason: &'a FinishReason,
    /// At most this many sentences (the patient's conversational style).
    pub max_sentences: Option<usize>,
    /// The speaker's earlier turns, to refuse a repeat.
    pub earlier: &'a [String],
    /// Names either speaker may be labelled with ("Nova", "Alicia").
    pub names: &'a [String],
    /// What each calls the other: the patient's first name and the
    /// therapist's name, said instead of "patient" or "therapist".
    pub patient_name: &'a str,
    pub therapist_name: &'a str,
    /// What the speaker was told apart from the conversation (its
    /// description, the example session), to refuse a reply that recites it.
    pub instructions: &'a str,
}

/// Why a reply cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Empty,
    Placeholder(String),
    RoleReversal(String),
    /// Nearly the same as the speaker's turn of that index (0-based among the speaker's turns).
    Repeat(usize),
    /// A word or phrase over and over (the run).
    Degenerate(String),
    /// Recites the speaker's own instructions (the stretch recited).
    PromptEcho(String),
}

/// Repairs a reply or rejects it.
pub fn check(reply: &Reply) -> Result<(String, Vec<Repair>), Rejection> {
    let mut repairs = Vec::new();
    let mut text = reply.text.replace("\r\n", "\n");

    // What no reader should get: characters they cannot see (or that turn
    // the text around, or drive their terminal), and the chat template's
    // own tokens.
    if !hidden_characters(&text).is_empty() {
        text = without_hidden_characters(&text);
        repair(
            &mut repairs,
            "hidden_character",
            "removed control, invisible and direction characters",
        );
    }
    if !template_tokens(&text).is_empty() {
        text = without_template_tokens(&text);
        repair(
            &mut repairs,
            "template_token",
            "removed chat-template tokens",
        );
    }

    // Lines written for the other speaker (or a second turn of this one)
    // end the reply; the speaker's own label at the start is dropped.
    let own = format!("{}:", reply.speaker.label());
    if let Some(rest) = text.trim_start().strip_prefix(&own) {
        text = rest.to_string();
        repair(&mut repairs, "role_leak", "removed the speaker's own label");
    }
    let named = reply.names.iter().find_map(|name| {
        text.lines()
            .scan(0, |offset, line| {
                let at = *offset;
                *offset += line.len() + 1;
                Some((at, line))
            })
            .find(|(_, line)| {
                line.trim_start()
                    .strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.trim_start().starts_with(':'))
            })
            .map(|(at, _)| at)
    });
    let labelled = LABEL_LINE.find(&text).map(|m| m.start());
    // A label after a sentence, as the linter finds it.
    let inline = crate::lint::first_role_leak(&text);
    if let Some(at) = [named, labelled, inline].into_iter().flatten().min() {
        text.truncate(at);
        repair(
            &mut repairs,
            "role_leak",
            "cut the lines written for another speaker",
        );
    }

    // The example session's patient is Sam; a base model that calls this
    // patient Sam copied the name from it.
    // The therapist calls the patient Sam; the patient introduces
    // themself as Sam ("Hi, I'm Sam."). Either way it is this patient.
    let example_name = match reply.speaker {
        Speaker::Therapist => &*EXAMPLE_NAME,
        Speaker::Patient => &*EXAMPLE_NAME_AS_SELF,
    };
    if !reply.patient_name.is_empty()
        && !reply.patient_name.starts_with("Sam")
        && example_name.is_match(&text)
    {
        text = example_name
            .replace_all(&text, format!("${{intro}}{}${{after}}", reply.patient_name))
            .into_owned();
        repair(
            &mut repairs,
            "example_name",
            "said the patient's name instead of the example session's",
        );
    }

    if !role_word_addresses(&text).is_empty() && !reply.patient_name.is_empty() {
        text = with_names_for_role_words(&text, reply.patient_name, reply.therapist_name);
        repair(
            &mut repairs,
            "role_word_address",
            "said the name instead of the role word",
        );
    }

    for aside in stage_directions(&text) {
        text = text.replacen(&aside, "", 1);
        repair(&mut repairs, "stage_direction", "removed narration");
    }
    // The safety protocol names the risk to the therapist in brackets
    // ("suicidal thoughts (suicide risk; risk level: high)"); the small
    // model says the label to the patient, who then says it back.
    if PROTOCOL_LABEL.is_match(&text) {
        text = PROTOCOL_LABEL.replace_all(&text, "").into_owned();
        repair(
            &mut repairs,
            "protocol_label",
            "removed the safety protocol's label for the risk",
        );
    }
    text = tidy(&text);

    if let Some(slot) = placeholders(&text).into_iter().next() {
        return Err(Rejection::Placeholder(slot));
    }
    if let Some(phrase) = role_reversal(reply.speaker, &text) {
        return Err(Rejection::RoleReversal(phrase));
    }
    if let Some(run) = degenerate_repetition(&text) {
        return Err(Rejection::Degenerate(run));
    }
    if let Some(stretch) = prompt_echo(&text, reply.instructions) {
        return Err(Rejection::PromptEcho(stretch));
    }

    let cut_off = *reply.finish_reason == FinishReason::Length || truncation(&text).is_some();
    if cut_off && !text.is_empty() {
        match last_full_sentence_end(&text) {
            Some(end) if end < text.len() => {
                text.truncate(end);
                repair(
                    &mut repairs,
                    "truncated_turn",
                    "trimmed to the last full sentence",
                );
            }
            Some(_) => {}
            None => {
                text.push('.');
                repair(
                    &mut repairs,
                    "truncated_turn",
                    "closed the unfinished sentence",
                );
            }
        }
    }
    if let Some(max) = reply.max_sentences {
        let ends = sentence_ends(&text);
        if ends.len() > max {
            text.truncate(ends[max - 1]);
            repair(
                &mut repairs,
                "too_long",
                &format!("kept the first {max} sentences, as the speaking style asks"),
            );
        }
    }
    text = tidy(&text);
    if text.trim().is_empty() {
        return Err(Rejection::Empty);
    }
    if let Some(index) = reply.earlier.iter().position(|e| similar(e, &text)) {
        return Err(Rejection::Repeat(index));
    }
    Ok((text, repairs))
}

/// Words in a row that count as copied when the instructions hold them too.
const ECHO_RUN: usize = 6;
/// A reply is an echo when this many of its words, and at least half of
/// them, sit in such runs: a patient may say a fact of their own in the
/// words of their description, but not recite it.
const ECHO_WORDS: usize = 15;

/// The stretch of a reply recited from the speaker's instructions, if the
/// reply is mostly that (see `ECHO_WORDS`).
pub fn prompt_echo(text: &str, instructions: &str) -> Option<String> {
    let said = plain_words(text);
    if said.len() < ECHO_WORDS {
        return None;
    }
    let told = plain_words(instructions);
    let runs: std::collections::HashSet<&[String]> = told.windows(ECHO_RUN).collect();
    let mut copied = vec![false; said.len()];
    for (start, window) in said.windows(ECHO_RUN).enumerate() {
        if runs.contains(window) {
            copied[start..start + ECHO_RUN].fill(true);
        }
    }
    let count = copied.iter().filter(|&&c| c).count();
    (count >= ECHO_WORDS && count * 2 >= said.len()).then(|| {
        let first = copied.iter().position(|&c| c).unwrap_or(0);
        let shown: Vec<&str> = said[first..].iter().take(12).map(String::as_str).collect();
        format!("{} ...", shown.join(" "))
    })
}

/// Adds the crisis resources to a safety-protocol turn that lacks them.
pub fn ensure_resources(text: &str, resources: &str, repairs: &mut Vec<Repair>) -> String {
    if text.contains(resources) {
        return text.to_string();
    }
    repair(
        repairs,
        "safety_resources",
        "added the crisis resources the protocol requires",
    );
    format!("{}\n\n{resources}", text.trim_end())
}

pub(crate) fn repair(repairs: &mut Vec<Repair>, kind: &str, action: &str) {
    repairs.push(Repair {
        kind: kind.into(),
        action: action.into(),
    });
}

/// A line that starts with a speaker label or a transcript header.
/// The name of the example session's patient (`prompt::EXAMPLE_SESSION`).
static EXAMPLE_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?P<intro>)\bSam\b(?P<after>)").expect("name pattern is valid"));
/// The patient saying the example's name as their own.
static EXAMPLE_NAME_AS_SELF: LazyLock<Regex> = LazyLock::new(|| {
    // Not "I'm Sam's partner": that Sam is someone else.
    Regex::new(r"(?P<intro>\b(?:I'm|I am|I’m|[Mm]y name is|[Cc]all me)\s+)Sam\b(?P<after>$|[^'’])")
        .expect("name pattern is valid")
});

static LABEL_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^[ \t]*[*_]*(?:Patient|Therapist|Client|Counsel+or|Speaker(?:[ \t]*\d+)?|User|Assistant|Session Number|Termination Details|Session Summary)(?:[ \t]*\([^)\n]{0,20}\))?[*_]*[ \t]*:")
        .expect("label pattern is valid")
});

/// Phrases that put a speaker in the other's role.
static PATIENT_AS_THERAPIST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:as your therapist|how does that make you feel|let's explore|what i'm hearing is|in cbt we|your homework (?:is|for this week))\b")
        .expect("pattern is valid")
});

static THERAPIST_AS_PATIENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:as your patient|my therapist (?:said|told me|thinks))\b")
        .expect("pattern is valid")
});

fn role_reversal(speaker: Speaker, text: &str) -> Option<String> {
    let pattern = match speaker {
        Speaker::Patient => &*PATIENT_AS_THERAPIST,
        Speaker::Therapist => &*THERAPIST_AS_PATIENT,
    };
    pattern.find(text).map(|m| m.as_str().to_string())
}

/// Byte offsets just after each sentence end (`.`, `!`, `?`, `…`, with
/// closing quotes or brackets).
fn sentence_ends(text: &str) -> Vec<usize> {
    SENTENCE_END.find_iter(text).map(|m| m.end()).collect()
}

fn last_full_sentence_end(text: &str) -> Option<usize> {
    sentence_ends(text).last().copied()
}

static SENTENCE_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"[.!?…]+["'”’)\]]*(?:\s|$)"#).expect("sentence pattern is valid")
});

/// A bracketed label of the safety protocol's, with the space before it.
/// Also as a small model shortens it: without the article or the hyphen,
/// a comma for the semicolon, the colon left out, the parts swapped.
static PROTOCOL_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    let families = crate::safety::family_labels()
        .map(|label| {
            let label = regex::escape(label.strip_prefix("a ").unwrap_or(label));
            format!("(?:an? )?{}", label.replace(r"\-", "[- ]?"))
        })
        .join("|");
    let part = format!(r"(?:{families}|risk level:?[ \t]*\w+)");
    Regex::new(&format!(
        r"(?i)[ \t]*\([ \t]*{part}(?:[ \t]*[;,][ \t]*{part})?[ \t]*\)"
    ))
    .expect("the label pattern is valid")
});

/// Trailing spaces, runs of blank lines and stray spaces left by removals.
fn tidy(text: &str) -> String {
    let mut paragraphs: Vec<String> = Vec::new();
    for paragraph in text.split("\n\n") {
        let lines: Vec<String> = paragraph
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty())
            .collect();
        if !lines.is_empty() {
            paragraphs.push(lines.join("\n"));
        }
    }
    paragraphs.join("\n\n")
}

/// Near-duplicates: most of their word trigrams are shared.
pub fn similar(a: &str, b: &str) -> bool {
    let grams = |t: &str| {
        plain_words(t)
            .windows(3)
            .map(|w| w.join(" "))
            .collect::<std::collections::HashSet<_>>()
    };
    let (a, b) = (grams(a), grams(b));
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let shared = a.intersection(&b).count() as f64;
    shared / a.len().min(b.len()) as f64 >= 0.8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply<'a>(speaker: Speaker, text: &'a str, finish: &'a FinishReason) -> Reply<'a> {
        Reply {
            speaker,
            text,
            finish_reason: finish,
            max_sentences: None,
            earlier: &[],
            names: &[],
            patient_name: "Alicia",
            therapist_name: "Nova",
            instructions: "",
        }
    }

    #[test]
    fn a_role_word_said_to_someone_becomes_their_name() {
        let stop = FinishReason::Stop;
        for (raw, fixed) in [
            ("Thank you, patient.", "Thank you, Alicia."),
            (
                "You have what you need, patient.",
                "You have what you need, Alicia.",
            ),
            ("Patient, how was your week?", "Alicia, how was your week?"),
            ("Hello client! Come in.", "Hello Alicia! Come in."),
        ] {
            let (text, repairs) = check(&reply(Speaker::Therapist, raw, &stop)).unwrap();
            assert_eq!(text, fixed);
            assert_eq!(kinds(&repairs), ["role_word_address"]);
        }
        let (text, _) = check(&reply(Speaker::Patient, "Thanks, therapist.", &stop)).unwrap();
        assert_eq!(text, "Thanks, Nova.");
        for kept in [
            "As a patient, you have rights here.",
            "Many clients find this helpful.",
            "I told my doctor I felt like a patient again.",
            "Be gentle, patient, and curious with yourself.",
        ] {
            let (text, repairs) = check(&reply(Speaker::Therapist, kept, &stop)).unwrap();
            assert_eq!((text.as_str(), repairs.len()), (kept, 0));
        }
    }

    #[test]
    fn chat_template_tokens_are_removed() {
        let stop = FinishReason::Stop;
        for raw in [
            "[/INST] How has your week been?",
            "How has your week been? [/INST]",
            "<<SYS>> How has your week been? <</SYS>>",
            "<|im_start|>assistant How has your week been?<|im_end|>",
            "<start_of_turn>model\nHow has your week been?<end_of_turn>",
            "<s>[INST] How has your week been? </s>",
            "How has your week been?<|eot_id|>",
        ] {
            let (text, repairs) = check(&reply(Speaker::Therapist, raw, &stop)).unwrap();
            assert_eq!(text, "How has your week been?", "{raw:?}");
            assert!(kinds(&repairs).contains(&"template_token"), "{raw:?}");
        }
        // Angle brackets in ordinary speech are not template tokens.
        let (text, repairs) = check(&reply(
            Speaker::Patient,
            "It went from <5 to >7 hours.",
            &stop,
        ))
        .unwrap();
        assert_eq!(
            (text.as_str(), repairs.len()),
            ("It went from <5 to >7 hours.", 0)
        );
    }

    #[test]
    fn hidden_characters_and_terminal_escapes_are_removed() {
        let stop = FinishReason::Stop;
        for raw in [
            "I feel\u{200B} stuck.",
            "I feel \u{202E}stuck.",
            "I feel \u{2066}stuck\u{2069}.",
            "I feel \x1b[31mstuck\x1b[0m.",
            "I feel \x1b]0;title\x07stuck.",
            "\u{FEFF}I feel stuck.\u{0007}",
            "I feel\u{00AD} stuck.",
        ] {
            let (text, repairs) = check(&reply(Speaker::Patient, raw, &stop)).unwrap();
            assert_eq!(text, "I feel stuck.", "{raw:?}");
            assert_eq!(kinds(&repairs), ["hidden_character"], "{raw:?}");
        }
        // Accents, emoji and line breaks are not hidden.
        let plain = "José said it's fine \u{1F642}\nReally.";
        let (text, repairs) = check(&reply(Speaker::Patient, plain, &stop)).unwrap();
        assert_eq!((text.as_str(), repairs.len()), (plain, 0));
    }

    #[test]
    fn degenerate_repetition_is_rejected_and_emphasis_is_not() {
        let stop = FinishReason::Stop;
        let stuck = format!("I feel very {}very.", "very ".repeat(120));
        for raw in [
            stuck.as_str(),
            "I am sorry I am sorry I am sorry I am sorry I am sorry.",
            "It's fine, it's fine, it's fine, it's fine.",
        ] {
            assert!(
                matches!(
                    check(&reply(Speaker::Therapist, raw, &stop)),
                    Err(Rejection::Degenerate(_))
                ),
                "{raw:?}"
            );
        }
        for said in [
            "No, no, no. That's not what I meant.",
            "I'm sorry, I'm sorry, I'm sorry. I know I keep saying it.",
            "It was very, very hard.",
        ] {
            assert!(
                check(&reply(Speaker::Patient, said, &stop)).is_ok(),
                "{said:?}"
            );
        }
    }

    #[test]
    fn a_reply_reciting_its_instructions_is_rejected() {
        let stop = FinishReason::Stop;
        let told = "The patient is Alicia Rodriguez, 29, woman (she/her), a software engineer. \
                    Her grandmother died in the spring and she missed a sprint deadline at work, \
                    after which she was passed over for a promotion.";
        let mut echo = reply(
            Speaker::Patient,
            "The patient is Alicia Rodriguez, 29, woman (she/her), a software engineer. Her \
             grandmother died in the spring.",
            &stop,
        );
        echo.instructions = told;
        assert!(matches!(check(&echo), Err(Rejection::PromptEcho(_))));
        // After a template token, as the server's replies did.
        echo.text = "<<SYS>> The patient is Alicia Rodriguez, 29, woman (she/her), a software \
                     engineer. Her grandmother died in the spring";
        assert!(matches!(check(&echo), Err(Rejection::PromptEcho(_))));
        // Saying a fact of one's own in the description's words is speech.
        echo.text = "I missed a sprint deadline at work, and then I was passed over for a \
                     promotion. I haven't told anyone how much that hurt, not even my partner.";
        assert!(check(&echo).is_ok());
    }

    fn kinds(repairs: &[Repair]) -> Vec<&str> {
        repairs.iter().map(|r| r.kind.as_str()).collect()
    }

    #[test]
    fn other_speakers_lines_and_own_labels_are_removed() {
        let stop = FinishReason::Stop;
        let (text, repairs) = check(&reply(
            Speaker::Therapist,
            "Therapist: How was your week?\nPatient: Fine.",
            &stop,
        ))
        .unwrap();
        assert_eq!(text, "How was your week?");
        assert_eq!(kinds(&repairs), ["role_leak", "role_leak"]);
    }

    #[test]
    fn a_label_after_a_sentence_is_cut_there() {
        let stop = FinishReason::Stop;
        let (text, repairs) = check(&reply(
            Speaker::Therapist,
            "How would it look in your house? Patient: The same way I live.",
            &stop,
        ))
        .unwrap();
        assert_eq!(text, "How would it look in your house?");
        assert_eq!(kinds(&repairs), ["role_leak"]);
        assert!(crate::lint::role_leaks(&text).is_empty());
    }

    #[test]
    fn the_example_patients_name_becomes_this_patients() {
        let stop = FinishReason::Stop;
        let (text, repairs) = check(&reply(
            Speaker::Therapist,
            "Thank you for your time, Sam. See you next week.",
            &stop,
        ))
        .unwrap();
        assert_eq!(text, "Thank you for your time, Alicia. See you next week.");
        assert_eq!(kinds(&repairs), ["example_name"]);
        // A patient who may go by Sam keeps it; "Samantha" is not "Sam".
        let mut samuel = reply(Speaker::Therapist, "Thank you, Sam.", &stop);
        samuel.patient_name = "Samuel";
        assert_eq!(check(&samuel).unwrap().0, "Thank you, Sam.");
        let (text, repairs) =
            check(&reply(Speaker::Therapist, "Samantha called you?", &stop)).unwrap();
        assert_eq!((text.as_str(), repairs.len()), ("Samantha called you?", 0));
        // The patient introducing themself as Sam is this patient; Sam as
        // someone else in their story stays.
        let (text, repairs) = check(&reply(
            Speaker::Patient,
            "Hi, I'm Sam. My friend Sam told me to come.",
            &stop,
        ))
        .unwrap();
        assert_eq!(text, "Hi, I'm Alicia. My friend Sam told me to come.");
        assert_eq!(kinds(&repairs), ["example_name"]);
        let (text, repairs) = check(&reply(Speaker::Patient, "I'm Sam's partner.", &stop)).unwrap();
        assert_eq!((text.as_str(), repairs.len()), ("I'm Sam's partner.", 0));
    }

    #[test]
    fn a_third_speakers_lines_are_cut() {
        let stop = FinishReason::Stop;
        let (text, repairs) = check(&reply(
            Speaker::Therapist,
            "To sum up, we talked about your work.\n\nSpeaker 3 (0970): Dear listener, thank you.",
            &stop,
        ))
        .unwrap();
        assert_eq!(text, "To sum up, we talked about your work.");
        assert_eq!(kinds(&repairs), ["role_leak"]);
    }

    #[test]
    fn a_line_under_a_speakers_name_is_cut() {
        let stop = FinishReason::Stop;
        let names = vec!["Nova".to_string(), "Alicia".to_string()];
        let mut r = reply(
            Speaker::Patient,
            "It was a hard week.\nNova: I hear you.",
            &stop,
        );
        r.names = &names;
        assert_eq!(check(&r).unwrap().0, "It was a hard week.");
        let mut r = reply(
            Speaker::Therapist,
            "Homework: one thought record a day.",
            &stop,
        );
        r.names = &names;
        assert_eq!(check(&r).unwrap().0, "Homework: one thought record a day.");
    }

    #[test]
    fn narration_is_removed_and_recorded() {
        let stop = FinishReason::Stop;
        let (text, repairs) = check(&reply(
            Speaker::Patient,
            "*sighs* I don't know. It's been hard.\n\n( The patient looks away. )",
            &stop,
        ))
        .unwrap();
        assert_eq!(text, "I don't know. It's been hard.");
        assert_eq!(kinds(&repairs), ["stage_direction", "stage_direction"]);
    }

    #[test]
    fn the_safety_protocols_labels_are_not_said_to_the_patient() {
        let stop = FinishReason::Stop;
        let (text, repairs) = check(&reply(
            Speaker::Therapist,
            "That sounds very heavy (suicide risk). Are you safe right now (Risk level: high)? \
             I'm glad you told me (a safeguarding concern; risk level: imminent). \
             Thank you (self injury, risk level high).\n\n(risk level: low, safeguarding concern) \
             Let's keep you safe.",
            &stop,
        ))
        .unwrap();
        assert_eq!(
            text,
            "That sounds very heavy. Are you safe right now? I'm glad you told me. Thank you.\n\n\
             Let's keep you safe."
        );
        assert_eq!(kinds(&repairs), ["protocol_label"]);
        // Brackets of the speaker's own stay.
        let own = "It was hard (the second time especially), and I felt at risk.";
        let (text, repairs) = check(&reply(Speaker::Patient, own, &stop)).unwrap();
        assert_eq!((text.as_str(), repairs.len()), (own, 0));
    }

    #[test]
    fn a_cut_off_reply_is_trimmed_to_its_last_sentence() {
        let length = FinishReason::Length;
        let (text, repairs) = check(&reply(
            Speaker::Patient,
            "I tried the exercise. It helped a bit. But then my boss",
            &length,
        ))
        .unwrap();
        assert_eq!(text, "I tried the exercise. It helped a bit.");
        assert_eq!(kinds(&repairs), ["truncated_turn"]);
    }

    #[test]
    fn placeholders_empty_replies_role_reversal_and_repeats_are_rejected() {
        let stop = FinishReason::Stop;
        assert!(matches!(
            check(&reply(
                Speaker::Therapist,
                "See you on [insert date].",
                &stop
            )),
            Err(Rejection::Placeholder(_))
        ));
        assert_eq!(
            check(&reply(Speaker::Patient, "  (smiles) ", &stop)),
            Err(Rejection::Empty)
        );
        assert!(matches!(
            check(&reply(
                Speaker::Patient,
                "How does that make you feel?",
                &stop
            )),
            Err(Rejection::RoleReversal(_))
        ));
        let earlier =
            vec!["I have been feeling really low since the funeral last month.".to_string()];
        let mut r = reply(
            Speaker::Patient,
            "I have been feeling really low since the funeral last month!",
            &stop,
        );
        r.earlier = &earlier;
        assert_eq!(check(&r), Err(Rejection::Repeat(0)));
    }

    #[test]
    fn the_speaking_style_caps_sentences() {
        let stop = FinishReason::Stop;
        let mut r = reply(Speaker::Patient, "One. Two? Three! Four.", &stop);
        r.max_sentences = Some(2);
        let (text, repairs) = check(&r).unwrap();
        assert_eq!(text, "One. Two?");
        assert_eq!(kinds(&repairs), ["too_long"]);
    }

    #[test]
    fn missing_crisis_resources_are_added() {
        let mut repairs = Vec::new();
        let text = ensure_resources("I'm worried about you.", "Call 988.", &mut repairs);
        assert_eq!(text, "I'm worried about you.\n\nCall 988.");
        assert_eq!(kinds(&repairs), ["safety_resources"]);
    }
}
