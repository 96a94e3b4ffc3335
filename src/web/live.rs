//! Watching live: server-sent events of a session's turns, or of a run's
//! sessions, as they are stored. The store is read, not the runner, so a
//! session shows live whichever process writes it (a `cbtsim run`, a
//! worker on another machine, a session played here). Each stream has a
//! thread of its own that reads the store every `POLL` and ends when its
//! page goes away or what it watches is over.

use super::pages::turn_notes;
use super::{App, WebConfig};
use crate::store::{BrowseFilter, Store, StoreError};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const POLL: Duration = Duration::from_millis(400);
/// A stream with nothing new this long ends (its page says so).
const QUIET: Duration = Duration::from_secs(30 * 60);

/// The script of the live pages: it adds turns and rebuilds a run's rows
/// from the events, as text (never markup).
pub(super) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("live.js"),
    )
        .into_response()
}

/// Reads the store every `POLL` on a thread of its own, sending what
/// `step` finds, until `step` says it is over or the page has gone.
fn watch(
    config: &WebConfig,
    mut step: impl FnMut(&Store, &mut Vec<Event>) -> Result<bool, StoreError> + Send + 'static,
) -> Response {
    let (sender, mut events) = mpsc::channel::<Event>(64);
    let db = config.db.clone();
    let log = config.log;
    // Not named `error`: a browser's EventSource gives that name to its
    // own lost connections, and reconnects.
    let failed = || Event::default().event("failed").data("{}");
    tokio::task::spawn_blocking(move || {
        let store = match Store::open_to_read(&db) {
            Ok(store) => store,
            Err(e) => {
                log(&e.to_string());
                let _ = sender.blocking_send(failed());
                return;
            }
        };
        let mut quiet_since = Instant::now();
        loop {
            let mut found = Vec::new();
            let over = match step(&store, &mut found) {
                Ok(over) => over,
                Err(e) => {
                    log(&e.to_string());
                    found.push(failed());
                    true
                }
            };
            if !found.is_empty() {
                quiet_since = Instant::now();
            }
            // A session whose process died never ends: its page stops
            // watching after a while, and says so.
            let quiet = quiet_since.elapsed() > QUIET;
            if quiet {
                found.push(Event::default().event("quiet").data("{}"));
            }
            for event in found {
                if sender.blocking_send(event).is_err() {
                    return;
                }
            }
            if over || quiet || sender.is_closed() {
                return;
            }
            std::thread::sleep(POLL);
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| {
        events
            .poll_recv(cx)
            .map(|event| event.map(Ok::<_, Infallible>))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A turn as an event carries it (what `live.js` shows).
#[derive(serde::Serialize)]
struct TurnEvent<'a> {
    position: usize,
    speaker: &'a str,
    label: &'a str,
    text: &'a str,
    notes: String,
}

/// `turn` events from position `after` on (numbered from 0), then `end`
/// with the ending once the session has one.
pub(super) async fn session_events(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut shown = match query.get("after").map(|a| a.parse::<usize>()) {
        None => 0,
        Some(Ok(after)) => after,
        Some(Err(_)) => return (StatusCode::BAD_REQUEST, "after: not a number\n").into_response(),
    };
    // An unknown session is a 404 now, not an event stream that fails.
    if let Err(response) = super::with_store(&app.config, move |store| store.transcript(id)).await {
        return response;
    }
    watch(&app.config, move |store, events| {
        // Whether it has ended, read before its turns: an end read after
        // them could follow a last turn not read.
        let ended = store.session_ended(id)?;
        let transcript = store.transcript(id)?;
        for (position, turn) in transcript.turns.iter().enumerate().skip(shown) {
            let event = TurnEvent {
                position,
                speaker: turn.speaker.as_str(),
                label: turn.speaker.label(),
                text: &turn.text,
                notes: turn_notes(&turn.meta),
            };
            events.push(json_event("turn", &event));
        }
        shown = shown.max(transcript.turns.len());
        if !ended {
            return Ok(false);
        }
        let ending = transcript
            .termination
            .map(|t| format!("{}: {}", t.display_name(), t.details()))
            .unwrap_or_default();
        events.push(json_event("end", &serde_json::json!({ "ending": ending })));
        Ok(true)
    })
}

/// `sessions` events with the run's rows whenever they change, then `end`
/// once the run has finished.
pub(super) async fn run_events(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    if let Err(response) = super::with_store(&app.config, move |store| store.run_row(id)).await {
        return response;
    }
    let mut last = None;
    watch(&app.config, move |store, events| {
        // Finished or not, read before the rows (as for a session).
        let finished = store.run_row(id)?.finished_at.is_some();
        let filter = BrowseFilter {
            run: Some(id),
            ..BrowseFilter::default()
        };
        let rows = store.browse(&filter)?;
        if last.as_ref() != Some(&rows) {
            events.push(json_event("sessions", &rows));
            last = Some(rows);
        }
        if finished {
            events.push(json_event("end", &serde_json::json!({})));
        }
        Ok(finished)
    })
}

fn json_event(name: &str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_default())
}
