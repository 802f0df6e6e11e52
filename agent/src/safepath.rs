//! Managed paths reached without following a symlink someone else controls.
//!
//! A catalog may manage `/home/alice/.ssh/authorized_keys` while alice owns
//! `/home/alice`: she can replace `.ssh` with a symlink to a root-only
//! directory at any moment, and a path-based write would then land (and be
//! chowned to her, and diffed into the report) there. So every managed path
//! is *anchored* before it is observed or touched: its parent is walked from
//! `/` one component at a time with `openat(O_PATH | O_NOFOLLOW)`, and the
//! kind works on `/proc/PID/fd/N/NAME`, where `N` is the descriptor of the
//! parent directory actually reached. Whatever is renamed or linked in the
//! parents afterwards, the write goes into the directory that was checked.
//!
//! A symlink met in a parent is followed only when both the link and the
//! directory holding it belong to root (or to the agent's own user), so
//! `/var/run -> /run` keeps working; any other is refused as an *unsafe path
//! transition* (systemd-tmpfiles' name for the same rule), naming the path
//! and the component. The last component itself is never followed: the kinds
//! lstat it, and read it with `O_NOFOLLOW`.

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use nix::fcntl::readlinkat;
use nix::sys::stat::{FileStat, SFlag};

/// Links followed in one walk before giving up (the kernel's own bound).
const MAX_LINKS: usize = 40;

/// A managed path whose parent directory is held open.
#[derive(Debug, Clone)]
pub(crate) struct Anchored {
    dir: Option<Arc<OwnedFd>>,
    path: PathBuf,
}

impl Anchored {
    /// The path to work on: through the held parent, or the path itself
    /// when a parent does not exist yet (see [`Anchored::parent_missing`]).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A parent is missing: nothing is there to observe, and nothing may be
    /// written (a noop run may still report what it would make).
    pub(crate) fn parent_missing(&self) -> bool {
        self.dir.is_none()
    }

    /// The held parent, for writes that outlive the kind's call (the
    /// engine's batch renames staged files later).
    pub(crate) fn keep(&self) -> Option<Arc<OwnedFd>> {
        self.dir.clone()
    }
}

/// Walks `path`'s parents from `/` (see the module comment).
pub(crate) fn anchor(path: &Path) -> Result<Anchored> {
    let (parent, name) = parent_and_name(path)?;
    match walk(path, parent)? {
        Some(dir) => Ok(through(Arc::new(dir), name)),
        None => Ok(Anchored {
            dir: None,
            path: path.to_owned(),
        }),
    }
}

/// The parents anchored so far in one run, by path, so that the files of
/// one directory share its walk and its descriptor (a no-change run over
/// 1,000 files in one directory walked the same parents 1,000 times). The
/// engine forgets them whenever a resource may have changed other paths (a
/// directory made or replaced, a link, an exec), so what comes after is
/// walked again; a parent that does not exist yet is never kept.
#[derive(Debug, Default)]
pub(crate) struct Anchors {
    held: HashMap<PathBuf, Arc<OwnedFd>>,
}

impl Anchors {
    /// Descriptors held at most: far below the usual limit of 1,024 open
    /// files, whatever the catalog's directories.
    const MAX_HELD: usize = 64;

    /// [`anchor`], reusing a parent this run anchored already.
    pub(crate) fn anchor(&mut self, path: &Path) -> Result<Anchored> {
        let (parent, name) = parent_and_name(path)?;
        if let Some(dir) = self.held.get(parent) {
            return Ok(through(Arc::clone(dir), name));
        }
        let anchored = anchor(path)?;
        if let Some(dir) = &anchored.dir {
            if self.held.len() >= Self::MAX_HELD {
                self.held.clear();
            }
            self.held.insert(parent.to_owned(), Arc::clone(dir));
        }
        Ok(anchored)
    }

    /// After a change that may have moved, made or removed a parent.
    pub(crate) fn forget(&mut self) {
        self.held.clear();
    }
}

fn parent_and_name(path: &Path) -> Result<(&Path, &OsStr)> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        bail!("{} is not a path the agent can manage", path.display());
    };
    if !path.is_absolute() {
        bail!("{} is not an absolute path", path.display());
    }
    Ok((parent, name))
}

/// `name` in the held directory `dir`, as `/proc/PID/fd/N/NAME`.
fn through(dir: Arc<OwnedFd>, name: &OsStr) -> Anchored {
    let mut via = PathBuf::from(format!("/proc/{}/fd/{}", pid(), dir.as_raw_fd()));
    via.push(name);
    Anchored {
        dir: Some(dir),
        path: via,
    }
}

/// This process's id, asked once (a system call per managed path otherwise).
fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// `openat(dir, name, O_PATH | O_NOFOLLOW)`, spelled as an open of
/// `/proc/self/fd/DIR/NAME`: the kernel resolves the descriptor's magic link
/// to the directory it holds, then `NAME` in it, never following `NAME`.
fn open_path(dir: Option<&OwnedFd>, name: &OsStr) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = match dir {
        Some(dir) => Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name),
        None => PathBuf::from(name),
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)?;
    Ok(OwnedFd::from(file))
}

fn fstat(fd: &OwnedFd) -> Result<FileStat> {
    Ok(nix::sys::stat::fstat(fd.as_raw_fd())?)
}

fn is(st: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
}

