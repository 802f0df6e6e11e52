//! `user` and `group`: accounts, through the system's own tools (useradd,
//! usermod, userdel, groupadd, groupmod, groupdel). They take the locks on
//! /etc/passwd, /etc/shadow and /etc/group; the agent never edits them itself.

use std::ffi::CString;

use anyhow::{Context as _, Result, bail};
use drover_catalog::model::{Ensure, GroupSpec, UserSpec};
use drover_catalog::report::Event;
use nix::unistd::{Group, User, getgrouplist};

use super::sensitive::OUTPUT_HIDDEN;
use super::{Env, Flags, Names, Outcome, event};

/// A user as the system has it.
#[derive(Debug, Clone, PartialEq)]
struct Account {
    uid: u32,
    /// Primary group, by name (by number when it has none).
    group: String,
    /// Supplementary groups, sorted.
    groups: Vec<String>,
    home: String,
    shell: String,
}

pub(crate) fn converge_user(spec: &UserSpec, env: &mut Env<'_>, flags: Flags) -> Result<Outcome> {
    let current = observe_user(&spec.name, &mut env.names)?;
    let mut events = Vec::new();
    let args = match (spec.ensure, &current) {
        (Ensure::Absent, None) => return Ok(Outcome::default()),
        (Ensure::Absent, Some(_)) => {
            events.push(event("ensure", Some("present".into()), None));
            vec!["userdel".to_owned(), spec.name.clone()]
        }
        (Ensure::Present, None) => {
            events.push(event("ensure", None, Some("present".into())));
            useradd_args(spec, group_exists(&spec.name)?)
        }
        (Ensure::Present, Some(have)) => {
            events = user_events(spec, have);
            if events.is_empty() {
                return Ok(Outcome::default());
            }
            usermod_args(spec, have)
        }
    };
    let creates = current.is_none();
    carry_out(
        &args,
        creates.then_some(&spec.name),
        Names::plan_user,
        env,
        flags,
    )?;
    Ok(Outcome { events, diff: None })
}

pub(crate) fn converge_group(spec: &GroupSpec, env: &mut Env<'_>, flags: Flags) -> Result<Outcome> {
    let current = Group::from_name(&spec.name)
        .with_context(|| format!("cannot look up group `{}`", spec.name))?
        .map(|g| g.gid.as_raw());
    let (events, args) = match (spec.ensure, current) {
        (Ensure::Absent, None) => return Ok(Outcome::default()),
        (Ensure::Absent, Some(_)) => (
            vec![event("ensure", Some("present".into()), None)],
            vec!["groupdel".to_owned(), spec.name.clone()],
        ),
        (Ensure::Present, None) => {
            let mut args = vec!["groupadd".to_owned()];
            if spec.system {
                args.push("--system".into());
            }
            if let Some(gid) = spec.gid {
                args.extend(["--gid".into(), gid.to_string()]);
            }
            args.push(spec.name.clone());
            (vec![event("ensure", None, Some("present".into()))], args)
        }
        (Ensure::Present, Some(have)) => match spec.gid {
            Some(want) if want != have => (
                vec![event("gid", Some(have.to_string()), Some(want.to_string()))],
                vec![
                    "groupmod".to_owned(),
                    "--gid".into(),
                    want.to_string(),
                    spec.name.clone(),
                ],
            ),
            _ => return Ok(Outcome::default()),
        },
    };
    let creates = current.is_none();
    carry_out(
        &args,
        creates.then_some(&spec.name),
        Names::plan_group,
        env,
        flags,
    )?;
    Ok(Outcome { events, diff: None })
}

/// Runs the shadow tool, unless noop: then an account it would create is
/// planned, so the resources after it can name it.
fn carry_out(
    args: &[String],
    creates: Option<&String>,
    plan: fn(&mut Names, &str),
    env: &mut Env<'_>,
    flags: Flags,
) -> Result<()> {
    if flags.noop {
        if let Some(name) = creates {
            plan(&mut env.names, name);
        }
        return Ok(());
    }
    run_tool(args, flags.sensitive)?;
    // Lookups cached earlier in this run may now be wrong.
    env.names = Names::default();
    Ok(())
}

