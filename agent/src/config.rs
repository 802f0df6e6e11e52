//! The agent's settings: `/etc/drover/agent.toml` overlaid by command-line flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use crate::cli::{CommonArgs, TlsArgs};

pub(crate) const DEFAULT_CONFIG: &str = "/etc/drover/agent.toml";
pub(crate) const DEFAULT_SERVER: &str = "https://127.0.0.1:8140";
pub(crate) const DEFAULT_WAIT_FOR_CERT_SECS: u64 = 120;
pub(crate) const DEFAULT_RENEW_BEFORE_DAYS: u64 = 30;
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/drover-agent";
pub(crate) const DEFAULT_LOCK_FILE: &str = "/run/drover-agent.lock";
pub(crate) const DEFAULT_CONTAINER_SOCKET: &str = "/var/run/docker.sock";
/// The metrics textfile's name in the state directory, unless `metrics_textfile` moves it.
pub(crate) const DEFAULT_METRICS_TEXTFILE: &str = "drover-agent.prom";

/// The configuration file as written; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// One server URL, or a list tried in order (`server = ["https://a:8140", "https://b:8140"]`).
    pub server: Option<ServerList>,
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
    /// The server's CA certificate (PEM), distributed by the operator; pinned at enrollment.
    pub ca_file: Option<PathBuf>,
    /// sha256 (hex) of the CA certificate's DER, checked when the CA is fetched on first use.
    pub ca_fingerprint: Option<String>,
    /// A file holding the enrollment token the server autosigns with.
    pub enrollment_token_file: Option<PathBuf>,
    /// How long a run waits for a pending certificate request to be signed (0: not at all).
    pub wait_for_cert_secs: Option<u64>,
    /// Renew the certificate when it expires within this many days.
    pub renew_before_days: Option<u64>,
    /// Plain HTTP to a loopback server: no TLS, no identity. For development only.
    pub insecure_http: Option<bool>,
    /// Where each run writes its metrics for node-exporter's textfile collector
    /// (default STATE_DIR/drover-agent.prom; "" writes none).
    pub metrics_textfile: Option<PathBuf>,
    /// In daemon mode, hold a long-poll on the catalog version so a push
    /// starts a run within about a second (default true).
    pub watch: Option<bool>,
    /// How often a run ignores the file metadata cache and hashes every
    /// managed file (0: every run).
    pub verify_interval_secs: Option<u64>,
    /// `text` (default) or `json`: one JSON object per message on stdout.
    pub log_format: Option<crate::output::LogFormat>,
    /// External facts: `*.json`, `*.toml` and executables (default /etc/drover/facts.d).
    pub facts_dir: Option<PathBuf>,
}

/// `server` as written: one URL or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum ServerList {
    One(String),
    Several(Vec<String>),
}

impl ServerList {
    fn into_vec(self) -> Vec<String> {
        match self {
            ServerList::One(url) => vec![url],
            ServerList::Several(urls) => urls,
        }
    }
}

impl FileConfig {
    /// Reads the configuration. The default file may be missing; an explicit one may not.
    pub(crate) fn load(explicit: Option<&Path>) -> Result<FileConfig> {
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

    pub(crate) fn parse(text: &str) -> Result<FileConfig> {
        // toml's message names the unknown key and lists the expected ones.
        Ok(toml::from_str(text)?)
    }
}

/// Resolved settings of one invocation.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The server list, tried in order (see [`crate::http`]); never empty.
    pub servers: Vec<String>,
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
    pub tls: TlsSettings,
    /// The server URL is plain http:// on a loopback address (`--insecure-http`).
    pub insecure_http: bool,
    /// The Prometheus textfile each run (re)writes; `None` when turned off.
    pub metrics_textfile: Option<PathBuf>,
    /// The daemon watches its catalog version (`run --once` never does).
    pub watch: bool,
    /// At least this often a run hashes every managed file, trusting no
    /// cached metadata (see [`crate::filecache`]).
    pub verify_interval: Duration,
    pub log_format: crate::output::LogFormat,
    pub facts_dir: PathBuf,
    /// How long a run waits for another to release the run lock.
    pub wait_for_lock: Duration,
    /// `--tags`: converge only these (see [`crate::tags`]); empty for all.
    pub tags: Vec<String>,
}

/// How this node gets and keeps its identity (see [`crate::identity`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    /// Lowercase hex, without separators.
    pub ca_fingerprint: Option<String>,
    pub enrollment_token_file: Option<PathBuf>,
    pub wait_for_cert: Duration,
    pub renew_before: Duration,
}

