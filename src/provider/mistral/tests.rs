//! Unit tests of the Mistral translation against the recorded fixtures.

use super::stream::MistralChunkTranslator;
use super::*;
use crate::error::{ErrorKind, LimitSource};
use crate::types::{ChatChunk, FinishReason, Role};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::VecDeque;

const KEY: &str = "mistral-key-0123456789abcdef";

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/protocols/mistral/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn fixture_json(path: &str) -> Value {
    serde_json::from_slice(&fixture(path)).unwrap()
}

/// Drops `null` members (Mistral treats absent and null alike; the recorded
/// client wrote its unset options as null).
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

fn proto_with(model: &str, f: impl FnOnce(&mut MistralConfig)) -> MistralProtocol {
    let mut cfg = MistralConfig::new(model).api_key(Secret::new(KEY));
    f(&mut cfg);
    MistralProtocol::new(cfg).unwrap()
}

fn proto(model: &str) -> MistralProtocol {
    proto_with(model, |_| {})
}

fn chat(v: Value) -> ChatRequest {
    ChatRequest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap()
}

fn body_of(p: &MistralProtocol, req: &ChatRequest) -> Value {
    serde_json::from_slice(&p.body(req).unwrap()).unwrap()
}

// ---------------------------------------------------------------- requests

#[test]
fn request_chat_text() {
    let req = chat(json!({
        "model": "my-group",
        "messages": [{"role": "user", "content": "hello"}],
        "frequency_penalty": 0.25, "presence_penalty": 0.5,
        "n": 1, "stream": false, "top_p": 1.0
    }));
    let p = proto("mistral-large-latest");
    assert_eq!(body_of(&p, &req), fixture_json("chat_text.req.json"));
    let http = p.chat_request(&req).unwrap();
    assert_eq!(http.uri(), "https://api.mistral.ai/v1/chat/completions");
    assert_eq!(
        http.headers()["authorization"],
        format!("Bearer {KEY}").as_str()
    );
    assert!(http.headers()["authorization"].is_sensitive());
    assert!(http.headers().get("accept").is_none());
}

#[test]
fn request_chat_tool_call() {
    let req = chat(json!({
        "model": "pixtral",
        "messages": [{"role": "user", "content": [{"type": "text",
            "text": "What fruit is in the image you can get from the get_image tool? Call the tool."}]}],
        "n": 1, "stream": false, "top_p": 1.0, "tool_choice": "auto",
        "tools": [{"type": "function", "function": {"name": "get_image", "description": "",
            "parameters": {"additionalProperties": false, "properties": {}, "type": "object"}}}]
    }));
    let mut expected = fixture_json("chat_tool_call.req.json");
    // The recorded client left out `type`, whose only value (and Mistral's default) is "function".
    expected["tools"][0]["type"] = json!("function");
    assert_eq!(body_of(&proto("pixtral-12b-latest"), &req), expected);
}

#[test]
fn request_chat_prompt_cache() {
    let fixture_body = fixture_json("chat_prompt_cache.req.json");
    let system = fixture_body["messages"][0]["content"].clone();
    let req = chat(json!({
        "model": "large",
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": "Reply with exactly: cache probe one."},
            {"role": "assistant", "content": [{"type": "text", "text": "cache probe one."}],
             "prefix": false, "tool_calls": []},
            {"role": "user", "content": "Reply with exactly: cache probe two."}
        ],
        "prompt_cache_key": "pydantic-ai-test-mistral-history-cache",
        "n": 1, "stream": false, "top_p": 1.0
    }));
    assert_eq!(
        body_of(&proto("mistral-large-latest"), &req),
        without_nulls(fixture_body)
    );
}

#[test]
fn request_stream_thinking_asks_for_nothing_extra() {
    let req = chat(json!({
        "model": "magistral",
        "messages": [{"role": "user", "content": "How do I cross the street?"}],
        "stream": true
    }));
    let p = proto("magistral-medium-latest");
    assert_eq!(body_of(&p, &req), fixture_json("stream_thinking.req.json"));
    assert_eq!(
        p.chat_request(&req).unwrap().headers()["accept"],
        "text/event-stream"
    );
    // A client's stream_options do not reach Mistral (usage always comes).
    let req = chat(json!({"model": "m", "messages": [], "stream": true,
        "stream_options": {"include_usage": true}}));
    assert!(body_of(&p, &req).get("stream_options").is_none());
}

