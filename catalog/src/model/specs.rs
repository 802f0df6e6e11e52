//! The kind-specific desired state of each resource kind, and the value
//! types they share (modes, ensure values, commands).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::sha256_hex;

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
    /// An app's `health`, probed by the agent from outside the container;
    /// only an app's replicas have one (a role's `[[container]]` cannot set
    /// it). Left out of the JSON when unset, so catalogs without apps keep
    /// their bytes and their version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<HttpProbe>,
}

/// An HTTP GET of `path` on the container's `port`: 2xx and 3xx pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpProbe {
    /// Starts with `/`.
    pub path: String,
    /// The port inside the container (not a published host port).
    pub port: u16,
    pub interval_secs: u64,
    pub timeout_secs: u64,
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

pub(super) fn is_false(b: &bool) -> bool {
    !*b
}

pub(super) fn is_true(b: &bool) -> bool {
    *b
}

pub(super) fn yes() -> bool {
    true
}
