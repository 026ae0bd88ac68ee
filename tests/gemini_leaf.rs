//! The Gemini API leaf against a local server replaying recorded Gemini traffic.

mod common;

use common::{MockUpstream, Reply, fixture};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tollgate::error::LimitSource;
use tollgate::provider::gemini::{FetchPolicy, Gemini, GeminiConfig, ImageUrls};
use tollgate::types::{EmbeddingVector, FinishReason};
use tollgate::{ChatRequest, EmbeddingRequest, ErrorKind, Secret};
use tower::ServiceExt;

const KEY: &str = "AIzaSy-upstream-test-key-0123456789";
const CLIENT_KEY: &str = "sk-client-key-must-stay-here-42";

fn config(up: &MockUpstream) -> GeminiConfig {
    GeminiConfig::new("gemini-2.5-flash")
        .api_base(up.base())
        .api_key(Secret::new(KEY))
}

fn leaf(up: &MockUpstream) -> Gemini {
    Gemini::new(config(up)).unwrap()
}

fn chat(v: Value) -> ChatRequest {
    ChatRequest::from_json(v.to_string().as_bytes()).unwrap()
}

/// Nothing the client sent as its own credential may reach the upstream.
fn assert_no_client_key(got: &common::Received) {
    assert!(!got.path.contains(CLIENT_KEY));
    assert!(!got.path.contains("key="), "the key must not be in the URL");
    for (name, value) in &got.headers {
        assert!(
            !value.to_str().unwrap_or("").contains(CLIENT_KEY),
            "header {name}"
        );
    }
    assert!(!String::from_utf8_lossy(&got.body).contains(CLIENT_KEY));
}

#[tokio::test]
async fn text_completion_and_what_gemini_received() {
    let up = MockUpstream::start().await;
    up.push(Reply::json(200, fixture("gemini/generate_text.resp.json")));
    let resp = leaf(&up)
        .oneshot(chat(json!({
            "model": "my-group", "api_key": CLIENT_KEY, "temperature": 0.3,
            "messages": [{"role": "system", "content": "You are a chatbot."},
                         {"role": "user", "content": "Hello!"}]
        })))
        .await
        .unwrap();
    let c = resp.completion().unwrap();
    assert_eq!(c.text(), Some("Hello! How can I help you today?"));
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    let u = c.usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (9, 43, 52)
    );
    assert_eq!(resp.meta.attempts, 1);

    let got = up.last();
    assert_eq!(got.method, http::Method::POST);
    assert_eq!(got.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(got.headers["x-goog-api-key"], KEY);
    assert!(got.headers.get("authorization").is_none());
    assert_eq!(got.headers["content-type"], "application/json");
    assert_no_client_key(&got);
    let body = got.json();
    assert_eq!(
        body,
        json!({
            "systemInstruction": {"role": "user", "parts": [{"text": "You are a chatbot."}]},
            "contents": [{"role": "user", "parts": [{"text": "Hello!"}]}],
            "generationConfig": {"temperature": 0.3}
        })
    );
}

#[tokio::test]
async fn stream_split_into_small_reads() {
    let up = MockUpstream::start().await;
    up.push(Reply::sse_chunked(
        &fixture("gemini/stream_text.sse.txt"),
        7,
        Duration::ZERO,
    ));
    let resp = leaf(&up)
        .oneshot(chat(json!({"model": "g", "stream": true,
            "messages": [{"role": "user", "content": "What is the capital of France?"}]})))
        .await
        .unwrap();
    let got = up.last();
    assert_eq!(
        got.path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(got.headers["accept"], "text/event-stream");
    assert_eq!(got.headers["x-goog-api-key"], KEY);
    assert!(
        got.json().get("stream").is_none(),
        "stream is in the URL, not the body"
    );
    let chunks: Vec<_> = resp
        .into_stream()
        .unwrap()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let text: String = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    assert_eq!(text, "The capital of France is Paris.\n");
    let last = chunks.last().unwrap();
    assert!(last.is_usage_only());
    let u = last.usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (13, 8, 21)
    );
}

