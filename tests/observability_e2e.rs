//! Traces, metrics, logs and callbacks through the real proxy binary: an
//! OTLP/HTTP receiver decoding the protobuf, `/metrics` parsed as Prometheus
//! text, a webhook receiver, and a canary that must never leak.

mod common;

use common::{Client, MockUpstream, Proxy, Reply, fixture, sse_data};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const MASTER: &str = "sk-master-obs-0123456789";

fn auth() -> (&'static str, String) {
    ("authorization", format!("Bearer {MASTER}"))
}

/// An OTLP/HTTP collector: a mock upstream that answers 200 to everything.
async fn collector() -> MockUpstream {
    let c = MockUpstream::start().await;
    c.always(Reply {
        status: 200,
        headers: vec![("content-type".into(), "application/x-protobuf".into())],
        pieces: vec![],
        hang: false,
    });
    c
}

fn spans(collector: &MockUpstream) -> Vec<Span> {
    collector
        .received()
        .into_iter()
        .filter(|r| r.path == "/v1/traces")
        .flat_map(|r| {
            let req = ExportTraceServiceRequest::decode(r.body).expect("OTLP protobuf");
            req.resource_spans
                .into_iter()
                .flat_map(|rs| rs.scope_spans)
                .flat_map(|ss| ss.spans)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits (bounded) until the collector has `n` spans of `trace`.
async fn wait_spans(collector: &MockUpstream, trace: &str, n: usize) -> Vec<Span> {
    let want = hex(trace);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<Span> = spans(collector)
            .into_iter()
            .filter(|s| s.trace_id == want)
            .collect();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} spans of trace {trace}, got {}: {:#?}",
            got.len(),
            got.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Any> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_str(span: &Span, key: &str) -> String {
    match attr(span, key) {
        Some(Any::StringValue(s)) => s.clone(),
        other => panic!("{key} is not a string on {}: {other:?}", span.name),
    }
}

fn attr_int(span: &Span, key: &str) -> i64 {
    match attr(span, key) {
        Some(Any::IntValue(i)) => *i,
        other => panic!("{key} is not an int on {}: {other:?}", span.name),
    }
}

fn attr_strings(span: &Span, key: &str) -> Vec<String> {
    match attr(span, key) {
        Some(Any::ArrayValue(a)) => a
            .values
            .iter()
            .filter_map(|v| match &v.value {
                Some(Any::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        other => panic!("{key} is not an array on {}: {other:?}", span.name),
    }
}

fn split(spans: Vec<Span>) -> (Span, Vec<Span>) {
    let mut request = None;
    let mut attempts = Vec::new();
    for s in spans {
        if s.kind == SpanKind::Server as i32 {
            assert!(request.is_none(), "one request span");
            request = Some(s);
        } else {
            assert_eq!(s.kind, SpanKind::Client as i32);
            attempts.push(s);
        }
    }
    attempts.sort_by_key(|s| attr_int(s, "tollgate.attempt"));
    (request.expect("a request span"), attempts)
}

fn config(primary: &MockUpstream, backup: &MockUpstream, extra: &str) -> String {
    format!(
        r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o-2024-08-06
      api_base: {p}/v1
      api_key: os.environ/OBS_UPSTREAM_KEY
    model_info:
      id: primary
  - model_name: backup
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {b}/v1
      api_key: os.environ/OBS_UPSTREAM_KEY
    model_info:
      id: backup-1
router_settings:
  num_retries: 1
  retry_after: 0.001
general_settings:
  master_key: os.environ/OBS_MASTER
{extra}
"#,
        p = primary.base(),
        b = backup.base()
    )
}

fn chat(model: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"What's the weather like in SF?"}}],"stream":{stream},"temperature":0.2,"max_tokens":100}}"#
    )
}

#[tokio::test]
async fn otlp_spans_for_plain_streamed_retried_and_failed_calls() {
    let primary = MockUpstream::start().await;
    let backup = MockUpstream::start().await;
    let otlp = collector().await;
    let proxy = Proxy::start(
        &config(
            &primary,
            &backup,
            "litellm_settings:\n  callbacks: [\"otel\"]\n",
        ),
        &[
            ("OBS_UPSTREAM_KEY", "sk-upstream-obs-abcdef"),
            ("OBS_MASTER", MASTER),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.base()),
        ],
    );
    let c = Client::new();
    let (ak, av) = auth();
    let caller_span = "00f067aa0ba902b7";

    // 1. Non-streamed, under the caller's traceparent.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    primary.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let tp = format!("00-{trace}-{caller_span}-01");
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("gpt-4o", false),
            &[(ak, &av), ("traceparent", &tp), ("tracestate", "vendor=1")],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let (req, attempts) = split(wait_spans(&otlp, trace, 2).await);
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        to_hex(&req.parent_span_id),
        caller_span,
        "child of the caller"
    );
    assert_eq!(req.name, "chat gpt-4o");
    assert_eq!(attr_str(&req, "gen_ai.operation.name"), "chat");
    assert_eq!(attr_str(&req, "gen_ai.provider.name"), "openai");
    assert_eq!(attr_str(&req, "gen_ai.request.model"), "gpt-4o");
    assert_eq!(attr_str(&req, "gen_ai.response.model"), "gpt-4o-2024-08-06");
    assert_eq!(attr_int(&req, "gen_ai.usage.input_tokens"), 14);
    assert_eq!(attr_int(&req, "gen_ai.usage.output_tokens"), 37);
    assert_eq!(
        attr_strings(&req, "gen_ai.response.finish_reasons"),
        ["stop"]
    );
    assert_eq!(attr_int(&req, "gen_ai.request.max_tokens"), 100);
    assert!(
        matches!(attr(&req, "gen_ai.request.temperature"), Some(Any::DoubleValue(t)) if (*t - 0.2).abs() < 1e-9)
    );
    assert_eq!(attr_str(&req, "tollgate.deployment.id"), "primary");
    assert_eq!(attr_int(&req, "tollgate.attempts"), 1);
    assert_eq!(attr_int(&req, "http.response.status_code"), 200);
    assert!(matches!(attr(&req, "tollgate.cost_usd"), Some(Any::DoubleValue(c)) if *c > 0.0));
    assert!(
        attr(&req, "gen_ai.input.messages").is_none(),
        "no message content unless the operator opts in"
    );
    let att = &attempts[0];
    assert_eq!(att.parent_span_id, req.span_id, "attempt under the request");
    assert_eq!(attr_int(att, "tollgate.attempt"), 1);
    assert_eq!(attr_str(att, "gen_ai.request.model"), "gpt-4o-2024-08-06");
    assert_eq!(attr_str(att, "gen_ai.response.model"), "gpt-4o-2024-08-06");
    assert_eq!(
        attr_str(att, "gen_ai.response.id"),
        "chatcmpl-ABfvaueLEMLNYbT8YzpJxsmiQ6HSY"
    );
    assert_eq!(attr_int(att, "gen_ai.usage.output_tokens"), 37);
    assert_eq!(attr_str(att, "server.address"), "127.0.0.1");
    // Propagated upstream: same trace, the attempt span as parent, tracestate kept.
    let got = primary.last();
    assert_eq!(
        got.headers["traceparent"],
        format!("00-{trace}-{}-01", to_hex(&att.span_id)).as_str()
    );
    assert_eq!(got.headers["tracestate"], "vendor=1");

    // 2. Streamed.
    let trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    primary.push(Reply::sse(fixture("openai/chat_stream_text.sse.txt")));
    let tp = format!("00-{trace}-{caller_span}-01");
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("gpt-4o", true),
            &[(ak, &av), ("traceparent", &tp)],
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(sse_data(&a.text()).last().unwrap(), "[DONE]");
    let (req, attempts) = split(wait_spans(&otlp, trace, 2).await);
    assert_eq!(attempts.len(), 1);
    assert!(matches!(
        attr(&req, "tollgate.stream"),
        Some(Any::BoolValue(true))
    ));
    assert_eq!(attr_int(&req, "gen_ai.usage.output_tokens"), 30);
    assert_eq!(
        attr_strings(&req, "gen_ai.response.finish_reasons"),
        ["stop"]
    );
    assert!(matches!(
        attr(&req, "tollgate.ttft_ms"),
        Some(Any::DoubleValue(_))
    ));
    assert_eq!(attempts[0].parent_span_id, req.span_id);
    assert_eq!(attr_int(&attempts[0], "gen_ai.usage.output_tokens"), 30);
    assert!(req.end_time_unix_nano >= attempts[0].end_time_unix_nano);

    // 3. Retried: a 500, then an answer. Two attempt spans, one request span.
    let trace = "6bf92f3577b34da6a3ce929d0e0e4738";
    primary.push(Reply::json(
        500,
        r#"{"error":{"message":"boom","type":"server_error"}}"#,
    ));
    primary.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let before = primary.received().len();
    let tp = format!("00-{trace}-{caller_span}-01");
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("gpt-4o", false),
            &[(ak, &av), ("traceparent", &tp)],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let (req, attempts) = split(wait_spans(&otlp, trace, 3).await);
    assert_eq!(attempts.len(), 2);
    assert_eq!(attr_int(&req, "tollgate.attempts"), 2);
    assert_eq!(attr_int(&attempts[0], "tollgate.attempt"), 1);
    assert_eq!(attr_int(&attempts[0], "http.response.status_code"), 500);
    assert_eq!(attr_str(&attempts[0], "error.type"), "InternalServerError");
    assert_eq!(attempts[0].status.as_ref().unwrap().code, 2, "error status");
    assert_eq!(attr_int(&attempts[1], "tollgate.attempt"), 2);
    assert!(attr(&attempts[1], "error.type").is_none());
    for att in &attempts {
        assert_eq!(att.parent_span_id, req.span_id);
    }
    let sent: Vec<String> = primary.received()[before..]
        .iter()
        .map(|r| r.headers["traceparent"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sent,
        attempts
            .iter()
            .map(|a| format!("00-{trace}-{}-01", to_hex(&a.span_id)))
            .collect::<Vec<_>>(),
        "each attempt sends its own span id"
    );

    // 4. Failed: a 400 is not retried; both spans carry the error.
    let trace = "7bf92f3577b34da6a3ce929d0e0e4739";
    backup.push(Reply::json(
        400,
        r#"{"error":{"message":"bad things","type":"invalid_request_error","code":null}}"#,
    ));
    let tp = format!("00-{trace}-{caller_span}-01");
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("backup", false),
            &[(ak, &av), ("traceparent", &tp)],
        )
        .await;
    assert_eq!(a.status, 400);
    let (req, attempts) = split(wait_spans(&otlp, trace, 2).await);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attr_str(&req, "error.type"), "BadRequestError");
    assert_eq!(attr_int(&req, "http.response.status_code"), 400);
    assert_eq!(req.status.as_ref().unwrap().code, 2);
    assert_eq!(attr_str(&req, "tollgate.deployment.id"), "backup-1");
    assert_eq!(attr_str(&attempts[0], "error.type"), "BadRequestError");

    // 5. No traceparent: a new root trace, still exported.
    primary.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("gpt-4o", false),
            &[(ak, &av)],
        )
        .await;
    assert_eq!(a.status, 200);
    let tp = primary.last().headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let trace = tp.split('-').nth(1).unwrap().to_owned();
    let (req, _) = split(wait_spans(&otlp, &trace, 2).await);
    assert!(req.parent_span_id.is_empty(), "a root span");
}

