//! Unit tests of the Cohere v2 translation against the recorded fixtures.

use super::stream::CohereChunkTranslator;
use super::*;
use crate::error::{ErrorKind, LimitSource};
use crate::types::{ChatChunk, Delta, EmbeddingVector, FinishReason, Role, ToolCallDelta};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::VecDeque;

const KEY: &str = "cohere-key-0123456789abcdef";

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/protocols/cohere/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn fixture_json(path: &str) -> Value {
    serde_json::from_slice(&fixture(path)).unwrap()
}

/// Drops `null` members (the recorded client wrote unset options as null).
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

fn proto_with(model: &str, f: impl FnOnce(&mut CohereConfig)) -> CohereProtocol {
    let mut cfg = CohereConfig::new(model).api_key(Secret::new(KEY));
    f(&mut cfg);
    CohereProtocol::new(cfg).unwrap()
}

fn proto(model: &str) -> CohereProtocol {
    proto_with(model, |_| {})
}

fn chat(v: Value) -> ChatRequest {
    ChatRequest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap()
}

fn body_of(p: &CohereProtocol, req: &ChatRequest) -> Value {
    serde_json::from_slice(&p.body(req).unwrap()).unwrap()
}

// ---------------------------------------------------------------- requests

#[test]
fn request_chat_text() {
    let req = chat(json!({"model": "command", "stream": false,
        "messages": [{"role": "user", "content": "hello"}]}));
    let p = proto("command-r7b-12-2024");
    assert_eq!(body_of(&p, &req), fixture_json("chat_text.req.json"));
    let http = p.chat_request(&req).unwrap();
    assert_eq!(http.method(), Method::POST);
    assert_eq!(http.uri(), "https://api.cohere.com/v2/chat");
    assert_eq!(
        http.headers()["authorization"],
        format!("Bearer {KEY}").as_str()
    );
    assert!(http.headers()["authorization"].is_sensitive());
    assert_eq!(http.headers()["accept"], "application/json");
}

