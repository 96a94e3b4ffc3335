//! `cbtsim run`, `course`, `batch`, `resume` and `worker`: flags become a
//! `RunPlan`, the library's runner (or worker) runs it, and this module
//! shows progress and results and turns the outcome into an exit code
//! (`code_of`, the one place that does).

use crate::progress::{self, Display};
use crate::{emit, existing_store, print_json, read};
use anyhow::{Context, Result};
use cbtsim::model::spec::{Config, ModelSpec, Models};
use cbtsim::plan::{PlanKind, PlanModels, RunPlan, SessionPlan};
use cbtsim::runner::{self, CourseStatus, RoleModels, RunOutcome, Runner};
use cbtsim::store::Store;
use cbtsim::text_format;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What `run`, `course` and `batch` share.
#[derive(clap::Args, Clone)]
pub struct SessionArgs {
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
    /// The store the session(s) are written to as they happen: a SQLite
    /// file, or a postgres:// URL (default: the XDG data folder's
    /// cbtsim/cbtsim.db).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Keep nothing: the session is only printed.
    #[arg(long, conflicts_with = "db")]
    no_store: bool,
    /// Print the result as JSON.
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
    /// Do not guide the therapist through the phases of a CBT session
    /// (check-in, agenda, a situation and its thoughts, evidence, summary,
    /// homework, feedback): for a therapist model under test.
    #[arg(long)]
    no_structure: bool,
}

#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// A library persona id (see `persona list`) or a persona TOML file.
    #[arg(long)]
    persona: String,
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
pub struct PlayArgs {
    /// The side you play; the model plays the other.
    #[arg(long = "as", value_parser = ["therapist", "patient"])]
    role: String,
    /// A library persona id (see `persona list`) or a persona TOML file.
    #[arg(long, required_unless_present = "course")]
    persona: Option<String>,
    /// Which session of a course this is (the first, with --sessions).
    #[arg(long, default_value_t = 1)]
    session_number: u32,
    /// Go on with a stored course (`cbtsim list` shows them): the next
    /// session after its last, with its persona, and its summaries,
    /// homework and the patient's mood carried over.
    #[arg(long, value_name = "ID", conflicts_with_all = ["persona", "session_number", "no_store"])]
    course: Option<i64>,
    /// Play a course: this many sessions one after another, each building
    /// on the summaries and homework of the ones before. Stopping between
    /// them (the end of input) leaves the rest to `cbtsim resume`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    sessions: u32,
    #[command(flatten)]
    common: SessionArgs,
}

#[derive(clap::Args, Clone)]
pub struct CourseArgs {
    /// A library persona id (see `persona list`) or a persona TOML file.
    #[arg(long)]
    persona: String,
    #[command(flatten)]
    common: SessionArgs,
    /// How many sessions.
    #[arg(long, default_value_t = 3)]
    sessions: u32,
}

#[derive(clap::Args, Clone)]
pub struct BatchArgs {
    /// `all` (the library), library ids separated by commas, a glob over
    /// library ids (`a*`), or a folder of persona files.
    #[arg(long)]
    personas: String,
    /// Sessions per course.
    #[arg(long, default_value_t = 1)]
    sessions: u32,
    /// Courses per persona.
    #[arg(long, default_value_t = 1)]
    repeats: u32,
    /// Courses run at once.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// Print the grid and an estimate of turns and tokens (and cost where
    /// the config has prices), check each model, and run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Queue the batch in the store and print its run id, without running
    /// it: `cbtsim worker` processes run it.
    #[arg(long, conflicts_with_all = ["dry_run", "no_store"])]
    detach: bool,
    #[command(flatten)]
    common: SessionArgs,
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// The store holding the queued batches: a postgres:// URL, or a
    /// SQLite file (default: the XDG data folder's cbtsim/cbtsim.db).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Courses run at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Exit when no queued batch has a course left to run (courses other
    /// workers are running count as left: their workers may die).
    #[arg(long)]
    until_idle: bool,
    /// How long a lease on a course lasts unless renewed (it is renewed
    /// three times as often): after a worker dies, its course waits this
    /// long before another worker takes it over.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease_seconds: u64,
    /// Run every role of the queued plans on this model instead of theirs
    /// (for instance the endpoints this machine reaches).
    #[arg(long)]
    model: Option<ModelSpec>,
    /// Print a JSON summary of the courses run at the end.
    #[arg(long)]
    json: bool,
}

