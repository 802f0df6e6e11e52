//! On PostgreSQL, `DATA/ca` is each server's copy of one CA the servers
//! share through the database's `ca_files` table: the CA certificate and
//! key, the catalog signing key, pending requests, issued certificates and
//! the revocation list (each server's own TLS certificate and key stay
//! local: each server has its own, signed by the shared CA).
//!
//! The file-based CA (`store`, `ca`, `requests`) is unchanged; this module
//! keeps the copies in step. A mutation holds a PostgreSQL advisory lock
//! (the cluster-wide twin of `DATA/ca/lock`), first brings the copy up to
//! date, then writes each changed file's row as it writes the file, and
//! tells the other servers (`NOTIFY`), which bring their copies up to date
//! at once (and every few seconds anyway). Since every mutation starts from
//! every earlier one and they never overlap, none is lost; and since the
//! listener re-reads `revoked.json` when it changes, a revocation made on
//! any host is refused by every server at its next handshake after the
//! notification, without a restart.
//!
//! The private keys' rows are sealed with AES-256-GCM under the cluster
//! secret, a file each server holds (`cluster_secret_file`): a copy of the
//! database (a backup, a replica, a DBA's session) does not give away the
//! key that signs every node's certificate. The first server creates the
//! secret; the others need a copy of it, as they need the database's
//! password.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sqlx::Any;
use sqlx::pool::PoolConnection;
use tokio::runtime::Handle;

use super::files::write_private;
use crate::db::Db;

/// The advisory lock every CA mutation holds ("droverca").
const LOCK_KEY: i64 = 0x6472_6f76_6572_6361;
/// Files of `DATA/ca` that are each server's own.
const LOCAL_ONLY: [&str; 3] = ["lock", "server.key.pem", "server.crt.pem"];
/// Files whose rows are sealed under the cluster secret.
const SEALED: [&str; 2] = ["ca.key.pem", "catalog-signing.key"];
/// Files a server's copy must never silently replace: another CA.
const IDENTITY: [&str; 2] = ["ca.key.pem", "ca.crt.pem"];
/// How a sealed row starts.
const SEAL_MAGIC: &[u8] = b"drover-sealed-v1\0";

/// The shared CA's rows, and this server's copy of them.
pub struct Replica {
    db: Db,
    runtime: Handle,
    dir: PathBuf,
    /// Who tells the others of a change (a server's id, or `ca-command`).
    sender: String,
    key: LessSafeKey,
    /// The largest `seq` this copy holds.
    seen: Mutex<i64>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The cluster-wide CA lock: held while alive (see [`Replica::lock`]).
pub struct ReplicaLock {
    conn: Option<PoolConnection<Any>>,
    runtime: Handle,
}

impl Drop for ReplicaLock {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // A pool connection goes back to its pool on a task of the runtime.
        let _runtime = self.runtime.enter();
        let unlocked = self.runtime.block_on(async {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(LOCK_KEY)
                .execute(&mut *conn)
                .await
        });
        if unlocked.is_err() {
            // Closing the session releases its locks.
            drop(conn.detach());
        } else {
            drop(conn);
        }
    }
}

impl Replica {
    /// `dir` (DATA/ca) as a copy of the CA in `db`, sealed with the secret
    /// in `secret_file`. `runtime` runs the queries: every method blocks,
    /// so call them from a blocking thread (as the CA's callers do).
    pub fn new(
        db: Db,
        runtime: Handle,
        dir: &Path,
        sender: &str,
        secret_file: &Path,
    ) -> anyhow::Result<Replica> {
        let holds = runtime
            .block_on(holds_a_ca(&db))
            .context("cannot read the shared CA from the database")?;
        // The first server makes the secret; the others must have its copy.
        let key = cluster_key(secret_file, !holds)?;
        Ok(Replica {
            db,
            runtime,
            dir: dir.to_owned(),
            sender: sender.to_owned(),
            key,
            seen: Mutex::new(0),
        })
    }

