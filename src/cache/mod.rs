//! [`CacheLayer`]: exact-match response caching, in memory or in Redis.
//!
//! Identical requests are not paid for twice. The layer hashes everything
//! that changes an answer — the model name, the messages, tools, sampling
//! parameters, response format, unknown provider fields, … — and nothing
//! that does not (request ids, `metadata`, `user`, `stream`), into a
//! [`CacheKey`]. A fresh answer under that key is served without calling the
//! service it wraps; otherwise the answer is fetched and stored.
//!
//! # Semantics
//!
//! - **Tenants**: keys are scoped. A virtual key with a team shares the
//!   team's cache; a key without a team has its own; anonymous callers and
//!   the master key share the gateway's. A key that cannot be identified is
//!   not cached. [`CacheScope::Shared`] makes one cache for everyone.
//! - **Per-request controls** in the body's `cache` object, as in LiteLLM:
//!   `no-cache` (skip the lookup, still store), `no-store` (do not store),
//!   `ttl` (seconds to keep the answer), `s-maxage` (accept only answers at
//!   most this old), `namespace` (a separate cache), `use-cache` (opt in when
//!   the mode is [`CacheMode::DefaultOff`]; `false` opts out). A caller may be
//!   denied controls with a [`CacheControlsPolicy`] in the request
//!   extensions: using a denied control is a 403.
//! - **Streams**: a cached answer to a streaming request is replayed as a
//!   stream (message chunks, finish chunks, the usage chunk). A streamed
//!   answer is stored only if it completed normally with every choice
//!   finished; a failed or abandoned stream is never stored. Complete and
//!   streamed requests share entries.
//! - **Hits** cost nothing upstream: the response carries a zero
//!   [`CallCost`] (or a settled zero [`StreamCost`]) so budgets settle to $0,
//!   and a [`CacheHit`] that the observe layer turns into the record's
//!   `cache_hit` and the edge into the `x-litellm-cache-key` header. Hits,
//!   misses, writes and backend errors are counted (see the `CACHE_*`
//!   metric names).
//! - **Failures** of the backend (Redis down, a timeout, a corrupt entry)
//!   are misses, never errors: the answer is fetched as if nothing were
//!   cached. Entries are versioned; an entry written by another format reads
//!   as a miss.
//! - **Time**: every entry holds when it was stored and when it expires, read
//!   from the cache's [`Clock`] on each lookup. Backends evict on their own,
//!   but freshness is decided here, identically for every backend.
//!
//! ```
//! use tollgate::cache::{CacheConfig, CacheHit, CacheLayer, ResponseCache};
//! use tollgate::provider::{Mock, MockConfig};
//! use tollgate::ChatRequest;
//! use tower::{Layer, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let cache = ResponseCache::in_memory(64 << 20, CacheConfig::default());
//! let svc = CacheLayer::new(cache).layer(Mock::new(MockConfig::new("mock/m")));
//! let req = || ChatRequest::from_json(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
//!
//! let first = svc.clone().oneshot(req()).await.unwrap();
//! assert!(first.meta.extensions.get::<CacheHit>().is_none());
//! let second = svc.oneshot(req()).await.unwrap();
//! assert!(second.meta.extensions.get::<CacheHit>().is_some());
//! assert_eq!(first.completion().unwrap().text(), second.completion().unwrap().text());
//! # });
//! ```

mod backend;
mod controls;
mod entry;
mod key;
#[cfg(feature = "redis")]
mod redis;
#[cfg(test)]
mod tests;

#[cfg(feature = "redis")]
pub use self::redis::{RedisBackend, RedisOptions};
pub use backend::{CacheBackend, MemoryBackend};
pub use controls::{CACHE_CONTROLS, CacheControls, CacheControlsPolicy};
pub use key::{CacheKey, InvalidCacheKey};