/// Set by Ctrl-C; sessions stop after the turn in progress.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn install_ctrl_c() -> Result<()> {
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
    installed.context("cannot install the Ctrl-C handler")
}

/// Turns the flags into a plan.
fn plan(
    kind: PlanKind,
    personas: Vec<String>,
    args: &SessionArgs,
    config_file: Option<&Path>,
) -> Result<RunPlan> {
    let config = Config::load(config_file)?;
    let mut session = SessionPlan::new(&args.therapist_name, jiff::ZonedDateTime::now().datetime());
    session.apply_config(&config);
    session.max_turns = args.max_turns;
    session.candidates = args.candidates;
    if args.first_speaker == "therapist" {
        session.first_speaker = cbtsim::Speaker::Therapist;
    }
    session.token_budget = args.token_budget;
    session.time_budget_s = args.time_budget;
    session.structure = !args.no_structure;
    session.next_session = args.next_session.clone();
    session.therapist_prompt = match &args.therapist_prompt {
        Some(file) => Some(read(file)?),
        None => None,
    };
    session.resources = config
        .crisis_resources(&args.locale)
        .ok_or_else(|| cbtsim::plan::PlanError::UnknownLocale(args.locale.clone()))?;
    let models = PlanModels::resolve(
        &config,
        args.model.as_ref(),
        [
            args.therapist_model.as_ref(),
            args.patient_model.as_ref(),
            args.summarizer_model.as_ref(),
        ],
    )?;
    let mut plan = RunPlan::new(kind, personas, models, session, config);
    plan.seed = args.seed;
    Ok(plan)
}

pub fn run(args: RunArgs, config_file: Option<&Path>) -> Result<ExitCode> {
    let mut plan = plan(
        PlanKind::Run,
        vec![args.persona.clone()],
        &args.common,
        config_file,
    )?;
    plan.first_session = args.session_number;
    plan.summaries = !args.no_summary;
    start(plan, &args.common, args.out.as_deref()).map(ExitCode::from)
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// A secret every request must carry (Authorization: Bearer
    /// TOKEN, or ?token=TOKEN once in a browser, which sets a cookie).
    /// Prefer the CBTSIM_TOKEN variable: arguments show in `ps`. Over
    /// plain HTTP it travels in the clear: beyond one machine, put the
    /// app behind TLS (a tunnel).
    #[arg(long, env = "CBTSIM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The store (--db), and the settings of sessions played in the
    /// browser (the model, the number of turns, ...).
    #[command(flatten)]
    pub common: SessionArgs,
}

/// Serves the web app over a store until Ctrl-C.
pub fn serve(args: ServeArgs, config_file: Option<&Path>) -> Result<()> {
    if args.common.no_store || args.common.json {
        anyhow::bail!("serve shows a store: --no-store and --json have no meaning here");
    }
    let db = existing_store(args.common.db.clone())?;
    // Opened once now: a store that cannot be read is said at once.
    let shown = Store::open_to_read(&db)?.path().display().to_string();
    // The plan of a session played in the browser, but for its persona
    // and side; its models are checked now, and opened at the first play.
    // A model that cannot be used leaves play out, not the rest.
    let play = plan(PlanKind::Run, Vec::new(), &args.common, config_file)?;
    let play = match runner::check_models(&play, &mut Models::new(play.config.clone())) {
        Ok(()) => Some(play),
        Err(e) => {
            eprintln!("cbtsim: warning: serving without play in the browser: {e}");
            None
        }
    };
    let config = cbtsim::web::WebConfig {
        db,
        token: args.token,
        play,
        log: |message| eprintln!("cbtsim: serve: {message}"),
    };
    cbtsim::web::serve(args.addr, config, |bound| {
        eprintln!("cbtsim: serving {shown} at http://{bound}/ (Ctrl-C stops)")
    })?;
    Ok(())
}

