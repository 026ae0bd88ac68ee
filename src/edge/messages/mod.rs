//! The Anthropic front door: `POST /v1/messages` and `POST /v1/messages/count_tokens`.
//!
//! Clients built on the official `anthropic` SDKs (Claude Code among them)
//! talk to tollgate as if it were Anthropic, and reach ANY configured model.
//!
//! # Design
//!
//! A Messages request is translated **in reverse** into an OpenAI
//! [`ChatRequest`] (see `request`), so it travels through exactly the same
//! stack as a `/v1/chat/completions` call: authentication, the model
//! permission check, validation, the router, observe and every later layer
//! (cost, budgets, retries, fallbacks) apply unchanged. The answer comes back
//! as an OpenAI [`ChatCompletion`](crate::ChatCompletion) or
//! [`ChatStream`](crate::stream::ChatStream) and is written as an Anthropic
//! message (`response`) or as Anthropic named events through
//! [`EdgeBody::sse_with`] (`stream`).
//!
//! Translation loses what OpenAI cannot say (thinking signatures, citations,
//! server-tool blocks, `cache_control`, …). For an **Anthropic deployment**
//! that would be wrong, so the door also puts the client's original body in
//! the request's extensions ([`NativeMessages`]). The Anthropic leaf, when it
//! finds it, sends that body verbatim with only `model` replaced, and carries
//! the upstream's native answer back *alongside* the OpenAI one: the native
//! message in the completion's
//! [`NATIVE_MESSAGE_FIELD`](crate::provider::anthropic::NATIVE_MESSAGE_FIELD),
//! each native event in the
//! [`NATIVE_EVENT_FIELD`](crate::provider::anthropic::NATIVE_EVENT_FIELD) of
//! the chunk it produced. Layers keep reading —
//! and accounting — the OpenAI form; this door writes the native form byte for
//! byte. Any other provider ignores the extension and the translated request
//! is used; a fallback from an Anthropic deployment to another provider just
//! works, since the door decides per answer, not per request.
//!
//! The client's `anthropic-beta` header is passed to Anthropic deployments
//! ([`AnthropicBeta`](crate::provider::anthropic::AnthropicBeta)); the
//! `anthropic-version` header is accepted and not needed (tollgate speaks
//! `2023-06-01` upstream).
//!
//! Errors are Anthropic's envelope, `{"type":"error","error":{"type","message"},"request_id"}`,
//! with the status of the error (529 for an upstream `overloaded_error`) and
//! an `x-should-retry` header telling the SDK whether a retry can help.
//!
//! `count_tokens` answers `{"input_tokens": N}` from tollgate's own estimate
//! ([`crate::tokens`]) without calling any upstream.
//!
//! ```
//! use tollgate::edge::HttpEdge;
//! use tollgate::provider::{Mock, MockConfig};
//! use tollgate::router::{Deployment, Router};
//! use http_body_util::{BodyExt, Full};
//! use tower::ServiceExt;
//!
//! # tokio_test::block_on(async {
//! let router = Router::builder()
//!     .deployment(Deployment::chat("any-model", Mock::new(MockConfig::new("mock/demo"))))
//!     .build();
//! let edge = HttpEdge::builder(router).build();
//! let req = http::Request::post("/v1/messages")
//!     .header("content-type", "application/json")
//!     .header("anthropic-version", "2023-06-01")
//!     .body(Full::new(bytes::Bytes::from_static(
//!         br#"{"model":"any-model","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}"#,
//!     )))
//!     .unwrap();
//! let resp = edge.oneshot(req).await.unwrap();
//! assert_eq!(resp.status(), 200);
//! let body = resp.into_body().collect().await.unwrap().to_bytes();
//! let message: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(message["type"], "message");
//! assert_eq!(message["content"][0]["type"], "text");
//! assert_eq!(message["stop_reason"], "end_turn");
//! # });
//! ```

mod request;
mod response;
mod stream;

use super::{EdgeBody, Exchange, common_headers, json};
use crate::error::{Error, ErrorKind};
use crate::provider::anthropic::NativeMessages;
use crate::types::{ChatBody, ChatRequest, ChatResponse};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};

/// Parses a Messages request body into the OpenAI request that stands for it,
/// with the original body in the extensions.
pub(super) fn parse(bytes: &Bytes) -> Result<ChatRequest, Error> {
    let parsed: request::MessagesRequest = crate::types::parse_json(bytes)?;
    let body = request::to_openai(parsed)?;
    let mut req = ChatRequest::new(body);
    req.extensions.insert(NativeMessages(bytes.clone()));
    Ok(req)
}

