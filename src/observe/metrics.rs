//! Metrics through the [`metrics`] facade: every name in one place.
//!
//! Nothing here needs a recorder: without one (a library user who did not
//! install any) every call is a no-op. The proxy installs a Prometheus
//! recorder and serves it at `GET /metrics`.
//!
//! Names follow LiteLLM's Prometheus integration where a dashboard built for
//! LiteLLM reads them (`litellm_*`; counters carry the `_total` suffix that
//! LiteLLM's Python client adds), and `tollgate_*` for what LiteLLM does not
//! have. Label values always come from a bounded set: the configured model
//! groups, deployments and providers, HTTP status codes, error classes, and —
//! only when the operator turns them on ([`KeyLabels`]) — key aliases, teams
//! and internal users. The model name a client sent is never a label (a
//! request for an unknown model is counted under `requested_model="unrouted"`),
//! and neither is a key hash or an end-user id.
//!
//! # Hot path
//!
//! [`MetricsSink`] turns each [`CompletionRecord`] into metric updates through
//! handles cached per label set (a lock-free read of an immutable map; a new
//! label set copies the map once), so a request costs a few atomic adds and
//! no allocation. Deployment metrics are cached per deployment the same way.
//!
//! # For the other layers
//!
//! Rate limits, budgets, retries, fallbacks and callbacks report through the
//! small functions at the bottom of this module ([`rate_limited`],
//! [`budget_rejected`], [`remaining_budget`], [`soft_budget_alert`], …).
//!
//! ```
//! use tollgate::observe::metrics;
//!
//! // Safe to call with or without an installed recorder.
//! metrics::budget_rejected(metrics::ScopeKind::Key);
//! metrics::rate_limited(metrics::ScopeKind::Team, metrics::LimitKind::Rpm);
//! metrics::remaining_budget(metrics::ScopeKind::Team, "ml-team", 12.5);
//! ```

use super::{CompletionRecord, RecordSink, RecordStatus};
use crate::error::Error;
use crate::types::DeploymentInfo;
use arc_swap::ArcSwap;
use metrics::{Counter, Gauge, Histogram, Label, SharedString};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

// ---------------------------------------------------------------- names ----

/// Requests answered by the proxy, by `requested_model` (model group), `model_id`, `api_provider`, `status_code`.
pub const PROXY_TOTAL_REQUESTS: &str = "litellm_proxy_total_requests_metric_total";
/// Failed requests, by `requested_model`, `exception_status`, `exception_class`.
pub const PROXY_FAILED_REQUESTS: &str = "litellm_proxy_failed_requests_metric_total";
/// Requests that reached a deployment, by `model` (LiteLLM model string), `requested_model`, `api_provider`, `status_code`.
pub const REQUESTS: &str = "litellm_requests_metric_total";
/// Spend in USD, by `model`, `requested_model` (a gauge that only grows: metrics counters are integers).
pub const SPEND: &str = "litellm_spend_metric_total";
/// Input + output tokens, by `model`, `requested_model`.
pub const TOTAL_TOKENS: &str = "litellm_total_tokens_metric_total";
/// Input (prompt) tokens.
pub const INPUT_TOKENS: &str = "litellm_input_tokens_metric_total";
/// Output (completion) tokens.
pub const OUTPUT_TOKENS: &str = "litellm_output_tokens_metric_total";
/// Prompt tokens read from the provider's prompt cache.
pub const CACHED_TOKENS: &str = "tollgate_cached_tokens_total";
/// Seconds from arrival to the last byte, by `model`, `requested_model`.
pub const REQUEST_TOTAL_LATENCY: &str = "litellm_request_total_latency_metric";
/// Seconds spent upstream (to the response head for streams), by `model`, `requested_model`.
pub const LLM_API_LATENCY: &str = "litellm_llm_api_latency_metric";
/// Seconds the gateway added (arrival to response head, minus upstream time).
pub const OVERHEAD_LATENCY: &str = "litellm_overhead_latency_metric";
/// Seconds to the first token of a stream.
pub const TIME_TO_FIRST_TOKEN: &str = "litellm_llm_api_time_to_first_token_metric";
/// Seconds per output token, by deployment.
pub const LATENCY_PER_OUTPUT_TOKEN: &str = "litellm_deployment_latency_per_output_token";
/// Requests being served now.
pub const IN_FLIGHT: &str = "litellm_in_flight_requests";
/// Answers served from the response cache, by `requested_model`.
pub const CACHE_HITS: &str = "tollgate_cache_hits_total";

