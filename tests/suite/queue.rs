//! The work queue: batches queued with `--detach`, leased course by course
//! by workers that share the store, on both stores. The library's workers
//! first (threads, each with its own connection), then `cbtsim worker`
//! processes killed and paused as machines are.

use super::test_db::{TestDb, on_both_stores};
use super::util::cbtsim_process;
use cbtsim::Turn;
use cbtsim::model::spec::{Config, ModelSpec, Models};
use cbtsim::plan::{PlanKind, PlanModels, RunPlan, SessionPlan};
use cbtsim::runner::{self, CourseStatus, Unobserved};
use cbtsim::speaker::Speaker;
use cbtsim::store::{Store, StoreError};
use cbtsim::worker::{Leasing, Worker, WorkerSettings};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

on_both_stores!(
    a_lost_lease_fences_every_write,
    workers_drain_a_queued_batch_together,
    a_course_whose_worker_died_is_continued_from_its_last_turn,
    list_shows_each_batch_by_where_its_courses_stand,
);

fn batch_plan(personas: &[&str], sessions: u32, max_turns: u32, model: &str) -> RunPlan {
    let planned_at = "2026-11-27T10:00:00".parse().unwrap();
    let mut session = SessionPlan::new("Nova", planned_at);
    session.max_turns = max_turns;
    let config = Config::default();
    let spec: ModelSpec = model.parse().unwrap();
    let models = PlanModels::resolve(&config, Some(&spec), [None, None, None]).unwrap();
    let mut plan = RunPlan::new(
        PlanKind::Batch,
        personas.iter().map(|p| p.to_string()).collect(),
        models,
        session,
        config,
    );
    plan.sessions = sessions;
    plan
}

/// Stores `plan` as a batch queued for workers.
fn queue(db: &str, plan: &RunPlan) -> i64 {
    let mut store = Store::open(Path::new(db)).unwrap();
    let run = runner::create(&mut store, plan).unwrap();
    store.queue_run(run).unwrap();
    run
}

/// A worker of this process, with a connection of its own, run until no
/// queued course is left.
fn work(db: &str, name: &str, concurrency: usize) -> cbtsim::worker::WorkerOutcome {
    let store = Mutex::new(Store::open(Path::new(db)).unwrap());
    let models = Mutex::new(Models::new(Config::default()));
    let leasing = Leasing::new(name.into(), Duration::from_secs(30));
    let settings = WorkerSettings {
        concurrency,
        until_idle: true,
        model: None,
        poll: Duration::from_millis(100),
        only_run: None,
    };
    let clock = || Duration::ZERO;
    Worker {
        store: &store,
        models: &models,
        leasing: &leasing,
        settings: &settings,
        interrupted: &AtomicBool::new(false),
        observer: &Unobserved,
        clock: &clock,
    }
    .work()
    .unwrap()
}

/// Per session: (course, number, ended, the positions of its turns).
fn sessions(test_db: &TestDb) -> Vec<(String, String, bool, Vec<i64>)> {
    let rows = test_db.query(
        "SELECT s.id, s.course_id, s.session_number, s.termination_reason IS NOT NULL,
                (SELECT COUNT(*) FROM turns t WHERE t.session_id = s.id),
                (SELECT MAX(position) FROM turns t WHERE t.session_id = s.id)
         FROM sessions s ORDER BY s.course_id, s.session_number",
    );
    rows.into_iter()
        .map(|r| {
            let count: i64 = r[4].parse().unwrap();
            let positions: Vec<i64> = (0..count).collect();
            // Contiguous from 0 exactly when the highest is count - 1.
            let max = r[5].parse::<i64>().unwrap_or(-1);
            assert_eq!(max, count - 1, "session {} has turns missing: {r:?}", r[0]);
            (
                r[1].clone(),
                r[2].clone(),
                r[3] == "1" || r[3] == "t" || r[3] == "true",
                positions,
            )
        })
        .collect()
}

