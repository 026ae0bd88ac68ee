//! Unit tests of the Azure OpenAI protocol against the recorded fixtures.

use super::stream::AzureChunkTranslator;
use super::*;
use crate::error::{ErrorKind, LimitSource};
use crate::provider::sse_stream::SseStreamDecoder;
use crate::types::{ChatChunk, FinishReason, Role};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;

const KEY: &str = "azure-key-0123456789abcdef";
const BASE: &str = "https://pydanticai7521574644.openai.azure.com";

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/protocols/azure/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn fixture_json(path: &str) -> Value {
    serde_json::from_slice(&fixture(path)).unwrap()
}

fn config(deployment: &str) -> AzureConfig {
    AzureConfig::new(deployment, BASE)
        .api_version("2024-12-01-preview")
        .auth(AzureAuth::ApiKey(Secret::new(KEY)))
}

fn proto_with(cfg: AzureConfig) -> AzureProtocol {
    AzureProtocol::new(cfg, &HttpClient::shared()).unwrap()
}

fn proto() -> AzureProtocol {
    proto_with(config("gpt-4o"))
}

fn chat(v: Value) -> ChatRequest {
    ChatRequest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap()
}

fn body(http: &http::Request<Bytes>) -> Value {
    serde_json::from_slice(http.body()).unwrap()
}

// ---------------------------------------------------------------- requests

#[test]
fn request_chat_text_matches_the_recorded_body_url_and_auth() {
    // What the client sent, written by hand; the fixture is what Azure received.
    let req = chat(json!({
        "model": "my-azure-group",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "n": 1,
        "stream": false
    }));
    let http = proto().chat_request(&req).unwrap();
    assert_eq!(http.method(), Method::POST);
    assert_eq!(
        http.uri(),
        "https://pydanticai7521574644.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-12-01-preview"
    );
    assert_eq!(http.headers()["api-key"], KEY);
    assert!(http.headers()["api-key"].is_sensitive());
    assert!(http.headers().get("authorization").is_none());
    assert_eq!(http.headers()["content-type"], "application/json");
    assert_eq!(body(&http), fixture_json("chat_text.req.json"));
}

#[test]
fn streams_ask_for_usage_only_where_the_version_supports_it() {
    let req = chat(
        json!({"model": "g", "messages": [{"role": "user", "content": "hi"}], "stream": true}),
    );
    let b = body(&proto().chat_request(&req).unwrap());
    assert_eq!(b["stream_options"], json!({"include_usage": true}));
    let old = proto_with(config("gpt-4o").api_version("2024-06-01"));
    let http = old.chat_request(&req).unwrap();
    assert!(body(&http).get("stream_options").is_none());
    assert_eq!(http.headers()["accept"], "text/event-stream");
    // A client's own stream_options are forwarded as they are.
    let req = chat(json!({"model": "g", "messages": [], "stream": true,
        "stream_options": {"include_usage": true}}));
    assert_eq!(
        body(&old.chat_request(&req).unwrap())["stream_options"],
        json!({"include_usage": true})
    );
}

#[test]
fn static_ad_token_is_a_bearer_header() {
    let p = proto_with(config("gpt-4o").auth(AzureAuth::AdToken(Secret::new("eyJ0eXAi.static"))));
    let http = p
        .chat_request(&chat(json!({"model": "g", "messages": []})))
        .unwrap();
    assert_eq!(http.headers()["authorization"], "Bearer eyJ0eXAi.static");
    assert!(http.headers().get("api-key").is_none());
}

#[test]
fn entra_auth_needs_the_token_from_the_leaf() {
    let creds = EntraCredentials::new("tenant-1", "client-1", Secret::new("client-secret-xyz"));
    let p = proto_with(config("gpt-4o").auth(AzureAuth::Entra(creds)));
    let mut req = chat(json!({"model": "g", "messages": []}));
    let err = p.chat_request(&req).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    req.extensions
        .insert(EntraBearer(Secret::new("entra-access-token")));
    let http = p.chat_request(&req).unwrap();
    assert_eq!(http.headers()["authorization"], "Bearer entra-access-token");
    assert!(http.headers()["authorization"].is_sensitive());
    assert!(
        !String::from_utf8_lossy(http.body()).contains("client-secret-xyz"),
        "the client secret never goes to the resource"
    );
}

