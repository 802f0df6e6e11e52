//! A small HTTPS server playing drover-server for the agent: `GET
//! /api/v1/ca`, enrollment, renewal, and the node routes (catalog, files,
//! reports), which require the node's own certificate. One thread per
//! connection, one request per connection (`Connection: close`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_catalog::Catalog;
use drover_catalog::signed::{SIGNATURE_HEADER, SigningKey};
use rustls::{ServerConnection, StreamOwned};

use super::ca::{TestCa, csr_fingerprint};

/// How the fake signs catalogs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signature {
    Good,
    Missing,
    /// Signed with a key that is not the server's.
    Wrong,
}

/// A request the fake answered.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub method: String,
    pub path: String,
    /// The node its client certificate names, if it presented one.
    pub client: Option<String>,
    pub authorization: Option<String>,
}

pub(crate) struct Fake {
    pub ca: TestCa,
    pub signing: SigningKey,
    /// Requests carrying this bearer token are signed at once.
    pub token: Option<String>,
    /// A pending request is signed once it was polled this many times.
    pub sign_after_polls: Option<usize>,
    pub cert_days: i64,
    pub catalog: Option<Catalog>,
    pub contents: BTreeMap<String, Vec<u8>>,
    pub signature: Signature,
    /// Answer the catalog route with a redirect to this URL.
    pub redirect_catalog_to: Option<String>,
    pub down: bool,
    /// Answer this many catalog requests with 503 and `Retry-After: busy_retry_after`.
    pub busy_catalog: usize,
    pub busy_retry_after: u64,
    /// Plain HTTP: node routes without a certificate (`--insecure-http`).
    pub insecure: bool,
    pub reports: Vec<serde_json::Value>,
    pub if_none_match: Vec<Option<String>>,
    pub requests: Vec<Seen>,
    /// Connections accepted, and client certificates seen in handshakes.
    pub connections: usize,
    pub client_certs: Vec<Vec<u8>>,
    /// Pending requests: name -> (CSR, polls); issued: (name, DER, PEM, key fingerprint).
    pub pending: BTreeMap<String, (String, usize)>,
    pub issued: Vec<(String, Vec<u8>, String, String)>,
}

impl Fake {
    pub(crate) fn new() -> Fake {
        Fake {
            ca: TestCa::new(),
            signing: SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap(),
            token: None,
            sign_after_polls: None,
            cert_days: 365,
            catalog: None,
            contents: BTreeMap::new(),
            signature: Signature::Good,
            redirect_catalog_to: None,
            down: false,
            busy_catalog: 0,
            busy_retry_after: 1,
            insecure: false,
            reports: Vec::new(),
            if_none_match: Vec::new(),
            requests: Vec::new(),
            connections: 0,
            client_certs: Vec::new(),
            pending: BTreeMap::new(),
            issued: Vec::new(),
        }
    }

    /// What `drover-server ca sign NAME` does.
    pub(crate) fn sign_pending(&mut self, name: &str) {
        let (csr, _) = self.pending.remove(name).expect("a pending request");
        self.issue(name, &csr);
    }

    pub(crate) fn issued_to(&self, name: &str) -> usize {
        self.issued.iter().filter(|(n, ..)| n == name).count()
    }

    fn issue(&mut self, name: &str, csr: &str) -> String {
        let pem = self.ca.sign(csr, name, self.cert_days);
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: rustls::pki_types::CertificateDer<'_>| c.to_vec())
            .unwrap();
        let key = csr_fingerprint(csr);
        self.issued.push((name.to_owned(), der, pem.clone(), key));
        pem
    }

    fn name_of(&self, cert: &[u8]) -> Option<String> {
        self.issued
            .iter()
            .find(|(_, der, ..)| der == cert)
            .map(|(name, ..)| name.clone())
    }
}

/// A running fake; dropping it leaves it running, [`Server::stop`] ends it.
pub(crate) struct Server {
    pub url: String,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl Server {
    /// Closes the listener: later connections are refused.
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn serve(fake: Arc<Mutex<Fake>>) -> Server {
    start(fake, "https")
}

pub(crate) fn serve_plain(fake: Arc<Mutex<Fake>>) -> Server {
    fake.lock().unwrap().insecure = true;
    start(fake, "http")
}

fn start(fake: Arc<Mutex<Fake>>, scheme: &'static str) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let config = fake.lock().unwrap().ca.server_config();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stopped.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            fake.lock().unwrap().connections += 1;
            let fake = Arc::clone(&fake);
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                if scheme == "http" {
                    answer(&fake, stream, None);
                } else {
                    let _ = tls(&fake, config, stream);
                }
            });
        }
    });
    Server {
        url: format!("{scheme}://{addr}"),
        stop,
        addr,
    }
}

fn tls(
    fake: &Arc<Mutex<Fake>>,
    config: Arc<rustls::ServerConfig>,
    mut tcp: TcpStream,
) -> std::io::Result<()> {
    let mut conn = ServerConnection::new(config).map_err(std::io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    let peer = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.to_vec());
    if let Some(cert) = &peer {
        fake.lock().unwrap().client_certs.push(cert.clone());
    }
    answer(fake, StreamOwned::new(conn, tcp), peer);
    Ok(())
}

/// One request in, one reply out.
fn answer<S: Read + Write>(fake: &Arc<Mutex<Fake>>, stream: S, peer: Option<Vec<u8>>) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length = headers
        .get("content-length")
        .map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let reply = {
        let mut f = fake.lock().unwrap();
        let client = peer.as_deref().and_then(|c| f.name_of(c));
        f.requests.push(Seen {
            method: method.clone(),
            path: path.clone(),
            client: client.clone(),
            authorization: headers.get("authorization").cloned(),
        });
        route(&mut f, &method, &path, &headers, &body, client)
    };
    let mut stream = reader.into_inner();
    let mut head = format!("HTTP/1.1 {}\r\n", reply.status);
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        reply.body.len()
    ));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&reply.body);
    let _ = stream.flush();
}

