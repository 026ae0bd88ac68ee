//! A chat stream written as Anthropic named events.
//!
//! Chunks that carry a native event (an Anthropic deployment's own stream)
//! are relayed as they came; once one did, the OpenAI content of the stream
//! is not written again. Otherwise OpenAI chunks are translated:
//!
//! `message_start` (on the first chunk) → per block `content_block_start` /
//! `content_block_delta` (`text_delta`, `thinking_delta`, `input_json_delta`)
//! / `content_block_stop` → at the end `message_delta` (stop reason and
//! usage, which OpenAI sends last) → `message_stop`. A failure becomes an
//! `event: error` with the Anthropic error envelope.

use super::error_body;
use super::response::{stop_reason, usage_json};
use crate::edge::SseEncoder;
use crate::provider::anthropic::NATIVE_EVENT_FIELD;
use crate::types::{ChatChunk, FinishReason, Usage};
use bytes::BytesMut;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    Tool,
}

/// The encoder (see the [module docs](self)).
pub(crate) struct MessagesSse {
    model: String,
    fallback_id: String,
    native: bool,
    started: bool,
    next_index: u32,
    open: Option<(u32, Open)>,
    /// OpenAI tool index → Anthropic block index.
    tools: Vec<(u32, u32)>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl MessagesSse {
    pub(crate) fn new(model: String, fallback_id: String) -> Self {
        MessagesSse {
            model,
            fallback_id,
            native: false,
            started: false,
            next_index: 0,
            open: None,
            tools: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    fn event(out: &mut BytesMut, name: &str, data: &Value) {
        let bytes = serde_json::to_vec(data).unwrap_or_else(|_| b"{}".to_vec());
        crate::sse::write_event(out, Some(name), &bytes);
    }

    fn start(&mut self, chunk: &ChatChunk, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let id = if chunk.id.is_empty() {
            &self.fallback_id
        } else {
            &chunk.id
        };
        let model = if chunk.model.is_empty() {
            &self.model
        } else {
            &chunk.model
        };
        Self::event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        );
    }

    fn close(&mut self, out: &mut BytesMut) {
        if let Some((index, _)) = self.open.take() {
            Self::event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    /// Opens a block of `kind` unless one is open already; returns its index.
    fn ensure(&mut self, kind: Open, block: Value, out: &mut BytesMut) -> u32 {
        if let Some((index, k)) = self.open
            && k == kind
            && kind != Open::Tool
        {
            return index;
        }
        self.close(out);
        let index = self.next_index;
        self.next_index = self.next_index.saturating_add(1);
        self.open = Some((index, kind));
        Self::event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        index
    }

    fn delta(out: &mut BytesMut, index: u32, delta: Value) {
        Self::event(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }

    fn relay(&mut self, raw: &RawValue, out: &mut BytesMut) {
        #[derive(Deserialize)]
        struct Carried<'a> {
            event: String,
            #[serde(borrow)]
            data: &'a RawValue,
        }
        if let Ok(c) = serde_json::from_str::<Carried<'_>>(raw.get()) {
            crate::sse::write_event(out, Some(&c.event), c.data.get().as_bytes());
        }
    }
}

impl SseEncoder for MessagesSse {
    fn chunk(&mut self, chunk: ChatChunk, out: &mut BytesMut) {
        if let Some(raw) = chunk.extra.get(NATIVE_EVENT_FIELD) {
            self.native = true;
            self.relay(raw, out);
            return;
        }
        if self.native {
            return;
        }
        self.start(&chunk, out);
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.clone());
        }
        // One answer: Anthropic has no `n`.
        let Some(choice) = chunk.choices.iter().find(|c| c.index == 0) else {
            return;
        };
        let d = &choice.delta;
        if let Some(t) = d.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
            let i = self.ensure(
                Open::Thinking,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                out,
            );
            Self::delta(out, i, json!({"type": "thinking_delta", "thinking": t}));
        }
        for t in [d.content.as_deref(), d.refusal.as_deref()]
            .into_iter()
            .flatten()
        {
            if !t.is_empty() {
                let i = self.ensure(Open::Text, json!({"type": "text", "text": ""}), out);
                Self::delta(out, i, json!({"type": "text_delta", "text": t}));
            }
        }
        for tc in d.tool_calls.iter().flatten() {
            let f = tc.function.as_ref();
            let existing = self
                .tools
                .iter()
                .find(|(o, _)| *o == tc.index)
                .map(|(_, b)| *b);
            let index = match (&tc.id, existing) {
                (None, Some(block)) => block,
                (id, _) => {
                    let name = f.and_then(|f| f.name.as_deref()).unwrap_or("");
                    let id = id.clone().unwrap_or_else(|| format!("toolu_{}", tc.index));
                    let block = self.ensure(
                        Open::Tool,
                        json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                        out,
                    );
                    self.tools.push((tc.index, block));
                    block
                }
            };
            if let Some(args) = f
                .and_then(|f| f.arguments.as_deref())
                .filter(|a| !a.is_empty())
            {
                Self::delta(
                    out,
                    index,
                    json!({"type": "input_json_delta", "partial_json": args}),
                );
            }
        }
        if choice.finish_reason.is_some() {
            self.finish.clone_from(&choice.finish_reason);
        }
    }