#[test]
fn v1_and_full_bases() {
    let v1 = proto_with(config("gpt-4o-mini").api_version("v1"));
    assert_eq!(
        v1.chat_uri(),
        "https://pydanticai7521574644.openai.azure.com/openai/v1/chat/completions"
    );
    let http = v1
        .chat_request(&chat(json!({"model": "group", "messages": []})))
        .unwrap();
    assert_eq!(
        body(&http)["model"],
        "gpt-4o-mini",
        "v1 takes the deployment in the body"
    );
    let preview =
        proto_with(AzureConfig::new("d", format!("{BASE}/openai/")).api_version("preview"));
    assert_eq!(
        preview.chat_uri(),
        "https://pydanticai7521574644.openai.azure.com/openai/v1/chat/completions?api-version=preview"
    );
    let given_v1 = proto_with(AzureConfig::new("d", format!("{BASE}/openai/v1")));
    assert_eq!(
        given_v1.chat_uri(),
        "https://pydanticai7521574644.openai.azure.com/openai/v1/chat/completions?api-version=2024-10-21"
    );
    let fixed = proto_with(AzureConfig::new(
        "ignored",
        format!("{BASE}/openai/deployments/gpt-4o/"),
    ));
    assert_eq!(
        fixed.chat_uri(),
        "https://pydanticai7521574644.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    );
    let p = proto();
    assert_eq!(
        p.embeddings_uri,
        "https://pydanticai7521574644.openai.azure.com/openai/deployments/gpt-4o/embeddings?api-version=2024-12-01-preview"
    );
    assert_eq!(
        p.health_request().unwrap().uri(),
        "https://pydanticai7521574644.openai.azure.com/openai/models?api-version=2024-12-01-preview"
    );
}

#[test]
fn bad_settings_are_refused() {
    let client = HttpClient::shared();
    let bad = |cfg: AzureConfig| AzureProtocol::new(cfg, &client).unwrap_err();
    assert_eq!(bad(config("..")).kind(), ErrorKind::BadRequest);
    assert_eq!(bad(config(".")).kind(), ErrorKind::BadRequest);
    assert_eq!(bad(config("")).kind(), ErrorKind::BadRequest);
    assert!(
        bad(config("d").api_version("2024-10-21&x=1"))
            .message()
            .contains("api_version")
    );
    assert!(
        bad(AzureConfig::new("d", "file:///etc/passwd"))
            .message()
            .contains("api_base")
    );
    assert!(
        bad(AzureConfig::new("d", format!("{BASE}/?api-version=1")))
            .message()
            .contains("query")
    );
    let creds = EntraCredentials::new("../../evil", "c", Secret::new("s"));
    assert!(
        bad(config("d").auth(AzureAuth::Entra(creds)))
            .message()
            .contains("tenant_id")
    );
}

#[test]
fn the_deployment_can_not_escape_its_path_segment() {
    let p = proto();
    for (asked, path) in [
        (
            "gpt-4o-mini",
            "/openai/deployments/gpt-4o-mini/chat/completions",
        ),
        (
            "../../admin",
            "/openai/deployments/..%2F..%2Fadmin/chat/completions",
        ),
        (
            "x/../../y?api-version=evil#f",
            "/openai/deployments/x%2F..%2F..%2Fy%3Fapi-version%3Devil%23f/chat/completions",
        ),
        ("a b%2e", "/openai/deployments/a%20b%252e/chat/completions"),
    ] {
        let mut req = chat(json!({"model": "azure/*", "messages": []}));
        req.extensions
            .insert(crate::context::UpstreamModel(Arc::from(
                format!("azure/{asked}").as_str(),
            )));
        let http = p.chat_request(&req).unwrap();
        assert_eq!(http.uri().path(), path, "{asked}");
        assert_eq!(http.uri().query(), Some("api-version=2024-12-01-preview"));
        assert_eq!(
            http.uri().host(),
            Some("pydanticai7521574644.openai.azure.com")
        );
        assert_eq!(body(&http)["model"], asked);
    }
    for asked in ["..", ".", ""] {
        let mut req = chat(json!({"model": "azure/*", "messages": []}));
        req.extensions
            .insert(crate::context::UpstreamModel(Arc::from(
                format!("azure/{asked}").as_str(),
            )));
        let err = p.chat_request(&req).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRequest, "{asked}");
        assert_eq!(err.param(), Some("model"));
    }
}

