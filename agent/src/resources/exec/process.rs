//! Running one command: in its own process group, with the environment and
//! user it is given, killed with its whole group on timeout, its stdout and
//! stderr interleaved through one pipe and kept bounded. A background child
//! that keeps the pipe open does not keep us waiting after the command exits.

use std::collections::VecDeque;
use std::ffi::CString;
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use drover_catalog::model::Command;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Gid, Pid, Uid, User};

/// The last this many bytes of output are kept.
pub(super) const OUTPUT_LIMIT: usize = 16 * 1024;
/// Between SIGTERM and SIGKILL to the process group.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long the group may take to die after SIGKILL.
const KILL_SETTLE: Duration = Duration::from_secs(1);
/// How long output may still come after the command exited.
const OUTPUT_AFTER_EXIT: Duration = Duration::from_millis(200);
/// The longest pause between looks at the pipe and the process.
const MAX_NAP: Duration = Duration::from_millis(20);
/// Reads per look at the pipe, so a flood of output cannot starve the timeout.
const READS_PER_LOOK: usize = 16;

/// A user to run as, resolved in the parent.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    /// Supplementary groups, from the group database (as login does).
    pub groups: Vec<Gid>,
    pub home: PathBuf,
}

impl Identity {
    /// By name, or by a numeric uid that has a passwd entry.
    pub(super) fn lookup(name: &str) -> Result<Identity> {
        let by_name =
            User::from_name(name).with_context(|| format!("cannot look up user `{name}`"))?;
        let user = match by_name {
            Some(user) => user,
            None => match name
                .parse::<u32>()
                .map(|uid| User::from_uid(Uid::from_raw(uid)))
            {
                Ok(Ok(Some(user))) => user,
                _ => bail!(
                    "unknown user `{name}`\nhint: create it first with a user resource (and require it)"
                ),
            },
        };
        let c_name = CString::new(user.name.as_bytes())
            .with_context(|| format!("user name `{}` contains a NUL byte", user.name))?;
        let groups = nix::unistd::getgrouplist(&c_name, user.gid)
            .with_context(|| format!("cannot list the groups of user `{}`", user.name))?;
        Ok(Identity {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
            groups,
            home: user.dir,
        })
    }
}

/// How the commands of one exec resource (its guards too) run.
#[derive(Debug, Clone)]
pub(super) struct Invocation {
    /// The whole environment: nothing is inherited from the agent.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Switch to this user in the child; `None` runs as the agent.
    pub user: Option<Identity>,
    /// `None`: no limit.
    pub timeout: Option<Duration>,
}

#[derive(Debug)]
pub(super) enum Ran {
    Exited(ExitStatus),
    /// The whole process group was killed.
    TimedOut,
}

#[derive(Debug)]
pub(super) struct Finished {
    pub ran: Ran,
    pub output: Captured,
}

/// The tail of the output and how much came before it.
#[derive(Debug, Default)]
pub(super) struct Captured {
    tail: VecDeque<u8>,
    dropped: u64,
}

impl Captured {
    fn push(&mut self, bytes: &[u8]) {
        self.tail.extend(bytes);
        let excess = self.tail.len().saturating_sub(OUTPUT_LIMIT);
        if excess > 0 {
            self.tail.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    /// The output as text, headed by how many bytes were dropped, if any.
    pub(super) fn text(&self) -> String {
        let (front, back) = self.tail.as_slices();
        let bytes = [front, back].concat();
        let body = String::from_utf8_lossy(&bytes);
        let body = body.trim_end();
        match self.dropped {
            0 => body.to_owned(),
            n => format!("[{n} earlier bytes of output dropped]\n{body}"),
        }
    }
}

/// Runs `command` to completion or timeout.
pub(super) fn run(command: &Command, how: &Invocation) -> Result<Finished> {
    let (read_end, write_end) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe for the output")?;
    fcntl(read_end.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .context("cannot make the output pipe non-blocking")?;
    let stdout = write_end
        .try_clone()
        .context("cannot duplicate the output pipe")?;
    let mut cmd = build(command, how)?;
    cmd.stdout(stdout).stderr(write_end);
    let spawned = cmd.spawn();
    // The Command holds our copies of the write end: EOF comes only once they are closed.
    drop(cmd);
    let mut child = spawned.map_err(|e| spawn_error(e, command, how))?;
    let mut pipe = Pipe {
        file: std::fs::File::from(read_end),
        eof: false,
        captured: Captured::default(),
    };
    let ran = watch(&mut child, &mut pipe, how.timeout)?;
    Ok(Finished {
        ran,
        output: pipe.captured,
    })
}

fn build(command: &Command, how: &Invocation) -> Result<std::process::Command> {
    let mut cmd = match command {
        Command::Argv(argv) => {
            let (program, args) = argv.split_first().context("the command's argv is empty")?;
            let mut cmd = std::process::Command::new(program);
            cmd.args(args);
            cmd
        }
        Command::Shell(script) => {
            let mut cmd = std::process::Command::new("/bin/sh");
            cmd.arg("-c").arg(script);
            cmd
        }
    };
    cmd.env_clear()
        .envs(how.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .process_group(0);
    match &how.user {
        Some(user) => become_user(&mut cmd, user, &how.cwd)?,
        None => {
            cmd.current_dir(&how.cwd);
        }
    }
    Ok(cmd)
}

/// std's `uid`/`gid` would drop the supplementary groups, so the child sets
/// all three itself, then enters the cwd as that user.
#[allow(
    unsafe_code,
    reason = "pre_exec runs between fork and exec; only async-signal-safe calls inside"
)]
fn become_user(cmd: &mut std::process::Command, user: &Identity, cwd: &Path) -> Result<()> {
    let (uid, gid, groups) = (user.uid, user.gid, user.groups.clone());
    let cwd = CString::new(cwd.as_os_str().as_bytes())
        .with_context(|| format!("cwd {} contains a NUL byte", cwd.display()))?;
    // SAFETY: the hook runs in the forked child before exec, where only
    // async-signal-safe calls are allowed. It makes only the setgroups, setgid,
    // setuid and chdir system calls, on values prepared here in the parent; it
    // neither allocates nor takes a lock (errors become io::Error from errno).
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(gid)?;
            nix::unistd::setuid(uid)?;
            nix::unistd::chdir(cwd.as_c_str())?;
            Ok(())
        });
    }
    Ok(())
}