#[test]
fn renamed_and_reshaped_parameters() {
    let req = chat(json!({
        "model": "g",
        "messages": [
            {"role": "developer", "content": "Be brief.", "name": "ops"},
            {"role": "user", "content": "Weather?", "name": "alice"},
            {"role": "assistant", "content": null, "reasoning_content": "hm",
             "tool_calls": [{"id": "call_Xa81kdLq02mZ", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": "FI5qQGzDE", "type": "function",
                 "function": {"name": "time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_Xa81kdLq02mZ", "name": "weather", "content": "-3°C"},
            {"role": "tool", "tool_call_id": "FI5qQGzDE", "content": "12:00"},
            {"role": "assistant", "content": "It is"}
        ],
        "seed": 42, "max_completion_tokens": 100, "max_tokens": 7,
        "tool_choice": "required", "safe_prompt": true, "prompt_mode": "reasoning",
        "stop": ["END"], "parallel_tool_calls": false
    }));
    let b = body_of(&proto("mistral-small-latest"), &req);
    assert_eq!(b["model"], "mistral-small-latest");
    assert_eq!(b["random_seed"], 42);
    assert!(b.get("seed").is_none());
    assert_eq!(b["max_tokens"], 100, "max_completion_tokens wins");
    assert!(b.get("max_completion_tokens").is_none());
    assert_eq!(b["tool_choice"], "any");
    assert_eq!(b["safe_prompt"], true);
    assert_eq!(b["prompt_mode"], "reasoning");
    assert_eq!(b["stop"], json!(["END"]));
    assert_eq!(b["parallel_tool_calls"], false);
    let m = &b["messages"];
    assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(m[1], json!({"role": "user", "content": "Weather?"}));
    let mapped = tool_call_id("call_Xa81kdLq02mZ").into_owned();
    assert_eq!(mapped.len(), 9);
    assert_eq!(m[2]["tool_calls"][0]["id"], mapped.as_str());
    assert_eq!(
        m[2]["tool_calls"][1]["id"], "FI5qQGzDE",
        "Mistral's own ids stay"
    );
    assert!(m[2].get("content").is_none());
    assert!(m[2].get("reasoning_content").is_none());
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": mapped, "name": "weather", "content": "-3°C"})
    );
    assert_eq!(m[4]["tool_call_id"], "FI5qQGzDE");
    assert_eq!(
        m[5],
        json!({"role": "assistant", "content": "It is", "prefix": true})
    );
    assert!(m[1].get("prefix").is_none());
    // A named tool choice is Mistral's shape too.
    let req = chat(json!({"model": "g", "messages": [],
        "tool_choice": {"type": "function", "function": {"name": "weather"}}}));
    assert_eq!(
        body_of(&proto("m"), &req)["tool_choice"],
        json!({"type": "function", "function": {"name": "weather"}})
    );
}

#[test]
fn files_and_images() {
    let req = chat(
        json!({"model": "g", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Read these"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "file", "file": {"file_id": "file-abc"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}}
        ]}]}),
    );
    let b = body_of(&proto("pixtral-12b-latest"), &req);
    assert_eq!(
        b["messages"][0]["content"],
        json!([
            {"type": "text", "text": "Read these"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "file", "file_id": "file-abc"},
            {"type": "document_url", "document_url": "data:application/pdf;base64,JVBERi0="}
        ])
    );
}

#[test]
fn unsupported_parameters_fail_or_are_dropped() {
    let req =
        chat(json!({"model": "g", "messages": [], "logit_bias": {"1": 2}, "temperature": 0.3}));
    let err = proto("m").body(&req).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedParams);
    assert_eq!(err.param(), Some("logit_bias"));
    assert!(err.message().contains("mistral"));
    let p = proto_with("m", |c| c.drop.drop = true);
    let b = body_of(
        &p,
        &chat(
            json!({"model": "g", "messages": [], "logit_bias": {"1": 2}, "user": "u",
            "seed": 1, "temperature": 0.3}),
        ),
    );
    assert!(b.get("logit_bias").is_none());
    assert!(b.get("user").is_none());
    assert_eq!(b["temperature"], 0.3);
    assert_eq!(b["random_seed"], 1);
    // additional_drop_params removes supported ones and extras too.
    let b = body_of(
        &proto("m"),
        &chat(
            json!({"model": "g", "messages": [], "seed": 1, "safe_prompt": true,
            "additional_drop_params": ["seed", "safe_prompt"]}),
        ),
    );
    assert!(b.get("random_seed").is_none());
    assert!(b.get("safe_prompt").is_none());
}

