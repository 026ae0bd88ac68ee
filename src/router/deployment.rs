//! [`Deployment`] and the live statistics the router keeps about it.

use super::cooldown::Health;
use crate::error::Error;
use crate::types::{ChatRequest, ChatResponse, DeploymentInfo, EmbeddingOutput, EmbeddingRequest};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;
use tower::Service;
use tower::util::BoxCloneSyncService;

/// A boxed chat service (a deployment's stack).
pub type ChatService = BoxCloneSyncService<ChatRequest, ChatResponse, Error>;
/// A boxed embeddings service.
pub type EmbeddingService = BoxCloneSyncService<EmbeddingRequest, EmbeddingOutput, Error>;

/// One deployment: a model behind a provider, with its routing attributes.
#[derive(Clone)]
pub struct Deployment {
    /// What it is (shown in headers and records).
    pub info: Arc<DeploymentInfo>,
    /// Its chat stack.
    pub chat: Option<ChatService>,
    /// Its embeddings stack.
    pub embeddings: Option<EmbeddingService>,
    /// `weight` for simple-shuffle.
    pub weight: Option<f64>,
    /// Requests per minute it may take (a cap, and a shuffle weight).
    pub rpm: Option<u64>,
    /// Tokens per minute it may take (a cap, and a shuffle weight).
    pub tpm: Option<u64>,
    /// Priority: only the lowest `order` among healthy deployments is used.
    pub order: Option<u32>,
    /// Most requests it may serve at once.
    pub max_parallel_requests: Option<u32>,
    /// Tags for tag-based routing (`enable_tag_filtering`).
    pub tags: Vec<String>,
    /// Prices, limits and capabilities of the deployment's model, when known.
    pub price: Option<Arc<crate::pricing::ModelPrice>>,
    /// A cheap health check of the upstream (see [`super::health`]).
    pub probe: Option<Arc<dyn super::health::HealthProbe>>,
    pub(crate) stats: Arc<DeploymentStats>,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("info", &self.info)
            .field("weight", &self.weight)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .field("order", &self.order)
            .field("max_parallel_requests", &self.max_parallel_requests)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl Deployment {
    /// A chat deployment served by `service`, described by `info` (its
    /// `model_group` is the group it joins).
    pub fn new<S>(info: Arc<DeploymentInfo>, service: S) -> Self
    where
        S: Service<ChatRequest, Response = ChatResponse, Error = Error>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Deployment {
            info,
            chat: Some(BoxCloneSyncService::new(service)),
            embeddings: None,
            weight: None,
            rpm: None,
            tpm: None,
            order: None,
            max_parallel_requests: None,
            tags: Vec::new(),
            price: None,
            probe: None,
            stats: Arc::default(),
        }
    }

    /// A chat deployment of `group` from a leaf that knows its own model.
    pub fn chat<S>(group: &str, leaf: S) -> Self
    where
        S: Service<ChatRequest, Response = ChatResponse, Error = Error>
            + DescribeDeployment
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let mut info = (*leaf.describe()).clone();
        info.model_group = Arc::from(group);
        Deployment::new(Arc::new(info), leaf)
    }

    /// Adds an embeddings service.
    pub fn with_embeddings<S>(mut self, service: S) -> Self
    where
        S: Service<EmbeddingRequest, Response = EmbeddingOutput, Error = Error>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.embeddings = Some(BoxCloneSyncService::new(service));
        self
    }

    /// Sets the shuffle weight.
    pub fn weight(mut self, weight: f64) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Sets the priority order.
    pub fn order(mut self, order: u32) -> Self {
        self.order = Some(order);
        self
    }

    /// Sets the requests-per-minute cap.
    pub fn rpm(mut self, rpm: u64) -> Self {
        self.rpm = Some(rpm);
        self
    }

    /// Sets the tokens-per-minute cap.
    pub fn tpm(mut self, tpm: u64) -> Self {
        self.tpm = Some(tpm);
        self
    }

    /// Sets the parallel-request cap.
    pub fn max_parallel_requests(mut self, n: u32) -> Self {
        self.max_parallel_requests = Some(n);
        self
    }

    /// Sets the routing tags.
    pub fn tags(mut self, tags: Vec<String>) -> Self {
        self.tags = tags;
        self
    }

    /// Live statistics.
    pub fn stats(&self) -> &DeploymentStats {
        &self.stats
    }
}

/// Leaves that can describe the deployment they serve.
pub trait DescribeDeployment {
    /// The deployment.
    fn describe(&self) -> Arc<DeploymentInfo>;
}

impl<P> DescribeDeployment for crate::provider::HttpProvider<P>
where
    P: crate::provider::Protocol,
{
    fn describe(&self) -> Arc<DeploymentInfo> {
        self.info().clone()
    }
}

impl DescribeDeployment for crate::provider::Mock {
    fn describe(&self) -> Arc<DeploymentInfo> {
        self.info().clone()
    }
}

/// An exponentially weighted moving average (α = 0.3).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ewma {
    value: Option<f64>,
}

impl Ewma {
    const ALPHA: f64 = 0.3;

