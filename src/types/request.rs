//! The chat/completions request: [`ChatRequest`] and the wire types it is made of.

use super::enums::{PartType, ReasoningEffort, ResponseFormatType, Role};
use super::wire::wire_object;
use crate::Secret;
use crate::error::Error;
use http::Extensions;
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A chat/completions request travelling through the layers.
///
/// The OpenAI body is behind an `Arc` so that retries and fallbacks resend it
/// without copying; [`ChatRequest::body_mut`] copies on write. `extensions`
/// carry request-scoped context that layers add (identity, request id, deadline,
/// tags) and never go upstream.
///
/// ```
/// use tollgate::ChatRequest;
///
/// let req = ChatRequest::from_json(br#"{
///     "model": "gpt-4o-mini",
///     "messages": [{"role": "user", "content": "Hello"}],
///     "stream": true,
///     "x_vendor_flag": {"kept": true}
/// }"#).unwrap();
/// assert_eq!(req.model, "gpt-4o-mini");
/// assert!(req.is_stream());
/// // Unknown fields are kept verbatim for the provider.
/// assert_eq!(req.extra.get("x_vendor_flag").unwrap().get(), r#"{"kept": true}"#);
///
/// // Cheap to clone: the body is shared.
/// let again = req.clone();
/// assert!(std::ptr::eq(&*req, &*again));
/// ```
#[derive(Clone, Debug)]
pub struct ChatRequest {
    body: Arc<ChatRequestBody>,
    /// Request-scoped context added by the edge and the layers.
    pub extensions: Extensions,
}

impl ChatRequest {
    /// Wraps a body with empty extensions.
    pub fn new(body: ChatRequestBody) -> Self {
        ChatRequest {
            body: Arc::new(body),
            extensions: Extensions::new(),
        }
    }

    /// Parses a JSON body. Errors are `BadRequest` naming the offending field.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        super::parse_json::<ChatRequestBody>(bytes).map(ChatRequest::new)
    }

    /// The body.
    pub fn body(&self) -> &ChatRequestBody {
        &self.body
    }

    /// The shared body (to keep a cheap handle after the request moves on).
    pub fn shared_body(&self) -> &Arc<ChatRequestBody> {
        &self.body
    }

    /// Mutable access to the body, copying it first if it is shared.
    pub fn body_mut(&mut self) -> &mut ChatRequestBody {
        Arc::make_mut(&mut self.body)
    }

    /// Splits into the shared body and the extensions.
    pub fn into_parts(self) -> (Arc<ChatRequestBody>, Extensions) {
        (self.body, self.extensions)
    }

    /// Rebuilds from parts.
    pub fn from_parts(body: Arc<ChatRequestBody>, extensions: Extensions) -> Self {
        ChatRequest { body, extensions }
    }

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.body.stream.unwrap_or(false)
    }

    /// Whether the client asked for the usage chunk at the end of a stream.
    pub fn include_usage(&self) -> bool {
        self.body
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }
}

impl Deref for ChatRequest {
    type Target = ChatRequestBody;
    fn deref(&self) -> &ChatRequestBody {
        &self.body
    }
}

impl From<ChatRequestBody> for ChatRequest {
    fn from(body: ChatRequestBody) -> Self {
        ChatRequest::new(body)
    }
}

