//! The session engine: two agents take turns until a termination rule
//! fires. It does no I/O of its own: it talks to models through
//! `Conversation`s and reports through a `SessionSink`, so under the
//! scripted model it is a deterministic function of its inputs.

pub mod ending;
pub mod grounding;
pub mod guard;
pub mod prompt;
pub mod structure;

use crate::model::spec::AgentRole;
use crate::model::{Conversation, FinishReason, ModelError, Request, Sampling};
use crate::persona::{Mood, Persona};
use crate::risk::RiskLevel;
use crate::safety::model::ModelLayer;
use crate::safety::{self, Category, CrisisResources, Detection};
use crate::speaker::Speaker;
use crate::termination::{Budget, TerminationReason};
use crate::transcript::Transcript;
use crate::turn::{Turn, TurnMeta};
use ending::{EndPhrases, Ending};
use guard::Rejection;
use prompt::{PromptContext, TherapistProfile};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use structure::Phase;

/// How a session runs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub session_number: u32,
    pub first_speaker: Speaker,
    pub max_turns: u32,
    /// End phrases count only from this many turns on.
    pub min_turns: u32,
    /// Both agents are told to wrap up when this many turns are left.
    pub wrap_up_turns: u32,
    pub end_phrases: EndPhrases,
    /// Tokens (prompt and completion, as billed) the session may use.
    pub token_budget: Option<u64>,
    pub time_budget: Option<Duration>,
    pub seed: u32,
    /// Candidates sampled per turn for completion (base) models; the best
    /// usable one is kept. Chat models get one, regenerated if rejected.
    pub candidates: u32,
    pub max_reply_tokens: u32,
    pub temperature: f32,
    pub resources: CrisisResources,
    pub therapist: TherapistProfile,
    /// What each agent knows from earlier sessions of a course (summaries,
    /// homework, life events), given with every turn.
    pub carry_over: CarryOver,
    /// The patient's questionnaire scores this session (default: the
    /// persona's baseline); both agents are told them.
    pub mood: Option<Mood>,
    /// Guide the therapist through the phases of a CBT session
    /// (`structure.rs`); off when the therapist is the model under test.
    pub structure: bool,
    /// Ask each patient turn for one persona fact not told yet
    /// (`grounding.rs`).
    pub grounding: bool,
}

/// Notes that carry a course's memory into a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CarryOver {
    pub therapist: Vec<String>,
    pub patient: Vec<String>,
    /// The last session set homework (the structure reviews it).
    pub homework_set: bool,
}

impl SessionConfig {
    pub fn new(therapist: TherapistProfile) -> SessionConfig {
        SessionConfig {
            session_number: 1,
            first_speaker: Speaker::Patient,
            max_turns: 20,
            min_turns: 6,
            wrap_up_turns: 4,
            end_phrases: EndPhrases::default(),
            token_budget: None,
            time_budget: None,
            seed: 0,
            candidates: 3,
            max_reply_tokens: 160,
            temperature: 0.8,
            resources: safety::resources_for(safety::DEFAULT_LOCALE)
                .expect("the default locale is in the table"),
            therapist,
            carry_over: CarryOver::default(),
            mood: None,
            structure: true,
            grounding: true,
        }
    }
}

/// An agent: a conversation on its model, and how to prompt it.
pub struct Agent {
    pub conversation: Box<dyn Conversation>,
    /// The model spec, recorded on each turn.
    pub model: String,
    /// Chat prompts (instruct models) or transcript continuation (base models).
    pub chat: bool,
}

/// A crisis detection on a patient turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SafetyEvent {
    /// The patient turn, numbered from 1 over all turns.
    pub turn: usize,
    pub category: Category,
    pub level: RiskLevel,
    pub words: Vec<String>,
    /// The therapist turn that followed the protocol, once it is spoken.
    pub protocol_turn: Option<usize>,
}

/// Everything a session produced.
#[derive(Debug, Clone, Serialize)]
pub struct SessionRecord {
    pub transcript: Transcript,
    pub safety_events: Vec<SafetyEvent>,
    /// Both agents together.
    pub usage: SessionUsage,
    /// Each agent's share, with its model.
    pub usage_by_role: Vec<RoleUsage>,
}

impl SessionRecord {
    /// Counts what a speaker's agent used, in the total and in its share.
    fn count(&mut self, speaker: Speaker, usage: SessionUsage) {
        self.usage += usage;
        if let Some(share) = self
            .usage_by_role
            .iter_mut()
            .find(|r| r.role == AgentRole::from(speaker))
        {
            share.usage += usage;
        }
    }
}

