//! Autosign: when a certificate request is signed without an operator.
//!
//! Off by default (every request waits for `drover-server ca sign`). A shared
//! enrollment token (`enrollment_token_file`) signs a request that carries
//! it; a policy command (`autosign_command`) gets the node name as its last
//! argument and the request PEM on stdin, and signs it by exiting 0 within
//! [`COMMAND_TIMEOUT`]. A token that was sent but does not match is refused
//! outright (HTTP 403), never passed on to the command.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::AsyncWriteExt;

use super::csr::CheckedCsr;
use crate::config::Config;
use crate::credentials::Tokens;

/// How long the policy command may take before it is killed and the request waits.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of the command's stderr is logged.
const STDERR_LOGGED: usize = 2000;

/// What the policy decided, with the reason that is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Sign(String),
    Pending(String),
    /// A wrong enrollment token.
    Refuse(String),
}

/// The autosign settings of a running server.
#[derive(Debug, Default)]
pub struct Autosign {
    tokens: Option<Tokens>,
    token_file: Option<PathBuf>,
    command: Option<Vec<String>>,
    timeout: Duration,
}

impl Autosign {
    /// Reads the enrollment token file, if one is configured.
    pub fn from_config(config: &Config) -> anyhow::Result<Autosign> {
        let tokens = match &config.enrollment_token_file {
            Some(path) => Some(Tokens::read(path, "enrollment")?),
            None => None,
        };
        if let Some(command) = &config.autosign_command
            && command.first().is_none_or(|program| program.is_empty())
        {
            bail!(
                "autosign_command is empty\nhint: give the program and its arguments, e.g. [\"/usr/local/bin/drover-autosign\"]"
            );
        }
        Ok(Autosign {
            tokens,
            token_file: config.enrollment_token_file.clone(),
            command: config.autosign_command.clone(),
            timeout: COMMAND_TIMEOUT,
        })
    }

    /// The same settings with another command timeout (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Autosign {
        self.timeout = timeout;
        self
    }

    /// Decides for `csr`, sent with `token` (the request's bearer token, if any).
    pub async fn decide(&self, csr: &CheckedCsr, token: Option<&str>) -> Decision {
        if let Some(token) = token {
            return match &self.tokens {
                Some(tokens) if tokens.accepts(token) => {
                    Decision::Sign("the enrollment token matches".into())
                }
                Some(_) => {
                    // The file is for the operator's log, never for the
                    // unauthenticated caller.
                    tracing::info!(
                        token_file = %self.token_file.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
                        name = csr.name(),
                        "refused an enrollment token that is not in the token file"
                    );
                    Decision::Refuse("the enrollment token does not match the server's".into())
                }
                None => Decision::Refuse(
                    "an enrollment token was sent but this server has none (enrollment_token_file is not set)".into(),
                ),
            };
        }
        match &self.command {
            Some(command) => self.ask_command(command, csr).await,
            None => Decision::Pending("autosign is off".into()),
        }
    }

    async fn ask_command(&self, command: &[String], csr: &CheckedCsr) -> Decision {
        match run_command(command, csr.name(), csr.pem().as_bytes(), self.timeout).await {
            Ok(Outcome::Exited(0, _)) => Decision::Sign(format!("{} exited 0", command[0])),
            Ok(Outcome::Exited(code, stderr)) => {
                Decision::Pending(format!("{} exited {code}: {}", command[0], stderr.trim()))
            }
            Ok(Outcome::TimedOut) => Decision::Pending(format!(
                "{} did not finish within {:?} and was killed",
                command[0], self.timeout
            )),
            Err(e) => Decision::Pending(format!("{} could not run: {e:#}", command[0])),
        }
    }
}

enum Outcome {
    /// Exit code (-1 when killed by a signal) and the start of stderr.
    Exited(i32, String),
    TimedOut,
}

/// Runs `command NAME` in its own process group with `stdin` as input; the
/// whole group is killed when `timeout` passes.
async fn run_command(
    command: &[String],
    name: &str,
    stdin: &[u8],
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .arg(name)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", command[0]))?;
    let pid = child.id();
    let mut input = child.stdin.take().context("no stdin pipe")?;
    let stdin = stdin.to_vec();
    let feed = async move {
        // The command may exit without reading its input.
        let _ = input.write_all(&stdin).await;
        drop(input);
    };
    let run = async {
        feed.await;
        child.wait_with_output().await
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(output) => {
            let output = output.with_context(|| format!("waiting for {}", command[0]))?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr: String = stderr.chars().take(STDERR_LOGGED).collect();
            Ok(Outcome::Exited(output.status.code().unwrap_or(-1), stderr))
        }
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let group = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
            Ok(Outcome::TimedOut)
        }
    }
}
