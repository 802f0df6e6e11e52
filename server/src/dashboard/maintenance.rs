//! The node page's operator buttons: `POST /nodes/{name}/cordon`,
//! `/uncordon` and `/drain`, HTML forms that act with the dashboard
//! session and go back to the node page (303).
//!
//! A cookie alone never changes anything (`crate::auth` honours it on GET
//! only), so these routes check the session themselves, and each form
//! carries a token bound to it: HMAC-SHA256 keyed with the session id (a
//! secret only the browser holds, in an `HttpOnly` cookie) over a fixed
//! label. A page elsewhere can make the browser send the cookie but cannot
//! read the token, and the database, which keeps only the id's sha256,
//! cannot forge one. On top of that a POST the browser marks as cross-site
//! (`Sec-Fetch-Site`, or an `Origin` that is not this server) is refused
//! before anything is read.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use ring::hmac;
use serde::Deserialize;

use crate::apps::view::NodeReplica;
use crate::db::drains::Drain;
use crate::error::AppError;
use crate::fleet::urlencode;
use crate::session;
use crate::state::AppState;

/// What the token signs: a new label (say, for a new kind of form) makes
/// every token of the old one useless for it.
const LABEL: &[u8] = b"drover dashboard form v1";

/// The form token of session `id`.
pub(super) fn token(session_id: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_id.as_bytes());
    hex::encode(hmac::sign(&key, LABEL).as_ref())
}

/// Whether `token` is session `id`'s (compared in constant time).
pub(super) fn token_matches(session_id: &str, token: &str) -> bool {
    let Ok(tag) = hex::decode(token.trim()) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_id.as_bytes());
    hmac::verify(&key, LABEL, &tag).is_ok()
}

/// The session id of the request's cookie, if there is one.
pub(super) fn session_id(headers: &HeaderMap) -> Option<&str> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    session::from_cookies(cookies)
}

/// Why a POST is not from one of this server's own pages, if it is not:
/// a browser says so in `Sec-Fetch-Site`, and in `Origin` (which must name
/// the host the request was sent to). A client that sends neither (not a
/// browser) still needs the session and its token.
pub(super) fn cross_site(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        if site != "same-origin" {
            return Some(format!(
                "the browser says this request comes from another site (Sec-Fetch-Site: {site})"
            ));
        }
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("?");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let authority = origin.split_once("://").map(|(_, authority)| authority);
    if authority.is_some() && authority == host {
        None
    } else {
        Some(format!(
            "the request comes from {origin}, not from this server's pages"
        ))
    }
}

pub(super) fn forbidden(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "403 forbidden: {why}\n\
             hint: use the buttons of the node page of this dashboard, after signing in\n"
        ),
    )
        .into_response()
}

/// A button's form.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ActionForm {
    #[serde(default)]
    token: String,
    /// Drain only: seconds until what is left stops; empty for none.
    #[serde(default)]
    deadline_secs: String,
}

/// What a node page's form asks for: the last segment of its route.
enum Action {
    Cordon,
    Uncordon,
    Drain,
}

impl Action {
    fn parse(segment: &str) -> Option<Action> {
        match segment {
            "cordon" => Some(Action::Cordon),
            "uncordon" => Some(Action::Uncordon),
            "drain" => Some(Action::Drain),
            _ => None,
        }
    }
}

/// `POST /nodes/{name}/cordon|uncordon|drain`: checks the origin, the
/// session and its token, in that order, then does the action as the API
/// route would and goes back to the node page.
pub(super) async fn act(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Some(action) = Action::parse(&action) else {
        return Err(AppError::NotFound(format!(
            "no action `{action}` on a node (cordon, uncordon or drain)"
        )));
    };
    if let Some(why) = cross_site(&headers, &uri) {
        return Ok(forbidden(&why));
    }
    let Some(id) = session_id(&headers) else {
        return Ok(Redirect::to("/login").into_response());
    };
    if !session::is_open(&state.db, id).await? {
        return Ok(Redirect::to("/login").into_response());
    }
    let Form(form) = form.map_err(|e| AppError::BadRequest(format!("invalid form: {e}")))?;
    if form.token.is_empty() {
        return Ok(forbidden("the form carries no token"));
    }
    if !token_matches(id, &form.token) {
        return Ok(forbidden(
            "the form's token is not this session's (reload the node page: it may be from an older session)",
        ));
    }
    let found = match action {
        Action::Cordon => crate::db::drains::set_cordon(&state.db, &name, true).await?,
        Action::Uncordon => crate::db::drains::set_cordon(&state.db, &name, false).await?,
        Action::Drain => {
            let deadline = deadline_at_us(&form.deadline_secs)?;
            crate::db::drains::start(&state.db, &name, deadline).await?
        }
    };
    if !found {
        return Err(AppError::NotFound(format!("unknown node `{name}`")));
    }
    state.apps.wake_control.notify_one();
    Ok(Redirect::to(&format!("/nodes/{}", urlencode(&name))).into_response())
}

