//! The HTTP edge: OpenAI's REST API as a tower `Service<http::Request<B>>`.
//!
//! [`HttpEdge`] serves `POST /v1/chat/completions`, `POST /v1/embeddings`,
//! `GET /v1/models` and `GET /v1/models/{id}` (each also without `/v1`) in
//! front of any chat and embeddings services — a bare provider leaf, or a
//! whole stack of layers. It also serves Anthropic's `POST /v1/messages` and
//! `POST /v1/messages/count_tokens` for every model (see [`messages`]). It is
//! a plain tower service, so it mounts in axum, hyper, tonic or warp (see
//! `examples/`).
//!
//! Per request it authenticates the caller, reads the body once (bounded in
//! size and time), parses it once, validates it, calls the service and writes
//! JSON or SSE. Every failure becomes the OpenAI error body with the status
//! of its [`ErrorKind`](crate::ErrorKind); a stream that fails after its first
//! byte ends with an in-band `data: {"error": …}` event and no `[DONE]`.
//!
//! ```
//! use tollgate::edge::HttpEdge;
//! use tollgate::provider::{Mock, MockConfig};
//! use tollgate::router::{Deployment, Router};
//! use http_body_util::{BodyExt, Full};
//! use tower::ServiceExt;
//!
//! # tokio_test::block_on(async {
//! let router = Router::builder()
//!     .deployment(Deployment::chat("demo", Mock::new(MockConfig::new("mock/demo"))))
//!     .build();
//! let edge = HttpEdge::builder(router.clone()).catalog(router).build();
//! let req = http::Request::post("/v1/chat/completions")
//!     .header("content-type", "application/json")
//!     .body(Full::new(bytes::Bytes::from_static(
//!         br#"{"model":"demo","messages":[{"role":"user","content":"hi"}]}"#,
//!     )))
//!     .unwrap();
//! let resp = edge.oneshot(req).await.unwrap();
//! assert_eq!(resp.status(), 200);
//! let body = resp.into_body().collect().await.unwrap().to_bytes();
//! let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(json["choices"][0]["message"]["role"], "assistant");
//! # });
//! ```

mod body;
pub mod messages;
mod validate;

pub use body::{EdgeBody, SseEncoder};

use crate::auth::{Authenticate, Identity, NoAuth};
use crate::context::{Deadline, Received, RequestId, Tags};
use crate::error::{BoxError, Error, ErrorKind, TimeoutKind};
use crate::provider::{BoxFuture, UpstreamLatency};
use crate::router::{ModelCard, Router};
use crate::types::{
    ChatBody, ChatRequest, ChatResponse, EmbeddingOutput, EmbeddingRequest, ResponseMeta,
};
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use http_body::Body;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

/// Lists the models a caller may see.
pub trait ModelCatalog: Send + Sync + 'static {
    /// Every model the identity may use.
    fn list(&self, identity: &Identity) -> Vec<ModelCard>;
    /// One model, if it exists and the identity may use it.
    fn get(&self, id: &str, identity: &Identity) -> Option<ModelCard>;
}

impl ModelCatalog for Router {
    fn list(&self, identity: &Identity) -> Vec<ModelCard> {
        self.models()
            .into_iter()
            .filter(|m| identity.may_use(&m.id))
            .collect()
    }
    fn get(&self, id: &str, identity: &Identity) -> Option<ModelCard> {
        self.model(id).filter(|_| identity.may_use(id))
    }
}

/// A catalog with no models.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmptyCatalog;

impl ModelCatalog for EmptyCatalog {
    fn list(&self, _: &Identity) -> Vec<ModelCard> {
        Vec::new()
    }
    fn get(&self, _: &str, _: &Identity) -> Option<ModelCard> {
        None
    }
}

/// An embeddings service that serves nothing (the default of [`HttpEdge`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEmbeddings;

impl Service<EmbeddingRequest> for NoEmbeddings {
    type Response = EmbeddingOutput;
    type Error = Error;
    type Future = std::future::Ready<Result<EmbeddingOutput, Error>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        std::future::ready(Err(Error::model_not_found(&req.model)))
    }
}

