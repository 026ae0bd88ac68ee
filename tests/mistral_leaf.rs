//! The Mistral leaf against a local server replaying recorded Mistral traffic.

mod common;

use common::{MockUpstream, Reply, fixture};
use serde_json::{Value, json};
use std::time::Duration;
use tollgate::error::LimitSource;
use tollgate::provider::mistral::{Mistral, MistralConfig, tool_call_id};
use tollgate::types::{EmbeddingVector, FinishReason};
use tollgate::{ChatRequest, EmbeddingRequest, ErrorKind, Secret};
use tower::ServiceExt;

const KEY: &str = "mistral-upstream-key-0123456789";
const CLIENT_KEY: &str = "sk-client-key-must-stay-home";

fn leaf(up: &MockUpstream, model: &str) -> Mistral {
    Mistral::new(
        MistralConfig::new(model)
            .api_base(up.base())
            .api_key(Secret::new(KEY)),
    )
    .unwrap()
}

fn chat(v: Value) -> ChatRequest {
    ChatRequest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap()
}

fn framed(jsonl: &[u8]) -> Vec<u8> {
    let mut out = String::new();
    for line in String::from_utf8_lossy(jsonl)
        .lines()
        .filter(|l| !l.is_empty())
    {
        out.push_str(&format!("data: {line}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

fn assert_clean(got: &common::Received) {
    let all = format!("{:?} {}", got.headers, String::from_utf8_lossy(&got.body));
    assert!(!all.contains(CLIENT_KEY), "the client's key went upstream");
}

#[tokio::test]
async fn text_completion_and_what_upstream_received() {
    let up = MockUpstream::start().await;
    up.push(Reply::json(200, fixture("mistral/chat_text.resp.json")));
    let req = chat(json!({"model": "my-group", "api_key": CLIENT_KEY,
        "messages": [{"role": "user", "content": "hello"}],
        "frequency_penalty": 0.25, "presence_penalty": 0.5, "seed": 9, "max_completion_tokens": 50}));
    let resp = leaf(&up, "mistral-large-latest")
        .oneshot(req)
        .await
        .unwrap();
    let c = resp.completion().unwrap();
    assert!(c.text().unwrap().starts_with("Hello! 😊"));
    assert_eq!(c.usage.as_ref().unwrap().total_tokens, 40);
    let got = up.last();
    assert_eq!(got.method, http::Method::POST);
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(
        got.headers["authorization"],
        format!("Bearer {KEY}").as_str()
    );
    let b = got.json();
    assert_eq!(b["model"], "mistral-large-latest");
    assert_eq!(b["random_seed"], 9);
    assert_eq!(b["max_tokens"], 50);
    assert!(b.get("seed").is_none());
    assert!(b.get("max_completion_tokens").is_none());
    assert!(b.get("api_key").is_none());
    assert_clean(&got);
}

#[tokio::test]
async fn stream_in_small_reads_ends_with_usage() {
    let up = MockUpstream::start().await;
    up.push(Reply::sse_chunked(
        &fixture("mistral/stream_thinking.sse.txt"),
        11,
        Duration::ZERO,
    ));
    let req = chat(json!({"model": "g", "stream": true,
        "messages": [{"role": "user", "content": "How do I cross the street?"}]}));
    let resp = leaf(&up, "magistral-medium-latest")
        .oneshot(req)
        .await
        .unwrap();
    let got = up.last();
    assert_eq!(got.headers["accept"], "text/event-stream");
    assert!(got.json().get("stream_options").is_none());
    let c = resp
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    assert!(
        c.text()
            .unwrap()
            .ends_with("you can ensure a safe crossing.")
    );
    let u = c.usage.unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (10, 232));
}

#[tokio::test]
async fn tool_ids_from_other_providers_are_mapped_consistently() {
    let up = MockUpstream::start().await;
    up.push(Reply::json(
        200,
        fixture("mistral/chat_tool_call.resp.json"),
    ));
    up.push(Reply::json(
        200,
        fixture("mistral/chat_after_tool_and_image.resp.json"),
    ));
    let l = leaf(&up, "pixtral-12b-latest");
    let tools = json!([{"type": "function", "function": {"name": "get_image", "parameters": {"type": "object", "properties": {}}}}]);
    let c = l
        .clone()
        .oneshot(chat(
            json!({"model": "g", "tools": tools, "tool_choice": "required",
            "messages": [{"role": "user", "content": "Call the tool."}]}),
        ))
        .await
        .unwrap();
    let c = c.completion().unwrap();
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let call = &c.choices[0].message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "FI5qQGzDE");
    assert_eq!(up.last().json()["tool_choice"], "any");

    // The follow-up carries a foreign id too (from an earlier OpenAI turn).
    let follow = chat(json!({"model": "g", "tools": tools, "messages": [
        {"role": "user", "content": "Call the tool."},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_9bKq0pX2Lm7Zz", "type": "function", "function": {"name": "get_image", "arguments": "{}"}},
            {"id": "FI5qQGzDE", "type": "function", "function": {"name": "get_image", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_9bKq0pX2Lm7Zz", "content": "a kiwi"},
        {"role": "tool", "tool_call_id": "FI5qQGzDE", "content": "another kiwi"},
        {"role": "user", "content": [{"type": "text", "text": "What is it?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}
    ]}));
    let c = l.oneshot(follow).await.unwrap();
    assert!(c.completion().unwrap().text().unwrap().contains("kiwi"));
    let b = up.last().json();
    let mapped = tool_call_id("call_9bKq0pX2Lm7Zz").into_owned();
    assert_ne!(mapped, "call_9bKq0pX2Lm7Zz");
    let m = &b["messages"];
    assert_eq!(m[1]["tool_calls"][0]["id"], mapped.as_str());
    assert_eq!(m[2]["tool_call_id"], mapped.as_str());
    assert_eq!(m[1]["tool_calls"][1]["id"], "FI5qQGzDE");
    assert_eq!(m[3]["tool_call_id"], "FI5qQGzDE");
    for v in [&m[1]["tool_calls"][0]["id"], &m[2]["tool_call_id"]] {
        let id = v.as_str().unwrap();
        assert!(
            id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{id}"
        );
    }
    assert_eq!(
        m[4]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgo="
    );
}

#[tokio::test]
async fn streamed_tool_call() {
    let up = MockUpstream::start().await;
    up.push(Reply::sse_chunked(
        &framed(&fixture("mistral/mistral-tool-call.chunks.jsonl")),
        9,
        Duration::ZERO,
    ));
    let req = chat(json!({"model": "g", "stream": true,
        "messages": [{"role": "user", "content": "Weather in SF?"}]}));
    let c = leaf(&up, "mistral-small-latest")
        .oneshot(req)
        .await
        .unwrap()
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    let call = &c.choices[0].message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "gSIMJiOkT");
    assert_eq!(call.function.name, "weather");
    assert_eq!(call.function.arguments, "{\"location\": \"San Francisco\"}");
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(c.usage.unwrap().total_tokens, 146);
}

#[tokio::test]
async fn errors_and_unsupported_params() {
    let up = MockUpstream::start().await;
    let l = leaf(&up, "mistral-small-latest");
    up.push(
        Reply::json(429, fixture("mistral/error_429_rate_limited.json")).header("retry-after", "4"),
    );
    let err = l
        .clone()
        .oneshot(chat(json!({"model": "g", "messages": []})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(4)));
    assert_eq!(err.code(), Some("1300"));
    assert_eq!(err.provider(), Some("mistral"));
    up.push(Reply::json(401, fixture("mistral/error_401_detail.json")));
    let err = l
        .clone()
        .oneshot(chat(json!({"model": "g", "messages": []})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert_eq!(err.message(), "Unauthorized");
    let before = up.received().len();
    let err = l
        .oneshot(chat(
            json!({"model": "g", "messages": [], "logprobs": true}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedParams);
    assert_eq!(err.param(), Some("logprobs"));
    assert_eq!(up.received().len(), before, "refused before any call");
}

#[tokio::test]
async fn embeddings_path_body_and_base64() {
    let up = MockUpstream::start().await;
    up.always(Reply::json(
        200,
        r#"{"id":"emb-1","object":"list","data":[{"object":"embedding","embedding":[0.25,-0.5],"index":0},{"object":"embedding","embedding":[1.0,2.0],"index":1}],"model":"mistral-embed","usage":{"prompt_tokens":6,"total_tokens":6,"completion_tokens":0}}"#,
    ));
    let l = leaf(&up, "mistral-embed");
    let req = EmbeddingRequest::from_json(br#"{"model":"e","input":["a","b"]}"#).unwrap();
    let out = l.clone().oneshot(req).await.unwrap();
    assert_eq!(out.data.len(), 2);
    assert_eq!(out.data[1].index, 1);
    assert_eq!(
        out.data[0].embedding,
        EmbeddingVector::Float(vec![0.25, -0.5])
    );
    assert_eq!(out.usage.as_ref().unwrap().total_tokens, 6);
    let got = up.last();
    assert_eq!(got.path, "/v1/embeddings");
    assert_eq!(
        got.json(),
        json!({"model": "mistral-embed", "input": ["a", "b"]})
    );
    assert_eq!(
        got.headers["authorization"],
        format!("Bearer {KEY}").as_str()
    );
    let req =
        EmbeddingRequest::from_json(br#"{"model":"e","input":"a","encoding_format":"base64"}"#)
            .unwrap();
    let out = l.oneshot(req).await.unwrap();
    assert_eq!(out.data[0].embedding.to_floats().unwrap(), vec![0.25, -0.5]);
    assert!(matches!(out.data[0].embedding, EmbeddingVector::Base64(_)));
    assert!(up.last().json().get("encoding_format").is_none());
}
