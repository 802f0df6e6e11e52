//! One HTTP connection policy to the servers: [`Http`] bound to a
//! [`Trust`] (TLS pinned to the enrolled CA, or plain loopback HTTP) and to
//! the agent's server list, answers read whole within a size limit, and
//! what a server's error body or a TLS failure means for this node.
//!
//! Used by the node routes ([`crate::client`]) and by enrollment
//! ([`crate::identity`]). The list is tried in order (Puppet's
//! `server_list`): a server that cannot be reached or answers 503 passes
//! the request to the next one, and the first that answers serves the rest
//! of the run.
//!
//! reqwest over rustls (ring), driven by a current-thread tokio runtime of
//! its own: the callers are plain threads, so each call blocks on its
//! request, and no runtime thread or resolver thread is started (the name
//! is resolved on the calling thread, which waits anyway). The rustls
//! configuration is built here, so the root store is the pinned CA alone,
//! never the system's roots; no redirect is ever followed, so no credential
//! goes to another host.

use std::error::Error as StdError;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use drover_catalog::signed::{CATALOG_ERROR_HEADER, SIGNATURE_HEADER};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rustls::pki_types::CertificateDer;

use self::tls::{describe_tls_failure, first_use_tls, pinned_tls, rustls_error, tls_builder};

mod tls;

/// The most a small answer may hold: the CA, a certificate request, a
/// catalog watch, a report's acknowledgement.
pub(crate) const MAX_SMALL_BYTES: u64 = 1024 * 1024;

/// Whom a connection trusts and what it presents.
pub(crate) enum Trust<'a> {
    /// `--insecure-http`: plain HTTP to a loopback address, no credential.
    InsecureHttp,
    /// Only for the first fetch of the CA, before anything is pinned: TLS
    /// without verification and without any credential.
    FirstUse,
    /// TLS verified by the pinned CA alone; our certificate (and its key,
    /// PKCS#8 PEM) when we have one.
    Pinned {
        ca: &'a CertificateDer<'static>,
        client: Option<(&'a CertificateDer<'static>, &'a str)>,
        tls_dir: &'a Path,
    },
}

/// One HTTP answer, read whole (bounded).
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub signature: Option<String>,
    /// `Retry-After` in seconds, as a 503 carries it.
    pub retry_after: Option<Duration>,
    /// The server's compile error, when a catalog answer is the node's last
    /// good catalog (the current commit does not compile for it).
    pub catalog_error: Option<String>,
}

impl Answer {
    /// The body as JSON of type `T`; `what` names the request in the error.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("the server's answer for {what} is not the expected JSON"))
    }
}

/// An HTTP client bound to a server list and one [`Trust`].
pub(crate) struct Http {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    /// Base URLs, in the order they are tried; never empty.
    servers: Vec<String>,
    /// The server that answered last: where the next request starts.
    current: AtomicUsize,
    tls_dir: Option<PathBuf>,
}

/// Why a server gave no answer to a request.
enum Failed {
    /// Not reachable, or gone mid-answer: the next server may answer.
    Unreachable(anyhow::Error),
    /// An answer this agent refuses (a redirect, a body over the limit).
    Refused(anyhow::Error),
}

