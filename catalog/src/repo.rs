//! A parsed catalog repository: the files of one commit, read once and
//! compiled per node. Problems of one role or data file stay with that file
//! so that nodes which do not use it still compile; an app likewise fails
//! only itself (and the nodes given a replica of it).

use std::collections::BTreeMap;
use std::sync::Arc;

use globset::{Glob, GlobMatcher};
use serde::de::DeserializeOwned;

use crate::apps::{self, App};
use crate::diagnostic::{Diagnostic, Diagnostics, Loc, SourceFile};
use crate::raw::{RawNodes, RawResource, RawRole, RawSettings};
use crate::rollout::RolloutPolicy;
use crate::schedule::Policy;
use crate::values;

/// Repo-relative, `/`-separated paths to file contents. The contents are
/// `Arc`s from the start: the parsed repository and every catalog compiled
/// from it share them, and a repository read whole is held once, not copied.
pub type RepoFiles = BTreeMap<String, Arc<[u8]>>;

/// The default data hierarchy, most specific level first.
pub const DEFAULT_HIERARCHY: [&str; 4] = [
    "nodes/{{ node }}",
    "os/{{ facts.os.id }}",
    "roles/{{ role }}",
    "common",
];

/// A catalog repository parsed once per commit; `Send + Sync` so one parse
/// serves every node.
#[derive(Debug)]
pub struct Repository {
    pub(crate) files: Arc<BTreeMap<String, Arc<[u8]>>>,
    pub(crate) hierarchy: Vec<Level>,
    pub(crate) nodes: Vec<NodeEntry>,
    pub(crate) roles: BTreeMap<String, Result<Role, Vec<Diagnostic>>>,
    pub(crate) data: BTreeMap<String, Result<toml::Table, Diagnostic>>,
    /// `apps/NAME.toml` by NAME (the file's stem).
    pub(crate) apps: BTreeMap<String, Result<App, Vec<Diagnostic>>>,
    /// `[scheduler]` of `drover.toml`, or the default policy.
    pub(crate) policy: Policy,
    /// `[rollout]` of `drover.toml`: commits reach the nodes in stages.
    pub(crate) rollout: Option<RolloutPolicy>,
}

/// One level of the data hierarchy (a template of a path under `data/`).
#[derive(Debug, Clone)]
pub(crate) struct Level {
    pub text: String,
    pub loc: Loc,
}

/// One `[[node]]` entry of `nodes.toml`.
#[derive(Debug, Clone)]
pub(crate) struct NodeEntry {
    pub glob: GlobMatcher,
    pub facts: Vec<(String, toml::Value)>,
    pub roles: Vec<(String, Loc)>,
    pub environment: Option<String>,
    pub labels: Vec<(String, String)>,
    /// Validated `key=value` or `key`.
    pub taints: Vec<String>,
    /// `trust_facts = true`: its fact-gated roles may render sensitive data.
    pub trust_facts: bool,
}

/// One role file, shape-checked.
#[derive(Debug, Clone)]
pub(crate) struct Role {
    pub name: String,
    pub source: SourceFile,
    pub include: Vec<(String, Loc)>,
    pub vars: toml::Table,
    pub resources: Vec<RawResource>,
}

impl Repository {
    /// Reads the repository's TOML. Fails only on what breaks every node
    /// (`drover.toml`, `nodes.toml`); errors of a role or data file are kept
    /// and reported when a node uses that file, and by [`Repository::check`].
    pub fn parse(files: RepoFiles) -> Result<Repository, Diagnostics> {
        let files: RepoFiles = files
            .into_iter()
            .map(|(path, bytes)| match path.starts_with("./") {
                true => (path.trim_start_matches("./").to_owned(), bytes),
                false => (path, bytes),
            })
            .collect();
        let mut errors = Vec::new();

        let mut policy = Policy::default();
        let mut rollout = None;
        let hierarchy = match files.get("drover.toml") {
            None => default_hierarchy(),
            Some(bytes) => match parse_toml::<RawSettings>("drover.toml", bytes) {
                Ok((src, settings)) => {
                    let hierarchy = match settings.data.and_then(|d| d.hierarchy) {
                        Some(levels) => levels
                            .into_iter()
                            .map(|l| Level {
                                loc: src.span(&l.span()),
                                text: l.into_inner(),
                            })
                            .collect(),
                        None => default_hierarchy(),
                    };
                    if let Some(raw) = settings.scheduler {
                        match crate::schedule::parse_policy(&src, raw) {
                            Ok(parsed) => policy = parsed,
                            Err(mut e) => errors.append(&mut e),
                        }
                    }
                    if let Some(raw) = settings.rollout {
                        match crate::rollout::parse_rollout(&src, raw) {
                            Ok(parsed) => rollout = Some(parsed),
                            Err(mut e) => errors.append(&mut e),
                        }
                    }
                    hierarchy
                }
                Err(e) => {
                    errors.push(e);
                    Vec::new()
                }
            },
        };

        let nodes = match files.get("nodes.toml") {
            None => {
                errors.push(Diagnostic::file(
                    "nodes.toml",
                    "nodes.toml is missing\nhint: add a [[node]] entry with `match` and `roles`",
                ));
                Vec::new()
            }
            Some(bytes) => match parse_toml::<RawNodes>("nodes.toml", bytes) {
                Ok((src, raw)) => node_entries(&src, raw, &mut errors),
                Err(e) => {
                    errors.push(e);
                    Vec::new()
                }
            },
        };
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }

