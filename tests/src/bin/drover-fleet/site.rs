//! The simulated site: a catalog repository with three roles of about
//! twenty resources each, some from `source` files so nodes fetch
//! contents, and a 500-resource role for the compile-throughput scenario.
//! A plain directory (development mode), or for the watch scenario a real
//! git repository that [`push`] commits a change to.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The roles nodes get, by name: `NAME-N` gets role `NAME` (and `base`).
pub(crate) const ROLES: [&str; 3] = ["web", "db", "cache"];

/// Nodes named `big-*` get the 500-resource role.
pub(crate) const BIG_PREFIX: &str = "big-";
pub(crate) const BIG_RESOURCES: usize = 500;

fn write(root: &Path, rel: &str, text: &str) -> Result<()> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    fs_err::write(path, text)?;
    Ok(())
}

/// Writes the repository under `root`.
pub(crate) fn generate(root: &Path) -> Result<()> {
    let mut nodes = String::new();
    for role in ROLES {
        writeln!(
            nodes,
            "[[node]]\nmatch = \"{role}-*\"\nroles = [\"{role}\"]\n"
        )?;
    }
    writeln!(
        nodes,
        "[[node]]\nmatch = \"{BIG_PREFIX}*\"\nroles = [\"big\"]\n"
    )?;
    write(root, "nodes.toml", &nodes)?;

    write(root, "roles/base.toml", &base(0))?;
    write(root, "files/hosts.allow", &hosts_allow(0))?;
    write(root, "files/ca-bundle.pem", &"A".repeat(16 * 1024))?;

    // Each role: 12 more resources, one shared `source` file of its own.
    for role in ROLES {
        let mut text = format!(
            "include = [\"base\"]\n\n[vars]\nport = {}\n\n[[directory]]\npath = \"/srv/{role}\"\nmode = \"0755\"\n\n",
            8000 + role.len()
        );
        writeln!(
            text,
            "[[file]]\npath = \"/srv/{role}/{role}.bin\"\nsource = \"files/{role}.bin\"\nmode = \"0644\"\n"
        )?;
        for i in 0..10 {
            writeln!(
                text,
                "[[file]]\npath = \"/srv/{role}/conf.d/{i:02}.conf\"\ncontent = \"# {role} {i} for {{{{ node }}}}\\nport = {{{{ vars.port }}}}\\nmemory = {{{{ facts.memory_mb }}}}\\n\"\nmode = \"0640\"\n"
            )?;
        }
        writeln!(
            text,
            "[[directory]]\npath = \"/srv/{role}/conf.d\"\nmode = \"0755\"\npurge = true\n"
        )?;
        write(root, &format!("roles/{role}.toml"), &text)?;
        write(
            root,
            &format!("files/{role}.bin"),
            &format!("{role}\n").repeat(1024),
        )?;
    }

    let mut big = String::from("[[directory]]\npath = \"/srv/big\"\nmode = \"0755\"\n\n");
    for i in 1..BIG_RESOURCES {
        writeln!(
            big,
            "[[file]]\npath = \"/srv/big/f{i:04}\"\ncontent = \"file {i} of {{{{ node }}}} at {{{{ facts.ipaddress }}}}\\n\"\nmode = \"0644\"\n"
        )?;
    }
    write(root, "roles/big.toml", &big)?;
    Ok(())
}

/// base: 8 resources every node has, two of them from `source` files; the
/// greeting (in every node's motd) names the `push`.
fn base(push: u32) -> String {
    let greeting = if push == 0 {
        "managed by drover".to_owned()
    } else {
        format!("managed by drover, push {push}")
    };
    format!(
        r#"[vars]
greeting = "{greeting}"

[[directory]]
path = "/srv/fleet"
mode = "0755"

[[directory]]
path = "/srv/fleet/etc"
mode = "0755"

[[file]]
path = "/srv/fleet/etc/motd"
content = "{{{{ vars.greeting }}}} on {{{{ node }}}} ({{{{ facts.os.id }}}} {{{{ facts.os.version }}}})\n"
mode = "0644"

[[file]]
path = "/srv/fleet/etc/hosts.allow"
source = "files/hosts.allow"
mode = "0644"

[[file]]
path = "/srv/fleet/etc/ca-bundle.pem"
source = "files/ca-bundle.pem"
mode = "0644"

[[file]]
path = "/srv/fleet/etc/node.json"
content = "{{\"node\": \"{{{{ node }}}}\", \"ip\": \"{{{{ facts.ipaddress }}}}\"}}\n"
mode = "0644"

[[package]]
name = "curl"
ensure = "installed"

[[package]]
name = "ca-certificates"
ensure = "installed"
"#
    )
}

/// A source file of every node, so a push also makes each fetch a content.
fn hosts_allow(push: u32) -> String {
    let rule = "sshd: 10.0.0.0/8\n";
    if push == 0 {
        rule.to_owned()
    } else {
        format!("# push {push}\n{rule}")
    }
}

fn git(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=drover-fleet",
            "-c",
            "user.email=fleet@drover.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(root)
        .output()
        .context("cannot run git\nhint: apt-get install git")?;
    if !out.status.success() {
        bail!(
            "git {} in {} failed: {}",
            args.join(" "),
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Makes the generated site a git repository on branch `main`, one commit.
pub(crate) fn init_git(root: &Path) -> Result<()> {
    git(root, &["init", "-q", "-b", "main"])?;
    git(root, &["add", "-A"])?;
    git(root, &["commit", "-q", "-m", "the simulated site"])?;
    Ok(())
}

/// Commits push number `n`: a new greeting (every node's motd) and a new
/// `files/hosts.allow`, so every node's catalog moves and each fetches one
/// content. Returns the commit id.
pub(crate) fn push(root: &Path, n: u32) -> Result<String> {
    write(root, "roles/base.toml", &base(n))?;
    write(root, "files/hosts.allow", &hosts_allow(n))?;
    git(root, &["commit", "-q", "-a", "-m", &format!("push {n}")])?;
    git(root, &["rev-parse", "HEAD"])
}
