//! `GET /openapi.json` checked against the real router: the document is
//! well formed, lists exactly the served routes, and every operation, called
//! as documented, answers a documented status with a body of the documented
//! schema.

mod schema;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use drover_server::credentials::Peer;
use serde_json::{Value, json};

use crate::{TestContext, sha};
use schema::{Checker, refs};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The routes of the contract (spec/interfaces.md and enrollment).
const ROUTES: [(&str, &str); 32] = [
    ("get", "/api/v1/nodes"),
    ("get", "/api/v1/nodes/{name}"),
    ("post", "/api/v1/nodes/{name}/catalog"),
    ("get", "/api/v1/nodes/{name}/catalog/watch"),
    ("get", "/api/v1/nodes/{name}/files/{sha256}"),
    ("post", "/api/v1/nodes/{name}/reports"),
    ("get", "/api/v1/nodes/{name}/reports"),
    ("post", "/api/v1/nodes/{name}/certificate"),
    ("get", "/api/v1/reports/{id}"),
    ("get", "/api/v1/reports"),
    ("get", "/api/v1/reports/events"),
    ("get", "/api/v1/environments"),
    ("get", "/api/v1/cluster"),
    ("get", "/api/v1/apps"),
    ("get", "/api/v1/apps/{name}"),
    ("get", "/api/v1/capacity"),
    ("post", "/api/v1/nodes/{name}/cordon"),
    ("post", "/api/v1/nodes/{name}/uncordon"),
    ("post", "/api/v1/nodes/{name}/drain"),
    ("post", "/api/v1/nodes/{name}/run"),
    ("post", "/api/v1/nodes/{name}/deactivate"),
    ("delete", "/api/v1/nodes/{name}"),
    ("get", "/api/v1/environments/{env}/rollout"),
    ("post", "/api/v1/environments/{env}/rollout/resume"),
    ("post", "/api/v1/environments/{env}/rollout/abort"),
    ("get", "/api/v1/ca"),
    ("post", "/api/v1/certificate_requests/{name}"),
    ("get", "/api/v1/certificate_requests/{name}"),
    ("post", "/api/v1/hooks/git"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

/// One operation of the document.
struct Op<'a> {
    method: &'a str,
    path: &'a str,
    spec: &'a Value,
}

impl<'a> Op<'a> {
    fn name(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.path)
    }

    fn security(&self) -> Vec<&'a str> {
        self.spec["security"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r.as_object().into_iter().flat_map(|o| o.keys()))
            .map(String::as_str)
            .collect()
    }

    /// Open: no security, or one requirement that is empty.
    fn is_open(&self) -> bool {
        match self.spec.get("security").and_then(Value::as_array) {
            None => true,
            Some(reqs) => reqs
                .iter()
                .any(|r| r.as_object().is_some_and(|o| o.is_empty())),
        }
    }

    /// Who the document says calls it: the node, else an operator, else anyone.
    fn caller(&self, node: &str) -> Peer {
        let security = self.security();
        if self.is_open() {
            Peer::Anonymous
        } else if security.contains(&"operator_certificate") {
            Peer::Operator("tests".into())
        } else {
            assert_eq!(security, ["node_certificate"], "{}", self.name());
            Peer::Node(node.into())
        }
    }

    fn response(&self, status: StatusCode) -> Option<&'a Value> {
        self.spec["responses"].get(status.as_str())
    }
}

async fn document(cx: &TestContext) -> Value {
    let req = Request::get("/openapi.json").body(Body::empty()).unwrap();
    let (status, headers, body) = cx.send_as(Peer::Anonymous, req).await;
    assert_eq!(status, StatusCode::OK, "open to anyone");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    serde_json::from_slice(&body).unwrap()
}

fn operations(doc: &Value) -> Vec<Op<'_>> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(spec) = item.get(method) {
                ops.push(Op { method, path, spec });
            }
        }
    }
    ops
}

/// `{x}` names of a path template.
fn template_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

