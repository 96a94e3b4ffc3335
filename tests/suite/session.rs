//! The session engine under the scripted model: every termination reason,
//! the guards and their recorded repairs, the wrap-up nudge, the crisis
//! protocol, and Ctrl-C. Then one real session on the default model.

use super::util::run;
use cbtsim::lint::lint_transcript;
use cbtsim::model::scripted::ScriptedModel;
use cbtsim::model::{ChatModel, Completion, Conversation, ModelError, Prompt, Request};
use cbtsim::persona;
use cbtsim::session::prompt::TherapistProfile;
use cbtsim::session::{self, Agent, SessionConfig, SessionRecord, SessionSink};
use cbtsim::termination::{Budget, TerminationReason};
use cbtsim::{Speaker, Turn};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn config() -> SessionConfig {
    let mut config = SessionConfig::new(TherapistProfile {
        name: "Nova".into(),
        prompt: None,
        next_session: "Thursday 3 December 2026 at 14:00".into(),
    });
    config.candidates = 1;
    config.max_turns = 12;
    // The session structure (tested on its own below) would begin each
    // therapist turn with its phase's words; these tests script whole turns.
    config.structure = false;
    config
}

struct Run {
    record: SessionRecord,
    therapist: ScriptedModel,
    patient: ScriptedModel,
}

fn session_with(
    therapist: &[&str],
    patient: &[&str],
    config: &SessionConfig,
    interrupted: &AtomicBool,
    sink: &mut dyn SessionSink,
) -> Run {
    let persona = persona::library_persona("alicia-rodriguez")
        .unwrap()
        .unwrap();
    let therapist_model = ScriptedModel::new(therapist.iter().copied());
    let patient_model = ScriptedModel::new(patient.iter().copied());
    let agent = |model: &ScriptedModel| Agent {
        conversation: model.conversation().unwrap(),
        model: model.describe(),
        chat: model.chat(),
    };
    let (mut t, mut p) = (agent(&therapist_model), agent(&patient_model));
    let clock = || Duration::ZERO;
    let record = session::run(&persona, &mut t, &mut p, config, interrupted, &clock, sink).unwrap();
    Run {
        record,
        therapist: therapist_model,
        patient: patient_model,
    }
}

fn session(therapist: &[&str], patient: &[&str], config: &SessionConfig) -> Run {
    session_with(
        therapist,
        patient,
        config,
        &AtomicBool::new(false),
        &mut session::NoSink,
    )
}

fn reason(run: &Run) -> &TerminationReason {
    run.record.transcript.termination.as_ref().unwrap()
}

fn prompt_text(request: &Request) -> &str {
    match &request.prompt {
        Prompt::Text(text) => text,
        Prompt::Chat(_) => panic!("the scripted model gets text prompts"),
    }
}

const PATIENT: [&str; 6] = [
    "Hi, I'm Alicia. I've been feeling down since my grandmother died.",
    "About a 4 out of 10. Work has been a lot.",
    "I keep thinking I'll be found out as not good enough.",
    "My manager actually praised my last release.",
    "Yes, I can write down the thoughts this week.",
    "It helped to slow down. Thank you.",
];

#[test]
fn a_natural_end_after_the_minimum_turns() {
    let therapist = [
        "Welcome, Alicia. How would you rate your mood from 0 to 10?",
        "What would you like to focus on today?",
        "What evidence supports that thought?",
        "What does that tell you about the thought? Shall we make it homework?",
        "Good work today. See you next week. Take care.",
    ];
    let run = session(&therapist, &PATIENT, &config());
    assert_eq!(
        *reason(&run),
        TerminationReason::NaturalEnd {
            phrase: r"\btake care\b".into(),
            speaker: Some(Speaker::Therapist)
        }
    );
    assert_eq!(run.record.transcript.turns.len(), 10);
    assert_eq!(lint_transcript(&run.record.transcript), vec![]);
    insta::assert_snapshot!(cbtsim::text_format::render(&run.record.transcript));
}

#[test]
fn no_end_before_the_minimum_or_mid_turn() {
    let therapist = [
        "Hello Alicia, take care.",
        "Take care of yourself this week. Now, let's look at your sleep. What time do you go to bed?",
        "And what goes through your mind then?",
        "Take care of yourself. How does that sit with you?",
        "Thank you for today, goodbye.",
    ];
    let run = session(&therapist, &PATIENT, &config());
    assert_eq!(
        run.record.transcript.turns.len(),
        10,
        "ended at the fifth therapist turn"
    );
    assert_eq!(
        *reason(&run),
        TerminationReason::NaturalEnd {
            phrase: r"\bgoodbye\b".into(),
            speaker: Some(Speaker::Therapist)
        }
    );
}

#[test]
fn max_turns_with_a_wrap_up_nudge_to_both_agents() {
    let mut config = config();
    config.max_turns = 6;
    config.wrap_up_turns = 2;
    let run = session(
        &["How are you?", "Tell me more?", "What helped?"],
        &PATIENT,
        &config,
    );
    assert_eq!(*reason(&run), TerminationReason::MaxTurns { limit: 6 });
    let nudged = |requests: Vec<Request>| -> Vec<bool> {
        requests
            .iter()
            .map(|r| prompt_text(r).contains("The session is nearly over"))
            .collect()
    };
    // Turns 5 (patient) and 6 (therapist) are the last two.
    assert_eq!(nudged(run.patient.requests()), [false, false, true]);
    assert_eq!(nudged(run.therapist.requests()), [false, false, true]);
    let last = run.therapist.requests().pop().unwrap();
    assert!(prompt_text(&last).contains("Thursday 3 December 2026 at 14:00"));
    assert!(prompt_text(&last).ends_with("Therapist:"));
}

#[test]
fn the_patient_may_leave() {
    let run = session(
        &["Welcome. How is your mood?", "What brings you here?"],
        &["Hi.", "Low, I guess.", "Actually, I need to go now."],
        &config(),
    );
    assert_eq!(
        *reason(&run),
        TerminationReason::PatientEnded {
            reason: "said \"I need to go now.\"".into()
        }
    );
}

#[test]
fn imminent_risk_gets_the_protocol_turn_and_escalates() {
    let run = session(
        &[
            "Welcome. How is your mood?",
            "I'm really glad you told me. Are you safe right now?",
        ],
        &["Hi.", "I've decided to end my life tonight."],
        &config(),
    );
    assert_eq!(
        *reason(&run),
        TerminationReason::SafetyEscalation {
            turn: 3,
            category: "suicidal intent".into()
        }
    );
    let events = &run.record.safety_events;
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].turn, events[0].protocol_turn), (3, Some(4)));
    let protocol = &run.record.transcript.turns[3];
    assert!(
        protocol.text.contains("988") && protocol.text.contains("911"),
        "{}",
        protocol.text
    );
    assert!(
        protocol
            .meta
            .repairs
            .iter()
            .any(|r| r.kind == "safety_resources")
    );
    let asked = run.therapist.requests();
    assert!(prompt_text(&asked[1]).contains("SAFETY PROTOCOL"));
    assert!(!prompt_text(&asked[0]).contains("SAFETY PROTOCOL"));
}

