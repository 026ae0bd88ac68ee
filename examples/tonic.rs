//! A gRPC service and tollgate's HTTP edge served by one tonic server on one port.
//!
//!     cargo run --example tonic
//!     grpcurl -plaintext localhost:50051 grpc.health.v1.Health/Check
//!     curl localhost:50051/v1/chat/completions -H 'content-type: application/json' \
//!          -d '{"model":"demo","messages":[{"role":"user","content":"hi"}]}'

#![allow(clippy::print_stdout, clippy::print_stderr)]

use tollgate::edge::HttpEdge;
use tollgate::provider::{Mock, MockConfig};
use tollgate::router::{Deployment, Router};
use tonic::service::Routes;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let router = Router::builder()
        .deployment(Deployment::chat(
            "demo",
            Mock::new(MockConfig::new("mock/demo")),
        ))
        .build();
    let edge = HttpEdge::builder(router.clone()).catalog(router).build();

    // The gRPC side: the standard health service.
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>>()
        .await;

    // gRPC paths go to their services; every other path goes to tollgate.
    let routes = Routes::new(health)
        .into_axum_router()
        .fallback_service(edge);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:50051".into());
    println!("listening on http://{addr} (gRPC and HTTP/1.1)");
    tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(Routes::from(routes))
        .serve(addr.parse()?)
        .await?;
    Ok(())
}
