//! `GET /`: a small server-rendered page of nodes and environment errors (no JS).

use std::fmt::Write;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::auth::Caller;
use crate::db;
use crate::error::AppError;
use crate::routes::operator::environments_view;
use crate::state::AppState;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn opt(s: Option<&str>) -> String {
    escape(s.unwrap_or("-"))
}

/// `GET /`: operators only; a browser without a credential is sent to `/login`.
pub async fn index(State(state): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    if caller.require_operator().is_err() {
        return Ok(Redirect::to("/login").into_response());
    }
    let nodes = db::nodes(&state.db).await?;
    let envs = environments_view(&state).await?;
    let mut h = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>drover</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}\
         .failed{color:#b00}.changed{color:#a60}.unchanged{color:#070}pre{margin:0}</style>\
         </head><body>\n<h1>drover</h1>\n",
    );
    let _ = writeln!(h, "<h2>Nodes ({})</h2>", nodes.len());
    if nodes.is_empty() {
        h.push_str("<p>No node has asked for a catalog yet.</p>\n");
    } else {
        h.push_str(
            "<table><tr><th>node</th><th>last status</th><th>environment</th>\
             <th>catalog version</th><th>last run</th><th>compile error</th></tr>\n",
        );
        for n in &nodes {
            let status = n.last_status.as_deref().unwrap_or("unknown");
            let version = n.catalog_version.as_deref().map(|v| &v[..v.len().min(12)]);
            let error = n
                .compile_error
                .as_ref()
                .map_or_else(|| "-".to_owned(), |e| escape(&e.diagnostics.join("\n")));
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td><code>{}</code></td>\
                 <td>{}</td><td><pre>{}</pre></td></tr>",
                escape(&n.name),
                escape(status),
                escape(status),
                opt(n.environment.as_deref()),
                opt(version),
                opt(n.last_run_at.as_deref()),
                error,
            );
        }
        h.push_str("</table>\n");
    }
    let _ = writeln!(
        h,
        "<h2>Environments</h2>\n<p>source: {}, default: {}, last refresh: {}</p>",
        envs.source,
        escape(&envs.default_environment),
        envs.refreshed_at
            .map_or_else(|| "never".to_owned(), |t| t.to_string())
    );
    if let Some(e) = &envs.refresh_error {
        let _ = writeln!(h, "<p class=\"failed\">refresh failed: {}</p>", escape(e));
    }
    h.push_str("<table><tr><th>environment</th><th>commit</th><th>errors</th></tr>\n");
    for env in &envs.environments {
        let mut errors: Vec<String> = env.parse_errors.clone();
        for ce in &env.compile_errors {
            errors.extend(
                ce.error
                    .diagnostics
                    .iter()
                    .map(|d| format!("{}: {d}", ce.node)),
            );
        }
        let errors = if errors.is_empty() {
            "-".to_owned()
        } else {
            escape(&errors.join("\n"))
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td><pre class=\"failed\">{errors}</pre></td></tr>",
            escape(&env.name),
            escape(&env.commit),
        );
    }
    h.push_str("</table>\n</body></html>\n");
    Ok(Html(h).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            super::escape("<b a='1'>&\"</b>"),
            "&lt;b a=&#39;1&#39;&gt;&amp;&quot;&lt;/b&gt;"
        );
    }
}
