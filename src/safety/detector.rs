//! The rule-based crisis detector.

use super::Category;
use crate::risk::RiskLevel;
use regex::Regex;
use serde::Serialize;
use std::sync::LazyLock;

/// The detector's verdict on one utterance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    pub flagged: bool,
    /// The category of the most serious match.
    pub category: Category,
    pub level: RiskLevel,
    /// Every match: its category and the words that matched.
    pub matches: Vec<(Category, String)>,
}

struct Rule {
    category: Category,
    level: RiskLevel,
    pattern: Regex,
}

fn rule(category: Category, level: RiskLevel, pattern: &str) -> Rule {
    Rule {
        category,
        level,
        pattern: Regex::new(&format!("(?i){pattern}")).expect("crisis patterns are valid"),
    }
}

/// Self-directed harm words, first person.
const END_MY_LIFE: &str = r"(?:kill(?:ing)? myself|end(?:ing)? (?:my (?:own )?life|it all|things|everything)|tak(?:e|ing) my (?:own )?life|commit(?:ting)? suicide|suicide|not (?:be )?(?:here|alive|around) anymore|die|hang(?:ing)? myself|overdos(?:e|ing))";

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    use Category::*;
    use RiskLevel::{High, Imminent, Low};
    vec![
        // SuicidalIntent: a decision, in the first person.
        rule(
            SuicidalIntent,
            Imminent,
            &format!(r"\bi(?:'m| am) (?:going|gonna) to {END_MY_LIFE}"),
        ),
        rule(
            SuicidalIntent,
            Imminent,
            &format!(r"\bi(?:'ve| have) decided to {END_MY_LIFE}"),
        ),
        rule(
            SuicidalIntent,
            Imminent,
            &format!(r"\bi will {END_MY_LIFE}"),
        ),
        rule(
            SuicidalIntent,
            Imminent,
            r"\b(?:this|today) (?:is|will be) my last day\b",
        ),
        rule(
            SuicidalIntent,
            Imminent,
            r"\bsaying (?:my )?goodbyes?\b.*\b(?:for good|forever|last time)\b",
        ),
        rule(
            SuicidalIntent,
            Imminent,
            r"\bi(?:'m| am) (?:going|gonna) to end it(?:\s*(?:tonight|today|tomorrow|now|soon|this \w+|all)\b|\s*$|,)",
        ),
        rule(
            SuicidalIntent,
            Imminent,
            r"\b(?:tonight|today|tomorrow)\W+i(?:'m| am| will|'ll) (?:going to |gonna )?(?:finally )?(?:do it|end it)\b",
        ),
        rule(
            SuicidalIntent,
            Imminent,
            r"\b(?:going to|gonna|will) (?:take|swallow) (?:all|every one) of (?:the|my) (?:pills|tablets|meds|medication)|\b(?:going to|gonna|will) (?:take|swallow) all (?:the|my) (?:pills|tablets|meds|medication)",
        ),
        // SuicidePlan and means.
        rule(
            SuicidePlan,
            High,
            r"\b(?:i(?:'ve| have)? (?:thought|been thinking) about|i know|i(?:'ve| have) planned|i(?:'ve| have) worked out|i(?:'ve| have) figured out) (?:exactly )?how (?:i(?:'d| would| could) do it|to do it|i(?:'d| would) (?:kill myself|end it))",
        ),
        rule(
            SuicidePlan,
            High,
            r"\b(?:wrote|written|writing) (?:a |my )?(?:suicide|goodbye|farewell) (?:note|letter)s?\b",
        ),
        rule(
            SuicidePlan,
            High,
            r"\b(?:looked|looking|searched|searching) (?:up|online for|for) (?:how|ways) to (?:kill myself|die|end (?:my life|it))",
        ),
        rule(
            SuicidePlan,
            High,
            r"\b(?:a|my) plan to (?:kill myself|end (?:my life|it)|die)\b",
        ),
        rule(
            SuicidePlan,
            High,
            r"\b(?:picked|chosen|chose|found|worked out|decided on) (?:the|a) (?:spot|place|way|date|day|time|method|bridge)\b.{0,30}\b(?:i(?:'d| would| will|'ll| could) (?:do it|end it|die)|to (?:do it|end it|die))",
        ),
        rule(
            SuicidePlan,
            High,
            r"\b(?:googl\w*|search\w*|look(?:ed|ing) up|research\w*|read(?:ing)? about) (?:suicide|(?:ways|methods|how) to (?:die|kill myself|end (?:it|my life)))",
        ),
        rule(SuicidePlan, High, r"\bsuicide (?:methods|plans?)\b"),
        rule(
            AcquiringMeans,
            High,
            r"\b(?:stockpil\w*|sav(?:ed|ing) up|hoard\w*|collect\w*) (?:my |the |some )?(?:pills|tablets|meds|medication|sleeping pills)",
        ),
        rule(
            AcquiringMeans,
            High,
            r"\b(?:bought|got|have|keep) (?:a |some )?(?:rope|gun|pills|razor blades?)\b.{0,40}\b(?:for (?:myself|me|it|when)|just in case|to (?:end|do) it)",
        ),
        rule(
            AcquiringMeans,
            High,
            r"\b(?:drive|driving|crash) (?:my car )?(?:off|into)\b.{0,30}\b(?:road|bridge|wall|tree|motorway|highway|on purpose)",
        ),
        rule(
            AcquiringMeans,
            High,
            r"\b(?:jump|jumping) (?:off|from) (?:a |the )?(?:bridge|roof|building|balcony)",
        ),
        rule(
            AcquiringMeans,
            High,
            r"\bhow much (?:my )?life insurance (?:would|will) pay",
        ),
        rule(
            AcquiringMeans,
            High,
            r"\b(?:pills|tablets|rope|gun|blade|razor)s?\b.{0,50}\b(?:keep|kept|saving|save|hid(?:e|den)?)\b.{0,20}\b(?:for (?:a bad (?:night|day)|when i need (?:them|it)|the end)|just in case)",
        ),
        // Active ideation.
        rule(
            SuicidalThoughts,
            High,
            &format!(
                r"\b(?:i|part of me) (?:just |really |still )?(?:want|wants|wanna|wanted|would like|need) to {END_MY_LIFE}"
            ),
        ),
        rule(
            SuicidalThoughts,
            High,
            &format!(r"\b(?:thinking|thought|thoughts|think) (?:about|of) {END_MY_LIFE}"),
        ),
        rule(SuicidalThoughts, High, r"\bsuicidal\b"),
        rule(
            SuicidalThoughts,
            High,
            &format!(r"\b(?:tried|attempted|tried once) to {END_MY_LIFE}"),
        ),
        rule(SuicidalThoughts, High, r"\b(?:my|a) suicide attempt\b"),
        rule(SuicidalThoughts, High, r"\bkill myself\b"),
        // Passive ideation.
        rule(
            WishToBeDead,
            Low,
            r"\b(?:wish|wished|wishing) (?:i (?:was|were|could be) dead|i (?:hadn't|had not|wasn't|was not|weren't) (?:been )?born|i(?:'d| had) never been born|i could (?:just )?disappear|i (?:didn't|did not) exist|i could (?:just )?not wake up)",
        ),
        rule(
            WishToBeDead,
            Low,
            r"\b(?:don't|do not|didn't) want to (?:live|be alive|be here|exist|wake up|go on(?:\s*$|\s*[.,;!]| anymore| like this| living))",
        ),
        rule(
            WishToBeDead,
            Low,
            r"\b(?:everyone|everybody|they|my family|my (?:wife|husband|kids|children|partner)|people) (?:would|'d) be better off without me\b",
        ),
        rule(WishToBeDead, Low, r"\bbetter off dead\b"),
        rule(
            WishToBeDead,
            Low,
            r"\b(?:no|nothing) (?:point|reason) (?:in |to )?(?:living|going on|being alive|life)\b|\bnothing (?:left )?to live for\b",
        ),
        rule(
            WishToBeDead,
            Low,
            r"\b(?:life (?:isn't|is not) worth living|not sure (?:life|it) is worth (?:living|it anymore))",
        ),
        rule(
            WishToBeDead,
            Low,
            r"\bwouldn't mind if i (?:didn't|did not) wake up\b|\bit would be easier (?:if i|not to) (?:wasn't|weren't|were not|wake up|be here|exist)",
        ),
        rule(
            WishToBeDead,
            Low,
            r"\bi(?:'d| would) (?:rather|prefer to) be dead\b|\bwant(?:ed)? to (?:just )?disappear (?:forever|for good)",
        ),
        rule(
            WishToBeDead,
            Low,
            r"\b(?:easier|better) (?:for everyone )?if i (?:just )?(?:wasn't|weren't|was not|were not|didn't exist|did not exist|died|were dead|was dead|wasn't (?:here|around|alive))",
        ),
        rule(
            WishToBeDead,
            Low,
            r"\bi(?:'d| would) rather not (?:exist|be alive|be here|live|wake up|be around)\b",
        ),
        rule(
            WishToBeDead,
            Low,
            r"\b(?:hop(?:e|ing)|pray(?:ing)?|wish(?:ing)?) (?:that )?i (?:won't|don't|wouldn't|never|will not|do not) wake up\b",
        ),
        // Self-harm.
        rule(
            SelfInjury,
            High,
            r"\b(?:i(?:'ve| have)? (?:been )?|i )(?:cut|cutting|burn|burning|burned|hurt|hurting|harm|harming|scratch(?:ed|ing)?|hit|hitting) myself\b",
        ),
        rule(SelfInjury, High, r"\bself[- ]harm(?:ing)?\b"),
        rule(
            SelfInjury,
            High,
            r"\b(?:cut|cutting|burn(?:ed|ing)?|hurt(?:ing)?|harm(?:ing)?|hit(?:ting)?|punch(?:ed|ing)?) myself\b",
        ),
        rule(
            SelfInjury,
            High,
            r"\b(?:scratch\w*|cut\w*|pick\w*|burn\w*) (?:at )?my (?:arms?|legs?|skin|wrists?|thighs?)\b.{0,30}\b(?:bled|bleed|blood|scars?|marks)",
        ),
        rule(
            SelfInjury,
            High,
            r"\b(?:urge|urges|want|wanted) to (?:cut|burn|hurt|harm) myself\b",
        ),
        // Harm to others.
        rule(
            HarmToOthers,
            High,
            r"\b(?:i(?:'m| am) (?:going|gonna)|i (?:want|wanna|will|plan)) to (?:kill|hurt|stab|shoot|beat up|harm) (?:him|her|them|my (?:boss|wife|husband|partner|father|mother|dad|mum|mom|brother|sister|neighbou?r|coworker|colleague)|someone|somebody|people|everyone)\b",
        ),
        rule(
            HarmToOthers,
            High,
            r"\b(?:picture|picturing|imagine|imagining|fantasi[sz]e|fantasi[sz]ing) (?:about )?(?:stabbing|killing|hurting|shooting|strangling|beating) (?:him|her|them|my \w+|someone|somebody|people)\b",
        ),
        rule(
            HarmToOthers,
            High,
            r"\bthoughts? (?:of|about) (?:hurting|killing|harming) (?:him|her|them|my \w+|someone|somebody|people|others)\b",
        ),
        rule(
            HarmToOthers,
            High,
            r"\b(?:make|making) (?:them|him|her) (?:all )?pay\b.{0,40}\b(?:hurt|gun|knife|blood|kill)",
        ),
        // IntimatePartnerViolence.
        rule(
            IntimatePartnerViolence,
            High,
            r"\b(?:he|she|they|my (?:husband|wife|partner|boyfriend|girlfriend|father|mother|dad|mum|mom|stepfather|stepmother|uncle|brother|sister|ex)) (?:hits|hit|beats|beat|kicks|kicked|chokes|choked|strangled|slaps|slapped|punches|punched|hurts|hurt|threatens|threatened|touches|touched|locks|locked) me\b",
        ),
        rule(
            IntimatePartnerViolence,
            High,
            r"\b(?:pushe[sd]|shove[sd]|threw|throws) me (?:down|against|into|onto|to the (?:floor|ground))|\bforce[sd]? me to (?:have sex|do (?:sexual )?things)",
        ),
        rule(
            IntimatePartnerViolence,
            High,
            r"\b(?:i(?:'m| am) (?:being )?(?:abused|beaten|hit)|(?:physically|sexually|emotionally) abus(?:ed|ive|ing) (?:me|relationship))\b",
        ),
        rule(
            IntimatePartnerViolence,
            High,
            r"\b(?:afraid|scared|terrified) (?:to go home|of what he(?:'ll| will) do|of what she(?:'ll| will) do|he(?:'ll| will) hurt me|she(?:'ll| will) hurt me)",
        ),
        rule(
            IntimatePartnerViolence,
            High,
            r"\bthreaten(?:s|ed)? to (?:kill|hurt) me\b",
        ),
    ]
});