#[test]
fn additional_drop_params_and_defaults() {
    let mut cfg = config("gpt-4o");
    cfg.drop.additional = vec!["user".into()];
    cfg.params.insert("temperature", &0.2).unwrap();
    let p = proto_with(cfg);
    let b = body(
        &p.chat_request(&chat(
            json!({"model": "g", "messages": [], "user": "u1", "seed": 4,
            "metadata": {"tags": ["x"]}, "data_sources": [{"type": "azure_search"}]}),
        ))
        .unwrap(),
    );
    assert!(b.get("user").is_none());
    assert!(b.get("metadata").is_none(), "gateway-only fields stay home");
    assert_eq!(b["seed"], 4);
    assert_eq!(b["temperature"], 0.2);
    assert_eq!(
        b["data_sources"],
        json!([{"type": "azure_search"}]),
        "Azure extras forwarded"
    );
}

// ---------------------------------------------------------------- responses

#[test]
fn completion_chat_text_keeps_filter_results() {
    let req = chat(json!({"model": "g", "messages": []}));
    let c = proto()
        .parse_completion(&req, &fixture("chat_text.resp.json"))
        .unwrap();
    assert_eq!(c.id, "chatcmpl-BAeyRj7gU6aCNSSAskAFbupBWYMIT");
    assert_eq!(c.model, "gpt-4o-2024-11-20");
    assert_eq!(c.created, 1_741_880_483);
    assert_eq!(c.object, "chat.completion");
    assert_eq!(c.system_fingerprint.as_deref(), Some("fp_ded0d14823"));
    assert_eq!(c.choices.len(), 1);
    let choice = &c.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
    assert_eq!(choice.message.role, Role::Assistant);
    assert_eq!(
        choice.message.content.as_deref(),
        Some("The capital of France is **Paris**.")
    );
    let cfr: Value =
        serde_json::from_str(choice.extra.get("content_filter_results").unwrap().get()).unwrap();
    assert_eq!(cfr["hate"], json!({"filtered": false, "severity": "safe"}));
    assert_eq!(
        cfr["protected_material_code"],
        json!({"detected": false, "filtered": false})
    );
    let pfr: Value =
        serde_json::from_str(c.extra.get("prompt_filter_results").unwrap().get()).unwrap();
    assert_eq!(pfr[0]["prompt_index"], 0);
    assert_eq!(
        pfr[0]["content_filter_results"]["jailbreak"],
        json!({"detected": false, "filtered": false})
    );
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (14, 9, 23)
    );
    assert_eq!(u.cached_tokens(), 0);
    assert_eq!(u.reasoning_tokens(), 0);
    // Passed on to the client, the filter results are still there.
    let out: Value = serde_json::to_value(
        proto()
            .parse_completion(&req, &fixture("chat_text.resp.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        out["choices"][0]["content_filter_results"]["violence"]["severity"],
        "safe"
    );
}

#[test]
fn content_filter_finish_reason() {
    let body = br#"{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"gpt-4o",
      "choices":[{"index":0,"finish_reason":"content_filter","message":{"role":"assistant","content":null},
      "content_filter_results":{"sexual":{"filtered":true,"severity":"high"}}}]}"#;
    let c = proto()
        .parse_completion(&chat(json!({"model": "g", "messages": []})), body)
        .unwrap();
    assert_eq!(
        c.choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );
    assert_eq!(c.choices[0].message.content, None);
}

