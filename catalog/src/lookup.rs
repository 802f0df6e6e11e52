//! `drover-server lookup KEY --node NAME [--explain]` (Hiera's `lookup
//! --explain`): the value a node gets for a data key, and every place the
//! hierarchy looked, in the order it looks (the most specific data level
//! first, the roles' `[vars]` last), with what each held.
//!
//! The value is the one the compiler computes (`Repository::node_vars`):
//! tables merge key by key, so a table's value may come from several
//! places; any other value comes from the most specific place that has it,
//! which is marked as the winner. A sensitive value (`{ sensitive = ...
//! }`) is never shown, only that it is there.

use serde::Serialize;

use crate::compile::CompileRequest;
use crate::data::LevelContext;
use crate::diagnostic::Diagnostics;
use crate::repo::Repository;
use crate::secret;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lookup {
    /// The dotted key asked for (`ntp.servers`).
    pub key: String,
    /// The merged value, as the node's templates see it in `vars`; `None`
    /// when no place has the key.
    pub value: Option<toml::Value>,
    /// Every place tried, in the order the hierarchy tries them.
    pub steps: Vec<LookupStep>,
}

/// One place a lookup tried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LookupStep {
    /// `data/nodes/web-1.toml`, or `roles/web.toml [vars]`.
    pub file: String,
    /// The hierarchy level that named the file (`nodes/{{ node }}`); `None`
    /// for a role's `[vars]`.
    pub level: Option<String>,
    /// Whether the file exists in the repository.
    pub exists: bool,
    /// What it holds for the key.
    pub found: Option<toml::Value>,
    /// The value came from here (a table's parts may come from several).
    pub used: bool,
}

impl Repository {
    /// Looks `key` (dotted: `ntp.servers`) up for the node of `req`.
    pub fn lookup(&self, req: &CompileRequest<'_>, key: &str) -> Result<Lookup, Diagnostics> {
        let (_, roots) = self
            .classify_with_locs(req.node, req.facts)
            .map_err(Diagnostics::one)?;
        let roles = self.expand_roles(&roots).map_err(Diagnostics)?;
        let labels = self.node_labels(req.node, req.facts);
        let cx = LevelContext {
            node: req.node,
            facts: req.facts,
            environment: req.environment,
            labels: &labels,
        };
        let vars = self.node_vars(&cx, &roles).map_err(Diagnostics)?;
        let path: Vec<&str> = key.split('.').collect();
        let mut steps = Vec::new();
        for (level, data_key) in self.data_levels_named(&cx, &roles).map_err(Diagnostics)? {
            let table = self.data.get(&data_key);
            steps.push(LookupStep {
                file: format!("data/{data_key}.toml"),
                level: Some(level),
                exists: table.is_some(),
                found: table
                    .and_then(|t| t.as_ref().ok())
                    .and_then(|t| get(t, &path))
                    .map(hide),
                used: false,
            });
        }
        for role in roles.iter().rev() {
            steps.push(LookupStep {
                file: format!("{} [vars]", role.source.path),
                level: None,
                exists: true,
                found: get(&role.vars, &path).map(hide),
                used: false,
            });
        }
        let value = get(&vars, &path).map(hide);
        let merged = matches!(&value, Some(toml::Value::Table(t)) if !secret::is_secret_table(t));
        for step in steps.iter_mut().filter(|s| s.found.is_some()) {
            step.used = true;
            if !merged {
                break;
            }
        }
        Ok(Lookup {
            key: key.to_owned(),
            value,
            steps,
        })
    }
}

fn get(table: &toml::Table, path: &[&str]) -> Option<toml::Value> {
    let (first, rest) = path.split_first()?;
    let value = table.get(*first)?;
    match (rest.is_empty(), value) {
        (true, value) => Some(value.clone()),
        (false, toml::Value::Table(inner)) if !secret::is_secret_table(inner) => get(inner, rest),
        _ => None,
    }
}

/// A sensitive value, replaced by a mark that says it is there.
fn hide(value: toml::Value) -> toml::Value {
    match value {
        toml::Value::Table(t) if secret::is_secret_table(&t) => {
            toml::Value::String("(sensitive)".to_owned())
        }
        toml::Value::Table(t) => {
            toml::Value::Table(t.into_iter().map(|(k, v)| (k, hide(v))).collect())
        }
        toml::Value::Array(a) => toml::Value::Array(a.into_iter().map(hide).collect()),
        other => other,
    }
}
