//! Validation across resources (unique ids and paths, references), the
//! dependency graph with its implicit edges, and topological ordering.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::container::{Mount, MountSource};
use crate::diagnostic::Diagnostic;
use crate::model::{ContainerSpec, Kind, Meta, Resource, ResourceId, Spec};
use crate::resources::{Decl, Ref};

/// The linked catalog: resources in dependency order and content by hash.
pub(crate) struct Linked {
    pub resources: Vec<Resource>,
    pub contents: BTreeMap<String, Arc<[u8]>>,
}

pub(crate) fn link(decls: Vec<Decl>) -> Result<Linked, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let decls = unique(decls, &mut errors);
    let index: BTreeMap<&ResourceId, usize> =
        decls.iter().enumerate().map(|(i, d)| (&d.id, i)).collect();

    // requires[i]: what must come before i; refreshes[i]: what refreshes i.
    let mut requires: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); decls.len()];
    let mut refreshes: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); decls.len()];
    for (i, d) in decls.iter().enumerate() {
        let mut resolve = |refs: &[Ref], field: &str| -> Vec<usize> {
            refs.iter()
                .filter_map(|r| resolve(r, field, &index, &mut errors))
                .collect()
        };
        let require = resolve(&d.meta.require, "require");
        let subscribe = resolve(&d.meta.subscribe, "subscribe");
        let before = resolve(&d.meta.before, "before");
        let notify = resolve(&d.meta.notify, "notify");
        requires[i].extend(require.iter().chain(&subscribe));
        refreshes[i].extend(&subscribe);
        for j in before.iter().chain(&notify) {
            requires[*j].insert(i);
        }
        for j in notify {
            refreshes[j].insert(i);
        }
        let (dirs, owners) = implicit_requires(&d.spec);
        if let Some(&j) = dirs.iter().find_map(|dir| index.get(dir)) {
            requires[i].insert(j);
        }
        for id in owners {
            if let Some(&j) = index.get(&id).filter(|&&j| j != i) {
                requires[i].insert(j);
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let order = topological(&decls, &requires)?;

    let mut resources = Vec::with_capacity(decls.len());
    let mut contents = BTreeMap::new();
    for i in order {
        let d = &decls[i];
        let ids = |set: &BTreeSet<usize>| -> Vec<ResourceId> {
            let sorted: BTreeSet<&ResourceId> = set.iter().map(|&j| &decls[j].id).collect();
            sorted.into_iter().cloned().collect()
        };
        if let (Spec::File(f), Some(bytes)) = (&d.spec, &d.content)
            && let Some(sha) = &f.sha256
        {
            contents.insert(sha.clone(), Arc::clone(bytes));
        }
        resources.push(Resource {
            id: d.id.clone(),
            spec: d.spec.clone(),
            meta: Meta {
                require: ids(&requires[i]),
                subscribe: ids(&refreshes[i]),
                noop: d.meta.noop,
                sensitive: d.meta.sensitive,
                tags: d.meta.tags.clone(),
            },
        });
    }
    Ok(Linked {
        resources,
        contents,
    })
}

/// Drops second declarations of an id, and second managers of a path.
fn unique(decls: Vec<Decl>, errors: &mut Vec<Diagnostic>) -> Vec<Decl> {
    let mut out: Vec<Decl> = Vec::new();
    let mut by_id: BTreeMap<ResourceId, usize> = BTreeMap::new();
    let mut by_path: BTreeMap<String, usize> = BTreeMap::new();
    for d in decls {
        if !d.id_exact {
            out.push(d);
            continue;
        }
        if let Some(&first) = by_id.get(&d.id) {
            errors.push(d.loc.error(format!(
                "duplicate resource `{}`: first declared at {}, declared again at {}\n\
                 hint: an id may be declared once per catalog",
                d.id, out[first].loc, d.loc
            )));
            continue;
        }
        if d.id.kind().is_path() {
            let path = d.id.name().to_owned();
            if let Some(&first) = by_path.get(&path) {
                let other = &out[first];
                errors.push(d.loc.error(format!(
                    "path `{path}` is managed twice: `{}` at {} and `{}` at {}\n\
                     hint: a path may be managed by one file, directory or symlink only",
                    other.id, other.loc, d.id, d.loc
                )));
                continue;
            }
            by_path.insert(path, out.len());
        }
        by_id.insert(d.id.clone(), out.len());
        out.push(d);
    }
    out
}

fn resolve(
    r: &Ref,
    field: &str,
    index: &BTreeMap<&ResourceId, usize>,
    errors: &mut Vec<Diagnostic>,
) -> Option<usize> {
    let id = match ResourceId::try_from(r.text.clone()) {
        Ok(id) => id,
        Err(_) if !r.exact => return None,
        Err(why) => {
            errors.push(
                r.loc
                    .error(format!("invalid reference in `{field}`: {why}")),
            );
            return None;
        }
    };
    match index.get(&id) {
        Some(&j) => Some(j),
        None if !r.exact => None,
        None => {
            errors.push(r.loc.error(format!(
                "`{field}` names `{id}`, which is not declared in this catalog\n\
                 hint: declare it in one of the node's roles, or fix the id (KIND:NAME)"
            )));
            None
        }
    }
}

/// Edges nobody writes: the ancestor directories of a path (nearest first;
/// the nearest managed one is used), and the user and groups a resource
/// names, a container's image archive and its bind-mount sources (used when
/// they are managed).
fn implicit_requires(spec: &Spec) -> (Vec<ResourceId>, Vec<ResourceId>) {
    let mut dirs = Vec::new();
    let mut out = Vec::new();
    let path = match spec {
        Spec::File(f) => Some(&f.path),
        Spec::Directory(d) => Some(&d.path),
        Spec::Symlink(s) => Some(&s.path),
        _ => None,
    };
    if let Some(path) = path {
        dirs.extend(ancestors(path).map(|p| ResourceId::new(Kind::Directory, p)));
    }
    let (owner, group) = match spec {
        Spec::File(f) => (f.owner.as_deref(), f.group.as_deref()),
        Spec::Directory(d) => (d.owner.as_deref(), d.group.as_deref()),
        Spec::User(u) => (None, u.group.as_deref()),
        Spec::Exec(e) => (e.user.as_deref(), None),
        _ => (None, None),
    };
    out.extend(owner.map(|o| ResourceId::new(Kind::User, o)));
    out.extend(group.map(|g| ResourceId::new(Kind::Group, g)));
    if let Spec::User(u) = spec {
        out.extend(u.groups.iter().map(|g| ResourceId::new(Kind::Group, g)));
    }
    if let Spec::Container(c) = spec {
        out.extend(container_paths(c));
    }
    (dirs, out)
}

/// The file of a container's `image_archive`, and the file, directory or
/// symlink at the source of each bind mount.
fn container_paths(c: &ContainerSpec) -> impl Iterator<Item = ResourceId> + '_ {
    let archive = c
        .image_archive
        .iter()
        .map(|path| ResourceId::new(Kind::File, path));
    let binds = c
        .volumes
        .iter()
        .filter_map(|v| match Mount::parse(v).ok()?.source {
            MountSource::Bind(path) => Some(path.to_string_lossy().into_owned()),
            MountSource::Volume(_) => None,
        })
        .flat_map(|path| {
            [Kind::File, Kind::Directory, Kind::Symlink].map(|kind| ResourceId::new(kind, &path))
        });
    archive.chain(binds)
}

/// `/a/b/c` -> `/a/b`, `/a`, `/`, nearest first.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut current = Some(path);
    std::iter::from_fn(move || {
        let p = current?;
        let parent = match p.rfind('/') {
            Some(0) if p.len() > 1 => "/",
            Some(0) | None => {
                current = None;
                return None;
            }
            Some(i) => &p[..i],
        };
        current = Some(parent);
        Some(parent)
    })
}

