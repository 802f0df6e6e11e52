//! Package batching: a package converges together with every later package
//! whose requirements have already converged (or are in the batch), so a
//! catalog's packages normally change in one apt transaction.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use drover_catalog::report::ResourceStatus;
use drover_catalog::{Catalog, Resource, ResourceId, Spec};

use super::{EngineConfig, flags_for, is_failure};
use crate::resources::{self, Env, Outcome};

/// Converges the package at `index` together with every later package that
/// could go now (all it requires has converged, or is in the batch): one
/// apt transaction. The others' results wait in `batched` for their turn.
pub(super) fn converge_packages(
    catalog: &Catalog,
    index: usize,
    cfg: &EngineConfig<'_>,
    status: &HashMap<&ResourceId, ResourceStatus>,
    env: &mut Env<'_>,
    batched: &mut HashMap<usize, (Result<Outcome>, Duration)>,
) -> (Result<Outcome>, Duration) {
    let started = Instant::now();
    let batch = package_batch(&catalog.resources, index, status);
    let specs: Vec<_> = batch
        .iter()
        .map(|&i| {
            let resource = &catalog.resources[i];
            let Spec::Package(spec) = &resource.spec else {
                unreachable!("package_batch picks packages only")
            };
            (spec, flags_for(resource, cfg, status))
        })
        .collect();
    let results = resources::package::converge_batch(&specs, env);
    // One transaction: its time is shared evenly among its packages.
    let each = started.elapsed() / u32::try_from(batch.len()).unwrap_or(u32::MAX);
    let mut first = None;
    for (i, result) in batch.into_iter().zip(results) {
        if i == index {
            first = Some(result);
        } else {
            batched.insert(i, (result, each));
        }
    }
    (first.expect("the batch starts with `index`"), each)
}

/// `index` and the later packages whose requirements are all converged or in the batch.
fn package_batch(
    resources: &[Resource],
    index: usize,
    status: &HashMap<&ResourceId, ResourceStatus>,
) -> Vec<usize> {
    let mut members: HashSet<&ResourceId> = HashSet::new();
    let mut batch = Vec::new();
    for (i, r) in resources.iter().enumerate().skip(index) {
        if !matches!(r.spec, Spec::Package(_)) {
            continue;
        }
        let ready = r
            .meta
            .require
            .iter()
            .all(|d| members.contains(d) || status.get(d).is_some_and(|s| !is_failure(*s)));
        if ready {
            members.insert(&r.id);
            batch.push(i);
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use drover_catalog::model::{FileSpec, Meta, PackageEnsure, PackageSpec};

    use super::*;

    #[test]
    fn packages_batch_when_all_they_require_has_converged() {
        let package = |name: &str, require: &[&str]| Resource {
            meta: Meta {
                require: require
                    .iter()
                    .map(|s| ResourceId::try_from(s.to_string()).unwrap())
                    .collect(),
                ..Meta::default()
            },
            ..Resource::new(Spec::Package(PackageSpec {
                name: name.into(),
                ensure: PackageEnsure::Installed,
            }))
        };
        let resources = vec![
            package("a", &[]),
            Resource::new(Spec::File(FileSpec::with_content(
                "/etc/apt/sources.list.d/x.list",
                b"x",
            ))),
            package("b", &["package:a"]),
            package("c", &["file:/etc/apt/sources.list.d/x.list"]),
            package("d", &["package:c"]),
            package("e", &[]),
        ];
        let none = HashMap::new();
        assert_eq!(package_batch(&resources, 0, &none), [0, 2, 5]);
        let source_done: HashMap<&ResourceId, ResourceStatus> =
            [(&resources[1].id, ResourceStatus::Changed)].into();
        assert_eq!(package_batch(&resources, 3, &source_done), [3, 4, 5]);
        let source_failed: HashMap<&ResourceId, ResourceStatus> = [
            (&resources[0].id, ResourceStatus::Changed),
            (&resources[1].id, ResourceStatus::Failed),
        ]
        .into();
        assert_eq!(package_batch(&resources, 2, &source_failed), [2, 5]);
    }
}
