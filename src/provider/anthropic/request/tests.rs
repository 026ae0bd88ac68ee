//! Request translation: every recorded Anthropic request body is what tollgate
//! produces from the equivalent OpenAI request, written out by hand.

use super::*;
use serde_json::Value;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/protocols/anthropic/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn fixture_json(path: &str) -> Value {
    serde_json::from_slice(&fixture(path)).unwrap()
}

/// The request body of an `.http.txt` recording.
fn http_request_body(path: &str) -> Value {
    let text = String::from_utf8(fixture(path)).unwrap();
    let req = text.split("<<< RESPONSE").next().unwrap();
    let body = req
        .lines()
        .skip_while(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(body.trim()).unwrap()
}

fn try_translate_with(
    openai: &str,
    model: &str,
    drop: &DropParams,
    points: &[CachePoint],
) -> Result<Value, Error> {
    let body: ChatRequestBody = serde_json::from_str(openai).unwrap();
    let s = Settings {
        model,
        default_max_tokens: 4096,
        drop,
        cache_points: points,
    };
    translate(&body, &s).map(|bytes| serde_json::from_slice(&bytes).unwrap())
}

fn try_translate(openai: &str, model: &str) -> Result<Value, Error> {
    try_translate_with(openai, model, &DropParams::default(), &[])
}

fn translate_json(openai: &str, model: &str) -> Value {
    try_translate(openai, model).unwrap()
}

/// `caller` is an annotation the API adds to `tool_use` blocks in its answers;
/// the SDK that recorded these requests echoed it back. An OpenAI history has
/// no place for it (and the API does not need it), so it is compared without.
fn without_caller(mut v: Value) -> Value {
    if let Some(msgs) = v.get_mut("messages").and_then(Value::as_array_mut) {
        for m in msgs {
            if let Some(blocks) = m.get_mut("content").and_then(Value::as_array_mut) {
                for b in blocks {
                    if let Some(o) = b.as_object_mut() {
                        o.remove("caller");
                    }
                }
            }
        }
    }
    v
}

const WEATHER_TOOL: &str = r#"{"type":"function","function":{
    "name":"get_weather",
    "description":"Lookup the weather for a given city in either celsius or fahrenheit",
    "parameters":{"additionalProperties":false,"properties":{
        "location":{"description":"The city and state, e.g. San Francisco, CA","title":"Location","type":"string"},
        "units":{"description":"Unit for the output, either 'c' for celsius or 'f' for fahrenheit","enum":["c","f"],"title":"Units","type":"string"}},
      "required":["location","units"],"type":"object"}}}"#;

const ENTITY_TOOL: &str = r#"{"type":"function","function":{
    "name":"retrieve_entity_info",
    "description":"Get the knowledge about the given entity.",
    "parameters":{"additionalProperties":false,"properties":{"name":{"type":"string"}},"required":["name"],"type":"object"}}}"#;

const ENTITY_SYSTEM: &str = "\n    Use the `retrieve_entity_info` tool to get information about a specific person.\n    If you need to use `retrieve_entity_info` to get information about multiple people, try\n    to call them in parallel as much as possible.\n    Think step by step and then provide a single most probable concise answer.\n    ";

#[test]
fn tool_use_request() {
    let openai = format!(
        r#"{{"model":"weather","max_tokens":1024,
            "messages":[{{"role":"user","content":"What is the weather in SF?"}}],
            "tools":[{WEATHER_TOOL}]}}"#
    );
    assert_eq!(
        translate_json(&openai, "claude-haiku-4-5"),
        fixture_json("tool_use.req.json")
    );
}

#[test]
fn stream_tool_use_request() {
    let openai = format!(
        r#"{{"model":"weather","max_tokens":1024,"stream":true,
            "messages":[{{"role":"user","content":"What is the weather in SF?"}}],
            "tools":[{WEATHER_TOOL}]}}"#
    );
    assert_eq!(
        translate_json(&openai, "claude-haiku-4-5"),
        fixture_json("stream_tool_use.req.json")
    );
}

