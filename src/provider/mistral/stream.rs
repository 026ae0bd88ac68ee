//! Mistral stream events → OpenAI chunks, one event at a time.

use super::response::{Finish, bad_json, finish_reason, generation_error, split_chunks};
use crate::Secret;
use crate::error::{Error, ErrorKind};
use crate::provider::openai::in_band_error;
use crate::provider::sse_stream::EventTranslator;
use crate::sse::SseEvent;
use crate::types::{ChatChunk, ChunkChoice, Delta, ToolCallDelta, Usage};
use serde_json::Value;
use std::collections::VecDeque;

/// One tool call seen in the stream.
#[derive(Debug)]
struct ToolSlot {
    choice: u32,
    upstream_index: Option<u64>,
    id: String,
    index: u32,
}

/// Translates Mistral SSE events (see the [module docs](super)).
#[derive(Debug)]
pub struct MistralChunkTranslator {
    secrets: Vec<Secret>,
    base: Option<ChatChunk>,
    started: Vec<u32>,
    tools: Vec<ToolSlot>,
    usage: Option<Usage>,
    finished: bool,
    done: bool,
}

impl MistralChunkTranslator {
    /// A translator that scrubs `secrets` from in-stream errors.
    pub fn new(secrets: Vec<Secret>) -> Self {
        MistralChunkTranslator {
            secrets,
            base: None,
            started: Vec::new(),
            tools: Vec::new(),
            usage: None,
            finished: false,
            done: false,
        }
    }

    fn base(&mut self, v: &Value) -> ChatChunk {
        if let Some(b) = &self.base {
            return b.clone();
        }
        let id = v
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map_or_else(
                || format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
                str::to_owned,
            );
        let model = v.get("model").and_then(Value::as_str).unwrap_or_default();
        let created = v
            .get("created")
            .and_then(Value::as_i64)
            .unwrap_or_else(crate::util::unix_now);
        let base = ChatChunk::new(id, model, created);
        self.base = Some(base.clone());
        base
    }

    fn push(&self, base: &ChatChunk, choice: ChunkChoice, out: &mut VecDeque<ChatChunk>) {
        out.push_back(base.clone().with_choice(choice));
    }

    fn tool_call(
        &mut self,
        base: &ChatChunk,
        choice: u32,
        call: &Value,
        out: &mut VecDeque<ChatChunk>,
    ) {
        let upstream_index = call.get("index").and_then(Value::as_u64);
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let function = call.get("function");
        let name = function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let arguments = match function.and_then(|f| f.get("arguments")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let existing = self.tools.iter().rposition(|t| {
            t.choice == choice
                && match (upstream_index, id) {
                    (Some(i), Some(id)) => t.upstream_index == Some(i) && t.id == id,
                    (Some(i), None) => t.upstream_index == Some(i),
                    (None, Some(id)) => t.id == id,
                    (None, None) => true,
                }
        });
        let index = match existing.and_then(|i| self.tools.get(i)) {
            Some(slot) => slot.index,
            None => {
                let index = self
                    .tools
                    .iter()
                    .filter(|t| t.choice == choice)
                    .count()
                    .try_into()
                    .unwrap_or(u32::MAX);
                let id = id.map_or_else(|| format!("call_{}_{index}", base.id), str::to_owned);
                self.push(
                    base,
                    ChunkChoice::new(
                        choice,
                        Delta {
                            tool_calls: Some(vec![ToolCallDelta::start(index, id.clone(), name)]),
                            ..Default::default()
                        },
                    ),
                    out,
                );
                self.tools.push(ToolSlot {
                    choice,
                    upstream_index,
                    id,
                    index,
                });
                index
            }
        };
        if !arguments.is_empty() {
            self.push(
                base,
                ChunkChoice::new(
                    choice,
                    Delta {
                        tool_calls: Some(vec![ToolCallDelta::arguments(index, arguments)]),
                        ..Default::default()
                    },
                ),
                out,
            );
        }
    }

    fn choice(
        &mut self,
        base: &ChatChunk,
        c: &Value,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<(), Error> {
        let index = c
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| u32::try_from(i).ok())
            .unwrap_or(0);
        if !self.started.contains(&index) {
            self.started.push(index);
            self.push(base, ChunkChoice::new(index, Delta::role()), out);
        }
        let delta = c.get("delta");
        match delta.and_then(|d| d.get("content")) {
            Some(Value::String(t)) if !t.is_empty() => {
                self.push(base, ChunkChoice::new(index, Delta::text(t.clone())), out);
            }
            Some(Value::Array(parts)) => {
                let (text, thinking) = split_chunks(parts);
                if !thinking.is_empty() {
                    let d = Delta {
                        reasoning_content: Some(thinking),
                        ..Default::default()
                    };
                    self.push(base, ChunkChoice::new(index, d), out);
                }
                if !text.is_empty() {
                    self.push(base, ChunkChoice::new(index, Delta::text(text)), out);
                }
            }
            _ => {}
        }
        if let Some(Value::Array(calls)) = delta.and_then(|d| d.get("tool_calls")) {
            for call in calls {
                self.tool_call(base, index, call, out);
            }
        }
        if let Some(reason) = c.get("finish_reason").and_then(Value::as_str) {
            match finish_reason(reason) {
                Finish::Error => return Err(generation_error()),
                Finish::Reason(r) => {
                    self.push(base, ChunkChoice::finish(index, r), out);
                    self.finished = true;
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut VecDeque<ChatChunk>) {
        if let Some(usage) = self.usage.take() {
            let mut chunk = self
                .base
                .clone()
                .unwrap_or_else(|| ChatChunk::new("", "", crate::util::unix_now()));
            chunk.usage = Some(usage);
            out.push_back(chunk);
        }
    }
}

impl EventTranslator for MistralChunkTranslator {
    fn event(&mut self, event: SseEvent, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if event.is_done() {
            self.done = true;
            self.flush(out);
            return Ok(());
        }
        if event.event.as_deref() == Some("error") {
            return Err(in_band_error(event.data.as_bytes(), &self.secrets));
        }
        let v: Value =
            serde_json::from_str(&event.data).map_err(|e| bad_json("stream chunk", &e))?;
        if v.get("error").is_some() || v.get("object").and_then(Value::as_str) == Some("error") {
            let err = match v.get("error") {
                Some(_) => in_band_error(event.data.as_bytes(), &self.secrets),
                None => super::error::error_from_response(
                    if v.get("type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.starts_with("rate_limit"))
                    {
                        http::StatusCode::TOO_MANY_REQUESTS
                    } else {
                        http::StatusCode::INTERNAL_SERVER_ERROR
                    },
                    &http::HeaderMap::new(),
                    event.data.as_bytes(),
                    &self.secrets.iter().map(Secret::expose).collect::<Vec<_>>(),
                ),
            };
            return Err(err);
        }
        let base = self.base(&v);
        if let Some(Value::Array(choices)) = v.get("choices") {
            for c in choices {
                self.choice(&base, c, out)?;
            }
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            let usage: Usage =
                serde_json::from_value(u.clone()).map_err(|e| bad_json("usage", &e))?;
            self.usage = Some(usage);
        }
        Ok(())
    }

    fn end(&mut self, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        if self.finished {
            self.flush(out);
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
