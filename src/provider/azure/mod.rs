//! Azure OpenAI: OpenAI models served from an Azure resource.
//!
//! `azure/<deployment>` calls
//! `POST {api_base}/openai/deployments/{deployment}/chat/completions?api-version={api_version}`
//! (and `/embeddings`), where `api_base` is the resource URL
//! (`https://my-resource.openai.azure.com`, LiteLLM's `api_base`/`AZURE_API_BASE`).
//! The deployment is percent-encoded into a single path segment and `.`/`..`
//! are refused, so a deployment name — also one filled in from a client's
//! model for a wildcard deployment — can never change the path.
//!
//! The API version defaults to [`DEFAULT_API_VERSION`], the latest dated GA
//! version. `api_version: v1` (or `latest`, or `preview`) selects the newer
//! "v1" API instead: `POST {api_base}/openai/v1/chat/completions` with the
//! deployment as `model` in the body (and `?api-version=preview` for
//! `preview`). An `api_base` that already ends in `/openai/deployments/<name>`
//! or `/openai/v1` is used as given.
//!
//! Bodies are OpenAI's (see [`crate::provider::openai`]): the request is
//! forwarded with unknown fields, and streams ask for usage when the API
//! version supports `stream_options` (2024-09-01 and later, and v1). Azure's
//! additions pass through: `prompt_filter_results` and per-choice
//! `content_filter_results`. Its first stream event — `choices: []`, empty id
//! and model, only `prompt_filter_results` — is not forwarded as a chunk; its
//! filter results ride on the next chunk instead, so every chunk carries the
//! same id, model and creation time.
//!
//! Auth ([`AzureAuth`]): an `api-key` header, a static Entra ID token sent as
//! `Authorization: Bearer`, or Entra ID client credentials, exchanged for
//! tokens that are cached and refreshed before they expire ([`entra`]).
//!
//! ```no_run
//! use tollgate::provider::azure::{Azure, AzureAuth, AzureConfig};
//! use tollgate::{ChatRequest, Secret};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), tollgate::Error> {
//! let leaf = Azure::new(
//!     AzureConfig::new("gpt-4o", "https://my-resource.openai.azure.com")
//!         .auth(AzureAuth::ApiKey(Secret::new("0123456789abcdef"))),
//! )?;
//! let req = ChatRequest::from_json(br#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}"#)?;
//! let resp = leaf.oneshot(req).await?;
//! println!("{:?}", resp.completion().and_then(|c| c.text()));
//! # Ok(()) }
//! ```

pub mod entra;
mod error;
pub mod stream;

pub use entra::{EntraCredentials, EntraTokenSource};
pub use error::error_from_response;

use super::sse_stream::SseStreamDecoder;
use super::{BoxFuture, DropParams, HttpProvider, LeafTimeouts, Protocol, StreamDecoder, header};
use crate::Secret;
use crate::error::Error;
use crate::transport::HttpClient;
use crate::types::{
    ChatCompletion, ChatRequest, ChatResponse, DeploymentInfo, EmbeddingOutput, EmbeddingRequest,
    EmbeddingResponse, Extra,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use std::sync::Arc;
use std::task::{Context, Poll};

/// The API version used when none is configured: the latest dated GA version.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// How requests are authenticated.
#[derive(Clone, Debug, Default)]
pub enum AzureAuth {
    /// An `api-key` header (LiteLLM's `api_key`, `AZURE_API_KEY`).
    ApiKey(Secret),
    /// A static Entra ID access token, sent as `Authorization: Bearer` (`azure_ad_token`).
    AdToken(Secret),
    /// Entra ID client credentials (`tenant_id`, `client_id`, `client_secret`).
    Entra(EntraCredentials),
    /// Nothing (a local endpoint that needs no auth).
    #[default]
    None,
}

/// Settings of an Azure OpenAI deployment.
#[derive(Clone, Debug)]
pub struct AzureConfig {
    /// The deployment name (without the `azure/` prefix).
    pub deployment: String,
    /// The resource URL (`https://my-resource.openai.azure.com`), or a full
    /// `…/openai/deployments/<name>` or `…/openai/v1` base.
    pub api_base: String,
    /// `api-version` (`2024-10-21`), or `v1`/`latest`/`preview` for the v1 API.
    pub api_version: String,
    /// Credentials.
    pub auth: AzureAuth,
    /// Ask for usage on streams. `None` decides from the API version.
    pub stream_usage: Option<bool>,
    /// Extra headers sent upstream on every call.
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Default body parameters (from `litellm_params`); the request's own values win.
    pub params: Extra,
    /// `additional_drop_params` (Azure supports every OpenAI parameter).
    pub drop: DropParams,
    /// Deadlines.
    pub timeouts: LeafTimeouts,
    /// The deployment this is.
    pub info: Option<Arc<DeploymentInfo>>,
    /// The HTTP client (defaults to the process-wide one).
    pub client: Option<HttpClient>,
}

impl AzureConfig {
    /// Settings for `deployment` at the resource `api_base`, default API version, no credentials.
    pub fn new(deployment: impl Into<String>, api_base: impl Into<String>) -> Self {
        AzureConfig {
            deployment: deployment.into(),
            api_base: api_base.into(),
            api_version: DEFAULT_API_VERSION.to_owned(),
            auth: AzureAuth::None,
            stream_usage: None,
            extra_headers: Vec::new(),
            params: Extra::new(),
            drop: DropParams::default(),
            timeouts: LeafTimeouts::default(),
            info: None,
            client: None,
        }
    }

    /// Sets the credentials.
    pub fn auth(mut self, auth: AzureAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the API version.
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }
}

/// Which URL scheme the resource is addressed with.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint {
    /// `{resource}/openai/deployments/{deployment}/…?api-version=…`
    Deployments { resource: String, query: String },
    /// A base that already names the deployment: `{base}/…?api-version=…`.
    Fixed { base: String, query: String },
    /// `{base}/…` where base ends in `/openai/v1`; the deployment goes in the body.
    V1 { base: String, query: String },
}

