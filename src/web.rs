//! `cbtsim serve`: a local web app over a store, to browse its sessions and
//! read them, and a JSON API with the same objects as `list --json` and
//! `show --format json`. Its pages are built here, with no external
//! scripts, fonts or styles.
//!
//! People rate sessions on the CTRS here (a form on the session page, or
//! `POST /api/sessions/{id}/ratings`); the ratings go to the store, where
//! `cbtsim eval agreement` reads them.
//!
//! Security: it binds to loopback unless a token is given (`check_bind`);
//! with a token, every request must carry it (an `Authorization: Bearer`
//! header, the `cbtsim_token` cookie, or `?token=` once, which sets the
//! cookie); every piece of model or person text is escaped; ids are
//! integers; only the routes below exist. A request that writes (a rating)
//! is refused when it comes from another site: its `Origin` (or
//! `Sec-Fetch-Site`) must be this app's, and the API takes JSON only,
//! which a page of another site cannot send without asking first.

use crate::eval::ctrs::ITEMS;
use crate::store::{Store, StoreError};
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
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
    #[error(
        "the token may hold only letters, digits and . _ ~ + / = - (it goes into a cookie and a URL)"
    )]
    BadToken,
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
/// (An empty token is none; a token must be safe in a cookie and a URL.)
pub fn check_bind(addr: &SocketAddr, token: Option<&str>) -> Result<(), WebError> {
    let token = token.filter(|t| !t.is_empty());
    if let Some(token) = token
        && !token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._~+/=-".contains(c))
    {
        return Err(WebError::BadToken);
    }
    match addr.ip().is_loopback() || token.is_some() {
        true => Ok(()),
        false => Err(WebError::NeedsToken { addr: *addr }),
    }
}

/// Whether a `Host` header names this machine's loopback: without a token,
/// a page of another site whose name was pointed at 127.0.0.1 (DNS
/// rebinding) would otherwise be this app's "same site".
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Serves until the process ends; `ready` is told the address it listens
/// on (with port 0, the one the system chose).
pub fn serve(
    addr: SocketAddr,
    config: WebConfig,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), WebError> {
    check_bind(&addr, config.token.as_deref())?;
    let config = WebConfig {
        token: config.token.filter(|t| !t.is_empty()),
        ..config
    };
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
        .route("/api/sessions/{id}/ratings", post(api_rate))
        .route("/sessions/{id}/ratings", post(form_rate))
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
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if config.token.is_none() && !loopback_host(host) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "this app answers only to a loopback address without --token\n",
        )
            .into_response();
    }
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
        // Given in the address: kept in a cookie, and taken out of the
        // address (history, bookmarks) at once.
        if queried.is_some_and(|t| same(t, token)) && request.method() == axum::http::Method::GET {
            let path = request.uri().path().to_string();
            let mut response = axum::response::Redirect::to(&path).into_response();
            let value = format!("{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            return response;
        }
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
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
    on_store(config, false, read).await
}

async fn on_store<T: Send + 'static>(
    config: &WebConfig,
    write: bool,
    work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response> {
    let db = config.db.clone();
    let done = tokio::task::spawn_blocking(move || {
        let store = match write {
            true => Store::open(&db)?,
            false => Store::open_to_read(&db)?,
        };
        work(&store)
    })
    .await;
    match done {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e @ StoreError::NoSuchSession { .. })) => {
            Err((StatusCode::NOT_FOUND, format!("{e}\n")).into_response())
        }
        Ok(Err(e @ (StoreError::ReadOnly { .. } | StoreError::Full { .. }))) => {
            Err((StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response())
        }
        // The store's own words (paths, the server's messages) stay here.
        Ok(Err(e)) => {
            eprintln!("cbtsim: serve: {e}");
            Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store failed; see the server's log\n",
            )
                .into_response())
        }
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

/// A rating as the API takes it.
#[derive(Debug, serde::Deserialize)]
struct RatingBody {
    rater: String,
    items: Vec<ItemScore>,
}

#[derive(Debug, serde::Deserialize)]
struct ItemScore {
    item: String,
    score: u32,
}

/// Whether a writing request comes from this app's own pages (or from no
/// page at all: a script or `curl`, which carries no `Origin`).
fn same_site(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_ok = match headers.get(header::ORIGIN).map(|o| o.to_str()) {
        None => true,
        Some(Ok(origin)) => host.is_some_and(|host| origin == format!("http://{host}")),
        Some(Err(_)) => false,
    };
    let fetch_ok = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|site| site == "same-origin" || site == "none");
    origin_ok && fetch_ok
}

