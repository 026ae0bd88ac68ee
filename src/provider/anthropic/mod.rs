//! Anthropic: the Messages API (`POST {api_base}/v1/messages`).
//!
//! Model strings `anthropic/<model>` and bare `claude-*` names (as LiteLLM
//! resolves them). Requests are translated from OpenAI's chat format
//! (PROTOCOLS.md §4.1):
//!
//! - `system` / `developer` messages, wherever they are, become the top-level
//!   `system` (a string for one plain system message, text blocks otherwise);
//!   consecutive turns of one role are merged; consecutive `tool` messages
//!   become one user turn of `tool_result` blocks in order (`is_error` is taken
//!   from the tool message's `is_error` field when present);
//! - assistant `tool_calls` become `tool_use` blocks (arguments parsed; invalid
//!   JSON is a 400 naming the message); `thinking_blocks` on an assistant
//!   message (as this leaf returns them) are sent back first, signatures intact;
//! - images: `data:` URIs become base64 sources, `https:` URLs url sources;
//!   `file` parts become `document` blocks;
//! - `tools` (with `strict`), `tool_choice` (auto / required → any / none /
//!   named → tool), `parallel_tool_calls: false` → `disable_parallel_tool_use`;
//! - `response_format` `json_schema` → `output_config.format`; `json_object` →
//!   a forced `json_tool_call` tool whose input is returned as the content;
//! - `stop` → `stop_sequences`; `temperature` clamped to 0..1; `top_p`;
//!   `user` (or `safety_identifier`) → `metadata.user_id`; `service_tier`
//!   `auto` / `default`;
//! - `max_tokens` / `max_completion_tokens` → the required `max_tokens`,
//!   defaulting to the model's output limit from [`crate::pricing::model_info`]
//!   ([`FALLBACK_MAX_TOKENS`] for a model the table does not know);
//! - `reasoning_effort` → `thinking: {"type":"enabled","budget_tokens":N}` with
//!   N = 1024 (minimal, low), 2048 (medium), 4096 (high), capped below
//!   `max_tokens`; `none` sends no thinking. A `thinking` object in the request
//!   is sent as given and wins;
//! - `cache_control` on messages, parts and tools is passed through, as is a
//!   top-level one; a deployment's `cache_control_injection_points` add more;
//! - other unknown request fields (`top_k`, `container`, `mcp_servers`, …) are
//!   forwarded; OpenAI parameters Anthropic lacks (`n` > 1, `logprobs`,
//!   penalties, `seed`, …) go through [`DropParams`].
//!
//! Headers: `x-api-key` (or `Authorization: Bearer` for an OAuth-style
//! `auth_token`), `anthropic-version: 2023-06-01`, and `anthropic-beta`: the
//! deployment's `extra_headers` value joined with the request's
//! [`AnthropicBeta`] extension (the `/v1/messages` door and the chat edge fill
//! it from the client's `anthropic-beta` header).
//!
//! Answers and streams are translated back (see `response` and `stream`):
//! thinking becomes `reasoning_content`, with signed `thinking_blocks` kept;
//! usage counts cache reads and writes in `prompt_tokens`.
//!
//! **Claude on Vertex AI** is [`VertexClaude`]: the same translation, sent to
//! Vertex AI's `rawPredict` (see [`vertex`]).
//!
//! **Native pass-through.** When a request carries [`NativeMessages`] (the
//! `/v1/messages` door puts the client's original body there), the leaf sends
//! that body verbatim with only `model` replaced (and deployment defaults added
//! for fields it lacks), and carries the upstream's native answer back
//! alongside the OpenAI one: in [`NATIVE_MESSAGE_FIELD`] of the completion, or
//! one event per chunk in [`NATIVE_EVENT_FIELD`]. Layers keep seeing — and
//! accounting — OpenAI-shaped answers.
//!
//! ```no_run
//! use tollgate::provider::anthropic::{Anthropic, AnthropicConfig};
//! use tollgate::{ChatRequest, Secret};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), tollgate::Error> {
//! let leaf = Anthropic::new(
//!     AnthropicConfig::new("claude-haiku-4-5").api_key(Secret::new("sk-ant-...")),
//! )?;
//! let req = ChatRequest::from_json(br#"{"model":"claude","messages":[
//!     {"role":"system","content":"Be brief."},
//!     {"role":"user","content":"Hi"}]}"#)?;
//! let resp = leaf.oneshot(req).await?;
//! println!("{:?}", resp.completion().and_then(|c| c.text()));
//! # Ok(()) }
//! ```

