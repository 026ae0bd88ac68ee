//! OpenAI chat request → Anthropic Messages request body (PROTOCOLS.md §4.1).
//!
//! A pure function over the request body. The output borrows from the input
//! wherever it can (text, image data, schemas), so a large prompt is copied
//! once: into the upstream body.

use super::wire::minify_json;
use crate::error::{Error, ErrorKind};
use crate::provider::DropParams;
use crate::types::{
    ChatRequestBody, Content, ContentPart, ImageUrl, Message, PartType, ReasoningEffort,
    ResponseFormatType, Role, Tool, ToolChoice,
};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::sync::OnceLock;

/// The tool used to get a JSON object out of the model for
/// `response_format: {"type":"json_object"}` (its input is the answer).
pub(crate) const JSON_TOOL: &str = "json_tool_call";

/// OpenAI parameters the Anthropic leaf honours (`n` too, when it is 1).
const SUPPORTED: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "safety_identifier",
    "reasoning_effort",
    "response_format",
    "service_tier",
    "web_search_options",
];

/// Request fields tollgate writes itself: an unknown (`extra`) field with one
/// of these names is consumed by the translation instead of copied.
const CONSUMED_EXTRA: &[&str] = &[
    "system",
    "thinking",
    "output_config",
    "stop_sequences",
    "model",
    "messages",
    "max_tokens",
    "metadata",
    "tools",
    "tool_choice",
    "stream",
    "temperature",
    "top_p",
    "service_tier",
];

/// Thinking budgets for `reasoning_effort` (LiteLLM's defaults; `minimal` is
/// raised to 1,024, the smallest budget Anthropic accepts).
pub(crate) fn thinking_budget(effort: &ReasoningEffort) -> Result<Option<u32>, Error> {
    Ok(match effort {
        ReasoningEffort::None => None,
        ReasoningEffort::Minimal | ReasoningEffort::Low => Some(1024),
        ReasoningEffort::Medium => Some(2048),
        ReasoningEffort::High => Some(4096),
        other => {
            let shown: String = other.as_str().chars().take(40).collect();
            return Err(Error::bad_request(format!(
                "`reasoning_effort` `{shown}` is not supported by anthropic; use none, minimal, low, medium or high"
            ))
            .with_param("reasoning_effort"));
        }
    })
}

/// Where LiteLLM's `cache_control_injection_points` put a `cache_control`
/// marker: every message with `role`, or the message at `index` (negative
/// counts from the end).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CachePoint {
    /// Only `message` is known.
    #[serde(default)]
    pub location: Option<String>,
    /// Mark every message with this role.
    #[serde(default)]
    pub role: Option<String>,
    /// Mark the message at this position (negative: from the end).
    #[serde(default)]
    pub index: Option<i64>,
    /// The marker (default `{"type":"ephemeral"}`).
    #[serde(default)]
    pub control: Option<Value>,
}

/// What the translation needs besides the request.
pub(crate) struct Settings<'a> {
    /// The upstream model.
    pub(crate) model: &'a str,
    /// `max_tokens` when the client sets none.
    pub(crate) default_max_tokens: u32,
    /// The deployment's drop policy.
    pub(crate) drop: &'a DropParams,
    /// `cache_control_injection_points`.
    pub(crate) cache_points: &'a [CachePoint],
}

fn ephemeral() -> &'static RawValue {
    static EPHEMERAL: OnceLock<Box<RawValue>> = OnceLock::new();
    EPHEMERAL.get_or_init(|| {
        RawValue::from_string(r#"{"type":"ephemeral"}"#.to_owned()).unwrap_or_default()
    })
}

/// Where in the request a problem is. Formatted only when there is an error,
/// so translating a long conversation allocates nothing for it.
#[derive(Clone, Copy, Debug)]
enum At {
    Msg(usize),
    Part(usize, usize),
    Call(usize, usize),
}

impl At {
    fn part(self, j: usize) -> At {
        match self {
            At::Msg(i) | At::Part(i, _) | At::Call(i, _) => At::Part(i, j),
        }
    }

    fn call(self, j: usize) -> At {
        match self {
            At::Msg(i) | At::Part(i, _) | At::Call(i, _) => At::Call(i, j),
        }
    }
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Msg(i) => write!(f, "messages[{i}]"),
            At::Part(i, j) => write!(f, "messages[{i}].content[{j}]"),
            At::Call(i, j) => write!(f, "messages[{i}].tool_calls[{j}]"),
        }
    }
}

