//! Budgets and rate limits from a LiteLLM config: where counters live
//! (memory, or Redis when one is configured), the gateway-wide budget, the
//! default end-user budget, and how worst cases are priced.

use super::config::{ConfigError, ProxyConfig};
use crate::error::{Error, ErrorKind};
use crate::fallback::FallbackConfig;
use crate::limits::{
    CostEstimator, DEFAULT_MAX_OUTPUT_TOKENS, EndUsers, Ledger, LimitScopes, Limits, MemoryLedger,
    MemoryRateLimiter, RateLimiter, RedisConn, RedisLedger, RedisRateLimiter, SpendHistory,
    SystemClock, worst_case_of, worst_output,
};
use crate::pricing::{ModelPrice, Usd};
use crate::provider::BoxFuture;
use crate::router::Router;
use crate::types::{ChatRequest, EmbeddingRequest, Usage};
use serde_json::Value;
use std::sync::Arc;

/// The limits machinery of a proxy.
#[derive(Clone)]
pub struct LimitsSetup {
    /// Where budgets are kept.
    pub ledger: Arc<dyn Ledger>,
    /// Where rate-limit counters are kept.
    pub limiter: Arc<dyn RateLimiter>,
    /// Gateway and end-user scopes.
    pub scopes: LimitScopes,
    /// Worst-case pricing.
    pub estimator: Arc<dyn CostEstimator>,
    /// The Redis connection, when counters are shared.
    pub redis: Option<RedisConn>,
}

impl std::fmt::Debug for LimitsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitsSetup")
            .field("scopes", &self.scopes)
            .field("redis", &self.redis)
            .finish_non_exhaustive()
    }
}

impl LimitsSetup {
    /// Waits until every settlement and slot release is recorded.
    pub async fn flush(&self) {
        self.ledger.flush().await;
        self.limiter.flush().await;
    }
}

fn lookup<'a>(config: &'a ProxyConfig, key: &str) -> Option<&'a Value> {
    config
        .router_settings
        .other
        .get(key)
        .or_else(|| config.litellm_settings.other.get(key))
        .or_else(|| config.general_settings.other.get(key))
        .filter(|v| !v.is_null())
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The Redis URL a config asks for: `redis_url`, or `redis_host` +
/// `redis_port` + `redis_password` (router_settings, litellm_settings,
/// general_settings), or `cache_params` of type redis, or the `REDIS_URL` /
/// `REDIS_HOST` / `REDIS_PORT` / `REDIS_PASSWORD` variables, as LiteLLM reads
/// them.
pub fn redis_url(config: &ProxyConfig, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(url) = lookup(config, "redis_url").and_then(text) {
        return Some(url);
    }
    let cache_params = config
        .litellm_settings
        .other
        .get("cache_params")
        .and_then(Value::as_object)
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("redis"));
    let field = |key: &str, cache_key: &str| {
        lookup(config, key)
            .and_then(text)
            .or_else(|| cache_params.and_then(|p| p.get(cache_key)).and_then(text))
    };
    let host = field("redis_host", "host");
    if let Some(host) = host {
        let port = field("redis_port", "port").unwrap_or_else(|| "6379".to_owned());
        let password = field("redis_password", "password");
        return Some(match password {
            Some(p) => format!("redis://:{}@{host}:{port}", percent_encode(&p)),
            None => format!("redis://{host}:{port}"),
        });
    }
    if let Some(url) = cache_params.and_then(|p| p.get("url")).and_then(text) {
        return Some(url);
    }
    if let Some(url) = env("REDIS_URL").filter(|u| !u.trim().is_empty()) {
        return Some(url);
    }
    let host = env("REDIS_HOST").filter(|h| !h.trim().is_empty())?;
    let port = env("REDIS_PORT").unwrap_or_else(|| "6379".to_owned());
    Some(match env("REDIS_PASSWORD").filter(|p| !p.is_empty()) {
        Some(p) => format!("redis://:{}@{host}:{port}", percent_encode(&p)),
        None => format!("redis://{host}:{port}"),
    })
}

/// The prefix of every Redis key: `general_settings.redis_namespace`, else
/// `cache_params.namespace`, else `tollgate`. Replicas that share limits
/// must share it; separate deployments on one Redis must not.
pub fn redis_namespace(config: &ProxyConfig) -> String {
    config
        .general_settings
        .other
        .get("redis_namespace")
        .and_then(text)
        .or_else(|| {
            config
                .litellm_settings
                .other
                .get("cache_params")
                .and_then(|p| p.get("namespace"))
                .and_then(text)
        })
        .unwrap_or_else(|| "tollgate".to_owned())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn money(config: &ProxyConfig, section: &str, key: &str) -> Result<Option<Usd>, ConfigError> {
    let v = match section {
        "litellm_settings" => config.litellm_settings.other.get(key),
        _ => config.general_settings.other.get(key),
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| *f >= 0.0)
            .and_then(Usd::from_f64)
            .map(Some)
            .ok_or_else(|| {
                ConfigError(format!(
                    "{section}.{key}: expected a non-negative number of dollars"
                ))
            }),
    }
}