/// What one agent used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleUsage {
    pub role: AgentRole,
    pub model: String,
    pub usage: SessionUsage,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SessionUsage {
    pub prompt_tokens: u64,
    pub cached_prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Generated replies the guards rejected.
    pub rejected_replies: u64,
    /// Generated replies the guards accepted after repairing them.
    pub repaired_replies: u64,
    /// Replies generated in all.
    pub replies: u64,
    /// Replies whose token counts the server did not give, estimated from
    /// their length (see `Usage::estimated`).
    pub estimated_replies: u64,
}

impl SessionUsage {
    /// Counts one generated reply.
    pub fn count(&mut self, reply: &crate::model::Usage) {
        self.replies += 1;
        self.prompt_tokens += u64::from(reply.prompt_tokens);
        self.cached_prompt_tokens += u64::from(reply.cached_prompt_tokens);
        self.completion_tokens += u64::from(reply.completion_tokens);
        self.estimated_replies += u64::from(reply.estimated);
    }
}

impl std::ops::AddAssign for SessionUsage {
    fn add_assign(&mut self, other: SessionUsage) {
        self.prompt_tokens += other.prompt_tokens;
        self.cached_prompt_tokens += other.cached_prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.rejected_replies += other.rejected_replies;
        self.repaired_replies += other.repaired_replies;
        self.replies += other.replies;
        self.estimated_replies += other.estimated_replies;
    }
}

/// Why a session could not be run or went on no further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    InvalidEndPhrase(String),
    /// The sink refused a turn or an event (the store cannot write, say):
    /// the session stops, and nothing is spoken that cannot be kept.
    #[error("{0}")]
    Sink(String),
}

/// Told about the session as it happens. An error (say, the store cannot
/// write) stops the session: nothing is spoken that cannot be kept.
pub trait SessionSink {
    fn turn(&mut self, _turn: &Turn) -> Result<(), String> {
        Ok(())
    }
    /// A new disclosure, once `safety_events` has been told of it.
    fn safety_event(&mut self, _event: &SafetyEvent) -> Result<(), String> {
        Ok(())
    }
    /// The session's safety events so far, whenever they change: a new
    /// one, the protocol turn that answered one, or those a resumed
    /// session found again in the turns it had spoken.
    fn safety_events(&mut self, _events: &[SafetyEvent]) -> Result<(), String> {
        Ok(())
    }
}

/// A sink that ignores everything.
pub struct NoSink;
impl SessionSink for NoSink {}

/// The time since the session started; injectable so tests control it.
pub type Clock<'a> = &'a dyn Fn() -> Duration;

/// Compiles the rules' patterns (the guards', the linter's, the crisis
/// detector's), which are otherwise compiled on the first turns (about
/// 25 ms of work); the runner does it while the models load.
pub fn warm_up() {
    let text = "I can't take this anymore, Nova [insert name] (sighs). Take care";
    safety::warm_up();
    for speaker in [Speaker::Patient, Speaker::Therapist] {
        let _ = guard::check(&guard::Reply {
            speaker,
            text,
            finish_reason: &FinishReason::Stop,
            max_sentences: Some(3),
            earlier: &[],
            names: &["Nova".to_string()],
            patient_name: "Alicia",
            therapist_name: "Nova",
            instructions: text,
        });
    }
}

/// Attempts beyond `candidates` when every candidate was rejected.
const EXTRA_ATTEMPTS: u32 = 3;

/// Runs one session to its end.
pub fn run(
    persona: &Persona,
    therapist: &mut Agent,
    patient: &mut Agent,
    config: &SessionConfig,
    interrupted: &AtomicBool,
    clock: Clock,
    sink: &mut dyn SessionSink,
) -> Result<SessionRecord, SessionError> {
    resume(
        persona,
        therapist,
        patient,
        config,
        &[],
        interrupted,
        clock,
        sink,
    )
}

/// Continues a session from the turns already spoken (none for a new
/// session). The crisis detector is run again over them, so the safety
/// events are whole and a pending protocol turn is still owed.
#[allow(clippy::too_many_arguments)]
pub fn resume(
    persona: &Persona,
    therapist: &mut Agent,
    patient: &mut Agent,
    config: &SessionConfig,
    spoken: &[Turn],
    interrupted: &AtomicBool,
    clock: Clock,
    sink: &mut dyn SessionSink,
) -> Result<SessionRecord, SessionError> {
    resume_screened(
        persona,
        therapist,
        patient,
        config,
        spoken,
        interrupted,
        clock,
        sink,
        None,
    )
}

