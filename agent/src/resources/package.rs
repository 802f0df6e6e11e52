//! `package`: apt/dpkg on Debian, one apt transaction for a batch.

use anyhow::{Result, anyhow};
use drover_catalog::model::PackageSpec;

use super::{Env, Flags, Outcome};

/// Converges packages together; one result per input, in order.
pub fn converge_batch(specs: &[(&PackageSpec, Flags)], _env: &mut Env<'_>) -> Vec<Result<Outcome>> {
    specs
        .iter()
        .map(|(s, _)| {
            Err(anyhow!(
                "the agent cannot converge package `{}` yet",
                s.name
            ))
        })
        .collect()
}
