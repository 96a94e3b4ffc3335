//! Choosing models: specs such as `local`, `local:PATH.gguf`,
//! `openai:MODEL`, `http://HOST:PORT/v1#MODEL` and `scripted[:FILE]`, and
//! the `cbtsim.toml` config file that names a model per role.

use super::default_model;
use super::embedded::{EmbeddedConfig, EmbeddedModel, MAX_PARALLEL};
use super::http::{HttpConfig, HttpModel, StructuredOutput};
use super::scripted::ScriptedModel;
use super::{ChatModel, ModelError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelSpec {
    /// `local` (the default model) or `local:PATH.gguf`.
    Local(Option<PathBuf>),
    /// `openai:MODEL`, on OpenAI's API (or `$OPENAI_BASE_URL`).
    OpenAi(String),
    /// `http://HOST:PORT/v1#MODEL`: any OpenAI-compatible server, with
    /// `?base` after the model when it is a base model: the agents then
    /// write text for it to continue (`/v1/completions`) instead of chat
    /// messages, as they do for the embedded model without a chat template.
    Http {
        base_url: String,
        model: String,
        base: bool,
    },
    /// `scripted` or `scripted:FILE`, each optionally with `?delay_ms=N`
    /// (every reply waits that long, so tests can stop work mid-way): for
    /// tests only.
    Scripted {
        script: Option<PathBuf>,
        delay_ms: Option<u64>,
    },
    /// `http://a/v1#M,http://b/v1#M`: several OpenAI-compatible endpoints
    /// serving one model, used as one (`pool.rs`).
    Pool(Vec<ModelSpec>),
}

/// The spec syntax, for error messages and help.
pub const SPEC_FORMS: &str = "local, local:PATH.gguf, openai:MODEL, http://HOST:PORT/v1#MODEL[?base] (several with the same MODEL, separated by commas, for endpoints serving one model), scripted[:FILE]";

/// A model spec that is none of `SPEC_FORMS`, or one that cannot be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("unknown model spec '{0}'; expected one of: {SPEC_FORMS}")]
    Unknown(String),
    /// A user and password in a server's address: specs are stored with
    /// the run's plan, in the clear.
    #[error(
        "a model address with a user or password ({0}) would be stored with the run: give the key in OPENAI_API_KEY (or the variable [http] api_key_env names)"
    )]
    Credentials(String),
}

impl FromStr for ModelSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<ModelSpec, SpecError> {
        let bad = || SpecError::Unknown(spec.to_string());
        if spec.contains(',') {
            let endpoints = spec
                .split(',')
                .map(|part| match part.trim().parse()? {
                    endpoint @ ModelSpec::Http { .. } => Ok(endpoint),
                    _ => Err(bad()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            // One model: the same name, and a base model on every one or none.
            let same = endpoints.windows(2).all(|pair| match pair {
                [
                    ModelSpec::Http {
                        model: a, base: x, ..
                    },
                    ModelSpec::Http {
                        model: b, base: y, ..
                    },
                ] => a == b && x == y,
                _ => false,
            });
            if !same {
                return Err(bad());
            }
            return Ok(ModelSpec::Pool(endpoints));
        }
        if spec == "local" {
            return Ok(ModelSpec::Local(None));
        }
        if let Some(path) = spec.strip_prefix("local:") {
            return Ok(ModelSpec::Local(Some(PathBuf::from(path))));
        }
        if let Some(model) = spec.strip_prefix("openai:") {
            return if model.is_empty() {
                Err(bad())
            } else {
                Ok(ModelSpec::OpenAi(model.into()))
            };
        }
        if spec.starts_with("http://") || spec.starts_with("https://") {
            let (base_url, model) = spec.split_once('#').unwrap_or((spec, "default"));
            let authority = base_url
                .split_once("://")
                .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
            if authority.contains('@') {
                let host = authority.rsplit('@').next().unwrap_or("");
                return Err(SpecError::Credentials(format!("…@{host}")));
            }
            // `?base` belongs after the model: `http://h/v1?base` is a typo.
            if base_url.contains('?') {
                return Err(bad());
            }
            let (model, base) = match model.split_once('?') {
                None => (model, false),
                Some((model, "base")) => (model, true),
                Some(_) => return Err(bad()),
            };
            if model.is_empty() {
                return Err(bad());
            }
            return Ok(ModelSpec::Http {
                base_url: base_url.trim_end_matches('/').into(),
                model: model.into(),
                base,
            });
        }
        if let Some(rest) = spec.strip_prefix("scripted") {
            let (script, query) = rest.split_once('?').unwrap_or((rest, ""));
            let script = match script {
                "" => None,
                s => Some(PathBuf::from(
                    s.strip_prefix(':')
                        .filter(|p| !p.is_empty())
                        .ok_or_else(bad)?,
                )),
            };
            let delay_ms = match query {
                "" => None,
                q => Some(
                    q.strip_prefix("delay_ms=")
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(bad)?,
                ),
            };
            return Ok(ModelSpec::Scripted { script, delay_ms });
        }
        Err(bad())
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSpec::Local(None) => f.write_str("local"),
            ModelSpec::Local(Some(path)) => write!(f, "local:{}", path.display()),
            ModelSpec::OpenAi(model) => write!(f, "openai:{model}"),
            ModelSpec::Http {
                base_url,
                model,
                base,
            } => {
                write!(f, "{base_url}#{model}")?;
                if *base {
                    f.write_str("?base")?;
                }
                Ok(())
            }
            ModelSpec::Pool(endpoints) => {
                for (i, endpoint) in endpoints.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{endpoint}")?;
                }
                Ok(())
            }
            ModelSpec::Scripted { script, delay_ms } => {
                f.write_str("scripted")?;
                if let Some(path) = script {
                    write!(f, ":{}", path.display())?;
                }
                if let Some(ms) = delay_ms {
                    write!(f, "?delay_ms={ms}")?;
                }
                Ok(())
            }
        }
    }
}

