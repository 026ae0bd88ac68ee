//! [`CostLayer`]: usage and cost in USD for every call a deployment serves.
//!
//! A per-deployment layer: it knows the deployment's prices (bundled table,
//! config overrides) and prices every answer — complete or streamed, finished,
//! failed or cut off by a disconnecting client.
//!
//! # Semantics
//!
//! - Complete answers: the provider's usage is priced; a missing usage is
//!   counted (see [`crate::tokens`]) and written into the answer, marked
//!   estimated. The [`CallCost`] lands in `response.meta.extensions`.
//! - Streams: the layer puts a [`StreamCost`] slot in the response metadata
//!   before the first chunk and fills it when the stream ends — at its end,
//!   on an error, or when it is dropped. A stream cut before the provider's
//!   usage arrived is billed from the prompt and the text that did arrive:
//!   never $0. Outer layers read the slot in their own end-of-stream hook
//!   (inner observers always finish first).
//! - The usage chunk of a stream gets the cost as `usage.cost` (dollars).
//! - A model without a known price: `cost` is `None` ("unknown"), a warning is
//!   logged once per model, and nothing pretends it was free.
//!
//! ```
//! use tollgate::cost::{CallCost, CostLayer};
//! use tollgate::provider::{Mock, MockConfig};
//! use tollgate::ChatRequest;
//! use tower::{Layer, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let svc = CostLayer::for_model("openai/gpt-4o-mini").layer(Mock::new(MockConfig::new("mock/m")));
//! let req = ChatRequest::from_json(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
//! let resp = svc.oneshot(req).await.unwrap();
//! let cost = resp.meta.extensions.get::<CallCost>().unwrap();
//! assert!(cost.total().unwrap().pico() > 0);
//! # });
//! ```

use crate::error::Error;
use crate::pricing::{ModelPrice, PriceTable, Usd};
use crate::stream::{ChatStream, ChunkAggregator, StreamEnd, StreamObserver};
use crate::tokens;
use crate::types::{
    ChatBody, ChatChunk, ChatRequest, ChatRequestBody, ChatResponse, EmbeddingOutput,
    EmbeddingRequest, Usage,
};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tokio::time::Instant;
use tower::{Layer, Service};

/// Usage and cost of one call.
#[derive(Clone, Debug, PartialEq)]
pub struct CallCost {
    /// The usage that was priced.
    pub usage: Usage,
    /// Whether the usage was counted by tollgate (the provider reported none).
    pub estimated: bool,
    /// (prompt, completion) cost; `None` when the model has no known price.
    pub split: Option<(Usd, Usd)>,
    /// The price-table entry used (empty when unknown).
    pub priced_as: Arc<str>,
}

impl CallCost {
    /// Total cost, or `None` when unknown.
    pub fn total(&self) -> Option<Usd> {
        self.split.map(|(p, c)| p + c)
    }
}

/// The cost of a stream, filled in when the stream ends. Cloning shares the slot.
#[derive(Clone, Debug, Default)]
pub struct StreamCost(Arc<OnceLock<CallCost>>);

impl StreamCost {
    /// The cost, once the stream has ended.
    pub fn get(&self) -> Option<&CallCost> {
        self.0.get()
    }

    /// A slot that is already filled (a stream whose cost is known up front,
    /// such as one replayed from the response cache).
    pub fn settled(cost: CallCost) -> Self {
        StreamCost(Arc::new(OnceLock::from(cost)))
    }
}

struct Pricing {
    model: Arc<str>,
    price: Option<Arc<ModelPrice>>,
}

impl Pricing {
    fn price(
        &self,
        usage: &Usage,
        started: Instant,
        service_tier: Option<&str>,
    ) -> Option<(Usd, Usd)> {
        match &self.price {
            Some(p) => p.cost(usage, started.elapsed().as_secs_f64(), service_tier),
            None => {
                crate::pricing::warn_unpriced(&self.model);
                None
            }
        }
    }

    fn priced_as(&self) -> Arc<str> {
        Arc::from(self.price.as_ref().map_or("", |p| p.key.as_str()))
    }
}