#[test]
fn tool_result_with_is_error() {
    let openai = format!(
        r#"{{"model":"weather","max_tokens":1024,
            "messages":[
              {{"role":"user","content":"What is the weather in SF?"}},
              {{"role":"assistant","content":null,"tool_calls":[{{"id":"toolu_01A9HHF5Ezy3oBrKmSgfASm9","type":"function",
                 "function":{{"name":"get_weather","arguments":"{{\"location\": \"San Francisco, CA\", \"units\": \"f\"}}"}}}}]}},
              {{"role":"tool","tool_call_id":"toolu_01A9HHF5Ezy3oBrKmSgfASm9","is_error":true,
                "content":"RuntimeError('Unexpected error, try again')"}}],
            "tools":[{WEATHER_TOOL}]}}"#
    );
    assert_eq!(
        translate_json(&openai, "claude-haiku-4-5"),
        without_caller(fixture_json("tool_result_error_followup.req.json"))
    );
}

#[test]
fn streamed_text_after_a_tool_result() {
    let openai = format!(
        r#"{{"model":"weather","max_tokens":1024,"stream":true,
            "messages":[
              {{"role":"user","content":"What is the weather in SF?"}},
              {{"role":"assistant","tool_calls":[{{"id":"toolu_018acGYLtfR52q9yDbWaEdQZ","type":"function",
                 "function":{{"name":"get_weather","arguments":"{{\"location\":\"San Francisco, CA\",\"units\":\"f\"}}"}}}}]}},
              {{"role":"tool","tool_call_id":"toolu_018acGYLtfR52q9yDbWaEdQZ",
                "content":"{{\"location\": \"San Francisco, CA\", \"temperature\": \"68\\u00b0F\", \"condition\": \"Sunny\"}}"}}],
            "tools":[{WEATHER_TOOL}]}}"#
    );
    assert_eq!(
        translate_json(&openai, "claude-haiku-4-5"),
        without_caller(fixture_json("stream_text_after_tool.req.json"))
    );
}

#[test]
fn parallel_tool_use_request_with_system_and_auto_choice() {
    let openai = format!(
        r#"{{"model":"family","max_tokens":4096,"stream":false,"tool_choice":"auto",
            "messages":[
              {{"role":"system","content":{system}}},
              {{"role":"user","content":[{{"type":"text","text":"Alice, Bob, Charlie and Daisy are a family. Who is the youngest?"}}]}}],
            "tools":[{ENTITY_TOOL}]}}"#,
        system = serde_json::to_string(ENTITY_SYSTEM).unwrap()
    );
    assert_eq!(
        translate_json(&openai, "claude-haiku-4-5"),
        fixture_json("parallel_tool_use.req.json")
    );
}

#[test]
fn parallel_tool_results_go_in_one_user_turn_in_order() {
    let call = |id: &str, name: &str| {
        format!(
            r#"{{"id":"{id}","type":"function","function":{{"name":"retrieve_entity_info","arguments":"{{\"name\":\"{name}\"}}"}}}}"#
        )
    };
    let result = |id: &str, text: &str| {
        format!(r#"{{"role":"tool","tool_call_id":"{id}","is_error":false,"content":"{text}"}}"#)
    };
    let openai = format!(
        r#"{{"model":"family","max_tokens":4096,"stream":false,"tool_choice":"auto",
            "messages":[
              {{"role":"system","content":{system}}},
              {{"role":"user","content":[{{"type":"text","text":"Alice, Bob, Charlie and Daisy are a family. Who is the youngest?"}}]}},
              {{"role":"assistant","content":"I'll help you find out who is the youngest by retrieving information about each family member. I'll retrieve their entity information to compare their ages.",
                "tool_calls":[{c1},{c2},{c3},{c4}]}},
              {r1},{r2},{r3},{r4}],
            "tools":[{ENTITY_TOOL}]}}"#,
        system = serde_json::to_string(ENTITY_SYSTEM).unwrap(),
        c1 = call("toolu_0167cfEnoQaPviGdVXA95zcu", "Alice"),
        c2 = call("toolu_01EEe2V5HD1Ac4rKiUR4HD2T", "Bob"),
        c3 = call("toolu_01XFyAjstT3966qvRynZyVPo", "Charlie"),
        c4 = call("toolu_013mnQZbgtK2oe3Mo3XKJsx3", "Daisy"),
        r1 = result("toolu_0167cfEnoQaPviGdVXA95zcu", "alice is bob's wife"),
        r2 = result("toolu_01EEe2V5HD1Ac4rKiUR4HD2T", "bob is alice's husband"),
        r3 = result("toolu_01XFyAjstT3966qvRynZyVPo", "charlie is alice's son"),
        r4 = result(
            "toolu_013mnQZbgtK2oe3Mo3XKJsx3",
            "daisy is bob's daughter and charlie's younger sister"
        ),
    );
    assert_eq!(
        translate_json(&openai, "claude-haiku-4-5"),
        fixture_json("parallel_tool_use_followup.req.json")
    );
}

