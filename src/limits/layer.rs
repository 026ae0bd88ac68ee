//! [`BudgetLayer`] and [`RateLimitLayer`]: the limits of every scope a
//! request belongs to, enforced around the rest of the stack.

use super::EndUsers;
use super::estimate::{CostEstimator, count_embedding_input, count_prompt};
use super::ledger::{BudgetLine, Ledger, Reservation};
use super::rate::{RateCheck, RateGrant, RateKind, RateLimiter, Remaining};
use super::scope::{Scope, ScopeKind, Subject};
use super::spec::Limits;
use crate::auth::Identity;
use crate::cost::{CallCost, StreamCost};
use crate::error::Error;
use crate::pricing::Usd;
use crate::provider::BoxFuture;
use crate::stream::{StreamEnd, StreamObserver};
use crate::types::{ChatBody, ChatRequest, ChatResponse, EmbeddingOutput, EmbeddingRequest};
use http::{HeaderMap, HeaderValue};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Who a request's limits belong to besides its key: the gateway itself and
/// the end user. Shared by [`BudgetLayer`] and [`RateLimitLayer`].
#[derive(Clone, Default)]
pub struct LimitScopes {
    global: Option<Subject>,
    end_users: Option<Arc<dyn EndUsers>>,
    default_end_user: Option<Arc<Limits>>,
}

impl std::fmt::Debug for LimitScopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitScopes")
            .field("global", &self.global)
            .field("end_users", &self.end_users.is_some())
            .field("default_end_user", &self.default_end_user)
            .finish()
    }
}

impl LimitScopes {
    /// Only the scopes the auth layer attached (key, team, user).
    pub fn new() -> Self {
        LimitScopes::default()
    }

    /// Gateway-wide limits (LiteLLM's `litellm_settings.max_budget` and
    /// `budget_duration`). Windows are aligned to UTC (anchor: the epoch), so
    /// a daily budget resets at midnight UTC and a monthly one on the 1st.
    pub fn global(mut self, limits: Limits) -> Self {
        self.global = (!limits.is_unlimited())
            .then(|| Subject::new(Scope::global(), limits, 0).with_label("the gateway"));
        self
    }

    /// Where end users' limits come from.
    pub fn end_users(mut self, end_users: Arc<dyn EndUsers>) -> Self {
        self.end_users = Some(end_users);
        self
    }

    /// Limits for end users without their own (LiteLLM's
    /// `max_end_user_budget`).
    pub fn default_end_user(mut self, limits: Limits) -> Self {
        self.default_end_user = (!limits.is_unlimited()).then(|| Arc::new(limits));
        self
    }

    /// Whether a request with `identity` and end user `user` has any limits.
    fn may_apply(&self, identity: Option<&Identity>, user: Option<&str>) -> bool {
        self.global.is_some()
            || identity.is_some_and(|i| i.subjects.iter().next().is_some())
            || (user.is_some() && (self.end_users.is_some() || self.default_end_user.is_some()))
    }

    /// Every subject of the request, resolved once per request.
    async fn resolve(
        &self,
        ext: &mut http::Extensions,
        user: Option<&str>,
    ) -> Result<Arc<[Subject]>, Error> {
        if let Some(r) = ext.get::<Resolved>() {
            return Ok(r.0.clone());
        }
        let identity = ext.get::<Identity>();
        let user = user.filter(|u| !u.is_empty());
        // The common case: the key's own subjects, already named (the proxy's
        // auth names them), shared as they are.
        if self.global.is_none()
            && (user.is_none() || (self.end_users.is_none() && self.default_end_user.is_none()))
            && let Some(id) = identity
            && (key_name(id).is_none() || !id.subjects.iter().any(has_hash_label))
        {
            return Ok(id.subjects.0.clone());
        }
        let mut all: Vec<Subject> = Vec::new();
        all.extend(self.global.clone());
        if let Some(id) = identity {
            for s in id.subjects.iter() {
                let mut s = s.clone();
                if has_hash_label(&s) {
                    // Name keys by alias or display form, never by hash.
                    if let Some(name) = key_name(id) {
                        s.label = format!("key {name}").into();
                    }
                }
                all.push(s);
            }
        }
        if let Some(user) = user {
            let found = match &self.end_users {
                Some(directory) => directory.end_user(user).await?,
                None => None,
            };
            let subject = found.or_else(|| {
                self.default_end_user
                    .clone()
                    .map(|l| Subject::new(Scope::new(ScopeKind::EndUser, user), l, 0))
            });
            all.extend(subject);
        }
        let all: Arc<[Subject]> = all.into();
        ext.insert(Resolved(all.clone()));
        Ok(all)
    }
}

