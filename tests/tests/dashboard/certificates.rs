//! Certificates from the dashboard: a node without the enrollment token
//! waits; an operator sees its key fingerprint and signs it with a click;
//! a page on another site that posts the same form is refused and signs
//! nothing.

use std::io::{Read, Write};
use std::net::TcpListener;

use drover_tests::Credential;
use drover_tests::browser::Browser;
use serde_json::Value;

use crate::walkthrough::sign_in;
use crate::{Fleet, runtime};

/// Asks for a certificate for `node` without the enrollment token: it
/// waits. Its key's fingerprint.
fn request_without_token(fleet: &Fleet, node: &str) -> String {
    let (_, status, body) = fleet.request_certificate(node, &Credential::None);
    assert_eq!(status, 202, "{node} waits for an operator: {body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    answer["fingerprint"].as_str().unwrap().to_owned()
}

/// The request's state as the API says it: `STATUS status`.
fn request_state(fleet: &Fleet, node: &str, key: &str) -> String {
    let (status, body) = fleet
        .server
        .request_as(
            &Credential::None,
            "GET",
            &format!("/api/v1/certificate_requests/{node}?key={key}"),
            None,
        )
        .unwrap();
    let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    format!("{status} {}", answer["status"].as_str().unwrap_or_default())
}

/// A site on another address whose page posts the sign form of `node` to
/// the dashboard as soon as it loads (a cross-site request forgery).
fn forging_site(dashboard: &str, node: &str) -> String {
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let page = format!(
        "<!doctype html><title>free prizes</title>\
         <form id=f method=post action=\"{dashboard}/certificates/{node}/sign\">\
         <input type=hidden name=token value=guessed></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    url
}

#[test]
fn an_operator_signs_a_waiting_node_from_the_page_and_a_forged_post_signs_nothing() {
    let fleet = Fleet::start();
    let key1 = request_without_token(&fleet, "new-1");
    let key2 = request_without_token(&fleet, "new-2");
    assert!(request_state(&fleet, "new-1", &key1).starts_with("202"));
    let forger = forging_site(&fleet.server.url, "new-2");

    runtime().block_on(async {
        let mut browser = Browser::open(&fleet.server, "certificates").await;
        sign_in(&browser, &fleet.server.operator_token()).await;
        browser.goto("/certificates").await;
        let row = "tr.request[data-name=\"new-1\"]";
        let fingerprint = browser.text(&format!("{row} code.fingerprint")).await;
        assert!(fingerprint.contains(&key1), "{fingerprint} is {key1}");
        browser.find("tr.request[data-name=\"new-2\"]").await;
        browser.screenshot("pending").await;

        // Another site posts new-2's sign form: refused, still pending.
        browser.goto_elsewhere(&forger).await;
        std::thread::sleep(std::time::Duration::from_secs(2));
        browser.screenshot("forged-post").await;
        browser.goto("/certificates").await;
        browser.find("tr.request[data-name=\"new-2\"]").await;

        // The operator's own click signs new-1 and only it.
        browser.follow(&format!("{row} button.sign")).await;
        browser.find("tr.request[data-name=\"new-2\"]").await;
        assert_eq!(browser.path().await, "/certificates");
        assert!(
            browser.find_all(row).await.is_empty(),
            "{}",
            browser.page_text().await
        );
        browser.screenshot("signed").await;
        browser.close().await;
    });
    let signed = request_state(&fleet, "new-1", &key1);
    assert!(signed.starts_with("200"), "new-1 is signed: {signed}");
    let forged = request_state(&fleet, "new-2", &key2);
    assert!(forged.starts_with("202"), "new-2 still waits: {forged}");
}
