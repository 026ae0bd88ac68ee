//! Budgets and rate limits: who may spend what, and how fast.
//!
//! A request is subject to the limits of several *scopes* at once: the
//! gateway ([`ScopeKind::Global`]), the virtual key, its team, its internal
//! user and the end user named by the request's `user` field. The auth layer
//! puts the key's [`Subjects`] (key, team, user, each with its [`Limits`])
//! into the request's extensions; the budget and rate-limit layers add the
//! global and end-user subjects and enforce all of them together.
//!
//! Storage sits behind two small traits the control plane implements:
//! [`SpendHistory`] (what a scope already spent in its current window, read
//! once when the ledger first meets the scope) and [`EndUsers`] (limits of
//! end users). The hot path never waits on them once a scope is warm.

mod clock;
mod estimate;
mod layer;
mod ledger;
mod rate;
#[cfg(feature = "redis")]
mod redis;
mod scope;
mod spec;

pub use clock::{Clock, ManualClock, SystemClock};
pub use estimate::{
    CostEstimator, DEFAULT_MAX_OUTPUT_TOKENS, PriceEstimator, count_embedding_input, count_prompt,
    prompt_upper_bound, worst_case_of, worst_output,
};
pub use layer::{
    Budget, BudgetLayer, LimitScopes, RateLimit, RateLimitLayer, RateLimitState, rate_limit_headers,
};
pub use ledger::{
    Balance, BudgetLine, Ledger, LedgerBuilder, MemoryLedger, Reservation, SoftCrossing,
};
pub use rate::{
    BUCKET_MS, MemoryRateLimiter, RateCheck, RateGrant, RateKind, RateLimiter, Remaining,
};
#[cfg(feature = "redis")]
pub use redis::{RedisConn, RedisLedger, RedisRateLimiter, SharedCooldowns};
pub use scope::{Scope, ScopeKind, Subject, Subjects};
pub use spec::{BudgetWindow, Limits, ModelBudget, Window};

use crate::error::Error;
use crate::pricing::Usd;
use crate::provider::BoxFuture;

/// What scopes already spent, from durable storage (spend logs).
pub trait SpendHistory: Send + Sync + 'static {
    /// The spend of `scope` (restricted to `model` when given: per-model
    /// budgets) since `since` (Unix seconds; `None`: all time).
    fn spent(
        &self,
        scope: &Scope,
        model: Option<&str>,
        since: Option<u64>,
    ) -> BoxFuture<Result<Usd, Error>>;
}

/// No history: every scope starts at zero (tests, or no database).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHistory;

impl SpendHistory for NoHistory {
    fn spent(&self, _: &Scope, _: Option<&str>, _: Option<u64>) -> BoxFuture<Result<Usd, Error>> {
        Box::pin(std::future::ready(Ok(Usd::ZERO)))
    }
}

/// End users' limits, by the id in the request's `user` field.
pub trait EndUsers: Send + Sync + 'static {
    /// The end user's subject: `Ok(None)` for an unknown end user (then the
    /// configured default end-user budget, if any, applies), an error for a
    /// blocked one. Implementations answer from memory when they can.
    fn end_user(&self, id: &str) -> BoxFuture<Result<Option<Subject>, Error>>;
}
