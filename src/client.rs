//! [`Client`]: tollgate in-process, like LiteLLM's `completion()`.
//!
//! Build a client from deployments (any provider leaves), then call
//! [`Client::completion`] with a model name and messages. The same router and
//! layers as the proxy run underneath.
//!
//! ```
//! use tollgate::client::Client;
//! use tollgate::provider::{Mock, MockConfig};
//! use tollgate::types::Message;
//!
//! # tokio_test::block_on(async {
//! let client = Client::builder()
//!     .model("gpt-4o-mini", Mock::new(MockConfig::new("mock/gpt-4o-mini")))
//!     .build();
//!
//! let answer = client
//!     .completion("gpt-4o-mini", vec![Message::user("Say hi")])
//!     .temperature(0.2)
//!     .await
//!     .unwrap();
//! println!("{}", answer.text().unwrap());
//!
//! // Streaming: the same call, `.stream()` at the end.
//! use futures_util::StreamExt;
//! let mut stream = client
//!     .completion("gpt-4o-mini", vec![Message::user("Say hi")])
//!     .stream()
//!     .await
//!     .unwrap();
//! while let Some(chunk) = stream.next().await {
//!     let chunk = chunk.unwrap();
//!     if let Some(text) = chunk.choices.first().and_then(|c| c.delta.content.as_deref()) {
//!         print!("{text}");
//!     }
//! }
//! # });
//! ```
//!
//! # Reliability per call
//!
//! Every call runs through the same layers as the proxy, outermost first:
//! a [`TimeoutLayer`] (the call's `timeout`), a [`FallbackLayer`] (other
//! model groups), a [`RetryLayer`] (more attempts on the group, each routed
//! again so a retry may land on another deployment), then the [`Router`]
//! (cooldowns, strategies). Set the defaults on the builder
//! ([`ClientBuilder::num_retries`], [`ClientBuilder::fallbacks`],
//! [`ClientBuilder::timeout`]) and override them per call
//! ([`Completion::num_retries`], [`Completion::fallbacks`],
//! [`Completion::timeout`]). [`Completion::send`] and
//! [`Completion::stream_response`] return the answer with its
//! [`ResponseMeta`](crate::types::ResponseMeta): which deployment answered,
//! how many attempts and fallbacks it took. The answer's `model` is always
//! the name the call asked for.

use crate::error::Error;
use crate::fallback::{Fallback, FallbackConfig, FallbackLayer};
use crate::retry::{Retry, RetryLayer, RetryPolicy};
use crate::router::{Deployment, DescribeDeployment, Router, RouterBuilder};
use crate::stream::ChatStream;
use crate::timeout::{Timeout, TimeoutLayer, Timeouts};
use crate::types::{
    ChatCompletion, ChatRequest, ChatRequestBody, ChatResponse, EmbeddingInput, EmbeddingOutput,
    EmbeddingRequest, EmbeddingRequestBody, Message, ResponseFormat, StreamOptions, Tool,
    ToolChoice,
};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;
use tower::Layer;
use tower::{Service, ServiceExt};

/// The chat stack of a [`Client`]: timeout, fallback, retry, router.
type ChatStack = Timeout<Fallback<Retry<Router>>>;

