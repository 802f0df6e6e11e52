//! `apps/NAME.toml` to an [`App`]. What the scheduler reads (replicas,
//! requests, selector, spread, tolerations, host ports) is checked here,
//! once per commit, and never rendered: placement is decided before any
//! node's context exists. The container fields are only kept; they are
//! checked when built for a node, or syntax-only by `check`.

use std::ops::Range;

use toml::Spanned;

use super::{App, AppHealth, Disruption, UpdatePolicy};
use crate::container::PortMapping;
use crate::diagnostic::{Diagnostic, Loc, SourceFile};
use crate::model::sha256_hex;
use crate::raw::{RawApp, RawContainer, RawHealth, RawRequests, RawSelector, RawUpdate, S, V};
use crate::render::has_syntax;
use crate::repo::{flatten_fact, parse_toml};
use crate::schedule::{AppDemand, HostPort, Resources, Selector};
use crate::values;

/// The labels drover sets on every replica.
const RESERVED_LABELS: &str = "drover.";

/// Parses one app file; `name` is its stem.
pub(crate) fn parse_app(path: &str, name: &str, bytes: &[u8]) -> Result<App, Vec<Diagnostic>> {
    if !valid_name(name) {
        return Err(vec![Diagnostic::file(
            path,
            format!(
                "`{name}` is not a valid app name: it starts the name of every replica's \
                 container, so it must match [a-z0-9][a-z0-9_.-]*\n\
                 hint: rename the file to apps/{}.toml",
                suggest_name(name)
            ),
        )]);
    }
    let (source, raw) = parse_toml::<RawApp>(path, bytes).map_err(|e| vec![e])?;
    let mut f = Fields {
        src: &source,
        errors: Vec::new(),
    };
    let replicas = f.int(&raw.replicas, "replicas", 0, u32::MAX.into());
    let replicas = replicas.map_or(1, |n| n as u32);
    let requests = raw
        .requests
        .as_ref()
        .map(|r| f.requests(r))
        .unwrap_or_default();
    let host_ports = f.host_ports(&raw.ports);
    let (selector, selector_roles) = raw
        .selector
        .as_ref()
        .map(|s| f.selector(s))
        .unwrap_or_default();
    let spread = raw.spread.as_ref().map(|s| {
        if s.get_ref().trim().is_empty() {
            f.fail(
                s.span(),
                "`spread` must name a node label, e.g. spread = \"zone\"",
            );
        }
        s.get_ref().clone()
    });
    let tolerations = f.tolerations(&raw.tolerations);
    let health = raw.health.as_ref().and_then(|h| f.health(h));
    let min_available = raw.disruption.as_ref().and_then(|d| {
        let n = f.int(
            &d.min_available,
            "disruption.min_available",
            0,
            u32::MAX.into(),
        )?;
        let at = d.min_available.as_ref().map(Spanned::span)?;
        if n > i64::from(replicas) {
            f.fail(
                at,
                format!(
                    "`disruption.min_available` is {n}, more than the {replicas} replicas\n\
                     hint: drains and updates keep this many healthy; it can be at most `replicas`"
                ),
            );
        }
        Some(n as u32)
    });
    let update = raw.update.as_ref().map(|u| f.update(u)).unwrap_or_default();
    f.reserved_labels(&raw);
    if !f.errors.is_empty() {
        let mut errors = f.errors;
        errors.sort_by_key(|e| (e.line, e.col));
        return Err(errors);
    }
    Ok(App {
        name: name.to_owned(),
        demand: AppDemand {
            name: name.to_owned(),
            replicas,
            spec_hash: sha256_hex(bytes),
            requests,
            host_ports,
            selector,
            spread,
            tolerations,
        },
        health,
        disruption: Disruption {
            min_available: min_available.unwrap_or(0),
        },
        update,
        container: container_fields(raw),
        source,
        selector_roles,
    })
}

/// The container fields of an app as a role's `[[container]]` (the name
/// is set per replica).
fn container_fields(raw: RawApp) -> RawContainer {
    RawContainer {
        name: Spanned::new(0..0, String::new()),
        image: raw.image,
        image_archive: raw.image_archive,
        ensure: None,
        command: raw.command,
        entrypoint: raw.entrypoint,
        env: raw.env,
        ports: raw.ports,
        volumes: raw.volumes,
        restart: raw.restart,
        labels: raw.labels,
        user: raw.user,
        network: raw.network,
        memory: raw.memory,
        cpus: raw.cpus,
        healthcheck: raw.healthcheck,
        stop_timeout: raw.stop_timeout,
        require: Vec::new(),
        before: Vec::new(),
        notify: Vec::new(),
        subscribe: Vec::new(),
        noop: raw.noop,
        sensitive: raw.sensitive,
        tags: raw.tags,
    }
}

/// `[a-z0-9][a-z0-9_.-]*`: a prefix of a Docker container name, lowercase
/// so that `Todo` and `todo` cannot both exist.
fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
}

