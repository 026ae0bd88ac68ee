//! The `cohere` provider: Cohere v2 chat and embed (`cohere/<model>`, `cohere_chat/<model>`).
//!
//! LiteLLM's settings: `api_key` (or `COHERE_API_KEY`, `CO_API_KEY`) and
//! `api_base` (or `COHERE_API_BASE`, default `https://api.cohere.com`; a full
//! endpoint URL such as `…/v2/chat` is trimmed to its host).

use super::LeafCtx;
use crate::Secret;
use crate::provider::cohere::{COHERE_API_BASE, Cohere, CohereConfig, normalize_base};
use crate::proxy::config::ConfigError;
use crate::router::Deployment;

/// Builds a Cohere deployment.
pub(super) fn build(ctx: &mut LeafCtx<'_>) -> Result<Deployment, ConfigError> {
    let p = &ctx.entry.litellm_params;
    let base = p
        .api_base
        .clone()
        .or_else(|| p.base_url.clone())
        .or_else(|| ctx.env_any(&["COHERE_API_BASE"]))
        .unwrap_or_else(|| COHERE_API_BASE.to_owned());
    let key = p.api_key.clone().or_else(|| {
        ctx.env_any(&["COHERE_API_KEY", "CO_API_KEY"])
            .map(Secret::new)
    });
    if key.is_none() {
        let msg = format!(
            "{} has no API key (set litellm_params.api_key or COHERE_API_KEY); its calls will be refused upstream",
            ctx.where_
        );
        ctx.warnings.push(msg);
    }
    let info = ctx.info("cohere", Some(&normalize_base(&base)));
    let mut cfg = CohereConfig::new(ctx.upstream_model.clone()).api_base(base);
    cfg.api_key = key;
    cfg.extra_headers = ctx.headers()?;
    cfg.params = ctx.params();
    cfg.drop = ctx.drop.clone();
    cfg.timeouts = ctx.timeouts;
    cfg.info = Some(info.clone());
    cfg.client = Some(ctx.client.clone());
    let leaf = Cohere::new(cfg).map_err(|e| ctx.error(e.message()))?;
    Ok(Deployment::new(info, leaf.clone()).with_embeddings(leaf))
}

#[cfg(test)]
mod tests {
    use super::super::tests::built;

    #[test]
    fn bases_keys_and_both_prefixes() {
        let b = built(
            "model_list:
  - model_name: a
    litellm_params: {model: cohere/command-a-03-2025}
  - model_name: b
    litellm_params: {model: cohere_chat/command-r-08-2024, api_base: 'http://127.0.0.1:9/v2/chat'}
  - model_name: e
    litellm_params: {model: cohere/embed-v4.0}
",
            &[("CO_API_KEY", "cohere-env-key")],
        )
        .unwrap();
        let info = |g: &str| b.router.group(g).unwrap().deployments[0].info.clone();
        assert_eq!(info("a").provider.as_ref(), "cohere");
        assert_eq!(
            info("a").api_base.as_deref(),
            Some("https://api.cohere.com")
        );
        assert_eq!(info("b").provider.as_ref(), "cohere");
        assert_eq!(info("b").api_base.as_deref(), Some("http://127.0.0.1:9"));
        assert!(
            b.router.group("e").unwrap().deployments[0]
                .embeddings
                .is_some()
        );
        assert!(b.warnings.is_empty(), "{:?}", b.warnings);
        let b = built(
            "model_list:\n  - model_name: a\n    litellm_params: {model: cohere/command-r}\n",
            &[],
        )
        .unwrap();
        assert!(
            b.warnings.iter().any(|w| w.contains("COHERE_API_KEY")),
            "{:?}",
            b.warnings
        );
    }
}
