//! Apps: `apps/NAME.toml`, a container the operator asks for by count and
//! the scheduler places. An app is parsed once per commit into what the
//! scheduler needs ([`AppDemand`], nothing rendered: it is decided before
//! any node is) and the container fields as written, which are built per
//! node through the same [`Builder`] as a role's `[[container]]`, so every
//! check of the container kind applies and each replica sees its node's
//! context (`labels`, `facts`, `vars`).

mod discovery;
mod parse;
mod placed;

use std::collections::BTreeMap;

use serde::Serialize;
use toml::Spanned;

use crate::diagnostic::{Diagnostic, Loc, SourceFile};
use crate::model::{HttpProbe, Spec};
use crate::raw::{RawContainer, RawResource};
use crate::render::Renderer;
use crate::resources::{Builder, Decl};
use crate::schedule::{AppDemand, Placement};

pub(crate) use discovery::AppsContext;
pub(crate) use parse::parse_app;

/// One valid `apps/NAME.toml`.
#[derive(Debug, Clone)]
pub struct App {
    /// The file's stem.
    pub name: String,
    /// What the scheduler places.
    pub demand: AppDemand,
    pub health: Option<AppHealth>,
    pub disruption: Disruption,
    pub update: UpdatePolicy,
    /// The container fields as written, `name` left empty: a replica's
    /// name comes from its placement.
    pub(crate) container: RawContainer,
    pub(crate) source: SourceFile,
    /// `selector.roles` with their places, for `check`.
    pub(crate) selector_roles: Vec<(String, Loc)>,
}

/// `health`: how the control loop tells a replica is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppHealth {
    /// The path of an HTTP GET, starting with `/`; 2xx and 3xx are healthy.
    pub http: String,
    pub port: u16,
    /// Default 10.
    pub interval_secs: u64,
    /// Default 2.
    pub timeout_secs: u64,
}

/// `disruption`: what drains and updates keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Disruption {
    /// Healthy replicas kept at all times (at most `replicas`; default 0).
    pub min_available: u32,
}

/// `update`: how a new spec rolls out, with Nomad's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UpdatePolicy {
    /// Replicas replaced at once (at least 1; default 1).
    pub max_parallel: u32,
    /// Replicas of the new spec started first and watched (default 0).
    pub canary: u32,
    /// How long a new replica must stay healthy (default 10).
    pub min_healthy_secs: u64,
    /// How long it may take to get there (default 300; more than `min_healthy_secs`).
    pub healthy_deadline_secs: u64,
    /// Go back to the last good spec when the deadline passes (default false).
    pub auto_revert: bool,
}

impl Default for UpdatePolicy {
    fn default() -> UpdatePolicy {
        UpdatePolicy {
            max_parallel: 1,
            canary: 0,
            min_healthy_secs: 10,
            healthy_deadline_secs: 300,
            auto_revert: false,
        }
    }
}

/// What a compile needs of the fleet's placements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppsInput {
    /// The replicas placed on the node compiled; placements of other nodes
    /// are skipped, so the whole list may be passed.
    pub placed: Vec<Placement>,
    /// Every app's replicas, as templates see them in `apps.NAME.replicas`.
    /// An app of the repository missing here is seen with no replicas.
    pub discovery: BTreeMap<String, Vec<ReplicaView>>,
    /// App file bodies by spec hash, for replicas placed from a spec this
    /// commit no longer has (an update in progress, a reverted update):
    /// such a replica is built from its own spec, so it does not change
    /// until its turn comes. One missing here is built from this commit's.
    pub specs: BTreeMap<String, std::sync::Arc<str>>,
}

/// One replica as templates see it (`apps.todo.replicas[0].address`).
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct ReplicaView {
    pub replica: u32,
    pub node: String,
    /// The node's address, when known.
    pub address: Option<String>,
    /// The host ports it publishes.
    pub ports: Vec<u16>,
    /// `pending`, `starting`, `running`, `healthy`, `unhealthy` or `stopping`.
    pub state: String,
}

impl App {
    /// Parses the body of `apps/NAME.toml` (a stored spec of an earlier
    /// commit: see [`AppsInput::specs`]).
    pub fn parse(name: &str, body: &str) -> Result<App, Vec<Diagnostic>> {
        parse_app(&format!("apps/{name}.toml"), name, body.as_bytes())
    }

    /// The file's text, as its spec hash was taken of.
    pub fn body(&self) -> &str {
        self.source.text()
    }

    /// Whether its replicas are checked, by the container's own
    /// healthcheck or by the app's `health` probe (the agent's): without
    /// either, a running replica is as healthy as anyone can tell.
    pub fn has_healthcheck(&self) -> bool {
        self.container.healthcheck.is_some() || self.health.is_some()
    }

    /// The container of one replica: the app's fields, the placement's
    /// name, and the labels and tag that tie it back to the app.
    fn replica_container(&self, placement: &Placement) -> RawContainer {
        // Synthesized values point at the top of the app's file.
        let here = |value: String| Spanned::new(0..0, value);
        let mut container = self.container.clone();
        container.name = here(placement.container_name());
        for (key, value) in [
            ("drover.app", self.name.clone()),
            ("drover.replica", placement.replica.to_string()),
            ("drover.placement", placement.id.clone()),
        ] {
            let value = Spanned::new(0..0, toml::Value::String(value));
            container.labels.insert(key.to_owned(), value);
        }
        container.tags.push(here(format!("app:{}", self.name)));
        container
    }

    /// Builds one replica's container resource with `renderer`'s context
    /// (syntax only when it has none); errors point into the app's file.
    pub(crate) fn declare(
        &self,
        placement: &Placement,
        renderer: &Renderer,
        files: &BTreeMap<String, std::sync::Arc<[u8]>>,
    ) -> Result<Decl, Vec<Diagnostic>> {
        let mut builder = Builder {
            renderer,
            src: &self.source,
            files,
            errors: Vec::new(),
        };
        let raw = RawResource::Container(Box::new(self.replica_container(placement)));
        let decl = builder.build(&raw);
        builder.errors.sort_by_key(|e| (e.line, e.col));
        match decl {
            Some(mut decl) if builder.errors.is_empty() => {
                // `health` rides on the replica's container for its agent
                // to probe; it is not a container field, so it is set here.
                if let (Spec::Container(spec), Some(health)) = (&mut decl.spec, &self.health) {
                    spec.probe = Some(HttpProbe {
                        path: health.http.clone(),
                        port: health.port,
                        interval_secs: health.interval_secs,
                        timeout_secs: health.timeout_secs,
                    });
                }
                Ok(decl)
            }
            _ => Err(builder.errors),
        }
    }
}
