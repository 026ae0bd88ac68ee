//! Fixture tests: every recorded sample in `tests/fixtures/protocols/gemini/`
//! through the translators, checked field by field.

use super::stream::StreamTranslator;
use super::*;
use crate::error::{ErrorKind, LimitSource};
use crate::provider::sse_stream::SseStreamDecoder;
use crate::types::{ChatChunk, EmbeddingVector, FinishReason, Role};
use serde_json::{Value, json};
use std::collections::VecDeque;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/protocols/gemini/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

const KEY: &str = "AIzaSy-test-upstream-key-0123456789";

fn gemini(model: &str) -> GeminiProtocol {
    GeminiProtocol::new(GeminiConfig::new(model).api_key(Secret::new(KEY))).unwrap()
}

fn vertex(model: &str) -> VertexProtocol {
    VertexProtocol::new(VertexConfig::new(
        model,
        "my-project",
        "us-central1",
        Arc::new(StaticToken(Secret::new("ya29.test"))),
    ))
    .unwrap()
}

fn chat(v: Value) -> ChatRequest {
    ChatRequest::from_json(v.to_string().as_bytes()).unwrap()
}

/// The JSON body Gemini would receive.
fn gemini_body(p: &GeminiProtocol, req: Value) -> Value {
    let http = p.chat_request(&chat(req)).unwrap();
    serde_json::from_slice(http.body()).unwrap()
}

fn vertex_body(p: &VertexProtocol, req: Value) -> Value {
    let mut req = chat(req);
    req.extensions
        .insert(vertex::BearerToken(Secret::new("ya29.test")));
    let http = p.chat_request(&req).unwrap();
    serde_json::from_slice(http.body()).unwrap()
}

fn err_of(p: &GeminiProtocol, req: Value) -> Error {
    p.chat_request(&chat(req)).unwrap_err()
}

// ---------------------------------------------------------------------------
// Requests: the OpenAI request written by hand must give the recorded body.

#[test]
fn request_generate_text() {
    let body = gemini_body(
        &gemini("gemini-2.5-flash"),
        json!({"model": "g", "modalities": ["text"], "messages": [
            {"role": "system", "content": "You are a chatbot."},
            {"role": "user", "content": "Hello!"}
        ]}),
    );
    assert_eq!(body, fixture_json("generate_text.req.json"));
}

#[test]
fn request_generate_max_tokens_with_native_thinking_config() {
    let body = gemini_body(
        &gemini("gemini-2.5-flash"),
        json!({"model": "g", "modalities": ["text"], "max_tokens": 5,
               "thinkingConfig": {"thinking_budget": 0},
               "messages": [
            {"role": "system", "content": "You are a helpful chatbot."},
            {"role": "user", "content": "What is the capital of France?"}
        ]}),
    );
    assert_eq!(body, fixture_json("generate_max_tokens.req.json"));
}

#[test]
fn request_safety_settings_pass_through() {
    let body = gemini_body(
        &gemini("gemini-1.5-flash"),
        json!({"model": "g",
               "safety_settings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_LOW_AND_ABOVE"}],
               "messages": [
            {"role": "system", "content": "You hate the world!"},
            {"role": "user", "content": "Tell me a joke about a Brazilians."}
        ]}),
    );
    assert_eq!(body, fixture_json("generate_safety_blocked.req.json"));
}

fn pydantic_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_user_country", "description": "",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": false}}},
        {"type": "function", "function": {"name": "final_result",
            "description": "The final response which ends this conversation",
            "parameters": {"type": "object", "additionalProperties": false,
                "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
                "required": ["city", "country"]}, "strict": true}}
    ])
}

fn allowed_both() -> Value {
    json!({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "get_user_country"}},
        {"type": "function", "function": {"name": "final_result"}}
    ]}})
}

#[test]
fn request_tools_with_allowed_tools_choice() {
    let body = gemini_body(
        &gemini("gemini-2.0-flash"),
        json!({"model": "g", "tools": pydantic_tools(), "tool_choice": allowed_both(),
               "messages": [{"role": "user", "content": "What is the largest city in the user country?"}]}),
    );
    assert_eq!(body, fixture_json("generate_tool_call.req.json"));
}

#[test]
fn request_tool_result_followup() {
    let body = gemini_body(
        &gemini("gemini-2.0-flash"),
        json!({"model": "g", "tools": pydantic_tools(), "tool_choice": allowed_both(),
               "messages": [
            {"role": "user", "content": "What is the largest city in the user country?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "pyd_ai_3fa5644dae1d4aad997ae39c70006fbd",
                "type": "function", "function": {"name": "get_user_country", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "pyd_ai_3fa5644dae1d4aad997ae39c70006fbd",
             "content": "{\"return_value\": \"Mexico\"}"}
        ]}),
    );
    assert_eq!(body, fixture_json("generate_tool_result_followup.req.json"));
}

#[test]
fn request_inline_image_keeps_url_safe_base64() {
    let recorded = fixture_json("generate_image_inline_input.req.json");
    let data = recorded["contents"][0]["parts"][1]["inlineData"]["data"]
        .as_str()
        .unwrap();
    assert!(
        data.contains('-') || data.contains('_'),
        "URL-safe alphabet"
    );
    let body = gemini_body(
        &gemini("gemini-2.0-flash"),
        json!({"model": "g", "messages": [
            {"role": "system", "content": "You are a helpful chatbot."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this vegetable?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/jpeg;base64,{data}"), "detail": "auto"}}
            ]}
        ]}),
    );
    assert_eq!(body, recorded);
}

#[test]
fn request_stream_text_and_plain_user_turns() {
    let p = gemini("gemini-2.0-flash-exp");
    let body = gemini_body(
        &p,
        json!({"model": "g", "stream": true, "temperature": 0.0, "messages": [
            {"role": "system", "content": "You are a helpful chatbot."},
            {"role": "user", "content": "What is the capital of France?"}
        ]}),
    );
    assert_eq!(body, fixture_json("stream_text.req.json"));
    for name in [
        "stream_usage_midstream.req.json",
        "error_404_model_not_found.req.json",
    ] {
        let recorded = fixture_json(name);
        let text = recorded["contents"][0]["parts"][0]["text"].clone();
        let body = gemini_body(
            &p,
            json!({"model": "g", "modalities": ["text"], "messages": [{"role": "user", "content": text}]}),
        );
        assert_eq!(body, recorded, "{name}");
    }
}

/// pydantic-ai sent its tools' full JSON Schema as `parameters_json_schema`;
/// tollgate sends Gemini's schema subset as `parameters` (module docs). Every
/// other field must match the recording exactly.
fn with_our_tool_declaration(mut recorded: Value) -> Value {
    recorded["tools"][0]["functionDeclarations"][0] = json!({
        "name": "get_country", "description": "",
        "parameters": {"type": "OBJECT", "properties": {}}
    });
    recorded
}

fn country_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_country", "description": "",
        "parameters": {"additionalProperties": false, "properties": {}, "type": "object"}}}])
}

#[test]
fn request_stream_tool_call() {
    let recorded = fixture_json("stream_tool_call.req.json");
    assert_eq!(
        recorded["tools"][0]["functionDeclarations"][0]["parameters_json_schema"],
        json!({"additionalProperties": false, "properties": {}, "type": "object"})
    );
    let body = gemini_body(
        &gemini("gemini-3-pro-preview"),
        json!({"model": "g", "stream": true, "modalities": ["text"], "tools": country_tool(),
               "messages": [{"role": "user", "content": "What is the capital of the user country? Call the tool"}]}),
    );
    assert_eq!(body, with_our_tool_declaration(recorded));
}

