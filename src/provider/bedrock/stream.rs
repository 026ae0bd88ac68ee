//! ConverseStream → OpenAI chunks, frame by frame as the body arrives.

use super::error::from_exception;
use super::eventstream::{EventStreamDecoder, FrameError, Message};
use super::request::JsonMode;
use super::response::{Stop, TokenUsage, malformed, stop_reason};
use crate::Secret;
use crate::error::{Error, ErrorKind};
use crate::provider::StreamDecoder;
use crate::types::{ChatChunk, ChunkChoice, Delta, FinishReason, ToolCallDelta};
use serde_json::{Value, json};
use std::collections::VecDeque;

/// Where a content block's deltas go.
#[derive(Clone, Copy, Debug)]
enum Block {
    /// A tool call with this OpenAI tool index.
    Tool(u32),
    /// The JSON-mode tool: its input is the answer text.
    JsonText,
}

/// Decodes `application/vnd.amazon.eventstream` into OpenAI chunks.
pub struct ConverseStreamDecoder {
    frames: EventStreamDecoder,
    base: ChatChunk,
    json_mode: JsonMode,
    secrets: Vec<Secret>,
    blocks: Vec<(u64, Block)>,
    next_tool: u32,
    saw_json_text: bool,
    saw_tool: bool,
    started: bool,
    finished: bool,
    done: bool,
}

impl ConverseStreamDecoder {
    /// A decoder whose chunks carry `id`, `model` and `created`.
    pub fn new(
        id: String,
        model: &str,
        created: i64,
        json_mode: JsonMode,
        secrets: Vec<Secret>,
    ) -> Self {
        ConverseStreamDecoder {
            frames: EventStreamDecoder::new(),
            base: ChatChunk::new(id, model, created),
            json_mode,
            secrets,
            blocks: Vec::new(),
            next_tool: 0,
            saw_json_text: false,
            saw_tool: false,
            started: false,
            finished: false,
            done: false,
        }
    }

    fn chunk(&self, choice: ChunkChoice) -> ChatChunk {
        self.base.clone().with_choice(choice)
    }

    fn delta(&mut self, delta: Delta, out: &mut VecDeque<ChatChunk>) {
        self.start(out);
        out.push_back(self.chunk(ChunkChoice::new(0, delta)));
    }

    fn start(&mut self, out: &mut VecDeque<ChatChunk>) {
        if !self.started {
            self.started = true;
            out.push_back(self.chunk(ChunkChoice::new(0, Delta::role())));
        }
    }

