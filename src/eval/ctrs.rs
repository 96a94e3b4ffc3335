//! The CTRS judge: a judge model scores the therapist of one session on the
//! Cognitive Therapy Rating Scale, 11 items of 0 to 6, each with a
//! justification and a quote copied from the transcript as evidence.
//!
//! The answer must be JSON valid against [`schema`] (constrained decoding
//! on the embedded model, `response_format` over HTTP); an invalid answer is
//! asked for once more. A quote that is not in the transcript is asked for
//! again once, then dropped and recorded. Meaningful scores need a capable
//! judge model: the default 270M model only exercises the machinery.

pub use super::judge::{JudgeError, quoted};
use super::judge::{Rubric, ask};
use crate::model::{ChatModel, schema};
use crate::session::SessionUsage;
use crate::transcript::Transcript;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The version of the rubric below: scores of different versions are never
/// mixed in a report.
pub const RUBRIC_VERSION: &str = "ctrs-1";

/// The usual threshold of competence on the 0 to 66 total.
pub const COMPETENCE_THRESHOLD: u32 = 40;

/// One item of the scale: its key, its name and what a score of 0, 2, 4
/// and 6 looks like.
pub struct Item {
    pub key: &'static str,
    pub name: &'static str,
    pub anchors: [&'static str; 4],
}

pub const ITEMS: [Item; 11] = [
    Item {
        key: "agenda",
        name: "Agenda",
        anchors: [
            "no agenda set",
            "an agenda that is vague or incomplete",
            "a mutually agreed agenda with specific target problems",
            "a specific agenda, prioritised and followed, with time for each part",
        ],
    },
    Item {
        key: "feedback",
        name: "Feedback",
        anchors: [
            "no feedback asked about the session or the patient's understanding",
            "some feedback asked, but not enough to be sure the patient followed",
            "feedback asked throughout, reactions to the session checked",
            "skilful feedback throughout, and the session adjusted to it",
        ],
    },
    Item {
        key: "understanding",
        name: "Understanding",
        anchors: [
            "repeatedly misses what the patient says or means",
            "reflects what the patient says, but often misses subtler feelings",
            "grasps the patient's internal reality and says so",
            "understands the patient thoroughly and communicates it skilfully",
        ],
    },
    Item {
        key: "interpersonal_effectiveness",
        name: "Interpersonal effectiveness",
        anchors: [
            "poor interpersonal skills: hostile, demeaning or cold",
            "not harmful, but lacking warmth, concern or professionalism",
            "satisfactory warmth, concern, confidence and professionalism",
            "optimal warmth, genuineness and confidence for this patient",
        ],
    },
    Item {
        key: "collaboration",
        name: "Collaboration",
        anchors: [
            "no collaboration: the therapist dictates or follows aimlessly",
            "tries to collaborate but has trouble defining a shared problem",
            "collaborates on problems both agree matter, as a team",
            "excellent collaboration: the patient takes an active role throughout",
        ],
    },
    Item {
        key: "pacing",
        name: "Pacing and efficient use of time",
        anchors: [
            "no attempt to structure the time; the session seems aimless",
            "some direction, but problems with structure or pace",
            "reasonably good use of time, with appropriate control of the flow",
            "time used very efficiently, peripheral talk limited, well paced",
        ],
    },
    Item {
        key: "guided_discovery",
        name: "Guided discovery",
        anchors: [
            "relies on debate, persuasion or lecturing",
            "too much persuasion; some questioning, but little exploring",
            "mostly guided discovery: questions that help the patient see new perspectives",
            "skilful questioning that lets the patient draw their own conclusions",
        ],
    },
    Item {
        key: "focus",
        name: "Focusing on key cognitions or behaviours",
        anchors: [
            "no attempt to elicit specific thoughts, assumptions or behaviours",
            "tries to elicit cognitions or behaviours, but without focus",
            "focuses on specific cognitions or behaviours relevant to the problem",
            "skilfully focuses on the key cognitions or behaviours most promising for progress",
        ],
    },
    Item {
        key: "strategy",
        name: "Strategy for change",
        anchors: [
            "no CBT strategy chosen",
            "a vague strategy, or one that seems unlikely to help",
            "a generally appropriate, promising strategy for change",
            "a coherent, very promising strategy drawing on the most fitting CBT techniques",
        ],
    },
    Item {
        key: "technique_application",
        name: "Application of cognitive-behavioural techniques",
        anchors: [
            "no CBT technique applied",
            "techniques applied in a flawed way",
            "techniques applied with moderate skill",
            "very skilful, resourceful use of CBT techniques",
        ],
    },
    Item {
        key: "homework",
        name: "Homework",
        anchors: [
            "no homework reviewed or set",
            "homework reviewed or set, but vague or not linked to the session",
            "homework reviewed and set, following from the session",
            "well-planned homework tailored to the patient, with its rationale explained",
        ],
    },
];

/// The JSON the judge answers with: every item, each a score of 0 to 6, a
/// justification and a quote (empty when there is nothing to quote).
pub fn schema() -> Value {
    let item = json!({
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 0, "maximum": 6},
            "justification": {"type": "string", "maxLength": 200},
            "evidence": {"type": "string", "maxLength": 200}
        },
        "required": ["score", "justification", "evidence"],
        "additionalProperties": false
    });
    let properties: serde_json::Map<String, Value> = ITEMS
        .iter()
        .map(|i| (i.key.to_string(), item.clone()))
        .collect();
    let required: Vec<&str> = ITEMS.iter().map(|i| i.key).collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

