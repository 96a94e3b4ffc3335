//! The runner as a library, under the scripted model: no process is
//! spawned, and time is a clock that stands still, so what a run stores is
//! a function of its plan.

use cbtsim::model::spec::{Config, ModelSpec, Models};
use cbtsim::model::{
    ChatModel, Completion, Conversation, ModelError, Prompt, Request, scripted::ScriptedModel,
};
use cbtsim::plan::{PlanKind, PlanModels, RunPlan, SessionPlan};
use cbtsim::runner::{
    self, CourseInfo, CourseStatus, RoleModels, RunObserver, RunOutcome, Runner, Unobserved,
};
use cbtsim::store::Store;
use cbtsim::{Transcript, Turn};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn plan(kind: PlanKind, personas: &[&str], model: &str) -> RunPlan {
    let planned_at = "2026-11-26T10:00:00".parse().unwrap();
    let mut session = SessionPlan::new("Nova", planned_at);
    session.max_turns = 6;
    let config = Config::default();
    let spec: ModelSpec = model.parse().unwrap();
    let models = PlanModels::resolve(&config, Some(&spec), [None, None, None]).unwrap();
    RunPlan::new(
        kind,
        personas.iter().map(|p| p.to_string()).collect(),
        models,
        session,
        config,
    )
}

/// The models of a plan, with `model` standing for the plan's spec.
fn models(plan: &RunPlan, model: Arc<dyn ChatModel>) -> RoleModels {
    let mut models = Models::new(Config::default());
    models.insert(plan.models.therapist.parse().unwrap(), model);
    RoleModels::open(plan, &mut models).unwrap()
}

/// Runs (or continues) `run` of `plan` to its end or until `interrupted`.
fn execute(
    store: &Mutex<Store>,
    run: i64,
    plan: &RunPlan,
    models: &RoleModels,
    interrupted: &AtomicBool,
    observer: &dyn RunObserver,
) -> RunOutcome {
    let clock = || Duration::ZERO;
    Runner {
        store,
        models,
        interrupted,
        observer,
        clock: &clock,
        leasing: &cbtsim::worker::Leasing::for_this_process(cbtsim::worker::DEFAULT_LEASE),
    }
    .execute(run, plan)
    .unwrap()
}

fn new_run(plan: &RunPlan) -> (Mutex<Store>, i64) {
    let mut store = Store::in_memory().unwrap();
    let run = runner::create(&mut store, plan).unwrap();
    (Mutex::new(store), run)
}

/// Every stored session's transcript, in order, with the ids left out.
fn stored(store: &Mutex<Store>) -> Vec<(Option<i64>, Transcript)> {
    let store = store.lock().unwrap();
    store
        .sessions(None)
        .unwrap()
        .into_iter()
        .map(|s| (s.course, s.transcript))
        .collect()
}

fn run_to_end(plan: &RunPlan) -> (Mutex<Store>, RunOutcome) {
    let (store, run) = new_run(plan);
    let models = models(plan, Arc::new(ScriptedModel::new(Vec::<String>::new())));
    let outcome = execute(
        &store,
        run,
        plan,
        &models,
        &AtomicBool::new(false),
        &Unobserved,
    );
    (store, outcome)
}

