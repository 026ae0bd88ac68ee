//! Anthropic Messages wire types for what comes back from the API (answers,
//! stream events, errors), plus small helpers shared with the `/v1/messages`
//! front door.
//!
//! Every struct is lenient: fields are optional and unknown fields are ignored,
//! so a field Anthropic adds (or leaves out) never fails a request.

use crate::types::{FinishReason, Usage};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A complete (non-streamed) answer: `{"type":"message", …}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct MessageResponse {
    #[serde(default)]
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) model: String,
    #[serde(default)]
    pub(crate) content: Vec<Block>,
    #[serde(default)]
    pub(crate) stop_reason: Option<String>,
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
}

/// One content block of an answer, as a flat struct: serde cannot buffer a
/// [`RawValue`] inside an internally tagged enum, and `input` must stay raw to
/// keep the model's key order.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Block {
    /// `text`, `tool_use`, `thinking`, `redacted_thinking`, `server_tool_use`, …
    #[serde(rename = "type", default)]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) text: Option<String>,
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) input: Option<Box<RawValue>>,
    #[serde(default)]
    pub(crate) thinking: Option<String>,
    #[serde(default)]
    pub(crate) signature: Option<String>,
    #[serde(default)]
    pub(crate) data: Option<String>,
}

/// Token counts as Anthropic reports them. `input_tokens` EXCLUDES cache reads
/// and writes. Every field is optional: a `message_delta` carries only the
/// counts that changed, and absent counts must not overwrite known ones.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub(crate) input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) output_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Takes every count `newer` reports (counts are cumulative: replace, never add).
    pub(crate) fn update(&mut self, newer: &WireUsage) {
        let take = |mine: &mut Option<u64>, theirs: Option<u64>| {
            if theirs.is_some() {
                *mine = theirs;
            }
        };
        take(&mut self.input_tokens, newer.input_tokens);
        take(&mut self.output_tokens, newer.output_tokens);
        take(
            &mut self.cache_creation_input_tokens,
            newer.cache_creation_input_tokens,
        );
        take(
            &mut self.cache_read_input_tokens,
            newer.cache_read_input_tokens,
        );
    }

    /// OpenAI semantics: `prompt = input + cache writes + cache reads`,
    /// cached = reads, cache writes kept as `cache_creation_input_tokens`.
    pub(crate) fn to_openai(&self) -> Usage {
        // Counts beyond any real request are capped so sums can never overflow.
        let cap = |v: Option<u64>| v.unwrap_or(0).min(1 << 50);
        let read = cap(self.cache_read_input_tokens);
        let written = cap(self.cache_creation_input_tokens);
        let prompt = cap(self.input_tokens) + read + written;
        let mut u = Usage::new(prompt, cap(self.output_tokens)).with_cached(read);
        if self.cache_creation_input_tokens.is_some() {
            u = u.with_cache_write(written);
        }
        if self.cache_read_input_tokens.is_some() {
            u.cache_read_input_tokens = Some(read);
        }
        u
    }
}

/// `stop_reason` → OpenAI `finish_reason` (PROTOCOLS.md §1.2). Unknown or
/// missing values are `stop`.
pub(crate) fn finish_reason(stop_reason: Option<&str>) -> FinishReason {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// One streamed event's `data`. Which fields are set depends on `type`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamEvent {
    #[serde(rename = "type", default)]
    pub(crate) kind: String,
    /// `message_start`.
    #[serde(default)]
    pub(crate) message: Option<StartMessage>,
    /// `content_block_*`.
    #[serde(default)]
    pub(crate) index: Option<u32>,
    /// `content_block_start`.
    #[serde(default)]
    pub(crate) content_block: Option<Block>,
    /// `content_block_delta` and `message_delta`.
    #[serde(default)]
    pub(crate) delta: Option<EventDelta>,
    /// `message_delta`.
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
}

/// The message of a `message_start` event.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StartMessage {
    #[serde(default)]
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) model: String,
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
}

/// The `delta` of a `content_block_delta` (typed) or `message_delta` (untyped).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventDelta {
    #[serde(rename = "type", default)]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) text: Option<String>,
    #[serde(default)]
    pub(crate) partial_json: Option<String>,
    #[serde(default)]
    pub(crate) thinking: Option<String>,
    #[serde(default)]
    pub(crate) signature: Option<String>,
    #[serde(default)]
    pub(crate) stop_reason: Option<String>,
}

/// The error envelope: `{"type":"error","error":{"type":…,"message":…},"request_id":…}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorEnvelope {
    #[serde(default)]
    pub(crate) error: Option<ErrorBody>,
    /// Some proxies in front of Anthropic answer with a bare `message`.
    #[serde(default)]
    pub(crate) message: Option<String>,
}

/// The inner error object.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(rename = "type", default)]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<String>,
}

/// Removes insignificant whitespace from JSON text (keeping key order and
/// string contents as they are). Used to turn a tool's `input` object into
/// OpenAI's compact `arguments` string.
pub(crate) fn minify_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minify_keeps_strings_and_order() {
        assert_eq!(
            minify_json("{ \"b\" : 1,\n  \"a\": \"x y \\\" z\" }"),
            r#"{"b":1,"a":"x y \" z"}"#
        );
        assert_eq!(minify_json("{}"), "{}");
    }

    #[test]
    fn usage_counts_cache_in_the_prompt() {
        let u = WireUsage {
            input_tokens: Some(3),
            output_tokens: Some(33),
            cache_creation_input_tokens: Some(418),
            cache_read_input_tokens: Some(1111),
        }
        .to_openai();
        assert_eq!(u.prompt_tokens, 1532);
        assert_eq!(u.completion_tokens, 33);
        assert_eq!(u.total_tokens, 1565);
        assert_eq!(u.cached_tokens(), 1111);
        assert_eq!(u.cache_write_tokens(), 418);
    }

    #[test]
    fn unknown_stop_reasons_are_stop() {
        assert_eq!(finish_reason(Some("pause_turn")), FinishReason::Stop);
        assert_eq!(finish_reason(Some("something_new")), FinishReason::Stop);
        assert_eq!(finish_reason(None), FinishReason::Stop);
        assert_eq!(
            finish_reason(Some("model_context_window_exceeded")),
            FinishReason::Length
        );
    }
}
