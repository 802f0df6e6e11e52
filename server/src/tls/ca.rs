//! The CA itself: `DATA/ca/ca.{key,crt}.pem` (ECDSA P-256, 10 years), the
//! server's TLS certificate `server.{key,crt}.pem`, the catalog signing key
//! `catalog-signing.key`, and how certificates are made.
//!
//! Invariant: a certificate this CA issues holds exactly what [`Pki::issue`]
//! writes (subject CN and O, dNSName, CA:false, digitalSignature, clientAuth);
//! nothing of a request but its public key is ever copied.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use drover_catalog::csr::pem_encode;
use drover_catalog::names::check_node_name;
use drover_catalog::signed::SigningKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

use super::CertKind;
use super::files::write_private;
use super::replica::Replica;
use super::store::{IssuedCert, Store, StoreLock};
use super::verifier::RevocationWatch;
use crate::config::Config;

const CA_KEY: &str = "ca.key.pem";
const CA_CERT: &str = "ca.crt.pem";
const SERVER_KEY: &str = "server.key.pem";
const SERVER_CERT: &str = "server.crt.pem";
const CATALOG_KEY: &str = "catalog-signing.key";

const CA_LIFETIME: Duration = Duration::from_secs(3650 * 24 * 3600);
const SERVER_CERT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// A server certificate closer than this to its end is reissued at start.
pub const SERVER_CERT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Certificates start this long before they are made, for clocks slightly behind.
const BACKDATE: Duration = Duration::from_secs(300);

/// The server's PKI: its CA, its catalog signing key and the CA's records.
pub struct Pki {
    dir: PathBuf,
    store: Store,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    catalog_signer: SigningKey,
    cert_lifetime: Duration,
    revocations: Arc<RevocationWatch>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Opens `DATA/ca`, creating the CA and the catalog signing key at first
    /// start, and (re)issues the server certificate when its names changed or
    /// it expires within 30 days.
    pub fn open_or_create(
        data_dir: &Path,
        config: &Config,
        replica: Option<Arc<Replica>>,
    ) -> anyhow::Result<Pki> {
        let pki = Pki::open_ca(data_dir, config.cert_lifetime, replica)?;
        pki.ensure_server_cert(&config.server_names)?;
        Ok(pki)
    }

    /// Opens (or creates) the CA and the catalog signing key only: what
    /// `drover-server ca` needs, leaving the server certificate alone. With
    /// `replica` (PostgreSQL), `DATA/ca` is first brought up to date with
    /// the CA the servers share, and the first server stores its own there.
    pub fn open_ca(
        data_dir: &Path,
        cert_lifetime: Duration,
        replica: Option<Arc<Replica>>,
    ) -> anyhow::Result<Pki> {
        let dir = data_dir.join("ca");
        let store = Store::open_shared(&dir, replica)?;
        let lock = store.lock()?;
        let (ca_key, ca_pem) = load_or_create_ca(&dir)?;
        let catalog_signer = load_or_create_catalog_key(&dir)?;
        store.seed_if_first(&lock)?;
        drop(lock);
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
            .with_context(|| format!("cannot use {} as the CA", dir.join(CA_CERT).display()))?;
        Ok(Pki {
            revocations: Arc::new(RevocationWatch::new(store.revoked_path())),
            dir,
            store,
            ca_pem,
            issuer,
            catalog_signer,
            cert_lifetime,
        })
    }

