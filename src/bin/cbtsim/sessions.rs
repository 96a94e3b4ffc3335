//! `cbtsim run` and `cbtsim course`: setting up agents and printing sessions.

use crate::{emit, existing_store, print_json, read, resolve_persona};
use anyhow::{Context, Result};
use cbtsim::Persona;
use cbtsim::course::{self, Remembered};
use cbtsim::model::spec::{AgentRole, Config, ModelSpec, Models};
use cbtsim::session::{self, Agent, SessionConfig, SessionRecord, SessionSink};
use cbtsim::store::Store;
use cbtsim::termination::TerminationReason;
use cbtsim::text_format;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// What `run` and `course` share.
#[derive(clap::Args, Clone)]
pub struct SessionArgs {
    /// A library persona id (see `persona list`) or a persona TOML file.
    #[arg(long)]
    persona: String,
    /// The model for every role (default: the config's, else `local`).
    #[arg(long)]
    model: Option<ModelSpec>,
    #[arg(long)]
    therapist_model: Option<ModelSpec>,
    #[arg(long)]
    patient_model: Option<ModelSpec>,
    /// The model that writes session summaries.
    #[arg(long)]
    summarizer_model: Option<ModelSpec>,
    #[arg(long, default_value_t = 20)]
    max_turns: u32,
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// The store the session(s) are written to as they happen (default: the
    /// XDG data folder's cbtsim/cbtsim.db).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Keep nothing: the session is only printed.
    #[arg(long, conflicts_with = "db")]
    no_store: bool,
    /// Print the full record as JSON, with per-turn metadata.
    #[arg(long)]
    json: bool,
    /// The therapist's name.
    #[arg(long, default_value = "Nova")]
    therapist_name: String,
    /// A file with the therapist's description, replacing the built-in one
    /// ({name} and {next_session} are filled in).
    #[arg(long, value_name = "FILE")]
    therapist_prompt: Option<PathBuf>,
    /// When the next session is, in words (default: a week from now, same time).
    #[arg(long)]
    next_session: Option<String>,
    /// Country code for crisis resources (US, CA, GB, IE, AU, NZ, or the config's).
    #[arg(long, default_value = "US")]
    locale: String,
    /// Candidates sampled per turn on base models; the best usable one is kept.
    #[arg(long, default_value_t = 3)]
    candidates: u32,
    /// Who speaks first.
    #[arg(long, default_value = "patient", value_parser = ["patient", "therapist"])]
    first_speaker: String,
    /// End a session once this many tokens (prompt and completion) are used.
    #[arg(long, value_name = "TOKENS")]
    token_budget: Option<u64>,
    /// End a session after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    time_budget: Option<u64>,
}

#[derive(clap::Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    common: SessionArgs,
    /// Also write the transcript (text) to FILE.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Which session of a course this is.
    #[arg(long, default_value_t = 1)]
    session_number: u32,
    /// Skip the session summary.
    #[arg(long)]
    no_summary: bool,
}

#[derive(clap::Args, Clone)]
pub struct CourseArgs {
    #[command(flatten)]
    common: SessionArgs,
    /// How many sessions.
    #[arg(long, default_value_t = 3)]
    sessions: u32,
}

/// Set by Ctrl-C; the session stops after the turn in progress.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The models and settings a run or course uses.
struct Setup {
    persona: Persona,
    config: SessionConfig,
    models: Models,
    args: SessionArgs,
    stored: Option<Stored>,
    /// Where the patient stands as the next session starts.
    state: course::PatientState,
}

/// Where a run is being stored.
struct Stored {
    store: Store,
    run: i64,
    persona: i64,
    course: Option<i64>,
}

