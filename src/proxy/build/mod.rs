//! Turning a [`ProxyConfig`] into deployments, a router and an edge.
//!
//! One file per provider family maps a `model_list` entry onto that
//! provider's config struct: `openai.rs` (OpenAI, the OpenAI-compatible table
//! and the mock), `anthropic.rs`, `gemini.rs` (AI Studio and Vertex AI),
//! `bedrock.rs`, `azure.rs`, `mistral.rs`, `cohere.rs`. Each gets a
//! [`LeafCtx`] and returns a [`Deployment`].

mod anthropic;
mod azure;
mod bedrock;
mod cohere;
mod gemini;
mod mistral;
mod openai;

use super::config::{ConfigError, ModelEntry, ProxyConfig};
use crate::cost::CostLayer;
use crate::pricing::{ModelPrice, PriceTable};
use crate::provider::{DropParams, LeafTimeouts, ProviderKind};
use crate::router::Router;
use crate::timeout::{TimeoutLayer, Timeouts};
use crate::transport::HttpClient;
use crate::types::{DeploymentInfo, Extra};
use http::{HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::Duration;
use tower::Layer;
use tower::util::BoxCloneSyncService;

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

/// Everything a provider builder needs about one `model_list` entry.
pub(crate) struct LeafCtx<'a> {
    /// The entry.
    pub(crate) entry: &'a ModelEntry,
    /// `model_list[i] (`name`)`, for error messages.
    pub(crate) where_: String,
    /// The LiteLLM model string with its provider prefix.
    pub(crate) full_model: String,
    /// The model after the provider prefix.
    pub(crate) upstream_model: String,
    /// The provider.
    pub(crate) kind: ProviderKind,
    /// Deadlines.
    pub(crate) timeouts: LeafTimeouts,
    /// `drop_params` / `additional_drop_params` (global merged with the deployment's).
    pub(crate) drop: DropParams,
    /// Environment lookup (provider key and base variables).
    pub(crate) env: EnvLookup<'a>,
    /// The shared HTTP client.
    pub(crate) client: &'a HttpClient,
    /// Start-up warnings to add to.
    pub(crate) warnings: &'a mut Vec<String>,
}

