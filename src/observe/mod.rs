//! [`ObserveLayer`]: one [`CompletionRecord`] per request, on every path.
//!
//! The outermost layer of a stack. It watches each request to its real end —
//! the response for a complete answer, the last chunk (or the error, or the
//! client's disconnect) for a stream, the drop of the future if the caller
//! gives up before the answer — and hands exactly one record to its
//! [`RecordSink`]. Spend logs, metrics, exporters and callbacks all read these
//! records.
//!
//! # Semantics
//!
//! - Exactly once: a record is emitted on success, on error, at stream end, on
//!   a stream error, when a stream is dropped half-read, and when the response
//!   future is dropped before it resolved (status `cancelled`).
//! - Usage of a stream is what the provider reported; if the stream was cut
//!   before its usage arrived it is estimated from the text that did arrive
//!   (`usage_estimated: true`), never zero.
//! - The sink is called synchronously and must not block: queue the record and
//!   do the work elsewhere ([`CallbackQueue`] does exactly that).
//! - Each request gets a span in the caller's trace (a [`TraceParent`] in its
//!   extensions, which the HTTP edge takes from `traceparent`); the router
//!   reports each upstream attempt as an [`AttemptRecord`] through
//!   [`RecordSink::attempt`] (see [`trace`]).
//!
//! Built on it: [`MetricsSink`] ([`metrics`]), [`LogSink`] ([`log`]),
//! callbacks with bounded queues ([`callback`]), webhook and JSON-lines
//! exporters ([`export`]) and OTLP spans (`otel`, feature `otel`).
//!
//! ```
//! use tollgate::observe::{CompletionRecord, ObserveLayer, RecordSink};
//! use tollgate::provider::{Mock, MockConfig};
//! use tollgate::ChatRequest;
//! use std::sync::{Arc, Mutex};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! #[derive(Default)]
//! struct Collect(Mutex<Vec<CompletionRecord>>);
//! impl RecordSink for Collect {
//!     fn record(&self, r: &CompletionRecord) { self.0.lock().unwrap().push(r.clone()); }
//! }
//!
//! # tokio_test::block_on(async {
//! let sink = Arc::new(Collect::default());
//! let svc = ServiceBuilder::new()
//!     .layer(ObserveLayer::new(sink.clone()))
//!     .service(Mock::new(MockConfig::new("mock/m")));
//! let req = ChatRequest::from_json(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
//! svc.oneshot(req).await.unwrap();
//! let records = sink.0.lock().unwrap();
//! assert_eq!(records.len(), 1);
//! assert!(records[0].usage.as_ref().unwrap().total_tokens > 0);
//! # });
//! ```

mod attempt;
pub mod callback;
pub mod export;
pub mod log;
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
pub mod trace;

pub(crate) use attempt::{Attempt, StreamAttempt};
pub use callback::{Callback, CallbackQueue, CallbackSet};
pub use metrics::MetricsSink;
pub use trace::{AttemptRecord, RequestParams, SpanIds, TraceParent};

use crate::auth::Identity;
use crate::context::{Received, RequestId, Tags};
use crate::cost::{CallCost, StreamCost};
use crate::error::Error;
use crate::provider::UpstreamLatency;
use crate::stream::{ChunkAggregator, StreamEnd, StreamObserver};
use crate::tokens;
use crate::types::{
    ChatBody, ChatChunk, ChatRequest, ChatRequestBody, ChatResponse, DeploymentInfo,
    EmbeddingOutput, EmbeddingRequest, FinishReason, Usage,
};
use pin_project_lite::pin_project;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tower::{Layer, Service};

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    /// Answered completely.
    Success,
    /// Failed (before or during the answer).
    Failure,
    /// The caller went away first.
    Cancelled,
}