fn observe_user(name: &str, names: &mut Names) -> Result<Option<Account>> {
    let Some(user) =
        User::from_name(name).with_context(|| format!("cannot look up user `{name}`"))?
    else {
        return Ok(None);
    };
    let cname = CString::new(name).with_context(|| format!("user name `{name}` holds a NUL"))?;
    let mut groups: Vec<String> = getgrouplist(&cname, user.gid)
        .with_context(|| format!("cannot list the groups of user `{name}`"))?
        .into_iter()
        .filter(|&g| g != user.gid)
        .map(|g| names.group_name(g.as_raw()))
        .collect();
    groups.sort();
    groups.dedup();
    Ok(Some(Account {
        uid: user.uid.as_raw(),
        group: names.group_name(user.gid.as_raw()),
        groups,
        home: user.dir.to_string_lossy().into_owned(),
        shell: user.shell.to_string_lossy().into_owned(),
    }))
}

fn group_exists(name: &str) -> Result<bool> {
    Ok(Group::from_name(name)
        .with_context(|| format!("cannot look up group `{name}`"))?
        .is_some())
}

/// One event per managed property that differs. `groups` empty means unmanaged.
fn user_events(spec: &UserSpec, have: &Account) -> Vec<Event> {
    let mut events = Vec::new();
    let mut differ = |property: &str, have: String, want: Option<String>| {
        if let Some(want) = want
            && want != have
        {
            events.push(event(property, Some(have), Some(want)));
        }
    };
    differ("uid", have.uid.to_string(), spec.uid.map(|u| u.to_string()));
    differ("group", have.group.clone(), spec.group.clone());
    if !spec.groups.is_empty() {
        differ(
            "groups",
            have.groups.join(","),
            Some(sorted(&spec.groups).join(",")),
        );
    }
    differ("home", have.home.clone(), spec.home.clone());
    differ("shell", have.shell.clone(), spec.shell.clone());
    events
}

fn sorted(groups: &[String]) -> Vec<String> {
    let mut groups = groups.to_vec();
    groups.sort();
    groups.dedup();
    groups
}

/// `useradd`: without a `group`, a same-named existing group becomes the
/// primary one (useradd would otherwise refuse to create the user).
fn useradd_args(spec: &UserSpec, same_named_group_exists: bool) -> Vec<String> {
    let mut args = vec!["useradd".to_owned()];
    if spec.system {
        args.push("--system".into());
    }
    if let Some(uid) = spec.uid {
        args.extend(["--uid".into(), uid.to_string()]);
    }
    match &spec.group {
        Some(group) => args.extend(["--gid".into(), group.clone()]),
        None if same_named_group_exists => args.extend(["--gid".into(), spec.name.clone()]),
        None => {}
    }
    if !spec.groups.is_empty() {
        args.extend(["--groups".into(), sorted(&spec.groups).join(",")]);
    }
    if let Some(home) = &spec.home {
        args.extend(["--home-dir".into(), home.clone()]);
    }
    if let Some(shell) = &spec.shell {
        args.extend(["--shell".into(), shell.clone()]);
    }
    args.push(spec.name.clone());
    args
}

/// One `usermod` for every property that differs.
fn usermod_args(spec: &UserSpec, have: &Account) -> Vec<String> {
    let mut args = vec!["usermod".to_owned()];
    for e in user_events(spec, have) {
        let flag = match e.property.as_str() {
            "uid" => "--uid",
            "group" => "--gid",
            "groups" => "--groups",
            "home" => "--home",
            "shell" => "--shell",
            other => unreachable!("user_events makes no `{other}` event"),
        };
        args.extend([flag.to_owned(), e.desired.expect("a differing value")]);
    }
    args.push(spec.name.clone());
    args
}