#[test]
fn request_followup_sends_the_thought_signature_back() {
    let recorded = fixture_json("stream_tool_result_followup.req.json");
    let signature = recorded["contents"][1]["parts"][0]["thoughtSignature"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = format!("pyd_ai_29bf73b69e02448588e15893d47a3e7e__thought__{signature}");
    let body = gemini_body(
        &gemini("gemini-3-pro-preview"),
        json!({"model": "g", "stream": true, "modalities": ["text"], "tools": country_tool(),
               "messages": [
            {"role": "user", "content": "What is the capital of the user country? Call the tool"},
            {"role": "assistant", "tool_calls": [{"id": id, "type": "function",
                "function": {"name": "get_country", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": id, "content": "{\"return_value\": \"Mexico\"}"}
        ]}),
    );
    assert_eq!(body, with_our_tool_declaration(recorded));
}

#[test]
fn request_vertex_text() {
    let body = vertex_body(
        &vertex("gemini-2.0-flash"),
        json!({"model": "g", "messages": [
            {"role": "system", "content": "You are a helpful chatbot."},
            {"role": "user", "content": "What is the capital of France?"}
        ]}),
    );
    assert_eq!(body, fixture_json("vertex_generate_text.req.json"));
}

/// Proto-JSON accepts snake_case and lowerCamelCase field names: the SDK that
/// recorded this sample wrote `file_uri`/`mime_type`, tollgate writes
/// `fileUri`/`mimeType`.
#[test]
fn request_vertex_passes_https_images_as_file_data() {
    let mut recorded = fixture_json("vertex_image_filedata_input.req.json");
    let fd = recorded["contents"][0]["parts"][1]["fileData"].take();
    recorded["contents"][0]["parts"][1]["fileData"] =
        json!({"fileUri": fd["file_uri"], "mimeType": fd["mime_type"]});
    let body = vertex_body(
        &vertex("gemini-2.0-flash"),
        json!({"model": "g", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is the main content of this URL?"},
            {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/wikipedia/commons/6/6a/Www.wikipedia_screenshot_%282021%29.png"}}
        ]}]}),
    );
    assert_eq!(body, recorded);
}

#[test]
fn request_openai_compat_fixture_translates_natively() {
    // The request pydantic-ai sent to Google's OpenAI-compatible surface, as a
    // client would send it to tollgate.
    let req: Value = fixture_json("openai_compat_tool_call_empty_id.req.json");
    let body = gemini_body(&gemini("gemini-2.5-pro-preview-05-06"), req);
    assert_eq!(
        body,
        json!({
            "contents": [{"role": "user", "parts": [{"text": "What is the current time?"}]}],
            "tools": [{"functionDeclarations": [{"name": "get_current_time",
                "description": "Get the current time.",
                "parameters": {"type": "OBJECT", "properties": {}}}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
            "generationConfig": {}
        })
    );
}

#[test]
fn embeddings_request_fixtures() {
    let p = gemini("gemini-embedding-2-preview");
    let req = crate::EmbeddingRequest::from_json(
        br#"{"model":"e","input":"Hello, world!","task_type":"RETRIEVAL_QUERY"}"#,
    )
    .unwrap();
    let http = p.embedding_request(&req).unwrap();
    assert_eq!(
        http.uri(),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-2-preview:batchEmbedContents"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(http.body()).unwrap(),
        fixture_json("embed_batch.req.json")
    );
    let p = gemini("nonexistent-model");
    let req = crate::EmbeddingRequest::from_json(
        br#"{"model":"e","input":["Hello, world!"],"taskType":"RETRIEVAL_QUERY"}"#,
    )
    .unwrap();
    let http = p.embedding_request(&req).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(http.body()).unwrap(),
        fixture_json("embed_error_404.req.json")
    );
    let tokens = crate::EmbeddingRequest::from_json(br#"{"model":"e","input":[1,2,3]}"#).unwrap();
    assert_eq!(
        p.embedding_request(&tokens).unwrap_err().param(),
        Some("input")
    );
}

// ---------------------------------------------------------------------------
// More request mapping.

#[test]
fn urls_headers_and_model_names() {
    let p = gemini("gemini-2.5-flash");
    let req = chat(json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]}));
    let http = p.chat_request(&req).unwrap();
    assert_eq!(
        http.uri(),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(http.headers()["x-goog-api-key"], KEY);
    assert!(http.headers()["x-goog-api-key"].is_sensitive());
    assert!(http.headers().get("authorization").is_none());
    assert!(!http.uri().to_string().contains("key="));
    let stream = chat(
        json!({"model": "g", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    );
    let http = p.chat_request(&stream).unwrap();
    assert_eq!(
        http.uri(),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    // A model name cannot change the path, add a query or a fragment.
    let p = gemini("../../v1/files?x=1#y/z");
    let http = p.chat_request(&req).unwrap();
    assert_eq!(
        http.uri().path(),
        "/v1beta/models/..%2F..%2Fv1%2Ffiles%3Fx%3D1%23y%2Fz:generateContent"
    );
    assert_eq!(http.uri().query(), None);
    assert!(GeminiProtocol::new(GeminiConfig::new("..")).is_err());
    assert!(GeminiProtocol::new(GeminiConfig::new("")).is_err());
    // `models/` is accepted and not doubled; a base without a path gets /v1beta.
    let p = GeminiProtocol::new(
        GeminiConfig::new("models/gemini-pro").api_base("http://127.0.0.1:8080/"),
    )
    .unwrap();
    assert_eq!(
        p.chat_request(&req).unwrap().uri(),
        "http://127.0.0.1:8080/v1beta/models/gemini-pro:generateContent"
    );
    let p = GeminiProtocol::new(
        GeminiConfig::new("m").api_base("https://gw.example/v1/acct/google-ai-studio/v1beta"),
    )
    .unwrap();
    assert_eq!(
        p.chat_request(&req).unwrap().uri(),
        "https://gw.example/v1/acct/google-ai-studio/v1beta/models/m:generateContent"
    );
    assert!(GeminiProtocol::new(GeminiConfig::new("m").api_base("file:///etc")).is_err());
}

#[test]
fn vertex_urls() {
    let tokens: Arc<dyn TokenSource> = Arc::new(StaticToken(Secret::new("t")));
    let v = VertexProtocol::new(VertexConfig::new(
        "gemini-2.5-pro",
        "my-project",
        "europe-west4",
        tokens.clone(),
    ))
    .unwrap();
    assert_eq!(
        v.generate_uri(),
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-project/locations/europe-west4/publishers/google/models/gemini-2.5-pro:generateContent"
    );
    assert_eq!(
        v.stream_uri(),
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-project/locations/europe-west4/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    );
    let v = VertexProtocol::new(VertexConfig::new(
        "gemini-2.5-pro",
        "p",
        "global",
        tokens.clone(),
    ))
    .unwrap();
    assert_eq!(
        v.generate_uri(),
        "https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/google/models/gemini-2.5-pro:generateContent"
    );
    let mut cfg = VertexConfig::new("gemini-2.5-pro", "p", "us-central1", tokens.clone());
    cfg.api_base =
        Some("https://gw.example/v1/projects/p/locations/l/publishers/google/models/x/".into());
    let v = VertexProtocol::new(cfg).unwrap();
    assert_eq!(
        v.stream_uri(),
        "https://gw.example/v1/projects/p/locations/l/publishers/google/models/x:streamGenerateContent?alt=sse"
    );
    for bad_location in ["us-central1.evil.com/", "US", ""] {
        let cfg = VertexConfig::new("m", "p", bad_location, tokens.clone());
        assert!(VertexProtocol::new(cfg).is_err(), "{bad_location}");
    }
    let mut cfg = VertexConfig::new("m", "p", "us-central1", tokens.clone());
    cfg.project = None;
    assert!(VertexProtocol::new(cfg).is_err());
    let v = VertexProtocol::new(VertexConfig::new("m/../x", "p q", "us-central1", tokens)).unwrap();
    assert_eq!(
        v.generate_uri().path(),
        "/v1/projects/p%20q/locations/us-central1/publishers/google/models/m%2F..%2Fx:generateContent"
    );
}

#[test]
fn vertex_omits_call_ids_and_gets_a_bearer_token() {
    let v = vertex("gemini-2.0-flash");
    let msgs = json!([
        {"role": "user", "content": "q"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"}
    ]);
    let body = vertex_body(
        &v,
        json!({"model": "g", "messages": msgs, "labels": {"team": "a"}}),
    );
    assert_eq!(
        body["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]})
    );
    assert_eq!(
        body["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"result": "ok"}}}]})
    );
    assert_eq!(body["labels"], json!({"team": "a"}));
    let mut req = chat(json!({"model": "g", "messages": [{"role": "user", "content": "q"}]}));
    assert_eq!(
        v.chat_request(&req).unwrap_err().kind(),
        ErrorKind::Internal
    );
    req.extensions
        .insert(vertex::BearerToken(Secret::new("ya29.abc")));
    let http = v.chat_request(&req).unwrap();
    assert_eq!(http.headers()["authorization"], "Bearer ya29.abc");
    assert!(http.headers()["authorization"].is_sensitive());
    // Gemini API bodies never carry labels.
    let body = gemini_body(
        &gemini("m"),
        json!({"model": "g", "messages": [{"role": "user", "content": "q"}], "labels": {"team": "a"}}),
    );
    assert!(body.get("labels").is_none());
}

#[test]
fn conversation_shape_system_merging_and_tool_results() {
    let body = gemini_body(
        &gemini("gemini-2.5-flash"),
        json!({"model": "g", "messages": [
            {"role": "developer", "content": "Rule one."},
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "system", "content": [{"type": "text", "text": "Rule two."}]},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
            {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "{\"temp\": -3}"}]},
            {"role": "assistant", "content": "Cold."},
            {"role": "assistant", "content": "Very."}
        ]}),
    );
    assert_eq!(
        body,
        json!({
            "systemInstruction": {"role": "user", "parts": [{"text": "Rule one."}, {"text": "Rule two."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
                {"role": "model", "parts": [
                    {"text": "Let me check."},
                    {"functionCall": {"id": "call_a", "name": "weather", "args": {"city": "Oslo"}}},
                    {"functionCall": {"id": "call_b", "name": "time", "args": {}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"id": "call_a", "name": "weather", "response": {"temp": -3}}},
                    {"functionResponse": {"id": "call_b", "name": "time", "response": {"result": "12:00"}}}
                ]},
                {"role": "model", "parts": [{"text": "Cold."}, {"text": "Very."}]}
            ],
            "generationConfig": {}
        })
    );
}

#[test]
fn gemini3_gets_a_signature_for_foreign_tool_calls() {
    let body = gemini_body(
        &gemini("gemini-3-pro-preview"),
        json!({"model": "g", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "1"},
            {"role": "tool", "tool_call_id": "call_2", "content": "2"}
        ]}),
    );
    let parts = &body["contents"][1]["parts"];
    assert_eq!(
        parts[0]["thoughtSignature"],
        "skip_thought_signature_validator"
    );
    assert!(parts[1].get("thoughtSignature").is_none());
}

#[test]
fn generation_config_mapping() {
    let body = gemini_body(
        &gemini("gemini-2.5-flash"),
        json!({"model": "g", "messages": [{"role": "user", "content": "q"}],
               "temperature": 0.2, "top_p": 0.9, "top_k": 40, "max_completion_tokens": 512,
               "max_tokens": 9, "stop": ["END", "STOP"], "n": 2, "seed": 7,
               "presence_penalty": 0.5, "frequency_penalty": -0.5,
               "logprobs": true, "top_logprobs": 3, "reasoning_effort": "low",
               "user": "u-1", "parallel_tool_calls": true,
               "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": true,
                   "schema": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false}}},
               "cached_content": "cachedContents/abc"}),
    );
    assert_eq!(
        body["generationConfig"],
        json!({
            "temperature": 0.2, "topP": 0.9, "topK": 40, "maxOutputTokens": 512,
            "stopSequences": ["END", "STOP"], "candidateCount": 2, "seed": 7,
            "presencePenalty": 0.5, "frequencyPenalty": -0.5,
            "responseLogprobs": true, "logprobs": 3,
            "responseMimeType": "application/json",
            "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}, "required": ["a"]},
            "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}
        })
    );
    assert_eq!(body["cachedContent"], "cachedContents/abc");
    assert!(body.get("user").is_none());
    let cfg = |extra: Value| {
        let mut req = json!({"model": "g", "messages": [{"role": "user", "content": "q"}]});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        gemini_body(&gemini("gemini-2.5-flash"), req)["generationConfig"].clone()
    };
    assert_eq!(cfg(json!({"stop": "X"})), json!({"stopSequences": ["X"]}));
    assert_eq!(
        cfg(json!({"response_format": {"type": "json_object"}})),
        json!({"responseMimeType": "application/json"})
    );
    assert_eq!(cfg(json!({"response_format": {"type": "text"}})), json!({}));
    assert_eq!(
        cfg(json!({"reasoning_effort": "none"})),
        json!({"thinkingConfig": {"thinkingBudget": 0}})
    );
    assert_eq!(
        cfg(json!({"reasoning_effort": "high"})),
        json!({"thinkingConfig": {"thinkingBudget": 4096, "includeThoughts": true}})
    );
    assert_eq!(
        cfg(json!({"thinking": {"type": "enabled", "budget_tokens": 2000}})),
        json!({"thinkingConfig": {"thinkingBudget": 2000, "includeThoughts": true}})
    );
    assert_eq!(
        cfg(json!({"thinking": {"type": "disabled"}, "reasoning_effort": "high"})),
        json!({"thinkingConfig": {"thinkingBudget": 0}})
    );
    assert_eq!(
        cfg(
            json!({"temperature": 1.0, "generationConfig": {"temperature": 0.1, "mediaResolution": "MEDIA_RESOLUTION_LOW"}})
        ),
        json!({"temperature": 0.1, "mediaResolution": "MEDIA_RESOLUTION_LOW"})
    );
    let g3 = gemini_body(
        &gemini("gemini-3-pro-preview"),
        json!({"model": "g", "messages": [{"role": "user", "content": "q"}], "reasoning_effort": "medium"}),
    );
    assert_eq!(
        g3["generationConfig"]["thinkingConfig"],
        json!({"thinkingLevel": "high", "includeThoughts": true})
    );
}

#[test]
fn tool_choice_mapping_and_native_tools() {
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},
                       {"type": "function", "function": {"name": "g"}}]);
    let run = |choice: Value| {
        gemini_body(
            &gemini("m"),
            json!({"model": "x", "messages": [{"role": "user", "content": "q"}], "tools": tools, "tool_choice": choice}),
        )
    };
    assert_eq!(
        run(json!("auto"))["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );
    assert_eq!(
        run(json!("none"))["toolConfig"],
        json!({"functionCallingConfig": {"mode": "NONE"}})
    );
    assert_eq!(
        run(json!("required"))["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
    assert_eq!(
        run(json!({"type": "function", "function": {"name": "g"}}))["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["g"]}})
    );
    let auto_allowed = run(
        json!({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "g"}}]}}),
    );
    assert_eq!(
        auto_allowed["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );
    assert_eq!(
        auto_allowed["tools"],
        json!([{"functionDeclarations": [{"name": "g"}]}])
    );
    let body = gemini_body(
        &gemini("m"),
        json!({"model": "x", "messages": [{"role": "user", "content": "q"}],
               "tools": [{"googleSearch": {}}], "web_search_options": {},
               "tool_config": {"functionCallingConfig": {"mode": "ANY"}}}),
    );
    assert_eq!(body["tools"], json!([{"googleSearch": {}}]));
    assert_eq!(
        body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
    let body = gemini_body(
        &gemini("m"),
        json!({"model": "x", "messages": [{"role": "user", "content": "q"}], "web_search_options": {}}),
    );
    assert_eq!(body["tools"], json!([{"googleSearch": {}}]));
    // Legacy functions.
    let body = gemini_body(
        &gemini("m"),
        json!({"model": "x", "messages": [{"role": "user", "content": "q"}],
               "functions": [{"name": "f"}], "function_call": {"name": "f"}}),
    );
    assert_eq!(
        body["tools"],
        json!([{"functionDeclarations": [{"name": "f"}]}])
    );
    assert_eq!(
        body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}})
    );
}

#[test]
fn bad_requests_are_clear_400s() {
    let p = gemini("m");
    let e = err_of(
        &p,
        json!({"model": "x", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}),
    );
    assert_eq!(e.kind(), ErrorKind::BadRequest);
    assert!(e.message().contains("data URL"), "{}", e.message());
    assert!(e.message().contains("fetch_image_urls"), "{}", e.message());
    let e = err_of(
        &p,
        json!({"model": "x", "messages": [{"role": "user", "content": "q"}], "logit_bias": {"1": 1}}),
    );
    assert_eq!(e.kind(), ErrorKind::UnsupportedParams);
    assert_eq!(e.param(), Some("logit_bias"));
    let ok = gemini_body(
        &p,
        json!({"model": "x", "messages": [{"role": "user", "content": "q"}], "logit_bias": {"1": 1}, "drop_params": true}),
    );
    assert!(ok.get("logit_bias").is_none());
    let e = err_of(
        &p,
        json!({"model": "x", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}),
    );
    assert!(e.message().contains("JSON object"), "{}", e.message());
    let e = err_of(
        &p,
        json!({"model": "x", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}),
    );
    assert!(e.message().contains("not valid JSON"), "{}", e.message());
    let e = err_of(
        &p,
        json!({"model": "x", "messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}),
    );
    assert!(e.message().contains("does not match"), "{}", e.message());
    let e = err_of(
        &p,
        json!({"model": "x", "messages": [{"role": "user", "content": "q"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/A"}}}}}]}),
    );
    assert_eq!(e.param(), Some("tools"));
    let e = err_of(
        &p,
        json!({"model": "x", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}]}]}),
    );
    assert!(e.message().contains("base64"), "{}", e.message());
    let e = err_of(
        &p,
        json!({"model": "x", "messages": [{"role": "user", "content": "q"}], "reasoning_effort": "extreme"}),
    );
    assert_eq!(e.param(), Some("reasoning_effort"));
}

#[test]
fn other_media_parts() {
    let body = gemini_body(
        &gemini("m"),
        json!({"model": "x", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}},
            {"type": "file", "file": {"file_id": "gs://bucket/doc.pdf"}},
            {"type": "image_url", "image_url": {"url": "gs://bucket/cat.webp"}},
            {"type": "image_url", "image_url": {"url": "https://generativelanguage.googleapis.com/v1beta/files/abc", "format": "image/png"}}
        ]}]}),
    );
    assert_eq!(
        body["contents"][0]["parts"],
        json!([
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
            {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/doc.pdf"}},
            {"fileData": {"mimeType": "image/webp", "fileUri": "gs://bucket/cat.webp"}},
            {"fileData": {"mimeType": "image/png", "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}}
        ])
    );
}

#[test]
fn deployment_defaults_apply_under_request_values() {
    let mut cfg = GeminiConfig::new("m");
    cfg.params.insert("temperature", &0.3).unwrap();
    cfg.params.insert("top_k", &5).unwrap();
    cfg.params
        .insert(
            "safety_settings",
            &json!([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]),
        )
        .unwrap();
    let p = GeminiProtocol::new(cfg).unwrap();
    let body = gemini_body(
        &p,
        json!({"model": "x", "messages": [{"role": "user", "content": "q"}], "top_k": 9}),
    );
    assert_eq!(
        body["generationConfig"],
        json!({"temperature": 0.3, "topK": 9})
    );
    assert_eq!(body["safetySettings"][0]["threshold"], "BLOCK_NONE");
    let body = gemini_body(
        &p,
        json!({"model": "x", "messages": [{"role": "user", "content": "q"}], "temperature": 1.5}),
    );
    assert_eq!(body["generationConfig"]["temperature"], 1.5);
    // An unsupported default fails at build time unless dropped.
    let mut cfg = GeminiConfig::new("m");
    cfg.params.insert("logit_bias", &json!({"1": 2})).unwrap();
    assert_eq!(
        GeminiProtocol::new(cfg.clone()).unwrap_err().kind(),
        ErrorKind::UnsupportedParams
    );
    cfg.drop.drop = true;
    let p = GeminiProtocol::new(cfg).unwrap();
    assert!(
        gemini_body(
            &p,
            json!({"model": "x", "messages": [{"role": "user", "content": "q"}]})
        )
        .get("logit_bias")
        .is_none()
    );
}

// ---------------------------------------------------------------------------
// Responses.

fn parse(name: &str) -> ChatCompletion {
    gemini("configured-model")
        .parse_completion(&chat(json!({"model": "g", "messages": []})), &fixture(name))
        .unwrap()
}

#[test]
fn response_generate_text_with_thinking_usage() {
    let c = parse("generate_text.resp.json");
    assert_eq!(c.id, "bzlXaa_EE_aHqtsPi_zw8Ao");
    assert_eq!(c.model, "gemini-2.5-flash");
    assert_eq!(c.object, "chat.completion");
    assert!(c.created > 1_700_000_000);
    assert_eq!(c.choices.len(), 1);
    let ch = &c.choices[0];
    assert_eq!(ch.index, 0);
    assert_eq!(ch.message.role, Role::Assistant);
    assert_eq!(
        ch.message.content.as_deref(),
        Some("Hello! How can I help you today?")
    );
    assert_eq!(ch.message.tool_calls, None);
    assert_eq!(ch.message.reasoning_content, None);
    assert_eq!(ch.finish_reason, Some(FinishReason::Stop));
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (9, 43, 52)
    );
    assert_eq!(u.reasoning_tokens(), 34);
    assert_eq!(u.cached_tokens(), 0);
}

#[test]
fn response_max_tokens_is_length() {
    let c = parse("generate_max_tokens.resp.json");
    assert_eq!(c.id, "R5MoavWNNp_8qtsP2fWD2A0");
    assert_eq!(
        c.choices[0].message.content.as_deref(),
        Some("The capital of France is")
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Length));
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (15, 5, 20)
    );
    assert_eq!(u.reasoning_tokens(), 0);
}

