//! Who is speaking in a session.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One of the two parties of a CBT session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    Patient,
    Therapist,
}

impl Speaker {
    /// The label that opens this speaker's turns in the text format.
    pub fn label(self) -> &'static str {
        match self {
            Speaker::Patient => "Patient",
            Speaker::Therapist => "Therapist",
        }
    }

    /// The other party.
    pub fn other(self) -> Speaker {
        match self {
            Speaker::Patient => Speaker::Therapist,
            Speaker::Therapist => Speaker::Patient,
        }
    }

    /// The lowercase name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Speaker::Patient => "patient",
            Speaker::Therapist => "therapist",
        }
    }
}

impl fmt::Display for Speaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
