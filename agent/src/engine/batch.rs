//! The run's pending file writes: files converged one after another are
//! staged (temp file written, not yet durable, target untouched), then made
//! durable together and put in place, and only then reported as changed.
//!
//! Order of a flush, each step only after the one before succeeded:
//! 1. the content of every staged temp (files and backups) is durable:
//!    fsynced, up to 16 at once (see `fsutil::sync_staged`);
//! 2. the backups are renamed into STATE/backups and that directory is
//!    fsynced, so no replaced content is lost once a file is replaced;
//! 3. the files are renamed over their paths, in catalog order;
//! 4. each directory that got a rename is fsynced once;
//! 5. their resources are reported changed (or failed, naming the step).
//!
//! A run killed anywhere leaves each managed path with its old content or
//! its new one, plus `.drover-*` temps that the next run sweeps. What comes
//! after a staged file in the walk and could see it (any other kind of
//! resource, a file with a `validate` command, one that requires or
//! subscribes to a pending file, or lies below one) waits for a flush.

use std::collections::HashSet;
use std::path::Path;

use drover_catalog::report::{ResourceReport, ResourceStatus};
use drover_catalog::{Resource, ResourceId, Spec};

use crate::fsutil;
use crate::resources::StagedWrite;

/// A changed file whose write is staged: its report waits for the flush.
#[derive(Debug)]
pub(super) struct Pending {
    /// The resource's index in the catalog.
    pub index: usize,
    pub report: ResourceReport,
    write: StagedWrite,
}

#[derive(Debug, Default)]
pub(super) struct Batch {
    pending: Vec<Pending>,
    ids: HashSet<ResourceId>,
    targets: HashSet<String>,
}

impl Batch {
    pub(super) fn push(&mut self, index: usize, report: ResourceReport, write: StagedWrite) {
        self.ids.insert(report.id.clone());
        self.targets
            .insert(write.file.target.to_string_lossy().into_owned());
        self.pending.push(Pending {
            index,
            report,
            write,
        });
    }

    /// Whether converging `resource` could observe a pending write, so the
    /// batch must be flushed first.
    pub(super) fn must_flush_before(&self, resource: &Resource) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let Spec::File(spec) = &resource.spec else {
            return true;
        };
        spec.validate.is_some()
            || (resource.meta.require.iter())
                .chain(&resource.meta.subscribe)
                .any(|id| self.ids.contains(id))
            || Path::new(&spec.path)
                .ancestors()
                .skip(1)
                .any(|a| a.to_str().is_some_and(|a| self.targets.contains(a)))
    }

    /// Makes every pending write durable and puts it in place (see the
    /// module comment); returns their final reports in catalog order.
    pub(super) fn flush(&mut self) -> Vec<(usize, ResourceReport)> {
        self.ids.clear();
        self.targets.clear();
        let mut pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Vec::new();
        }
        let temps: Vec<_> = pending
            .iter()
            .flat_map(|p| p.write.backup.iter().chain([&p.write.file]))
            .collect();
        if let Err(e) = fsutil::sync_staged(&temps) {
            let why = format!("cannot make the new content durable: {e:#}");
            for p in &mut pending {
                fail(&mut p.report, &why);
            }
            return finish(pending);
        }
        // Backups first, durably: a replaced file's old content is never lost.
        for p in &mut pending {
            if let Some(backup) = &p.write.backup
                && let Err(e) = backup.rename()
            {
                fail(&mut p.report, &format!("cannot keep the backup: {e:#}"));
            }
        }
        let backups = pending
            .iter()
            .filter(|p| p.report.status == ResourceStatus::Changed)
            .filter_map(|p| p.write.backup.as_ref().map(|b| b.target.as_path()));
        if let Some((dir, e)) = fsutil::sync_dirs(backups).into_iter().next() {
            // One backup directory: its failure covers every backup.
            let why = format!(
                "cannot make the backups in {} durable: {e:#}",
                dir.display()
            );
            for p in pending.iter_mut().filter(|p| p.write.backup.is_some()) {
                fail(&mut p.report, &why);
            }
        }
        for p in &mut pending {
            if p.report.status == ResourceStatus::Changed
                && let Err(e) = p.write.file.rename()
            {
                fail(&mut p.report, &format!("{e:#}"));
            }
        }
        let renamed: Vec<_> = pending
            .iter()
            .filter(|p| p.report.status == ResourceStatus::Changed)
            .map(|p| p.write.file.target.as_path())
            .collect();
        for (dir, e) in fsutil::sync_dirs(renamed) {
            // The rename may not survive a crash: not a change to count.
            let why = format!(
                "cannot make the renames in {} durable: {e:#}",
                dir.display()
            );
            for p in pending.iter_mut().filter(|p| {
                p.report.status == ResourceStatus::Changed
                    && p.write.file.target.parent() == Some(dir.as_path())
            }) {
                fail(&mut p.report, &why);
            }
        }
        finish(pending)
    }
}

