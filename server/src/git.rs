//! Reading a catalog repository without a work tree: git objects through the
//! `git` CLI, or a plain directory in development mode.
//!
//! Symlinks and submodules are never read as content (a symlink could point
//! outside the repository); they are skipped and recorded as notes, so a
//! `source` naming one fails to compile as missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use drover_catalog::model::sha256_hex;

use drover_catalog::RepoFiles;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run `{cmd}`: {source}\nhint: is git installed and on PATH?")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed: {stderr}")]
    Failed { cmd: String, stderr: String },
    #[error("unexpected output from `{cmd}`: {detail}")]
    Output { cmd: String, detail: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An fs_err error, which already names its path.
    #[error(transparent)]
    Fs(#[from] std::io::Error),
}

/// The files of one snapshot, and what was skipped while reading them.
#[derive(Debug, Default)]
pub struct Tree {
    pub files: RepoFiles,
    pub notes: Vec<String>,
}

/// A git directory (bare, a mirror, or the `.git` of a work tree), used
/// through `git --git-dir` so no repository discovery or work tree is involved.
#[derive(Debug, Clone)]
pub struct GitDir {
    path: PathBuf,
}

impl GitDir {
    pub fn new(path: impl Into<PathBuf>) -> GitDir {
        GitDir { path: path.into() }
    }

    /// The git directory of `path` if it is a git repository (bare or not).
    pub fn detect(path: &Path) -> Option<GitDir> {
        let dot_git = path.join(".git");
        if dot_git.exists() {
            return Some(GitDir::new(dot_git));
        }
        let bare = ["HEAD", "objects", "refs"]
            .iter()
            .all(|p| path.join(p).exists());
        bare.then(|| GitDir::new(path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn command(&self) -> Command {
        let mut cmd = git();
        cmd.arg("--git-dir").arg(&self.path);
        cmd
    }

    fn output(&self, args: &[&str]) -> Result<String, GitError> {
        let mut cmd = self.command();
        cmd.args(args);
        run(cmd)
    }

    /// Every branch (`refs/heads/*`) with its head commit, sorted by name.
    pub fn branches(&self) -> Result<Vec<(String, String)>, GitError> {
        let out = self.output(&[
            "for-each-ref",
            "--format=%(objectname) %(refname:strip=2)",
            "refs/heads/",
        ])?;
        let mut branches: Vec<(String, String)> = out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(commit, name)| (name.to_owned(), commit.to_owned()))
            .collect();
        branches.sort();
        Ok(branches)
    }

    /// The branch HEAD points at, if it is a symbolic ref to a branch.
    pub fn head_branch(&self) -> Option<String> {
        let out = self
            .output(&["symbolic-ref", "--quiet", "--short", "HEAD"])
            .ok()?;
        let name = out.trim();
        (!name.is_empty()).then(|| name.to_owned())
    }

    /// A commit's subject, author and committer time (RFC 3339).
    pub fn commit_info(&self, commit: &str) -> Result<CommitInfo, GitError> {
        let out = self.output(&["log", "-1", "--format=%s%x1f%an%x1f%cI", commit, "--"])?;
        let mut parts = out.trim_end_matches('\n').splitn(3, '\u{1f}');
        let mut next = || parts.next().unwrap_or_default().to_owned();
        Ok(CommitInfo {
            subject: next(),
            author: next(),
            time: next(),
        })
    }

    /// The commit a branch points at.
    pub fn branch_commit(&self, branch: &str) -> Result<String, GitError> {
        let spec = format!("refs/heads/{branch}^{{commit}}");
        Ok(self
            .output(&["rev-parse", "--verify", "--quiet", &spec])
            .map_err(|_| GitError::Failed {
                cmd: format!("git rev-parse {spec}"),
                stderr: format!("no branch `{branch}` in {}", self.path.display()),
            })?
            .trim()
            .to_owned())
    }

    /// `git fetch --prune` in a mirror (whose refspec is `+refs/*:refs/*`).
    pub fn fetch(&self) -> Result<(), GitError> {
        self.output(&["fetch", "--prune", "--quiet", "origin"])
            .map(drop)
    }

    /// Points the mirror's origin at `src` (the configured repository may change).
    pub fn set_origin(&self, src: &str) -> Result<(), GitError> {
        self.output(&["remote", "set-url", "origin", src]).map(drop)
    }

    /// Reads every regular file of a commit's tree: one `ls-tree` and one
    /// `cat-file --batch` process for the whole snapshot.
    pub fn read_tree(&self, commit: &str) -> Result<Tree, GitError> {
        let listing = {
            let mut cmd = self.command();
            cmd.args(["ls-tree", "-r", "-z", "--full-tree", commit]);
            run_bytes(cmd)?
        };
        let mut tree = Tree::default();
        let mut blobs = Vec::new();
        for entry in listing.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            let bad = || GitError::Output {
                cmd: "git ls-tree".into(),
                detail: String::from_utf8_lossy(entry).into_owned(),
            };
            let tab = entry.iter().position(|b| *b == b'\t').ok_or_else(bad)?;
            let header = std::str::from_utf8(&entry[..tab]).map_err(|_| bad())?;
            let mut fields = header.split(' ');
            let (Some(mode), Some(_kind), Some(sha)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad());
            };
            let Ok(path) = std::str::from_utf8(&entry[tab + 1..]) else {
                tree.notes.push(format!(
                    "skipped {}: the file name is not UTF-8",
                    String::from_utf8_lossy(&entry[tab + 1..])
                ));
                continue;
            };
            match mode {
                "120000" => tree
                    .notes
                    .push(format!("skipped symlink {path}: symlinks are never served")),
                "160000" => tree
                    .notes
                    .push(format!("skipped submodule {path}: submodules are not read")),
                "100644" | "100755" | "100664" => blobs.push((path.to_owned(), sha.to_owned())),
                other => tree
                    .notes
                    .push(format!("skipped {path}: unsupported git mode {other}")),
            }
        }
        let contents = self.cat_blobs(blobs.iter().map(|(_, sha)| sha.as_str()))?;
        tree.files = blobs.into_iter().map(|(p, _)| p).zip(contents).collect();
        Ok(tree)
    }

    /// Reads blobs in order through one `git cat-file --batch`.
    fn cat_blobs<'a>(
        &self,
        shas: impl Iterator<Item = &'a str>,
    ) -> Result<Vec<Arc<[u8]>>, GitError> {
        let input: String = shas.map(|s| format!("{s}\n")).collect();
        let count = input.lines().count();
        let cmd_name = "git cat-file --batch".to_owned();
        let mut child = self
            .command()
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| GitError::Spawn {
                cmd: cmd_name.clone(),
                source,
            })?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // Written from another thread: git answers while we still write, and
        // both pipes filling up would deadlock.
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let mut out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut blobs = Vec::with_capacity(count);
        let mut header = String::new();
        // One buffer for every blob, each copied once into the `Arc` it is
        // kept in: a `Vec` per blob, converted later, would hold the tree twice.
        let mut buffer = Vec::new();
        let bad = |detail: String| GitError::Output {
            cmd: cmd_name.clone(),
            detail,
        };
        let io = |source| GitError::Io {
            path: self.path.clone(),
            source,
        };
        for _ in 0..count {
            header.clear();
            out.read_line(&mut header).map_err(io)?;
            let size: usize = match header.trim_end().rsplit_once(' ') {
                Some((_, size)) if header.contains(" blob ") => {
                    size.parse().map_err(|_| bad(header.clone()))?
                }
                _ => return Err(bad(header.trim_end().to_owned())),
            };
            buffer.resize(size + 1, 0);
            out.read_exact(&mut buffer).map_err(io)?;
            blobs.push(Arc::from(&buffer[..size]));
        }
        drop(out);
        let _ = writer.join();
        let _ = child.wait();
        Ok(blobs)
    }
}

