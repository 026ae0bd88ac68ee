//! One upstream attempt, as the router sees it: its span, its record and its
//! deployment metrics.

use super::metrics::DeploymentMetrics;
use super::trace::{
    AttemptRecord, RequestParams, RequestTrace, SpanIds, TraceParent, UpstreamTrace, new_span_id,
};
use super::{RecordError, RecordStatus};
use crate::cost::{CallCost, StreamCost};
use crate::error::Error;
use crate::provider::ProviderKind;
use crate::stream::StreamEnd;
use crate::types::{ChatBody, ChatChunk, ChatRequest, ChatResponse, DeploymentInfo, Usage};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::time::Instant;

/// Tracing part of an attempt (only when the request has a trace).
struct Traced {
    trace: RequestTrace,
    ids: SpanIds,
    attempt: u32,
    request_model: String,
    params: RequestParams,
}

/// An attempt in progress.
pub(crate) struct Attempt {
    info: Arc<DeploymentInfo>,
    started: Instant,
    start_time: SystemTime,
    stream: bool,
    traced: Option<Box<Traced>>,
}

impl Attempt {
    /// Starts an attempt of `req` on the deployment `info`: numbers it, opens
    /// its span and tells the leaf the `traceparent` to send.
    pub(crate) fn begin(req: &mut ChatRequest, info: &Arc<DeploymentInfo>) -> Attempt {
        let trace = req.extensions.get::<RequestTrace>();
        if let Some(t) = trace {
            t.0.last.store(Some(info.clone()));
        }
        let wanted = trace.filter(|t| t.0.sink.wants_attempts()).cloned();
        let traced = wanted.map(|trace| {
            let parent = trace.ids();
            let ids = SpanIds {
                trace_id: parent.trace_id,
                span_id: new_span_id(),
                parent_span_id: Some(parent.span_id),
                sampled: parent.sampled,
            };
            req.extensions.insert(UpstreamTrace(TraceParent {
                trace_id: ids.trace_id,
                span_id: ids.span_id,
                flags: trace.0.flags,
                tracestate: trace.0.tracestate.clone(),
            }));
            let upstream = req
                .extensions
                .get::<crate::context::UpstreamModel>()
                .map(|m| m.model().to_owned())
                .unwrap_or_else(|| ProviderKind::parse(&info.model).1.to_owned());
            Box::new(Traced {
                attempt: trace.next_attempt(),
                trace,
                ids,
                request_model: upstream,
                params: RequestParams::of(req.body()),
            })
        });
        Attempt {
            info: info.clone(),
            started: Instant::now(),
            start_time: SystemTime::now(),
            stream: req.is_stream(),
            traced,
        }
    }

    fn record(&self, status: RecordStatus, http_status: u16) -> Option<AttemptRecord> {
        let t = self.traced.as_ref()?;
        Some(AttemptRecord {
            request_id: t.trace.0.request_id.clone(),
            ids: t.ids,
            attempt: t.attempt,
            deployment: self.info.clone(),
            request_model: t.request_model.clone(),
            stream: self.stream,
            start_time: self.start_time,
            duration: self.started.elapsed(),
            time_to_first_token: None,
            usage: None,
            cost: None,
            status,
            http_status,
            error: None,
            finish_reasons: Vec::new(),
            response_model: None,
            response_id: None,
            params: t.params.clone(),
        })
    }

    fn emit(&self, rec: Option<AttemptRecord>) {
        if let (Some(t), Some(rec)) = (&self.traced, rec) {
            t.trace.0.sink.attempt(&rec);
        }
    }

    /// The attempt failed before an answer.
    pub(crate) fn failed(self, err: &Error, metrics: &DeploymentMetrics) {
        metrics.failure(&self.info, err);
        let mut rec = self.record(RecordStatus::Failure, err.status().as_u16());
        if let Some(r) = &mut rec {
            r.error = Some(RecordError::of(err));
        }
        self.emit(rec);
    }