/// Checks a rating: a rater's name (not the judge's), each CTRS item at
/// most once, scores 0 to 6.
fn checked(rater: &str, items: Vec<(String, u32)>) -> Result<(String, Vec<(String, u32)>), String> {
    let rater = rater.trim();
    if rater.is_empty() || rater.chars().count() > 100 {
        return Err("the rater's name must be 1 to 100 characters".into());
    }
    if rater == "judge" || rater.starts_with("judge:") {
        return Err(format!(
            "{rater:?} is the judge model's name in `eval agreement`"
        ));
    }
    if items.is_empty() {
        return Err("no item was scored".into());
    }
    let mut seen = std::collections::HashSet::new();
    for (item, score) in &items {
        if !ITEMS.iter().any(|i| i.key == item) {
            return Err(format!("{item:?} is not a CTRS item"));
        }
        if *score > 6 {
            return Err(format!("{item}: {score} is not a score from 0 to 6"));
        }
        if !seen.insert(item.clone()) {
            return Err(format!("{item} is scored twice"));
        }
    }
    Ok((rater.to_string(), items))
}

async fn store_rating(
    config: &WebConfig,
    id: i64,
    rater: String,
    items: Vec<(String, u32)>,
) -> Result<usize, Response> {
    let (rater, items) = checked(&rater, items)
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n")).into_response())?;
    let count = items.len();
    on_store(config, true, move |store| {
        store.set_ratings(id, &rater, &items)
    })
    .await?;
    Ok(count)
}

async fn api_rate(
    State(config): State<Arc<WebConfig>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !same_site(&headers) {
        return (StatusCode::FORBIDDEN, "a request from another site\n").into_response();
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/json\n",
        )
            .into_response();
    }
    let body: RatingBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let items = body.items.into_iter().map(|i| (i.item, i.score)).collect();
    match store_rating(&config, id, body.rater, items).await {
        Ok(stored) => (
            StatusCode::CREATED,
            axum::Json(serde_json::json!({"session": id, "stored": stored})),
        )
            .into_response(),
        Err(response) => response,
    }
}

/// The session page's form: the rater, and a score field per item (left
/// empty: not scored).
async fn form_rate(
    State(config): State<Arc<WebConfig>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    axum::Form(fields): axum::Form<HashMap<String, String>>,
) -> Response {
    // A browser's form post says where it comes from; one that says
    // nothing is refused (scripts use the JSON API).
    let says = headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-site");
    if !says || !same_site(&headers) {
        return (StatusCode::FORBIDDEN, "a request from another site\n").into_response();
    }
    let rater = fields.get("rater").cloned().unwrap_or_default();
    let mut items = Vec::new();
    for item in &ITEMS {
        match fields.get(item.key).map(|v| v.trim()) {
            None | Some("") => {}
            Some(value) => match value.parse::<u32>() {
                Ok(score) => items.push((item.key.to_string(), score)),
                Err(_) => {
                    let message = format!("{}: {value:?} is not a score\n", item.key);
                    return (StatusCode::UNPROCESSABLE_ENTITY, message).into_response();
                }
            },
        }
    }
    match store_rating(&config, id, rater, items).await {
        Ok(_) => axum::response::Redirect::to(&format!("/sessions/{id}#ratings")).into_response(),
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
    let read = with_store(&config, move |store| {
        Ok((store.transcript(id)?, store.ratings(Some(id))?))
    });
    let (transcript, ratings) = match read.await {
        Ok(read) => read,
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
    body += &rating_section(id, &ratings);
    page(&format!("cbtsim: session {id}"), &body)
}

/// The ratings stored for a session, and the CTRS form to add one.
fn rating_section(id: i64, ratings: &[(i64, String, String, u32)]) -> String {
    let mut out = String::from("<h2 id=\"ratings\">CTRS ratings</h2>\n");
    if ratings.is_empty() {
        out += "<p>None yet.</p>\n";
    } else {
        out += "<table><tr><th>rater</th><th>item</th><th>score</th></tr>\n";
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
        "<form method=\"post\" action=\"/sessions/{id}/ratings\">\n<p><label>Rater <input name=\"rater\" required maxlength=\"100\"></label></p>\n"
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
        assert!(matches!(
            check_bind(&local, Some("a;b")),
            Err(WebError::BadToken)
        ));
    }

    #[test]
    fn only_loopback_names_are_this_app_without_a_token() {
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "127.0.0.2",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:8080",
            "evil.example",
            "10.0.0.1:8080",
            "",
            "[::2]:80",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abd", "abc"));
        assert!(!same("ab", "abc"));
    }
}
