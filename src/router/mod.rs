//! [`Router`]: model name → model group → one deployment.
//!
//! A model group is every deployment configured under one `model_name`
//! (LiteLLM's term). The router resolves the name the client sent (through
//! `model_group_alias`), picks a deployment of that group, and calls it. The
//! answer's `model` is the name the client asked for; which deployment served
//! is in [`crate::types::ResponseMeta::deployment`].
//!
//! Picking is `simple-shuffle`: weighted random by `weight`, else by `rpm`,
//! else by `tpm`, else uniform — LiteLLM's default strategy.
//!
//! ```
//! use tollgate::router::{Deployment, Router};
//! use tollgate::provider::{Mock, MockConfig};
//! use tollgate::ChatRequest;
//! use tower::ServiceExt;
//!
//! # tokio_test::block_on(async {
//! let router = Router::builder()
//!     .deployment(Deployment::chat("fast", Mock::new(MockConfig::new("mock/a"))))
//!     .deployment(Deployment::chat("fast", Mock::new(MockConfig::new("mock/b"))))
//!     .alias("quick", "fast")
//!     .build();
//! let req = ChatRequest::from_json(br#"{"model":"quick","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
//! let resp = router.oneshot(req).await.unwrap();
//! assert_eq!(resp.completion().unwrap().model, "quick");
//! # });
//! ```

use crate::error::Error;
use crate::provider::BoxFuture;
use crate::stream::ChatStream;
use crate::types::{
    ChatBody, ChatRequest, ChatResponse, DeploymentInfo, EmbeddingOutput, EmbeddingRequest,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

/// A boxed chat service (a deployment's stack).
pub type ChatService = BoxCloneSyncService<ChatRequest, ChatResponse, Error>;
/// A boxed embeddings service.
pub type EmbeddingService = BoxCloneSyncService<EmbeddingRequest, EmbeddingOutput, Error>;

/// One deployment: a model behind a provider, with its routing attributes.
#[derive(Clone)]
pub struct Deployment {
    /// What it is (shown in headers and records).
    pub info: Arc<DeploymentInfo>,
    /// Its chat stack.
    pub chat: Option<ChatService>,
    /// Its embeddings stack.
    pub embeddings: Option<EmbeddingService>,
    /// `weight` for simple-shuffle.
    pub weight: Option<f64>,
    /// Requests per minute it may take (also a shuffle weight).
    pub rpm: Option<u64>,
    /// Tokens per minute it may take (also a shuffle weight).
    pub tpm: Option<u64>,
    /// Priority: only the lowest `order` present is used.
    pub order: Option<u32>,
    /// Prices, limits and capabilities of the deployment's model, when known.
    pub price: Option<Arc<crate::pricing::ModelPrice>>,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("info", &self.info)
            .field("weight", &self.weight)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

impl Deployment {
    /// A chat deployment of `group` served by `service`, described by `info`.
    pub fn new<S>(info: Arc<DeploymentInfo>, service: S) -> Self
    where
        S: Service<ChatRequest, Response = ChatResponse, Error = Error>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Deployment {
            info,
            chat: Some(BoxCloneSyncService::new(service)),
            embeddings: None,
            weight: None,
            rpm: None,
            tpm: None,
            order: None,
            price: None,
        }
    }

    /// A chat deployment of `group` from a leaf that knows its own model
    /// (the deployment id and model string are taken from the leaf).
    pub fn chat<S>(group: &str, leaf: S) -> Self
    where
        S: Service<ChatRequest, Response = ChatResponse, Error = Error>
            + DescribeDeployment
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let mut info = (*leaf.describe()).clone();
        info.model_group = Arc::from(group);
        Deployment::new(Arc::new(info), leaf)
    }

    /// Adds an embeddings service.
    pub fn with_embeddings<S>(mut self, service: S) -> Self
    where
        S: Service<EmbeddingRequest, Response = EmbeddingOutput, Error = Error>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.embeddings = Some(BoxCloneSyncService::new(service));
        self
    }

    /// Sets the shuffle weight.
    pub fn weight(mut self, weight: f64) -> Self {
        self.weight = Some(weight);
        self
    }

    fn shuffle_weight(&self, by: WeightBy) -> f64 {
        let w = match by {
            WeightBy::Weight => self.weight.unwrap_or(0.0),
            WeightBy::Rpm => self.rpm.unwrap_or(0) as f64,
            WeightBy::Tpm => self.tpm.unwrap_or(0) as f64,
            WeightBy::Uniform => 1.0,
        };
        if w.is_finite() && w > 0.0 { w } else { 0.0 }
    }
}

/// Leaves that can describe the deployment they serve.
pub trait DescribeDeployment {
    /// The deployment.
    fn describe(&self) -> Arc<DeploymentInfo>;
}

impl<P> DescribeDeployment for crate::provider::HttpProvider<P>
where
    P: crate::provider::Protocol,
{
    fn describe(&self) -> Arc<DeploymentInfo> {
        self.info().clone()
    }
}

impl DescribeDeployment for crate::provider::Mock {
    fn describe(&self) -> Arc<DeploymentInfo> {
        self.info().clone()
    }
}

