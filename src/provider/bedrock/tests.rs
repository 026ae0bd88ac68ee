//! Unit tests of the Bedrock translation against the recorded fixtures.

use super::request::JsonMode;
use super::stream::ConverseStreamDecoder;
use super::*;
use crate::error::{ErrorKind, LimitSource, TimeoutKind};
use crate::types::{ChatChunk, FinishReason, Role};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::{Duration, UNIX_EPOCH};

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/protocols/bedrock/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn fixture_json(path: &str) -> Value {
    serde_json::from_slice(&fixture(path)).unwrap()
}

fn proto_with(model: &str, f: impl FnOnce(&mut BedrockConfig)) -> BedrockProtocol {
    let mut cfg =
        BedrockConfig::new(model, "us-east-1").auth(BedrockAuth::SigV4(AwsCredentials::new(
            "AKIDEXAMPLE",
            Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        )));
    cfg.clock = Some(Arc::new(|| UNIX_EPOCH + Duration::from_secs(1_735_787_045)));
    f(&mut cfg);
    BedrockProtocol::new(cfg).unwrap()
}

fn proto(model: &str) -> BedrockProtocol {
    proto_with(model, |_| {})
}

fn chat(v: Value) -> ChatRequest {
    ChatRequest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap()
}

fn body_of(p: &BedrockProtocol, req: &ChatRequest) -> Value {
    serde_json::from_slice(&p.body(req).unwrap().0).unwrap()
}

fn weather_tool(strict: bool) -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "parameters": {"additionalProperties": false, "properties": {"city": {"type": "string"}},
                       "required": ["city"], "type": "object"},
        "strict": strict}})
}

fn pydantic_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_capital", "description": "Get the capital of a country.",
            "parameters": {"properties": {"country": {"description": "The country name.", "title": "Country", "type": "string"}},
                           "required": ["country"], "type": "object", "additionalProperties": false}}},
        {"type": "function", "function": {"name": "get_temperature", "description": "Get the temperature in a city.",
            "parameters": {"properties": {"city": {"description": "The city name.", "title": "City", "type": "string"}},
                           "required": ["city"], "type": "object", "additionalProperties": false}}}
    ])
}

// ---------------------------------------------------------------- requests

#[test]
fn request_converse_text() {
    let req = chat(json!({"model": "nova", "messages": [
        {"role": "system", "content": "You are a chatbot."},
        {"role": "user", "content": "Hello!"}]}));
    let p = proto("us.amazon.nova-micro-v1:0");
    assert_eq!(body_of(&p, &req), fixture_json("converse_text.req.json"));
}

#[test]
fn request_error_fixtures() {
    let req = chat(json!({"model": "x", "messages": [{"role": "user", "content": "hello"}]}));
    let p = proto("us.does-not-exist-model-v1:0");
    assert_eq!(
        body_of(&p, &req),
        fixture_json("error_400_validation.req.json")
    );
    let mut stream = req.clone();
    stream.body_mut().stream = Some(true);
    assert_eq!(
        body_of(&p, &stream),
        fixture_json("error_400_validation_stream.req.json")
    );
}

#[test]
fn request_converse_tool_use() {
    let req = chat(json!({"model": "claude", "messages": [
        {"role": "user", "content": "What's the weather in Paris?"}],
        "tools": [weather_tool(true)], "tool_choice": "auto"}));
    let p = proto("us.anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert_eq!(
        body_of(&p, &req),
        fixture_json("converse_tool_use.req.json")
    );
}

