//! Deciding whether a turn ends the session: end phrases in the closing
//! part of a turn, after a minimum number of turns; and a patient leaving.

use crate::speaker::Speaker;
use regex::Regex;

/// End-phrase regexes per speaker, as written in the configuration (they
/// are quoted back in the termination details).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndPhrases {
    pub therapist: Vec<String>,
    pub patient: Vec<String>,
}

impl Default for EndPhrases {
    fn default() -> EndPhrases {
        let common = vec![
            r"\btake care\b".to_string(),
            r"\bsee you next (week|time|session)\b".to_string(),
            r"\bgoodbye\b".to_string(),
        ];
        EndPhrases {
            therapist: common.clone(),
            patient: common,
        }
    }
}

/// Phrases with which a patient leaves before the therapist closes.
pub const PATIENT_LEAVES: &[&str] = &[
    r"\bi (?:need|have|got) to (?:go|leave)(?: now| early| home)?\s*(?:[.!,;]|$)",
    r"\bi(?:'m| am) (?:leaving|going to leave|done for today)\b",
    r"\bi don't want to (?:do|continue) this (?:anymore|any more|today)\b",
    r"\bi(?:'m| am) ending (?:this|the) session\b",
];

/// Compiled end rules.
pub struct Ending {
    therapist: Vec<(String, Regex)>,
    patient: Vec<(String, Regex)>,
    leaves: Vec<Regex>,
}

impl Ending {
    pub fn new(phrases: &EndPhrases) -> Result<Ending, String> {
        let compile = |list: &[String]| -> Result<Vec<(String, Regex)>, String> {
            list.iter()
                .map(|p| {
                    Regex::new(&format!("(?i){p}"))
                        .map(|r| (p.clone(), r))
                        .map_err(|e| format!("invalid end phrase {p:?}: {e}"))
                })
                .collect()
        };
        Ok(Ending {
            therapist: compile(&phrases.therapist)?,
            patient: compile(&phrases.patient)?,
            leaves: PATIENT_LEAVES
                .iter()
                .map(|p| Regex::new(&format!("(?i){p}")).expect("built-in patterns are valid"))
                .collect(),
        })
    }

    /// The end phrase (as configured) that closes the session with this
    /// turn: it must be in the closing part of the turn (its last two
    /// sentences) and said as a farewell (not "take care of my mother" or
    /// "goodbye letters"), and a turn that ends by asking something closes
    /// nothing.
    pub fn end_phrase(&self, speaker: Speaker, text: &str) -> Option<String> {
        let text = text.trim_end();
        if text.ends_with('?') {
            return None;
        }
        let closing = closing_part(text);
        let rules = match speaker {
            Speaker::Therapist => &self.therapist,
            Speaker::Patient => &self.patient,
        };
        rules
            .iter()
            .find(|(_, regex)| {
                regex
                    .find_iter(closing)
                    .any(|m| said_as_farewell(&closing[m.end()..]))
            })
            .map(|(phrase, _)| phrase.clone())
    }

    /// Whether the patient is leaving, and their words.
    pub fn patient_leaves(&self, text: &str) -> Option<String> {
        self.leaves
            .iter()
            .find_map(|r| r.find(text))
            .map(|m| m.as_str().to_string())
    }
}

/// Whether an end phrase, followed by `after`, is a farewell: what follows
/// is punctuation, the end, a name, or one of a few words a farewell goes
/// on with; not an object ("take care of her", "goodbye letters").
fn said_as_farewell(after: &str) -> bool {
    let next: String = after
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphabetic() || *c == '\'')
        .collect();
    if next.is_empty() || next.starts_with(char::is_uppercase) {
        return true;
    }
    if next == "of" {
        let object: String = after.trim_start()[2..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphabetic())
            .collect();
        return ["yourself", "you"].contains(&object.to_lowercase().as_str());
    }
    [
        "now", "then", "for", "and", "until", "till", "everyone", "all", "soon", "again", "friend",
        "dear",
    ]
    .contains(&next.as_str())
}

/// The last two sentences of a turn.
fn closing_part(text: &str) -> &str {
    let ends: Vec<usize> = text
        .char_indices()
        .filter(|(i, c)| {
            matches!(c, '.' | '!' | '?' | '\n')
                && text[i + c.len_utf8()..]
                    .chars()
                    .next()
                    .is_none_or(char::is_whitespace)
        })
        .map(|(i, c)| i + c.len_utf8())
        .filter(|&end| end < text.len())
        .collect();
    match ends.len() {
        0 | 1 => text,
        n => &text[ends[n - 2]..],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending() -> Ending {
        Ending::new(&EndPhrases::default()).unwrap()
    }

    #[test]
    fn an_end_phrase_counts_only_in_the_closing_part() {
        let e = ending();
        assert_eq!(
            e.end_phrase(
                Speaker::Therapist,
                "Good work today. See you next week, and take care."
            ),
            Some(r"\btake care\b".to_string())
        );
        assert_eq!(
            e.end_phrase(
                Speaker::Therapist,
                "Take care of yourself this week. Now, let's look at your sleep. What time did you go to bed? Tell me about it."
            ),
            None
        );
        assert_eq!(
            e.end_phrase(
                Speaker::Therapist,
                "Take care. Before you go, how was today for you?"
            ),
            None,
            "a closing question invites a reply"
        );
    }

    #[test]
    fn an_end_phrase_must_be_a_farewell() {
        let e = ending();
        for farewell in [
            "Thank you. Take care, Alicia.",
            "Thank you. Take care of yourself this week.",
            "I'll see you Thursday. Goodbye for now.",
            "See you next week and take care",
            "Goodbye Nova.",
        ] {
            assert!(
                e.end_phrase(Speaker::Patient, farewell).is_some(),
                "{farewell}"
            );
        }
        for not_yet in [
            "It is hard. If I didn't take care of her, she would be alone.",
            "I have been writing goodbye letters to my family.",
            "I take care of the whole team at work.",
            "Maybe you can take care of your parents and work with them.",
        ] {
            assert_eq!(e.end_phrase(Speaker::Patient, not_yet), None, "{not_yet}");
        }
    }

    #[test]
    fn patients_leave_in_their_own_words() {
        let e = ending();
        assert!(e.patient_leaves("Sorry, I need to go now.").is_some());
        assert!(e.patient_leaves("I'm done for today.").is_some());
        assert!(
            e.patient_leaves("I need to go to the doctor next week.")
                .is_none()
        );
        assert!(e.patient_leaves("I went to the gym.").is_none());
    }
}
