//! The fleet's filters: what an operator types (the dashboard's form, the
//! node API's query string) parsed once, and pushed into the fleet query.

use crate::db::{Backend, Sql};
use serde::Deserialize;

use super::NodeState;

/// The filter as typed: every part optional, empty meaning unset.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterText {
    /// A substring of the node name (case-insensitive).
    #[serde(default)]
    #[param(example = "web")]
    pub q: String,
    /// A node state (`failed`, `unresponsive`, `noop_pending`, `changed`,
    /// `unchanged`, `never_reported`), or `stale` (its last run used the
    /// cached catalog or an older commit), `compile_error` (its catalog does
    /// not compile), `corrective` (changed, and its last run repaired drift).
    #[serde(default)]
    #[param(
        example = "changed",
        pattern = "^(failed|unresponsive|noop_pending|changed|unchanged|never_reported|stale|compile_error|corrective)$"
    )]
    pub state: String,
    /// A role the node has.
    #[serde(default)]
    #[param(example = "web")]
    pub role: String,
    /// The environment the node is compiled in.
    #[serde(default)]
    #[param(example = "main")]
    pub environment: String,
    /// `KEY=VALUE` with a dotted fact path.
    #[serde(default)]
    #[param(example = "os.id=debian", pattern = "^[^=]+=")]
    pub fact: String,
}

impl FilterText {
    /// `k=v&...` of the parts that are set, then of `extra` (paging), each
    /// value percent-encoded: the query string of a link to more of the same.
    pub fn query(&self, extra: &[(&str, &str)]) -> String {
        [
            ("q", self.q.as_str()),
            ("state", &self.state),
            ("role", &self.role),
            ("environment", &self.environment),
            ("fact", &self.fact),
        ]
        .iter()
        .chain(extra)
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
    }

    /// The filter, or why a part of it cannot be used (that part is left out).
    pub fn parse(&self) -> (Filter, Option<String>) {
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let mut error = None;
        let state = match text(&self.state) {
            None => None,
            Some(s) => StateFilter::parse(&s).or_else(|| {
                error = Some(format!("unknown state `{s}`"));
                None
            }),
        };
        let fact = match text(&self.fact) {
            None => None,
            Some(f) => match f.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    Some((key.trim().to_owned(), value.trim().to_owned()))
                }
                _ => {
                    error = Some(format!(
                        "the fact filter `{f}` needs KEY=VALUE, e.g. os.id=debian"
                    ));
                    None
                }
            },
        };
        let filter = Filter {
            name: text(&self.q),
            state,
            role: text(&self.role),
            environment: text(&self.environment),
            fact,
        };
        (filter, error)
    }
}

/// The overview's filters, as the query string gives them.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A substring of the node name (case-insensitive).
    pub name: Option<String>,
    pub state: Option<StateFilter>,
    pub role: Option<String>,
    pub environment: Option<String>,
    /// A fact path (`os.id`) and the value it must have, compared as text
    /// (`true`, `12`, `debian`).
    pub fact: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    Is(NodeState),
    Stale,
    CompileError,
    /// Changed, and the last run repaired drift.
    Corrective,
}

impl StateFilter {
    pub fn parse(s: &str) -> Option<StateFilter> {
        match s {
            "stale" => Some(StateFilter::Stale),
            "compile_error" => Some(StateFilter::CompileError),
            "corrective" => Some(StateFilter::Corrective),
            _ => NodeState::parse(s).map(StateFilter::Is),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::Is(state) => state.as_str(),
            StateFilter::Stale => "stale",
            StateFilter::CompileError => "compile_error",
            StateFilter::Corrective => "corrective",
        }
    }
}

impl Filter {
    /// `AND ...` for each part that is set, over the state columns of
    /// `Context::push_columns`.
    pub(super) fn push(&self, q: &mut Sql, backend: Backend) {
        if let Some(name) = &self.name {
            // LOWER on both sides: SQLite's LIKE ignores ASCII case,
            // PostgreSQL's does not.
            q.push(" AND LOWER(name) LIKE LOWER(")
                .bind(format!("%{}%", like_escape(name)))
                .push(") ESCAPE '\\'");
        }
        match self.state {
            Some(StateFilter::Is(state)) => {
                q.push(" AND state = ").bind(state.as_str());
            }
            Some(StateFilter::Stale) => {
                q.push(" AND stale = 1");
            }
            Some(StateFilter::CompileError) => {
                q.push(" AND compile_error IS NOT NULL");
            }
            Some(StateFilter::Corrective) => {
                q.push(" AND state = 'changed' AND COALESCE(last_corrective, 0) > 0");
            }
            None => {}
        }
        if let Some(role) = &self.role {
            let n = q.param(role.clone());
            q.push(" AND ").push(&backend.json_array_has("roles", n));
        }
        if let Some(env) = &self.environment {
            q.push(" AND environment = ").bind(env.clone());
        }
        if let Some((path, value)) = &self.fact {
            // As text, as the node page shows it: a JSON boolean reads `true`,
            // not SQLite's 1.
            let n = q.param(backend.json_path(path));
            q.push(" AND ")
                .push(&backend.json_text("facts", n))
                .push(" = ")
                .bind(value.clone());
        }
    }
}

/// `%`, `_` and `\` match themselves in a LIKE pattern with `ESCAPE '\'`.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_their_own_characters() {
        assert_eq!(like_escape("web_1%\\"), "web\\_1\\%\\\\");
    }
}
