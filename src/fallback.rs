//! [`FallbackLayer`]: other model groups to try when one fails.
//!
//! LiteLLM's settings: `fallbacks` (`[{"gpt-4o": ["claude-sonnet",
//! "gemini-flash"]}]`), `context_window_fallbacks`,
//! `content_policy_fallbacks`, `default_fallbacks`, `max_fallbacks`, and a
//! request's own `fallbacks` list.
//!
//! # Semantics
//!
//! - Fallbacks run after the primary group failed — after its retries, when
//!   the layer sits outside [`crate::retry::RetryLayer`] as in the proxy.
//! - Which list: a context-window error uses `context_window_fallbacks`, a
//!   content-policy refusal `content_policy_fallbacks`, when they name the
//!   group; anything else from upstream — and "every deployment is cooling
//!   down / at capacity" — uses `fallbacks`, else `default_fallbacks`. A
//!   request's `fallbacks` replaces the configured list. Refusals by the
//!   gateway itself (auth, budgets, rate limits, unknown model) never fall back.
//! - Groups are tried in order, at most `max_fallbacks` of them, each through
//!   the whole inner stack (routing, retries, cooldowns), with the request's
//!   model set to the fallback group.
//! - Streams fall back only before their first chunk (the layer waits for
//!   it); after that a failure reaches the client in band.
//! - The answer's `model` is the name the client asked for;
//!   `meta.fallbacks` says how many groups were tried after the first, and
//!   `meta.deployment` which deployment answered.
//! - When every group fails, the last error is returned, its message naming
//!   the groups that were tried.
//!
//! ```
//! use tollgate::fallback::{FallbackConfig, FallbackLayer};
//!
//! let config = FallbackConfig::default()
//!     .fallback("gpt-4o", ["claude-sonnet", "gemini-flash"])
//!     .context_window("gpt-4o-mini", ["gpt-4o"]);
//! let layer = FallbackLayer::new(config);
//! # drop(layer);
//! ```

use crate::error::{Error, ErrorKind};
use crate::provider::BoxFuture;
use crate::retry::call_to_first_chunk;
use crate::stream::ChatStream;
use crate::types::{ChatBody, ChatRequest, ChatResponse};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Fallback lists. See the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FallbackConfig {
    /// Group → groups to try on failure.
    pub fallbacks: HashMap<String, Vec<String>>,
    /// Group → groups with a larger context window.
    pub context_window: HashMap<String, Vec<String>>,
    /// Group → groups to try after a content-policy refusal.
    pub content_policy: HashMap<String, Vec<String>>,
    /// Groups to try for any group without its own list.
    pub default: Vec<String>,
    /// Most fallback groups tried per request.
    pub max_fallbacks: usize,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            fallbacks: HashMap::new(),
            context_window: HashMap::new(),
            content_policy: HashMap::new(),
            default: Vec::new(),
            max_fallbacks: 5,
        }
    }
}

fn list<I, S>(groups: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    groups.into_iter().map(Into::into).collect()
}

impl FallbackConfig {
    /// Adds general fallbacks for `group`.
    pub fn fallback<I, S>(mut self, group: &str, to: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fallbacks.insert(group.to_owned(), list(to));
        self
    }

    /// Adds context-window fallbacks for `group`.
    pub fn context_window<I, S>(mut self, group: &str, to: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.context_window.insert(group.to_owned(), list(to));
        self
    }

    /// Adds content-policy fallbacks for `group`.
    pub fn content_policy<I, S>(mut self, group: &str, to: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.content_policy.insert(group.to_owned(), list(to));
        self
    }

    /// Sets the default fallbacks.
    pub fn default_fallbacks<I, S>(mut self, to: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.default = list(to);
        self
    }

