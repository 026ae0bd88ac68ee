//! [`Router`]: model name → model group → one deployment.
//!
//! A model group is every deployment configured under one `model_name`
//! (LiteLLM's term). The router resolves the name the client sent — exactly,
//! through `model_group_alias`, or through a wildcard group (`openai/*`, `*`;
//! the most specific pattern wins) — narrows the group to the deployments
//! that may serve now, lets the [strategy](strategy) pick one, and calls it.
//! The answer's `model` is the name the client asked for; which deployment
//! served is in [`crate::types::ResponseMeta::deployment`].
//!
//! # Semantics
//!
//! Eligible deployments: not cooling down ([`cooldown`]); under their
//! `max_parallel_requests`, `rpm` and `tpm` caps; matching the request's tags
//! when `enable_tag_filtering` is on (request tags from `metadata.tags`,
//! `tags` or `x-litellm-tags`; deployments tagged `default` serve requests
//! whose tags match nothing, and untagged requests); with a context window
//! big enough for the prompt when pre-call checks are on. Of those, only the
//! lowest `order` is used: higher orders are the overflow.
//!
//! When nothing is eligible the caller gets a 429 with `retry-after` set to
//! the time until the first deployment recovers, and a message naming the
//! last upstream error — never a bare "no deployments". A prompt too large
//! for every deployment is a 400 `context_length_exceeded` before any
//! upstream call.
//!
//! Every outcome feeds the deployment's live statistics (in flight, requests
//! and tokens this minute, latency and time-to-first-token EWMAs) and its
//! health: upstream failures count towards cooldowns, including failures in
//! the middle of a stream. A 429 or 529 is a failure, never a fast success.
//!
//! Cancel safety: a request dropped while in flight releases its in-flight
//! slot (the slot is a guard); a dropped stream counts as neither success
//! nor failure.
//!
//! ```
//! use tollgate::router::{Deployment, Router};
//! use tollgate::provider::{Mock, MockConfig};
//! use tollgate::ChatRequest;
//! use tower::ServiceExt;
//!
//! # tokio_test::block_on(async {
//! let router = Router::builder()
//!     .deployment(Deployment::chat("fast", Mock::new(MockConfig::new("mock/a"))).weight(3.0))
//!     .deployment(Deployment::chat("fast", Mock::new(MockConfig::new("mock/b"))).weight(1.0))
//!     .alias("quick", "fast")
//!     .build();
//! let req = ChatRequest::from_json(br#"{"model":"quick","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
//! let resp = router.oneshot(req).await.unwrap();
//! assert_eq!(resp.completion().unwrap().model, "quick");
//! # });
//! ```

pub mod cooldown;
mod deployment;
pub mod health;
pub mod strategy;

pub use cooldown::{CooldownPolicy, ErrorClass};
pub use deployment::{
    ChatService, Deployment, DeploymentStats, DescribeDeployment, EmbeddingService,
};
pub use strategy::{PickContext, RoutingStrategy, Strategy};

use crate::context::{Tags, UpstreamModel};
use crate::error::{Error, ErrorKind, LimitSource};
use crate::provider::BoxFuture;
use crate::stream::{ChatStream, StreamEnd, StreamObserver};
use crate::types::{
    ChatBody, ChatChunk, ChatRequest, ChatResponse, EmbeddingOutput, EmbeddingRequest,
};
use deployment::InFlight;
use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

/// The deployments of one model group.
#[derive(Clone, Debug)]
pub struct ModelGroup {
    /// The group's name (`model_name`), possibly a wildcard pattern.
    pub name: Arc<str>,
    /// Its deployments, in configuration order.
    pub deployments: Vec<Deployment>,
}

/// An entry of the model list (`GET /v1/models`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ModelCard {
    /// The name clients use.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix seconds (the gateway's start).
    pub created: i64,
    /// The provider of the group's first deployment.
    pub owned_by: String,
}

/// Routing settings (LiteLLM's `router_settings`).
#[derive(Clone)]
pub struct RouterConfig {
    /// How a deployment is picked among the eligible ones.
    pub strategy: Arc<dyn RoutingStrategy>,
    /// When deployments are cooled down.
    pub cooldown: CooldownPolicy,
    /// Route by request tags.
    pub enable_tag_filtering: bool,
    /// A deployment matches when it has any (true) or all (false) of the request's tags.
    pub tag_filtering_match_any: bool,
    /// Skip deployments whose context window is smaller than the prompt.
    pub pre_call_checks: bool,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            strategy: Arc::new(Strategy::SimpleShuffle),
            cooldown: CooldownPolicy::default(),
            enable_tag_filtering: false,
            tag_filtering_match_any: true,
            pre_call_checks: false,
        }
    }
}