/// The descriptor of `dir` reached without an unsafe link; `None` when a
/// component does not exist.
fn walk(path: &Path, dir: &Path) -> Result<Option<OwnedFd>> {
    let trusted = |uid: u32| uid == 0 || uid == nix::unistd::geteuid().as_raw();
    let mut stack = vec![open_path(None, OsStr::new("/"))?];
    let mut shown = PathBuf::from("/");
    let mut todo: VecDeque<OsString> = components(dir);
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            shown.pop();
            continue;
        }
        let here = stack.last().expect("the root is never popped");
        let fd = match open_path(Some(here), &name) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(anyhow!("cannot open {}: {e}", shown.join(&name).display()));
            }
        };
        let st = fstat(&fd)?;
        if is(&st, SFlag::S_IFDIR) {
            stack.push(fd);
            shown.push(&name);
            continue;
        }
        let component = shown.join(&name);
        if !is(&st, SFlag::S_IFLNK) {
            bail!(
                "cannot manage {}: {} is not a directory",
                path.display(),
                component.display()
            );
        }
        let holder = fstat(here)?;
        if !trusted(holder.st_uid) || !trusted(st.st_uid) {
            bail!(
                "refusing to manage {}: its parent {} is a symlink owned by uid {} in {}, a directory owned by uid {} (an unsafe path transition)\nhint: the agent follows a symlink in a managed path's parents only when root owns it and the directory holding it; make {} a real directory, or manage the path it points to",
                path.display(),
                component.display(),
                st.st_uid,
                shown.display(),
                holder.st_uid,
                component.display()
            );
        }
        links += 1;
        if links > MAX_LINKS {
            bail!(
                "cannot manage {}: too many symlinks in its parents",
                path.display()
            );
        }
        let target = readlinkat(Some(fd.as_raw_fd()), OsStr::new(""))?;
        let target = Path::new(&target);
        if target.is_absolute() {
            stack.truncate(1);
            shown = PathBuf::from("/");
        }
        for c in components(target).into_iter().rev() {
            todo.push_front(c);
        }
    }
    Ok(stack.pop())
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Reads a file without following a symlink in its last component (one
/// swapped in since it was lstat'ed is refused, not read).
pub(crate) fn read_nofollow(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Sets owner, group and mode of `path` itself, never of what a symlink
/// swapped in at `path` points to: the path is opened with `O_NOFOLLOW`,
/// checked, and changed through that descriptor.
pub(crate) fn set_meta(
    path: &Path,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: Option<u32>,
) -> Result<()> {
    let held = hold(path, false)?;
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(held.path(), uid, gid)
            .map_err(|e| anyhow!("cannot set the owner of {}: {e}", path.display()))?;
    }
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(held.path(), std::fs::Permissions::from_mode(mode))
            .map_err(|e| anyhow!("cannot set the mode of {}: {e}", path.display()))?;
    }
    Ok(())
}

/// `path` itself held open (`O_NOFOLLOW`; a directory when `dir`), to work
/// on as `/proc/PID/fd/N`.
pub(crate) fn hold(path: &Path, dir: bool) -> Result<Anchored> {
    let fd = open_path(None, path.as_os_str())
        .map_err(|e| anyhow!("cannot open {}: {e}", path.display()))?;
    let st = fstat(&fd)?;
    if is(&st, SFlag::S_IFLNK) {
        bail!(
            "{} was replaced by a symlink while the agent worked on it; left alone",
            path.display()
        );
    }
    if dir && !is(&st, SFlag::S_IFDIR) {
        bail!("{} is no longer a directory; left alone", path.display());
    }
    Ok(Anchored {
        path: PathBuf::from(format!("/proc/{}/fd/{}", pid(), fd.as_raw_fd())),
        dir: Some(Arc::new(fd)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_link_is_followed_and_the_path_goes_through_the_held_directory() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs_err::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let a = anchor(&dir.path().join("link/f")).unwrap();
        assert!(!a.parent_missing());
        fs_err::write(a.path(), b"x").unwrap();
        assert_eq!(fs_err::read(real.join("f")).unwrap(), b"x");
        // Swapping the link afterwards changes nothing: the directory is held.
        let other = dir.path().join("other");
        fs_err::create_dir(&other).unwrap();
        fs_err::remove_file(dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(&other, dir.path().join("link")).unwrap();
        fs_err::write(a.path(), b"y").unwrap();
        assert_eq!(fs_err::read(real.join("f")).unwrap(), b"y");
        assert!(!other.join("f").exists());
    }

    #[test]
    fn a_missing_parent_is_reported_not_walked() {
        let dir = tempfile::tempdir().unwrap();
        let a = anchor(&dir.path().join("no/such/f")).unwrap();
        assert!(a.parent_missing());
    }

    #[test]
    fn a_file_in_the_parents_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("file"), b"").unwrap();
        let err = format!("{:#}", anchor(&dir.path().join("file/f")).unwrap_err());
        assert!(err.contains("is not a directory"), "{err}");
    }

    #[test]
    fn the_files_of_one_directory_share_its_walk_and_a_missing_parent_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut anchors = Anchors::default();
        let a = anchors.anchor(&dir.path().join("a")).unwrap();
        let b = anchors.anchor(&dir.path().join("b")).unwrap();
        assert_eq!(a.path().parent(), b.path().parent(), "one held descriptor");
        let sub = dir.path().join("sub");
        assert!(anchors.anchor(&sub.join("f")).unwrap().parent_missing());
        fs_err::create_dir(&sub).unwrap();
        let f = anchors.anchor(&sub.join("f")).unwrap();
        assert!(!f.parent_missing(), "walked again once it exists");
        fs_err::write(f.path(), b"x").unwrap();
        assert_eq!(fs_err::read(sub.join("f")).unwrap(), b"x");
    }
}