/// Whether an API version selects the v1 API.
fn is_v1(version: &str) -> bool {
    matches!(version, "v1" | "latest" | "preview")
}

/// Whether `stream_options` is accepted by this API version.
///
/// ```
/// use tollgate::provider::azure::supports_stream_options;
///
/// assert!(supports_stream_options("2024-10-21"));
/// assert!(supports_stream_options("2024-09-01-preview"));
/// assert!(supports_stream_options("v1"));
/// assert!(!supports_stream_options("2024-06-01"));
/// assert!(!supports_stream_options("2023-05-15"));
/// ```
pub fn supports_stream_options(version: &str) -> bool {
    if is_v1(version) {
        return true;
    }
    match version.get(..10) {
        Some(date) if date.bytes().filter(|b| *b == b'-').count() == 2 => date >= "2024-09-01",
        _ => true,
    }
}

/// Percent-encodes a deployment name into one path segment, refusing names
/// that are empty or made of dots (`.`/`..` would climb the path).
///
/// ```
/// use tollgate::provider::azure::deployment_segment;
///
/// assert_eq!(deployment_segment("gpt-4o").unwrap(), "gpt-4o");
/// assert_eq!(deployment_segment("my dep/../x?y").unwrap(), "my%20dep%2F..%2Fx%3Fy");
/// assert!(deployment_segment("..").is_err());
/// assert!(deployment_segment("").is_err());
/// ```
pub fn deployment_segment(deployment: &str) -> Result<String, Error> {
    if deployment.is_empty() || deployment.bytes().all(|b| b == b'.') {
        return Err(Error::bad_request(format!(
            "`{}` is not a valid Azure deployment name",
            deployment.chars().take(100).collect::<String>()
        ))
        .with_param("model"));
    }
    Ok(crate::provider::bedrock::sigv4::uri_encode(
        deployment, false,
    ))
}

/// The base URL requests go to for `api_base` and `api_version` (the
/// resource URL, or the `…/openai/v1` base of the v1 API), without credentials.
///
/// ```
/// use tollgate::provider::azure::resolved_base;
///
/// assert_eq!(resolved_base("https://r.openai.azure.com/", "2024-10-21").unwrap(), "https://r.openai.azure.com");
/// assert_eq!(resolved_base("https://r.openai.azure.com/openai", "v1").unwrap(), "https://r.openai.azure.com/openai/v1");
/// ```
pub fn resolved_base(api_base: &str, api_version: &str) -> Result<String, Error> {
    Endpoint::new(api_base, api_version).map(|e| e.display().to_owned())
}