/// The final reports; the temps of the writes that did not go in place are
/// removed (a temp already renamed is gone: removing its name is harmless).
fn finish(pending: Vec<Pending>) -> Vec<(usize, ResourceReport)> {
    pending
        .into_iter()
        .map(|p| {
            if p.report.status == ResourceStatus::Failed {
                p.write.discard();
            }
            (p.index, p.report)
        })
        .collect()
}

/// A failed resource reports its error, not the events it did not make.
fn fail(report: &mut ResourceReport, why: &str) {
    if report.status == ResourceStatus::Failed {
        return;
    }
    report.status = ResourceStatus::Failed;
    report.events.clear();
    report.diff = None;
    report.error = Some(why.to_owned());
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use drover_catalog::model::FileSpec;
    use drover_catalog::sha256_hex;

    use super::super::tests::{catalog, config};
    use super::*;
    use crate::resources::testing::MapSource;

    fn file(path: &Path, content: &[u8]) -> Resource {
        let path = path.to_string_lossy();
        Resource::new(Spec::File(FileSpec::with_content(&path, content)))
    }

    fn temps(dir: &Path) -> Vec<String> {
        fs_err::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(fsutil::TEMP_PREFIX))
            .collect()
    }

    #[test]
    fn a_staged_file_is_invisible_until_the_flush_puts_it_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs_err::write(&a, b"old a\n").unwrap();
        let source = MapSource::with(&[b"new a\n", b"new b\n"]);
        let mut env =
            crate::resources::Env::new(&source, dir.path().join("bk"), Default::default());
        env.stage_writes = true;
        let mut batch = Batch::default();
        for (index, (path, content)) in [(&a, b"new a\n"), (&b, b"new b\n")].into_iter().enumerate()
        {
            let resource = file(path, content);
            let Spec::File(spec) = &resource.spec else {
                unreachable!()
            };
            let out = crate::resources::file::converge(spec, &mut env, Default::default()).unwrap();
            assert!(out.changed());
            let mut report = ResourceReport::new(resource.id.clone(), ResourceStatus::Changed);
            report.events = out.events;
            batch.push(
                index,
                report,
                env.staged.take().expect("the write was staged"),
            );
        }
        // Written, not in place: a crash now leaves the old file (and temps to sweep).
        assert_eq!(fs_err::read(&a).unwrap(), b"old a\n");
        assert!(!b.exists());
        assert_eq!(temps(dir.path()).len(), 2);
        let backup = dir.path().join("bk").join(sha256_hex(b"old a\n"));
        assert!(!backup.exists(), "the backup is staged too");

        let reports = batch.flush();
        assert_eq!(reports.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1]);
        assert!(
            reports
                .iter()
                .all(|(_, r)| r.status == ResourceStatus::Changed)
        );
        assert_eq!(fs_err::read(&a).unwrap(), b"new a\n");
        assert_eq!(fs_err::read(&b).unwrap(), b"new b\n");
        assert_eq!(fs_err::read(&backup).unwrap(), b"old a\n");
        assert!(temps(dir.path()).is_empty());
    }

    #[test]
    fn a_write_that_cannot_go_in_place_fails_alone_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let resources = [file(&a, b"a\n"), file(&b, b"b\n")];
        let mut batch = Batch::default();
        for (index, r) in resources.iter().enumerate() {
            let Spec::File(spec) = &r.spec else {
                unreachable!()
            };
            let new = fsutil::NewFile {
                content: spec.path.as_bytes(),
                mode: 0o644,
                uid: None,
                gid: None,
                validate: None,
                quiet: false,
            };
            let staged = fsutil::stage(Path::new(&spec.path), new).unwrap();
            let write = StagedWrite {
                backup: None,
                file: staged,
            };
            batch.push(
                index,
                ResourceReport::new(r.id.clone(), ResourceStatus::Changed),
                write,
            );
        }
        // Something took `a`'s place meanwhile: a non-empty directory.
        fs_err::create_dir_all(a.join("x")).unwrap();
        let reports = batch.flush();
        assert_eq!(reports[0].1.status, ResourceStatus::Failed);
        assert!(reports[0].1.events.is_empty());
        assert!(reports[0].1.error.is_some());
        assert_eq!(reports[1].1.status, ResourceStatus::Changed);
        assert!(b.is_file() && a.is_dir());
        assert!(temps(dir.path()).is_empty(), "{:?}", temps(dir.path()));
    }

    #[test]
    fn what_could_see_a_pending_file_flushes_the_batch_first() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let mut batch = Batch::default();
        let plain = file(&dir.path().join("other"), b"x");
        assert!(!batch.must_flush_before(&plain), "nothing pending");
        let staged = fsutil::stage(
            &a,
            fsutil::NewFile {
                content: b"a",
                mode: 0o644,
                uid: None,
                gid: None,
                validate: None,
                quiet: false,
            },
        )
        .unwrap();
        let id = file(&a, b"a").id;
        batch.push(
            0,
            ResourceReport::new(id.clone(), ResourceStatus::Changed),
            StagedWrite {
                backup: None,
                file: staged,
            },
        );
        assert!(!batch.must_flush_before(&plain));
        let mut requires = plain.clone();
        requires.meta.require = vec![id.clone()];
        let mut subscribes = plain.clone();
        subscribes.meta.subscribe = vec![id];
        let mut validated = plain.clone();
        if let Spec::File(f) = &mut validated.spec {
            f.validate = Some("true".into());
        }
        let below = file(&a.join("x"), b"x");
        let exec: Resource =
            serde_json::from_str(r#"{"id":"exec:x","kind":"exec","name":"x","command":["true"]}"#)
                .unwrap();
        for r in [requires, subscribes, validated, below, exec] {
            assert!(batch.must_flush_before(&r), "{}", r.id);
        }
        batch.flush();
        assert_eq!(fs_err::read(&a).unwrap(), b"a");
    }

    #[test]
    fn the_engine_puts_files_in_place_before_what_comes_after_them_runs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display();
        let a = dir.path().join("a");
        let exec: Resource = serde_json::from_str(&format!(
            r#"{{"id":"exec:check","kind":"exec","name":"check","command":"grep -q new {root}/a && grep -q new {root}/b && touch {root}/seen"}}"#
        ))
        .unwrap();
        let resources = vec![
            file(&a, b"new a\n"),
            file(&dir.path().join("b"), b"new b\n"),
            exec,
        ];
        let source = MapSource::with(&[b"new a\n", b"new b\n"]);
        let stop = AtomicBool::new(false);
        let applied = crate::engine::apply(&catalog(resources), &config(&source, &stop, None));
        let status: Vec<_> = applied.resources.iter().map(|r| r.status).collect();
        assert_eq!(
            status,
            [ResourceStatus::Changed; 3],
            "{:?}",
            applied.resources
        );
        assert!(dir.path().join("seen").exists(), "the exec saw both files");
        assert!(temps(dir.path()).is_empty());
    }
}