/// Runs one of the shadow tools; its own message is the error (for a
/// `sensitive` account, the tool's name only: its arguments are values).
fn run_tool(args: &[String], sensitive: bool) -> Result<()> {
    let out = super::tool(&args[0])
        .args(&args[1..])
        .env("LC_ALL", "C")
        .output()
        .with_context(|| {
            format!(
                "cannot run {}\nhint: it comes with Debian's `passwd` package",
                args[0]
            )
        })?;
    if !out.status.success() && sensitive {
        bail!(
            "`{}` failed ({}): arguments and {OUTPUT_HIDDEN}",
            args[0],
            out.status
        );
    }
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> UserSpec {
        UserSpec {
            name: "app".into(),
            ensure: Ensure::Present,
            uid: Some(1500),
            group: Some("app".into()),
            groups: vec!["video".into(), "audio".into()],
            home: Some("/srv/app".into()),
            shell: None,
            system: true,
        }
    }

    fn account() -> Account {
        Account {
            uid: 1500,
            group: "app".into(),
            groups: vec!["audio".into(), "video".into()],
            home: "/srv/app".into(),
            shell: "/bin/sh".into(),
        }
    }

    #[test]
    fn an_account_that_matches_has_no_events() {
        assert!(
            user_events(&spec(), &account()).is_empty(),
            "shell unmanaged"
        );
        let unmanaged_groups = UserSpec {
            groups: vec![],
            ..spec()
        };
        let mut more = account();
        more.groups.push("sudo".into());
        assert!(user_events(&unmanaged_groups, &more).is_empty());
    }

    #[test]
    fn usermod_changes_every_differing_property_at_once() {
        let mut have = account();
        have.uid = 1001;
        have.groups = vec!["audio".into()];
        let events = user_events(&spec(), &have);
        let props: Vec<_> = events.iter().map(|e| e.property.as_str()).collect();
        assert_eq!(props, ["uid", "groups"]);
        assert_eq!(events[1].previous.as_deref(), Some("audio"));
        assert_eq!(events[1].desired.as_deref(), Some("audio,video"));
        assert_eq!(
            usermod_args(&spec(), &have),
            ["usermod", "--uid", "1500", "--groups", "audio,video", "app"]
        );
    }

    #[test]
    fn useradd_takes_an_existing_same_named_group() {
        let plain = UserSpec {
            group: None,
            groups: vec![],
            uid: None,
            home: None,
            system: false,
            ..spec()
        };
        assert_eq!(useradd_args(&plain, false), ["useradd", "app"]);
        assert_eq!(
            useradd_args(&plain, true),
            ["useradd", "--gid", "app", "app"]
        );
        assert_eq!(
            useradd_args(&spec(), false),
            [
                "useradd",
                "--system",
                "--uid",
                "1500",
                "--gid",
                "app",
                "--groups",
                "audio,video",
                "--home-dir",
                "/srv/app",
                "app"
            ]
        );
    }

    #[test]
    fn a_sensitive_accounts_tool_failure_and_events_show_no_values() {
        let args: Vec<String> = [
            "sh",
            "-c",
            "echo \"bad value $0\" >&2; exit 1",
            "s3cret-home",
        ]
        .map(String::from)
        .to_vec();
        let plain = run_tool(&args, false).unwrap_err().to_string();
        assert!(plain.contains("bad value s3cret-home"), "{plain}");
        let hidden = run_tool(&args, true).unwrap_err().to_string();
        assert!(!hidden.contains("s3cret"), "{hidden}");
        assert!(hidden.starts_with("`sh` failed"), "{hidden}");

        let secret = UserSpec {
            home: Some("/srv/s3cret-home".into()),
            shell: Some("/bin/s3cret-shell".into()),
            ..spec()
        };
        let mut report = drover_catalog::report::ResourceReport::new(
            "user:app".to_string().try_into().unwrap(),
            drover_catalog::report::ResourceStatus::Changed,
        );
        report.events = user_events(&secret, &account());
        assert_eq!(report.events.len(), 2, "home and shell differ");
        report.error = Some(hidden);
        crate::resources::sensitive::hide(&mut report, &drover_catalog::Spec::User(secret));
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
    }
}