fn params<'a>(op: &'a Op<'_>, place: &str) -> Vec<&'a Value> {
    op.spec["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == place)
        .collect()
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_hangs_together() {
    let cx = TestContext::directory().await;
    let doc = document(&cx).await;
    let check = Checker::new(&doc);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "drover-server");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let mut all_refs = Vec::new();
    refs(&doc, "#", &mut all_refs);
    assert!(all_refs.len() > 20, "schemas are referenced, not inlined");
    for (at, reference) in &all_refs {
        assert!(
            check.resolve(reference).is_some_and(Value::is_object),
            "{at}: `{reference}` does not resolve"
        );
    }

    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    let tags: Vec<&Value> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["name"])
        .collect();
    let mut used_schemes = std::collections::BTreeSet::new();
    let mut ids = std::collections::BTreeSet::new();
    for op in operations(&doc) {
        let name = op.name();
        let id = op.spec["operationId"].as_str().expect("an operationId");
        assert!(ids.insert(id), "{name}: operationId `{id}` twice");
        assert!(op.spec["summary"].is_string(), "{name}: no summary");
        for tag in op.spec["tags"].as_array().expect("tags") {
            assert!(tags.contains(&tag), "{name}: undeclared tag {tag}");
        }
        for scheme in op.security() {
            assert!(schemes.contains_key(scheme), "{name}: no scheme `{scheme}`");
            used_schemes.insert(scheme);
        }

        let mut declared: Vec<&str> = params(&op, "path")
            .iter()
            .map(|p| {
                assert_eq!(p["required"], true, "{name}: path parameters are required");
                p["name"].as_str().unwrap()
            })
            .collect();
        declared.sort_unstable();
        let mut in_template = template_params(op.path);
        in_template.sort_unstable();
        assert_eq!(declared, in_template, "{name}: path parameters");

        let responses = op.spec["responses"].as_object().unwrap();
        assert!(!responses.is_empty(), "{name}: no responses");
        for (status, response) in responses {
            assert!(status.parse::<u16>().is_ok(), "{name}: status `{status}`");
            assert!(
                response["description"].is_string(),
                "{name} {status}: no description"
            );
        }
        // The examples the document shows are bodies of its own schemas.
        for (media, content) in op.spec["requestBody"]["content"]
            .as_object()
            .into_iter()
            .flatten()
        {
            if let Some(example) = content.get("example") {
                check
                    .check(&content["schema"], example)
                    .unwrap_or_else(|e| panic!("{name}: {media} example:\n{e}"));
            }
        }
    }
    let declared: std::collections::BTreeSet<&str> = schemes.keys().map(String::as_str).collect();
    assert_eq!(used_schemes, declared, "every security scheme is used");
    cx.stop().await;
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let cx = TestContext::directory().await;
    let doc = document(&cx).await;
    let mut documented: Vec<(&str, &str)> = operations(&doc)
        .iter()
        .map(|o| (o.method, o.path))
        .collect();
    documented.sort_unstable();
    let mut expected = ROUTES.to_vec();
    expected.sort_unstable();
    assert_eq!(documented, expected);

    // Every other method of a documented path is refused by the router
    // itself (HEAD rides on GET, as axum serves it).
    for (path, item) in doc["paths"].as_object().unwrap() {
        let uri = concrete(path, &sha(b"welcome\n"), "run-1");
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                continue;
            }
            let req = Request::builder()
                .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
                .uri(&uri)
                .body(Body::empty())
                .unwrap();
            let (status, _, _) = cx.send_as(Peer::Operator("tests".into()), req).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
    // What the router answers for a route it does not have: the fallback's
    // empty 404, which no documented 404 looks like.
    for uri in [
        "/api/v1/nodes/web-1/nope",
        "/api/v2/nodes",
        "/api/v1/openapi.json",
    ] {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        let (status, _, body) = cx.send_as(Peer::Operator("tests".into()), req).await;
        assert_eq!((status, body.len()), (StatusCode::NOT_FOUND, 0), "{uri}");
    }
    cx.stop().await;
}

