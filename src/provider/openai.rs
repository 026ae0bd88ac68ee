//! OpenAI, and every server that speaks its chat/completions protocol.
//!
//! The request body is forwarded as the client sent it — unknown fields
//! included — with three changes: `model` becomes the deployment's model,
//! gateway-only fields (`metadata`, `fallbacks`, `mock_response`, …) are left
//! out, and a streamed request always asks for usage
//! (`stream_options.include_usage`) so every stream can be billed; the edge
//! hides the usage chunk from clients that did not ask for it.
//!
//! ```no_run
//! use tollgate::provider::{OpenAi, OpenAiConfig};
//! use tollgate::{ChatRequest, Secret};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), tollgate::Error> {
//! let leaf = OpenAi::new(
//!     OpenAiConfig::new("gpt-4o-mini").api_key(Secret::new("sk-...")),
//! )?;
//! let req = ChatRequest::from_json(br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}"#)?;
//! let resp = leaf.oneshot(req).await?;
//! println!("{:?}", resp.completion().and_then(|c| c.text()));
//! # Ok(()) }
//! ```

use super::sse_stream::{EventTranslator, SseStreamDecoder};
use super::{HttpProvider, LeafTimeouts, Protocol, StreamDecoder, header, retry_after};
use crate::Secret;
use crate::error::{Error, ErrorKind, LimitSource};
use crate::sse::SseEvent;
use crate::transport::HttpClient;
use crate::types::{
    ChatChunk, ChatCompletion, ChatRequest, DeploymentInfo, EmbeddingRequest, EmbeddingResponse,
    Extra, StreamOptions,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use serde::Deserialize;
use serde::ser::SerializeMap;
use std::collections::VecDeque;
use std::sync::Arc;

/// The default OpenAI base URL.
pub const OPENAI_API_BASE: &str = "https://api.openai.com/v1";

/// Settings of an OpenAI (or OpenAI-compatible) deployment.
#[derive(Clone, Debug)]
pub struct OpenAiConfig {
    /// The upstream model name (`gpt-4o-mini`, not `openai/gpt-4o-mini`).
    pub model: String,
    /// Base URL including the version segment (`https://api.openai.com/v1`).
    pub api_base: String,
    /// Bearer key; `None` for servers without auth.
    pub api_key: Option<Secret>,
    /// `OpenAI-Organization` header.
    pub organization: Option<String>,
    /// `OpenAI-Project` header.
    pub project: Option<String>,
    /// Extra headers sent upstream on every call.
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Default body parameters (from `litellm_params`); the request's own values win.
    pub params: Extra,
    /// Provider name for errors and metadata (`openai`, `groq`, …).
    pub provider: Arc<str>,
    /// Ask for usage on streams (`stream_options.include_usage`). Off only for
    /// servers that reject `stream_options`.
    pub stream_usage: bool,
    /// Parameters to leave out (`additional_drop_params`; OpenAI supports every OpenAI parameter).
    pub drop: super::DropParams,
    /// Deadlines.
    pub timeouts: LeafTimeouts,
    /// The deployment this is (defaults describe the model alone).
    pub info: Option<Arc<DeploymentInfo>>,
    /// The HTTP client (defaults to the process-wide one).
    pub client: Option<HttpClient>,
}

impl OpenAiConfig {
    /// Settings for `model` at the OpenAI API.
    pub fn new(model: impl Into<String>) -> Self {
        OpenAiConfig {
            model: model.into(),
            api_base: OPENAI_API_BASE.to_owned(),
            api_key: None,
            organization: None,
            project: None,
            extra_headers: Vec::new(),
            params: Extra::new(),
            provider: Arc::from("openai"),
            stream_usage: true,
            drop: super::DropParams::default(),
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

/// The OpenAI protocol (see the [module docs](self)).
#[derive(Debug)]
pub struct OpenAiProtocol {
    model: String,
    chat_uri: Uri,
    embeddings_uri: Uri,
    models_uri: Uri,
    headers: HeaderMap,
    params: Extra,
    stream_usage: bool,
    drop: super::DropParams,
    secrets: Vec<Secret>,
}

/// An OpenAI (or OpenAI-compatible) leaf.
pub type OpenAi = HttpProvider<OpenAiProtocol>;

impl HttpProvider<OpenAiProtocol> {
    /// Builds the leaf. Fails on an invalid base URL or header.
    pub fn new(config: OpenAiConfig) -> Result<Self, Error> {
        let info = config.info.clone().unwrap_or_else(|| {
            Arc::new(DeploymentInfo {
                id: Arc::from(config.model.as_str()),
                model_group: Arc::from(config.model.as_str()),
                model: Arc::from(format!("{}/{}", config.provider, config.model)),
                provider: config.provider.clone(),
                api_base: Some(Arc::from(config.api_base.as_str())),
            })
        });
        let client = config.client.clone().unwrap_or_else(HttpClient::shared);
        let timeouts = config.timeouts;
        Ok(HttpProvider::with_protocol(
            OpenAiProtocol::new(config)?,
            client,
            info,
            timeouts,
        ))
    }
}

/// Joins a base URL and a path into a URI, refusing anything but http(s).
pub(crate) fn join_uri(base: &str, path: &str) -> Result<Uri, Error> {
    let base = base.trim_end_matches('/');
    let uri: Uri = format!("{base}{path}").parse().map_err(|_| {
        Error::bad_request(format!(
            "invalid api_base `{}`",
            crate::util::redact(base, &[])
        ))
    })?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some() => Ok(uri),
        _ => Err(Error::bad_request(
            "api_base must be an http:// or https:// URL",
        )),
    }
}

impl OpenAiProtocol {
    /// Builds the protocol from settings.
    pub fn new(config: OpenAiConfig) -> Result<Self, Error> {
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
            let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                .map_err(|_| Error::bad_request("the API key contains invalid characters"))?;
            v.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, v);
            secrets.push(key.clone());
        }
        if let Some(org) = &config.organization {
            headers.insert(
                header("openai-organization"),
                HeaderValue::from_str(org)
                    .map_err(|_| Error::bad_request("invalid organization"))?,
            );
        }
        if let Some(project) = &config.project {
            headers.insert(
                header("openai-project"),
                HeaderValue::from_str(project)
                    .map_err(|_| Error::bad_request("invalid project"))?,
            );
        }
        for (name, value) in &config.extra_headers {
            headers.insert(name.clone(), value.clone());
        }
        Ok(OpenAiProtocol {
            chat_uri: join_uri(&config.api_base, "/chat/completions")?,
            embeddings_uri: join_uri(&config.api_base, "/embeddings")?,
            models_uri: join_uri(&config.api_base, "/models")?,
            model: config.model,
            headers,
            params: config.params,
            stream_usage: config.stream_usage,
            drop: config.drop,
            secrets,
        })
    }

    fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(Secret::expose).collect()
    }

    fn post(&self, uri: &Uri, body: Vec<u8>, stream: bool) -> Result<http::Request<Bytes>, Error> {
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
        Ok(req)
    }
}

