//! The real `drover-server` under test: started on 127.0.0.1:0 over a
//! fresh data directory, its peak RSS read from /proc, stopped on drop.

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
            .env("RUST_LOG", "warn")
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
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