    /// The attempt answered with a complete response (called before the
    /// router renames the model).
    pub(crate) fn completed(self, resp: &ChatResponse, metrics: &DeploymentMetrics) {
        let ChatBody::Complete(c) = &resp.body else {
            return;
        };
        let cost = resp.meta.extensions.get::<CallCost>();
        let usage = cost.map(|c| c.usage.clone()).or_else(|| c.usage.clone());
        metrics.success(
            &self.info,
            self.started.elapsed(),
            usage.as_ref().map(|u| u.completion_tokens),
        );
        let mut rec = self.record(RecordStatus::Success, 200);
        if let Some(r) = &mut rec {
            r.usage = usage;
            r.cost = cost.and_then(CallCost::total);
            r.finish_reasons = c
                .choices
                .iter()
                .filter_map(|ch| ch.finish_reason.as_ref())
                .map(|f| f.as_str().to_owned())
                .collect();
            r.response_model = Some(c.model.clone()).filter(|m| !m.is_empty());
            r.response_id = Some(c.id.clone()).filter(|m| !m.is_empty());
        }
        self.emit(rec);
    }

    /// A streamed attempt: watch its chunks with the returned watcher.
    pub(crate) fn stream(self, resp: &ChatResponse) -> StreamAttempt {
        StreamAttempt {
            priced: resp.meta.extensions.get::<StreamCost>().cloned(),
            attempt: self,
            ttft: None,
            usage: None,
            finish: Vec::new(),
            model: None,
            id: None,
        }
    }
}

/// The stream of an attempt, watched to its end.
pub(crate) struct StreamAttempt {
    attempt: Attempt,
    priced: Option<StreamCost>,
    ttft: Option<std::time::Duration>,
    usage: Option<Usage>,
    finish: Vec<String>,
    model: Option<String>,
    id: Option<String>,
}

impl StreamAttempt {
    /// Sees one chunk (before the router renames its model).
    pub(crate) fn on_chunk(&mut self, chunk: &ChatChunk, first_token: bool) {
        if first_token && self.ttft.is_none() {
            self.ttft = Some(self.attempt.started.elapsed());
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.clone());
        }
        if self.attempt.traced.is_some() {
            if self.model.is_none() && !chunk.model.is_empty() {
                self.model = Some(chunk.model.clone());
            }
            if self.id.is_none() && !chunk.id.is_empty() {
                self.id = Some(chunk.id.clone());
            }
            for c in &chunk.choices {
                if let Some(f) = &c.finish_reason {
                    self.finish.push(f.as_str().to_owned());
                }
            }
        }
    }

    /// The stream ended.
    pub(crate) fn on_end(self, end: &StreamEnd<'_>, metrics: &DeploymentMetrics) {
        let StreamAttempt {
            attempt,
            priced,
            ttft,
            usage,
            finish,
            model,
            id,
        } = self;
        let priced = priced.as_ref().and_then(StreamCost::get);
        let usage = priced.map(|c| c.usage.clone()).or(usage);
        let (status, http) = match end {
            StreamEnd::Completed => {
                metrics.success(
                    &attempt.info,
                    attempt.started.elapsed(),
                    usage.as_ref().map(|u| u.completion_tokens),
                );
                (RecordStatus::Success, 200)
            }
            StreamEnd::Failed(e) => {
                metrics.failure(&attempt.info, e);
                (RecordStatus::Failure, e.status().as_u16())
            }
            StreamEnd::Dropped => (RecordStatus::Cancelled, 499),
        };
        let mut rec = attempt.record(status, http);
        if let Some(r) = &mut rec {
            r.time_to_first_token = ttft;
            r.usage = usage;
            r.cost = priced.and_then(CallCost::total);
            r.finish_reasons = finish;
            r.response_model = model;
            r.response_id = id;
            if let StreamEnd::Failed(e) = end {
                r.error = Some(RecordError::of(e));
            }
        }
        attempt.emit(rec);
    }
}
