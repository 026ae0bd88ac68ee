//! The `bedrock` provider family: AWS Bedrock Converse (`bedrock/…`, `bedrock_converse/…`),
//! and InvokeModel embeddings for `amazon.titan-embed-*` / `cohere.embed-*` models.
//!
//! LiteLLM's settings: `aws_access_key_id`, `aws_secret_access_key`,
//! `aws_session_token`, `aws_region_name`, `aws_bedrock_runtime_endpoint`
//! (or `api_base`), and `api_key` for a Bedrock API key; otherwise the standard
//! environment variables (`AWS_BEARER_TOKEN_BEDROCK`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION_NAME`,
//! `AWS_REGION`, `AWS_DEFAULT_REGION`, `AWS_BEDROCK_RUNTIME_ENDPOINT`).
//! `aws_role_name` (with `aws_session_name`, default `tollgate`, and
//! `aws_sts_endpoint`) assumes that role through STS with those credentials;
//! calls are signed with the temporary ones, cached until shortly before expiry.

use super::LeafCtx;
use crate::Secret;
use crate::provider::bedrock::sts::DEFAULT_DURATION;
use crate::provider::bedrock::{
    AssumeRole, AssumeRoleConfig, AwsCredentials, Bedrock, BedrockAuth, BedrockConfig,
    BedrockEmbeddings, EmbedFamily, arn_region,
};
use crate::proxy::config::ConfigError;
use crate::router::Deployment;

/// LiteLLM's region when none is configured.
const DEFAULT_REGION: &str = "us-west-2";

/// Builds a Bedrock deployment.
pub(super) fn build(ctx: &mut LeafCtx<'_>) -> Result<Deployment, ConfigError> {
    let p = &ctx.entry.litellm_params;
    let model = ctx.upstream_model.clone();
    let model = model.strip_prefix("converse/").unwrap_or(&model).to_owned();
    if model.starts_with("invoke/") {
        return Err(ctx.error(
            "`bedrock/invoke/…` (InvokeModel) is not supported: use `bedrock/<model id>` (Converse)",
        ));
    }
    let region = ctx
        .param_str("aws_region_name")
        .or_else(|| arn_region(&model).map(str::to_owned))
        .or_else(|| ctx.env_any(&["AWS_REGION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION"]));
    let region = match region {
        Some(r) => r,
        None => {
            let msg = format!(
                "{} sets no AWS region (aws_region_name or AWS_REGION); using {DEFAULT_REGION}",
                ctx.where_
            );
            ctx.warnings.push(msg);
            DEFAULT_REGION.to_owned()
        }
    };
    let endpoint = ctx
        .param_str("aws_bedrock_runtime_endpoint")
        .or_else(|| p.api_base.clone())
        .or_else(|| p.base_url.clone())
        .or_else(|| ctx.env_any(&["AWS_BEDROCK_RUNTIME_ENDPOINT"]));

    let key_id = ctx.param_str("aws_access_key_id");
    let secret = ctx.param_str("aws_secret_access_key");
    let token = ctx.param_str("aws_session_token");
    let sigv4 = |id: String, secret: String, token: Option<String>| {
        let mut c = AwsCredentials::new(id, Secret::new(secret));
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            c = c.with_session_token(Secret::new(t));
        }
        BedrockAuth::SigV4(c)
    };
    let auth = if let Some(key) = p.api_key.clone().filter(|k| !k.is_empty()) {
        BedrockAuth::ApiKey(key)
    } else if key_id.is_some() || secret.is_some() {
        match (key_id, secret) {
            (Some(id), Some(secret)) => sigv4(id, secret, token),
            _ => {
                return Err(ctx.error(
                    "set both `aws_access_key_id` and `aws_secret_access_key` (or neither)",
                ));
            }
        }
    } else if let Some(key) = ctx.env_any(&["AWS_BEARER_TOKEN_BEDROCK"]) {
        BedrockAuth::ApiKey(Secret::new(key))
    } else if let (Some(id), Some(secret)) = (
        ctx.env_any(&["AWS_ACCESS_KEY_ID"]),
        ctx.env_any(&["AWS_SECRET_ACCESS_KEY"]),
    ) {
        sigv4(
            id,
            secret,
            token.or_else(|| ctx.env_any(&["AWS_SESSION_TOKEN"])),
        )
    } else {
        let msg = format!(
            "{} has no AWS credentials (set aws_access_key_id/aws_secret_access_key, api_key, \
             or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_BEARER_TOKEN_BEDROCK); its calls will be refused upstream",
            ctx.where_
        );
        ctx.warnings.push(msg);
        BedrockAuth::None
    };

    let auth = match ctx.param_str("aws_role_name").filter(|r| !r.is_empty()) {
        None => auth,
        Some(role_arn) => {
            let BedrockAuth::SigV4(source) = auth else {
                return Err(ctx.error(
                    "`aws_role_name` needs source AWS credentials to assume it with \
                     (aws_access_key_id/aws_secret_access_key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
                ));
            };
            let session_name = ctx
                .param_str("aws_session_name")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "tollgate".to_owned());
            let role = AssumeRole::new(AssumeRoleConfig {
                role_arn,
                session_name,
                source,
                region: region.clone(),
                endpoint: ctx.param_str("aws_sts_endpoint"),
                duration: DEFAULT_DURATION,
                client: Some(ctx.client.clone()),
            })
            .map_err(|e| ctx.error(e.message()))?;
            BedrockAuth::AssumeRole(std::sync::Arc::new(role))
        }
    };

    let shown_base = endpoint
        .clone()
        .unwrap_or_else(|| format!("https://bedrock-runtime.{region}.amazonaws.com"));
    let info = ctx.info("bedrock", Some(&shown_base));
    let base_model = ctx
        .entry
        .model_info
        .get("base_model")
        .and_then(|v| v.as_str())
        .map(|s| s.trim_start_matches("bedrock/").to_owned());
    let embed_model = base_model.clone().unwrap_or_else(|| model.clone());
    let mut cfg = BedrockConfig::new(model, region);
    cfg.base_model = base_model;
    cfg.endpoint = endpoint;
    cfg.auth = auth;
    cfg.extra_headers = ctx.headers()?;
    cfg.params = ctx.params();
    cfg.drop = ctx.drop.clone();
    cfg.timeouts = ctx.timeouts;
    cfg.info = Some(info.clone());
    cfg.client = Some(ctx.client.clone());
    let leaf = Bedrock::new(cfg).map_err(|e| ctx.error(e.message()))?;
    if EmbedFamily::of(&embed_model).is_some() {
        let embeddings = BedrockEmbeddings::new(leaf.clone(), &embed_model);
        return Ok(Deployment::new(info, leaf).with_embeddings(embeddings));
    }
    Ok(Deployment::new(info, leaf))
}