/// Prices every answer of the service it wraps. See the [module docs](self).
#[derive(Clone)]
pub struct CostLayer {
    pricing: Arc<Pricing>,
}

impl CostLayer {
    /// Prices with the bundled table's entry for `model` (a LiteLLM model string).
    pub fn for_model(model: &str) -> Self {
        let price = PriceTable::bundled().lookup(model).cloned();
        CostLayer::new(model, price.map(|p| (*p).clone()))
    }

    /// Prices `model` with `price` (`None`: unknown price).
    pub fn new(model: &str, price: Option<ModelPrice>) -> Self {
        CostLayer {
            pricing: Arc::new(Pricing {
                model: Arc::from(model),
                price: price.filter(ModelPrice::is_priced).map(Arc::new),
            }),
        }
    }

    /// The price used (if known).
    pub fn price(&self) -> Option<&ModelPrice> {
        self.pricing.price.as_deref()
    }
}

impl<S> Layer<S> for CostLayer {
    type Service = Cost<S>;
    fn layer(&self, inner: S) -> Cost<S> {
        Cost {
            inner,
            pricing: self.pricing.clone(),
        }
    }
}

/// The service made by [`CostLayer`].
#[derive(Clone)]
pub struct Cost<S> {
    inner: S,
    pricing: Arc<Pricing>,
}

impl<S> Service<ChatRequest> for Cost<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error>,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let body = req.shared_body().clone();
        ResponseFuture {
            inner: self.inner.call(req),
            pricing: self.pricing.clone(),
            body,
            started: Instant::now(),
        }
    }
}

pin_project! {
    /// Future of [`Cost`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pricing: Arc<Pricing>,
        body: Arc<ChatRequestBody>,
        started: Instant,
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<ChatResponse, Error>>,
{
    type Output = Result<ChatResponse, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = match std::task::ready!(this.inner.poll(cx)) {
            Ok(r) => r,
            Err(e) => return Poll::Ready(Err(e)),
        };
        match &mut resp.body {
            ChatBody::Complete(c) => {
                let (usage, estimated) = match &c.usage {
                    Some(u) => (u.clone(), false),
                    None => {
                        let prompt = tokens::prompt_fallback(&this.pricing.model, this.body);
                        let text: String = c
                            .choices
                            .iter()
                            .filter_map(|ch| ch.message.content.as_deref())
                            .collect();
                        let completion = tokens::completion_fallback(&this.pricing.model, &text);
                        let u = Usage::new(prompt, completion);
                        c.usage = Some(u.clone());
                        (u, true)
                    }
                };
                let split = this
                    .pricing
                    .price(&usage, *this.started, c.service_tier.as_deref());
                resp.meta.extensions.insert(CallCost {
                    usage,
                    estimated,
                    split,
                    priced_as: this.pricing.priced_as(),
                });
            }
            ChatBody::Stream(s) => {
                let slot = StreamCost::default();
                resp.meta.extensions.insert(slot.clone());
                let stream = std::mem::replace(s, ChatStream::from_chunks(Vec::new()));
                *s = stream.observe(StreamPricer {
                    pricing: this.pricing.clone(),
                    body: this.body.clone(),
                    started: *this.started,
                    agg: ChunkAggregator::default(),
                    service_tier: None,
                    slot,
                });
            }
        }
        Poll::Ready(Ok(resp))
    }
}

impl<S> Service<EmbeddingRequest> for Cost<S>
where
    S: Service<EmbeddingRequest, Response = EmbeddingOutput, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = EmbeddingOutput;
    type Error = Error;
    type Future = crate::provider::BoxFuture<Result<EmbeddingOutput, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        let pricing = self.pricing.clone();
        let input = req.input.clone();
        let fut = self.inner.call(req);
        let started = Instant::now();
        Box::pin(async move {
            let mut out = fut.await?;
            let (prompt, estimated) = match &out.usage {
                Some(u) => (u.prompt_tokens, false),
                None => {
                    let n = match &input {
                        crate::types::EmbeddingInput::Tokens(t) => t.len() as u64,
                        crate::types::EmbeddingInput::TokenBatches(b) => {
                            b.iter().map(|t| t.len() as u64).sum()
                        }
                        other => other
                            .texts()
                            .iter()
                            .map(|t| tokens::completion_fallback(&pricing.model, t))
                            .sum(),
                    };
                    (n, true)
                }
            };
            let usage = Usage::new(prompt, 0);
            let split = pricing.price(&usage, started, None);
            out.meta.extensions.insert(CallCost {
                usage,
                estimated,
                split,
                priced_as: pricing.priced_as(),
            });
            Ok(out)
        })
    }
}

