//! The built-in mock provider: `model: mock/<anything>`.
//!
//! Answers deterministically without a network, for demos, tests and
//! benchmarks: a fixed sentence (or the deployment's `mock_response`, or the
//! request's), streamed word by word, with usage. `mock_response` follows
//! LiteLLM: a string is the answer; `"litellm.RateLimitError"` (optionally
//! followed by `: message`) fails with that error class; an object
//! `{"content": …, "tool_calls": [...]}` is the assistant message.
//! A request's `mock_response` works on every provider, as in LiteLLM, and
//! never reaches the network.
//!
//! ```
//! use tollgate::provider::{Mock, MockConfig};
//! use tollgate::ChatRequest;
//! use tower::ServiceExt;
//!
//! # tokio_test::block_on(async {
//! let mock = Mock::new(MockConfig::new("mock/demo"));
//! let req = ChatRequest::from_json(br#"{"model":"demo","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
//! let resp = mock.oneshot(req).await.unwrap();
//! assert_eq!(resp.completion().unwrap().text(), Some(tollgate::provider::mock::DEFAULT_REPLY));
//! # });
//! ```

use super::BoxFuture;
use crate::error::{Error, ErrorKind};
use crate::stream::ChatStream;
use crate::tokens;
use crate::types::{
    ChatChunk, ChatCompletion, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta,
    DeploymentInfo, Embedding, EmbeddingOutput, EmbeddingRequest, EmbeddingResponse,
    EmbeddingUsage, FinishReason, ResponseMessage, ToolCall, ToolCallDelta, Usage,
};
use serde_json::Value;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// What the mock says when nobody told it otherwise.
pub const DEFAULT_REPLY: &str = "This is a mock response from tollgate.";

/// Settings of a mock deployment.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Deployment description (`mock/<name>`).
    pub info: Arc<DeploymentInfo>,
    /// The answer (default [`DEFAULT_REPLY`]); may also be an error name.
    pub response: Option<Value>,
    /// Wait before answering (time to first token).
    pub delay: Duration,
    /// Wait between stream chunks.
    pub chunk_delay: Duration,
    /// Embedding dimensions.
    pub embedding_dims: usize,
}

impl MockConfig {
    /// A mock for the LiteLLM model string `model` (`mock/anything`).
    pub fn new(model: &str) -> Self {
        let name = model.strip_prefix("mock/").unwrap_or(model);
        MockConfig {
            info: Arc::new(DeploymentInfo {
                id: Arc::from(model),
                model_group: Arc::from(name),
                model: Arc::from(model),
                provider: Arc::from("mock"),
                api_base: None,
            }),
            response: None,
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            embedding_dims: 8,
        }
    }
}

/// The mock leaf. `Service<ChatRequest>` and `Service<EmbeddingRequest>`.
#[derive(Clone, Debug)]
pub struct Mock {
    config: Arc<MockConfig>,
}

impl Mock {
    /// A mock leaf.
    pub fn new(config: MockConfig) -> Self {
        Mock {
            config: Arc::new(config),
        }
    }

    /// The deployment it serves.
    pub fn info(&self) -> &Arc<DeploymentInfo> {
        &self.config.info
    }
}

impl tower::Service<ChatRequest> for Mock {
    type Response = ChatResponse;
    type Error = Error;
    type Future = BoxFuture<Result<ChatResponse, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move {
            let info = config.info.clone();
            respond(&req, &info, Some(&config))
                .await
                .map_err(|e| e.with_provider("mock").with_deployment(info.id.clone()))
        })
    }
}

impl tower::Service<EmbeddingRequest> for Mock {
    type Response = EmbeddingOutput;
    type Error = Error;
    type Future = BoxFuture<Result<EmbeddingOutput, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move {
            if !config.delay.is_zero() {
                tokio::time::sleep(config.delay).await;
            }
            let mut out =
                EmbeddingOutput::new(embeddings(&req, &config.info, config.embedding_dims));
            out.meta.deployment = Some(config.info.clone());
            out.meta.attempts = 1;
            Ok(out)
        })
    }
}

