//! The `tollgate` proxy: a LiteLLM-compatible config turned into a stack of
//! layers behind the [`HttpEdge`](crate::edge::HttpEdge), plus the routes a
//! proxy needs besides the API (health checks).
//!
//! Compiled with the `proxy` feature (on by default).

pub mod build;
mod cache;
pub mod cli;
pub mod config;
pub mod control;
pub mod inventory;
pub mod limits;
pub mod observability;
mod routes;
pub mod server;
pub mod settings;

use crate::auth::{Authenticate, MasterKey, NoAuth};
use crate::cache::Cache;
use crate::edge::{EdgeBody, EdgeConfig, HttpEdge};
use crate::error::BoxError;
use crate::fallback::{Fallback, FallbackLayer};
use crate::limits::{Budget, BudgetLayer, NoHistory, RateLimit, RateLimitLayer};
use crate::observe::{Observe, ObserveLayer, RecordSink};
use crate::provider::BoxFuture;
use crate::retry::{Retry, RetryLayer};
use crate::router::Router;
use crate::transport::{HttpClient, HttpClientConfig};
use bytes::Bytes;
use config::{ConfigError, ProxyConfig};
use http::{HeaderValue, Method, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The chat stack the proxy serves.
pub type ChatStack = Observe<RateLimit<Budget<Cache<Fallback<Retry<Router>>>>>>;

/// The embeddings stack the proxy serves.
pub type EmbeddingStack = Observe<RateLimit<Budget<Cache<Router>>>>;

/// The proxy's edge.
pub type ProxyEdge = HttpEdge<ChatStack, EmbeddingStack>;

/// Process-wide state of a running proxy.
#[derive(Debug, Default)]
pub struct ProxyState {
    draining: AtomicBool,
}

impl ProxyState {
    /// Marks the proxy as shutting down (readiness turns 503).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the proxy is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The whole proxy as one tower service: health routes, then the API edge.
#[derive(Clone)]
pub struct ProxyService {
    edge: ProxyEdge,
    state: Arc<ProxyState>,
    models: usize,
    auth: Arc<dyn Authenticate>,
    routes: Arc<routes::Routes>,
    metrics: Option<observability::MetricsEndpoint>,
    management: Option<Arc<crate::store::ManagementApi>>,
}

/// Options of a gateway that do not come from the config file.
#[derive(Clone, Debug, Default)]
pub struct GatewayOptions {
    /// A price file in LiteLLM's table format, merged over the bundled table
    /// (also `litellm_settings.model_cost_map_path`; this one wins).
    pub price_file: Option<std::path::PathBuf>,
    /// The control plane (database, virtual keys, spend logs); `None` runs
    /// without a database.
    pub control: Option<Arc<control::ControlPlane>>,
    /// Time allowed to receive a request body (`None`: the edge's default).
    pub body_timeout: Option<std::time::Duration>,
    /// Speak HTTP/2 to every upstream with prior knowledge (h2c on plain
    /// HTTP): see [`HttpClientConfig::http2_prior_knowledge`].
    pub upstream_http2: bool,
    /// How long a spare upstream connection is kept (`Some(ZERO)`: none):
    /// see [`HttpClientConfig::spare_connection`]. `None`: the default.
    pub upstream_spare: Option<std::time::Duration>,
}

/// The price table a config asks for: bundled, plus its price file if any.
pub fn price_table(
    config: &ProxyConfig,
    options: &GatewayOptions,
) -> Result<crate::pricing::PriceTable, ConfigError> {
    let mut table = crate::pricing::PriceTable::bundled();
    let from_config = config
        .litellm_settings
        .other
        .get("model_cost_map_path")
        .and_then(|v| v.as_str())
        .map(std::path::PathBuf::from);
    if let Some(path) = options.price_file.clone().or(from_config) {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError(format!(
                "cannot read the price file {}: {e}",
                path.display()
            ))
        })?;
        let extra = crate::pricing::PriceTable::from_json(&text).map_err(|e| {
            ConfigError(format!(
                "the price file {} is not a JSON map of model → prices: {e}",
                path.display()
            ))
        })?;
        table.merge(extra);
    }
    Ok(table)
}

