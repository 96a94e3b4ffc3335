//! `cbtsim serve`: the web app over a store, reached over HTTP on loopback
//! as a browser would (pages, the JSON API, the token, escaping).

use super::util::cbtsim_process;
use cbtsim::store::Store;
use cbtsim::web::{WebConfig, serve};
use cbtsim::{Speaker, Transcript, Turn};
use std::net::SocketAddr;
use std::path::Path;

/// A store with one imported session whose turns hold markup.
pub fn store_with_markup(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("web.db");
    let mut store = Store::open(&db).unwrap();
    let mut transcript = Transcript::new(1);
    transcript.turns = vec![
        Turn::new(Speaker::Therapist, "Hello. <b>How</b> are you?"),
        Turn::new(
            Speaker::Patient,
            "<script>document.title='pwned'</script> & \"fine\"",
        ),
    ];
    store.import(&transcript, "web test").unwrap();
    db
}

/// The app on a free loopback port, in a thread of this test.
fn start(db: &Path, token: Option<&str>) -> SocketAddr {
    start_app(db, token, None)
}

/// The plan of sessions played in the browser: the scripted model, a
/// few turns.
pub fn play_plan(model: &str, max_turns: u32) -> cbtsim::plan::RunPlan {
    use cbtsim::model::spec::{Config, ModelSpec};
    use cbtsim::plan::{PlanKind, PlanModels, RunPlan, SessionPlan};
    let mut session = SessionPlan::new("Nova", "2026-11-26T10:00:00".parse().unwrap());
    session.max_turns = max_turns;
    let config = Config::default();
    let spec: ModelSpec = model.parse().unwrap();
    let models = PlanModels::resolve(&config, Some(&spec), [None, None, None]).unwrap();
    RunPlan::new(PlanKind::Run, Vec::new(), models, session, config)
}

/// The app, offering play with `play` when given.
pub fn start_app(
    db: &Path,
    token: Option<&str>,
    play: Option<cbtsim::plan::RunPlan>,
) -> SocketAddr {
    let config = WebConfig {
        db: db.to_path_buf(),
        token: token.map(String::from),
        play,
        log: |message| eprintln!("serve: {message}"),
    };
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        serve("127.0.0.1:0".parse().unwrap(), config, |bound| {
            sender.send(bound).unwrap()
        })
        .unwrap()
    });
    receiver
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap()
}

fn get(url: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new().get(url).send().unwrap()
}

