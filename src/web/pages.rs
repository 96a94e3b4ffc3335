//! The app's HTML pages: the store (search, runs, sessions), a run, a
//! course, a session (transcript, each turn's metadata, safety events,
//! summary, evaluations, ratings), and the reports. Every piece of stored
//! text goes through `escape`; the one script (`/assets/live.js`) sets
//! what it adds as text.

use super::{App, with_store};
use crate::eval::ctrs::ITEMS;
use crate::eval::report;
use crate::store::{BrowseFilter, Browsed, SessionScope};
use crate::turn::{Turn, TurnMeta};
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The store's page: a search over the sessions (persona, ending, any
/// turn's words), the runs, and the sessions found with their scores.
pub(super) async fn store_page(
    State(app): State<Arc<App>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let text = query
        .get("q")
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty());
    let filter = BrowseFilter {
        text: text.clone(),
        ..BrowseFilter::default()
    };
    let read = with_store(&app.config, move |store| {
        let sessions = store.browse(&filter)?;
        let runs = store.runs()?;
        let report = report::gather(store, SessionScope::All)?;
        Ok((sessions, runs, report))
    });
    let (sessions, runs, report) = match read.await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let mut body = String::from("<h1>cbtsim</h1>\n");
    if app.config.play.is_some() {
        body += "<p><a href=\"/play\">Play a session</a> (as the therapist or the patient)</p>\n";
    }
    body += &format!(
        "<form method=\"get\" action=\"/\" role=\"search\"><input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"persona, ending or words said\" aria-label=\"Search the sessions\"> <button type=\"submit\">Search</button></form>\n",
        escape(text.as_deref().unwrap_or(""))
    );
    if text.is_none() {
        body += "<h2>Runs</h2>\n<table id=\"runs\">\n<tr><th>run</th><th>kind</th><th>courses</th><th>sessions ended</th><th>turns</th><th>started</th><th>state</th></tr>\n";
        for run in &runs {
            let state = match (&run.finished_at, run.queued) {
                (Some(_), _) => "finished",
                (None, true) => "queued or running (workers)",
                (None, false) => "running or stopped",
            };
            body += &format!(
                "<tr><td><a href=\"/runs/{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3} of {4}</td><td>{5}</td><td>{6}</td><td>{7}</td></tr>\n",
                run.id,
                escape(&run.command),
                run.courses,
                run.sessions_ended,
                run.sessions,
                run.turns,
                escape(&run.started_at),
                state
            );
        }
        body += "</table>\n";
    }
    let scores: BTreeMap<i64, &report::SessionRow> = report
        .sessions
        .iter()
        .map(|row| (row.session_id, row))
        .collect();
    body += &match &text {
        Some(text) => format!(
            "<h2>Sessions found for “{}”: {}</h2>\n",
            escape(text),
            sessions.len()
        ),
        None => "<h2>Sessions</h2>\n".to_string(),
    };
    body += &format!(
        "<table id=\"found\">\n<tr><th>session</th><th>run</th><th>course</th><th>persona</th><th>#</th><th>turns</th><th>safety events</th><th>CTRS{}</th><th>ending</th><th>started</th></tr>\n",
        report
            .judge
            .as_deref()
            .map(|j| format!(" ({})", escape(j)))
            .unwrap_or_default()
    );
    for s in &sessions {
        let ctrs = scores
            .get(&s.id)
            .and_then(|row| row.ctrs_total)
            .map(|t| t.to_string())
            .unwrap_or_default();
        body += &format!(
            "<tr><td><a href=\"/sessions/{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td><td>{5}</td><td>{6}</td><td>{ctrs}</td><td>{7}</td><td>{8}</td></tr>\n",
            s.id,
            link("runs", s.run),
            link("courses", s.course),
            escape(&s.persona),
            s.session_number,
            s.turns,
            s.safety_events,
            escape(ending(s)),
            escape(&s.started_at),
        );
    }
    body += "</table>\n";
    page("cbtsim: sessions", &body)
}