/// The agents that use models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentRole {
    Therapist,
    Patient,
    Summarizer,
    Judge,
    Safety,
}

impl AgentRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentRole::Therapist => "therapist",
            AgentRole::Patient => "patient",
            AgentRole::Summarizer => "summarizer",
            AgentRole::Judge => "judge",
            AgentRole::Safety => "safety",
        }
    }
}

impl From<crate::speaker::Speaker> for AgentRole {
    fn from(speaker: crate::speaker::Speaker) -> AgentRole {
        match speaker {
            crate::speaker::Speaker::Therapist => AgentRole::Therapist,
            crate::speaker::Speaker::Patient => AgentRole::Patient,
        }
    }
}

/// `cbtsim.toml`: a model per role and backend settings. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub models: RoleModels,
    #[serde(default)]
    pub embedded: EmbeddedSettings,
    #[serde(default)]
    pub http: HttpSettings,
    #[serde(default)]
    pub session: SessionSettings,
    #[serde(default)]
    pub safety: SafetySettings,
    /// `[prices."MODEL SPEC"] prompt = 0.15, completion = 0.60`: dollars
    /// per million tokens, for the cost in batch totals and estimates.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
}

/// Dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub prompt: f64,
    pub completion: f64,
}

impl Price {
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (self.prompt * prompt_tokens as f64 + self.completion * completion_tokens as f64) / 1e6
    }
}

/// `[session]`: how sessions run (the command line overrides).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// End-phrase regexes for the therapist's turns.
    pub therapist_end_phrases: Option<Vec<String>>,
    /// End-phrase regexes for the patient's turns.
    pub patient_end_phrases: Option<Vec<String>>,
    /// End phrases count only from this many turns on.
    pub min_turns: Option<u32>,
    /// Turns before the limit at which both agents are told to wrap up.
    pub wrap_up_turns: Option<u32>,
}

