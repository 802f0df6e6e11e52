//! One simulated agent: its identity (a P-256 key, a CSR, the certificate
//! the server signs with the enrollment token), its facts, and a check-in
//! as `drover-agent run --once` makes it: the catalog with `If-None-Match`,
//! the contents it does not hold yet, and a real run report. A 503 is
//! waited out like the agent does (`Retry-After` plus a doubling jitter
//! window, three retries), then the run falls back to its cached catalog.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use drover_catalog::model::sha256_hex;
use drover_catalog::report::{CachedCatalog, Event, ResourceReport, ResourceStatus, RunMetrics};
use drover_catalog::{Catalog, Report, ResourceId};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, header};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

use crate::conn::{Conn, Failure};
use crate::stats::{Route, Stats};

/// The agent's retries after a 503 within one run (agent/src/run/backoff.rs).
const BUSY_RETRIES: u32 = 3;
const MAX_WAIT: Duration = Duration::from_secs(30);

/// What every simulated node shares.
pub(crate) struct Fleet {
    pub addr: SocketAddr,
    /// None: plain HTTP (`--insecure-http`), the node named by the path alone.
    pub roots: Option<Arc<rustls::RootCertStore>>,
    pub stats: Arc<Stats>,
}

impl Fleet {
    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// TLS trusting the server's CA, with `client` as our certificate.
    pub(crate) fn tls(
        &self,
        client: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    ) -> Result<Option<Arc<rustls::ClientConfig>>> {
        let Some(roots) = &self.roots else {
            return Ok(None);
        };
        let builder = rustls::ClientConfig::builder_with_provider(Fleet::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(Arc::clone(roots));
        let config = match client {
            Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key)?,
            None => builder.with_no_client_auth(),
        };
        Ok(Some(Arc::new(config)))
    }
}

/// How one check-in ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckIn {
    /// A new catalog (200), its contents fetched, the report stored.
    Fresh,
    /// 304: the catalog held is current; the report stored.
    Unchanged,
    /// Still 503 after the retries: the run used its cached catalog.
    FellBack,
    /// Something failed (counted in the stats by kind).
    Failed,
}

pub(crate) struct SimNode {
    pub name: String,
    facts: Value,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The version, resources and commit of the catalog held.
    catalog: Option<(String, Vec<ResourceId>, String, String)>,
    contents: HashSet<String>,
    /// Contents of the catalog just received that this node does not hold.
    missing: Vec<String>,
    /// The compile scenario's kept-alive connection.
    kept: Option<Conn>,
    /// 503s this node was answered.
    pub busy: u32,
    rng: u64,
}

