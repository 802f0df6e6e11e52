//! One HTTP connection policy to the server (blocking): [`Http`] bound to
//! a [`Trust`] (TLS pinned to the enrolled CA, or plain loopback HTTP),
//! answers read whole within a size limit, and what a server's error body
//! or a TLS failure means for this node. Used by the node routes
//! ([`crate::client`]) and by enrollment ([`crate::identity`]).
//!
//! No redirect is ever followed, so no credential goes to another host; the
//! root store is the pinned CA alone, never the system's roots.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use drover_catalog::signed::{CATALOG_ERROR_HEADER, SIGNATURE_HEADER};
use rustls::pki_types::CertificateDer;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

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

/// An HTTP agent bound to one server and one [`Trust`].
pub(crate) struct Http {
    agent: ureq::Agent,
    base: String,
    tls_dir: Option<PathBuf>,
}

impl Http {
    /// `Err` only for a client key that does not parse.
    pub(crate) fn new(base: &str, trust: Trust<'_>, timeout: Duration) -> Result<Http> {
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

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn get(&self, path: &str, limit: u64) -> Result<Answer> {
        let url = format!("{}{path}", self.base);
        let response = self.agent.get(&url).call();
        self.read(&url, response, limit)
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
        let catalog_error = header(CATALOG_ERROR_HEADER);
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
            catalog_error,
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

    #[test]
    fn tls_failures_say_what_they_mean_for_this_node() {
        use rustls::{AlertDescription, CertificateError, Error};
        let unknown = describe_tls_failure(
            &Error::InvalidCertificate(CertificateError::UnknownIssuer),
            "/s/tls",
        );
        assert!(
            unknown.contains("not the one this node enrolled with")
                && unknown.contains("/s/tls/ca.pem")
                && unknown.contains("remove /s/tls"),
            "{unknown}"
        );
        let revoked = describe_tls_failure(
            &Error::AlertReceived(AlertDescription::CertificateRevoked),
            "/s/tls",
        );
        assert!(
            revoked.contains("refused this node's certificate"),
            "{revoked}"
        );
        let name = describe_tls_failure(
            &Error::InvalidCertificate(CertificateError::NotValidForName),
            "/s/tls",
        );
        assert!(name.contains("server_names"), "{name}");
    }
}