/// Upstream attempts per deployment (`litellm_model_name`, `model_id`, `api_base`, `api_provider`, `requested_model`).
pub const DEPLOYMENT_TOTAL_REQUESTS: &str = "litellm_deployment_total_requests_total";
/// Successful upstream attempts per deployment.
pub const DEPLOYMENT_SUCCESS: &str = "litellm_deployment_success_responses_total";
/// Failed upstream attempts per deployment (+ `exception_status`, `exception_class`).
pub const DEPLOYMENT_FAILURE: &str = "litellm_deployment_failure_responses_total";
/// Deployment health: 0 healthy, 1 partial outage (last attempt failed), 2 complete outage (cooling down or failing checks).
pub const DEPLOYMENT_STATE: &str = "litellm_deployment_state";
/// Cooldowns started per deployment (+ `exception_status`).
pub const DEPLOYMENT_COOLED_DOWN: &str = "litellm_deployment_cooled_down_total";
/// Fallbacks that answered, by `requested_model`, `fallback_model`.
pub const FALLBACK_SUCCESS: &str = "litellm_deployment_successful_fallbacks_total";
/// Fallbacks that failed, by `requested_model`, `fallback_model`.
pub const FALLBACK_FAILURE: &str = "litellm_deployment_failed_fallbacks_total";
/// Retries sent, by `exception_class` of the error that caused them.
pub const RETRIES: &str = "tollgate_retries_total";

/// Requests refused by a rate limit, by `scope` (key, team, user, end_user, model, global) and `limit` (rpm, tpm, parallel).
pub const RATE_LIMIT_REJECTIONS: &str = "tollgate_rate_limit_rejections_total";
/// Requests refused by a budget, by `scope`.
pub const BUDGET_REJECTIONS: &str = "tollgate_budget_rejections_total";
/// Soft-budget alerts raised, by `scope`.
pub const SOFT_BUDGET_ALERTS: &str = "tollgate_soft_budget_alerts_total";
/// Remaining budget of a key in USD, by `api_key_alias`.
pub const REMAINING_KEY_BUDGET: &str = "litellm_remaining_api_key_budget_metric";
/// Remaining budget of a team in USD, by `team`.
pub const REMAINING_TEAM_BUDGET: &str = "litellm_remaining_team_budget_metric";
/// Remaining budget of an internal user in USD, by `user`.
pub const REMAINING_USER_BUDGET: &str = "litellm_remaining_user_budget_metric";
/// Remaining budget of anything else, by `scope` and `name`.
pub const REMAINING_BUDGET: &str = "tollgate_remaining_budget_usd";

/// Records handed to a callback's queue, by `callback`.
pub const CALLBACK_QUEUED: &str = "tollgate_callback_queued_total";
/// Records dropped because a callback's queue was full, by `callback`.
pub const CALLBACK_DROPPED: &str = "tollgate_callback_dropped_total";
/// Records a callback failed to deliver (after its retries), by `callback`.
pub const CALLBACK_FAILED: &str = "tollgate_callback_failed_total";
/// Records waiting in a callback's queue, by `callback`.
pub const CALLBACK_QUEUE_DEPTH: &str = "tollgate_callback_queue_depth";

/// Buckets (seconds) of the latency histograms: LiteLLM's.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.00625, 0.0125, 0.025, 0.05, 0.1, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0,
    5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 9.0, 9.5, 10.0, 15.0, 20.0, 25.0, 30.0, 60.0, 120.0, 180.0,
    240.0, 300.0,
];

