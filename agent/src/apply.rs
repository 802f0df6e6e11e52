//! `drover-agent apply PATH`: masterless convergence from a compiled catalog
//! file or a catalog repository directory; no server, no report posting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, anyhow, bail};
use drover_catalog::report::CachedCatalog;
use drover_catalog::{Catalog, CompileRequest, Facts, RepoFiles, Report, Repository};

use crate::config::Settings;
use crate::engine::{self, EngineConfig};
use crate::filecache::Loading;
use crate::lock::RunLock;
use crate::metrics::{Phase, RunClock, Sample};
use crate::resources::ContentSource;
use crate::run::build_report_of_run;
use crate::state::{LastRun, StateDir};

/// Contents by sha256: the ones the catalog embeds (verified when loaded),
/// else `DIR/SHA256` of `--contents-dir`, read only when a file needs it (the
/// engine verifies what it fetches before writing it).
#[derive(Debug, Default)]
pub(crate) struct LocalContents {
    pub embedded: BTreeMap<String, Arc<[u8]>>,
    pub dir: Option<PathBuf>,
}

impl LocalContents {
    pub(crate) fn embedded(embedded: BTreeMap<String, Arc<[u8]>>) -> LocalContents {
        LocalContents {
            embedded,
            dir: None,
        }
    }
}

impl ContentSource for LocalContents {
    fn fetch(&self, sha256: &str) -> Result<Arc<[u8]>> {
        if let Some(bytes) = self.embedded.get(sha256) {
            return Ok(bytes.clone());
        }
        let Some(dir) = &self.dir else {
            bail!(
                "the catalog references content {sha256} but does not embed it\nhint: compile with `--contents-dir DIR` and pass the same `--contents-dir DIR` to apply"
            );
        };
        if drover_catalog::sha::Sha256::parse(sha256).is_none() {
            bail!("the catalog references content `{sha256}`, which is not a sha256");
        }
        let path = dir.join(sha256);
        let bytes = fs_err::read(&path).with_context(|| {
            format!(
                "content {sha256} is not in {}\nhint: compile the catalog again with `--contents-dir {}`",
                dir.display(),
                dir.display()
            )
        })?;
        Ok(Arc::from(bytes))
    }
}

/// What `apply` converges from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    /// A compiled catalog JSON file or a catalog repository directory.
    pub path: &'a Path,
    /// Facts to compile a repository directory with (else this node's).
    pub facts: Option<&'a Path>,
    /// Where the contents of a catalog compiled with `--contents-dir` are.
    pub contents_dir: Option<&'a Path>,
}

/// Converges from PATH; returns the detailed exit code. `Err` = the run
/// could not happen. Once the lock is held, the run leaves its metrics
/// textfile either way.
pub(crate) fn apply(source: Source<'_>, settings: &Settings, stop: &AtomicBool) -> Result<i32> {
    let mut clock = RunClock::start();
    let _lock = RunLock::acquire_within(&settings.lock_file, settings.wait_for_lock)?;
    let result = converge(source, settings, stop, &mut clock);
    let sample = match &result {
        Ok(report) => Sample::of_report(report),
        Err(_) => Sample::could_not_run(&clock, settings.noop),
    };
    crate::metrics::record(settings, &sample);
    result.map(|report| report.exit_code())
}

fn converge(
    source: Source<'_>,
    settings: &Settings,
    stop: &AtomicBool,
    clock: &mut RunClock,
) -> Result<Report> {
    let filecache = Loading::start(&settings.state_dir, settings.verify_interval);
    let (catalog, mut contents) = if fs_err::metadata(source.path)?.is_dir() {
        let facts = clock.time(Phase::Facts, || {
            load_facts(source.facts, &settings.facts_dir)
        })?;
        clock.time(Phase::Catalog, || {
            compile_repository(source.path, &settings.node, &facts)
        })?
    } else {
        clock.time(Phase::Catalog, || load_compiled(source.path))?
    };
    contents.dir = source.contents_dir.map(Path::to_path_buf);
    let state = StateDir::new(&settings.state_dir);
    state.prepare()?;
    let started = clock.started();
    let selected = match settings.tags.is_empty() {
        true => None,
        false => Some(crate::tags::select(&catalog, &settings.tags)?),
    };
    let applied = clock.time(Phase::Apply, || {
        engine::apply(
            selected.as_ref().unwrap_or(&catalog),
            &EngineConfig::new(
                settings,
                state.backups(),
                &contents,
                stop,
                started,
                filecache,
            ),
        )
    });
    let report = build_report_of_run(
        uuid::Uuid::new_v4().to_string(),
        &catalog,
        settings.noop,
        clock,
        applied,
        CachedCatalog::NotUsed,
        None,
    );
    let report = Report {
        tags: settings.tags.clone(),
        ..report
    };
    if let Err(e) = state.write_last_run(&LastRun::of(&report)) {
        crate::output::warning(&format!("cannot write the run summary: {e:#}"));
    }
    crate::output::print_summary(&report, clock.started().elapsed());
    Ok(report)
}

