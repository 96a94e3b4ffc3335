//! The crisis detector: its layers (rules, learned, semantic) combined
//! into one verdict per patient utterance, in the context of the
//! therapist's question before it.

use super::learned::{Learned, TUNING_SPLIT};
use super::normalize::normalize;
use super::semantic;
use super::svm::Svm;
use super::{Category, rules};
use crate::choice::choice_enum;
use crate::model::encoder::Encoder;
use crate::risk::RiskLevel;
use regex::Regex;
use serde::Serialize;
use std::sync::{Arc, LazyLock, OnceLock};

/// The detector's verdict on one utterance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    pub flagged: bool,
    /// The category of the most serious finding.
    pub category: Category,
    pub level: RiskLevel,
    /// Every finding: its category and the words (or layer) behind it.
    pub matches: Vec<(Category, String)>,
}

impl Detection {
    pub fn none() -> Detection {
        Detection {
            flagged: false,
            category: Category::None,
            level: RiskLevel::None,
            matches: Vec::new(),
        }
    }

    /// A finding of one category (from the model layer, say), with the
    /// same rule for a time soon as every other.
    pub fn found(category: Category, words: &str, text: &str) -> Detection {
        Detection::from_matches(vec![(category, words.to_string())], &normalize(text))
    }

    /// The verdict of a set of findings: the most serious category, raised
    /// to imminent when a concrete one comes with a time soon.
    fn from_matches(matches: Vec<(Category, String)>, normalized: &str) -> Detection {
        let Some(&(category, _)) = matches
            .iter()
            .max_by_key(|(c, _)| (c.level(), std::cmp::Reverse(*c)))
        else {
            return Detection::none();
        };
        let mut level = category.level();
        let concrete = matches.iter().any(|(c, _)| c.rises_with_time());
        if concrete && level < RiskLevel::Imminent && SOON.is_match(normalized) {
            level = RiskLevel::Imminent;
        }
        Detection {
            flagged: true,
            category,
            level,
            matches,
        }
    }
}

/// A time soon, which makes a plan, preparation or threat imminent.
static SOON: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:tonight|today|tomorrow|this (?:weekend|evening|afternoon)|right now|after (?:this|the|our) session|when i get home|in a few hours|an hour ago|just (?:took|taken|swallowed|drunk|drank))\b")
        .expect("time pattern is valid")
});

choice_enum! {
    /// Which of the offline layers judge (docs/safety.md measures each).
    pub enum Layer {
        Rules => "rules",
        Learned => "learned",
        Semantic => "semantic",
        /// Rules, the learned layer and (when its encoder is fetched) the
        /// semantic layer together: what sessions use.
        Offline => "offline",
    }
}

/// A rule's match stands unless the learned layer is this sure it is
/// safe (hyperbole and mundane objects the rules cannot tell apart).
pub const RULE_VETO_BELOW: f32 = 0.3;
/// ...or the learned and semantic layers' mean this sure: chosen on the
/// tuning split's folds once the semantic layer was a support vector
/// machine (0.3 gave 0.836 / 0.065, 0.4 gave 0.832 / 0.057).
pub const BOTH_VETO_BELOW: f32 = 0.4;
/// The learned layers flag on their own from this probability.
pub const LEARNED_ALONE_FROM: f32 = 0.7;
/// The learned and semantic layers' mean flags on its own from this one:
/// 0.65 until the second muddled-patients writer's lines taught both layers
/// that rambling is safe; 0.6 then found more risk on the tuning folds than
/// before those lines, for about as many false alarms (docs/safety.md).
pub const BOTH_ALONE_FROM: f32 = 0.6;
/// ...and, when the speaker denied what a rule names ("I don't want to
/// die"), from this one.
pub const LEARNED_OVER_DENIAL_FROM: f32 = 0.9;

/// Saying it outright.
static EXPLICIT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:kill(?:ing)? myself|suicid\w*|want(?:s|ed|ing)? to (?:die|be dead)|end(?:ing)? my (?:own )?life|tak(?:e|ing) my (?:own )?life|self-harm\w*|overdos\w*|raped|sexually assaulted|(?:hurt|hurting|cut|cutting|burn|burning|harm|harming) myself|hang(?:ing)? myself)\b")
        .expect("pattern is valid")
});

/// Marks of a joke or hyperbole.
static JOKING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b(?:lol|lmao|lmfao|haha\w*|rofl|jk|i'm joking|just kidding)\b|\u{1F602}|\u{1F923}",
    )
    .expect("pattern is valid")
});

