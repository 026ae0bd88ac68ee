//! [`TimeoutLayer`]: every deadline of a call, each with its own error.
//!
//! - **total** (LiteLLM's `timeout` / `request_timeout`): the whole call →
//!   `Timeout(Total)`. For streams the configured total is not applied — a
//!   long answer may legitimately stream for many minutes, and streams are
//!   bounded by the first-byte and idle deadlines instead — but a request's
//!   own deadline (below) bounds the whole stream.
//! - **first byte** (`stream_timeout`): until a stream's response head →
//!   `Timeout(FirstByte)`.
//! - **idle**: the longest silence between two chunks of a stream →
//!   `Timeout(Idle)`.
//! - **connect** is the HTTP client's (`transport::HttpClientConfig`).
//!
//! Each is set on the layer (globally or per deployment) and tightened per
//! request: a request's `timeout` field and its [`Deadline`] (from the
//! `x-litellm-timeout` header) cap the total. The layer also puts the
//! effective deadline in the request's extensions, so inner layers and the
//! leaf never wait past it. A silent upstream can never hold a request or a
//! connection forever. Timeouts are 408 errors, retried only as the retry
//! policy allows.
//!
//! Semantics: dropping the future or the stream stops every timer; a stream's
//! timers run only while it is being polled for its next chunk (the idle timer
//! restarts after every chunk).
//!
//! ```
//! use std::time::Duration;
//! use tollgate::timeout::{TimeoutLayer, Timeouts};
//!
//! let layer = TimeoutLayer::new(Timeouts {
//!     total: Some(Duration::from_secs(120)),
//!     first_byte: Some(Duration::from_secs(20)),
//!     idle: Some(Duration::from_secs(30)),
//! });
//! # drop(layer);
//! ```

use crate::context::Deadline;
use crate::error::{Error, TimeoutKind};
use crate::stream::{ChatStream, ChunkResult};
use crate::types::{ChatBody, ChatRequest, ChatResponse};
use futures_core::Stream;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// The deadlines of a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole call.
    pub total: Option<Duration>,
    /// Until the response head of a stream.
    pub first_byte: Option<Duration>,
    /// Between two chunks of a stream.
    pub idle: Option<Duration>,
}

/// Enforces [`Timeouts`]. See the [module docs](self).
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    timeouts: Timeouts,
}

impl TimeoutLayer {
    /// A layer with `timeouts`.
    pub fn new(timeouts: Timeouts) -> Self {
        TimeoutLayer { timeouts }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            timeouts: self.timeouts,
        }
    }
}

/// The service made by [`TimeoutLayer`].
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    timeouts: Timeouts,
}

impl<S> Service<ChatRequest> for Timeout<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: ChatRequest) -> Self::Future {
        let now = Instant::now();
        let stream = req.is_stream();
        let mut total = if stream {
            None
        } else {
            self.timeouts.total.map(|t| now + t)
        };
        if let Some(secs) = req.timeout.filter(|s| s.is_finite() && *s > 0.0) {
            let t = now + Duration::from_secs_f64(secs.min(86_400.0));
            total = Some(total.map_or(t, |x| x.min(t)));
        }
        if let Some(Deadline(d)) = req.extensions.get::<Deadline>() {
            total = Some(total.map_or(*d, |x| x.min(*d)));
        }
        if let Some(t) = total {
            req.extensions.insert(Deadline(t));
        }
        let head = match (stream, self.timeouts.first_byte) {
            (true, Some(fb)) => {
                let t = now + fb;
                Some(match total {
                    Some(tot) if tot <= t => (tot, TimeoutKind::Total),
                    _ => (t, TimeoutKind::FirstByte),
                })
            }
            _ => total.map(|t| (t, TimeoutKind::Total)),
        };
        ResponseFuture {
            inner: self.inner.call(req),
            sleep: head.map(|(t, _)| tokio::time::sleep_until(t)),
            kind: head.map_or(TimeoutKind::Total, |(_, k)| k),
            total,
            idle: self.timeouts.idle,
        }
    }
}

pin_project! {
    /// Future of [`Timeout`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        kind: TimeoutKind,
        total: Option<Instant>,
        idle: Option<Duration>,
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<ChatResponse, Error>>,
{
    type Output = Result<ChatResponse, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            let mut resp = match result {
                Ok(r) => r,
                Err(e) => return Poll::Ready(Err(e)),
            };
            if let ChatBody::Stream(s) = &mut resp.body
                && (this.total.is_some() || this.idle.is_some())
            {
                let inner = std::mem::replace(s, ChatStream::from_chunks(Vec::new()));
                *s = ChatStream::new(Deadlines {
                    inner,
                    total: this.total.map(|t| Box::pin(tokio::time::sleep_until(t))),
                    idle: this.idle.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
                    done: false,
                });
            }
            return Poll::Ready(Ok(resp));
        }
        if let Some(sleep) = this.sleep.as_pin_mut()
            && sleep.poll(cx).is_ready()
        {
            return Poll::Ready(Err(Error::timeout(*this.kind)));
        }
        Poll::Pending
    }
}

