//! `bench safety`: how long the crisis detector's offline layers take per
//! utterance, each alone and together, and how long the learned layer
//! takes to train — the detector runs on every patient turn.

use crate::safety::eval::Labelled;
use crate::safety::learned::{BUILT_IN, Learned, TUNING_SPLIT};
use crate::safety::{Layer, eval, judge};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct SafetyBench {
    pub utterances: usize,
    pub passes: usize,
    /// Mean microseconds per utterance, per layer.
    pub rules_us: f64,
    pub learned_us: f64,
    pub offline_us: f64,
    /// Training the learned layer on the tuning split, once.
    pub training_ms: f64,
}

/// Judges every utterance `passes` times with each layer (after one pass
/// to compile and train), and trains the learned layer once more, timed.
pub fn bench_safety(set: &[Labelled], passes: usize) -> SafetyBench {
    let passes = passes.max(1);
    crate::safety::warm_up();
    let time = |layer: Layer| {
        let started = Instant::now();
        for _ in 0..passes {
            for l in set {
                std::hint::black_box(judge(&l.text, layer, &BUILT_IN));
            }
        }
        started.elapsed().as_secs_f64() * 1e6 / (passes * set.len().max(1)) as f64
    };
    let (rules_us, learned_us, offline_us) = (
        time(Layer::Rules),
        time(Layer::Learned),
        time(Layer::Offline),
    );
    let tuning = eval::parse_labelled(TUNING_SPLIT).expect("the tuning split is valid");
    let started = Instant::now();
    std::hint::black_box(Learned::train(&tuning));
    SafetyBench {
        utterances: set.len(),
        passes,
        rules_us,
        learned_us,
        offline_us,
        training_ms: started.elapsed().as_secs_f64() * 1e3,
    }
}
