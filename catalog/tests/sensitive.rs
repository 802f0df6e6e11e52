//! Sensitive data values (`{ sensitive = "..." }`): the resources that use
//! one become sensitive, the others do not, and no error quotes one.

use drover_catalog::{Catalog, CompileRequest, Facts, RepoFiles, Repository, Resource};

const SECRET: &str = "s3cret-Pa55";

/// Files from `(path, text)` pairs; every repo gets the same nodes.toml.
fn repo(files: &[(&str, &str)]) -> RepoFiles {
    let mut out = RepoFiles::new();
    out.insert(
        "nodes.toml".into(),
        b"[[node]]\nmatch = \"*\"\nroles = [\"app\"]\n"
            .as_slice()
            .into(),
    );
    for (path, text) in files {
        out.insert((*path).to_owned(), text.as_bytes().into());
    }
    out
}

fn compile(files: &[(&str, &str)]) -> Result<Catalog, String> {
    let repo = Repository::parse(repo(files)).map_err(|e| e.to_string())?;
    let facts: Facts = serde_json::from_str(r#"{"os": {"id": "debian"}}"#).unwrap();
    let req = CompileRequest {
        node: "web-1",
        facts: &facts,
        environment: "production",
        commit: "c0ffee",
    };
    repo.compile(&req)
        .map(|c| c.catalog)
        .map_err(|e| e.to_string())
}

fn resource<'a>(catalog: &'a Catalog, id: &str) -> &'a Resource {
    catalog
        .resources
        .iter()
        .find(|r| r.id.as_str() == id)
        .unwrap_or_else(|| panic!("{id} is in the catalog"))
}

fn sensitive(catalog: &Catalog, id: &str) -> bool {
    resource(catalog, id).meta.sensitive
}

fn data_common() -> String {
    format!("[db]\nuser = \"app\"\npassword = {{ sensitive = \"{SECRET}\" }}\n")
}

#[test]
fn a_template_reading_a_sensitive_value_makes_its_file_sensitive() {
    let common = data_common();
    let catalog = compile(&[
        ("data/common.toml", &common),
        (
            "roles/app.toml",
            "[[file]]\npath = \"/etc/app/db.conf\"\ntemplate = \"templates/db.conf.j2\"\n\n\
             [[file]]\npath = \"/etc/app/user.conf\"\ntemplate = \"templates/user.conf.j2\"\n",
        ),
        (
            "templates/db.conf.j2",
            "user = {{ vars.db.user }}\n{% include \"password.j2\" %}",
        ),
        (
            "templates/password.j2",
            "password = {{ vars.db.password | lower }}\n",
        ),
        ("templates/user.conf.j2", "user = {{ vars.db.user }}\n"),
    ])
    .unwrap();
    assert!(
        sensitive(&catalog, "file:/etc/app/db.conf"),
        "read in an include"
    );
    assert!(
        !sensitive(&catalog, "file:/etc/app/user.conf"),
        "only the plain value of the same table was read"
    );
    let json = serde_json::to_string(&catalog).unwrap();
    assert!(
        !json.contains(SECRET),
        "file content travels by hash: {json}"
    );
}

#[test]
fn an_inline_field_reading_a_sensitive_value_makes_its_resource_sensitive() {
    let common = data_common();
    let catalog = compile(&[
        ("data/common.toml", &common),
        (
            "roles/app.toml",
            "[[exec]]\nname = \"set-password\"\ncommand = [\"/usr/bin/setpw\", \"--user\", \"{{ vars.db.user }}\"]\n\
             env = { DB_PASSWORD = \"{{ vars.db.password }}\" }\n\n\
             [[exec]]\nname = \"greet\"\ncommand = \"echo hello {{ vars.db.user }}\"\n\n\
             [[container]]\nname = \"db\"\nimage = \"postgres:16\"\nenv = { POSTGRES_PASSWORD = \"{{ vars.db.password | trim }}\" }\n\n\
             [[service]]\nname = \"app\"\nunit = \"[Service]\\nEnvironment=PW={{ vars.db.password | upper }}\\n\"\n\n\
             [[file]]\npath = \"/etc/app/inline.conf\"\ncontent = \"{% if vars.db.password %}on{% endif %}\"\n",
        ),
    ])
    .unwrap();
    for id in [
        "exec:set-password",
        "container:db",
        "service:app",
        "file:/etc/app/inline.conf",
    ] {
        assert!(sensitive(&catalog, id), "{id} read the password");
    }
    assert!(!sensitive(&catalog, "exec:greet"), "exec:greet did not");
}

