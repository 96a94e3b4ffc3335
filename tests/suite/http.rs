//! The OpenAI-compatible HTTP backend: faults against a local
//! fault-injecting server, then the real thing against llama-cpp-python's
//! server running the default model on loopback.

use super::fault_server::{FaultServer, Reply, chat_reply, json};
use cbtsim::model::http::{HttpConfig, HttpModel, StructuredOutput};
use cbtsim::model::{
    ChatModel, Conversation, FinishReason, Message, ModelError, Request, Role, default_model,
    schema,
};
use std::time::{Duration, Instant};

fn model(server: &FaultServer, stream: bool) -> HttpModel {
    let mut config = HttpConfig::new(&server.base_url, "test-model");
    config.stream = stream;
    config.initial_backoff = Duration::from_millis(10);
    config.read_timeout = Duration::from_secs(5);
    HttpModel::new(config).unwrap()
}

fn hello() -> Request {
    Request::chat(vec![Message::new(Role::User, "Hello?")])
}

#[test]
fn a_429_waits_for_retry_after_then_succeeds() {
    let server = FaultServer::start(vec![
        Reply::Status {
            status: 429,
            headers: vec![("retry-after", "1".into())],
            body: r#"{"error": {"message": "slow down"}}"#.into(),
        },
        json(200, &chat_reply("Hi there.")),
    ]);
    let started = Instant::now();
    let done = model(&server, false).complete(&hello()).unwrap();
    assert_eq!(done.text, "Hi there.");
    assert_eq!(server.request_count(), 2);
    // The backoff alone would have waited about 10 ms.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn server_errors_are_retried_until_success() {
    let server = FaultServer::start(vec![
        json(500, r#"{"error": {"message": "boom"}}"#),
        json(503, "unavailable"),
        json(200, &chat_reply("Finally.")),
    ]);
    let done = model(&server, false).complete(&hello()).unwrap();
    assert_eq!(done.text, "Finally.");
    assert_eq!(done.usage.prompt_tokens, 5);
    assert_eq!(server.request_count(), 3);
}

#[test]
fn retries_give_up_after_the_limit() {
    let server = FaultServer::start(vec![json(500, "a"), json(500, "b"), json(500, "c")]);
    let mut config = HttpConfig::new(&server.base_url, "m");
    config.stream = false;
    config.max_retries = 2;
    config.initial_backoff = Duration::from_millis(1);
    let error = HttpModel::new(config)
        .unwrap()
        .complete(&hello())
        .unwrap_err();
    assert!(
        matches!(error, ModelError::Server { status: 500, .. }),
        "{error}"
    );
    assert_eq!(server.request_count(), 3);
}

#[test]
fn other_client_errors_are_not_retried() {
    let server = FaultServer::start(vec![
        json(400, r#"{"error": {"message": "bad request"}}"#),
        json(200, &chat_reply("never")),
    ]);
    let error = model(&server, false).complete(&hello()).unwrap_err();
    assert_eq!(
        error,
        ModelError::Refused {
            status: 400,
            message: "bad request".into()
        }
    );
    assert_eq!(server.request_count(), 1);
}

#[test]
fn a_stream_cut_mid_way_is_an_error_not_a_short_reply() {
    let chunk = |text: &str| {
        serde_json::json!({"choices": [{"delta": {"content": text}, "finish_reason": null}]})
            .to_string()
    };
    let server = FaultServer::start(vec![Reply::Stream {
        chunks: vec![chunk("I think"), chunk(" that")],
        finished: false,
    }]);
    let mut shown = String::new();
    let error = model(&server, true)
        .stream(&hello(), &mut |piece| shown.push_str(piece))
        .unwrap_err();
    assert!(matches!(error, ModelError::InvalidResponse(_)), "{error}");
    assert_eq!(
        server.request_count(),
        1,
        "text already shown is not retried"
    );

    let finished = FaultServer::start(vec![Reply::Stream {
        chunks: vec![
            chunk("I think"),
            chunk(" so."),
            serde_json::json!({"choices": [{"delta": {}, "finish_reason": "stop"}]}).to_string(),
        ],
        finished: true,
    }]);
    let mut shown = String::new();
    let done = model(&finished, true)
        .stream(&hello(), &mut |piece| shown.push_str(piece))
        .unwrap();
    assert_eq!(
        (done.text.as_str(), shown.as_str()),
        ("I think so.", "I think so.")
    );
    // The stream had no usage: the counts are estimated and say so, never 0.
    assert!(done.usage.estimated, "{:?}", done.usage);
    assert!(done.usage.prompt_tokens > 0 && done.usage.completion_tokens > 0);
}

#[test]
fn malformed_json_is_an_invalid_response() {
    let server = FaultServer::start(vec![json(200, "{\"choices\": [oops")]);
    let error = model(&server, false).complete(&hello()).unwrap_err();
    assert!(matches!(error, ModelError::InvalidResponse(_)), "{error}");
    let server = FaultServer::start(vec![json(200, r#"{"choices": []}"#)]);
    let error = model(&server, false).complete(&hello()).unwrap_err();
    assert!(matches!(error, ModelError::InvalidResponse(_)), "{error}");
}

#[test]
fn a_server_that_never_answers_hits_the_read_timeout() {
    let server = FaultServer::start(vec![Reply::Hang]);
    let mut config = HttpConfig::new(&server.base_url, "m");
    config.read_timeout = Duration::from_millis(300);
    config.max_retries = 0;
    let started = Instant::now();
    let error = HttpModel::new(config)
        .unwrap()
        .complete(&hello())
        .unwrap_err();
    assert!(matches!(error, ModelError::Timeout(_)), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn an_unreachable_server_is_reported_as_such() {
    // Bind then drop a listener: nothing listens on that port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = HttpConfig::new(format!("http://127.0.0.1:{port}/v1"), "m");
    config.max_retries = 1;
    config.initial_backoff = Duration::from_millis(1);
    let error = HttpModel::new(config)
        .unwrap()
        .complete(&hello())
        .unwrap_err();
    assert!(matches!(error, ModelError::Unreachable(_)), "{error}");
}

#[test]
fn the_concurrency_cap_holds_across_conversations() {
    let slow = || Reply::Slow {
        pause: Duration::from_millis(150),
        body: chat_reply("ok."),
    };
    let server = FaultServer::start(vec![slow(), slow(), slow()]);
    let mut config = HttpConfig::new(&server.base_url, "m");
    config.stream = false;
    config.max_concurrency = 1;
    let model = HttpModel::new(config).unwrap();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let model = model.clone();
            std::thread::spawn(move || model.conversation().unwrap().complete(&hello()).unwrap())
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().text, "ok.");
    }
    assert_eq!(
        server
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn the_rate_limit_spaces_requests_out() {
    let server = FaultServer::start(vec![json(200, &chat_reply("ok.")); 5]);
    let mut config = HttpConfig::new(&server.base_url, "m");
    config.stream = false;
    // Two requests a second: the 3rd and 4th wait a second, the 5th two.
    config.requests_per_minute = Some(2);
    config.rate_window = Duration::from_secs(1);
    let model = HttpModel::new(config).unwrap();
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(
            model
                .conversation()
                .unwrap()
                .complete(&hello())
                .unwrap()
                .text,
            "ok."
        );
    }
    assert_eq!(server.request_count(), 5);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn structured_output_falls_back_through_the_dialects() {
    let schema = serde_json::json!({"type": "object", "required": ["mood"], "properties": {"mood": {"type": "integer"}}});
    let refuse = |what: &str| {
        json(
            400,
            &format!(r#"{{"error": {{"message": "unsupported response_format: {what}"}}}}"#),
        )
    };
    let server = FaultServer::start(vec![
        refuse("json_schema"),
        refuse("json_object"),
        json(200, &chat_reply("Sure! Here it is: mood 4")),
        json(200, &chat_reply("{\"mood\": 4}")),
    ]);
    let mut model = model(&server, false);
    let mut request = hello();
    request.json_schema = Some(schema);
    let done = model.complete(&request).unwrap();
    assert_eq!(done.text, "{\"mood\": 4}");
    assert_eq!(model.dialect(), StructuredOutput::Instructions);
    let bodies = server.requests.lock().unwrap().clone();
    assert!(bodies[0].contains("\"json_schema\""));
    assert!(bodies[1].contains("\"json_object\""));
    assert!(!bodies[2].contains("response_format") && bodies[2].contains("JSON schema"));
    assert!(
        bodies[3].contains("previous reply was invalid"),
        "one re-ask: {}",
        bodies[3]
    );
}

#[test]
fn a_structured_reply_that_fails_the_schema_is_asked_for_once_more() {
    let schema = serde_json::json!({"type": "object", "required": ["mood"],
        "properties": {"mood": {"type": "integer", "minimum": 0, "maximum": 10}}});
    let server = FaultServer::start(vec![
        json(200, &chat_reply("{\"mood\": 99}")),
        json(200, &chat_reply("{\"mood\": 3}")),
        json(200, &chat_reply("{\"mood\": 99}")),
        json(200, &chat_reply("{\"mood\": 98}")),
    ]);
    let mut model = model(&server, false);
    let mut request = hello();
    request.json_schema = Some(schema);
    assert_eq!(model.complete(&request).unwrap().text, "{\"mood\": 3}");
    let error = model.complete(&request).unwrap_err();
    assert!(error.to_string().contains("above the maximum"), "{error}");
    assert_eq!(server.request_count(), 4);
    assert_eq!(model.dialect(), StructuredOutput::JsonSchema);
}

/// llama-cpp-python's server on a free loopback port; killed on drop.
struct RealServer {
    child: std::process::Child,
    base_url: String,
}

impl RealServer {
    fn start() -> RealServer {
        let venv = std::env::var("CBTSIM_TEST_SERVER_VENV").unwrap_or_else(|_| {
            format!(
                "{}/.cache/cbtsim/llama-server-venv",
                std::env::var("HOME").unwrap()
            )
        });
        let python = format!("{venv}/bin/python");
        assert!(
            std::path::Path::new(&python).exists(),
            "{python} is missing: scripts/setup --with-test-server installs llama-cpp-python[server]"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let model = default_model::locate().unwrap();
        let child = std::process::Command::new(&python)
            .args([
                "-m",
                "llama_cpp.server",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            // By default this server cuts a streamed reply short when the
            // next request arrives; cbtsim sends several at once.
            .args(["--interrupt_requests", "False"])
            .args(["--n_ctx", "2048", "--n_threads", "2", "--model"])
            .arg(model)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = RealServer {
            child,
            base_url: format!("http://127.0.0.1:{port}/v1"),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the llama.cpp server did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn against_a_real_llama_cpp_server() {
    let _real_model = super::util::real_model();
    let server = RealServer::start();
    let open = |stream: bool| {
        let mut config = HttpConfig::new(&server.base_url, "default");
        config.stream = stream;
        config.read_timeout = Duration::from_secs(120);
        HttpModel::new(config).unwrap()
    };

    // Completions, not streamed: the stop sequence ends the reply.
    let mut request = Request::text("Shopping list:\n1. apples\n2. pears\n3.");
    request.sampling.max_tokens = 40;
    request.sampling.stop = vec!["\n".into()];
    let done = open(false).complete(&request).unwrap();
    assert!(!done.text.contains('\n'));
    assert!(
        !done.usage.estimated && done.usage.prompt_tokens > 5 && done.usage.completion_tokens > 0,
        "{:?}",
        done.usage
    );

    // Completions, streamed: the pieces add up to the reply.
    let mut request = Request::text("Session Number: 1\n\nPatient: I can't sleep.\n\nTherapist:");
    request.sampling.max_tokens = 24;
    let mut pieces = String::new();
    let done = open(true)
        .stream(&request, &mut |p| pieces.push_str(p))
        .unwrap();
    assert_eq!(pieces, done.text);
    assert!(!done.text.is_empty());
    assert!(matches!(
        done.finish_reason,
        FinishReason::Stop | FinishReason::Length
    ));
    // This server sends no usage in a stream, even asked for it: the
    // counts are estimates, marked as such, and not 0.
    assert!(
        done.usage.estimated && done.usage.prompt_tokens > 5 && done.usage.completion_tokens > 0,
        "{:?}",
        done.usage
    );

    // Chat (the server formats it for a model without a chat template).
    let mut chat = Request::chat(vec![
        Message::new(Role::System, "You are a helpful CBT therapist."),
        Message::new(Role::User, "I feel anxious before meetings."),
    ]);
    chat.sampling.max_tokens = 24;
    let done = open(true).complete(&chat).unwrap();
    assert!(!done.text.is_empty());

    // Structured output: the server refuses "json_schema" and takes
    // {"type": "json_object", "schema": ...}; the reply validates.
    let schema = serde_json::json!({
        "type": "object",
        "required": ["mood", "topic"],
        "properties": {
            "mood": {"type": "integer"},
            "topic": {"type": "string"}
        }
    });
    let mut structured = chat.clone();
    structured.sampling.max_tokens = 80;
    structured.json_schema = Some(schema.clone());
    let mut model = open(false);
    let done = model.complete(&structured).unwrap();
    let value: serde_json::Value = serde_json::from_str(&done.text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", done.text));
    schema::validate(&schema, &value).unwrap();
    assert_eq!(model.dialect(), StructuredOutput::JsonObjectSchema);

    // A whole session with the server's model named as a base model: the
    // agents send it text to continue, as they do the embedded model, and
    // every turn is a real reply. (Sent as chat, this model is wrapped in
    // the server's fallback template and often answers with nothing.)
    let spec = format!("{}#default?base", server.base_url);
    let (code, stdout, stderr) = super::util::run(&[
        "run",
        "--persona",
        "alicia-rodriguez",
        "--model",
        &spec,
        "--max-turns",
        "4",
        "--candidates",
        "1",
        "--no-summary",
        "--no-store",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let record: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let turns = record["turns"].as_array().unwrap();
    assert!(turns.len() >= 2, "{stdout}");
    for turn in turns {
        assert!(!turn["text"].as_str().unwrap().trim().is_empty(), "{turn}");
        assert_eq!(turn["meta"]["model"], spec.as_str(), "{turn}");
    }
    // Not "Backend Failure" (no usable reply), which is what chat gave.
    assert_ne!(
        record["termination"]["reason"], "Backend Failure",
        "{stdout}"
    );
}