/// Flags that override the file (`run` passes all of them, `apply` only the common ones).
#[derive(Debug, Default)]
pub(crate) struct Overrides<'a> {
    pub common: Option<&'a CommonArgs>,
    /// `--server`, given once or more (empty: the file's).
    pub servers: &'a [String],
    pub environment: Option<&'a str>,
    pub tls: Option<&'a TlsArgs>,
}

impl Settings {
    pub(crate) fn resolve(file: FileConfig, flags: Overrides<'_>) -> Result<Settings> {
        let common = flags.common.cloned().unwrap_or_default();
        let tls_flags = flags.tls.cloned().unwrap_or_default();
        let servers = if flags.servers.is_empty() {
            file.server
                .map_or_else(|| vec![DEFAULT_SERVER.to_owned()], ServerList::into_vec)
        } else {
            flags.servers.to_vec()
        };
        if servers.is_empty() {
            bail!(
                "`server` is an empty list\nhint: name at least one server, as server = \"https://HOST:8140\""
            );
        }
        let insecure_http = tls_flags.insecure_http || file.insecure_http.unwrap_or(false);
        for server in &servers {
            check_server_url(server, insecure_http)?;
        }
        let plain = servers.iter().filter(|s| s.starts_with("http://")).count();
        let plain_http = plain != 0;
        if plain_http && plain != servers.len() {
            bail!(
                "the server list mixes http:// and https:// URLs\nhint: every server of the list must be reached the same way"
            );
        }
        let node = resolve_node(common.node, file.node)?;
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
        let tls = TlsSettings {
            ca_file: tls_flags.ca_file.or(file.ca_file),
            ca_fingerprint: tls_flags
                .ca_fingerprint
                .or(file.ca_fingerprint)
                .map(|f| parse_fingerprint(&f))
                .transpose()?,
            enrollment_token_file: tls_flags
                .enrollment_token_file
                .or(file.enrollment_token_file),
            wait_for_cert: Duration::from_secs(
                tls_flags
                    .wait_for_cert_secs
                    .or(file.wait_for_cert_secs)
                    .unwrap_or(DEFAULT_WAIT_FOR_CERT_SECS),
            ),
            renew_before: Duration::from_secs(
                file.renew_before_days
                    .unwrap_or(DEFAULT_RENEW_BEFORE_DAYS)
                    .saturating_mul(86_400),
            ),
        };
        let state_dir = explicit_state.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let metrics_textfile = match file.metrics_textfile {
            None => Some(state_dir.join(DEFAULT_METRICS_TEXTFILE)),
            Some(path) if path.as_os_str().is_empty() => None,
            Some(path) if path.is_relative() => bail!(
                "metrics_textfile `{}` is a relative path\nhint: give the absolute path of a file in node-exporter's --collector.textfile.directory, or \"\" to write none",
                path.display()
            ),
            Some(path) => Some(path),
        };
        Ok(Settings {
            servers: servers
                .iter()
                .map(|s| s.trim_end_matches('/').to_owned())
                .collect(),
            node,
            environment: flags.environment.map(str::to_owned).or(file.environment),
            state_dir,
            lock_file,
            noop: common.noop,
            interval: Duration::from_secs(interval),
            splay: Duration::from_secs(file.splay_secs.unwrap_or(interval)),
            run_timeout: Duration::from_secs(file.run_timeout_secs.unwrap_or(3600)),
            http_timeout: Duration::from_secs(file.http_timeout_secs.unwrap_or(30)),
            container_socket: file
                .container_socket
                .unwrap_or_else(|| container_socket(std::env::var("DOCKER_HOST").ok())),
            tls,
            insecure_http: plain_http,
            metrics_textfile,
            watch: file.watch.unwrap_or(true),
            verify_interval: Duration::from_secs(
                file.verify_interval_secs
                    .unwrap_or(crate::filecache::DEFAULT_VERIFY_INTERVAL_SECS),
            ),
            log_format: common.log_format.or(file.log_format).unwrap_or_default(),
            facts_dir: file
                .facts_dir
                .unwrap_or_else(|| PathBuf::from(crate::facts::DEFAULT_FACTS_DIR)),
            wait_for_lock: Duration::from_secs(common.wait_for_lock.unwrap_or(0)),
            tags: common.tags.clone(),
        })
    }
}

