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

mod live;
mod pages;
mod play;

pub use pages::escape;

use crate::eval::ctrs::ITEMS;
use crate::model::spec::Models;
use crate::plan::RunPlan;
use crate::play::Seat;
use crate::store::{Store, StoreError};
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "{addr} is not a loopback address: serving other machines needs --token (every request must then carry it)"
    )]
    NeedsToken { addr: SocketAddr },
    #[error(
        "the token may hold only letters, digits and . _ ~ - (it goes into a cookie and a URL)"
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
    /// The plan a session played in the browser starts from (its persona
    /// and the side the person plays are chosen on the page); none: the
    /// app does not offer play.
    pub play: Option<RunPlan>,
    /// Where the app says what went wrong that a page does not show (a
    /// store's own words, a played session's failure): the library never
    /// prints, the binary decides.
    pub log: fn(&str),
}

/// Refuses to serve other machines without a token.
/// (An empty token is none; a token must be safe in a cookie and a URL.)
pub fn check_bind(addr: &SocketAddr, token: Option<&str>) -> Result<(), WebError> {
    let token = token.filter(|t| !t.is_empty());
    if let Some(token) = token
        && !token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c))
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
        // Time for the events' keep-alive.
        .enable_io()
        .enable_time()
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

/// The app's state: its settings, the sessions being played in the
/// browser (by run), and the models they are played with (each opened
/// once, so the weights load once).
pub struct App {
    pub config: WebConfig,
    plays: Mutex<HashMap<i64, Arc<Seat>>>,
    models: Mutex<Models>,
}

pub fn router(config: WebConfig) -> Router {
    let models = Models::new(
        config
            .play
            .as_ref()
            .map(|plan| plan.config.clone())
            .unwrap_or_default(),
    );
    let app = Arc::new(App {
        config,
        plays: Mutex::new(HashMap::new()),
        models: Mutex::new(models),
    });
    Router::new()
        .route("/", get(pages::store_page))
        .route("/sessions/{id}", get(pages::session_page))
        .route("/sessions/{id}/events", get(live::session_events))
        .route("/sessions/{id}/report", get(pages::session_report))
        .route("/runs/{id}", get(pages::run_page))
        .route("/runs/{id}/events", get(live::run_events))
        .route("/runs/{id}/report", get(pages::run_report))
        .route("/courses/{id}", get(pages::course_page))
        .route("/courses/{id}/report", get(pages::course_report))
        .route("/play", get(play::play_form).post(play::start))
        .route("/play/{run}", get(play::play_page))
        .route("/play/{run}/turns", post(play::take_turn))
        .route("/assets/live.js", get(live::script))
        .route("/api/sessions", get(api_sessions))
        .route("/api/sessions/{id}", get(api_session))
        .route("/api/sessions/{id}/evaluations", get(api_evaluations))
        .route("/api/sessions/{id}/ratings", post(api_rate))
        .route("/sessions/{id}/ratings", post(form_rate))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

const TOKEN_COOKIE: &str = "cbtsim_token";

/// The token check, and the headers every response carries.
async fn guard(
    State(app): State<Arc<App>>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if app.config.token.is_none() && !loopback_host(host) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "this app answers only to a loopback address without --token\n",
        )
            .into_response();
    }
    if let Some(token) = &app.config.token {
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
            let mut response =
                axum::response::Redirect::to(&without_token(request.uri())).into_response();
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
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it a browser sends `Origin: null` with the
    // app's own forms, which `same_site` must then refuse. `same-origin`
    // keeps the address from other sites and the Origin for this one.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// The address without its `token` (the rest of its query kept), as a
/// path of this app (never `//host`, which a browser would leave for).
fn without_token(uri: &axum::http::Uri) -> String {
    let path = format!("/{}", uri.path().trim_start_matches(['/', '\\']));
    let rest: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some("token"))
        .collect();
    match rest.is_empty() {
        true => path,
        false => format!("{path}?{}", rest.join("&")),
    }
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
            (config.log)(&e.to_string());
            Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store failed; see the server's log\n",
            )
                .into_response())
        }
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
    }
}

async fn api_sessions(State(app): State<Arc<App>>) -> Response {
    match with_store(&app.config, |store| store.list()).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(response) => response,
    }
}

async fn api_session(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    match with_store(&app.config, move |store| store.transcript(id)).await {
        Ok(transcript) => axum::Json(transcript).into_response(),
        Err(response) => response,
    }
}

/// Every evaluation stored of a session (`cbtsim eval`): kind, judge,
/// rubric version and result.
async fn api_evaluations(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    let read = with_store(&app.config, move |store| {
        store.transcript(id)?;
        store.session_evaluations(id)
    });
    match read.await {
        Ok(rows) => axum::Json(rows).into_response(),
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
        // Either scheme: behind a TLS proxy the page is https.
        Some(Ok(origin)) => host.is_some_and(|host| {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }),
        Some(Err(_)) => false,
    };
    let fetch_ok = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|site| site == "same-origin" || site == "none");
    origin_ok && fetch_ok
}

/// A form posted by this app's own page. A browser's form post says where
/// it comes from; one that says nothing is refused (scripts use the JSON
/// API).
fn from_own_page(headers: &HeaderMap) -> bool {
    let says = headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-site");
    says && same_site(headers)
}

fn from_another_site() -> Response {
    (StatusCode::FORBIDDEN, "a request from another site\n").into_response()
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
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !same_site(&headers) {
        return from_another_site();
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
    match store_rating(&app.config, id, body.rater, items).await {
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
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    axum::Form(fields): axum::Form<HashMap<String, String>>,
) -> Response {
    if !from_own_page(&headers) {
        return from_another_site();
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
    match store_rating(&app.config, id, rater, items).await {
        Ok(_) => axum::response::Redirect::to(&format!("/sessions/{id}#ratings")).into_response(),
        Err(response) => response,
    }
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
    fn a_token_leaves_the_address_and_the_rest_stays() {
        let uri = |u: &str| u.parse::<axum::http::Uri>().unwrap();
        assert_eq!(without_token(&uri("/sessions/1?token=abc")), "/sessions/1");
        assert_eq!(without_token(&uri("/?q=sad&token=abc")), "/?q=sad");
        assert_eq!(
            without_token(&uri("//evil.example/?token=abc")),
            "/evil.example/"
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abd", "abc"));
        assert!(!same("ab", "abc"));
    }
}
