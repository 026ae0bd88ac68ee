//! OpenAI request → Cohere v2 request.

use crate::error::Error;
use crate::provider::DropParams;
use crate::types::{
    ChatRequest, ChatRequestBody, Content, ContentPart, EmbeddingInput, EmbeddingRequest, Extra,
    Message, PartType, ReasoningEffort, ResponseFormatType, Role, ToolChoice,
};
use serde_json::{Map, Value, json};

/// The OpenAI parameters Cohere takes (most under another name).
pub const SUPPORTED: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "tools",
    "tool_choice",
    "response_format",
    "reasoning_effort",
];

/// The `input_type` of embeddings when the request does not set one (LiteLLM's default).
pub const DEFAULT_INPUT_TYPE: &str = "search_document";

/// Message fields other providers' clients send that Cohere refuses.
const FOREIGN_MESSAGE_FIELDS: &[&str] = &[
    "reasoning_content",
    "thinking_blocks",
    "cache_control",
    "annotations",
    "audio",
    "provider_specific_fields",
    "prefix",
];

fn encode_error(e: &serde_json::Error) -> Error {
    Error::internal(format!("could not encode the Cohere request: {e}"))
}

fn unsupported_part(p: &ContentPart, role: &Role) -> Error {
    Error::bad_request(format!(
        "Cohere does not accept `{}` content in {} messages",
        p.kind.as_str(),
        role.as_str()
    ))
    .with_param("messages")
}

/// Text parts only (system, assistant and tool messages).
fn text_parts(parts: &[ContentPart], role: &Role) -> Result<Vec<Value>, Error> {
    parts
        .iter()
        .map(|p| match (&p.kind, &p.text, &p.refusal) {
            (PartType::Text, Some(t), _) => Ok(json!({"type": "text", "text": t})),
            (PartType::Refusal, _, Some(r)) => Ok(json!({"type": "text", "text": r})),
            _ => Err(unsupported_part(p, role)),
        })
        .collect()
}

fn user_parts(parts: &[ContentPart]) -> Result<Vec<Value>, Error> {
    parts
        .iter()
        .map(|p| match (&p.kind, &p.text, &p.image_url) {
            (PartType::Text, Some(t), _) => Ok(json!({"type": "text", "text": t})),
            (PartType::ImageUrl, _, Some(img)) => {
                let mut image = Map::new();
                image.insert("url".into(), Value::String(img.url.clone()));
                if let Some(d) = &img.detail {
                    image.insert("detail".into(), Value::String(d.clone()));
                }
                Ok(json!({"type": "image_url", "image_url": image}))
            }
            _ => Err(unsupported_part(p, &Role::User)),
        })
        .collect()
}

/// The reasoning an assistant message carries back (`reasoning_content`, or
/// the text of `thinking_blocks`).
fn reasoning_of(m: &Message) -> Option<String> {
    if let Some(Ok(s)) = m.extra.parse::<String>("reasoning_content")
        && !s.is_empty()
    {
        return Some(s);
    }
    let blocks = m.extra.parse::<Vec<Value>>("thinking_blocks")?.ok()?;
    let text: String = blocks
        .iter()
        .filter_map(|b| b.get("thinking").and_then(Value::as_str))
        .collect();
    (!text.is_empty()).then_some(text)
}