/// Words that turn a nearby risk phrase into its denial.
static NEGATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:not|never|no|don't|do not|didn't|did not|wouldn't|would not|won't|will not|isn't|aren't|haven't|have not|nor|without|deny|denies)\b(?:[^\w,]+\w+){0,5}[^\w,]*$")
        .expect("negation pattern is valid")
});

/// Words that put what follows in the past, e.g. "I used to feel suicidal".
static HISTORY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bused to (?:feel|be|think|have)\b(?:\W+\w+){0,2}\W*$")
        .expect("history pattern is valid")
});

/// Figures of speech that use risk words: "this deadline is killing me",
/// "I'm dying to see it", "take care of myself".
static IDIOM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:(?:is|are|was|were|it's|that's) killing me|dying (?:to|for)|die (?:of|from) (?:embarrassment|laughter|boredom|shame)|kill(?:ing)? (?:time|it)\b|could kill for|killed it|dead (?:tired|serious|on)|to die for|drop[- ]dead|be the death of)")
        .expect("idiom pattern is valid")
});

/// The lexicon behind the catch-all: words about dying or ending one's life.
/// A sentence that has one, in the first person, and matched no specific
/// rule is flagged at low risk, so the therapist asks about safety: asking
/// when it was not needed costs little; not asking costs a lot.
static DEATH_WORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:die|dying|dead|death|suicid\w*|kill(?:ing)? myself|end (?:it|everything|my life)|ending (?:it|everything|my life)|way out|not be here|won't be (?:here|around)|disappear (?:forever|for good|completely)|overdos\w*|hang myself|rope|bridge|how many (?:tablets|pills)|cutting|hurt myself|harm myself|wouldn't care)\b")
        .expect("lexicon pattern is valid")
});

