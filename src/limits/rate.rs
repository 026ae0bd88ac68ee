//! Rate limits: requests and tokens per minute, requests in flight.
//!
//! Requests and tokens per minute are counted in 5-second slots; a request
//! is admitted when the slots that overlap the last 60 seconds, plus the
//! request, stay within the limit. Counting the oldest slot whole (even
//! though only part of it is still within the minute) makes the check
//! conservative: no 60-second window ever holds more than the limit, whatever
//! the traffic's shape — unlike a token bucket (GCRA), which lets a full burst
//! through and refills during the same minute (up to twice the limit in 60 s),
//! or a two-bucket weighted estimate (up to 1.5 times). Capacity comes back at
//! most 5 s later than an exact log would give it back. The same arithmetic
//! runs in memory and in Redis, so one replica and many behave alike.

use super::clock::{Clock, SystemClock};
use super::scope::Scope;
use crate::error::{Error, ErrorKind, LimitSource};
use crate::provider::BoxFuture;
use crate::util::FastMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The length of a rate-limit bucket.
pub const BUCKET_MS: u64 = 60_000;

/// What a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateKind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
    /// Requests in flight.
    Parallel,
}

impl RateKind {
    /// LiteLLM's `x-ratelimit-{limit,remaining,reset}-…` header names for
    /// the kind (none for parallel requests).
    pub(crate) fn header_names(self) -> Option<[http::HeaderName; 3]> {
        use http::HeaderName;
        // Checked once, at compile time.
        const REQUESTS: [HeaderName; 3] = [
            HeaderName::from_static("x-ratelimit-limit-requests"),
            HeaderName::from_static("x-ratelimit-remaining-requests"),
            HeaderName::from_static("x-ratelimit-reset-requests"),
        ];
        const TOKENS: [HeaderName; 3] = [
            HeaderName::from_static("x-ratelimit-limit-tokens"),
            HeaderName::from_static("x-ratelimit-remaining-tokens"),
            HeaderName::from_static("x-ratelimit-reset-tokens"),
        ];
        match self {
            RateKind::Requests => Some(REQUESTS),
            RateKind::Tokens => Some(TOKENS),
            RateKind::Parallel => None,
        }
    }

    /// `rpm`, `tpm` or `parallel`.
    pub fn as_str(self) -> &'static str {
        match self {
            RateKind::Requests => "rpm",
            RateKind::Tokens => "tpm",
            RateKind::Parallel => "parallel",
        }
    }
}

/// One limit a request must pass.
#[derive(Clone, PartialEq, Eq)]
pub struct RateCheck {
    /// Whose limit.
    pub scope: Scope,
    /// Restricted to this model group.
    pub model: Option<Arc<str>>,
    /// How it is named in errors (never a key or its hash).
    pub label: Arc<str>,
    /// What it counts.
    pub kind: RateKind,
    /// The limit.
    pub limit: u64,
}

impl RateCheck {
    /// The storage name of the counter.
    pub fn storage_key(&self) -> String {
        match &self.model {
            None => format!("{}:{}", self.scope.storage_key(), self.kind.as_str()),
            Some(m) => format!(
                "{}:model:{m}:{}",
                self.scope.storage_key(),
                self.kind.as_str()
            ),
        }
    }

    /// The counter's identity in a [`MemoryRateLimiter`]: what
    /// [`storage_key`](Self::storage_key) is made of, without formatting it.
    fn mem_key(&self) -> CounterKey {
        CounterKey {
            scope: self.scope.clone(),
            model: self.model.clone(),
            kind: self.kind,
        }
    }

