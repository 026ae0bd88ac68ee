//! Cooldowns: taking failing deployments out of rotation for a while.
//!
//! LiteLLM's settings: `allowed_fails` (failures per minute before a
//! cooldown, default 3), `allowed_fails_policy` (the same per error class),
//! `cooldown_time` (default 5 s), `disable_cooldowns`.
//!
//! # Semantics
//!
//! - Only upstream failures count; a refusal by the gateway itself never does.
//! - Errors that say the deployment cannot serve at all — 401, 403, 404 — and
//!   rate limits (429, and 529 overloaded) cool the deployment down at once:
//!   sending it more traffic cannot help. A rate limit with a longer
//!   `Retry-After` cools it down for that long (up to five minutes).
//! - Timeouts and server errors (5xx, broken connections) count; more than
//!   `allowed_fails` of them within a minute cool the deployment down.
//! - Client mistakes (400, context window, content policy) do not count,
//!   unless `allowed_fails_policy` gives them a number: a caller sending bad
//!   requests must not be able to take deployments out.
//! - A group with a single deployment is never cooled down (there would be
//!   nothing left to serve it).
//! - After the cooldown the deployment is eligible again: the next request
//!   probes it, and a failure cools it down again.
//! - Health checks mark deployments unhealthy the same way (see [`super::health`]).

use crate::error::{Error, ErrorKind};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Error classes of LiteLLM's `allowed_fails_policy` / `retry_policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// 400 and other client mistakes.
    BadRequest,
    /// 401 / 403.
    Authentication,
    /// Timeouts.
    Timeout,
    /// 429 / 529.
    RateLimit,
    /// Content-policy refusals.
    ContentPolicy,
    /// 5xx, connection failures.
    InternalServer,
}

impl ErrorClass {
    /// The class of an error kind.
    pub fn of(kind: ErrorKind) -> ErrorClass {
        match kind {
            ErrorKind::Authentication | ErrorKind::PermissionDenied => ErrorClass::Authentication,
            ErrorKind::Timeout(_) => ErrorClass::Timeout,
            ErrorKind::RateLimited(_) => ErrorClass::RateLimit,
            ErrorKind::ContentPolicy => ErrorClass::ContentPolicy,
            ErrorKind::Upstream(429) => ErrorClass::RateLimit,
            ErrorKind::Upstream(s) if s < 500 && s != 408 => ErrorClass::BadRequest,
            ErrorKind::Upstream(408) => ErrorClass::Timeout,
            ErrorKind::Upstream(_)
            | ErrorKind::Internal
            | ErrorKind::BadGateway
            | ErrorKind::Connection
            | ErrorKind::ServiceUnavailable => ErrorClass::InternalServer,
            _ => ErrorClass::BadRequest,
        }
    }

    /// The class of an error: its kind's class, except that an upstream's
    /// "overloaded" answer (HTTP 529, Anthropic's `overloaded_error`) is a
    /// rate limit although it reaches the client as a 503.
    pub fn of_error(err: &Error) -> ErrorClass {
        if err.kind() == ErrorKind::ServiceUnavailable
            && matches!(err.code(), Some("overloaded" | "overloaded_error"))
        {
            return ErrorClass::RateLimit;
        }
        ErrorClass::of(err.kind())
    }

    /// Parses LiteLLM's policy key prefix (`RateLimitError` in `RateLimitErrorAllowedFails`).
    pub fn from_litellm(name: &str) -> Option<ErrorClass> {
        Some(match name {
            "BadRequestError" => ErrorClass::BadRequest,
            "AuthenticationError" => ErrorClass::Authentication,
            "TimeoutError" | "Timeout" => ErrorClass::Timeout,
            "RateLimitError" => ErrorClass::RateLimit,
            "ContentPolicyViolationError" => ErrorClass::ContentPolicy,
            "InternalServerError" => ErrorClass::InternalServer,
            _ => return None,
        })
    }
}

/// When deployments are cooled down. See the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CooldownPolicy {
    /// Failures allowed per minute before a cooldown.
    pub allowed_fails: u32,
    /// Per-class overrides of `allowed_fails`.
    pub allowed_fails_policy: HashMap<ErrorClass, u32>,
    /// How long a cooldown lasts.
    pub cooldown_time: Duration,
    /// No cooldowns at all.
    pub disabled: bool,
}

impl Default for CooldownPolicy {
    fn default() -> Self {
        CooldownPolicy {
            allowed_fails: 3,
            allowed_fails_policy: HashMap::new(),
            cooldown_time: Duration::from_secs(5),
            disabled: false,
        }
    }
}

/// Longest cooldown a `Retry-After` may ask for.
const MAX_RETRY_AFTER_COOLDOWN: Duration = Duration::from_secs(300);

impl CooldownPolicy {
    /// How many failures of `class` a minute are allowed (`None`: they do not count).
    fn allowed(&self, class: ErrorClass, kind: ErrorKind) -> Option<u32> {
        if let Some(n) = self.allowed_fails_policy.get(&class) {
            return Some(*n);
        }
        match class {
            ErrorClass::Authentication | ErrorClass::RateLimit => Some(0),
            ErrorClass::BadRequest if kind == ErrorKind::NotFound => Some(0),
            ErrorClass::BadRequest | ErrorClass::ContentPolicy => None,
            ErrorClass::Timeout | ErrorClass::InternalServer => Some(self.allowed_fails),
        }
    }
}

