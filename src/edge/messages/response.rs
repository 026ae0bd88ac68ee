//! OpenAI [`ChatCompletion`] → Anthropic message (for a non-Anthropic
//! deployment), or the upstream's own message (for an Anthropic one).

use crate::error::Error;
use crate::provider::anthropic::NATIVE_MESSAGE_FIELD;
use crate::types::{ChatCompletion, FinishReason, ResponseMessage, Usage};
use serde_json::{Value, json};

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub(crate) fn stop_reason(f: Option<&FinishReason>) -> &'static str {
    match f {
        Some(FinishReason::Length) => "max_tokens",
        Some(FinishReason::ToolCalls | FinishReason::FunctionCall) => "tool_use",
        Some(FinishReason::ContentFilter) => "refusal",
        _ => "end_turn",
    }
}

/// OpenAI usage → Anthropic usage (`input_tokens` excludes cache reads and writes).
pub(crate) fn usage_json(u: Option<&Usage>) -> Value {
    let Some(u) = u else {
        return json!({"input_tokens": 0, "output_tokens": 0});
    };
    let read = u.cached_tokens().min(u.prompt_tokens);
    let written = u.cache_write_tokens().min(u.prompt_tokens - read);
    json!({
        "input_tokens": u.prompt_tokens - read - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": u.completion_tokens,
    })
}

/// A tool call's arguments as the object Anthropic's `input` must be.
pub(crate) fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ if arguments.trim().is_empty() => json!({}),
        _ => {
            tracing::warn!("a tool call's arguments are not a JSON object; sent as {{}}");
            json!({})
        }
    }
}

/// The content blocks of an OpenAI assistant message.
fn blocks(m: &ResponseMessage) -> Vec<Value> {
    let mut out = Vec::new();
    let signed = m
        .extra
        .get("thinking_blocks")
        .and_then(|raw| serde_json::from_str::<Vec<Value>>(raw.get()).ok());
    match (signed, &m.reasoning_content) {
        (Some(list), _) if !list.is_empty() => out.extend(list),
        (_, Some(r)) if !r.is_empty() => {
            out.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
        }
        _ => {}
    }
    for text in [&m.content, &m.refusal].into_iter().flatten() {
        if !text.is_empty() {
            out.push(json!({"type": "text", "text": text}));
        }
    }
    for call in m.tool_calls.iter().flatten() {
        out.push(json!({
            "type": "tool_use",
            "id": call.id,
            "name": call.function.name,
            "input": tool_input(&call.function.arguments),
        }));
    }
    out
}

/// The Anthropic message body for a completion: the upstream's own message
/// verbatim when it came from an Anthropic deployment, a translation otherwise.
pub(crate) fn message_body(c: &ChatCompletion, fallback_id: &str) -> Result<Vec<u8>, Error> {
    if let Some(raw) = c.extra.get(NATIVE_MESSAGE_FIELD) {
        return Ok(raw.get().as_bytes().to_vec());
    }
    let choice = c.choices.first();
    let content = choice.map(|ch| blocks(&ch.message)).unwrap_or_default();
    let mut stop = stop_reason(choice.and_then(|ch| ch.finish_reason.as_ref()));
    if choice.is_some_and(|ch| ch.message.refusal.is_some() && ch.message.content.is_none()) {
        stop = "refusal";
    }
    let id = if c.id.is_empty() { fallback_id } else { &c.id };
    let body = json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": c.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": usage_json(c.usage.as_ref()),
    });
    serde_json::to_vec(&body)
        .map_err(|e| Error::internal(format!("could not encode the answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Choice, ToolCall};

    #[test]
    fn translated_message_with_text_tools_thinking_and_cache_usage() {
        let mut c = ChatCompletion::new("chatcmpl-1", "my-model", 1);
        let message = ResponseMessage {
            content: Some("Checking.".into()),
            reasoning_content: Some("hmm".into()),
            tool_calls: Some(vec![ToolCall::function(
                "call_1",
                "get_weather",
                r#"{"city":"Oslo"}"#,
            )]),
            ..Default::default()
        };
        c.choices
            .push(Choice::new(0, message, FinishReason::ToolCalls));
        c.usage = Some(Usage::new(100, 20).with_cached(60).with_cache_write(10));
        let v: Value = serde_json::from_slice(&message_body(&c, "msg_x").unwrap()).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "my-model",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": ""},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}}
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 30, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 60, "output_tokens": 20}
            })
        );
    }

    #[test]
    fn native_message_is_returned_verbatim() {
        let mut c = ChatCompletion::new("x", "y", 1);
        let raw = r#"{"id":"msg_1","type":"message","content":[{"type":"server_tool_use","id":"s"}],"model":"claude"}"#;
        c.extra.insert_raw(
            NATIVE_MESSAGE_FIELD,
            serde_json::value::RawValue::from_string(raw.to_owned()).unwrap(),
        );
        assert_eq!(message_body(&c, "f").unwrap(), raw.as_bytes());
    }

    #[test]
    fn finish_reasons_and_refusals() {
        assert_eq!(stop_reason(Some(&FinishReason::Length)), "max_tokens");
        assert_eq!(stop_reason(Some(&FinishReason::ContentFilter)), "refusal");
        assert_eq!(stop_reason(None), "end_turn");
        let mut c = ChatCompletion::new("", "m", 1);
        let message = ResponseMessage {
            refusal: Some("no".into()),
            ..Default::default()
        };
        c.choices.push(Choice::new(0, message, FinishReason::Stop));
        let v: Value = serde_json::from_slice(&message_body(&c, "msg_f").unwrap()).unwrap();
        assert_eq!(v["id"], "msg_f");
        assert_eq!(v["stop_reason"], "refusal");
        assert_eq!(v["content"], json!([{"type": "text", "text": "no"}]));
        assert_eq!(v["usage"], json!({"input_tokens": 0, "output_tokens": 0}));
        assert_eq!(tool_input("not json"), json!({}));
        assert_eq!(tool_input(""), json!({}));
    }
}
