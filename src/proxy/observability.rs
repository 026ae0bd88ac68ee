//! Metrics, traces and callbacks from LiteLLM's settings.
//!
//! - `litellm_settings.callbacks` (every record), `success_callback`
//!   (successes), `failure_callback` (failures and cancellations) name the
//!   callbacks: `prometheus` (serve `GET /metrics`), `otel` /
//!   `opentelemetry` (OTLP/HTTP from the `OTEL_EXPORTER_OTLP_*` variables),
//!   `langfuse` / `langfuse_otel` (OTLP to Langfuse's OpenTelemetry endpoint
//!   with `LANGFUSE_PUBLIC_KEY`, `LANGFUSE_SECRET_KEY`, `LANGFUSE_HOST`),
//!   `generic_api` (JSON POST to `GENERIC_LOGGER_ENDPOINT` with
//!   `GENERIC_LOGGER_HEADERS`), `json_file` (JSON lines; path in
//!   `callback_settings.json_file.path`), or a name defined in
//!   `callback_settings` with `callback_type: generic_api`. Other names are a
//!   start-up warning.
//! - `litellm_settings.turn_off_message_logging: false` (explicitly) lets
//!   exporters see messages; by default they never do.
//! - `litellm_settings.require_auth_for_metrics_endpoint: true` puts `/metrics`
//!   behind the master key (open by default, as in LiteLLM).
//! - `litellm_settings.prometheus_metrics_labels: [api_key_alias, team, user]`
//!   adds identity labels to request metrics (none by default).

use super::config::{ConfigError, ProxyConfig};
use crate::auth::Authenticate;
use crate::edge::EdgeBody;
use crate::observe::callback::{Callback, CallbackRunner, CallbackSet, Filter};
use crate::observe::export::{JsonFileCallback, LogFormat, WebhookCallback};
use crate::observe::metrics::{self as m, KeyLabels, MetricsSink};
use crate::observe::{CallbackQueue, FanOut, RecordSink};
use crate::provider::BoxFuture;
use crate::transport::HttpClient;
use http::HeaderValue;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::Value;
use std::sync::{Arc, OnceLock};

/// What the observability settings produced.
pub struct Observability {
    /// Metrics and callback queues, to add to the observe layer's sink.
    pub sink: Option<Arc<dyn RecordSink>>,
    /// The callback workers to start once a runtime runs.
    pub runner: Option<CallbackRunner>,
    /// The callback queue (for inspection).
    pub queue: Option<CallbackQueue>,
    /// `/metrics`, when `prometheus` is on.
    pub metrics: Option<MetricsEndpoint>,
    /// Keep message content in records.
    pub capture_content: bool,
    /// Start-up warnings.
    pub warnings: Vec<String>,
}

/// `GET /metrics`.
#[derive(Clone)]
pub struct MetricsEndpoint {
    handle: PrometheusHandle,
    require_auth: bool,
}

impl MetricsEndpoint {
    /// The Prometheus handle (render, upkeep).
    pub fn handle(&self) -> &PrometheusHandle {
        &self.handle
    }
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn prometheus() -> Result<PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut b = PrometheusBuilder::new();
            for name in m::HISTOGRAMS {
                b = b
                    .set_buckets_for_metric(Matcher::Full((*name).to_owned()), m::LATENCY_BUCKETS)
                    .map_err(|e| e.to_string())?;
            }
            b.install_recorder().map_err(|e| e.to_string())
        })
        .clone()
}

/// Serves `/metrics` if `path` is it; `None` lets the request through.
pub(crate) fn serve(
    endpoint: Option<&MetricsEndpoint>,
    auth: &Arc<dyn Authenticate>,
    path: &str,
    get: bool,
    headers: &http::HeaderMap,
) -> Option<BoxFuture<http::Response<EdgeBody>>> {
    if !get || !matches!(path, "/metrics" | "/metrics/") {
        return None;
    }
    let endpoint = endpoint?.clone();
    let check = endpoint
        .require_auth
        .then(|| auth.authenticate(crate::auth::credential(headers)));
    Some(Box::pin(async move {
        if let Some(check) = check {
            match check.await {
                Ok(id) if id.is_admin() => {}
                Ok(_) => {
                    let e = crate::Error::new(
                        crate::ErrorKind::PermissionDenied,
                        "only the master key may read /metrics",
                    );
                    return error(&e);
                }
                Err(e) => return error(&e),
            }
        }
        let mut resp = http::Response::new(EdgeBody::full(endpoint.handle.render().into_bytes()));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    }))
}