#[derive(Clone, Copy)]
enum WeightBy {
    Weight,
    Rpm,
    Tpm,
    Uniform,
}

/// The deployments of one model group.
#[derive(Clone, Debug)]
pub struct ModelGroup {
    /// The group's name (`model_name`).
    pub name: Arc<str>,
    /// Its deployments, in configuration order.
    pub deployments: Vec<Deployment>,
}

impl ModelGroup {
    /// Picks a deployment for a call: among the lowest `order` present,
    /// weighted random by `weight`, else `rpm`, else `tpm`, else uniform.
    fn pick(&self, embeddings: bool) -> Option<&Deployment> {
        let usable = |d: &&Deployment| {
            if embeddings {
                d.embeddings.is_some()
            } else {
                d.chat.is_some()
            }
        };
        let min_order = self
            .deployments
            .iter()
            .filter(usable)
            .map(|d| d.order.unwrap_or(u32::MAX))
            .min()?;
        let candidates: Vec<&Deployment> = self
            .deployments
            .iter()
            .filter(usable)
            .filter(|d| d.order.unwrap_or(u32::MAX) == min_order)
            .collect();
        if candidates.len() == 1 {
            return candidates.first().copied();
        }
        let by = if candidates.iter().any(|d| d.weight.is_some()) {
            WeightBy::Weight
        } else if candidates.iter().any(|d| d.rpm.is_some()) {
            WeightBy::Rpm
        } else if candidates.iter().any(|d| d.tpm.is_some()) {
            WeightBy::Tpm
        } else {
            WeightBy::Uniform
        };
        weighted_pick(&candidates, |d| d.shuffle_weight(by), fastrand::f64())
    }
}

/// Picks an item with probability proportional to its weight, given a uniform
/// sample `u` in [0, 1). Items of zero weight are never picked unless all are
/// zero, in which case the pick is uniform.
fn weighted_pick<'a, T>(items: &[&'a T], weight: impl Fn(&T) -> f64, u: f64) -> Option<&'a T> {
    let total: f64 = items.iter().map(|t| weight(t)).sum();
    if items.is_empty() {
        return None;
    }
    if total <= 0.0 {
        let i = ((u * items.len() as f64) as usize).min(items.len() - 1);
        return Some(items[i]);
    }
    let mut target = u * total;
    for t in items {
        let w = weight(t);
        if target < w {
            return Some(t);
        }
        target -= w;
    }
    items.iter().rev().find(|t| weight(t) > 0.0).copied()
}

/// An entry of the model list (`GET /v1/models`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ModelCard {
    /// The name clients use.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix seconds (the gateway's start).
    pub created: i64,
    /// The provider of the group's first deployment.
    pub owned_by: String,
}

struct State {
    groups: HashMap<Arc<str>, ModelGroup>,
    aliases: HashMap<String, (Arc<str>, bool)>,
    created: i64,
}

