//! `exec`: a command run when its guards say so (`creates`, `unless`,
//! `onlyif`), or only on refresh (`refreshonly`). Idempotence comes from the
//! guards: an exec whose guards say "done" is unchanged.
//!
//! A run is reported as Puppet does: `returns notrun -> 0`, with the output.

mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use drover_catalog::model::{Command, ExecSpec};
use nix::unistd::{Uid, User};

use super::{Env, Flags, Outcome, event, observe};
use process::{Identity, Invocation, Ran};

/// The PATH of every command unless its `env` sets another.
pub(crate) const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Puppet's default; `timeout_secs = 0` means no limit.
const DEFAULT_TIMEOUT_SECS: u64 = 300;

pub(crate) fn converge(spec: &ExecSpec, env: &mut Env<'_>, flags: Flags) -> Result<Outcome> {
    if spec.refreshonly && !flags.refresh {
        return Ok(Outcome::default());
    }
    if let Some(path) = &spec.creates
        && observe(Path::new(path))?.is_some()
    {
        return Ok(Outcome::default());
    }
    if flags.noop
        && let Some(user) = &spec.user
        && env.names.is_planned_user(user)
    {
        let mut would = event("returns", Some("notrun".into()), Some("0".into()));
        would.message = Some(format!(
            "would run once user `{user}` exists (this noop run would create it); guards not evaluated"
        ));
        return Ok(single(would));
    }
    let how = invocation(spec)?;
    if !guards_allow(spec, &how)? {
        return Ok(Outcome::default());
    }
    let mut ran = event("returns", Some("notrun".into()), Some("0".into()));
    if flags.noop {
        if spec.refreshonly {
            ran.message = Some("would run: a resource it subscribes to would change".into());
        }
        return Ok(single(ran));
    }
    let finished = process::run(&spec.command, &how)?;
    let output = (!flags.sensitive).then(|| finished.output.text());
    match finished.ran {
        Ran::Exited(status) if status.success() => {
            ran.message = output.filter(|text| !text.is_empty());
            Ok(single(ran))
        }
        Ran::Exited(status) => bail!("{}{}", describe_exit(status), output_note(output)),
        Ran::TimedOut => bail!(
            "timed out after {} s; process group killed{}",
            how.timeout.unwrap_or_default().as_secs(),
            output_note(output)
        ),
    }
}

fn single(event: drover_catalog::report::Event) -> Outcome {
    Outcome {
        events: vec![event],
        diff: None,
    }
}

/// User, cwd, environment and timeout, shared by the command and its guards.
fn invocation(spec: &ExecSpec) -> Result<Invocation> {
    let user = spec.user.as_deref().map(Identity::lookup).transpose()?;
    let cwd = PathBuf::from(spec.cwd.as_deref().unwrap_or("/"));
    if !fs_err::metadata(&cwd).is_ok_and(|md| md.is_dir()) {
        bail!(
            "cwd {} does not exist or is not a directory\nhint: manage it with a directory resource that this exec requires",
            cwd.display()
        );
    }
    let account = match &user {
        Some(user) => Some((user.name.clone(), user.home.clone())),
        None => User::from_uid(Uid::effective())
            .ok()
            .flatten()
            .map(|u| (u.name, u.dir)),
    };
    let timeout = match spec.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS) {
        0 => None,
        secs => Some(Duration::from_secs(secs)),
    };
    Ok(Invocation {
        env: environment(account, &spec.env),
        cwd,
        user,
        timeout,
    })
}

/// A clean, minimal environment; the exec's own `env` is added last and wins.
fn environment(
    account: Option<(String, PathBuf)>,
    extra: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_owned(), PATH.to_owned());
    env.insert("LANG".to_owned(), "C".to_owned());
    if let Some((name, home)) = account {
        env.insert("HOME".to_owned(), home.to_string_lossy().into_owned());
        env.insert("USER".to_owned(), name.clone());
        env.insert("LOGNAME".to_owned(), name);
    }
    env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.into_iter().collect()
}

/// `unless` succeeding or `onlyif` failing says the command is not needed.
fn guards_allow(spec: &ExecSpec, how: &Invocation) -> Result<bool> {
    if let Some(unless) = &spec.unless
        && guard_succeeds(unless, how, "unless")?
    {
        return Ok(false);
    }
    if let Some(onlyif) = &spec.onlyif
        && !guard_succeeds(onlyif, how, "onlyif")?
    {
        return Ok(false);
    }
    Ok(true)
}

fn guard_succeeds(command: &Command, how: &Invocation, which: &str) -> Result<bool> {
    let finished =
        process::run(command, how).with_context(|| format!("guard `{which}` could not run"))?;
    match finished.ran {
        Ran::Exited(status) => Ok(status.success()),
        Ran::TimedOut => bail!(
            "guard `{which}` timed out after {} s; process group killed",
            how.timeout.unwrap_or_default().as_secs()
        ),
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("command exited with status {code}"),
        (None, Some(signal)) => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map_or_else(|_| signal.to_string(), |s| s.as_str().to_owned());
            format!("command was killed by signal {name}")
        }
        (None, None) => format!("command ended with {status}"),
    }
}

/// The output under an error; `None` when the resource is sensitive.
fn output_note(output: Option<String>) -> String {
    match output.as_deref() {
        None => "\n(output hidden: the resource is sensitive)".to_owned(),
        Some("") => String::new(),
        Some(text) => format!("\noutput:\n{text}"),
    }
}

#[cfg(test)]
mod tests;