#[tokio::test]
async fn streamed_tool_call_round_trips_its_thought_signature() {
    let up = MockUpstream::start().await;
    up.push(Reply::sse_chunked(
        &fixture("gemini/stream_tool_call.sse.txt"),
        64,
        Duration::ZERO,
    ));
    up.push(Reply::sse(fixture(
        "gemini/stream_tool_result_followup.sse.txt",
    )));
    let tools = json!([{"type": "function", "function": {"name": "get_country", "description": "",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": false}}}]);
    let l = leaf(&up);
    let first = l
        .clone()
        .oneshot(chat(json!({"model": "g", "stream": true, "tools": tools,
            "messages": [{"role": "user", "content": "What is the capital of the user country? Call the tool"}]})))
        .await
        .unwrap()
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    assert_eq!(
        first.choices[0].finish_reason,
        Some(FinishReason::ToolCalls)
    );
    let call = &first.choices[0].message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.function.name, "get_country");
    let sent = up.last().json();
    assert_eq!(
        sent["tools"],
        json!([{"functionDeclarations": [{"name": "get_country", "description": "",
            "parameters": {"type": "OBJECT", "properties": {}}}]}])
    );

    let answer = l
        .oneshot(chat(json!({"model": "g", "stream": true, "tools": tools, "messages": [
            {"role": "user", "content": "What is the capital of the user country? Call the tool"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call.id, "content": "Mexico"}
        ]})))
        .await
        .unwrap()
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    assert_eq!(answer.text(), Some("The capital of Mexico is Mexico City."));
    let followup = up.last().json();
    let sse = fixture("gemini/stream_tool_call.sse.txt");
    let first_event = sse[6..].split(|b| *b == b'\r').next().unwrap();
    let recorded: Value = serde_json::from_slice(first_event).unwrap();
    let signature = &recorded["candidates"][0]["content"]["parts"][0]["thoughtSignature"];
    let part = &followup["contents"][1]["parts"][0];
    assert_eq!(&part["thoughtSignature"], signature);
    assert_eq!(part["functionCall"]["name"], "get_country");
    let (base_id, _) = call.id.split_once("__thought__").unwrap();
    assert_eq!(part["functionCall"]["id"], base_id);
    assert_eq!(
        followup["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"id": base_id, "name": "get_country", "response": {"result": "Mexico"}}}]})
    );
}

#[tokio::test]
async fn upstream_errors_map_to_openai_kinds() {
    let up = MockUpstream::start().await;
    let l = leaf(&up);
    let hi = || chat(json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]}));

    up.push(Reply::json(
        400,
        fixture("gemini/error_400_api_key_invalid.json"),
    ));
    let e = l.clone().oneshot(hi()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication);
    assert_eq!(e.status().as_u16(), 401);
    assert_eq!(e.provider(), Some("gemini"));

    up.push(Reply::json(
        429,
        fixture("gemini/error_429_quota_retryinfo.json"),
    ));
    let e = l.clone().oneshot(hi()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
    assert_eq!(e.retry_after(), Some(Duration::from_millis(34_400)));

    up.push(Reply::json(
        404,
        fixture("gemini/error_404_model_not_found.resp.json"),
    ));
    let e = l.clone().oneshot(hi()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);

    // An upstream that echoes the key: it is scrubbed.
    up.push(Reply::json(
        400,
        format!(
            r#"{{"error":{{"code":400,"message":"bad key {KEY}","status":"INVALID_ARGUMENT"}}}}"#
        ),
    ));
    let e = l.clone().oneshot(hi()).await.unwrap_err();
    assert!(!e.message().contains(KEY), "{}", e.message());
    assert!(!format!("{e:?}").contains(KEY));

    // An error inside a 200 stream, and a stream cut short.
    up.push(Reply::sse(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}],\"role\": \"model\"}}]}\r\n\r\ndata: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}\r\n\r\n",
    ));
    let stream = chat(
        json!({"model": "g", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    );
    let items: Vec<_> = l
        .clone()
        .oneshot(stream.clone())
        .await
        .unwrap()
        .into_stream()
        .unwrap()
        .collect()
        .await;
    let err = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ServiceUnavailable);
    assert_eq!(err.message(), "The model is overloaded.");

    let text = fixture("gemini/stream_text.sse.txt");
    up.push(Reply::sse(text[..text.len() / 2].to_vec()));
    let items: Vec<_> = l
        .oneshot(stream)
        .await
        .unwrap()
        .into_stream()
        .unwrap()
        .collect()
        .await;
    assert!(items[0].is_ok());
    assert_eq!(
        items.last().unwrap().as_ref().unwrap_err().kind(),
        ErrorKind::Connection
    );
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let up = MockUpstream::start().await;
    let mut cfg = config(&up);
    cfg.model = "gemini-embedding-2-preview".into();
    let l = Gemini::new(cfg).unwrap();
    up.push(Reply::json(200, fixture("gemini/embed_batch.resp.json")));
    let req = EmbeddingRequest::from_json(
        br#"{"model":"e","input":["Hello, world!"],"encoding_format":"base64","task_type":"RETRIEVAL_QUERY","dimensions":3072}"#,
    )
    .unwrap();
    let r = l.clone().oneshot(req).await.unwrap();
    let got = up.last();
    assert_eq!(
        got.path,
        "/v1beta/models/gemini-embedding-2-preview:batchEmbedContents"
    );
    assert_eq!(got.headers["x-goog-api-key"], KEY);
    assert_eq!(
        got.json(),
        json!({"requests": [{"model": "models/gemini-embedding-2-preview",
            "content": {"parts": [{"text": "Hello, world!"}]},
            "taskType": "RETRIEVAL_QUERY", "outputDimensionality": 3072}]})
    );
    let EmbeddingVector::Base64(b64) = &r.data[0].embedding else {
        panic!("base64 asked for")
    };
    let floats = EmbeddingVector::Base64(b64.clone()).to_floats().unwrap();
    assert_eq!(floats.len(), 3072);
    assert_eq!(floats[1] as f32, 0.004016586f32);

    up.push(Reply::json(
        404,
        fixture("gemini/embed_error_404.resp.json"),
    ));
    let e = l
        .oneshot(EmbeddingRequest::from_json(br#"{"model":"e","input":"x"}"#).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

fn allow_any(_: std::net::IpAddr) -> bool {
    true
}

#[tokio::test]
async fn image_urls_are_refused_by_default_and_fetched_when_enabled() {
    let up = MockUpstream::start().await;
    let images = MockUpstream::start().await;
    let png: &[u8] = b"\x89PNG\r\n\x1a\n-not-really-a-png";
    let image_req = |url: String| {
        chat(
            json!({"model": "g", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": url}}]}]}),
        )
    };
    let url = format!("{}/cat.png", images.base());

    // Default: a clear 400, nothing fetched, nothing sent.
    let e = leaf(&up).oneshot(image_req(url.clone())).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadRequest);
    assert!(e.message().contains("data URL"), "{}", e.message());
    assert!(images.received().is_empty());
    assert!(up.received().is_empty());

    // Fetching on, but loopback is not a public address.
    let mut cfg = config(&up);
    cfg.image_urls = ImageUrls::Fetch(FetchPolicy::default());
    let e = Gemini::new(cfg)
        .unwrap()
        .oneshot(image_req(url.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadRequest);
    assert!(e.message().contains("not allowed"), "{}", e.message());
    assert!(images.received().is_empty());

    // Fetching on for every address (as an operator with an internal image host could).
    let mut cfg = config(&up);
    cfg.image_urls = ImageUrls::Fetch(FetchPolicy {
        allow_address: allow_any,
        ..FetchPolicy::default()
    });
    let l = Gemini::new(cfg).unwrap();
    images.push(Reply {
        status: 200,
        headers: vec![("content-type".into(), "image/png".into())],
        pieces: vec![(Duration::ZERO, bytes::Bytes::from_static(png))],
        hang: false,
    });
    up.push(Reply::json(
        200,
        fixture("gemini/generate_image_inline_input.resp.json"),
    ));
    let c = l.clone().oneshot(image_req(url.clone())).await.unwrap();
    assert_eq!(c.completion().unwrap().text(), Some("That is a potato."));
    assert_eq!(images.last().path, "/cat.png");
    let sent = up.last().json();
    use base64::Engine;
    assert_eq!(
        sent["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png",
            "data": base64::engine::general_purpose::STANDARD.encode(png)}})
    );

    // Redirects are not followed; non-images are refused.
    images.push(Reply::json(302, "").header("location", "http://169.254.169.254/"));
    let e = l.clone().oneshot(image_req(url.clone())).await.unwrap_err();
    assert!(e.message().contains("redirect"), "{}", e.message());
    images.push(Reply::json(200, "{}"));
    let e = l.oneshot(image_req(url)).await.unwrap_err();
    assert!(e.message().contains("not an image"), "{}", e.message());
    assert_eq!(up.received().len(), 1);
}
