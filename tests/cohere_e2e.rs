//! Cohere end to end: the proxy binary in front of a local Cohere v2 mock,
//! driven by the official `openai` Python SDK (`tests/python/provider_e2e.py`).

mod common;

use common::{MockUpstream, Proxy, Reply, fixture, run_python};
use serde_json::json;
use std::time::Duration;

const KEY: &str = "sk-cohere-e2e-master-key";
const COHERE_KEY: &str = "cohere-e2e-upstream-key-0123";

#[tokio::test]
async fn openai_sdk_through_the_proxy_to_cohere() {
    let up = MockUpstream::start().await;
    let config = format!(
        r#"
model_list:
  - model_name: command
    litellm_params:
      model: cohere_chat/command-a-03-2025
      api_base: "{base}"
      api_key: os.environ/E2E_COHERE_KEY
  - model_name: reasoning
    litellm_params:
      model: cohere/command-a-reasoning-08-2025
      api_base: "{base}/v2/chat"
      api_key: os.environ/E2E_COHERE_KEY
      input_cost_per_token: 0.0000025
      output_cost_per_token: 0.00001
  - model_name: embed
    litellm_params:
      model: cohere/embed-v4.0
      api_base: "{base}"
      api_key: os.environ/E2E_COHERE_KEY
general_settings:
  master_key: {KEY}
router_settings:
  num_retries: 0
"#,
        base = up.base()
    );
    let proxy = Proxy::start(&config, &[("E2E_COHERE_KEY", COHERE_KEY)]);

    let stream_error = concat!(
        "event: message-start\ndata: {\"id\":\"s1\",\"type\":\"message-start\",\"delta\":{\"message\":{\"role\":\"assistant\",\"content\":[]}}}\n\n",
        "event: content-start\ndata: {\"type\":\"content-start\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"type\":\"text\",\"text\":\"\"}}}}\n\n",
        "event: content-delta\ndata: {\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"text\":\"The\"}}}}\n\n",
        "event: message-end\ndata: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"ERROR\"}}\n\n",
    );
    up.push(Reply::json(200, fixture("cohere/cohere-text.resp.json")));
    up.push(Reply::sse_chunked(
        &fixture("cohere/cohere-text.sse.derived.txt"),
        23,
        Duration::ZERO,
    ));
    up.push(Reply::json(
        200,
        fixture("cohere/cohere-tool-call.resp.json"),
    ));
    up.push(Reply::sse(fixture(
        "cohere/cohere-tool-call.sse.derived.txt",
    )));
    up.push(Reply::sse(fixture(
        "cohere/cohere-empty-tool-call.sse.derived.txt",
    )));
    up.push(Reply::json(
        200,
        fixture("cohere/cohere-null-args.resp.json"),
    ));
    up.push(Reply::json(200, fixture("cohere/chat_text.resp.json")));
    up.push(Reply::sse(fixture(
        "cohere/cohere-reasoning.sse.derived.txt",
    )));
    up.push(Reply::json(
        401,
        fixture("cohere/error_401_invalid_api_token.json"),
    ));
    up.push(Reply::json(429, r#"{"id":"r","message":"You are using a Trial key, which is limited to 10 API calls / minute."}"#).header("retry-after", "1"));
    up.push(Reply::json(
        404,
        fixture("cohere/embed_error_404.resp.json"),
    ));
    up.push(Reply::sse(stream_error));
    up.push(Reply::json(
        200,
        fixture("cohere/cohere-embedding.resp.json"),
    ));

    let png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let cases = json!([
        {"kind": "text", "model": "command", "expect_text": "The capital of France is Paris."},
        {"kind": "stream", "model": "command", "usage": true, "expect_text": "The capital of France is Paris."},
        {"kind": "tools", "model": "command", "expect_tool": "weather", "expect_args": {"location": "San Francisco"}},
        {"kind": "stream_tools", "model": "command", "expect_tool": "weather", "expect_args": {"location": "San Francisco"}},
        {"kind": "stream_tools", "model": "command", "expect_tool": "currentTime", "expect_args": {}},
        {"kind": "tools", "model": "command", "expect_tool": "currentTime", "expect_args": {}},
        {"kind": "image", "model": "command", "image_url": png, "expect_text": "Hello! How can I assist you today?"},
        {"kind": "stream", "model": "reasoning", "usage": true, "expect_text": "The answer to 2 + 2 is 4."},
        {"kind": "error", "model": "command", "expect_status": 401},
        {"kind": "error", "model": "command", "expect_status": 429, "stream": true},
        {"kind": "error", "model": "command", "expect_status": 404},
        {"kind": "error", "model": "command", "expect_status": 400, "extra_body": {"n": 2}},
        {"kind": "stream_error", "model": "command", "expect_contains": "error", "expect_text": "The"},
        {"kind": "embeddings", "model": "embed", "input": ["sunny day at the beach", "rainy day in the city"],
         "expect_count": 2, "encoding_format": "sdk_default",
         "expect_first": [0.03302002, 0.020904541, -0.019744873, -0.0625, 0.04437256]}
    ]);
    if !run_python(
        "openai_sdk_through_the_proxy_to_cohere",
        "openai",
        "provider_e2e.py",
        &proxy,
        KEY,
        &[cases.to_string()],
    )
    .await
    {
        return;
    }

    let got = up.received();
    assert_eq!(
        got.len(),
        13,
        "one upstream call per case, none for the refused parameter"
    );
    for (i, g) in got.iter().enumerate() {
        assert_eq!(
            g.headers["authorization"],
            format!("Bearer {COHERE_KEY}").as_str(),
            "case {i}"
        );
        assert!(
            !String::from_utf8_lossy(&g.body).contains(KEY),
            "case {i}: the client's key went upstream"
        );
        let want = if i == 12 { "/v2/embed" } else { "/v2/chat" };
        assert_eq!(g.path, want, "case {i}");
    }
    let first = got[0].json();
    assert_eq!(first["model"], "command-a-03-2025");
    assert_eq!(first["stream"], false);
    assert_eq!(
        first["messages"],
        json!([{"role": "user", "content": "Hello"}])
    );
    assert_eq!(got[1].json()["stream"], true);
    assert!(got[1].json().get("stream_options").is_none());
    assert_eq!(got[2].json()["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        got[6].json()["messages"][0]["content"][1],
        json!({"type": "image_url", "image_url": {"url": png}})
    );
    assert_eq!(got[7].json()["model"], "command-a-reasoning-08-2025");
    assert_eq!(
        got[12].json(),
        json!({"model": "embed-v4.0", "texts": ["sunny day at the beach", "rainy day in the city"],
               "input_type": "search_document", "embedding_types": ["float"]})
    );
    assert!(!proxy.logs().contains(COHERE_KEY));
}
