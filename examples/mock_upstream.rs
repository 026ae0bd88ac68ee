//! A fast OpenAI-compatible upstream for load benchmarks: answers
//! `POST /v1/chat/completions` with a fixed completion (or a stream of
//! `CHUNKS` chunks when the request says `"stream": true`) after `DELAY_MS`.
//!
//!     ADDR=127.0.0.1:9100 DELAY_MS=0 CHUNKS=20 cargo run --release --example mock_upstream
//!
//! It speaks HTTP/1.1 and HTTP/2 (h2c); `MAX_STREAMS` bounds the concurrent
//! HTTP/2 streams of one connection (default 20,000).
//!
//! It is what the proxy benchmarks in BENCHMARKS.md call, directly and
//! through tollgate (or LiteLLM), so the difference is the gateway.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::time::Duration;

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1727346142,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21},"system_fingerprint":"fp_bench"}"#;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn chunk(i: usize, n: usize) -> String {
    if i == n {
        return r#"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1727346142,"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":20,"total_tokens":32}}

data: [DONE]

"#
        .to_owned();
    }
    let finish = if i + 1 == n { r#""stop""# } else { "null" };
    let delta = if i == 0 {
        r#"{"role":"assistant","content":"tok "}"#
    } else {
        r#"{"content":"tok "}"#
    };
    format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1727346142,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
    )
}

async fn handle(
    req: Request<Incoming>,
    delay: Duration,
    chunks: usize,
    gap: Duration,
) -> Result<Response<Body>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let stream = asks_for_stream(&body);
    let resp = if stream {
        let frames = futures_util::stream::unfold(0usize, move |i| async move {
            if i > chunks {
                return None;
            }
            if i > 0 && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from(chunk(i, chunks)))),
                i + 1,
            ))
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(StreamBody::new(frames).boxed())
    } else {
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(COMPLETION.as_bytes())).boxed())
    };
    Ok(resp.unwrap_or_else(|_| {
        let mut r = Response::new(Full::new(Bytes::new()).boxed());
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    }))
}

/// Whether the JSON body asks for a stream (a byte search: no JSON parse,
/// so the mock costs as little as possible).
fn asks_for_stream(body: &[u8]) -> bool {
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    has(b"\"stream\":true") || has(b"\"stream\": true")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> std::io::Result<()> {
    let threads = env_u64("THREADS", 1) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async {
        let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:9100".into());
        let delay = Duration::from_millis(env_u64("DELAY_MS", 0));
        let chunks = env_u64("CHUNKS", 20) as usize;
        let gap = Duration::from_millis(env_u64("CHUNK_GAP_MS", 0));
        let max_streams = u32::try_from(env_u64("MAX_STREAMS", 20_000)).unwrap_or(u32::MAX);
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("mock upstream on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(req, delay, chunks, gap));
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http2().max_concurrent_streams(max_streams);
                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    })
}
