//! Bedrock Converse response → OpenAI chat completion; shared pieces of the
//! stream translation (stop reasons, usage).

use super::request::JsonMode;
use crate::error::{Error, ErrorKind};
use crate::types::{ChatCompletion, Choice, FinishReason, ResponseMessage, ToolCall, Usage};
use serde::Deserialize;
use serde_json::{Value, json};

/// Converse `usage` (also the `metadata.usage` of a stream).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    /// Input tokens, cache reads and writes excluded.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    /// Tokens written to the prompt cache.
    #[serde(default)]
    pub cache_write_input_tokens: Option<u64>,
}

impl TokenUsage {
    /// OpenAI usage: prompt = input + cache read + cache write.
    pub fn to_openai(&self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_write_input_tokens.unwrap_or(0);
        let prompt = self.input_tokens.saturating_add(read).saturating_add(write);
        let mut u = Usage::new(prompt, self.output_tokens);
        u.total_tokens = prompt.saturating_add(self.output_tokens);
        if let Some(r) = self.cache_read_input_tokens {
            u = u.with_cached(r);
            u.cache_read_input_tokens = Some(r);
        }
        if let Some(w) = self.cache_write_input_tokens {
            u = u.with_cache_write(w);
        }
        u
    }
}

/// What a `stopReason` means for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// A normal finish.
    Finish(FinishReason),
    /// The model produced output Bedrock could not parse.
    Malformed(String),
}

/// Maps a Converse `stopReason` (PROTOCOLS.md §1.2). Unknown values are `stop`.
pub fn stop_reason(reason: &str) -> Stop {
    match reason {
        "end_turn" | "stop_sequence" => Stop::Finish(FinishReason::Stop),
        "max_tokens" | "model_context_window_exceeded" => Stop::Finish(FinishReason::Length),
        "tool_use" => Stop::Finish(FinishReason::ToolCalls),
        "guardrail_intervened" | "content_filtered" => Stop::Finish(FinishReason::ContentFilter),
        "malformed_model_output" | "malformed_tool_use" => Stop::Malformed(reason.to_owned()),
        _ => Stop::Finish(FinishReason::Stop),
    }
}

/// The error for a malformed-output stop.
pub fn malformed(reason: &str) -> Error {
    Error::new(
        ErrorKind::BadGateway,
        format!("Bedrock stopped the generation: the model produced unusable output (`{reason}`)"),
    )
    .with_code(reason.to_owned())
}

#[derive(Deserialize)]
struct ConverseResponse {
    #[serde(default)]
    output: Option<Output>,
    #[serde(default, rename = "stopReason")]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<TokenUsage>,
    #[serde(default)]
    trace: Option<Value>,
}

#[derive(Deserialize)]
struct Output {
    #[serde(default)]
    message: Option<OutMessage>,
}

#[derive(Deserialize)]
struct OutMessage {
    #[serde(default)]
    content: Vec<Value>,
}

/// Parses a Converse answer into an OpenAI completion with the given id, model and time.
pub fn completion(
    body: &[u8],
    id: String,
    model: &str,
    created: i64,
    json_mode: &JsonMode,
) -> Result<ChatCompletion, Error> {
    let resp: ConverseResponse = crate::types::from_json(body).map_err(|e| {
        Error::new(
            ErrorKind::BadGateway,
            format!("the Bedrock answer is not valid: {e}"),
        )
    })?;
    let mut message = ResponseMessage::default();
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut thinking_blocks: Vec<Value> = Vec::new();
    let mut calls: Vec<ToolCall> = Vec::new();
    let mut json_text: Option<String> = None;
    let blocks = resp
        .output
        .and_then(|o| o.message)
        .map(|m| m.content)
        .unwrap_or_default();
    for block in &blocks {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.get_or_insert_with(String::new).push_str(t);
        } else if let Some(tu) = block.get("toolUse") {
            let name = tu.get("name").and_then(Value::as_str).unwrap_or_default();
            let input = tu.get("input").cloned().unwrap_or_else(|| json!({}));
            let args = input.to_string();
            if json_mode.0.as_deref() == Some(name) {
                json_text.get_or_insert_with(String::new).push_str(&args);
                continue;
            }
            let id = tu
                .get("toolUseId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            calls.push(ToolCall::function(id, name, args));
        } else if let Some(rc) = block.get("reasoningContent") {
            if let Some(rt) = rc.get("reasoningText") {
                let t = rt.get("text").and_then(Value::as_str).unwrap_or_default();
                reasoning.get_or_insert_with(String::new).push_str(t);
                let mut tb = json!({"type": "thinking", "thinking": t});
                if let Some(sig) = rt.get("signature").and_then(Value::as_str) {
                    tb["signature"] = json!(sig);
                }
                thinking_blocks.push(tb);
            } else if let Some(data) = rc.get("redactedContent").and_then(Value::as_str) {
                thinking_blocks.push(json!({"type": "redacted_thinking", "data": data}));
            }
        }
    }
    let json_only = json_text.is_some() && calls.is_empty();
    if let Some(j) = json_text {
        text = Some(j);
    }
    message.content = text;
    message.reasoning_content = reasoning;
    if !thinking_blocks.is_empty() {
        let _ = message.extra.insert("thinking_blocks", &thinking_blocks);
    }
    if !calls.is_empty() {
        message.tool_calls = Some(calls);
    }
    let finish = match resp.stop_reason.as_deref().map(stop_reason) {
        Some(Stop::Malformed(r)) => return Err(malformed(&r)),
        Some(Stop::Finish(FinishReason::ToolCalls)) if json_only => FinishReason::Stop,
        Some(Stop::Finish(f)) => f,
        None => FinishReason::Stop,
    };
    let mut c = ChatCompletion::new(id, model, created);
    c.choices.push(Choice::new(0, message, finish));
    c.usage = Some(resp.usage.unwrap_or_default().to_openai());
    if let Some(trace) = resp.trace {
        let _ = c.extra.insert("trace", &trace);
    }
    Ok(c)
}