    fn block(&self, index: u64) -> Option<Block> {
        self.blocks
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| *b)
    }

    fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(Secret::expose).collect()
    }

    fn message(&mut self, msg: Message, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        match msg.header_str(":message-type").unwrap_or("event") {
            "exception" => {
                let kind = msg.header_str(":exception-type").unwrap_or("exception");
                return Err(from_exception(kind, &msg.payload, &self.secrets()));
            }
            "error" => {
                let code = msg.header_str(":error-code").unwrap_or("error");
                let text = msg
                    .header_str(":error-message")
                    .unwrap_or("Bedrock reported an error in the stream");
                let payload = serde_json::to_vec(&json!({"message": text})).unwrap_or_default();
                return Err(from_exception(code, &payload, &self.secrets()));
            }
            _ => {}
        }
        let Some(event) = msg.header_str(":event-type") else {
            return Ok(());
        };
        let data: Value = serde_json::from_slice(&msg.payload).map_err(|e| {
            Error::new(
                ErrorKind::BadGateway,
                format!("a Bedrock `{event}` event is not valid JSON: {e}"),
            )
        })?;
        match event {
            "messageStart" => self.start(out),
            "contentBlockStart" => {
                let index = data
                    .get("contentBlockIndex")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if let Some(tu) = data.get("start").and_then(|s| s.get("toolUse")) {
                    let name = tu.get("name").and_then(Value::as_str).unwrap_or_default();
                    if self.json_mode.0.as_deref() == Some(name) {
                        self.blocks.push((index, Block::JsonText));
                        self.saw_json_text = true;
                    } else {
                        let id = tu
                            .get("toolUseId")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let tool = self.next_tool;
                        self.next_tool = self.next_tool.saturating_add(1);
                        self.saw_tool = true;
                        self.blocks.push((index, Block::Tool(tool)));
                        self.delta(
                            Delta {
                                tool_calls: Some(vec![ToolCallDelta::start(tool, id, name)]),
                                ..Default::default()
                            },
                            out,
                        );
                    }
                }
            }
            "contentBlockDelta" => {
                let index = data
                    .get("contentBlockIndex")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let Some(delta) = data.get("delta") else {
                    return Ok(());
                };
                if let Some(t) = delta.get("text").and_then(Value::as_str) {
                    if !t.is_empty() {
                        self.delta(Delta::text(t), out);
                    }
                } else if let Some(input) = delta
                    .get("toolUse")
                    .and_then(|t| t.get("input"))
                    .and_then(Value::as_str)
                {
                    match self.block(index) {
                        Some(Block::Tool(tool)) if !input.is_empty() => {
                            self.delta(
                                Delta {
                                    tool_calls: Some(vec![ToolCallDelta::arguments(tool, input)]),
                                    ..Default::default()
                                },
                                out,
                            );
                        }
                        Some(Block::JsonText) if !input.is_empty() => {
                            self.delta(Delta::text(input), out)
                        }
                        _ => {}
                    }
                } else if let Some(rc) = delta.get("reasoningContent") {
                    if let Some(t) = rc.get("text").and_then(Value::as_str) {
                        if !t.is_empty() {
                            self.delta(
                                Delta {
                                    reasoning_content: Some(t.to_owned()),
                                    ..Default::default()
                                },
                                out,
                            );
                        }
                    } else if let Some(sig) = rc.get("signature").and_then(Value::as_str) {
                        let mut d = Delta::default();
                        let _ = d.extra.insert(
                            "thinking_blocks",
                            &json!([{"type": "thinking", "thinking": "", "signature": sig}]),
                        );
                        self.delta(d, out);
                    } else if let Some(data) = rc.get("redactedContent").and_then(Value::as_str) {
                        let mut d = Delta::default();
                        let _ = d.extra.insert(
                            "thinking_blocks",
                            &json!([{"type": "redacted_thinking", "data": data}]),
                        );
                        self.delta(d, out);
                    }
                }
            }
            "contentBlockStop" => {}
            "messageStop" => {
                let reason = data
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                let finish = match stop_reason(reason) {
                    Stop::Malformed(r) => return Err(malformed(&r)),
                    Stop::Finish(FinishReason::ToolCalls)
                        if self.saw_json_text && !self.saw_tool =>
                    {
                        FinishReason::Stop
                    }
                    Stop::Finish(f) => f,
                };
                self.start(out);
                out.push_back(self.chunk(ChunkChoice::finish(0, finish)));
                self.finished = true;
            }
            "metadata" => {
                let usage: TokenUsage = data
                    .get("usage")
                    .cloned()
                    .map(serde_json::from_value)
                    .transpose()
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::BadGateway,
                            format!("the Bedrock usage is not valid: {e}"),
                        )
                    })?
                    .unwrap_or_default();
                let mut chunk = self.base.clone();
                chunk.usage = Some(usage.to_openai());
                out.push_back(chunk);
                self.done = true;
            }
            _ => {}
        }
        Ok(())
    }
}

fn frame_error(e: FrameError) -> Error {
    match e {
        FrameError::Truncated { .. } => Error::new(
            ErrorKind::Connection,
            "the upstream closed the stream in the middle of an event",
        ),
        other => Error::new(
            ErrorKind::BadGateway,
            format!("the Bedrock stream is corrupt: {other}"),
        ),
    }
}

impl StreamDecoder for ConverseStreamDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        self.frames.push(bytes);
        while !self.done {
            match self.frames.next_message().map_err(frame_error)? {
                Some(msg) => self.message(msg, out)?,
                None => break,
            }
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        self.frames.finish().map_err(frame_error)?;
        Err(Error::new(
            ErrorKind::Connection,
            if self.finished {
                "the upstream closed the stream before its usage metadata"
            } else {
                "the upstream closed the stream before it finished"
            },
        ))
    }

    fn is_done(&self) -> bool {
        self.done
    }
}