wire_object! {
    /// The OpenAI chat/completions request body, typed for every field a
    /// translator needs. Fields that only the gateway reads (LiteLLM's
    /// `metadata`, `fallbacks`, `mock_response`, …) are parsed but never
    /// serialised, so they can not leak upstream.
    #[derive(Clone, Debug, PartialEq)]
    pub struct ChatRequestBody {
        required {
            /// The model (or model group, or alias) the client asked for.
            pub model: String = "model",
            /// The conversation.
            pub messages: Vec<Message> = "messages",
        }
        optional {
            /// -2..2.
            pub frequency_penalty: f64 = "frequency_penalty",
            /// -2..2.
            pub presence_penalty: f64 = "presence_penalty",
            /// Token id → bias.
            pub logit_bias: Value = "logit_bias",
            /// Return log probabilities.
            pub logprobs: bool = "logprobs",
            /// How many alternatives per token position.
            pub top_logprobs: u32 = "top_logprobs",
            /// Deprecated output limit (same meaning as `max_completion_tokens`).
            pub max_tokens: u32 = "max_tokens",
            /// Output limit including reasoning tokens.
            pub max_completion_tokens: u32 = "max_completion_tokens",
            /// Number of choices.
            pub n: u32 = "n",
            /// Sampling seed.
            pub seed: i64 = "seed",
            /// `auto`, `default`, `flex`, `priority`.
            pub service_tier: String = "service_tier",
            /// Stop sequences.
            pub stop: Stop = "stop",
            /// Stream the answer as server-sent events.
            pub stream: bool = "stream",
            /// Stream options (`include_usage`).
            pub stream_options: StreamOptions = "stream_options",
            /// 0..2.
            pub temperature: f64 = "temperature",
            /// Nucleus sampling.
            pub top_p: f64 = "top_p",
            /// Tools the model may call.
            pub tools: Vec<Tool> = "tools",
            /// Which tool the model must call.
            pub tool_choice: ToolChoice = "tool_choice",
            /// Allow several tool calls in one turn.
            pub parallel_tool_calls: bool = "parallel_tool_calls",
            /// End-user id (for abuse monitoring upstream, and end-user budgets here).
            pub user: String = "user",
            /// Reasoning effort for reasoning models.
            pub reasoning_effort: ReasoningEffort = "reasoning_effort",
            /// Output format.
            pub response_format: ResponseFormat = "response_format",
            /// Store the completion upstream.
            pub store: bool = "store",
            /// Output modalities (`text`, `audio`).
            pub modalities: Vec<String> = "modalities",
            /// Audio output parameters.
            pub audio: Value = "audio",
            /// Predicted output.
            pub prediction: Value = "prediction",
            /// Web search options.
            pub web_search_options: Value = "web_search_options",
            /// Legacy function definitions.
            pub functions: Vec<FunctionDef> = "functions",
            /// Legacy function choice.
            pub function_call: Value = "function_call",
            /// Output verbosity (`low`, `medium`, `high`).
            pub verbosity: String = "verbosity",
            /// Prompt-cache routing key.
            pub prompt_cache_key: String = "prompt_cache_key",
            /// Stable end-user identifier for safety systems.
            pub safety_identifier: String = "safety_identifier",
        }
        local {
            /// LiteLLM metadata (tags, trace ids, …). Read by the gateway, never forwarded.
            pub metadata: serde_json::Map<String, Value> = "metadata",
            /// A canned answer (LiteLLM's `mock_response`): a string, or an error name such as `litellm.RateLimitError`.
            pub mock_response: Value = "mock_response",
            /// Per-request fallback model groups.
            pub fallbacks: Value = "fallbacks",
            /// Per-request retry count.
            pub num_retries: u32 = "num_retries",
            /// Per-request timeout in seconds.
            pub timeout: f64 = "timeout",
            /// Per-request cache controls.
            pub cache: Value = "cache",
            /// Request tags (routing, spend).
            pub tags: Vec<String> = "tags",
            /// Drop parameters the provider does not support instead of failing.
            pub drop_params: bool = "drop_params",
            /// Parameter names to drop before sending upstream.
            pub additional_drop_params: Vec<String> = "additional_drop_params",
            /// Client-side provider key: refused unless the operator allows client credentials.
            pub api_key: Secret = "api_key",
            /// Client-side base URL: refused unless the operator allows client credentials.
            pub api_base: String = "api_base",
            /// Alias of `api_base`, refused the same way.
            pub base_url: String = "base_url",
            /// Client-side API version: refused unless the operator allows client credentials.
            pub api_version: String = "api_version",
            /// Client-side upstream headers: refused unless the operator allows client credentials.
            pub extra_headers: Value = "extra_headers",
        }
    }
}