/// Every course of the batch has each of its sessions once, ended, with
/// contiguous turns.
fn assert_done_once(test_db: &TestDb, courses: usize, sessions_each: usize) {
    let stored = sessions(test_db);
    assert_eq!(stored.len(), courses * sessions_each, "{stored:?}");
    let mut seen = std::collections::BTreeSet::new();
    for (course, number, ended, turns) in &stored {
        assert!(
            seen.insert((course.clone(), number.clone())),
            "course {course} session {number} twice"
        );
        assert!(ended, "course {course} session {number} did not end");
        assert!(
            !turns.is_empty(),
            "course {course} session {number} has no turns"
        );
    }
    let unfinished = test_db.query("SELECT id FROM courses WHERE finished_at IS NULL");
    assert!(unfinished.is_empty(), "unfinished courses: {unfinished:?}");
}

fn a_lost_lease_fences_every_write(test_db: TestDb) {
    let plan = batch_plan(&["alicia-rodriguez"], 1, 6, "scripted");
    let run = queue(test_db.db(), &plan);
    let store = Store::open(Path::new(test_db.db())).unwrap();
    let minute = Duration::from_secs(60);
    let first = store
        .lease_next("worker-a", minute)
        .unwrap()
        .expect("a course is queued");
    assert_eq!(first.run, run);
    assert!(
        store.lease_next("worker-b", minute).unwrap().is_none(),
        "a leased course is not leased again while its lease runs"
    );
    let a = first.lease;
    let course = store.course(a.course).unwrap();
    let state = cbtsim::course::patient_state(&course.persona, 1, &[], course.seed);
    let session = store
        .start_session(Some(a), run, Some(a.course), course.persona_row, 1, &state)
        .unwrap();
    let turn = |text: &str| Turn::new(Speaker::Therapist, text.to_string());
    store
        .add_turn(Some(a), session, 0, &turn("Hello."))
        .unwrap();
    assert!(store.renew_lease(a, minute).unwrap());

    // Worker A is paused past its lease; worker B takes the course over.
    test_db.execute(&format!(
        "UPDATE courses SET lease_until = 0 WHERE id = {}",
        a.course
    ));
    let b = store
        .lease_next("worker-b", minute)
        .unwrap()
        .expect("the lease ran out")
        .lease;
    assert_eq!(b.course, a.course);
    assert!(b.token > a.token);

    // A wakes up: nothing it writes is stored.
    let lost = store
        .add_turn(Some(a), session, 1, &turn("A's late turn."))
        .unwrap_err();
    assert!(
        matches!(lost, StoreError::LeaseLost { course, .. } if course == a.course),
        "{lost}"
    );
    assert!(
        lost.to_string().contains("taken over by another worker"),
        "{lost}"
    );
    assert!(store.finish_course(Some(a), a.course).is_err());
    assert!(
        store
            .set_course_error(Some(a), a.course, Some("A failed"))
            .is_err()
    );
    assert!(
        !store.renew_lease(a, minute).unwrap(),
        "a lost lease is not renewed"
    );
    assert!(!store.holds(a).unwrap());
    // B writes on from where the course is.
    store
        .add_turn(Some(b), session, 1, &turn("B's turn."))
        .unwrap();
    let texts = test_db.query("SELECT position, text FROM turns ORDER BY position");
    assert_eq!(
        texts,
        vec![
            vec!["0".to_string(), "Hello.".into()],
            vec!["1".into(), "B's turn.".into()]
        ]
    );
    let error = test_db.query(&format!(
        "SELECT error IS NULL FROM courses WHERE id = {}",
        a.course
    ));
    assert!(
        ["1", "t", "true"].contains(&error[0][0].as_str()),
        "A's error was not written"
    );
    store.finish_course(Some(b), b.course).unwrap();
    assert!(store.holds(b).unwrap());
    assert!(
        store.unfinished_runs().unwrap().is_empty(),
        "the batch's last course to finish finishes the batch"
    );
    assert!(
        !store.renew_lease(b, minute).unwrap(),
        "a lease given up is not renewed back"
    );
}