use crate::auth::Identity;
use crate::cost::{CallCost, StreamCost};
use crate::error::Error;
use crate::pricing::Usd;
use crate::provider::BoxFuture;
use crate::stream::{ChatStream, ChunkAggregator};
use crate::types::{
    ChatBody, ChatCompletion, ChatRequest, ChatResponse, EmbeddingOutput, EmbeddingRequest,
    EmbeddingResponse, Usage,
};
use entry::Kind;
use futures_core::Stream;
use key::Scope;
use pin_project_lite::pin_project;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tower::{Layer, Service};

/// Counter: answers served from the cache (label `call_type`: `chat`, `embedding`).
pub const CACHE_HITS_TOTAL: &str = "tollgate_cache_hits_total";
/// Counter: lookups that found no fresh answer (label `call_type`).
pub const CACHE_MISSES_TOTAL: &str = "tollgate_cache_misses_total";
/// Counter: answers stored (label `call_type`).
pub const CACHE_WRITES_TOTAL: &str = "tollgate_cache_writes_total";
/// Counter: backend operations that failed or timed out and were treated as
/// misses (labels `backend`: `local`, `redis`; `op`: `get`, `set`).
pub const CACHE_ERRORS_TOTAL: &str = "tollgate_cache_errors_total";

/// Whether requests use the cache unless they say otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// Every request uses the cache (LiteLLM's `default_on`).
    #[default]
    DefaultOn,
    /// Only requests with `cache: {"use-cache": true}` use it (`default_off`).
    DefaultOff,
}

/// Who shares cached answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheScope {
    /// Each team (or key without a team) has its own answers; anonymous
    /// callers and the master key share the gateway's.
    #[default]
    Tenant,
    /// Everyone shares every answer.
    Shared,
}

/// The clock entries are stamped with (unix milliseconds).
///
/// [`Clock::system`] reads the wall clock, which replicas sharing Redis agree
/// on. [`Clock::tokio`] counts from the wall clock at its creation with
/// `tokio::time::Instant`, so tests can move it with `tokio::time::advance`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock(ClockKind);

#[derive(Clone, Copy, Debug, Default)]
enum ClockKind {
    #[default]
    System,
    Tokio {
        anchor_ms: u64,
        anchor: tokio::time::Instant,
    },
}

fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Clock {
    /// The wall clock (the default).
    pub fn system() -> Clock {
        Clock(ClockKind::System)
    }

    /// The wall clock at creation plus `tokio::time` elapsed since (pausable in tests).
    pub fn tokio() -> Clock {
        Clock(ClockKind::Tokio {
            anchor_ms: system_ms(),
            anchor: tokio::time::Instant::now(),
        })
    }

    /// Now, in unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        match self.0 {
            ClockKind::System => system_ms(),
            ClockKind::Tokio { anchor_ms, anchor } => {
                anchor_ms.saturating_add(millis(anchor.elapsed()))
            }
        }
    }
}

/// How the cache behaves (the backend is chosen separately).
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// How long answers are kept unless a request says otherwise (default 10 minutes).
    pub ttl: Duration,
    /// On for every request, or opt-in.
    pub mode: CacheMode,
    /// Per tenant, or shared.
    pub scope: CacheScope,
    /// Cache chat completions (default true).
    pub chat: bool,
    /// Cache embeddings (default true).
    pub embeddings: bool,
    /// Answers larger than this (encoded) are not stored (default 4 MiB).
    pub max_entry_bytes: usize,
    /// The clock entries are stamped with.
    pub clock: Clock,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: Duration::from_secs(600),
            mode: CacheMode::DefaultOn,
            scope: CacheScope::Tenant,
            chat: true,
            embeddings: true,
            max_entry_bytes: 4 << 20,
            clock: Clock::system(),
        }
    }
}

/// Marks a response served from the cache (in `response.meta.extensions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheHit {
    /// The entry's key (what `/cache/delete` takes).
    pub key: CacheKey,
    /// How old the answer is.
    pub age: Duration,
}

