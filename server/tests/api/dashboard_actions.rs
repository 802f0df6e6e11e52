//! The dashboard's forms through the router: a signed-in browser cordons,
//! drains and uncordons a node, and signs and rejects certificate requests,
//! with the form token of its session; every other post (no token, another
//! token, another site, no session) changes nothing.

use std::time::{Duration, Instant};

use super::*;

const TOKEN: &str = "operator-token-0123456789abcdef";
/// `min_available = 1`: a drain of its only node waits (nothing else fits
/// and nothing reports it healthy), so the page shows it draining however
/// fast the control loop is.
const SHOP: &str = "replicas = 1\nimage = \"busybox:1\"\nrequests = { memory = \"64MiB\" }\n\
                    disruption = { min_available = 1 }\n";
/// The host the browser of these tests talks to, and its origin.
const HOST: &str = "drover.test:8443";
const ORIGIN: &str = "https://drover.test:8443";
const FETCH_SITE: header::HeaderName = header::HeaderName::from_static("sec-fetch-site");

/// A server with [`TOKEN`] as its operator token, the shop app, and node
/// web-1 known (it asked for a catalog with the facts capacity comes from).
async fn fleet() -> TestContext {
    let tmp = TempDir::new().unwrap();
    let repo = site(tmp.path(), "welcome\n");
    write(&repo, &[("apps/shop.toml", SHOP)]);
    let token_file = tmp.path().join("operator-token");
    fs_err::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let cx = TestContext::start_with(tmp, repo.clone(), repo.display().to_string(), |c| {
        c.operator_token_file = token_file;
    })
    .await;
    let facts = json!({"facts": {
        "hostname": "web-1",
        "processors": {"count": 2},
        "memory": {"total_bytes": 4_u64 << 30},
    }});
    let (status, _, _) = cx
        .post("/api/v1/nodes/web-1/catalog", facts.to_string())
        .await;
    assert_eq!(status, StatusCode::OK);
    cx
}

/// Signs in; the session cookie (`drover_session=ID`).
async fn sign_in(cx: &TestContext) -> String {
    let req = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={TOKEN}")))
        .unwrap();
    let (status, headers, _) = cx.send_as(Peer::Anonymous, req).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let set_cookie = headers[header::SET_COOKIE].to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}

/// `GET /nodes/web-1` in a browser with `cookie`.
async fn node_page(cx: &TestContext, cookie: &str) -> String {
    let req = Request::get("/nodes/web-1")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = cx.send_as(Peer::Anonymous, req).await;
    let html = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, StatusCode::OK, "{html}");
    html
}

/// The form token in a node page.
fn form_token(html: &str) -> String {
    let marker = "name=\"token\" value=\"";
    let start = html.find(marker).expect("a form token") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// How a browser posts a button's form on this server's own page.
fn post(path: &str, cookie: Option<&str>) -> axum::http::request::Builder {
    let mut req = Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, ORIGIN)
        .header(FETCH_SITE, "same-origin");
    if let Some(cookie) = cookie {
        req = req.header(header::COOKIE, cookie);
    }
    req
}

/// `req` with header `name` set to `value`, replacing what it had.
fn with(
    mut req: axum::http::request::Builder,
    name: header::HeaderName,
    value: &str,
) -> axum::http::request::Builder {
    req.headers_mut()
        .unwrap()
        .insert(name, value.parse().unwrap());
    req
}