/// `path` with its parameters filled in for node web-1.
fn concrete(path: &str, sha256: &str, run_id: &str) -> String {
    let mut uri = path.to_owned();
    for param in template_params(path) {
        let value = match param {
            "name" if path.starts_with("/api/v1/apps/") => "web",
            "name" => "web-1",
            "sha256" => sha256,
            "id" => run_id,
            "env" => "production",
            other => panic!("give `{{{other}}}` a value in this test"),
        };
        uri = uri.replace(&format!("{{{param}}}"), value);
    }
    uri
}

/// `?a=..&b=..` with a valid value for every documented query parameter:
/// its example, else one its schema allows (an integer's minimum).
fn query(op: &Op<'_>) -> String {
    let pairs: Vec<String> = params(op, "query")
        .iter()
        .map(|p| {
            let schema = &p["schema"];
            let example = p.get("example").or_else(|| schema.get("example"));
            let value = if p["name"] == "key" {
                // The certificate request's key: the one the test's CSR was made with.
                key_fingerprint()
            } else if let Some(example) = example.and_then(Value::as_str) {
                example.to_owned()
            } else if schema["format"] == "date-time" {
                "2100-01-01T00:00:00Z".to_owned()
            } else if schema["type"].to_string().contains("integer") {
                schema["minimum"].as_u64().unwrap_or(1).to_string()
            } else {
                panic!("give query parameter {} a value in this test", p["name"])
            };
            format!("{}={value}", p["name"].as_str().unwrap())
        })
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// The request body for `op`: its documented example, or a CSR.
fn body(op: &Op<'_>) -> (Option<&'static str>, Vec<u8>) {
    let Some(content) = op.spec["requestBody"]["content"].as_object() else {
        return (None, Vec::new());
    };
    if let Some(json) = content.get("application/json") {
        let example = json.get("example").expect("JSON bodies have an example");
        return (Some("application/json"), example.to_string().into_bytes());
    }
    assert!(
        content.contains_key("application/x-pem-file"),
        "{}",
        op.name()
    );
    (Some("application/x-pem-file"), csr("web-1").into_bytes())
}

/// The one key of the test's certificate requests, so that the status
/// route can be asked about the request the submission made.
fn test_key() -> &'static rcgen::KeyPair {
    static KEY: std::sync::LazyLock<rcgen::KeyPair> = std::sync::LazyLock::new(|| {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
    });
    &KEY
}

fn key_fingerprint() -> String {
    use rcgen::PublicKeyData;
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(test_key().subject_public_key_info()))
}

fn csr(name: &str) -> String {
    use rcgen::{CertificateParams, DistinguishedName, DnType, SanType};
    let key = test_key();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())];
    params.serialize_request(key).unwrap().pem().unwrap()
}

/// The answer matches the documented response of its status: the media
/// type, and for JSON the schema.
fn assert_documented(
    check: &Checker<'_>,
    op: &Op<'_>,
    status: StatusCode,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) {
    let name = op.name();
    let response = op.response(status).unwrap_or_else(|| {
        panic!(
            "{name} answered an undocumented {status}: {}",
            String::from_utf8_lossy(body)
        )
    });
    let Some(content) = response["content"].as_object() else {
        assert!(
            body.is_empty(),
            "{name} {status}: a body the document does not show"
        );
        return;
    };
    let actual = headers[header::CONTENT_TYPE].to_str().unwrap();
    let essence = |m: &str| m.split(';').next().unwrap().trim().to_owned();
    let (media, spec) = content
        .iter()
        .find(|(m, _)| essence(m) == essence(actual))
        .unwrap_or_else(|| panic!("{name} {status}: {actual} is not documented"));
    if essence(media) == "application/json" {
        let value: Value = serde_json::from_slice(body).unwrap();
        check
            .check(&spec["schema"], &value)
            .unwrap_or_else(|e| panic!("{name} {status}: {value}\n{e}"));
    }
}