#[test]
fn response_safety_stops_are_content_filter() {
    let c = parse("generate_safety_blocked.resp.json");
    assert_eq!(c.model, "gemini-1.5-flash");
    assert_eq!(c.choices.len(), 1);
    assert_eq!(c.choices[0].message.content.as_deref(), Some(""));
    assert_eq!(
        c.choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (14, 0, 14)
    );

    let c = parse("generate_finish_safety.resp.json");
    assert_eq!(c.model, "configured-model");
    assert_eq!(c.choices[0].message.content.as_deref(), Some("No"));
    assert_eq!(
        c.choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );
    assert_eq!(c.usage, None);

    let c = parse("generate_prompt_blocked.resp.json");
    assert_eq!(c.choices.len(), 1);
    assert_eq!(c.choices[0].index, 0);
    assert_eq!(c.choices[0].message.content.as_deref(), Some(""));
    assert_eq!(
        c.choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );
    assert!(c.id.starts_with("chatcmpl-"));
}

#[test]
fn response_citations_are_kept() {
    let c = parse("generate_citations.resp.json");
    let text = c.choices[0].message.content.as_deref().unwrap();
    assert!(text.starts_with("1. **Definition:**\nQuantum mechanics is a fundamental theory"));
    assert!(text.ends_with("[NOVA: The Fabric of the Cosmos](https://www.example.com)"));
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    let cites: Value =
        serde_json::from_str(c.extra.get("vertex_ai_citation_metadata").unwrap().get()).unwrap();
    assert_eq!(
        cites,
        json!([{"citationSources": [{"startIndex": 574, "endIndex": 705, "uri": "https://www.example.com", "license": ""}]}])
    );
}