    pub(crate) fn observe(&mut self, sample: f64) {
        if !sample.is_finite() || sample < 0.0 {
            return;
        }
        self.value = Some(match self.value {
            None => sample,
            Some(v) => v + Self::ALPHA * (sample - v),
        });
    }

    pub(crate) fn get(&self) -> Option<f64> {
        self.value
    }
}

/// Requests and tokens in the current one-minute window.
#[derive(Debug)]
pub(crate) struct Window {
    start: Option<Instant>,
    requests: u64,
    tokens: u64,
}

impl Window {
    const LENGTH: Duration = Duration::from_secs(60);

    fn roll(&mut self, now: Instant) {
        match self.start {
            Some(s) if now.saturating_duration_since(s) < Self::LENGTH => {}
            _ => {
                self.start = Some(now);
                self.requests = 0;
                self.tokens = 0;
            }
        }
    }
}

/// Live statistics of a deployment, shared by every clone of it.
#[derive(Debug)]
pub struct DeploymentStats {
    in_flight: AtomicU32,
    window: Mutex<Window>,
    latency_per_token: Mutex<Ewma>,
    latency: Mutex<Ewma>,
    ttft: Mutex<Ewma>,
    pub(crate) health: Mutex<Health>,
    pub(crate) last_check: Mutex<Option<super::health::CheckResult>>,
    pub(crate) metrics: crate::observe::metrics::DeploymentMetrics,
}

impl Default for DeploymentStats {
    fn default() -> Self {
        DeploymentStats {
            in_flight: AtomicU32::new(0),
            window: Mutex::new(Window {
                start: None,
                requests: 0,
                tokens: 0,
            }),
            latency_per_token: Mutex::default(),
            latency: Mutex::default(),
            ttft: Mutex::default(),
            health: Mutex::default(),
            last_check: Mutex::default(),
            metrics: Default::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl DeploymentStats {
    /// Requests being served right now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// (requests, tokens) in the current minute.
    pub fn current_minute(&self) -> (u64, u64) {
        let mut w = lock(&self.window);
        w.roll(Instant::now());
        (w.requests, w.tokens)
    }

    /// Seconds per output token (EWMA of non-streamed calls), if measured.
    pub fn latency_per_token(&self) -> Option<f64> {
        lock(&self.latency_per_token).get()
    }

    /// Seconds per call (EWMA), if measured.
    pub fn latency(&self) -> Option<f64> {
        lock(&self.latency).get()
    }

    /// Seconds to the first token of a stream (EWMA), if measured.
    pub fn time_to_first_token(&self) -> Option<f64> {
        lock(&self.ttft).get()
    }

    /// Time left in a cooldown, if cooling down.
    pub fn cooldown_remaining(&self) -> Option<Duration> {
        lock(&self.health).remaining(Instant::now())
    }

    /// The result of the last active health check, if any ran.
    pub fn last_check(&self) -> Option<super::health::CheckResult> {
        lock(&self.last_check).clone()
    }

    /// The last upstream error this deployment returned.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.health).last_error.clone()
    }

    pub(crate) fn has_room(&self, d: &Deployment, estimated_tokens: u64, now: Instant) -> bool {
        if let Some(max) = d.max_parallel_requests
            && self.in_flight() >= max
        {
            return false;
        }
        if d.rpm.is_none() && d.tpm.is_none() {
            return true;
        }
        let mut w = lock(&self.window);
        w.roll(now);
        d.rpm.is_none_or(|rpm| w.requests < rpm)
            && d.tpm.is_none_or(|tpm| w.tokens + estimated_tokens <= tpm)
    }

    /// Counts a request starting (in flight, and in this minute's window).
    pub(crate) fn begin(self: &Arc<Self>, estimated_tokens: u64) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        {
            let mut w = lock(&self.window);
            w.roll(Instant::now());
            w.requests += 1;
            w.tokens += estimated_tokens;
        }
        InFlight {
            stats: self.clone(),
            estimated_tokens,
            started: Instant::now(),
        }
    }

    pub(crate) fn observe_ttft(&self, ttft: Duration) {
        lock(&self.ttft).observe(ttft.as_secs_f64());
    }
}

/// A request being served; decrements the in-flight count when dropped.
pub(crate) struct InFlight {
    stats: Arc<DeploymentStats>,
    estimated_tokens: u64,
    pub(crate) started: Instant,
}

impl InFlight {
    /// Records the real token count and latency of a finished call.
    pub(crate) fn finish(&self, total_tokens: Option<u64>, output_tokens: Option<u64>) {
        let elapsed = self.started.elapsed().as_secs_f64();
        if let Some(total) = total_tokens {
            let mut w = lock(&self.stats.window);
            w.roll(Instant::now());
            w.tokens = w.tokens.saturating_sub(self.estimated_tokens) + total;
        }
        lock(&self.stats.latency).observe(elapsed);
        if let Some(out) = output_tokens.filter(|n| *n > 0) {
            lock(&self.stats.latency_per_token).observe(elapsed / out as f64);
        }
    }

    pub(crate) fn stats(&self) -> &Arc<DeploymentStats> {
        &self.stats
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
