//! The small languages of a container resource, as Docker writes them: port
//! mappings, volume mounts, restart policies, container names and image
//! references. The compiler validates with these functions and the agent
//! parses with them, so both read a value the same way.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::values::path_problem;

const PORT_SYNTAX: &str =
    "[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp|sctp], e.g. 127.0.0.1:8080:80";
const MOUNT_SYNTAX: &str = "SOURCE:TARGET[:ro|:rw], e.g. /srv/app/data:/data:ro or app-data:/data";
const RESTART_SYNTAX: &str =
    "no, always, unless-stopped or on-failure[:MAX_RETRIES], e.g. on-failure:3";
const IMAGE_SYNTAX: &str =
    "[REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST], e.g. registry.example.com/team/app:1.4";

/// Docker accepts container names of any length; this bound only keeps them sane.
const MAX_NAME_LEN: usize = 128;
/// The longest repository name (registry and path) Docker accepts.
const MAX_REPOSITORY_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(s: &str) -> Option<Protocol> {
        match s {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        })
    }
}

/// One entry of `ports`. `host_port: None` lets Docker choose the host port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_ip: Option<IpAddr>,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl PortMapping {
    /// Parses `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`, `HOST_IP::CONTAINER_PORT`
    /// or `CONTAINER_PORT[/PROTO]`; an IPv6 HOST_IP is written in brackets.
    pub fn parse(s: &str) -> Result<PortMapping, String> {
        let bad = |why: &str| format!("`{s}` is not a port mapping: {why}");
        let (addresses, protocol) = match s.rsplit_once('/') {
            None => (s, Protocol::Tcp),
            Some((addresses, proto)) => match Protocol::parse(proto) {
                Some(protocol) => (addresses, protocol),
                None => {
                    return Err(bad(&format!(
                        "unknown protocol `{proto}`, expected tcp, udp or sctp"
                    )));
                }
            },
        };
        let (host_ip, ports) = split_host_ip(addresses).map_err(|why| bad(&why))?;
        let (host_port, container_port) = match ports.as_slice() {
            [container] => (None, *container),
            ["", container] if host_ip.is_some() => (None, *container),
            [host, container] => (
                Some(port_number(host).map_err(|why| bad(&why))?),
                *container,
            ),
            _ => return Err(bad(&format!("expected {PORT_SYNTAX}"))),
        };
        Ok(PortMapping {
            host_ip,
            host_port,
            container_port: port_number(container_port).map_err(|why| bad(&why))?,
            protocol,
        })
    }

    /// Docker's key for the container side: `80/tcp`.
    pub fn container_key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol)
    }
}

/// Splits `[::1]:8080:80` or `127.0.0.1:8080:80` into the host IP and the
/// colon-separated ports that follow it.
fn split_host_ip(addresses: &str) -> Result<(Option<IpAddr>, Vec<&str>), String> {
    if let Some(bracketed) = addresses.strip_prefix('[') {
        let Some((ip, ports)) = bracketed.split_once("]:") else {
            return Err(format!("expected {PORT_SYNTAX}"));
        };
        let ip: Ipv6Addr = ip.parse().map_err(|_| {
            format!("`{ip}` in brackets is not an IPv6 address, e.g. [::1]:8080:80")
        })?;
        return Ok((Some(IpAddr::V6(ip)), ports.split(':').collect()));
    }
    let parts: Vec<&str> = addresses.split(':').collect();
    match parts.as_slice() {
        [ip, ports @ ..] if ports.len() == 2 => {
            let ip: Ipv4Addr = ip
                .parse()
                .map_err(|_| format!("`{ip}` is not an IPv4 address; expected {PORT_SYNTAX}"))?;
            Ok((Some(IpAddr::V4(ip)), ports.to_vec()))
        }
        _ if parts.len() > 3 => Err(format!(
            "too many `:` (an IPv6 HOST_IP goes in brackets, e.g. [::1]:8080:80); expected {PORT_SYNTAX}"
        )),
        _ => Ok((None, parts)),
    }
}

fn port_number(s: &str) -> Result<u16, String> {
    if s.contains('-') && s.split('-').all(|p| p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!(
            "port ranges such as `{s}` are not supported, publish each port on its own"
        ));
    }
    let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    match s.parse::<u32>() {
        Ok(n @ 1..=65535) if digits => Ok(n as u16),
        Ok(_) if digits => Err(format!("port {s} is out of range, expected 1 to 65535")),
        _ => Err(format!(
            "`{s}` is not a port number; expected {PORT_SYNTAX}"
        )),
    }
}

/// Where a mount comes from: a host path (bind mount) or a named volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    Bind(PathBuf),
    Volume(String),
}

/// One entry of `volumes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: MountSource,
    /// An absolute path in the container.
    pub target: String,
    pub read_only: bool,
}

impl Mount {
    /// Parses `SOURCE:TARGET[:ro|:rw]`: an absolute SOURCE is a bind mount,
    /// any other SOURCE names a volume.
    pub fn parse(s: &str) -> Result<Mount, String> {
        let bad = |why: &str| format!("`{s}` is not a volume: {why}");
        let parts: Vec<&str> = s.split(':').collect();
        let (source, target, read_only) = match parts.as_slice() {
            [source, target] => (*source, *target, false),
            [source, target, "ro"] => (*source, *target, true),
            [source, target, "rw"] => (*source, *target, false),
            [_, _, mode] => {
                return Err(bad(&format!("unknown mode `{mode}`, expected ro or rw")));
            }
            _ => return Err(bad(&format!("expected {MOUNT_SYNTAX}"))),
        };
        let source = if source.starts_with('/') {
            if let Some(why) = path_problem(source) {
                return Err(bad(&format!(
                    "host path `{source}` must be normalised ({why})"
                )));
            }
            MountSource::Bind(PathBuf::from(source))
        } else if is_docker_name(source) {
            MountSource::Volume(source.to_owned())
        } else {
            return Err(bad(&format!(
                "SOURCE `{source}` is neither an absolute host path nor a volume name \
                 ([a-zA-Z0-9][a-zA-Z0-9_.-]+); expected {MOUNT_SYNTAX}"
            )));
        };
        if let Some(why) = path_problem(target) {
            return Err(bad(&format!(
                "TARGET `{target}` must be an absolute, normalised path in the container ({why})"
            )));
        }
        Ok(Mount {
            source,
            target: target.to_owned(),
            read_only,
        })
    }
}