#[test]
fn response_tool_calls() {
    let c = parse("generate_tool_call.resp.json");
    assert_eq!(c.id, "LlteaIDvD9m7nvgPz5Sb0Aw");
    assert_eq!(c.model, "gemini-2.0-flash");
    let ch = &c.choices[0];
    assert_eq!(ch.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(ch.message.content, None);
    let calls = ch.message.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].id.starts_with("call_") && calls[0].id.len() == 29,
        "{}",
        calls[0].id
    );
    assert_eq!(calls[0].kind, "function");
    assert_eq!(calls[0].function.name, "get_user_country");
    assert_eq!(calls[0].function.arguments, "{}");
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (33, 5, 38)
    );

    let c = parse("generate_tool_result_followup.resp.json");
    let calls = c.choices[0].message.tool_calls.as_ref().unwrap();
    assert_eq!(calls[0].function.name, "final_result");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].function.arguments).unwrap(),
        json!({"city": "Mexico City", "country": "Mexico"})
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (47, 8, 55)
    );
}

#[test]
fn response_image_and_vertex_answers() {
    let c = parse("generate_image_inline_input.resp.json");
    assert_eq!(c.id, "64fNaIPHJNulqtsPx8OZsQQ");
    assert_eq!(
        c.choices[0].message.content.as_deref(),
        Some("That is a potato.")
    );
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (1817, 5, 1822)
    );

    let v = vertex("gemini-2.0-flash");
    let req = chat(json!({"model": "g", "messages": []}));
    let c = v
        .parse_completion(&req, &fixture("vertex_generate_text.resp.json"))
        .unwrap();
    assert_eq!(c.id, "1VpeaKq4CfH_2PgPh_z--AY");
    assert_eq!(c.model, "gemini-2.0-flash");
    assert_eq!(c.choices[0].index, 0);
    assert_eq!(
        c.choices[0].message.content.as_deref(),
        Some("The capital of France is Paris.\n")
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (13, 8, 21)
    );

    let c = v
        .parse_completion(&req, &fixture("vertex_image_filedata_input.resp.json"))
        .unwrap();
    assert_eq!(c.id, "AXQ7aPy0L-PPnvgPkLyl8Qg");
    assert_eq!(
        c.choices[0].message.content.as_deref(),
        Some(
            "The URL's main content is the landing page of Wikipedia, showcasing the available language editions with article counts, a search bar, and links to other Wikimedia projects."
        )
    );
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (2589, 33, 2622)
    );
}