fn workers_drain_a_queued_batch_together(test_db: TestDb) {
    // 4 courses of 2 sessions, each reply taking a few milliseconds, so
    // that both workers get some.
    let plan = batch_plan(
        &[
            "alicia-rodriguez",
            "samuel-okafor",
            "mei-lin-chen",
            "samuel-okafor",
        ],
        2,
        6,
        "scripted?delay_ms=5",
    );
    let run = queue(test_db.db(), &plan);
    let db = test_db.db();
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| work(db, "worker-a", 1));
        let b = scope.spawn(|| work(db, "worker-b", 2));
        (a.join().unwrap(), b.join().unwrap())
    });
    let ran: Vec<_> = a.courses.iter().chain(&b.courses).collect();
    assert_eq!(ran.len(), 4, "each course ran once: {ran:?}");
    assert!(
        ran.iter()
            .all(|c| c.outcome.status == CourseStatus::Finished && c.run == run)
    );
    assert_done_once(&test_db, 4, 2);
    let store = Store::open(Path::new(db)).unwrap();
    assert!(
        store.unfinished_runs().unwrap().is_empty(),
        "the batch is finished once its last course is"
    );
    let status = &store.batch_statuses().unwrap()[0];
    assert_eq!((status.queued, status.finished, status.failed), (0, 4, 0));
    assert!(status.running.is_empty());
}

fn a_course_whose_worker_died_is_continued_from_its_last_turn(test_db: TestDb) {
    let plan = batch_plan(&["samuel-okafor"], 2, 8, "scripted");
    let run = queue(test_db.db(), &plan);
    let store = Store::open(Path::new(test_db.db())).unwrap();
    // A worker leased the course, spoke three turns of its first session,
    // and died.
    let dead = store
        .lease_next("dead-worker", Duration::from_secs(60))
        .unwrap()
        .unwrap()
        .lease;
    let course = store.course(dead.course).unwrap();
    let state = cbtsim::course::patient_state(&course.persona, 1, &[], course.seed);
    let session = store
        .start_session(
            Some(dead),
            run,
            Some(dead.course),
            course.persona_row,
            1,
            &state,
        )
        .unwrap();
    for (position, (speaker, text)) in [
        (
            Speaker::Therapist,
            "Welcome, Samuel. What would you like to focus on today?",
        ),
        (Speaker::Patient, "The deadline at work, mostly."),
        (Speaker::Therapist, "Tell me more about the deadline."),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .add_turn(
                Some(dead),
                session,
                position,
                &Turn::new(speaker, text.to_string()),
            )
            .unwrap();
    }
    // While its lease runs, no one takes the course (a worker with
    // --until-idle waits for it: its worker may yet finish it).
    assert!(
        store
            .lease_next("early", Duration::from_secs(60))
            .unwrap()
            .is_none()
    );
    assert_eq!(store.queued_work().unwrap(), 1);
    test_db.execute(&format!(
        "UPDATE courses SET lease_until = 0 WHERE id = {}",
        dead.course
    ));
    let taker = work(test_db.db(), "taker", 1);
    assert_eq!(taker.courses.len(), 1);
    assert_eq!(taker.courses[0].outcome.status, CourseStatus::Finished);
    assert_done_once(&test_db, 1, 2);
    let turns = test_db.query(&format!(
        "SELECT text FROM turns WHERE session_id = {session} ORDER BY position"
    ));
    assert_eq!(
        turns[2][0], "Tell me more about the deadline.",
        "the dead worker's turns are kept"
    );
    assert!(turns.len() > 3, "the session went on after them");
}

fn list_shows_each_batch_by_where_its_courses_stand(test_db: TestDb) {
    let plan = batch_plan(
        &["alicia-rodriguez", "samuel-okafor", "mei-lin-chen"],
        1,
        4,
        "scripted",
    );
    let run = queue(test_db.db(), &plan);
    let store = Store::open(Path::new(test_db.db())).unwrap();
    let _held = store
        .lease_next("host-1:42", Duration::from_secs(60))
        .unwrap()
        .unwrap();
    let failed = store
        .lease_next("host-2:7", Duration::from_secs(60))
        .unwrap()
        .unwrap();
    store
        .set_course_error(
            Some(failed.lease),
            failed.lease.course,
            Some("persona gone"),
        )
        .unwrap();
    store.release_lease(failed.lease).unwrap();
    let output = cbtsim_process()
        .args(["list", "--batches", "--json", "--db", test_db.db()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed[0]["run"], run);
    assert_eq!(listed[0]["queued"], 1);
    assert_eq!(listed[0]["failed"], 1);
    assert_eq!(listed[0]["finished"], 0);
    assert_eq!(
        listed[0]["running"],
        serde_json::json!([{"worker": "host-1:42", "courses": 1}])
    );
    // The text table says the same, under the sessions.
    let output = cbtsim_process()
        .args(["list", "--db", test_db.db()])
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("host-1:42 (1)"), "{text}");
}

