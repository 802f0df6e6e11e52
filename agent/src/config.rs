//! The agent's settings: `/etc/drover/agent.toml` overlaid by command-line flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::cli::CommonArgs;

pub const DEFAULT_CONFIG: &str = "/etc/drover/agent.toml";
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8140";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/drover-agent";
pub const DEFAULT_LOCK_FILE: &str = "/run/drover-agent.lock";
pub const DEFAULT_CONTAINER_SOCKET: &str = "/var/run/docker.sock";

/// The configuration file as written; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub server: Option<String>,
    pub node: Option<String>,
    pub environment: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub lock_file: Option<PathBuf>,
    pub interval_secs: Option<u64>,
    pub splay_secs: Option<u64>,
    pub run_timeout_secs: Option<u64>,
    pub http_timeout_secs: Option<u64>,
    /// The Docker Engine API socket (or Podman's Docker-compatible one).
    pub container_socket: Option<PathBuf>,
}

impl FileConfig {
    /// Reads the configuration. The default file may be missing; an explicit one may not.
    pub fn load(explicit: Option<&Path>) -> Result<FileConfig> {
        let (path, required) = match explicit {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_CONFIG), false),
        };
        let text = match fs_err::read_to_string(path) {
            Ok(text) => text,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(FileConfig::default());
            }
            Err(e) => return Err(e).context("cannot read the agent configuration"),
        };
        FileConfig::parse(&text)
            .with_context(|| format!("invalid configuration {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<FileConfig> {
        // toml's message names the unknown key and lists the expected ones.
        Ok(toml::from_str(text)?)
    }
}

/// Resolved settings of one invocation.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: String,
    pub node: String,
    pub environment: Option<String>,
    pub state_dir: PathBuf,
    pub lock_file: PathBuf,
    pub noop: bool,
    pub interval: Duration,
    pub splay: Duration,
    pub run_timeout: Duration,
    pub http_timeout: Duration,
    pub container_socket: PathBuf,
}

/// Flags that override the file (`run` passes all of them, `apply` only the common ones).
#[derive(Debug, Default)]
pub struct Overrides<'a> {
    pub common: Option<&'a CommonArgs>,
    pub server: Option<&'a str>,
    pub environment: Option<&'a str>,
}

impl Settings {
    pub fn resolve(file: FileConfig, flags: Overrides<'_>) -> Result<Settings> {
        let common = flags.common.cloned().unwrap_or_default();
        let server = flags
            .server
            .map(str::to_owned)
            .or(file.server)
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            bail!("invalid server URL `{server}`\nhint: write it as http://HOST:PORT");
        }
        let node = match common.node.or(file.node) {
            Some(node) => node,
            None => crate::facts::hostname().context("cannot name this node")?,
        };
        if node.is_empty() || node.contains('/') {
            bail!("invalid node name `{node}`");
        }
        let explicit_state = common.state_dir.or(file.state_dir);
        let lock_file = match (common.lock_file.or(file.lock_file), &explicit_state) {
            (Some(lock), _) => lock,
            // Agents with separate state dirs must not contend for one global lock.
            (None, Some(state)) => state.join("run.lock"),
            (None, None) => PathBuf::from(DEFAULT_LOCK_FILE),
        };
        let interval = file.interval_secs.unwrap_or(1800);
        if interval == 0 {
            bail!("interval_secs must be at least 1");
        }
        Ok(Settings {
            server: server.trim_end_matches('/').to_owned(),
            node,
            environment: flags.environment.map(str::to_owned).or(file.environment),
            state_dir: explicit_state.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            lock_file,
            noop: common.noop,
            interval: Duration::from_secs(interval),
            splay: Duration::from_secs(file.splay_secs.unwrap_or(interval)),
            run_timeout: Duration::from_secs(file.run_timeout_secs.unwrap_or(3600)),
            http_timeout: Duration::from_secs(file.http_timeout_secs.unwrap_or(30)),
            container_socket: file
                .container_socket
                .unwrap_or_else(|| container_socket(std::env::var("DOCKER_HOST").ok())),
        })
    }
}

/// `unix://PATH` from DOCKER_HOST, as the docker CLI reads it; else the default.
fn container_socket(docker_host: Option<String>) -> PathBuf {
    docker_host
        .as_deref()
        .and_then(|host| host.strip_prefix("unix://"))
        .map_or_else(|| PathBuf::from(DEFAULT_CONTAINER_SOCKET), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_socket_comes_from_the_file_then_docker_host() {
        let file = FileConfig::parse("container_socket = \"/run/podman/podman.sock\"\n").unwrap();
        assert_eq!(
            file.container_socket.as_deref(),
            Some(Path::new("/run/podman/podman.sock"))
        );
        let from_env = container_socket(Some("unix:///run/user/1000/docker.sock".into()));
        assert_eq!(from_env, Path::new("/run/user/1000/docker.sock"));
        for other in [None, Some("tcp://10.0.0.1:2375".to_owned())] {
            assert_eq!(container_socket(other), Path::new(DEFAULT_CONTAINER_SOCKET));
        }
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = FileConfig::parse("server = \"http://x\"\nintervall_secs = 5\n").unwrap_err();
        assert!(err.to_string().contains("intervall_secs"), "{err}");
    }

    #[test]
    fn explicit_missing_config_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = FileConfig::load(Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert!(format!("{err:#}").contains("nope.toml"), "{err:#}");
    }

    #[test]
    fn flags_override_file_and_state_dir_moves_the_lock() {
        let file = FileConfig::parse(
            "server = \"http://file:1\"\nnode = \"n1\"\nstate_dir = \"/s\"\ninterval_secs = 60\n",
        )
        .unwrap();
        let common = CommonArgs {
            node: Some("n2".into()),
            ..Default::default()
        };
        let s = Settings::resolve(
            file,
            Overrides {
                common: Some(&common),
                server: Some("http://flag:2/"),
                environment: None,
            },
        )
        .unwrap();
        assert_eq!(s.server, "http://flag:2");
        assert_eq!(s.node, "n2");
        assert_eq!(s.lock_file, PathBuf::from("/s/run.lock"));
        assert_eq!(
            s.splay,
            Duration::from_secs(60),
            "splay defaults to the interval"
        );
    }

    #[test]
    fn defaults_apply_without_file() {
        let common = CommonArgs {
            node: Some("n".into()),
            ..Default::default()
        };
        let s = Settings::resolve(
            FileConfig::default(),
            Overrides {
                common: Some(&common),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.server, DEFAULT_SERVER);
        assert_eq!(s.lock_file, PathBuf::from(DEFAULT_LOCK_FILE));
        assert_eq!(s.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(s.interval, Duration::from_secs(1800));
    }
}