/// `name{labels}` → value, labels sorted.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let key = match series.split_once('{') {
            None => series.to_owned(),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels: Vec<&str> = if body.is_empty() {
                    Vec::new()
                } else {
                    body.split("\",").map(|l| l.trim_end_matches('"')).collect()
                };
                labels.sort_unstable();
                let labels: Vec<String> = labels.iter().map(|l| format!("{l}\"")).collect();
                format!("{name}{{{}}}", labels.join(","))
            }
        };
        out.insert(key, value);
    }
    out
}

fn metric(m: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    l.sort();
    let key = if l.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", l.join(","))
    };
    m.get(&key).copied().unwrap_or(0.0)
}

async fn scrape(c: &Client, proxy: &Proxy) -> BTreeMap<String, f64> {
    let a = c.get(&proxy.url("/metrics"), &[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "Prometheus text"
    );
    parse_prometheus(&a.text())
}

#[tokio::test]
async fn metrics_move_by_exact_amounts() {
    let primary = MockUpstream::start().await;
    let backup = MockUpstream::start().await;
    let proxy = Proxy::start(
        &config(
            &primary,
            &backup,
            "litellm_settings:\n  callbacks: [\"prometheus\"]\n",
        )
        .replace("num_retries: 1", "num_retries: 0"),
        &[
            ("OBS_UPSTREAM_KEY", "sk-upstream-obs-abcdef"),
            ("OBS_MASTER", MASTER),
        ],
    );
    let c = Client::new();
    let (ak, av) = auth();
    let before = scrape(&c, &proxy).await;
    let mut cost = 0.0;
    for _ in 0..2 {
        primary.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
        let a = c
            .post_json(
                &proxy.url("/v1/chat/completions"),
                &chat("gpt-4o", false),
                &[(ak, &av)],
            )
            .await;
        assert_eq!(a.status, 200);
        cost += a.headers["x-litellm-response-cost"]
            .to_str()
            .unwrap()
            .parse::<f64>()
            .unwrap();
    }
    primary.push(Reply::sse(fixture("openai/chat_stream_text.sse.txt")));
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("gpt-4o", true),
            &[(ak, &av)],
        )
        .await;
    let text = a.text();
    let stream_cost: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(": x-litellm-response-cost "))
        .expect("the stream's cost comment")
        .trim()
        .parse()
        .unwrap();
    cost += stream_cost;
    primary.push(Reply::json(
        400,
        r#"{"error":{"message":"nope","type":"invalid_request_error"}}"#,
    ));
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("gpt-4o", false),
            &[(ak, &av)],
        )
        .await;
    assert_eq!(a.status, 400);
    // A model name from the client never becomes a label.
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("no-such-model-xyz", false),
            &[(ak, &av)],
        )
        .await;
    let unknown_status = a.status;
    assert!(
        unknown_status == 400 || unknown_status == 404,
        "{}",
        a.text()
    );

    let after = scrape(&c, &proxy).await;
    let text = c.get(&proxy.url("/metrics/"), &[]).await.text();
    assert!(
        !text.contains("no-such-model-xyz"),
        "client input is not a label"
    );
    let d = |name: &str, labels: &[(&str, &str)]| {
        metric(&after, name, labels) - metric(&before, name, labels)
    };
    let group = [
        ("api_provider", "openai"),
        ("model_id", "primary"),
        ("requested_model", "gpt-4o"),
    ];
    let with = |extra: (&'static str, &'static str)| {
        let mut v = group.to_vec();
        v.push(extra);
        v
    };
    assert_eq!(
        d(
            "litellm_proxy_total_requests_metric_total",
            &with(("status_code", "200"))
        ),
        3.0
    );
    assert_eq!(
        d(
            "litellm_proxy_total_requests_metric_total",
            &with(("status_code", "400"))
        ),
        1.0
    );
    assert_eq!(
        d(
            "litellm_proxy_total_requests_metric_total",
            &[
                ("api_provider", "unrouted"),
                ("model_id", "unrouted"),
                ("requested_model", "unrouted"),
                ("status_code", &unknown_status.to_string())
            ]
        ),
        1.0
    );
    assert_eq!(
        d(
            "litellm_proxy_failed_requests_metric_total",
            &[
                ("exception_class", "BadRequestError"),
                ("exception_status", "400"),
                ("requested_model", "gpt-4o")
            ]
        ),
        1.0
    );
    let model = [
        ("model", "openai/gpt-4o-2024-08-06"),
        ("requested_model", "gpt-4o"),
    ];
    assert_eq!(d("litellm_input_tokens_metric_total", &model), 42.0);
    assert_eq!(d("litellm_output_tokens_metric_total", &model), 104.0);
    assert_eq!(d("litellm_total_tokens_metric_total", &model), 146.0);
    let spend = d("litellm_spend_metric_total", &model);
    assert!(
        (spend - cost).abs() < 1e-9,
        "spend {spend} vs the answers' costs {cost}"
    );
    assert!(cost > 0.0);
    assert_eq!(d("litellm_request_total_latency_metric_count", &model), 4.0);
    assert_eq!(d("litellm_llm_api_latency_metric_count", &model), 3.0);
    assert_eq!(d("litellm_overhead_latency_metric_count", &model), 3.0);
    assert_eq!(
        d("litellm_llm_api_time_to_first_token_metric_count", &model),
        1.0
    );
    let total_latency_sum = d("litellm_request_total_latency_metric_sum", &model);
    assert!(total_latency_sum > 0.0 && total_latency_sum < 60.0);
    // Every bucket count is cumulative; +Inf holds all four.
    let mut inf = model.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(d("litellm_request_total_latency_metric_bucket", &inf), 4.0);
    let dep = [
        ("api_base", ""),
        ("api_provider", "openai"),
        ("litellm_model_name", "openai/gpt-4o-2024-08-06"),
        ("model_id", "primary"),
    ];
    let base = format!("{}/v1", primary.base());
    let dep: Vec<(&str, &str)> = dep
        .iter()
        .map(|(k, v)| {
            if *k == "api_base" {
                (*k, base.as_str())
            } else {
                (*k, *v)
            }
        })
        .collect();
    let mut dep_group = dep.clone();
    dep_group.push(("requested_model", "gpt-4o"));
    assert_eq!(
        d("litellm_deployment_total_requests_total", &dep_group),
        4.0
    );
    assert_eq!(
        d("litellm_deployment_success_responses_total", &dep_group),
        3.0
    );
    let mut failed = dep_group.clone();
    failed.push(("exception_class", "BadRequestError"));
    failed.push(("exception_status", "400"));
    assert_eq!(
        d("litellm_deployment_failure_responses_total", &failed),
        1.0
    );
    assert_eq!(
        metric(&after, "litellm_deployment_state", &dep),
        1.0,
        "last attempt failed"
    );
    assert_eq!(metric(&after, "litellm_in_flight_requests", &[]), 0.0);

    // The endpoint is open by default; with require_auth_for_metrics_endpoint it needs the master key.
    drop(proxy);
    let proxy = Proxy::start(
        &config(
            &primary,
            &backup,
            "litellm_settings:\n  callbacks: [\"prometheus\"]\n  require_auth_for_metrics_endpoint: true\n",
        ),
        &[
            ("OBS_UPSTREAM_KEY", "sk-upstream-obs-abcdef"),
            ("OBS_MASTER", MASTER),
        ],
    );
    assert_eq!(c.get(&proxy.url("/metrics"), &[]).await.status, 401);
    assert_eq!(
        c.get(&proxy.url("/metrics"), &[(ak, &av)]).await.status,
        200
    );
}

