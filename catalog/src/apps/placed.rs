//! What a repository knows of its apps: each one parsed or its errors,
//! what the scheduler places, and the containers of the replicas placed on
//! a node (apart from `apps/mod.rs`, which the repository parser uses, so
//! the two do not import each other).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::diagnostic::Diagnostic;
use crate::render::Renderer;
use crate::repo::Repository;
use crate::resources::Decl;
use crate::schedule::{AppDemand, Placement};

use super::App;

impl Repository {
    /// Every `apps/*.toml` by name, valid or with its errors.
    pub fn apps(&self) -> impl Iterator<Item = (&str, Result<&App, &[Diagnostic]>)> {
        self.apps
            .iter()
            .map(|(name, app)| (name.as_str(), app.as_ref().map_err(Vec::as_slice)))
    }

    /// What the scheduler places: every valid app, sorted by name.
    pub fn app_demands(&self) -> Vec<AppDemand> {
        self.apps
            .values()
            .filter_map(|app| app.as_ref().ok())
            .map(|app| app.demand.clone())
            .collect()
    }

    /// Whether this commit's `apps/NAME.toml` has spec `hash`.
    fn has_spec(&self, name: &str, hash: &str) -> bool {
        matches!(self.apps.get(name), Some(Ok(app)) if app.demand.spec_hash == hash)
    }

    /// The containers of the replicas placed on `node`, each built from
    /// the spec it was placed from: this commit's, or a stored one.
    pub(crate) fn declare_replicas(
        &self,
        node: &str,
        placed: &[Placement],
        specs: &BTreeMap<String, Arc<str>>,
        renderer: &Renderer,
    ) -> Result<Vec<Decl>, Vec<Diagnostic>> {
        let mut decls = Vec::new();
        let mut errors = Vec::new();
        for placement in placed.iter().filter(|p| p.node == node) {
            let file = format!("apps/{}.toml", placement.app);
            let stored = specs
                .get(&placement.spec_hash)
                .filter(|_| !self.has_spec(&placement.app, &placement.spec_hash))
                .map(|body| App::parse(&placement.app, body));
            if let Some(app) = stored {
                match app.and_then(|app| app.declare(placement, renderer, &self.files)) {
                    Ok(decl) => decls.push(decl),
                    Err(mut app_errors) => errors.append(&mut app_errors),
                }
                continue;
            }
            match self.apps.get(&placement.app) {
                None => errors.push(Diagnostic::file(
                    &file,
                    format!(
                        "replica {} of app `{}` is placed on this node, but {file} does not \
                         exist in this commit\nhint: the placement is from a commit that had \
                         the app; it goes once the scheduler has run on this one",
                        placement.replica, placement.app
                    ),
                )),
                Some(Err(app_errors)) => {
                    errors.extend(app_errors.iter().cloned());
                }
                Some(Ok(app)) => match app.declare(placement, renderer, &self.files) {
                    Ok(decl) => decls.push(decl),
                    Err(mut app_errors) => errors.append(&mut app_errors),
                },
            }
        }
        if errors.is_empty() {
            Ok(decls)
        } else {
            // two replicas of one app on a node would say the same twice
            let mut unique: Vec<Diagnostic> = Vec::new();
            for e in errors {
                if !unique.contains(&e) {
                    unique.push(e);
                }
            }
            Err(unique)
        }
    }
}
