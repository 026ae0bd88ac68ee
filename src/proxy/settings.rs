//! Reliability settings from LiteLLM's `router_settings` / `litellm_settings`:
//! routing strategy, cooldowns, retries, fallbacks, health checks.

use super::config::{ConfigError, ProxyConfig};
use crate::fallback::FallbackConfig;
use crate::retry::RetryPolicy;
use crate::router::{CooldownPolicy, ErrorClass, RouterConfig, Strategy};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// Reads `key` from `router_settings`, then `litellm_settings` (LiteLLM accepts most in either).
fn setting<'a>(config: &'a ProxyConfig, key: &str) -> Option<(&'static str, &'a Value)> {
    config
        .router_settings
        .other
        .get(key)
        .map(|v| ("router_settings", v))
        .or_else(|| {
            config
                .litellm_settings
                .other
                .get(key)
                .map(|v| ("litellm_settings", v))
        })
}

fn err(section: &str, key: &str, what: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{section}.{key}: {what}"))
}

fn as_u32(config: &ProxyConfig, key: &str) -> Result<Option<u32>, ConfigError> {
    match setting(config, key) {
        None | Some((_, Value::Null)) => Ok(None),
        Some((section, v)) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| err(section, key, "expected a non-negative integer")),
    }
}

fn as_secs(config: &ProxyConfig, key: &str) -> Result<Option<Duration>, ConfigError> {
    match setting(config, key) {
        None | Some((_, Value::Null)) => Ok(None),
        Some((section, v)) => v
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Some(Duration::from_secs_f64(s.min(86_400.0))))
            .ok_or_else(|| err(section, key, "expected a number of seconds")),
    }
}

fn as_bool(config: &ProxyConfig, key: &str) -> Result<Option<bool>, ConfigError> {
    match setting(config, key) {
        None | Some((_, Value::Null)) => Ok(None),
        Some((section, v)) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| err(section, key, "expected true or false")),
    }
}

/// Parses `{"RateLimitErrorRetries": 3, …}` / `{"RateLimitErrorAllowedFails": 3, …}`.
fn class_map(
    section: &str,
    key: &str,
    value: &Value,
    suffix: &str,
) -> Result<std::collections::HashMap<ErrorClass, u32>, ConfigError> {
    let map: &Map<String, Value> = value
        .as_object()
        .ok_or_else(|| err(section, key, "expected a mapping of error class → count"))?;
    let names = [
        "BadRequestError",
        "AuthenticationError",
        "TimeoutError",
        "RateLimitError",
        "ContentPolicyViolationError",
        "InternalServerError",
    ];
    let mut out = std::collections::HashMap::new();
    for (k, v) in map {
        let class = k
            .strip_suffix(suffix)
            .and_then(ErrorClass::from_litellm)
            .ok_or_else(|| {
                let valid: Vec<String> = names.iter().map(|n| format!("{n}{suffix}")).collect();
                let hint = crate::util::closest(k, valid.iter().map(String::as_str))
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                err(
                    section,
                    key,
                    format_args!("unknown error class `{k}`{hint}"),
                )
            })?;
        let n = v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                err(
                    section,
                    key,
                    format_args!("`{k}` must be a non-negative integer"),
                )
            })?;
        out.insert(class, n);
    }
    Ok(out)
}

/// Routing settings.
pub fn router_config(config: &ProxyConfig) -> Result<RouterConfig, ConfigError> {
    let buffer = config
        .router_settings
        .other
        .get("routing_strategy_args")
        .and_then(|a| a.get("lowest_latency_buffer"))
        .and_then(Value::as_f64);
    let strategy = match config.router_settings.routing_strategy.as_deref() {
        None => Strategy::SimpleShuffle,
        Some(name) => Strategy::parse(name, buffer)
            .map_err(|e| err("router_settings", "routing_strategy", e.message()))?,
    };
    let mut cooldown = CooldownPolicy::default();
    if let Some(n) = as_u32(config, "allowed_fails")? {
        cooldown.allowed_fails = n;
    }
    if let Some(t) = as_secs(config, "cooldown_time")? {
        cooldown.cooldown_time = t;
    }
    if let Some(d) = as_bool(config, "disable_cooldowns")? {
        cooldown.disabled = d;
    }
    if let Some((section, v)) = setting(config, "allowed_fails_policy") {
        cooldown.allowed_fails_policy =
            class_map(section, "allowed_fails_policy", v, "AllowedFails")?;
    }
    Ok(RouterConfig {
        strategy: Arc::new(strategy),
        cooldown,
        enable_tag_filtering: as_bool(config, "enable_tag_filtering")?.unwrap_or(false),
        tag_filtering_match_any: as_bool(config, "tag_filtering_match_any")?.unwrap_or(true),
        pre_call_checks: as_bool(config, "enable_pre_call_checks")?.unwrap_or(false),
    })
}

/// Retry settings.
pub fn retry_policy(config: &ProxyConfig) -> Result<RetryPolicy, ConfigError> {
    let mut p = RetryPolicy::default();
    if let Some(n) = as_u32(config, "num_retries")? {
        p.num_retries = n;
    }
    if let Some((section, v)) = setting(config, "retry_policy") {
        p.per_class = class_map(section, "retry_policy", v, "Retries")?;
    }
    if let Some(t) = as_secs(config, "retry_after")? {
        p.base_backoff = t.max(Duration::from_millis(1));
    }
    Ok(p)
}

