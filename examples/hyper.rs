//! tollgate's HTTP edge on a bare hyper server.
//!
//!     cargo run --example hyper
//!     curl localhost:3000/v1/models

#![allow(clippy::print_stdout, clippy::print_stderr)]

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tollgate::edge::HttpEdge;
use tollgate::provider::{Mock, MockConfig};
use tollgate::router::{Deployment, Router};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let router = Router::builder()
        .deployment(Deployment::chat(
            "demo",
            Mock::new(MockConfig::new("mock/demo")),
        ))
        .build();
    let edge = HttpEdge::builder(router.clone()).catalog(router).build();

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let service = TowerToHyperService::new(edge.clone());
        tokio::spawn(async move {
            let conn = auto::Builder::new(TokioExecutor::new());
            if let Err(e) = conn.serve_connection(TokioIo::new(stream), service).await {
                eprintln!("connection error: {e}");
            }
        });
    }
}
