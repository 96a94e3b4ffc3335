//! Patient-reported outcomes: the simulated patient, in character, answers
//! the PHQ-9 and the GAD-7 item by item as the session starts (from the
//! persona alone) and as it ends (having had the session), and rates the
//! session on four items in the spirit of the Session Rating Scale
//! (0 to 10). Each answer is structured output against a schema, asked
//! once more when invalid. They sit beside the rule-based PHQ-9 and GAD-7
//! the store keeps per session; a session without a persona (an imported
//! transcript) has none.

use super::judge::{JudgeError, dialogue};
use crate::model::{ChatModel, Conversation, Message, Prompt, Request, Role, Sampling};
use crate::persona::Persona;
use crate::session::SessionUsage;
use crate::transcript::Transcript;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The version of the questions below.
pub const VERSION: &str = "pro-1";

/// The PHQ-9's items ("Over the last two weeks, how often have you been
/// bothered by ...").
pub const PHQ9: [&str; 9] = [
    "little interest or pleasure in doing things",
    "feeling down, depressed, or hopeless",
    "trouble falling or staying asleep, or sleeping too much",
    "feeling tired or having little energy",
    "poor appetite or overeating",
    "feeling bad about yourself, or that you are a failure or have let yourself or your family down",
    "trouble concentrating on things, such as reading the newspaper or watching television",
    "moving or speaking so slowly that other people could have noticed, or the opposite: being so fidgety or restless that you have been moving around a lot more than usual",
    "thoughts that you would be better off dead, or of hurting yourself in some way",
];

/// The GAD-7's items, asked the same way.
pub const GAD7: [&str; 7] = [
    "feeling nervous, anxious, or on edge",
    "not being able to stop or control worrying",
    "worrying too much about different things",
    "trouble relaxing",
    "being so restless that it is hard to sit still",
    "becoming easily annoyed or irritable",
    "feeling afraid, as if something awful might happen",
];

/// The session rating: four items, 0 (worst) to 10 (best), in our words.
pub const SESSION_RATING: [(&str, &str); 4] = [
    (
        "relationship",
        "how heard, understood and respected you felt",
    ),
    (
        "goals_and_topics",
        "how much you worked on and talked about what you wanted to",
    ),
    (
        "approach",
        "how well the therapist's way of working fits you",
    ),
    ("overall", "how right today's session was for you, overall"),
];

/// One questionnaire's answers, in item order, and their sum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answers {
    pub items: Vec<u32>,
    pub total: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientOutcomes {
    pub phq9_start: Answers,
    pub phq9_end: Answers,
    pub gad7_start: Answers,
    pub gad7_end: Answers,
    /// By item key, 0 to 10.
    pub session_rating: Vec<(String, u32)>,
    pub version: String,
    /// The patient model, as its spec describes it.
    pub model: String,
    pub invalid_answers: u32,
    #[serde(skip)]
    pub usage: SessionUsage,
}

fn answer_schema(max: u32) -> Value {
    json!({
        "type": "object",
        "properties": {"answer": {"type": "integer", "minimum": 0, "maximum": max}},
        "required": ["answer"],
        "additionalProperties": false
    })
}

/// Reads an answer from 0 to `max`.
pub fn parse(text: &str, max: u32) -> Result<u32, String> {
    let value: Value = serde_json::from_str(text.trim()).map_err(|e| format!("not JSON: {e}"))?;
    crate::model::schema::validate(&answer_schema(max), &value)?;
    Ok(value["answer"].as_u64().unwrap_or(0) as u32)
}

/// Who the patient is, in the second person.
fn who(persona: &Persona) -> String {
    let i = &persona.identity;
    format!(
        "You are {}, {}, {}. {}\nWhat brings you to therapy: {}.\nHow you often feel: {}.",
        i.name,
        i.age,
        i.occupation,
        persona.background.history.trim(),
        persona.background.presenting_problems.join("; "),
        persona.cognitive_model.emotions.join(", ")
    )
}

struct Asker<'a> {
    conversation: Box<dyn Conversation>,
    chat: bool,
    who: String,
    usage: SessionUsage,
    invalid_answers: u32,
    model: &'a str,
}

impl Asker<'_> {
    /// One item: `question` answered from 0 to `max`, asked twice at most.
    fn ask(&mut self, context: &str, question: &str, max: u32) -> Result<u32, JudgeError> {
        let task = format!(
            "{}\n\n{context}\n\nAnswer as yourself, honestly and in character, with a JSON \
             object {{\"answer\": N}}.\n{question}",
            self.who
        );
        for attempt in 0..2u32 {
            let prompt = if self.chat {
                Prompt::Chat(vec![Message::new(Role::User, task.clone())])
            } else {
                Prompt::Text(format!("{task}\nJSON:"))
            };
            let request = Request {
                prompt,
                sampling: Sampling {
                    temperature: 0.0,
                    max_tokens: 16,
                    seed: attempt,
                    ..Sampling::default()
                },
                json_schema: Some(answer_schema(max)),
            };
            let done = self.conversation.complete(&request)?;
            self.usage.count(&done.usage);
            match parse(&done.text, max) {
                Ok(answer) => return Ok(answer),
                Err(_) => self.invalid_answers += 1,
            }
        }
        Err(JudgeError::Invalid {
            judge: self.model.to_string(),
            rubric: "patient-reported outcome",
            tries: 2,
        })
    }

    fn questionnaire(&mut self, context: &str, items: &[&str]) -> Result<Answers, JudgeError> {
        let items = items
            .iter()
            .map(|item| {
                let question = format!(
                    "Over the last two weeks, how often have you been bothered by {item}? \
                     0 = not at all, 1 = several days, 2 = more than half the days, \
                     3 = nearly every day."
                );
                self.ask(context, &question, 3)
            })
            .collect::<Result<Vec<u32>, _>>()?;
        Ok(Answers {
            total: items.iter().sum(),
            items,
        })
    }
}

/// The patient's answers for a session with `persona` (see the module).
pub fn ask(
    patient: &dyn ChatModel,
    persona: &Persona,
    transcript: &Transcript,
) -> Result<PatientOutcomes, JudgeError> {
    let model = patient.describe();
    let mut asker = Asker {
        conversation: patient.conversation()?,
        chat: patient.chat(),
        who: who(persona),
        usage: SessionUsage::default(),
        invalid_answers: 0,
        model: &model,
    };
    let start = format!(
        "Session {} of your therapy is about to start.",
        transcript.session_number
    );
    let end = format!(
        "You have just had session {} of your therapy:\n\n{}",
        transcript.session_number,
        dialogue(transcript).trim_end()
    );
    let phq9_start = asker.questionnaire(&start, &PHQ9)?;
    let gad7_start = asker.questionnaire(&start, &GAD7)?;
    let phq9_end = asker.questionnaire(&end, &PHQ9)?;
    let gad7_end = asker.questionnaire(&end, &GAD7)?;
    let session_rating = SESSION_RATING
        .iter()
        .map(|(key, what)| {
            let question = format!("From 0 (not at all) to 10 (completely): {what}.");
            asker.ask(&end, &question, 10).map(|a| (key.to_string(), a))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PatientOutcomes {
        phq9_start,
        phq9_end,
        gad7_start,
        gad7_end,
        session_rating,
        version: VERSION.into(),
        model: model.clone(),
        invalid_answers: asker.invalid_answers,
        usage: asker.usage,
    })
}
