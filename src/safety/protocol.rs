//! The therapist's safety protocol: what it must do after a crisis
//! detection, by the category of the risk (docs/safety.md), and the crisis
//! resources it gives, per locale.

use super::{Category, Detection, Family};
use serde::{Deserialize, Serialize};

/// Where the simulated patient is, for crisis resources: an ISO country code.
pub type Locale = str;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrisisResources {
    pub locale: String,
    /// The crisis line, as it should be said.
    pub crisis_line: String,
    pub emergency: String,
    /// A domestic abuse line, given after a disclosure of abuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abuse_line: Option<String>,
    /// A line for children and for worries about a child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_line: Option<String>,
}

/// Built-in resources: (locale, crisis line, emergency, abuse line, child line).
const TABLE: &[(&str, &str, &str, &str, &str)] = &[
    (
        "US",
        "the 988 Suicide & Crisis Lifeline (call or text 988)",
        "911",
        "the National Domestic Violence Hotline (1-800-799-7233)",
        "the Childhelp National Child Abuse Hotline (1-800-422-4453)",
    ),
    (
        "CA",
        "the 9-8-8 Suicide Crisis Helpline (call or text 988)",
        "911",
        "a local shelter or victim services line (or 988)",
        "Kids Help Phone (1-800-668-6868)",
    ),
    (
        "GB",
        "Samaritans (call 116 123)",
        "999",
        "the National Domestic Abuse Helpline (0808 2000 247)",
        "the NSPCC helpline (0808 800 5000) or Childline (0800 1111)",
    ),
    (
        "IE",
        "Samaritans (call 116 123)",
        "112 or 999",
        "the Women's Aid helpline (1800 341 900)",
        "Childline (1800 66 66 66)",
    ),
    (
        "AU",
        "Lifeline (call 13 11 14)",
        "000",
        "1800RESPECT (1800 737 732)",
        "Kids Helpline (1800 55 1800)",
    ),
    (
        "NZ",
        "Need to Talk? (call or text 1737)",
        "111",
        "Women's Refuge (0800 733 843)",
        "Youthline (0800 376 633)",
    ),
];

pub const DEFAULT_LOCALE: &str = "US";

/// The resources for a locale code (case-insensitive), if cbtsim knows it.
pub fn resources_for(locale: &Locale) -> Option<CrisisResources> {
    TABLE
        .iter()
        .find(|(code, ..)| code.eq_ignore_ascii_case(locale))
        .map(|(code, line, emergency, abuse, child)| CrisisResources {
            locale: code.to_string(),
            crisis_line: line.to_string(),
            emergency: emergency.to_string(),
            abuse_line: Some(abuse.to_string()),
            child_line: Some(child.to_string()),
        })
}

/// The resources as the therapist says them, whatever the risk: the crisis
/// line and the emergency number. Every protocol turn carries these words.
pub fn resources_text(resources: &CrisisResources) -> String {
    format!(
        "If you are thinking about ending your life or are in danger, please contact {} now, \
         or call {} if you are in immediate danger. Please also reach out to a doctor, a mental \
         health professional or someone you trust today; you do not have to carry this alone.",
        resources.crisis_line, resources.emergency
    )
}

/// The resources for a category: the crisis line and emergency number,
/// and for abuse the locale's abuse or child line too.
pub fn resources_for_category(category: Category, resources: &CrisisResources) -> String {
    // Resources stored before these lines existed, or a config's own for a
    // built-in locale, fall back to cbtsim's lines for the locale.
    let built_in = resources_for(&resources.locale);
    let pick = |own: &Option<String>, theirs: Option<String>| own.clone().or(theirs);
    let extra = match category {
        Category::ChildAbuse => pick(&resources.child_line, built_in.and_then(|b| b.child_line)),
        Category::IntimatePartnerViolence | Category::SexualViolence | Category::DangerNow => {
            pick(&resources.abuse_line, built_in.and_then(|b| b.abuse_line))
        }
        _ => None,
    };
    match extra {
        Some(line) => format!("{} You can also contact {line}.", resources_text(resources)),
        None => resources_text(resources),
    }
}

