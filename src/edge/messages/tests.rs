//! The Messages door on the edge, in front of mock deployments.

use crate::Secret;
use crate::auth::MasterKey;
use crate::edge::{EdgeBody, HttpEdge};
use crate::provider::{Mock, MockConfig};
use crate::router::{Deployment, Router};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::convert::Infallible;
use tower::{Service, ServiceExt};

fn edge() -> HttpEdge<Router> {
    let mut failing = MockConfig::new("mock/busy");
    failing.response = Some(Value::from("litellm.RateLimitError: slow down"));
    let router = Router::builder()
        .deployment(Deployment::chat(
            "demo",
            Mock::new(MockConfig::new("mock/demo")),
        ))
        .deployment(Deployment::chat("busy", Mock::new(failing)))
        .build();
    HttpEdge::builder(router.clone())
        .catalog(router)
        .auth(MasterKey::new(Secret::new("sk-master-door-0123456789")))
        .build()
}

fn post(path: &str, body: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(path)
        .header("content-type", "application/json")
        .header("x-api-key", "sk-master-door-0123456789")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

async fn send<S>(svc: S, req: http::Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes)
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<EdgeBody>, Error = Infallible>,
{
    let resp = svc.oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

const HI: &str = r#"{"model":"demo","max_tokens":64,"system":"Be brief.","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn message_from_any_deployment() {
    let (status, headers, body) = send(edge(), post("/v1/messages", HI)).await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.contains_key("x-request-id"));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "demo");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": crate::provider::mock::DEFAULT_REPLY}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
    // Also without /v1.
    let (status, _, _) = send(edge(), post("/messages", HI)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn stream_of_named_events() {
    let body = r#"{"model":"demo","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (status, headers, bytes) = send(edge(), post("/v1/messages", body)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let mut dec = crate::sse::SseDecoder::new();
    dec.push(&bytes);
    let mut names = Vec::new();
    let mut text = String::new();
    while let Some(ev) = dec.next_event().unwrap() {
        let data: Value = serde_json::from_str(&ev.data).unwrap();
        let name = ev.event.unwrap();
        assert_eq!(data["type"], name.as_str());
        if name == "content_block_delta" {
            text.push_str(data["delta"]["text"].as_str().unwrap());
        }
        if name == "message_delta" {
            assert_eq!(data["delta"]["stop_reason"], "end_turn");
            assert!(data["usage"]["output_tokens"].as_u64().unwrap() > 0);
            assert!(data["usage"]["input_tokens"].as_u64().unwrap() > 0);
        }
        names.push(name);
    }
    assert_eq!(text, crate::provider::mock::DEFAULT_REPLY);
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(!bytes.windows(6).any(|w| w == b"[DONE]"));
}

#[tokio::test]
async fn errors_use_the_anthropic_envelope() {
    let (status, headers, body) = send(
        edge(),
        post(
            "/v1/messages",
            r#"{"model":"busy","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(headers["x-should-retry"], "true");
    assert_eq!(headers["retry-after"], "1");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(
        v["error"],
        json!({"type": "rate_limit_error", "message": "slow down"})
    );
    assert_eq!(v["request_id"], headers["x-request-id"].to_str().unwrap());

    let (status, headers, body) = send(
        edge(),
        post(
            "/v1/messages",
            r#"{"model":"nope","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(headers["x-should-retry"], "false");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");

    let (status, _, body) = send(
        edge(),
        post("/v1/messages", r#"{"model":"demo","messages":"nope"}"#),
    )
    .await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("messages"),
        "{v}"
    );

    let mut req = post("/v1/messages", HI);
    req.headers_mut().remove("x-api-key");
    let (status, _, body) = send(edge(), req).await;
    assert_eq!(status, 401);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");

    let req = http::Request::get("/v1/messages")
        .header("x-api-key", "sk-master-door-0123456789")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = send(edge(), req).await;
    assert_eq!(status, 405);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["type"],
        "error"
    );

    // The chat route keeps OpenAI's envelope.
    let mut req = post(
        "/v1/chat/completions",
        r#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#,
    );
    req.headers_mut().insert(
        "authorization",
        "Bearer sk-master-door-0123456789".parse().unwrap(),
    );
    let (status, _, body) = send(edge(), req).await;
    assert_eq!(status, 404);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"] == "model_not_found");
}

#[tokio::test]
async fn count_tokens_estimates_without_calling_upstream() {
    let (status, _, body) = send(
        edge(),
        post(
            "/v1/messages/count_tokens",
            r#"{"model":"busy","system":"You are a helpful assistant.","messages":[{"role":"user","content":"Hello there, how are you?"}]}"#,
        ),
    )
    .await;
    // `busy` would fail with 429 if it were called.
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let n = v["input_tokens"].as_u64().unwrap();
    // 3 + (3 + 7) + (3 + 7), by the estimate of `tollgate::tokens`.
    assert_eq!(n, 23);
}

#[test]
fn error_types_follow_kinds_and_upstream_types() {
    use crate::error::{Error, ErrorKind, LimitSource, TimeoutKind};
    let ty = |e: Error| {
        let v: Value = serde_json::from_slice(&super::error_body(&e, None)).unwrap();
        v["error"]["type"].as_str().unwrap().to_owned()
    };
    assert_eq!(ty(Error::bad_request("x")), "invalid_request_error");
    assert_eq!(
        ty(Error::new(ErrorKind::ContextWindowExceeded, "x")),
        "invalid_request_error"
    );
    assert_eq!(
        ty(Error::new(ErrorKind::PayloadTooLarge, "x")),
        "request_too_large"
    );
    assert_eq!(
        ty(Error::new(
            ErrorKind::RateLimited(LimitSource::Gateway),
            "x"
        )),
        "rate_limit_error"
    );
    assert_eq!(ty(Error::timeout(TimeoutKind::Total)), "timeout_error");
    assert_eq!(
        ty(Error::new(ErrorKind::ServiceUnavailable, "x")),
        "overloaded_error"
    );
    assert_eq!(ty(Error::new(ErrorKind::Connection, "x")), "api_error");
    assert_eq!(
        ty(Error::new(ErrorKind::Upstream(500), "x").with_code("billing_error")),
        "billing_error"
    );
}
