//! The agent's side of the HTTP API (blocking): [`Http`] is one connection
//! policy (TLS pinned to the enrolled CA, or plain loopback HTTP), and
//! [`Client`] the node routes on top of it: catalog, file contents, reports.
//!
//! No redirect is ever followed, so no credential goes to another host; the
//! root store is the pinned CA alone, never the system's roots.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use drover_catalog::signed::{SIGNATURE_HEADER, SignatureError, VerifyingKey};
use drover_catalog::{Catalog, CatalogRequest};
use rustls::pki_types::CertificateDer;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

use crate::identity::{Identity, Transport};
use crate::resources::ContentSource;

const MAX_CATALOG_BYTES: u64 = 512 * 1024 * 1024;
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024 * 1024;
pub const MAX_SMALL_BYTES: u64 = 1024 * 1024;

/// Whom a connection trusts and what it presents.
pub enum Trust<'a> {
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
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub signature: Option<String>,
    /// `Retry-After` in seconds, as a 503 carries it.
    pub retry_after: Option<Duration>,
}

impl Answer {
    /// The body as JSON of type `T`; `what` names the request in the error.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("the server's answer for {what} is not the expected JSON"))
    }
}

/// An HTTP agent bound to one server and one [`Trust`].
pub struct Http {
    agent: ureq::Agent,
    base: String,
    tls_dir: Option<PathBuf>,
}

