//! The CA: files at first start, enrollment routes and autosign policies,
//! `drover-server ca`, and (in `ca/listener.rs`) the mutual-TLS listener.

mod duplicates;
mod listener;
mod pending;
mod renewal;
mod strangers;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use drover_server::credentials::Peer;
use drover_server::tls::policy::Autosign;
use drover_server::{AppState, Config, app};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;
use x509_parser::extensions::GeneralName;

/// A server state over a temp data dir, configured by `edit`.
struct Ca {
    tmp: TempDir,
    state: AppState,
    router: Router,
}

impl Ca {
    async fn start(edit: impl FnOnce(&mut Config, &Path)) -> Ca {
        let tmp = TempDir::new().unwrap();
        let repo = super::site(tmp.path(), "welcome\n");
        let mut config = Config::new(repo.display().to_string(), tmp.path().join("data"));
        config.refresh_interval = Duration::from_secs(3600);
        edit(&mut config, tmp.path());
        let state = AppState::open(config).await.unwrap();
        Ca {
            router: app(state.clone()),
            tmp,
            state,
        }
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    async fn send(&self, peer: Option<Peer>, req: Request<Body>) -> (StatusCode, Bytes) {
        let mut req = req;
        if let Some(peer) = peer {
            req.extensions_mut().insert(peer);
        }
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        (
            status,
            axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap(),
        )
    }

    /// `POST /api/v1/certificate_requests/NAME` without a client certificate.
    async fn submit(&self, name: &str, csr: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = Request::post(format!("/api/v1/certificate_requests/{name}"));
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let (status, body) = self
            .send(
                Some(Peer::Anonymous),
                req.body(Body::from(csr.to_owned())).unwrap(),
            )
            .await;
        (status, json(&body))
    }

    /// `POST /api/v1/certificate_requests/NAME` from the client address `from`.
    async fn submit_from(&self, name: &str, csr: &str, from: [u8; 4]) -> (StatusCode, Value) {
        let mut req = Request::post(format!("/api/v1/certificate_requests/{name}"))
            .body(Body::from(csr.to_owned()))
            .unwrap();
        let addr = std::net::SocketAddr::from((from, 40_000));
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        let (status, body) = self.send(Some(Peer::Anonymous), req).await;
        (status, json(&body))
    }

    /// `GET /api/v1/certificate_requests/NAME?key=` for `key`.
    async fn poll(&self, name: &str, key: &KeyPair) -> (StatusCode, Value) {
        self.poll_raw(&format!("{name}?key={}", fingerprint(key)))
            .await
    }

    /// `GET /api/v1/certificate_requests/REST` (a name and its query).
    async fn poll_raw(&self, rest: &str) -> (StatusCode, Value) {
        let req = Request::get(format!("/api/v1/certificate_requests/{rest}"))
            .body(Body::empty())
            .unwrap();
        let (status, body) = self.send(Some(Peer::Anonymous), req).await;
        (status, json(&body))
    }

    /// `drover-server ca ARGS --data-dir DATA` with an empty config file.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        let config = self.tmp.path().join("empty.toml");
        fs_err::write(&config, "").unwrap();
        super::bin()
            .arg("ca")
            .args(args)
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(self.data())
            .output()
            .unwrap()
    }
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into()))
}

/// A P-256 key and a CSR for `name` (CN and dNSName).
fn csr(name: &str) -> (KeyPair, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())];
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, pem)
}

/// What the server calls a key: sha256 of its SubjectPublicKeyInfo, hex.
fn fingerprint(key: &KeyPair) -> String {
    use rcgen::PublicKeyData;
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.subject_public_key_info()))
}