/// `[safety]`: crisis resources for locales cbtsim does not know, or to
/// replace its own: `[safety.locales.FR] crisis_line = "...", emergency = "112"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetySettings {
    #[serde(default)]
    pub locales: BTreeMap<String, LocaleResources>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocaleResources {
    pub crisis_line: String,
    pub emergency: String,
    #[serde(default)]
    pub abuse_line: Option<String>,
    #[serde(default)]
    pub child_line: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleModels {
    pub therapist: Option<String>,
    pub patient: Option<String>,
    pub summarizer: Option<String>,
    pub judge: Option<String>,
    /// The crisis detector's model layer (docs/safety.md).
    pub safety: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedSettings {
    pub context_size: Option<u32>,
    pub batch_size: Option<u32>,
    pub threads: Option<u32>,
    pub chat_template: Option<String>,
    pub exact_reuse: Option<bool>,
    pub parallel: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub api_key_env: Option<String>,
    pub connect_timeout_s: Option<f64>,
    pub read_timeout_s: Option<f64>,
    pub max_retries: Option<u32>,
    pub requests_per_minute: Option<u32>,
    pub max_concurrency: Option<u32>,
    pub stream: Option<bool>,
    /// How long an endpoint of several serving one model is left alone
    /// after a request to it failed (default 30 s).
    pub skip_failed_endpoint_s: Option<f64>,
}

pub const CONFIG_FILE: &str = "cbtsim.toml";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Reads `path`, or `cbtsim.toml` in the working directory when it
    /// exists, or gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match path {
            Some(path) => path.to_path_buf(),
            None if Path::new(CONFIG_FILE).is_file() => PathBuf::from(CONFIG_FILE),
            None => return Ok(Config::default()),
        };
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            message: e.to_string().trim().to_string(),
        })?;
        if let Some(parallel) = config.embedded.parallel
            && !(1..=MAX_PARALLEL).contains(&parallel)
        {
            return Err(ConfigError::Invalid {
                path,
                message: format!(
                    "[embedded] parallel = {parallel}: it must be from 1 (one request at a \
                     time) to {MAX_PARALLEL}"
                ),
            });
        }
        Ok(config)
    }

    /// The spec the config names for a role, if any.
    pub fn model_for(&self, role: AgentRole) -> Option<&str> {
        match role {
            AgentRole::Therapist => self.models.therapist.as_deref(),
            AgentRole::Patient => self.models.patient.as_deref(),
            AgentRole::Summarizer => self.models.summarizer.as_deref(),
            AgentRole::Judge => self.models.judge.as_deref(),
            AgentRole::Safety => self.models.safety.as_deref(),
        }
    }

    /// Crisis resources for a locale: the config's table first, then cbtsim's.
    pub fn crisis_resources(&self, locale: &str) -> Option<crate::safety::CrisisResources> {
        let configured = self
            .safety
            .locales
            .iter()
            .find(|(code, _)| code.eq_ignore_ascii_case(locale));
        match configured {
            Some((code, r)) => Some(crate::safety::CrisisResources {
                locale: code.to_uppercase(),
                crisis_line: r.crisis_line.clone(),
                emergency: r.emergency.clone(),
                abuse_line: r.abuse_line.clone(),
                child_line: r.child_line.clone(),
            }),
            None => crate::safety::resources_for(locale),
        }
    }

    pub fn embedded_config(&self) -> EmbeddedConfig {
        let defaults = EmbeddedConfig::default();
        let e = &self.embedded;
        EmbeddedConfig {
            context_size: e.context_size.unwrap_or(defaults.context_size),
            batch_size: e.batch_size.unwrap_or(defaults.batch_size),
            threads: e.threads.unwrap_or(defaults.threads),
            chat_template: e.chat_template.clone().or(defaults.chat_template),
            exact_reuse: e.exact_reuse.unwrap_or(defaults.exact_reuse),
            parallel: e.parallel.unwrap_or(defaults.parallel),
        }
    }

    pub fn http_config(&self, base_url: &str, model: &str) -> HttpConfig {
        let mut config = HttpConfig::new(base_url, model);
        let h = &self.http;
        if let Some(v) = &h.api_key_env {
            config.api_key_env = v.clone();
        }
        if let Some(v) = h.connect_timeout_s {
            config.connect_timeout = Duration::from_secs_f64(v);
        }
        if let Some(v) = h.read_timeout_s {
            config.read_timeout = Duration::from_secs_f64(v);
        }
        if let Some(v) = h.max_retries {
            config.max_retries = v;
        }
        config.requests_per_minute = h.requests_per_minute.or(config.requests_per_minute);
        if let Some(v) = h.max_concurrency {
            config.max_concurrency = v;
        }
        if let Some(v) = h.stream {
            config.stream = v;
        }
        config
    }
}

/// Opens models by spec, once each: roles that name the same spec share it
/// (and so, for the embedded backend, its weights).
#[derive(Default)]
pub struct Models {
    config: Config,
    opened: HashMap<ModelSpec, Arc<dyn ChatModel>>,
}