    /// Parses LiteLLM's list-of-maps form: `[{"gpt-4o": ["a", "b"]}, …]`.
    pub fn parse_list(value: &Value) -> Result<HashMap<String, Vec<String>>, String> {
        let mut out = HashMap::new();
        let items = value
            .as_array()
            .ok_or("expected a list of {model: [fallbacks]} mappings")?;
        for item in items {
            let obj = item
                .as_object()
                .ok_or("expected a list of {model: [fallbacks]} mappings")?;
            for (group, to) in obj {
                let to = to
                    .as_array()
                    .ok_or_else(|| {
                        format!("the fallbacks of `{group}` must be a list of model names")
                    })?
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_owned).ok_or_else(|| {
                            format!("the fallbacks of `{group}` must be model names")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert(group.clone(), to);
            }
        }
        Ok(out)
    }

    /// Whether `group` is named in the configuration (a bounded metric label).
    fn knows(&self, group: &str) -> bool {
        self.fallbacks.contains_key(group)
            || self.context_window.contains_key(group)
            || self.content_policy.contains_key(group)
            || self.default.iter().any(|g| g == group)
    }

    /// Whether some failure of `req` could fall back at all (if not, the
    /// request is sent without keeping a copy).
    fn could_fall_back(&self, req: &ChatRequest) -> bool {
        if self.max_fallbacks == 0 {
            return false;
        }
        if req.fallbacks.is_some() {
            return true;
        }
        let group = req.model.as_str();
        let elsewhere = |list: &Vec<String>| list.iter().any(|g| g != group);
        [&self.fallbacks, &self.context_window, &self.content_policy]
            .iter()
            .any(|m| m.get(group).is_some_and(elsewhere))
            || elsewhere(&self.default)
    }

    fn chain(&self, group: &str, err: &Error) -> Vec<String> {
        let specific = match err.kind() {
            ErrorKind::ContextWindowExceeded => self.context_window.get(group),
            ErrorKind::ContentPolicy => self.content_policy.get(group),
            _ => None,
        };
        specific
            .or_else(|| self.fallbacks.get(group))
            .cloned()
            .unwrap_or_else(|| self.default.clone())
    }
}

/// Whether a failure may fall back: it came from upstream, or every
/// deployment of the group is unavailable.
fn may_fall_back(err: &Error) -> bool {
    err.provider().is_some()
        || matches!(
            err.code(),
            Some("deployments_cooling_down" | "deployment_capacity")
        )
}

/// The request's own `fallbacks` (model names, or `{"model": …}` objects).
fn request_chain(req: &ChatRequest) -> Option<Vec<String>> {
    let list = req.fallbacks.as_ref()?.as_array()?;
    Some(
        list.iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("model").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            })
            .collect(),
    )
}

/// Tries fallback groups. See the [module docs](self).
#[derive(Clone)]
pub struct FallbackLayer {
    config: Arc<FallbackConfig>,
}

