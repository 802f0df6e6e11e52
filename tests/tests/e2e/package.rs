//! The Debian packages (`scripts/package`), built from this build's
//! binaries: they pass lintian with no error (the script fails otherwise),
//! hold what an operator expects where Debian puts it, mark the
//! configuration as conffiles; and the server's unit is confined to a
//! `systemd-analyze security` exposure of 3.0 or lower. Installing them on
//! a booted node is `tests/tests/nodes/packages.rs`.

use std::path::Path;
use std::process::Command;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn output(cmd: &mut Command) -> drover_tests::Output {
    let out = cmd.output().expect("the command runs");
    drover_tests::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn the_packages_build_pass_lintian_and_hold_what_operators_expect() {
    let out_dir = tempfile::tempdir().unwrap();
    let bins = drover_tests::bin("drover-server");
    let built = output(
        Command::new(repo_root().join("scripts/package"))
            .arg("--from")
            .arg(bins.parent().unwrap())
            .env("DROVER_PACKAGE_OUT", out_dir.path()),
    );
    built.expect_code(0);
    assert!(
        built.stdout.contains("lintian: no errors"),
        "{}",
        built.stdout
    );
    let version = env!("CARGO_PKG_VERSION");
    for (name, files, conffile) in [
        (
            "drover-server",
            &[
                "./usr/bin/drover-server",
                "./usr/lib/systemd/system/drover-server.service",
                "./usr/lib/sysusers.d/drover-server.conf",
            ][..],
            "/etc/drover/server.toml",
        ),
        (
            "drover-agent",
            &[
                "./usr/bin/drover-agent",
                "./usr/lib/systemd/system/drover-agent.service",
                "./usr/lib/systemd/system/drover-agent-once.timer",
            ][..],
            "/etc/drover/agent.toml",
        ),
    ] {
        let deb = out_dir.path().join(format!("{name}_{version}_amd64.deb"));
        let listing = output(Command::new("dpkg-deb").arg("-c").arg(&deb));
        listing.expect_code(0);
        let common = [
            format!("./usr/share/man/man1/{name}.1.gz"),
            format!("./usr/share/bash-completion/completions/{name}"),
            format!("./usr/share/zsh/vendor-completions/_{name}"),
            format!("./usr/share/fish/vendor_completions.d/{name}.fish"),
            format!("./usr/share/doc/{name}/copyright"),
            format!("./usr/share/doc/{name}/changelog.gz"),
            format!(".{conffile}"),
        ];
        for file in files.iter().map(|f| (*f).to_owned()).chain(common) {
            assert!(
                listing
                    .stdout
                    .lines()
                    .any(|l| l.ends_with(&format!(" {file}"))),
                "{name} lacks {file}:\n{}",
                listing.stdout
            );
        }
        let info = output(
            Command::new("dpkg-deb")
                .arg("-I")
                .arg(&deb)
                .arg("conffiles"),
        );
        assert_eq!(info.stdout.trim(), conffile, "{name}");
        // The packaged units run the packaged binary.
        let unit = format!("./usr/lib/systemd/system/{name}.service");
        let text = output(Command::new("sh").arg("-c").arg(format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -xO '{unit}'",
            deb.display()
        )));
        text.expect_code(0);
        assert!(
            text.stdout.contains(&format!("ExecStart=/usr/bin/{name} ")),
            "{unit}:\n{}",
            text.stdout
        );
    }
}

#[test]
fn the_server_unit_is_confined_to_an_exposure_of_3_or_lower() {
    let unit = repo_root().join("server/systemd/drover-server.service");
    let out = output(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=30", "--no-pager"])
            .arg(&unit),
    );
    let last = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level:\n{}\n{}", out.stdout, out.stderr));
    let score: f64 = last
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {last:?}"));
    assert!(score <= 3.0, "{last}\n{}", out.stdout);
    out.expect_code(0);
}
