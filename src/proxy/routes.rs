//! Proxy routes beside the OpenAI API: model information, token counting and
//! cost estimates, with LiteLLM's request and response shapes.
//!
//! - `GET /model/info`, `GET /v1/model/info`: every deployment with its
//!   (secret-free) `litellm_params` and `model_info` — limits, prices per
//!   token, capability flags.
//! - `POST /utils/token_counter`: `{"model", "messages" | "prompt"}` →
//!   `{"total_tokens", "request_model", "model_used", "tokenizer_type"}`.
//! - `POST /spend/calculate`: `{"model", "messages"}` (the prompt's cost) or
//!   `{"model"?, "completion_response"}` (a finished answer's cost) → `{"cost"}`.

use super::config::{ModelEntry, ProxyConfig};
use crate::auth::Identity;
use crate::edge::EdgeBody;
use crate::error::{BoxError, Error, ErrorKind};
use crate::pricing::{ModelPrice, Usd};
use crate::router::{Deployment, Router};
use crate::tokens;
use crate::types::{ChatCompletion, Message, Usage};
use bytes::Bytes;
use http::{HeaderValue, Method};
use http_body::Body;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The routes this module serves.
pub(crate) fn is_route(path: &str) -> bool {
    matches!(
        path,
        "/model/info" | "/v1/model/info" | "/utils/token_counter" | "/spend/calculate" | "/health"
    ) || super::cache::is_route(path)
}

pub(crate) struct Routes {
    pub(crate) router: Router,
    pub(crate) config: Arc<ProxyConfig>,
    pub(crate) cache: Arc<super::cache::Configured>,
}

fn json_ok(body: &Value) -> http::Response<EdgeBody> {
    let mut resp =
        http::Response::new(EdgeBody::full(serde_json::to_vec(body).unwrap_or_default()));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn read_json<B>(body: B, limit: usize) -> Result<Bytes, Error>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, limit);
    let collected = tokio::time::timeout(std::time::Duration::from_secs(30), limited.collect())
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::Timeout(crate::error::TimeoutKind::Total),
                "the request body was not received in time",
            )
        })?
        .map_err(|_| {
            Error::new(
                ErrorKind::PayloadTooLarge,
                format!("the request body is larger than {limit} bytes"),
            )
        })?;
    Ok(collected.to_bytes())
}

/// LiteLLM params a deployment may show: everything but credentials.
const SHOWN_PARAMS: &[&str] = &[
    "model",
    "api_base",
    "api_version",
    "organization",
    "custom_llm_provider",
    "rpm",
    "tpm",
    "weight",
    "order",
    "timeout",
    "stream_timeout",
    "max_parallel_requests",
    "aws_region_name",
    "vertex_project",
    "vertex_location",
    "region_name",
    "tags",
];

fn model_info_entry(entry: &ModelEntry, deployment: Option<&Deployment>) -> Value {
    let p = &entry.litellm_params;
    let mut shown = serde_json::Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            shown.insert(k.to_owned(), v);
        }
    };
    put("model", Some(Value::from(p.model.as_str())));
    put(
        "api_base",
        p.api_base
            .as_deref()
            .or(p.base_url.as_deref())
            .map(|b| Value::from(super::build::display_base(b))),
    );
    put("organization", p.organization.clone().map(Value::from));
    put(
        "custom_llm_provider",
        p.custom_llm_provider.clone().map(Value::from),
    );
    put("rpm", p.rpm.map(Value::from));
    put("tpm", p.tpm.map(Value::from));
    put("weight", p.weight.map(Value::from));
    put("order", p.order.map(Value::from));
    put("timeout", p.timeout.map(Value::from));
    put("stream_timeout", p.stream_timeout.map(Value::from));
    for (k, v) in &p.other {
        if SHOWN_PARAMS.contains(&k.as_str()) {
            shown.insert(k.clone(), v.clone());
        }
    }
    let mut info = serde_json::Map::new();
    if let Some(d) = deployment {
        info.insert("id".into(), Value::from(d.info.id.as_ref()));
        info.insert(
            "litellm_provider".into(),
            Value::from(d.info.provider.as_ref()),
        );
        if let Some(p) = &d.price {
            price_fields(p, &mut info);
        }
    }
    // The entry's own model_info wins for anything it states (minus credentials).
    for (k, v) in &entry.model_info {
        if !k.contains("key") && !k.contains("secret") && !k.contains("credential") {
            info.insert(k.clone(), v.clone());
        }
    }
    info.insert("db_model".into(), Value::Bool(false));
    json!({
        "model_name": entry.model_name,
        "litellm_params": shown,
        "model_info": info,
    })
}