/// What happened to one request. See the [module docs](self).
#[derive(Clone, Debug, Serialize)]
pub struct CompletionRecord {
    /// The gateway's request id.
    pub request_id: Arc<str>,
    /// `chat`.
    pub call_type: &'static str,
    /// The model name the client sent.
    pub model: String,
    /// The deployment that served (last attempt), if any was reached.
    pub deployment: Option<Arc<DeploymentInfo>>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Wall-clock start.
    #[serde(serialize_with = "ser_time")]
    pub start_time: SystemTime,
    /// From arrival to the end (last byte of a stream).
    #[serde(serialize_with = "ser_ms")]
    pub latency: Duration,
    /// Time to the first token of a stream.
    #[serde(serialize_with = "ser_opt_ms")]
    pub time_to_first_token: Option<Duration>,
    /// Upstream time (to the response head for streams).
    #[serde(serialize_with = "ser_opt_ms")]
    pub upstream_latency: Option<Duration>,
    /// Token usage.
    pub usage: Option<Usage>,
    /// Whether `usage` was estimated (stream cut before the provider reported it).
    pub usage_estimated: bool,
    /// Cost in USD; `None` when the model has no known price (or nothing was priced).
    pub cost: Option<crate::pricing::Usd>,
    /// Success, failure or cancellation.
    pub status: RecordStatus,
    /// HTTP status the client got (or would have got).
    pub http_status: u16,
    /// The error, when there was one.
    pub error: Option<RecordError>,
    /// Finish reason of the first choice.
    pub finish_reason: Option<String>,
    /// Upstream attempts.
    pub attempts: u32,
    /// Fallback groups tried.
    pub fallbacks: u32,
    /// Served from the response cache.
    pub cache_hit: bool,
    /// Request tags.
    pub tags: Vec<String>,
    /// The end user (`user` field).
    pub end_user: Option<String>,
    /// Who called (from the auth layer; anonymous when there is none).
    /// Serialized without the key hash.
    #[serde(serialize_with = "ser_identity")]
    pub identity: Identity,
    /// The request span: trace id, span id, the caller's span.
    pub trace: SpanIds,
    /// Time the gateway added before the answer began (arrival to response
    /// head, minus the upstream's time).
    #[serde(serialize_with = "ser_opt_ms")]
    pub overhead: Option<Duration>,
    /// Request parameters (temperature, max tokens, …).
    pub params: RequestParams,
    /// Messages in and out — only when the observe layer was told to keep
    /// them ([`ObserveLayer::capture_content`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Arc<RecordContent>>,
}

/// The messages of a request and its answer (kept only on request).
#[derive(Clone, Debug, Serialize)]
pub struct RecordContent {
    /// The request's messages, as sent (base64 payloads cut short).
    pub input: serde_json::Value,
    /// The answer's choices (their messages), when there was an answer.
    pub output: Option<serde_json::Value>,
}

fn ser_identity<S: serde::Serializer>(id: &Identity, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(None)?;
    m.serialize_entry("key_display", &id.key_display)?;
    m.serialize_entry("key_alias", &id.key_alias)?;
    m.serialize_entry("team_id", &id.team_id)?;
    m.serialize_entry("user_id", &id.user_id)?;
    m.end()
}

/// The error part of a record (no secrets: these are the client-facing texts).
#[derive(Clone, Debug, Serialize)]
pub struct RecordError {
    /// LiteLLM's class name (`RateLimitError`, …).
    pub class: &'static str,
    /// The message.
    pub message: String,
    /// The provider that failed, when upstream.
    pub provider: Option<String>,
}

impl RecordError {
    /// The record of `err`.
    pub fn of(err: &Error) -> Self {
        RecordError {
            class: err.kind().litellm_class(),
            message: err.message().to_owned(),
            provider: err.provider().map(str::to_owned),
        }
    }
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    s.serialize_u128(ms)
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

fn ser_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0)),
        None => s.serialize_none(),
    }
}

/// Receives every [`CompletionRecord`]. Must not block.
pub trait RecordSink: Send + Sync + 'static {
    /// Takes one record.
    fn record(&self, record: &CompletionRecord);

    /// Takes the record of one upstream attempt (before the request's own
    /// record). The default ignores it.
    fn attempt(&self, attempt: &AttemptRecord) {
        let _ = attempt;
    }

    /// Whether [`attempt`](Self::attempt) wants records now. A sink that
    /// ignores attempts says `false`, and the router then builds no attempt
    /// records (nor attempt spans: the upstream's `traceparent` names the
    /// request's span). Asked once per upstream attempt. The default is `true`.
    fn wants_attempts(&self) -> bool {
        true
    }
}

/// Sends records to several sinks.
pub struct FanOut(pub Vec<Arc<dyn RecordSink>>);