#[test]
fn request_system_instructions() {
    let req = chat(json!({"model": "command", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"}]}));
    assert_eq!(
        body_of(&proto("command-r7b-12-2024"), &req),
        fixture_json("chat_system_instructions.req.json")
    );
}

#[test]
fn request_cached_tokens() {
    let expected = fixture_json("chat_cached_tokens.req.json");
    let req = chat(json!({"model": "command", "stream": false, "messages": [
        {"role": "developer", "content": expected["messages"][0]["content"]},
        {"role": "user", "content": expected["messages"][1]["content"]}]}));
    assert_eq!(body_of(&proto("command-r7b-12-2024"), &req), expected);
}

#[test]
fn request_thinking_history() {
    let expected = fixture_json("chat_thinking.req.json");
    let earlier = &expected["messages"][1]["content"];
    // An OpenAI client sends the earlier reasoning back as `reasoning_content`.
    let req = chat(json!({"model": "reasoning", "stream": false, "messages": [
        {"role": "user", "content": "How do I cross the street?"},
        {"role": "assistant", "content": earlier[1]["text"], "reasoning_content": earlier[0]["thinking"]},
        {"role": "user", "content": "Considering the way to cross the street, analogously, how do I cross the river?"}]}));
    assert_eq!(
        body_of(&proto("command-a-reasoning-08-2025"), &req),
        expected
    );
}

#[test]
fn request_embed_query() {
    let req = EmbeddingRequest::from_json(
        br#"{"model":"embed","input":["Hello, world!"],"input_type":"search_query","truncate":"NONE"}"#,
    )
    .unwrap();
    let p = proto("embed-v4.0");
    let http = p.embedding_request(&req).unwrap();
    assert_eq!(http.uri(), "https://api.cohere.com/v2/embed");
    let body: Value = serde_json::from_slice(http.body()).unwrap();
    assert_eq!(body, without_nulls(fixture_json("embed_query.req.json")));
    // The 404 case was the same request for another model.
    let body: Value =
        serde_json::from_slice(proto("nonexistent").embedding_request(&req).unwrap().body())
            .unwrap();
    assert_eq!(
        body,
        without_nulls(fixture_json("embed_error_404.req.json"))
    );
    // Without an input_type: search_document; dimensions → output_dimension.
    let req =
        EmbeddingRequest::from_json(br#"{"model":"e","input":"x","dimensions":512}"#).unwrap();
    let body: Value = serde_json::from_slice(p.embedding_request(&req).unwrap().body()).unwrap();
    assert_eq!(
        body,
        json!({"model": "embed-v4.0", "texts": ["x"], "input_type": "search_document",
               "embedding_types": ["float"], "output_dimension": 512})
    );
    let tokens = EmbeddingRequest::from_json(br#"{"model":"e","input":[[1,2]]}"#).unwrap();
    assert_eq!(
        p.embedding_request(&tokens).unwrap_err().kind(),
        ErrorKind::BadRequest
    );
}

#[test]
fn request_tools_images_and_parameters() {
    let req = chat(json!({
        "model": "command",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO", "detail": "low"}}]},
            {"role": "assistant", "content": "I will look it up.", "name": "bot", "tool_calls": [
                {"id": "weather_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "weather_1", "content": "{\"temp\":\"-3°C\"}"}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}}],
        "tool_choice": "required",
        "max_tokens": 512, "temperature": 0.2, "top_p": 0.9, "top_k": 40, "seed": 7, "stop": "END",
        "frequency_penalty": 0.1, "presence_penalty": 0.2,
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
        "documents": [{"id": "d1", "data": {"text": "Oslo is cold"}}],
        "citation_options": {"mode": "FAST"}, "safety_mode": "CONTEXTUAL", "stream": true
    }));
    let b = body_of(&proto("command-a-03-2025"), &req);
    assert_eq!(
        b,
        json!({
            "model": "command-a-03-2025",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO", "detail": "low"}}]},
                {"role": "assistant", "tool_plan": "I will look it up.", "tool_calls": [
                    {"id": "weather_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "weather_1", "content": "{\"temp\":\"-3°C\"}"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "strict_tools": true,
            "tool_choice": "REQUIRED",
            "response_format": {"type": "json_object", "json_schema": {"type": "object"}},
            "max_tokens": 512, "temperature": 0.2, "p": 0.9, "k": 40, "seed": 7,
            "stop_sequences": ["END"], "frequency_penalty": 0.1, "presence_penalty": 0.2,
            "documents": [{"id": "d1", "data": {"text": "Oslo is cold"}}],
            "citation_options": {"mode": "FAST"}, "safety_mode": "CONTEXTUAL",
            "stream": true
        })
    );
}

#[test]
fn request_tool_choice_shapes() {
    let tools = json!([
        {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "b"}}]);
    let p = proto("command-a-03-2025");
    let b = body_of(
        &p,
        &chat(json!({"model": "c", "messages": [], "tools": tools, "tool_choice": "none"})),
    );
    assert_eq!(b["tool_choice"], "NONE");
    assert_eq!(
        b["tools"][1]["function"]["parameters"],
        json!({"type": "object", "properties": {}})
    );
    let b = body_of(
        &p,
        &chat(json!({"model": "c", "messages": [], "tools": tools, "tool_choice": "auto"})),
    );
    assert!(b.get("tool_choice").is_none());
    let b = body_of(
        &p,
        &chat(json!({"model": "c", "messages": [], "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "b"}}})),
    );
    assert_eq!(b["tool_choice"], "REQUIRED");
    assert_eq!(b["tools"].as_array().unwrap().len(), 1);
    assert_eq!(b["tools"][0]["function"]["name"], "b");
    let err = p
        .body(&chat(json!({"model": "c", "messages": [], "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "zzz"}}})))
        .unwrap_err();
    assert_eq!(err.param(), Some("tool_choice"));
}

#[test]
fn request_reasoning_and_unsupported() {
    let p = proto("command-a-reasoning-08-2025");
    let b = body_of(
        &p,
        &chat(json!({"model": "c", "messages": [], "reasoning_effort": "none"})),
    );
    assert_eq!(b["thinking"], json!({"type": "disabled"}));
    let b = body_of(
        &p,
        &chat(json!({"model": "c", "messages": [], "reasoning_effort": "high"})),
    );
    assert_eq!(b["thinking"], json!({"type": "enabled"}));
    let b = body_of(
        &p,
        &chat(
            json!({"model": "c", "messages": [], "reasoning_effort": "high",
            "thinking": {"type": "enabled", "token_budget": 2000}}),
        ),
    );
    assert_eq!(
        b["thinking"],
        json!({"type": "enabled", "token_budget": 2000})
    );
    for (param, value) in [
        ("n", json!(2)),
        ("logit_bias", json!({"1": 1})),
        ("user", json!("u")),
        ("logprobs", json!(true)),
    ] {
        let mut v = json!({"model": "c", "messages": []});
        v[param] = value;
        let err = p.body(&chat(v.clone())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnsupportedParams, "{param}");
        assert_eq!(err.param(), Some(param));
        v["drop_params"] = json!(true);
        assert!(body_of(&p, &chat(v)).get(param).is_none(), "{param}");
    }
    // Content Cohere cannot take.
    let err = p
        .body(&chat(
            json!({"model": "c", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]}),
        ))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert!(err.message().contains("input_audio"));
}

#[test]
fn request_defaults_wildcards_and_bases() {
    let p = proto_with("*", |c| {
        c.params.insert("top_k", &5).unwrap();
        c.params.insert("safety_mode", "STRICT").unwrap();
        c.api_base = "http://127.0.0.1:9/v2/chat".into();
    });
    assert_eq!(p.chat_uri, "http://127.0.0.1:9/v2/chat");
    assert_eq!(p.embed_uri, "http://127.0.0.1:9/v2/embed");
    assert_eq!(
        p.health_request().unwrap().uri(),
        "http://127.0.0.1:9/v1/models"
    );
    let mut req =
        chat(json!({"model": "cohere/command-r-plus", "messages": [], "safety_mode": "OFF"}));
    req.extensions
        .insert(crate::context::UpstreamModel(Arc::from(
            "cohere_chat/command-r-plus",
        )));
    let b = body_of(&p, &req);
    assert_eq!(b["model"], "command-r-plus");
    assert_eq!(b["k"], 5);
    assert_eq!(
        b["safety_mode"], "OFF",
        "the request wins over the deployment"
    );
    assert_eq!(b["stream"], false);
}

// ---------------------------------------------------------------- responses

fn completion(path: &str) -> ChatCompletion {
    proto("command-r7b-12-2024")
        .parse_completion(&chat(json!({"model": "c", "messages": []})), &fixture(path))
        .unwrap()
}

fn usage_of(c: &ChatCompletion) -> (u64, u64, u64, u64) {
    let u = c.usage.as_ref().unwrap();
    (
        u.prompt_tokens,
        u.completion_tokens,
        u.total_tokens,
        u.cached_tokens(),
    )
}

#[test]
fn response_chat_text() {
    let c = completion("chat_text.resp.json");
    assert_eq!(c.id, "f17a5f6c-1734-4098-bd0d-733ef000ac7b");
    assert_eq!(c.model, "command-r7b-12-2024");
    assert_eq!(c.object, "chat.completion");
    assert!(c.created > 1_700_000_000);
    assert_eq!(c.choices.len(), 1);
    assert_eq!(c.choices[0].message.role, Role::Assistant);
    assert_eq!(c.text(), Some("Hello! How can I assist you today?"));
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    // tokens, not billed_units (1 and 9).
    assert_eq!(usage_of(&c), (496, 11, 507, 0));
}

#[test]
fn response_system_instructions_and_cached() {
    let c = completion("chat_system_instructions.resp.json");
    assert_eq!(c.id, "cf7be73f-dcee-4589-9eea-2dca902b27ec");
    assert!(
        c.text()
            .unwrap()
            .starts_with("The capital of France is Paris. It is the country's largest city")
    );
    assert_eq!(usage_of(&c), (542, 63, 605, 0));
    let c = completion("chat_cached_tokens.resp.json");
    assert_eq!(c.text(), Some("Hello!"));
    assert_eq!(usage_of(&c), (2935, 4, 2939, 2928));
}

#[test]
fn response_thinking() {
    let c = completion("chat_thinking.resp.json");
    assert_eq!(c.id, "a7a1995c-1980-4683-8382-e8dda3598388");
    let m = &c.choices[0].message;
    assert!(m.content.as_deref().unwrap().starts_with(
        "Crossing a river safely requires careful planning and awareness of natural hazar"
    ));
    let r = m.reasoning_content.as_deref().unwrap();
    assert!(r.starts_with(
        "Okay, the user is asking how to cross a river, using the analogy of crossing the street."
    ));
    assert!(!m.content.as_deref().unwrap().contains("Okay, the user"));
    assert_eq!(usage_of(&c), (2190, 1257, 3447, 0));
}

#[test]
fn response_vercel_fixtures() {
    let c = completion("cohere-text.resp.json");
    assert_eq!(c.id, "e7592632-1e3d-424f-b129-bd5f9f980f7b");
    assert_eq!(c.text(), Some("The capital of France is Paris."));
    assert_eq!(usage_of(&c), (507, 10, 517, 448));

    let c = completion("cohere-max-tokens.resp.json");
    assert_eq!(c.text(), Some("**The History of"));
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Length));
    assert_eq!(usage_of(&c), (506, 5, 511, 448));

    let c = completion("cohere-tool-call.resp.json");
    assert_eq!(c.id, "f201af17-e24a-4396-8f6a-98e8bf9c3432");
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let m = &c.choices[0].message;
    assert_eq!(m.content, None);
    assert_eq!(
        m.reasoning_content.as_deref(),
        Some(
            "I will use the weather tool to find out the weather in San Francisco. I will also use the cityAttractions tool to find out what attractions are in San Francisco."
        )
    );
    let calls = m.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].id, "weather_dqgshstja6p9");
    assert_eq!(calls[0].kind, "function");
    assert_eq!(calls[0].function.name, "weather");
    assert_eq!(
        calls[0].function.arguments,
        "{\"location\":\"San Francisco\"}"
    );
    assert_eq!(calls[1].id, "cityAttractions_dcxfx4myvx68");
    assert_eq!(calls[1].function.name, "cityAttractions");
    assert_eq!(calls[1].function.arguments, "{\"city\":\"San Francisco\"}");
    assert_eq!(usage_of(&c), (1549, 103, 1652, 992));

    let c = completion("cohere-null-args.resp.json");
    let call = &c.choices[0].message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "currentTime_tf4dywn8wgnk");
    assert_eq!(call.function.name, "currentTime");
    assert_eq!(
        call.function.arguments, "{}",
        "\"null\" arguments become {{}}"
    );
    assert_eq!(usage_of(&c), (1445, 43, 1488, 992));
}

#[test]
fn response_failures_and_citations() {
    let p = proto("c");
    let req = chat(json!({"model": "c", "messages": []}));
    let err = p
        .parse_completion(
            &req,
            br#"{"id":"x","finish_reason":"ERROR","message":{"role":"assistant","content":[]}}"#,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream(500));
    let err = p
        .parse_completion(
            &req,
            br#"{"id":"x","finish_reason":"TIMEOUT","message":{"role":"assistant"}}"#,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream(504));
    assert_eq!(
        p.parse_completion(&req, b"<html>").unwrap_err().kind(),
        ErrorKind::BadGateway
    );
    let c = p
        .parse_completion(&req, br#"{"id":"x","finish_reason":"COMPLETE","message":{"role":"assistant",
            "content":[{"type":"text","text":"Oslo is cold."}],
            "citations":[{"start":0,"end":4,"text":"Oslo","sources":[{"type":"document","id":"d1"}]}]}}"#)
        .unwrap();
    let cites: Value =
        serde_json::from_str(c.choices[0].message.extra.get("citations").unwrap().get()).unwrap();
    assert_eq!(cites[0]["sources"][0]["id"], "d1");
    assert_eq!(c.usage, None);
}

#[test]
fn response_embeddings() {
    let floats = EmbeddingRequest::from_json(br#"{"model":"e","input":["a"]}"#).unwrap();
    let out = proto("embed-v4.0")
        .parse_embeddings(&floats, &fixture("embed_query.resp.json"))
        .unwrap();
    assert_eq!(out.model, "embed-v4.0");
    assert_eq!(out.object, "list");
    assert_eq!(out.data.len(), 1);
    let v = out.data[0].embedding.to_floats().unwrap();
    assert_eq!(v.len(), 1536);
    assert_eq!(&v[..3], &[-0.018445116, 0.008921167, -0.0011377502]);
    assert_eq!(v[1535], 0.009343115);
    assert_eq!(out.usage.as_ref().unwrap().prompt_tokens, 4);
    assert_eq!(out.usage.as_ref().unwrap().total_tokens, 4);

    let b64 = EmbeddingRequest::from_json(
        br#"{"model":"e","input":["a","b"],"encoding_format":"base64"}"#,
    )
    .unwrap();
    let out = proto("embed-english-v3.0")
        .parse_embeddings(&b64, &fixture("cohere-embedding.resp.json"))
        .unwrap();
    assert_eq!(out.data.len(), 2);
    assert_eq!(out.data[1].index, 1);
    assert!(matches!(out.data[0].embedding, EmbeddingVector::Base64(_)));
    let back = out.data[1].embedding.to_floats().unwrap();
    assert_eq!(back[0] as f32, -0.04660034_f32);
    assert_eq!(back[4] as f32, -0.010360718_f32);
    assert_eq!(out.usage.as_ref().unwrap().prompt_tokens, 10);
}

// ---------------------------------------------------------------- errors

#[test]
fn error_fixtures() {
    let p = proto("c");
    let err = p.map_error(
        StatusCode::UNAUTHORIZED,
        &HeaderMap::new(),
        &fixture("error_401_invalid_api_token.json"),
    );
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert_eq!(err.message(), "invalid api token");
    let err = p.map_error(
        StatusCode::NOT_FOUND,
        &HeaderMap::new(),
        &fixture("embed_error_404.resp.json"),
    );
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.message(),
        "model 'nonexistent' not found, make sure the correct model ID was used and that you have access to the model."
    );
    let mut h = HeaderMap::new();
    h.insert("retry-after", "30".parse().unwrap());
    let err = p.map_error(StatusCode::TOO_MANY_REQUESTS, &h, br#"{"id":"r","message":"You are using a Trial key, which is limited to 10 API calls / minute."}"#);
    assert_eq!(err.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
    assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(30)));
    let err = p.map_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), br#"{"message":"too many tokens: total number of tokens in the prompt cannot exceed 4081 - received 5000."}"#);
    assert_eq!(err.kind(), ErrorKind::ContextWindowExceeded);
    let err = p.map_error(
        StatusCode::from_u16(498).unwrap(),
        &HeaderMap::new(),
        br#"{"message":"blocked output"}"#,
    );
    assert_eq!(err.kind(), ErrorKind::ContentPolicy);
    let err = p.map_error(
        StatusCode::PAYMENT_REQUIRED,
        &HeaderMap::new(),
        br#"{"message":"Please add a payment method"}"#,
    );
    assert_eq!(err.status(), StatusCode::PAYMENT_REQUIRED);
    let err = p.map_error(
        StatusCode::BAD_GATEWAY,
        &HeaderMap::new(),
        b"<html>bad gateway</html>",
    );
    assert_eq!(err.kind(), ErrorKind::Upstream(502));
    assert!(err.message().contains("bad gateway"));
    let echo = format!(r#"{{"message":"invalid api token {KEY}"}}"#);
    let err = p.map_error(StatusCode::UNAUTHORIZED, &HeaderMap::new(), echo.as_bytes());
    assert!(!err.message().contains(KEY));
}

// ---------------------------------------------------------------- streams

const STREAMS: [&str; 4] = [
    "cohere-text.sse.derived.txt",
    "cohere-tool-call.sse.derived.txt",
    "cohere-empty-tool-call.sse.derived.txt",
    "cohere-reasoning.sse.derived.txt",
];

fn decode_cut(bytes: &[u8], cuts: &[usize]) -> (Vec<ChatChunk>, Result<(), Error>) {
    let mut d = SseStreamDecoder::new(CohereChunkTranslator::new(
        "command-a-03-2025",
        1_700_000_000,
        vec![Secret::new(KEY)],
    ));
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

fn decode(name: &str) -> Vec<ChatChunk> {
    let (chunks, r) = decode_cut(&fixture(name), &[]);
    r.unwrap();
    chunks
}

/// The recorded payloads framed as `data:` lines only (no `event:`), ending in `[DONE]`.
fn data_only(jsonl: &str) -> Vec<u8> {
    let mut out = String::new();
    for line in String::from_utf8(fixture(jsonl))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
    {
        out.push_str(&format!("data: {line}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

fn identity(chunks: &[ChatChunk], id: &str) {
    for c in chunks {
        assert_eq!(c.id, id);
        assert_eq!(c.model, "command-a-03-2025");
        assert_eq!(c.created, 1_700_000_000);
        assert_eq!(c.object, "chat.completion.chunk");
    }
}

#[test]
fn stream_text() {
    let chunks = decode("cohere-text.sse.derived.txt");
    identity(&chunks, "321d178c-2c12-44d3-ae42-2f5510f6b1cc");
    assert_eq!(chunks[0].choices[0].delta, Delta::role());
    let text: Vec<_> = chunks[1..8]
        .iter()
        .map(|c| c.choices[0].delta.content.as_deref().unwrap())
        .collect();
    assert_eq!(
        text,
        ["The", " capital", " of", " France", " is", " Paris", "."]
    );
    assert_eq!(chunks[8].choices[0].finish_reason, Some(FinishReason::Stop));
    let last = &chunks[9];
    assert!(last.is_usage_only());
    let u = last.usage.as_ref().unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.completion_tokens,
            u.total_tokens,
            u.cached_tokens()
        ),
        (507, 10, 517, 448)
    );
    assert_eq!(chunks.len(), 10);
    // The same payloads as plain `data:` events ending in [DONE] decode the same.
    let (again, r) = decode_cut(&data_only("cohere-text.chunks.jsonl"), &[]);
    r.unwrap();
    assert_eq!(again, chunks);
}

#[test]
fn stream_tool_calls() {
    let chunks = decode("cohere-tool-call.sse.derived.txt");
    identity(&chunks, "2941521a-b87a-45f6-9b0d-235fd66c3025");
    let plan: String = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.reasoning_content.clone())
        .collect();
    assert_eq!(
        plan,
        "I will use the weather tool to find the weather in San Francisco and the cityAttractions tool to find attractions in San Francisco."
    );
    let deltas: Vec<&ToolCallDelta> = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.tool_calls.as_ref())
        .flatten()
        .collect();
    assert_eq!(
        deltas[0],
        &ToolCallDelta::start(0, "weather_e8p4pn45zt0t", "weather")
    );
    assert_eq!(deltas[1], &ToolCallDelta::arguments(0, "{\""));
    let first: String = deltas
        .iter()
        .filter(|d| d.index == 0)
        .filter_map(|d| d.function.as_ref()?.arguments.clone())
        .collect();
    assert_eq!(first, "{\"location\": \"San Francisco\"}");
    let start1 = deltas
        .iter()
        .position(|d| d.id.is_some() && d.index == 1)
        .unwrap();
    assert_eq!(
        deltas[start1],
        &ToolCallDelta::start(1, "cityAttractions_pyxssbwnq9fq", "cityAttractions")
    );
    let second: String = deltas
        .iter()
        .filter(|d| d.index == 1)
        .filter_map(|d| d.function.as_ref()?.arguments.clone())
        .collect();
    assert_eq!(second, "{\"city\": \"San Francisco\"}");
    let n = chunks.len();
    assert_eq!(
        chunks[n - 2].choices[0].finish_reason,
        Some(FinishReason::ToolCalls)
    );
    let u = chunks[n - 1].usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.cached_tokens()),
        (1549, 95, 1504)
    );
}

#[test]
fn stream_empty_tool_call_gets_empty_object_arguments() {
    let chunks = decode("cohere-empty-tool-call.sse.derived.txt");
    identity(&chunks, "66dec7d7-45e6-427c-8fd9-7d6375d12046");
    let mut agg = crate::stream::ChunkAggregator::default();
    for c in &chunks {
        agg.push(c);
    }
    let c = agg.finish();
    let call = &c.choices[0].message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "currentTime_y46ar19t5gvw");
    assert_eq!(call.function.name, "currentTime");
    assert_eq!(call.function.arguments, "{}");
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(
        c.choices[0].message.reasoning_content.as_deref(),
        Some("I will use the currentTime tool to find the current time.")
    );
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.cached_tokens()),
        (1445, 43, 704)
    );
}

#[test]
fn stream_reasoning() {
    let chunks = decode("cohere-reasoning.sse.derived.txt");
    identity(&chunks, "c9117d7f-a7e4-499f-b643-a2a1e139687b");
    let mut agg = crate::stream::ChunkAggregator::default();
    for c in &chunks {
        agg.push(c);
    }
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.reasoning_content.clone())
        .collect();
    assert_eq!(
        reasoning,
        "The user is asking for the sum of 2 and 2. Since this is a straightforward arithmetic problem, I don't need to use any tools. I can calculate the answer directly."
    );
    let c = agg.finish();
    assert_eq!(c.text(), Some("The answer to 2 + 2 is 4."));
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    let u = c.usage.unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.completion_tokens,
            u.total_tokens,
            u.cached_tokens()
        ),
        (1394, 54, 1448, 1360)
    );
    assert!(chunks.last().unwrap().is_usage_only());
}

#[test]
fn stream_every_two_way_split_decodes_the_same() {
    for name in STREAMS {
        let bytes = fixture(name);
        let whole = decode(name);
        for i in 0..=bytes.len() {
            let (got, r) = decode_cut(&bytes, &[i]);
            assert!(r.is_ok(), "{name} cut at {i}: {r:?}");
            assert_eq!(got, whole, "{name} cut at {i}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn stream_any_split_decodes_the_same(which in 0usize..4, cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..40)) {
        let bytes = fixture(STREAMS[which]);
        let (whole, _) = decode_cut(&bytes, &[]);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let (got, r) = decode_cut(&bytes, &points);
        prop_assert!(r.is_ok());
        prop_assert_eq!(got, whole);
    }

    #[test]
    fn corrupt_streams_never_panic(which in 0usize..4, idx in any::<proptest::sample::Index>(), val in any::<u8>()) {
        let mut bytes = fixture(STREAMS[which]);
        let i = idx.index(bytes.len());
        bytes[i] = val;
        let _ = decode_cut(&bytes, &[i / 2]);
    }
}

#[test]
fn stream_errors() {
    let bytes = fixture("cohere-text.sse.derived.txt");
    let text = String::from_utf8(bytes.clone()).unwrap();
    let cut = text.find("event: message-end").unwrap();
    let (chunks, r) = decode_cut(&bytes[..cut], &[]);
    assert_eq!(chunks.len(), 8);
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Connection);
    // [DONE] before message-end is not a proper end either.
    let mut early = bytes[..cut].to_vec();
    early.extend_from_slice(b"data: [DONE]\n\n");
    let (_, r) = decode_cut(&early, &[]);
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Connection);
    let failed = "event: message-start\ndata: {\"id\":\"m\",\"type\":\"message-start\",\"delta\":{\"message\":{\"role\":\"assistant\"}}}\n\nevent: message-end\ndata: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"ERROR\"}}\n\n";
    let (_, r) = decode_cut(failed.as_bytes(), &[]);
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Upstream(500));
    let error = format!("event: error\ndata: {{\"message\":\"internal failure for {KEY}\"}}\n\n");
    let (_, r) = decode_cut(error.as_bytes(), &[]);
    let err = r.unwrap_err();
    assert!(err.message().contains("internal failure"));
    assert!(!err.message().contains(KEY));
}

#[test]
fn recorded_payloads_without_event_lines_decode_like_the_framed_ones() {
    for (jsonl, framed) in [
        ("cohere-text.chunks.jsonl", "cohere-text.sse.derived.txt"),
        (
            "cohere-tool-call.chunks.jsonl",
            "cohere-tool-call.sse.derived.txt",
        ),
        (
            "cohere-empty-tool-call.chunks.jsonl",
            "cohere-empty-tool-call.sse.derived.txt",
        ),
        (
            "cohere-reasoning.chunks.jsonl",
            "cohere-reasoning.sse.derived.txt",
        ),
    ] {
        let (plain, r) = decode_cut(&data_only(jsonl), &[]);
        r.unwrap();
        assert_eq!(plain, decode(framed), "{jsonl}");
    }
}

fn arb_message() -> impl Strategy<Value = Value> {
    let role = prop_oneof![
        Just("system"),
        Just("developer"),
        Just("user"),
        Just("assistant"),
        Just("tool"),
        Just("function"),
        Just("weird")
    ];
    let content = prop_oneof![
        Just(Value::Null),
        "[a-z ]{0,8}".prop_map(Value::String),
        Just(
            json!([{"type": "text", "text": "t"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}])
        ),
        Just(json!([{"type": "refusal", "refusal": "no"}, {"type": "file", "file": {}}])),
    ];
    (
        role,
        content,
        proptest::option::of("[ -~]{0,20}"),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(role, content, id, calls, reasoning)| {
            let mut m = json!({"role": role, "content": content});
            if reasoning {
                m["reasoning_content"] = json!("hmm");
            }
            if let Some(id) = id {
                m["tool_call_id"] = json!(id.clone());
                if calls {
                    m["tool_calls"] = json!([{"id": id, "type": "function",
                        "function": {"name": "f", "arguments": "{"}}]);
                }
            }
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn translation_never_panics(
        messages in proptest::collection::vec(arb_message(), 0..6),
        choice in prop_oneof![Just(json!(null)), Just(json!("none")), Just(json!("required")), Just(json!("auto")),
            Just(json!({"type": "function", "function": {"name": "f"}})), Just(json!({"type": "x"}))],
        rf in prop_oneof![Just(json!(null)), Just(json!({"type": "json_object"})), Just(json!({"type": "json_schema", "json_schema": {"name": "s"}})), Just(json!({"type": "other"}))],
        effort in prop_oneof![Just(json!(null)), Just(json!("none")), Just(json!("high")), Just(json!("odd"))],
        drop in any::<bool>(),
    ) {
        let mut body = json!({"model": "m", "messages": messages, "drop_params": drop, "n": 2, "top_k": 3,
            "tools": [{"type": "function", "function": {"name": "f"}}, {"type": "code_interpreter"}]});
        for (k, v) in [("tool_choice", choice), ("response_format", rf), ("reasoning_effort", effort)] {
            if !v.is_null() { body[k] = v; }
        }
        if let Ok(req) = ChatRequest::from_json(&serde_json::to_vec(&body).unwrap()) {
            let _ = proto("m").chat_request(&req);
        }
    }

    #[test]
    fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), which in 0usize..3) {
        let req = chat(json!({"model": "g", "messages": []}));
        let base = [fixture("cohere-tool-call.resp.json"), fixture("chat_thinking.resp.json"), fixture("cohere-embedding.resp.json")];
        let mut body = base[which].clone();
        let at = body.len() / 2;
        body.splice(at..at, bytes.iter().copied());
        let _ = proto("m").parse_completion(&req, &body);
        let _ = proto("m").parse_completion(&req, &bytes);
        let e = EmbeddingRequest::from_json(br#"{"model":"e","input":"a","encoding_format":"base64"}"#).unwrap();
        let _ = proto("m").parse_embeddings(&e, &body);
        let _ = proto("m").map_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), &bytes);
    }
}
