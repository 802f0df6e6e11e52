//! The rollout routes: an environment without a rollout, one whose staged
//! commit serves the canary only, and `resume`/`abort` accepted or refused
//! (409) by the rollout's state, with messages that say why; the
//! dashboard's page and its abort button (same origin, session, token).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{StatusCode, header};
use drover_server::credentials::Peer;
use serde_json::Value;

use super::{TestContext, write};

const ROLLOUT: &str = "[rollout]\nstages = [{ nodes = \"canary-*\" }, { percent = 100 }]\n\
                       gate = { min_wait_secs = 3600 }\n";

async fn rollout(cx: &TestContext) -> Value {
    cx.get_json("/api/v1/environments/production/rollout").await
}

async fn until(cx: &TestContext, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = rollout(cx).await;
        if done(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 20 s: {now:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post(cx: &TestContext, action: &str) -> (StatusCode, Value) {
    let (status, _, body) = cx
        .post(
            &format!("/api/v1/environments/production/rollout/{action}"),
            "",
        )
        .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A catalog's version: the motd's content is all that differs.
fn motd(catalog: &Value) -> String {
    catalog["version"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn rollout_routes_show_the_state_and_refuse_what_it_does_not_allow() {
    let cx = TestContext::directory().await;
    // Unknown environment.
    let (status, body) = cx.get("/api/v1/environments/nope/rollout").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "{}",
        String::from_utf8_lossy(&body)
    );
    // No [rollout]: the leader records the commit every node runs.
    let settled = until(&cx, "the first commit is recorded", |r| {
        !r["rollout"].is_null()
    })
    .await;
    assert_eq!(settled["staged"], false);
    assert_eq!(settled["rollout"]["state"], "done", "{settled:#}");
    assert_eq!(settled["rollout"]["to_commit"], settled["commit"]);
    let (status, body) = post(&cx, "resume").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["error"],
        "cannot resume the rollout of `production`: it is done: every node is served its commit"
    );
    assert_eq!(post(&cx, "abort").await.0, StatusCode::CONFLICT);

    // Two known nodes, then a staged commit: only the canary gets it.
    let (status, _, canary_before) = cx.catalog("canary-1").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, before) = cx.catalog("web-1").await;
    assert_eq!(status, StatusCode::OK);
    write(
        &cx.repo,
        &[("drover.toml", ROLLOUT), ("files/motd", "staged\n")],
    );
    cx.hook().await;
    let rolling = until(&cx, "the rollout starts", |r| {
        r["rollout"]["state"] == "rolling"
    })
    .await;
    assert_eq!(rolling["staged"], true);
    assert_eq!(
        rolling["rollout"]["stages"][0]["nodes"],
        serde_json::json!(["canary-1"])
    );
    assert_eq!(
        rolling["rollout"]["stages"][1]["nodes"],
        serde_json::json!(["web-1"])
    );
    assert_eq!(rolling["rollout"]["from_commit"], settled["commit"]);
    let canary = cx.catalog("canary-1").await.2;
    let web = cx.catalog("web-1").await.2;
    assert_ne!(
        motd(&canary),
        motd(&canary_before),
        "the canary is served the new commit"
    );
    assert_eq!(canary["commit"], rolling["commit"]);
    assert_eq!(motd(&web), motd(&before), "web-1 keeps the previous commit");
    assert_eq!(web["commit"], settled["commit"]);
    assert!(
        rolling["rollout"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("stage 1"),
        "{rolling:#}"
    );

    // Resume is for a paused rollout; abort is accepted and applied.
    let (status, body) = post(&cx, "resume").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["error"],
        "cannot resume the rollout of `production`: it is rolling, not paused: its gate has not failed"
    );
    let (status, body) = post(&cx, "abort").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let aborted = until(&cx, "the abort applies", |r| {
        r["rollout"]["state"] == "aborted"
    })
    .await;
    assert!(aborted["rollout"]["request"].is_null(), "{aborted:#}");
    // Every server reloads the row once the leader wrote it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while motd(&cx.catalog("canary-1").await.2) != motd(&canary_before) {
        assert!(
            Instant::now() < deadline,
            "abort serves the canary the previous commit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = post(&cx, "abort").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("it was aborted"),
        "{body}"
    );

    // The dashboard's page shows it, with the nodes of each stage.
    let (status, page) = cx.get("/rollouts").await;
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.contains("data-environment=\"production\" data-state=\"aborted\""),
        "{page}"
    );
    assert!(
        page.contains("<a href=\"/nodes/canary-1\">canary-1</a>"),
        "{page}"
    );
    assert!(page.contains("aborted by an operator at stage 1"), "{page}");
}

const TOKEN: &str = "operator-token-0123456789abcdef";

/// A browser's button post on this server's own page.
fn button(path: &str, cookie: &str, form: &str, site: &str) -> axum::http::Request<Body> {
    axum::http::Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, "drover.test:8443")
        .header(header::ORIGIN, "https://drover.test:8443")
        .header("sec-fetch-site", site)
        .header(header::COOKIE, cookie)
        .body(Body::from(form.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn the_rollouts_page_aborts_with_the_sessions_token_only() {
    let tmp = tempfile::TempDir::new().unwrap();
    let repo = super::site(tmp.path(), "welcome\n");
    let token_file = tmp.path().join("operator-token");
    fs_err::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let cx = TestContext::start_with(tmp, repo.clone(), repo.display().to_string(), |c| {
        c.operator_token_file = token_file;
    })
    .await;
    until(&cx, "the first commit is recorded", |r| {
        !r["rollout"].is_null()
    })
    .await;
    assert_eq!(cx.catalog("canary-1").await.0, StatusCode::OK);
    write(
        &cx.repo,
        &[("drover.toml", ROLLOUT), ("files/motd", "staged\n")],
    );
    cx.hook().await;
    until(&cx, "the rollout starts", |r| {
        r["rollout"]["state"] == "rolling"
    })
    .await;

    let login = axum::http::Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={TOKEN}")))
        .unwrap();
    let (status, headers, _) = cx.send_as(Peer::Anonymous, login).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let page = axum::http::Request::get("/rollouts")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let (status, _, html) = cx.send_as(Peer::Anonymous, page).await;
    let html = String::from_utf8_lossy(&html).into_owned();
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("action=\"/rollouts/production/abort\""),
        "{html}"
    );
    assert!(
        !html.contains("/rollouts/production/resume"),
        "resume only when paused: {html}"
    );
    let marker = "name=\"token\" value=\"";
    let start = html.find(marker).expect("a form token") + marker.len();
    let form_token = html[start..].split('"').next().unwrap().to_owned();

    // Another site, no token, a wrong token: refused, nothing changes.
    let abort = "/rollouts/production/abort";
    let good = format!("token={form_token}");
    for (form, site) in [
        (good.as_str(), "cross-site"),
        ("", "same-origin"),
        ("token=00", "same-origin"),
    ] {
        let (status, _, _) = cx
            .send_as(Peer::Anonymous, button(abort, &cookie, form, site))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{form} {site}");
    }
    assert_eq!(rollout(&cx).await["rollout"]["state"], "rolling");
    let (status, headers, _) = cx
        .send_as(
            Peer::Anonymous,
            button(abort, &cookie, &good, "same-origin"),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/rollouts");
    until(&cx, "the page's abort applies", |r| {
        r["rollout"]["state"] == "aborted"
    })
    .await;
}