impl RecordSink for FanOut {
    fn record(&self, record: &CompletionRecord) {
        for s in &self.0 {
            s.record(record);
        }
    }

    fn attempt(&self, attempt: &AttemptRecord) {
        for s in self.0.iter().filter(|s| s.wants_attempts()) {
            s.attempt(attempt);
        }
    }

    fn wants_attempts(&self) -> bool {
        self.0.iter().any(|s| s.wants_attempts())
    }
}

pub use log::LogSink;

/// Layer that emits a [`CompletionRecord`] per request.
#[derive(Clone)]
pub struct ObserveLayer {
    shared: Arc<Shared>,
}

struct Shared {
    sink: Arc<dyn RecordSink>,
    capture_content: bool,
    in_flight: OnceLock<::metrics::Gauge>,
}

impl Shared {
    fn in_flight(&self) -> &::metrics::Gauge {
        self.in_flight.get_or_init(metrics::in_flight)
    }
}

impl ObserveLayer {
    /// Records go to `sink`.
    pub fn new(sink: Arc<dyn RecordSink>) -> Self {
        ObserveLayer {
            shared: Arc::new(Shared {
                sink,
                capture_content: false,
                in_flight: OnceLock::new(),
            }),
        }
    }

    /// Keeps the messages of each request and answer in its record
    /// ([`CompletionRecord::content`]), for sinks that export them. Off by
    /// default: prompts and answers often hold personal data.
    pub fn capture_content(self, on: bool) -> Self {
        ObserveLayer {
            shared: Arc::new(Shared {
                sink: self.shared.sink.clone(),
                capture_content: on,
                in_flight: OnceLock::new(),
            }),
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`ObserveLayer`].
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<ChatRequest> for Observe<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: ChatRequest) -> Self::Future {
        let draft = Draft::new(&mut req, &self.shared);
        ResponseFuture {
            inner: self.inner.call(req),
            draft: Some(draft),
        }
    }
}

impl<S> Service<EmbeddingRequest> for Observe<S>
where
    S: Service<EmbeddingRequest, Response = EmbeddingOutput, Error = Error>,
{
    type Response = EmbeddingOutput;
    type Error = Error;
    type Future = EmbeddingFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: EmbeddingRequest) -> Self::Future {
        let draft = Draft::for_embedding(&mut req, &self.shared);
        EmbeddingFuture {
            inner: self.inner.call(req),
            draft: Some(draft),
        }
    }
}

pin_project! {
    /// Future of [`Observe`] for embeddings.
    pub struct EmbeddingFuture<F> {
        #[pin]
        inner: F,
        draft: Option<Draft>,
    }

    impl<F> PinnedDrop for EmbeddingFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(draft) = this.project().draft.take() {
                let record = draft.record(RecordStatus::Cancelled, 499);
                draft.emit(record);
            }
        }
    }
}

impl<F> Future for EmbeddingFuture<F>
where
    F: Future<Output = Result<EmbeddingOutput, Error>>,
{
    type Output = Result<EmbeddingOutput, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Some(draft) = this.draft.take() {
            let record = match &result {
                Err(err) => draft.failure(err),
                Ok(out) => {
                    let mut r = draft.record(RecordStatus::Success, 200);
                    r.deployment.clone_from(&out.meta.deployment);
                    r.attempts = out.meta.attempts;
                    r.fallbacks = out.meta.fallbacks;
                    r.upstream_latency = out.meta.extensions.get::<UpstreamLatency>().map(|u| u.0);
                    r.overhead = r.upstream_latency.map(|u| r.latency.saturating_sub(u));
                    r.cache_hit = out
                        .meta
                        .extensions
                        .get::<crate::cache::CacheHit>()
                        .is_some();
                    match out.meta.extensions.get::<CallCost>() {
                        Some(cost) => {
                            r.usage = Some(cost.usage.clone());
                            r.usage_estimated = cost.estimated;
                            r.cost = cost.total();
                        }
                        None => {
                            r.usage = out.usage.as_ref().map(|u| Usage::new(u.prompt_tokens, 0));
                        }
                    }
                    r
                }
            };
            draft.emit(record);
        }
        Poll::Ready(result)
    }
}