#[test]
fn image_url_and_base64_requests() {
    let openai = r#"{"model":"vision","max_tokens":4096,"stream":false,"messages":[{"role":"user","content":[
        {"type":"text","text":"What is this vegetable?"},
        {"type":"image_url","image_url":{"url":"https://t3.ftcdn.net/jpg/00/85/79/92/360_F_85799278_0BBGV9OAdQDTLnKwAPBCcg1J7QtiieJY.jpg"}}]}]}"#;
    assert_eq!(
        translate_json(openai, "claude-haiku-4-5"),
        fixture_json("image_url_input.req.json")
    );

    // The recorded JPEG, sent as a data URI.
    let expected = fixture_json("image_base64_input.req.json");
    let data = expected["messages"][0]["content"][1]["source"]["data"]
        .as_str()
        .unwrap();
    assert!(data.starts_with("/9j/4AAQSkZJRgABAQEBLAEsAAD/"));
    let openai = format!(
        r#"{{"model":"vision","max_tokens":4096,"stream":false,"messages":[{{"role":"user","content":[
        {{"type":"text","text":"What is this vegetable?"}},
        {{"type":"image_url","image_url":{{"url":"data:image/jpeg;base64,{data}","detail":"auto"}}}}]}}]}}"#
    );
    assert_eq!(translate_json(&openai, "claude-haiku-4-5"), expected);
}

#[test]
fn prompt_cache_requests_pass_top_level_cache_control() {
    let expected = fixture_json("prompt_cache.req.json");
    let long = expected["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(long.starts_with("Please explain what Python is and its main use cases."));
    let openai = format!(
        r#"{{"model":"py","max_tokens":4096,"stream":false,"cache_control":{{"ttl":"5m","type":"ephemeral"}},
            "messages":[{{"role":"system","content":"You are a helpful assistant."}},
                        {{"role":"user","content":[{{"type":"text","text":{long}}}]}}]}}"#,
        long = serde_json::to_string(long).unwrap()
    );
    assert_eq!(translate_json(&openai, "claude-sonnet-4-5"), expected);

    let expected = fixture_json("prompt_cache_hit.req.json");
    let answer = expected["messages"][1]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(answer.starts_with("# What is Python?"));
    let openai = format!(
        r#"{{"model":"py","max_tokens":4096,"stream":false,"cache_control":{{"ttl":"5m","type":"ephemeral"}},
            "messages":[{{"role":"system","content":"You are a helpful assistant."}},
                        {{"role":"user","content":[{{"type":"text","text":{long}}}]}},
                        {{"role":"assistant","content":[{{"type":"text","text":{answer}}}]}},
                        {{"role":"user","content":[{{"type":"text","text":"Can you summarize that in one sentence?"}}]}}]}}"#,
        long = serde_json::to_string(long).unwrap(),
        answer = serde_json::to_string(answer).unwrap()
    );
    assert_eq!(translate_json(&openai, "claude-sonnet-4-5"), expected);
}

#[test]
fn reasoning_effort_low_is_the_recorded_thinking_budget() {
    let openai = r#"{"model":"t","max_tokens":4096,"stream":true,"reasoning_effort":"low",
        "messages":[{"role":"user","content":[{"type":"text","text":"How do I cross the street?"}]}]}"#;
    assert_eq!(
        translate_json(openai, "claude-sonnet-4-0"),
        fixture_json("stream_thinking.req.json")
    );
    // A thinking object from the client is sent as given and wins.
    let openai = r#"{"model":"t","max_tokens":4096,"stream":true,"reasoning_effort":"high",
        "thinking":{"budget_tokens":1024,"type":"enabled"},
        "messages":[{"role":"user","content":[{"type":"text","text":"How do I cross the street?"}]}]}"#;
    assert_eq!(
        translate_json(openai, "claude-sonnet-4-0"),
        fixture_json("stream_thinking.req.json")
    );
}

