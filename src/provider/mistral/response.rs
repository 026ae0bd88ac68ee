//! Mistral answers → OpenAI answers.

use crate::error::{Error, ErrorKind};
use crate::types::{ChatCompletion, EmbeddingResponse, FinishReason};
use serde_json::{Map, Value};

/// What a Mistral `finish_reason` means for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// A normal finish with this OpenAI reason.
    Reason(FinishReason),
    /// `error`: the generation failed.
    Error,
}

/// Maps a Mistral finish reason (unknown values are `stop`).
///
/// ```
/// use tollgate::provider::mistral::response::{Finish, finish_reason};
/// use tollgate::types::FinishReason;
///
/// assert_eq!(finish_reason("model_length"), Finish::Reason(FinishReason::Length));
/// assert_eq!(finish_reason("tool_calls"), Finish::Reason(FinishReason::ToolCalls));
/// assert_eq!(finish_reason("error"), Finish::Error);
/// assert_eq!(finish_reason("something_new"), Finish::Reason(FinishReason::Stop));
/// ```
pub fn finish_reason(reason: &str) -> Finish {
    match reason {
        "stop" => Finish::Reason(FinishReason::Stop),
        "length" | "model_length" => Finish::Reason(FinishReason::Length),
        "tool_calls" => Finish::Reason(FinishReason::ToolCalls),
        "content_filter" => Finish::Reason(FinishReason::ContentFilter),
        "error" => Finish::Error,
        _ => Finish::Reason(FinishReason::Stop),
    }
}

/// The error a `finish_reason: "error"` stands for.
pub fn generation_error() -> Error {
    Error::new(
        ErrorKind::Upstream(500),
        "Mistral stopped the generation with an error",
    )
    .with_code("error")
}

pub(crate) fn bad_json(what: &str, e: &serde_json::Error) -> Error {
    Error::new(
        ErrorKind::BadGateway,
        format!("the Mistral {what} is not valid: {e}"),
    )
}

/// Text and reasoning of Mistral content chunks (`text`, and `thinking`
/// holding text chunks); other chunk types are left out.
pub fn split_chunks(parts: &[Value]) -> (String, String) {
    let mut text = String::new();
    let mut thinking = String::new();
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    text.push_str(t);
                }
            }
            Some("thinking") => match p.get("thinking") {
                Some(Value::Array(inner)) => {
                    for t in inner {
                        if let Some(t) = t.get("text").and_then(Value::as_str) {
                            thinking.push_str(t);
                        }
                    }
                }
                Some(Value::String(t)) => thinking.push_str(t),
                _ => {}
            },
            _ => {}
        }
    }
    (text, thinking)
}

fn normalize_message(msg: &mut Map<String, Value>) {
    if let Some(Value::Array(parts)) = msg.get("content") {
        let (text, thinking) = split_chunks(parts);
        msg.insert("content".into(), Value::String(text));
        if !thinking.is_empty() {
            msg.insert("reasoning_content".into(), Value::String(thinking));
        }
    }
    let has_calls = match msg.get_mut("tool_calls") {
        Some(Value::Array(calls)) => {
            for c in calls.iter_mut() {
                if let Some(o) = c.as_object_mut() {
                    o.remove("index");
                    o.entry("type")
                        .or_insert_with(|| Value::String("function".into()));
                }
            }
            !calls.is_empty()
        }
        _ => false,
    };
    if has_calls && msg.get("content").and_then(Value::as_str) == Some("") {
        msg.insert("content".into(), Value::Null);
    }
}

/// Parses a Mistral chat completion (see the [module docs](super)).
pub fn completion(body: &[u8]) -> Result<ChatCompletion, Error> {
    let mut v: Value = crate::types::from_json(body).map_err(|e| bad_json("completion", &e))?;
    if let Some(Value::Array(choices)) = v.get_mut("choices") {
        for c in choices.iter_mut() {
            let Some(c) = c.as_object_mut() else { continue };
            if let Some(reason) = c.get("finish_reason").and_then(Value::as_str) {
                match finish_reason(reason) {
                    Finish::Error => return Err(generation_error()),
                    Finish::Reason(r) => {
                        c.insert("finish_reason".into(), Value::String(r.as_str().to_owned()));
                    }
                }
            }
            if let Some(Value::Object(msg)) = c.get_mut("message") {
                normalize_message(msg);
            }
        }
    }
    serde_json::from_value(v).map_err(|e| bad_json("completion", &e))
}

/// Parses a Mistral embeddings answer (OpenAI's shape), base64-encoding the
/// vectors when the client asked for `encoding_format: base64`.
pub fn embeddings(body: &[u8], base64: bool) -> Result<EmbeddingResponse, Error> {
    let mut out: EmbeddingResponse =
        serde_json::from_slice(body).map_err(|e| bad_json("embeddings answer", &e))?;
    if base64 {
        for e in &mut out.data {
            e.embedding = e.embedding.to_base64();
        }
    }
    Ok(out)
}
