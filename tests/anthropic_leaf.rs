//! The Anthropic leaf against a local server replaying recorded Anthropic traffic.

mod common;

use bytes::Bytes;
use common::{MockUpstream, Reply, fixture};
use std::sync::Arc;
use std::time::Duration;
use tollgate::error::LimitSource;
use tollgate::provider::anthropic::{
    Anthropic, AnthropicBeta, AnthropicConfig, NATIVE_EVENT_FIELD, NATIVE_MESSAGE_FIELD,
    NativeMessages,
};
use tollgate::types::FinishReason;
use tollgate::{ChatRequest, ErrorKind, Secret};
use tower::ServiceExt;

const KEY: &str = "sk-ant-upstream-secret-0123456789";

fn leaf(up: &MockUpstream) -> Anthropic {
    let mut cfg = AnthropicConfig::new("claude-haiku-4-5")
        .api_base(up.base())
        .api_key(Secret::new(KEY));
    cfg.extra_headers.push((
        http::HeaderName::from_static("anthropic-beta"),
        http::HeaderValue::from_static("tools-2024-05-16"),
    ));
    Anthropic::new(cfg).unwrap()
}

fn chat(json: &str) -> ChatRequest {
    ChatRequest::from_json(json.as_bytes()).unwrap()
}

/// The response body of a recorded `.http.txt` exchange.
fn http_body(path: &str) -> Vec<u8> {
    let text = String::from_utf8(fixture(path)).unwrap();
    let resp = text.split("<<< RESPONSE").nth(1).unwrap();
    let body = resp
        .trim_start()
        .lines()
        .skip_while(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    format!("{}\n", body.trim()).into_bytes()
}

#[tokio::test]
async fn text_completion_and_exactly_what_went_upstream() {
    let up = MockUpstream::start().await;
    up.push(
        Reply::json(200, http_body("anthropic/message_text.http.txt"))
            .header("request-id", "req_011CSFCDzbeWe2qGKAeNMhfZ")
            .header("anthropic-ratelimit-requests-remaining", "49"),
    );
    let resp = leaf(&up)
        .oneshot(chat(
            r#"{"model":"my-claude","messages":[
                {"role":"system","content":"Be brief."},
                {"role":"user","content":"Hello, how are you?"}],
               "temperature":0,"max_tokens":100,"user":"end-user-7",
               "api_key":"sk-client-must-not-leak-0123","metadata":{"tags":["t"]}}"#,
        ))
        .await
        .unwrap();
    let c = resp.completion().unwrap();
    assert_eq!(c.id, "msg_014pVpaDLxzAdWjwpuN7rQQX");
    assert_eq!(
        c.text(),
        Some(
            "Hello! As an AI language model, I don't have feelings, but I'm functioning properly and ready to assist you. How can I help you today?"
        )
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    let u = c.usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (13, 35, 48)
    );
    assert_eq!(
        resp.meta.upstream_headers["request-id"],
        "req_011CSFCDzbeWe2qGKAeNMhfZ"
    );
    assert_eq!(
        resp.meta.upstream_headers["anthropic-ratelimit-requests-remaining"],
        "49"
    );

    let got = up.last();
    assert_eq!(got.method, http::Method::POST);
    assert_eq!(got.path, "/v1/messages");
    assert_eq!(got.headers["x-api-key"], KEY);
    assert_eq!(got.headers["anthropic-version"], "2023-06-01");
    assert_eq!(got.headers["anthropic-beta"], "tools-2024-05-16");
    assert_eq!(got.headers["content-type"], "application/json");
    assert!(got.headers.get("authorization").is_none());
    let raw = String::from_utf8_lossy(&got.body);
    assert!(!raw.contains("sk-client-must-not-leak"), "{raw}");
    for (k, _) in &got.headers {
        assert!(!got.headers[k].to_str().unwrap_or("").contains("sk-client"));
    }
    let body = got.json();
    assert_eq!(
        body,
        serde_json::json!({
            "model": "claude-haiku-4-5",
            "max_tokens": 100,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hello, how are you?"}],
            "temperature": 0.0,
            "metadata": {"user_id": "end-user-7"}
        })
    );
}

