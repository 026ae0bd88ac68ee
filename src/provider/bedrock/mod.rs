//! AWS Bedrock through the Converse and ConverseStream APIs.
//!
//! `bedrock/<model id>` (or `bedrock_converse/…`) calls
//! `POST {endpoint}/model/{modelId}/converse` (or `/converse-stream`), where
//! the endpoint is `https://bedrock-runtime.{region}.amazonaws.com` unless
//! configured. The model id may be a plain id (`anthropic.claude-3-haiku-20240307-v1:0`),
//! a cross-region inference profile (`us.anthropic.…`) or a full ARN; it is
//! percent-encoded into a single path segment (`:` and `/` included), so it
//! can never change the path.
//!
//! Embeddings (`amazon.titan-embed-*`, `cohere.embed-*`) go through
//! InvokeModel, `POST {endpoint}/model/{modelId}/invoke` (see [`embed`]).
//!
//! Auth is SigV4 (signing name `bedrock`, computed in-house with `ring`, fresh
//! on every attempt with the configured clock) or a Bedrock API key sent as
//! `Authorization: Bearer`. Streams are AWS event-stream frames
//! ([`eventstream`]), translated incrementally into OpenAI chunks.
//!
//! What maps where: system/developer messages → `system` blocks; consecutive
//! same-role turns merged; `tool` messages → `toolResult` blocks in one user
//! turn; assistant `tool_calls` → `toolUse`; images as `data:` URIs → image
//! bytes (image URLs are refused: nothing is downloaded); `file_data` documents;
//! `cache_control` → `cachePoint`; `max_tokens`/`temperature`/`top_p`/`stop` →
//! `inferenceConfig`; `top_k`, `thinking`, `reasoning_effort` and any unknown
//! field → `additionalModelRequestFields` (Converse blocks such as
//! `guardrailConfig` stay top-level); `response_format` → a forced tool (as
//! LiteLLM does) or, with [`StructuredOutput::Native`], `outputConfig`.
//!
//! ```no_run
//! use tollgate::provider::bedrock::{AwsCredentials, Bedrock, BedrockAuth, BedrockConfig};
//! use tollgate::{ChatRequest, Secret};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), tollgate::Error> {
//! let creds = AwsCredentials::new("AKIA...", Secret::new("wJalr..."));
//! let leaf = Bedrock::new(
//!     BedrockConfig::new("us.anthropic.claude-3-5-haiku-20241022-v1:0", "us-east-1")
//!         .auth(BedrockAuth::SigV4(creds)),
//! )?;
//! let req = ChatRequest::from_json(br#"{"model":"haiku","messages":[{"role":"user","content":"Hi"}]}"#)?;
//! let resp = leaf.oneshot(req).await?;
//! println!("{:?}", resp.completion().and_then(|c| c.text()));
//! # Ok(()) }
//! ```

pub mod embed;
pub mod error;
pub mod eventstream;
pub mod request;
pub mod response;
pub mod sigv4;
pub mod stream;
pub mod sts;

pub use embed::{BedrockEmbeddings, EmbedFamily};
pub use sigv4::AwsCredentials;
pub use sts::{AssumeRole, AssumeRoleConfig};

use super::{DropParams, HttpProvider, LeafTimeouts, PrepareFuture, Protocol, StreamDecoder};
use crate::Secret;
use crate::error::Error;
use crate::transport::HttpClient;
use crate::types::{
    ChatCompletion, ChatRequest, DeploymentInfo, EmbeddingRequest, EmbeddingResponse, Extra,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use request::{Family, JsonMode, TranslateOptions};
use std::sync::Arc;
use std::time::SystemTime;

/// The SigV4 signing name of Bedrock Runtime.
pub const SIGNING_NAME: &str = "bedrock";

/// A source of the current time (injectable for tests).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// How requests are authenticated.
#[derive(Clone, Debug, Default)]
pub enum BedrockAuth {
    /// SigV4 with these credentials.
    SigV4(AwsCredentials),
    /// A Bedrock API key, sent as `Authorization: Bearer <key>`.
    ApiKey(Secret),
    /// SigV4 with temporary credentials from STS `AssumeRole`, cached until
    /// shortly before they expire.
    AssumeRole(Arc<AssumeRole>),
    /// Nothing (for a local endpoint that needs no auth).
    #[default]
    None,
}

/// Where `response_format: json_schema` goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StructuredOutput {
    /// A tool named after the schema, forced with `toolChoice`; its input becomes
    /// the answer text (LiteLLM's way; works on every tool-capable model).
    #[default]
    Tool,
    /// Converse's own `outputConfig.textFormat` (models that support it).
    Native,
}