/// A gateway built from a config.
pub struct Gateway {
    /// The service to serve.
    pub service: ProxyService,
    /// The router (for inspection).
    pub router: Router,
    /// Start-up warnings (never contain secrets).
    pub warnings: Vec<String>,
    /// Whether a master key protects the API.
    pub has_master_key: bool,
    /// Background health-check interval, when `background_health_checks` is on.
    pub health_check_interval: Option<std::time::Duration>,
    /// Budgets and rate limits (flush them on shutdown).
    pub limits: limits::LimitsSetup,
    /// Callback workers to start inside the runtime (`CallbackRunner::spawn`).
    pub callbacks: Option<crate::observe::callback::CallbackRunner>,
    /// The callback queue, when callbacks are configured.
    pub callback_queue: Option<crate::observe::CallbackQueue>,
    /// `/metrics`, when the `prometheus` callback is on.
    pub metrics: Option<observability::MetricsEndpoint>,
}

impl Gateway {
    /// Builds the gateway from a checked config. `env` resolves provider keys
    /// the config does not give (`OPENAI_API_KEY`, `GROQ_API_KEY`, …).
    pub fn from_config(
        config: &ProxyConfig,
        env: &dyn Fn(&str) -> Option<String>,
        sink: Arc<dyn RecordSink>,
    ) -> Result<Gateway, ConfigError> {
        Gateway::with_options(config, env, sink, &GatewayOptions::default())
    }

    /// Like [`Gateway::from_config`], with options from the command line.
    pub fn with_options(
        config: &ProxyConfig,
        env: &dyn Fn(&str) -> Option<String>,
        sink: Arc<dyn RecordSink>,
        options: &GatewayOptions,
    ) -> Result<Gateway, ConfigError> {
        let client = if options.upstream_http2 || options.upstream_spare.is_some() {
            let default = HttpClientConfig::default();
            HttpClient::new(HttpClientConfig {
                http2_prior_knowledge: options.upstream_http2,
                spare_connection: options.upstream_spare.or(default.spare_connection),
                ..default
            })
        } else {
            HttpClient::shared()
        };
        let table = price_table(config, options)?;
        let built = build::build_with_prices(config, env, &client, &table)?;
        let router = built.router;
        // Virtual keys (and the master key) when there is a control plane.
        let keys = options.control.as_ref().and_then(|c| c.authenticator());
        let auth: Arc<dyn Authenticate> = match (keys, &config.general_settings.master_key) {
            (Some(keys), _) => keys,
            (None, Some(key)) if !key.is_empty() => Arc::new(MasterKey::new(key.clone())),
            _ => Arc::new(NoAuth),
        };
        let sink: Arc<dyn RecordSink> = match &options.control {
            Some(c) => Arc::new(crate::observe::FanOut(vec![
                sink,
                Arc::new(c.writer.clone()),
            ])),
            None => sink,
        };
        let mut edge_config = EdgeConfig::default();
        if let Some(t) = options.body_timeout {
            edge_config.body_timeout = t;
        }
        if let Some(mb) = config.general_settings.max_request_size_mb {
            edge_config.max_body_bytes = (mb * 1024.0 * 1024.0).min(usize::MAX as f64) as usize;
        }
        edge_config.allow_client_credentials = config
            .general_settings
            .allow_client_side_credentials
            .unwrap_or(false);
        let obs = observability::build(config, env, &client)?;
        let sink: Arc<dyn RecordSink> = match &obs.sink {
            Some(extra) => Arc::new(crate::observe::FanOut(vec![sink, extra.clone()])),
            None => sink,
        };
        let observe = ObserveLayer::new(sink).capture_content(obs.capture_content);
        let retry = RetryLayer::new(settings::retry_policy(config)?);
        let fallbacks = settings::fallback_config(config)?;
        let (history, end_users): (Arc<dyn crate::limits::SpendHistory>, _) = match &options.control
        {
            Some(c) => (c.history(), Some(c.end_user_limits())),
            None => (Arc::new(NoHistory), None),
        };
        let limits = limits::build(config, env, &router, &fallbacks, history, end_users)?;
        let rate = RateLimitLayer::new(
            limits.limiter.clone(),
            limits.estimator.clone(),
            limits.scopes.clone(),
        );
        let budget = BudgetLayer::new(
            limits.ledger.clone(),
            limits.estimator.clone(),
            limits.scopes.clone(),
        );
        let fallback = FallbackLayer::new(fallbacks);
        let mut cache = cache::configure(config, env)?;
        let mut warnings = built.warnings;
        warnings.append(&mut cache.warnings);
        let cached = cache.cache.layer();
        let chat = observe.layer(
            rate.layer(budget.layer(cached.layer(fallback.layer(retry.layer(router.clone()))))),
        );
        let embeddings = observe.layer(rate.layer(budget.layer(cached.layer(router.clone()))));
        let edge = HttpEdge::builder(chat)
            .embeddings(embeddings)
            .catalog(router.clone())
            .auth_arc(auth.clone())
            .config(edge_config)
            .build();
        Ok(Gateway {
            service: ProxyService {
                edge,
                state: Arc::new(ProxyState::default()),
                models: config.model_list.len(),
                auth,
                routes: Arc::new(routes::Routes {
                    router: router.clone(),
                    config: Arc::new(config.clone()),
                    cache: Arc::new(cache),
                }),
                metrics: obs.metrics.clone(),
                management: options.control.as_ref().map(|c| c.api.clone()),
            },
            router,
            warnings: warnings.into_iter().chain(obs.warnings).collect(),
            callbacks: obs.runner,
            callback_queue: obs.queue,
            metrics: obs.metrics,
            has_master_key: config
                .general_settings
                .master_key
                .as_ref()
                .is_some_and(|k| !k.is_empty()),
            health_check_interval: settings::health_checks(config)?,
            limits,
        })
    }
}

