//! `symlink`: a link and its target, created or retargeted atomically.

use std::fs::Metadata;
use std::path::Path;

use anyhow::{Result, bail};
use drover_catalog::model::{Ensure, SymlinkSpec};

use super::{Env, Flags, Outcome, describe_type, event, observe_anchored, require_parent};
use crate::fsutil;
use crate::safepath::Anchored;

pub(crate) fn converge(spec: &SymlinkSpec, env: &mut Env<'_>, flags: Flags) -> Result<Outcome> {
    // Every read and write below goes through the parent reached here.
    let anchored = env.anchors.anchor(Path::new(&spec.path))?;
    let current = observe_anchored(&anchored)?;
    match spec.ensure {
        Ensure::Absent => absent(spec, anchored.path(), current, flags),
        Ensure::Present => present(spec, &anchored, current, env, flags),
    }
}

fn present(
    spec: &SymlinkSpec,
    anchored: &Anchored,
    current: Option<Metadata>,
    env: &mut Env<'_>,
    flags: Flags,
) -> Result<Outcome> {
    let path = anchored.path();
    let Some(target) = spec.target.as_deref() else {
        bail!("symlink {} has no target", spec.path);
    };
    let mut out = Outcome::default();
    match &current {
        Some(md) if md.file_type().is_symlink() => {
            let now = fs_err::read_link(path)?;
            if now.as_os_str() == target {
                return Ok(out);
            }
            out.events.push(event(
                "target",
                Some(now.to_string_lossy().into_owned()),
                Some(target.to_owned()),
            ));
        }
        Some(md) if md.is_dir() => bail!(
            "{} is a directory, not a symlink\nhint: remove it first; the agent does not replace directories",
            spec.path
        ),
        Some(md) => {
            out.events.push(event(
                "ensure",
                Some(describe_type(md).to_owned()),
                Some("symlink".into()),
            ));
            out.events
                .push(event("target", None, Some(target.to_owned())));
        }
        None => {
            require_parent(anchored, Path::new(&spec.path), env, flags)?;
            out.events
                .push(event("ensure", None, Some("present".into())));
            out.events
                .push(event("target", None, Some(target.to_owned())));
        }
    }
    if flags.noop {
        return Ok(out);
    }
    if let (Some(dir), Some(via)) = (Path::new(&spec.path).parent(), path.parent()) {
        env.sweep_stale_temps_via(dir, via);
    }
    // A link made under a temp name and renamed over the old one: there is
    // never a moment without a link at `path`.
    env.temps.before_temp();
    let temp = fsutil::temp_path_for(path);
    fs_err::os::unix::fs::symlink(target, &temp)?;
    if let Err(e) = fs_err::rename(&temp, path) {
        let _ = fs_err::remove_file(&temp);
        return Err(e.into());
    }
    fsutil::sync_parent(path)?;
    Ok(out)
}

fn absent(
    spec: &SymlinkSpec,
    path: &Path,
    current: Option<Metadata>,
    flags: Flags,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    let Some(md) = current else { return Ok(out) };
    if !md.file_type().is_symlink() {
        bail!(
            "refusing to remove {}: it is a {}, not a symlink",
            spec.path,
            describe_type(&md)
        );
    }
    out.events.push(event(
        "ensure",
        Some("present".into()),
        Some("absent".into()),
    ));
    if !flags.noop {
        fs_err::remove_file(path)?;
        fsutil::sync_parent(path)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::testing::MapSource;
    use super::*;

    fn run(spec: &SymlinkSpec, noop: bool) -> Result<Outcome> {
        let source = MapSource::default();
        let mut env = Env::new(&source, "/nonexistent".into(), BTreeSet::new());
        converge(
            spec,
            &mut env,
            Flags {
                noop,
                ..Flags::default()
            },
        )
    }

    fn spec(path: &Path, target: &str) -> SymlinkSpec {
        SymlinkSpec {
            path: path.to_string_lossy().into_owned(),
            ensure: Ensure::Present,
            target: Some(target.into()),
        }
    }

    #[test]
    fn creates_and_retargets_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("l");
        assert!(run(&spec(&link, "/a"), false).unwrap().changed());
        assert_eq!(fs_err::read_link(&link).unwrap(), Path::new("/a"));
        assert!(!run(&spec(&link, "/a"), false).unwrap().changed());
        let noop = run(&spec(&link, "/b"), true).unwrap();
        assert_eq!(noop.events[0].previous.as_deref(), Some("/a"));
        assert_eq!(fs_err::read_link(&link).unwrap(), Path::new("/a"));
        run(&spec(&link, "/b"), false).unwrap();
        assert_eq!(fs_err::read_link(&link).unwrap(), Path::new("/b"));
        assert_eq!(
            fs_err::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left behind"
        );
    }

    #[test]
    fn absent_removes_links_but_not_directories() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("l");
        fs_err::os::unix::fs::symlink("/x", &link).unwrap();
        let mut s = spec(&link, "/x");
        s.ensure = Ensure::Absent;
        assert!(run(&s, false).unwrap().changed());
        assert!(fs_err::symlink_metadata(&link).is_err());
        let mut d = spec(dir.path(), "/x");
        d.ensure = Ensure::Absent;
        assert!(run(&d, false).is_err());
    }
}