impl Protocol for OpenAiProtocol {
    fn chat_request(&self, req: &ChatRequest) -> Result<http::Request<Bytes>, Error> {
        let model = req
            .extensions
            .get::<crate::context::UpstreamModel>()
            .map_or(self.model.as_str(), |m| m.model());
        let body = chat_body(req, model, self.stream_usage, &self.drop, &self.params)?;
        self.post(&self.chat_uri, body, req.is_stream())
    }

    fn parse_completion(&self, _req: &ChatRequest, body: &[u8]) -> Result<ChatCompletion, Error> {
        crate::types::from_json(body).map_err(|e| bad_upstream_json("completion", &e))
    }

    fn stream_decoder(&self, _req: &ChatRequest) -> Box<dyn StreamDecoder> {
        Box::new(SseStreamDecoder::new(ChunkTranslator::new(
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
        let model = req
            .extensions
            .get::<crate::context::UpstreamModel>()
            .map_or(self.model.as_str(), |m| m.model());
        let out = embedding_body(req, model, &self.params)?;
        self.post(&self.embeddings_uri, out, false)
    }

    fn parse_embeddings(
        &self,
        _req: &EmbeddingRequest,
        body: &[u8],
    ) -> Result<EmbeddingResponse, Error> {
        serde_json::from_slice(body).map_err(|e| bad_upstream_json("embeddings answer", &e))
    }
}

/// The OpenAI chat body for `req`: `model` replaced, gateway-only and
/// `additional_drop_params` fields left out, deployment `params` as defaults,
/// and — with `stream_usage` on a streamed request — `stream_options.include_usage`
/// forced on. Shared with Azure OpenAI.
pub(crate) fn chat_body(
    req: &ChatRequest,
    model: &str,
    stream_usage: bool,
    drop: &super::DropParams,
    params: &Extra,
) -> Result<Vec<u8>, Error> {
    let force_usage = req.is_stream() && stream_usage;
    let policy = drop.for_request(req.body());
    let mut except: Vec<&str> = policy.additional.iter().map(String::as_str).collect();
    if force_usage {
        except.push("stream_options");
    }
    req.body()
        .write_upstream_json(model, &except, params, |map| {
            if force_usage {
                let mut opts: StreamOptions = req.stream_options.clone().unwrap_or_default();
                opts.include_usage = Some(true);
                map.serialize_entry("stream_options", &opts)?;
            }
            Ok(())
        })
        .map_err(|e| Error::internal(format!("could not encode the request: {e}")))
}

/// The OpenAI embeddings body for `req` with `model`, deployment `params` as
/// defaults. Shared with Azure OpenAI and Mistral.
pub(crate) fn embedding_body(
    req: &EmbeddingRequest,
    model: &str,
    params: &Extra,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(128);
    {
        let mut ser = serde_json::Serializer::new(&mut out);
        let mut map = serde::Serializer::serialize_map(&mut ser, None)
            .map_err(|e| Error::internal(e.to_string()))?;
        let encode = |e: serde_json::Error| Error::internal(e.to_string());
        map.serialize_entry("model", model).map_err(encode)?;
        req.body()
            .serialize_entries(&mut map, &["model"])
            .map_err(encode)?;
        for (k, v) in params.iter() {
            if !crate::types::EmbeddingRequestBody::KNOWN_FIELDS.contains(&k)
                && !req.extra.contains(k)
            {
                map.serialize_entry(k, v).map_err(encode)?;
            }
        }
        SerializeMap::end(map).map_err(encode)?;
    }
    Ok(out)
}

pub(crate) fn bad_upstream_json(what: &str, e: &serde_json::Error) -> Error {
    Error::new(
        ErrorKind::BadGateway,
        format!("the upstream {what} is not valid: {e}"),
    )
}

/// Translates OpenAI-format SSE events (they already are OpenAI chunks).
#[derive(Debug)]
pub(crate) struct ChunkTranslator {
    done: bool,
    finished: bool,
    secrets: Vec<Secret>,
}

impl ChunkTranslator {
    pub(crate) fn new(secrets: Vec<Secret>) -> Self {
        ChunkTranslator {
            done: false,
            finished: false,
            secrets,
        }
    }
}

impl EventTranslator for ChunkTranslator {
    fn event(&mut self, event: SseEvent, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if event.is_done() {
            self.done = true;
            return Ok(());
        }
        if event.event.as_deref() == Some("error") {
            // Groq and others: `event: error` with an error object.
            return Err(in_band_error(event.data.as_bytes(), &self.secrets));
        }
        let chunk: ChatChunk =
            serde_json::from_str(&event.data).map_err(|e| bad_upstream_json("stream chunk", &e))?;
        if chunk.extra.contains("error") {
            // OpenRouter / Gemini-compat: a chunk carrying an error object.
            return Err(in_band_error(event.data.as_bytes(), &self.secrets));
        }
        if chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
            self.finished = true;
        }
        out.push_back(chunk);
        Ok(())
    }

    fn end(&mut self, _out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if self.done || self.finished {
            // Some compatible servers omit `[DONE]` after the finishing chunk.
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Connection,
            "the upstream closed the stream before it finished",
        ))
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

/// An error object sent inside a 200 stream, as an [`Error`], with the
/// upstream's keys redacted (exposed here, on the error path only).
pub(crate) fn in_band_error(data: &[u8], secrets: &[Secret]) -> Error {
    let secrets: Vec<&str> = secrets.iter().map(Secret::expose).collect();
    let secrets = secrets.as_slice();
    let body: Envelope = serde_json::from_slice(data).unwrap_or_default();
    let status = body
        .error
        .as_ref()
        .and_then(|e| e.code.as_ref())
        .and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_from_parts(status, &HeaderMap::new(), body, data, secrets)
}

#[derive(Deserialize, Default)]
struct Envelope {
    #[serde(default)]
    error: Option<ErrorObject>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct ErrorObject {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    param: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

fn value_to_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Maps an OpenAI-style error response to an [`Error`] (also used by Azure,
/// Mistral and every OpenAI-compatible server).
pub fn error_from_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Error {
    let parsed: Envelope = serde_json::from_slice(body).unwrap_or_default();
    error_from_parts(status, headers, parsed, body, secrets)
}

fn error_from_parts(
    status: StatusCode,
    headers: &HeaderMap,
    env: Envelope,
    raw: &[u8],
    secrets: &[&str],
) -> Error {
    let obj = env.error.unwrap_or_default();
    let message = obj
        .message
        .clone()
        .or(env.message)
        .or_else(|| {
            env.detail.as_ref().map(|d| match d {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        })
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(raw);
            let text: String = text.chars().take(300).collect();
            if text.trim().is_empty() {
                format!("the upstream answered {status} with no details")
            } else {
                format!("the upstream answered {status}: {}", text.trim())
            }
        });
    let code = obj.code.as_ref().and_then(value_to_string);
    let lower = message.to_ascii_lowercase();
    let code_is = |c: &str| code.as_deref() == Some(c);
    let kind = match status.as_u16() {
        400 | 413 | 422
            if code_is("context_length_exceeded")
                || lower.contains("maximum context length")
                || lower.contains("context window")
                || lower.contains("context_length_exceeded")
                || lower.contains("prompt is too long")
                || lower.contains("reduce the length") =>
        {
            ErrorKind::ContextWindowExceeded
        }
        400 if code_is("content_filter")
            || code_is("content_policy_violation")
            || lower.contains("content management policy")
            || lower.contains("content_policy") =>
        {
            ErrorKind::ContentPolicy
        }
        400 => ErrorKind::BadRequest,
        401 => ErrorKind::Authentication,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        413 => ErrorKind::PayloadTooLarge,
        422 => ErrorKind::UnprocessableEntity,
        429 => ErrorKind::RateLimited(LimitSource::Upstream),
        503 | 529 => ErrorKind::ServiceUnavailable,
        s => ErrorKind::Upstream(s),
    };
    let mut err = Error::from_upstream(kind, &message, secrets);
    if let Some(p) = obj.param.as_ref().and_then(value_to_string) {
        err = err.with_param(crate::util::redact(&p, secrets).into_owned());
    }
    if let Some(c) = code {
        err = err.with_code(crate::util::redact(&c, secrets).into_owned());
    } else if status.as_u16() == 529 {
        err = err.with_code("overloaded");
    }
    if let Some(after) = retry_after(headers) {
        err = err.with_retry_after(after);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/protocols/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn proto() -> OpenAiProtocol {
        OpenAiProtocol::new(
            OpenAiConfig::new("gpt-4o-2024-08-06").api_key(Secret::new("sk-test-abcdefghijkl")),
        )
        .unwrap()
    }

    #[test]
    fn request_rewrites_model_forces_usage_and_keeps_unknown_fields() {
        let req = ChatRequest::from_json(
            br#"{"model":"my-group","messages":[{"role":"user","content":"hi"}],
                 "stream":true,"stream_options":{"include_obfuscation":false},
                 "metadata":{"tags":["a"]},"fallbacks":["x"],"vendor_knob":{"k":1}}"#,
        )
        .unwrap();
        let http = proto().chat_request(&req).unwrap();
        assert_eq!(http.uri(), "https://api.openai.com/v1/chat/completions");
        assert_eq!(
            http.headers()["authorization"].to_str().unwrap(),
            "Bearer sk-test-abcdefghijkl"
        );
        assert!(http.headers()["authorization"].is_sensitive());
        assert_eq!(http.headers()["accept"], "text/event-stream");
        let body: serde_json::Value = serde_json::from_slice(http.body()).unwrap();
        assert_eq!(body["model"], "gpt-4o-2024-08-06");
        assert_eq!(
            body["stream_options"],
            serde_json::json!({"include_usage": true, "include_obfuscation": false})
        );
        assert_eq!(body["vendor_knob"], serde_json::json!({"k": 1}));
        assert!(body.get("metadata").is_none());
        assert!(body.get("fallbacks").is_none());
    }

    #[test]
    fn deployment_params_are_defaults_not_overrides() {
        let mut cfg = OpenAiConfig::new("m");
        cfg.params.insert("temperature", &0.1).unwrap();
        cfg.params.insert("top_k", &5).unwrap();
        let p = OpenAiProtocol::new(cfg).unwrap();
        let req =
            ChatRequest::from_json(br#"{"model":"g","messages":[],"temperature":0.9}"#).unwrap();
        let body: serde_json::Value =
            serde_json::from_slice(p.chat_request(&req).unwrap().body()).unwrap();
        assert_eq!(body["temperature"], 0.9);
        assert_eq!(body["top_k"], 5);
        assert!(
            p.chat_request(&req)
                .unwrap()
                .headers()
                .get("authorization")
                .is_none()
        );
    }

    #[test]
    fn additional_drop_params_leave_fields_out() {
        let mut cfg = OpenAiConfig::new("m");
        cfg.drop.additional = vec!["seed".into()];
        let p = OpenAiProtocol::new(cfg).unwrap();
        let req = ChatRequest::from_json(
            br#"{"model":"g","messages":[],"seed":3,"user":"u","vendor":1,"additional_drop_params":["vendor","user"]}"#,
        )
        .unwrap();
        let body: serde_json::Value =
            serde_json::from_slice(p.chat_request(&req).unwrap().body()).unwrap();
        assert!(body.get("seed").is_none());
        assert!(body.get("user").is_none());
        assert!(body.get("vendor").is_none());
        assert!(body.get("additional_drop_params").is_none());
    }

    #[test]
    fn bad_api_base_is_refused() {
        assert!(OpenAiProtocol::new(OpenAiConfig::new("m").api_base("file:///etc")).is_err());
        assert!(OpenAiProtocol::new(OpenAiConfig::new("m").api_base("not a url")).is_err());
        let p = OpenAiProtocol::new(OpenAiConfig::new("m").api_base("http://127.0.0.1:8000/v1/"))
            .unwrap();
        assert_eq!(p.chat_uri, "http://127.0.0.1:8000/v1/chat/completions");
    }

    #[test]
    fn error_fixtures_map_to_kinds() {
        let p = proto();
        let cases = [
            (
                "openai/error_400_context_length_exceeded.json",
                400,
                ErrorKind::ContextWindowExceeded,
            ),
            (
                "openai/error_401_invalid_api_key.json",
                401,
                ErrorKind::Authentication,
            ),
            (
                "openai/error_404_model_not_found.resp.json",
                404,
                ErrorKind::NotFound,
            ),
            (
                "openai/error_429_rate_limit_tokens.json",
                429,
                ErrorKind::RateLimited(LimitSource::Upstream),
            ),
            (
                "openai/error_400_unsupported_value.resp.json",
                400,
                ErrorKind::BadRequest,
            ),
            (
                "openai/error_400_param_not_supported.resp.json",
                400,
                ErrorKind::BadRequest,
            ),
            (
                "azure/error_400_content_filter.json",
                400,
                ErrorKind::ContentPolicy,
            ),
            (
                "azure/error_401_invalid_key.json",
                401,
                ErrorKind::Authentication,
            ),
            (
                "azure/error_429_token_rate_limit.json",
                429,
                ErrorKind::RateLimited(LimitSource::Upstream),
            ),
            (
                "openai_compatible/groq_error_404_model.resp.json",
                404,
                ErrorKind::NotFound,
            ),
            (
                "openai_compatible/openrouter_error_429.resp.json",
                429,
                ErrorKind::RateLimited(LimitSource::Upstream),
            ),
        ];
        for (file, status, kind) in cases {
            let body = fixture(file);
            let err = p.map_error(
                StatusCode::from_u16(status).unwrap(),
                &HeaderMap::new(),
                &body,
            );
            assert_eq!(err.kind(), kind, "{file}: {err:?}");
            assert_eq!(err.status().as_u16(), status, "{file}");
            assert!(!err.message().is_empty(), "{file}");
        }
    }

    #[test]
    fn error_details_are_kept_and_keys_scrubbed() {
        let body = fixture("openai/error_401_invalid_api_key.json");
        let err = proto().map_error(StatusCode::UNAUTHORIZED, &HeaderMap::new(), &body);
        assert!(err.message().starts_with("Incorrect API key provided"));
        assert_eq!(err.code(), Some("invalid_api_key"));
        // What OpenAI really sends: a masked key. Neither it nor our own key may pass.
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-proj-ab12****wxyz. Key sk-test-abcdefghijkl.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let err = proto().map_error(StatusCode::UNAUTHORIZED, &HeaderMap::new(), body);
        assert!(!err.message().contains("sk-"), "{}", err.message());
        assert!(!err.message().contains("abcdefghijkl"), "{}", err.message());

        let body = fixture("openai/error_400_unsupported_value.resp.json");
        let err = proto().map_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), &body);
        assert_eq!(err.param(), Some("messages[0].role"));
        assert_eq!(err.code(), Some("unsupported_value"));

        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        let err = proto().map_error(StatusCode::TOO_MANY_REQUESTS, &h, b"{}");
        assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(7)));
        let err = proto().map_error(StatusCode::BAD_GATEWAY, &h, b"<html>bad gateway</html>");
        assert_eq!(err.kind(), ErrorKind::Upstream(502));
        assert!(err.message().contains("bad gateway"));
    }

    fn decode(bytes: &[u8]) -> (Vec<ChatChunk>, Result<(), Error>) {
        let mut d = SseStreamDecoder::new(ChunkTranslator::new(vec![]));
        let mut out = VecDeque::new();
        let r = d.feed(bytes, &mut out).and_then(|_| d.finish(&mut out));
        (out.into_iter().collect(), r)
    }

    #[test]
    fn in_band_stream_errors_never_show_the_upstream_key() {
        let key = "upstream-key-0123456789";
        for body in [
            format!("data: {{\"error\":{{\"message\":\"bad key {key}\"}}}}\n\n"),
            format!("event: error\ndata: {{\"error\":{{\"message\":\"bad key {key}\"}}}}\n\n"),
        ] {
            let mut d = SseStreamDecoder::new(ChunkTranslator::new(vec![Secret::new(key)]));
            let mut out = VecDeque::new();
            let err = d.feed(body.as_bytes(), &mut out).unwrap_err();
            assert!(err.message().contains("bad key"), "{}", err.message());
            assert!(!err.message().contains(key), "{}", err.message());
        }
    }

    #[test]
    fn stream_fixtures_decode() {
        for f in [
            "openai/chat_stream_text.sse.txt",
            "openai/chat_stream_tool_call.sse.txt",
            "openai/chat_stream_parallel_tool_calls.sse.txt",
            "openai/chat_stream_length.sse.txt",
            "openai/chat_stream_n3.sse.txt",
            "openai/chat_stream_refusal.sse.txt",
            "openai/chat_stream_real_model.sse.txt",
            "azure/chat_stream_text.sse.txt",
            "openai_compatible/deepseek_reasoner_stream.sse.txt",
        ] {
            let (chunks, r) = decode(&fixture(f));
            assert!(r.is_ok(), "{f}: {r:?}");
            assert!(!chunks.is_empty(), "{f}");
        }
    }

    #[test]
    fn in_band_errors_end_the_stream_with_an_error() {
        for f in [
            "openai_compatible/openrouter_stream_error_in_band.sse.txt",
            "openai_compatible/groq_stream_tool_use_failed.sse.txt",
        ] {
            let (_, r) = decode(&fixture(f));
            let err = r.unwrap_err();
            assert!(!err.message().is_empty(), "{f}");
        }
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let text = fixture("openai/chat_stream_text.sse.txt");
        let cut = &text[..text.len() / 2];
        let (chunks, r) = decode(cut);
        assert!(!chunks.is_empty());
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Connection);
    }
}
