//! Tests of the no-change run's shortcuts, through whole engine runs: the
//! file metadata cache must catch every change a rehash would, and the
//! temp file sweep must run whenever a killed run may have left one.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use drover_catalog::model::{FileSpec, sha256_hex};
use drover_catalog::report::{FileChecks, ResourceStatus};
use drover_catalog::{Catalog, Resource, Spec};
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use super::format::{HEADER, parse, serialize};
use super::*;
use crate::engine::{self, Applied, EngineConfig};
use crate::resources::testing::MapSource;

/// Managed files under a temp dir and the state dir their cache lives in.
struct Node {
    dir: tempfile::TempDir,
    source: MapSource,
    verify_interval: Duration,
}

impl Node {
    fn new(contents: &[&[u8]]) -> Node {
        Node {
            dir: tempfile::tempdir().unwrap(),
            source: MapSource::with(contents),
            verify_interval: Duration::from_secs(DEFAULT_VERIFY_INTERVAL_SECS),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cache(&self) -> PathBuf {
        self.path("state/filecache")
    }

    fn marker(&self) -> PathBuf {
        self.path(&format!("state/{}", crate::fsutil::TempMarker::FILE_NAME))
    }

    fn catalog(&self, files: &[(&str, &[u8])]) -> Catalog {
        let resources: Vec<Resource> = files
            .iter()
            .map(|(name, content)| {
                let path = self.path(name).to_string_lossy().into_owned();
                Resource::new(Spec::File(FileSpec::with_content(&path, content)))
            })
            .collect();
        Catalog {
            node: "n".into(),
            environment: "production".into(),
            commit: "c".into(),
            version: Catalog::compute_version(&resources),
            resources,
            contents: Default::default(),
        }
    }

    fn apply(&self, catalog: &Catalog, noop: bool) -> Applied {
        let stop = AtomicBool::new(false);
        engine::apply(
            catalog,
            &EngineConfig {
                noop,
                node: "n",
                container_socket: Path::new("/nonexistent/docker.sock"),
                backups: self.path("state/backups"),
                contents: &self.source,
                previous: None,
                stop: &stop,
                timeout: None,
                verbose: false,
                filecache: Some(Loading::start(&self.path("state"), self.verify_interval)),
                temp_marker: Some(self.marker()),
                probe_state: None,
                protected: Vec::new(),
                partial: false,
            },
        )
    }

    /// Runs until every file is trusted: the run after a write hashes it
    /// (its entry is racy), the one after that trusts it.
    fn settle(&self, catalog: &Catalog) {
        self.apply(catalog, false);
        std::thread::sleep(Duration::from_nanos(RACY_MARGIN_NS as u64 * 2));
        self.apply(catalog, false);
        let checks = self.apply(catalog, false).files;
        assert_eq!(checks.trusted, catalog.resources.len() as u64, "{checks:?}");
    }

    fn edit_cache(&self, edit: impl FnOnce(&mut i64, &mut HashMap<Box<str>, Entry>)) {
        let (mut verified_at, entries) = parse(&fs_err::read(self.cache()).unwrap()).unwrap();
        let mut entries = entries.into_iter().collect();
        edit(&mut verified_at, &mut entries);
        let mut entries: Vec<_> = entries.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        fs_err::write(self.cache(), serialize(verified_at, &entries)).unwrap();
    }
}

fn statuses(applied: &Applied) -> Vec<ResourceStatus> {
    applied.resources.iter().map(|r| r.status).collect()
}

/// Writes `content` over `path` in place and puts its mtime back: size and
/// mtime as before, only ctime tells.
fn rewrite_keeping_mtime(path: &Path, content: &[u8]) {
    let before = fs_err::metadata(path).unwrap();
    assert_eq!(before.len(), content.len() as u64, "same size");
    fs_err::write(path, content).unwrap();
    let mtime = TimeSpec::new(before.mtime(), before.mtime_nsec());
    utimensat(None, path, &mtime, &mtime, UtimensatFlags::NoFollowSymlink).unwrap();
    let after = fs_err::metadata(path).unwrap();
    assert_eq!(
        (after.len(), after.mtime(), after.mtime_nsec()),
        (before.len(), before.mtime(), before.mtime_nsec())
    );
}

#[test]
fn unchanged_files_are_trusted_and_a_same_size_same_mtime_edit_is_still_caught() {
    let node = Node::new(&[b"alpha\n", b"gamma\n"]);
    let catalog = node.catalog(&[("a", b"alpha\n"), ("b", b"gamma\n")]);
    let first = node.apply(&catalog, false);
    assert_eq!(statuses(&first), [ResourceStatus::Changed; 2]);
    assert_eq!(first.files.hashed, 0, "created files need no hash");
    node.settle(&catalog);

    rewrite_keeping_mtime(&node.path("a"), b"ALPHA\n");
    let run = node.apply(&catalog, false);
    assert_eq!(
        statuses(&run),
        [ResourceStatus::Changed, ResourceStatus::Unchanged]
    );
    assert_eq!(run.resources[0].events[0].property, "content");
    assert_eq!(fs_err::read(node.path("a")).unwrap(), b"alpha\n");
    assert_eq!(
        run.files,
        FileChecks {
            hashed: 1,
            trusted: 1,
            full_verification: false
        }
    );
}

#[test]
fn an_entry_recorded_within_the_timestamp_tick_is_not_trusted() {
    let node = Node::new(&[b"alpha\n"]);
    let catalog = node.catalog(&[("a", b"alpha\n")]);
    node.settle(&catalog);
    // A write right after the hash that kept every time, as a coarse clock
    // can: the entry claims the new metadata, recorded just after it.
    fs_err::write(node.path("a"), b"ALPHA\n").unwrap();
    let md = fs_err::metadata(node.path("a")).unwrap();
    let key = Key::of(&md).unwrap();
    node.edit_cache(|_, entries| {
        let entry = entries.values_mut().next().unwrap();
        entry.key = key;
        entry.recorded_at = key.ctime_ns + RACY_MARGIN_NS / 2;
    });
    let run = node.apply(&catalog, false);
    assert_eq!(statuses(&run), [ResourceStatus::Changed]);
    assert_eq!(run.files.trusted, 0);
    assert_eq!(fs_err::read(node.path("a")).unwrap(), b"alpha\n");
}

#[test]
fn racy_margins_follow_the_timestamp_resolution() {
    let entry = |mtime_ns: i64, recorded_at: i64| Entry {
        key: Key {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns,
            ctime_ns: mtime_ns,
        },
        recorded_at,
        sha: [0; 32],
    };
    let fine = 1_000_000_000 * 100 + 5;
    assert!(entry(fine, fine + RACY_MARGIN_NS + 1).settled());
    assert!(!entry(fine, fine + RACY_MARGIN_NS).settled());
    assert!(
        !entry(fine, fine - 1).settled(),
        "recorded before the write"
    );
    let whole = 1_000_000_000 * 100;
    assert!(!entry(whole, whole + RACY_MARGIN_NS * 2).settled());
    assert!(entry(whole, whole + COARSE_MARGIN_NS + 1).settled());
}

#[test]
fn a_tampered_cache_hides_a_change_until_the_full_verification() {
    let mut node = Node::new(&[b"alpha\n"]);
    let catalog = node.catalog(&[("a", b"alpha\n")]);
    node.settle(&catalog);
    fs_err::write(node.path("a"), b"ALPHA\n").unwrap();
    let key = Key::of(&fs_err::metadata(node.path("a")).unwrap()).unwrap();
    // The entry now claims the edited file's metadata with the old hash.
    node.edit_cache(|_, entries| {
        let entry = entries.values_mut().next().unwrap();
        entry.key = key;
        entry.recorded_at = key.ctime_ns + COARSE_MARGIN_NS * 2;
    });
    let hidden = node.apply(&catalog, false);
    assert_eq!(statuses(&hidden), [ResourceStatus::Unchanged]);
    assert_eq!(fs_err::read(node.path("a")).unwrap(), b"ALPHA\n");
    assert!(!hidden.files.full_verification);

    // The last full verification is older than the interval: found.
    node.edit_cache(|verified_at, _| *verified_at -= 2 * 86_400 * 1_000_000_000);
    let verified = node.apply(&catalog, false);
    assert!(verified.files.full_verification);
    assert_eq!(statuses(&verified), [ResourceStatus::Changed]);
    assert_eq!(fs_err::read(node.path("a")).unwrap(), b"alpha\n");

    // verify_interval_secs = 0: every run is a full verification.
    node.verify_interval = Duration::ZERO;
    let again = node.apply(&catalog, false);
    assert!(again.files.full_verification);
    assert_eq!((again.files.trusted, again.files.hashed), (0, 1));
}

#[test]
fn the_full_verification_restarts_the_interval() {
    let node = Node::new(&[b"alpha\n"]);
    let catalog = node.catalog(&[("a", b"alpha\n")]);
    let first = node.apply(&catalog, false);
    assert!(first.files.full_verification, "no cache: nothing trusted");
    let second = node.apply(&catalog, false);
    assert!(!second.files.full_verification);
    let (verified_at, _) = parse(&fs_err::read(node.cache()).unwrap()).unwrap();
    assert!(now_ns() - verified_at < 60 * 1_000_000_000);
}

#[test]
fn a_corrupt_or_torn_cache_is_ignored_and_the_run_converges() {
    let node = Node::new(&[b"alpha\n"]);
    let catalog = node.catalog(&[("a", b"alpha\n")]);
    node.settle(&catalog);
    let good = fs_err::read(node.cache()).unwrap();
    for bad in [
        b"garbage".to_vec(),
        good[..good.len() / 2].to_vec(),
        Vec::new(),
    ] {
        fs_err::write(node.cache(), &bad).unwrap();
        rewrite_keeping_mtime(&node.path("a"), b"ALPHA\n");
        let run = node.apply(&catalog, false);
        assert_eq!(statuses(&run), [ResourceStatus::Changed]);
        assert!(run.files.full_verification);
        assert_eq!(fs_err::read(node.path("a")).unwrap(), b"alpha\n");
        assert!(
            parse(&fs_err::read(node.cache()).unwrap()).is_ok(),
            "replaced by a valid cache"
        );
    }
    let mut flipped = good.clone();
    flipped[HEADER + 10] ^= 1;
    assert!(
        parse(&flipped)
            .unwrap_err()
            .to_string()
            .contains("checksum")
    );
}

#[test]
fn noop_records_what_is_there_so_the_next_real_run_repairs() {
    let node = Node::new(&[b"alpha\n"]);
    let catalog = node.catalog(&[("a", b"alpha\n")]);
    node.settle(&catalog);
    rewrite_keeping_mtime(&node.path("a"), b"ALPHA\n");
    let noop = node.apply(&catalog, true);
    assert_eq!(statuses(&noop), [ResourceStatus::Noop]);
    let (_, entries) = parse(&fs_err::read(node.cache()).unwrap()).unwrap();
    let (_, entry) = &entries[0];
    assert_eq!(hex::encode(entry.sha), sha256_hex(b"ALPHA\n"));
    std::thread::sleep(Duration::from_nanos(RACY_MARGIN_NS as u64 * 2));
    assert_eq!(
        statuses(&node.apply(&catalog, true)),
        [ResourceStatus::Noop],
        "a second noop still sees it"
    );
    assert_eq!(
        statuses(&node.apply(&catalog, false)),
        [ResourceStatus::Changed]
    );
    assert_eq!(fs_err::read(node.path("a")).unwrap(), b"alpha\n");
}

#[test]
fn an_unchanged_cache_is_not_rewritten_and_a_changed_one_is_replaced_whole() {
    let node = Node::new(&[b"alpha\n"]);
    let catalog = node.catalog(&[("a", b"alpha\n")]);
    node.settle(&catalog);
    let ino = fs_err::metadata(node.cache()).unwrap().ino();
    node.apply(&catalog, false);
    assert_eq!(fs_err::metadata(node.cache()).unwrap().ino(), ino);
    // A run killed before its rename leaves only a temp beside the old cache.
    let temp = crate::fsutil::temp_path_for(&node.cache());
    fs_err::write(&temp, b"partial").unwrap();
    assert_eq!(node.apply(&catalog, false).files.trusted, 1);
    rewrite_keeping_mtime(&node.path("a"), b"ALPHA\n");
    node.apply(&catalog, false);
    assert_ne!(fs_err::metadata(node.cache()).unwrap().ino(), ino);
    let names: Vec<_> = fs_err::read_dir(node.path("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        3,
        "filecache, backups and the old temp: {names:?}"
    );
}

#[test]
fn many_files_hash_in_parallel_and_each_drift_is_found() {
    let body: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let node = Node::new(&[&body]);
    let names: Vec<String> = (0..40).map(|i| format!("f{i:02}")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &body[..])).collect();
    let catalog = node.catalog(&files);
    node.apply(&catalog, false);
    let mut drifted = body.clone();
    drifted[1000] ^= 0xff;
    for name in ["f03", "f17", "f39"] {
        rewrite_keeping_mtime(&node.path(name), &drifted);
    }
    let run = node.apply(&catalog, false);
    assert_eq!(run.files.hashed, 40, "the racy entries of the first run");
    let changed: Vec<_> = run
        .resources
        .iter()
        .filter(|r| r.status == ResourceStatus::Changed)
        .map(|r| r.id.name().rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(changed, ["f03", "f17", "f39"]);
    let hashed = hash_all(&[(
        node.path("f00").to_str().unwrap(),
        Key::of(&fs_err::metadata(node.path("f00")).unwrap()).unwrap(),
    )]);
    assert_eq!(hex::encode(hashed[0].1), sha256_hex(&body));
}

#[test]
fn an_exec_makes_the_walk_hash_again() {
    let node = Node::new(&[b"alpha\n"]);
    let mut catalog = node.catalog(&[("a", b"alpha\n")]);
    let exec: Resource = serde_json::from_value(serde_json::json!({
        "id": "exec:touch", "kind": "exec", "name": "touch", "command": ["true"]
    }))
    .unwrap();
    catalog.resources.insert(0, exec);
    node.apply(&catalog, false);
    std::thread::sleep(Duration::from_nanos(RACY_MARGIN_NS as u64 * 2));
    node.apply(&catalog, false);
    // Trusted files need no hash either way; a drifted one is hashed up
    // front, then again after the exec ran.
    rewrite_keeping_mtime(&node.path("a"), b"ALPHA\n");
    let run = node.apply(&catalog, false);
    assert_eq!(run.files.hashed, 2);
    assert_eq!(run.resources[1].status, ResourceStatus::Changed);
}

#[test]
fn stale_temps_are_swept_after_a_killed_run_and_at_every_full_verification() {
    let mut node = Node::new(&[b"a", b"b"]);
    let catalog = node.catalog(&[("a", b"a")]);
    node.settle(&catalog);
    let stale = crate::fsutil::temp_path_for(&node.path("a"));
    let leave_stale = || fs_err::write(&stale, "partial").unwrap();

    leave_stale();
    assert_eq!(
        statuses(&node.apply(&catalog, false)),
        [ResourceStatus::Unchanged]
    );
    assert!(
        stale.exists(),
        "no marker, no full verification: nothing looks"
    );

    fs_err::write(node.marker(), "").unwrap(); // what a killed run leaves
    node.apply(&catalog, true);
    assert!(
        stale.exists() && node.marker().exists(),
        "noop removes nothing"
    );
    node.apply(&catalog, false);
    assert!(!stale.exists(), "the marker makes the run sweep");
    assert!(!node.marker().exists(), "and the sweep is done");

    leave_stale();
    node.verify_interval = Duration::ZERO;
    node.apply(&catalog, false);
    assert!(!stale.exists(), "a full verification sweeps too");
}

#[test]
fn the_marker_is_on_disk_before_the_first_temp_and_gone_after_the_run() {
    let node = Node::new(&[b"a"]);
    let mut catalog = node.catalog(&[("a", b"a")]);
    let Spec::File(file) = &mut catalog.resources[0].spec else {
        unreachable!()
    };
    // `validate` runs on the temp file, before it is renamed into place.
    file.validate = Some(format!("test -e {}", node.marker().display()));
    let applied = node.apply(&catalog, false);
    assert_eq!(statuses(&applied), [ResourceStatus::Changed], "{applied:?}");
    assert!(!node.marker().exists());

    let Spec::File(file) = &mut catalog.resources[0].spec else {
        unreachable!()
    };
    file.validate = Some("false".into());
    fs_err::write(node.path("a"), "drift").unwrap();
    let applied = node.apply(&catalog, false);
    assert_eq!(statuses(&applied), [ResourceStatus::Failed], "{applied:?}");
    assert!(!node.marker().exists(), "a failed write discards its temp");
}

#[test]
fn a_catalog_in_another_order_is_still_trusted_file_by_file() {
    let node = Node::new(&[b"a", b"b", b"c", b"d"]);
    node.settle(&node.catalog(&[("a", b"a"), ("b", b"b"), ("c", b"c")]));
    // The cache lists a, b, c: here b comes first, and d is new.
    let reordered = node.catalog(&[("b", b"b"), ("d", b"d"), ("a", b"a"), ("c", b"c")]);
    let applied = node.apply(&reordered, false);
    use ResourceStatus::{Changed, Unchanged};
    assert_eq!(
        statuses(&applied),
        [Unchanged, Changed, Unchanged, Unchanged]
    );
    assert_eq!(applied.files.trusted, 3, "{:?}", applied.files);
    fs_err::write(node.path("c"), "C").unwrap();
    let applied = node.apply(&node.catalog(&[("c", b"c"), ("a", b"a")]), false);
    assert_eq!(
        statuses(&applied),
        [Changed, Unchanged],
        "a drift out of order is found"
    );
}
