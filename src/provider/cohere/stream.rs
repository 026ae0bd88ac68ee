//! Cohere v2 stream events → OpenAI chunks, one event at a time.
//!
//! `message-start` opens the message (its id becomes the chunk id);
//! `content-delta` carries text (→ `content`) or thinking (→
//! `reasoning_content`); `tool-plan-delta` → `reasoning_content`;
//! `tool-call-start` → the opening tool-call delta (id, type, name,
//! `arguments: ""`), `tool-call-delta` → argument fragments, and a call that
//! got no arguments by its `tool-call-end` gets `"{}"`; `citation-start` →
//! a delta with `citations`; `message-end` → the finishing chunk, then the
//! usage chunk, and the end of the stream. A `data: [DONE]` is tolerated.

use super::response::{Finish, bad_json, finish_reason, usage};
use super::wire::CohereUsage;
use crate::Secret;
use crate::error::{Error, ErrorKind};
use crate::provider::sse_stream::EventTranslator;
use crate::sse::SseEvent;
use crate::types::{ChatChunk, ChunkChoice, Delta, ToolCallDelta};
use serde_json::Value;
use std::collections::VecDeque;

/// One tool call of the stream.
#[derive(Debug)]
struct Tool {
    cohere_index: u64,
    index: u32,
    has_arguments: bool,
}

/// Translates Cohere v2 SSE events (see the [module docs](self)).
#[derive(Debug)]
pub struct CohereChunkTranslator {
    secrets: Vec<Secret>,
    base: ChatChunk,
    started: bool,
    tools: Vec<Tool>,
    finished: bool,
    done: bool,
}

fn message_field<'a>(data: &'a Value, field: &str) -> Option<&'a Value> {
    data.get("delta")?.get("message")?.get(field)
}

impl CohereChunkTranslator {
    /// A translator whose chunks carry `model` and `created` (and a
    /// generated id until `message-start` gives Cohere's).
    pub fn new(model: &str, created: i64, secrets: Vec<Secret>) -> Self {
        CohereChunkTranslator {
            secrets,
            base: ChatChunk::new(
                format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
                model,
                created,
            ),
            started: false,
            tools: Vec::new(),
            finished: false,
            done: false,
        }
    }

    fn start(&mut self, out: &mut VecDeque<ChatChunk>) {
        if !self.started {
            self.started = true;
            out.push_back(
                self.base
                    .clone()
                    .with_choice(ChunkChoice::new(0, Delta::role())),
            );
        }
    }

    fn delta(&mut self, delta: Delta, out: &mut VecDeque<ChatChunk>) {
        self.start(out);
        out.push_back(self.base.clone().with_choice(ChunkChoice::new(0, delta)));
    }

    fn text(&mut self, text: &str, out: &mut VecDeque<ChatChunk>) {
        if !text.is_empty() {
            self.delta(Delta::text(text), out);
        }
    }

    fn reasoning(&mut self, text: &str, out: &mut VecDeque<ChatChunk>) {
        if !text.is_empty() {
            let d = Delta {
                reasoning_content: Some(text.to_owned()),
                ..Default::default()
            };
            self.delta(d, out);
        }
    }

    fn arguments(&mut self, index: u32, fragment: String, out: &mut VecDeque<ChatChunk>) {
        let d = Delta {
            tool_calls: Some(vec![ToolCallDelta::arguments(index, fragment)]),
            ..Default::default()
        };
        self.delta(d, out);
    }

    fn tool(&mut self, cohere_index: u64) -> Option<&mut Tool> {
        self.tools
            .iter_mut()
            .rev()
            .find(|t| t.cohere_index == cohere_index)
    }

    fn content(&mut self, data: &Value, out: &mut VecDeque<ChatChunk>) {
        let Some(c) = message_field(data, "content") else {
            return;
        };
        if let Some(t) = c.get("text").and_then(Value::as_str) {
            self.text(t, out);
        }
        if let Some(t) = c.get("thinking").and_then(Value::as_str) {
            self.reasoning(t, out);
        }
    }

