//! `/metrics` of the real server: `promtool check metrics` accepts it, and
//! an agent run moves the request, compile and report metrics.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use drover_tests::Credential;

use crate::World;

/// `GET /metrics` as an operator (what Prometheus does with a bearer token).
fn scrape(w: &World) -> String {
    let token = Credential::Token(w.server.operator_token());
    let (status, text) = w
        .server
        .request_as(&token, "GET", "/metrics", None)
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(status, 200, "{text}");
    text
}

/// Pipes `text` to `promtool check metrics`, which lints it as Prometheus
/// would parse it; fails the test on any complaint.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool: {e}\nhint: install Debian's `prometheus` package \
                 (`apt-get install prometheus`); scripts/test installs it"
            )
        });
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics rejects /metrics ({}):\n{}{}\n--- the scrape:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `name{labels}` to value, for every sample line.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            (series.to_owned(), value.parse().expect("a numeric value"))
        })
        .collect()
}

#[test]
fn an_agent_run_moves_metrics_that_promtool_accepts() {
    let w = World::start();
    let before = scrape(&w);
    promtool_check(&before);

    w.agent.run(&[]).expect_code(2);
    let after = scrape(&w);
    promtool_check(&after);

    let (b, a) = (samples(&before), samples(&after));
    let value = |s: &BTreeMap<String, f64>, series: &str| s.get(series).copied().unwrap_or(0.0);
    let moved = |series: &str| value(&a, series) - value(&b, series);
    let requests = |route: &str, method: &str, status: u16| {
        format!(
            "drover_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}"
        )
    };
    assert_eq!(moved("drover_reports_received_total"), 1.0, "{after}");
    assert_eq!(moved("drover_catalog_compiles_total"), 1.0, "{after}");
    assert_eq!(moved("drover_catalog_compile_duration_seconds_count"), 1.0);
    assert_eq!(moved("drover_catalog_compile_errors_total"), 0.0);
    assert_eq!(value(&a, "drover_nodes{state=\"changed\"}"), 1.0, "{after}");
    assert_eq!(
        moved(&requests("/api/v1/nodes/{name}/catalog", "POST", 200)),
        1.0,
        "{after}"
    );
    assert_eq!(
        moved(&requests("/api/v1/nodes/{name}/reports", "POST", 201)),
        1.0,
        "{after}"
    );
    assert!(
        moved(&requests("/api/v1/nodes/{name}/files/{sha256}", "GET", 200)) >= 1.0,
        "the agent fetched file contents: {after}"
    );
    assert!(
        a.keys().all(|series| !series.contains("web-1")),
        "a node name in a label: {after}"
    );
    let age = value(&a, "drover_git_refresh_age_seconds");
    assert!((0.0..600.0).contains(&age), "refresh age {age}");

    // What an operator alerts on about the server itself.
    let version = format!(
        "drover_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&a, &version), 1.0, "{after}");
    let now = jiff::Timestamp::now().as_second() as f64;
    let ca = value(&a, "drover_ca_certificate_expiry_timestamp_seconds");
    let server = value(&a, "drover_server_certificate_expiry_timestamp_seconds");
    assert!(ca > now + 365.0 * 86400.0, "the CA lasts years: {ca}");
    assert!(server > now + 30.0 * 86400.0 && server <= ca, "{server}");
    assert_eq!(
        value(&a, "drover_certificate_requests_pending"),
        0.0,
        "{after}"
    );
    assert_eq!(value(&a, "drover_nodes_compile_errors"), 0.0, "{after}");
    for process in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(value(&a, process) > 0.0, "{process}: {after}");
    }
}
