//! The secrets of `hook_secret_file` and the check of a forge's webhook:
//! GitHub's `X-Hub-Signature-256: sha256=HMAC-SHA256(secret, body)` or
//! GitLab's `X-Gitlab-Token: secret`, both compared in constant time.
//! They grant the git hook (`crate::routes::hook`) and nothing else.

use std::path::Path;

use anyhow::Context;
use axum::http::HeaderMap;
use ring::hmac;

/// The shortest secret the file may hold (as for tokens).
pub const MIN_SECRET_LEN: usize = 16;

/// The largest webhook body read (GitHub's push payloads are tens of KiB).
pub const HOOK_BODY_LIMIT: usize = 1024 * 1024;

/// GitHub's header: `sha256=` and the hex HMAC-SHA256 of the body.
pub const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
/// GitLab's header: the secret itself.
pub const GITLAB_TOKEN: &str = "x-gitlab-token";

/// The secrets of `hook_secret_file`, one per line (several while rotating).
pub struct HookSecrets {
    secrets: Vec<Vec<u8>>,
    /// A random key: GitLab tokens are compared as HMACs under it, so the
    /// comparison takes the same time whatever the bytes and lengths.
    compare: hmac::Key,
}

impl std::fmt::Debug for HookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HookSecrets({} secrets)", self.secrets.len())
    }
}

impl HookSecrets {
    /// Reads `path`: one secret per line, blank lines and `#` comments
    /// skipped, each at least [`MIN_SECRET_LEN`] characters.
    pub fn read(path: &Path) -> anyhow::Result<HookSecrets> {
        let text = fs_err::read_to_string(path).context("cannot read the hook secret")?;
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if lines.is_empty() || lines.iter().any(|l| l.len() < MIN_SECRET_LEN) {
            anyhow::bail!(
                "hook_secret_file {} must hold secrets of at least {MIN_SECRET_LEN} characters, one per line\nhint: write a long random one, e.g. `openssl rand -hex 32 > {}`, and give the same to the forge's webhook",
                path.display(),
                path.display()
            );
        }
        let compare = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        Ok(HookSecrets {
            secrets: lines.iter().map(|s| s.as_bytes().to_vec()).collect(),
            compare,
        })
    }

    /// Whether the request is a webhook signed with one of the secrets:
    /// `Ok` if it is, the reason (for a 401) if not.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
        if let Some(value) = headers.get(GITHUB_SIGNATURE) {
            let tag = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().strip_prefix("sha256="))
                .and_then(|hex_tag| hex::decode(hex_tag).ok())
                .ok_or("X-Hub-Signature-256 is not `sha256=` and hex digits")?;
            // `hmac::verify` compares in constant time.
            let signed = self.secrets.iter().any(|secret| {
                hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, secret), body, &tag).is_ok()
            });
            return if signed {
                Ok(())
            } else {
                Err(
                    "X-Hub-Signature-256 does not match the body signed with the hook secret"
                        .into(),
                )
            };
        }
        if let Some(value) = headers.get(GITLAB_TOKEN) {
            let given = hmac::sign(&self.compare, value.as_bytes().trim_ascii());
            let known = self
                .secrets
                .iter()
                .any(|secret| hmac::verify(&self.compare, secret, given.as_ref()).is_ok());
            return if known {
                Ok(())
            } else {
                Err("X-Gitlab-Token is not the hook secret".into())
            };
        }
        Err("no X-Hub-Signature-256 or X-Gitlab-Token header".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of GitHub's "Validating webhook deliveries" page.
    #[test]
    fn githubs_documented_example_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hook-secret");
        fs_err::write(&path, "It's a Secret to Everybody\n").unwrap();
        let secrets = HookSecrets::read(&path).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            GITHUB_SIGNATURE,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
                .parse()
                .unwrap(),
        );
        assert_eq!(secrets.verify(&headers, b"Hello, World!"), Ok(()));
        assert!(secrets.verify(&headers, b"Hello, World?").is_err());
        let mut gitlab = HeaderMap::new();
        gitlab.insert(GITLAB_TOKEN, "It's a Secret to Everybody".parse().unwrap());
        assert_eq!(secrets.verify(&gitlab, b""), Ok(()));
        gitlab.insert(GITLAB_TOKEN, "It's a Secret to Everybody!".parse().unwrap());
        assert!(secrets.verify(&gitlab, b"").is_err());
    }
}
