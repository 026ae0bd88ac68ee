//! Provider leaves: the services at the bottom of every stack.
//!
//! A leaf turns a [`ChatRequest`] into one upstream HTTP call and the answer
//! back into OpenAI shape. All HTTP leaves share one engine,
//! [`HttpProvider`], parameterised by a [`Protocol`]: the provider-specific
//! part, written as pure functions over requests and bytes so it can be tested
//! against recorded traffic without a network. The engine adds the pooled
//! client, timeouts, error mapping and incremental stream decoding (a stream
//! is never buffered whole).
//!
//! Model strings follow LiteLLM: `openai/gpt-4o`, `groq/llama-3.1-8b-instant`,
//! `hosted_vllm/my-model`, `mock/anything`. [`ProviderKind::parse`] splits them.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod cohere;
pub mod compat;
pub mod gemini;
pub mod mistral;
pub mod mock;
pub mod openai;
mod params;
pub mod sse_stream;

use crate::context::Deadline;
use crate::error::{Error, ErrorKind, TimeoutKind};
use crate::stream::{ChatStream, ChunkResult};
use crate::transport::HttpClient;
use crate::types::{
    ChatChunk, ChatCompletion, ChatRequest, ChatResponse, DeploymentInfo, EmbeddingOutput,
    EmbeddingRequest, EmbeddingResponse,
};
use bytes::Bytes;
use futures_core::Stream;
use http::{HeaderMap, HeaderName, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub use anthropic::{Anthropic, AnthropicConfig};
pub use azure::{Azure, AzureConfig};
pub use bedrock::{Bedrock, BedrockConfig};
pub use cohere::{Cohere, CohereConfig};
pub use compat::{COMPAT_PROVIDERS, CompatProvider};
pub use gemini::{Gemini, GeminiConfig, GeminiProtocol, VertexAi, VertexConfig, VertexProtocol};
pub use mistral::{Mistral, MistralConfig};
pub use mock::{Mock, MockConfig};
pub use openai::{OpenAi, OpenAiConfig, OpenAiProtocol};
pub use params::DropParams;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The future of [`Protocol::prepare_chat`]: borrows the protocol and the request.
pub type PrepareFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// The provider-specific half of an HTTP leaf.
///
/// Implement it to add a provider; [`HttpProvider`] does the rest.
pub trait Protocol: Send + Sync + 'static {
    /// Asynchronous work before [`chat_request`](Self::chat_request), for what a
    /// pure translation cannot do: obtain an OAuth access token, download remote
    /// media. Results go into `req.extensions` for `chat_request` to read. It runs
    /// under the call's deadline. `None` (the default) means there is nothing to
    /// do, so providers without such needs pay nothing.
    fn prepare_chat<'a>(&'a self, req: &'a mut ChatRequest) -> Option<PrepareFuture<'a>> {
        let _ = req;
        None
    }

    /// Builds the upstream request for a chat call (URL, auth, body).
    fn chat_request(&self, req: &ChatRequest) -> Result<http::Request<Bytes>, Error>;

    /// Parses a successful non-streamed answer.
    fn parse_completion(&self, req: &ChatRequest, body: &[u8]) -> Result<ChatCompletion, Error>;

    /// A decoder for a streamed answer: raw body bytes in, OpenAI chunks out.
    fn stream_decoder(&self, req: &ChatRequest) -> Box<dyn StreamDecoder>;

    /// Maps an error status and body to an [`Error`]. Must not copy credentials into it.
    fn map_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error;

    /// A free request that tells whether the upstream is up (a model list, a
    /// status endpoint), if the provider has one. Used by health checks.
    fn health_request(&self) -> Option<http::Request<Bytes>> {
        None
    }

    /// Like [`prepare_chat`](Self::prepare_chat), before
    /// [`embedding_request`](Self::embedding_request).
    fn prepare_embedding<'a>(&'a self, req: &'a mut EmbeddingRequest) -> Option<PrepareFuture<'a>> {
        let _ = req;
        None
    }

    /// Builds the upstream request for an embeddings call.
    fn embedding_request(&self, req: &EmbeddingRequest) -> Result<http::Request<Bytes>, Error> {
        let _ = req;
        Err(Error::bad_request("this provider does not serve embeddings").with_param("model"))
    }

    /// Parses a successful embeddings answer.
    fn parse_embeddings(
        &self,
        req: &EmbeddingRequest,
        body: &[u8],
    ) -> Result<EmbeddingResponse, Error> {
        let _ = (req, body);
        Err(Error::internal(
            "embeddings are not implemented for this provider",
        ))
    }
}