#[test]
fn high_risk_gets_the_protocol_and_the_session_goes_on() {
    let mut config = config();
    config.max_turns = 6;
    let run = session(
        &[
            "How has the week been?",
            "Thank you for telling me. If you are thinking about ending your life or are in danger, please contact the 988 Suicide & Crisis Lifeline (call or text 988) now, or call 911 if you are in immediate danger. Please also reach out to a doctor, a mental health professional or someone you trust today; you do not have to carry this alone. Are you safe right now?",
            "What would help tonight?",
        ],
        &[
            "Hard.",
            "I've been thinking about suicide a lot lately.",
            "I'm safe, I'll call my sister.",
        ],
        &config,
    );
    assert_eq!(*reason(&run), TerminationReason::MaxTurns { limit: 6 });
    assert_eq!(run.record.safety_events[0].level, cbtsim::RiskLevel::High);
    assert!(
        run.record.transcript.turns[3].meta.repairs.is_empty(),
        "the resources were already there"
    );
}

#[test]
fn budgets_end_the_session() {
    let mut config = config();
    config.token_budget = Some(20);
    let run = session(&["How are you today, Alicia?"], &PATIENT, &config);
    assert!(matches!(
        reason(&run),
        TerminationReason::BudgetExhausted {
            budget: Budget::Tokens { limit: 20, .. }
        }
    ));

    let mut config = self::config();
    config.time_budget = Some(Duration::from_secs(60));
    let persona = persona::library_persona("alicia-rodriguez")
        .unwrap()
        .unwrap();
    let (t, p) = (
        ScriptedModel::new(["How are you?"]),
        ScriptedModel::new(PATIENT),
    );
    let agent = |m: &ScriptedModel| Agent {
        conversation: m.conversation().unwrap(),
        model: m.describe(),
        chat: false,
    };
    let (mut t, mut p) = (agent(&t), agent(&p));
    // Each reading of the clock moves it on 10 s: the engine reads it
    // before each turn and at the start and end of each reply.
    let calls = std::cell::Cell::new(0u64);
    let clock = || {
        calls.set(calls.get() + 1);
        Duration::from_secs(10 * calls.get())
    };
    let record = session::run(
        &persona,
        &mut t,
        &mut p,
        &config,
        &AtomicBool::new(false),
        &clock,
        &mut session::NoSink,
    )
    .unwrap();
    assert_eq!(
        record.transcript.turns.len(),
        2,
        "turns start at 10 s and 40 s; at 70 s the budget is spent"
    );
    assert_eq!(
        record.transcript.termination,
        Some(TerminationReason::BudgetExhausted {
            budget: Budget::Seconds {
                used: 70,
                limit: 60
            }
        })
    );
    // A turn's time is the injected clock's, not the wall clock's.
    for turn in &record.transcript.turns {
        assert_eq!(turn.meta.elapsed_ms, Some(10_000));
    }
}

#[test]
fn a_speaker_who_only_repeats_ends_the_session_in_a_loop() {
    let same = "I just keep feeling like nothing I do at work is ever good enough for anyone.";
    let run = session(
        &["Tell me more.", "And then?", "What else?"],
        &[same, same, same, same, same, same],
        &config(),
    );
    assert_eq!(
        *reason(&run),
        TerminationReason::ConversationLoop {
            turn: 3,
            earlier_turn: 1
        }
    );
    assert_eq!(
        run.record.usage.rejected_replies, 4,
        "one candidate and three more attempts"
    );
}

struct Unreachable;
impl ChatModel for Unreachable {
    fn describe(&self) -> String {
        "unreachable".into()
    }
    fn conversation(&self) -> Result<Box<dyn Conversation>, ModelError> {
        Ok(Box::new(Unreachable))
    }
}
impl Conversation for Unreachable {
    fn stream(&mut self, _: &Request, _: &mut dyn FnMut(&str)) -> Result<Completion, ModelError> {
        Err(ModelError::Unreachable("connection refused".into()))
    }
}

#[test]
fn a_failing_backend_ends_the_session_and_keeps_what_was_said() {
    let persona = persona::library_persona("alicia-rodriguez")
        .unwrap()
        .unwrap();
    let patient_model = ScriptedModel::new(PATIENT);
    let mut patient = Agent {
        conversation: patient_model.conversation().unwrap(),
        model: "scripted".into(),
        chat: false,
    };
    let mut therapist = Agent {
        conversation: Unreachable.conversation().unwrap(),
        model: "unreachable".into(),
        chat: true,
    };
    let clock = || Duration::ZERO;
    let record = session::run(
        &persona,
        &mut therapist,
        &mut patient,
        &config(),
        &AtomicBool::new(false),
        &clock,
        &mut session::NoSink,
    )
    .unwrap();
    assert_eq!(record.transcript.turns.len(), 1);
    assert_eq!(
        record.transcript.termination,
        Some(TerminationReason::BackendFailure {
            error: "cannot reach the model server: connection refused".into()
        })
    );
}

