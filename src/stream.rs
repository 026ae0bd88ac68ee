//! [`ChatStream`]: a stream of [`ChatChunk`]s with end-of-stream and drop hooks.
//!
//! Accounting must happen however a stream ends: at its natural end, on an
//! upstream error, or when the client goes away and the stream is dropped
//! half-read. Layers attach a [`StreamObserver`] with [`ChatStream::observe`];
//! its [`on_end`](StreamObserver::on_end) runs **exactly once** on every one
//! of those paths.
//!
//! Ordering: observers attached by inner layers finish before observers
//! attached by outer layers, on every path (the drop path included: an
//! observed stream drops the stream it wraps before running its own `on_end`).
//! So a cost layer deep in the stack has priced a cut stream before the
//! outermost layer writes the record.
//!
//! ```
//! use tollgate::stream::{ChatStream, StreamEnd, StreamObserver};
//! use tollgate::types::{ChatChunk, ChunkChoice, Delta};
//! use std::sync::{Arc, Mutex};
//!
//! struct CountChunks(Arc<Mutex<Vec<String>>>, usize);
//! impl StreamObserver for CountChunks {
//!     fn on_chunk(&mut self, _: &mut ChatChunk) { self.1 += 1; }
//!     fn on_end(self, end: StreamEnd<'_>) {
//!         self.0.lock().unwrap().push(format!("{} chunks, {end:?}", self.1));
//!     }
//! }
//!
//! let log = Arc::new(Mutex::new(Vec::new()));
//! let chunk = ChatChunk::new("id", "m", 0).with_choice(ChunkChoice::new(0, Delta::text("hi")));
//! let stream = ChatStream::from_chunks(vec![chunk.clone(), chunk])
//!     .observe(CountChunks(log.clone(), 0));
//! drop(stream); // the client went away before reading anything
//! assert_eq!(log.lock().unwrap()[0], "0 chunks, Dropped");
//! ```

use crate::error::Error;
use crate::types::{
    ChatChunk, ChatCompletion, Choice, FinishReason, ResponseMessage, ToolCall, Usage,
};
use futures_core::Stream;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

/// One item of a chat stream.
pub type ChunkResult = Result<ChatChunk, Error>;

/// A stream of chat chunks. After an `Err` item the stream ends.
pub struct ChatStream {
    inner: Pin<Box<dyn Stream<Item = ChunkResult> + Send>>,
}

impl fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChatStream")
    }
}

impl ChatStream {
    /// Wraps any stream of chunk results.
    pub fn new<S>(stream: S) -> Self
    where
        S: Stream<Item = ChunkResult> + Send + 'static,
    {
        ChatStream {
            inner: Box::pin(stream),
        }
    }

    /// A stream that yields the given chunks, then ends.
    pub fn from_chunks(chunks: Vec<ChatChunk>) -> Self {
        ChatStream::new(futures_util::stream::iter(chunks.into_iter().map(Ok)))
    }

    /// A stream that yields the given results, then ends.
    pub fn from_results(items: Vec<ChunkResult>) -> Self {
        ChatStream::new(futures_util::stream::iter(items))
    }

    /// Attaches an observer. See the [module docs](self) for the guarantees.
    pub fn observe<O: StreamObserver>(self, observer: O) -> ChatStream {
        ChatStream::new(Observed {
            inner: Some(self),
            observer: Some(observer),
        })
    }

    /// Applies `f` to every chunk as it passes.
    pub fn map_chunks<F>(self, f: F) -> ChatStream
    where
        F: FnMut(&mut ChatChunk) + Send + 'static,
    {
        struct MapChunks<F>(F);
        impl<F: FnMut(&mut ChatChunk) + Send + 'static> StreamObserver for MapChunks<F> {
            fn on_chunk(&mut self, chunk: &mut ChatChunk) {
                (self.0)(chunk)
            }
            fn on_end(self, _: StreamEnd<'_>) {}
        }
        self.observe(MapChunks(f))
    }

    /// Reads the whole stream and assembles the completion it describes
    /// (content and tool-call fragments joined per choice, finish reasons,
    /// usage from the final chunk).
    pub async fn collect_completion(mut self) -> Result<ChatCompletion, Error> {
        use futures_util::StreamExt;
        let mut agg = ChunkAggregator::default();
        while let Some(item) = self.next().await {
            agg.push(&item?);
        }
        Ok(agg.finish())
    }
}

