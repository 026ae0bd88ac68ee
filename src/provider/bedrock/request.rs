//! OpenAI chat request → Bedrock Converse request body.
//!
//! Pure: a [`ChatRequestBody`] and [`TranslateOptions`] in, a JSON body out.

use super::StructuredOutput;
use crate::error::{Error, ErrorKind};
use crate::types::{
    ChatRequestBody, Content, ContentPart, Extra, Message, PartType, ReasoningEffort,
    ResponseFormatType, Role, Stop, ToolChoice,
};
use serde_json::{Map, Value, json};

/// OpenAI parameters the Converse translation honours.
pub const SUPPORTED: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "response_format",
    "reasoning_effort",
];

/// Converse request keys that live at the top level of the body, not in
/// `additionalModelRequestFields`.
const TOP_LEVEL: &[&str] = &[
    "guardrailConfig",
    "performanceConfig",
    "requestMetadata",
    "promptVariables",
    "additionalModelResponseFieldPaths",
    "outputConfig",
    "serviceTier",
];

/// Request extras that are not model parameters (LiteLLM or gateway fields).
const NOT_FORWARDED: &[&str] = &["thinking_blocks", "user_continue_message", "json_mode"];

/// Thinking budgets for `reasoning_effort` on Claude (LiteLLM's defaults).
fn thinking_budget(effort: &ReasoningEffort) -> Option<u64> {
    match effort {
        ReasoningEffort::None => None,
        ReasoningEffort::Minimal | ReasoningEffort::Low => Some(1024),
        ReasoningEffort::Medium => Some(2048),
        ReasoningEffort::High => Some(4096),
        _ => Some(2048),
    }
}

/// Output tokens added on top of a thinking budget when the client set no limit.
const THINKING_HEADROOM: u64 = 4096;

/// The model family, which decides where `top_k` and reasoning go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Anthropic Claude (`anthropic.…`, `us.anthropic.…`, ARNs of Claude profiles).
    Claude,
    /// Amazon Nova.
    Nova,
    /// Everything else (Llama, Mistral, gpt-oss, DeepSeek, Kimi, …).
    Other,
}

impl Family {
    /// Guesses the family from a model id, profile id or ARN.
    pub fn of(model: &str) -> Family {
        let m = model.to_ascii_lowercase();
        if m.contains("anthropic.") || m.contains("claude") {
            Family::Claude
        } else if m.contains("amazon.nova") || m.contains("nova-") {
            Family::Nova
        } else {
            Family::Other
        }
    }
}

/// How to translate.
#[derive(Clone)]
pub struct TranslateOptions<'a> {
    /// The model family.
    pub family: Family,
    /// Where `response_format: json_schema` goes.
    pub structured_output: StructuredOutput,
    /// Deployment defaults (`litellm_params` provider parameters); the request's own values win.
    pub defaults: &'a Extra,
    /// OpenAI parameters to leave out (from `drop_params`).
    pub dropped: &'a [&'a str],
    /// Unknown request fields to leave out (`additional_drop_params`).
    pub drop_extra: &'a dyn Fn(&str) -> bool,
}

/// The name of the tool used for JSON mode, when the translation added one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsonMode(pub Option<String>);

fn invalid(param: &str, message: impl Into<String>) -> Error {
    Error::bad_request(message.into()).with_param(param)
}

fn cache_point() -> Value {
    json!({"cachePoint": {"type": "default"}})
}

fn has_cache_control(extra: &Extra) -> bool {
    extra
        .get("cache_control")
        .is_some_and(|v| v.get().trim() != "null")
}

/// Bedrock's image format for a media type.
fn image_format(media: &str) -> Option<&'static str> {
    match media.to_ascii_lowercase().as_str() {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

/// Bedrock's document format for a media type.
fn document_format(media: &str) -> Option<&'static str> {
    Some(match media.to_ascii_lowercase().as_str() {
        "application/pdf" => "pdf",
        "text/csv" => "csv",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "text/html" => "html",
        "text/plain" => "txt",
        "text/markdown" => "md",
        _ => return None,
    })
}

/// Splits a `data:<media>;base64,<data>` URI.
fn data_uri(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((media, data))
}

fn check_base64(data: &str, param: &str) -> Result<(), Error> {
    let ok = !data.is_empty()
        && data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if ok {
        Ok(())
    } else {
        Err(invalid(param, "the data: URI does not hold valid base64"))
    }
}