#[cfg(test)]
mod tests {
    use super::super::tests::built;

    #[test]
    fn credentials_regions_and_endpoints() {
        let b = built(
            "model_list:
  - model_name: a
    litellm_params:
      model: bedrock/anthropic.claude-3-haiku-20240307-v1:0
      aws_access_key_id: AKIDEXAMPLE
      aws_secret_access_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
      aws_region_name: eu-west-1
  - model_name: b
    litellm_params:
      model: bedrock/converse/us.amazon.nova-lite-v1:0
      aws_bedrock_runtime_endpoint: http://127.0.0.1:9
  - model_name: c
    litellm_params:
      model: bedrock_converse/arn:aws:bedrock:ap-south-1:123456789012:inference-profile/apac.amazon.nova-micro-v1:0
      api_key: bedrock-key-123456
",
            &[("AWS_ACCESS_KEY_ID", "AKIDENV"), ("AWS_SECRET_ACCESS_KEY", "env-secret"), ("AWS_REGION", "us-east-2")],
        )
        .unwrap();
        // claude-3-haiku is no longer in the price table: only that warning is expected.
        assert_eq!(b.warnings.len(), 1, "{:?}", b.warnings);
        assert!(b.warnings[0].contains("no price is known for `bedrock/anthropic.claude-3-haiku"));
        let info = |g: &str| b.router.group(g).unwrap().deployments[0].info.clone();
        assert_eq!(info("a").provider.as_ref(), "bedrock");
        assert_eq!(
            info("a").api_base.as_deref(),
            Some("https://bedrock-runtime.eu-west-1.amazonaws.com")
        );
        assert_eq!(info("b").api_base.as_deref(), Some("http://127.0.0.1:9"));
        // An ARN's own region wins over the environment's.
        assert_eq!(
            info("c").api_base.as_deref(),
            Some("https://bedrock-runtime.ap-south-1.amazonaws.com")
        );
    }

    #[test]
    fn missing_credentials_warn_and_half_credentials_fail() {
        let b = built(
            "model_list:\n  - model_name: a\n    litellm_params: {model: bedrock/amazon.nova-lite-v1:0}\n",
            &[],
        )
        .unwrap();
        assert_eq!(b.warnings.len(), 2, "{:?}", b.warnings);
        assert!(b.warnings.iter().any(|w| w.contains("AWS_ACCESS_KEY_ID")));
        assert!(b.warnings.iter().any(|w| w.contains("us-west-2")));
        let e = built(
            "model_list:\n  - model_name: a\n    litellm_params: {model: bedrock/m, aws_access_key_id: AKIDX, aws_region_name: us-east-1}\n",
            &[],
        )
        .err()
        .unwrap();
        assert!(e.0.contains("aws_secret_access_key"), "{e}");
        let e = built(
            "model_list:\n  - model_name: a\n    litellm_params: {model: bedrock/invoke/m, aws_region_name: us-east-1}\n",
            &[],
        )
        .err()
        .unwrap();
        assert!(e.0.contains("invoke"), "{e}");
    }

    #[test]
    fn roles_need_source_credentials_and_embeddings_only_for_embedding_models() {
        let e = built(
            "model_list:\n  - model_name: a\n    litellm_params: {model: bedrock/m, aws_region_name: us-east-1, aws_role_name: 'arn:aws:iam::1:role/r'}\n",
            &[],
        )
        .err()
        .unwrap();
        assert!(e.0.contains("aws_role_name"), "{e}");
        let b = built(
            "model_list:\n  - model_name: a\n    litellm_params: {model: bedrock/m, aws_region_name: us-east-1, aws_access_key_id: AKIDX, aws_secret_access_key: s, aws_role_name: 'arn:aws:iam::1:role/r', aws_session_name: s1}\n  - model_name: t\n    litellm_params: {model: bedrock/amazon.titan-embed-text-v2:0, aws_region_name: us-east-1, api_key: k}\n",
            &[],
        )
        .unwrap();
        assert!(
            b.warnings.iter().all(|w| !w.contains("aws_role_name")),
            "{:?}",
            b.warnings
        );
        assert!(
            b.router.group("a").unwrap().deployments[0]
                .embeddings
                .is_none()
        );
        assert!(
            b.router.group("t").unwrap().deployments[0]
                .embeddings
                .is_some()
        );
    }
}