impl std::fmt::Debug for RouterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterConfig")
            .field("cooldown", &self.cooldown)
            .field("enable_tag_filtering", &self.enable_tag_filtering)
            .field("pre_call_checks", &self.pre_call_checks)
            .finish_non_exhaustive()
    }
}

struct State {
    /// Told about every cooldown this router starts (shared cooldowns).
    cooldown_sink: std::sync::OnceLock<Arc<dyn CooldownSink>>,
    groups: HashMap<Arc<str>, ModelGroup>,
    /// Wildcard groups, most specific (longest literal text) first.
    patterns: Vec<Arc<str>>,
    aliases: HashMap<String, (Arc<str>, bool)>,
    config: RouterConfig,
    created: i64,
}

/// Routes requests to deployments by model name. See the [module docs](self).
#[derive(Clone)]
pub struct Router {
    state: Arc<State>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("groups", &self.state.groups.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Builds a [`Router`].
#[derive(Default)]
pub struct RouterBuilder {
    deployments: Vec<Deployment>,
    aliases: Vec<(String, String, bool)>,
    config: RouterConfig,
}

impl RouterBuilder {
    /// Adds a deployment to the group named in its info.
    pub fn deployment(mut self, deployment: Deployment) -> Self {
        self.deployments.push(deployment);
        self
    }

    /// Makes `alias` another name for `group` (`model_group_alias`).
    pub fn alias(mut self, alias: impl Into<String>, group: impl Into<String>) -> Self {
        self.aliases.push((alias.into(), group.into(), false));
        self
    }

    /// Like [`alias`](Self::alias), but not listed in `/v1/models`.
    pub fn hidden_alias(mut self, alias: impl Into<String>, group: impl Into<String>) -> Self {
        self.aliases.push((alias.into(), group.into(), true));
        self
    }

    /// Sets the routing settings.
    pub fn config(mut self, config: RouterConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the strategy.
    pub fn strategy(mut self, strategy: impl RoutingStrategy) -> Self {
        self.config.strategy = Arc::new(strategy);
        self
    }

    /// Sets the cooldown policy.
    pub fn cooldown(mut self, policy: CooldownPolicy) -> Self {
        self.config.cooldown = policy;
        self
    }

    /// Builds the router.
    pub fn build(self) -> Router {
        let mut groups: HashMap<Arc<str>, ModelGroup> = HashMap::new();
        for d in self.deployments {
            let name = d.info.model_group.clone();
            groups
                .entry(name.clone())
                .or_insert_with(|| ModelGroup {
                    name,
                    deployments: Vec::new(),
                })
                .deployments
                .push(d);
        }
        let mut patterns: Vec<Arc<str>> =
            groups.keys().filter(|k| k.contains('*')).cloned().collect();
        patterns.sort_by_key(|p| std::cmp::Reverse(p.len() - 1));
        let aliases = self
            .aliases
            .into_iter()
            .filter_map(|(alias, group, hidden)| {
                let key = groups.get_key_value(group.as_str())?.0.clone();
                Some((alias, (key, hidden)))
            })
            .collect();
        Router {
            state: Arc::new(State {
                cooldown_sink: std::sync::OnceLock::new(),
                groups,
                patterns,
                aliases,
                config: self.config,
                created: crate::util::unix_now(),
            }),
        }
    }
}

/// The text a `*` pattern captures from `model`, if it matches.
fn capture<'a>(pattern: &str, model: &'a str) -> Option<&'a str> {
    let (prefix, suffix) = pattern.split_once('*')?;
    if model.len() < prefix.len() + suffix.len() {
        return None;
    }
    let rest = model.strip_prefix(prefix)?;
    rest.strip_suffix(suffix)
}

/// Why no deployment was eligible.
#[derive(Default)]
struct Ineligible {
    cooling: Option<Duration>,
    last_error: Option<String>,
    at_capacity: bool,
    too_small: Option<u64>,
    tags: bool,
}

impl Router {
    /// Starts a builder.
    pub fn builder() -> RouterBuilder {
        RouterBuilder::default()
    }

