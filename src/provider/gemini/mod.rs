//! Google Gemini: the Gemini API (AI Studio, `gemini/<model>`) and Gemini
//! models on Vertex AI (`vertex_ai/<model>`).
//!
//! Both speak the same `generateContent` bodies; they differ in URL and auth.
//! [`Gemini`] calls `{api_base}/models/{model}:generateContent` (and
//! `:streamGenerateContent?alt=sse`) with the key in the `x-goog-api-key`
//! header, never in the URL; [`VertexAi`] calls
//! `https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent`
//! with an OAuth bearer token from a [`TokenSource`] (see [`auth`]). The model
//! name is percent-encoded into one path segment, so it cannot change the path.
//!
//! ```no_run
//! use tollgate::provider::gemini::{Gemini, GeminiConfig};
//! use tollgate::{ChatRequest, Secret};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), tollgate::Error> {
//! let leaf = Gemini::new(GeminiConfig::new("gemini-2.5-flash").api_key(Secret::new("AIza...")))?;
//! let req = ChatRequest::from_json(br#"{"model":"g","messages":[{"role":"user","content":"Hi"}]}"#)?;
//! let resp = leaf.oneshot(req).await?;
//! println!("{:?}", resp.completion().and_then(|c| c.text()));
//! # Ok(()) }
//! ```
//!
//! ```no_run
//! use std::sync::Arc;
//! use tollgate::provider::gemini::{GoogleAuth, GoogleCredentials, VertexAi, VertexConfig};
//! use tollgate::transport::HttpClient;
//!
//! # fn run() -> Result<(), tollgate::Error> {
//! let creds = GoogleCredentials::from_json(&std::fs::read_to_string("sa.json").unwrap())?;
//! let tokens = GoogleAuth::shared_source(creds, HttpClient::shared());
//! let leaf = VertexAi::new(VertexConfig::new("gemini-2.5-pro", "my-project", "europe-west4", tokens))?;
//! # Ok(()) }
//! ```
//!
//! # Request mapping
//!
//! | OpenAI | Gemini |
//! |---|---|
//! | `system` / `developer` messages (anywhere) | `systemInstruction.parts[].text` |
//! | `user` / `assistant` | `contents[]` with role `user` / `model`; consecutive turns of one role are merged |
//! | text parts | `{"text"}` |
//! | `image_url` data URL | `inlineData {mimeType, data}` |
//! | `image_url` `gs://`, Files API or YouTube URL | `fileData {mimeType, fileUri}` |
//! | `image_url` other `http(s)` URL | refused by default on Gemini, `fileData` on Vertex AI, or fetched and inlined (see [`ImageUrls`]) |
//! | `input_audio`, `file` (data URL or `gs://`/`https://` id) | `inlineData` / `fileData` |
//! | assistant `tool_calls` | `functionCall {name, args}` parts (`id` too on the Gemini API), with the thought signature carried in the call id |
//! | `tool` messages | `functionResponse {name, response}` parts, all results of a turn in one `user` content, in call order; a JSON-object result is sent as is, anything else as `{"result": "<text>"}` |
//! | `tools` (and legacy `functions`) | `tools[0].functionDeclarations[]`, parameters cleaned to Gemini's schema subset (see below) |
//! | a tool without `function`, e.g. `{"googleSearch":{}}`; `web_search_options` | a Gemini tool passed through; `{"googleSearch":{}}` |
//! | `tool_choice` `auto` / `none` / `required` / a function / `allowed_tools` | `toolConfig.functionCallingConfig` `AUTO` / `NONE` / `ANY` / `ANY`+`allowedFunctionNames` |
//! | `temperature`, `top_p`, `top_k` (extra) | `temperature`, `topP`, `topK` |
//! | `max_completion_tokens` / `max_tokens` | `maxOutputTokens` |
//! | `stop`, `n`, `seed` | `stopSequences`, `candidateCount`, `seed` |
//! | `presence_penalty`, `frequency_penalty` | `presencePenalty`, `frequencyPenalty` |
//! | `response_format` `json_object` / `json_schema` | `responseMimeType: application/json` (+ `responseSchema`) |
//! | `logprobs`, `top_logprobs` | `responseLogprobs`, `logprobs` |
//! | `modalities` | `responseModalities` (upper-cased) |
//! | `reasoning_effort` | `thinkingConfig`: `none` → budget 0, `minimal` 128, `low` 1024, `medium` 2048, `high` 4096 (with `includeThoughts`); on Gemini 3 `thinkingLevel` `low`/`high` |
//! | `thinking` `{"type":"enabled","budget_tokens":N}` / `{"type":"disabled"}` | `thinkingConfig {thinkingBudget: N, includeThoughts: true}` / `{thinkingBudget: 0}` |
//! | `user`, `parallel_tool_calls` | accepted, not sent (Gemini has no such fields) |
//!
//! Gemini fields may be set in the request body or in the deployment's
//! `litellm_params` (the request wins): `safety_settings`/`safetySettings`,
//! `cached_content`/`cachedContent`, `tool_config`/`toolConfig` (replaces the
//! `tool_choice` mapping), `thinkingConfig`/`thinking_config` (wins over
//! `thinking` and `reasoning_effort`), `top_k`/`topK`,
//! `response_modalities`/`responseModalities`, `labels` (Vertex AI only), and
//! `generationConfig`/`generation_config`, whose keys are merged into
//! `generationConfig` over the mapped ones. Other unknown fields are not sent.
//! Other OpenAI parameters (`logit_bias`, `store`, `audio`, …) are refused with
//! a 400 `UnsupportedParams` unless `drop_params` is on.
//!
//! # JSON Schema
//!
//! Gemini's `Schema` is an OpenAPI 3.0 subset. Tool parameters and response
//! schemas are converted: types upper-cased; `$ref`s into `$defs`/`definitions`
//! inlined (recursive ones refused); `oneOf` → `anyOf`; `null` types and
//! branches → `nullable`; `const` → one-value `enum`; `allOf` merged. Dropped:
//! `additionalProperties`, `$schema`, `$id`, `$defs`, `strict`, `examples`,
//! `$comment`, `exclusiveMinimum`/`exclusiveMaximum`, `multipleOf`,
//! `uniqueItems`, `not`, `if`/`then`/`else`, `patternProperties`,
//! `readOnly`/`writeOnly`, `deprecated`, non-string `enum`s, and `format`s
//! Gemini rejects (it takes `enum`/`date-time` on strings, `int32`/`int64` on
//! integers, `float`/`double` on numbers).
//!
//! # Response mapping
//!
//! Candidates become choices (by `index`); non-thought text parts are joined
//! into `content`, `thought: true` parts into `reasoning_content`;
//! `functionCall` parts become `tool_calls` with ids `call_<random>` (Gemini
//! gives none) — or Gemini's id when it sends one — followed by
//! `__thought__<thoughtSignature>` when the part has a signature, which is
//! sent back on the next turn (LiteLLM's convention; Gemini 3 requires it).
//! `finishReason`: `STOP` → `stop`, or `tool_calls` when the candidate called
//! a function; `MAX_TOKENS` → `length`; `SAFETY`, `RECITATION`, `BLOCKLIST`,
//! `PROHIBITED_CONTENT`, `SPII`, `IMAGE_*`, `MODEL_ARMOR` → `content_filter`;
//! `MALFORMED_FUNCTION_CALL` and the other failure reasons → a 502 error;
//! anything else → `stop`. A blocked prompt (`promptFeedback.blockReason`, no
//! candidates) is one empty choice with `content_filter`. Usage: prompt =
//! `promptTokenCount + toolUsePromptTokenCount`, completion =
//! `candidatesTokenCount + thoughtsTokenCount` (thoughts are reasoning
//! tokens), `cachedContentTokenCount` → cached tokens. Grounding and citation
//! metadata are kept as `vertex_ai_grounding_metadata` /
//! `vertex_ai_citation_metadata`, as LiteLLM names them.
//!
//! # Streams, errors, embeddings
//!
//! Streams are translated event by event (text and reasoning deltas; a
//! function call as its opening delta plus one arguments delta; the last
//! `usageMetadata` as the final usage chunk; an error inside the stream as an
//! error item; a body that ends before a finish reason as a `Connection`
//! error). Errors follow Google's envelope: a bad API key (a 400 with
//! `API_KEY_INVALID`) is a 401, `RESOURCE_EXHAUSTED` a 429 with
//! `RetryInfo.retryDelay` as the retry hint, `DEADLINE_EXCEEDED` a timeout, a
//! prompt over the context window `ContextWindowExceeded`. Embeddings
//! (`gemini/text-embedding-004`, `gemini/gemini-embedding-001`, …) go through
//! `batchEmbedContents` on the Gemini API and `:predict` on Vertex AI
//! (`vertex_ai/text-embedding-005`, …); `task_type` and `title` may be passed
//! as extra fields, `dimensions` becomes `outputDimensionality`, and
//! `encoding_format: "base64"` is honoured. The Gemini API reports no token
//! counts for embeddings, so their usage is an estimate; Vertex AI's is exact.