/// Everything known about a request before its answer.
struct Draft {
    sink: Arc<dyn RecordSink>,
    in_flight: ::metrics::Gauge,
    trace: SpanIds,
    request_trace: trace::RequestTrace,
    params: RequestParams,
    capture_content: bool,
    request_id: Arc<str>,
    call_type: &'static str,
    model: String,
    end_user: Option<String>,
    /// The chat body (for usage estimates of cut streams).
    body: Option<Arc<ChatRequestBody>>,
    stream: bool,
    started: Instant,
    start_time: SystemTime,
    tags: Vec<String>,
    identity: Identity,
}

impl Draft {
    fn new(req: &mut ChatRequest, shared: &Shared) -> Self {
        let model = req.model.clone();
        let user = req.user.clone();
        let mut d = Draft::from_parts(&mut req.extensions, shared, "chat", model, user);
        d.params = RequestParams::of(req.body());
        d.body = Some(req.shared_body().clone());
        d.stream = req.is_stream();
        d
    }

    fn for_embedding(req: &mut EmbeddingRequest, shared: &Shared) -> Self {
        let model = req.model.clone();
        let user = req.user.clone();
        Draft::from_parts(&mut req.extensions, shared, "embedding", model, user)
    }

    fn from_parts(
        ext: &mut http::Extensions,
        shared: &Shared,
        call_type: &'static str,
        model: String,
        end_user: Option<String>,
    ) -> Self {
        let started = ext.get::<Received>().map_or_else(Instant::now, |r| r.0);
        let elapsed = started.elapsed();
        let request_id = ext
            .get::<RequestId>()
            .map_or_else(|| RequestId::generate().0, |r| r.0.clone());
        let trace = trace::RequestTrace::new(
            ext.get::<TraceParent>(),
            request_id.clone(),
            shared.sink.clone(),
        );
        let ids = trace.ids();
        ext.insert(trace.clone());
        let in_flight = shared.in_flight().clone();
        in_flight.increment(1.0);
        Draft {
            sink: shared.sink.clone(),
            in_flight,
            trace: ids,
            request_trace: trace,
            params: RequestParams::default(),
            capture_content: shared.capture_content,
            request_id,
            call_type,
            model,
            end_user,
            body: None,
            stream: false,
            started,
            start_time: SystemTime::now() - elapsed,
            tags: ext.get::<Tags>().map(|t| t.0.to_vec()).unwrap_or_default(),
            identity: ext
                .get::<Identity>()
                .cloned()
                .unwrap_or_else(Identity::anonymous),
        }
    }

    fn record(&self, status: RecordStatus, http_status: u16) -> CompletionRecord {
        CompletionRecord {
            request_id: self.request_id.clone(),
            call_type: self.call_type,
            model: self.model.clone(),
            deployment: None,
            stream: self.stream,
            start_time: self.start_time,
            latency: self.started.elapsed(),
            time_to_first_token: None,
            upstream_latency: None,
            usage: None,
            usage_estimated: false,
            cost: None,
            status,
            http_status,
            error: None,
            finish_reason: None,
            attempts: 0,
            fallbacks: 0,
            cache_hit: false,
            tags: self.tags.clone(),
            end_user: self.end_user.clone(),
            identity: self.identity.clone(),
            trace: self.trace,
            overhead: None,
            params: self.params.clone(),
            content: None,
        }
    }

    fn failure(&self, err: &Error) -> CompletionRecord {
        let mut r = self.record(RecordStatus::Failure, err.status().as_u16());
        r.error = Some(RecordError::of(err));
        r.deployment = self.request_trace.0.last.load_full();
        r.attempts = err.attempts().max(u32::from(r.deployment.is_some()));
        r.fallbacks = err.fallbacks();
        r.content = self.content(None);
        r
    }

    /// The messages, when content is kept.
    fn content(&self, output: Option<serde_json::Value>) -> Option<Arc<RecordContent>> {
        if !self.capture_content {
            return None;
        }
        let body = self.body.as_ref()?;
        let mut input = serde_json::to_value(&body.messages).unwrap_or_default();
        log::truncate_payloads(&mut input);
        let output = output.map(|mut o| {
            log::truncate_payloads(&mut o);
            o
        });
        Some(Arc::new(RecordContent { input, output }))
    }

