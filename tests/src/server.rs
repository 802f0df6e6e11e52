//! The real `drover-server` for a test: started on a loopback port with
//! its own CA and data directory, asked as an operator, a node or no one.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::{Output, bin, client_over, error_chain, postgres, report_list, tls_trusting, toml_str};

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
