//! OpenTelemetry export (feature `otel`): request and attempt spans built
//! from records, with the GenAI semantic conventions.
//!
//! [`OtelCallback`] is a [`Callback`]: it runs off the request path and
//! hands batches of finished spans to any OpenTelemetry
//! [`SpanExporter`](opentelemetry_sdk::trace::SpanExporter) —
//! [`otlp_exporter`] builds the OTLP/HTTP (protobuf) one, configured by the
//! standard `OTEL_EXPORTER_OTLP_*` environment variables unless an endpoint
//! is given. Spans are built after the fact with the ids the records carry,
//! so the request span is the caller's `traceparent` child and each attempt
//! span is the parent of what the upstream records.
//!
//! # Spans
//!
//! - Request span (`SERVER`), named `chat {model}`: `gen_ai.operation.name`,
//!   `gen_ai.provider.name`, `gen_ai.request.model` (the name the client
//!   used), `gen_ai.response.model`, `gen_ai.usage.input_tokens`,
//!   `gen_ai.usage.output_tokens`, `gen_ai.response.finish_reasons`,
//!   `gen_ai.request.temperature|top_p|max_tokens|frequency_penalty|presence_penalty|seed|choice.count`,
//!   `http.response.status_code`, `error.type`, and tollgate's own
//!   `tollgate.request_id`, `tollgate.cost_usd`, `tollgate.key_alias`,
//!   `tollgate.team_id`, `tollgate.user_id`, `tollgate.model_group`,
//!   `tollgate.deployment.id`, `tollgate.attempts`, `tollgate.fallbacks`,
//!   `tollgate.cache_hit`, `tollgate.stream`, `tollgate.ttft_ms`,
//!   `tollgate.overhead_ms`, `tollgate.usage_estimated`.
//! - Attempt span (`CLIENT`), named `chat {upstream model}`, child of the
//!   request span: the same `gen_ai.*` attributes for that call, plus
//!   `tollgate.attempt` (1-based across retries and fallbacks),
//!   `tollgate.deployment.id`, `server.address`, `tollgate.cost_usd`.
//! - Message content (`gen_ai.input.messages`, `gen_ai.output.messages`) only
//!   when the record carries it (the operator opted in).

use super::callback::{Callback, CallbackError, CallbackFuture, Event};
use super::trace::{AttemptRecord, RequestParams, SpanIds};
use super::{CompletionRecord, RecordStatus};
use crate::transport::HttpClient;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The GenAI `gen_ai.provider.name` for a LiteLLM provider name.
pub fn genai_provider(provider: &str) -> &str {
    match provider {
        "openai" => "openai",
        "anthropic" => "anthropic",
        "azure" => "azure.ai.openai",
        "bedrock" => "aws.bedrock",
        "gemini" => "gcp.gemini",
        "vertex_ai" => "gcp.vertex_ai",
        "mistral" => "mistral_ai",
        "cohere" => "cohere",
        "groq" => "groq",
        "deepseek" => "deepseek",
        "xai" => "x_ai",
        "perplexity" => "perplexity",
        other => other,
    }
}

fn ctx(ids: &SpanIds) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(ids.trace_id.to_be_bytes()),
        SpanId::from_bytes(ids.span_id.to_be_bytes()),
        if ids.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        false,
        TraceState::NONE,
    )
}

fn params(out: &mut Vec<KeyValue>, p: &RequestParams) {
    if let Some(v) = p.temperature {
        out.push(KeyValue::new("gen_ai.request.temperature", v));
    }
    if let Some(v) = p.top_p {
        out.push(KeyValue::new("gen_ai.request.top_p", v));
    }
    if let Some(v) = p.max_tokens {
        out.push(KeyValue::new("gen_ai.request.max_tokens", i64::from(v)));
    }
    if let Some(v) = p.frequency_penalty {
        out.push(KeyValue::new("gen_ai.request.frequency_penalty", v));
    }
    if let Some(v) = p.presence_penalty {
        out.push(KeyValue::new("gen_ai.request.presence_penalty", v));
    }
    if let Some(v) = p.seed {
        out.push(KeyValue::new("gen_ai.request.seed", v));
    }
    if let Some(v) = p.n.filter(|n| *n != 1) {
        out.push(KeyValue::new("gen_ai.request.choice.count", i64::from(v)));
    }
}