#[test]
fn wildcard_model_and_defaults() {
    let p = proto_with("*", |c| {
        c.params.insert("safe_prompt", &true).unwrap();
    });
    let mut req = chat(json!({"model": "mistral/codestral-latest", "messages": []}));
    req.extensions
        .insert(crate::context::UpstreamModel(Arc::from(
            "mistral/codestral-latest",
        )));
    let b = body_of(&p, &req);
    assert_eq!(b["model"], "codestral-latest");
    assert_eq!(b["safe_prompt"], true);
}

#[test]
fn bases() {
    let p = proto_with("m", |c| c.api_base = "http://127.0.0.1:9/".into());
    assert_eq!(p.chat_uri, "http://127.0.0.1:9/v1/chat/completions");
    assert_eq!(p.embeddings_uri, "http://127.0.0.1:9/v1/embeddings");
    assert_eq!(
        p.health_request().unwrap().uri(),
        "http://127.0.0.1:9/v1/models"
    );
    assert!(MistralProtocol::new(MistralConfig::new("m").api_base("ftp://x")).is_err());
}

#[test]
fn embeddings_body_and_answer() {
    let req = EmbeddingRequest::from_json(
        br#"{"model":"e","input":"hello","dimensions":256,"encoding_format":"base64","output_dtype":"float"}"#,
    )
    .unwrap();
    let http = proto("mistral-embed").embedding_request(&req).unwrap();
    assert_eq!(http.uri(), "https://api.mistral.ai/v1/embeddings");
    let b: Value = serde_json::from_slice(http.body()).unwrap();
    assert_eq!(
        b,
        json!({"model": "mistral-embed", "input": ["hello"], "output_dimension": 256, "output_dtype": "float"})
    );
    let answer = br#"{"id":"e1","object":"list","data":[{"object":"embedding","embedding":[1.0,-2.0],"index":0}],"model":"mistral-embed","usage":{"prompt_tokens":3,"total_tokens":3,"completion_tokens":0}}"#;
    let out = proto("mistral-embed")
        .parse_embeddings(&req, answer)
        .unwrap();
    assert_eq!(out.model, "mistral-embed");
    assert_eq!(out.usage.as_ref().unwrap().prompt_tokens, 3);
    assert_eq!(
        out.data[0].embedding,
        crate::types::EmbeddingVector::Float(vec![1.0, -2.0]).to_base64()
    );
    let tokens = EmbeddingRequest::from_json(br#"{"model":"e","input":[1,2,3]}"#).unwrap();
    assert_eq!(
        proto("mistral-embed")
            .embedding_request(&tokens)
            .unwrap_err()
            .kind(),
        ErrorKind::BadRequest
    );
}

// ---------------------------------------------------------------- responses

fn completion(path: &str) -> ChatCompletion {
    proto("m")
        .parse_completion(&chat(json!({"model": "g", "messages": []})), &fixture(path))
        .unwrap()
}

#[test]
fn response_chat_text() {
    let c = completion("chat_text.resp.json");
    assert_eq!(c.id, "74b5a04853d2428f8c69b8b35dc2d30b");
    assert_eq!(c.model, "mistral-large-latest");
    assert_eq!(c.created, 1_782_199_134);
    assert_eq!(c.object, "chat.completion");
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(c.choices[0].message.role, Role::Assistant);
    assert_eq!(
        c.text(),
        Some(
            "Hello! 😊 How can I assist you today? Whether you have a question, need help with something, or just want to chat, I'm here for you!"
        )
    );
    assert_eq!(c.choices[0].message.tool_calls, None);
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (4, 36, 40)
    );
    assert_eq!(u.cached_tokens(), 0);
}

#[test]
fn response_chat_tool_call() {
    let c = completion("chat_tool_call.resp.json");
    assert_eq!(c.id, "20c656d7c70e4362858160d9d241ce92");
    assert_eq!(c.model, "pixtral-12b-latest");
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let m = &c.choices[0].message;
    assert_eq!(m.content, None, "\"\" beside tool calls is null");
    let calls = m.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, "FI5qQGzDE");
    assert_eq!(calls[0].kind, "function");
    assert_eq!(calls[0].function.name, "get_image");
    assert_eq!(calls[0].function.arguments, "{}");
    assert!(calls[0].extra.get("index").is_none());
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (65, 16, 81)
    );
}

