//! `check`: every error of a repository at once, for `drover-server check`.
//! Without nodes it checks what needs no facts; apps are checked that way
//! always, since which node a replica lands on is the scheduler's choice.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::compile::CompileRequest;
use crate::diagnostic::{Diagnostic, Loc};
use crate::graph;
use crate::model::Facts;
use crate::render::Renderer;
use crate::repo::{RepoFiles, Repository};
use crate::schedule::Placement;

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
    /// `nodes.toml`, includes, template syntax, each app's fields (its
    /// container checked syntax-only, as a role's) and selector roles that
    /// no node gets; then each given node is
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
        out.extend(self.check_apps(&syntax));
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

impl Repository {
    /// Each valid app's container, built syntax-only as one replica, and
    /// its selector roles against the roles `nodes.toml` gives anyone.
    fn check_apps(&self, syntax: &Renderer) -> Vec<Diagnostic> {
        let given = self.roles_nodes_give();
        let mut out = Vec::new();
        for (name, app) in &self.apps {
            let Ok(app) = app else { continue };
            let probe = Placement {
                app: name.clone(),
                replica: 0,
                node: String::new(),
                id: "check".to_owned(),
                spec_hash: app.demand.spec_hash.clone(),
            };
            let mut errors = app
                .declare(&probe, syntax, &self.files)
                .err()
                .unwrap_or_default();
            for (role, loc) in &app.selector_roles {
                if given.contains(role.as_str()) {
                    continue;
                }
                let hint = match self.roles.contains_key(role) {
                    true => format!("add `{role}` to the `roles` of a [[node]] entry"),
                    false => format!("roles/{role}.toml does not exist either: is the name right?"),
                };
                errors.push(loc.error(format!(
                    "selector role `{role}` is given to no node: no [[node]] entry of nodes.toml \
                     lists it, directly or through includes, so no replica of `{name}` can be \
                     placed\nhint: {hint}"
                )));
            }
            errors.sort_by_key(|e| (e.line, e.col));
            out.append(&mut errors);
        }
        out
    }

    /// Every role some `[[node]]` entry gives, with what they include.
    fn roles_nodes_give(&self) -> BTreeSet<&str> {
        let mut stack: Vec<&str> = self
            .nodes
            .iter()
            .flat_map(|entry| entry.roles.iter().map(|(role, _)| role.as_str()))
            .collect();
        let mut given = BTreeSet::new();
        while let Some(role) = stack.pop() {
            if given.insert(role)
                && let Some(Ok(role)) = self.roles.get(role)
            {
                stack.extend(role.include.iter().map(|(inc, _)| inc.as_str()));
            }
        }
        given
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