/// Waits until `ready` holds, up to a minute.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
}

fn worker_process(db: &str, lease_seconds: u32, model: &str) -> std::process::Child {
    cbtsim_process()
        .args(["worker", "--until-idle", "--db", db, "--model", model])
        .args(["--lease-seconds", &lease_seconds.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The courses a worker process holds a lease on now.
fn leased_by(test_db: &TestDb, child: &std::process::Child) -> Vec<String> {
    test_db
        .query(&format!(
            "SELECT id FROM courses WHERE lease_owner LIKE '%:{}' AND finished_at IS NULL",
            child.id()
        ))
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

#[test]
fn three_workers_finish_a_batch_when_one_is_killed() {
    let test_db = TestDb::postgres();
    let db = test_db.db().to_string();
    // 6 courses of 2 sessions of 8 turns, a reply taking 40 ms.
    let queued = cbtsim_process()
        .args([
            "batch",
            "--detach",
            "--personas",
            "alicia-rodriguez,samuel-okafor,mei-lin-chen",
            "--repeats",
            "2",
            "--sessions",
            "2",
            "--max-turns",
            "8",
            "--model",
            "scripted",
            "--db",
            &db,
        ])
        .output()
        .unwrap();
    assert!(
        queued.status.success(),
        "{}",
        String::from_utf8_lossy(&queued.stderr)
    );
    let run: i64 = String::from_utf8(queued.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        test_db.query("SELECT id FROM sessions").is_empty(),
        "--detach runs nothing"
    );
    let model = "scripted?delay_ms=40";
    // The victim is slower (a course takes it seconds), so that it is
    // caught in the middle of a session.
    let victim = worker_process(&db, 2, "scripted?delay_ms=300");
    let mid_session = |course: &str| {
        test_db
            .query(&format!(
            "SELECT 1 FROM sessions s WHERE s.course_id = {course} AND s.termination_reason IS NULL
               AND EXISTS (SELECT 1 FROM turns t WHERE t.session_id = s.id)"
        ))
            .len()
            == 1
    };
    wait_for("the first worker to store turns of its course", || {
        let held = leased_by(&test_db, &victim);
        held.len() == 1 && mid_session(&held[0])
    });
    let others = [worker_process(&db, 2, model), worker_process(&db, 2, model)];
    std::thread::sleep(Duration::from_millis(500));
    // Stopped first, so that what it holds is read while it stands still,
    // then killed.
    signal(&victim, "-STOP");
    let held = leased_by(&test_db, &victim);
    assert!(held.len() == 1 && mid_session(&held[0]), "{held:?}");
    signal(&victim, "-KILL");
    let victim = victim.wait_with_output().unwrap();
    assert!(!victim.status.success());
    let mut logs = String::new();
    for worker in others {
        let output = worker.wait_with_output().unwrap();
        logs += &String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{logs}");
    }
    assert_done_once(&test_db, 6, 2);
    assert!(
        logs.contains(&format!("course {} (", held[0])) && logs.contains("continues after turn"),
        "another worker took the killed worker's course over and continued it:\n{logs}"
    );
    let finished = test_db.query(&format!(
        "SELECT finished_at IS NOT NULL FROM runs WHERE id = {run}"
    ));
    assert_eq!(finished[0][0], "t", "the batch is finished");
}

#[test]
fn a_worker_paused_past_its_lease_writes_nothing_into_a_course_taken_over() {
    let test_db = TestDb::postgres();
    let db = test_db.db().to_string();
    // One course, one session of 24 turns, a reply taking 150 ms: time to
    // pause its worker mid-session.
    let plan = batch_plan(&["mei-lin-chen"], 1, 24, "scripted");
    queue(&db, &plan);
    let turns = || test_db.count("turns");
    let model = "scripted?delay_ms=150";
    let paused = worker_process(&db, 1, model);
    wait_for("the first worker to store two turns", || turns() >= 2);
    signal(&paused, "-STOP");
    // A commit already on its way lands before the count.
    std::thread::sleep(Duration::from_millis(200));
    let at_pause = turns();
    // Past its lease (1 s): another worker takes the course over.
    std::thread::sleep(Duration::from_millis(2500));
    let taker = worker_process(&db, 1, model);
    // Woken the moment the second worker holds the course, before it has
    // spoken (its first reply takes at least as long as what is left of
    // the first worker's): the first's late turn would go into a free
    // position, and only the fence keeps it out.
    wait_for("the second worker to lease the course", || {
        leased_by(&test_db, &taker).len() == 1
    });
    signal(&paused, "-CONT");
    let paused = paused.wait_with_output().unwrap();
    let taker = taker.wait_with_output().unwrap();
    let paused_log = String::from_utf8_lossy(&paused.stderr);
    let taker_log = String::from_utf8_lossy(&taker.stderr);
    assert_eq!(taker.status.code(), Some(0), "{taker_log}");
    assert!(
        taker_log.contains(&format!("continues after turn {at_pause}")),
        "the second worker went on from the turns the first stored before its pause:\n{taker_log}"
    );
    assert_eq!(paused.status.code(), Some(1), "{paused_log}");
    assert!(
        paused_log.contains("taken over by another worker"),
        "{paused_log}"
    );
    assert_done_once(&test_db, 1, 1);
    assert!(
        turns() > at_pause + 2,
        "the session went on to its end on the second worker"
    );
}

#[test]
fn bench_batch_with_workers_queues_each_level_and_drains_it() {
    let test_db = TestDb::postgres();
    // A batch of the user's, queued before the bench: the bench's workers
    // leave it for the real ones.
    let waiting = queue(
        test_db.db(),
        &batch_plan(&["alicia-rodriguez"], 1, 4, "scripted"),
    );
    let output = cbtsim_process()
        .args([
            "bench",
            "batch",
            "--db",
            test_db.db(),
            "--workers",
            "1,2",
            "--sessions",
            "4",
            "--turns",
            "4",
            "--model",
            "scripted?delay_ms=5",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bench: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let levels = bench["levels"].as_array().unwrap();
    let workers: Vec<u64> = levels
        .iter()
        .map(|l| l["workers"].as_u64().unwrap())
        .collect();
    assert_eq!(workers, [1, 2]);
    for level in levels {
        assert_eq!(level["failed_courses"], 0, "{level}");
        assert!(
            level["sessions_per_hour"].as_f64().unwrap() > 0.0,
            "{level}"
        );
    }
    let store = &bench["store_per_turn"];
    assert!(store["turn_ms_mean"].as_f64().unwrap() > 0.0, "{store}");
    assert!(store["renew_ms_mean"].as_f64().unwrap() > 0.0, "{store}");
    // Each level's batch was queued and drained: 4 sessions each, every
    // one ended, and the batches finished.
    assert_eq!(
        test_db.query("SELECT COUNT(*) FROM sessions WHERE termination_reason IS NOT NULL")[0][0],
        "8",
        "4 sessions at each level"
    );
    assert_eq!(
        test_db.query("SELECT id FROM runs WHERE finished_at IS NULL"),
        [[waiting.to_string()]],
        "the bench's batches finished and the user's is still queued"
    );
}

#[test]
fn a_worker_runs_a_queued_batch_on_the_default_model() {
    let _real_model = super::util::real_model();
    let test_db = TestDb::postgres();
    let db = test_db.db().to_string();
    let queued = cbtsim_process()
        .args([
            "batch",
            "--detach",
            "--personas",
            "alicia-rodriguez",
            "--sessions",
            "1",
            "--max-turns",
            "4",
            "--candidates",
            "1",
            "--db",
            &db,
        ])
        .output()
        .unwrap();
    assert!(
        queued.status.success(),
        "{}",
        String::from_utf8_lossy(&queued.stderr)
    );
    let worker = cbtsim_process()
        .args(["worker", "--until-idle", "--db", &db])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&worker.stderr);
    assert_eq!(worker.status.code(), Some(0), "{log}");
    assert!(log.contains("leased") && log.contains("finished"), "{log}");
    assert_done_once(&test_db, 1, 1);
    let model = test_db.query("SELECT meta FROM turns WHERE meta LIKE '%gemma%' LIMIT 1");
    assert_eq!(model.len(), 1, "the turns were spoken by the default model");
    let listed = cbtsim_process()
        .args(["list", "--batches", "--json", "--db", &db])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["finished"], 1);
}