/// Limits and switches of the edge.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// Largest request body; larger ones get 413 before they are read.
    pub max_body_bytes: usize,
    /// Time allowed to receive the whole request body (slow uploads get 408).
    pub body_timeout: Duration,
    /// Accept `api_key` / `api_base` / `base_url` / `extra_headers` in request
    /// bodies instead of refusing them with a 400. They are never used: calls
    /// always go to the deployment's configured address with its configured
    /// credentials, and these fields are never forwarded upstream.
    pub allow_client_credentials: bool,
    /// Status for `budget_exceeded` errors (default 429).
    pub budget_exceeded_status: StatusCode,
    /// Finish a request whose client went away before its answer (default
    /// on): the upstream call runs to its end on its own task, so its usage
    /// is known and billed exactly (the provider bills it anyway), instead
    /// of being cut off with its cost unknown. Streams still stop when their
    /// client goes away, and are billed for what was generated.
    pub finish_abandoned_requests: bool,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            max_body_bytes: 32 << 20,
            body_timeout: Duration::from_secs(60),
            allow_client_credentials: false,
            budget_exceeded_status: StatusCode::TOO_MANY_REQUESTS,
            finish_abandoned_requests: true,
        }
    }
}

/// Calls `svc` in the caller's task. When `detach` and the caller is dropped
/// before the call finished (the client went away), the call goes on in a
/// task of its own, so that its usage is known and billed. Running it in
/// place (rather than always in a spawned task) saves a task and two
/// cross-thread wake-ups per request. A panic in the call becomes a 500.
fn call_detached<S, R>(svc: S, req: R, detach: bool) -> Call<Oneshot<S, R>>
where
    S: Service<R, Error = Error> + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    R: Send + 'static,
{
    Call {
        // Boxed, so that the futures awaiting it are not sized for the whole call.
        fut: Some(Box::pin(svc.oneshot(req))),
        detach,
    }
}

/// The future of [`call_detached`].
struct Call<F: Future + Send + 'static>
where
    F::Output: Send + 'static,
{
    fut: Option<Pin<Box<F>>>,
    detach: bool,
}

impl<F, T> Future for Call<F>
where
    F: Future<Output = Result<T, Error>> + Send + 'static,
    T: Send + 'static,
{
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(fut) = self.fut.as_mut() else {
            return Poll::Ready(Err(Error::internal(
                "the request handler was polled after it finished",
            )));
        };
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx)));
        let out = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(out)) => out,
            Err(_) => Err(Error::internal("the request handler panicked")),
        };
        self.fut = None;
        Poll::Ready(out)
    }
}

impl<F: Future + Send + 'static> Drop for Call<F>
where
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        if let Some(fut) = self.fut.take()
            && self.detach
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            drop(runtime.spawn(fut));
        }
    }
}

struct Shared {
    auth: Arc<dyn Authenticate>,
    catalog: Arc<dyn ModelCatalog>,
    config: EdgeConfig,
}

/// The OpenAI-compatible HTTP edge. See the [module docs](self).
pub struct HttpEdge<C, E = NoEmbeddings> {
    chat: C,
    embeddings: E,
    shared: Arc<Shared>,
}

