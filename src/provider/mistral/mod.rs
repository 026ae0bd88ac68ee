//! Mistral La Plateforme (`mistral/<model>`): `POST {api_base}/chat/completions`
//! and `/embeddings`, with `api_base` defaulting to `https://api.mistral.ai/v1`.
//!
//! The API is OpenAI-like; the differences are translated both ways:
//!
//! - requests: `seed` → `random_seed`; `max_completion_tokens` → `max_tokens`;
//!   `tool_choice: "required"` → `"any"`; `developer` messages → `system`;
//!   `name` kept on `tool` messages only; tool-call ids that are not 9
//!   alphanumeric characters (ids from other providers) are replaced by a
//!   stable 9-character id derived from them ([`tool_call_id`]), the same in
//!   the assistant's `tool_calls` and in the `tool` answers; a conversation
//!   that ends with an assistant message gets `prefix: true`; file parts
//!   become Mistral's `file`/`document_url` chunks. Parameters Mistral does not
//!   take (`logit_bias`, `logprobs`, `user`, …) go through
//!   [`DropParams`]; Mistral's own (`safe_prompt`,
//!   `prompt_mode`, `random_seed`, `min_tokens`, …) are forwarded as sent.
//! - answers: `content` given as typed chunks (Magistral's
//!   `{"type":"thinking","thinking":[…]}`) is split into `content` and
//!   `reasoning_content`; `finish_reason` `model_length` → `length`, `error`
//!   → an error; tool calls get `type: "function"`; `content: ""` beside tool
//!   calls becomes `null`; `prompt_tokens_details.cached_tokens` is kept.
//! - streams: the same per delta; a tool call that arrives whole is split into
//!   the opening delta and its arguments; the usage Mistral puts on the
//!   finishing chunk is sent as its own usage chunk at the end.
//!
//! ```no_run
//! use tollgate::provider::mistral::{Mistral, MistralConfig};
//! use tollgate::{ChatRequest, Secret};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), tollgate::Error> {
//! let leaf = Mistral::new(MistralConfig::new("mistral-small-latest").api_key(Secret::new("...")))?;
//! let req = ChatRequest::from_json(br#"{"model":"small","messages":[{"role":"user","content":"Hi"}]}"#)?;
//! let resp = leaf.oneshot(req).await?;
//! println!("{:?}", resp.completion().and_then(|c| c.text()));
//! # Ok(()) }
//! ```

pub mod error;
pub mod request;
pub mod response;
pub mod stream;

pub use request::tool_call_id;