#[test]
fn request_converse_tool_result_followup() {
    let req = chat(json!({"model": "claude", "messages": [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "tooluse_8ZVLMmsdearTDSS0unN07z",
            "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "tooluse_8ZVLMmsdearTDSS0unN07z", "content": "Weather in Paris: Sunny, 22°C"}],
        "tools": [weather_tool(true)], "tool_choice": "auto"}));
    let p = proto("us.anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert_eq!(
        body_of(&p, &req),
        fixture_json("converse_tool_result_followup.req.json")
    );
}

#[test]
fn request_converse_reasoning_tool_use() {
    let req = chat(json!({"model": "kimi", "messages": [
        {"role": "system", "content": "You are a helpful chatbot. Use tools when helpful."},
        {"role": "user", "content": "What is the temperature in London? Use the tool."}],
        "tools": [{"type": "function", "function": {"name": "get_temperature",
            "description": "Get the current temperature in a city.",
            "parameters": {"additionalProperties": false, "properties": {"city": {"type": "string"}},
                           "required": ["city"], "type": "object"}}}],
        "tool_choice": "auto"}));
    let p = proto("moonshot.kimi-k2-thinking");
    assert_eq!(
        body_of(&p, &req),
        fixture_json("converse_reasoning_tool_use.req.json")
    );
}

#[test]
fn request_stream_text_then_tool_use() {
    let req = chat(
        json!({"model": "nova", "stream": true, "top_p": 0.5, "messages": [
        {"role": "system", "content": "You are a helpful chatbot."},
        {"role": "user", "content": "What is the temperature of the capital of France?"}],
        "tools": pydantic_tools()}),
    );
    let p = proto("us.amazon.nova-micro-v1:0");
    assert_eq!(
        body_of(&p, &req),
        fixture_json("converse_stream_text_then_tool_use.req.json")
    );
}

#[test]
fn request_stream_text_after_tool() {
    let req = chat(
        json!({"model": "nova", "stream": true, "top_p": 0.5, "messages": [
        {"role": "system", "content": "You are a helpful chatbot."},
        {"role": "user", "content": "What is the temperature of the capital of France?"},
        {"role": "assistant",
         "content": "<thinking> To find the temperature of the capital of France, I need to first determine the capital of France and then get the current temperature in that city. The capital of France is Paris. I will use the \"get_temperature\" tool to find the current temperature in Paris.</thinking>\n",
         "tool_calls": [{"id": "tooluse_lAG_zP8QRHmSYOwZzzaCqA", "type": "function",
                         "function": {"name": "get_temperature", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "tooluse_lAG_zP8QRHmSYOwZzzaCqA", "content": "30°C"}],
        "tools": pydantic_tools()}),
    );
    let p = proto("us.amazon.nova-micro-v1:0");
    assert_eq!(
        body_of(&p, &req),
        fixture_json("converse_stream_text_after_tool.req.json")
    );
}

#[test]
fn request_stream_reasoning() {
    let req = chat(
        json!({"model": "oss", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
    );
    let p = proto("openai.gpt-oss-120b-1:0");
    assert_eq!(
        body_of(&p, &req),
        fixture_json("converse_stream_reasoning.req.json")
    );
}

#[test]
fn request_native_structured_output() {
    let req = chat(json!({"model": "claude", "stream": true, "messages": [
        {"role": "user", "content": "What is the capital of France? Give me the city name, country, and population."}],
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "CityInfo", "description": "Information about a city.",
            "schema": {"additionalProperties": false,
                       "properties": {"city": {"type": "string"}, "country": {"type": "string"}, "population": {"type": "integer"}},
                       "required": ["city", "country", "population"], "type": "object"}}}}));
    let p = proto_with("us.anthropic.claude-sonnet-4-5-20250929-v1:0", |c| {
        c.structured_output = StructuredOutput::Native;
    });
    let got = body_of(&p, &req);
    let want = fixture_json("converse_stream_claude_text.req.json");
    // The schema travels as a string: compare it as JSON, then the rest as values.
    let schema = |v: &Value| -> Value {
        serde_json::from_str(
            v["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"]
                .as_str()
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(schema(&got), schema(&want));
    let strip = |mut v: Value| {
        v["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"] = Value::Null;
        v
    };
    assert_eq!(strip(got), strip(want));
}

fn cache_request() -> ChatRequest {
    let system_text = "YOU MUST RESPONSE ONLY WITH SINGLE NUMBER\n".repeat(50);
    let user_text = "Newer response with something except single number\n".repeat(10);
    let empty_tool = |name: &str, cached: bool| {
        let mut t = json!({"type": "function", "function": {"name": name,
            "parameters": {"additionalProperties": false, "properties": {}, "type": "object"}}});
        if cached {
            t["cache_control"] = json!({"type": "ephemeral"});
        }
        t
    };
    chat(json!({"model": "claude", "messages": [
        {"role": "system", "content": [{"type": "text", "text": system_text, "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [
            {"type": "text", "text": user_text},
            {"type": "file", "file": {"filename": "Document 1",
                "file_data": "data:text/plain;base64,WW91IGFyZSBhIGdyZWF0IG1hdGhlbWF0aWNpYW4="}},
            {"type": "text", "text": "\n", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "What is 10 + 11?", "cache_control": {"type": "ephemeral"}}]}],
        "tools": [empty_tool("catalog_lookup", false), empty_tool("diagnostics", true)],
        "tool_choice": "auto"}))
}

#[test]
fn request_prompt_cache_points() {
    let p = proto("us.anthropic.claude-sonnet-4-5-20250929-v1:0");
    let got = body_of(&p, &cache_request());
    assert_eq!(got, fixture_json("converse_prompt_cache_write.req.json"));
    assert_eq!(got, fixture_json("converse_prompt_cache_read.req.json"));
}

#[test]
fn request_mapping_details() {
    let p = proto("us.anthropic.claude-3-5-haiku-20241022-v1:0");
    let req = chat(json!({"model": "m", "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "user", "content": "Also Bergen."},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}},
            {"id": "t2", "type": "function", "function": {"name": "weather", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "-3°C"},
        {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "2°C"}]},
        {"role": "user", "content": "Thanks"}],
        "max_completion_tokens": 512, "temperature": 0.2, "top_p": 0.9, "stop": "END",
        "top_k": 40, "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"},
        "some_model_knob": true,
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}}}));
    let b = body_of(&p, &req);
    assert_eq!(b["system"], json!([{"text": "Be brief."}]));
    assert_eq!(
        b["messages"],
        json!([
            {"role": "user", "content": [{"text": "Weather in Oslo?"},
                {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
                {"text": "Also Bergen."}]},
            {"role": "assistant", "content": [{"text": "Checking."},
                {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Oslo"}}},
                {"toolUse": {"toolUseId": "t2", "name": "weather", "input": {}}}]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "t1", "content": [{"text": "-3°C"}], "status": "success"}},
                {"toolResult": {"toolUseId": "t2", "content": [{"text": "2°C"}], "status": "success"}},
                {"text": "Thanks"}]}
        ])
    );
    assert_eq!(
        b["inferenceConfig"],
        json!({"maxTokens": 512, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]})
    );
    assert_eq!(
        b["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "weather"}})
    );
    assert_eq!(
        b["guardrailConfig"],
        json!({"guardrailIdentifier": "gr-1", "guardrailVersion": "1"})
    );
    assert_eq!(
        b["additionalModelRequestFields"],
        json!({"top_k": 40, "some_model_knob": true})
    );
    assert!(b.get("top_k").is_none() && b.get("some_model_knob").is_none());
}

#[test]
fn tool_choice_variants() {
    let p = proto("anthropic.claude-3-haiku-20240307-v1:0");
    let base = |tc: Value| {
        chat(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [weather_tool(false)], "tool_choice": tc}),
        )
    };
    assert_eq!(
        body_of(&p, &base(json!("required")))["toolConfig"]["toolChoice"],
        json!({"any": {}})
    );
    assert_eq!(
        body_of(&p, &base(json!("auto")))["toolConfig"]["toolChoice"],
        json!({"auto": {}})
    );
    // none: no tools at all…
    assert!(
        body_of(&p, &base(json!("none")))
            .get("toolConfig")
            .is_none()
    );
    // …unless the history holds tool blocks, which need a toolConfig (without a choice).
    let req = chat(
        json!({"model": "m", "tool_choice": "none", "tools": [weather_tool(false)], "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "a", "content": "sunny"}]}),
    );
    let b = body_of(&p, &req);
    assert_eq!(
        b["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "get_weather"
    );
    assert!(b["toolConfig"].get("toolChoice").is_none());
    // No tools offered but a tool history: declared from the history.
    let req = chat(json!({"model": "m", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "a", "content": "ok"}]}));
    assert_eq!(
        body_of(&p, &req)["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "lookup"
    );
}

#[test]
fn reasoning_and_top_k_by_family() {
    let req = |extra: Value| {
        let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        chat(v)
    };
    let claude = proto("us.anthropic.claude-3-7-sonnet-20250219-v1:0");
    let b = body_of(&claude, &req(json!({"reasoning_effort": "high"})));
    assert_eq!(
        b["additionalModelRequestFields"]["thinking"],
        json!({"type": "enabled", "budget_tokens": 4096})
    );
    assert_eq!(b["inferenceConfig"]["maxTokens"], 8192);
    let b = body_of(
        &claude,
        &req(json!({"reasoning_effort": "low", "max_tokens": 3000})),
    );
    assert_eq!(
        b["additionalModelRequestFields"]["thinking"]["budget_tokens"],
        1024
    );
    assert_eq!(b["inferenceConfig"]["maxTokens"], 3000);
    let b = body_of(
        &claude,
        &req(json!({"thinking": {"type": "enabled", "budget_tokens": 2000}})),
    );
    assert_eq!(
        b["additionalModelRequestFields"]["thinking"],
        json!({"type": "enabled", "budget_tokens": 2000})
    );
    assert_eq!(b["inferenceConfig"]["maxTokens"], 6096);
    let b = body_of(
        &claude,
        &req(json!({"thinking": {"type": "enabled", "budget_tokens": u64::MAX}})),
    );
    assert_eq!(
        b["inferenceConfig"]["maxTokens"],
        u64::MAX,
        "saturates, never overflows"
    );
    assert!(
        body_of(&claude, &req(json!({"reasoning_effort": "none"})))
            .get("additionalModelRequestFields")
            .is_none()
    );

    let nova = proto("us.amazon.nova-premier-v1:0");
    let b = body_of(
        &nova,
        &req(json!({"reasoning_effort": "medium", "top_k": 20})),
    );
    assert_eq!(
        b["additionalModelRequestFields"],
        json!({"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "medium"}, "inferenceConfig": {"topK": 20}})
    );
    let oss = proto("openai.gpt-oss-120b-1:0");
    let b = body_of(&oss, &req(json!({"reasoning_effort": "low"})));
    assert_eq!(
        b["additionalModelRequestFields"],
        json!({"reasoning_effort": "low"})
    );
    // An application inference profile: the configured base model decides.
    let arn = proto_with(
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123",
        |c| {
            c.base_model = Some("anthropic.claude-3-7-sonnet-20250219-v1:0".into());
        },
    );
    let b = body_of(&arn, &req(json!({"reasoning_effort": "medium"})));
    assert_eq!(
        b["additionalModelRequestFields"]["thinking"]["budget_tokens"],
        2048
    );
}

#[test]
fn json_mode_uses_a_forced_tool() {
    let p = proto("anthropic.claude-3-haiku-20240307-v1:0");
    let req = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "City",
            "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}}}),
    );
    let (bytes, mode) = p.body(&req).unwrap();
    assert_eq!(mode, JsonMode(Some("City".into())));
    let b: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        b["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "City", "inputSchema": {"json": {"type": "object", "properties": {"name": {"type": "string"}}}}}}],
               "toolChoice": {"tool": {"name": "City"}}})
    );
    let req = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_object"}}),
    );
    let (bytes, mode) = p.body(&req).unwrap();
    assert_eq!(mode, JsonMode(Some("json_tool_call".into())));
    let b: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        b["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "json_tool_call"}})
    );
    // The answer: the tool input becomes the content, finish is stop.
    let resp = br#"{"output":{"message":{"role":"assistant","content":[{"toolUse":{"toolUseId":"t","name":"City","input":{"name":"Oslo"}}}]}},
        "stopReason":"tool_use","usage":{"inputTokens":5,"outputTokens":3,"totalTokens":8}}"#;
    let c =
        response::completion(resp, "id".into(), "m", 1, &JsonMode(Some("City".into()))).unwrap();
    assert_eq!(
        c.choices[0].message.content.as_deref(),
        Some(r#"{"name":"Oslo"}"#)
    );
    assert!(c.choices[0].message.tool_calls.is_none());
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
}

