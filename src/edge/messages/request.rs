//! Anthropic Messages request → OpenAI [`ChatRequestBody`] (the reverse of
//! the Anthropic leaf's translation), so every layer and every provider can
//! serve a `/v1/messages` call.
//!
//! What has no OpenAI form is left out here — thinking blocks in the history,
//! `cache_control`, server-tool result blocks, `container`, `mcp_servers`, … —
//! because it only means something to Anthropic, and an Anthropic deployment
//! receives the client's original body instead (see the [parent module](super)).

use crate::error::Error;
use crate::types::{
    ChatRequestBody, Content, ContentPart, FileRef, JsonSchemaSpec, Message, PartType,
    ReasoningEffort, ResponseFormat, ResponseFormatType, Stop, StreamOptions, Tool, ToolCall,
    ToolChoice,
};
use serde::Deserialize;
use serde_json::Value;

/// The fields of a Messages request the conversion reads (everything else
/// rides along in the original body for Anthropic deployments).
#[derive(Debug, Deserialize)]
pub(crate) struct MessagesRequest {
    pub(crate) model: String,
    pub(crate) messages: Vec<InMessage>,
    #[serde(default)]
    pub(crate) max_tokens: Option<u32>,
    #[serde(default)]
    pub(crate) system: Option<Value>,
    #[serde(default)]
    pub(crate) stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) temperature: Option<f64>,
    #[serde(default)]
    pub(crate) top_p: Option<f64>,
    #[serde(default)]
    pub(crate) top_k: Option<u64>,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
    #[serde(default)]
    pub(crate) tools: Option<Vec<Value>>,
    #[serde(default)]
    pub(crate) tool_choice: Option<Value>,
    #[serde(default)]
    pub(crate) metadata: Option<Value>,
    #[serde(default)]
    pub(crate) thinking: Option<Value>,
    #[serde(default)]
    pub(crate) output_config: Option<Value>,
}

/// One message: a role and a string or a list of blocks.
#[derive(Debug, Deserialize)]
pub(crate) struct InMessage {
    pub(crate) role: String,
    pub(crate) content: Value,
}

/// Where a problem is: `messages[i]` or `messages[i].content[j]`. Formatted
/// only for an error message.
#[derive(Clone, Copy, Debug)]
struct At(usize, Option<usize>);

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            None => write!(f, "messages[{}]", self.0),
            Some(j) => write!(f, "messages[{}].content[{j}]", self.0),
        }
    }
}

fn bad(message: String) -> Error {
    Error::bad_request(message).with_param("messages")
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Text of a `system` value: a string, or the text of its text blocks joined by newlines.
fn system_text(v: &Value) -> Result<String, Error> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => Ok(blocks
            .iter()
            .filter_map(|b| str_of(b, "text"))
            .collect::<Vec<_>>()
            .join("\n")),
        Value::Null => Ok(String::new()),
        _ => Err(
            Error::bad_request("`system` must be a string or a list of text blocks")
                .with_param("system"),
        ),
    }
}

/// An image or document source as an OpenAI part.
fn source_part(block: &Value, at: At) -> Result<Option<ContentPart>, Error> {
    let kind = str_of(block, "type").unwrap_or("");
    let Some(source) = block.get("source") else {
        return Err(bad(format!("{at}: `{kind}` block without a `source`")));
    };
    let media = str_of(source, "media_type").unwrap_or("application/octet-stream");
    Ok(match (kind, str_of(source, "type")) {
        ("image", Some("base64")) => {
            let data = str_of(source, "data").unwrap_or("");
            Some(ContentPart::image(format!("data:{media};base64,{data}")))
        }
        ("image", Some("url")) => Some(ContentPart::image(str_of(source, "url").unwrap_or(""))),
        ("document", Some("base64")) => {
            let data = str_of(source, "data").unwrap_or("");
            let mut p = ContentPart::text("");
            p.kind = PartType::File;
            p.text = None;
            p.file = Some(FileRef {
                file_id: None,
                file_data: Some(format!("data:{media};base64,{data}")),
                filename: str_of(block, "title").map(str::to_owned),
                extra: Default::default(),
            });
            Some(p)
        }
        ("document", Some("text")) => Some(ContentPart::text(str_of(source, "data").unwrap_or(""))),
        ("document", Some("url")) => Some(ContentPart::text(format!(
            "[document: {}]",
            str_of(source, "url").unwrap_or("")
        ))),
        _ => None,
    })
}