#[tokio::test]
async fn stream_in_small_reads_with_usage_and_client_betas() {
    let up = MockUpstream::start().await;
    up.push(Reply::sse_chunked(
        &http_body("anthropic/stream_text.http.txt"),
        5,
        Duration::ZERO,
    ));
    let mut req = chat(
        r#"{"model":"c","messages":[{"role":"user","content":"Count from 1 to 5"}],"max_tokens":100,"stream":true}"#,
    );
    req.extensions.insert(AnthropicBeta(Arc::from(
        "fine-grained-tool-streaming-2025-05-14",
    )));
    let resp = leaf(&up).oneshot(req).await.unwrap();
    let got = up.last();
    assert_eq!(got.json()["stream"], true);
    assert_eq!(got.headers["accept"], "text/event-stream");
    assert_eq!(
        got.headers["anthropic-beta"],
        "tools-2024-05-16,fine-grained-tool-streaming-2025-05-14"
    );
    let c = resp
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    assert_eq!(c.id, "msg_01Ju7oPaDmjgrhWq8gNP4AUj");
    assert_eq!(c.text(), Some("1\n2\n3\n4\n5"));
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (15, 13, 28)
    );
}

#[tokio::test]
async fn tools_plain_and_streamed() {
    let up = MockUpstream::start().await;
    let l = leaf(&up);
    let weather = r#"[{"type":"function","function":{"name":"get_weather","description":"Lookup the weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}]"#;

    up.push(Reply::json(200, fixture("anthropic/tool_use.resp.json")));
    let resp = l
        .clone()
        .oneshot(chat(&format!(
            r#"{{"model":"c","messages":[{{"role":"user","content":"What is the weather in SF?"}}],"tools":{weather},"tool_choice":"required"}}"#
        )))
        .await
        .unwrap();
    let sent = up.last().json();
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert!(
        sent["tools"][0].get("function").is_none(),
        "Anthropic's tool shape"
    );
    assert_eq!(sent["tool_choice"], serde_json::json!({"type": "any"}));
    assert_eq!(sent["max_tokens"], 64000, "the model's output limit");
    let c = resp.completion().unwrap();
    let calls = c.choices[0].message.tool_calls.as_ref().unwrap();
    assert_eq!(calls[0].id, "toolu_01A9HHF5Ezy3oBrKmSgfASm9");
    assert_eq!(
        calls[0].function.arguments,
        r#"{"location":"San Francisco, CA","units":"f"}"#
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));

    up.push(Reply::sse_chunked(
        &fixture("anthropic/stream_text_and_tool_use.sse.txt"),
        11,
        Duration::ZERO,
    ));
    let resp = l
        .oneshot(chat(&format!(
            r#"{{"model":"c","messages":[{{"role":"user","content":"Weather in Paris?"}}],"tools":{weather},"stream":true}}"#
        )))
        .await
        .unwrap();
    let c = resp
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    assert_eq!(
        c.text(),
        Some("I'll check the current weather in Paris for you.")
    );
    let calls = c.choices[0].message.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, "toolu_01NRLabsLyVHZPKxbKvkfSMn");
    assert_eq!(calls[0].function.arguments, r#"{"location": "Paris"}"#);
}

