//! People in the loop: a person plays one side of a session (`cbtsim
//! play`). The engine with a person of lines against the scripted model,
//! then the command through a pipe, on the scripted and the default model.

use super::util::cbtsim_process;
use cbtsim::Speaker;
use cbtsim::model::scripted::ScriptedModel;
use cbtsim::model::{
    ChatModel, Completion, Conversation, FinishReason, ModelError, Request, Usage,
};
use cbtsim::persona;
use cbtsim::play::{LinePerson, PersonModel};
use cbtsim::session::prompt::TherapistProfile;
use cbtsim::session::{self, Agent, SessionConfig, SessionRecord};
use cbtsim::termination::TerminationReason;
use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

fn config() -> SessionConfig {
    let mut config = SessionConfig::new(TherapistProfile {
        name: "Nova".into(),
        prompt: None,
        next_session: "Thursday 3 December 2026 at 14:00".into(),
    });
    config.candidates = 1;
    config.max_turns = 10;
    config.structure = false;
    config
}

fn agent(model: &dyn ChatModel) -> Agent {
    Agent {
        conversation: model.conversation().unwrap(),
        model: model.describe(),
        chat: model.chat(),
    }
}

fn person(lines: &[&str]) -> PersonModel {
    let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    PersonModel::new(Box::new(LinePerson::new(lines.into_iter(), |_: &str| {})))
}

/// A session in which a person of `lines` plays `role` against `model`.
fn played(role: Speaker, lines: &[&str], model: &dyn ChatModel) -> SessionRecord {
    let persona = persona::library_persona("samuel-okafor").unwrap().unwrap();
    let person = person(lines);
    let (mut therapist, mut patient) = match role {
        Speaker::Therapist => (agent(&person), agent(model)),
        Speaker::Patient => (agent(model), agent(&person)),
    };
    let clock = || Duration::ZERO;
    session::run(
        &persona,
        &mut therapist,
        &mut patient,
        &config(),
        &AtomicBool::new(false),
        &clock,
        &mut session::NoSink,
    )
    .unwrap()
}

#[test]
fn a_person_s_turns_are_stored_as_typed_and_marked_as_theirs() {
    let model = ScriptedModel::new(["I have not been sleeping.", "Mostly about work."]);
    // A typed turn the guards would repair (a role label, a stage
    // direction) is kept as typed.
    let record = played(
        Speaker::Therapist,
        &[
            "Therapist: *smiles* What brings you in today?",
            "",
            "/help",
            "What worries you most?",
            "/end",
        ],
        &model,
    );
    let turns = &record.transcript.turns;
    assert_eq!(turns.len(), 5, "{turns:?}");
    assert_eq!(turns[0].speaker, Speaker::Patient);
    assert_eq!(
        turns[1].text,
        "Therapist: *smiles* What brings you in today?"
    );
    assert!(turns[1].meta.person && turns[1].meta.repairs.is_empty());
    assert_eq!(turns[1].meta.model.as_deref(), Some("person"));
    assert!(!turns[0].meta.person, "the model's turns are the model's");
    assert_eq!(turns[3].text, "What worries you most?");
    assert_eq!(
        record.transcript.termination,
        Some(TerminationReason::UserEnded {
            role: Speaker::Therapist
        })
    );
    // The person used no tokens.
    let person_usage = record
        .usage_by_role
        .iter()
        .find(|r| r.model == "person")
        .unwrap();
    assert_eq!(person_usage.usage.replies, 0);
}

#[test]
fn the_end_of_input_stops_the_session_where_it_is() {
    let model = ScriptedModel::new(["Hello. What would you like to work on today?"]);
    let record = played(Speaker::Patient, &["My job, I think."], &model);
    assert_eq!(
        record.transcript.termination,
        Some(TerminationReason::Interrupted { after_turns: 2 }),
        "{:?}",
        record.transcript.turns
    );
}

#[test]
fn a_person_s_disclosure_is_answered_with_the_resources() {
    let model = ScriptedModel::new([
        "Hello. How has your week been?",
        "Thank you for telling me.",
    ]);
    let record = played(
        Speaker::Patient,
        &[
            "Bad.",
            "Honestly I have been thinking about killing myself.",
            "/end",
        ],
        &model,
    );
    let events = &record.safety_events;
    assert_eq!(events.len(), 1, "{:?}", record.transcript.turns);
    let answer = &record.transcript.turns[events[0].protocol_turn.unwrap() - 1];
    assert_eq!(answer.speaker, Speaker::Therapist);
    assert!(answer.text.contains("988"), "{}", answer.text);
}

