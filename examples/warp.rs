//! tollgate's HTTP edge mounted in a warp filter chain.
//!
//!     cargo run --example warp
//!     curl localhost:3030/hello
//!     curl -N localhost:3030/v1/chat/completions -H 'content-type: application/json' \
//!          -d '{"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":true}'

#![allow(clippy::print_stdout, clippy::print_stderr)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::pin::Pin;
use std::task::{Context, Poll};
use tollgate::edge::HttpEdge;
use tollgate::provider::{Mock, MockConfig};
use tollgate::router::{Deployment, Router};
use tower::ServiceExt;
use warp::{Filter, Reply};

/// warp wants `Sync` body streams; a channel receiver is one.
struct Chunks(tokio::sync::mpsc::Receiver<Bytes>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::convert::Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|b| b.map(Ok))
    }
}

#[tokio::main]
async fn main() {
    let router = Router::builder()
        .deployment(Deployment::chat(
            "demo",
            Mock::new(MockConfig::new("mock/demo")),
        ))
        .build();
    let edge = HttpEdge::builder(router.clone()).catalog(router).build();

    let hello = warp::path("hello").map(|| "hello from warp");

    // Everything else: hand the request to tollgate and stream its answer back.
    let tollgate = warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(
            move |method, path: warp::path::FullPath, headers, body: Bytes| {
                let edge = edge.clone();
                async move {
                    let mut req = http::Request::new(Full::new(body));
                    *req.method_mut() = method;
                    *req.uri_mut() = path.as_str().parse().expect("warp gives a valid path");
                    *req.headers_mut() = headers;
                    let resp = edge.oneshot(req).await.expect("the edge never fails");
                    let (parts, mut body) = resp.into_parts();
                    let (tx, rx) = tokio::sync::mpsc::channel(16);
                    tokio::spawn(async move {
                        while let Some(Ok(frame)) = body.frame().await {
                            if let Ok(data) = frame.into_data()
                                && tx.send(data).await.is_err()
                            {
                                break; // the client went away
                            }
                        }
                    });
                    let mut out = warp::reply::stream(Chunks(rx)).into_response();
                    *out.status_mut() = parts.status;
                    *out.headers_mut() = parts.headers;
                    out
                }
            },
        );

    let addr: std::net::SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3030".into())
        .parse()
        .expect("ADDR is host:port");
    println!("listening on http://{addr}");
    warp::serve(hello.or(tollgate)).run(addr).await;
}
