//! The real Docker engine for the container tests, through the `docker` CLI:
//! the test image (built locally, no registry), image and container helpers,
//! and [`Containers`], which removes everything a test made, also on panic.
//!
//! ```no_run
//! use drover_tests::docker::{self, Containers};
//! let docker = Containers::new("my_test");
//! let image = docker::ensure_image();
//! docker.run("by-hand", &[image, "sleep", "60"]);
//! assert!(docker::inspect(&docker.name("by-hand")).is_some());
//! ```
//!
//! Needs a running dockerd and Debian's busybox-static (scripts/test installs
//! both and starts dockerd).

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Once, OnceLock};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::Output;

/// The image every container test runs: a static busybox and a web root.
pub const IMAGE: &str = "drover-test/busybox:1";
/// Busybox applets linked into the image's /bin.
const APPLETS: &[&str] = &[
    "sh", "wget", "httpd", "sleep", "cat", "echo", "false", "true",
];
/// Label on the image naming the recipe it was built from: an image with
/// another value (or none) is rebuilt. Bump it whenever the recipe changes.
const RECIPE_LABEL: &str = "drover-test.recipe";
const RECIPE: &str = "2";
/// Where the build lock lives (the node image's cache, same machine-wide scope).
const CACHE_DIR: &str = "/var/cache/drover-tests";
/// Body of /www/index.html in the image.
pub const INDEX_HTML: &str = "hello\n";

/// Runs `docker ARGS` and returns what it printed, whatever the exit code.
pub fn docker(args: &[&str]) -> Output {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `docker {}`: {e}\nhint: install docker.io and start dockerd (scripts/test does both)",
                args.join(" ")
            )
        });
    Output::from(out)
}

/// Runs `docker ARGS`, panics with its stderr unless it succeeds, and returns stdout.
#[track_caller]
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.code == 0,
        "`docker {}` failed with exit code {}\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        out.code,
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// The test image, built on first use on this machine (see [`IMAGE`]).
pub fn ensure_image() -> &'static str {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_once().map_err(|e| format!("{e:#}")))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"));
    IMAGE
}

fn image_is_current() -> bool {
    let format = format!("{{{{index .Config.Labels \"{RECIPE_LABEL}\"}}}}");
    let out = docker(&["image", "inspect", "--format", &format, IMAGE]);
    out.code == 0 && out.stdout.trim() == RECIPE
}

/// Builds the image unless it is there, under a machine-wide lock so
/// concurrent test processes build it once.
fn build_once() -> Result<()> {
    if image_is_current() {
        return Ok(());
    }
    let _lock = crate::lockfile::lock(&Path::new(CACHE_DIR).join("busybox-image.lock"))?;
    if image_is_current() {
        return Ok(());
    }
    build_image()
}

