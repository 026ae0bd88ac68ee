//! Turning a [`ProxyConfig`] into deployments, a router and an edge.

use super::config::{ConfigError, ModelEntry, ProxyConfig};
use crate::Secret;
use crate::provider::{
    LeafTimeouts, Mock, MockConfig, OpenAi, OpenAiConfig, ProviderKind, compat::CompatProvider,
};
use crate::router::{Deployment, Router};
use crate::transport::HttpClient;
use crate::types::{DeploymentInfo, Extra};
use http::{HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::Duration;

/// Environment lookup used while building (the library itself never reads the environment).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The default request timeout when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What the config produced.
pub struct Built {
    /// The router over every deployment.
    pub router: Router,
    /// Things worth a start-up warning (never contain secrets).
    pub warnings: Vec<String>,
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.clamp(0.001, 86_400.0))
}

/// A stable id for a deployment without `model_info.id`: the same config gives
/// the same id on every replica and every restart.
fn stable_id(entry: &ModelEntry, base: Option<&str>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        entry.model_name.as_str(),
        "\u{0}",
        entry.litellm_params.model.as_str(),
        "\u{0}",
        base.unwrap_or(""),
    ] {
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// A base URL safe to show: scheme, host, port and path only (no query, no user info).
fn display_base(base: &str) -> String {
    match base.parse::<http::Uri>() {
        Ok(uri) => {
            let scheme = uri.scheme_str().unwrap_or("https");
            let host = uri.host().unwrap_or("");
            let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{scheme}://{host}{port}{}",
                uri.path().trim_end_matches('/')
            )
        }
        Err(_) => "<invalid>".to_owned(),
    }
}

fn headers(
    entry: &ModelEntry,
    where_: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    let mut out = Vec::new();
    let p = &entry.litellm_params;
    for map in [&p.extra_headers, &p.headers].into_iter().flatten() {
        for (k, v) in map {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| ConfigError(format!("{where_}: `{k}` is not a valid header name")))?;
            let mut value = HeaderValue::from_str(v).map_err(|_| {
                ConfigError(format!("{where_}: the value of header `{k}` is not valid"))
            })?;
            value.set_sensitive(true);
            out.push((name, value));
        }
    }
    Ok(out)
}

fn params(entry: &ModelEntry) -> Extra {
    let mut extra = Extra::new();
    for (k, v) in entry.litellm_params.forwarded() {
        // Serialising a serde_json::Value cannot fail.
        let _ = extra.insert(k.as_str(), v);
    }
    extra
}