#[test]
fn response_openai_compat_fixture_shows_the_empty_id_pitfall() {
    // Google's OpenAI-compatible surface answered with `"id": ""`; tollgate
    // speaks the native API and always gives tool calls an id.
    let compat: ChatCompletion =
        serde_json::from_slice(&fixture("openai_compat_tool_call_empty_id.resp.json")).unwrap();
    let calls = compat.choices[0].message.tool_calls.as_ref().unwrap();
    assert_eq!(calls[0].id, "");
    assert_eq!(calls[0].function.name, "get_current_time");
    let native = json!({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "get_current_time", "args": {}}, "thoughtSignature": "AVSoXO4A"}]},
        "finishReason": "STOP"}]});
    let c = parse_completion(native.to_string().as_bytes(), "gemini-2.5-pro").unwrap();
    let id = &c.choices[0].message.tool_calls.as_ref().unwrap()[0].id;
    assert!(
        id.starts_with("call_") && id.ends_with("__thought__AVSoXO4A"),
        "{id}"
    );
}

#[test]
fn response_thoughts_logprobs_candidates_and_cache() {
    let resp = json!({
        "responseId": "r1", "modelVersion": "gemini-2.5-pro",
        "candidates": [
            {"index": 1, "finishReason": "STOP", "content": {"role": "model", "parts": [{"text": "B"}]}},
            {"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
                {"text": "Let me think.", "thought": true}, {"text": "A"}, {"text": "!"}]},
             "logprobsResult": {"chosenCandidates": [{"token": "A", "logProbability": -0.5}],
                                "topCandidates": [{"candidates": [{"token": "A", "logProbability": -0.5}, {"token": "B", "logProbability": -1.5}]}]}}
        ],
        "usageMetadata": {"promptTokenCount": 100, "cachedContentTokenCount": 60, "candidatesTokenCount": 4,
                          "thoughtsTokenCount": 10, "toolUsePromptTokenCount": 5, "totalTokenCount": 119,
                          "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 7}]}
    });
    let c = parse_completion(resp.to_string().as_bytes(), "m").unwrap();
    assert_eq!(c.choices.len(), 2);
    assert_eq!(c.choices[0].index, 0);
    assert_eq!(c.choices[0].message.content.as_deref(), Some("A!"));
    assert_eq!(
        c.choices[0].message.reasoning_content.as_deref(),
        Some("Let me think.")
    );
    assert_eq!(
        c.choices[0].logprobs,
        Some(
            json!({"content": [{"token": "A", "logprob": -0.5, "bytes": [65], "top_logprobs": [
            {"token": "A", "logprob": -0.5, "bytes": [65]}, {"token": "B", "logprob": -1.5, "bytes": [66]}]}]})
        )
    );
    assert_eq!(c.choices[1].message.content.as_deref(), Some("B"));
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (105, 14, 119)
    );
    assert_eq!(u.cached_tokens(), 60);
    assert_eq!(u.reasoning_tokens(), 10);
    assert_eq!(u.prompt_tokens_details.unwrap().audio_tokens, Some(7));

    let bad = json!({"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL", "finishMessage": "Malformed function call: print(x"}]});
    let e = parse_completion(bad.to_string().as_bytes(), "m").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadGateway);
    assert_eq!(e.code(), Some("MALFORMED_FUNCTION_CALL"));
    assert!(e.message().contains("print(x"));
    let e = parse_completion(b"<html>", "m").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadGateway);
}

