//! What the CA remembers, as files in `DATA/ca` (dir 0700, files 0600, each
//! written atomically):
//!
//! - `pending/NAME.json`: a request waiting for `drover-server ca sign NAME`
//!   (`name`, `fingerprint`, `requested_at`, `csr` as PEM);
//! - `certs/nodes/NAME/SERIAL.pem`, `certs/operators/NAME/SERIAL.pem`: every
//!   certificate issued, the single source of its name, serial and validity;
//! - `revoked.json`: `[{serial, name, kind, revoked_at}]`, which the listener
//!   re-reads when it changes;
//! - `lock`: the flock every mutation holds, in the server and in `drover-server ca`.
//!
//! On PostgreSQL these files are a copy of the CA the servers share (see
//! `replica`): the lock is also taken in the database, and every file a
//! mutation writes or removes is written there too.
//!
//! NAME is always a plain host name (checked again here), so it is a safe file name.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use drover_catalog::names::check_node_name;
use fs_err::os::unix::fs::OpenOptionsExt;
use nix::fcntl::{Flock, FlockArg};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use super::CertKind;
use super::files::write_private;
use super::replica::{Replica, ReplicaLock};

/// A request waiting for an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRequest {
    pub name: String,
    /// sha256 of the requested key's SubjectPublicKeyInfo, hex.
    pub fingerprint: String,
    pub requested_at: jiff::Timestamp,
    /// The address it came from (none in requests kept before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<std::net::IpAddr>,
    /// The request as PEM.
    pub csr: String,
}

/// A certificate the CA issued, as read back from its PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub kind: CertKind,
    pub name: String,
    /// Lowercase hex, no leading zero bytes.
    pub serial: String,
    pub not_before: jiff::Timestamp,
    pub not_after: jiff::Timestamp,
    /// sha256 of the certified key's SubjectPublicKeyInfo, hex.
    pub fingerprint: String,
    pub pem: String,
}

impl IssuedCert {
    /// Reads a certificate of `kind` from its PEM.
    pub fn from_pem(kind: CertKind, pem: String) -> anyhow::Result<IssuedCert> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| anyhow::anyhow!("cannot parse the certificate: {e}"))?;
        let name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .context("the certificate has no subject CN")?
            .to_owned();
        let validity = cert.validity();
        Ok(IssuedCert {
            kind,
            name,
            serial: serial_hex(cert.raw_serial()),
            not_before: jiff::Timestamp::from_second(validity.not_before.timestamp())?,
            not_after: jiff::Timestamp::from_second(validity.not_after.timestamp())?,
            fingerprint: drover_catalog::sha256_hex(cert.public_key().raw),
            pem,
        })
    }

    pub fn is_expired(&self, now: jiff::Timestamp) -> bool {
        self.not_after <= now
    }
}

/// A revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub serial: String,
    pub name: String,
    pub kind: CertKind,
    pub revoked_at: jiff::Timestamp,
}

/// A certificate serial as lowercase hex without leading zero bytes (DER adds
/// one when the top bit is set).
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

/// Proof that the caller holds `DATA/ca/lock` (and, on PostgreSQL, the
/// shared CA's lock); released when dropped, the database's first.
pub struct StoreLock {
    shared: Option<ReplicaLock>,
    #[allow(dead_code, reason = "held for its Drop, which releases the flock")]
    local: Flock<std::fs::File>,
}

impl std::fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreLock")
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

/// The files of `DATA/ca`, and the shared CA they copy on PostgreSQL.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    replica: Option<Arc<Replica>>,
}