/// Settings of a Bedrock deployment.
#[derive(Clone)]
pub struct BedrockConfig {
    /// Model id, inference-profile id or ARN (without the `bedrock/` prefix).
    pub model: String,
    /// The model the id stands for, when the id does not say (application
    /// inference profiles): decides where `top_k` and reasoning settings go.
    pub base_model: Option<String>,
    /// AWS region (`us-east-1`): the default endpoint and the SigV4 scope.
    pub region: String,
    /// The endpoint (`aws_bedrock_runtime_endpoint`); default `https://bedrock-runtime.{region}.amazonaws.com`.
    pub endpoint: Option<String>,
    /// Credentials.
    pub auth: BedrockAuth,
    /// Extra headers sent upstream on every call (signed with the rest).
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Default body parameters (from `litellm_params`); the request's own values win.
    pub params: Extra,
    /// Where `response_format` goes.
    pub structured_output: StructuredOutput,
    /// `drop_params` / `additional_drop_params`.
    pub drop: DropParams,
    /// Deadlines.
    pub timeouts: LeafTimeouts,
    /// The deployment this is.
    pub info: Option<Arc<DeploymentInfo>>,
    /// The HTTP client (defaults to the process-wide one).
    pub client: Option<HttpClient>,
    /// The clock used for signing (defaults to the system clock).
    pub clock: Option<Clock>,
}

impl std::fmt::Debug for BedrockConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockConfig")
            .field("model", &self.model)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl BedrockConfig {
    /// Settings for `model` in `region`, without credentials.
    pub fn new(model: impl Into<String>, region: impl Into<String>) -> Self {
        BedrockConfig {
            model: model.into(),
            base_model: None,
            region: region.into(),
            endpoint: None,
            auth: BedrockAuth::None,
            extra_headers: Vec::new(),
            params: Extra::new(),
            structured_output: StructuredOutput::Tool,
            drop: DropParams::default(),
            timeouts: LeafTimeouts::default(),
            info: None,
            client: None,
            clock: None,
        }
    }

    /// Sets the credentials.
    pub fn auth(mut self, auth: BedrockAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the endpoint.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }
}

/// The Converse protocol (see the [module docs](self)).
pub struct BedrockProtocol {
    model: String,
    family: Family,
    region: String,
    converse_uri: Uri,
    stream_uri: Uri,
    invoke_uri: Uri,
    embed_family: Option<EmbedFamily>,
    headers: HeaderMap,
    auth: BedrockAuth,
    params: Extra,
    structured_output: StructuredOutput,
    drop: DropParams,
    clock: Clock,
    secrets: Vec<Secret>,
}

impl std::fmt::Debug for BedrockProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockProtocol")
            .field("model", &self.model)
            .field("region", &self.region)
            .field("uri", &self.converse_uri)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// A Bedrock leaf.
pub type Bedrock = HttpProvider<BedrockProtocol>;