#[test]
fn unsupported_params_and_bad_inputs() {
    let p = proto("anthropic.claude-3-haiku-20240307-v1:0");
    let req = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 3, "n": 1}),
    );
    let err = p.body(&req).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedParams);
    assert_eq!(err.param(), Some("n"));
    let req = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 3, "drop_params": true}),
    );
    assert!(body_of(&p, &req).get("seed").is_none());
    let img = |url: &str| {
        chat(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}]}]}),
        )
    };
    let err = p.body(&img("https://example.com/cat.png")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert!(err.message().contains("data:"), "{}", err.message());
    assert_eq!(
        p.body(&img("data:image/bmp;base64,AAAA"))
            .unwrap_err()
            .kind(),
        ErrorKind::BadRequest
    );
    assert_eq!(
        p.body(&img("data:image/png;base64,not base64!"))
            .unwrap_err()
            .kind(),
        ErrorKind::BadRequest
    );
    let req = chat(
        json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}),
    );
    assert_eq!(p.body(&req).unwrap_err().param(), Some("messages"));
}

#[test]
fn thinking_blocks_round_trip_into_reasoning_content() {
    let p = proto("anthropic.claude-3-7-sonnet-20250219-v1:0");
    let req = chat(json!({"model": "m", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "ok", "thinking_blocks": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig=="}]}]}));
    let b = body_of(&p, &req);
    assert_eq!(
        b["messages"][1]["content"],
        json!([{"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig=="}}}, {"text": "ok"}])
    );
    assert!(
        b.get("additionalModelRequestFields").is_none(),
        "thinking_blocks is not a model field"
    );
}

// ---------------------------------------------------------------- the HTTP request

#[test]
fn http_request_path_auth_and_resigning() {
    let now = Arc::new(std::sync::Mutex::new(
        UNIX_EPOCH + Duration::from_secs(1_735_787_045),
    ));
    let clock_now = now.clone();
    let p = proto_with(
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
        |c| {
            c.clock = Some(Arc::new(move || *clock_now.lock().unwrap()));
            c.auth = BedrockAuth::SigV4(
                AwsCredentials::new(
                    "AKIDEXAMPLE",
                    Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                )
                .with_session_token(Secret::new("session-token-abcdef")),
            );
        },
    );
    let req = chat(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
    let a = p.chat_request(&req).unwrap();
    assert_eq!(
        a.uri().path(),
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    );
    assert_eq!(
        a.uri().host(),
        Some("bedrock-runtime.us-east-1.amazonaws.com")
    );
    assert_eq!(a.headers()["x-amz-date"], "20250102T030405Z");
    assert_eq!(a.headers()["x-amz-security-token"], "session-token-abcdef");
    assert_eq!(
        a.headers()["host"],
        "bedrock-runtime.us-east-1.amazonaws.com"
    );
    let auth = a.headers()["authorization"].to_str().unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250102/us-east-1/bedrock/aws4_request, SignedHeaders=accept;content-type;host;x-amz-date;x-amz-security-token, Signature="), "{auth}");
    // A retry a second later is signed again.
    *now.lock().unwrap() += Duration::from_secs(1);
    let b = p.chat_request(&req).unwrap();
    assert_eq!(b.headers()["x-amz-date"], "20250102T030406Z");
    assert_ne!(a.headers()["authorization"], b.headers()["authorization"]);
    // Streams go to converse-stream.
    let mut s = req.clone();
    s.body_mut().stream = Some(true);
    let r = p.chat_request(&s).unwrap();
    assert!(r.uri().path().ends_with("/converse-stream"));
    assert_eq!(r.headers()["accept"], "application/vnd.amazon.eventstream");

    let bearer = proto_with("amazon.nova-lite-v1:0", |c| {
        c.auth = BedrockAuth::ApiKey(Secret::new("bedrock-api-key-123456"));
        c.endpoint = Some("http://127.0.0.1:9/".into());
    });
    let r = bearer.chat_request(&req).unwrap();
    assert_eq!(
        r.uri(),
        "http://127.0.0.1:9/model/amazon.nova-lite-v1%3A0/converse"
    );
    assert_eq!(
        r.headers()["authorization"],
        "Bearer bedrock-api-key-123456"
    );
    assert!(r.headers()["authorization"].is_sensitive());
    assert!(r.headers().get("x-amz-date").is_none());
    let dbg = format!(
        "{bearer:?} {:?}",
        BedrockConfig::new("m", "us-east-1")
            .auth(BedrockAuth::ApiKey(Secret::new("bedrock-api-key-123456")))
    );
    assert!(!dbg.contains("bedrock-api-key-123456"), "{dbg}");
}

#[test]
fn config_validation() {
    assert!(BedrockProtocol::new(BedrockConfig::new("m", "us-east-1.evil.com/x")).is_err());
    assert!(BedrockProtocol::new(BedrockConfig::new("", "us-east-1")).is_err());
    assert!(
        BedrockProtocol::new(BedrockConfig::new("m", "us-east-1").endpoint("ftp://x")).is_err()
    );
    assert!(
        BedrockProtocol::new(
            BedrockConfig::new("m", "us-east-1").auth(BedrockAuth::SigV4(AwsCredentials::new(
                "AKIA EVIL",
                Secret::new("s")
            )))
        )
        .is_err()
    );
    let p = BedrockProtocol::new(BedrockConfig::new(
        "converse/anthropic.claude-v2",
        "eu-west-3",
    ))
    .unwrap();
    assert_eq!(p.model(), "anthropic.claude-v2");
    assert_eq!(
        p.endpoint(),
        "https://bedrock-runtime.eu-west-3.amazonaws.com"
    );
    assert_eq!(
        arn_region("arn:aws:bedrock:eu-central-1:1:inference-profile/x"),
        Some("eu-central-1")
    );
    assert_eq!(arn_region("us.anthropic.x"), None);
}

// ---------------------------------------------------------------- responses

fn parse(p: &BedrockProtocol, file: &str) -> ChatCompletion {
    let req = chat(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
    p.parse_completion(&req, &fixture(file)).unwrap()
}

#[test]
fn response_converse_text() {
    let c = parse(
        &proto("us.amazon.nova-micro-v1:0"),
        "converse_text.resp.json",
    );
    assert!(c.id.starts_with("chatcmpl-"));
    assert_eq!(c.object, "chat.completion");
    assert_eq!(c.model, "us.amazon.nova-micro-v1:0");
    assert!(c.created > 1_700_000_000);
    assert_eq!(c.choices.len(), 1);
    let ch = &c.choices[0];
    assert_eq!(ch.index, 0);
    assert_eq!(ch.message.role, Role::Assistant);
    assert_eq!(
        ch.message.content.as_deref(),
        Some(
            "Hello! How can I assist you today? Whether you have questions, need information, or just want to chat, I'm here to help."
        )
    );
    assert!(ch.message.tool_calls.is_none());
    assert_eq!(ch.finish_reason, Some(FinishReason::Stop));
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (7, 30, 37)
    );
    assert_eq!(u.cached_tokens(), 0);
    assert!(u.prompt_tokens_details.is_none());
}

#[test]
fn response_converse_tool_use() {
    let c = parse(
        &proto("us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        "converse_tool_use.resp.json",
    );
    let ch = &c.choices[0];
    assert_eq!(ch.message.content, None);
    let calls = ch.message.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, "tooluse_8ZVLMmsdearTDSS0unN07z");
    assert_eq!(calls[0].kind, "function");
    assert_eq!(calls[0].function.name, "get_weather");
    assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
    assert_eq!(ch.finish_reason, Some(FinishReason::ToolCalls));
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (560, 53, 613)
    );
    assert_eq!(u.cached_tokens(), 0);
    assert_eq!(u.cache_write_tokens(), 0);
}

#[test]
fn response_converse_tool_result_followup() {
    let c = parse(
        &proto("us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        "converse_tool_result_followup.resp.json",
    );
    assert_eq!(
        c.choices[0].message.content.as_deref(),
        Some(
            "The weather in Paris is currently sunny with a temperature of 22°C (approximately 72°F). It's a beautiful day!"
        )
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (637, 31, 668)
    );
}

#[test]
fn response_converse_reasoning_tool_use() {
    let c = parse(
        &proto("moonshot.kimi-k2-thinking"),
        "converse_reasoning_tool_use.resp.json",
    );
    let m = &c.choices[0].message;
    assert_eq!(
        m.reasoning_content.as_deref(),
        Some(
            " The user is asking for the current temperature in London. They've explicitly requested the use of a tool for this purpose. I have a tool called `get_temperature` that can provide this information. It requires a single parameter \"city\" which should be \"London\" in this case."
        )
    );
    assert_eq!(m.content, None);
    let calls = m.tool_calls.as_ref().unwrap();
    assert_eq!(calls[0].id, "functions.get_temperature:0");
    assert_eq!(calls[0].function.name, "get_temperature");
    assert_eq!(calls[0].function.arguments, r#"{"city":"London"}"#);
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (92, 75, 167)
    );
}

#[test]
fn response_prompt_cache_write_and_read() {
    let p = proto("us.anthropic.claude-sonnet-4-5-20250929-v1:0");
    let w = parse(&p, "converse_prompt_cache_write.resp.json");
    assert_eq!(w.choices[0].message.content.as_deref(), Some("21"));
    let u = w.usage.unwrap();
    // inputTokens 2 + cacheWrite 1322 = 1324 prompt tokens; 5 output.
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (1324, 5, 1329)
    );
    assert_eq!(u.cache_write_tokens(), 1322);
    assert_eq!(u.cached_tokens(), 0);
    let r = parse(&p, "converse_prompt_cache_read.resp.json");
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (1324, 5, 1329)
    );
    assert_eq!(u.cached_tokens(), 1322);
    assert_eq!(u.cache_read_input_tokens, Some(1322));
    assert_eq!(u.cache_write_tokens(), 0);
}