#[test]
fn embeddings_response_fixture_float_and_base64() {
    let p = gemini("gemini-embedding-2-preview");
    let req =
        crate::EmbeddingRequest::from_json(br#"{"model":"e","input":"Hello, world!"}"#).unwrap();
    let r = p
        .parse_embeddings(&req, &fixture("embed_batch.resp.json"))
        .unwrap();
    assert_eq!(r.object, "list");
    assert_eq!(r.model, "gemini-embedding-2-preview");
    assert_eq!(r.data.len(), 1);
    assert_eq!(r.data[0].index, 0);
    let EmbeddingVector::Float(v) = &r.data[0].embedding else {
        panic!("floats expected")
    };
    assert_eq!(v.len(), 3072);
    assert_eq!(v[0], -0.022495363);
    assert_eq!(v[1], 0.004016586);
    assert_eq!(r.usage.as_ref().unwrap().prompt_tokens, 4);
    let req = crate::EmbeddingRequest::from_json(
        br#"{"model":"e","input":"Hello, world!","encoding_format":"base64"}"#,
    )
    .unwrap();
    let r = p
        .parse_embeddings(&req, &fixture("embed_batch.resp.json"))
        .unwrap();
    let EmbeddingVector::Base64(b) = &r.data[0].embedding else {
        panic!("base64 expected")
    };
    let floats = EmbeddingVector::Base64(b.clone()).to_floats().unwrap();
    assert_eq!(floats.len(), 3072);
    assert_eq!(floats[0] as f32, -0.022495363f32);
    // A count mismatch is the upstream's fault.
    let two = crate::EmbeddingRequest::from_json(br#"{"model":"e","input":["a","b"]}"#).unwrap();
    assert_eq!(
        p.parse_embeddings(&two, &fixture("embed_batch.resp.json"))
            .unwrap_err()
            .kind(),
        ErrorKind::BadGateway
    );
}

#[test]
fn vertex_embeddings_predict() {
    let v = vertex("text-embedding-005");
    let mut req = crate::EmbeddingRequest::from_json(
        br#"{"model":"e","input":["a","bb"],"dimensions":256,"task_type":"RETRIEVAL_DOCUMENT"}"#,
    )
    .unwrap();
    req.extensions
        .insert(vertex::BearerToken(Secret::new("ya29.t")));
    let http = v.embedding_request(&req).unwrap();
    assert_eq!(
        http.uri(),
        "https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/locations/us-central1/publishers/google/models/text-embedding-005:predict"
    );
    assert_eq!(http.headers()["authorization"], "Bearer ya29.t");
    assert_eq!(
        serde_json::from_slice::<Value>(http.body()).unwrap(),
        json!({"instances": [{"content": "a", "task_type": "RETRIEVAL_DOCUMENT"}, {"content": "bb", "task_type": "RETRIEVAL_DOCUMENT"}],
               "parameters": {"outputDimensionality": 256}})
    );
    let answer = json!({"predictions": [
        {"embeddings": {"values": [0.5, -0.25], "statistics": {"token_count": 1, "truncated": false}}},
        {"embeddings": {"values": [1.0, 0.0], "statistics": {"token_count": 2, "truncated": false}}}]});
    let r = v
        .parse_embeddings(&req, answer.to_string().as_bytes())
        .unwrap();
    assert_eq!(r.data[1].index, 1);
    assert_eq!(r.data[1].embedding, EmbeddingVector::Float(vec![1.0, 0.0]));
    assert_eq!(r.usage.unwrap().prompt_tokens, 3);
}

// ---------------------------------------------------------------------------
// Streams.

fn decode(bytes: &[u8], cuts: &[usize]) -> (Vec<ChatChunk>, Result<(), Error>) {
    let req = chat(
        json!({"model": "g", "messages": [{"role": "user", "content": "What is the capital of France?"}]}),
    );
    let mut d = SseStreamDecoder::new(StreamTranslator::new(
        "configured-model",
        req.shared_body().clone(),
        vec![],
    ));
    let mut out = VecDeque::new();
    let mut start = 0;
    let mut result = Ok(());
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let cut = cut.clamp(start, bytes.len());
        if let Err(e) = d.feed(&bytes[start..cut], &mut out) {
            result = Err(e);
            break;
        }
        start = cut;
    }
    if result.is_ok() {
        result = d.finish(&mut out);
    }
    (out.into_iter().collect(), result)
}

/// A chunk sequence with generated ids (completion and call ids) masked, for
/// comparing decodings.
fn transcript(chunks: &[ChatChunk]) -> Vec<Value> {
    chunks
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).unwrap();
            v["created"] = json!(0);
            if c.id.starts_with("chatcmpl-") {
                v["id"] = json!("chatcmpl-*");
            }
            for ch in v["choices"].as_array_mut().into_iter().flatten() {
                let Some(calls) = ch
                    .pointer_mut("/delta/tool_calls")
                    .and_then(Value::as_array_mut)
                else {
                    continue;
                };
                for call in calls {
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        let sig = id.split_once("__thought__").map(|(_, s)| s.to_owned());
                        call["id"] = json!(format!(
                            "call_*{}",
                            sig.map(|s| format!("__thought__{s}")).unwrap_or_default()
                        ));
                    }
                }
            }
            v
        })
        .collect()
}

const STREAMS: &[&str] = &[
    "stream_text.sse.txt",
    "stream_tool_call.sse.txt",
    "stream_tool_result_followup.sse.txt",
    "stream_usage_midstream.sse.txt",
    "stream_function_call_sdk_mock.sse.txt",
];

fn content_of(chunks: &[ChatChunk]) -> String {
    chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect()
}

fn same_envelope(chunks: &[ChatChunk], id: &str, model: &str) {
    let created = chunks[0].created;
    for c in chunks {
        assert_eq!(c.id, id);
        assert_eq!(c.model, model);
        assert_eq!(c.created, created);
        assert_eq!(c.object, "chat.completion.chunk");
    }
}

#[test]
fn stream_text_fixture() {
    let (chunks, r) = decode(&fixture("stream_text.sse.txt"), &[]);
    r.unwrap();
    same_envelope(&chunks, "w1peaMz6INOvnvgPgYfPiQY", "gemini-2.0-flash-exp");
    assert_eq!(chunks.len(), 5);
    assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
    assert_eq!(chunks[0].choices[0].delta.content.as_deref(), Some("The"));
    assert_eq!(chunks[1].choices[0].delta.role, None);
    assert_eq!(
        chunks[1].choices[0].delta.content.as_deref(),
        Some(" capital of France")
    );
    assert_eq!(
        chunks[2].choices[0].delta.content.as_deref(),
        Some(" is Paris.\n")
    );
    assert_eq!(chunks[3].choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(chunks[3].choices[0].delta, crate::types::Delta::default());
    assert!(chunks[4].is_usage_only());
    let u = chunks[4].usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (13, 8, 21)
    );
}

