//! Lab networking: one Linux bridge per lab on its own 10.213.X.0/24, and per
//! node a network namespace joined to the bridge by a veth pair.
//!
//! A lab owns subnet X while it holds an flock on /run/drover-tests/subnet-X.lock,
//! so concurrent test processes never share a subnet, and a bridge whose lock
//! nobody holds is a leftover of a dead process.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::fcntl::Flock;

use super::host::{RUN_DIR, run_ok, tool};

const BRIDGE_PREFIX: &str = "drlab";

/// The lab's bridge, deleted when dropped.
pub(super) struct Bridge {
    pub name: String,
    pub subnet: u8,
    _lock: Flock<std::fs::File>,
}

impl Bridge {
    /// Claims the first free subnet and creates its bridge with the host on .1.
    pub(super) fn claim() -> Result<Bridge> {
        for subnet in 1..=254u8 {
            let Some(lock) = try_lock_subnet(subnet)? else {
                continue;
            };
            let bridge = Bridge {
                name: format!("{BRIDGE_PREFIX}{subnet}"),
                subnet,
                _lock: lock,
            };
            bridge.create()?;
            return Ok(bridge);
        }
        bail!(
            "all 254 lab subnets 10.213.X.0/24 are in use (locks in {RUN_DIR})\n\
             hint: too many test processes at once, or stale locks"
        )
    }

    pub(super) fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 1)
    }

    fn create(&self) -> Result<()> {
        // We hold the lock: a bridge of that name is a leftover.
        delete_link(&self.name);
        let name = self.name.as_str();
        let address = format!("{}/24", self.host_ip());
        run_ok(tool("ip").args(["link", "add", name, "type", "bridge", "forward_delay", "0"]))
            .and_then(|_| run_ok(tool("ip").args(["addr", "add", &address, "dev", name])))
            .and_then(|_| run_ok(tool("ip").args(["link", "set", name, "up"])))
            .with_context(|| format!("cannot create the lab bridge {name} ({address})"))?;
        forward(name, true);
        Ok(())
    }
}

/// Lets the nodes of bridge `name` reach each other (`open`), or takes
/// that back. dockerd sets the
/// FORWARD policy to DROP and has bridged frames go through iptables
/// (`br_netfilter`), which would drop node-to-node traffic; docker's
/// own chain for such rules, DOCKER-USER, takes an accept for this
/// bridge alone (FORWARD when there is no dockerd). Without iptables
/// there is nothing to open.
fn forward(name: &str, open: bool) {
    let Some(iptables) = super::host::find_tool("iptables") else {
        return;
    };
    let chain = if std::process::Command::new(&iptables)
        .args(["-n", "-L", "DOCKER-USER"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        "DOCKER-USER"
    } else {
        "FORWARD"
    };
    let verb = if open { "-I" } else { "-D" };
    let rule = ["-i", name, "-o", name, "-j", "ACCEPT"];
    let _ = std::process::Command::new(&iptables)
        .arg(verb)
        .arg(chain)
        .args(rule)
        .output();
}

impl Drop for Bridge {
    fn drop(&mut self) {
        forward(&self.name, false);
        delete_link(&self.name);
    }
}

fn try_lock_subnet(subnet: u8) -> Result<Option<Flock<std::fs::File>>> {
    crate::lockfile::try_lock(&Path::new(RUN_DIR).join(format!("subnet-{subnet}.lock")))
}

/// Deletes lab bridges whose subnet lock nobody holds.
pub(super) fn sweep_bridges() {
    for name in links("bridge") {
        let Some(subnet) = name
            .strip_prefix(BRIDGE_PREFIX)
            .and_then(|x| x.parse().ok())
        else {
            continue;
        };
        if let Ok(Some(_lock)) = try_lock_subnet(subnet) {
            eprintln!("drover-tests: deleting the stale lab bridge {name}");
            forward(&name, false);
            delete_link(&name);
        }
    }
}

/// Names of the host's links of one type (`bridge`, `veth`).
pub(super) fn links(kind: &str) -> Vec<String> {
    let listing = run_ok(tool("ip").args(["-o", "link", "show", "type", kind])).unwrap_or_default();
    listing
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect()
}

/// Names of the network namespaces in /run/netns.
pub(super) fn namespaces() -> Vec<String> {
    let Ok(entries) = fs_err::read_dir("/run/netns") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect()
}

/// A node's network: namespace `ns` with eth0 = `ip`/24, default route via the
/// bridge, and the host end `veth` on the bridge.
pub(super) fn create_node_link(bridge: &Bridge, ns: &str, veth: &str, ip: Ipv4Addr) -> Result<()> {
    let address = format!("{ip}/24");
    let gateway = bridge.host_ip().to_string();
    let ip_cmd = |args: &[&str]| run_ok(tool("ip").args(args));
    ip_cmd(&["netns", "add", ns])
        .and_then(|_| {
            ip_cmd(&[
                "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ])
        })
        .and_then(|_| ip_cmd(&["link", "set", veth, "master", &bridge.name, "up"]))
        .and_then(|_| ip_cmd(&["-n", ns, "addr", "add", &address, "dev", "eth0"]))
        .and_then(|_| ip_cmd(&["-n", ns, "link", "set", "lo", "up"]))
        .and_then(|_| ip_cmd(&["-n", ns, "link", "set", "eth0", "up"]))
        .and_then(|_| ip_cmd(&["-n", ns, "route", "add", "default", "via", &gateway]))
        .with_context(|| {
            format!(
                "cannot set up the network of netns {ns} ({address} on {})",
                bridge.name
            )
        })?;
    Ok(())
}

pub(super) fn set_link_up(veth: &str, up: bool) -> Result<()> {
    let state = if up { "up" } else { "down" };
    run_ok(tool("ip").args(["link", "set", veth, state]))
        .with_context(|| format!("cannot set the node link {veth} {state}"))?;
    Ok(())
}

/// Deletes a namespace and a link if they exist (deleting the namespace
/// deletes the veth pair with it; the link is deleted in case it was not moved).
pub(super) fn delete_node_link(ns: &str, veth: &str) {
    if namespaces().iter().any(|name| name == ns)
        && let Err(e) = run_ok(tool("ip").args(["netns", "delete", ns]))
    {
        eprintln!("drover-tests: warning: {e:#}");
    }
    delete_link(veth);
}

fn delete_link(name: &str) {
    if !name.is_empty() && std::path::Path::new("/sys/class/net").join(name).exists() {
        // Gone meanwhile: a veth goes with its namespace, asynchronously.
        match run_ok(tool("ip").args(["link", "delete", name])) {
            Err(e) if !format!("{e:#}").contains("Cannot find device") => {
                eprintln!("drover-tests: warning: {e:#}");
            }
            _ => {}
        }
    }
}
