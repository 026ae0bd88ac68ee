//! Cohere errors: `{"message":"…"}` or `{"id":"…","message":"…"}`, classed by status.

use crate::error::{Error, ErrorKind, LimitSource};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

#[derive(Deserialize, Default)]
struct Envelope {
    #[serde(default)]
    message: Option<serde_json::Value>,
}

/// Maps a Cohere error response to an [`Error`] (credentials scrubbed).
///
/// 400 is `ContextWindowExceeded` when the message says the prompt has too
/// many tokens, else `BadRequest`; 401, 403, 404, 422 and 429 map as usual;
/// 498 (blocked input or output) is `ContentPolicy`; 503 is
/// `ServiceUnavailable`; other statuses (402 billing, 499, 5xx) pass through.
pub fn error_from_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Error {
    let parsed: Envelope = serde_json::from_slice(body).unwrap_or_default();
    let message = match parsed.message {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => {
            let text: String = String::from_utf8_lossy(body).chars().take(300).collect();
            if text.trim().is_empty() {
                format!("Cohere answered {status} with no details")
            } else {
                format!("Cohere answered {status}: {}", text.trim())
            }
        }
    };
    let lower = message.to_ascii_lowercase();
    let kind = match status.as_u16() {
        400 if lower.contains("too many tokens")
            || lower.contains("context length")
            || lower.contains("context window") =>
        {
            ErrorKind::ContextWindowExceeded
        }
        400 => ErrorKind::BadRequest,
        401 => ErrorKind::Authentication,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        413 => ErrorKind::PayloadTooLarge,
        422 => ErrorKind::UnprocessableEntity,
        429 => ErrorKind::RateLimited(LimitSource::Upstream),
        498 => ErrorKind::ContentPolicy,
        503 => ErrorKind::ServiceUnavailable,
        s => ErrorKind::Upstream(s),
    };
    let mut err = Error::from_upstream(kind, &message, secrets);
    if let Some(after) = crate::provider::retry_after(headers) {
        err = err.with_retry_after(after);
    }
    err
}
