//! The pieces of the OpenAPI 3.1 document of the HTTP API: its [`base`]
//! (info, tags, security schemes), the response sets routes share, and the
//! wire types (`wire`). The paths come from the routes themselves:
//! `crate::routes::api` registers each with its `#[utoipa::path]`, so a
//! route cannot be served without being described and the document cannot
//! list a route that is not served.

pub mod wire;

use utoipa::IntoResponses;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, Tag,
};

use wire::ErrorBody;

const DESCRIPTION: &str = "\
drover-server compiles one catalog per node from a git repository, serves it \
with the file contents it references, and stores the nodes' run reports.

Who may call what: node routes need the node's own client certificate (its \
name is the certificate's, never a header or a path); operator routes need an \
operator certificate or `Authorization: Bearer TOKEN` with a line of \
`operator_token_file` (GET routes also take the dashboard's login cookie); \
enrollment, `/healthz` and this document are open. A server started with \
`insecure_http` (development) authenticates nobody: node routes trust the \
path, operator routes refuse.

Every error is JSON `{\"error\": \"...\"}` with the status code.";

/// Everything but the paths: info, tags, security schemes.
pub fn base() -> OpenApi {
    let mtls = |description: &str| SecurityScheme::MutualTls {
        description: Some(description.to_owned()),
        deprecated: None,
        extensions: None,
    };
    let bearer = |description: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(description))
                .build(),
        )
    };
    let components = ComponentsBuilder::new()
        .security_scheme(
            "node_certificate",
            mtls("A node certificate signed by this server's CA (from enrollment); its name must equal the route's `{name}`."),
        )
        .security_scheme(
            "operator_certificate",
            mtls("An operator certificate signed by this server's CA (`drover-server ca operator NAME`)."),
        )
        .security_scheme(
            "operator_token",
            bearer("One line of the server's `operator_token_file`."),
        )
        .security_scheme(
            "operator_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::session::COOKIE,
                "Set by the dashboard's `/login` form; honoured on GET and HEAD only.",
            ))),
        )
        .security_scheme(
            "hook_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Hub-Signature-256",
                "GitHub's signed webhook: `sha256=` and the hex HMAC-SHA256 of the body under a line of the server's `hook_secret_file`; grants only the git hook.",
            ))),
        )
        .security_scheme(
            "hook_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Gitlab-Token",
                "GitLab's webhook token: a line of the server's `hook_secret_file`; grants only the git hook.",
            ))),
        )
        .security_scheme(
            "enrollment_token",
            bearer("A line of the server's `enrollment_token_file`: a request that carries it is signed at once; a wrong one is refused (403)."),
        )
        // `#[derive(IntoResponses)]` refers to its bodies' schemas without
        // registering them (the document test checks every `$ref`).
        .schema_from::<ErrorBody>()
        .schema_from::<wire::HookAnswer>()
        .build();
    let tag = |name: &str, description: &str| {
        let mut tag = Tag::new(name);
        tag.description = Some(description.to_owned());
        tag
    };
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("drover-server")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .license(Some(
                    LicenseBuilder::new()
                        .name(env!("CARGO_PKG_LICENSE"))
                        .identifier(Some(env!("CARGO_PKG_LICENSE")))
                        .build(),
                )),
        )
        .tags(Some([
            tag(
                "node",
                "What a node calls for itself, over its own certificate.",
            ),
            tag(
                "operator",
                "Read-only views of nodes, runs and environments.",
            ),
            tag("enrollment", "How a new node gets its certificate."),
            tag("meta", "Liveness, metrics, the git hook and this document."),
        ]))
        .components(Some(components))
        .build()
}

/// The document, shared by every request for it.
/// 401 and 403 of a route only node `{name}` itself may call.
#[derive(IntoResponses)]
pub enum NodeOnly {
    /// No client certificate.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Another node's certificate, or an operator's.
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// 401 and 403 of a route for node `{name}` itself and operators.
#[derive(IntoResponses)]
pub enum NodeOrOperator {
    /// No credential, or a bearer token that is not an operator token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Another node's certificate.
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// 401 and 403 of an operator route.
#[derive(IntoResponses)]
pub enum OperatorOnly {
    /// No credential, or a bearer token that is not an operator token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// A node certificate.
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// The server failed (the database, the CA files); logged with the cause.
#[derive(IntoResponses)]
#[response(status = 500)]
pub struct Internal(pub ErrorBody);

/// A body over the route's limit (16 MiB; one CSR for the certificate routes).
#[derive(IntoResponses)]
#[response(status = 413)]
pub struct TooLarge(pub ErrorBody);

/// `GET /healthz`.
#[derive(IntoResponses)]
pub enum Healthz {
    /// `ok` while the server serves and its database takes writes.
    #[response(status = 200, content_type = "text/plain")]
    Ok(String),
    /// The database does not take writes (full disk, broken file); the
    /// error says why.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// `GET /metrics` on the main listener.
#[derive(IntoResponses)]
pub enum Metrics {
    /// The Prometheus text format (version 0.0.4). A `metrics_listen`
    /// address serves the same without a credential.
    #[response(status = 200, content_type = "text/plain; version=0.0.4")]
    Ok(String),
    /// No credential, or a bearer token that is not an operator token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// A node certificate.
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// `POST /api/v1/hooks/git`.
#[derive(IntoResponses)]
pub enum GitHook {
    /// The refresh was requested; the body says whether it finished (and
    /// succeeded) within the wait (5 s).
    #[response(status = 202)]
    Accepted(wire::HookAnswer),
    /// No credential, a bearer token that is not an operator token, or a
    /// webhook whose signature or token is not the hook secret's.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// A node certificate (without a signed webhook).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// A webhook body over 1 MiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The refresh ran and failed (the git error is in the body); the
    /// previous commits stay in use.
    #[response(status = 502)]
    BadGateway(ErrorBody),
}