impl Store {
    /// Makes `dir` (mode 0700) and its subdirectories when missing. Refuses
    /// a `dir` owned by another user: files this process wrote (mode 0600)
    /// would be unreadable by the server, which then refuses every client
    /// certificate.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        Store::open_shared(dir, None)
    }

    /// [`Store::open`], the files a copy of `replica`'s when given.
    pub fn open_shared(dir: &Path, replica: Option<Arc<Replica>>) -> anyhow::Result<Store> {
        if dir.exists() {
            check_owner(dir)?;
        }
        for sub in [dir.to_path_buf(), dir.join("pending"), dir.join("certs")] {
            fs_err::create_dir_all(&sub)?;
            fs_err::set_permissions(&sub, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            replica,
        })
    }

    /// The shared CA this store copies, on PostgreSQL.
    pub fn replica(&self) -> Option<&Arc<Replica>> {
        self.replica.as_ref()
    }

    /// After a mutation wrote or removed `path`: its row in the database.
    fn shared(&self, lock: &StoreLock, path: &Path) -> anyhow::Result<()> {
        match (&self.replica, &lock.shared) {
            (Some(replica), Some(held)) => replica.push(held, path),
            _ => Ok(()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits for the exclusive lock on `DATA/ca/lock`.
    pub fn lock(&self) -> anyhow::Result<StoreLock> {
        let path = self.dir.join("lock");
        let file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)?
            .into_file();
        let local = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| anyhow::anyhow!("cannot lock {}: {errno}", path.display()))?;
        let shared = self.replica.as_ref().map(|r| r.lock()).transpose()?;
        Ok(StoreLock { shared, local })
    }

    /// The first server on a database stores its CA there (under `lock`).
    pub fn seed_if_first(&self, lock: &StoreLock) -> anyhow::Result<()> {
        if let (Some(replica), Some(held)) = (&self.replica, &lock.shared)
            && !replica.holds_a_ca()?
        {
            replica.seed(held)?;
        }
        Ok(())
    }

    pub fn revoked_path(&self) -> PathBuf {
        self.dir.join("revoked.json")
    }

    fn pending_path(&self, name: &str) -> anyhow::Result<PathBuf> {
        check_node_name(name).map_err(anyhow::Error::msg)?;
        Ok(self.dir.join("pending").join(format!("{name}.json")))
    }

    fn cert_dir(&self, kind: CertKind, name: &str) -> anyhow::Result<PathBuf> {
        check_node_name(name).map_err(anyhow::Error::msg)?;
        Ok(self.dir.join("certs").join(kind.dir_name()).join(name))
    }

    /// NAME's pending request, if any.
    pub fn pending(&self, name: &str) -> anyhow::Result<Option<PendingRequest>> {
        let path = self.pending_path(name)?;
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    pub fn put_pending(&self, lock: &StoreLock, request: &PendingRequest) -> anyhow::Result<()> {
        let path = self.pending_path(&request.name)?;
        write_private(&path, &serde_json::to_vec_pretty(request)?)?;
        self.shared(lock, &path)
    }

    /// Drops NAME's pending request; whether there was one.
    pub fn remove_pending(&self, lock: &StoreLock, name: &str) -> anyhow::Result<bool> {
        let path = self.pending_path(name)?;
        match fs_err::remove_file(&path) {
            Ok(()) => self.shared(lock, &path).map(|()| true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// How many requests are pending, without reading them.
    pub fn pending_count(&self) -> anyhow::Result<usize> {
        Ok(files_in(&self.dir.join("pending"), "json")?.len())
    }

    /// Every pending request, oldest first.
    pub fn all_pending(&self) -> anyhow::Result<Vec<PendingRequest>> {
        let mut all = Vec::new();
        for path in files_in(&self.dir.join("pending"), "json")? {
            all.push(read_json::<PendingRequest>(&path)?);
        }
        all.sort_by(|a, b| (a.requested_at, &a.name).cmp(&(b.requested_at, &b.name)));
        Ok(all)
    }

    pub fn put_cert(&self, lock: &StoreLock, cert: &IssuedCert) -> anyhow::Result<()> {
        let path = self
            .cert_dir(cert.kind, &cert.name)?
            .join(format!("{}.pem", cert.serial));
        write_private(&path, cert.pem.as_bytes())?;
        self.shared(lock, &path)
    }

    /// Every certificate issued for NAME as `kind`.
    pub fn certs_named(&self, kind: CertKind, name: &str) -> anyhow::Result<Vec<IssuedCert>> {
        let dir = self.cert_dir(kind, name)?;
        let mut certs = Vec::new();
        for path in files_in(&dir, "pem")? {
            certs.push(read_cert(kind, &path)?);
        }
        Ok(certs)
    }

    /// Every certificate issued, by kind, name, then issue time.
    pub fn all_certs(&self) -> anyhow::Result<Vec<IssuedCert>> {
        let mut certs = Vec::new();
        for kind in CertKind::ALL {
            let kind_dir = self.dir.join("certs").join(kind.dir_name());
            for name_dir in dirs_in(&kind_dir)? {
                for path in files_in(&name_dir, "pem")? {
                    certs.push(read_cert(kind, &path)?);
                }
            }
        }
        certs.sort_by(|a, b| {
            (a.kind, &a.name, a.not_before, &a.serial).cmp(&(
                b.kind,
                &b.name,
                b.not_before,
                &b.serial,
            ))
        });
        Ok(certs)
    }

    pub fn revocations(&self) -> anyhow::Result<Vec<Revocation>> {
        read_revocations(&self.revoked_path())
    }

    pub fn add_revocations(&self, lock: &StoreLock, new: &[Revocation]) -> anyhow::Result<()> {
        let mut all = self.revocations()?;
        all.extend(new.iter().cloned());
        write_private(&self.revoked_path(), &serde_json::to_vec_pretty(&all)?)?;
        self.shared(lock, &self.revoked_path())
    }
}

fn check_owner(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let owner = fs_err::metadata(dir)?.uid();
    let me = nix::unistd::geteuid().as_raw();
    if owner != me {
        let name = nix::unistd::User::from_uid(owner.into())
            .ok()
            .flatten()
            .map_or_else(|| owner.to_string(), |u| u.name);
        bail!(
            "{} belongs to user {name} but this process runs as uid {me}; what it wrote would be unreadable by the server\nhint: run as the server's user, e.g. `sudo -u {name} drover-server ca ...`",
            dir.display()
        );
    }
    Ok(())
}

/// The revocation list at `path`; none when the file does not exist.
pub fn read_revocations(path: &Path) -> anyhow::Result<Vec<Revocation>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    read_json(path)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = fs_err::read(path)?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid", path.display()))
}

fn read_cert(kind: CertKind, path: &Path) -> anyhow::Result<IssuedCert> {
    let pem = fs_err::read_to_string(path)?;
    IssuedCert::from_pem(kind, pem)
        .with_context(|| format!("invalid certificate {}", path.display()))
}

/// Files of `dir` ending in `.EXT`, sorted; none when `dir` does not exist.
fn files_in(dir: &Path, ext: &str) -> anyhow::Result<Vec<PathBuf>> {
    Ok(entries(dir)?
        .into_iter()
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect())
}

fn dirs_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(entries(dir)?.into_iter().filter(|p| p.is_dir()).collect())
}

fn entries(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut paths = fs_err::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    paths.retain(|p| {
        !p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    });
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_drop_leading_zero_bytes() {
        assert_eq!(serial_hex(&[0x00, 0x80, 0x01]), "8001");
        assert_eq!(serial_hex(&[0x7f, 0x00]), "7f00");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[]), "");
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        // Root makes one; anyone else already has one: `/`.
        let foreign = if nix::unistd::geteuid().is_root() {
            let dir = tmp.path().join("ca");
            fs_err::create_dir(&dir).unwrap();
            nix::unistd::chown(&dir, Some(65534.into()), None).unwrap();
            dir
        } else {
            PathBuf::from("/")
        };
        let err = Store::open(&foreign).unwrap_err();
        assert!(
            err.to_string().contains("hint: run as the server's user"),
            "{err}"
        );
    }

    #[test]
    fn pending_requests_round_trip_and_names_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("ca")).unwrap();
        let lock = store.lock().unwrap();
        let request = PendingRequest {
            name: "web1".into(),
            fingerprint: "ab".into(),
            requested_at: jiff::Timestamp::from_second(1_700_000_000).unwrap(),
            from: Some([10, 0, 0, 7].into()),
            csr: "PEM".into(),
        };
        store.put_pending(&lock, &request).unwrap();
        assert_eq!(store.pending("web1").unwrap(), Some(request.clone()));
        assert_eq!(store.all_pending().unwrap(), vec![request]);
        assert!(store.pending("../web1").is_err());
        assert!(store.remove_pending(&lock, "web1").unwrap());
        assert!(!store.remove_pending(&lock, "web1").unwrap());
        assert_eq!(store.pending("web1").unwrap(), None);
    }
}
