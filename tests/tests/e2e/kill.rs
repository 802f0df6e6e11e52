//! SIGKILL at random moments while the agent replaces many 1 MiB files:
//! every file must be whole, the old content or the new, never a mix.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drover_catalog::model::{FileSpec, Spec, sha256_hex};
use drover_catalog::{Catalog, Mode, Resource};
use drover_tests::{apply, bin};

const FILES: usize = 24;
const SIZE: usize = 1 << 20;
const TRIALS: usize = 50;

/// File `i` of generation `generation`: 1 MiB that differs per file and generation.
fn content(i: usize, generation: usize) -> Vec<u8> {
    let line = format!("file {i:03} generation {generation} ");
    line.bytes().cycle().take(SIZE).collect()
}

fn catalog(root: &Path, generation: usize) -> Catalog {
    let mut resources = Vec::new();
    let mut contents = BTreeMap::new();
    for i in 0..FILES {
        let path = root.join(format!("f{i:03}")).display().to_string();
        let bytes = content(i, generation);
        resources.push(Resource::new(Spec::File(FileSpec {
            mode: Some(Mode::parse("0644").unwrap()),
            backup: false,
            ..FileSpec::with_content(&path, &bytes)
        })));
        contents.insert(sha256_hex(&bytes), bytes);
    }
    let mut catalog = Catalog {
        node: "kill-test".into(),
        environment: "production".into(),
        commit: format!("generation-{generation}"),
        version: Catalog::compute_version(&resources),
        resources,
        contents: BTreeMap::new(),
    };
    catalog.embed_contents(contents.iter().map(|(sha, b)| (sha, &b[..])));
    catalog
}

/// A small xorshift generator: the trials are random but reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn sigkill_at_random_points_leaves_every_file_whole() {
    let tmp = tempfile::Builder::new()
        .prefix("drover-kill-")
        .tempdir()
        .unwrap();
    let root = tmp.path().join("managed");
    fs_err::create_dir_all(&root).unwrap();
    let state = tmp.path().join("state");
    let generations: Vec<_> = (0..2)
        .map(|g| {
            let path = tmp.path().join(format!("catalog-{g}.json"));
            fs_err::write(&path, serde_json::to_vec(&catalog(&root, g)).unwrap()).unwrap();
            path
        })
        .collect();
    let hashes: Vec<[String; 2]> = (0..FILES)
        .map(|i| [sha256_hex(&content(i, 0)), sha256_hex(&content(i, 1))])
        .collect();

    apply(&[generations[0].to_str().unwrap()], &state).expect_code(2);
    // A full replacing run, timed, tells how wide the window for a kill is.
    let started = Instant::now();
    apply(&[generations[1].to_str().unwrap()], &state).expect_code(2);
    let full = started.elapsed().as_micros().max(1000) as u64;

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}, full run {full} us");
    let mut rng = Rng(seed);
    let mut killed_mid_run = 0;
    for trial in 0..TRIALS {
        let target = &generations[trial % 2];
        let mut child = Command::new(bin("drover-agent"))
            .arg("apply")
            .arg(target)
            .arg("--state-dir")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(full)));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if status.code().is_none() {
            killed_mid_run += 1;
        }
        for (i, [old, new]) in hashes.iter().enumerate() {
            let path = root.join(format!("f{i:03}"));
            let sha = sha256_hex(&fs_err::read(&path).unwrap());
            assert!(
                &sha == old || &sha == new,
                "trial {trial} (seed {seed}): {} is neither the old nor the new content",
                path.display()
            );
        }
    }
    assert!(
        killed_mid_run >= TRIALS / 4,
        "only {killed_mid_run} kills landed mid-run"
    );

    // A run to completion converges everything and sweeps the temp files of killed runs.
    apply(&[generations[0].to_str().unwrap()], &state);
    apply(&[generations[0].to_str().unwrap()], &state).expect_code(0);
    let leftovers: Vec<_> = fs_err::read_dir(&root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('f'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );
}