#[test]
fn error_fixture_requests() {
    let openai = r#"{"model":"o","max_tokens":4096,"stream":false,"output_config":{"effort":"xhigh"},
        "messages":[{"role":"user","content":[{"type":"text","text":"What is 2+2?"}]}]}"#;
    assert_eq!(
        translate_json(openai, "claude-opus-4-6"),
        fixture_json("error_400_invalid_request.req.json")
    );
    let openai = r#"{"model":"o","max_completion_tokens":4096,"stream":false,
        "messages":[{"role":"user","content":[{"type":"text","text":"hello"}]}]}"#;
    assert_eq!(
        translate_json(openai, "claude-sonet-4-5"),
        fixture_json("error_404_model_not_found.req.json")
    );
}

/// JSON numbers as f64 (`temperature` is a float in OpenAI's type: 0 goes out as 0.0).
fn floats(v: Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map_or(Value::Number(n), Value::from),
        Value::Array(a) => Value::Array(a.into_iter().map(floats).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, floats(v))).collect()),
        other => other,
    }
}

#[test]
fn recorded_http_requests() {
    let openai = r#"{"model":"opus","messages":[{"role":"user","content":"Hello, how are you?"}],"max_tokens":100,"temperature":0}"#;
    assert_eq!(
        floats(translate_json(openai, "claude-3-opus-20240229")),
        floats(http_request_body("message_text.http.txt"))
    );
    let openai = r#"{"model":"opus","messages":[{"role":"user","content":"Count from 1 to 5"}],"max_tokens":100,"stream":true,"temperature":0}"#;
    assert_eq!(
        floats(translate_json(openai, "claude-3-opus-20240229")),
        floats(http_request_body("stream_text.http.txt"))
    );
    let openai = r#"{"model":"opus","messages":[{"role":"user","content":"What's the weather like?"}],"max_tokens":100,"temperature":0,
        "tools":[{"type":"function","function":{"name":"get_weather","description":"Get the weather for a location",
          "parameters":{"properties":{"location":{"description":"The location to get weather for","type":"string"}},"required":["location"],"type":"object"}}}]}"#;
    assert_eq!(
        floats(translate_json(openai, "claude-3-opus-20240229")),
        floats(http_request_body("message_beta_header.http.txt"))
    );
}

#[test]
fn system_and_developer_messages_anywhere_and_role_merging() {
    let v = translate_json(
        r#"{"model":"m","messages":[
            {"role":"system","content":"A"},
            {"role":"user","content":"u1"},
            {"role":"developer","content":[{"type":"text","text":"B"},{"type":"text","text":"C","cache_control":{"type":"ephemeral"}}]},
            {"role":"user","content":[{"type":"text","text":"u2"}]},
            {"role":"assistant","content":"a1"},
            {"role":"assistant","content":"a2"},
            {"role":"user","content":"u3","cache_control":{"type":"ephemeral","ttl":"1h"}}]}"#,
        "m",
    );
    assert_eq!(
        v["system"],
        serde_json::json!([
            {"type":"text","text":"A"},
            {"type":"text","text":"B"},
            {"type":"text","text":"C","cache_control":{"type":"ephemeral"}}
        ])
    );
    assert_eq!(
        v["messages"],
        serde_json::json!([
            {"role":"user","content":[{"type":"text","text":"u1"},{"type":"text","text":"u2"}]},
            {"role":"assistant","content":[{"type":"text","text":"a1"},{"type":"text","text":"a2"}]},
            {"role":"user","content":[{"type":"text","text":"u3","cache_control":{"type":"ephemeral","ttl":"1h"}}]}
        ])
    );
    assert_eq!(v["max_tokens"], 4096);
}

#[test]
fn tool_results_come_before_the_next_user_text() {
    let v = translate_json(
        r#"{"model":"m","messages":[
            {"role":"user","content":"q"},
            {"role":"assistant","content":"Checking.","tool_calls":[
               {"id":"toolu_1","type":"function","function":{"name":"f","arguments":""}},
               {"id":"toolu_2","type":"function","function":{"name":"g","arguments":"{\"a\": [1, 2]}"}}]},
            {"role":"tool","tool_call_id":"toolu_1","content":[{"type":"text","text":"r1"}]},
            {"role":"tool","tool_call_id":"toolu_2","content":"r2","cache_control":{"type":"ephemeral"}},
            {"role":"user","content":"thanks"}]}"#,
        "m",
    );
    assert_eq!(
        v["messages"],
        serde_json::json!([
            {"role":"user","content":"q"},
            {"role":"assistant","content":[
                {"type":"text","text":"Checking."},
                {"type":"tool_use","id":"toolu_1","name":"f","input":{}},
                {"type":"tool_use","id":"toolu_2","name":"g","input":{"a":[1,2]}}]},
            {"role":"user","content":[
                {"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"r1"}]},
                {"type":"tool_result","tool_use_id":"toolu_2","content":"r2","cache_control":{"type":"ephemeral"}},
                {"type":"text","text":"thanks"}]}
        ])
    );
}

