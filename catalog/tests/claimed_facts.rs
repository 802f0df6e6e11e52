//! Facts are the node's own claims: a role that only a `facts =` match in
//! nodes.toml gives may not render sensitive data, unless the entry says
//! `trust_facts = true`. Roles given by node name are not affected.

use drover_catalog::{CompileRequest, Facts, RepoFiles, Repository};

const SECRET: &str = "card-key-91c2";

fn files(nodes: &str) -> RepoFiles {
    let mut out = RepoFiles::new();
    let payments = "[[file]]\npath = \"/etc/payments.key\"\ncontent = \"{{ vars.key }}\\n\"\n";
    for (path, text) in [
        ("nodes.toml", nodes.to_owned()),
        (
            "roles/base.toml",
            "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n".to_owned(),
        ),
        ("roles/payments.toml", payments.to_owned()),
        // Only the include reaches it: still given by the claim.
        ("roles/shop.toml", "include = [\"payments\"]\n".to_owned()),
        (
            "roles/motd.toml",
            "[[file]]\npath = \"/etc/issue\"\ncontent = \"x\\n\"\n".to_owned(),
        ),
        (
            "data/common.toml",
            format!("key = {{ sensitive = \"{SECRET}\" }}\n"),
        ),
    ] {
        out.insert(path.to_owned(), text.into_bytes().into());
    }
    out
}

fn compile(nodes: &str, node: &str, facts: &str) -> Result<String, String> {
    let repo = Repository::parse(files(nodes)).map_err(|e| e.to_string())?;
    let facts: Facts = serde_json::from_str(facts).unwrap();
    repo.compile(&CompileRequest {
        node,
        facts: &facts,
        environment: "production",
        commit: "c0ffee",
    })
    .map(|c| serde_json::to_string(&c.catalog).unwrap())
    .map_err(|e| e.to_string())
}

const BY_HINT: &str = "[[node]]\nmatch = \"*\"\nroles = [\"base\"]\n\n\
                       [[node]]\nmatch = \"*\"\nfacts = { role_hint = \"payments\" }\nroles = [\"shop\"]\n";

#[test]
fn a_claimed_fact_does_not_reach_a_secret() {
    let err = compile(BY_HINT, "web-1", r#"{"role_hint": "payments"}"#).unwrap_err();
    assert!(
        err.contains("role `payments` renders sensitive data")
            && err.contains("only through a `facts` match")
            && err.contains("hint: give the role by node name"),
        "{err}"
    );
    assert!(err.starts_with("nodes.toml:"), "points at the entry: {err}");
    assert!(!err.contains(SECRET), "{err}");
    // Without the claim the node compiles as before.
    compile(BY_HINT, "web-1", "{}").unwrap();
}

#[test]
fn fact_gated_roles_without_secrets_still_work() {
    let nodes = "[[node]]\nmatch = \"*\"\nfacts = { \"os.id\" = \"debian\" }\nroles = [\"motd\"]\n";
    let catalog = compile(nodes, "web-1", r#"{"os": {"id": "debian"}}"#).unwrap();
    assert!(catalog.contains("/etc/issue"), "{catalog}");
}

#[test]
fn a_name_match_or_trust_facts_may_give_secrets() {
    // The same role also given by name: the claim adds nothing.
    let by_name = format!("{BY_HINT}\n[[node]]\nmatch = \"pay-*\"\nroles = [\"payments\"]\n");
    let catalog = compile(&by_name, "pay-1", r#"{"role_hint": "payments"}"#).unwrap();
    assert!(catalog.contains("/etc/payments.key"), "{catalog}");
    // The operator vouches for whoever can send the fact.
    let trusted = "[[node]]\nmatch = \"*\"\nfacts = { role_hint = \"payments\" }\n\
                   roles = [\"shop\"]\ntrust_facts = true\n";
    let catalog = compile(trusted, "web-1", r#"{"role_hint": "payments"}"#).unwrap();
    assert!(catalog.contains("/etc/payments.key"), "{catalog}");
}
