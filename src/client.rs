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

use crate::error::Error;
use crate::router::{Deployment, DescribeDeployment, Router, RouterBuilder};
use crate::stream::ChatStream;
use crate::types::{
    ChatCompletion, ChatRequest, ChatRequestBody, ChatResponse, EmbeddingInput, EmbeddingOutput,
    EmbeddingRequest, EmbeddingRequestBody, Message, ResponseFormat, StreamOptions, Tool,
    ToolChoice,
};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use tower::{Service, ServiceExt};

/// An in-process gateway. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    router: Router,
}

/// Builds a [`Client`].
#[derive(Default)]
pub struct ClientBuilder {
    router: RouterBuilder,
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

    /// Builds the client.
    pub fn build(self) -> Client {
        Client {
            router: self.router.build(),
        }
    }
}

impl Client {
    /// Starts a builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client over an existing router.
    pub fn from_router(router: Router) -> Self {
        Client { router }
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

    /// Sends a prepared request as is.
    pub async fn send(&self, req: ChatRequest) -> Result<ChatResponse, Error> {
        self.router.clone().oneshot(req).await
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

    /// Edits the request body directly.
    pub fn with_body(mut self, edit: impl FnOnce(&mut ChatRequestBody)) -> Self {
        edit(&mut self.body);
        self
    }

    /// Sends the request as a stream and returns the chunks (usage arrives on the last one).
    pub async fn stream(mut self) -> Result<ChatStream, Error> {
        self.body.stream = Some(true);
        self.body.stream_options = Some(StreamOptions {
            include_usage: Some(true),
            ..Default::default()
        });
        let resp = self.client.send(ChatRequest::new(self.body)).await?;
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
