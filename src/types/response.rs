//! Completions, stream chunks and usage, in the OpenAI wire shape.

use super::enums::{FinishReason, Role};
use super::request::{FunctionCall, ToolCall};
use super::wire::wire_object;
use serde_json::Value;

wire_object! {
    /// A complete (non-streamed) chat completion.
    ///
    /// ```
    /// use tollgate::ChatCompletion;
    ///
    /// let c: ChatCompletion = serde_json::from_str(r#"{
    ///   "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
    ///   "choices": [{"index": 0, "finish_reason": "stop",
    ///                "message": {"role": "assistant", "content": "Hi!"}}],
    ///   "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    /// }"#).unwrap();
    /// assert_eq!(c.text(), Some("Hi!"));
    /// assert_eq!(c.usage.unwrap().total_tokens, 7);
    /// ```
    #[derive(Clone, Debug, PartialEq)]
    pub struct ChatCompletion {
        defaulted {
            /// Completion id.
            pub id: String = "id" => String::new(),
            /// Always `chat.completion`.
            pub object: String = "object" => "chat.completion".to_owned(),
            /// Unix seconds.
            pub created: i64 = "created" => 0,
            /// The model that answered (rewritten by the gateway to what the client asked for).
            pub model: String = "model" => String::new(),
            /// The choices.
            pub choices: Vec<Choice> = "choices" => Vec::new(),
        }
        optional {
            /// Token usage.
            pub usage: Usage = "usage",
            /// Backend configuration fingerprint.
            pub system_fingerprint: String = "system_fingerprint",
            /// Service tier used.
            pub service_tier: String = "service_tier",
        }
    }
}

impl ChatCompletion {
    /// An empty completion with an id, model and creation time.
    pub fn new(id: impl Into<String>, model: impl Into<String>, created: i64) -> Self {
        ChatCompletion {
            id: id.into(),
            object: "chat.completion".to_owned(),
            created,
            model: model.into(),
            choices: Vec::new(),
            usage: None,
            system_fingerprint: None,
            service_tier: None,
            extra: Default::default(),
        }
    }

    /// The content of the first choice.
    pub fn text(&self) -> Option<&str> {
        self.choices.first()?.message.content.as_deref()
    }
}

wire_object! {
    /// One alternative answer.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Choice {
        defaulted {
            /// Position among the choices.
            pub index: u32 = "index" => 0,
            /// The answer.
            pub message: ResponseMessage = "message" => ResponseMessage::default(),
        }
        nullable {
            /// Why generation stopped.
            pub finish_reason: FinishReason = "finish_reason",
            /// Log probabilities, when asked for.
            pub logprobs: Value = "logprobs",
        }
    }
}

impl Choice {
    /// A choice with a message and finish reason.
    pub fn new(index: u32, message: ResponseMessage, finish_reason: FinishReason) -> Self {
        Choice {
            index,
            message,
            finish_reason: Some(finish_reason),
            logprobs: None,
            extra: Default::default(),
        }
    }
}

wire_object! {
    /// The assistant's message in a completion.
    #[derive(Clone, Debug, PartialEq)]
    pub struct ResponseMessage {
        defaulted {
            /// Always `assistant`.
            pub role: Role = "role" => Role::Assistant,
        }
        nullable {
            /// Text output; `null` when the model only called tools or refused.
            pub content: String = "content",
        }
        optional {
            /// A refusal (structured outputs).
            pub refusal: String = "refusal",
            /// Tool calls.
            pub tool_calls: Vec<ToolCall> = "tool_calls",
            /// Legacy function call.
            pub function_call: FunctionCall = "function_call",
            /// Reasoning text, for providers that expose it (LiteLLM's field name).
            pub reasoning_content: String = "reasoning_content",
        }
    }
}

impl Default for ResponseMessage {
    fn default() -> Self {
        ResponseMessage {
            role: Role::Assistant,
            content: None,
            refusal: None,
            tool_calls: None,
            function_call: None,
            reasoning_content: None,
            extra: Default::default(),
        }
    }
}

impl ResponseMessage {
    /// An assistant message with text.
    pub fn text(content: impl Into<String>) -> Self {
        ResponseMessage {
            content: Some(content.into()),
            ..Default::default()
        }
    }
}

