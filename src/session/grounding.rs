//! The patient's turn grounded in the persona: the facts of the persona in
//! the order a session tends to reach them, and the first one the patient
//! has not told yet, one per turn. Left to itself a small model invents a
//! story of its own; told one fact at a time, it talks about this person.

use crate::lint;
use crate::persona::Persona;
use crate::session::prompt::first_name;
use crate::speaker::Speaker;
use crate::turn::Turn;
use std::collections::HashSet;

/// The persona's facts, each a short text: what brings them, the recent
/// situation and its thoughts, feelings and actions, then their history,
/// rules, coping and core beliefs.
pub fn facts(p: &Persona) -> Vec<String> {
    let m = &p.cognitive_model;
    let mut out = vec![format!(
        "what brings {} to therapy: {}",
        first_name(p),
        p.background.presenting_problems.join(", ")
    )];
    out.push(m.situation.clone());
    out.extend(m.automatic_thoughts.iter().cloned());
    out.push(format!("feeling {}", m.emotions.join(", ")));
    out.extend(m.behaviours.iter().cloned());
    out.extend(sentences(&p.background.history));
    out.extend(m.intermediate_beliefs.iter().cloned());
    out.extend(m.coping_strategies.iter().cloned());
    out.extend(m.core_belief_statements.iter().cloned());
    out.retain(|f| !f.trim().is_empty());
    out
}

/// How many patient turns are asked for one fact before it is passed
/// over: a fact in words the model does not take up (a list of problems,
/// "depression, relationship conflict, loss of motivation") would
/// otherwise be asked for all session and hold back every fact after it.
pub const TRIES: usize = 2;

/// The first fact no patient turn has told yet and fewer than [`TRIES`]
/// patient turns were asked for, if any is left.
pub fn next_untold<'a>(facts: &'a [String], turns: &[Turn], persona: &Persona) -> Option<&'a str> {
    let patient = || turns.iter().filter(|t| t.speaker == Speaker::Patient);
    let said: Vec<Vec<String>> = patient().map(|t| lint::plain_words(&t.text)).collect();
    facts
        .iter()
        .find(|fact| {
            let asked = patient()
                .filter(|t| t.meta.fact.as_deref() == Some(fact.as_str()))
                .count();
            asked < TRIES && !said.iter().any(|turn| tells(turn, fact, persona))
        })
        .map(String::as_str)
}

/// Whether a turn (its words) tells a fact: it has at least two of the
/// fact's content words (all of them when the fact has fewer).
fn tells(turn: &[String], fact: &str, persona: &Persona) -> bool {
    let content = content_words(fact, persona);
    if content.is_empty() {
        return true;
    }
    let found = content.iter().filter(|w| turn.contains(w)).count();
    found >= content.len().min(2)
}

/// How many of the fact's content words a reply uses (the candidate score
/// counts it).
pub fn overlap(reply: &str, fact: &str, persona: &Persona) -> usize {
    let reply = lint::plain_words(reply);
    content_words(fact, persona)
        .iter()
        .filter(|w| reply.contains(w))
        .count()
}

/// How many of the persona's own words (`specific`) a reply uses, each
/// counted once (the candidate score counts it): a turn about this patient
/// rather than the story every patient could tell.
pub fn specific_in(reply: &str, specific: &HashSet<String>) -> usize {
    words(reply)
        .filter(|w| specific.contains(w))
        .collect::<HashSet<_>>()
        .len()
}

/// The note that asks for the fact, in the patient's own words.
pub fn note(persona: &Persona, fact: &str) -> String {
    format!(
        "In this reply {} may bring up, in their own words and only if it fits: {fact}",
        first_name(persona)
    )
}

/// A fact's words that carry its content, without the persona's names.
fn content_words(fact: &str, persona: &Persona) -> Vec<String> {
    let names = lint::plain_words(&persona.identity.name);
    lint::content_words(fact)
        .into_iter()
        .filter(|w| !names.contains(w))
        .collect()
}

/// The words of a persona's description (four letters or more) that no
/// other library persona's description has: what only this patient would
/// talk about. Its own names are left out (saying one's name is not a fact
/// of one's story).
pub fn specific_words(persona: &Persona, library: &[Persona]) -> HashSet<String> {
    let names: HashSet<String> = words(&persona.identity.name).collect();
    let others: HashSet<String> = library
        .iter()
        .filter(|p| p.id != persona.id)
        .flat_map(|p| words(&description(p)).collect::<Vec<_>>())
        .collect();
    words(&description(persona))
        .filter(|w| w.chars().count() >= 4 && !others.contains(w) && !names.contains(w))
        .collect()
}