pub mod auth;
mod embed;
mod error;
mod media;
mod request;
mod response;
mod schema;
mod stream;
mod vertex;
mod wire;

pub use auth::{
    CLOUD_PLATFORM_SCOPE, CachedToken, FreshToken, GOOGLE_TOKEN_URI, GoogleAuth, GoogleCredentials,
    METADATA_BASE, StaticToken, TokenFetcher, TokenSource,
};
pub(crate) use error::from_response as google_error;
pub use media::{FetchPolicy, ImageUrls, MAX_IMAGES, is_public_address};
pub(crate) use vertex::{BearerToken, authorized, publisher_model_url};
pub use vertex::{DEFAULT_LOCATION, VertexAi, VertexConfig, VertexProtocol};

use super::openai::join_uri;
use super::sse_stream::SseStreamDecoder;
use super::{
    DropParams, HttpProvider, LeafTimeouts, PrepareFuture, Protocol, StreamDecoder, header,
};
use crate::Secret;
use crate::error::{Error, ErrorKind};
use crate::transport::HttpClient;
use crate::types::{
    ChatCompletion, ChatRequest, ChatRequestBody, DeploymentInfo, EmbeddingRequest,
    EmbeddingResponse, Extra,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use media::ImageFetcher;
use std::sync::Arc;
use wire::GenerateContentResponse;

/// The Gemini API's default base URL (LiteLLM's `api_base` for `gemini/`).
pub const GEMINI_API_BASE: &str = "https://generativelanguage.googleapis.com/v1beta";

/// Which API a translation is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// The Gemini API: function call ids are sent back.
    Gemini,
    /// Vertex AI: no function call ids; `labels` allowed.
    Vertex,
}