impl Http {
    /// `Err` only for a client key that does not parse.
    pub fn new(base: &str, trust: Trust<'_>, timeout: Duration) -> Result<Http> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .user_agent(concat!("drover-agent/", env!("CARGO_PKG_VERSION")));
        let mut tls_dir = None;
        match trust {
            Trust::InsecureHttp => {}
            Trust::FirstUse => {
                config = config
                    .https_only(true)
                    .tls_config(tls_builder().disable_verification(true).build());
            }
            Trust::Pinned {
                ca,
                client,
                tls_dir: dir,
            } => {
                tls_dir = Some(dir.to_owned());
                let client = match client {
                    Some((cert, key_pem)) => Some(ClientCert::new_with_certs(
                        &[Certificate::from_der(cert.as_ref()).to_owned()],
                        PrivateKey::from_pem(key_pem.as_bytes())
                            .map_err(|e| anyhow!("this node's key does not parse: {e}"))?,
                    )),
                    None => None,
                };
                let roots = RootCerts::new_with_certs(&[Certificate::from_der(ca).to_owned()]);
                config = config
                    .https_only(true)
                    .tls_config(tls_builder().root_certs(roots).client_cert(client).build());
            }
        }
        Ok(Http {
            agent: config.build().new_agent(),
            base: base.trim_end_matches('/').to_owned(),
            tls_dir,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn get(&self, path: &str, limit: u64) -> Result<Answer> {
        let url = format!("{}{path}", self.base);
        let response = self.agent.get(&url).call();
        self.read(&url, response, limit)
    }

    /// POSTs `body`; `headers` are added as given (an `Authorization` too).
    pub fn post(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
        headers: &[(&str, String)],
        limit: u64,
    ) -> Result<Answer> {
        let url = format!("{}{path}", self.base);
        let mut call = self.agent.post(&url).content_type(content_type);
        for (name, value) in headers {
            call = call.header(*name, value);
        }
        let response = call.send(body);
        self.read(&url, response, limit)
    }

    fn read(
        &self,
        url: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        limit: u64,
    ) -> Result<Answer> {
        let mut response = response.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if (300..400).contains(&status) && status != 304 {
            bail!(
                "the server answered {status} for {url}, redirecting to {}; the agent never follows a redirect, so no credential goes to another host\nhint: set `server` to the server's own address",
                header("location").unwrap_or_else(|| "(no location)".into())
            );
        }
        let signature = header(SIGNATURE_HEADER);
        let retry_after = header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| anyhow!("reading the answer of {url} failed: {}", self.describe(&e)))?;
        Ok(Answer {
            status,
            body,
            signature,
            retry_after,
        })
    }

    fn transport_error(&self, e: ureq::Error) -> anyhow::Error {
        anyhow!(
            "cannot reach the server at {}: {}",
            self.base,
            self.describe(&e)
        )
    }

    /// The error, or what a TLS failure means for this node.
    fn describe(&self, e: &ureq::Error) -> String {
        let Some(tls) = rustls_error(e) else {
            return e.to_string();
        };
        let dir = self
            .tls_dir
            .as_deref()
            .map_or_else(|| "STATE/tls".to_owned(), |d| d.display().to_string());
        describe_tls_failure(tls, &dir)
    }
}

fn tls_builder() -> ureq::tls::TlsConfigBuilder {
    TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
}

fn rustls_error(e: &ureq::Error) -> Option<&rustls::Error> {
    match e {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

fn describe_tls_failure(e: &rustls::Error, tls_dir: &str) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match e {
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => format!(
            "the server's certificate is signed by the pinned CA but does not name this address ({e})\nhint: use a server name the certificate holds, or add it to the server's `server_names`"
        ),
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            format!("the server's certificate has expired ({e})")
        }
        E::InvalidCertificate(_) => format!(
            "the server is not the one this node enrolled with: its certificate does not chain to the pinned CA {tls_dir}/ca.pem ({e})\nhint: if the server's CA was replaced on purpose, remove {tls_dir} to enroll again"
        ),
        E::AlertReceived(
            A::BadCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::CertificateRequired
            | A::AccessDenied,
        ) => format!(
            "the server refused this node's certificate {tls_dir}/cert.pem ({e})\nhint: it may have been revoked; remove {tls_dir} to enroll again"
        ),
        _ => format!("TLS failed: {e}"),
    }
}

pub struct Client {
    http: Http,
    node: String,
    signing_key: VerifyingKey,
}

#[derive(Debug)]
pub enum CatalogAnswer {
    Fresh(SignedCatalog),
    /// 304: the cached catalog is current.
    NotModified,
}

/// A catalog whose signature verified over exactly `body`.
#[derive(Debug)]
pub struct SignedCatalog {
    pub catalog: Catalog,
    pub body: Vec<u8>,
    pub signature: String,
}

/// 503 from the catalog route: the server sheds load and says when to come
/// back (see `run::fetch_catalog`, which waits and asks again).
#[derive(Debug, thiserror::Error)]
#[error("the server is busy (503): {message}")]
pub struct ServerBusy {
    pub retry_after: Option<Duration>,
    pub message: String,
}

/// The answer of a catalog watch.
#[derive(Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Watched {
    /// The server's version when `changed`, else the one sent.
    pub version: Option<String>,
    pub changed: bool,
}

#[derive(Debug, PartialEq)]
pub enum Posted {
    /// 201 stored, or 200 already stored (a re-post of the same run_id).
    Stored,
    /// 400/403/413/422: the server will never take this report (a report
    /// over the server's `max_report_bytes` included), so it must not block
    /// the spool behind it.
    Rejected(String),
}

impl Client {
    /// The node routes, over the identity `ensure` established.
    pub fn new(server: &str, node: &str, identity: &Identity, timeout: Duration) -> Result<Client> {
        let trust = match &identity.transport {
            Transport::InsecureHttp => Trust::InsecureHttp,
            Transport::Tls(tls) => Trust::Pinned {
                ca: &tls.ca,
                client: Some((&tls.cert, &tls.key_pem)),
                tls_dir: &tls.dir,
            },
        };
        let http = Http::new(server, trust, timeout)?;
        Ok(Client::over(http, node, identity.signing_key))
    }