mod error;
mod request;
mod response;
mod stream;
pub mod vertex;
pub(crate) mod wire;

pub use request::CachePoint;
pub use response::NATIVE_MESSAGE_FIELD;
pub use stream::NATIVE_EVENT_FIELD;
pub use vertex::{
    VERTEX_ANTHROPIC_VERSION, VertexClaude, VertexClaudeConfig, VertexClaudeProtocol,
};

use super::sse_stream::SseStreamDecoder;
use super::{DropParams, HttpProvider, LeafTimeouts, Protocol, StreamDecoder, header};
use crate::Secret;
use crate::error::Error;
use crate::transport::HttpClient;
use crate::types::{ChatCompletion, ChatRequest, ChatRequestBody, DeploymentInfo, Extra};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use std::borrow::Cow;
use std::sync::Arc;

/// The default Anthropic base URL.
pub const ANTHROPIC_API_BASE: &str = "https://api.anthropic.com";

/// The `anthropic-version` header tollgate sends.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `max_tokens` for a model the price table does not know (LiteLLM's default
/// for Anthropic).
pub const FALLBACK_MAX_TOKENS: u32 = 4096;

/// The client's `anthropic-beta` header, to pass upstream (put in the request
/// extensions by the HTTP edge; comma-separated flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnthropicBeta(pub Arc<str>);

/// The original body of a `/v1/messages` request, in the request extensions:
/// an Anthropic leaf sends it verbatim (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct NativeMessages(pub Bytes);

/// Settings of an Anthropic deployment.
#[derive(Clone, Debug)]
pub struct AnthropicConfig {
    /// The upstream model name (`claude-haiku-4-5`, not `anthropic/claude-haiku-4-5`).
    pub model: String,
    /// Base URL, LiteLLM-style: `{api_base}/v1/messages` unless it already ends in `/v1/messages`.
    pub api_base: String,
    /// Sent as `x-api-key`.
    pub api_key: Option<Secret>,
    /// Sent as `Authorization: Bearer` when there is no `api_key` (LiteLLM's `ANTHROPIC_AUTH_TOKEN`).
    pub auth_token: Option<Secret>,
    /// Extra headers sent upstream on every call (an `anthropic-beta` here is
    /// joined with the client's).
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Default body parameters (from `litellm_params`, OpenAI names); the request's own values win.
    pub params: Extra,
    /// `max_tokens` when the client sets none (default: the model's output limit).
    pub default_max_tokens: Option<u32>,
    /// LiteLLM's `cache_control_injection_points`.
    pub cache_control_injection_points: Vec<CachePoint>,
    /// What to do with OpenAI parameters Anthropic does not support.
    pub drop: DropParams,
    /// Deadlines.
    pub timeouts: LeafTimeouts,
    /// The deployment this is (defaults describe the model alone).
    pub info: Option<Arc<DeploymentInfo>>,
    /// The HTTP client (defaults to the process-wide one).
    pub client: Option<HttpClient>,
}

impl AnthropicConfig {
    /// Settings for `model` at the Anthropic API.
    pub fn new(model: impl Into<String>) -> Self {
        AnthropicConfig {
            model: model.into(),
            api_base: ANTHROPIC_API_BASE.to_owned(),
            api_key: None,
            auth_token: None,
            extra_headers: Vec::new(),
            params: Extra::new(),
            default_max_tokens: None,
            cache_control_injection_points: Vec::new(),
            drop: DropParams::default(),
            timeouts: LeafTimeouts::default(),
            info: None,
            client: None,
        }
    }

    /// Sets the key.
    pub fn api_key(mut self, key: Secret) -> Self {
        self.api_key = Some(key);
        self
    }

    /// Sets the base URL.
    pub fn api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = base.into();
        self
    }
}

/// The Anthropic Messages protocol (see the [module docs](self)).
#[derive(Debug)]
pub struct AnthropicProtocol {
    model: String,
    messages_uri: Uri,
    headers: HeaderMap,
    beta: Option<String>,
    params: Extra,
    default_max_tokens: u32,
    cache_points: Vec<CachePoint>,
    drop: DropParams,
    secrets: Vec<Secret>,
}

