//! `cbtsim serve`: a local web app over a store, to browse its sessions and
//! read them, and a JSON API with the same objects as `list --json` and
//! `show --format json`. Its pages are built here, with no external
//! scripts, fonts or styles.
//!
//! Security: it binds to loopback unless a token is given (`check_bind`);
//! with a token, every request must carry it (an `Authorization: Bearer`
//! header, the `cbtsim_token` cookie, or `?token=` once, which sets the
//! cookie); every piece of model or person text is escaped; ids are
//! integers; only the routes below exist, and nothing here changes the
//! store (no request can be forged across sites to change it).

use crate::store::{Store, StoreError};
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "{addr} is not a loopback address: serving other machines needs --token (every request must then carry it)"
    )]
    NeedsToken { addr: SocketAddr },
    #[error("cannot listen on {addr}: {message}")]
    Listen { addr: SocketAddr, message: String },
}

/// What the app serves.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The store (a SQLite file or a postgres:// URL), opened to read per
    /// request.
    pub db: PathBuf,
    pub token: Option<String>,
}

/// Refuses to serve other machines without a token.
pub fn check_bind(addr: &SocketAddr, token: Option<&str>) -> Result<(), WebError> {
    match addr.ip().is_loopback() || token.is_some_and(|t| !t.is_empty()) {
        true => Ok(()),
        false => Err(WebError::NeedsToken { addr: *addr }),
    }
}

/// Serves until the process ends; `ready` is told the address it listens
/// on (with port 0, the one the system chose).
pub fn serve(
    addr: SocketAddr,
    config: WebConfig,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), WebError> {
    check_bind(&addr, config.token.as_deref())?;
    let listen_error = |e: std::io::Error| WebError::Listen {
        addr,
        message: e.to_string(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .build()
        .map_err(listen_error)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(listen_error)?;
        ready(listener.local_addr().map_err(listen_error)?);
        axum::serve(listener, router(config))
            .await
            .map_err(listen_error)
    })
}

pub fn router(config: WebConfig) -> Router {
    let config = Arc::new(config);
    Router::new()
        .route("/", get(store_page))
        .route("/sessions/{id}", get(session_page))
        .route("/api/sessions", get(api_sessions))
        .route("/api/sessions/{id}", get(api_session))
        .layer(middleware::from_fn_with_state(config.clone(), guard))
        .with_state(config)
}

const TOKEN_COOKIE: &str = "cbtsim_token";

/// The token check, and the headers every response carries.
async fn guard(
    State(config): State<Arc<WebConfig>>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
    next: Next,
) -> Response {
    let mut set_cookie = false;
    if let Some(token) = &config.token {
        let headers = request.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = cookie(headers, TOKEN_COOKIE);
        let queried = query.get("token").map(String::as_str);
        let given = [bearer, cookie.as_deref(), queried];
        if !given.iter().flatten().any(|t| same(t, token)) {
            return (
                StatusCode::UNAUTHORIZED,
                "a token is needed: ?token=TOKEN\n",
            )
                .into_response();
        }
        set_cookie = queried.is_some_and(|t| same(t, token));
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if set_cookie && let Some(token) = &config.token {
        let value = format!("{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(header::SET_COOKIE, value);
        }
    }
    response
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// Compares in time that does not depend on where they differ.
fn same(given: &str, token: &str) -> bool {
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Runs a store read off the async threads; a store error is the
/// response.
async fn with_store<T: Send + 'static>(
    config: &WebConfig,
    read: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response> {
    let db = config.db.clone();
    let done = tokio::task::spawn_blocking(move || read(&Store::open_to_read(&db)?)).await;
    match done {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e @ StoreError::NoSuchSession { .. })) => {
            Err((StatusCode::NOT_FOUND, format!("{e}\n")).into_response())
        }
        Ok(Err(e)) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
    }
}

async fn api_sessions(State(config): State<Arc<WebConfig>>) -> Response {
    match with_store(&config, |store| store.list()).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(response) => response,
    }
}

async fn api_session(State(config): State<Arc<WebConfig>>, Path(id): Path<i64>) -> Response {
    match with_store(&config, move |store| store.transcript(id)).await {
        Ok(transcript) => axum::Json(transcript).into_response(),
        Err(response) => response,
    }
}

async fn store_page(State(config): State<Arc<WebConfig>>) -> Response {
    let rows = match with_store(&config, |store| store.list()).await {
        Ok(rows) => rows,
        Err(response) => return response,
    };
    let mut body = String::from(
        "<h1>Sessions</h1>\n<table>\n<tr><th>kind</th><th>id</th><th>persona</th><th>session</th><th>turns</th><th>ended</th><th>started</th></tr>\n",
    );
    for row in &rows {
        let id = match row.kind {
            "session" => format!("<a href=\"/sessions/{0}\">{0}</a>", row.id),
            _ => row.id.to_string(),
        };
        body += &format!(
            "<tr><td>{}</td><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(row.kind),
            escape(&row.persona),
            row.session_number,
            row.turns,
            escape(row.termination_reason.as_deref().unwrap_or("(unfinished)")),
            escape(&row.started_at),
        );
    }
    body += "</table>\n";
    page("cbtsim: sessions", &body)
}

async fn session_page(State(config): State<Arc<WebConfig>>, Path(id): Path<i64>) -> Response {
    let transcript = match with_store(&config, move |store| store.transcript(id)).await {
        Ok(transcript) => transcript,
        Err(response) => return response,
    };
    let mut body = format!(
        "<p><a href=\"/\">All sessions</a> · <a href=\"/api/sessions/{id}\">JSON</a></p>\n<h1>Session {id} (session number {})</h1>\n",
        transcript.session_number
    );
    for (i, turn) in transcript.turns.iter().enumerate() {
        let meta = &turn.meta;
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
        body += &format!(
            "<div class=\"turn {}\"><b>{} {}</b><p>{}</p><small>{}</small></div>\n",
            turn.speaker.as_str(),
            i + 1,
            turn.speaker.label(),
            escape(&turn.text).replace('\n', "<br>"),
            escape(&notes.join(" · ")),
        );
    }
    if let Some(reason) = &transcript.termination {
        body += &format!(
            "<h2>Ending</h2><p>{}: {}</p>\n",
            escape(reason.display_name()),
            escape(&reason.details())
        );
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
    page(&format!("cbtsim: session {id}"), &body)
}

fn page(title: &str, body: &str) -> Response {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{STYLE}</style></head>\n<body>\n{body}<footer>cbtsim simulates therapy for testing and training; it is not a replacement for a clinician.</footer>\n</body></html>\n",
        escape(title)
    ))
    .into_response()
}

const STYLE: &str = "body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em}\
table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ddd}\
.turn{margin:.6em 0;padding:.4em .8em;border-left:4px solid #999}\
.turn.therapist{border-color:#36c}.turn.patient{border-color:#c63}\
small{color:#666}footer{margin-top:2em;color:#666;font-size:small}";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn only_loopback_is_served_without_a_token() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(check_bind(&local, None).is_ok());
        assert!(check_bind(&"[::1]:8080".parse().unwrap(), None).is_ok());
        assert!(matches!(
            check_bind(&any, None),
            Err(WebError::NeedsToken { .. })
        ));
        assert!(check_bind(&any, Some("")).is_err());
        assert!(check_bind(&any, Some("s3cret")).is_ok());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abd", "abc"));
        assert!(!same("ab", "abc"));
    }
}
