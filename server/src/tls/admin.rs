//! `drover-server ca list|sign|revoke|operator`: what each prints. They work
//! on `DATA/ca` directly (under its flock), so they act on a running server
//! too: a revocation is seen at its next TLS handshake.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::bail;

use super::Pki;
use super::files::write_private;
use super::requests::colon_hex;

/// Pending requests, then (unless `pending_only`) every certificate with
/// its state.
pub fn list(pki: &Pki, pending_only: bool) -> anyhow::Result<String> {
    let listing = pki.listing()?;
    let mut out = String::new();
    writeln!(out, "pending requests: {}", listing.pending.len())?;
    let rows: Vec<Vec<String>> = listing
        .pending
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                format!("sha256:{}", p.fingerprint),
                format!("requested {}", p.requested_at),
                p.from.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
            ]
        })
        .collect();
    out.push_str(&table(&["NAME", "KEY", "WHEN", "FROM"], &rows));
    if pending_only {
        if !listing.pending.is_empty() {
            out.push_str("sign one with `drover-server ca sign NAME` once its key fingerprint is the node's\n");
        }
        return Ok(out);
    }
    let now = jiff::Timestamp::now();
    writeln!(out, "certificates: {}", listing.certificates.len())?;
    let rows: Vec<Vec<String>> = listing
        .certificates
        .iter()
        .map(|(cert, revocation)| {
            let state = match revocation {
                Some(r) => format!("revoked {}", r.revoked_at),
                None if cert.is_expired(now) => "expired".to_owned(),
                None => "valid".to_owned(),
            };
            vec![
                cert.name.clone(),
                cert.kind.to_string(),
                colon_hex(&cert.serial),
                cert.not_after.to_string(),
                state,
            ]
        })
        .collect();
    out.push_str(&table(
        &["NAME", "KIND", "SERIAL", "NOT AFTER", "STATE"],
        &rows,
    ));
    out.push_str(
        "a request for a name that holds a valid node certificate is refused (no duplicate certificates): \
         `ca revoke NAME` frees it; a node renews its own over mutual TLS\n",
    );
    Ok(out)
}

/// Signs NAME's pending request.
pub fn sign(pki: &Pki, name: &str) -> anyhow::Result<String> {
    let cert = pki.sign_pending(name)?;
    tracing::info!(name, serial = %cert.serial, fingerprint = %cert.fingerprint, "signed a pending request (drover-server ca sign)");
    Ok(format!(
        "signed `{}`: serial {}, valid until {}\n",
        cert.name,
        colon_hex(&cert.serial),
        cert.not_after
    ))
}

/// Refuses (deletes) NAME's pending request.
pub fn reject(pki: &Pki, name: &str) -> anyhow::Result<String> {
    let request = pki.reject_pending(name)?;
    tracing::info!(name, fingerprint = %request.fingerprint, "rejected a pending request (drover-server ca reject)");
    Ok(format!(
        "rejected the pending request of `{name}` (key sha256 {}); the name is free for a new request\n",
        request.fingerprint
    ))
}

/// `ca clean NAME` (Puppet's `puppetserver ca clean`): revokes NAME's valid
/// certificates and drops its pending request, so the name can enroll
/// afresh (a rebuilt machine with a new key).
pub fn clean(pki: &Pki, name: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let revoked = pki.revoke(name).unwrap_or_default();
    for r in &revoked {
        writeln!(
            out,
            "revoked {} certificate of `{}`: serial {}",
            r.kind,
            r.name,
            colon_hex(&r.serial)
        )?;
    }
    let pending = pki.reject_pending(name).ok();
    if let Some(request) = &pending {
        writeln!(
            out,
            "dropped the pending request of `{name}` (key sha256 {})",
            request.fingerprint
        )?;
    }
    if revoked.is_empty() && pending.is_none() {
        bail!(
            "`{name}` has neither a valid certificate nor a pending request\nhint: `drover-server ca list` shows the certificates"
        );
    }
    writeln!(out, "`{name}` may enroll again with a new key")?;
    Ok(out)
}

/// Revokes NAME's certificates or the one with SERIAL.
pub fn revoke(pki: &Pki, target: &str) -> anyhow::Result<String> {
    let revoked = pki.revoke(target)?;
    let mut out = String::new();
    for r in &revoked {
        writeln!(
            out,
            "revoked {} certificate of `{}`: serial {}",
            r.kind,
            r.name,
            colon_hex(&r.serial)
        )?;
    }
    out.push_str("the server refuses it from its next TLS handshake on\n");
    Ok(out)
}

/// Writes `DIR/NAME.key.pem` (0600), `DIR/NAME.crt.pem` and `DIR/ca.pem`.
pub fn operator(pki: &Pki, name: &str, out_dir: &Path) -> anyhow::Result<String> {
    drover_catalog::names::check_node_name(name)
        .map_err(|e| anyhow::anyhow!("invalid operator name: {e}"))?;
    let key_path = out_dir.join(format!("{name}.key.pem"));
    let cert_path = out_dir.join(format!("{name}.crt.pem"));
    let ca_path = out_dir.join("ca.pem");
    if key_path.exists() {
        bail!(
            "{} already exists\nhint: choose another --out directory, or remove the old key first",
            key_path.display()
        );
    }
    if !out_dir.exists() {
        fs_err::create_dir_all(out_dir)?;
        fs_err::set_permissions(out_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let (key_pem, cert) = pki.issue_operator(name)?;
    write_private(&key_path, key_pem.as_bytes())?;
    fs_err::write(&cert_path, &cert.pem)?;
    fs_err::write(&ca_path, pki.ca_pem())?;
    Ok(format!(
        "issued an operator certificate for `{name}`: serial {}, valid until {}\n  {}  (private key, mode 0600)\n  {}\n  {}\nfor example: curl --cacert {} --cert {} --key {} https://SERVER:8140/api/v1/nodes\n",
        colon_hex(&cert.serial),
        cert.not_after,
        key_path.display(),
        cert_path.display(),
        ca_path.display(),
        ca_path.display(),
        cert_path.display(),
        key_path.display(),
    ))
}

/// Left-aligned columns, two spaces apart, indented; `(none)` without rows.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "  (none)\n".to_owned();
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("  {}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