/// Sets the interrupt flag once `after` turns have been spoken, as Ctrl-C does.
struct CtrlCAfter<'a> {
    after: usize,
    seen: usize,
    flag: &'a AtomicBool,
}
impl SessionSink for CtrlCAfter<'_> {
    fn turn(&mut self, _: &Turn) -> Result<(), String> {
        self.seen += 1;
        if self.seen == self.after {
            self.flag.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[test]
fn ctrl_c_keeps_the_transcript_so_far_and_marks_it() {
    let flag = AtomicBool::new(false);
    let mut sink = CtrlCAfter {
        after: 3,
        seen: 0,
        flag: &flag,
    };
    let run = session_with(
        &["How are you?", "Go on?"],
        &PATIENT,
        &config(),
        &flag,
        &mut sink,
    );
    assert_eq!(
        *reason(&run),
        TerminationReason::Interrupted { after_turns: 3 }
    );
    assert_eq!(run.record.transcript.turns.len(), 3);
}

#[test]
fn guards_repair_or_replace_bad_replies_and_record_it() {
    let mut config = config();
    config.max_turns = 4;
    let run = session(
        &[
            "Therapist: *smiles warmly* Welcome, Alicia. How would you rate your mood?\nAlicia: About a 4.",
            "See you on [insert date and time].",
            "Let's meet again on Thursday. What would you like to work on today?",
        ],
        &[
            "Hi, I'm Alicia. I feel low. I can't focus. I cancel plans. I work late. I miss my grandmother. I'm tired. I'm lonely. I'm stuck.",
            "",
            "Work, I think, because my manager keeps",
        ],
        &config,
    );
    let turns = &run.record.transcript.turns;
    let kinds = |i: usize| -> Vec<&str> {
        turns[i]
            .meta
            .repairs
            .iter()
            .map(|r| r.kind.as_str())
            .collect()
    };
    // Verbose style: at most 8 sentences.
    assert_eq!(turns[0].text.matches('.').count(), 8);
    assert_eq!(kinds(0), ["too_long"]);
    assert_eq!(
        turns[1].text,
        "Welcome, Alicia. How would you rate your mood?"
    );
    assert_eq!(kinds(1), ["role_leak", "role_leak", "stage_direction"]);
    // The empty reply was rejected, then the cut-off one trimmed.
    assert_eq!(turns[2].text, "Work, I think, because my manager keeps.");
    assert_eq!(kinds(2), ["truncated_turn"]);
    assert_eq!(turns[2].meta.candidates, Some(2));
    // The placeholder reply was rejected for the next one.
    assert_eq!(
        turns[3].text,
        "Let's meet again on Thursday. What would you like to work on today?"
    );
    assert_eq!(turns[3].meta.candidates, Some(2));
    assert_eq!(run.record.usage.rejected_replies, 2);
    assert_eq!(lint_transcript(&run.record.transcript), vec![]);
}

/// Odd model output, one candidate per turn, as a new user's server gave
/// it: template tokens and hidden characters are removed and recorded;
/// a recital of the speaker's own description and a reply stuck repeating
/// a word are rejected for the next candidate. What is kept lints clean.
#[test]
fn odd_model_output_never_reaches_the_transcript_unrepaired() {
    let persona = persona::library_persona("alicia-rodriguez")
        .unwrap()
        .unwrap();
    let config = {
        let mut c = config();
        c.max_turns = 4;
        c
    };
    let told = cbtsim::session::prompt::instructions(
        Speaker::Patient,
        &cbtsim::session::prompt::PromptContext {
            persona: &persona,
            therapist: &config.therapist,
            session_number: 1,
            turns: &[],
            notes: &[],
            turn_notes: &[],
            opening: None,
        },
    );
    let recital: String = told
        .split_whitespace()
        .take(40)
        .collect::<Vec<_>>()
        .join(" ");
    let sys = format!("<<SYS>> {recital}");
    let stuck = format!("I feel very {}very.", "very ".repeat(150));
    let run = session(
        &[
            "[/INST] Welcome, Alicia. How has your week\u{200B} been?",
            &stuck,
            "What would you like to focus on today?\x1b[0m",
        ],
        &[
            &recital,
            &sys,
            "It's been hard since my grandmother \u{202E}died.",
            "Work, mostly. <end_of_turn>",
        ],
        &config,
    );
    let turns = &run.record.transcript.turns;
    let texts: Vec<&str> = turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "It's been hard since my grandmother died.",
            "Welcome, Alicia. How has your week been?",
            "Work, mostly.",
            "What would you like to focus on today?",
        ]
    );
    let kinds: Vec<Vec<&str>> = turns
        .iter()
        .map(|t| t.meta.repairs.iter().map(|r| r.kind.as_str()).collect())
        .collect();
    assert_eq!(
        kinds,
        [
            vec!["hidden_character"],
            vec!["hidden_character", "template_token"],
            vec!["template_token"],
            vec!["hidden_character"],
        ]
    );
    // The recital, the recital after <<SYS>>, and the stuck reply.
    assert_eq!(turns[0].meta.candidates, Some(3));
    assert_eq!(turns[3].meta.candidates, Some(2));
    assert_eq!(run.record.usage.rejected_replies, 3);
    assert_eq!(lint_transcript(&run.record.transcript), vec![]);
}

#[test]
fn the_patient_prompt_carries_the_persona_and_the_therapist_prompt_the_structure() {
    let mut config = config();
    config.max_turns = 2;
    let run = session(&["How are you?"], &PATIENT, &config);
    let patient = prompt_text(&run.patient.requests()[0]).to_string();
    assert!(patient.contains("Alicia Rodriguez, 29"));
    assert!(patient.contains("at most 8 sentences"));
    assert!(patient.contains("gradually"));
    // This turn's note (here: the wrap-up, 2 turns being all) comes after
    // the transcript, so that it does not make the model read the
    // transcript again when it comes or changes.
    let wrap_up = patient
        .find("Note: The session is nearly over (2 turns left)")
        .unwrap();
    assert!(patient.find("Session Number: 1\n").unwrap() < wrap_up);
    assert!(patient.ends_with("\n\nPatient:"));
    assert!(
        patient.contains("This past week felt like PHQ-9 12 (moderate depression), GAD-7 11"),
        "session 1 starts from the persona's baseline"
    );
    let therapist = prompt_text(&run.therapist.requests()[0]).to_string();
    assert!(therapist.contains("The therapist is Nova"));
    assert!(therapist.contains("mood check-in with a rating from 0 to 10"));
    assert!(therapist.contains("one main question at a time"));
    let spoken = "Patient: Hi, I'm Alicia. I've been feeling down since my grandmother died.\n";
    assert!(
        therapist.find(spoken).unwrap()
            < therapist.find("Note: The session is nearly over").unwrap()
    );
    assert!(therapist.ends_with("\n\nTherapist:"));
    assert!(
        !therapist.contains("grandmother died four months ago"),
        "the therapist does not see the persona"
    );
}