impl Endpoint {
    fn new(api_base: &str, api_version: &str) -> Result<Self, Error> {
        let version_ok = !api_version.is_empty()
            && api_version.len() <= 64
            && api_version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !version_ok {
            return Err(Error::bad_request(
                "the Azure api_version must look like `2024-10-21` or `v1`",
            ));
        }
        let base = api_base.trim().trim_end_matches('/');
        // Validates the scheme and host once.
        let parsed = super::openai::join_uri(base, "")?;
        if parsed.query().is_some() || base.contains('?') || base.contains('#') {
            return Err(Error::bad_request(
                "the Azure api_base must not have a query string (set api_version instead)",
            ));
        }
        let query = if is_v1(api_version) {
            if api_version == "preview" {
                "?api-version=preview".to_owned()
            } else {
                String::new()
            }
        } else {
            format!("?api-version={api_version}")
        };
        if base.contains("/openai/deployments/") {
            return Ok(Endpoint::Fixed {
                base: base.to_owned(),
                query,
            });
        }
        if base.ends_with("/openai/v1") {
            return Ok(Endpoint::V1 {
                base: base.to_owned(),
                query,
            });
        }
        let resource = base.strip_suffix("/openai").unwrap_or(base).to_owned();
        if is_v1(api_version) {
            return Ok(Endpoint::V1 {
                base: format!("{resource}/openai/v1"),
                query,
            });
        }
        Ok(Endpoint::Deployments { resource, query })
    }

    /// The URL of `operation` (`chat/completions`, `embeddings`) for `deployment`.
    fn uri(&self, deployment: &str, operation: &str) -> Result<Uri, Error> {
        match self {
            Endpoint::Deployments { resource, query } => {
                let segment = deployment_segment(deployment)?;
                super::openai::join_uri(
                    resource,
                    &format!("/openai/deployments/{segment}/{operation}{query}"),
                )
            }
            Endpoint::Fixed { base, query } | Endpoint::V1 { base, query } => {
                deployment_segment(deployment)?;
                super::openai::join_uri(base, &format!("/{operation}{query}"))
            }
        }
    }

    /// The model list, for health checks.
    fn models_uri(&self) -> Option<Uri> {
        match self {
            Endpoint::Deployments { resource, query } => {
                super::openai::join_uri(resource, &format!("/openai/models{query}")).ok()
            }
            Endpoint::V1 { base, query } => {
                super::openai::join_uri(base, &format!("/models{query}")).ok()
            }
            Endpoint::Fixed { .. } => None,
        }
    }

    /// The base shown in deployment descriptions.
    fn display(&self) -> &str {
        match self {
            Endpoint::Deployments { resource, .. } => resource,
            Endpoint::Fixed { base, .. } | Endpoint::V1 { base, .. } => base,
        }
    }
}

/// The Entra ID token for one call, put in the request extensions by [`Azure`].
#[derive(Clone)]
struct EntraBearer(Secret);

/// The Azure OpenAI protocol (see the [module docs](self)).
pub struct AzureProtocol {
    deployment: String,
    endpoint: Endpoint,
    chat_uri: Uri,
    embeddings_uri: Uri,
    headers: HeaderMap,
    auth: AzureAuth,
    tokens: Option<Arc<EntraTokenSource>>,
    stream_usage: bool,
    params: Extra,
    drop: DropParams,
    secrets: Vec<Secret>,
}

impl std::fmt::Debug for AzureProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureProtocol")
            .field("deployment", &self.deployment)
            .field("chat_uri", &self.chat_uri)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

fn sensitive(value: String, what: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(&value)
        .map_err(|_| Error::bad_request(format!("the {what} contains invalid characters")))?;
    v.set_sensitive(true);
    Ok(v)
}