/// `resume`, with the crisis detector's model layer as well as its offline
/// layers: a patient turn either flags is a disclosure. If the model fails,
/// the session ends with Backend Failure rather than go on unscreened.
#[allow(clippy::too_many_arguments)]
pub fn resume_screened(
    persona: &Persona,
    therapist: &mut Agent,
    patient: &mut Agent,
    config: &SessionConfig,
    spoken: &[Turn],
    interrupted: &AtomicBool,
    clock: Clock,
    sink: &mut dyn SessionSink,
    mut screen: Option<&mut ModelLayer>,
) -> Result<SessionRecord, SessionError> {
    let ending = Ending::new(&config.end_phrases).map_err(SessionError::InvalidEndPhrase)?;
    let mut record = SessionRecord {
        transcript: Transcript::new(config.session_number),
        safety_events: Vec::new(),
        usage: SessionUsage::default(),
        usage_by_role: [
            (Speaker::Therapist, &*therapist),
            (Speaker::Patient, &*patient),
        ]
        .into_iter()
        .map(|(speaker, agent)| RoleUsage {
            role: AgentRole::from(speaker),
            model: agent.model.clone(),
            usage: SessionUsage::default(),
        })
        .collect(),
    };
    record.transcript.turns = spoken.to_vec();
    // The turns already spoken are gone through as they were when spoken:
    // the safety events are whole, a pending protocol turn is still owed,
    // what they used counts against the budgets, and a session whose last
    // stored turn ended it (its ending was not stored yet) ends there.
    let mut pending_safety: Option<Detection> = None;
    let mut ended = None;
    let mut spent_before = Duration::ZERO;
    for (i, turn) in spoken.iter().enumerate() {
        let number = i + 1;
        let answered = match turn.speaker {
            Speaker::Therapist => pending_safety.take(),
            Speaker::Patient => None,
        };
        if answered.is_some()
            && let Some(event) = record.safety_events.last_mut()
        {
            event.protocol_turn = Some(number);
        }
        let (reason, event) = after_turn(
            &spoken[..number],
            number,
            answered.as_ref(),
            None,
            config,
            &ending,
            &mut pending_safety,
        );
        record.safety_events.extend(event);
        ended = reason;
        record.count(turn.speaker, usage_of(&turn.meta));
        spent_before += Duration::from_millis(turn.meta.elapsed_ms.unwrap_or(0));
    }
    if !record.safety_events.is_empty() {
        sink.safety_events(&record.safety_events)
            .map_err(SessionError::Sink)?;
    }
    if let Some(reason) = ended {
        record.transcript.termination = Some(reason);
        return Ok(record);
    }
    let mut speaker = spoken
        .last()
        .map_or(config.first_speaker, |t| t.speaker.other());
    // The words only this persona's story has, against the library's, which
    // a grounded patient turn's candidates score for.
    // (None when the library does not load: then nothing is known to be
    // this persona's alone.)
    let specific = match (config.grounding, crate::persona::library()) {
        (true, Ok(library)) => grounding::specific_words(persona, &library),
        _ => HashSet::new(),
    };
    let reason = loop {
        let turns = record.transcript.turns.len();
        if interrupted.load(Ordering::SeqCst) {
            break TerminationReason::Interrupted {
                after_turns: turns as u32,
            };
        }
        if turns as u32 >= config.max_turns {
            break TerminationReason::MaxTurns {
                limit: config.max_turns,
            };
        }
        let used = record.usage.prompt_tokens + record.usage.completion_tokens;
        if let Some(limit) = config.token_budget.filter(|limit| used >= *limit) {
            break TerminationReason::BudgetExhausted {
                budget: Budget::Tokens { used, limit },
            };
        }
        let elapsed = spent_before + clock();
        if let Some(limit) = config.time_budget.filter(|limit| elapsed >= *limit) {
            break TerminationReason::BudgetExhausted {
                budget: Budget::Seconds {
                    used: elapsed.as_secs(),
                    limit: limit.as_secs(),
                },
            };
        }

        let owed = pending_safety.as_ref().map(|detection| {
            // The disclosure's own event is the last one.
            let earlier = record
                .safety_events
                .split_last()
                .map_or(&[][..], |(_, earlier)| earlier);
            if answered_before(earlier, detection.category, detection.level) {
                Owed::FollowUp(detection)
            } else {
                Owed::Protocol(detection)
            }
        });
        let answer = owed.map(Owed::key);
        let guidance = guidance(
            persona,
            config,
            speaker,
            &record.transcript.turns,
            owed,
            hears_protocol_answers(&record.transcript.turns, &record.safety_events),
            &specific,
        );
        let agent = match speaker {
            Speaker::Therapist => &mut *therapist,
            Speaker::Patient => &mut *patient,
        };
        let (outcome, usage) = match agent.conversation.person() {
            Some(person) => (
                person_turn(
                    person,
                    &agent.model,
                    speaker,
                    &record.transcript.turns,
                    clock,
                ),
                SessionUsage::default(),
            ),
            None => speak(
                persona,
                agent,
                speaker,
                config,
                &record.transcript.turns,
                &guidance,
                clock,
            ),
        };
        record.count(speaker, usage);
        // A disclosure is answered with the resources at once, even when
        // the model that should have answered it gave no usable reply: the
        // engine's own answer takes the turn, and the session ends with the
        // failure after it (or with the escalation it calls for).
        let mut failed = None;
        let outcome = match (outcome, owed) {
            (
                Err(unspoken @ (Unspoken::Backend(_) | Unspoken::Loop(_) | Unspoken::Rejected(_))),
                Some(Owed::Protocol(detection) | Owed::FollowUp(detection)),
            ) => {
                failed = Some(failure(unspoken, turns, config));
                Ok(fallback_protocol_turn(detection, config, turns + 1))
            }
            (outcome, _) => outcome,
        };
        let mut turn = match outcome {
            Ok(turn) => turn,
            Err(Unspoken::Ended) => break TerminationReason::UserEnded { role: speaker },
            Err(Unspoken::Gone) => {
                break TerminationReason::Interrupted {
                    after_turns: turns as u32,
                };
            }
            Err(unspoken) => break failure(unspoken, turns, config),
        };
        let number = turns + 1;

        let answered = match speaker {
            Speaker::Therapist => pending_safety.take(),
            Speaker::Patient => None,
        };
        if let Some(detection) = &answered {
            let resources = safety::resources_for_category(detection.category, &config.resources);
            // A person's turn is kept as typed, even when it leaves the
            // resources out: a trainee's answer is theirs to be rated on.
            if !turn.meta.person {
                turn.text = guard::ensure_resources(&turn.text, &resources, &mut turn.meta.repairs);
            }
            turn.meta.safety = answer.map(str::to_string);
        }
        // The offline layers judge a patient turn once, here; the model
        // layer judges one they let pass, before it is stored: its verdict
        // is stored with the turn.
        let before = therapist_before(&record.transcript.turns);
        let offline =
            (speaker == Speaker::Patient).then(|| safety::detect_reply(before, &turn.text));
        let mut screen_failed = None;
        if let Some(detection) = &offline
            && !detection.flagged
            && let Some(screen) = screen.as_deref_mut()
        {
            match screen.judge(before, &turn.text) {
                Ok(verdict) => turn.meta.safety_model = Some(verdict.category),
                Err(e) => screen_failed = Some(format!("the safety model failed: {e}")),
            }
        }
        record.transcript.turns.push(turn);
        let turn = record.transcript.turns.last().expect("just pushed");
        sink.turn(turn).map_err(SessionError::Sink)?;
        if answered.is_some()
            && let Some(event) = record.safety_events.last_mut()
        {
            event.protocol_turn = Some(number);
            sink.safety_events(&record.safety_events)
                .map_err(SessionError::Sink)?;
        }
        if let Some(error) = screen_failed {
            // Kept what was said, but the session does not go on unscreened.
            break TerminationReason::BackendFailure { error };
        }

        let (reason, event) = after_turn(
            &record.transcript.turns,
            number,
            answered.as_ref(),
            offline,
            config,
            &ending,
            &mut pending_safety,
        );
        if let Some(event) = event {
            record.safety_events.push(event);
            sink.safety_events(&record.safety_events)
                .map_err(SessionError::Sink)?;
            sink.safety_event(record.safety_events.last().expect("just pushed"))
                .map_err(SessionError::Sink)?;
        }
        if let Some(reason) = reason.or(failed) {
            break reason;
        }
        speaker = speaker.other();
    };
    record.transcript.termination = Some(reason);
    // What the safety model used this time (its verdicts on turns stored
    // before a resume were paid for then): its own role, apart from the
    // speakers' usage and so from the session's token budget.
    if let Some(screen) = screen
        && screen.usage.replies > 0
    {
        record.usage_by_role.push(RoleUsage {
            role: AgentRole::Safety,
            model: screen.model.clone(),
            usage: screen.usage,
        });
    }
    Ok(record)
}

