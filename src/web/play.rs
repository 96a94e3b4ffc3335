//! Playing a session in the browser: the same engine, guards, crisis
//! protocol and store as `cbtsim play`, with the person at a `Seat` that
//! the page hands each turn to. A played session runs on a thread of its
//! own; posting a turn waits until the model has answered (or the session
//! is over), so the page that follows shows the answer, with no script.

use super::pages::{escape, page, turn_html};
use super::{App, from_another_site, from_own_page, with_store};
use crate::play::{Line, PersonModel, PersonTurn, Seat, SeatError, SeatStatus, parse_line};
use crate::runner::{self, RoleModels, Runner, Unobserved};
use crate::speaker::Speaker;
use crate::store::{SessionScope, Store};
use crate::worker::{DEFAULT_LEASE, Leasing};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// How long a played session waits for the person's next turn before it
/// stops (to be resumed with `cbtsim resume` at a terminal).
const PATIENCE: Duration = Duration::from_secs(30 * 60);
/// How long a request waits for the model's answer before the page shows
/// that it is still answering.
const ANSWER_WAIT: Duration = Duration::from_secs(120);
/// The longest turn a person can post.
const MAX_TURN: usize = 4000;

/// Played sessions are stopped by the person, never by a signal here.
static NEVER_INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn play_off() -> Response {
    (
        StatusCode::NOT_FOUND,
        "this app does not offer play (it was started without a plan for it)\n",
    )
        .into_response()
}

/// The form that starts a played session: the side and the persona.
pub(super) async fn play_form(State(app): State<Arc<App>>) -> Response {
    if app.config.play.is_none() {
        return play_off();
    }
    let personas = match crate::persona::library() {
        Ok(personas) => personas,
        Err(_) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the persona library does not load\n",
            )
                .into_response();
        }
    };
    let mut options = String::new();
    for p in &personas {
        options += &format!(
            "<option value=\"{}\">{} ({})</option>",
            escape(&p.id),
            escape(&p.identity.name),
            escape(&p.id)
        );
    }
    let body = format!(
        "<p><a href=\"/\">All sessions</a></p>\n<h1>Play a session</h1>\n\
<p>You type one side's turns; the model plays the other, through the same engine, guards and crisis protocol as a simulated session, and the session is stored. Your turns are marked as a person's.</p>\n\
<form method=\"post\" action=\"/play\" id=\"start\">\n\
<p>I play <label><input type=\"radio\" name=\"as\" value=\"therapist\" checked> the therapist</label> <label><input type=\"radio\" name=\"as\" value=\"patient\"> the patient</label></p>\n\
<p><label>Persona <select name=\"persona\">{options}</select></label></p>\n\
<p><button type=\"submit\">Start</button></p></form>\n\
<p><small>If you play the patient and speak of harming yourself or others, the therapist follows its safety protocol and gives crisis resources. This is a simulation: if you are in danger, call your local emergency number.</small></p>\n"
    );
    page("cbtsim: play", &body)
}