impl AzureProtocol {
    /// Builds the protocol. Fails on an invalid base, version, deployment or credential.
    pub fn new(config: AzureConfig, client: &HttpClient) -> Result<Self, Error> {
        let endpoint = Endpoint::new(&config.api_base, &config.api_version)?;
        let chat_uri = endpoint.uri(&config.deployment, "chat/completions")?;
        let embeddings_uri = endpoint.uri(&config.deployment, "embeddings")?;
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
        );
        for (name, value) in &config.extra_headers {
            headers.insert(name.clone(), value.clone());
        }
        let mut secrets = Vec::new();
        let mut tokens = None;
        match &config.auth {
            AzureAuth::ApiKey(key) if !key.is_empty() => {
                headers.insert(
                    header("api-key"),
                    sensitive(key.expose().to_owned(), "Azure API key")?,
                );
                secrets.push(key.clone());
            }
            AzureAuth::AdToken(token) if !token.is_empty() => {
                headers.insert(
                    http::header::AUTHORIZATION,
                    sensitive(format!("Bearer {}", token.expose()), "Azure AD token")?,
                );
                secrets.push(token.clone());
            }
            AzureAuth::Entra(creds) => {
                tokens = Some(Arc::new(EntraTokenSource::new(creds, client.clone())?));
                secrets.push(creds.client_secret.clone());
            }
            _ => {}
        }
        Ok(AzureProtocol {
            stream_usage: config
                .stream_usage
                .unwrap_or_else(|| supports_stream_options(&config.api_version)),
            deployment: config.deployment,
            endpoint,
            chat_uri,
            embeddings_uri,
            headers,
            auth: config.auth,
            tokens,
            params: config.params,
            drop: config.drop,
            secrets,
        })
    }

    /// The configured deployment name.
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// The chat URL of the configured deployment.
    pub fn chat_uri(&self) -> &Uri {
        &self.chat_uri
    }

    /// The Entra ID token source, with client-credentials auth.
    pub fn token_source(&self) -> Option<&Arc<EntraTokenSource>> {
        self.tokens.as_ref()
    }

    fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(Secret::expose).collect()
    }

    /// The deployment for this call: the wildcard's, or the configured one.
    fn deployment_for<'a>(&'a self, ext: &'a http::Extensions) -> &'a str {
        ext.get::<crate::context::UpstreamModel>()
            .map_or(self.deployment.as_str(), |m| m.model())
    }

    fn post(
        &self,
        ext: &http::Extensions,
        operation: &str,
        fixed: &Uri,
        body: Vec<u8>,
        stream: bool,
    ) -> Result<http::Request<Bytes>, Error> {
        let deployment = self.deployment_for(ext);
        let uri = if deployment == self.deployment {
            fixed.clone()
        } else {
            self.endpoint.uri(deployment, operation)?
        };
        let mut req = http::Request::new(Bytes::from(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        *req.headers_mut() = self.headers.clone();
        if stream {
            req.headers_mut().insert(
                http::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        self.authorize(req.headers_mut(), ext)?;
        Ok(req)
    }

    fn authorize(&self, headers: &mut HeaderMap, ext: &http::Extensions) -> Result<(), Error> {
        if self.tokens.is_some() {
            let Some(EntraBearer(token)) = ext.get::<EntraBearer>() else {
                return Err(Error::internal(
                    "no Entra ID token for this Azure call (call the `Azure` leaf, not its protocol)",
                ));
            };
            headers.insert(
                http::header::AUTHORIZATION,
                sensitive(format!("Bearer {}", token.expose()), "Entra ID token")?,
            );
        }
        Ok(())
    }
}

impl Protocol for AzureProtocol {
    fn chat_request(&self, req: &ChatRequest) -> Result<http::Request<Bytes>, Error> {
        let model = self.deployment_for(&req.extensions);
        let body =
            super::openai::chat_body(req, model, self.stream_usage, &self.drop, &self.params)?;
        self.post(
            &req.extensions,
            "chat/completions",
            &self.chat_uri,
            body,
            req.is_stream(),
        )
    }

    fn parse_completion(&self, _req: &ChatRequest, body: &[u8]) -> Result<ChatCompletion, Error> {
        crate::types::from_json(body)
            .map_err(|e| super::openai::bad_upstream_json("completion", &e))
    }

    fn stream_decoder(&self, _req: &ChatRequest) -> Box<dyn StreamDecoder> {
        Box::new(SseStreamDecoder::new(stream::AzureChunkTranslator::new(
            self.secrets.clone(),
        )))
    }

    fn map_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        error_from_response(status, headers, body, &self.secrets())
    }

    fn health_request(&self) -> Option<http::Request<Bytes>> {
        let mut req = http::Request::new(Bytes::new());
        *req.uri_mut() = self.endpoint.models_uri()?;
        let mut headers = self.headers.clone();
        headers.remove(http::header::CONTENT_TYPE);
        if let Some(tokens) = &self.tokens {
            let token = tokens.current()?;
            let mut ext = http::Extensions::new();
            ext.insert(EntraBearer(token));
            self.authorize(&mut headers, &ext).ok()?;
        }
        *req.headers_mut() = headers;
        Some(req)
    }

    fn embedding_request(&self, req: &EmbeddingRequest) -> Result<http::Request<Bytes>, Error> {
        let model = self.deployment_for(&req.extensions);
        let body = super::openai::embedding_body(req, model, &self.params)?;
        self.post(
            &req.extensions,
            "embeddings",
            &self.embeddings_uri,
            body,
            false,
        )
    }

    fn parse_embeddings(
        &self,
        _req: &EmbeddingRequest,
        body: &[u8],
    ) -> Result<EmbeddingResponse, Error> {
        serde_json::from_slice(body)
            .map_err(|e| super::openai::bad_upstream_json("embeddings answer", &e))
    }
}

/// An Azure OpenAI leaf: [`HttpProvider`]`<`[`AzureProtocol`]`>` plus, with
/// Entra ID client credentials, the token source it fetches tokens from
/// before each call (the protocol itself is synchronous).
///
/// `Service<ChatRequest>` and `Service<EmbeddingRequest>`; cloning is cheap.
#[derive(Clone, Debug)]
pub struct Azure {
    http: HttpProvider<AzureProtocol>,
    tokens: Option<Arc<EntraTokenSource>>,
}

impl Azure {
    /// Builds the leaf. Fails on an invalid base, version, deployment or credential.
    pub fn new(config: AzureConfig) -> Result<Self, Error> {
        let client = config.client.clone().unwrap_or_else(HttpClient::shared);
        let protocol = AzureProtocol::new(config.clone(), &client)?;
        let info = config.info.clone().unwrap_or_else(|| {
            Arc::new(DeploymentInfo {
                id: Arc::from(config.deployment.as_str()),
                model_group: Arc::from(config.deployment.as_str()),
                model: Arc::from(format!("azure/{}", config.deployment)),
                provider: Arc::from("azure"),
                api_base: Some(Arc::from(protocol.endpoint.display())),
            })
        });
        let tokens = protocol.tokens.clone();
        Ok(Azure {
            http: HttpProvider::with_protocol(protocol, client, info, config.timeouts),
            tokens,
        })
    }

    /// The deployment this leaf serves.
    pub fn info(&self) -> &Arc<DeploymentInfo> {
        self.http.info()
    }

    /// The protocol.
    pub fn protocol(&self) -> &AzureProtocol {
        self.http.protocol()
    }

    /// The engine underneath (its calls need a token in the extensions with Entra ID auth).
    pub fn http(&self) -> &HttpProvider<AzureProtocol> {
        &self.http
    }

    fn tag(&self, err: Error) -> Error {
        let info = self.http.info();
        err.with_provider(info.provider.clone())
            .with_deployment(info.id.clone())
    }

    async fn bearer(&self, ext: &mut http::Extensions, mock: bool) -> Result<(), Error> {
        if let (Some(tokens), false) = (&self.tokens, mock) {
            let fetch = tokens.token();
            let fetched = match ext.get::<crate::context::Deadline>() {
                Some(d) => tokio::time::timeout_at(d.0, fetch)
                    .await
                    .unwrap_or_else(|_| Err(Error::timeout(crate::error::TimeoutKind::Total))),
                None => fetch.await,
            };
            let token = fetched.map_err(|e| self.tag(e))?;
            ext.insert(EntraBearer(token));
        }
        Ok(())
    }

    /// Serves a chat request.
    pub fn chat(&self, mut req: ChatRequest) -> BoxFuture<Result<ChatResponse, Error>> {
        let this = self.clone();
        Box::pin(async move {
            let mock = req.mock_response.is_some();
            this.bearer(&mut req.extensions, mock).await?;
            this.http.chat(req).await
        })
    }

    /// Serves an embeddings request.
    pub fn embed(&self, mut req: EmbeddingRequest) -> BoxFuture<Result<EmbeddingOutput, Error>> {
        let this = self.clone();
        Box::pin(async move {
            let mock = req.mock_response.is_some();
            this.bearer(&mut req.extensions, mock).await?;
            this.http.embed(req).await
        })
    }

    /// Checks the resource answers its model list (fetching a token first with Entra ID).
    pub fn health_check(&self) -> BoxFuture<Result<(), Error>> {
        let this = self.clone();
        Box::pin(async move {
            let mut ext = http::Extensions::new();
            this.bearer(&mut ext, false).await?;
            this.http.health_check().await
        })
    }
}

impl tower::Service<ChatRequest> for Azure {
    type Response = ChatResponse;
    type Error = Error;
    type Future = BoxFuture<Result<ChatResponse, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        self.chat(req)
    }
}

impl tower::Service<EmbeddingRequest> for Azure {
    type Response = EmbeddingOutput;
    type Error = Error;
    type Future = BoxFuture<Result<EmbeddingOutput, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        self.embed(req)
    }
}

impl crate::router::DescribeDeployment for Azure {
    fn describe(&self) -> Arc<DeploymentInfo> {
        self.info().clone()
    }
}

impl crate::router::health::HealthProbe for Azure {
    fn check(&self) -> BoxFuture<Result<(), Error>> {
        self.health_check()
    }
}

#[cfg(test)]
mod tests;