    pub(crate) fn refused(&self, retry_after: Duration) -> Error {
        use crate::observe::metrics::{LimitKind, rate_limited};
        rate_limited(
            self.scope.kind,
            match self.kind {
                RateKind::Requests => LimitKind::Rpm,
                RateKind::Tokens => LimitKind::Tpm,
                RateKind::Parallel => LimitKind::Parallel,
            },
        );
        let what = match self.kind {
            RateKind::Requests => format!("{} requests per minute", self.limit),
            RateKind::Tokens => format!("{} tokens per minute", self.limit),
            RateKind::Parallel => format!("{} parallel requests", self.limit),
        };
        let model = self
            .model
            .as_deref()
            .map(|m| format!(" for model {m}"))
            .unwrap_or_default();
        Error::new(
            ErrorKind::RateLimited(LimitSource::Gateway),
            format!(
                "Rate limit exceeded for {}{model}: limit {what}. Retry after {} s.",
                self.label,
                retry_after.as_secs().max(1)
            ),
        )
        .with_code("rate_limit_exceeded")
        .with_retry_after(retry_after)
        .with_headers(self.refusal_headers(retry_after))
    }

    /// LiteLLM's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` on a
    /// refusal: nothing remains until the reset.
    fn refusal_headers(&self, retry_after: Duration) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        let Some([limit, remaining, reset_name]) = self.kind.header_names() else {
            return h;
        };
        let reset = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        h.insert(limit, http::HeaderValue::from(self.limit));
        h.insert(remaining, http::HeaderValue::from(0u64));
        h.insert(reset_name, http::HeaderValue::from(reset.max(1)));
        h
    }
}

impl fmt::Debug for RateCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateCheck")
            .field("label", &self.label)
            .field("model", &self.model)
            .field("kind", &self.kind)
            .field("limit", &self.limit)
            .finish()
    }
}

/// What is left of one limit after a request was admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remaining {
    /// The limit's kind.
    pub kind: RateKind,
    /// The limit.
    pub limit: u64,
    /// What is left of it now.
    pub remaining: u64,
    /// Seconds until the current bucket ends.
    pub reset_secs: u64,
}

/// An admitted request's hold on its limits. Hand it back with
/// [`RateLimiter::finish`] (ownership makes that happen once).
#[derive(Debug)]
#[must_use = "a grant must be finished"]
pub struct RateGrant {
    /// Unique id (per limiter).
    pub id: u64,
    /// The checks it passed.
    pub checks: Arc<[RateCheck]>,
    /// Tokens counted for it up front.
    pub tokens: u64,
    /// The slot it was counted in (ms since the epoch / 5000).
    pub bucket: u64,
    /// The tightest remaining requests and tokens, for response headers.
    pub remaining: Vec<Remaining>,
}

/// Where rate-limit counters live: in memory ([`MemoryRateLimiter`]) or in
/// Redis, shared by replicas.
///
/// # Contract
///
/// `acquire` admits a request against every check or against none (atomic),
/// counting one request, `tokens` tokens and one slot in flight; a refusal is
/// `ErrorKind::RateLimited` with `retry_after`. `finish` frees the slot and
/// corrects the token count to `actual_tokens`; it never blocks.
pub trait RateLimiter: Send + Sync + 'static {
    /// Admits a request or refuses it.
    fn acquire(&self, checks: Arc<[RateCheck]>, tokens: u64)
    -> BoxFuture<Result<RateGrant, Error>>;

    /// Ends a request: frees its slot, corrects its tokens.
    fn finish(&self, grant: RateGrant, actual_tokens: Option<u64>);

    /// Waits until every `finish` handed over so far is recorded.
    fn flush(&self) -> BoxFuture<()> {
        Box::pin(std::future::ready(()))
    }
}

/// Sliding-window arithmetic shared by the backends.
pub(crate) mod window {
    use super::BUCKET_MS;

    /// The width of a counting slot.
    pub(crate) const SLOT_MS: u64 = 5_000;
    /// Slots that can overlap a minute: 12 whole ones plus a partial one.
    pub(crate) const SLOTS: usize = (BUCKET_MS / SLOT_MS) as usize + 1;