impl ChatRequestBody {
    /// A minimal body: a model and messages.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        ChatRequestBody {
            model: model.into(),
            messages,
            frequency_penalty: None,
            presence_penalty: None,
            logit_bias: None,
            logprobs: None,
            top_logprobs: None,
            max_tokens: None,
            max_completion_tokens: None,
            n: None,
            seed: None,
            service_tier: None,
            stop: None,
            stream: None,
            stream_options: None,
            temperature: None,
            top_p: None,
            tools: None,
            tool_choice: None,
            parallel_tool_calls: None,
            user: None,
            reasoning_effort: None,
            response_format: None,
            store: None,
            modalities: None,
            audio: None,
            prediction: None,
            web_search_options: None,
            functions: None,
            function_call: None,
            verbosity: None,
            prompt_cache_key: None,
            safety_identifier: None,
            metadata: None,
            mock_response: None,
            fallbacks: None,
            num_retries: None,
            timeout: None,
            cache: None,
            tags: None,
            drop_params: None,
            additional_drop_params: None,
            api_key: None,
            api_base: None,
            base_url: None,
            api_version: None,
            extra_headers: None,
            extra: Default::default(),
        }
    }

    /// The output limit the client set, whichever field it used.
    pub fn output_limit(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// The names of client-side credential fields present in the body
    /// (`api_key`, `api_base`, `base_url`, `api_version`, `extra_headers`).
    pub fn client_credential_fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.api_key.is_some() {
            out.push("api_key");
        }
        if self.api_base.is_some() {
            out.push("api_base");
        }
        if self.base_url.is_some() {
            out.push("base_url");
        }
        if self.api_version.is_some() {
            out.push("api_version");
        }
        if self.extra_headers.is_some() {
            out.push("extra_headers");
        }
        out
    }

    /// Writes the body as it goes to an OpenAI-compatible upstream: `model`
    /// replaced, the fields named in `except` left out, then whatever `more`
    /// writes, then `defaults` for fields the body does not set.
    pub(crate) fn write_upstream_json(
        &self,
        model: &str,
        except: &[&str],
        defaults: &super::Extra,
        more: impl FnOnce(&mut UpstreamMap<'_, '_>) -> serde_json::Result<()>,
    ) -> serde_json::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(256 + self.messages.len() * 128);
        let mut ser = serde_json::Serializer::new(&mut out);
        let mut map = ser.serialize_map(None)?;
        map.serialize_entry("model", model)?;
        let mut skip: Vec<&str> = Vec::with_capacity(1 + except.len());
        skip.push("model");
        skip.extend_from_slice(except);
        self.serialize_entries(&mut map, &skip)?;
        more(&mut map)?;
        for (k, v) in defaults.iter() {
            if !except.contains(&k) && !self.has_field(k) {
                map.serialize_entry(k, v)?;
            }
        }
        SerializeMap::end(map)?;
        Ok(out)
    }

    /// Whether the body sets the (non-local) field named `key`.
    pub fn has_field(&self, key: &str) -> bool {
        // Serialising a field-presence probe would allocate; match the names instead.
        match key {
            "model" | "messages" => true,
            "frequency_penalty" => self.frequency_penalty.is_some(),
            "presence_penalty" => self.presence_penalty.is_some(),
            "logit_bias" => self.logit_bias.is_some(),
            "logprobs" => self.logprobs.is_some(),
            "top_logprobs" => self.top_logprobs.is_some(),
            "max_tokens" => self.max_tokens.is_some(),
            "max_completion_tokens" => self.max_completion_tokens.is_some(),
            "n" => self.n.is_some(),
            "seed" => self.seed.is_some(),
            "service_tier" => self.service_tier.is_some(),
            "stop" => self.stop.is_some(),
            "stream" => self.stream.is_some(),
            "stream_options" => self.stream_options.is_some(),
            "temperature" => self.temperature.is_some(),
            "top_p" => self.top_p.is_some(),
            "tools" => self.tools.is_some(),
            "tool_choice" => self.tool_choice.is_some(),
            "parallel_tool_calls" => self.parallel_tool_calls.is_some(),
            "user" => self.user.is_some(),
            "reasoning_effort" => self.reasoning_effort.is_some(),
            "response_format" => self.response_format.is_some(),
            "store" => self.store.is_some(),
            "modalities" => self.modalities.is_some(),
            "audio" => self.audio.is_some(),
            "prediction" => self.prediction.is_some(),
            "web_search_options" => self.web_search_options.is_some(),
            "functions" => self.functions.is_some(),
            "function_call" => self.function_call.is_some(),
            "verbosity" => self.verbosity.is_some(),
            "prompt_cache_key" => self.prompt_cache_key.is_some(),
            "safety_identifier" => self.safety_identifier.is_some(),
            other => self.extra.contains(other),
        }
    }
}