/// A link to a run's or course's page, or nothing.
fn link(kind: &str, id: Option<i64>) -> String {
    id.map(|id| format!("<a href=\"/{kind}/{id}\">{id}</a>"))
        .unwrap_or_default()
}

fn ending(s: &Browsed) -> &str {
    s.termination_reason.as_deref().unwrap_or("(not ended)")
}

/// A run's page: its sessions, kept up to date while it runs.
pub(super) async fn run_page(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    let read = with_store(&app.config, move |store| {
        let run = store.run_row(id)?;
        let filter = BrowseFilter {
            run: Some(id),
            ..BrowseFilter::default()
        };
        Ok((run, store.browse(&filter)?))
    });
    let (run, sessions) = match read.await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let live = run
        .finished_at
        .is_none()
        .then(|| format!("/runs/{id}/events"));
    let body = format!(
        "<p><a href=\"/\">All sessions</a> · <a href=\"/runs/{id}/report\">Report</a></p>\n<h1>Run {id} ({})</h1>\n<p>Started {}; <span id=\"status\">{}</span>.</p>\n{}",
        escape(&run.command),
        escape(&run.started_at),
        match &run.finished_at {
            Some(at) => format!("finished {}", escape(at)),
            None => "not finished: sessions appear here as they are stored".to_string(),
        },
        sessions_table(&sessions, live.as_deref())
    );
    page(&format!("cbtsim: run {id}"), &body)
}

/// A course's page: its sessions in order.
pub(super) async fn course_page(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    let read = with_store(&app.config, move |store| {
        let course = store.course(id)?;
        let filter = BrowseFilter {
            course: Some(id),
            ..BrowseFilter::default()
        };
        Ok((course, store.browse(&filter)?))
    });
    let (course, mut sessions) = match read.await {
        Ok(read) => read,
        Err(response) => return response,
    };
    sessions.reverse();
    let body = format!(
        "<p><a href=\"/\">All sessions</a> · <a href=\"/courses/{id}/report\">Report</a></p>\n<h1>Course {id}: {}</h1>\n<p>{} of {} session(s) stored.</p>\n{}",
        escape(&course.persona.id),
        sessions.len(),
        course.sessions,
        sessions_table(&sessions, None)
    );
    page(&format!("cbtsim: course {id}"), &body)
}

/// The sessions of a run or course; with `live`, the events that keep
/// the table's rows up to date (`live.js` rebuilds them as these are).
fn sessions_table(sessions: &[Browsed], live: Option<&str>) -> String {
    let mut out = String::from(
        "<table><thead><tr><th>session</th><th>course</th><th>persona</th><th>#</th><th>turns</th><th>safety events</th><th>ending</th></tr></thead>\n",
    );
    out += &match live {
        Some(url) => format!("<tbody id=\"sessions\" data-live=\"{}\">\n", escape(url)),
        None => "<tbody id=\"sessions\">\n".to_string(),
    };
    for s in sessions {
        out += &format!(
            "<tr><td><a href=\"/sessions/{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td><td>{5}</td><td>{6}</td></tr>\n",
            s.id,
            link("courses", s.course),
            escape(&s.persona),
            s.session_number,
            s.turns,
            s.safety_events,
            escape(ending(s)),
        );
    }
    out += "</tbody></table>\n";
    if live.is_some() {
        out += LIVE_SCRIPT;
    }
    out
}

const LIVE_SCRIPT: &str = "<script src=\"/assets/live.js\"></script>\n";

/// What a page says of how a turn was made.
pub(super) fn turn_notes(meta: &TurnMeta) -> String {
    let mut notes = Vec::new();
    if meta.person {
        notes.push("typed by a person".to_string());
    } else if let Some(model) = &meta.model {
        notes.push(format!("model {model}"));
    }
    if let Some(ms) = meta.elapsed_ms {
        notes.push(format!("{ms} ms"));
    }
    if let Some(candidates) = meta.candidates {
        notes.push(format!("{candidates} candidates"));
    }
    for repair in &meta.repairs {
        notes.push(format!("repaired: {}", repair.action));
    }
    notes.join(" · ")
}