#[test]
fn the_structure_gives_each_therapist_turn_its_phase_and_opening() {
    let mut config = config();
    config.structure = true;
    config.max_turns = 16;
    let therapist = [
        " how would you rate your mood?",
        "?",
        " the deadline?",
        " that thought?",
        " it?",
        " your grief and your work.",
        " writing down one thought a day?",
        "? Goodbye until Thursday.",
    ];
    let patient = [
        "Hi. Grief and work stress, mostly, and perfectionism.",
        "About a 4 out of 10.",
        "My team missed a sprint deadline and my manager asked for a call.",
        "I thought I'm going to be demoted.",
        "Well, my manager praised my last release.",
        "Maybe I'm not about to lose my job.",
        "Yes, that sounds useful.",
        "Yes, I'll write them down.",
    ];
    let run = session(&therapist, &patient, &config);
    let said: Vec<&cbtsim::Turn> = run
        .record
        .transcript
        .turns
        .iter()
        .filter(|t| t.speaker == Speaker::Therapist)
        .collect();
    assert_eq!(said.len(), 8);
    assert_eq!(
        said[0].text,
        "Welcome, Alicia. I'm Nova. To start, on a scale from 0 to 10, how would you rate your mood?"
    );
    assert_eq!(
        said[0].meta.opening.as_deref(),
        Some("Welcome, Alicia. I'm Nova. To start, on a scale from 0 to 10,")
    );
    assert_eq!(said[0].meta.phase.as_deref(), Some("check_in"));
    assert_eq!(said[7].meta.phase.as_deref(), Some("feedback"));
    // Each patient turn records the fact its prompt asked for.
    let first_patient = &run.record.transcript.turns[0];
    assert!(
        first_patient
            .meta
            .fact
            .as_deref()
            .unwrap()
            .starts_with("what brings Alicia to therapy"),
        "{:?}",
        first_patient.meta
    );
    assert_eq!(said[1].text, "What would you like to focus on today?");
    assert!(
        said[5]
            .text
            .starts_with("To sum up, today we talked about your grief")
    );
    assert!(
        said[7]
            .text
            .starts_with("Before we finish, what was most helpful about today?")
    );
    // The model is told the phase and goes on from the opening.
    let prompts = run.therapist.requests();
    let first = prompt_text(&prompts[0]);
    assert!(first.contains("Note: Now Nova welcomes Alicia and asks for a mood rating"));
    assert!(
        first.ends_with("Therapist: Welcome, Alicia. I'm Nova. To start, on a scale from 0 to 10,")
    );
    assert!(
        !prompt_text(&prompts[7]).contains("The session is nearly over"),
        "the phases close the session themselves"
    );
    let metrics = cbtsim::eval::metrics::measure(&run.record.transcript, 0);
    let present: Vec<&str> = metrics
        .elements
        .iter()
        .filter(|e| e.present)
        .map(|e| e.element.as_str())
        .collect();
    // All but the homework review, which a first session has none of.
    assert_eq!(
        present,
        [
            "mood_check",
            "agenda",
            "technique",
            "summary",
            "homework",
            "feedback"
        ]
    );
    assert_eq!(lint_transcript(&run.record.transcript), vec![]);

    // Without it, the turns are the model's alone.
    config.structure = false;
    let run = session(&therapist, &patient, &config);
    let first = &run.record.transcript.turns[1];
    assert_eq!(first.text, "how would you rate your mood?");
    assert_eq!(first.meta.opening, None);
    assert!(!prompt_text(&run.therapist.requests()[0]).contains("Note: Now Nova"));
}

#[test]
fn a_chat_therapist_is_told_the_phase_and_given_no_opening() {
    let persona = persona::library_persona("alicia-rodriguez")
        .unwrap()
        .unwrap();
    let mut config = config();
    config.structure = true;
    config.max_turns = 4;
    let therapist_model =
        ScriptedModel::new(["How are you feeling today, from 0 to 10?", "Thanks."]);
    let patient_model = ScriptedModel::new(["Hello. It's been a hard month.", "A four."]);
    let mut therapist = Agent {
        conversation: therapist_model.conversation().unwrap(),
        model: "chat".into(),
        chat: true,
    };
    let mut patient = Agent {
        conversation: patient_model.conversation().unwrap(),
        model: patient_model.describe(),
        chat: false,
    };
    let record = session::run(
        &persona,
        &mut therapist,
        &mut patient,
        &config,
        &AtomicBool::new(false),
        &|| Duration::ZERO,
        &mut session::NoSink,
    )
    .unwrap();
    let turn = &record.transcript.turns[1];
    assert_eq!(turn.text, "How are you feeling today, from 0 to 10?");
    assert_eq!(turn.meta.opening, None);
    assert_eq!(turn.meta.phase.as_deref(), Some("check_in"));
    let Prompt::Chat(messages) = &therapist_model.requests()[0].prompt else {
        panic!("a chat agent gets chat prompts")
    };
    assert!(messages[0].content.contains("Now Nova welcomes Alicia"));
}

#[test]
fn the_safety_protocol_comes_before_the_structure() {
    let mut config = config();
    config.structure = true;
    config.max_turns = 6;
    let run = session(
        &[
            " I hear how hard this is. Are you having thoughts of ending your life?",
            " calling your sister each evening?",
            "? Goodbye until Thursday.",
        ],
        &[
            "I've been giving my things away and I wrote goodbye letters.",
            "No. My sister is staying with me this week.",
            "Yes, I can do that.",
        ],
        &config,
    );
    let turns = &run.record.transcript.turns;
    assert_eq!(turns.len(), 6, "{:?}", run.record.safety_events);
    let protocol = &turns[1];
    assert_eq!(protocol.meta.opening, None, "{}", protocol.text);
    assert_eq!(protocol.meta.phase, None);
    let prompt = prompt_text(&run.therapist.requests()[0]).to_string();
    assert!(!prompt.contains("Note: Now Nova"), "{prompt}");
    assert!(prompt.ends_with("Therapist:"));
    // The turn after the protocol turn hears the answers: it thanks the
    // patient for them, keeps the resources in view, and goes back to its
    // phase with the phase's words.
    let after = &turns[3];
    let opening = "Thank you for telling me how things are, Alicia. The numbers I gave you are \
                   there for you at any time. For homework before our next session, could you \
                   try";
    assert_eq!(after.meta.opening.as_deref(), Some(opening));
    assert_eq!(
        after.text,
        format!("{opening} calling your sister each evening?")
    );
    assert_eq!(after.meta.phase.as_deref(), Some("homework"));
    assert!(
        prompt_text(&run.therapist.requests()[1]).contains("Note: Now Nova agrees with Alicia")
    );
    // Then the structure's words come back.
    assert!(
        turns[5]
            .text
            .starts_with("Before we finish, what was most helpful about today?")
    );
    assert_eq!(turns[5].meta.phase.as_deref(), Some("feedback"));
}

const FOLLOWED_UP_THERAPIST: [&str; 5] = [
    " I hear how hard this is. Are you having thoughts of ending your life?",
    " most this week?",
    " your week and your sister.",
    " calling your sister each evening?",
    "? Goodbye until Thursday.",
];
const FOLLOWED_UP_PATIENT: [&str; 5] = [
    "I've been thinking about suicide a lot lately.",
    "No. My sister is staying with me this week.",
    "I still think about suicide most days.",
    "Yes, that's right.",
    "Yes, I can do that.",
];
const FOLLOW_UP_OPENING: &str = "Thank you for telling me, Alicia. Are you safe right now? The \
                                 numbers below are there for you at any time. To sum up, today \
                                 we talked about";

fn structured(max_turns: u32) -> SessionConfig {
    let mut config = config();
    config.structure = true;
    config.max_turns = max_turns;
    config
}

