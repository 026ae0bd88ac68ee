//! `streamGenerateContent?alt=sse` → OpenAI chunks, event by event.
//!
//! Each SSE event is a whole `GenerateContentResponse` holding only the new
//! parts. Text becomes `content` deltas, `thought` parts `reasoning_content`
//! deltas; a `functionCall` arrives complete and becomes two chunks — the
//! opening delta (index, id, type, name, `arguments: ""`) and one with the
//! whole arguments. `usageMetadata` repeats on every event: the last one is
//! sent as the final usage chunk when the body ends (Gemini has no end
//! marker). A body that ends before any candidate finished is a
//! `Connection` error; `{"error":…}` inside the stream is an error item.

use super::error::in_band;
use super::response::{Finish, call_arguments, call_id, failed, finish_reason, logprobs, usage};
use super::wire::{GenerateContentResponse, UsageMetadata};
use crate::Secret;
use crate::error::{Error, ErrorKind};
use crate::provider::sse_stream::EventTranslator;
use crate::sse::SseEvent;
use crate::types::{
    ChatChunk, ChatRequestBody, ChunkChoice, Delta, FinishReason, Role, ToolCallDelta,
};
use std::collections::VecDeque;
use std::sync::Arc;

/// Most candidates tracked in one stream (`n` is small; this bounds memory on bad input).
const MAX_CANDIDATES: usize = 64;

#[derive(Default, Clone)]
struct ChoiceState {
    started: bool,
    tool_calls: u32,
    finished: bool,
    output_chars: u64,
}

/// Translates Gemini stream events into OpenAI chunks.
pub(crate) struct StreamTranslator {
    id: String,
    model: String,
    created: i64,
    identified: bool,
    choices: Vec<ChoiceState>,
    usage: Option<UsageMetadata>,
    blocked: bool,
    request: Arc<ChatRequestBody>,
    secrets: Vec<Secret>,
}

impl StreamTranslator {
    pub(crate) fn new(model: &str, request: Arc<ChatRequestBody>, secrets: Vec<Secret>) -> Self {
        StreamTranslator {
            id: format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
            model: model.to_owned(),
            created: crate::util::unix_now(),
            identified: false,
            choices: Vec::new(),
            usage: None,
            blocked: false,
            request,
            secrets,
        }
    }

    fn chunk(&self, choice: ChunkChoice) -> ChatChunk {
        ChatChunk::new(self.id.clone(), self.model.clone(), self.created).with_choice(choice)
    }

    fn state(&mut self, index: usize) -> Result<&mut ChoiceState, Error> {
        if index >= MAX_CANDIDATES {
            return Err(Error::new(
                ErrorKind::BadGateway,
                "the upstream stream names a candidate index out of range",
            ));
        }
        if self.choices.len() <= index {
            self.choices.resize(index + 1, ChoiceState::default());
        }
        Ok(&mut self.choices[index])
    }

