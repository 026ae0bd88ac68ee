//! Routing strategies: which of the eligible deployments serves a request.
//!
//! The router first narrows a group to the deployments that may serve now
//! (not cooling down, under their `rpm`/`tpm`/`max_parallel_requests` caps,
//! matching the request's tags, big enough for the prompt, lowest `order`);
//! a strategy then picks one of those. LiteLLM's strategies are built in:
//!
//! - `simple-shuffle` — weighted random by `weight`, else `rpm`, else `tpm`, else uniform.
//! - `least-busy` — the fewest requests in flight (ties broken at random).
//! - `latency-based-routing` — the lowest EWMA of time to first token for
//!   streams and of seconds per output token otherwise; deployments within
//!   `lowest_latency_buffer` (a fraction) of the best share the traffic at
//!   random, and a deployment never measured is tried first.
//! - `usage-based-routing-v2` — the lowest use of its `tpm` (else `rpm`) in the
//!   current minute.
//! - `cost-based-routing` — the lowest price per token.
//!
//! Implement [`RoutingStrategy`] to plug in another.
//!
//! Why not `tower::balance::p2c`? Power-of-two-choices balancing is built for
//! homogeneous replicas whose readiness the balancer drives; deployments of a
//! model group differ in price, limits, tags, order and health, and the
//! gateway answers a 429 at once rather than waiting for readiness. The
//! strategies above pick among pre-filtered candidates instead; `least-busy`
//! uses the same in-flight measure as `tower::load::PendingRequests`.

use super::Deployment;
use crate::error::Error;

/// What a strategy knows about the request.
#[derive(Clone, Copy, Debug)]
pub struct PickContext {
    /// A streamed request (latency routing compares time to first token).
    pub stream: bool,
    /// A uniform random number in [0, 1) for this pick.
    pub random: f64,
}

/// Picks one of the eligible deployments.
pub trait RoutingStrategy: Send + Sync + 'static {
    /// Picks from `candidates` (never empty).
    fn pick<'a>(&self, candidates: &[&'a Deployment], ctx: &PickContext) -> &'a Deployment;
}

/// LiteLLM's strategies.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Strategy {
    /// `simple-shuffle`.
    SimpleShuffle,
    /// `least-busy`.
    LeastBusy,
    /// `latency-based-routing` with its `lowest_latency_buffer`.
    LatencyBased {
        /// Deployments within this fraction of the best latency share traffic.
        buffer: f64,
    },
    /// `usage-based-routing-v2` (and `usage-based-routing`).
    UsageBased,
    /// `cost-based-routing`.
    CostBased,
}

impl Strategy {
    /// Parses LiteLLM's `routing_strategy` name.
    pub fn parse(name: &str, lowest_latency_buffer: Option<f64>) -> Result<Strategy, Error> {
        Ok(match name {
            "simple-shuffle" => Strategy::SimpleShuffle,
            "least-busy" => Strategy::LeastBusy,
            "latency-based-routing" => Strategy::LatencyBased {
                buffer: lowest_latency_buffer.unwrap_or(0.0).clamp(0.0, 10.0),
            },
            "usage-based-routing" | "usage-based-routing-v2" => Strategy::UsageBased,
            "cost-based-routing" => Strategy::CostBased,
            other => {
                return Err(Error::bad_request(format!(
                    "unknown routing strategy `{other}`"
                )));
            }
        })
    }
}

/// Picks an item with probability proportional to its weight, given a
/// uniform sample `u` in [0, 1). With all weights zero the pick is uniform.
pub(crate) fn weighted_pick<'a, T>(
    items: &[&'a T],
    weight: impl Fn(&T) -> f64,
    u: f64,
) -> Option<&'a T> {
    if items.is_empty() {
        return None;
    }
    let w = |t: &T| {
        let x = weight(t);
        if x.is_finite() && x > 0.0 { x } else { 0.0 }
    };
    let total: f64 = items.iter().map(|t| w(t)).sum();
    if total <= 0.0 {
        let i = ((u * items.len() as f64) as usize).min(items.len() - 1);
        return Some(items[i]);
    }
    let mut target = u * total;
    for t in items {
        let x = w(t);
        if target < x {
            return Some(t);
        }
        target -= x;
    }
    items.iter().rev().find(|t| w(t) > 0.0).copied()
}