/// Kahn's algorithm with ties broken by id; a cycle is reported with its members.
fn topological(
    decls: &[Decl],
    requires: &[BTreeSet<usize>],
) -> Result<Vec<usize>, Vec<Diagnostic>> {
    let n = decls.len();
    let mut pending: Vec<usize> = requires.iter().map(BTreeSet::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, reqs) in requires.iter().enumerate() {
        for &j in reqs {
            dependents[j].push(i);
        }
    }
    let mut ready: BTreeSet<(&ResourceId, usize)> = (0..n)
        .filter(|&i| pending[i] == 0)
        .map(|i| (&decls[i].id, i))
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some((_, i)) = ready.pop_first() {
        order.push(i);
        for &k in &dependents[i] {
            pending[k] -= 1;
            if pending[k] == 0 {
                ready.insert((&decls[k].id, k));
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Every resource left waits on another one left: walk "requires" edges
    // from the smallest id until a resource repeats.
    let left = |i: usize| pending[i] > 0;
    let start = (0..n)
        .filter(|&i| left(i))
        .min_by_key(|&i| &decls[i].id)
        .expect("a resource is left");
    let mut walk = vec![start];
    let cycle = loop {
        let last = *walk.last().expect("walk is never empty");
        let next = requires[last]
            .iter()
            .copied()
            .filter(|&j| left(j))
            .min_by_key(|&j| &decls[j].id)
            .expect("a resource left requires another one left");
        if let Some(pos) = walk.iter().position(|&w| w == next) {
            break walk[pos..].to_vec();
        }
        walk.push(next);
    };
    // Print in "comes before" order, starting at the smallest id.
    let mut cycle: Vec<usize> = cycle.into_iter().rev().collect();
    let first = (0..cycle.len())
        .min_by_key(|&k| &decls[cycle[k]].id)
        .expect("cycle is not empty");
    cycle.rotate_left(first);
    let names: Vec<&str> = cycle
        .iter()
        .chain(cycle.first())
        .map(|&i| decls[i].id.as_str())
        .collect();
    Err(vec![decls[cycle[0]].loc.error(format!(
        "dependency cycle: {}\nhint: `a -> b` means a must come before b (require, before, notify, \
         subscribe, parent directories, owners, a container's image archive and bind mounts); remove one of these edges",
        names.join(" -> ")
    ))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_go_up_to_root() {
        assert_eq!(ancestors("/a/b/c").collect::<Vec<_>>(), ["/a/b", "/a", "/"]);
        assert_eq!(ancestors("/a").collect::<Vec<_>>(), ["/"]);
        assert_eq!(ancestors("/").count(), 0);
    }
}
