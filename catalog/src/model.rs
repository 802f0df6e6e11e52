//! The compiled catalog: what the server ships to a node and the agent converges.
//!
//! A compiled catalog is already validated and normalised: resources come in
//! dependency order, `require` holds every edge that must come first (explicit
//! `require`/`subscribe`, reversed `before`/`notify`, implicit parent
//! directories and owners), `subscribe` holds every refresh source (explicit
//! `subscribe` and reversed `notify`). Nothing downstream checks again.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Facts a node reports about itself: a JSON object (`os.id`, `hostname`, ...).
pub type Facts = serde_json::Map<String, serde_json::Value>;

/// The body of `POST /api/v1/nodes/{name}/catalog`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogRequest {
    #[serde(default)]
    pub facts: Facts,
    /// The environment the agent asks for; a pin in `nodes.toml` wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// One node's compiled desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub node: String,
    pub environment: String,
    pub commit: String,
    /// sha256 of the canonical resource list ([`Catalog::compute_version`]).
    pub version: String,
    pub resources: Vec<Resource>,
    /// File contents embedded by hash (base64), for masterless `apply` of a
    /// compiled catalog file. Not part of the version; the server's catalog
    /// route leaves it empty and serves contents by hash instead.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub contents: BTreeMap<String, String>,
}

impl Catalog {
    /// The version of a resource list: sha256 over its canonical JSON. The
    /// same desired state always gives the same version, whatever the commit.
    pub fn compute_version(resources: &[Resource]) -> String {
        let canonical = serde_json::to_vec(resources).expect("resources serialize");
        sha256_hex(&canonical)
    }

    /// Embeds file contents (sha256 -> bytes) in `contents`, base64-encoded,
    /// so the catalog applies with no server.
    pub fn embed_contents<'a>(
        &mut self,
        contents: impl IntoIterator<Item = (&'a String, &'a [u8])>,
    ) {
        use base64::Engine as _;
        for (sha, bytes) in contents {
            let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
            self.contents.insert(sha.clone(), encoded);
        }
    }

    /// Takes the embedded contents out, decoded and checked against their hashes.
    pub fn take_embedded_contents(&mut self) -> Result<BTreeMap<String, Vec<u8>>, String> {
        use base64::Engine as _;
        let mut decoded = BTreeMap::new();
        for (sha, encoded) in std::mem::take(&mut self.contents) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .map_err(|e| format!("embedded content {sha} is not valid base64: {e}"))?;
            let actual = sha256_hex(&bytes);
            if actual != sha {
                return Err(format!("embedded content {sha} has sha256 {actual}"));
            }
            decoded.insert(sha, bytes);
        }
        Ok(decoded)
    }

    pub fn resource(&self, id: &ResourceId) -> Option<&Resource> {
        self.resources.iter().find(|r| &r.id == id)
    }

    /// Every content hash the catalog references (what a node may fetch).
    pub fn referenced_hashes(&self) -> impl Iterator<Item = &str> {
        self.resources.iter().filter_map(|r| match &r.spec {
            Spec::File(f) => f.sha256.as_deref(),
            _ => None,
        })
    }
}

/// Lowercase hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `KIND:NAME`, e.g. `file:/etc/motd` or `service:nginx`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceId(String);

impl ResourceId {
    pub fn new(kind: Kind, name: &str) -> Self {
        ResourceId(format!("{}:{name}", kind.as_str()))
    }

    pub fn kind(&self) -> Kind {
        let (kind, _) = self.0.split_once(':').expect("validated id has a colon");
        Kind::parse(kind).expect("validated id has a known kind")
    }

    pub fn name(&self) -> &str {
        self.0.split_once(':').expect("validated id has a colon").1
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ResourceId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.split_once(':') {
            Some((kind, name)) if Kind::parse(kind).is_some() && !name.is_empty() => {
                Ok(ResourceId(s))
            }
            Some((kind, _)) if Kind::parse(kind).is_none() => Err(format!(
                "`{s}` names an unknown kind `{kind}` (expected one of {})",
                Kind::ALL.map(Kind::as_str).join(", ")
            )),
            _ => Err(format!("`{s}` is not a resource id of the form KIND:NAME")),
        }
    }
}

