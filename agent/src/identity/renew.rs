//! Renewal: before the certificate expires, the node asks for a new one for
//! a new key over mutual TLS with the current one, and replaces key and
//! certificate as a pair.
//!
//! Two files cannot be renamed at once, so the pair goes through a staging
//! directory: written in `pair.new/`, committed by renaming that directory to
//! `pair.commit/`, then moved into place. A crash before the commit leaves
//! the old pair; after it, [`recover`] (run first by every run) finishes the
//! move, so the node always holds the old pair or the new one.

use anyhow::{Result, anyhow, bail};
use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use super::keys::NodeKey;
use super::{NodeCert, TlsDir, certs};
use crate::config::Settings;
use crate::fsutil::{sync_dir, write_state_file};
use crate::http::{Http, MAX_SMALL_BYTES, Trust, error_text};
use crate::output;

const STAGING: &str = "pair.new";
const COMMITTED: &str = "pair.commit";
const PAIR: [&str; 2] = ["key.pem", "cert.pem"];

/// `{"status":"signed","certificate":PEM}`.
#[derive(Debug, Deserialize)]
struct Renewed {
    status: String,
    certificate: Option<String>,
}

/// A new key and its certificate, installed; `Err` leaves the current pair.
pub(super) fn renew(
    dir: &TlsDir,
    settings: &Settings,
    ca: &CertificateDer<'static>,
    key: &NodeKey,
    cert: &NodeCert,
) -> Result<(NodeKey, NodeCert)> {
    let current_key = key.pem();
    let http = Http::new(
        &settings.servers,
        Trust::Pinned {
            ca,
            client: Some((&cert.der, &current_key)),
            tls_dir: dir.root(),
        },
        settings.http_timeout,
    )?;
    let new_key = NodeKey::generate()?;
    let csr = new_key.csr_pem(&settings.node)?;
    let path = format!("/api/v1/nodes/{}/certificate", settings.node);
    let answer = http.post(
        &path,
        "application/x-pem-file",
        csr.as_bytes(),
        &[],
        MAX_SMALL_BYTES,
    )?;
    if answer.status != 200 {
        bail!(
            "the server answered {} for {}{path}: {}",
            answer.status,
            http.base(),
            error_text(&answer.body)
        );
    }
    let renewed: Renewed = answer.json("the certificate renewal")?;
    let pem = match (renewed.status.as_str(), renewed.certificate) {
        ("signed", Some(pem)) => pem,
        (status, _) => bail!("the server answered status `{status}` without a certificate"),
    };
    let what = format!("the renewed certificate of node `{}`", settings.node);
    let der = certs::single_cert(pem.as_bytes(), &what)?;
    let validity = certs::check_issued(&der, ca, &new_key.spki(), &settings.node, &what)?;
    install_pair(dir, &new_key.pem(), &certs::to_pem(&der))?;
    output::info(&format!(
        "renewed the certificate of node `{}`: a new key, valid until {}",
        settings.node, validity.not_after
    ));
    if validity.due(jiff::Timestamp::now(), settings.tls.renew_before) {
        output::warning(&format!(
            "the server issues certificates that expire within renew_before_days, so node `{}` renews at every run\nhint: lower renew_before_days in agent.toml, or raise the server's cert_lifetime",
            settings.node
        ));
    }
    Ok((new_key, NodeCert { der, validity }))
}

/// Replaces `key.pem` and `cert.pem` together (see the module comment).
pub(super) fn install_pair(dir: &TlsDir, key_pem: &str, cert_pem: &str) -> Result<()> {
    let staging = dir.root().join(STAGING);
    if staging.exists() {
        fs_err::remove_dir_all(&staging)?;
    }
    write_state_file(&staging.join(PAIR[0]), key_pem.as_bytes())?;
    write_state_file(&staging.join(PAIR[1]), cert_pem.as_bytes())?;
    sync_dir(&staging)?;
    fs_err::rename(&staging, dir.root().join(COMMITTED))?;
    sync_dir(dir.root())?;
    finish(dir)
}

/// Finishes a committed pair a crash interrupted; drops an uncommitted one.
pub(super) fn recover(dir: &TlsDir) -> Result<()> {
    let staging = dir.root().join(STAGING);
    if staging.exists() {
        fs_err::remove_dir_all(&staging)?;
    }
    if dir.root().join(COMMITTED).exists() {
        finish(dir).map_err(|e| {
            anyhow!(
                "cannot finish installing the renewed key and certificate: {e:#}\nhint: {} holds them",
                dir.root().join(COMMITTED).display()
            )
        })?;
    }
    Ok(())
}

fn finish(dir: &TlsDir) -> Result<()> {
    let committed = dir.root().join(COMMITTED);
    for name in PAIR {
        let from = committed.join(name);
        if from.exists() {
            fs_err::rename(&from, dir.root().join(name))?;
        }
    }
    sync_dir(dir.root())?;
    fs_err::remove_dir(&committed)?;
    sync_dir(dir.root())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &TlsDir, name: &str) -> String {
        fs_err::read_to_string(dir.root().join(name)).unwrap()
    }

    #[test]
    fn a_pair_replaces_both_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TlsDir::of(tmp.path());
        install_pair(&dir, "old key", "old cert").unwrap();
        install_pair(&dir, "new key", "new cert").unwrap();
        assert_eq!(
            (read(&dir, "key.pem"), read(&dir, "cert.pem")),
            ("new key".into(), "new cert".into())
        );
        assert!(!dir.root().join(COMMITTED).exists());
        assert!(!dir.root().join(STAGING).exists());
    }

    #[test]
    fn a_crash_leaves_the_old_pair_or_the_new_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TlsDir::of(tmp.path());
        install_pair(&dir, "old key", "old cert").unwrap();

        // Killed while writing the staging directory: the old pair stays.
        fs_err::create_dir_all(dir.root().join(STAGING)).unwrap();
        fs_err::write(dir.root().join(STAGING).join("key.pem"), "half").unwrap();
        recover(&dir).unwrap();
        assert_eq!(
            (read(&dir, "key.pem"), read(&dir, "cert.pem")),
            ("old key".into(), "old cert".into())
        );
        assert!(!dir.root().join(STAGING).exists());

        // Killed after the commit, with the key moved and the cert not yet.
        let committed = dir.root().join(COMMITTED);
        fs_err::create_dir_all(&committed).unwrap();
        fs_err::write(dir.root().join("key.pem"), "new key").unwrap();
        fs_err::write(committed.join("cert.pem"), "new cert").unwrap();
        recover(&dir).unwrap();
        assert_eq!(
            (read(&dir, "key.pem"), read(&dir, "cert.pem")),
            ("new key".into(), "new cert".into())
        );
        assert!(!committed.exists());
    }
}
