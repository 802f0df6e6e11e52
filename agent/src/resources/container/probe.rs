//! An app's `health` probe ([`HttpProbe`], on its replicas' container
//! spec): an HTTP GET of its path that the agent makes from the node. A
//! 2xx or 3xx answer passes; any other status, no answer within
//! `timeout_secs`, or no connection fails.
//!
//! **Where it connects.** To the container's own address on its Docker
//! network (inspect's `NetworkSettings.Networks`, the network its mode
//! names first) and the probe's port, the port inside the container. That
//! reaches the app whatever the replica publishes: nothing, a port on one
//! of the node's addresses, or a port Docker picked. The published port on
//! 127.0.0.1 would not do: several agents on one machine share one engine
//! and each node publishes on its own 127.0.0.x, so 127.0.0.1 reaches
//! another node's replica, or nothing. A container on the host's network
//! has no address of its own and listens in the node's namespace: it is
//! probed on the node's loopback, 127.0.0.1. One that shares another
//! container's network (`container:NAME`) or has none cannot be probed,
//! and its verdict says so.
//!
//! **The client.** reqwest, already the agent's HTTP client (`http.rs`),
//! here for plain HTTP only: no proxy (an `HTTP_PROXY` in the agent's
//! environment must not carry a probe elsewhere), no redirect followed (a
//! 3xx passes), no connection kept between probes, the body never read;
//! driven on a current-thread runtime of its own, as every async client
//! of the agent is.
//!
//! **One failure is not a verdict.** [`Prober::confirm`] tries up to
//! [`TRIES`] times a second apart before it calls a replica unhealthy, so
//! a dropped connection does not fail a run; after a start the run waits
//! up to [`budget`] for a first pass.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use bollard::models::{ContainerInspectResponse, EndpointSettings};
use drover_catalog::model::HttpProbe;
use tokio::runtime::Runtime;

use crate::http::{chain, trusts_no_one};

/// Probes in a row that must fail before a replica is unhealthy.
pub(super) const TRIES: u32 = 3;
/// Between those tries.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// No wait for a first pass is longer than this (as for a healthcheck).
const MAX_WAIT: Duration = Duration::from_secs(10 * 60);

/// How long a fresh container has to pass its probe: every try, each one
/// interval plus its timeout, and slack for the app to start.
pub(super) fn budget(probe: &HttpProbe) -> Duration {
    let each = probe.interval_secs.saturating_add(probe.timeout_secs);
    let secs = each.saturating_mul(u64::from(TRIES) + 1).saturating_add(5);
    Duration::from_secs(secs).min(MAX_WAIT)
}

/// What one probe came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Verdict {
    /// The probe as an operator would repeat it: `GET http://IP:PORT/PATH`,
    /// or the path and port when there is no address to send it to.
    pub probe: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The HTTP status it answered.
    Answered(u16),
    /// Why there was no answer.
    Failed(String),
}

impl Verdict {
    pub(super) fn passed(&self) -> bool {
        matches!(self.outcome, Outcome::Answered(200..=399))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Answered(status) => {
                let reason = reqwest::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .map_or(String::new(), |r| format!(" {r}"));
                write!(f, "{} answered {status}{reason}", self.probe)
            }
            Outcome::Failed(why) => write!(f, "{} failed: {why}", self.probe),
        }
    }
}

/// The probes' HTTP client.
pub(super) struct Prober {
    client: reqwest::Client,
    runtime: Runtime,
}