fn bad(param: &str, message: String) -> Error {
    Error::bad_request(message).with_param(param)
}

/// Content of a message, a system prompt or a tool result: a string, or blocks.
#[derive(Serialize)]
#[serde(untagged)]
enum MsgContent<'a> {
    Text(Cow<'a, str>),
    Blocks(Vec<Out<'a>>),
}

impl<'a> MsgContent<'a> {
    /// As blocks (a non-empty string becomes one text block).
    fn into_blocks(self) -> Vec<Out<'a>> {
        match self {
            MsgContent::Blocks(b) => b,
            MsgContent::Text(t) if t.is_empty() => Vec::new(),
            MsgContent::Text(t) => vec![Out::Block(Block::Text {
                text: t,
                cache_control: None,
            })],
        }
    }
}

/// A block tollgate builds, or one the client gave in Anthropic's own shape.
#[derive(Serialize)]
#[serde(untagged)]
enum Out<'a> {
    Block(Block<'a>),
    Raw(&'a RawValue),
    Part(&'a ContentPart),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a RawValue>,
    },
    Image {
        source: Source<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a RawValue>,
    },
    Document {
        source: Source<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a RawValue>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Box<RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a RawValue>,
    },
    ToolResult {
        tool_use_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<MsgContent<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a RawValue>,
    },
}

impl<'a> Block<'a> {
    fn cache_control_mut(&mut self) -> &mut Option<&'a RawValue> {
        match self {
            Block::Text { cache_control, .. }
            | Block::Image { cache_control, .. }
            | Block::Document { cache_control, .. }
            | Block::ToolUse { cache_control, .. }
            | Block::ToolResult { cache_control, .. } => cache_control,
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Source<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Text { media_type: &'a str, data: String },
    Url { url: &'a str },
    File { file_id: &'a str },
}

/// Puts `marker` on the last block that can carry one (a message-level
/// `cache_control` marks the end of that message's content).
fn mark_last_with<'a>(blocks: &mut [Out<'a>], marker: &'a RawValue) {
    if let Some(Out::Block(b)) = blocks.last_mut() {
        let slot = b.cache_control_mut();
        if slot.is_none() {
            *slot = Some(marker);
        }
    }
}

struct Turn<'a> {
    role: &'static str,
    content: MsgContent<'a>,
}

impl Serialize for Turn<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("role", self.role)?;
        m.serialize_entry("content", &self.content)?;
        m.end()
    }
}

/// Appends content to the conversation, merging it into the last turn when
/// that turn has the same role (Anthropic wants alternating turns).
fn push_turn<'a>(turns: &mut Vec<Turn<'a>>, role: &'static str, content: MsgContent<'a>) {
    if let Some(last) = turns.last_mut()
        && last.role == role
    {
        let prev = std::mem::replace(&mut last.content, MsgContent::Blocks(Vec::new()));
        let mut blocks = prev.into_blocks();
        blocks.extend(content.into_blocks());
        last.content = MsgContent::Blocks(blocks);
        return;
    }
    turns.push(Turn { role, content });
}

/// `data:<media type>;base64,<data>` → (media type, data).
fn data_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    Some((meta.strip_suffix(";base64")?, data))
}

fn image_source<'a>(url: &'a ImageUrl, at: At) -> Result<Source<'a>, Error> {
    if let Some((media, data)) = url.as_data_uri() {
        return Ok(Source::Base64 {
            media_type: media,
            data,
        });
    }
    if url.url.starts_with("data:") {
        return Err(bad(
            "messages",
            format!("{at}: an image data URI must be base64 (`data:<type>;base64,<data>`)"),
        ));
    }
    Ok(Source::Url { url: &url.url })
}