    /// Emits a delta for choice `index`, adding the role to its first one.
    fn emit(
        &mut self,
        index: usize,
        mut delta: Delta,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<(), Error> {
        let st = self.state(index)?;
        if !st.started {
            st.started = true;
            delta.role = Some(Role::Assistant);
        }
        let choice = ChunkChoice::new(index as u32, delta);
        out.push_back(self.chunk(choice));
        Ok(())
    }

    fn handle(
        &mut self,
        resp: GenerateContentResponse,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<(), Error> {
        if !self.identified {
            self.identified = true;
            if let Some(id) = resp.response_id.as_deref().filter(|i| !i.is_empty()) {
                self.id = id.to_owned();
            }
            if let Some(m) = resp.model_version.as_deref().filter(|m| !m.is_empty()) {
                self.model = m.to_owned();
            }
        }
        if let Some(u) = resp.usage_metadata {
            self.usage = Some(u);
        }
        if resp.candidates.is_empty() {
            if resp
                .prompt_feedback
                .as_ref()
                .is_some_and(|f| f.block_reason.is_some())
                && !self.blocked
            {
                self.blocked = true;
                self.emit(0, Delta::text(""), out)?;
                self.state(0)?.finished = true;
                out.push_back(self.chunk(ChunkChoice::finish(0, FinishReason::ContentFilter)));
            }
            return Ok(());
        }
        for (pos, cand) in resp.candidates.iter().enumerate() {
            let index = cand.index.map_or(pos, |i| i as usize);
            let mut logprobs_pending = cand.logprobs_result.as_ref().map(logprobs);
            for part in cand.content.iter().flat_map(|c| &c.parts) {
                if let Some(call) = &part.function_call {
                    let id = call_id(call, part.thought_signature.as_deref());
                    let args = call_arguments(call);
                    let st = self.state(index)?;
                    let n = st.tool_calls;
                    st.tool_calls += 1;
                    st.output_chars += args.len() as u64;
                    let start = Delta {
                        tool_calls: Some(vec![ToolCallDelta::start(n, id, call.name.clone())]),
                        ..Default::default()
                    };
                    self.emit(index, start, out)?;
                    let rest = Delta {
                        tool_calls: Some(vec![ToolCallDelta::arguments(n, args)]),
                        ..Default::default()
                    };
                    self.emit(index, rest, out)?;
                } else if let Some(text) = part.text.as_deref().filter(|t| !t.is_empty()) {
                    self.state(index)?.output_chars += text.chars().count() as u64;
                    let delta = if part.is_thought() {
                        Delta {
                            reasoning_content: Some(text.to_owned()),
                            ..Default::default()
                        }
                    } else {
                        Delta::text(text)
                    };
                    self.emit(index, delta, out)?;
                    if let (Some(lp), Some(last)) = (logprobs_pending.take(), out.back_mut())
                        && let Some(c) = last.choices.first_mut()
                    {
                        c.logprobs = Some(lp);
                    }
                }
            }
            if let Some(reason) = cand.finish_reason.as_deref() {
                let st = self.state(index)?;
                if st.finished {
                    continue;
                }
                let reason = match finish_reason(reason, st.tool_calls > 0) {
                    Finish::Reason(r) => r,
                    Finish::Failed => return Err(failed(reason, cand.finish_message.as_deref())),
                };
                if !st.started {
                    // A candidate stopped before saying anything (a safety stop).
                    self.emit(index, Delta::text(""), out)?;
                }
                self.state(index)?.finished = true;
                out.push_back(self.chunk(ChunkChoice::finish(index as u32, reason)));
            }
        }
        Ok(())
    }

    fn complete(&self) -> bool {
        let started: Vec<&ChoiceState> = self.choices.iter().filter(|c| c.started).collect();
        self.blocked || (!started.is_empty() && started.iter().all(|c| c.finished))
    }

    fn final_usage(&self) -> crate::types::Usage {
        match &self.usage {
            Some(u) => usage(u),
            None => {
                // Gemini always reports usage; should it not, bill an estimate.
                let prompt = crate::tokens::estimate_prompt(&self.request);
                let completion: u64 = self
                    .choices
                    .iter()
                    .map(|c| c.output_chars.div_ceil(4))
                    .sum();
                crate::types::Usage::new(prompt, completion)
            }
        }
    }
}

impl EventTranslator for StreamTranslator {
    fn event(&mut self, event: SseEvent, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        let data = event.data.trim();
        if data.is_empty() || event.is_done() {
            return Ok(());
        }
        let resp: GenerateContentResponse = serde_json::from_str(data).map_err(|e| {
            Error::new(
                ErrorKind::BadGateway,
                format!("the upstream stream event is not valid: {e}"),
            )
        })?;
        if let Some(err) = &resp.error {
            let secrets: Vec<&str> = self.secrets.iter().map(Secret::expose).collect();
            return Err(in_band(err.get(), &secrets));
        }
        self.handle(resp, out)
    }

    fn end(&mut self, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if !self.complete() {
            return Err(Error::new(
                ErrorKind::Connection,
                "the upstream closed the stream before it finished",
            ));
        }
        let mut chunk = ChatChunk::new(self.id.clone(), self.model.clone(), self.created);
        chunk.usage = Some(self.final_usage());
        out.push_back(chunk);
        Ok(())
    }

    fn is_done(&self) -> bool {
        false
    }
}