impl Setup {
    /// `persona` is given when a stored run continues: the snapshot taken
    /// when it started, not whatever the persona file says now.
    fn new(
        args: SessionArgs,
        config_file: Option<&Path>,
        persona: Option<Persona>,
    ) -> Result<Setup> {
        let persona = match persona {
            Some(persona) => persona,
            None => resolve_persona(&args.persona)?,
        };
        let settings = Config::load(config_file).map_err(anyhow::Error::msg)?;
        let resources = settings.crisis_resources(&args.locale).with_context(|| {
            format!(
                "no crisis resources for locale {:?}; known: US, CA, GB, IE, AU, NZ, or add \
                 [safety.locales.{}] to cbtsim.toml",
                args.locale, args.locale
            )
        })?;
        let prompt = match &args.therapist_prompt {
            Some(file) => Some(read(file)?),
            None => None,
        };
        let mut config = SessionConfig::new(session::prompt::TherapistProfile {
            name: args.therapist_name.clone(),
            prompt,
            next_session: next_session(args.next_session.as_deref(), 1)?,
        });
        config.max_turns = args.max_turns;
        config.seed = args.seed;
        config.candidates = args.candidates;
        config.resources = resources;
        config.token_budget = args.token_budget;
        config.time_budget = args.time_budget.map(std::time::Duration::from_secs);
        if args.first_speaker == "therapist" {
            config.first_speaker = cbtsim::Speaker::Therapist;
        }
        let s = &settings.session;
        if let Some(phrases) = &s.therapist_end_phrases {
            config.end_phrases.therapist = phrases.clone();
        }
        if let Some(phrases) = &s.patient_end_phrases {
            config.end_phrases.patient = phrases.clone();
        }
        config.min_turns = s.min_turns.unwrap_or(config.min_turns);
        config.wrap_up_turns = s.wrap_up_turns.unwrap_or(config.wrap_up_turns);

        static HANDLER: std::sync::Once = std::sync::Once::new();
        let mut installed = Ok(());
        HANDLER.call_once(|| {
            installed = ctrlc::set_handler(|| {
                if INTERRUPTED.swap(true, Ordering::SeqCst) {
                    std::process::exit(130);
                }
                eprintln!("cbtsim: stopping after this turn (Ctrl-C again to quit at once)");
            });
        });
        installed.context("cannot install the Ctrl-C handler")?;

        Ok(Setup {
            state: course::patient_state(&persona, 1, &[], args.seed),
            persona,
            config,
            models: Models::new(settings),
            args,
            stored: None,
        })
    }

    /// Opens the store (unless --no-store) and records the run and the persona.
    fn open_store(&mut self, command: &str, settings: serde_json::Value) -> Result<()> {
        if self.args.no_store {
            return Ok(());
        }
        let path = self
            .args
            .db
            .clone()
            .unwrap_or_else(cbtsim::store::default_path);
        let store = Store::open(&path)?;
        let run = store.start_run(command, &settings)?;
        let persona = store.save_persona(&self.persona)?;
        self.stored = Some(Stored {
            store,
            run,
            persona,
            course: None,
        });
        Ok(())
    }

    fn agent(&mut self, role: AgentRole) -> Result<Agent> {
        let explicit = match role {
            AgentRole::Therapist => self.args.therapist_model.as_ref(),
            AgentRole::Patient => self.args.patient_model.as_ref(),
            AgentRole::Summarizer => self.args.summarizer_model.as_ref(),
            AgentRole::Judge => None,
        };
        let model = self
            .models
            .for_role(role, explicit.or(self.args.model.as_ref()))?;
        Ok(Agent {
            conversation: model.conversation()?,
            model: model.describe(),
            chat: model.chat(),
        })
    }

