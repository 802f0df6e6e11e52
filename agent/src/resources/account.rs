//! `user` and `group`: accounts, through the system's own tools (useradd,
//! usermod, groupadd...), which lock /etc/passwd and /etc/group.

use anyhow::{Result, bail};
use drover_catalog::model::{GroupSpec, UserSpec};

use super::{Env, Flags, Outcome};

pub fn converge_user(spec: &UserSpec, _env: &mut Env<'_>, _flags: Flags) -> Result<Outcome> {
    bail!("the agent cannot converge user `{}` yet", spec.name)
}

pub fn converge_group(spec: &GroupSpec, _env: &mut Env<'_>, _flags: Flags) -> Result<Outcome> {
    bail!("the agent cannot converge group `{}` yet", spec.name)
}