/// Incremental decoder of an upstream stream body.
pub trait StreamDecoder: Send + 'static {
    /// Consumes body bytes, appending any complete chunks to `out`.
    fn feed(&mut self, bytes: &[u8], out: &mut VecDeque<ChatChunk>) -> Result<(), Error>;

    /// The body ended. Flushes what is pending; errors if the stream was cut
    /// before the protocol's own end.
    fn finish(&mut self, out: &mut VecDeque<ChatChunk>) -> Result<(), Error>;

    /// Whether the protocol's end marker was seen (further bytes are ignored).
    fn is_done(&self) -> bool;
}

/// Deadlines a leaf applies on its own (the timeout layer may tighten them per request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafTimeouts {
    /// Whole request, for non-streamed calls (LiteLLM's `timeout`).
    pub request: Duration,
    /// Until the response head of a streamed call (LiteLLM's `stream_timeout`).
    pub first_byte: Duration,
    /// Longest silence between two chunks of a stream.
    pub idle: Duration,
}

impl Default for LeafTimeouts {
    fn default() -> Self {
        LeafTimeouts {
            request: Duration::from_secs(600),
            first_byte: Duration::from_secs(600),
            idle: Duration::from_secs(300),
        }
    }
}

/// Largest non-streamed upstream answer read into memory.
const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// Largest upstream error body read (the rest is ignored).
const MAX_ERROR_BYTES: usize = 256 << 10;

/// An HTTP provider leaf: a [`Protocol`] over the pooled [`HttpClient`].
///
/// `Service<ChatRequest>` and `Service<EmbeddingRequest>`; always ready;
/// cloning is an `Arc` bump.
pub struct HttpProvider<P> {
    inner: Arc<Inner<P>>,
}

struct Inner<P> {
    protocol: P,
    client: HttpClient,
    info: Arc<DeploymentInfo>,
    timeouts: LeafTimeouts,
}

impl<P> Clone for HttpProvider<P> {
    fn clone(&self) -> Self {
        HttpProvider {
            inner: self.inner.clone(),
        }
    }
}

impl<P> std::fmt::Debug for HttpProvider<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProvider")
            .field("deployment", &self.inner.info)
            .finish_non_exhaustive()
    }
}

impl<P: Protocol> HttpProvider<P> {
    /// A leaf speaking `protocol` through `client`.
    pub fn with_protocol(
        protocol: P,
        client: HttpClient,
        info: Arc<DeploymentInfo>,
        timeouts: LeafTimeouts,
    ) -> Self {
        HttpProvider {
            inner: Arc::new(Inner {
                protocol,
                client,
                info,
                timeouts,
            }),
        }
    }

    /// The deployment this leaf serves.
    pub fn info(&self) -> &Arc<DeploymentInfo> {
        &self.inner.info
    }

    /// The protocol.
    pub fn protocol(&self) -> &P {
        &self.inner.protocol
    }

    /// Whether the protocol has a free health probe.
    pub fn has_health_probe(&self) -> bool {
        self.inner.protocol.health_request().is_some()
    }