    pub fn over(http: Http, node: &str, signing_key: VerifyingKey) -> Client {
        Client {
            http,
            node: node.to_owned(),
            signing_key,
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/api/v1/nodes/{}/{rest}", self.node)
    }

    pub fn catalog(
        &self,
        request: &CatalogRequest,
        cached_version: Option<&str>,
    ) -> Result<CatalogAnswer> {
        let path = self.path("catalog");
        let mut headers = Vec::new();
        if let Some(version) = cached_version {
            headers.push(("If-None-Match", format!("\"{version}\"")));
        }
        let json = serde_json::to_vec(request).context("cannot serialize the catalog request")?;
        let answer = self.http.post(
            &path,
            "application/json",
            &json,
            &headers,
            MAX_CATALOG_BYTES,
        )?;
        match answer.status {
            304 => Ok(CatalogAnswer::NotModified),
            200 => self.verified_catalog(answer).map(CatalogAnswer::Fresh),
            503 => Err(ServerBusy {
                retry_after: answer.retry_after,
                message: error_text(&answer.body),
            }
            .into()),
            status => Err(anyhow!(
                "the server answered {status} for the catalog: {}",
                error_text(&answer.body)
            )),
        }
    }

    /// Checks the signature over the exact bytes before anything parses them.
    fn verified_catalog(&self, answer: Answer) -> Result<SignedCatalog> {
        let url = format!("{}{}", self.http.base(), self.path("catalog"));
        let refuse = |e: SignatureError| {
            anyhow!(
                "refusing the catalog from {url}: {e}\nhint: the agent applies only catalogs signed with the key it pinned in STATE/tls/catalog-signing.pub"
            )
        };
        let signature = answer
            .signature
            .ok_or_else(|| refuse(SignatureError::Missing))?;
        self.signing_key
            .verify(&answer.body, &signature)
            .map_err(refuse)?;
        let catalog: Catalog = serde_json::from_slice(&answer.body)
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
        Ok(SignedCatalog {
            catalog,
            body: answer.body,
            signature,
        })
    }

    /// Waits (up to `timeout_secs`, so the connection's own timeout must be
    /// longer) until the server knows a catalog version other than
    /// `version`: `GET nodes/{name}/catalog/watch`. Unsigned on purpose: the
    /// answer only starts a run early, and the run checks what it fetches.
    pub fn watch(&self, version: Option<&str>, timeout_secs: u64) -> Result<Watched> {
        let mut path = format!("{}?timeout_secs={timeout_secs}", self.path("catalog/watch"));
        if let Some(version) = version {
            path.push_str(&format!("&version={version}"));
        }
        let answer = self.http.get(&path, MAX_SMALL_BYTES)?;
        match answer.status {
            200 => answer.json("the catalog watch"),
            status => Err(anyhow!(
                "the server answered {status} for the catalog watch: {}",
                error_text(&answer.body)
            )),
        }
    }

    /// Posts a report (already serialized, as spooled).
    pub fn post_report(&self, json: &[u8]) -> Result<Posted> {
        let answer = self.http.post(
            &self.path("reports"),
            "application/json",
            json,
            &[],
            MAX_SMALL_BYTES,
        )?;
        match answer.status {
            200 | 201 => Ok(Posted::Stored),
            400 | 403 | 413 | 422 => Ok(Posted::Rejected(format!(
                "{}: {}",
                answer.status,
                error_text(&answer.body)
            ))),
            status => Err(anyhow!(
                "the server answered {status} for the report: {}",
                error_text(&answer.body)
            )),
        }
    }
}

impl ContentSource for Client {
    fn fetch(&self, sha256: &str) -> Result<Arc<[u8]>> {
        let answer = self
            .http
            .get(&self.path(&format!("files/{sha256}")), MAX_FILE_BYTES)
            .with_context(|| format!("cannot fetch content {sha256}"))?;
        if answer.status != 200 {
            bail!(
                "the server answered {} for content {sha256}: {}",
                answer.status,
                error_text(&answer.body)
            );
        }
        Ok(Arc::from(answer.body))
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
mod tests;