/// What the therapist's next turn owes a disclosure the patient just made.
#[derive(Clone, Copy)]
enum Owed<'a> {
    /// The safety protocol: the session set aside for the safety questions
    /// and the resources.
    Protocol(&'a Detection),
    /// A disclosure like one the protocol already answered this session:
    /// a check that they are safe now and the resources, within the
    /// session's own phase. Asking the same questions turn after turn
    /// would leave no session around them.
    FollowUp(&'a Detection),
}

impl Owed<'_> {
    /// What `TurnMeta::safety` says of the turn that answers it.
    fn key(self) -> &'static str {
        match self {
            Owed::Protocol(_) => SAFETY_PROTOCOL,
            Owed::FollowUp(_) => SAFETY_FOLLOW_UP,
        }
    }
}

/// Whether a therapist turn already answered, among `earlier` events, a
/// disclosure this one adds nothing to: the same category, or one of the
/// same family at a higher level (its questions cover a lower rung's). A
/// new category at the same level ("thoughts", then a method; partner
/// violence, then a child harmed) asks questions of its own, and imminent
/// risk always gets the protocol and ends the session.
fn answered_before(earlier: &[SafetyEvent], category: Category, level: RiskLevel) -> bool {
    level != RiskLevel::Imminent
        && earlier.iter().any(|e| {
            e.protocol_turn.is_some()
                && (e.category == category
                    || (e.category.family() == category.family() && e.level > level))
        })
}

