//! The therapist's safety protocol: what it must do after a crisis
//! detection, and the crisis resources it gives, per locale.

use super::{Category, Detection};
use serde::{Deserialize, Serialize};

/// Where the simulated patient is, for crisis resources: an ISO country code.
pub type Locale = str;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrisisResources {
    pub locale: String,
    /// The crisis line, as it should be said.
    pub crisis_line: String,
    pub emergency: String,
}

/// Built-in resources; the default locale is US.
const TABLE: &[(&str, &str, &str)] = &[
    (
        "US",
        "the 988 Suicide & Crisis Lifeline (call or text 988)",
        "911",
    ),
    (
        "CA",
        "the 9-8-8 Suicide Crisis Helpline (call or text 988)",
        "911",
    ),
    ("GB", "Samaritans (call 116 123)", "999"),
    ("IE", "Samaritans (call 116 123)", "112 or 999"),
    ("AU", "Lifeline (call 13 11 14)", "000"),
    ("NZ", "Need to Talk? (call or text 1737)", "111"),
];

pub const DEFAULT_LOCALE: &str = "US";

/// The resources for a locale code (case-insensitive), if cbtsim knows it.
pub fn resources_for(locale: &Locale) -> Option<CrisisResources> {
    TABLE
        .iter()
        .find(|(code, _, _)| code.eq_ignore_ascii_case(locale))
        .map(|(code, line, emergency)| CrisisResources {
            locale: code.to_string(),
            crisis_line: line.to_string(),
            emergency: emergency.to_string(),
        })
}

/// The resources as the therapist says them.
pub fn resources_text(resources: &CrisisResources) -> String {
    format!(
        "If you are thinking about ending your life or are in danger, please contact {} now, \
         or call {} if you are in immediate danger. Please also reach out to a doctor, a mental \
         health professional or someone you trust today; you do not have to carry this alone.",
        resources.crisis_line, resources.emergency
    )
}

/// The instruction the therapist agent gets for its next turn.
pub fn protocol_instruction(detection: &Detection, resources: &CrisisResources) -> String {
    let what = match detection.category {
        Category::IntimatePartnerViolence => "may be being harmed by someone",
        Category::HarmToOthers => "may be thinking of harming someone else",
        Category::SelfInjury => "may be harming themselves",
        _ => "may be thinking about suicide",
    };
    format!(
        "SAFETY PROTOCOL: the patient's last words suggest they {what} (risk level: {}). In this \
         reply, set the agenda aside: acknowledge what they said with warmth and without \
         judgement; ask them directly whether they are safe right now and whether they are \
         thinking of ending their life; give these resources word for word: \"{}\"; and encourage \
         them to contact a human professional or someone they trust.",
        detection.level,
        resources_text(resources)
    )
}
