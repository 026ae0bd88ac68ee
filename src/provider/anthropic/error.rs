//! Anthropic errors → [`Error`].
//!
//! The status decides the kind (PROTOCOLS.md §1.4, §4.4); the envelope's
//! `error.type` becomes the error's `code` and its message is kept (scrubbed
//! of credentials). `retry-after` is carried, and `x-should-retry` — the API's
//! own verdict — overrides whether the error is retryable. A 529
//! `overloaded_error` is `ServiceUnavailable` (retryable); a 400 whose
//! message says the prompt is too long is `ContextWindowExceeded`.

use super::wire::ErrorEnvelope;
use crate::error::{Error, ErrorKind, LimitSource};
use crate::provider::retry_after;
use http::{HeaderMap, StatusCode};

/// Maps an error answer (status, headers, body) to an [`Error`].
pub(crate) fn from_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Error {
    let env: ErrorEnvelope = serde_json::from_slice(body).unwrap_or_default();
    let (kind_name, message) = parts(env, body, status);
    let kind = match status.as_u16() {
        400 | 413 if is_context_overflow(&message) => ErrorKind::ContextWindowExceeded,
        400 => ErrorKind::BadRequest,
        401 => ErrorKind::Authentication,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        413 => ErrorKind::PayloadTooLarge,
        422 => ErrorKind::UnprocessableEntity,
        429 => ErrorKind::RateLimited(LimitSource::Upstream),
        503 | 529 => ErrorKind::ServiceUnavailable,
        s => ErrorKind::Upstream(s),
    };
    let mut err = finish(kind, kind_name, &message, secrets);
    if let Some(after) = retry_after(headers) {
        err = err.with_retry_after(after);
    }
    match headers
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        Some(v) if v.eq_ignore_ascii_case("true") => err = err.with_retryable(true),
        Some(v) if v.eq_ignore_ascii_case("false") => err = err.with_retryable(false),
        _ => {}
    }
    err
}

/// Maps an in-stream `event: error` (the HTTP status was already 200) to an
/// [`Error`]; the kind follows the error's `type`.
pub(crate) fn from_event(data: &[u8], secrets: &[&str]) -> Error {
    let env: ErrorEnvelope = serde_json::from_slice(data).unwrap_or_default();
    let (kind_name, message) = parts(env, data, StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match kind_name.as_deref() {
        Some("overloaded_error") => ErrorKind::ServiceUnavailable,
        Some("rate_limit_error") => ErrorKind::RateLimited(LimitSource::Upstream),
        Some("invalid_request_error") if is_context_overflow(&message) => {
            ErrorKind::ContextWindowExceeded
        }
        Some("invalid_request_error") => ErrorKind::BadRequest,
        Some("authentication_error") => ErrorKind::Authentication,
        Some("permission_error") => ErrorKind::PermissionDenied,
        Some("not_found_error") => ErrorKind::NotFound,
        Some("request_too_large") => ErrorKind::PayloadTooLarge,
        Some("timeout_error") => ErrorKind::Upstream(504),
        _ => ErrorKind::Upstream(500),
    };
    finish(kind, kind_name, &message, secrets)
}

fn parts(env: ErrorEnvelope, raw: &[u8], status: StatusCode) -> (Option<String>, String) {
    let (kind, message) = match env.error {
        Some(e) => (e.kind, e.message),
        None => (None, env.message),
    };
    let message = message.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| {
        let text: String = String::from_utf8_lossy(raw).chars().take(300).collect();
        if text.trim().is_empty() {
            format!("the upstream answered {status} with no details")
        } else {
            format!("the upstream answered {status}: {}", text.trim())
        }
    });
    (kind, message)
}

fn finish(kind: ErrorKind, kind_name: Option<String>, message: &str, secrets: &[&str]) -> Error {
    let mut err = Error::from_upstream(kind, message, secrets);
    // Keep the more useful OpenAI code for a context overflow; otherwise the
    // Anthropic type is the code (clients and the /v1/messages door read it).
    if kind != ErrorKind::ContextWindowExceeded
        && let Some(name) = kind_name.filter(|n| is_type_name(n))
    {
        err = err.with_code(name);
    }
    err
}