impl HttpProvider<BedrockProtocol> {
    /// Builds the leaf. Fails on an invalid region, endpoint, model id or header.
    pub fn new(config: BedrockConfig) -> Result<Self, Error> {
        let protocol = BedrockProtocol::new(config.clone())?;
        let info = config.info.clone().unwrap_or_else(|| {
            Arc::new(DeploymentInfo {
                id: Arc::from(config.model.as_str()),
                model_group: Arc::from(config.model.as_str()),
                model: Arc::from(format!("bedrock/{}", config.model)),
                provider: Arc::from("bedrock"),
                api_base: Some(Arc::from(protocol.endpoint().as_str())),
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

/// Percent-encodes a model id into one path segment (`:` → `%3A`, `/` → `%2F`, …).
///
/// ```
/// use tollgate::provider::bedrock::model_path_segment;
///
/// assert_eq!(model_path_segment("anthropic.claude-3-haiku-20240307-v1:0"), "anthropic.claude-3-haiku-20240307-v1%3A0");
/// assert_eq!(
///     model_path_segment("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.x"),
///     "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.x",
/// );
/// assert_eq!(model_path_segment(".."), "%2E%2E");
/// ```
pub fn model_path_segment(model: &str) -> String {
    let encoded = sigv4::uri_encode(model, false);
    if encoded.bytes().all(|b| b == b'.') {
        encoded.replace('.', "%2E")
    } else {
        encoded
    }
}

/// Whether `region` looks like an AWS region (`us-east-1`, `eu-central-2`, `us-gov-west-1`).
fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-')
}

/// The region of a Bedrock ARN (`arn:aws:bedrock:us-east-1:…`).
pub fn arn_region(model: &str) -> Option<&str> {
    let mut parts = model.strip_prefix("arn:")?.split(':');
    let _partition = parts.next()?;
    let _service = parts.next()?;
    parts.next().filter(|r| valid_region(r))
}

impl BedrockProtocol {
    /// Builds the protocol from settings.
    pub fn new(config: BedrockConfig) -> Result<Self, Error> {
        if !valid_region(&config.region) {
            return Err(Error::bad_request(
                "invalid AWS region (expected something like `us-east-1`)",
            ));
        }
        let model = config
            .model
            .strip_prefix("converse/")
            .unwrap_or(&config.model)
            .to_owned();
        if model.is_empty() {
            return Err(Error::bad_request("the Bedrock model id is empty").with_param("model"));
        }
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://bedrock-runtime.{}.amazonaws.com", config.region));
        let segment = model_path_segment(&model);
        let converse_uri =
            super::openai::join_uri(&endpoint, &format!("/model/{segment}/converse"))?;
        let stream_uri =
            super::openai::join_uri(&endpoint, &format!("/model/{segment}/converse-stream"))?;
        let invoke_uri = super::openai::join_uri(&endpoint, &format!("/model/{segment}/invoke"))?;
        if converse_uri.query().is_some() {
            return Err(Error::bad_request(
                "the Bedrock endpoint must not have a query string",
            ));
        }
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
        match &config.auth {
            BedrockAuth::SigV4(c) => {
                if c.access_key_id.is_empty() || c.secret_access_key.is_empty() {
                    return Err(Error::bad_request(
                        "AWS credentials need both an access key id and a secret access key",
                    ));
                }
                if !c.access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(Error::bad_request(
                        "the AWS access key id contains invalid characters",
                    ));
                }
                secrets.push(c.secret_access_key.clone());
                secrets.push(Secret::new(c.access_key_id.as_str()));
                if let Some(t) = &c.session_token {
                    HeaderValue::from_str(t.expose()).map_err(|_| {
                        Error::bad_request("the AWS session token contains invalid characters")
                    })?;
                    secrets.push(t.clone());
                }
            }
            BedrockAuth::ApiKey(key) => {
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    Error::bad_request("the Bedrock API key contains invalid characters")
                })?;
                secrets.push(key.clone());
            }
            BedrockAuth::AssumeRole(_) | BedrockAuth::None => {}
        }
        let family = Family::of(config.base_model.as_deref().unwrap_or(&model));
        let embed_family = EmbedFamily::of(config.base_model.as_deref().unwrap_or(&model));
        Ok(BedrockProtocol {
            family,
            embed_family,
            invoke_uri,
            region: config.region,
            converse_uri,
            stream_uri,
            headers,
            auth: config.auth,
            params: config.params,
            structured_output: config.structured_output,
            drop: config.drop,
            clock: config.clock.unwrap_or_else(|| Arc::new(SystemTime::now)),
            secrets,
            model,
        })
    }

    /// The endpoint (scheme, host and port) requests go to.
    pub fn endpoint(&self) -> String {
        let scheme = self.converse_uri.scheme_str().unwrap_or("https");
        let authority = self
            .converse_uri
            .authority()
            .map(|a| a.as_str())
            .unwrap_or("");
        format!("{scheme}://{authority}")
    }

    /// The upstream model id.
    pub fn model(&self) -> &str {
        &self.model
    }

    fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(Secret::expose).collect()
    }

    /// Signs (SigV4) or adds the API key to an upstream request; run on every attempt.
    fn authorize(
        &self,
        http_req: &mut http::Request<Bytes>,
        extensions: &http::Extensions,
    ) -> Result<(), Error> {
        match &self.auth {
            BedrockAuth::AssumeRole(_) => {
                let Some(Assumed(creds)) = extensions.get::<Assumed>() else {
                    return Err(Error::internal(
                        "no assumed-role credentials: the call was not prepared",
                    ));
                };
                sigv4::sign_request(
                    http_req,
                    creds,
                    &self.region,
                    SIGNING_NAME,
                    (self.clock)(),
                    false,
                )?;
            }
            BedrockAuth::SigV4(creds) => {
                sigv4::sign_request(
                    http_req,
                    creds,
                    &self.region,
                    SIGNING_NAME,
                    (self.clock)(),
                    false,
                )?;
            }
            BedrockAuth::ApiKey(key) => {
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                        Error::bad_request("the Bedrock API key contains invalid characters")
                    })?;
                v.set_sensitive(true);
                http_req
                    .headers_mut()
                    .insert(http::header::AUTHORIZATION, v);
            }
            BedrockAuth::None => {}
        }
        Ok(())
    }

    /// The Converse body for a request, and the JSON-mode tool if one was added.
    pub fn body(&self, req: &ChatRequest) -> Result<(Vec<u8>, JsonMode), Error> {
        let body = req.body();
        let dropped = self.drop.check(body, request::SUPPORTED, "bedrock")?;
        let policy = self.drop.for_request(body);
        let drop_extra = |name: &str| policy.drops_extra(body, name);
        let opts = TranslateOptions {
            family: self.family,
            structured_output: self.structured_output,
            defaults: &self.params,
            dropped: &dropped,
            drop_extra: &drop_extra,
        };
        let (value, json_mode) = request::converse_body(body, &opts)?;
        let bytes = serde_json::to_vec(&value).map_err(|e| request::encode_error(&e))?;
        Ok((bytes, json_mode))
    }

    fn json_mode(&self, req: &ChatRequest) -> JsonMode {
        // Cheap: only the response_format decides it (unless it is dropped).
        if self
            .drop
            .for_request(req.body())
            .additional
            .iter()
            .any(|a| a == "response_format")
        {
            return JsonMode::default();
        }
        match &req.response_format {
            Some(rf) if rf.kind != crate::types::ResponseFormatType::Text => {
                match (self.structured_output, &rf.kind, &rf.json_schema) {
                    (
                        StructuredOutput::Native,
                        crate::types::ResponseFormatType::JsonSchema,
                        Some(_),
                    ) => JsonMode::default(),
                    (_, crate::types::ResponseFormatType::JsonSchema, Some(s)) => {
                        JsonMode(Some(s.name.clone()))
                    }
                    _ => JsonMode(Some("json_tool_call".to_owned())),
                }
            }
            _ => JsonMode::default(),
        }
    }
}