/// Counts kept by a [`ResponseCache`] since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Answers served from the cache.
    pub hits: u64,
    /// Lookups without a fresh answer.
    pub misses: u64,
    /// Answers stored.
    pub writes: u64,
    /// Backend failures treated as misses (or unstored answers).
    pub errors: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    writes: AtomicU64,
    errors: AtomicU64,
}

struct Inner {
    backend: Arc<dyn CacheBackend>,
    config: CacheConfig,
    counters: Counters,
}

/// A response cache: a backend and a [`CacheConfig`]. Cheap to clone (all
/// clones share the backend); make layers with [`ResponseCache::layer`] and
/// manage entries with [`ResponseCache::delete`] and [`ResponseCache::flush`].
#[derive(Clone)]
pub struct ResponseCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("backend", &self.inner.backend.name())
            .field("config", &self.inner.config)
            .finish()
    }
}

/// What the cache does for one request.
#[derive(Clone, Copy, Debug)]
struct Plan {
    key: CacheKey,
    read: bool,
    write: bool,
    ttl: Duration,
    max_age: Option<Duration>,
}

impl ResponseCache {
    /// A cache over `backend`.
    pub fn new(backend: impl CacheBackend, config: CacheConfig) -> Self {
        ResponseCache::from_arc(Arc::new(backend), config)
    }

    /// A cache over a shared backend.
    pub fn from_arc(backend: Arc<dyn CacheBackend>, config: CacheConfig) -> Self {
        ResponseCache {
            inner: Arc::new(Inner {
                backend,
                config,
                counters: Counters::default(),
            }),
        }
    }

    /// An in-process cache holding at most `max_bytes` of answers.
    pub fn in_memory(max_bytes: u64, config: CacheConfig) -> Self {
        ResponseCache::new(MemoryBackend::new(max_bytes), config)
    }

    /// A cache that caches nothing: its layer passes every request through
    /// untouched (no allocation, no hashing).
    pub fn disabled() -> Self {
        ResponseCache::in_memory(
            0,
            CacheConfig {
                chat: false,
                embeddings: false,
                ..CacheConfig::default()
            },
        )
    }

    /// A layer that caches through this cache.
    pub fn layer(&self) -> CacheLayer {
        CacheLayer::new(self.clone())
    }

    /// The settings.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The backend's name (`local`, `redis`).
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// Counts since the cache was made.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// Checks the backend answers.
    pub async fn ping(&self) -> Result<(), Error> {
        self.inner.backend.ping().await
    }

    /// Deletes entries by key; returns how many existed.
    pub async fn delete(&self, keys: &[CacheKey]) -> Result<u64, Error> {
        self.inner.backend.delete(keys.to_vec()).await
    }

    /// Deletes every entry of this cache.
    pub async fn flush(&self) -> Result<(), Error> {
        self.inner.backend.flush().await
    }

    fn count_error(&self, op: &'static str) {
        self.inner.counters.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(CACHE_ERRORS_TOTAL, "backend" => self.inner.backend.name(), "op" => op)
            .increment(1);
    }

    fn count_hit(&self, kind: Kind) {
        self.inner.counters.hits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(CACHE_HITS_TOTAL, "call_type" => kind.call_type()).increment(1);
    }

    fn count_miss(&self, kind: Kind) {
        self.inner.counters.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(CACHE_MISSES_TOTAL, "call_type" => kind.call_type()).increment(1);
    }

