//! What changes between two compiles of one node (`drover-server diff`,
//! octocatalog-diff's question): the resources added, removed and changed,
//! each change field by field, with a unified diff of a file's content when
//! both contents are text. A sensitive resource shows hashes only, never a
//! value or a diff.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::compile::Compiled;
use crate::model::Resource;

/// How two catalogs of a node differ.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CatalogDiff {
    /// Ids of resources only the new catalog has.
    pub added: Vec<String>,
    /// Ids of resources only the old catalog has.
    pub removed: Vec<String>,
    pub changed: Vec<ResourceChange>,
}

impl CatalogDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// One resource in both catalogs, not the same.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceChange {
    pub id: String,
    /// (field, old, new), each value as JSON text (`null` when unset);
    /// a sensitive resource's values as `sha256:...`.
    pub fields: Vec<(String, String, String)>,
    /// A unified diff of a file's content, when both are UTF-8 text and the
    /// resource is not sensitive.
    pub content_diff: Option<String>,
}

/// The diff of `old` to `new` (resources compared in id order).
pub fn diff_catalogs(old: &Compiled, new: &Compiled) -> CatalogDiff {
    let index = |c: &Compiled| -> BTreeMap<String, Resource> {
        c.catalog
            .resources
            .iter()
            .map(|r| (r.id.to_string(), r.clone()))
            .collect()
    };
    let (before, after) = (index(old), index(new));
    let mut diff = CatalogDiff::default();
    for (id, new_r) in &after {
        match before.get(id) {
            None => diff.added.push(id.clone()),
            Some(old_r) if old_r != new_r => {
                diff.changed
                    .push(change(id, old_r, new_r, &old.contents, &new.contents));
            }
            Some(_) => {}
        }
    }
    diff.removed = before
        .keys()
        .filter(|id| !after.contains_key(*id))
        .cloned()
        .collect();
    diff
}

fn change(
    id: &str,
    old: &Resource,
    new: &Resource,
    old_contents: &BTreeMap<String, Arc<[u8]>>,
    new_contents: &BTreeMap<String, Arc<[u8]>>,
) -> ResourceChange {
    let sensitive = old.meta.sensitive || new.meta.sensitive;
    let fields_of = |r: &Resource| -> BTreeMap<String, Value> {
        match serde_json::to_value(r) {
            Ok(Value::Object(map)) => map.into_iter().collect(),
            _ => BTreeMap::new(),
        }
    };
    let (a, b) = (fields_of(old), fields_of(new));
    let shown = |v: Option<&Value>| -> String {
        match v {
            None => "null".to_owned(),
            Some(v) if sensitive => {
                format!("sha256:{}", crate::sha256_hex(v.to_string().as_bytes()))
            }
            Some(v) => v.to_string(),
        }
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let fields = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| (k.clone(), shown(a.get(k)), shown(b.get(k))))
        .collect();
    let content = |r: &Resource, contents: &BTreeMap<String, Arc<[u8]>>| {
        let sha = fields_of(r).get("sha256")?.as_str()?.to_owned();
        let bytes = contents.get(&sha)?;
        std::str::from_utf8(bytes).ok().map(str::to_owned)
    };
    let content_diff = match (
        sensitive,
        content(old, old_contents),
        content(new, new_contents),
    ) {
        (false, Some(before), Some(after)) if before != after => Some(
            similar::TextDiff::from_lines(&before, &after)
                .unified_diff()
                .header(&format!("{id} (old)"), &format!("{id} (new)"))
                .to_string(),
        ),
        _ => None,
    };
    ResourceChange {
        id: id.to_owned(),
        fields,
        content_diff,
    }
}
