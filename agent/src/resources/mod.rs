//! Resource kinds the agent converges. Every kind has the same shape:
//! observe the current state, diff it against the desired one (events), and
//! apply the difference unless in noop.

pub(crate) mod account;
pub(crate) mod container;
pub(crate) mod directory;
pub(crate) mod exec;
pub(crate) mod file;
pub(crate) mod package;
pub(crate) mod sensitive;
pub(crate) mod service;
pub(crate) mod symlink;
#[cfg(test)]
mod unsafe_parent_tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::Metadata;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use drover_catalog::report::Event;
use drover_catalog::{Mode, Spec};
use fs_err::os::unix::fs::OpenOptionsExt as _;
use nix::unistd::{Gid, Group, Uid, User};
use sha2::{Digest, Sha256};

use crate::safepath::Anchored;

/// Where file content comes from: the server by hash, or a compiled catalog's
/// embedded `contents`. Callers verify the hash of what they get.
pub(crate) trait ContentSource {
    fn fetch(&self, sha256: &str) -> Result<Arc<[u8]>>;
}

/// Per-resource switches.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Flags {
    /// Observe and diff only.
    pub noop: bool,
    /// Never show content or values, only hashes.
    pub sensitive: bool,
    /// A resource this one subscribes to changed in this run (or, in noop,
    /// would have): a service restarts, a `refreshonly` exec runs. Several
    /// changed sources make one refresh. In noop the kind only reports it.
    pub refresh: bool,
}

/// What converging one resource found (and, unless noop, did).
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub events: Vec<Event>,
    pub diff: Option<String>,
}

impl Outcome {
    pub(crate) fn changed(&self) -> bool {
        !self.events.is_empty()
    }
}

/// A file written under its temp name, with the backup of the content it
/// replaces (also staged), waiting for the engine to make both durable and
/// rename them.
#[derive(Debug)]
pub(crate) struct StagedWrite {
    pub backup: Option<crate::fsutil::Staged>,
    pub file: crate::fsutil::Staged,
}

impl StagedWrite {
    pub(crate) fn discard(&self) {
        if let Some(backup) = &self.backup {
            backup.discard();
        }
        self.file.discard();
    }
}

/// Long-lived state shared by every resource of one run: caches and buffers,
/// so a no-change run over many files allocates almost nothing per resource.
pub(crate) struct Env<'a> {
    pub contents: &'a dyn ContentSource,
    /// STATE/backups: replaced content by sha256.
    pub backups: PathBuf,
    /// Every path the catalog manages (for directory purge).
    pub managed: BTreeSet<&'a str>,
    pub names: Names,
    /// The systemd connection, opened by the first service resource.
    pub services: service::Services,
    /// `apt-get update` ran in this run (it runs at most once).
    pub apt_updated: bool,
    /// The Docker Engine connection, opened by the first container resource.
    pub containers: container::Containers,
    /// The file metadata cache and the hashes made ahead of the walk.
    pub files: crate::filecache::FileCache,
    /// Files are staged for the engine's batch (see `engine/batch.rs`)
    /// instead of made durable and renamed one by one.
    pub stage_writes: bool,
    /// What the file just converged staged, for the engine to take.
    pub staged: Option<StagedWrite>,
    /// What this run's diffs may still add to the report.
    pub diffs: crate::diff::DiffBudget,
    /// Whether this run sweeps for stale temp files; told of every new one.
    pub temps: crate::fsutil::TempMarker,
    /// The managed paths' parents this run anchored (see [`crate::safepath`]).
    pub anchors: crate::safepath::Anchors,
    buf: Vec<u8>,
    swept: HashSet<PathBuf>,
}

impl<'a> Env<'a> {
    pub(crate) fn new(
        contents: &'a dyn ContentSource,
        backups: PathBuf,
        managed: BTreeSet<&'a str>,
    ) -> Self {
        Env {
            contents,
            backups,
            managed,
            names: Names::default(),
            services: service::Services::default(),
            apt_updated: false,
            containers: container::Containers::default(),
            files: crate::filecache::FileCache::default(),
            stage_writes: false,
            staged: None,
            diffs: crate::diff::DiffBudget::default(),
            temps: crate::fsutil::TempMarker::default(),
            anchors: crate::safepath::Anchors::default(),
            buf: Vec::new(),
            swept: HashSet::new(),
        }
    }