impl From<ResourceId> for String {
    fn from(id: ResourceId) -> String {
        id.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The resource kinds of catalog format version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    File,
    Directory,
    Symlink,
    Package,
    Service,
    Container,
    User,
    Group,
    Exec,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::File,
        Kind::Directory,
        Kind::Symlink,
        Kind::Package,
        Kind::Service,
        Kind::Container,
        Kind::User,
        Kind::Group,
        Kind::Exec,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Directory => "directory",
            Kind::Symlink => "symlink",
            Kind::Package => "package",
            Kind::Service => "service",
            Kind::Container => "container",
            Kind::User => "user",
            Kind::Group => "group",
            Kind::Exec => "exec",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Kinds whose NAME is a path on the node.
    pub fn is_path(self) -> bool {
        matches!(self, Kind::File | Kind::Directory | Kind::Symlink)
    }
}

/// One resource of a compiled catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub id: ResourceId,
    #[serde(flatten)]
    pub spec: Spec,
    #[serde(flatten)]
    pub meta: Meta,
}

impl Resource {
    /// A resource with default metaparameters, its id derived from the spec.
    pub fn new(spec: Spec) -> Resource {
        Resource {
            id: ResourceId::new(spec.kind(), spec.name()),
            spec,
            meta: Meta::default(),
        }
    }
}

/// Metaparameters, normalised (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Everything that must be converged first; if one failed, this is skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<ResourceId>,
    /// Resources whose change sends this one a refresh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<ResourceId>,
    /// Report what would change, change nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub noop: bool,
    /// Values are hidden (hash only) in reports, logs and diffs. Set by
    /// `sensitive = true`, or by the compiler when the resource used a
    /// sensitive data value (`{ sensitive = "..." }`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub sensitive: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

fn yes() -> bool {
    true
}

/// Kind-specific desired state, tagged by `kind` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Spec {
    File(FileSpec),
    Directory(DirectorySpec),
    Symlink(SymlinkSpec),
    Package(PackageSpec),
    Service(ServiceSpec),
    Container(ContainerSpec),
    User(UserSpec),
    Group(GroupSpec),
    Exec(ExecSpec),
}