#[test]
fn a_plan_of_each_shape_runs_to_its_end() {
    // One session, numbered 3.
    let mut single = plan(PlanKind::Run, &["samuel-okafor"], "scripted");
    single.first_session = 3;
    let (store, outcome) = run_to_end(&single);
    assert!(outcome.finished);
    let sessions = stored(&store);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].1.session_number, 3);
    assert_eq!(sessions[0].1.turns.len(), 6);
    assert!(sessions[0].1.summary.is_some());

    // A course of three: each session after the first carries the one before.
    let mut course = plan(PlanKind::Course, &["alicia-rodriguez"], "scripted");
    course.sessions = 3;
    let (store, outcome) = run_to_end(&course);
    assert!(outcome.finished);
    let numbers: Vec<u32> = stored(&store)
        .iter()
        .map(|(_, t)| t.session_number)
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    let results = &outcome.courses[0].sessions;
    assert!(results[0].carry_over.therapist.is_empty());
    assert!(!results[1].carry_over.therapist.is_empty());

    // A grid: 2 personas x 2 repeats x 2 sessions, 2 courses at a time.
    let mut grid = plan(
        PlanKind::Batch,
        &["alicia-rodriguez", "samuel-okafor"],
        "scripted",
    );
    grid.repeats = 2;
    grid.sessions = 2;
    grid.concurrency = 2;
    let (store, outcome) = run_to_end(&grid);
    assert!(outcome.finished);
    assert_eq!(outcome.courses.len(), 4);
    let personas: Vec<(&str, u32)> = outcome
        .courses
        .iter()
        .map(|c| (c.course.persona.as_str(), c.course.repeat))
        .collect();
    assert_eq!(
        personas,
        [
            ("alicia-rodriguez", 0),
            ("alicia-rodriguez", 1),
            ("samuel-okafor", 0),
            ("samuel-okafor", 1)
        ]
    );
    let sessions = stored(&store);
    assert_eq!(sessions.len(), 8);
    for course in &outcome.courses {
        let numbers: Vec<u32> = sessions
            .iter()
            .filter(|(c, _)| *c == Some(course.course.id))
            .map(|(_, t)| t.session_number)
            .collect();
        assert_eq!(numbers, [1, 2], "course {}", course.course.id);
    }
    // Each course has its own seed, derived from the plan's.
    let seeds: Vec<u32> = outcome.courses.iter().map(|c| c.sessions[0].seed).collect();
    assert_eq!(seeds, [0, 1000, 2000, 3000]);
    assert!(
        outcome
            .tokens
            .iter()
            .any(|t| t.role == "summarizer" && t.completion_tokens > 0),
        "{:?}",
        outcome.tokens
    );
}

/// Sets the interrupt flag once `after` turns have been stored.
struct StopAfter<'a> {
    after: usize,
    seen: AtomicUsize,
    flag: &'a AtomicBool,
}

impl RunObserver for StopAfter<'_> {
    fn turn(&self, _: &CourseInfo, _: u32, _: usize, _: &Turn) {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_plan_interrupted_and_resumed_stores_exactly_what_an_uninterrupted_one_does() {
    let mut course = plan(PlanKind::Course, &["alicia-rodriguez"], "scripted");
    course.sessions = 3;
    let (whole, _) = run_to_end(&course);

    // Stopped at several points: mid-session, at a session's last turn, late.
    for after in [2, 6, 9, 16] {
        let (store, run) = new_run(&course);
        let model: Arc<dyn ChatModel> = Arc::new(ScriptedModel::new(Vec::<String>::new()));
        let models = models(&course, model);
        let flag = AtomicBool::new(false);
        let stop = StopAfter {
            after,
            seen: AtomicUsize::new(0),
            flag: &flag,
        };
        let outcome = execute(&store, run, &course, &models, &flag, &stop);
        assert!(!outcome.finished, "stopped after {after} turns");
        assert_eq!(outcome.courses[0].status, CourseStatus::Interrupted);
        let kept: usize = stored(&store).iter().map(|(_, t)| t.turns.len()).sum();
        assert_eq!(kept, after);

        flag.store(false, Ordering::SeqCst);
        let outcome = execute(&store, run, &course, &models, &flag, &Unobserved);
        assert!(outcome.finished);
        assert_eq!(
            stored(&store),
            stored(&whole),
            "stopped after {after} turns"
        );
        assert!(store.lock().unwrap().unfinished_runs().unwrap().is_empty());
    }
}

#[test]
fn resuming_a_single_run_of_session_three_continues_session_three() {
    let mut single = plan(PlanKind::Run, &["samuel-okafor"], "scripted");
    single.first_session = 3;
    let (store, run) = new_run(&single);
    let models = models(&single, Arc::new(ScriptedModel::new(Vec::<String>::new())));
    let flag = AtomicBool::new(false);
    let stop = StopAfter {
        after: 2,
        seen: AtomicUsize::new(0),
        flag: &flag,
    };
    execute(&store, run, &single, &models, &flag, &stop);
    flag.store(false, Ordering::SeqCst);
    let outcome = execute(&store, run, &single, &models, &flag, &Unobserved);
    assert!(outcome.finished);
    let sessions = stored(&store);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].1.session_number, 3);
    assert_eq!(sessions[0].1.turns.len(), 6);
}

/// Counts the courses running at once.
#[derive(Default)]
struct Concurrency {
    running: AtomicUsize,
    most: AtomicUsize,
}

