//! The Azure OpenAI leaf against local servers standing in for an Azure
//! resource and for the Entra ID authority.

mod common;

use common::{MockUpstream, Reply, fixture};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tollgate::context::UpstreamModel;
use tollgate::error::LimitSource;
use tollgate::provider::azure::{Azure, AzureAuth, AzureConfig, EntraCredentials};
use tollgate::types::FinishReason;
use tollgate::{ChatRequest, EmbeddingRequest, ErrorKind, Secret};
use tower::ServiceExt;

const KEY: &str = "azure-upstream-key-0123456789";
const CLIENT_KEY: &str = "sk-client-key-must-stay-home";
const CLIENT_SECRET: &str = "entra-client-secret~0123456789";
const VERSION: &str = "2024-10-21";

fn leaf(up: &MockUpstream, deployment: &str) -> Azure {
    Azure::new(
        AzureConfig::new(deployment, up.base())
            .api_version(VERSION)
            .auth(AzureAuth::ApiKey(Secret::new(KEY))),
    )
    .unwrap()
}

fn entra_leaf(up: &MockUpstream, authority: &MockUpstream, margin: Duration) -> Azure {
    let mut creds = EntraCredentials::new("tenant-abc", "client-123", Secret::new(CLIENT_SECRET));
    creds.authority_host = authority.base();
    creds.refresh_margin = margin;
    Azure::new(
        AzureConfig::new("gpt-4o", up.base())
            .api_version(VERSION)
            .auth(AzureAuth::Entra(creds)),
    )
    .unwrap()
}

fn chat(v: Value) -> ChatRequest {
    ChatRequest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap()
}

fn hi() -> ChatRequest {
    chat(json!({"model": "my-group", "api_key": CLIENT_KEY,
        "messages": [{"role": "user", "content": "What is the capital of France?"}]}))
}

fn token_reply(token: &str, expires_in: u64) -> Reply {
    Reply::json(
        200,
        json!({"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in,
               "access_token": token})
        .to_string(),
    )
}

fn assert_nothing_leaked(got: &common::Received) {
    let everything = format!("{:?} {}", got.headers, String::from_utf8_lossy(&got.body));
    assert!(
        !everything.contains(CLIENT_KEY),
        "the client's key went upstream"
    );
    assert!(
        !everything.contains(CLIENT_SECRET),
        "the Entra client secret went to the resource"
    );
}

#[tokio::test]
async fn text_completion_url_auth_and_body() {
    let up = MockUpstream::start().await;
    up.push(
        Reply::json(200, fixture("azure/chat_text.resp.json")).header("apim-request-id", "apim-1"),
    );
    let resp = leaf(&up, "gpt-4o").oneshot(hi()).await.unwrap();
    let c = resp.completion().unwrap();
    assert_eq!(c.text(), Some("The capital of France is **Paris**."));
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(c.usage.as_ref().unwrap().total_tokens, 23);
    assert!(c.extra.contains("prompt_filter_results"));
    assert_eq!(resp.meta.upstream_headers["apim-request-id"], "apim-1");
    assert_eq!(
        resp.meta.deployment.as_ref().unwrap().provider.as_ref(),
        "azure"
    );

    let got = up.last();
    assert_eq!(got.method, http::Method::POST);
    assert_eq!(
        got.path,
        format!("/openai/deployments/gpt-4o/chat/completions?api-version={VERSION}")
    );
    assert_eq!(got.headers["api-key"], KEY);
    assert!(
        got.headers.get("authorization").is_none(),
        "api-key auth only"
    );
    assert_eq!(got.headers["content-type"], "application/json");
    let body = got.json();
    assert_eq!(
        body["model"], "gpt-4o",
        "the deployment, not the client's group"
    );
    assert_eq!(
        body["messages"][0]["content"],
        "What is the capital of France?"
    );
    assert!(body.get("api_key").is_none());
    assert_nothing_leaked(&got);
}

