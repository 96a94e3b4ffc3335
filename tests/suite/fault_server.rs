//! A local HTTP server that answers each connection with the next scripted
//! behaviour, for testing the HTTP backend's handling of faults. The model
//! list (`GET /models`, which cbtsim asks for before a run) is answered
//! without using up a scripted reply.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server does with one request.
#[derive(Clone)]
pub enum Reply {
    /// A complete response.
    Status {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Server-sent events; `finished` false cuts the stream off mid-way.
    Stream { chunks: Vec<String>, finished: bool },
    /// Reads the request, then never answers.
    Hang,
    /// Answers after a pause (to observe concurrency).
    Slow { pause: Duration, body: String },
}

pub fn json(status: u16, body: &str) -> Reply {
    Reply::Status {
        status,
        headers: vec![],
        body: body.to_string(),
    }
}

/// A chat completion carrying `text`.
pub fn chat_reply(text: &str) -> String {
    serde_json::json!({
        "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3}
    })
    .to_string()
}

pub struct FaultServer {
    pub base_url: String,
    /// Bodies of the requests received, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    pub max_in_flight: Arc<AtomicUsize>,
}

impl FaultServer {
    pub fn start(replies: Vec<Reply>) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let replies = Arc::new(Mutex::new(replies.into_iter()));
        let (log, now, max) = (requests.clone(), in_flight, max_in_flight.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (log, now, max) = (log.clone(), now.clone(), max.clone());
                let replies = replies.clone();
                std::thread::spawn(move || serve(stream, &replies, &log, &now, &max));
            }
        });
        FaultServer {
            base_url,
            requests,
            max_in_flight,
        }
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

type Replies = Mutex<std::vec::IntoIter<Reply>>;

/// Serves one connection. A request counts as in flight from when it has
/// been read until its reply is about to be written: a client that waits
/// for each reply before the next request is never seen with two, however
/// slowly this thread gets to run after writing.
fn serve(
    stream: TcpStream,
    replies: &Replies,
    log: &Mutex<Vec<String>>,
    now: &AtomicUsize,
    max: &AtomicUsize,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0;
    let mut request_line = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if request_line.is_empty() {
            request_line = line.clone();
        }
        if let Some(value) = line.to_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let mut stream = stream;
    if request_line.starts_with("GET ") && request_line.contains("/models") {
        let list = r#"{"object": "list", "data": [{"id": "fault"}]}"#;
        let _ = stream.write_all(response(200, &[], list).as_bytes());
        return;
    }
    let reply = replies.lock().unwrap().next();
    log.lock()
        .unwrap()
        .push(String::from_utf8_lossy(&body).into_owned());
    let current = now.fetch_add(1, Ordering::SeqCst) + 1;
    max.fetch_max(current, Ordering::SeqCst);
    let mut answered = false;
    let mut write = |stream: &mut TcpStream, text: &str| {
        if !std::mem::replace(&mut answered, true) {
            now.fetch_sub(1, Ordering::SeqCst);
        }
        let _ = stream.write_all(text.as_bytes());
        let _ = stream.flush();
    };
    match reply {
        None => write(&mut stream, &response(500, &[], "no reply scripted")),
        Some(Reply::Status {
            status,
            headers,
            body,
        }) => write(&mut stream, &response(status, &headers, &body)),
        Some(Reply::Stream { chunks, finished }) => {
            write(
                &mut stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
            );
            for chunk in chunks {
                write(&mut stream, &format!("data: {chunk}\n\n"));
                std::thread::sleep(Duration::from_millis(20));
            }
            if finished {
                write(&mut stream, "data: [DONE]\n\n");
            }
        }
        Some(Reply::Hang) => {
            std::thread::sleep(Duration::from_secs(30));
            write(&mut stream, "");
        }
        Some(Reply::Slow { pause, body }) => {
            std::thread::sleep(pause);
            write(&mut stream, &response(200, &[], &body));
        }
    }
}

fn response(status: u16, headers: &[(&str, String)], body: &str) -> String {
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
}
