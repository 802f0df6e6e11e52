//! The real `drover-agent` for a test: one node's configuration and state
//! directory, single runs, and a daemon killed when the test ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{Credential, Output, Server, bin};

/// Runs `drover-agent` for one node with its own state directory and an
/// `agent.toml` that enrolls it with the server's token and CA.
pub struct Agent {
    pub node: String,
    pub server: String,
    pub state_dir: PathBuf,
    pub config: PathBuf,
}

impl Agent {
    pub fn new(node: &str, server: &Server, state_dir: &Path) -> Agent {
        let config = state_dir.with_extension("toml");
        fs_err::create_dir_all(config.parent().unwrap()).unwrap();
        fs_err::write(&config, server.agent_config()).unwrap();
        Agent {
            node: node.to_owned(),
            server: server.url.clone(),
            state_dir: state_dir.to_owned(),
            config,
        }
    }

    /// `run --once --detailed-exitcodes` plus `extra`.
    pub fn run(&self, extra: &[&str]) -> Output {
        let mut cmd = Command::new(bin("drover-agent"));
        cmd.args(["run", "--once", "--detailed-exitcodes"])
            .arg("--config")
            .arg(&self.config)
            .args(["--server", &self.server, "--node", &self.node])
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(extra);
        Output::from(cmd.output().expect("drover-agent runs"))
    }

    /// The agent's client certificate and key (after its first run).
    pub fn credential(&self) -> Credential {
        Credential::Cert {
            cert: self.state_dir.join("tls/cert.pem"),
            key: self.state_dir.join("tls/key.pem"),
        }
    }
}

/// A `drover-agent run --config CONFIG` daemon, its output in a file, killed
/// when the test ends (even by a failed assertion).
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts the daemon of `config`; its stdout and stderr go to `log`.
    pub fn start(config: &Path, log: &Path) -> Daemon {
        let out = fs_err::File::create(log).unwrap().into_parts().0;
        let child = Command::new(bin("drover-agent"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        Daemon {
            child,
            log: log.to_owned(),
        }
    }

    /// What it printed so far.
    pub fn log(&self) -> String {
        fs_err::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