/// `git clone --mirror SRC DEST`.
/// What the dashboard says of a commit besides its id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommitInfo {
    pub subject: String,
    pub author: String,
    /// RFC 3339.
    pub time: String,
}

pub fn clone_mirror(src: &str, dest: &Path) -> Result<GitDir, GitError> {
    let mut cmd = git();
    cmd.args(["clone", "--mirror", "--quiet", src]).arg(dest);
    run(cmd)?;
    Ok(GitDir::new(dest))
}

fn git() -> Command {
    let mut cmd = Command::new("git");
    // Never prompt for credentials on a server; fail instead.
    cmd.env("GIT_TERMINAL_PROMPT", "0").stdin(Stdio::null());
    cmd
}

fn describe(cmd: &Command) -> String {
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    format!("git {}", args.join(" "))
}

fn run_bytes(mut cmd: Command) -> Result<Vec<u8>, GitError> {
    let out = cmd.output().map_err(|source| GitError::Spawn {
        cmd: describe(&cmd),
        source,
    })?;
    if !out.status.success() {
        return Err(GitError::Failed {
            cmd: describe(&cmd),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

fn run(cmd: Command) -> Result<String, GitError> {
    run_bytes(cmd).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Reads a plain directory (development mode) without following symlinks,
/// skipping `.git`.
pub fn read_dir_tree(root: &Path) -> Result<Tree, GitError> {
    let mut tree = Tree::default();
    walk(root, "", &mut tree)?;
    Ok(tree)
}

fn walk(dir: &Path, prefix: &str, tree: &mut Tree) -> Result<(), GitError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| GitError::Io { path, source }
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            tree.notes.push(format!(
                "skipped {}: the file name is not UTF-8",
                path.display()
            ));
            continue;
        };
        let rel = format!("{prefix}{name}");
        let meta = entry.metadata().map_err(io(&path))?; // does not follow symlinks
        if meta.is_symlink() {
            tree.notes
                .push(format!("skipped symlink {rel}: symlinks are never served"));
        } else if meta.is_dir() {
            if name != ".git" {
                walk(&path, &format!("{rel}/"), tree)?;
            }
        } else if meta.is_file() {
            tree.files.insert(rel, fs_err::read(&path)?.into());
        } else {
            tree.notes
                .push(format!("skipped {rel}: not a regular file"));
        }
    }
    Ok(())
}

/// A stable stand-in for a commit id in development mode: a hash of the files.
pub fn content_id(files: &RepoFiles) -> String {
    let mut all = Vec::new();
    for (path, bytes) in files {
        all.extend_from_slice(path.as_bytes());
        all.push(0);
        all.extend_from_slice(sha256_hex(bytes).as_bytes());
        all.push(b'\n');
    }
    format!("dir-{}", &sha256_hex(&all)[..16])
}
