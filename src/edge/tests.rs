use super::*;
use crate::Secret;
use crate::auth::MasterKey;
use crate::provider::{Mock, MockConfig};
use crate::router::Deployment;
use crate::stream::ChatStream;
use crate::types::{ChatChunk, ChunkChoice, Delta};
use http_body_util::{BodyExt, Full, StreamBody};

type TestEdge = HttpEdge<Router, Router>;

fn edge_with(config: EdgeConfig, master: Option<&str>) -> TestEdge {
    let mock = Mock::new(MockConfig::new("mock/demo"));
    let router = Router::builder()
        .deployment(Deployment::chat("demo", mock.clone()).with_embeddings(mock))
        .build();
    let b = HttpEdge::builder(router.clone())
        .embeddings(router.clone())
        .catalog(router)
        .config(config);
    match master {
        Some(k) => b.auth(MasterKey::new(Secret::new(k))).build(),
        None => b.build(),
    }
}

fn edge() -> TestEdge {
    edge_with(EdgeConfig::default(), None)
}

fn post(path: &str, body: &'static str) -> http::Request<Full<Bytes>> {
    http::Request::post(path)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

async fn send<S>(svc: S, req: http::Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes)
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<EdgeBody>, Error = Infallible>,
{
    let resp = svc.oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn error_of(body: &Bytes) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["error"].clone()
}

const HI: &str = r#"{"model":"demo","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn chat_json_with_litellm_headers() {
    let (status, headers, body) = send(edge(), post("/v1/chat/completions", HI)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(headers["x-request-id"], headers["x-litellm-call-id"]);
    assert_eq!(headers["x-litellm-model-id"], "mock/demo");
    assert!(headers.contains_key("x-litellm-overhead-duration-ms"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "demo");
    // Also without the /v1 prefix.
    let (status, _, _) = send(edge(), post("/chat/completions", HI)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn safe_client_request_id_is_echoed() {
    let mut req = post("/v1/chat/completions", HI);
    req.headers_mut()
        .insert("x-request-id", "abc-123".parse().unwrap());
    let (_, headers, _) = send(edge(), req).await;
    assert_eq!(headers["x-request-id"], "abc-123");
    let mut req = post("/v1/chat/completions", HI);
    req.headers_mut()
        .insert("x-request-id", "has space".parse().unwrap());
    let (_, headers, _) = send(edge(), req).await;
    assert_ne!(headers["x-request-id"], "has space");
}

#[tokio::test]
async fn stream_is_sse_ending_with_done_and_hides_usage_unless_asked() {
    let (status, headers, body) = send(
        edge(),
        post(
            "/v1/chat/completions",
            r#"{"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let text = std::str::from_utf8(&body).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("\"usage\""), "{text}");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    for e in &events[..events.len() - 1] {
        let chunk: ChatChunk = serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(chunk.model, "demo");
    }

    let (_, _, body) = send(
        edge(),
        post(
            "/v1/chat/completions",
            r#"{"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
    )
    .await;
    let text = std::str::from_utf8(&body).unwrap();
    let usage_line = text
        .split("\n\n")
        .find(|e| e.contains("\"usage\""))
        .expect("usage chunk");
    let chunk: ChatChunk =
        serde_json::from_str(usage_line.strip_prefix("data: ").unwrap()).unwrap();
    assert!(chunk.choices.is_empty());
    assert!(chunk.usage.unwrap().total_tokens > 0);
}

#[tokio::test]
async fn stream_failing_after_first_byte_ends_with_in_band_error() {
    #[derive(Clone)]
    struct Failing;
    impl Service<ChatRequest> for Failing {
        type Response = ChatResponse;
        type Error = Error;
        type Future = std::future::Ready<Result<ChatResponse, Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: ChatRequest) -> Self::Future {
            let first =
                ChatChunk::new("c", "m", 0).with_choice(ChunkChoice::new(0, Delta::text("par")));
            std::future::ready(Ok(ChatResponse::stream(ChatStream::from_results(vec![
                Ok(first),
                Err(Error::new(ErrorKind::Connection, "upstream reset")),
            ]))))
        }
    }
    let edge = HttpEdge::builder(Failing).build();
    let (status, _, body) = send(
        edge,
        post(
            "/v1/chat/completions",
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
        ),
    )
    .await;
    assert_eq!(status, 200);
    let text = std::str::from_utf8(&body).unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 2, "{text}");
    assert!(events[0].contains("\"par\""));
    let err: serde_json::Value =
        serde_json::from_str(events[1].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(err["error"]["message"], "upstream reset");
    assert_eq!(err["error"]["code"], "502");
    assert!(!text.contains("[DONE]"));
    assert!(!text.contains("\"finish_reason\":\"stop\""));
}

#[tokio::test]
async fn unknown_model_is_404_model_not_found() {
    let (status, _, body) = send(
        edge(),
        post(
            "/v1/chat/completions",
            r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#,
        ),
    )
    .await;
    assert_eq!(status, 404);
    let e = error_of(&body);
    assert_eq!(e["code"], "model_not_found");
    assert_eq!(e["param"], "model");
    assert_eq!(e["type"], "not_found_error");
}

#[tokio::test]
async fn malformed_json_names_the_problem() {
    let (status, _, body) = send(edge(), post("/v1/chat/completions", r#"{"model":"demo","#)).await;
    assert_eq!(status, 400);
    let e = error_of(&body);
    assert_eq!(e["type"], "invalid_request_error");
    assert!(e["message"].as_str().unwrap().contains("EOF"), "{e}");

    let (status, _, body) = send(
        edge(),
        post(
            "/v1/chat/completions",
            r#"{"model":"demo","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
        ),
    )
    .await;
    assert_eq!(status, 400);
    let e = error_of(&body);
    assert_eq!(e["param"], "temperature");
    assert!(
        e["message"].as_str().unwrap().contains("temperature"),
        "{e}"
    );

    let (status, _, body) = send(edge(), post("/v1/chat/completions", r#"{"messages":[]}"#)).await;
    assert_eq!(status, 400);
    assert!(
        error_of(&body)["message"]
            .as_str()
            .unwrap()
            .contains("missing field `model`")
    );

    let (status, _, body) = send(edge(), post("/v1/chat/completions", r#"[1,2]"#)).await;
    assert_eq!(status, 400);
    assert!(
        error_of(&body)["message"]
            .as_str()
            .unwrap()
            .contains("JSON object"),
        "{body:?}"
    );
}

#[tokio::test]
async fn semantic_validation_names_the_field() {
    for (body, param) in [
        (r#"{"model":"demo","messages":[]}"#, "messages"),
        (
            r#"{"model":"","messages":[{"role":"user","content":"x"}]}"#,
            "model",
        ),
        (
            r#"{"model":"demo","messages":[{"role":"user","content":"x"}],"temperature":3}"#,
            "temperature",
        ),
        (
            r#"{"model":"demo","messages":[{"role":"user","content":"x"}],"n":0}"#,
            "n",
        ),
        (
            r#"{"model":"demo","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
            "max_tokens",
        ),
        (
            r#"{"model":"demo","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#,
            "stream_options",
        ),
        (
            r#"{"model":"demo","messages":[{"role":"tool","content":"x"}]}"#,
            "messages",
        ),
        (
            r#"{"model":"demo","messages":[{"role":"wizard","content":"x"}]}"#,
            "messages",
        ),
        (
            r#"{"model":"demo","messages":[{"role":"user","content":"x"}],"api_base":"http://169.254.169.254"}"#,
            "api_base",
        ),
        (
            r#"{"model":"demo","messages":[{"role":"user","content":"x"}],"api_key":"sk-mine"}"#,
            "api_key",
        ),
    ] {
        let (status, _, resp) = send(edge(), post("/v1/chat/completions", body)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error_of(&resp)["param"], param, "{body}");
    }
}

#[tokio::test]
async fn deep_json_is_400_and_service_stays_up() {
    let deep = format!(
        r#"{{"model":"demo","messages":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let req = http::Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from(deep)))
        .unwrap();
    let e = edge();
    let (status, _, body) = send(e.clone(), req).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body)["param"], "messages", "{body:?}");
    // The same depth in a field the gateway does not know is refused too.
    let deep = format!(
        r#"{{"model":"demo","messages":[{{"role":"user","content":"x"}}],"vendor":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let req = http::Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from(deep)))
        .unwrap();
    let (status, _, body) = send(e.clone(), req).await;
    assert_eq!(status, 400);
    assert!(
        error_of(&body)["message"]
            .as_str()
            .unwrap()
            .contains("recursion limit"),
        "{body:?}"
    );
    let (status, _, _) = send(e, post("/v1/chat/completions", HI)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn body_limit_413_before_and_during_read() {
    let config = EdgeConfig {
        max_body_bytes: 64,
        ..EdgeConfig::default()
    };
    // Declared length over the limit: refused without reading.
    let req = http::Request::post("/v1/chat/completions")
        .header("content-length", "1000000")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let (status, _, body) = send(edge_with(config.clone(), None), req).await;
    assert_eq!(status, 413);
    assert_eq!(error_of(&body)["type"], "invalid_request_error");
    // No declared length: refused once the stream passes the limit.
    let chunks: Vec<Result<http_body::Frame<Bytes>, Infallible>> = (0..10)
        .map(|_| Ok(http_body::Frame::data(Bytes::from_static(&[b' '; 20]))))
        .collect();
    let req = http::Request::post("/v1/chat/completions")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let resp = edge_with(config, None).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test(start_paused = true)]
async fn slow_upload_times_out_with_408() {
    let config = EdgeConfig {
        body_timeout: Duration::from_secs(5),
        ..EdgeConfig::default()
    };
    let never = futures_util::stream::pending::<Result<http_body::Frame<Bytes>, Infallible>>();
    let req = http::Request::post("/v1/chat/completions")
        .body(StreamBody::new(never))
        .unwrap();
    let resp = edge_with(config, None).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 408);
}

#[tokio::test]
async fn wrong_content_type_route_and_method() {
    let mut req = post("/v1/chat/completions", HI);
    req.headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    let (status, _, body) = send(edge(), req).await;
    assert_eq!(status, 415);
    assert!(
        error_of(&body)["message"]
            .as_str()
            .unwrap()
            .contains("text/plain")
    );

    let (status, _, _) = send(edge(), post("/v1/nothing", HI)).await;
    assert_eq!(status, 404);

    let req = http::Request::get("/v1/chat/completions")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, _) = send(edge(), req).await;
    assert_eq!(status, 405);
    assert!(headers.contains_key("allow"));
}

#[tokio::test]
async fn master_key_is_required_on_every_route() {
    let e = edge_with(EdgeConfig::default(), Some("sk-master-0123456789"));
    let (status, _, body) = send(e.clone(), post("/v1/chat/completions", HI)).await;
    assert_eq!(status, 401);
    let unauthorized = body.clone();
    let mut req = post("/v1/chat/completions", HI);
    req.headers_mut()
        .insert("authorization", "Bearer sk-wrong".parse().unwrap());
    let (status, _, body) = send(e.clone(), req).await;
    assert_eq!(status, 401);
    assert_eq!(
        body, unauthorized,
        "one constant body for every credential failure"
    );
    let req = http::Request::get("/v1/models")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(e.clone(), req).await.0, 401);
    for header in ["x-api-key", "api-key", "x-litellm-api-key"] {
        let mut req = post("/v1/chat/completions", HI);
        req.headers_mut()
            .insert(header, "sk-master-0123456789".parse().unwrap());
        assert_eq!(send(e.clone(), req).await.0, 200, "{header}");
    }
}

#[tokio::test]
async fn models_list_and_get() {
    let req = http::Request::get("/v1/models")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = send(edge(), req).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "demo");
    assert_eq!(v["data"][0]["object"], "model");
    let req = http::Request::get("/models/demo")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(edge(), req).await.0, 200);
    let req = http::Request::get("/v1/models/nope")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = send(edge(), req).await;
    assert_eq!(status, 404);
    assert_eq!(error_of(&body)["code"], "model_not_found");
}

#[tokio::test]
async fn embeddings_route() {
    let (status, _, body) = send(
        edge(),
        post("/v1/embeddings", r#"{"model":"demo","input":["a","b"]}"#),
    )
    .await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["model"], "demo");
    let (status, _, _) = send(
        edge(),
        post("/v1/embeddings", r#"{"model":"demo","input":[]}"#),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = send(
        edge(),
        post("/v1/embeddings", r#"{"model":"x","input":"a"}"#),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn upstream_errors_keep_status_and_retry_after() {
    let (status, headers, body) = send(
        edge(),
        post(
            "/v1/chat/completions",
            r#"{"model":"demo","messages":[{"role":"user","content":"x"}],"mock_response":"litellm.RateLimitError: slow down"}"#,
        ),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "1");
    let e = error_of(&body);
    assert_eq!(e["type"], "rate_limit_error");
    assert_eq!(e["message"], "slow down");
}

/// Says "dropped" on `ended` if dropped before it was taken.
struct DropSignal(Option<tokio::sync::mpsc::UnboundedSender<&'static str>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(ended) = self.0.take() {
            let _ = ended.send("dropped");
        }
    }
}

#[tokio::test]
async fn an_abandoned_call_runs_to_its_end_unless_configured_not_to() {
    for (finish, expected) in [(true, "finished"), (false, "dropped")] {
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
        let gate = Arc::new(tokio::sync::Notify::new());
        // A chat service that says when its call has started, waits for
        // `gate`, and says whether the call then finished or was dropped.
        let chat = {
            let gate = gate.clone();
            tower::service_fn(move |req: ChatRequest| {
                let (started, gate) = (started_tx.clone(), gate.clone());
                let mut signal = DropSignal(Some(ended_tx.clone()));
                async move {
                    let _ = started.send(());
                    gate.notified().await;
                    let _ = signal.0.take().map(|ended| ended.send("finished"));
                    Ok::<_, Error>(ChatResponse::complete(crate::types::ChatCompletion::new(
                        "id", &req.model, 0,
                    )))
                }
            })
        };
        let mut edge = HttpEdge::builder(chat)
            .config(EdgeConfig {
                finish_abandoned_requests: finish,
                ..EdgeConfig::default()
            })
            .build();
        let exchange = tokio::spawn(edge.call(post("/v1/chat/completions", HI)));
        started.recv().await.expect("the call started");
        // The client goes away: the exchange is dropped mid-call.
        exchange.abort();
        assert!(exchange.await.unwrap_err().is_cancelled());
        gate.notify_one();
        assert_eq!(
            ended.recv().await,
            Some(expected),
            "finish_abandoned_requests: {finish}"
        );
    }
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_and_the_edge_keeps_serving() {
    let chat = tower::service_fn(|req: ChatRequest| async move {
        if req.model == "demo" {
            panic!("a bug in the handler");
        }
        Ok::<_, Error>(ChatResponse::complete(crate::types::ChatCompletion::new(
            "id", &req.model, 0,
        )))
    });
    for finish in [true, false] {
        let edge = HttpEdge::builder(chat)
            .config(EdgeConfig {
                finish_abandoned_requests: finish,
                ..EdgeConfig::default()
            })
            .build();
        let (status, _, body) = send(edge.clone(), post("/v1/chat/completions", HI)).await;
        assert_eq!(status, 500);
        assert_eq!(error_of(&body)["message"], "the request handler panicked");
        let other = r#"{"model":"other","messages":[{"role":"user","content":"hi"}]}"#;
        let (status, _, _) = send(edge, post("/v1/chat/completions", other)).await;
        assert_eq!(status, 200);
    }
}

#[test]
fn overhead_millis_are_written_with_three_decimals_rounded_to_the_microsecond() {
    for (d, want) in [
        (Duration::ZERO, "0.000"),
        (Duration::from_nanos(499), "0.000"),
        (Duration::from_nanos(500), "0.001"),
        (Duration::from_micros(12), "0.012"),
        (Duration::from_micros(1_000), "1.000"),
        (Duration::from_micros(123_456), "123.456"),
        (Duration::from_secs(86_400), "86400000.000"),
    ] {
        assert_eq!(super::millis(d), want, "{d:?}");
    }
    for _ in 0..500 {
        let d = Duration::from_micros(fastrand::u64(..10_000_000_000));
        let want = format!("{:.3}", d.as_micros() as f64 / 1000.0);
        assert_eq!(super::millis(d), want.as_str(), "{d:?}");
    }
}
