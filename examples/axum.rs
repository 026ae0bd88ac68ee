//! tollgate's HTTP edge mounted in an existing axum app, next to its own routes.
//!
//!     cargo run --example axum
//!     curl localhost:3000/hello
//!     curl localhost:3000/v1/chat/completions -H 'content-type: application/json' \
//!          -d '{"model":"demo","messages":[{"role":"user","content":"hi"}]}'

#![allow(clippy::print_stdout, clippy::print_stderr)]

use axum::routing::get;
use tollgate::edge::HttpEdge;
use tollgate::provider::{Mock, MockConfig};
use tollgate::router::{Deployment, Router};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mock = Mock::new(MockConfig::new("mock/demo"));
    let router = Router::builder()
        .deployment(Deployment::chat("demo", mock.clone()).with_embeddings(mock))
        .build();
    let edge = HttpEdge::builder(router.clone())
        .embeddings(router.clone())
        .catalog(router)
        .build();

    // The app's own routes first; everything else goes to tollgate
    // (/v1/chat/completions, /v1/embeddings, /v1/models, with or without /v1).
    let app = axum::Router::new()
        .route("/hello", get(|| async { "hello from the app" }))
        .fallback_service(edge);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