fn message(m: &Message) -> Result<Value, Error> {
    let mut out = Map::new();
    match &m.role {
        Role::System | Role::Developer => {
            out.insert("role".into(), json!("system"));
            let content = match &m.content {
                Some(Content::Text(t)) => Value::String(t.clone()),
                Some(Content::Parts(p)) => Value::Array(text_parts(p, &m.role)?),
                None => Value::String(String::new()),
            };
            out.insert("content".into(), content);
        }
        Role::User => {
            out.insert("role".into(), json!("user"));
            let content = match &m.content {
                Some(Content::Text(t)) => Value::String(t.clone()),
                Some(Content::Parts(p)) => Value::Array(user_parts(p)?),
                None => Value::String(String::new()),
            };
            out.insert("content".into(), content);
        }
        Role::Assistant => {
            out.insert("role".into(), json!("assistant"));
            let text = m
                .content
                .as_ref()
                .map(|c| c.text().into_owned())
                .or_else(|| m.refusal.clone())
                .unwrap_or_default();
            let reasoning = reasoning_of(m);
            match m.tool_calls.as_deref() {
                Some(calls) if !calls.is_empty() => {
                    let calls = calls
                        .iter()
                        .map(|c| {
                            json!({"id": c.id, "type": "function",
                                "function": {"name": c.function.name, "arguments": c.function.arguments}})
                        })
                        .collect();
                    out.insert("tool_calls".into(), Value::Array(calls));
                    // Cohere's place for the words beside tool calls.
                    let plan = if text.is_empty() {
                        reasoning
                    } else {
                        Some(text)
                    };
                    if let Some(plan) = plan {
                        out.insert("tool_plan".into(), Value::String(plan));
                    }
                }
                _ => match (reasoning, &m.content) {
                    (Some(thinking), _) => {
                        let mut blocks = vec![json!({"type": "thinking", "thinking": thinking})];
                        if !text.is_empty() {
                            blocks.push(json!({"type": "text", "text": text}));
                        }
                        out.insert("content".into(), Value::Array(blocks));
                    }
                    (None, Some(Content::Parts(p))) => {
                        out.insert("content".into(), Value::Array(text_parts(p, &m.role)?));
                    }
                    (None, _) => {
                        out.insert("content".into(), Value::String(text));
                    }
                },
            }
        }
        Role::Tool => {
            out.insert("role".into(), json!("tool"));
            let Some(id) = &m.tool_call_id else {
                return Err(Error::bad_request("a `tool` message needs `tool_call_id`")
                    .with_param("messages"));
            };
            out.insert("tool_call_id".into(), Value::String(id.clone()));
            let content = match &m.content {
                Some(Content::Text(t)) => Value::String(t.clone()),
                Some(Content::Parts(p)) => Value::Array(text_parts(p, &m.role)?),
                None => Value::String(String::new()),
            };
            out.insert("content".into(), content);
        }
        other => {
            return Err(Error::bad_request(format!(
                "Cohere does not accept `{}` messages (use `tool` messages for tool results)",
                other.as_str()
            ))
            .with_param("messages"));
        }
    }
    for (k, v) in m.extra.iter() {
        if !FOREIGN_MESSAGE_FIELDS.contains(&k) && !out.contains_key(k) {
            let v: Value = serde_json::from_str(v.get()).map_err(|e| encode_error(&e))?;
            out.insert(k.to_owned(), v);
        }
    }
    Ok(Value::Object(out))
}

/// Cohere's tools and `tool_choice` for the request's (a named choice keeps
/// only that tool and makes it required).
fn tools(
    body: &ChatRequestBody,
    keep: &dyn Fn(&str) -> bool,
    out: &mut Map<String, Value>,
) -> Result<(), Error> {
    let choice = body.tool_choice.as_ref().filter(|_| keep("tool_choice"));
    let Some(list) = body.tools.as_ref().filter(|_| keep("tools")) else {
        return Ok(());
    };
    let only = match choice {
        Some(ToolChoice::Function(name)) => {
            if !list
                .iter()
                .any(|t| t.function.as_ref().is_some_and(|f| &f.name == name))
            {
                return Err(Error::bad_request(format!(
                    "tool_choice names `{name}`, which is not among the tools"
                ))
                .with_param("tool_choice"));
            }
            Some(name.as_str())
        }
        _ => None,
    };
    let mut strict = false;
    let mut converted = Vec::with_capacity(list.len());
    for t in list {
        let Some(f) = t.function.as_ref().filter(|_| t.kind == "function") else {
            return Err(Error::bad_request(format!(
                "Cohere supports function tools only, not `{}`",
                t.kind
            ))
            .with_param("tools"));
        };
        if only.is_some_and(|n| n != f.name) {
            continue;
        }
        strict |= f.strict == Some(true);
        let mut func = Map::new();
        func.insert("name".into(), Value::String(f.name.clone()));
        if let Some(d) = &f.description {
            func.insert("description".into(), Value::String(d.clone()));
        }
        func.insert(
            "parameters".into(),
            f.parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        );
        converted.push(json!({"type": "function", "function": func}));
    }
    out.insert("tools".into(), Value::Array(converted));
    if strict {
        out.insert("strict_tools".into(), Value::Bool(true));
    }
    match choice {
        Some(ToolChoice::Required | ToolChoice::Function(_)) => {
            out.insert("tool_choice".into(), json!("REQUIRED"));
        }
        Some(ToolChoice::None) => {
            out.insert("tool_choice".into(), json!("NONE"));
        }
        Some(ToolChoice::Auto) | None => {}
        Some(ToolChoice::Other(_)) => {
            return Err(
                Error::bad_request("Cohere does not support this tool_choice")
                    .with_param("tool_choice"),
            );
        }
    }
    Ok(())
}