/// An Anthropic leaf.
pub type Anthropic = HttpProvider<AnthropicProtocol>;

impl HttpProvider<AnthropicProtocol> {
    /// Builds the leaf. Fails on an invalid base URL or header.
    pub fn new(config: AnthropicConfig) -> Result<Self, Error> {
        let info = config.info.clone().unwrap_or_else(|| {
            Arc::new(DeploymentInfo {
                id: Arc::from(config.model.as_str()),
                model_group: Arc::from(config.model.as_str()),
                model: Arc::from(format!("anthropic/{}", config.model)),
                provider: Arc::from("anthropic"),
                api_base: Some(Arc::from(config.api_base.as_str())),
            })
        });
        let client = config.client.clone().unwrap_or_else(HttpClient::shared);
        let timeouts = config.timeouts;
        Ok(HttpProvider::with_protocol(
            AnthropicProtocol::new(config)?,
            client,
            info,
            timeouts,
        ))
    }
}

/// `{base}/v1/messages`, LiteLLM-style (a base already ending in `/v1/messages` is used as is).
pub fn messages_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/messages") {
        base.to_owned()
    } else {
        format!("{base}/v1/messages")
    }
}

/// Joins comma-separated `anthropic-beta` flag lists, dropping duplicates.
fn join_betas<'a>(lists: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut flags: Vec<&str> = Vec::new();
    for list in lists {
        for flag in list.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            if !flags.contains(&flag) {
                flags.push(flag);
            }
        }
    }
    (!flags.is_empty()).then(|| flags.join(","))
}

impl AnthropicProtocol {
    /// Builds the protocol from settings.
    pub fn new(config: AnthropicConfig) -> Result<Self, Error> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(
            header("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        let mut secrets = Vec::new();
        if let Some(key) = config.api_key.as_ref().filter(|k| !k.is_empty()) {
            let mut v = HeaderValue::from_str(key.expose())
                .map_err(|_| Error::bad_request("the API key contains invalid characters"))?;
            v.set_sensitive(true);
            headers.insert(header("x-api-key"), v);
            secrets.push(key.clone());
        } else if let Some(token) = config.auth_token.as_ref().filter(|k| !k.is_empty()) {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| Error::bad_request("the auth token contains invalid characters"))?;
            v.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, v);
            secrets.push(token.clone());
        }
        let mut beta = None;
        for (name, value) in &config.extra_headers {
            if name.as_str() == "anthropic-beta" {
                let v = value
                    .to_str()
                    .map_err(|_| Error::bad_request("invalid anthropic-beta header"))?;
                beta = join_betas(beta.as_deref().into_iter().chain([v]));
            } else {
                headers.insert(name.clone(), value.clone());
            }
        }
        let messages_uri = super::openai::join_uri(&messages_url(&config.api_base), "")?;
        let default_max_tokens = config.default_max_tokens.unwrap_or_else(|| {
            crate::pricing::model_info(&format!("anthropic/{}", config.model))
                .and_then(|m| m.output_limit())
                .and_then(|l| u32::try_from(l).ok())
                .unwrap_or(FALLBACK_MAX_TOKENS)
        });
        Ok(AnthropicProtocol {
            model: config.model,
            messages_uri,
            headers,
            beta,
            params: config.params,
            default_max_tokens,
            cache_points: config.cache_control_injection_points,
            drop: config.drop,
            secrets,
        })
    }

    /// The `max_tokens` sent when the client sets none.
    pub fn default_max_tokens(&self) -> u32 {
        self.default_max_tokens
    }

    fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(Secret::expose).collect()
    }

    fn post(&self, req: &ChatRequest, body: Vec<u8>) -> Result<http::Request<Bytes>, Error> {
        let mut out = http::Request::new(Bytes::from(body));
        *out.method_mut() = Method::POST;
        *out.uri_mut() = self.messages_uri.clone();
        *out.headers_mut() = self.headers.clone();
        let client_beta = req.extensions.get::<AnthropicBeta>().map(|b| &*b.0);
        if let Some(beta) = join_betas(self.beta.as_deref().into_iter().chain(client_beta)) {
            let v = HeaderValue::from_str(&beta).map_err(|_| {
                Error::bad_request("the anthropic-beta header is not valid")
                    .with_param("anthropic-beta")
            })?;
            out.headers_mut().insert(header("anthropic-beta"), v);
        }
        if req.is_stream() {
            out.headers_mut().insert(
                http::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        Ok(out)
    }

    /// The request body with the deployment's defaults for fields it does not set.
    fn with_defaults<'a>(
        &self,
        body: &'a ChatRequestBody,
    ) -> Result<Cow<'a, ChatRequestBody>, Error> {
        let missing: Vec<(&str, &serde_json::value::RawValue)> = self
            .params
            .iter()
            .filter(|(k, _)| !body.has_field(k))
            .collect();
        if missing.is_empty() {
            return Ok(Cow::Borrowed(body));
        }
        let mut map: serde_json::Map<String, serde_json::Value> = serde_json::to_value(body)
            .ok()
            .and_then(|v| match v {
                serde_json::Value::Object(o) => Some(o),
                _ => None,
            })
            .ok_or_else(|| Error::internal("could not apply the deployment's defaults"))?;
        for (k, v) in missing {
            let v: serde_json::Value = serde_json::from_str(v.get())
                .map_err(|e| Error::internal(format!("invalid default `{k}`: {e}")))?;
            map.insert(k.to_owned(), v);
        }
        let mut merged: ChatRequestBody = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| {
                Error::bad_request(format!(
                    "a deployment default does not fit the request: {e}"
                ))
            })?;
        merged.drop_params = body.drop_params;
        merged
            .additional_drop_params
            .clone_from(&body.additional_drop_params);
        Ok(Cow::Owned(merged))
    }

    /// The native body with `model` replaced and deployment defaults added.
    fn native_body(&self, native: &NativeMessages) -> Result<Vec<u8>, Error> {
        let mut fields: Extra = serde_json::from_slice(&native.0).map_err(|e| {
            Error::bad_request(format!("the request body is not a JSON object: {e}"))
        })?;
        fields
            .insert("model", &self.model)
            .map_err(|e| Error::internal(e.to_string()))?;
        for (k, v) in self.params.iter() {
            if NATIVE_DEFAULTS.contains(&k) && !fields.contains(k) {
                fields.insert_raw(k, v.to_owned());
            }
        }
        serde_json::to_vec(&fields).map_err(|e| Error::internal(e.to_string()))
    }
}

