//! `--tags T1,T2` (Puppet's `--tags`): a run of part of the catalog. A
//! resource is selected when one of its `tags`, or its id
//! (`package:nginx`), is among those asked for; what the selected ones
//! require or subscribe to comes along, transitively, since they may only
//! converge after it. The rest is left alone, app replicas included: a
//! tagged run removes no stale replica and reports no replica state (its
//! report lists its tags, and the server keeps the states it had).

use std::collections::{HashMap, HashSet};

use anyhow::{Result, bail};
use drover_catalog::{Catalog, ResourceId};

/// The part of `catalog` that `tags` select, in the catalog's order.
pub(crate) fn select(catalog: &Catalog, tags: &[String]) -> Result<Catalog> {
    let wanted: HashSet<&str> = tags.iter().map(String::as_str).collect();
    let by_id: HashMap<&ResourceId, usize> = catalog
        .resources
        .iter()
        .enumerate()
        .map(|(i, r)| (&r.id, i))
        .collect();
    let mut keep = vec![false; catalog.resources.len()];
    let mut todo: Vec<usize> = catalog
        .resources
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            wanted.contains(r.id.as_str())
                || r.meta.tags.iter().any(|t| wanted.contains(t.as_str()))
        })
        .map(|(i, _)| i)
        .collect();
    if todo.is_empty() {
        let mut known: Vec<&str> = catalog
            .resources
            .iter()
            .flat_map(|r| r.meta.tags.iter().map(String::as_str))
            .collect();
        known.sort_unstable();
        known.dedup();
        bail!(
            "no resource of the catalog has the tag{} {}\nhint: the catalog's tags are {}; a resource's id (kind:name) selects it too",
            if tags.len() == 1 { "" } else { "s" },
            tags.join(", "),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    }
    while let Some(i) = todo.pop() {
        if std::mem::replace(&mut keep[i], true) {
            continue;
        }
        let meta = &catalog.resources[i].meta;
        for dep in meta.require.iter().chain(&meta.subscribe) {
            if let Some(&j) = by_id.get(dep) {
                todo.push(j);
            }
        }
    }
    Ok(Catalog {
        node: catalog.node.clone(),
        environment: catalog.environment.clone(),
        commit: catalog.commit.clone(),
        version: catalog.version.clone(),
        resources: catalog
            .resources
            .iter()
            .zip(keep)
            .filter(|(_, keep)| *keep)
            .map(|(r, _)| r.clone())
            .collect(),
        contents: catalog.contents.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let json = serde_json::json!({
            "node": "web-1", "environment": "production", "commit": "c", "version": "v",
            "resources": [
                {"id": "directory:/etc/app", "kind": "directory", "path": "/etc/app"},
                {"id": "file:/etc/app/a.conf", "kind": "file", "path": "/etc/app/a.conf",
                 "content": "a", "require": ["directory:/etc/app"], "tags": ["app"]},
                {"id": "package:nginx", "kind": "package", "name": "nginx", "ensure": "present"},
                {"id": "service:nginx", "kind": "service", "name": "nginx", "ensure": "running",
                 "subscribe": ["file:/etc/app/a.conf"], "require": ["package:nginx"],
                 "tags": ["web"]},
                {"id": "file:/etc/motd", "kind": "file", "path": "/etc/motd", "content": "hi",
                 "tags": ["base"]},
            ],
        });
        serde_json::from_value(json).unwrap()
    }

    fn ids(c: &Catalog) -> Vec<&str> {
        c.resources.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn a_tag_selects_its_resources_and_what_they_require_in_catalog_order() {
        let c = catalog();
        let app = select(&c, &["app".into()]).unwrap();
        assert_eq!(ids(&app), ["directory:/etc/app", "file:/etc/app/a.conf"]);
        let web = select(&c, &["web".into()]).unwrap();
        assert_eq!(
            ids(&web),
            [
                "directory:/etc/app",
                "file:/etc/app/a.conf",
                "package:nginx",
                "service:nginx"
            ]
        );
        assert_eq!(web.version, c.version, "the whole catalog's version");
        let by_id = select(&c, &["file:/etc/motd".into(), "nothing".into()]).unwrap();
        assert_eq!(ids(&by_id), ["file:/etc/motd"]);
    }

    #[test]
    fn tags_nothing_has_are_an_error_listing_the_catalogs_tags() {
        let err = select(&catalog(), &["db".into()]).unwrap_err().to_string();
        assert!(
            err.starts_with("no resource of the catalog has the tag db"),
            "{err}"
        );
        assert!(
            err.contains("the catalog's tags are app, base, web"),
            "{err}"
        );
    }
}
