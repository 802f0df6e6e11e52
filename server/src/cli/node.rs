//! `drover-server node ...`, asked of a running server over its API: the
//! fleet's list, maintenance (`cordon`, `uncordon`, `drain`; `drain --wait`
//! follows the drain until it ends, printing each new status) and the
//! lifecycle (`run`, `deactivate`, `purge`).

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::{ServerArgs, delete, encode, get, get_page, post};

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the nodes (deactivated ones left out), with their state.
    List {
        #[command(flatten)]
        filter: ListFilter,
        /// Print the API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Make NAME's daemon run now, through its catalog watch (no commit needed).
    Run {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Take NAME out of the fleet's lists, counts and placements until it checks in again.
    Deactivate {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Revoke NAME's certificates and delete its data.
    Purge {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Place no new replica on NAME; the replicas it runs stay.
    Cordon {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Place replicas on NAME again (ends its drain).
    Uncordon {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Cordon NAME and move its replicas away, each replacement healthy before the old one stops.
    Drain {
        #[arg(value_name = "NAME")]
        name: String,
        /// Stop what is left after SECS
        #[arg(long, value_name = "SECS")]
        deadline: Option<u64>,
        /// Wait for the drain to end, printing what it waits for; exit 0 drained, 1 stopped at the deadline
        #[arg(long)]
        wait: bool,
    },
}

/// `node list`'s filters: the API's (`GET /api/v1/nodes`), the
/// dashboard's form.
#[derive(Debug, Args)]
pub struct ListFilter {
    /// Only nodes in this state (failed, unresponsive, noop_pending, changed, unchanged, never_reported, stale)
    #[arg(long, value_name = "STATE")]
    state: Option<String>,
    /// Only nodes with this role
    #[arg(long, value_name = "ROLE")]
    role: Option<String>,
    /// Only nodes of this environment
    #[arg(long, value_name = "ENV")]
    environment: Option<String>,
    /// Only nodes whose fact (a dotted path) has this value: os.id=debian
    #[arg(long, value_name = "KEY=VALUE")]
    fact: Option<String>,
    /// Only nodes whose name contains this
    #[arg(long, value_name = "TEXT")]
    name: Option<String>,
    /// Order: name (the default), triage, state, environment, roles, last_run, duration or commit; -KEY for descending
    #[arg(long, value_name = "KEY", allow_hyphen_values = true)]
    sort: Option<String>,
}

impl ListFilter {
    /// The query string's filter part (`&state=...`).
    fn query(&self) -> String {
        [
            ("state", &self.state),
            ("role", &self.role),
            ("environment", &self.environment),
            ("fact", &self.fact),
            ("q", &self.name),
            ("sort", &self.sort),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some(format!("&{key}={}", encode(value.as_ref()?))))
        .collect()
    }
}

/// How often `drain --wait` asks.
const POLL: Duration = Duration::from_secs(1);

/// `drover-server node ...`: exit 0, or 1 (an error, or a drain the
/// deadline stopped).
pub fn node(args: &NodeArgs) -> anyhow::Result<u8> {
    let (name, action, body) = match &args.command {
        NodeCommand::List { filter, json } => return list(&args.server, filter, *json),
        NodeCommand::Run { name } => return lifecycle(&args.server, name, "run"),
        NodeCommand::Deactivate { name } => return lifecycle(&args.server, name, "deactivate"),
        NodeCommand::Purge { name } => {
            let answer = delete(&args.server, &format!("/api/v1/nodes/{}", encode(name)))?;
            return said(&answer);
        }
        NodeCommand::Cordon { name } => (name, "cordon", String::new()),
        NodeCommand::Uncordon { name } => (name, "uncordon", String::new()),
        NodeCommand::Drain { name, deadline, .. } => (
            name,
            "drain",
            serde_json::json!({ "deadline_secs": deadline }).to_string(),
        ),
    };
    let answer = post(
        &args.server,
        &format!("/api/v1/nodes/{}/{action}", encode(name)),
        &body,
    )?;
    let answer: Value = serde_json::from_str(&answer).context("the server's answer")?;
    println!(
        "{name}: {}",
        if answer["cordoned"] == true {
            "cordoned"
        } else {
            "schedulable"
        }
    );
    let NodeCommand::Drain { wait: true, .. } = &args.command else {
        return Ok(0);
    };
    let mut said = String::new();
    loop {
        let node: Value = serde_json::from_str(&get(
            &args.server,
            &format!("/api/v1/nodes/{}", encode(name)),
        )?)
        .context("the server's answer")?;
        let drain = &node["drain"];
        let state = drain["state"].as_str().unwrap_or("gone");
        let status = drain["status"]
            .as_str()
            .unwrap_or("the drain ended (uncordoned)");
        let line = format!("{state}: {status}");
        if line != said {
            println!("{line}");
            said = line;
        }
        match state {
            "draining" => std::thread::sleep(POLL),
            "stopped" => return Ok(1),
            _ => return Ok(0),
        }
    }
}

/// POSTs a lifecycle action and prints what the server said.
fn lifecycle(server: &ServerArgs, name: &str, action: &str) -> anyhow::Result<u8> {
    let answer = post(
        server,
        &format!("/api/v1/nodes/{}/{action}", encode(name)),
        "",
    )?;
    said(&answer)
}

fn said(answer: &str) -> anyhow::Result<u8> {
    let answer: Value = serde_json::from_str(answer).context("the server's answer")?;
    println!("{}", answer["said"].as_str().unwrap_or_default());
    Ok(0)
}

/// How many nodes a page of `node list` asks for.
const PAGE: usize = 1000;

/// Every node the filter matches, a page at a time (each page's `Link`
/// header names the next).
fn list(server: &ServerArgs, filter: &ListFilter, json: bool) -> anyhow::Result<u8> {
    let mut nodes: Vec<Value> = Vec::new();
    let mut next = Some(format!("/api/v1/nodes?limit={PAGE}{}", filter.query()));
    while let Some(path) = next {
        let (body, after) = get_page(server, &path)?;
        let page: Vec<Value> = serde_json::from_str(&body).context("the server's answer")?;
        nodes.extend(page);
        next = after;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(0);
    }
    let field = |n: &Value, key: &str| n[key].as_str().unwrap_or("-").to_owned();
    println!(
        "{:<32} {:<15} {:<15} LAST RUN",
        "NAME", "STATE", "ENVIRONMENT"
    );
    for n in &nodes {
        let mut flags = String::new();
        if n["stale"] == true {
            flags.push_str(" (stale)");
        }
        if n["compile_error"].is_object() {
            flags.push_str(" (compile error)");
        }
        if n["cordoned"] == true {
            flags.push_str(" (cordoned)");
        }
        println!(
            "{:<32} {:<15} {:<15} {}{flags}",
            field(n, "name"),
            field(n, "state"),
            field(n, "environment"),
            field(n, "last_run_at"),
        );
    }
    println!("{} node(s)", nodes.len());
    Ok(0)
}
