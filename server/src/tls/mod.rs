//! The server's own certificate authority and its mutual-TLS listener.
//!
//! `ca` opens or creates the CA, the server certificate and the catalog
//! signing key; `store` keeps pending requests, issued certificates and
//! revocations in `DATA/ca`; `csr` (from drover-catalog) decides which
//! requests may be signed; `policy` decides when they are signed without an
//! operator; `verifier` checks client certificates (revocations included) at
//! every handshake; `listener` is the accept loop, holding strangers to
//! their share of it (`admission`) and bodies to a deadline (`deadline`);
//! `admin` is `drover-server ca`.

pub mod admin;
pub mod admission;
pub mod ca;
pub mod deadline;
pub mod files;
pub mod listener;
pub mod policy;
pub mod replica;
pub mod requests;
pub mod store;
pub mod verifier;

pub use ca::Pki;
/// Which requests may be signed: pure, so it lives in the core crate.
pub use drover_catalog::csr;

/// Subject organisation of node certificates.
pub const ORG_NODES: &str = "drover nodes";
/// Subject organisation of operator certificates.
pub const ORG_OPERATORS: &str = "drover operators";

/// Who a certificate the CA issues is for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    Node,
    Operator,
}

impl CertKind {
    pub const ALL: [CertKind; 2] = [CertKind::Node, CertKind::Operator];

    /// The subject organisation that marks this kind.
    pub fn organization(self) -> &'static str {
        match self {
            CertKind::Node => ORG_NODES,
            CertKind::Operator => ORG_OPERATORS,
        }
    }

    /// The word `ca list` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Node => "node",
            CertKind::Operator => "operator",
        }
    }

    /// The directory under `DATA/ca/certs` holding this kind.
    pub fn dir_name(self) -> &'static str {
        match self {
            CertKind::Node => "nodes",
            CertKind::Operator => "operators",
        }
    }
}

impl std::fmt::Display for CertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