fn price_fields(p: &ModelPrice, out: &mut serde_json::Map<String, Value>) {
    let mut put = |k: &str, v: Option<Value>| {
        out.insert(k.to_owned(), v.unwrap_or(Value::Null));
    };
    let usd = |u: Option<Usd>| u.map(|u| Value::from(u.as_f64()));
    put("key", Some(Value::from(p.key.as_str())));
    put("mode", p.mode.clone().map(Value::from));
    put("max_tokens", p.output_limit().map(Value::from));
    put("max_input_tokens", p.max_input_tokens.map(Value::from));
    put("max_output_tokens", p.max_output_tokens.map(Value::from));
    put("input_cost_per_token", usd(p.tokens.input));
    put("output_cost_per_token", usd(p.tokens.output));
    put("cache_read_input_token_cost", usd(p.tokens.cache_read));
    put("cache_creation_input_token_cost", usd(p.tokens.cache_write));
    put("output_cost_per_reasoning_token", usd(p.output_reasoning));
    put("input_cost_per_second", usd(p.input_per_second));
    put("output_cost_per_second", usd(p.output_per_second));
    let s = &p.supports;
    for (name, flag) in [
        ("supports_function_calling", s.function_calling),
        (
            "supports_parallel_function_calling",
            s.parallel_function_calling,
        ),
        ("supports_tool_choice", s.tool_choice),
        ("supports_vision", s.vision),
        ("supports_reasoning", s.reasoning),
        ("supports_prompt_caching", s.prompt_caching),
        ("supports_response_schema", s.response_schema),
        ("supports_system_messages", s.system_messages),
        ("supports_pdf_input", s.pdf_input),
        ("supports_audio_input", s.audio_input),
        ("supports_audio_output", s.audio_output),
        ("supports_web_search", s.web_search),
    ] {
        put(name, Some(Value::Bool(flag)));
    }
}

#[derive(Deserialize)]
struct TokenCountRequest {
    model: String,
    #[serde(default)]
    messages: Option<Vec<Message>>,
    #[serde(default)]
    prompt: Option<String>,
}

#[derive(Deserialize)]
struct SpendRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    messages: Option<Vec<Message>>,
    #[serde(default)]
    completion_response: Option<ChatCompletion>,
}

impl Routes {
    fn deployment_of(&self, model: &str) -> Option<&Deployment> {
        self.router.group(model).and_then(|g| g.deployments.first())
    }

