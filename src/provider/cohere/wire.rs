//! Cohere v2 wire types (answers), parsed leniently: every field is optional.

use serde::Deserialize;
use serde_json::Value;

/// A `/v2/chat` answer.
#[derive(Debug, Default, Deserialize)]
pub struct ChatResponse {
    /// Generation id.
    #[serde(default)]
    pub id: Option<String>,
    /// `COMPLETE`, `STOP_SEQUENCE`, `MAX_TOKENS`, `TOOL_CALL`, `ERROR`, `TIMEOUT`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// The assistant's message.
    #[serde(default)]
    pub message: Option<AssistantMessage>,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<CohereUsage>,
}

/// The assistant's message of an answer.
#[derive(Debug, Default, Deserialize)]
pub struct AssistantMessage {
    /// Text and thinking blocks.
    #[serde(default)]
    pub content: Option<Vec<ContentBlock>>,
    /// The model's plan before calling tools.
    #[serde(default)]
    pub tool_plan: Option<String>,
    /// Tool calls.
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Citations of documents and tool results.
    #[serde(default)]
    pub citations: Option<Value>,
}

/// One content block: `{"type":"text","text"}` or `{"type":"thinking","thinking"}`.
#[derive(Debug, Default, Deserialize)]
pub struct ContentBlock {
    /// The block type.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Text, for `text` blocks.
    #[serde(default)]
    pub text: Option<String>,
    /// Reasoning, for `thinking` blocks.
    #[serde(default)]
    pub thinking: Option<String>,
}

/// A tool call.
#[derive(Debug, Default, Deserialize)]
pub struct ToolCall {
    /// Call id.
    #[serde(default)]
    pub id: Option<String>,
    /// The function and its arguments.
    #[serde(default)]
    pub function: Option<Function>,
}

/// A called function.
#[derive(Debug, Default, Deserialize)]
pub struct Function {
    /// Its name.
    #[serde(default)]
    pub name: Option<String>,
    /// The arguments: a JSON string (sometimes `"null"` or empty), rarely an object.
    #[serde(default)]
    pub arguments: Option<Value>,
}

/// `usage` of an answer or of `message-end`.
#[derive(Debug, Default, Deserialize)]
pub struct CohereUsage {
    /// What is billed (a subset of `tokens`).
    #[serde(default)]
    pub billed_units: Option<Units>,
    /// What the model processed.
    #[serde(default)]
    pub tokens: Option<Units>,
    /// Prompt tokens read from the cache (part of `tokens.input_tokens`).
    #[serde(default)]
    pub cached_tokens: Option<f64>,
}

/// Input and output token counts.
#[derive(Debug, Default, Deserialize)]
pub struct Units {
    /// Input tokens.
    #[serde(default)]
    pub input_tokens: Option<f64>,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: Option<f64>,
}

/// A `/v2/embed` answer.
#[derive(Debug, Default, Deserialize)]
pub struct EmbedResponse {
    /// Request id.
    #[serde(default)]
    pub id: Option<String>,
    /// `{"float": [[…]], …}` by embedding type (or, from older models, a plain list).
    #[serde(default)]
    pub embeddings: Option<Value>,
    /// `billed_units` and the API version.
    #[serde(default)]
    pub meta: Option<EmbedMeta>,
}

/// `meta` of an embed answer.
#[derive(Debug, Default, Deserialize)]
pub struct EmbedMeta {
    /// What is billed.
    #[serde(default)]
    pub billed_units: Option<Units>,
}