/// Starts a played session and shows its page once the person's first
/// turn is awaited.
pub(super) async fn start(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::Form(fields): axum::Form<HashMap<String, String>>,
) -> Response {
    if !from_own_page(&headers) {
        return from_another_site();
    }
    if app.config.play.is_none() {
        return play_off();
    }
    let side = match fields.get("as").map(String::as_str) {
        Some("therapist") => Speaker::Therapist,
        Some("patient") => Speaker::Patient,
        _ => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                "as: therapist or patient\n",
            )
                .into_response();
        }
    };
    // Library personas only: a path from a page is never opened.
    let persona = fields.get("persona").cloned().unwrap_or_default();
    if crate::persona::library_persona(&persona).is_none() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{}: not a library persona\n", escape(&persona)),
        )
            .into_response();
    }
    let started = tokio::task::spawn_blocking({
        let app = app.clone();
        move || begin(&app, side, persona)
    })
    .await;
    match started {
        Ok(Ok(run)) => Redirect::to(&format!("/play/{run}")).into_response(),
        Ok(Err(message)) => {
            (app.config.log)(&format!("play: {message}"));
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the session could not start: {message}\n"),
            )
                .into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Stores the run, starts its session on a thread, and waits for the
/// person's first turn to be awaited (or the session to be over).
fn begin(app: &App, side: Speaker, persona: String) -> Result<i64, String> {
    let mut plan = app.config.play.clone().ok_or("no plan")?;
    plan.kind = crate::plan::PlanKind::Run;
    plan.personas = vec![persona];
    plan.played_by = Some(side);
    plan.validate().map_err(|e| e.to_string())?;
    let mut models = {
        let mut opened = app.models.lock().unwrap_or_else(|e| e.into_inner());
        RoleModels::open(&plan, &mut opened).map_err(|e| e.to_string())?
    };
    let seat = Seat::new();
    let person = Arc::new(PersonModel::new(Box::new(seat.person(PATIENCE))));
    match side {
        Speaker::Therapist => models.therapist = person,
        Speaker::Patient => models.patient = person,
    }
    let mut store = Store::open(&app.config.db).map_err(|e| e.to_string())?;
    let run = runner::create(&mut store, &plan).map_err(|e| e.to_string())?;
    {
        let mut plays = app.plays.lock().unwrap_or_else(|e| e.into_inner());
        // Sessions over are forgotten here; their pages send people to
        // the session's own page.
        plays.retain(|_, seat| seat.status() != SeatStatus::Closed);
        plays.insert(run, seat.clone());
    }
    let log = app.config.log;
    let closing = Closing(seat.clone());
    std::thread::spawn(move || {
        // However the thread ends, a panic too, the seat says it is over.
        let _closing = closing;
        let store = std::sync::Mutex::new(store);
        let started = std::time::Instant::now();
        let clock = || started.elapsed();
        let runner = Runner {
            store: &store,
            models: &models,
            interrupted: &NEVER_INTERRUPTED,
            observer: &Unobserved,
            clock: &clock,
            leasing: &Leasing::for_this_process(DEFAULT_LEASE),
        };
        if let Err(e) = runner.execute(run, &plan) {
            log(&format!("played run {run}: {e}"));
        }
    });
    seat.wait_for_turn(ANSWER_WAIT);
    Ok(run)
}

/// Closes a seat when dropped.
struct Closing(Arc<Seat>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.close();
    }
}

fn seat_of(app: &App, run: i64) -> Option<Arc<Seat>> {
    app.plays
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&run)
        .cloned()
}