impl RunObserver for Concurrency {
    fn course_started(&self, _: &CourseInfo) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }
    fn course_finished(&self, _: &CourseInfo, _: &CourseStatus) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn courses_run_at_most_concurrency_at_a_time() {
    let mut grid = plan(PlanKind::Batch, &["a*", "samuel-okafor"], "scripted");
    grid.personas = cbtsim::persona::select("alicia-rodriguez,aroha-ngata,samuel-okafor").unwrap();
    grid.repeats = 2;
    grid.concurrency = 3;
    grid.summaries = false;
    let (store, run) = new_run(&grid);
    // Slow replies, so that courses overlap.
    let model = ScriptedModel::new(Vec::<String>::new()).with_delay(Duration::from_millis(5));
    let models = models(&grid, Arc::new(model));
    let counted = Concurrency::default();
    let outcome = execute(
        &store,
        run,
        &grid,
        &models,
        &AtomicBool::new(false),
        &counted,
    );
    assert!(outcome.finished);
    assert_eq!(outcome.courses.len(), 6);
    assert_eq!(stored(&store).len(), 6);
    let most = counted.most.load(Ordering::SeqCst);
    assert!((2..=3).contains(&most), "{most} courses at once");
}

/// A model whose server fails for one persona's sessions (its prompts name
/// her), as a model server might for one overlong prompt.
struct FailsFor(&'static str, ScriptedModel);

impl ChatModel for FailsFor {
    fn describe(&self) -> String {
        "scripted".into()
    }
    fn conversation(&self) -> Result<Box<dyn Conversation>, ModelError> {
        Ok(Box::new(FailingConversation(self.0, self.1.clone())))
    }
}

struct FailingConversation(&'static str, ScriptedModel);

impl Conversation for FailingConversation {
    fn stream(
        &mut self,
        request: &Request,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError> {
        let text = match &request.prompt {
            Prompt::Text(text) => text.clone(),
            Prompt::Chat(messages) => messages.iter().map(|m| m.content.as_str()).collect(),
        };
        if text.contains(self.0) {
            return Err(ModelError::Server {
                status: 500,
                message: "the model server failed".into(),
            });
        }
        self.1.stream(request, on_delta)
    }
}

#[test]
fn a_failing_course_does_not_stop_the_others_and_resume_retries_it() {
    let mut grid = plan(
        PlanKind::Batch,
        &["alicia-rodriguez", "samuel-okafor", "mei-lin-chen"],
        "scripted",
    );
    grid.concurrency = 2;
    grid.sessions = 2;
    let (store, run) = new_run(&grid);
    let scripted = ScriptedModel::new(Vec::<String>::new());
    let failing = models(&grid, Arc::new(FailsFor("Samuel", scripted.clone())));
    let flag = AtomicBool::new(false);
    let outcome = execute(&store, run, &grid, &failing, &flag, &Unobserved);
    assert!(!outcome.finished);
    let statuses: Vec<&CourseStatus> = outcome.courses.iter().map(|c| &c.status).collect();
    assert_eq!(statuses[0], &CourseStatus::Finished);
    assert!(matches!(statuses[1], CourseStatus::BackendFailure(e) if e.contains("500")));
    assert_eq!(statuses[2], &CourseStatus::Finished);
    assert_eq!(
        stored(&store).len(),
        5,
        "two courses of 2 and the failed first session"
    );

    // The server is mended: resuming finishes only what was left.
    let mended = models(&grid, Arc::new(scripted));
    let outcome = execute(&store, run, &grid, &mended, &flag, &Unobserved);
    assert!(outcome.finished);
    let sessions = stored(&store);
    assert_eq!(sessions.len(), 6);
    for (_, transcript) in &sessions {
        assert_eq!(transcript.turns.len(), 6);
        assert!(transcript.summary.is_some());
    }
}

#[test]
fn a_run_stored_before_plans_is_given_one_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v3.db");
    {
        // A store of schema 3, as cbtsim wrote it: a `run` with its command
        // line, its persona, and session 3 cut off after two turns.
        let conn = rusqlite::Connection::open(&db).unwrap();
        for migration in &cbtsim::store::MIGRATIONS[..3] {
            conn.execute_batch(migration).unwrap();
        }
        let persona = cbtsim::persona::resolve("samuel-okafor").unwrap();
        let argv = [
            "cbtsim",
            "run",
            "--persona",
            "samuel-okafor",
            "--session-number",
            "3",
            "--max-turns",
            "6",
            "--model",
            "scripted",
            "--db",
            "r.db",
        ];
        conn.execute_batch(&format!(
            "PRAGMA user_version = 3;
             INSERT INTO runs (id, command, settings, started_at) VALUES (1, 'run', '{}', '2026-11-20T10:00:00Z');
             INSERT INTO personas (id, persona_id, snapshot) VALUES (1, 'samuel-okafor', '{}');
             INSERT INTO sessions (id, run_id, persona, session_number, started_at, phq9, gad7)
                 VALUES (1, 1, 1, 3, '2026-11-20T10:00:00Z', 14, 10);
             INSERT INTO turns VALUES (1, 0, 'patient', 'Hello.', '{{}}');
             INSERT INTO turns VALUES (1, 1, 'therapist', 'Hello, how are you?', '{{}}');",
            serde_json::json!({ "argv": argv }).to_string().replace('\'', "''"),
            serde_json::to_string(&persona).unwrap().replace('\'', "''"),
        ))
        .unwrap();
    }
    let mut store = Store::open(&db).unwrap();
    assert_eq!(store.unfinished_runs().unwrap(), [1]);
    let plan = runner::load_plan(&mut store, 1).unwrap();
    assert_eq!(
        (plan.kind, plan.first_session, plan.sessions),
        (PlanKind::Run, 3, 1)
    );
    assert_eq!(plan.session.max_turns, 6);
    let store = Mutex::new(store);
    let models = models(&plan, Arc::new(ScriptedModel::new(Vec::<String>::new())));
    let outcome = execute(
        &store,
        1,
        &plan,
        &models,
        &AtomicBool::new(false),
        &Unobserved,
    );
    assert!(outcome.finished);
    let sessions = stored(&store);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].1.session_number, 3);
    assert_eq!(sessions[0].1.turns.len(), 6);
    assert_eq!(sessions[0].1.turns[1].text, "Hello, how are you?");
    // The plan is kept: the next load reads it, not the command line.
    let mut store = store.into_inner().unwrap();
    assert!(matches!(
        store.run_plan(1).unwrap(),
        cbtsim::store::StoredPlan::Plan(_)
    ));
    assert_eq!(runner::load_plan(&mut store, 1).unwrap(), plan);
}