impl<C: Clone, E: Clone> Clone for HttpEdge<C, E> {
    fn clone(&self) -> Self {
        HttpEdge {
            chat: self.chat.clone(),
            embeddings: self.embeddings.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// Builds an [`HttpEdge`].
pub struct HttpEdgeBuilder<C, E> {
    chat: C,
    embeddings: E,
    auth: Arc<dyn Authenticate>,
    catalog: Arc<dyn ModelCatalog>,
    config: EdgeConfig,
}

impl<C> HttpEdge<C, NoEmbeddings> {
    /// Starts a builder around a chat service.
    pub fn builder(chat: C) -> HttpEdgeBuilder<C, NoEmbeddings> {
        HttpEdgeBuilder {
            chat,
            embeddings: NoEmbeddings,
            auth: Arc::new(NoAuth),
            catalog: Arc::new(EmptyCatalog),
            config: EdgeConfig::default(),
        }
    }
}

impl<C, E> HttpEdgeBuilder<C, E> {
    /// Serves `/v1/embeddings` with `service`.
    pub fn embeddings<E2>(self, service: E2) -> HttpEdgeBuilder<C, E2> {
        HttpEdgeBuilder {
            chat: self.chat,
            embeddings: service,
            auth: self.auth,
            catalog: self.catalog,
            config: self.config,
        }
    }

    /// Checks callers with `auth` (default: no authentication).
    pub fn auth(mut self, auth: impl Authenticate) -> Self {
        self.auth = Arc::new(auth);
        self
    }

    /// Checks callers with a shared authenticator.
    pub fn auth_arc(mut self, auth: Arc<dyn Authenticate>) -> Self {
        self.auth = auth;
        self
    }

    /// Serves `/v1/models` from `catalog`.
    pub fn catalog(mut self, catalog: impl ModelCatalog) -> Self {
        self.catalog = Arc::new(catalog);
        self
    }

    /// Sets limits and switches.
    pub fn config(mut self, config: EdgeConfig) -> Self {
        self.config = config;
        self
    }

    /// Builds the edge.
    pub fn build(self) -> HttpEdge<C, E> {
        HttpEdge {
            chat: self.chat,
            embeddings: self.embeddings,
            shared: Arc::new(Shared {
                auth: self.auth,
                catalog: self.catalog,
                config: self.config,
            }),
        }
    }
}

/// The routes the edge serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `GET /v1/models`
    Models,
    /// `GET /v1/models/{id}`
    Model,
    /// `POST /v1/messages` (Anthropic's Messages API)
    Messages,
    /// `POST /v1/messages/count_tokens`
    CountTokens,
}

impl Route {
    /// The route for a path, if the edge serves it.
    pub fn of(path: &str) -> Option<Route> {
        let path = path.strip_prefix("/v1").unwrap_or(path);
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        match path {
            "/chat/completions" => Some(Route::ChatCompletions),
            "/embeddings" => Some(Route::Embeddings),
            "/models" => Some(Route::Models),
            p if p.starts_with("/models/") => Some(Route::Model),
            "/messages" => Some(Route::Messages),
            "/messages/count_tokens" => Some(Route::CountTokens),
            _ => None,
        }
    }

    fn method(self) -> Method {
        match self {
            Route::ChatCompletions | Route::Embeddings | Route::Messages | Route::CountTokens => {
                Method::POST
            }
            Route::Models | Route::Model => Method::GET,
        }
    }
}

impl<C, E, B> Service<http::Request<B>> for HttpEdge<C, E>
where
    C: Service<ChatRequest, Response = ChatResponse, Error = Error> + Clone + Send + 'static,
    C::Future: Send + 'static,
    E: Service<EmbeddingRequest, Response = EmbeddingOutput, Error = Error>
        + Clone
        + Send
        + 'static,
    E::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<EdgeBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<EdgeBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness of the inner services is awaited per request, on clones.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use futures_util::FutureExt;
        let shared = self.shared.clone();
        match dispatch(req.method(), req.uri().path()) {
            // Chat gets its own future, holding no more than it needs: every
            // request waiting for its upstream's first byte holds one. The
            // service clone is boxed so that it is stored once, in the task
            // that calls it, not also in this future.
            Dispatch::Chat { anthropic } => {
                Box::pin(chat_exchange(Box::new(self.chat.clone()), shared, req, anthropic).map(Ok))
            }
            Dispatch::Other(route) => {
                Box::pin(handle(self.embeddings.clone(), shared, req, route).map(Ok))
            }
            Dispatch::Reject { error, anthropic } => {
                let ex = Exchange::new(req.headers(), &shared);
                let resp = if anthropic {
                    messages::error_response(&error, &ex)
                } else {
                    error_response(&error, &ex)
                };
                Box::pin(std::future::ready(Ok(resp)))
            }
        }
    }
}