impl ProxyService {
    /// The shared state (to start draining on shutdown).
    pub fn state(&self) -> &Arc<ProxyState> {
        &self.state
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> http::Response<EdgeBody> {
    let mut resp = http::Response::new(EdgeBody::full(
        serde_json::to_vec(&body).unwrap_or_default(),
    ));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

impl<B> Service<http::Request<B>> for ProxyService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<EdgeBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<EdgeBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        // Only declared routes reach a handler (see `inventory`).
        if inventory::find(path).is_none() {
            let e = crate::Error::new(
                crate::ErrorKind::NotFound,
                format!(
                    "no route for {} {}",
                    req.method(),
                    path.chars()
                        .take(100)
                        .map(|c| if c.is_control() { '?' } else { c })
                        .collect::<String>()
                ),
            );
            let mut resp = json_response(e.status(), serde_json::Value::Null);
            *resp.body_mut() = EdgeBody::full(e.to_json());
            return Box::pin(async move { Ok(resp) });
        }
        let get = req.method() == Method::GET || req.method() == Method::HEAD;
        if let Some(metrics) =
            observability::serve(self.metrics.as_ref(), &self.auth, path, get, req.headers())
        {
            return Box::pin(async move { Ok(metrics.await) });
        }
        let quick = match path {
            // LiteLLM spells it "liveliness"; "liveness" is the Kubernetes word.
            "/health/liveliness" | "/health/liveness" if get => Some(json_response(
                StatusCode::OK,
                serde_json::Value::from("I'm alive!"),
            )),
            "/health/readiness" if get => Some(if self.state.is_draining() {
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({"status": "shutting down"}),
                )
            } else {
                json_response(
                    StatusCode::OK,
                    serde_json::json!({
                        "status": "healthy",
                        "db": if self.management.is_some() { "connected" } else { "not connected" },
                        "cache": self.routes.cache.enabled.then(|| self.routes.cache.cache.backend_name()),
                        "models": self.models,
                        "tollgate_version": env!("CARGO_PKG_VERSION"),
                    }),
                )
            }),
            "/" if get => Some(json_response(
                StatusCode::OK,
                serde_json::json!({"name": "tollgate", "version": env!("CARGO_PKG_VERSION")}),
            )),
            _ => None,
        };
        if let Some(resp) = quick {
            return Box::pin(async move { Ok(resp) });
        }
        if let Some(api) = &self.management
            && crate::store::ManagementApi::is_route(path)
        {
            return control::serve(api.clone(), self.auth.clone(), req);
        }
        if routes::is_route(path) {
            let auth = self.auth.clone();
            let routes = self.routes.clone();
            return Box::pin(async move {
                let (parts, body) = req.into_parts();
                let result = async {
                    let identity = auth
                        .authenticate(crate::auth::credential(&parts.headers))
                        .await?;
                    routes
                        .handle(&identity, &parts.method, parts.uri.path(), body)
                        .await
                }
                .await;
                Ok(result.unwrap_or_else(|e| {
                    let mut resp = json_response(e.status(), serde_json::Value::Null);
                    *resp.body_mut() = EdgeBody::full(e.to_json());
                    resp
                }))
            });
        }
        self.edge.call(req)
    }
}