/// A turn as the pages show it (`live.js` builds the same).
pub(super) fn turn_html(position: usize, turn: &Turn) -> String {
    format!(
        "<div class=\"turn {}\" id=\"turn-{}\"><b>{} {}</b><p>{}</p><small>{}</small></div>\n",
        turn.speaker.as_str(),
        position + 1,
        position + 1,
        turn.speaker.label(),
        escape(&turn.text),
        escape(&turn_notes(&turn.meta)),
    )
}

pub(super) async fn session_page(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    let read = with_store(&app.config, move |store| {
        // Whether it has ended, read first: a page read as ended has every
        // turn (else the live script brings the rest).
        let ended = store.session_ended(id)?;
        let filter = BrowseFilter {
            session: Some(id),
            ..BrowseFilter::default()
        };
        let head = store.browse(&filter)?.pop();
        Ok((
            store.transcript(id)?,
            head,
            store.safety_events(id)?,
            store.session_evaluations(id)?,
            store.ratings(Some(id))?,
            ended,
        ))
    });
    let (transcript, head, events, evaluations, ratings, ended) = match read.await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let mut links = vec![
        "<a href=\"/\">All sessions</a>".to_string(),
        format!("<a href=\"/sessions/{id}/report\">Report</a>"),
        format!("<a href=\"/api/sessions/{id}/evaluations\">Evaluations (JSON)</a>"),
        format!("<a href=\"/api/sessions/{id}\">Transcript (JSON)</a>"),
    ];
    if let Some(head) = &head {
        if let Some(course) = head.course {
            links.insert(
                1,
                format!("<a href=\"/courses/{course}\">Course {course}</a>"),
            );
        }
        if let Some(run) = head.run {
            links.insert(1, format!("<a href=\"/runs/{run}\">Run {run}</a>"));
        }
    }
    let persona = head
        .as_ref()
        .map(|h| h.persona.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("imported");
    let mut body = format!(
        "<p>{}</p>\n<h1>Session {id}: {}, session {}</h1>\n",
        links.join(" · "),
        escape(persona),
        transcript.session_number
    );
    body += &match ended {
        true => "<div id=\"turns\">\n".to_string(),
        false => format!(
            "<p id=\"status\">Not ended: turns appear as they are stored.</p>\n<div id=\"turns\" data-live=\"/sessions/{id}/events?after={}\">\n",
            transcript.turns.len()
        ),
    };
    for (position, turn) in transcript.turns.iter().enumerate() {
        body += &turn_html(position, turn);
    }
    body += "</div>\n";
    if !ended {
        body += LIVE_SCRIPT;
    }
    if let Some(reason) = &transcript.termination {
        body += &format!(
            "<h2>Ending</h2><p id=\"ending\">{}: {}</p>\n",
            escape(reason.display_name()),
            escape(&reason.details())
        );
    }
    if !events.is_empty() {
        body += "<h2>Safety events</h2>\n<table><tr><th>patient turn</th><th>category</th><th>level</th><th>words</th><th>answered at turn</th></tr>\n";
        for e in &events {
            body += &format!(
                "<tr><td><a href=\"#turn-{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td></tr>\n",
                e.turn,
                escape(e.category.as_str()),
                escape(e.level.as_str()),
                escape(&e.words.join(", ")),
                e.protocol_turn.map(|t| t.to_string()).unwrap_or_default()
            );
        }
        body += "</table>\n";
    }
    if let Some(summary) = &transcript.summary {
        body += "<h2>Summary</h2>\n";
        for (heading, items) in [
            ("Main topics discussed", &summary.main_topics),
            ("Techniques/exercises introduced", &summary.techniques),
            ("Things that appeared helpful/important", &summary.helpful),
            ("Homework assigned", &summary.homework),
            ("Insights/realizations", &summary.insights),
        ] {
            body += &format!("<h3>{heading}</h3><ul>");
            for item in items {
                body += &format!("<li>{}</li>", escape(item));
            }
            body += "</ul>\n";
        }
    }
    body += "<h2>Evaluations</h2>\n";
    if evaluations.is_empty() {
        body += &format!(
            "<p>None stored: <code>cbtsim eval --db … --session {id}</code> evaluates it.</p>\n"
        );
    } else {
        body += "<ul>";
        for e in &evaluations {
            body += &format!(
                "<li>{} by {} (rubric {}), {}</li>",
                escape(&e.kind),
                escape(if e.judge.is_empty() {
                    "rules"
                } else {
                    &e.judge
                }),
                escape(&e.rubric_version),
                escape(&e.evaluated_at)
            );
        }
        body += &format!(
            "</ul>\n<p><a href=\"/api/sessions/{id}/evaluations\">The results (JSON)</a> · <a href=\"/sessions/{id}/report\">The report</a></p>\n"
        );
    }
    body += &rating_section(id, &ratings);
    page(&format!("cbtsim: session {id}"), &body)
}

/// The ratings stored for a session, and the CTRS form to add one.
fn rating_section(id: i64, ratings: &[(i64, String, String, u32)]) -> String {
    let mut out = String::from("<h2 id=\"ratings\">CTRS ratings</h2>\n");
    if ratings.is_empty() {
        out += "<p>None yet.</p>\n";
    } else {
        out += "<table id=\"rating-table\"><tr><th>rater</th><th>item</th><th>score</th></tr>\n";
        for (_, item, rater, score) in ratings {
            out += &format!(
                "<tr><td>{}</td><td>{}</td><td>{score}</td></tr>\n",
                escape(rater),
                escape(item)
            );
        }
        out += "</table>\n";
    }
    out += &format!(
        "<form method=\"post\" action=\"/sessions/{id}/ratings\" id=\"rate\">\n<p><label>Rater <input name=\"rater\" required maxlength=\"100\"></label></p>\n"
    );
    for item in &ITEMS {
        out += &format!(
            "<fieldset><legend>{}</legend><select name=\"{}\"><option value=\"\">not scored</option>",
            escape(item.name),
            item.key
        );
        for score in 0..=6 {
            out += &format!("<option value=\"{score}\">{score}</option>");
        }
        out += &format!(
            "</select> <small>0: {} · 2: {} · 4: {} · 6: {}</small></fieldset>\n",
            escape(item.anchors[0]),
            escape(item.anchors[1]),
            escape(item.anchors[2]),
            escape(item.anchors[3])
        );
    }
    out += "<p><button type=\"submit\">Store the rating</button></p></form>\n";
    out
}

/// `cbtsim report`'s HTML page, of a session, a course or a run.
async fn report_page(app: &App, scope: SessionScope) -> Response {
    match with_store(&app.config, move |store| report::gather(store, scope)).await {
        Ok(report) => Html(report::html(&report)).into_response(),
        Err(response) => response,
    }
}

pub(super) async fn session_report(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    report_page(&app, SessionScope::One(id)).await
}

pub(super) async fn run_report(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    report_page(&app, SessionScope::Run(id)).await
}

pub(super) async fn course_report(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    report_page(&app, SessionScope::Course(id)).await
}

pub(super) fn page(title: &str, body: &str) -> Response {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{STYLE}</style></head>\n<body>\n{body}<footer>cbtsim simulates therapy for testing and training; it is not a replacement for a clinician.</footer>\n</body></html>\n",
        escape(title)
    ))
    .into_response()
}

const STYLE: &str = "body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em}\
table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ddd}\
.turn{margin:.6em 0;padding:.4em .8em;border-left:4px solid #999}\
.turn p{white-space:pre-wrap}\
.turn.therapist{border-color:#36c}.turn.patient{border-color:#c63}\
textarea{width:100%}small{color:#666}footer{margin-top:2em;color:#666;font-size:small}";

/// Text as HTML text: nothing in it is markup.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