    /// The group a client-facing name resolves to (exact name, alias, then wildcard).
    pub fn group(&self, name: &str) -> Option<&ModelGroup> {
        self.resolve(name).map(|(g, _)| g)
    }

    /// The group and, for a wildcard group, the captured text.
    fn resolve<'a, 'n>(&'a self, name: &'n str) -> Option<(&'a ModelGroup, Option<&'n str>)> {
        let s = &self.state;
        if let Some(g) = s.groups.get(name) {
            return Some((g, None));
        }
        if let Some((g, _)) = s.aliases.get(name) {
            return s.groups.get(&**g).map(|g| (g, None));
        }
        s.patterns.iter().find_map(|p| {
            let cap = capture(p, name)?;
            s.groups.get(&**p).map(|g| (g, Some(cap)))
        })
    }

    /// Reports the cooldowns this router starts to `sink` (once; later calls
    /// are ignored and return false).
    pub fn set_cooldown_sink(&self, sink: Arc<dyn CooldownSink>) -> bool {
        self.state.cooldown_sink.set(sink).is_ok()
    }

    /// Cools deployment `deployment_id` down for `left` (learned from another
    /// replica), unless it already cools down longer. Returns whether such a
    /// deployment exists.
    pub fn apply_cooldown(&self, deployment_id: &str, left: Duration) -> bool {
        let until = Instant::now() + left;
        let mut found = false;
        for d in self
            .state
            .groups
            .values()
            .flat_map(|g| g.deployments.iter())
            .filter(|d| &*d.info.id == deployment_id)
        {
            found = true;
            let mut h = d
                .stats()
                .health
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if h.cooldown_until.is_none_or(|u| u < until) {
                h.cooldown_until = Some(until);
            }
        }
        found
    }