/// Whether the therapist's next turn hears the answers to the safety
/// questions: the therapist turn before the patient's last one was a
/// protocol turn (not a follow-up).
fn hears_protocol_answers(turns: &[Turn], events: &[SafetyEvent]) -> bool {
    let Some(before) = turns.len().checked_sub(2) else {
        return false;
    };
    match turns[before].meta.safety.as_deref() {
        Some(answer) => answer == SAFETY_PROTOCOL,
        // Stored before turns said which: every answer was the protocol.
        None => events.iter().any(|e| e.protocol_turn == Some(before + 1)),
    }
}

/// What `TurnMeta::safety` says of a therapist turn that answered a
/// disclosure.
pub const SAFETY_PROTOCOL: &str = "protocol";
pub const SAFETY_FOLLOW_UP: &str = "follow_up";

/// The therapist's words just before the next turn, if the last turn was
/// theirs.
fn therapist_before(turns: &[Turn]) -> Option<&str> {
    turns
        .last()
        .filter(|t| t.speaker == Speaker::Therapist)
        .map(|t| t.text.as_str())
}

/// What a turn just spoken does to the session: the crisis it raises (a
/// patient turn), and whether the session ends with it: an escalation (the
/// therapist's protocol turn at imminent risk), the patient leaving, or an
/// end phrase. Used for live turns and, on resume, for the stored ones.
/// `offline` is the offline layers' verdict on a patient turn when it was
/// already reached (judged here otherwise).
fn after_turn(
    turns: &[Turn],
    number: usize,
    answered: Option<&Detection>,
    offline: Option<Detection>,
    config: &SessionConfig,
    ending: &Ending,
    pending_safety: &mut Option<Detection>,
) -> (Option<TerminationReason>, Option<SafetyEvent>) {
    let turn = turns.last().expect("a turn was just spoken");
    if let Some(detection) = answered
        && detection.level == RiskLevel::Imminent
    {
        let reason = TerminationReason::SafetyEscalation {
            turn: number as u32 - 1,
            category: detection.category.as_str().replace('_', " "),
        };
        return (Some(reason), None);
    }
    let mut event = None;
    if turn.speaker == Speaker::Patient {
        let mut detection = offline.unwrap_or_else(|| {
            safety::detect_reply(therapist_before(&turns[..turns.len() - 1]), &turn.text)
        });
        // What the model layer said when the turn was spoken.
        if !detection.flagged
            && let Some(category) = turn.meta.safety_model
            && category != Category::None
        {
            detection = Detection::found(category, "model layer", &turn.text);
        }
        if detection.flagged {
            event = Some(SafetyEvent {
                turn: number,
                category: detection.category,
                level: detection.level,
                words: detection.matches.iter().map(|(_, w)| w.clone()).collect(),
                protocol_turn: None,
            });
            *pending_safety = Some(detection);
        } else if number >= 3
            && let Some(words) = ending.patient_leaves(&turn.text)
        {
            let reason = TerminationReason::PatientEnded {
                reason: format!("said \"{words}\""),
            };
            return (Some(reason), None);
        }
    }
    // A turn that answers a disclosure never ends the session with a
    // goodbye: the patient answers it first.
    if number as u32 >= config.min_turns
        && pending_safety.is_none()
        && answered.is_none()
        && let Some(phrase) = ending.end_phrase(turn.speaker, &turn.text)
    {
        let reason = TerminationReason::NaturalEnd {
            phrase,
            speaker: Some(turn.speaker),
        };
        return (Some(reason), event);
    }
    (None, event)
}

/// What a stored turn used, from its metadata: every candidate read the
/// same prompt (what a cache saved is not recorded, so none is counted).
fn usage_of(meta: &TurnMeta) -> SessionUsage {
    let candidates = u64::from(meta.candidates.unwrap_or(1));
    SessionUsage {
        prompt_tokens: u64::from(meta.prompt_tokens.unwrap_or(0)) * candidates,
        completion_tokens: u64::from(meta.completion_tokens.unwrap_or(0)),
        replies: candidates,
        ..SessionUsage::default()
    }
}