fn error(e: &crate::Error) -> http::Response<EdgeBody> {
    let mut resp = http::Response::new(EdgeBody::full(e.to_json()));
    *resp.status_mut() = e.status();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn names(v: Option<&Value>, key: &str) -> Result<Vec<String>, ConfigError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_owned).ok_or_else(|| {
                    ConfigError(format!(
                        "litellm_settings.{key}: expected a list of callback names"
                    ))
                })
            })
            .collect(),
        Some(_) => Err(ConfigError(format!(
            "litellm_settings.{key}: expected a list of callback names"
        ))),
    }
}

/// LiteLLM callbacks tollgate knows of but does not implement.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "langsmith",
    "datadog",
    "datadog_llm_observability",
    "lunary",
    "helicone",
    "s3",
    "s3_v2",
    "gcs_bucket",
    "gcs_pubsub",
    "sentry",
    "slack",
    "dynamodb",
    "athina",
    "arize",
    "arize_phoenix",
    "braintrust",
    "logfire",
    "mlflow",
    "opik",
    "posthog",
    "humanloop",
    "galileo",
    "traceloop",
    "openmeter",
    "lago",
    "greenscale",
    "supabase",
    "azure_storage",
    "literalai",
    "deepeval",
    "email",
    "pagerduty",
    "custom_callback_api",
    "langtrace",
    "levo",
    "weave",
    "wandb",
    "argilla",
    "cloudzero",
    "focus",
    "bitbucket",
    "gitlab",
    "agentops",
    "sqs",
];

