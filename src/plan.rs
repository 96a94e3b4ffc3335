//! What a run is to do: a typed, versioned `RunPlan`, stored as JSON with
//! the run so that `cbtsim resume` continues it exactly as it was asked
//! for, whatever the command line looks like by then.
//!
//! Every shape is one plan: `run` is one persona and one session (with its
//! session number), `course` one persona and N sessions, `batch` a grid of
//! personas × repeats, each a course of N sessions. The runner (`runner.rs`)
//! executes any of them.

use crate::model::spec::{AgentRole, Config, ModelSpec};
use crate::safety::CrisisResources;
use crate::session::SessionConfig;
use crate::session::ending::EndPhrases;
use crate::session::prompt::TherapistProfile;
use crate::speaker::Speaker;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The plan format this build writes. A plan of another version is
/// refused by name rather than misread.
pub const PLAN_VERSION: u32 = 1;

/// Seeds of the courses of a grid are this far apart, so the sessions of
/// one course (seed, seed + 1, ...) never share a seed with another's.
pub const COURSE_SEED_STRIDE: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPlan {
    pub version: u32,
    /// How the plan was asked for (it names the run in the store).
    pub kind: PlanKind,
    /// The personas as the user named them (library ids or files). Each is
    /// snapshotted into the store when the run starts; later runs of the
    /// plan use the snapshot.
    pub personas: Vec<String>,
    /// Courses per persona.
    pub repeats: u32,
    /// Sessions per course.
    pub sessions: u32,
    /// The number of each course's first session (`run --session-number`).
    pub first_session: u32,
    /// The seed of the whole plan; each course's is derived from it.
    pub seed: u32,
    /// Courses run at once.
    pub concurrency: u32,
    /// Whether each session gets a summary.
    pub summaries: bool,
    pub models: PlanModels,
    pub session: SessionPlan,
    /// The backend settings (embedded, HTTP) the plan was made with.
    pub config: Config,
    /// The side a person plays (`cbtsim play`); resuming the run asks
    /// them for their turns again. None for simulated sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub played_by: Option<crate::speaker::Speaker>,
    /// A stored course this plan's course goes on from (`play --course`):
    /// its ended sessions before this plan's first are remembered as this
    /// course's own (summaries, homework, mood), so the carry-over is
    /// theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanKind {
    Run,
    Course,
    Batch,
}

impl PlanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanKind::Run => "run",
            PlanKind::Course => "course",
            PlanKind::Batch => "batch",
        }
    }
}

/// The model of each role, as specs resolved when the plan was made (the
/// command line, else the config, else `local`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanModels {
    pub therapist: String,
    pub patient: String,
    pub summarizer: String,
    /// The crisis detector's model layer (`[models] safety` in the
    /// config): when set, a patient turn is flagged if the offline layers
    /// or this model flag it. Plans stored before it have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<String>,
}

impl PlanModels {
    /// Each role's spec: the explicit one, else the config's, else `local`.
    pub fn resolve(
        config: &Config,
        all: Option<&ModelSpec>,
        explicit: [Option<&ModelSpec>; 3],
    ) -> Result<PlanModels, PlanError> {
        let [therapist, patient, summarizer] = explicit;
        let one = |role: AgentRole, explicit: Option<&ModelSpec>| -> Result<String, PlanError> {
            if let Some(spec) = explicit.or(all) {
                return Ok(spec.to_string());
            }
            match config.model_for(role) {
                Some(text) => text
                    .parse::<ModelSpec>()
                    .map(|s| s.to_string())
                    .map_err(|e| PlanError::Invalid(format!("[models] {}: {e}", role.as_str()))),
                None => Ok(ModelSpec::Local(None).to_string()),
            }
        };
        Ok(PlanModels {
            therapist: one(AgentRole::Therapist, therapist)?,
            patient: one(AgentRole::Patient, patient)?,
            summarizer: one(AgentRole::Summarizer, summarizer)?,
            safety: match config.model_for(AgentRole::Safety) {
                Some(text) => Some(
                    text.parse::<ModelSpec>()
                        .map(|s| s.to_string())
                        .map_err(|e| PlanError::Invalid(format!("[models] safety: {e}")))?,
                ),
                None => None,
            },
        })
    }