impl Models {
    pub fn new(config: Config) -> Models {
        Models {
            config,
            opened: HashMap::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The model for a role: the explicit spec if given, else the
    /// config's, else the default embedded model.
    pub fn for_role(
        &mut self,
        role: AgentRole,
        explicit: Option<&ModelSpec>,
    ) -> Result<Arc<dyn ChatModel>, ModelError> {
        let spec = match explicit {
            Some(spec) => spec.clone(),
            None => match self.config.model_for(role) {
                Some(text) => text
                    .parse()
                    .map_err(|e: SpecError| ModelError::Backend(e.to_string()))?,
                None => ModelSpec::Local(None),
            },
        };
        self.open(&spec)
    }

    /// Uses `model` wherever `spec` is named from now on (tests hand the
    /// runner a model they keep hold of).
    pub fn insert(&mut self, spec: ModelSpec, model: Arc<dyn ChatModel>) {
        self.opened.insert(spec, model);
    }

    /// Checks that the model a spec names can be used, without loading
    /// weights: a local file exists, a server answers (see
    /// `ChatModel::check`), a script can be read.
    pub fn check(&mut self, spec: &ModelSpec) -> Result<(), ModelError> {
        match spec {
            ModelSpec::Local(None) => default_model::locate()
                .map(|_| ())
                .map_err(|e| ModelError::ModelMissing(e.to_string())),
            ModelSpec::Local(Some(path)) if !path.is_file() => Err(ModelError::ModelMissing(
                format!("no model file at {}", path.display()),
            )),
            ModelSpec::Local(Some(_)) => Ok(()),
            _ => self.open(spec)?.check(),
        }
    }

    pub fn open(&mut self, spec: &ModelSpec) -> Result<Arc<dyn ChatModel>, ModelError> {
        if let Some(model) = self.opened.get(spec) {
            return Ok(model.clone());
        }
        let model: Arc<dyn ChatModel> = match spec {
            ModelSpec::Local(path) => {
                let path = match path {
                    Some(path) => path.clone(),
                    None => default_model::locate()
                        .map_err(|e| ModelError::ModelMissing(e.to_string()))?,
                };
                Arc::new(EmbeddedModel::load(&path, self.config.embedded_config())?)
            }
            ModelSpec::OpenAi(model) => {
                let base = std::env::var("OPENAI_BASE_URL")
                    .unwrap_or_else(|_| "https://api.openai.com/v1".into());
                let mut config = self.config.http_config(&base, model);
                config.extended_sampling = false;
                config.structured_output = StructuredOutput::JsonSchema;
                config.hosted = true;
                Arc::new(HttpModel::new(config)?)
            }
            ModelSpec::Http {
                base_url,
                model,
                base,
            } => {
                let mut config = self.config.http_config(base_url, model);
                config.chat = !base;
                Arc::new(HttpModel::new(config)?)
            }
            ModelSpec::Scripted { script, delay_ms } => {
                let model = match script {
                    None => ScriptedModel::new(Vec::<String>::new()),
                    Some(path) => ScriptedModel::from_file(path)?,
                };
                let delay = Duration::from_millis(delay_ms.unwrap_or(0));
                Arc::new(model.with_delay(delay))
            }
            ModelSpec::Pool(endpoints) => {
                let endpoints = endpoints
                    .iter()
                    .map(|e| self.open(e))
                    .collect::<Result<_, _>>()?;
                let skip_for = match self.config.http.skip_failed_endpoint_s {
                    None => super::pool::SKIP_FAILED_FOR,
                    Some(s) => Duration::try_from_secs_f64(s).map_err(|_| {
                        ModelError::Backend(format!(
                            "[http] skip_failed_endpoint_s = {s}: not a number of seconds"
                        ))
                    })?,
                };
                Arc::new(super::pool::PoolModel::new(endpoints, skip_for))
            }
        };
        self.opened.insert(spec.clone(), model.clone());
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for text in [
            "local",
            "local:/models/x.gguf",
            "openai:gpt-4o-mini",
            "http://127.0.0.1:8080/v1#gemma",
            "http://127.0.0.1:8080/v1#gemma?base",
            "scripted",
            "scripted:replies.txt",
            "scripted?delay_ms=20",
            "scripted:replies.txt?delay_ms=5",
            "http://10.0.0.1:8000/v1#llama,http://10.0.0.2:8000/v1#llama",
        ] {
            let spec: ModelSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
        assert_eq!(
            "http://localhost:1234/v1/".parse::<ModelSpec>().unwrap(),
            ModelSpec::Http {
                base_url: "http://localhost:1234/v1".into(),
                model: "default".into(),
                base: false,
            }
        );
        assert!(
            "http://127.0.0.1:8080/v1#gemma?chat"
                .parse::<ModelSpec>()
                .is_err()
        );
        assert!("http://127.0.0.1:8080/v1#".parse::<ModelSpec>().is_err());
        assert!(
            "http://127.0.0.1:8080/v1?base"
                .parse::<ModelSpec>()
                .is_err()
        );
        assert!("scripted?delay=5".parse::<ModelSpec>().is_err());
        // Only servers can serve one model together.
        assert!("http://a/v1#m,local".parse::<ModelSpec>().is_err());
        assert!("http://a/v1#m,".parse::<ModelSpec>().is_err());
        // A password in the address would be kept in the plan: refused,
        // without repeating it.
        let refused = "http://ana:s3cret@10.0.0.1:8000/v1#m".parse::<ModelSpec>();
        assert_eq!(
            refused,
            Err(SpecError::Credentials("…@10.0.0.1:8000".into()))
        );
        assert!(!refused.unwrap_err().to_string().contains("s3cret"));
        assert!("http://10.0.0.1:8000/v1#m@2".parse::<ModelSpec>().is_ok());
        // ... and serve one model, of one kind.
        assert!("http://a/v1#m,http://b/v1#n".parse::<ModelSpec>().is_err());
        assert!(
            "http://a/v1#m,http://b/v1#m?base"
                .parse::<ModelSpec>()
                .is_err()
        );
        assert!("scripted:".parse::<ModelSpec>().is_err());
        assert!("scriptedx".parse::<ModelSpec>().is_err());
        let error = "gguf:x".parse::<ModelSpec>().unwrap_err();
        assert!(error.to_string().contains("local:PATH.gguf"), "{error}");
    }

    #[test]
    fn a_base_model_over_http_is_given_text_and_an_instruct_model_chat() {
        // Opening an HTTP model asks no server; only its prompt kind differs.
        let mut models = Models::new(Config::default());
        let base = models
            .open(&"http://127.0.0.1:9/v1#m?base".parse().unwrap())
            .unwrap();
        let chat = models
            .open(&"http://127.0.0.1:9/v1#m".parse().unwrap())
            .unwrap();
        assert!(!base.chat());
        assert!(chat.chat());
        assert_eq!(base.describe(), "http://127.0.0.1:9/v1#m?base");
    }

    #[test]
    fn the_config_names_a_model_per_role() {
        let config: Config = toml::from_str(
            "[models]\ntherapist = \"openai:gpt-4o\"\npatient = \"local\"\n[embedded]\nthreads = 2\n",
        )
        .unwrap();
        assert_eq!(
            config.model_for(AgentRole::Therapist),
            Some("openai:gpt-4o")
        );
        assert_eq!(config.model_for(AgentRole::Judge), None);
        assert_eq!(config.embedded_config().threads, 2);
        let config: Config =
            toml::from_str("[safety.locales.FR]\ncrisis_line = \"le 3114\"\nemergency = \"112\"\n")
                .unwrap();
        assert_eq!(
            config.crisis_resources("fr").unwrap().crisis_line,
            "le 3114"
        );
        assert!(
            config
                .crisis_resources("US")
                .unwrap()
                .crisis_line
                .contains("988")
        );
        let error = toml::from_str::<Config>("[models]\ntherapy = \"local\"\n").unwrap_err();
        assert!(error.to_string().contains("therapy"), "{error}");
    }

    #[test]
    fn parallel_is_read_and_checked_when_the_config_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        std::fs::write(&path, "[embedded]\nparallel = 4\n").unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.embedded_config().parallel, 4);
        assert_eq!(Config::default().embedded_config().parallel, 1);
        for bad in [0, MAX_PARALLEL + 1] {
            std::fs::write(&path, format!("[embedded]\nparallel = {bad}\n")).unwrap();
            let error = Config::load(Some(&path)).unwrap_err().to_string();
            assert!(error.contains(CONFIG_FILE), "{error}");
            assert!(error.contains(&format!("parallel = {bad}")), "{error}");
        }
    }

    #[test]
    fn roles_naming_the_same_spec_share_one_model() {
        let mut models = Models::new(Config::default());
        let spec: ModelSpec = "scripted".parse().unwrap();
        let a = models.for_role(AgentRole::Therapist, Some(&spec)).unwrap();
        let b = models.for_role(AgentRole::Patient, Some(&spec)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }
}