    fn emit(self, record: CompletionRecord) {
        self.in_flight.decrement(1.0);
        self.sink.record(&record);
    }
}

pin_project! {
    /// Future of [`Observe`]: emits the record when the answer (or error) is in,
    /// or `cancelled` if dropped before.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        draft: Option<Draft>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(draft) = this.project().draft.take() {
                let record = draft.record(RecordStatus::Cancelled, 499);
                draft.emit(record);
            }
        }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<ChatResponse, Error>>,
{
    type Output = Result<ChatResponse, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let Some(draft) = this.draft.take() else {
            return Poll::Ready(result);
        };
        match result {
            Err(err) => {
                let record = draft.failure(&err);
                draft.emit(record);
                Poll::Ready(Err(err))
            }
            Ok(mut resp) => {
                let mut record = draft.record(RecordStatus::Success, 200);
                fill_meta(&mut record, &resp);
                record.overhead = Some(
                    record
                        .latency
                        .saturating_sub(record.upstream_latency.unwrap_or_default()),
                );
                match &mut resp.body {
                    ChatBody::Complete(c) => {
                        record.usage.clone_from(&c.usage);
                        if let Some(cost) = resp.meta.extensions.get::<CallCost>() {
                            record.usage = Some(cost.usage.clone());
                            record.usage_estimated = cost.estimated;
                            record.cost = cost.total();
                        }
                        record.finish_reason = c
                            .choices
                            .first()
                            .and_then(|ch| ch.finish_reason.as_ref())
                            .map(|f| f.as_str().to_owned());
                        if draft.capture_content {
                            record.content = draft.content(serde_json::to_value(&c.choices).ok());
                        }
                        draft.emit(record);
                    }
                    ChatBody::Stream(s) => {
                        let stream = std::mem::replace(
                            s,
                            crate::stream::ChatStream::from_chunks(Vec::new()),
                        );
                        let priced = resp.meta.extensions.get::<StreamCost>().cloned();
                        *s = stream.observe(StreamRecorder {
                            draft,
                            record,
                            agg: ChunkAggregator::default(),
                            first_token: None,
                            priced,
                        });
                    }
                }
                Poll::Ready(Ok(resp))
            }
        }
    }
}

fn fill_meta(record: &mut CompletionRecord, resp: &ChatResponse) {
    record.deployment.clone_from(&resp.meta.deployment);
    record.attempts = resp.meta.attempts;
    record.fallbacks = resp.meta.fallbacks;
    record.upstream_latency = resp.meta.extensions.get::<UpstreamLatency>().map(|u| u.0);
    record.cache_hit = resp
        .meta
        .extensions
        .get::<crate::cache::CacheHit>()
        .is_some();
}

struct StreamRecorder {
    draft: Draft,
    record: CompletionRecord,
    agg: ChunkAggregator,
    first_token: Option<Duration>,
    priced: Option<StreamCost>,
}

impl StreamObserver for StreamRecorder {
    fn on_chunk(&mut self, chunk: &mut ChatChunk) {
        if self.first_token.is_none()
            && chunk.choices.iter().any(|c| {
                c.delta.content.as_deref().is_some_and(|t| !t.is_empty())
                    || c.delta.tool_calls.is_some()
                    || c.delta.refusal.is_some()
                    || c.delta.reasoning_content.is_some()
            })
        {
            self.first_token = Some(self.draft.started.elapsed());
        }
        self.agg.push(chunk);
    }