#[tokio::test]
async fn every_operation_called_as_documented_answers_as_documented() {
    let cx = TestContext::directory().await;
    let doc = document(&cx).await;
    let check = Checker::new(&doc);
    let ops = operations(&doc);
    let report_op = ops
        .iter()
        .find(|o| (o.method, o.path) == ("post", "/api/v1/nodes/{name}/reports"));
    let run_id = body(report_op.expect("the report route"));
    let run_id: Value = serde_json::from_slice(&run_id.1).unwrap();
    let run_id = run_id["run_id"].as_str().unwrap().to_owned();
    let motd = sha(b"welcome\n");

    // Writes first, so that the reads find a node, a report, a request;
    // deletes (a purge) last, so that nothing else misses what they delete.
    let (mut writes, rest): (Vec<&Op<'_>>, Vec<&Op<'_>>) =
        ops.iter().partition(|o| o.method == "post");
    let (deletes, reads): (Vec<&Op<'_>>, Vec<&Op<'_>>) =
        rest.into_iter().partition(|o| o.method == "delete");
    writes.sort_by_key(|o| !o.path.ends_with("/catalog"));
    for op in writes.into_iter().chain(reads).chain(deletes) {
        let name = op.name();
        let path = concrete(op.path, &motd, &run_id);
        let (media, bytes) = body(op);
        let request = |peer: Peer, uri: &str, bytes: &[u8]| {
            let mut req = Request::builder()
                .method(Method::from_bytes(op.method.to_uppercase().as_bytes()).unwrap())
                .uri(uri);
            if let Some(media) = media {
                req = req.header(header::CONTENT_TYPE, media);
            }
            let req = req.body(Body::from(bytes.to_vec())).unwrap();
            cx.send_as(peer, req)
        };
        let uri = path.clone() + &query(op);

        let (status, headers, answer) = request(op.caller("web-1"), &uri, &bytes).await;
        // Without a rollout to act on, resume and abort are refused as
        // documented (their acceptance is tested in rollout.rs).
        let refused_as_documented =
            status == StatusCode::CONFLICT && op.path.starts_with("/api/v1/environments/");
        assert!(
            status.is_success() || status == StatusCode::NOT_MODIFIED || refused_as_documented,
            "{name} as documented: {status} {}",
            String::from_utf8_lossy(&answer)
        );
        assert_documented(&check, op, status, &headers, &answer);

        // Bad input is refused as the document says.
        let mut bad = Vec::new();
        if media.is_some() {
            bad.push((uri.clone(), b"{not a body".to_vec()));
        }
        // A parameter that takes any text (a name filter) has no bad value.
        let free_text = |p: &Value| {
            let schema = &p["schema"];
            schema["type"] == "string"
                && schema.get("format").is_none()
                && schema.get("pattern").is_none()
        };
        for p in params(op, "query").into_iter().filter(|p| !free_text(p)) {
            bad.push((
                format!("{path}?{}=not-a-value", p["name"].as_str().unwrap()),
                bytes.clone(),
            ));
        }
        for (uri, bytes) in bad {
            let (status, headers, answer) = request(op.caller("web-1"), &uri, &bytes).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {uri}");
            assert_documented(&check, op, status, &headers, &answer);
        }

        if op.is_open() {
            continue;
        }
        // What the document says about being refused is what happens.
        let (status, headers, answer) = request(Peer::Anonymous, &uri, &bytes).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{name} without a credential"
        );
        assert_documented(&check, op, status, &headers, &answer);
        let (status, headers, answer) = request(Peer::Node("intruder".into()), &uri, &bytes).await;
        assert!(status.is_client_error(), "{name} as another node: {status}");
        assert_documented(&check, op, status, &headers, &answer);
    }
    cx.stop().await;
}