/// Every histogram this module records (to configure buckets for).
pub const HISTOGRAMS: &[&str] = &[
    REQUEST_TOTAL_LATENCY,
    LLM_API_LATENCY,
    OVERHEAD_LATENCY,
    TIME_TO_FIRST_TOKEN,
    LATENCY_PER_OUTPUT_TOKEN,
];

/// Label value for requests that never reached a deployment.
pub const UNROUTED: &str = "unrouted";

// ------------------------------------------------------------- labels ------

/// Which identity labels request metrics carry. All off by default: each one
/// multiplies the number of series by the number of keys, teams or users.
///
/// In the proxy: `litellm_settings.prometheus_metrics_labels: [api_key_alias, team, user]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyLabels {
    /// `api_key_alias` (the key's alias, never its hash).
    pub key_alias: bool,
    /// `team` (the team id).
    pub team: bool,
    /// `user` (the internal user id; never the request's `user` field).
    pub user: bool,
}

/// The HTTP status as a label value, from a fixed table (no allocation).
pub fn status_label(status: u16) -> &'static str {
    const CODES: &[(u16, &str)] = &[
        (200, "200"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (409, "409"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (429, "429"),
        (499, "499"),
        (500, "500"),
        (501, "501"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
        (529, "529"),
    ];
    CODES.iter().find(|(c, _)| *c == status).map_or(
        match status {
            200..=299 => "2xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "other",
        },
        |(_, s)| s,
    )
}

fn shared(s: &Arc<str>) -> SharedString {
    SharedString::from(s.clone())
}

// -------------------------------------------------------- record sink ------

/// The handles of one label set.
struct RequestHandles {
    // What the set was made for (checked on every hit).
    deployment: Option<Arc<DeploymentInfo>>,
    status: u16,
    alias: Option<Arc<str>>,
    team: Option<Arc<str>>,
    user: Option<Arc<str>>,

    proxy_requests: Counter,
    requests: Counter,
    spend: Gauge,
    total_tokens: Counter,
    input_tokens: Counter,
    output_tokens: Counter,
    cached_tokens: Counter,
    total_latency: Histogram,
    api_latency: Histogram,
    overhead: Histogram,
    ttft: Histogram,
    cache_hits: Counter,
}

impl RequestHandles {
    fn matches(&self, r: &CompletionRecord, labels: KeyLabels) -> bool {
        let same_dep = match (&self.deployment, &r.deployment) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        };
        same_dep
            && self.status == r.http_status
            && opt_eq(&self.alias, pick(labels.key_alias, &r.identity.key_alias))
            && opt_eq(&self.team, pick(labels.team, &r.identity.team_id))
            && opt_eq(&self.user, pick(labels.user, &r.identity.user_id))
    }

    fn new(r: &CompletionRecord, labels: KeyLabels) -> Self {
        let d = r.deployment.as_ref();
        let group = d.map_or(SharedString::const_str(UNROUTED), |d| {
            shared(&d.model_group)
        });
        let model = d.map_or(SharedString::const_str(UNROUTED), |d| shared(&d.model));
        let id = d.map_or(SharedString::const_str(UNROUTED), |d| shared(&d.id));
        let provider = d.map_or(SharedString::const_str(UNROUTED), |d| shared(&d.provider));
        let status = SharedString::const_str(status_label(r.http_status));
        let alias = pick(labels.key_alias, &r.identity.key_alias).cloned();
        let team = pick(labels.team, &r.identity.team_id).cloned();
        let user = pick(labels.user, &r.identity.user_id).cloned();
        let mut key: Vec<Label> = Vec::new();
        if labels.key_alias {
            key.push(Label::new("api_key_alias", opt_label(&alias)));
        }
        if labels.team {
            key.push(Label::new("team", opt_label(&team)));
        }
        if labels.user {
            key.push(Label::new("user", opt_label(&user)));
        }
        let with = |base: Vec<Label>| -> Vec<Label> {
            let mut v = base;
            v.extend(key.iter().cloned());
            v
        };
        let by_group = with(vec![
            Label::new("requested_model", group.clone()),
            Label::new("model_id", id.clone()),
            Label::new("api_provider", provider.clone()),
            Label::new("status_code", status.clone()),
        ]);
        let by_model = with(vec![
            Label::new("model", model.clone()),
            Label::new("requested_model", group.clone()),
        ]);
        let by_model_status = with(vec![
            Label::new("model", model),
            Label::new("requested_model", group.clone()),
            Label::new("api_provider", provider),
            Label::new("status_code", status),
        ]);
        RequestHandles {
            deployment: r.deployment.clone(),
            status: r.http_status,
            alias,
            team,
            user,
            proxy_requests: metrics::counter!(PROXY_TOTAL_REQUESTS, by_group),
            requests: metrics::counter!(REQUESTS, by_model_status),
            spend: metrics::gauge!(SPEND, by_model.clone()),
            total_tokens: metrics::counter!(TOTAL_TOKENS, by_model.clone()),
            input_tokens: metrics::counter!(INPUT_TOKENS, by_model.clone()),
            output_tokens: metrics::counter!(OUTPUT_TOKENS, by_model.clone()),
            cached_tokens: metrics::counter!(CACHED_TOKENS, by_model.clone()),
            total_latency: metrics::histogram!(REQUEST_TOTAL_LATENCY, by_model.clone()),
            api_latency: metrics::histogram!(LLM_API_LATENCY, by_model.clone()),
            overhead: metrics::histogram!(OVERHEAD_LATENCY, by_model.clone()),
            ttft: metrics::histogram!(TIME_TO_FIRST_TOKEN, by_model),
            cache_hits: metrics::counter!(CACHE_HITS, "requested_model" => group),
        }
    }
}

fn pick(on: bool, v: &Option<Arc<str>>) -> Option<&Arc<str>> {
    if on { v.as_ref() } else { None }
}

fn opt_eq(a: &Option<Arc<str>>, b: Option<&Arc<str>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn opt_label(v: &Option<Arc<str>>) -> SharedString {
    v.as_ref().map_or(SharedString::const_str(""), |s| {
        SharedString::from(s.clone())
    })
}

/// Label sets cached at most; past this, metrics are still recorded, uncached.
const MAX_CACHED_SETS: usize = 20_000;

type Cache = crate::util::FastMap<u64, Vec<Arc<RequestHandles>>>;

/// A [`RecordSink`] that turns every record into metric updates. See the
/// [module docs](self).
///
/// Handles bind to the recorder installed when a label set is first seen:
/// install your recorder before the first request.
pub struct MetricsSink {
    labels: KeyLabels,
    cache: ArcSwap<Cache>,
    seed: foldhash::quality::RandomState,
}

impl std::fmt::Debug for MetricsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSink")
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl Default for MetricsSink {
    fn default() -> Self {
        MetricsSink::new(KeyLabels::default())
    }
}

impl MetricsSink {
    /// A sink adding the identity labels `labels` turns on.
    pub fn new(labels: KeyLabels) -> Self {
        MetricsSink {
            labels,
            cache: ArcSwap::from_pointee(Cache::default()),
            seed: Default::default(),
        }
    }

    fn hash(&self, r: &CompletionRecord) -> u64 {
        let mut h = self.seed.build_hasher();
        if let Some(d) = &r.deployment {
            d.id.hash(&mut h);
            d.model_group.hash(&mut h);
        }
        r.http_status.hash(&mut h);
        pick(self.labels.key_alias, &r.identity.key_alias).hash(&mut h);
        pick(self.labels.team, &r.identity.team_id).hash(&mut h);
        pick(self.labels.user, &r.identity.user_id).hash(&mut h);
        h.finish()
    }

    fn handles(&self, r: &CompletionRecord) -> Arc<RequestHandles> {
        let hash = self.hash(r);
        if let Some(found) = self
            .cache
            .load()
            .get(&hash)
            .and_then(|v| v.iter().find(|h| h.matches(r, self.labels)))
        {
            return found.clone();
        }
        let made = Arc::new(RequestHandles::new(r, self.labels));
        let size: usize = self.cache.load().values().map(Vec::len).sum();
        if size < MAX_CACHED_SETS {
            self.cache.rcu(|old| {
                let mut next = Cache::clone(old);
                let slot = next.entry(hash).or_default();
                if !slot.iter().any(|h| h.matches(r, self.labels)) {
                    slot.push(made.clone());
                }
                next
            });
        }
        made
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl RecordSink for MetricsSink {
    fn wants_attempts(&self) -> bool {
        false
    }

    fn record(&self, r: &CompletionRecord) {
        let h = self.handles(r);
        h.proxy_requests.increment(1);
        h.total_latency.record(secs(r.latency));
        if r.status == RecordStatus::Failure
            && let Some(e) = &r.error
        {
            let group = r
                .deployment
                .as_ref()
                .map_or(SharedString::const_str(UNROUTED), |d| {
                    shared(&d.model_group)
                });
            metrics::counter!(
                PROXY_FAILED_REQUESTS,
                "requested_model" => group,
                "exception_status" => status_label(r.http_status),
                "exception_class" => e.class,
            )
            .increment(1);
        }
        if r.cache_hit {
            h.cache_hits.increment(1);
        }
        if r.deployment.is_none() {
            return;
        }
        h.requests.increment(1);
        if let Some(u) = &r.usage {
            h.input_tokens.increment(u.prompt_tokens);
            h.output_tokens.increment(u.completion_tokens);
            h.total_tokens.increment(u.total_tokens);
            let cached = u.cached_tokens();
            if cached > 0 {
                h.cached_tokens.increment(cached);
            }
        }
        if let Some(cost) = r.cost {
            h.spend.increment(cost.as_f64());
        }
        if let Some(up) = r.upstream_latency {
            h.api_latency.record(secs(up));
        }
        if let Some(o) = r.overhead {
            h.overhead.record(secs(o));
        }
        if let Some(t) = r.time_to_first_token {
            h.ttft.record(secs(t));
        }
    }
}

// --------------------------------------------------------- deployments -----

struct DeploymentHandles {
    total: Counter,
    success: Counter,
    state: Gauge,
    per_token: Histogram,
}

/// Metrics of one deployment's upstream attempts, registered on first use.
#[derive(Default)]
pub struct DeploymentMetrics {
    handles: OnceLock<DeploymentHandles>,
}

impl std::fmt::Debug for DeploymentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeploymentMetrics")
    }
}

fn deployment_labels(d: &DeploymentInfo) -> Vec<Label> {
    vec![
        Label::new("litellm_model_name", shared(&d.model)),
        Label::new("model_id", shared(&d.id)),
        Label::new(
            "api_base",
            d.api_base
                .as_ref()
                .map_or(SharedString::const_str(""), shared),
        ),
        Label::new("api_provider", shared(&d.provider)),
    ]
}

/// Health of a deployment as `litellm_deployment_state` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeploymentState {
    /// Taking traffic, last attempt fine.
    Healthy = 0,
    /// The last attempt failed.
    PartialOutage = 1,
    /// Cooling down, or failing its health checks.
    CompleteOutage = 2,
}

impl DeploymentMetrics {
    fn get(&self, d: &DeploymentInfo) -> &DeploymentHandles {
        self.handles.get_or_init(|| {
            let mut with_group = deployment_labels(d);
            with_group.push(Label::new("requested_model", shared(&d.model_group)));
            DeploymentHandles {
                total: metrics::counter!(DEPLOYMENT_TOTAL_REQUESTS, with_group.clone()),
                success: metrics::counter!(DEPLOYMENT_SUCCESS, with_group),
                state: metrics::gauge!(DEPLOYMENT_STATE, deployment_labels(d)),
                per_token: metrics::histogram!(LATENCY_PER_OUTPUT_TOKEN, deployment_labels(d)),
            }
        })
    }

    /// An attempt on `d` succeeded after `latency`, producing `output_tokens`.
    pub fn success(&self, d: &DeploymentInfo, latency: Duration, output_tokens: Option<u64>) {
        let h = self.get(d);
        h.total.increment(1);
        h.success.increment(1);
        h.state.set(DeploymentState::Healthy as u8 as f64);
        if let Some(n) = output_tokens.filter(|n| *n > 0) {
            h.per_token.record(latency.as_secs_f64() / n as f64);
        }
    }

    /// An attempt on `d` failed with `err`.
    pub fn failure(&self, d: &DeploymentInfo, err: &Error) {
        let h = self.get(d);
        h.total.increment(1);
        let mut labels = deployment_labels(d);
        labels.push(Label::new("requested_model", shared(&d.model_group)));
        labels.push(Label::new(
            "exception_status",
            status_label(err.status().as_u16()),
        ));
        labels.push(Label::new("exception_class", err.kind().litellm_class()));
        metrics::counter!(DEPLOYMENT_FAILURE, labels).increment(1);
        if err.provider().is_some() {
            h.state.set(DeploymentState::PartialOutage as u8 as f64);
        }
    }

    /// `d` started a cooldown after `err`.
    pub fn cooled_down(&self, d: &DeploymentInfo, err: &Error) {
        let h = self.get(d);
        h.state.set(DeploymentState::CompleteOutage as u8 as f64);
        let mut labels = deployment_labels(d);
        labels.push(Label::new(
            "exception_status",
            status_label(err.status().as_u16()),
        ));
        metrics::counter!(DEPLOYMENT_COOLED_DOWN, labels).increment(1);
    }

    /// Sets the state (health checks).
    pub fn set_state(&self, d: &DeploymentInfo, state: DeploymentState) {
        self.get(d).state.set(state as u8 as f64);
    }
}

// ------------------------------------------------ functions for layers -----

/// Whose limit or budget (the scopes of [`crate::limits`]).
pub use crate::limits::ScopeKind;

/// Which limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// Requests per minute.
    Rpm,
    /// Tokens per minute.
    Tpm,
    /// Parallel requests.
    Parallel,
}

