//! `service`: systemd units over systemd's D-Bus API.

use anyhow::{Result, bail};
use drover_catalog::model::ServiceSpec;

use super::{Env, Flags, Outcome};

/// The connection to systemd, opened by the first service resource of a run.
#[derive(Debug, Default)]
pub struct Services {}

pub fn converge(spec: &ServiceSpec, _env: &mut Env<'_>, _flags: Flags) -> Result<Outcome> {
    bail!("the agent cannot converge service `{}` yet", spec.name)
}