impl LeafCtx<'_> {
    /// A config error about this entry.
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> ConfigError {
        ConfigError(format!("{}: {message}", self.where_))
    }

    /// The deployment description, given the provider name and the base URL used.
    pub(crate) fn info(&self, provider: &str, api_base: Option<&str>) -> Arc<DeploymentInfo> {
        let id = self
            .entry
            .model_info
            .get("id")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| stable_id(self.entry, api_base));
        Arc::new(DeploymentInfo {
            id: Arc::from(id),
            model_group: Arc::from(self.entry.model_name.as_str()),
            model: Arc::from(self.full_model.as_str()),
            provider: Arc::from(provider),
            api_base: api_base.map(|b| Arc::from(display_base(b))),
        })
    }

    /// Provider parameters from `litellm_params` to forward as request defaults.
    pub(crate) fn params(&self) -> Extra {
        let mut extra = Extra::new();
        for (k, v) in self.entry.litellm_params.forwarded() {
            // Serialising a serde_json::Value cannot fail.
            let _ = extra.insert(k.as_str(), v);
        }
        extra
    }

    /// `extra_headers` / `headers` from `litellm_params`, marked sensitive.
    pub(crate) fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
        let mut out = Vec::new();
        let p = &self.entry.litellm_params;
        for map in [&p.extra_headers, &p.headers].into_iter().flatten() {
            for (k, v) in map {
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| self.error(format_args!("`{k}` is not a valid header name")))?;
                let mut value = HeaderValue::from_str(v).map_err(|_| {
                    self.error(format_args!("the value of header `{k}` is not valid"))
                })?;
                value.set_sensitive(true);
                out.push((name, value));
            }
        }
        Ok(out)
    }

    /// A `litellm_params` value that tollgate reads but that is not a typed field
    /// (provider settings such as `aws_region_name`, `vertex_project`).
    #[allow(dead_code)] // used by the provider builders as they land
    pub(crate) fn param_str(&self, key: &str) -> Option<String> {
        self.entry
            .litellm_params
            .other
            .get(key)
            .and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    }

    /// The first set environment variable among `names`.
    pub(crate) fn env_any(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| (self.env)(n))
    }
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
pub(crate) fn display_base(base: &str) -> String {
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

fn drop_policy(config: &ProxyConfig, entry: &ModelEntry) -> DropParams {
    let bool_of = |m: &serde_json::Map<String, serde_json::Value>, k: &str| {
        m.get(k).and_then(serde_json::Value::as_bool)
    };
    let list_of = |m: &serde_json::Map<String, serde_json::Value>, k: &str| -> Vec<String> {
        m.get(k)
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let global = &config.litellm_settings.other;
    let local = &entry.litellm_params.other;
    let mut additional = list_of(global, "additional_drop_params");
    for p in list_of(local, "additional_drop_params") {
        if !additional.contains(&p) {
            additional.push(p);
        }
    }
    DropParams {
        drop: bool_of(local, "drop_params")
            .or_else(|| bool_of(global, "drop_params"))
            .unwrap_or(false),
        additional,
    }
}

/// Price keys a deployment may set in `litellm_params` or `model_info`.
const PRICE_KEYS: &[&str] = &[
    "input_cost_per_token",
    "output_cost_per_token",
    "input_cost_per_second",
    "output_cost_per_second",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "output_cost_per_reasoning_token",
    "input_cost_per_audio_token",
    "output_cost_per_audio_token",
    "max_input_tokens",
    "max_output_tokens",
    "max_tokens",
];

/// The prices of a deployment: `model_info.base_model` (Azure deployments,
/// aliases) or the model string looked up in `table`, with the prices the
/// entry sets itself on top. `None` when nothing is known.
pub(crate) fn resolve_price(
    table: &PriceTable,
    entry: &ModelEntry,
    full_model: &str,
    provider: &str,
) -> Option<ModelPrice> {
    let base_model = entry.model_info.get("base_model").and_then(|v| v.as_str());
    let found = match base_model {
        Some(b) => table
            .lookup(b)
            .or_else(|| table.lookup(&format!("{provider}/{b}"))),
        None => table.lookup(full_model),
    };
    let mut overrides = serde_json::Map::new();
    for key in PRICE_KEYS {
        let value = entry
            .model_info
            .get(*key)
            .or_else(|| entry.litellm_params.other.get(*key));
        if let Some(v) = value {
            overrides.insert((*key).to_owned(), v.clone());
        }
    }
    let over = ModelPrice::from_json(full_model, &overrides);
    match (found, overrides.is_empty()) {
        (Some(base), true) => Some((**base).clone()),
        (Some(base), false) => Some(base.overlay(&over)),
        (None, false) => Some(over),
        (None, true) => None,
    }
}

/// Builds every deployment and the router, pricing with the bundled table.
pub fn build(
    config: &ProxyConfig,
    env: EnvLookup<'_>,
    client: &HttpClient,
) -> Result<Built, ConfigError> {
    build_with_prices(config, env, client, &PriceTable::bundled())
}

/// Builds every deployment and the router, pricing with `table`.
pub fn build_with_prices(
    config: &ProxyConfig,
    env: EnvLookup<'_>,
    client: &HttpClient,
    table: &PriceTable,
) -> Result<Built, ConfigError> {
    let mut warnings = Vec::new();
    let mut builder = Router::builder().config(super::settings::router_config(config)?);
    let default_timeout = config
        .router_settings
        .timeout
        .or(config.litellm_settings.request_timeout)
        .map(secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let default_stream_timeout = config.router_settings.stream_timeout.map(secs);
    for (i, entry) in config.model_list.iter().enumerate() {
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
        let upstream_model = upstream_model.to_owned();
        let mut ctx = LeafCtx {
            entry,
            where_: format!("model_list[{i}] (`{}`)", entry.model_name),
            kind: kind.clone(),
            full_model: full_model.clone(),
            upstream_model,
            timeouts,
            drop: drop_policy(config, entry),
            env,
            client,
            warnings: &mut warnings,
        };
        let mut deployment = if p.mock_response.is_some() || kind == ProviderKind::Mock {
            openai::mock(&ctx)
        } else {
            match &kind {
                ProviderKind::OpenAi | ProviderKind::Compat(_) => openai::build(&mut ctx)?,
                ProviderKind::Anthropic => anthropic::build(&mut ctx)?,
                ProviderKind::Gemini | ProviderKind::VertexAi => gemini::build(&mut ctx)?,
                ProviderKind::Bedrock => bedrock::build(&mut ctx)?,
                ProviderKind::Azure => azure::build(&mut ctx)?,
                ProviderKind::Mistral => mistral::build(&mut ctx)?,
                ProviderKind::Cohere => cohere::build(&mut ctx)?,
                ProviderKind::Mock => openai::mock(&ctx),
                ProviderKind::Unsupported(name) => {
                    return Err(ctx.error(format_args!(
                        "the provider `{name}` (from model `{}`) is not supported by this version of tollgate",
                        p.model
                    )));
                }
            }
        };
        deployment.weight = p.weight;
        deployment.rpm = p.rpm;
        deployment.tpm = p.tpm;
        deployment.order = p.order;
        deployment.max_parallel_requests = match p.other.get("max_parallel_requests") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "model_list[{i}] (`{}`): `max_parallel_requests` must be a positive integer",
                            entry.model_name
                        ))
                    })?,
            ),
        };
        deployment.tags = match p.other.get("tags") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
            Some(_) => {
                return Err(ConfigError(format!(
                    "model_list[{i}] (`{}`): `tags` must be a list of strings",
                    entry.model_name
                )));
            }
        };
        let mut price = resolve_price(table, entry, &full_model, deployment.info.provider.as_ref());
        if price.is_none() && deployment.info.provider.as_ref() == "mock" {
            // The mock calls nothing that costs money: it is free, not unknown.
            price = Some(ModelPrice {
                key: full_model.clone(),
                tokens: crate::pricing::TokenPrices {
                    input: Some(crate::pricing::Usd::ZERO),
                    output: Some(crate::pricing::Usd::ZERO),
                    ..Default::default()
                },
                ..Default::default()
            });
        }
        let cost = CostLayer::new(&full_model, price.clone());
        deployment.price = cost.price().cloned().map(Arc::new);
        if deployment.price.is_none() {
            warnings.push(format!(
                "model_list[{i}] (`{}`): no price is known for `{full_model}`; its cost is reported as unknown (set input_cost_per_token/output_cost_per_token in model_info)",
                entry.model_name
            ));
        }
        let deadlines = TimeoutLayer::new(Timeouts {
            total: Some(timeouts.request),
            first_byte: Some(timeouts.first_byte),
            idle: Some(timeouts.idle),
        });
        deployment.chat = deployment
            .chat
            .take()
            .map(|svc| BoxCloneSyncService::new(deadlines.layer(cost.layer(svc))));
        deployment.embeddings = deployment
            .embeddings
            .take()
            .map(|svc| BoxCloneSyncService::new(cost.layer(svc)));
        if entry
            .model_info
            .get("health_check_mode")
            .and_then(|v| v.as_str())
            == Some("completion")
            && let Some(chat) = deployment.chat.clone()
        {
            deployment.probe = Some(Arc::new(crate::router::health::CompletionProbe::new(
                chat,
                Arc::from(entry.model_name.as_str()),
            )));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::load_str;
    use std::path::Path;

    pub(super) fn built(yaml: &str, env: &[(&str, &str)]) -> Result<Built, ConfigError> {
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
        assert!(
            !b.warnings.iter().any(|w| w.contains("API key")),
            "{:?}",
            b.warnings
        );
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
        let key_warnings: Vec<_> = b
            .warnings
            .iter()
            .filter(|w| w.contains("API key"))
            .collect();
        assert_eq!(key_warnings.len(), 1);
        assert!(
            key_warnings[0].contains("GROQ_API_KEY"),
            "{}",
            key_warnings[0]
        );
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
    fn drop_params_merge_global_and_deployment() {
        let loaded = load_str(
            "model_list:\n  - model_name: a\n    litellm_params: {model: mock/a, additional_drop_params: [seed]}\n  - model_name: b\n    litellm_params: {model: mock/b, drop_params: false}\nlitellm_settings:\n  drop_params: true\n  additional_drop_params: [user]\n",
            Path::new("c.yaml"),
            &|_| None,
        )
        .unwrap();
        let a = drop_policy(&loaded.config, &loaded.config.model_list[0]);
        assert_eq!(
            a,
            DropParams {
                drop: true,
                additional: vec!["user".into(), "seed".into()]
            }
        );
        let b = drop_policy(&loaded.config, &loaded.config.model_list[1]);
        assert!(!b.drop);
    }

    #[test]
    fn prices_come_from_base_model_and_overrides() {
        let b = built(
            "model_list:
  - model_name: az
    litellm_params: {model: openai/my-deployment, api_key: k}
    model_info: {base_model: gpt-4o-mini}
  - model_name: custom
    litellm_params: {model: hosted_vllm/llama, api_base: 'http://h:1', input_cost_per_token: 0.000001}
    model_info: {output_cost_per_token: 0.000002}
  - model_name: over
    litellm_params: {model: gpt-4o, api_key: k}
    model_info: {input_cost_per_token: 0.000001}
",
            &[],
        )
        .unwrap();
        let az = b.router.group("az").unwrap().deployments[0]
            .price
            .clone()
            .unwrap();
        assert_eq!(az.key, "gpt-4o-mini");
        let custom = b.router.group("custom").unwrap().deployments[0]
            .price
            .clone()
            .unwrap();
        assert_eq!(custom.tokens.input.unwrap().to_string(), "0.000001");
        assert_eq!(custom.tokens.output.unwrap().to_string(), "0.000002");
        let over = b.router.group("over").unwrap().deployments[0]
            .price
            .clone()
            .unwrap();
        assert_eq!(over.tokens.input.unwrap().to_string(), "0.000001");
        assert_eq!(
            over.tokens.output.unwrap().to_string(),
            "0.00001",
            "the table's output price stays"
        );
        assert!(
            !b.warnings.iter().any(|w| w.contains("no price")),
            "{:?}",
            b.warnings
        );
    }

    #[test]
    fn api_base_with_credentials_is_not_displayed() {
        assert_eq!(
            display_base("https://user:pass@host.example:8443/v1/?key=secret"),
            "https://host.example:8443/v1"
        );
    }
}