    pub fn spec(&self, role: AgentRole) -> Result<ModelSpec, PlanError> {
        let text = match role {
            AgentRole::Therapist => &self.therapist,
            AgentRole::Patient => &self.patient,
            AgentRole::Safety => match &self.safety {
                Some(spec) => spec,
                None => return Err(PlanError::Invalid("the plan has no safety model".into())),
            },
            // The judge, used outside sessions, falls back to the summarizer's.
            AgentRole::Summarizer | AgentRole::Judge => &self.summarizer,
        };
        text.parse()
            .map_err(|e| PlanError::Invalid(format!("{} model: {e}", role.as_str())))
    }

    /// Each distinct spec once, with the roles that use it.
    pub fn distinct(&self) -> Vec<(String, Vec<AgentRole>)> {
        let mut out: Vec<(String, Vec<AgentRole>)> = Vec::new();
        let roles = [
            (AgentRole::Therapist, Some(&self.therapist)),
            (AgentRole::Patient, Some(&self.patient)),
            (AgentRole::Summarizer, Some(&self.summarizer)),
            (AgentRole::Safety, self.safety.as_ref()),
        ];
        for (role, spec) in roles.into_iter().filter_map(|(r, s)| Some((r, s?))) {
            match out.iter_mut().find(|(s, _)| s == spec) {
                Some((_, roles)) => roles.push(role),
                None => out.push((spec.clone(), vec![role])),
            }
        }
        out
    }
}

/// How each session runs: everything `SessionConfig` takes that is not
/// per session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionPlan {
    pub max_turns: u32,
    pub min_turns: u32,
    pub wrap_up_turns: u32,
    pub candidates: u32,
    /// Tokens a reply may have.
    pub max_reply_tokens: u32,
    pub first_speaker: Speaker,
    pub token_budget: Option<u64>,
    pub time_budget_s: Option<u64>,
    pub end_phrases: EndPhrases,
    pub therapist_name: String,
    /// The therapist's description, replacing the built-in one (the text,
    /// not the file it came from).
    pub therapist_prompt: Option<String>,
    /// When the next session is, in words, if the user said.
    pub next_session: Option<String>,
    /// When the plan was made, local time (`2026-11-26T15:43:00`): the
    /// sessions of a course are a week apart from it.
    pub planned_at: String,
    pub resources: CrisisResources,
    /// Guide the therapist through the phases of a CBT session. Plans
    /// stored before it existed ran without it, and resume as they ran.
    #[serde(default)]
    pub structure: bool,
    /// Ask each patient turn for one persona fact not told yet; off, like
    /// the structure, for plans stored before it.
    #[serde(default)]
    pub grounding: bool,
}

impl SessionPlan {
    /// The defaults of `SessionConfig`, with the therapist named and the
    /// plan made at `planned_at`.
    pub fn new(therapist_name: &str, planned_at: jiff::civil::DateTime) -> SessionPlan {
        let defaults = SessionConfig::new(TherapistProfile {
            name: therapist_name.into(),
            prompt: None,
            next_session: String::new(),
        });
        SessionPlan {
            max_turns: defaults.max_turns,
            min_turns: defaults.min_turns,
            wrap_up_turns: defaults.wrap_up_turns,
            candidates: defaults.candidates,
            max_reply_tokens: defaults.max_reply_tokens,
            first_speaker: defaults.first_speaker,
            token_budget: None,
            time_budget_s: None,
            end_phrases: defaults.end_phrases,
            therapist_name: therapist_name.into(),
            therapist_prompt: None,
            next_session: None,
            planned_at: planned_at.to_string(),
            resources: defaults.resources,
            structure: defaults.structure,
            grounding: defaults.grounding,
        }
    }