#[test]
fn pages_and_the_api_show_the_store_with_every_text_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_with_markup(dir.path());
    let addr = start(&db, None);
    let index = get(&format!("http://{addr}/"));
    assert_eq!(index.status(), 200);
    assert!(
        index.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let index = index.text().unwrap();
    assert!(index.contains("<a href=\"/sessions/1\">1</a>"), "{index}");

    let page = get(&format!("http://{addr}/sessions/1")).text().unwrap();
    assert!(!page.contains("<script>"), "{page}");
    assert!(!page.contains("<b>How"), "{page}");
    assert!(
        page.contains(
            "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt; &amp; &quot;fine&quot;"
        ),
        "{page}"
    );
    assert!(page.contains("not a replacement for a clinician"));

    // The API gives the objects `list --json` and `show --format json` do.
    let api: serde_json::Value = get(&format!("http://{addr}/api/sessions")).json().unwrap();
    let listed = cbtsim_process()
        .args(["list", "--json", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(api, listed);
    let session: serde_json::Value = get(&format!("http://{addr}/api/sessions/1"))
        .json()
        .unwrap();
    let shown = cbtsim_process()
        .args([
            "show",
            "1",
            "--format",
            "json",
            "--db",
            db.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(session, shown);
}

#[test]
fn ids_are_validated_and_nothing_outside_the_routes_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_with_markup(dir.path());
    let addr = start(&db, None);
    assert_eq!(get(&format!("http://{addr}/sessions/99")).status(), 404);
    assert_eq!(
        get(&format!("http://{addr}/sessions/1%20OR%201=1")).status(),
        400
    );
    assert_eq!(get(&format!("http://{addr}/api/sessions/x")).status(), 400);
    assert_eq!(
        get(&format!("http://{addr}/../../etc/passwd")).status(),
        404
    );
    assert_eq!(get(&format!("http://{addr}/web.db")).status(), 404);
    // Nothing changes the store over this app.
    let posted = reqwest::blocking::Client::new()
        .post(format!("http://{addr}/api/sessions"))
        .header("Origin", "http://evil.example")
        .send()
        .unwrap();
    assert_eq!(posted.status(), 405);
}

#[test]
fn with_a_token_every_request_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_with_markup(dir.path());
    let addr = start(&db, Some("s3cret"));
    assert_eq!(get(&format!("http://{addr}/")).status(), 401);
    assert_eq!(get(&format!("http://{addr}/api/sessions/1")).status(), 401);
    assert_eq!(get(&format!("http://{addr}/?token=wrong")).status(), 401);
    let client = reqwest::blocking::Client::new();
    let with_header = client
        .get(format!("http://{addr}/api/sessions"))
        .bearer_auth("s3cret")
        .send()
        .unwrap();
    assert_eq!(with_header.status(), 200);
    let wrong = client
        .get(format!("http://{addr}/api/sessions"))
        .bearer_auth("s3cre")
        .header("Cookie", "cbtsim_token=nope")
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let unrated = client
        .post(format!("http://{addr}/api/sessions/1/ratings"))
        .json(&serde_json::json!({"rater": "eve", "items": [{"item": "agenda", "score": 3}]}))
        .send()
        .unwrap();
    assert_eq!(unrated.status(), 401, "writes need it too");
    // A browser gives it once in the address: it goes into a cookie, and
    // out of the address at once.
    let first = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{addr}/sessions/1?token=s3cret"))
        .send()
        .unwrap();
    assert_eq!(first.status(), 303);
    assert_eq!(first.headers()["location"], "/sessions/1");
    let cookie = first.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let next = client
        .get(format!("http://{addr}/sessions/1"))
        .header("Cookie", cookie.split(';').next().unwrap())
        .send()
        .unwrap();
    assert_eq!(next.status(), 200);
}

#[test]
fn without_a_token_only_a_loopback_host_is_answered() {
    // A page of another site whose name now points at 127.0.0.1 (DNS
    // rebinding) sends its own name as the Host.
    let dir = tempfile::tempdir().unwrap();
    let db = store_with_markup(dir.path());
    let addr = start(&db, None);
    let client = reqwest::blocking::Client::new();
    let rebound = client
        .get(format!("http://{addr}/api/sessions"))
        .header("Host", format!("evil.example:{}", addr.port()))
        .send()
        .unwrap();
    assert_eq!(rebound.status(), 421);
    let local = client
        .get(format!("http://{addr}/api/sessions"))
        .header("Host", format!("localhost:{}", addr.port()))
        .send()
        .unwrap();
    assert_eq!(local.status(), 200);
}

#[test]
fn serving_another_address_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_with_markup(dir.path());
    let output = cbtsim_process()
        .args(["serve", "--addr", "0.0.0.0:0", "--db", db.to_str().unwrap()])
        .env_remove("CBTSIM_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs --token"), "{stderr}");
}

fn rate(addr: SocketAddr, session: i64, body: serde_json::Value) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .post(format!("http://{addr}/api/sessions/{session}/ratings"))
        .json(&body)
        .send()
        .unwrap()
}