fn suggest_name(name: &str) -> String {
    let lowered: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '.' | '-' => c,
            _ => '-',
        })
        .collect();
    let trimmed = lowered.trim_start_matches(['_', '.', '-']);
    match trimmed.is_empty() {
        true => "app".to_owned(),
        false => trimmed.to_owned(),
    }
}

/// The host port a `ports` entry publishes, read without rendering: the
/// scheduler reserves it before any node renders the app, so only HOST_IP
/// may be a template (`{{ labels.ip }}:8080:80`).
fn host_port(entry: &str) -> Result<Option<HostPort>, String> {
    let probe = if has_syntax(entry) {
        // From the right: CONTAINER_PORT[/PROTO], HOST_PORT, then the rest.
        let mut parts = entry.rsplitn(3, ':');
        let container = parts.next().unwrap_or_default();
        let host = parts.next();
        let ip = parts.next();
        match (ip, host) {
            (Some(ip), Some(host))
                if has_syntax(ip) && !has_syntax(host) && !has_syntax(container) =>
            {
                format!("0.0.0.0:{host}:{container}")
            }
            _ => {
                return Err(format!(
                    "port `{entry}` has a template in its HOST_PORT or CONTAINER_PORT: the \
                     scheduler reserves an app's host ports before any node renders it\n\
                     hint: write the ports as numbers; only HOST_IP may be a template, \
                     e.g. \"{{{{ labels.ip }}}}:8080:80\""
                ));
            }
        }
    } else {
        entry.to_owned()
    };
    let mapping = PortMapping::parse(&probe).map_err(|e| e.replace(&probe, entry))?;
    Ok(mapping.host_port.map(|port| HostPort {
        port,
        protocol: mapping.protocol.to_string(),
    }))
}

/// The fields of one app file, checked one by one; every error is kept.
struct Fields<'a> {
    src: &'a SourceFile,
    errors: Vec<Diagnostic>,
}

