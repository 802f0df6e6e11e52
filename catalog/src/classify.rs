//! Which roles, labels and taints a node gets: `nodes.toml` matching, then
//! role includes. Every entry that matches contributes, in file order, so a
//! broad entry (`match = "*"`) sets defaults a narrower one refines.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::diagnostic::{Diagnostic, Diagnostics, Loc};
use crate::model::Facts;
use crate::repo::{NodeEntry, Repository, Role};

/// The roles of a node as `nodes.toml` lists them, and its environment pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// Roles in file order, without duplicates, includes not yet expanded.
    pub roles: Vec<String>,
    /// Set by the last matching entry that pins one.
    pub environment: Option<String>,
}

/// What `nodes.toml` makes of a node: what the scheduler's selector,
/// spread and tolerations look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeProfile {
    /// Expanded (includes first), as [`crate::Compiled::roles`].
    pub roles: Vec<String>,
    /// The union of its matching entries' labels; later entries win per key.
    pub labels: BTreeMap<String, String>,
    /// The union of its matching entries' taints, in order, without duplicates.
    pub taints: Vec<String>,
}

impl Repository {
    /// The node's expanded roles, labels and taints, without compiling.
    pub fn node_profile(&self, node: &str, facts: &Facts) -> Result<NodeProfile, Diagnostics> {
        let (_, roots) = self
            .classify_with_locs(node, facts)
            .map_err(Diagnostics::one)?;
        let roles = self.expand_roles(&roots).map_err(Diagnostics)?;
        let mut taints: Vec<String> = Vec::new();
        for entry in self.matching(node, facts) {
            for taint in &entry.taints {
                if !taints.contains(taint) {
                    taints.push(taint.clone());
                }
            }
        }
        Ok(NodeProfile {
            roles: roles.iter().map(|r| r.name.clone()).collect(),
            labels: self.node_labels(node, facts),
            taints,
        })
    }

    /// The node's labels: `labels` in templates.
    pub(crate) fn node_labels(&self, node: &str, facts: &Facts) -> BTreeMap<String, String> {
        self.matching(node, facts)
            .flat_map(|entry| entry.labels.iter().cloned())
            .collect()
    }