/// What the edge does with a request, decided from its method and path.
enum Dispatch {
    /// `POST /v1/chat/completions`, or `POST /v1/messages` when `anthropic`.
    Chat { anthropic: bool },
    /// Any other route, with the right method.
    Other(OtherRoute),
    /// No such route, or the wrong method (errors on Anthropic's routes are
    /// written in Anthropic's envelope).
    Reject { error: Error, anthropic: bool },
}

/// The routes served by [`handle`].
#[derive(Clone, Copy)]
enum OtherRoute {
    Models,
    Model,
    Embeddings,
    CountTokens,
}

fn dispatch(method: &Method, path: &str) -> Dispatch {
    let Some(route) = Route::of(path) else {
        return Dispatch::Reject {
            error: Error::new(
                ErrorKind::NotFound,
                format!("no route for {method} {}", safe_path(path)),
            ),
            anthropic: false,
        };
    };
    if *method != route.method() {
        return Dispatch::Reject {
            error: Error::new(
                ErrorKind::MethodNotAllowed,
                format!(
                    "{method} is not allowed on {}; use {}",
                    safe_path(path),
                    route.method()
                ),
            ),
            anthropic: matches!(route, Route::Messages | Route::CountTokens),
        };
    }
    match route {
        Route::ChatCompletions => Dispatch::Chat { anthropic: false },
        Route::Messages => Dispatch::Chat { anthropic: true },
        Route::Embeddings => Dispatch::Other(OtherRoute::Embeddings),
        Route::Models => Dispatch::Other(OtherRoute::Models),
        Route::Model => Dispatch::Other(OtherRoute::Model),
        Route::CountTokens => Dispatch::Other(OtherRoute::CountTokens),
    }
}

/// Context of one HTTP exchange.
#[derive(Clone)]
struct Exchange {
    request_id: RequestId,
    received: Instant,
    budget_status: StatusCode,
}

impl Exchange {
    fn new(headers: &HeaderMap, shared: &Shared) -> Exchange {
        Exchange {
            request_id: request_id(headers),
            received: Instant::now(),
            budget_status: shared.config.budget_exceeded_status,
        }
    }
}

/// How a chat answer is written: OpenAI's format, or Anthropic's for
/// `/v1/messages` (which names the model the client asked for).
enum Reply {
    OpenAi { include_usage: bool },
    Anthropic { model: String },
}

fn chat_exchange<C, B>(
    chat: Box<C>,
    shared: Arc<Shared>,
    req: http::Request<B>,
    anthropic: bool,
) -> impl Future<Output = http::Response<EdgeBody>> + Send + 'static
where
    C: Service<ChatRequest, Response = ChatResponse, Error = Error> + Send + 'static,
    C::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let ex = Exchange::new(&parts.headers, &shared);
    // The request's head and body are read in a box of their own, freed once
    // the request is parsed: while the upstream works (seconds, for a model's
    // first token), the exchange holds the parsed request and little else.
    let read = Box::pin(read_chat(
        shared.clone(),
        parts,
        body,
        ex.clone(),
        anthropic,
    ));
    async move {
        let result = async {
            let (req, reply) = read.await?;
            let detach = shared.config.finish_abandoned_requests;
            let resp = call_detached(chat, req, detach).await?;
            Ok::<_, Error>(match reply {
                Reply::OpenAi { include_usage } => chat_response(resp, include_usage, &ex),
                Reply::Anthropic { model } => messages::respond(resp, model, &ex),
            })
        }
        .await;
        match result {
            Ok(resp) => resp,
            Err(err) if anthropic => messages::error_response(&err, &ex),
            Err(err) => error_response(&err, &ex),
        }
    }
}