#[tokio::test]
async fn stream_in_small_reads_with_usage_last() {
    let up = MockUpstream::start().await;
    let mut sse = String::from_utf8(fixture("azure/chat_stream_text.sse.txt")).unwrap();
    let usage = "data: {\"choices\":[],\"created\":1750697159,\"id\":\"chatcmpl-BleatwEUn3D8iXsgXpDqeOPEMuW3j\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":4,\"prompt_tokens\":9,\"total_tokens\":13}}\n\n";
    let at = sse.find("data: [DONE]").unwrap();
    sse.insert_str(at, usage);
    up.push(Reply::sse_chunked(sse.as_bytes(), 5, Duration::ZERO));
    let mut req = hi();
    req.body_mut().stream = Some(true);
    let resp = leaf(&up, "gpt-4o").oneshot(req).await.unwrap();
    let got = up.last();
    assert_eq!(got.json()["stream_options"], json!({"include_usage": true}));
    assert_eq!(got.headers["accept"], "text/event-stream");
    use futures_util::StreamExt;
    let chunks: Vec<_> = resp
        .into_stream()
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
        .await;
    assert_eq!(chunks.len(), 6);
    assert!(
        chunks
            .iter()
            .all(|c| c.id == "chatcmpl-BleatwEUn3D8iXsgXpDqeOPEMuW3j")
    );
    let text: String = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .filter_map(|c| c.delta.content.clone())
        .collect();
    assert_eq!(text, "Hallo Welt!");
    let last = chunks.last().unwrap();
    assert!(last.is_usage_only());
    assert_eq!(last.usage.as_ref().unwrap().total_tokens, 13);
}

#[tokio::test]
async fn errors_map_with_retry_hints() {
    let up = MockUpstream::start().await;
    let l = leaf(&up, "gpt-4o");
    up.push(
        Reply::json(429, fixture("azure/error_429_token_rate_limit.json"))
            .header("retry-after", "12"),
    );
    let err = l.clone().oneshot(hi()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(12)));
    assert_eq!(err.provider(), Some("azure"));

    up.push(Reply::json(
        400,
        fixture("azure/error_400_content_filter.json"),
    ));
    let err = l.clone().oneshot(hi()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContentPolicy);
    assert_eq!(err.code(), Some("content_filter"));

    up.push(Reply::json(
        401,
        fixture("azure/error_401_invalid_key.json"),
    ));
    let err = l.oneshot(hi()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert!(!err.message().contains(KEY));
}

#[tokio::test]
async fn wildcard_deployments_stay_in_their_segment() {
    let up = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("azure/chat_text.resp.json")));
    let l = leaf(&up, "*");
    let mut req = hi();
    req.extensions
        .insert(UpstreamModel(Arc::from("azure/../../openai/admin?x=1")));
    l.clone().oneshot(req).await.unwrap();
    let got = up.last();
    assert_eq!(
        got.path,
        format!(
            "/openai/deployments/..%2F..%2Fopenai%2Fadmin%3Fx%3D1/chat/completions?api-version={VERSION}"
        )
    );
    let mut req = hi();
    req.extensions.insert(UpstreamModel(Arc::from("azure/..")));
    let err = l.oneshot(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert_eq!(up.received().len(), 1, "nothing was sent for `..`");
}

#[tokio::test]
async fn embeddings_path_and_body() {
    let up = MockUpstream::start().await;
    up.push(Reply::json(
        200,
        r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-0.25]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":2,"total_tokens":2}}"#,
    ));
    let req = EmbeddingRequest::from_json(
        br#"{"model":"emb-group","input":["hello"],"api_key":"sk-client-key-must-stay-home"}"#,
    )
    .unwrap();
    let out = leaf(&up, "embed-small").oneshot(req).await.unwrap();
    assert_eq!(out.data.len(), 1);
    assert_eq!(out.usage.as_ref().unwrap().prompt_tokens, 2);
    let got = up.last();
    assert_eq!(
        got.path,
        format!("/openai/deployments/embed-small/embeddings?api-version={VERSION}")
    );
    assert_eq!(
        got.json(),
        json!({"model": "embed-small", "input": ["hello"]})
    );
    assert_eq!(got.headers["api-key"], KEY);
    assert_nothing_leaked(&got);
}

