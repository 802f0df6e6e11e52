//! The git hook: forge webhooks signed with `hook_secret_file` (GitHub's
//! HMAC, GitLab's token) refresh without an operator credential, anything
//! else is refused, and a refresh that failed is said so.

use super::*;

const SECRET: &str = "hook-secret-0123456789abcdef";
const BODY: &str = r#"{"ref":"refs/heads/main","after":"0123abcd"}"#;

/// Development mode with a hook secret file holding [`SECRET`] (and a
/// comment and a second secret, as while rotating).
async fn with_secret() -> TestContext {
    let tmp = TempDir::new().unwrap();
    let repo = site(tmp.path(), "welcome\n");
    let secret_file = tmp.path().join("hook-secret");
    fs_err::write(
        &secret_file,
        format!("# github and gitlab\n{SECRET}\nnext-secret-0123456789abcdef\n"),
    )
    .unwrap();
    TestContext::start_with(tmp, repo.clone(), repo.display().to_string(), |c| {
        c.hook_secret_file = Some(secret_file);
    })
    .await
}

fn github_signature(secret: &str, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body.as_bytes()))
    )
}

/// Posts `body` to the hook with `headers`, on a connection without a
/// certificate; the status and the JSON answer.
async fn hook_as(
    cx: &TestContext,
    peer: Peer,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut req =
        Request::post("/api/v1/hooks/git").header(header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let (status, _, bytes) = cx
        .send_as(peer, req.body(Body::from(body.to_owned())).unwrap())
        .await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_signed_webhook_refreshes_and_an_unsigned_or_wrong_one_is_401() {
    let cx = with_secret().await;
    let good = github_signature(SECRET, BODY);
    let (status, body) = hook_as(
        &cx,
        Peer::Anonymous,
        &[("x-hub-signature-256", &good)],
        BODY,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["refreshed"], true);
    // The rotated-in second secret signs too.
    let next = github_signature("next-secret-0123456789abcdef", BODY);
    let (status, _) = hook_as(
        &cx,
        Peer::Anonymous,
        &[("x-hub-signature-256", &next)],
        BODY,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = hook_as(&cx, Peer::Anonymous, &[("x-gitlab-token", SECRET)], BODY).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["refreshed"], true);

    let wrong_key = github_signature("not-the-secret-0123456789", BODY);
    let other_body = github_signature(SECRET, "{}");
    let cases: [(&[(&str, &str)], &str); 7] = [
        (&[], "no X-Hub-Signature-256 or X-Gitlab-Token"),
        (&[("x-hub-signature-256", &wrong_key)], "does not match"),
        (&[("x-hub-signature-256", &other_body)], "does not match"),
        (&[("x-hub-signature-256", "sha256=zz")], "hex digits"),
        (&[("x-hub-signature-256", &good[7..])], "hex digits"),
        (
            &[("x-gitlab-token", "hook-secret-0123456789abcdeX")],
            "not the hook secret",
        ),
        (&[("x-gitlab-token", "")], "not the hook secret"),
    ];
    for (headers, why) in cases {
        let (status, body) = hook_as(&cx, Peer::Anonymous, headers, BODY).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        let expected = if headers.is_empty() { "operator" } else { why };
        assert!(error.contains(expected), "{headers:?}: {error}");
    }
    // A node certificate without a signature is still refused; operators
    // keep their way in without one.
    let (status, _) = hook_as(&cx, Peer::Node("web-1".into()), &[], BODY).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = hook_as(&cx, Peer::Operator("alice".into()), &[], "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["refreshed"], true);
    cx.stop().await;
}

#[tokio::test]
async fn a_signed_webhook_is_refused_without_a_hook_secret_file() {
    let cx = TestContext::directory().await;
    let signature = github_signature(SECRET, BODY);
    let (status, body) = hook_as(
        &cx,
        Peer::Anonymous,
        &[("x-hub-signature-256", &signature)],
        BODY,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("hook_secret_file"),
        "{body}"
    );
    cx.stop().await;
}

#[tokio::test]
async fn a_short_hook_secret_stops_the_start_with_the_files_name() {
    let tmp = TempDir::new().unwrap();
    let repo = site(tmp.path(), "welcome\n");
    let secret_file = tmp.path().join("hook-secret");
    fs_err::write(&secret_file, "short\n").unwrap();
    let mut config = Config::new(repo.display().to_string(), tmp.path().join("data"));
    config.hook_secret_file = Some(secret_file);
    let err = AppState::open(config).await.err().unwrap().to_string();
    assert!(
        err.contains("hook_secret_file") && err.contains("hook-secret") && err.contains("hint:"),
        "{err}"
    );
}

#[tokio::test]
async fn a_failed_fetch_answers_502_with_the_git_error_not_refreshed() {
    let tmp = TempDir::new().unwrap();
    let repo = tmp.path().join("origin");
    write(
        &repo,
        &[
            ("nodes.toml", NODES),
            ("roles/base.toml", BASE),
            ("files/motd", "welcome\n"),
        ],
    );
    init_and_commit(&repo);
    let cx = TestContext::start(tmp, repo.clone(), repo.display().to_string()).await;
    cx.hook().await;

    // The origin goes away: the next fetch fails.
    fs_err::remove_dir_all(&repo).unwrap();
    let (status, body) = hook_as(&cx, Peer::Operator("alice".into()), &[], "").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_ne!(body["refreshed"], true, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with("the repository refresh failed: "),
        "{error}"
    );
    assert!(error.contains("hint:"), "{error}");
    let envs = cx.get_json("/api/v1/environments").await;
    assert!(envs["refresh_error"].is_string(), "{envs}");
    // The previous commits stay served.
    let (status, _, _) = cx.catalog("web-1").await;
    assert_eq!(status, StatusCode::OK);
    cx.stop().await;
}

fn init_and_commit(repo: &Path) {
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &["commit", "-q", "-m", "first"],
    ] {
        git(repo, args);
    }
}
