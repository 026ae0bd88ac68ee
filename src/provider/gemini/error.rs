//! Google's error envelope → [`Error`] (PROTOCOLS.md §1.4 and §5.4).
//!
//! `{"error":{"code":429,"message":"…","status":"RESOURCE_EXHAUSTED","details":[…]}}`
//! (sometimes wrapped in a one-element array). The HTTP status decides the
//! kind, with Google's quirks: a bad API key is a **400** whose
//! `ErrorInfo.reason` is `API_KEY_INVALID` (→ 401), `DEADLINE_EXCEEDED` is a
//! timeout, a prompt over the context window is recognised from its message.
//! The retry delay comes from `RetryInfo.retryDelay` (`"34.4s"`) or the
//! `retry-after` header. `code` carries `ErrorInfo.reason` when there is one,
//! else Google's `status`.

use super::wire::{ErrorEnvelope, GoogleStatus};
use crate::error::{Error, ErrorKind, LimitSource, TimeoutKind};
use http::{HeaderMap, StatusCode};
use serde_json::Value;

fn parse(body: &[u8]) -> Option<GoogleStatus> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first == b'{' {
        return serde_json::from_slice::<ErrorEnvelope>(body).ok()?.error;
    }
    // Streaming endpoints without `alt=sse` wrap the envelope in an array.
    serde_json::from_slice::<Vec<ErrorEnvelope>>(body)
        .ok()?
        .into_iter()
        .next()?
        .error
}

/// The status a canonical Google code stands for (for errors inside a 200 stream).
fn status_of_canonical(status: &str) -> Option<u16> {
    Some(match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ABORTED" | "ALREADY_EXISTS" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "INTERNAL" | "UNKNOWN" | "DATA_LOSS" => 500,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => return None,
    })
}

fn detail_str<'a>(details: &'a [Value], type_suffix: &str, field: &str) -> Option<&'a str> {
    details
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with(type_suffix))
        })
        .find_map(|d| d.get(field).and_then(Value::as_str))
}

/// Maps an error response.
pub(crate) fn from_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Error {
    let parsed = parse(body);
    build(status.as_u16(), headers, parsed, body, secrets)
}

/// Maps an error object that arrived inside a stream (HTTP 200).
pub(crate) fn in_band(raw: &str, secrets: &[&str]) -> Error {
    let status: Option<GoogleStatus> = serde_json::from_str(raw).ok();
    let code = status
        .as_ref()
        .and_then(|s| s.code.as_ref())
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
        .or_else(|| {
            status
                .as_ref()
                .and_then(|s| s.status.as_deref())
                .and_then(status_of_canonical)
        })
        .unwrap_or(500);
    build(code, &HeaderMap::new(), status, raw.as_bytes(), secrets)
}

