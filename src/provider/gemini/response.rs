//! Gemini `GenerateContentResponse` → OpenAI `ChatCompletion` (pure).

use super::request::THOUGHT_SEPARATOR;
use super::wire::{
    Candidate, FunctionCallIn, GenerateContentResponse, LogprobsResult, UsageMetadata,
};
use crate::error::{Error, ErrorKind};
use crate::types::{
    ChatCompletion, Choice, FinishReason, PromptTokensDetails, ResponseMessage, ToolCall, Usage,
};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// What a Gemini `finishReason` means for an OpenAI client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    /// An OpenAI finish reason.
    Reason(FinishReason),
    /// The model failed (`MALFORMED_FUNCTION_CALL`, …): the answer is an error.
    Failed,
}

/// Maps `finishReason` (PROTOCOLS.md §1.2). `STOP` with function calls is
/// `tool_calls`; unknown values are `stop`.
pub(crate) fn finish_reason(reason: &str, has_calls: bool) -> Finish {
    let stopped = if has_calls {
        FinishReason::ToolCalls
    } else {
        FinishReason::Stop
    };
    Finish::Reason(match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION"
        | "MODEL_ARMOR" => FinishReason::ContentFilter,
        "MALFORMED_FUNCTION_CALL"
        | "UNEXPECTED_TOOL_CALL"
        | "TOO_MANY_TOOL_CALLS"
        | "MISSING_THOUGHT_SIGNATURE"
        | "MALFORMED_RESPONSE" => return Finish::Failed,
        _ => stopped,
    })
}

/// The error for a candidate that ended with a failure reason.
pub(crate) fn failed(reason: &str, message: Option<&str>) -> Error {
    let shown: String = reason.chars().take(60).collect();
    let detail = message
        .map(|m| format!(": {}", crate::util::redact(m, &[])))
        .unwrap_or_default();
    Error::new(
        ErrorKind::BadGateway,
        format!("Gemini stopped generating with {shown}{detail}"),
    )
    .with_code(shown)
}

/// OpenAI usage from `usageMetadata` (PROTOCOLS.md §1.3): thoughts are outside
/// `candidatesTokenCount`, tool-use prompt tokens outside `promptTokenCount`.
pub(crate) fn usage(u: &UsageMetadata) -> Usage {
    let prompt = u.prompt_token_count + u.tool_use_prompt_token_count;
    let completion = u.candidates_token_count + u.thoughts_token_count;
    let mut usage = Usage::new(prompt, completion);
    if u.cached_content_token_count > 0 {
        usage = usage.with_cached(u.cached_content_token_count);
    }
    if u.thoughts_token_count > 0 {
        usage = usage.with_reasoning(u.thoughts_token_count);
    }
    let audio: u64 = u
        .prompt_tokens_details
        .iter()
        .filter(|d| d.modality == "AUDIO")
        .map(|d| d.token_count)
        .sum();
    if audio > 0 {
        usage
            .prompt_tokens_details
            .get_or_insert_with(PromptTokensDetails::default)
            .audio_tokens = Some(audio);
    }
    usage
}

/// A fresh OpenAI tool-call id (Gemini gives none on this API).
pub(crate) fn new_call_id() -> String {
    let mut id = String::with_capacity(29);
    id.push_str("call_");
    for _ in 0..24 {
        id.push(fastrand::alphanumeric());
    }
    id
}

/// The OpenAI id of a Gemini function call: Gemini's own id or a fresh one,
/// with the thought signature appended (LiteLLM's `__thought__` convention) so
/// it comes back on the next turn.
pub(crate) fn call_id(call: &FunctionCallIn, signature: Option<&str>) -> String {
    let mut id = match call.id.as_deref().filter(|i| !i.is_empty()) {
        Some(i) => i.to_owned(),
        None => new_call_id(),
    };
    if let Some(sig) = signature.filter(|s| !s.is_empty()) {
        id.push_str(THOUGHT_SEPARATOR);
        id.push_str(sig);
    }
    id
}

/// The arguments of a call as the JSON string OpenAI clients expect.
pub(crate) fn call_arguments(call: &FunctionCallIn) -> String {
    match &call.args {
        Some(raw) => raw.get().to_owned(),
        None => "{}".to_owned(),
    }
}

