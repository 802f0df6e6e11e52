//! The real `drover-server` under test: started on 127.0.0.1:0 over a
//! fresh data directory, its peak RSS and CPU time read from /proc,
//! stopped on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

pub(crate) const ENROLLMENT_TOKEN: &str = "fleet-simulator-enrollment-token";

pub(crate) struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl Server {
    /// `serve --repo REPO` with an enrollment token and `extra_toml` in its
    /// config; `insecure` serves plain HTTP instead of mutual TLS.
    pub(crate) fn start(
        bin: &Path,
        repo: &Path,
        data_dir: &Path,
        insecure: bool,
        extra_toml: &str,
    ) -> Result<Server> {
        fs_err::create_dir_all(data_dir)?;
        let token = data_dir.join("enrollment-token");
        fs_err::write(&token, format!("{ENROLLMENT_TOKEN}\n"))?;
        let config = data_dir.join("server.toml");
        fs_err::write(
            &config,
            format!(
                "enrollment_token_file = {:?}\n{extra_toml}",
                token.display().to_string()
            ),
        )?;
        let log = fs_err::File::create(data_dir.join("server.log"))?;
        let mut command = Command::new(bin);
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--refresh-interval-secs",
                "3600",
            ])
            .arg("--config")
            .arg(&config)
            .arg("--repo")
            .arg(repo)
            .arg("--data-dir")
            .arg(data_dir)
            // DROVER_FLEET_SERVER_LOG: another filter, to look into a run.
            .env(
                "RUST_LOG",
                std::env::var("DROVER_FLEET_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.into_parts().0));
        if insecure {
            command.arg("--insecure-http");
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(addr) = line
            .trim()
            .strip_prefix("drover-server listening on ")
            .and_then(|url| url.split_once("://"))
            .and_then(|(_, addr)| addr.parse().ok())
        else {
            let _ = child.kill();
            bail!(
                "drover-server did not announce its address (got {line:?}); see {}",
                data_dir.join("server.log").display()
            );
        };
        Ok(Server {
            child,
            addr,
            data_dir: data_dir.to_owned(),
        })
    }

    /// The operator token the server made at its first start (for the webhook).
    pub(crate) fn operator_token(&self) -> Result<String> {
        let text = fs_err::read_to_string(self.data_dir.join("operator-token"))?;
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_owned)
            .with_context(|| {
                format!(
                    "{} holds no token",
                    self.data_dir.join("operator-token").display()
                )
            })
    }

    pub(crate) fn ca_pem(&self) -> Result<String> {
        Ok(fs_err::read_to_string(self.data_dir.join("ca/ca.crt.pem"))?)
    }

    /// `VmHWM` (peak resident set) and `VmRSS` of the server, in KiB.
    pub(crate) fn memory_kib(&self) -> Result<(u64, u64)> {
        let status = fs_err::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no {name} in /proc/{}/status", self.child.id()))
        };
        Ok((field("VmHWM:")?, field("VmRSS:")?))
    }

    /// User plus system CPU seconds the server has used so far.
    pub(crate) fn cpu_secs(&self) -> Result<f64> {
        Ok(stat_of(self.child.id())?.0 as f64 / clock_ticks())
    }
}

/// Clock ticks a second, the unit of /proc's CPU times.
fn clock_ticks() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as f64,
        _ => 100.0,
    }
}

/// User plus system CPU seconds of process `pid` and of its children so
/// far: its own, those of the children it waited for, and those of the
/// children still running (PostgreSQL: the postmaster and its backends).
pub(crate) fn tree_cpu_secs(pid: u32) -> Result<f64> {
    let (own, waited, _) = stat_of(pid)?;
    let mut ticks = own + waited;
    for entry in fs_err::read_dir("/proc")? {
        let Some(child) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process that ended meanwhile is counted in `waited` next time.
        if let Ok((own, _, parent)) = stat_of(child)
            && parent == pid
        {
            ticks += own;
        }
    }
    Ok(ticks as f64 / clock_ticks())
}

/// From /proc/PID/stat: (utime + stime, cutime + cstime, ppid) in ticks.
fn stat_of(pid: u32) -> Result<(u64, u64, u32)> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command name's closing parenthesis: state is field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .with_context(|| format!("/proc/{pid}/stat does not parse"))?;
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i - 3)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat has no field {i}"))
    };
    Ok((
        field(14)? + field(15)?,
        field(16)? + field(17)?,
        u32::try_from(field(4)?)?,
    ))
}

/// User plus system CPU seconds this process (the simulator) has used.
pub(crate) fn own_cpu_secs() -> Result<f64> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(secs(usage.user_time()) + secs(usage.system_time()))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