    /// Decides what to do for a request (`Ok(None)`: bypass the cache).
    fn plan(
        &self,
        enabled: bool,
        controls: Option<&Value>,
        ext: &http::Extensions,
        client_credentials: bool,
        key: impl FnOnce(Scope<'_>, Option<&str>) -> serde_json::Result<CacheKey>,
    ) -> Result<Option<Plan>, Error> {
        if !enabled {
            return Ok(None);
        }
        let controls = match controls {
            None => CacheControls::default(),
            Some(v) => {
                if let Some(policy) = ext.get::<CacheControlsPolicy>() {
                    policy.check(v)?;
                }
                CacheControls::parse(v)?
            }
        };
        let config = &self.inner.config;
        let on = match (config.mode, controls.use_cache) {
            (_, Some(false)) => false,
            (CacheMode::DefaultOn, _) => true,
            (CacheMode::DefaultOff, use_cache) => use_cache == Some(true),
        };
        if !on || client_credentials {
            return Ok(None);
        }
        let scope = match config.scope {
            CacheScope::Shared => Scope::Shared,
            CacheScope::Tenant => match Scope::of(ext.get::<Identity>()) {
                Some(s) => s,
                None => return Ok(None),
            },
        };
        let ttl = controls.ttl.unwrap_or(config.ttl);
        let read = !controls.no_cache;
        let write = !controls.no_store && !ttl.is_zero();
        if !read && !write {
            return Ok(None);
        }
        let Ok(key) = key(scope, controls.namespace.as_deref()) else {
            return Ok(None);
        };
        Ok(Some(Plan {
            key,
            read,
            write,
            ttl,
            max_age: controls.s_maxage,
        }))
    }

    /// A fresh entry under the plan's key, parsed; `None` on a miss.
    async fn read<T: entry::Answer>(&self, plan: &Plan) -> Option<(T, Duration)> {
        let kind = T::KIND;
        let bytes = match self.inner.backend.get(plan.key).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "cache lookup failed; treating as a miss");
                self.count_error("get");
                None
            }
        };
        let found = bytes.as_deref().and_then(|b| {
            let d = entry::decode(kind, b)?;
            let now = self.inner.config.clock.now_ms();
            let age = Duration::from_millis(now.saturating_sub(d.at));
            let fresh = now < d.exp && plan.max_age.is_none_or(|max| age <= max);
            if !fresh {
                return None;
            }
            T::parse(&d).map(|v| (v, age))
        });
        match found {
            Some(v) => {
                self.count_hit(kind);
                Some(v)
            }
            None => {
                self.count_miss(kind);
                None
            }
        }
    }

    /// Stores an answer; failures are counted, never returned.
    async fn write<T: serde::Serialize>(&self, key: CacheKey, kind: Kind, body: &T, ttl: Duration) {
        let at = self.inner.config.clock.now_ms();
        let Some(bytes) = entry::encode(kind, at, at.saturating_add(millis(ttl)), body) else {
            return;
        };
        if bytes.len() > self.inner.config.max_entry_bytes {
            tracing::debug!(bytes = bytes.len(), "answer too large to cache");
            return;
        }
        match self.inner.backend.set(key, bytes, ttl).await {
            Ok(()) => {
                self.inner.counters.writes.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(CACHE_WRITES_TOTAL, "call_type" => kind.call_type()).increment(1);
            }
            Err(e) => {
                tracing::debug!(error = %e, "cache write failed");
                self.count_error("set");
            }
        }
    }
}

impl Kind {
    fn call_type(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::Embedding => "embedding",
        }
    }
}

/// Caches the answers of the service it wraps. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct CacheLayer {
    cache: ResponseCache,
}

