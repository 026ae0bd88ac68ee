//! The `tollgate` proxy: a LiteLLM-compatible config turned into a stack of
//! layers behind the [`HttpEdge`](crate::edge::HttpEdge), plus the routes a
//! proxy needs besides the API (health checks).
//!
//! Compiled with the `proxy` feature (on by default).

pub mod build;
pub mod cli;
pub mod config;
pub mod server;

use crate::auth::{Authenticate, MasterKey, NoAuth};
use crate::edge::{EdgeBody, EdgeConfig, HttpEdge};
use crate::error::BoxError;
use crate::observe::{Observe, ObserveLayer, RecordSink};
use crate::provider::BoxFuture;
use crate::router::Router;
use crate::transport::HttpClient;
use bytes::Bytes;
use config::{ConfigError, ProxyConfig};
use http::{HeaderValue, Method, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The chat stack the proxy serves.
pub type ChatStack = Observe<Router>;

/// The proxy's edge.
pub type ProxyEdge = HttpEdge<ChatStack, Router>;

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
}

impl Gateway {
    /// Builds the gateway from a checked config. `env` resolves provider keys
    /// the config does not give (`OPENAI_API_KEY`, `GROQ_API_KEY`, …).
    pub fn from_config(
        config: &ProxyConfig,
        env: &dyn Fn(&str) -> Option<String>,
        sink: Arc<dyn RecordSink>,
    ) -> Result<Gateway, ConfigError> {
        let client = HttpClient::shared();
        let built = build::build(config, env, &client)?;
        let router = built.router;
        let auth: Arc<dyn Authenticate> = match &config.general_settings.master_key {
            Some(key) if !key.is_empty() => Arc::new(MasterKey::new(key.clone())),
            _ => Arc::new(NoAuth),
        };
        let mut edge_config = EdgeConfig::default();
        if let Some(mb) = config.general_settings.max_request_size_mb {
            edge_config.max_body_bytes = (mb * 1024.0 * 1024.0).min(usize::MAX as f64) as usize;
        }
        edge_config.allow_client_credentials = config
            .general_settings
            .allow_client_side_credentials
            .unwrap_or(false);
        let chat = ObserveLayer::new(sink).layer(router.clone());
        let edge = HttpEdge::builder(chat)
            .embeddings(router.clone())
            .catalog(router.clone())
            .auth_arc(auth)
            .config(edge_config)
            .build();
        Ok(Gateway {
            service: ProxyService {
                edge,
                state: Arc::new(ProxyState::default()),
                models: config.model_list.len(),
            },
            router,
            warnings: built.warnings,
            has_master_key: config
                .general_settings
                .master_key
                .as_ref()
                .is_some_and(|k| !k.is_empty()),
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
        let get = req.method() == Method::GET || req.method() == Method::HEAD;
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
                        "db": "not connected",
                        "cache": null,
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
        self.edge.call(req)
    }
}
