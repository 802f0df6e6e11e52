//! Schemas of bodies whose Rust type has no schema of its own: the wire
//! types of `drover-catalog` (which knows nothing of HTTP, so no `utoipa`
//! there) and the small objects that handlers build with `json!`.
//!
//! Nothing constructs these types; they only describe. The API tests keep
//! them honest: real `drover_catalog` values, serialized with every field
//! set, and the bodies the real routes answer must match them exactly.

use drover_catalog::model::Kind;
use utoipa::ToSchema;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Array, RefOr};

/// The body of `POST /api/v1/nodes/{name}/catalog` (`drover_catalog::CatalogRequest`).
#[derive(ToSchema)]
pub struct CatalogRequest {
    /// The node's facts, as `drover-agent facts` prints them (`hostname`,
    /// `os.id`, ...); the catalog's `when` clauses and templates see them.
    #[schema(value_type = Object, required = false)]
    pub facts: serde_json::Value,
    /// The environment (git branch) the agent asks for; a pin in
    /// `nodes.toml` wins over it, and the default environment applies
    /// without either.
    pub environment: Option<String>,
}

/// A node's compiled catalog: these exact bytes are what the
/// `drover-signature` header signs. File contents travel separately, by
/// hash, through the files route.
#[derive(ToSchema)]
pub struct Catalog {
    pub node: String,
    pub environment: String,
    /// The commit of the environment it was compiled from.
    pub commit: String,
    /// sha256 over the canonical resource list; the `ETag` of the catalog.
    pub version: String,
    /// In dependency order, each with its normalised `require` and
    /// `subscribe` edges (see catalog-format.md).
    #[schema(schema_with = resources)]
    pub resources: Vec<serde_json::Value>,
}

/// Resources are the kind-specific objects of catalog-format.md; the kinds
/// are listed from the catalog crate so the document cannot miss one.
fn resources() -> Array {
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let resource = ObjectBuilder::new()
        .description(Some(
            "One resource: `id`, `kind`, the kind's own fields (path, content \
             sha256, mode, ensure...) and the metaparameters `require`, \
             `subscribe`, `noop`...",
        ))
        .property(
            "id",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("`KIND:NAME`, e.g. `file:/etc/motd`")),
        )
        .required("id")
        .property(
            "kind",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(kinds)),
        )
        .required("kind")
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .build();
    Array::new(RefOr::T(Schema::Object(resource)))
}

/// A run report as the agent posts it (`drover_catalog::Report`), and as
/// `GET /api/v1/reports/{id}` returns it, byte for byte.
#[derive(ToSchema)]
pub struct Report {
    /// Unique per run (a UUID); the node posting a run_id it already stored
    /// again stores nothing. Scoped per node: another node's run_id is news.
    pub run_id: String,
    pub node: String,
    pub environment: String,
    pub commit: String,
    pub catalog_version: String,
    /// A dry run: nothing was changed.
    pub noop: bool,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub status: RunStatus,
    pub cached_catalog: CachedCatalog,
    /// Why the run could not use a fresh catalog, or why it stopped early.
    pub error: Option<String>,
    /// The server's compile error when it served the node's last good
    /// catalog because the current commit does not compile for it.
    pub catalog_error: Option<String>,
    #[schema(required = false)]
    pub agent_version: String,
    /// The server the run talked to: the first of the agent's server list
    /// that answered its catalog request.
    pub server: Option<String>,
    pub resources: Vec<ResourceReport>,
    /// The state of each replica of an app the node's catalog places on it
    /// (its container resources labelled `drover.app`), as the container
    /// engine saw them once the run converged; absent when the catalog has
    /// none, and from agents that predate apps.
    #[schema(required = false)]
    pub replicas: Vec<ReplicaReport>,
    /// `drover-agent run --tags`: the run converged only the resources with
    /// one of these tags (or ids) and what they require; absent for a whole
    /// run. Its replica states are not recorded.
    #[schema(required = false)]
    pub tags: Vec<String>,
    /// What the run cost and what it did, measured by the agent (zeros
    /// from agents that predate it).
    #[schema(required = false)]
    pub metrics: RunMetrics,
}

/// One replica of an app on the node (`drover_catalog::report::ReplicaReport`).
#[derive(ToSchema)]
pub struct ReplicaReport {
    /// The container resource's name (`APP-REPLICA-ID`).
    pub container: String,
    /// The app (its `drover.app` label).
    pub app: String,
    /// The replica's index in the app (its `drover.replica` label).
    pub replica: u32,
    /// The placement that put it on this node (its `drover.placement` label).
    pub placement: String,
    pub state: ReplicaState,
    /// When it entered `state`, as far as the engine tells: the container's
    /// start (`running`), the first probe of its current healthcheck streak
    /// (`healthy`, `unhealthy`) or, for an app with `health`, the first
    /// report that saw its probe's current verdict, its exit (`exited`);
    /// null when `missing`.
    #[schema(required = true)]
    pub since: Option<jiff::Timestamp>,
}

