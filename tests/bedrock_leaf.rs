//! The Bedrock leaf against a local server replaying recorded Bedrock traffic.
//! The server checks the SigV4 signature of what it received on its own
//! (an independent verifier below, with the same test credentials).

mod common;

use bytes::Bytes;
use common::{MockUpstream, Received, Reply, fixture};
use futures_util::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tollgate::error::LimitSource;
use tollgate::provider::bedrock::{AwsCredentials, Bedrock, BedrockAuth, BedrockConfig};
use tollgate::types::FinishReason;
use tollgate::{ChatRequest, ErrorKind, Secret};
use tower::ServiceExt;

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN";
const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0";
const ARN_PATH: &str = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0";

fn t0() -> SystemTime {
    // 2025-01-02T03:04:05Z
    UNIX_EPOCH + Duration::from_secs(1_735_787_045)
}

struct Leaf {
    leaf: Bedrock,
    clock: Arc<Mutex<SystemTime>>,
}

fn leaf(up: &MockUpstream, model: &str) -> Leaf {
    let clock = Arc::new(Mutex::new(t0()));
    let c = clock.clone();
    let mut cfg = BedrockConfig::new(model, "us-east-1")
        .endpoint(up.base())
        .auth(BedrockAuth::SigV4(
            AwsCredentials::new(AKID, Secret::new(SECRET)).with_session_token(Secret::new(TOKEN)),
        ));
    cfg.clock = Some(Arc::new(move || *c.lock().unwrap()));
    Leaf {
        leaf: Bedrock::new(cfg).unwrap(),
        clock,
    }
}

fn chat(json: &str) -> ChatRequest {
    ChatRequest::from_json(json.as_bytes()).unwrap()
}

fn eventstream(body: &[u8], piece: usize) -> Reply {
    Reply {
        status: 200,
        headers: vec![(
            "content-type".into(),
            "application/vnd.amazon.eventstream".into(),
        )],
        pieces: body
            .chunks(piece)
            .map(|c| (Duration::ZERO, Bytes::copy_from_slice(c)))
            .collect(),
        hang: false,
    }
}

// ---------------------------------------------------------------- an independent SigV4 check

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256(b: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        data.as_bytes(),
    )
    .as_ref()
    .to_vec()
}

/// Each byte of the path as received, encoded again (`%` → `%25`), `/` kept.
fn encode_again(path: &str) -> String {
    path.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Recomputes the signature of what the server received and checks the
/// `Authorization` header carries exactly it. Returns the signed header names.
fn verify_sigv4(got: &Received, secret: &str, region: &str) -> Vec<String> {
    let auth = got.headers["authorization"].to_str().unwrap();
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .expect(auth);
    let (cred, rest) = rest.split_once(", SignedHeaders=").unwrap();
    let (signed, sig) = rest.split_once(", Signature=").unwrap();
    let parts: Vec<&str> = cred.split('/').collect();
    assert_eq!(parts.len(), 5, "{cred}");
    assert_eq!(parts[0], AKID);
    assert_eq!(parts[2], region);
    assert_eq!(parts[3], "bedrock", "the signing name is `bedrock`");
    assert_eq!(parts[4], "aws4_request");
    let date = got.headers["x-amz-date"].to_str().unwrap();
    assert_eq!(&date[..8], parts[1]);
    let names: Vec<String> = signed.split(';').map(str::to_owned).collect();
    for must in ["host", "x-amz-date", "content-type"] {
        assert!(
            names.iter().any(|n| n == must),
            "{must} is signed: {signed}"
        );
    }
    let mut canonical = format!("POST\n{}\n\n", encode_again(&got.path));
    for n in &names {
        let v = got
            .headers
            .get(n.as_str())
            .unwrap_or_else(|| panic!("signed header {n} was not received"));
        canonical.push_str(&format!("{n}:{}\n", v.to_str().unwrap().trim()));
    }
    canonical.push_str(&format!("\n{signed}\n{}", sha256(&got.body)));
    let scope = format!("{}/{region}/bedrock/aws4_request", parts[1]);
    let sts = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        sha256(canonical.as_bytes())
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), parts[1]);
    let k = hmac(&k, region);
    let k = hmac(&k, "bedrock");
    let k = hmac(&k, "aws4_request");
    assert_eq!(sig, hex(&hmac(&k, &sts)), "signature of what was received");
    names
}