/// A stream with a total deadline and an idle timer.
struct Deadlines {
    inner: ChatStream,
    total: Option<Pin<Box<Sleep>>>,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    done: bool,
}

impl Stream for Deadlines {
    type Item = ChunkResult;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ChunkResult>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(item)) => {
                if let Some((d, sleep)) = this.idle.as_mut() {
                    sleep.as_mut().reset(Instant::now() + *d);
                }
                if item.is_err() {
                    this.done = true;
                }
                return Poll::Ready(Some(item));
            }
            Poll::Ready(None) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if let Some(total) = this.total.as_mut()
            && total.as_mut().poll(cx).is_ready()
        {
            this.done = true;
            return Poll::Ready(Some(Err(Error::timeout(TimeoutKind::Total))));
        }
        if let Some((_, idle)) = this.idle.as_mut()
            && idle.as_mut().poll(cx).is_ready()
        {
            this.done = true;
            return Poll::Ready(Some(Err(Error::timeout(TimeoutKind::Idle))));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::provider::{Mock, MockConfig};
    use futures_util::StreamExt;
    use tower::ServiceExt;

    fn mock(delay_ms: u64, chunk_ms: u64) -> Mock {
        let mut cfg = MockConfig::new("mock/m");
        cfg.delay = Duration::from_millis(delay_ms);
        cfg.chunk_delay = Duration::from_millis(chunk_ms);
        Mock::new(cfg)
    }

    fn req(stream: bool) -> ChatRequest {
        ChatRequest::from_json(
            format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn layer(total: u64, first: u64, idle: u64) -> TimeoutLayer {
        TimeoutLayer::new(Timeouts {
            total: Some(Duration::from_millis(total)),
            first_byte: Some(Duration::from_millis(first)),
            idle: Some(Duration::from_millis(idle)),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn total_timeout_on_a_slow_answer() {
        let started = Instant::now();
        let err = layer(1000, 500, 500)
            .layer(mock(5000, 0))
            .oneshot(req(false))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout(TimeoutKind::Total));
        assert_eq!(err.status().as_u16(), 408);
        assert_eq!(started.elapsed(), Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn first_byte_timeout_on_a_slow_stream_start() {
        let err = layer(10_000, 500, 500)
            .layer(mock(5000, 0))
            .oneshot(req(true))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout(TimeoutKind::FirstByte));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_between_chunks() {
        let resp = layer(60_000, 500, 200)
            .layer(mock(0, 1000))
            .oneshot(req(true))
            .await
            .unwrap();
        let mut s = resp.into_stream().unwrap();
        assert!(
            s.next().await.unwrap().is_ok(),
            "the first chunk comes at once"
        );
        let err = s.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout(TimeoutKind::Idle));
        assert!(s.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_deadline_covers_the_whole_stream() {
        let mut r = req(true);
        r.body_mut().timeout = Some(2.5);
        let resp = layer(60_000, 500, 2000)
            .layer(mock(0, 1000))
            .oneshot(r)
            .await
            .unwrap();
        let mut s = resp.into_stream().unwrap();
        let mut chunks = 0;
        let err = loop {
            match s.next().await.unwrap() {
                Ok(_) => chunks += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(chunks, 3, "chunks at 0, 1 s and 2 s");
        assert_eq!(err.kind(), ErrorKind::Timeout(TimeoutKind::Total));
        // The configured total alone does not cut a stream that keeps flowing.
        let resp = layer(1500, 500, 2000)
            .layer(mock(0, 1000))
            .oneshot(req(true))
            .await
            .unwrap();
        let c = resp
            .into_stream()
            .unwrap()
            .collect_completion()
            .await
            .unwrap();
        assert!(c.text().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_can_only_tighten_the_deadline_and_it_is_passed_inward() {
        let mut r = req(false);
        r.body_mut().timeout = Some(0.3);
        let err = layer(10_000, 500, 500)
            .layer(mock(1000, 0))
            .oneshot(r)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout(TimeoutKind::Total));
        let mut r = req(false);
        r.body_mut().timeout = Some(100.0);
        let err = layer(300, 500, 500)
            .layer(mock(1000, 0))
            .oneshot(r)
            .await
            .unwrap_err();
        assert!(err.is_timeout());

        #[derive(Clone)]
        struct Peek;
        impl Service<ChatRequest> for Peek {
            type Response = ChatResponse;
            type Error = Error;
            type Future = std::future::Ready<Result<ChatResponse, Error>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, req: ChatRequest) -> Self::Future {
                let d = req.extensions.get::<Deadline>().unwrap().remaining();
                std::future::ready(Err(Error::internal(format!("{}", d.as_millis()))))
            }
        }
        let err = layer(700, 500, 500)
            .layer(Peek)
            .oneshot(req(false))
            .await
            .unwrap_err();
        assert_eq!(err.message(), "700");
    }
}