static FIRST_PERSON: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:i|i'm|i've|i'd|i'll|me|my|myself)\b").expect("pattern is valid")
});

/// Someone else is the one dying or killing: "my dad dying", "he died".
static OTHER_PERSON: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:(?:my|his|her|their|our|the|a) \w+(?: \w+)?|he|she|they|someone|somebody|who) (?:is |was )?(?:dying|died|dies|die|dead|death|kills?|killed|killing)\b")
        .expect("pattern is valid")
});

/// When in an utterance with a plan, intent or means, makes it imminent.
static SOON: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:tonight|today|tomorrow|this (?:weekend|week|evening|afternoon)|right now|after (?:this|the) session|when i get home|very soon|in a few (?:hours|days))\b")
        .expect("time pattern is valid")
});

/// Judges one utterance.
pub fn detect(text: &str) -> Detection {
    let normalized = text
        .replace(['\u{2019}', '\u{2018}'], "'")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut matches = Vec::new();
    let mut level = RiskLevel::None;
    let mut category = Category::None;
    for sentence in normalized.split(['.', '!', '?', ';', '\n']) {
        // An idiom does not flag, but only its own words are set aside.
        let sentence = IDIOM.replace_all(sentence, " ");
        for rule in RULES.iter() {
            for m in rule.pattern.find_iter(&sentence) {
                let before = &sentence[..m.start()];
                if NEGATION.is_match(before) || HISTORY.is_match(before) {
                    continue;
                }
                matches.push((rule.category, m.as_str().to_string()));
                if rule.level > level {
                    level = rule.level;
                    category = rule.category;
                }
            }
        }
    }
    if matches.is_empty() {
        for sentence in normalized.split(['.', '!', '?', ';', '\n']) {
            let sentence = IDIOM.replace_all(sentence, " ");
            let Some(m) = DEATH_WORD.find(&sentence) else {
                continue;
            };
            let before = &sentence[..m.start()];
            if !FIRST_PERSON.is_match(&sentence)
                || OTHER_PERSON.is_match(&sentence)
                || NEGATION.is_match(before)
                || HISTORY.is_match(before)
            {
                continue;
            }
            matches.push((Category::WishToBeDead, m.as_str().to_string()));
            level = RiskLevel::Low;
            category = Category::WishToBeDead;
        }
    }
    let concrete = matches.iter().any(|(c, _)| {
        matches!(
            c,
            Category::SuicidePlan | Category::SuicidalIntent | Category::AcquiringMeans
        )
    });
    if concrete && level < RiskLevel::Imminent && SOON.is_match(&normalized) {
        level = RiskLevel::Imminent;
    }
    Detection {
        flagged: level > RiskLevel::None,
        category,
        level,
        matches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idioms_negations_and_other_people_do_not_flag() {
        for text in [
            "This deadline is killing me.",
            "I need to take care of myself this week.",
            "I'm not suicidal, just exhausted.",
            "I would never kill myself, I have my kids.",
            "My friend said she wanted to kill herself and I was scared for her.",
            "I'm dying to see my sister again.",
            "Even if I don't want to go on therapy right away, I might talk to her.",
        ] {
            let d = detect(text);
            assert!(!d.flagged, "{text}: {d:?}");
        }
    }

    #[test]
    fn levels_rise_with_plan_intent_and_timing() {
        assert_eq!(detect("Sometimes I wish I was dead.").level, RiskLevel::Low);
        assert_eq!(detect("I want to kill myself.").level, RiskLevel::High);
        assert_eq!(
            detect("I've been saving up my pills.").level,
            RiskLevel::High
        );
        let d = detect("I've been saving up my pills and I'm going to take them tonight.");
        assert_eq!(d.level, RiskLevel::Imminent);
        assert_eq!(
            detect("I'm going to kill myself.").category,
            Category::SuicidalIntent
        );
    }
}