/// An in-process gateway. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    router: Router,
    chat: ChatStack,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Client`].
#[derive(Default)]
pub struct ClientBuilder {
    router: RouterBuilder,
    retry: RetryPolicy,
    fallbacks: FallbackConfig,
    timeout: Option<Duration>,
}

impl ClientBuilder {
    /// Serves `group` with `leaf` (call again with the same group to balance between several).
    pub fn model<S>(mut self, group: &str, leaf: S) -> Self
    where
        S: Service<ChatRequest, Response = ChatResponse, Error = Error>
            + Service<crate::types::EmbeddingRequest, Response = EmbeddingOutput, Error = Error>
            + DescribeDeployment
            + Clone
            + Send
            + Sync
            + 'static,
        <S as Service<ChatRequest>>::Future: Send + 'static,
        <S as Service<EmbeddingRequest>>::Future: Send + 'static,
    {
        let embeddings = leaf.clone();
        self.router = self
            .router
            .deployment(Deployment::chat(group, leaf).with_embeddings(embeddings));
        self
    }

    /// Adds a prepared deployment.
    pub fn deployment(mut self, deployment: Deployment) -> Self {
        self.router = self.router.deployment(deployment);
        self
    }

    /// Another name for a model group.
    pub fn alias(mut self, alias: &str, group: &str) -> Self {
        self.router = self.router.alias(alias, group);
        self
    }

    /// Retries per call after the first attempt (default 2, as LiteLLM's
    /// router); a call's own [`Completion::num_retries`] wins.
    ///
    /// ```
    /// # use tollgate::client::Client;
    /// # use tollgate::provider::{Mock, MockConfig};
    /// let client = Client::builder()
    ///     .model("gpt-4o", Mock::new(MockConfig::new("mock/gpt-4o")))
    ///     .num_retries(4)
    ///     .build();
    /// # drop(client);
    /// ```
    pub fn num_retries(mut self, n: u32) -> Self {
        self.retry.num_retries = n;
        self
    }

    /// The whole retry policy (per error class counts, backoff).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Groups to try, in order, when `group` fails (LiteLLM's `fallbacks`);
    /// a call's own [`Completion::fallbacks`] replaces them.
    ///
    /// ```
    /// # use tollgate::client::Client;
    /// # use tollgate::provider::{Mock, MockConfig};
    /// let client = Client::builder()
    ///     .model("gpt-4o", Mock::new(MockConfig::new("mock/gpt-4o")))
    ///     .model("claude-sonnet", Mock::new(MockConfig::new("mock/claude-sonnet")))
    ///     .fallbacks("gpt-4o", ["claude-sonnet"])
    ///     .build();
    /// # drop(client);
    /// ```
    pub fn fallbacks<I, S>(mut self, group: &str, to: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fallbacks = self.fallbacks.fallback(group, to);
        self
    }

    /// Every fallback list at once (context-window, content-policy, default).
    pub fn fallback_config(mut self, config: FallbackConfig) -> Self {
        self.fallbacks = config;
        self
    }

    /// The longest a call may take, all retries and fallbacks included
    /// (a stream: until its last chunk); a call's own
    /// [`Completion::timeout`] may only shorten it. None by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Client {
        Client::with_layers(
            self.router.build(),
            self.retry,
            self.fallbacks,
            self.timeout,
        )
    }
}

impl Client {
    /// Starts a builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client over an existing router (default retries, no fallbacks).
    pub fn from_router(router: Router) -> Self {
        Client::with_layers(
            router,
            RetryPolicy::default(),
            FallbackConfig::default(),
            None,
        )
    }

    fn with_layers(
        router: Router,
        retry: RetryPolicy,
        fallbacks: FallbackConfig,
        timeout: Option<Duration>,
    ) -> Self {
        let retried = RetryLayer::new(retry).layer(router.clone());
        let fell_back = FallbackLayer::new(fallbacks).layer(retried);
        // Only the total: first-byte and idle deadlines belong to the leaves.
        let chat = TimeoutLayer::new(Timeouts {
            total: timeout,
            ..Timeouts::default()
        })
        .layer(fell_back);
        Client {
            router,
            chat,
            timeout,
        }
    }

    /// The router underneath.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// A chat completion call; set options, then `.await` it (or `.stream().await`).
    pub fn completion(&self, model: &str, messages: Vec<Message>) -> Completion {
        Completion {
            client: self.clone(),
            body: ChatRequestBody::new(model, messages),
        }
    }

    /// Sends a prepared request (through timeout, fallback, retry, router);
    /// the client's timeout, if any, caps the request's own.
    pub async fn send(&self, mut req: ChatRequest) -> Result<ChatResponse, Error> {
        if let Some(t) = self.timeout {
            // As the request's own timeout it also bounds a stream to its last chunk.
            let t = t.as_secs_f64();
            let own = req.timeout.filter(|s| s.is_finite() && *s > 0.0);
            req.body_mut().timeout = Some(own.map_or(t, |o| o.min(t)));
        }
        self.chat.clone().oneshot(req).await
    }

    /// Embeds `input` with `model`.
    pub async fn embedding(
        &self,
        model: &str,
        input: EmbeddingInput,
    ) -> Result<EmbeddingOutput, Error> {
        let req = EmbeddingRequest::new(EmbeddingRequestBody::new(model, input));
        self.router.clone().oneshot(req).await
    }
}

/// A chat completion being prepared. See [`Client::completion`].
#[derive(Debug)]
#[must_use = "a completion does nothing until awaited"]
pub struct Completion {
    client: Client,
    body: ChatRequestBody,
}