/// The default model as the therapist, a person disclosing: the protocol
/// turn carries the locale's resources, and no therapist turn says the
/// protocol's bracketed label for the risk ("(suicide risk)").
#[test]
fn a_person_s_disclosure_on_the_default_model_gets_the_protocol() {
    let _real_model = super::util::real_model();
    let path = cbtsim::model::default_model::locate()
        .unwrap_or_else(|e| panic!("{e} (scripts/test fetches it)"));
    let model = cbtsim::model::embedded::EmbeddedModel::load(
        &path,
        cbtsim::model::embedded::EmbeddedConfig::default(),
    )
    .unwrap();
    let record = played(
        Speaker::Patient,
        &[
            "Not great.",
            "I have been thinking about killing myself. I don't see a way out.",
            "/end",
        ],
        &model,
    );
    let events = &record.safety_events;
    assert_eq!(events.len(), 1, "{:#?}", record.transcript.turns);
    let answer = &record.transcript.turns[events[0].protocol_turn.unwrap() - 1];
    assert_eq!(answer.speaker, Speaker::Therapist);
    assert!(answer.text.contains("988"), "{}", answer.text);
    for turn in &record.transcript.turns {
        let text = turn.text.to_lowercase();
        assert!(
            !text.contains("(suicide risk") && !text.contains("risk level:"),
            "{}",
            turn.text
        );
    }
}