impl LimitKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Rpm => "rpm",
            LimitKind::Tpm => "tpm",
            LimitKind::Parallel => "parallel",
        }
    }
}

/// A request was refused by a rate limit of `scope`.
pub fn rate_limited(scope: ScopeKind, limit: LimitKind) {
    metrics::counter!(RATE_LIMIT_REJECTIONS, "scope" => scope.as_str(), "limit" => limit.as_str())
        .increment(1);
}

/// A request was refused by a budget of `scope`.
pub fn budget_rejected(scope: ScopeKind) {
    metrics::counter!(BUDGET_REJECTIONS, "scope" => scope.as_str()).increment(1);
}

/// A soft budget of `scope` was crossed.
pub fn soft_budget_alert(scope: ScopeKind) {
    metrics::counter!(SOFT_BUDGET_ALERTS, "scope" => scope.as_str()).increment(1);
}

/// The remaining budget (USD) of `name` (a key alias, team id or user id —
/// never a key hash or secret; call it only for scopes that exist in storage,
/// so the label stays bounded).
pub fn remaining_budget(scope: ScopeKind, name: &str, usd: f64) {
    remaining_budget_gauge(scope, name).set(usd);
}

/// The gauge [`remaining_budget`] sets, to keep and set again (a handle from
/// the recorder installed when it is made).
pub fn remaining_budget_gauge(scope: ScopeKind, name: &str) -> metrics::Gauge {
    let name = name.to_owned();
    match scope {
        ScopeKind::Key => metrics::gauge!(REMAINING_KEY_BUDGET, "api_key_alias" => name),
        ScopeKind::Team => metrics::gauge!(REMAINING_TEAM_BUDGET, "team" => name),
        ScopeKind::User => metrics::gauge!(REMAINING_USER_BUDGET, "user" => name),
        other => metrics::gauge!(REMAINING_BUDGET, "scope" => other.as_str(), "name" => name),
    }
}