impl Completion {
    /// Sampling temperature.
    pub fn temperature(mut self, t: f64) -> Self {
        self.body.temperature = Some(t);
        self
    }

    /// Output token limit.
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.body.max_completion_tokens = Some(n);
        self
    }

    /// Tools the model may call.
    pub fn tools(mut self, tools: Vec<Tool>) -> Self {
        self.body.tools = Some(tools);
        self
    }

    /// Which tool to call.
    pub fn tool_choice(mut self, choice: ToolChoice) -> Self {
        self.body.tool_choice = Some(choice);
        self
    }

    /// Output format.
    pub fn response_format(mut self, format: ResponseFormat) -> Self {
        self.body.response_format = Some(format);
        self
    }

    /// Any other body field, by name (forwarded to the provider).
    pub fn param(mut self, name: &str, value: impl serde::Serialize) -> Self {
        // A value that cannot be serialised is a caller bug; it is dropped.
        let _ = self.body.extra.insert(name, &value);
        self
    }

    /// A canned answer (LiteLLM's `mock_response`): nothing goes upstream.
    pub fn mock_response(mut self, answer: &str) -> Self {
        self.body.mock_response = Some(serde_json::Value::from(answer));
        self
    }

    /// Groups to try, in order, if this call's model fails after its
    /// retries (replaces the client's configured fallbacks for this call).
    /// The answer keeps the name the call asked for; its
    /// [`meta`](ChatResponse::meta) says which deployment answered.
    ///
    /// ```
    /// use tollgate::client::Client;
    /// use tollgate::provider::{Mock, MockConfig};
    /// use tollgate::types::Message;
    ///
    /// # tokio_test::block_on(async {
    /// // A `gpt-4o` deployment that always fails with a 500.
    /// let mut broken = MockConfig::new("mock/gpt-4o");
    /// broken.response = Some(serde_json::json!("litellm.InternalServerError: down"));
    /// let client = Client::builder()
    ///     .model("gpt-4o", Mock::new(broken))
    ///     .model("claude-sonnet", Mock::new(MockConfig::new("mock/claude-sonnet")))
    ///     .build();
    /// let resp = client
    ///     .completion("gpt-4o", vec![Message::user("hi")])
    ///     .fallbacks(["claude-sonnet"])
    ///     .num_retries(0)
    ///     .send()
    ///     .await
    ///     .unwrap();
    /// let served = resp.meta.deployment.as_ref().unwrap();
    /// assert_eq!(&*served.model_group, "claude-sonnet");
    /// assert_eq!(resp.meta.fallbacks, 1);
    /// assert_eq!(resp.into_completion().unwrap().model, "gpt-4o");
    /// # });
    /// ```
    pub fn fallbacks<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let list: Vec<serde_json::Value> = groups
            .into_iter()
            .map(|g| serde_json::Value::String(g.into()))
            .collect();
        self.body.fallbacks = Some(serde_json::Value::Array(list));
        self
    }

    /// Retries after the first attempt for this call (0: one attempt only).
    /// Only retryable failures are retried (429, 5xx, timeouts, broken
    /// connections), never 400/401/403/404; a stream only before its first chunk.
    ///
    /// ```
    /// use tollgate::client::Client;
    /// use tollgate::provider::{Mock, MockConfig};
    /// use tollgate::types::Message;
    ///
    /// # tokio_test::block_on(async {
    /// let client = Client::builder()
    ///     .model("gpt-4o", Mock::new(MockConfig::new("mock/gpt-4o")))
    ///     .build();
    /// let resp = client
    ///     .completion("gpt-4o", vec![Message::user("hi")])
    ///     .num_retries(3)
    ///     .send()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(resp.meta.attempts, 1, "it worked the first time");
    /// # });
    /// ```
    pub fn num_retries(mut self, n: u32) -> Self {
        self.body.num_retries = Some(n);
        self
    }

    /// The longest this call may take, retries and fallbacks included (a
    /// stream: until its last chunk). Past it the call fails with a 408
    /// [`ErrorKind::Timeout`](crate::error::ErrorKind::Timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate::client::Client;
    /// use tollgate::provider::{Mock, MockConfig};
    /// use tollgate::types::Message;
    ///
    /// # tokio_test::block_on(async {
    /// let mut slow = MockConfig::new("mock/gpt-4o");
    /// slow.delay = Duration::from_secs(5);
    /// let client = Client::builder().model("gpt-4o", Mock::new(slow)).build();
    /// let err = client
    ///     .completion("gpt-4o", vec![Message::user("hi")])
    ///     .timeout(Duration::from_millis(20))
    ///     .num_retries(0)
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.status(), 408);
    /// # });
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.body.timeout = Some(timeout.as_secs_f64());
        self
    }

    /// Edits the request body directly.
    pub fn with_body(mut self, edit: impl FnOnce(&mut ChatRequestBody)) -> Self {
        edit(&mut self.body);
        self
    }

    /// Sends the request as a stream and returns the chunks (usage arrives on the last one).
    pub async fn stream(self) -> Result<ChatStream, Error> {
        let resp = self.stream_response().await?;
        match resp.into_stream() {
            Ok(s) => Ok(s),
            Err(resp) => {
                let c = resp
                    .into_completion()
                    .map_err(|_| Error::internal("no body"))?;
                Ok(ChatStream::from_chunks(completion_as_chunks(c)))
            }
        }
    }

    /// Sends the request as a stream and returns the response with its
    /// metadata (which deployment answered, attempts, fallbacks) and the
    /// stream as its body. Retries and fallbacks happen before the first
    /// chunk; a failure after it arrives in the stream.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use tollgate::client::Client;
    /// use tollgate::provider::{Mock, MockConfig};
    /// use tollgate::types::Message;
    ///
    /// # tokio_test::block_on(async {
    /// let client = Client::builder()
    ///     .model("gpt-4o", Mock::new(MockConfig::new("mock/gpt-4o")))
    ///     .build();
    /// let resp = client
    ///     .completion("gpt-4o", vec![Message::user("hi")])
    ///     .stream_response()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(&*resp.meta.deployment.as_ref().unwrap().id, "mock/gpt-4o");
    /// let mut chunks = resp.into_stream().unwrap();
    /// while let Some(chunk) = chunks.next().await {
    ///     assert_eq!(chunk.unwrap().model, "gpt-4o");
    /// }
    /// # });
    /// ```
    pub async fn stream_response(mut self) -> Result<ChatResponse, Error> {
        self.body.stream = Some(true);
        self.body.stream_options = Some(StreamOptions {
            include_usage: Some(true),
            ..Default::default()
        });
        self.client.send(ChatRequest::new(self.body)).await
    }

    /// Sends the request and returns the whole response (with its metadata).
    pub async fn send(self) -> Result<ChatResponse, Error> {
        self.client.send(ChatRequest::new(self.body)).await
    }
}

