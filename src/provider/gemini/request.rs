//! OpenAI chat request → Gemini `GenerateContentRequest` (pure, no I/O).
//!
//! See the [module docs](super) for the mapping table.

use super::media::ImageUrls;
use super::media::{FetchedMedia, guess_mime};
use super::schema::clean_schema;
use super::wire::{
    Blob, Content, FileData, FunctionCallOut, FunctionDeclaration, FunctionResponseOut,
    GenerateContentRequest, GenerationConfig, Part, ResponseValue, ToolOut,
};
use super::{Dialect, Settings};
use crate::error::Error;
use crate::types::{
    ChatRequestBody, Content as OaContent, ContentPart, FunctionCall, ImageUrl, Message, PartType,
    ReasoningEffort, ResponseFormatType, Role, Tool, ToolChoice,
};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

/// OpenAI parameters Gemini honours. `user` is accepted and not forwarded
/// (Gemini has no such field; the gateway uses it for end-user budgets);
/// `parallel_tool_calls` is accepted and not forwarded (Gemini always may call
/// several functions in one turn).
pub(crate) const SUPPORTED: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "logprobs",
    "top_logprobs",
    "modalities",
    "web_search_options",
    "functions",
    "function_call",
    "user",
];

/// How OpenAI tool-call ids carry a Gemini thought signature (LiteLLM's convention).
pub(crate) const THOUGHT_SEPARATOR: &str = "__thought__";

/// What Gemini 3 accepts in place of a thought signature for calls it did not make.
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// Splits `call_x__thought__<signature>` into the id and the signature.
pub(crate) fn split_call_id(id: &str) -> (&str, Option<&str>) {
    match id.split_once(THOUGHT_SEPARATOR) {
        Some((base, sig)) if !sig.is_empty() => (base, Some(sig)),
        _ => (id, None),
    }
}

fn empty_object() -> &'static RawValue {
    static EMPTY: OnceLock<Box<RawValue>> = OnceLock::new();
    EMPTY.get_or_init(|| RawValue::from_string("{}".to_owned()).unwrap_or_default())
}

fn bad(message: impl Into<Cow<'static, str>>, param: &str) -> Error {
    Error::bad_request(message).with_param(param)
}

/// The `reasoning_effort` → thinking budget table (Gemini 2.5 and earlier):
/// `none` 0 (thinking off), `minimal` 128, `low` 1024, `medium` 2048,
/// `high` 4096 tokens — LiteLLM's defaults. Gemini 3 models take a
/// `thinkingLevel` instead: `none`/`minimal`/`low` → `low`, `medium`/`high` → `high`.
pub(crate) fn thinking_for_effort(model: &str, effort: &ReasoningEffort) -> Result<Value, Error> {
    let gemini3 = is_gemini3(model);
    let (budget, level) = match effort {
        ReasoningEffort::None => (0, "low"),
        ReasoningEffort::Minimal => (128, "low"),
        ReasoningEffort::Low => (1024, "low"),
        ReasoningEffort::Medium => (2048, "high"),
        ReasoningEffort::High => (4096, "high"),
        other => {
            return Err(bad(
                format!(
                    "reasoning_effort `{}` is not one of none, minimal, low, medium, high",
                    other.as_str()
                ),
                "reasoning_effort",
            ));
        }
    };
    Ok(if gemini3 {
        json!({"thinkingLevel": level, "includeThoughts": true})
    } else if budget == 0 {
        json!({"thinkingBudget": 0})
    } else {
        json!({"thinkingBudget": budget, "includeThoughts": true})
    })
}

fn is_gemini3(model: &str) -> bool {
    model.starts_with("gemini-3")
}