    /// `DATA/ca`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The CA certificate as PEM (what agents pin).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_der(&self) -> anyhow::Result<CertificateDer<'static>> {
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("the CA certificate is not PEM: {e}"))
    }

    /// When the CA's and this server's certificates expire, in seconds
    /// since the epoch (`None` for one that cannot be read).
    pub fn expiries(&self) -> (Option<i64>, Option<i64>) {
        let not_after = |pem: &[u8]| -> Option<i64> {
            let der = CertificateDer::from_pem_slice(pem).ok()?;
            let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
            Some(cert.validity().not_after.timestamp())
        };
        let server = fs_err::read(self.dir.join(SERVER_CERT)).ok();
        (
            not_after(self.ca_pem.as_bytes()),
            server.as_deref().and_then(not_after),
        )
    }

    /// The key that signs every catalog the server serves.
    pub fn catalog_signer(&self) -> &SigningKey {
        &self.catalog_signer
    }

    /// The revoked serials, re-read whenever `revoked.json` changes.
    pub fn revocations(&self) -> &Arc<RevocationWatch> {
        &self.revocations
    }

    /// The server's certificate and key for the TLS listener.
    pub fn server_identity(
        &self,
    ) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let cert_path = self.dir.join(SERVER_CERT);
        let key_path = self.dir.join(SERVER_KEY);
        let cert = CertificateDer::from_pem_file(&cert_path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", cert_path.display()))?;
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", key_path.display()))?;
        Ok((vec![cert], key))
    }

    /// Issues the server certificate unless the current one has exactly the
    /// wanted names, comes from this CA and lasts 30 more days.
    pub fn ensure_server_cert(&self, server_names: &[String]) -> anyhow::Result<()> {
        let wanted = wanted_server_names(server_names)?;
        let _lock = self.store.lock()?;
        let Some(why) = self.server_cert_outdated(&wanted)? else {
            return Ok(());
        };
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            host_name().unwrap_or_else(|| "localhost".into()),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "drover server");
        params.subject_alt_names = wanted
            .iter()
            .map(|n| n.to_san())
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.fill_common(&mut params, SERVER_CERT_LIFETIME)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        write_private(&self.dir.join(SERVER_KEY), key.serialize_pem().as_bytes())?;
        write_private(&self.dir.join(SERVER_CERT), cert.pem().as_bytes())?;
        let names: Vec<String> = wanted.iter().map(ToString::to_string).collect();
        tracing::info!(names = %names.join(", "), why, "issued the server certificate");
        Ok(())
    }

    /// Why the server certificate must be reissued, or `None`.
    fn server_cert_outdated(
        &self,
        wanted: &BTreeSet<ServerName>,
    ) -> anyhow::Result<Option<String>> {
        let (cert_path, key_path) = (self.dir.join(SERVER_CERT), self.dir.join(SERVER_KEY));
        if !cert_path.exists() || !key_path.exists() {
            return Ok(Some("there was none".into()));
        }
        let pem = fs_err::read(&cert_path)?;
        let der = CertificateDer::from_pem_slice(&pem)
            .map_err(|e| anyhow::anyhow!("{} is not PEM: {e}", cert_path.display()))?;
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
            return Ok(Some(format!("{} could not be parsed", cert_path.display())));
        };
        let ca_der = self.ca_der()?;
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der)
            .map_err(|e| anyhow::anyhow!("cannot parse the CA certificate: {e}"))?;
        if cert.verify_signature(Some(ca.public_key())).is_err() {
            return Ok(Some("the old one was signed by another CA".into()));
        }
        let left = cert.validity().time_to_expiration();
        if left.is_none_or(|left| left.unsigned_abs() < SERVER_CERT_RENEW_BEFORE) {
            return Ok(Some("the old one expires within 30 days".into()));
        }
        let mut present = BTreeSet::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                present.insert(ServerName::from_general(name));
            }
        }
        if present != *wanted {
            return Ok(Some("the server names changed".into()));
        }
        Ok(None)
    }

    /// Issues a certificate of `kind` for `name` to `key`, and records it.
    pub(crate) fn issue(
        &self,
        lock: &StoreLock,
        kind: CertKind,
        name: &str,
        key: &impl PublicKeyData,
    ) -> anyhow::Result<IssuedCert> {
        check_node_name(name).map_err(anyhow::Error::msg)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, kind.organization());
        params.subject_alt_names = vec![SanType::DnsName(name.try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.fill_common(&mut params, self.cert_lifetime)?;
        let cert = params.signed_by(key, &self.issuer)?;
        let issued = IssuedCert::from_pem(kind, cert.pem())?;
        self.store.put_cert(lock, &issued)?;
        Ok(issued)
    }

    /// Serial, validity and authority key identifier, shared by every certificate.
    fn fill_common(
        &self,
        params: &mut CertificateParams,
        lifetime: Duration,
    ) -> anyhow::Result<()> {
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + lifetime;
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        Ok(())
    }
}

/// 16 random bytes, top bit clear (a positive DER integer of exactly 16 bytes).
fn random_serial() -> anyhow::Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn load_or_create_ca(dir: &Path) -> anyhow::Result<(KeyPair, String)> {
    let (key_path, cert_path) = (dir.join(CA_KEY), dir.join(CA_CERT));
    match (key_path.exists(), cert_path.exists()) {
        (true, true) => {
            let key = KeyPair::from_pem(&fs_err::read_to_string(&key_path)?)
                .with_context(|| format!("{} is not a usable key", key_path.display()))?;
            let pem = fs_err::read_to_string(&cert_path)?;
            check_ca_matches_key(&pem, &key).with_context(|| {
                format!(
                    "{} does not belong to {}",
                    cert_path.display(),
                    key_path.display()
                )
            })?;
            Ok((key, pem))
        }
        (false, false) => {
            let (key, pem) = new_ca()?;
            write_private(&key_path, key.serialize_pem().as_bytes())?;
            write_private(&cert_path, pem.as_bytes())?;
            tracing::info!(dir = %dir.display(), "created the certificate authority");
            Ok((key, pem))
        }
        (key, _) => {
            let (present, missing) = if key {
                (&key_path, &cert_path)
            } else {
                (&cert_path, &key_path)
            };
            bail!(
                "{} exists but {} is missing\nhint: restore it from a backup, or remove {} to start a new CA (every node and operator must then enroll again)",
                present.display(),
                missing.display(),
                dir.display()
            )
        }
    }
}