impl Http {
    /// `servers`: base URLs, tried in this order. `Err` for an empty list
    /// or a client key that does not parse.
    pub(crate) fn new(
        servers: &[impl AsRef<str>],
        trust: Trust<'_>,
        timeout: Duration,
    ) -> Result<Http> {
        if servers.is_empty() {
            bail!("no server to talk to");
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .dns_resolver(Arc::new(OnTheCallingThread))
            .user_agent(concat!("drover-agent/", env!("CARGO_PKG_VERSION")));
        let mut tls_dir = None;
        match trust {
            Trust::InsecureHttp => {
                builder = builder.tls_backend_preconfigured(trusts_no_one()?);
            }
            Trust::FirstUse => {
                builder = builder
                    .https_only(true)
                    .tls_backend_preconfigured(first_use_tls()?);
            }
            Trust::Pinned {
                ca,
                client,
                tls_dir: dir,
            } => {
                tls_dir = Some(dir.to_owned());
                builder = builder
                    .https_only(true)
                    .tls_backend_preconfigured(pinned_tls(ca, client)?);
            }
        }
        let client = builder
            .build()
            .map_err(|e| anyhow!("cannot set up the HTTP client: {}", chain(&e)))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("cannot start the HTTP client's runtime")?;
        Ok(Http {
            client,
            runtime,
            servers: servers
                .iter()
                .map(|s| s.as_ref().trim_end_matches('/').to_owned())
                .collect(),
            current: AtomicUsize::new(0),
            tls_dir,
        })
    }

    /// The server that answered last (the first of the list before any did).
    pub(crate) fn base(&self) -> &str {
        &self.servers[self.current.load(Ordering::Relaxed)]
    }

    pub(crate) fn get(&self, path: &str, limit: u64) -> Result<Answer> {
        self.call(path, |url| self.client.get(url), limit)
    }

    /// POSTs `body`; `headers` are added as given (an `Authorization` too).
    pub(crate) fn post(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
        headers: &[(&str, String)],
        limit: u64,
    ) -> Result<Answer> {
        let body = bytes::Bytes::copy_from_slice(body);
        let request = |url: &str| {
            let mut request = self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.clone());
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            request
        };
        self.call(path, request, limit)
    }

    /// Sends `path` to the servers in turn, from the one that answered
    /// last, until one answers other than 503. When none does, the last
    /// 503 (so the caller can wait out a busy fleet of servers), or why
    /// none could be reached.
    fn call(
        &self,
        path: &str,
        request: impl Fn(&str) -> reqwest::RequestBuilder,
        limit: u64,
    ) -> Result<Answer> {
        let first = self.current.load(Ordering::Relaxed);
        let mut busy = None;
        let mut unreachable = Vec::new();
        for turn in 0..self.servers.len() {
            let at = (first + turn) % self.servers.len();
            let base = &self.servers[at];
            let url = format!("{base}{path}");
            let exchanged = self
                .runtime
                .block_on(self.exchange(base, &url, request(&url), limit));
            match exchanged {
                Ok(answer) if answer.status == 503 => busy = Some((at, answer)),
                Ok(answer) => {
                    self.current.store(at, Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(Failed::Unreachable(e)) => unreachable.push(e),
                Err(Failed::Refused(e)) => return Err(e),
            }
        }
        if let Some((at, answer)) = busy {
            self.current.store(at, Ordering::Relaxed);
            return Ok(answer);
        }
        match unreachable.len() {
            1 => Err(unreachable.remove(0)),
            _ => Err(anyhow!(
                "none of the {} servers answered:\n  {}",
                unreachable.len(),
                unreachable
                    .iter()
                    .map(|e| format!("{e:#}").replace('\n', "\n  "))
                    .collect::<Vec<_>>()
                    .join("\n  ")
            )),
        }
    }

    async fn exchange(
        &self,
        base: &str,
        url: &str,
        request: reqwest::RequestBuilder,
        limit: u64,
    ) -> Result<Answer, Failed> {
        let response = request.send().await.map_err(|e| {
            Failed::Unreachable(anyhow!(
                "cannot reach the server at {base}: {}",
                self.describe(&e)
            ))
        })?;
        self.read(url, response, limit).await
    }

    async fn read(
        &self,
        url: &str,
        mut response: reqwest::Response,
        limit: u64,
    ) -> Result<Answer, Failed> {
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if (300..400).contains(&status) && status != 304 {
            return Err(Failed::Refused(anyhow!(
                "the server answered {status} for {url}, redirecting to {}; the agent never follows a redirect, so no credential goes to another host\nhint: set `server` to the server's own address",
                header("location").unwrap_or_else(|| "(no location)".into())
            )));
        }
        let signature = header(SIGNATURE_HEADER);
        let catalog_error = header(CATALOG_ERROR_HEADER);
        let retry_after = header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let too_large = || {
            Failed::Refused(anyhow!(
                "the answer of {url} is larger than the {limit} bytes allowed"
            ))
        };
        if response
            .content_length()
            .is_some_and(|length| length > limit)
        {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(
            usize::try_from(response.content_length().unwrap_or(0).min(limit)).unwrap_or(0),
        );
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            Failed::Unreachable(anyhow!(
                "reading the answer of {url} failed: {}",
                self.describe(&e)
            ))
        })? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            body,
            signature,
            retry_after,
            catalog_error,
        })
    }

    /// The error and its causes, or what a TLS failure means for this node.
    fn describe(&self, e: &reqwest::Error) -> String {
        let Some(tls) = rustls_error(e) else {
            return chain(e);
        };
        let dir = self
            .tls_dir
            .as_deref()
            .map_or_else(|| "STATE/tls".to_owned(), |d| d.display().to_string());
        describe_tls_failure(tls, &dir)
    }
}

