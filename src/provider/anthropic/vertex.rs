//! Claude on Vertex AI: the Anthropic Messages API behind Google's endpoint.
//!
//! Model strings `vertex_ai/claude-…` (`vertex_ai/claude-sonnet-4@20250514`).
//! The body is the one the [Anthropic leaf](super) builds — same translation,
//! same answers and streams — with two changes Vertex AI demands: no `model`
//! field (the model is in the URL) and `anthropic_version:
//! "vertex-2023-10-16"` in the body instead of the `anthropic-version` header.
//! Calls go to
//! `https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{model}:rawPredict`
//! (`:streamRawPredict` for streams; location `global` uses the host
//! `aiplatform.googleapis.com`), or to `{api_base}:rawPredict` when an
//! `api_base` is set, with `Authorization: Bearer` from a Google
//! [`TokenSource`] (the same service-account / ADC / metadata-server sources
//! as Gemini on Vertex AI).
//!
//! Errors come in either format: Anthropic's envelope (`{"type":"error",…}`)
//! from the model, Google's (`{"error":{"code":…,"status":…}}`) from the
//! platform (auth, quota, unknown model); both are mapped.

use super::{AnthropicConfig, AnthropicProtocol, CachePoint, FALLBACK_MAX_TOKENS};
use crate::error::Error;
use crate::provider::gemini::{BearerToken, TokenSource, authorized, publisher_model_url};
use crate::provider::openai::join_uri;
use crate::provider::{
    DropParams, HttpProvider, LeafTimeouts, PrepareFuture, Protocol, StreamDecoder,
};
use crate::transport::HttpClient;
use crate::types::{ChatCompletion, ChatRequest, DeploymentInfo, Extra};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use std::sync::Arc;

/// The `anthropic_version` Vertex AI wants in the body.
pub const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// Settings of a Claude deployment on Vertex AI.
#[derive(Clone)]
pub struct VertexClaudeConfig {
    /// The model (`claude-sonnet-4@20250514`, not `vertex_ai/claude-sonnet-4@20250514`).
    pub model: String,
    /// The Google Cloud project (needed unless `api_base` is set).
    pub project: Option<String>,
    /// The location (`us-east5`, `europe-west1`, `global`).
    pub location: String,
    /// The whole URL up to the `:rawPredict` suffix (for proxies in front of Vertex AI).
    pub api_base: Option<String>,
    /// Where access tokens come from.
    pub tokens: Arc<dyn TokenSource>,
    /// Extra headers sent upstream on every call (an `anthropic-beta` here is
    /// joined with the client's).
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Default body parameters (from `litellm_params`, OpenAI names); the request's own values win.
    pub params: Extra,
    /// `max_tokens` when the client sets none (default: the model's output limit).
    pub default_max_tokens: Option<u32>,
    /// LiteLLM's `cache_control_injection_points`.
    pub cache_control_injection_points: Vec<CachePoint>,
    /// What to do with OpenAI parameters Claude does not support.
    pub drop: DropParams,
    /// Deadlines.
    pub timeouts: LeafTimeouts,
    /// The deployment this is (defaults describe the model alone).
    pub info: Option<Arc<DeploymentInfo>>,
    /// The HTTP client (defaults to the process-wide one).
    pub client: Option<HttpClient>,
}

impl std::fmt::Debug for VertexClaudeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VertexClaudeConfig")
            .field("model", &self.model)
            .field("project", &self.project)
            .field("location", &self.location)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

