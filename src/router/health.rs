//! Deployment health: passive (live traffic) and active (background checks).
//!
//! Passive health is the cooldown state fed by every upstream outcome (see
//! [`super::cooldown`]). Active checks run in the background every
//! `health_check_interval` when `background_health_checks` is on. They never
//! spend money by default: a deployment is checked with its provider's free
//! probe — the model list (`GET {api_base}/models`) for OpenAI-compatible
//! servers — and a one-token completion is sent only for deployments that
//! ask for it (`model_info.health_check_mode: completion`). A failed check
//! takes the deployment out until the next check passes.
//!
//! ```no_run
//! use std::time::Duration;
//! # fn run(router: tollgate::router::Router) {
//! let handle = tollgate::router::health::spawn_checks(router.clone(), Duration::from_secs(300));
//! let report = tollgate::router::health::report(&router);
//! println!("{} healthy, {} unhealthy", report.healthy_count, report.unhealthy_count);
//! # drop(handle);
//! # }
//! ```

use super::{Deployment, Router};
use crate::error::Error;
use crate::provider::BoxFuture;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// A cheap check that a deployment's upstream is up.
pub trait HealthProbe: Send + Sync + 'static {
    /// Runs the check.
    fn check(&self) -> BoxFuture<Result<(), Error>>;
}

/// The outcome of the last active check.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// When it ran (Unix milliseconds).
    pub at_ms: u128,
    /// `None` if healthy, else the error message.
    pub error: Option<String>,
}

/// One deployment in a [`HealthReport`].
#[derive(Clone, Debug, Serialize)]
pub struct EndpointHealth {
    /// The model group.
    pub model_group: String,
    /// The deployment id.
    pub model_id: String,
    /// The LiteLLM model string.
    pub model: String,
    /// The upstream base URL (no credentials).
    pub api_base: Option<String>,
    /// Seconds left in a cooldown.
    pub cooldown_remaining_s: Option<f64>,
    /// The last upstream error seen in traffic.
    pub last_error: Option<String>,
    /// The last active check.
    pub last_check: Option<CheckResult>,
}

/// What `/health` reports (LiteLLM's shape plus cooldown details).
#[derive(Clone, Debug, Serialize)]
pub struct HealthReport {
    /// Deployments taking traffic.
    pub healthy_endpoints: Vec<EndpointHealth>,
    /// Deployments cooling down or failing their checks.
    pub unhealthy_endpoints: Vec<EndpointHealth>,
    /// Count of healthy ones.
    pub healthy_count: usize,
    /// Count of unhealthy ones.
    pub unhealthy_count: usize,
}

/// The current health of every deployment, from traffic and the last checks.
/// Makes no upstream call.
pub fn report(router: &Router) -> HealthReport {
    let now = Instant::now();
    let mut healthy = Vec::new();
    let mut unhealthy = Vec::new();
    let mut groups: Vec<_> = router.groups().collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    for g in groups {
        for d in &g.deployments {
            let (remaining, last_error) = {
                let h = d
                    .stats
                    .health
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                (h.remaining(now), h.last_error.clone())
            };
            let e = EndpointHealth {
                model_group: g.name.to_string(),
                model_id: d.info.id.to_string(),
                model: d.info.model.to_string(),
                api_base: d.info.api_base.as_deref().map(str::to_owned),
                cooldown_remaining_s: remaining.map(|r| r.as_secs_f64()),
                last_error,
                last_check: d.stats.last_check(),
            };
            if remaining.is_some() {
                unhealthy.push(e);
            } else {
                healthy.push(e);
            }
        }
    }
    HealthReport {
        healthy_count: healthy.len(),
        unhealthy_count: unhealthy.len(),
        healthy_endpoints: healthy,
        unhealthy_endpoints: unhealthy,
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Checks one deployment now and records the result.
pub async fn check(deployment: &Deployment, interval: Duration) -> Option<CheckResult> {
    let probe = deployment.probe.as_ref()?;
    let outcome = tokio::time::timeout(Duration::from_secs(30), probe.check()).await;
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.message().to_owned()),
        Err(_) => Some("the health check timed out".to_owned()),
    };
    {
        let mut h = deployment
            .stats
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &error {
            Some(msg) => {
                h.unhealthy_until = Some(Instant::now() + interval);
                h.last_error = Some(msg.clone());
            }
            None => h.unhealthy_until = None,
        }
    }
    deployment.stats.metrics.set_state(
        &deployment.info,
        if error.is_some() {
            crate::observe::metrics::DeploymentState::CompleteOutage
        } else {
            crate::observe::metrics::DeploymentState::Healthy
        },
    );
    let result = CheckResult {
        at_ms: now_ms(),
        error,
    };
    *deployment
        .stats
        .last_check
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result.clone());
    Some(result)
}

/// Checks every deployment with a probe every `interval`, until the handle is aborted.
pub fn spawn_checks(router: Router, interval: Duration) -> tokio::task::JoinHandle<()> {
    let interval = interval.max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let deployments: Vec<Deployment> = router
                .groups()
                .flat_map(|g| g.deployments.iter().cloned())
                .collect();
            for d in deployments {
                check(&d, interval).await;
            }
        }
    })
}

/// A probe from a closure (tests, custom checks).
pub struct FnProbe<F>(pub F);

impl<F, Fut> HealthProbe for FnProbe<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), Error>> + Send + 'static,
{
    fn check(&self) -> BoxFuture<Result<(), Error>> {
        Box::pin((self.0)())
    }
}

impl<P: crate::provider::Protocol> HealthProbe for crate::provider::HttpProvider<P> {
    fn check(&self) -> BoxFuture<Result<(), Error>> {
        self.health_check()
    }
}

impl HealthProbe for crate::provider::Mock {
    fn check(&self) -> BoxFuture<Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
}

/// A probe that sends a one-token completion through a deployment's chat
/// service (costs money: only when asked for).
pub struct CompletionProbe {
    service: super::ChatService,
    model: Arc<str>,
}

impl CompletionProbe {
    /// Probes `service` with a one-token request for `model`.
    pub fn new(service: super::ChatService, model: Arc<str>) -> Self {
        CompletionProbe { service, model }
    }
}

impl HealthProbe for CompletionProbe {
    fn check(&self) -> BoxFuture<Result<(), Error>> {
        use tower::ServiceExt;
        let svc = self.service.clone();
        let mut body = crate::types::ChatRequestBody::new(
            self.model.to_string(),
            vec![crate::types::Message::user("ping")],
        );
        body.max_tokens = Some(1);
        Box::pin(async move { svc.oneshot(crate::ChatRequest::new(body)).await.map(|_| ()) })
    }
}