/// The notes an agent's prompt carries, and what this turn is for.
struct Guidance<'a> {
    /// The same every turn (mood, the course's memory), so prompts keep
    /// their cached prefix.
    standing: Vec<String>,
    /// This turn's (wrap-up, safety protocol, phase, fact, disclosure).
    this_turn: Vec<String>,
    /// The session structure's phase of a therapist turn.
    phase: Option<Phase>,
    /// The words a completion model's turn may begin with, one per
    /// candidate in turn: the phase's, after an acknowledgement when the
    /// turn follows up a disclosure or hears the answers to a protocol
    /// turn.
    openings: Vec<String>,
    /// The persona fact a patient turn is asked to bring up.
    fact: Option<String>,
    /// Words only this persona's story has, which a grounded patient
    /// turn's candidates score for (none for the therapist).
    specific: Option<&'a HashSet<String>>,
}

fn guidance<'a>(
    persona: &Persona,
    config: &SessionConfig,
    speaker: Speaker,
    turns: &[Turn],
    owed: Option<Owed>,
    after_protocol: bool,
    specific: &'a HashSet<String>,
) -> Guidance<'a> {
    let mood = config.mood.unwrap_or(persona.mood);
    let mut standing = vec![prompt::mood_note(speaker, persona, mood)];
    standing.extend_from_slice(match speaker {
        Speaker::Therapist => &config.carry_over.therapist,
        Speaker::Patient => &config.carry_over.patient,
    });
    let mut notes = Vec::new();
    let (mut phase, mut fact, mut openings) = (None, None, Vec::new());
    let left = config.max_turns.saturating_sub(turns.len() as u32);
    let names = structure::Names::new(
        &config.therapist.name,
        persona,
        &config.therapist.next_session,
    );
    match (speaker, owed) {
        // The safety protocol comes before any plan.
        (Speaker::Therapist, Some(Owed::Protocol(detection))) => {
            notes.push(safety::protocol_instruction(detection, &config.resources));
        }
        (Speaker::Therapist, owed) => {
            let follow_up = match owed {
                Some(Owed::FollowUp(detection)) => {
                    notes.push(safety::follow_up_instruction(detection, &config.resources));
                    true
                }
                _ => false,
            };
            if config.structure {
                // A protocol turn takes its place in the plan.
                let spoken_by_therapist = turns
                    .iter()
                    .filter(|t| t.speaker == Speaker::Therapist)
                    .count();
                let now = structure::phase(
                    config.carry_over.homework_set,
                    turns.len(),
                    spoken_by_therapist,
                    config.max_turns,
                );
                notes.push(structure::note(now, &names));
                openings = match (follow_up, after_protocol) {
                    (true, answers_protocol) => structure::follow_up_openings(
                        now,
                        config.session_number,
                        &names,
                        answers_protocol,
                    ),
                    (false, true) => {
                        structure::after_protocol_openings(now, config.session_number, &names)
                    }
                    (false, false) => structure::openings(now, config.session_number, &names),
                };
                phase = Some(now);
            }
        }
        (Speaker::Patient, _) => {
            if config.grounding
                && let Some(next) =
                    grounding::next_untold(&grounding::facts(persona), turns, persona)
            {
                notes.push(grounding::note(persona, next));
                fact = Some(next.to_string());
            }
            if turns.len() >= prompt::TRUST_BUILT_AFTER_TURNS {
                notes.extend(prompt::trust_built_note(persona));
            }
        }
    }
    // The phases close a structured session themselves.
    if left <= config.wrap_up_turns && phase.is_none() {
        notes.insert(
            0,
            format!(
                "The session is nearly over ({left} turns left): {} summarises the session, agrees \
                 on homework, asks for feedback and says goodbye until {}.",
                config.therapist.name, config.therapist.next_session
            ),
        );
    }
    Guidance {
        standing,
        this_turn: notes,
        phase,
        openings,
        fact,
        specific: (speaker == Speaker::Patient).then_some(specific),
    }
}

enum Unspoken {
    Backend(ModelError),
    /// The person playing this side ended the session (`/end`).
    Ended,
    /// The person playing this side left (end of input, Ctrl-C): the
    /// session can be resumed.
    Gone,
    /// Every reply repeated the speaker's earlier turn at this index (among all turns).
    Loop(usize),
    Rejected(Rejection),
}

/// A usable reply and what `speak` keeps of it.
struct Candidate {
    score: i32,
    text: String,
    repairs: Vec<crate::turn::Repair>,
    prompt_tokens: u32,
    /// The structure's opening it began with.
    opening: Option<String>,
}

