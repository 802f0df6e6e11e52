//! `directory`: existence, mode, owner, group, and optional purge of unmanaged entries.

use std::fs::Metadata;
use std::path::Path;

use anyhow::{Result, bail};
use drover_catalog::model::{DirectorySpec, Ensure};

use super::{
    Env, Flags, Outcome, WantMeta, describe_type, event, observe_anchored, require_parent,
};
use crate::fsutil;
use crate::safepath::{self, Anchored};

const DEFAULT_MODE: u32 = 0o755;

pub(crate) fn converge(spec: &DirectorySpec, env: &mut Env<'_>, flags: Flags) -> Result<Outcome> {
    // Every read and write below goes through the parent reached here.
    let anchored = env.anchors.anchor(Path::new(&spec.path))?;
    let current = observe_anchored(&anchored)?;
    match spec.ensure {
        Ensure::Absent => absent(spec, anchored.path(), current, flags),
        Ensure::Present => present(spec, &anchored, current, env, flags),
    }
}

fn present(
    spec: &DirectorySpec,
    anchored: &Anchored,
    current: Option<Metadata>,
    env: &mut Env<'_>,
    flags: Flags,
) -> Result<Outcome> {
    let path = anchored.path();
    let want = WantMeta::resolve(
        &mut env.names,
        spec.mode,
        spec.owner.as_deref(),
        spec.group.as_deref(),
    )?;
    let mut out = Outcome::default();
    match current {
        Some(md) if md.is_dir() => {
            want.events(&mut env.names, Some(&md), &mut out.events);
            if out.changed() && !flags.noop {
                want.apply(path, &md)?;
            }
            if spec.purge {
                purge(spec, path, env, flags, &mut out)?;
            }
        }
        Some(md) => bail!(
            "{} exists and is a {}, not a directory\nhint: remove it, or manage it with a {} resource",
            spec.path,
            describe_type(&md),
            describe_type(&md)
        ),
        None => {
            require_parent(anchored, Path::new(&spec.path), env, flags)?;
            out.events
                .push(event("ensure", None, Some("present".into())));
            want.events(&mut env.names, None, &mut out.events);
            if flags.noop {
                return Ok(out);
            }
            fs_err::create_dir(path)?;
            let uid = want.owner.map(|o| o.0);
            let gid = want.group.map(|g| g.0);
            let mode = spec.mode.map_or(DEFAULT_MODE, |m| m.bits());
            safepath::set_meta(path, uid, gid, Some(mode))?;
            fsutil::sync_parent(path)?;
        }
    }
    Ok(out)
}

/// Removes every entry no resource of the catalog manages (nor lies above one).
fn purge(
    spec: &DirectorySpec,
    path: &Path,
    env: &Env<'_>,
    flags: Flags,
    out: &mut Outcome,
) -> Result<()> {
    // The directory itself held open: a symlink swapped in at `path` is
    // refused, never listed nor purged through.
    let held = safepath::hold(path, true)?;
    let mut victims = Vec::new();
    for entry in fs_err::read_dir(held.path())? {
        let entry = entry?;
        let entry_path = Path::new(&spec.path).join(entry.file_name());
        let Some(name) = entry_path.to_str() else {
            bail!("cannot purge {}: an entry has a non-UTF-8 name", spec.path);
        };
        if !env.is_managed(name) {
            victims.push((
                entry_path.clone(),
                entry.file_name(),
                entry.file_type()?.is_dir(),
            ));
        }
    }
    victims.sort();
    for (victim, name, is_dir) in victims {
        out.events.push(event(
            "purged",
            Some(victim.to_string_lossy().into_owned()),
            None,
        ));
        if flags.noop {
            continue;
        }
        // `remove_dir_all` does not follow symlinks inside what it removes.
        let victim = held.path().join(name);
        if is_dir {
            fs_err::remove_dir_all(&victim)?;
        } else {
            fs_err::remove_file(&victim)?;
        }
    }
    if out.changed() && !flags.noop {
        fsutil::sync_dir(path)?;
    }
    Ok(())
}

fn absent(
    spec: &DirectorySpec,
    path: &Path,
    current: Option<Metadata>,
    flags: Flags,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    let Some(md) = current else { return Ok(out) };
    if !md.is_dir() {
        bail!(
            "refusing to remove {}: it is a {}, not a directory",
            spec.path,
            describe_type(&md)
        );
    }
    if fs_err::read_dir(path)?.next().is_some() {
        bail!(
            "directory {} is not empty; ensure = \"absent\" removes empty directories only\nhint: manage its entries as absent first, or purge them",
            spec.path
        );
    }
    out.events.push(event(
        "ensure",
        Some("present".into()),
        Some("absent".into()),
    ));
    if !flags.noop {
        fs_err::remove_dir(path)?;
        fsutil::sync_parent(path)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::os::unix::fs::MetadataExt;

    use drover_catalog::Mode;

    use super::super::testing::MapSource;
    use super::*;

    fn spec(path: &Path) -> DirectorySpec {
        DirectorySpec {
            path: path.to_string_lossy().into_owned(),
            ensure: Ensure::Present,
            mode: Some(Mode::parse("0750").unwrap()),
            owner: None,
            group: None,
            purge: false,
        }
    }

    fn run(spec: &DirectorySpec, managed: &[&str], noop: bool) -> Result<Outcome> {
        let source = MapSource::default();
        let managed: BTreeSet<&str> = managed.iter().copied().collect();
        let mut env = Env::new(&source, "/nonexistent".into(), managed);
        converge(
            spec,
            &mut env,
            Flags {
                noop,
                ..Flags::default()
            },
        )
    }

    #[test]
    fn creates_with_mode_then_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        assert!(run(&spec(&d), &[], false).unwrap().changed());
        assert_eq!(fs_err::metadata(&d).unwrap().mode() & 0o7777, 0o750);
        assert!(!run(&spec(&d), &[], false).unwrap().changed());
    }

    #[test]
    fn purge_removes_unmanaged_entries_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        fs_err::create_dir_all(d.join("keep-parent")).unwrap();
        fs_err::create_dir_all(d.join("junkdir/x")).unwrap();
        fs_err::write(d.join("keep"), "").unwrap();
        fs_err::write(d.join("junk"), "").unwrap();
        let mut s = spec(&d);
        s.purge = true;
        let keep = d.join("keep").to_string_lossy().into_owned();
        let nested = d.join("keep-parent/f").to_string_lossy().into_owned();
        let managed = [keep.as_str(), nested.as_str()];
        let noop = run(&s, &managed, true).unwrap();
        assert_eq!(
            noop.events
                .iter()
                .filter(|e| e.property == "purged")
                .count(),
            2
        );
        assert!(d.join("junk").exists(), "noop purges nothing");
        run(&s, &managed, false).unwrap();
        assert!(d.join("keep").exists() && d.join("keep-parent").exists());
        assert!(!d.join("junk").exists() && !d.join("junkdir").exists());
    }

    #[test]
    fn absent_removes_only_empty_directories() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        fs_err::create_dir(&d).unwrap();
        fs_err::write(d.join("f"), "").unwrap();
        let mut s = spec(&d);
        s.ensure = Ensure::Absent;
        let err = run(&s, &[], false).unwrap_err();
        assert!(err.to_string().contains("is not empty"), "{err}");
        fs_err::remove_file(d.join("f")).unwrap();
        assert!(run(&s, &[], false).unwrap().changed());
        assert!(!d.exists());
    }
}