struct StreamPricer {
    pricing: Arc<Pricing>,
    body: Arc<ChatRequestBody>,
    started: Instant,
    agg: ChunkAggregator,
    service_tier: Option<String>,
    slot: StreamCost,
}

impl StreamObserver for StreamPricer {
    fn on_chunk(&mut self, chunk: &mut ChatChunk) {
        if self.service_tier.is_none() {
            self.service_tier.clone_from(&chunk.service_tier);
        }
        self.agg.push(chunk);
        if let Some(usage) = chunk.usage.as_mut()
            && let Some((p, c)) =
                self.pricing
                    .price(usage, self.started, self.service_tier.as_deref())
        {
            let _ = usage.extra.insert("cost", &(p + c));
        }
    }

    fn on_end(self, _end: StreamEnd<'_>) {
        let (usage, estimated) = match self.agg.usage() {
            Some(u) => {
                let mut u = u.clone();
                u.extra.remove("cost");
                (u, false)
            }
            None => {
                let prompt = tokens::prompt_fallback(&self.pricing.model, &self.body);
                let completion =
                    tokens::completion_fallback(&self.pricing.model, &self.agg.output_text());
                (Usage::new(prompt, completion), true)
            }
        };
        let split = self
            .pricing
            .price(&usage, self.started, self.service_tier.as_deref());
        let _ = self.slot.0.set(CallCost {
            usage,
            estimated,
            split,
            priced_as: self.pricing.priced_as(),
        });
    }
}

