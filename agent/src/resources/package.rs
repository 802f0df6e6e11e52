//! `package`: apt and dpkg on Debian. The packages of a batch change in one
//! apt transaction; a package apt cannot resolve fails alone, with apt's own
//! words, and the rest still go ahead.

use std::collections::HashMap;

use anyhow::{Context as _, Result, anyhow, bail};
use drover_catalog::model::{PackageEnsure, PackageSpec};

use super::{Env, Flags, Outcome, event};

/// What dpkg says is on the system: name -> installed version.
type Installed = HashMap<String, String>;

/// Converges packages together; one result per input, in order.
pub(crate) fn converge_batch(
    specs: &[(&PackageSpec, Flags)],
    env: &mut Env<'_>,
) -> Vec<Result<Outcome>> {
    let names: Vec<&str> = specs.iter().map(|(s, _)| s.name.as_str()).collect();
    let installed = match query_installed(&names) {
        Ok(i) => i,
        Err(e) => {
            let e = format!("{e:#}");
            return specs.iter().map(|_| Err(anyhow!("{e}"))).collect();
        }
    };
    let mut results: Vec<Option<Result<Outcome>>> = specs.iter().map(|_| None).collect();
    let mut pending: Vec<Change> = Vec::new();
    for (index, (spec, _)) in specs.iter().enumerate() {
        match wanted_change(spec, installed.get(&spec.name)) {
            Some(arg) => pending.push(Change { index, arg }),
            None => results[index] = Some(Ok(Outcome::default())),
        }
    }
    if !pending.is_empty() {
        plan_and_apply(specs, &installed, pending, env, &mut results);
    }
    results
        .into_iter()
        .map(|r| r.expect("every package has a result"))
        .collect()
}

/// A package that must change: its index in the batch and its apt-get argument.
#[derive(Debug)]
struct Change {
    index: usize,
    arg: String,
}

fn apt_args(changes: &[Change]) -> Vec<String> {
    changes.iter().map(|c| c.arg.clone()).collect()
}

/// The same error for every one of `changes`.
fn fail_all(results: &mut [Option<Result<Outcome>>], changes: &[Change], error: &anyhow::Error) {
    for c in changes {
        results[c.index] = Some(Err(anyhow!("{error:#}")));
    }
}

/// Simulates the changes, sets aside the packages apt cannot resolve, then
/// applies the rest (those not in noop) in one transaction.
fn plan_and_apply(
    specs: &[(&PackageSpec, Flags)],
    installed: &Installed,
    mut pending: Vec<Change>,
    env: &mut Env<'_>,
    results: &mut [Option<Result<Outcome>>],
) {
    let mut plan = simulate(&apt_args(&pending));
    if plan.is_err() && !env.apt_updated {
        // Stale or missing package lists are the usual cause: refresh once per run.
        env.apt_updated = true;
        if let Err(e) = apt_get(&["update"]) {
            return fail_all(results, &pending, &e);
        }
        plan = simulate(&apt_args(&pending));
    }
    if plan.is_err() {
        // Find the culprits one by one; the others form the transaction.
        pending.retain(|c| match simulate(std::slice::from_ref(&c.arg)) {
            Ok(_) => true,
            Err(e) => {
                let spec = specs[c.index].0;
                let what = format!(
                    "package `{}` cannot be {}",
                    spec.name,
                    describe_ensure(&spec.ensure)
                );
                results[c.index] = Some(Err(e.context(what)));
                false
            }
        });
        plan = simulate(&apt_args(&pending));
    }
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => return fail_all(results, &pending, &e),
    };

    let (noop, real): (Vec<Change>, Vec<Change>) =
        pending.into_iter().partition(|c| specs[c.index].1.noop);
    for c in &noop {
        results[c.index] = Some(Ok(outcome(specs[c.index].0, installed, &plan, true)));
    }
    if real.is_empty() {
        return;
    }
    if let Err(e) = install(&apt_args(&real)) {
        return fail_all(results, &real, &e);
    }
    let names: Vec<&str> = real
        .iter()
        .map(|c| specs[c.index].0.name.as_str())
        .collect();
    let now = match query_installed(&names) {
        Ok(now) => now,
        Err(e) => return fail_all(results, &real, &e),
    };
    for c in &real {
        let spec = specs[c.index].0;
        // Trust dpkg, not apt's exit code: the package must now be as wanted.
        results[c.index] = Some(match wanted_change(spec, now.get(&spec.name)) {
            None => Ok(outcome(spec, installed, &plan, false)),
            Some(_) => Err(anyhow!(
                "apt-get finished but package `{}` is still not {}",
                spec.name,
                describe_ensure(&spec.ensure)
            )),
        });
    }
}