impl VertexClaudeConfig {
    /// Settings for `model` in `project` at `location`, authenticated by `tokens`.
    pub fn new(
        model: impl Into<String>,
        project: impl Into<String>,
        location: impl Into<String>,
        tokens: Arc<dyn TokenSource>,
    ) -> Self {
        VertexClaudeConfig {
            model: model.into(),
            project: Some(project.into()),
            location: location.into(),
            api_base: None,
            tokens,
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

    /// The URL the calls go to, up to the `:rawPredict` suffix.
    pub fn model_url(&self) -> Result<String, Error> {
        publisher_model_url(
            self.api_base.as_deref(),
            self.project.as_deref(),
            &self.location,
            "anthropic",
            &self.model,
        )
    }
}

/// The model's output limit from the price table (`vertex_ai/<model>`, then
/// without the `@version`, then the Anthropic name), else [`FALLBACK_MAX_TOKENS`].
fn output_limit(model: &str) -> u32 {
    let unversioned = model.split('@').next().unwrap_or(model);
    [
        format!("vertex_ai/{model}"),
        format!("vertex_ai/{unversioned}"),
        format!("anthropic/{}", model.replace('@', "-")),
        format!("anthropic/{unversioned}"),
    ]
    .iter()
    .find_map(|k| {
        crate::pricing::model_info(k)
            .and_then(|m| m.output_limit())
            .and_then(|l| u32::try_from(l).ok())
    })
    .unwrap_or(FALLBACK_MAX_TOKENS)
}

/// The Claude-on-Vertex-AI protocol (see the [module docs](self)).
pub struct VertexClaudeProtocol {
    inner: AnthropicProtocol,
    raw_uri: Uri,
    stream_uri: Uri,
    tokens: Arc<dyn TokenSource>,
}

impl std::fmt::Debug for VertexClaudeProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VertexClaudeProtocol")
            .field("raw_uri", &self.raw_uri)
            .finish_non_exhaustive()
    }
}

/// A leaf for Claude on Vertex AI.
pub type VertexClaude = HttpProvider<VertexClaudeProtocol>;

impl HttpProvider<VertexClaudeProtocol> {
    /// Builds the leaf. Fails on a missing project, a bad location, URL or header.
    pub fn new(config: VertexClaudeConfig) -> Result<Self, Error> {
        let url = config.model_url()?;
        let info = config.info.clone().unwrap_or_else(|| {
            Arc::new(DeploymentInfo {
                id: Arc::from(config.model.as_str()),
                model_group: Arc::from(config.model.as_str()),
                model: Arc::from(format!("vertex_ai/{}", config.model)),
                provider: Arc::from("vertex_ai"),
                api_base: Some(Arc::from(url.as_str())),
            })
        });
        let client = config.client.clone().unwrap_or_else(HttpClient::shared);
        let timeouts = config.timeouts;
        Ok(HttpProvider::with_protocol(
            VertexClaudeProtocol::new(config)?,
            client,
            info,
            timeouts,
        ))
    }
}

impl VertexClaudeProtocol {
    /// Builds the protocol from settings.
    pub fn new(config: VertexClaudeConfig) -> Result<Self, Error> {
        let url = config.model_url()?;
        let raw_uri = join_uri(&url, ":rawPredict")?;
        let stream_uri = join_uri(&url, ":streamRawPredict")?;
        let default_max_tokens = config
            .default_max_tokens
            .unwrap_or_else(|| output_limit(&config.model));
        let mut anthropic = AnthropicConfig::new(config.model).api_base(url);
        anthropic.extra_headers = config.extra_headers;
        anthropic.params = config.params;
        anthropic.default_max_tokens = Some(default_max_tokens);
        anthropic.cache_control_injection_points = config.cache_control_injection_points;
        anthropic.drop = config.drop;
        Ok(VertexClaudeProtocol {
            inner: AnthropicProtocol::new(anthropic)?,
            raw_uri,
            stream_uri,
            tokens: config.tokens,
        })
    }

    /// The URL of non-streamed calls.
    pub fn raw_predict_uri(&self) -> &Uri {
        &self.raw_uri
    }

    /// The URL of streamed calls.
    pub fn stream_raw_predict_uri(&self) -> &Uri {
        &self.stream_uri
    }

    /// The `max_tokens` sent when the client sets none.
    pub fn default_max_tokens(&self) -> u32 {
        self.inner.default_max_tokens()
    }
}

/// An Anthropic Messages body made into a Vertex AI one: `model` removed,
/// `anthropic_version` set.
fn vertex_body(body: &[u8]) -> Result<Vec<u8>, Error> {
    let mut fields: Extra = serde_json::from_slice(body)
        .map_err(|e| Error::internal(format!("the translated body is not an object: {e}")))?;
    fields.remove("model");
    fields
        .insert("anthropic_version", VERTEX_ANTHROPIC_VERSION)
        .map_err(|e| Error::internal(e.to_string()))?;
    serde_json::to_vec(&fields).map_err(|e| Error::internal(e.to_string()))
}