impl SimNode {
    pub(crate) fn new(name: String, index: u64, extra_fact: u64) -> SimNode {
        let facts = json!({
            "hostname": name,
            "os": {"id": "debian", "version": "12"},
            "ipaddress": format!("10.{}.{}.{}", (index >> 16) & 255, (index >> 8) & 255, index & 255),
            "memory_mb": 2048 + (index % 4) * 2048,
            "uptime_seed": extra_fact,
        });
        SimNode {
            name,
            facts,
            tls: None,
            catalog: None,
            contents: HashSet::new(),
            missing: Vec::new(),
            kept: None,
            busy: 0,
            rng: index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// Facts that differ at every call: each request misses the compile cache.
    pub(crate) fn vary_facts(&mut self, seed: u64) {
        self.facts["uptime_seed"] = json!(seed);
    }

    /// xorshift64*: the jitter of this node's waits.
    pub(crate) fn random(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A key, a CSR with the token, the signed certificate: mutual TLS from now.
    pub(crate) async fn enroll(&mut self, fleet: &Fleet) -> Result<()> {
        if fleet.roots.is_none() {
            return Ok(());
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(vec![self.name.clone()])?;
        let mut subject = rcgen::DistinguishedName::new();
        subject.push(rcgen::DnType::CommonName, self.name.as_str());
        params.distinguished_name = subject;
        let csr = params.serialize_request(&key)?.pem()?;
        let mut conn = Conn::new(fleet.addr, fleet.tls(None)?);
        let request = Request::post(format!("/api/v1/certificate_requests/{}", self.name))
            .header(header::HOST, "127.0.0.1")
            .header(header::CONTENT_TYPE, "application/x-pem-file")
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", crate::server::ENROLLMENT_TOKEN),
            )
            .body(Full::new(Bytes::from(csr)))?;
        let response = timed(&fleet.stats, Route::Enroll, &mut conn, request)
            .await
            .map_err(|f| anyhow!("enrolling {}: {}", self.name, f.as_str()))?;
        let answer: Value = serde_json::from_slice(response.body())
            .with_context(|| format!("enrolling {}: the answer is not JSON", self.name))?;
        let Some(pem) = answer["certificate"].as_str() else {
            bail!("enrolling {}: no certificate in {answer}", self.name);
        };
        let cert =
            rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).map_err(|e| {
                anyhow!(
                    "enrolling {}: the certificate does not parse: {e}",
                    self.name
                )
            })?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        self.tls = fleet.tls(Some((cert, key)))?;
        Ok(())
    }

    pub(crate) fn path(&self, rest: &str) -> String {
        format!("/api/v1/nodes/{}/{rest}", self.name)
    }

    /// The version of the catalog this node holds.
    pub(crate) fn version(&self) -> Option<&str> {
        self.catalog.as_ref().map(|(version, ..)| version.as_str())
    }

    /// A new connection with this node's identity.
    pub(crate) fn connection(&self, fleet: &Fleet) -> Conn {
        Conn::new(fleet.addr, self.tls.clone())
    }

    /// One run: catalog (with backoff on 503), contents, report.
    pub(crate) async fn check_in(&mut self, fleet: &Fleet) -> CheckIn {
        let started = jiff::Timestamp::now();
        let mut conn = Conn::new(fleet.addr, self.tls.clone());
        let body = Bytes::from(json!({"facts": self.facts}).to_string());
        let mut retry = 0;
        let fresh = loop {
            let mut request = Request::post(self.path("catalog"))
                .header(header::HOST, "127.0.0.1")
                .header(header::CONTENT_TYPE, "application/json");
            if let Some((version, ..)) = &self.catalog {
                request = request.header(header::IF_NONE_MATCH, format!("\"{version}\""));
            }
            let request = request
                .body(Full::new(body.clone()))
                .expect("a valid request");
            let Ok(response) = timed(&fleet.stats, Route::Catalog, &mut conn, request).await else {
                return CheckIn::Failed;
            };
            match response.status().as_u16() {
                200 => match self.take_catalog(&response) {
                    Ok(()) => break true,
                    Err(kind) => {
                        fleet.stats.failed(Route::Catalog, kind);
                        return CheckIn::Failed;
                    }
                },
                304 if self.catalog.is_some() => break false,
                503 => {
                    self.busy += 1;
                    if retry == BUSY_RETRIES {
                        return self
                            .report(fleet, &mut conn, started, CachedCatalog::OnFailure, false)
                            .await;
                    }
                    let retry_after = response
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map_or(Duration::from_secs(1), Duration::from_secs);
                    let window = retry_after.max(Duration::from_millis(100)) * 2u32.pow(retry);
                    let wait = (retry_after + window.mul_f64(self.random())).min(MAX_WAIT);
                    // The agent's connection does not outlive its wait.
                    drop(conn);
                    tokio::time::sleep(wait).await;
                    conn = Conn::new(fleet.addr, self.tls.clone());
                    retry += 1;
                }
                _ => return CheckIn::Failed,
            }
        };
        if fresh && !self.fetch_contents(fleet, &mut conn).await {
            return CheckIn::Failed;
        }
        match self
            .report(fleet, &mut conn, started, CachedCatalog::NotUsed, fresh)
            .await
        {
            CheckIn::Failed => CheckIn::Failed,
            _ if fresh => CheckIn::Fresh,
            _ => CheckIn::Unchanged,
        }
    }

    /// A 200: signed, for this node, its version right (as the agent checks).
    fn take_catalog(&mut self, response: &Response<Bytes>) -> Result<(), &'static str> {
        if response.headers().get("drover-signature").is_none() {
            return Err("unsigned catalog");
        }
        let catalog: Catalog =
            serde_json::from_slice(response.body()).map_err(|_| "invalid catalog")?;
        if catalog.node != self.name
            || Catalog::compute_version(&catalog.resources) != catalog.version
        {
            return Err("catalog of another node or version");
        }
        let ids = catalog.resources.iter().map(|r| r.id.clone()).collect();
        let wanted: Vec<String> = catalog.referenced_hashes().map(str::to_owned).collect();
        self.contents.retain(|h| wanted.contains(h));
        self.catalog = Some((catalog.version, ids, catalog.environment, catalog.commit));
        // Contents still to fetch are those `wanted` minus what we hold.
        self.missing = wanted
            .into_iter()
            .filter(|h| !self.contents.contains(h))
            .collect();
        Ok(())
    }

    /// GETs each missing content, checking its sha256.
    async fn fetch_contents(&mut self, fleet: &Fleet, conn: &mut Conn) -> bool {
        for sha in std::mem::take(&mut self.missing) {
            let request = Request::get(self.path(&format!("files/{sha}")))
                .header(header::HOST, "127.0.0.1")
                .body(Full::new(Bytes::new()))
                .expect("a valid request");
            let Ok(response) = timed(&fleet.stats, Route::File, conn, request).await else {
                return false;
            };
            if response.status() != 200 {
                return false;
            }
            if sha256_hex(response.body()) != sha {
                fleet
                    .stats
                    .failed(Route::File, "content does not match its sha256");
                return false;
            }
            self.contents.insert(sha);
        }
        true
    }

    /// POSTs the run's report: every resource changed on a fresh catalog,
    /// unchanged otherwise.
    async fn report(
        &mut self,
        fleet: &Fleet,
        conn: &mut Conn,
        started: jiff::Timestamp,
        cached: CachedCatalog,
        fresh: bool,
    ) -> CheckIn {
        let run_id = {
            let (a, b) = (
                (self.random() * 2f64.powi(53)) as u64,
                (self.random() * 2f64.powi(53)) as u64,
            );
            let hex = format!("{a:016x}{b:016x}");
            format!(
                "{}-{}-4{}-8{}-{}",
                &hex[0..8],
                &hex[8..12],
                &hex[13..16],
                &hex[17..20],
                &hex[20..32]
            )
        };
        let Some((version, ids, environment, commit)) = &self.catalog else {
            // Shed before it ever had a catalog: no run, as for the agent.
            return CheckIn::FellBack;
        };
        let resources: Vec<ResourceReport> = ids
            .iter()
            .map(|id| {
                let mut r = ResourceReport::new(
                    id.clone(),
                    if fresh {
                        ResourceStatus::Changed
                    } else {
                        ResourceStatus::Unchanged
                    },
                );
                if fresh {
                    r.events.push(Event {
                        property: "ensure".into(),
                        previous: Some("absent".into()),
                        desired: Some("present".into()),
                        message: None,
                    });
                }
                r
            })
            .collect();
        let report = Report {
            run_id,
            node: self.name.clone(),
            environment: environment.clone(),
            commit: commit.clone(),
            catalog_version: version.clone(),
            noop: false,
            started_at: started,
            finished_at: jiff::Timestamp::now(),
            status: Report::summarize(&resources),
            error: (cached == CachedCatalog::OnFailure).then(|| {
                "the server answered 503 for the catalog; applied the cached catalog".to_owned()
            }),
            cached_catalog: cached,
            catalog_error: None,
            server: None,
            agent_version: "fleet-simulator".into(),
            metrics: RunMetrics::default(),
            resources,
            replicas: Vec::new(),
            tags: Vec::new(),
        };
        let body = serde_json::to_vec(&report).expect("a report serializes");
        let request = Request::post(self.path("reports"))
            .header(header::HOST, "127.0.0.1")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        match timed(&fleet.stats, Route::Report, conn, request).await {
            Ok(r) if r.status() == 201 || r.status() == 200 => {
                if cached == CachedCatalog::OnFailure {
                    CheckIn::FellBack
                } else {
                    CheckIn::Unchanged
                }
            }
            _ => CheckIn::Failed,
        }
    }

    /// One catalog request without `If-None-Match` on a connection kept
    /// across calls (the compile scenario); the catalog's resource count.
    pub(crate) async fn fetch_catalog(&mut self, fleet: &Fleet) -> Result<usize> {
        let conn = self
            .kept
            .get_or_insert_with(|| Conn::new(fleet.addr, self.tls.clone()));
        let request = Request::post(format!("/api/v1/nodes/{}/catalog", self.name))
            .header(header::HOST, "127.0.0.1")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(
                json!({"facts": self.facts}).to_string(),
            )))?;
        let response = timed(&fleet.stats, Route::Catalog, conn, request)
            .await
            .map_err(|f| anyhow!("catalog of {}: {}", self.name, f.as_str()))?;
        if response.status() != 200 {
            bail!(
                "catalog of {}: the server answered {}",
                self.name,
                response.status()
            );
        }
        let catalog: Catalog = serde_json::from_slice(response.body())
            .with_context(|| format!("catalog of {}: not a catalog", self.name))?;
        Ok(catalog.resources.len())
    }
}

/// Sends `request` on `conn`, recording the answer's status and latency
/// (or the failure) under `route`.
pub(crate) async fn timed(
    stats: &Stats,
    route: Route,
    conn: &mut Conn,
    request: Request<Full<Bytes>>,
) -> Result<Response<Bytes>, Failure> {
    let started = Instant::now();
    match conn.send(request).await {
        Ok(response) => {
            stats.answered(route, response.status().as_u16(), started.elapsed());
            Ok(response)
        }
        Err(failure) => {
            stats.failed(route, failure.as_str());
            Err(failure)
        }
    }
}
