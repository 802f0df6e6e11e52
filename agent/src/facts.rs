//! This node's facts: what the server's classification and templates can see.
//!
//! Everything comes from the kernel and a few small files under /etc and
//! /proc; nothing spawns a process or touches the network, so it stays fast.

mod external;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};
use drover_catalog::Facts;
use serde_json::{Value, json};

pub(crate) fn hostname() -> Result<String> {
    let name = nix::unistd::gethostname().context("cannot read the hostname")?;
    Ok(name.to_string_lossy().into_owned())
}

/// Gathers the facts of the running node.
pub(crate) use external::DEFAULT_FACTS_DIR;

/// The gathered facts with the external ones of `facts_dir` over them;
/// a skipped external fact file is a warning.
pub(crate) fn gather_with(facts_dir: &Path) -> Result<Facts> {
    let mut facts = gather()?;
    let (external, warnings) = external::read(facts_dir);
    for warning in warnings {
        crate::output::warning(&warning);
    }
    facts.extend(external);
    Ok(facts)
}

pub(crate) fn gather() -> Result<Facts> {
    let hostname = hostname()?;
    let uts = nix::sys::utsname::uname().context("uname failed")?;
    let os_release = fs_err::read_to_string("/etc/os-release")
        .or_else(|_| fs_err::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let meminfo = fs_err::read_to_string("/proc/meminfo").unwrap_or_default();
    let hosts = fs_err::read_to_string("/etc/hosts").unwrap_or_default();
    let processors = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (interfaces, ip) = interfaces();

    let os = parse_os_release(&os_release);
    let value = json!({
        "hostname": hostname,
        "fqdn": fqdn(&hostname, &hosts),
        "os": {
            "id": os.get("ID").cloned().unwrap_or_else(|| "linux".into()),
            "version_id": os.get("VERSION_ID"),
            "name": os.get("NAME").or(os.get("PRETTY_NAME")),
            "pretty_name": os.get("PRETTY_NAME"),
            "codename": os.get("VERSION_CODENAME"),
            "id_like": os.get("ID_LIKE"),
            "family": "linux",
        },
        "kernel": {
            "name": uts.sysname().to_string_lossy(),
            "release": uts.release().to_string_lossy(),
            "version": uts.version().to_string_lossy(),
        },
        "architecture": uts.machine().to_string_lossy(),
        "processors": { "count": processors },
        "memory": { "total_bytes": mem_total_bytes(&meminfo) },
        "networking": { "interfaces": interfaces, "ip": ip },
        "disks": disks(),
        "agent_version": env!("CARGO_PKG_VERSION"),
    });
    match value {
        Value::Object(map) => Ok(map),
        _ => unreachable!("json! of an object literal is an object"),
    }
}

/// `KEY=value` lines of os-release, with shell quoting removed.
pub(crate) fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (k, v) = line.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_owned(), v.replace("\\\"", "\"")))
        })
        .collect()
}

pub(crate) fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The hostname if it is already dotted, else the first dotted name that
/// /etc/hosts gives it (no DNS: facts must not hang on a resolver).
pub(crate) fn fqdn(hostname: &str, hosts: &str) -> String {
    if hostname.contains('.') {
        return hostname.to_owned();
    }
    hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            let names: Vec<&str> = l.split_whitespace().skip(1).collect();
            names.contains(&hostname).then(|| {
                names
                    .iter()
                    .find(|n| n.starts_with(hostname) && n.contains('.'))
                    .map(|n| (*n).to_owned())
            })?
        })
        .next()
        .unwrap_or_else(|| hostname.to_owned())
}

/// Where container storage lives: Docker's, else Podman's, else the
/// filesystems that would hold either.
const CONTAINER_STORAGE: [&str; 4] = ["/var/lib/docker", "/var/lib/containers", "/var/lib", "/"];

/// `containers`: the filesystem holding container storage, whose free space
/// the server's scheduler counts as the node's disk capacity. Left out when
/// it cannot be measured.
fn disks() -> Value {
    let path = container_storage(|p| Path::new(p).exists());
    match disk_space(Path::new(path)) {
        Ok(space) => json!({
            "containers": {
                "path": path,
                "available_bytes": space.available_bytes,
                "total_bytes": space.total_bytes,
            }
        }),
        Err(_) => json!({}),
    }
}