fn completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::now_v7().simple())
}

/// The assumed-role credentials for one call (put in the request's extensions by `prepare_*`).
#[derive(Clone)]
struct Assumed(AwsCredentials);

impl BedrockProtocol {
    /// For assumed-role auth: credentials for the call, into its extensions.
    fn prepare<'a>(&'a self, extensions: &'a mut http::Extensions) -> Option<PrepareFuture<'a>> {
        let BedrockAuth::AssumeRole(role) = &self.auth else {
            return None;
        };
        Some(Box::pin(async move {
            extensions.insert(Assumed(role.credentials().await?));
            Ok(())
        }))
    }
}

impl Protocol for BedrockProtocol {
    fn prepare_chat<'a>(&'a self, req: &'a mut ChatRequest) -> Option<PrepareFuture<'a>> {
        self.prepare(&mut req.extensions)
    }

    fn prepare_embedding<'a>(&'a self, req: &'a mut EmbeddingRequest) -> Option<PrepareFuture<'a>> {
        self.prepare(&mut req.extensions)
    }

    fn chat_request(&self, req: &ChatRequest) -> Result<http::Request<Bytes>, Error> {
        let stream = req.is_stream();
        let (body, _) = self.body(req)?;
        let mut http_req = http::Request::new(Bytes::from(body));
        *http_req.method_mut() = Method::POST;
        *http_req.uri_mut() = if stream {
            self.stream_uri.clone()
        } else {
            self.converse_uri.clone()
        };
        *http_req.headers_mut() = self.headers.clone();
        http_req.headers_mut().insert(
            http::header::ACCEPT,
            HeaderValue::from_static(if stream {
                "application/vnd.amazon.eventstream"
            } else {
                "application/json"
            }),
        );
        self.authorize(&mut http_req, &req.extensions)?;
        Ok(http_req)
    }

    fn embedding_request(&self, req: &EmbeddingRequest) -> Result<http::Request<Bytes>, Error> {
        let Some(family) = self.embed_family else {
            return Err(Error::bad_request(format!(
                "`{}` is not a Bedrock embedding model this version serves (amazon.titan-embed-*, cohere.embed-*)",
                self.model
            ))
            .with_param("model"));
        };
        let body = embed::body(family, req.body(), &self.params)?;
        let mut http_req = http::Request::new(Bytes::from(body));
        *http_req.method_mut() = Method::POST;
        *http_req.uri_mut() = self.invoke_uri.clone();
        *http_req.headers_mut() = self.headers.clone();
        http_req.headers_mut().insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        self.authorize(&mut http_req, &req.extensions)?;
        Ok(http_req)
    }

    fn parse_embeddings(
        &self,
        req: &EmbeddingRequest,
        body: &[u8],
    ) -> Result<EmbeddingResponse, Error> {
        let family = self
            .embed_family
            .ok_or_else(|| Error::internal("not an embedding model"))?;
        embed::parse(family, req.body(), body, &self.model)
    }

    fn parse_completion(&self, req: &ChatRequest, body: &[u8]) -> Result<ChatCompletion, Error> {
        response::completion(
            body,
            completion_id(),
            &self.model,
            crate::util::unix_now(),
            &self.json_mode(req),
        )
    }

    fn stream_decoder(&self, req: &ChatRequest) -> Box<dyn StreamDecoder> {
        Box::new(stream::ConverseStreamDecoder::new(
            completion_id(),
            &self.model,
            crate::util::unix_now(),
            self.json_mode(req),
            self.secrets.clone(),
        ))
    }

    fn map_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        error::from_response(status, headers, body, &self.secrets())
    }
}

#[cfg(test)]
mod tests;