/// Authenticates, reads, parses and checks a chat request (OpenAI's format,
/// or Anthropic's Messages when `anthropic`).
async fn read_chat<B>(
    shared: Arc<Shared>,
    parts: http::request::Parts,
    body: B,
    ex: Exchange,
    anthropic: bool,
) -> Result<(ChatRequest, Reply), Error>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let identity = shared
        .auth
        .authenticate(crate::auth::credential(&parts.headers))
        .await?;
    check_content_type(&parts.headers)?;
    let bytes = read_body(body, &parts.headers, &shared.config).await?;
    if anthropic {
        let mut req = messages::parse(&bytes)?;
        if !identity.may_use(&req.model) {
            return Err(model_denied(&req.model));
        }
        validate::chat(&req, &shared.config)?;
        fill_extensions(
            &mut req.extensions,
            &parts.headers,
            &ex,
            identity,
            None,
            None,
        );
        let model = req.model.clone();
        return Ok((req, Reply::Anthropic { model }));
    }
    let mut req = ChatRequest::from_json(&bytes)?;
    validate::chat(&req, &shared.config)?;
    if !identity.may_use(&req.model) {
        return Err(model_denied(&req.model));
    }
    let body = req.shared_body().clone();
    fill_extensions(
        &mut req.extensions,
        &parts.headers,
        &ex,
        identity,
        body.tags.as_deref(),
        body.metadata.as_ref(),
    );
    let include_usage = req.include_usage();
    Ok((req, Reply::OpenAi { include_usage }))
}

async fn handle<E, B>(
    embeddings: E,
    shared: Arc<Shared>,
    req: http::Request<B>,
    route: OtherRoute,
) -> http::Response<EdgeBody>
where
    E: Service<EmbeddingRequest, Response = EmbeddingOutput, Error = Error> + Send + 'static,
    E::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let ex = Exchange::new(&parts.headers, &shared);
    let result = async {
        let identity = shared
            .auth
            .authenticate(crate::auth::credential(&parts.headers))
            .await?;
        match route {
            OtherRoute::Models => Ok(models_response(&shared, &identity, None, &ex)?),
            OtherRoute::Model => {
                let path = parts.uri.path();
                let id = path
                    .strip_prefix("/v1")
                    .unwrap_or(path)
                    .strip_prefix("/models/")
                    .unwrap_or_default();
                Ok(models_response(
                    &shared,
                    &identity,
                    Some(&percent_decode(id)),
                    &ex,
                )?)
            }
            OtherRoute::Embeddings => {
                check_content_type(&parts.headers)?;
                let bytes = read_body(body, &parts.headers, &shared.config).await?;
                let mut req = EmbeddingRequest::from_json(&bytes)?;
                validate::embeddings(&req, &shared.config)?;
                if !identity.may_use(&req.model) {
                    return Err(model_denied(&req.model));
                }
                let tags = req.body().tags.clone();
                let metadata = req.body().metadata.clone();
                fill_extensions(
                    &mut req.extensions,
                    &parts.headers,
                    &ex,
                    identity,
                    tags.as_deref(),
                    metadata.as_ref(),
                );
                let detach = shared.config.finish_abandoned_requests;
                let resp = call_detached(embeddings, req, detach).await?;
                let bytes = serde_json::to_vec(&resp.body)
                    .map_err(|e| Error::internal(format!("could not encode the answer: {e}")))?;
                let mut out = json(StatusCode::OK, bytes);
                if let Some(total) = resp
                    .meta
                    .extensions
                    .get::<crate::cost::CallCost>()
                    .and_then(|c| c.total())
                    && let Some(v) = header_value(&total.to_string())
                {
                    out.headers_mut().insert(X_RESPONSE_COST.clone(), v);
                }
                common_headers(out.headers_mut(), &ex, Some(&resp.meta));
                Ok(out)
            }
            OtherRoute::CountTokens => {
                check_content_type(&parts.headers)?;
                let bytes = read_body(body, &parts.headers, &shared.config).await?;
                let req = messages::parse(&bytes)?;
                if !identity.may_use(&req.model) {
                    return Err(model_denied(&req.model));
                }
                Ok(messages::count_tokens(&req, &ex))
            }
        }
    }
    .await;
    match result {
        Ok(resp) => resp,
        Err(err) if matches!(route, OtherRoute::CountTokens) => messages::error_response(&err, &ex),
        Err(err) => error_response(&err, &ex),
    }
}