fn part_block<'a>(p: &'a ContentPart, at: At) -> Result<Out<'a>, Error> {
    let cache = p.extra.get("cache_control");
    Ok(match &p.kind {
        PartType::Text => Out::Block(Block::Text {
            text: Cow::Borrowed(p.text.as_deref().unwrap_or("")),
            cache_control: cache,
        }),
        PartType::Refusal => Out::Block(Block::Text {
            text: Cow::Borrowed(p.refusal.as_deref().unwrap_or("")),
            cache_control: cache,
        }),
        PartType::ImageUrl => {
            let url = p
                .image_url
                .as_ref()
                .ok_or_else(|| bad("messages", format!("{at}: `image_url` is missing")))?;
            Out::Block(Block::Image {
                source: image_source(url, at)?,
                cache_control: cache,
            })
        }
        PartType::File => {
            let f = p
                .file
                .as_ref()
                .ok_or_else(|| bad("messages", format!("{at}: `file` is missing")))?;
            let source = if let Some(id) = &f.file_id {
                Source::File { file_id: id }
            } else if let Some(uri) = &f.file_data {
                let Some((media, data)) = data_uri(uri) else {
                    return Err(bad(
                        "messages",
                        format!("{at}: `file.file_data` must be a base64 data URI"),
                    ));
                };
                if media.starts_with("image/") {
                    return Ok(Out::Block(Block::Image {
                        source: Source::Base64 {
                            media_type: media,
                            data,
                        },
                        cache_control: cache,
                    }));
                }
                if media == "text/plain" {
                    let bytes = crate::util::base64_decode(data).ok_or_else(|| {
                        bad(
                            "messages",
                            format!("{at}: `file.file_data` is not valid base64"),
                        )
                    })?;
                    Source::Text {
                        media_type: media,
                        data: String::from_utf8_lossy(&bytes).into_owned(),
                    }
                } else {
                    Source::Base64 {
                        media_type: media,
                        data,
                    }
                }
            } else {
                return Err(bad(
                    "messages",
                    format!("{at}: a `file` part needs `file_id` or `file_data`"),
                ));
            };
            Out::Block(Block::Document {
                source,
                title: f.filename.as_deref(),
                cache_control: cache,
            })
        }
        PartType::InputAudio => {
            return Err(Error::new(
                ErrorKind::UnsupportedParams,
                format!("{at}: anthropic does not accept audio input"),
            )
            .with_param("messages"));
        }
        // A part in Anthropic's own shape (`document`, `search_result`, …): as given.
        _ => Out::Part(p),
    })
}

fn content_of<'a>(content: &'a Content, at: At) -> Result<MsgContent<'a>, Error> {
    Ok(match content {
        Content::Text(t) => MsgContent::Text(Cow::Borrowed(t)),
        Content::Parts(parts) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                blocks.push(part_block(p, at.part(j))?);
            }
            MsgContent::Blocks(blocks)
        }
    })
}

fn tool_input(args: &str, at: At) -> Result<Box<RawValue>, Error> {
    let t = args.trim();
    let raw = if t.is_empty() {
        "{}".to_owned()
    } else {
        let parsed: Box<RawValue> = serde_json::from_str(t).map_err(|e| {
            bad(
                "messages",
                format!("{at}.function.arguments is not valid JSON: {e}"),
            )
        })?;
        if !parsed.get().starts_with('{') {
            return Err(bad(
                "messages",
                format!("{at}.function.arguments must be a JSON object"),
            ));
        }
        minify_json(parsed.get())
    };
    RawValue::from_string(raw).map_err(|e| Error::internal(e.to_string()))
}

/// Which messages get a `cache_control` marker from the deployment's injection points.
fn injected(messages: &[Message], points: &[CachePoint]) -> Vec<Option<Box<RawValue>>> {
    let mut out: Vec<Option<Box<RawValue>>> = (0..messages.len()).map(|_| None).collect();
    for p in points {
        if p.location.as_deref().is_some_and(|l| l != "message") {
            continue;
        }
        let marker = match &p.control {
            Some(v) => serde_json::value::to_raw_value(v).ok(),
            None => Some(ephemeral().to_owned()),
        };
        let Some(marker) = marker else { continue };
        if let Some(role) = &p.role {
            for (i, m) in messages.iter().enumerate() {
                let matches =
                    m.role.as_str() == role || (role == "system" && m.role == Role::Developer);
                if matches && let Some(slot) = out.get_mut(i) {
                    *slot = Some(marker.clone());
                }
            }
        } else if let Some(index) = p.index {
            let len = messages.len() as i64;
            let i = if index < 0 { len + index } else { index };
            if (0..len).contains(&i)
                && let Some(slot) = out.get_mut(i as usize)
            {
                *slot = Some(marker);
            }
        }
    }
    out
}