// ---------------------------------------------------------------- errors

#[test]
fn error_fixtures() {
    let p = proto();
    let err = p.map_error(
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        &fixture("error_400_content_filter.json"),
    );
    assert_eq!(err.kind(), ErrorKind::ContentPolicy);
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert_eq!(err.code(), Some("content_filter"));
    assert_eq!(err.param(), Some("prompt"));
    assert!(err.message().starts_with(
        "The response was filtered due to the prompt triggering Azure OpenAI's content management policy."
    ));

    let mut h = HeaderMap::new();
    h.insert("apim-request-id", "c1f8d6a7".parse().unwrap());
    let err = p.map_error(
        StatusCode::UNAUTHORIZED,
        &h,
        &fixture("error_401_invalid_key.json"),
    );
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert_eq!(err.code(), Some("401"), "Azure's code is a string");
    assert_eq!(
        err.message(),
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."
    );
    assert_eq!(err.param(), None);

    let err = p.map_error(
        StatusCode::TOO_MANY_REQUESTS,
        &HeaderMap::new(),
        &fixture("error_429_token_rate_limit.json"),
    );
    assert_eq!(err.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
    assert_eq!(err.code(), Some("429"));
    assert_eq!(
        err.retry_after(),
        Some(Duration::from_secs(86_400)),
        "from the message"
    );
    assert!(err.is_retryable());

    let mut h = HeaderMap::new();
    h.insert("retry-after-ms", "1500".parse().unwrap());
    h.insert("retry-after", "2".parse().unwrap());
    let err = p.map_error(
        StatusCode::TOO_MANY_REQUESTS,
        &h,
        &fixture("error_429_token_rate_limit.json"),
    );
    assert_eq!(
        err.retry_after(),
        Some(Duration::from_millis(1500)),
        "headers win"
    );

    // The key never comes back, even if the upstream echoes it.
    let echo = format!(r#"{{"error":{{"code":"401","message":"bad key {KEY}"}}}}"#);
    let err = p.map_error(StatusCode::UNAUTHORIZED, &HeaderMap::new(), echo.as_bytes());
    assert!(!err.message().contains(KEY), "{}", err.message());
}

// ---------------------------------------------------------------- streams

fn decode_cut(bytes: &[u8], cuts: &[usize]) -> (Vec<ChatChunk>, Result<(), Error>) {
    let mut d = SseStreamDecoder::new(AzureChunkTranslator::new(vec![Secret::new(KEY)]));
    let mut out = VecDeque::new();
    let mut last = 0;
    let mut r = Ok(());
    for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
        if r.is_ok() {
            r = d.feed(&bytes[last..c], &mut out);
        }
        last = c;
    }
    if r.is_ok() {
        r = d.finish(&mut out);
    }
    (out.into_iter().collect(), r)
}

#[test]
fn stream_text_fixture() {
    let (chunks, r) = decode_cut(&fixture("chat_stream_text.sse.txt"), &[]);
    r.unwrap();
    assert_eq!(
        chunks.len(),
        5,
        "the prompt-filter event is folded into the next chunk"
    );
    for c in &chunks {
        assert_eq!(c.id, "chatcmpl-BleatwEUn3D8iXsgXpDqeOPEMuW3j");
        assert_eq!(c.model, "gpt-4o-2024-08-06");
        assert_eq!(c.created, 1_750_697_159);
        assert_eq!(c.object, "chat.completion.chunk");
        assert_eq!(c.system_fingerprint.as_deref(), Some("fp_ee1d74bde0"));
        assert_eq!(c.choices.len(), 1);
    }
    let first = &chunks[0];
    assert_eq!(first.choices[0].delta.role, Some(Role::Assistant));
    assert_eq!(first.choices[0].delta.content.as_deref(), Some(""));
    let pfr: Value =
        serde_json::from_str(first.extra.get("prompt_filter_results").unwrap().get()).unwrap();
    assert_eq!(pfr[0]["prompt_index"], 0);
    assert_eq!(
        pfr[0]["content_filter_results"]["self_harm"],
        json!({"filtered": false, "severity": "safe"})
    );
    let texts: Vec<_> = chunks[1..4]
        .iter()
        .map(|c| c.choices[0].delta.content.as_deref().unwrap())
        .collect();
    assert_eq!(texts, ["Hallo", " Welt", "!"]);
    assert!(
        chunks[1].choices[0]
            .extra
            .contains("content_filter_results")
    );
    assert!(chunks[1].extra.get("prompt_filter_results").is_none());
    assert_eq!(chunks[4].choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(chunks[4].choices[0].delta, Default::default());
}

#[test]
fn stream_every_two_way_split_decodes_the_same() {
    let bytes = fixture("chat_stream_text.sse.txt");
    let (whole, r) = decode_cut(&bytes, &[]);
    r.unwrap();
    for i in 0..=bytes.len() {
        let (got, r) = decode_cut(&bytes, &[i]);
        assert!(r.is_ok(), "cut at {i}: {r:?}");
        assert_eq!(got, whole, "cut at {i}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn stream_any_split_decodes_the_same(cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..24)) {
        let bytes = fixture("chat_stream_text.sse.txt");
        let (whole, _) = decode_cut(&bytes, &[]);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let (got, r) = decode_cut(&bytes, &points);
        prop_assert!(r.is_ok());
        prop_assert_eq!(got, whole);
    }

    #[test]
    fn corrupt_streams_never_panic(idx in any::<proptest::sample::Index>(), val in any::<u8>()) {
        let mut bytes = fixture("chat_stream_text.sse.txt");
        let i = idx.index(bytes.len());
        bytes[i] = val;
        let _ = decode_cut(&bytes, &[i / 2]);
    }
}

#[test]
fn usage_is_the_last_chunk_and_annotations_get_the_stream_id() {
    let text = concat!(
        "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null,\"index\":0}],\"created\":7,\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\"}\n\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\",\"index\":0}],\"created\":7,\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\"}\n\n",
        "data: {\"choices\":[],\"created\":7,\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n",
        "data: {\"choices\":[{\"index\":0,\"finish_reason\":null,\"content_filter_results\":{\"hate\":{\"filtered\":false}},\"content_filter_offsets\":{\"start_offset\":0,\"end_offset\":2}}],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\"}\n\n",
        "data: [DONE]\n\n",
    );
    let (chunks, r) = decode_cut(text.as_bytes(), &[]);
    r.unwrap();
    assert_eq!(chunks.len(), 4);
    assert!(chunks[0].extra.contains("prompt_filter_results"));
    let annotation = &chunks[2];
    assert_eq!(annotation.id, "chatcmpl-1");
    assert_eq!(annotation.model, "gpt-4o");
    assert_eq!(annotation.created, 7);
    assert!(
        annotation.choices[0]
            .extra
            .contains("content_filter_offsets")
    );
    let last = chunks.last().unwrap();
    assert!(last.is_usage_only());
    assert_eq!(last.usage.as_ref().unwrap().total_tokens, 6);
    assert_eq!(last.id, "chatcmpl-1");
}

#[test]
fn stream_errors() {
    // Cut before the finish: a connection error.
    let bytes = fixture("chat_stream_text.sse.txt");
    let (chunks, r) = decode_cut(&bytes[..bytes.len() / 2], &[]);
    assert!(!chunks.is_empty());
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Connection);
    // An error object inside the stream.
    let text = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"a\"}},\"index\":0}}],\"id\":\"c\",\"model\":\"m\",\"created\":1}}\n\n\
         data: {{\"error\":{{\"code\":\"429\",\"message\":\"Rate limit with {KEY}\"}}}}\n\n"
    );
    let (chunks, r) = decode_cut(text.as_bytes(), &[]);
    assert_eq!(chunks.len(), 1);
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
    assert!(!err.message().contains(KEY));
}