impl Stream for ChatStream {
    type Item = ChunkResult;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ChunkResult>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// How a stream ended, as told to [`StreamObserver::on_end`].
#[derive(Debug)]
pub enum StreamEnd<'a> {
    /// The stream ran to its end.
    Completed,
    /// The stream ended with this error (upstream failure, cut connection, timeout).
    Failed(&'a Error),
    /// The stream was dropped before its end (client disconnect, cancellation).
    Dropped,
}

/// Watches a stream go by. See the [module docs](self).
pub trait StreamObserver: Send + 'static {
    /// Called for every chunk, in order; may modify it.
    fn on_chunk(&mut self, chunk: &mut ChatChunk) {
        let _ = chunk;
    }

    /// Called exactly once when the stream ends, however it ends.
    fn on_end(self, end: StreamEnd<'_>);
}

struct Observed<O: StreamObserver> {
    inner: Option<ChatStream>,
    observer: Option<O>,
}

// The observer is never pinned: it is only touched through `&mut`.
impl<O: StreamObserver> Unpin for Observed<O> {}

impl<O: StreamObserver> Stream for Observed<O> {
    type Item = ChunkResult;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ChunkResult>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(mut chunk))) => {
                if let Some(o) = this.observer.as_mut() {
                    o.on_chunk(&mut chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.inner = None;
                if let Some(o) = this.observer.take() {
                    o.on_end(StreamEnd::Failed(&err));
                }
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                this.inner = None;
                if let Some(o) = this.observer.take() {
                    o.on_end(StreamEnd::Completed);
                }
                Poll::Ready(None)
            }
        }
    }
}

impl<O: StreamObserver> Drop for Observed<O> {
    fn drop(&mut self) {
        // Inner observers first: drop what we wrap before finishing ourselves.
        drop(self.inner.take());
        if let Some(o) = self.observer.take() {
            o.on_end(StreamEnd::Dropped);
        }
    }
}

/// Assembles streamed chunks into a [`ChatCompletion`].
///
/// Also used to estimate usage of a stream cut short (its text so far).
#[derive(Debug, Default, Clone)]
pub struct ChunkAggregator {
    id: String,
    model: String,
    created: i64,
    system_fingerprint: Option<String>,
    choices: ByIndex<ChoiceAcc>,
    usage: Option<Usage>,
}

#[derive(Debug, Default, Clone)]
struct ChoiceAcc {
    content: Option<String>,
    refusal: Option<String>,
    reasoning: Option<String>,
    tools: ByIndex<(String, String, String)>,
    finish: Option<FinishReason>,
}

/// Values by `index`, in index order. A stream has one choice (rarely a few)
/// and a few tool calls: a sorted `Vec` grown one slot at a time holds them in
/// a few hundred bytes, where a `BTreeMap` node is ~1.4 KB — and every open
/// stream carries two aggregators (cost and logging).
#[derive(Debug, Clone)]
struct ByIndex<V>(Vec<(u32, V)>);

impl<V> Default for ByIndex<V> {
    fn default() -> Self {
        ByIndex(Vec::new())
    }
}

impl<V: Default> ByIndex<V> {
    fn entry(&mut self, index: u32) -> &mut V {
        let at = match self.0.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => at,
            Err(at) => {
                if self.0.len() < 4 {
                    self.0.reserve_exact(1);
                }
                self.0.insert(at, (index, V::default()));
                at
            }
        };
        &mut self.0[at].1
    }
}

impl<V> ByIndex<V> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
}