    /// Runs one session with fresh conversations for both agents, storing
    /// each turn as it is spoken when there is a store; or, given a stored
    /// session and its turns, continues it.
    fn session(
        &mut self,
        stream: bool,
        continued: Option<(i64, Vec<cbtsim::Turn>)>,
    ) -> Result<(SessionRecord, Option<i64>)> {
        let mut therapist = self.agent(AgentRole::Therapist)?;
        let mut patient = self.agent(AgentRole::Patient)?;
        let (id, spoken) = match (continued, &self.stored) {
            (Some((id, spoken)), _) => (Some(id), spoken),
            (None, Some(s)) => (
                Some(s.store.start_session(
                    s.run,
                    s.course,
                    s.persona,
                    self.config.session_number,
                    &self.state,
                )?),
                Vec::new(),
            ),
            (None, None) => (None, Vec::new()),
        };
        let mut sink = Live {
            stream,
            count: spoken.len(),
            started: std::time::Instant::now(),
            store: self.stored.as_ref().map(|s| &s.store).zip(id),
        };
        let started = std::time::Instant::now();
        let clock = || started.elapsed();
        let record = session::resume(
            &self.persona,
            &mut therapist,
            &mut patient,
            &self.config,
            &spoken,
            &INTERRUPTED,
            &clock,
            &mut sink,
        )
        .map_err(anyhow::Error::msg)?;
        if let (Some(stored), Some(id)) = (self.stored.as_mut(), id) {
            let reason = record
                .transcript
                .termination
                .as_ref()
                .expect("a finished session has a reason");
            stored
                .store
                .finish_session(id, reason, &record.usage_by_role)?;
            for event in &record.safety_events {
                stored.store.add_safety_event(id, event)?;
            }
        }
        Ok((record, id))
    }

    /// Adds the summary to a finished session; a failure is reported and
    /// returned, never an empty summary.
    fn summarize(&mut self, record: &mut SessionRecord, id: Option<i64>) -> Result<Option<String>> {
        if stopped_short(record) {
            // The backend may be gone and the user may be waiting; `resume`
            // writes the summary once the session is done.
            return Ok(Some("not written: the session stopped early".into()));
        }
        let error = self.write_summary(record)?;
        if let (Some(stored), Some(id)) = (&self.stored, id) {
            let result = match (&record.transcript.summary, &error) {
                (Some(summary), _) => Ok(summary),
                (None, e) => Err(e.as_deref().unwrap_or("no summary")),
            };
            stored.store.set_summary(id, result)?;
            if let Some(share) = record
                .usage_by_role
                .iter()
                .find(|r| r.role == AgentRole::Summarizer)
            {
                stored.store.add_usage(id, share)?;
            }
        }
        Ok(error)
    }

    /// Writes the summary into the record, with what the summarizer used.
    fn write_summary(&mut self, record: &mut SessionRecord) -> Result<Option<String>> {
        if record.transcript.turns.is_empty() {
            return Ok(Some("the session has no turns to summarise".into()));
        }
        let mut summarizer = self.agent(AgentRole::Summarizer)?;
        eprintln!(
            "cbtsim: writing the summary of session {}",
            record.transcript.session_number
        );
        let mut usage = session::SessionUsage::default();
        let written = cbtsim::summarize::summarize(
            &mut *summarizer.conversation,
            &record.transcript,
            summarizer.chat,
            &mut usage,
        );
        record.usage += usage;
        record.usage_by_role.push(session::RoleUsage {
            role: AgentRole::Summarizer,
            model: summarizer.model,
            usage,
        });
        match written {
            Ok(summary) => {
                record.transcript.summary = Some(summary);
                Ok(None)
            }
            Err(e) => {
                eprintln!("cbtsim: warning: no summary: {e}");
                Ok(Some(e.to_string()))
            }
        }
    }
}

impl Setup {
    /// Sets up session `number` of a course: its seed, its date, and what
    /// it carries over from the sessions before.
    fn prepare_course_session(
        &mut self,
        number: u32,
        base_seed: u32,
        given_date: Option<&str>,
        remembered: &[Remembered],
    ) -> Result<()> {
        self.config.session_number = number;
        self.config.seed = base_seed.wrapping_add(number - 1);
        self.config.therapist.next_session = next_session(given_date, i64::from(number))?;
        self.state = course::patient_state(&self.persona, number, remembered, base_seed);
        self.config.mood = Some(self.state.mood);
        self.config.carry_over = course::carry_over(
            &self.persona,
            &self.config.therapist.name,
            number,
            remembered,
            &self.state,
        );
        Ok(())
    }

    /// What the rest of the course keeps of a session just run.
    fn remember(&self, record: &SessionRecord) -> Remembered {
        Remembered {
            session_number: record.transcript.session_number,
            summary: record.transcript.summary.clone(),
            disclosed_risk: !record.safety_events.is_empty(),
            mood: self.state.mood,
        }
    }