fn build_image() -> Result<()> {
    let busybox = Path::new("/bin/busybox");
    let status = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "busybox-static"])
        .output()
        .context("cannot run dpkg-query")?;
    if !String::from_utf8_lossy(&status.stdout).contains("ok installed") {
        bail!(
            "the test image {IMAGE} needs a static {} from Debian's busybox-static, which is not installed\n\
             hint: apt-get install busybox-static (scripts/test does)",
            busybox.display()
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("drover-test-image-")
        .tempdir()?;
    let root = dir.path().join("rootfs");
    write_rootfs(&root, busybox)?;
    let tar = dir.path().join("rootfs.tar");
    let out = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .context("cannot run tar")?;
    if !out.status.success() {
        bail!(
            "tar of the test image's root filesystem {} failed: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let label = format!("LABEL {RECIPE_LABEL}={RECIPE}");
    let tar = tar.to_str().context("temp path is not UTF-8")?;
    let out = docker(&[
        "import",
        "-c",
        r#"CMD ["/bin/sh"]"#,
        "-c",
        &label,
        tar,
        IMAGE,
    ]);
    if out.code != 0 {
        bail!(
            "`docker import` of the test image {IMAGE} failed: {}\nhint: is dockerd running? `docker info` says",
            out.stderr.trim()
        );
    }
    Ok(())
}

/// /bin/busybox with its applets as symlinks, and /www/index.html.
fn write_rootfs(root: &Path, busybox: &Path) -> Result<()> {
    let bin = root.join("bin");
    fs_err::create_dir_all(&bin)?;
    fs_err::create_dir_all(root.join("www"))?;
    fs_err::copy(busybox, bin.join("busybox"))?;
    for applet in APPLETS {
        fs_err::os::unix::fs::symlink("busybox", bin.join(applet))?;
    }
    fs_err::write(root.join("www/index.html"), INDEX_HTML)?;
    for (path, mode) in [
        (root.to_owned(), 0o755),
        (bin.clone(), 0o755),
        (root.join("www"), 0o755),
        (bin.join("busybox"), 0o755),
        (root.join("www/index.html"), 0o644),
    ] {
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// `docker save -o PATH TAG`: the image as a tarball `docker load` reads.
pub fn save_image(tag: &str, path: &Path) {
    let path = path.to_str().expect("UTF-8 path");
    docker_ok(&["save", "-o", path, tag]);
}

/// `docker tag SOURCE TARGET`.
pub fn tag(source: &str, target: &str) {
    docker_ok(&["tag", source, target]);
}

/// `docker rmi TAG` (only untags when the image has other tags).
pub fn rmi(tag: &str) {
    docker_ok(&["rmi", tag]);
}

/// Whether `docker image inspect` finds this image reference.
pub fn image_exists(reference: &str) -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", reference]).code == 0
}

/// `docker container inspect NAME`, or None when there is no such container.
#[track_caller]
pub fn inspect(name: &str) -> Option<Value> {
    let out = docker(&["container", "inspect", name]);
    if out.code != 0 {
        assert!(
            out.stderr.contains("No such"),
            "`docker container inspect {name}` failed: {}",
            out.stderr
        );
        return None;
    }
    let list: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "docker inspect {name} printed no JSON ({e}): {}",
            out.stdout
        )
    });
    Some(list[0].clone())
}

/// A TCP port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// A test's share of the Docker engine: every container, named volume and
/// image whose name starts with `drover-t-PID-TEST-` is the test's, and is
/// removed when this is dropped (also when the test panics). The first one
/// a process makes sweeps what killed test processes left.
pub struct Containers {
    prefix: String,
}

impl Containers {
    /// `test` is the test's name: lowercase letters, digits and `_`.
    pub fn new(test: &str) -> Containers {
        assert!(
            !test.is_empty()
                && test
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "test name {test:?} must be lowercase letters, digits and `_` (it names containers and images)"
        );
        static SWEPT: Once = Once::new();
        SWEPT.call_once(sweep_leftovers);
        Containers {
            prefix: format!("drover-t-{}-{test}", std::process::id()),
        }
    }

    /// The name of the test's container (or volume) `short`.
    pub fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// An image reference owned by the test (removed on drop).
    pub fn image_tag(&self, short: &str) -> String {
        format!("{}-{short}:1", self.prefix)
    }

    /// Starts a container by hand, as an operator would (`docker run -d --name`);
    /// returns its id.
    #[track_caller]
    pub fn run(&self, short: &str, args: &[&str]) -> String {
        let name = self.name(short);
        let mut all = vec!["run", "-d", "--name", &name];
        all.extend_from_slice(args);
        docker_ok(&all).trim().to_owned()
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let mine = format!("{}-", self.prefix);
        remove_matching(&format!("name={}", self.prefix), |name| {
            name.starts_with(&mine)
        });
    }
}

/// Removes what test processes that are gone left behind (a test killed
/// with SIGKILL drops nothing): names `drover-t-PID-...` whose PID is dead.
fn sweep_leftovers() {
    remove_matching("name=drover-t-", |name| {
        let pid = name
            .strip_prefix("drover-t-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    });
}

/// Removes the containers (with their anonymous volumes), then the named
/// volumes, then the image tags whose name `is_ours`; `filter` narrows the
/// listings first (docker's `name=` filter matches a substring).
fn remove_matching(filter: &str, is_ours: impl Fn(&str) -> bool) {
    let listings: [(&[&str], &[&str]); 3] = [
        (
            &["ps", "-a", "--filter", filter, "--format", "{{.Names}}"],
            &["rm", "-f", "-v"],
        ),
        (
            &["volume", "ls", "-q", "--filter", filter],
            &["volume", "rm", "-f"],
        ),
        (
            &["images", "--format", "{{.Repository}}:{{.Tag}}"],
            &["rmi"],
        ),
    ];
    for (list, remove) in listings {
        let out = docker(list);
        if out.code != 0 {
            eprintln!(
                "cleanup: `docker {}` failed: {}",
                list.join(" "),
                out.stderr
            );
            continue;
        }
        let names: Vec<&str> = out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|n| is_ours(n))
            .collect();
        if names.is_empty() {
            continue;
        }
        let args: Vec<&str> = remove.iter().copied().chain(names).collect();
        let out = docker(&args);
        if out.code != 0 {
            eprintln!(
                "cleanup: `docker {}` failed: {}",
                args.join(" "),
                out.stderr
            );
        }
    }
}