fn image_block(url: &str) -> Result<Value, Error> {
    let Some((media, data)) = data_uri(url) else {
        return Err(invalid(
            "messages",
            "Bedrock needs the image bytes: pass images as `data:image/<png|jpeg|gif|webp>;base64,…` URIs \
             (tollgate does not download image URLs for Bedrock)",
        ));
    };
    let Some(format) = image_format(media) else {
        return Err(invalid(
            "messages",
            format!(
                "Bedrock does not accept images of type `{media}` (png, jpeg, gif and webp only)"
            ),
        ));
    };
    check_base64(data, "messages")?;
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

/// A document name Bedrock accepts: letters, digits, spaces, hyphens, parentheses, brackets.
fn document_name(name: Option<&str>, n: usize) -> String {
    let cleaned: String = name
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, ' ' | '-' | '(' | ')' | '[' | ']') {
                c
            } else {
                ' '
            }
        })
        .collect();
    let cleaned = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if cleaned.is_empty() {
        format!("Document {n}")
    } else {
        cleaned
    }
}

struct Blocks {
    documents: usize,
}

impl Blocks {
    /// The Converse blocks of one content part.
    fn part(&mut self, part: &ContentPart, out: &mut Vec<Value>) -> Result<(), Error> {
        match &part.kind {
            PartType::Text => {
                if let Some(t) = part.text.as_deref().filter(|t| !t.is_empty()) {
                    out.push(json!({"text": t}));
                }
            }
            PartType::ImageUrl => {
                let url = part
                    .image_url
                    .as_ref()
                    .map(|i| i.url.as_str())
                    .ok_or_else(|| invalid("messages", "an image_url part without a URL"))?;
                out.push(image_block(url)?);
            }
            PartType::File => {
                let file = part
                    .file
                    .as_ref()
                    .ok_or_else(|| invalid("messages", "a file part without a file"))?;
                let Some(data) = file.file_data.as_deref() else {
                    return Err(invalid(
                        "messages",
                        "Bedrock needs the file bytes inline (`file_data` as a data: URI); file ids are not supported",
                    ));
                };
                let Some((media, b64)) = data_uri(data) else {
                    return Err(invalid(
                        "messages",
                        "`file_data` must be a base64 data: URI",
                    ));
                };
                if image_format(media).is_some() {
                    out.push(image_block(data)?);
                } else if let Some(format) = document_format(media) {
                    check_base64(b64, "messages")?;
                    self.documents += 1;
                    out.push(json!({"document": {
                        "name": document_name(file.filename.as_deref(), self.documents),
                        "format": format,
                        "source": {"bytes": b64},
                    }}));
                } else {
                    return Err(invalid(
                        "messages",
                        format!("Bedrock does not accept files of type `{media}`"),
                    ));
                }
            }
            PartType::Refusal => {
                if let Some(t) = part.refusal.as_deref().filter(|t| !t.is_empty()) {
                    out.push(json!({"text": t}));
                }
            }
            other => {
                return Err(invalid(
                    "messages",
                    format!("Bedrock Converse does not accept `{other}` content parts"),
                ));
            }
        }
        if has_cache_control(&part.extra) {
            out.push(cache_point());
        }
        Ok(())
    }

    fn content(&mut self, content: Option<&Content>, out: &mut Vec<Value>) -> Result<(), Error> {
        match content {
            None => Ok(()),
            Some(Content::Text(t)) => {
                if !t.is_empty() {
                    out.push(json!({"text": t}));
                }
                Ok(())
            }
            Some(Content::Parts(parts)) => {
                for p in parts {
                    self.part(p, out)?;
                }
                Ok(())
            }
        }
    }
}

/// Parses tool-call arguments (a JSON string) into the object Bedrock wants.
fn arguments(text: &str) -> Result<Value, Error> {
    if text.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str::<Value>(text).map_err(|e| {
        invalid(
            "messages",
            format!("tool call arguments are not valid JSON: {e}"),
        )
    })
}

/// Reasoning blocks echoed back from an assistant turn (`thinking_blocks`, LiteLLM's field).
fn thinking_blocks(m: &Message, out: &mut Vec<Value>) {
    let Some(Ok(Value::Array(blocks))) = m.extra.parse::<Value>("thinking_blocks") else {
        return;
    };
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("thinking") => {
                let mut text = Map::new();
                text.insert(
                    "text".into(),
                    b.get("thinking")
                        .cloned()
                        .unwrap_or(Value::String(String::new())),
                );
                if let Some(sig) = b.get("signature").filter(|s| s.is_string()) {
                    text.insert("signature".into(), sig.clone());
                }
                out.push(json!({"reasoningContent": {"reasoningText": text}}));
            }
            Some("redacted_thinking") => {
                if let Some(data) = b.get("data").and_then(Value::as_str) {
                    out.push(json!({"reasoningContent": {"redactedContent": data}}));
                }
            }
            _ => {}
        }
    }
}

