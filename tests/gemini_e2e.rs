//! End to end: the official `openai` Python SDK → the proxy binary → a local
//! mock of the Gemini API / of Vertex AI (and its OAuth token endpoint).
//!
//! Needs a Python with `openai` (`TOLLGATE_PYTHON`, else `.venv/bin/python`);
//! skipped with a message when absent, unless `TOLLGATE_REQUIRE_SERVICES=1`.

mod common;

use common::{MockUpstream, Proxy, Reply, TempDir, fixture, run_python};
use serde_json::{Value, json};

const MASTER: &str = "sk-e2e-master-key-gemini-0123456789";
const GEMINI_KEY: &str = "AIzaSy-e2e-upstream-key-0123456789";

/// A tiny PNG as a data URL.
const PNG: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUHEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

fn bad_image_messages() -> Value {
    json!([{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
}

/// The chat cases both providers answer, with the upstream replies in order.
fn chat_cases(model: &str) -> (Vec<Value>, Vec<Reply>) {
    let cases = vec![
        json!({"kind": "text", "model": model, "expect_text": "Hello! How can I help you today?"}),
        json!({"kind": "stream", "model": model, "usage": true, "expect_text": "The capital of France is Paris.\n"}),
        json!({"kind": "tools", "model": model, "expect_tool": "get_user_country", "expect_args": {}}),
        json!({"kind": "stream_tools", "model": model, "expect_tool": "get_country", "expect_args": {}}),
        json!({"kind": "image", "model": model, "image_url": PNG, "expect_text": "That is a potato."}),
        json!({"kind": "error", "model": model, "expect_status": 429, "stream": true}),
        json!({"kind": "error", "model": model, "expect_status": 404}),
        json!({"kind": "error", "model": model, "expect_status": 500}),
    ];
    let replies = vec![
        Reply::json(200, fixture("gemini/generate_text.resp.json")),
        Reply::sse_chunked(
            &fixture("gemini/stream_text.sse.txt"),
            50,
            std::time::Duration::ZERO,
        ),
        Reply::json(200, fixture("gemini/generate_tool_call.resp.json")),
        Reply::sse(fixture("gemini/stream_tool_call.sse.txt")),
        Reply::json(200, fixture("gemini/generate_image_inline_input.resp.json")),
        Reply::json(429, fixture("gemini/error_429_quota_retryinfo.json")),
        Reply::json(404, fixture("gemini/error_404_model_not_found.resp.json")),
        Reply::json(
            500,
            r#"{"error":{"code":500,"message":"An internal error has occurred.","status":"INTERNAL"}}"#,
        ),
    ];
    (cases, replies)
}

fn never_saw_the_master_key(up: &MockUpstream) {
    for r in up.received() {
        assert!(!r.path.contains(MASTER));
        for (name, v) in &r.headers {
            assert!(!v.to_str().unwrap_or("").contains(MASTER), "header {name}");
        }
        assert!(!String::from_utf8_lossy(&r.body).contains(MASTER));
    }
}

#[tokio::test]
async fn openai_sdk_through_the_proxy_to_gemini() {
    let up = MockUpstream::start().await;
    let config = format!(
        r#"
model_list:
  - model_name: gemini-flash
    litellm_params:
      model: gemini/gemini-2.5-flash
      api_base: "{base}"
  - model_name: gemini-embed
    litellm_params:
      model: gemini/gemini-embedding-001
      api_base: "{base}/v1beta"
      task_type: RETRIEVAL_DOCUMENT
general_settings:
  master_key: {MASTER}
router_settings:
  num_retries: 0
"#,
        base = up.base()
    );
    let proxy = Proxy::start(&config, &[("GEMINI_API_KEY", GEMINI_KEY)]);
    let (mut cases, replies) = chat_cases("gemini-flash");
    for r in replies {
        up.push(r);
    }
    // A bad key is a 400 on Gemini: clients must see 401.
    cases.push(json!({"kind": "error", "model": "gemini-flash", "expect_status": 401}));
    up.push(Reply::json(
        400,
        fixture("gemini/error_400_api_key_invalid.json"),
    ));
    // An image URL Gemini cannot read, with fetching off: 400 before any upstream call.
    cases.push(
        json!({"kind": "error", "model": "gemini-flash", "expect_status": 400,
                      "messages": bad_image_messages()}),
    );
    cases.push(json!({"kind": "embeddings", "model": "gemini-embed", "input": ["Hello, world!"], "expect_count": 1}));
    up.push(Reply::json(200, fixture("gemini/embed_batch.resp.json")));
    cases.push(
        json!({"kind": "embeddings", "model": "gemini-embed", "input": ["Hello, world!"],
                      "expect_count": 1, "encoding_format": null, "expect_dims": 3072}),
    );
    up.push(Reply::json(200, fixture("gemini/embed_batch.resp.json")));

    let ran = run_python(
        "openai_sdk_through_the_proxy_to_gemini",
        "openai",
        "provider_e2e.py",
        &proxy,
        MASTER,
        &[Value::Array(cases).to_string()],
    )
    .await;
    if !ran {
        return;
    }
    let got = up.received();
    assert_eq!(got.len(), 11, "the image URL case never reached Gemini");
    for r in &got {
        assert_eq!(r.headers["x-goog-api-key"], GEMINI_KEY);
        assert!(r.headers.get("authorization").is_none());
    }
    never_saw_the_master_key(&up);
    assert_eq!(
        got[0].path,
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(
        got[1].path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    let tools = got[2].json();
    assert_eq!(
        tools["tools"][0]["functionDeclarations"][0]["parameters"],
        json!({"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]})
    );
    let image = got[4].json();
    assert_eq!(
        image["contents"][0]["parts"][1]["inlineData"]["mimeType"],
        "image/png"
    );
    assert_eq!(
        got[9].path,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert_eq!(
        got[9].json()["requests"][0]["taskType"],
        "RETRIEVAL_DOCUMENT"
    );
    assert!(!proxy.logs().contains(GEMINI_KEY));
}

#[tokio::test]
async fn openai_sdk_through_the_proxy_to_vertex_ai() {
    let token = MockUpstream::start().await;
    let vertex = MockUpstream::start().await;
    token.always(Reply::json(
        200,
        r#"{"access_token":"ya29.e2e-token","expires_in":3599,"token_type":"Bearer"}"#,
    ));
    let dir = TempDir::new("vertex-e2e");
    let mut creds: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/google_test_key/TEST_ONLY_service_account.json"
        ))
        .unwrap(),
    )
    .unwrap();
    creds["token_uri"] = json!(format!("{}/token", token.base()));
    let creds_path = dir.0.join("sa.json");
    std::fs::write(&creds_path, creds.to_string()).unwrap();
    let chat_base = format!(
        "{}/v1/projects/tollgate-test-project/locations/europe-west4/publishers/google/models/gemini-2.0-flash",
        vertex.base()
    );
    let embed_base = format!(
        "{}/v1/projects/tollgate-test-project/locations/europe-west4/publishers/google/models/text-embedding-005",
        vertex.base()
    );
    let config = format!(
        r#"
model_list:
  - model_name: vertex-flash
    litellm_params:
      model: vertex_ai/gemini-2.0-flash
      vertex_project: tollgate-test-project
      vertex_location: europe-west4
      vertex_credentials: "{creds}"
      api_base: "{chat_base}"
  - model_name: vertex-embed
    litellm_params:
      model: vertex_ai/text-embedding-005
      api_base: "{embed_base}"
general_settings:
  master_key: {MASTER}
router_settings:
  num_retries: 0
"#,
        creds = creds_path.display(),
    );
    // The second deployment finds the same credentials through the environment.
    let proxy = Proxy::start(
        &config,
        &[
            (
                "GOOGLE_APPLICATION_CREDENTIALS",
                creds_path.to_str().unwrap(),
            ),
            ("VERTEXAI_PROJECT", "tollgate-test-project"),
        ],
    );
    let (mut cases, replies) = chat_cases("vertex-flash");
    for r in replies {
        vertex.push(r);
    }
    cases.push(json!({"kind": "embeddings", "model": "vertex-embed", "input": ["a", "b"], "expect_count": 2}));
    vertex.push(Reply::json(
        200,
        r#"{"predictions":[{"embeddings":{"statistics":{"token_count":1},"values":[0.1,0.2]}},{"embeddings":{"statistics":{"token_count":1},"values":[0.3,0.4]}}]}"#,
    ));
    cases.push(
        json!({"kind": "embeddings", "model": "vertex-embed", "input": ["a"],
                      "expect_count": 1, "encoding_format": null, "expect_dims": 2}),
    );
    vertex.push(Reply::json(
        200,
        r#"{"predictions":[{"embeddings":{"statistics":{"token_count":1},"values":[0.5,0.25]}}]}"#,
    ));

    let ran = run_python(
        "openai_sdk_through_the_proxy_to_vertex_ai",
        "openai",
        "provider_e2e.py",
        &proxy,
        MASTER,
        &[Value::Array(cases).to_string()],
    )
    .await;
    if !ran {
        return;
    }
    let got = vertex.received();
    assert_eq!(got.len(), 10);
    for r in &got {
        assert_eq!(r.headers["authorization"], "Bearer ya29.e2e-token");
        assert!(r.headers.get("x-goog-api-key").is_none());
    }
    never_saw_the_master_key(&vertex);
    never_saw_the_master_key(&token);
    let chat_path = chat_base.trim_start_matches(&vertex.base()).to_owned();
    assert_eq!(got[0].path, format!("{chat_path}:generateContent"));
    assert_eq!(
        got[1].path,
        format!("{chat_path}:streamGenerateContent?alt=sse")
    );
    assert_eq!(
        got[8].path,
        format!("{}:predict", embed_base.trim_start_matches(&vertex.base()))
    );
    // Both deployments use the same service account: one token for all calls.
    let tokens = token.received();
    assert_eq!(tokens.len(), 1, "one token request for the whole run");
    assert_eq!(tokens[0].path, "/token");
    let form = String::from_utf8(tokens[0].body.to_vec()).unwrap();
    assert!(form.starts_with(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=ey"
    ));
    let logs = proxy.logs();
    assert!(!logs.contains("ya29.e2e-token"));
    assert!(!logs.contains("PRIVATE KEY"));
}