async fn send_form(
    cx: &TestContext,
    req: axum::http::request::Builder,
    form: &str,
) -> (StatusCode, HeaderMap, String) {
    let (status, headers, body) = cx
        .send_as(
            Peer::Anonymous,
            req.body(Body::from(form.to_owned())).unwrap(),
        )
        .await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// The node as the API gives it.
async fn node(cx: &TestContext) -> Value {
    cx.get_json("/api/v1/nodes/web-1").await
}

/// Waits until the control loop has placed shop's replica on web-1.
async fn placed(cx: &TestContext) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let node = node(cx).await;
        if node["replicas"][0]["app"] == "shop" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not placed within 20 s: {node:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_buttons_cordon_drain_and_uncordon_with_the_sessions_token() {
    let cx = fleet().await;
    placed(&cx).await;
    let cookie = sign_in(&cx).await;
    let html = node_page(&cx, &cookie).await;
    for part in [
        "id=\"maintenance\" data-cordoned=\"false\"",
        "action=\"/nodes/web-1/cordon\"",
        "id=\"cordon\"",
        "action=\"/nodes/web-1/drain\"",
        "name=\"deadline_secs\"",
        "<tr class=\"replica\" data-app=\"shop\"",
    ] {
        assert!(html.contains(part), "{part}: {html}");
    }
    assert!(!html.contains("id=\"maintenance-badge\""), "{html}");
    let token = form_token(&html);
    assert_eq!(token.len(), 64, "{token}");
    assert!(
        !cookie.contains(&token),
        "the token is not the session id itself"
    );

    // Cordon: back to the node page, cordoned, in maintenance.
    let form = format!("token={token}");
    let (status, headers, body) =
        send_form(&cx, post("/nodes/web-1/cordon", Some(&cookie)), &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers[header::LOCATION], "/nodes/web-1");
    let api = node(&cx).await;
    assert_eq!(api["cordoned"], true, "{api:#}");
    assert!(api["drain"].is_null(), "{api:#}");
    let html = node_page(&cx, &cookie).await;
    assert!(html.contains("id=\"maintenance-badge\""), "{html}");
    assert!(html.contains("id=\"uncordon\""), "{html}");
    // The fleet's node list says so too.
    let req = Request::get("/")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let (_, _, body) = cx.send_as(Peer::Anonymous, req).await;
    assert!(
        String::from_utf8_lossy(&body).contains(">in maintenance</span>"),
        "the overview lists web-1 in maintenance"
    );
    assert!(!html.contains("id=\"cordon\""), "{html}");

    // Drain with a deadline: a drain row, draining.
    let form = format!("token={token}&deadline_secs=600");
    let (status, _, body) = send_form(&cx, post("/nodes/web-1/drain", Some(&cookie)), &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let api = node(&cx).await;
    assert_eq!(api["draining"], true, "{api:#}");
    assert_eq!(api["drain"]["state"], "draining", "{api:#}");
    let deadline = api["drain"]["deadline_at_us"].as_i64().expect("a deadline");
    let in_secs = (deadline - jiff::Timestamp::now().as_microsecond()) / 1_000_000;
    assert!((590..=600).contains(&in_secs), "{in_secs}");
    let html = node_page(&cx, &cookie).await;
    assert!(html.contains("data-drain-state=\"draining\""), "{html}");
    assert!(html.contains("data-field=\"drain-status\""), "{html}");
    assert!(
        !html.contains("id=\"drain\""),
        "no Drain button while it drains"
    );

    // A deadline that is not a number is refused and changes nothing.
    let form = format!("token={token}&deadline_secs=soon");
    let (status, _, body) = send_form(&cx, post("/nodes/web-1/drain", Some(&cookie)), &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(node(&cx).await["drain"]["deadline_at_us"], deadline);

    // Uncordon ends the drain and the maintenance.
    let form = format!("token={token}");
    let (status, _, body) =
        send_form(&cx, post("/nodes/web-1/uncordon", Some(&cookie)), &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let api = node(&cx).await;
    assert_eq!(api["cordoned"], false, "{api:#}");
    assert!(api["drain"].is_null(), "{api:#}");
    assert!(
        !node_page(&cx, &cookie)
            .await
            .contains("id=\"maintenance-badge\"")
    );

    // An unknown node: 404, even with the right token.
    let (status, _, _) = send_form(&cx, post("/nodes/nope/cordon", Some(&cookie)), &form).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    cx.stop().await;
}

#[tokio::test]
async fn a_post_without_the_sessions_token_or_from_elsewhere_changes_nothing() {
    let cx = fleet().await;
    let cookie = sign_in(&cx).await;
    let token = form_token(&node_page(&cx, &cookie).await);
    let other_cookie = sign_in(&cx).await;
    let other_token = form_token(&node_page(&cx, &other_cookie).await);
    assert_ne!(token, other_token, "a token is bound to its session");

    let good = format!("token={token}");
    let refused: Vec<(&str, axum::http::request::Builder, String)> = vec![
        (
            "no token",
            post("/nodes/web-1/cordon", Some(&cookie)),
            String::new(),
        ),
        (
            "an empty token",
            post("/nodes/web-1/cordon", Some(&cookie)),
            "token=".into(),
        ),
        (
            "a made-up token",
            post("/nodes/web-1/cordon", Some(&cookie)),
            format!("token={}", "ab".repeat(32)),
        ),
        (
            "another session's token",
            post("/nodes/web-1/drain", Some(&cookie)),
            format!("token={other_token}"),
        ),
        (
            "a cross-site post",
            with(
                post("/nodes/web-1/cordon", Some(&cookie)),
                FETCH_SITE,
                "cross-site",
            ),
            good.clone(),
        ),
        (
            "a same-site post from another origin",
            with(
                post("/nodes/web-1/drain", Some(&cookie)),
                FETCH_SITE,
                "same-site",
            ),
            good.clone(),
        ),
        (
            "a foreign origin",
            with(
                post("/nodes/web-1/cordon", Some(&cookie)),
                header::ORIGIN,
                "https://evil.example",
            ),
            good.clone(),
        ),
        (
            "an opaque origin",
            with(
                post("/nodes/web-1/cordon", Some(&cookie)),
                header::ORIGIN,
                "null",
            ),
            good.clone(),
        ),
    ];
    for (what, req, form) in refused {
        let (status, _, body) = send_form(&cx, req, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
        assert!(body.contains("403 forbidden: "), "{what}: {body}");
        let api = node(&cx).await;
        assert_eq!(api["cordoned"], false, "{what}: {api:#}");
        assert!(api["drain"].is_null(), "{what}: {api:#}");
    }

    // Without a session: to the login form, whatever the form says.
    for (what, cookie) in [
        ("no cookie", None),
        (
            "an unknown session",
            Some("drover_session=00112233445566778899aabbccddeeff"),
        ),
    ] {
        let (status, headers, _) = send_form(&cx, post("/nodes/web-1/cordon", cookie), &good).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{what}");
        assert_eq!(headers[header::LOCATION], "/login", "{what}");
    }
    // The operator token itself does not stand in for a session here.
    let req =
        post("/nodes/web-1/cordon", None).header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    let (status, headers, _) = send_form(&cx, req, &good).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login");
    // A session that has ended.
    let req = Request::post("/logout")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    cx.send_as(Peer::Anonymous, req).await;
    let (status, headers, _) =
        send_form(&cx, post("/nodes/web-1/cordon", Some(&cookie)), &good).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login");
    assert_eq!(node(&cx).await["cordoned"], false);

    // A client that is not a browser (no Origin, no Sec-Fetch-Site) still
    // acts with the session and its token.
    let req = Request::post("/nodes/web-1/cordon")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, &other_cookie);
    let (status, _, body) = send_form(&cx, req, &format!("token={other_token}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(node(&cx).await["cordoned"], true);
    cx.stop().await;
}

#[tokio::test]
async fn without_a_session_the_node_page_offers_the_login_instead_of_buttons() {
    let cx = fleet().await;
    // An operator with a credential but no session (here the test's
    // operator certificate): the state, but no form to post.
    let html = cx.page("/nodes/web-1").await;
    assert!(html.contains("id=\"maintenance\""), "{html}");
    assert!(!html.contains("name=\"token\""), "{html}");
    assert!(html.contains("href=\"/login\""), "{html}");
    cx.stop().await;
}

/// A certificate request for `name`, pending (no enrollment token).
async fn request_certificate(cx: &TestContext, name: &str) {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let req = Request::post(format!("/api/v1/certificate_requests/{name}"))
        .body(Body::from(csr))
        .unwrap();
    let (status, _, body) = cx.send_as(Peer::Anonymous, req).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&body)
    );
}

async fn certificates_page(cx: &TestContext, cookie: &str) -> String {
    let req = Request::get("/certificates")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = cx.send_as(Peer::Anonymous, req).await;
    let html = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, StatusCode::OK, "{html}");
    html
}

#[tokio::test]
async fn pending_requests_are_signed_and_rejected_from_the_page_and_only_from_it() {
    let cx = fleet().await;
    request_certificate(&cx, "db-9").await;
    request_certificate(&cx, "db-10").await;
    let cookie = sign_in(&cx).await;
    let html = certificates_page(&cx, &cookie).await;
    assert!(
        html.contains(r#"<tr class="request" data-name="db-9">"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<code class="fingerprint">sha256:"#),
        "{html}"
    );
    let token = form_token(&html);

    // Refused: no token, another site, no session.
    let (status, _, _) = send_form(&cx, post("/certificates/db-9/sign", Some(&cookie)), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let foreign = with(
        post("/certificates/db-9/sign", Some(&cookie)),
        FETCH_SITE,
        "cross-site",
    );
    let (status, _, body) = send_form(&cx, foreign, &format!("token={token}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, headers, _) = send_form(
        &cx,
        post("/certificates/db-9/sign", None),
        &format!("token={token}"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login");
    assert!(
        certificates_page(&cx, &cookie)
            .await
            .contains(r#"data-name="db-9""#)
    );

    // Signed, and rejected, with the session's token.
    let form = format!("token={token}");
    let (status, headers, body) =
        send_form(&cx, post("/certificates/db-9/sign", Some(&cookie)), &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers[header::LOCATION], "/certificates");
    let (status, _, _) = send_form(
        &cx,
        post("/certificates/db-10/reject", Some(&cookie)),
        &form,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let html = certificates_page(&cx, &cookie).await;
    assert!(!html.contains(r#"data-name="db-9""#), "{html}");
    assert!(!html.contains(r#"data-name="db-10""#), "{html}");
    assert!(html.contains("No request waits"), "{html}");
    // Signing what is not pending says so.
    let (status, _, body) =
        send_form(&cx, post("/certificates/db-9/sign", Some(&cookie)), &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
