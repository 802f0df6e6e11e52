//! Harness for the end-to-end tests: temporary git repositories, the real
//! `drover-server` on `127.0.0.1:0`, and the real `drover-agent` binary.
//!
//! The binaries are the ones `cargo build --workspace --bins` left next to
//! the test executable (`scripts/test` builds them first).

pub mod browser;
pub mod docker;
pub mod lockfile;
pub mod node;
pub mod postgres;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
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

/// A running `drover-server serve` with mutual TLS and its own CA,
/// stopped when dropped. Agents enroll with its enrollment token; operator
/// requests carry its operator token.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// `https://ADDR`.
    pub url: String,
    repo: PathBuf,
    data_dir: PathBuf,
    extra_toml: String,
    extra_args: Vec<String>,
}

/// What a request presents to the server.
#[derive(Debug, Clone)]
pub enum Credential {
    None,
    /// `Authorization: Bearer TOKEN`.
    Token(String),
    /// A client certificate and its key (PEM files).
    Cert {
        cert: PathBuf,
        key: PathBuf,
    },
}

impl Server {
    /// Starts a server on a free loopback port.
    pub fn start(repo: &Path, data_dir: &Path) -> Server {
        Server::start_on(repo, data_dir, "127.0.0.1:0")
    }

    pub fn start_on(repo: &Path, data_dir: &Path, listen: &str) -> Server {
        Server::start_with(repo, data_dir, listen, "", &[])
    }

    /// A server whose server.toml also holds `extra_toml`, started with `extra_args`.
    pub fn start_with(
        repo: &Path,
        data_dir: &Path,
        listen: &str,
        extra_toml: &str,
        extra_args: &[&str],
    ) -> Server {
        fs_err::create_dir_all(data_dir).unwrap();
        let log = fs_err::File::create(data_dir.join("server.log")).unwrap();
        let stderr = Stdio::from(log.into_parts().0);
        Server::start_with_stderr(repo, data_dir, listen, extra_toml, extra_args, stderr)
    }