/// A person plays one side of a session, typing their turns.
pub fn play(args: PlayArgs, config_file: Option<&Path>) -> Result<ExitCode> {
    let kind = match args.sessions {
        1 => PlanKind::Run,
        _ => PlanKind::Course,
    };
    let (persona, first_session, continues) = match args.course {
        Some(course) => {
            let (persona, next) = next_of_course(args.common.db.clone(), course)?;
            (persona, next, Some(course))
        }
        None => (
            args.persona.clone().unwrap_or_default(),
            args.session_number,
            None,
        ),
    };
    let mut plan = plan(kind, vec![persona], &args.common, config_file)?;
    plan.first_session = first_session;
    plan.sessions = args.sessions;
    plan.continues = continues;
    plan.played_by = Some(match args.role.as_str() {
        "therapist" => cbtsim::Speaker::Therapist,
        _ => cbtsim::Speaker::Patient,
    });
    eprintln!("cbtsim: you are the {}. {}", args.role, cbtsim::play::HELP);
    if let Some(course) = continues {
        eprintln!("cbtsim: session {first_session}, going on from course {course}");
    }
    start(plan, &args.common, None).map(ExitCode::from)
}

/// The persona of a stored course and the number of the session after
/// its last; a course with a session left unfinished is resumed first.
fn next_of_course(db: Option<PathBuf>, course: i64) -> Result<(String, u32)> {
    let store = Store::open(&existing_store(db)?)?;
    let stored = store.course(course)?;
    let sessions = store.course_sessions(course)?;
    if let Some(open) = sessions.iter().find(|s| s.resumable()) {
        anyhow::bail!(
            "session {} of course {course} is unfinished: `cbtsim resume` it first",
            open.session_number
        );
    }
    let id = stored.persona.id.clone();
    // The plan names a persona to read; the course's own snapshot is
    // only in the store.
    if cbtsim::persona::library_persona(&id).is_none() {
        anyhow::bail!(
            "course {course}'s persona {id:?} is not a library persona: play it with --persona FILE --session-number N"
        );
    }
    let last = sessions
        .iter()
        .map(|s| s.session_number)
        .max()
        .unwrap_or(stored.first_session - 1);
    Ok((id, last + 1))
}

/// The person at this terminal (or at the other end of stdin) as the
/// side of the session they play: one turn per line, with line editing
/// and history at a terminal.
fn person_at_stdin(role: cbtsim::Speaker) -> Arc<dyn cbtsim::model::ChatModel> {
    let prompt = format!("{}> ", role.label());
    // rustyline draws on stdout: only when both are the terminal.
    if std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
        && let Ok(editor) = rustyline::DefaultEditor::new()
    {
        let person = TerminalPerson { editor, prompt };
        return Arc::new(cbtsim::play::PersonModel::new(Box::new(person)));
    }
    // A line at a time, the lock on stdin taken for each (a held lock
    // could not move to the session's thread).
    let lines = std::iter::from_fn(|| {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    })
    // Ctrl-C while waiting for a line: the session stops there.
    .take_while(|_| !INTERRUPTED.load(Ordering::SeqCst));
    let prompted = PromptedLines {
        lines,
        prompt,
        first: true,
    };
    let person = cbtsim::play::LinePerson::new(prompted, |note: &str| eprintln!("cbtsim: {note}"));
    Arc::new(cbtsim::play::PersonModel::new(Box::new(person)))
}

/// A person at a terminal: rustyline's line editing and history.
struct TerminalPerson {
    editor: rustyline::DefaultEditor,
    prompt: String,
}

impl cbtsim::play::Person for TerminalPerson {
    fn turn(
        &mut self,
        _speaker: cbtsim::Speaker,
        _turns: &[cbtsim::Turn],
    ) -> cbtsim::play::PersonTurn {
        use cbtsim::play::{HELP, Line, PersonTurn, parse_line};
        loop {
            eprintln!();
            let line = match self.editor.readline(&self.prompt) {
                Ok(line) => line,
                // Ctrl-C (the terminal is raw while a line is edited, so it
                // arrives as a key, not a signal): stopped as by Ctrl-C
                // anywhere else, so `resume --all` goes no further.
                Err(rustyline::error::ReadlineError::Interrupted) => {
                    INTERRUPTED.store(true, Ordering::SeqCst);
                    return PersonTurn::Gone;
                }
                // Ctrl-D: the session stops here.
                Err(_) => return PersonTurn::Gone,
            };
            let _ = self.editor.add_history_entry(line.as_str());
            match parse_line(&line) {
                Line::Turn(text) => return PersonTurn::Said(text),
                Line::End => return PersonTurn::End,
                Line::Help => eprintln!("cbtsim: {HELP}"),
                Line::Blank => {}
                Line::Unknown(command) => eprintln!("cbtsim: unknown command {command}; {HELP}"),
            }
        }
    }
}

