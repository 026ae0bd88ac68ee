//! The `mistral` provider: Mistral La Plateforme (`mistral/<model>`).
//!
//! LiteLLM's settings: `api_key` (or `MISTRAL_API_KEY`) and `api_base` (or
//! `MISTRAL_API_BASE`, default `https://api.mistral.ai/v1`; `/v1` is added
//! when missing). Chat and embeddings (`mistral/mistral-embed`).

use super::LeafCtx;
use crate::Secret;
use crate::provider::mistral::{MISTRAL_API_BASE, Mistral, MistralConfig, normalize_base};
use crate::proxy::config::ConfigError;
use crate::router::Deployment;

/// Builds a Mistral deployment.
pub(super) fn build(ctx: &mut LeafCtx<'_>) -> Result<Deployment, ConfigError> {
    let p = &ctx.entry.litellm_params;
    let base = p
        .api_base
        .clone()
        .or_else(|| p.base_url.clone())
        .or_else(|| ctx.env_any(&["MISTRAL_API_BASE"]))
        .unwrap_or_else(|| MISTRAL_API_BASE.to_owned());
    let key = p
        .api_key
        .clone()
        .or_else(|| ctx.env_any(&["MISTRAL_API_KEY"]).map(Secret::new));
    if key.is_none() {
        let msg = format!(
            "{} has no API key (set litellm_params.api_key or MISTRAL_API_KEY); its calls will be refused upstream",
            ctx.where_
        );
        ctx.warnings.push(msg);
    }
    let info = ctx.info("mistral", Some(&normalize_base(&base)));
    let mut cfg = MistralConfig::new(ctx.upstream_model.clone()).api_base(base);
    cfg.api_key = key;
    cfg.extra_headers = ctx.headers()?;
    cfg.params = ctx.params();
    cfg.drop = ctx.drop.clone();
    cfg.timeouts = ctx.timeouts;
    cfg.info = Some(info.clone());
    cfg.client = Some(ctx.client.clone());
    let leaf = Mistral::new(cfg).map_err(|e| ctx.error(e.message()))?;
    Ok(Deployment::new(info, leaf.clone()).with_embeddings(leaf))
}

#[cfg(test)]
mod tests {
    use super::super::tests::built;

    #[test]
    fn bases_and_keys() {
        let b = built(
            "model_list:
  - model_name: small
    litellm_params: {model: mistral/mistral-small-latest}
  - model_name: local
    litellm_params: {model: mistral/mistral-large-latest, api_base: 'http://127.0.0.1:9', api_key: k}
  - model_name: embed
    litellm_params: {model: mistral/mistral-embed}
",
            &[("MISTRAL_API_KEY", "mistral-env-key")],
        )
        .unwrap();
        assert!(b.warnings.is_empty(), "{:?}", b.warnings);
        let info = |g: &str| b.router.group(g).unwrap().deployments[0].info.clone();
        assert_eq!(info("small").provider.as_ref(), "mistral");
        assert_eq!(
            info("small").api_base.as_deref(),
            Some("https://api.mistral.ai/v1")
        );
        assert_eq!(
            info("local").api_base.as_deref(),
            Some("http://127.0.0.1:9/v1")
        );
        assert!(
            b.router.group("embed").unwrap().deployments[0]
                .embeddings
                .is_some()
        );
        let b = built(
            "model_list:\n  - model_name: s\n    litellm_params: {model: mistral/mistral-small-latest}\n",
            &[],
        )
        .unwrap();
        assert!(
            b.warnings.iter().any(|w| w.contains("MISTRAL_API_KEY")),
            "{:?}",
            b.warnings
        );
    }
}
