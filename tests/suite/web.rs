//! `cbtsim serve`: the web app over a store, reached over HTTP on loopback
//! as a browser would (pages, the JSON API, the token, escaping).

use super::util::cbtsim_process;
use cbtsim::store::Store;
use cbtsim::web::{WebConfig, serve};
use cbtsim::{Speaker, Transcript, Turn};
use std::net::SocketAddr;
use std::path::Path;

/// A store with one imported session whose turns hold markup.
fn store_with_markup(dir: &Path) -> std::path::PathBuf {
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
    let config = WebConfig {
        db: db.to_path_buf(),
        token: token.map(String::from),
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
    // A browser gives it once in the address; the cookie carries it on.
    let first = get(&format!("http://{addr}/?token=s3cret"));
    assert_eq!(first.status(), 200);
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