#[test]
fn response_after_tool_and_image() {
    let c = completion("chat_after_tool_and_image.resp.json");
    assert_eq!(c.id, "b9df7d6167a74543aed6c27557ab0a29");
    assert_eq!(c.model, "pixtral-12b-latest");
    assert_eq!(c.created, 1_766_496_293);
    assert!(
        c.text()
            .unwrap()
            .starts_with("The image shows a kiwi fruit that has been cut in half.")
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (1540, 54, 1594)
    );
}

#[test]
fn response_prompt_cache() {
    let c = completion("chat_prompt_cache.resp.json");
    assert_eq!(c.text(), Some("cache probe two."));
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (268, 5, 273)
    );
    assert_eq!(
        u.cached_tokens(),
        224,
        "cached is a subset of prompt_tokens"
    );
}

#[test]
fn response_vercel_text_and_tool_call() {
    let c = completion("mistral-text.resp.json");
    assert_eq!(c.id, "5319bd0299614c679a0068a4f2c8ffd0");
    assert_eq!(c.model, "mistral-small-latest");
    assert!(
        c.text()
            .unwrap()
            .starts_with("**Holiday Name: \"World Kindness Day of Sharing\"**")
    );
    assert!(c.text().unwrap().ends_with("What would you share? 😊"));
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (13, 434, 447)
    );

    let c = completion("mistral-tool-call.resp.json");
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(c.choices[0].message.content, None);
    let call = &c.choices[0].message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "gSIMJiOkT");
    assert_eq!(call.kind, "function");
    assert_eq!(call.function.name, "weather");
    assert_eq!(call.function.arguments, "{\"location\": \"San Francisco\"}");
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (124, 22, 146)
    );
}

#[test]
fn response_thinking_chunks_and_finish_reasons() {
    let body = br#"{"id":"r1","object":"chat.completion","created":5,"model":"magistral-small-latest",
      "choices":[{"index":0,"finish_reason":"model_length","message":{"role":"assistant","content":[
        {"type":"thinking","thinking":[{"type":"text","text":"Let me "},{"type":"text","text":"think."}]},
        {"type":"text","text":"Answer: 4"}]}}],
      "usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}}"#;
    let c = proto("m")
        .parse_completion(&chat(json!({"model": "g", "messages": []})), body)
        .unwrap();
    assert_eq!(c.text(), Some("Answer: 4"));
    assert_eq!(
        c.choices[0].message.reasoning_content.as_deref(),
        Some("Let me think.")
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Length));
    let err = proto("m")
        .parse_completion(
            &chat(json!({"model": "g", "messages": []})),
            br#"{"id":"x","choices":[{"index":0,"finish_reason":"error","message":{"role":"assistant","content":""}}]}"#,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream(500));
    assert!(
        proto("m")
            .parse_completion(&chat(json!({"model": "g", "messages": []})), b"not json")
            .is_err()
    );
}

// ---------------------------------------------------------------- errors

#[test]
fn error_fixtures() {
    let p = proto("m");
    let cases = [
        (
            "error_401_unauthorized.json",
            401,
            ErrorKind::Authentication,
            "Unauthorized",
        ),
        (
            "error_401_detail.json",
            401,
            ErrorKind::Authentication,
            "Unauthorized",
        ),
        (
            "error_429_rate_limited.json",
            429,
            ErrorKind::RateLimited(LimitSource::Upstream),
            "Rate limit exceeded",
        ),
        (
            "error_429_requests_rate_limit.json",
            429,
            ErrorKind::RateLimited(LimitSource::Upstream),
            "Requests rate limit exceeded",
        ),
    ];
    for (file, status, kind, message) in cases {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        let err = p.map_error(StatusCode::from_u16(status).unwrap(), &h, &fixture(file));
        assert_eq!(err.kind(), kind, "{file}");
        assert_eq!(err.message(), message, "{file}");
        assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(3)));
    }
    let err = p.map_error(
        StatusCode::TOO_MANY_REQUESTS,
        &HeaderMap::new(),
        &fixture("error_429_rate_limited.json"),
    );
    assert_eq!(err.code(), Some("1300"));
    let err = p.map_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        &HeaderMap::new(),
        br#"{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","bogus"],"msg":"Extra inputs are not permitted"}]},"type":"invalid_request_error","param":null,"code":null}"#,
    );
    assert_eq!(err.kind(), ErrorKind::UnprocessableEntity);
    assert!(
        err.message().contains("Extra inputs are not permitted"),
        "{}",
        err.message()
    );
    let echo = format!(r#"{{"message":"bad key {KEY}"}}"#);
    let err = p.map_error(StatusCode::UNAUTHORIZED, &HeaderMap::new(), echo.as_bytes());
    assert!(!err.message().contains(KEY));
}

