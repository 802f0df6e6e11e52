//! Requests built to read another node's data, to step out of the
//! repository, to run code from facts, or to wear the server down.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{Fleet, catalog_json, secret_of};

#[test]
fn a_node_gets_only_its_own_catalog_whatever_it_asks_for() {
    let fleet = Fleet::start();
    let web1 = fleet.enrolled("web-1").credential();
    let server = &fleet.server;

    // Another node's name in the path.
    let (status, body) = server
        .request_as(&web1, "POST", "/api/v1/nodes/web-2/catalog", Some(b"{}"))
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains(&secret_of("web-2")));

    // ...in the query string, and in the `hostname` fact: web-1's catalog.
    for (route, facts) in [
        ("/api/v1/nodes/web-1/catalog?node=web-2", json!({})),
        (
            "/api/v1/nodes/web-1/catalog?name=web-2&node=web-2",
            json!({}),
        ),
        (
            "/api/v1/nodes/web-1/catalog",
            json!({"hostname": "web-2", "fqdn": "web-2", "node": "web-2"}),
        ),
    ] {
        let body = json!({ "facts": facts }).to_string();
        let catalog = catalog_json(
            server
                .request_as(&web1, "POST", route, Some(body.as_bytes()))
                .unwrap(),
        );
        assert_eq!(catalog["node"], "web-1", "{route} {facts}");
        let text = catalog.to_string();
        assert!(
            text.contains("/web-1/secret") && !text.contains("/web-2/"),
            "{text}"
        );
    }

    // A report for another node, by path or by body.
    let report = |node: &str| {
        json!({
            "run_id": format!("9b7c-{node}"), "node": node, "environment": "main",
            "commit": "c", "catalog_version": "v", "noop": false,
            "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z",
            "status": "changed", "cached_catalog": "not_used", "agent_version": "0",
            "resources": []
        })
        .to_string()
    };
    for (route, node) in [
        ("/api/v1/nodes/web-2/reports", "web-2"),
        ("/api/v1/nodes/web-1/reports", "web-2"),
    ] {
        let (status, body) = server
            .request_as(&web1, "POST", route, Some(report(node).as_bytes()))
            .unwrap();
        assert_eq!(status, 403, "{route} for {node}: {body}");
    }
    let (status, _) = server.request("GET", "/api/v1/nodes/web-2/reports", None);
    assert_eq!(status, 404, "nothing was stored for web-2");
}

#[test]
fn contents_are_served_only_by_hash_from_the_callers_catalog() {
    let fleet = Fleet::start();
    let web1 = fleet.enrolled("web-1").credential();
    let web2 = fleet.enrolled("web-2").credential();
    let server = &fleet.server;

    // web-2's secret, by its hash, asked for by web-1 under its own name.
    let catalog2 = catalog_json(
        server
            .request_as(&web2, "POST", "/api/v1/nodes/web-2/catalog", Some(b"{}"))
            .unwrap(),
    );
    let secret2 = catalog2["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/secret")))
        .and_then(|r| r["sha256"].as_str())
        .unwrap()
        .to_owned();
    let (status, body) = server
        .request_as(
            &web1,
            "GET",
            &format!("/api/v1/nodes/web-1/files/{secret2}"),
            None,
        )
        .unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains(&secret_of("web-2")));

    // Paths that try to climb out of the route.
    let hostile = [
        "/api/v1/nodes/web-1/files/../../../../etc/passwd",
        "/api/v1/nodes/web-1/files/..%2f..%2f..%2fetc%2fpasswd",
        "/api/v1/nodes/web-1/files/%2e%2e/%2e%2e/etc/passwd",
        "/api/v1/nodes/web-1/files/%2e%2e%2f%2e%2e%2fetc%2fshadow",
        "/api/v1/nodes/web-1/files/%00",
        "/api/v1/nodes/web-1/files/abc%00def",
        "/api/v1/nodes/web-1/files/..%5c..%5cetc%5cpasswd",
        "/api/v1/nodes/web-1/files/\\etc\\passwd",
        "/api/v1/nodes/web-1/files//etc/passwd",
        "/api/v1/nodes/web-1/files/%2fetc%2fpasswd",
        "/api/v1/nodes/..%2fweb-2/files/0000",
        "/api/v1/nodes/web-1%2f..%2fweb-2/catalog",
        "/api/v1/nodes/web-1%00/catalog",
        "//etc/passwd",
        "/../../etc/passwd",
    ];
    for route in hostile {
        let method = if route.ends_with("/catalog") {
            "POST"
        } else {
            "GET"
        };
        match server.request_as(
            &web1,
            method,
            route,
            Some(&b"{}"[..]).filter(|_| method == "POST"),
        ) {
            Ok((status, body)) => {
                assert!((400..500).contains(&status), "{route}: {status} {body}");
                assert!(
                    !body.contains("root:"),
                    "{route} served a system file: {body}"
                );
            }
            // A client or server that refuses the request line outright is fine too.
            Err(e) => assert!(!e.contains("root:"), "{route}: {e}"),
        }
    }
}

