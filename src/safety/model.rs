//! The model-based layer: a chat model (the `safety` role, any model spec)
//! classifies an utterance against the taxonomy, answering JSON valid
//! against a schema (constrained decoding on the embedded model,
//! `response_format` over HTTP). It is measured by `safety eval --model`;
//! docs/safety.md says what it adds.

use super::{Category, Detection};
use crate::choice::choice_enum;
use crate::model::{
    ChatModel, Conversation, Message, ModelError, Prompt, Request, Role, Sampling, schema,
};
use crate::session::SessionUsage;
use serde_json::{Value, json};

/// The schema a verdict must satisfy.
pub fn verdict_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "risk": {"type": "boolean"},
            "category": {"type": "string", "enum": Category::NAMES},
        },
        "required": ["risk", "category"],
        "additionalProperties": false
    })
}

const INSTRUCTION: &str = "You screen what a patient said to a therapist for risk. Answer \
whether it shows a current risk to the patient or to someone else, and its category. Not a \
risk: figures of speech and hyperbole (\"this deadline is killing me\"), other people's \
stories, work, study, fiction or news, a past that is clearly over, denials, and ordinary \
sadness or stress. Categories: wish_to_be_dead, suicidal_thoughts, ideation_with_method, \
suicidal_intent, suicide_plan, preparatory_behaviour, suicidal_behaviour, hopelessness, burden, \
no_reason_to_live, saying_goodbye, giving_away_belongings, acquiring_means, \
researching_methods, reckless_behaviour, self_injury, harm_to_others, child_abuse, \
intimate_partner_violence, sexual_violence, danger_now; or none.";

/// A few worked examples, the same every time so the prompt's prefix is
/// cached.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "I've been saving my tablets in a tin for a few weeks.",
        r#"{"risk": true, "category": "acquiring_means"}"#,
    ),
    (
        "My boss is going to kill me when he sees this.",
        r#"{"risk": false, "category": "none"}"#,
    ),
    (
        "Everyone would be better off without me.",
        r#"{"risk": true, "category": "burden"}"#,
    ),
    (
        "As a nurse I often talk to patients about overdoses.",
        r#"{"risk": false, "category": "none"}"#,
    ),
];

fn prompt(chat: bool, therapist_before: Option<&str>, text: &str) -> Prompt {
    let context = therapist_before
        .map(|t| format!("The therapist had just said: {}\n", t.trim()))
        .unwrap_or_default();
    if chat {
        let mut messages = vec![Message::new(Role::System, INSTRUCTION)];
        for (said, verdict) in EXAMPLES {
            messages.push(Message::new(Role::User, format!("Patient: {said}")));
            messages.push(Message::new(Role::Assistant, *verdict));
        }
        messages.push(Message::new(
            Role::User,
            format!("{context}Patient: {}", text.trim()),
        ));
        Prompt::Chat(messages)
    } else {
        let mut out = format!("{INSTRUCTION}\n\n");
        for (said, verdict) in EXAMPLES {
            out += &format!("Patient: {said}\nJSON: {verdict}\n\n");
        }
        out += &format!("{context}Patient: {}\nJSON:", text.trim());
        Prompt::Text(out)
    }
}

/// Reads a verdict: `None` when it is not valid against the schema.
pub fn parse_verdict(text: &str) -> Option<(bool, Category)> {
    let value: Value = serde_json::from_str(text.trim()).ok()?;
    schema::validate(&verdict_schema(), &value).ok()?;
    let category = Category::from_name(value["category"].as_str()?)?;
    let risk = value["risk"].as_bool()? && category != Category::None;
    Some((risk, category))
}

/// A model that screens utterances.
pub struct ModelLayer {
    pub conversation: Box<dyn Conversation>,
    /// The model, as its spec describes it.
    pub model: String,
    /// Whether the model takes chat messages (else a text prompt).
    pub chat: bool,
    /// Verdicts that were not valid JSON after the re-ask (counted as no).
    pub invalid: usize,
    /// What every request so far used, re-asks included.
    pub usage: SessionUsage,
}

impl ModelLayer {
    /// Opens a conversation with `model` for its verdicts.
    pub fn new(model: &dyn ChatModel) -> Result<ModelLayer, ModelError> {
        Ok(ModelLayer {
            conversation: model.conversation()?,
            model: model.describe(),
            chat: model.chat(),
            invalid: 0,
            usage: SessionUsage::default(),
        })
    }