/// The first of [`CONTAINER_STORAGE`] that `exists`.
pub(crate) fn container_storage(exists: impl Fn(&str) -> bool) -> &'static str {
    CONTAINER_STORAGE
        .into_iter()
        .find(|p| exists(p))
        .unwrap_or("/")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiskSpace {
    /// What an unprivileged writer may still use (`f_bavail`).
    pub available_bytes: u64,
    pub total_bytes: u64,
}

/// The size and free space of the filesystem holding `path`.
pub(crate) fn disk_space(path: &Path) -> Result<DiskSpace> {
    let stat = nix::sys::statvfs::statvfs(path)
        .with_context(|| format!("cannot statvfs {}", path.display()))?;
    let fragment = stat.fragment_size();
    Ok(DiskSpace {
        available_bytes: stat.blocks_available().saturating_mul(fragment),
        total_bytes: stat.blocks().saturating_mul(fragment),
    })
}

fn interfaces() -> (Value, Value) {
    let mut map: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut first_ip: Option<String> = None;
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for ifa in addrs {
            let entry = map.entry(ifa.interface_name.clone()).or_default();
            let Some(addr) = ifa.address else { continue };
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            match ip {
                IpAddr::V4(v4) => {
                    if first_ip.is_none() && !v4.is_loopback() {
                        first_ip = Some(v4.to_string());
                    }
                    entry.0.push(v4.to_string());
                }
                IpAddr::V6(v6) => entry.1.push(v6.to_string()),
            }
        }
    }
    let interfaces: serde_json::Map<String, Value> = map
        .into_iter()
        .map(|(name, (v4, v6))| (name, json!({ "ipv4": v4, "ipv6": v6 })))
        .collect();
    (
        Value::Object(interfaces),
        first_ip.map_or(Value::Null, Value::String),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_is_unquoted() {
        let os = parse_os_release("ID=debian\nVERSION_ID=\"12\"\n# c\nNAME='Debian GNU/Linux'\n");
        assert_eq!(os["ID"], "debian");
        assert_eq!(os["VERSION_ID"], "12");
        assert_eq!(os["NAME"], "Debian GNU/Linux");
    }

    #[test]
    fn meminfo_total_in_bytes() {
        assert_eq!(
            mem_total_bytes("MemTotal:       2048 kB\nMemFree: 1 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(mem_total_bytes(""), None);
    }

    #[test]
    fn fqdn_from_hosts() {
        let hosts = "127.0.0.1 localhost\n10.0.0.5 web-1.example.com web-1 # me\n";
        assert_eq!(fqdn("web-1", hosts), "web-1.example.com");
        assert_eq!(fqdn("db", hosts), "db");
        assert_eq!(fqdn("a.b", ""), "a.b");
    }

    #[test]
    fn container_storage_is_dockers_then_podmans_then_var_lib() {
        let only = |present: &'static [&'static str]| container_storage(|p| present.contains(&p));
        assert_eq!(
            only(&["/var/lib/docker", "/var/lib/containers", "/var/lib", "/"]),
            "/var/lib/docker"
        );
        assert_eq!(
            only(&["/var/lib/containers", "/var/lib", "/"]),
            "/var/lib/containers"
        );
        assert_eq!(only(&["/var/lib", "/"]), "/var/lib");
        assert_eq!(only(&[]), "/");
    }

    #[test]
    fn disk_space_of_the_root_filesystem() {
        let space = disk_space(Path::new("/")).unwrap();
        assert!(space.available_bytes > 0, "{space:?}");
        assert!(space.total_bytes >= space.available_bytes, "{space:?}");
        let err = disk_space(Path::new("/nonexistent/drover")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/drover"), "{err}");
    }

    #[test]
    fn gathered_facts_have_the_contract_keys() {
        let facts = gather().unwrap();
        for key in [
            "hostname",
            "fqdn",
            "os",
            "kernel",
            "architecture",
            "processors",
            "memory",
        ] {
            assert!(facts.contains_key(key), "missing {key}");
        }
        assert_eq!(facts["os"]["family"], "linux");
        assert!(facts["processors"]["count"].as_u64().unwrap() >= 1);
        assert!(facts["networking"]["interfaces"].is_object());
        let disk = &facts["disks"]["containers"];
        assert!(disk["path"].is_string(), "{disk}");
        assert!(disk["available_bytes"].as_u64().unwrap() > 0, "{disk}");
        assert!(
            disk["total_bytes"].as_u64().unwrap() >= disk["available_bytes"].as_u64().unwrap(),
            "{disk}"
        );
    }
}