    /// Applies the config's `[session]` settings.
    pub fn apply_config(&mut self, config: &Config) {
        let s = &config.session;
        if let Some(phrases) = &s.therapist_end_phrases {
            self.end_phrases.therapist = phrases.clone();
        }
        if let Some(phrases) = &s.patient_end_phrases {
            self.end_phrases.patient = phrases.clone();
        }
        self.min_turns = s.min_turns.unwrap_or(self.min_turns);
        self.wrap_up_turns = s.wrap_up_turns.unwrap_or(self.wrap_up_turns);
    }
}

/// A course of the plan: one persona, one repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CourseSpec {
    /// Its place in the grid, from 0.
    pub index: u32,
    /// Which of `RunPlan::personas`.
    pub persona: usize,
    pub repeat: u32,
    pub seed: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the stored plan is version {found}; this cbtsim reads version {PLAN_VERSION}")]
    Version { found: u32 },
    #[error("invalid plan: {0}")]
    Invalid(String),
    #[error("the stored command line cannot be read as a plan: {0}")]
    Legacy(String),
    #[error(
        "no crisis resources for locale {0:?}; known: US, CA, GB, IE, AU, NZ, or add [safety.locales.{0}] to cbtsim.toml"
    )]
    UnknownLocale(String),
}

impl RunPlan {
    /// A plan of one session of session number 1 for each persona, with
    /// these models and settings; the caller sets the rest.
    pub fn new(
        kind: PlanKind,
        personas: Vec<String>,
        models: PlanModels,
        session: SessionPlan,
        config: Config,
    ) -> RunPlan {
        RunPlan {
            version: PLAN_VERSION,
            kind,
            personas,
            repeats: 1,
            sessions: 1,
            first_session: 1,
            seed: 0,
            concurrency: 1,
            summaries: true,
            models,
            session,
            config,
            played_by: None,
            continues: None,
        }
    }