    fn finish_run(&self) -> Result<()> {
        if let Some(stored) = &self.stored {
            stored.store.finish_run(stored.run)?;
            eprintln!(
                "cbtsim: stored as run {} in {} (see `cbtsim list`)",
                stored.run,
                stored.store.path().display()
            );
        }
        Ok(())
    }
}

/// The settings a run was started with, kept with it in the store.
fn run_settings(args: &SessionArgs) -> serde_json::Value {
    serde_json::json!({
        // What `cbtsim resume` parses again, so a run continues exactly as
        // it was started.
        "argv": std::env::args().collect::<Vec<_>>(),
        "persona": args.persona,
        "model": args.model.as_ref().map(ToString::to_string),
        "therapist_model": args.therapist_model.as_ref().map(ToString::to_string),
        "patient_model": args.patient_model.as_ref().map(ToString::to_string),
        "summarizer_model": args.summarizer_model.as_ref().map(ToString::to_string),
        "max_turns": args.max_turns,
        "seed": args.seed,
        "therapist_name": args.therapist_name,
        "locale": args.locale,
        "candidates": args.candidates,
        "first_speaker": args.first_speaker,
        "token_budget": args.token_budget,
        "time_budget": args.time_budget,
    })
}

/// "Thursday 3 December 2026 at 14:00": `weeks` weeks from now, unless given.
fn next_session(given: Option<&str>, weeks: i64) -> Result<String> {
    if let Some(text) = given {
        return Ok(text.to_string());
    }
    let next = jiff::ZonedDateTime::now()
        .checked_add(jiff::Span::new().days(7 * weeks))
        .context("cannot compute the next session's date")?;
    Ok(next.strftime("%A %-d %B %Y at %H:%M").to_string())
}

/// Stores each turn as it is spoken, and prints it when stdout is a
/// terminal (progress on stderr otherwise).
struct Live<'a> {
    stream: bool,
    count: usize,
    started: std::time::Instant,
    store: Option<(&'a Store, i64)>,
}