/// Gemini log probabilities in OpenAI's `logprobs.content` shape.
pub(crate) fn logprobs(l: &LogprobsResult) -> Value {
    let content: Vec<Value> = l
        .chosen_candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let top: Vec<Value> = l
                .top_candidates
                .get(i)
                .map(|t| {
                    t.candidates
                        .iter()
                        .map(|a| {
                            json!({"token": a.token, "logprob": a.log_probability, "bytes": a.token.as_bytes()})
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({"token": c.token, "logprob": c.log_probability, "bytes": c.token.as_bytes(), "top_logprobs": top})
        })
        .collect();
    json!({ "content": content })
}

/// Translates one candidate into a choice.
fn choice(position: usize, c: &Candidate) -> Result<Choice, Error> {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for part in c.content.iter().flat_map(|c| &c.parts) {
        if let Some(call) = &part.function_call {
            calls.push(ToolCall::function(
                call_id(call, part.thought_signature.as_deref()),
                call.name.clone(),
                call_arguments(call),
            ));
        } else if let Some(t) = &part.text {
            if part.is_thought() {
                reasoning.push_str(t);
            } else {
                text.push_str(t);
            }
        }
    }
    let reason = match c.finish_reason.as_deref() {
        Some(r) => match finish_reason(r, !calls.is_empty()) {
            Finish::Reason(f) => f,
            Finish::Failed => return Err(failed(r, c.finish_message.as_deref())),
        },
        None if !calls.is_empty() => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    };
    let message = ResponseMessage {
        content: (!text.is_empty() || calls.is_empty()).then_some(text),
        tool_calls: (!calls.is_empty()).then_some(calls),
        reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
        ..Default::default()
    };
    let mut choice = Choice::new(
        c.index
            .unwrap_or(u32::try_from(position).unwrap_or(u32::MAX)),
        message,
        reason,
    );
    choice.logprobs = c.logprobs_result.as_ref().map(logprobs);
    Ok(choice)
}

/// Translates a whole answer. `model` names the model when the answer does not.
pub(crate) fn completion(
    resp: &GenerateContentResponse,
    model: &str,
) -> Result<ChatCompletion, Error> {
    let id = resp
        .response_id
        .clone()
        .unwrap_or_else(|| format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()));
    let mut out = ChatCompletion::new(
        id,
        resp.model_version.as_deref().unwrap_or(model),
        crate::util::unix_now(),
    );
    for (i, c) in resp.candidates.iter().enumerate() {
        out.choices.push(choice(i, c)?);
    }
    out.choices.sort_by_key(|c| c.index);
    if out.choices.is_empty() {
        // A blocked prompt has no candidates at all: an empty, filtered answer.
        let blocked = resp
            .prompt_feedback
            .as_ref()
            .is_some_and(|f| f.block_reason.is_some());
        let reason = if blocked {
            FinishReason::ContentFilter
        } else {
            FinishReason::Stop
        };
        out.choices
            .push(Choice::new(0, ResponseMessage::text(""), reason));
    }
    out.usage = resp.usage_metadata.as_ref().map(usage);
    // Grounding and citations, under LiteLLM's field names.
    let grounding: Vec<&RawValue> = resp
        .candidates
        .iter()
        .filter_map(|c| c.grounding_metadata.as_deref())
        .collect();
    if !grounding.is_empty() {
        // Serialising borrowed raw JSON cannot fail.
        let _ = out.extra.insert("vertex_ai_grounding_metadata", &grounding);
    }
    let citations: Vec<&RawValue> = resp
        .candidates
        .iter()
        .filter_map(|c| c.citation_metadata.as_deref())
        .collect();
    if !citations.is_empty() {
        let _ = out.extra.insert("vertex_ai_citation_metadata", &citations);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reasons() {
        use FinishReason::*;
        let r = |s, calls| finish_reason(s, calls);
        assert_eq!(r("STOP", false), Finish::Reason(Stop));
        assert_eq!(r("STOP", true), Finish::Reason(ToolCalls));
        assert_eq!(r("MAX_TOKENS", false), Finish::Reason(Length));
        assert_eq!(r("SAFETY", false), Finish::Reason(ContentFilter));
        assert_eq!(r("IMAGE_SAFETY", false), Finish::Reason(ContentFilter));
        assert_eq!(r("RECITATION", false), Finish::Reason(ContentFilter));
        assert_eq!(r("OTHER", false), Finish::Reason(Stop));
        assert_eq!(r("SOMETHING_NEW", false), Finish::Reason(Stop));
        assert_eq!(r("MALFORMED_FUNCTION_CALL", false), Finish::Failed);
        let e = failed("MALFORMED_FUNCTION_CALL", Some("bad call"));
        assert_eq!(e.kind(), ErrorKind::BadGateway);
        assert_eq!(e.code(), Some("MALFORMED_FUNCTION_CALL"));
    }

    #[test]
    fn call_ids_carry_signatures() {
        let call = FunctionCallIn {
            id: None,
            name: "f".into(),
            args: None,
        };
        let id = call_id(&call, Some("c2ln"));
        assert!(id.starts_with("call_"), "{id}");
        assert!(id.ends_with("__thought__c2ln"), "{id}");
        assert_eq!(id.len(), 5 + 24 + 11 + 4);
        assert_ne!(call_id(&call, None), call_id(&call, None));
        assert_eq!(call_arguments(&call), "{}");
    }
}