#[tokio::test]
async fn upstream_errors_map_with_their_hints() {
    let up = MockUpstream::start().await;
    let l = leaf(&up);
    let hi = r#"{"model":"c","messages":[{"role":"user","content":"hi"}]}"#;

    up.push(Reply::json(
        401,
        fixture("anthropic/error_401_authentication.json"),
    ));
    let err = l.clone().oneshot(chat(hi)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert_eq!(err.message(), "invalid x-api-key");
    assert_eq!(err.provider(), Some("anthropic"));

    up.push(
        Reply::json(429, fixture("anthropic/error_429_rate_limit.json"))
            .header("retry-after", "17"),
    );
    let err = l.clone().oneshot(chat(hi)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(17)));
    assert!(err.is_retryable());

    up.push(
        Reply::json(529, fixture("anthropic/error_529_overloaded.json"))
            .header("x-should-retry", "true"),
    );
    let err = l.clone().oneshot(chat(hi)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ServiceUnavailable);
    assert_eq!(err.code(), Some("overloaded_error"));
    assert!(err.is_retryable());

    up.push(Reply::json(
        404,
        fixture("anthropic/error_404_model_not_found.resp.json"),
    ));
    let err = l.clone().oneshot(chat(hi)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.message(), "model: claude-sonet-4-5");

    // An error inside a 200 stream ends the stream with an error item.
    up.push(Reply::sse(fixture("anthropic/stream_error_event.sse.txt")));
    let resp = l
        .clone()
        .oneshot(chat(
            r#"{"model":"c","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
        ))
        .await
        .unwrap();
    let err = resp
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ServiceUnavailable);

    // A 400 from our own translation never reaches the upstream.
    let before = up.received().len();
    let err = l
        .oneshot(chat(
            r#"{"model":"c","messages":[{"role":"user","content":"hi"}],"logit_bias":{"1":2}}"#,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedParams);
    assert_eq!(err.param(), Some("logit_bias"));
    assert_eq!(up.received().len(), before);
}

#[tokio::test]
async fn native_pass_through_sends_the_body_and_brings_the_native_answer_back() {
    let up = MockUpstream::start().await;
    let l = leaf(&up);
    let native = br#"{"model":"front-door-name","max_tokens":1024,"messages":[{"role":"user","content":[{"type":"text","text":"What is the weather in SF?","cache_control":{"type":"ephemeral"}}]}],"top_k":3}"#;

    let answer = fixture("anthropic/tool_use.resp.json");
    up.push(Reply::json(200, answer.clone()));
    let mut req = chat(
        r#"{"model":"front-door-name","messages":[{"role":"user","content":"What is the weather in SF?"}]}"#,
    );
    req.extensions
        .insert(NativeMessages(Bytes::from_static(native)));
    let resp = l.clone().oneshot(req).await.unwrap();
    let mut expected: serde_json::Value = serde_json::from_slice(native).unwrap();
    expected["model"] = "claude-haiku-4-5".into();
    assert_eq!(up.last().json(), expected);
    let c = resp.completion().unwrap();
    // OpenAI shape for the layers …
    assert_eq!(
        c.choices[0].message.tool_calls.as_ref().unwrap()[0].id,
        "toolu_01A9HHF5Ezy3oBrKmSgfASm9"
    );
    assert_eq!(c.usage.as_ref().unwrap().total_tokens, 730);
    // … and the native answer, verbatim, for the door.
    let carried: serde_json::Value =
        serde_json::from_str(c.extra.get(NATIVE_MESSAGE_FIELD).unwrap().get()).unwrap();
    assert_eq!(
        carried,
        serde_json::from_slice::<serde_json::Value>(&answer).unwrap()
    );

    let stream_native = br#"{"model":"x","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    up.push(Reply::sse_chunked(
        &fixture("anthropic/stream_thinking.sse.txt"),
        64,
        Duration::ZERO,
    ));
    let mut req =
        chat(r#"{"model":"x","stream":true,"messages":[{"role":"user","content":"hi"}]}"#);
    req.extensions
        .insert(NativeMessages(Bytes::from_static(stream_native)));
    let resp = l.oneshot(req).await.unwrap();
    use futures_util::StreamExt;
    let mut s = resp.into_stream().unwrap();
    let mut events = 0;
    let mut usage = None;
    while let Some(item) = s.next().await {
        let chunk = item.unwrap();
        if chunk.extra.contains(NATIVE_EVENT_FIELD) {
            events += 1;
        }
        if chunk.usage.is_some() {
            usage = chunk.usage.clone();
        }
    }
    let text = String::from_utf8(fixture("anthropic/stream_thinking.sse.txt")).unwrap();
    assert_eq!(events, text.matches("event: ").count());
    assert_eq!(usage.unwrap().total_tokens, 325);
}
