//! Dashboard sessions: the login cookie is a random session id, not the
//! operator token; it opens the dashboard until it expires or logout ends it.

use std::time::Duration;

use super::*;

const TOKEN: &str = "operator-token-0123456789abcdef";

/// Development mode with [`TOKEN`] as the operator token and sessions that
/// last `lifetime`.
async fn with_sessions(lifetime: Duration) -> TestContext {
    let tmp = TempDir::new().unwrap();
    let repo = site(tmp.path(), "welcome\n");
    let token_file = tmp.path().join("operator-token");
    fs_err::write(&token_file, format!("{TOKEN}\n")).unwrap();
    TestContext::start_with(tmp, repo.clone(), repo.display().to_string(), |c| {
        c.operator_token_file = token_file;
        c.session_lifetime = lifetime;
    })
    .await
}

/// Signs in with `token`; the `Set-Cookie` header of the answer.
async fn login(cx: &TestContext, token: &str) -> (StatusCode, Option<String>) {
    let req = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={token}")))
        .unwrap();
    let (status, headers, _) = cx.send_as(Peer::Anonymous, req).await;
    let cookie = headers
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    (status, cookie)
}

/// `GET /` in a browser that sends `cookie` (`name=value`): 200, or 303 to `/login`.
async fn dashboard(cx: &TestContext, cookie: &str) -> StatusCode {
    let req = Request::get("/")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    cx.send_as(Peer::Anonymous, req).await.0
}

async fn sessions(cx: &TestContext) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(cx.db.reads())
        .await
        .unwrap()
}

#[tokio::test]
async fn login_opens_a_session_that_is_not_the_token_and_logout_ends_it() {
    let cx = with_sessions(Duration::from_secs(3600)).await;
    let (status, _) = login(&cx, "not-the-token-0123456789").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, set_cookie) = login(&cx, TOKEN).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let set_cookie = set_cookie.expect("a session cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/",
        "Max-Age=3600",
    ] {
        assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
    }
    assert!(
        !set_cookie.contains(TOKEN),
        "the cookie is not the token: {set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let id = cookie
        .strip_prefix("drover_session=")
        .expect("drover_session");
    assert!(id.len() >= 32, "{id}");
    assert_eq!(dashboard(&cx, &cookie).await, StatusCode::OK);
    assert_eq!(sessions(&cx).await, 1);
    // The database keeps a digest, not the id.
    let stored: String = sqlx::query_scalar("SELECT id_sha256 FROM sessions")
        .fetch_one(cx.db.reads())
        .await
        .unwrap();
    assert_ne!(stored, id);

    // The raw token in a cookie, or a made-up id, opens nothing.
    for forged in [
        format!("drover_session={TOKEN}"),
        format!("drover_operator={TOKEN}"),
        "drover_session=00112233445566778899aabbccddeeff".to_owned(),
    ] {
        assert_eq!(
            dashboard(&cx, &forged).await,
            StatusCode::SEE_OTHER,
            "{forged}"
        );
    }
    // A session cookie is still honoured on GET only.
    let req = Request::post("/api/v1/hooks/git")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        cx.send_as(Peer::Anonymous, req).await.0,
        StatusCode::UNAUTHORIZED
    );

    // The dashboard offers the way out.
    let req = Request::get("/")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let (_, _, page) = cx.send_as(Peer::Anonymous, req).await;
    assert!(
        String::from_utf8_lossy(&page).contains("action=\"/logout\""),
        "a sign-out button"
    );
    let req = Request::post("/logout")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = cx.send_as(Peer::Anonymous, req).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login");
    let cleared = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("drover_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert_eq!(sessions(&cx).await, 0, "logout deletes the session");
    assert_eq!(
        dashboard(&cx, &cookie).await,
        StatusCode::SEE_OTHER,
        "the old cookie is dead"
    );
    cx.stop().await;
}

#[tokio::test]
async fn an_expired_session_is_refused_and_collected() {
    let cx = with_sessions(Duration::from_millis(300)).await;
    let (_, set_cookie) = login(&cx, TOKEN).await;
    let cookie = set_cookie.unwrap().split(';').next().unwrap().to_owned();
    assert_eq!(dashboard(&cx, &cookie).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        dashboard(&cx, &cookie).await,
        StatusCode::SEE_OTHER,
        "expired"
    );
    assert_eq!(sessions(&cx).await, 1, "not yet collected");
    // The next login collects it.
    let (_, fresh) = login(&cx, TOKEN).await;
    assert!(fresh.is_some());
    assert_eq!(sessions(&cx).await, 1, "only the new session is left");
    assert_eq!(dashboard(&cx, &cookie).await, StatusCode::SEE_OTHER);
    cx.stop().await;
}