fn no_secret_in(got: &Received, secrets: &[&str]) {
    let mut all = String::from_utf8_lossy(&got.body).into_owned();
    for (n, v) in &got.headers {
        if n != "authorization" && n != "x-amz-security-token" {
            all.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
    }
    for s in secrets {
        assert!(!all.contains(s), "`{s}` went upstream");
    }
    let auth = got.headers["authorization"].to_str().unwrap();
    assert!(!auth.contains(SECRET));
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn text_completion_signed_path_and_body() {
    let up = MockUpstream::start().await;
    up.push(
        Reply::json(200, fixture("bedrock/converse_text.resp.json"))
            .header("x-amzn-RequestId", "req-1"),
    );
    let l = leaf(&up, ARN);
    let req = chat(
        r#"{"model":"my-alias","messages":[{"role":"system","content":"You are a chatbot."},{"role":"user","content":"Hello!"}],
            "temperature":0.3,"max_tokens":64,"top_k":5,"api_key":"sk-client-key-must-not-travel","user":"u-1","drop_params":true}"#,
    );
    let resp = l.leaf.clone().oneshot(req).await.unwrap();
    let c = resp.completion().unwrap();
    assert_eq!(
        c.text(),
        Some(
            "Hello! How can I assist you today? Whether you have questions, need information, or just want to chat, I'm here to help."
        )
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    let u = c.usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (7, 30, 37)
    );

    let got = up.last();
    assert_eq!(got.method, http::Method::POST);
    assert_eq!(
        got.path,
        format!("{ARN_PATH}/converse"),
        "the ARN is one encoded path segment"
    );
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(got.headers["x-amz-date"], "20250102T030405Z");
    assert_eq!(got.headers["x-amz-security-token"], TOKEN);
    assert_eq!(got.headers["host"], up.addr.to_string().as_str());
    let signed = verify_sigv4(&got, SECRET, "us-east-1");
    assert!(signed.contains(&"x-amz-security-token".to_owned()));
    no_secret_in(&got, &[SECRET, "sk-client-key-must-not-travel"]);
    let body = got.json();
    assert_eq!(
        body,
        serde_json::json!({
            "messages": [{"role": "user", "content": [{"text": "Hello!"}]}],
            "system": [{"text": "You are a chatbot."}],
            "inferenceConfig": {"maxTokens": 64, "temperature": 0.3},
            "additionalModelRequestFields": {"top_k": 5}
        }),
        "every field in its place; `user` dropped; nothing else"
    );
}

#[tokio::test]
async fn every_attempt_is_signed_again() {
    let up = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("bedrock/converse_text.resp.json")));
    let l = leaf(&up, "anthropic.claude-3-haiku-20240307-v1:0");
    let req = chat(r#"{"model":"m","messages":[{"role":"user","content":"Hi"}]}"#);
    l.leaf.clone().oneshot(req.clone()).await.unwrap();
    *l.clock.lock().unwrap() += Duration::from_secs(61);
    l.leaf.clone().oneshot(req).await.unwrap();
    let got = up.received();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].path,
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    assert_eq!(got[0].headers["x-amz-date"], "20250102T030405Z");
    assert_eq!(got[1].headers["x-amz-date"], "20250102T030506Z");
    assert_ne!(
        got[0].headers["authorization"],
        got[1].headers["authorization"]
    );
    for g in &got {
        verify_sigv4(g, SECRET, "us-east-1");
    }
}

#[tokio::test]
async fn a_wrong_secret_does_not_verify() {
    let up = MockUpstream::start().await;
    up.push(Reply::json(200, fixture("bedrock/converse_text.resp.json")));
    let l = leaf(&up, "m");
    l.leaf
        .clone()
        .oneshot(chat(
            r#"{"model":"m","messages":[{"role":"user","content":"Hi"}]}"#,
        ))
        .await
        .unwrap();
    let got = up.last();
    let r = std::panic::catch_unwind(|| verify_sigv4(&got, "another-secret", "us-east-1"));
    assert!(r.is_err(), "the verifier really checks");
}

