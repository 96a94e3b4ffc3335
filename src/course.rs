//! Courses: sessions 1..N for one persona, each building on the ones
//! before. The therapist gets the earlier summaries (the latest in full,
//! older ones condensed to their topics within a budget) and the homework
//! to review; the patient gets the homework, how far they did it, what
//! happened in their life since, and what they have already disclosed.

use crate::persona::{Attitude, Persona};
use crate::risk::RiskLevel;
use crate::session::CarryOver;
use crate::summary::SessionSummary;
use serde::Serialize;

/// What a course remembers of one finished session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Remembered {
    pub session_number: u32,
    /// None when the summary could not be written.
    pub summary: Option<SessionSummary>,
    /// Whether the patient disclosed risk (a safety event) in that session.
    pub disclosed_risk: bool,
}

/// How much of the homework the patient did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HomeworkDone {
    Done,
    Partly,
    NotDone,
}

/// Characters of older summaries the therapist is given (about 4 per token).
pub const MEMORY_BUDGET_CHARS: usize = 2400;

/// The notes for session `number` of a course, from what came before.
pub fn carry_over(
    persona: &Persona,
    therapist: &str,
    number: u32,
    earlier: &[Remembered],
    seed: u32,
) -> CarryOver {
    let mut notes = CarryOver::default();
    let Some(last) = earlier.last() else {
        return notes;
    };
    let who = crate::session::prompt::first_name(persona);
    let homework = last
        .summary
        .as_ref()
        .map(|s| s.homework.clone())
        .unwrap_or_default();

    // The therapist: the latest session in full, older ones condensed.
    let mut memory = String::new();
    for old in earlier[..earlier.len() - 1].iter().rev() {
        let Some(summary) = &old.summary else {
            continue;
        };
        let line = format!(
            "Session {} covered: {}. ",
            old.session_number,
            summary.main_topics.join("; ")
        );
        if memory.len() + line.len() > MEMORY_BUDGET_CHARS {
            break;
        }
        memory.insert_str(0, &line);
    }
    if let Some(summary) = &last.summary {
        memory.push_str(&format!(
            "Last time (session {}): topics: {}. Techniques: {}. Helpful: {}. Insights: {}.",
            last.session_number,
            or_none(&summary.main_topics),
            or_none(&summary.techniques),
            or_none(&summary.helpful),
            or_none(&summary.insights),
        ));
    }
    if !memory.is_empty() {
        notes.therapist.push(memory);
    }
    notes.therapist.push(format!(
        "This is session {number}. {therapist} opens by bridging from last time and reviewing the \
         homework: {}.",
        if homework.is_empty() {
            "none was set".to_string()
        } else {
            homework.join("; ")
        }
    ));

    // The patient: homework and how far it went, life since, disclosures.
    if !homework.is_empty() {
        let done = homework_done(persona.conversation.attitude, seed.wrapping_add(number));
        let how = match done {
            HomeworkDone::Done => "did it",
            HomeworkDone::Partly => "did part of it",
            HomeworkDone::NotDone => "did not do it",
        };
        notes.patient.push(format!(
            "Homework from last session: {}. {who} {how}, and says so honestly if asked.",
            homework.join("; ")
        ));
    }
    for event in persona
        .life_events
        .iter()
        .filter(|e| e.before_session == number)
    {
        notes
            .patient
            .push(format!("Since the last session: {}", event.event));
    }
    if persona.risk.level != RiskLevel::None && earlier.iter().any(|r| r.disclosed_risk) {
        notes.patient.push(format!(
            "{who} has already told the therapist about: {}",
            persona.risk.details
        ));
    }
    notes
}

/// How much homework a patient of this attitude does; the seed varies it
/// reproducibly between sessions.
pub fn homework_done(attitude: Attitude, seed: u32) -> HomeworkDone {
    let coin = seed % 3;
    match attitude {
        Attitude::Engaged => {
            if coin == 0 {
                HomeworkDone::Partly
            } else {
                HomeworkDone::Done
            }
        }
        Attitude::Ambivalent => {
            if coin == 0 {
                HomeworkDone::NotDone
            } else {
                HomeworkDone::Partly
            }
        }
        Attitude::Skeptical => {
            if coin == 0 {
                HomeworkDone::Partly
            } else {
                HomeworkDone::NotDone
            }
        }
        Attitude::Resistant => HomeworkDone::NotDone,
    }
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persona::library_persona;

    fn summary(topic: &str, homework: &str) -> SessionSummary {
        SessionSummary {
            main_topics: vec![topic.into()],
            homework: vec![homework.into()],
            ..SessionSummary::default()
        }
    }

    #[test]
    fn the_first_session_carries_nothing() {
        let alicia = library_persona("alicia-rodriguez").unwrap().unwrap();
        assert_eq!(carry_over(&alicia, "Nova", 1, &[], 0), CarryOver::default());
    }

    #[test]
    fn later_sessions_get_summaries_homework_and_life_events() {
        let alicia = library_persona("alicia-rodriguez").unwrap().unwrap();
        let earlier = [
            Remembered {
                session_number: 1,
                summary: Some(summary("Grief", "Write three things you are proud of")),
                disclosed_risk: false,
            },
            Remembered {
                session_number: 2,
                summary: Some(summary(
                    "Perfectionism at work",
                    "Thought record after each mistake",
                )),
                disclosed_risk: false,
            },
        ];
        let notes = carry_over(&alicia, "Nova", 3, &earlier, 0);
        let therapist = notes.therapist.join("\n");
        assert!(therapist.contains("Session 1 covered: Grief"));
        assert!(therapist.contains("Last time (session 2): topics: Perfectionism at work"));
        assert!(therapist.contains("reviewing the homework: Thought record after each mistake"));
        let patient = notes.patient.join("\n");
        assert!(patient.contains("Homework from last session: Thought record after each mistake"));
        assert!(
            patient.contains("memorial mass"),
            "the life event before session 3: {patient}"
        );
    }

    #[test]
    fn attitude_decides_how_much_homework_gets_done() {
        assert_eq!(homework_done(Attitude::Resistant, 1), HomeworkDone::NotDone);
        assert_eq!(homework_done(Attitude::Engaged, 1), HomeworkDone::Done);
        assert_eq!(homework_done(Attitude::Ambivalent, 1), HomeworkDone::Partly);
    }
}
