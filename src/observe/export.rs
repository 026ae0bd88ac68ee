//! Built-in callbacks that write records somewhere: a webhook
//! ([`WebhookCallback`], LiteLLM's `generic_api`) and a JSON-lines file
//! ([`JsonFileCallback`]). Both send the [`payload`] of each record: the
//! fields of LiteLLM's `StandardLoggingPayload` that tollgate knows, so a
//! consumer written for LiteLLM's logs reads them unchanged. The key hash is
//! never part of it, and messages only when the observe layer keeps them.

use super::callback::{Callback, CallbackError, CallbackFuture, Event};
use super::{CompletionRecord, RecordStatus};
use crate::transport::HttpClient;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The record in LiteLLM's `StandardLoggingPayload` shape (the fields
/// tollgate has; no key hash; `messages`/`response` only when captured).
pub fn payload(r: &CompletionRecord) -> Value {
    let d = r.deployment.as_deref();
    let usage = r.usage.as_ref();
    let end = r.start_time + r.latency;
    let content = r.content.as_deref();
    json!({
        "id": &*r.request_id,
        "trace_id": format!("{:032x}", r.trace.trace_id),
        "span_id": format!("{:016x}", r.trace.span_id),
        "call_type": if r.call_type == "chat" { "acompletion" } else { "aembedding" },
        "stream": r.stream,
        "status": match r.status { RecordStatus::Success => "success", _ => "failure" },
        "http_status": r.http_status,
        "response_cost": r.cost.map(crate::pricing::Usd::as_f64),
        "usage_estimated": r.usage_estimated,
        "total_tokens": usage.map_or(0, |u| u.total_tokens),
        "prompt_tokens": usage.map_or(0, |u| u.prompt_tokens),
        "completion_tokens": usage.map_or(0, |u| u.completion_tokens),
        "cached_tokens": usage.map_or(0, crate::types::Usage::cached_tokens),
        "startTime": epoch_secs(r.start_time),
        "endTime": epoch_secs(end),
        "completionStartTime": r.time_to_first_token.map(|t| epoch_secs(r.start_time + t)),
        "response_time": r.latency.as_secs_f64(),
        "model": d.map(|d| &*d.model).unwrap_or(&r.model),
        "requested_model": &r.model,
        "model_id": d.map(|d| &*d.id),
        "model_group": d.map(|d| &*d.model_group),
        "custom_llm_provider": d.map(|d| &*d.provider),
        "api_base": d.and_then(|d| d.api_base.as_deref()),
        "cache_hit": r.cache_hit,
        "request_tags": &r.tags,
        "end_user": r.end_user.as_deref(),
        "metadata": {
            "user_api_key_alias": r.identity.key_alias.as_deref(),
            "user_api_key_team_id": r.identity.team_id.as_deref(),
            "user_api_key_user_id": r.identity.user_id.as_deref(),
            "user_api_key_display": r.identity.key_display.as_deref(),
            "attempts": r.attempts,
            "fallbacks": r.fallbacks,
            "overhead_ms": r.overhead.map(|o| o.as_secs_f64() * 1000.0),
            "upstream_latency_ms": r.upstream_latency.map(|o| o.as_secs_f64() * 1000.0),
        },
        "model_parameters": &r.params,
        "finish_reason": r.finish_reason.as_deref(),
        "error_str": r.error.as_ref().map(|e| e.message.as_str()),
        "error_information": r.error.as_ref().map(|e| json!({
            "error_class": e.class,
            "error_code": r.http_status,
            "llm_provider": e.provider,
        })),
        "messages": content.map(|c| &c.input),
        "response": content.and_then(|c| c.output.as_ref()),
    })
}

fn records(batch: &[Event]) -> impl Iterator<Item = &CompletionRecord> {
    batch.iter().filter_map(|e| match e {
        Event::Record(r) => Some(&**r),
        Event::Attempt(_) => None,
    })
}

/// How a webhook batch is sent (LiteLLM's `log_format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One POST per batch with a JSON array (default).
    JsonArray,
    /// One POST per batch, one JSON object per line.
    Ndjson,
    /// One POST per record.
    Single,
}

impl LogFormat {
    /// Parses `json_array`, `ndjson` or `single`.
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "json_array" => Some(LogFormat::JsonArray),
            "ndjson" => Some(LogFormat::Ndjson),
            "single" => Some(LogFormat::Single),
            _ => None,
        }
    }
}