    /// The ids of every deployment.
    pub fn deployment_ids(&self) -> Vec<Arc<str>> {
        let mut ids: Vec<Arc<str>> = self
            .state
            .groups
            .values()
            .flat_map(|g| g.deployments.iter().map(|d| d.info.id.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Every group.
    pub fn groups(&self) -> impl Iterator<Item = &ModelGroup> {
        self.state.groups.values()
    }

    /// The routing settings.
    pub fn config(&self) -> &RouterConfig {
        &self.state.config
    }

    /// The model list: every non-wildcard group and visible alias, sorted by name.
    pub fn models(&self) -> Vec<ModelCard> {
        let s = &self.state;
        let mut out: Vec<ModelCard> = s
            .groups
            .values()
            .filter(|g| !g.name.contains('*'))
            .map(|g| self.card(&g.name, g))
            .chain(
                s.aliases
                    .iter()
                    .filter(|(_, (_, hidden))| !hidden)
                    .filter_map(|(alias, (group, _))| {
                        s.groups.get(&**group).map(|g| self.card(alias, g))
                    }),
            )
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// One entry of the model list.
    pub fn model(&self, name: &str) -> Option<ModelCard> {
        self.group(name).map(|g| self.card(name, g))
    }

    fn card(&self, id: &str, group: &ModelGroup) -> ModelCard {
        ModelCard {
            id: id.to_owned(),
            object: "model",
            created: self.state.created,
            owned_by: group
                .deployments
                .first()
                .map(|d| d.info.provider.to_string())
                .unwrap_or_default(),
        }
    }

    /// The deployments of `group` that may serve `req` now (before `order`).
    fn eligible<'a>(
        &self,
        group: &'a ModelGroup,
        embeddings: bool,
        tags: Option<&[String]>,
        prompt_tokens: Option<u64>,
        why: &mut Ineligible,
    ) -> Vec<&'a Deployment> {
        let now = Instant::now();
        let cfg = &self.state.config;
        let mut tagged: Vec<&Deployment> = group
            .deployments
            .iter()
            .filter(|d| {
                if embeddings {
                    d.embeddings.is_some()
                } else {
                    d.chat.is_some()
                }
            })
            .collect();
        if cfg.enable_tag_filtering {
            tagged = filter_tags(tagged, tags.unwrap_or(&[]), cfg.tag_filtering_match_any);
            if tagged.is_empty() {
                why.tags = true;
            }
        }
        let estimated = prompt_tokens.unwrap_or(0);
        tagged
            .into_iter()
            .filter(|d| {
                let health = d
                    .stats
                    .health
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(left) = health.remaining(now) {
                    why.cooling = Some(why.cooling.map_or(left, |c| c.min(left)));
                    if health.last_error.is_some() {
                        why.last_error.clone_from(&health.last_error);
                    }
                    return false;
                }
                true
            })
            .filter(|d| {
                let fits = match (
                    prompt_tokens,
                    d.price.as_ref().and_then(|p| p.max_input_tokens),
                ) {
                    (Some(n), Some(max)) => n <= max,
                    _ => true,
                };
                if !fits {
                    why.too_small = Some(prompt_tokens.unwrap_or(0));
                }
                fits
            })
            .filter(|d| {
                let room = d.stats.has_room(d, estimated, now);
                if !room {
                    why.at_capacity = true;
                }
                room
            })
            .collect()
    }

    fn no_deployment(&self, group: &ModelGroup, why: Ineligible) -> Error {
        if let Some(n) = why.too_small {
            let largest = group
                .deployments
                .iter()
                .filter_map(|d| d.price.as_ref().and_then(|p| p.max_input_tokens))
                .max()
                .unwrap_or(0);
            return Error::new(
                ErrorKind::ContextWindowExceeded,
                format!(
                    "the prompt has about {n} tokens, more than the largest context window of `{}` ({largest} tokens)",
                    group.name
                ),
            )
            .with_param("messages");
        }
        if let Some(wait) = why.cooling {
            let last = why
                .last_error
                .map(|e| format!(" Last upstream error: {e}"))
                .unwrap_or_default();
            return Error::new(
                ErrorKind::RateLimited(LimitSource::Upstream),
                format!(
                    "No deployment of `{}` can take requests right now: all are cooling down after upstream errors; the first recovers in {:.1}s.{last}",
                    group.name,
                    wait.as_secs_f64()
                ),
            )
            .with_code("deployments_cooling_down")
            .with_retry_after(wait);
        }
        if why.at_capacity {
            return Error::new(
                ErrorKind::RateLimited(LimitSource::Gateway),
                format!(
                    "Every deployment of `{}` is at its configured rpm, tpm or parallel-request limit.",
                    group.name
                ),
            )
            .with_code("deployment_capacity")
            .with_retry_after(Duration::from_secs(1));
        }
        if why.tags {
            return Error::bad_request(format!(
                "no deployment of `{}` matches the request's tags",
                group.name
            ))
            .with_param("tags");
        }
        Error::new(
            ErrorKind::ServiceUnavailable,
            format!(
                "`{}` has no deployment for this kind of request",
                group.name
            ),
        )
    }

    fn pick<'a>(&self, eligible: &[&'a Deployment], stream: bool) -> &'a Deployment {
        let min_order = eligible
            .iter()
            .map(|d| d.order.unwrap_or(u32::MAX))
            .min()
            .unwrap_or(u32::MAX);
        let lowest: Vec<&Deployment> = eligible
            .iter()
            .filter(|d| d.order.unwrap_or(u32::MAX) == min_order)
            .copied()
            .collect();
        if lowest.len() == 1 {
            return lowest[0];
        }
        self.state.config.strategy.pick(
            &lowest,
            &PickContext {
                stream,
                random: fastrand::f64(),
            },
        )
    }
}

fn filter_tags<'a>(
    deployments: Vec<&'a Deployment>,
    tags: &[String],
    any: bool,
) -> Vec<&'a Deployment> {
    let is_default = |d: &&Deployment| d.tags.iter().any(|t| t == "default");
    if tags.is_empty() {
        let defaults: Vec<&Deployment> = deployments.iter().copied().filter(is_default).collect();
        return if defaults.is_empty() {
            deployments
        } else {
            defaults
        };
    }
    let matching: Vec<&Deployment> = deployments
        .iter()
        .copied()
        .filter(|d| {
            if any {
                tags.iter().any(|t| d.tags.contains(t))
            } else {
                tags.iter().all(|t| d.tags.contains(t))
            }
        })
        .collect();
    if matching.is_empty() {
        deployments.into_iter().filter(is_default).collect()
    } else {
        matching
    }
}

/// Marks an error of a deployment's stream (a broken or silent connection, a
/// malformed chunk, an idle timeout) as the upstream's, so that it counts
/// towards cooldowns and may be retried or fall back like any upstream error.
fn blame_upstream(err: Error, provider: &Arc<str>, deployment: &Arc<str>) -> Error {
    let err = if err.provider().is_none() {
        err.with_provider(provider.clone())
    } else {
        err
    };
    if err.deployment().is_none() {
        err.with_deployment(deployment.clone())
    } else {
        err
    }
}