#[derive(Clone)]
struct Resolved(Arc<[Subject]>);

/// How a key is named in errors and logs: its alias or display form.
fn key_name(id: &Identity) -> Option<&str> {
    id.key_alias.as_deref().or(id.key_display.as_deref())
}

/// Whether a key's subject still carries its default label (the start of
/// the key's hash, see [`Scope::display`]) rather than the key's name.
fn has_hash_label(s: &Subject) -> bool {
    s.scope.kind == ScopeKind::Key
        && s.label
            .strip_prefix("key ")
            .and_then(|l| l.strip_suffix('…'))
            .is_some_and(|short| s.scope.id.starts_with(short))
}

/// The prompt's token count, counted once per request for all limits.
#[derive(Clone, Copy, Debug)]
struct PromptCount(u64);

fn budget_lines(subjects: &[Subject], model: &str) -> Vec<BudgetLine> {
    let mut lines = Vec::new();
    for s in subjects {
        let l = &s.limits;
        if l.max_budget.is_some() || l.soft_budget.is_some() {
            lines.push(BudgetLine {
                scope: s.scope.clone(),
                model: None,
                label: s.label.clone(),
                max_budget: l.max_budget,
                soft_budget: l.soft_budget,
                window: l.budget_window.map(|w| (w, s.budget_anchor)),
                budget_start: s.budget_anchor,
            });
        }
        if let Some(mb) = l.model_budgets.get(model) {
            lines.push(BudgetLine {
                scope: s.scope.clone(),
                model: Some(model.into()),
                label: s.label.clone(),
                max_budget: Some(mb.max_budget),
                soft_budget: None,
                window: mb.window.map(|w| (w, s.budget_anchor)),
                budget_start: s.budget_anchor,
            });
        }
    }
    lines
}

fn rate_checks(subjects: &[Subject], model: &str) -> Vec<RateCheck> {
    let mut checks = Vec::new();
    for s in subjects {
        let l = &s.limits;
        let mut push = |model: Option<&str>, kind: RateKind, limit: u64| {
            checks.push(RateCheck {
                scope: s.scope.clone(),
                model: model.map(Into::into),
                label: s.label.clone(),
                kind,
                limit,
            });
        };
        if let Some(n) = l.rpm {
            push(None, RateKind::Requests, n);
        }
        if let Some(n) = l.tpm {
            push(None, RateKind::Tokens, n);
        }
        if let Some(n) = l.max_parallel {
            push(None, RateKind::Parallel, u64::from(n));
        }
        if let Some(n) = l.model_rpm.get(model) {
            push(Some(model), RateKind::Requests, *n);
        }
        if let Some(n) = l.model_tpm.get(model) {
            push(Some(model), RateKind::Tokens, *n);
        }
    }
    checks
}

/// The request's prompt tokens for limits, counted once for all layers.
async fn chat_prompt_tokens(req: &mut ChatRequest, estimator: &dyn CostEstimator) -> u64 {
    if let Some(PromptCount(n)) = req.extensions.get::<PromptCount>() {
        return *n;
    }
    let tokenizer = estimator.tokenizer_model(&req.model).to_owned();
    let n = count_prompt(&tokenizer, req.shared_body().clone()).await;
    req.extensions.insert(PromptCount(n));
    n
}

// ---------------------------------------------------------------- budgets