    fn on_end(self, end: StreamEnd<'_>) {
        let StreamRecorder {
            draft,
            mut record,
            agg,
            first_token,
            priced,
        } = self;
        record.latency = draft.started.elapsed();
        record.time_to_first_token = first_token;
        match end {
            StreamEnd::Completed => {}
            StreamEnd::Failed(err) => {
                let failed = draft.failure(err);
                record.status = failed.status;
                record.http_status = failed.http_status;
                record.error = failed.error;
            }
            StreamEnd::Dropped => {
                record.status = RecordStatus::Cancelled;
                record.http_status = 499;
            }
        }
        // The cost layer (inside) has finished first and priced the stream.
        if let Some(cost) = priced.as_ref().and_then(StreamCost::get) {
            record.usage = Some(cost.usage.clone());
            record.usage_estimated = cost.estimated;
            record.cost = cost.total();
        } else {
            match agg.usage() {
                Some(u) => record.usage = Some(u.clone()),
                None => {
                    let prompt = draft
                        .body
                        .as_ref()
                        .map_or(0, |b| tokens::prompt_fallback(&b.model, b));
                    let completion = tokens::completion_fallback(&draft.model, &agg.output_text());
                    record.usage = Some(Usage::new(prompt, completion));
                    record.usage_estimated = true;
                }
            }
        }
        let completion = agg.finish();
        if draft.capture_content {
            record.content = draft.content(serde_json::to_value(&completion.choices).ok());
        }
        record.finish_reason = completion
            .choices
            .first()
            .and_then(|c| c.finish_reason.as_ref())
            .map(FinishReason::as_str)
            .map(str::to_owned);
        draft.emit(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{Mock, MockConfig};
    use futures_util::StreamExt;
    use std::sync::Mutex;
    use tower::ServiceExt;

    #[derive(Default)]
    struct Collect(Mutex<Vec<CompletionRecord>>);
    impl RecordSink for Collect {
        fn record(&self, r: &CompletionRecord) {
            self.0.lock().unwrap().push(r.clone());
        }
    }

    fn svc(sink: &Arc<Collect>) -> Observe<Mock> {
        ObserveLayer::new(sink.clone()).layer(Mock::new(MockConfig::new("mock/m")))
    }

    fn req(json: &str) -> ChatRequest {
        ChatRequest::from_json(json.as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn error_is_recorded_once() {
        let sink = Arc::new(Collect::default());
        let e = svc(&sink)
            .oneshot(req(
                r#"{"model":"m","messages":[],"mock_response":"litellm.AuthenticationError"}"#,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.status().as_u16(), 401);
        let recs = sink.0.lock().unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].status, RecordStatus::Failure);
        assert_eq!(recs[0].http_status, 401);
        assert_eq!(recs[0].error.as_ref().unwrap().class, "AuthenticationError");
    }

    #[tokio::test]
    async fn full_stream_uses_reported_usage() {
        let sink = Arc::new(Collect::default());
        let resp = svc(&sink)
            .oneshot(req(
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
            ))
            .await
            .unwrap();
        assert!(
            sink.0.lock().unwrap().is_empty(),
            "not before the stream ends"
        );
        let mut s = resp.into_stream().unwrap();
        while s.next().await.is_some() {}
        drop(s);
        let recs = sink.0.lock().unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].status, RecordStatus::Success);
        assert!(!recs[0].usage_estimated);
        assert!(recs[0].time_to_first_token.is_some());
        assert_eq!(recs[0].finish_reason.as_deref(), Some("stop"));
    }

    #[tokio::test]
    async fn cut_stream_is_cancelled_with_estimated_nonzero_usage() {
        let sink = Arc::new(Collect::default());
        let resp = svc(&sink)
            .oneshot(req(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"mock_response":"alpha beta gamma delta"}"#))
            .await
            .unwrap();
        let mut s = resp.into_stream().unwrap();
        s.next().await; // role
        s.next().await; // "alpha "
        drop(s);
        let recs = sink.0.lock().unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].status, RecordStatus::Cancelled);
        assert!(recs[0].usage_estimated);
        let u = recs[0].usage.as_ref().unwrap();
        assert!(u.completion_tokens > 0 && u.prompt_tokens > 0, "{u:?}");
    }

    #[tokio::test]
    async fn content_is_kept_only_when_asked_and_traces_are_numbered() {
        let sink = Arc::new(Collect::default());
        let body = r#"{"model":"m","messages":[{"role":"user","content":"secret plans"}],"mock_response":"ok"}"#;
        let svc = ObserveLayer::new(sink.clone()).layer(Mock::new(MockConfig::new("mock/m")));
        svc.oneshot(req(body)).await.unwrap();
        let svc = ObserveLayer::new(sink.clone())
            .capture_content(true)
            .layer(Mock::new(MockConfig::new("mock/m")));
        let mut r = req(body);
        r.extensions.insert(
            TraceParent::parse(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                None,
            )
            .unwrap(),
        );
        svc.oneshot(r).await.unwrap();
        let recs = sink.0.lock().unwrap();
        assert!(recs[0].content.is_none());
        assert_ne!(recs[0].trace.trace_id, 0);
        assert_eq!(recs[0].trace.parent_span_id, None);
        let c = recs[1].content.as_ref().unwrap();
        assert_eq!(c.input[0]["content"], "secret plans");
        assert_eq!(c.output.as_ref().unwrap()[0]["message"]["content"], "ok");
        assert_eq!(recs[1].trace.trace_id, 0x0af7651916cd43dd8448eb211c80319c);
        assert_eq!(recs[1].trace.parent_span_id, Some(0xb7ad6b7169203331));
    }

    /// Records requests, and attempts when `wants` says so.
    struct Attempts {
        wants: bool,
        records: Mutex<Vec<CompletionRecord>>,
        attempts: Mutex<Vec<AttemptRecord>>,
    }
    impl RecordSink for Attempts {
        fn record(&self, r: &CompletionRecord) {
            self.records.lock().unwrap().push(r.clone());
        }
        fn attempt(&self, a: &AttemptRecord) {
            self.attempts.lock().unwrap().push(a.clone());
        }
        fn wants_attempts(&self) -> bool {
            self.wants
        }
    }

    #[tokio::test]
    async fn attempts_are_recorded_only_for_sinks_that_want_them() {
        use crate::router::{Deployment, Router};
        use crate::types::DeploymentInfo;
        for wants in [true, false] {
            let sink = Arc::new(Attempts {
                wants,
                records: Mutex::default(),
                attempts: Mutex::default(),
            });
            // The leaf writes the traceparent an HTTP leaf would send upstream.
            let sent = Arc::new(Mutex::new(None::<String>));
            let seen = sent.clone();
            let mock = Mock::new(MockConfig::new("mock/m"));
            let leaf = tower::service_fn(move |r: ChatRequest| {
                let mut http = http::Request::new(bytes::Bytes::new());
                crate::provider::propagate_trace(&r.extensions, &mut http);
                *seen.lock().unwrap() = http
                    .headers()
                    .get("traceparent")
                    .map(|v| v.to_str().unwrap().to_owned());
                mock.clone().oneshot(r)
            });
            let info = Arc::new(DeploymentInfo {
                id: "d1".into(),
                model_group: "m".into(),
                model: "mock/m".into(),
                provider: "mock".into(),
                api_base: None,
            });
            let router = Router::builder()
                .deployment(Deployment::new(info, leaf))
                .build();
            ObserveLayer::new(sink.clone())
                .layer(router)
                .oneshot(req(
                    r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"mock_response":"ok"}"#,
                ))
                .await
                .unwrap();
            let rec = sink.records.lock().unwrap()[0].clone();
            assert_eq!(rec.deployment.as_ref().unwrap().id.as_ref(), "d1");
            let tp = sent
                .lock()
                .unwrap()
                .clone()
                .expect("a traceparent upstream");
            let tp = TraceParent::parse(&tp, None).unwrap();
            assert_eq!(tp.trace_id, rec.trace.trace_id);
            let attempts = sink.attempts.lock().unwrap();
            if wants {
                // The upstream's parent is the attempt span, a child of the request's.
                assert_eq!(attempts.len(), 1);
                assert_eq!(attempts[0].ids.span_id, tp.span_id);
                assert_eq!(attempts[0].ids.parent_span_id, Some(rec.trace.span_id));
                assert_ne!(tp.span_id, rec.trace.span_id);
            } else {
                // No attempt span: the upstream's parent is the request span.
                assert!(attempts.is_empty());
                assert_eq!(tp.span_id, rec.trace.span_id);
            }
        }
    }

    #[tokio::test]
    async fn dropped_future_is_cancelled_once() {
        let sink = Arc::new(Collect::default());
        let mut cfg = MockConfig::new("mock/slow");
        cfg.delay = Duration::from_secs(3600);
        let mut s = ObserveLayer::new(sink.clone()).layer(Mock::new(cfg));
        let fut = s.call(req(r#"{"model":"m","messages":[]}"#));
        drop(fut);
        let recs = sink.0.lock().unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].status, RecordStatus::Cancelled);
    }
}