// ---------------------------------------------------------------- streams

/// The recorded chunk payloads framed as Mistral sends them.
fn framed(jsonl: &[u8]) -> Vec<u8> {
    let mut out = String::new();
    for line in String::from_utf8_lossy(jsonl).lines() {
        if !line.trim().is_empty() {
            out.push_str("data: ");
            out.push_str(line);
            out.push_str("\n\n");
        }
    }
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

const STREAMS: [&str; 4] = [
    "mistral-text.chunks.jsonl",
    "mistral-tool-call.chunks.jsonl",
    "mistral-incremental-tool-call.chunks.jsonl",
    "stream_thinking.sse.txt",
];

fn stream_bytes(name: &str) -> Vec<u8> {
    if name.ends_with(".jsonl") {
        framed(&fixture(name))
    } else {
        fixture(name)
    }
}

fn decode_cut(bytes: &[u8], cuts: &[usize]) -> (Vec<ChatChunk>, Result<(), Error>) {
    let mut d = SseStreamDecoder::new(MistralChunkTranslator::new(vec![Secret::new(KEY)]));
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
    let (chunks, r) = decode_cut(&stream_bytes(name), &[]);
    r.unwrap();
    chunks
}

fn same_identity(chunks: &[ChatChunk], id: &str, model: &str, created: i64) {
    for c in chunks {
        assert_eq!(c.id, id);
        assert_eq!(c.model, model);
        assert_eq!(c.created, created);
        assert_eq!(c.object, "chat.completion.chunk");
    }
}

#[test]
fn stream_text() {
    let chunks = decode("mistral-text.chunks.jsonl");
    same_identity(
        &chunks,
        "5319bd0299614c679a0068a4f2c8ffd0",
        "mistral-small-latest",
        1_769_088_720,
    );
    assert_eq!(chunks[0].choices[0].delta, crate::types::Delta::role());
    let text: Vec<_> = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.content.clone())
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(
        text,
        ["Hello", ", ", "world!", " This", " is a test", " response."]
    );
    let n = chunks.len();
    assert_eq!(
        chunks[n - 2].choices[0].finish_reason,
        Some(FinishReason::Stop)
    );
    assert!(
        chunks[n - 2].usage.is_none(),
        "usage moves to its own chunk"
    );
    let last = &chunks[n - 1];
    assert!(last.is_usage_only());
    let u = last.usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (13, 8, 21)
    );
    assert_eq!(n, 1 + 6 + 1 + 1);
}

#[test]
fn stream_tool_call_arrives_whole_and_is_split() {
    let chunks = decode("mistral-tool-call.chunks.jsonl");
    same_identity(
        &chunks,
        "b3999b8c93e04e11bcbff7bcab829667",
        "mistral-small-latest",
        1_769_088_854,
    );
    assert_eq!(chunks.len(), 5);
    assert_eq!(chunks[0].choices[0].delta, crate::types::Delta::role());
    let start = &chunks[1].choices[0].delta.tool_calls.as_ref().unwrap()[0];
    assert_eq!(
        start,
        &crate::types::ToolCallDelta::start(0, "gSIMJiOkT", "weather")
    );
    let args = &chunks[2].choices[0].delta.tool_calls.as_ref().unwrap()[0];
    assert_eq!(
        args,
        &crate::types::ToolCallDelta::arguments(0, "{\"location\": \"San Francisco\"}")
    );
    assert_eq!(
        chunks[3].choices[0].finish_reason,
        Some(FinishReason::ToolCalls)
    );
    let u = chunks[4].usage.as_ref().unwrap();
    assert!(chunks[4].is_usage_only());
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (124, 22, 146)
    );
}

