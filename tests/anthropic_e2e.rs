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
# The mock answers the cases in order: no retries may consume the next case's answer.
router_settings:
  num_retries: 0
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

const REASONING: &str = "This is a straightforward question about pedestrian safety. I should provide clear, helpful advice about how to safely cross a street. This is basic safety information that could help prevent accidents.";

/// The official `anthropic` SDK against `/v1/messages`, routed to (a) an
/// OpenAI-format upstream, (b) the mock provider and (c) an Anthropic
/// deployment (native pass-through).
#[tokio::test]
async fn anthropic_sdk_against_the_messages_door() {
    let openai = MockUpstream::start().await;
    let claude = MockUpstream::start().await;
    let config = format!(
        r#"
model_list:
  - model_name: gpt
    litellm_params: {{model: openai/gpt-4o-2024-08-06, api_base: "{openai}/v1", api_key: sk-openai-upstream-0123456789}}
  - model_name: demo
    litellm_params: {{model: mock/demo}}
  - model_name: busy
    litellm_params: {{model: mock/busy, mock_response: "litellm.RateLimitError: slow down"}}
  - model_name: claude
    litellm_params: {{model: anthropic/claude-haiku-4-5, api_base: "{claude}", api_key: os.environ/E2E_ANTHROPIC_KEY}}
general_settings:
  master_key: {MASTER}
# The mock answers the cases in order: no retries may consume the next case's answer.
router_settings:
  num_retries: 0
"#,
        openai = openai.base(),
        claude = claude.base()
    );
    let proxy = Proxy::start(&config, &[("E2E_ANTHROPIC_KEY", UPSTREAM_KEY)]);

    // (a) OpenAI-format upstream, replaying OpenAI fixtures.
    openai.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
    openai.push(Reply::sse(fixture("openai/chat_stream_text.sse.txt")));
    openai.push(Reply::json(200, fixture("openai/chat_tool_call.resp.json")));
    openai.push(Reply::sse(fixture("openai/chat_stream_tool_call.sse.txt")));
    openai.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
    openai.push(Reply::json(
        429,
        fixture("openai/error_429_rate_limit_tokens.json"),
    ));
    // (c) Anthropic upstream, replaying Anthropic fixtures.
    claude.push(
        Reply::json(200, http_body("anthropic/message_text.http.txt"))
            .header("request-id", "req_011CSFCDzbeWe2qGKAeNMhfZ"),
    );
    claude.push(Reply::sse(fixture("anthropic/stream_thinking.sse.txt")));
    claude.push(Reply::json(200, fixture("anthropic/tool_use.resp.json")));
    claude.push(Reply::sse(fixture("anthropic/stream_tool_use.sse.txt")));
    claude.push(Reply::json(
        200,
        fixture("anthropic/image_base64_input.resp.json"),
    ));
    claude.push(Reply::json(
        529,
        fixture("anthropic/error_529_overloaded.json"),
    ));
    claude.push(Reply::sse(fixture("anthropic/stream_error_event.sse.txt")));

    let gpt_text = "I'm unable to provide real-time weather updates. To get the current weather in San Francisco, I recommend checking a reliable weather website or app like the Weather Channel or a local news station.";
    let cases = serde_json::json!([
        // (a)
        {"kind": "create", "model": "gpt", "system": "Be brief.", "expect_text": gpt_text, "expect_stop": "end_turn",
         "expect_usage": [14, 37], "expect_id": "chatcmpl-ABfvaueLEMLNYbT8YzpJxsmiQ6HSY"},
        {"kind": "stream", "model": "gpt", "expect_usage": [14, 30],
         "expect_text": "I'm unable to provide real-time weather updates. To get the current weather in San Francisco, I recommend checking a reliable weather website or a weather app."},
        {"kind": "tools", "model": "gpt", "expect_tool": "GetWeatherArgs", "expect_args": {"city": "Edinburgh", "country": "UK", "units": "c"}},
        {"kind": "stream_tools", "model": "gpt", "expect_tool": "get_weather", "expect_args": {"city": "San Francisco", "state": "CA"}},
        {"kind": "image", "model": "gpt", "expect_contains": "unable to provide real-time weather"},
        {"kind": "error", "model": "gpt", "expect_status": 429, "expect_type": "rate_limit_error"},
        // (b)
        {"kind": "create", "model": "demo", "expect_text": "This is a mock response from tollgate.", "expect_stop": "end_turn"},
        {"kind": "stream", "model": "demo", "expect_text": "This is a mock response from tollgate."},
        {"kind": "count_tokens", "model": "demo"},
        {"kind": "error", "model": "busy", "expect_status": 429, "expect_type": "rate_limit_error"},
        {"kind": "error", "model": "nope", "expect_status": 404, "expect_type": "not_found_error"},
        // (c)
        {"kind": "create", "model": "claude", "beta": "prompt-caching-2024-07-31", "expect_id": "msg_014pVpaDLxzAdWjwpuN7rQQX", "expect_usage": [13, 35],
         "expect_text": "Hello! As an AI language model, I don't have feelings, but I'm functioning properly and ready to assist you. How can I help you today?"},
        {"kind": "stream", "model": "claude", "expect_thinking": REASONING, "expect_signature_prefix": "EvMCCkYICxgCKkCHP2cSuEdcJK",
         "expect_contains": "Here are the basic steps for safely crossing the street", "expect_usage": [43, 282]},
        {"kind": "tools", "model": "claude", "expect_tool": "get_weather", "expect_args": {"location": "San Francisco, CA", "units": "f"}},
        {"kind": "stream_tools", "model": "claude", "expect_tool": "get_weather", "expect_args": {"location": "San Francisco, CA", "units": "f"}},
        {"kind": "image", "model": "claude", "expect_contains": "potato"},
        {"kind": "error", "model": "claude", "expect_status": 529, "expect_type": "overloaded_error"},
        // The error event is the stream's first: nothing reached the client yet, so it is
        // an HTTP error (the retry layer waits for a stream's first chunk).
        {"kind": "error", "model": "claude", "stream": true, "expect_status": 529, "expect_type": "overloaded_error"},
    ]);
    if !run_python(
        "anthropic_sdk_against_the_messages_door",
        "anthropic",
        "anthropic_sdk_e2e.py",
        &proxy,
        MASTER,
        &[cases.to_string()],
    )
    .await
    {
        return;
    }

    // (a) The OpenAI upstream got OpenAI requests with its own key.
    let got = openai.received();
    assert_eq!(got.len(), 6);
    for r in &got {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(
            r.headers["authorization"],
            "Bearer sk-openai-upstream-0123456789"
        );
        assert!(!format!("{:?}{}", r.headers, String::from_utf8_lossy(&r.body)).contains(MASTER));
    }
    let first = got[0].json();
    assert_eq!(first["model"], "gpt-4o-2024-08-06");
    assert_eq!(
        first["messages"],
        serde_json::json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}])
    );
    assert_eq!(first["max_tokens"], 256);
    assert_eq!(got[1].json()["stream_options"]["include_usage"], true);
    assert_eq!(got[2].json()["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        got[4].json()["messages"][0]["content"][1],
        serde_json::json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}})
    );

    // (c) The Anthropic upstream got the SDK's own body, only the model replaced.
    let got = claude.received();
    assert_eq!(got.len(), 7);
    for r in &got {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.headers["x-api-key"], UPSTREAM_KEY);
        assert_eq!(r.headers["anthropic-version"], "2023-06-01");
        assert!(!format!("{:?}{}", r.headers, String::from_utf8_lossy(&r.body)).contains(MASTER));
        assert_eq!(r.json()["model"], "claude-haiku-4-5");
    }
    assert_eq!(
        got[0].headers["anthropic-beta"],
        "prompt-caching-2024-07-31"
    );
    assert_eq!(
        got[0].json(),
        serde_json::json!({"model": "claude-haiku-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": "Hello"}]})
    );
    assert_eq!(got[1].json()["stream"], true);
    assert_eq!(
        got[2].json()["tools"][0]["input_schema"]["required"],
        serde_json::json!(["city"])
    );
    assert_eq!(
        got[4].json()["messages"][0]["content"][1],
        serde_json::json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
    );
}