    /// [`Server::start_with`] with the server's stderr on `stderr` (a full
    /// device, a pipe) instead of DATA/server.log.
    pub fn start_with_stderr(
        repo: &Path,
        data_dir: &Path,
        listen: &str,
        extra_toml: &str,
        extra_args: &[&str],
        stderr: Stdio,
    ) -> Server {
        fs_err::create_dir_all(data_dir).unwrap();
        let config = Server::write_config(data_dir, listen, extra_toml);
        // Over PostgreSQL, a database of its own, kept across restarts.
        let mut extra_args: Vec<String> = extra_args.iter().map(|a| (*a).to_owned()).collect();
        if !extra_args.iter().any(|a| a == "--database")
            && let Some(url) = postgres::fresh_database()
        {
            extra_args.extend(["--database".to_owned(), url]);
        }
        let mut child = Command::new(bin("drover-server"))
            .args([
                "serve",
                "--listen",
                listen,
                "--refresh-interval-secs",
                "3600",
            ])
            .arg("--config")
            .arg(config)
            .arg("--repo")
            .arg(repo)
            .arg("--data-dir")
            .arg(data_dir)
            .args(&extra_args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("drover-server starts");
        let url = read_listen_line(&mut child, data_dir);
        let addr = url
            .split_once("://")
            .and_then(|(_, addr)| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {url}"));
        Server {
            child: Some(child),
            addr,
            url,
            repo: repo.to_owned(),
            data_dir: data_dir.to_owned(),
            extra_toml: extra_toml.to_owned(),
            extra_args,
        }
    }

    /// DATA/server.toml: autosign with an enrollment token, and the listen
    /// address in the server certificate.
    fn write_config(data_dir: &Path, listen: &str, extra_toml: &str) -> PathBuf {
        let token = data_dir.join("enrollment-token");
        if !token.exists() {
            fs_err::write(&token, "enroll-me-please-0123456789\n").unwrap();
        }
        let host = listen.rsplit_once(':').map_or(listen, |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let path = data_dir.join("server.toml");
        fs_err::write(
            &path,
            format!(
                "enrollment_token_file = {}\nserver_names = [{}]\n{extra_toml}",
                toml_str(&token),
                toml_str(Path::new(host))
            ),
        )
        .unwrap();
        path
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's CA certificate (what operators hand to nodes).
    pub fn ca_file(&self) -> PathBuf {
        self.data_dir.join("ca/ca.crt.pem")
    }

    pub fn enrollment_token_file(&self) -> PathBuf {
        self.data_dir.join("enrollment-token")
    }

    /// The operator token the server made at first start.
    pub fn operator_token(&self) -> String {
        let text = fs_err::read_to_string(self.data_dir.join("operator-token")).unwrap();
        text.lines().next().unwrap_or_default().trim().to_owned()
    }

    /// `agent.toml` lines that let an agent enroll with this server.
    pub fn agent_config(&self) -> String {
        format!(
            "ca_file = {}\nenrollment_token_file = {}\n",
            toml_str(&self.ca_file()),
            toml_str(&self.enrollment_token_file())
        )
    }

    /// Runs `drover-server ARGS --data-dir DATA` (the `ca` commands).
    pub fn admin(&self, args: &[&str]) -> Output {
        let out = Command::new(bin("drover-server"))
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output()
            .expect("drover-server runs");
        Output::from(out)
    }

    /// Stops the server (SIGTERM, then waits).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same address and data dir.
    pub fn restart(&mut self) {
        self.stop();
        let args: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        let again = Server::start_with(
            &self.repo,
            &self.data_dir,
            &self.addr.to_string(),
            &self.extra_toml,
            &args,
        );
        *self = again;
    }

    pub fn log(&self) -> String {
        fs_err::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    /// GET a JSON document; panics unless the answer is 200.
    #[track_caller]
    pub fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, None);
        assert_eq!(
            status,
            200,
            "GET {path}: {body}\nserver log:\n{}",
            self.log()
        );
        body
    }

    /// Any request as an operator; returns the status and the body as JSON (or a string).
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let credential = Credential::Token(self.operator_token());
        let body = body.map(|b| b.to_string().into_bytes());
        let (status, text) = self
            .request_as(&credential, method, path, body.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// One request over TLS (verified against this server's CA) presenting
    /// `credential`. `Err` is a connection or handshake failure, with its text.
    pub fn request_as(
        &self,
        credential: &Credential,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, String), String> {
        let client = self.http_client(credential);
        let url = format!("{}{path}", self.url);
        let mut request = match method {
            "GET" => client.get(&url),
            "POST" => client.post(&url),
            "DELETE" => client.delete(&url),
            _ => panic!("unsupported method {method}"),
        };
        if let Credential::Token(token) = credential {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_vec());
        }
        let response = request.send().map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        Ok((status, text))
    }

    /// A GET (`body` None) or POST over TLS without a client certificate,
    /// carrying `headers` (a forge's webhook, a browser's cookie): the
    /// status, the body, and the `Set-Cookie` header if any.
    pub fn request_with_headers(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> (u16, String, Option<String>) {
        let (client, url) = (
            self.http_client(&Credential::None),
            format!("{}{path}", self.url),
        );
        let mut request = match body {
            Some(body) => client.post(&url).body(body.to_vec()),
            None => client.get(&url),
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("{path}: {}", error_chain(&e)));
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        (status, text, cookie)
    }

    /// A client that trusts this server's CA alone, presents `credential`'s
    /// certificate when it is one, and follows no redirect. One per request,
    /// as a caller of its own (the anonymous-connection tests count on it).
    fn http_client(&self, credential: &Credential) -> reqwest::blocking::Client {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.ca_file()).expect("the server's CA") {
            roots.add(cert.expect("a PEM certificate")).unwrap();
        }
        let trusting_the_ca = tls_trusting(roots);
        client_over(match credential {
            Credential::Cert { cert, key } => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(|c| c.expect("a PEM certificate"))
                    .collect();
                let key = PrivateKeyDer::from_pem_file(key).expect("a PEM private key");
                trusting_the_ca.with_client_auth_cert(chain, key).unwrap()
            }
            _ => trusting_the_ca.with_no_client_auth(),
        })
    }

    /// Asks the server to re-read the repository now (the git hook).
    pub fn refresh(&self) {
        let (status, body) = self.request("POST", "/api/v1/hooks/git", None);
        assert!(status == 200 || status == 202, "hook: {status} {body}");
    }

    /// The newest report of a node, whole.
    pub fn latest_report(&self, node: &str) -> Value {
        let list = self.get_json(&format!("/api/v1/nodes/{node}/reports?limit=1"));
        let id = report_list(&list)[0]["id"]
            .as_str()
            .expect("report id")
            .to_owned();
        self.get_json(&format!("/api/v1/reports/{id}"))
    }
}

/// The array of report summaries, whether the route wraps it or not.
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

pub fn report_list(list: &Value) -> &Vec<Value> {
    list.as_array()
        .or_else(|| list["reports"].as_array())
        .unwrap_or_else(|| panic!("not a report list: {list}"))
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `http://ADDR` or `https://ADDR` the server printed once bound.
fn read_listen_line(child: &mut Child, data_dir: &Path) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("drover-server listening on ") {
                let _ = tx.send(url.trim().to_owned());
                break;
            }
        }
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(url) => url,
        Err(_) => {
            let _ = child.kill();
            let log = fs_err::read_to_string(data_dir.join("server.log")).unwrap_or_default();
            panic!("drover-server did not print its address\nserver log:\n{log}");
        }
    }
}

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
fn tls_trusting(
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
fn client_over(tls: rustls::ClientConfig) -> reqwest::blocking::Client {
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