/// Fallback settings.
pub fn fallback_config(config: &ProxyConfig) -> Result<FallbackConfig, ConfigError> {
    let mut f = FallbackConfig::default();
    let map = |key: &str| -> Result<_, ConfigError> {
        match setting(config, key) {
            None | Some((_, Value::Null)) => Ok(Default::default()),
            Some((section, v)) => FallbackConfig::parse_list(v).map_err(|e| err(section, key, e)),
        }
    };
    f.fallbacks = map("fallbacks")?;
    f.context_window = map("context_window_fallbacks")?;
    f.content_policy = map("content_policy_fallbacks")?;
    if let Some((section, v)) = setting(config, "default_fallbacks") {
        f.default = v
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| {
                err(
                    section,
                    "default_fallbacks",
                    "expected a list of model names",
                )
            })?;
    }
    if let Some(n) = as_u32(config, "max_fallbacks")? {
        f.max_fallbacks = n as usize;
    }
    let known = |g: &str| {
        config.model_list.iter().any(|m| m.model_name == g)
            || config.router_settings.model_group_alias.contains_key(g)
    };
    for (section_key, lists) in [
        ("fallbacks", &f.fallbacks),
        ("context_window_fallbacks", &f.context_window),
        ("content_policy_fallbacks", &f.content_policy),
    ] {
        for (from, to) in lists.iter() {
            for g in std::iter::once(from).chain(to) {
                if !known(g) && !g.contains('*') {
                    return Err(ConfigError(format!(
                        "{section_key}: `{g}` is not a model_name in model_list"
                    )));
                }
            }
        }
    }
    Ok(f)
}

/// Background health checks: the interval when on.
pub fn health_checks(config: &ProxyConfig) -> Result<Option<Duration>, ConfigError> {
    let on = config
        .general_settings
        .other
        .get("background_health_checks")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !on {
        return Ok(None);
    }
    let interval = match config.general_settings.other.get("health_check_interval") {
        None => Duration::from_secs(300),
        Some(v) => v
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 1.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                err(
                    "general_settings",
                    "health_check_interval",
                    "expected seconds (≥ 1)",
                )
            })?,
    };
    Ok(Some(interval))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::load_str;
    use std::path::Path;

    fn cfg(yaml: &str) -> ProxyConfig {
        load_str(yaml, Path::new("c.yaml"), &|_| None)
            .unwrap()
            .config
    }

    #[test]
    fn reads_litellm_router_settings() {
        let c = cfg("model_list:
  - {model_name: a, litellm_params: {model: mock/a}}
  - {model_name: b, litellm_params: {model: mock/b}}
router_settings:
  routing_strategy: latency-based-routing
  routing_strategy_args: {lowest_latency_buffer: 0.2}
  num_retries: 4
  retry_policy: {RateLimitErrorRetries: 6, AuthenticationErrorRetries: 0}
  allowed_fails: 1
  allowed_fails_policy: {TimeoutErrorAllowedFails: 9}
  cooldown_time: 30
  enable_pre_call_checks: true
  fallbacks: [{a: [b]}]
  context_window_fallbacks: [{a: [b]}]
  default_fallbacks: [b]
  max_fallbacks: 2
");
        let r = router_config(&c).unwrap();
        assert_eq!(r.cooldown.allowed_fails, 1);
        assert_eq!(r.cooldown.cooldown_time, Duration::from_secs(30));
        assert_eq!(r.cooldown.allowed_fails_policy[&ErrorClass::Timeout], 9);
        assert!(r.pre_call_checks);
        let p = retry_policy(&c).unwrap();
        assert_eq!(p.num_retries, 4);
        assert_eq!(p.per_class[&ErrorClass::RateLimit], 6);
        let f = fallback_config(&c).unwrap();
        assert_eq!(f.fallbacks["a"], vec!["b"]);
        assert_eq!(f.default, vec!["b"]);
        assert_eq!(f.max_fallbacks, 2);
    }

    #[test]
    fn litellm_settings_work_too_and_errors_name_the_key() {
        let c = cfg(
            "model_list: [{model_name: a, litellm_params: {model: mock/a}}]\nlitellm_settings:\n  num_retries: 7\n",
        );
        assert_eq!(retry_policy(&c).unwrap().num_retries, 7);
        let c = cfg("router_settings:\n  retry_policy: {RateLimtErrorRetries: 1}\n");
        let e = retry_policy(&c).unwrap_err().0;
        assert!(e.contains("did you mean `RateLimitErrorRetries`"), "{e}");
        let c = cfg("router_settings:\n  num_retries: many\n");
        assert_eq!(
            retry_policy(&c).unwrap_err().0,
            "router_settings.num_retries: expected a non-negative integer"
        );
        let c = cfg(
            "model_list: [{model_name: a, litellm_params: {model: mock/a}}]\nrouter_settings:\n  fallbacks: [{a: [nope]}]\n",
        );
        assert_eq!(
            fallback_config(&c).unwrap_err().0,
            "fallbacks: `nope` is not a model_name in model_list"
        );
    }
}