use super::sse_stream::SseStreamDecoder;
use super::{DropParams, HttpProvider, LeafTimeouts, Protocol, StreamDecoder};
use crate::Secret;
use crate::error::Error;
use crate::transport::HttpClient;
use crate::types::{
    ChatCompletion, ChatRequest, DeploymentInfo, EmbeddingRequest, EmbeddingResponse, Extra,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use std::sync::Arc;

/// The default base URL.
pub const MISTRAL_API_BASE: &str = "https://api.mistral.ai/v1";

/// Settings of a Mistral deployment.
#[derive(Clone, Debug)]
pub struct MistralConfig {
    /// The model (`mistral-large-latest`, without `mistral/`).
    pub model: String,
    /// Base URL including `/v1` (added when missing, as LiteLLM does).
    pub api_base: String,
    /// Bearer key.
    pub api_key: Option<Secret>,
    /// Extra headers sent upstream on every call.
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Default body parameters (from `litellm_params`); the request's own values win.
    pub params: Extra,
    /// `drop_params` / `additional_drop_params`.
    pub drop: DropParams,
    /// Deadlines.
    pub timeouts: LeafTimeouts,
    /// The deployment this is.
    pub info: Option<Arc<DeploymentInfo>>,
    /// The HTTP client (defaults to the process-wide one).
    pub client: Option<HttpClient>,
}

impl MistralConfig {
    /// Settings for `model` at La Plateforme, without a key.
    pub fn new(model: impl Into<String>) -> Self {
        MistralConfig {
            model: model.into(),
            api_base: MISTRAL_API_BASE.to_owned(),
            api_key: None,
            extra_headers: Vec::new(),
            params: Extra::new(),
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

/// The base URL with `/v1` at the end (LiteLLM's rule for Mistral).
///
/// ```
/// use tollgate::provider::mistral::normalize_base;
///
/// assert_eq!(normalize_base("https://api.mistral.ai"), "https://api.mistral.ai/v1");
/// assert_eq!(normalize_base("https://api.mistral.ai/v1/"), "https://api.mistral.ai/v1");
/// ```
pub fn normalize_base(base: &str) -> String {
    let b = base.trim().trim_end_matches('/');
    if b.ends_with("/v1") {
        b.to_owned()
    } else {
        format!("{b}/v1")
    }
}

/// The Mistral protocol (see the [module docs](self)).
pub struct MistralProtocol {
    model: String,
    chat_uri: Uri,
    embeddings_uri: Uri,
    models_uri: Uri,
    headers: HeaderMap,
    params: Extra,
    drop: DropParams,
    secrets: Vec<Secret>,
}

impl std::fmt::Debug for MistralProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MistralProtocol")
            .field("model", &self.model)
            .field("chat_uri", &self.chat_uri)
            .finish_non_exhaustive()
    }
}

/// A Mistral leaf.
pub type Mistral = HttpProvider<MistralProtocol>;

impl HttpProvider<MistralProtocol> {
    /// Builds the leaf. Fails on an invalid base URL or key.
    pub fn new(config: MistralConfig) -> Result<Self, Error> {
        let protocol = MistralProtocol::new(config.clone())?;
        let info = config.info.clone().unwrap_or_else(|| {
            Arc::new(DeploymentInfo {
                id: Arc::from(config.model.as_str()),
                model_group: Arc::from(config.model.as_str()),
                model: Arc::from(format!("mistral/{}", config.model)),
                provider: Arc::from("mistral"),
                api_base: Some(Arc::from(normalize_base(&config.api_base))),
            })
        });
        let client = config.client.clone().unwrap_or_else(HttpClient::shared);
        Ok(HttpProvider::with_protocol(
            protocol,
            client,
            info,
            config.timeouts,
        ))
    }
}

impl MistralProtocol {
    /// Builds the protocol from settings.
    pub fn new(config: MistralConfig) -> Result<Self, Error> {
        let base = normalize_base(&config.api_base);
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
        );
        let mut secrets = Vec::new();
        if let Some(key) = config.api_key.as_ref().filter(|k| !k.is_empty()) {
            let mut v =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    Error::bad_request("the Mistral API key contains invalid characters")
                })?;
            v.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, v);
            secrets.push(key.clone());
        }
        for (name, value) in &config.extra_headers {
            headers.insert(name.clone(), value.clone());
        }
        Ok(MistralProtocol {
            chat_uri: super::openai::join_uri(&base, "/chat/completions")?,
            embeddings_uri: super::openai::join_uri(&base, "/embeddings")?,
            models_uri: super::openai::join_uri(&base, "/models")?,
            model: config.model,
            headers,
            params: config.params,
            drop: config.drop,
            secrets,
        })
    }

    fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(Secret::expose).collect()
    }

    fn model_for<'a>(&'a self, ext: &'a http::Extensions) -> &'a str {
        ext.get::<crate::context::UpstreamModel>()
            .map_or(self.model.as_str(), |m| m.model())
    }

    /// The Mistral body for a chat request.
    pub fn body(&self, req: &ChatRequest) -> Result<Vec<u8>, Error> {
        request::chat_body(
            req,
            self.model_for(&req.extensions),
            &self.drop,
            &self.params,
        )
    }

    fn post(&self, uri: &Uri, body: Vec<u8>, stream: bool) -> http::Request<Bytes> {
        let mut req = http::Request::new(Bytes::from(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = self.headers.clone();
        if stream {
            req.headers_mut().insert(
                http::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        req
    }
}

impl Protocol for MistralProtocol {
    fn chat_request(&self, req: &ChatRequest) -> Result<http::Request<Bytes>, Error> {
        let body = self.body(req)?;
        Ok(self.post(&self.chat_uri, body, req.is_stream()))
    }

    fn parse_completion(&self, _req: &ChatRequest, body: &[u8]) -> Result<ChatCompletion, Error> {
        response::completion(body)
    }

    fn stream_decoder(&self, _req: &ChatRequest) -> Box<dyn StreamDecoder> {
        Box::new(SseStreamDecoder::new(stream::MistralChunkTranslator::new(
            self.secrets.clone(),
        )))
    }

    fn map_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        error::error_from_response(status, headers, body, &self.secrets())
    }

    fn health_request(&self) -> Option<http::Request<Bytes>> {
        let mut req = http::Request::new(Bytes::new());
        *req.uri_mut() = self.models_uri.clone();
        let mut headers = self.headers.clone();
        headers.remove(http::header::CONTENT_TYPE);
        *req.headers_mut() = headers;
        Some(req)
    }

    fn embedding_request(&self, req: &EmbeddingRequest) -> Result<http::Request<Bytes>, Error> {
        let body = request::embedding_body(req, self.model_for(&req.extensions), &self.params)?;
        Ok(self.post(&self.embeddings_uri, body, false))
    }

    fn parse_embeddings(
        &self,
        req: &EmbeddingRequest,
        body: &[u8],
    ) -> Result<EmbeddingResponse, Error> {
        response::embeddings(body, req.wants_base64())
    }
}

#[cfg(test)]
mod tests;