impl CacheLayer {
    /// A layer over `cache`.
    pub fn new(cache: ResponseCache) -> Self {
        CacheLayer { cache }
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = Cache<S>;
    fn layer(&self, inner: S) -> Cache<S> {
        Cache {
            inner,
            cache: self.cache.clone(),
        }
    }
}

/// The service made by [`CacheLayer`].
#[derive(Clone, Debug)]
pub struct Cache<S> {
    inner: S,
    cache: ResponseCache,
}

impl<S> Cache<S> {
    /// The cache.
    pub fn cache(&self) -> &ResponseCache {
        &self.cache
    }
}

pin_project! {
    /// Future of [`Cache`]: the inner future untouched when the request
    /// bypasses the cache, otherwise lookup, call and store.
    pub struct ResponseFuture<F, T> {
        #[pin]
        state: State<F, T>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, T> {
        Bypass { #[pin] fut: F },
        Cached { fut: BoxFuture<Result<T, Error>> },
        Rejected { err: Option<Error> },
    }
}

impl<F, T> Future for ResponseFuture<F, T>
where
    F: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Bypass { fut } => fut.poll(cx),
            StateProj::Cached { fut } => fut.as_mut().poll(cx),
            StateProj::Rejected { err } => Poll::Ready(Err(err
                .take()
                .unwrap_or_else(|| Error::internal("cache future polled after completion")))),
        }
    }
}

/// Whether a chat body carries client-side credentials (answers from another
/// account or endpoint are not cached).
fn chat_credentials(b: &crate::types::ChatRequestBody) -> bool {
    b.api_key.is_some()
        || b.api_base.is_some()
        || b.base_url.is_some()
        || b.api_version.is_some()
        || b.extra_headers.is_some()
}

impl<S> Service<ChatRequest> for Cache<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = ResponseFuture<S::Future, ChatResponse>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let body = req.body();
        let planned = self.cache.plan(
            self.cache.inner.config.chat,
            body.cache.as_ref(),
            &req.extensions,
            chat_credentials(body),
            |scope, ns| key::chat(body, scope, ns),
        );
        let state = match planned {
            Err(err) => State::Rejected { err: Some(err) },
            Ok(None) => State::Bypass {
                fut: self.inner.call(req),
            },
            Ok(Some(plan)) => {
                // The ready service goes into the future; a clone stays behind.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                State::Cached {
                    fut: Box::pin(serve_chat(self.cache.clone(), plan, inner, req)),
                }
            }
        };
        ResponseFuture { state }
    }
}

async fn serve_chat<S>(
    cache: ResponseCache,
    plan: Plan,
    mut inner: S,
    req: ChatRequest,
) -> Result<ChatResponse, Error>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
{
    if plan.read
        && let Some((completion, age)) = cache.read::<ChatCompletion>(&plan).await
    {
        return Ok(chat_hit(completion, plan.key, age, req.is_stream()));
    }
    // Streamed log probabilities do not survive reassembly: such streams are not stored.
    let store_stream = req.logprobs != Some(true);
    let mut resp = inner.call(req).await?;
    if !plan.write {
        return Ok(resp);
    }
    match &mut resp.body {
        ChatBody::Complete(c) => {
            if !c.choices.is_empty() {
                cache.write(plan.key, Kind::Chat, &**c, plan.ttl).await;
            }
        }
        ChatBody::Stream(s) if store_stream => {
            let stream = std::mem::replace(s, ChatStream::from_chunks(Vec::new()));
            *s = ChatStream::new(StoreOnEnd {
                inner: Some(stream),
                agg: ChunkAggregator::default(),
                job: Some((cache, plan)),
                storing: None,
            });
        }
        ChatBody::Stream(_) => {}
    }
    Ok(resp)
}

fn zero_cost(usage: Usage) -> CallCost {
    CallCost {
        usage,
        estimated: false,
        split: Some((Usd::ZERO, Usd::ZERO)),
        priced_as: Arc::from("cache"),
    }
}

fn chat_hit(c: ChatCompletion, key: CacheKey, age: Duration, stream: bool) -> ChatResponse {
    let cost = zero_cost(c.usage.clone().unwrap_or_default());
    let mut resp = if stream {
        let mut chunks = entry::replay(&c);
        // Like a priced stream, the usage chunk tells its cost: nothing.
        if let Some(u) = chunks.last_mut().and_then(|ch| ch.usage.as_mut()) {
            let _ = u.extra.insert("cost", &Usd::ZERO);
        }
        let mut r = ChatResponse::stream(ChatStream::from_chunks(chunks));
        r.meta.extensions.insert(StreamCost::settled(cost));
        r
    } else {
        let mut r = ChatResponse::complete(c);
        r.meta.extensions.insert(cost);
        r
    };
    resp.meta.extensions.insert(CacheHit { key, age });
    resp
}