/// Translation settings shared by the Gemini and Vertex AI protocols.
pub(crate) struct Settings {
    /// The upstream model id.
    pub(crate) model: String,
    /// Deployment defaults (`litellm_params`), as a request body.
    pub(crate) defaults: ChatRequestBody,
    /// Defaults the drop policy removes.
    pub(crate) defaults_dropped: Vec<&'static str>,
    pub(crate) drop: DropParams,
    pub(crate) dialect: Dialect,
    pub(crate) image_urls: ImageUrls,
    pub(crate) provider: Arc<str>,
}

impl Settings {
    pub(crate) fn new(
        model: &str,
        params: &Extra,
        drop: DropParams,
        dialect: Dialect,
        image_urls: ImageUrls,
        provider: Arc<str>,
    ) -> Result<Self, Error> {
        let mut map = serde_json::Map::new();
        for (k, v) in params.iter() {
            let v: serde_json::Value = serde_json::from_str(v.get())
                .map_err(|e| Error::bad_request(format!("invalid parameter `{k}`: {e}")))?;
            map.insert(k.to_owned(), v);
        }
        map.insert("model".into(), serde_json::Value::String(String::new()));
        map.insert("messages".into(), serde_json::Value::Array(Vec::new()));
        let text = serde_json::Value::Object(map).to_string();
        let defaults: ChatRequestBody = crate::types::parse_json(text.as_bytes())?;
        let defaults_dropped = drop.check(&defaults, request::SUPPORTED, &provider)?;
        Ok(Settings {
            model: model.to_owned(),
            defaults,
            defaults_dropped,
            drop,
            dialect,
            image_urls,
            provider,
        })
    }

    /// Translates a chat request into the JSON body.
    pub(crate) fn encode(&self, req: &ChatRequest) -> Result<Vec<u8>, Error> {
        let media = req.extensions.get::<media::FetchedMedia>();
        let body = request::build(self, req.body(), media)?;
        serde_json::to_vec(&body)
            .map_err(|e| Error::internal(format!("could not encode the request: {e}")))
    }

    pub(crate) fn fetcher(&self) -> Option<ImageFetcher> {
        match &self.image_urls {
            ImageUrls::Fetch(policy) => Some(ImageFetcher::new(policy.clone())),
            _ => None,
        }
    }
}

