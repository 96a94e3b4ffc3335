//! cbtsim: simulated cognitive behavioural therapy sessions between an AI
//! therapist and an AI-simulated patient, written down as transcripts.
//!
//! The library does the work; the `cbtsim` binary is argument parsing and
//! output over it. See ARCHITECTURE.md for the map.

mod choice;

pub mod bench;
pub mod course;
pub mod estimate;
pub mod eval;
pub mod export;
pub mod lint;
pub mod markdown;
pub mod model;
pub mod persona;
pub mod plan;
pub mod play;
pub mod risk;
pub mod runner;
pub mod safety;
pub mod session;
pub mod speaker;
pub mod store;
pub mod summarize;
pub mod summary;
pub mod termination;
pub mod text_format;
pub mod transcript;
pub mod turn;
pub mod web;
pub mod worker;

pub use persona::Persona;
pub use risk::RiskLevel;
pub use speaker::Speaker;
pub use summary::SessionSummary;
pub use termination::TerminationReason;
pub use transcript::Transcript;
pub use turn::Turn;
