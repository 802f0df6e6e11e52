//! Who may call what, in process (the TLS handshake is stood in for by the
//! `Peer` the listener would insert), and the catalog signature.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use drover_catalog::signed::{SIGNATURE_HEADER, VerifyingKey};
use drover_server::credentials::Peer;
use serde_json::Value;

use crate::TestContext;

fn node(name: &str) -> Peer {
    Peer::Node(name.to_owned())
}

#[tokio::test]
async fn node_routes_take_only_the_nodes_own_certificate() {
    let cx = TestContext::directory().await;
    let catalog = |peer: Peer, path: &str| {
        let req = Request::post(path).body(Body::from("{}")).unwrap();
        let cx = &cx;
        async move { cx.send_as(peer, req).await.0 }
    };
    let own = "/api/v1/nodes/web-1/catalog";
    assert_eq!(catalog(node("web-1"), own).await, StatusCode::OK);
    assert_eq!(catalog(node("web-2"), own).await, StatusCode::FORBIDDEN);
    assert_eq!(catalog(node("WEB-1"), own).await, StatusCode::FORBIDDEN);
    assert_eq!(
        catalog(Peer::Anonymous, own).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        catalog(Peer::Operator("alice".into()), own).await,
        StatusCode::FORBIDDEN
    );

    // Operator routes: not for nodes, not for anonymous callers.
    for path in [
        "/api/v1/nodes",
        "/api/v1/environments",
        "/api/v1/cluster",
        "/metrics",
    ] {
        let get = |peer| {
            let req = Request::get(path).body(Body::empty()).unwrap();
            let cx = &cx;
            async move { cx.send_as(peer, req).await.0 }
        };
        assert_eq!(get(node("web-1")).await, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(
            get(Peer::Anonymous).await,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            get(Peer::Operator("alice".into())).await,
            StatusCode::OK,
            "{path}"
        );
    }
    // A wrong bearer token is refused even on a connection with a certificate.
    let req = Request::get("/api/v1/nodes")
        .header("authorization", "Bearer not-a-token")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        cx.send_as(Peer::Operator("alice".into()), req).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The dashboard sends a browser without a credential to the login form.
    let req = Request::get("/").body(Body::empty()).unwrap();
    let (status, headers, _) = cx.send_as(Peer::Anonymous, req).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/login");
    cx.stop().await;
}

#[tokio::test]
async fn served_catalogs_carry_a_signature_over_their_exact_bytes() {
    let cx = TestContext::directory().await;
    let ca: Value = cx.get_json("/api/v1/ca").await;
    let key = VerifyingKey::from_base64(ca["catalog_signing_key"].as_str().unwrap()).unwrap();
    let req = Request::post("/api/v1/nodes/web-1/catalog")
        .body(Body::from("{}"))
        .unwrap();
    let (status, headers, body) = cx.send(req).await;
    assert_eq!(status, StatusCode::OK);
    let signature = headers[SIGNATURE_HEADER].to_str().unwrap();
    key.verify(&body, signature).unwrap();
    let mut tampered = body.to_vec();
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    assert!(key.verify(&tampered, signature).is_err());
    cx.stop().await;
}
