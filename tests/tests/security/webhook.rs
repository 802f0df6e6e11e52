//! The git hook and the dashboard login over real TLS, as a forge and a
//! browser meet them: a signed webhook refreshes without an operator
//! credential, a wrong one is refused, and the login cookie is a session.

use drover_tests::{GitRepo, Server, toml_str};
use sha2::{Digest, Sha256};

const SECRET: &str = "forge-webhook-secret-0123456789";

/// HMAC-SHA256 (RFC 2104) written out, independent of the server's crate.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn head_commit(server: &Server) -> String {
    let (status, envs) = server.request("GET", "/api/v1/environments", None);
    assert_eq!(status, 200, "{envs}");
    envs["environments"][0]["commit"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_forge_webhook_signed_with_the_hook_secret_refreshes_and_a_forged_one_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = GitRepo::init(&tmp.path().join("repo"));
    repo.write("nodes.toml", "[[node]]\nmatch = \"*\"\nroles = []\n");
    repo.commit("first");
    let secret_file = tmp.path().join("hook-secret");
    fs_err::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let server = Server::start_with(
        &repo.path,
        &tmp.path().join("server"),
        "127.0.0.1:0",
        &format!("hook_secret_file = {}\n", toml_str(&secret_file)),
        &[],
    );
    let first = head_commit(&server);

    let second = repo.write("motd", "pushed\n").commit("second");
    let body = format!(r#"{{"ref":"refs/heads/main","after":"{second}"}}"#);
    let forged = format!(
        "sha256={}",
        hex::encode(hmac_sha256(b"not-the-secret-0123456789", body.as_bytes()))
    );
    for headers in [
        vec![],
        vec![("X-Hub-Signature-256", forged.as_str())],
        vec![("X-Gitlab-Token", "not-the-secret-0123456789")],
    ] {
        let (status, text, _) =
            server.request_with_headers("/api/v1/hooks/git", &headers, Some(body.as_bytes()));
        assert_eq!(status, 401, "{headers:?}: {text}");
    }
    assert_eq!(
        head_commit(&server),
        first,
        "a refused hook refreshes nothing"
    );

    let signature = format!(
        "sha256={}",
        hex::encode(hmac_sha256(SECRET.as_bytes(), body.as_bytes()))
    );
    let (status, text, _) = server.request_with_headers(
        "/api/v1/hooks/git",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &signature),
            ("Content-Type", "application/json"),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(status, 202, "{text}");
    assert!(text.contains("\"refreshed\":true"), "{text}");
    assert_eq!(head_commit(&server), second, "the push is served");

    let third = repo.write("motd", "again\n").commit("third");
    let (status, text, _) = server.request_with_headers(
        "/api/v1/hooks/git",
        &[("X-Gitlab-Token", SECRET)],
        Some(b"{}"),
    );
    assert_eq!(status, 202, "{text}");
    assert_eq!(head_commit(&server), third);
}

#[test]
fn the_login_cookie_is_a_session_that_logout_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = GitRepo::init(&tmp.path().join("repo"));
    repo.write("nodes.toml", "[[node]]\nmatch = \"*\"\nroles = []\n");
    repo.commit("first");
    let server = Server::start(&repo.path, &tmp.path().join("server"));
    let token = server.operator_token();

    let form = format!("token={token}");
    let (status, _, set_cookie) = server.request_with_headers(
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(form.as_bytes()),
    );
    assert_eq!(status, 303);
    let set_cookie = set_cookie.expect("a session cookie");
    assert!(!set_cookie.contains(&token), "{set_cookie}");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Max-Age=43200"] {
        assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let page = |cookie: &str| {
        server
            .request_with_headers("/", &[("Cookie", cookie)], None)
            .0
    };
    assert_eq!(page(&cookie), 200);
    assert_eq!(
        page(&format!("drover_session={token}")),
        303,
        "the token is no cookie"
    );

    let (status, _, cleared) =
        server.request_with_headers("/logout", &[("Cookie", &cookie)], Some(b""));
    assert_eq!(status, 303);
    assert!(cleared.unwrap().contains("Max-Age=0"));
    assert_eq!(page(&cookie), 303, "logged out");
}