/// The apt-get argument for a package that must change, or `None`.
fn wanted_change(spec: &PackageSpec, installed: Option<&String>) -> Option<String> {
    match (&spec.ensure, installed) {
        (PackageEnsure::Installed, None) => Some(spec.name.clone()),
        (PackageEnsure::Version(v), Some(have)) if have == v => None,
        (PackageEnsure::Version(v), _) => Some(format!("{}={v}", spec.name)),
        (PackageEnsure::Absent, Some(_)) => Some(format!("{}-", spec.name)),
        _ => None,
    }
}

fn describe_ensure(ensure: &PackageEnsure) -> String {
    match ensure {
        PackageEnsure::Installed => "installed".into(),
        PackageEnsure::Absent => "absent".into(),
        PackageEnsure::Version(v) => format!("at version {v}"),
    }
}

/// The `ensure` event, with what apt did (or would do) in its message.
fn outcome(spec: &PackageSpec, installed: &Installed, plan: &Plan, noop: bool) -> Outcome {
    let previous = installed.get(&spec.name).cloned();
    let desired = match &spec.ensure {
        PackageEnsure::Absent => None,
        PackageEnsure::Version(v) => Some(v.clone()),
        PackageEnsure::Installed => Some(
            plan.version_of(&spec.name)
                .unwrap_or("installed")
                .to_owned(),
        ),
    };
    let mut ev = event("ensure", previous, desired);
    let verb = if noop { "apt would" } else { "apt did" };
    let mine = plan.lines_for(&spec.name);
    let others = plan.lines_not_for_any(&[spec.name.as_str()]);
    let mut message = format!("{verb}: {}", mine.join("; "));
    if !others.is_empty() {
        message.push_str(&format!(
            " (in the same transaction: {})",
            others.join("; ")
        ));
    }
    ev.message = Some(message);
    Outcome {
        events: vec![ev],
        diff: None,
    }
}

/// apt's plan from a simulation: its `Inst`/`Remv` lines.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// (package, the line without its verb prefix), e.g. ("hello", "Inst hello (2.10-3 ...)").
    steps: Vec<(String, String)>,
}

impl Plan {
    fn parse(output: &str) -> Plan {
        let steps = output
            .lines()
            .filter(|l| l.starts_with("Inst ") || l.starts_with("Remv "))
            .filter_map(|l| {
                let name = l.split_whitespace().nth(1)?;
                let name = name.split(':').next().unwrap_or(name);
                Some((name.to_owned(), l.to_owned()))
            })
            .collect();
        Plan { steps }
    }

    /// The version an `Inst` line installs: `Inst hello [old] (2.10-3 Debian:12/stable [amd64])`.
    fn version_of(&self, name: &str) -> Option<&str> {
        self.steps
            .iter()
            .find(|(n, l)| n == name && l.starts_with("Inst "))
            .and_then(|(_, l)| l.split_once('(')?.1.split_whitespace().next())
    }

    fn lines_for(&self, name: &str) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, l)| l.as_str())
            .collect()
    }

    fn lines_not_for_any(&self, names: &[&str]) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|(n, _)| !names.contains(&n.as_str()))
            .map(|(_, l)| l.as_str())
            .collect()
    }
}

/// `apt-get install -s`: what apt would do, or apt's error lines.
fn simulate(args: &[String]) -> Result<Plan> {
    let mut all = vec!["install", "-s"];
    all.extend(args.iter().map(String::as_str));
    apt_get(&all).map(|out| Plan::parse(&out))
}

fn install(args: &[String]) -> Result<()> {
    let mut all = vec![
        "install",
        "-y",
        "--allow-downgrades",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
    ];
    all.extend(args.iter().map(String::as_str));
    apt_get(&all).map(|_| ())
}