    /// Waits for the cluster-wide CA lock, then brings the copy up to date.
    pub fn lock(&self) -> anyhow::Result<ReplicaLock> {
        let conn = self
            .runtime
            .block_on(async {
                let mut conn = self.db.reads().acquire().await?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(LOCK_KEY)
                    .execute(&mut *conn)
                    .await?;
                Ok::<_, sqlx::Error>(conn)
            })
            .context("cannot take the shared CA's lock in the database")?;
        let lock = ReplicaLock {
            conn: Some(conn),
            runtime: self.runtime.clone(),
        };
        self.pull()?;
        Ok(lock)
    }

    /// Brings the copy up to date with every row it has not seen; how many.
    /// One pull at a time (a signing's, a notification's, the timer's): the
    /// watermark is held from the query to the last file written.
    pub fn pull(&self) -> anyhow::Result<usize> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let rows: Vec<(String, Option<Vec<u8>>, i64)> = self
            .runtime
            .block_on(
                sqlx::query_as(
                    "SELECT path, content, seq FROM ca_files WHERE seq > $1 ORDER BY seq",
                )
                .bind(*seen)
                .fetch_all(self.db.reads()),
            )
            .context("cannot read the shared CA from the database")?;
        let count = rows.len();
        for (path, content, seq) in rows {
            self.apply(&path, content)
                .with_context(|| format!("cannot bring DATA/ca/{path} up to date"))?;
            *seen = seq;
        }
        Ok(count)
    }

    fn apply(&self, rel: &str, content: Option<Vec<u8>>) -> anyhow::Result<()> {
        let path = self.dir.join(checked(rel)?);
        let Some(content) = content else {
            match fs_err::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => return Ok(()),
            }
        };
        let bytes = if SEALED.contains(&rel) {
            self.open(&content)?
        } else {
            content
        };
        if IDENTITY.contains(&rel)
            && let Ok(local) = fs_err::read(&path)
            && local != bytes
        {
            bail!(
                "{} belongs to another CA than the one the servers share in the database\nhint: this data directory had a CA of its own; move {} away to join the others (what it signed must enroll again), or point this server at its own database",
                path.display(),
                self.dir.display()
            );
        }
        write_private(&path, &bytes)
    }

    /// Writes `path`'s row (its content, or that it is gone) and tells the
    /// other servers; under the lock.
    pub fn push(&self, _lock: &ReplicaLock, path: &Path) -> anyhow::Result<()> {
        let rel = path
            .strip_prefix(&self.dir)
            .ok()
            .and_then(Path::to_str)
            .with_context(|| format!("{} is not in {}", path.display(), self.dir.display()))?;
        let rel = checked(rel)?.to_owned();
        let content = match fs_err::read(path) {
            Ok(bytes) if SEALED.contains(&rel.as_str()) => Some(self.seal(&bytes)?),
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let seq: i64 = self
            .runtime
            .block_on(async {
                let seq = sqlx::query_scalar(
                    "INSERT INTO ca_files (path, content, seq) VALUES ($1, $2, nextval('ca_files_seq'))
                     ON CONFLICT (path) DO UPDATE SET content = excluded.content, seq = excluded.seq
                     RETURNING seq",
                )
                .bind(&rel)
                .bind(content)
                .fetch_one(self.db.reads())
                .await?;
                crate::cluster::notify::announce(
                    &self.db,
                    &self.sender,
                    crate::cluster::notify::Event::Ca,
                )
                .await?;
                Ok::<i64, anyhow::Error>(seq)
            })
            .with_context(|| format!("cannot store DATA/ca/{rel} in the database"))?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        *seen = (*seen).max(seq);
        Ok(())
    }

    /// Whether the database holds a CA yet.
    pub fn holds_a_ca(&self) -> anyhow::Result<bool> {
        Ok(self.runtime.block_on(holds_a_ca(&self.db))?)
    }

    /// Stores every shared file of the copy: the first server on a
    /// database brings the CA it has (or has just made).
    pub fn seed(&self, lock: &ReplicaLock) -> anyhow::Result<usize> {
        let mut files = Vec::new();
        collect_files(&self.dir, &mut files)?;
        let mut count = 0;
        for path in files {
            let rel = path.strip_prefix(&self.dir)?.to_string_lossy().into_owned();
            if checked(&rel).is_ok() {
                self.push(lock, &path)?;
                count += 1;
            }
        }
        tracing::info!(
            files = count,
            "stored this server's CA in the database for the others"
        );
        Ok(count)
    }

    fn seal(&self, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(SEAL_MAGIC),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        Ok([SEAL_MAGIC, &nonce, &sealed].concat())
    }

    fn open(&self, row: &[u8]) -> anyhow::Result<Vec<u8>> {
        let body = row
            .strip_prefix(SEAL_MAGIC)
            .context("the row is not sealed as drover seals keys")?;
        if body.len() < NONCE_LEN {
            bail!("the sealed row is too short");
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| anyhow::anyhow!("the sealed row's nonce is malformed"))?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(SEAL_MAGIC), &mut buf)
            .map_err(|_| {
                anyhow::anyhow!(
                    "the key in the database was sealed with another cluster secret than this server's\nhint: copy the cluster secret file of the first server to this one (cluster_secret_file)"
                )
            })?;
        Ok(plain.to_vec())
    }
}