/// Uniform pick among the items whose `score` is within `buffer` of the lowest.
fn lowest<'a>(
    items: &[&'a Deployment],
    score: impl Fn(&Deployment) -> f64,
    buffer: f64,
    u: f64,
) -> &'a Deployment {
    let best = items.iter().map(|d| score(d)).fold(f64::INFINITY, f64::min);
    let near: Vec<&Deployment> = items
        .iter()
        .filter(|d| score(d) <= best * (1.0 + buffer) + f64::EPSILON)
        .copied()
        .collect();
    let i = ((u * near.len() as f64) as usize).min(near.len().saturating_sub(1));
    near.get(i).copied().unwrap_or(items[0])
}

impl RoutingStrategy for Strategy {
    fn pick<'a>(&self, candidates: &[&'a Deployment], ctx: &PickContext) -> &'a Deployment {
        match self {
            Strategy::SimpleShuffle => {
                let by: fn(&Deployment) -> f64 = if candidates.iter().any(|d| d.weight.is_some()) {
                    |d| d.weight.unwrap_or(0.0)
                } else if candidates.iter().any(|d| d.rpm.is_some()) {
                    |d| d.rpm.unwrap_or(0) as f64
                } else if candidates.iter().any(|d| d.tpm.is_some()) {
                    |d| d.tpm.unwrap_or(0) as f64
                } else {
                    |_| 1.0
                };
                weighted_pick(candidates, by, ctx.random).unwrap_or(candidates[0])
            }
            Strategy::LeastBusy => lowest(
                candidates,
                |d| f64::from(d.stats.in_flight()),
                0.0,
                ctx.random,
            ),
            Strategy::LatencyBased { buffer } => {
                // Never-measured deployments first: they need a sample.
                let unmeasured: Vec<&Deployment> = candidates
                    .iter()
                    .filter(|d| latency_score(d, ctx.stream).is_none())
                    .copied()
                    .collect();
                if !unmeasured.is_empty() {
                    return lowest(&unmeasured, |_| 0.0, 0.0, ctx.random);
                }
                lowest(
                    candidates,
                    |d| latency_score(d, ctx.stream).unwrap_or(f64::INFINITY),
                    *buffer,
                    ctx.random,
                )
            }
            Strategy::UsageBased => lowest(
                candidates,
                |d| {
                    let (requests, tokens) = d.stats.current_minute();
                    match (d.tpm, d.rpm) {
                        (Some(tpm), _) if tpm > 0 => tokens as f64 / tpm as f64,
                        (_, Some(rpm)) if rpm > 0 => requests as f64 / rpm as f64,
                        _ => tokens as f64,
                    }
                },
                0.0,
                ctx.random,
            ),
            Strategy::CostBased => lowest(
                candidates,
                |d| {
                    d.price
                        .as_ref()
                        .map(|p| {
                            p.tokens.input.map_or(0.0, |u| u.as_f64())
                                + p.tokens.output.map_or(0.0, |u| u.as_f64())
                        })
                        .unwrap_or(f64::INFINITY)
                },
                0.0,
                ctx.random,
            ),
        }
    }
}

fn latency_score(d: &Deployment, stream: bool) -> Option<f64> {
    if stream {
        d.stats.time_to_first_token().or_else(|| d.stats.latency())
    } else {
        d.stats.latency_per_token().or_else(|| d.stats.latency())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_pick_follows_weights() {
        let a = 1.0f64;
        let b = 3.0f64;
        let items = [&a, &b];
        let mut counts = [0u32; 2];
        for i in 0..10_000 {
            let u = (i as f64 + 0.5) / 10_000.0;
            let got = weighted_pick(&items, |x| *x, u).unwrap();
            counts[usize::from(*got == b)] += 1;
        }
        assert_eq!(counts, [2_500, 7_500]);
        let zeros = [&0.0f64, &0.0f64];
        assert!(weighted_pick(&zeros, |x| *x, 0.99).is_some());
        let none: [&f64; 0] = [];
        assert!(weighted_pick(&none, |x| *x, 0.5).is_none());
    }

    #[test]
    fn strategy_names() {
        assert_eq!(
            Strategy::parse("least-busy", None).unwrap(),
            Strategy::LeastBusy
        );
        assert_eq!(
            Strategy::parse("latency-based-routing", Some(0.1)).unwrap(),
            Strategy::LatencyBased { buffer: 0.1 }
        );
        assert!(Strategy::parse("random", None).is_err());
    }
}