fn env_or(
    config: &ProxyConfig,
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Option<String> {
    config
        .environment_variables
        .get(name)
        .cloned()
        .filter(|v| !v.is_empty())
        .or_else(|| env(name))
}

/// Builds metrics, exporters and callbacks from `config`.
pub fn build(
    config: &ProxyConfig,
    env: &dyn Fn(&str) -> Option<String>,
    client: &HttpClient,
) -> Result<Observability, ConfigError> {
    let ls = &config.litellm_settings.other;
    let mut warnings = Vec::new();
    let mut lists: Vec<(String, Filter)> = Vec::new();
    for (key, filter) in [
        ("callbacks", Filter::All),
        ("success_callback", Filter::Success),
        ("failure_callback", Filter::Failure),
    ] {
        for n in names(ls.get(key), key)? {
            match lists.iter_mut().find(|(x, _)| *x == n) {
                // Named in two lists: it gets both kinds.
                Some((_, f)) if *f != filter => *f = Filter::All,
                Some(_) => {}
                None => lists.push((n, filter)),
            }
        }
    }
    let capture_content = matches!(ls.get("turn_off_message_logging"), Some(Value::Bool(false)));
    let labels = {
        let mut l = KeyLabels::default();
        for n in names(
            ls.get("prometheus_metrics_labels"),
            "prometheus_metrics_labels",
        )? {
            match n.as_str() {
                "api_key_alias" => l.key_alias = true,
                "team" => l.team = true,
                "user" => l.user = true,
                other => {
                    return Err(ConfigError(format!(
                        "litellm_settings.prometheus_metrics_labels: `{other}` is not one of api_key_alias, team, user"
                    )));
                }
            }
        }
        l
    };
    let require_auth = match ls.get("require_auth_for_metrics_endpoint") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ConfigError(
                "litellm_settings.require_auth_for_metrics_endpoint: expected true or false".into(),
            ));
        }
    };
    let capacity = match ls.get("callback_queue_size") {
        None | Some(Value::Null) => 10_000,
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .map(|n| n.min(10_000_000) as usize)
            .ok_or_else(|| {
                ConfigError(
                    "litellm_settings.callback_queue_size: expected a positive integer".into(),
                )
            })?,
    };

    let mut sinks: Vec<Arc<dyn RecordSink>> = Vec::new();
    let mut set = CallbackSet::new().capacity(capacity);
    let mut metrics = None;
    for (name, filter) in &lists {
        let cb: Option<Arc<dyn Callback>> = match name.as_str() {
            "prometheus" => {
                if metrics.is_none() {
                    let handle =
                        prometheus().map_err(|e| ConfigError(format!("prometheus: {e}")))?;
                    metrics = Some(MetricsEndpoint {
                        handle,
                        require_auth,
                    });
                    sinks.push(Arc::new(MetricsSink::new(labels)));
                }
                None
            }
            "otel" | "opentelemetry" => {
                let mut cfg = crate::observe::otel::OtlpConfig::default();
                let protocol = env_or(config, env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    .or_else(|| env_or(config, env, "OTEL_EXPORTER_OTLP_PROTOCOL"));
                if let Some(p) = protocol.filter(|p| p != "http/protobuf") {
                    warnings.push(format!(
                        "otel: OTEL_EXPORTER_OTLP_PROTOCOL `{p}` is not supported; exporting OTLP over HTTP/protobuf"
                    ));
                }
                if let Some(name) = env_or(config, env, "OTEL_SERVICE_NAME") {
                    cfg.service_name = Some(name);
                }
                Some(
                    crate::observe::otel::otlp_callback(name, &cfg, client.clone())
                        .map_err(ConfigError)?,
                )
            }
            "langfuse" | "langfuse_otel" => {
                let pk = env_or(config, env, "LANGFUSE_PUBLIC_KEY");
                let sk = env_or(config, env, "LANGFUSE_SECRET_KEY");
                let (Some(pk), Some(sk)) = (pk, sk) else {
                    return Err(ConfigError(format!(
                        "callback `{name}` needs LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY"
                    )));
                };
                let host = env_or(config, env, "LANGFUSE_HOST")
                    .or_else(|| env_or(config, env, "LANGFUSE_OTEL_HOST"));
                let cfg = crate::observe::otel::langfuse_config(&pk, &sk, host.as_deref());
                Some(
                    crate::observe::otel::otlp_callback(name, &cfg, client.clone())
                        .map_err(ConfigError)?,
                )
            }
            "generic_api" | "generic" if !config.callback_settings.contains_key(name) => {
                let endpoint = env_or(config, env, "GENERIC_LOGGER_ENDPOINT").ok_or_else(|| {
                    ConfigError(format!("callback `{name}` needs GENERIC_LOGGER_ENDPOINT"))
                })?;
                let headers = env_or(config, env, "GENERIC_LOGGER_HEADERS")
                    .map(|h| WebhookCallback::parse_headers(&h))
                    .unwrap_or_default();
                Some(Arc::new(
                    WebhookCallback::new(name, &endpoint, &headers, client.clone())
                        .map_err(ConfigError)?,
                ))
            }
            "json_file" => {
                let path = config
                    .callback_settings
                    .get("json_file")
                    .and_then(|s| s.get("path"))
                    .and_then(Value::as_str)
                    .unwrap_or("tollgate-requests.jsonl");
                Some(Arc::new(JsonFileCallback::new(path)))
            }
            other => match config.callback_settings.get(other) {
                Some(settings) => Some(custom(other, settings, client)?),
                None if KNOWN_UNSUPPORTED.contains(&other) => {
                    warnings.push(format!(
                        "callback `{other}` is a LiteLLM callback tollgate does not implement; it is ignored (use otel, langfuse, generic_api or json_file)"
                    ));
                    None
                }
                None => {
                    warnings.push(format!(
                        "unknown callback `{other}` is ignored (known: prometheus, otel, langfuse, generic_api, json_file, or a name defined in callback_settings)"
                    ));
                    None
                }
            },
        };
        if let Some(cb) = cb {
            let filter = match config
                .callback_settings
                .get(name.as_str())
                .and_then(|s| s.get("event_types"))
                .and_then(Value::as_array)
            {
                Some(types) => {
                    let has = |t: &str| types.iter().any(|v| v.as_str() == Some(t));
                    match (has("llm_api_success"), has("llm_api_failure")) {
                        (true, false) => Filter::Success,
                        (false, true) => Filter::Failure,
                        _ => *filter,
                    }
                }
                None => *filter,
            };
            set = set.callback(cb, filter);
        }
    }
    let (queue, runner) = if set.is_empty() {
        (None, None)
    } else {
        let (q, r) = set.build();
        sinks.push(Arc::new(q.clone()));
        (Some(q), Some(r))
    };
    let sink: Option<Arc<dyn RecordSink>> = match sinks.len() {
        0 => None,
        1 => sinks.pop(),
        _ => Some(Arc::new(FanOut(sinks))),
    };
    Ok(Observability {
        sink,
        runner,
        queue,
        metrics,
        capture_content,
        warnings,
    })
}