/// Lines read after a prompt on stderr (when stdin is a terminal).
struct PromptedLines<I> {
    lines: I,
    prompt: String,
    first: bool,
}

impl<I: Iterator<Item = String>> Iterator for PromptedLines<I> {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        if std::io::stdin().is_terminal() {
            if !self.first {
                eprintln!();
            }
            eprint!("{}", self.prompt);
        }
        self.first = false;
        self.lines.next()
    }
}

pub fn course(args: CourseArgs, config_file: Option<&Path>) -> Result<ExitCode> {
    let mut plan = plan(
        PlanKind::Course,
        vec![args.persona.clone()],
        &args.common,
        config_file,
    )?;
    plan.sessions = args.sessions;
    start(plan, &args.common, None).map(ExitCode::from)
}

pub fn batch(args: BatchArgs, config_file: Option<&Path>) -> Result<ExitCode> {
    let personas = cbtsim::persona::select(&args.personas)?;
    let mut plan = plan(PlanKind::Batch, personas, &args.common, config_file)?;
    plan.sessions = args.sessions;
    plan.repeats = args.repeats;
    plan.concurrency = args.concurrency;
    if args.dry_run {
        return dry_run(&plan, args.common.json);
    }
    if args.detach {
        return detach(plan, &args.common);
    }
    start(plan, &args.common, None).map(ExitCode::from)
}