    /// Per-slot counts of one limit: `(slot id, count)` in a ring.
    #[derive(Clone, Copy, Debug, Default)]
    pub(crate) struct Slots([(u64, u64); SLOTS]);

    /// The oldest slot id that overlaps the minute ending at `now_ms`.
    pub(crate) fn oldest_live(now_ms: u64) -> u64 {
        now_ms.saturating_sub(BUCKET_MS) / SLOT_MS
    }

    impl Slots {
        /// Requests (or tokens) counted over the minute ending at `now_ms`.
        pub(crate) fn count(&self, now_ms: u64) -> u64 {
            let from = oldest_live(now_ms);
            let to = now_ms / SLOT_MS;
            self.0
                .iter()
                .filter(|(id, _)| *id >= from && *id <= to)
                .map(|(_, n)| n)
                .sum()
        }

        /// Adds `n` to the slot of `now_ms`.
        pub(crate) fn add(&mut self, now_ms: u64, n: u64) {
            let id = now_ms / SLOT_MS;
            let cell = &mut self.0[(id % SLOTS as u64) as usize];
            if cell.0 != id {
                *cell = (id, 0);
            }
            cell.1 += n;
        }

        /// Corrects the slot `id` (if still counted) from `was` to `now`.
        pub(crate) fn correct(&mut self, id: u64, was: u64, now: u64) {
            let cell = &mut self.0[(id % SLOTS as u64) as usize];
            if cell.0 == id {
                cell.1 = (cell.1 + now).saturating_sub(was);
            }
        }

        /// The oldest live slot with a count, if any.
        pub(crate) fn oldest(&self, now_ms: u64) -> Option<u64> {
            let from = oldest_live(now_ms);
            self.0
                .iter()
                .filter(|(id, n)| *id >= from && *n > 0)
                .map(|(id, _)| *id)
                .min()
        }

        /// Live `(slot id, count)` pairs, oldest first.
        pub(crate) fn live(&self, now_ms: u64) -> Vec<(u64, u64)> {
            let from = oldest_live(now_ms);
            let mut v: Vec<(u64, u64)> = self
                .0
                .iter()
                .copied()
                .filter(|(id, n)| *id >= from && *n > 0)
                .collect();
            v.sort_unstable();
            v
        }
    }

    /// Whether `n` more fit over `count`. A single request larger than the
    /// whole limit is let into an empty minute (it could never pass otherwise).
    pub(crate) fn admits(count: u64, n: u64, limit: u64) -> bool {
        count.saturating_add(n) <= limit || (n > limit && count == 0)
    }

    /// When the slot `id` stops overlapping the last minute (ms).
    pub(crate) fn slot_leaves_at(id: u64) -> u64 {
        (id + 1) * SLOT_MS + BUCKET_MS
    }

    /// How long until `n` more fit, given the live slots (oldest first):
    /// the moment enough old slots have left the minute.
    pub(crate) fn retry_after_ms(live: &[(u64, u64)], n: u64, limit: u64, now_ms: u64) -> u64 {
        let mut count: u64 = live.iter().map(|(_, c)| c).sum();
        let n = n.min(limit);
        for (id, c) in live {
            count -= c;
            if count + n <= limit {
                return slot_leaves_at(*id).saturating_sub(now_ms).max(1);
            }
        }
        BUCKET_MS
    }
}

