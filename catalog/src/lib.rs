//! drover's pure core: the catalog model, and parsing, validation and
//! compilation of a catalog repository held in memory.
//!
//! Invariant: this crate does no I/O and knows nothing of HTTP, git or the
//! local system. The server hands it files; the agent hands it nothing but a
//! compiled [`Catalog`].
//!
//! Parsing has two stages: [`raw`] mirrors the TOML (with spans), then
//! classification, data, rendering and the dependency graph produce the
//! validated [`Catalog`].
//!
//! Choices where the format spec is silent:
//! - `nodes.toml`: `facts` keys are dotted paths (quoted `"os.id"` or a
//!   nested table); values match when equal as values or as strings. The
//!   last matching entry with `environment` sets the pin. `labels` values
//!   must be strings; `taints` are `KEY=VALUE` or `KEY`, both parts
//!   non-empty and of `[A-Za-z0-9._/-]` (tolerations likewise). Labels are
//!   also seen by data hierarchy levels (`zones/{{ labels.zone }}`; a
//!   missing label skips the level, like a missing fact).
//! - Roles: includes come before their includer; [`Compiled::roles`] lists
//!   the expanded roles in that order. A later role's `[vars]` override an
//!   earlier one's, and a hierarchy level naming `{{ role }}` ranks later
//!   roles as more specific.
//! - A hierarchy level that renders with an empty segment (a missing fact)
//!   is skipped.
//! - `source`, `template` and `unit_template` are repo paths starting with
//!   `files/` or `templates/`; `{% include %}` names are relative to
//!   `templates/` (the prefix is optional) and never reach outside it.
//!   Template files keep their trailing newline and are never HTML-escaped.
//! - A broken role or data file fails only the nodes that use it;
//!   [`Repository::parse`] fails only on `drover.toml` and `nodes.toml`.
//! - Containers: `name`, `image`, `ports`, `volumes` and `restart` are
//!   checked with Docker's own rules ([`container`]) when the catalog is
//!   compiled, so a node never gets a value Docker would refuse. A container
//!   requires the managed file of its `image_archive` and the managed file or
//!   directory at the source of each bind mount.
//! - Sensitive values: in `data/**.toml` and role `[vars]`, an inline table
//!   whose only key is `sensitive`, `password = { sensitive = "s3cret" }`,
//!   is the string `"s3cret"` to templates and strings (it must be a
//!   string). A resource becomes sensitive (as with `sensitive = true`:
//!   values shown as hashes only in reports, logs and diffs) when rendering
//!   any of its fields, its `content` or its template read such a value
//!   (through an include, a loop, a filter or a test too), or when its
//!   fields or file content hold a sensitive value's text anyway (the same
//!   text given plainly elsewhere, a static `source` file). Such a value is
//!   a leaf of the data hierarchy: a more specific level replaces it whole.
//!   It may not be used in a resource's `path` or `name` (the id is shown
//!   everywhere), and compile errors print `(sensitive)` in its place. The
//!   compiled catalog itself holds the values the node needs.
//! - Apps (`apps/NAME.toml`, [`App`]): NAME must match
//!   `[a-z0-9][a-z0-9_.-]*`. `ensure` is not a field (a replica runs;
//!   `replicas = 0` stops an app), nor are `require`/`before`/`notify`/
//!   `subscribe` (a replica may land on any node, whose other resources the
//!   app cannot know); `noop`, `sensitive` and `tags` are, and every replica
//!   is tagged `app:NAME`. Only the container fields are rendered, per node;
//!   what the scheduler reads (`replicas`, `requests`, `selector`, `spread`,
//!   `tolerations`, host ports) is read as written, so in `ports` only
//!   HOST_IP may be a template (`{{ labels.ip }}:8080:80`). Labels
//!   `drover.*` are reserved. Defaults: `replicas = 1`, requests 0,
//!   `health` interval 10 s and timeout 2 s, `disruption.min_available = 0`,
//!   `update` as Nomad's (`max_parallel = 1`, `canary = 0`,
//!   `min_healthy_secs = 10`, `healthy_deadline_secs = 300` and more than
//!   it, `auto_revert = false`). `spec_hash` is the sha256 of the file, so
//!   any edit re-places (the `stay` priority keeps the node). A selector
//!   role that no node gets is an error of `check` only: the app stays
//!   valid, pending with its reason. [`Repository::compile_with`] compiles
//!   the placements given for the node (others are skipped); a placement of
//!   an app missing or broken fails that node only. Templates see
//!   `apps.NAME.replicas` ([`ReplicaView`]s), an empty list for an app of
//!   the repository with none; [`Compiled::reads_apps`] says whether any
//!   render read `apps`.

#![deny(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the pure core does no I/O: callers decide what is printed"
)]

pub mod container;
pub mod csr;
pub mod model;
pub mod names;
pub mod report;
pub mod rollout;
pub mod schedule;
pub mod sha;
pub mod signed;

mod apps;
mod check;
mod classify;
mod compile;
mod data;
mod diagnostic;
mod diff;
mod graph;
mod kinds;
mod lookup;
pub mod raw;
mod render;
mod repo;
mod resources;
mod secret;
mod values;

pub use apps::{App, AppHealth, AppsInput, Disruption, ReplicaView, UpdatePolicy};
pub use check::check;
pub use classify::{Classification, NodeProfile};
pub use compile::{CompileRequest, Compiled};
pub use diagnostic::{Diagnostic, Diagnostics};
pub use diff::{CatalogDiff, ResourceChange, diff_catalogs};
pub use lookup::{Lookup, LookupStep};
pub use model::{Catalog, CatalogRequest, Facts, Mode, Resource, ResourceId, Spec, sha256_hex};
pub use render::TEMPLATE_FUEL;
pub use repo::{DEFAULT_HIERARCHY, RepoFiles, Repository};
pub use report::{Report, ResourceReport};