impl Protocol for VertexClaudeProtocol {
    fn prepare_chat<'a>(&'a self, req: &'a mut ChatRequest) -> Option<PrepareFuture<'a>> {
        Some(Box::pin(async move {
            let token = self.tokens.token().await?;
            req.extensions.insert(BearerToken(token));
            Ok(())
        }))
    }

    fn chat_request(&self, req: &ChatRequest) -> Result<http::Request<Bytes>, Error> {
        let anthropic = self.inner.chat_request(req)?;
        let (mut parts, body) = anthropic.into_parts();
        parts.uri = if req.is_stream() {
            self.stream_uri.clone()
        } else {
            self.raw_uri.clone()
        };
        parts.headers.remove("anthropic-version");
        let out = http::Request::from_parts(parts, Bytes::from(vertex_body(&body)?));
        authorized(out, &req.extensions)
    }

    fn parse_completion(&self, req: &ChatRequest, body: &[u8]) -> Result<ChatCompletion, Error> {
        self.inner.parse_completion(req, body)
    }

    fn stream_decoder(&self, req: &ChatRequest) -> Box<dyn StreamDecoder> {
        self.inner.stream_decoder(req)
    }

    fn map_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        let anthropic_envelope = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .is_some_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("error"));
        if anthropic_envelope {
            self.inner.map_error(status, headers, body)
        } else {
            crate::provider::gemini::google_error(status, headers, body, &[])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;
    use crate::provider::gemini::StaticToken;

    fn config(location: &str) -> VertexClaudeConfig {
        VertexClaudeConfig::new(
            "claude-sonnet-4@20250514",
            "my-project",
            location,
            Arc::new(StaticToken(Secret::new("ya29.test"))),
        )
    }

    #[test]
    fn urls_by_location() {
        let p = VertexClaudeProtocol::new(config("us-east5")).unwrap();
        assert_eq!(
            p.raw_predict_uri().to_string(),
            "https://us-east5-aiplatform.googleapis.com/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict"
        );
        assert_eq!(
            p.stream_raw_predict_uri().to_string(),
            "https://us-east5-aiplatform.googleapis.com/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict"
        );
        let p = VertexClaudeProtocol::new(config("global")).unwrap();
        assert_eq!(
            p.raw_predict_uri().to_string(),
            "https://aiplatform.googleapis.com/v1/projects/my-project/locations/global/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict"
        );
        assert!(VertexClaudeProtocol::new(config("us-east5.evil.example/x")).is_err());
        let mut no_project = config("us-east5");
        no_project.project = None;
        assert!(VertexClaudeProtocol::new(no_project).is_err());
    }

    #[test]
    fn body_has_no_model_and_the_vertex_version() {
        let p = VertexClaudeProtocol::new(config("us-east5")).unwrap();
        let mut req = ChatRequest::from_json(
            br#"{"model":"group","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        // Not prepared: no token, a clear internal error instead of an unauthenticated call.
        assert!(p.chat_request(&req).is_err());
        req.extensions.insert(BearerToken(Secret::new("ya29.test")));
        let http = p.chat_request(&req).unwrap();
        assert_eq!(http.headers()["authorization"], "Bearer ya29.test");
        assert!(http.headers().get("anthropic-version").is_none());
        assert!(http.headers().get("x-api-key").is_none());
        let body: serde_json::Value = serde_json::from_slice(http.body()).unwrap();
        assert!(body.get("model").is_none(), "{body}");
        assert_eq!(body["anthropic_version"], VERTEX_ANTHROPIC_VERSION);
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["max_tokens"], p.default_max_tokens());
    }

    #[test]
    fn output_limit_uses_the_vertex_names() {
        assert_eq!(output_limit("claude-3-5-haiku@20241022"), 8192);
        assert_eq!(output_limit("claude-unknown@1"), FALLBACK_MAX_TOKENS);
    }
}
