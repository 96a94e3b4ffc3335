//! The crisis detector: its layers (rules, learned) combined into one
//! verdict per patient utterance, in the context of the therapist's
//! question before it.

use super::learned::{BUILT_IN, Learned};
use super::normalize::normalize;
use super::{Category, rules};
use crate::choice::choice_enum;
use crate::risk::RiskLevel;
use regex::Regex;
use serde::Serialize;
use std::sync::LazyLock;

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
        /// Rules and the learned layer together: what sessions use.
        Offline => "offline",
    }
}

/// A rule's match stands unless the learned layer is this sure it is safe
/// (hyperbole and mundane objects the rules cannot tell apart).
pub const RULE_VETO_BELOW: f32 = 0.3;
/// The learned layer flags on its own from this probability.
pub const LEARNED_ALONE_FROM: f32 = 0.7;
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

/// Judges one utterance on its own, with both offline layers.
pub fn detect(text: &str) -> Detection {
    judge(text, Layer::Offline, &BUILT_IN)
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

/// Judges one utterance with the given layers and learned classifier.
pub fn judge(text: &str, layer: Layer, learned: &Learned) -> Detection {
    let normalized = normalize(text);
    let (found, denied) = match layer {
        Layer::Learned => (Vec::new(), false),
        Layer::Rules | Layer::Offline => rules::read(&normalized),
    };
    let mut matches: Vec<(Category, String)> =
        found.into_iter().map(|m| (m.category, m.words)).collect();
    if layer == Layer::Rules {
        return Detection::from_matches(matches, &normalized);
    }
    let p = learned.probability(&normalized);
    if layer == Layer::Offline && !matches.is_empty() {
        // Words that say it outright ("I want to die") stand whatever the
        // learned layer thinks, even with a "lol": its training lines mostly
        // say it indirectly. Other words said as a joke need the learned
        // layer's agreement; otherwise only its confident no takes them back.
        let explicit = matches.iter().any(|(_, words)| EXPLICIT.is_match(words));
        let floor = if explicit {
            0.0
        } else if JOKING.is_match(&normalized) {
            LEARNED_ALONE_FROM
        } else {
            RULE_VETO_BELOW
        };
        if p < floor {
            matches.clear();
        }
    } else if p >= LEARNED_ALONE_FROM && (!denied || p >= LEARNED_OVER_DENIAL_FROM) {
        matches.push((
            learned.category(&normalized),
            format!("learned layer (p = {p:.2})"),
        ));
    }
    Detection::from_matches(matches, &normalized)
}

/// Compiles every pattern and trains the learned layer before the first
/// turn needs them.
pub fn warm_up() {
    rules::warm_up();
    let _ = detect("warm up");
}
