//! The impact page as an operator uses it before a merge: a branch that
//! changes the config every node renders is pushed, the operator follows
//! the branch's `impact` button in the overview's environments and sees
//! the nodes whose catalogs change, opens one and reads the file's diff.

use serde_json::json;

use drover_tests::browser::Browser;

use crate::walkthrough::sign_in;
use crate::{Fleet, runtime};

#[test]
fn an_operator_sees_what_a_branch_would_change_before_merging_it() {
    let fleet = Fleet::start();
    for node in ["web-1", "db-1"] {
        let credential = fleet.enroll(node);
        fleet.ask_for_catalog(node, &credential, &json!({"os": {"id": "debian"}}));
    }
    fleet.repo.git(&["checkout", "-q", "-b", "listen-9090"]);
    let base = fs_err::read_to_string(fleet.repo.path.join("roles/base.toml")).unwrap();
    fleet.repo.write(
        "roles/base.toml",
        &base.replace("listen = 8080", "listen = 9090"),
    );
    fleet.repo.commit("listen on 9090");
    fleet.repo.git(&["checkout", "-q", "main"]);
    fleet.server.refresh();

    runtime().block_on(async {
        let mut browser = Browser::open(&fleet.server, "impact").await;
        sign_in(&browser, &fleet.server.operator_token()).await;
        browser
            .follow("tr.environment[data-environment=\"listen-9090\"] form.impact-link button")
            .await;
        // The form's submission loads the page: wait for it (the overview
        // has `#counts` too, so an element only the impact page has), then
        // look.
        browser.find("#impact-changed").await;
        assert_eq!(browser.path().await, "/impact?env=listen-9090");
        let changed = browser.text("#impact-changed .count").await;
        assert_eq!(changed, "2", "{}", browser.page_text().await);
        assert_eq!(browser.text("#impact-broken .count").await, "0");
        let nodes: Vec<String> = {
            let mut names = Vec::new();
            for d in browser.find_all("details.impact-node").await {
                names.push(d.attr("data-node").await.unwrap().unwrap_or_default());
            }
            names
        };
        assert_eq!(nodes, ["db-1", "web-1"]);
        // The diff is folded until the operator opens the node.
        let diff = "details.impact-node[data-node=\"web-1\"] pre.diff";
        assert!(
            !browser.find(diff).await.is_displayed().await.unwrap(),
            "folded at first"
        );
        browser
            .click("details.impact-node[data-node=\"web-1\"] summary")
            .await;
        let text = browser.text(diff).await;
        assert!(text.contains("-listen = 8080"), "{text}");
        assert!(text.contains("+listen = 9090"), "{text}");
        assert_eq!(
            browser.text("#impact-moves .count").await,
            "0",
            "no app, no placement moves"
        );
        browser.screenshot("impact").await;
        // The form keeps the choice, and the nav leads back to it.
        let selected = browser
            .js("return document.querySelector('select[name=env]').value")
            .await;
        assert_eq!(selected, "listen-9090");
        browser.follow("header.top nav a[href=\"/impact\"]").await;
        browser.find("#impact-choose").await;
        assert_eq!(browser.path().await, "/impact");
        assert!(
            browser.find_all("#counts").await.is_empty(),
            "the form alone"
        );
        browser.close().await;
    });
}
