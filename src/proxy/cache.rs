//! The response cache of the proxy: LiteLLM's `litellm_settings.cache` and
//! `cache_params` turned into a [`ResponseCache`], and the admin routes
//! `GET /cache/ping`, `POST /cache/delete`, `POST /cache/flushall`.
//!
//! ```yaml
//! litellm_settings:
//!   cache: true
//!   cache_params:
//!     type: redis            # or local (default: redis when a Redis is configured)
//!     host: 127.0.0.1        # or REDIS_HOST / REDIS_URL in the environment
//!     port: 6379
//!     password: os.environ/REDIS_PASSWORD
//!     namespace: litellm.caching.caching
//!     ttl: 600
//!     mode: default_on       # or default_off (opt in with cache: {"use-cache": true})
//!     supported_call_types: ["acompletion", "aembedding"]
//!     scope: tenant          # tollgate's own: tenant (default) or shared
//! ```

use super::config::{ConfigError, ProxyConfig};
use crate::auth::Identity;
use crate::cache::{
    CacheConfig, CacheKey, CacheMode, CacheScope, MemoryBackend, RedisBackend, RedisOptions,
    ResponseCache,
};
use crate::edge::EdgeBody;
use crate::error::{Error, ErrorKind};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// `cache_params` keys tollgate acts on.
const KNOWN: &[&str] = &[
    "type",
    "mode",
    "host",
    "port",
    "password",
    "username",
    "db",
    "url",
    "namespace",
    "ttl",
    "default_in_memory_ttl",
    "default_in_redis_ttl",
    "supported_call_types",
    "socket_timeout",
    "socket_connect_timeout",
    "ssl",
    // tollgate's own
    "scope",
    "max_size_mb",
    "max_item_size_mb",
];

/// LiteLLM `cache_params` keys accepted but not acted on (warned about).
const LATER: &[&str] = &[
    "max_connections",
    "redis_flush_size",
    "ssl_cert_reqs",
    "ssl_check_hostname",
    "ssl_ca_certs",
    "gcp_service_account",
    "gcp_ssl_ca_certs",
    "redis_startup_nodes",
    "service_name",
    "sentinel_nodes",
    "sentinel_password",
    "similarity_threshold",
    "redis_semantic_cache_embedding_model",
    "redis_semantic_cache_index_name",
    "qdrant_semantic_cache_embedding_model",
    "qdrant_collection_name",
    "qdrant_quantization_config",
    "s3_bucket_name",
    "s3_region_name",
    "s3_api_version",
    "s3_path",
    "s3_use_ssl",
    "s3_verify",
    "s3_endpoint_url",
    "s3_aws_access_key_id",
    "s3_aws_secret_access_key",
    "s3_aws_session_token",
    "gcs_bucket_name",
    "gcs_path_service_account",
    "gcs_path",
    "disk_cache_dir",
];

/// The proxy's cache, as configured.
pub(crate) struct Configured {
    /// The cache (one that caches nothing when caching is off).
    pub(crate) cache: ResponseCache,
    /// Whether `litellm_settings.cache` is on.
    pub(crate) enabled: bool,
    /// The settings to show on `/cache/ping` (no secrets).
    pub(crate) shown: Value,
    /// Start-up warnings.
    pub(crate) warnings: Vec<String>,
}

fn err(key: &str, what: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("litellm_settings.cache_params.{key}: {what}"))
}

fn secs(params: &Map<String, Value>, key: &str) -> Result<Option<Duration>, ConfigError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Some(Duration::from_secs_f64(s.min(365.0 * 86_400.0))))
            .ok_or_else(|| err(key, "expected a number of seconds")),
    }
}

fn string(params: &Map<String, Value>, key: &str) -> Result<Option<String>, ConfigError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(err(key, "expected a string")),
    }
}

fn megabytes(params: &Map<String, Value>, key: &str) -> Result<Option<u64>, ConfigError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|m| m.is_finite() && *m > 0.0)
            .map(|m| Some((m * 1024.0 * 1024.0).min(u64::MAX as f64) as u64))
            .ok_or_else(|| err(key, "expected a positive number of megabytes")),
    }
}

