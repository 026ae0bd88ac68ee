//! Gemini models on Vertex AI: the same bodies, a project URL and OAuth.

use super::auth::TokenSource;
use super::media::{ImageFetcher, ImageUrls};
use super::sse_stream_decoder;
use super::{Dialect, Settings, base_headers, parse_completion, path_segment, post, prepare_media};
use crate::Secret;
use crate::error::{Error, ErrorKind};
use crate::provider::openai::join_uri;
use crate::provider::{
    DropParams, HttpProvider, LeafTimeouts, PrepareFuture, Protocol, StreamDecoder,
};
use crate::transport::HttpClient;
use crate::types::{
    ChatCompletion, ChatRequest, DeploymentInfo, EmbeddingRequest, EmbeddingResponse, Extra,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use std::sync::Arc;

/// The default Vertex AI location (LiteLLM's).
pub const DEFAULT_LOCATION: &str = "us-central1";

/// Settings of a Vertex AI deployment of a Gemini model.
#[derive(Clone)]
pub struct VertexConfig {
    /// The model (`gemini-2.5-pro`, not `vertex_ai/gemini-2.5-pro`).
    pub model: String,
    /// The Google Cloud project (needed unless `api_base` is set).
    pub project: Option<String>,
    /// The location (`us-central1`, `europe-west4`, `global`).
    pub location: String,
    /// LiteLLM's `api_base` for Vertex AI: the whole URL up to the method, to
    /// which `:generateContent` / `:streamGenerateContent?alt=sse` is appended
    /// (for proxies such as Cloudflare AI Gateway).
    pub api_base: Option<String>,
    /// Where access tokens come from.
    pub tokens: Arc<dyn TokenSource>,
    /// Extra headers sent upstream on every call.
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Default body parameters (from `litellm_params`); the request's own values win.
    pub params: Extra,
    /// `drop_params` / `additional_drop_params`.
    pub drop: DropParams,
    /// What to do with `http(s)` image URLs (default: pass them to Vertex AI, which reads public URLs).
    pub image_urls: ImageUrls,
    /// Deadlines.
    pub timeouts: LeafTimeouts,
    /// The deployment this is (defaults describe the model alone).
    pub info: Option<Arc<DeploymentInfo>>,
    /// The HTTP client (defaults to the process-wide one).
    pub client: Option<HttpClient>,
}

impl std::fmt::Debug for VertexConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VertexConfig")
            .field("model", &self.model)
            .field("project", &self.project)
            .field("location", &self.location)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

impl VertexConfig {
    /// Settings for `model` in `project` at `location`, authenticated by `tokens`.
    pub fn new(
        model: impl Into<String>,
        project: impl Into<String>,
        location: impl Into<String>,
        tokens: Arc<dyn TokenSource>,
    ) -> Self {
        VertexConfig {
            model: model.into(),
            project: Some(project.into()),
            location: location.into(),
            api_base: None,
            tokens,
            extra_headers: Vec::new(),
            params: Extra::new(),
            drop: DropParams::default(),
            image_urls: ImageUrls::PassUri,
            timeouts: LeafTimeouts::default(),
            info: None,
            client: None,
        }
    }

    /// The URL the calls go to, up to the `:method` suffix.
    pub fn model_url(&self) -> Result<String, Error> {
        publisher_model_url(
            self.api_base.as_deref(),
            self.project.as_deref(),
            &self.location,
            "google",
            &self.model,
        )
    }
}

/// The Vertex AI URL of `publisher`'s `model` (up to the `:method` suffix):
/// `api_base` as given when set, else the regional (or, for `global`, the
/// global) host with the project and location in the path. Fails on a bad
/// location or a missing project.
pub(crate) fn publisher_model_url(
    api_base: Option<&str>,
    project: Option<&str>,
    location: &str,
    publisher: &str,
    model: &str,
) -> Result<String, Error> {
    if let Some(base) = api_base {
        return Ok(base.trim_end_matches('/').to_owned());
    }
    if location.is_empty()
        || location.len() > 64
        || !location
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(Error::bad_request(format!(
            "`{}` is not a Vertex AI location",
            location.chars().take(64).collect::<String>()
        )));
    }
    let Some(project) = project.filter(|p| !p.is_empty()) else {
        return Err(Error::bad_request(
            "Vertex AI needs a project (vertex_project, VERTEXAI_PROJECT, or the credentials' project_id)",
        ));
    };
    let host = if location == "global" {
        "https://aiplatform.googleapis.com".to_owned()
    } else {
        format!("https://{location}-aiplatform.googleapis.com")
    };
    Ok(format!(
        "{host}/v1/projects/{}/locations/{location}/publishers/{publisher}/models/{}",
        path_segment(project)?,
        path_segment(model)?
    ))
}

/// The access token for one call, put into the request's extensions by `prepare_chat`.
#[derive(Clone)]
pub(crate) struct BearerToken(pub(crate) Secret);