    /// Runs the protocol's free health probe.
    pub fn health_check(&self) -> BoxFuture<Result<(), Error>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let Some(req) = inner.protocol.health_request() else {
                return Err(Error::new(
                    ErrorKind::ServiceUnavailable,
                    "this provider has no free health check",
                ));
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            let resp = tokio::time::timeout_at(deadline, inner.client.send(req))
                .await
                .map_err(|_| Error::timeout(TimeoutKind::Total))??;
            let (parts, body) = resp.into_parts();
            let bytes = read_body(body, MAX_ERROR_BYTES, deadline, true)
                .await
                .unwrap_or_default();
            if parts.status.is_success() {
                Ok(())
            } else {
                Err(tag(
                    inner
                        .protocol
                        .map_error(parts.status, &parts.headers, &bytes),
                    &inner.info,
                ))
            }
        })
    }

    /// Serves a chat request (what `Service::call` does).
    pub fn chat(&self, req: ChatRequest) -> BoxFuture<Result<ChatResponse, Error>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let info = inner.info.clone();
            chat_call(inner, req).await.map_err(|e| tag(e, &info))
        })
    }

    /// Serves an embeddings request.
    pub fn embed(&self, req: EmbeddingRequest) -> BoxFuture<Result<EmbeddingOutput, Error>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let info = inner.info.clone();
            embed_call(inner, req).await.map_err(|e| tag(e, &info))
        })
    }
}

fn tag(err: Error, info: &DeploymentInfo) -> Error {
    let err = if err.provider().is_none() {
        err.with_provider(info.provider.clone())
    } else {
        err
    };
    if err.deployment().is_none() {
        err.with_deployment(info.id.clone())
    } else {
        err
    }
}