/// The drain deadline of the form's `deadline_secs` (empty: none), in
/// microseconds since the epoch.
fn deadline_at_us(text: &str) -> Result<Option<i64>, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let secs: u64 = text.parse().map_err(|_| {
        AppError::BadRequest(format!(
            "invalid drain deadline `{text}` (hint: a whole number of seconds, or empty for none)"
        ))
    })?;
    Ok(Some(crate::db::drains::deadline_in(secs)))
}

/// The node page's maintenance section.
pub(super) struct MaintenanceView {
    pub cordoned: bool,
    pub drain: Option<DrainView>,
    pub replicas: Vec<ReplicaRow>,
    /// The form token; none when the page was opened without a session
    /// (an operator certificate or token), whose buttons could not work.
    pub token: Option<String>,
    pub cordon_action: String,
    pub uncordon_action: String,
    pub drain_action: String,
}

pub(super) struct DrainView {
    pub state: String,
    pub status: String,
    pub started_at: String,
    pub deadline: String,
    /// Whether it still moves replicas (a Drain button would start it again).
    pub active: bool,
}

pub(super) struct ReplicaRow {
    pub app: String,
    pub app_href: String,
    pub environment: String,
    pub index: u32,
    pub container: String,
    pub state: String,
}

impl MaintenanceView {
    pub(super) fn new(
        name: &str,
        cordoned: bool,
        drain: Option<&Drain>,
        replicas: &[NodeReplica],
        session_id: Option<&str>,
    ) -> MaintenanceView {
        let base = format!("/nodes/{}", urlencode(name));
        MaintenanceView {
            cordoned,
            drain: drain.map(|d| DrainView {
                state: d.state.clone(),
                status: d.status.clone(),
                started_at: super::format::when(&d.started_at),
                deadline: d
                    .deadline_at_us
                    .and_then(|us| jiff::Timestamp::from_microsecond(us).ok())
                    .map_or_else(
                        || "none".to_owned(),
                        |t| super::format::when(&t.to_string()),
                    ),
                active: d.state == crate::db::drains::DRAINING,
            }),
            replicas: replicas
                .iter()
                .map(|r| ReplicaRow {
                    app_href: format!(
                        "/apps/{}?environment={}",
                        urlencode(&r.app),
                        urlencode(&r.environment)
                    ),
                    app: r.app.clone(),
                    environment: r.environment.clone(),
                    index: r.index,
                    container: r.container.clone(),
                    state: r.state.clone(),
                })
                .collect(),
            token: session_id.map(token),
            cordon_action: format!("{base}/cordon"),
            uncordon_action: format!("{base}/uncordon"),
            drain_action: format!("{base}/drain"),
        }
    }

    /// Cordoned or drained: "in maintenance" until uncordoned.
    pub(super) fn in_maintenance(&self) -> bool {
        self.cordoned || self.drain.is_some()
    }

    pub(super) fn drain_active(&self) -> bool {
        self.drain.as_ref().is_some_and(|d| d.active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_belongs_to_its_session_only() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        assert!(token_matches(&a, &token(&a)));
        assert!(!token_matches(&b, &token(&a)));
        assert!(!token_matches(&a, ""));
        assert!(!token_matches(&a, "not hex"));
        // Not the digest the database keeps of the id.
        assert_ne!(
            token(&a),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(a.as_bytes()))
        );
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn only_same_origin_posts_pass() {
        let uri: Uri = "/nodes/web-1/cordon".parse().unwrap();
        let host = ("host", "drover.example:8443");
        for ok in [
            vec![host],
            vec![host, ("sec-fetch-site", "same-origin")],
            vec![host, ("origin", "https://drover.example:8443")],
        ] {
            assert_eq!(cross_site(&headers(&ok), &uri), None, "{ok:?}");
        }
        for refused in [
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
            vec![host, ("origin", "https://evil.example")],
            vec![host, ("origin", "null")],
            vec![("origin", "https://drover.example:8443")],
        ] {
            assert!(
                cross_site(&headers(&refused), &uri).is_some(),
                "{refused:?}"
            );
        }
    }
}
