//! OpenAI request → Mistral request.

use crate::error::Error;
use crate::provider::DropParams;
use crate::types::{
    ChatRequest, Content, ContentPart, EmbeddingInput, EmbeddingRequest, Extra, Message, PartType,
    Role, ToolChoice,
};
use serde::ser::SerializeMap;
use serde_json::{Map, Value, json};
use std::borrow::Cow;

/// The OpenAI parameters Mistral takes (some under another name).
pub const SUPPORTED: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "prediction",
    "prompt_cache_key",
];

/// Fields written by the translation itself (never copied from the body).
const REWRITTEN: &[&str] = &[
    "messages",
    "seed",
    "tool_choice",
    "max_tokens",
    "max_completion_tokens",
    "stream_options",
];

/// Message fields other providers' clients send that Mistral refuses.
const FOREIGN_MESSAGE_FIELDS: &[&str] = &[
    "reasoning_content",
    "thinking_blocks",
    "cache_control",
    "annotations",
    "audio",
    "provider_specific_fields",
];

/// A tool-call id Mistral accepts: the id itself when it is 9 ASCII letters
/// and digits, else 9 such characters derived from it (SHA-256, base 62), so
/// the same id maps the same way in the assistant's call and in its answer.
///
/// ```
/// use tollgate::provider::mistral::tool_call_id;
///
/// assert_eq!(tool_call_id("FI5qQGzDE"), "FI5qQGzDE");
/// let mapped = tool_call_id("call_abc123XYZ");
/// assert_eq!(mapped.len(), 9);
/// assert!(mapped.bytes().all(|b| b.is_ascii_alphanumeric()));
/// assert_eq!(mapped, tool_call_id("call_abc123XYZ"));
/// assert_ne!(mapped, tool_call_id("call_abc123XYz"));
/// ```
pub fn tool_call_id(id: &str) -> Cow<'_, str> {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Cow::Borrowed(id);
    }
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    let mut n: u128 = 0;
    for b in digest.as_ref().iter().take(16) {
        n = (n << 8) | u128::from(*b);
    }
    let mut out = String::with_capacity(9);
    for _ in 0..9 {
        out.push(char::from(DIGITS[(n % 62) as usize]));
        n /= 62;
    }
    Cow::Owned(out)
}

fn encode_error(e: &serde_json::Error) -> Error {
    Error::internal(format!("could not encode the Mistral request: {e}"))
}

fn part(p: &ContentPart) -> Result<Value, Error> {
    if p.kind == PartType::File
        && let Some(file) = &p.file
    {
        if let Some(id) = &file.file_id {
            return Ok(json!({"type": "file", "file_id": id}));
        }
        if let Some(data) = &file.file_data {
            return Ok(json!({"type": "document_url", "document_url": data}));
        }
    }
    serde_json::to_value(p).map_err(|e| encode_error(&e))
}

fn message(m: &Message, last: bool) -> Result<Value, Error> {
    let mut out = Map::new();
    let role = match &m.role {
        Role::Developer => Role::System,
        other => other.clone(),
    };
    out.insert("role".into(), Value::String(role.as_str().to_owned()));
    match &m.content {
        Some(Content::Text(t)) => {
            out.insert("content".into(), Value::String(t.clone()));
        }
        Some(Content::Parts(parts)) => {
            let parts = parts.iter().map(part).collect::<Result<Vec<_>, _>>()?;
            out.insert("content".into(), Value::Array(parts));
        }
        None => {}
    }
    if let (Some(name), Role::Tool) = (&m.name, &m.role)
        && !name.trim().is_empty()
    {
        out.insert("name".into(), Value::String(name.clone()));
    }
    if let Some(calls) = &m.tool_calls {
        let calls = calls
            .iter()
            .map(|c| {
                let mut v = serde_json::to_value(c).map_err(|e| encode_error(&e))?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("id".into(), Value::String(tool_call_id(&c.id).into_owned()));
                }
                Ok(v)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        out.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(id) = &m.tool_call_id {
        out.insert(
            "tool_call_id".into(),
            Value::String(tool_call_id(id).into_owned()),
        );
    }
    for (k, v) in m.extra.iter() {
        if !FOREIGN_MESSAGE_FIELDS.contains(&k) {
            let v: Value = serde_json::from_str(v.get()).map_err(|e| encode_error(&e))?;
            out.insert(k.to_owned(), v);
        }
    }
    let calls_tools = m.tool_calls.as_ref().is_some_and(|c| !c.is_empty());
    if last && m.role == Role::Assistant && !calls_tools && !out.contains_key("prefix") {
        // Mistral continues a final assistant message only when told so.
        out.insert("prefix".into(), Value::Bool(true));
    }
    Ok(Value::Object(out))
}

/// The Mistral chat body: the OpenAI body with the fields Mistral names or
/// shapes differently rewritten (see the [module docs](super)).
pub fn chat_body(
    req: &ChatRequest,
    model: &str,
    drop: &DropParams,
    defaults: &Extra,
) -> Result<Vec<u8>, Error> {
    let body = req.body();
    let dropped = drop.check(body, SUPPORTED, "mistral")?;
    let policy = drop.for_request(body);
    let mut except: Vec<&str> = REWRITTEN.to_vec();
    except.extend(dropped.iter().copied());
    except.extend(policy.additional.iter().map(String::as_str));
    let keep =
        |name: &str| !dropped.contains(&name) && !policy.additional.iter().any(|a| a == name);
    let count = body.messages.len();
    let messages = body
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| message(m, i + 1 == count))
        .collect::<Result<Vec<_>, _>>()?;
    body.write_upstream_json(model, &except, defaults, |map| {
        map.serialize_entry("messages", &messages)?;
        if let (Some(seed), true) = (body.seed, keep("seed")) {
            map.serialize_entry("random_seed", &seed)?;
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
            map.serialize_entry("max_tokens", &limit)?;
        }
        if let (Some(choice), true) = (&body.tool_choice, keep("tool_choice")) {
            match choice {
                ToolChoice::Required => map.serialize_entry("tool_choice", "any")?,
                other => map.serialize_entry("tool_choice", other)?,
            }
        }
        Ok(())
    })
    .map_err(|e| encode_error(&e))
}

/// The Mistral embeddings body: `model`, `input` (strings only),
/// `dimensions` → `output_dimension`, unknown fields and defaults forwarded.
/// `encoding_format` is handled here, not upstream (base64 is encoded from the floats).
pub fn embedding_body(
    req: &EmbeddingRequest,
    model: &str,
    defaults: &Extra,
) -> Result<Vec<u8>, Error> {
    let inputs = match &req.input {
        EmbeddingInput::Text(t) => Value::Array(vec![Value::String(t.clone())]),
        EmbeddingInput::Texts(v) => Value::Array(v.iter().cloned().map(Value::String).collect()),
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) => {
            return Err(
                Error::bad_request("Mistral embeddings take text input, not token ids")
                    .with_param("input"),
            );
        }
    };
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.to_owned()));
    out.insert("input".into(), inputs);
    if let Some(d) = req.dimensions {
        out.insert("output_dimension".into(), json!(d));
    }
    let defaults = defaults.iter().filter(|(k, _)| !req.extra.contains(k));
    for (k, v) in req.extra.iter().chain(defaults) {
        if !out.contains_key(k) && k != "encoding_format" {
            let v: Value = serde_json::from_str(v.get()).map_err(|e| encode_error(&e))?;
            out.insert(k.to_owned(), v);
        }
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| encode_error(&e))
}