/// A completion replayed as stream chunks (for leaves that answered a stream request whole).
fn completion_as_chunks(c: ChatCompletion) -> Vec<crate::types::ChatChunk> {
    use crate::types::{ChatChunk, ChunkChoice, Delta, ToolCallDelta};
    let mut out = Vec::new();
    for choice in &c.choices {
        let m = &choice.message;
        let mut chunk = ChatChunk::new(c.id.clone(), c.model.clone(), c.created);
        let tool_calls = m.tool_calls.as_ref().map(|calls| {
            calls
                .iter()
                .enumerate()
                .flat_map(|(i, t)| {
                    [
                        ToolCallDelta::start(i as u32, &t.id, &t.function.name),
                        ToolCallDelta::arguments(i as u32, &t.function.arguments),
                    ]
                })
                .collect()
        });
        chunk.choices.push(ChunkChoice::new(
            choice.index,
            Delta {
                role: Some(m.role.clone()),
                content: m.content.clone(),
                refusal: m.refusal.clone(),
                tool_calls,
                ..Default::default()
            },
        ));
        out.push(chunk);
        let mut fin = ChatChunk::new(c.id.clone(), c.model.clone(), c.created);
        let mut f = ChunkChoice::new(choice.index, Delta::default());
        f.finish_reason.clone_from(&choice.finish_reason);
        fin.choices.push(f);
        out.push(fin);
    }
    if let Some(u) = c.usage {
        let mut tail = ChatChunk::new(c.id, c.model, c.created);
        tail.usage = Some(u);
        out.push(tail);
    }
    out
}

impl IntoFuture for Completion {
    type Output = Result<ChatCompletion, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let resp = self.send().await?;
            match resp.into_completion() {
                Ok(c) => Ok(c),
                Err(resp) => match resp.into_stream() {
                    Ok(s) => s.collect_completion().await,
                    Err(_) => Err(Error::internal("no body")),
                },
            }
        })
    }
}