/// A marker that must never leave the gateway except towards the upstream,
/// checked in every place a secret could surface: answers, logs, traces,
/// metrics, callbacks, management API reads, spend rows and the database.
struct Canary {
    marker: &'static str,
    sources: Vec<(String, Vec<u8>)>,
}

impl Canary {
    fn add(&mut self, what: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.sources.push((what.into(), bytes.into()));
    }

    fn assert_absent(&self) {
        let needle = self.marker.as_bytes();
        for (what, bytes) in &self.sources {
            if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
                let from = at.saturating_sub(200);
                let to = (at + 200).min(bytes.len());
                panic!(
                    "the canary leaked into {what}: …{}…",
                    String::from_utf8_lossy(&bytes[from..to])
                );
            }
        }
    }
}

#[tokio::test]
async fn canary_never_leaks_into_logs_traces_metrics_callbacks_or_errors() {
    const MARK: &str = "CANARYq7zx";
    let master = format!("sk-{MARK}-master-00001111");
    let provider_key = format!("sk-{MARK}-provider-22223333");
    let primary = MockUpstream::start().await;
    let backup = MockUpstream::start().await;
    let otlp = collector().await;
    let hook = MockUpstream::start().await;
    hook.always(Reply::json(200, "{}"));
    let extra = r#"
litellm_settings:
  callbacks: ["otel", "prometheus", "generic_api"]
  json_logs: true
  fallbacks: [{"gpt-4o": ["backup"]}]
"#;
    let proxy = Proxy::start(
        &config(&primary, &backup, extra),
        &[
            ("OBS_UPSTREAM_KEY", &provider_key),
            ("OBS_MASTER", &master),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.base()),
            ("GENERIC_LOGGER_ENDPOINT", &format!("{}/hook", hook.base())),
            ("GENERIC_LOGGER_HEADERS", "x-hook-auth=hook-secret"),
            ("TOLLGATE_LOG", "info,tollgate=debug"),
        ],
    );
    let c = Client::new();
    let bearer = format!("Bearer {master}");
    let note = format!("note-{MARK}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("x-canary-note", note.as_str()),
    ];
    let mut canary = Canary {
        marker: MARK,
        sources: Vec::new(),
    };
    let mut answers = Vec::new();
    let mut records = 0;

    // Success.
    primary.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
    answers.push(
        c.post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("gpt-4o", false),
            &headers,
        )
        .await,
    );
    records += 1;
    // Stream.
    primary.push(Reply::sse(fixture("openai/chat_stream_text.sse.txt")));
    answers.push(
        c.post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("gpt-4o", true),
            &headers,
        )
        .await,
    );
    records += 1;
    // Upstream error that echoes the provider key (as OpenAI's 401 does).
    backup.push(Reply::json(
        401,
        format!(r#"{{"error":{{"message":"Incorrect API key provided: {provider_key}.","type":"invalid_request_error","code":"invalid_api_key"}}}}"#),
    ));
    answers.push(
        c.post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("backup", false),
            &headers,
        )
        .await,
    );
    records += 1;
    // Retry: 500 then 200.
    primary.push(Reply::json(
        500,
        format!(r#"{{"error":{{"message":"internal, key {provider_key}"}}}}"#),
    ));
    primary.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
    answers.push(
        c.post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("gpt-4o", false),
            &headers,
        )
        .await,
    );
    records += 1;
    // Fallback: the primary fails twice (with its retry), the backup answers.
    primary.push(Reply::json(503, r#"{"error":{"message":"overloaded"}}"#));
    primary.push(Reply::json(503, r#"{"error":{"message":"overloaded"}}"#));
    backup.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("gpt-4o", false),
            &headers,
        )
        .await;
    assert_eq!(a.status, 200, "fallback answered: {}", a.text());
    assert_eq!(a.headers["x-litellm-attempted-fallbacks"], "1");
    answers.push(a);
    records += 1;
    // A wrong key that contains the marker: refused, not echoed.
    let wrong = format!("Bearer sk-{MARK}-wrong-99998888");
    answers.push(
        c.post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("gpt-4o", false),
            &[("authorization", &wrong)],
        )
        .await,
    );
    assert_eq!(answers.last().unwrap().status, 401);
    // A virtual key that contains the marker (LiteLLM lets an admin choose
    // the key): stored hashed, shown only as `sk-...`, never echoed.
    let virtual_key = format!("sk-{MARK}-virtual-44445555");
    let made = c
        .post_json(
            &proxy.url("/key/generate"),
            &format!(r#"{{"key": "{virtual_key}", "key_alias": "canary-key"}}"#),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.text());
    primary.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let vk_auth = format!("Bearer {virtual_key}");
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("gpt-4o", false),
            &[("authorization", &vk_auth)],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    answers.push(a);
    records += 1;

    assert_eq!(answers[2].status, 401, "{}", answers[2].text());
    // The canary really was in use: the upstream got the provider key.
    assert!(
        primary.last().headers["authorization"]
            .to_str()
            .unwrap()
            .contains(MARK),
        "the provider key is the canary"
    );

    // Wait until every record reached the webhook and the collector.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let delivered: usize = hook
            .received()
            .iter()
            .map(|r| {
                serde_json::from_slice::<Vec<serde_json::Value>>(&r.body).map_or(0, |v| v.len())
            })
            .sum();
        let servers = spans(&otlp)
            .iter()
            .filter(|s| s.kind == SpanKind::Server as i32)
            .count();
        if delivered >= records && servers >= records {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delivered {delivered}, spans {servers} of {records}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hooked = hook.received();
    assert_eq!(hooked[0].headers["x-hook-auth"], "hook-secret");
    let first: Vec<serde_json::Value> = serde_json::from_slice(&hooked[0].body).unwrap();
    assert!(
        first[0]["metadata"]["user_api_key_display"]
            .as_str()
            .unwrap()
            .starts_with("sk-")
    );

    for (i, a) in answers.iter().enumerate() {
        canary.add(format!("answer {i} body"), a.body.to_vec());
        canary.add(format!("answer {i} headers"), format!("{:?}", a.headers));
    }
    for r in otlp.received() {
        canary.add("OTLP export", r.body.to_vec());
    }
    for r in &hooked {
        canary.add("webhook body", r.body.to_vec());
    }
    canary.add(
        "/metrics",
        c.get(&proxy.url("/metrics"), &[]).await.body.to_vec(),
    );
    // The management API's reads and the spend rows.
    for path in [
        "/key/list?return_full_object=true",
        "/key/list?key_alias=canary-key&return_full_object=true",
        "/spend/logs",
        "/global/spend/keys",
    ] {
        let a = c.get(&proxy.url(path), &[("authorization", &bearer)]).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text());
        canary.add(path.to_owned(), a.body.to_vec());
    }
    // Every byte the proxy wrote to its database, after a graceful shutdown
    // has flushed the spend rows.
    let mut proxy = proxy;
    proxy.signal("TERM");
    let exited = proxy.child.wait().unwrap();
    assert!(exited.success(), "graceful exit: {exited}");
    let dir = proxy.dir().expect("the proxy's directory").to_owned();
    let mut db_files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("tollgate.db") {
            db_files += 1;
            canary.add(
                format!("database file {name}"),
                std::fs::read(&path).unwrap(),
            );
        }
    }
    assert!(db_files > 0, "the SQLite database is in {}", dir.display());
    let logs = proxy.logs();
    assert!(
        logs.contains("\"target\":\"tollgate::request\""),
        "JSON request lines: {logs}"
    );
    canary.add("proxy logs", logs);
    canary.assert_absent();
}

#[tokio::test]
async fn a_stuck_webhook_never_slows_requests_and_its_queue_stays_bounded() {
    let primary = MockUpstream::start().await;
    let backup = MockUpstream::start().await;
    primary.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    // The webhook accepts connections and never answers.
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = blackhole.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let acc = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = blackhole.accept().await {
            acc.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(sock);
        }
    });
    let extra = "litellm_settings:\n  callbacks: [\"generic_api\", \"prometheus\"]\n  callback_queue_size: 5\n";
    let proxy = Proxy::start(
        &config(&primary, &backup, extra),
        &[
            ("OBS_UPSTREAM_KEY", "sk-upstream-obs-abcdef"),
            ("OBS_MASTER", MASTER),
            (
                "GENERIC_LOGGER_ENDPOINT",
                &format!("http://{hook_addr}/hook"),
            ),
        ],
    );
    let c = Client::new();
    let (ak, av) = auth();
    let started = Instant::now();
    let n = 40;
    for _ in 0..n {
        let a = c
            .post_json(
                &proxy.url("/v1/chat/completions"),
                &chat("gpt-4o", false),
                &[(ak, &av)],
            )
            .await;
        assert_eq!(a.status, 200);
    }
    let took = started.elapsed();
    // The webhook holds each POST for its 10 s timeout: waiting on it even
    // once would take longer than all the requests together.
    assert!(took < Duration::from_secs(8), "{n} requests took {took:?}");
    let m = scrape(&c, &proxy).await;
    let cb = [("callback", "generic_api")];
    let queued = metric(&m, "tollgate_callback_queued_total", &cb);
    let dropped = metric(&m, "tollgate_callback_dropped_total", &cb);
    let depth = metric(&m, "tollgate_callback_queue_depth", &cb);
    assert_eq!(
        queued + dropped,
        f64::from(n),
        "every record queued or counted as dropped"
    );
    assert!(depth <= 5.0, "bounded queue, depth {depth}");
    assert!(dropped >= f64::from(n) - 5.0 - 10.0, "dropped {dropped}");
    assert!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the webhook was called"
    );
}