impl Spec {
    /// The NAME of the resource's id: the path of a file-like kind, else its name.
    pub fn name(&self) -> &str {
        match self {
            Spec::File(s) => &s.path,
            Spec::Directory(s) => &s.path,
            Spec::Symlink(s) => &s.path,
            Spec::Package(s) => &s.name,
            Spec::Service(s) => &s.name,
            Spec::Container(s) => &s.name,
            Spec::User(s) => &s.name,
            Spec::Group(s) => &s.name,
            Spec::Exec(s) => &s.name,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Spec::File(_) => Kind::File,
            Spec::Directory(_) => Kind::Directory,
            Spec::Symlink(_) => Kind::Symlink,
            Spec::Package(_) => Kind::Package,
            Spec::Service(_) => Kind::Service,
            Spec::Container(_) => Kind::Container,
            Spec::User(_) => Kind::User,
            Spec::Group(_) => Kind::Group,
            Spec::Exec(_) => Kind::Exec,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ensure {
    #[default]
    Present,
    Absent,
}

/// A permission mode, written as an octal string (`"0644"`) in TOML and JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode(u32);

impl Mode {
    /// Parses `"0644"`, `"644"` or `"01777"`: octal digits only, at most 0o7777.
    pub fn parse(s: &str) -> Result<Mode, String> {
        let valid = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
        match u32::from_str_radix(s, 8) {
            Ok(bits) if valid && bits <= 0o7777 => Ok(Mode(bits)),
            _ => Err(format!(
                "invalid mode `{s}`: expected an octal string such as \"0644\" (at most 07777)"
            )),
        }
    }

    pub fn from_bits(bits: u32) -> Mode {
        Mode(bits & 0o7777)
    }

    pub fn bits(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mode({self})")
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
        let s = String::deserialize(d)?;
        Mode::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSpec {
    pub path: String,
    #[serde(default)]
    pub ensure: Ensure,
    /// sha256 of the desired content; `None` manages only existence and metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Size of the desired content in bytes (lets the agent skip a hash on a size mismatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Keep the replaced content in the agent's state dir by sha256.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub backup: bool,
    /// Command run on the new content before it replaces the old; `%` is the temp path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<String>,
}

impl FileSpec {
    /// A present file with this content and no managed metadata.
    pub fn with_content(path: &str, content: &[u8]) -> FileSpec {
        FileSpec {
            path: path.to_owned(),
            ensure: Ensure::Present,
            sha256: Some(sha256_hex(content)),
            size: Some(content.len() as u64),
            mode: None,
            owner: None,
            group: None,
            backup: true,
            validate: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectorySpec {
    pub path: String,
    #[serde(default)]
    pub ensure: Ensure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Remove entries that no resource of the catalog manages.
    #[serde(default, skip_serializing_if = "is_false")]
    pub purge: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymlinkSpec {
    pub path: String,
    #[serde(default)]
    pub ensure: Ensure,
    /// Required when `ensure = present` (checked at compile time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// `installed`, `absent`, or an exact version string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageEnsure {
    Installed,
    Absent,
    Version(String),
}

impl Serialize for PackageEnsure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            PackageEnsure::Installed => "installed",
            PackageEnsure::Absent => "absent",
            PackageEnsure::Version(v) => v,
        })
    }
}

impl<'de> Deserialize<'de> for PackageEnsure {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match String::deserialize(d)?.as_str() {
            "installed" | "present" => PackageEnsure::Installed,
            "absent" => PackageEnsure::Absent,
            v => PackageEnsure::Version(v.to_owned()),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageSpec {
    pub name: String,
    pub ensure: PackageEnsure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceEnsure {
    Running,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensure: Option<ServiceEnsure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Rendered unit file text, written to /etc/systemd/system/NAME.service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerEnsure {
    #[default]
    Running,
    Stopped,
    Absent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// Docker's form: `["CMD", "wget", "-q", "..."]` or `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// Absolute path of a `docker save` tarball on the node, loaded when
    /// `image` is not present (for nodes that cannot reach a registry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_archive: Option<String>,
    #[serde(default)]
    pub ensure: ContainerEnsure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Docker's `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`, validated at
    /// compile time; read with [`crate::container::PortMapping::parse`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// `SOURCE:TARGET[:ro|:rw]`; an absolute SOURCE is a bind mount, else a
    /// named volume. Read with [`crate::container::Mount::parse`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// `no`, `always`, `unless-stopped`, `on-failure[:N]`; read with
    /// [`crate::container::RestartPolicy::parse`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Memory limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// CPU limit in millicpus (1000 = one CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millicpus: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// Seconds between SIGTERM and SIGKILL when the container is stopped
    /// (Docker's default: 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserSpec {
    pub name: String,
    #[serde(default)]
    pub ensure: Ensure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Primary group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Supplementary groups (exactly these).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub system: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSpec {
    pub name: String,
    #[serde(default)]
    pub ensure: Ensure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub system: bool,
}

/// A command: an argv list run directly, or a string run by `sh -c`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    Argv(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecSpec {
    pub name: String,
    pub command: Command,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Skip when this path exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creates: Option<String>,
    /// Skip when this command succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<Command>,
    /// Run only when this command succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onlyif: Option<Command>,
    /// Run only on refresh.
    #[serde(default, skip_serializing_if = "is_false")]
    pub refreshonly: bool,
    /// Seconds before the whole process group is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_parses_octal_strings_only() {
        assert_eq!(Mode::parse("0644").unwrap().bits(), 0o644);
        assert_eq!(Mode::parse("1777").unwrap().to_string(), "1777");
        for bad in ["", "0648", "rw-r--r--", "17777", "-644", "0o644"] {
            assert!(Mode::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn resource_json_round_trips_with_kind_tag() {
        let json = r#"{"id":"file:/etc/motd","kind":"file","path":"/etc/motd","sha256":"ab","mode":"0644","require":["directory:/etc"]}"#;
        let r: Resource = serde_json::from_str(json).unwrap();
        assert_eq!(r.id.kind(), Kind::File);
        assert_eq!(r.id.name(), "/etc/motd");
        assert_eq!(
            r.meta.require,
            vec![ResourceId::new(Kind::Directory, "/etc")]
        );
        let Spec::File(f) = &r.spec else {
            panic!("not a file")
        };
        assert!(f.backup, "backup defaults to true");
        let expected = json.replace(
            r#""path":"/etc/motd","#,
            r#""path":"/etc/motd","ensure":"present","#,
        );
        assert_eq!(serde_json::to_string(&r).unwrap(), expected);
    }

    #[test]
    fn embedded_contents_round_trip_and_are_checked() {
        let mut catalog = Catalog {
            node: "n".into(),
            environment: "e".into(),
            commit: "c".into(),
            version: Catalog::compute_version(&[]),
            resources: vec![],
            contents: BTreeMap::new(),
        };
        let sha = sha256_hex(b"hello");
        catalog.embed_contents([(&sha, &b"hello"[..])]);
        let mut tampered = catalog.clone();
        assert_eq!(catalog.take_embedded_contents().unwrap()[&sha], b"hello");
        assert!(catalog.contents.is_empty());
        tampered.contents.insert(sha.clone(), "d29ybGQ=".into()); // "world"
        let err = tampered.take_embedded_contents().unwrap_err();
        assert!(err.contains("has sha256"), "{err}");
    }

    #[test]
    fn unknown_kind_in_id_is_rejected() {
        let err = serde_json::from_str::<ResourceId>(r#""fiel:/x""#).unwrap_err();
        assert!(err.to_string().contains("unknown kind `fiel`"), "{err}");
    }
}