/// A compiled catalog JSON file with its `contents` embedded (sha256 -> base64).
pub(crate) fn load_compiled(path: &Path) -> Result<(Catalog, LocalContents)> {
    let bytes = fs_err::read(path)?;
    let mut catalog: Catalog = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a compiled catalog", path.display()))?;
    drop(bytes);
    let contents = catalog
        .take_embedded_contents()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?
        .into_iter()
        .map(|(sha, bytes)| (sha, Arc::from(bytes)))
        .collect();
    Ok((catalog, LocalContents::embedded(contents)))
}

/// Facts from `--facts FILE`, else this node's gathered ones (with the
/// external ones of `facts_dir`).
fn load_facts(facts_file: Option<&Path>, facts_dir: &Path) -> Result<Facts> {
    match facts_file {
        Some(file) => serde_json::from_slice(&fs_err::read(file)?)
            .with_context(|| format!("{} is not a JSON object of facts", file.display())),
        None => crate::facts::gather_with(facts_dir),
    }
}

/// Compiles a catalog repository directory for `node`.
pub(crate) fn compile_repository(
    dir: &Path,
    node: &str,
    facts: &Facts,
) -> Result<(Catalog, LocalContents)> {
    let files = read_repository(dir)?;
    let repo = Repository::parse(files)
        .map_err(|d| anyhow!("{d}"))
        .with_context(|| format!("the repository {} does not parse", dir.display()))?;
    let compiled = repo
        .compile(&CompileRequest {
            node,
            facts,
            environment: "production",
            commit: "local",
        })
        .map_err(|d| anyhow!("{d}"))
        .with_context(|| format!("the catalog of node `{node}` does not compile"))?;
    Ok((compiled.catalog, LocalContents::embedded(compiled.contents)))
}

/// Every file under `dir` except `.git/`, keyed by `/`-separated relative path.
/// Symlinks are refused, never followed: the repository must not reach outside itself.
pub(crate) fn read_repository(dir: &Path) -> Result<RepoFiles> {
    let mut files = RepoFiles::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in fs_err::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                bail!(
                    "refusing to read symlink {} in the repository\nhint: copy the file instead of linking it",
                    path.display()
                );
            }
            if kind.is_dir() {
                if entry.file_name() != ".git" {
                    pending.push(path);
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let relative = path.strip_prefix(dir).expect("walk stays under dir");
            let key = relative
                .to_str()
                .ok_or_else(|| anyhow!("{} has a non-UTF-8 name", path.display()))?
                .to_owned();
            files.insert(key, fs_err::read(&path)?.into());
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use drover_catalog::sha256_hex;

    use super::*;

    #[test]
    fn repository_walk_skips_git_and_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join(".git/objects")).unwrap();
        fs_err::create_dir_all(dir.path().join("roles")).unwrap();
        fs_err::write(dir.path().join(".git/HEAD"), "x").unwrap();
        fs_err::write(dir.path().join("nodes.toml"), "").unwrap();
        fs_err::write(dir.path().join("roles/base.toml"), "").unwrap();
        let files = read_repository(dir.path()).unwrap();
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["nodes.toml", "roles/base.toml"]
        );
        fs_err::os::unix::fs::symlink("/etc/passwd", dir.path().join("roles/evil.toml")).unwrap();
        let err = read_repository(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("refusing to read symlink"),
            "{err}"
        );
    }

    #[test]
    fn compiled_catalog_contents_are_verified() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let good = sha256_hex(b"hi");
        let json = |sha: &str| {
            format!(
                r#"{{"node":"n","environment":"e","commit":"c","version":"v","resources":[],"contents":{{"{sha}":"aGk="}}}}"#
            )
        };
        fs_err::write(&path, json(&good)).unwrap();
        let (_, contents) = load_compiled(&path).unwrap();
        assert_eq!(&*contents.fetch(&good).unwrap(), b"hi");
        fs_err::write(&path, json(&sha256_hex(b"other"))).unwrap();
        assert!(
            load_compiled(&path)
                .unwrap_err()
                .to_string()
                .contains("has sha256")
        );
    }
}