#[test]
fn stream_tool_call_fixture() {
    let (chunks, r) = decode(&fixture("stream_tool_call.sse.txt"), &[]);
    r.unwrap();
    same_envelope(&chunks, "QUVVadTSNJ6_qtsPvN7J8Q0", "gemini-3-pro-preview");
    assert_eq!(chunks.len(), 4);
    let first = &chunks[0].choices[0];
    assert_eq!(first.delta.role, Some(Role::Assistant));
    let start = &first.delta.tool_calls.as_ref().unwrap()[0];
    assert_eq!(start.index, 0);
    assert_eq!(start.kind.as_deref(), Some("function"));
    let f = start.function.as_ref().unwrap();
    assert_eq!(f.name.as_deref(), Some("get_country"));
    assert_eq!(f.arguments.as_deref(), Some(""));
    let id = start.id.as_deref().unwrap();
    assert!(id.starts_with("call_"));
    assert!(id.ends_with("__thought__EpwICpkIAXLI2nxlU6gsWZaZHRYkX1orzuM8vSUFwaAt1JRxEC2hJzPAcAu3PWaKz7X+PIyTTqF+ZIQPF+fQzkaRCbrxB0Qrem/xwR4S46oFxYiOF7EVa6pCBb9iu2uvCKrv5b7ezGzYqLD9glcNsLL3rA5OIsft4ec4qTT8NGd2SDdHB6WKrJ/K3rQHxoDQnB9JpnVTbtsaJoMWdFpnJcd7P7yxfdfgzO0aS6rGp+ch2yiKxsdQGan4QCdA0vCjfDcCBaxAuAVVaVSc6C7fioR1po2xPtQR/GJHzJuHKahKxN/X31DwhImJgP0WbFFCzZ8oLULvhSq3WDjEKmuSx5orPFDSud6Nr8ZN8UOn6GBkqQq3IKLdsdennT9L4HrABm3S7fpMyiuWPFhGFHPu3NAuny1UCgttcYp70Wk1tA+JefyvIHDlbrIJw+8NdDlsa0lBGEKmciCOT/b6+oZzsEQoMLzkp0R/3C/GVAIo2Jn7rYjfS9e9Kl+O2b3M0pcKW62qyjCa5oQJ/AmelBLKArd1UGJxs0YVWkoEfQnycE5lePgpATDMsYmGcHPSeiLxLq55tUPJ+xr1sHqSf87qm3Um2aNabuE+ti16GPeeWHWdQnDpEkr6sQma3BzaOeDq9n94Nrxxg/Fu2ZTFK+O2khOa3v48dDh+OVeaFKUFTL9A4ZIooRD94sEztEOvIlNexbNRWcc3MBf/bMUaJnx53Qj1p0N2FlJGBZlDmCRbiBXDM8umKyuiYA39woGI9j8gt5+M6UNfj2ot/hM8cCW86HrQEGt67+S02j4ncxHbQeBD8jSJCaN0Ah1HHQhHjV341ujEpBPF+F6JB2XtUyOHyr3hsQcuKDa27BFj2g1ojWKB/rffUc2eB0qlGBawwJQ09UnhHxjDW3qyXL/yHCXZLp8JPNBdRANLJ657TInHRksnmp7l5RxQJ0dd47pgi5VjN/08dQNsD/toXTnbcYuDcy0duEz53g4KF1cZyNuEg9kWYP1oMfOj8FrkGsyQh3+h8LQyIEvwqOrlmMjxSzJZXDbFGddHvIn5KasPKaR+T5AfxT1J3ex+pjIHoeBeAf/a8bmq3Z+gDalxa/kBIqT0KbYnAbtVk8Wq4vDZhDwYvkawPvSgFuFEhrhE8xZ3QJj7nofhWQJ+4DDVjujYlIrjBihUFvkPC2GUlrjQVNqJwhwTmZ7esjrMjx+QHtmtDNps5TZdhb1wXJ2LU2OJOYoILGhEZw0g1oeWgErSE0QUCO2EwBraenzWHlc8P2A7OGcRpE7KHdDYTuIJ9IbyeVMgeYowYXnxy7ElQ1CWkLSDHsbsptHrG9NTaRWdiAFwInb7nd1KrJVPvsNlnUfExbs8gd0IoxjaTjY1V7mjb2D/7NoL5owonoBDAXOk15QuFyU="), "{id}");
    let args = &chunks[1].choices[0].delta.tool_calls.as_ref().unwrap()[0];
    assert_eq!(args.index, 0);
    assert_eq!(args.id, None);
    assert_eq!(args.kind, None);
    assert_eq!(args.function.as_ref().unwrap().name, None);
    assert_eq!(
        args.function.as_ref().unwrap().arguments.as_deref(),
        Some("{}")
    );
    assert_eq!(chunks[1].choices[0].delta.role, None);
    assert_eq!(
        chunks[2].choices[0].finish_reason,
        Some(FinishReason::ToolCalls)
    );
    let u = chunks[3].usage.as_ref().unwrap();
    assert!(chunks[3].is_usage_only());
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (29, 212, 241)
    );
    assert_eq!(u.reasoning_tokens(), 202);
    // Aggregated, the stream is one tool call whose id round-trips the signature.
    let mut agg = crate::stream::ChunkAggregator::default();
    for c in &chunks {
        agg.push(c);
    }
    let done = agg.finish();
    let call = &done.choices[0].message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.function.name, "get_country");
    assert_eq!(call.function.arguments, "{}");
    assert_eq!(call.id, id);
}

#[test]
fn stream_followup_and_midstream_usage_fixtures() {
    let (chunks, r) = decode(&fixture("stream_tool_result_followup.sse.txt"), &[]);
    r.unwrap();
    same_envelope(&chunks, "REVVabaiCdq4qtsPnZu96Qo", "gemini-3-pro-preview");
    assert_eq!(content_of(&chunks), "The capital of Mexico is Mexico City.");
    assert_eq!(chunks[2].choices[0].finish_reason, Some(FinishReason::Stop));
    let u = chunks.last().unwrap().usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (257, 8, 265)
    );

    let (chunks, r) = decode(&fixture("stream_usage_midstream.sse.txt"), &[]);
    r.unwrap();
    same_envelope(&chunks, "ru1garvBEoOiqtsP2fznmQw", "gemini-2.5-flash");
    let expected: String = (1..=30)
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(content_of(&chunks), expected);
    // Usage is reported once, at the end, with the last counts.
    assert_eq!(chunks.iter().filter(|c| c.usage.is_some()).count(), 1);
    let u = chunks.last().unwrap().usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (18, 115, 133)
    );
    assert_eq!(u.reasoning_tokens(), 35);
}

#[test]
fn stream_sdk_mock_function_call_without_usage() {
    let (chunks, r) = decode(&fixture("stream_function_call_sdk_mock.sse.txt"), &[]);
    r.unwrap();
    assert!(chunks[0].id.starts_with("chatcmpl-"));
    same_envelope(&chunks, &chunks[0].id.clone(), "configured-model");
    let start = &chunks[0].choices[0].delta.tool_calls.as_ref().unwrap()[0];
    assert_eq!(
        start.function.as_ref().unwrap().name.as_deref(),
        Some("getTemperature")
    );
    let args = &chunks[1].choices[0].delta.tool_calls.as_ref().unwrap()[0];
    assert_eq!(
        serde_json::from_str::<Value>(
            args.function
                .as_ref()
                .unwrap()
                .arguments
                .as_deref()
                .unwrap()
        )
        .unwrap(),
        json!({"city": "San Jose"})
    );
    assert_eq!(
        chunks[2].choices[0].finish_reason,
        Some(FinishReason::ToolCalls)
    );
    // No usageMetadata in this sample: an estimate still closes the stream.
    let u = chunks[3].usage.as_ref().unwrap();
    assert!(chunks[3].is_usage_only());
    assert!(u.prompt_tokens > 0 && u.completion_tokens > 0);
}

