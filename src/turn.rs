//! One spoken turn and what is known about how it was made.

use crate::speaker::Speaker;
use serde::{Deserialize, Serialize};

/// A turn of a session: who spoke and what they said, plus how it was produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub speaker: Speaker,
    /// The spoken text. Paragraphs are separated by one blank line.
    pub text: String,
    /// How the turn was produced. Empty for imported transcripts.
    #[serde(default, skip_serializing_if = "TurnMeta::is_empty")]
    pub meta: TurnMeta,
}

impl Turn {
    pub fn new(speaker: Speaker, text: impl Into<String>) -> Turn {
        Turn {
            speaker,
            text: text.into(),
            meta: TurnMeta::default(),
        }
    }
}

/// Production metadata of a generated turn.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnMeta {
    /// The model spec that produced the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u32>,
    /// Wall time spent producing the turn, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    /// Every repair a turn guard applied to the raw model output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<Repair>,
    /// How many replies were generated to choose this one from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<u32>,
    /// The crisis detector's model layer's verdict on a patient turn (a
    /// risk category, or `none`), when a safety model screened it: kept so
    /// a resumed session reads the same verdict instead of asking again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_model: Option<crate::safety::Category>,
    /// The words the engine began the turn with (the session structure's
    /// opening for the phase), which the model went on from; the text
    /// holds them too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opening: Option<String>,
    /// The session structure's phase of a therapist turn (`check_in`,
    /// `agenda`, ..., `feedback`), which its prompt named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The persona fact a patient turn's prompt asked it to bring up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fact: Option<String>,
    /// How a therapist turn answered the patient's disclosure just before
    /// it: `protocol` (the safety questions and the resources) or
    /// `follow_up` (a disclosure already answered this session: a check
    /// and the resources, within the session's phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<String>,
    /// Typed by a person (`cbtsim play`), stored as typed: no model
    /// produced it and no guard touched it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub person: bool,
}

impl TurnMeta {
    pub fn is_empty(&self) -> bool {
        *self == TurnMeta::default()
    }
}

/// A change a turn guard made to a generated reply, kept so nothing is silently altered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repair {
    /// What was wrong, in the linter's words (`truncated_turn`, `placeholder`, ...).
    pub kind: String,
    /// What was done about it.
    pub action: String,
}
