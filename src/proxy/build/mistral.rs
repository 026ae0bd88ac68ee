//! The `mistral` provider family (not served by this version yet).

use super::LeafCtx;
use crate::proxy::config::ConfigError;
use crate::router::Deployment;

/// Builds a deployment for this provider.
pub(super) fn build(ctx: &mut LeafCtx<'_>) -> Result<Deployment, ConfigError> {
    Err(ctx.error(format_args!(
        "the provider `{}` (from model `{}`) is not supported by this version of tollgate",
        ctx.kind.name(),
        ctx.entry.litellm_params.model
    )))
}
