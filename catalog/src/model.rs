//! The compiled catalog: what the server ships to a node and the agent converges.
//!
//! A compiled catalog is already validated and normalised: resources come in
//! dependency order, `require` holds every edge that must come first (explicit
//! `require`/`subscribe`, reversed `before`/`notify`, implicit parent
//! directories and owners), `subscribe` holds every refresh source (explicit
//! `subscribe` and reversed `notify`). Nothing downstream checks again.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod resource_de;
mod specs;

use specs::is_false;
pub use specs::*;

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

/// One resource of a compiled catalog: in JSON, one object with the id,
/// the `kind` tag, the kind's fields and the metaparameters side by side.
/// Deserialized by hand ([`resource_de`]), in one pass with no buffering.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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

/// Kind-specific desired state, tagged by `kind` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Spec {
    File(FileSpec),
    Directory(DirectorySpec),
    Symlink(SymlinkSpec),
    Package(PackageSpec),
    Service(ServiceSpec),
    /// Boxed, as is `Exec`: the largest specs would make every resource as
    /// large as they are.
    Container(Box<ContainerSpec>),
    User(UserSpec),
    Group(GroupSpec),
    Exec(Box<ExecSpec>),
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