impl ChunkAggregator {
    /// Adds a chunk.
    pub fn push(&mut self, chunk: &ChatChunk) {
        if self.id.is_empty() && !chunk.id.is_empty() {
            self.id.clone_from(&chunk.id);
        }
        if self.model.is_empty() && !chunk.model.is_empty() {
            self.model.clone_from(&chunk.model);
        }
        if self.created == 0 {
            self.created = chunk.created;
        }
        if self.system_fingerprint.is_none() {
            self.system_fingerprint
                .clone_from(&chunk.system_fingerprint);
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.clone());
        }
        for c in &chunk.choices {
            let acc = self.choices.entry(c.index);
            let d = &c.delta;
            if let Some(t) = &d.content {
                acc.content.get_or_insert_with(String::new).push_str(t);
            }
            if let Some(t) = &d.refusal {
                acc.refusal.get_or_insert_with(String::new).push_str(t);
            }
            if let Some(t) = &d.reasoning_content {
                acc.reasoning.get_or_insert_with(String::new).push_str(t);
            }
            for tc in d.tool_calls.iter().flatten() {
                let slot = acc.tools.entry(tc.index);
                if let Some(id) = &tc.id {
                    slot.0.clone_from(id);
                }
                if let Some(f) = &tc.function {
                    if let Some(n) = &f.name {
                        slot.1.push_str(n);
                    }
                    if let Some(a) = &f.arguments {
                        slot.2.push_str(a);
                    }
                }
            }
            if c.finish_reason.is_some() {
                acc.finish.clone_from(&c.finish_reason);
            }
        }
    }

    /// The usage reported by the stream so far, if any.
    pub fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    /// All output text so far (content, refusal, reasoning and tool arguments), for token estimates.
    pub fn output_text(&self) -> String {
        let mut s = String::new();
        for acc in self.choices.values() {
            for part in [&acc.content, &acc.refusal, &acc.reasoning]
                .into_iter()
                .flatten()
            {
                s.push_str(part);
            }
            for (_, name, args) in acc.tools.values() {
                s.push_str(name);
                s.push_str(args);
            }
        }
        s
    }

    /// Whether every choice seen so far has a finish reason.
    pub fn all_finished(&self) -> bool {
        !self.choices.is_empty() && self.choices.values().all(|c| c.finish.is_some())
    }

    /// The completion the chunks describe.
    pub fn finish(self) -> ChatCompletion {
        let mut completion = ChatCompletion::new(self.id, self.model, self.created);
        completion.system_fingerprint = self.system_fingerprint;
        completion.usage = self.usage;
        for (index, acc) in self.choices.0 {
            let tool_calls: Vec<ToolCall> = acc
                .tools
                .0
                .into_iter()
                .map(|(_, (id, name, args))| ToolCall::function(id, name, args))
                .collect();
            let message = ResponseMessage {
                content: acc.content,
                refusal: acc.refusal,
                reasoning_content: acc.reasoning,
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                ..Default::default()
            };
            completion.choices.push(Choice {
                index,
                message,
                finish_reason: acc.finish,
                logprobs: None,
                extra: Default::default(),
            });
        }
        completion
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::types::{ChunkChoice, Delta, ToolCallDelta};
    use futures_util::StreamExt;
    use std::sync::{Arc, Mutex};

    struct Log(&'static str, Arc<Mutex<Vec<String>>>);
    impl StreamObserver for Log {
        fn on_end(self, end: StreamEnd<'_>) {
            let what = match end {
                StreamEnd::Completed => "completed".to_owned(),
                StreamEnd::Failed(e) => format!("failed: {e}"),
                StreamEnd::Dropped => "dropped".to_owned(),
            };
            self.1.lock().unwrap().push(format!("{} {what}", self.0));
        }
    }

    fn text_chunk(t: &str) -> ChatChunk {
        ChatChunk::new("c1", "m", 1).with_choice(ChunkChoice::new(0, Delta::text(t)))
    }

    fn layered(items: Vec<ChunkResult>, log: &Arc<Mutex<Vec<String>>>) -> ChatStream {
        ChatStream::from_results(items)
            .observe(Log("inner", log.clone()))
            .observe(Log("outer", log.clone()))
    }

    #[tokio::test]
    async fn completed_once_inner_first() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut s = layered(vec![Ok(text_chunk("a"))], &log);
        while s.next().await.is_some() {}
        assert!(s.next().await.is_none());
        drop(s);
        assert_eq!(
            *log.lock().unwrap(),
            vec!["inner completed", "outer completed"]
        );
    }

    #[tokio::test]
    async fn failed_once_inner_first_and_stream_ends() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let err = Error::new(ErrorKind::Connection, "reset");
        let mut s = layered(
            vec![Ok(text_chunk("a")), Err(err), Ok(text_chunk("b"))],
            &log,
        );
        assert!(s.next().await.unwrap().is_ok());
        assert!(s.next().await.unwrap().is_err());
        assert!(s.next().await.is_none(), "no items after an error");
        drop(s);
        assert_eq!(
            *log.lock().unwrap(),
            vec!["inner failed: reset", "outer failed: reset"]
        );
    }

    #[tokio::test]
    async fn dropped_half_read_once_inner_first() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut s = layered(vec![Ok(text_chunk("a")), Ok(text_chunk("b"))], &log);
        assert!(s.next().await.is_some());
        drop(s);
        assert_eq!(*log.lock().unwrap(), vec!["inner dropped", "outer dropped"]);
    }

    #[tokio::test]
    async fn aggregates_text_tools_and_usage() {
        let mut first = ChatChunk::new("c1", "m", 5);
        first.choices.push(ChunkChoice::new(0, Delta::role()));
        let mut tool = ChatChunk::new("c1", "m", 5);
        tool.choices.push(ChunkChoice::new(
            1,
            Delta {
                tool_calls: Some(vec![ToolCallDelta::start(0, "call_1", "f")]),
                ..Default::default()
            },
        ));
        let mut args = ChatChunk::new("c1", "m", 5);
        args.choices.push(ChunkChoice::new(
            1,
            Delta {
                tool_calls: Some(vec![ToolCallDelta::arguments(0, "{\"a\":1}")]),
                ..Default::default()
            },
        ));
        let mut fin = ChatChunk::new("c1", "m", 5);
        fin.choices.push(ChunkChoice::finish(0, FinishReason::Stop));
        fin.choices
            .push(ChunkChoice::finish(1, FinishReason::ToolCalls));
        let mut usage = ChatChunk::new("c1", "m", 5);
        usage.usage = Some(Usage::new(3, 4));
        let s = ChatStream::from_chunks(vec![
            first,
            text_chunk("Hel"),
            text_chunk("lo"),
            tool,
            args,
            fin,
            usage,
        ]);
        let c = s.collect_completion().await.unwrap();
        assert_eq!(c.id, "c1");
        assert_eq!(c.choices.len(), 2);
        assert_eq!(c.choices[0].message.content.as_deref(), Some("Hello"));
        assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
        let calls = c.choices[1].message.tool_calls.as_ref().unwrap();
        assert_eq!(calls[0].id, "call_1");
        assert_eq!(calls[0].function.arguments, "{\"a\":1}");
        assert_eq!(c.usage.unwrap().total_tokens, 7);
    }

    #[tokio::test]
    async fn choices_and_tool_calls_in_index_order_whatever_order_they_arrive() {
        let chunk = |v: serde_json::Value| -> ChatChunk { serde_json::from_value(v).unwrap() };
        let text = |i: u32, t: &str| {
            chunk(
                serde_json::json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                "model": "m", "choices": [{"index": i, "delta": {"content": t}}]}),
            )
        };
        let call = |tool: u32, id: Option<&str>, args: &str| {
            let mut tc = serde_json::json!({"index": tool, "function": {"arguments": args}});
            if let Some(id) = id {
                tc["id"] = id.into();
                tc["type"] = "function".into();
                tc["function"]["name"] = format!("f{tool}").into();
            }
            chunk(
                serde_json::json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                "model": "m", "choices": [{"index": 3, "delta": {"tool_calls": [tc]}}]}),
            )
        };
        let c = ChatStream::from_chunks(vec![
            text(2, "two "),
            call(7, Some("call_7"), "{\"b\""),
            text(0, "zero "),
            call(1, Some("call_1"), "{\"a\""),
            text(2, "again"),
            text(1, "one"),
            call(7, None, ":2}"),
            call(1, None, ":1}"),
            text(0, "again"),
        ])
        .collect_completion()
        .await
        .unwrap();
        let indexes: Vec<u32> = c.choices.iter().map(|ch| ch.index).collect();
        assert_eq!(indexes, [0, 1, 2, 3]);
        let texts: Vec<Option<&str>> = c
            .choices
            .iter()
            .map(|ch| ch.message.content.as_deref())
            .collect();
        assert_eq!(
            texts,
            [Some("zero again"), Some("one"), Some("two again"), None]
        );
        let calls = c.choices[3].message.tool_calls.as_ref().unwrap();
        let calls: Vec<(&str, &str, &str)> = calls
            .iter()
            .map(|t| {
                (
                    t.id.as_str(),
                    t.function.name.as_str(),
                    t.function.arguments.as_str(),
                )
            })
            .collect();
        assert_eq!(
            calls,
            [("call_1", "f1", "{\"a\":1}"), ("call_7", "f7", "{\"b\":2}")]
        );
    }
}
