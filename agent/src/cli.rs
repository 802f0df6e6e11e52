//! The command line: subcommands and flags (the contract of interfaces.md).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exit code of a usage error (sysexits' EX_USAGE); clap's own default, 2,
/// would collide with "something changed".
pub(crate) const EXIT_USAGE: i32 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "drover-agent",
    version,
    about = "Converges this node to its drover catalog and reports what changed"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Fetch this node's catalog from the server, converge, post the report
    Run(RunArgs),
    /// Converge from a compiled catalog JSON file or a catalog repository directory
    Apply(ApplyArgs),
    /// Print this node's facts as JSON (external ones of facts_dir included)
    Facts(ConfigArgs),
    /// Turn agent runs off until `enable`, saying why (Puppet's --disable)
    Disable(DisableArgs),
    /// Turn agent runs back on
    Enable(ConfigArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), as the package installs it
    #[command(hide = true)]
    Man,
}

/// `completions SHELL`: the script on stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> std::io::Result<()> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    // Into a buffer: `generate` panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "drover-agent", &mut script);
    std::io::Write::write_all(&mut std::io::stdout(), &script)
}

/// `man`: the man page on stdout.
pub(crate) fn man() -> std::io::Result<()> {
    use clap::CommandFactory;
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())
}

/// Where the configuration and the state are.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ConfigArgs {
    /// Configuration file (default /etc/drover/agent.toml, optional)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Agent state directory (default: the configuration's, else /var/lib/drover-agent)
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Args)]
pub(crate) struct DisableArgs {
    /// Why: shown by every run until `enable`
    #[arg(value_name = "REASON")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Flags shared by `run` and `apply` that override the configuration file.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct CommonArgs {
    /// Configuration file (default /etc/drover/agent.toml, optional)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's name (default: the hostname)
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Report what would change, change nothing
    #[arg(long)]
    pub noop: bool,
    /// Agent state: cached catalog, report spool, backups, last run summary
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The run lock (default /run/drover-agent.lock, or STATE_DIR/run.lock
    /// when the state dir is set explicitly)
    #[arg(long, value_name = "FILE")]
    pub lock_file: Option<PathBuf>,
    /// Messages as plain lines (or journal entries under systemd), or one JSON object per line on stdout
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<crate::output::LogFormat>,
    /// Converge only the resources with one of these tags (or ids, kind:name)
    /// and what they require
    #[arg(long, value_name = "TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Also print every unchanged resource
    #[arg(long)]
    pub verbose: bool,
    /// Also print each step of the run (lock, facts, catalog, report); implies --verbose
    #[arg(long)]
    pub debug: bool,
    /// Wait up to SECS for another run to release the run lock (default: fail at once)
    #[arg(long, value_name = "SECS")]
    pub wait_for_lock: Option<u64>,
}

#[derive(Debug, Clone, Default, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The drover server (default https://127.0.0.1:8140); several, given
    /// again or comma-separated, are tried in order
    #[arg(long = "server", value_name = "URL", value_delimiter = ',')]
    pub servers: Vec<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Run once and exit instead of running as a daemon
    #[arg(long)]
    pub once: bool,
    /// Exit 0 unchanged, 2 changed, 4 failures, 6 both (with --once)
    #[arg(long)]
    pub detailed_exitcodes: bool,
    /// The environment (branch) to ask the server for
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
}

/// How `run` gets and checks this node's identity (override agent.toml).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct TlsArgs {
    /// The server's CA certificate (PEM) to pin at enrollment (ca_file)
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// sha256 (hex) of the CA certificate fetched on first use (ca_fingerprint)
    #[arg(long, value_name = "HEX")]
    pub ca_fingerprint: Option<String>,
    /// A file holding the enrollment token (enrollment_token_file)
    #[arg(long, value_name = "FILE")]
    pub enrollment_token_file: Option<PathBuf>,
    /// Seconds to wait for a pending certificate request (wait_for_cert_secs, default 120)
    #[arg(long, value_name = "SECS")]
    pub wait_for_cert_secs: Option<u64>,
    /// INSECURE: talk plain HTTP to a server on a loopback address, without TLS or identity
    #[arg(long)]
    pub insecure_http: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ApplyArgs {
    /// A compiled catalog JSON file or a catalog repository directory
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Facts (a JSON object) used to compile a repository directory
    /// (default: this node's gathered facts)
    #[arg(long, value_name = "FILE")]
    pub facts: Option<PathBuf>,
    /// Where the contents of a catalog compiled with `--contents-dir` are
    /// (`DIR/SHA256`), read only for files that need them
    #[arg(long, value_name = "DIR")]
    pub contents_dir: Option<PathBuf>,
}

/// Parses argv; on failure prints clap's message and returns the exit code
/// (0 for --help/--version, 64 for a usage error).
pub(crate) fn parse() -> Result<Cli, i32> {
    parse_from(std::env::args_os())
}

pub(crate) fn parse_from<I, T>(args: I) -> Result<Cli, i32>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(cli),
        Err(err) => {
            use clap::error::ErrorKind;
            let code = match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => EXIT_USAGE,
            };
            // Printing to a closed pipe is not worth a panic.
            let _ = err.print();
            Err(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_flags_parse() {
        let cli = parse_from([
            "drover-agent",
            "run",
            "--once",
            "--noop",
            "--detailed-exitcodes",
            "--server",
            "http://x:1,http://y:2",
            "--server",
            "http://z:3",
            "--state-dir",
            "/tmp/s",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert!(run.once && run.detailed_exitcodes && run.common.noop);
        assert_eq!(run.servers, ["http://x:1", "http://y:2", "http://z:3"]);
        assert_eq!(run.common.state_dir, Some(PathBuf::from("/tmp/s")));
    }

    #[test]
    fn usage_errors_map_to_64_and_help_to_0() {
        assert_eq!(
            parse_from(["drover-agent", "run", "--bogus"]).unwrap_err(),
            64
        );
        assert_eq!(parse_from(["drover-agent"]).unwrap_err(), 64);
        assert_eq!(parse_from(["drover-agent", "apply"]).unwrap_err(), 64);
        assert_eq!(parse_from(["drover-agent", "--help"]).unwrap_err(), 0);
        assert_eq!(parse_from(["drover-agent", "--version"]).unwrap_err(), 0);
    }
}
