//! Claude on Vertex AI: the leaf against a local Vertex AI and OAuth token
//! endpoint, and the proxy binary driven by the official `openai` SDK
//! (`provider_e2e.py`) and `anthropic` SDK (`anthropic_sdk_e2e.py`, the
//! `/v1/messages` door).
//!
//! The SDK tests need a Python with the SDKs (`TOLLGATE_PYTHON`, else
//! `.venv/bin/python`); skipped with a message when absent, unless
//! `TOLLGATE_REQUIRE_SERVICES=1`.

mod common;

use common::{MockUpstream, Proxy, Reply, TempDir, fixture, run_python};
use serde_json::{Value, json};
use tollgate::provider::anthropic::{VERTEX_ANTHROPIC_VERSION, VertexClaude, VertexClaudeConfig};
use tollgate::provider::gemini::{GoogleAuth, GoogleCredentials};
use tollgate::transport::HttpClient;
use tollgate::types::FinishReason;
use tollgate::{ChatRequest, ErrorKind};
use tower::ServiceExt;

const MASTER: &str = "sk-e2e-master-key-vertex-claude-0123";
const TOKEN: &str = "ya29.vertex-claude-token";
const MODEL_PATH: &str = "/v1/projects/tollgate-test-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514";

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

/// The throwaway service account, with its token endpoint on `token`.
fn credentials_json(token: &MockUpstream) -> String {
    let mut creds: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/google_test_key/TEST_ONLY_service_account.json"
        ))
        .unwrap(),
    )
    .unwrap();
    creds["token_uri"] = json!(format!("{}/token", token.base()));
    creds.to_string()
}