#[test]
fn invalid_tool_arguments_name_the_message() {
    for args in [r#"{\"a\":"#, "[1]", "not json"] {
        let err = try_translate(
            &format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"q"}},
                {{"role":"assistant","tool_calls":[{{"id":"t","type":"function","function":{{"name":"f","arguments":"{args}"}}}}]}}]}}"#
            ),
            "m",
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRequest, "{args}");
        assert_eq!(err.param(), Some("messages"));
        assert!(
            err.message().contains("messages[1].tool_calls[0]"),
            "{}",
            err.message()
        );
    }
}

#[test]
fn tools_choices_and_parallelism() {
    let base = r#""messages":[{"role":"user","content":"q"}],"tools":[
        {"type":"function","function":{"name":"f","parameters":{"properties":{}},"strict":true},"cache_control":{"type":"ephemeral"}},
        {"type":"function","function":{"name":"g","description":"G","strict":false}},
        {"type":"web_search_20250305","name":"web_search","max_uses":3}]"#;
    let v = translate_json(
        &format!(r#"{{"model":"m",{base},"tool_choice":"required","parallel_tool_calls":false}}"#),
        "m",
    );
    assert_eq!(
        v["tools"],
        serde_json::json!([
            {"name":"f","input_schema":{"type":"object","properties":{}},"strict":true,"cache_control":{"type":"ephemeral"}},
            {"name":"g","description":"G","input_schema":{"type":"object","properties":{}}},
            {"type":"web_search_20250305","name":"web_search","max_uses":3}
        ])
    );
    assert_eq!(
        v["tool_choice"],
        serde_json::json!({"type":"any","disable_parallel_tool_use":true})
    );
    let choice = |c: &str| {
        translate_json(&format!(r#"{{"model":"m",{base},"tool_choice":{c}}}"#), "m")["tool_choice"]
            .clone()
    };
    assert_eq!(choice(r#""auto""#), serde_json::json!({"type":"auto"}));
    assert_eq!(choice(r#""none""#), serde_json::json!({"type":"none"}));
    assert_eq!(
        choice(r#"{"type":"function","function":{"name":"g"}}"#),
        serde_json::json!({"type":"tool","name":"g"})
    );
    assert_eq!(
        choice(r#"{"type":"tool","name":"f","disable_parallel_tool_use":true}"#),
        serde_json::json!({"type":"tool","name":"f","disable_parallel_tool_use":true})
    );
    let v = translate_json(
        &format!(r#"{{"model":"m",{base},"parallel_tool_calls":false}}"#),
        "m",
    );
    assert_eq!(
        v["tool_choice"],
        serde_json::json!({"type":"auto","disable_parallel_tool_use":true})
    );
    let v = translate_json(
        &format!(r#"{{"model":"m",{base},"parallel_tool_calls":true}}"#),
        "m",
    );
    assert!(v.get("tool_choice").is_none());
}

#[test]
fn response_formats() {
    let v = translate_json(
        r#"{"model":"m","messages":[{"role":"user","content":"q"}],
            "response_format":{"type":"json_schema","json_schema":{"name":"n","strict":true,"schema":{"type":"object","properties":{"a":{"type":"string"}}}}}}"#,
        "m",
    );
    assert_eq!(
        v["output_config"],
        serde_json::json!({"format":{"type":"json_schema","schema":{"type":"object","properties":{"a":{"type":"string"}}}}})
    );
    let v = translate_json(
        r#"{"model":"m","messages":[{"role":"user","content":"q"}],"response_format":{"type":"json_object"}}"#,
        "m",
    );
    assert_eq!(
        v["tool_choice"],
        serde_json::json!({"type":"tool","name":"json_tool_call"})
    );
    assert_eq!(v["tools"][0]["name"], "json_tool_call");
    assert_eq!(
        v["tools"][0]["input_schema"],
        serde_json::json!({"type":"object"})
    );
    let v = translate_json(
        r#"{"model":"m","messages":[{"role":"user","content":"q"}],"response_format":{"type":"text"}}"#,
        "m",
    );
    assert!(v.get("output_config").is_none() && v.get("tools").is_none());
    let err = try_translate(
        r#"{"model":"m","messages":[{"role":"user","content":"q"}],"response_format":{"type":"json_schema","json_schema":{"name":"n"}}}"#,
        "m",
    )
    .unwrap_err();
    assert_eq!(err.param(), Some("response_format"));
}

#[test]
fn sampling_stop_user_and_tier() {
    let v = translate_json(
        r#"{"model":"m","messages":[{"role":"user","content":"q"}],"temperature":1.7,"top_p":0.9,"top_k":40,
            "stop":"END","user":"u-42","service_tier":"default","max_tokens":7,"max_completion_tokens":9}"#,
        "m",
    );
    assert_eq!(v["temperature"], 1.0, "clamped to Anthropic's 0..1");
    assert_eq!(v["top_p"], 0.9);
    assert_eq!(v["top_k"], 40);
    assert_eq!(v["stop_sequences"], serde_json::json!(["END"]));
    assert_eq!(v["metadata"], serde_json::json!({"user_id":"u-42"}));
    assert_eq!(v["service_tier"], "standard_only");
    assert_eq!(v["max_tokens"], 9, "max_completion_tokens wins");
    let v = translate_json(
        r#"{"model":"m","messages":[{"role":"user","content":"q"}],"safety_identifier":"s-1","stop":["a","b"]}"#,
        "m",
    );
    assert_eq!(v["metadata"], serde_json::json!({"user_id":"s-1"}));
    assert_eq!(v["stop_sequences"], serde_json::json!(["a", "b"]));
    let err =
        try_translate(r#"{"model":"m","messages":[],"service_tier":"flex"}"#, "m").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedParams);
}

#[test]
fn unsupported_params_are_refused_or_dropped() {
    let err = try_translate(
        r#"{"model":"m","messages":[{"role":"user","content":"q"}],"n":2}"#,
        "m",
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedParams);
    assert_eq!(err.param(), Some("n"));
    let req = r#"{"model":"m","messages":[{"role":"user","content":"q"}],"n":2,"logprobs":true,"seed":3}"#;
    let err = try_translate(req, "m").unwrap_err();
    assert!(
        err.message().contains("`n`") && err.message().contains("`seed`"),
        "{}",
        err.message()
    );
    let lenient = DropParams {
        drop: true,
        additional: vec![],
    };
    let v = try_translate_with(req, "m", &lenient, &[]).unwrap();
    for k in ["n", "logprobs", "seed"] {
        assert!(v.get(k).is_none(), "{k}");
    }
    // n = 1 is what Anthropic does anyway.
    assert!(try_translate(r#"{"model":"m","messages":[],"n":1}"#, "m").is_ok());
    // additional_drop_params also drops supported and unknown fields.
    let v = translate_json(
        r#"{"model":"m","messages":[],"temperature":0.5,"top_k":3,"additional_drop_params":["temperature","top_k"]}"#,
        "m",
    );
    assert!(v.get("temperature").is_none() && v.get("top_k").is_none());
}

#[test]
fn reasoning_budgets() {
    let thinking = |effort: &str, max: u32| {
        try_translate(
            &format!(
                r#"{{"model":"m","messages":[],"reasoning_effort":"{effort}","max_tokens":{max}}}"#
            ),
            "m",
        )
        .map(|v| v.get("thinking").cloned())
    };
    let budget = |b: u32| Some(serde_json::json!({"type":"enabled","budget_tokens":b}));
    assert_eq!(thinking("minimal", 8000).unwrap(), budget(1024));
    assert_eq!(thinking("low", 8000).unwrap(), budget(1024));
    assert_eq!(thinking("medium", 8000).unwrap(), budget(2048));
    assert_eq!(thinking("high", 8000).unwrap(), budget(4096));
    assert_eq!(
        thinking("high", 3000).unwrap(),
        budget(2999),
        "kept below max_tokens"
    );
    assert_eq!(thinking("none", 8000).unwrap(), None);
    assert_eq!(
        thinking("low", 1000).unwrap_err().param(),
        Some("reasoning_effort")
    );
    assert_eq!(
        thinking("ultra", 8000).unwrap_err().param(),
        Some("reasoning_effort")
    );
}

#[test]
fn thinking_blocks_go_back_first_with_their_signatures() {
    let v = translate_json(
        r#"{"model":"m","messages":[{"role":"user","content":"q"},
            {"role":"assistant","content":"A","reasoning_content":"hmm",
             "thinking_blocks":[{"type":"thinking","thinking":"hmm","signature":"c2ln"},{"type":"redacted_thinking","data":"xyz"}],
             "tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{}"}}]}]}"#,
        "m",
    );
    assert_eq!(
        v["messages"][1]["content"],
        serde_json::json!([
            {"type":"thinking","thinking":"hmm","signature":"c2ln"},
            {"type":"redacted_thinking","data":"xyz"},
            {"type":"text","text":"A"},
            {"type":"tool_use","id":"t1","name":"f","input":{}}
        ])
    );
    assert!(v["messages"][1].get("reasoning_content").is_none());
}

#[test]
fn files_audio_and_native_parts() {
    let v = translate_json(
        r#"{"model":"m","messages":[{"role":"user","content":[
            {"type":"file","file":{"file_data":"data:application/pdf;base64,JVBERi0=","filename":"a.pdf"}},
            {"type":"file","file":{"file_data":"data:text/plain;base64,aGVsbG8="}},
            {"type":"file","file":{"file_id":"file_123"}},
            {"type":"file","file":{"file_data":"data:image/png;base64,iVBO"}},
            {"type":"search_result","source":"s","title":"t","content":[]}]}]}"#,
        "m",
    );
    assert_eq!(
        v["messages"][0]["content"],
        serde_json::json!([
            {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="},"title":"a.pdf"},
            {"type":"document","source":{"type":"text","media_type":"text/plain","data":"hello"}},
            {"type":"document","source":{"type":"file","file_id":"file_123"}},
            {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBO"}},
            {"type":"search_result","source":"s","title":"t","content":[]}
        ])
    );
    let err = try_translate(
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AA==","format":"wav"}}]}]}"#,
        "m",
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedParams);
    let err = try_translate(
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,raw"}}]}]}"#,
        "m",
    )
    .unwrap_err();
    assert!(err.message().contains("base64"), "{}", err.message());
}

#[test]
fn cache_control_injection_points() {
    let points = vec![
        CachePoint {
            location: Some("message".into()),
            role: Some("system".into()),
            ..Default::default()
        },
        CachePoint {
            location: Some("message".into()),
            index: Some(-1),
            control: Some(serde_json::json!({"type":"ephemeral","ttl":"1h"})),
            ..Default::default()
        },
    ];
    let v = try_translate_with(
        r#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]}"#,
        "m",
        &DropParams::default(),
        &points,
    )
    .unwrap();
    assert_eq!(
        v["system"],
        serde_json::json!([{"type":"text","text":"S","cache_control":{"type":"ephemeral"}}])
    );
    assert_eq!(v["messages"][0]["content"], "a");
    assert_eq!(
        v["messages"][2]["content"],
        serde_json::json!([{"type":"text","text":"c","cache_control":{"type":"ephemeral","ttl":"1h"}}])
    );
}

#[test]
fn unknown_fields_are_forwarded_and_web_search_maps_to_the_server_tool() {
    let v = translate_json(
        r#"{"model":"m","messages":[{"role":"user","content":"q"}],"container":"c-1","inference_geo":"us",
            "system":"native system","metadata":{"tags":["x"]},
            "web_search_options":{"search_context_size":"high","user_location":{"type":"approximate","approximate":{"city":"Oslo","country":"NO"}}}}"#,
        "m",
    );
    assert_eq!(v["container"], "c-1");
    assert_eq!(v["inference_geo"], "us");
    assert_eq!(
        v["system"],
        serde_json::json!([{"type":"text","text":"native system"}])
    );
    assert!(
        v.get("metadata").is_none(),
        "LiteLLM metadata never goes upstream"
    );
    assert_eq!(
        v["tools"],
        serde_json::json!([{"type":"web_search_20250305","name":"web_search","max_uses":10,
            "user_location":{"type":"approximate","city":"Oslo","country":"NO"}}])
    );
}

#[test]
fn legacy_functions_and_unknown_roles_are_clear_errors() {
    let err = try_translate(
        r#"{"model":"m","messages":[{"role":"function","name":"f","content":"x"}]}"#,
        "m",
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedParams);
    let err = try_translate(
        r#"{"model":"m","messages":[{"role":"ipython","content":"x"}]}"#,
        "m",
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    let err = try_translate(
        r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
        "m",
    )
    .unwrap_err();
    assert!(err.message().contains("tool_call_id"));
}
