//! The CBT session's structure as a plan the engine follows: which phase
//! each therapist turn is for, what the therapist is told about it, and,
//! for completion (base) models, the words the turn begins with, which the
//! model completes. Small base models do not keep a session's shape on
//! their own; a phase chosen by the engine and an opening in the phase's
//! words do (docs/sessions.md).

use crate::persona::Persona;
use crate::session::prompt::first_name;

/// What a therapist turn is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Welcome and a mood rating from 0 to 10.
    CheckIn,
    /// The bridge from the last session: how the homework went.
    HomeworkReview,
    /// What to work on today.
    Agenda,
    /// A recent situation and the automatic thoughts in it.
    Situation,
    /// The evidence for and against the thought.
    Evidence,
    /// A more balanced way of seeing it.
    Alternative,
    /// Going on with the work, when the session is long.
    Work,
    /// What was talked about today.
    Summary,
    /// A task for before the next session, agreed together.
    Homework,
    /// Feedback on the session, and goodbye.
    Feedback,
}

impl Phase {
    /// Its name in a turn's metadata.
    pub fn key(self) -> &'static str {
        match self {
            Phase::CheckIn => "check_in",
            Phase::HomeworkReview => "homework_review",
            Phase::Agenda => "agenda",
            Phase::Situation => "situation",
            Phase::Evidence => "evidence",
            Phase::Alternative => "alternative",
            Phase::Work => "work",
            Phase::Summary => "summary",
            Phase::Homework => "homework",
            Phase::Feedback => "feedback",
        }
    }
}

/// The phase of a therapist turn: `spoken` turns have been spoken in all
/// (both speakers), `therapist_turns` of them by the therapist, of a
/// session of at most `max_turns` turns; `review_homework` when the last
/// session set homework. The first therapist turn checks in; the last
/// three close the session (summary, homework, feedback); the ones between
/// go on opening it and work on a situation, in order.
pub fn phase(
    review_homework: bool,
    spoken: usize,
    therapist_turns: usize,
    max_turns: u32,
) -> Phase {
    let left = (max_turns as usize).saturating_sub(spoken);
    // The therapist speaks every other turn from this one on.
    match left.div_ceil(2) {
        0 | 1 => return Phase::Feedback,
        _ if therapist_turns == 0 => return Phase::CheckIn,
        2 => return Phase::Homework,
        3 => return Phase::Summary,
        _ => {}
    }
    let opening: &[Phase] = if review_homework {
        &[
            Phase::CheckIn,
            Phase::HomeworkReview,
            Phase::Agenda,
            Phase::Situation,
            Phase::Evidence,
            Phase::Alternative,
        ]
    } else {
        &[
            Phase::CheckIn,
            Phase::Agenda,
            Phase::Situation,
            Phase::Evidence,
            Phase::Alternative,
        ]
    };
    opening.get(therapist_turns).copied().unwrap_or(Phase::Work)
}

/// Who is in the session, for the notes and openings.
pub struct Names<'a> {
    pub therapist: &'a str,
    pub patient: &'a str,
    pub next_session: &'a str,
}

