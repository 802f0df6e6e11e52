//! Apps on the server: the placements every server holds (`placements`),
//! the heartbeats it hears (`liveness`), the control loop the leader runs
//! (`control`), how every server keeps its copy current (`reload`), and
//! what the API, CLI and dashboard show of them (`view`). This file holds
//! only the part of the server's state they share, so that the state does
//! not import the code that uses it.
//! The decisions themselves are the pure core's (`drover_catalog::schedule`).

pub mod control;
pub mod drain;
pub mod health;
pub mod liveness;
pub mod moves;
pub mod placements;
pub mod reload;
pub mod update;
pub mod view;

use std::sync::Arc;

use tokio::sync::Notify;

use liveness::Liveness;
use placements::Placements;

/// The apps' shared parts of the server's state (`AppState`).
#[derive(Debug, Default)]
pub struct Apps {
    pub placements: Placements,
    pub liveness: Arc<Liveness>,
    /// Wakes the control loop before its next tick (a report changed a
    /// replica's state, a node came back).
    pub wake_control: Arc<Notify>,
    /// Wakes the reload of placements (another server changed them).
    pub reload: Arc<Notify>,
}