/// https:// always; http:// only when asked for as insecure, and only to a
/// loopback address (nothing else can be reached without TLS).
fn check_server_url(server: &str, insecure_http: bool) -> Result<()> {
    let url = reqwest::Url::parse(server).map_err(|e| {
        anyhow!("invalid server URL `{server}`: {e}\nhint: write it as https://HOST:PORT")
    })?;
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() {
        bail!(
            "invalid server URL `{server}`: it names no host\nhint: write it as https://HOST:PORT"
        );
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if !insecure_http => bail!(
            "the server URL `{server}` is plain HTTP, which is insecure: nothing proves the server is yours and anyone on the path can read and change the catalogs\nhint: use https://, or pass --insecure-http (loopback addresses only) for development"
        ),
        "http" if !is_loopback_ip(host) => bail!(
            "--insecure-http (insecure_http) works only with a loopback address such as 127.0.0.1 or [::1], not `{host}` in `{server}`\nhint: use https:// for any other server"
        ),
        "http" => Ok(()),
        _ => bail!("invalid server URL `{server}`: the scheme must be https://"),
    }
}

fn is_loopback_ip(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The node name from `--node`, the file's `node`, or the hostname; a plain host name.
fn resolve_node(flag: Option<String>, file: Option<String>) -> Result<String> {
    let (node, source) = match (flag, file) {
        (Some(node), _) => (node, "--node"),
        (None, Some(node)) => (node, "`node` in the configuration"),
        (None, None) => (
            crate::facts::hostname().context("cannot name this node")?,
            "this machine's hostname",
        ),
    };
    drover_catalog::names::check_node_name(&node).map_err(|e| {
        anyhow!("invalid node name from {source}: {e}\nhint: set `node` in agent.toml or pass --node NAME")
    })?;
    Ok(node)
}

/// A sha256 fingerprint as hex, with or without `:` separators, any case.
pub(crate) fn parse_fingerprint(text: &str) -> Result<String> {
    let Some(sha) = drover_catalog::sha::Sha256::parse_typed(text) else {
        bail!(
            "invalid ca_fingerprint `{text}`: expected the sha256 of the CA certificate's DER as 64 hex digits\nhint: `openssl x509 -in ca.crt.pem -outform der | sha256sum` prints it on the server"
        );
    };
    Ok(sha.to_string())
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
            "server = \"https://file:1\"\nnode = \"n1\"\nstate_dir = \"/s\"\ninterval_secs = 60\n",
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
                servers: &["https://flag:2/".to_owned()],
                environment: None,
                tls: None,
            },
        )
        .unwrap();
        assert_eq!(s.servers, ["https://flag:2"]);
        assert_eq!(s.node, "n2");
        assert_eq!(s.lock_file, PathBuf::from("/s/run.lock"));
        assert_eq!(
            s.splay,
            Duration::from_secs(60),
            "splay defaults to the interval"
        );
    }

    #[test]
    fn a_server_list_is_kept_in_order_and_every_url_is_checked() {
        let resolve = |toml: &str| {
            let common = CommonArgs {
                node: Some("n".into()),
                ..Default::default()
            };
            Settings::resolve(
                FileConfig::parse(toml)?,
                Overrides {
                    common: Some(&common),
                    ..Default::default()
                },
            )
        };
        let s = resolve("server = [\"https://a:8140/\", \"https://b:8140\"]\n").unwrap();
        assert_eq!(s.servers, ["https://a:8140", "https://b:8140"]);
        let err = resolve("server = [\"https://a:8140\", \"http://b:8140\"]\n").unwrap_err();
        assert!(format!("{err:#}").contains("http://b:8140"), "{err:#}");
        let err = resolve("server = []\n").unwrap_err();
        assert!(format!("{err:#}").contains("empty list"), "{err:#}");
        let err = resolve(
            "insecure_http = true\nserver = [\"http://127.0.0.1:1\", \"https://127.0.0.1:2\"]\n",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("mixes"), "{err:#}");
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
        assert_eq!(s.servers, [DEFAULT_SERVER]);
        assert_eq!(s.lock_file, PathBuf::from(DEFAULT_LOCK_FILE));
        assert_eq!(s.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(s.interval, Duration::from_secs(1800));
        assert!(!s.insecure_http);
        assert_eq!(s.tls.wait_for_cert, Duration::from_secs(120));
        assert_eq!(s.tls.renew_before, Duration::from_secs(30 * 86_400));
        assert!(s.tls.ca_file.is_none() && s.tls.enrollment_token_file.is_none());
    }

    #[test]
    fn plain_http_only_when_asked_for_and_only_on_loopback() {
        for ok in ["https://drover.example:8140", "https://10.0.0.1"] {
            check_server_url(ok, false).unwrap();
        }
        for loopback in [
            "http://127.0.0.1:8140",
            "http://127.1.2.3",
            "http://[::1]:8140",
        ] {
            check_server_url(loopback, true).unwrap();
            let err = check_server_url(loopback, false).unwrap_err().to_string();
            assert!(
                err.contains("insecure") && err.contains("--insecure-http"),
                "{err}"
            );
        }
        for remote in [
            "http://10.0.0.1:8140",
            "http://localhost:8140",
            "http://drover:8140",
        ] {
            let err = check_server_url(remote, true).unwrap_err().to_string();
            assert!(err.contains("only with a loopback address"), "{err}");
        }
        for bad in ["ftp://x", "drover:8140", "https://"] {
            assert!(check_server_url(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_keys_come_from_the_file_and_flags_win() {
        let file = FileConfig::parse(concat!(
            "node = \"n1\"\n",
            "ca_file = \"/etc/drover/ca.pem\"\n",
            "ca_fingerprint = \"AB:CD\"\n",
        ))
        .unwrap();
        let err = Settings::resolve(file, Overrides::default()).unwrap_err();
        assert!(
            err.to_string().contains("invalid ca_fingerprint `AB:CD`"),
            "{err}"
        );

        let colons = ["AB"; 32].join(":");
        let file = FileConfig::parse(&format!(
            "node = \"n1\"\nca_file = \"/etc/drover/ca.pem\"\nca_fingerprint = \"{colons}\"\nenrollment_token_file = \"/etc/drover/token\"\nwait_for_cert_secs = 5\nrenew_before_days = 7\ninsecure_http = true\nserver = \"http://127.0.0.1:8140\"\n"
        ))
        .unwrap();
        let flags = TlsArgs {
            wait_for_cert_secs: Some(0),
            enrollment_token_file: Some("/run/token".into()),
            ..Default::default()
        };
        let s = Settings::resolve(
            file,
            Overrides {
                tls: Some(&flags),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(s.insecure_http);
        assert_eq!(
            s.tls.ca_file.as_deref(),
            Some(Path::new("/etc/drover/ca.pem"))
        );
        assert_eq!(s.tls.ca_fingerprint, Some("ab".repeat(32)));
        assert_eq!(
            s.tls.enrollment_token_file.as_deref(),
            Some(Path::new("/run/token"))
        );
        assert_eq!(s.tls.wait_for_cert, Duration::ZERO);
        assert_eq!(s.tls.renew_before, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn the_metrics_textfile_defaults_to_the_state_dir_and_empty_turns_it_off() {
        let resolve = |text: &str| {
            let file = FileConfig::parse(&format!("node = \"n1\"\nstate_dir = \"/s\"\n{text}"));
            Settings::resolve(file.unwrap(), Overrides::default())
        };
        assert_eq!(
            resolve("").unwrap().metrics_textfile.as_deref(),
            Some(Path::new("/s/drover-agent.prom"))
        );
        let moved = resolve("metrics_textfile = \"/var/lib/node-exporter/textfile/drover.prom\"\n");
        assert_eq!(
            moved.unwrap().metrics_textfile.as_deref(),
            Some(Path::new("/var/lib/node-exporter/textfile/drover.prom"))
        );
        assert_eq!(
            resolve("metrics_textfile = \"\"\n")
                .unwrap()
                .metrics_textfile,
            None
        );
        let err = resolve("metrics_textfile = \"drover.prom\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("metrics_textfile `drover.prom` is a relative path"),
            "{err}"
        );
    }

    #[test]
    fn the_daemon_watches_unless_the_file_says_not_to() {
        let resolve = |text: &str| {
            let file = FileConfig::parse(&format!("node = \"n1\"\n{text}")).unwrap();
            Settings::resolve(file, Overrides::default()).unwrap().watch
        };
        assert!(resolve(""));
        assert!(!resolve("watch = false\n"));
        assert!(FileConfig::parse("watch = \"yes\"\n").is_err());
    }

    #[test]
    fn a_node_name_is_a_host_name_and_the_error_names_its_source() {
        assert_eq!(
            resolve_node(Some("web-1.example".into()), None).unwrap(),
            "web-1.example"
        );
        let err = resolve_node(Some("a/b".into()), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("from --node") && err.contains("'/'"), "{err}");
        let err = resolve_node(None, Some("-x".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("from `node` in the configuration"), "{err}");
    }
}
