//! The data hierarchy (like Hiera): per-node variables deep-merged from
//! `data/**.toml` levels over role `[vars]`.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior, context};

use crate::diagnostic::Diagnostic;
use crate::model::Facts;
use crate::repo::{Repository, Role};
use crate::secret;

/// What a hierarchy level may name.
pub(crate) struct LevelContext<'a> {
    pub node: &'a str,
    pub facts: &'a Facts,
    pub environment: &'a str,
    /// The node's labels: a level may name `{{ labels.zone }}`.
    pub labels: &'a BTreeMap<String, String>,
}

impl Repository {
    /// `vars` of a node: role `[vars]` (later roles over earlier), then the
    /// data levels from least to most specific, each deep-merged on top.
    pub(crate) fn node_vars(
        &self,
        cx: &LevelContext<'_>,
        roles: &[&Role],
    ) -> Result<toml::Table, Vec<Diagnostic>> {
        let mut vars = toml::Table::new();
        let mut errors = Vec::new();
        for role in roles {
            check_secrets(&role.source.path, &role.vars, &mut errors);
            deep_merge(&mut vars, &role.vars);
        }
        let keys = self.data_levels(cx, roles)?;
        for key in keys.iter().rev() {
            match self.data.get(key) {
                Some(Ok(table)) => {
                    check_secrets(&format!("data/{key}.toml"), table, &mut errors);
                    deep_merge(&mut vars, table);
                }
                Some(Err(e)) => errors.push(e.clone()),
                None => {}
            }
        }
        if errors.is_empty() {
            Ok(vars)
        } else {
            Err(errors)
        }
    }

    /// Data file keys (`nodes/web-1`), most specific first, without duplicates.
    fn data_levels(
        &self,
        cx: &LevelContext<'_>,
        roles: &[&Role],
    ) -> Result<Vec<String>, Vec<Diagnostic>> {
        Ok(self
            .data_levels_named(cx, roles)?
            .into_iter()
            .map(|(_, key)| key)
            .collect())
    }

    /// [`Repository::data_levels`], each with the level that named it.
    pub(crate) fn data_levels_named(
        &self,
        cx: &LevelContext<'_>,
        roles: &[&Role],
    ) -> Result<Vec<(String, String)>, Vec<Diagnostic>> {
        let mut env = Environment::new();
        // A level naming a fact the node lacks is skipped, not an error.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        let mut keys: Vec<(String, String)> = Vec::new();
        let mut errors = Vec::new();
        for level in &self.hierarchy {
            let tmpl = match env.template_from_str(&level.text) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(level.loc.error(format!(
                        "invalid data hierarchy level `{}`: {}",
                        level.text,
                        crate::render::describe(&e)
                    )));
                    continue;
                }
            };
            let per_role = tmpl.undeclared_variables(false).contains("role");
            let role_names: Vec<Option<&str>> = if per_role {
                roles.iter().rev().map(|r| Some(r.name.as_str())).collect()
            } else {
                vec![None]
            };
            for role in role_names {
                let ctx = context! {
                    node => cx.node,
                    facts => cx.facts,
                    environment => cx.environment,
                    labels => cx.labels,
                    role => role,
                };
                match tmpl.render(ctx) {
                    Ok(key) if is_level_path(&key) => {
                        if !keys.iter().any(|(_, k)| *k == key) {
                            keys.push((level.text.clone(), key));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => errors.push(level.loc.error(format!(
                        "data hierarchy level `{}` does not render: {}",
                        level.text,
                        crate::render::describe(&e)
                    ))),
                }
            }
        }
        if errors.is_empty() {
            Ok(keys)
        } else {
            Err(errors)
        }
    }
}

/// A rendered level is used only when it is a plain relative path: an empty
/// segment means a fact it names is missing for this node.
fn is_level_path(key: &str) -> bool {
    !key.is_empty()
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\0'))
}

/// `{ sensitive = ... }` values that are not strings, as errors of `file`.
fn check_secrets(file: &str, table: &toml::Table, errors: &mut Vec<Diagnostic>) {
    errors.extend(
        secret::malformed(table)
            .into_iter()
            .map(|problem| Diagnostic::file(file, problem)),
    );
}

/// Tables merge key by key; any other value is replaced by the upper one.
/// A sensitive value (`{ sensitive = "..." }`) is a leaf, never merged into.
pub(crate) fn deep_merge(base: &mut toml::Table, upper: &toml::Table) {
    for (key, value) in upper {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(u))
                if !secret::is_secret_table(b) && !secret::is_secret_table(u) =>
            {
                deep_merge(b, u)
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_merge_keeps_lower_keys_and_replaces_leaves() {
        let mut base: toml::Table = toml::from_str("a = 1\n[t]\nx = 1\ny = [1]").unwrap();
        let upper: toml::Table = toml::from_str("[t]\ny = [2]\nz = 3").unwrap();
        deep_merge(&mut base, &upper);
        let expected: toml::Table = toml::from_str("a = 1\n[t]\nx = 1\ny = [2]\nz = 3").unwrap();
        assert_eq!(base, expected);
    }

    #[test]
    fn levels_with_missing_facts_are_skipped() {
        assert!(is_level_path("os/debian"));
        assert!(!is_level_path("os/"));
        assert!(!is_level_path("../secrets"));
    }
}