fn u(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned().into())
}

fn finish_reasons(list: &[String]) -> Value {
    Value::Array(opentelemetry::Array::String(
        list.iter().map(|f| f.clone().into()).collect(),
    ))
}

fn status_of(status: RecordStatus, err: Option<&super::RecordError>) -> Status {
    match (status, err) {
        (RecordStatus::Success, _) => Status::Unset,
        (_, Some(e)) => Status::error(format!(
            "{}: {}",
            e.class,
            e.message.chars().take(300).collect::<String>()
        )),
        (_, None) => Status::error("cancelled"),
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("tollgate")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// The request span of a record.
pub fn request_span(r: &CompletionRecord) -> SpanData {
    let d = r.deployment.as_deref();
    let operation = if r.call_type == "chat" {
        "chat"
    } else {
        "embeddings"
    };
    let mut a = vec![
        KeyValue::new("gen_ai.operation.name", operation),
        KeyValue::new("gen_ai.request.model", s(&r.model)),
        KeyValue::new("tollgate.request_id", s(&r.request_id)),
        KeyValue::new("tollgate.stream", r.stream),
        KeyValue::new("tollgate.attempts", i64::from(r.attempts)),
        KeyValue::new("tollgate.fallbacks", i64::from(r.fallbacks)),
        KeyValue::new("tollgate.cache_hit", r.cache_hit),
        KeyValue::new("http.response.status_code", i64::from(r.http_status)),
    ];
    if let Some(d) = d {
        a.push(KeyValue::new(
            "gen_ai.provider.name",
            s(genai_provider(&d.provider)),
        ));
        a.push(KeyValue::new(
            "gen_ai.response.model",
            s(crate::provider::ProviderKind::parse(&d.model).1),
        ));
        a.push(KeyValue::new("tollgate.model_group", s(&d.model_group)));
        a.push(KeyValue::new("tollgate.deployment.id", s(&d.id)));
    }
    if let Some(u_) = &r.usage {
        a.push(KeyValue::new(
            "gen_ai.usage.input_tokens",
            u(u_.prompt_tokens),
        ));
        a.push(KeyValue::new(
            "gen_ai.usage.output_tokens",
            u(u_.completion_tokens),
        ));
        a.push(KeyValue::new("tollgate.usage_estimated", r.usage_estimated));
    }
    if let Some(f) = &r.finish_reason {
        a.push(KeyValue::new(
            "gen_ai.response.finish_reasons",
            finish_reasons(std::slice::from_ref(f)),
        ));
    }
    params(&mut a, &r.params);
    if let Some(c) = r.cost {
        a.push(KeyValue::new("tollgate.cost_usd", c.as_f64()));
    }
    for (k, v) in [
        ("tollgate.key_alias", &r.identity.key_alias),
        ("tollgate.team_id", &r.identity.team_id),
        ("tollgate.user_id", &r.identity.user_id),
    ] {
        if let Some(v) = v {
            a.push(KeyValue::new(k, s(v)));
        }
    }
    if let Some(t) = r.time_to_first_token {
        a.push(KeyValue::new("tollgate.ttft_ms", t.as_secs_f64() * 1000.0));
    }
    if let Some(o) = r.overhead {
        a.push(KeyValue::new(
            "tollgate.overhead_ms",
            o.as_secs_f64() * 1000.0,
        ));
    }
    if let Some(e) = &r.error {
        a.push(KeyValue::new("error.type", e.class));
    }
    if let Some(c) = &r.content {
        a.push(KeyValue::new("gen_ai.input.messages", c.input.to_string()));
        if let Some(o) = &c.output {
            a.push(KeyValue::new("gen_ai.output.messages", o.to_string()));
        }
    }
    let name = format!("{operation} {}", d.map_or(&*r.model, |d| &d.model_group));
    SpanData {
        span_context: ctx(&r.trace),
        parent_span_id: r
            .trace
            .parent_span_id
            .map_or(SpanId::INVALID, |p| SpanId::from_bytes(p.to_be_bytes())),
        parent_span_is_remote: r.trace.parent_span_id.is_some(),
        span_kind: SpanKind::Server,
        name: Cow::Owned(name),
        start_time: r.start_time,
        end_time: r.start_time + r.latency,
        attributes: a,
        dropped_attributes_count: 0,
        events: Default::default(),
        links: Default::default(),
        status: status_of(r.status, r.error.as_ref()),
        instrumentation_scope: scope(),
    }
}

/// The span of one upstream attempt.
pub fn attempt_span(r: &AttemptRecord) -> SpanData {
    let d = &r.deployment;
    let mut a = vec![
        KeyValue::new("gen_ai.operation.name", "chat"),
        KeyValue::new("gen_ai.provider.name", s(genai_provider(&d.provider))),
        KeyValue::new("gen_ai.request.model", s(&r.request_model)),
        KeyValue::new("tollgate.request_id", s(&r.request_id)),
        KeyValue::new("tollgate.attempt", i64::from(r.attempt)),
        KeyValue::new("tollgate.deployment.id", s(&d.id)),
        KeyValue::new("tollgate.model_group", s(&d.model_group)),
        KeyValue::new("tollgate.stream", r.stream),
        KeyValue::new("http.response.status_code", i64::from(r.http_status)),
    ];
    if let Some(host) = d
        .api_base
        .as_deref()
        .and_then(|b| b.parse::<http::Uri>().ok())
        .and_then(|u| u.host().map(str::to_owned))
    {
        a.push(KeyValue::new("server.address", host));
    }
    if let Some(m) = &r.response_model {
        a.push(KeyValue::new("gen_ai.response.model", s(m)));
    }
    if let Some(id) = &r.response_id {
        a.push(KeyValue::new("gen_ai.response.id", s(id)));
    }
    if let Some(u_) = &r.usage {
        a.push(KeyValue::new(
            "gen_ai.usage.input_tokens",
            u(u_.prompt_tokens),
        ));
        a.push(KeyValue::new(
            "gen_ai.usage.output_tokens",
            u(u_.completion_tokens),
        ));
    }
    if !r.finish_reasons.is_empty() {
        a.push(KeyValue::new(
            "gen_ai.response.finish_reasons",
            finish_reasons(&r.finish_reasons),
        ));
    }
    params(&mut a, &r.params);
    if let Some(c) = r.cost {
        a.push(KeyValue::new("tollgate.cost_usd", c.as_f64()));
    }
    if let Some(t) = r.time_to_first_token {
        a.push(KeyValue::new("tollgate.ttft_ms", t.as_secs_f64() * 1000.0));
    }
    if let Some(e) = &r.error {
        a.push(KeyValue::new("error.type", e.class));
    }
    SpanData {
        span_context: ctx(&r.ids),
        parent_span_id: r
            .ids
            .parent_span_id
            .map_or(SpanId::INVALID, |p| SpanId::from_bytes(p.to_be_bytes())),
        parent_span_is_remote: false,
        span_kind: SpanKind::Client,
        name: Cow::Owned(format!("chat {}", r.request_model)),
        start_time: r.start_time,
        end_time: r.start_time + r.duration,
        attributes: a,
        dropped_attributes_count: 0,
        events: Default::default(),
        links: Default::default(),
        status: status_of(r.status, r.error.as_ref()),
        instrumentation_scope: scope(),
    }
}

/// Exports request and attempt spans through a [`SpanExporter`].
pub struct OtelCallback<E> {
    name: String,
    exporter: E,
}

impl<E> std::fmt::Debug for OtelCallback<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelCallback")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<E: SpanExporter + 'static> OtelCallback<E> {
    /// A callback named `name` (`otel`, `langfuse`) exporting through `exporter`.
    /// Set the exporter's resource (`service.name`) before.
    pub fn new(name: &str, exporter: E) -> Self {
        OtelCallback {
            name: name.to_owned(),
            exporter,
        }
    }
}

impl<E: SpanExporter + 'static> Callback for OtelCallback<E> {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants_attempts(&self) -> bool {
        true
    }

    fn handle<'a>(&'a self, batch: &'a [Event]) -> CallbackFuture<'a> {
        let spans: Vec<SpanData> = batch
            .iter()
            .filter(|e| match e {
                Event::Record(r) => r.trace.sampled,
                Event::Attempt(a) => a.ids.sampled,
            })
            .map(|e| match e {
                Event::Record(r) => request_span(r),
                Event::Attempt(a) => attempt_span(a),
            })
            .collect();
        Box::pin(async move {
            if spans.is_empty() {
                return Ok(());
            }
            self.exporter
                .export(spans)
                .await
                .map_err(|e| CallbackError(format!("{}: {e}", self.name)))
        })
    }

    fn flush(&self) -> CallbackFuture<'_> {
        Box::pin(async move {
            self.exporter
                .force_flush()
                .map_err(|e| CallbackError(format!("{}: {e}", self.name)))
        })
    }
}

