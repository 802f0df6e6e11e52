//! The operator commands' way to a running server: its URL (the
//! configuration's listen address by default), an operator token, and TLS
//! that trusts the server's CA and nothing else.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

/// How to reach the running server.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The server's URL [default: the listen address of the configuration, https]
    #[arg(long, value_name = "URL", global = true)]
    pub server: Option<String>,
    /// A file holding an operator token [default: DATA_DIR/operator-token]
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Plain HTTP, for a development server on loopback
    #[arg(long, global = true)]
    pub insecure_http: bool,
    /// Configuration file [default: /etc/drover/server.toml, may be missing]
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (the CA that signed the server's certificate, the token) [default: /var/lib/drover-server]
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

/// A path segment or query value, percent-encoded.
pub(super) fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// GETs `path` from the server as an operator; the body of a 200.
pub(super) fn get(args: &ServerArgs, path: &str) -> anyhow::Result<String> {
    Ok(request(args, reqwest::Method::GET, path, None)?.body)
}

/// GETs a page of a list: its body, and the path of the next page when
/// its `Link: <PATH>; rel="next"` header names one.
pub(super) fn get_page(args: &ServerArgs, path: &str) -> anyhow::Result<(String, Option<String>)> {
    let answer = request(args, reqwest::Method::GET, path, None)?;
    Ok((answer.body, answer.next))
}

/// POSTs `body` (JSON) to `path` as an operator; the body of a 200.
pub(super) fn post(args: &ServerArgs, path: &str, body: &str) -> anyhow::Result<String> {
    Ok(request(args, reqwest::Method::POST, path, Some(body.to_owned()))?.body)
}

/// DELETEs `path` as an operator; the body of a 200.
pub(super) fn delete(args: &ServerArgs, path: &str) -> anyhow::Result<String> {
    Ok(request(args, reqwest::Method::DELETE, path, None)?.body)
}

/// A 200's body and the path its `Link` header names as the next page.
struct Answer {
    body: String,
    next: Option<String>,
}

fn request(
    args: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<String>,
) -> anyhow::Result<Answer> {
    let config = super::server_config(&args.config, &args.data_dir, &None)?;
    let insecure = args.insecure_http || config.insecure_http;
    let base = match &args.server {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let mut listen = config.listen;
            if listen.ip().is_unspecified() {
                listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("{}://{listen}", if insecure { "http" } else { "https" })
        }
    };
    let token_file = args
        .token_file
        .clone()
        .unwrap_or_else(|| config.operator_token_file.clone());
    let token = fs_err::read_to_string(&token_file)
        .context("the operator token")?
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .with_context(|| format!("{} holds no token", token_file.display()))?
        .to_owned();
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30));
    if base.starts_with("https://") {
        builder = builder.use_preconfigured_tls(tls(&config.data_dir)?);
    }
    let client = builder.build()?;
    let url = format!("{base}{path}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut request = client.request(method, &url).bearer_auth(&token);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {base}\nhint: pass --server URL (and --insecure-http for a plain-HTTP development server)"))?;
        let status = response.status();
        let next = response
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_of);
        let body = response.text().await?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or(body);
            bail!("the server answered {status}: {message}");
        }
        Ok(Answer { body, next })
    })
}

/// `PATH` of `<PATH>; rel="next"`.
fn next_of(link: &str) -> Option<String> {
    let (target, params) = link.split_once(';')?;
    let path = target.trim().strip_prefix('<')?.strip_suffix('>')?;
    (params.trim() == "rel=\"next\"" && path.starts_with('/')).then(|| path.to_owned())
}

/// Trusts the server's CA (DATA_DIR/ca/ca.crt.pem) and nothing else.
fn tls(data_dir: &std::path::Path) -> anyhow::Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let path = data_dir.join("ca").join("ca.crt.pem");
    let ca = rustls_pki_types::CertificateDer::from_pem_file(&path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the server's CA at {}: {e}\nhint: pass --data-dir of the server, or --server with --insecure-http for a development server",
            path.display()
        )
    })?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca)?;
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_header_names_the_next_page_on_the_same_server_only() {
        assert_eq!(
            next_of("</api/v1/nodes?limit=2&after=web-1>; rel=\"next\"").as_deref(),
            Some("/api/v1/nodes?limit=2&after=web-1")
        );
        assert_eq!(next_of("<https://elsewhere/x>; rel=\"next\""), None);
        assert_eq!(next_of("</x>; rel=\"prev\""), None);
        assert_eq!(next_of("garbage"), None);
    }
}
