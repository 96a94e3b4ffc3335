//! A session written down: its turns, why it ended and its summary.

use crate::speaker::Speaker;
use crate::summary::SessionSummary;
use crate::termination::TerminationReason;
use crate::turn::Turn;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One session of a course, as the reference transcript shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// 1 for the first session of a course.
    pub session_number: u32,
    pub turns: Vec<Turn>,
    /// None while the session is still running (or when a file has no
    /// `Termination Details:`).
    pub termination: Option<TerminationReason>,
    pub summary: Option<SessionSummary>,
}

impl Transcript {
    pub fn new(session_number: u32) -> Transcript {
        Transcript {
            session_number,
            turns: Vec::new(),
            termination: None,
            summary: None,
        }
    }

    /// The speaker of the last turn, if any.
    pub fn last_speaker(&self) -> Option<Speaker> {
        self.turns.last().map(|t| t.speaker)
    }
}

/// The JSON form, shared by `transcript parse`, `transcript render` and the
/// exports: `termination` is `{reason, details}` with the typed fields beside.
#[derive(Serialize)]
struct TranscriptOut<'a> {
    session_number: u32,
    turns: &'a [Turn],
    termination: Option<TerminationJson>,
    summary: Option<&'a SessionSummary>,
}

#[derive(Deserialize)]
struct TranscriptIn {
    session_number: u32,
    turns: Vec<Turn>,
    #[serde(default)]
    termination: Option<TerminationJson>,
    #[serde(default)]
    summary: Option<SessionSummary>,
}

#[derive(Serialize, Deserialize)]
struct TerminationJson {
    reason: String,
    details: String,
    #[serde(default, skip_deserializing)]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    speaker: Option<Speaker>,
}

impl Serialize for Transcript {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let termination = self.termination.as_ref().map(|t| TerminationJson {
            reason: t.display_name().to_string(),
            details: t.details(),
            kind: Some(t.kind().to_string()),
            speaker: match t {
                TerminationReason::NaturalEnd { speaker, .. } => *speaker,
                _ => None,
            },
        });
        TranscriptOut {
            session_number: self.session_number,
            turns: &self.turns,
            termination,
            summary: self.summary.as_ref(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Transcript {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = TranscriptIn::deserialize(deserializer)?;
        let last_speaker = json.turns.last().map(|t| t.speaker);
        let termination = json.termination.map(|t| {
            let mut reason = TerminationReason::from_parts(&t.reason, &t.details, last_speaker);
            if let (TerminationReason::NaturalEnd { speaker, .. }, Some(said)) =
                (&mut reason, t.speaker)
            {
                *speaker = Some(said);
            }
            reason
        });
        Ok(Transcript {
            session_number: json.session_number,
            turns: json.turns,
            termination,
            summary: json.summary,
        })
    }
}
