//! Stage one of parsing: serde structs that mirror the TOML files, with
//! spans kept on every value that a later error may need to point at.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A string with its place in the file.
pub type S = Spanned<String>;
/// Any TOML value with its place (for fields that take several shapes).
pub type V = Spanned<toml::Value>;

/// `drover.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub data: Option<RawDataSettings>,
    /// `[scheduler]`: the scheduler module owns its shape.
    pub scheduler: Option<crate::schedule::RawScheduler>,
    /// `[rollout]`: the rollout module owns its shape.
    pub rollout: Option<crate::rollout::RawRollout>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDataSettings {
    pub hierarchy: Option<Vec<S>>,
}

/// `nodes.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNodes {
    #[serde(default)]
    pub node: Vec<RawNodeEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNodeEntry {
    #[serde(rename = "match")]
    pub pattern: S,
    // A plain table: toml's `Spanned<Value>` cannot hold a nested table
    // (`{ os.id = "debian" }`), and a fact's place is never needed.
    pub facts: Option<toml::Table>,
    #[serde(default)]
    pub roles: Vec<S>,
    pub environment: Option<S>,
    /// Node labels: string values, later entries win per key.
    #[serde(default)]
    pub labels: BTreeMap<String, V>,
    /// `key=value` or `key`: only apps that tolerate them run on the node.
    #[serde(default)]
    pub taints: Vec<S>,
    /// Let roles given only through `facts` render sensitive data.
    #[serde(default)]
    pub trust_facts: bool,
}

/// `roles/NAME.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    #[serde(default)]
    pub include: Vec<S>,
    #[serde(default)]
    pub vars: toml::Table,
    #[serde(default)]
    pub file: Vec<RawFile>,
    #[serde(default)]
    pub directory: Vec<RawDirectory>,
    #[serde(default)]
    pub symlink: Vec<RawSymlink>,
    #[serde(default)]
    pub package: Vec<RawPackage>,
    #[serde(default)]
    pub service: Vec<RawService>,
    #[serde(default)]
    pub container: Vec<RawContainer>,
    #[serde(default)]
    pub user: Vec<RawUser>,
    #[serde(default)]
    pub group: Vec<RawGroup>,
    #[serde(default)]
    pub exec: Vec<RawExec>,
}

/// The metaparameters every kind takes, as written.
#[derive(Debug, Clone, Default)]
pub struct RawMeta {
    pub require: Vec<S>,
    pub before: Vec<S>,
    pub notify: Vec<S>,
    pub subscribe: Vec<S>,
    pub noop: bool,
    pub sensitive: bool,
    pub tags: Vec<S>,
}

// serde's `flatten` does not combine with `deny_unknown_fields`, so the
// metaparameters are spelled into every kind's struct by this macro.
macro_rules! resource {
    ($(#[$doc:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$fm])* pub $field: $ty,)*
            #[serde(default)]
            pub require: Vec<S>,
            #[serde(default)]
            pub before: Vec<S>,
            #[serde(default)]
            pub notify: Vec<S>,
            #[serde(default)]
            pub subscribe: Vec<S>,
            #[serde(default)]
            pub noop: bool,
            #[serde(default)]
            pub sensitive: bool,
            #[serde(default)]
            pub tags: Vec<S>,
        }

        impl $name {
            pub fn meta(&self) -> RawMeta {
                RawMeta {
                    require: self.require.clone(),
                    before: self.before.clone(),
                    notify: self.notify.clone(),
                    subscribe: self.subscribe.clone(),
                    noop: self.noop,
                    sensitive: self.sensitive,
                    tags: self.tags.clone(),
                }
            }
        }
    };
}

resource!(RawFile {
    path: S,
    ensure: Option<S>,
    content: Option<S>,
    source: Option<S>,
    template: Option<S>,
    mode: Option<S>,
    owner: Option<S>,
    group: Option<S>,
    backup: Option<bool>,
    validate: Option<S>,
});

resource!(RawDirectory {
    path: S,
    ensure: Option<S>,
    mode: Option<S>,
    owner: Option<S>,
    group: Option<S>,
    #[serde(default)]
    purge: bool,
});

resource!(RawSymlink {
    path: S,
    ensure: Option<S>,
    target: Option<S>,
});

resource!(RawPackage {
    name: S,
    ensure: Option<S>,
});

resource!(RawService {
    name: S,
    ensure: Option<S>,
    enabled: Option<bool>,
    unit: Option<S>,
    unit_template: Option<S>,
});