#[test]
fn stream_incremental_tool_call() {
    let chunks = decode("mistral-incremental-tool-call.chunks.jsonl");
    same_identity(
        &chunks,
        "735e434874a24f68a2390b3cab149242",
        "zai-glm-5-2",
        1_787_234_678,
    );
    assert_eq!(chunks.len(), 5);
    assert_eq!(chunks[0].choices[0].delta, crate::types::Delta::role());
    assert_eq!(
        chunks[1].choices[0].delta.tool_calls.as_ref().unwrap()[0],
        crate::types::ToolCallDelta::start(0, "chatcmpl-tool-9f149c74c42f265b", "webSearchTool")
    );
    assert_eq!(
        chunks[2].choices[0].delta.tool_calls.as_ref().unwrap()[0],
        crate::types::ToolCallDelta::arguments(0, "{\"query\": \"current Berlin weather\"}")
    );
    assert_eq!(
        chunks[3].choices[0].finish_reason,
        Some(FinishReason::ToolCalls)
    );
    let u = chunks[4].usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (171, 14, 185)
    );
    assert_eq!(u.cached_tokens(), 128);
    // Assembled, it is one call with the whole arguments.
    let mut agg = crate::stream::ChunkAggregator::default();
    for c in &chunks {
        agg.push(c);
    }
    let c = agg.finish();
    let call = &c.choices[0].message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.function.name, "webSearchTool");
    assert_eq!(
        call.function.arguments,
        "{\"query\": \"current Berlin weather\"}"
    );
}

#[test]
fn stream_thinking_goes_to_reasoning_content() {
    let chunks = decode("stream_thinking.sse.txt");
    same_identity(
        &chunks,
        "9f9d90210f194076abeee223863eaaf0",
        "magistral-medium-latest",
        1_764_296_393,
    );
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.reasoning_content.clone())
        .collect();
    assert!(reasoning.starts_with("Okay, the user is asking how to cross the street. I know that crossing the street safely involves a few key steps: first, look"), "{reasoning}");
    let text: String = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.content.clone())
        .collect();
    assert!(
        text.ends_with("By following these steps, you can ensure a safe crossing."),
        "{text}"
    );
    assert!(
        !text.contains("Okay, the user"),
        "thinking stays out of the content"
    );
    // Thinking chunks come first, then the answer, never mixed in one delta.
    let first_text = chunks
        .iter()
        .position(|c| {
            c.choices
                .first()
                .and_then(|c| c.delta.content.as_deref())
                .is_some_and(|t| !t.is_empty())
        })
        .unwrap();
    assert!(chunks[first_text..].iter().all(|c| {
        c.choices
            .first()
            .is_none_or(|c| c.delta.reasoning_content.is_none())
    }));
    let n = chunks.len();
    assert_eq!(
        chunks[n - 2].choices[0].finish_reason,
        Some(FinishReason::Stop)
    );
    let u = chunks[n - 1].usage.as_ref().unwrap();
    assert!(chunks[n - 1].is_usage_only());
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (10, 232, 242)
    );
}

#[test]
fn stream_every_two_way_split_decodes_the_same() {
    for name in STREAMS {
        let bytes = stream_bytes(name);
        let whole = decode(name);
        // The 36 KB Magistral transcript is checked at every 7th byte (and fully by proptest).
        let step = if bytes.len() > 8000 { 7 } else { 1 };
        for i in (0..=bytes.len()).step_by(step) {
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
        let bytes = stream_bytes(STREAMS[which]);
        let (whole, _) = decode_cut(&bytes, &[]);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let (got, r) = decode_cut(&bytes, &points);
        prop_assert!(r.is_ok());
        prop_assert_eq!(got, whole);
    }

    #[test]
    fn corrupt_streams_never_panic(which in 0usize..4, idx in any::<proptest::sample::Index>(), val in any::<u8>()) {
        let mut bytes = stream_bytes(STREAMS[which]);
        let i = idx.index(bytes.len());
        bytes[i] = val;
        let _ = decode_cut(&bytes, &[i / 2]);
    }
}

#[test]
fn stream_errors() {
    let bytes = stream_bytes("mistral-text.chunks.jsonl");
    let (chunks, r) = decode_cut(&bytes[..bytes.len() / 2], &[]);
    assert!(!chunks.is_empty());
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Connection);
    // Finished but no [DONE]: fine, and the usage still comes last.
    let text = String::from_utf8(bytes).unwrap();
    let cut = text.find("data: [DONE]").unwrap();
    let (chunks, r) = decode_cut(&text.as_bytes()[..cut], &[]);
    r.unwrap();
    assert!(chunks.last().unwrap().is_usage_only());
    // finish_reason "error" and in-band error objects.
    let text = "data: {\"id\":\"a\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":\"error\"}]}\n\n";
    let (_, r) = decode_cut(text.as_bytes(), &[]);
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Upstream(500));
    let text = format!(
        "data: {{\"object\":\"error\",\"message\":\"Rate limit exceeded {KEY}\",\"type\":\"rate_limited\",\"param\":null,\"code\":\"1300\"}}\n\n"
    );
    let (_, r) = decode_cut(text.as_bytes(), &[]);
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
    assert!(err.message().contains("Rate limit exceeded"));
    assert!(!err.message().contains(KEY));
}