enum Answer {
    Message {
        content: Option<String>,
        tool_calls: Vec<ToolCall>,
    },
    Fail(Error),
}

fn interpret(value: &Value) -> Answer {
    match value {
        Value::String(s) => {
            let (head, message) = match s.split_once(':') {
                Some((h, m)) => (h.trim(), Some(m.trim())),
                None => (s.trim(), None),
            };
            if head.starts_with("litellm.")
                && let Some(kind) = ErrorKind::from_litellm_class(head)
            {
                let text = message
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("mock {}", kind.litellm_class()));
                let mut err = Error::new(kind, text);
                if matches!(kind, ErrorKind::RateLimited(_)) {
                    err = err.with_retry_after(Duration::from_secs(1));
                }
                return Answer::Fail(err);
            }
            Answer::Message {
                content: Some(s.clone()),
                tool_calls: Vec::new(),
            }
        }
        Value::Object(o) => {
            let content = o.get("content").and_then(Value::as_str).map(str::to_owned);
            let tool_calls: Vec<ToolCall> = o
                .get("tool_calls")
                .cloned()
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default();
            Answer::Message {
                content,
                tool_calls,
            }
        }
        _ => Answer::Fail(
            Error::bad_request("mock_response must be a string or a message object")
                .with_param("mock_response"),
        ),
    }
}

/// Answers `req` as the mock would (used by [`Mock`] and by every leaf when the
/// request carries `mock_response`).
pub(crate) async fn respond(
    req: &ChatRequest,
    info: &Arc<DeploymentInfo>,
    config: Option<&MockConfig>,
) -> Result<ChatResponse, Error> {
    let chosen = req
        .mock_response
        .as_ref()
        .or_else(|| config.and_then(|c| c.response.as_ref()));
    let answer = match chosen {
        Some(v) => interpret(v),
        None => Answer::Message {
            content: Some(DEFAULT_REPLY.to_owned()),
            tool_calls: Vec::new(),
        },
    };
    if let Some(c) = config
        && !c.delay.is_zero()
    {
        tokio::time::sleep(c.delay).await;
    }
    let (mut content, tool_calls) = match answer {
        Answer::Fail(e) => return Err(e),
        Answer::Message {
            content,
            tool_calls,
        } => (content, tool_calls),
    };
    let mut finish = if tool_calls.is_empty() {
        FinishReason::Stop
    } else {
        FinishReason::ToolCalls
    };
    if let (Some(limit), Some(text)) = (req.output_limit(), content.as_mut())
        && tokens::estimate_text(text) > u64::from(limit)
    {
        let cut: String = text.chars().take(limit as usize * 4).collect();
        *text = cut;
        finish = FinishReason::Length;
    }
    let prompt = tokens::prompt_fallback(&info.model, req.body());
    let completion_tokens = content
        .as_deref()
        .map_or(0, |t| tokens::completion_fallback(&info.model, t))
        + tool_calls
            .iter()
            .map(|t| tokens::completion_fallback(&info.model, &t.function.arguments) + 1)
            .sum::<u64>();
    let usage = Usage::new(prompt, completion_tokens);
    let id = format!("chatcmpl-mock-{}", uuid::Uuid::now_v7().simple());
    let created = crate::util::unix_now();
    let model = info
        .model
        .strip_prefix("mock/")
        .unwrap_or(&info.model)
        .to_owned();
    let n = req.n.unwrap_or(1).clamp(1, 16);

    let mut response = if req.is_stream() {
        let chunk_delay = config.map_or(Duration::ZERO, |c| c.chunk_delay);
        ChatResponse::stream(stream(
            id,
            model,
            created,
            n,
            content,
            tool_calls,
            finish,
            usage,
            chunk_delay,
        ))
    } else {
        let mut completion = ChatCompletion::new(id, model, created);
        for index in 0..n {
            let message = ResponseMessage {
                content: content.clone(),
                tool_calls: (!tool_calls.is_empty()).then(|| tool_calls.clone()),
                ..Default::default()
            };
            completion
                .choices
                .push(Choice::new(index, message, finish.clone()));
        }
        let mut usage = usage;
        usage.completion_tokens *= u64::from(n);
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
        completion.usage = Some(usage);
        ChatResponse::complete(completion)
    };
    response.meta.deployment = Some(info.clone());
    response.meta.attempts = 1;
    Ok(response)
}