fn spawn_error(e: std::io::Error, command: &Command, how: &Invocation) -> anyhow::Error {
    let program = match command {
        Command::Argv(argv) => argv.first().map_or("", String::as_str),
        Command::Shell(_) => "/bin/sh",
    };
    let hint = match (&how.user, e.kind()) {
        (Some(user), ErrorKind::PermissionDenied) => format!(
            "\nhint: switching to user `{}` needs the agent to run as root, and the user must be able to enter {} and run {program}",
            user.name,
            how.cwd.display()
        ),
        (_, ErrorKind::NotFound) => format!(
            "\nhint: the command is looked up in the PATH of the exec's environment (default {})",
            super::PATH
        ),
        _ => String::new(),
    };
    let as_user = how
        .user
        .as_ref()
        .map(|u| format!(" as user `{}`", u.name))
        .unwrap_or_default();
    anyhow::anyhow!(
        "cannot run `{program}`{as_user} in {}: {e}{hint}",
        how.cwd.display()
    )
}

/// The read end of the output pipe (non-blocking) and what came through it.
struct Pipe {
    file: std::fs::File,
    eof: bool,
    captured: Captured,
}

impl Pipe {
    /// Reads what is there now; returns how many bytes.
    fn drain(&mut self) -> Result<usize> {
        let mut buf = [0u8; 8192];
        let mut total = 0;
        for _ in 0..READS_PER_LOOK {
            if self.eof {
                break;
            }
            match self.file.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.captured.push(&buf[..n]);
                    total += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("cannot read the command's output"),
            }
        }
        Ok(total)
    }

    /// After the command exited: what its last writes left, waiting briefly
    /// for EOF (a background child may hold the pipe open for ever).
    fn drain_after_exit(&mut self) -> Result<()> {
        let deadline = Instant::now() + OUTPUT_AFTER_EXIT;
        loop {
            let got = self.drain()?;
            if self.eof || Instant::now() >= deadline {
                return Ok(());
            }
            if got == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

fn watch(child: &mut Child, pipe: &mut Pipe, timeout: Option<Duration>) -> Result<Ran> {
    let started = Instant::now();
    let mut nap = Duration::from_millis(1);
    loop {
        let got = pipe.drain()?;
        if let Some(status) = child.try_wait().context("cannot wait for the command")? {
            pipe.drain_after_exit()?;
            return Ok(Ran::Exited(status));
        }
        if timeout.is_some_and(|limit| started.elapsed() >= limit) {
            kill_group(child)?;
            pipe.drain()?;
            return Ok(Ran::TimedOut);
        }
        nap = match got {
            0 => (nap * 2).min(MAX_NAP),
            _ => Duration::from_millis(1),
        };
        std::thread::sleep(nap);
    }
}

/// SIGTERM to the whole group; SIGKILL to what is left after the grace.
fn kill_group(child: &mut Child) -> Result<()> {
    // The child leads its own group (process_group(0)): pgid == pid. The group
    // id cannot be reused while the leader is unreaped or any member lives.
    let group = Pid::from_raw(child.id() as i32);
    let _ = killpg(group, Signal::SIGTERM);
    if group_gone_within(child, group, KILL_GRACE) {
        return Ok(());
    }
    let _ = killpg(group, Signal::SIGKILL);
    child
        .wait()
        .context("cannot reap the command after killing it")?;
    // SIGKILL cannot be caught, but each member dies only when it is next
    // scheduled: wait for that, so the next resource never races a dying one.
    group_gone_within(child, group, KILL_SETTLE);
    Ok(())
}

/// Whether the group has no member left before `limit` has passed. A member
/// reparented to an init that does not reap zombies keeps it to the limit.
fn group_gone_within(child: &mut Child, group: Pid, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let _ = child.try_wait();
        if killpg(group, None) == Err(Errno::ESRCH) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