/// Anthropic-style `thinking` (`{"type":"enabled","budget_tokens":N}` or
/// `{"type":"disabled"}`), as LiteLLM accepts it for Gemini.
fn thinking_from_anthropic_style(raw: &RawValue) -> Result<Value, Error> {
    let v: Value = serde_json::from_str(raw.get())
        .map_err(|_| bad("`thinking` must be a JSON object", "thinking"))?;
    match v.get("type").and_then(Value::as_str) {
        Some("enabled") => {
            let budget = v
                .get("budget_tokens")
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    bad(
                        "`thinking.budget_tokens` must be a non-negative integer",
                        "thinking",
                    )
                })?;
            Ok(json!({"thinkingBudget": budget, "includeThoughts": true}))
        }
        Some("disabled") => Ok(json!({"thinkingBudget": 0})),
        _ => Err(bad(
            "`thinking.type` must be `enabled` or `disabled`",
            "thinking",
        )),
    }
}

/// Which OpenAI parameters to take and from where: the request's value, else
/// the deployment default, unless the drop policy removes it.
struct Params<'a> {
    body: &'a ChatRequestBody,
    defaults: &'a ChatRequestBody,
    dropped: Vec<&'static str>,
    additional: Vec<String>,
}

impl<'a> Params<'a> {
    fn on(&self, name: &str) -> bool {
        !self.dropped.contains(&name) && !self.additional.iter().any(|a| a == name)
    }

    fn pick<T>(&self, name: &str, f: impl Fn(&'a ChatRequestBody) -> Option<T>) -> Option<T> {
        if !self.on(name) {
            return None;
        }
        f(self.body).or_else(|| f(self.defaults))
    }

    /// A provider-specific (non-OpenAI) field, under any of its spellings.
    fn extra(&self, names: &[&str]) -> Option<&'a RawValue> {
        if names.iter().any(|n| self.additional.iter().any(|a| a == n)) {
            return None;
        }
        names
            .iter()
            .find_map(|n| self.body.extra.get(n))
            .or_else(|| names.iter().find_map(|n| self.defaults.extra.get(n)))
    }
}