/// The offline layers, trained: what `judge` combines.
pub struct Layers {
    pub learned: Learned,
    /// None when the sentence encoder is not fetched: the detector then
    /// reads with the rules and the learned layer only.
    pub semantic: Option<Semantic>,
}

/// The semantic layer: the encoder and the support vector machine over
/// its vectors.
pub struct Semantic {
    pub encoder: Arc<Encoder>,
    pub head: Svm,
}

impl Layers {
    /// The layers trained on the compiled-in tuning split, with the
    /// encoder at its default place when it is there. `progress` is told
    /// how many tuning lines are encoded when their vectors are not cached.
    pub fn built_in(progress: &mut dyn FnMut(usize, usize)) -> Layers {
        let set = super::eval::parse_labelled(TUNING_SPLIT)
            .expect("the compiled-in tuning split is valid");
        let learned = Learned::train(&set);
        let semantic = Encoder::load(&crate::model::encoder::default_dir())
            .ok()
            .and_then(|encoder| {
                let inputs = semantic::inputs(&set);
                let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let risk: Vec<bool> = set.iter().map(|l| l.risk).collect();
                let head = semantic::trained_cached(&encoder, &inputs, &risk, progress).ok()?;
                Some(Semantic {
                    encoder: Arc::new(encoder),
                    head,
                })
            });
        Layers { learned, semantic }
    }

    /// The semantic layer's probability for an utterance, from its vector
    /// when the caller has it (an evaluation encodes a whole set at once).
    fn semantic_probability(&self, text: &str, vector: Option<&[f32]>) -> Option<f32> {
        let semantic = self.semantic.as_ref()?;
        let p = match vector {
            // A cached vector with a NaN in it would not give a NaN: the
            // head's distances drop it and read the utterance as lying on
            // every support vector at once, a probability that means nothing.
            Some(vector) if vector.iter().any(|x| !x.is_finite()) => None,
            Some(vector) => Some(semantic.head.probability(vector)),
            // An encoder that fails on one utterance leaves it to the
            // other layers rather than stop the session.
            None => semantic
                .encoder
                .encode(&[&semantic::input(text)])
                .ok()
                .map(|v| semantic.head.probability(&v[0])),
        };
        // Skipping the encoder (`Reading::settled_without_semantic`) holds
        // only for a probability from 0 to 1.
        debug_assert!(p.is_none_or(|p| (0.0..=1.0).contains(&p)), "{p:?}");
        p
    }
}

static BUILT_IN: OnceLock<Layers> = OnceLock::new();

/// The built-in layers, trained the first time they are needed.
pub fn built_in() -> &'static Layers {
    prepare(&mut |_, _| {})
}

/// The built-in layers, trained now if they are not yet, telling
/// `progress` how the encoding of the tuning split goes (a minute and a half,
/// once per machine: the vectors are cached).
pub fn prepare(progress: &mut dyn FnMut(usize, usize)) -> &'static Layers {
    BUILT_IN.get_or_init(|| Layers::built_in(progress))
}

/// Judges one utterance on its own, with the offline layers.
pub fn detect(text: &str) -> Detection {
    judge(text, Layer::Offline, built_in())
}

/// Judges a patient's words in the context of the therapist's turn before
/// them (when there was one): a yes to a direct safety question is a
/// disclosure of what it asked about.
pub fn detect_reply(therapist_before: Option<&str>, text: &str) -> Detection {
    let detection = detect(text);
    match therapist_before.and_then(|q| super::context::answer_to_question(q, text)) {
        Some(category) => {
            let mut matches = detection.matches;
            matches.push((
                category,
                format!("answered a direct question: {}", text.trim()),
            ));
            Detection::from_matches(matches, &normalize(text))
        }
        None => detection,
    }
}

/// Judges one utterance with the given layers.
pub fn judge(text: &str, layer: Layer, layers: &Layers) -> Detection {
    judge_with_vector(text, layer, layers, None)
}