super::test_db::on_both_stores!(
    a_stored_row_that_does_not_decode_is_an_error_naming_it,
    a_run_is_run_by_one_process_at_a_time,
);

fn a_stored_row_that_does_not_decode_is_an_error_naming_it(test_db: super::test_db::TestDb) {
    // In a real store, so that rows can be damaged behind the store's back.
    let db = std::path::Path::new(test_db.db());
    let mut file_store = Store::open(db).unwrap();
    let plan = plan(PlanKind::Run, &["samuel-okafor"], "scripted");
    let run = runner::create(&mut file_store, &plan).unwrap();
    let file_store = Mutex::new(file_store);
    let models = models(&plan, Arc::new(ScriptedModel::new(Vec::<String>::new())));
    execute(
        &file_store,
        run,
        &plan,
        &models,
        &AtomicBool::new(false),
        &Unobserved,
    );
    drop(file_store);
    test_db.execute(
        "UPDATE turns SET speaker = 'narrator' WHERE position = 2;
         UPDATE turns SET meta = '{not json' WHERE position = 4;",
    );
    let store = Store::open(db).unwrap();
    let error = store.transcript(1).unwrap_err().to_string();
    assert!(
        error.contains("turns row session 1 position 2") && error.contains("narrator"),
        "{error}"
    );
    test_db.execute("UPDATE turns SET speaker = 'patient' WHERE position = 2");
    let error = store.transcript(1).unwrap_err().to_string();
    assert!(
        error.contains("position 4") && error.contains("metadata"),
        "{error}"
    );
}

fn a_run_is_run_by_one_process_at_a_time(test_db: super::test_db::TestDb) {
    let db = std::path::Path::new(test_db.db());
    let plan = plan(PlanKind::Run, &["samuel-okafor"], "scripted");
    let mut store = Store::open(db).unwrap();
    let run = runner::create(&mut store, &plan).unwrap();
    // Another process (here: another handle on the store) holds the run.
    let other = Store::open(db).unwrap();
    let claim = other.claim_run(run).unwrap();
    let store = Mutex::new(store);
    let models = models(&plan, Arc::new(ScriptedModel::new(Vec::<String>::new())));
    let clock = || Duration::ZERO;
    let runner = Runner {
        store: &store,
        models: &models,
        interrupted: &AtomicBool::new(false),
        observer: &Unobserved,
        clock: &clock,
        leasing: &cbtsim::worker::Leasing::for_this_process(cbtsim::worker::DEFAULT_LEASE),
    };
    let error = runner.execute(run, &plan).unwrap_err().to_string();
    assert!(
        error.contains("being run by another cbtsim process"),
        "{error}"
    );
    assert!(stored(&store).is_empty(), "nothing was run");
    drop(claim);
    assert!(runner.execute(run, &plan).unwrap().finished);
    let lock = format!("{}.run-{run}.lock", db.display());
    assert!(
        !std::path::Path::new(&lock).exists(),
        "a finished run leaves no lock file"
    );
    // The claim is given up with its holder: claimed again, it is again
    // one at a time.
    let held = other.claim_run(run).unwrap();
    assert!(other.claim_run(run).is_err(), "one claim at a time");
    held.release_finished();
}