wire_object! {
    /// One chunk of a streamed completion (`chat.completion.chunk`).
    #[derive(Clone, Debug, PartialEq)]
    pub struct ChatChunk {
        defaulted {
            /// Completion id (same on every chunk).
            pub id: String = "id" => String::new(),
            /// Always `chat.completion.chunk`.
            pub object: String = "object" => "chat.completion.chunk".to_owned(),
            /// Unix seconds.
            pub created: i64 = "created" => 0,
            /// The model.
            pub model: String = "model" => String::new(),
            /// Choice deltas; empty on the final usage chunk.
            pub choices: Vec<ChunkChoice> = "choices" => Vec::new(),
        }
        optional {
            /// Usage, on the final chunk.
            pub usage: Usage = "usage",
            /// Backend configuration fingerprint.
            pub system_fingerprint: String = "system_fingerprint",
            /// Service tier used.
            pub service_tier: String = "service_tier",
        }
    }
}

impl ChatChunk {
    /// An empty chunk with an id, model and creation time.
    pub fn new(id: impl Into<String>, model: impl Into<String>, created: i64) -> Self {
        ChatChunk {
            id: id.into(),
            object: "chat.completion.chunk".to_owned(),
            created,
            model: model.into(),
            choices: Vec::new(),
            usage: None,
            system_fingerprint: None,
            service_tier: None,
            extra: Default::default(),
        }
    }

    /// Whether this is the usage-only chunk that ends a stream (`choices: []` and usage set).
    pub fn is_usage_only(&self) -> bool {
        self.choices.is_empty() && self.usage.is_some()
    }

    /// Adds a choice delta and returns `self`.
    pub fn with_choice(mut self, choice: ChunkChoice) -> Self {
        self.choices.push(choice);
        self
    }
}

wire_object! {
    /// The delta for one choice in a chunk.
    #[derive(Clone, Debug, PartialEq, Default)]
    pub struct ChunkChoice {
        defaulted {
            /// Which choice.
            pub index: u32 = "index" => 0,
            /// What is new.
            pub delta: Delta = "delta" => Delta::default(),
        }
        nullable {
            /// Set on the choice's last chunk.
            pub finish_reason: FinishReason = "finish_reason",
        }
        optional {
            /// Log probabilities, when asked for.
            pub logprobs: Value = "logprobs",
        }
    }
}

impl ChunkChoice {
    /// A delta for choice `index`.
    pub fn new(index: u32, delta: Delta) -> Self {
        ChunkChoice {
            index,
            delta,
            finish_reason: None,
            logprobs: None,
            extra: Default::default(),
        }
    }

    /// The finishing delta for choice `index`.
    pub fn finish(index: u32, reason: FinishReason) -> Self {
        ChunkChoice {
            index,
            delta: Delta::default(),
            finish_reason: Some(reason),
            logprobs: None,
            extra: Default::default(),
        }
    }
}

wire_object! {
    /// What a chunk adds to a choice.
    #[derive(Clone, Debug, PartialEq, Default)]
    pub struct Delta {
        optional {
            /// `assistant`, on the first delta.
            pub role: Role = "role",
            /// A text fragment.
            pub content: String = "content",
            /// A refusal fragment.
            pub refusal: String = "refusal",
            /// Tool-call fragments.
            pub tool_calls: Vec<ToolCallDelta> = "tool_calls",
            /// Legacy function-call fragment.
            pub function_call: FunctionCallDelta = "function_call",
            /// Reasoning fragment (LiteLLM's field name).
            pub reasoning_content: String = "reasoning_content",
        }
    }
}

impl Delta {
    /// A text fragment.
    pub fn text(content: impl Into<String>) -> Self {
        Delta {
            content: Some(content.into()),
            ..Default::default()
        }
    }

    /// The opening delta: `{"role":"assistant","content":""}`.
    pub fn role() -> Self {
        Delta {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..Default::default()
        }
    }
}

wire_object! {
    /// A fragment of a tool call. The first fragment of a call carries `id`,
    /// `type` and `function.name`; later ones only `index` and argument text.
    #[derive(Clone, Debug, PartialEq, Default)]
    pub struct ToolCallDelta {
        defaulted {
            /// Which tool call of the choice (0, 1, …).
            pub index: u32 = "index" => 0,
        }
        optional {
            /// The call id (first fragment).
            pub id: String = "id",
            /// `function` (first fragment).
            pub kind: String = "type",
            /// Name and/or argument text.
            pub function: FunctionCallDelta = "function",
        }
    }
}

impl ToolCallDelta {
    /// The first fragment of a call: id, type, name and `arguments: ""`.
    pub fn start(index: u32, id: impl Into<String>, name: impl Into<String>) -> Self {
        ToolCallDelta {
            index,
            id: Some(id.into()),
            kind: Some("function".to_owned()),
            function: Some(FunctionCallDelta {
                name: Some(name.into()),
                arguments: Some(String::new()),
                extra: Default::default(),
            }),
            extra: Default::default(),
        }
    }