/// Percent-encodes `s` as one URL path segment (only unreserved characters and
/// `@` stay as they are), so a model or project name cannot add segments,
/// a query or a fragment.
pub(crate) fn path_segment(s: &str) -> Result<String, Error> {
    if s.is_empty() || s == "." || s == ".." {
        return Err(
            Error::bad_request(format!("`{s}` is not a valid model name")).with_param("model"),
        );
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

pub(crate) fn parse_completion(body: &[u8], model: &str) -> Result<ChatCompletion, Error> {
    let resp: GenerateContentResponse = crate::types::from_json(body).map_err(|e| {
        Error::new(
            ErrorKind::BadGateway,
            format!("the upstream completion is not valid: {e}"),
        )
    })?;
    if let Some(err) = &resp.error {
        return Err(error::in_band(err.get(), &[]));
    }
    response::completion(&resp, model)
}

pub(crate) fn sse_stream_decoder(
    model: &str,
    req: &ChatRequest,
    secrets: Vec<Secret>,
) -> Box<dyn StreamDecoder> {
    Box::new(SseStreamDecoder::new(stream::StreamTranslator::new(
        model,
        req.shared_body().clone(),
        secrets,
    )))
}

pub(crate) fn post(
    uri: &Uri,
    headers: &HeaderMap,
    body: Vec<u8>,
    stream: bool,
) -> http::Request<Bytes> {
    let mut req = http::Request::new(Bytes::from(body));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri.clone();
    *req.headers_mut() = headers.clone();
    if stream {
        req.headers_mut().insert(
            http::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
    }
    req
}

pub(crate) fn base_headers(extra: &[(HeaderName, HeaderValue)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::USER_AGENT,
        HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
    );
    for (name, value) in extra {
        headers.insert(name.clone(), value.clone());
    }
    headers
}

/// Settings of a Gemini API (AI Studio) deployment.
#[derive(Clone, Debug)]
pub struct GeminiConfig {
    /// The upstream model (`gemini-2.5-flash`, not `gemini/gemini-2.5-flash`).
    pub model: String,
    /// Base URL including the version (`https://generativelanguage.googleapis.com/v1beta`).
    /// As in LiteLLM, calls go to `{api_base}/models/{model}:{method}`; a base
    /// without a path gets `/v1beta`.
    pub api_base: String,
    /// The API key, sent as `x-goog-api-key`.
    pub api_key: Option<Secret>,
    /// Extra headers sent upstream on every call.
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Default body parameters (from `litellm_params`); the request's own values win.
    pub params: Extra,
    /// `drop_params` / `additional_drop_params`.
    pub drop: DropParams,
    /// What to do with `http(s)` image URLs.
    pub image_urls: ImageUrls,
    /// Deadlines.
    pub timeouts: LeafTimeouts,
    /// The deployment this is (defaults describe the model alone).
    pub info: Option<Arc<DeploymentInfo>>,
    /// The HTTP client (defaults to the process-wide one).
    pub client: Option<HttpClient>,
}

impl GeminiConfig {
    /// Settings for `model` at the Gemini API.
    pub fn new(model: impl Into<String>) -> Self {
        GeminiConfig {
            model: model.into(),
            api_base: GEMINI_API_BASE.to_owned(),
            api_key: None,
            extra_headers: Vec::new(),
            params: Extra::new(),
            drop: DropParams::default(),
            image_urls: ImageUrls::Refuse,
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

/// The Gemini API protocol (see the [module docs](self)).
pub struct GeminiProtocol {
    settings: Settings,
    /// The versioned base URL, for a wildcard deployment's per-call model.
    base: String,
    generate_uri: Uri,
    stream_uri: Uri,
    embed_uri: Uri,
    model_path: String,
    headers: HeaderMap,
    params: Extra,
    secrets: Vec<Secret>,
    fetcher: Option<ImageFetcher>,
}

impl std::fmt::Debug for GeminiProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiProtocol")
            .field("model", &self.settings.model)
            .field("generate_uri", &self.generate_uri)
            .finish_non_exhaustive()
    }
}

/// A Gemini API leaf.
pub type Gemini = HttpProvider<GeminiProtocol>;

impl HttpProvider<GeminiProtocol> {
    /// Builds the leaf. Fails on an invalid base URL, model name or parameter.
    pub fn new(config: GeminiConfig) -> Result<Self, Error> {
        let info = config.info.clone().unwrap_or_else(|| {
            Arc::new(DeploymentInfo {
                id: Arc::from(config.model.as_str()),
                model_group: Arc::from(config.model.as_str()),
                model: Arc::from(format!("gemini/{}", config.model)),
                provider: Arc::from("gemini"),
                api_base: Some(Arc::from(config.api_base.as_str())),
            })
        });
        let client = config.client.clone().unwrap_or_else(HttpClient::shared);
        let timeouts = config.timeouts;
        Ok(HttpProvider::with_protocol(
            GeminiProtocol::new(config)?,
            client,
            info,
            timeouts,
        ))
    }
}

/// `api_base` with `/v1beta` added when it has no path.
fn versioned_base(base: &str) -> String {
    let base = base.trim_end_matches('/');
    match base.parse::<Uri>() {
        Ok(u) if u.path().is_empty() || u.path() == "/" => format!("{base}/v1beta"),
        _ => base.to_owned(),
    }
}

impl GeminiProtocol {
    /// Builds the protocol from settings.
    pub fn new(config: GeminiConfig) -> Result<Self, Error> {
        let model = config
            .model
            .strip_prefix("models/")
            .unwrap_or(&config.model)
            .to_owned();
        let segment = path_segment(&model)?;
        let base = versioned_base(&config.api_base);
        let mut headers = base_headers(&config.extra_headers);
        let mut secrets = Vec::new();
        if let Some(key) = config.api_key.as_ref().filter(|k| !k.is_empty()) {
            let mut v = HeaderValue::from_str(key.expose())
                .map_err(|_| Error::bad_request("the API key contains invalid characters"))?;
            v.set_sensitive(true);
            headers.insert(header("x-goog-api-key"), v);
            secrets.push(key.clone());
        }
        let settings = Settings::new(
            &model,
            &config.params,
            config.drop,
            Dialect::Gemini,
            config.image_urls,
            Arc::from("gemini"),
        )?;
        Ok(GeminiProtocol {
            generate_uri: join_uri(&base, &format!("/models/{segment}:generateContent"))?,
            stream_uri: join_uri(
                &base,
                &format!("/models/{segment}:streamGenerateContent?alt=sse"),
            )?,
            embed_uri: join_uri(&base, &format!("/models/{segment}:batchEmbedContents"))?,
            model_path: format!("models/{model}"),
            base,
            fetcher: settings.fetcher(),
            settings,
            headers,
            params: config.params,
            secrets,
        })
    }

    fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(Secret::expose).collect()
    }
}

/// Fetches remote images into the request's extensions when the policy says so.
pub(crate) fn prepare_media<'a>(
    fetcher: Option<&'a ImageFetcher>,
    req: &'a mut ChatRequest,
) -> Option<PrepareFuture<'a>> {
    let fetcher = fetcher?;
    if media::remote_image_urls(req.body()).is_empty() {
        return None;
    }
    Some(Box::pin(async move {
        let fetched = fetcher.fetch_all(req.body()).await?;
        req.extensions.insert(fetched);
        Ok(())
    }))
}

impl Protocol for GeminiProtocol {
    fn prepare_chat<'a>(&'a self, req: &'a mut ChatRequest) -> Option<PrepareFuture<'a>> {
        prepare_media(self.fetcher.as_ref(), req)
    }

    fn chat_request(&self, req: &ChatRequest) -> Result<http::Request<Bytes>, Error> {
        let stream = req.is_stream();
        let body = self.settings.encode(req)?;
        // A wildcard deployment (`gemini/*`) calls the model the client named,
        // always as one percent-encoded path segment.
        let wildcard = req
            .extensions
            .get::<crate::context::UpstreamModel>()
            .map(|m| m.model())
            .map(|m| m.strip_prefix("models/").unwrap_or(m))
            .filter(|m| *m != self.model_path.trim_start_matches("models/"));
        let per_call;
        let uri = match (wildcard, stream) {
            (Some(model), _) => {
                let method = if stream {
                    "streamGenerateContent?alt=sse"
                } else {
                    "generateContent"
                };
                per_call = join_uri(
                    &self.base,
                    &format!("/models/{}:{method}", path_segment(model)?),
                )?;
                &per_call
            }
            (None, true) => &self.stream_uri,
            (None, false) => &self.generate_uri,
        };
        Ok(post(uri, &self.headers, body, stream))
    }

    fn parse_completion(&self, _req: &ChatRequest, body: &[u8]) -> Result<ChatCompletion, Error> {
        parse_completion(body, &self.settings.model)
    }

    fn stream_decoder(&self, req: &ChatRequest) -> Box<dyn StreamDecoder> {
        sse_stream_decoder(&self.settings.model, req, self.secrets.clone())
    }

    fn map_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        error::from_response(status, headers, body, &self.secrets())
    }

    fn embedding_request(&self, req: &EmbeddingRequest) -> Result<http::Request<Bytes>, Error> {
        let body = embed::body(&self.model_path, req.body(), &self.params)?;
        Ok(post(&self.embed_uri, &self.headers, body, false))
    }

    fn parse_embeddings(
        &self,
        req: &EmbeddingRequest,
        body: &[u8],
    ) -> Result<EmbeddingResponse, Error> {
        embed::parse(req.body(), body, &self.settings.model)
    }
}

#[cfg(test)]
mod tests;