#[tokio::test]
async fn wire_types_of_the_catalog_crate_match_their_schemas() {
    use drover_catalog::report::{
        CachedCatalog, Event, FileChecks, ReplicaReport, ReplicaState, ResourceCounts,
        ResourceReport, ResourceStatus, RunMetrics, RunStatus,
    };
    use drover_catalog::{CatalogRequest, Report, ResourceId};

    let cx = TestContext::directory().await;
    let doc = document(&cx).await;
    let exhaustive = Checker::exhaustive(&doc);
    // Every field set to something its serializer does not skip, so a field
    // added to the catalog crate shows up here (and fails to compile first).
    let report = Report {
        run_id: "run-1".into(),
        node: "web-1".into(),
        environment: "production".into(),
        commit: "c1".into(),
        catalog_version: "v1".into(),
        noop: true,
        started_at: "2025-01-01T00:00:00Z".parse().unwrap(),
        finished_at: "2025-01-01T00:00:01Z".parse().unwrap(),
        status: RunStatus::Changed,
        cached_catalog: CachedCatalog::OnFailure,
        error: Some("the server was away".into()),
        catalog_error: Some("roles/web.toml:3:9: unknown key `pth`".into()),
        agent_version: "0.1.0".into(),
        server: Some("https://drover-a.example:8140".into()),
        resources: vec![ResourceReport {
            id: ResourceId::try_from("file:/etc/motd".to_owned()).unwrap(),
            status: ResourceStatus::Noop,
            corrective: true,
            events: vec![Event {
                property: "content".into(),
                previous: None,
                desired: Some("abc".into()),
                message: Some("would change".into()),
            }],
            diff: Some("--- a\n+++ b\n".into()),
            error: Some("denied".into()),
            refreshed: true,
            duration_ms: 1.5,
        }],
        replicas: vec![ReplicaReport {
            container: "web-0-p1".into(),
            app: "web".into(),
            replica: 0,
            placement: "p1".into(),
            state: ReplicaState::Healthy,
            since: Some("2025-01-01T00:00:00Z".parse().unwrap()),
        }],
        tags: vec!["web".into()],
        metrics: RunMetrics {
            duration_ms: 1000.0,
            facts_ms: 1.0,
            catalog_ms: 2.0,
            apply_ms: 3.0,
            resources: ResourceCounts {
                total: 1,
                noop: 1,
                corrective: 1,
                ..ResourceCounts::default()
            },
            files: FileChecks {
                hashed: 1,
                trusted: 2,
                full_verification: true,
            },
        },
    };
    let value = serde_json::to_value(&report).unwrap();
    exhaustive
        .check(exhaustive.named("Report"), &value)
        .unwrap_or_else(|e| panic!("{value}\n{e}"));

    let mut facts = serde_json::Map::new();
    facts.insert("hostname".into(), json!("web-1"));
    let request = CatalogRequest {
        facts,
        environment: Some("staging".into()),
    };
    let value = serde_json::to_value(&request).unwrap();
    exhaustive
        .check(exhaustive.named("CatalogRequest"), &value)
        .unwrap_or_else(|e| panic!("{value}\n{e}"));

    // Enums: the same names, no more, no fewer.
    let names = |schema: &str| sorted(exhaustive.named(schema)["enum"].as_array().unwrap().clone());
    assert_eq!(names("ResourceStatus"), serialized(&ResourceStatus::ALL));
    let runs = [RunStatus::Unchanged, RunStatus::Changed, RunStatus::Failed];
    assert_eq!(names("RunStatus"), serialized(&runs));
    let cached = [CachedCatalog::NotUsed, CachedCatalog::OnFailure];
    assert_eq!(names("CachedCatalog"), serialized(&cached));
    assert_eq!(names("ReplicaState"), serialized(&ReplicaState::ALL));
    cx.stop().await;
}

fn serialized<T: serde::Serialize>(values: &[T]) -> Vec<Value> {
    sorted(
        values
            .iter()
            .map(|v| serde_json::to_value(v).unwrap())
            .collect(),
    )
}

fn sorted(mut values: Vec<Value>) -> Vec<Value> {
    values.sort_by_key(Value::to_string);
    values
}