impl FallbackLayer {
    /// A layer with `config`.
    pub fn new(config: FallbackConfig) -> Self {
        FallbackLayer {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for FallbackLayer {
    type Service = Fallback<S>;
    fn layer(&self, inner: S) -> Fallback<S> {
        Fallback {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by [`FallbackLayer`].
#[derive(Clone)]
pub struct Fallback<S> {
    inner: S,
    config: Arc<FallbackConfig>,
}

fn rename(resp: &mut ChatResponse, requested: &str) {
    match &mut resp.body {
        ChatBody::Complete(c) => c.model = requested.to_owned(),
        ChatBody::Stream(s) => {
            let stream = std::mem::replace(s, ChatStream::from_chunks(Vec::new()));
            let name = requested.to_owned();
            *s = stream.map_chunks(move |c| c.model.clone_from(&name));
        }
    }
}

impl<S> Service<ChatRequest> for Fallback<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ChatResponse;
    type Error = Error;
    type Future = BoxFuture<Result<ChatResponse, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let inner = self.inner.clone();
        let config = self.config.clone();
        if !config.could_fall_back(&req) {
            return Box::pin(call_to_first_chunk(inner, req));
        }
        Box::pin(async move {
            let requested = req.model.clone();
            let first = call_to_first_chunk(inner.clone(), req.clone()).await;
            let err = match first {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            if !may_fall_back(&err) {
                return Err(err);
            }
            let from_request = request_chain(&req);
            let configured = from_request.is_none();
            let chain = from_request.unwrap_or_else(|| config.chain(&requested, &err));
            // Metric labels: configured group names only (a request's own list is user input).
            let requested_label = if config.knows(&requested) {
                requested.as_str()
            } else {
                "other"
            };
            let label = |g: &str| {
                if configured {
                    g.to_owned()
                } else {
                    "request_defined".to_owned()
                }
            };
            let mut tried: Vec<String> = Vec::new();
            let mut last = err;
            let mut attempts = last.attempts().max(1);
            for group in chain
                .into_iter()
                .filter(|g| *g != requested)
                .take(config.max_fallbacks)
            {
                tried.push(group.clone());
                let mut r = req.clone();
                {
                    let body = r.body_mut();
                    body.model.clone_from(&group);
                    body.fallbacks = None;
                }
                let result = call_to_first_chunk(inner.clone(), r).await;
                crate::observe::metrics::fallback(requested_label, &label(&group), result.is_ok());
                match result {
                    Ok(mut resp) => {
                        rename(&mut resp, &requested);
                        resp.meta.fallbacks = tried.len() as u32;
                        resp.meta.attempts += attempts;
                        return Ok(resp);
                    }
                    Err(e) => {
                        attempts += e.attempts().max(1);
                        last = e;
                        if !may_fall_back(&last) {
                            break;
                        }
                    }
                }
            }
            if tried.is_empty() {
                return Err(last);
            }
            let message = format!(
                "{} (after falling back from `{requested}` to {})",
                last.message(),
                tried
                    .iter()
                    .map(|g| format!("`{g}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let fallbacks = tried.len() as u32;
            Err(last
                .with_message(message)
                .with_fallbacks(fallbacks)
                .with_attempts(attempts))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::LimitSource;
    use crate::provider::{Mock, MockConfig};
    use crate::router::{Deployment, Router};
    use tower::ServiceExt;

    fn group(name: &str, answer: &str) -> Deployment {
        let mut cfg = MockConfig::new(&format!("mock/{name}"));
        cfg.response = Some(Value::from(answer));
        Deployment::chat(name, Mock::new(cfg))
    }

    fn router() -> Router {
        Router::builder()
            .deployment(group("down", "litellm.ServiceUnavailableError: down"))
            .deployment(group(
                "small",
                "litellm.ContextWindowExceededError: too long",
            ))
            .deployment(group("prude", "litellm.ContentPolicyViolationError: no"))
            .deployment(group("also-down", "litellm.InternalServerError: boom"))
            .deployment(group("up", "hello from up"))
            .deployment(group("big", "hello from big"))
            .deployment(group("lenient", "hello from lenient"))
            .build()
    }

    fn req(model: &str) -> ChatRequest {
        ChatRequest::from_json(
            format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    fn config() -> FallbackConfig {
        FallbackConfig::default()
            .fallback("down", ["also-down", "up"])
            .context_window("small", ["big"])
            .content_policy("prude", ["lenient"])
            .default_fallbacks(["up"])
    }

    #[tokio::test]
    async fn the_request_is_copied_only_when_it_could_fall_back() {
        use crate::util::Copies;
        let copied = |config: FallbackConfig, model: &'static str| async move {
            let copies = Copies::default();
            let mut r = req(model);
            r.extensions.insert(copies.clone());
            let before = copies.count();
            let out = FallbackLayer::new(config).layer(router()).oneshot(r).await;
            (
                copies.count() - before,
                out.map(|r| r.completion().unwrap().text().map(str::to_owned)),
            )
        };
        // Nothing to fall back to: sent as it came, errors unchanged.
        let (n, out) = copied(FallbackConfig::default(), "down").await;
        assert_eq!(n, 0);
        assert_eq!(out.unwrap_err().status().as_u16(), 503);
        let only_itself = FallbackConfig::default().fallback("down", ["down"]);
        assert_eq!(copied(only_itself, "down").await.0, 0);
        // The default chain names only `up` itself.
        let (n, out) = copied(config(), "up").await;
        assert_eq!(n, 0);
        assert_eq!(out.unwrap().as_deref(), Some("hello from up"));
        // A chain: the request is kept for it, and copied for each group tried.
        let (n, out) = copied(config(), "down").await;
        assert_eq!(n, 3);
        assert_eq!(out.unwrap().as_deref(), Some("hello from up"));
        let (n, _) = copied(config(), "big").await;
        assert_eq!(n, 1, "the default chain could serve a failure of `big`");
    }

    #[tokio::test]
    async fn general_fallbacks_in_order_and_the_client_name_is_kept() {
        let svc = FallbackLayer::new(config()).layer(router());
        let resp = svc.oneshot(req("down")).await.unwrap();
        let c = resp.completion().unwrap();
        assert_eq!(c.text(), Some("hello from up"));
        assert_eq!(c.model, "down");
        assert_eq!(resp.meta.fallbacks, 2);
        assert_eq!(&*resp.meta.deployment.as_ref().unwrap().model_group, "up");
    }

    #[tokio::test]
    async fn context_window_and_content_policy_lists() {
        let svc = FallbackLayer::new(config()).layer(router());
        let resp = svc.clone().oneshot(req("small")).await.unwrap();
        assert_eq!(resp.completion().unwrap().text(), Some("hello from big"));
        let resp = svc.oneshot(req("prude")).await.unwrap();
        assert_eq!(
            resp.completion().unwrap().text(),
            Some("hello from lenient")
        );
    }

    #[tokio::test]
    async fn request_fallbacks_replace_the_configured_ones() {
        let svc = FallbackLayer::new(config()).layer(router());
        let mut r = req("down");
        r.body_mut().fallbacks = Some(serde_json::json!(["big"]));
        let resp = svc.oneshot(r).await.unwrap();
        assert_eq!(resp.completion().unwrap().text(), Some("hello from big"));
        assert_eq!(resp.meta.fallbacks, 1);
    }

    #[tokio::test]
    async fn all_failing_returns_the_last_error_naming_the_groups() {
        let cfg = FallbackConfig::default().fallback("down", ["also-down"]);
        let err = FallbackLayer::new(cfg)
            .layer(router())
            .oneshot(req("down"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Upstream(500));
        assert!(
            err.message()
                .contains("after falling back from `down` to `also-down`"),
            "{}",
            err.message()
        );
        assert_eq!(err.fallbacks(), 1);
    }

    #[tokio::test]
    async fn gateway_refusals_never_fall_back() {
        #[derive(Clone)]
        struct Refuse;
        impl Service<ChatRequest> for Refuse {
            type Response = ChatResponse;
            type Error = Error;
            type Future = std::future::Ready<Result<ChatResponse, Error>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: ChatRequest) -> Self::Future {
                std::future::ready(Err(Error::new(
                    ErrorKind::RateLimited(LimitSource::Gateway),
                    "slow down",
                )))
            }
        }
        let err = FallbackLayer::new(config())
            .layer(Refuse)
            .oneshot(req("down"))
            .await
            .unwrap_err();
        assert_eq!(err.fallbacks(), 0);
        // An unknown model is not a reason to fall back either.
        let err = FallbackLayer::new(config().default_fallbacks(["up"]))
            .layer(router())
            .oneshot(req("nope"))
            .await
            .unwrap_err();
        assert_eq!(err.status().as_u16(), 404);
    }

    #[tokio::test]
    async fn streams_fall_back_before_their_first_chunk() {
        let svc = FallbackLayer::new(config()).layer(router());
        let mut r = req("down");
        r.body_mut().stream = Some(true);
        let resp = svc.oneshot(r).await.unwrap();
        let c = resp
            .into_stream()
            .unwrap()
            .collect_completion()
            .await
            .unwrap();
        assert_eq!(c.text(), Some("hello from up"));
        assert_eq!(c.model, "down");
    }

    #[test]
    fn litellm_list_form() {
        let v = serde_json::json!([{"gpt-4o": ["claude", "gemini"]}, {"a": ["b"]}]);
        let m = FallbackConfig::parse_list(&v).unwrap();
        assert_eq!(m["gpt-4o"], vec!["claude", "gemini"]);
        assert!(FallbackConfig::parse_list(&serde_json::json!({"a": "b"})).is_err());
        assert!(FallbackConfig::parse_list(&serde_json::json!([{"a": [1]}])).is_err());
    }
}