/// The JSON map an upstream body is being written into.
pub(crate) type UpstreamMap<'a, 'b> =
    serde_json::ser::Compound<'a, &'b mut Vec<u8>, serde_json::ser::CompactFormatter>;

wire_object! {
    /// One message of the conversation.
    ///
    /// ```
    /// use tollgate::types::{Message, Role};
    ///
    /// let m = Message::user("What is 2+2?");
    /// assert_eq!(m.role, Role::User);
    /// assert_eq!(m.text().as_deref(), Some("What is 2+2?"));
    /// ```
    #[derive(Clone, Debug, PartialEq)]
    pub struct Message {
        required {
            /// Who wrote it.
            pub role: Role = "role",
        }
        optional {
            /// Text or parts. `None` for an assistant turn that only calls tools.
            pub content: Content = "content",
            /// Participant name.
            pub name: String = "name",
            /// Tool calls made by the assistant.
            pub tool_calls: Vec<ToolCall> = "tool_calls",
            /// For `tool` messages: the call this answers.
            pub tool_call_id: String = "tool_call_id",
            /// Legacy function call made by the assistant.
            pub function_call: FunctionCall = "function_call",
            /// An assistant refusal.
            pub refusal: String = "refusal",
        }
    }
}

impl Message {
    /// A message with a role and text content.
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: Some(Content::Text(text.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            function_call: None,
            refusal: None,
            extra: Default::default(),
        }
    }

    /// A `system` message.
    pub fn system(text: impl Into<String>) -> Self {
        Message::new(Role::System, text)
    }

    /// A `user` message.
    pub fn user(text: impl Into<String>) -> Self {
        Message::new(Role::User, text)
    }

    /// An `assistant` message.
    pub fn assistant(text: impl Into<String>) -> Self {
        Message::new(Role::Assistant, text)
    }

    /// A `tool` result message.
    pub fn tool(tool_call_id: impl Into<String>, text: impl Into<String>) -> Self {
        let mut m = Message::new(Role::Tool, text);
        m.tool_call_id = Some(tool_call_id.into());
        m
    }

    /// The text of the message: the string content, or its text parts joined.
    pub fn text(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.content.as_ref().map(Content::text)
    }
}

/// Message content: a string or a list of parts.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text, images, audio and files.
    Parts(Vec<ContentPart>),
}

impl Content {
    /// The text, with text parts concatenated (no separator, as OpenAI does).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Content::Text(s) => std::borrow::Cow::Borrowed(s),
            Content::Parts(parts) => {
                let mut texts = parts.iter().filter_map(|p| p.text.as_deref());
                match (texts.next(), texts.next()) {
                    (None, _) => std::borrow::Cow::Borrowed(""),
                    (Some(one), None) => std::borrow::Cow::Borrowed(one),
                    (Some(a), Some(b)) => {
                        let mut s = String::from(a);
                        s.push_str(b);
                        for t in texts {
                            s.push_str(t);
                        }
                        std::borrow::Cow::Owned(s)
                    }
                }
            }
        }
    }
}

impl Serialize for Content {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Content::Text(t) => s.serialize_str(t),
            Content::Parts(p) => p.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(2));
                while let Some(p) = seq.next_element()? {
                    parts.push(p);
                }
                Ok(Content::Parts(parts))
            }
        }
        d.deserialize_any(V)
    }
}