/// `POST /v1/messages/count_tokens`.
pub(super) fn count_tokens(req: &ChatRequest, ex: &Exchange) -> http::Response<EdgeBody> {
    let n = crate::tokens::estimate_prompt(req.body());
    let mut out = json(
        StatusCode::OK,
        format!("{{\"input_tokens\":{n}}}").into_bytes(),
    );
    common_headers(out.headers_mut(), ex, None);
    out
}

fn fallback_id(ex: &Exchange) -> String {
    format!("msg_{}", ex.request_id.as_str().replace('-', ""))
}

/// Upstream headers an Anthropic client knows, passed under their own names.
fn anthropic_headers(h: &mut HeaderMap, upstream: &HeaderMap) {
    for (name, value) in upstream {
        let n = name.as_str();
        if n == "request-id" || n.starts_with("anthropic-ratelimit-") {
            h.append(name.clone(), value.clone());
        }
    }
}

/// Writes the answer to a Messages request.
pub(super) fn respond(
    resp: ChatResponse,
    model: String,
    ex: &Exchange,
) -> http::Response<EdgeBody> {
    let ChatResponse { body, meta } = resp;
    let mut out = match body {
        ChatBody::Complete(c) => match response::message_body(&c, &fallback_id(ex)) {
            Ok(bytes) => json(StatusCode::OK, bytes),
            Err(e) => return error_response(&e, ex),
        },
        ChatBody::Stream(s) => {
            let encoder = stream::MessagesSse::new(model, fallback_id(ex));
            let mut r = http::Response::new(EdgeBody::sse_with(s, Box::new(encoder)));
            let h = r.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            h.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            );
            h.insert(
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            );
            r
        }
    };
    anthropic_headers(out.headers_mut(), &meta.upstream_headers);
    common_headers(out.headers_mut(), ex, Some(&meta));
    out
}

/// Anthropic's error type for an error: the upstream's own when it was one
/// of Anthropic's types, else the one that matches the kind.
fn anthropic_type(err: &Error) -> &'static str {
    const TYPES: &[&str] = &[
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "timeout_error",
        "api_error",
        "overloaded_error",
    ];
    if let Some(t) = err.code().and_then(|c| TYPES.iter().find(|t| **t == c)) {
        return t;
    }
    match err.kind() {
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::PermissionDenied => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::PayloadTooLarge => "request_too_large",
        ErrorKind::RateLimited(_) | ErrorKind::BudgetExceeded => "rate_limit_error",
        ErrorKind::Timeout(_) => "timeout_error",
        ErrorKind::ServiceUnavailable => "overloaded_error",
        ErrorKind::Internal | ErrorKind::BadGateway | ErrorKind::Connection => "api_error",
        ErrorKind::Upstream(s) if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The Anthropic error envelope for `err`.
pub(crate) fn error_body(err: &Error, request_id: Option<&str>) -> Vec<u8> {
    let mut body = serde_json::json!({
        "type": "error",
        "error": {"type": anthropic_type(err), "message": err.message()},
    });
    if let Some(id) = request_id {
        body["request_id"] = id.into();
    }
    serde_json::to_vec(&body).unwrap_or_else(|_| {
        br#"{"type":"error","error":{"type":"api_error","message":"internal error"}}"#.to_vec()
    })
}

/// The Anthropic error response for `err`.
pub(super) fn error_response(err: &Error, ex: &Exchange) -> http::Response<EdgeBody> {
    let status = match err.kind() {
        ErrorKind::BudgetExceeded => ex.budget_status,
        _ if err.code() == Some("overloaded_error") => {
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
        }
        _ => err.status(),
    };
    let mut resp = json(status, error_body(err, Some(ex.request_id.as_str())));
    let h = resp.headers_mut();
    if let Some(extra) = err.headers() {
        for (k, v) in extra {
            h.append(k.clone(), v.clone());
        }
    }
    if let Some(after) = err.retry_after() {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    h.insert(
        HeaderName::from_static("x-should-retry"),
        HeaderValue::from_static(if err.is_retryable() { "true" } else { "false" }),
    );
    common_headers(h, ex, None);
    resp
}

#[cfg(test)]
mod tests;
