//! An upstream that records exactly what it receives (header names as spelled, duplicates,
//! body) and answers 200 with the same as JSON: what reached the service, not what a filter
//! believes it sent.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Received {
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// Every value of a header, matched ignoring case and reading `_` as `-`.
    pub fn values(&self, name: &str) -> Vec<String> {
        let norm = |s: &str| s.to_ascii_lowercase().replace('_', "-");
        self.headers
            .iter()
            .filter(|(k, _)| norm(k) == norm(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

pub struct Recorder {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    /// Every request head that arrived, body or not: what an upstream could act on.
    heads: Arc<Heads>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (log, head_log) = (received.clone(), heads.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, head_log) = (log.clone(), head_log.clone());
                std::thread::spawn(move || serve(stream, &log, &head_log));
            }
        });
        Recorder {
            port,
            received,
            heads,
        }
    }

    /// Whether any request head with this `x-test-id` arrived, even one whose body never did.
    pub fn head_seen(&self, test_id: &str) -> bool {
        self.heads.lock().unwrap().iter().any(|headers| {
            headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("x-test-id") && v == test_id)
        })
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Everything received so far.
    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// How many requests arrived with an `x-test-id` starting with `prefix`.
    pub fn count_tagged(&self, prefix: &str) -> usize {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.values("x-test-id").iter().any(|v| v.starts_with(prefix)))
            .count()
    }

    /// The request received with this `x-test-id` header, if any.
    pub fn find(&self, test_id: &str) -> Option<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.values("x-test-id").iter().any(|v| v == test_id))
            .cloned()
    }
}

type Heads = Mutex<Vec<Vec<(String, String)>>>;

fn serve(mut stream: std::net::TcpStream, log: &Mutex<Vec<Received>>, heads: &Heads) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut head_logged = false;
    loop {
        // Head, then a Content-Length body (nginx sends buffered bodies with one).
        if let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..split]).into_owned();
            let mut lines = head.split("\r\n");
            let target = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .unwrap_or_default()
                .to_string();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect();
            let len = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0);
            if !head_logged {
                head_logged = true;
                heads.lock().unwrap().push(headers.clone());
            }
            if buf.len() >= split + 4 + len {
                let body = buf[split + 4..split + 4 + len].to_vec();
                let json = serde_json::json!({
                    "headers": headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect::<std::collections::BTreeMap<_, _>>(),
                    "header_list": headers,
                    "body_bytes": body.len(),
                });
                log.lock().unwrap().push(Received {
                    target,
                    headers,
                    body,
                });
                let body = json.to_string();
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
