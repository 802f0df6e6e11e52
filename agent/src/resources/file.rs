//! `file`: content by sha256, mode, owner, group; replaced atomically.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Result, bail};
use drover_catalog::model::{Ensure, FileSpec, sha256_hex};

use super::{
    Env, Flags, Outcome, StagedWrite, WantMeta, describe_type, event, observe_anchored,
    require_parent,
};
use crate::filecache;
use crate::fsutil::{self, NewFile};
use crate::safepath::{self, Anchored};

const DEFAULT_MODE: u32 = 0o644;

pub(crate) fn converge(spec: &FileSpec, env: &mut Env<'_>, flags: Flags) -> Result<Outcome> {
    // Taken first, whatever follows: the pass before the walk stat'ed it
    // already, unless something since may have changed it. `observed_at`
    // comes before the lstat: the cache records the content as "hashed
    // after this".
    let observed = env.files.take_observed();
    // Every read and write below goes through the parent reached here.
    let anchored = env.anchors.anchor(Path::new(&spec.path))?;
    let path = anchored.path();
    if !flags.noop && !anchored.parent_missing() {
        // A run killed mid-write may have left a temp file next to this one.
        let dir = Path::new(&spec.path).parent().unwrap_or(Path::new("/"));
        env.sweep_stale_temps_via(dir, path.parent().unwrap_or(Path::new("/")));
    }
    let (current, observed_at) = match observed {
        Some(observed) if !anchored.parent_missing() => observed,
        _ => {
            let observed_at = filecache::now_ns();
            (observe_anchored(&anchored)?, observed_at)
        }
    };
    match spec.ensure {
        Ensure::Absent => absent(spec, path, current, env, flags),
        Ensure::Present => present(spec, &anchored, current, observed_at, env, flags),
    }
}

fn present(
    spec: &FileSpec,
    anchored: &Anchored,
    current: Option<Metadata>,
    observed_at: i64,
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
        Some(md) if md.is_file() => {
            let differs = match spec.sha256.as_deref() {
                Some(want_sha) => content_differs(env, path, &md, spec, want_sha, observed_at)?,
                None => false,
            };
            want.events(&mut env.names, Some(&md), &mut out.events);
            let (true, Some(new_sha)) = (differs, spec.sha256.as_deref()) else {
                // Content is right (or unmanaged): metadata only, fixed in place.
                if out.changed() && !flags.noop {
                    want.apply(path, &md)?;
                }
                return Ok(out);
            };
            let old = safepath::read_nofollow(path)?;
            let old_sha = sha256_hex(&old);
            if flags.noop
                && let Some(sha) = filecache::decode_sha(&old_sha)
            {
                // What is there, never what would be: a later real run still repairs it.
                env.files.record(&spec.path, &md, sha, observed_at);
            }
            out.events.insert(
                0,
                event("content", Some(old_sha.clone()), Some(new_sha.to_owned())),
            );
            let new = env.fetch_verified(new_sha)?;
            if !flags.sensitive {
                out.diff = Some(
                    env.diffs
                        .diff(&spec.path, Some(&old), &new, &old_sha, new_sha),
                );
            }
            if flags.noop {
                return Ok(out);
            }
            let backup = match spec.backup {
                true => backup(env, &old_sha, &old)?,
                false => None,
            };
            drop(old);
            let file = NewFile {
                content: &new,
                mode: spec.mode.map_or(md.mode() & 0o7777, |m| m.bits()),
                uid: Some(want.owner.map_or(md.uid(), |o| o.0)),
                gid: Some(want.group.map_or(md.gid(), |g| g.0)),
                validate: spec.validate.as_deref(),
                quiet: flags.sensitive,
            };
            put(env, anchored, file, backup)?;
        }
        Some(md) if md.is_dir() => bail!(
            "{} is a directory, not a file\nhint: remove it, or manage it with a directory resource",
            spec.path
        ),
        Some(md) if !md.file_type().is_symlink() => {
            bail!(
                "{} is a {}, not a regular file",
                spec.path,
                describe_type(&md)
            )
        }
        // Missing, or a symlink that a regular file replaces (as Puppet does).
        current => {
            require_parent(anchored, Path::new(&spec.path), env, flags)?;
            let previous = current.as_ref().map(|_| "symlink".to_owned());
            out.events
                .push(event("ensure", previous, Some("present".into())));
            let content = match spec.sha256.as_deref() {
                Some(sha) => {
                    out.events
                        .push(event("content", None, Some(sha.to_owned())));
                    let content = env.fetch_verified(sha)?;
                    if !flags.sensitive {
                        out.diff = Some(env.diffs.diff(&spec.path, None, &content, "none", sha));
                    }
                    content
                }
                None => std::sync::Arc::from(&[][..]),
            };
            want.events(&mut env.names, None, &mut out.events);
            if flags.noop {
                return Ok(out);
            }
            let file = NewFile {
                content: &content,
                mode: spec.mode.map_or(DEFAULT_MODE, |m| m.bits()),
                uid: want.owner.map(|o| o.0),
                gid: want.group.map(|g| g.0),
                validate: spec.validate.as_deref(),
                quiet: flags.sensitive,
            };
            put(env, anchored, file, None)?;
        }
    }
    Ok(out)
}