impl Prober {
    pub(super) fn new() -> Result<Prober> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(trusts_no_one()?)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .user_agent(concat!("drover-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow!("cannot set up the probes' HTTP client: {}", chain(&e)))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("cannot start the probes' runtime")?;
        Ok(Prober { client, runtime })
    }

    /// One GET of `probe.path` at `addr`, within `probe.timeout_secs`.
    pub(super) fn get(&self, addr: SocketAddr, probe: &HttpProbe) -> Verdict {
        let url = format!("http://{addr}{}", probe.path);
        let timeout = Duration::from_secs(probe.timeout_secs);
        // The status is all a probe needs: the answer is dropped unread.
        let status = self.runtime.block_on(async {
            let answer = self.client.get(&url).timeout(timeout).send().await;
            answer.map(|a| a.status().as_u16())
        });
        let outcome = match status {
            Ok(status) => Outcome::Answered(status),
            Err(e) if e.is_timeout() => {
                Outcome::Failed(format!("no answer within {} s", probe.timeout_secs))
            }
            Err(e) => Outcome::Failed(innermost(&e)),
        };
        Verdict {
            probe: format!("GET {url}"),
            outcome,
        }
    }

    /// One probe of container `c` as inspected.
    pub(super) fn once(&self, c: &ContainerInspectResponse, probe: &HttpProbe) -> Verdict {
        self.confirm_with(c, probe, 1, Duration::ZERO)
    }

    /// Up to [`TRIES`] probes, a second apart, until one passes: the first
    /// that passed, or the last failure. A container without an address
    /// fails at once: trying again would not give it one.
    pub(super) fn confirm(&self, c: &ContainerInspectResponse, probe: &HttpProbe) -> Verdict {
        self.confirm_with(c, probe, TRIES, RETRY_PAUSE)
    }

    fn confirm_with(
        &self,
        c: &ContainerInspectResponse,
        probe: &HttpProbe,
        tries: u32,
        pause: Duration,
    ) -> Verdict {
        let addr = match address(c, probe.port) {
            Ok(addr) => addr,
            Err(why) => {
                return Verdict {
                    probe: format!("GET {} on port {}", probe.path, probe.port),
                    outcome: Outcome::Failed(why),
                };
            }
        };
        let mut verdict = self.get(addr, probe);
        for _ in 1..tries {
            if verdict.passed() {
                break;
            }
            std::thread::sleep(pause);
            verdict = self.get(addr, probe);
        }
        verdict
    }
}

/// The socket a probe of container `c` on `port` connects to (see the
/// module's doc), or why it has none.
pub(super) fn address(c: &ContainerInspectResponse, port: u16) -> Result<SocketAddr, String> {
    let mode = c
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.as_deref())
        .unwrap_or("default");
    if mode == "host" {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    if let Some(other) = mode.strip_prefix("container:") {
        return Err(format!(
            "the container shares the network of container {other} and has no address of its own"
        ));
    }
    // Docker's `default` mode is the `bridge` network.
    let named = match mode {
        "default" => "bridge",
        mode => mode,
    };
    let mut networks: Vec<(&String, &EndpointSettings)> = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .into_iter()
        .flatten()
        .collect();
    networks.sort_by_key(|(name, _)| (name.as_str() != named, name.as_str()));
    networks
        .into_iter()
        .find_map(|(_, endpoint)| endpoint_ip(endpoint))
        .map(|ip| SocketAddr::new(ip, port))
        .ok_or_else(|| {
            format!("the container has no address on a Docker network (network mode {mode})")
        })
}

/// The endpoint's IPv4 address, else its IPv6 one.
fn endpoint_ip(endpoint: &EndpointSettings) -> Option<IpAddr> {
    [&endpoint.ip_address, &endpoint.global_ipv6_address]
        .into_iter()
        .flatten()
        .find_map(|text| text.parse().ok())
}

/// The cause at the bottom of reqwest's error (`Connection refused`), which
/// says more than its own message (the URL, already in the verdict).
fn innermost(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Instant;

    use bollard::models::{HostConfig, NetworkSettings};

    use super::*;

    fn probe(port: u16, timeout_secs: u64) -> HttpProbe {
        HttpProbe {
            path: "/healthz".into(),
            port,
            interval_secs: 1,
            timeout_secs,
        }
    }

    /// A server on a loopback port that answers each connection with
    /// `status` (`None`: reads the request and never answers), on a thread.
    fn server(status: Option<u16>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request);
                match status {
                    Some(status) => {
                        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
                        let _ = stream.write_all(answer.as_bytes());
                    }
                    None => held.push(stream),
                }
            }
        });
        addr
    }

    #[test]
    fn two_and_three_hundreds_pass_the_rest_fail_and_say_what_was_asked() {
        let prober = Prober::new().unwrap();
        for (status, passed) in [(200, true), (302, true), (404, false), (500, false)] {
            let addr = server(Some(status));
            let verdict = prober.get(addr, &probe(addr.port(), 2));
            assert_eq!(verdict.outcome, Outcome::Answered(status));
            assert_eq!(verdict.passed(), passed, "{verdict}");
            assert_eq!(verdict.probe, format!("GET http://{addr}/healthz"));
        }
        let addr = server(Some(500));
        assert_eq!(
            prober.get(addr, &probe(addr.port(), 2)).to_string(),
            format!("GET http://{addr}/healthz answered 500 Internal Server Error")
        );
    }

    #[test]
    fn a_server_that_never_answers_fails_at_the_timeout() {
        let prober = Prober::new().unwrap();
        let addr = server(None);
        let started = Instant::now();
        let verdict = prober.get(addr, &probe(addr.port(), 1));
        let took = started.elapsed();
        assert_eq!(
            verdict.outcome,
            Outcome::Failed("no answer within 1 s".into())
        );
        assert!(!verdict.passed());
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }

    #[test]
    fn a_closed_port_fails_with_the_cause() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let verdict = Prober::new().unwrap().get(addr, &probe(addr.port(), 2));
        let text = verdict.to_string();
        assert!(!verdict.passed());
        assert!(
            text.starts_with(&format!("GET http://{addr}/healthz failed: "))
                && text.to_lowercase().contains("refused"),
            "{text}"
        );
    }

    fn inspected(mode: Option<&str>, networks: &[(&str, &str, &str)]) -> ContainerInspectResponse {
        let networks = networks
            .iter()
            .map(|(name, v4, v6)| {
                let endpoint = EndpointSettings {
                    ip_address: Some((*v4).into()),
                    global_ipv6_address: Some((*v6).into()),
                    ..Default::default()
                };
                ((*name).to_owned(), endpoint)
            })
            .collect();
        ContainerInspectResponse {
            host_config: Some(HostConfig {
                network_mode: mode.map(str::to_owned),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                networks: Some(networks),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_address_is_the_containers_own_on_the_network_its_mode_names() {
        let addr = |mode, networks: &[_]| address(&inspected(mode, networks), 8080);
        let bridge = ("bridge", "172.17.0.2", "");
        let apps = ("apps", "10.9.0.4", "");
        assert_eq!(
            addr(Some("default"), &[bridge]),
            Ok("172.17.0.2:8080".parse().unwrap())
        );
        assert_eq!(
            addr(None, &[apps, bridge]),
            Ok("172.17.0.2:8080".parse().unwrap())
        );
        assert_eq!(
            addr(Some("apps"), &[bridge, apps]),
            Ok("10.9.0.4:8080".parse().unwrap())
        );
        // Not on the network it names (yet): the others, by name.
        assert_eq!(
            addr(Some("other"), &[bridge, apps]),
            Ok("10.9.0.4:8080".parse().unwrap())
        );
        // IPv6 only.
        let v6 = ("v6", "", "fd00::5");
        assert_eq!(
            addr(Some("v6"), &[v6]),
            Ok("[fd00::5]:8080".parse().unwrap())
        );
        // The host's network: the node's loopback.
        assert_eq!(
            addr(Some("host"), &[]),
            Ok("127.0.0.1:8080".parse().unwrap())
        );
    }

    #[test]
    fn no_address_of_its_own_is_a_failed_verdict_that_says_why() {
        let prober = Prober::new().unwrap();
        let shared = prober.once(&inspected(Some("container:db"), &[]), &probe(80, 1));
        assert_eq!(
            shared.to_string(),
            "GET /healthz on port 80 failed: the container shares the network of container db \
             and has no address of its own"
        );
        let none = prober.once(&inspected(Some("none"), &[("none", "", "")]), &probe(80, 1));
        assert_eq!(
            none.to_string(),
            "GET /healthz on port 80 failed: the container has no address on a Docker network \
             (network mode none)"
        );
    }

    #[test]
    fn confirm_stops_at_the_first_pass_and_fails_after_every_try() {
        let prober = Prober::new().unwrap();
        let passing = server(Some(204));
        let c = inspected(Some("host"), &[]);
        assert!(
            prober
                .confirm_with(&c, &probe(passing.port(), 1), TRIES, Duration::ZERO)
                .passed()
        );
        let failing = server(Some(503));
        let verdict = prober.confirm_with(&c, &probe(failing.port(), 1), TRIES, Duration::ZERO);
        assert_eq!(verdict.outcome, Outcome::Answered(503));
    }

    #[test]
    fn the_wait_for_a_first_pass_follows_the_probe_and_is_bounded() {
        assert_eq!(budget(&probe(80, 2)), Duration::from_secs((1 + 2) * 4 + 5));
        let slow = HttpProbe {
            interval_secs: 600,
            ..probe(80, 2)
        };
        assert_eq!(budget(&slow), MAX_WAIT);
    }
}