/// See [`RateCheck::mem_key`].
#[derive(Clone, PartialEq, Eq, Hash)]
struct CounterKey {
    scope: Scope,
    model: Option<Arc<str>>,
    kind: RateKind,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counter {
    slots: window::Slots,
}

/// In-process rate limits for one replica.
///
/// ```
/// use std::sync::Arc;
/// use tollgate::limits::{MemoryRateLimiter, RateCheck, RateKind, RateLimiter, Scope, ScopeKind};
///
/// # tokio_test::block_on(async {
/// let limiter = MemoryRateLimiter::new();
/// let checks: Arc<[RateCheck]> = Arc::from(vec![RateCheck {
///     scope: Scope::new(ScopeKind::Key, "k"),
///     model: None,
///     label: "key sk-...abcd".into(),
///     kind: RateKind::Requests,
///     limit: 2,
/// }]);
/// let a = limiter.acquire(checks.clone(), 0).await.unwrap();
/// let b = limiter.acquire(checks.clone(), 0).await.unwrap();
/// let refused = limiter.acquire(checks.clone(), 0).await.unwrap_err();
/// assert_eq!(refused.status().as_u16(), 429);
/// assert!(refused.retry_after().is_some());
/// limiter.finish(a, None);
/// limiter.finish(b, None);
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryRateLimiter {
    inner: Arc<RateInner>,
}

struct RateInner {
    counters: Mutex<FastMap<CounterKey, Counter>>,
    in_flight: Mutex<FastMap<CounterKey, u64>>,
    clock: Arc<dyn Clock>,
    next_id: AtomicU64,
}

impl fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRateLimiter").finish_non_exhaustive()
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        MemoryRateLimiter::new()
    }
}

impl MemoryRateLimiter {
    /// A limiter on the system clock.
    pub fn new() -> Self {
        MemoryRateLimiter::with_clock(Arc::new(SystemClock))
    }