impl SessionSink for Live<'_> {
    fn turn(&mut self, turn: &cbtsim::Turn) -> Result<(), String> {
        if let Some((store, session)) = self.store {
            store
                .add_turn(session, self.count, turn)
                .map_err(|e| format!("cannot store the turn: {e}"))?;
        }
        self.count += 1;
        if self.stream {
            let _ = emit(&format!("\n{}", text_format::render_turn(turn)));
        } else {
            eprintln!(
                "cbtsim: turn {} ({}) after {:.1} s",
                self.count,
                turn.speaker,
                self.started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    fn safety_event(&mut self, event: &session::SafetyEvent) -> Result<(), String> {
        eprintln!(
            "cbtsim: safety: turn {} flagged {} ({} risk); the therapist follows the protocol",
            event.turn, event.category, event.level
        );
        Ok(())
    }
}

/// The JSON record of one session.
#[derive(serde::Serialize)]
struct SessionOutput {
    #[serde(flatten)]
    transcript: cbtsim::Transcript,
    persona: String,
    seed: u32,
    safety_events: Vec<session::SafetyEvent>,
    usage: session::SessionUsage,
    usage_by_role: Vec<session::RoleUsage>,
    carry_over: session::CarryOver,
    /// The mood the session started with and how much homework was done.
    #[serde(flatten)]
    state: course::PatientState,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_error: Option<String>,
}

impl Setup {
    fn output(&self, record: SessionRecord, summary_error: Option<String>) -> SessionOutput {
        SessionOutput {
            transcript: record.transcript,
            persona: self.persona.id.clone(),
            seed: self.config.seed,
            safety_events: record.safety_events,
            usage: record.usage,
            usage_by_role: record.usage_by_role,
            carry_over: self.config.carry_over.clone(),
            state: self.state,
            summary_error,
        }
    }
}

/// Prints a finished session: the whole text, or (when its turns were
/// streamed) what follows them.
fn print_session(record: &SessionRecord, streamed: bool) -> Result<()> {
    let text = text_format::render(&record.transcript);
    if streamed {
        // The turns are on screen, each with its newline.
        let tail = text
            .find("\n\n\nTermination Details:")
            .map_or("", |at| &text[at + 1..]);
        emit(tail)
    } else {
        emit(&text)
    }
}

/// Whether a session stopped short (Ctrl-C, a failed backend): it has no
/// summary yet, later sessions of its course wait, and its run stays
/// unfinished for `cbtsim resume`.
fn stopped_short(record: &SessionRecord) -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
        || matches!(
            record.transcript.termination,
            Some(TerminationReason::Interrupted { .. } | TerminationReason::BackendFailure { .. })
        )
}

/// 0 when every session ran to its end; 130 after Ctrl-C; 1 when a backend
/// failure stopped the run.
fn exit_code(stopped: bool, stored: bool) -> ExitCode {
    if stopped && stored {
        eprintln!("cbtsim: stopped early; `cbtsim resume --last` continues from the last turn");
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        ExitCode::from(130)
    } else if stopped {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

pub fn run(args: RunArgs, config_file: Option<&Path>) -> Result<ExitCode> {
    let json = args.common.json;
    let settings = run_settings(&args.common);
    let mut setup = Setup::new(args.common, config_file, None)?;
    setup.config.session_number = args.session_number;
    setup.open_store("run", settings)?;
    let stream = std::io::stdout().is_terminal() && !json;
    if stream {
        emit(&format!("Session Number: {}\n", args.session_number))?;
    }
    let (mut record, id) = setup.session(stream, None)?;
    let summary_error = if args.no_summary {
        None
    } else {
        setup.summarize(&mut record, id)?
    };
    let stopped = stopped_short(&record);
    if !stopped {
        setup.finish_run()?;
    }
    if let Some(out) = &args.out {
        std::fs::write(out, text_format::render(&record.transcript))
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    if json {
        print_json(&setup.output(record, summary_error))?;
    } else {
        print_session(&record, stream)?;
    }
    Ok(exit_code(stopped, setup.stored.is_some()))
}

pub fn course(args: CourseArgs, config_file: Option<&Path>) -> Result<ExitCode> {
    let json = args.common.json;
    let base_seed = args.common.seed;
    let given_date = args.common.next_session.clone();
    let settings = run_settings(&args.common);
    let mut setup = Setup::new(args.common, config_file, None)?;
    setup.open_store("course", settings)?;
    if let Some(stored) = setup.stored.as_mut() {
        stored.course = Some(stored.store.start_course(
            stored.run,
            stored.persona,
            args.sessions,
        )?);
    }
    let stream = std::io::stdout().is_terminal() && !json;
    let mut remembered: Vec<Remembered> = Vec::new();
    let mut outputs = Vec::new();
    let mut stopped = false;
    for number in 1..=args.sessions {
        setup.prepare_course_session(number, base_seed, given_date.as_deref(), &remembered)?;
        if number > 1 && !json {
            emit("\n")?;
        }
        if stream {
            emit(&format!("Session Number: {number}\n"))?;
        }
        let (mut record, id) = setup.session(stream, None)?;
        let summary_error = setup.summarize(&mut record, id)?;
        if !json {
            print_session(&record, stream)?;
        }
        remembered.push(setup.remember(&record));
        stopped = stopped_short(&record);
        outputs.push(setup.output(record, summary_error));
        if stopped {
            break;
        }
    }
    if !stopped {
        setup.finish_run()?;
    }
    if json {
        print_json(&outputs)?;
    }
    Ok(exit_code(stopped, setup.stored.is_some()))
}

/// The command line of a stored run, parsed again.
#[derive(clap::Parser)]
#[command(name = "cbtsim")]
struct StoredCommandLine {
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: StoredCommand,
}

#[derive(clap::Subcommand)]
enum StoredCommand {
    Run(RunArgs),
    Course(CourseArgs),
}

/// Which runs `cbtsim resume` continues.
pub enum ResumeTarget {
    Last,
    All,
    Run(i64),
}

/// Continues unfinished runs from their last stored turn, with the
/// settings they were started with.
pub fn resume(db: Option<PathBuf>, target: ResumeTarget) -> Result<ExitCode> {
    use clap::Parser;
    let path = existing_store(db)?;
    let store = Store::open(&path)?;
    let runs = match target {
        ResumeTarget::Run(id) => vec![id],
        ResumeTarget::All => store.unfinished_runs()?,
        ResumeTarget::Last => store.unfinished_runs()?.into_iter().rev().take(1).collect(),
    };
    if runs.is_empty() {
        eprintln!("cbtsim: nothing to resume in {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    drop(store);
    for run in runs {
        let store = Store::open(&path)?;
        let (_, settings) = store.run_settings(run)?;
        let argv: Vec<String> = serde_json::from_value(settings["argv"].clone())
            .with_context(|| format!("run {run} did not record its command line"))?;
        let line = StoredCommandLine::try_parse_from(&argv)
            .with_context(|| format!("run {run}'s command line no longer parses: {argv:?}"))?;
        let parts = store.run_parts(run)?;
        let course = parts.course;
        eprintln!("cbtsim: resuming run {run} ({})", argv[1..].join(" "));
        let (common, no_summary, sessions_planned) = match line.command {
            StoredCommand::Run(args) => (args.common, args.no_summary, 1),
            StoredCommand::Course(args) => (args.common, false, args.sessions),
        };
        let base_seed = common.seed;
        let given_date = common.next_session.clone();
        let json = common.json;
        let mut setup = Setup::new(common, line.config.as_deref(), Some(parts.persona))?;
        setup.stored = Some(Stored {
            store,
            run,
            persona: parts.persona_row,
            course: course.map(|(id, _)| id),
        });
        let stream = std::io::stdout().is_terminal() && !json;
        let mut remembered: Vec<Remembered> = Vec::new();
        let states = setup
            .stored
            .as_ref()
            .expect("set above")
            .store
            .run_sessions(run)?;
        let planned = course.map_or(sessions_planned, |(_, planned)| planned);
        for number in 1..=planned {
            let state = states.iter().find(|s| s.session_number == number).cloned();
            if course.is_some() {
                setup.prepare_course_session(
                    number,
                    base_seed,
                    given_date.as_deref(),
                    &remembered,
                )?;
            } else {
                setup.config.session_number = number;
                setup.config.seed = base_seed.wrapping_add(number - 1);
            }
            let stored = setup.stored.as_mut().expect("set above");
            let resumable = |reason: &Option<String>| {
                reason.as_deref().is_none_or(|r| {
                    r == cbtsim::termination::INTERRUPTED
                        || r == cbtsim::termination::BACKEND_FAILURE
                })
            };
            let (mut record, id) = match &state {
                Some(state) if !resumable(&state.termination_reason) => {
                    let transcript = stored.store.transcript(state.id)?;
                    let record = SessionRecord {
                        transcript,
                        safety_events: Vec::new(),
                        usage: Default::default(),
                        usage_by_role: Vec::new(),
                    };
                    (record, Some(state.id))
                }
                Some(state) => {
                    stored.store.reopen_session(state.id)?;
                    let spoken = stored.store.transcript(state.id)?.turns;
                    eprintln!(
                        "cbtsim: session {number} continues after turn {}",
                        spoken.len()
                    );
                    setup.session(stream, Some((state.id, spoken)))?
                }
                None => setup.session(stream, None)?,
            };
            let needs_summary = state.as_ref().is_none_or(|s| {
                resumable(&s.termination_reason) || (!s.has_summary && s.summary_error.is_none())
            });
            if needs_summary && !no_summary {
                setup.summarize(&mut record, id)?;
            }
            if !json {
                print_session(&record, false)?;
            }
            let mut kept = setup.remember(&record);
            if let Some(state) = &state {
                // A finished session is read back, not run: what it was is stored.
                kept.disclosed_risk |= state.safety_events > 0;
                kept.mood = state.mood.unwrap_or(kept.mood);
            }
            remembered.push(kept);
            if stopped_short(&record) {
                return Ok(exit_code(true, true));
            }
        }
        setup.finish_run()?;
    }
    Ok(exit_code(false, true))
}