fn token_endpoint(token: &MockUpstream) {
    token.always(Reply::json(
        200,
        format!(r#"{{"access_token":"{TOKEN}","expires_in":3599,"token_type":"Bearer"}}"#),
    ));
}

fn chat(v: Value) -> ChatRequest {
    ChatRequest::from_json(v.to_string().as_bytes()).unwrap()
}

/// Every call the mock saw is a Vertex AI call: bearer token, no Anthropic
/// key or version header, no `model` in the body, the Vertex version in it.
fn check_vertex_calls(got: &[common::Received]) {
    for r in got {
        assert_eq!(r.headers["authorization"], format!("Bearer {TOKEN}"));
        assert!(r.headers.get("x-api-key").is_none());
        assert!(r.headers.get("anthropic-version").is_none());
        let everything = format!("{:?}{}", r.headers, String::from_utf8_lossy(&r.body));
        assert!(
            !everything.contains(MASTER),
            "the client's key went upstream"
        );
        let body = r.json();
        assert!(body.get("model").is_none(), "{body}");
        assert_eq!(body["anthropic_version"], VERTEX_ANTHROPIC_VERSION);
        let stream = body.get("stream") == Some(&json!(true));
        let method = if stream {
            ":streamRawPredict"
        } else {
            ":rawPredict"
        };
        assert_eq!(r.path, format!("{MODEL_PATH}{method}"));
    }
}

#[tokio::test]
async fn vertex_claude_leaf_text_stream_and_errors() {
    let token = MockUpstream::start().await;
    let vertex = MockUpstream::start().await;
    token_endpoint(&token);
    let creds = GoogleCredentials::from_json(&credentials_json(&token)).unwrap();
    let tokens = GoogleAuth::shared_source(creds, HttpClient::shared());
    let mut cfg = VertexClaudeConfig::new(
        "claude-sonnet-4@20250514",
        "tollgate-test-project",
        "us-east5",
        tokens,
    );
    cfg.api_base = Some(format!("{}{MODEL_PATH}", vertex.base()));
    let leaf = VertexClaude::new(cfg).unwrap();

    vertex.push(Reply::json(
        200,
        http_body("anthropic/message_text.http.txt"),
    ));
    let resp = leaf
        .clone()
        .oneshot(chat(json!({"model": "c", "max_tokens": 100, "messages": [
            {"role": "system", "content": "Be nice."},
            {"role": "user", "content": "Hello, how are you?"}]})))
        .await
        .unwrap();
    let c = resp.completion().unwrap();
    assert_eq!(
        c.text(),
        Some(
            "Hello! As an AI language model, I don't have feelings, but I'm functioning properly and ready to assist you. How can I help you today?"
        )
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    let usage = c.usage.as_ref().unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (13, 35));

    vertex.push(Reply::sse(http_body("anthropic/stream_text.http.txt")));
    let resp = leaf
        .clone()
        .oneshot(chat(json!({"model": "c", "stream": true, "messages": [
            {"role": "user", "content": "Count to 5"}]})))
        .await
        .unwrap();
    let c = resp
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    assert_eq!(c.text(), Some("1\n2\n3\n4\n5"));
    assert_eq!(c.usage.unwrap().completion_tokens, 13);

    // A platform error comes in Google's format; a model error in Anthropic's.
    vertex.push(Reply::json(
        401,
        r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#,
    ));
    let err = leaf
        .clone()
        .oneshot(chat(
            json!({"model": "c", "messages": [{"role": "user", "content": "hi"}]}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication, "{err:?}");
    vertex.push(Reply::json(
        529,
        fixture("anthropic/error_529_overloaded.json"),
    ));
    let err = leaf
        .oneshot(chat(
            json!({"model": "c", "messages": [{"role": "user", "content": "hi"}]}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ServiceUnavailable, "{err:?}");

    let got = vertex.received();
    assert_eq!(got.len(), 4);
    check_vertex_calls(&got);
    let first = got[0].json();
    assert_eq!(first["system"], "Be nice.");
    assert_eq!(first["max_tokens"], 100);
    assert_eq!(
        first["messages"],
        json!([{"role": "user", "content": "Hello, how are you?"}])
    );
    assert_eq!(got[1].json()["stream"], true);
    // One token for every call.
    assert_eq!(token.received().len(), 1);
}

/// A proxy with a Claude-on-Vertex deployment whose credentials point at `token`.
fn proxy(token: &MockUpstream, vertex: &MockUpstream, dir: &TempDir) -> Proxy {
    let creds_path = dir.0.join("sa.json");
    std::fs::write(&creds_path, credentials_json(token)).unwrap();
    let config = format!(
        r#"
model_list:
  - model_name: claude-vertex
    litellm_params:
      model: vertex_ai/claude-sonnet-4@20250514
      vertex_project: tollgate-test-project
      vertex_location: us-east5
      vertex_credentials: "{creds}"
      api_base: "{base}{MODEL_PATH}"
general_settings:
  master_key: {MASTER}
router_settings:
  num_retries: 0
"#,
        creds = creds_path.display(),
        base = vertex.base(),
    );
    Proxy::start(&config, &[])
}

#[tokio::test]
async fn openai_sdk_through_the_proxy_to_claude_on_vertex() {
    let token = MockUpstream::start().await;
    let vertex = MockUpstream::start().await;
    token_endpoint(&token);
    let dir = TempDir::new("vertex-claude-openai");
    let proxy = proxy(&token, &vertex, &dir);
    vertex.push(Reply::json(
        200,
        http_body("anthropic/message_text.http.txt"),
    ));
    vertex.push(Reply::sse(http_body("anthropic/stream_text.http.txt")));
    vertex.push(Reply::json(200, fixture("anthropic/tool_use.resp.json")));
    vertex.push(Reply::sse(fixture("anthropic/stream_tool_use.sse.txt")));
    vertex.push(Reply::json(
        429,
        r#"{"error":{"code":429,"message":"Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model.","status":"RESOURCE_EXHAUSTED"}}"#,
    ));
    let weather = json!({"location": "San Francisco, CA", "units": "f"});
    let cases = json!([
        {"kind": "text", "model": "claude-vertex", "expect_text": "Hello! As an AI language model, I don't have feelings, but I'm functioning properly and ready to assist you. How can I help you today?",
         "messages": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hello, how are you?"}]},
        {"kind": "stream", "model": "claude-vertex", "expect_text": "1\n2\n3\n4\n5", "usage": true},
        {"kind": "tools", "model": "claude-vertex", "expect_tool": "get_weather", "expect_args": weather},
        {"kind": "stream_tools", "model": "claude-vertex", "expect_tool": "get_weather", "expect_args": weather},
        {"kind": "error", "model": "claude-vertex", "expect_status": 429},
    ]);
    if !run_python(
        "openai_sdk_through_the_proxy_to_claude_on_vertex",
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
    let got = vertex.received();
    assert_eq!(got.len(), 5);
    check_vertex_calls(&got);
    assert_eq!(got[0].json()["system"], "Be nice.");
    assert_eq!(got[1].json()["stream"], true);
    let tools = got[2].json();
    assert_eq!(tools["tools"][0]["name"], "get_weather");
    assert_eq!(
        tools["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );
    assert_eq!(got[3].json()["stream"], true);
    assert_eq!(token.received().len(), 1);
    let logs = proxy.logs();
    assert!(!logs.contains(TOKEN));
    assert!(!logs.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn anthropic_sdk_through_the_messages_door_to_claude_on_vertex() {
    let token = MockUpstream::start().await;
    let vertex = MockUpstream::start().await;
    token_endpoint(&token);
    let dir = TempDir::new("vertex-claude-messages");
    let proxy = proxy(&token, &vertex, &dir);
    vertex.push(Reply::json(
        200,
        http_body("anthropic/message_text.http.txt"),
    ));
    vertex.push(Reply::sse(fixture("anthropic/stream_thinking.sse.txt")));
    vertex.push(Reply::json(200, fixture("anthropic/tool_use.resp.json")));
    vertex.push(Reply::sse(fixture("anthropic/stream_tool_use.sse.txt")));
    let weather = json!({"location": "San Francisco, CA", "units": "f"});
    let cases = json!([
        {"kind": "create", "model": "claude-vertex", "expect_id": "msg_014pVpaDLxzAdWjwpuN7rQQX", "expect_usage": [13, 35],
         "expect_text": "Hello! As an AI language model, I don't have feelings, but I'm functioning properly and ready to assist you. How can I help you today?"},
        {"kind": "stream", "model": "claude-vertex", "expect_contains": "Here are the basic steps for safely crossing the street", "expect_usage": [43, 282]},
        {"kind": "tools", "model": "claude-vertex", "expect_tool": "get_weather", "expect_args": weather},
        {"kind": "stream_tools", "model": "claude-vertex", "expect_tool": "get_weather", "expect_args": weather},
    ]);
    if !run_python(
        "anthropic_sdk_through_the_messages_door_to_claude_on_vertex",
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
    let got = vertex.received();
    assert_eq!(got.len(), 4);
    check_vertex_calls(&got);
    // The SDK's own body, `model` swapped for the Vertex version.
    assert_eq!(
        got[0].json(),
        json!({"anthropic_version": VERTEX_ANTHROPIC_VERSION, "max_tokens": 256,
               "messages": [{"role": "user", "content": "Hello"}]})
    );
    assert_eq!(got[1].json()["stream"], true);
    assert_eq!(
        got[2].json()["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );
}
