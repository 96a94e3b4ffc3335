//! Crisis safety: a detector that runs on every patient turn, the taxonomy
//! of risks it names (docs/safety.md), how it is measured on labelled
//! utterances, and the protocol the therapist follows when it fires.
//!
//! It is a simulator's safeguard, not a clinical instrument.

mod detector;
pub mod eval;
mod protocol;
mod taxonomy;

pub use detector::{Detection, detect};
pub use protocol::{
    CrisisResources, DEFAULT_LOCALE, Locale, protocol_instruction, resources_for, resources_text,
};
pub use taxonomy::{Category, Family};
