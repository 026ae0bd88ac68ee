//! Gemini's JSON shapes: the request we write and the answers we read.
//!
//! Requests borrow from the OpenAI request wherever they can (an inline image
//! is megabytes of base64 and is never copied). Answers are read leniently:
//! every field is optional, unknown fields are ignored, and a field of the
//! wrong type fails only that answer, never the process.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// `POST …:generateContent` / `:streamGenerateContent` body.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateContentRequest<'a> {
    pub(crate) contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) system_instruction: Option<Content<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) tools: Vec<ToolOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_config: Option<Value>,
    pub(crate) generation_config: GenerationConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) safety_settings: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cached_content: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) labels: Option<&'a RawValue>,
}

/// A turn (`user` / `model`) or the system instruction.
#[derive(Serialize, Debug)]
pub(crate) struct Content<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<&'static str>,
    pub(crate) parts: Vec<Part<'a>>,
}

/// One part of a turn. Exactly one of the data fields is set.
#[derive(Serialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Part<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) inline_data: Option<Blob<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) file_data: Option<FileData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) function_call: Option<FunctionCallOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) function_response: Option<FunctionResponseOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) thought_signature: Option<&'a str>,
}

impl<'a> Part<'a> {
    pub(crate) fn text(text: impl Into<Cow<'a, str>>) -> Self {
        Part {
            text: Some(text.into()),
            ..Default::default()
        }
    }
}

/// Inline bytes (base64).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Blob<'a> {
    pub(crate) mime_type: Cow<'a, str>,
    pub(crate) data: Cow<'a, str>,
}

/// A reference to a file Google can read (`gs://`, Files API, public URL on Vertex).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FileData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mime_type: Option<Cow<'a, str>>,
    pub(crate) file_uri: &'a str,
}

/// A function call in the model's history.
#[derive(Serialize, Debug)]
pub(crate) struct FunctionCallOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<&'a str>,
    pub(crate) name: &'a str,
    pub(crate) args: &'a RawValue,
}

/// The result of a function call.
#[derive(Serialize, Debug)]
pub(crate) struct FunctionResponseOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<&'a str>,
    pub(crate) name: &'a str,
    pub(crate) response: ResponseValue<'a>,
}

/// A function result: a JSON object as the tool wrote it, or a wrapped value.
#[derive(Serialize, Debug)]
#[serde(untagged)]
pub(crate) enum ResponseValue<'a> {
    /// The tool's output already is a JSON object.
    Object(&'a RawValue),
    /// A JSON object assembled from text parts.
    Owned(Value),
    /// Anything else, as `{"result": …}`.
    Wrapped { result: Value },
}

/// One entry of `tools`: function declarations, or a Gemini tool passed through
/// verbatim (`googleSearch`, `codeExecution`, …).
#[derive(Serialize, Debug)]
#[serde(untagged)]
pub(crate) enum ToolOut<'a> {
    Functions {
        #[serde(rename = "functionDeclarations")]
        function_declarations: Vec<FunctionDeclaration<'a>>,
    },
    Native(Map<String, Value>),
}

/// One function the model may call.
#[derive(Serialize, Debug)]
pub(crate) struct FunctionDeclaration<'a> {
    pub(crate) name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parameters: Option<Value>,
}

/// `generationConfig`. Always sent (possibly empty), as Google's SDKs do.
#[derive(Serialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) top_k: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stop_sequences: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) candidate_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response_logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) logprobs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response_modalities: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) thinking_config: Option<Value>,
    /// Gemini-native fields passed through (`generationConfig` extras).
    #[serde(flatten)]
    pub(crate) extra: Map<String, Value>,
}

// ---------------------------------------------------------------------------
// Answers.

