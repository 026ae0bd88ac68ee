//! The Cohere v2 leaf against a local server replaying recorded Cohere traffic.

mod common;

use common::{MockUpstream, Reply, fixture};
use serde_json::{Value, json};
use std::time::Duration;
use tollgate::error::LimitSource;
use tollgate::provider::cohere::{Cohere, CohereConfig};
use tollgate::types::{EmbeddingVector, FinishReason};
use tollgate::{ChatRequest, EmbeddingRequest, ErrorKind, Secret};
use tower::ServiceExt;

const KEY: &str = "cohere-upstream-key-0123456789";
const CLIENT_KEY: &str = "sk-client-key-must-stay-home";

fn leaf(up: &MockUpstream, model: &str) -> Cohere {
    Cohere::new(
        CohereConfig::new(model)
            .api_base(up.base())
            .api_key(Secret::new(KEY)),
    )
    .unwrap()
}

fn chat(v: Value) -> ChatRequest {
    ChatRequest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap()
}

fn assert_clean(got: &common::Received) {
    let all = format!("{:?} {}", got.headers, String::from_utf8_lossy(&got.body));
    assert!(!all.contains(CLIENT_KEY), "the client's key went upstream");
}

#[tokio::test]
async fn text_completion_and_what_upstream_received() {
    let up = MockUpstream::start().await;
    up.push(Reply::json(200, fixture("cohere/chat_text.resp.json")));
    let req = chat(
        json!({"model": "my-group", "api_key": CLIENT_KEY, "top_p": 0.5, "stop": ["END"],
        "messages": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hello"}]}),
    );
    let resp = leaf(&up, "command-r7b-12-2024").oneshot(req).await.unwrap();
    let c = resp.completion().unwrap();
    assert_eq!(c.text(), Some("Hello! How can I assist you today?"));
    assert_eq!(c.model, "command-r7b-12-2024");
    assert_eq!(c.usage.as_ref().unwrap().prompt_tokens, 496);
    let got = up.last();
    assert_eq!(got.method, http::Method::POST);
    assert_eq!(got.path, "/v2/chat");
    assert_eq!(
        got.headers["authorization"],
        format!("Bearer {KEY}").as_str()
    );
    assert_eq!(got.headers["content-type"], "application/json");
    let b = got.json();
    assert_eq!(
        b,
        json!({"model": "command-r7b-12-2024", "stream": false, "p": 0.5, "stop_sequences": ["END"],
            "messages": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hello"}]})
    );
    assert_clean(&got);
}

#[tokio::test]
async fn stream_in_small_reads_ends_with_usage() {
    let up = MockUpstream::start().await;
    up.push(Reply::sse_chunked(
        &fixture("cohere/cohere-reasoning.sse.derived.txt"),
        13,
        Duration::ZERO,
    ));
    let req = chat(
        json!({"model": "g", "stream": true, "thinking": {"type": "enabled", "token_budget": 500},
        "messages": [{"role": "user", "content": "2+2?"}]}),
    );
    let resp = leaf(&up, "command-a-reasoning-08-2025")
        .oneshot(req)
        .await
        .unwrap();
    let got = up.last();
    assert_eq!(got.headers["accept"], "text/event-stream");
    let b = got.json();
    assert_eq!(b["stream"], true);
    assert_eq!(
        b["thinking"],
        json!({"type": "enabled", "token_budget": 500})
    );
    let c = resp
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    assert_eq!(c.id, "c9117d7f-a7e4-499f-b643-a2a1e139687b");
    assert_eq!(c.text(), Some("The answer to 2 + 2 is 4."));
    assert!(
        c.choices[0]
            .message
            .reasoning_content
            .as_deref()
            .unwrap()
            .starts_with("The user is asking")
    );
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.cached_tokens()),
        (1394, 54, 1360)
    );
}

#[tokio::test]
async fn tools_round_trip() {
    let up = MockUpstream::start().await;
    up.push(Reply::json(
        200,
        fixture("cohere/cohere-tool-call.resp.json"),
    ));
    up.push(Reply::json(200, fixture("cohere/cohere-text.resp.json")));
    let l = leaf(&up, "command-a-03-2025");
    let tools = json!([{"type": "function", "function": {"name": "weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    let resp = l
        .clone()
        .oneshot(chat(
            json!({"model": "g", "tools": tools, "tool_choice": "required",
            "messages": [{"role": "user", "content": "Weather in SF?"}]}),
        ))
        .await
        .unwrap();
    let c = resp.completion().unwrap();
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let calls = c.choices[0].message.tool_calls.clone().unwrap();
    assert_eq!(
        calls[0].function.arguments,
        "{\"location\":\"San Francisco\"}"
    );
    let b = up.last().json();
    assert_eq!(b["tool_choice"], "REQUIRED");
    assert_eq!(b["tools"][0]["function"]["name"], "weather");

    // The client sends the calls and their results back.
    let plan = c.choices[0].message.reasoning_content.clone().unwrap();
    let follow = chat(json!({"model": "g", "tools": tools, "messages": [
        {"role": "user", "content": "Weather in SF?"},
        {"role": "assistant", "content": null, "reasoning_content": plan, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "weather_dqgshstja6p9", "content": "{\"temp\": 18}"},
        {"role": "tool", "tool_call_id": "cityAttractions_dcxfx4myvx68", "content": [{"type": "text", "text": "Golden Gate"}]}
    ]}));
    let c = l.oneshot(follow).await.unwrap();
    assert_eq!(
        c.completion().unwrap().text(),
        Some("The capital of France is Paris.")
    );
    let b = up.last().json();
    let m = &b["messages"];
    assert_eq!(m[1]["tool_plan"], plan.as_str());
    assert_eq!(m[1]["tool_calls"][1]["id"], "cityAttractions_dcxfx4myvx68");
    assert_eq!(
        m[1]["tool_calls"][1]["function"]["arguments"],
        "{\"city\":\"San Francisco\"}"
    );
    assert!(m[1].get("content").is_none());
    assert_eq!(
        m[2],
        json!({"role": "tool", "tool_call_id": "weather_dqgshstja6p9", "content": "{\"temp\": 18}"})
    );
    assert_eq!(
        m[3]["content"],
        json!([{"type": "text", "text": "Golden Gate"}])
    );
}

#[tokio::test]
async fn errors_map_by_status() {
    let up = MockUpstream::start().await;
    let l = leaf(&up, "command-a-03-2025");
    up.push(Reply::json(
        401,
        fixture("cohere/error_401_invalid_api_token.json"),
    ));
    let err = l
        .clone()
        .oneshot(chat(json!({"model": "g", "messages": []})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert_eq!(err.message(), "invalid api token");
    assert_eq!(err.provider(), Some("cohere"));
    up.push(
        Reply::json(429, r#"{"id":"x","message":"trial key limit"}"#).header("retry-after", "9"),
    );
    let err = l
        .clone()
        .oneshot(chat(json!({"model": "g", "messages": []})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(9)));
    let before = up.received().len();
    let err = l
        .oneshot(chat(json!({"model": "g", "messages": [], "n": 2})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedParams);
    assert_eq!(up.received().len(), before);
}

#[tokio::test]
async fn embeddings_path_body_and_errors() {
    let up = MockUpstream::start().await;
    up.push(Reply::json(
        200,
        fixture("cohere/cohere-embedding.resp.json"),
    ));
    up.push(Reply::json(
        404,
        fixture("cohere/embed_error_404.resp.json"),
    ));
    let l = leaf(&up, "embed-english-v3.0");
    let req = EmbeddingRequest::from_json(
        br#"{"model":"e","input":["sunny day at the beach","rainy day in the city"],"input_type":"classification","api_key":"sk-client-key-must-stay-home"}"#,
    )
    .unwrap();
    let out = l.clone().oneshot(req.clone()).await.unwrap();
    assert_eq!(out.data.len(), 2);
    assert_eq!(
        out.data[0].embedding,
        EmbeddingVector::Float(vec![
            0.03302002,
            0.020904541,
            -0.019744873,
            -0.0625,
            0.04437256
        ])
    );
    assert_eq!(out.usage.as_ref().unwrap().prompt_tokens, 10);
    let got = up.last();
    assert_eq!(got.path, "/v2/embed");
    assert_eq!(
        got.json(),
        json!({"model": "embed-english-v3.0", "texts": ["sunny day at the beach", "rainy day in the city"],
               "input_type": "classification", "embedding_types": ["float"]})
    );
    assert_clean(&got);
    let err = l.oneshot(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().starts_with("model 'nonexistent' not found"));
}
