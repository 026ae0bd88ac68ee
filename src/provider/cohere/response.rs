//! Cohere v2 answers → OpenAI answers.

use super::wire::{ChatResponse, CohereUsage, EmbedResponse, Function};
use crate::error::{Error, ErrorKind};
use crate::types::{
    ChatCompletion, Choice, Embedding, EmbeddingResponse, EmbeddingUsage, EmbeddingVector,
    FinishReason, ResponseMessage, ToolCall, Usage,
};
use serde_json::Value;

/// What a Cohere `finish_reason` means for the client.
#[derive(Debug)]
pub enum Finish {
    /// A normal finish with this OpenAI reason.
    Reason(FinishReason),
    /// `ERROR` or `TIMEOUT`: the generation failed.
    Failed(Error),
}

/// Maps a Cohere finish reason (unknown values are `stop`).
///
/// ```
/// use tollgate::provider::cohere::response::{Finish, finish_reason};
/// use tollgate::types::FinishReason;
///
/// assert!(matches!(finish_reason("COMPLETE"), Finish::Reason(FinishReason::Stop)));
/// assert!(matches!(finish_reason("STOP_SEQUENCE"), Finish::Reason(FinishReason::Stop)));
/// assert!(matches!(finish_reason("MAX_TOKENS"), Finish::Reason(FinishReason::Length)));
/// assert!(matches!(finish_reason("TOOL_CALL"), Finish::Reason(FinishReason::ToolCalls)));
/// assert!(matches!(finish_reason("ERROR"), Finish::Failed(_)));
/// assert!(matches!(finish_reason("SOMETHING_NEW"), Finish::Reason(FinishReason::Stop)));
/// ```
pub fn finish_reason(reason: &str) -> Finish {
    match reason {
        "MAX_TOKENS" => Finish::Reason(FinishReason::Length),
        "TOOL_CALL" => Finish::Reason(FinishReason::ToolCalls),
        "ERROR" => Finish::Failed(
            Error::new(
                ErrorKind::Upstream(500),
                "Cohere stopped the generation with an error",
            )
            .with_code("ERROR"),
        ),
        "TIMEOUT" => Finish::Failed(
            Error::new(
                ErrorKind::Upstream(504),
                "Cohere stopped the generation: it timed out",
            )
            .with_code("TIMEOUT"),
        ),
        _ => Finish::Reason(FinishReason::Stop),
    }
}

pub(crate) fn bad_json(what: &str, e: &serde_json::Error) -> Error {
    Error::new(
        ErrorKind::BadGateway,
        format!("the Cohere {what} is not valid: {e}"),
    )
}

fn count(v: Option<f64>) -> u64 {
    v.filter(|n| n.is_finite() && *n >= 0.0)
        .map_or(0, |n| n.min(u64::MAX as f64) as u64)
}

/// OpenAI usage from Cohere's: `tokens` (what the model processed; `billed_units`
/// only when `tokens` is missing) and `cached_tokens` as the cached subset.
pub fn usage(u: &CohereUsage) -> Usage {
    let units = u.tokens.as_ref().or(u.billed_units.as_ref());
    let prompt = count(units.and_then(|t| t.input_tokens));
    let completion = count(units.and_then(|t| t.output_tokens));
    let mut out = Usage::new(prompt, completion);
    out.total_tokens = prompt.saturating_add(completion);
    if let Some(cached) = u.cached_tokens {
        out = out.with_cached(count(Some(cached)));
    }
    out
}

/// Tool-call arguments as a JSON string: absent, empty or `"null"` become `"{}"`.
pub fn arguments(f: Option<&Function>) -> String {
    match f.and_then(|f| f.arguments.as_ref()) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.trim() != "null" => s.clone(),
        Some(Value::Object(o)) => Value::Object(o.clone()).to_string(),
        _ => "{}".to_owned(),
    }
}

/// Parses a Cohere chat answer into an OpenAI completion for `model`.
pub fn completion(body: &[u8], model: &str, created: i64) -> Result<ChatCompletion, Error> {
    let r: ChatResponse = crate::types::from_json(body).map_err(|e| bad_json("answer", &e))?;
    let id =
        r.id.filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()));
    let mut completion = ChatCompletion::new(id, model, created);
    let msg = r.message.unwrap_or_default();
    let mut text = String::new();
    let mut thinking = String::new();
    for block in msg.content.unwrap_or_default() {
        match block.kind.as_deref() {
            Some("thinking") => thinking.push_str(block.thinking.as_deref().unwrap_or_default()),
            _ => text.push_str(block.text.as_deref().unwrap_or_default()),
        }
    }
    if let Some(plan) = msg.tool_plan.filter(|p| !p.is_empty()) {
        if !thinking.is_empty() {
            thinking.push_str("\n\n");
        }
        thinking.push_str(&plan);
    }
    let calls: Vec<ToolCall> = msg
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let name = c
                .function
                .as_ref()
                .and_then(|f| f.name.clone())
                .unwrap_or_default();
            let id =
                c.id.filter(|s| !s.is_empty())
                    .unwrap_or_else(|| format!("call_{i}"));
            ToolCall::function(id, name, arguments(c.function.as_ref()))
        })
        .collect();
    let finish = match r.finish_reason.as_deref().map(finish_reason) {
        Some(Finish::Failed(e)) => return Err(e),
        Some(Finish::Reason(f)) => f,
        None if !calls.is_empty() => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    };
    let mut message = ResponseMessage {
        content: (!text.is_empty() || calls.is_empty()).then_some(text),
        reasoning_content: (!thinking.is_empty()).then_some(thinking),
        tool_calls: (!calls.is_empty()).then_some(calls),
        ..Default::default()
    };
    if let Some(c) = msg.citations.filter(|c| !c.is_null()) {
        let _ = message.extra.insert("citations", &c);
    }
    completion.choices.push(Choice::new(0, message, finish));
    completion.usage = r.usage.as_ref().map(usage);
    Ok(completion)
}

/// Parses a `/v2/embed` answer (float embeddings), base64-encoding the
/// vectors when the client asked for `encoding_format: base64`.
pub fn embeddings(body: &[u8], model: &str, base64: bool) -> Result<EmbeddingResponse, Error> {
    let r: EmbedResponse =
        serde_json::from_slice(body).map_err(|e| bad_json("embeddings answer", &e))?;
    let vectors = match r.embeddings {
        Some(Value::Object(mut by_type)) => by_type.remove("float"),
        Some(list @ Value::Array(_)) => Some(list),
        _ => None,
    };
    let Some(Value::Array(vectors)) = vectors else {
        return Err(Error::new(
            ErrorKind::BadGateway,
            "the Cohere embeddings answer has no float embeddings",
        ));
    };
    let mut data = Vec::with_capacity(vectors.len());
    for (i, v) in vectors.into_iter().enumerate() {
        let floats: Vec<f64> = serde_json::from_value(v).map_err(|e| bad_json("embedding", &e))?;
        let vector = EmbeddingVector::Float(floats);
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let mut e = Embedding::floats(index, Vec::new());
        e.embedding = if base64 { vector.to_base64() } else { vector };
        data.push(e);
    }
    let prompt = count(
        r.meta
            .as_ref()
            .and_then(|m| m.billed_units.as_ref())
            .and_then(|b| b.input_tokens),
    );
    Ok(EmbeddingResponse {
        object: "list".to_owned(),
        data,
        model: model.to_owned(),
        usage: Some(EmbeddingUsage {
            prompt_tokens: prompt,
            total_tokens: prompt,
            extra: Default::default(),
        }),
        extra: Default::default(),
    })
}