    /// sha256 of a file's content, read through one reusable buffer.
    pub(crate) fn hash_file(&mut self, path: &Path) -> Result<String> {
        if self.buf.is_empty() {
            self.buf.resize(64 * 1024, 0);
        }
        let mut file = fs_err::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        let mut hasher = Sha256::new();
        loop {
            let n = match file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            hasher.update(&self.buf[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// Content by hash, verified.
    pub(crate) fn fetch_verified(&self, sha256: &str) -> Result<Arc<[u8]>> {
        let bytes = self.contents.fetch(sha256)?;
        let actual = drover_catalog::model::sha256_hex(&bytes);
        if actual != sha256 {
            bail!("content fetched for sha256 {sha256} has sha256 {actual}; refusing to write it");
        }
        Ok(bytes)
    }

    /// Removes temp files a killed run left in `dir`, once per directory
    /// per run, when this run sweeps ([`crate::fsutil::TempMarker`]).
    pub(crate) fn sweep_stale_temps(&mut self, dir: &Path) {
        self.sweep_stale_temps_via(dir, dir);
    }

    /// The same for the managed directory `dir`, reached as `via` (its
    /// held descriptor, see [`crate::safepath`]).
    pub(crate) fn sweep_stale_temps_via(&mut self, dir: &Path, via: &Path) {
        if self.temps.sweeps() && !self.swept.contains(dir) {
            crate::fsutil::remove_stale_temps(via);
            self.swept.insert(dir.to_owned());
        }
    }

    /// Whether `path` or something below it is managed by the catalog.
    pub(crate) fn is_managed(&self, path: &str) -> bool {
        if self.managed.contains(path) {
            return true;
        }
        let prefix = format!("{path}/");
        self.managed
            .range(prefix.as_str()..)
            .next()
            .is_some_and(|p| p.starts_with(&prefix))
    }
}

/// Converges one resource.
pub(crate) fn converge(spec: &Spec, env: &mut Env<'_>, flags: Flags) -> Result<Outcome> {
    match spec {
        Spec::File(f) => file::converge(f, env, flags),
        Spec::Directory(d) => directory::converge(d, env, flags),
        Spec::Symlink(s) => symlink::converge(s, env, flags),
        Spec::Service(s) => service::converge(s, env, flags),
        Spec::Exec(s) => exec::converge(s, env, flags),
        Spec::User(s) => account::converge_user(s, env, flags),
        Spec::Group(s) => account::converge_group(s, env, flags),
        Spec::Container(s) => container::converge(s, env, flags),
        // Packages converge in batches, one apt transaction each: see the engine.
        Spec::Package(s) => package::converge_batch(&[(s, flags)], env)
            .pop()
            .expect("one result per package"),
    }
}

/// A system tool (apt-get, useradd, journalctl...) to run, without the
/// variables systemd gave the agent alone: a tool that speaks sd_notify must
/// not talk to the agent's service manager socket.
pub(crate) fn tool(program: &str) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    for own in ["NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC"] {
        command.env_remove(own);
    }
    command
}

pub(crate) fn event(property: &str, previous: Option<String>, desired: Option<String>) -> Event {
    Event {
        property: property.to_owned(),
        previous,
        desired,
        message: None,
    }
}

/// lstat that maps "not there" to `None`.
pub(crate) fn observe(path: &Path) -> Result<Option<Metadata>> {
    match fs_err::symlink_metadata(path) {
        Ok(md) => Ok(Some(md)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Puppet's rule: the agent never creates missing parents implicitly. In
/// noop, a missing parent that the catalog manages counts as made: the real
/// run makes it first. `anchored` is `path` reached by [`crate::safepath`]:
/// its walk found the parent a directory, or found it missing.
pub(crate) fn require_parent(
    anchored: &Anchored,
    path: &Path,
    env: &Env<'_>,
    flags: Flags,
) -> Result<()> {
    if !anchored.parent_missing() {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    if flags.noop && parent.to_str().is_some_and(|p| env.managed.contains(p)) {
        return Ok(());
    }
    bail!(
        "parent directory {} does not exist\nhint: manage it with a directory resource",
        parent.display()
    )
}

/// lstat of an anchored path; nothing is there under a missing parent.
pub(crate) fn observe_anchored(anchored: &Anchored) -> Result<Option<Metadata>> {
    if anchored.parent_missing() {
        return Ok(None);
    }
    observe(anchored.path())
}

pub(crate) fn describe_type(md: &Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_file() {
        "file"
    } else {
        "special file"
    }
}

/// Desired mode/owner/group, owner and group already resolved to ids.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WantMeta<'s> {
    pub mode: Option<Mode>,
    pub owner: Option<(u32, &'s str)>,
    pub group: Option<(u32, &'s str)>,
}

impl<'s> WantMeta<'s> {
    pub(crate) fn resolve(
        names: &mut Names,
        mode: Option<Mode>,
        owner: Option<&'s str>,
        group: Option<&'s str>,
    ) -> Result<Self> {
        let owner = owner.map(|o| names.uid(o).map(|id| (id, o))).transpose()?;
        let group = group.map(|g| names.gid(g).map(|id| (id, g))).transpose()?;
        Ok(WantMeta { mode, owner, group })
    }

    /// Events for a metadata difference; `current` None means "being created".
    pub(crate) fn events(
        &self,
        names: &mut Names,
        current: Option<&Metadata>,
        events: &mut Vec<Event>,
    ) {
        if let Some(mode) = self.mode {
            let now = current.map(|md| Mode::from_bits(md.mode()));
            if now != Some(mode) {
                events.push(event(
                    "mode",
                    now.map(|m| m.to_string()),
                    Some(mode.to_string()),
                ));
            }
        }
        if let Some((uid, name)) = self.owner
            && current.map(MetadataExt::uid) != Some(uid)
        {
            let prev = current.map(|md| names.user_name(md.uid()));
            events.push(event("owner", prev, Some(name.to_owned())));
        }
        if let Some((gid, name)) = self.group
            && current.map(MetadataExt::gid) != Some(gid)
        {
            let prev = current.map(|md| names.group_name(md.gid()));
            events.push(event("group", prev, Some(name.to_owned())));
        }
    }

    /// Fixes owner, group and mode of an existing path in place.
    pub(crate) fn apply(&self, path: &Path, current: &Metadata) -> Result<()> {
        let uid = self.owner.map(|o| o.0).filter(|&u| u != current.uid());
        let gid = self.group.map(|g| g.0).filter(|&g| g != current.gid());
        // chown clears setuid/setgid bits, so the mode goes last (and is re-set
        // whenever ownership changed). Both through one `O_NOFOLLOW`
        // descriptor: a symlink swapped in at `path` is refused, not followed.
        let mode = self
            .mode
            .filter(|&mode| {
                uid.is_some() || gid.is_some() || Mode::from_bits(current.mode()) != mode
            })
            .map(Mode::bits);
        if uid.is_none() && gid.is_none() && mode.is_none() {
            return Ok(());
        }
        crate::safepath::set_meta(path, uid, gid, mode)
    }
}

/// User and group lookups, cached: /etc/passwd is read once per name per run.
#[derive(Debug, Default)]
pub(crate) struct Names {
    uids: HashMap<String, u32>,
    gids: HashMap<String, u32>,
    user_names: HashMap<u32, String>,
    group_names: HashMap<u32, String>,
}

/// The id a noop run gives a user or group that it would have created: no
/// real account has it (it is chown's "leave unchanged"), and noop applies nothing.
pub(crate) const PLANNED_ID: u32 = u32::MAX;

impl Names {
    /// In noop, a user resource that would create `name`: later resources
    /// resolve it to [`PLANNED_ID`] instead of failing.
    pub(crate) fn plan_user(&mut self, name: &str) {
        self.uids.insert(name.to_owned(), PLANNED_ID);
    }

    /// The group counterpart of [`Names::plan_user`].
    pub(crate) fn plan_group(&mut self, name: &str) {
        self.gids.insert(name.to_owned(), PLANNED_ID);
    }

    /// Whether this noop run only would have created user `name`.
    pub(crate) fn is_planned_user(&self, name: &str) -> bool {
        self.uids.get(name) == Some(&PLANNED_ID)
    }

    pub(crate) fn uid(&mut self, name: &str) -> Result<u32> {
        if let Some(&uid) = self.uids.get(name) {
            return Ok(uid);
        }
        let uid = match User::from_name(name)
            .with_context(|| format!("cannot look up user `{name}`"))?
        {
            Some(user) => user.uid.as_raw(),
            None => match name.parse::<u32>() {
                Ok(uid) => uid,
                Err(_) => bail!(
                    "unknown user `{name}`\nhint: create it first (a user resource is ordered before its files)"
                ),
            },
        };
        self.uids.insert(name.to_owned(), uid);
        Ok(uid)
    }

    pub(crate) fn gid(&mut self, name: &str) -> Result<u32> {
        if let Some(&gid) = self.gids.get(name) {
            return Ok(gid);
        }
        let gid = match Group::from_name(name)
            .with_context(|| format!("cannot look up group `{name}`"))?
        {
            Some(group) => group.gid.as_raw(),
            None => match name.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => bail!(
                    "unknown group `{name}`\nhint: create it first (a group resource is ordered before its files)"
                ),
            },
        };
        self.gids.insert(name.to_owned(), gid);
        Ok(gid)
    }

    pub(crate) fn user_name(&mut self, uid: u32) -> String {
        self.user_names
            .entry(uid)
            .or_insert_with(|| match User::from_uid(Uid::from_raw(uid)) {
                Ok(Some(u)) => u.name,
                _ => uid.to_string(),
            })
            .clone()
    }

    pub(crate) fn group_name(&mut self, gid: u32) -> String {
        self.group_names
            .entry(gid)
            .or_insert_with(|| match Group::from_gid(Gid::from_raw(gid)) {
                Ok(Some(g)) => g.name,
                _ => gid.to_string(),
            })
            .clone()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A content source over a map, for unit tests of the kinds.

    use std::collections::HashMap;
    use std::sync::Arc;

    use anyhow::{Result, anyhow};

    #[derive(Default)]
    pub(crate) struct MapSource(pub HashMap<String, Arc<[u8]>>);

    impl MapSource {
        pub(crate) fn with(contents: &[&[u8]]) -> Self {
            MapSource(
                contents
                    .iter()
                    .map(|c| (drover_catalog::model::sha256_hex(c), Arc::from(*c)))
                    .collect(),
            )
        }
    }

    impl super::ContentSource for MapSource {
        fn fetch(&self, sha256: &str) -> Result<Arc<[u8]>> {
            self.0
                .get(sha256)
                .cloned()
                .ok_or_else(|| anyhow!("no content {sha256}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_covers_ancestors_of_managed_paths() {
        let source = testing::MapSource::default();
        let env = Env::new(
            &source,
            PathBuf::from("/b"),
            ["/d/a", "/d/sub/x"].into_iter().collect(),
        );
        assert!(env.is_managed("/d/a"));
        assert!(env.is_managed("/d/sub"));
        assert!(!env.is_managed("/d/su"));
        assert!(!env.is_managed("/d/b"));
    }

    #[test]
    fn a_user_planned_in_noop_resolves_without_existing() {
        let mut names = Names::default();
        assert!(names.uid("drover-planned").is_err());
        names.plan_user("drover-planned");
        names.plan_group("drover-planned");
        assert_eq!(names.uid("drover-planned").unwrap(), PLANNED_ID);
        assert_eq!(names.gid("drover-planned").unwrap(), PLANNED_ID);
        assert!(names.is_planned_user("drover-planned"));
        assert!(!names.is_planned_user("root"));
    }

    #[test]
    fn unknown_owner_is_a_clear_error_and_root_resolves() {
        let mut names = Names::default();
        assert_eq!(names.uid("root").unwrap(), 0);
        assert_eq!(names.gid("0").unwrap(), 0);
        let err = names.uid("no-such-user-drover").unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown user `no-such-user-drover`"),
            "{err}"
        );
    }
}