    /// A later fragment carrying argument text.
    pub fn arguments(index: u32, fragment: impl Into<String>) -> Self {
        ToolCallDelta {
            index,
            id: None,
            kind: None,
            function: Some(FunctionCallDelta {
                name: None,
                arguments: Some(fragment.into()),
                extra: Default::default(),
            }),
            extra: Default::default(),
        }
    }
}

wire_object! {
    /// Name and argument fragments of a streamed function call.
    #[derive(Clone, Debug, PartialEq, Default)]
    pub struct FunctionCallDelta {
        optional {
            /// The function name (first fragment).
            pub name: String = "name",
            /// Argument text.
            pub arguments: String = "arguments",
        }
    }
}

wire_object! {
    /// Token usage of one request.
    ///
    /// OpenAI semantics: `prompt_tokens` includes cached tokens
    /// (`prompt_tokens_details.cached_tokens` is that subset) and
    /// `completion_tokens` includes reasoning tokens. Tokens written to a
    /// provider's prompt cache are `cache_creation_input_tokens` (also part of
    /// `prompt_tokens`), LiteLLM's field name.
    ///
    /// ```
    /// use tollgate::Usage;
    ///
    /// let u = Usage::new(100, 20).with_cached(60).with_reasoning(5);
    /// assert_eq!(u.total_tokens, 120);
    /// assert_eq!(u.cached_tokens(), 60);
    /// assert_eq!(u.reasoning_tokens(), 5);
    /// ```
    #[derive(Clone, Debug, PartialEq, Default)]
    pub struct Usage {
        defaulted {
            /// Input tokens, cached ones included.
            pub prompt_tokens: u64 = "prompt_tokens" => 0,
            /// Output tokens, reasoning included.
            pub completion_tokens: u64 = "completion_tokens" => 0,
            /// prompt + completion.
            pub total_tokens: u64 = "total_tokens" => 0,
        }
        optional {
            /// Breakdown of the prompt.
            pub prompt_tokens_details: PromptTokensDetails = "prompt_tokens_details",
            /// Breakdown of the completion.
            pub completion_tokens_details: CompletionTokensDetails = "completion_tokens_details",
            /// Tokens written to the provider's prompt cache (a subset of `prompt_tokens`).
            pub cache_creation_input_tokens: u64 = "cache_creation_input_tokens",
            /// Tokens read from the provider's prompt cache (same as `cached_tokens`; LiteLLM's field).
            pub cache_read_input_tokens: u64 = "cache_read_input_tokens",
        }
    }
}

impl Usage {
    /// Usage with prompt and completion counts; total is their sum.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            ..Default::default()
        }
    }

    /// Sets the cached-read subset of the prompt.
    pub fn with_cached(mut self, cached: u64) -> Self {
        self.prompt_tokens_details
            .get_or_insert_with(Default::default)
            .cached_tokens = Some(cached);
        self
    }

    /// Sets the cache-write subset of the prompt.
    pub fn with_cache_write(mut self, written: u64) -> Self {
        self.cache_creation_input_tokens = Some(written);
        self
    }

    /// Sets the reasoning subset of the completion.
    pub fn with_reasoning(mut self, reasoning: u64) -> Self {
        self.completion_tokens_details
            .get_or_insert_with(Default::default)
            .reasoning_tokens = Some(reasoning);
        self
    }

    /// Prompt tokens read from the provider's cache.
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .or(self.cache_read_input_tokens)
            .unwrap_or(0)
    }

    /// Prompt tokens written to the provider's cache.
    pub fn cache_write_tokens(&self) -> u64 {
        self.cache_creation_input_tokens.unwrap_or(0)
    }

    /// Completion tokens spent on reasoning.
    pub fn reasoning_tokens(&self) -> u64 {
        self.completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0)
    }
}

wire_object! {
    /// Breakdown of prompt tokens.
    #[derive(Clone, Debug, PartialEq, Default)]
    pub struct PromptTokensDetails {
        optional {
            /// Read from the prompt cache.
            pub cached_tokens: u64 = "cached_tokens",
            /// Audio input.
            pub audio_tokens: u64 = "audio_tokens",
        }
    }
}

wire_object! {
    /// Breakdown of completion tokens.
    #[derive(Clone, Debug, PartialEq, Default)]
    pub struct CompletionTokensDetails {
        optional {
            /// Spent on reasoning.
            pub reasoning_tokens: u64 = "reasoning_tokens",
            /// Audio output.
            pub audio_tokens: u64 = "audio_tokens",
            /// Predicted tokens that appeared in the output.
            pub accepted_prediction_tokens: u64 = "accepted_prediction_tokens",
            /// Predicted tokens that did not.
            pub rejected_prediction_tokens: u64 = "rejected_prediction_tokens",
        }
    }
}
