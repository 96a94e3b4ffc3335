//! The web app in a real browser: headless Chromium (Debian's `chromium`
//! and `chromium-driver`, which `scripts/setup --with-test-server`
//! installs), driven over WebDriver. Each test saves a screenshot of every
//! page it sees under target/tmp/screenshots/.

use super::util::cbtsim_process;
use super::util::free_port;
use super::web::{play_plan, start_app, store_with_markup};
use cbtsim::store::Store;
use fantoccini::{Client, ClientBuilder, Locator};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Chromium under chromedriver, on a free loopback port, for one test.
struct Browser {
    driver: Child,
    client: Option<Client>,
    runtime: tokio::runtime::Runtime,
    test: &'static str,
    shots: usize,
    _profile: tempfile::TempDir,
}

fn program(name: &str) -> PathBuf {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "{name} is not installed (scripts/setup --with-test-server installs chromium and chromium-driver)"
    );
    PathBuf::from(path)
}

impl Browser {
    fn start(test: &'static str) -> Browser {
        let port = free_port();
        let driver = Command::new(program("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        // As root in a container Chromium needs --no-sandbox; the network
        // flags keep it from calling out (this machine's network is closed).
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1100,1400".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": program("chromium"), "args": args }),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let connected = runtime.block_on(
                ClientBuilder::new(connector)
                    .capabilities(capabilities.clone())
                    .connect(&format!("http://127.0.0.1:{port}")),
            );
            match connected {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => panic!("chromedriver: {e}"),
                // chromedriver is still starting.
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        Browser {
            driver,
            client: Some(client),
            runtime,
            test,
            shots: 0,
            _profile: profile,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    fn goto(&mut self, url: &str) {
        self.runtime.block_on(self.client().goto(url)).unwrap();
    }

    fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.runtime
            .block_on(self.client().wait().for_element(Locator::Css(css)))
            .unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    fn text(&self, css: &str) -> String {
        self.runtime.block_on(self.find(css).text()).unwrap()
    }

    fn count(&self, css: &str) -> usize {
        self.runtime
            .block_on(self.client().find_all(Locator::Css(css)))
            .unwrap()
            .len()
    }

    fn click(&self, css: &str) {
        self.runtime.block_on(self.find(css).click()).unwrap();
    }

    fn type_into(&self, css: &str, text: &str) {
        self.runtime
            .block_on(self.find(css).send_keys(text))
            .unwrap();
    }

    fn select(&self, css: &str, value: &str) {
        self.runtime
            .block_on(self.find(css).select_by_value(value))
            .unwrap();
    }

    fn script(&self, script: &str) -> serde_json::Value {
        self.runtime
            .block_on(self.client().execute(script, Vec::new()))
            .unwrap()
    }

    fn body(&self) -> String {
        self.text("body")
    }

    /// Waits until `ready` holds of the page (checked every 100 ms).
    fn wait_until(&self, what: &str, timeout: Duration, ready: impl Fn(&Browser) -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready(self) {
            if Instant::now() > deadline {
                let page = self
                    .runtime
                    .block_on(self.client().source())
                    .unwrap_or_default();
                panic!("waited {timeout:?} for {what}; the page:\n{page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves the page as target/tmp/screenshots/TEST-N-NAME.png.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        let png = self.runtime.block_on(self.client().screenshot()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        self.shots += 1;
        let path = dir.join(format!("{}-{}-{name}.png", self.test, self.shots));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_store_and_a_session_show_markup_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_with_markup(dir.path());
    let addr = start_app(&db, None, None);
    let mut browser = Browser::start("store");
    browser.goto(&format!("http://{addr}/"));
    assert_eq!(browser.text("h1"), "cbtsim");
    browser.screenshot("store");
    browser.click("#found a[href='/sessions/1']");
    browser.wait_until("the session page", Duration::from_secs(10), |b| {
        b.text("h1").starts_with("Session 1")
    });
    browser.screenshot("session");
    // The turn's markup is text on the page: no <script> ran, no <b> made.
    let patient = browser.text("#turn-2 p");
    assert_eq!(
        patient,
        "<script>document.title='pwned'</script> & \"fine\""
    );
    assert_eq!(browser.count("#turns script"), 0);
    assert_eq!(browser.count("#turns b b"), 0);
    assert_eq!(browser.script("return document.title"), "cbtsim: session 1");
    // A search finds the session by what was said, and not by what was not.
    browser.goto(&format!("http://{addr}/?q=PWNED"));
    assert!(browser.text("h2").contains(": 1"), "{}", browser.body());
    browser.screenshot("search");
    browser.goto(&format!("http://{addr}/?q=nothing+like+this"));
    assert!(browser.text("h2").ends_with(": 0"), "{}", browser.body());
}

#[test]
fn a_rating_submitted_in_the_browser_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_with_markup(dir.path());
    let addr = start_app(&db, None, None);
    let mut browser = Browser::start("rating");
    browser.goto(&format!("http://{addr}/sessions/1"));
    browser.type_into("#rate input[name=rater]", "trainer-1");
    browser.select("#rate select[name=agenda]", "4");
    browser.select("#rate select[name=feedback]", "2");
    browser.screenshot("filled");
    browser.click("#rate button[type=submit]");
    browser.wait_until("the stored rating", Duration::from_secs(10), |b| {
        b.count("#rating-table") == 1
    });
    browser.screenshot("stored");
    assert!(browser.text("#rating-table").contains("trainer-1"));
    let stored = Store::open_to_read(&db).unwrap().ratings(Some(1)).unwrap();
    assert_eq!(
        stored,
        vec![
            (1, "agenda".to_string(), "trainer-1".to_string(), 4),
            (1, "feedback".to_string(), "trainer-1".to_string(), 2),
        ]
    );
}

#[test]
fn a_person_plays_the_therapist_in_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("play.db");
    Store::open(&db).unwrap();
    let addr = start_app(&db, None, Some(play_plan("scripted", 10)));
    let mut browser = Browser::start("play");
    browser.goto(&format!("http://{addr}/play"));
    browser.select("#start select[name=persona]", "alicia-rodriguez");
    browser.screenshot("start");
    browser.click("#start button[type=submit]");
    for (turn, said) in [
        "Hello Alicia, what brings you here today?",
        "What went through your mind then?",
    ]
    .iter()
    .enumerate()
    {
        browser.find("#say textarea");
        browser.type_into("#say textarea", said);
        browser.click("#send");
        // The page that follows shows the turn and the patient's answer.
        let wanted = 2 * (turn + 1);
        browser.wait_until("the patient's answer", Duration::from_secs(30), |b| {
            b.count("#turns .turn.patient") > turn && b.count("#say textarea") == 1
        });
        assert!(browser.text("#turns").contains(said));
        assert!(browser.count("#turns .turn") >= wanted);
        browser.screenshot(&format!("turn-{}", turn + 1));
    }
    browser.click("#end button");
    browser.wait_until("the end", Duration::from_secs(30), |b| {
        b.text("#status").contains("over")
    });
    browser.screenshot("ended");
    assert!(
        browser.text("#status").contains("User Ended Session"),
        "{}",
        browser.body()
    );

    // Stored as played: the therapist's turns typed by a person, as typed.
    let store = Store::open_to_read(&db).unwrap();
    let transcript = store.transcript(1).unwrap();
    let typed: Vec<&str> = transcript
        .turns
        .iter()
        .filter(|t| t.speaker == cbtsim::Speaker::Therapist)
        .map(|t| {
            assert!(t.meta.person, "{t:?}");
            t.text.as_str()
        })
        .collect();
    assert_eq!(
        typed,
        [
            "Hello Alicia, what brings you here today?",
            "What went through your mind then?"
        ]
    );
    assert!(
        transcript
            .turns
            .iter()
            .filter(|t| t.speaker == cbtsim::Speaker::Patient)
            .all(|t| !t.meta.person)
    );
    assert_eq!(
        transcript.termination.unwrap().display_name(),
        "User Ended Session"
    );
}

#[test]
fn turns_appear_live_as_another_process_stores_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    Store::open(&db).unwrap();
    let addr = start_app(&db, None, None);
    // A session written by another process, slowly, whose turns hold
    // markup.
    let script = dir.path().join("script.txt");
    // Every reply holds markup (and a script that would rename the page).
    let replies: Vec<String> = (1..=12)
        .map(|i| {
            format!(
                "Reply {i}: I said <b>no</b> & <img src=x onerror=\"document.title='pwned'\"> <script>document.title='pwned'</script>."
            )
        })
        .collect();
    std::fs::write(&script, replies.join("\n---\n")).unwrap();
    let model = format!("scripted:{}?delay_ms=300", script.display());
    let mut run = cbtsim_process()
        .args([
            "run",
            "--persona",
            "alicia-rodriguez",
            "--model",
            &model,
            "--max-turns",
            "12",
            "--no-summary",
            "--db",
        ])
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let first_turns = loop {
        let turns = Store::open_to_read(&db)
            .ok()
            .and_then(|s| s.transcript(1).ok())
            .map_or(0, |t| t.turns.len());
        if turns >= 1 {
            break turns;
        }
        assert!(Instant::now() < deadline, "the run stored no turn");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut browser = Browser::start("live");
    browser.goto(&format!("http://{addr}/sessions/1"));
    let at_load = browser.count("#turns .turn");
    assert!(at_load >= first_turns);
    assert!(at_load < 12, "the session ended before the page was open");
    browser.screenshot("opened");
    // No reload: the page's turns grow, and it says when the session ends.
    browser.wait_until("the session's end", Duration::from_secs(60), |b| {
        b.text("#status").starts_with("Ended.")
    });
    browser.screenshot("ended");
    let shown = browser.count("#turns .turn");
    assert!(shown > at_load, "{shown} turns after {at_load}");
    let stored = Store::open_to_read(&db).unwrap().transcript(1).unwrap();
    assert_eq!(shown, stored.turns.len());
    // Each turn once, in order, as stored: markup as text.
    for (i, turn) in stored.turns.iter().enumerate() {
        assert_eq!(
            browser.text(&format!("#turn-{} p", i + 1)),
            turn.text.trim()
        );
    }
    // The turns that came live (after the page loaded) held markup too.
    assert!(
        stored.turns[at_load..]
            .iter()
            .any(|t| t.text.contains("<script>") && t.text.contains("<img")),
        "the markup was stored: {:?}",
        stored.turns
    );
    assert_eq!(browser.count("#turns img, #turns script, #turns i"), 0);
    assert_eq!(browser.script("return document.title"), "cbtsim: session 1");
    assert!(run.wait().unwrap().success());
}

#[test]
fn a_run_page_shows_its_sessions_as_they_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("batch.db");
    Store::open(&db).unwrap();
    let addr = start_app(&db, None, None);
    let mut batch = cbtsim_process()
        .args([
            "batch",
            "--personas",
            "alicia-rodriguez,david-levin",
            "--model",
            "scripted?delay_ms=200",
            "--max-turns",
            "6",
            "--db",
        ])
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Store::open_to_read(&db).map_or(true, |s| s.runs().map_or(true, |r| r.is_empty())) {
        assert!(Instant::now() < deadline, "the batch stored no run");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut browser = Browser::start("run");
    browser.goto(&format!("http://{addr}/runs/1"));
    browser.screenshot("opened");
    browser.wait_until("both sessions ended", Duration::from_secs(90), |b| {
        b.count("#sessions tr") == 2 && !b.text("#sessions").contains("(not ended)")
    });
    browser.wait_until("the run's end", Duration::from_secs(30), |b| {
        b.text("#status") == "finished"
    });
    browser.screenshot("finished");
    assert!(batch.wait().unwrap().success());
}

#[test]
fn without_the_token_and_from_another_site_nothing_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_with_markup(dir.path());
    let addr = start_app(&db, Some("s3cret"), None);
    let mut browser = Browser::start("refused");
    browser.goto(&format!("http://{addr}/sessions/1"));
    assert!(
        browser.body().contains("a token is needed"),
        "{}",
        browser.body()
    );
    browser.screenshot("no-token");
    browser.goto(&format!("http://{addr}/sessions/1?token=s3cret"));
    assert!(browser.text("h1").starts_with("Session 1"));
    // The token is kept in a cookie and out of the address.
    let url = browser
        .runtime
        .block_on(browser.client().current_url())
        .unwrap();
    assert_eq!(url.query(), None);

    // A page of another site posts a rating to the app: the browser
    // sends the app's cookie along (its own token), and it is refused.
    let other = another_site(&format!(
        "<form method=\"post\" action=\"http://{addr}/sessions/1/ratings\">\
         <input name=\"rater\" value=\"mallory\"><input name=\"agenda\" value=\"6\">\
         <button id=\"go\">go</button></form>"
    ));
    browser.goto(&format!("http://{other}/"));
    browser.click("#go");
    browser.wait_until("the app's answer", Duration::from_secs(10), |b| {
        b.body().contains("another site") || b.body().contains("token")
    });
    browser.screenshot("cross-site");
    assert!(
        Store::open_to_read(&db)
            .unwrap()
            .ratings(None)
            .unwrap()
            .is_empty()
    );
}

/// A page served from another origin (another port on loopback).
fn another_site(html: &str) -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let page = format!("<!doctype html><html><body>{html}</body></html>");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    addr
}

#[test]
fn a_person_playing_the_patient_is_given_the_resources_in_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("patient.db");
    Store::open(&db).unwrap();
    let addr = start_app(&db, None, Some(play_plan("scripted", 10)));
    let mut browser = Browser::start("patient");
    browser.goto(&format!("http://{addr}/play"));
    browser.click("#start input[value=patient]");
    browser.select("#start select[name=persona]", "david-levin");
    browser.click("#start button[type=submit]");
    // The patient speaks first (the default): the box is there at once.
    browser.type_into(
        "#say textarea",
        "Honestly, I've been giving my things away.",
    );
    browser.type_into("#say textarea", " I won't need them much longer.");
    browser.click("#send");
    browser.wait_until("the therapist's answer", Duration::from_secs(30), |b| {
        b.count("#turns .turn.therapist") >= 1 && b.count("#say textarea") == 1
    });
    browser.screenshot("answered");
    let answer = browser.text("#turns .turn.therapist p");
    assert!(answer.contains("988"), "{answer}");
    // A session's safety events are stored with its end.
    browser.click("#end button");
    browser.wait_until("the end", Duration::from_secs(30), |b| {
        b.text("#status").contains("over")
    });
    let store = Store::open_to_read(&db).unwrap();
    let events = store.safety_events(1).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].turn, 1);
    assert_eq!(events[0].protocol_turn, Some(2));
}