/// Writes `file` over `path`: at once (durable, then renamed), or staged
/// for the engine's batch, which makes it durable and renames it with the
/// others and only then counts it changed.
fn put(
    env: &mut Env<'_>,
    anchored: &Anchored,
    file: NewFile<'_>,
    backup: Option<fsutil::Staged>,
) -> Result<()> {
    env.temps.before_temp();
    if !env.stage_writes {
        return fsutil::write_atomic(anchored.path(), file);
    }
    match fsutil::stage(anchored.path(), file) {
        Ok(mut file) => {
            file.anchor = anchored.keep();
            env.staged = Some(StagedWrite { backup, file });
            Ok(())
        }
        Err(e) => {
            if let Some(backup) = &backup {
                backup.discard();
            }
            Err(e)
        }
    }
}

/// Keeps the replaced content under STATE/backups: written at once, or
/// staged with the file that replaces it (the engine puts the backup in
/// place, durably, before the file).
fn backup(env: &mut Env<'_>, sha: &str, content: &[u8]) -> Result<Option<fsutil::Staged>> {
    env.temps.before_temp();
    if !env.stage_writes {
        store_backup(&env.backups, sha, content)?;
        return Ok(None);
    }
    let target = env.backups.join(sha);
    if target.exists() {
        return Ok(None);
    }
    fsutil::create_private_dir_all(&env.backups)?;
    fsutil::stage(&target, NewFile::private(content)).map(Some)
}

/// Size first: a size mismatch settles it without reading the file. Then
/// the metadata cache or the hash made up front, else a hash now.
fn content_differs(
    env: &mut Env<'_>,
    path: &Path,
    md: &Metadata,
    spec: &FileSpec,
    want_sha: &str,
    observed_at: i64,
) -> Result<bool> {
    if spec.size.is_some_and(|size| size != md.len()) {
        return Ok(true);
    }
    let Some(want) = filecache::decode_sha(want_sha) else {
        return Ok(env.hash_file(path)? != want_sha);
    };
    if let Some(sha) = env.files.known(&spec.path, md, &want) {
        return Ok(sha != want);
    }
    Ok(env.files.hash_now(&spec.path, path, md, observed_at)? != want)
}

fn absent(
    spec: &FileSpec,
    path: &Path,
    current: Option<Metadata>,
    env: &mut Env<'_>,
    flags: Flags,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    let Some(md) = current else { return Ok(out) };
    if md.is_dir() {
        bail!(
            "refusing to remove directory {} in place of a file\nhint: use a directory resource with ensure = \"absent\"",
            spec.path
        );
    }
    out.events.push(event(
        "ensure",
        Some("present".into()),
        Some("absent".into()),
    ));
    if flags.noop {
        return Ok(out);
    }
    if spec.backup && md.is_file() {
        let old = safepath::read_nofollow(path)?;
        store_backup(&env.backups, &sha256_hex(&old), &old)?;
    }
    fs_err::remove_file(path)?;
    fsutil::sync_parent(path)?;
    Ok(out)
}

