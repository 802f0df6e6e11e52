//! What the node trusts: the CA it enrolled with (`ca.pem`) and the server's
//! catalog signing key (`catalog-signing.pub`). Both are pinned once; no
//! answer of a server ever replaces them.

use std::io::ErrorKind;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use drover_catalog::signed::VerifyingKey;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use super::{TlsDir, certs};
use crate::config::Settings;
use crate::fsutil::write_state_file;
use crate::http::{Http, MAX_SMALL_BYTES, Trust, error_text};
use crate::output;

const CA_ROUTE: &str = "/api/v1/ca";

/// `GET /api/v1/ca`.
#[derive(Debug, Deserialize)]
struct CaAnswer {
    ca: String,
    catalog_signing_key: String,
}

pub(super) struct Pins {
    pub ca: CertificateDer<'static>,
    pub signing_key: VerifyingKey,
}

/// The pinned CA and signing key, pinning them now if this is the first run.
pub(super) fn ensure(dir: &TlsDir, settings: &Settings) -> Result<Pins> {
    let ca = match read_optional(&dir.ca())? {
        Some(pem) => pinned_ca(&pem, dir, settings)?,
        None => return pin_new_ca(dir, settings),
    };
    let signing_key = match pinned_signing_key_in(dir)? {
        Some(key) => key,
        None => {
            let answer = fetch_verified(dir, settings, &ca)?;
            pin_signing_key(dir, &answer)?
        }
    };
    Ok(Pins { ca, signing_key })
}

/// The signing key pinned in STATE_DIR/tls, if any (for the daemon's first words).
pub(crate) fn pinned_signing_key(state_dir: &Path) -> Result<Option<VerifyingKey>> {
    pinned_signing_key_in(&TlsDir::of(state_dir))
}

/// `--insecure-http`: the signing key is pinned on first use over plain
/// HTTP (there is nothing to verify it with), then kept like any other.
pub(super) fn signing_key_over_insecure_http(dir: &TlsDir, http: &Http) -> Result<VerifyingKey> {
    if let Some(key) = pinned_signing_key_in(dir)? {
        return Ok(key);
    }
    let answer = fetch_ca(http)?;
    let key = pin_signing_key(dir, &answer)?;
    output::warning(&format!(
        "pinned the catalog signing key of {} over plain HTTP without any proof it is the server's (--insecure-http)",
        http.base()
    ));
    Ok(key)
}

fn pinned_ca(pem: &[u8], dir: &TlsDir, settings: &Settings) -> Result<CertificateDer<'static>> {
    let what = dir.ca().display().to_string();
    let der = certs::single_cert(pem, &what)?;
    certs::check_ca(&der, &what)?;
    if let Some(file) = &settings.tls.ca_file
        && let Ok((_, configured)) = certs::read_ca_file(file)
        && configured != der
    {
        output::warning(&format!(
            "ca_file {} is not the CA this node enrolled with; the pinned {what} stays in use\nhint: to enroll with the new CA, remove {}",
            file.display(),
            dir.root().display()
        ));
    }
    Ok(der)
}

/// First run: the CA from `ca_file`, or fetched from the server (checked
/// against `ca_fingerprint` when set); pinned only once the server proved,
/// over TLS verified by it, that it holds a certificate of that CA.
fn pin_new_ca(dir: &TlsDir, settings: &Settings) -> Result<Pins> {
    let (pem, ca, first_use) = match &settings.tls.ca_file {
        Some(file) => {
            let (pem, der) = certs::read_ca_file(file)?;
            check_fingerprint(&der, settings, &format!("ca_file {}", file.display()))?;
            (pem, der, false)
        }
        None => {
            let http = Http::new(&settings.servers, Trust::FirstUse, settings.http_timeout)?;
            let answer = fetch_ca(&http).context("cannot fetch the server's CA to enroll")?;
            let what = format!("the CA certificate from {}{CA_ROUTE}", http.base());
            let der = certs::single_cert(answer.ca.as_bytes(), &what)?;
            certs::check_ca(&der, &what)?;
            check_fingerprint(&der, settings, &what)?;
            (
                certs::to_pem(&der),
                der,
                settings.tls.ca_fingerprint.is_none(),
            )
        }
    };
    let answer = fetch_verified(dir, settings, &ca)?;
    write_state_file(&dir.ca(), pem.as_bytes())?;
    let signing_key = pin_signing_key(dir, &answer)?;
    if first_use {
        output::warning(&format!(
            "pinned the CA of {} on first use without checking it: sha256 {}\nhint: compare it with the server's CA, and set ca_fingerprint (or ca_file) in agent.toml so a first run cannot be fooled",
            settings.servers.join(", "),
            certs::fingerprint(&ca)
        ));
    }
    Ok(Pins { ca, signing_key })
}

fn check_fingerprint(ca: &CertificateDer<'_>, settings: &Settings, what: &str) -> Result<()> {
    let Some(expected) = &settings.tls.ca_fingerprint else {
        return Ok(());
    };
    let actual = certs::fingerprint(ca);
    if &actual != expected {
        bail!(
            "{what} has sha256 {actual}, not the configured ca_fingerprint {expected}; refusing to trust it\nhint: check that `server` points at your drover server and that ca_fingerprint is its CA's"
        );
    }
    Ok(())
}

/// `GET /api/v1/ca` over TLS verified by `ca` (no client certificate).
fn fetch_verified(
    dir: &TlsDir,
    settings: &Settings,
    ca: &CertificateDer<'static>,
) -> Result<CaAnswer> {
    let http = super::pinned_without_certificate(settings, dir, ca)?;
    fetch_ca(&http).context("cannot fetch the server's catalog signing key")
}

fn fetch_ca(http: &Http) -> Result<CaAnswer> {
    let answer = http.get(CA_ROUTE, MAX_SMALL_BYTES)?;
    if answer.status != 200 {
        bail!(
            "the server answered {} for {}{CA_ROUTE}: {}",
            answer.status,
            http.base(),
            error_text(&answer.body)
        );
    }
    answer.json(&format!("{}{CA_ROUTE}", http.base()))
}

fn pin_signing_key(dir: &TlsDir, answer: &CaAnswer) -> Result<VerifyingKey> {
    let key = VerifyingKey::from_base64(&answer.catalog_signing_key)
        .map_err(|e| anyhow!("the server's catalog signing key is unusable: {e}"))?;
    write_state_file(
        &dir.signing_key(),
        format!("{}\n", key.to_base64()).as_bytes(),
    )?;
    Ok(key)
}

fn pinned_signing_key_in(dir: &TlsDir) -> Result<Option<VerifyingKey>> {
    let path = dir.signing_key();
    let Some(text) = read_optional(&path)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&text);
    VerifyingKey::from_base64(&text).map(Some).map_err(|e| {
        anyhow!(
            "{} is damaged: {e}\nhint: remove {} to enroll again",
            path.display(),
            dir.root().display()
        )
    })
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs_err::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}
