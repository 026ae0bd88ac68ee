//! Azure OpenAI end to end: the proxy binary in front of a local Azure mock
//! (and a local Entra ID authority), driven by the official `openai` Python
//! SDK (`tests/python/provider_e2e.py`).

mod common;

use common::{MockUpstream, Proxy, Reply, fixture, run_python};
use serde_json::json;
use std::time::Duration;

const KEY: &str = "sk-azure-e2e-master-key";
const AZURE_KEY: &str = "azure-e2e-resource-key-0123";
const CLIENT_SECRET: &str = "entra-e2e-client-secret~42";
const VERSION: &str = "2024-10-21";

fn with_usage(sse: &[u8]) -> Vec<u8> {
    let mut text = String::from_utf8(sse.to_vec()).unwrap();
    let usage = "data: {\"choices\":[],\"created\":1750697159,\"id\":\"chatcmpl-BleatwEUn3D8iXsgXpDqeOPEMuW3j\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":4,\"prompt_tokens\":9,\"total_tokens\":13}}\n\n";
    let at = text.find("data: [DONE]").unwrap();
    text.insert_str(at, usage);
    text.into_bytes()
}

#[tokio::test]
async fn openai_sdk_through_the_proxy_to_azure() {
    let up = MockUpstream::start().await;
    let authority = MockUpstream::start().await;
    authority.push(Reply::json(
        200,
        json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "entra-e2e-access-token"})
            .to_string(),
    ));
    let config = format!(
        r#"
model_list:
  - model_name: gpt4o
    litellm_params:
      model: azure/gpt-4o
      api_base: "{base}"
      api_version: "{VERSION}"
      api_key: os.environ/E2E_AZURE_KEY
    model_info: {{base_model: azure/gpt-4o}}
  - model_name: entra
    litellm_params:
      model: azure/chat-deployment
      api_base: "{base}"
      tenant_id: tenant-e2e
      client_id: client-e2e
      client_secret: os.environ/E2E_CLIENT_SECRET
  - model_name: azure/*
    litellm_params:
      model: azure/*
      api_base: "{base}"
      api_key: os.environ/E2E_AZURE_KEY
  - model_name: embed
    litellm_params:
      model: azure/text-embedding-3-small
      api_base: "{base}"
      api_key: os.environ/E2E_AZURE_KEY
general_settings:
  master_key: {KEY}
router_settings:
  num_retries: 0
"#,
        base = up.base()
    );
    let proxy = Proxy::start(
        &config,
        &[
            ("E2E_AZURE_KEY", AZURE_KEY),
            ("E2E_CLIENT_SECRET", CLIENT_SECRET),
            ("AZURE_AUTHORITY_HOST", &authority.base()),
        ],
    );

    let stream_error = concat!(
        "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hal\"},\"finish_reason\":null,\"index\":0}],\"created\":1,\"id\":\"chatcmpl-e\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\"}\n\n",
        "data: {\"error\":{\"code\":\"429\",\"message\":\"Requests to the ChatCompletions_Create Operation have exceeded call rate limit.\"}}\n\n",
    );
    // Replies, in the order of the cases below.
    up.push(
        Reply::json(200, fixture("azure/chat_text.resp.json"))
            .header("apim-request-id", "apim-e2e"),
    );
    up.push(Reply::sse_chunked(
        &with_usage(&fixture("azure/chat_stream_text.sse.txt")),
        17,
        Duration::ZERO,
    ));
    up.push(Reply::json(200, fixture("openai/chat_tool_call.resp.json")));
    up.push(Reply::sse(fixture("openai/chat_stream_tool_call.sse.txt")));
    up.push(Reply::json(200, fixture("azure/chat_text.resp.json")));
    up.push(
        Reply::json(429, fixture("azure/error_429_token_rate_limit.json"))
            .header("retry-after", "1"),
    );
    up.push(Reply::json(
        400,
        fixture("azure/error_400_content_filter.json"),
    ));
    up.push(Reply::json(
        401,
        fixture("azure/error_401_invalid_key.json"),
    ));
    up.push(Reply::sse(stream_error));
    up.push(Reply::json(200, fixture("azure/chat_text.resp.json")));
    up.push(Reply::json(200, fixture("azure/chat_text.resp.json")));
    up.push(Reply::json(
        200,
        r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.125,-0.5,0.25]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":2,"total_tokens":2}}"#,
    ));

    let png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let cases = json!([
        {"kind": "text", "model": "gpt4o", "expect_text": "The capital of France is **Paris**."},
        {"kind": "stream", "model": "gpt4o", "usage": true, "expect_text": "Hallo Welt!"},
        {"kind": "tools", "model": "gpt4o", "expect_tool": "GetWeatherArgs",
         "expect_args": {"city": "Edinburgh", "country": "UK", "units": "c"}},
        {"kind": "stream_tools", "model": "gpt4o", "expect_tool": "get_weather",
         "expect_args": {"city": "San Francisco", "state": "CA"}},
        {"kind": "image", "model": "gpt4o", "image_url": png, "expect_contains": "Paris"},
        {"kind": "error", "model": "gpt4o", "expect_status": 429},
        {"kind": "error", "model": "gpt4o", "expect_status": 400, "stream": true},
        {"kind": "error", "model": "gpt4o", "expect_status": 401},
        {"kind": "stream_error", "model": "gpt4o", "expect_contains": "exceeded call rate limit", "expect_text": "Hal"},
        {"kind": "text", "model": "entra", "expect_contains": "Paris"},
        {"kind": "text", "model": "azure/gpt-4o-mini", "expect_contains": "Paris"},
        {"kind": "embeddings", "model": "embed", "input": ["hello"], "expect_count": 1,
         "encoding_format": "sdk_default", "expect_first": [0.125, -0.5, 0.25]}
    ]);
    if !run_python(
        "openai_sdk_through_the_proxy_to_azure",
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
    assert_eq!(got.len(), 12, "one upstream call per case");
    let chat =
        |dep: &str| format!("/openai/deployments/{dep}/chat/completions?api-version={VERSION}");
    for (i, g) in got.iter().enumerate() {
        let all = format!("{:?} {}", g.headers, String::from_utf8_lossy(&g.body));
        assert!(
            !all.contains(KEY),
            "case {i}: the client's key went upstream"
        );
        assert!(
            !all.contains(CLIENT_SECRET),
            "case {i}: the client secret went upstream"
        );
        if i == 9 {
            assert_eq!(g.path, chat("chat-deployment"));
            assert_eq!(g.headers["authorization"], "Bearer entra-e2e-access-token");
            assert!(g.headers.get("api-key").is_none());
        } else {
            assert_eq!(g.headers["api-key"], AZURE_KEY, "case {i}");
            assert!(g.headers.get("authorization").is_none(), "case {i}");
        }
    }
    for (i, g) in got.iter().enumerate().take(9) {
        assert_eq!(g.path, chat("gpt-4o"), "case {i}");
    }
    assert_eq!(got[0].json()["model"], "gpt-4o");
    assert_eq!(
        got[1].json()["stream_options"],
        json!({"include_usage": true})
    );
    assert_eq!(got[2].json()["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        got[4].json()["messages"][0]["content"][1]["image_url"]["url"],
        png
    );
    assert_eq!(
        got[10].path,
        chat("gpt-4o-mini"),
        "the wildcard fills in the deployment"
    );
    assert_eq!(
        got[11].path,
        format!("/openai/deployments/text-embedding-3-small/embeddings?api-version={VERSION}")
    );
    // The SDK asked for base64; the upstream was asked as the client asked.
    assert_eq!(got[11].json()["encoding_format"], "base64");
    let token = authority.received();
    assert_eq!(token.len(), 1);
    assert_eq!(token[0].path, "/tenant-e2e/oauth2/v2.0/token");
    assert!(!proxy.logs().contains(CLIENT_SECRET));
    assert!(!proxy.logs().contains(AZURE_KEY));
}
