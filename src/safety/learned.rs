//! The learned layer: a logistic regression over hashed word and
//! character n-grams, trained on the tuning split
//! (tests/data/crisis/tune.tsv, compiled in) the first time it is needed,
//! in under a second (release build) and deterministically. It generalises past the
//! rules' phrasings to the words around them (a misspelling shares most of
//! its character n-grams with the word); its category is the nearest risk
//! category by the same features.

use super::Category;
use super::eval::Labelled;
use std::collections::{BTreeMap, HashMap};

/// The tuning split the compiled-in classifier learns from.
pub const TUNING_SPLIT: &str = include_str!("../../tests/data/crisis/tune.tsv");

const DIMENSIONS: usize = 1 << 18;
const EPOCHS: usize = 40;
const LEARNING_RATE: f32 = 0.5;
const L2: f32 = 1e-4;

/// A sparse, length-normalised feature vector.
type Features = Vec<(u32, f32)>;

fn hash(text: &str, salt: u32) -> u32 {
    // FNV-1a: stable across platforms and releases, unlike std's hasher.
    let mut h: u32 = 0x811c_9dc5 ^ salt;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % DIMENSIONS as u32
}

/// Words that deny what follows them in their clause.
const NEGATORS: &[&str] = &[
    "not", "no", "never", "don't", "didn't", "won't", "wouldn't", "haven't", "isn't", "aren't",
    "nothing", "nobody", "without",
];

/// Words, word pairs, character 3- to 5-grams of each word, and each word
/// after a negator in its clause marked as denied ("never … hurt").
pub fn features(normalized: &str) -> Features {
    let normalized = &*super::rules::without_idioms(normalized);
    let mut counts: HashMap<u32, f32> = HashMap::new();
    let mut add = |key: u32, weight: f32| *counts.entry(key).or_default() += weight;
    for clause in normalized.split(['.', ',', ';', '!', '?', ':']) {
        let words: Vec<&str> = clause
            .split(|c: char| !(c.is_alphanumeric() || c == '\''))
            .filter(|w| !w.is_empty())
            .collect();
        let mut denied = false;
        for (i, word) in words.iter().enumerate() {
            add(hash(word, 1), 1.0);
            if denied {
                add(hash(word, 4), 0.5);
            }
            denied |= NEGATORS.contains(word);
            if let Some(next) = words.get(i + 1) {
                add(hash(&format!("{word} {next}"), 2), 1.0);
            }
            let padded: Vec<char> = format!("<{word}>").chars().collect();
            for n in 3..=5 {
                for gram in padded.windows(n) {
                    add(hash(&gram.iter().collect::<String>(), 3), 0.3);
                }
            }
        }
    }
    // How long it is: most short replies ("Sort of.") are ordinary talk.
    let length = normalized.split_whitespace().count();
    let bucket = match length {
        0..=3 => "length: 1-3",
        4..=8 => "length: 4-8",
        9..=20 => "length: 9-20",
        _ => "length: 21+",
    };
    add(hash(bucket, 6), 1.0);
    // Sorted before summing: a hash map's order changes from run to run,
    // and so would the rounding of the norm, and so the trained weights.
    let mut features: Features = counts.into_iter().collect();
    features.sort_unstable_by_key(|(k, _)| *k);
    let norm = features
        .iter()
        .map(|(_, v)| v * v)
        .sum::<f32>()
        .sqrt()
        .max(1e-6);
    for (_, v) in &mut features {
        *v /= norm;
    }
    features
}

/// The trained classifier.
pub struct Learned {
    weights: Vec<f32>,
    bias: f32,
    /// Each risk category's examples summed and length-normalised.
    centroids: Vec<(Category, HashMap<u32, f32>)>,
}

