//! `exec`: commands run when their guards say so, or on refresh.

use anyhow::{Result, bail};
use drover_catalog::model::ExecSpec;

use super::{Env, Flags, Outcome};

pub fn converge(spec: &ExecSpec, _env: &mut Env<'_>, _flags: Flags) -> Result<Outcome> {
    bail!("the agent cannot run exec `{}` yet", spec.name)
}
