//! Crisis safety: a detector that runs on every patient turn, and the
//! protocol the therapist follows when it fires.
//!
//! The detector is patterns and a lexicon, with negation, idiom and
//! third-person handling. It is measured on a labelled set
//! (tests/data/crisis/labelled.tsv) for recall and false positives. It is a
//! simulator's safeguard, not a clinical instrument.

mod detector;
mod protocol;

pub use detector::{Category, Detection, detect};
pub use protocol::{
    CrisisResources, DEFAULT_LOCALE, Locale, protocol_instruction, resources_for, resources_text,
};
