//! Mistral errors, in their several shapes.
//!
//! `{"message":"Unauthorized","request_id":"…"}`, `{"detail":"Unauthorized"}`
//! (FastAPI), `{"object":"error","message":"Rate limit exceeded","type":"rate_limited","param":null,"code":"1300"}`
//! (a top-level error object whose `message` may itself be an object for
//! validation errors), or OpenAI's `{"error":{…}}`. All are normalised to
//! OpenAI's envelope and mapped by status like every OpenAI-style error.

use crate::error::Error;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

/// Maps a Mistral error response to an [`Error`] (credentials scrubbed).
pub fn error_from_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Error {
    match normalize(body) {
        Some(normalized) => {
            crate::provider::openai::error_from_response(status, headers, &normalized, secrets)
        }
        None => crate::provider::openai::error_from_response(status, headers, body, secrets),
    }
}

/// Rewrites a top-level error object as `{"error":{…}}` with a string message.
fn normalize(body: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    if obj.contains_key("error") {
        return None;
    }
    let is_error_object = obj.get("object").and_then(Value::as_str) == Some("error")
        || obj.contains_key("code")
        || obj.contains_key("type");
    if !is_error_object {
        return None;
    }
    let mut inner = Map::new();
    for key in ["message", "type", "param", "code"] {
        match obj.get(key) {
            Some(Value::Null) | None => {}
            Some(Value::String(s)) => {
                inner.insert(key.into(), Value::String(s.clone()));
            }
            Some(Value::Number(n)) => {
                inner.insert(key.into(), Value::String(n.to_string()));
            }
            Some(other) => {
                inner.insert(key.into(), Value::String(other.to_string()));
            }
        }
    }
    serde_json::to_vec(&serde_json::json!({ "error": inner })).ok()
}