#[test]
fn the_same_disclosure_again_gets_a_follow_up_within_the_session() {
    let config = structured(10);
    let run = session(&FOLLOWED_UP_THERAPIST, &FOLLOWED_UP_PATIENT, &config);
    let turns = &run.record.transcript.turns;
    assert_eq!(turns.len(), 10, "{:?}", run.record.transcript.termination);
    let events = &run.record.safety_events;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!((events[0].turn, events[0].protocol_turn), (1, Some(2)));
    assert_eq!((events[1].turn, events[1].protocol_turn), (5, Some(6)));
    // The first disclosure sets the session aside for the protocol.
    assert_eq!(turns[1].meta.phase, None);
    assert_eq!(turns[1].meta.safety.as_deref(), Some("protocol"));
    assert!(prompt_text(&run.therapist.requests()[0]).contains("SAFETY PROTOCOL"));
    // The patient answered with no new alarm: the next turn thanks them and
    // sets the agenda, in the plan's words.
    assert_eq!(turns[3].meta.safety, None);
    assert_eq!(turns[3].meta.phase.as_deref(), Some("agenda"));
    assert!(
        turns[3]
            .text
            .starts_with("Thank you for telling me how things are, Alicia.")
            && turns[3]
                .text
                .ends_with("What would you like to focus on today most this week?"),
        "{}",
        turns[3].text
    );
    // The same again is followed up within the session's phase: it is
    // acknowledged, the patient is asked if they are safe, the resources
    // are given, and the structure goes on.
    let prompt = prompt_text(&run.therapist.requests()[2]).to_string();
    assert!(
        prompt.contains("SAFETY FOLLOW-UP") && !prompt.contains("SAFETY PROTOCOL"),
        "{prompt}"
    );
    let follow_up = &turns[5];
    assert_eq!(follow_up.meta.phase.as_deref(), Some("summary"));
    assert_eq!(follow_up.meta.safety.as_deref(), Some("follow_up"));
    assert!(
        follow_up
            .text
            .starts_with(&format!("{FOLLOW_UP_OPENING} your week and your sister.")),
        "{}",
        follow_up.text
    );
    assert!(follow_up.text.contains("988"), "{}", follow_up.text);
    assert!(
        follow_up
            .meta
            .repairs
            .iter()
            .any(|r| r.kind == "safety_resources")
    );
    // The turn after a follow-up has its fixed words again.
    assert!(
        turns[7]
            .text
            .starts_with("For homework before our next session, could you try calling"),
        "{}",
        turns[7].text
    );
}

#[test]
fn a_follow_up_that_answers_the_protocol_only_asks_if_they_are_safe() {
    let run = session(
        &[
            " I hear how hard this is. Are you having thoughts of ending your life?",
            " I'm here with you.",
            " calling your sister each evening?",
            "? Goodbye until Thursday.",
        ],
        &[
            "I've been thinking about suicide a lot lately.",
            "I still think about suicide most days.",
            "Yes, I'm safe. My sister is here with me.",
            "Yes, I can do that.",
        ],
        &structured(8),
    );
    let turns = &run.record.transcript.turns;
    assert_eq!(turns.len(), 8, "{:?}", run.record.transcript.termination);
    assert_eq!(turns[1].meta.safety.as_deref(), Some("protocol"));
    // The answer to the protocol's question says the same again: the
    // follow-up asks whether they are safe, and nothing of the plan after
    // it, though its phase is kept.
    let follow_up = &turns[3];
    assert_eq!(follow_up.meta.safety.as_deref(), Some("follow_up"));
    assert_eq!(follow_up.meta.phase.as_deref(), Some("summary"));
    assert!(!follow_up.text.contains("sum up"), "{}", follow_up.text);
    assert!(
        follow_up.text.starts_with(
            "Thank you for telling me, Alicia. Are you safe right now? The numbers below are \
             there for you at any time. I'm here with you."
        ),
        "{}",
        follow_up.text
    );
    assert_eq!(follow_up.text.matches('?').count(), 1, "{}", follow_up.text);
    assert!(follow_up.text.contains("988"), "{}", follow_up.text);
    // After a follow-up the plan's own words come back.
    assert!(
        turns[5]
            .text
            .starts_with("For homework before our next session, could you try calling"),
        "{}",
        turns[5].text
    );
}

#[test]
fn a_follow_up_is_owed_the_same_after_a_resume() {
    let config = structured(10);
    let live = session(&FOLLOWED_UP_THERAPIST, &FOLLOWED_UP_PATIENT, &config);
    let persona = persona::library_persona("alicia-rodriguez")
        .unwrap()
        .unwrap();
    // Stopped after the patient's second disclosure, and after the
    // follow-up: what comes next is what came live.
    // Stopped after the answer to the protocol turn too: the turn after it
    // opens the same.
    for (stored, therapist, patient) in [(3, 1, 2), (5, 2, 3), (6, 3, 3)] {
        let t = ScriptedModel::new(FOLLOWED_UP_THERAPIST[therapist..].iter().copied());
        let p = ScriptedModel::new(FOLLOWED_UP_PATIENT[patient..].iter().copied());
        let agent = |model: &ScriptedModel| Agent {
            conversation: model.conversation().unwrap(),
            model: model.describe(),
            chat: model.chat(),
        };
        let clock = || Duration::ZERO;
        let record = session::resume(
            &persona,
            &mut agent(&t),
            &mut agent(&p),
            &config,
            &live.record.transcript.turns[..stored],
            &AtomicBool::new(false),
            &clock,
            &mut session::NoSink,
        )
        .unwrap();
        let texts = |r: &SessionRecord| -> Vec<String> {
            r.transcript.turns.iter().map(|t| t.text.clone()).collect()
        };
        assert_eq!(
            texts(&record),
            texts(&live.record),
            "resumed after {stored}"
        );
        assert_eq!(record.safety_events, live.record.safety_events);
        assert_eq!(
            record.transcript.turns[5].meta.safety.as_deref(),
            Some("follow_up")
        );
    }
}

#[test]
fn a_lower_rung_of_the_same_family_gets_a_follow_up() {
    let run = session(
        &[
            " I hear how hard this is. Are you having thoughts of ending your life?",
            " What would you like to focus on today?",
            " the sleep.",
        ],
        &[
            "I've been thinking about suicide a lot lately.",
            "No. My sister is staying with me this week.",
            "Some nights I wish I could go to sleep and never wake up.",
            "Okay.",
        ],
        &structured(8),
    );
    let events = &run.record.safety_events;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].level, cbtsim::RiskLevel::Low, "{events:?}");
    assert_eq!(
        run.record.transcript.turns[5].meta.safety.as_deref(),
        Some("follow_up")
    );
}