#[tokio::test]
async fn stream_in_small_reads_with_tool_call() {
    let up = MockUpstream::start().await;
    up.push(eventstream(
        &fixture("bedrock/converse_stream_text_then_tool_use.eventstream.bin"),
        7,
    ));
    let l = leaf(&up, "us.amazon.nova-micro-v1:0");
    let req = chat(
        r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"What is the temperature of the capital of France?"}],
            "tools":[{"type":"function","function":{"name":"get_temperature","parameters":{"type":"object"}}}]}"#,
    );
    let resp = l.leaf.clone().oneshot(req).await.unwrap();
    let got = up.last();
    assert_eq!(
        got.path,
        "/model/us.amazon.nova-micro-v1%3A0/converse-stream"
    );
    assert_eq!(got.headers["accept"], "application/vnd.amazon.eventstream");
    verify_sigv4(&got, SECRET, "us-east-1");
    assert!(
        got.json().get("stream").is_none(),
        "streaming is in the path, not the body"
    );
    let mut s = resp.into_stream().unwrap();
    let mut chunks = Vec::new();
    while let Some(c) = s.next().await {
        chunks.push(c.unwrap());
    }
    let first_tool = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .flat_map(|c| c.delta.tool_calls.iter().flatten())
        .next()
        .unwrap();
    assert_eq!(first_tool.index, 0);
    assert_eq!(
        first_tool.id.as_deref(),
        Some("tooluse_lAG_zP8QRHmSYOwZzzaCqA")
    );
    let last = chunks.last().unwrap();
    assert!(last.is_usage_only());
    assert_eq!(last.usage.as_ref().unwrap().total_tokens, 562);
    let mut agg = tollgate::stream::ChunkAggregator::default();
    chunks.iter().for_each(|c| agg.push(c));
    let c = agg.finish();
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let call = &c.choices[0].message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.function.name, "get_temperature");
    assert_eq!(call.function.arguments, r#"{"city":"Paris"}"#);
}

#[tokio::test]
async fn stream_cut_short_and_exception_frames_are_errors() {
    use tollgate::provider::bedrock::eventstream::Message;
    let up = MockUpstream::start().await;
    let l = leaf(&up, "m");
    let req = chat(r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#);

    let full = fixture("bedrock/converse_stream_text_after_tool.eventstream.bin");
    up.push(eventstream(&full[..full.len() - 40], 64));
    let err = l
        .leaf
        .clone()
        .oneshot(req.clone())
        .await
        .unwrap()
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);

    let mut body = Message::event("messageStart", br#"{"role":"assistant"}"#).encode();
    body.extend(
        Message::exception(
            "modelStreamErrorException",
            br#"{"message":"The model failed."}"#,
        )
        .encode(),
    );
    up.push(eventstream(&body, 5));
    let err = l
        .leaf
        .clone()
        .oneshot(req)
        .await
        .unwrap()
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadGateway);
    assert_eq!(err.message(), "The model failed.");
}

