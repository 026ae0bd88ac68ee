//! Mistral end to end: the proxy binary in front of a local Mistral mock,
//! driven by the official `openai` Python SDK (`tests/python/provider_e2e.py`).

mod common;

use common::{MockUpstream, Proxy, Reply, fixture, run_python};
use serde_json::json;
use std::time::Duration;

const KEY: &str = "sk-mistral-e2e-master-key";
const MISTRAL_KEY: &str = "mistral-e2e-upstream-key-0123";

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

#[tokio::test]
async fn openai_sdk_through_the_proxy_to_mistral() {
    let up = MockUpstream::start().await;
    let config = format!(
        r#"
model_list:
  - model_name: large
    litellm_params:
      model: mistral/mistral-large-latest
      api_base: "{base}"
  - model_name: embed
    litellm_params:
      model: mistral/mistral-embed
      api_base: "{base}/v1"
general_settings:
  master_key: {KEY}
router_settings:
  num_retries: 0
"#,
        base = up.base()
    );
    let proxy = Proxy::start(&config, &[("MISTRAL_API_KEY", MISTRAL_KEY)]);

    let stream_error = concat!(
        "data: {\"id\":\"e1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"mistral-large-latest\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Bon\"},\"finish_reason\":null}]}\n\n",
        "data: {\"object\":\"error\",\"message\":\"Service tier capacity exceeded for this model.\",\"type\":\"service_tier_capacity_exceeded\",\"param\":null,\"code\":\"3505\"}\n\n",
    );
    up.push(Reply::json(200, fixture("mistral/chat_text.resp.json")));
    up.push(Reply::sse_chunked(
        &fixture("mistral/stream_thinking.sse.txt"),
        64,
        Duration::ZERO,
    ));
    up.push(Reply::json(
        200,
        fixture("mistral/mistral-tool-call.resp.json"),
    ));
    up.push(Reply::sse(framed(&fixture(
        "mistral/mistral-tool-call.chunks.jsonl",
    ))));
    up.push(Reply::json(
        200,
        fixture("mistral/chat_after_tool_and_image.resp.json"),
    ));
    up.push(Reply::json(
        200,
        fixture("mistral/chat_after_tool_and_image.resp.json"),
    ));
    up.push(
        Reply::json(429, fixture("mistral/error_429_rate_limited.json")).header("retry-after", "1"),
    );
    up.push(Reply::json(401, fixture("mistral/error_401_detail.json")));
    up.push(Reply::sse(stream_error));
    up.push(Reply::json(
        200,
        r#"{"id":"emb","object":"list","data":[{"object":"embedding","embedding":[-0.0165,0.0771,0.0041],"index":0},{"object":"embedding","embedding":[0.5,0.25,0.125],"index":1}],"model":"mistral-embed","usage":{"prompt_tokens":4,"total_tokens":4,"completion_tokens":0}}"#,
    ));

    let png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let cases = json!([
        {"kind": "text", "model": "large",
         "expect_text": "Hello! 😊 How can I assist you today? Whether you have a question, need help with something, or just want to chat, I'm here for you!"},
        {"kind": "stream", "model": "large", "usage": true,
         "expect_contains": "By following these steps, you can ensure a safe crossing."},
        {"kind": "tools", "model": "large", "expect_tool": "weather", "expect_args": {"location": "San Francisco"}},
        {"kind": "stream_tools", "model": "large", "expect_tool": "weather", "expect_args": {"location": "San Francisco"}},
        {"kind": "text", "model": "large", "tools": true, "expect_contains": "kiwi",
         "messages": [
            {"role": "user", "content": "What fruit is in the image from get_image?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_Y6qJ7ofLgOrBnMD5WbVAeiRV", "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_Y6qJ7ofLgOrBnMD5WbVAeiRV", "content": "an image of a kiwi"}]},
        {"kind": "image", "model": "large", "image_url": png, "expect_contains": "kiwi"},
        {"kind": "error", "model": "large", "expect_status": 429},
        {"kind": "error", "model": "large", "expect_status": 401, "stream": true},
        {"kind": "error", "model": "large", "expect_status": 400, "extra_body": {"logit_bias": {"1": 2}}},
        {"kind": "stream_error", "model": "large", "expect_contains": "capacity exceeded", "expect_text": "Bon"},
        {"kind": "embeddings", "model": "embed", "input": ["a", "b"], "expect_count": 2,
         "encoding_format": "sdk_default", "expect_first": [-0.0165, 0.0771, 0.0041]}
    ]);
    if !run_python(
        "openai_sdk_through_the_proxy_to_mistral",
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
        10,
        "one upstream call per case, none for the refused parameter"
    );
    for (i, g) in got.iter().enumerate() {
        assert_eq!(
            g.headers["authorization"],
            format!("Bearer {MISTRAL_KEY}").as_str(),
            "case {i}"
        );
        assert!(
            !String::from_utf8_lossy(&g.body).contains(KEY),
            "case {i}: the client's key went upstream"
        );
        let want = if i == 9 {
            "/v1/embeddings"
        } else {
            "/v1/chat/completions"
        };
        assert_eq!(g.path, want, "case {i}");
    }
    assert_eq!(got[0].json()["model"], "mistral-large-latest");
    assert!(got[1].json().get("stream_options").is_none());
    assert_eq!(got[2].json()["tools"][0]["function"]["name"], "get_weather");
    // The OpenAI-style id became a 9-character Mistral id, the same in both places.
    let follow = got[4].json();
    let id = follow["messages"][1]["tool_calls"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{id}"
    );
    assert_eq!(follow["messages"][2]["tool_call_id"], id.as_str());
    assert_eq!(
        got[5].json()["messages"][0]["content"][1]["image_url"]["url"],
        png
    );
    let emb = got[9].json();
    assert_eq!(emb, json!({"model": "mistral-embed", "input": ["a", "b"]}));
    assert!(!proxy.logs().contains(MISTRAL_KEY));
}
