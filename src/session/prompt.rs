//! What the agents are told: prompts for chat models (a system prompt and
//! the turns as messages, roles flipped for the patient) and for base
//! models (a transcript to continue, after a few-shot example session).

use crate::model::{Message, Prompt, Role};
use crate::persona::{Attitude, ConversationalStyle, Disclosure, Mood, Persona};
use crate::risk::RiskLevel;
use crate::speaker::Speaker;
use crate::text_format;
use crate::turn::Turn;

/// How the therapist is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TherapistProfile {
    pub name: String,
    /// Replaces the built-in description of the therapist; `{name}` and
    /// `{next_session}` are filled in.
    pub prompt: Option<String>,
    /// When the next session is, in words ("Thursday 3 December 2026 at 14:00").
    pub next_session: String,
}

/// Everything an agent's prompt is built from.
pub struct PromptContext<'a> {
    pub persona: &'a Persona,
    pub therapist: &'a TherapistProfile,
    pub session_number: u32,
    pub turns: &'a [Turn],
    /// Notes that hold for the whole session (mood, the course's memory):
    /// ahead of the transcript.
    pub notes: &'a [String],
    /// Notes for this turn only (wrap-up, safety protocol, disclosure):
    /// after the transcript in a completion prompt, so that a note that
    /// comes, changes or goes does not make the model read the whole
    /// transcript again.
    pub turn_notes: &'a [String],
    /// The words a completion prompt's new turn begins with (the session
    /// structure's opening), for the model to go on from.
    pub opening: Option<&'a str>,
}

/// PATIENT-Ψ's sentence caps per conversational style.
pub fn max_sentences(style: ConversationalStyle) -> usize {
    match style {
        ConversationalStyle::Plain => 5,
        ConversationalStyle::Upset => 3,
        ConversationalStyle::Verbose => 8,
        ConversationalStyle::Reserved => 3,
        ConversationalStyle::Tangent => 5,
        ConversationalStyle::Pleasing => 5,
    }
}