/// A retry is about to be sent after `err`.
pub fn retried(err: &Error) {
    metrics::counter!(RETRIES, "exception_class" => err.kind().litellm_class()).increment(1);
}

/// A fallback from `requested` to `fallback` answered (`ok`) or failed. Both
/// names must be configured group names (or a fixed placeholder).
pub fn fallback(requested: &str, fallback: &str, ok: bool) {
    let name = if ok {
        FALLBACK_SUCCESS
    } else {
        FALLBACK_FAILURE
    };
    metrics::counter!(name, "requested_model" => requested.to_owned(), "fallback_model" => fallback.to_owned())
        .increment(1);
}

/// The in-flight gauge.
pub(crate) fn in_flight() -> Gauge {
    metrics::gauge!(IN_FLIGHT)
}

/// Per-callback queue handles.
#[derive(Clone)]
pub(crate) struct CallbackHandles {
    pub(crate) queued: Counter,
    pub(crate) dropped: Counter,
    pub(crate) failed: Counter,
    pub(crate) depth: Gauge,
}

impl CallbackHandles {
    pub(crate) fn new(name: &str) -> Self {
        let n = || SharedString::from(name.to_owned());
        CallbackHandles {
            queued: metrics::counter!(CALLBACK_QUEUED, "callback" => n()),
            dropped: metrics::counter!(CALLBACK_DROPPED, "callback" => n()),
            failed: metrics::counter!(CALLBACK_FAILED, "callback" => n()),
            depth: metrics::gauge!(CALLBACK_QUEUE_DEPTH, "callback" => n()),
        }
    }
}

