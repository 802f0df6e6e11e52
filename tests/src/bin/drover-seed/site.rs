//! The benchmark's catalog repository (three roles; `debian` only for nodes
//! whose `os.id` is debian, so the role and fact filters select part of the
//! fleet), and the catalog each operating system's nodes are served,
//! compiled as a development-mode server compiles it.

use std::path::Path;

use anyhow::{Context, Result, bail};
use drover_catalog::{Catalog, CompileRequest, Repository, ResourceId};
use drover_server::git;

use crate::facts::{Os, facts_of};
use crate::rng::Rng;

/// The one environment of a plain-directory repository.
pub(crate) const ENVIRONMENT: &str = "production";

const FILES: &[(&str, &str)] = &[
    (
        "nodes.toml",
        r#"[[node]]
match = "*"
roles = ["base"]

[[node]]
match = "web-*"
roles = ["web"]

[[node]]
match = "*"
facts = { "os.id" = "debian" }
roles = ["debian"]
"#,
    ),
    (
        "roles/base.toml",
        r#"[[directory]]
path = "/etc/drover-bench"
mode = "0755"

[[file]]
path = "/etc/motd"
template = "templates/motd.j2"
mode = "0644"

[[user]]
name = "deploy"
"#,
    ),
    (
        "roles/web.toml",
        r#"[[package]]
name = "nginx"

[[file]]
path = "/etc/nginx/conf.d/site.conf"
content = "server { listen 80; server_name {{ node }}; root /srv/www; }\n"
mode = "0644"
require = ["package:nginx"]

[[service]]
name = "nginx"
subscribe = ["file:/etc/nginx/conf.d/site.conf"]
"#,
    ),
    (
        "roles/debian.toml",
        r#"[[file]]
path = "/etc/apt/apt.conf.d/99drover"
content = "APT::Install-Recommends \"false\";\n"
mode = "0644"
"#,
    ),
    (
        "templates/motd.j2",
        "{{ node }} ({{ facts.os.id }}) is managed by drover.\n",
    ),
];

/// Writes the repository into `dir`, which must not exist yet.
pub(crate) fn write_repo(dir: &Path) -> Result<()> {
    if dir.exists() {
        bail!(
            "{} exists already; the repository is written into a new directory",
            dir.display()
        );
    }
    for (name, text) in FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        fs_err::write(&path, text)?;
    }
    Ok(())
}

/// The catalog one operating system's nodes get (its node, commit and
/// version set per node by the seeder), and its resource ids in order.
pub(crate) struct Variant {
    pub(crate) catalog: Catalog,
    pub(crate) roles: Vec<String>,
    pub(crate) ids: Vec<ResourceId>,
    /// sha256 → bytes of every file the catalog references.
    pub(crate) contents: Vec<(String, Vec<u8>)>,
}

/// The repository's commit as a development-mode server names it (the
/// head of `production`), and one compiled catalog per operating system.
pub(crate) fn compile(repo: &Path) -> Result<(String, Vec<(Os, Variant)>)> {
    let tree = git::read_dir_tree(repo)
        .with_context(|| format!("cannot read the repository {}", repo.display()))?;
    let commit = git::content_id(&tree.files);
    let parsed = Repository::parse(tree.files)
        .map_err(|d| anyhow::anyhow!("the repository {} does not parse:\n{d}", repo.display()))?;
    let mut variants = Vec::new();
    for os in Os::ALL {
        let node = "web-00001";
        let facts = facts_of(1, node, os, &mut Rng::new(0));
        let compiled = parsed
            .compile(&CompileRequest {
                node,
                facts: &facts,
                environment: ENVIRONMENT,
                commit: &commit,
            })
            .map_err(|d| anyhow::anyhow!("{node} ({}) does not compile:\n{d}", os.id()))?;
        let ids = compiled
            .catalog
            .resources
            .iter()
            .map(|r| r.id.clone())
            .collect();
        let contents = compiled
            .contents
            .into_iter()
            .map(|(sha, bytes)| (sha, bytes.to_vec()))
            .collect();
        variants.push((
            os,
            Variant {
                catalog: compiled.catalog,
                roles: compiled.roles,
                ids,
                contents,
            },
        ));
    }
    Ok((commit, variants))
}