#[test]
fn a_symlink_in_the_repository_never_serves_what_it_points_at() {
    let fleet = Fleet::start();
    let web1 = fleet.enrolled("web-1").credential();
    let repo = &fleet.repo;
    std::os::unix::fs::symlink("/etc/shadow", repo.path.join("files/shadow"))
        .or_else(|_| {
            fs_err::create_dir_all(repo.path.join("files"))?;
            std::os::unix::fs::symlink("/etc/shadow", repo.path.join("files/shadow"))
        })
        .unwrap();
    repo.write(
        "roles/base.toml",
        &format!(
            "[[file]]\npath = \"{}\"\nsource = \"files/shadow\"\n",
            fleet.managed("web-1", "stolen").display()
        ),
    );
    repo.commit("a source that is a symlink to /etc/shadow");
    fleet.server.refresh();

    // The node keeps its last good catalog; the new commit's error names the file.
    let catalog = catalog_json(
        fleet
            .server
            .request_as(&web1, "POST", "/api/v1/nodes/web-1/catalog", Some(b"{}"))
            .unwrap(),
    );
    assert!(!catalog.to_string().contains("stolen"), "{catalog}");
    let envs = fleet.server.get_json("/api/v1/environments");
    let text = envs.to_string();
    assert!(text.contains("files/shadow"), "{text}");
    assert!(!text.contains("root:"), "{text}");
    // Nothing the node may fetch holds /etc/shadow's first line.
    let shadow = fs_err::read_to_string("/etc/shadow").unwrap_or_default();
    let first = shadow.lines().next().unwrap_or("root:");
    for r in catalog["resources"].as_array().unwrap() {
        let Some(sha) = r["sha256"].as_str() else {
            continue;
        };
        let (_, body) = fleet
            .server
            .request_as(
                &web1,
                "GET",
                &format!("/api/v1/nodes/web-1/files/{sha}"),
                None,
            )
            .unwrap();
        assert!(!body.contains(first), "{sha} served /etc/shadow");
    }
}

#[test]
fn facts_are_data_never_template_code_and_endless_templates_stop() {
    let fleet = Fleet::start();
    let web1 = fleet.enrolled("web-1").credential();
    fleet.repo.write(
        "templates/motd.j2",
        "motd of {{ node }}: {{ facts.motd | default('none') }}\n",
    );
    fleet.repo.commit("the motd shows a fact");
    fleet.server.refresh();
    let facts = json!({"facts": {
        "motd": "{{ 7*7 }} {% include \"/etc/passwd\" %} {{ node }}",
    }})
    .to_string();
    let catalog = catalog_json(
        fleet
            .server
            .request_as(
                &web1,
                "POST",
                "/api/v1/nodes/web-1/catalog",
                Some(facts.as_bytes()),
            )
            .unwrap(),
    );
    let motd = catalog["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/motd")))
        .and_then(|r| r["sha256"].as_str())
        .unwrap()
        .to_owned();
    let (status, text) = fleet
        .server
        .request_as(
            &web1,
            "GET",
            &format!("/api/v1/nodes/web-1/files/{motd}"),
            None,
        )
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        text,
        "motd of web-1: {{ 7*7 }} {% include \"/etc/passwd\" %} {{ node }}\n"
    );

    fleet.repo.write(
        "templates/motd.j2",
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}\n",
    );
    fleet.repo.commit("a template that never ends");
    fleet.server.refresh();
    let started = Instant::now();
    let envs = fleet.server.get_json("/api/v1/environments").to_string();
    let node = fleet.server.get_json("/api/v1/nodes/web-1").to_string();
    assert!(
        node.contains("templates/motd.j2") && node.contains("fuel"),
        "the compile error names the template and why: {node}\n{envs}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn oversized_nested_malformed_and_slow_requests_get_a_4xx_and_others_are_served() {
    let fleet = Fleet::start();
    let web1 = fleet.enrolled("web-1").credential();
    let server = &fleet.server;
    let route = "/api/v1/nodes/web-1/catalog";

    // Slow clients first: they hold connections open while the rest runs.
    let slow: Vec<TcpStream> = (0..40)
        .map(|i| {
            let mut stream = TcpStream::connect(server.addr).unwrap();
            // Half a TLS record header, then nothing.
            if i % 2 == 0 {
                stream.write_all(&[0x16, 0x03]).unwrap();
            }
            stream
        })
        .collect();

    // Over the 16 MiB limit: 413 (or the server closes before taking it all).
    let big = vec![b' '; 24 * 1024 * 1024];
    match server.request_as(&web1, "POST", route, Some(&big)) {
        Ok((status, body)) => assert_eq!(status, 413, "{body}"),
        Err(e) => assert!(
            e.contains("roken pipe") || e.contains("reset") || e.contains("closed"),
            "{e}"
        ),
    }

    let nested = format!(
        "{{\"facts\":{{\"a\":{}1{}}}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (status, body) = server
        .request_as(&web1, "POST", route, Some(nested.as_bytes()))
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("recursion limit") || body.contains("invalid"),
        "{body}"
    );

    for malformed in [
        &b"{\"facts\": "[..],
        b"\xff\xfe",
        b"[1,2,3]",
        b"{\"facts\": 5}",
    ] {
        let (status, body) = server
            .request_as(&web1, "POST", route, Some(malformed))
            .unwrap();
        assert_eq!(
            status,
            400,
            "{:?}: {body}",
            String::from_utf8_lossy(malformed)
        );
        assert!(body.contains("invalid catalog request"), "{body}");
    }

    // Others are served while the slow connections hang.
    let started = Instant::now();
    let catalog = catalog_json(
        server
            .request_as(&web1, "POST", route, Some(b"{}"))
            .unwrap(),
    );
    assert_eq!(catalog["node"], "web-1");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a normal request waited {:?} behind slow clients",
        started.elapsed()
    );

    // The slow ones are cut off by the server, not left open forever.
    for mut stream in slow {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 64];
        let read = stream.read(&mut buf);
        assert!(
            matches!(read, Ok(0)) || read.is_err() && !is_timeout(read.as_ref().unwrap_err()),
            "a slow client was not disconnected: {read:?}"
        );
    }

    // Memory stayed bounded through all of it.
    let rss_kib = crate::peak_rss_kib(fleet.server.pid());
    assert!(rss_kib < 256 * 1024, "the server grew to {rss_kib} KiB");
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
