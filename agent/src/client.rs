//! The agent's side of the HTTP API (blocking): [`Client`], the node
//! routes (catalog, catalog watch, file contents, reports) over one
//! [`Http`] connection policy (see [`crate::http`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use drover_catalog::signed::{SignatureError, VerifyingKey};
use drover_catalog::{Catalog, CatalogRequest};

use crate::http::{Answer, Http, MAX_SMALL_BYTES, Trust, error_text};
use crate::identity::{Identity, Transport};
use crate::resources::ContentSource;

const MAX_CATALOG_BYTES: u64 = 512 * 1024 * 1024;
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024 * 1024;

pub(crate) struct Client {
    http: Http,
    node: String,
    signing_key: VerifyingKey,
}

#[derive(Debug)]
pub(crate) enum CatalogAnswer {
    Fresh(SignedCatalog),
    /// 304: the cached catalog is current.
    NotModified {
        catalog_error: Option<String>,
    },
}

/// A catalog whose signature verified over exactly `body`.
#[derive(Debug)]
pub(crate) struct SignedCatalog {
    pub catalog: Catalog,
    pub body: Vec<u8>,
    pub signature: String,
    /// Set when this is the node's last good catalog: the server's compile
    /// error for the current commit.
    pub catalog_error: Option<String>,
}

/// 503 from the catalog route: the server sheds load and says when to come
/// back (see `run::fetch_catalog`, which waits and asks again).
#[derive(Debug, thiserror::Error)]
#[error("the server is busy (503): {message}")]
pub(crate) struct ServerBusy {
    pub retry_after: Option<Duration>,
    pub message: String,
}

/// The answer of a catalog watch.
#[derive(Debug, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct Watched {
    /// The server's version when `changed`, else the one sent.
    pub version: Option<String>,
    pub changed: bool,
    /// An operator asked for a run now (servers before it never say so).
    #[serde(default)]
    pub run: bool,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Posted {
    /// 201 stored, or 200 already stored (a re-post of the same run_id).
    Stored,
    /// 400/403/413/422: the server will never take this report (a report
    /// over the server's `max_report_bytes` included), so it must not block
    /// the spool behind it.
    Rejected(String),
}

impl Client {
    /// The node routes, over the identity `ensure` established.
    pub(crate) fn new(
        servers: &[String],
        node: &str,
        identity: &Identity,
        timeout: Duration,
    ) -> Result<Client> {
        let trust = match &identity.transport {
            Transport::InsecureHttp => Trust::InsecureHttp,
            Transport::Tls(tls) => Trust::Pinned {
                ca: &tls.ca,
                client: Some((&tls.cert, &tls.key_pem)),
                tls_dir: &tls.dir,
            },
        };
        let http = Http::new(servers, trust, timeout)?;
        Ok(Client::over(http, node, identity.signing_key))
    }

    pub(crate) fn over(http: Http, node: &str, signing_key: VerifyingKey) -> Client {
        Client {
            http,
            node: node.to_owned(),
            signing_key,
        }
    }

    /// The server that answered last (see [`crate::http`]).
    pub(crate) fn server(&self) -> &str {
        self.http.base()
    }

    fn path(&self, rest: &str) -> String {
        format!("/api/v1/nodes/{}/{rest}", self.node)
    }

    pub(crate) fn catalog(
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
            304 => Ok(CatalogAnswer::NotModified {
                catalog_error: answer.catalog_error,
            }),
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
            catalog_error: answer.catalog_error,
        })
    }

    /// Waits (up to `timeout_secs`, so the connection's own timeout must be
    /// longer) until the server knows a catalog version other than
    /// `version`: `GET nodes/{name}/catalog/watch`. Unsigned on purpose: the
    /// answer only starts a run early, and the run checks what it fetches.
    pub(crate) fn watch(&self, version: Option<&str>, timeout_secs: u64) -> Result<Watched> {
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
    pub(crate) fn post_report(&self, json: &[u8]) -> Result<Posted> {
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

#[cfg(test)]
mod tests;
