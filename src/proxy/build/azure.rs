//! The `azure` provider: Azure OpenAI (`azure/<deployment>`).
//!
//! LiteLLM's settings: `api_base` (the resource URL, or `AZURE_API_BASE`),
//! `api_version` (or `AZURE_API_VERSION`, default
//! [`DEFAULT_API_VERSION`](crate::provider::azure::DEFAULT_API_VERSION)), and
//! one of: `api_key` (sent as `api-key`), `azure_ad_token` (a static Entra ID
//! token), or `tenant_id` + `client_id` + `client_secret` (Entra ID client
//! credentials, with `azure_scope`). Credentials in `litellm_params` win over
//! the environment, which is read in the same order: `AZURE_API_KEY` (or
//! `AZURE_OPENAI_API_KEY`), `AZURE_AD_TOKEN`, then `AZURE_TENANT_ID` +
//! `AZURE_CLIENT_ID` + `AZURE_CLIENT_SECRET`. `AZURE_AUTHORITY_HOST` changes
//! the Entra ID authority (sovereign clouds).

use super::LeafCtx;
use crate::Secret;
use crate::provider::azure::entra::{DEFAULT_AUTHORITY_HOST, DEFAULT_SCOPE};
use crate::provider::azure::{
    Azure, AzureAuth, AzureConfig, DEFAULT_API_VERSION, EntraCredentials, resolved_base,
};
use crate::proxy::config::ConfigError;
use crate::router::Deployment;

/// Builds an Azure OpenAI deployment.
pub(super) fn build(ctx: &mut LeafCtx<'_>) -> Result<Deployment, ConfigError> {
    let p = &ctx.entry.litellm_params;
    let Some(api_base) = p
        .api_base
        .clone()
        .or_else(|| p.base_url.clone())
        .or_else(|| ctx.env_any(&["AZURE_API_BASE"]))
    else {
        return Err(ctx.error(
            "`azure` needs `api_base` (the resource URL, https://<resource>.openai.azure.com) or AZURE_API_BASE",
        ));
    };
    let api_version = ctx
        .param_str("api_version")
        .or_else(|| ctx.env_any(&["AZURE_API_VERSION"]))
        .unwrap_or_else(|| DEFAULT_API_VERSION.to_owned());
    let auth = auth(ctx)?;
    if matches!(auth, AzureAuth::None) {
        let msg = format!(
            "{} has no Azure credentials (set api_key, azure_ad_token or tenant_id/client_id/client_secret, \
             or AZURE_API_KEY); its calls will be refused upstream",
            ctx.where_
        );
        ctx.warnings.push(msg);
    }
    let mut cfg = AzureConfig::new(ctx.upstream_model.clone(), api_base);
    cfg.api_version = api_version;
    cfg.auth = auth;
    cfg.extra_headers = ctx.headers()?;
    cfg.params = ctx.params();
    cfg.drop = ctx.drop.clone();
    cfg.timeouts = ctx.timeouts;
    cfg.client = Some(ctx.client.clone());
    let shown =
        resolved_base(&cfg.api_base, &cfg.api_version).map_err(|e| ctx.error(e.message()))?;
    let info = ctx.info("azure", Some(&shown));
    cfg.info = Some(info.clone());
    let leaf = Azure::new(cfg).map_err(|e| ctx.error(e.message()))?;
    Ok(Deployment::new(info, leaf.clone()).with_embeddings(leaf))
}

