//! Courses: sessions 1..N for one persona, each building on the ones
//! before. The therapist gets the earlier summaries (the latest in full,
//! older ones condensed to their topics within a budget) and the homework
//! to review; the patient gets the homework, how far they did it, what
//! happened in their life since, and what they have already disclosed.

use crate::persona::{Attitude, Mood, Persona};
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
    /// The patient's scores at the start of that session.
    pub mood: Mood,
}

/// Where the patient stands at the start of a session of a course.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PatientState {
    pub mood: Mood,
    /// How much of the last session's homework was done; None when none was set.
    #[serde(rename = "homework_done")]
    pub homework: Option<HomeworkDone>,
}

/// How much of the homework the patient did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HomeworkDone {
    Done,
    Partly,
    NotDone,
}

impl HomeworkDone {
    pub fn as_str(self) -> &'static str {
        match self {
            HomeworkDone::Done => "done",
            HomeworkDone::Partly => "partly",
            HomeworkDone::NotDone => "not_done",
        }
    }

    /// Points the homework takes off both questionnaire scores.
    fn relief(self) -> i32 {
        match self {
            HomeworkDone::Done => 2,
            HomeworkDone::Partly => 1,
            HomeworkDone::NotDone => 0,
        }
    }
}

/// The patient's state before session `number`: the homework of the last
/// session done or not (by attitude and seed), and the scores moved by it
/// and by the life events since (see docs/personas.md).
pub fn patient_state(
    persona: &Persona,
    number: u32,
    earlier: &[Remembered],
    seed: u32,
) -> PatientState {
    let Some(last) = earlier.last() else {
        return PatientState {
            mood: persona.mood,
            homework: None,
        };
    };
    let homework_set = last
        .summary
        .as_ref()
        .is_some_and(|s| !s.homework.is_empty());
    let homework = homework_set
        .then(|| homework_done(persona.conversation.attitude, seed.wrapping_add(number)));
    let events: i32 = persona
        .life_events
        .iter()
        .filter(|e| e.before_session == number)
        .map(|e| e.mood_change)
        .sum();
    let relief = homework.map_or(0, HomeworkDone::relief);
    PatientState {
        mood: last.mood.moved(events - relief),
        homework,
    }
}

/// Characters of older summaries the therapist is given (about 4 per token).
pub const MEMORY_BUDGET_CHARS: usize = 2400;

/// The notes for session `number` of a course, from what came before and
/// where the patient stands now (`patient_state`).
pub fn carry_over(
    persona: &Persona,
    therapist: &str,
    number: u32,
    earlier: &[Remembered],
    state: &PatientState,
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
        "At session {} the scores were PHQ-9 {}, GAD-7 {}.",
        last.session_number, last.mood.phq9, last.mood.gad7
    ));
    notes.homework_set = !homework.is_empty();
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
    if let Some(done) = state.homework {
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
        let state = patient_state(&alicia, 1, &[], 0);
        assert_eq!(
            state.mood, alicia.mood,
            "session 1 starts from the baseline"
        );
        assert_eq!(state.homework, None);
        assert_eq!(
            carry_over(&alicia, "Nova", 1, &[], &state),
            CarryOver::default()
        );
    }

    #[test]
    fn later_sessions_get_summaries_homework_and_life_events() {
        let alicia = library_persona("alicia-rodriguez").unwrap().unwrap();
        let earlier = [
            Remembered {
                session_number: 1,
                summary: Some(summary("Grief", "Write three things you are proud of")),
                disclosed_risk: false,
                mood: Mood { phq9: 12, gad7: 11 },
            },
            Remembered {
                session_number: 2,
                summary: Some(summary(
                    "Perfectionism at work",
                    "Thought record after each mistake",
                )),
                disclosed_risk: false,
                mood: Mood { phq9: 11, gad7: 10 },
            },
        ];
        let state = patient_state(&alicia, 3, &earlier, 0);
        let notes = carry_over(&alicia, "Nova", 3, &earlier, &state);
        let therapist = notes.therapist.join("\n");
        assert!(therapist.contains("Session 1 covered: Grief"));
        assert!(therapist.contains("Last time (session 2): topics: Perfectionism at work"));
        assert!(therapist.contains("reviewing the homework: Thought record after each mistake"));
        assert!(therapist.contains("At session 2 the scores were PHQ-9 11, GAD-7 10."));
        let patient = notes.patient.join("\n");
        assert!(patient.contains("Homework from last session: Thought record after each mistake"));
        assert!(
            patient.contains("memorial mass"),
            "the life event before session 3: {patient}"
        );
    }

    #[test]
    fn mood_moves_with_homework_and_life_events_and_stays_in_range() {
        let mut alicia = library_persona("alicia-rodriguez").unwrap().unwrap();
        let session = |number, mood, homework: &str| Remembered {
            session_number: number,
            summary: Some(SessionSummary {
                homework: [homework]
                    .iter()
                    .filter(|h| !h.is_empty())
                    .map(|h| h.to_string())
                    .collect(),
                ..summary("Work", "")
            }),
            disclosed_risk: false,
            mood,
        };
        let start = Mood { phq9: 12, gad7: 11 };
        // Engaged, seed 2 + session 2: done (-2); the life event before
        // session 2 adds 1.
        alicia.conversation.attitude = Attitude::Engaged;
        let state = patient_state(&alicia, 2, &[session(1, start, "Thought record")], 2);
        assert_eq!(state.homework, Some(HomeworkDone::Done));
        assert_eq!(state.mood, Mood { phq9: 11, gad7: 10 });
        // No homework set: only the life event counts.
        let state = patient_state(&alicia, 2, &[session(1, start, "")], 2);
        assert_eq!(state.homework, None);
        assert_eq!(state.mood, Mood { phq9: 13, gad7: 12 });

        alicia.conversation.attitude = Attitude::Resistant;
        alicia.life_events[0].mood_change = 5;
        let worst = Mood { phq9: 26, gad7: 20 };
        let state = patient_state(&alicia, 2, &[session(1, worst, "Thought record")], 1);
        assert_eq!(state.homework, Some(HomeworkDone::NotDone));
        assert_eq!(
            state.mood,
            Mood { phq9: 27, gad7: 21 },
            "capped at the maximum"
        );
        alicia.life_events[0].mood_change = -5;
        let best = Mood { phq9: 1, gad7: 0 };
        let state = patient_state(&alicia, 2, &[session(1, best, "")], 1);
        assert_eq!(state.mood, Mood { phq9: 0, gad7: 0 }, "floored at zero");
    }

    #[test]
    fn a_mood_rating_follows_the_phq9() {
        let rating = |phq9| Mood { phq9, gad7: 0 }.rating();
        assert_eq!((rating(0), rating(12), rating(27)), (10, 6, 0));
        assert_eq!(Mood { phq9: 12, gad7: 16 }.phq9_severity(), "moderate");
        assert_eq!(Mood { phq9: 12, gad7: 16 }.gad7_severity(), "severe");
    }

    #[test]
    fn attitude_decides_how_much_homework_gets_done() {
        assert_eq!(homework_done(Attitude::Resistant, 1), HomeworkDone::NotDone);
        assert_eq!(homework_done(Attitude::Engaged, 1), HomeworkDone::Done);
        assert_eq!(homework_done(Attitude::Ambivalent, 1), HomeworkDone::Partly);
    }
}
