//! Anthropic message → OpenAI [`ChatCompletion`] (PROTOCOLS.md §4.2).
//!
//! Text blocks are joined into `content`; each `tool_use` becomes a tool call
//! (ids kept, `input` as a compact JSON string with its key order); `thinking`
//! text becomes `reasoning_content`, and the thinking blocks themselves —
//! signatures included — are kept in the message's `thinking_blocks` (LiteLLM's
//! field) so a client can send them back on the next turn. Usage follows
//! OpenAI semantics (cache reads and writes are part of `prompt_tokens`).

use super::request::JSON_TOOL;
use super::wire::{MessageResponse, finish_reason, minify_json};
use crate::error::{Error, ErrorKind};
use crate::types::{ChatCompletion, Choice, FinishReason, ResponseMessage, ToolCall};
use serde_json::json;
use serde_json::value::RawValue;

/// The extra field of a [`ChatCompletion`] that carries the upstream's native
/// message verbatim when the request came through the `/v1/messages` door.
pub const NATIVE_MESSAGE_FIELD: &str = "anthropic_message";

/// Translates a successful answer. With `json_tool`, the forced JSON tool's
/// input is the answer's content. With `native`, the original body is kept in
/// [`NATIVE_MESSAGE_FIELD`].
pub(crate) fn completion(
    body: &[u8],
    json_tool: bool,
    native: bool,
) -> Result<ChatCompletion, Error> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(Error::new(
            ErrorKind::BadGateway,
            "the upstream answer is not a JSON object",
        ));
    }
    let msg: MessageResponse = crate::types::from_json(body).map_err(|e| {
        Error::new(
            ErrorKind::BadGateway,
            format!("the upstream answer is not a valid Anthropic message: {e}"),
        )
    })?;
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut thinking_blocks = Vec::new();
    let mut calls = Vec::new();
    for b in msg.content {
        match b.kind.as_str() {
            "text" => text
                .get_or_insert_with(String::new)
                .push_str(b.text.as_deref().unwrap_or("")),
            "tool_use" => {
                let args = b
                    .input
                    .as_deref()
                    .map_or_else(|| "{}".to_owned(), |raw| minify_json(raw.get()));
                let name = b.name.unwrap_or_default();
                if json_tool && name == JSON_TOOL {
                    text.get_or_insert_with(String::new).push_str(&args);
                } else {
                    calls.push(ToolCall::function(b.id.unwrap_or_default(), name, args));
                }
            }
            "thinking" => {
                let t = b.thinking.unwrap_or_default();
                reasoning.get_or_insert_with(String::new).push_str(&t);
                thinking_blocks.push(json!({
                    "type": "thinking",
                    "thinking": t,
                    "signature": b.signature.unwrap_or_default(),
                }));
            }
            "redacted_thinking" => {
                thinking_blocks.push(json!({
                    "type": "redacted_thinking",
                    "data": b.data.unwrap_or_default(),
                }));
            }
            // Server tool blocks, citations-only blocks and future types have no OpenAI form.
            _ => {}
        }
    }
    let mut finish = finish_reason(msg.stop_reason.as_deref());
    if finish == FinishReason::ToolCalls && calls.is_empty() {
        // Only the JSON tool was called: that is the answer, not a tool call.
        finish = FinishReason::Stop;
    }
    let mut message = ResponseMessage {
        content: text,
        reasoning_content: reasoning,
        tool_calls: (!calls.is_empty()).then_some(calls),
        ..Default::default()
    };
    if !thinking_blocks.is_empty() {
        message
            .extra
            .insert("thinking_blocks", &thinking_blocks)
            .map_err(|e| Error::internal(e.to_string()))?;
    }
    let mut c = ChatCompletion::new(msg.id, msg.model, crate::util::unix_now());
    c.choices.push(Choice::new(0, message, finish));
    c.usage = Some(msg.usage.unwrap_or_default().to_openai());
    if native {
        let raw: Box<RawValue> = serde_json::from_slice(body)
            .map_err(|e| Error::new(ErrorKind::BadGateway, e.to_string()))?;
        c.extra.insert_raw(NATIVE_MESSAGE_FIELD, raw);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Role;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/protocols/anthropic/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// The body of the first exchange of an `.http.txt` recording.
    fn http_body(path: &str) -> Vec<u8> {
        let text = String::from_utf8(fixture(path)).unwrap();
        let resp = text.split("<<< RESPONSE").nth(1).unwrap();
        let body = resp
            .trim_start()
            .lines()
            .skip_while(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        body.trim().as_bytes().to_vec()
    }

    fn usage_of(c: &ChatCompletion) -> (u64, u64, u64, u64, u64) {
        let u = c.usage.as_ref().unwrap();
        (
            u.prompt_tokens,
            u.completion_tokens,
            u.total_tokens,
            u.cached_tokens(),
            u.cache_write_tokens(),
        )
    }

    #[test]
    fn text_answer_from_the_recorded_exchange() {
        let c = completion(&http_body("message_text.http.txt"), false, false).unwrap();
        assert_eq!(c.id, "msg_014pVpaDLxzAdWjwpuN7rQQX");
        assert_eq!(c.model, "claude-3-opus-20240229");
        assert_eq!(c.object, "chat.completion");
        assert_eq!(c.choices.len(), 1);
        let ch = &c.choices[0];
        assert_eq!(ch.index, 0);
        assert_eq!(ch.message.role, Role::Assistant);
        assert_eq!(
            ch.message.content.as_deref(),
            Some(
                "Hello! As an AI language model, I don't have feelings, but I'm functioning properly and ready to assist you. How can I help you today?"
            )
        );
        assert!(ch.message.tool_calls.is_none());
        assert_eq!(ch.finish_reason, Some(FinishReason::Stop));
        assert_eq!(usage_of(&c), (13, 35, 48, 0, 0));
        assert!(c.extra.get(NATIVE_MESSAGE_FIELD).is_none());
    }

    #[test]
    fn max_tokens_answer_is_length() {
        let c = completion(&http_body("message_beta_header.http.txt"), false, false).unwrap();
        assert_eq!(c.id, "msg_01UHukvv2HJwxaYkFbr5FFuN");
        assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Length));
        assert!(
            c.choices[0]
                .message
                .content
                .as_deref()
                .unwrap()
                .ends_with("Could you please provide the city")
        );
        assert_eq!(usage_of(&c), (611, 100, 711, 0, 0));
    }

    #[test]
    fn single_tool_use() {
        let c = completion(&fixture("tool_use.resp.json"), false, false).unwrap();
        assert_eq!(c.id, "msg_01RMQBcKf2dxTq6qfi31BBTz");
        assert_eq!(c.model, "claude-haiku-4-5-20251001");
        let ch = &c.choices[0];
        assert_eq!(ch.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(ch.message.content, None);
        let calls = ch.message.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].id, "toolu_01A9HHF5Ezy3oBrKmSgfASm9");
        assert_eq!(calls[0].kind, "function");
        assert_eq!(calls[0].function.name, "get_weather");
        assert_eq!(
            calls[0].function.arguments,
            r#"{"location":"San Francisco, CA","units":"f"}"#
        );
        assert_eq!(usage_of(&c), (656, 74, 730, 0, 0));
    }

    #[test]
    fn text_then_parallel_tool_uses_in_order() {
        let c = completion(&fixture("parallel_tool_use.resp.json"), false, false).unwrap();
        let ch = &c.choices[0];
        assert_eq!(
            ch.message.content.as_deref(),
            Some(
                "I'll help you find out who is the youngest by retrieving information about each family member. I'll retrieve their entity information to compare their ages."
            )
        );
        let calls = ch.message.tool_calls.as_ref().unwrap();
        let got: Vec<(&str, &str, &str)> = calls
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
            got,
            vec![
                (
                    "toolu_0167cfEnoQaPviGdVXA95zcu",
                    "retrieve_entity_info",
                    r#"{"name":"Alice"}"#
                ),
                (
                    "toolu_01EEe2V5HD1Ac4rKiUR4HD2T",
                    "retrieve_entity_info",
                    r#"{"name":"Bob"}"#
                ),
                (
                    "toolu_01XFyAjstT3966qvRynZyVPo",
                    "retrieve_entity_info",
                    r#"{"name":"Charlie"}"#
                ),
                (
                    "toolu_013mnQZbgtK2oe3Mo3XKJsx3",
                    "retrieve_entity_info",
                    r#"{"name":"Daisy"}"#
                ),
            ]
        );
        assert_eq!(ch.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(usage_of(&c), (423, 202, 625, 0, 0));
    }

    #[test]
    fn followups_and_image_answers() {
        let c = completion(
            &fixture("parallel_tool_use_followup.resp.json"),
            false,
            false,
        )
        .unwrap();
        assert_eq!(c.id, "msg_01JVqZPgDwmnyb2kKC3MwCVf");
        assert!(c.choices[0].message.content.as_deref().unwrap().starts_with(
            "Based on the retrieved information, we can see the family relationships:\n- Alice and Bob are married"
        ));
        assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(usage_of(&c), (771, 77, 848, 0, 0));

        let c = completion(
            &fixture("tool_result_error_followup.resp.json"),
            false,
            false,
        )
        .unwrap();
        assert_eq!(c.id, "msg_01GJyhkguJrrqMbZNzEybYFL");
        assert!(c.choices[0].message.content.as_deref().unwrap().starts_with(
            "I apologize, but I'm getting an error when trying to fetch the weather for San Francisco."
        ));
        assert_eq!(usage_of(&c), (760, 63, 823, 0, 0));

        let c = completion(&fixture("image_url_input.resp.json"), false, false).unwrap();
        assert_eq!(c.id, "msg_01TQMY6yjmVxHiAh8qEdausZ");
        assert!(
            c.choices[0]
                .message
                .content
                .as_deref()
                .unwrap()
                .starts_with("This is a potato.")
        );
        assert_eq!(usage_of(&c), (296, 91, 387, 0, 0));

        let c = completion(&fixture("image_base64_input.resp.json"), false, false).unwrap();
        assert_eq!(c.id, "msg_01KHctj7AyWoJWmwcFoXsDH6");
        assert!(
            c.choices[0]
                .message
                .content
                .as_deref()
                .unwrap()
                .starts_with("This is a **potato**")
        );
        assert_eq!(usage_of(&c), (276, 92, 368, 0, 0));
    }

    #[test]
    fn prompt_cache_read_and_write_are_in_the_prompt() {
        // input 3 + cache read 1111 (no write).
        let c = completion(&fixture("prompt_cache.resp.json"), false, false).unwrap();
        assert_eq!(c.id, "msg_01UUPT9QdZnZSRzcQJkjG25U");
        assert_eq!(c.model, "claude-sonnet-4-5-20250929");
        assert_eq!(usage_of(&c), (1114, 406, 1520, 1111, 0));
        let u = c.usage.as_ref().unwrap();
        assert_eq!(u.cache_read_input_tokens, Some(1111));
        assert_eq!(u.cache_creation_input_tokens, Some(0));
        // input 3 + cache write 418 + cache read 1111.
        let c = completion(&fixture("prompt_cache_hit.resp.json"), false, false).unwrap();
        assert_eq!(
            c.choices[0].message.content.as_deref(),
            Some(
                "Python is a beginner-friendly, versatile programming language widely used for web development, data science, machine learning, automation, and scientific computing."
            )
        );
        assert_eq!(usage_of(&c), (1532, 33, 1565, 1111, 418));
    }

    #[test]
    fn thinking_becomes_reasoning_with_signed_blocks_kept() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5",
            "content":[{"type":"thinking","thinking":"Let me think.","signature":"sig=="},
                       {"type":"redacted_thinking","data":"opaque"},
                       {"type":"text","text":"A"},{"type":"server_tool_use","id":"srv","name":"web_search","input":{}},
                       {"type":"text","text":"B"}],
            "stop_reason":"pause_turn","usage":{"input_tokens":5,"output_tokens":7}}"#;
        let c = completion(body, false, true).unwrap();
        let m = &c.choices[0].message;
        assert_eq!(m.content.as_deref(), Some("AB"));
        assert_eq!(m.reasoning_content.as_deref(), Some("Let me think."));
        let blocks: serde_json::Value =
            serde_json::from_str(m.extra.get("thinking_blocks").unwrap().get()).unwrap();
        assert_eq!(
            blocks,
            json!([
                {"type": "thinking", "thinking": "Let me think.", "signature": "sig=="},
                {"type": "redacted_thinking", "data": "opaque"}
            ])
        );
        assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
        // The native body rides along, verbatim.
        assert_eq!(
            c.extra.get(NATIVE_MESSAGE_FIELD).unwrap().get(),
            std::str::from_utf8(body).unwrap()
        );
    }

    #[test]
    fn json_tool_answer_is_content() {
        let body = br#"{"id":"msg_2","model":"m","content":[{"type":"tool_use","id":"t","name":"json_tool_call","input":{"a": 1}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":2}}"#;
        let c = completion(body, true, false).unwrap();
        assert_eq!(c.choices[0].message.content.as_deref(), Some(r#"{"a":1}"#));
        assert!(c.choices[0].message.tool_calls.is_none());
        assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    }

    #[test]
    fn garbage_is_a_bad_gateway_not_a_panic() {
        for body in [&b"not json"[..], b"[]", b"{\"content\": 5}", b""] {
            let err = completion(body, false, false).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadGateway);
        }
        let c = completion(b"{}", false, false).unwrap();
        assert_eq!(c.choices[0].message.content, None);
        assert_eq!(c.usage.unwrap().total_tokens, 0);
    }
}