/// A callback defined in `callback_settings` (`callback_type: generic_api`).
fn custom(
    name: &str,
    settings: &Value,
    client: &HttpClient,
) -> Result<Arc<dyn Callback>, ConfigError> {
    let at = |what: &str| ConfigError(format!("callback_settings.{name}: {what}"));
    let kind = settings
        .get("callback_type")
        .and_then(Value::as_str)
        .unwrap_or("generic_api");
    if kind != "generic_api" {
        return Err(at(&format!(
            "callback_type `{kind}` is not supported (only generic_api)"
        )));
    }
    let endpoint = settings
        .get("endpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| at("`endpoint` is required"))?;
    let headers: Vec<(String, String)> = match settings.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|v| (k.clone(), v.to_owned()))
                    .ok_or_else(|| at("`headers` values must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(at("`headers` must be a mapping")),
    };
    let format = match settings.get("log_format").and_then(Value::as_str) {
        None => LogFormat::JsonArray,
        Some(f) => LogFormat::parse(f)
            .ok_or_else(|| at("`log_format` must be json_array, ndjson or single"))?,
    };
    Ok(Arc::new(
        WebhookCallback::new(name, endpoint, &headers, client.clone())
            .map_err(ConfigError)?
            .format(format),
    ))
}

/// Keeps histograms drained (the Prometheus recorder needs a periodic upkeep).
pub fn spawn_upkeep(endpoint: &MetricsEndpoint) -> tokio::task::JoinHandle<()> {
    let handle = endpoint.handle.clone();
    tokio::spawn(async move {
        let mut t = tokio::time::interval(std::time::Duration::from_secs(5));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            t.tick().await;
            handle.run_upkeep();
        }
    })
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

    fn env(name: &str) -> Option<String> {
        match name {
            "GENERIC_LOGGER_ENDPOINT" => Some("http://127.0.0.1:9/logs".into()),
            _ => None,
        }
    }

    #[test]
    fn callback_names_map_to_sinks_and_unknown_ones_warn() {
        let c = cfg(
            "litellm_settings:\n  success_callback: [generic_api, datadog, nonsense]\n  failure_callback: [generic_api]\n",
        );
        let o = build(&c, &env, &HttpClient::shared()).unwrap();
        assert_eq!(o.queue.as_ref().unwrap().names(), ["generic_api"]);
        assert!(o.metrics.is_none(), "no prometheus, no /metrics");
        assert!(!o.capture_content);
        assert_eq!(o.warnings.len(), 2, "{:?}", o.warnings);
        assert!(
            o.warnings[0].contains("`datadog` is a LiteLLM callback tollgate does not implement")
        );
        assert!(o.warnings[1].contains("unknown callback `nonsense`"));
    }

    #[test]
    fn settings_errors_name_the_key() {
        let e = |yaml: &str| {
            build(&cfg(yaml), &|_| None, &HttpClient::shared())
                .err()
                .map(|e| e.0)
                .unwrap_or_default()
        };
        assert!(
            e("litellm_settings:\n  callbacks: [generic_api]\n")
                .contains("GENERIC_LOGGER_ENDPOINT")
        );
        assert!(e("litellm_settings:\n  callbacks: [langfuse]\n").contains("LANGFUSE_PUBLIC_KEY"));
        assert!(
            e("litellm_settings:\n  prometheus_metrics_labels: [hashed_api_key]\n")
                .contains("`hashed_api_key` is not one of")
        );
        assert!(e("litellm_settings:\n  callbacks: [my_hook]\ncallback_settings:\n  my_hook:\n    callback_type: generic_api\n")
            .contains("callback_settings.my_hook: `endpoint` is required"));
        assert!(e("litellm_settings:\n  callback_queue_size: 0\n").contains("callback_queue_size"));
    }

    #[test]
    fn message_logging_is_opt_in() {
        let on = |yaml: &str| {
            build(&cfg(yaml), &|_| None, &HttpClient::shared())
                .unwrap()
                .capture_content
        };
        assert!(!on("litellm_settings: {}\n"));
        assert!(!on("litellm_settings:\n  turn_off_message_logging: true\n"));
        assert!(on("litellm_settings:\n  turn_off_message_logging: false\n"));
    }

    #[test]
    fn custom_generic_api_callbacks_from_callback_settings() {
        let c = cfg(
            "litellm_settings:\n  callbacks: [audit]\ncallback_settings:\n  audit:\n    callback_type: generic_api\n    endpoint: http://127.0.0.1:9/audit\n    headers: {Authorization: Bearer x}\n    event_types: [llm_api_failure]\n    log_format: ndjson\n",
        );
        let o = build(&c, &|_| None, &HttpClient::shared()).unwrap();
        assert_eq!(o.queue.unwrap().names(), ["audit"]);
        assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    }
}