/// Passes a stream through, assembling it; when it ends normally with every
/// choice finished, stores the answer before reporting the end.
struct StoreOnEnd {
    inner: Option<ChatStream>,
    agg: ChunkAggregator,
    job: Option<(ResponseCache, Plan)>,
    storing: Option<BoxFuture<()>>,
}

impl Stream for StoreOnEnd {
    type Item = crate::stream::ChunkResult;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(fut) = this.storing.as_mut() {
                std::task::ready!(fut.as_mut().poll(cx));
                this.storing = None;
                return Poll::Ready(None);
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match std::task::ready!(Pin::new(inner).poll_next(cx)) {
                Some(Ok(chunk)) => {
                    if this.job.is_some() {
                        this.agg.push(&chunk);
                    }
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Some(Err(e)) => {
                    this.inner = None;
                    this.job = None;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    this.inner = None;
                    match this.job.take() {
                        Some((cache, plan)) if this.agg.all_finished() => {
                            let mut completion = std::mem::take(&mut this.agg).finish();
                            if let Some(u) = completion.usage.as_mut() {
                                // The cost the cost layer wrote into the usage chunk.
                                u.extra.remove("cost");
                            }
                            this.storing = Some(Box::pin(async move {
                                cache
                                    .write(plan.key, Kind::Chat, &completion, plan.ttl)
                                    .await;
                            }));
                        }
                        _ => return Poll::Ready(None),
                    }
                }
            }
        }
    }
}

impl<S> Service<EmbeddingRequest> for Cache<S>
where
    S: Service<EmbeddingRequest, Response = EmbeddingOutput, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = EmbeddingOutput;
    type Error = Error;
    type Future = ResponseFuture<S::Future, EmbeddingOutput>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        let body = req.body();
        let credentials =
            body.api_key.is_some() || body.api_base.is_some() || body.base_url.is_some();
        let planned = self.cache.plan(
            self.cache.inner.config.embeddings,
            body.cache.as_ref(),
            &req.extensions,
            credentials,
            |scope, ns| key::embedding(body, scope, ns),
        );
        let state = match planned {
            Err(err) => State::Rejected { err: Some(err) },
            Ok(None) => State::Bypass {
                fut: self.inner.call(req),
            },
            Ok(Some(plan)) => {
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                State::Cached {
                    fut: Box::pin(serve_embedding(self.cache.clone(), plan, inner, req)),
                }
            }
        };
        ResponseFuture { state }
    }
}

async fn serve_embedding<S>(
    cache: ResponseCache,
    plan: Plan,
    mut inner: S,
    req: EmbeddingRequest,
) -> Result<EmbeddingOutput, Error>
where
    S: Service<EmbeddingRequest, Response = EmbeddingOutput, Error = Error>,
{
    if plan.read
        && let Some((body, age)) = cache.read::<EmbeddingResponse>(&plan).await
    {
        return Ok(embedding_hit(body, plan.key, age));
    }
    let out = inner.call(req).await?;
    if plan.write && !out.body.data.is_empty() {
        cache
            .write(plan.key, Kind::Embedding, &out.body, plan.ttl)
            .await;
    }
    Ok(out)
}

fn embedding_hit(body: EmbeddingResponse, key: CacheKey, age: Duration) -> EmbeddingOutput {
    let prompt = body.usage.as_ref().map_or(0, |u| u.prompt_tokens);
    let mut out = EmbeddingOutput::new(body);
    out.meta.extensions.insert(zero_cost(Usage::new(prompt, 0)));
    out.meta.extensions.insert(CacheHit { key, age });
    out
}