/// The pooled [`HttpClient`] as an OpenTelemetry HTTP client (no reqwest).
#[derive(Clone)]
pub struct OtelHttpClient {
    client: HttpClient,
    timeout: Duration,
}

impl std::fmt::Debug for OtelHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtelHttpClient")
    }
}

impl OtelHttpClient {
    /// Sends through `client`, each request bounded by `timeout`.
    pub fn new(client: HttpClient, timeout: Duration) -> Self {
        OtelHttpClient { client, timeout }
    }
}

impl opentelemetry_http::HttpClient for OtelHttpClient {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: http::Request<bytes::Bytes>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError>,
                > + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            use http_body_util::BodyExt;
            let send = async {
                let resp = self.client.send(request).await?;
                let (parts, body) = resp.into_parts();
                let limited = http_body_util::Limited::new(body, 4 << 20);
                let bytes = limited
                    .collect()
                    .await
                    .map_err(|_| {
                        crate::Error::new(
                            crate::ErrorKind::BadGateway,
                            "the collector's answer could not be read",
                        )
                    })?
                    .to_bytes();
                Ok::<_, crate::Error>(http::Response::from_parts(parts, bytes))
            };
            match tokio::time::timeout(self.timeout, send).await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(e)) => Err(Box::new(e) as opentelemetry_http::HttpError),
                Err(_) => Err("the OTLP collector did not answer in time".into()),
            }
        })
    }
}