#[test]
fn parallel_whole_tool_calls_get_their_own_indices() {
    let text = "data: {\"id\":\"p\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"aaaaaaaaa\",\"function\":{\"name\":\"a\",\"arguments\":\"{}\"}},{\"id\":\"bbbbbbbbb\",\"function\":{\"name\":\"b\",\"arguments\":\"{\\\"x\\\":1}\"}}]},\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\ndata: [DONE]\n\n";
    let (chunks, r) = decode_cut(text.as_bytes(), &[]);
    r.unwrap();
    let mut agg = crate::stream::ChunkAggregator::default();
    for c in &chunks {
        agg.push(c);
    }
    let c = agg.finish();
    let calls = c.choices[0].message.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].id.as_str(), calls[0].function.arguments.as_str()),
        ("aaaaaaaaa", "{}")
    );
    assert_eq!(
        (calls[1].id.as_str(), calls[1].function.arguments.as_str()),
        ("bbbbbbbbb", "{\"x\":1}")
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
}

#[test]
fn json_schema_and_final_tool_call_turn() {
    let schema = json!({"type": "json_schema", "json_schema": {"name": "city", "strict": true,
        "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}});
    let b = body_of(
        &proto("m"),
        &chat(
            json!({"model": "g", "response_format": schema, "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "aaaaaaaaa", "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]}]}),
        ),
    );
    assert_eq!(
        b["response_format"], schema,
        "Mistral takes OpenAI's json_schema shape"
    );
    assert!(
        b["messages"][1].get("prefix").is_none(),
        "a final tool-calling turn is not a prefix"
    );
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
        Just(
            json!([{"type": "file", "file": {}}, {"type": "input_audio", "input_audio": {"data": "A", "format": "wav"}}])
        ),
    ];
    (
        role,
        content,
        proptest::option::of("[ -~]{0,20}"),
        any::<bool>(),
    )
        .prop_map(|(role, content, id, calls)| {
            let mut m = json!({"role": role, "content": content});
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
        choice in prop_oneof![Just(json!(null)), Just(json!("none")), Just(json!("required")),
            Just(json!({"type": "function", "function": {"name": "f"}})), Just(json!({"type": "x"}))],
        seed in proptest::option::of(any::<i64>()),
        drop in any::<bool>(),
    ) {
        let mut body = json!({"model": "m", "messages": messages, "drop_params": drop,
            "tools": [{"type": "function", "function": {"name": "f"}}]});
        if !choice.is_null() { body["tool_choice"] = choice; }
        if let Some(s) = seed { body["seed"] = json!(s); }
        if let Ok(req) = ChatRequest::from_json(&serde_json::to_vec(&body).unwrap()) {
            let _ = proto("m").chat_request(&req);
        }
    }

    #[test]
    fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), which in 0usize..3) {
        let req = chat(json!({"model": "g", "messages": []}));
        let base = [fixture("chat_tool_call.resp.json"), fixture("chat_text.resp.json"), b"{}".to_vec()];
        let mut body = base[which].clone();
        let at = body.len() / 2;
        body.splice(at..at, bytes.iter().copied());
        let _ = proto("m").parse_completion(&req, &body);
        let _ = proto("m").parse_completion(&req, &bytes);
        let e = EmbeddingRequest::from_json(br#"{"model":"e","input":"a"}"#).unwrap();
        let _ = proto("m").parse_embeddings(&e, &bytes);
        let _ = proto("m").map_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), &bytes);
    }
}
