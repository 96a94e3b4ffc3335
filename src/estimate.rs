//! What a plan will cost before it runs (`batch --dry-run`): sessions,
//! turns, and tokens per model, from the real first prompts of each role
//! and a fixed average turn length. An upper bound in turns (every session
//! is taken to run to `max_turns`), a rough figure in tokens.

use crate::model::spec::{AgentRole, ModelSpec};
use crate::plan::{PlanError, RunPlan};
use crate::session::prompt::{self, PromptContext};
use crate::speaker::Speaker;
use serde::Serialize;

/// Tokens a turn is taken to add to the transcript.
pub const AVERAGE_TURN_TOKENS: u64 = 60;
/// Tokens a summary is taken to be.
pub const SUMMARY_TOKENS: u64 = 300;
/// Characters per token, for prompts counted before any tokenizer is loaded.
pub const CHARS_PER_TOKEN: u64 = 4;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub courses: u64,
    pub sessions: u64,
    /// At most: every session running to its last turn.
    pub turns: u64,
    pub models: Vec<ModelEstimate>,
    /// The cost of all models, when every model has a price.
    pub cost: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelEstimate {
    pub model: String,
    pub roles: Vec<&'static str>,
    /// Prompt tokens as a server bills them (each request in full).
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Option<f64>,
}

/// A crisis model-layer verdict: its prompt and its answer, in tokens.
const SAFETY_PROMPT_TOKENS: u64 = 400;
const SAFETY_VERDICT_TOKENS: u64 = 15;

pub fn estimate(plan: &RunPlan) -> Result<Estimate, PlanError> {
    let courses = plan.personas.len() as u64 * u64::from(plan.repeats);
    let sessions = plan.total_sessions();
    let turns = sessions * u64::from(plan.session.max_turns);
    let persona = crate::persona::resolve(&plan.personas[0])
        .map_err(|e| PlanError::Invalid(e.to_string()))?;
    let config = plan.session_config(plan.first_session, 0, plan.seed)?;
    let mut models: Vec<ModelEstimate> = Vec::new();
    for (spec, roles) in plan.models.distinct() {
        let mut prompt_tokens = 0;
        let mut completion_tokens = 0;
        // Base models (the embedded default, scripted, a server's model
        // named with `?base`) are given text and sample several candidates
        // per turn; chat models are given messages and reply once.
        let local = takes_text(&spec);
        let replies = if local {
            u64::from(plan.session.candidates.max(1))
        } else {
            1
        };
        for role in &roles {
            let speaker = match role {
                AgentRole::Therapist => Speaker::Therapist,
                AgentRole::Patient => Speaker::Patient,
                AgentRole::Safety => {
                    // At most one verdict per patient turn: the prompt (the
                    // instruction, its examples, the turn) and a short JSON.
                    let patient_turns = u64::from(plan.session.max_turns).div_ceil(2);
                    prompt_tokens += sessions * patient_turns * SAFETY_PROMPT_TOKENS;
                    completion_tokens += sessions * patient_turns * SAFETY_VERDICT_TOKENS;
                    continue;
                }
                AgentRole::Summarizer | AgentRole::Judge => {
                    if plan.summaries {
                        let transcript = u64::from(plan.session.max_turns) * AVERAGE_TURN_TOKENS;
                        prompt_tokens += sessions * (transcript + SUMMARY_TOKENS);
                        completion_tokens += sessions * SUMMARY_TOKENS;
                    }
                    continue;
                }
            };
            let ctx = PromptContext {
                persona: &persona,
                therapist: &config.therapist,
                session_number: config.session_number,
                turns: &[],
                notes: &[],
                turn_notes: &[],
                opening: None,
            };
            let first = prompt_chars(&prompt::prompt(speaker, !local, &ctx)) / CHARS_PER_TOKEN;
            // This role speaks every other turn; its prompt grows with the
            // transcript before it.
            let own_turns = u64::from(plan.session.max_turns).div_ceil(2);
            let per_session: u64 = (0..own_turns)
                .map(|k| first + 2 * k * AVERAGE_TURN_TOKENS)
                .sum();
            prompt_tokens += sessions * per_session * replies;
            completion_tokens += sessions * own_turns * replies * AVERAGE_TURN_TOKENS;
        }
        let cost = plan
            .config
            .prices
            .get(&spec)
            .map(|p| p.cost(prompt_tokens, completion_tokens));
        models.push(ModelEstimate {
            model: spec,
            roles: roles.iter().map(|r| r.as_str()).collect(),
            prompt_tokens,
            completion_tokens,
            cost,
        });
    }
    let cost = models.iter().map(|m| m.cost).sum::<Option<f64>>();
    Ok(Estimate {
        courses,
        sessions,
        turns,
        models,
        cost,
    })
}

/// Whether the model a spec names is taken to be a base model. A
/// `local:PATH` with a chat template is a chat model once loaded; before
/// it is, the estimate takes it to be a base model like the default.
fn takes_text(spec: &str) -> bool {
    match spec.parse::<ModelSpec>() {
        Ok(ModelSpec::Local(_) | ModelSpec::Scripted { .. }) => true,
        Ok(ModelSpec::Http { base, .. }) => base,
        // A pool's endpoints serve one model; the first says which kind.
        Ok(ModelSpec::Pool(endpoints)) => takes_text(&endpoints[0].to_string()),
        Ok(ModelSpec::OpenAi(_)) | Err(_) => false,
    }
}

fn prompt_chars(prompt: &crate::model::Prompt) -> u64 {
    match prompt {
        crate::model::Prompt::Text(text) => text.len() as u64,
        crate::model::Prompt::Chat(messages) => {
            messages.iter().map(|m| m.content.len() as u64).sum()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{PlanKind, PlanModels, SessionPlan};

    fn plan_on(spec: &str) -> RunPlan {
        let models = PlanModels {
            therapist: spec.into(),
            patient: spec.into(),
            summarizer: spec.into(),
            safety: None,
        };
        let planned_at = jiff::civil::date(2026, 11, 26).at(10, 0, 0, 0);
        let mut session = SessionPlan::new("Nova", planned_at);
        session.candidates = 3;
        RunPlan::new(
            PlanKind::Run,
            vec!["alicia-rodriguez".into()],
            models,
            session,
            Default::default(),
        )
    }

    #[test]
    fn a_base_model_on_a_server_is_estimated_like_the_embedded_one() {
        let tokens = |spec: &str| estimate(&plan_on(spec)).unwrap().models[0].completion_tokens;
        // Three candidates a turn for base models, one for chat models.
        assert_eq!(tokens("http://127.0.0.1:9/v1#m?base"), tokens("local"));
        assert!(tokens("http://127.0.0.1:9/v1#m") * 2 < tokens("local"));
        assert!(takes_text("scripted?delay_ms=5"));
        assert!(!takes_text("openai:gpt-4o-mini"));
    }
}