/// Builds the Gemini request. `media` holds images fetched by `prepare_chat`.
pub(crate) fn build<'a>(
    s: &'a Settings,
    body: &'a ChatRequestBody,
    media: Option<&'a FetchedMedia>,
) -> Result<GenerateContentRequest<'a>, Error> {
    let policy = s.drop.for_request(body);
    let mut dropped = s.drop.check(body, SUPPORTED, &s.provider)?;
    dropped.extend(
        s.defaults_dropped
            .iter()
            .copied()
            .filter(|n| !body.has_field(n)),
    );
    let p = Params {
        body,
        defaults: &s.defaults,
        dropped,
        additional: policy.additional,
    };

    let (contents, system) = messages(s, &body.messages, media)?;
    let (tools, tool_config) = tools(&p)?;
    let generation_config = generation_config(s, &p)?;

    let mut out = GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(Content {
            role: Some("user"),
            parts: system,
        }),
        tools,
        tool_config,
        generation_config,
        safety_settings: p.extra(&["safety_settings", "safetySettings"]),
        cached_content: p.extra(&["cached_content", "cachedContent"]),
        labels: None,
    };
    if s.dialect == Dialect::Vertex {
        out.labels = p.extra(&["labels"]);
    }
    if let Some(raw) = p.extra(&["tool_config", "toolConfig"]) {
        out.tool_config = Some(
            serde_json::from_str(raw.get())
                .map_err(|_| bad("`tool_config` must be a JSON object", "tool_config"))?,
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Messages.

struct Turns<'a> {
    contents: Vec<Content<'a>>,
}

impl<'a> Turns<'a> {
    /// Appends parts to the conversation, merging with the previous turn when
    /// it has the same role.
    fn push(&mut self, role: &'static str, parts: Vec<Part<'a>>) {
        if parts.is_empty() {
            return;
        }
        match self.contents.last_mut() {
            Some(last) if last.role == Some(role) => last.parts.extend(parts),
            _ => self.contents.push(Content {
                role: Some(role),
                parts,
            }),
        }
    }
}

type Contents<'a> = (Vec<Content<'a>>, Vec<Part<'a>>);

fn messages<'a>(
    s: &'a Settings,
    msgs: &'a [Message],
    media: Option<&'a FetchedMedia>,
) -> Result<Contents<'a>, Error> {
    let mut turns = Turns {
        contents: Vec::with_capacity(msgs.len()),
    };
    let mut system: Vec<Part<'a>> = Vec::new();
    // call id (without signature) → (function name, position in its turn)
    let mut calls: HashMap<&'a str, (&'a str, usize)> = HashMap::new();
    let send_ids = s.dialect == Dialect::Gemini;
    let mut i = 0;
    while i < msgs.len() {
        let m = &msgs[i];
        match &m.role {
            Role::System | Role::Developer => {
                match &m.content {
                    Some(OaContent::Text(t)) => system.push(Part::text(t.as_str())),
                    Some(OaContent::Parts(parts)) => {
                        for part in parts {
                            match (&part.kind, &part.text) {
                                (PartType::Text, Some(t)) => system.push(Part::text(t.as_str())),
                                _ => {
                                    return Err(bad(
                                        format!(
                                            "messages[{i}]: a system message may hold text only on Gemini"
                                        ),
                                        "messages",
                                    ));
                                }
                            }
                        }
                    }
                    None => {}
                }
                i += 1;
            }
            Role::User => {
                let parts = match &m.content {
                    Some(c) => user_parts(s, c, media, i)?,
                    None => Vec::new(),
                };
                turns.push("user", parts);
                i += 1;
            }
            Role::Assistant => {
                let mut parts = Vec::new();
                if let Some(content) = &m.content {
                    let text = content.text();
                    if !text.is_empty() {
                        parts.push(Part::text(text));
                    }
                }
                let mut first_call = true;
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    let (id, signature) = split_call_id(&call.id);
                    let args = arguments(&call.function, i, Some(j))?;
                    calls.insert(id, (call.function.name.as_str(), j));
                    let signature = signature
                        .or_else(|| (first_call && is_gemini3(&s.model)).then_some(SKIP_SIGNATURE));
                    first_call = false;
                    parts.push(Part {
                        function_call: Some(FunctionCallOut {
                            id: (send_ids && !id.is_empty()).then_some(id),
                            name: &call.function.name,
                            args,
                        }),
                        thought_signature: signature,
                        ..Default::default()
                    });
                }
                if let Some(f) = &m.function_call {
                    let args = arguments(f, i, None)?;
                    parts.push(Part {
                        function_call: Some(FunctionCallOut {
                            id: None,
                            name: &f.name,
                            args,
                        }),
                        thought_signature: (first_call && is_gemini3(&s.model))
                            .then_some(SKIP_SIGNATURE),
                        ..Default::default()
                    });
                }
                turns.push("model", parts);
                i += 1;
            }
            Role::Tool => {
                // All results of one turn go into one content, in call order.
                let mut results: Vec<(usize, Part<'a>)> = Vec::new();
                while i < msgs.len() && msgs[i].role == Role::Tool {
                    let t = &msgs[i];
                    let full_id = t.tool_call_id.as_deref().unwrap_or("");
                    let (id, _) = split_call_id(full_id);
                    let (name, pos) = match calls.get(id) {
                        Some(found) => *found,
                        None => match t.name.as_deref() {
                            Some(name) => (name, usize::MAX),
                            None => {
                                return Err(bad(
                                    format!(
                                        "messages[{i}]: `tool_call_id` `{}` does not match a tool call of an earlier assistant message",
                                        truncate(full_id, 80)
                                    ),
                                    "messages",
                                ));
                            }
                        },
                    };
                    results.push((
                        pos,
                        Part {
                            function_response: Some(FunctionResponseOut {
                                id: (send_ids && !id.is_empty()).then_some(id),
                                name,
                                response: tool_output(t.content.as_ref()),
                            }),
                            ..Default::default()
                        },
                    ));
                    i += 1;
                }
                results.sort_by_key(|(pos, _)| *pos);
                turns.push("user", results.into_iter().map(|(_, p)| p).collect());
            }
            Role::Function => {
                let Some(name) = m.name.as_deref() else {
                    return Err(bad(
                        format!("messages[{i}]: a `function` message needs `name`"),
                        "messages",
                    ));
                };
                turns.push(
                    "user",
                    vec![Part {
                        function_response: Some(FunctionResponseOut {
                            id: None,
                            name,
                            response: tool_output(m.content.as_ref()),
                        }),
                        ..Default::default()
                    }],
                );
                i += 1;
            }
            other => {
                return Err(bad(
                    format!(
                        "messages[{i}]: the role `{}` is not supported",
                        truncate(other.as_str(), 40)
                    ),
                    "messages",
                ));
            }
        }
    }
    Ok((turns.contents, system))
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Tool-call arguments (a JSON string) as the object Gemini wants; `""` is `{}`.
fn arguments(f: &FunctionCall, i: usize, j: Option<usize>) -> Result<&RawValue, Error> {
    let text = f.arguments.trim();
    if text.is_empty() {
        return Ok(empty_object());
    }
    let where_ = match j {
        Some(j) => format!("messages[{i}].tool_calls[{j}].function.arguments"),
        None => format!("messages[{i}].function_call.arguments"),
    };
    let raw: &RawValue = serde_json::from_str(text)
        .map_err(|e| bad(format!("{where_} is not valid JSON: {e}"), "messages"))?;
    if !raw.get().starts_with('{') {
        return Err(bad(format!("{where_} must be a JSON object"), "messages"));
    }
    Ok(raw)
}

