//! Every route against every kind of caller, over real TLS handshakes.

use drover_tests::Credential;

use crate::Fleet;

/// What a caller gets: a status, or a refused handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Status(u16),
    HandshakeRefused,
}
use Answer::{HandshakeRefused as Refused, Status as S};

/// A method, a route, a body, and what each caller of the table gets.
type Row<'a> = (&'a str, &'a str, Option<&'a [u8]>, [Answer; 6]);

#[test]
fn every_route_answers_every_caller_as_designed() {
    let fleet = Fleet::start();
    let web1 = fleet.enrolled("web-1");
    let web2 = fleet.enrolled("web-2");
    let web3 = fleet.enrolled("web-3");
    fleet
        .server
        .admin(&["ca", "revoke", "web-3"])
        .expect_code(0);
    let operator_cert = fleet.operator_cert("alice");

    // What web-1's own catalog references, and a run id web-1 reported.
    let catalog = crate::catalog_json(
        fleet
            .server
            .request_as(
                &web1.credential(),
                "POST",
                "/api/v1/nodes/web-1/catalog",
                Some(b"{}"),
            )
            .unwrap(),
    );
    let sha = catalog["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| r["sha256"].as_str())
        .expect("a file with content")
        .to_owned();
    let run_id = fleet.server.latest_report("web-1")["run_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let callers: [(&str, Credential); 6] = [
        ("no certificate", Credential::None),
        ("node certificate", web1.credential()),
        ("other node's certificate", web2.credential()),
        ("revoked certificate", web3.credential()),
        ("operator token", fleet.operator_token()),
        ("operator certificate", operator_cert),
    ];
    let catalog_route = "/api/v1/nodes/web-1/catalog".to_owned();
    let file_route = format!("/api/v1/nodes/web-1/files/{sha}");
    let report_route = format!("/api/v1/reports/{run_id}");
    let report = drover_tests::report_body("web-1", "0e5cb1f6-table-test");
    //   route                                 none    node    other   revoked  token   op-cert
    let table: Vec<Row> = vec![
        (
            "POST",
            &catalog_route,
            Some(b"{}"),
            [S(401), S(200), S(403), Refused, S(403), S(403)],
        ),
        (
            "GET",
            &file_route,
            None,
            [S(401), S(200), S(403), Refused, S(403), S(403)],
        ),
        (
            "POST",
            "/api/v1/nodes/web-1/reports",
            Some(&report),
            [S(401), S(201), S(403), Refused, S(403), S(403)],
        ),
        (
            "GET",
            "/api/v1/nodes/web-1/reports",
            None,
            [S(401), S(200), S(403), Refused, S(200), S(200)],
        ),
        (
            "GET",
            "/api/v1/nodes/web-1",
            None,
            [S(401), S(200), S(403), Refused, S(200), S(200)],
        ),
        (
            "GET",
            &report_route,
            None,
            [S(401), S(200), S(404), Refused, S(200), S(200)],
        ),
        (
            "GET",
            "/api/v1/nodes",
            None,
            [S(401), S(403), S(403), Refused, S(200), S(200)],
        ),
        (
            "GET",
            "/api/v1/reports?resource=file:/etc/motd",
            None,
            [S(401), S(403), S(403), Refused, S(200), S(200)],
        ),
        (
            "GET",
            "/api/v1/reports/events?since=24h&format=csv",
            None,
            [S(401), S(403), S(403), Refused, S(200), S(200)],
        ),
        (
            "GET",
            "/api/v1/environments",
            None,
            [S(401), S(403), S(403), Refused, S(200), S(200)],
        ),
        (
            "GET",
            "/api/v1/apps",
            None,
            [S(401), S(403), S(403), Refused, S(200), S(200)],
        ),
        (
            "GET",
            "/api/v1/apps/no-such-app",
            None,
            [S(401), S(403), S(403), Refused, S(404), S(404)],
        ),
        (
            "POST",
            "/api/v1/nodes/web-1/cordon",
            None,
            [S(401), S(403), S(403), Refused, S(200), S(200)],
        ),
        (
            "POST",
            "/api/v1/nodes/web-1/drain",
            Some(b"{}"),
            [S(401), S(403), S(403), Refused, S(200), S(200)],
        ),
        (
            "POST",
            "/api/v1/nodes/web-1/uncordon",
            None,
            [S(401), S(403), S(403), Refused, S(200), S(200)],
        ),
        (
            "POST",
            "/api/v1/nodes/web-1/run",
            None,
            [S(401), S(403), S(403), Refused, S(200), S(200)],
        ),
        (
            "POST",
            "/api/v1/nodes/web-2/deactivate",
            None,
            [S(401), S(403), S(403), Refused, S(200), S(200)],
        ),
        (
            "DELETE",
            "/api/v1/nodes/ghost",
            None,
            [S(401), S(403), S(403), Refused, S(404), S(404)],
        ),
        (
            "GET",
            "/api/v1/environments/main/rollout",
            None,
            [S(401), S(403), S(403), Refused, S(200), S(200)],
        ),
        // Nothing to resume or abort: refused by the rollout's state, once
        // the caller may ask.
        (
            "POST",
            "/api/v1/environments/main/rollout/resume",
            None,
            [S(401), S(403), S(403), Refused, S(409), S(409)],
        ),
        (
            "POST",
            "/api/v1/environments/main/rollout/abort",
            None,
            [S(401), S(403), S(403), Refused, S(409), S(409)],
        ),
        (
            "GET",
            "/api/v1/capacity",
            None,
            [S(401), S(403), S(403), Refused, S(200), S(200)],
        ),
        (
            "POST",
            "/api/v1/hooks/git",
            None,
            [S(401), S(403), S(403), Refused, S(202), S(202)],
        ),
        (
            "GET",
            "/metrics",
            None,
            [S(401), S(403), S(403), Refused, S(200), S(200)],
        ),
        (
            "GET",
            "/",
            None,
            [S(303), S(303), S(303), Refused, S(200), S(200)],
        ),
        (
            "POST",
            "/api/v1/nodes/web-1/certificate",
            Some(b"not a CSR"),
            [S(401), S(400), S(403), Refused, S(403), S(403)],
        ),
        (
            "GET",
            // Another key's question about an enrolled name: nothing to learn.
            "/api/v1/certificate_requests/web-1?key=0000000000000000000000000000000000000000000000000000000000000000",
            None,
            [S(404), S(404), S(404), Refused, S(404), S(404)],
        ),
        (
            "GET",
            "/api/v1/ca",
            None,
            [S(200), S(200), S(200), Refused, S(200), S(200)],
        ),
        (
            "GET",
            "/healthz",
            None,
            [S(200), S(200), S(200), Refused, S(200), S(200)],
        ),
    ];

    let mut wrong = Vec::new();
    for (method, route, body, expected) in &table {
        for ((who, credential), want) in callers.iter().zip(expected) {
            let got = match fleet.server.request_as(credential, method, route, *body) {
                Ok((status, _)) => S(status),
                Err(_) => Refused,
            };
            if got != *want {
                wrong.push(format!(
                    "{method} {route} with {who}: got {got:?}, want {want:?}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} answers differ:\n{}\nserver log:\n{}",
        wrong.len(),
        table.len() * callers.len(),
        wrong.join("\n"),
        fleet.server.log()
    );
}

#[test]
fn metrics_listen_serves_only_metrics_without_a_credential() {
    let fleet = Fleet::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let _server = drover_tests::Server::start_with(
        &fleet.repo.path,
        &tmp.path().join("server"),
        "127.0.0.1:0",
        &format!("metrics_listen = \"127.0.0.1:{port}\"\n"),
        &[],
    );
    let client = drover_tests::plain_http_client();
    let get = |path: &str| {
        let response = client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().unwrap())
    };
    let (status, text) = get("/metrics");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("drover_reports_received_total"), "{text}");
    for other in ["/api/v1/nodes", "/", "/api/v1/ca", "/healthz"] {
        assert_eq!(get(other).0, 404, "{other} is not on the metrics address");
    }
}