/// Builds the limits of a proxy. `history` reads past spend (the spend
/// logs), `end_users` end users' limits, when a database is configured.
pub fn build(
    config: &ProxyConfig,
    env: &dyn Fn(&str) -> Option<String>,
    router: &Router,
    fallbacks: &FallbackConfig,
    history: Arc<dyn SpendHistory>,
    end_users: Option<Arc<dyn EndUsers>>,
) -> Result<LimitsSetup, ConfigError> {
    let mut global = Limits::none();
    global.max_budget = money(config, "litellm_settings", "max_budget")?;
    if let Some(d) = config
        .litellm_settings
        .other
        .get("budget_duration")
        .and_then(text)
    {
        global.budget_window = Some(d.parse().map_err(|e: Error| {
            ConfigError(format!("litellm_settings.budget_duration: {}", e.message()))
        })?);
    }
    let mut end_user = Limits::none();
    end_user.max_budget = money(config, "litellm_settings", "max_end_user_budget")?;
    let mut scopes = LimitScopes::new().global(global).default_end_user(end_user);
    if let Some(e) = end_users {
        scopes = scopes.end_users(e);
    }
    let fail_open = config
        .general_settings
        .other
        .get("allow_requests_on_db_unavailable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let options = MemoryLedger::builder()
        .history(history)
        .clock(Arc::new(SystemClock))
        .on_soft_budget(|_| {});
    let (ledger, limiter, redis): (Arc<dyn Ledger>, Arc<dyn RateLimiter>, _) =
        match redis_url(config, env) {
            Some(url) => {
                let conn = RedisConn::new(&url, &redis_namespace(config))
                    .map_err(|e| ConfigError(format!("redis: {}", e.message())))?;
                let ledger = RedisLedger::new(conn.clone(), options);
                let limiter =
                    RedisRateLimiter::new(conn.clone(), Arc::new(SystemClock)).fail_open(fail_open);
                let ledger: Arc<dyn Ledger> = if fail_open {
                    Arc::new(FailOpen(ledger))
                } else {
                    Arc::new(ledger)
                };
                (ledger, Arc::new(limiter), Some(conn))
            }
            None => (
                Arc::new(options.build()),
                Arc::new(MemoryRateLimiter::new()),
                None,
            ),
        };
    Ok(LimitsSetup {
        ledger,
        limiter,
        scopes,
        estimator: Arc::new(RouterEstimator {
            router: router.clone(),
            fallbacks: fallbacks.clone(),
        }),
        redis,
    })
}

/// A ledger that lets requests through (without a reservation) while its
/// store is unreachable: `allow_requests_on_db_unavailable: true`.
struct FailOpen<L>(L);

impl<L: Ledger + Clone> Ledger for FailOpen<L> {
    fn reserve(
        &self,
        lines: Arc<[crate::limits::BudgetLine]>,
        amount: Usd,
    ) -> BoxFuture<Result<crate::limits::Reservation, Error>> {
        let inner = self.0.clone();
        Box::pin(async move {
            match inner.reserve(lines.clone(), amount).await {
                Err(e) if e.kind() == ErrorKind::ServiceUnavailable => {
                    tracing::warn!(target: "tollgate::budget", error = %e, "budgets not enforced: the store is unavailable");
                    Ok(crate::limits::Reservation {
                        id: 0,
                        lines: Arc::from(Vec::new()),
                        amount: Usd::ZERO,
                    })
                }
                other => other,
            }
        })
    }

    fn settle(&self, reservation: crate::limits::Reservation, actual: Usd) {
        if !reservation.lines.is_empty() {
            self.0.settle(reservation, actual);
        }
    }

    fn balance(
        &self,
        line: &crate::limits::BudgetLine,
    ) -> BoxFuture<Result<crate::limits::Balance, Error>> {
        self.0.balance(line)
    }

    fn flush(&self) -> BoxFuture<()> {
        self.0.flush()
    }
}

/// Prices worst cases from the router's deployments: the dearest deployment
/// of the requested group and of its fallback groups; for names no group
/// prices (wildcard routes), the price table's entry for the name itself.
struct RouterEstimator {
    router: Router,
    fallbacks: FallbackConfig,
}

impl RouterEstimator {
    fn prices(&self, model: &str) -> Vec<Arc<ModelPrice>> {
        let mut groups = vec![model.to_owned()];
        if let Some(f) = self.fallbacks.fallbacks.get(model) {
            groups.extend(f.iter().cloned());
        }
        groups.extend(self.fallbacks.default.iter().cloned());
        let mut out: Vec<Arc<ModelPrice>> = groups
            .iter()
            .filter_map(|g| self.router.group(g))
            .flat_map(|g| g.deployments.iter().filter_map(|d| d.price.clone()))
            .collect();
        if out.is_empty()
            && let Some(p) = crate::pricing::model_info(model)
        {
            out.push(Arc::new(p));
        }
        out
    }
}

impl CostEstimator for RouterEstimator {
    fn worst_case_chat(&self, req: &ChatRequest, prompt_tokens: u64) -> Option<Usd> {
        let asked = req.output_limit().map(u64::from);
        let prices = self.prices(&req.model);
        worst_case_of(prices.iter().map(|p| &**p), |p| {
            Usage::new(
                prompt_tokens,
                worst_output(asked, p.output_limit(), DEFAULT_MAX_OUTPUT_TOKENS),
            )
        })
    }

    fn worst_case_embedding(&self, req: &EmbeddingRequest, input_tokens: u64) -> Option<Usd> {
        let prices = self.prices(&req.model);
        worst_case_of(prices.iter().map(|p| &**p), |_| Usage::new(input_tokens, 0))
    }

    fn tokenizer_model<'a>(&'a self, model_group: &'a str) -> &'a str {
        self.router
            .group(model_group)
            .and_then(|g| g.deployments.first())
            .map_or(model_group, |d| &*d.info.model)
    }
}