/// The request body tollgate sends to `/v1/messages`.
#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<MsgContent<'a>>,
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<ToolOut<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<StopOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<ThinkingOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_config: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'static str>,
    #[serde(flatten)]
    extra: ExtraOut<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum StopOut<'a> {
    List(Vec<&'a str>),
    Raw(&'a RawValue),
}

#[derive(Serialize)]
#[serde(untagged)]
enum ThinkingOut<'a> {
    Budget(Value),
    Raw(&'a RawValue),
}

#[derive(Serialize)]
struct Metadata<'a> {
    user_id: &'a str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ToolOut<'a> {
    Function(FunctionTool<'a>),
    Verbatim(&'a Tool),
    Value(Value),
}

#[derive(Serialize)]
struct FunctionTool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Cow<'a, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<&'a RawValue>,
}

/// Unknown request fields copied to the upstream body.
struct ExtraOut<'a>(Vec<(&'a str, &'a RawValue)>);

impl Serialize for ExtraOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Whether the request asks for a JSON object through the forced [`JSON_TOOL`].
pub(crate) fn uses_json_tool(body: &ChatRequestBody, drop: &DropParams) -> bool {
    body.response_format
        .as_ref()
        .is_some_and(|f| f.kind == ResponseFormatType::JsonObject)
        && !drop
            .for_request(body)
            .additional
            .iter()
            .any(|a| a == "response_format")
}

/// Translates an OpenAI request body into the Anthropic body (JSON bytes).
pub(crate) fn translate(body: &ChatRequestBody, s: &Settings<'_>) -> Result<Vec<u8>, Error> {
    let mut supported: Vec<&str> = SUPPORTED.to_vec();
    if body.n.is_none_or(|n| n <= 1) {
        supported.push("n");
    }
    let dropped = s.drop.check(body, &supported, "anthropic")?;
    let keep = |name: &str| !dropped.contains(&name);
    let policy = s.drop.for_request(body);

    let inject = injected(&body.messages, s.cache_points);
    let msg_cache = |i: usize, m: &'_ Message| -> Option<Box<RawValue>> {
        m.extra
            .get("cache_control")
            .map(ToOwned::to_owned)
            .or_else(|| inject.get(i).cloned().flatten())
    };
    // Markers owned here, borrowed by the blocks below.
    let markers: Vec<Option<Box<RawValue>>> = body
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| msg_cache(i, m))
        .collect();

    // System prompt: every system/developer message, wherever it is, plus an
    // Anthropic-style top-level `system` if the client sent one.
    let extra_system = body.extra.get("system");
    let system_msgs: Vec<usize> = body
        .messages
        .iter()
        .enumerate()
        .filter(|(_, m)| matches!(m.role, Role::System | Role::Developer))
        .map(|(i, _)| i)
        .collect();
    let system = match (extra_system, system_msgs.as_slice()) {
        (None, []) => None,
        (None, [i])
            if markers.get(*i).is_some_and(Option::is_none)
                && matches!(
                    body.messages.get(*i).and_then(|m| m.content.as_ref()),
                    Some(Content::Text(_))
                ) =>
        {
            match body.messages.get(*i).and_then(|m| m.content.as_ref()) {
                Some(Content::Text(t)) => Some(MsgContent::Text(Cow::Borrowed(t))),
                _ => None,
            }
        }
        _ => {
            let mut blocks: Vec<Out<'_>> = Vec::new();
            if let Some(raw) = extra_system {
                if let Ok(text) = serde_json::from_str::<String>(raw.get()) {
                    if !text.is_empty() {
                        blocks.push(Out::Block(Block::Text {
                            text: Cow::Owned(text),
                            cache_control: None,
                        }));
                    }
                } else if let Ok(list) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
                    blocks.extend(list.into_iter().map(Out::Raw));
                } else {
                    return Err(bad(
                        "system",
                        "`system` must be a string or a list of text blocks".to_owned(),
                    ));
                }
            }
            for &i in &system_msgs {
                let Some(m) = body.messages.get(i) else {
                    continue;
                };
                let at = At::Msg(i);
                let mut part = match &m.content {
                    Some(c) => content_of(c, at)?.into_blocks(),
                    None => Vec::new(),
                };
                if part
                    .iter()
                    .any(|b| !matches!(b, Out::Block(Block::Text { .. })))
                {
                    return Err(bad(
                        "messages",
                        format!("{at}: a system message may only contain text on anthropic"),
                    ));
                }
                if let Some(Some(marker)) = markers.get(i) {
                    mark_last_with(&mut part, marker);
                }
                blocks.extend(part);
            }
            Some(MsgContent::Blocks(blocks))
        }
    };

    let mut turns: Vec<Turn<'_>> = Vec::with_capacity(body.messages.len());
    for (i, m) in body.messages.iter().enumerate() {
        let at = At::Msg(i);
        let marker = markers.get(i).and_then(Option::as_deref);
        match &m.role {
            Role::System | Role::Developer => {}
            Role::User => {
                let mut content = match &m.content {
                    Some(c) => content_of(c, at)?,
                    None => MsgContent::Text(Cow::Borrowed("")),
                };
                if let Some(marker) = marker {
                    let mut blocks = content.into_blocks();
                    mark_last_with(&mut blocks, marker);
                    content = MsgContent::Blocks(blocks);
                }
                push_turn(&mut turns, "user", content);
            }
            Role::Tool => {
                let id = m.tool_call_id.as_deref().ok_or_else(|| {
                    bad(
                        "messages",
                        format!("{at} has role `tool` but no `tool_call_id`"),
                    )
                })?;
                let content = match &m.content {
                    Some(c) => Some(content_of(c, at)?),
                    None => None,
                };
                let is_error = match m.extra.get("is_error") {
                    Some(raw) => Some(serde_json::from_str::<bool>(raw.get()).map_err(|_| {
                        bad("messages", format!("{at}.is_error must be true or false"))
                    })?),
                    None => None,
                };
                let block = Block::ToolResult {
                    tool_use_id: id,
                    content,
                    is_error,
                    cache_control: marker,
                };
                push_turn(
                    &mut turns,
                    "user",
                    MsgContent::Blocks(vec![Out::Block(block)]),
                );
            }
            Role::Assistant => {
                let mut blocks: Vec<Out<'_>> = Vec::new();
                if let Some(raw) = m.extra.get("thinking_blocks") {
                    let list: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(|_| {
                        bad(
                            "messages",
                            format!("{at}.thinking_blocks must be a list of thinking blocks"),
                        )
                    })?;
                    blocks.extend(list.into_iter().map(Out::Raw));
                }
                if m.function_call.is_some() {
                    return Err(Error::new(
                        ErrorKind::UnsupportedParams,
                        format!("{at}: legacy `function_call` history is not supported by anthropic; use `tool_calls`"),
                    )
                    .with_param("messages"));
                }
                let calls = m.tool_calls.as_deref().unwrap_or(&[]);
                let text = match &m.content {
                    Some(c) => content_of(c, at)?,
                    None => MsgContent::Text(Cow::Borrowed("")),
                };
                if blocks.is_empty() && calls.is_empty() && marker.is_none() {
                    push_turn(&mut turns, "assistant", text);
                    continue;
                }
                blocks.extend(text.into_blocks());
                for (j, call) in calls.iter().enumerate() {
                    let input = tool_input(&call.function.arguments, at.call(j))?;
                    blocks.push(Out::Block(Block::ToolUse {
                        id: &call.id,
                        name: &call.function.name,
                        input,
                        cache_control: None,
                    }));
                }
                if let Some(marker) = marker {
                    mark_last_with(&mut blocks, marker);
                }
                push_turn(&mut turns, "assistant", MsgContent::Blocks(blocks));
            }
            Role::Function => {
                return Err(Error::new(
                    ErrorKind::UnsupportedParams,
                    format!("{at}: legacy `function` messages are not supported by anthropic; use `tool` messages"),
                )
                .with_param("messages"));
            }
            Role::Other(r) => {
                let shown: String = r.chars().take(40).collect();
                return Err(bad("messages", format!("{at}: unknown role `{shown}`")));
            }
        }
    }

    // Tools.
    let json_tool = keep("response_format") && uses_json_tool(body, s.drop);
    let mut tools: Vec<ToolOut<'_>> = Vec::new();
    if keep("tools") {
        for (j, t) in body.tools.iter().flatten().enumerate() {
            match (&t.function, t.kind.as_str()) {
                (Some(f), "function") => {
                    let schema = match &f.parameters {
                        Some(Value::Object(o)) if !o.contains_key("type") => {
                            let mut o = o.clone();
                            o.insert("type".into(), Value::from("object"));
                            Cow::Owned(Value::Object(o))
                        }
                        Some(v) => Cow::Borrowed(v),
                        None => Cow::Owned(json!({"type": "object", "properties": {}})),
                    };
                    tools.push(ToolOut::Function(FunctionTool {
                        name: &f.name,
                        description: f.description.as_deref(),
                        input_schema: schema,
                        strict: f.strict.filter(|s| *s),
                        cache_control: t
                            .extra
                            .get("cache_control")
                            .or_else(|| f.extra.get("cache_control")),
                    }));
                }
                (None, "function") => {
                    return Err(bad("tools", format!("`tools[{j}]` has no `function`")));
                }
                // Anthropic's own tools (`web_search_20250305`, `bash_20250124`, …): as given.
                _ => tools.push(ToolOut::Verbatim(t)),
            }
        }
    }
    if keep("web_search_options")
        && let Some(opts) = &body.web_search_options
    {
        tools.push(ToolOut::Value(web_search_tool(opts)));
    }
    if json_tool {
        tools.push(ToolOut::Value(json!({
            "name": JSON_TOOL,
            "description": "Respond with a JSON object.",
            "input_schema": {"type": "object"},
        })));
    }

    let mut tool_choice = match body.tool_choice.as_ref().filter(|_| keep("tool_choice")) {
        None => None,
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Function(name)) => Some(json!({"type": "tool", "name": name})),
        Some(ToolChoice::Other(v)) => Some(native_tool_choice(v)?),
    };
    if json_tool {
        tool_choice = Some(json!({"type": "tool", "name": JSON_TOOL}));
    }
    if keep("parallel_tool_calls") && body.parallel_tool_calls == Some(false) {
        let choice = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
        if let Value::Object(o) = choice
            && o.get("type").and_then(Value::as_str) != Some("none")
        {
            o.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }

    // Output format.
    let mut output_config: Option<serde_json::Map<String, Value>> =
        match body.extra.get("output_config") {
            Some(raw) => match serde_json::from_str::<Value>(raw.get()) {
                Ok(Value::Object(o)) => Some(o),
                _ => {
                    return Err(bad(
                        "output_config",
                        "`output_config` must be an object".to_owned(),
                    ));
                }
            },
            None => None,
        };
    if keep("response_format")
        && let Some(f) = &body.response_format
    {
        match &f.kind {
            ResponseFormatType::Text | ResponseFormatType::JsonObject => {}
            ResponseFormatType::JsonSchema => {
                let schema = f
                    .json_schema
                    .as_ref()
                    .and_then(|j| j.schema.as_ref())
                    .ok_or_else(|| {
                        bad(
                            "response_format",
                            "`response_format.json_schema.schema` is required".to_owned(),
                        )
                    })?;
                output_config.get_or_insert_with(Default::default).insert(
                    "format".into(),
                    json!({"type": "json_schema", "schema": schema}),
                );
            }
            other => {
                let shown: String = other.as_str().chars().take(40).collect();
                return Err(bad(
                    "response_format",
                    format!("`response_format` type `{shown}` is not supported by anthropic"),
                ));
            }
        }
    }

    // Output limit and thinking.
    let max_tokens = body
        .max_completion_tokens
        .filter(|_| keep("max_completion_tokens"))
        .or(body.max_tokens.filter(|_| keep("max_tokens")))
        .unwrap_or(s.default_max_tokens);
    let thinking = match body.extra.get("thinking") {
        Some(raw) => Some(ThinkingOut::Raw(raw)),
        None => match body
            .reasoning_effort
            .as_ref()
            .filter(|_| keep("reasoning_effort"))
        {
            None => None,
            Some(effort) => match thinking_budget(effort)? {
                None => None,
                Some(budget) => {
                    let budget = budget.min(max_tokens.saturating_sub(1));
                    if budget < 1024 {
                        return Err(bad(
                            "reasoning_effort",
                            format!(
                                "`reasoning_effort` needs room to think: anthropic's smallest thinking budget is 1024 tokens, and `max_tokens` is {max_tokens}"
                            ),
                        ));
                    }
                    Some(ThinkingOut::Budget(
                        json!({"type": "enabled", "budget_tokens": budget}),
                    ))
                }
            },
        },
    };

    let stop_sequences = match (&body.stop, body.extra.get("stop_sequences")) {
        (Some(stop), _) if keep("stop") => {
            let list: Vec<&str> = stop
                .as_slice()
                .iter()
                .map(String::as_str)
                // Anthropic refuses whitespace-only sequences; LiteLLM drops them under drop_params.
                .filter(|s| !(policy.drop && s.trim().is_empty()))
                .collect();
            (!list.is_empty()).then_some(StopOut::List(list))
        }
        (None, Some(raw)) => Some(StopOut::Raw(raw)),
        _ => None,
    };

    let service_tier = match body
        .service_tier
        .as_deref()
        .filter(|_| keep("service_tier"))
    {
        None => None,
        Some("auto") => Some("auto"),
        Some("default" | "standard_only") => Some("standard_only"),
        Some(_) if policy.drop => None,
        Some(other) => {
            let shown: String = other.chars().take(40).collect();
            return Err(Error::new(
                ErrorKind::UnsupportedParams,
                format!("anthropic does not support `service_tier` `{shown}` (only auto and default). Set `drop_params: true` to drop it."),
            )
            .with_param("service_tier"));
        }
    };

    let user = body.user.as_deref().filter(|_| keep("user")).or(body
        .safety_identifier
        .as_deref()
        .filter(|_| keep("safety_identifier")));

    let extra = ExtraOut(
        body.extra
            .iter()
            .filter(|(k, _)| !CONSUMED_EXTRA.contains(k) && !s.drop.drops_extra(body, k))
            .collect(),
    );

    let out = Body {
        model: s.model,
        max_tokens,
        system,
        messages: turns,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        temperature: body.temperature.filter(|_| keep("temperature")).map(|t| {
            if t.is_finite() {
                t.clamp(0.0, 1.0)
            } else {
                1.0
            }
        }),
        top_p: body.top_p.filter(|_| keep("top_p")),
        stop_sequences,
        stream: body.stream,
        metadata: user.map(|user_id| Metadata { user_id }),
        thinking,
        output_config: output_config.map(Value::Object),
        service_tier,
        extra,
    };
    serde_json::to_vec(&out)
        .map_err(|e| Error::internal(format!("could not encode the request: {e}")))
}