impl Fields<'_> {
    fn fail(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push(self.src.span(&span).error(message));
    }

    fn loc(&self, span: Range<usize>) -> Loc {
        self.src.span(&span)
    }

    /// An integer in `min..=max`, when given.
    fn int(&mut self, v: &Option<Spanned<i64>>, field: &str, min: i64, max: i64) -> Option<i64> {
        let v = v.as_ref()?;
        let n = *v.get_ref();
        if (min..=max).contains(&n) {
            return Some(n);
        }
        let range = match max {
            m if m >= i64::from(u32::MAX) => format!("at least {min}"),
            m => format!("{min} to {m}"),
        };
        self.fail(v.span(), format!("`{field}` must be {range}, not {n}"));
        None
    }

    fn requests(&mut self, r: &RawRequests) -> Resources {
        Resources {
            millicpu: r.cpu.as_ref().and_then(|c| self.cpu(c)).unwrap_or(0),
            memory: r
                .memory
                .as_ref()
                .and_then(|m| self.bytes(m, "memory"))
                .unwrap_or(0),
            disk: r
                .disk
                .as_ref()
                .and_then(|d| self.bytes(d, "disk"))
                .unwrap_or(0),
        }
    }

    fn cpu(&mut self, v: &V) -> Option<u64> {
        let milli = values::cpus_number(v.get_ref()).and_then(values::cpus_to_milli);
        if milli.is_none() {
            self.fail(
                v.span(),
                "invalid `requests.cpu`: expected a positive number of CPUs such as 0.5 or 2",
            );
        }
        milli
    }

    fn bytes(&mut self, v: &V, field: &str) -> Option<u64> {
        let bytes = match v.get_ref() {
            toml::Value::Integer(i) => u64::try_from(*i).ok().filter(|b| *b > 0),
            toml::Value::String(s) => values::parse_memory(s),
            _ => None,
        };
        if bytes.is_none() {
            self.fail(
                v.span(),
                format!(
                    "invalid `requests.{field}`: expected bytes as a positive integer or a size \
                     such as \"256MiB\" or \"2GiB\""
                ),
            );
        }
        bytes
    }

    fn host_ports(&mut self, ports: &[S]) -> Vec<HostPort> {
        let mut out = Vec::new();
        for s in ports {
            match host_port(s.get_ref()) {
                Ok(Some(port)) if !out.contains(&port) => out.push(port),
                Ok(_) => {}
                Err(message) => self.fail(s.span(), message),
            }
        }
        out
    }

    fn selector(&mut self, s: &RawSelector) -> (Selector, Vec<(String, Loc)>) {
        let roles: Vec<(String, Loc)> = s
            .roles
            .iter()
            .map(|r| (r.get_ref().clone(), self.loc(r.span())))
            .collect();
        let mut facts = Vec::new();
        for (key, value) in s.facts.clone().unwrap_or_default() {
            flatten_fact(key, value, &mut facts);
        }
        let mut labels = std::collections::BTreeMap::new();
        for (key, value) in &s.labels {
            match value.get_ref() {
                toml::Value::String(v) => {
                    labels.insert(key.clone(), v.clone());
                }
                other => self.fail(
                    value.span(),
                    format!(
                        "`selector.labels.{key}` must be a string (found {})\n\
                         hint: node labels are strings: quote it",
                        other.type_str()
                    ),
                ),
            }
        }
        let selector = Selector {
            roles: roles.iter().map(|(r, _)| r.clone()).collect(),
            facts,
            labels,
        };
        (selector, roles)
    }

    fn tolerations(&mut self, items: &[S]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in items {
            match values::taint_problem(t.get_ref()) {
                Some(why) => self.fail(
                    t.span(),
                    format!("invalid toleration `{}`: {why}", t.get_ref()),
                ),
                None if !out.contains(t.get_ref()) => out.push(t.get_ref().clone()),
                None => {}
            }
        }
        out
    }

    fn health(&mut self, h: &RawHealth) -> Option<AppHealth> {
        let path = h.http.get_ref();
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.fail(
                h.http.span(),
                format!(
                    "`health.http` must be an HTTP path starting with `/`, without spaces, \
                     not `{}`\nhint: e.g. http = \"/healthz\"",
                    path.escape_debug()
                ),
            );
        }
        let port = self.int(&Some(h.port.clone()), "health.port", 1, 65535);
        let interval = self.int(&h.interval_secs, "health.interval_secs", 1, i64::MAX);
        let timeout = self.int(&h.timeout_secs, "health.timeout_secs", 1, i64::MAX);
        Some(AppHealth {
            http: path.clone(),
            port: port? as u16,
            interval_secs: interval.map_or(10, |n| n as u64),
            timeout_secs: timeout.map_or(2, |n| n as u64),
        })
    }

    fn update(&mut self, u: &RawUpdate) -> UpdatePolicy {
        let default = UpdatePolicy::default();
        let count = u32::MAX.into();
        let max_parallel = self.int(&u.max_parallel, "update.max_parallel", 1, count);
        let canary = self.int(&u.canary, "update.canary", 0, count);
        let min_healthy = self.int(&u.min_healthy_secs, "update.min_healthy_secs", 0, i64::MAX);
        let deadline = self.int(
            &u.healthy_deadline_secs,
            "update.healthy_deadline_secs",
            1,
            i64::MAX,
        );
        let policy = UpdatePolicy {
            max_parallel: max_parallel.map_or(default.max_parallel, |n| n as u32),
            canary: canary.map_or(default.canary, |n| n as u32),
            min_healthy_secs: min_healthy.map_or(default.min_healthy_secs, |n| n as u64),
            healthy_deadline_secs: deadline.map_or(default.healthy_deadline_secs, |n| n as u64),
            auto_revert: u.auto_revert.unwrap_or(default.auto_revert),
        };
        if policy.healthy_deadline_secs <= policy.min_healthy_secs {
            let at = u
                .healthy_deadline_secs
                .as_ref()
                .or(u.min_healthy_secs.as_ref())
                .map_or(0..0, Spanned::span);
            self.fail(
                at,
                format!(
                    "`update.healthy_deadline_secs` ({}) must be more than \
                     `update.min_healthy_secs` ({}): a replica could never pass",
                    policy.healthy_deadline_secs, policy.min_healthy_secs
                ),
            );
        }
        policy
    }

    /// `drover.*` labels are the replica's ties to its app and placement.
    fn reserved_labels(&mut self, raw: &RawApp) {
        for (key, value) in &raw.labels {
            if key.starts_with(RESERVED_LABELS) {
                self.fail(
                    value.span(),
                    format!(
                        "label `{key}` is reserved: drover sets `drover.app`, `drover.replica` \
                         and `drover.placement` on every replica\nhint: choose a key that does \
                         not start with `drover.`"
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_are_read_without_rendering() {
        let tcp = |port| {
            Ok(Some(HostPort {
                port,
                protocol: "tcp".into(),
            }))
        };
        assert_eq!(host_port("8080:80"), tcp(8080));
        assert_eq!(host_port("127.0.0.1:8080:80"), tcp(8080));
        assert_eq!(host_port("{{ labels.ip }}:8080:80"), tcp(8080));
        assert_eq!(
            host_port("[::1]:53:53/udp").unwrap().unwrap().protocol,
            "udp"
        );
        assert_eq!(host_port("80"), Ok(None));
        assert_eq!(host_port("{{ labels.ip }}::80"), Ok(None));
        for templated in [
            "{{ vars.port }}:80",
            "{{ labels.ip }}:{{ vars.port }}:80",
            "8080:{{ vars.port }}",
            "{{ vars.port }}",
        ] {
            let err = host_port(templated).unwrap_err();
            assert!(err.contains("only HOST_IP may be a template"), "{err}");
        }
        let err = host_port("{{ labels.ip }}:99999:80").unwrap_err();
        assert!(
            err.starts_with("`{{ labels.ip }}:99999:80` is not a port mapping"),
            "{err}"
        );
    }

    #[test]
    fn an_app_name_is_a_lowercase_container_name_prefix() {
        for good in ["todo", "a", "0web", "api.v2", "my_app-1"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "Todo", "-x", ".x", "web/api", "a b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert_eq!(suggest_name("Web/API"), "web-api");
        assert_eq!(suggest_name("_x"), "x");
    }
}