/// A summarizer whose server is down until `up` is set.
struct SummariesDown(ScriptedModel, Arc<AtomicBool>);

impl ChatModel for SummariesDown {
    fn describe(&self) -> String {
        "scripted".into()
    }
    fn conversation(&self) -> Result<Box<dyn Conversation>, ModelError> {
        Ok(Box::new(SummariesDownConversation(
            self.0.clone(),
            self.1.clone(),
        )))
    }
}

struct SummariesDownConversation(ScriptedModel, Arc<AtomicBool>);

impl Conversation for SummariesDownConversation {
    fn stream(
        &mut self,
        request: &Request,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError> {
        if request.json_schema.is_some() && !self.1.load(Ordering::SeqCst) {
            return Err(ModelError::Unreachable("connection refused".into()));
        }
        self.0.stream(request, on_delta)
    }
}

#[test]
fn a_summary_lost_to_a_server_gone_away_is_written_on_resume() {
    let mut course = plan(PlanKind::Course, &["alicia-rodriguez"], "scripted");
    course.sessions = 2;
    let (store, run) = new_run(&course);
    let up = Arc::new(AtomicBool::new(false));
    let model = Arc::new(SummariesDown(
        ScriptedModel::new(Vec::<String>::new()),
        up.clone(),
    ));
    let models = models(&course, model);
    let flag = AtomicBool::new(false);
    let outcome = execute(&store, run, &course, &models, &flag, &Unobserved);
    assert!(!outcome.finished);
    assert!(
        matches!(&outcome.courses[0].status, CourseStatus::BackendFailure(e) if e.contains("connection refused")),
        "{:?}",
        outcome.courses[0].status
    );
    let sessions = stored(&store);
    assert_eq!(sessions.len(), 1, "session 2 waits for session 1's summary");
    assert!(sessions[0].1.summary.is_none());

    up.store(true, Ordering::SeqCst);
    let outcome = execute(&store, run, &course, &models, &flag, &Unobserved);
    assert!(outcome.finished);
    let sessions = stored(&store);
    assert_eq!(sessions.len(), 2);
    assert!(sessions.iter().all(|(_, t)| t.summary.is_some()));
    assert_eq!(
        sessions[0].1.turns.len(),
        6,
        "session 1 was read back, not run again"
    );
}

#[test]
fn sessions_side_by_side_on_the_default_model_in_batched_mode() {
    let _real_model = super::util::real_model();
    use cbtsim::model::default_model;
    use cbtsim::model::embedded::{EmbeddedConfig, EmbeddedModel};
    let config = EmbeddedConfig {
        parallel: 2,
        ..EmbeddedConfig::default()
    };
    let model = EmbeddedModel::load(&default_model::locate().unwrap(), config).unwrap();
    let mut plan = plan(
        PlanKind::Batch,
        &["alicia-rodriguez", "samuel-okafor"],
        "local",
    );
    plan.concurrency = 2;
    plan.summaries = false;
    plan.session.max_turns = 4;
    plan.session.candidates = 1;
    let (store, run) = new_run(&plan);
    let roles = models(&plan, Arc::new(model.clone()));
    let outcome = execute(
        &store,
        run,
        &plan,
        &roles,
        &AtomicBool::new(false),
        &Unobserved,
    );
    assert!(outcome.finished, "{:?}", outcome.courses);
    let sessions = stored(&store);
    assert_eq!(sessions.len(), 2);
    for (_, transcript) in &sessions {
        assert!(transcript.turns.len() >= 2, "{transcript:?}");
        assert!(transcript.termination.is_some());
        assert!(transcript.turns.iter().all(|t| !t.text.trim().is_empty()));
    }
    // The two sessions' replies were decoded in the same batches.
    let batching = model.batching();
    assert_eq!(batching.widest, 2, "{batching:?}");
}

/// Panics, as if the process were killed, once told of a safety event
/// (`None`) or once that many turns have been stored.
struct KillAfter(Option<usize>, AtomicUsize);

impl RunObserver for KillAfter {
    fn turn(&self, _: &CourseInfo, _: u32, _: usize, _: &Turn) {
        let seen = self.1.fetch_add(1, Ordering::SeqCst) + 1;
        if self.0 == Some(seen) {
            panic!("killed after {seen} turns");
        }
    }
    fn safety_event(&self, _: &CourseInfo, _: u32, _: &cbtsim::session::SafetyEvent) {
        if self.0.is_none() {
            panic!("killed after the safety event");
        }
    }
}

/// The safety events stored of a single run's one session.
fn stored_events(store: &Mutex<Store>) -> Vec<cbtsim::session::SafetyEvent> {
    let store = store.lock().unwrap();
    let sessions = store.sessions(None).unwrap();
    assert_eq!(sessions.len(), 1);
    store.safety_events(sessions[0].id).unwrap()
}

#[test]
fn a_disclosure_is_stored_when_it_is_made_not_only_when_the_session_ends() {
    let mut single = plan(PlanKind::Run, &["alicia-rodriguez"], "scripted");
    single.session.max_turns = 8;
    // The patient speaks first; each turn's candidates are three replies.
    let disclosure = "I gave my dog to my sister and wrote a letter to each of my kids, so it's all sorted for when I'm gone.";
    let script = [disclosure; 3];
    let scripted = || -> Arc<dyn ChatModel> { Arc::new(ScriptedModel::new(script)) };

    // Uninterrupted: what the session stores when it ends.
    let (whole, run) = new_run(&single);
    let outcome = execute(
        &whole,
        run,
        &single,
        &models(&single, scripted()),
        &AtomicBool::new(false),
        &Unobserved,
    );
    assert!(outcome.finished);
    let events = stored_events(&whole);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(stored(&whole)[0].1.turns[0].text, disclosure);
    assert_eq!(events[0].turn, 1);
    assert_eq!(events[0].protocol_turn, Some(2));
    // The JSON export carries them.
    let sessions = whole.lock().unwrap().sessions(None).unwrap();
    let exported = cbtsim::export::export(&sessions, cbtsim::export::Format::Json);
    let json: serde_json::Value = serde_json::from_str(&exported[0].contents).unwrap();
    let exported_events = &json[0]["safety_events"];
    assert_eq!(exported_events[0]["category"], "preparatory_behaviour");
    assert_eq!(exported_events[0]["level"], "high");
    assert_eq!(exported_events[0]["turn"], 1);
    assert_eq!(exported_events[0]["protocol_turn"], 2);

    // Killed right after the disclosure was detected, and again a turn
    // after the protocol turn (the observer panics, so nothing after that point runs:
    // the session is never ended): the event is stored all the same, with
    // the turn that answered it once that is spoken.
    for (kill, answered) in [(None, None), (Some(3), Some(2))] {
        let (store, run) = new_run(&single);
        let models = models(&single, scripted());
        let killed = KillAfter(kill, AtomicUsize::new(0));
        let after = kill.unwrap_or(1);
        let flag = AtomicBool::new(false);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            execute(&store, run, &single, &models, &flag, &killed)
        }));
        let session = &store.lock().unwrap().sessions(None).unwrap()[0];
        assert_eq!(session.transcript.turns.len(), after);
        assert!(
            session.transcript.termination.is_none(),
            "the session ended"
        );
        let events = stored_events(&store);
        assert_eq!(events.len(), 1, "killed after {after} turns: {events:?}");
        assert_eq!(events[0].turn, 1);
        assert_eq!(events[0].protocol_turn, answered, "killed after {after}");

        // Resumed and killed again, after turn 3 or 4: the event is still
        // stored, answered.
        let again = KillAfter(Some(if after == 1 { 2 } else { 1 }), AtomicUsize::new(0));
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            execute(&store, run, &single, &models, &flag, &again)
        }));
        let session = &store.lock().unwrap().sessions(None).unwrap()[0];
        assert_eq!(session.transcript.turns.len(), after.max(2) + 1);
        assert!(session.transcript.termination.is_none());
        let events = stored_events(&store);
        assert_eq!(events.len(), 1, "killed again: {events:?}");
        assert_eq!(events[0].protocol_turn, Some(2), "killed again");

        // Resumed to its end: the events are those of the session that was
        // never stopped, each once.
        let outcome = execute(&store, run, &single, &models, &flag, &Unobserved);
        assert!(outcome.finished);
        assert_eq!(
            stored_events(&store),
            stored_events(&whole),
            "killed after {after}"
        );
    }
}