fn check_ca_matches_key(pem: &str, key: &KeyPair) -> anyhow::Result<()> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("cannot parse the certificate: {e}"))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        bail!("its public key is not the key's");
    }
    Ok(())
}

fn new_ca() -> anyhow::Result<(KeyPair, String)> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let host = host_name().unwrap_or_else(|| "localhost".into());
    let serial = random_serial()?;
    // Part of the serial makes each CA's name unique, so clients that trust
    // several drover CAs never confuse them.
    let id = hex::encode(&serial.to_bytes()[..4]);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("drover CA {host} {id}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "drover");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_LIFETIME;
    params.serial_number = Some(serial);
    let cert = params.self_signed(&key)?;
    Ok((key, cert.pem()))
}

fn load_or_create_catalog_key(dir: &Path) -> anyhow::Result<SigningKey> {
    let path = dir.join(CATALOG_KEY);
    if !path.exists() {
        let der = SigningKey::generate_pkcs8()?;
        write_private(&path, pem_encode("PRIVATE KEY", &der).as_bytes())?;
        tracing::info!(path = %path.display(), "created the catalog signing key");
    }
    let der = PrivateKeyDer::from_pem_file(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    SigningKey::from_pkcs8(der.secret_der())
        .with_context(|| format!("{} is not an ed25519 PKCS#8 key", path.display()))
}

/// This machine's host name, when it is a plain host name.
fn host_name() -> Option<String> {
    let name = nix::unistd::gethostname().ok()?.into_string().ok()?;
    check_node_name(&name).is_ok().then_some(name)
}

/// One subjectAltName of the server certificate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum ServerName {
    Dns(String),
    Ip(IpAddr),
    /// Something this server never asks for (so its presence means "reissue").
    Other(String),
}

impl ServerName {
    fn parse(text: &str) -> anyhow::Result<ServerName> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(ServerName::Ip(ip));
        }
        check_node_name(text).map_err(|e| {
            anyhow::anyhow!(
                "server_names entry {text:?} is neither an IP address nor a DNS name: {e}"
            )
        })?;
        Ok(ServerName::Dns(text.to_ascii_lowercase()))
    }

    fn from_general(name: &GeneralName<'_>) -> ServerName {
        match name {
            GeneralName::DNSName(dns) => ServerName::Dns(dns.to_ascii_lowercase()),
            GeneralName::IPAddress(bytes) => match <[u8; 4]>::try_from(*bytes) {
                Ok(v4) => ServerName::Ip(IpAddr::from(v4)),
                Err(_) => match <[u8; 16]>::try_from(*bytes) {
                    Ok(v6) => ServerName::Ip(IpAddr::from(v6)),
                    Err(_) => ServerName::Other(format!("{bytes:?}")),
                },
            },
            other => ServerName::Other(format!("{other:?}")),
        }
    }

    fn to_san(&self) -> anyhow::Result<SanType> {
        Ok(match self {
            ServerName::Dns(dns) => SanType::DnsName(dns.as_str().try_into()?),
            ServerName::Ip(ip) => SanType::IpAddress(*ip),
            ServerName::Other(other) => bail!("cannot put {other} in a certificate"),
        })
    }
}

impl std::fmt::Display for ServerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerName::Dns(dns) => f.write_str(dns),
            ServerName::Ip(ip) => write!(f, "{ip}"),
            ServerName::Other(other) => f.write_str(other),
        }
    }
}

/// localhost, 127.0.0.1, ::1, the host name and `server_names`.
fn wanted_server_names(extra: &[String]) -> anyhow::Result<BTreeSet<ServerName>> {
    let mut names: BTreeSet<ServerName> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(ServerName::parse)
        .collect::<Result<_, _>>()?;
    if let Some(host) = host_name() {
        names.insert(ServerName::parse(&host)?);
    }
    for name in extra {
        names.insert(ServerName::parse(name)?);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_checked_and_normalised() {
        let names = wanted_server_names(&["Drover.Example.org".into(), "10.0.0.5".into()]).unwrap();
        assert!(names.contains(&ServerName::Dns("drover.example.org".into())));
        assert!(names.contains(&ServerName::Ip("10.0.0.5".parse().unwrap())));
        assert!(names.contains(&ServerName::Ip("::1".parse().unwrap())));
        let err = wanted_server_names(&["bad/name".into()]).unwrap_err();
        assert!(
            err.to_string().contains("server_names entry \"bad/name\""),
            "{err}"
        );
    }

    #[test]
    fn random_serials_are_sixteen_positive_bytes() {
        let a = random_serial().unwrap().to_bytes();
        let b = random_serial().unwrap().to_bytes();
        assert_eq!(a.len(), 16);
        assert!(a[0] & 0x80 == 0 && a[0] != 0);
        assert_ne!(a, b);
    }
}