/// Adds the call's bearer token (from `prepare_*`) to an upstream request.
pub(crate) fn authorized(
    mut http: http::Request<Bytes>,
    extensions: &http::Extensions,
) -> Result<http::Request<Bytes>, Error> {
    let Some(BearerToken(token)) = extensions.get::<BearerToken>() else {
        return Err(Error::new(
            ErrorKind::Internal,
            "no Vertex AI access token: the call was not prepared",
        ));
    };
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
        Error::new(
            ErrorKind::Authentication,
            "the access token is not a valid header value",
        )
    })?;
    v.set_sensitive(true);
    http.headers_mut().insert(http::header::AUTHORIZATION, v);
    Ok(http)
}

/// The Vertex AI protocol for Gemini models (and text-embedding models).
pub struct VertexProtocol {
    settings: Settings,
    generate_uri: Uri,
    stream_uri: Uri,
    predict_uri: Uri,
    params: Extra,
    headers: HeaderMap,
    tokens: Arc<dyn TokenSource>,
    fetcher: Option<ImageFetcher>,
}

impl std::fmt::Debug for VertexProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VertexProtocol")
            .field("model", &self.settings.model)
            .field("generate_uri", &self.generate_uri)
            .finish_non_exhaustive()
    }
}

/// A Vertex AI leaf (Gemini models).
pub type VertexAi = HttpProvider<VertexProtocol>;

impl HttpProvider<VertexProtocol> {
    /// Builds the leaf. Fails on a missing project, a bad location, URL or parameter.
    pub fn new(config: VertexConfig) -> Result<Self, Error> {
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
            VertexProtocol::new(config)?,
            client,
            info,
            timeouts,
        ))
    }
}

impl VertexProtocol {
    /// Builds the protocol from settings.
    pub fn new(config: VertexConfig) -> Result<Self, Error> {
        let url = config.model_url()?;
        let settings = Settings::new(
            &config.model,
            &config.params,
            config.drop,
            Dialect::Vertex,
            config.image_urls,
            Arc::from("vertex_ai"),
        )?;
        Ok(VertexProtocol {
            generate_uri: join_uri(&url, ":generateContent")?,
            stream_uri: join_uri(&url, ":streamGenerateContent?alt=sse")?,
            predict_uri: join_uri(&url, ":predict")?,
            params: config.params.clone(),
            headers: base_headers(&config.extra_headers),
            fetcher: settings.fetcher(),
            settings,
            tokens: config.tokens,
        })
    }

    /// The URL of non-streamed calls.
    pub fn generate_uri(&self) -> &Uri {
        &self.generate_uri
    }

    /// The URL of streamed calls.
    pub fn stream_uri(&self) -> &Uri {
        &self.stream_uri
    }
}

impl Protocol for VertexProtocol {
    fn prepare_chat<'a>(&'a self, req: &'a mut ChatRequest) -> Option<PrepareFuture<'a>> {
        Some(Box::pin(async move {
            let token = self.tokens.token().await?;
            req.extensions.insert(BearerToken(token));
            if let Some(fetch) = prepare_media(self.fetcher.as_ref(), req) {
                fetch.await?;
            }
            Ok(())
        }))
    }

    fn chat_request(&self, req: &ChatRequest) -> Result<http::Request<Bytes>, Error> {
        let stream = req.is_stream();
        let body = self.settings.encode(req)?;
        let uri = if stream {
            &self.stream_uri
        } else {
            &self.generate_uri
        };
        authorized(post(uri, &self.headers, body, stream), &req.extensions)
    }

    fn prepare_embedding<'a>(&'a self, req: &'a mut EmbeddingRequest) -> Option<PrepareFuture<'a>> {
        Some(Box::pin(async move {
            let token = self.tokens.token().await?;
            req.extensions.insert(BearerToken(token));
            Ok(())
        }))
    }

    fn embedding_request(&self, req: &EmbeddingRequest) -> Result<http::Request<Bytes>, Error> {
        let body = super::embed::vertex_body(req.body(), &self.params)?;
        authorized(
            post(&self.predict_uri, &self.headers, body, false),
            &req.extensions,
        )
    }

    fn parse_embeddings(
        &self,
        req: &EmbeddingRequest,
        body: &[u8],
    ) -> Result<EmbeddingResponse, Error> {
        super::embed::vertex_parse(req.body(), body, &self.settings.model)
    }

    fn parse_completion(&self, _req: &ChatRequest, body: &[u8]) -> Result<ChatCompletion, Error> {
        parse_completion(body, &self.settings.model)
    }

    fn stream_decoder(&self, req: &ChatRequest) -> Box<dyn StreamDecoder> {
        sse_stream_decoder(&self.settings.model, req, Vec::new())
    }

    fn map_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        super::error::from_response(status, headers, body, &[])
    }
}
