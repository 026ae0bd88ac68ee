//! The `anthropic` provider: `anthropic/<model>` and bare `claude-*` models.
//!
//! LiteLLM's settings: `api_base` (or `base_url`, then `ANTHROPIC_API_BASE` /
//! `ANTHROPIC_BASE_URL`, default `https://api.anthropic.com`; `/v1/messages`
//! is appended unless the base already ends with it), `api_key` (then
//! `ANTHROPIC_API_KEY`; without a key, `ANTHROPIC_AUTH_TOKEN` is sent as a
//! bearer token), `extra_headers` / `headers` (an `anthropic-beta` there is
//! joined with the client's), `cache_control_injection_points`, and provider
//! parameters as request defaults (`max_tokens`, `top_k`, `thinking`, …).

use super::LeafCtx;
use crate::Secret;
use crate::provider::anthropic::{ANTHROPIC_API_BASE, Anthropic, AnthropicConfig, CachePoint};
use crate::proxy::config::ConfigError;
use crate::router::Deployment;

/// LiteLLM's `cache_control_injection_points` of a deployment.
pub(super) fn injection_points(ctx: &LeafCtx<'_>) -> Result<Vec<CachePoint>, ConfigError> {
    match ctx.entry.litellm_params.other.get("cache_control_injection_points") {
        None => Ok(Vec::new()),
        Some(v) => serde_json::from_value::<Vec<CachePoint>>(v.clone()).map_err(|e| {
            ctx.error(format_args!(
                "`cache_control_injection_points` must be a list of {{location, role | index, control}}: {e}"
            ))
        }),
    }
}

/// Builds an Anthropic deployment.
pub(super) fn build(ctx: &mut LeafCtx<'_>) -> Result<Deployment, ConfigError> {
    let p = &ctx.entry.litellm_params;
    let base = p
        .api_base
        .clone()
        .or_else(|| p.base_url.clone())
        .or_else(|| ctx.env_any(&["ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"]))
        .unwrap_or_else(|| ANTHROPIC_API_BASE.to_owned());
    let api_key = p
        .api_key
        .clone()
        .or_else(|| ctx.env_any(&["ANTHROPIC_API_KEY"]).map(Secret::new));
    let auth_token = if api_key.is_none() {
        ctx.env_any(&["ANTHROPIC_AUTH_TOKEN"]).map(Secret::new)
    } else {
        None
    };
    if api_key.is_none() && auth_token.is_none() {
        let msg = format!(
            "{} has no API key (set litellm_params.api_key or ANTHROPIC_API_KEY); its calls will be refused upstream",
            ctx.where_
        );
        ctx.warnings.push(msg);
    }
    let cache_control_injection_points = injection_points(ctx)?;
    let info = ctx.info("anthropic", Some(&base));
    let mut cfg = AnthropicConfig::new(ctx.upstream_model.clone()).api_base(base);
    cfg.api_key = api_key;
    cfg.auth_token = auth_token;
    cfg.extra_headers = ctx.headers()?;
    cfg.params = ctx.params();
    cfg.cache_control_injection_points = cache_control_injection_points;
    cfg.drop = ctx.drop.clone();
    cfg.timeouts = ctx.timeouts;
    cfg.info = Some(info.clone());
    cfg.client = Some(ctx.client.clone());
    let leaf = Anthropic::new(cfg).map_err(|e| ctx.error(e.message()))?;
    Ok(Deployment::new(info, leaf))
}

#[cfg(test)]
mod tests {
    use super::super::tests::built;

    #[test]
    fn bases_keys_and_bare_claude_names() {
        let b = built(
            "model_list:
  - model_name: c
    litellm_params: {model: anthropic/claude-haiku-4-5}
  - model_name: bare
    litellm_params: {model: claude-sonnet-4-5, api_base: 'http://127.0.0.1:9/proxy/v1/messages', api_key: sk-ant-x}
  - model_name: env
    litellm_params: {model: anthropic/claude-opus-4-6, cache_control_injection_points: [{location: message, role: system}]}
",
            &[
                ("ANTHROPIC_API_KEY", "sk-ant-env-0123456789"),
                ("ANTHROPIC_BASE_URL", "http://10.1.2.3:8080"),
            ],
        )
        .unwrap();
        assert!(b.warnings.is_empty(), "{:?}", b.warnings);
        let c = &b.router.group("c").unwrap().deployments[0].info;
        assert_eq!(c.provider.as_ref(), "anthropic");
        assert_eq!(c.model.as_ref(), "anthropic/claude-haiku-4-5");
        assert_eq!(c.api_base.as_deref(), Some("http://10.1.2.3:8080"));
        let bare = &b.router.group("bare").unwrap().deployments[0].info;
        assert_eq!(bare.provider.as_ref(), "anthropic");
        assert_eq!(
            bare.api_base.as_deref(),
            Some("http://127.0.0.1:9/proxy/v1/messages")
        );

        let b = built(
            "model_list:\n  - model_name: c\n    litellm_params: {model: anthropic/claude-haiku-4-5}\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            b.router.group("c").unwrap().deployments[0]
                .info
                .api_base
                .as_deref(),
            Some("https://api.anthropic.com")
        );
        assert!(
            b.warnings[0].contains("ANTHROPIC_API_KEY"),
            "{:?}",
            b.warnings
        );
        let b = built(
            "model_list:\n  - model_name: c\n    litellm_params: {model: anthropic/claude-haiku-4-5}\n",
            &[("ANTHROPIC_AUTH_TOKEN", "tok-0123456789")],
        )
        .unwrap();
        assert!(b.warnings.is_empty(), "{:?}", b.warnings);

        let e = built(
            "model_list:\n  - model_name: c\n    litellm_params: {model: anthropic/x, cache_control_injection_points: 5}\n",
            &[],
        )
        .err()
        .unwrap();
        assert!(e.0.contains("cache_control_injection_points"), "{e}");
    }
}
