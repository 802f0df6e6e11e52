//! Sensitive data values: `{ sensitive = "s3cret" }` in `data/**.toml` and
//! role `[vars]`. Templates see the plain string; reading it marks the
//! render as tainted, and the resource being rendered becomes sensitive
//! (values shown as hashes only in reports, logs and diffs).
//!
//! The taint is recorded where a value is read: the tables of `vars` that
//! hold a secret are template objects whose lookups set a flag shared with
//! the [`crate::render::Renderer`]. Every way a template reaches a value
//! (attribute, item, loop, `items`, `tojson`, printing a whole table) goes
//! through that lookup.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use minijinja::Value;
use minijinja::value::{Enumerator, Object, ObjectRepr};

/// The key of the inline table that marks a value sensitive.
pub(crate) const KEY: &str = "sensitive";

/// What replaces a sensitive value in a compile error.
pub(crate) const HIDDEN: &str = "(sensitive)";

/// Whether a table is the sensitive form (its only key is `sensitive`).
pub(crate) fn is_secret_table(table: &toml::Table) -> bool {
    table.len() == 1 && table.contains_key(KEY)
}

/// `Some(Ok(text))` for `{ sensitive = "text" }`, `Some(Err(type))` for a
/// table whose only key is `sensitive` but holds no string, `None` for
/// any other value.
pub(crate) fn as_secret(value: &toml::Value) -> Option<Result<&str, &'static str>> {
    let toml::Value::Table(table) = value else {
        return None;
    };
    if !is_secret_table(table) {
        return None;
    }
    match &table[KEY] {
        toml::Value::String(text) => Some(Ok(text)),
        other => Some(Err(other.type_str())),
    }
}

/// Every `{ sensitive = ... }` of a data table that is not a string, as
/// `db.password: an integer` problems (dotted key, what it holds).
pub(crate) fn malformed(table: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in table {
        walk_malformed(key, value, &mut out);
    }
    out
}

fn walk_malformed(path: &str, value: &toml::Value, out: &mut Vec<String>) {
    match (as_secret(value), value) {
        (Some(Err(kind)), _) => out.push(format!(
            "`{path}`: a sensitive value must be a string, not {}\nhint: write it as `{{ {KEY} = \"...\" }}` (numbers and booleans in quotes)",
            article(kind)
        )),
        (Some(Ok(_)), _) => {}
        (None, toml::Value::Table(table)) => {
            for (key, inner) in table {
                walk_malformed(&format!("{path}.{key}"), inner, out);
            }
        }
        (None, toml::Value::Array(items)) => {
            for (i, inner) in items.iter().enumerate() {
                walk_malformed(&format!("{path}[{i}]"), inner, out);
            }
        }
        (None, _) => {}
    }
}

fn article(kind: &str) -> String {
    match kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        true => format!("an {kind}"),
        false => format!("a {kind}"),
    }
}

/// Set when a template reads a sensitive value. Shared by the template
/// context and the renderer, which takes it around each resource.
#[derive(Debug, Clone, Default)]
pub(crate) struct Taint(Arc<AtomicBool>);

impl Taint {
    fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a sensitive value was read since the last call.
    pub(crate) fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// The node's sensitive values and the flag their reads set.
#[derive(Debug, Clone, Default)]
pub(crate) struct Secrets {
    pub taint: Taint,
    /// Every sensitive value of the node's `vars`, longest first, no empty ones.
    pub values: Vec<String>,
}

impl Secrets {
    /// `vars` as the template context sees it; the tables that hold a
    /// secret become lookups that mark the taint.
    pub(crate) fn template_vars(&mut self, vars: &toml::Table) -> Value {
        let value = self.table(vars).0;
        self.values.retain(|v| !v.is_empty());
        self.values
            .sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        self.values.dedup();
        value
    }

    /// The value and whether it holds a secret somewhere inside.
    fn convert(&mut self, value: &toml::Value) -> (Value, bool) {
        if let Some(Ok(text)) = as_secret(value) {
            self.values.push(text.to_owned());
            return (Value::from(text), true);
        }
        match value {
            toml::Value::Table(table) => self.table(table),
            toml::Value::Array(items) => {
                let entries: Vec<Entry> = items.iter().map(|v| self.entry(v)).collect();
                if entries.iter().any(|e| e.secret || e.nested) {
                    let seq = SecretSeq {
                        entries,
                        taint: self.taint.clone(),
                    };
                    (Value::from_object(seq), true)
                } else {
                    (Value::from_serialize(toml_to_json(value)), false)
                }
            }
            plain => (Value::from_serialize(toml_to_json(plain)), false),
        }
    }

    fn table(&mut self, table: &toml::Table) -> (Value, bool) {
        let entries: BTreeMap<String, Entry> = table
            .iter()
            .map(|(k, v)| (k.clone(), self.entry(v)))
            .collect();
        if entries.values().any(|e| e.secret || e.nested) {
            let map = SecretMap {
                entries,
                taint: self.taint.clone(),
            };
            (Value::from_object(map), true)
        } else {
            (Value::from_serialize(table_to_json(table)), false)
        }
    }

    fn entry(&mut self, value: &toml::Value) -> Entry {
        let secret = matches!(as_secret(value), Some(Ok(_)));
        let (value, holds) = self.convert(value);
        Entry {
            value,
            secret,
            nested: holds && !secret,
        }
    }