/// Reserves the worst case of every call against every budget that applies
/// and settles it to the actual cost when the call ends — on success, error,
/// stream end, stream error, client disconnect, or a dropped future.
///
/// # Semantics
///
/// - Budgets: the gateway's, the key's, its team's and user's (from
///   [`Identity::subjects`]), the end user's (the request's `user` field),
///   and per-model budgets of each for the requested model group.
/// - The reservation is the worst case: the counted prompt (with its
///   estimation bound for non-OpenAI tokenizers) plus `max_tokens` clamped
///   to the model's output limit (the limit itself when the request sets
///   none), at the dearest deployment's prices. A request whose worst case
///   does not fit in some budget is refused with `budget_exceeded` before
///   anything is sent upstream. Concurrent requests cannot overspend: what
///   is reserved counts as spent until it settles.
/// - The settlement is the cost a [`CostLayer`](crate::cost::CostLayer)
///   inside this layer put on the response (`CallCost`, or `StreamCost` when
///   the stream ends); a failed call, a call without a known price and a
///   future dropped before its answer settle at zero.
/// - Settling happens exactly once: through a guard owned by the response
///   future, then by the stream.
#[derive(Clone)]
pub struct BudgetLayer {
    ledger: Arc<dyn Ledger>,
    estimator: Arc<dyn CostEstimator>,
    scopes: LimitScopes,
}

impl std::fmt::Debug for BudgetLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetLayer")
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl BudgetLayer {
    /// Budgets kept in `ledger`, worst cases priced by `estimator`.
    pub fn new(
        ledger: Arc<dyn Ledger>,
        estimator: Arc<dyn CostEstimator>,
        scopes: LimitScopes,
    ) -> Self {
        BudgetLayer {
            ledger,
            estimator,
            scopes,
        }
    }
}

impl<S> Layer<S> for BudgetLayer {
    type Service = Budget<S>;
    fn layer(&self, inner: S) -> Budget<S> {
        Budget {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`BudgetLayer`].
#[derive(Clone, Debug)]
pub struct Budget<S> {
    inner: S,
    layer: BudgetLayer,
}

/// Settles a reservation exactly once; at zero if dropped unsettled.
struct Hold {
    ledger: Arc<dyn Ledger>,
    reservation: Option<Reservation>,
}

impl Hold {
    fn settle(mut self, actual: Usd) {
        if let Some(r) = self.reservation.take() {
            self.ledger.settle(r, actual);
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(r) = self.reservation.take() {
            self.ledger.settle(r, Usd::ZERO);
        }
    }
}

struct SettleAtEnd {
    hold: Hold,
    cost: Option<StreamCost>,
}

impl StreamObserver for SettleAtEnd {
    fn on_end(self, _: StreamEnd<'_>) {
        let actual = self
            .cost
            .as_ref()
            .and_then(|c| c.get())
            .and_then(CallCost::total)
            .unwrap_or(Usd::ZERO);
        self.hold.settle(actual);
    }
}

impl<S> Service<ChatRequest> for Budget<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = BoxFuture<Result<ChatResponse, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: ChatRequest) -> Self::Future {
        let layer = &self.layer;
        if !layer
            .scopes
            .may_apply(req.extensions.get::<Identity>(), req.user.as_deref())
        {
            return Box::pin(self.inner.call(req));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = layer.clone();
        Box::pin(async move {
            let user = req.user.clone();
            let subjects = layer
                .scopes
                .resolve(&mut req.extensions, user.as_deref())
                .await?;
            let lines = budget_lines(&subjects, &req.model);
            if lines.is_empty() {
                return inner.call(req).await;
            }
            let prompt = chat_prompt_tokens(&mut req, &*layer.estimator).await;
            let amount = layer
                .estimator
                .worst_case_chat(&req, prompt)
                .unwrap_or(Usd::ZERO);
            let reservation = layer.ledger.reserve(lines.into(), amount).await?;
            let hold = Hold {
                ledger: layer.ledger.clone(),
                reservation: Some(reservation),
            };
            let mut resp = match inner.call(req).await {
                Ok(r) => r,
                Err(e) => {
                    hold.settle(Usd::ZERO);
                    return Err(e);
                }
            };
            match &mut resp.body {
                ChatBody::Complete(_) => {
                    let actual = resp
                        .meta
                        .extensions
                        .get::<CallCost>()
                        .and_then(CallCost::total)
                        .unwrap_or(Usd::ZERO);
                    hold.settle(actual);
                }
                ChatBody::Stream(s) => {
                    let cost = resp.meta.extensions.get::<StreamCost>().cloned();
                    let stream =
                        std::mem::replace(s, crate::stream::ChatStream::from_chunks(Vec::new()));
                    *s = stream.observe(SettleAtEnd { hold, cost });
                }
            }
            Ok(resp)
        })
    }
}

impl<S> Service<EmbeddingRequest> for Budget<S>
where
    S: Service<EmbeddingRequest, Response = EmbeddingOutput, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = EmbeddingOutput;
    type Error = Error;
    type Future = BoxFuture<Result<EmbeddingOutput, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: EmbeddingRequest) -> Self::Future {
        let layer = &self.layer;
        if !layer
            .scopes
            .may_apply(req.extensions.get::<Identity>(), req.user.as_deref())
        {
            return Box::pin(self.inner.call(req));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = layer.clone();
        Box::pin(async move {
            let user = req.user.clone();
            let subjects = layer
                .scopes
                .resolve(&mut req.extensions, user.as_deref())
                .await?;
            let lines = budget_lines(&subjects, &req.model);
            if lines.is_empty() {
                return inner.call(req).await;
            }
            let n = count_embedding_input(layer.estimator.tokenizer_model(&req.model), &req.input);
            let amount = layer
                .estimator
                .worst_case_embedding(&req, n)
                .unwrap_or(Usd::ZERO);
            let reservation = layer.ledger.reserve(lines.into(), amount).await?;
            let hold = Hold {
                ledger: layer.ledger.clone(),
                reservation: Some(reservation),
            };
            let out = inner.call(req).await;
            let actual = out
                .as_ref()
                .ok()
                .and_then(|o| o.meta.extensions.get::<CallCost>())
                .and_then(CallCost::total)
                .unwrap_or(Usd::ZERO);
            hold.settle(actual);
            out
        })
    }
}

// ------------------------------------------------------------ rate limits

/// Enforces requests per minute, tokens per minute and parallel requests
/// for every scope a request belongs to (see [`LimitScopes`]), per scope and
/// per model group.
///
/// # Semantics
///
/// - All limits are checked and counted atomically: a refused request
///   counts against none.
/// - Tokens are counted up front from the prompt plus `max_tokens` (when
///   set), then corrected to the usage the provider reported when the call
///   ends.
/// - A refusal is a 429 `rate_limit_error` naming the scope and limit (never
///   a key), with `retry-after`; it is not retried by a
///   [`RetryLayer`](crate::retry::RetryLayer). Admitted requests' responses
///   carry a [`RateLimitState`]: the tightest limit of each kind, which the
///   proxy writes as `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`
///   headers.
/// - The parallel slot is freed when the answer ends (stream end included)
///   or the future is dropped.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<dyn RateLimiter>,
    estimator: Arc<dyn CostEstimator>,
    scopes: LimitScopes,
}