/// Runs apt-get non-interactively; on failure the error holds apt's `E:` lines.
fn apt_get(args: &[&str]) -> Result<String> {
    let out = super::tool("apt-get")
        .arg("-q")
        .args(["-o", "DPkg::Lock::Timeout=120"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("APT_LISTCHANGES_FRONTEND", "none")
        .env("LC_ALL", "C")
        .output()
        .context("cannot run apt-get\nhint: the package kind needs apt (Debian and derivatives)")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    bail!(
        "apt-get {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        apt_errors(&stdout, &stderr)
    )
}

/// apt's `E:` lines, or the last lines of its output when there are none.
fn apt_errors(stdout: &str, stderr: &str) -> String {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("E: ")).collect();
    if !errors.is_empty() {
        return errors.join("\n");
    }
    let all: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    all[all.len().saturating_sub(15)..].join("\n")
}

/// dpkg's view of the named packages: those fully installed, with their version.
fn query_installed(names: &[&str]) -> Result<Installed> {
    let out = super::tool("dpkg-query")
        .args([
            "-W",
            "-f",
            "${Package}\t${binary:Package}\t${db:Status-Status}\t${Version}\n",
        ])
        .args(names)
        .env("LC_ALL", "C")
        .output()
        .context(
            "cannot run dpkg-query\nhint: the package kind needs dpkg (Debian and derivatives)",
        )?;
    // dpkg-query exits 1 when a name matches nothing: that just means absent.
    if !out.status.success() && out.status.code() != Some(1) {
        bail!(
            "dpkg-query failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_installed(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_installed(output: &str) -> Installed {
    let mut installed = Installed::new();
    for line in output.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        if let [package, binary, "installed", version] = fields[..] {
            installed.insert(package.to_owned(), version.to_owned());
            if binary != package {
                installed.insert(binary.to_owned(), version.to_owned());
            }
        }
    }
    installed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, ensure: PackageEnsure) -> PackageSpec {
        PackageSpec {
            name: name.into(),
            ensure,
        }
    }

    #[test]
    fn dpkg_query_output_keeps_installed_packages_only() {
        let out = "hello\thello\tinstalled\t2.10-3\n\
                   libc6\tlibc6:amd64\tinstalled\t2.36-9\n\
                   nginx\tnginx\tconfig-files\t1.22\n";
        let installed = parse_installed(out);
        assert_eq!(installed["hello"], "2.10-3");
        assert_eq!(installed["libc6:amd64"], "2.36-9");
        assert_eq!(installed["libc6"], "2.36-9");
        assert!(!installed.contains_key("nginx"), "only config files left");
    }

    #[test]
    fn wanted_change_is_the_apt_argument() {
        let v = "2.10-3".to_owned();
        let installed = |e| spec("hello", e);
        assert_eq!(
            wanted_change(&installed(PackageEnsure::Installed), None).as_deref(),
            Some("hello")
        );
        assert_eq!(
            wanted_change(&installed(PackageEnsure::Installed), Some(&v)),
            None
        );
        assert_eq!(
            wanted_change(&installed(PackageEnsure::Absent), Some(&v)).as_deref(),
            Some("hello-")
        );
        assert_eq!(wanted_change(&installed(PackageEnsure::Absent), None), None);
        let pinned = installed(PackageEnsure::Version("2.10-4".into()));
        assert_eq!(
            wanted_change(&pinned, Some(&v)).as_deref(),
            Some("hello=2.10-4")
        );
        let same = installed(PackageEnsure::Version(v.clone()));
        assert_eq!(wanted_change(&same, Some(&v)), None);
    }

    #[test]
    fn plan_reads_versions_and_splits_dependencies() {
        let out = "Reading package lists...\n\
                   Inst libfoo (1.0 Debian:12/stable [amd64])\n\
                   Inst hello [2.10-2] (2.10-3 Debian:12/stable [amd64])\n\
                   Remv old-thing [3.1]\n\
                   Conf hello (2.10-3 Debian:12/stable [amd64])\n";
        let plan = Plan::parse(out);
        assert_eq!(plan.version_of("hello"), Some("2.10-3"));
        assert_eq!(plan.version_of("old-thing"), None);
        let installed: Installed = [("hello".to_owned(), "2.10-2".to_owned())].into();
        let o = outcome(
            &spec("hello", PackageEnsure::Installed),
            &installed,
            &plan,
            true,
        );
        let ev = &o.events[0];
        assert_eq!(
            (ev.previous.as_deref(), ev.desired.as_deref()),
            (Some("2.10-2"), Some("2.10-3"))
        );
        let message = ev.message.as_deref().unwrap();
        assert!(
            message.starts_with("apt would: Inst hello [2.10-2]"),
            "{message}"
        );
        assert!(
            message.contains("same transaction: Inst libfoo"),
            "{message}"
        );
        assert!(message.contains("Remv old-thing"), "{message}");
    }

    #[test]
    fn apt_errors_prefer_e_lines() {
        let stderr = "W: something\nE: Unable to locate package nosuch\n";
        assert_eq!(
            apt_errors("Reading...\n", stderr),
            "E: Unable to locate package nosuch"
        );
        assert_eq!(apt_errors("a\nb\n", ""), "a\nb");
    }
}