impl Learned {
    /// Trains on labelled utterances (deterministic: a fixed order).
    pub fn train(set: &[Labelled]) -> Learned {
        let examples: Vec<(Features, f32)> = set
            .iter()
            .map(|l| {
                (
                    features(&super::normalize(&l.text)),
                    if l.risk { 1.0 } else { 0.0 },
                )
            })
            .collect();
        let mut weights = vec![0.0f32; DIMENSIONS];
        let mut bias = 0.0f32;
        // A fixed shuffle (a linear congruential sequence) so every epoch
        // sees the examples in a different but reproducible order.
        let mut order: Vec<usize> = (0..examples.len()).collect();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for epoch in 0..EPOCHS {
            for i in (1..order.len()).rev() {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                order.swap(i, (state >> 33) as usize % (i + 1));
            }
            let rate = LEARNING_RATE / (1.0 + epoch as f32 * 0.1);
            for &i in &order {
                let (x, y) = &examples[i];
                let p =
                    sigmoid(bias + x.iter().map(|(k, v)| weights[*k as usize] * v).sum::<f32>());
                let g = p - y;
                for (k, v) in x {
                    let w = &mut weights[*k as usize];
                    *w -= rate * (g * v + L2 * *w);
                }
                bias -= rate * g;
            }
        }
        // Summed in a B-tree: its order, and so the rounding, is the same
        // every run.
        let mut centroids: Vec<(Category, BTreeMap<u32, f32>)> = Vec::new();
        for (l, (x, _)) in set.iter().zip(&examples) {
            if !l.risk {
                continue;
            }
            let at = match centroids.iter().position(|(c, _)| *c == l.category) {
                Some(at) => at,
                None => {
                    centroids.push((l.category, BTreeMap::new()));
                    centroids.len() - 1
                }
            };
            for (k, v) in x {
                *centroids[at].1.entry(*k).or_default() += v;
            }
        }
        // Each centroid as a length-normalised lookup table, so judging an
        // utterance is one pass over its own features per category.
        let centroids = centroids
            .into_iter()
            .map(|(category, sums)| {
                let norm = sums.values().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
                let unit: HashMap<u32, f32> =
                    sums.into_iter().map(|(k, v)| (k, v / norm)).collect();
                (category, unit)
            })
            .collect();
        Learned {
            weights,
            bias,
            centroids,
        }
    }

    /// The probability that a normalised utterance is a risk.
    pub fn probability(&self, normalized: &str) -> f32 {
        let x = features(normalized);
        sigmoid(
            self.bias
                + x.iter()
                    .map(|(k, v)| self.weights[*k as usize] * v)
                    .sum::<f32>(),
        )
    }

    /// The risk category nearest to a normalised utterance.
    pub fn category(&self, normalized: &str) -> Category {
        let x = features(normalized);
        let cosine = |centroid: &HashMap<u32, f32>| -> f32 {
            x.iter()
                .map(|(k, v)| centroid.get(k).unwrap_or(&0.0) * v)
                .sum()
        };
        self.centroids
            .iter()
            .map(|(c, centroid)| (*c, cosine(centroid)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(Category::WishToBeDead, |(c, _)| c)
    }
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safety::eval::parse_labelled;

    #[test]
    fn features_are_normalised_and_share_ngrams_across_misspellings() {
        let a = features("i want to disappear");
        let b = features("i want to disapear");
        let dot: f32 = a
            .iter()
            .map(|(k, v)| b.iter().find(|(k2, _)| k2 == k).map_or(0.0, |(_, w)| v * w))
            .sum();
        assert!(dot > 0.6, "{dot}");
        let norm: f32 = a.iter().map(|(_, v)| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[test]
    fn training_is_deterministic_and_learns_its_data() {
        let set = parse_labelled(TUNING_SPLIT).unwrap();
        let (a, b) = (Learned::train(&set), Learned::train(&set));
        let text = "nobody would even notice if i was gone";
        assert_eq!(a.probability(text), b.probability(text));
        let fitted = set
            .iter()
            .filter(|l| (a.probability(&crate::safety::normalize(&l.text)) > 0.5) == l.risk)
            .count();
        assert!(
            fitted as f64 / set.len() as f64 > 0.9,
            "{fitted} of {}",
            set.len()
        );
    }
}