    /// The `[[node]]` entries that match the node, in file order.
    fn matching<'a>(
        &'a self,
        node: &'a str,
        facts: &'a Facts,
    ) -> impl Iterator<Item = &'a NodeEntry> + 'a {
        self.nodes.iter().filter(move |entry| {
            entry.glob.is_match(node)
                && entry
                    .facts
                    .iter()
                    .all(|(path, want)| fact_at(facts, path).is_some_and(|f| fact_equals(f, want)))
        })
    }

    /// The roles and environment pin of a node, without compiling.
    pub fn classify(&self, node: &str, facts: &Facts) -> Result<Classification, Diagnostics> {
        self.classify_with_locs(node, facts)
            .map(|(c, _)| c)
            .map_err(Diagnostics::one)
    }

    pub(crate) fn classify_with_locs(
        &self,
        node: &str,
        facts: &Facts,
    ) -> Result<(Classification, Vec<(String, Loc)>), Diagnostic> {
        let mut roles: Vec<(String, Loc)> = Vec::new();
        let mut environment = None;
        let mut matched = false;
        for entry in self.matching(node, facts) {
            matched = true;
            for (role, loc) in &entry.roles {
                if !roles.iter().any(|(r, _)| r == role) {
                    roles.push((role.clone(), loc.clone()));
                }
            }
            if let Some(env) = &entry.environment {
                environment = Some(env.clone());
            }
        }
        if !matched {
            return Err(Loc::start("nodes.toml").error(format!(
                "node `{node}` is matched by no [[node]] entry\n\
                 hint: add an entry whose `match` glob (and `facts`, if any) fits this node, \
                 e.g. match = \"*\""
            )));
        }
        let classification = Classification {
            roles: roles.iter().map(|(r, _)| r.clone()).collect(),
            environment,
        };
        Ok((classification, roles))
    }

    /// The node's roles that only a `facts =` match gives (directly or by
    /// include), with the nodes.toml place of the root that gives each.
    /// Facts are the node's own claims: such a role must not render
    /// sensitive data unless its entry says `trust_facts = true`.
    pub(crate) fn fact_only_roles(&self, node: &str, facts: &Facts) -> Vec<(String, Loc)> {
        let mut trusted_roots = Vec::new();
        let mut claimed_roots: Vec<(String, Loc)> = Vec::new();
        for entry in self.matching(node, facts) {
            let by_name = entry.facts.is_empty() || entry.trust_facts;
            for root in &entry.roles {
                if by_name {
                    trusted_roots.push(root.clone());
                } else {
                    claimed_roots.push(root.clone());
                }
            }
        }
        let trusted: BTreeSet<&str> = self
            .expand_roles(&trusted_roots)
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name.as_str())
            .collect();
        let mut out: Vec<(String, Loc)> = Vec::new();
        for (root, loc) in &claimed_roots {
            let reached = self
                .expand_roles(&[(root.clone(), loc.clone())])
                .unwrap_or_default();
            for role in reached {
                if !trusted.contains(role.name.as_str())
                    && !out.iter().any(|(r, _)| *r == role.name)
                {
                    out.push((role.name.clone(), loc.clone()));
                }
            }
        }
        out
    }

    /// Expands includes depth first (an included role comes before its
    /// includer) and returns every role once, in that order.
    pub(crate) fn expand_roles(
        &self,
        roots: &[(String, Loc)],
    ) -> Result<Vec<&Role>, Vec<Diagnostic>> {
        let mut out = Vec::new();
        let mut done = BTreeSet::new();
        let mut errors = Vec::new();
        for (name, loc) in roots {
            let mut stack = Vec::new();
            self.visit(name, loc, &mut stack, &mut done, &mut out, &mut errors);
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    fn visit<'a>(
        &'a self,
        name: &str,
        loc: &Loc,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<&'a Role>,
        errors: &mut Vec<Diagnostic>,
    ) {
        if let Some(start) = stack.iter().position(|s| s == name) {
            let mut cycle: Vec<&str> = stack[start..].iter().map(String::as_str).collect();
            cycle.push(name);
            errors.push(loc.error(format!(
                "role include cycle: {}\nhint: a role may not include itself, directly or through others",
                cycle.join(" -> ")
            )));
            return;
        }
        if !done.insert(name.to_owned()) {
            return;
        }
        let role = match self.roles.get(name) {
            None => {
                errors.push(loc.error(format!(
                    "unknown role `{name}`: roles/{name}.toml does not exist"
                )));
                return;
            }
            Some(Err(errs)) => {
                errors.extend(errs.iter().cloned());
                return;
            }
            Some(Ok(role)) => role,
        };
        stack.push(name.to_owned());
        for (inc, inc_loc) in &role.include {
            self.visit(inc, inc_loc, stack, done, out, errors);
        }
        stack.pop();
        out.push(role);
    }
}

/// A fact by dotted path (`os.id`); a literal key with dots is tried first.
pub(crate) fn fact_at<'a>(facts: &'a Facts, path: &str) -> Option<&'a serde_json::Value> {
    if let Some(v) = facts.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut value = facts.get(parts.next()?)?;
    for part in parts {
        value = match value {
            serde_json::Value::Object(map) => map.get(part)?,
            serde_json::Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Equal as values, or equal as strings (`"12"` matches the number 12).
pub(crate) fn fact_equals(fact: &serde_json::Value, want: &toml::Value) -> bool {
    if serde_json::to_value(want).is_ok_and(|w| &w == fact) {
        return true;
    }
    let fact_str = match fact {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => return false,
    };
    let want_str = match want {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        _ => return false,
    };
    fact_str == want_str
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_compare_as_values_or_strings() {
        let facts: Facts = serde_json::from_str(r#"{"os":{"id":"debian","v":12},"n":3}"#).unwrap();
        let at = |p| fact_at(&facts, p).unwrap();
        assert!(fact_equals(
            at("os.id"),
            &toml::Value::String("debian".into())
        ));
        assert!(fact_equals(at("os.v"), &toml::Value::String("12".into())));
        assert!(fact_equals(at("n"), &toml::Value::Integer(3)));
        assert!(!fact_equals(at("n"), &toml::Value::Integer(4)));
        assert!(fact_at(&facts, "os.missing").is_none());
    }
}
