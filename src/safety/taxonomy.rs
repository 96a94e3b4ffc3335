//! The risk taxonomy (docs/safety.md): what kinds of risk a patient's words
//! can show, how serious each is, and what the therapist's protocol does
//! about it. Aligned with the Columbia Suicide Severity Rating Scale (the
//! first seven), the published warning signs of suicide, non-suicidal
//! self-injury, harm to others, and abuse and safeguarding.

use crate::choice::choice_enum;
use crate::risk::RiskLevel;

choice_enum! {
    /// What kind of risk an utterance shows.
    pub enum Category {
        None => "none",
        // The C-SSRS ladder.
        WishToBeDead => "wish_to_be_dead",
        SuicidalThoughts => "suicidal_thoughts",
        IdeationWithMethod => "ideation_with_method",
        SuicidalIntent => "suicidal_intent",
        SuicidePlan => "suicide_plan",
        PreparatoryBehaviour => "preparatory_behaviour",
        SuicidalBehaviour => "suicidal_behaviour",
        // Warning signs.
        Hopelessness => "hopelessness",
        Burden => "burden",
        NoReasonToLive => "no_reason_to_live",
        SayingGoodbye => "saying_goodbye",
        GivingAwayBelongings => "giving_away_belongings",
        AcquiringMeans => "acquiring_means",
        ResearchingMethods => "researching_methods",
        RecklessBehaviour => "reckless_behaviour",
        // Other harm.
        SelfInjury => "self_injury",
        HarmToOthers => "harm_to_others",
        // Abuse and safeguarding.
        ChildAbuse => "child_abuse",
        IntimatePartnerViolence => "intimate_partner_violence",
        SexualViolence => "sexual_violence",
        DangerNow => "danger_now",
    }
}

/// Which part of the taxonomy a category is in: it decides what the
/// protocol asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Suicide,
    SelfInjury,
    HarmToOthers,
    Safeguarding,
}

impl Category {
    /// Every category that is a risk (all but `None`).
    pub fn risks() -> impl Iterator<Item = Category> {
        Self::ALL.iter().copied().filter(|c| *c != Category::None)
    }

    /// The risk a disclosure in this category shows on its own; a time
    /// ("tonight") raises a plan, intent, preparation or threat to imminent.
    pub fn level(self) -> RiskLevel {
        use Category::*;
        match self {
            None => RiskLevel::None,
            WishToBeDead | Hopelessness | Burden | NoReasonToLive => RiskLevel::Low,
            SuicidalIntent | DangerNow => RiskLevel::Imminent,
            _ => RiskLevel::High,
        }
    }

    pub fn family(self) -> Family {
        use Category::*;
        match self {
            SelfInjury => Family::SelfInjury,
            HarmToOthers => Family::HarmToOthers,
            ChildAbuse | IntimatePartnerViolence | SexualViolence | DangerNow => {
                Family::Safeguarding
            }
            _ => Family::Suicide,
        }
    }

    /// Whether a time soon ("tonight", "after this") makes it imminent.
    pub fn rises_with_time(self) -> bool {
        use Category::*;
        matches!(
            self,
            SuicidePlan
                | PreparatoryBehaviour
                | AcquiringMeans
                | SayingGoodbye
                | GivingAwayBelongings
                | SuicidalBehaviour
                | HarmToOthers
        )
    }

    /// What it is, in the words the protocol tells the therapist.
    pub fn description(self) -> &'static str {
        use Category::*;
        match self {
            None => "no risk",
            WishToBeDead => "a wish to be dead or not to wake up",
            SuicidalThoughts => "thoughts of ending their life",
            IdeationWithMethod => "thoughts of how they would end their life",
            SuicidalIntent => "an intention to end their life",
            SuicidePlan => "a plan to end their life",
            PreparatoryBehaviour => "preparations for ending their life",
            SuicidalBehaviour => "a suicide attempt",
            Hopelessness => "hopelessness about their future",
            Burden => "feeling a burden to others",
            NoReasonToLive => "feeling they have no reason to live",
            SayingGoodbye => "saying goodbye as if for the last time",
            GivingAwayBelongings => "giving their belongings away",
            AcquiringMeans => "getting or keeping the means to end their life",
            ResearchingMethods => "looking up ways to die",
            RecklessBehaviour => "putting their life at risk on purpose",
            SelfInjury => "hurting themselves",
            HarmToOthers => "thoughts or plans of harming someone else",
            ChildAbuse => "a child being harmed or neglected",
            IntimatePartnerViolence => "being hurt or controlled by a partner",
            SexualViolence => "sexual violence",
            DangerNow => "being in danger right now",
        }
    }

    /// A category stored by cbtsim before this taxonomy (schema 4 and
    /// earlier wrote these names); new names read as themselves.
    pub fn from_stored(name: &str) -> Option<Category> {
        use Category::*;
        Self::from_name(name).or(match name {
            "passive_ideation" => Some(WishToBeDead),
            "active_ideation" => Some(SuicidalThoughts),
            "plan" => Some(SuicidePlan),
            "intent" => Some(SuicidalIntent),
            "means" => Some(AcquiringMeans),
            "self_harm" => Some(SelfInjury),
            "abuse" => Some(IntimatePartnerViolence),
            _ => Option::None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_risk_has_a_level_and_old_names_still_read() {
        for c in Category::risks() {
            assert!(c.level() > RiskLevel::None, "{c}");
            assert_eq!(Category::from_stored(c.as_str()), Some(c));
        }
        assert_eq!(
            Category::from_stored("passive_ideation"),
            Some(Category::WishToBeDead)
        );
        assert_eq!(Category::from_stored("nonsense"), None);
    }
}