/// A model whose server went away after its first reply.
struct FailsAfterOne;
struct FailsAfterOneConversation(u32);
impl ChatModel for FailsAfterOne {
    fn describe(&self) -> String {
        "failing".into()
    }
    fn conversation(&self) -> Result<Box<dyn Conversation>, ModelError> {
        Ok(Box::new(FailsAfterOneConversation(0)))
    }
}
impl Conversation for FailsAfterOneConversation {
    fn stream(
        &mut self,
        _request: &Request,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError> {
        self.0 += 1;
        if self.0 > 1 {
            return Err(ModelError::Unreachable("connection refused".into()));
        }
        let text = "Hello. How has your week been?";
        on_delta(text);
        Ok(Completion {
            text: text.into(),
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            prefill_ms: 0,
            decode_ms: 0,
        })
    }
}

#[test]
fn a_disclosure_is_answered_with_the_resources_even_when_the_model_fails() {
    let record = played(
        Speaker::Patient,
        &["Hi.", "I want to die. I have the pills ready for tonight."],
        &FailsAfterOne,
    );
    let turns = &record.transcript.turns;
    assert_eq!(turns.len(), 4, "{turns:?}");
    let answer = &turns[3];
    assert_eq!(answer.speaker, Speaker::Therapist);
    assert!(
        answer.text.contains("988") && answer.text.contains("911"),
        "{}",
        answer.text
    );
    assert!(
        answer
            .meta
            .repairs
            .iter()
            .any(|r| r.kind == "safety_fallback")
    );
    assert_eq!(
        answer.meta.model.as_deref(),
        Some("engine"),
        "no model wrote it"
    );
    assert_eq!(answer.meta.safety.as_deref(), Some("protocol"));
    assert_eq!(record.safety_events[0].protocol_turn, Some(4));
    // Then the session ends as it would have after the model's answer:
    // escalated for imminent risk, else with the failure.
    let imminent = record.safety_events[0].level.as_str() == "imminent";
    match &record.transcript.termination {
        Some(TerminationReason::SafetyEscalation { turn: 3, .. }) => assert!(imminent),
        Some(TerminationReason::BackendFailure { .. }) => assert!(!imminent),
        other => panic!("{other:?}"),
    }
}

/// The turns a person typed, stored in the SQLite file `db`, in order.
fn typed_turns(db: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut statement = conn
        .prepare("SELECT text FROM turns WHERE meta LIKE '%\"person\":true%' ORDER BY session_id, position")
        .unwrap();
    statement
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// `cbtsim play` with `lines` on its stdin; (exit code, stdout, stderr).
fn play(args: &[&str], lines: &str) -> (i32, String, String) {
    let mut child = cbtsim_process()
        .arg("play")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

#[test]
fn play_as_the_therapist_through_a_pipe_stores_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("play.db");
    let db = db.to_str().unwrap();
    let (code, stdout, stderr) = play(
        &[
            "--as",
            "therapist",
            "--persona",
            "alicia-rodriguez",
            "--model",
            "scripted",
            "--db",
            db,
        ],
        "Welcome, Alicia. What would you like to focus on today?\n/help\nTell me more about that.\n/end\n",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Therapist: Welcome, Alicia."), "{stdout}");
    assert!(stdout.contains("User Ended Session"), "{stdout}");
    assert_eq!(
        stderr.matches("/end ends the session").count(),
        2,
        "said at the start, and again for /help: {stderr}"
    );
    let typed = typed_turns(db);
    assert_eq!(
        typed,
        [
            "Welcome, Alicia. What would you like to focus on today?",
            "Tell me more about that."
        ]
    );
}

#[test]
fn play_as_the_patient_on_the_default_model_and_resume_it() {
    let _real_model = super::util::real_model();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("play.db");
    let db = db.to_str().unwrap();
    let args = [
        "--as",
        "patient",
        "--persona",
        "alicia-rodriguez",
        "--candidates",
        "1",
        "--max-turns",
        "8",
        "--db",
        db,
    ];
    // The input ends after one turn: the session stops there, kept.
    let (code, stdout, stderr) = play(&args, "I have been anxious about work all week.\n");
    assert_eq!(code, 130, "stopped by the person, resumable: {stderr}");
    assert!(
        stdout.contains("Patient: I have been anxious about work all week."),
        "{stdout}"
    );
    assert!(
        stdout.contains("Therapist: "),
        "the default model answered: {stdout}"
    );
    // Resumed, the person is asked again and ends it.
    let mut child = cbtsim_process()
        .args(["resume", "--db", db, "--last"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Mostly the deadline.\n/end\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("User Ended Session"), "{stdout}");
    assert_eq!(
        typed_turns(db),
        [
            "I have been anxious about work all week.",
            "Mostly the deadline."
        ]
    );
}

/// `cbtsim play` in a pseudo-terminal (util-linux's `script` gives it
/// one): the person types after each prompt, as at a keyboard.
struct AtTerminal {
    child: std::process::Child,
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl AtTerminal {
    fn start(args: &[&str]) -> AtTerminal {
        let binary = assert_cmd::cargo::cargo_bin("cbtsim");
        let command = std::iter::once(binary.to_str().unwrap().to_string())
            .chain(["play".to_string()])
            .chain(args.iter().map(|a| format!("'{a}'")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = std::process::Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .env("XDG_DATA_HOME", std::env::temp_dir())
            .env("TERM", "xterm")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("util-linux's script runs");
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        AtTerminal { child, output }
    }

    /// Waits until `text` has been shown `n` times, then types `keys`
    /// (keys typed early wait in the terminal, as at a keyboard).
    fn type_after(&mut self, text: &str, n: usize, keys: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while self.output.lock().unwrap().matches(text).count() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{text:?} not shown {n} times: {}",
                self.output.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(keys.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let output = self.output.lock().unwrap().clone();
        (status.code().unwrap_or(-1), output)
    }
}

#[test]
fn play_as_the_therapist_at_a_terminal_edits_lines_and_ends_with_slash_end() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("play.db");
    let db = db.to_str().unwrap();
    let mut terminal = AtTerminal::start(&[
        "--as",
        "therapist",
        "--persona",
        "alicia-rodriguez",
        "--model",
        "scripted",
        "--db",
        db,
    ]);
    terminal.type_after("Patient: ", 1, "Hello, Alicia. How are yuo\x7f\x7fou?\r");
    // The line before, called back with the Up arrow and added to:
    // history and line editing, which a plain read of the line does not
    // have.
    terminal.type_after("Patient: ", 2, "\x1b[A Still with me?\r");
    terminal.type_after("Patient: ", 3, "/end\r");
    let (code, output) = terminal.finish();
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("User Ended Session"), "{output}");
    let typed = typed_turns(db);
    assert_eq!(
        typed,
        [
            "Hello, Alicia. How are you?",
            "Hello, Alicia. How are you? Still with me?"
        ]
    );
}

#[test]
fn play_as_the_patient_at_a_terminal_stops_at_ctrl_c_and_keeps_what_was_said() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("play.db");
    let db = db.to_str().unwrap();
    let mut terminal = AtTerminal::start(&[
        "--as",
        "patient",
        "--persona",
        "mei-lin-chen",
        "--model",
        "scripted",
        "--db",
        db,
    ]);
    terminal.type_after("Patient> ", 1, "I have not been sleeping well.\r");
    terminal.type_after("Therapist: ", 1, "\x03");
    let (code, output) = terminal.finish();
    assert_eq!(code, 130, "{output}");
    let conn = rusqlite::Connection::open(db).unwrap();
    let (turns, ended): (i64, Option<String>) = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM turns), termination_reason FROM sessions",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        turns, 2,
        "the person's turn and the model's answer are kept"
    );
    assert_eq!(ended.as_deref(), Some("Interrupted"), "resumable");
}

#[test]
fn a_course_is_played_session_by_session() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("play.db");
    let db = db.to_str().unwrap();
    let (code, stdout, stderr) = play(
        &[
            "--as",
            "therapist",
            "--persona",
            "samuel-okafor",
            "--sessions",
            "2",
            "--model",
            "scripted",
            "--db",
            db,
        ],
        "Welcome, Samuel.\n/end\nWelcome back. How did the week go?\n/end\n",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Session Number: 2"), "{stdout}");
    let conn = rusqlite::Connection::open(db).unwrap();
    let sessions: Vec<(i64, Option<i64>, String)> = conn
        .prepare("SELECT session_number, course_id, termination_reason FROM sessions ORDER BY session_number")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0].1, sessions[1].1, "one course");
    assert!(
        sessions.iter().all(|s| s.2 == "User Ended Session"),
        "{sessions:?}"
    );
    // The plan says who plays which side, for resume.
    let plan: String = conn
        .query_row("SELECT plan FROM runs", [], |r| r.get(0))
        .unwrap();
    assert!(plan.contains("\"played_by\":\"therapist\""), "{plan}");
    // The second session starts where the first left the patient: its
    // scores are carried over and moved, not the persona's first ones.
    let moods: Vec<(i64, i64)> = conn
        .prepare("SELECT phq9, gad7 FROM sessions ORDER BY session_number")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(moods.len(), 2);
}

/// (session number, course, ending, PHQ-9, GAD-7) of every session.
fn stored_sessions(db: &str) -> Vec<(i64, i64, String, i64, i64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.prepare(
        "SELECT session_number, course_id, termination_reason, phq9, gad7 FROM sessions ORDER BY id",
    )
    .unwrap()
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn a_stored_course_is_played_on_with_its_carry_over() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("course.db");
    let db = db.to_str().unwrap();
    let course = |db: &str, sessions: &str| {
        let (code, _, stderr) = super::util::run(&[
            "course",
            "--persona",
            "samuel-okafor",
            "--sessions",
            sessions,
            "--model",
            "scripted",
            "--max-turns",
            "6",
            "--db",
            db,
        ]);
        assert_eq!(code, 0, "{stderr}");
    };
    course(db, "1");
    let (code, _, stderr) = play(
        &[
            "--as",
            "therapist",
            "--course",
            "1",
            "--model",
            "scripted",
            "--max-turns",
            "6",
            "--db",
            db,
        ],
        "Welcome back, Samuel. How did the week go?\n/end\n",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("session 2, going on from course 1"),
        "{stderr}"
    );
    // The person playing the therapist is shown what the model would be.
    assert!(stderr.contains("from the earlier sessions"), "{stderr}");
    let sessions = stored_sessions(db);
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[1].0, 2, "the next session's number");
    assert_ne!(sessions[0].1, sessions[1].1, "a run and course of its own");
    assert_eq!(sessions[1].2, "User Ended Session");
    let conn = rusqlite::Connection::open(db).unwrap();
    let plan: String = conn
        .query_row("SELECT plan FROM runs WHERE id = 2", [], |r| r.get(0))
        .unwrap();
    assert!(plan.contains("\"continues\":1"), "{plan}");
    // The patient starts where the course left them: as session 2 of one
    // 2-session course starts.
    let whole = dir.path().join("whole.db");
    let whole = whole.to_str().unwrap();
    course(whole, "2");
    let expected = &stored_sessions(whole)[1];
    assert_eq!(
        (sessions[1].3, sessions[1].4),
        (expected.3, expected.4),
        "{sessions:?} {expected:?}"
    );

    // A course that does not exist, or one with a session left unfinished.
    let (code, _, stderr) = play(
        &[
            "--as",
            "therapist",
            "--course",
            "9",
            "--model",
            "scripted",
            "--db",
            db,
        ],
        "",
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("course 9"), "{stderr}");
    let (code, _, _) = play(
        &[
            "--as",
            "therapist",
            "--course",
            "2",
            "--model",
            "scripted",
            "--db",
            db,
        ],
        "Hello.\n",
    );
    assert_eq!(code, 130, "the input ended mid-session");
    // That session (3) is course 3's, stopped: resumed before going on.
    let (code, _, stderr) = play(
        &[
            "--as",
            "therapist",
            "--course",
            "3",
            "--model",
            "scripted",
            "--db",
            db,
        ],
        "",
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("session 3 of course 3 is unfinished"),
        "{stderr}"
    );
}
