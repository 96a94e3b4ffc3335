//! Simulated patients: the persona schema, loading with located errors, and
//! the library of sample personas that ships inside the binary.
//!
//! The schema is documented field by field in docs/personas.md.

mod library;
mod load;
mod select;

pub use library::{LIBRARY, library, library_persona};
pub use load::{PersonaError, load_file, parse_persona};
pub use select::{PersonaLookupError, resolve, select};

use crate::choice::choice_enum;
use crate::risk::RiskLevel;
use serde::{Deserialize, Serialize};

/// A simulated patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persona {
    /// The file name without extension, kebab-case (`alicia-rodriguez`).
    pub id: String,
    pub identity: Identity,
    pub background: Background,
    pub cognitive_model: CognitiveModel,
    pub conversation: Conversation,
    pub risk: Risk,
    pub mood: Mood,
    /// Things that happen between sessions, in order.
    pub life_events: Vec<LifeEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    pub age: u32,
    pub gender: String,
    pub pronouns: String,
    pub occupation: String,
    pub culture: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Background {
    /// Life history in the persona's own terms, revealed gradually.
    pub history: String,
    /// What brings them to therapy, most pressing first.
    pub presenting_problems: Vec<String>,
}

/// The Beck cognitive conceptualisation: beliefs, the triggering situation
/// and what follows from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CognitiveModel {
    pub core_beliefs: Vec<CoreBelief>,
    /// The core beliefs in the persona's own words.
    pub core_belief_statements: Vec<String>,
    pub intermediate_beliefs: Vec<String>,
    pub coping_strategies: Vec<String>,
    pub situation: String,
    pub automatic_thoughts: Vec<String>,
    pub emotions: Vec<String>,
    pub behaviours: Vec<String>,
}

choice_enum! {
    /// The three categories of core belief in Beck's model.
    pub enum CoreBelief {
        Helpless => "helpless",
        Unlovable => "unlovable",
        Worthless => "worthless",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub style: ConversationalStyle,
    pub attitude: Attitude,
    /// Free text on how they talk: idioms, pace, what they avoid.
    pub manner: String,
}

choice_enum! {
    /// How the patient talks (the six styles of PATIENT-Ψ).
    pub enum ConversationalStyle {
        Plain => "plain",
        Upset => "upset",
        Verbose => "verbose",
        Reserved => "reserved",
        Tangent => "tangent",
        Pleasing => "pleasing",
    }
}

choice_enum! {
    /// How the patient feels about being in therapy.
    pub enum Attitude {
        Engaged => "engaged",
        Ambivalent => "ambivalent",
        Skeptical => "skeptical",
        Resistant => "resistant",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Risk {
    pub level: RiskLevel,
    pub disclosure: Disclosure,
    /// What the risk is (thoughts, plan, means, history); empty when level is none.
    pub details: String,
}

choice_enum! {
    /// How readily the patient talks about risk.
    pub enum Disclosure {
        /// Says it unprompted.
        Open => "open",
        /// Says it when asked directly.
        WhenAsked => "when_asked",
        /// Says it only once trust has built, later in a session.
        AfterTrust => "after_trust",
        /// Denies it even when asked.
        Concealed => "concealed",
    }
}

/// Baseline questionnaire scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mood {
    /// PHQ-9, 0–27.
    pub phq9: u32,
    /// GAD-7, 0–21.
    pub gad7: u32,
}

impl Mood {
    pub const PHQ9_MAX: u32 = 27;
    pub const GAD7_MAX: u32 = 21;

    /// The PHQ-9's published severity bands.
    pub fn phq9_severity(self) -> &'static str {
        match self.phq9 {
            0..=4 => "minimal",
            5..=9 => "mild",
            10..=14 => "moderate",
            15..=19 => "moderately severe",
            _ => "severe",
        }
    }

    /// The GAD-7's published severity bands.
    pub fn gad7_severity(self) -> &'static str {
        match self.gad7 {
            0..=4 => "minimal",
            5..=9 => "mild",
            10..=14 => "moderate",
            _ => "severe",
        }
    }

    /// The 0–10 mood rating a patient with these scores gives at a
    /// check-in: the PHQ-9 turned around and scaled (0 → 10, 27 → 0).
    pub fn rating(self) -> u32 {
        let phq9 = self.phq9.min(Self::PHQ9_MAX);
        ((Self::PHQ9_MAX - phq9) * 10 + Self::PHQ9_MAX / 2) / Self::PHQ9_MAX
    }

    /// Both scores moved by `points` (negative: better), kept in range.
    pub fn moved(self, points: i32) -> Mood {
        let shift = |score: u32, max: u32| score.saturating_add_signed(points).min(max);
        Mood {
            phq9: shift(self.phq9, Self::PHQ9_MAX),
            gad7: shift(self.gad7, Self::GAD7_MAX),
        }
    }
}

/// Something that happens to the persona before a given session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifeEvent {
    /// The session it happens before (2 = between sessions 1 and 2).
    pub before_session: u32,
    pub event: String,
    /// Points the event adds to both questionnaire scores (negative: relief).
    #[serde(default)]
    pub mood_change: i32,
}