    /// A limiter on `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemoryRateLimiter {
            inner: Arc::new(RateInner {
                counters: Mutex::new(FastMap::default()),
                in_flight: Mutex::new(FastMap::default()),
                clock,
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Requests in flight for `check` (a [`RateKind::Parallel`] check).
    pub fn in_flight(&self, check: &RateCheck) -> u64 {
        let map = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.get(&check.mem_key()).copied().unwrap_or(0)
    }

    fn try_acquire(&self, checks: &Arc<[RateCheck]>, tokens: u64) -> Result<RateGrant, Error> {
        let now = self.inner.clock.now_ms();
        let keys: Vec<CounterKey> = checks.iter().map(RateCheck::mem_key).collect();
        let mut counters = self
            .inner
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut flight = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut remaining = Vec::new();
        for (check, key) in checks.iter().zip(&keys) {
            let n = match check.kind {
                RateKind::Requests => 1,
                RateKind::Tokens => tokens,
                RateKind::Parallel => {
                    let cur = flight.get(key).copied().unwrap_or(0);
                    if cur >= check.limit {
                        return Err(check.refused(Duration::from_secs(1)));
                    }
                    continue;
                }
            };
            let c = counters.get(key).copied().unwrap_or_default();
            let count = c.slots.count(now);
            if !window::admits(count, n, check.limit) {
                let wait = window::retry_after_ms(&c.slots.live(now), n, check.limit, now);
                return Err(check.refused(Duration::from_millis(wait)));
            }
            remaining.push(Remaining {
                kind: check.kind,
                limit: check.limit,
                remaining: check.limit.saturating_sub(count + n),
                reset_secs: c
                    .slots
                    .oldest(now)
                    .map_or(BUCKET_MS, |id| {
                        window::slot_leaves_at(id).saturating_sub(now)
                    })
                    .div_ceil(1000),
            });
        }
        for (check, key) in checks.iter().zip(keys) {
            match check.kind {
                RateKind::Parallel => *flight.entry(key).or_insert(0) += 1,
                kind => {
                    let n = if kind == RateKind::Requests {
                        1
                    } else {
                        tokens
                    };
                    counters.entry(key).or_default().slots.add(now, n);
                }
            }
        }
        Ok(RateGrant {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            checks: checks.clone(),
            tokens,
            bucket: now / window::SLOT_MS,
            remaining: tightest(remaining),
        })
    }
}

/// The tightest remaining request and token limits.
pub(crate) fn tightest(all: Vec<Remaining>) -> Vec<Remaining> {
    let mut out: Vec<Remaining> = Vec::new();
    for r in all {
        match out.iter_mut().find(|o| o.kind == r.kind) {
            Some(o) if r.remaining < o.remaining => *o = r,
            Some(_) => {}
            None => out.push(r),
        }
    }
    out
}

impl RateLimiter for MemoryRateLimiter {
    fn acquire(
        &self,
        checks: Arc<[RateCheck]>,
        tokens: u64,
    ) -> BoxFuture<Result<RateGrant, Error>> {
        Box::pin(std::future::ready(self.try_acquire(&checks, tokens)))
    }

    fn finish(&self, grant: RateGrant, actual_tokens: Option<u64>) {
        if grant.checks.iter().any(|c| c.kind == RateKind::Parallel) {
            let mut flight = self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for c in grant.checks.iter().filter(|c| c.kind == RateKind::Parallel) {
                let key = c.mem_key();
                if let Some(n) = flight.get_mut(&key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        flight.remove(&key);
                    }
                }
            }
        }
        let Some(actual) = actual_tokens.filter(|a| *a != grant.tokens) else {
            return;
        };
        let mut counters = self
            .inner
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for c in grant.checks.iter().filter(|c| c.kind == RateKind::Tokens) {
            if let Some(counter) = counters.get_mut(&c.mem_key()) {
                counter.slots.correct(grant.bucket, grant.tokens, actual);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{ManualClock, ScopeKind};

    fn check(kind: RateKind, limit: u64) -> RateCheck {
        RateCheck {
            scope: Scope::new(ScopeKind::Key, "k"),
            model: None,
            label: "key sk-...abcd".into(),
            kind,
            limit,
        }
    }

    fn checks(v: Vec<RateCheck>) -> Arc<[RateCheck]> {
        Arc::from(v)
    }

    /// Admits as many requests as it will at the clock's time.
    async fn drain(limiter: &MemoryRateLimiter, c: &Arc<[RateCheck]>) -> usize {
        let mut admitted = 0;
        while let Ok(g) = limiter.acquire(c.clone(), 0).await {
            limiter.finish(g, None);
            admitted += 1;
            assert!(admitted <= 10_000);
        }
        admitted
    }

    #[tokio::test]
    async fn no_minute_ever_holds_more_than_the_limit() {
        // Requests arrive in bursts at uneven times; after each burst, count
        // what was admitted in the minute before it (exactly, from a log).
        let clock = ManualClock::new(1_000_000_000 + 37_123);
        let limiter = MemoryRateLimiter::with_clock(Arc::new(clock.clone()));
        let c = checks(vec![check(RateKind::Requests, 60)]);
        let mut log: Vec<u64> = Vec::new();
        let mut rng = 0x9e37_79b9_u64;
        for _ in 0..400 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            clock.advance_ms(rng % 9_000);
            let burst = (rng >> 20) % 25;
            for _ in 0..burst {
                if let Ok(g) = limiter.acquire(c.clone(), 0).await {
                    limiter.finish(g, None);
                    log.push(clock.now_ms());
                }
            }
            let now = clock.now_ms();
            let in_last_minute = log.iter().filter(|t| **t + BUCKET_MS > now).count();
            assert!(
                in_last_minute <= 60,
                "{in_last_minute} in the minute before {now}"
            );
        }
        assert!(
            log.len() > 400,
            "the limiter admitted too little: {}",
            log.len()
        );
    }

    #[tokio::test]
    async fn capacity_returns_within_a_slot_of_the_exact_time() {
        let start = 10 * BUCKET_MS + 30_000;
        let clock = ManualClock::new(start);
        let limiter = MemoryRateLimiter::with_clock(Arc::new(clock.clone()));
        let c = checks(vec![check(RateKind::Requests, 60)]);
        assert_eq!(drain(&limiter, &c).await, 60);
        // Exactly one minute later the burst is out of the window, but its
        // slot still overlaps it: nothing yet.
        clock.set_ms(start + BUCKET_MS);
        assert_eq!(drain(&limiter, &c).await, 0);
        // The refusal says when it fits again: the slot's end plus a minute.
        clock.set_ms(start + BUCKET_MS + 4_999);
        let wait = limiter
            .acquire(c.clone(), 0)
            .await
            .unwrap_err()
            .retry_after()
            .unwrap();
        assert_eq!(wait, Duration::from_millis(1));
        clock.set_ms(start + BUCKET_MS + 5_000);
        assert_eq!(drain(&limiter, &c).await, 60);
    }

    #[tokio::test]
    async fn retry_after_is_when_it_fits_again() {
        let clock = ManualClock::new(5 * BUCKET_MS + 2_500);
        let limiter = MemoryRateLimiter::with_clock(Arc::new(clock.clone()));
        let c = checks(vec![check(RateKind::Requests, 10)]);
        for _ in 0..6 {
            let g = limiter.acquire(c.clone(), 0).await.unwrap();
            limiter.finish(g, None);
        }
        clock.advance_ms(20_000);
        assert_eq!(drain(&limiter, &c).await, 4);
        let refused = limiter.acquire(c.clone(), 0).await.unwrap_err();
        let h = refused.headers().expect("rate-limit headers on a refusal");
        assert_eq!(h["x-ratelimit-limit-requests"], "10");
        assert_eq!(h["x-ratelimit-remaining-requests"], "0");
        assert_eq!(h["x-ratelimit-reset-requests"], "43");
        let wait = refused.retry_after().unwrap();
        // The first six leave with their slot: 62.5 s after they came.
        assert_eq!(wait, Duration::from_millis(62_500 - 20_000));
        clock.advance_ms(wait.as_millis() as u64 - 1);
        assert!(limiter.acquire(c.clone(), 0).await.is_err());
        clock.advance_ms(1);
        assert_eq!(drain(&limiter, &c).await, 6);
    }

    #[tokio::test]
    async fn tokens_are_corrected_from_actual_usage() {
        let clock = ManualClock::new(7 * BUCKET_MS);
        let limiter = MemoryRateLimiter::with_clock(Arc::new(clock.clone()));
        let c = checks(vec![check(RateKind::Tokens, 1000)]);
        let g = limiter.acquire(c.clone(), 900).await.unwrap();
        assert!(limiter.acquire(c.clone(), 200).await.is_err());
        limiter.finish(g, Some(100));
        let g = limiter.acquire(c.clone(), 800).await.unwrap();
        assert_eq!(g.remaining[0].remaining, 100);
        limiter.finish(g, None);
    }

    #[tokio::test]
    async fn parallel_slots_are_released_and_all_or_nothing() {
        let limiter = MemoryRateLimiter::new();
        let par = check(RateKind::Parallel, 1);
        let mut rpm = check(RateKind::Requests, 1);
        rpm.scope = Scope::new(ScopeKind::Team, "t");
        let both = checks(vec![par.clone(), rpm.clone()]);
        let g = limiter.acquire(both.clone(), 0).await.unwrap();
        assert_eq!(limiter.in_flight(&par), 1);
        // Parallel is full: refused, and the rpm counter was not charged.
        assert!(limiter.acquire(checks(vec![par.clone()]), 0).await.is_err());
        limiter.finish(g, None);
        assert_eq!(limiter.in_flight(&par), 0);
        // rpm (1) is spent by the first request only.
        let e = limiter.acquire(both, 0).await.unwrap_err();
        assert!(
            e.message().contains("1 requests per minute"),
            "{}",
            e.message()
        );
        assert_eq!(limiter.in_flight(&par), 0);
    }

    #[test]
    fn oversized_requests_enter_an_empty_window_only() {
        assert!(window::admits(0, 5_000, 1_000));
        assert!(!window::admits(1, 5_000, 1_000));
    }
}