/// The direct questions to ask, in the spirit of the Columbia screener:
/// the next rungs up from what was disclosed, one at a time.
fn questions(category: Category) -> &'static str {
    use Category::*;
    match category {
        WishToBeDead | Hopelessness | Burden | NoReasonToLive => {
            "ask whether they have had thoughts of killing themselves, and if so whether they \
             have thought about how they would do it"
        }
        SuicidalThoughts => {
            "ask whether they have thought about how they would do it, and whether they have \
             any intention of acting on these thoughts"
        }
        IdeationWithMethod | ResearchingMethods => {
            "ask whether they intend to act on these thoughts, whether they have worked out \
             the details, and whether the means are within reach"
        }
        SuicidalIntent | SuicidePlan | PreparatoryBehaviour | AcquiringMeans
        | GivingAwayBelongings | SayingGoodbye => {
            "ask whether they are safe right now, whether they intend to act soon, and whether \
             they would put the means out of reach or let someone stay with them"
        }
        SuicidalBehaviour | RecklessBehaviour => {
            "ask whether they have hurt themselves or taken anything now and need medical help, \
             and whether they are safe right now"
        }
        SelfInjury => {
            "ask how they have hurt themselves, whether any wound needs medical care, and \
             whether they have had thoughts of ending their life"
        }
        HarmToOthers => {
            "ask whether they intend to act, whether they have the means, and whether anyone \
             is in danger right now; say that if someone is in immediate danger the emergency \
             number must be called"
        }
        ChildAbuse => {
            "ask whether the child is safe right now and whether there is a trusted adult who \
             can help; say that a child protection line can help and that the emergency \
             number is for immediate danger"
        }
        IntimatePartnerViolence | SexualViolence | DangerNow => {
            "ask whether they are safe right now, whether the person who hurt them is nearby, \
             and whether there is somewhere safe they can go"
        }
        None => "ask whether they are safe right now",
    }
}

/// How the protocol names each family of risk to the therapist, in
/// brackets after the category: words for the therapist, which a reply
/// must not say back (`session::guard` removes them).
pub fn family_labels() -> [&'static str; 4] {
    [
        Family::Suicide,
        Family::SelfInjury,
        Family::HarmToOthers,
        Family::Safeguarding,
    ]
    .map(family_words)
}

fn family_words(family: Family) -> &'static str {
    match family {
        Family::Suicide => "suicide risk",
        Family::SelfInjury => "self-injury",
        Family::HarmToOthers => "a risk of harm to others",
        Family::Safeguarding => "a safeguarding concern",
    }
}

/// The instruction the therapist agent gets for its next turn.
pub fn protocol_instruction(detection: &Detection, resources: &CrisisResources) -> String {
    let category = detection.category;
    let family = family_words(category.family());
    format!(
        "SAFETY PROTOCOL: the patient's last words suggest {} ({family}; risk level: {}). In \
         this reply, set the agenda aside: acknowledge what they said with warmth and without \
         judgement; {}; give these resources word for word: \"{}\"; and encourage them to \
         contact a human professional or someone they trust. Do not promise secrecy and do not \
         claim to be a clinician.",
        category.description(),
        detection.level,
        questions(category),
        resources_for_category(category, resources)
    )
}

/// The instruction for a therapist turn that answers a disclosure the
/// protocol already covered this session (the same category, or a lower
/// level of the same family; never imminent): the questions were asked and
/// the resources given,
/// so the turn checks safety now, keeps the resources in view and goes on
/// with the session, rather than setting it aside again and again.
pub fn follow_up_instruction(detection: &Detection, resources: &CrisisResources) -> String {
    let category = detection.category;
    format!(
        "SAFETY FOLLOW-UP: the patient has spoken of {} ({}), which the safety questions \
         earlier this session covered. In this reply, acknowledge what they said with warmth, \
         check briefly that they are safe right now, remind them of these resources: \"{}\", \
         and then go on with the session.",
        category.description(),
        family_words(category.family()),
        resources_for_category(category, resources)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_stored_without_the_abuse_lines_fall_back_to_the_locales() {
        let stored: CrisisResources = serde_json::from_str(
            r#"{"locale": "GB", "crisis_line": "Samaritans (call 116 123)", "emergency": "999"}"#,
        )
        .unwrap();
        let text = resources_for_category(Category::ChildAbuse, &stored);
        assert!(
            text.contains("Childline (0800 1111)") && text.contains("116 123"),
            "{text}"
        );
        let unknown = CrisisResources {
            locale: "FR".into(),
            crisis_line: "le 3114".into(),
            emergency: "112".into(),
            abuse_line: None,
            child_line: None,
        };
        assert_eq!(
            resources_for_category(Category::SexualViolence, &unknown),
            resources_text(&unknown)
        );
    }
}