/// Where and how to export OTLP/HTTP.
#[derive(Clone, Debug, Default)]
pub struct OtlpConfig {
    /// The full traces URL (`…/v1/traces`). `None`: from
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    /// Extra headers (`OTEL_EXPORTER_OTLP_HEADERS` is added by the exporter).
    pub headers: HashMap<String, String>,
    /// `service.name` (`None`: `OTEL_SERVICE_NAME`, else `tollgate`).
    pub service_name: Option<String>,
    /// Time limit of one export.
    pub timeout: Option<Duration>,
}

/// An OTLP/HTTP (protobuf) span exporter over tollgate's HTTP client.
pub fn otlp_exporter(
    config: &OtlpConfig,
    client: HttpClient,
) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let timeout = config.timeout.unwrap_or(Duration::from_secs(10));
    let mut b = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(OtelHttpClient::new(client, timeout))
        .with_timeout(timeout);
    if let Some(e) = &config.endpoint {
        b = b.with_endpoint(e.clone());
    }
    if !config.headers.is_empty() {
        b = b.with_headers(config.headers.clone());
    }
    let mut exporter = b.build().map_err(|e| format!("OTLP exporter: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if let Some(name) = &config.service_name {
        resource = resource.with_service_name(name.clone());
    } else if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("tollgate");
    }
    exporter.set_resource(&resource.build());
    Ok(exporter)
}

/// The OTLP config that sends to Langfuse's OpenTelemetry endpoint
/// (`{host}/api/public/otel/v1/traces`, basic auth from the key pair).
pub fn langfuse_config(public_key: &str, secret_key: &str, host: Option<&str>) -> OtlpConfig {
    use base64::Engine;
    let host = host
        .filter(|h| !h.is_empty())
        .unwrap_or("https://cloud.langfuse.com")
        .trim_end_matches('/');
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{public_key}:{secret_key}"));
    OtlpConfig {
        endpoint: Some(format!("{host}/api/public/otel/v1/traces")),
        headers: [("Authorization".to_owned(), format!("Basic {auth}"))].into(),
        service_name: None,
        timeout: None,
    }
}

/// An [`OtelCallback`] over OTLP/HTTP.
pub fn otlp_callback(
    name: &str,
    config: &OtlpConfig,
    client: HttpClient,
) -> Result<Arc<dyn Callback>, String> {
    Ok(Arc::new(OtelCallback::new(
        name,
        otlp_exporter(config, client)?,
    )))
}