/// An object `tool_choice`: Anthropic's own shape passes; OpenAI's
/// `{"type":"function","function":{"name"}}` with extra keys is a named tool.
fn native_tool_choice(v: &Value) -> Result<Value, Error> {
    let kind = v.get("type").and_then(Value::as_str);
    match kind {
        Some("auto" | "any" | "tool" | "none") => Ok(v.clone()),
        Some("function") => match v
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) => Ok(json!({"type": "tool", "name": name})),
            None => Err(bad(
                "tool_choice",
                "`tool_choice.function.name` is required".to_owned(),
            )),
        },
        _ => Err(bad(
            "tool_choice",
            "`tool_choice` must be none, auto, required or a named function".to_owned(),
        )),
    }
}

/// OpenAI `web_search_options` → Anthropic's server-side web search tool.
fn web_search_tool(opts: &Value) -> Value {
    let mut tool = json!({"type": "web_search_20250305", "name": "web_search"});
    if let Some(size) = opts.get("search_context_size").and_then(Value::as_str) {
        let uses = match size {
            "low" => 1,
            "high" => 10,
            _ => 5,
        };
        tool["max_uses"] = Value::from(uses);
    }
    if let Some(approx) = opts
        .get("user_location")
        .and_then(|l| l.get("approximate"))
        .and_then(Value::as_object)
    {
        let mut loc = serde_json::Map::new();
        loc.insert("type".into(), Value::from("approximate"));
        for k in ["city", "region", "country", "timezone"] {
            if let Some(v) = approx.get(k) {
                loc.insert(k.into(), v.clone());
            }
        }
        tool["user_location"] = Value::Object(loc);
    }
    tool
}

#[cfg(test)]
mod tests;