/// Reads `litellm_settings.cache` / `cache_params`. `env` looks up variables
/// (`REDIS_URL`, `REDIS_HOST`, `REDIS_PORT`, `REDIS_PASSWORD`, `REDIS_USERNAME`).
pub(crate) fn configure(
    config: &ProxyConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Configured, ConfigError> {
    let settings = &config.litellm_settings.other;
    let mut warnings = Vec::new();
    let enabled = match settings.get("cache") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return Err(ConfigError(
                "litellm_settings.cache: expected true or false".to_owned(),
            ));
        }
    };
    let empty = Map::new();
    let params = match settings.get("cache_params") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(ConfigError(
                "litellm_settings.cache_params: expected a mapping".to_owned(),
            ));
        }
    };
    if !enabled {
        if !params.is_empty() {
            warnings.push(
                "litellm_settings.cache_params is set but litellm_settings.cache is not true: responses are not cached".to_owned(),
            );
        }
        return Ok(Configured {
            cache: ResponseCache::disabled(),
            enabled: false,
            shown: Value::Null,
            warnings,
        });
    }
    let mut later = Vec::new();
    for k in params.keys() {
        if KNOWN.contains(&k.as_str()) {
            continue;
        }
        if LATER.contains(&k.as_str()) {
            later.push(k.as_str());
            continue;
        }
        let candidates = KNOWN.iter().chain(LATER).copied();
        if let Some(near) = crate::util::closest(k, candidates)
            && crate::util::edit_distance(near, k) <= 2
        {
            let shown: String = k.chars().take(80).collect();
            return Err(ConfigError(format!(
                "litellm_settings.cache_params: unknown key `{shown}`; did you mean `{near}`?"
            )));
        }
        later.push(k.as_str());
    }
    if !later.is_empty() {
        warnings.push(format!(
            "these cache_params are accepted but not acted on by this version of tollgate: {}",
            later.join(", ")
        ));
    }
    if params.get("ssl").and_then(Value::as_bool) == Some(true) {
        return Err(err(
            "ssl",
            "TLS connections to Redis are not supported yet (use a local Redis or a TLS tunnel)",
        ));
    }

    let mut cfg = CacheConfig::default();
    match string(params, "mode")?.as_deref() {
        None | Some("default_on") => {}
        Some("default_off") => cfg.mode = CacheMode::DefaultOff,
        Some(other) => {
            return Err(err(
                "mode",
                format_args!("unknown mode `{other}` (default_on or default_off)"),
            ));
        }
    }
    match string(params, "scope")?.as_deref() {
        None | Some("tenant") => {}
        Some("shared") => cfg.scope = CacheScope::Shared,
        Some(other) => {
            return Err(err(
                "scope",
                format_args!("unknown scope `{other}` (tenant or shared)"),
            ));
        }
    }
    if let Some(v) = params.get("supported_call_types") {
        let list = v
            .as_array()
            .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
            .ok_or_else(|| err("supported_call_types", "expected a list of call types"))?;
        cfg.chat = list
            .iter()
            .any(|t| matches!(*t, "completion" | "acompletion"));
        cfg.embeddings = list
            .iter()
            .any(|t| matches!(*t, "embedding" | "aembedding"));
    }
    if let Some(mb) = megabytes(params, "max_item_size_mb")? {
        cfg.max_entry_bytes = usize::try_from(mb).unwrap_or(usize::MAX);
    }

    let lookup = |name: &str| {
        config
            .environment_variables
            .get(name)
            .cloned()
            .or_else(|| env(name))
            .filter(|v| !v.is_empty())
    };
    let url = string(params, "url")?;
    let host = string(params, "host")?;
    let redis_configured = url.is_some()
        || host.is_some()
        || lookup("REDIS_URL").is_some()
        || lookup("REDIS_HOST").is_some();
    let kind = match string(params, "type")?.as_deref() {
        Some("local") => "local",
        Some("redis") => "redis",
        None if redis_configured => "redis",
        None => {
            warnings.push(
                "litellm_settings.cache: no Redis configured (cache_params.host, REDIS_HOST or REDIS_URL): using the in-process cache".to_owned(),
            );
            "local"
        }
        Some(other) => {
            return Err(err(
                "type",
                format_args!(
                    "the `{other}` cache is not supported by tollgate (supported: local, redis)"
                ),
            ));
        }
    };
    let ttl = secs(params, "ttl")?;
    let namespace = string(params, "namespace")?;
    let cache = if kind == "local" {
        if let Some(t) = secs(params, "default_in_memory_ttl")?.or(ttl) {
            cfg.ttl = t;
        }
        let max = megabytes(params, "max_size_mb")?.unwrap_or(256 << 20);
        ResponseCache::new(MemoryBackend::new(max), cfg.clone())
    } else {
        if let Some(t) = secs(params, "default_in_redis_ttl")?.or(ttl) {
            cfg.ttl = t;
        }
        let mut options = RedisOptions::default();
        if let Some(ns) = &namespace {
            options.namespace.clone_from(ns);
        }
        if let Some(t) = secs(params, "socket_timeout")? {
            options.op_timeout = t.max(Duration::from_millis(1));
        }
        if let Some(t) = secs(params, "socket_connect_timeout")? {
            options.connect_timeout = t.max(Duration::from_millis(1));
        }
        let backend = match url.or_else(|| host.is_none().then(|| lookup("REDIS_URL")).flatten()) {
            Some(url) => {
                RedisBackend::open(&url, options).map_err(|e| err("url", e.message().to_owned()))?
            }
            None => {
                let host = host
                    .or_else(|| lookup("REDIS_HOST"))
                    .unwrap_or_else(|| "127.0.0.1".to_owned());
                let port = match string(params, "port")?.or_else(|| lookup("REDIS_PORT")) {
                    None => 6379,
                    Some(p) => p
                        .trim()
                        .parse::<u16>()
                        .map_err(|_| err("port", "expected a port number"))?,
                };
                let password = string(params, "password")?.or_else(|| lookup("REDIS_PASSWORD"));
                let username = string(params, "username")?.or_else(|| lookup("REDIS_USERNAME"));
                let db = match params.get("db") {
                    None | Some(Value::Null) => 0,
                    Some(v) => v
                        .as_i64()
                        .filter(|d| *d >= 0)
                        .ok_or_else(|| err("db", "expected a database number"))?,
                };
                RedisBackend::connect_to(
                    &host,
                    port,
                    username.as_deref(),
                    password.as_deref(),
                    db,
                    options,
                )
                .map_err(|e| err("host", e.message().to_owned()))?
            }
        };
        ResponseCache::new(backend, cfg.clone())
    };
    let mut call_types = Vec::new();
    if cfg.chat {
        call_types.push("acompletion");
    }
    if cfg.embeddings {
        call_types.push("aembedding");
    }
    let shown = json!({
        "type": kind,
        "mode": match cfg.mode { CacheMode::DefaultOn => "default_on", CacheMode::DefaultOff => "default_off" },
        "scope": match cfg.scope { CacheScope::Tenant => "tenant", CacheScope::Shared => "shared" },
        "namespace": namespace,
        "ttl": cfg.ttl.as_secs_f64(),
        "supported_call_types": call_types,
    });
    Ok(Configured {
        cache,
        enabled: true,
        shown,
        warnings,
    })
}