    /// `text` with every sensitive value replaced by [`HIDDEN`].
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), HIDDEN);
            }
        }
        out
    }

    /// Whether any sensitive value appears in `haystack` (a value that
    /// reached a resource without being read as one: the same text given
    /// plainly elsewhere, or in a static `source` file).
    pub(crate) fn appears_in(&self, haystack: &[u8]) -> bool {
        self.values.iter().any(|v| contains(haystack, v.as_bytes()))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack.len() >= needle.len()
        && haystack.windows(needle.len()).any(|w| w == needle)
}

/// TOML data as JSON for the template context (datetimes become strings).
fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
        }
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(items) => items.iter().map(toml_to_json).collect(),
        toml::Value::Table(t) => table_to_json(t).into(),
    }
}

fn table_to_json(table: &toml::Table) -> serde_json::Map<String, serde_json::Value> {
    table
        .iter()
        .map(|(k, v)| (k.clone(), toml_to_json(v)))
        .collect()
}

/// One value of a table or list that holds secrets.
#[derive(Clone)]
struct Entry {
    value: Value,
    /// The value itself is sensitive: reading it taints.
    secret: bool,
    /// A table or list with secrets inside: it taints on its own reads.
    nested: bool,
}

impl Entry {
    fn read(&self, taint: &Taint) -> Value {
        if self.secret {
            taint.mark();
        }
        self.value.clone()
    }
}

/// A table holding sensitive values. Its own `Debug` names keys only (a
/// template value's `Debug` renders it, which reads and so taints).
struct SecretMap {
    entries: BTreeMap<String, Entry>,
    taint: Taint,
}

impl fmt::Debug for SecretMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretMap")
            .field("keys", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Object for SecretMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let entry = self.entries.get(key.as_str()?)?;
        Some(entry.read(&self.taint))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.entries
                .keys()
                .map(|k| Value::from(k.as_str()))
                .collect(),
        )
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// A list holding sensitive values. Its `Debug` gives the length only.
struct SecretSeq {
    entries: Vec<Entry>,
    taint: Taint,
}

impl fmt::Debug for SecretSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSeq")
            .field("len", &self.entries.len())
            .finish()
    }
}

impl Object for SecretSeq {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let index = usize::try_from(key.as_i64()?).ok()?;
        Some(self.entries.get(index)?.read(&self.taint))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        // `Seq` makes every iteration go through `get_value`.
        Enumerator::Seq(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use minijinja::{Environment, context};

    use super::*;

    fn vars(text: &str) -> (Secrets, Value) {
        let table: toml::Table = toml::from_str(text).unwrap();
        let mut secrets = Secrets::default();
        let value = secrets.template_vars(&table);
        (secrets, value)
    }

    fn render(template: &str, value: &Value) -> String {
        Environment::new()
            .render_str(template, context! { vars => value })
            .unwrap()
    }

    #[test]
    fn reading_a_secret_taints_and_other_reads_do_not() {
        let (secrets, v) = vars(
            "plain = \"p\"\n[db]\nuser = \"app\"\npassword = { sensitive = \"s3cret\" }\nhosts = [\"a\", { sensitive = \"h0st\" }]",
        );
        assert_eq!(secrets.values, ["s3cret", "h0st"]);
        assert_eq!(render("{{ vars.plain }} {{ vars.db.user }}", &v), "p app");
        assert!(!secrets.taint.take(), "no secret was read");
        for (template, expected) in [
            ("{{ vars.db.password }}", "s3cret"),
            ("{{ vars.db.password | upper }}", "S3CRET"),
            ("{{ vars.db['password'] }}", "s3cret"),
            (
                "{% for k, v in vars.db | items %}{{ v if k == 'password' }}{% endfor %}",
                "s3cret",
            ),
            ("{{ vars.db.hosts[1] }}", "h0st"),
            ("{% for h in vars.db.hosts %}{{ h }}{% endfor %}", "ah0st"),
        ] {
            assert_eq!(render(template, &v), expected, "{template}");
            assert!(secrets.taint.take(), "{template} read a secret");
        }
        let whole = render("{{ vars.db }}", &v);
        assert!(whole.contains("s3cret"), "{whole}");
        assert!(secrets.taint.take(), "printing the table read every value");
        assert_eq!(render("{{ vars.db.hosts[0] }}", &v), "a");
        assert!(
            !secrets.taint.take(),
            "a plain item of a list with a secret"
        );
    }

    #[test]
    fn only_a_lone_sensitive_key_marks_a_value_and_it_must_be_a_string() {
        let table: toml::Table = toml::from_str(
            "a = { sensitive = 42 }\nb = { sensitive = \"x\", note = \"a plain table\" }\n[c]\nd = [{ sensitive = true }]",
        )
        .unwrap();
        let problems = malformed(&table);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("`a`: a sensitive value must be a string, not an integer"));
        assert!(
            problems[1].starts_with("`c.d[0]`: a sensitive value must be a string, not a boolean")
        );
        assert_eq!(as_secret(&table["b"]), None);
    }

    #[test]
    fn scrub_replaces_longer_values_first() {
        let (secrets, _) = vars("a = { sensitive = \"abc\" }\nb = { sensitive = \"abcdef\" }");
        assert_eq!(
            secrets.scrub("x abcdef y abc"),
            "x (sensitive) y (sensitive)"
        );
        assert!(secrets.appears_in(b"--abc--"));
        assert!(!secrets.appears_in(b"--ab--"));
    }
}