#[test]
fn stop_reasons() {
    use response::{Stop, stop_reason};
    assert_eq!(stop_reason("end_turn"), Stop::Finish(FinishReason::Stop));
    assert_eq!(
        stop_reason("stop_sequence"),
        Stop::Finish(FinishReason::Stop)
    );
    assert_eq!(
        stop_reason("max_tokens"),
        Stop::Finish(FinishReason::Length)
    );
    assert_eq!(
        stop_reason("model_context_window_exceeded"),
        Stop::Finish(FinishReason::Length)
    );
    assert_eq!(
        stop_reason("tool_use"),
        Stop::Finish(FinishReason::ToolCalls)
    );
    assert_eq!(
        stop_reason("guardrail_intervened"),
        Stop::Finish(FinishReason::ContentFilter)
    );
    assert_eq!(
        stop_reason("content_filtered"),
        Stop::Finish(FinishReason::ContentFilter)
    );
    assert!(matches!(
        stop_reason("malformed_tool_use"),
        Stop::Malformed(_)
    ));
    assert_eq!(
        stop_reason("something_new"),
        Stop::Finish(FinishReason::Stop)
    );
    let bad = br#"{"output":{"message":{"role":"assistant","content":[]}},"stopReason":"malformed_model_output","usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2}}"#;
    let err = response::completion(bad, "i".into(), "m", 0, &JsonMode::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadGateway);
    assert!(response::completion(b"<html>", "i".into(), "m", 0, &JsonMode::default()).is_err());
}

