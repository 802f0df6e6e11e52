//! drover's pure core: the catalog model, and (in later modules) parsing,
//! validation and compilation of a catalog repository held in memory.
//!
//! Invariant: this crate does no I/O and knows nothing of HTTP, git or the
//! local system. The server hands it files; the agent hands it nothing but a
//! compiled [`Catalog`].

pub mod model;
pub mod report;

pub use model::{Catalog, CatalogRequest, Facts, Mode, Resource, ResourceId, Spec};
pub use report::{Report, ResourceReport};