/// Deployment defaults (litellm_params) that also mean something in a native body.
const NATIVE_DEFAULTS: &[&str] = &[
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "thinking",
    "service_tier",
    "output_config",
    "inference_geo",
    "speed",
    "container",
    "context_management",
    "mcp_servers",
];

impl Protocol for AnthropicProtocol {
    fn chat_request(&self, req: &ChatRequest) -> Result<http::Request<Bytes>, Error> {
        if let Some(native) = req.extensions.get::<NativeMessages>() {
            let body = self.native_body(native)?;
            return self.post(req, body);
        }
        let body = self.with_defaults(req.body())?;
        let settings = request::Settings {
            model: &self.model,
            default_max_tokens: self.default_max_tokens,
            drop: &self.drop,
            cache_points: &self.cache_points,
        };
        let bytes = request::translate(&body, &settings)?;
        self.post(req, bytes)
    }

    fn parse_completion(&self, req: &ChatRequest, body: &[u8]) -> Result<ChatCompletion, Error> {
        let native = req.extensions.get::<NativeMessages>().is_some();
        let json_tool = !native && request::uses_json_tool(req.body(), &self.drop);
        response::completion(body, json_tool, native)
    }

    fn stream_decoder(&self, req: &ChatRequest) -> Box<dyn StreamDecoder> {
        let native = req.extensions.get::<NativeMessages>().is_some();
        let json_tool = !native && request::uses_json_tool(req.body(), &self.drop);
        Box::new(SseStreamDecoder::new(stream::Translator::new(
            self.secrets.clone(),
            native,
            json_tool,
        )))
    }

    fn map_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        error::from_response(status, headers, body, &self.secrets())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(cfg: AnthropicConfig) -> AnthropicProtocol {
        AnthropicProtocol::new(cfg).unwrap()
    }

    fn chat(json: &str) -> ChatRequest {
        ChatRequest::from_json(json.as_bytes()).unwrap()
    }

