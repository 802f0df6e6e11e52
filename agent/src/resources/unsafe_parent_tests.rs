//! The symlinked-parent attack (issue 16, item 5): alice owns her home, the
//! catalog manages a path below `~alice/.ssh`, and she replaces `.ssh` with
//! a link to a root-only directory. Every kind must refuse, write and chown
//! nothing there, and show none of its content.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use drover_catalog::model::{DirectorySpec, Ensure, FileSpec, SymlinkSpec, sha256_hex};
use nix::unistd::Uid;

use super::testing::MapSource;
use super::{Env, Flags};

const SECRET: &[u8] = b"root-only secret key material\n";
const NOBODY: u32 = 65534;

struct Attack {
    _dir: tempfile::TempDir,
    root: PathBuf,
    secret: PathBuf,
}

impl Attack {
    /// ROOT/alice (uid 65534) holding `.ssh -> ROOT/secret` (0700, root's).
    fn new() -> Attack {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        fs_err::set_permissions(&root, PermissionsExt::from_mode(0o755)).unwrap();
        let alice = root.join("alice");
        fs_err::create_dir(&alice).unwrap();
        std::os::unix::fs::chown(&alice, Some(NOBODY), Some(NOBODY)).unwrap();
        let secret = root.join("secret");
        fs_err::create_dir(&secret).unwrap();
        fs_err::set_permissions(&secret, PermissionsExt::from_mode(0o700)).unwrap();
        fs_err::write(secret.join("authorized_keys"), SECRET).unwrap();
        fs_err::set_permissions(
            secret.join("authorized_keys"),
            PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let link = alice.join(".ssh");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(NOBODY), Some(NOBODY)).unwrap();
        Attack {
            _dir: dir,
            root,
            secret,
        }
    }

    fn managed(&self, name: &str) -> PathBuf {
        self.root.join("alice/.ssh").join(name)
    }

    /// Every entry of the secret directory: name, content, owner, mode.
    fn snapshot(&self) -> Vec<(String, Vec<u8>, u32, u32)> {
        let mut entries: Vec<_> = fs_err::read_dir(&self.secret)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let md = fs_err::symlink_metadata(e.path()).unwrap();
                let content = if md.is_file() {
                    fs_err::read(e.path()).unwrap()
                } else {
                    Vec::new()
                };
                let name = e.file_name().to_string_lossy().into_owned();
                (name, content, md.uid(), md.mode())
            })
            .collect();
        entries.sort();
        let md = fs_err::metadata(&self.secret).unwrap();
        entries.push((".".into(), Vec::new(), md.uid(), md.mode()));
        entries
    }
}

fn refused(attack: &Attack, err: anyhow::Error) {
    let err = format!("{err:#}");
    let component = attack.root.join("alice/.ssh");
    assert!(
        err.contains("unsafe path transition") && err.contains(&*component.to_string_lossy()),
        "{err}"
    );
    assert!(!err.contains("secret key material"), "{err}");
}

fn file(path: &Path) -> FileSpec {
    FileSpec {
        path: path.to_string_lossy().into_owned(),
        ensure: Ensure::Present,
        sha256: Some(sha256_hex(b"alice's key\n")),
        size: Some(12),
        mode: None,
        owner: Some("nobody".into()),
        group: None,
        backup: true,
        validate: None,
    }
}

#[test]
fn every_kind_refuses_a_parent_symlinked_by_another_user() {
    if !Uid::effective().is_root() {
        eprintln!("skipped: giving a directory to another user needs root");
        return;
    }
    let attack = Attack::new();
    let before = attack.snapshot();
    let source = MapSource::with(&[b"alice's key\n"]);
    let backups = attack.root.join("backups");
    for noop in [true, false] {
        for staged in [false, true] {
            let flags = Flags {
                noop,
                ..Flags::default()
            };
            let mut env = Env::new(&source, backups.clone(), BTreeSet::new());
            env.stage_writes = staged;
            let spec = file(&attack.managed("authorized_keys"));
            refused(
                &attack,
                super::file::converge(&spec, &mut env, flags).unwrap_err(),
            );
            assert!(env.staged.is_none());
            let absent = FileSpec {
                ensure: Ensure::Absent,
                ..spec
            };
            refused(
                &attack,
                super::file::converge(&absent, &mut env, flags).unwrap_err(),
            );
            let dir = DirectorySpec {
                path: attack.managed("d").to_string_lossy().into_owned(),
                ensure: Ensure::Present,
                mode: None,
                owner: Some("nobody".into()),
                group: None,
                purge: false,
            };
            refused(
                &attack,
                super::directory::converge(&dir, &mut env, flags).unwrap_err(),
            );
            let link = SymlinkSpec {
                path: attack.managed("l").to_string_lossy().into_owned(),
                ensure: Ensure::Present,
                target: Some("/etc/passwd".into()),
            };
            refused(
                &attack,
                super::symlink::converge(&link, &mut env, flags).unwrap_err(),
            );
        }
    }
    assert_eq!(
        attack.snapshot(),
        before,
        "the secret directory is untouched"
    );
    assert!(!backups.exists(), "nothing of the secret was backed up");
}

#[test]
fn a_parent_symlinked_by_root_still_works() {
    // root's link (the agent's own user's, unprivileged), in root's
    // directory: /var/run -> /run.
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    fs_err::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, dir.path().join("run")).unwrap();
    let source = MapSource::with(&[b"alice's key\n"]);
    let mut env = Env::new(&source, dir.path().join("backups"), BTreeSet::new());
    let spec = FileSpec {
        owner: None,
        ..file(&dir.path().join("run/f"))
    };
    let out = super::file::converge(&spec, &mut env, Flags::default()).unwrap();
    assert!(out.changed());
    assert_eq!(fs_err::read(real.join("f")).unwrap(), b"alice's key\n");
}