/// A plausible error type name (so arbitrary upstream text never becomes a code).
fn is_type_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Anthropic's wording for a prompt over the context window.
fn is_context_overflow(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("prompt is too long")
        || lower.contains("exceed context limit")
        || lower.contains("context window")
        || lower.contains("too many tokens")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/protocols/anthropic/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn status(s: u16) -> StatusCode {
        StatusCode::from_u16(s).unwrap()
    }

    #[test]
    fn error_fixtures_map_to_kinds_codes_and_messages() {
        let cases = [
            (
                "error_400_invalid_request.resp.json",
                400,
                ErrorKind::BadRequest,
                "invalid_request_error",
                "This model does not support effort level 'xhigh'. Supported levels: high, low, max, medium.",
            ),
            (
                "error_401_authentication.json",
                401,
                ErrorKind::Authentication,
                "authentication_error",
                "invalid x-api-key",
            ),
            (
                "error_404_model_not_found.resp.json",
                404,
                ErrorKind::NotFound,
                "not_found_error",
                "model: claude-sonet-4-5",
            ),
            (
                "error_429_rate_limit.json",
                429,
                ErrorKind::RateLimited(LimitSource::Upstream),
                "rate_limit_error",
                "This request would exceed your account's rate limit. Please try again later.",
            ),
            (
                "error_529_overloaded.json",
                529,
                ErrorKind::ServiceUnavailable,
                "overloaded_error",
                "Overloaded",
            ),
        ];
        for (file, code, kind, ty, message) in cases {
            let err = from_response(status(code), &HeaderMap::new(), &fixture(file), &[]);
            assert_eq!(err.kind(), kind, "{file}");
            assert_eq!(err.code(), Some(ty), "{file}");
            assert_eq!(err.message(), message, "{file}");
        }
    }

    #[test]
    fn overloaded_with_recorded_headers_is_retryable_with_its_hints() {
        let text = String::from_utf8(fixture("error_529_overloaded_headers.txt")).unwrap();
        let (head, body) = text.split_once("\n\n").unwrap();
        let mut headers = HeaderMap::new();
        let mut code = 0;
        for line in head.lines() {
            let (k, v) = line.split_once(": ").unwrap();
            if k == "status" {
                code = v.parse().unwrap();
            } else {
                headers.insert(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
        }
        assert_eq!(code, 529);
        let err = from_response(status(code), &headers, body.trim().as_bytes(), &[]);
        assert_eq!(err.kind(), ErrorKind::ServiceUnavailable);
        assert_eq!(err.status().as_u16(), 503);
        assert_eq!(err.code(), Some("overloaded_error"));
        assert!(err.is_retryable());

        headers.insert("x-should-retry", "false".parse().unwrap());
        headers.insert("retry-after", "12".parse().unwrap());
        let err = from_response(status(529), &headers, body.as_bytes(), &[]);
        assert!(!err.is_retryable(), "the API said not to retry");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(12)));
    }

    #[test]
    fn prompt_too_long_is_a_context_window_error() {
        let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#;
        let err = from_response(status(400), &HeaderMap::new(), body, &[]);
        assert_eq!(err.kind(), ErrorKind::ContextWindowExceeded);
        assert_eq!(err.code(), Some("context_length_exceeded"));
        assert!(!err.is_retryable());
    }

    #[test]
    fn keys_are_scrubbed_and_garbage_is_described() {
        let body = br#"{"type":"error","error":{"type":"authentication_error","message":"bad key sk-ant-api03-abcdefghijkl and my-secret-value"}}"#;
        let err = from_response(status(401), &HeaderMap::new(), body, &["my-secret-value"]);
        assert!(!err.message().contains("abcdefghijkl"), "{}", err.message());
        assert!(
            !err.message().contains("my-secret-value"),
            "{}",
            err.message()
        );
        let err = from_response(
            status(502),
            &HeaderMap::new(),
            b"<html>bad gateway</html>",
            &[],
        );
        assert_eq!(err.kind(), ErrorKind::Upstream(502));
        assert!(err.message().contains("bad gateway"));
        let err = from_response(status(500), &HeaderMap::new(), b"", &[]);
        assert!(err.message().contains("no details"));
        // A type that is not a type name never becomes the code.
        let err = from_response(
            status(400),
            &HeaderMap::new(),
            br#"{"error":{"type":"<script>","message":"m"}}"#,
            &[],
        );
        assert_eq!(err.code(), None);
    }

    #[test]
    fn in_stream_error_event_fixture() {
        let text = String::from_utf8(fixture("stream_error_event.sse.txt")).unwrap();
        let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        let err = from_event(data.as_bytes(), &[]);
        assert_eq!(err.kind(), ErrorKind::ServiceUnavailable);
        assert_eq!(err.code(), Some("overloaded_error"));
        assert_eq!(err.message(), "Overloaded");
        assert!(err.is_retryable());
    }
}