fn build(
    status: u16,
    headers: &HeaderMap,
    parsed: Option<GoogleStatus>,
    raw: &[u8],
    secrets: &[&str],
) -> Error {
    let g = parsed.unwrap_or_default();
    let message = g.message.clone().unwrap_or_else(|| {
        let text = String::from_utf8_lossy(raw);
        let text: String = text.chars().take(300).collect();
        if text.trim().is_empty() {
            format!("the upstream answered {status} with no details")
        } else {
            format!("the upstream answered {status}: {}", text.trim())
        }
    });
    let reason = detail_str(&g.details, "google.rpc.ErrorInfo", "reason");
    let canonical = g.status.as_deref().unwrap_or("");
    let lower = message.to_ascii_lowercase();
    let bad_key = matches!(
        reason,
        Some("API_KEY_INVALID" | "API_KEY_EXPIRED" | "API_KEY_SERVICE_BLOCKED")
    ) || lower.contains("api key not valid")
        || lower.contains("api key expired");
    let kind = if bad_key || status == 401 || canonical == "UNAUTHENTICATED" {
        ErrorKind::Authentication
    } else {
        match status {
            400 | 413
                if lower.contains("input token count")
                    || lower.contains("exceeds the maximum number of tokens")
                    || lower.contains("context window")
                    || lower.contains("too many tokens") =>
            {
                ErrorKind::ContextWindowExceeded
            }
            400 => ErrorKind::BadRequest,
            403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            408 | 504 => ErrorKind::Timeout(TimeoutKind::Total),
            413 => ErrorKind::PayloadTooLarge,
            422 => ErrorKind::UnprocessableEntity,
            429 => ErrorKind::RateLimited(LimitSource::Upstream),
            503 => ErrorKind::ServiceUnavailable,
            s => ErrorKind::Upstream(s),
        }
    };
    let mut err = Error::from_upstream(kind, &message, secrets);
    let code = reason.or((!canonical.is_empty()).then_some(canonical));
    if let Some(c) = code {
        let c: String = c.chars().take(80).collect();
        err = err.with_code(crate::util::redact(&c, secrets).into_owned());
    }
    let delay = detail_str(&g.details, "google.rpc.RetryInfo", "retryDelay")
        .and_then(crate::provider::parse_go_duration)
        .or_else(|| crate::provider::retry_after(headers));
    if let Some(after) = delay {
        err = err.with_retry_after(after);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/protocols/gemini/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn map(status: u16, file: &str) -> Error {
        from_response(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            &fixture(file),
            &["AIzaSyTESTKEY0123456789"],
        )
    }

    #[test]
    fn bad_key_is_authentication_not_400() {
        let e = map(400, "error_400_api_key_invalid.json");
        assert_eq!(e.kind(), ErrorKind::Authentication);
        assert_eq!(e.status().as_u16(), 401);
        assert_eq!(e.code(), Some("API_KEY_INVALID"));
        assert_eq!(
            e.message(),
            "API key not valid. Please pass a valid API key."
        );
    }

    #[test]
    fn quota_with_retry_info() {
        let e = map(429, "error_429_quota_retryinfo.json");
        assert_eq!(e.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
        assert_eq!(e.retry_after(), Some(Duration::from_millis(34_400)));
        assert_eq!(e.code(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(
            e.message(),
            "You exceeded your current quota, please check your plan."
        );
        let e = map(429, "error_429_quota_exceeded.json");
        assert_eq!(e.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
        assert_eq!(e.retry_after(), None);
        assert!(e.message().starts_with(
            "You exceeded your current quota, please check your plan and billing details."
        ));
        let mut h = HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        let e = from_response(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            &fixture("error_429_quota_exceeded.json"),
            &[],
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn other_fixtures() {
        let e = map(404, "error_404_model_not_found.resp.json");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.code(), Some("NOT_FOUND"));
        assert_eq!(
            e.message(),
            "models/gemini-3.6-flahs is not found for API version v1beta, or is not supported for generateContent. Call ModelService.ListModels to see the list of available models and their supported methods."
        );
        let e = map(404, "embed_error_404.resp.json");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = map(400, "error_400_image_rejected.json");
        assert_eq!(e.kind(), ErrorKind::BadRequest);
        assert_eq!(e.code(), Some("INVALID_ARGUMENT"));
        assert_eq!(e.message(), "Request contains an invalid argument.");

        let http = String::from_utf8(fixture("error_403_permission_denied.http.txt")).unwrap();
        let body = &http[http.rfind("\n{").unwrap() + 1..];
        let e = from_response(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            body.as_bytes(),
            &[],
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(e.code(), Some("PERMISSION_DENIED"));
        assert!(
            e.message()
                .starts_with("Method doesn't allow unregistered callers")
        );
    }

    #[test]
    fn statuses_context_window_and_arrays() {
        let body = |code: u16, status: &str, msg: &str| {
            format!(r#"[{{"error":{{"code":{code},"message":"{msg}","status":"{status}"}}}}]"#)
        };
        let cases = [
            (500, "INTERNAL", "boom", ErrorKind::Upstream(500)),
            (
                503,
                "UNAVAILABLE",
                "The model is overloaded.",
                ErrorKind::ServiceUnavailable,
            ),
            (
                504,
                "DEADLINE_EXCEEDED",
                "Deadline expired",
                ErrorKind::Timeout(TimeoutKind::Total),
            ),
            (
                400,
                "INVALID_ARGUMENT",
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
                ErrorKind::ContextWindowExceeded,
            ),
            (
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
                ErrorKind::Authentication,
            ),
        ];
        for (code, status, msg, kind) in cases {
            let e = from_response(
                StatusCode::from_u16(code).unwrap(),
                &HeaderMap::new(),
                body(code, status, msg).as_bytes(),
                &[],
            );
            assert_eq!(e.kind(), kind, "{status}");
            assert_eq!(e.message(), msg);
        }
        let e = from_response(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>oops</html>",
            &[],
        );
        assert_eq!(e.kind(), ErrorKind::Upstream(502));
        assert!(e.message().contains("oops"));
    }

    #[test]
    fn keys_never_reach_the_message() {
        let body = br#"{"error":{"code":400,"message":"API key AIzaSyTESTKEY0123456789 is bad; also AIzaSyOTHERKEY9876543210","status":"INVALID_ARGUMENT"}}"#;
        let e = from_response(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            body,
            &["AIzaSyTESTKEY0123456789"],
        );
        assert!(!e.message().contains("AIza"), "{}", e.message());
    }

    #[test]
    fn in_band_errors_take_their_status_from_the_body() {
        let e = in_band(
            r#"{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}"#,
            &[],
        );
        assert_eq!(e.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
        let e = in_band(r#"{"message":"x","status":"UNAVAILABLE"}"#, &[]);
        assert_eq!(e.kind(), ErrorKind::ServiceUnavailable);
        let e = in_band("not json", &[]);
        assert_eq!(e.kind(), ErrorKind::Upstream(500));
    }
}