/// `restart`: what Docker does when the container's process exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Docker's default.
    #[default]
    No,
    Always,
    UnlessStopped,
    OnFailure {
        max_retries: Option<u32>,
    },
}

impl RestartPolicy {
    /// Parses `no`, `always`, `unless-stopped`, `on-failure` or `on-failure:N`.
    /// `on-failure:0` is `on-failure`: Docker reads 0 retries as no limit.
    pub fn parse(s: &str) -> Result<RestartPolicy, String> {
        match s {
            "no" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "on-failure" => Ok(RestartPolicy::OnFailure { max_retries: None }),
            _ => match s.strip_prefix("on-failure:") {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    let max_retries: u32 = n.parse().map_err(|_| {
                        format!("`{s}` is not a restart policy: {n} retries is too many")
                    })?;
                    Ok(RestartPolicy::OnFailure {
                        max_retries: Some(max_retries).filter(|n| *n > 0),
                    })
                }
                Some(n) => Err(format!(
                    "`{s}` is not a restart policy: MAX_RETRIES `{n}` is not a whole number, e.g. on-failure:3"
                )),
                None => Err(format!(
                    "`{s}` is not a restart policy: expected {RESTART_SYNTAX}"
                )),
            },
        }
    }

    /// The policy's name in Docker's API (`RestartPolicy.Name`).
    pub fn docker_name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
            RestartPolicy::OnFailure { .. } => "on-failure",
        }
    }
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`
/// (two characters at least), here at most 128 characters.
pub fn validate_name(name: &str) -> Result<(), String> {
    if is_docker_name(name) && name.len() <= MAX_NAME_LEN {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid container name: expected 2 to {MAX_NAME_LEN} characters \
             of [a-zA-Z0-9_.-], the first a letter or digit (Docker's rule)"
        ))
    }
}

/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+`: Docker's names of containers and volumes.
fn is_docker_name(s: &str) -> bool {
    s.len() >= 2
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Checks an image reference the way Docker's reference grammar reads it:
/// an optional registry host (with port), a lowercase repository path, an
/// optional tag and an optional `@sha256:` digest.
pub fn validate_image(reference: &str) -> Result<(), String> {
    image_problem(reference).map_err(|why| {
        format!("`{reference}` is not an image reference: {why}; expected {IMAGE_SYNTAX}")
    })
}

fn image_problem(reference: &str) -> Result<(), String> {
    if reference.is_empty() {
        return Err("it is empty".into());
    }
    if reference
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("it contains whitespace".into());
    }
    let (named, digest) = match reference.split_once('@') {
        Some((named, digest)) => (named, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        digest_problem(digest)?;
    }
    let (repository, tag) = match named.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
        _ => (named, None),
    };
    if let Some(tag) = tag {
        tag_problem(tag)?;
    }
    repository_problem(repository)
}

fn digest_problem(digest: &str) -> Result<(), String> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if crate::sha::Sha256::parse(hex).is_some() => Ok(()),
        _ => Err(format!(
            "digest `{digest}` must be sha256: followed by 64 lowercase hex digits"
        )),
    }
}

fn tag_problem(tag: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let valid = tag.len() <= MAX_TAG_LEN
        && tag.starts_with(word)
        && tag.chars().all(|c| word(c) || c == '.' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "tag `{tag}` must be 1 to {MAX_TAG_LEN} characters of [A-Za-z0-9_.-], not starting with `.` or `-`"
        ))
    }
}

fn repository_problem(repository: &str) -> Result<(), String> {
    if repository.len() > MAX_REPOSITORY_LEN {
        return Err(format!(
            "the repository name is longer than {MAX_REPOSITORY_LEN} characters"
        ));
    }
    let mut components: Vec<&str> = repository.split('/').collect();
    let first = components[0];
    let is_registry = components.len() > 1 && (first.contains(['.', ':']) || first == "localhost");
    if is_registry {
        registry_problem(first)?;
        components.remove(0);
    }
    for component in components {
        if !is_path_component(component) {
            return Err(format!(
                "path component `{component}` must be lowercase letters and digits, \
                 separated by `.`, `_`, `__` or dashes"
            ));
        }
    }
    Ok(())
}

/// `HOST[:PORT]`: DNS labels or a bracketed IPv6 address, and digits.
fn registry_problem(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (registry, None),
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ip) => ip.parse::<Ipv6Addr>().is_ok(),
        None => is_dns_name(host),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!("registry `{registry}` must be HOST or HOST:PORT"))
    }
}

fn is_dns_name(host: &str) -> bool {
    host.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn is_path_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut rest = component;
    loop {
        let run = rest.find(|c: char| !alnum(c)).unwrap_or(rest.len());
        if run == 0 {
            return false;
        }
        rest = &rest[run..];
        if rest.is_empty() {
            return true;
        }
        let sep = rest.find(alnum).unwrap_or(rest.len());
        let separator = &rest[..sep];
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return false;
        }
        rest = &rest[sep..];
    }
}

#[cfg(test)]
mod tests;