/// A recorder for tests: counters summed and gauges' last values, by
/// `name{label=value,…}`, and how often each gauge was registered. Install it
/// with `metrics::with_local_recorder`.
#[cfg(test)]
pub(crate) mod recorded {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Seen {
        counters: BTreeMap<String, u64>,
        /// Last value, registrations.
        gauges: BTreeMap<String, (f64, u32)>,
    }

    /// See the [module](self).
    #[derive(Clone, Default)]
    pub(crate) struct Recorded(Arc<Mutex<Seen>>);

    impl Recorded {
        /// The sum of a counter's increments.
        pub(crate) fn counter(&self, name: &str) -> Option<u64> {
            self.0.lock().unwrap().counters.get(name).copied()
        }

        /// A gauge's last value and how often it was registered.
        pub(crate) fn gauge(&self, name: &str) -> Option<(f64, u32)> {
            self.0.lock().unwrap().gauges.get(name).copied()
        }

        /// Runs `test` to its end on a current-thread runtime of this
        /// thread, with this recorder taking what it records.
        pub(crate) fn block_on<F: std::future::Future>(&self, test: F) -> F::Output {
            metrics::with_local_recorder(self, || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(test)
            })
        }
    }

    fn name(key: &metrics::Key) -> String {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    /// One registered counter or gauge.
    struct Handle(String, Recorded);

    impl metrics::CounterFn for Handle {
        fn increment(&self, value: u64) {
            *self
                .1
                .0
                .lock()
                .unwrap()
                .counters
                .entry(self.0.clone())
                .or_default() += value;
        }
        fn absolute(&self, _: u64) {}
    }

    impl metrics::GaugeFn for Handle {
        fn increment(&self, _: f64) {}
        fn decrement(&self, _: f64) {}
        fn set(&self, value: f64) {
            self.1
                .0
                .lock()
                .unwrap()
                .gauges
                .entry(self.0.clone())
                .or_default()
                .0 = value;
        }
    }

    impl metrics::Recorder for Recorded {
        fn describe_counter(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn register_counter(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Counter {
            metrics::Counter::from_arc(Arc::new(Handle(name(key), self.clone())))
        }
        fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            let name = name(key);
            self.0
                .lock()
                .unwrap()
                .gauges
                .entry(name.clone())
                .or_default()
                .1 += 1;
            metrics::Gauge::from_arc(Arc::new(Handle(name, self.clone())))
        }
        fn register_histogram(
            &self,
            _: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Histogram {
            metrics::Histogram::noop()
        }
    }
}