fn auth(ctx: &LeafCtx<'_>) -> Result<AzureAuth, ConfigError> {
    let p = &ctx.entry.litellm_params;
    if let Some(key) = p.api_key.clone().filter(|k| !k.is_empty()) {
        return Ok(AzureAuth::ApiKey(key));
    }
    if let Some(token) = ctx.param_str("azure_ad_token").filter(|t| !t.is_empty()) {
        if token.starts_with("oidc/") {
            return Err(ctx.error(
                "`azure_ad_token: oidc/…` (federated OIDC tokens) is not supported; \
                 use tenant_id/client_id/client_secret or a static token",
            ));
        }
        return Ok(AzureAuth::AdToken(Secret::new(token)));
    }
    let entra = |tenant: String, client: String, secret: String| {
        let mut c = EntraCredentials::new(tenant, client, Secret::new(secret));
        c.scope = ctx
            .param_str("azure_scope")
            .or_else(|| ctx.env_any(&["AZURE_SCOPE"]))
            .unwrap_or_else(|| DEFAULT_SCOPE.to_owned());
        c.authority_host = ctx
            .env_any(&["AZURE_AUTHORITY_HOST"])
            .unwrap_or_else(|| DEFAULT_AUTHORITY_HOST.to_owned());
        AzureAuth::Entra(c)
    };
    let tenant = ctx.param_str("tenant_id");
    let client = ctx.param_str("client_id");
    let secret = ctx.param_str("client_secret");
    if tenant.is_some() || secret.is_some() {
        return match (tenant, client, secret) {
            (Some(t), Some(c), Some(s)) => Ok(entra(t, c, s)),
            _ => Err(ctx.error(
                "Entra ID authentication needs all of `tenant_id`, `client_id` and `client_secret`",
            )),
        };
    }
    if let Some(key) = ctx.env_any(&["AZURE_API_KEY", "AZURE_OPENAI_API_KEY"]) {
        return Ok(AzureAuth::ApiKey(Secret::new(key)));
    }
    if let Some(token) = ctx.env_any(&["AZURE_AD_TOKEN"]) {
        return Ok(AzureAuth::AdToken(Secret::new(token)));
    }
    if let (Some(t), Some(c), Some(s)) = (
        ctx.env_any(&["AZURE_TENANT_ID"]),
        ctx.env_any(&["AZURE_CLIENT_ID"]),
        ctx.env_any(&["AZURE_CLIENT_SECRET"]),
    ) {
        return Ok(entra(t, c, s));
    }
    Ok(AzureAuth::None)
}

#[cfg(test)]
mod tests {
    use super::super::tests::built;

    #[test]
    fn bases_versions_and_credentials() {
        let b = built(
            "model_list:
  - model_name: a
    litellm_params:
      model: azure/gpt-4o
      api_base: https://res.openai.azure.com/
      api_version: '2024-08-01-preview'
      api_key: azure-key-123456
    model_info: {base_model: azure/gpt-4o}
  - model_name: b
    litellm_params:
      model: azure/chat
      tenant_id: t-1
      client_id: c-1
      client_secret: os.environ/SECRET
    model_info: {base_model: azure/gpt-4o-mini}
  - model_name: c
    litellm_params: {model: azure/x, api_version: v1}
    model_info: {base_model: azure/gpt-4o-mini}
",
            &[
                ("AZURE_API_BASE", "https://env-res.openai.azure.com"),
                ("SECRET", "client-secret-value"),
            ],
        )
        .unwrap();
        let info = |g: &str| b.router.group(g).unwrap().deployments[0].info.clone();
        assert_eq!(info("a").provider.as_ref(), "azure");
        assert_eq!(
            info("a").api_base.as_deref(),
            Some("https://res.openai.azure.com")
        );
        assert_eq!(
            info("b").api_base.as_deref(),
            Some("https://env-res.openai.azure.com")
        );
        assert_eq!(
            info("c").api_base.as_deref(),
            Some("https://env-res.openai.azure.com/openai/v1")
        );
        // c has no credentials: one warning; the prices come from base_model.
        assert_eq!(b.warnings.len(), 1, "{:?}", b.warnings);
        assert!(b.warnings[0].contains("no Azure credentials"));
        assert!(b.router.group("a").unwrap().deployments[0].price.is_some());
    }

    #[test]
    fn bad_settings_fail_the_config() {
        let e = built(
            "model_list:\n  - model_name: a\n    litellm_params: {model: azure/gpt-4o, api_key: k}\n",
            &[],
        )
        .err()
        .unwrap();
        assert!(e.0.contains("api_base"), "{e}");
        let e = built(
            "model_list:\n  - model_name: a\n    litellm_params: {model: azure/.., api_base: 'https://r.openai.azure.com', api_key: k}\n",
            &[],
        )
        .err()
        .unwrap();
        assert!(e.0.contains("deployment"), "{e}");
        let e = built(
            "model_list:\n  - model_name: a\n    litellm_params: {model: azure/d, api_base: 'https://r.openai.azure.com', tenant_id: t}\n",
            &[],
        )
        .err()
        .unwrap();
        assert!(e.0.contains("client_secret"), "{e}");
    }
}
