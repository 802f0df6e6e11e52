//! `drover-server`: parses the command line and hands off to the library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use drover_server::cli::{self, Cli, Command};
use drover_server::config::Config;
use tokio_util::sync::CancellationToken;

/// Usage errors exit 64 (EX_USAGE), never clap's 2: 2 means "changed" in drover.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_USAGE),
            };
        }
    };
    // `serve` reads its config first: `log_format` may be set there.
    let (serving, format) = match &cli.command {
        Command::Serve(args) => match Config::load(args.overrides()) {
            Ok(config) => {
                let format = cli.log_format.unwrap_or(config.log_format);
                (Some(config), format)
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        _ => (None, cli.log_format.unwrap_or_default()),
    };
    init_tracing(format);
    let result = match (&cli.command, serving) {
        (Command::Serve(_), Some(config)) => serve(config),
        (Command::Serve(_), None) => unreachable!("serve's config was loaded above"),
        (Command::Compile(args), _) => cli::compile(args),
        (Command::Check(args), _) => cli::check(args),
        (Command::Ca(args), _) => cli::ca(args),
        (Command::Apps(args), _) => cli::apps(args),
        (Command::Explain(args), _) => cli::explain(args),
        (Command::Plan(args), _) => cli::plan(args),
        (Command::Node(args), _) => cli::node(args),
        (Command::Lookup(args), _) => cli::lookup(args),
        (Command::Diff(args), _) => cli::diff(args),
        (Command::Completions { shell }, _) => cli::completions(*shell),
        (Command::Man, _) => cli::man(),
        (Command::Rollout(args), _) => cli::rollout(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Not `eprintln!`: it panics when stderr cannot be written.
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: drover_server::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // PostgreSQL's notices ("relation ... already exists, skipping" at
        // every migration check) are not the operator's business.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn"));
    // Colour for a person at a terminal; a file, a pipe or the journal gets
    // plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(drover_server::metrics::log::stderr_writer)
        .log_internal_errors(false);
    match format {
        drover_server::config::LogFormat::Text => builder.with_ansi(ansi).init(),
        drover_server::config::LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

fn serve(config: Config) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(on_signal(shutdown.clone()));
        drover_server::run(config, shutdown).await
    })?;
    Ok(0)
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
