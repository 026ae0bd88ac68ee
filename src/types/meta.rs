//! [`ChatResponse`]: a completion or a stream, plus what the layers learned.

use super::embedding::EmbeddingResponse;
use super::response::ChatCompletion;
use crate::stream::ChatStream;
use http::{Extensions, HeaderMap};
use std::fmt;
use std::sync::Arc;

/// The answer to a [`crate::ChatRequest`]: a complete completion or a stream,
/// with metadata the layers filled in on the way out.
pub struct ChatResponse {
    /// The completion or the stream.
    pub body: ChatBody,
    /// What the layers learned.
    pub meta: ResponseMeta,
}

impl ChatResponse {
    /// A complete response.
    pub fn complete(completion: ChatCompletion) -> Self {
        ChatResponse {
            body: ChatBody::Complete(Box::new(completion)),
            meta: ResponseMeta::default(),
        }
    }

    /// A streamed response.
    pub fn stream(stream: ChatStream) -> Self {
        ChatResponse {
            body: ChatBody::Stream(stream),
            meta: ResponseMeta::default(),
        }
    }

    /// Whether this is a stream.
    pub fn is_stream(&self) -> bool {
        matches!(self.body, ChatBody::Stream(_))
    }

    /// The completion, if this is not a stream.
    pub fn completion(&self) -> Option<&ChatCompletion> {
        match &self.body {
            ChatBody::Complete(c) => Some(c),
            ChatBody::Stream(_) => None,
        }
    }

    /// Takes the completion, or gives the response back if it is a stream.
    #[allow(clippy::result_large_err)] // the response is moved back, not copied
    pub fn into_completion(self) -> Result<ChatCompletion, ChatResponse> {
        match self.body {
            ChatBody::Complete(c) => Ok(*c),
            ChatBody::Stream(_) => Err(self),
        }
    }

    /// Takes the stream, or gives the response back if it is complete.
    #[allow(clippy::result_large_err)] // the response is moved back, not copied
    pub fn into_stream(self) -> Result<ChatStream, ChatResponse> {
        match self.body {
            ChatBody::Stream(s) => Ok(s),
            ChatBody::Complete(_) => Err(self),
        }
    }
}

impl fmt::Debug for ChatResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatResponse")
            .field("body", &self.body)
            .field("meta", &self.meta)
            .finish()
    }
}

/// The answer to an [`crate::EmbeddingRequest`]: the vectors and what the
/// layers learned. Dereferences to the wire body, so `output.data` works.
#[derive(Debug)]
pub struct EmbeddingOutput {
    /// The embeddings, in the OpenAI wire shape.
    pub body: EmbeddingResponse,
    /// What the layers learned.
    pub meta: ResponseMeta,
}

impl EmbeddingOutput {
    /// An answer without metadata.
    pub fn new(body: EmbeddingResponse) -> Self {
        EmbeddingOutput {
            body,
            meta: ResponseMeta::default(),
        }
    }
}

impl std::ops::Deref for EmbeddingOutput {
    type Target = EmbeddingResponse;
    fn deref(&self) -> &EmbeddingResponse {
        &self.body
    }
}

impl std::ops::DerefMut for EmbeddingOutput {
    fn deref_mut(&mut self) -> &mut EmbeddingResponse {
        &mut self.body
    }
}

/// A complete completion or a stream of chunks.
pub enum ChatBody {
    /// Non-streamed.
    Complete(Box<ChatCompletion>),
    /// Streamed.
    Stream(ChatStream),
}

impl fmt::Debug for ChatBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatBody::Complete(c) => f.debug_tuple("Complete").field(c).finish(),
            ChatBody::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

/// What layers learned while serving a request.
#[derive(Debug, Default)]
pub struct ResponseMeta {
    /// The deployment that answered.
    pub deployment: Option<Arc<DeploymentInfo>>,
    /// Upstream attempts made (1 without retries).
    pub attempts: u32,
    /// Fallback model groups tried after the first.
    pub fallbacks: u32,
    /// Upstream response headers worth forwarding (rate limits, request ids).
    pub upstream_headers: HeaderMap,
    /// Anything else the layers attach (cost, cache status, …).
    pub extensions: Extensions,
}

/// Describes one deployment: a model behind a provider at an address.
///
/// Holds no secret: it is shown in response headers, logs and spend rows.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeploymentInfo {
    /// Stable id (`model_info.id` in config, or derived).
    pub id: Arc<str>,
    /// The model group (`model_name`) it serves.
    pub model_group: Arc<str>,
    /// The LiteLLM model string (`openai/gpt-4o`, `anthropic/claude-…`).
    pub model: Arc<str>,
    /// Provider name (`openai`, `anthropic`, `groq`, …).
    pub provider: Arc<str>,
    /// The upstream base URL, without credentials.
    pub api_base: Option<Arc<str>>,
}