/// Stop sequences for transcript continuation: any new turn or header, or
/// a note like those the prompt carries (a base model imitates them).
pub fn stop_sequences() -> Vec<String> {
    [
        "\nPatient:",
        "\nTherapist:",
        "\nNote:",
        "\nSession Number:",
        "\nTermination Details:",
        "\nSession Summary:",
        "\n\n\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The speaker's description: who they are and how they speak.
fn description(speaker: Speaker, ctx: &PromptContext) -> String {
    match speaker {
        Speaker::Therapist => therapist_description(ctx.therapist),
        Speaker::Patient => patient_description(ctx.persona, ctx.therapist),
    }
}

/// What the speaker is told that is not the conversation and that no turn
/// should recite: its description and the example session. (The notes are
/// left out: a safety note's resources are meant to be said word for word.)
pub fn instructions(speaker: Speaker, ctx: &PromptContext) -> String {
    format!("{}\n\n{EXAMPLE_SESSION}", description(speaker, ctx))
}

/// The prompt for `speaker`'s next turn.
pub fn prompt(speaker: Speaker, chat: bool, ctx: &PromptContext) -> Prompt {
    let description = description(speaker, ctx);
    if chat {
        chat_prompt(speaker, &description, ctx)
    } else {
        Prompt::Text(text_prompt(speaker, &description, ctx))
    }
}

fn text_prompt(speaker: Speaker, description: &str, ctx: &PromptContext) -> String {
    let mut out = format!(
        "The following is a transcript of a cognitive behavioural therapy session.\n\n{description}\n\n\
         Example session (another patient):\n\n{EXAMPLE_SESSION}\n"
    );
    for note in ctx.notes {
        out.push_str(&format!("\nNote: {note}\n"));
    }
    out.push_str(&format!("\nSession Number: {}\n", ctx.session_number));
    for turn in ctx.turns {
        out.push('\n');
        out.push_str(&text_format::render_turn(turn));
    }
    for note in ctx.turn_notes {
        out.push_str(&format!("\nNote: {note}\n"));
    }
    out.push_str(&format!("\n{}:", speaker.label()));
    if let Some(opening) = ctx.opening {
        out.push(' ');
        out.push_str(opening);
    }
    out
}

fn chat_prompt(speaker: Speaker, description: &str, ctx: &PromptContext) -> Prompt {
    let you = match speaker {
        Speaker::Therapist => format!(
            "You are {}, the therapist. Reply with {}'s next turn only: spoken words, no labels, \
             no narration.",
            ctx.therapist.name, ctx.therapist.name
        ),
        Speaker::Patient => format!(
            "You are {}, the patient. Stay in character. Reply with your next turn only: spoken \
             words, no labels, no narration. Never act as the therapist or give advice.",
            ctx.persona.identity.name
        ),
    };
    let mut system = format!("{description}\n\n{you}");
    for note in ctx.notes.iter().chain(ctx.turn_notes) {
        system.push_str(&format!("\n\n{note}"));
    }
    let mut messages = vec![Message::new(Role::System, system)];
    if ctx.turns.is_empty() {
        messages.push(Message::new(
            Role::User,
            format!("(Session {} begins. You speak first.)", ctx.session_number),
        ));
    }
    for turn in ctx.turns {
        let role = if turn.speaker == speaker {
            Role::Assistant
        } else {
            Role::User
        };
        messages.push(Message::new(role, turn.text.clone()));
    }
    Prompt::Chat(messages)
}

/// The therapist's description as a system prompt for fine-tuning data.
pub const THERAPIST_FOR_EXPORT: &str = "You are Nova, a warm and structured CBT therapist. You \
follow the structure of a CBT session: a mood check-in with a rating from 0 to 10; a bridge from \
the last session and a review of the homework; an agenda set together; work on the agenda with CBT \
techniques; a summary; homework; and asking for feedback. You ask one main question at a time. If \
the patient speaks of suicide, self-harm, harming others or abuse, you acknowledge it, ask directly \
about safety, give crisis resources and encourage contact with a human professional.";

fn therapist_description(profile: &TherapistProfile) -> String {
    let template = profile.prompt.as_deref().unwrap_or(THERAPIST);
    template
        .replace("{name}", &profile.name)
        .replace("{next_session}", &profile.next_session)
}

const THERAPIST: &str = "The therapist is {name}, a warm and structured CBT therapist. {name} \
follows the structure of a CBT session: a mood check-in with a rating from 0 to 10; a bridge from \
the last session and a review of the homework; an agenda set together; work on the agenda with CBT \
techniques (Socratic questioning, naming cognitive distortions, weighing the evidence for and \
against a thought, thought records, cognitive restructuring, behavioural activation); a summary; \
homework; and asking for feedback. {name} asks one main question at a time, is concrete, never \
uses placeholders, never writes the patient's lines and never narrates actions. The next session \
is on {next_session}. If the patient speaks of suicide, self-harm, harming others or abuse, {name} \
follows the safety protocol: acknowledge, ask directly about safety, give crisis resources, and \
encourage contact with a human professional.";

fn patient_description(p: &Persona, therapist: &TherapistProfile) -> String {
    let id = &p.identity;
    let m = &p.cognitive_model;
    let style = match p.conversation.style {
        ConversationalStyle::Plain => "plainly and directly",
        ConversationalStyle::Upset => "in an upset, emotional way, sometimes pushing back",
        ConversationalStyle::Verbose => "at length, with detail and side stories",
        ConversationalStyle::Reserved => "briefly and guardedly, opening up only slowly",
        ConversationalStyle::Tangent => "drifting into tangents before coming back to the point",
        ConversationalStyle::Pleasing => "agreeably, eager to please, understating problems",
    };
    let attitude = match p.conversation.attitude {
        Attitude::Engaged => "engaged with therapy",
        Attitude::Ambivalent => "unsure whether therapy will help",
        Attitude::Skeptical => "skeptical of therapy",
        Attitude::Resistant => "resistant to therapy and may want to leave early",
    };
    let mut out = format!(
        "The patient is {}, {}, {} ({}), {}. {}.\nBackground: {}\nWhat brings {} to therapy: {}.\n\
         Beliefs: {} Rules {} lives by: {} When stressed, {} copes by: {}.\n\
         A recent situation: {} Thoughts then: {} Feelings: {}. What {} did: {}.\n\
         {} speaks {}, at most {} sentences per reply; {} is {}. {}\n\
         {} reveals this history and these feelings gradually, only when asked, never all at \
         once, speaks only as the patient, and never gives advice. The therapist is {}.",
        id.name,
        id.age,
        id.gender,
        id.pronouns,
        id.occupation,
        id.culture,
        p.background.history,
        first_name(p),
        p.background.presenting_problems.join(", "),
        m.core_belief_statements.join(" "),
        first_name(p),
        m.intermediate_beliefs.join(" "),
        first_name(p),
        m.coping_strategies.join("; "),
        m.situation,
        m.automatic_thoughts.join(" "),
        m.emotions.join(", "),
        first_name(p),
        m.behaviours.join("; "),
        first_name(p),
        style,
        max_sentences(p.conversation.style),
        first_name(p),
        attitude,
        p.conversation.manner,
        first_name(p),
        therapist.name,
    );
    if let Some(risk) = risk_disclosure(p) {
        out.push('\n');
        out.push_str(&risk);
    }
    out
}

fn risk_disclosure(p: &Persona) -> Option<String> {
    if p.risk.level == RiskLevel::None {
        return None;
    }
    let who = first_name(p);
    let details = &p.risk.details;
    Some(match p.risk.disclosure {
        Disclosure::Open => {
            format!("{who} talks about this openly when things feel bad: {details}")
        }
        Disclosure::WhenAsked => {
            format!(
                "If asked directly about suicide or self-harm, {who} answers honestly: {details}"
            )
        }
        Disclosure::AfterTrust => format!(
            "Early in a session {who} denies any thoughts of suicide or self-harm; only after the \
             therapist has shown understanding for a while does {who} admit: {details}"
        ),
        Disclosure::Concealed => {
            format!("{who} denies any thoughts of suicide or self-harm, even when asked.")
        }
    })
}

/// What an agent knows of the patient's mood this session: the therapist
/// the questionnaires filled in before it, the patient how the week felt.
pub fn mood_note(speaker: Speaker, p: &Persona, mood: Mood) -> String {
    let who = first_name(p);
    let scores = format!(
        "PHQ-9 {} ({} depression), GAD-7 {} ({} anxiety)",
        mood.phq9,
        mood.phq9_severity(),
        mood.gad7,
        mood.gad7_severity()
    );
    match speaker {
        Speaker::Therapist => format!("{who}'s scores before this session: {scores}."),
        Speaker::Patient => format!(
            "This past week felt like {scores}; asked to rate the mood from 0 to 10, {who} says {}.",
            mood.rating()
        ),
    }
}

/// The guidance that lets a patient who discloses only after trust builds
/// do so, from this turn on.
pub const TRUST_BUILT_AFTER_TURNS: usize = 8;

pub fn trust_built_note(p: &Persona) -> Option<String> {
    (p.risk.level != RiskLevel::None && p.risk.disclosure == Disclosure::AfterTrust).then(|| {
        format!(
            "{} now trusts the therapist enough to be honest about how bad things are, if asked.",
            first_name(p)
        )
    })
}

pub fn first_name(p: &Persona) -> &str {
    p.identity
        .name
        .split_whitespace()
        .next()
        .unwrap_or(&p.identity.name)
}

/// An example session, written for this project, that shows the format and
/// the shape of a good CBT session to base models.
const EXAMPLE_SESSION: &str = "Session Number: 1

Patient: Hi. I'm Sam. My doctor suggested I come here because I've been feeling flat for a couple of months.

Therapist: Welcome, Sam, I'm glad you came. To start, how would you rate your mood this past week, from 0 to 10?

Patient: Maybe a 3. Mornings are the worst.

Therapist: Thank you. What would you like us to focus on today, so that the session is useful for you?

Patient: Work, I think. I've been avoiding emails and then I feel terrible about it.

Therapist: Let's put work on the agenda. Think of the last time you avoided an email. What went through your mind just before you closed it?

Patient: That my manager would see how far behind I am. That I'd be found out.

Therapist: That's a clear thought to look at: \"I'll be found out.\" What evidence supports it, and what evidence doesn't fit it?

Patient: Well, I missed one deadline. But my manager actually thanked me for the report last week. I forgot about that.

Therapist: So there is evidence on both sides. Would you be willing to try a small experiment this week: answer two emails each morning before lunch, and note what actually happens?

Patient: Yes, I can do that. Two emails sounds manageable.

Therapist: Good. To sum up, we looked at the thought that you'll be found out, and found evidence that doesn't fit it. Your homework is two emails each morning and a note of what happens. How was today's session for you?

Patient: It helped more than I expected. Thank you.

Therapist: I'm glad. See you next week, Sam. Take care.";

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_patient_is_the_sam_the_guards_rename() {
        assert!(super::EXAMPLE_SESSION.contains("I'm Sam."));
        assert!(super::EXAMPLE_SESSION.contains("See you next week, Sam."));
    }
}