/// Health of one deployment: cooldown state and recent failures.
#[derive(Debug, Default)]
pub(crate) struct Health {
    pub(crate) cooldown_until: Option<Instant>,
    window_start: Option<Instant>,
    fails: HashMap<ErrorClass, u32>,
    pub(crate) last_error: Option<String>,
    /// Set by active health checks.
    pub(crate) unhealthy_until: Option<Instant>,
}

impl Health {
    pub(crate) fn remaining(&self, now: Instant) -> Option<Duration> {
        let until = match (self.cooldown_until, self.unhealthy_until) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b)?,
        };
        let left = until.saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }

    /// Records an upstream failure; returns whether the deployment is now cooling down.
    pub(crate) fn fail(
        &mut self,
        err: &Error,
        policy: &CooldownPolicy,
        group_size: usize,
        now: Instant,
    ) -> bool {
        if err.provider().is_none() {
            return false;
        }
        self.last_error = Some(err.message().chars().take(500).collect());
        if policy.disabled || group_size <= 1 {
            return false;
        }
        let class = ErrorClass::of_error(err);
        let Some(allowed) = policy.allowed(class, err.kind()) else {
            return false;
        };
        match self.window_start {
            Some(s) if now.saturating_duration_since(s) < Duration::from_secs(60) => {}
            _ => {
                self.window_start = Some(now);
                self.fails.clear();
            }
        }
        let n = self.fails.entry(class).or_insert(0);
        *n += 1;
        if *n <= allowed {
            return false;
        }
        let mut length = policy.cooldown_time;
        if class == ErrorClass::RateLimit
            && let Some(after) = err.retry_after()
        {
            length = length.max(after.min(MAX_RETRY_AFTER_COOLDOWN));
        }
        self.cooldown_until = Some(now + length);
        self.fails.clear();
        self.window_start = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::LimitSource;

    fn upstream(kind: ErrorKind) -> Error {
        Error::new(kind, "boom").with_provider("openai")
    }

    #[tokio::test(start_paused = true)]
    async fn server_errors_count_up_to_allowed_fails() {
        let policy = CooldownPolicy::default();
        let mut h = Health::default();
        let now = Instant::now();
        for _ in 0..3 {
            assert!(!h.fail(&upstream(ErrorKind::Upstream(500)), &policy, 2, now));
        }
        assert!(h.fail(&upstream(ErrorKind::Upstream(500)), &policy, 2, now));
        assert_eq!(h.remaining(now), Some(Duration::from_secs(5)));
        assert_eq!(h.remaining(now + Duration::from_secs(5)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limits_and_auth_cool_down_at_once() {
        let policy = CooldownPolicy::default();
        let now = Instant::now();
        let mut h = Health::default();
        let e = upstream(ErrorKind::RateLimited(LimitSource::Upstream))
            .with_retry_after(Duration::from_secs(30));
        assert!(h.fail(&e, &policy, 3, now));
        assert_eq!(h.remaining(now), Some(Duration::from_secs(30)));
        let mut h = Health::default();
        let overloaded = upstream(ErrorKind::ServiceUnavailable).with_code("overloaded_error");
        assert!(
            h.fail(&overloaded, &policy, 3, now),
            "a 529 cools down at once"
        );
        let mut h = Health::default();
        assert!(!h.fail(&upstream(ErrorKind::ServiceUnavailable), &policy, 3, now));
        let mut h = Health::default();
        assert!(h.fail(&upstream(ErrorKind::Authentication), &policy, 3, now));
        let mut h = Health::default();
        assert!(h.fail(&upstream(ErrorKind::NotFound), &policy, 3, now));
    }

    #[tokio::test(start_paused = true)]
    async fn client_mistakes_gateway_errors_and_single_deployments_never_cool() {
        let policy = CooldownPolicy::default();
        let now = Instant::now();
        let mut h = Health::default();
        for _ in 0..100 {
            assert!(!h.fail(&upstream(ErrorKind::BadRequest), &policy, 3, now));
            assert!(!h.fail(&upstream(ErrorKind::ContextWindowExceeded), &policy, 3, now));
            assert!(!h.fail(
                &Error::new(ErrorKind::Upstream(500), "gateway"),
                &policy,
                3,
                now
            ));
            assert!(!h.fail(&upstream(ErrorKind::Authentication), &policy, 1, now));
        }
        let strict = CooldownPolicy {
            allowed_fails_policy: [(ErrorClass::BadRequest, 1)].into(),
            ..CooldownPolicy::default()
        };
        assert!(!h.fail(&upstream(ErrorKind::BadRequest), &strict, 3, now));
        assert!(h.fail(&upstream(ErrorKind::BadRequest), &strict, 3, now));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_older_than_a_minute_are_forgotten() {
        let policy = CooldownPolicy::default();
        let mut h = Health::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            h.fail(&upstream(ErrorKind::Connection), &policy, 2, t0);
        }
        assert!(!h.fail(
            &upstream(ErrorKind::Connection),
            &policy,
            2,
            t0 + Duration::from_secs(61)
        ));
    }
}