fn mode(path: &Path) -> u32 {
    fs_err::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Checks the certificate profile of the design and that it certifies `key`.
fn assert_node_cert(pem: &str, name: &str, key: &KeyPair) {
    use rcgen::PublicKeyData;
    let der = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .unwrap()
        .1
        .contents;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    let org: Vec<_> = cert
        .subject()
        .iter_organization()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!((cn, org), (vec![name], vec!["drover nodes"]));
    assert_eq!(cert.public_key().raw, key.subject_public_key_info());
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(san.general_names, vec![GeneralName::DNSName(name)]);
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    let usage = cert.key_usage().unwrap().unwrap().value;
    assert!(usage.digital_signature() && !usage.key_cert_sign() && !usage.crl_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth && !eku.any && eku.other.is_empty());
    assert_eq!(cert.raw_serial().len(), 16);
}

#[tokio::test]
async fn first_start_makes_the_ca_with_private_keys() {
    let ca = Ca::start(|_, _| {}).await;
    let dir = ca.data().join("ca");
    assert_eq!(mode(&dir), 0o700);
    for key in ["ca.key.pem", "server.key.pem", "catalog-signing.key"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
    let ca_pem = fs_err::read_to_string(dir.join("ca.crt.pem")).unwrap();
    let (status, body) = ca
        .send(
            None,
            Request::get("/api/v1/ca").body(Body::empty()).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let body = json(&body);
    assert_eq!(body["ca"], ca_pem.as_str());
    assert_eq!(
        body["catalog_signing_key"],
        ca.state.pki.catalog_signer().public_key().to_base64()
    );
    // A second start (the first one stopped: a SQLite database belongs to
    // one server) keeps the same CA and catalog key.
    let Ca { tmp, state, router } = ca;
    let (config, signing_key) = (
        state.config.as_ref().clone(),
        state.pki.catalog_signer().public_key(),
    );
    let busy = AppState::open(config.clone())
        .await
        .err()
        .map(|e| e.to_string());
    assert!(
        busy.as_deref()
            .is_some_and(|e| e.contains("in use by another drover-server")),
        "{busy:?}"
    );
    drop((state, router));
    let again = AppState::open(config).await.unwrap();
    assert_eq!(again.pki.ca_pem(), ca_pem);
    assert_eq!(again.pki.catalog_signer().public_key(), signing_key);
    drop(tmp);
}

#[tokio::test]
async fn a_request_waits_for_ca_sign_then_is_served() {
    let ca = Ca::start(|_, _| {}).await;
    let (key, pem) = csr("web1");
    assert_eq!(ca.poll("web1", &key).await.0, StatusCode::NOT_FOUND);
    let (status, body) = ca.submit("web1", &pem, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "pending");
    let fingerprint = body["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fingerprint.len(), 64);
    // The same key again still waits; another key for the same name conflicts.
    assert_eq!(ca.submit("web1", &pem, None).await.0, StatusCode::ACCEPTED);
    let (status, body) = ca.submit("web1", &csr("web1").1, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains(&fingerprint),
        "{body}"
    );
    let (status, body) = ca.poll("web1", &key).await;
    assert_eq!(
        (status, body["fingerprint"].as_str()),
        (StatusCode::ACCEPTED, Some(&*fingerprint))
    );

    let listed = ca.cli(&["list"]);
    assert!(listed.status.success());
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.contains("pending requests: 1") && listed.contains(&fingerprint),
        "{listed}"
    );

    let missing = ca.cli(&["sign", "web9"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("no pending certificate request for `web9`") && stderr.contains("ca list"),
        "{stderr}"
    );

    let signed = ca.cli(&["sign", "web1"]);
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    assert!(String::from_utf8_lossy(&signed.stdout).contains("signed `web1`"));
    let (status, body) = ca.poll("web1", &key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "signed");
    assert_node_cert(body["certificate"].as_str().unwrap(), "web1", &key);

    let listed = String::from_utf8(ca.cli(&["list"]).stdout).unwrap();
    assert!(
        listed.contains("pending requests: 0") && listed.contains("certificates: 1"),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.contains("web1") && l.contains("node") && l.ends_with("valid")),
        "{listed}"
    );
}

#[tokio::test]
async fn an_enrollment_token_signs_at_once_and_a_wrong_one_is_refused() {
    let ca = Ca::start(|config, tmp| {
        let path = tmp.join("enroll-token");
        fs_err::write(&path, "enroll-0123456789abcdef\n").unwrap();
        config.enrollment_token_file = Some(path);
    })
    .await;
    let (key, pem) = csr("web1");
    let (status, body) = ca
        .submit("web1", &pem, Some("wrong-0123456789abcdef"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("does not match"),
        "{body}"
    );
    // An unauthenticated caller learns nothing of the server's files.
    assert!(!body.to_string().contains("enroll-token"), "{body}");
    assert!(
        !body.to_string().contains(&*ca.tmp.path().to_string_lossy()),
        "{body}"
    );
    assert_eq!(
        ca.poll("web1", &key).await.0,
        StatusCode::NOT_FOUND,
        "a refused request is not kept"
    );

    let (status, body) = ca
        .submit("web1", &pem, Some("enroll-0123456789abcdef"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_node_cert(body["certificate"].as_str().unwrap(), "web1", &key);
    // Without the token the request waits, like on a server without autosign.
    assert_eq!(
        ca.submit("web2", &csr("web2").1, None).await.0,
        StatusCode::ACCEPTED
    );
}

fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    fs_err::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn a_policy_command_decides_with_the_name_and_the_csr_on_stdin() {
    let ca = Ca::start(|config, tmp| {
        let seen = tmp.join("seen");
        let body = format!(
            "cat > {seen}.\"$1\"\ncase \"$1\" in web*) exit 0;; *) echo \"not $1\" >&2; exit 3;; esac",
            seen = seen.display()
        );
        config.autosign_command = Some(vec![script(tmp, "policy", &body)]);
    })
    .await;
    let (key, pem) = csr("web1");
    let (status, body) = ca.submit("web1", &pem, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_node_cert(body["certificate"].as_str().unwrap(), "web1", &key);
    let stdin = fs_err::read_to_string(ca.tmp.path().join("seen.web1")).unwrap();
    assert!(
        stdin.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{stdin}"
    );

    let (status, body) = ca.submit("db1", &csr("db1").1, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("pending"))
    );
}

#[tokio::test]
async fn a_policy_command_that_hangs_is_killed_and_the_request_waits() {
    let mut ca = Ca::start(|config, tmp| {
        let body = format!("sleep 60 &\necho $! > {}\nwait", tmp.join("pid").display());
        config.autosign_command = Some(vec![script(tmp, "hang", &body)]);
    })
    .await;
    let autosign = Autosign::from_config(&ca.state.config).unwrap();
    ca.state.autosign = Arc::new(autosign.with_timeout(Duration::from_millis(500)));
    ca.router = app(ca.state.clone());
    let started = Instant::now();
    let (status, body) = ca.submit("web1", &csr("web1").1, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("pending"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let pid = fs_err::read_to_string(ca.tmp.path().join("pid")).unwrap();
    let stat = PathBuf::from(format!("/proc/{}/stat", pid.trim()));
    let deadline = Instant::now() + Duration::from_secs(5);
    // Killed: gone, or a zombie waiting for its reaper.
    while fs_err::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z")) {
        assert!(
            Instant::now() < deadline,
            "the policy command's child still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_reason() {
    let ca = Ca::start(|_, _| {}).await;
    let (status, body) = ca.submit("web1", &csr("web2").1, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("subject CN is \"web2\""),
        "{body}"
    );
    let (status, body) = ca.submit("web1%2F..%2Fweb2", &csr("web1").1, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("invalid node name"),
        "{body}"
    );
    let huge = "A".repeat(17 * 1024);
    assert_eq!(
        ca.submit("web1", &huge, None).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        ca.poll_raw(&format!("web1%00?key={}", "0".repeat(64)))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        ca.state.pki.store().pending("web1").unwrap(),
        None,
        "nothing was kept"
    );
}

#[tokio::test]
async fn only_the_node_itself_renews_its_certificate() {
    let ca = Ca::start(|_, _| {}).await;
    let (key, pem) = csr("web1");
    let renew = |peer: Peer| {
        let req = Request::post("/api/v1/nodes/web1/certificate")
            .body(Body::from(pem.clone()))
            .unwrap();
        ca.send(Some(peer), req)
    };
    assert_eq!(renew(Peer::Anonymous).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        renew(Peer::Node("web2".into())).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        renew(Peer::Operator("alice".into())).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = renew(Peer::Node("web1".into())).await;
    assert_eq!(status, StatusCode::OK);
    assert_node_cert(json(&body)["certificate"].as_str().unwrap(), "web1", &key);
}

#[tokio::test]
async fn ca_operator_writes_a_key_certificate_and_the_ca() {
    let ca = Ca::start(|_, _| {}).await;
    let out = ca.tmp.path().join("alice");
    let run = ca.cli(&["operator", "alice", "--out", out.to_str().unwrap()]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(mode(&out.join("alice.key.pem")), 0o600);
    let cert = fs_err::read_to_string(out.join("alice.crt.pem")).unwrap();
    let der = x509_parser::pem::parse_x509_pem(cert.as_bytes())
        .unwrap()
        .1
        .contents;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
    let org: Vec<_> = parsed
        .subject()
        .iter_organization()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(org, vec!["drover operators"]);
    assert_eq!(
        fs_err::read_to_string(out.join("ca.pem")).unwrap(),
        ca.state.pki.ca_pem()
    );
    // Never overwrites a key.
    let again = ca.cli(&["operator", "alice", "--out", out.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[tokio::test]
async fn ca_revoke_names_what_it_revoked_and_usage_errors_exit_64() {
    let ca = Ca::start(|_, _| {}).await;
    let (key, pem) = csr("web1");
    let csr = drover_server::tls::csr::check_csr("web1", pem.as_bytes()).unwrap();
    let cert = ca
        .state
        .pki
        .sign_csr(drover_server::tls::CertKind::Node, &csr)
        .unwrap();
    let run = ca.cli(&["revoke", "web1"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("revoked node certificate of `web1`"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&drover_server::tls::requests::colon_hex(&cert.serial)),
        "{stdout}"
    );
    assert_eq!(
        ca.poll("web1", &key).await.0,
        StatusCode::NOT_FOUND,
        "a revoked certificate is not served"
    );
    let again = ca.cli(&["revoke", "web1"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("ca list"));
    assert_eq!(ca.cli(&["revoke"]).status.code(), Some(64));
    assert_eq!(ca.cli(&["frobnicate"]).status.code(), Some(64));
}