/// The `toolResult` block of a `tool` message.
fn tool_result(m: &Message, blocks: &mut Blocks) -> Result<Value, Error> {
    let id = m
        .tool_call_id
        .as_deref()
        .ok_or_else(|| invalid("messages", "a `tool` message needs `tool_call_id`"))?;
    let mut content = Vec::new();
    blocks.content(m.content.as_ref(), &mut content)?;
    content.retain(|b| b.get("cachePoint").is_none());
    if content.is_empty() {
        // Bedrock rejects an empty result; say so explicitly.
        content.push(json!({"text": "(empty)"}));
    }
    Ok(json!({"toolResult": {"toolUseId": id, "content": content, "status": "success"}}))
}

/// Messages, system blocks, and the names of tools used in the history.
type Conversation = (Vec<Value>, Vec<Value>, Vec<String>);

/// The Converse messages and system blocks of an OpenAI conversation.
fn conversation(messages: &[Message]) -> Result<Conversation, Error> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut history_tools: Vec<String> = Vec::new();
    let mut blocks = Blocks { documents: 0 };
    for m in messages {
        let (role, mut content) = match &m.role {
            Role::System | Role::Developer => {
                blocks.content(m.content.as_ref(), &mut system)?;
                if has_cache_control(&m.extra) {
                    system.push(cache_point());
                }
                continue;
            }
            Role::User => {
                let mut c = Vec::new();
                blocks.content(m.content.as_ref(), &mut c)?;
                ("user", c)
            }
            Role::Assistant => {
                let mut c = Vec::new();
                thinking_blocks(m, &mut c);
                blocks.content(m.content.as_ref(), &mut c)?;
                for call in m.tool_calls.iter().flatten() {
                    if !history_tools.contains(&call.function.name) {
                        history_tools.push(call.function.name.clone());
                    }
                    c.push(json!({"toolUse": {
                        "toolUseId": call.id,
                        "name": call.function.name,
                        "input": arguments(&call.function.arguments)?,
                    }}));
                }
                ("assistant", c)
            }
            Role::Tool => ("user", vec![tool_result(m, &mut blocks)?]),
            other => {
                return Err(invalid(
                    "messages",
                    format!("Bedrock Converse does not accept `{other}` messages"),
                ));
            }
        };
        if has_cache_control(&m.extra) && !content.is_empty() {
            content.push(cache_point());
        }
        if content.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((r, c)) if *r == role => c.append(&mut content),
            _ => turns.push((role, content)),
        }
    }
    // Within a merged user turn, tool results come first (Bedrock pairs them with the previous toolUse).
    for (role, content) in &mut turns {
        if *role == "user" {
            content.sort_by_key(|b| b.get("toolResult").is_none());
        }
    }
    let messages = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    Ok((messages, system, history_tools))
}