#[tokio::test]
async fn langfuse_gets_otlp_at_its_otel_endpoint_with_basic_auth() {
    let primary = MockUpstream::start().await;
    let backup = MockUpstream::start().await;
    let langfuse = collector().await;
    let proxy = Proxy::start(
        &config(
            &primary,
            &backup,
            "litellm_settings:\n  success_callback: [\"langfuse\"]\n",
        ),
        &[
            ("OBS_UPSTREAM_KEY", "sk-upstream-obs-abcdef"),
            ("OBS_MASTER", MASTER),
            ("LANGFUSE_PUBLIC_KEY", "pk-lf-123"),
            ("LANGFUSE_SECRET_KEY", "sk-lf-456"),
            ("LANGFUSE_HOST", &langfuse.base()),
        ],
    );
    primary.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let (ak, av) = auth();
    let a = Client::new()
        .post_json(
            &proxy.url("/v1/chat/completions"),
            &chat("gpt-4o", false),
            &[(ak, &av)],
        )
        .await;
    assert_eq!(a.status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        if let Some(r) = langfuse.received().into_iter().next() {
            break r;
        }
        assert!(Instant::now() < deadline, "nothing reached Langfuse");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(got.path, "/api/public/otel/v1/traces");
    // base64("pk-lf-123:sk-lf-456")
    assert_eq!(
        got.headers["authorization"],
        "Basic cGstbGYtMTIzOnNrLWxmLTQ1Ng=="
    );
    assert_eq!(got.headers["content-type"], "application/x-protobuf");
    let req = ExportTraceServiceRequest::decode(got.body).unwrap();
    let service = req.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.clone());
    assert_eq!(service, Some(Any::StringValue("tollgate".into())));
}
