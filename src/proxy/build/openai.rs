//! OpenAI, the OpenAI-compatible table, and the mock provider.

use super::LeafCtx;
use crate::Secret;
use crate::provider::{Mock, MockConfig, OpenAi, OpenAiConfig, ProviderKind};
use crate::proxy::config::ConfigError;
use crate::router::Deployment;
use std::sync::Arc;

/// A mock deployment (`mock/…`, or any deployment with `mock_response`).
pub(super) fn mock(ctx: &LeafCtx<'_>) -> Deployment {
    let mut cfg = MockConfig::new(&ctx.full_model);
    cfg.response
        .clone_from(&ctx.entry.litellm_params.mock_response);
    let mut info = (*ctx.info("mock", None)).clone();
    info.api_base = None;
    cfg.info = Arc::new(info);
    let mock = Mock::new(cfg);
    let info = mock.info().clone();
    let mut d = Deployment::new(info, mock.clone()).with_embeddings(mock.clone());
    d.probe = Some(Arc::new(mock));
    d
}

/// An OpenAI or OpenAI-compatible deployment.
pub(super) fn build(ctx: &mut LeafCtx<'_>) -> Result<Deployment, ConfigError> {
    let p = &ctx.entry.litellm_params;
    let configured = p.api_base.clone().or_else(|| p.base_url.clone());
    struct Resolved {
        provider: &'static str,
        base: Option<String>,
        key: Option<Secret>,
        stream_usage: bool,
        model: String,
        key_vars: Option<&'static [&'static str]>,
    }
    let r = match &ctx.kind {
        ProviderKind::Compat(c) => {
            let configured = configured.or_else(|| ctx.env_any(c.base_env));
            Resolved {
                provider: c.name,
                base: c.resolve_base(configured.as_deref()),
                key: p
                    .api_key
                    .clone()
                    .or_else(|| ctx.env_any(c.key_env).map(Secret::new)),
                stream_usage: c.stream_usage,
                model: c.upstream_model(&ctx.upstream_model),
                key_vars: c.key_required.then_some(c.key_env),
            }
        }
        _ => Resolved {
            provider: "openai",
            base: configured
                .or_else(|| ctx.env_any(&["OPENAI_API_BASE", "OPENAI_BASE_URL"]))
                .or_else(|| Some(crate::provider::openai::OPENAI_API_BASE.to_owned())),
            key: p
                .api_key
                .clone()
                .or_else(|| ctx.env_any(&["OPENAI_API_KEY"]).map(Secret::new)),
            stream_usage: true,
            model: ctx.upstream_model.clone(),
            key_vars: Some(&["OPENAI_API_KEY"]),
        },
    };
    let Resolved {
        provider,
        base,
        key,
        stream_usage,
        model,
        key_vars,
    } = r;
    let Some(base) = base else {
        return Err(ctx.error(format_args!(
            "`{provider}` needs `api_base` (the server's URL)"
        )));
    };
    if let (None, Some(vars)) = (&key, key_vars) {
        let msg = format!(
            "{} has no API key (set litellm_params.api_key or {}); its calls will be refused upstream",
            ctx.where_,
            vars.join(" / ")
        );
        ctx.warnings.push(msg);
    }
    let info = ctx.info(provider, Some(&base));
    let organization = p.organization.clone().or_else(|| {
        (provider == "openai")
            .then(|| ctx.env_any(&["OPENAI_ORGANIZATION"]))
            .flatten()
    });
    let cfg = OpenAiConfig {
        model,
        api_base: base,
        api_key: key,
        organization,
        project: p.project.clone(),
        extra_headers: ctx.headers()?,
        params: ctx.params(),
        provider: Arc::from(provider),
        stream_usage,
        drop: ctx.drop.clone(),
        timeouts: ctx.timeouts,
        info: Some(info.clone()),
        client: Some(ctx.client.clone()),
    };
    let leaf = OpenAi::new(cfg).map_err(|e| ctx.error(e.message()))?;
    let mut d = Deployment::new(info, leaf.clone()).with_embeddings(leaf.clone());
    d.probe = Some(Arc::new(leaf));
    Ok(d)
}