#[tokio::test]
async fn entra_token_is_fetched_once_and_cached() {
    let up = MockUpstream::start().await;
    let authority = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("azure/chat_text.resp.json")));
    authority.push(token_reply("access-token-1", 3599));
    let l = entra_leaf(&up, &authority, Duration::from_secs(300));
    for _ in 0..3 {
        l.clone().oneshot(hi()).await.unwrap();
    }
    let token_calls = authority.received();
    assert_eq!(token_calls.len(), 1, "one token for three calls");
    let t = &token_calls[0];
    assert_eq!(t.method, http::Method::POST);
    assert_eq!(t.path, "/tenant-abc/oauth2/v2.0/token");
    assert_eq!(
        t.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let form: Vec<(String, String)> = String::from_utf8(t.body.to_vec())
        .unwrap()
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), percent_decode(v))
        })
        .collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("grant_type"), Some("client_credentials"));
    assert_eq!(get("client_id"), Some("client-123"));
    assert_eq!(get("client_secret"), Some(CLIENT_SECRET));
    assert_eq!(
        get("scope"),
        Some("https://cognitiveservices.azure.com/.default")
    );

    let calls = up.received();
    assert_eq!(calls.len(), 3);
    for got in &calls {
        assert_eq!(got.headers["authorization"], "Bearer access-token-1");
        assert!(got.headers.get("api-key").is_none());
        assert_nothing_leaked(got);
    }
}

#[tokio::test]
async fn entra_token_is_refreshed_before_it_expires() {
    let up = MockUpstream::start().await;
    let authority = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("azure/chat_text.resp.json")));
    // Two-second tokens, refreshed once half their life is gone.
    authority.push(token_reply("short-lived-1", 2));
    authority.push(token_reply("short-lived-2", 2));
    let l = entra_leaf(&up, &authority, Duration::from_secs(300));
    l.clone().oneshot(hi()).await.unwrap();
    l.clone().oneshot(hi()).await.unwrap();
    assert_eq!(authority.received().len(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The first token is still valid for ~0.8 s, but it is due: a new one is fetched.
    let before = l.protocol().token_source().unwrap().current();
    assert_eq!(before.unwrap().expose(), "short-lived-1", "not expired yet");
    l.clone().oneshot(hi()).await.unwrap();
    assert_eq!(authority.received().len(), 2);
    let calls = up.received();
    assert_eq!(calls[1].headers["authorization"], "Bearer short-lived-1");
    assert_eq!(calls[2].headers["authorization"], "Bearer short-lived-2");
}

#[tokio::test]
async fn entra_refresh_is_single_flight() {
    let up = MockUpstream::start().await;
    let authority = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("azure/chat_text.resp.json")));
    let mut slow = token_reply("shared-token", 3599);
    slow.pieces[0].0 = Duration::from_millis(300);
    authority.push(slow);
    let l = entra_leaf(&up, &authority, Duration::from_secs(300));
    let calls: Vec<_> = (0..10).map(|_| l.clone().oneshot(hi())).collect();
    for r in futures_util::future::join_all(calls).await {
        r.unwrap();
    }
    assert_eq!(
        authority.received().len(),
        1,
        "ten concurrent calls, one token request"
    );
    let got = up.received();
    assert_eq!(got.len(), 10);
    assert!(
        got.iter()
            .all(|g| g.headers["authorization"] == "Bearer shared-token")
    );
    assert_eq!(l.protocol().token_source().unwrap().fetches(), 1);
}

#[tokio::test]
async fn entra_failure_is_an_authentication_error_without_the_secret() {
    let up = MockUpstream::start().await;
    let authority = MockUpstream::start().await;
    authority.push(Reply::json(
        401,
        json!({"error": "invalid_client",
               "error_description": format!("AADSTS7000215: Invalid client secret provided ({CLIENT_SECRET}).")})
        .to_string(),
    ));
    let l = entra_leaf(&up, &authority, Duration::from_secs(300));
    let err = l.oneshot(hi()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert_eq!(err.code(), Some("invalid_client"));
    assert!(err.message().contains("AADSTS7000215"), "{}", err.message());
    assert!(!err.message().contains(CLIENT_SECRET), "{}", err.message());
    assert_eq!(err.provider(), Some("azure"));
    assert!(up.received().is_empty(), "no call without a token");
}

#[tokio::test]
async fn v1_api_puts_the_deployment_in_the_body() {
    let up = MockUpstream::start().await;
    up.push(Reply::json(200, fixture("azure/chat_text.resp.json")));
    let l = Azure::new(
        AzureConfig::new("gpt-4o-mini", format!("{}/openai/", up.base()))
            .api_version("v1")
            .auth(AzureAuth::ApiKey(Secret::new(KEY))),
    )
    .unwrap();
    l.oneshot(hi()).await.unwrap();
    let got = up.last();
    assert_eq!(got.path, "/openai/v1/chat/completions");
    assert_eq!(got.json()["model"], "gpt-4o-mini");
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else if b[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