/// Keeps replaced content under STATE/backups/SHA256 (written atomically, once).
pub(crate) fn store_backup(dir: &Path, sha: &str, content: &[u8]) -> Result<()> {
    let target = dir.join(sha);
    if target.exists() {
        return Ok(());
    }
    fsutil::write_state_file(&target, content)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use drover_catalog::Mode;

    use super::super::testing::MapSource;
    use super::*;

    fn spec(path: &Path, content: Option<&[u8]>) -> FileSpec {
        FileSpec {
            path: path.to_string_lossy().into_owned(),
            ensure: Ensure::Present,
            sha256: content.map(sha256_hex),
            size: content.map(|c| c.len() as u64),
            mode: None,
            owner: None,
            group: None,
            backup: true,
            validate: None,
        }
    }

    fn run(source: &MapSource, backups: PathBuf, spec: &FileSpec, noop: bool) -> Result<Outcome> {
        let mut env = Env::new(source, backups, BTreeSet::new());
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
    fn replaces_content_keeps_backup_and_diffs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs_err::write(&path, "one\n").unwrap();
        let source = MapSource::with(&[b"two\n"]);
        let backups = dir.path().join("backups");
        let out = run(
            &source,
            backups.clone(),
            &spec(&path, Some(b"two\n")),
            false,
        )
        .unwrap();
        assert_eq!(out.events[0].property, "content");
        assert!(out.diff.unwrap().contains("-one\n+two\n"));
        assert_eq!(fs_err::read(&path).unwrap(), b"two\n");
        assert_eq!(
            fs_err::read(backups.join(sha256_hex(b"one\n"))).unwrap(),
            b"one\n"
        );
        let again = run(&source, backups, &spec(&path, Some(b"two\n")), false).unwrap();
        assert!(!again.changed(), "second run converges to nothing");
    }

    #[test]
    fn noop_counts_a_managed_missing_parent_as_made() {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("conf.d");
        let path = parent.join("f");
        let source = MapSource::with(&[b"x"]);
        let noop = Flags {
            noop: true,
            ..Flags::default()
        };
        let parent_text = parent.to_string_lossy().into_owned();
        let managed = BTreeSet::from([parent_text.as_str()]);
        let mut env = Env::new(&source, dir.path().join("b"), managed);
        let out = converge(&spec(&path, Some(b"x")), &mut env, noop).unwrap();
        assert_eq!(out.events[0].property, "ensure");
        assert!(!parent.exists(), "noop made nothing");

        let mut unmanaged = Env::new(&source, dir.path().join("b"), BTreeSet::new());
        let err = converge(&spec(&path, Some(b"x")), &mut unmanaged, noop).unwrap_err();
        assert!(err.to_string().starts_with("parent directory"), "{err}");
    }

    #[test]
    fn noop_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs_err::write(&path, "one\n").unwrap();
        let source = MapSource::with(&[b"two\n"]);
        let mut s = spec(&path, Some(b"two\n"));
        s.mode = Some(Mode::parse("0600").unwrap());
        let out = run(&source, dir.path().join("b"), &s, true).unwrap();
        assert!(out.changed() && out.diff.is_some());
        assert_eq!(fs_err::read(&path).unwrap(), b"one\n");
        assert!(!dir.path().join("b").exists(), "no backup in noop");
        let created = run(
            &source,
            dir.path().join("b"),
            &spec(&dir.path().join("new"), Some(b"two\n")),
            true,
        )
        .unwrap();
        assert!(created.changed());
        assert!(!dir.path().join("new").exists());
    }

    #[test]
    fn mode_and_owner_diff_without_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs_err::write(&path, "x").unwrap();
        fs_err::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let mut s = spec(&path, None);
        s.mode = Some(Mode::parse("0644").unwrap());
        s.owner = Some("root".into());
        let out = run(&MapSource::default(), dir.path().join("b"), &s, false).unwrap();
        let mode = out.events.iter().find(|e| e.property == "mode").unwrap();
        assert_eq!(
            (mode.previous.as_deref(), mode.desired.as_deref()),
            (Some("0600"), Some("0644"))
        );
        assert_eq!(fs_err::metadata(&path).unwrap().mode() & 0o7777, 0o644);
        s.owner = Some("no-such-user-drover".into());
        let err = run(&MapSource::default(), dir.path().join("b"), &s, false).unwrap_err();
        assert!(err.to_string().contains("unknown user"), "{err}");
    }

    #[test]
    fn validate_failure_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs_err::write(&path, "good\n").unwrap();
        let source = MapSource::with(&[b"bad\n"]);
        let mut s = spec(&path, Some(b"bad\n"));
        s.validate = Some("grep -q good %".into());
        assert!(run(&source, dir.path().join("b"), &s, false).is_err());
        assert_eq!(fs_err::read(&path).unwrap(), b"good\n");
    }

    #[test]
    fn missing_parent_and_directory_in_place_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let source = MapSource::with(&[b"x"]);
        let err = run(
            &source,
            dir.path().join("b"),
            &spec(&dir.path().join("no/f"), Some(b"x")),
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("parent directory"), "{err}");
        let mut s = spec(dir.path(), None);
        s.ensure = Ensure::Absent;
        let err = run(&source, dir.path().join("b"), &s, false).unwrap_err();
        assert!(
            err.to_string().contains("refusing to remove directory"),
            "{err}"
        );
    }

    #[test]
    fn absent_removes_and_empty_file_is_created_without_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let out = run(
            &MapSource::default(),
            dir.path().join("b"),
            &spec(&path, None),
            false,
        )
        .unwrap();
        assert!(out.changed());
        assert_eq!(fs_err::read(&path).unwrap(), b"");
        let mut s = spec(&path, None);
        s.ensure = Ensure::Absent;
        assert!(
            run(&MapSource::default(), dir.path().join("b"), &s, false)
                .unwrap()
                .changed()
        );
        assert!(!path.exists());
    }

    #[test]
    fn stale_temp_of_a_killed_run_is_swept_even_without_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs_err::write(&path, "x").unwrap();
        let stale = crate::fsutil::temp_path_for(&path);
        fs_err::write(&stale, "partial").unwrap();
        let source = MapSource::with(&[b"x"]);
        assert!(
            run(
                &source,
                dir.path().join("b"),
                &spec(&path, Some(b"x")),
                true
            )
            .is_ok()
        );
        assert!(stale.exists(), "noop removes nothing");
        assert!(
            !run(
                &source,
                dir.path().join("b"),
                &spec(&path, Some(b"x")),
                false
            )
            .unwrap()
            .changed()
        );
        assert!(!stale.exists());
    }
}