    /// Checks what a plan needs to be run.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.version != PLAN_VERSION {
            return Err(PlanError::Version {
                found: self.version,
            });
        }
        let bad = |what: &str| Err(PlanError::Invalid(what.into()));
        if self.personas.is_empty() {
            return bad("no personas");
        }
        if self.sessions == 0 || self.repeats == 0 || self.first_session == 0 {
            return bad("sessions, repeats and the first session number must be at least 1");
        }
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1");
        }
        if self.sessions > COURSE_SEED_STRIDE {
            return bad("at most 1000 sessions per course");
        }
        for role in [
            AgentRole::Therapist,
            AgentRole::Patient,
            AgentRole::Summarizer,
        ] {
            self.models.spec(role)?;
        }
        crate::session::ending::Ending::new(&self.session.end_phrases)
            .map_err(|e| PlanError::Invalid(e.to_string()))?;
        self.planned_at()?;
        Ok(())
    }

    /// Reads a stored plan, refusing another version by name.
    pub fn from_json(text: &str) -> Result<RunPlan, PlanError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| PlanError::Invalid(e.to_string()))?;
        let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
        if version != PLAN_VERSION {
            return Err(PlanError::Version { found: version });
        }
        serde_json::from_value(value).map_err(|e| PlanError::Invalid(e.to_string()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a plan serialises")
    }

    /// The courses of the grid, persona by persona, repeat by repeat.
    pub fn courses(&self) -> Vec<CourseSpec> {
        let mut out = Vec::new();
        for persona in 0..self.personas.len() {
            for repeat in 0..self.repeats {
                let index = out.len() as u32;
                out.push(CourseSpec {
                    index,
                    persona,
                    repeat,
                    seed: self.course_seed(index),
                });
            }
        }
        out
    }

    /// The seed of the course at `index` in the grid: the plan's seed for
    /// the first, then `COURSE_SEED_STRIDE` apart. Session i (from 0) of a
    /// course uses the course's seed + i.
    pub fn course_seed(&self, index: u32) -> u32 {
        self.seed
            .wrapping_add(index.wrapping_mul(COURSE_SEED_STRIDE))
    }

    pub fn total_sessions(&self) -> u64 {
        self.personas.len() as u64 * u64::from(self.repeats) * u64::from(self.sessions)
    }

    fn planned_at(&self) -> Result<jiff::civil::DateTime, PlanError> {
        self.session
            .planned_at
            .parse()
            .map_err(|e| PlanError::Invalid(format!("planned_at: {e}")))
    }

    /// The configuration of session `number`, the `offset`-th (from 0) of a
    /// course whose seed is `course_seed`. Carry-over and mood are the
    /// course's to fill in.
    pub fn session_config(
        &self,
        number: u32,
        offset: u32,
        course_seed: u32,
    ) -> Result<SessionConfig, PlanError> {
        let s = &self.session;
        let next_session = match &s.next_session {
            Some(text) => text.clone(),
            None => {
                let date = self
                    .planned_at()?
                    .checked_add(jiff::Span::new().days(7 * (i64::from(offset) + 1)))
                    .map_err(|e| PlanError::Invalid(format!("the next session's date: {e}")))?;
                date.strftime("%A %-d %B %Y at %H:%M").to_string()
            }
        };
        let mut config = SessionConfig::new(TherapistProfile {
            name: s.therapist_name.clone(),
            prompt: s.therapist_prompt.clone(),
            next_session,
        });
        config.session_number = number;
        config.seed = course_seed.wrapping_add(offset);
        config.max_turns = s.max_turns;
        config.min_turns = s.min_turns;
        config.wrap_up_turns = s.wrap_up_turns;
        config.candidates = s.candidates;
        config.max_reply_tokens = s.max_reply_tokens;
        config.first_speaker = s.first_speaker;
        config.token_budget = s.token_budget;
        config.time_budget = s.time_budget_s.map(Duration::from_secs);
        config.end_phrases = s.end_phrases.clone();
        config.resources = s.resources.clone();
        config.structure = s.structure;
        config.grounding = s.grounding;
        Ok(config)
    }
}

