//! Trace context: W3C `traceparent` in, ids for the request and attempt
//! spans, `traceparent` out to the upstream.
//!
//! - The HTTP edge parses the caller's `traceparent` / `tracestate` into a
//!   [`TraceParent`] request extension (a library user may insert one too).
//! - [`ObserveLayer`](super::ObserveLayer) gives the request its span: the
//!   caller's trace id (or a fresh one) and a new span id, as a
//!   [`RequestTrace`] extension. The request's
//!   [`CompletionRecord`](super::CompletionRecord) carries these ids.
//! - The router opens one attempt span per upstream call, a child of the
//!   request span, and puts its context in an [`UpstreamTrace`] extension;
//!   HTTP leaves send it upstream as `traceparent` (with the caller's
//!   `tracestate`). Each attempt ends in an [`AttemptRecord`] handed to the
//!   observe layer's sink.
//!
//! Spans are built from the records after the fact, off the request path (see
//! the OTLP callback), so tracing costs a request two random ids and one small
//! allocation.
//!
//! ```
//! use tollgate::observe::trace::TraceParent;
//!
//! let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None).unwrap();
//! assert_eq!(tp.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
//! assert!(tp.sampled());
//! assert_eq!(tp.to_header(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
//! assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None).is_none());
//! ```

use super::{RecordError, RecordSink, RecordStatus};
use crate::pricing::Usd;
use crate::types::{ChatRequestBody, DeploymentInfo, Usage};
use http::HeaderMap;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

/// A W3C trace context (`traceparent`, plus `tracestate` when sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id (never zero).
    pub trace_id: u128,
    /// The parent span id (never zero).
    pub span_id: u64,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
    /// The vendor `tracestate`, passed on unchanged.
    pub tracestate: Option<Arc<str>>,
}

fn hex_u128(s: &str) -> Option<u128> {
    (s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| u128::from_str_radix(s, 16).ok())
        .flatten()
}

fn hex_u64(s: &str) -> Option<u64> {
    (s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

impl TraceParent {
    /// Parses a `traceparent` header value (and an optional `tracestate`).
    /// Invalid values give `None`, as the W3C spec asks (start a new trace).
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<TraceParent> {
        let v = traceparent.trim();
        let mut parts = v.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || flags.len() != 2 {
            return None;
        }
        let version = u8::from_str_radix(version, 16).ok()?;
        // Version 00 has exactly four fields; later versions may add more.
        if version == 0 && parts.next().is_some() {
            return None;
        }
        let trace_id = hex_u128(trace).filter(|t| *t != 0)?;
        let span_id = hex_u64(span).filter(|s| *s != 0)?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        let tracestate = tracestate
            .map(str::trim)
            .filter(|s| {
                !s.is_empty() && s.len() <= 512 && s.bytes().all(|b| (0x20..0x7f).contains(&b))
            })
            .map(Arc::from);
        Some(TraceParent {
            trace_id,
            span_id,
            flags,
            tracestate,
        })
    }

    /// The context in `traceparent` / `tracestate` headers, if valid.
    pub fn from_headers(headers: &HeaderMap) -> Option<TraceParent> {
        let tp = headers.get("traceparent")?.to_str().ok()?;
        let ts = headers.get("tracestate").and_then(|v| v.to_str().ok());
        TraceParent::parse(tp, ts)
    }

    /// Whether the caller sampled this trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The `traceparent` header value.
    pub fn to_header(&self) -> String {
        String::from_utf8_lossy(&self.header_bytes()).into_owned()
    }

    /// The `traceparent` header value, ready to send.
    pub fn header_value(&self) -> http::HeaderValue {
        http::HeaderValue::from_bytes(&self.header_bytes())
            .expect("lowercase hex digits and dashes are a valid header value")
    }

    /// `00-{trace:032x}-{span:016x}-{flags:02x}`, written digit by digit (a
    /// formatter costs ten times as much, on every upstream call).
    fn header_bytes(&self) -> [u8; 55] {
        use crate::util::hex_into;
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_into(&mut out[3..35], &self.trace_id.to_be_bytes());
        hex_into(&mut out[36..52], &self.span_id.to_be_bytes());
        hex_into(&mut out[53..55], &[self.flags]);
        out
    }
}

/// A non-zero random span id.
pub fn new_span_id() -> u64 {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return id;
        }
    }
}

/// A non-zero random trace id.
pub fn new_trace_id() -> u128 {
    loop {
        let id = fastrand::u128(..);
        if id != 0 {
            return id;
        }
    }
}

/// The ids of one span, as records carry them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SpanIds {
    /// Trace id.
    pub trace_id: u128,
    /// This span's id.
    pub span_id: u64,
    /// The parent span's id (`None`: a root span).
    pub parent_span_id: Option<u64>,
    /// Whether the trace is sampled.
    pub sampled: bool,
}

impl Serialize for SpanIds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("trace_id", &format!("{:032x}", self.trace_id))?;
        m.serialize_entry("span_id", &format!("{:016x}", self.span_id))?;
        m.serialize_entry(
            "parent_span_id",
            &self.parent_span_id.map(|p| format!("{p:016x}")),
        )?;
        m.end()
    }
}

/// The request span's context, put in the request's extensions by the
/// observe layer. Clones share the attempt counter.
#[derive(Clone)]
pub struct RequestTrace(pub(crate) Arc<TraceInner>);

