//! The agent's side of the HTTP API: catalog, file contents, reports (blocking).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use drover_catalog::{Catalog, CatalogRequest};

use crate::resources::ContentSource;

const MAX_CATALOG_BYTES: u64 = 512 * 1024 * 1024;
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024 * 1024;

pub struct Client {
    agent: ureq::Agent,
    base: String,
    node: String,
}

#[derive(Debug)]
pub enum CatalogAnswer {
    Fresh(Catalog),
    /// 304: the cached catalog is current.
    NotModified,
}

#[derive(Debug, PartialEq)]
pub enum Posted {
    /// 201 stored, or 200 already stored (a re-post of the same run_id).
    Stored,
    /// 400/403: the server will never take this report.
    Rejected(String),
}

impl Client {
    pub fn new(server: &str, node: &str, timeout: Duration) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("drover-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Client {
            agent,
            base: server.trim_end_matches('/').to_owned(),
            node: node.to_owned(),
        }
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/api/v1/nodes/{}/{rest}", self.base, self.node)
    }

    pub fn catalog(
        &self,
        request: &CatalogRequest,
        cached_version: Option<&str>,
    ) -> Result<CatalogAnswer> {
        let url = self.url("catalog");
        let mut call = self.agent.post(&url);
        if let Some(version) = cached_version {
            call = call.header("If-None-Match", format!("\"{version}\""));
        }
        let mut response = call
            .send_json(request)
            .map_err(|e| anyhow!("cannot reach the server at {}: {e}", self.base))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_CATALOG_BYTES)
            .read_to_vec()
            .map_err(|e| anyhow!("reading the catalog from {url} failed: {e}"))?;
        match status {
            304 => Ok(CatalogAnswer::NotModified),
            200 => {
                let catalog: Catalog = serde_json::from_slice(&body)
                    .with_context(|| format!("the server sent an invalid catalog from {url}"))?;
                if catalog.node != self.node {
                    bail!(
                        "the server sent the catalog of node `{}` to node `{}`",
                        catalog.node,
                        self.node
                    );
                }
                if Catalog::compute_version(&catalog.resources) != catalog.version {
                    bail!(
                        "the catalog from {url} does not match its version {}",
                        catalog.version
                    );
                }
                Ok(CatalogAnswer::Fresh(catalog))
            }
            _ => Err(anyhow!(
                "the server answered {status} for the catalog: {}",
                error_text(&body)
            )),
        }
    }

    /// Posts a report (already serialized, as spooled).
    pub fn post_report(&self, json: &[u8]) -> Result<Posted> {
        let url = self.url("reports");
        let mut response = self
            .agent
            .post(&url)
            .content_type("application/json")
            .send(json)
            .map_err(|e| anyhow!("cannot reach the server at {}: {e}", self.base))?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_vec().unwrap_or_default();
        match status {
            200 | 201 => Ok(Posted::Stored),
            400 | 403 | 422 => Ok(Posted::Rejected(format!("{status}: {}", error_text(&body)))),
            _ => Err(anyhow!(
                "the server answered {status} for the report: {}",
                error_text(&body)
            )),
        }
    }
}

impl ContentSource for Client {
    fn fetch(&self, sha256: &str) -> Result<Arc<[u8]>> {
        let url = self.url(&format!("files/{sha256}"));
        let mut response = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| anyhow!("cannot fetch content {sha256} from {}: {e}", self.base))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_FILE_BYTES)
            .read_to_vec()
            .map_err(|e| anyhow!("reading content {sha256} from {url} failed: {e}"))?;
        if status != 200 {
            bail!(
                "the server answered {status} for content {sha256}: {}",
                error_text(&body)
            );
        }
        Ok(Arc::from(body))
    }
}

/// The message of an error body: `{"error": ..., "diagnostics": [...]}` or plain text.
pub fn error_text(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
        #[serde(default)]
        diagnostics: Vec<String>,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) if e.diagnostics.is_empty() => e.error,
        Ok(e) => format!("{}\n  {}", e.error, e.diagnostics.join("\n  ")),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "(no message)".to_owned()
            } else {
                text.chars().take(500).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A one-request HTTP server answering with `status` and `body`; returns the request head.
    fn serve_once(
        status: &str,
        headers: &str,
        body: &'static str,
    ) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let status = status.to_owned();
        let headers = headers.to_owned();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body_in = vec![0; length];
            reader.read_exact(&mut body_in).unwrap();
            let mut stream = reader.into_inner();
            write!(stream, "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
            head
        });
        (url, handle)
    }

    #[test]
    fn not_modified_sends_quoted_etag() {
        let (url, handle) = serve_once("304 Not Modified", "", "");
        let client = Client::new(&url, "n1", Duration::from_secs(5));
        let answer = client
            .catalog(&CatalogRequest::default(), Some("abc"))
            .unwrap();
        assert!(matches!(answer, CatalogAnswer::NotModified));
        let head = handle.join().unwrap();
        assert!(head.starts_with("POST /api/v1/nodes/n1/catalog "), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("if-none-match: \"abc\""),
            "{head}"
        );
    }

    #[test]
    fn compile_error_shows_diagnostics() {
        let body = r#"{"error":"does not compile","diagnostics":["roles/a.toml:1:2: bad"]}"#;
        let (url, handle) = serve_once(
            "422 Unprocessable Entity",
            "Content-Type: application/json\r\n",
            body,
        );
        let client = Client::new(&url, "n1", Duration::from_secs(5));
        let err = client
            .catalog(&CatalogRequest::default(), None)
            .unwrap_err();
        assert!(
            err.to_string().contains("422") && err.to_string().contains("roles/a.toml:1:2: bad"),
            "{err}"
        );
        handle.join().unwrap();
    }

    #[test]
    fn malformed_report_is_rejected_not_retried() {
        let (url, handle) = serve_once("400 Bad Request", "", r#"{"error":"bad report"}"#);
        let client = Client::new(&url, "n1", Duration::from_secs(5));
        assert_eq!(
            client.post_report(b"{}").unwrap(),
            Posted::Rejected("400: bad report".into())
        );
        handle.join().unwrap();
    }

    #[test]
    fn unreachable_server_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let client = Client::new(&url, "n1", Duration::from_secs(2));
        let err = client
            .catalog(&CatalogRequest::default(), None)
            .unwrap_err();
        assert!(err.to_string().contains("cannot reach the server"), "{err}");
    }
}