/// Whether another deployment of the group could take a retry now.
fn others_available(group: &ModelGroup, not: &Arc<str>) -> bool {
    let now = Instant::now();
    group.deployments.iter().any(|d| {
        &d.info.id != not
            && d.chat.is_some()
            && d.stats
                .health
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remaining(now)
                .is_none()
    })
}

fn record_failure(router: &Router, group: &ModelGroup, stats: &DeploymentStats, err: &Error) {
    let now = Instant::now();
    let cooled = {
        let mut h = stats
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        h.fail(
            err,
            &router.state.config.cooldown,
            group.deployments.len(),
            now,
        )
        .then(|| h.remaining(now))
        .flatten()
    };
    if let Some(left) = cooled
        && let Some(d) = group
            .deployments
            .iter()
            .find(|d| std::ptr::eq(d.stats(), stats))
    {
        stats.metrics.cooled_down(&d.info, err);
        if let Some(sink) = router.state.cooldown_sink.get() {
            sink.cooled_down(&d.info.id, left);
        }
    }
}

/// Hears about every cooldown a [`Router`] starts, to share it with other
/// replicas (which apply it with [`Router::apply_cooldown`]).
pub trait CooldownSink: Send + Sync + 'static {
    /// Deployment `deployment_id` cools down for `length`. Must not block.
    fn cooled_down(&self, deployment_id: &str, length: Duration);
}

impl Service<ChatRequest> for Router {
    type Response = ChatResponse;
    type Error = Error;
    type Future = BoxFuture<Result<ChatResponse, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: ChatRequest) -> Self::Future {
        let router = self.clone();
        Box::pin(async move {
            let requested = req.model.clone();
            let Some((group, captured)) = router.resolve(&requested) else {
                return Err(Error::model_not_found(&requested));
            };
            let prompt_tokens = if router.state.config.pre_call_checks {
                let model = group
                    .deployments
                    .first()
                    .map_or_else(String::new, |d| d.info.model.to_string());
                Some(crate::tokens::count_request_async(&model, req.shared_body().clone()).await)
            } else {
                None
            };
            let tags = req.extensions.get::<Tags>().cloned();
            let mut why = Ineligible::default();
            let eligible = router.eligible(
                group,
                false,
                tags.as_ref().map(|t| &t.0[..]),
                prompt_tokens,
                &mut why,
            );
            if eligible.is_empty() {
                return Err(router.no_deployment(group, why));
            }
            let deployment = router.pick(&eligible, req.is_stream());
            if let Some(cap) = captured {
                let model = deployment.info.model.replace('*', cap);
                req.extensions.insert(UpstreamModel(Arc::from(model)));
            }
            let Some(service) = deployment.chat.clone() else {
                return Err(Error::internal(
                    "picked a deployment without a chat service",
                ));
            };
            let estimate = prompt_tokens.unwrap_or_else(|| {
                if deployment.tpm.is_some() {
                    crate::tokens::estimate_prompt(req.body())
                } else {
                    0
                }
            });
            let guard = deployment.stats.begin(estimate);
            let info = deployment.info.clone();
            let id = info.id.clone();
            let provider = info.provider.clone();
            let stream = req.is_stream();
            let attempt = crate::observe::Attempt::begin(&mut req, &info);
            match service.oneshot(req).await {
                Ok(mut resp) => {
                    resp.meta.deployment = Some(info);
                    let attempt = match &resp.body {
                        ChatBody::Complete(_) => {
                            attempt.completed(&resp, &guard.stats().metrics);
                            None
                        }
                        ChatBody::Stream(_) => Some(attempt.stream(&resp)),
                    };
                    match &mut resp.body {
                        ChatBody::Complete(c) => {
                            guard.finish(
                                c.usage.as_ref().map(|u| u.total_tokens),
                                c.usage.as_ref().map(|u| u.completion_tokens),
                            );
                            c.model.clone_from(&requested);
                        }
                        ChatBody::Stream(s) => {
                            let inner = std::mem::replace(s, ChatStream::from_chunks(Vec::new()));
                            let (provider, deployment) = (provider.clone(), id.clone());
                            let inner =
                                ChatStream::new(futures_util::StreamExt::map(inner, move |item| {
                                    item.map_err(|e| blame_upstream(e, &provider, &deployment))
                                }));
                            *s = inner.observe(Watch {
                                router: router.clone(),
                                group: group.name.clone(),
                                guard,
                                requested,
                                first_token: !stream,
                                usage: None,
                                attempt,
                            });
                        }
                    }
                    Ok(resp)
                }
                Err(err) => {
                    let err = match err.kind() {
                        // The deployment's own deadline: its upstream was too slow.
                        ErrorKind::Timeout(_) => blame_upstream(err, &provider, &id),
                        _ => err,
                    };
                    attempt.failed(&err, &guard.stats().metrics);
                    record_failure(&router, group, guard.stats(), &err);
                    drop(guard);
                    let alternatives = others_available(group, &id);
                    let err = if err.deployment().is_none() {
                        err.with_deployment(id)
                    } else {
                        err
                    };
                    Err(err.with_alternatives(alternatives))
                }
            }
        })
    }
}

