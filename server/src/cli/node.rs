//! `drover-server node cordon|uncordon|drain NAME`: maintenance of a node,
//! asked of a running server over its API. `drain --wait` follows the
//! drain until it ends, printing each new status.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::{ServerArgs, encode, get, post};

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
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

/// How often `drain --wait` asks.
const POLL: Duration = Duration::from_secs(1);

/// `drover-server node ...`: exit 0, or 1 (an error, or a drain the
/// deadline stopped).
pub fn node(args: &NodeArgs) -> anyhow::Result<u8> {
    let (name, action, body) = match &args.command {
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
