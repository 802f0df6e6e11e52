//! The agent's state directory: the last catalog applied (signed), the
//! report spool, backups of replaced files, and the last run summary (the
//! node's identity is in STATE/tls, see [`crate::identity`]). Every write is
//! atomic.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use drover_catalog::report::{FileChecks, ResourceCounts, RunStatus};
use drover_catalog::signed::{self, SignatureError, VerifyingKey};
use drover_catalog::{Catalog, Report};
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, write_state_file};

#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub(crate) fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the state directory (0700) or checks an existing one: it
    /// holds the node's key, cached catalogs with their secrets and backups
    /// of replaced files. One that other users can read (systemd's
    /// `StateDirectory=` makes it 0755 unless told otherwise) is tightened
    /// to 0700, and so are `content/`, `backups/` and `spool/`, with a
    /// warning; one owned by another user is refused.
    pub(crate) fn prepare(&self) -> Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        fsutil::create_private_dir_all(&self.root).context("cannot create the state directory")?;
        let me = nix::unistd::geteuid().as_raw();
        for dir in [
            self.root.clone(),
            self.root.join("content"),
            self.backups(),
            self.spool_dir(),
        ] {
            let md = match fs_err::metadata(&dir) {
                Ok(md) => md,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            if md.uid() != me {
                anyhow::bail!(
                    "the state directory {} is owned by uid {}, not by the agent (uid {me})\nhint: chown -R it to the agent's user, and mode 0700",
                    dir.display(),
                    md.uid()
                );
            }
            if md.mode() & 0o077 != 0 {
                fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
                crate::output::warning(&format!(
                    "{} was readable by other users (mode {:04o}); tightened to 0700\nhint: set StateDirectoryMode=0700 in the agent's unit",
                    dir.display(),
                    md.mode() & 0o7777
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn backups(&self) -> PathBuf {
        self.root.join("backups")
    }

    /// STATE/content: the contents the cached catalog references.
    pub(crate) fn content_store(&self) -> crate::contents::ContentStore {
        crate::contents::ContentStore::new(self.root.join("content"))
    }

    /// STATE/catalog.signed: the last catalog applied, in its signed envelope.
    pub(crate) fn catalog_path(&self) -> PathBuf {
        self.root.join("catalog.signed")
    }

    fn spool_dir(&self) -> PathBuf {
        self.root.join("spool")
    }

    /// The last catalog applied, verified with `key` before it is parsed.
    /// `Ok(None)`: there is none; `Err`: there is one, but it must not be
    /// used (changed after it was signed, or unreadable).
    pub(crate) fn cached_catalog(&self, key: &VerifyingKey) -> Result<Option<Catalog>> {
        let path = self.catalog_path();
        let envelope = match fs_err::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("cannot read the cached catalog"),
        };
        let body = signed::open(key, &envelope).map_err(|e| {
            let why = match e {
                SignatureError::Mismatch => {
                    "was changed after the server signed it; refusing to apply it".to_owned()
                }
                other => {
                    format!("is not a catalog the server signed ({other}); refusing to apply it")
                }
            };
            anyhow!(
                "the cached catalog {} {why}\nhint: the next catalog from the server replaces it",
                path.display()
            )
        })?;
        serde_json::from_slice(body)
            .map(Some)
            .with_context(|| format!("the cached catalog {} is not a catalog", path.display()))
    }

    /// Keeps the exact bytes the server signed, with their signature.
    pub(crate) fn store_catalog(&self, body: &[u8], signature: &str) -> Result<()> {
        write_state_file(&self.catalog_path(), &signed::seal(body, signature))
    }

    /// Queues a report that could not be posted. Names sort in spooling order.
    pub(crate) fn spool(&self, report: &Report) -> Result<PathBuf> {
        let nanos = jiff::Timestamp::now().as_nanosecond();
        let path = self
            .spool_dir()
            .join(format!("{nanos:024}-{}.json", report.run_id));
        let json = serde_json::to_vec(report).context("cannot serialize the report")?;
        write_state_file(&path, &json)?;
        Ok(path)
    }

    /// Spooled reports, oldest first.
    pub(crate) fn spooled(&self) -> Result<Vec<PathBuf>> {
        let dir = self.spool_dir();
        let entries = match fs_err::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let is_report = path.extension().is_some_and(|e| e == "json")
                && path
                    .file_name()
                    .is_some_and(|n| !n.to_string_lossy().starts_with('.'));
            if is_report && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        Ok(paths)
    }

    pub(crate) fn unspool(&self, path: &Path) -> Result<()> {
        fs_err::remove_file(path)?;
        fsutil::sync_parent(path)
    }

    /// Moves a report the server refused as malformed aside, so it never blocks the queue.
    pub(crate) fn reject(&self, path: &Path) -> Result<PathBuf> {
        let dir = self.spool_dir().join("rejected");
        fsutil::create_private_dir_all(&dir)?;
        let target = dir.join(
            path.file_name()
                .context("spooled report has no file name")?,
        );
        fs_err::rename(path, &target)?;
        fsutil::sync_parent(path)?;
        Ok(target)
    }

    pub(crate) fn write_last_run(&self, summary: &LastRun) -> Result<()> {
        let json =
            serde_json::to_vec_pretty(summary).context("cannot serialize the run summary")?;
        write_state_file(&self.root.join("last_run.json"), &json)
    }
}

/// STATE/last_run.json: what monitoring checks without asking the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LastRun {
    pub run_id: String,
    pub node: String,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub status: RunStatus,
    pub noop: bool,
    pub catalog_version: String,
    pub cached_catalog: bool,
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub durations_ms: Durations,
    pub resources: ResourceCounts,
    /// Files hashed or vouched for by the metadata cache, and whether the
    /// run was a full verification (absent in older files).
    #[serde(default)]
    pub files: FileChecks,
}

/// The report's metrics in ms, under the names this file has always had.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Durations {
    /// Gathering facts (added with the run metrics; 0 in older files).
    #[serde(default)]
    pub facts: f64,
    /// Fetching the catalog and its file contents (loading or compiling it for a local apply).
    pub catalog: f64,
    pub apply: f64,
    pub total: f64,
}

impl LastRun {
    pub(crate) fn of(report: &Report) -> LastRun {
        let m = &report.metrics;
        LastRun {
            run_id: report.run_id.clone(),
            node: report.node.clone(),
            started_at: report.started_at,
            finished_at: report.finished_at,
            status: report.status,
            noop: report.noop,
            catalog_version: report.catalog_version.clone(),
            cached_catalog: report.cached_catalog
                == drover_catalog::report::CachedCatalog::OnFailure,
            exit_code: report.exit_code(),
            error: report.error.clone(),
            durations_ms: Durations {
                facts: m.facts_ms,
                catalog: m.catalog_ms,
                apply: m.apply_ms,
                total: m.duration_ms,
            },
            resources: m.resources,
            files: m.files,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::report;

    #[test]
    fn spool_keeps_order_and_rejects_aside() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert!(state.spooled().unwrap().is_empty());
        // run ids that sort the other way round: order comes from spool time.
        let first = state.spool(&report("zzz")).unwrap();
        let second = state.spool(&report("aaa")).unwrap();
        assert_eq!(
            state.spooled().unwrap(),
            vec![first.clone(), second.clone()]
        );
        let rejected = state.reject(&first).unwrap();
        assert!(rejected.exists());
        assert_eq!(state.spooled().unwrap(), vec![second.clone()]);
        state.unspool(&second).unwrap();
        assert!(state.spooled().unwrap().is_empty());
    }

    #[test]
    fn the_cached_catalog_is_verified_before_every_use() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let server =
            signed::SigningKey::from_pkcs8(&signed::SigningKey::generate_pkcs8().unwrap()).unwrap();
        let key = server.public_key();
        assert!(state.cached_catalog(&key).unwrap().is_none());
        let catalog = Catalog {
            node: "n".into(),
            environment: "e".into(),
            commit: "c".into(),
            version: Catalog::compute_version(&[]),
            resources: vec![],
            contents: Default::default(),
        };
        let body = serde_json::to_vec(&catalog).unwrap();
        state.store_catalog(&body, &server.sign(&body)).unwrap();
        assert_eq!(state.cached_catalog(&key).unwrap(), Some(catalog));

        let path = dir.path().join("catalog.signed");
        let mut tampered = fs_err::read(&path).unwrap();
        let last = tampered.len() - 2;
        tampered[last] ^= 1;
        fs_err::write(&path, &tampered).unwrap();
        let err = format!("{:#}", state.cached_catalog(&key).unwrap_err());
        assert!(
            err.contains(
                "catalog.signed was changed after the server signed it; refusing to apply it"
            ),
            "{err}"
        );

        fs_err::write(&path, &body).unwrap();
        let err = format!("{:#}", state.cached_catalog(&key).unwrap_err());
        assert!(err.contains("is not a catalog the server signed"), "{err}");

        let other =
            signed::SigningKey::from_pkcs8(&signed::SigningKey::generate_pkcs8().unwrap()).unwrap();
        state.store_catalog(&body, &other.sign(&body)).unwrap();
        assert!(state.cached_catalog(&key).is_err(), "signed by another key");
    }

    #[test]
    fn state_dirs_are_private_when_made_and_tightened_when_found_open() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = |p: &Path| fs_err::metadata(p).unwrap().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        // Made by the agent: the state dir, and what its writes create in it.
        let state = StateDir::new(dir.path().join("made/state"));
        state.prepare().unwrap();
        assert_eq!(mode(state.root()), 0o700);
        state
            .content_store()
            .sync_with(&Catalog {
                node: "n".into(),
                environment: "e".into(),
                commit: "c".into(),
                version: Catalog::compute_version(&[]),
                resources: vec![],
                contents: Default::default(),
            })
            .unwrap();
        fsutil::write_unsynced(&state.root().join("content/x"), b"x").unwrap();
        fsutil::write_state_file(&state.backups().join("sha"), b"old").unwrap();
        state.spool(&report("r")).unwrap();
        for sub in ["content", "backups", "spool"] {
            assert_eq!(mode(&state.root().join(sub)), 0o700, "{sub}");
        }
        // Made 0755 by someone else (systemd's default): tightened at start.
        let open = StateDir::new(dir.path().join("open"));
        for sub in ["", "content", "backups"] {
            let p = open.root().join(sub);
            fs_err::create_dir_all(&p).unwrap();
            fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        open.prepare().unwrap();
        for sub in ["", "content", "backups"] {
            assert_eq!(mode(&open.root().join(sub)), 0o700, "{sub}");
        }
    }

    #[test]
    fn last_run_takes_the_report_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let mut report = report("r");
        report.metrics.duration_ms = 40.0;
        report.metrics.apply_ms = 30.0;
        report.metrics.resources.changed = 2;
        report.metrics.resources.total = 2;
        let summary = LastRun::of(&report);
        state.write_last_run(&summary).unwrap();
        let json = fs_err::read(dir.path().join("last_run.json")).unwrap();
        let back: LastRun = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, summary);
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json["durations_ms"]["total"], 40.0);
        assert_eq!(json["durations_ms"]["apply"], 30.0);
        assert_eq!(json["resources"]["changed"], 2);
        assert_eq!(json["exit_code"], 0);
    }
}