wire_object! {
    /// One part of a multi-part message.
    #[derive(Clone, Debug, PartialEq)]
    pub struct ContentPart {
        required {
            /// `text`, `image_url`, `input_audio`, `file`, `refusal`.
            pub kind: PartType = "type",
        }
        optional {
            /// For `text` parts.
            pub text: String = "text",
            /// For `image_url` parts.
            pub image_url: ImageUrl = "image_url",
            /// For `input_audio` parts.
            pub input_audio: InputAudio = "input_audio",
            /// For `file` parts.
            pub file: FileRef = "file",
            /// For `refusal` parts.
            pub refusal: String = "refusal",
        }
    }
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart {
            kind: PartType::Text,
            text: Some(text.into()),
            image_url: None,
            input_audio: None,
            file: None,
            refusal: None,
            extra: Default::default(),
        }
    }

    /// An image part from an `https://` or `data:` URL.
    pub fn image(url: impl Into<String>) -> Self {
        ContentPart {
            kind: PartType::ImageUrl,
            text: None,
            image_url: Some(ImageUrl {
                url: url.into(),
                detail: None,
                extra: Default::default(),
            }),
            input_audio: None,
            file: None,
            refusal: None,
            extra: Default::default(),
        }
    }
}

wire_object! {
    /// An image reference: an `https://` URL or a `data:` URI.
    #[derive(Clone, Debug, PartialEq)]
    pub struct ImageUrl {
        required {
            /// The URL or data URI.
            pub url: String = "url",
        }
        optional {
            /// `auto`, `low`, `high`.
            pub detail: String = "detail",
        }
    }
}

impl ImageUrl {
    /// For a `data:<media type>;base64,<data>` URI: the media type and the base64 data.
    pub fn as_data_uri(&self) -> Option<(&str, &str)> {
        let rest = self.url.strip_prefix("data:")?;
        let (meta, data) = rest.split_once(',')?;
        let media = meta.strip_suffix(";base64")?;
        Some((media, data))
    }
}

wire_object! {
    /// Inline audio input.
    #[derive(Clone, Debug, PartialEq)]
    pub struct InputAudio {
        required {
            /// Base64 audio.
            pub data: String = "data",
            /// `wav`, `mp3`.
            pub format: String = "format",
        }
    }
}

wire_object! {
    /// A file input (uploaded id or inline data).
    #[derive(Clone, Debug, PartialEq)]
    pub struct FileRef {
        optional {
            /// An uploaded file id.
            pub file_id: String = "file_id",
            /// Inline data URI.
            pub file_data: String = "file_data",
            /// The file name.
            pub filename: String = "filename",
        }
    }
}

wire_object! {
    /// A tool call made by the assistant.
    #[derive(Clone, Debug, PartialEq)]
    pub struct ToolCall {
        required {
            /// The call id, echoed back in the `tool` message.
            pub id: String = "id",
            /// The function called and its arguments.
            pub function: FunctionCall = "function",
        }
        defaulted {
            /// Always `function` today.
            pub kind: String = "type" => "function".to_owned(),
        }
    }
}

impl ToolCall {
    /// A function call with JSON-string arguments.
    pub fn function(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        ToolCall {
            id: id.into(),
            function: FunctionCall {
                name: name.into(),
                arguments: arguments.into(),
                extra: Default::default(),
            },
            kind: "function".to_owned(),
            extra: Default::default(),
        }
    }
}

wire_object! {
    /// A function name and its arguments as a JSON string.
    #[derive(Clone, Debug, PartialEq)]
    pub struct FunctionCall {
        required {
            /// The function.
            pub name: String = "name",
        }
        defaulted {
            /// The arguments, a JSON document as a string.
            pub arguments: String = "arguments" => String::new(),
        }
    }
}

wire_object! {
    /// A tool the model may call.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Tool {
        defaulted {
            /// `function` (other tool types are forwarded verbatim).
            pub kind: String = "type" => "function".to_owned(),
        }
        optional {
            /// The function definition.
            pub function: FunctionDef = "function",
        }
    }
}