/// Text of a `tool_result`'s content, plus images it holds (OpenAI tool
/// messages carry text only; images follow in a user message).
fn tool_result_content(
    content: Option<&Value>,
    at: At,
) -> Result<(String, Vec<ContentPart>), Error> {
    match content {
        None | Some(Value::Null) => Ok((String::new(), Vec::new())),
        Some(Value::String(s)) => Ok((s.clone(), Vec::new())),
        Some(Value::Array(blocks)) => {
            let mut text = String::new();
            let mut images = Vec::new();
            for b in blocks {
                match str_of(b, "type") {
                    Some("text") => text.push_str(str_of(b, "text").unwrap_or("")),
                    Some("image" | "document") => images.extend(source_part(b, at)?),
                    _ => {}
                }
            }
            Ok((text, images))
        }
        Some(_) => Err(bad(format!(
            "{at}: `content` must be a string or a list of blocks"
        ))),
    }
}

fn user_messages(content: &Value, at: At, out: &mut Vec<Message>) -> Result<(), Error> {
    let blocks = match content {
        Value::String(s) => {
            out.push(Message::user(s.clone()));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => {
            return Err(bad(format!(
                "{at}.content must be a string or a list of blocks"
            )));
        }
    };
    let mut parts: Vec<ContentPart> = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let at = At(at.0, Some(j));
        match str_of(b, "type") {
            Some("text") => parts.push(ContentPart::text(str_of(b, "text").unwrap_or(""))),
            Some("image" | "document") => parts.extend(source_part(b, at)?),
            Some("tool_result") => {
                let id = str_of(b, "tool_use_id")
                    .ok_or_else(|| bad(format!("{at}: `tool_result` without `tool_use_id`")))?;
                let (text, images) = tool_result_content(b.get("content"), at)?;
                out.push(Message::tool(id, text));
                parts.extend(images);
            }
            // search_result, container_upload, …: no OpenAI form.
            _ => {}
        }
    }
    if !parts.is_empty() {
        let all_text = parts.iter().all(|p| p.kind == PartType::Text);
        let content = if all_text && parts.len() == 1 {
            Content::Text(parts.pop().and_then(|p| p.text).unwrap_or_default())
        } else {
            Content::Parts(parts)
        };
        out.push(Message {
            content: Some(content),
            ..Message::user("")
        });
    }
    Ok(())
}

fn assistant_message(content: &Value, at: At) -> Result<Message, Error> {
    let mut m = Message::assistant("");
    m.content = None;
    match content {
        Value::String(s) => m.content = Some(Content::Text(s.clone())),
        Value::Array(blocks) => {
            let mut text: Option<String> = None;
            let mut calls = Vec::new();
            for b in blocks {
                match str_of(b, "type") {
                    Some("text") => text
                        .get_or_insert_with(String::new)
                        .push_str(str_of(b, "text").unwrap_or("")),
                    Some("tool_use") => {
                        let input = b
                            .get("input")
                            .cloned()
                            .unwrap_or(Value::Object(Default::default()));
                        calls.push(ToolCall::function(
                            str_of(b, "id").unwrap_or(""),
                            str_of(b, "name").unwrap_or(""),
                            input.to_string(),
                        ));
                    }
                    // thinking, redacted_thinking, server tool blocks: Anthropic-only.
                    _ => {}
                }
            }
            m.content = text.map(Content::Text);
            if !calls.is_empty() {
                m.tool_calls = Some(calls);
            }
        }
        _ => {
            return Err(bad(format!(
                "{at}.content must be a string or a list of blocks"
            )));
        }
    }
    Ok(m)
}

fn tool_of(v: &Value, j: usize) -> Result<Tool, Error> {
    let kind = str_of(v, "type");
    if matches!(kind, None | Some("custom")) || v.get("input_schema").is_some() {
        let name = str_of(v, "name").ok_or_else(|| {
            Error::bad_request(format!("`tools[{j}].name` is required")).with_param("tools")
        })?;
        let mut t = Tool::function(
            name,
            str_of(v, "description").unwrap_or(""),
            v.get("input_schema")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"type": "object"})),
        );
        if let Some(f) = t.function.as_mut() {
            if f.description.as_deref() == Some("") {
                f.description = None;
            }
            f.strict = v.get("strict").and_then(Value::as_bool);
        }
        return Ok(t);
    }
    // A server tool (web search, code execution, …): kept in its own shape.
    serde_json::from_value(v.clone()).map_err(|e| {
        Error::bad_request(format!("`tools[{j}]` is not valid: {e}")).with_param("tools")
    })
}