/// The cost the cost layer attached to a response: for a complete answer at
/// once, for a stream once it has ended.
pub fn of(resp: &ChatResponse) -> Option<CallCost> {
    resp.meta.extensions.get::<CallCost>().cloned().or_else(|| {
        resp.meta
            .extensions
            .get::<StreamCost>()
            .and_then(|s| s.get().cloned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{Mock, MockConfig};
    use futures_util::StreamExt;
    use tower::ServiceExt;

    fn req(json: &str) -> ChatRequest {
        ChatRequest::from_json(json.as_bytes()).unwrap()
    }

    fn gpt4o_mini() -> CostLayer {
        CostLayer::for_model("openai/gpt-4o-mini")
    }

    #[tokio::test]
    async fn complete_answer_is_priced_from_reported_usage() {
        let svc = gpt4o_mini().layer(Mock::new(MockConfig::new("mock/m")));
        let resp = svc
            .oneshot(req(
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            ))
            .await
            .unwrap();
        let c = resp.meta.extensions.get::<CallCost>().unwrap();
        let u = resp.completion().unwrap().usage.clone().unwrap();
        assert_eq!(c.usage, u);
        assert!(!c.estimated);
        // gpt-4o-mini: $0.15/M in, $0.60/M out.
        let (p, comp) = c.split.unwrap();
        assert_eq!(p.pico(), 150_000 * i128::from(u.prompt_tokens));
        assert_eq!(comp.pico(), 600_000 * i128::from(u.completion_tokens));
        assert_eq!(&*c.priced_as, "gpt-4o-mini");
    }

    #[tokio::test]
    async fn stream_cost_lands_in_the_usage_chunk_and_the_slot() {
        let svc = gpt4o_mini().layer(Mock::new(MockConfig::new("mock/m")));
        let resp = svc
            .oneshot(req(
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
            ))
            .await
            .unwrap();
        let slot = resp.meta.extensions.get::<StreamCost>().unwrap().clone();
        assert!(slot.get().is_none(), "not before the end");
        let mut s = resp.into_stream().unwrap();
        let mut chunk_cost = None;
        while let Some(c) = s.next().await {
            let c = c.unwrap();
            if let Some(u) = &c.usage {
                chunk_cost = u.extra.parse::<f64>("cost").map(|r| r.unwrap());
            }
        }
        drop(s);
        let cost = slot.get().unwrap();
        assert!(!cost.estimated);
        assert_eq!(chunk_cost, Some(cost.total().unwrap().as_f64()));
        assert!(!cost.usage.extra.contains("cost"));
    }

    #[tokio::test]
    async fn cut_stream_is_billed_from_what_arrived() {
        let svc = gpt4o_mini().layer(Mock::new(MockConfig::new("mock/m")));
        let resp = svc
            .oneshot(req(r#"{"model":"m","messages":[{"role":"user","content":"Tell me a story"}],"stream":true,"mock_response":"Once upon a time there was a gateway"}"#))
            .await
            .unwrap();
        let slot = resp.meta.extensions.get::<StreamCost>().unwrap().clone();
        let mut s = resp.into_stream().unwrap();
        for _ in 0..4 {
            s.next().await.unwrap().unwrap();
        }
        drop(s); // the client went away
        let cost = slot.get().unwrap();
        assert!(cost.estimated);
        // "Once upon a time " — 4 tokens of output arrived (role chunk + 3 words).
        assert_eq!(
            cost.usage.completion_tokens,
            tokens::count_text("gpt-4o-mini", "Once upon a ")
        );
        assert!(cost.usage.prompt_tokens > 0);
        assert!(cost.total().unwrap() > Usd::ZERO, "never $0");
    }

    #[tokio::test]
    async fn missing_usage_is_counted_and_marked() {
        #[derive(Clone)]
        struct NoUsage;
        impl Service<ChatRequest> for NoUsage {
            type Response = ChatResponse;
            type Error = Error;
            type Future = std::future::Ready<Result<ChatResponse, Error>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: ChatRequest) -> Self::Future {
                let mut c = crate::types::ChatCompletion::new("id", "m", 0);
                c.choices.push(crate::types::Choice::new(
                    0,
                    crate::types::ResponseMessage::text("hello world"),
                    crate::types::FinishReason::Stop,
                ));
                std::future::ready(Ok(ChatResponse::complete(c)))
            }
        }
        let resp = gpt4o_mini()
            .layer(NoUsage)
            .oneshot(req(
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            ))
            .await
            .unwrap();
        let c = resp.meta.extensions.get::<CallCost>().unwrap().clone();
        assert!(c.estimated);
        assert_eq!(c.usage.completion_tokens, 2);
        assert_eq!(resp.completion().unwrap().usage.as_ref(), Some(&c.usage));
    }

    #[tokio::test]
    async fn embeddings_are_priced() {
        let svc = CostLayer::for_model("openai/text-embedding-3-small")
            .layer(Mock::new(MockConfig::new("mock/e")));
        let out = svc
            .oneshot(
                EmbeddingRequest::from_json(br#"{"model":"e","input":["hello world","again"]}"#)
                    .unwrap(),
            )
            .await
            .unwrap();
        let c = out.meta.extensions.get::<CallCost>().unwrap();
        let prompt = out.usage.as_ref().unwrap().prompt_tokens;
        // text-embedding-3-small: $0.02/M input tokens.
        assert_eq!(c.total().unwrap().pico(), 20_000 * i128::from(prompt));
        assert_eq!(c.usage.prompt_tokens, prompt);
    }

    #[tokio::test]
    async fn unknown_price_is_unknown_not_zero() {
        let svc = CostLayer::for_model("hosted_vllm/my-model")
            .layer(Mock::new(MockConfig::new("mock/m")));
        let resp = svc
            .oneshot(req(
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            ))
            .await
            .unwrap();
        let c = resp.meta.extensions.get::<CallCost>().unwrap();
        assert_eq!(c.total(), None);
        assert!(c.usage.total_tokens > 0);
    }
}
