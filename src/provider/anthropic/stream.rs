//! Anthropic named SSE events → OpenAI chunks (PROTOCOLS.md §4.3), incrementally.
//!
//! | event | chunks |
//! |---|---|
//! | `message_start` | the role chunk; id, model and input usage are remembered |
//! | `content_block_start` | `tool_use`: the first tool-call delta (index, id, type, name, `arguments: ""`) |
//! | `content_block_delta` | text → `content`; `input_json_delta` → argument fragment; `thinking_delta` → `reasoning_content`; `signature_delta` → the whole signed block in `thinking_blocks` |
//! | `message_delta` | the finishing chunk; usage counts replace the known ones (they are cumulative) |
//! | `message_stop` | the usage chunk (`choices: []`); the stream is done |
//! | `error` | an `Err` item |
//! | `ping`, `content_block_stop`, unknown | nothing |
//!
//! The OpenAI tool index counts tool calls (0, 1, …), not Anthropic's block
//! index. A body that ends before `message_stop` is a `Connection` error.
//!
//! In native mode (a `/v1/messages` request passed through), each event's
//! data also rides, verbatim, in the [`NATIVE_EVENT_FIELD`] of the first chunk
//! it produced (or of an otherwise empty carrier chunk), so the door can relay
//! the upstream stream byte for byte while every layer still sees OpenAI chunks.

use super::error;
use super::request::JSON_TOOL;
use super::wire::{StreamEvent, WireUsage, finish_reason};
use crate::Secret;
use crate::error::{Error, ErrorKind};
use crate::provider::sse_stream::EventTranslator;
use crate::sse::SseEvent;
use crate::types::{ChatChunk, ChunkChoice, Delta, FinishReason, ToolCallDelta};
use serde_json::value::RawValue;
use std::collections::VecDeque;

/// The extra field of a [`ChatChunk`] that carries one native Anthropic event
/// (`{"event": <name>, "data": <data>}`) in native mode.
pub const NATIVE_EVENT_FIELD: &str = "anthropic_event";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Tool(u32),
    JsonTool,
    Thinking,
    Other,
}

/// The event translator (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct Translator {
    secrets: Vec<Secret>,
    native: bool,
    json_tool: bool,
    id: String,
    model: String,
    created: i64,
    /// Anthropic block index → what it is.
    blocks: Vec<(u32, Kind)>,
    tools: u32,
    usage: WireUsage,
    finished: bool,
    done: bool,
    /// Text of the thinking block being streamed (for its signed copy).
    thinking: String,
}

impl Translator {
    pub(crate) fn new(secrets: Vec<Secret>, native: bool, json_tool: bool) -> Self {
        Translator {
            secrets,
            native,
            json_tool,
            id: String::new(),
            model: String::new(),
            created: crate::util::unix_now(),
            blocks: Vec::new(),
            tools: 0,
            usage: WireUsage::default(),
            finished: false,
            done: false,
            thinking: String::new(),
        }
    }

    fn chunk(&self) -> ChatChunk {
        ChatChunk::new(self.id.clone(), self.model.clone(), self.created)
    }

    fn delta(&self, delta: Delta) -> ChatChunk {
        self.chunk().with_choice(ChunkChoice::new(0, delta))
    }

    fn kind_of(&self, index: Option<u32>) -> Kind {
        let Some(index) = index else {
            return Kind::Other;
        };
        self.blocks
            .iter()
            .rev()
            .find(|(i, _)| *i == index)
            .map_or(Kind::Other, |(_, k)| *k)
    }

    fn finish(&mut self, reason: FinishReason, out: &mut VecDeque<ChatChunk>) {
        if !self.finished {
            self.finished = true;
            out.push_back(self.chunk().with_choice(ChunkChoice::finish(0, reason)));
        }
    }

