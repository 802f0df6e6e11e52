//! Compiling a repository for one node into a [`Catalog`]: its roles'
//! resources, and the containers of the app replicas placed on it. The
//! placements are an input, not something the compile decides: the same
//! commit and placements always give the same catalog.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::context;

use crate::apps::{AppsContext, AppsInput};
use crate::data::LevelContext;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::graph;
use crate::model::{Catalog, Facts};
use crate::render::Renderer;
use crate::repo::{Repository, Role};
use crate::resources::{Builder, Decl};
use crate::secret::Secrets;

/// What to compile: one node, as it describes itself, at one commit.
#[derive(Debug, Clone, Copy)]
pub struct CompileRequest<'a> {
    pub node: &'a str,
    pub facts: &'a Facts,
    /// The environment (branch) being compiled; `Catalog::environment`.
    pub environment: &'a str,
    pub commit: &'a str,
}

/// A compiled catalog and the file contents it references.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// `contents` left empty: content travels by hash.
    pub catalog: Catalog,
    /// sha256 (lowercase hex) -> bytes, for every file the catalog references.
    pub contents: BTreeMap<String, Arc<[u8]>>,
    /// Every role of the node after include expansion, included roles first.
    pub roles: Vec<String>,
    /// Whether rendering anything for the node read `apps`: only then does
    /// its catalog change when placements elsewhere change.
    pub reads_apps: bool,
}

impl Repository {
    /// Compiles the node's catalog, or returns every error found, with no
    /// app replica placed on it and no replica seen in `apps`.
    pub fn compile(&self, req: &CompileRequest<'_>) -> Result<Compiled, Diagnostics> {
        self.compile_with(req, &AppsInput::default())
    }

    /// Compiles the node's catalog with the replicas `apps.placed` puts on
    /// it and `apps.discovery` as `apps` in templates.
    pub fn compile_with(
        &self,
        req: &CompileRequest<'_>,
        apps: &AppsInput,
    ) -> Result<Compiled, Diagnostics> {
        let (_, roots) = self
            .classify_with_locs(req.node, req.facts)
            .map_err(Diagnostics::one)?;
        let roles = self.expand_roles(&roots).map_err(Diagnostics)?;
        let labels = self.node_labels(req.node, req.facts);
        let level_cx = LevelContext {
            node: req.node,
            facts: req.facts,
            environment: req.environment,
            labels: &labels,
        };
        let vars = self.node_vars(&level_cx, &roles).map_err(Diagnostics)?;
        let mut secrets = Secrets::default();
        let discovery = AppsContext::new(self.apps.keys(), &apps.discovery);
        let ctx = context! {
            node => req.node,
            facts => req.facts,
            vars => secrets.template_vars(&vars),
            environment => req.environment,
            commit => req.commit,
            labels => labels,
            apps => discovery.value.clone(),
        };
        let renderer = Renderer::new(Arc::clone(&self.files), Some(ctx)).with_secrets(secrets);
        let hide = |errors: Vec<Diagnostic>| scrub(errors, renderer.secrets());
        let mut decls = Vec::new();
        let mut errors = Vec::new();
        match self.declare(&roles, &renderer) {
            Ok(mut role_decls) => decls.append(&mut role_decls),
            Err(mut role_errors) => errors.append(&mut role_errors),
        }
        match self.declare_replicas(req.node, &apps.placed, &apps.specs, &renderer) {
            Ok(mut replicas) => decls.append(&mut replicas),
            Err(mut replica_errors) => errors.append(&mut replica_errors),
        }
        if !errors.is_empty() {
            return Err(hide(errors));
        }
        self.refuse_claimed_secrets(req, &roles, &renderer)
            .map_err(Diagnostics)?;
        let linked = graph::link(decls).map_err(hide)?;
        let catalog = Catalog {
            node: req.node.to_owned(),
            environment: req.environment.to_owned(),
            commit: req.commit.to_owned(),
            version: Catalog::compute_version(&linked.resources),
            resources: linked.resources,
            contents: BTreeMap::new(),
        };
        Ok(Compiled {
            catalog,
            contents: linked.contents,
            roles: roles.iter().map(|r| r.name.clone()).collect(),
            reads_apps: discovery.was_read(),
        })
    }

    /// A role that only a `facts =` match gives must not render sensitive
    /// data: any node can send those facts (`role_hint = "payments"`).
    fn refuse_claimed_secrets(
        &self,
        req: &CompileRequest<'_>,
        roles: &[&Role],
        renderer: &Renderer,
    ) -> Result<(), Vec<Diagnostic>> {
        let mut errors = Vec::new();
        for (name, loc) in self.fact_only_roles(req.node, req.facts) {
            let Some(role) = roles.iter().find(|r| r.name == name) else {
                continue;
            };
            let sensitive = self
                .declare(&[role], renderer)
                .unwrap_or_default()
                .iter()
                .any(|d| d.meta.sensitive);
            if sensitive {
                errors.push(loc.error(format!(
                    "role `{name}` renders sensitive data and node `{}` gets it only through \
                     a `facts` match; facts are the node's own claims, so any node could \
                     claim them and read that data\n\
                     hint: give the role by node name (`match = \"NAME-*\"`), or set \
                     `trust_facts = true` on the entry if every node that can send these \
                     facts may read it",
                    req.node
                )));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Every resource of the roles, rendered and checked one by one.
    pub(crate) fn declare(
        &self,
        roles: &[&Role],
        renderer: &Renderer,
    ) -> Result<Vec<Decl>, Vec<Diagnostic>> {
        let mut decls = Vec::new();
        let mut errors = Vec::new();
        for role in roles {
            let mut builder = Builder {
                renderer,
                src: &role.source,
                files: &self.files,
                errors: Vec::new(),
            };
            for raw in &role.resources {
                decls.extend(builder.build(raw));
            }
            // in file order, whatever the kind tables' order
            builder.errors.sort_by_key(|e| (e.line, e.col));
            errors.append(&mut builder.errors);
        }
        if errors.is_empty() {
            Ok(decls)
        } else {
            Err(errors)
        }
    }
}

/// Errors with every sensitive value of the node replaced: an invalid
/// field may quote what it was rendered to.
fn scrub(errors: Vec<Diagnostic>, secrets: &Secrets) -> Diagnostics {
    Diagnostics(
        errors
            .into_iter()
            .map(|mut e| {
                e.message = secrets.scrub(&e.message);
                e
            })
            .collect(),
    )
}
