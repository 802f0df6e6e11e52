//! `drover-server rollout status|resume|abort ENV`: an environment's staged
//! rollout, asked of a running server over its API. `status --wait`
//! follows it until it is done, paused or aborted, printing each change.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::{ServerArgs, encode, get, post};

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Show the rollout of ENV's newest commit: its state, stage, what blocks it, the nodes per stage.
    Status {
        #[arg(value_name = "ENV")]
        environment: String,
        /// Follow it until it is done, paused or aborted; exit 0 done, 1 otherwise
        #[arg(long)]
        wait: bool,
    },
    /// Pass a paused rollout's failed stage anyway: the next stage begins.
    Resume {
        #[arg(value_name = "ENV")]
        environment: String,
    },
    /// Send every node of ENV's rollout back to the previous commit's catalogs.
    Abort {
        #[arg(value_name = "ENV")]
        environment: String,
    },
}

const POLL: Duration = Duration::from_secs(1);

/// `drover-server rollout ...`: exit 0, or 1 (an error, or `--wait` ending
/// anywhere but done).
pub fn rollout(args: &RolloutArgs) -> anyhow::Result<u8> {
    let (env, action) = match &args.command {
        RolloutCommand::Status { environment, .. } => (environment, None),
        RolloutCommand::Resume { environment } => (environment, Some("resume")),
        RolloutCommand::Abort { environment } => (environment, Some("abort")),
    };
    let path = format!("/api/v1/environments/{}/rollout", encode(env));
    if let Some(action) = action {
        let answer: Value =
            serde_json::from_str(&post(&args.server, &format!("{path}/{action}"), "")?)
                .context("the server's answer")?;
        println!("{env}: {action} requested; the leader applies it");
        print!("{}", describe(&answer));
        return Ok(0);
    }
    let RolloutCommand::Status { wait, .. } = &args.command else {
        return Ok(0);
    };
    let mut said = String::new();
    loop {
        let answer: Value =
            serde_json::from_str(&get(&args.server, &path)?).context("the server's answer")?;
        let text = describe(&answer);
        if text != said {
            print!("{text}");
            said = text;
        }
        let state = answer["rollout"]["state"].as_str().unwrap_or("none");
        match (wait, state) {
            (false, _) => return Ok(0),
            (true, "rolling") => std::thread::sleep(POLL),
            (true, "done") => return Ok(0),
            (true, _) => return Ok(1),
        }
    }
}

/// The rollout as lines for the terminal.
fn describe(answer: &Value) -> String {
    let env = answer["environment"].as_str().unwrap_or_default();
    let commit = answer["commit"].as_str().unwrap_or_default();
    let short = |c: &str| c.chars().take(12).collect::<String>();
    let r = &answer["rollout"];
    if r.is_null() {
        return format!("{env}: commit {}, no rollout yet\n", short(commit));
    }
    let state = r["state"].as_str().unwrap_or_default();
    let stage = r["stage"].as_i64().unwrap_or(0);
    let stages = r["stages"].as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "{env}: {state}, commit {} from {}",
        short(r["to_commit"].as_str().unwrap_or_default()),
        short(r["from_commit"].as_str().unwrap_or_default()),
    );
    if !stages.is_empty() && state != "done" {
        out.push_str(&format!(", stage {} of {}", stage + 1, stages.len()));
    }
    out.push('\n');
    if let Some(reason) = r["reason"].as_str().filter(|s| !s.is_empty()) {
        for line in reason.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    if let Some(request) = r["request"].as_str() {
        out.push_str(&format!("  requested: {request}\n"));
    }
    for (i, s) in stages.iter().enumerate() {
        let nodes: Vec<&str> = s["nodes"]
            .as_array()
            .map(|n| n.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mark = if !s["passed_at"].is_null() {
            "passed"
        } else if !s["started_at"].is_null() {
            "current"
        } else {
            "waiting"
        };
        out.push_str(&format!(
            "  stage {} ({}) {mark}: {}\n",
            i + 1,
            s["spec"].as_str().unwrap_or_default(),
            if nodes.is_empty() {
                "no nodes".to_owned()
            } else {
                nodes.join(", ")
            }
        ));
    }
    out
}