/// POSTs records as JSON to an endpoint, with retries (LiteLLM's `generic_api`).
///
/// Each POST is tried up to `attempts` times, with exponential backoff from
/// 250 ms, and each try is bounded by `timeout`. Anything but a 2xx is a
/// failure. The headers are marked sensitive (never logged).
pub struct WebhookCallback {
    name: String,
    endpoint: http::Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    client: HttpClient,
    format: LogFormat,
    /// Tries per POST.
    pub attempts: u32,
    /// Time limit of one try.
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookCallback")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl WebhookCallback {
    /// A webhook named `name` posting to `endpoint` with `headers`.
    pub fn new(
        name: &str,
        endpoint: &str,
        headers: &[(String, String)],
        client: HttpClient,
    ) -> Result<Self, String> {
        let endpoint: http::Uri = endpoint
            .parse()
            .map_err(|_| format!("`{name}`: the endpoint is not a valid URL"))?;
        if !matches!(endpoint.scheme_str(), Some("http" | "https")) {
            return Err(format!("`{name}`: the endpoint must be an http(s) URL"));
        }
        let mut hs = Vec::new();
        for (k, v) in headers {
            let n = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("`{name}`: `{k}` is not a valid header name"))?;
            let mut v = HeaderValue::from_str(v)
                .map_err(|_| format!("`{name}`: the value of header `{k}` is not valid"))?;
            v.set_sensitive(true);
            hs.push((n, v));
        }
        Ok(WebhookCallback {
            name: name.to_owned(),
            endpoint,
            headers: hs,
            client,
            format: LogFormat::JsonArray,
            attempts: 3,
            timeout: Duration::from_secs(10),
        })
    }

    /// Sets the batch format.
    pub fn format(mut self, format: LogFormat) -> Self {
        self.format = format;
        self
    }

    /// Parses LiteLLM's `GENERIC_LOGGER_HEADERS` (`k1=v1,k2=v2`).
    pub fn parse_headers(s: &str) -> Vec<(String, String)> {
        s.split(',')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                let k = k.trim();
                (!k.is_empty()).then(|| (k.to_owned(), v.trim().to_owned()))
            })
            .collect()
    }

    async fn post(&self, body: Bytes, content_type: &'static str) -> Result<(), CallbackError> {
        let mut last = String::new();
        for attempt in 0..self.attempts.max(1) {
            if attempt > 0 {
                let wait = Duration::from_millis(250u64 << (attempt - 1).min(6));
                tokio::time::sleep(wait).await;
            }
            let mut req = http::Request::post(self.endpoint.clone())
                .header(http::header::CONTENT_TYPE, content_type)
                .body(body.clone())
                .map_err(|_| CallbackError("could not build the request".into()))?;
            for (k, v) in &self.headers {
                req.headers_mut().insert(k.clone(), v.clone());
            }
            match tokio::time::timeout(self.timeout, self.client.send(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => return Ok(()),
                Ok(Ok(resp)) => {
                    last = format!("the endpoint answered {}", resp.status().as_u16());
                    if resp.status().is_client_error()
                        && resp.status() != http::StatusCode::TOO_MANY_REQUESTS
                        && resp.status() != http::StatusCode::REQUEST_TIMEOUT
                    {
                        break;
                    }
                }
                Ok(Err(e)) => last = e.message().to_owned(),
                Err(_) => last = "the endpoint did not answer in time".into(),
            }
        }
        Err(CallbackError(format!("{}: {last}", self.name)))
    }
}

impl Callback for WebhookCallback {
    fn name(&self) -> &str {
        &self.name
    }

    fn handle<'a>(&'a self, batch: &'a [Event]) -> CallbackFuture<'a> {
        Box::pin(async move {
            let items: Vec<Value> = records(batch).map(payload).collect();
            if items.is_empty() {
                return Ok(());
            }
            match self.format {
                LogFormat::JsonArray => {
                    let body = serde_json::to_vec(&items).unwrap_or_default();
                    self.post(body.into(), "application/json").await
                }
                LogFormat::Ndjson => {
                    let mut body = Vec::new();
                    for item in &items {
                        let _ = serde_json::to_writer(&mut body, item);
                        body.push(b'\n');
                    }
                    self.post(body.into(), "application/x-ndjson").await
                }
                LogFormat::Single => {
                    let mut result = Ok(());
                    for item in &items {
                        let body = serde_json::to_vec(item).unwrap_or_default();
                        if let Err(e) = self.post(body.into(), "application/json").await {
                            result = Err(e);
                        }
                    }
                    result
                }
            }
        })
    }
}

/// Appends one JSON line per record to a file.
#[derive(Debug)]
pub struct JsonFileCallback {
    path: PathBuf,
}

impl JsonFileCallback {
    /// Appends to `path` (created if missing).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonFileCallback { path: path.into() }
    }
}

impl Callback for JsonFileCallback {
    fn name(&self) -> &str {
        "json_file"
    }

    fn handle<'a>(&'a self, batch: &'a [Event]) -> CallbackFuture<'a> {
        Box::pin(async move {
            let mut buf = Vec::new();
            for r in records(batch) {
                let _ = serde_json::to_writer(&mut buf, &payload(r));
                buf.push(b'\n');
            }
            if buf.is_empty() {
                return Ok(());
            }
            let path = self.path.clone();
            tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                f.write_all(&buf)
            })
            .await
            .map_err(|_| CallbackError("the file writer stopped".into()))?
            .map_err(|e| CallbackError(format!("json_file: {e}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::RecordSink;
    use crate::observe::callback::{CallbackSet, Filter};
    use std::sync::Arc;

    #[tokio::test]
    async fn json_lines_file_gets_one_line_per_record_without_the_key_hash() {
        let dir = std::env::temp_dir().join(format!("tollgate-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("records.jsonl");
        let _ = std::fs::remove_file(&path);
        let (queue, runner) = CallbackSet::new()
            .callback(Arc::new(JsonFileCallback::new(&path)), Filter::All)
            .build();
        let mut r = crate::observe::callback::tests::record(RecordStatus::Success);
        let mut id = crate::auth::Identity::admin("sk-secret-key-1234567890");
        id.key_hash = Some(Arc::from("hash-never-exported"));
        r.identity = id;
        queue.record(&r);
        queue.record(&r);
        runner.spawn().shutdown(Duration::from_secs(5)).await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        let v: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["status"], "success");
        assert_eq!(v["metadata"]["user_api_key_display"], "sk-...7890");
        assert!(!text.contains("hash-never-exported"));
        assert!(!text.contains("sk-secret-key"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn generic_logger_headers() {
        assert_eq!(
            WebhookCallback::parse_headers("Authorization=Bearer x, X-Team = a=b ,bad"),
            vec![
                ("Authorization".to_owned(), "Bearer x".to_owned()),
                ("X-Team".to_owned(), "a=b".to_owned())
            ]
        );
    }
}
