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

/// Words about ending one's life, in a question put to the patient.
const YOUR_LIFE: &str = r"(?:end(?:ing)? your (?:own )?life|tak(?:e|ing) your (?:own )?life|kill(?:ing)? yourself|suicid\w*|end(?:ing)? it all|act(?:ing)? on (?:them|these thoughts|those thoughts|it))";

static QUESTIONS: LazyLock<Vec<Question>> = LazyLock::new(|| {
    use Category::*;
    let q = |category, pattern: &str, no_is_risk| Question {
        category,
        pattern: Regex::new(&pattern.replace("{YOUR_LIFE}", YOUR_LIFE))
            .expect("question pattern is valid"),
        no_is_risk,
    };
    // Most specific first: the first that matches names the category.
    // Each names the risk itself, so "have you tried the thought record?"
    // or "any plans for the weekend?" ask nothing of the kind.
    vec![
        q(
            SuicidePlan,
            r"\b(?:a plan|planned|plans|worked out|thought about how)\b.*\b(?:{YOUR_LIFE}|do it)\b",
            false,
        ),
        q(
            SuicidalBehaviour,
            r"\b(?:tried|attempted|made an attempt|done anything)\b.*\b(?:{YOUR_LIFE}|end your|hurt yourself|harm yourself)\b|\ban attempt on your life\b",
            false,
        ),
        q(
            SelfInjury,
            r"\b(?:hurt|hurting|harm|harming|cut|cutting|injur\w*) yourself\b|\bself[- ]?harm",
            false,
        ),
        q(
            HarmToOthers,
            r"\b(?:thoughts? (?:of|about)|thinking (?:of|about)|want(?:ing)? to|going to|urges? to|plans? to) (?:hurting|harming|hurt|harm|kill|killing|attack\w*) (?:someone|anyone|others|somebody|him|her|them|people)\b",
            false,
        ),
        q(
            IntimatePartnerViolence,
            r"\b(?:anyone|someone|somebody|your (?:partner|husband|wife|boyfriend|girlfriend|ex)|he|she) (?:hurting|hurt|hit|hitting|threaten\w*|frighten\w*|control\w*|forc\w*) you\b|\bafraid of (?:him|her|your (?:partner|husband|wife|boyfriend|girlfriend|ex))\b",
            false,
        ),
        q(
            DangerNow,
            r"\b(?:are you|do you feel) safe (?:right now|now|at home|where you are|tonight|to go home)$|\bare you (?:in danger|safe)$",
            true,
        ),
        q(
            WishToBeDead,
            r"\bwish(?:ed)? you (?:were|was) dead\b|\bnot wake up\b|\bgo to sleep and not\b|\bbetter off dead\b",
            false,
        ),
        q(
            SuicidalThoughts,
            r"\b{YOUR_LIFE}\b|\bwant(?:ing)? to die\b",
            false,
        ),
    ]
});

/// A question put to the patient: an auxiliary before "you" ("are you",
/// "have you had"), not a conditional that happens to end in "?" (a crisis
/// line's name can).
static ASKS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:are|do|have|did|would|could|will|is|has|were|had|any) (?:you|anyone|someone|somebody|there|thoughts)\b")
        .expect("pattern is valid")
});

/// Fillers before an answer.
const FILLER: &str = r"^(?:(?:um+|uh+|er+|well|honestly|to be honest|i mean|if i'm honest|ok|okay|oh|mm+|hmm+)[, .]+)*";

/// Answers that say yes, first words only.
static YES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"{FILLER}(?:yes|yeah|yea|yep|yup|ye|i have|i do|i am|i did|i think so|i guess|maybe|sometimes|sort of|kind of|kinda|a bit|a little|a lot|a few times|more than|lately|every day|most days|most nights|all the time|constantly|often|probably|i suppose|it has|they have|he has|she has|he does|she does|now and then|on and off)\b"))
        .expect("pattern is valid")
});

/// Answers that say no (checked before the yeses: "i am not" is a no).
static NO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"{FILLER}(?:no|nope|nah|never|not really|not at all|not anymore|of course not|god no|definitely not|absolutely not|i'm not|i am not|i haven't|i have not|i have no|i have never|i've never|i had never|i don't|i do not|i didn't|i did not|i wouldn't|i would not|nothing like that|i guess not|probably not|maybe not|i suppose not|not that i know)\b"))
        .expect("pattern is valid")
});

/// Answers that say they are safe.
static SAFE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"{FILLER}(?:yes|yeah|yep|yup|i'm safe|i am safe|i'm ok|i'm okay|i'm fine|i think so)\b"
    ))
    .expect("pattern is valid")
});

/// The questions a turn asks, last first (the one the patient answers):
/// each sentence that ends in a question mark and puts something to them.
fn questions_in(turn: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = turn.split('?').collect();
    parts.pop(); // what follows the last question mark is not a question
    parts
        .into_iter()
        .rev()
        .map(|p| p.rsplit(['.', '!', ';', ':']).next().unwrap_or(p).trim())
        .filter(|q| ASKS.is_match(q))
        .collect()
}

/// The category a patient's answer discloses, given the therapist's turn
/// before it: a yes to a direct question (a no, for "are you safe?"), or
/// `None` when it asked nothing of the kind or the answer says otherwise.
/// Of several questions, the last one that asks about a risk counts.
pub fn answer_to_question(question: &str, answer: &str) -> Option<Category> {
    let question = normalize(question);
    let answer = normalize(answer);
    let asked = questions_in(&question)
        .into_iter()
        .find_map(|q| QUESTIONS.iter().find(|known| known.pattern.is_match(q)))?;
    let no = NO.is_match(&answer);
    let disclosed = if asked.no_is_risk {
        no && !SAFE.is_match(&answer)
    } else {
        !no && YES.is_match(&answer)
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
            "Now and then.",
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
            "Well, not really.",
            "nope",
            "I'm not, no.",
            "I am not.",
            "I do not.",
            "I have never thought about that.",
            "I guess not.",
            "Probably not.",
            "Maybe not.",
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
        assert_eq!(answer_to_question(safe, "Now he's gone, yes."), None);
        assert_eq!(
            answer_to_question("How was your week?", "Yes, a lot."),
            None
        );
        assert_eq!(
            answer_to_question("Have you been hurting yourself?", "A few times, yeah."),
            Some(Category::SelfInjury)
        );
        assert_eq!(
            answer_to_question("Do you have a plan for how you would end your life?", "yes"),
            Some(Category::SuicidePlan)
        );
        assert_eq!(
            answer_to_question("Do you have a plan?", "I have no plan."),
            None
        );
    }

    #[test]
    fn everyday_questions_and_statements_ask_nothing() {
        for (question, answer) in [
            ("Have you tried the thought record?", "Yes, a few times."),
            ("Any plans for the weekend?", "Yes, today."),
            ("Are you afraid of your exams?", "Yes."),
            ("Would it hurt her feelings?", "Yes."),
            ("Are you safe to drive home?", "No, I'm tired."),
            // A crisis line's name that ends in "?" is not a question.
            (
                "If you are thinking about ending your life, please contact Need to Talk? (call 1737)",
                "Yes, I will.",
            ),
        ] {
            assert_eq!(answer_to_question(question, answer), None, "{question}");
        }
    }

    #[test]
    fn the_last_question_asked_is_the_one_answered() {
        let turn = "Are you safe right now? And have you had thoughts of killing yourself?";
        assert_eq!(
            answer_to_question(turn, "Yes."),
            Some(Category::SuicidalThoughts)
        );
    }
}