    fn handle(
        &mut self,
        kind: &str,
        data: &Value,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<(), Error> {
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "message-start" => {
                if let Some(id) = data
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    && !self.started
                {
                    self.base.id = id.to_owned();
                }
                self.start(out);
            }
            "content-start" | "content-delta" => self.content(data, out),
            "tool-plan-delta" => {
                if let Some(p) = message_field(data, "tool_plan").and_then(Value::as_str) {
                    self.reasoning(p, out);
                }
            }
            "tool-call-start" => {
                let call = message_field(data, "tool_calls");
                let id = call
                    .and_then(|c| c.get("id"))
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty());
                let function = call.and_then(|c| c.get("function"));
                let name = function
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let openai_index = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                let id = id.map_or_else(|| format!("call_{openai_index}"), str::to_owned);
                let d = Delta {
                    tool_calls: Some(vec![ToolCallDelta::start(openai_index, id, name)]),
                    ..Default::default()
                };
                self.delta(d, out);
                self.tools.push(Tool {
                    cohere_index: index,
                    index: openai_index,
                    has_arguments: false,
                });
                if let Some(args) = function
                    .and_then(|f| f.get("arguments"))
                    .and_then(Value::as_str)
                    .filter(|a| !a.is_empty())
                {
                    if let Some(t) = self.tool(index) {
                        t.has_arguments = true;
                    }
                    self.arguments(openai_index, args.to_owned(), out);
                }
            }
            "tool-call-delta" => {
                let args = message_field(data, "tool_calls")
                    .and_then(|c| c.get("function"))
                    .and_then(|f| f.get("arguments"))
                    .and_then(Value::as_str)
                    .filter(|a| !a.is_empty());
                if let (Some(args), Some(t)) = (args, self.tool(index)) {
                    t.has_arguments = true;
                    let i = t.index;
                    self.arguments(i, args.to_owned(), out);
                }
            }
            "tool-call-end" => {
                if let Some(t) = self.tool(index).filter(|t| !t.has_arguments) {
                    t.has_arguments = true;
                    let i = t.index;
                    self.arguments(i, "{}".to_owned(), out);
                }
            }
            "citation-start" => {
                if let Some(c) = message_field(data, "citations") {
                    let mut d = Delta::default();
                    let list = match c {
                        Value::Array(_) => c.clone(),
                        other => Value::Array(vec![other.clone()]),
                    };
                    let _ = d.extra.insert("citations", &list);
                    self.delta(d, out);
                }
            }
            "message-end" => {
                let delta = data.get("delta");
                let reason = delta
                    .and_then(|d| d.get("finish_reason"))
                    .and_then(Value::as_str)
                    .unwrap_or("COMPLETE");
                let finish = match finish_reason(reason) {
                    Finish::Failed(e) => return Err(e),
                    Finish::Reason(r) => r,
                };
                self.start(out);
                out.push_back(
                    self.base
                        .clone()
                        .with_choice(ChunkChoice::finish(0, finish)),
                );
                self.finished = true;
                if let Some(u) = delta.and_then(|d| d.get("usage")).filter(|u| !u.is_null()) {
                    let u: CohereUsage =
                        serde_json::from_value(u.clone()).map_err(|e| bad_json("usage", &e))?;
                    let mut chunk = self.base.clone();
                    chunk.usage = Some(usage(&u));
                    out.push_back(chunk);
                }
                self.done = true;
            }
            "error" => {
                let secrets: Vec<&str> = self.secrets.iter().map(Secret::expose).collect();
                let message = data
                    .get("message")
                    .or_else(|| data.get("error").and_then(|e| e.get("message").or(Some(e))))
                    .map(|m| match m {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| "Cohere reported an error in the stream".to_owned());
                return Err(Error::from_upstream(
                    ErrorKind::Upstream(500),
                    &message,
                    &secrets,
                ));
            }
            // `content-end`, `citation-end`, `debug`, and anything new.
            _ => {}
        }
        Ok(())
    }
}

impl EventTranslator for CohereChunkTranslator {
    fn event(&mut self, event: SseEvent, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if event.is_done() {
            self.done = true;
            return Ok(());
        }
        if event.data.trim().is_empty() {
            return Ok(());
        }
        let data: Value =
            serde_json::from_str(&event.data).map_err(|e| bad_json("stream event", &e))?;
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or_default()
            .to_owned();
        self.handle(&kind, &data, out)
    }

    fn end(&mut self, _out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if self.finished {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Connection,
            "the upstream closed the stream before it finished",
        ))
    }

    fn is_done(&self) -> bool {
        self.done
    }
}