#[test]
fn every_fixture_split_at_every_byte_decodes_the_same() {
    for name in STREAMS {
        let bytes = fixture(name);
        let (whole, r) = decode(&bytes, &[]);
        r.unwrap();
        let expected = transcript(&whole);
        for cut in 0..=bytes.len() {
            let (chunks, r) = decode(&bytes, &[cut]);
            assert!(r.is_ok(), "{name} cut at {cut}: {r:?}");
            assert_eq!(transcript(&chunks), expected, "{name} cut at {cut}");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    #[test]
    fn any_split_decodes_the_same(
        which in 0..STREAMS.len(),
        cuts in proptest::collection::vec(0usize..40_000, 0..24),
    ) {
        let bytes = fixture(STREAMS[which]);
        let (whole, _) = decode(&bytes, &[]);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let (chunks, r) = decode(&bytes, &cuts);
        proptest::prop_assert!(r.is_ok());
        proptest::prop_assert_eq!(transcript(&chunks), transcript(&whole));
    }
}

#[test]
fn stream_cut_before_the_end_is_a_connection_error() {
    let bytes = fixture("stream_text.sse.txt");
    // Up to the end of the second event: no finishReason yet.
    let second_end = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w == b"\r\n\r\n")
        .nth(1)
        .unwrap()
        .0
        + 4;
    let (chunks, r) = decode(&bytes[..second_end], &[]);
    assert_eq!(content_of(&chunks), "The capital of France");
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Connection);
    // Cut in the middle of an event.
    let (_, r) = decode(&bytes[..second_end + 30], &[]);
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Connection);
    // Nothing at all.
    let (chunks, r) = decode(b"", &[]);
    assert!(chunks.is_empty());
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Connection);
}

#[test]
fn stream_in_band_error_blocked_prompt_and_failures() {
    let text = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}],\"role\": \"model\"}}]}\r\n\r\ndata: {\"error\": {\"code\": 429, \"message\": \"Resource has been exhausted (e.g. check quota).\", \"status\": \"RESOURCE_EXHAUSTED\"}}\r\n\r\n";
    let (chunks, r) = decode(text.as_bytes(), &[]);
    assert_eq!(content_of(&chunks), "Hi");
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
    assert_eq!(
        e.message(),
        "Resource has been exhausted (e.g. check quota)."
    );

    let blocked = format!(
        "data: {}\r\n\r\n",
        String::from_utf8(fixture("generate_prompt_blocked.resp.json"))
            .unwrap()
            .replace(['\n', '\r'], "")
    );
    let (chunks, r) = decode(blocked.as_bytes(), &[]);
    r.unwrap();
    assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
    assert_eq!(
        chunks[1].choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );
    assert!(chunks[2].is_usage_only());

    let failed =
        "data: {\"candidates\": [{\"finishReason\": \"MALFORMED_FUNCTION_CALL\"}]}\r\n\r\n";
    let (_, r) = decode(failed.as_bytes(), &[]);
    assert_eq!(r.unwrap_err().code(), Some("MALFORMED_FUNCTION_CALL"));

    let garbage = "data: {not json\r\n\r\n";
    let (_, r) = decode(garbage.as_bytes(), &[]);
    assert_eq!(r.unwrap_err().kind(), ErrorKind::BadGateway);

    let huge_index = "data: {\"candidates\": [{\"index\": 4000000000, \"content\": {\"parts\": [{\"text\": \"x\"}]}}]}\r\n\r\n";
    let (_, r) = decode(huge_index.as_bytes(), &[]);
    assert_eq!(r.unwrap_err().kind(), ErrorKind::BadGateway);
}

#[test]
fn stream_thoughts_and_several_candidates() {
    let text = concat!(
        "data: {\"responseId\":\"x\",\"candidates\":[{\"index\":0,\"content\":{\"parts\":[{\"text\":\"hmm\",\"thought\":true}]}},{\"index\":1,\"content\":{\"parts\":[{\"text\":\"B\"}]}}]}\r\n\r\n",
        "data: {\"candidates\":[{\"index\":0,\"content\":{\"parts\":[{\"text\":\"A\"}]},\"finishReason\":\"STOP\"},{\"index\":1,\"finishReason\":\"MAX_TOKENS\"}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":2,\"thoughtsTokenCount\":1}}\r\n\r\n",
    );
    let (chunks, r) = decode(text.as_bytes(), &[]);
    r.unwrap();
    let by = |i: u32| -> Vec<&crate::types::ChunkChoice> {
        chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter(|c| c.index == i)
            .collect()
    };
    let zero = by(0);
    assert_eq!(zero[0].delta.reasoning_content.as_deref(), Some("hmm"));
    assert_eq!(zero[0].delta.role, Some(Role::Assistant));
    assert_eq!(zero[1].delta.content.as_deref(), Some("A"));
    assert_eq!(zero[2].finish_reason, Some(FinishReason::Stop));
    let one = by(1);
    assert_eq!(one[0].delta.role, Some(Role::Assistant));
    assert_eq!(one[0].delta.content.as_deref(), Some("B"));
    assert_eq!(one[1].finish_reason, Some(FinishReason::Length));
    let u = chunks.last().unwrap().usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (3, 3, 6)
    );
}

#[test]
fn leaf_decoder_is_used_by_both_protocols() {
    let req =
        chat(json!({"model": "g", "stream": true, "messages": [{"role": "user", "content": "q"}]}));
    for mut d in [
        gemini("m").stream_decoder(&req),
        vertex("m").stream_decoder(&req),
    ] {
        let mut out = VecDeque::new();
        d.feed(&fixture("stream_text.sse.txt"), &mut out).unwrap();
        d.finish(&mut out).unwrap();
        assert_eq!(
            content_of(&out.into_iter().collect::<Vec<_>>()),
            "The capital of France is Paris.\n"
        );
        assert!(!d.is_done());
    }
}

#[test]
fn error_mapping_through_the_protocol() {
    let e = gemini("m").map_error(
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        &fixture("error_400_api_key_invalid.json"),
    );
    assert_eq!(e.kind(), ErrorKind::Authentication);
    let e = vertex("m").map_error(
        StatusCode::TOO_MANY_REQUESTS,
        &HeaderMap::new(),
        &fixture("error_429_quota_retryinfo.json"),
    );
    assert_eq!(
        e.retry_after(),
        Some(std::time::Duration::from_millis(34_400))
    );
}

#[test]
fn image_urls_for_fetching_are_found() {
    let req = chat(json!({"model": "g", "messages": [
    {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://a.example/1.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
        {"type": "image_url", "image_url": {"url": "https://a.example/1.png"}},
        {"type": "image_url", "image_url": {"url": "gs://b/c.png"}},
        {"type": "image_url", "image_url": {"url": "http://b.example/2.jpg"}}
    ]}]}));
    let body = req.body();
    assert_eq!(
        media::remote_image_urls(body),
        vec!["https://a.example/1.png", "http://b.example/2.jpg"]
    );
}