/// `GenerateContentResponse`: a whole answer, or one stream event.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct GenerateContentResponse {
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) prompt_feedback: Option<PromptFeedback>,
    pub(crate) usage_metadata: Option<UsageMetadata>,
    pub(crate) model_version: Option<String>,
    pub(crate) response_id: Option<String>,
    /// An error reported inside a stream.
    pub(crate) error: Option<Box<RawValue>>,
}

/// One alternative answer.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Candidate {
    pub(crate) content: Option<CandidateContent>,
    pub(crate) finish_reason: Option<String>,
    pub(crate) finish_message: Option<String>,
    pub(crate) index: Option<u32>,
    pub(crate) grounding_metadata: Option<Box<RawValue>>,
    pub(crate) citation_metadata: Option<Box<RawValue>>,
    pub(crate) logprobs_result: Option<LogprobsResult>,
}

/// The parts of a candidate (`{}` when a safety stop removed them).
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub(crate) struct CandidateContent {
    pub(crate) parts: Vec<PartIn>,
}

/// One part of an answer.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct PartIn {
    pub(crate) text: Option<String>,
    pub(crate) thought: Option<bool>,
    pub(crate) function_call: Option<FunctionCallIn>,
    pub(crate) thought_signature: Option<String>,
}

impl PartIn {
    pub(crate) fn is_thought(&self) -> bool {
        self.thought == Some(true)
    }
}

/// A function call the model made (arguments arrive whole).
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub(crate) struct FunctionCallIn {
    pub(crate) id: Option<String>,
    pub(crate) name: String,
    pub(crate) args: Option<Box<RawValue>>,
}

/// Why a prompt was refused.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct PromptFeedback {
    pub(crate) block_reason: Option<String>,
    pub(crate) block_reason_message: Option<String>,
}

/// Token counts (repeated, cumulatively, on every stream event).
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct UsageMetadata {
    pub(crate) prompt_token_count: u64,
    pub(crate) candidates_token_count: u64,
    pub(crate) thoughts_token_count: u64,
    pub(crate) cached_content_token_count: u64,
    pub(crate) tool_use_prompt_token_count: u64,
    pub(crate) total_token_count: u64,
    pub(crate) prompt_tokens_details: Vec<ModalityTokens>,
}

/// Tokens of one modality.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ModalityTokens {
    pub(crate) modality: String,
    pub(crate) token_count: u64,
}

/// Log probabilities of the chosen tokens and the top alternatives.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct LogprobsResult {
    pub(crate) chosen_candidates: Vec<LogprobCandidate>,
    pub(crate) top_candidates: Vec<TopCandidates>,
}

/// The alternatives at one position.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub(crate) struct TopCandidates {
    pub(crate) candidates: Vec<LogprobCandidate>,
}

/// One token and its log probability.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct LogprobCandidate {
    pub(crate) token: String,
    pub(crate) log_probability: f64,
}

// ---------------------------------------------------------------------------
// Errors.

/// Google's error envelope (`google.rpc.Status` inside `error`).
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub(crate) struct ErrorEnvelope {
    pub(crate) error: Option<GoogleStatus>,
}

/// `google.rpc.Status`.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub(crate) struct GoogleStatus {
    pub(crate) code: Option<Value>,
    pub(crate) message: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) details: Vec<Value>,
}

// ---------------------------------------------------------------------------
// Embeddings.

/// `POST …:batchEmbedContents` body.
#[derive(Serialize, Debug)]
pub(crate) struct BatchEmbedRequest<'a> {
    pub(crate) requests: Vec<EmbedContentRequest<'a>>,
}

/// One text to embed.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EmbedContentRequest<'a> {
    pub(crate) model: &'a str,
    pub(crate) content: Content<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) task_type: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) title: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output_dimensionality: Option<u32>,
}

/// The `batchEmbedContents` answer.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub(crate) struct BatchEmbedResponse {
    pub(crate) embeddings: Vec<EmbeddingValues>,
}

/// One vector.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub(crate) struct EmbeddingValues {
    pub(crate) values: Vec<f64>,
}