impl Tool {
    /// A function tool.
    pub fn function(name: impl Into<String>, description: &str, parameters: Value) -> Self {
        Tool {
            kind: "function".to_owned(),
            function: Some(FunctionDef {
                name: name.into(),
                description: Some(description.to_owned()),
                parameters: Some(parameters),
                strict: None,
                extra: Default::default(),
            }),
            extra: Default::default(),
        }
    }
}

wire_object! {
    /// A function definition.
    #[derive(Clone, Debug, PartialEq)]
    pub struct FunctionDef {
        required {
            /// Its name.
            pub name: String = "name",
        }
        optional {
            /// What it does.
            pub description: String = "description",
            /// JSON Schema of the arguments.
            pub parameters: Value = "parameters",
            /// Strict schema adherence.
            pub strict: bool = "strict",
        }
    }
}

/// Which tool the model must call.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolChoice {
    /// `"none"`: no tool.
    None,
    /// `"auto"`: the model decides.
    Auto,
    /// `"required"`: at least one tool.
    Required,
    /// `{"type":"function","function":{"name":..}}`: this function.
    Function(String),
    /// Any other shape, forwarded verbatim.
    Other(Value),
}

impl Serialize for ToolChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Auto => s.serialize_str("auto"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::Function(name) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("type", "function")?;
                m.serialize_entry("function", &serde_json::json!({ "name": name }))?;
                m.end()
            }
            ToolChoice::Other(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match &v {
            Value::String(s) => match s.as_str() {
                "none" => ToolChoice::None,
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                other => {
                    return Err(de::Error::invalid_value(
                        de::Unexpected::Str(other),
                        &"\"none\", \"auto\", \"required\" or an object",
                    ));
                }
            },
            Value::Object(o) => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str);
                match (o.get("type").and_then(Value::as_str), name) {
                    (Some("function"), Some(name)) if o.len() == 2 => {
                        ToolChoice::Function(name.to_owned())
                    }
                    _ => ToolChoice::Other(v),
                }
            }
            _ => {
                return Err(de::Error::invalid_type(
                    de::Unexpected::Other("a non-string, non-object value"),
                    &"\"none\", \"auto\", \"required\" or an object",
                ));
            }
        })
    }
}

wire_object! {
    /// The requested output format.
    #[derive(Clone, Debug, PartialEq)]
    pub struct ResponseFormat {
        required {
            /// `text`, `json_object` or `json_schema`.
            pub kind: ResponseFormatType = "type",
        }
        optional {
            /// The schema, for `json_schema`.
            pub json_schema: JsonSchemaSpec = "json_schema",
        }
    }
}

wire_object! {
    /// A named JSON schema for structured output.
    #[derive(Clone, Debug, PartialEq)]
    pub struct JsonSchemaSpec {
        required {
            /// Schema name.
            pub name: String = "name",
        }
        optional {
            /// What the schema is for.
            pub description: String = "description",
            /// The JSON Schema.
            pub schema: Value = "schema",
            /// Strict adherence.
            pub strict: bool = "strict",
        }
    }
}

wire_object! {
    /// Streaming options.
    #[derive(Clone, Debug, PartialEq, Default)]
    pub struct StreamOptions {
        optional {
            /// Send a final chunk with usage.
            pub include_usage: bool = "include_usage",
            /// Random padding on chunks (OpenAI).
            pub include_obfuscation: bool = "include_obfuscation",
        }
    }
}

/// Stop sequences: one string or a list.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// A single sequence.
    One(String),
    /// Several sequences.
    Many(Vec<String>),
}

impl Stop {
    /// The sequences as a slice.
    pub fn as_slice(&self) -> &[String] {
        match self {
            Stop::One(s) => std::slice::from_ref(s),
            Stop::Many(v) => v,
        }
    }
}

impl Serialize for Stop {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Stop::One(v) => s.serialize_str(v),
            Stop::Many(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Stop;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Stop, E> {
                Ok(Stop::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Stop, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element()? {
                    v.push(s);
                }
                Ok(Stop::Many(v))
            }
        }
        d.deserialize_any(V)
    }
}
