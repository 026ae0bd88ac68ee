//! The proxy binary in front of a local mock of the Anthropic API, driven by
//! the official `openai` Python SDK (`tests/python/provider_e2e.py`).
//!
//! Needs a Python with `openai` (`TOLLGATE_PYTHON`, else `.venv/bin/python`);
//! skipped with a message when absent, unless `TOLLGATE_REQUIRE_SERVICES=1`.

mod common;

use common::{MockUpstream, Proxy, Reply, fixture, run_python};

const MASTER: &str = "sk-master-anthropic-e2e-0123456789";
const UPSTREAM_KEY: &str = "sk-ant-upstream-e2e-abcdefghij";

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

fn config(up: &MockUpstream) -> String {
    format!(
        r#"
model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-haiku-4-5
      api_base: {base}
      api_key: os.environ/E2E_ANTHROPIC_KEY
general_settings:
  master_key: {MASTER}
"#,
        base = up.base()
    )
}

#[tokio::test]
async fn openai_sdk_against_an_anthropic_deployment() {
    let up = MockUpstream::start().await;
    let proxy = Proxy::start(&config(&up), &[("E2E_ANTHROPIC_KEY", UPSTREAM_KEY)]);
    up.push(Reply::json(
        200,
        http_body("anthropic/message_text.http.txt"),
    ));
    up.push(Reply::sse(http_body("anthropic/stream_text.http.txt")));
    up.push(Reply::json(200, fixture("anthropic/tool_use.resp.json")));
    up.push(Reply::sse(fixture("anthropic/stream_tool_use.sse.txt")));
    up.push(Reply::json(
        200,
        fixture("anthropic/image_base64_input.resp.json"),
    ));
    up.push(Reply::json(
        401,
        fixture("anthropic/error_401_authentication.json"),
    ));
    up.push(
        Reply::json(429, fixture("anthropic/error_429_rate_limit.json")).header("retry-after", "3"),
    );
    up.push(
        Reply::json(529, fixture("anthropic/error_529_overloaded.json"))
            .header("x-should-retry", "true"),
    );
    up.push(Reply::json(
        529,
        fixture("anthropic/error_529_overloaded.json"),
    ));
    let weather_args = serde_json::json!({"location": "San Francisco, CA", "units": "f"});
    let cases = serde_json::json!([
        {"kind": "text", "model": "claude", "expect_text": "Hello! As an AI language model, I don't have feelings, but I'm functioning properly and ready to assist you. How can I help you today?",
         "messages": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hello, how are you?"}]},
        {"kind": "stream", "model": "claude", "expect_text": "1\n2\n3\n4\n5", "usage": true},
        {"kind": "tools", "model": "claude", "expect_tool": "get_weather", "expect_args": weather_args},
        {"kind": "stream_tools", "model": "claude", "expect_tool": "get_weather", "expect_args": weather_args},
        {"kind": "image", "model": "claude", "image_url": "data:image/png;base64,iVBORw0KGgo=", "expect_contains": "potato"},
        {"kind": "error", "model": "claude", "expect_status": 401},
        {"kind": "error", "model": "claude", "expect_status": 429},
        {"kind": "error", "model": "claude", "expect_status": 503},
        {"kind": "error", "model": "claude", "expect_status": 503, "stream": true},
    ]);
    if !run_python(
        "openai_sdk_against_an_anthropic_deployment",
        "openai",
        "provider_e2e.py",
        &proxy,
        MASTER,
        &[cases.to_string()],
    )
    .await
    {
        return;
    }
    let got = up.received();
    assert_eq!(got.len(), 9);
    for r in &got {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.headers["x-api-key"], UPSTREAM_KEY);
        assert_eq!(r.headers["anthropic-version"], "2023-06-01");
        assert!(r.headers.get("authorization").is_none());
        let everything = format!("{:?}{}", r.headers, String::from_utf8_lossy(&r.body));
        assert!(
            !everything.contains(MASTER),
            "the client's key went upstream"
        );
        let body = r.json();
        assert_eq!(body["model"], "claude-haiku-4-5");
        assert!(body["max_tokens"].as_u64().unwrap() > 0);
    }
    let text = got[0].json();
    assert_eq!(text["system"], "Be nice.");
    assert_eq!(
        text["messages"],
        serde_json::json!([{"role": "user", "content": "Hello, how are you?"}])
    );
    assert_eq!(got[1].json()["stream"], true);
    let tools = got[2].json();
    assert_eq!(tools["tools"][0]["name"], "get_weather");
    assert_eq!(
        tools["tools"][0]["input_schema"]["required"],
        serde_json::json!(["city"])
    );
    assert_eq!(got[3].json()["stream"], true);
    let image = got[4].json();
    assert_eq!(
        image["messages"][0]["content"][1],
        serde_json::json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
    );
}