#[test]
fn unused_sensitive_values_leave_resources_as_they_are() {
    let common = data_common();
    let catalog = compile(&[
        ("data/common.toml", &common),
        (
            "roles/app.toml",
            "[vars]\ntoken = { sensitive = \"t0ken-value\" }\n\n\
             [[file]]\npath = \"/etc/motd\"\ncontent = \"hello {{ vars.db.user }} on {{ node }}\"\n\n\
             [[package]]\nname = \"nginx\"\n",
        ),
    ])
    .unwrap();
    assert!(!sensitive(&catalog, "file:/etc/motd"));
    assert!(!sensitive(&catalog, "package:nginx"));
}

#[test]
fn role_vars_can_be_sensitive_and_the_same_text_given_plainly_still_counts() {
    let catalog = compile(&[
        (
            "roles/app.toml",
            "[vars]\ntoken = { sensitive = \"t0ken-value\" }\ncopy = \"prefix t0ken-value\"\n\n\
             [[file]]\npath = \"/etc/token\"\ncontent = \"{{ vars.token }}\"\n\n\
             [[file]]\npath = \"/etc/copy\"\ncontent = \"{{ vars.copy }}\"\n\n\
             [[file]]\npath = \"/etc/static\"\nsource = \"files/static\"\n\n\
             [[file]]\npath = \"/etc/other\"\nsource = \"files/other\"\n",
        ),
        ("files/static", "key: t0ken-value\n"),
        ("files/other", "nothing to hide\n"),
    ])
    .unwrap();
    assert!(sensitive(&catalog, "file:/etc/token"));
    assert!(
        sensitive(&catalog, "file:/etc/copy"),
        "a plain value holding the text"
    );
    assert!(
        sensitive(&catalog, "file:/etc/static"),
        "a static file holding the text"
    );
    assert!(!sensitive(&catalog, "file:/etc/other"));
}

#[test]
fn a_more_specific_level_replaces_a_sensitive_value_whole() {
    let common = data_common();
    let role = "[[file]]\npath = \"/etc/pw\"\ncontent = \"{{ vars.db.password }}\"\n";
    let plain_over_secret = compile(&[
        ("data/common.toml", &common),
        ("data/nodes/web-1.toml", "[db]\npassword = \"not-secret\"\n"),
        ("roles/app.toml", role),
    ])
    .unwrap();
    assert!(!sensitive(&plain_over_secret, "file:/etc/pw"));

    let secret_over_plain = compile(&[
        ("data/common.toml", "[db]\npassword = { old = \"x\" }\n"),
        (
            "data/nodes/web-1.toml",
            "[db]\npassword = { sensitive = \"n0de-secret\" }\n",
        ),
        ("roles/app.toml", role),
    ])
    .unwrap();
    assert!(sensitive(&secret_over_plain, "file:/etc/pw"));
}

#[test]
fn an_id_made_from_a_sensitive_value_is_refused_without_quoting_it() {
    let common = data_common();
    let err = compile(&[
        ("data/common.toml", &common),
        (
            "roles/app.toml",
            "[[exec]]\nname = \"run-{{ vars.db.password }}\"\ncommand = \"true\"\n",
        ),
    ])
    .unwrap_err();
    assert!(
        err.contains("`name` uses a sensitive value, but a resource id is shown"),
        "{err}"
    );
    assert!(!err.contains(SECRET), "{err}");
}

#[test]
fn errors_never_quote_a_sensitive_value() {
    let common = data_common();
    let err = compile(&[
        ("data/common.toml", &common),
        (
            "roles/app.toml",
            "[[file]]\npath = \"/etc/x\"\nmode = \"{{ vars.db.password }}\"\n\n\
             [[symlink]]\npath = \"/etc/y\"\ntarget = \"{{ vars.db.password }}\"\n",
        ),
    ])
    .unwrap_err();
    assert!(err.contains("invalid mode `(sensitive)`"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
}

#[test]
fn a_sensitive_value_must_be_a_string() {
    let err = compile(&[
        ("data/common.toml", "[db]\nport = { sensitive = 5432 }\n"),
        ("roles/app.toml", "[[package]]\nname = \"x\"\n"),
    ])
    .unwrap_err();
    assert!(
        err.starts_with(
            "data/common.toml:1:1: `db.port`: a sensitive value must be a string, not an integer"
        ),
        "{err}"
    );
}

#[test]
fn a_resource_marked_sensitive_by_hand_stays_sensitive() {
    let catalog = compile(&[(
        "roles/app.toml",
        "[[file]]\npath = \"/etc/x\"\ncontent = \"x\"\nsensitive = true\n",
    )])
    .unwrap();
    assert!(sensitive(&catalog, "file:/etc/x"));
}