/// Stores a batch as queued work and prints its run id.
fn detach(plan: RunPlan, args: &SessionArgs) -> Result<ExitCode> {
    plan.validate()?;
    // A model spec that cannot be used is said now, not by every worker.
    runner::check_models(&plan, &mut Models::new(plan.config.clone()))?;
    let mut store = Store::open(&args.db.clone().unwrap_or_else(cbtsim::store::default_path))?;
    let run = runner::create(&mut store, &plan)?;
    store.queue_run(run)?;
    let courses = store.courses(run)?.len();
    if args.json {
        print_json(&serde_json::json!({"run": run, "courses": courses, "queued": true}))?;
    } else {
        emit(&format!("{run}\n"))?;
    }
    eprintln!(
        "cbtsim: queued batch run {run} ({courses} courses) in {}; `cbtsim worker --db {}` runs it",
        store.path().display(),
        cbtsim::store::db_argument(store.path())
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs queued courses until Ctrl-C (or, with --until-idle, until none is
/// left).
pub fn worker(args: WorkerArgs, config_file: Option<&Path>) -> Result<ExitCode> {
    install_ctrl_c()?;
    let path = existing_store(args.db)?;
    let store = Mutex::new(Store::open(&path)?);
    let config = Config::load(config_file)?;
    let models = Mutex::new(Models::new(config));
    let leasing = cbtsim::worker::Leasing::for_this_process(std::time::Duration::from_secs(
        args.lease_seconds,
    ));
    eprintln!(
        "cbtsim: worker {} on {} ({} at once, leases of {} s)",
        leasing.owner,
        path.display(),
        args.concurrency,
        args.lease_seconds
    );
    let settings = cbtsim::worker::WorkerSettings {
        concurrency: args.concurrency,
        until_idle: args.until_idle,
        model: args.model.map(|m| m.to_string()),
        poll: std::time::Duration::from_secs(1),
        only_run: None,
    };
    let started = std::time::Instant::now();
    let clock = || started.elapsed();
    let outcome = cbtsim::worker::Worker {
        store: &store,
        models: &models,
        leasing: &leasing,
        settings: &settings,
        interrupted: &INTERRUPTED,
        observer: &progress::WorkerLog,
        clock: &clock,
    }
    .work()?;
    let finished = outcome.count(|s| *s == CourseStatus::Finished);
    let failed = outcome.count(|s| matches!(s, CourseStatus::Failed(_)));
    let short = outcome.courses.len() - finished - failed;
    eprintln!(
        "cbtsim: worker {} ran {} course(s): {finished} finished, {failed} failed, {short} stopped short",
        outcome.worker,
        outcome.courses.len()
    );
    if args.json {
        print_json(&outcome)?;
    }
    Ok(ExitCode::from(code_of(failed, short, false)))
}

/// Checks the models, stores the plan as a new run, and runs it.
fn start(plan: RunPlan, args: &SessionArgs, out: Option<&Path>) -> Result<u8> {
    plan.validate()?;
    // Before anything is stored: a model that cannot be used stops here.
    let models = open_models(&plan)?;
    let mut store = if args.no_store {
        Store::in_memory()?
    } else {
        Store::open(&args.db.clone().unwrap_or_else(cbtsim::store::default_path))?
    };
    let run = runner::create(&mut store, &plan)?;
    execute(store, run, &plan, &models, args.json, out)
}

/// A plan's models; the side a person plays is the person at stdin.
fn open_models(plan: &RunPlan) -> Result<RoleModels> {
    let mut models = RoleModels::open(plan, &mut Models::new(plan.config.clone()))?;
    match plan.played_by {
        Some(cbtsim::Speaker::Therapist) => {
            models.therapist = person_at_stdin(cbtsim::Speaker::Therapist)
        }
        Some(cbtsim::Speaker::Patient) => {
            models.patient = person_at_stdin(cbtsim::Speaker::Patient)
        }
        None => {}
    }
    Ok(models)
}

/// Which runs `cbtsim resume` continues.
pub enum ResumeTarget {
    Last,
    All,
    Run(i64),
}

/// Continues unfinished runs from their last stored turn, with the plans
/// they were started with.
pub fn resume(db: Option<PathBuf>, target: ResumeTarget, json: bool) -> Result<ExitCode> {
    let path = existing_store(db)?;
    let store = Store::open(&path)?;
    let runs = match target {
        ResumeTarget::Run(id) => vec![id],
        ResumeTarget::All => store.unfinished_runs()?,
        ResumeTarget::Last => store.unfinished_runs()?.into_iter().rev().take(1).collect(),
    };
    if runs.is_empty() {
        eprintln!("cbtsim: nothing to resume in {}", store.path().display());
        return Ok(ExitCode::SUCCESS);
    }
    drop(store);
    // Each run on its own: one that cannot be resumed does not keep the
    // others from it. The exit code is the worst of theirs.
    let mut code = 0;
    for run in runs {
        let resumed = (|| -> Result<u8> {
            let mut store = Store::open(&path)?;
            let plan = runner::load_plan(&mut store, run)?;
            // A played session needs its person: `--all` without a
            // terminal would stop each one again at once.
            if plan.played_by.is_some()
                && matches!(target, ResumeTarget::All)
                && !std::io::stdin().is_terminal()
            {
                eprintln!(
                    "cbtsim: run {run} is a played session: left for `cbtsim resume {run}` with its person at the terminal"
                );
                return Ok(0);
            }
            eprintln!(
                "cbtsim: resuming run {run} ({} of {}, {} session(s) each)",
                plan.kind.as_str(),
                plan.personas.join(", "),
                plan.sessions
            );
            let models = open_models(&plan)?;
            execute(store, run, &plan, &models, json, None)
        })();
        let this = resumed.unwrap_or_else(|e| {
            eprintln!("cbtsim: error: run {run}: {e:#}");
            2
        });
        code = code.max(this);
        if INTERRUPTED.load(Ordering::SeqCst) {
            break;
        }
    }
    Ok(ExitCode::from(code))
}

/// Runs a stored run and shows it as its kind is shown.
fn execute(
    store: Store,
    run: i64,
    plan: &RunPlan,
    models: &RoleModels,
    json: bool,
    out: Option<&Path>,
) -> Result<u8> {
    install_ctrl_c()?;
    let path = store.path().to_path_buf();
    let stored = path != Path::new(":memory:");
    let store = Mutex::new(store);
    // A played session shows the model's turns as they come, always.
    let stream = std::io::stdout().is_terminal() || plan.played_by.is_some();
    let display = Display::new(plan, models, json, stream);
    let started = std::time::Instant::now();
    let clock = || started.elapsed();
    let runner = Runner {
        store: &store,
        models,
        interrupted: &INTERRUPTED,
        observer: &display,
        clock: &clock,
        leasing: &cbtsim::worker::Leasing::for_this_process(cbtsim::worker::DEFAULT_LEASE),
    };
    let outcome = runner.execute(run, plan)?;
    display.finish(&outcome)?;
    if let Some(out) = out
        && let Some(session) = outcome.courses.first().and_then(|c| c.sessions.first())
    {
        std::fs::write(out, text_format::render(&session.transcript))
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    let code = exit_code(&outcome, stored.then_some(path.as_path()));
    if json {
        print_outcome_json(plan.kind, &outcome)?;
    }
    if stored && outcome.finished {
        eprintln!(
            "cbtsim: stored as run {run} in {} (see `cbtsim list`)",
            path.display()
        );
    }
    Ok(code)
}

/// `--json`: a run's session, a course's sessions, a batch's summary.
/// Nothing when a run stopped before its session began (the error is said).
fn print_outcome_json(kind: PlanKind, outcome: &RunOutcome) -> Result<()> {
    let sessions = || outcome.courses.iter().flat_map(|c| &c.sessions);
    match kind {
        PlanKind::Run => sessions().next().map_or(Ok(()), print_json),
        PlanKind::Course => print_json(&sessions().collect::<Vec<_>>()),
        PlanKind::Batch => print_json(&progress::batch_summary(outcome)),
    }
}

/// The exit code of a run, for every command that runs sessions: 130 after
/// Ctrl-C; 2 when a course failed (the store, a model; the errors are
/// printed); 1 when a backend failure stopped a session (resume continues
/// it); 0 when everything ran to its end.
fn exit_code(outcome: &RunOutcome, store: Option<&Path>) -> u8 {
    let failed = outcome.count(|s| matches!(s, CourseStatus::Failed(_)));
    let backend = outcome.count(|s| matches!(s, CourseStatus::BackendFailure(_)));
    for course in &outcome.courses {
        if let CourseStatus::Failed(error) = &course.status {
            eprintln!(
                "cbtsim: error: course {} ({}) failed: {error}",
                course.course.index + 1,
                course.course.persona
            );
        }
    }
    if !outcome.finished
        && let Some(store) = store
    {
        let db = if store == cbtsim::store::default_path() {
            String::new()
        } else {
            format!(" --db {}", cbtsim::store::db_argument(store))
        };
        eprintln!("cbtsim: stopped early; `cbtsim resume{db} --last` continues from the last turn");
    }
    let short = match outcome.finished {
        true => 0,
        false => backend.max(1),
    };
    // Without Ctrl-C, a course is interrupted when the person playing a
    // side stopped typing (the end of their input).
    let stopped = outcome.count(|s| *s == CourseStatus::Interrupted) > 0;
    code_of(failed, short, stopped)
}

/// 130 after Ctrl-C (or a person's input ended); 2 when a course failed;
/// 1 when one stopped short (a backend failure, another worker); 0 when
/// everything ran to its end.
fn code_of(failed: usize, stopped_short: usize, stopped_by_user: bool) -> u8 {
    if INTERRUPTED.load(Ordering::SeqCst) || stopped_by_user {
        130
    } else if failed > 0 {
        2
    } else if stopped_short > 0 {
        1
    } else {
        0
    }
}

/// `batch --dry-run`: the grid, an estimate, and a check of every model.
fn dry_run(plan: &RunPlan, json: bool) -> Result<ExitCode> {
    plan.validate()?;
    let estimate = cbtsim::estimate::estimate(plan)?;
    let mut models = Models::new(plan.config.clone());
    let checked = runner::check_models(plan, &mut models);
    if json {
        print_json(&serde_json::json!({
            "personas": plan.personas,
            "repeats": plan.repeats,
            "sessions_per_course": plan.sessions,
            "estimate": estimate,
            "models_ok": checked.is_ok(),
            "model_error": checked.as_ref().err().map(ToString::to_string),
        }))?;
    } else {
        emit(&progress::describe_estimate(plan, &estimate))?;
        match &checked {
            Ok(()) => emit("models: ok\n")?,
            Err(e) => emit(&format!("models: {e}\n"))?,
        }
    }
    Ok(match checked {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(2),
    })
}
