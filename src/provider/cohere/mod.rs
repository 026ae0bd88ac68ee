//! Cohere v2 (`cohere/<model>`, `cohere_chat/<model>`): `POST {api_base}/v2/chat`
//! and `/v2/embed`, Bearer auth, `api_base` defaulting to `https://api.cohere.com`
//! (a base given with `/v1`, `/v2` or the full `/v2/chat` URL is trimmed to the host).
//!
//! Requests ([`request`]): `system`/`developer`, `user` (text and
//! `image_url` parts), `assistant` (text; `tool_calls` with the words beside
//! them as `tool_plan`; earlier `reasoning_content` sent back as a
//! `thinking` block) and `tool` messages (`tool_call_id`, text) map onto
//! Cohere's; `tools` keep OpenAI's v2 shape (per-tool `strict` becomes
//! `strict_tools`); `tool_choice` `required` → `REQUIRED`, `none` → `NONE`, a
//! named function keeps only that tool and makes it `REQUIRED`;
//! `response_format` json_object/json_schema → `{"type":"json_object",
//! "json_schema":…}`; `top_p` → `p`, `top_k` → `k`, `stop` → `stop_sequences`,
//! `max_completion_tokens` → `max_tokens`; `reasoning_effort` →
//! `thinking` (`none` disables it) unless `thinking` is given. Cohere's own
//! options (`documents`, `citation_options`, `safety_mode`, `thinking`,
//! `strict_tools`, …) are forwarded as sent; `n`, `logit_bias`, `user`,
//! `logprobs` and the like go through [`DropParams`].
//!
//! Answers ([`response`]): text blocks joined into `content`, thinking
//! blocks and the `tool_plan` into `reasoning_content`, tool calls with
//! `null`/empty arguments as `"{}"`, `citations` kept on the message,
//! `finish_reason` mapped (`ERROR`/`TIMEOUT` become errors), usage from
//! `usage.tokens` (what was processed, not `billed_units`) with
//! `cached_tokens` as the cached subset. Streams: [`stream`].
//!
//! ```no_run
//! use tollgate::provider::cohere::{Cohere, CohereConfig};
//! use tollgate::{ChatRequest, Secret};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), tollgate::Error> {
//! let leaf = Cohere::new(CohereConfig::new("command-a-03-2025").api_key(Secret::new("...")))?;
//! let req = ChatRequest::from_json(br#"{"model":"command","messages":[{"role":"user","content":"Hi"}]}"#)?;
//! let resp = leaf.oneshot(req).await?;
//! println!("{:?}", resp.completion().and_then(|c| c.text()));
//! # Ok(()) }
//! ```

pub mod error;
pub mod request;
pub mod response;
pub mod stream;
pub mod wire;

pub use error::error_from_response;

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
pub const COHERE_API_BASE: &str = "https://api.cohere.com";