/// A Bedrock event-stream body as the mock's reply.
fn eventstream(body: &[u8]) -> Reply {
    Reply {
        status: 200,
        headers: vec![(
            "content-type".into(),
            "application/vnd.amazon.eventstream".into(),
        )],
        pieces: body
            .chunks(97)
            .map(|c| (std::time::Duration::ZERO, bytes::Bytes::copy_from_slice(c)))
            .collect(),
        hang: false,
    }
}

/// The official `anthropic` SDK against `/v1/messages`, routed to a Gemini
/// deployment and a Bedrock (Converse) deployment: text, stream, tools and
/// streamed tools, each upstream checked on what it received.
#[tokio::test]
async fn anthropic_sdk_against_the_messages_door_to_gemini_and_bedrock() {
    const GEMINI_KEY: &str = "AIzaSy-messages-door-gemini-0123456789";
    let gemini = MockUpstream::start().await;
    let bedrock = MockUpstream::start().await;
    let config = format!(
        r#"
model_list:
  - model_name: gemini
    litellm_params: {{model: gemini/gemini-2.5-flash, api_base: "{gemini}", api_key: os.environ/E2E_GEMINI_KEY}}
  - model_name: bedrock
    litellm_params:
      model: bedrock/us.anthropic.claude-3-5-haiku-20241022-v1:0
      aws_bedrock_runtime_endpoint: "{bedrock}"
      aws_region_name: us-east-1
      aws_access_key_id: AKIDEXAMPLE
      aws_secret_access_key: os.environ/E2E_AWS_SECRET
general_settings:
  master_key: {MASTER}
# The mocks answer the cases in order: no retries may consume the next case's answer.
router_settings:
  num_retries: 0
"#,
        gemini = gemini.base(),
        bedrock = bedrock.base()
    );
    let proxy = Proxy::start(
        &config,
        &[
            ("E2E_GEMINI_KEY", GEMINI_KEY),
            ("E2E_AWS_SECRET", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        ],
    );
    gemini.push(Reply::json(200, fixture("gemini/generate_text.resp.json")));
    gemini.push(Reply::sse(fixture("gemini/stream_text.sse.txt")));
    gemini.push(Reply::json(
        200,
        fixture("gemini/generate_tool_call.resp.json"),
    ));
    gemini.push(Reply::sse(fixture("gemini/stream_tool_call.sse.txt")));
    gemini.push(Reply::json(
        429,
        fixture("gemini/error_429_quota_retryinfo.json"),
    ));
    bedrock.push(Reply::json(200, fixture("bedrock/converse_text.resp.json")));
    bedrock.push(eventstream(&fixture(
        "bedrock/converse_stream_text_after_tool.eventstream.bin",
    )));
    bedrock.push(Reply::json(
        200,
        fixture("bedrock/converse_tool_use.resp.json"),
    ));
    bedrock.push(eventstream(&fixture(
        "bedrock/converse_stream_text_then_tool_use.eventstream.bin",
    )));
    let cases = serde_json::json!([
        {"kind": "create", "model": "gemini", "system": "Be brief.", "expect_text": "Hello! How can I help you today?",
         "expect_stop": "end_turn", "expect_usage": [9, 43]},
        {"kind": "stream", "model": "gemini", "expect_text": "The capital of France is Paris.\n", "expect_usage": [13, 8]},
        {"kind": "tools", "model": "gemini", "expect_tool": "get_user_country", "expect_args": {}},
        {"kind": "stream_tools", "model": "gemini", "expect_tool": "get_country", "expect_args": {}},
        {"kind": "error", "model": "gemini", "expect_status": 429, "expect_type": "rate_limit_error"},
        {"kind": "create", "model": "bedrock", "expect_usage": [7, 30], "expect_stop": "end_turn",
         "expect_text": "Hello! How can I assist you today? Whether you have questions, need information, or just want to chat, I'm here to help."},
        {"kind": "stream", "model": "bedrock", "expect_text": "The current temperature in Paris, the capital of France, is 30°C.", "expect_usage": [577, 18]},
        {"kind": "tools", "model": "bedrock", "expect_tool": "get_weather", "expect_args": {"city": "Paris"}},
        {"kind": "stream_tools", "model": "bedrock", "expect_tool": "get_temperature", "expect_args": {"city": "Paris"}},
    ]);
    if !run_python(
        "anthropic_sdk_against_the_messages_door_to_gemini_and_bedrock",
        "anthropic",
        "anthropic_sdk_e2e.py",
        &proxy,
        MASTER,
        &[cases.to_string()],
    )
    .await
    {
        return;
    }

    let got = gemini.received();
    assert_eq!(got.len(), 5);
    for r in &got {
        assert_eq!(r.headers["x-goog-api-key"], GEMINI_KEY);
        assert!(r.headers.get("authorization").is_none());
        assert!(!format!("{:?}{}", r.headers, String::from_utf8_lossy(&r.body)).contains(MASTER));
    }
    assert_eq!(
        got[0].path,
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
    let first = got[0].json();
    assert_eq!(first["systemInstruction"]["parts"][0]["text"], "Be brief.");
    assert_eq!(
        first["contents"],
        serde_json::json!([{"role": "user", "parts": [{"text": "Hello"}]}])
    );
    assert_eq!(first["generationConfig"]["maxOutputTokens"], 256);
    assert_eq!(
        got[1].path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(
        got[2].json()["tools"][0]["functionDeclarations"][0]["name"],
        "get_weather"
    );
    assert!(got[3].path.ends_with(":streamGenerateContent?alt=sse"));

    let got = bedrock.received();
    assert_eq!(got.len(), 4);
    for r in &got {
        let auth = r.headers["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                && auth.contains("/us-east-1/bedrock/aws4_request"),
            "{auth}"
        );
        assert!(!String::from_utf8_lossy(&r.body).contains(MASTER));
    }
    let model = "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0";
    assert_eq!(got[0].path, format!("{model}/converse"));
    assert_eq!(got[1].path, format!("{model}/converse-stream"));
    assert_eq!(got[0].json()["inferenceConfig"]["maxTokens"], 256);
    assert_eq!(
        got[2].json()["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "get_weather"
    );
    assert_eq!(got[3].path, format!("{model}/converse-stream"));
}