#[test]
fn ratings_are_stored_and_eval_agreement_uses_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_with_markup(dir.path());
    let addr = start(&db, None);
    let scores = |a: u32, b: u32| {
        serde_json::json!([
            {"item": "agenda", "score": a},
            {"item": "feedback", "score": b},
            {"item": "understanding", "score": a},
            {"item": "collaboration", "score": b}
        ])
    };
    let stored = rate(
        addr,
        1,
        serde_json::json!({"rater": "ana", "items": scores(2, 4)}),
    );
    assert_eq!(stored.status(), 201);
    assert_eq!(stored.json::<serde_json::Value>().unwrap()["stored"], 4);
    assert_eq!(
        rate(
            addr,
            1,
            serde_json::json!({"rater": "ben", "items": scores(3, 4)})
        )
        .status(),
        201
    );
    // The session page's form stores one too (and the page shows them).
    let form = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("http://{addr}/sessions/1/ratings"))
        .header("Origin", format!("http://{addr}"))
        .form(&[("rater", "<i>cal</i>"), ("agenda", "5"), ("feedback", "")])
        .send()
        .unwrap();
    assert_eq!(form.status(), 303);
    let page = get(&format!("http://{addr}/sessions/1")).text().unwrap();
    assert!(
        page.contains("&lt;i&gt;cal&lt;/i&gt;") && page.contains("<td>ana</td>"),
        "{page}"
    );
    assert!(page.contains("<form method=\"post\" action=\"/sessions/1/ratings\" id=\"rate\">"));

    let output = cbtsim_process()
        .args(["eval", "agreement", "--json", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let agreement: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let pair = agreement["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["a"] == "ana" && p["b"] == "ben")
        .expect("ana and ben compared");
    assert_eq!(pair["n"], 4, "{pair}");
}

#[test]
fn bad_or_cross_site_ratings_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_with_markup(dir.path());
    let addr = start(&db, None);
    let one = serde_json::json!([{"item": "agenda", "score": 3}]);
    let client = reqwest::blocking::Client::new();
    let cross_site = client
        .post(format!("http://{addr}/api/sessions/1/ratings"))
        .header("Origin", "http://evil.example")
        .json(&serde_json::json!({"rater": "eve", "items": one}))
        .send()
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    let cross_site_form = client
        .post(format!("http://{addr}/sessions/1/ratings"))
        .header("Sec-Fetch-Site", "cross-site")
        .form(&[("rater", "eve"), ("agenda", "3")])
        .send()
        .unwrap();
    assert_eq!(cross_site_form.status(), 403);
    for headers in [
        vec![("Origin", "http://evil.example")],
        vec![("Origin", "null")],
        vec![],
    ] {
        let mut request = client
            .post(format!("http://{addr}/sessions/1/ratings"))
            .form(&[("rater", "eve"), ("agenda", "3")]);
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        assert_eq!(request.send().unwrap().status(), 403, "{headers:?}");
    }
    let not_json = client
        .post(format!("http://{addr}/api/sessions/1/ratings"))
        .header("Content-Type", "text/plain")
        .body(r#"{"rater": "eve", "items": [{"item": "agenda", "score": 3}]}"#)
        .send()
        .unwrap();
    assert_eq!(not_json.status(), 415);
    for (body, status) in [
        (
            serde_json::json!({"rater": "eve", "items": [{"item": "charm", "score": 3}]}),
            422,
        ),
        (
            serde_json::json!({"rater": "eve", "items": [{"item": "agenda", "score": 7}]}),
            422,
        ),
        (serde_json::json!({"rater": "judge", "items": one}), 422),
        (serde_json::json!({"rater": " ", "items": one}), 422),
        (serde_json::json!({"rater": "eve", "items": []}), 422),
        (serde_json::json!({"rater": "eve"}), 400),
    ] {
        assert_eq!(rate(addr, 1, body.clone()).status(), status, "{body}");
    }
    assert_eq!(
        rate(addr, 42, serde_json::json!({"rater": "eve", "items": one})).status(),
        404
    );
    let stored = Store::open_to_read(&db).unwrap().ratings(None).unwrap();
    assert!(stored.is_empty(), "{stored:?}");
}

super::test_db::on_both_stores!(a_rating_is_stored_in_either_store);

fn a_rating_is_stored_in_either_store(test_db: super::test_db::TestDb) {
    let db = Path::new(test_db.db()).to_path_buf();
    let mut transcript = Transcript::new(1);
    transcript.turns = vec![Turn::new(Speaker::Therapist, "Hello.")];
    Store::open(&db)
        .unwrap()
        .import(&transcript, "web test")
        .unwrap();
    let addr = start(&db, None);
    let items =
        serde_json::json!([{"item": "agenda", "score": 3}, {"item": "feedback", "score": 5}]);
    assert_eq!(
        rate(addr, 1, serde_json::json!({"rater": "ana", "items": items})).status(),
        201
    );
    // Rated again: the new score replaces the old.
    let again = serde_json::json!([{"item": "agenda", "score": 4}]);
    assert_eq!(
        rate(addr, 1, serde_json::json!({"rater": "ana", "items": again})).status(),
        201
    );
    let stored = Store::open_to_read(&db).unwrap().ratings(None).unwrap();
    assert_eq!(
        stored,
        vec![
            (1, "agenda".to_string(), "ana".to_string(), 4),
            (1, "feedback".to_string(), "ana".to_string(), 5)
        ]
    );
    let page = get(&format!("http://{addr}/sessions/1")).text().unwrap();
    assert!(
        page.contains("<td>ana</td><td>agenda</td><td>4</td>"),
        "{page}"
    );
}

#[test]
fn a_session_s_events_give_its_turns_then_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_with_markup(dir.path());
    let addr = start(&db, None);
    let events = get(&format!("http://{addr}/sessions/1/events"));
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    // The session has ended: the stream ends too.
    let events = events.text().unwrap();
    assert_eq!(events.matches("event: turn").count(), 2, "{events}");
    assert!(events.contains(r#""position":1"#), "{events}");
    assert!(events.contains("event: end"), "{events}");
    // From a position on: only what the page has not shown.
    let rest = get(&format!("http://{addr}/sessions/1/events?after=1"))
        .text()
        .unwrap();
    assert_eq!(rest.matches("event: turn").count(), 1, "{rest}");
    assert_eq!(
        get(&format!("http://{addr}/sessions/9/events")).status(),
        404
    );
    assert_eq!(
        get(&format!("http://{addr}/sessions/1/events?after=x")).status(),
        400
    );
    let script = get(&format!("http://{addr}/assets/live.js"));
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(script.text().unwrap().contains("textContent"));
}

/// Posts a form as this app's own page would.
fn post_form(addr: SocketAddr, path: &str, fields: &[(&str, &str)]) -> reqwest::blocking::Response {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("http://{addr}{path}"))
        .header("origin", format!("http://{addr}"))
        .form(fields)
        .send()
        .unwrap()
}

/// Starts a played session over HTTP; returns its run.
fn start_play(addr: SocketAddr, side: &str) -> i64 {
    let started = post_form(
        addr,
        "/play",
        &[("as", side), ("persona", "alicia-rodriguez")],
    );
    assert_eq!(started.status(), 303, "{:?}", started.text());
    let location = started.headers()["location"].to_str().unwrap().to_string();
    location.strip_prefix("/play/").unwrap().parse().unwrap()
}

#[test]
fn a_person_playing_the_patient_in_the_browser_is_answered_with_the_resources() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("play.db");
    Store::open(&db).unwrap();
    let addr = start_app(&db, None, Some(play_plan("scripted", 10)));
    // Only the app's own pages start a session, and only with a library
    // persona.
    let foreign = reqwest::blocking::Client::new()
        .post(format!("http://{addr}/play"))
        .form(&[("as", "patient"), ("persona", "alicia-rodriguez")])
        .send()
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let path = post_form(
        addr,
        "/play",
        &[("as", "patient"), ("persona", "/etc/passwd")],
    );
    assert_eq!(path.status(), 422);

    let run = start_play(addr, "patient");
    let said = post_form(
        addr,
        &format!("/play/{run}/turns"),
        &[("text", "I have been saving up my pills to end my life.")],
    );
    assert_eq!(said.status(), 303);
    let page = get(&format!("http://{addr}/play/{run}")).text().unwrap();
    assert!(page.contains("988"), "{page}");
    assert!(
        page.contains("id=\"say\""),
        "the person's turn again: {page}"
    );
    // From another site (an https page of the same name is this app's,
    // behind a TLS proxy), turns are refused.
    for (header, value) in [
        ("origin", "http://evil.example".to_string()),
        ("sec-fetch-site", "cross-site".to_string()),
    ] {
        let refused = reqwest::blocking::Client::new()
            .post(format!("http://{addr}/play/{run}/turns"))
            .header(header, value)
            .form(&[("text", "I am fine now.")])
            .send()
            .unwrap();
        assert_eq!(refused.status(), 403);
    }
    let ended = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("http://{addr}/play/{run}/turns"))
        .header("origin", format!("https://{addr}"))
        .form(&[("end", "1")])
        .send()
        .unwrap();
    assert_eq!(ended.status(), 303);
    let store = Store::open_to_read(&db).unwrap();
    let events = store.safety_events(1).unwrap();
    assert_eq!(events.len(), 1);
    let transcript = store.transcript(1).unwrap();
    let answer = &transcript.turns[events[0].protocol_turn.unwrap() - 1];
    assert_eq!(answer.speaker, Speaker::Therapist);
    assert!(answer.text.contains("988"), "{}", answer.text);
    // Over: a turn is not taken, and the page is the session's own.
    let late = post_form(addr, &format!("/play/{run}/turns"), &[("text", "Hello?")]);
    assert_eq!(late.status(), 303);
    let page = get(&format!("http://{addr}/play/{run}")).text().unwrap();
    assert!(page.contains("The session is over"), "{page}");
    assert_eq!(
        store.transcript(1).unwrap().turns.len(),
        transcript.turns.len()
    );
}