resource!(RawContainer {
    name: S,
    image: S,
    image_archive: Option<S>,
    ensure: Option<S>,
    command: Option<Vec<S>>,
    entrypoint: Option<Vec<S>>,
    #[serde(default)]
    env: BTreeMap<String, V>,
    #[serde(default)]
    ports: Vec<S>,
    #[serde(default)]
    volumes: Vec<S>,
    restart: Option<S>,
    #[serde(default)]
    labels: BTreeMap<String, V>,
    user: Option<S>,
    network: Option<S>,
    memory: Option<V>,
    cpus: Option<V>,
    healthcheck: Option<RawHealthcheck>,
    stop_timeout: Option<u64>,
});

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthcheck {
    /// A list in Docker's form, or a string run by the shell (`CMD-SHELL`).
    pub test: V,
    pub interval: Option<u64>,
    pub timeout: Option<u64>,
    pub retries: Option<u32>,
}

/// `apps/NAME.toml`: the container kind's fields (the name is the file's
/// stem, and `ensure` is left out: a replica runs, `replicas = 0` stops an
/// app) and what the scheduler needs. The container fields are spelled out
/// again rather than shared with [`RawContainer`], whose shape is a role's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    pub replicas: Option<Spanned<i64>>,
    pub image: S,
    pub image_archive: Option<S>,
    pub command: Option<Vec<S>>,
    pub entrypoint: Option<Vec<S>>,
    #[serde(default)]
    pub env: BTreeMap<String, V>,
    #[serde(default)]
    pub ports: Vec<S>,
    #[serde(default)]
    pub volumes: Vec<S>,
    pub restart: Option<S>,
    #[serde(default)]
    pub labels: BTreeMap<String, V>,
    pub user: Option<S>,
    pub network: Option<S>,
    pub memory: Option<V>,
    pub cpus: Option<V>,
    pub healthcheck: Option<RawHealthcheck>,
    pub stop_timeout: Option<u64>,
    #[serde(default)]
    pub noop: bool,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default)]
    pub tags: Vec<S>,
    pub requests: Option<RawRequests>,
    pub selector: Option<RawSelector>,
    pub spread: Option<S>,
    #[serde(default)]
    pub tolerations: Vec<S>,
    pub health: Option<RawHealth>,
    pub disruption: Option<RawDisruption>,
    pub update: Option<RawUpdate>,
}

/// An app's `requests`: cpu as a number, memory and disk as bytes or sizes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequests {
    pub cpu: Option<V>,
    pub memory: Option<V>,
    pub disk: Option<V>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelector {
    #[serde(default)]
    pub roles: Vec<S>,
    /// A plain table, as `RawNodeEntry::facts`.
    pub facts: Option<toml::Table>,
    #[serde(default)]
    pub labels: BTreeMap<String, V>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub http: S,
    pub port: Spanned<i64>,
    pub interval_secs: Option<Spanned<i64>>,
    pub timeout_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDisruption {
    pub min_available: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpdate {
    pub max_parallel: Option<Spanned<i64>>,
    pub canary: Option<Spanned<i64>>,
    pub min_healthy_secs: Option<Spanned<i64>>,
    pub healthy_deadline_secs: Option<Spanned<i64>>,
    pub auto_revert: Option<bool>,
}

resource!(RawUser {
    name: S,
    ensure: Option<S>,
    uid: Option<u32>,
    group: Option<S>,
    #[serde(default)]
    groups: Vec<S>,
    home: Option<S>,
    shell: Option<S>,
    #[serde(default)]
    system: bool,
});

resource!(RawGroup {
    name: S,
    ensure: Option<S>,
    gid: Option<u32>,
    #[serde(default)]
    system: bool,
});

resource!(RawExec {
    name: S,
    /// An argv list, or a string run by `sh -c`.
    command: V,
    cwd: Option<S>,
    #[serde(default)]
    env: BTreeMap<String, V>,
    user: Option<S>,
    creates: Option<S>,
    unless: Option<V>,
    onlyif: Option<V>,
    #[serde(default)]
    refreshonly: bool,
    timeout: Option<u64>,
});

/// One resource of a role, any kind, in the order of its kind's table.
#[derive(Debug, Clone)]
pub enum RawResource {
    File(RawFile),
    Directory(RawDirectory),
    Symlink(RawSymlink),
    Package(RawPackage),
    Service(RawService),
    Container(Box<RawContainer>),
    User(RawUser),
    Group(RawGroup),
    Exec(RawExec),
}

impl RawRole {
    pub fn resources(&self) -> Vec<RawResource> {
        let mut out = Vec::new();
        out.extend(self.file.iter().cloned().map(RawResource::File));
        out.extend(self.directory.iter().cloned().map(RawResource::Directory));
        out.extend(self.symlink.iter().cloned().map(RawResource::Symlink));
        out.extend(self.package.iter().cloned().map(RawResource::Package));
        out.extend(self.service.iter().cloned().map(RawResource::Service));
        out.extend(
            self.container
                .iter()
                .cloned()
                .map(|c| RawResource::Container(Box::new(c))),
        );
        out.extend(self.user.iter().cloned().map(RawResource::User));
        out.extend(self.group.iter().cloned().map(RawResource::Group));
        out.extend(self.exec.iter().cloned().map(RawResource::Exec));
        out
    }
}