/// Every string of a persona but its risk, as one text: the risk's words
/// are the story's too, but a candidate scored for them would push the
/// patient to disclose, which is the persona's disclosure setting's call.
fn description(persona: &Persona) -> String {
    let mut value = serde_json::to_value(persona).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("risk");
    }
    let mut out = String::new();
    let mut stack = vec![&value];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) => {
                out.push_str(s);
                out.push(' ');
            }
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(fields) => stack.extend(fields.values()),
            _ => {}
        }
    }
    out
}

/// A text's words in lower case, split at anything but letters, digits
/// and apostrophes (unlike `lint::plain_words`, "grief/loss" is two words,
/// as a persona's lists often join them).
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty())
}

/// Sentences of a paragraph, at full stops followed by a space.
fn sentences(text: &str) -> Vec<String> {
    text.split_inclusive(". ")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alicia() -> Persona {
        crate::persona::library_persona("alicia-rodriguez")
            .unwrap()
            .unwrap()
    }

    #[test]
    fn facts_begin_with_what_brings_them_and_the_situation() {
        let p = alicia();
        let facts = facts(&p);
        assert!(facts[0].contains("grief"), "{}", facts[0]);
        assert!(facts[1].contains("sprint deadline"), "{}", facts[1]);
        assert!(facts.iter().any(|f| f.contains("grandmother")));
        assert!(facts.iter().all(|f| !f.trim().is_empty()));
    }

    #[test]
    fn a_fact_the_patient_told_is_not_asked_for_again() {
        let p = alicia();
        let facts = facts(&p);
        assert_eq!(next_untold(&facts, &[], &p), Some(facts[0].as_str()));
        let turns = vec![
            Turn::new(
                Speaker::Patient,
                "I'm here because of grief and perfectionism, mostly.",
            ),
            // The therapist saying it does not count as the patient telling it.
            Turn::new(Speaker::Therapist, "Did your team miss a sprint deadline?"),
        ];
        assert_eq!(next_untold(&facts, &turns, &p), Some(facts[1].as_str()));
        let mut told = turns.clone();
        told.push(Turn::new(
            Speaker::Patient,
            "Well, my team missed the sprint deadline and my manager wanted a call.",
        ));
        assert_eq!(next_untold(&facts, &told, &p), Some(facts[2].as_str()));
    }

    #[test]
    fn a_fact_asked_for_twice_and_not_told_is_passed_over() {
        let p = alicia();
        let facts = facts(&p);
        let asked = |text: &str| {
            let mut turn = Turn::new(Speaker::Patient, text);
            turn.meta.fact = Some(facts[0].clone());
            turn
        };
        let once = vec![asked("I don't know what to say.")];
        assert_eq!(next_untold(&facts, &once, &p), Some(facts[0].as_str()));
        let twice = vec![
            asked("I don't know what to say."),
            asked("It's hard to explain."),
        ];
        assert_eq!(next_untold(&facts, &twice, &p), Some(facts[1].as_str()));
    }

    #[test]
    fn specific_words_are_this_personas_alone() {
        let library = crate::persona::library().unwrap();
        let alicia = alicia();
        let specific = specific_words(&alicia, &library);
        assert!(specific.len() > 10, "{specific:?}");
        assert!(!specific.contains("alicia") && !specific.contains("rodriguez"));
        for other in library.iter().filter(|p| p.id != alicia.id) {
            let theirs: HashSet<String> = words(&description(other)).collect();
            assert!(specific.is_disjoint(&theirs), "{} shares one", other.id);
        }
        // Words every persona's story has are not specific.
        assert!(!specific.contains("feel") && !specific.contains("work"));
    }

    #[test]
    fn a_reply_scores_each_of_the_personas_own_words_once() {
        let library = crate::persona::library().unwrap();
        let specific = specific_words(&alicia(), &library);
        assert_eq!(specific_in("I feel tired at work.", &specific), 0);
        assert_eq!(
            specific_in(
                "My grandmother, my grandmother... and the sprint.",
                &specific
            ),
            2
        );
    }

    #[test]
    fn overlap_counts_the_facts_content_words_in_a_reply() {
        let p = alicia();
        let fact =
            "Her team missed a sprint deadline and her manager asked for a quick call about it.";
        assert_eq!(overlap("I just feel tired.", fact, &p), 0);
        assert_eq!(
            overlap("The sprint deadline, and then my manager called.", fact, &p),
            3
        );
    }
}
