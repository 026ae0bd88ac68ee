//! The core types: requests, responses, stream chunks, usage, embeddings.
//!
//! Everything here speaks the OpenAI wire format, because that is what clients
//! send and what every provider is translated to and from. Each wire object
//! keeps unknown fields verbatim in an [`Extra`], so a field OpenAI adds next
//! month passes through tollgate untouched.

mod embedding;
mod enums;
mod meta;
mod request;
mod response;
pub(crate) mod wire;

pub use embedding::{
    Embedding, EmbeddingInput, EmbeddingRequest, EmbeddingRequestBody, EmbeddingResponse,
    EmbeddingUsage, EmbeddingVector,
};
pub use enums::{FinishReason, PartType, ReasoningEffort, ResponseFormatType, Role};
pub use meta::{ChatBody, ChatResponse, DeploymentInfo, EmbeddingOutput, ResponseMeta};
pub use request::{
    ChatRequest, ChatRequestBody, Content, ContentPart, FileRef, FunctionCall, FunctionDef,
    ImageUrl, InputAudio, JsonSchemaSpec, Message, ResponseFormat, Stop, StreamOptions, Tool,
    ToolCall, ToolChoice,
};
pub use response::{
    ChatChunk, ChatCompletion, Choice, ChunkChoice, CompletionTokensDetails, Delta,
    FunctionCallDelta, PromptTokensDetails, ResponseMessage, ToolCallDelta, Usage,
};
pub use wire::Extra;

use crate::error::Error;

/// Deserializes a JSON body. A body that is UTF-8 as a whole (nearly every
/// one) is checked once and parsed as text, so `serde_json` does not check
/// each string again (a fifth of a small completion's parse); otherwise it is
/// parsed as bytes, whose error says where the bad byte is.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// Parses a request body. The fast path is a plain `serde_json` parse; only on
/// failure is the body parsed again with path tracking, so the error names the
/// field (`messages[1].content: invalid type: …`) at no cost to valid requests.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    match from_json::<T>(bytes) {
        Ok(v) => Ok(v),
        Err(first) => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let detailed = serde_path_to_error::deserialize::<_, T>(&mut de);
            let message = match detailed {
                Err(e) if !e.path().to_string().is_empty() && e.path().to_string() != "." => {
                    let path = e.path().to_string();
                    let param = param_from_path(&path);
                    return Err(Error::bad_request(format!(
                        "invalid request body: `{path}`: {}",
                        e.inner()
                    ))
                    .with_param(param));
                }
                _ => first.to_string(),
            };
            let err = Error::bad_request(format!("invalid request body: {message}"));
            // A top-level duplicate key has no path; its name is in the message.
            match duplicate_field(&message) {
                Some(field) => Err(err.with_param(field)),
                None => Err(err),
            }
        }
    }
}

/// The field of serde's "duplicate field `name`" message.
fn duplicate_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("duplicate field `")?;
    let (name, _) = rest.split_once('`')?;
    Some(name.to_owned())
}

/// The top-level field of a serde path (`messages[0].content` → `messages`).
fn param_from_path(path: &str) -> String {
    path.split(['.', '['])
        .next()
        .unwrap_or(path)
        .trim_end_matches('?')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_read_alike_from_text_and_from_bytes() {
        let completion = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/protocols/openai/chat_text.resp.json"
        ))
        .unwrap();
        let text: serde_json::Value = from_json(&completion).unwrap();
        let bytes: serde_json::Value = serde_json::from_slice(&completion).unwrap();
        assert_eq!(text, bytes);
        // Not UTF-8: the byte parser's error, which says where.
        let bad = b"{\"model\":\"m\xff\"}";
        let err = from_json::<serde_json::Value>(bad).unwrap_err();
        let want = serde_json::from_slice::<serde_json::Value>(bad).unwrap_err();
        assert_eq!(err.to_string(), want.to_string());
        assert!(err.to_string().contains("column"), "{err}");
        let refused = ChatRequest::from_json(bad).unwrap_err();
        assert_eq!(refused.status(), http::StatusCode::BAD_REQUEST);
        assert!(refused.to_string().contains("column"), "{refused}");
    }

    #[test]
    fn bad_type_names_the_field() {
        let err =
            ChatRequest::from_json(br#"{"model":"m","messages":[{"role":"user","content":5}]}"#)
                .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("messages[0].content"), "{msg}");
        assert_eq!(err.param(), Some("messages"));
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_duplicate_key_is_refused_and_named() {
        let err = ChatRequest::from_json(
            br#"{"model":"m","model":"other","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(err.param(), Some("model"), "{err}");
    }

    #[test]
    fn missing_field_is_named() {
        let err = ChatRequest::from_json(br#"{"model":"m"}"#).unwrap_err();
        assert!(
            err.to_string().contains("missing field `messages`"),
            "{err}"
        );
    }

    #[test]
    fn syntax_error_is_reported_with_position() {
        let err = ChatRequest::from_json(br#"{"model":"m","#).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn deep_nesting_is_a_clean_error() {
        let mut body = String::from(r#"{"model":"m","messages":[],"x":"#);
        body.push_str(&"[".repeat(10_000));
        body.push_str(&"]".repeat(10_000));
        body.push('}');
        let err = ChatRequest::from_json(body.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("recursion limit"), "{err}");
        let mut body = String::from(r#"{"model":"m","messages":"#);
        body.push_str(&"[".repeat(10_000));
        body.push_str(&"]".repeat(10_000));
        body.push('}');
        assert!(ChatRequest::from_json(body.as_bytes()).is_err());
    }
}
