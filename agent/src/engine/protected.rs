//! The agent's own files are not the catalog's to manage: a resource at or
//! inside the state directory or the run lock would let a catalog replace
//! the cached catalog, the pinned CA or the node's key, or break the lock
//! that keeps two runs apart. Such a resource fails before anything is read
//! or written.

use std::path::{Path, PathBuf};

use drover_catalog::model::Resource;

/// The error for `resource` when its path is at or under one of `protected`.
pub(super) fn refusal(resource: &Resource, protected: &[PathBuf]) -> Option<String> {
    if !resource.id.kind().is_path() {
        return None;
    }
    let path = Path::new(resource.id.name());
    let own = protected.iter().find(|p| path.starts_with(p))?;
    Some(format!(
        "refusing to manage {}: it is at or inside the agent's own {} \
         (its state and run lock are not the catalog's)\n\
         hint: manage another path, or move the agent's state with `state_dir` / `lock_file` in agent.toml",
        path.display(),
        own.display()
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use drover_catalog::model::{FileSpec, Spec};
    use drover_catalog::report::ResourceStatus;

    use super::*;
    use crate::engine::{EngineConfig, apply};
    use crate::resources::testing::MapSource;

    fn file(path: &Path) -> Resource {
        Resource::new(Spec::File(FileSpec::with_content(
            path.to_str().unwrap(),
            b"from the catalog\n",
        )))
    }

    #[test]
    fn paths_at_or_inside_the_state_dir_or_the_lock_are_refused() {
        let protected = [
            PathBuf::from("/var/lib/drover-agent"),
            PathBuf::from("/run/drover-agent.lock"),
        ];
        for path in [
            "/var/lib/drover-agent",
            "/var/lib/drover-agent/tls/key.pem",
            "/run/drover-agent.lock",
        ] {
            let error = refusal(&file(Path::new(path)), &protected)
                .unwrap_or_else(|| panic!("{path} was allowed"));
            assert!(
                error.contains(&format!("refusing to manage {path}")),
                "{error}"
            );
        }
        for path in [
            "/var/lib/drover-agent-other/x",
            "/var/lib",
            "/run/drover-agent.lock.d",
        ] {
            assert_eq!(refusal(&file(Path::new(path)), &protected), None, "{path}");
        }
    }

    #[test]
    fn a_catalog_cannot_overwrite_the_agents_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let key = state.join("tls/key.pem");
        fs_err::create_dir_all(key.parent().unwrap()).unwrap();
        fs_err::write(&key, "the node's key\n").unwrap();
        let elsewhere = dir.path().join("motd");
        let source = MapSource::with(&[b"from the catalog\n"]);
        let stop = AtomicBool::new(false);
        let cfg = EngineConfig {
            protected: vec![state.clone(), dir.path().join("run.lock")],
            partial: false,
            ..crate::engine::tests::config(&source, &stop, None)
        };
        let catalog = crate::engine::tests::catalog(vec![file(&key), file(&elsewhere)]);
        let applied = apply(&catalog, &cfg);
        let [refused, allowed] = applied.resources.as_slice() else {
            panic!("{:?}", applied.resources)
        };
        assert_eq!(refused.status, ResourceStatus::Failed);
        assert!(
            refused
                .error
                .as_deref()
                .unwrap()
                .contains("the agent's own"),
            "{refused:?}"
        );
        assert_eq!(fs_err::read_to_string(&key).unwrap(), "the node's key\n");
        assert_eq!(allowed.status, ResourceStatus::Changed, "{allowed:?}");
    }
}