/// A tool's output as a `functionResponse.response`: a JSON object is passed
/// as is, anything else becomes `{"result": "<text>"}`.
fn tool_output(content: Option<&OaContent>) -> ResponseValue<'_> {
    match content {
        Some(OaContent::Text(t)) => {
            let trimmed = t.trim();
            if trimmed.starts_with('{')
                && let Ok(raw) = serde_json::from_str::<&RawValue>(trimmed)
            {
                return ResponseValue::Object(raw);
            }
            ResponseValue::Wrapped {
                result: Value::String(t.clone()),
            }
        }
        Some(c @ OaContent::Parts(_)) => {
            let text = c.text();
            if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(text.trim()) {
                return ResponseValue::Owned(v);
            }
            ResponseValue::Wrapped {
                result: Value::String(text.into_owned()),
            }
        }
        None => ResponseValue::Wrapped {
            result: Value::String(String::new()),
        },
    }
}

fn user_parts<'a>(
    s: &'a Settings,
    content: &'a OaContent,
    media: Option<&'a FetchedMedia>,
    i: usize,
) -> Result<Vec<Part<'a>>, Error> {
    match content {
        OaContent::Text(t) => Ok(vec![Part::text(t.as_str())]),
        OaContent::Parts(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                if let Some(p) = content_part(s, part, media, i, j)? {
                    out.push(p);
                }
            }
            Ok(out)
        }
    }
}