/// Builds every deployment and the router.
pub fn build(
    config: &ProxyConfig,
    env: EnvLookup<'_>,
    client: &HttpClient,
) -> Result<Built, ConfigError> {
    let mut warnings = Vec::new();
    let mut builder = Router::builder();
    let default_timeout = config
        .router_settings
        .timeout
        .or(config.litellm_settings.request_timeout)
        .map(secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let default_stream_timeout = config.router_settings.stream_timeout.map(secs);
    for (i, entry) in config.model_list.iter().enumerate() {
        let where_ = format!("model_list[{i}] (`{}`)", entry.model_name);
        let p = &entry.litellm_params;
        let request = p.timeout.map(secs).unwrap_or(default_timeout);
        let timeouts = LeafTimeouts {
            request,
            first_byte: p
                .stream_timeout
                .map(secs)
                .or(default_stream_timeout)
                .unwrap_or(request),
            idle: LeafTimeouts::default()
                .idle
                .min(request.max(Duration::from_secs(1))),
        };
        let full_model = match &p.custom_llm_provider {
            Some(provider) if !p.model.starts_with(&format!("{provider}/")) => {
                format!("{provider}/{}", p.model)
            }
            _ => p.model.clone(),
        };
        let (kind, upstream_model) = ProviderKind::parse(&full_model);
        let model_id = entry
            .model_info
            .get("id")
            .and_then(|v| v.as_str())
            .map(str::to_owned);

        let deployment = if p.mock_response.is_some() || kind == ProviderKind::Mock {
            let mut cfg = MockConfig::new(&full_model);
            cfg.response.clone_from(&p.mock_response);
            let info = DeploymentInfo {
                id: Arc::from(model_id.unwrap_or_else(|| stable_id(entry, None))),
                model_group: Arc::from(entry.model_name.as_str()),
                model: Arc::from(full_model.as_str()),
                provider: Arc::from("mock"),
                api_base: None,
            };
            cfg.info = Arc::new(info);
            let mock = Mock::new(cfg);
            let info = mock.info().clone();
            Deployment::new(info, mock.clone()).with_embeddings(mock)
        } else {
            let (provider_name, base, key, stream_usage, model): (
                &str,
                Option<String>,
                Option<Secret>,
                bool,
                String,
            ) = match &kind {
                ProviderKind::OpenAi => (
                    "openai",
                    p.api_base
                        .clone()
                        .or_else(|| p.base_url.clone())
                        .or_else(|| env("OPENAI_API_BASE"))
                        .or_else(|| env("OPENAI_BASE_URL"))
                        .or_else(|| Some(crate::provider::openai::OPENAI_API_BASE.to_owned())),
                    p.api_key
                        .clone()
                        .or_else(|| env("OPENAI_API_KEY").map(Secret::new)),
                    true,
                    upstream_model.to_owned(),
                ),
                ProviderKind::Compat(c) => compat_settings(c, entry, env, upstream_model),
                ProviderKind::Mock => unreachable!("handled above"),
                ProviderKind::Unsupported(name) => {
                    return Err(ConfigError(format!(
                        "{where_}: the provider `{name}` (from model `{}`) is not supported by this version of tollgate",
                        p.model
                    )));
                }
            };
            let Some(base) = base else {
                return Err(ConfigError(format!(
                    "{where_}: `{provider_name}` needs `api_base` (the server's URL)"
                )));
            };
            if key.is_none() {
                let needs = match &kind {
                    ProviderKind::Compat(c) => c.key_required.then_some(c.key_env),
                    _ => Some(&["OPENAI_API_KEY"][..]),
                };
                if let Some(vars) = needs {
                    warnings.push(format!(
                        "{where_} has no API key (set litellm_params.api_key or {}); its calls will be refused upstream",
                        vars.join(" / ")
                    ));
                }
            }
            let info = Arc::new(DeploymentInfo {
                id: Arc::from(model_id.unwrap_or_else(|| stable_id(entry, Some(&base)))),
                model_group: Arc::from(entry.model_name.as_str()),
                model: Arc::from(full_model.as_str()),
                provider: Arc::from(provider_name),
                api_base: Some(Arc::from(display_base(&base))),
            });
            let organization = p.organization.clone().or_else(|| {
                (provider_name == "openai")
                    .then(|| env("OPENAI_ORGANIZATION"))
                    .flatten()
            });
            let cfg = OpenAiConfig {
                model,
                api_base: base,
                api_key: key,
                organization,
                project: p.project.clone(),
                extra_headers: headers(entry, &where_)?,
                params: params(entry),
                provider: Arc::from(provider_name),
                stream_usage,
                timeouts,
                info: Some(info.clone()),
                client: Some(client.clone()),
            };
            let leaf =
                OpenAi::new(cfg).map_err(|e| ConfigError(format!("{where_}: {}", e.message())))?;
            Deployment::new(info, leaf.clone()).with_embeddings(leaf)
        };
        let mut deployment = deployment;
        deployment.weight = p.weight;
        deployment.rpm = p.rpm;
        deployment.tpm = p.tpm;
        deployment.order = p.order;
        builder = builder.deployment(deployment);
    }
    for (alias, target) in &config.router_settings.model_group_alias {
        let hidden = matches!(
            target,
            super::config::AliasTarget::Detailed { hidden: true, .. }
        );
        builder = if hidden {
            builder.hidden_alias(alias.clone(), target.group())
        } else {
            builder.alias(alias.clone(), target.group())
        };
    }
    Ok(Built {
        router: builder.build(),
        warnings,
    })
}

fn compat_settings(
    c: &'static CompatProvider,
    entry: &ModelEntry,
    env: EnvLookup<'_>,
    upstream_model: &str,
) -> (&'static str, Option<String>, Option<Secret>, bool, String) {
    let p = &entry.litellm_params;
    let configured = p
        .api_base
        .clone()
        .or_else(|| p.base_url.clone())
        .or_else(|| c.base_env.iter().find_map(|v| env(v)));
    let key = p
        .api_key
        .clone()
        .or_else(|| c.key_env.iter().find_map(|v| env(v)).map(Secret::new));
    (
        c.name,
        c.resolve_base(configured.as_deref()),
        key,
        c.stream_usage,
        c.upstream_model(upstream_model),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::load_str;
    use std::path::Path;

    fn built(yaml: &str, env: &[(&str, &str)]) -> Result<Built, ConfigError> {
        let pairs: Vec<(String, String)> = env
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        let lookup = move |n: &str| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let loaded = load_str(yaml, Path::new("c.yaml"), &lookup)?;
        build(&loaded.config, &lookup, &HttpClient::shared())
    }

    #[test]
    fn providers_resolve_bases_keys_and_ids() {
        let b = built(
            "model_list:
  - model_name: g
    litellm_params: {model: groq/llama-3.1-8b-instant}
  - model_name: v
    litellm_params: {model: hosted_vllm/m, api_base: 'http://10.0.0.1:8000'}
  - model_name: o
    litellm_params: {model: gpt-4o-mini, api_key: sk-xyz-1234567890}
    model_info: {id: my-id}
",
            &[("GROQ_API_KEY", "gsk_test_123456")],
        )
        .unwrap();
        assert!(b.warnings.is_empty(), "{:?}", b.warnings);
        let g = &b.router.group("g").unwrap().deployments[0].info;
        assert_eq!(g.provider.as_ref(), "groq");
        assert_eq!(
            g.api_base.as_deref(),
            Some("https://api.groq.com/openai/v1")
        );
        assert_eq!(g.id.len(), 16);
        let v = &b.router.group("v").unwrap().deployments[0].info;
        assert_eq!(v.api_base.as_deref(), Some("http://10.0.0.1:8000/v1"));
        assert_eq!(
            &*b.router.group("o").unwrap().deployments[0].info.id,
            "my-id"
        );
        // Same config, same ids.
        let again = built(
            "model_list:\n  - model_name: g\n    litellm_params: {model: groq/llama-3.1-8b-instant}\n",
            &[("GROQ_API_KEY", "k")],
        )
        .unwrap();
        assert_eq!(
            again.router.group("g").unwrap().deployments[0].info.id,
            g.id
        );
    }

    #[test]
    fn missing_key_warns_and_missing_base_fails() {
        let b = built(
            "model_list:\n  - model_name: g\n    litellm_params: {model: groq/x}\n",
            &[],
        )
        .unwrap();
        assert_eq!(b.warnings.len(), 1);
        assert!(b.warnings[0].contains("GROQ_API_KEY"), "{}", b.warnings[0]);
        let e = built(
            "model_list:\n  - model_name: v\n    litellm_params: {model: hosted_vllm/x}\n",
            &[],
        )
        .err()
        .unwrap();
        assert!(e.0.contains("needs `api_base`"), "{e}");
        let e = built(
            "model_list:\n  - model_name: a\n    litellm_params: {model: sagemaker/x}\n",
            &[],
        )
        .err()
        .unwrap();
        assert!(e.0.contains("provider `sagemaker`"), "{e}");
    }

    #[test]
    fn api_base_with_credentials_is_not_displayed() {
        assert_eq!(
            display_base("https://user:pass@host.example:8443/v1/?key=secret"),
            "https://host.example:8443/v1"
        );
    }
}
