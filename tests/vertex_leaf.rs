//! The Vertex AI leaf: service-account JWT → OAuth token from a local token
//! endpoint → bearer calls to a local Vertex AI, all checked on what the mocks received.

mod common;

use base64::Engine;
use common::{MockUpstream, Reply, fixture};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tollgate::provider::gemini::{
    CLOUD_PLATFORM_SCOPE, GoogleAuth, GoogleCredentials, TokenSource, VertexAi, VertexConfig,
};
use tollgate::transport::HttpClient;
use tollgate::types::{EmbeddingVector, FinishReason};
use tollgate::{ChatRequest, EmbeddingRequest, ErrorKind};
use tower::ServiceExt;

const CLIENT_EMAIL: &str = "tollgate-test@tollgate-test-project.iam.gserviceaccount.com";

fn key_dir(name: &str) -> String {
    format!(
        "{}/tests/fixtures/google_test_key/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The throwaway service account with its token endpoint on `token`.
fn credentials_json(token: &MockUpstream) -> String {
    let mut creds: Value = serde_json::from_str(
        &std::fs::read_to_string(key_dir("TEST_ONLY_service_account.json")).unwrap(),
    )
    .unwrap();
    creds["token_uri"] = json!(format!("{}/token", token.base()));
    creds.to_string()
}

fn token_reply(token: &str) -> Reply {
    Reply::json(
        200,
        format!(r#"{{"access_token":"{token}","expires_in":3599,"token_type":"Bearer"}}"#),
    )
}

fn model_path() -> &'static str {
    "/v1/projects/tollgate-test-project/locations/us-central1/publishers/google/models/gemini-2.0-flash"
}

fn leaf(token: &MockUpstream, vertex: &MockUpstream) -> (VertexAi, Arc<dyn TokenSource>) {
    let creds = GoogleCredentials::from_json(&credentials_json(token)).unwrap();
    assert_eq!(creds.project_id(), Some("tollgate-test-project"));
    let tokens = GoogleAuth::shared_source(creds, HttpClient::shared());
    let mut cfg = VertexConfig::new(
        "gemini-2.0-flash",
        "tollgate-test-project",
        "us-central1",
        tokens.clone(),
    );
    cfg.api_base = Some(format!("{}{}", vertex.base(), model_path()));
    (VertexAi::new(cfg).unwrap(), tokens)
}

fn chat(v: Value) -> ChatRequest {
    ChatRequest::from_json(v.to_string().as_bytes()).unwrap()
}

fn hi() -> ChatRequest {
    chat(json!({"model": "g", "messages": [
        {"role": "system", "content": "You are a helpful chatbot."},
        {"role": "user", "content": "What is the capital of France?"}]}))
}

fn form_field<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// The DER of the PKCS#1 public key in the test fixture.
fn public_key() -> Vec<u8> {
    let pem = std::fs::read_to_string(key_dir("TEST_ONLY_public_key_pkcs1.pem")).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

fn b64url(part: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap()
}

/// Checks the token request: form fields, JWT header and claims, signature.
fn check_token_request(got: &common::Received, token_uri: &str) -> String {
    assert_eq!(got.method, http::Method::POST);
    assert_eq!(got.path, "/token");
    assert_eq!(
        got.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let body = String::from_utf8(got.body.to_vec()).unwrap();
    assert_eq!(
        form_field(&body, "grant_type"),
        Some("urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
    );
    let jwt = form_field(&body, "assertion").unwrap().to_owned();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&b64url(parts[0])).unwrap();
    assert_eq!(
        header,
        json!({"alg": "RS256", "typ": "JWT", "kid": "0123456789abcdef-test-key-id"})
    );
    let claims: Value = serde_json::from_slice(&b64url(parts[1])).unwrap();
    assert_eq!(claims["iss"], CLIENT_EMAIL);
    assert_eq!(claims["aud"], token_uri);
    assert_eq!(claims["scope"], CLOUD_PLATFORM_SCOPE);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let iat = claims["iat"].as_u64().unwrap();
    assert!(iat <= now && iat + 60 >= now, "iat {iat} now {now}");
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 3600);
    assert_eq!(claims.as_object().unwrap().len(), 5);

    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key(),
    );
    let signed = format!("{}.{}", parts[0], parts[1]);
    let sig = b64url(parts[2]);
    key.verify(signed.as_bytes(), &sig)
        .expect("the assertion is signed by the service account's key");
    // And the check is real: another message does not verify.
    assert!(key.verify(b"tampered", &sig).is_err());
    jwt
}

#[tokio::test]
async fn jwt_token_bearer_call_and_token_reuse() {
    let token = MockUpstream::start().await;
    let vertex = MockUpstream::start().await;
    token.push(token_reply("ya29.mock-token-1"));
    vertex.push(Reply::json(
        200,
        fixture("gemini/vertex_generate_text.resp.json"),
    ));
    vertex.push(Reply::sse(fixture("gemini/stream_text.sse.txt")));
    let (l, _) = leaf(&token, &vertex);

    let c = l.clone().oneshot(hi()).await.unwrap();
    let c = c.completion().unwrap();
    assert_eq!(c.text(), Some("The capital of France is Paris.\n"));
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(c.usage.as_ref().unwrap().total_tokens, 21);

    check_token_request(&token.last(), &format!("{}/token", token.base()));
    let got = vertex.last();
    assert_eq!(got.path, format!("{}:generateContent", model_path()));
    assert_eq!(got.headers["authorization"], "Bearer ya29.mock-token-1");
    assert!(got.headers.get("x-goog-api-key").is_none());
    assert_eq!(
        got.json(),
        serde_json::from_slice::<Value>(&fixture("gemini/vertex_generate_text.req.json")).unwrap()
    );

    // The token is cached: the stream call does not ask for another.
    let done = l
        .oneshot(chat(json!({"model": "g", "stream": true,
            "messages": [{"role": "user", "content": "What is the capital of France?"}]})))
        .await
        .unwrap()
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    assert_eq!(done.text(), Some("The capital of France is Paris.\n"));
    let got = vertex.last();
    assert_eq!(
        got.path,
        format!("{}:streamGenerateContent?alt=sse", model_path())
    );
    assert_eq!(got.headers["authorization"], "Bearer ya29.mock-token-1");
    assert_eq!(token.received().len(), 1);
}

#[tokio::test]
async fn concurrent_calls_wait_for_one_token_request() {
    let token = MockUpstream::start().await;
    let vertex = MockUpstream::start().await;
    let mut slow = token_reply("ya29.shared");
    slow.pieces[0].0 = Duration::from_millis(200);
    token.push(slow);
    vertex.always(Reply::json(
        200,
        fixture("gemini/vertex_generate_text.resp.json"),
    ));
    let (l, _) = leaf(&token, &vertex);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move { l.oneshot(hi()).await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(token.received().len(), 1);
    let got = vertex.received();
    assert_eq!(got.len(), 8);
    assert!(
        got.iter()
            .all(|r| r.headers["authorization"] == "Bearer ya29.shared")
    );
}

#[tokio::test]
async fn token_failures_are_authentication_errors_without_key_material() {
    let token = MockUpstream::start().await;
    let vertex = MockUpstream::start().await;
    token.push(Reply::json(
        400,
        r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
    ));
    let (l, _) = leaf(&token, &vertex);
    let e = l.oneshot(hi()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication);
    assert_eq!(e.status().as_u16(), 401);
    assert!(e.message().contains("invalid_grant"), "{}", e.message());
    assert!(e.message().contains("Invalid JWT Signature."));
    let jwt = check_token_request(&token.last(), &format!("{}/token", token.base()));
    let shown = format!("{} {e:?}", e.message());
    assert!(!shown.contains(&jwt[..40]));
    assert!(!shown.contains("PRIVATE KEY"));
    assert!(!shown.contains("MII"));
    assert!(vertex.received().is_empty(), "no call without a token");

    // An unreachable token endpoint is an authentication failure too.
    let closed = MockUpstream::start().await;
    let mut creds: Value = serde_json::from_str(&credentials_json(&closed)).unwrap();
    creds["token_uri"] = json!("http://127.0.0.1:9/token");
    let tokens = GoogleAuth::shared_source(
        GoogleCredentials::from_json(&creds.to_string()).unwrap(),
        HttpClient::shared(),
    );
    let e = tokens.token().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication);
}

#[tokio::test]
async fn vertex_errors_tools_and_embeddings() {
    let token = MockUpstream::start().await;
    let vertex = MockUpstream::start().await;
    token.push(token_reply("ya29.t"));
    let (l, _) = leaf(&token, &vertex);

    vertex.push(Reply::json(
        429,
        fixture("gemini/error_429_quota_retryinfo.json"),
    ));
    let e = l.clone().oneshot(hi()).await.unwrap_err();
    assert_eq!(e.kind().status().as_u16(), 429);
    assert_eq!(e.retry_after(), Some(Duration::from_millis(34_400)));
    assert_eq!(e.provider(), Some("vertex_ai"));

    vertex.push(Reply::json(
        200,
        fixture("gemini/generate_tool_call.resp.json"),
    ));
    let c = l
        .clone()
        .oneshot(chat(json!({"model": "g",
            "tools": [{"type": "function", "function": {"name": "get_user_country", "parameters": {"type": "object", "properties": {}}}}],
            "tool_choice": "required",
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [{"id": "call_prev", "type": "function", "function": {"name": "get_user_country", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_prev", "content": "{\"country\":\"MX\"}"}]})))
        .await
        .unwrap();
    let call = &c.completion().unwrap().choices[0]
        .message
        .tool_calls
        .as_ref()
        .unwrap()[0];
    assert_eq!(call.function.name, "get_user_country");
    let body = vertex.last().json();
    assert_eq!(
        body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
    // Vertex AI gets no function-call ids.
    assert_eq!(
        body["contents"][1]["parts"][0],
        json!({"functionCall": {"name": "get_user_country", "args": {}}})
    );
    assert_eq!(
        body["contents"][2]["parts"][0],
        json!({"functionResponse": {"name": "get_user_country", "response": {"country": "MX"}}})
    );

    vertex.push(Reply::json(
        200,
        r#"{"predictions":[{"embeddings":{"statistics":{"truncated":false,"token_count":3},"values":[0.25,-0.5]}}]}"#,
    ));
    let r = l
        .oneshot(
            EmbeddingRequest::from_json(br#"{"model":"e","input":"Hello there","dimensions":2}"#)
                .unwrap(),
        )
        .await
        .unwrap();
    let got = vertex.last();
    assert_eq!(got.path, format!("{}:predict", model_path()));
    assert_eq!(got.headers["authorization"], "Bearer ya29.t");
    assert_eq!(
        got.json(),
        json!({"instances": [{"content": "Hello there"}], "parameters": {"outputDimensionality": 2}})
    );
    assert_eq!(
        r.data[0].embedding,
        EmbeddingVector::Float(vec![0.25, -0.5])
    );
    assert_eq!(r.usage.as_ref().unwrap().prompt_tokens, 3);
    assert_eq!(token.received().len(), 1);
}