/// Routes requests to deployments by model name. See the [module docs](self).
#[derive(Clone)]
pub struct Router {
    state: Arc<State>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("groups", &self.state.groups.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Builds a [`Router`].
#[derive(Default)]
pub struct RouterBuilder {
    deployments: Vec<Deployment>,
    aliases: Vec<(String, String, bool)>,
}

impl RouterBuilder {
    /// Adds a deployment to the group named in its info.
    pub fn deployment(mut self, deployment: Deployment) -> Self {
        self.deployments.push(deployment);
        self
    }

    /// Makes `alias` another name for `group` (`model_group_alias`).
    pub fn alias(mut self, alias: impl Into<String>, group: impl Into<String>) -> Self {
        self.aliases.push((alias.into(), group.into(), false));
        self
    }

    /// Like [`alias`](Self::alias), but not listed in `/v1/models`.
    pub fn hidden_alias(mut self, alias: impl Into<String>, group: impl Into<String>) -> Self {
        self.aliases.push((alias.into(), group.into(), true));
        self
    }

    /// Builds the router.
    pub fn build(self) -> Router {
        let mut groups: HashMap<Arc<str>, ModelGroup> = HashMap::new();
        for d in self.deployments {
            let name = d.info.model_group.clone();
            groups
                .entry(name.clone())
                .or_insert_with(|| ModelGroup {
                    name,
                    deployments: Vec::new(),
                })
                .deployments
                .push(d);
        }
        let aliases = self
            .aliases
            .into_iter()
            .filter_map(|(alias, group, hidden)| {
                let key = groups.get_key_value(group.as_str())?.0.clone();
                Some((alias, (key, hidden)))
            })
            .collect();
        Router {
            state: Arc::new(State {
                groups,
                aliases,
                created: crate::util::unix_now(),
            }),
        }
    }
}

impl Router {
    /// Starts a builder.
    pub fn builder() -> RouterBuilder {
        RouterBuilder::default()
    }

    /// The group a client-facing name resolves to.
    pub fn group(&self, name: &str) -> Option<&ModelGroup> {
        let state = &self.state;
        state.groups.get(name).or_else(|| {
            state
                .aliases
                .get(name)
                .and_then(|(g, _)| state.groups.get(&**g))
        })
    }

    /// The model list: every group and alias, sorted by name.
    pub fn models(&self) -> Vec<ModelCard> {
        let mut out: Vec<ModelCard> = self
            .state
            .groups
            .values()
            .map(|g| self.card(&g.name, g))
            .chain(
                self.state
                    .aliases
                    .iter()
                    .filter(|(_, (_, hidden))| !hidden)
                    .filter_map(|(alias, (group, _))| {
                        self.state.groups.get(&**group).map(|g| self.card(alias, g))
                    }),
            )
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// One entry of the model list.
    pub fn model(&self, name: &str) -> Option<ModelCard> {
        self.group(name).map(|g| self.card(name, g))
    }

    fn card(&self, id: &str, group: &ModelGroup) -> ModelCard {
        ModelCard {
            id: id.to_owned(),
            object: "model",
            created: self.state.created,
            owned_by: group
                .deployments
                .first()
                .map(|d| d.info.provider.to_string())
                .unwrap_or_default(),
        }
    }
}

impl Service<ChatRequest> for Router {
    type Response = ChatResponse;
    type Error = Error;
    type Future = BoxFuture<Result<ChatResponse, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let picked = self
            .group(&req.model)
            .and_then(|g| g.pick(false))
            .and_then(|d| d.chat.clone());
        let Some(service) = picked else {
            let err = Error::model_not_found(&req.model);
            return Box::pin(async move { Err(err) });
        };
        let requested = req.model.clone();
        Box::pin(async move {
            let mut resp = service.oneshot(req).await?;
            rename_model(&mut resp, requested);
            Ok(resp)
        })
    }
}

impl Service<EmbeddingRequest> for Router {
    type Response = EmbeddingOutput;
    type Error = Error;
    type Future = BoxFuture<Result<EmbeddingOutput, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        let group = self.group(&req.model);
        let picked = group
            .and_then(|g| g.pick(true))
            .and_then(|d| d.embeddings.clone());
        let Some(service) = picked else {
            let err = if group.is_some() {
                Error::bad_request(format!(
                    "the model `{}` does not serve embeddings",
                    req.model
                ))
                .with_param("model")
            } else {
                Error::model_not_found(&req.model)
            };
            return Box::pin(async move { Err(err) });
        };
        let requested = req.model.clone();
        Box::pin(async move {
            let mut resp = service.oneshot(req).await?;
            resp.model = requested;
            Ok(resp)
        })
    }
}

/// Sets the answer's `model` to the name the client asked for.
fn rename_model(resp: &mut ChatResponse, requested: String) {
    match &mut resp.body {
        ChatBody::Complete(c) => c.model = requested,
        ChatBody::Stream(s) => {
            let stream = std::mem::replace(s, ChatStream::from_chunks(Vec::new()));
            *s = stream.map_chunks(move |chunk| chunk.model.clone_from(&requested));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{Mock, MockConfig};

    fn mock(model: &str) -> Mock {
        Mock::new(MockConfig::new(model))
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let a = 1.0f64;
        let b = 3.0f64;
        let items = [&a, &b];
        let mut counts = [0u32; 2];
        for i in 0..10_000 {
            let u = (i as f64 + 0.5) / 10_000.0;
            let got = weighted_pick(&items, |x| *x, u).unwrap();
            counts[usize::from(*got == b)] += 1;
        }
        assert_eq!(counts, [2_500, 7_500]);
        let zeros = [&0.0f64, &0.0f64];
        assert!(weighted_pick(&zeros, |x| *x, 0.99).is_some());
    }

    #[test]
    fn lowest_order_wins() {
        let mut primary = Deployment::chat("g", mock("mock/primary"));
        primary.order = Some(1);
        let mut overflow = Deployment::chat("g", mock("mock/overflow"));
        overflow.order = Some(2);
        let r = Router::builder()
            .deployment(overflow)
            .deployment(primary)
            .build();
        for _ in 0..50 {
            assert_eq!(
                &*r.group("g").unwrap().pick(false).unwrap().info.id,
                "mock/primary"
            );
        }
    }

    #[tokio::test]
    async fn unknown_model_is_404_and_stream_model_is_renamed() {
        let r = Router::builder()
            .deployment(Deployment::chat("g", mock("mock/x")))
            .alias("alias", "g")
            .alias("dangling", "nope")
            .hidden_alias("secret-name", "g")
            .build();
        let err = r
            .clone()
            .oneshot(ChatRequest::from_json(br#"{"model":"nope","messages":[]}"#).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.status().as_u16(), 404);
        assert_eq!(err.code(), Some("model_not_found"));
        let resp = r
            .clone()
            .oneshot(
                ChatRequest::from_json(br#"{"model":"alias","messages":[],"stream":true}"#)
                    .unwrap(),
            )
            .await
            .unwrap();
        let c = resp
            .into_stream()
            .unwrap()
            .collect_completion()
            .await
            .unwrap();
        assert_eq!(c.model, "alias");
        let ids: Vec<_> = r.models().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, vec!["alias", "g"]);
        assert!(r.group("secret-name").is_some());
    }
}
