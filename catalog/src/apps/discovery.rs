//! `apps` in templates: service discovery from the live placements.
//!
//! The server recompiles a node when placements change only if its catalog
//! read `apps`, so the read is recorded where it happens, as `secret.rs`
//! records reads of sensitive values: `apps` is a template object whose
//! lookups, iteration and length set a flag. A template that never names
//! `apps` never touches the object, so the flag says exactly whether the
//! catalog depends on placements.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use minijinja::Value;
use minijinja::value::{Enumerator, Object, ObjectRepr};
use serde::Serialize;

use super::ReplicaView;

/// The `apps` value of a node's template context and the flag its reads set.
#[derive(Debug, Clone)]
pub(crate) struct AppsContext {
    pub value: Value,
    read: Arc<AtomicBool>,
}

impl AppsContext {
    /// Every app of `discovery`, and every app of the repository (`names`)
    /// with no replicas when `discovery` lacks it, so a template written
    /// for an app not placed yet renders an empty list.
    pub(crate) fn new<'a>(
        names: impl Iterator<Item = &'a String>,
        discovery: &BTreeMap<String, Vec<ReplicaView>>,
    ) -> AppsContext {
        #[derive(Serialize)]
        struct AppView<'a> {
            replicas: &'a [ReplicaView],
        }
        let mut apps: BTreeMap<String, Value> = names
            .map(|name| {
                (
                    name.clone(),
                    Value::from_serialize(AppView { replicas: &[] }),
                )
            })
            .collect();
        for (name, replicas) in discovery {
            apps.insert(name.clone(), Value::from_serialize(AppView { replicas }));
        }
        let read = Arc::new(AtomicBool::new(false));
        let object = TrackedApps {
            apps,
            read: Arc::clone(&read),
        };
        AppsContext {
            value: Value::from_object(object),
            read,
        }
    }

    /// Whether any template or string read `apps`.
    pub(crate) fn was_read(&self) -> bool {
        self.read.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct TrackedApps {
    apps: BTreeMap<String, Value>,
    read: Arc<AtomicBool>,
}

impl TrackedApps {
    fn mark(&self) {
        self.read.store(true, Ordering::Relaxed);
    }
}

impl Object for TrackedApps {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.mark();
        self.apps.get(key.as_str()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mark();
        Enumerator::Values(self.apps.keys().map(|k| Value::from(k.as_str())).collect())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        self.mark();
        Some(self.apps.len())
    }
}

#[cfg(test)]
mod tests {
    use minijinja::{Environment, context};

    use super::*;

    fn render(template: &str, apps: &AppsContext) -> String {
        Environment::new()
            .render_str(template, context! { apps => apps.value.clone(), x => 1 })
            .unwrap()
    }

    #[test]
    fn every_way_of_reading_apps_is_recorded_and_nothing_else_is() {
        let names = ["db".to_owned(), "todo".to_owned()];
        let discovery = BTreeMap::from([(
            "todo".to_owned(),
            vec![ReplicaView {
                replica: 0,
                node: "web-1".into(),
                address: Some("10.0.0.5".into()),
                ports: vec![8080],
                state: "healthy".into(),
            }],
        )]);
        for (template, expected) in [
            (
                "{% for r in apps.todo.replicas %}{{ r.address }}:{{ r.ports[0] }}{% endfor %}",
                "10.0.0.5:8080",
            ),
            ("{{ apps.db.replicas | length }}", "0"),
            ("{% for name in apps %}{{ name }} {% endfor %}", "db todo "),
            ("{{ apps | length }}", "2"),
            ("{{ 'yes' if apps else 'no' }}", "yes"),
        ] {
            let apps = AppsContext::new(names.iter(), &discovery);
            assert_eq!(render(template, &apps), expected, "{template}");
            assert!(apps.was_read(), "{template} read apps");
        }
        let apps = AppsContext::new(names.iter(), &discovery);
        assert_eq!(render("{{ x }}", &apps), "1");
        assert!(!apps.was_read(), "a template without `apps` reads nothing");
    }
}