    fn handle(&mut self, name: &str, ev: StreamEvent, out: &mut VecDeque<ChatChunk>) {
        match name {
            "message_start" => {
                if let Some(m) = ev.message {
                    self.id = m.id;
                    self.model = m.model;
                    if let Some(u) = &m.usage {
                        self.usage.update(u);
                    }
                }
                out.push_back(self.delta(Delta::role()));
            }
            "content_block_start" => {
                let index = ev.index.unwrap_or(u32::MAX);
                let block = ev.content_block.unwrap_or_default();
                let kind = match block.kind.as_str() {
                    "text" => Kind::Text,
                    "thinking" => Kind::Thinking,
                    "tool_use" if self.json_tool && block.name.as_deref() == Some(JSON_TOOL) => {
                        Kind::JsonTool
                    }
                    "tool_use" => {
                        let i = self.tools;
                        self.tools = self.tools.saturating_add(1);
                        Kind::Tool(i)
                    }
                    _ => Kind::Other,
                };
                self.blocks.push((index, kind));
                match kind {
                    Kind::Text => {
                        if let Some(t) = block.text.filter(|t| !t.is_empty()) {
                            out.push_back(self.delta(Delta::text(t)));
                        }
                    }
                    Kind::Thinking => {
                        self.thinking.clear();
                        if let Some(t) = block.thinking.filter(|t| !t.is_empty()) {
                            self.thinking.push_str(&t);
                            out.push_back(self.delta(Delta {
                                reasoning_content: Some(t),
                                ..Default::default()
                            }));
                        }
                    }
                    Kind::Tool(i) => {
                        let start = ToolCallDelta::start(
                            i,
                            block.id.unwrap_or_default(),
                            block.name.unwrap_or_default(),
                        );
                        out.push_back(self.delta(Delta {
                            tool_calls: Some(vec![start]),
                            ..Default::default()
                        }));
                    }
                    Kind::JsonTool | Kind::Other => {}
                }
            }
            "content_block_delta" => {
                let kind = self.kind_of(ev.index);
                let Some(d) = ev.delta else { return };
                match (d.kind.as_deref(), kind) {
                    (Some("text_delta"), _) => {
                        if let Some(t) = d.text.filter(|t| !t.is_empty()) {
                            out.push_back(self.delta(Delta::text(t)));
                        }
                    }
                    (Some("input_json_delta"), Kind::Tool(i)) => {
                        if let Some(f) = d.partial_json.filter(|f| !f.is_empty()) {
                            out.push_back(self.delta(Delta {
                                tool_calls: Some(vec![ToolCallDelta::arguments(i, f)]),
                                ..Default::default()
                            }));
                        }
                    }
                    (Some("input_json_delta"), Kind::JsonTool) => {
                        if let Some(f) = d.partial_json.filter(|f| !f.is_empty()) {
                            out.push_back(self.delta(Delta::text(f)));
                        }
                    }
                    (Some("thinking_delta"), _) => {
                        if let Some(t) = d.thinking.filter(|t| !t.is_empty()) {
                            self.thinking.push_str(&t);
                            out.push_back(self.delta(Delta {
                                reasoning_content: Some(t),
                                ..Default::default()
                            }));
                        }
                    }
                    (Some("signature_delta"), _) => {
                        let block = serde_json::json!([{
                            "type": "thinking",
                            "thinking": std::mem::take(&mut self.thinking),
                            "signature": d.signature.unwrap_or_default(),
                        }]);
                        let mut delta = Delta::default();
                        if delta.extra.insert("thinking_blocks", &block).is_ok() {
                            out.push_back(self.delta(delta));
                        }
                    }
                    // citations_delta and future kinds have no OpenAI form.
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = &ev.usage {
                    self.usage.update(u);
                }
                let stop = ev.delta.and_then(|d| d.stop_reason);
                if let Some(stop) = stop {
                    let mut reason = finish_reason(Some(&stop));
                    if reason == FinishReason::ToolCalls && self.tools == 0 {
                        reason = FinishReason::Stop;
                    }
                    self.finish(reason, out);
                }
            }
            "message_stop" => {
                self.finish(FinishReason::Stop, out);
                let mut last = self.chunk();
                last.usage = Some(self.usage.to_openai());
                out.push_back(last);
                self.done = true;
            }
            // ping, content_block_stop, and whatever Anthropic adds later.
            _ => {}
        }
    }
}

impl EventTranslator for Translator {
    fn event(&mut self, event: SseEvent, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        let name = match event.event.as_deref() {
            Some(n) => n.to_owned(),
            None => {
                // No `event:` line: the type inside the data names it.
                serde_json::from_str::<StreamEvent>(&event.data)
                    .map(|e| e.kind)
                    .unwrap_or_default()
            }
        };
        if name == "error" {
            let secrets: Vec<&str> = self.secrets.iter().map(Secret::expose).collect();
            return Err(error::from_event(event.data.as_bytes(), &secrets));
        }
        let ev: StreamEvent = serde_json::from_str(&event.data).map_err(|e| {
            Error::new(
                ErrorKind::BadGateway,
                format!("the upstream sent an invalid `{name}` event: {e}"),
            )
        })?;
        let before = out.len();
        self.handle(&name, ev, out);
        if self.native {
            let carried = format!(
                "{{\"event\":{},\"data\":{}}}",
                serde_json::to_string(&name).unwrap_or_else(|_| "\"\"".to_owned()),
                event.data.trim()
            );
            let raw = RawValue::from_string(carried).map_err(|e| {
                Error::new(
                    ErrorKind::BadGateway,
                    format!("invalid upstream event: {e}"),
                )
            })?;
            if out.len() == before {
                out.push_back(self.chunk());
            }
            if let Some(first) = out.get_mut(before) {
                first.extra.insert_raw(NATIVE_EVENT_FIELD, raw);
            }
        }
        Ok(())
    }

    fn end(&mut self, _out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Connection,
            "the upstream closed the stream before `message_stop`",
        ))
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests;
