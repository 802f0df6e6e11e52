//! Enrollment: ask the server to sign this node's key, and wait (bounded)
//! while an operator decides.
//!
//! The agent first asks whether a certificate or request already exists for
//! its key (an operator may have signed the request of an earlier run), and
//! only then submits a CSR, with the enrollment token when one is set.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use super::keys::NodeKey;
use super::{NodeCert, certs};
use crate::http::{Answer, Http, MAX_SMALL_BYTES, error_text};
use crate::output;

/// The first pause between two polls; it doubles up to [`MAX_POLL_PAUSE`].
pub(super) const FIRST_POLL_PAUSE: Duration = Duration::from_secs(1);
pub(super) const MAX_POLL_PAUSE: Duration = Duration::from_secs(15);

pub(super) struct Enrollment<'a> {
    /// TLS verified by the pinned CA, without a client certificate.
    pub http: &'a Http,
    pub node: &'a str,
    pub key: &'a NodeKey,
    pub ca: &'a CertificateDer<'static>,
    pub token_file: Option<&'a Path>,
    /// How long to wait for an operator; zero: not at all.
    pub wait: Duration,
}

/// `{"status": "signed"|"pending", "certificate": PEM, "fingerprint": HEX}`.
#[derive(Debug, Deserialize)]
struct RequestAnswer {
    status: String,
    #[serde(default)]
    certificate: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// Where this node's request stands on the server.
enum Standing {
    Signed(NodeCert),
    /// Pending for our key.
    Pending,
    /// Nothing for our key: no request, or one for another key, or only a
    /// certificate of another (or an expired) key.
    Nothing,
}

/// A certificate for this node's key, or an error saying why there is none yet.
pub(super) fn enroll(e: &Enrollment<'_>, stop: &AtomicBool) -> Result<NodeCert> {
    let standing = match ask(e)? {
        Standing::Nothing => submit(e)?,
        known => known,
    };
    match standing {
        Standing::Signed(cert) => Ok(cert),
        _ if e.wait.is_zero() => Err(still_pending(e)),
        _ => {
            output::info(&format!(
                "the certificate request of node `{}` is pending (key sha256 {}); waiting up to {} s for an operator to run `drover-server ca sign {}` on the server",
                e.node,
                e.key.fingerprint(),
                e.wait.as_secs(),
                e.node
            ));
            wait_for_signature(e, stop)
        }
    }
}

fn route(node: &str) -> String {
    format!("/api/v1/certificate_requests/{node}")
}

/// `GET /api/v1/certificate_requests/{name}?key=FINGERPRINT`: the server
/// answers only about this key's request or certificate.
fn ask(e: &Enrollment<'_>) -> Result<Standing> {
    let query = format!("{}?key={}", route(e.node), e.key.fingerprint());
    let answer = e.http.get(&query, MAX_SMALL_BYTES)?;
    match answer.status {
        404 => Ok(Standing::Nothing),
        200 => Ok(match issued(e, &answer) {
            Ok(cert) => Standing::Signed(cert),
            // The certificate of an earlier key of this node, or an expired one.
            Err(_) => Standing::Nothing,
        }),
        202 => {
            let pending: RequestAnswer = answer.json("the certificate request")?;
            Ok(
                if pending.fingerprint.as_deref() == Some(&e.key.fingerprint()) {
                    Standing::Pending
                } else {
                    Standing::Nothing
                },
            )
        }
        status => Err(refused(e, status, &answer.body)),
    }
}

/// `POST /api/v1/certificate_requests/{name}` with the CSR.
fn submit(e: &Enrollment<'_>) -> Result<Standing> {
    let csr = e.key.csr_pem(e.node)?;
    let mut headers = Vec::new();
    if let Some(file) = e.token_file {
        headers.push(("Authorization", format!("Bearer {}", read_token(file)?)));
    }
    let answer = e.http.post(
        &route(e.node),
        "application/x-pem-file",
        csr.as_bytes(),
        &headers,
        MAX_SMALL_BYTES,
    )?;
    match answer.status {
        200 => issued(e, &answer).map(Standing::Signed),
        202 => Ok(Standing::Pending),
        status => Err(refused(e, status, &answer.body)),
    }
}

fn read_token(file: &Path) -> Result<String> {
    let text = fs_err::read_to_string(file).context("cannot read the enrollment token")?;
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        bail!(
            "{} must hold the enrollment token alone, on one line",
            file.display()
        );
    }
    Ok(token.to_owned())
}

/// The certificate of a 200 answer, checked: our key, the pinned CA, our name.
fn issued(e: &Enrollment<'_>, answer: &Answer) -> Result<NodeCert> {
    let signed: RequestAnswer = answer.json("the certificate request")?;
    let pem = match (signed.status.as_str(), signed.certificate) {
        ("signed", Some(pem)) => pem,
        (status, _) => bail!("the server answered status `{status}` without a certificate"),
    };
    let what = format!("the certificate the server issued for node `{}`", e.node);
    let der = certs::single_cert(pem.as_bytes(), &what)?;
    let validity = certs::check_issued(&der, e.ca, &e.key.spki(), e.node, &what)?;
    if validity.expired(jiff::Timestamp::now()) {
        bail!(
            "{what} expired at {}\nhint: check the clocks of the server and this node",
            validity.not_after
        );
    }
    Ok(NodeCert { der, validity })
}

/// The server's refusal; with a hint of ours when the server gave none.
fn refused(e: &Enrollment<'_>, status: u16, body: &[u8]) -> anyhow::Error {
    let message = error_text(body);
    let hint = match status {
        _ if message.contains("\nhint:") => String::new(),
        403 => match e.token_file {
            Some(file) => format!(
                "\nhint: the enrollment token in {} is not the server's",
                file.display()
            ),
            None => String::new(),
        },
        409 => format!(
            "\nhint: another key already asked for the name `{}`; an operator can see it with `drover-server ca list`",
            e.node
        ),
        _ => String::new(),
    };
    anyhow!(
        "the server refused the certificate request of node `{}` ({status}): {message}{hint}",
        e.node
    )
}

/// Polls with a doubling pause (1 s, 2 s, ... at most 15 s apart) until the
/// request is signed or `e.wait` has passed.
fn wait_for_signature(e: &Enrollment<'_>, stop: &AtomicBool) -> Result<NodeCert> {
    let deadline = Instant::now() + e.wait;
    let mut pause = FIRST_POLL_PAUSE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(still_pending(e));
        }
        sleep_unless_stopped(pause.min(left), stop)
            .with_context(|| format!("stopped waiting for the certificate of node `{}`", e.node))?;
        pause = (pause * 2).min(MAX_POLL_PAUSE);
        match ask(e)? {
            Standing::Signed(cert) => return Ok(cert),
            Standing::Pending => {}
            Standing::Nothing => bail!(
                "the certificate request of node `{}` is no longer on the server (an operator may have rejected it)\nhint: the next run asks again",
                e.node
            ),
        }
    }
}

fn still_pending(e: &Enrollment<'_>) -> anyhow::Error {
    anyhow!(
        "the certificate request of node `{}` is still pending after {} s (key sha256 {})\nhint: on the server, run `drover-server ca sign {}`; the next run picks the certificate up",
        e.node,
        e.wait.as_secs(),
        e.key.fingerprint(),
        e.node
    )
}

fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) -> Result<()> {
    let until = Instant::now() + duration;
    loop {
        if stop.load(Ordering::SeqCst) {
            bail!("the agent is stopping");
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}