fn content_part<'a>(
    s: &'a Settings,
    part: &'a ContentPart,
    media: Option<&'a FetchedMedia>,
    i: usize,
    j: usize,
) -> Result<Option<Part<'a>>, Error> {
    let at = || format!("messages[{i}].content[{j}]");
    Ok(Some(match &part.kind {
        PartType::Text => Part::text(part.text.as_deref().unwrap_or("")),
        PartType::ImageUrl => {
            let Some(image) = &part.image_url else {
                return Err(bad(format!("{} has no `image_url`", at()), "messages"));
            };
            image_part(s, image, media, &at)?
        }
        PartType::InputAudio => {
            let Some(audio) = &part.input_audio else {
                return Err(bad(format!("{} has no `input_audio`", at()), "messages"));
            };
            let mime = match audio.format.as_str() {
                "mp3" | "mpeg" => Cow::Borrowed("audio/mp3"),
                "wav" => Cow::Borrowed("audio/wav"),
                other => Cow::Owned(format!("audio/{other}")),
            };
            Part {
                inline_data: Some(Blob {
                    mime_type: mime,
                    data: Cow::Borrowed(&audio.data),
                }),
                ..Default::default()
            }
        }
        PartType::File => {
            let Some(file) = &part.file else {
                return Err(bad(format!("{} has no `file`", at()), "messages"));
            };
            let format = file.extra.get("format").and_then(raw_str);
            if let Some(data) = &file.file_data {
                let Some((mime, b64)) = data_uri(data) else {
                    return Err(bad(
                        format!(
                            "{}.file.file_data must be a base64 data URL (data:<type>;base64,…)",
                            at()
                        ),
                        "messages",
                    ));
                };
                Part {
                    inline_data: Some(Blob {
                        mime_type: Cow::Borrowed(mime),
                        data: Cow::Borrowed(b64),
                    }),
                    ..Default::default()
                }
            } else if let Some(id) = file
                .file_id
                .as_deref()
                .filter(|id| id.starts_with("gs://") || id.starts_with("https://"))
            {
                Part {
                    file_data: Some(FileData {
                        mime_type: format
                            .map(Cow::Owned)
                            .or_else(|| guess_mime(id).map(Cow::Borrowed)),
                        file_uri: id,
                    }),
                    ..Default::default()
                }
            } else {
                return Err(bad(
                    format!(
                        "{}: Gemini takes files as `file_data` (a base64 data URL) or as a `file_id` that is a gs:// or https:// URI",
                        at()
                    ),
                    "messages",
                ));
            }
        }
        PartType::Refusal => return Ok(None),
        other => {
            return Err(bad(
                format!(
                    "{}: content parts of type `{}` are not supported on Gemini",
                    at(),
                    truncate(other.as_str(), 40)
                ),
                "messages",
            ));
        }
    }))
}

fn raw_str(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(raw.get()).ok()
}

/// `data:<mime>;base64,<data>` → (mime, data).
fn data_uri(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    Some((if mime.is_empty() { "image/jpeg" } else { mime }, data))
}

/// URLs Google fetches itself on every API: Cloud Storage, the Gemini Files
/// API, YouTube.
fn google_readable(url: &str) -> bool {
    url.starts_with("gs://")
        || url.starts_with("https://generativelanguage.googleapis.com/")
        || url.starts_with("https://www.youtube.com/")
        || url.starts_with("https://youtube.com/")
        || url.starts_with("https://youtu.be/")
}

fn image_part<'a>(
    s: &'a Settings,
    image: &'a ImageUrl,
    media: Option<&'a FetchedMedia>,
    at: &dyn Fn() -> String,
) -> Result<Part<'a>, Error> {
    let url = image.url.as_str();
    if url.starts_with("data:") {
        let Some((mime, data)) = data_uri(url) else {
            return Err(bad(
                format!(
                    "{}.image_url.url must be a base64 data URL (data:image/png;base64,…)",
                    at()
                ),
                "messages",
            ));
        };
        return Ok(Part {
            inline_data: Some(Blob {
                mime_type: Cow::Borrowed(mime),
                data: Cow::Borrowed(data),
            }),
            ..Default::default()
        });
    }
    let format = image.extra.get("format").and_then(raw_str);
    let file_part = |default: Option<&'static str>| Part {
        file_data: Some(FileData {
            mime_type: format
                .clone()
                .map(Cow::Owned)
                .or_else(|| guess_mime(url).or(default).map(Cow::Borrowed)),
            file_uri: url,
        }),
        ..Default::default()
    };
    if google_readable(url) {
        return Ok(file_part(None));
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(bad(
            format!(
                "{}.image_url.url must be a data: URL, an http(s) URL or a gs:// URI",
                at()
            ),
            "messages",
        ));
    }
    match &s.image_urls {
        ImageUrls::PassUri => Ok(file_part(Some("image/jpeg"))),
        ImageUrls::Fetch(_) => match media.and_then(|m| m.get(url)) {
            Some((mime, data)) => Ok(Part {
                inline_data: Some(Blob {
                    mime_type: Cow::Borrowed(mime),
                    data: Cow::Borrowed(data),
                }),
                ..Default::default()
            }),
            None => Err(Error::internal(
                "a remote image was not fetched before the call",
            )),
        },
        ImageUrls::Refuse => Err(bad(
            format!(
                "{}: Gemini needs the image itself, and fetching image URLs is off for this deployment. Send the image as a data URL (data:image/png;base64,…), or ask the operator to set `fetch_image_urls: true`.",
                at()
            ),
            "messages",
        )),
    }
}

