//! Bedrock errors → [`Error`]: the `x-amzn-ErrorType` header (or the body's
//! `__type`) names the exception, the body's `message`/`Message` explains it.

use crate::error::{Error, ErrorKind, LimitSource, TimeoutKind};
use crate::provider::retry_after;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

#[derive(Deserialize, Default)]
struct Body {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "Message")]
    message_upper: Option<String>,
    #[serde(default, rename = "__type")]
    kind: Option<String>,
}

/// `ThrottlingException:http://internal…` → `ThrottlingException`;
/// `com.amazon.coral.service#UnrecognizedClientException` → `UnrecognizedClientException`.
fn exception_name(raw: &str) -> &str {
    let name = raw.split(':').next().unwrap_or(raw);
    name.rsplit('#').next().unwrap_or(name).trim()
}

fn says_context_window(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("too long")
        || m.contains("context window")
        || m.contains("context length")
        || m.contains("maximum context")
        || m.contains("too many input tokens")
        || m.contains("max_tokens exceeds")
        || (m.contains("exceed") && m.contains("token"))
}

/// The error kind of an exception name (any case), or `None` if unknown.
pub fn kind_of(exception: &str, message: &str) -> Option<ErrorKind> {
    let e = exception.to_ascii_lowercase();
    let e = e.strip_suffix("exception").unwrap_or(&e);
    Some(match e {
        "validation" if says_context_window(message) => ErrorKind::ContextWindowExceeded,
        "validation" | "badrequest" => ErrorKind::BadRequest,
        "accessdenied" | "invalidsignature" => ErrorKind::PermissionDenied,
        "unrecognizedclient"
        | "expiredtoken"
        | "missingauthenticationtoken"
        | "incompletesignature" => ErrorKind::Authentication,
        "resourcenotfound" => ErrorKind::NotFound,
        "throttling" | "servicequotaexceeded" | "modelnotready" | "toomanyrequests" => {
            ErrorKind::RateLimited(LimitSource::Upstream)
        }
        "modeltimeout" => ErrorKind::Timeout(TimeoutKind::Total),
        "internalserver" => ErrorKind::Upstream(500),
        "serviceunavailable" => ErrorKind::ServiceUnavailable,
        "modelerror" | "modelstreamerror" => ErrorKind::BadGateway,
        "conflict" => ErrorKind::Upstream(409),
        _ => return None,
    })
}

fn kind_of_status(status: StatusCode, message: &str) -> ErrorKind {
    match status.as_u16() {
        400 if says_context_window(message) => ErrorKind::ContextWindowExceeded,
        400 => ErrorKind::BadRequest,
        401 => ErrorKind::Authentication,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::Timeout(TimeoutKind::Total),
        413 => ErrorKind::PayloadTooLarge,
        422 => ErrorKind::UnprocessableEntity,
        429 => ErrorKind::RateLimited(LimitSource::Upstream),
        503 => ErrorKind::ServiceUnavailable,
        s => ErrorKind::Upstream(s),
    }
}

/// Maps an HTTP error answer from Bedrock. `secrets` are scrubbed from the message.
pub fn from_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Error {
    let parsed: Body = serde_json::from_slice(body).unwrap_or_default();
    let exception = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(exception_name)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .or_else(|| {
            parsed
                .kind
                .as_deref()
                .map(exception_name)
                .map(str::to_owned)
        });
    let message = parsed.message.or(parsed.message_upper).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text: String = text.chars().take(300).collect();
        if text.trim().is_empty() {
            format!("Bedrock answered {status} with no details")
        } else {
            format!("Bedrock answered {status}: {}", text.trim())
        }
    });
    let kind = exception
        .as_deref()
        .and_then(|e| kind_of(e, &message))
        .unwrap_or_else(|| kind_of_status(status, &message));
    let mut err = Error::from_upstream(kind, &message, secrets);
    if let Some(e) = exception {
        err = err.with_code(crate::util::redact(&e, secrets).into_owned());
    }
    if let Some(after) = retry_after(headers) {
        err = err.with_retry_after(after);
    }
    err
}

/// Maps an exception frame of a stream (`:exception-type` and its JSON payload).
pub fn from_exception(exception: &str, payload: &[u8], secrets: &[&str]) -> Error {
    let parsed: Body = serde_json::from_slice(payload).unwrap_or_default();
    let message = parsed
        .message
        .or(parsed.message_upper)
        .unwrap_or_else(|| format!("Bedrock sent `{exception}` in the middle of the stream"));
    let kind = kind_of(exception, &message).unwrap_or(ErrorKind::Upstream(500));
    Error::from_upstream(kind, &message, secrets)
        .with_code(crate::util::redact(exception, secrets).into_owned())
}
