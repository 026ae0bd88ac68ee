//! [`RetryLayer`]: sends a failed request again, when that can help.
//!
//! # Semantics
//!
//! - Only errors that can succeed on a second try are retried: 408, 409, 429
//!   from upstream, 5xx, broken connections and timeouts
//!   ([`ErrorKind::is_retryable`]) — never 400, 401, 403, 404 or a context
//!   window error. `retry_policy` (LiteLLM's `RateLimitErrorRetries`,
//!   `TimeoutErrorRetries`, …) sets the count per error class, and may name a
//!   class that is not retried by default (e.g. `AuthenticationErrorRetries`
//!   to try another deployment after a 401).
//! - `num_retries` retries at most (default 2; a request's own `num_retries`
//!   field wins). Each retry goes back through the router, which may pick
//!   another deployment of the group (a failed one is often cooling down).
//! - Backoff is exponential with full jitter (a random wait up to
//!   `base × 2^attempt`, capped). A `Retry-After` from the upstream is
//!   honoured when no other deployment could serve the retry at once and it is
//!   at most `max_retry_after`; a longer one ends the retries.
//! - "Every deployment is cooling down" (the router's 429) is returned at
//!   once with its `Retry-After`: the request is not held for the cooldown.
//! - A retry budget (tower's `TpsBudget`: retries may add about 20 % to the
//!   request rate, with a floor) stops a failing provider from being hammered:
//!   when the budget is spent, the error is returned as it is.
//! - Every attempt and every wait stays inside the request's [`Deadline`].
//! - Streams are retried only before their first chunk: the layer waits for
//!   the first chunk, and a stream that fails before it is retried like any
//!   other error. After the first chunk, failures reach the client in band.
//! - The answer's metadata (and an error's) carry the number of attempts.
//!
//! Cancel safety: dropping the future drops the attempt in flight; nothing
//! else is held.
//!
//! ```
//! use tollgate::retry::{RetryLayer, RetryPolicy};
//! use tollgate::provider::{Mock, MockConfig};
//! use tower::ServiceBuilder;
//!
//! let svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryPolicy { num_retries: 3, ..RetryPolicy::default() }))
//!     .service(Mock::new(MockConfig::new("mock/m")));
//! # drop(svc);
//! ```

use crate::context::Deadline;
use crate::error::Error;
use crate::provider::BoxFuture;
use crate::router::ErrorClass;
use crate::stream::{ChatStream, ChunkResult};
use crate::types::{ChatBody, ChatChunk, ChatRequest, ChatResponse};
use futures_core::Stream;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, Service, ServiceExt};

/// How failed requests are retried. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt (LiteLLM's `num_retries`, default 2).
    pub num_retries: u32,
    /// Retries per error class (LiteLLM's `retry_policy`), overriding `num_retries`.
    pub per_class: HashMap<ErrorClass, u32>,
    /// The first backoff ceiling; doubles each retry.
    pub base_backoff: Duration,
    /// The largest backoff ceiling.
    pub max_backoff: Duration,
    /// The longest `Retry-After` worth waiting for.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            num_retries: 2,
            per_class: HashMap::new(),
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The most retries any error could get (a request asking for `requested`).
    fn most_retries(&self, requested: Option<u32>) -> u32 {
        let per_class = self.per_class.values().copied().max().unwrap_or(0);
        requested.unwrap_or(self.num_retries).max(per_class)
    }

    /// How many retries an error may get (`None`: not retried).
    fn retries_for(&self, err: &Error, requested: Option<u32>) -> Option<u32> {
        let class = ErrorClass::of_error(err);
        match self.per_class.get(&class) {
            Some(n) => Some(*n),
            None if err.is_retryable() => Some(requested.unwrap_or(self.num_retries)),
            None => None,
        }
    }

    /// A full-jitter backoff for retry number `attempt` (0-based).
    fn backoff(&self, attempt: u32, random: f64) -> Duration {
        let ceiling = self
            .base_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_backoff);
        ceiling.mul_f64(random.clamp(0.0, 1.0))
    }
}

/// Retries failed requests. See the [module docs](self).
#[derive(Clone)]
pub struct RetryLayer {
    policy: Arc<RetryPolicy>,
    budget: Arc<TpsBudget>,
}