pub(crate) struct TraceInner {
    pub(crate) ids: SpanIds,
    pub(crate) flags: u8,
    pub(crate) tracestate: Option<Arc<str>>,
    pub(crate) request_id: Arc<str>,
    attempts: AtomicU32,
    pub(crate) sink: Arc<dyn RecordSink>,
    /// The deployment of the latest attempt (for the record of a failure).
    pub(crate) last: arc_swap::ArcSwapOption<DeploymentInfo>,
}

impl std::fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTrace")
            .field("ids", &self.0.ids)
            .finish_non_exhaustive()
    }
}

impl RequestTrace {
    pub(crate) fn new(
        parent: Option<&TraceParent>,
        request_id: Arc<str>,
        sink: Arc<dyn RecordSink>,
    ) -> Self {
        let ids = SpanIds {
            trace_id: parent.map_or_else(new_trace_id, |p| p.trace_id),
            span_id: new_span_id(),
            parent_span_id: parent.map(|p| p.span_id),
            sampled: parent.is_none_or(TraceParent::sampled),
        };
        RequestTrace(Arc::new(TraceInner {
            ids,
            flags: parent.map_or(1, |p| p.flags),
            tracestate: parent.and_then(|p| p.tracestate.clone()),
            request_id,
            attempts: AtomicU32::new(0),
            sink,
            last: arc_swap::ArcSwapOption::empty(),
        }))
    }

    /// The request span's ids.
    pub fn ids(&self) -> SpanIds {
        self.0.ids
    }

    /// The request span as a parent for the upstream's (`traceparent`).
    pub(crate) fn trace_parent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.0.ids.trace_id,
            span_id: self.0.ids.span_id,
            flags: self.0.flags,
            tracestate: self.0.tracestate.clone(),
        }
    }

    /// Numbers the next attempt (1-based).
    pub(crate) fn next_attempt(&self) -> u32 {
        self.0.attempts.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The trace context to send upstream for this attempt (`traceparent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamTrace(pub TraceParent);

/// Request parameters worth recording (OTel GenAI `gen_ai.request.*`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RequestParams {
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `top_p`.
    pub top_p: Option<f64>,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u32>,
    /// `frequency_penalty`.
    pub frequency_penalty: Option<f64>,
    /// `presence_penalty`.
    pub presence_penalty: Option<f64>,
    /// `seed`.
    pub seed: Option<i64>,
    /// `n` (choices).
    pub n: Option<u32>,
}

impl RequestParams {
    /// The parameters of a chat request body.
    pub fn of(b: &ChatRequestBody) -> Self {
        RequestParams {
            temperature: b.temperature,
            top_p: b.top_p,
            max_tokens: b.max_completion_tokens.or(b.max_tokens),
            frequency_penalty: b.frequency_penalty,
            presence_penalty: b.presence_penalty,
            seed: b.seed,
            n: b.n,
        }
    }
}

/// One upstream attempt, reported when it ends (see the [module docs](self)).
#[derive(Clone, Debug, Serialize)]
pub struct AttemptRecord {
    /// The request's id.
    pub request_id: Arc<str>,
    /// The attempt span (its parent is the request span).
    pub ids: SpanIds,
    /// 1 for the first attempt of the request, counting across retries and fallbacks.
    pub attempt: u32,
    /// The deployment called.
    pub deployment: Arc<DeploymentInfo>,
    /// The model sent upstream (without the provider prefix).
    pub request_model: String,
    /// Whether this was a streamed call.
    pub stream: bool,
    /// Wall-clock start.
    #[serde(serialize_with = "super::ser_time")]
    pub start_time: SystemTime,
    /// From the call to its end (last chunk of a stream).
    #[serde(serialize_with = "super::ser_ms")]
    pub duration: Duration,
    /// Time to the first token of a stream.
    #[serde(serialize_with = "super::ser_opt_ms")]
    pub time_to_first_token: Option<Duration>,
    /// Usage reported for this attempt.
    pub usage: Option<Usage>,
    /// Cost of this attempt.
    pub cost: Option<Usd>,
    /// How the attempt ended.
    pub status: RecordStatus,
    /// The status it ended with.
    pub http_status: u16,
    /// The error, if it failed.
    pub error: Option<RecordError>,
    /// Finish reasons of the answer's choices.
    pub finish_reasons: Vec<String>,
    /// The model the upstream says answered.
    pub response_model: Option<String>,
    /// The upstream's response id.
    pub response_id: Option<String>,
    /// Request parameters.
    pub params: RequestParams,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_headers_are_the_w3c_form_and_parse_back() {
        let mut cases = vec![(1u128, 1u64, 0u8), (u128::MAX, u64::MAX, 0xff)];
        for _ in 0..200 {
            cases.push((new_trace_id(), new_span_id(), fastrand::u8(..)));
        }
        for (trace_id, span_id, flags) in cases {
            let tp = TraceParent {
                trace_id,
                span_id,
                flags,
                tracestate: None,
            };
            let want = format!("00-{trace_id:032x}-{span_id:016x}-{flags:02x}");
            assert_eq!(tp.to_header(), want);
            assert_eq!(tp.header_value(), want.as_str());
            assert_eq!(TraceParent::parse(&want, None), Some(tp));
        }
    }
}