impl std::fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// Limits counted in `limiter`; `estimator` names each model group's
    /// tokenizer.
    pub fn new(
        limiter: Arc<dyn RateLimiter>,
        estimator: Arc<dyn CostEstimator>,
        scopes: LimitScopes,
    ) -> Self {
        RateLimitLayer {
            limiter,
            estimator,
            scopes,
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`RateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    layer: RateLimitLayer,
}

struct Admitted {
    limiter: Arc<dyn RateLimiter>,
    grant: Option<RateGrant>,
}

impl Admitted {
    fn finish(mut self, actual_tokens: Option<u64>) {
        if let Some(g) = self.grant.take() {
            self.limiter.finish(g, actual_tokens);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(g) = self.grant.take() {
            self.limiter.finish(g, None);
        }
    }
}

struct FinishAtEnd {
    admitted: Admitted,
    cost: Option<StreamCost>,
    usage_seen: Option<u64>,
}

impl StreamObserver for FinishAtEnd {
    fn on_chunk(&mut self, chunk: &mut crate::types::ChatChunk) {
        if let Some(u) = &chunk.usage {
            self.usage_seen = Some(u.total_tokens);
        }
    }

    fn on_end(self, _: StreamEnd<'_>) {
        let tokens = self
            .cost
            .as_ref()
            .and_then(|c| c.get())
            .map(|c| c.usage.total_tokens)
            .or(self.usage_seen);
        self.admitted.finish(tokens);
    }
}

/// `x-ratelimit-*` headers for what is left (none for in-flight limits).
///
/// ```
/// use tollgate::limits::{RateKind, Remaining, rate_limit_headers};
///
/// let h = rate_limit_headers(&[
///     Remaining { kind: RateKind::Requests, limit: 60, remaining: 59, reset_secs: 0 },
///     Remaining { kind: RateKind::Tokens, limit: u64::MAX, remaining: 1000, reset_secs: 42 },
///     Remaining { kind: RateKind::Parallel, limit: 4, remaining: 3, reset_secs: 0 },
/// ]);
/// assert_eq!(h.len(), 6);
/// assert_eq!(h["x-ratelimit-limit-requests"], "60");
/// assert_eq!(h["x-ratelimit-remaining-requests"], "59");
/// assert_eq!(h["x-ratelimit-reset-requests"], "0");
/// assert_eq!(h["x-ratelimit-limit-tokens"], "18446744073709551615");
/// assert_eq!(h["x-ratelimit-remaining-tokens"], "1000");
/// assert_eq!(h["x-ratelimit-reset-tokens"], "42");
/// ```
pub fn rate_limit_headers(remaining: &[Remaining]) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(remaining.len() * 3);
    RateLimitState::write_to_map(remaining, &mut h);
    h
}

/// What is left of a request's rate limits once it was admitted: the
/// tightest remaining requests and tokens. A [`RateLimitLayer`] puts it in
/// `ResponseMeta::extensions`; the proxy writes it to the client as LiteLLM's
/// `x-ratelimit-*` headers ([`RateLimitState::headers`]). Kept as numbers, so
/// a caller that shows no headers pays nothing to render them.
///
/// ```
/// use tollgate::limits::{RateKind, RateLimitState, Remaining};
///
/// let state = RateLimitState(vec![Remaining {
///     kind: RateKind::Requests, limit: 60, remaining: 59, reset_secs: 0,
/// }]);
/// assert_eq!(state.headers()["x-ratelimit-remaining-requests"], "59");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimitState(pub Vec<Remaining>);

impl RateLimitState {
    /// The `x-ratelimit-*` headers (see [`rate_limit_headers`]).
    pub fn headers(&self) -> HeaderMap {
        rate_limit_headers(&self.0)
    }

    /// Writes the `x-ratelimit-*` headers into `headers`, replacing any of
    /// the same name.
    pub fn write_to(&self, headers: &mut HeaderMap) {
        Self::write_to_map(&self.0, headers);
    }

    fn write_to_map(remaining: &[Remaining], headers: &mut HeaderMap) {
        for r in remaining {
            let Some([limit, left, reset]) = r.kind.header_names() else {
                continue;
            };
            headers.insert(limit, HeaderValue::from(r.limit));
            headers.insert(left, HeaderValue::from(r.remaining));
            headers.insert(reset, HeaderValue::from(r.reset_secs));
        }
    }
}

/// Records what is left in `ext`; nested rate-limit layers keep the tightest.
fn add_state(ext: &mut http::Extensions, remaining: Vec<Remaining>) {
    if remaining.is_empty() {
        return;
    }
    match ext.get_mut::<RateLimitState>() {
        Some(RateLimitState(have)) => {
            let mut all = std::mem::take(have);
            all.extend(remaining);
            *have = super::rate::tightest(all);
        }
        None => {
            ext.insert(RateLimitState(remaining));
        }
    }
}

impl<S> Service<ChatRequest> for RateLimit<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = BoxFuture<Result<ChatResponse, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: ChatRequest) -> Self::Future {
        let layer = &self.layer;
        if !layer
            .scopes
            .may_apply(req.extensions.get::<Identity>(), req.user.as_deref())
        {
            return Box::pin(self.inner.call(req));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = layer.clone();
        Box::pin(async move {
            let user = req.user.clone();
            let subjects = layer
                .scopes
                .resolve(&mut req.extensions, user.as_deref())
                .await?;
            let checks = rate_checks(&subjects, &req.model);
            if checks.is_empty() {
                return inner.call(req).await;
            }
            let tokens = if checks.iter().any(|c| c.kind == RateKind::Tokens) {
                chat_prompt_tokens(&mut req, &*layer.estimator).await
                    + req.output_limit().map_or(0, u64::from)
            } else {
                0
            };
            let mut grant = layer.limiter.acquire(checks.into(), tokens).await?;
            let remaining = std::mem::take(&mut grant.remaining);
            let admitted = Admitted {
                limiter: layer.limiter.clone(),
                grant: Some(grant),
            };
            let mut resp = match inner.call(req).await {
                Ok(r) => r,
                Err(e) => {
                    admitted.finish(Some(0));
                    return Err(e);
                }
            };
            add_state(&mut resp.meta.extensions, remaining);
            match &mut resp.body {
                ChatBody::Complete(c) => {
                    let used = resp
                        .meta
                        .extensions
                        .get::<CallCost>()
                        .map(|c| c.usage.total_tokens)
                        .or(c.usage.as_ref().map(|u| u.total_tokens));
                    admitted.finish(used);
                }
                ChatBody::Stream(s) => {
                    let cost = resp.meta.extensions.get::<StreamCost>().cloned();
                    let stream =
                        std::mem::replace(s, crate::stream::ChatStream::from_chunks(Vec::new()));
                    *s = stream.observe(FinishAtEnd {
                        admitted,
                        cost,
                        usage_seen: None,
                    });
                }
            }
            Ok(resp)
        })
    }
}

