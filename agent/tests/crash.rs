//! SIGKILL at random moments while `apply` replaces many small files, which
//! it stages, makes durable together and renames in one batch: every file
//! must hold its old content or its new one, with its mode, never a mix, and
//! a run to the end sweeps what the killed runs left.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drover_catalog::Mode;
use drover_catalog::model::sha256_hex;
use support::{BIN, catalog, text};

const FILES: usize = 300;
const SIZE: usize = 4 * 1024;
const TRIALS: usize = 24;

fn content(i: usize, generation: usize) -> Vec<u8> {
    let line = format!("file {i:03} generation {generation}\n");
    line.bytes().cycle().take(SIZE).collect()
}

/// Generation `g`'s catalog (contents embedded): every file new content,
/// and mode 0644 in generation 0, 0640 in generation 1.
fn write_catalog(root: &Path, generation: usize, out: &Path) {
    let paths: Vec<PathBuf> = (0..FILES).map(|i| root.join(format!("f{i:03}"))).collect();
    let bodies: Vec<Vec<u8>> = (0..FILES).map(|i| content(i, generation)).collect();
    let files: Vec<(&Path, &[u8])> = paths
        .iter()
        .zip(&bodies)
        .map(|(p, b)| (p.as_path(), b.as_slice()))
        .collect();
    let (mut cat, contents) = catalog("n1", &files);
    let mode = Mode::parse(["0644", "0640"][generation]).unwrap();
    for r in &mut cat.resources {
        if let drover_catalog::Spec::File(f) = &mut r.spec {
            f.mode = Some(mode);
        }
    }
    cat.embed_contents(contents.iter().map(|(sha, b)| (sha, &b[..])));
    fs_err::write(out, serde_json::to_vec(&cat).unwrap()).unwrap();
}

fn apply(catalog: &Path, state: &Path) -> std::process::Output {
    Command::new(BIN)
        .arg("apply")
        .arg(catalog)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap()
}

#[test]
fn sigkill_during_a_batched_first_and_replacing_run_leaves_old_or_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("managed");
    fs_err::create_dir_all(&root).unwrap();
    let state = dir.path().join("state");
    let catalogs: Vec<PathBuf> = (0..2)
        .map(|g| {
            let path = dir.path().join(format!("catalog-{g}.json"));
            write_catalog(&root, g, &path);
            path
        })
        .collect();
    let wanted: Vec<[(String, u32); 2]> = (0..FILES)
        .map(|i| {
            [
                (sha256_hex(&content(i, 0)), 0o644),
                (sha256_hex(&content(i, 1)), 0o640),
            ]
        })
        .collect();

    // The first run creates everything; killed, it leaves each file whole or absent.
    let out = apply(&catalogs[0], &state);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let started = Instant::now();
    let out = apply(&catalogs[1], &state);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let full = started.elapsed().as_micros().max(2000) as u64;

    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}, full run {full} us");
    let mut killed_mid_run = 0;
    let mut mixed = 0;
    for trial in 0..TRIALS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = Command::new(BIN)
            .arg("apply")
            .arg(&catalogs[trial % 2])
            .arg("--state-dir")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(seed % full));
        let _ = child.kill(); // SIGKILL
        if child.wait().unwrap().code().is_none() {
            killed_mid_run += 1;
        }
        let mut generations = [0; 2];
        for (i, versions) in wanted.iter().enumerate() {
            let path = root.join(format!("f{i:03}"));
            let sha = sha256_hex(&fs_err::read(&path).unwrap());
            let mode = fs_err::metadata(&path).unwrap().permissions().mode() & 0o7777;
            let Some(g) = versions.iter().position(|(s, _)| *s == sha) else {
                panic!("trial {trial}: {} is neither old nor new", path.display());
            };
            assert_eq!(
                mode,
                versions[g].1,
                "trial {trial}: {} has generation {g}'s content with mode {mode:o}",
                path.display()
            );
            generations[g] += 1;
        }
        if generations.iter().all(|&n| n > 0) {
            mixed += 1;
        }
    }
    println!("{killed_mid_run} kills mid-run, {mixed} left a mix of generations");
    assert!(
        killed_mid_run >= TRIALS / 4,
        "only {killed_mid_run} kills landed mid-run"
    );

    let out = apply(&catalogs[0], &state);
    assert!(matches!(out.status.code(), Some(0 | 2)), "{}", text(&out));
    let out = apply(&catalogs[0], &state);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let leftovers: Vec<_> = fs_err::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('f'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );
}