/// Resolves the server's name with the system's resolver on the thread
/// that asked, which blocks on the request anyway (reqwest's default would
/// start a thread for it).
struct OnTheCallingThread;

impl Resolve for OnTheCallingThread {
    fn resolve(&self, name: Name) -> Resolving {
        let found = (name.as_str(), 0)
            .to_socket_addrs()
            .map(|addrs| Box::new(addrs) as Addrs)
            .map_err(|e| Box::new(e) as Box<dyn StdError + Send + Sync>);
        Box::pin(std::future::ready(found))
    }
}

/// For a client that speaks plain HTTP only (`--insecure-http`, the
/// container kind's probes): a TLS configuration that trusts no one, so
/// reqwest needs no process-wide crypto provider and no https URL can work.
pub(crate) fn trusts_no_one() -> Result<rustls::ClientConfig> {
    Ok(tls_builder()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

/// An error and its causes, each once: reqwest's own message names only
/// the URL, the cause (refused, timed out, reset) comes after it.
pub(crate) fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = cause.source();
    }
    text
}

/// The message of an error body: `{"error": ..., "diagnostics": [...]}` or plain text.
pub(crate) fn error_text(body: &[u8]) -> String {
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
    use super::*;

    fn closed_port() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    fn list(servers: &[&String]) -> Http {
        Http::new(servers, Trust::InsecureHttp, Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn the_server_list_moves_on_past_an_unreachable_or_busy_server_and_stays_there() {
        use crate::testutil::{Reply, scripted};
        let down = closed_port();
        let (busy, busy_seen) = scripted(vec![Reply::new("503 Service Unavailable", "busy")]);
        let (up, up_seen) = scripted(vec![
            Reply::new("200 OK", "one"),
            Reply::new("200 OK", "two"),
        ]);
        let http = list(&[&down, &busy, &up]);
        let answer = http.get("/x", MAX_SMALL_BYTES).unwrap();
        assert_eq!((answer.status, answer.body.as_slice()), (200, &b"one"[..]));
        assert_eq!(http.base(), up, "the server that answered");
        let answer = http.get("/y", MAX_SMALL_BYTES).unwrap();
        assert_eq!(answer.body, b"two", "the next request starts there");
        assert_eq!(busy_seen.lock().unwrap().len(), 1);
        assert_eq!(up_seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_list_of_busy_servers_gives_the_503_and_an_unreachable_list_names_each() {
        use crate::testutil::{Reply, scripted};
        let (a, _) = scripted(vec![Reply::new("503 Service Unavailable", "a")]);
        let (b, _) = scripted(vec![
            Reply::new("503 Service Unavailable", "b").header("Retry-After", "7"),
        ]);
        let answer = list(&[&a, &b]).get("/x", MAX_SMALL_BYTES).unwrap();
        assert_eq!(answer.status, 503);
        assert_eq!(answer.retry_after, Some(Duration::from_secs(7)));

        let (one, two) = (closed_port(), closed_port());
        let err = format!(
            "{:#}",
            list(&[&one, &two]).get("/x", MAX_SMALL_BYTES).unwrap_err()
        );
        assert!(
            err.contains("none of the 2 servers") && err.contains(&one) && err.contains(&two),
            "{err}"
        );
    }
}
