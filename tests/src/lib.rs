//! Harness for the end-to-end tests: temporary git repositories, the real
//! `drover-server` on `127.0.0.1:0`, and the real `drover-agent` binary.
//!
//! The binaries are the ones `cargo build --workspace --bins` left next to
//! the test executable (`scripts/test` builds them first).

mod agent;
pub mod browser;
pub mod docker;
pub mod lockfile;
pub mod node;
pub mod postgres;
mod server;

pub use agent::{Agent, Daemon};
pub use server::{Credential, Server};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// Path of a workspace binary, built next to the test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/e2e-HASH -> target/debug/NAME
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing\nhint: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn from(out: std::process::Output) -> Output {
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, showing everything the command printed if it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Output {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A git repository in a temporary directory, on branch `main`.
pub struct GitRepo {
    pub path: PathBuf,
}

impl GitRepo {
    pub fn init(path: &Path) -> GitRepo {
        fs_err::create_dir_all(path).unwrap();
        let repo = GitRepo {
            path: path.to_owned(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub fn write(&self, rel: &str, content: &str) -> &GitRepo {
        let path = self.path.join(rel);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, content).unwrap();
        self
    }

    /// Commits everything and returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=drover tests",
                "-c",
                "user.email=tests@drover.invalid",
            ])
            .args(args)
            .current_dir(&self.path)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// The entry of resource `id` in a report.
#[track_caller]
pub fn report_entry<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in report {report:#}"))
}

/// The array of report summaries, whether the route wraps it or not.
pub fn report_list(list: &Value) -> &Vec<Value> {
    list.as_array()
        .or_else(|| list["reports"].as_array())
        .unwrap_or_else(|| panic!("not a report list: {list}"))
}

/// The body of a report of run `run_id` of `node` with no resources, as an
/// agent would post it.
pub fn report_body(node: &str, run_id: &str) -> Vec<u8> {
    serde_json::json!({
        "run_id": run_id, "node": node, "environment": "main", "commit": "c1",
        "catalog_version": "v1", "noop": false,
        "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z",
        "status": "unchanged", "cached_catalog": "not_used", "agent_version": "0.1.0",
        "resources": []
    })
    .to_string()
    .into_bytes()
}

/// `path` as a TOML basic string.
pub fn toml_str(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).unwrap()
}

/// `drover-agent apply` with the given arguments.
pub fn apply(args: &[&str], state_dir: &Path) -> Output {
    let out = Command::new(bin("drover-agent"))
        .arg("apply")
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .expect("drover-agent runs");
    Output::from(out)
}

/// A client for plain HTTP on loopback (the metrics address). reqwest wants
/// a TLS configuration even so (it has no crypto provider of its own here):
/// this one trusts no one.
pub fn plain_http_client() -> reqwest::blocking::Client {
    client_over(tls_trusting(rustls::RootCertStore::empty()).with_no_client_auth())
}

/// A rustls configuration (ring) whose only roots are `roots`.
pub(crate) fn tls_trusting(
    roots: rustls::RootCertStore,
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
}

/// The tests' client over `tls`: no redirect followed, a 30 s bound on
/// each request.
pub(crate) fn client_over(tls: rustls::ClientConfig) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

/// A request's error with its causes (reqwest's own message names only the URL).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}