/// Generates candidates, guards them, and keeps the best usable one; the
/// usage counts every attempt, whether or not a turn came of it.
fn speak(
    persona: &Persona,
    agent: &mut Agent,
    speaker: Speaker,
    config: &SessionConfig,
    turns: &[Turn],
    guidance: &Guidance,
    clock: Clock,
) -> (Result<Turn, Unspoken>, SessionUsage) {
    let started = clock();
    let ctx = PromptContext {
        persona,
        therapist: &config.therapist,
        session_number: config.session_number,
        turns,
        notes: &guidance.standing,
        turn_notes: &guidance.this_turn,
        opening: None,
    };
    let instructions = prompt::instructions(speaker, &ctx);
    let mut request = Request {
        prompt: prompt::prompt(speaker, agent.chat, &ctx),
        sampling: Sampling {
            temperature: config.temperature,
            max_tokens: config.max_reply_tokens,
            stop: if agent.chat {
                Vec::new()
            } else {
                prompt::stop_sequences()
            },
            ..Sampling::default()
        },
        json_schema: None,
    };
    let own: Vec<(usize, String)> = turns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.speaker == speaker)
        .map(|(i, t)| (i, t.text.clone()))
        .collect();
    let earlier: Vec<String> = own.iter().map(|(_, t)| t.clone()).collect();
    let names = vec![
        config.therapist.name.clone(),
        prompt::first_name(persona).to_string(),
        persona.identity.name.clone(),
    ];
    let max_sentences = match speaker {
        Speaker::Patient => Some(prompt::max_sentences(persona.conversation.style)),
        Speaker::Therapist => None,
    };
    let wanted = if agent.chat {
        1
    } else {
        config.candidates.max(1)
    };
    let mut usage = SessionUsage::default();
    let mut best: Option<Candidate> = None;
    let mut last_rejection = Rejection::Empty;
    let mut tried = 0;
    for attempt in 0..wanted + EXTRA_ATTEMPTS {
        if attempt >= wanted && best.is_some() {
            break;
        }
        request.sampling.seed = seed(config.seed, turns.len(), attempt);
        // A completion model's therapist turn begins with the phase's
        // words (a different opening for each candidate) and the model
        // goes on from them.
        let opening = (!agent.chat && !guidance.openings.is_empty())
            .then(|| guidance.openings[attempt as usize % guidance.openings.len()].clone());
        if opening.is_some() {
            let begun = PromptContext {
                opening: opening.as_deref(),
                ..ctx
            };
            request.prompt = prompt::prompt(speaker, agent.chat, &begun);
        }
        let done = match agent.conversation.complete(&request) {
            Ok(done) => done,
            Err(e) => return (Err(Unspoken::Backend(e)), usage),
        };
        tried += 1;
        usage.count(&done.usage);
        let text = match &opening {
            // The model must add something of its own to the opening.
            Some(_) if done.text.trim().is_empty() => {
                usage.rejected_replies += 1;
                last_rejection = Rejection::Empty;
                continue;
            }
            Some(opening) => structure::join(opening, &done.text),
            None => done.text.clone(),
        };
        let reply = guard::Reply {
            speaker,
            text: &text,
            finish_reason: &done.finish_reason,
            max_sentences,
            earlier: &earlier,
            names: &names,
            patient_name: prompt::first_name(persona),
            therapist_name: &config.therapist.name,
            instructions: &instructions,
        };
        match guard::check(&reply) {
            // A repair that cut back into the opening left only the
            // engine's words.
            Ok((text, _))
                if opening
                    .as_ref()
                    .is_some_and(|o| !text.starts_with(o.as_str())) =>
            {
                usage.rejected_replies += 1;
                last_rejection = Rejection::Empty;
            }
            Ok((text, repairs)) => {
                if !repairs.is_empty() {
                    usage.repaired_replies += 1;
                }
                let mut score = score(speaker, &text, &repairs, &done.finish_reason);
                if let Some(fact) = &guidance.fact {
                    // Up to 2 for bringing up the fact the patient was asked for.
                    score += grounding::overlap(&text, fact, persona).min(2) as i32;
                }
                if let Some(specific) = guidance.specific {
                    // Up to 2 for words of this patient's own story.
                    score += grounding::specific_in(&text, specific).min(2) as i32;
                }
                if best.as_ref().is_none_or(|b| score > b.score) {
                    best = Some(Candidate {
                        score,
                        text,
                        repairs,
                        prompt_tokens: done.usage.prompt_tokens,
                        opening,
                    });
                }
            }
            Err(rejection) => {
                usage.rejected_replies += 1;
                last_rejection = rejection;
            }
        }
    }
    let Some(Candidate {
        text,
        repairs,
        prompt_tokens,
        opening,
        ..
    }) = best
    else {
        let failure = match last_rejection {
            Rejection::Repeat(index) => Unspoken::Loop(own[index].0),
            other => Unspoken::Rejected(other),
        };
        return (Err(failure), usage);
    };
    let turn = Turn {
        speaker,
        text,
        meta: TurnMeta {
            model: Some(agent.model.clone()),
            prompt_tokens: Some(prompt_tokens),
            completion_tokens: Some(usage.completion_tokens as u32),
            elapsed_ms: Some(clock().saturating_sub(started).as_millis() as u64),
            repairs,
            candidates: Some(tried),
            safety_model: None,
            opening,
            phase: guidance.phase.map(|p| p.key().to_string()),
            fact: guidance.fact.clone(),
            // Set by the caller, which knows what the turn answered.
            safety: None,
            person: false,
        },
    };
    (Ok(turn), usage)
}