impl<S> Service<EmbeddingRequest> for RateLimit<S>
where
    S: Service<EmbeddingRequest, Response = EmbeddingOutput, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = EmbeddingOutput;
    type Error = Error;
    type Future = BoxFuture<Result<EmbeddingOutput, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: EmbeddingRequest) -> Self::Future {
        let layer = &self.layer;
        if !layer
            .scopes
            .may_apply(req.extensions.get::<Identity>(), req.user.as_deref())
        {
            return Box::pin(self.inner.call(req));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = layer.clone();
        Box::pin(async move {
            let user = req.user.clone();
            let subjects = layer
                .scopes
                .resolve(&mut req.extensions, user.as_deref())
                .await?;
            let checks = rate_checks(&subjects, &req.model);
            if checks.is_empty() {
                return inner.call(req).await;
            }
            let tokens = if checks.iter().any(|c| c.kind == RateKind::Tokens) {
                count_embedding_input(layer.estimator.tokenizer_model(&req.model), &req.input)
            } else {
                0
            };
            let mut grant = layer.limiter.acquire(checks.into(), tokens).await?;
            let remaining = std::mem::take(&mut grant.remaining);
            let admitted = Admitted {
                limiter: layer.limiter.clone(),
                grant: Some(grant),
            };
            let mut out = inner.call(req).await;
            let used = match &mut out {
                Ok(o) => {
                    add_state(&mut o.meta.extensions, remaining);
                    o.meta
                        .extensions
                        .get::<CallCost>()
                        .map(|c| c.usage.total_tokens)
                        .or(o.body.usage.as_ref().map(|u| u.total_tokens))
                }
                Err(_) => Some(0),
            };
            admitted.finish(used);
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(label: Option<&str>) -> Identity {
        let mut id = Identity::anonymous();
        id.key_hash = Some("0123456789abcdef".into());
        id.key_alias = Some("bot".into());
        let s = Subject::new(
            Scope::new(ScopeKind::Key, "0123456789abcdef"),
            Limits::none().with_rpm(5),
            0,
        );
        id.subjects = vec![match label {
            Some(l) => s.with_label(l),
            None => s,
        }]
        .into();
        id
    }

    #[tokio::test]
    async fn key_subjects_are_named_by_alias_and_shared_when_already_named() {
        let scopes = LimitScopes::new();
        // Named by the auth layer: the identity's own subjects, not a copy.
        let named = identity(Some("key bot"));
        let mut ext = http::Extensions::new();
        ext.insert(named.clone());
        let got = scopes.resolve(&mut ext, None).await.unwrap();
        assert!(Arc::ptr_eq(&got, &named.subjects.0));
        assert_eq!(&*got[0].label, "key bot");
        // Still labelled by hash: renamed by alias, never shown by hash.
        let hashed = identity(None);
        assert!(has_hash_label(&hashed.subjects.0[0]));
        let mut ext = http::Extensions::new();
        ext.insert(hashed);
        let got = scopes.resolve(&mut ext, None).await.unwrap();
        assert_eq!(&*got[0].label, "key bot");
        // A gateway budget adds its subject in front.
        let scopes = LimitScopes::new().global(Limits::none().with_rpm(100));
        let mut ext = http::Extensions::new();
        ext.insert(named);
        let got = scopes.resolve(&mut ext, Some("end-user")).await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(&*got[0].label, "the gateway");
        assert_eq!(&*got[1].label, "key bot");
    }
}