/// One item's score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemScore {
    pub item: String,
    pub score: u32,
    pub justification: String,
    /// A quote copied verbatim from the transcript, or empty.
    pub evidence: String,
}

impl super::judge::Quoted for ItemScore {
    fn key(&self) -> &str {
        &self.item
    }
    fn evidence(&self) -> &str {
        &self.evidence
    }
    fn evidence_mut(&mut self) -> &mut String {
        &mut self.evidence
    }
}

/// A session's CTRS scores and how they were obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CtrsScore {
    /// In the order of [`ITEMS`].
    pub items: Vec<ItemScore>,
    /// The sum of the items, 0 to 66.
    pub total: u32,
    pub rubric_version: String,
    /// The judge model, as its spec describes it.
    pub judge: String,
    /// Items whose quote was not in the transcript even when asked again:
    /// their evidence was dropped.
    pub dropped_quotes: Vec<String>,
    /// Answers that were not valid JSON against the schema.
    pub invalid_answers: u32,
    #[serde(skip)]
    pub usage: SessionUsage,
}

const INSTRUCTION: &str = "You are an expert rater of cognitive behavioural therapy. Rate the \
THERAPIST in the session below on the Cognitive Therapy Rating Scale. Score each item from 0 \
to 6 (odd scores fall between the anchors). Be strict: most sessions land in the middle of \
the scale, and 6 is rare. For each item give a short justification and, as evidence, a quote \
copied exactly from the transcript (or an empty string when there is nothing to quote). \
Answer with JSON only.";

/// The rubric as the judge reads it.
fn rubric() -> String {
    let mut out = String::new();
    for item in &ITEMS {
        out += &format!("- {} ({}):", item.key, item.name);
        for (score, anchor) in [0, 2, 4, 6].iter().zip(item.anchors) {
            out += &format!(" {score} = {anchor};");
        }
        out.pop();
        out += ".\n";
    }
    out
}

/// Scores `transcript`'s therapist with `judge`.
pub fn judge(judge: &dyn ChatModel, transcript: &Transcript) -> Result<CtrsScore, JudgeError> {
    let rubric = Rubric {
        name: "CTRS",
        instruction: INSTRUCTION,
        items: &rubric(),
        schema: schema(),
        parse: &parse,
    };
    let mut asked = ask(judge, transcript, &rubric)?;
    let items = std::mem::take(&mut asked.answer);
    Ok(CtrsScore {
        total: items.iter().map(|i| i.score).sum(),
        items,
        rubric_version: RUBRIC_VERSION.into(),
        judge: judge.describe(),
        dropped_quotes: asked.unquoted,
        invalid_answers: asked.invalid_answers,
        usage: asked.usage,
    })
}

/// Reads an answer valid against the schema, or says why it is not.
pub fn parse(text: &str) -> Result<Vec<ItemScore>, String> {
    let value: Value = serde_json::from_str(text.trim()).map_err(|e| format!("not JSON: {e}"))?;
    schema::validate(&schema(), &value).map_err(|e| e.to_string())?;
    Ok(ITEMS
        .iter()
        .map(|item| {
            let answer = &value[item.key];
            ItemScore {
                item: item.key.to_string(),
                score: answer["score"].as_u64().unwrap_or(0) as u32,
                justification: answer["justification"].as_str().unwrap_or("").trim().into(),
                evidence: answer["evidence"].as_str().unwrap_or("").trim().into(),
            }
        })
        .collect())
}