/// Settings of a Cohere deployment.
#[derive(Clone, Debug)]
pub struct CohereConfig {
    /// The model (`command-a-03-2025`, without the provider prefix).
    pub model: String,
    /// The API host (`https://api.cohere.com`).
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

impl CohereConfig {
    /// Settings for `model` at api.cohere.com, without a key.
    pub fn new(model: impl Into<String>) -> Self {
        CohereConfig {
            model: model.into(),
            api_base: COHERE_API_BASE.to_owned(),
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

/// The API host of a configured base: trailing `/v2/chat`, `/v1/chat`, `/v2`
/// or `/v1` (LiteLLM accepts full endpoint URLs) are trimmed.
///
/// ```
/// use tollgate::provider::cohere::normalize_base;
///
/// assert_eq!(normalize_base("https://api.cohere.com/v2/chat"), "https://api.cohere.com");
/// assert_eq!(normalize_base("https://api.cohere.ai/v1/"), "https://api.cohere.ai");
/// assert_eq!(normalize_base("http://127.0.0.1:8080/cohere"), "http://127.0.0.1:8080/cohere");
/// ```
pub fn normalize_base(base: &str) -> String {
    let mut b = base.trim().trim_end_matches('/');
    for suffix in ["/chat", "/embed"] {
        if let Some(rest) = b.strip_suffix(suffix)
            && (rest.ends_with("/v1") || rest.ends_with("/v2"))
        {
            b = rest;
        }
    }
    for suffix in ["/v1", "/v2"] {
        if let Some(rest) = b.strip_suffix(suffix) {
            b = rest;
        }
    }
    b.to_owned()
}

/// The Cohere v2 protocol (see the [module docs](self)).
pub struct CohereProtocol {
    model: String,
    chat_uri: Uri,
    embed_uri: Uri,
    models_uri: Uri,
    headers: HeaderMap,
    params: Extra,
    drop: DropParams,
    secrets: Vec<Secret>,
}

impl std::fmt::Debug for CohereProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CohereProtocol")
            .field("model", &self.model)
            .field("chat_uri", &self.chat_uri)
            .finish_non_exhaustive()
    }
}

/// A Cohere leaf.
pub type Cohere = HttpProvider<CohereProtocol>;

impl HttpProvider<CohereProtocol> {
    /// Builds the leaf. Fails on an invalid base URL or key.
    pub fn new(config: CohereConfig) -> Result<Self, Error> {
        let protocol = CohereProtocol::new(config.clone())?;
        let info = config.info.clone().unwrap_or_else(|| {
            Arc::new(DeploymentInfo {
                id: Arc::from(config.model.as_str()),
                model_group: Arc::from(config.model.as_str()),
                model: Arc::from(format!("cohere/{}", config.model)),
                provider: Arc::from("cohere"),
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

impl CohereProtocol {
    /// Builds the protocol from settings.
    pub fn new(config: CohereConfig) -> Result<Self, Error> {
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
                    Error::bad_request("the Cohere API key contains invalid characters")
                })?;
            v.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, v);
            secrets.push(key.clone());
        }
        for (name, value) in &config.extra_headers {
            headers.insert(name.clone(), value.clone());
        }
        Ok(CohereProtocol {
            chat_uri: super::openai::join_uri(&base, "/v2/chat")?,
            embed_uri: super::openai::join_uri(&base, "/v2/embed")?,
            models_uri: super::openai::join_uri(&base, "/v1/models")?,
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

    /// The Cohere body for a chat request.
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
        req.headers_mut().insert(
            http::header::ACCEPT,
            HeaderValue::from_static(if stream {
                "text/event-stream"
            } else {
                "application/json"
            }),
        );
        req
    }
}

impl Protocol for CohereProtocol {
    fn chat_request(&self, req: &ChatRequest) -> Result<http::Request<Bytes>, Error> {
        let body = self.body(req)?;
        Ok(self.post(&self.chat_uri, body, req.is_stream()))
    }

    fn parse_completion(&self, req: &ChatRequest, body: &[u8]) -> Result<ChatCompletion, Error> {
        response::completion(
            body,
            self.model_for(&req.extensions),
            crate::util::unix_now(),
        )
    }

    fn stream_decoder(&self, req: &ChatRequest) -> Box<dyn StreamDecoder> {
        Box::new(SseStreamDecoder::new(stream::CohereChunkTranslator::new(
            self.model_for(&req.extensions),
            crate::util::unix_now(),
            self.secrets.clone(),
        )))
    }

    fn map_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        error_from_response(status, headers, body, &self.secrets())
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
        let body = request::embed_body(req, self.model_for(&req.extensions), &self.params)?;
        Ok(self.post(&self.embed_uri, body, false))
    }

    fn parse_embeddings(
        &self,
        req: &EmbeddingRequest,
        body: &[u8],
    ) -> Result<EmbeddingResponse, Error> {
        response::embeddings(body, self.model_for(&req.extensions), req.wants_base64())
    }
}

#[cfg(test)]
mod tests;