// ---------------------------------------------------------------------------
// Tools.

type ToolsOut<'a> = (Vec<ToolOut<'a>>, Option<Value>);

fn tools<'a>(p: &Params<'a>) -> Result<ToolsOut<'a>, Error> {
    let mut declarations: Vec<FunctionDeclaration<'a>> = Vec::new();
    let mut native: Vec<ToolOut<'a>> = Vec::new();
    let declare = |f: &'a crate::types::FunctionDef| -> Result<FunctionDeclaration<'a>, Error> {
        let parameters = match &f.parameters {
            Some(schema) => Some(clean_schema(schema).map_err(|why| {
                bad(
                    format!("the parameters of tool `{}`: {why}", truncate(&f.name, 64)),
                    "tools",
                )
            })?),
            None => None,
        };
        Ok(FunctionDeclaration {
            name: &f.name,
            description: f.description.as_deref(),
            parameters,
        })
    };
    let tool_list: &'a [Tool] = p.pick("tools", |b| b.tools.as_deref()).unwrap_or(&[]);
    for (k, tool) in tool_list.iter().enumerate() {
        match (&tool.function, tool.kind.as_str()) {
            (Some(f), "function") => declarations.push(declare(f)?),
            (None, _) if !tool.extra.is_empty() => {
                // A Gemini tool such as `{"googleSearch": {}}`, passed through.
                let mut map = Map::new();
                for (key, raw) in tool.extra.iter() {
                    let v: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
                    map.insert(key.to_owned(), v);
                }
                native.push(ToolOut::Native(map));
            }
            _ => {
                return Err(bad(
                    format!(
                        "tools[{k}]: tools of type `{}` are not supported on Gemini",
                        truncate(&tool.kind, 40)
                    ),
                    "tools",
                ));
            }
        }
    }
    for f in p
        .pick("functions", |b| b.functions.as_deref())
        .unwrap_or(&[])
    {
        declarations.push(declare(f)?);
    }
    if p.pick("web_search_options", |b| b.web_search_options.as_ref())
        .is_some()
        && !native.iter().any(|t| match t {
            ToolOut::Native(m) => m.contains_key("googleSearch") || m.contains_key("google_search"),
            ToolOut::Functions { .. } => false,
        })
    {
        let mut m = Map::new();
        m.insert("googleSearch".into(), Value::Object(Map::new()));
        native.push(ToolOut::Native(m));
    }

    let mut tool_config = None;
    if !declarations.is_empty() {
        let choice = p.pick("tool_choice", |b| b.tool_choice.as_ref());
        let legacy = p.pick("function_call", |b| b.function_call.as_ref());
        let mode = match (choice, legacy) {
            (Some(c), _) => Some(map_tool_choice(c, &mut declarations)?),
            (None, Some(f)) => Some(map_function_call(f)?),
            (None, None) => None,
        };
        tool_config = mode.map(|cfg| json!({ "functionCallingConfig": cfg }));
    }
    let mut out = Vec::with_capacity(1 + native.len());
    if !declarations.is_empty() {
        out.push(ToolOut::Functions {
            function_declarations: declarations,
        });
    }
    out.extend(native);
    Ok((out, tool_config))
}