impl RetryLayer {
    /// A layer with `policy` and the default budget (20 % extra load, at
    /// least 10 retries a second, over a 10 s window).
    pub fn new(policy: RetryPolicy) -> Self {
        RetryLayer {
            policy: Arc::new(policy),
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
        }
    }

    /// Uses `budget` instead of the default.
    pub fn with_budget(mut self, budget: TpsBudget) -> Self {
        self.budget = Arc::new(budget);
        self
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;
    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            policy: self.policy.clone(),
            budget: self.budget.clone(),
        }
    }
}

/// The service made by [`RetryLayer`].
#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    policy: Arc<RetryPolicy>,
    budget: Arc<TpsBudget>,
}

/// Calls `svc` with `req` and, for a stream, waits for its first chunk (see
/// [`first_chunk`]).
pub(crate) async fn call_to_first_chunk<S>(svc: S, req: ChatRequest) -> Result<ChatResponse, Error>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
{
    first_chunk(svc.oneshot(req).await?).await
}

/// Waits for a stream's first chunk: an error before it becomes the call's error.
async fn first_chunk(resp: ChatResponse) -> Result<ChatResponse, Error> {
    let ChatResponse { body, meta } = resp;
    let body = match body {
        ChatBody::Complete(c) => ChatBody::Complete(c),
        ChatBody::Stream(mut s) => match s.next().await {
            Some(Ok(first)) => ChatBody::Stream(ChatStream::new(Peeked {
                first: Some(Box::new(first)),
                rest: s,
            })),
            Some(Err(e)) => return Err(e),
            None => ChatBody::Stream(ChatStream::from_chunks(Vec::new())),
        },
    };
    Ok(ChatResponse { body, meta })
}

/// A stream whose first chunk was read ahead. The chunk sits in its own box,
/// freed once delivered: an open stream does not carry a chunk-sized slot
/// (~400 B) for its whole life.
struct Peeked {
    first: Option<Box<ChatChunk>>,
    rest: ChatStream,
}

impl Stream for Peeked {
    type Item = ChunkResult;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ChunkResult>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(*first)));
        }
        Pin::new(&mut self.rest).poll_next(cx)
    }
}