/// Watches a routed stream: renames the model, measures time to first token
/// and tokens, releases the in-flight slot at the end, and counts a failure.
struct Watch {
    router: Router,
    group: Arc<str>,
    guard: InFlight,
    requested: String,
    first_token: bool,
    usage: Option<(u64, u64)>,
    attempt: Option<crate::observe::StreamAttempt>,
}

impl StreamObserver for Watch {
    fn on_chunk(&mut self, chunk: &mut ChatChunk) {
        let token = chunk.choices.iter().any(|c| {
            c.delta.content.as_deref().is_some_and(|t| !t.is_empty())
                || c.delta.tool_calls.is_some()
                || c.delta.reasoning_content.is_some()
                || c.delta.refusal.is_some()
        });
        if let Some(a) = &mut self.attempt {
            a.on_chunk(chunk, token);
        }
        chunk.model.clone_from(&self.requested);
        if !self.first_token && token {
            self.first_token = true;
            self.guard
                .stats()
                .observe_ttft(self.guard.started.elapsed());
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some((u.total_tokens, u.completion_tokens));
        }
    }

    fn on_end(self, end: StreamEnd<'_>) {
        if let Some(a) = self.attempt {
            a.on_end(&end, &self.guard.stats().metrics);
        }
        match end {
            StreamEnd::Completed => {
                self.guard
                    .finish(self.usage.map(|u| u.0), self.usage.map(|u| u.1));
            }
            StreamEnd::Failed(err) => {
                if let Some(group) = self.router.state.groups.get(&self.group) {
                    record_failure(&self.router, group, self.guard.stats(), err);
                }
            }
            StreamEnd::Dropped => {}
        }
    }
}

impl Service<EmbeddingRequest> for Router {
    type Response = EmbeddingOutput;
    type Error = Error;
    type Future = BoxFuture<Result<EmbeddingOutput, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: EmbeddingRequest) -> Self::Future {
        let router = self.clone();
        Box::pin(async move {
            let requested = req.model.clone();
            let Some((group, captured)) = router.resolve(&requested) else {
                return Err(Error::model_not_found(&requested));
            };
            let tags = req.extensions.get::<Tags>().cloned();
            let mut why = Ineligible::default();
            let eligible =
                router.eligible(group, true, tags.as_ref().map(|t| &t.0[..]), None, &mut why);
            if eligible.is_empty() {
                if group.deployments.iter().all(|d| d.embeddings.is_none()) {
                    return Err(Error::bad_request(format!(
                        "the model `{requested}` does not serve embeddings"
                    ))
                    .with_param("model"));
                }
                return Err(router.no_deployment(group, why));
            }
            let deployment = router.pick(&eligible, false);
            if let Some(cap) = captured {
                let model = deployment.info.model.replace('*', cap);
                req.extensions.insert(UpstreamModel(Arc::from(model)));
            }
            let Some(service) = deployment.embeddings.clone() else {
                return Err(Error::internal("picked a deployment without embeddings"));
            };
            let guard = deployment.stats.begin(0);
            let info = deployment.info.clone();
            let id = info.id.clone();
            match service.oneshot(req).await {
                Ok(mut out) => {
                    out.meta.deployment = Some(info);
                    guard.finish(out.usage.as_ref().map(|u| u.total_tokens), None);
                    out.body.model = requested;
                    Ok(out)
                }
                Err(err) => {
                    record_failure(&router, group, guard.stats(), &err);
                    drop(guard);
                    Err(err.with_alternatives(others_available(group, &id)))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
