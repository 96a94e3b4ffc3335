//! `bench safety`: how long the crisis detector's offline layers take per
//! utterance, each alone and together, and how long the learned layers
//! take to train — the detector runs on every patient turn.

use crate::safety::eval::Labelled;
use crate::safety::learned::{Learned, TUNING_SPLIT};
use crate::safety::semantic;
use crate::safety::svm::Svm;
use crate::safety::{Layer, built_in, eval, judge, semantic_decides};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct SafetyBench {
    pub utterances: usize,
    pub passes: usize,
    /// Mean microseconds per utterance, per layer.
    pub rules_us: f64,
    pub learned_us: f64,
    /// The semantic layer alone (encoding the utterance included), when
    /// its encoder is fetched; `offline_us` then includes it too.
    pub semantic_us: Option<f64>,
    /// Of that, the support vector machine over the utterance's vector
    /// (the rest is the encoder).
    pub semantic_head_us: Option<f64>,
    pub offline_us: f64,
    /// The share of utterances whose offline verdict waited on the
    /// semantic layer (the others are judged without encoding them).
    pub offline_encoded: Option<f64>,
    /// Training the learned layer on the tuning split, once.
    pub training_ms: f64,
    /// Training the semantic layer's support vector machine on the tuning
    /// split's (cached) vectors, once.
    pub semantic_training_ms: Option<f64>,
}

/// Judges every utterance `passes` times with each layer (after one pass
/// to compile and train; the layers that encode the utterance, a
/// thousand times slower, once), and trains the learned layers once
/// more, timed.
pub fn bench_safety(set: &[Labelled], passes: usize) -> SafetyBench {
    let passes = passes.max(1);
    crate::safety::warm_up();
    let layers = built_in();
    let time = |layer: Layer, passes: usize| {
        let started = Instant::now();
        for _ in 0..passes {
            for l in set {
                std::hint::black_box(judge(&l.text, layer, layers));
            }
        }
        started.elapsed().as_secs_f64() * 1e6 / (passes * set.len().max(1)) as f64
    };
    let encodes = layers.semantic.is_some();
    let (rules_us, learned_us) = (time(Layer::Rules, passes), time(Layer::Learned, passes));
    let semantic_us = encodes.then(|| time(Layer::Semantic, 1));
    let offline_us = time(Layer::Offline, if encodes { 1 } else { passes });
    let offline_encoded = encodes.then(|| {
        let encoded = set
            .iter()
            .filter(|l| semantic_decides(&l.text, layers))
            .count();
        encoded as f64 / set.len().max(1) as f64
    });
    let semantic_head_us = layers.semantic.as_ref().and_then(|s| {
        // Encoded here, not through the cache: a benched file is no reason
        // to leave its vectors in the user's model folder.
        let inputs = semantic::inputs(set);
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let vectors = semantic::vectors(&s.encoder, &inputs, &mut |_, _| {}).ok()?;
        let started = Instant::now();
        for _ in 0..passes {
            for v in &vectors {
                std::hint::black_box(s.head.probability(v));
            }
        }
        Some(started.elapsed().as_secs_f64() * 1e6 / (passes * vectors.len().max(1)) as f64)
    });
    let tuning = eval::parse_labelled(TUNING_SPLIT).expect("the tuning split is valid");
    let started = Instant::now();
    std::hint::black_box(Learned::train(&tuning));
    let training_ms = started.elapsed().as_secs_f64() * 1e3;
    let semantic_training_ms = layers.semantic.as_ref().and_then(|s| {
        let inputs = semantic::inputs(&tuning);
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let vectors = semantic::vectors_cached(&s.encoder, &inputs, &mut |_, _| {}).ok()?;
        let risk: Vec<bool> = tuning.iter().map(|l| l.risk).collect();
        let started = Instant::now();
        std::hint::black_box(Svm::train(&vectors, &risk));
        Some(started.elapsed().as_secs_f64() * 1e3)
    });
    SafetyBench {
        utterances: set.len(),
        passes,
        rules_us,
        learned_us,
        semantic_us,
        semantic_head_us,
        offline_us,
        offline_encoded,
        training_ms,
        semantic_training_ms,
    }
}