struct Reply {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn reply(status: &'static str, body: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

fn json(status: &'static str, value: serde_json::Value) -> Reply {
    reply(status, serde_json::to_vec(&value).unwrap())
}

fn error(status: &'static str, message: &str) -> Reply {
    json(status, serde_json::json!({ "error": message }))
}

fn signed(certificate: &str) -> Reply {
    json(
        "200 OK",
        serde_json::json!({"status": "signed", "certificate": certificate}),
    )
}

fn route(
    f: &mut Fake,
    method: &str,
    path: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    client: Option<String>,
) -> Reply {
    if f.down {
        return error("503 Service Unavailable", "down");
    }
    if path == "/api/v1/ca" {
        let key = f.signing.public_key().to_base64();
        return json(
            "200 OK",
            serde_json::json!({"ca": f.ca.pem, "catalog_signing_key": key}),
        );
    }
    if let Some(name) = path.strip_prefix("/api/v1/certificate_requests/") {
        let csr = String::from_utf8_lossy(body).into_owned();
        return match method {
            "POST" => request_certificate(f, name, &csr, headers.get("authorization")),
            _ => match name.split_once("?key=") {
                Some((name, key)) if key.len() == 64 => poll_request(f, name, key),
                _ => error("400 Bad Request", "a status request names its key"),
            },
        };
    }
    let Some(rest) = path.strip_prefix("/api/v1/nodes/") else {
        return error("404 Not Found", "no such route");
    };
    let (name, route) = rest.split_once('/').unwrap_or((rest, ""));
    if !f.insecure && client.as_deref() != Some(name) {
        return match client {
            None => error("401 Unauthorized", "a node certificate is required"),
            Some(_) => error("403 Forbidden", "another node's certificate"),
        };
    }
    match route {
        "certificate" => {
            let csr = String::from_utf8_lossy(body).into_owned();
            let pem = f.issue(name, &csr);
            signed(&pem)
        }
        "catalog" => catalog(f, headers.get("if-none-match").cloned()),
        "reports" => {
            f.reports.push(serde_json::from_slice(body).unwrap());
            reply("201 Created", "{}")
        }
        _ => match route
            .strip_prefix("files/")
            .and_then(|sha| f.contents.get(sha))
        {
            Some(content) => reply("200 OK", content.clone()),
            None => error("404 Not Found", "no such content"),
        },
    }
}

fn request_certificate(f: &mut Fake, name: &str, csr: &str, auth: Option<&String>) -> Reply {
    if let Some(auth) = auth {
        let sent = auth.strip_prefix("Bearer ").unwrap_or_default();
        if f.token.as_deref() != Some(sent) {
            return error("403 Forbidden", "wrong enrollment token");
        }
        let pem = f.issue(name, csr);
        return signed(&pem);
    }
    let fingerprint = csr_fingerprint(csr);
    if let Some((pending, _)) = f.pending.get(name)
        && csr_fingerprint(pending) != fingerprint
    {
        return error(
            "409 Conflict",
            &format!("another key already has a pending request for {name}"),
        );
    }
    f.pending.insert(name.to_owned(), (csr.to_owned(), 0));
    json(
        "202 Accepted",
        serde_json::json!({"status": "pending", "fingerprint": fingerprint}),
    )
}

/// The status of `name`'s request or certificate for `key` only, as the
/// real server answers.
fn poll_request(f: &mut Fake, name: &str, key: &str) -> Reply {
    if let Some((csr, polls)) = f.pending.get_mut(name)
        && csr_fingerprint(csr) == key
    {
        *polls += 1;
        if f.sign_after_polls.is_some_and(|after| *polls >= after) {
            f.sign_pending(name);
        } else {
            return json(
                "202 Accepted",
                serde_json::json!({"status": "pending", "fingerprint": key}),
            );
        }
    }
    match f
        .issued
        .iter()
        .rev()
        .find(|(n, _, _, k)| n == name && k == key)
    {
        Some((_, _, pem, _)) => signed(&pem.clone()),
        None => error("404 Not Found", "no request and no certificate"),
    }
}

fn catalog(f: &mut Fake, if_none_match: Option<String>) -> Reply {
    f.if_none_match.push(if_none_match.clone());
    if let Some(to) = &f.redirect_catalog_to {
        let mut r = reply("307 Temporary Redirect", "");
        r.headers.push(("Location".into(), to.clone()));
        return r;
    }
    if f.busy_catalog > 0 {
        f.busy_catalog -= 1;
        let mut r = error("503 Service Unavailable", "compiling at capacity");
        r.headers
            .push(("Retry-After".into(), f.busy_retry_after.to_string()));
        return r;
    }
    let catalog = f.catalog.clone().expect("the fake has a catalog");
    if if_none_match == Some(format!("\"{}\"", catalog.version)) {
        return reply("304 Not Modified", "");
    }
    let body = serde_json::to_vec(&catalog).unwrap();
    let mut r = reply("200 OK", body.clone());
    let signature = match f.signature {
        Signature::Good => Some(f.signing.sign(&body)),
        Signature::Missing => None,
        Signature::Wrong => {
            let other = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
            Some(other.sign(&body))
        }
    };
    if let Some(signature) = signature {
        r.headers.push((SIGNATURE_HEADER.into(), signature));
    }
    r
}
