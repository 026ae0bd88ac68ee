//! One structured log line per request, safe by construction.
//!
//! [`LogSink`] writes a `tracing` event (target `tollgate::request`) with an
//! allow-list of fields: ids, model group, deployment, provider, the key's
//! display form and alias, team, user, status, latencies, tokens, cost,
//! attempts, the error class and its (already scrubbed) message. Nothing else
//! from the request — no headers, no body, no key hash — can reach the line,
//! because nothing else is ever passed to it. Error messages go through
//! [`crate::util::redact`] once more and are cut at 300 characters.
//!
//! With the proxy's `--json_logs` one line looks like this:
//!
//! ```text
//! {"timestamp":"2026-11-20T10:00:00.123456Z","level":"INFO","target":"tollgate::request","message":"request","request_id":"0193…","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","call_type":"chat","model":"gpt-4o","model_group":"gpt-4o","deployment":"gpt-4o-primary","provider":"openai","stream":false,"key":"sk-...abcd","key_alias":"ci","team_id":"ml","status":"success","http_status":200,"latency_ms":812.4,"overhead_ms":0.41,"prompt_tokens":12,"completion_tokens":30,"total_tokens":42,"cost_usd":0.000345,"attempts":1,"fallbacks":0,"cache_hit":false}
//! ```

use super::{AttemptRecord, CompletionRecord, RecordSink};

/// Writes one `tracing` event per record (target `tollgate::request`) and one
/// `debug` event per upstream attempt (target `tollgate::attempt`). See the
/// [module docs](self).
#[derive(Debug, Default)]
pub struct LogSink;

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// An error message fit for a log line: scrubbed and bounded.
fn safe_message(m: &str) -> String {
    let scrubbed = crate::util::redact(m, &[]);
    let mut out: String = scrubbed
        .chars()
        .take(300)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if scrubbed.chars().count() > 300 {
        out.push('…');
    }
    out
}

impl RecordSink for LogSink {
    fn record(&self, r: &CompletionRecord) {
        // The ids are formatted, and the message scrubbed, only for a line
        // that is written.
        if !tracing::enabled!(target: "tollgate::request", tracing::Level::INFO) {
            return;
        }
        let usage = r.usage.as_ref();
        let d = r.deployment.as_deref();
        let trace_id = format!("{:032x}", r.trace.trace_id);
        let span_id = format!("{:016x}", r.trace.span_id);
        let error_message = r.error.as_ref().map(|e| safe_message(&e.message));
        tracing::info!(
            target: "tollgate::request",
            request_id = %r.request_id,
            trace_id = %trace_id,
            span_id = %span_id,
            call_type = r.call_type,
            model = d.map(|d| &*d.model_group).unwrap_or("unrouted"),
            deployment = d.map(|d| &*d.id),
            provider = d.map(|d| &*d.provider),
            api_base = d.and_then(|d| d.api_base.as_deref()),
            stream = r.stream,
            key = r.identity.key_display.as_deref(),
            key_alias = r.identity.key_alias.as_deref(),
            team_id = r.identity.team_id.as_deref(),
            user_id = r.identity.user_id.as_deref(),
            status = ?r.status,
            http_status = r.http_status,
            latency_ms = ms(r.latency),
            overhead_ms = r.overhead.map(ms),
            upstream_ms = r.upstream_latency.map(ms),
            ttft_ms = r.time_to_first_token.map(ms),
            prompt_tokens = usage.map(|u| u.prompt_tokens),
            completion_tokens = usage.map(|u| u.completion_tokens),
            total_tokens = usage.map(|u| u.total_tokens),
            usage_estimated = r.usage_estimated,
            cost_usd = r.cost.map(crate::pricing::Usd::as_f64),
            attempts = r.attempts,
            fallbacks = r.fallbacks,
            cache_hit = r.cache_hit,
            finish_reason = r.finish_reason.as_deref(),
            error = r.error.as_ref().map(|e| e.class),
            error_message = error_message.as_deref(),
            "request"
        );
    }

    fn wants_attempts(&self) -> bool {
        tracing::enabled!(target: "tollgate::attempt", tracing::Level::DEBUG)
    }

    fn attempt(&self, a: &AttemptRecord) {
        tracing::debug!(
            target: "tollgate::attempt",
            request_id = %a.request_id,
            trace_id = %format!("{:032x}", a.ids.trace_id),
            span_id = %format!("{:016x}", a.ids.span_id),
            attempt = a.attempt,
            deployment = &*a.deployment.id,
            provider = &*a.deployment.provider,
            status = ?a.status,
            http_status = a.http_status,
            duration_ms = ms(a.duration),
            error = a.error.as_ref().map(|e| e.class),
            "attempt"
        );
    }
}

/// Longest base64 payload kept in exported content, in characters.
pub const MAX_PAYLOAD_CHARS: usize = 64;

/// Cuts base64 payloads (data URLs, `input_audio.data`, `file_data`) in a
/// JSON value down to a short prefix and their length, in place.
///
/// ```
/// let mut v = serde_json::json!([{"role":"user","content":[{"type":"image_url","image_url":{"url": format!("data:image/png;base64,{}", "A".repeat(5000))}}]}]);
/// tollgate::observe::log::truncate_payloads(&mut v);
/// let url = v[0]["content"][0]["image_url"]["url"].as_str().unwrap();
/// assert!(url.len() < 200, "{url}");
/// assert!(url.starts_with("data:image/png;base64,AAAA"));
/// ```
pub fn truncate_payloads(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            let payload_start = if s.starts_with("data:") {
                s.find(";base64,").map(|i| i + ";base64,".len())
            } else if s.len() > 1024
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n'))
            {
                Some(0)
            } else {
                None
            };
            if let Some(start) = payload_start {
                let payload = s.len() - start;
                if payload > MAX_PAYLOAD_CHARS {
                    let keep = start + MAX_PAYLOAD_CHARS;
                    let cut = format!("{}…[{payload} base64 chars]", &s[..keep]);
                    *s = cut;
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(truncate_payloads),
        Value::Object(o) => o.values_mut().for_each(truncate_payloads),
        _ => {}
    }
}