#[tokio::test]
async fn errors_keep_kind_message_and_retry_hint() {
    let up = MockUpstream::start().await;
    let l = leaf(&up, "m");
    let req = chat(r#"{"model":"m","messages":[{"role":"user","content":"Hi"}]}"#);
    up.push(
        Reply::json(
            429,
            r#"{"message":"Too many tokens, please wait before trying again."}"#,
        )
        .header(
            "x-amzn-ErrorType",
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
        )
        .header("retry-after", "2"),
    );
    let err = l.leaf.clone().oneshot(req.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(err.provider(), Some("bedrock"));
    up.push(
        Reply::json(403, format!(r#"{{"message":"The request signature we calculated does not match. Key {SECRET}"}}"#))
            .header("x-amzn-ErrorType", "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
    );
    let err = l.leaf.clone().oneshot(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(!err.message().contains(SECRET), "{}", err.message());
    assert!(!format!("{err:?}").contains(SECRET));
}

#[tokio::test]
async fn bearer_key_deployment_sends_no_sigv4() {
    let up = MockUpstream::start().await;
    up.push(Reply::json(
        200,
        fixture("bedrock/converse_tool_use.resp.json"),
    ));
    let mut cfg = BedrockConfig::new("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "us-west-2")
        .endpoint(up.base())
        .auth(BedrockAuth::ApiKey(Secret::new(
            "ABSKbedrockapikey0123456789",
        )));
    cfg.clock = Some(Arc::new(t0));
    let leaf = Bedrock::new(cfg).unwrap();
    let resp = leaf
        .oneshot(chat(
            r#"{"model":"m","messages":[{"role":"user","content":"What's the weather in Paris?"}],
                "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}"#,
        ))
        .await
        .unwrap();
    let c = resp.completion().unwrap();
    let call = &c.choices[0].message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "tooluse_8ZVLMmsdearTDSS0unN07z");
    assert_eq!(call.function.arguments, r#"{"city":"Paris"}"#);
    let got = up.last();
    assert_eq!(
        got.path,
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    );
    assert_eq!(
        got.headers["authorization"],
        "Bearer ABSKbedrockapikey0123456789"
    );
    for h in ["x-amz-date", "x-amz-security-token", "x-amz-content-sha256"] {
        assert!(got.headers.get(h).is_none(), "{h} sent with a bearer key");
    }
    assert_eq!(
        got.json()["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "get_weather"
    );
}

#[tokio::test]
async fn titan_batches_are_split_in_order_and_usage_summed() {
    use tollgate::EmbeddingRequest;
    use tollgate::provider::bedrock::BedrockEmbeddings;
    use tollgate::types::EmbeddingVector;
    let up = MockUpstream::start().await;
    let creds = AwsCredentials::new("AKIDEXAMPLE", Secret::new("secret-for-embeddings-0123"));
    let leaf = Bedrock::new(
        BedrockConfig::new("amazon.titan-embed-text-v2:0", "us-east-1")
            .endpoint(up.base())
            .auth(BedrockAuth::SigV4(creds)),
    )
    .unwrap();
    let svc = BedrockEmbeddings::new(leaf, "amazon.titan-embed-text-v2:0");
    up.push(Reply::json(
        200,
        r#"{"embedding":[1.0],"inputTextTokenCount":2}"#,
    ));
    up.push(Reply::json(
        200,
        r#"{"embedding":[2.0],"inputTextTokenCount":3}"#,
    ));
    up.push(Reply::json(
        200,
        r#"{"embedding":[3.0],"inputTextTokenCount":4}"#,
    ));
    let req =
        EmbeddingRequest::from_json(br#"{"model":"t","input":["a","b","c"],"dimensions":256}"#)
            .unwrap();
    let out = svc.clone().oneshot(req).await.unwrap().body;
    let got: Vec<(u32, EmbeddingVector)> = out
        .data
        .iter()
        .map(|e| (e.index, e.embedding.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, EmbeddingVector::Float(vec![1.0])),
            (1, EmbeddingVector::Float(vec![2.0])),
            (2, EmbeddingVector::Float(vec![3.0])),
        ]
    );
    let usage = out.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.total_tokens), (9, 9));
    let sent: Vec<serde_json::Value> = up.received().iter().map(Received::json).collect();
    assert_eq!(
        sent,
        vec![
            serde_json::json!({"inputText": "a", "dimensions": 256}),
            serde_json::json!({"inputText": "b", "dimensions": 256}),
            serde_json::json!({"inputText": "c", "dimensions": 256}),
        ]
    );
    // A failing part fails the whole call (no partial answer).
    up.push(Reply::json(
        200,
        r#"{"embedding":[1.0],"inputTextTokenCount":2}"#,
    ));
    up.push(
        Reply::json(429, r#"{"message":"Too many requests"}"#).header(
            "x-amzn-ErrorType",
            "ThrottlingException:http://internal.amazon.com/",
        ),
    );
    let req = EmbeddingRequest::from_json(br#"{"model":"t","input":["a","b"]}"#).unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
}