/// Reads the command line a run stored before plans existed (store schema
/// 3 and older) as a plan. The flags are those `cbtsim run` and `cbtsim
/// course` had then, written out here once, so renaming a flag later never
/// breaks resuming an old run. `started_at` is when the run started (its
/// sessions were dated from it); files it names (`--config`,
/// `--therapist-prompt`) are read now.
pub fn from_legacy_argv(argv: &[String], started_at: &str) -> Result<RunPlan, PlanError> {
    let bad = |message: String| PlanError::Legacy(message);
    // Every flag of that time that takes a value; the rest are switches.
    const VALUED: &[&str] = &[
        "config",
        "persona",
        "model",
        "therapist-model",
        "patient-model",
        "summarizer-model",
        "max-turns",
        "seed",
        "db",
        "therapist-name",
        "therapist-prompt",
        "next-session",
        "locale",
        "candidates",
        "first-speaker",
        "token-budget",
        "time-budget",
        "out",
        "session-number",
        "sessions",
    ];
    // One pass: flags (`--name value`, `--name=value`, switches) anywhere,
    // `--config` before the command too; the first bare word is the command.
    let mut values: std::collections::HashMap<String, String> = Default::default();
    let mut switches: Vec<String> = Vec::new();
    let mut command = None;
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            command.get_or_insert(arg.as_str());
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (flag, None),
        };
        if VALUED.contains(&name) {
            let value = match inline {
                Some(value) => value,
                None => args
                    .next()
                    .cloned()
                    .ok_or_else(|| bad(format!("--{name} has no value")))?,
            };
            values.insert(name.to_string(), value);
        } else {
            switches.push(name.to_string());
        }
    }
    let kind = match command {
        Some("run") => PlanKind::Run,
        Some("course") => PlanKind::Course,
        Some(other) => return Err(bad(format!("unknown command {other:?}"))),
        None => return Err(bad("no command".into())),
    };
    let number = |name: &str, default: u64| -> Result<u64, PlanError> {
        values.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| PlanError::Legacy(format!("--{name} {v:?} is not a number")))
        })
    };
    let spec = |name: &str| -> Result<Option<ModelSpec>, PlanError> {
        values
            .get(name)
            .map(|v| {
                v.parse()
                    .map_err(|e: crate::model::spec::SpecError| PlanError::Legacy(e.to_string()))
            })
            .transpose()
    };
    let config = Config::load(values.get("config").map(std::path::Path::new))
        .map_err(|e| bad(e.to_string()))?;
    let persona = values
        .get("persona")
        .cloned()
        .ok_or_else(|| bad("no --persona".into()))?;
    let started: jiff::Timestamp = started_at
        .parse()
        .map_err(|e| bad(format!("the run's start {started_at:?}: {e}")))?;
    let planned_at = started
        .to_zoned_datetime(jiff::tz::TimeZone::system())
        .datetime();
    let mut session = SessionPlan::new(
        values.get("therapist-name").map_or("Nova", String::as_str),
        planned_at,
    );
    session.apply_config(&config);
    // Runs from before plans had no session structure or grounding.
    session.structure = false;
    session.grounding = false;
    session.max_turns = number("max-turns", 20)? as u32;
    session.candidates = number("candidates", 3)? as u32;
    session.first_speaker = match values.get("first-speaker").map(String::as_str) {
        Some("therapist") => Speaker::Therapist,
        _ => Speaker::Patient,
    };
    session.token_budget = values
        .get("token-budget")
        .map(|_| number("token-budget", 0))
        .transpose()?;
    session.time_budget_s = values
        .get("time-budget")
        .map(|_| number("time-budget", 0))
        .transpose()?;
    session.therapist_prompt = match values.get("therapist-prompt") {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| bad(format!("cannot read the therapist prompt {file}: {e}")))?,
        ),
        None => None,
    };
    session.next_session = values.get("next-session").cloned();
    let locale = values.get("locale").map_or("US", String::as_str);
    session.resources = config
        .crisis_resources(locale)
        .ok_or_else(|| PlanError::UnknownLocale(locale.into()))?;
    let models = PlanModels::resolve(
        &config,
        spec("model")?.as_ref(),
        [
            spec("therapist-model")?.as_ref(),
            spec("patient-model")?.as_ref(),
            spec("summarizer-model")?.as_ref(),
        ],
    )?;
    let (sessions, first_session) = match kind {
        PlanKind::Course => (number("sessions", 3)? as u32, 1),
        _ => (1, number("session-number", 1)? as u32),
    };
    let plan = RunPlan {
        version: PLAN_VERSION,
        kind,
        personas: vec![persona],
        repeats: 1,
        sessions,
        first_session,
        seed: number("seed", 0)? as u32,
        concurrency: 1,
        summaries: !(kind == PlanKind::Run && switches.iter().any(|s| s == "no-summary")),
        models,
        session,
        config,
        played_by: None,
        continues: None,
    };
    plan.validate()?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_legacy_run_command_line_becomes_a_plan_of_one_session() {
        let plan = from_legacy_argv(
            &argv(
                "cbtsim run --persona samuel-okafor --session-number 3 --max-turns=6 --seed 9 \
                 --model scripted --db r.db --no-summary --first-speaker therapist",
            ),
            "2026-11-20T10:00:00Z",
        )
        .unwrap();
        assert_eq!(plan.kind, PlanKind::Run);
        assert_eq!(plan.personas, ["samuel-okafor"]);
        assert_eq!((plan.sessions, plan.first_session), (1, 3));
        assert_eq!(plan.session.max_turns, 6);
        assert_eq!(plan.seed, 9);
        assert!(!plan.summaries);
        assert_eq!(plan.session.first_speaker, Speaker::Therapist);
        assert_eq!(plan.models.patient, "scripted");
        assert_eq!(plan.models.summarizer, "scripted");
        let config = plan.session_config(3, 0, plan.course_seed(0)).unwrap();
        assert_eq!((config.session_number, config.seed), (3, 9));
    }

    #[test]
    fn a_config_named_before_the_command_is_read() {
        let dir = std::env::temp_dir().join(format!("cbtsim-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("c.toml");
        std::fs::write(&config, "[models]\ntherapist = \"scripted\"\n").unwrap();
        let line = format!(
            "cbtsim --config {} course --persona a --sessions 2",
            config.display()
        );
        let plan = from_legacy_argv(&argv(&line), "2026-11-20T10:00:00Z").unwrap();
        assert_eq!((plan.kind, plan.sessions), (PlanKind::Course, 2));
        assert_eq!(plan.models.therapist, "scripted");
        assert_eq!(plan.models.patient, "local");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_legacy_course_keeps_its_sessions_and_defaults() {
        let plan = from_legacy_argv(
            &argv("cbtsim course --persona alicia-rodriguez --sessions 4 --locale GB"),
            "2026-11-20T10:00:00Z",
        )
        .unwrap();
        assert_eq!(
            (plan.kind, plan.sessions, plan.first_session),
            (PlanKind::Course, 4, 1)
        );
        assert_eq!(plan.models.therapist, "local");
        assert!(plan.summaries);
        assert_eq!(plan.session.resources.locale, "GB");
        let error = from_legacy_argv(&argv("cbtsim course --sessions 2"), "2026-11-20T10:00:00Z")
            .unwrap_err();
        assert!(error.to_string().contains("--persona"), "{error}");
    }

    #[test]
    fn a_plan_round_trips_and_another_version_is_refused() {
        let plan = from_legacy_argv(
            &argv("cbtsim course --persona alicia-rodriguez"),
            "2026-11-20T10:00:00Z",
        )
        .unwrap();
        assert_eq!(RunPlan::from_json(&plan.to_json()).unwrap(), plan);
        let newer = plan.to_json().replace("\"version\":1", "\"version\":2");
        assert_eq!(
            RunPlan::from_json(&newer).unwrap_err(),
            PlanError::Version { found: 2 }
        );
    }

    #[test]
    fn the_configs_safety_model_is_in_the_plan_and_older_plans_have_none() {
        let config: Config = toml::from_str("[models]\nsafety = \"scripted\"\n").unwrap();
        let models = PlanModels::resolve(&config, None, [None, None, None]).unwrap();
        assert_eq!(models.safety.as_deref(), Some("scripted"));
        assert_eq!(
            models.spec(AgentRole::Safety).unwrap().to_string(),
            "scripted"
        );
        assert!(
            models
                .distinct()
                .iter()
                .any(|(_, roles)| roles.contains(&AgentRole::Safety))
        );
        let plan = from_legacy_argv(
            &argv("cbtsim course --persona alicia-rodriguez"),
            "2026-11-20T10:00:00Z",
        )
        .unwrap();
        let stored = serde_json::to_value(&plan.models).unwrap();
        assert!(
            stored.get("safety").is_none(),
            "no key when unset: {stored}"
        );
        assert_eq!(
            RunPlan::from_json(&plan.to_json()).unwrap().models.safety,
            None
        );
    }

    #[test]
    fn courses_of_a_grid_have_seeds_far_apart() {
        let mut plan = from_legacy_argv(
            &argv("cbtsim course --persona a --seed 5"),
            "2026-11-20T10:00:00Z",
        )
        .unwrap();
        plan.personas = vec!["a".into(), "b".into()];
        plan.repeats = 3;
        let courses = plan.courses();
        assert_eq!(courses.len(), 6);
        assert_eq!(courses[0].seed, 5);
        assert_eq!(
            courses[4],
            CourseSpec {
                index: 4,
                persona: 1,
                repeat: 1,
                seed: 4005
            }
        );
        assert_eq!(plan.total_sessions(), 18);
    }
}