    fn body_of(r: &http::Request<Bytes>) -> serde_json::Value {
        serde_json::from_slice(r.body()).unwrap()
    }

    #[test]
    fn urls_follow_litellm() {
        assert_eq!(
            messages_url("https://api.anthropic.com"),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(messages_url("http://h:1/"), "http://h:1/v1/messages");
        assert_eq!(
            messages_url("http://h:1/proxy/v1/messages"),
            "http://h:1/proxy/v1/messages"
        );
        assert!(AnthropicProtocol::new(AnthropicConfig::new("m").api_base("file:///x")).is_err());
    }

    #[test]
    fn headers_key_version_and_betas() {
        let mut cfg =
            AnthropicConfig::new("claude-haiku-4-5").api_key(Secret::new("sk-ant-test-123456"));
        cfg.extra_headers.push((
            HeaderName::from_static("anthropic-beta"),
            HeaderValue::from_static("a-1, b-2"),
        ));
        let p = proto(cfg);
        let mut req =
            chat(r#"{"model":"x","messages":[{"role":"user","content":"hi"}],"stream":true}"#);
        req.extensions.insert(AnthropicBeta(Arc::from("b-2,c-3")));
        let http = p.chat_request(&req).unwrap();
        assert_eq!(http.uri(), "https://api.anthropic.com/v1/messages");
        assert_eq!(http.headers()["x-api-key"], "sk-ant-test-123456");
        assert!(http.headers()["x-api-key"].is_sensitive());
        assert!(http.headers().get("authorization").is_none());
        assert_eq!(http.headers()["anthropic-version"], "2023-06-01");
        assert_eq!(http.headers()["anthropic-beta"], "a-1,b-2,c-3");
        assert_eq!(http.headers()["accept"], "text/event-stream");
        let body = body_of(&http);
        assert_eq!(body["model"], "claude-haiku-4-5");
        assert_eq!(body["stream"], true);
        assert_eq!(body["max_tokens"], 64000, "the model's real output limit");

        let mut cfg = AnthropicConfig::new("claude-unknown-1");
        cfg.auth_token = Some(Secret::new("oauth-token-value"));
        let http = proto(cfg).chat_request(&req).unwrap();
        assert_eq!(http.headers()["authorization"], "Bearer oauth-token-value");
        assert!(http.headers().get("x-api-key").is_none());
        assert_eq!(http.headers()["anthropic-beta"], "b-2,c-3");
        assert_eq!(body_of(&http)["max_tokens"], FALLBACK_MAX_TOKENS);
    }

    #[test]
    fn deployment_defaults_fill_gaps_only() {
        let mut cfg = AnthropicConfig::new("m");
        cfg.params.insert("temperature", &0.2).unwrap();
        cfg.params.insert("max_tokens", &100).unwrap();
        cfg.params.insert("top_k", &5).unwrap();
        let p = proto(cfg);
        let req = chat(
            r#"{"model":"x","messages":[{"role":"user","content":"hi"}],"temperature":0.7,"drop_params":true,"seed":1}"#,
        );
        let body = body_of(&p.chat_request(&req).unwrap());
        assert_eq!(body["temperature"], 0.7);
        assert_eq!(body["max_tokens"], 100);
        assert_eq!(body["top_k"], 5);
        assert!(
            body.get("seed").is_none(),
            "dropped: the request's drop_params survived the merge"
        );
    }

    #[test]
    fn native_body_is_sent_verbatim_with_the_model_replaced() {
        let mut cfg = AnthropicConfig::new("claude-haiku-4-5");
        cfg.params.insert("top_k", &5).unwrap();
        cfg.params.insert("frequency_penalty", &1).unwrap();
        let p = proto(cfg);
        let native = br#"{"model":"my-group","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"hi","citations":null}]}],"thinking":{"type":"enabled","budget_tokens":1024},"context_management":{"edits":[]}}"#;
        let mut req = chat(r#"{"model":"my-group","messages":[{"role":"user","content":"hi"}]}"#);
        req.extensions
            .insert(NativeMessages(Bytes::from_static(native)));
        let body = body_of(&p.chat_request(&req).unwrap());
        let mut expected: serde_json::Value = serde_json::from_slice(native).unwrap();
        expected["model"] = "claude-haiku-4-5".into();
        expected["top_k"] = 5.into();
        assert_eq!(body, expected);
    }
}