#[allow(clippy::too_many_arguments)]
fn stream(
    id: String,
    model: String,
    created: i64,
    n: u32,
    content: Option<String>,
    tool_calls: Vec<ToolCall>,
    finish: FinishReason,
    usage: Usage,
    chunk_delay: Duration,
) -> ChatStream {
    let base = ChatChunk::new(id, model, created);
    let mut chunks = Vec::new();
    for index in 0..n {
        let mut first = base.clone();
        let mut role = Delta::role();
        if content.is_none() {
            role.content = None;
        }
        first.choices.push(ChunkChoice::new(index, role));
        chunks.push(first);
        if let Some(text) = &content {
            for word in text.split_inclusive(' ') {
                let mut c = base.clone();
                c.choices.push(ChunkChoice::new(index, Delta::text(word)));
                chunks.push(c);
            }
        }
        for (i, call) in tool_calls.iter().enumerate() {
            let i = i as u32;
            let mut c = base.clone();
            c.choices.push(ChunkChoice::new(
                index,
                Delta {
                    tool_calls: Some(vec![ToolCallDelta::start(i, &call.id, &call.function.name)]),
                    ..Default::default()
                },
            ));
            chunks.push(c);
            let mut c = base.clone();
            c.choices.push(ChunkChoice::new(
                index,
                Delta {
                    tool_calls: Some(vec![ToolCallDelta::arguments(i, &call.function.arguments)]),
                    ..Default::default()
                },
            ));
            chunks.push(c);
        }
        let mut last = base.clone();
        last.choices
            .push(ChunkChoice::finish(index, finish.clone()));
        chunks.push(last);
    }
    let mut usage = usage;
    usage.completion_tokens *= u64::from(n);
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    let mut tail = base;
    tail.usage = Some(usage);
    chunks.push(tail);
    if chunk_delay.is_zero() {
        return ChatStream::from_chunks(chunks);
    }
    let items = chunks.into_iter();
    ChatStream::new(futures_util::stream::unfold(
        (items, true),
        move |(mut items, first)| async move {
            let next = items.next()?;
            if !first {
                tokio::time::sleep(chunk_delay).await;
            }
            Some((Ok(next), (items, false)))
        },
    ))
}