        let mut roles = BTreeMap::new();
        let mut data = BTreeMap::new();
        let mut apps = BTreeMap::new();
        for (path, bytes) in &files {
            if let Some(name) = under(path, "apps/") {
                apps.insert(name.to_owned(), apps::parse_app(path, name, bytes));
            } else if let Some(name) = under(path, "roles/") {
                roles.insert(name.to_owned(), parse_role(path, name, bytes));
            } else if let Some(name) = under(path, "data/") {
                let table = parse_toml::<toml::Table>(path, bytes).map(|(_, t)| t);
                data.insert(name.to_owned(), table);
            }
        }
        Ok(Repository {
            files: Arc::new(files),
            hierarchy,
            nodes,
            roles,
            data,
            apps,
            policy,
            rollout,
        })
    }

    /// `[rollout]` of `drover.toml`, if the repository stages its commits.
    pub fn rollout(&self) -> Option<&RolloutPolicy> {
        self.rollout.as_ref()
    }

    /// The scheduler's policy: `[scheduler]` of `drover.toml`, or the default.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The parse errors of every role, app and data file.
    pub(crate) fn file_errors(&self) -> Vec<Diagnostic> {
        let roles = self
            .roles
            .values()
            .filter_map(|r| r.as_ref().err())
            .flatten();
        let apps = self
            .apps
            .values()
            .filter_map(|a| a.as_ref().err())
            .flatten();
        let data = self.data.values().filter_map(|d| d.as_ref().err());
        roles.chain(apps).chain(data).cloned().collect()
    }
}

fn default_hierarchy() -> Vec<Level> {
    DEFAULT_HIERARCHY
        .iter()
        .map(|text| Level {
            text: (*text).to_owned(),
            loc: Loc::start("drover.toml"),
        })
        .collect()
}

/// `roles/web/app.toml` under `roles/` is `web/app`.
fn under<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    path.strip_prefix(dir)?.strip_suffix(".toml")
}

pub(crate) fn parse_toml<T: DeserializeOwned>(
    path: &str,
    bytes: &[u8],
) -> Result<(SourceFile, T), Diagnostic> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Diagnostic::file(path, format!("{path} is not valid UTF-8: {e}")))?;
    let src = SourceFile::new(path, text);
    let value = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
    Ok((src, value))
}

fn node_entries(src: &SourceFile, raw: RawNodes, errors: &mut Vec<Diagnostic>) -> Vec<NodeEntry> {
    let mut out = Vec::new();
    for entry in raw.node {
        let loc = src.span(&entry.pattern.span());
        let glob = match Glob::new(entry.pattern.get_ref()) {
            Ok(g) => g.compile_matcher(),
            Err(e) => {
                errors.push(loc.error(format!(
                    "invalid glob `{}` in `match`: {}",
                    entry.pattern.get_ref(),
                    e.kind()
                )));
                continue;
            }
        };
        let mut facts = Vec::new();
        for (key, value) in entry.facts.unwrap_or_default() {
            flatten_fact(key, value, &mut facts);
        }
        let roles = entry
            .roles
            .into_iter()
            .map(|r| (r.get_ref().clone(), src.span(&r.span())))
            .collect();
        let mut labels = Vec::new();
        for (key, value) in entry.labels {
            match value.get_ref() {
                toml::Value::String(s) => labels.push((key, s.clone())),
                other => errors.push(src.span(&value.span()).error(format!(
                    "label `{key}` must be a string (found {})\nhint: label values are strings: quote it",
                    other.type_str()
                ))),
            }
        }
        let mut taints = Vec::new();
        for taint in entry.taints {
            match values::taint_problem(taint.get_ref()) {
                Some(why) => errors.push(
                    src.span(&taint.span())
                        .error(format!("invalid taint `{}`: {why}", taint.get_ref())),
                ),
                None => taints.push(taint.into_inner()),
            }
        }
        out.push(NodeEntry {
            glob,
            facts,
            roles,
            environment: entry.environment.map(|e| e.into_inner()),
            labels,
            taints,
            trust_facts: entry.trust_facts,
        });
    }
    out
}

/// `{ os.id = "debian" }` (a nested table) means the same as `{ "os.id" = "debian" }`.
pub(crate) fn flatten_fact(key: String, value: toml::Value, out: &mut Vec<(String, toml::Value)>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                flatten_fact(format!("{key}.{k}"), v, out);
            }
        }
        value => out.push((key, value)),
    }
}

fn parse_role(path: &str, name: &str, bytes: &[u8]) -> Result<Role, Vec<Diagnostic>> {
    let (source, raw) = parse_toml::<RawRole>(path, bytes).map_err(|e| vec![e])?;
    let include = raw
        .include
        .iter()
        .map(|i| (i.get_ref().clone(), source.span(&i.span())))
        .collect();
    Ok(Role {
        name: name.to_owned(),
        include,
        vars: raw.vars.clone(),
        resources: raw.resources(),
        source,
    })
}