fn effort_for_budget(budget: u64) -> ReasoningEffort {
    match budget {
        0..=1024 => ReasoningEffort::Low,
        1025..=2048 => ReasoningEffort::Medium,
        _ => ReasoningEffort::High,
    }
}

/// Converts a parsed Messages request into an OpenAI request body.
pub(crate) fn to_openai(req: MessagesRequest) -> Result<ChatRequestBody, Error> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        let text = system_text(system)?;
        if !text.is_empty() {
            messages.push(Message::system(text));
        }
    }
    for (i, m) in req.messages.iter().enumerate() {
        let at = At(i, None);
        match m.role.as_str() {
            "user" => user_messages(&m.content, at, &mut messages)?,
            "assistant" => messages.push(assistant_message(&m.content, at)?),
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(bad(format!(
                    "{at}.role must be `user` or `assistant`, not `{shown}`"
                )));
            }
        }
    }
    let mut body = ChatRequestBody::new(req.model, messages);
    // Anthropic accepts 0 (warm the prompt cache, generate nothing); the
    // closest an OpenAI-style upstream can do is one token.
    body.max_tokens = req.max_tokens.map(|n| n.max(1));
    body.temperature = req.temperature;
    body.top_p = req.top_p;
    body.stop = req.stop_sequences.filter(|s| !s.is_empty()).map(Stop::Many);
    if req.stream == Some(true) {
        body.stream = Some(true);
        body.stream_options = Some(StreamOptions {
            include_usage: Some(true),
            include_obfuscation: None,
            extra: Default::default(),
        });
    }
    if let Some(k) = req.top_k {
        body.extra
            .insert("top_k", &k)
            .map_err(|e| Error::internal(e.to_string()))?;
    }
    if let Some(user) = req
        .metadata
        .as_ref()
        .and_then(|m| str_of(m, "user_id"))
        // OpenAI limits `user` to 64 characters; longer ids (Claude Code's
        // session ids) would make the upstream refuse the request.
        .filter(|u| !u.is_empty() && u.chars().count() <= 64)
    {
        body.user = Some(user.to_owned());
    }
    if let Some(tools) = &req.tools {
        let list = tools
            .iter()
            .enumerate()
            .map(|(j, t)| tool_of(t, j))
            .collect::<Result<Vec<_>, _>>()?;
        if !list.is_empty() {
            body.tools = Some(list);
        }
    }
    if let Some(choice) = &req.tool_choice {
        body.tool_choice = match str_of(choice, "type") {
            Some("auto") => Some(ToolChoice::Auto),
            Some("any") => Some(ToolChoice::Required),
            Some("none") => Some(ToolChoice::None),
            Some("tool") => Some(ToolChoice::Function(
                str_of(choice, "name").unwrap_or("").to_owned(),
            )),
            _ => {
                return Err(Error::bad_request(
                    "`tool_choice.type` must be auto, any, tool or none",
                )
                .with_param("tool_choice"));
            }
        };
        if choice
            .get("disable_parallel_tool_use")
            .and_then(Value::as_bool)
            == Some(true)
        {
            body.parallel_tool_calls = Some(false);
        }
    }
    if let Some(t) = &req.thinking
        && str_of(t, "type") == Some("enabled")
    {
        let budget = t
            .get("budget_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(1024);
        body.reasoning_effort = Some(effort_for_budget(budget));
    }
    if let Some(cfg) = &req.output_config {
        if let Some(schema) = cfg
            .get("format")
            .filter(|f| str_of(f, "type") == Some("json_schema"))
            .and_then(|f| f.get("schema"))
        {
            body.response_format = Some(ResponseFormat {
                kind: ResponseFormatType::JsonSchema,
                json_schema: Some(JsonSchemaSpec {
                    name: "response".to_owned(),
                    description: None,
                    schema: Some(schema.clone()),
                    strict: Some(true),
                    extra: Default::default(),
                }),
                extra: Default::default(),
            });
        }
        if body.reasoning_effort.is_none() {
            body.reasoning_effort = match str_of(cfg, "effort") {
                Some("low") => Some(ReasoningEffort::Low),
                Some("medium") => Some(ReasoningEffort::Medium),
                Some("high" | "xhigh" | "max") => Some(ReasoningEffort::High),
                _ => None,
            };
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(json: &str) -> Value {
        let req: MessagesRequest = serde_json::from_str(json).unwrap();
        serde_json::to_value(to_openai(req).unwrap()).unwrap()
    }

    #[test]
    fn system_messages_tools_and_params() {
        let v = convert(
            r#"{"model":"m","max_tokens":100,"system":[{"type":"text","text":"A","cache_control":{"type":"ephemeral"}},{"type":"text","text":"B"}],
                "messages":[
                  {"role":"user","content":"q"},
                  {"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"},{"type":"text","text":"Checking."},
                     {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Oslo"}}]},
                  {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"-3"}]},{"type":"text","text":"and?"}]}],
                "tools":[{"name":"get_weather","description":"d","input_schema":{"type":"object"}},{"type":"web_search_20250305","name":"web_search","max_uses":2}],
                "tool_choice":{"type":"any","disable_parallel_tool_use":true},
                "stop_sequences":["END"],"temperature":0.5,"top_p":0.9,"top_k":7,"metadata":{"user_id":"u1"},
                "thinking":{"type":"enabled","budget_tokens":2000},"stream":true}"#,
        );
        assert_eq!(
            v["messages"],
            serde_json::json!([
                {"role":"system","content":"A\nB"},
                {"role":"user","content":"q"},
                {"role":"assistant","content":"Checking.","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},
                {"role":"tool","content":"-3","tool_call_id":"toolu_1"},
                {"role":"user","content":"and?"}
            ])
        );
        assert_eq!(
            v["tools"],
            serde_json::json!([
                {"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object"}}},
                {"type":"web_search_20250305","name":"web_search","max_uses":2}
            ])
        );
        assert_eq!(v["tool_choice"], "required");
        assert_eq!(v["parallel_tool_calls"], false);
        assert_eq!(v["stop"], serde_json::json!(["END"]));
        assert_eq!(v["max_tokens"], 100);
        assert_eq!(v["top_k"], 7);
        assert_eq!(v["user"], "u1");
        assert_eq!(v["reasoning_effort"], "medium");
        assert_eq!(v["stream"], true);
        assert_eq!(v["stream_options"]["include_usage"], true);
    }

    #[test]
    fn images_documents_and_formats() {
        let v = convert(
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[
                {"type":"text","text":"What is this?"},
                {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBO"}},
                {"type":"image","source":{"type":"url","url":"https://x/y.png"}},
                {"type":"document","title":"a.pdf","source":{"type":"base64","media_type":"application/pdf","data":"JVBE"}}]}],
               "output_config":{"format":{"type":"json_schema","schema":{"type":"object"}},"effort":"max"}}"#,
        );
        assert_eq!(
            v["messages"][0]["content"],
            serde_json::json!([
                {"type":"text","text":"What is this?"},
                {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}},
                {"type":"image_url","image_url":{"url":"https://x/y.png"}},
                {"type":"file","file":{"file_data":"data:application/pdf;base64,JVBE","filename":"a.pdf"}}
            ])
        );
        assert_eq!(v["response_format"]["type"], "json_schema");
        assert_eq!(
            v["response_format"]["json_schema"]["schema"],
            serde_json::json!({"type":"object"})
        );
        assert_eq!(v["reasoning_effort"], "high");
        assert!(v.get("stream").is_none());
    }

    #[test]
    fn zero_max_tokens_and_long_user_ids() {
        let long = "u".repeat(65);
        let v = convert(&format!(
            r#"{{"model":"m","max_tokens":0,"metadata":{{"user_id":"{long}"}},"messages":[{{"role":"user","content":"q"}}]}}"#
        ));
        assert_eq!(v["max_tokens"], 1);
        assert!(v.get("user").is_none());
    }

    #[test]
    fn bad_shapes_are_400s() {
        for json in [
            r#"{"model":"m","messages":[{"role":"system","content":"x"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"tool_result"}]}]}"#,
            r#"{"model":"m","messages":[],"tool_choice":{"type":"sometimes"}}"#,
            r#"{"model":"m","messages":[],"system":5}"#,
            r#"{"model":"m","messages":[],"tools":[{"description":"no name","input_schema":{}}]}"#,
        ] {
            let req: MessagesRequest = serde_json::from_str(json).unwrap();
            let err = to_openai(req).unwrap_err();
            assert_eq!(err.status().as_u16(), 400, "{json}");
        }
    }
}
