//! drover-agent: parse the command line, dispatch, turn the outcome into an exit code.

mod apply;
mod backoff;
mod cli;
mod client;
mod config;
mod contents;
mod daemon;
mod diff;
mod disable;
mod engine;
mod facts;
mod filecache;
mod fsutil;
mod http;
mod identity;
mod lock;
mod metrics;
mod output;
mod resources;
mod run;
mod safepath;
mod state;
mod systemd;
mod tags;
#[cfg(test)]
mod testutil;
mod watch;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Command, RunArgs};
use crate::config::{FileConfig, Overrides, Settings};
use crate::daemon::Signals;

/// The run could not happen (lock held, no catalog, bad config).
const EXIT_CANNOT_RUN: u8 = 1;

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code as u8),
    };
    let result = match cli.command {
        Command::Facts(args) => facts(&args),
        Command::Disable(args) => disable(&args),
        Command::Enable(args) => enable(&args),
        Command::Completions { shell } => cli::completions(shell).map(|()| 0).map_err(Into::into),
        Command::Man => cli::man().map(|()| 0).map_err(Into::into),
        Command::Run(args) => run(&args),
        Command::Apply(args) => apply(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            output::error(&format!("{e:#}"));
            ExitCode::from(EXIT_CANNOT_RUN)
        }
    }
}

fn facts(args: &cli::ConfigArgs) -> Result<u8> {
    let settings = settings_of(args)?;
    let facts = facts::gather_with(&settings.facts_dir)?;
    println!("{}", serde_json::to_string_pretty(&facts)?);
    Ok(0)
}

/// `--debug` wins over `--verbose`.
fn verbosity(common: &cli::CommonArgs) -> output::Verbosity {
    match (common.debug, common.verbose) {
        (true, _) => output::Verbosity::Debug,
        (false, true) => output::Verbosity::Verbose,
        _ => output::Verbosity::Normal,
    }
}

/// The settings of a command that needs only the configuration file and
/// the state directory.
fn settings_of(args: &cli::ConfigArgs) -> Result<Settings> {
    let file = FileConfig::load(args.config.as_deref())?;
    let common = cli::CommonArgs {
        config: args.config.clone(),
        state_dir: args.state_dir.clone(),
        ..cli::CommonArgs::default()
    };
    Settings::resolve(
        file,
        Overrides {
            common: Some(&common),
            ..Overrides::default()
        },
    )
}

fn disable(args: &cli::DisableArgs) -> Result<u8> {
    let settings = settings_of(&args.config)?;
    let d = disable::disable(&settings.state_dir, args.reason.as_deref())?;
    println!("runs are disabled: {} (by {} at {})", d.reason, d.by, d.at);
    Ok(0)
}

fn enable(args: &cli::ConfigArgs) -> Result<u8> {
    let settings = settings_of(args)?;
    match disable::enable(&settings.state_dir)? {
        Some(d) => println!(
            "runs are enabled (they were disabled by {} at {}: {})",
            d.by, d.at, d.reason
        ),
        None => println!("runs are enabled (they were not disabled)"),
    }
    Ok(0)
}

fn run(args: &RunArgs) -> Result<u8> {
    let file = FileConfig::load(args.common.config.as_deref())?;
    let settings = Settings::resolve(
        file,
        Overrides {
            common: Some(&args.common),
            servers: &args.servers,
            environment: args.environment.as_deref(),
            tls: Some(&args.tls),
        },
    )?;
    output::use_format(settings.log_format);
    output::use_verbosity(verbosity(&args.common));
    if !args.once {
        let signals = Signals::install_with_reload()?;
        return daemon::run_daemon(&settings, signals).map(|code| code as u8);
    }
    let signals = Signals::install()?;
    let code = run::run_once(&settings, &signals.stop)?.exit_code();
    Ok(match (args.detailed_exitcodes, code & 4 != 0) {
        (true, _) => code as u8,
        (false, true) => 1,
        (false, false) => 0,
    })
}

fn apply(args: &cli::ApplyArgs) -> Result<u8> {
    let file = FileConfig::load(args.common.config.as_deref())?;
    let settings = Settings::resolve(
        file,
        Overrides {
            common: Some(&args.common),
            ..Overrides::default()
        },
    )?;
    output::use_format(settings.log_format);
    output::use_verbosity(verbosity(&args.common));
    let signals = Signals::install()?;
    let source = apply::Source {
        path: &args.path,
        facts: args.facts.as_deref(),
        contents_dir: args.contents_dir.as_deref(),
    };
    let code = apply::apply(source, &settings, &signals.stop)?;
    Ok(code as u8)
}