/// A played session: its turns so far, and the box for the person's next
/// one when it is awaited.
pub(super) async fn play_page(State(app): State<Arc<App>>, Path(run): Path<i64>) -> Response {
    let Some(seat) = seat_of(&app, run) else {
        // Over (or played before this server started): its own page.
        let session = with_store(&app.config, move |store| {
            Ok(store.session_ids(SessionScope::Run(run))?.pop())
        });
        return match session.await {
            Ok(Some(session)) => Redirect::to(&format!("/sessions/{session}")).into_response(),
            Ok(None) => (
                StatusCode::NOT_FOUND,
                "no session is played here by that number\n",
            )
                .into_response(),
            Err(response) => response,
        };
    };
    let read = with_store(&app.config, move |store| {
        let session = store.session_ids(SessionScope::Run(run))?.pop();
        let transcript = session.map(|id| store.transcript(id)).transpose()?;
        let side = match store.run_plan(run)? {
            crate::store::StoredPlan::Plan(plan) => plan.played_by,
            _ => None,
        };
        Ok((session, transcript, side))
    });
    let (session, transcript, side) = match read.await {
        Ok(read) => read,
        // A session is stored as it starts: none yet is a moment's wait.
        Err(response) => return response,
    };
    let side = side.map(|s| s.label().to_lowercase()).unwrap_or_default();
    let mut body = format!("<p><a href=\"/\">All sessions</a></p>\n<h1>You play the {side}</h1>\n");
    body += "<div id=\"turns\">\n";
    if let Some(transcript) = &transcript {
        for (position, turn) in transcript.turns.iter().enumerate() {
            body += &turn_html(position, turn);
        }
    }
    body += "</div>\n";
    let ending = transcript
        .as_ref()
        .and_then(|t| t.termination.as_ref())
        .map(|t| format!("{}: {}", t.display_name(), t.details()));
    match (seat.status(), ending) {
        (SeatStatus::YourTurn, _) => {
            body += &format!(
                "<form method=\"post\" action=\"/play/{run}/turns\" id=\"say\">\n<p><label>Your turn<br><textarea name=\"text\" rows=\"4\" maxlength=\"{MAX_TURN}\" required autofocus></textarea></label></p>\n<p><button type=\"submit\" id=\"send\">Say it</button></p></form>\n<form method=\"post\" action=\"/play/{run}/turns\" id=\"end\"><input type=\"hidden\" name=\"end\" value=\"1\"><button type=\"submit\">End the session</button></form>\n"
            );
        }
        (SeatStatus::Busy, None) => {
            body += "<p id=\"status\">The model is answering; reload this page in a moment.</p>\n";
        }
        (_, ending) => {
            body += &format!(
                "<p id=\"status\">The session is over{}.</p>\n",
                ending
                    .map(|e| format!(" ({})", escape(&e)))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(session) = session {
        body += &format!(
            "<p><a href=\"/sessions/{session}\">The session's page</a> (metadata, summary, rating)</p>\n"
        );
    }
    page(&format!("cbtsim: playing run {run}"), &body)
}

/// The person's turn (or `end`): handed to the engine, and the page shown
/// again once the model has answered.
pub(super) async fn take_turn(
    State(app): State<Arc<App>>,
    Path(run): Path<i64>,
    headers: HeaderMap,
    axum::Form(fields): axum::Form<HashMap<String, String>>,
) -> Response {
    if !from_own_page(&headers) {
        return from_another_site();
    }
    let Some(seat) = seat_of(&app, run) else {
        return (
            StatusCode::NOT_FOUND,
            "no session is played here by that number\n",
        )
            .into_response();
    };
    let turn = match turn_of(&fields) {
        Ok(turn) => turn,
        Err(message) => {
            return (StatusCode::UNPROCESSABLE_ENTITY, format!("{message}\n")).into_response();
        }
    };
    let given = tokio::task::spawn_blocking(move || seat.give(turn, ANSWER_WAIT)).await;
    match given {
        Ok(Ok(_)) | Ok(Err(SeatError::Closed)) => {
            Redirect::to(&format!("/play/{run}")).into_response()
        }
        Ok(Err(e @ SeatError::NotYourTurn)) => {
            (StatusCode::CONFLICT, format!("{e}\n")).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// What a posted form says: `end`, or a turn (`/end` typed is the same as
/// the button; a turn is kept as typed, with its line ends made `\n`).
fn turn_of(fields: &HashMap<String, String>) -> Result<PersonTurn, String> {
    if fields.contains_key("end") {
        return Ok(PersonTurn::End);
    }
    let text = fields
        .get("text")
        .map(|t| t.replace("\r\n", "\n"))
        .unwrap_or_default();
    if text.chars().count() > MAX_TURN {
        return Err(format!("a turn is at most {MAX_TURN} characters"));
    }
    match parse_line(text.trim()) {
        Line::Turn(_) => Ok(PersonTurn::Said(text.trim().to_string())),
        Line::End => Ok(PersonTurn::End),
        Line::Blank => Err("say something, or end the session".into()),
        Line::Help | Line::Unknown(_) => Err(
            "commands are not taken here: type your turn, or use the button to end the session"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_posted_turn_is_kept_as_typed_and_end_ends() {
        assert_eq!(
            turn_of(&form(&[("text", " I felt it.\r\nAll week. ")])),
            Ok(PersonTurn::Said("I felt it.\nAll week.".into()))
        );
        assert_eq!(turn_of(&form(&[("end", "1")])), Ok(PersonTurn::End));
        assert_eq!(turn_of(&form(&[("text", "/end")])), Ok(PersonTurn::End));
        assert!(turn_of(&form(&[("text", "  ")])).is_err());
        assert!(turn_of(&form(&[("text", "/help")])).is_err());
        assert!(turn_of(&form(&[("text", &"a".repeat(MAX_TURN + 1))])).is_err());
    }
}