#[test]
fn a_disclosure_at_a_higher_level_or_of_another_kind_gets_the_protocol_again() {
    let run = session(
        &[
            " I hear how hard this is. Are you having thoughts of ending your life?",
            " Thank you for telling me. Have you thought about how you would do it?",
            " Thank you for telling me. Do you have the pills with you now?",
            " I'm so sorry. Are you safe at home right now?",
            " Thank you. Is anyone else at home with you?",
        ],
        &[
            "I wish I could just go to sleep and never wake up.",
            "No. But I've been thinking about suicide a lot lately.",
            "I've thought about taking all my pills at once.",
            "My partner hits me when he's drunk.",
            "He hits my children too when he's drunk.",
            "I'm at my sister's place.",
        ],
        &structured(12),
    );
    let events = &run.record.safety_events;
    let categories: Vec<&str> = events.iter().map(|e| e.category.as_str()).collect();
    assert_eq!(
        categories,
        [
            "wish_to_be_dead",
            "suicidal_thoughts",
            "ideation_with_method",
            "intimate_partner_violence",
            "child_abuse"
        ],
        "{events:?}"
    );
    let requests = run.therapist.requests();
    for (i, request) in requests.iter().take(5).enumerate() {
        let prompt = prompt_text(request);
        assert!(prompt.contains("SAFETY PROTOCOL"), "turn {i}: {prompt}");
        assert!(!prompt.contains("SAFETY FOLLOW-UP"), "turn {i}: {prompt}");
    }
    let answers: Vec<Option<&str>> = run.record.transcript.turns[..10]
        .iter()
        .filter(|t| t.speaker == Speaker::Therapist)
        .map(|t| t.meta.safety.as_deref())
        .collect();
    assert_eq!(answers, [Some("protocol"); 5]);
}

#[test]
fn a_patient_reply_in_the_words_of_their_own_story_wins() {
    const VAGUE: &str = "I am not really sure what to say today, honestly.";
    const OWN: &str = "I keep thinking about my grandmother and her garden.";
    let first_turn = |grounding: bool| {
        let mut config = config();
        config.max_turns = 1;
        config.candidates = 2;
        config.grounding = grounding;
        let run = session(&[], &[VAGUE, OWN], &config);
        run.record.transcript.turns[0].text.clone()
    };
    assert_eq!(first_turn(true), OWN);
    // Without grounding the first usable reply stands.
    assert_eq!(first_turn(false), VAGUE);
}

#[test]
fn the_patient_is_asked_for_one_untold_fact_and_a_reply_that_tells_it_wins() {
    let mut config = config();
    config.max_turns = 3;
    config.candidates = 2;
    let run = session(
        &["What brings you here?", "And how is your mood?"],
        &[
            "I am not quite sure what to say today.",
            "It's grief and work stress, mostly, and perfectionism.",
            "I'm not sure what to say to that either, honestly.",
            "My team missed a sprint deadline last week.",
        ],
        &config,
    );
    let spoken: Vec<&str> = run
        .record
        .transcript
        .turns
        .iter()
        .filter(|t| t.speaker == Speaker::Patient)
        .map(|t| t.text.as_str())
        .collect();
    assert_eq!(
        spoken,
        [
            "It's grief and work stress, mostly, and perfectionism.",
            "My team missed a sprint deadline last week."
        ]
    );
    let prompts = run.patient.requests();
    assert!(prompt_text(&prompts[0]).contains(
        "Note: In this reply Alicia may bring up, in their own words and only if it fits: what \
         brings Alicia to therapy: grief"
    ));
    // The first fact was told; the next one is asked for.
    assert!(
        prompt_text(&prompts[2]).contains("only if it fits: Her team missed a sprint deadline")
    );
}