/// Entry points for the fuzz targets in `fuzz/`: the request parsers the edge
/// runs on untrusted bodies, without the HTTP around them. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::error::Error;
    use crate::types::ChatRequest;

    /// Parses and checks a `/v1/chat/completions` body as the edge does
    /// (default [`EdgeConfig`](super::EdgeConfig)).
    pub fn chat_request(bytes: &[u8]) -> Result<ChatRequest, Error> {
        let req = ChatRequest::from_json(bytes)?;
        super::validate::chat(&req, &super::EdgeConfig::default())?;
        Ok(req)
    }

    /// Parses and checks a `/v1/messages` body as the edge does.
    pub fn messages_request(bytes: &[u8]) -> Result<ChatRequest, Error> {
        let req = super::messages::parse(&bytes::Bytes::copy_from_slice(bytes))?;
        super::validate::chat(&req, &super::EdgeConfig::default())?;
        Ok(req)
    }
}

fn model_denied(model: &str) -> Error {
    let shown: String = model.chars().take(200).collect();
    Error::new(
        ErrorKind::PermissionDenied,
        format!("this key is not allowed to use the model `{shown}`"),
    )
    .with_param("model")
}

fn models_response(
    shared: &Shared,
    identity: &Identity,
    id: Option<&str>,
    ex: &Exchange,
) -> Result<http::Response<EdgeBody>, Error> {
    let body = match id {
        None => {
            #[derive(serde::Serialize)]
            struct List {
                object: &'static str,
                data: Vec<ModelCard>,
            }
            serde_json::to_vec(&List {
                object: "list",
                data: shared.catalog.list(identity),
            })
        }
        Some(id) => match shared.catalog.get(id, identity) {
            Some(card) => serde_json::to_vec(&card),
            None => return Err(Error::model_not_found(id)),
        },
    }
    .map_err(|e| Error::internal(e.to_string()))?;
    let mut resp = json(StatusCode::OK, body);
    common_headers(resp.headers_mut(), ex, None);
    Ok(resp)
}

/// Takes a safe client-supplied `x-request-id`, or makes one.
fn request_id(headers: &HeaderMap) -> RequestId {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(|v| RequestId(Arc::from(v)))
        .unwrap_or_else(RequestId::generate)
}

/// A path for error messages: bounded and free of control characters.
fn safe_path(path: &str) -> String {
    path.chars()
        .take(100)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Error> {
    let Some(ct) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    // curl sends `application/x-www-form-urlencoded` for `-d` unless told otherwise;
    // LiteLLM accepts it, so do we (the body must still be JSON).
    if mime.eq_ignore_ascii_case("application/json")
        || mime.ends_with("+json")
        || mime.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        || mime.is_empty()
    {
        Ok(())
    } else {
        let shown: String = mime.chars().take(80).filter(|c| !c.is_control()).collect();
        Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "the request body must be JSON (Content-Type: application/json), not `{shown}`"
            ),
        ))
    }
}

fn too_large(limit: usize) -> Error {
    Error::new(
        ErrorKind::PayloadTooLarge,
        format!("the request body is larger than the limit of {limit} bytes"),
    )
}

/// Reads the whole body, refusing it early when its declared length is over the
/// limit, and failing when it grows past the limit or arrives too slowly.
async fn read_body<B>(body: B, headers: &HeaderMap, config: &EdgeConfig) -> Result<Bytes, Error>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limit = config.max_body_bytes;
    if let Some(len) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large(limit));
    }
    let read = async move {
        let mut body = std::pin::pin!(body);
        let mut first: Option<Bytes> = None;
        let mut buf = BytesMut::new();
        let mut total = 0usize;
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            let frame = frame.map_err(|e| {
                let e: BoxError = e.into();
                Error::bad_request("the request body could not be read").with_source(e)
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            total += data.len();
            if total > limit {
                return Err(too_large(limit));
            }
            match first.take() {
                None if buf.is_empty() => first = Some(data),
                Some(f) => {
                    buf.extend_from_slice(&f);
                    buf.extend_from_slice(&data);
                }
                None => buf.extend_from_slice(&data),
            }
        }
        Ok(first.unwrap_or_else(|| buf.freeze()))
    };
    let bytes = tokio::time::timeout(config.body_timeout, read)
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::Timeout(TimeoutKind::Total),
                "the request body was not received in time",
            )
        })??;
    if bytes.is_empty() {
        return Err(Error::bad_request(
            "the request body is empty; send a JSON object",
        ));
    }
    Ok(bytes)
}

