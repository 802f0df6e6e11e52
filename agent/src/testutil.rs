//! Fixtures shared by the unit tests: a scripted plain-HTTP server that
//! answers each connection with the next canned response and records what it
//! was asked, and a blank run report.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use drover_catalog::Report;
use drover_catalog::report::{CachedCatalog, RunStatus};

/// One canned answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub(crate) fn new(status: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A request as received: the head (request line and headers) and the body.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub head: String,
    pub body: Vec<u8>,
}

impl Seen {
    pub(crate) fn has_header(&self, line: &str) -> bool {
        self.head
            .to_ascii_lowercase()
            .contains(&line.to_ascii_lowercase())
    }
}

/// Serves `replies` in order, one per connection, then stops; returns the
/// base URL and the requests seen so far.
pub(crate) fn scripted(replies: Vec<Reply>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for reply in replies {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            record.lock().unwrap().push(Seen { head, body });
            let mut stream = reader.into_inner();
            let mut out = format!("HTTP/1.1 {}\r\n", reply.status);
            for (name, value) in &reply.headers {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
            out.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                reply.body.len()
            ));
            let _ = stream.write_all(out.as_bytes());
            let _ = stream.write_all(&reply.body);
        }
    });
    (url, seen)
}

/// A run report with no resources, every other field a fixed placeholder.
pub(crate) fn report(run_id: &str) -> Report {
    Report {
        run_id: run_id.into(),
        node: "n".into(),
        environment: "production".into(),
        commit: "c".into(),
        catalog_version: "v".into(),
        noop: false,
        started_at: jiff::Timestamp::UNIX_EPOCH,
        finished_at: jiff::Timestamp::UNIX_EPOCH,
        status: RunStatus::Unchanged,
        cached_catalog: CachedCatalog::NotUsed,
        error: None,
        catalog_error: None,
        server: None,
        agent_version: "0".into(),
        resources: Vec::new(),
        replicas: Vec::new(),
        tags: Vec::new(),
        metrics: Default::default(),
    }
}