/// The cache admin routes.
pub(crate) fn is_route(path: &str) -> bool {
    matches!(path, "/cache/ping" | "/cache/delete" | "/cache/flushall")
}

fn json_response(status: StatusCode, body: &Value) -> http::Response<EdgeBody> {
    let mut resp =
        http::Response::new(EdgeBody::full(serde_json::to_vec(body).unwrap_or_default()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn unavailable(what: &str) -> Error {
    Error::new(
        ErrorKind::ServiceUnavailable,
        format!("Service Unhealthy ({what})"),
    )
}

/// Serves a cache admin route (master key only).
pub(crate) async fn handle(
    configured: &Configured,
    identity: &Identity,
    method: &Method,
    path: &str,
    body: Bytes,
) -> Result<http::Response<EdgeBody>, Error> {
    let expected = if path == "/cache/ping" {
        Method::GET
    } else {
        Method::POST
    };
    if *method != expected {
        return Err(Error::new(
            ErrorKind::MethodNotAllowed,
            format!("{method} is not allowed on {path}; use {expected}"),
        ));
    }
    if !identity.is_admin() {
        return Err(Error::new(
            ErrorKind::PermissionDenied,
            "only the master key may manage the cache",
        ));
    }
    let c = configured;
    if !c.enabled {
        return Err(unavailable(
            "the cache is not on: set litellm_settings.cache: true",
        ));
    }
    match path {
        "/cache/ping" => match c.cache.ping().await {
            Ok(()) => Ok(json_response(
                StatusCode::OK,
                &json!({
                    "status": "healthy",
                    "cache_type": c.cache.backend_name(),
                    "ping_response": true,
                    "litellm_cache_params": c.shown,
                    "stats": c.cache.stats(),
                }),
            )),
            Err(e) => Err(unavailable(e.message())),
        },
        "/cache/delete" => {
            #[derive(serde::Deserialize)]
            struct Delete {
                keys: Vec<String>,
            }
            let req: Delete = crate::types::parse_json(&body)?;
            let keys = req
                .keys
                .iter()
                .map(|k| {
                    k.parse::<CacheKey>().map_err(|e| {
                        let shown: String = k.chars().take(80).collect();
                        Error::bad_request(format!("`{shown}` is not a cache key: {e}"))
                            .with_param("keys")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let deleted =
                c.cache.delete(&keys).await.map_err(|e| {
                    Error::internal(format!("Cache Delete Failed ({})", e.message()))
                })?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"status": "success", "deleted": deleted}),
            ))
        }
        _ => {
            c.cache
                .flush()
                .await
                .map_err(|e| unavailable(e.message()))?;
            Ok(json_response(StatusCode::OK, &json!({"status": "success"})))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::load_str;
    use std::path::Path;

    fn configure_yaml(yaml: &str, env: &[(&str, &str)]) -> Result<Configured, ConfigError> {
        let c = load_str(yaml, Path::new("c.yaml"), &|_| None)
            .unwrap()
            .config;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        configure(&c, &move |n| {
            env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn off_unless_cache_is_true() {
        let c = configure_yaml("litellm_settings: {}\n", &[]).unwrap();
        assert!(!c.enabled);
        let c = configure_yaml("litellm_settings:\n  cache_params: {type: local}\n", &[]).unwrap();
        assert!(!c.enabled);
        assert!(c.warnings[0].contains("not cached"), "{:?}", c.warnings);
    }

    #[test]
    fn local_cache_with_litellm_params() {
        let c = configure_yaml(
            "litellm_settings:
  cache: true
  cache_params:
    type: local
    ttl: 30
    mode: default_off
    supported_call_types: [acompletion]
    scope: shared
    max_connections: 10
",
            &[],
        )
        .unwrap();
        assert!(c.enabled);
        assert_eq!(c.cache.backend_name(), "local");
        let cfg = c.cache.config();
        assert_eq!(cfg.ttl, Duration::from_secs(30));
        assert_eq!(cfg.mode, CacheMode::DefaultOff);
        assert_eq!(cfg.scope, CacheScope::Shared);
        assert!(cfg.chat && !cfg.embeddings);
        assert!(
            c.warnings[0].contains("max_connections"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn redis_when_configured_local_otherwise() {
        let c = configure_yaml("litellm_settings: {cache: true}\n", &[]).unwrap();
        assert_eq!(c.cache.backend_name(), "local");
        assert!(c.warnings[0].contains("in-process"), "{:?}", c.warnings);
        let c = configure_yaml(
            "litellm_settings: {cache: true}\n",
            &[("REDIS_HOST", "127.0.0.1"), ("REDIS_PORT", "6390")],
        )
        .unwrap();
        assert_eq!(c.cache.backend_name(), "redis");
        let c = configure_yaml(
            "litellm_settings:\n  cache: true\n  cache_params: {type: redis, host: localhost, port: \"6379\", password: pw, namespace: ns, default_in_redis_ttl: 5}\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.cache.backend_name(), "redis");
        assert_eq!(c.cache.config().ttl, Duration::from_secs(5));
        assert_eq!(c.shown["namespace"], "ns");
        assert!(!c.shown.to_string().contains("pw"), "no password shown");
    }

    #[test]
    fn mistakes_are_errors_that_say_where() {
        for (yaml, needle) in [
            (
                "litellm_settings:\n  cache: true\n  cache_params: {type: s3}\n",
                "not supported",
            ),
            (
                "litellm_settings:\n  cache: true\n  cache_params: {mode: always}\n",
                "unknown mode",
            ),
            (
                "litellm_settings:\n  cache: true\n  cache_params: {ttll: 5}\n",
                "did you mean `ttl`",
            ),
            (
                "litellm_settings:\n  cache: true\n  cache_params: {ttl: soon}\n",
                "cache_params.ttl",
            ),
            (
                "litellm_settings:\n  cache: true\n  cache_params: {type: redis, port: x}\n",
                "port",
            ),
            (
                "litellm_settings:\n  cache: true\n  cache_params: {type: redis, ssl: true}\n",
                "TLS",
            ),
            ("litellm_settings:\n  cache: maybe\n", "cache: expected"),
        ] {
            let e = configure_yaml(yaml, &[])
                .err()
                .unwrap_or_else(|| panic!("{yaml}"));
            assert!(e.0.contains(needle), "{yaml}: {e}");
        }
    }
}
