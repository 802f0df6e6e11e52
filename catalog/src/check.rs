//! `check`: every error of a repository at once, for `drover-server check`.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::compile::CompileRequest;
use crate::diagnostic::{Diagnostic, Loc};
use crate::graph;
use crate::model::Facts;
use crate::render::Renderer;
use crate::repo::{RepoFiles, Repository};

/// Parses the repository and returns all its errors (empty when clean).
pub fn check(
    files: RepoFiles,
    environment: &str,
    commit: &str,
    nodes: &[(String, Facts)],
) -> Vec<Diagnostic> {
    match Repository::parse(files) {
        Ok(repo) => repo.check(environment, commit, nodes),
        Err(errors) => errors.0,
    }
}

impl Repository {
    /// Every error of the repository: syntax of every file, roles named in
    /// `nodes.toml`, includes, template syntax; then each given node is
    /// compiled fully, or without nodes each role (with its includes) is
    /// checked for references, cycles and every value that needs no facts.
    pub fn check(
        &self,
        environment: &str,
        commit: &str,
        nodes: &[(String, Facts)],
    ) -> Vec<Diagnostic> {
        let mut out = Dedup::default();
        out.extend(self.file_errors());
        for entry in &self.nodes {
            for (role, loc) in &entry.roles {
                if !self.roles.contains_key(role) {
                    out.push(loc.error(format!(
                        "unknown role `{role}`: roles/{role}.toml does not exist"
                    )));
                }
            }
        }
        let syntax = Renderer::new(Arc::clone(&self.files), None);
        out.extend(syntax.check_all_templates());
        for (name, role) in &self.roles {
            let Ok(role) = role else { continue };
            let root = (name.clone(), Loc::start(&role.source.path));
            let roles = match self.expand_roles(&[root]) {
                Ok(roles) => roles,
                Err(errors) => {
                    out.extend(errors);
                    continue;
                }
            };
            match self.declare(&roles, &syntax) {
                Err(errors) => out.extend(errors),
                Ok(decls) if nodes.is_empty() => {
                    if let Err(errors) = graph::link(decls) {
                        out.extend(errors);
                    }
                }
                Ok(_) => {}
            }
        }
        for (node, facts) in nodes {
            let req = CompileRequest {
                node,
                facts,
                environment,
                commit,
            };
            if let Err(errors) = self.compile(&req) {
                for mut e in errors.0 {
                    if !out.seen(&e) {
                        e.message.push_str(&format!("\n(compiling node `{node}`)"));
                        out.push(e);
                    }
                }
            }
        }
        out.list
    }
}

/// Keeps the first of identical diagnostics, in order of discovery.
#[derive(Default)]
struct Dedup {
    seen: BTreeSet<Diagnostic>,
    list: Vec<Diagnostic>,
}

impl Dedup {
    fn seen(&self, d: &Diagnostic) -> bool {
        self.seen.contains(d)
    }

    fn push(&mut self, d: Diagnostic) {
        if self.seen.insert(d.clone()) {
            self.list.push(d);
        }
    }

    fn extend(&mut self, ds: impl IntoIterator<Item = Diagnostic>) {
        for d in ds {
            self.push(d);
        }
    }
}