impl<P: Protocol> tower::Service<ChatRequest> for HttpProvider<P> {
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

impl<P: Protocol> tower::Service<EmbeddingRequest> for HttpProvider<P> {
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

/// The deadline for this call: the tighter of the leaf's own and the request's.
fn call_deadline(own: Duration, req_timeout: Option<f64>, ext: &http::Extensions) -> Instant {
    let mut deadline = Instant::now() + own;
    if let Some(secs) = req_timeout.filter(|s| s.is_finite() && *s > 0.0) {
        deadline = deadline.min(Instant::now() + Duration::from_secs_f64(secs.min(86_400.0)));
    }
    if let Some(Deadline(d)) = ext.get::<Deadline>() {
        deadline = deadline.min(*d);
    }
    deadline
}

async fn chat_call<P: Protocol>(
    inner: Arc<Inner<P>>,
    req: ChatRequest,
) -> Result<ChatResponse, Error> {
    if req.mock_response.is_some() {
        return mock::respond(&req, &inner.info, None).await;
    }
    let stream = req.is_stream();
    let own = if stream {
        inner.timeouts.first_byte
    } else {
        inner.timeouts.request
    };
    let deadline = call_deadline(own, req.timeout, &req.extensions);
    let timeout_kind = if stream {
        TimeoutKind::FirstByte
    } else {
        TimeoutKind::Total
    };
    let mut req = req;
    if let Some(prepare) = inner.protocol.prepare_chat(&mut req) {
        tokio::time::timeout_at(deadline, prepare)
            .await
            .map_err(|_| Error::timeout(timeout_kind))??;
    }
    let mut http_req = inner.protocol.chat_request(&req)?;
    propagate_trace(&req.extensions, &mut http_req);
    let started = Instant::now();
    let resp = tokio::time::timeout_at(deadline, inner.client.send(http_req))
        .await
        .map_err(|_| Error::timeout(timeout_kind))??;
    let (parts, body) = resp.into_parts();
    if !parts.status.is_success() {
        let bytes = read_body(body, MAX_ERROR_BYTES, deadline, true)
            .await
            .unwrap_or_default();
        return Err(inner
            .protocol
            .map_error(parts.status, &parts.headers, &bytes));
    }
    let mut response = if stream {
        let decoder = inner.protocol.stream_decoder(&req);
        ChatResponse::stream(ChatStream::new(UpstreamStream::new(
            body,
            decoder,
            inner.timeouts.idle,
        )))
    } else {
        let bytes = read_body(body, MAX_RESPONSE_BYTES, deadline, false).await?;
        ChatResponse::complete(inner.protocol.parse_completion(&req, &bytes)?)
    };
    response.meta.deployment = Some(inner.info.clone());
    response.meta.attempts = 1;
    response.meta.upstream_headers = forwarded_headers(&parts.headers);
    response
        .meta
        .extensions
        .insert(UpstreamLatency(started.elapsed()));
    Ok(response)
}

async fn embed_call<P: Protocol>(
    inner: Arc<Inner<P>>,
    req: EmbeddingRequest,
) -> Result<EmbeddingOutput, Error> {
    let mut out = if req.mock_response.is_some() {
        EmbeddingOutput::new(mock::embeddings(&req, &inner.info, 8))
    } else {
        let deadline = call_deadline(inner.timeouts.request, req.timeout, &req.extensions);
        let mut req = req;
        if let Some(prepare) = inner.protocol.prepare_embedding(&mut req) {
            tokio::time::timeout_at(deadline, prepare)
                .await
                .map_err(|_| Error::timeout(TimeoutKind::Total))??;
        }
        let http_req = inner.protocol.embedding_request(&req)?;
        let started = Instant::now();
        let resp = tokio::time::timeout_at(deadline, inner.client.send(http_req))
            .await
            .map_err(|_| Error::timeout(TimeoutKind::Total))??;
        let (parts, body) = resp.into_parts();
        if !parts.status.is_success() {
            let bytes = read_body(body, MAX_ERROR_BYTES, deadline, true)
                .await
                .unwrap_or_default();
            return Err(inner
                .protocol
                .map_error(parts.status, &parts.headers, &bytes));
        }
        let bytes = read_body(body, MAX_RESPONSE_BYTES, deadline, false).await?;
        let mut out = EmbeddingOutput::new(inner.protocol.parse_embeddings(&req, &bytes)?);
        out.meta.upstream_headers = forwarded_headers(&parts.headers);
        out.meta
            .extensions
            .insert(UpstreamLatency(started.elapsed()));
        out
    };
    out.meta.deployment = Some(inner.info.clone());
    out.meta.attempts = 1;
    Ok(out)
}

/// Sends the attempt's trace context upstream (`traceparent`, `tracestate`).
pub(crate) fn propagate_trace(ext: &http::Extensions, req: &mut http::Request<Bytes>) {
    use crate::observe::trace::{RequestTrace, UpstreamTrace};
    // The attempt's span, or the request's when no sink records attempts.
    let request_span;
    let tp = match ext.get::<UpstreamTrace>() {
        Some(UpstreamTrace(tp)) => tp,
        None => match ext.get::<RequestTrace>() {
            Some(t) => {
                request_span = t.trace_parent();
                &request_span
            }
            None => return,
        },
    };
    req.headers_mut()
        .insert(header("traceparent"), tp.header_value());
    if let Some(v) = tp
        .tracestate
        .as_deref()
        .and_then(|s| http::HeaderValue::from_str(s).ok())
    {
        req.headers_mut().insert(header("tracestate"), v);
    }
}

/// How long the upstream took (to the response head for streams, to the last byte otherwise).
#[derive(Clone, Copy, Debug)]
pub struct UpstreamLatency(pub Duration);

/// Reads a body up to `limit` bytes before `deadline`. With `truncate`, a
/// longer body is cut at the limit instead of failing (for error bodies).
async fn read_body(
    mut body: Incoming,
    limit: usize,
    deadline: Instant,
    truncate: bool,
) -> Result<Bytes, Error> {
    let read = async {
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.map_err(|e| {
                Error::new(
                    ErrorKind::Connection,
                    "the upstream connection broke while sending its answer",
                )
                .with_source(e)
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    if truncate {
                        let room = limit - buf.len();
                        buf.extend_from_slice(&data[..room]);
                        break;
                    }
                    return Err(Error::new(
                        ErrorKind::BadGateway,
                        format!("the upstream answer is larger than {limit} bytes"),
                    ));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .map_err(|_| Error::timeout(TimeoutKind::Total))?
}

/// Upstream headers worth passing to the client: rate limits and request ids.
fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if n.starts_with("x-ratelimit-")
            || n.starts_with("anthropic-ratelimit-")
            || n == "retry-after"
            || n == "x-request-id"
            || n == "request-id"
            || n == "apim-request-id"
            || n == "x-amzn-requestid"
        {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// A stream of chunks decoded from an upstream body as it arrives.
///
/// Chunks decoded before a failure are delivered first, then the error, then
/// the end. After the protocol's end marker the rest of the body is drained
/// (so the connection can go back to the pool) but ignored.
struct UpstreamStream {
    body: Option<Incoming>,
    decoder: Box<dyn StreamDecoder>,
    queue: VecDeque<ChatChunk>,
    error: Option<Error>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl UpstreamStream {
    fn new(body: Incoming, decoder: Box<dyn StreamDecoder>, idle: Duration) -> Self {
        UpstreamStream {
            body: Some(body),
            decoder,
            queue: VecDeque::with_capacity(1),
            error: None,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn fail(&mut self, err: Error) {
        self.body = None;
        self.error = Some(err);
    }
}

impl Stream for UpstreamStream {
    type Item = ChunkResult;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ChunkResult>> {
        let this = &mut *self;
        loop {
            if let Some(chunk) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(chunk)));
            }
            if let Some(err) = this.error.take() {
                return Poll::Ready(Some(Err(err)));
            }
            let Some(body) = this.body.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.timer.as_mut().reset(Instant::now() + this.idle);
                    if let Ok(data) = frame.into_data()
                        && !this.decoder.is_done()
                        && let Err(e) = this.decoder.feed(&data, &mut this.queue)
                    {
                        this.fail(e);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    if this.decoder.is_done() {
                        this.body = None;
                    } else {
                        this.fail(
                            Error::new(
                                ErrorKind::Connection,
                                "the upstream connection broke in the middle of the stream",
                            )
                            .with_source(e),
                        );
                    }
                }
                Poll::Ready(None) => {
                    this.body = None;
                    if let Err(e) = this.decoder.finish(&mut this.queue) {
                        this.error = Some(e);
                    }
                }
                Poll::Pending => {
                    if this.decoder.is_done() {
                        // Everything was delivered. Whatever trailer the upstream sends
                        // later is not worth holding the client for.
                        this.body = None;
                        continue;
                    }
                    if this.timer.as_mut().poll(cx).is_ready() {
                        this.fail(Error::timeout(TimeoutKind::Idle));
                        continue;
                    }
                    // The stream waits for its upstream (the queue is empty
                    // here): keep one slot (~400 B), not the four or more a
                    // burst grew the queue to. Only when waiting, so a fast
                    // stream whose reads carry several chunks does not shrink
                    // and regrow the queue on every read.
                    if this.queue.capacity() > 1 {
                        this.queue.shrink_to(1);
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Parses a `Retry-After`-style hint from response headers: `retry-after-ms`,
/// `retry-after` (seconds), then OpenAI's `x-ratelimit-reset-requests|tokens`
/// Go-style durations (`6ms`, `1m30s`; the larger of the two).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    if let Some(s) = get("retry-after").and_then(|v| v.trim().parse::<f64>().ok())
        && s.is_finite()
        && s >= 0.0
    {
        return Some(Duration::from_secs_f64(s.min(86_400.0)));
    }
    let a = get("x-ratelimit-reset-requests").and_then(parse_go_duration);
    let b = get("x-ratelimit-reset-tokens").and_then(parse_go_duration);
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Parses Go-style durations such as `6ms`, `1.5s`, `1m30s`, `2h`.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" | "" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    (total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total.min(86_400.0)))
}

/// Where a LiteLLM model string points: the provider and the upstream model name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// `openai/…` or a bare OpenAI model name.
    OpenAi,
    /// An OpenAI-compatible server from [`COMPAT_PROVIDERS`].
    Compat(&'static CompatProvider),
    /// `anthropic/…`: the Anthropic Messages API.
    Anthropic,
    /// `gemini/…`: Google AI Studio.
    Gemini,
    /// `vertex_ai/…`: Gemini and Claude on Google Vertex AI.
    VertexAi,
    /// `bedrock/…` (and `bedrock_converse/…`): AWS Bedrock Converse.
    Bedrock,
    /// `azure/<deployment>`: Azure OpenAI.
    Azure,
    /// `mistral/…`: Mistral La Plateforme.
    Mistral,
    /// `cohere/…`, `cohere_chat/…`: Cohere v2 chat.
    Cohere,
    /// `mock/…`: the built-in mock provider.
    Mock,
    /// A provider prefix tollgate does not serve.
    Unsupported(String),
}

impl ProviderKind {
    /// Splits `provider/model` into the provider and the upstream model name,
    /// following LiteLLM: a string without a prefix is an OpenAI model, except
    /// bare `claude-*` names, which are Anthropic's.
    ///
    /// ```
    /// use tollgate::provider::ProviderKind;
    ///
    /// assert_eq!(ProviderKind::parse("gpt-4o").0, ProviderKind::OpenAi);
    /// let (kind, model) = ProviderKind::parse("groq/llama-3.1-8b-instant");
    /// assert!(matches!(kind, ProviderKind::Compat(p) if p.name == "groq"));
    /// assert_eq!(model, "llama-3.1-8b-instant");
    /// // Only the first segment is the provider: the rest is the model id.
    /// assert_eq!(ProviderKind::parse("openrouter/meta-llama/llama-3-70b").1, "meta-llama/llama-3-70b");
    /// assert_eq!(ProviderKind::parse("bedrock/us.anthropic.claude-3-5-sonnet-20241022-v2:0").0, ProviderKind::Bedrock);
    /// assert_eq!(ProviderKind::parse("claude-sonnet-4-5"), (ProviderKind::Anthropic, "claude-sonnet-4-5"));
    /// ```
    pub fn parse(model: &str) -> (ProviderKind, &str) {
        let Some((prefix, rest)) = model.split_once('/') else {
            if model.starts_with("claude-") {
                return (ProviderKind::Anthropic, model);
            }
            return (ProviderKind::OpenAi, model);
        };
        let kind = match prefix {
            "openai" | "text-completion-openai" => ProviderKind::OpenAi,
            "anthropic" => ProviderKind::Anthropic,
            "gemini" => ProviderKind::Gemini,
            "vertex_ai" | "vertex_ai_beta" => ProviderKind::VertexAi,
            "bedrock" | "bedrock_converse" => ProviderKind::Bedrock,
            "azure" => ProviderKind::Azure,
            "mistral" => ProviderKind::Mistral,
            "cohere" | "cohere_chat" => ProviderKind::Cohere,
            "mock" => ProviderKind::Mock,
            other => match compat::lookup(other) {
                Some(p) => ProviderKind::Compat(p),
                None => ProviderKind::Unsupported(other.to_owned()),
            },
        };
        (kind, rest)
    }

    /// The provider's name as LiteLLM spells it.
    pub fn name(&self) -> &str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Compat(p) => p.name,
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::VertexAi => "vertex_ai",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Azure => "azure",
            ProviderKind::Mistral => "mistral",
            ProviderKind::Cohere => "cohere",
            ProviderKind::Mock => "mock",
            ProviderKind::Unsupported(s) => s,
        }
    }
}

/// A header name known at compile time.
pub(crate) fn header(name: &'static str) -> HeaderName {
    HeaderName::from_static(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("6ms"), Some(Duration::from_millis(6)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("2x"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn retry_after_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset-requests", "1s".parse().unwrap());
        h.insert("x-ratelimit-reset-tokens", "6m0s".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(360)));
        h.insert("retry-after", "20".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(20)));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
    }
}