/// Judges one utterance with the given layers, given its sentence vector
/// when the caller already has it.
pub fn judge_with_vector(
    text: &str,
    layer: Layer,
    layers: &Layers,
    vector: Option<&[f32]>,
) -> Detection {
    let normalized = normalize(text);
    let reading = Reading::new(layer, &normalized, layers);
    match layer {
        Layer::Rules => Detection::from_matches(reading.matches, &normalized),
        Layer::Learned => reading.verdict(layers.learned.probability(&normalized), false),
        Layer::Semantic => match layers.semantic_probability(text, vector) {
            Some(p) => reading.verdict(p, true),
            None => Detection::none(),
        },
        // The two learned layers' mean: each errs where the other does
        // not (words without their sense, sense without the words).
        Layer::Offline => {
            let learned = layers.learned.probability(&normalized);
            if layers.semantic.is_none() {
                return reading.verdict(learned, false);
            }
            // Encoding the utterance is nearly all of the detector's time:
            // it is skipped when the semantic layer could not change the
            // verdict.
            if vector.is_none()
                && let Some(settled) = reading.settled_without_semantic(learned)
            {
                return settled;
            }
            match layers.semantic_probability(text, vector) {
                Some(semantic) => reading.verdict((learned + semantic) / 2.0, true),
                None => reading.verdict(learned, false),
            }
        }
    }
}

/// An utterance as the rules read it, waiting for the learned layers'
/// probability that it tells of a risk.
struct Reading<'a> {
    layer: Layer,
    normalized: &'a str,
    matches: Vec<(Category, String)>,
    /// The speaker denied what a rule names ("I don't want to die").
    denied: bool,
    layers: &'a Layers,
}

/// Whether the offline layers' verdict on an utterance waits on the
/// semantic layer (and so on encoding it): what `bench safety` counts.
pub fn semantic_decides(text: &str, layers: &Layers) -> bool {
    let normalized = normalize(text);
    let reading = Reading::new(Layer::Offline, &normalized, layers);
    layers.semantic.is_some()
        && reading
            .settled_without_semantic(layers.learned.probability(&normalized))
            .is_none()
}

impl<'a> Reading<'a> {
    fn new(layer: Layer, normalized: &'a str, layers: &'a Layers) -> Reading<'a> {
        let (found, denied) = match layer {
            Layer::Learned | Layer::Semantic => (Vec::new(), false),
            Layer::Rules | Layer::Offline => rules::read(normalized),
        };
        Reading {
            layer,
            normalized,
            matches: found.into_iter().map(|m| (m.category, m.words)).collect(),
            denied,
            layers,
        }
    }

    /// The verdict of the mean with the learned layer's `learned` when the
    /// semantic layer's probability, anywhere from 0 to 1, could not change
    /// it. The verdict rises with the mean (a flag from a threshold, a
    /// rule's match kept above a floor), so agreeing at both ends is
    /// agreeing everywhere between.
    fn settled_without_semantic(&self, learned: f32) -> Option<Detection> {
        let low = self.verdict(learned / 2.0, true);
        (low == self.verdict((learned + 1.0) / 2.0, true)).then_some(low)
    }

    /// The verdict given the learned layers' probability `p`, and whether
    /// the semantic layer had a say in it.
    fn verdict(&self, p: f32, semantic: bool) -> Detection {
        let layer = self.layer;
        let mut matches = self.matches.clone();
        // The two layers' mean is less often sure than either alone: it
        // flags from a lower probability (chosen on the tuning split's
        // folds so that recall rose and false positives did not).
        let (alone_from, veto_below) = match (layer, semantic) {
            (Layer::Offline, true) => (BOTH_ALONE_FROM, BOTH_VETO_BELOW),
            _ => (LEARNED_ALONE_FROM, RULE_VETO_BELOW),
        };
        if layer == Layer::Offline && !matches.is_empty() {
            // Words that say it outright ("I want to die") stand whatever
            // the learned layers think, even with a "lol": their training
            // lines mostly say it indirectly. Other words said as a joke
            // need the learned layers' agreement; otherwise only their
            // confident no takes them back.
            let explicit = matches.iter().any(|(_, words)| EXPLICIT.is_match(words));
            let floor = if explicit {
                0.0
            } else if JOKING.is_match(self.normalized) {
                alone_from
            } else {
                veto_below
            };
            if p < floor {
                matches.clear();
            }
        } else if p >= alone_from && (!self.denied || p >= LEARNED_OVER_DENIAL_FROM) {
            let by = match (layer, semantic) {
                (Layer::Semantic, _) => "semantic layer",
                (Layer::Offline, true) => "learned and semantic layers",
                _ => "learned layer",
            };
            matches.push((
                self.layers.learned.category(self.normalized),
                format!("{by} (p = {p:.2})"),
            ));
        }
        Detection::from_matches(matches, self.normalized)
    }
}

/// Compiles every pattern, trains the learned layer and loads the encoder
/// (which encodes a sentence as it loads, laying its 8-bit weights out for
/// the CPU) before the first turn needs them.
pub fn warm_up() {
    rules::warm_up();
    let _ = detect("warm up");
}