async fn holds_a_ca(db: &Db) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM ca_files WHERE path = 'ca.crt.pem' AND content IS NOT NULL",
    )
    .fetch_optional(db.reads())
    .await?;
    Ok(found.is_some())
}

/// `rel` if it names a shared file of `DATA/ca`: relative, no `..`, not a
/// temporary file, not one of a server's own.
fn checked(rel: &str) -> anyhow::Result<&str> {
    let path = Path::new(rel);
    let plain = path
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !plain || rel.is_empty() || LOCAL_ONLY.contains(&rel) || name.starts_with('.') {
        bail!("`{rel}` is not a shared file of the CA");
    }
    Ok(rel)
}

fn collect_files(dir: &Path, into: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(&entry.path(), into)?;
        } else if kind.is_file() {
            into.push(entry.path());
        }
    }
    Ok(())
}

/// The sealing key: the sha256 of the cluster secret file's content. When
/// the file is missing it is made (32 random bytes, base64, mode 0600) if
/// `create` (no CA in the database yet), else refused.
fn cluster_key(secret_file: &Path, create: bool) -> anyhow::Result<LessSafeKey> {
    if !secret_file.exists() {
        if !create {
            bail!(
                "the CA the servers share is sealed with the cluster secret, and {} is missing\nhint: copy that file from a server already running on this database (it is made by the first one)",
                secret_file.display()
            );
        }
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(bytes) + "\n";
        write_private(secret_file, text.as_bytes())?;
        tracing::info!(file = %secret_file.display(), "created the cluster secret: every server of this database needs a copy");
    }
    let secret = fs_err::read(secret_file)?;
    let trimmed = secret.trim_ascii();
    if trimmed.len() < 16 {
        bail!(
            "the cluster secret in {} is too short (at least 16 bytes)",
            secret_file.display()
        );
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, trimmed);
    let key = UnboundKey::new(&AES_256_GCM, digest.as_ref())
        .map_err(|_| anyhow::anyhow!("cannot make the sealing key"))?;
    Ok(LessSafeKey::new(key))
}

#[cfg(test)]
mod tests {
    use super::checked;

    #[test]
    fn only_shared_files_of_the_ca_have_rows() {
        for ok in [
            "ca.crt.pem",
            "pending/web-1.json",
            "certs/nodes/web-1/ab.pem",
        ] {
            assert_eq!(checked(ok).unwrap(), ok);
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "certs/../../x",
            "lock",
            "server.key.pem",
            "pending/.web-1.json.tmp-12",
        ] {
            assert!(checked(bad).is_err(), "{bad}");
        }
    }
}