/// The Cohere v2 chat body (see the [module docs](super)).
pub fn chat_body(
    req: &ChatRequest,
    model: &str,
    drop: &DropParams,
    defaults: &Extra,
) -> Result<Vec<u8>, Error> {
    let body = req.body();
    let dropped = drop.check(body, SUPPORTED, "cohere")?;
    let policy = drop.for_request(body);
    let keep =
        |name: &str| !dropped.contains(&name) && !policy.additional.iter().any(|a| a == name);
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.to_owned()));
    let messages = body
        .messages
        .iter()
        .map(message)
        .collect::<Result<Vec<_>, _>>()?;
    out.insert("messages".into(), Value::Array(messages));
    tools(body, &keep, &mut out)?;
    if let Some(rf) = body
        .response_format
        .as_ref()
        .filter(|_| keep("response_format"))
    {
        match &rf.kind {
            ResponseFormatType::Text => {}
            ResponseFormatType::JsonObject => {
                out.insert("response_format".into(), json!({"type": "json_object"}));
            }
            ResponseFormatType::JsonSchema => {
                let schema = rf
                    .json_schema
                    .as_ref()
                    .and_then(|s| s.schema.clone())
                    .unwrap_or_else(|| json!({"type": "object"}));
                out.insert(
                    "response_format".into(),
                    json!({"type": "json_object", "json_schema": schema}),
                );
            }
            other => {
                return Err(Error::bad_request(format!(
                    "Cohere does not support response_format `{}`",
                    other.as_str()
                ))
                .with_param("response_format"));
            }
        }
    }
    let mut set = |k: &str, v: Value| {
        out.insert(k.to_owned(), v);
    };
    if let (Some(t), true) = (body.temperature, keep("temperature")) {
        set("temperature", json!(t));
    }
    let limit = if keep("max_completion_tokens") {
        body.max_completion_tokens
    } else {
        None
    }
    .or(if keep("max_tokens") {
        body.max_tokens
    } else {
        None
    });
    if let Some(limit) = limit {
        set("max_tokens", json!(limit));
    }
    if let (Some(stop), true) = (&body.stop, keep("stop")) {
        set("stop_sequences", json!(stop.as_slice()));
    }
    if let (Some(seed), true) = (body.seed, keep("seed")) {
        set("seed", json!(seed));
    }
    if let (Some(p), true) = (body.frequency_penalty, keep("frequency_penalty")) {
        set("frequency_penalty", json!(p));
    }
    if let (Some(p), true) = (body.presence_penalty, keep("presence_penalty")) {
        set("presence_penalty", json!(p));
    }
    if let (Some(p), true) = (body.top_p, keep("top_p")) {
        set("p", json!(p));
    }
    if let (Some(effort), true) = (&body.reasoning_effort, keep("reasoning_effort"))
        && !body.extra.contains("thinking")
    {
        let kind = if *effort == ReasoningEffort::None {
            "disabled"
        } else {
            "enabled"
        };
        set("thinking", json!({"type": kind}));
    }
    set("stream", Value::Bool(req.is_stream()));
    // Cohere's own parameters (documents, citation_options, safety_mode,
    // thinking, strict_tools, k, …) as sent, then the deployment's defaults;
    // OpenAI spellings get Cohere's names (`top_k` is Cohere's `k`).
    let extras = body
        .extra
        .iter()
        .filter(|(k, _)| !policy.drops_extra(body, k));
    let fallbacks = defaults
        .iter()
        .filter(|(k, _)| !body.has_field(k) && !policy.drops_extra(body, k));
    for (k, v) in extras.chain(fallbacks) {
        let key = match k {
            "top_k" => "k",
            "top_p" => "p",
            "stop" => "stop_sequences",
            "max_completion_tokens" => "max_tokens",
            other => other,
        };
        if out.contains_key(key) {
            continue;
        }
        let v: Value = serde_json::from_str(v.get()).map_err(|e| encode_error(&e))?;
        out.insert(key.to_owned(), v);
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| encode_error(&e))
}

/// The `/v2/embed` body: `texts`, `input_type` (the request's extra
/// `input_type`, else [`DEFAULT_INPUT_TYPE`]), float `embedding_types`,
/// `dimensions` → `output_dimension`, other extras (`truncate`, …) as sent.
pub fn embed_body(req: &EmbeddingRequest, model: &str, defaults: &Extra) -> Result<Vec<u8>, Error> {
    let texts = match &req.input {
        EmbeddingInput::Text(t) => vec![Value::String(t.clone())],
        EmbeddingInput::Texts(v) => v.iter().cloned().map(Value::String).collect(),
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) => {
            return Err(
                Error::bad_request("Cohere embeddings take text input, not token ids")
                    .with_param("input"),
            );
        }
    };
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.to_owned()));
    out.insert("texts".into(), Value::Array(texts));
    out.insert("embedding_types".into(), json!(["float"]));
    if let Some(d) = req.dimensions {
        out.insert("output_dimension".into(), json!(d));
    }
    let fallbacks = defaults.iter().filter(|(k, _)| !req.extra.contains(k));
    for (k, v) in req.extra.iter().chain(fallbacks) {
        if !out.contains_key(k) {
            let v: Value = serde_json::from_str(v.get()).map_err(|e| encode_error(&e))?;
            out.insert(k.to_owned(), v);
        }
    }
    out.entry("input_type")
        .or_insert_with(|| Value::String(DEFAULT_INPUT_TYPE.to_owned()));
    serde_json::to_vec(&Value::Object(out)).map_err(|e| encode_error(&e))
}
