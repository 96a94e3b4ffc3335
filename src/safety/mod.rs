//! Crisis safety: a detector that runs on every patient turn, the taxonomy
//! of risks it names (docs/safety.md), how it is measured on labelled
//! utterances, and the protocol the therapist follows when it fires.
//!
//! It is a simulator's safeguard, not a clinical instrument.

mod context;
mod detector;
pub mod eval;
pub mod learned;
pub mod model;
mod normalize;
mod protocol;
mod rules;
pub mod semantic;
pub mod svm;
mod taxonomy;

pub use context::answer_to_question;
pub use detector::{
    Detection, Layer, Layers, Semantic, built_in, detect, detect_reply, judge, judge_with_vector,
    prepare, semantic_decides, warm_up,
};
pub use normalize::normalize;
pub use protocol::{
    CrisisResources, DEFAULT_LOCALE, Locale, family_labels, follow_up_instruction,
    protocol_instruction, resources_for, resources_for_category, resources_text,
};
pub use taxonomy::{Category, Family};