#[test]
fn a_real_session_on_the_default_model() {
    let _real_model = super::util::real_model();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("session.txt");
    let (code, stdout, stderr) = run(&[
        "run",
        "--persona",
        "samuel-okafor",
        "--max-turns",
        "8",
        "--seed",
        "4",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let record: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(!record["termination"]["reason"].is_null());
    assert!(record["turns"].as_array().unwrap().len() >= 2);
    assert_eq!(record["turns"][0]["speaker"], "patient");
    assert!(
        record["turns"][0]["meta"]["model"]
            .as_str()
            .unwrap()
            .starts_with("local:")
    );
    // The text form parses back and lints clean.
    let (code, parsed, _) = run(&["transcript", "parse", out.to_str().unwrap()]);
    assert_eq!(code, 0);
    let parsed: serde_json::Value = serde_json::from_str(&parsed).unwrap();
    assert_eq!(
        parsed["turns"].as_array().unwrap().len(),
        record["turns"].as_array().unwrap().len()
    );
    assert_eq!(
        parsed["termination"]["reason"],
        record["termination"]["reason"]
    );
    let (code, findings, _) = run(&["transcript", "lint", out.to_str().unwrap()]);
    assert_eq!((code, findings.as_str()), (0, ""));
}

#[test]
fn run_takes_its_settings_from_the_command_line_and_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cbtsim.toml");
    std::fs::write(
        &config,
        "[session]\ntherapist_end_phrases = ['\\bfarewell\\b']\nmin_turns = 2\n\
         [safety.locales.FR]\ncrisis_line = \"le 3114\"\nemergency = \"112\"\n",
    )
    .unwrap();
    let script = dir.path().join("replies.txt");
    std::fs::write(
        &script,
        "Hello, how are you?\n---\nNot great.\n---\nThank you for today. Farewell.\n---\nBye.\n",
    )
    .unwrap();
    let spec = format!("scripted:{}", script.display());
    let (code, stdout, stderr) = run(&[
        "--config",
        config.to_str().unwrap(),
        "run",
        "--persona",
        "david-levin",
        "--model",
        &spec,
        "--first-speaker",
        "therapist",
        "--candidates",
        "1",
        "--locale",
        "FR",
        "--no-summary",
        "--no-structure",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("Session Number: 1\n\nTherapist: Hello, how are you?"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(
            "Reason: Natural Session End\nDetails: Detected end phrase: '\\bfarewell\\b'\n"
        ),
        "{stdout}"
    );

    let (code, stdout, _) = run(&[
        "run",
        "--persona",
        "david-levin",
        "--model",
        "scripted",
        "--token-budget",
        "10",
    ]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("Reason: Budget Exhausted\nDetails: Token budget exhausted"),
        "{stdout}"
    );

    let (code, _, stderr) = run(&[
        "run",
        "--persona",
        "david-levin",
        "--model",
        "scripted",
        "--locale",
        "XX",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("XX"), "{stderr}");
    let (code, _, stderr) = run(&["run", "--persona", "nobody", "--model", "scripted"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("nobody"), "{stderr}");
}

#[test]
fn course_memory_reaches_each_agents_prompt_every_turn() {
    let mut config = config();
    config.max_turns = 4;
    config.carry_over.therapist = vec!["Last time: grief; homework: a walk each day.".into()];
    config.carry_over.patient = vec!["Homework from last session: a walk each day.".into()];
    config.mood = Some(cbtsim::persona::Mood { phq9: 8, gad7: 16 });
    let run = session(&["How was the walk?", "What helped?"], &PATIENT, &config);
    for request in run.therapist.requests() {
        let prompt = prompt_text(&request);
        assert!(prompt.contains("Note: Last time: grief; homework: a walk each day."));
        assert!(!prompt.contains("Homework from last session"));
        assert!(prompt.contains(
            "Note: Alicia's scores before this session: PHQ-9 8 (mild depression), GAD-7 16 \
             (severe anxiety)."
        ));
    }
    for request in run.patient.requests() {
        let prompt = prompt_text(&request);
        assert!(prompt.contains("Note: Homework from last session: a walk each day."));
        assert!(prompt.contains("asked to rate the mood from 0 to 10, Alicia says 7."));
        assert!(!prompt.contains("scores before this session"));
    }
}

#[test]
fn a_note_written_into_a_turn_is_cut_off() {
    // A base model imitates the "Note:" lines its prompt carries; seen on
    // the default model ("Note: Samuel is now more likely ... to say c").
    let mut config = config();
    config.max_turns = 2;
    let run = session(
        &["What has been hardest this week?"],
        &["I slept badly most nights.\nNote: Alicia will now start crying."],
        &config,
    );
    assert_eq!(
        run.record.transcript.turns[0].text,
        "I slept badly most nights."
    );
}

/// Continues a session after `spoken` with models that have nothing to say
/// beyond filler, and returns the record and how many replies were asked for.
fn continued(spoken: &[Turn], config: &SessionConfig) -> (SessionRecord, usize) {
    let persona = persona::library_persona("alicia-rodriguez")
        .unwrap()
        .unwrap();
    let model = ScriptedModel::new(Vec::<String>::new());
    let agent = || Agent {
        conversation: model.conversation().unwrap(),
        model: model.describe(),
        chat: false,
    };
    let (mut t, mut p) = (agent(), agent());
    let clock = || Duration::ZERO;
    let record = session::resume(
        &persona,
        &mut t,
        &mut p,
        config,
        spoken,
        &AtomicBool::new(false),
        &clock,
        &mut session::NoSink,
    )
    .unwrap();
    (record, model.requests().len())
}

fn said(speaker: Speaker, text: &str) -> Turn {
    Turn {
        speaker,
        text: text.into(),
        meta: Default::default(),
    }
}

#[test]
fn a_session_whose_last_stored_turn_ended_it_ends_there_on_resume() {
    let config = config();
    let mut spoken: Vec<Turn> = PATIENT[..3]
        .iter()
        .zip([
            "How are you today?",
            "What went through your mind?",
            "Shall we stop here?",
        ])
        .flat_map(|(p, t)| [said(Speaker::Patient, p), said(Speaker::Therapist, t)])
        .collect();
    // The therapist's goodbye was stored; the ending was not (a kill).
    spoken.push(said(Speaker::Patient, "Yes, thank you."));
    spoken.push(said(Speaker::Therapist, "Thank you, Alicia. Take care."));
    let (record, asked) = continued(&spoken, &config);
    assert_eq!(asked, 0, "nothing is said after the goodbye");
    assert!(matches!(
        record.transcript.termination,
        Some(TerminationReason::NaturalEnd { .. })
    ));

    // An imminent disclosure answered by the protocol turn escalates, also
    // when that turn is the last one stored.
    let spoken = vec![
        said(Speaker::Patient, "I'm going to kill myself tonight."),
        said(
            Speaker::Therapist,
            "I'm really glad you told me. Are you safe right now?",
        ),
    ];
    let (record, asked) = continued(&spoken, &config);
    assert_eq!(asked, 0);
    assert!(
        matches!(
            record.transcript.termination,
            Some(TerminationReason::SafetyEscalation { turn: 1, .. })
        ),
        "{:?}",
        record.transcript.termination
    );
    assert_eq!(record.safety_events.len(), 1);
    assert_eq!(record.safety_events[0].protocol_turn, Some(2));
}

#[test]
fn a_resumed_session_counts_what_its_stored_turns_used_against_its_budgets() {
    let mut config = config();
    config.token_budget = Some(900);
    config.time_budget = Some(Duration::from_secs(60));
    let mut turn = said(Speaker::Patient, PATIENT[0]);
    turn.meta.prompt_tokens = Some(300);
    turn.meta.completion_tokens = Some(40);
    turn.meta.candidates = Some(3);
    turn.meta.elapsed_ms = Some(5_000);
    let (record, asked) = continued(&[turn.clone()], &config);
    assert_eq!(asked, 0, "3 x 300 + 40 tokens are spent already");
    assert_eq!(
        record.transcript.termination,
        Some(TerminationReason::BudgetExhausted {
            budget: Budget::Tokens {
                used: 940,
                limit: 900
            }
        })
    );
    assert_eq!(
        record.usage.prompt_tokens, 900,
        "counted into the session's usage"
    );

    config.token_budget = None;
    turn.meta.elapsed_ms = Some(61_000);
    let (record, asked) = continued(&[turn], &config);
    assert_eq!(asked, 0, "61 s are spent already");
    assert!(matches!(
        record.transcript.termination,
        Some(TerminationReason::BudgetExhausted {
            budget: Budget::Seconds {
                used: 61,
                limit: 60
            }
        })
    ));
}

#[test]
fn a_disclosure_of_preparation_gets_the_protocol_with_the_locale_resources() {
    let mut config = config();
    config.max_turns = 6;
    config.resources = cbtsim::safety::resources_for("GB").unwrap();
    let run = session(
        &[
            "I'm really glad you told me that. Can we slow down and talk about it?",
            "Thank you. Let's keep talking.",
            "What would help tonight?",
        ],
        &[
            "Quiet. I wrote letters to my kids for after I'm gone and left them in the drawer.",
            "I don't know.",
            "Okay.",
        ],
        &config,
    );
    let event = &run.record.safety_events[0];
    assert_eq!(
        (event.turn, event.category, event.protocol_turn),
        (1, cbtsim::safety::Category::PreparatoryBehaviour, Some(2))
    );
    // The therapist was told what the protocol asks for this category...
    let protocol_prompt = prompt_text(&run.therapist.requests()[0]).to_string();
    assert!(
        protocol_prompt.contains("SAFETY PROTOCOL"),
        "{protocol_prompt}"
    );
    assert!(protocol_prompt.contains("preparations for ending their life"));
    assert!(protocol_prompt.contains("whether they are safe right now"));
    // ...and its turn carries the locale's resources (added, as it lacked them).
    let turn = &run.record.transcript.turns[1];
    assert!(
        turn.text.contains("Samaritans (call 116 123)") && turn.text.contains("999"),
        "{}",
        turn.text
    );
    assert!(!turn.text.contains("988"));
    assert_eq!(turn.meta.repairs[0].kind, "safety_resources");
}

#[test]
fn a_yes_to_a_direct_safety_question_is_a_disclosure_and_a_no_is_not() {
    let mut config = config();
    config.max_turns = 4;
    let asked = "Are you having any thoughts of ending your life?";
    let yes = session(
        &[asked, "Thank you for telling me."],
        &["Tired.", "Yes, a lot lately."],
        &config,
    );
    let event = &yes.record.safety_events[0];
    assert_eq!(
        (event.turn, event.category),
        (3, cbtsim::safety::Category::SuicidalThoughts)
    );
    let no = session(
        &[asked, "Okay."],
        &["Tired.", "No, never. Just tired."],
        &config,
    );
    assert!(no.record.safety_events.is_empty());
    // The same words without the question are nothing.
    let plain = session(
        &["How are you?", "How was work?"],
        &["Tired.", "Yes, a lot lately."],
        &config,
    );
    assert!(plain.record.safety_events.is_empty());
}

#[test]
fn a_child_at_risk_gets_the_child_line() {
    let mut config = config();
    config.max_turns = 4;
    config.resources = cbtsim::safety::resources_for("GB").unwrap();
    let run = session(
        &["How are you?", "Thank you for telling me."],
        &[
            "My stepdad hits me with his belt when mum's at work. I'm 13.",
            "ok",
        ],
        &config,
    );
    assert_eq!(
        run.record.safety_events[0].category,
        cbtsim::safety::Category::ChildAbuse
    );
    assert!(
        run.record.transcript.turns[1]
            .text
            .contains("Childline (0800 1111)")
    );
}

/// A session with the crisis detector's model layer scripted (or, with
/// no replies, unreachable).
fn screened(patient: &[&str], screen: &[&str]) -> SessionRecord {
    let mut config = config();
    config.max_turns = 4;
    let persona = persona::library_persona("alicia-rodriguez")
        .unwrap()
        .unwrap();
    let therapist_model = ScriptedModel::new(["How are you?", "Thank you for telling me."]);
    let patient_model = ScriptedModel::new(patient.iter().copied());
    let screen_model = ScriptedModel::new(screen.iter().copied());
    let agent = |model: &ScriptedModel| Agent {
        conversation: model.conversation().unwrap(),
        model: model.describe(),
        chat: model.chat(),
    };
    let (mut t, mut p) = (agent(&therapist_model), agent(&patient_model));
    let mut layer = match screen.is_empty() {
        true => cbtsim::safety::model::ModelLayer::new(&Unreachable),
        false => cbtsim::safety::model::ModelLayer::new(&screen_model),
    }
    .unwrap();
    let clock = || Duration::ZERO;
    session::resume_screened(
        &persona,
        &mut t,
        &mut p,
        &config,
        &[],
        &AtomicBool::new(false),
        &clock,
        &mut session::NoSink,
        Some(&mut layer),
    )
    .unwrap()
}

#[test]
fn the_model_layer_flags_what_the_offline_layers_miss_and_its_failure_ends_the_session() {
    let quiet = "I sorted out the spare room today.";
    assert!(
        !cbtsim::safety::detect(quiet).flagged,
        "the offline layers miss it"
    );
    let record = screened(
        &[quiet, "ok"],
        &[
            r#"{"risk": true, "category": "giving_away_belongings"}"#,
            r#"{"risk": false, "category": "none"}"#,
        ],
    );
    let event = &record.safety_events[0];
    assert_eq!(
        (event.turn, event.category),
        (1, cbtsim::safety::Category::GivingAwayBelongings)
    );
    assert_eq!(event.protocol_turn, Some(2));
    // The safety model's verdict (on turn 1, before the session ended at
    // turn 2) is counted under its own role.
    let safety = record
        .usage_by_role
        .iter()
        .find(|r| r.role == cbtsim::model::spec::AgentRole::Safety)
        .expect("the safety model's usage");
    assert_eq!(
        (safety.model.as_str(), safety.usage.replies),
        ("scripted", 1)
    );
    assert!(safety.usage.prompt_tokens > 0);
    // The verdict is kept with the turn: resumed after it, without any
    // safety model, the session has the same event.
    let first = &record.transcript.turns[0];
    assert_eq!(
        first.meta.safety_model,
        Some(cbtsim::safety::Category::GivingAwayBelongings)
    );
    let mut config = config();
    config.max_turns = 2;
    let (resumed, _) = continued(&record.transcript.turns[..1], &config);
    assert_eq!(resumed.safety_events.len(), 1);
    assert_eq!(
        resumed.safety_events[0].category,
        cbtsim::safety::Category::GivingAwayBelongings
    );
    // A safety model that stops answering stops the session.
    let record = screened(&["Hi.", "ok"], &[]);
    assert!(
        matches!(
            record.transcript.termination,
            Some(TerminationReason::BackendFailure { ref error }) if error.contains("safety model")
        ),
        "{:?}",
        record.transcript.termination
    );
}

/// `bench quality` on the default model, two personas, a short session
/// each: every session is measured, stored with its summary, and lints
/// clean (the guards keep odd output out).
#[test]
fn bench_quality_measures_sessions_on_the_default_model() {
    use cbtsim::bench::quality::{QualitySettings, bench_quality};
    let _real_model = super::util::real_model();
    let settings = QualitySettings {
        model: "local".parse().unwrap(),
        personas: vec!["alicia-rodriguez".into(), "kenji-watanabe".into()],
        seeds: 1,
        turns: 16,
        concurrency: 1,
        config: cbtsim::model::spec::Config::default(),
    };
    let report = bench_quality(&settings, cbtsim::store::Store::in_memory().unwrap()).unwrap();
    assert_eq!(report.failed_courses, 0);
    let personas: Vec<&str> = report.sessions.iter().map(|s| s.persona.as_str()).collect();
    assert_eq!(personas, ["alicia-rodriguez", "kenji-watanabe"]);
    // The quality issue's targets, on this grid's own measures (all but
    // the persona-specific share, below).
    for s in &report.sessions {
        assert!(s.patient_turns >= 1 && s.turns <= 16, "{s:?}");
        assert!(s.summary_items >= 1, "a summary was written: {s:?}");
        assert!(s.replies >= s.turns as i64, "{s:?}");
        assert_eq!(s.role_word_turns, 0, "{s:?}");
        assert_eq!(s.lint_findings, 0, "{s:?}");
        assert_eq!(
            (s.summary_cut_off, s.summary_copied, s.summary_duplicated),
            (0, 0, 0),
            "{s:?}"
        );
    }
    assert_eq!(report.lint_clean_sessions, 2);
    // Five elements a session, but a protocol turn (answering a true
    // disclosure or, as the detector's false positives on this model's
    // rambling patients often are, not) takes a phase's place. A follow-up
    // keeps its phase, and the turn after a protocol turn its fixed words.
    for s in &report.sessions {
        assert!(
            s.elements + s.protocol_turns >= 5,
            "{s:?}\n{}",
            report.describe()
        );
    }
    // The issue's target: the full grid reaches 83% and these two
    // sessions 75% (12 of 16).
    assert!(
        report.persona_specific_share >= 0.6,
        "{}",
        report.describe()
    );
    assert!(
        report
            .describe()
            .contains("CBT session elements per session")
    );
}