/// `running`: running without a healthcheck, or with one still starting;
/// `healthy`/`unhealthy`: running, as its app's `health` probe (made by
/// the agent at report time) says, else as its healthcheck says; `exited`: not
/// running; `missing`: in the catalog but no such container (a noop run,
/// a failed create).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ReplicaState {
    Running,
    Healthy,
    Unhealthy,
    Exited,
    Missing,
}

/// The run's own measurements (`drover_catalog::report::RunMetrics`).
#[derive(ToSchema)]
pub struct RunMetrics {
    /// The whole run, from start to the report being built (ms).
    pub duration_ms: f64,
    /// Gathering facts (ms); 0 when the phase did not happen.
    #[schema(required = false)]
    pub facts_ms: f64,
    /// Fetching (or loading, or compiling) the catalog and the file
    /// contents it references (ms).
    #[schema(required = false)]
    pub catalog_ms: f64,
    /// Converging, file content fetches excluded (ms).
    #[schema(required = false)]
    pub apply_ms: f64,
    #[schema(required = false)]
    pub resources: ResourceCounts,
    #[schema(required = false)]
    pub files: FileChecks,
}

/// How the run checked managed file contents (`drover_catalog::report::FileChecks`).
#[derive(ToSchema)]
pub struct FileChecks {
    /// Files whose content was read and hashed.
    pub hashed: u64,
    /// Files the agent's metadata cache vouched for without reading them.
    pub trusted: u64,
    /// The run ignored the cache and hashed every file (periodic full verification).
    pub full_verification: bool,
}

/// Resources per final status; `corrective` overlaps `changed` and `noop`.
#[derive(ToSchema)]
pub struct ResourceCounts {
    pub total: u64,
    pub unchanged: u64,
    pub changed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub noop: u64,
    pub corrective: u64,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum RunStatus {
    Unchanged,
    Changed,
    Failed,
}

/// `on_failure`: the server could not be reached or failed, and the agent
/// applied its last good catalog.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum CachedCatalog {
    NotUsed,
    OnFailure,
}

/// What happened to one resource.
#[derive(ToSchema)]
pub struct ResourceReport {
    /// `KIND:NAME`.
    pub id: String,
    pub status: ResourceStatus,
    /// The change repaired drift from a desired state that had not changed.
    #[schema(required = false)]
    pub corrective: bool,
    #[schema(required = false)]
    pub events: Vec<Event>,
    /// Unified diff of file content (absent for sensitive resources).
    pub diff: Option<String>,
    pub error: Option<String>,
    /// A refresh (restart, refreshonly exec) was sent to this resource.
    #[schema(required = false)]
    pub refreshed: bool,
    pub duration_ms: f64,
}

/// `skipped`: not tried because something it requires failed or was
/// skipped; `noop`: would change, but the run or resource is in noop.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ResourceStatus {
    Unchanged,
    Changed,
    Failed,
    Skipped,
    Noop,
}

/// One property that differed: `content`, `mode`, `owner`, `ensure`...
#[derive(ToSchema)]
pub struct Event {
    pub property: String,
    /// Null when the resource did not exist.
    #[schema(required = true)]
    pub previous: Option<String>,
    #[schema(required = true)]
    pub desired: Option<String>,
    pub message: Option<String>,
}

/// The answer to a posted report.
#[derive(ToSchema)]
pub struct ReportStored {
    pub run_id: String,
    /// False when this node already stored this run_id (the re-post changed
    /// nothing); another node's run ids never count.
    pub stored: bool,
}

/// What a new agent pins before it trusts the server.
#[derive(ToSchema)]
pub struct CaBundle {
    /// The CA certificate (PEM) that signs server, node and operator certificates.
    pub ca: String,
    /// The ed25519 public key (base64) that verifies `drover-signature`.
    pub catalog_signing_key: String,
}

/// A signed certificate for the node.
#[derive(ToSchema)]
pub struct CertificateSigned {
    #[schema(inline)]
    pub status: Signed,
    /// The node certificate (PEM).
    pub certificate: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Signed {
    Signed,
}

/// The request waits for an operator (`drover-server ca sign NAME`).
#[derive(ToSchema)]
pub struct CertificatePending {
    #[schema(inline)]
    pub status: Pending,
    /// sha256 of the waiting request's public key.
    pub fingerprint: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Pending {
    Pending,
}

/// The answer of the git hook.
#[derive(ToSchema)]
pub struct HookAnswer {
    /// A refresh that began after the call finished and succeeded within
    /// the wait; when true, the API already shows the new commits. False
    /// when it still runs (a failed one is a 502, not this answer).
    pub refreshed: bool,
}

/// Every error body (`AppError`).
#[derive(ToSchema)]
pub struct ErrorBody {
    /// What went wrong, lowercase; may end with a `hint:` line.
    pub error: String,
}

/// A catalog that does not compile, for a node without a last good one.
#[derive(ToSchema)]
pub struct CompileFailure {
    pub error: String,
    /// `file:line:col: message` lines.
    pub diagnostics: Vec<String>,
}