impl<S> Service<ChatRequest> for Retry<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = BoxFuture<Result<ChatResponse, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Readiness is awaited per attempt on a clone.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let inner = self.inner.clone();
        let policy = self.policy.clone();
        let budget = self.budget.clone();
        Box::pin(async move {
            budget.deposit();
            let requested = req.num_retries;
            let deadline = req.extensions.get::<Deadline>().map(|d| d.0);
            let most = policy.most_retries(requested);
            // The last attempt that could be made takes the request itself:
            // a copy is kept only while a retry may still need it.
            let mut kept = Some(req);
            let mut attempt: u32 = 0;
            loop {
                let send = if attempt >= most {
                    kept.take()
                } else {
                    kept.clone()
                };
                let Some(send) = send else {
                    return Err(Error::internal("retry: the request was already sent"));
                };
                let result = call_to_first_chunk(inner.clone(), send).await;
                let err = match result {
                    Ok(mut resp) => {
                        resp.meta.attempts = attempt + 1;
                        return Ok(resp);
                    }
                    Err(e) => e,
                };
                let give_up = |e: Error| Err(e.with_attempts(attempt + 1));
                // Every deployment is cooling down: the caller gets the 429
                // with its `Retry-After` now rather than a request held open
                // for the whole cooldown.
                if err.code() == Some("deployments_cooling_down") {
                    return give_up(err);
                }
                let Some(allowed) = policy.retries_for(&err, requested) else {
                    return give_up(err);
                };
                if attempt >= allowed || !budget.withdraw() {
                    return give_up(err);
                }
                let mut wait = policy.backoff(attempt, fastrand::f64());
                if let Some(after) = err.retry_after()
                    && !err.alternatives_available()
                {
                    if after > policy.max_retry_after {
                        return give_up(err);
                    }
                    wait = wait.max(after);
                }
                if let Some(d) = deadline
                    && Instant::now() + wait >= d
                {
                    return give_up(err);
                }
                crate::observe::metrics::retried(&err);
                tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %err.kind().litellm_class(), "retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, LimitSource};
    use crate::provider::{Mock, MockConfig};
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails with the scripted errors, then answers.
    #[derive(Clone)]
    struct Flaky {
        errors: Arc<Mutex<VecDeque<Error>>>,
        calls: Arc<AtomicU32>,
        stream_error_first: bool,
    }

    impl Flaky {
        fn new(errors: Vec<Error>) -> Self {
            Flaky {
                errors: Arc::new(Mutex::new(errors.into())),
                calls: Arc::default(),
                stream_error_first: false,
            }
        }
        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Service<ChatRequest> for Flaky {
        type Response = ChatResponse;
        type Error = Error;
        type Future = BoxFuture<Result<ChatResponse, Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: ChatRequest) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let next = self.errors.lock().unwrap().pop_front();
            let in_stream = self.stream_error_first;
            Box::pin(async move {
                match next {
                    Some(e) if in_stream => {
                        Ok(ChatResponse::stream(ChatStream::from_results(vec![Err(e)])))
                    }
                    Some(e) => Err(e),
                    None => Mock::new(MockConfig::new("mock/m")).oneshot(req).await,
                }
            })
        }
    }

    fn up(kind: ErrorKind) -> Error {
        Error::new(kind, "upstream").with_provider("mock")
    }

    fn req() -> ChatRequest {
        ChatRequest::from_json(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
            .unwrap()
    }

    fn layer() -> RetryLayer {
        RetryLayer::new(RetryPolicy::default())
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_is_copied_only_while_a_retry_may_need_it() {
        use crate::util::Copies;
        let copied = |policy: RetryPolicy, errors: Vec<Error>| async move {
            let copies = Copies::default();
            let mut r = req();
            r.extensions.insert(copies.clone());
            let before = copies.count();
            let flaky = Flaky::new(errors);
            let out = RetryLayer::new(policy)
                .layer(flaky.clone())
                .oneshot(r)
                .await;
            (copies.count() - before, flaky.calls(), out.is_ok())
        };
        let none = RetryPolicy {
            num_retries: 0,
            ..RetryPolicy::default()
        };
        // No retry possible: sent as it came.
        assert_eq!(copied(none.clone(), vec![]).await, (0, 1, true));
        // One retry allowed: a copy for the first attempt, the request itself for the last.
        let one = RetryPolicy {
            num_retries: 1,
            ..RetryPolicy::default()
        };
        let down = || vec![up(ErrorKind::Upstream(503)), up(ErrorKind::Upstream(503))];
        assert_eq!(copied(one.clone(), down()).await, (1, 2, false));
        assert_eq!(copied(one, vec![]).await, (1, 1, true));
        // A per-class policy can allow retries where num_retries does not.
        let mut per_class = none;
        per_class
            .per_class
            .insert(ErrorClass::of_error(&up(ErrorKind::Upstream(503))), 1);
        assert_eq!(copied(per_class, down()).await, (1, 2, false));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_errors_then_succeeds() {
        let flaky = Flaky::new(vec![
            up(ErrorKind::Upstream(500)),
            up(ErrorKind::Connection),
        ]);
        let started = Instant::now();
        let resp = layer().layer(flaky.clone()).oneshot(req()).await.unwrap();
        assert_eq!(resp.meta.attempts, 3);
        assert_eq!(flaky.calls(), 3);
        // Full jitter: at most 250 ms + 500 ms of waiting.
        assert!(
            started.elapsed() <= Duration::from_millis(750),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn every_deployment_cooling_down_is_returned_at_once() {
        let cooling = Error::new(
            ErrorKind::RateLimited(LimitSource::Upstream),
            "all are cooling down",
        )
        .with_code("deployments_cooling_down")
        .with_retry_after(Duration::from_secs(20));
        let flaky = Flaky::new(vec![cooling]);
        let started = Instant::now();
        let err = layer()
            .layer(flaky.clone())
            .oneshot(req())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("deployments_cooling_down"));
        assert_eq!(err.retry_after(), Some(Duration::from_secs(20)));
        assert_eq!(flaky.calls(), 1);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "not held for the cooldown"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn never_retries_client_errors() {
        for kind in [
            ErrorKind::BadRequest,
            ErrorKind::Authentication,
            ErrorKind::PermissionDenied,
            ErrorKind::NotFound,
            ErrorKind::ContextWindowExceeded,
            ErrorKind::RateLimited(LimitSource::Gateway),
        ] {
            let flaky = Flaky::new(vec![up(kind)]);
            let err = layer()
                .layer(flaky.clone())
                .oneshot(req())
                .await
                .unwrap_err();
            assert_eq!(err.kind(), kind);
            assert_eq!(err.attempts(), 1);
            assert_eq!(flaky.calls(), 1, "{kind:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_num_retries_and_the_request_may_ask_for_more() {
        let errors = || (0..10).map(|_| up(ErrorKind::Upstream(503))).collect();
        let flaky = Flaky::new(errors());
        let err = layer()
            .layer(flaky.clone())
            .oneshot(req())
            .await
            .unwrap_err();
        assert_eq!(err.attempts(), 3);
        assert_eq!(flaky.calls(), 3);
        let flaky = Flaky::new(errors());
        let mut r = req();
        r.body_mut().num_retries = Some(5);
        let err = layer().layer(flaky.clone()).oneshot(r).await.unwrap_err();
        assert_eq!(err.attempts(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_policy_per_class() {
        let policy = RetryPolicy {
            per_class: [(ErrorClass::RateLimit, 4), (ErrorClass::Authentication, 1)].into(),
            ..RetryPolicy::default()
        };
        let flaky = Flaky::new(
            (0..10)
                .map(|_| up(ErrorKind::RateLimited(LimitSource::Upstream)))
                .collect(),
        );
        let err = RetryLayer::new(policy.clone())
            .layer(flaky.clone())
            .oneshot(req())
            .await
            .unwrap_err();
        assert_eq!(flaky.calls(), 5, "{err:?}");
        let flaky = Flaky::new(vec![up(ErrorKind::Authentication)]);
        let resp = RetryLayer::new(policy)
            .layer(flaky.clone())
            .oneshot(req())
            .await
            .unwrap();
        assert_eq!(
            resp.meta.attempts, 2,
            "an explicit policy retries even a 401"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn honours_a_reasonable_retry_after() {
        let flaky = Flaky::new(vec![
            up(ErrorKind::RateLimited(LimitSource::Upstream))
                .with_retry_after(Duration::from_secs(7)),
        ]);
        let started = Instant::now();
        layer().layer(flaky.clone()).oneshot(req()).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(7));
        // With another deployment available the retry does not wait for it.
        let flaky = Flaky::new(vec![
            up(ErrorKind::RateLimited(LimitSource::Upstream))
                .with_retry_after(Duration::from_secs(7))
                .with_alternatives(true),
        ]);
        let started = Instant::now();
        layer().layer(flaky.clone()).oneshot(req()).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        // An unreasonable one ends the retries.
        let flaky = Flaky::new(vec![
            up(ErrorKind::RateLimited(LimitSource::Upstream))
                .with_retry_after(Duration::from_secs(600)),
        ]);
        let err = layer()
            .layer(flaky.clone())
            .oneshot(req())
            .await
            .unwrap_err();
        assert_eq!(flaky.calls(), 1);
        assert!(err.is_rate_limited());
    }

    #[tokio::test(start_paused = true)]
    async fn stays_inside_the_deadline() {
        let flaky = Flaky::new(vec![
            up(ErrorKind::RateLimited(LimitSource::Upstream))
                .with_retry_after(Duration::from_secs(20)),
        ]);
        let mut r = req();
        r.extensions
            .insert(Deadline(Instant::now() + Duration::from_secs(10)));
        let err = layer().layer(flaky.clone()).oneshot(r).await.unwrap_err();
        assert_eq!(flaky.calls(), 1);
        assert!(err.is_rate_limited());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_failing_before_its_first_chunk_is_retried() {
        let mut flaky = Flaky::new(vec![up(ErrorKind::ServiceUnavailable)]);
        flaky.stream_error_first = true;
        let mut r = req();
        r.body_mut().stream = Some(true);
        let resp = layer().layer(flaky.clone()).oneshot(r).await.unwrap();
        assert_eq!(resp.meta.attempts, 2);
        let c = resp
            .into_stream()
            .unwrap()
            .collect_completion()
            .await
            .unwrap();
        assert_eq!(c.text(), Some(crate::provider::mock::DEFAULT_REPLY));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_stops_retry_storms() {
        // A budget with no floor and no percentage: no retries at all.
        let l = layer().with_budget(TpsBudget::new(Duration::from_secs(10), 0, 0.0));
        let flaky = Flaky::new(vec![up(ErrorKind::Upstream(500))]);
        let err = l.layer(flaky.clone()).oneshot(req()).await.unwrap_err();
        assert_eq!(flaky.calls(), 1);
        assert_eq!(err.kind(), ErrorKind::Upstream(500));
    }
}
