//! The therapist's question before a patient's words: "yes, a lot lately"
//! after "Are you having thoughts of ending your life?" is a disclosure,
//! and a plain "no" is not.

use super::Category;
use super::normalize::normalize;
use regex::Regex;
use std::sync::LazyLock;

/// What a direct safety question asks about, and which answer is the risk.
struct Question {
    category: Category,
    pattern: Regex,
    /// "Are you safe?": a no is the risk.
    no_is_risk: bool,
}

static QUESTIONS: LazyLock<Vec<Question>> = LazyLock::new(|| {
    use Category::*;
    let q = |category, pattern: &str, no_is_risk| Question {
        category,
        pattern: Regex::new(pattern).expect("question pattern is valid"),
        no_is_risk,
    };
    // Most specific first: the first that matches names the category.
    vec![
        q(
            SuicidePlan,
            r"\b(?:a plan|planned|plans) (?:to|for|how)\b|\bhave you (?:thought about|worked out) how\b|\bhave a plan\b",
            false,
        ),
        q(
            SuicidalBehaviour,
            r"\bhave you (?:ever )?(?:tried|attempted|done anything)\b|\bmade an attempt\b",
            false,
        ),
        q(
            SelfInjury,
            r"\b(?:hurt|hurting|harm|harming|cut|cutting|injur\w*) yourself\b|\bself[- ]?harm",
            false,
        ),
        q(
            HarmToOthers,
            r"\b(?:hurting|harming|hurt|harm|kill|killing) (?:someone|anyone|others|somebody|him|her|them)\b",
            false,
        ),
        q(
            IntimatePartnerViolence,
            r"\b(?:anyone|someone|somebody|your (?:partner|husband|wife|boyfriend|girlfriend)|he|she) (?:hurting|hurt|hit|hitting|threaten\w*|frighten\w*|control\w*) you\b|\bafraid of (?:him|her|your)\b",
            false,
        ),
        q(
            DangerNow,
            r"\b(?:are you|do you feel) safe (?:right now|now|at home|where you are|tonight|to go home)\b|\bare you (?:in danger|safe)\b",
            true,
        ),
        q(
            WishToBeDead,
            r"\bwish(?:ed)? you (?:were|was) dead\b|\bnot wake up\b|\bgo to sleep and not\b|\bbetter off dead\b",
            false,
        ),
        q(
            SuicidalThoughts,
            r"\b(?:end(?:ing)?|take|taking) your (?:own )?life\b|\bkill(?:ing)? yourself\b|\bsuicid\w*\b|\bwant(?:ing)? to die\b",
            false,
        ),
    ]
});

/// Answers that say yes, first words only.
static YES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:(?:um+|uh+|well|honestly|to be honest|i mean|if i'm honest|ok|okay|mm+|hmm+)[, .]+)*(?:yes|yeah|yea|yep|yup|ye|i have|i do|i am|i did|i think so|i guess|maybe|sometimes|sort of|kind of|kinda|a bit|a little|a lot|a few times|more than|lately|every day|most days|most nights|all the time|constantly|often|probably|i suppose|it has|they have|he has|she has|he does|she does|not anymore|no,? not really|not really|i'm not sure|i don't know)\b")
        .expect("pattern is valid")
});

/// Answers that say no.
static NO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:(?:um+|uh+|well|honestly|ok|okay|oh)[, .]+)*(?:no|nope|nah|never|not at all|of course not|god no|definitely not|absolutely not|i'm not|i haven't|i don't|i wouldn't|nothing like that)\b")
        .expect("pattern is valid")
});

/// Answers that say they are safe.
static SAFE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:(?:um+|uh+|well|honestly|ok|okay|oh)[, .]+)*(?:yes|yeah|yep|yup|i'm safe|i am safe|i'm ok|i'm okay|i'm fine|i think so)\b")
        .expect("pattern is valid")
});

/// The questions a turn asks: each sentence that ends in a question mark.
fn questions_in(turn: &str) -> impl Iterator<Item = &str> {
    let mut parts: Vec<&str> = turn.split('?').collect();
    parts.pop(); // what follows the last question mark is not a question
    parts
        .into_iter()
        .map(|p| p.rsplit(['.', '!', '\n']).next().unwrap_or(p))
}

/// The category a patient's answer discloses, given the therapist's turn
/// before it: a yes to a direct question (a no, for "are you safe?"), or
/// `None` when it asked nothing of the kind or the answer says otherwise.
pub fn answer_to_question(question: &str, answer: &str) -> Option<Category> {
    let question = normalize(question);
    let answer = normalize(answer);
    let asked = QUESTIONS
        .iter()
        .find(|q| questions_in(&question).any(|asked| q.pattern.is_match(asked)))?;
    // "No, not really" to "are you safe?" is a no; "not really" to "are you
    // thinking of ending your life?" is a hedged no — not a disclosure.
    let hedged_no = answer.starts_with("no") || answer.starts_with("not really");
    let yes = YES.is_match(&answer) && !hedged_no;
    let no = NO.is_match(&answer) || hedged_no;
    let disclosed = if asked.no_is_risk {
        no && !SAFE.is_match(&answer)
    } else {
        yes && !no
    };
    disclosed.then_some(asked.category)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yes_to_a_direct_question_is_a_disclosure_and_a_no_is_not() {
        let q = "Are you having any thoughts of ending your life?";
        for yes in [
            "Yes, a lot lately.",
            "yeah",
            "Sometimes, at night.",
            "Honestly, yes.",
            "kinda tbh",
        ] {
            assert_eq!(
                answer_to_question(q, yes),
                Some(Category::SuicidalThoughts),
                "{yes}"
            );
        }
        for no in [
            "No.",
            "No, never.",
            "Not really, just tired.",
            "nope",
            "I'm not, no.",
        ] {
            assert_eq!(answer_to_question(q, no), None, "{no}");
        }
        let safe = "Are you safe right now?";
        assert_eq!(
            answer_to_question(safe, "No, he's still here."),
            Some(Category::DangerNow)
        );
        assert_eq!(answer_to_question(safe, "Yes, I'm safe."), None);
        assert_eq!(
            answer_to_question(safe, "I'm safe, I'll call my sister."),
            None
        );
        // Only questions count: the resources' words are not a question.
        let told = "If you are thinking about ending your life, call 988. How was work?";
        assert_eq!(answer_to_question(told, "Yes, a lot."), None);
        assert_eq!(
            answer_to_question("How was your week?", "Yes, a lot."),
            None
        );
        assert_eq!(
            answer_to_question("Have you been hurting yourself?", "A few times, yeah."),
            Some(Category::SelfInjury)
        );
        assert_eq!(
            answer_to_question("Do you have a plan for how you would do it?", "yes"),
            Some(Category::SuicidePlan)
        );
    }
}