fn map_tool_choice(
    choice: &ToolChoice,
    declarations: &mut Vec<FunctionDeclaration<'_>>,
) -> Result<Value, Error> {
    Ok(match choice {
        ToolChoice::None => json!({"mode": "NONE"}),
        ToolChoice::Auto => json!({"mode": "AUTO"}),
        ToolChoice::Required => json!({"mode": "ANY"}),
        ToolChoice::Function(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        ToolChoice::Other(v) => {
            // {"type":"allowed_tools","allowed_tools":{"mode":"auto"|"required","tools":[…]}}
            let allowed = v
                .get("allowed_tools")
                .filter(|_| v.get("type").and_then(Value::as_str) == Some("allowed_tools"));
            let Some(allowed) = allowed else {
                return Err(bad(
                    "this `tool_choice` shape is not supported on Gemini (use none, auto, required, a function, or allowed_tools)",
                    "tool_choice",
                ));
            };
            let names: Vec<String> = allowed
                .get("tools")
                .and_then(Value::as_array)
                .map(|tools| {
                    tools
                        .iter()
                        .filter_map(|t| {
                            t.get("function")
                                .and_then(|f| f.get("name"))
                                .or_else(|| t.get("name"))
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        })
                        .collect()
                })
                .unwrap_or_default();
            match allowed.get("mode").and_then(Value::as_str) {
                Some("required") => json!({"mode": "ANY", "allowedFunctionNames": names}),
                Some("auto") | None => {
                    // Gemini restricts names only in ANY mode: offer only the allowed functions.
                    declarations.retain(|d| names.iter().any(|n| n == d.name));
                    json!({"mode": "AUTO"})
                }
                Some(other) => {
                    return Err(bad(
                        format!(
                            "tool_choice.allowed_tools.mode `{}` is not supported",
                            truncate(other, 40)
                        ),
                        "tool_choice",
                    ));
                }
            }
        }
    })
}

fn map_function_call(f: &Value) -> Result<Value, Error> {
    Ok(match f {
        Value::String(s) if s == "none" => json!({"mode": "NONE"}),
        Value::String(s) if s == "auto" => json!({"mode": "AUTO"}),
        Value::Object(o) => match o.get("name").and_then(Value::as_str) {
            Some(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
            None => return Err(bad("`function_call` needs a `name`", "function_call")),
        },
        _ => {
            return Err(bad(
                "`function_call` must be none, auto or {\"name\":…}",
                "function_call",
            ));
        }
    })
}

// ---------------------------------------------------------------------------
// generationConfig.

fn generation_config<'a>(s: &'a Settings, p: &Params<'a>) -> Result<GenerationConfig<'a>, Error> {
    let mut g = GenerationConfig {
        temperature: p.pick("temperature", |b| b.temperature),
        top_p: p.pick("top_p", |b| b.top_p),
        top_k: p.extra(&["top_k", "topK"]),
        max_output_tokens: p
            .pick("max_completion_tokens", |b| b.max_completion_tokens)
            .or_else(|| p.pick("max_tokens", |b| b.max_tokens)),
        stop_sequences: p.pick("stop", |b| b.stop.as_ref()).map(|s| s.as_slice()),
        candidate_count: p.pick("n", |b| b.n),
        seed: p.pick("seed", |b| b.seed),
        presence_penalty: p.pick("presence_penalty", |b| b.presence_penalty),
        frequency_penalty: p.pick("frequency_penalty", |b| b.frequency_penalty),
        ..Default::default()
    };

    if let Some(format) = p.pick("response_format", |b| b.response_format.as_ref()) {
        match &format.kind {
            ResponseFormatType::Text => {}
            ResponseFormatType::JsonObject => g.response_mime_type = Some("application/json"),
            ResponseFormatType::JsonSchema => {
                g.response_mime_type = Some("application/json");
                if let Some(schema) = format.json_schema.as_ref().and_then(|j| j.schema.as_ref()) {
                    g.response_schema = Some(clean_schema(schema).map_err(|why| {
                        bad(
                            format!("response_format.json_schema: {why}"),
                            "response_format",
                        )
                    })?);
                }
            }
            other => {
                return Err(bad(
                    format!(
                        "response_format `{}` is not supported on Gemini",
                        truncate(other.as_str(), 40)
                    ),
                    "response_format",
                ));
            }
        }
    }

    if p.pick("logprobs", |b| b.logprobs) == Some(true) {
        g.response_logprobs = Some(true);
        g.logprobs = p.pick("top_logprobs", |b| b.top_logprobs);
    }

    if let Some(modalities) = p.pick("modalities", |b| b.modalities.as_ref()) {
        g.response_modalities = Some(Value::Array(
            modalities
                .iter()
                .map(|m| Value::String(m.to_ascii_uppercase()))
                .collect(),
        ));
    }
    if let Some(raw) = p.extra(&["response_modalities", "responseModalities"]) {
        g.response_modalities = Some(serde_json::from_str(raw.get()).map_err(|_| {
            bad(
                "`response_modalities` must be a list",
                "response_modalities",
            )
        })?);
    }

    if let Some(raw) = p.extra(&["thinkingConfig", "thinking_config"]) {
        g.thinking_config = Some(
            serde_json::from_str(raw.get())
                .map_err(|_| bad("`thinkingConfig` must be a JSON object", "thinkingConfig"))?,
        );
    } else if let Some(raw) = p.extra(&["thinking"]) {
        g.thinking_config = Some(thinking_from_anthropic_style(raw)?);
    } else if let Some(effort) = p.pick("reasoning_effort", |b| b.reasoning_effort.as_ref()) {
        g.thinking_config = Some(thinking_for_effort(&s.model, effort)?);
    }

    // Gemini-native generationConfig fields win over the mapped ones.
    if let Some(raw) = p.extra(&["generationConfig", "generation_config"]) {
        let extra: Map<String, Value> = serde_json::from_str(raw.get()).map_err(|_| {
            bad(
                "`generationConfig` must be a JSON object",
                "generationConfig",
            )
        })?;
        for (k, v) in extra {
            clear_typed(&mut g, &k);
            g.extra.insert(k, v);
        }
    }
    Ok(g)
}

/// Unsets the typed field a passed-through `generationConfig` key replaces, so
/// the JSON never holds the same key twice.
fn clear_typed(g: &mut GenerationConfig<'_>, key: &str) {
    match key {
        "temperature" => g.temperature = None,
        "topP" | "top_p" => g.top_p = None,
        "topK" | "top_k" => g.top_k = None,
        "maxOutputTokens" | "max_output_tokens" => g.max_output_tokens = None,
        "stopSequences" | "stop_sequences" => g.stop_sequences = None,
        "candidateCount" | "candidate_count" => g.candidate_count = None,
        "seed" => g.seed = None,
        "presencePenalty" | "presence_penalty" => g.presence_penalty = None,
        "frequencyPenalty" | "frequency_penalty" => g.frequency_penalty = None,
        "responseMimeType" | "response_mime_type" => g.response_mime_type = None,
        "responseSchema" | "response_schema" => g.response_schema = None,
        "responseLogprobs" | "response_logprobs" => g.response_logprobs = None,
        "logprobs" => g.logprobs = None,
        "responseModalities" | "response_modalities" => g.response_modalities = None,
        "thinkingConfig" | "thinking_config" => g.thinking_config = None,
        _ => {}
    }
}