// ---------------------------------------------------------------- errors

#[test]
fn error_fixtures_map_to_kinds() {
    let p = proto("us.does-not-exist-model-v1:0");
    let mut h = HeaderMap::new();
    h.insert(
        "x-amzn-errortype",
        "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"
            .parse()
            .unwrap(),
    );
    for file in [
        "error_400_validation.resp.json",
        "error_400_validation_stream.resp.json",
    ] {
        let err = p.map_error(StatusCode::BAD_REQUEST, &h, &fixture(file));
        assert_eq!(err.kind(), ErrorKind::BadRequest);
        assert_eq!(err.message(), "The provided model identifier is invalid.");
        assert_eq!(err.code(), Some("ValidationException"));
    }
    // Without the header the status decides.
    let err = p.map_error(
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        &fixture("error_400_validation.resp.json"),
    );
    assert_eq!(err.kind(), ErrorKind::BadRequest);

    // 403 from the recorded exchange.
    let text = String::from_utf8(fixture("error_403_access_denied.http.txt"))
        .unwrap()
        .replace("\r\n", "\n");
    let resp = text.split("<<< RESPONSE\n").nth(1).unwrap();
    let (head, body) = resp.split_once("\n\n").unwrap();
    let mut h = HeaderMap::new();
    for line in head.lines().skip(1) {
        let (k, v) = line.split_once(": ").unwrap();
        h.insert(
            http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let body = body.split("\n\n").next().unwrap();
    let err = p.map_error(StatusCode::FORBIDDEN, &h, body.as_bytes());
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        err.message(),
        "You don't have access to the model with the specified model ID."
    );
    assert_eq!(err.code(), Some("AccessDeniedException"));

    // 429 throttling.
    let text = String::from_utf8(fixture("error_429_throttling.txt")).unwrap();
    let (head, body) = text.split_once("\n\n").unwrap();
    let mut h = HeaderMap::new();
    for line in head.lines().skip(1) {
        let (k, v) = line.split_once(": ").unwrap();
        h.insert(
            http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h.insert("retry-after", "3".parse().unwrap());
    let err = p.map_error(StatusCode::TOO_MANY_REQUESTS, &h, body.trim().as_bytes());
    assert_eq!(err.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
    assert_eq!(
        err.message(),
        "Too many tokens, please wait before trying again."
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    assert!(err.is_retryable());
}

#[test]
fn exception_names_map_to_kinds() {
    use error::kind_of;
    let cases = [
        (
            "ValidationException",
            "Malformed input request",
            ErrorKind::BadRequest,
        ),
        (
            "ValidationException",
            "Input is too long for requested model.",
            ErrorKind::ContextWindowExceeded,
        ),
        (
            "ValidationException",
            "prompt is too long: 210000 tokens > 200000 maximum",
            ErrorKind::ContextWindowExceeded,
        ),
        ("AccessDeniedException", "", ErrorKind::PermissionDenied),
        (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            ErrorKind::Authentication,
        ),
        ("ResourceNotFoundException", "", ErrorKind::NotFound),
        (
            "ThrottlingException",
            "",
            ErrorKind::RateLimited(LimitSource::Upstream),
        ),
        (
            "ServiceQuotaExceededException",
            "",
            ErrorKind::RateLimited(LimitSource::Upstream),
        ),
        (
            "ModelNotReadyException",
            "",
            ErrorKind::RateLimited(LimitSource::Upstream),
        ),
        (
            "ModelTimeoutException",
            "",
            ErrorKind::Timeout(TimeoutKind::Total),
        ),
        ("InternalServerException", "", ErrorKind::Upstream(500)),
        (
            "ServiceUnavailableException",
            "",
            ErrorKind::ServiceUnavailable,
        ),
        ("modelStreamErrorException", "", ErrorKind::BadGateway),
        (
            "throttlingException",
            "",
            ErrorKind::RateLimited(LimitSource::Upstream),
        ),
        ("internalServerException", "", ErrorKind::Upstream(500)),
        ("validationException", "", ErrorKind::BadRequest),
        (
            "serviceUnavailableException",
            "",
            ErrorKind::ServiceUnavailable,
        ),
    ];
    for (name, msg, kind) in cases {
        assert_eq!(kind_of(name, msg), Some(kind), "{name}");
    }
    assert_eq!(kind_of("SomethingNewException", ""), None);
    // The body's __type is used when the header is missing; secrets are scrubbed.
    let p = proto("m");
    let body = br#"{"__type":"com.amazon.coral.service#UnrecognizedClientException","Message":"bad key AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}"#;
    let err = p.map_error(StatusCode::FORBIDDEN, &HeaderMap::new(), body);
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert!(
        !err.message().contains("wJalrXUtnFEMI"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains("AKIDEXAMPLE"), "{}", err.message());
    let err = p.map_error(
        StatusCode::BAD_GATEWAY,
        &HeaderMap::new(),
        b"<html>oops</html>",
    );
    assert_eq!(err.kind(), ErrorKind::Upstream(502));
    assert!(err.message().contains("oops"));
}

// ---------------------------------------------------------------- streams

const STREAMS: [&str; 4] = [
    "converse_stream_claude_text",
    "converse_stream_reasoning",
    "converse_stream_text_after_tool",
    "converse_stream_text_then_tool_use",
];

fn decoder(json_mode: JsonMode) -> ConverseStreamDecoder {
    ConverseStreamDecoder::new(
        "chatcmpl-test".into(),
        "model-x",
        1_700_000_000,
        json_mode,
        vec![],
    )
}

/// Feeds `bytes` cut at `cuts`; returns the chunks and the end result.
fn decode_cut(bytes: &[u8], cuts: &[usize]) -> (Vec<ChatChunk>, Result<(), Error>) {
    let mut d = decoder(JsonMode::default());
    let mut out = VecDeque::new();
    let mut last = 0;
    let mut result = Ok(());
    for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
        if result.is_ok() && !d.is_done() {
            result = d.feed(&bytes[last..c], &mut out);
        }
        last = c;
    }
    if result.is_ok() {
        result = d.finish(&mut out);
    }
    (out.into_iter().collect(), result)
}

fn stream_fixture(name: &str) -> Vec<u8> {
    fixture(&format!("{name}.eventstream.bin"))
}

struct Facts {
    text: String,
    reasoning: String,
    tools: Vec<(u32, String, String, String)>,
    finish: Option<FinishReason>,
    usage: (u64, u64, u64),
}

/// Checks the invariants every translated stream keeps, and gathers what it said.
fn facts(chunks: &[ChatChunk]) -> Facts {
    assert!(!chunks.is_empty());
    for c in chunks {
        assert_eq!(c.id, "chatcmpl-test");
        assert_eq!(c.model, "model-x");
        assert_eq!(c.created, 1_700_000_000);
        assert_eq!(c.object, "chat.completion.chunk");
    }
    assert_eq!(
        chunks[0].choices[0].delta.role,
        Some(Role::Assistant),
        "the first chunk opens the message"
    );
    let last = chunks.last().unwrap();
    assert!(last.is_usage_only(), "the stream ends with a usage chunk");
    let u = last.usage.as_ref().unwrap();
    let mut f = Facts {
        text: String::new(),
        reasoning: String::new(),
        tools: Vec::new(),
        finish: None,
        usage: (u.prompt_tokens, u.completion_tokens, u.total_tokens),
    };
    for c in &chunks[..chunks.len() - 1] {
        assert_eq!(c.choices.len(), 1);
        assert!(c.usage.is_none());
        let ch = &c.choices[0];
        assert!(
            f.finish.is_none(),
            "nothing after the finishing chunk but usage"
        );
        f.finish.clone_from(&ch.finish_reason);
        f.text.push_str(ch.delta.content.as_deref().unwrap_or(""));
        f.reasoning
            .push_str(ch.delta.reasoning_content.as_deref().unwrap_or(""));
        for tc in ch.delta.tool_calls.iter().flatten() {
            let func = tc.function.as_ref().unwrap();
            if let Some(id) = &tc.id {
                assert_eq!(tc.kind.as_deref(), Some("function"));
                assert_eq!(
                    func.arguments.as_deref(),
                    Some(""),
                    "the first tool delta has empty arguments"
                );
                f.tools.push((
                    tc.index,
                    id.clone(),
                    func.name.clone().unwrap(),
                    String::new(),
                ));
            } else {
                assert!(func.name.is_none() && tc.kind.is_none());
                let slot = f
                    .tools
                    .iter_mut()
                    .find(|t| t.0 == tc.index)
                    .expect("started tool");
                slot.3.push_str(func.arguments.as_deref().unwrap());
            }
        }
    }
    f
}

#[test]
fn stream_claude_text() {
    let (chunks, r) = decode_cut(&stream_fixture("converse_stream_claude_text"), &[]);
    r.unwrap();
    let f = facts(&chunks);
    assert_eq!(
        f.text,
        r#"{"city":"Paris","country":"France","population":2161000}"#
    );
    assert_eq!(f.finish, Some(FinishReason::Stop));
    assert_eq!(f.usage, (210, 18, 228));
    assert!(f.tools.is_empty() && f.reasoning.is_empty());
}

#[test]
fn stream_reasoning() {
    let (chunks, r) = decode_cut(&stream_fixture("converse_stream_reasoning"), &[]);
    r.unwrap();
    let f = facts(&chunks);
    assert_eq!(
        f.reasoning,
        "The user just says \"Hi\". We need to respond appropriately, friendly greeting. No special instructions. Should be short."
    );
    assert_eq!(f.text, "Hello! How can I help you today?");
    assert_eq!(f.finish, Some(FinishReason::Stop));
    assert_eq!(f.usage, (70, 43, 113));
}

#[test]
fn stream_text_after_tool() {
    let (chunks, r) = decode_cut(&stream_fixture("converse_stream_text_after_tool"), &[]);
    r.unwrap();
    let f = facts(&chunks);
    assert_eq!(
        f.text,
        "The current temperature in Paris, the capital of France, is 30°C."
    );
    assert_eq!(f.finish, Some(FinishReason::Stop));
    assert_eq!(f.usage, (577, 18, 595));
}

#[test]
fn stream_text_then_tool_use() {
    let (chunks, r) = decode_cut(&stream_fixture("converse_stream_text_then_tool_use"), &[]);
    r.unwrap();
    let f = facts(&chunks);
    assert_eq!(
        f.text,
        "<thinking> To find the temperature of the capital of France, I need to first determine the capital of France and then get the current temperature in that city. The capital of France is Paris. I will use the \"get_temperature\" tool to find the current temperature in Paris.</thinking>\n"
    );
    // contentBlockIndex 1 is the first tool call: OpenAI index 0.
    assert_eq!(
        f.tools,
        vec![(
            0,
            "tooluse_lAG_zP8QRHmSYOwZzzaCqA".to_owned(),
            "get_temperature".to_owned(),
            r#"{"city":"Paris"}"#.to_owned()
        )]
    );
    assert_eq!(f.finish, Some(FinishReason::ToolCalls));
    assert_eq!(f.usage, (471, 91, 562));
    // The aggregated completion is what a non-streamed call would give.
    let mut agg = crate::stream::ChunkAggregator::default();
    for c in &chunks {
        agg.push(c);
    }
    let c = agg.finish();
    let call = &c.choices[0].message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.function.arguments, r#"{"city":"Paris"}"#);
}

#[test]
fn every_two_way_split_decodes_the_same() {
    for name in STREAMS {
        let bytes = stream_fixture(name);
        let (whole, r) = decode_cut(&bytes, &[]);
        r.unwrap();
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
    fn any_split_decodes_the_same(which in 0usize..4, cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..24)) {
        let bytes = stream_fixture(STREAMS[which]);
        let (whole, r) = decode_cut(&bytes, &[]);
        prop_assert!(r.is_ok());
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let (got, r) = decode_cut(&bytes, &points);
        prop_assert!(r.is_ok());
        prop_assert_eq!(got, whole);
    }

    #[test]
    fn corrupt_streams_never_panic(which in 0usize..4, idx in any::<proptest::sample::Index>(), val in any::<u8>()) {
        let mut bytes = stream_fixture(STREAMS[which]);
        let i = idx.index(bytes.len());
        bytes[i] = val;
        let _ = decode_cut(&bytes, &[i / 2]);
    }
}

#[test]
fn truncated_streams_are_connection_errors() {
    let bytes = stream_fixture("converse_stream_text_after_tool");
    // Cut inside a frame.
    let (_, r) = decode_cut(&bytes[..bytes.len() - 10], &[]);
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Connection);
    // Cut cleanly after messageStop, before metadata.
    let text = String::from_utf8(fixture(
        "converse_stream_text_after_tool.eventstream.decoded.jsonl",
    ))
    .unwrap();
    let metadata_offset = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["headers"][":event-type"] == "metadata")
        .unwrap()["offset"]
        .as_u64()
        .unwrap() as usize;
    let (chunks, r) = decode_cut(&bytes[..metadata_offset], &[]);
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Connection);
    assert_eq!(
        chunks.last().unwrap().choices[0].finish_reason,
        Some(FinishReason::Stop)
    );
}

#[test]
fn exception_frames_end_the_stream_with_the_right_error() {
    use super::eventstream::Message as Frame;
    let mut bytes = Frame::event("messageStart", br#"{"p":"abc","role":"assistant"}"#).encode();
    bytes.extend(
        Frame::event(
            "contentBlockDelta",
            br#"{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"xyz"}"#,
        )
        .encode(),
    );
    bytes.extend(
        Frame::exception(
            "throttlingException",
            br#"{"message":"Too many tokens, please wait before trying again."}"#,
        )
        .encode(),
    );
    let (chunks, r) = decode_cut(&bytes, &[]);
    assert_eq!(chunks.len(), 2, "chunks before the error are delivered");
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited(LimitSource::Upstream));
    assert_eq!(
        err.message(),
        "Too many tokens, please wait before trying again."
    );
    let real = std::fs::read(format!(
        "{}/tests/fixtures/protocols/aws_eventstream/real_exception_frame_transcribe.bin",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let (_, r) = decode_cut(&real, &[]);
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert_eq!(
        err.message(),
        "A complete signal was sent without the preceding empty frame."
    );
    let corrupt = {
        let mut b = stream_fixture("converse_stream_claude_text");
        b[20] ^= 0xff;
        b
    };
    assert_eq!(
        decode_cut(&corrupt, &[]).1.unwrap_err().kind(),
        ErrorKind::BadGateway
    );
}

#[test]
fn json_mode_stream_turns_the_tool_input_into_text() {
    use super::eventstream::Message as Frame;
    let mut bytes = Frame::event("messageStart", br#"{"role":"assistant"}"#).encode();
    bytes.extend(
        Frame::event(
            "contentBlockStart",
            br#"{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"t","name":"City"}}}"#,
        )
        .encode(),
    );
    bytes.extend(
        Frame::event(
            "contentBlockDelta",
            br#"{"contentBlockIndex":0,"delta":{"toolUse":{"input":"{\"name\":"}}}"#,
        )
        .encode(),
    );
    bytes.extend(
        Frame::event(
            "contentBlockDelta",
            br#"{"contentBlockIndex":0,"delta":{"toolUse":{"input":"\"Oslo\"}"}}}"#,
        )
        .encode(),
    );
    bytes.extend(Frame::event("messageStop", br#"{"stopReason":"tool_use"}"#).encode());
    bytes.extend(Frame::event("metadata", br#"{"usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7,"cacheReadInputTokens":10}}"#).encode());
    let mut d = decoder(JsonMode(Some("City".into())));
    let mut out = VecDeque::new();
    d.feed(&bytes, &mut out).unwrap();
    d.finish(&mut out).unwrap();
    let chunks: Vec<ChatChunk> = out.into_iter().collect();
    let f = facts(&chunks);
    assert_eq!(f.text, r#"{"name":"Oslo"}"#);
    assert!(f.tools.is_empty());
    assert_eq!(f.finish, Some(FinishReason::Stop));
    assert_eq!(f.usage, (13, 4, 17));
    assert_eq!(
        chunks
            .last()
            .unwrap()
            .usage
            .as_ref()
            .unwrap()
            .cached_tokens(),
        10
    );
}

// ---------------------------------------------------------------- no panics on any request

fn arb_part() -> impl Strategy<Value = Value> {
    prop_oneof![
        ".{0,12}".prop_map(|t| json!({"type": "text", "text": t})),
        ".{0,40}".prop_map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
        "(image|text|application)/[a-z]{0,6}".prop_map(
            |m| json!({"type": "image_url", "image_url": {"url": format!("data:{m};base64,AAAA")}})
        ),
        (".{0,12}", ".{0,30}")
            .prop_map(|(n, d)| json!({"type": "file", "file": {"filename": n, "file_data": d}})),
        Just(json!({"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}})),
        Just(json!({"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}})),
    ]
}

fn arb_message() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("system"), Just("developer"), Just("user"), Just("assistant"), Just("tool"), Just("function"), Just("other")],
        prop_oneof![
            Just(Value::Null),
            ".{0,16}".prop_map(Value::String),
            proptest::collection::vec(arb_part(), 0..4).prop_map(Value::Array),
        ],
        proptest::option::of(proptest::collection::vec((".{0,8}", ".{0,8}", ".{0,24}"), 0..3)),
        proptest::option::of(".{0,8}"),
    )
        .prop_map(|(role, content, calls, tool_id)| {
            let mut m = json!({"role": role, "content": content});
            if let Some(calls) = calls {
                m["tool_calls"] = calls
                    .into_iter()
                    .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
                    .collect();
            }
            if let Some(id) = tool_id {
                m["tool_call_id"] = json!(id);
            }
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn translation_never_panics(
        messages in proptest::collection::vec(arb_message(), 0..6),
        tool_choice in prop_oneof![Just(json!(null)), Just(json!("none")), Just(json!("required")), Just(json!({"type": "function", "function": {"name": "f"}})), Just(json!({"type": "x"}))],
        effort in prop_oneof![Just(json!(null)), Just(json!("high")), Just(json!("none")), Just(json!("weird"))],
        rf in prop_oneof![Just(json!(null)), Just(json!({"type": "json_object"})), Just(json!({"type": "json_schema", "json_schema": {"name": "s"}})), Just(json!({"type": "other"}))],
        top_k in proptest::option::of(any::<i64>()),
        model in prop_oneof![Just("anthropic.claude-3"), Just("amazon.nova-lite"), Just("meta.llama3")],
    ) {
        let mut body = json!({"model": "m", "messages": messages,
            "tools": [weather_tool(false)], "drop_params": true});
        for (k, v) in [("tool_choice", tool_choice), ("reasoning_effort", effort), ("response_format", rf)] {
            if !v.is_null() {
                body[k] = v;
            }
        }
        if let Some(k) = top_k {
            body["top_k"] = json!(k);
        }
        if let Ok(req) = ChatRequest::from_json(&serde_json::to_vec(&body).unwrap()) {
            for native in [StructuredOutput::Tool, StructuredOutput::Native] {
                let p = proto_with(model, |c| c.structured_output = native);
                if let Ok((bytes, _)) = p.body(&req) {
                    let v: Value = serde_json::from_slice(&bytes).unwrap();
                    prop_assert!(v["messages"].is_array());
                }
                let _ = p.chat_request(&req);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_event_payload_never_panics(
        frames in proptest::collection::vec((
            prop_oneof![Just("messageStart"), Just("contentBlockStart"), Just("contentBlockDelta"), Just("contentBlockStop"), Just("messageStop"), Just("metadata"), Just("unknown")],
            prop_oneof![
                ".{0,20}",
                Just(r#"{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"t","name":"f"}}}"#.to_owned()),
                Just(r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{"}}}"#.to_owned()),
                Just(r#"{"contentBlockIndex":-1,"delta":{"text":5}}"#.to_owned()),
                Just(r#"{"stopReason":"malformed_tool_use"}"#.to_owned()),
                Just(r#"{"usage":{"inputTokens":-1}}"#.to_owned()),
                Just(r#"{"usage":{"inputTokens":18446744073709551615,"cacheReadInputTokens":18446744073709551615}}"#.to_owned()),
            ],
            any::<bool>(),
        ), 0..8),
    ) {
        use super::eventstream::Message as Frame;
        let mut bytes = Vec::new();
        for (event, payload, exception) in frames {
            let f = if exception {
                Frame::exception(event, payload.as_bytes())
            } else {
                Frame::event(event, payload.as_bytes())
            };
            bytes.extend(f.encode());
        }
        let _ = decode_cut(&bytes, &[bytes.len() / 3]);
    }
}