fn fill_extensions(
    ext: &mut http::Extensions,
    headers: &HeaderMap,
    ex: &Exchange,
    identity: Identity,
    body_tags: Option<&[String]>,
    metadata: Option<&serde_json::Map<String, serde_json::Value>>,
) {
    ext.insert(ex.request_id.clone());
    ext.insert(Received(ex.received));
    if let Some(tp) = crate::observe::TraceParent::from_headers(headers) {
        ext.insert(tp);
    }
    if let Some(list) = &identity.allowed_cache_controls {
        ext.insert(crate::cache::CacheControlsPolicy::from_shared(list.clone()));
    }
    ext.insert(identity);
    if let Some(beta) = headers
        .get("anthropic-beta")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 1024)
    {
        ext.insert(crate::provider::anthropic::AnthropicBeta(Arc::from(beta)));
    }
    if let Some(secs) = headers
        .get("x-litellm-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
    {
        ext.insert(Deadline(
            ex.received + Duration::from_secs_f64(secs.min(86_400.0)),
        ));
    }
    let mut tags: Vec<String> = Vec::new();
    let mut add = |t: &str| {
        let t = t.trim();
        if !t.is_empty() && t.len() <= 128 && tags.len() < 32 && !tags.iter().any(|x| x == t) {
            tags.push(t.to_owned());
        }
    };
    if let Some(h) = headers.get("x-litellm-tags").and_then(|v| v.to_str().ok()) {
        h.split(',').for_each(&mut add);
    }
    for t in body_tags.into_iter().flatten() {
        add(t);
    }
    if let Some(serde_json::Value::Array(list)) = metadata.and_then(|m| m.get("tags")) {
        for t in list.iter().filter_map(|v| v.as_str()) {
            add(t);
        }
    }
    if !tags.is_empty() {
        ext.insert(Tags(tags.into()));
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> http::Response<EdgeBody> {
    let mut resp = http::Response::new(EdgeBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_CALL_ID: HeaderName = HeaderName::from_static("x-litellm-call-id");
static X_MODEL_ID: HeaderName = HeaderName::from_static("x-litellm-model-id");
static X_MODEL_API_BASE: HeaderName = HeaderName::from_static("x-litellm-model-api-base");
static X_MODEL_GROUP: HeaderName = HeaderName::from_static("x-litellm-model-group");
static X_OVERHEAD: HeaderName = HeaderName::from_static("x-litellm-overhead-duration-ms");
static X_RETRIES: HeaderName = HeaderName::from_static("x-litellm-attempted-retries");
static X_FALLBACKS: HeaderName = HeaderName::from_static("x-litellm-attempted-fallbacks");
static X_RESPONSE_COST: HeaderName = HeaderName::from_static("x-litellm-response-cost");
static X_CACHE_KEY: HeaderName = HeaderName::from_static("x-litellm-cache-key");

fn header_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

/// A duration as milliseconds with three decimals (`12.345`), rounded to
/// the microsecond: written digit by digit, not through a float formatter.
fn millis(d: Duration) -> HeaderValue {
    let micros = (d.as_nanos().saturating_add(500) / 1000).min(u128::from(u64::MAX)) as u64;
    let (mut whole, frac) = (micros / 1000, micros % 1000);
    // Up to 17 digits before the dot (u64::MAX µs), the dot, three after.
    let mut buf = [0u8; 24];
    buf[20] = b'.';
    buf[21] = b'0' + (frac / 100) as u8;
    buf[22] = b'0' + (frac / 10 % 10) as u8;
    buf[23] = b'0' + (frac % 10) as u8;
    let mut at = 20;
    loop {
        at -= 1;
        buf[at] = b'0' + (whole % 10) as u8;
        whole /= 10;
        if whole == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&buf[at..]).expect("digits and a dot are a valid header value")
}

fn common_headers(h: &mut HeaderMap, ex: &Exchange, meta: Option<&ResponseMeta>) {
    if let Some(v) = header_value(ex.request_id.as_str()) {
        h.insert(X_REQUEST_ID.clone(), v.clone());
        h.insert(X_CALL_ID.clone(), v);
    }
    let Some(meta) = meta else { return };
    if let Some(d) = &meta.deployment {
        if let Some(v) = header_value(&d.id) {
            h.insert(X_MODEL_ID.clone(), v);
        }
        if let Some(v) = d.api_base.as_deref().and_then(header_value) {
            h.insert(X_MODEL_API_BASE.clone(), v);
        }
        if let Some(v) = header_value(&d.model_group) {
            h.insert(X_MODEL_GROUP.clone(), v);
        }
    }
    let total = ex.received.elapsed();
    let upstream = meta
        .extensions
        .get::<UpstreamLatency>()
        .map_or(Duration::ZERO, |u| u.0);
    let overhead = total.saturating_sub(upstream);
    h.insert(X_OVERHEAD.clone(), millis(overhead));
    h.insert(
        X_RETRIES.clone(),
        HeaderValue::from(meta.attempts.saturating_sub(1)),
    );
    h.insert(X_FALLBACKS.clone(), HeaderValue::from(meta.fallbacks));
    if let Some(crate::context::GatewayHeaders(extra)) = meta.extensions.get() {
        for (name, value) in extra {
            h.insert(name.clone(), value.clone());
        }
    }
    if let Some(state) = meta.extensions.get::<crate::limits::RateLimitState>() {
        state.write_to(h);
    }
    if let Some(hit) = meta.extensions.get::<crate::cache::CacheHit>()
        && let Some(v) = header_value(&hit.key.to_hex())
    {
        h.insert(X_CACHE_KEY.clone(), v);
    }
    for (name, value) in &meta.upstream_headers {
        if let Ok(n) = HeaderName::from_bytes(format!("llm_provider-{}", name.as_str()).as_bytes())
        {
            h.append(n, value.clone());
        }
    }
}

fn chat_response(
    resp: ChatResponse,
    include_usage: bool,
    ex: &Exchange,
) -> http::Response<EdgeBody> {
    let ChatResponse { body, meta } = resp;
    let mut out = match body {
        ChatBody::Complete(c) => match serde_json::to_vec(&c) {
            Ok(bytes) => {
                let mut r = json(StatusCode::OK, bytes);
                if let Some(total) = meta
                    .extensions
                    .get::<crate::cost::CallCost>()
                    .and_then(|c| c.total())
                    && let Some(v) = header_value(&total.to_string())
                {
                    r.headers_mut().insert(X_RESPONSE_COST.clone(), v);
                }
                r
            }
            Err(e) => {
                return error_response(
                    &Error::internal(format!("could not encode the answer: {e}")),
                    ex,
                );
            }
        },
        ChatBody::Stream(s) => {
            let cost = meta.extensions.get::<crate::cost::StreamCost>().cloned();
            let mut r = http::Response::new(EdgeBody::sse_with_cost(s, include_usage, cost));
            let h = r.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            h.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            );
            h.insert(
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            );
            r
        }
    };
    common_headers(out.headers_mut(), ex, Some(&meta));
    out
}

/// The OpenAI error response for `err`.
fn error_response(err: &Error, ex: &Exchange) -> http::Response<EdgeBody> {
    let status = match err.kind() {
        ErrorKind::BudgetExceeded => ex.budget_status,
        _ => err.status(),
    };
    let mut resp = http::Response::new(EdgeBody::full(err.to_json()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(extra) = err.headers() {
        for (k, v) in extra {
            h.append(k.clone(), v.clone());
        }
    }
    if let Some(after) = err.retry_after() {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(http::header::ALLOW, HeaderValue::from_static("GET, POST"));
    }
    common_headers(h, ex, None);
    // How many times the upstream was tried before giving up (as on success).
    if err.attempts() > 0 {
        h.insert(
            X_RETRIES.clone(),
            HeaderValue::from(err.attempts().saturating_sub(1)),
        );
    }
    resp
}

#[cfg(test)]
mod tests;