    /// The model's verdict on one utterance, asked twice at most.
    pub fn judge(
        &mut self,
        therapist_before: Option<&str>,
        text: &str,
    ) -> Result<Detection, ModelError> {
        for attempt in 0..2u32 {
            let request = Request {
                prompt: prompt(self.chat, therapist_before, text),
                sampling: Sampling {
                    temperature: 0.0,
                    max_tokens: 40,
                    seed: attempt,
                    ..Sampling::default()
                },
                json_schema: Some(verdict_schema()),
            };
            let done = self.conversation.complete(&request)?;
            self.usage.count(&done.usage);
            if let Some((risk, category)) = parse_verdict(&done.text) {
                if !risk {
                    return Ok(Detection::none());
                }
                return Ok(Detection::found(category, "model layer", text));
            }
        }
        self.invalid += 1;
        Ok(Detection::none())
    }
}

choice_enum! {
    /// How the model layer's verdict is combined with the offline layers'.
    pub enum Combination {
        /// The model alone.
        Model => "model",
        /// A risk if either flags (what sessions with a safety model do).
        Either => "either",
        /// A risk only if both do.
        Both => "both",
    }
}

impl ModelLayer {
    /// Combines the offline layers' verdict with the model's, asking the
    /// model only when its answer can change the outcome.
    pub fn combine(
        &mut self,
        offline: Detection,
        combination: Combination,
        therapist_before: Option<&str>,
        text: &str,
    ) -> Result<Detection, ModelError> {
        match combination {
            Combination::Either if offline.flagged => Ok(offline),
            Combination::Both if !offline.flagged => Ok(offline),
            Combination::Model | Combination::Either => self.judge(therapist_before, text),
            Combination::Both => Ok(match self.judge(therapist_before, text)?.flagged {
                true => offline,
                false => Detection::none(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::scripted::ScriptedModel;

    #[test]
    fn a_verdict_must_fit_the_schema_and_is_asked_again_once() {
        assert_eq!(
            parse_verdict(r#"{"risk": true, "category": "burden"}"#),
            Some((true, Category::Burden))
        );
        assert_eq!(
            parse_verdict(r#"{"risk": true, "category": "despair"}"#),
            None
        );
        assert_eq!(parse_verdict("yes"), None);
        // A risk without a category is not a risk.
        assert_eq!(
            parse_verdict(r#"{"risk": true, "category": "none"}"#),
            Some((false, Category::None))
        );
        let model =
            ScriptedModel::new(["not json", r#"{"risk": true, "category": "self_injury"}"#]);
        let mut layer = ModelLayer::new(&model).unwrap();
        let d = layer.judge(None, "I burnt my arm with a lighter.").unwrap();
        assert_eq!((d.flagged, d.category), (true, Category::SelfInjury));
        let requests = model.requests();
        assert_eq!(requests.len(), 2);
        assert!(requests[0].json_schema.is_some());
        let model = ScriptedModel::new(["no", "still no"]);
        let mut layer = ModelLayer::new(&model).unwrap();
        assert!(!layer.judge(None, "hello").unwrap().flagged);
        assert_eq!(layer.invalid, 1);
    }

    #[test]
    fn the_model_is_asked_only_when_its_answer_counts() {
        let yes = r#"{"risk": true, "category": "burden"}"#;
        let model = ScriptedModel::new([yes, yes, yes]);
        let mut layer = ModelLayer::new(&model).unwrap();
        let flagged = crate::safety::detect("I want to kill myself.");
        let quiet = Detection::none();
        let mut combine =
            |offline: &Detection, how| layer.combine(offline.clone(), how, None, "text").unwrap();
        // Either: the offline verdict stands without a call; else the model's.
        assert_eq!(combine(&flagged, Combination::Either), flagged);
        assert_eq!(
            combine(&quiet, Combination::Either).category,
            Category::Burden
        );
        // Both: nothing to confirm without a call; a confirmed offline verdict.
        assert_eq!(combine(&quiet, Combination::Both), quiet);
        assert_eq!(combine(&flagged, Combination::Both), flagged);
        // The model alone.
        assert_eq!(
            combine(&quiet, Combination::Model).category,
            Category::Burden
        );
        assert_eq!(model.requests().len(), 3);
    }
}