    fn error(&mut self, err: &crate::Error, out: &mut BytesMut) {
        let body = error_body(err, None);
        crate::sse::write_event(out, Some("error"), &body);
    }

    fn end(&mut self, out: &mut BytesMut) {
        if self.native {
            return;
        }
        if !self.started {
            let empty = ChatChunk::new(String::new(), String::new(), 0);
            self.start(&empty, out);
        }
        self.close(out);
        Self::event(
            out,
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(self.finish.as_ref()), "stop_sequence": null},
                "usage": usage_json(self.usage.as_ref())}),
        );
        Self::event(out, "message_stop", &json!({"type": "message_stop"}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;
    use crate::types::{ChunkChoice, Delta, ToolCallDelta};

    fn run(chunks: Vec<ChatChunk>, err: Option<crate::Error>) -> Vec<(String, Value)> {
        let mut enc = MessagesSse::new("m".into(), "msg_fallback".into());
        let mut out = BytesMut::new();
        for c in chunks {
            enc.chunk(c, &mut out);
        }
        match err {
            Some(e) => enc.error(&e, &mut out),
            None => enc.end(&mut out),
        }
        let mut dec = SseDecoder::new();
        dec.push(&out);
        let mut events = Vec::new();
        while let Some(ev) = dec.next_event().unwrap() {
            events.push((ev.event.unwrap(), serde_json::from_str(&ev.data).unwrap()));
        }
        events
    }

    fn chunk(delta: Delta) -> ChatChunk {
        ChatChunk::new("chatcmpl-9", "group", 1).with_choice(ChunkChoice::new(0, delta))
    }

    #[test]
    fn text_thinking_and_tools_become_blocks() {
        let mut first = ChatChunk::new("chatcmpl-9", "group", 1);
        first.choices.push(ChunkChoice::new(0, Delta::role()));
        let mut fin = ChatChunk::new("chatcmpl-9", "group", 1);
        fin.choices
            .push(ChunkChoice::finish(0, FinishReason::ToolCalls));
        let mut usage = ChatChunk::new("chatcmpl-9", "group", 1);
        usage.usage = Some(Usage::new(12, 7));
        let events = run(
            vec![
                first,
                chunk(Delta {
                    reasoning_content: Some("think".into()),
                    ..Default::default()
                }),
                chunk(Delta::text("Hel")),
                chunk(Delta::text("lo")),
                chunk(Delta {
                    tool_calls: Some(vec![ToolCallDelta::start(0, "call_1", "f")]),
                    ..Default::default()
                }),
                chunk(Delta {
                    tool_calls: Some(vec![ToolCallDelta::arguments(0, "{\"a\":")]),
                    ..Default::default()
                }),
                chunk(Delta {
                    tool_calls: Some(vec![ToolCallDelta::start(1, "call_2", "g")]),
                    ..Default::default()
                }),
                chunk(Delta {
                    tool_calls: Some(vec![ToolCallDelta::arguments(0, "1}")]),
                    ..Default::default()
                }),
                fin,
                usage,
            ],
            None,
        );
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(events[0].1["message"]["id"], "chatcmpl-9");
        assert_eq!(events[0].1["message"]["model"], "group");
        assert_eq!(events[1].1["content_block"]["type"], "thinking");
        assert_eq!(
            events[5].1["delta"],
            json!({"type": "text_delta", "text": "Hel"})
        );
        assert_eq!(
            events[8].1["content_block"],
            json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {}})
        );
        assert_eq!(events[8].1["index"], 2);
        // A late fragment of the first call still lands on its own block.
        assert_eq!(events[12].1["index"], 2);
        assert_eq!(events[12].1["delta"]["partial_json"], "1}");
        assert_eq!(
            events[14].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                   "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 7}})
        );
    }

    #[test]
    fn native_events_are_relayed_and_translation_is_skipped() {
        let mut c = chunk(Delta::text("ignored"));
        c.extra.insert_raw(
            NATIVE_EVENT_FIELD,
            RawValue::from_string(r#"{"event":"ping","data":{"type": "ping"}}"#.into()).unwrap(),
        );
        let events = run(vec![c, chunk(Delta::text("also ignored"))], None);
        assert_eq!(events, vec![("ping".to_owned(), json!({"type": "ping"}))]);
    }

    #[test]
    fn errors_and_empty_streams() {
        let events = run(
            vec![chunk(Delta::text("a"))],
            Some(
                crate::Error::new(crate::ErrorKind::ServiceUnavailable, "down")
                    .with_code("overloaded_error"),
            ),
        );
        let last = events.last().unwrap();
        assert_eq!(last.0, "error");
        assert_eq!(
            last.1,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "down"}})
        );
        let events = run(vec![], None);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec!["message_start", "message_delta", "message_stop"]
        );
        assert_eq!(events[0].1["message"]["id"], "msg_fallback");
        assert_eq!(events[1].1["delta"]["stop_reason"], "end_turn");
    }
}
