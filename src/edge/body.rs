//! [`EdgeBody`]: the response body of the HTTP edge (JSON or SSE).

use crate::stream::ChatStream;
use crate::types::ChatChunk;
use bytes::{BufMut, Bytes, BytesMut};
use futures_core::Stream;
use http_body::{Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Bytes gathered from chunks that are ready at once before they are handed to
/// the connection (chunks that arrive apart are always sent apart).
const BATCH_BYTES: usize = 16 * 1024;

/// A response body: complete bytes, or a chat stream written as SSE.
pub struct EdgeBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Sse(SseBody),
}

impl std::fmt::Debug for EdgeBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Full(b) => f
                .debug_tuple("EdgeBody::Full")
                .field(&b.as_ref().map(Bytes::len))
                .finish(),
            Kind::Sse(_) => f.write_str("EdgeBody::Sse"),
        }
    }
}

impl EdgeBody {
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        EdgeBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        EdgeBody {
            kind: Kind::Full(None),
        }
    }

    /// A chat stream as OpenAI SSE: `data: <chunk>` events, then `data: [DONE]`,
    /// or an in-band `data: {"error": …}` event if the stream fails. The usage
    /// chunk is passed only when `include_usage`.
    pub fn sse(stream: ChatStream, include_usage: bool) -> Self {
        EdgeBody::sse_with_cost(stream, include_usage, None)
    }

    /// Like [`EdgeBody::sse`], and once the stream has ended writes its cost as
    /// an SSE comment (`: x-litellm-response-cost 0.00123`) before `[DONE]`.
    pub fn sse_with_cost(
        stream: ChatStream,
        include_usage: bool,
        cost: Option<crate::cost::StreamCost>,
    ) -> Self {
        EdgeBody {
            kind: Kind::Sse(SseBody {
                stream: Some(stream),
                encoder: Box::new(OpenAiSse {
                    include_usage,
                    cost,
                }),
                buf: BytesMut::new(),
            }),
        }
    }

    /// A chat stream written by a custom encoder (the Anthropic front door uses this).
    pub fn sse_with(stream: ChatStream, encoder: Box<dyn SseEncoder>) -> Self {
        EdgeBody {
            kind: Kind::Sse(SseBody {
                stream: Some(stream),
                encoder,
                buf: BytesMut::new(),
            }),
        }
    }
}

/// Writes a chat stream's items as SSE bytes.
pub trait SseEncoder: Send + 'static {
    /// Writes one chunk (or nothing).
    fn chunk(&mut self, chunk: ChatChunk, out: &mut BytesMut);
    /// Writes the terminal error event.
    fn error(&mut self, err: &crate::Error, out: &mut BytesMut);
    /// Writes the end of a successful stream.
    fn end(&mut self, out: &mut BytesMut);
}

struct OpenAiSse {
    include_usage: bool,
    cost: Option<crate::cost::StreamCost>,
}

impl SseEncoder for OpenAiSse {
    fn chunk(&mut self, mut chunk: ChatChunk, out: &mut BytesMut) {
        if !self.include_usage {
            if chunk.choices.is_empty() && chunk.usage.is_some() {
                return;
            }
            chunk.usage = None;
        }
        out.put_slice(b"data: ");
        if serde_json::to_writer(out.writer(), &chunk).is_err() {
            out.put_slice(b"{}");
        }
        out.put_slice(b"\n\n");
    }

    fn error(&mut self, err: &crate::Error, out: &mut BytesMut) {
        crate::sse::write_data(out, &err.to_json());
    }

    fn end(&mut self, out: &mut BytesMut) {
        if let Some(total) = self
            .cost
            .as_ref()
            .and_then(|c| c.get())
            .and_then(|c| c.total())
        {
            out.put_slice(format!(": x-litellm-response-cost {total}\n\n").as_bytes());
        }
        out.put_slice(crate::sse::DONE);
    }
}

struct SseBody {
    stream: Option<ChatStream>,
    encoder: Box<dyn SseEncoder>,
    buf: BytesMut,
}

impl SseBody {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame<Bytes>>> {
        while let Some(stream) = self.stream.as_mut() {
            match Pin::new(stream).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    self.encoder.chunk(chunk, &mut self.buf);
                    if self.buf.len() >= BATCH_BYTES {
                        break;
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    self.encoder.error(&err, &mut self.buf);
                    self.stream = None;
                }
                Poll::Ready(None) => {
                    self.encoder.end(&mut self.buf);
                    self.stream = None;
                }
                Poll::Pending => {
                    if self.buf.is_empty() {
                        return Poll::Pending;
                    }
                    break;
                }
            }
        }
        if self.buf.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Frame::data(self.buf.split().freeze())))
    }
}

impl http_body::Body for EdgeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Sse(s) => s.poll_frame(cx).map(|f| f.map(Ok)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Sse(s) => s.stream.is_none() && s.buf.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Sse(_) => SizeHint::default(),
        }
    }
}