impl<'a> Names<'a> {
    pub fn new(therapist: &'a str, persona: &'a Persona, next_session: &'a str) -> Names<'a> {
        Names {
            therapist,
            patient: first_name(persona),
            next_session,
        }
    }
}

/// What the therapist is told this turn is for.
pub fn note(phase: Phase, names: &Names) -> String {
    let (t, p) = (names.therapist, names.patient);
    match phase {
        Phase::CheckIn => format!("Now {t} welcomes {p} and asks for a mood rating from 0 to 10."),
        Phase::HomeworkReview => {
            format!("Now {t} asks how the homework from the last session went.")
        }
        Phase::Agenda => {
            format!("Now {t} asks what {p} would like to focus on today, to set the agenda.")
        }
        Phase::Situation => format!(
            "Now {t} asks about a recent situation where this happened and what went through \
             {p}'s mind then."
        ),
        Phase::Evidence => {
            format!("Now {t} asks for the evidence for and against that thought.")
        }
        Phase::Alternative => {
            format!("Now {t} helps {p} find a more balanced way of seeing the situation.")
        }
        Phase::Work => format!("Now {t} goes on with the thought, using a CBT technique."),
        Phase::Summary => format!("Now {t} sums up what they talked about today."),
        Phase::Homework => {
            format!("Now {t} agrees with {p} on one small task to try before the next session.")
        }
        Phase::Feedback => format!(
            "Now {t} asks {p} for feedback on the session and says goodbye until {}.",
            names.next_session
        ),
    }
}

/// The words a completion model's therapist turn may begin with: a few
/// per phase (one per candidate, in turn), each ending where the model is
/// to go on. The work of a long session's middle has none.
pub fn openings(phase: Phase, session_number: u32, names: &Names) -> Vec<String> {
    let (t, p) = (names.therapist, names.patient);
    match phase {
        Phase::CheckIn if session_number > 1 => vec![
            format!("Welcome back, {p}. To start, on a scale from 0 to 10,"),
            format!("Good to see you again, {p}. How has your mood been this week"),
        ],
        Phase::CheckIn => vec![
            format!("Welcome, {p}. I'm {t}. To start, on a scale from 0 to 10,"),
            format!("Hello {p}, I'm {t}, and I'm glad you came. How has your mood been this week"),
        ],
        Phase::HomeworkReview => vec![
            "Last session we agreed on some homework.".into(),
            "Let's look back at the homework from last time.".into(),
        ],
        Phase::Agenda => vec![
            "What would you like to focus on today".into(),
            "Let's set our agenda for today.".into(),
        ],
        Phase::Situation => vec![
            "Think of a recent time when that happened. What went through your mind".into(),
            "Let's take a recent example. What was going through your mind when".into(),
        ],
        Phase::Evidence => vec![
            "What is the evidence for".into(),
            "Let's weigh that thought. What's the evidence".into(),
        ],
        Phase::Alternative => vec![
            "Is there another way of looking at".into(),
            "If a friend told you that, what would you".into(),
        ],
        // Said turn after turn in a long session, any fixed words would
        // make the turns alike (and the loop rule end the session).
        Phase::Work => vec![],
        Phase::Summary => vec![
            "To sum up, today we talked about".into(),
            "Let me recap what we've discussed today:".into(),
        ],
        Phase::Homework => vec![
            "For homework before our next session, could you try".into(),
            "Before we meet again, would you be willing to try".into(),
        ],
        Phase::Feedback => vec![
            "Before we finish, what was most helpful about today".into(),
            "How was this session for you".into(),
        ],
    }
}

/// The openings of a turn that follows up a disclosure the safety protocol
/// already answered this session: it acknowledges what was said and asks
/// whether the patient is safe now before the phase's words, and in the
/// middle of a long session it is that alone. (A follow-up never checks
/// in: the protocol turn it follows came first.) The resources come after
/// it, at the end of the turn. When the disclosure was the patient's answer
/// to the protocol turn's questions (`answers_protocol`), the safety
/// question is all it opens with: the phase's words would put a second
/// question after it, and a patient answers the last one asked.
pub fn follow_up_openings(
    phase: Phase,
    session_number: u32,
    names: &Names,
    answers_protocol: bool,
) -> Vec<String> {
    let p = names.patient;
    let heard = [
        format!(
            "Thank you for telling me, {p}. Are you safe right now? The numbers below are \
             there for you at any time."
        ),
        format!(
            "I hear you, {p}, and I'm glad you said it. Are you safe right now? The numbers \
             below are there for you at any time."
        ),
    ];
    if answers_protocol {
        return heard.to_vec();
    }
    prefixed(heard, openings(phase, session_number, names))
}

/// The openings of the turn after a safety protocol turn, which hears the
/// patient's answers to it. The detector read those answers with the
/// protocol's questions before them, so a yes to them is a disclosure
/// again and gets a protocol turn or a follow-up instead of this; like
/// every other unflagged patient turn, an answer it let pass goes on with
/// the session's plan. The turn thanks the patient, keeps the resources in
/// view and goes on with the phase's words. Left to itself here the
/// default model wandered off (a therapist turn in the patient's voice, a
/// goodbye in place of a summary), and the phase went undone. (It never
/// checks in: the protocol turn came first.)
pub fn after_protocol_openings(phase: Phase, session_number: u32, names: &Names) -> Vec<String> {
    let p = names.patient;
    // Nothing here says the protocol turn asked questions: the engine's
    // own protocol turn, written when the model's were unusable, asks none.
    let thanks = [
        format!(
            "Thank you for telling me how things are, {p}. The numbers I gave you are there \
             for you at any time."
        ),
        format!(
            "Thank you, {p}. Please keep the numbers I gave you close; they are there for you \
             at any time."
        ),
    ];
    prefixed(thanks, openings(phase, session_number, names))
}

/// The first acknowledgement before each opening; where the phase has no
/// openings, the acknowledgements alone, two of them, so that a second such
/// turn in a long session need not repeat the first word for word (the
/// guards reject a near-repeat of the speaker's own earlier turn).
fn prefixed(acknowledgements: [String; 2], openings: Vec<String>) -> Vec<String> {
    if openings.is_empty() {
        return acknowledgements.to_vec();
    }
    openings
        .into_iter()
        .map(|o| format!("{} {o}", acknowledgements[0]))
        .collect()
}

/// An opening followed by what the model wrote after it: a space between
/// them unless the model began with one or with punctuation.
pub fn join(opening: &str, continuation: &str) -> String {
    let joins_directly = continuation
        .chars()
        .next()
        .is_none_or(|c| c.is_whitespace() || matches!(c, '?' | '.' | ',' | '!' | ':' | ';'));
    let sep = if joins_directly { "" } else { " " };
    format!("{opening}{sep}{continuation}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library(id: &str) -> Persona {
        crate::persona::library_persona(id).unwrap().unwrap()
    }

    fn phases(review_homework: bool, max_turns: u32, first_speaker_patient: bool) -> Vec<Phase> {
        let start = usize::from(first_speaker_patient);
        (start..max_turns as usize)
            .step_by(2)
            .enumerate()
            .map(|(k, spoken)| phase(review_homework, spoken, k, max_turns))
            .collect()
    }

    #[test]
    fn after_a_protocol_turn_each_opening_thanks_the_patient_first() {
        let persona = library("alicia-rodriguez");
        let names = Names::new("Nova", &persona, "next week");
        for phase in [Phase::Agenda, Phase::Evidence, Phase::Work, Phase::Feedback] {
            let after = after_protocol_openings(phase, 1, &names);
            assert_eq!(after.len(), 2, "{phase:?}");
            for opening in &after {
                assert!(opening.starts_with("Thank you"), "{opening}");
                assert!(opening.contains("Alicia"), "{opening}");
                assert!(
                    opening.to_lowercase().contains("the numbers i gave you"),
                    "{opening}"
                );
            }
            // Two candidates never open alike, lest a second such turn
            // repeat the first.
            assert_ne!(after[0], after[1]);
        }
        assert!(
            after_protocol_openings(Phase::Feedback, 1, &names)[0]
                .ends_with("Before we finish, what was most helpful about today")
        );
    }

    #[test]
    fn a_follow_up_that_answers_the_protocol_asks_only_if_they_are_safe() {
        let persona = library("alicia-rodriguez");
        let names = Names::new("Nova", &persona, "next week");
        for opening in follow_up_openings(Phase::Summary, 1, &names, true) {
            assert!(opening.contains("Are you safe right now?"), "{opening}");
            assert_eq!(opening.matches('?').count(), 1, "{opening}");
            assert!(!opening.contains("sum up"), "{opening}");
        }
        for opening in follow_up_openings(Phase::Summary, 1, &names, false) {
            assert!(opening.contains("Are you safe right now? "), "{opening}");
            assert!(opening.contains("today we talked about") || opening.contains("recap"));
        }
    }

    #[test]
    fn a_first_session_of_sixteen_turns_has_every_phase_once_in_order() {
        use Phase::*;
        assert_eq!(
            phases(false, 16, true),
            [
                CheckIn,
                Agenda,
                Situation,
                Evidence,
                Alternative,
                Summary,
                Homework,
                Feedback
            ]
        );
    }

    #[test]
    fn homework_set_last_time_is_reviewed_and_long_sessions_go_on_working() {
        use Phase::*;
        assert_eq!(
            phases(true, 20, true),
            [
                CheckIn,
                HomeworkReview,
                Agenda,
                Situation,
                Evidence,
                Alternative,
                Work,
                Summary,
                Homework,
                Feedback
            ]
        );
    }

    #[test]
    fn a_short_session_checks_in_and_keeps_its_close() {
        use Phase::*;
        assert_eq!(phases(false, 6, true), [CheckIn, Homework, Feedback]);
        assert_eq!(
            phases(false, 9, false),
            [CheckIn, Agenda, Summary, Homework, Feedback]
        );
        assert_eq!(phases(false, 2, true), [Feedback]);
    }

    #[test]
    fn openings_vary_by_seed_and_name_the_people() {
        let persona = library("alicia-rodriguez");
        let names = Names::new("Nova", &persona, "Thursday");
        let choices = openings(Phase::CheckIn, 1, &names);
        let (a, b) = (&choices[0], &choices[1]);
        assert!(openings(Phase::Work, 1, &names).is_empty());
        assert_ne!(a, b);
        assert!(a.contains("Alicia") && a.contains("Nova"), "{a}");
        assert!(note(Phase::Feedback, &names).contains("Thursday"));
    }

    #[test]
    fn a_follow_up_acknowledges_the_disclosure_before_the_phase() {
        let persona = library("david-levin");
        let names = Names::new("Nova", &persona, "Thursday");
        for choice in follow_up_openings(Phase::Summary, 1, &names, false) {
            assert!(
                choice.starts_with("Thank you for telling me, David. Are you safe right now?"),
                "{choice}"
            );
        }
        assert!(
            follow_up_openings(Phase::Summary, 1, &names, false)[0]
                .ends_with("today we talked about")
        );
        // Where the phase has no words, two different acknowledgements.
        let work = follow_up_openings(Phase::Work, 1, &names, false);
        assert_eq!(work.len(), 2);
        assert_ne!(work[0], work[1]);
        for choice in &work {
            assert!(choice.contains("David") && choice.contains("Are you safe right now?"));
        }
    }

    #[test]
    fn an_opening_and_its_continuation_join_with_one_space() {
        assert_eq!(
            join("What is the evidence for", " that?"),
            "What is the evidence for that?"
        );
        assert_eq!(
            join("What is the evidence for", "that?"),
            "What is the evidence for that?"
        );
        assert_eq!(
            join("How was this session for you", "?"),
            "How was this session for you?"
        );
        assert_eq!(join("To sum up,", ""), "To sum up,");
    }
}