    pub(crate) async fn handle<B>(
        &self,
        identity: &Identity,
        method: &Method,
        path: &str,
        body: B,
    ) -> Result<http::Response<EdgeBody>, Error>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        match (method, path) {
            (_, p) if super::cache::is_route(p) => {
                let bytes = read_json(body, 1 << 20).await?;
                super::cache::handle(&self.cache, identity, method, path, bytes).await
            }
            (&Method::GET, "/model/info" | "/v1/model/info") => {
                let data: Vec<Value> = self
                    .config
                    .model_list
                    .iter()
                    .filter(|e| identity.may_use(&e.model_name))
                    .map(|e| {
                        let deployment = self.router.group(&e.model_name).and_then(|g| {
                            g.deployments.iter().find(|d| {
                                d.info.model.as_ref() == e.litellm_params.model.as_str()
                                    || g.deployments.len() == 1
                            })
                        });
                        model_info_entry(e, deployment)
                    })
                    .collect();
                Ok(json_ok(&json!({ "data": data })))
            }
            (&Method::GET, "/health") => {
                let report = crate::router::health::report(&self.router);
                Ok(json_ok(
                    &serde_json::to_value(report).unwrap_or(Value::Null),
                ))
            }
            (&Method::POST, "/utils/token_counter") => {
                let bytes = read_json(body, 32 << 20).await?;
                let req: TokenCountRequest = crate::types::parse_json(&bytes)?;
                let (model_used, exact) = match self.deployment_of(&req.model) {
                    Some(d) => (d.info.model.to_string(), tokens::is_exact(&d.info.model)),
                    None => (req.model.clone(), tokens::is_exact(&req.model)),
                };
                let total = match (&req.messages, &req.prompt) {
                    (Some(m), _) => {
                        let model = model_used.clone();
                        let messages = m.clone();
                        tokio::task::spawn_blocking(move || {
                            tokens::count_messages(&model, &messages)
                        })
                        .await
                        .map_err(|_| Error::internal("token counting was interrupted"))?
                    }
                    (None, Some(p)) => {
                        let model = model_used.clone();
                        let prompt = p.clone();
                        tokio::task::spawn_blocking(move || tokens::count_text(&model, &prompt))
                            .await
                            .map_err(|_| Error::internal("token counting was interrupted"))?
                    }
                    (None, None) => {
                        return Err(Error::bad_request("send `messages` or `prompt` to count")
                            .with_param("messages"));
                    }
                };
                Ok(json_ok(&json!({
                    "total_tokens": total,
                    "request_model": req.model,
                    "model_used": model_used,
                    "tokenizer_type": if exact { "openai_tokenizer" } else { "openai_tokenizer_estimate" },
                })))
            }
            (&Method::POST, "/spend/calculate") => {
                let bytes = read_json(body, 32 << 20).await?;
                let req: SpendRequest = crate::types::parse_json(&bytes)?;
                let model = req
                    .model
                    .clone()
                    .or_else(|| req.completion_response.as_ref().map(|c| c.model.clone()))
                    .ok_or_else(|| {
                        Error::bad_request("send `model` (or a `completion_response` with one)")
                            .with_param("model")
                    })?;
                let (price, price_model): (Option<ModelPrice>, String) =
                    match self.deployment_of(&model) {
                        Some(d) => (d.price.as_deref().cloned(), d.info.model.to_string()),
                        None => (crate::pricing::model_info(&model), model.clone()),
                    };
                let price = price.ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "no price is known for the model `{}`",
                            model.chars().take(200).collect::<String>()
                        ),
                    )
                    .with_param("model")
                })?;
                let usage = match (&req.completion_response, &req.messages) {
                    (Some(c), _) => c.usage.clone().ok_or_else(|| {
                        Error::bad_request("`completion_response` has no `usage`")
                            .with_param("completion_response")
                    })?,
                    (None, Some(m)) => Usage::new(tokens::count_messages(&price_model, m), 0),
                    (None, None) => {
                        return Err(Error::bad_request(
                            "send `messages` or a `completion_response`",
                        )
                        .with_param("messages"));
                    }
                };
                let tier = req
                    .completion_response
                    .as_ref()
                    .and_then(|c| c.service_tier.as_deref());
                let (p, c) = price
                    .cost(&usage, 0.0, tier)
                    .unwrap_or((Usd::ZERO, Usd::ZERO));
                Ok(json_ok(&json!({
                    "cost": (p + c).as_f64(),
                    "prompt_cost": p.as_f64(),
                    "completion_cost": c.as_f64(),
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                })))
            }
            _ => Err(Error::new(
                ErrorKind::MethodNotAllowed,
                format!("{method} is not allowed on {path}"),
            )),
        }
    }
}