/// Why a session ends when a speaker's model gave no usable turn.
fn failure(unspoken: Unspoken, turns: usize, config: &SessionConfig) -> TerminationReason {
    match unspoken {
        Unspoken::Loop(earlier) => TerminationReason::ConversationLoop {
            turn: turns as u32 + 1,
            earlier_turn: earlier as u32 + 1,
        },
        Unspoken::Rejected(rejection) => TerminationReason::BackendFailure {
            error: format!(
                "no usable reply after {} attempts (last problem: {rejection:?})",
                config.candidates + EXTRA_ATTEMPTS
            ),
        },
        Unspoken::Backend(e) => TerminationReason::BackendFailure {
            error: e.to_string(),
        },
        Unspoken::Ended | Unspoken::Gone => {
            unreachable!("a person's choices are not failures")
        }
    }
}

/// The model spec recorded on a turn the engine wrote itself.
pub const ENGINE: &str = "engine";

/// The therapist's answer to a disclosure when its model gave no usable
/// reply: the engine wrote it (its model is `engine`, and a repair says
/// why), and it carries the resources the protocol requires.
fn fallback_protocol_turn(detection: &Detection, config: &SessionConfig, number: usize) -> Turn {
    let resources = safety::resources_for_category(detection.category, &config.resources);
    let mut repairs = Vec::new();
    guard::repair(
        &mut repairs,
        "safety_fallback",
        &format!(
            "the model gave no usable reply at turn {number}; the engine answered the disclosure itself"
        ),
    );
    let text = guard::ensure_resources(
        "I want to stop here, because what you just told me matters more than anything else \
         we were doing, and I am concerned for your safety. Please reach out to someone now.",
        &resources,
        &mut repairs,
    );
    Turn {
        speaker: Speaker::Therapist,
        text,
        meta: TurnMeta {
            model: Some(ENGINE.into()),
            repairs,
            ..TurnMeta::default()
        },
    }
}

/// A person's turn, as typed (`cbtsim play`).
fn person_turn(
    person: &mut dyn crate::play::Person,
    model: &str,
    speaker: Speaker,
    turns: &[Turn],
    clock: Clock,
) -> Result<Turn, Unspoken> {
    let started = clock();
    match person.turn(speaker, turns) {
        crate::play::PersonTurn::Said(text) => Ok(Turn {
            speaker,
            text,
            meta: TurnMeta {
                model: Some(model.to_string()),
                elapsed_ms: Some(clock().saturating_sub(started).as_millis() as u64),
                person: true,
                ..TurnMeta::default()
            },
        }),
        crate::play::PersonTurn::End => Err(Unspoken::Ended),
        crate::play::PersonTurn::Gone => Err(Unspoken::Gone),
    }
}

/// The score that picks among usable candidates (higher is better): each
/// repair costs 2; a therapist turn should ask one main question (each
/// question mark away from one costs 1); a turn of fewer than four words
/// costs 2; a reply cut off by the token limit costs 1.
fn score(
    speaker: Speaker,
    text: &str,
    repairs: &[crate::turn::Repair],
    finish: &FinishReason,
) -> i32 {
    let mut score = -2 * repairs.len() as i32;
    if speaker == Speaker::Therapist {
        let questions = text.matches('?').count() as i32;
        score -= (questions - 1).abs();
    }
    if text.split_whitespace().count() < 4 {
        score -= 2;
    }
    if *finish == FinishReason::Length {
        score -= 1;
    }
    score
}

/// A seed per session seed, turn and attempt.
fn seed(session_seed: u32, turn: usize, attempt: u32) -> u32 {
    session_seed
        .wrapping_mul(1_000_003)
        .wrapping_add(turn as u32 * 1_009)
        .wrapping_add(attempt)
}