/// The Converse body for a chat request, and the JSON-mode tool if one was added.
pub fn converse_body(
    body: &ChatRequestBody,
    opts: &TranslateOptions<'_>,
) -> Result<(Value, JsonMode), Error> {
    let dropped = |name: &str| opts.dropped.contains(&name);
    let (messages, system, history_tools) = conversation(&body.messages)?;

    // Provider extras: the request's unknown fields, then the deployment's defaults.
    let mut extras: Vec<(String, Value)> = Vec::new();
    for (k, raw) in body.extra.iter() {
        if (opts.drop_extra)(k) || NOT_FORWARDED.contains(&k) {
            continue;
        }
        let v: Value = serde_json::from_str(raw.get()).map_err(|e| invalid(k, e.to_string()))?;
        extras.push((k.to_owned(), v));
    }
    for (k, raw) in opts.defaults.iter() {
        if body.has_field(k) || extras.iter().any(|(e, _)| e == k) || (opts.drop_extra)(k) {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(raw.get()) else {
            continue;
        };
        extras.push((k.to_owned(), v));
    }
    // Deployment defaults for OpenAI parameters (e.g. `temperature` in litellm_params).
    let default_of = |name: &str| -> Option<Value> {
        if body.has_field(name) || dropped(name) {
            return None;
        }
        extras
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };

    let mut out = Map::new();
    let mut additional = Map::new();

    // inferenceConfig
    let mut inference = Map::new();
    let max_tokens = if dropped("max_completion_tokens") && dropped("max_tokens") {
        None
    } else {
        body.output_limit()
            .map(u64::from)
            .or_else(|| default_of("max_tokens").and_then(|v| v.as_u64()))
    };
    if let Some(t) = body.temperature.filter(|_| !dropped("temperature")) {
        inference.insert("temperature".into(), json!(t));
    } else if let Some(t) = default_of("temperature") {
        inference.insert("temperature".into(), t);
    }
    if let Some(p) = body.top_p.filter(|_| !dropped("top_p")) {
        inference.insert("topP".into(), json!(p));
    } else if let Some(p) = default_of("top_p") {
        inference.insert("topP".into(), p);
    }
    if let Some(stop) = body.stop.as_ref().filter(|_| !dropped("stop")) {
        let seqs: Vec<&String> = match stop {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v.iter().collect(),
        };
        let seqs: Vec<&String> = seqs.into_iter().filter(|s| !s.is_empty()).collect();
        if !seqs.is_empty() {
            inference.insert("stopSequences".into(), json!(seqs));
        }
    }

    // Reasoning.
    let mut thinking_budget_set: Option<u64> = None;
    let thinking_param = extras.iter().position(|(k, _)| k == "thinking");
    if let Some(i) = thinking_param {
        let (_, v) = extras.remove(i);
        if v.get("type").and_then(Value::as_str) == Some("enabled") {
            thinking_budget_set = v.get("budget_tokens").and_then(Value::as_u64);
        }
        additional.insert("thinking".into(), v);
    } else if let Some(effort) = body
        .reasoning_effort
        .as_ref()
        .filter(|_| !dropped("reasoning_effort"))
    {
        match opts.family {
            Family::Claude => {
                if let Some(budget) = thinking_budget(effort) {
                    additional.insert(
                        "thinking".into(),
                        json!({"type": "enabled", "budget_tokens": budget}),
                    );
                    thinking_budget_set = Some(budget);
                }
            }
            Family::Nova => {
                let level = match effort {
                    ReasoningEffort::None => None,
                    ReasoningEffort::Minimal | ReasoningEffort::Low => Some("low"),
                    ReasoningEffort::High => Some("high"),
                    _ => Some("medium"),
                };
                if let Some(level) = level {
                    additional.insert(
                        "reasoningConfig".into(),
                        json!({"type": "enabled", "maxReasoningEffort": level}),
                    );
                }
            }
            Family::Other => {
                additional.insert("reasoning_effort".into(), json!(effort.as_str()));
            }
        }
    }
    let max_tokens = match (max_tokens, thinking_budget_set) {
        (None, Some(budget)) => Some(budget.saturating_add(THINKING_HEADROOM)),
        (m, _) => m,
    };
    if let Some(m) = max_tokens {
        inference.insert("maxTokens".into(), json!(m));
    }

    // top_k: Nova reads it from its own inferenceConfig, the others from top_k.
    if let Some(i) = extras.iter().position(|(k, _)| k == "top_k") {
        let (_, v) = extras.remove(i);
        match opts.family {
            Family::Nova => {
                additional.insert("inferenceConfig".into(), json!({"topK": v}));
            }
            _ => {
                additional.insert("top_k".into(), v);
            }
        }
    }

    // Everything else: top-level Converse blocks, or model-specific fields.
    for (k, v) in extras {
        if ChatRequestBody::OPTIONAL_FIELDS.contains(&k.as_str()) || k == "max_tokens" {
            continue; // an OpenAI parameter given as a deployment default, handled above
        }
        if TOP_LEVEL.contains(&k.as_str()) {
            out.insert(k, v);
        } else if k == "additionalModelRequestFields" {
            if let Value::Object(m) = v {
                additional.extend(m);
            }
        } else {
            additional.insert(k, v);
        }
    }

    // Tools.
    let mut tools: Vec<Value> = Vec::new();
    if let Some(list) = body.tools.as_ref().filter(|_| !dropped("tools")) {
        for (i, tool) in list.iter().enumerate() {
            if tool.kind != "function" {
                return Err(invalid(
                    "tools",
                    format!(
                        "Bedrock Converse only accepts function tools, not `{}`",
                        tool.kind
                    ),
                ));
            }
            let f = tool
                .function
                .as_ref()
                .ok_or_else(|| invalid("tools", format!("tools[{i}] has no function")))?;
            let mut spec = Map::new();
            spec.insert("name".into(), json!(f.name));
            if let Some(d) = f.description.as_deref().filter(|d| !d.is_empty()) {
                spec.insert("description".into(), json!(d));
            }
            let schema = f
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            spec.insert("inputSchema".into(), json!({"json": schema}));
            if let Some(s) = f.strict {
                spec.insert("strict".into(), json!(s));
            }
            tools.push(json!({"toolSpec": spec}));
            if has_cache_control(&tool.extra) || has_cache_control(&f.extra) {
                tools.push(cache_point());
            }
        }
    }
    let mut tool_choice = match body
        .tool_choice
        .as_ref()
        .filter(|_| !dropped("tool_choice"))
    {
        None => None,
        Some(ToolChoice::Auto) => Some(json!({"auto": {}})),
        Some(ToolChoice::Required) => Some(json!({"any": {}})),
        Some(ToolChoice::Function(name)) => Some(json!({"tool": {"name": name}})),
        Some(ToolChoice::None) => {
            // Bedrock has no "none": leave the tools out.
            tools.clear();
            None
        }
        Some(ToolChoice::Other(_)) => {
            return Err(invalid(
                "tool_choice",
                "Bedrock supports tool_choice `auto`, `required`, `none` and a named function",
            ));
        }
    };

    // response_format.
    let mut json_mode = JsonMode::default();
    if let Some(rf) = body
        .response_format
        .as_ref()
        .filter(|_| !dropped("response_format"))
    {
        let spec = rf.json_schema.as_ref();
        match (&rf.kind, opts.structured_output, spec) {
            (ResponseFormatType::Text, ..) => {}
            (ResponseFormatType::JsonSchema, StructuredOutput::Native, Some(spec)) => {
                let schema = spec
                    .schema
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object"}));
                let mut js = Map::new();
                js.insert("name".into(), json!(spec.name));
                js.insert("schema".into(), json!(schema.to_string()));
                if let Some(d) = &spec.description {
                    js.insert("description".into(), json!(d));
                }
                out.insert(
                    "outputConfig".into(),
                    json!({"textFormat": {"type": "json_schema", "structure": {"jsonSchema": js}}}),
                );
            }
            (ResponseFormatType::JsonSchema | ResponseFormatType::JsonObject, ..) => {
                let (name, schema, description) = match spec {
                    Some(s) if rf.kind == ResponseFormatType::JsonSchema => (
                        s.name.clone(),
                        s.schema
                            .clone()
                            .unwrap_or_else(|| json!({"type": "object"})),
                        s.description.clone(),
                    ),
                    _ => (
                        "json_tool_call".to_owned(),
                        json!({"type": "object", "additionalProperties": true, "properties": {}}),
                        None,
                    ),
                };
                let mut spec = Map::new();
                spec.insert("name".into(), json!(name));
                if let Some(d) = description {
                    spec.insert("description".into(), json!(d));
                }
                spec.insert("inputSchema".into(), json!({"json": schema}));
                tools.push(json!({"toolSpec": spec}));
                // Forcing a tool is refused while thinking is on.
                if thinking_budget_set.is_none() && !additional.contains_key("thinking") {
                    tool_choice = Some(json!({"tool": {"name": name}}));
                }
                json_mode = JsonMode(Some(name));
            }
            (other, ..) => {
                return Err(invalid(
                    "response_format",
                    format!("Bedrock does not support response_format `{other}`"),
                ));
            }
        }
    }

    // History with tool blocks needs a toolConfig even when no tool is offered.
    if tools.iter().all(|t| t.get("toolSpec").is_none()) && !history_tools.is_empty() {
        tools.clear();
        for name in &history_tools {
            tools.push(json!({"toolSpec": {
                "name": name,
                "description": "A tool used earlier in this conversation.",
                "inputSchema": {"json": {"type": "object"}},
            }}));
        }
        tool_choice = None;
    }
    if !tools.is_empty() {
        let mut cfg = Map::new();
        cfg.insert("tools".into(), Value::Array(tools));
        if let Some(tc) = tool_choice {
            cfg.insert("toolChoice".into(), tc);
        }
        out.insert("toolConfig".into(), Value::Object(cfg));
    }

    out.insert("messages".into(), Value::Array(messages));
    out.insert("system".into(), Value::Array(system));
    out.insert("inferenceConfig".into(), Value::Object(inference));
    if !additional.is_empty() {
        out.insert(
            "additionalModelRequestFields".into(),
            Value::Object(additional),
        );
    }
    Ok((Value::Object(out), json_mode))
}

/// The kind of error for a body that cannot be encoded (never expected).
pub(crate) fn encode_error(e: &serde_json::Error) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("could not encode the Bedrock request: {e}"),
    )
}