/// Deterministic embeddings: a vector derived from a hash of each input.
pub(crate) fn embeddings(
    req: &EmbeddingRequest,
    info: &DeploymentInfo,
    default_dims: usize,
) -> EmbeddingResponse {
    let dims = req
        .dimensions
        .map_or(default_dims, |d| d as usize)
        .clamp(1, 4096);
    let inputs: Vec<String> = match &req.input {
        crate::types::EmbeddingInput::Text(t) => vec![t.clone()],
        crate::types::EmbeddingInput::Texts(v) => v.clone(),
        crate::types::EmbeddingInput::Tokens(t) => vec![format!("{t:?}")],
        crate::types::EmbeddingInput::TokenBatches(b) => {
            b.iter().map(|t| format!("{t:?}")).collect()
        }
    };
    let mut prompt_tokens = 0;
    let data = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            prompt_tokens += tokens::estimate_text(text).max(1);
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            let values = (0..dims)
                .map(|d| {
                    for b in text.bytes().chain((d as u32).to_le_bytes()) {
                        h ^= u64::from(b);
                        h = h.wrapping_mul(0x0000_0100_0000_01b3);
                    }
                    // Map to [-1, 1] with a step that is exact in f32.
                    ((h >> 40) as f64 / f64::from(1u32 << 23)) - 1.0
                })
                .collect();
            let mut e = Embedding::floats(i as u32, values);
            if req.wants_base64() {
                e.embedding = e.embedding.to_base64();
            }
            e
        })
        .collect();
    EmbeddingResponse {
        object: "list".to_owned(),
        data,
        model: info
            .model
            .strip_prefix("mock/")
            .unwrap_or(&info.model)
            .to_owned(),
        usage: Some(EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
            extra: Default::default(),
        }),
        extra: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn req(json: &str) -> ChatRequest {
        ChatRequest::from_json(json.as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn default_answer_and_usage() {
        let m = Mock::new(MockConfig::new("mock/x"));
        let r = m
            .oneshot(req(
                r#"{"model":"x","messages":[{"role":"user","content":"hello"}]}"#,
            ))
            .await
            .unwrap();
        let c = r.completion().unwrap();
        assert_eq!(c.text(), Some(DEFAULT_REPLY));
        let u = c.usage.as_ref().unwrap();
        assert_eq!(
            u.completion_tokens,
            tokens::count_text("mock/x", DEFAULT_REPLY)
        );
        assert!(u.prompt_tokens > 0);
        assert_eq!(c.model, "x");
    }

    #[tokio::test]
    async fn streams_word_by_word_and_reassembles() {
        let m = Mock::new(MockConfig::new("mock/x"));
        let r = m
            .oneshot(req(r#"{"model":"x","messages":[{"role":"user","content":"hi"}],"stream":true,"mock_response":"one two three"}"#))
            .await
            .unwrap();
        let s = r.into_stream().unwrap();
        let c = s.collect_completion().await.unwrap();
        assert_eq!(c.text(), Some("one two three"));
        assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
        assert!(c.usage.is_some());
    }

    #[tokio::test]
    async fn error_classes() {
        let m = Mock::new(MockConfig::new("mock/x"));
        let e = m
            .oneshot(req(r#"{"model":"x","messages":[],"mock_response":"litellm.RateLimitError: slow down"}"#))
            .await
            .unwrap_err();
        assert_eq!(e.status().as_u16(), 429);
        assert_eq!(e.message(), "slow down");
        assert_eq!(e.provider(), Some("mock"));
    }

    #[tokio::test]
    async fn tool_calls_and_length() {
        let m = Mock::new(MockConfig::new("mock/x"));
        let r = m
            .clone()
            .oneshot(req(r#"{"model":"x","messages":[],"mock_response":{"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]}}"#))
            .await
            .unwrap();
        let c = r.completion().unwrap();
        assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(
            c.choices[0].message.tool_calls.as_ref().unwrap()[0].id,
            "call_1"
        );
        let r = m
            .oneshot(req(r#"{"model":"x","messages":[],"max_tokens":2,"mock_response":"a long answer that will not fit"}"#))
            .await
            .unwrap();
        assert_eq!(
            r.completion().unwrap().choices[0].finish_reason,
            Some(FinishReason::Length)
        );
    }

    #[tokio::test]
    async fn embeddings_are_deterministic() {
        let m = Mock::new(MockConfig::new("mock/e"));
        let r1 = m
            .clone()
            .oneshot(EmbeddingRequest::from_json(br#"{"model":"e","input":["a","b"]}"#).unwrap())
            .await
            .unwrap();
        let r2 = m
            .oneshot(
                EmbeddingRequest::from_json(
                    br#"{"model":"e","input":["a","b"],"encoding_format":"base64"}"#,
                )
                .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r1.data.len(), 2);
        assert_ne!(r1.data[0], r1.data[1]);
        assert_eq!(
            r2.data[0].embedding.to_floats(),
            r1.data[0].embedding.to_floats()
        );
    }
}