#[test]
fn a_session_is_played_in_the_browser_on_the_default_model() {
    let _real_model = super::util::real_model();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("play.db");
    Store::open(&db).unwrap();
    let addr = start_app(&db, None, Some(play_plan("local", 6)));
    let run = start_play(addr, "therapist");
    let said = post_form(
        addr,
        &format!("/play/{run}/turns"),
        &[(
            "text",
            "Hello Alicia, I'm Nova. What would you like to focus on today?",
        )],
    );
    assert_eq!(said.status(), 303);
    let ended = post_form(addr, &format!("/play/{run}/turns"), &[("end", "1")]);
    assert_eq!(ended.status(), 303);
    let transcript = Store::open_to_read(&db).unwrap().transcript(1).unwrap();
    let patient: Vec<_> = transcript
        .turns
        .iter()
        .filter(|t| t.speaker == Speaker::Patient)
        .collect();
    // The patient opens (the default first speaker) and answers the turn.
    assert!(patient.len() >= 2, "{:?}", transcript.turns);
    for turn in &patient {
        assert!(!turn.meta.person);
        assert!(
            turn.meta
                .model
                .as_deref()
                .is_some_and(|m| m.starts_with("local")),
            "{:?}",
            turn.meta
        );
        assert!(!turn.text.trim().is_empty());
    }
    assert_eq!(
        transcript.termination.unwrap().display_name(),
        "User Ended Session"
    );
}

#[test]
fn a_turn_is_not_taken_while_the_model_answers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("play.db");
    Store::open(&db).unwrap();
    let addr = start_app(&db, None, Some(play_plan("scripted?delay_ms=1500", 10)));
    let run = start_play(addr, "therapist");
    let first = std::thread::spawn(move || {
        post_form(addr, &format!("/play/{run}/turns"), &[("text", "Hello.")]).status()
    });
    // While the first is answered (1.5 s a reply), a second tab posts.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let second = post_form(addr, &format!("/play/{run}/turns"), &[("text", "Again.")]);
    assert_eq!(second.status(), 409);
    assert!(second.text().unwrap().contains("not your turn"));
    assert_eq!(first.join().unwrap(), 303);
    let turns = Store::open_to_read(&db)
        .unwrap()
        .transcript(1)
        .unwrap()
        .turns;
    let typed: Vec<&str> = turns
        .iter()
        .filter(|t| t.meta.person)
        .map(|t| t.text.as_str())
        .collect();
    assert_eq!(typed, ["Hello."]);
}
