//! The OpenAI leaf against a local server replaying recorded OpenAI traffic.

mod common;

use common::{MockUpstream, Reply, fixture};
use std::time::Duration;
use tollgate::error::{LimitSource, TimeoutKind};
use tollgate::provider::{LeafTimeouts, OpenAi, OpenAiConfig};
use tollgate::types::{EmbeddingVector, FinishReason};
use tollgate::{ChatRequest, EmbeddingRequest, ErrorKind, Secret};
use tower::ServiceExt;

const KEY: &str = "sk-upstream-secret-0123456789";

fn leaf(up: &MockUpstream) -> OpenAi {
    leaf_with(up, LeafTimeouts::default())
}

fn leaf_with(up: &MockUpstream, timeouts: LeafTimeouts) -> OpenAi {
    let mut cfg = OpenAiConfig::new("gpt-4o-2024-08-06")
        .api_base(format!("{}/v1", up.base()))
        .api_key(Secret::new(KEY));
    cfg.organization = Some("org-test".into());
    cfg.timeouts = timeouts;
    OpenAi::new(cfg).unwrap()
}

fn chat(json: &str) -> ChatRequest {
    ChatRequest::from_json(json.as_bytes()).unwrap()
}

const HI: &str = r#"{"model":"my-alias","messages":[{"role":"user","content":"What's the weather like in SF?"}]}"#;
const HI_STREAM: &str = r#"{"model":"my-alias","messages":[{"role":"user","content":"What's the weather like in SF?"}],"stream":true}"#;

#[tokio::test]
async fn text_completion_and_what_upstream_received() {
    let up = MockUpstream::start().await;
    up.push(
        Reply::json(200, fixture("openai/chat_text.resp.json"))
            .header("x-ratelimit-remaining-requests", "9999")
            .header("x-request-id", "req_abc"),
    );
    let resp = leaf(&up).oneshot(chat(HI)).await.unwrap();
    let c = resp.completion().unwrap();
    assert_eq!(
        c.text(),
        Some(
            "I'm unable to provide real-time weather updates. To get the current weather in San Francisco, I recommend checking a reliable weather website or app like the Weather Channel or a local news station."
        )
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(c.usage.as_ref().unwrap().total_tokens, 51);
    assert_eq!(
        resp.meta.upstream_headers["x-ratelimit-remaining-requests"],
        "9999"
    );
    assert_eq!(resp.meta.attempts, 1);

    let got = up.last();
    assert_eq!(got.method, http::Method::POST);
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(
        got.headers["authorization"],
        format!("Bearer {KEY}").as_str()
    );
    assert_eq!(got.headers["openai-organization"], "org-test");
    assert_eq!(got.headers["content-type"], "application/json");
    let body = got.json();
    assert_eq!(
        body["model"], "gpt-4o-2024-08-06",
        "model is the deployment's"
    );
    assert_eq!(
        body["messages"][0]["content"],
        "What's the weather like in SF?"
    );
    assert!(body.get("stream_options").is_none());
}

#[tokio::test]
async fn stream_with_usage_split_into_small_reads() {
    let up = MockUpstream::start().await;
    up.push(Reply::sse_chunked(
        &fixture("openai/chat_stream_text.sse.txt"),
        7,
        Duration::ZERO,
    ));
    let resp = leaf(&up).oneshot(chat(HI_STREAM)).await.unwrap();
    let body = up.last().json();
    assert_eq!(body["stream"], true);
    assert_eq!(
        body["stream_options"]["include_usage"], true,
        "always asks for usage"
    );
    let c = resp
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    assert_eq!(
        c.text(),
        Some(
            "I'm unable to provide real-time weather updates. To get the current weather in San Francisco, I recommend checking a reliable weather website or a weather app."
        )
    );
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (14, 30, 44)
    );
}

#[tokio::test]
async fn tool_calls_single_parallel_and_streamed() {
    let up = MockUpstream::start().await;
    let l = leaf(&up);

    up.push(Reply::json(200, fixture("openai/chat_tool_call.resp.json")));
    let c = l
        .clone()
        .oneshot(chat(HI))
        .await
        .unwrap()
        .into_completion()
        .unwrap();
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(c.choices[0].message.content, None);
    let calls = c.choices[0].message.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, "call_Y6qJ7ofLgOrBnMD5WbVAeiRV");
    assert_eq!(calls[0].function.name, "GetWeatherArgs");
    assert_eq!(
        calls[0].function.arguments,
        r#"{"city":"Edinburgh","country":"UK","units":"c"}"#
    );

    up.push(Reply::json(
        200,
        fixture("openai/chat_parallel_tool_calls.resp.json"),
    ));
    let c = l
        .clone()
        .oneshot(chat(HI))
        .await
        .unwrap()
        .into_completion()
        .unwrap();
    let calls = c.choices[0].message.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].id, "call_h1DWI1POMJLb0KwIyQHWXD4p");
    assert_eq!(calls[1].function.name, "get_stock_price");

    up.push(Reply::sse_chunked(
        &fixture("openai/chat_stream_tool_call.sse.txt"),
        13,
        Duration::ZERO,
    ));
    let c = l
        .clone()
        .oneshot(chat(HI_STREAM))
        .await
        .unwrap()
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    let calls = c.choices[0].message.tool_calls.as_ref().unwrap();
    assert_eq!(calls[0].id, "call_CTf1nWJLqSeRgDqaCG27xZ74");
    assert_eq!(calls[0].function.name, "get_weather");
    assert_eq!(
        calls[0].function.arguments,
        r#"{"city":"San Francisco","state":"CA"}"#
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));

    up.push(Reply::sse(fixture(
        "openai/chat_stream_parallel_tool_calls.sse.txt",
    )));
    let c = l
        .oneshot(chat(HI_STREAM))
        .await
        .unwrap()
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    let calls = c.choices[0].message.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].id, "call_JMW1whyEaYG438VE1OIflxA2");
    assert_eq!(
        calls[0].function.arguments,
        r#"{"city": "Edinburgh", "country": "GB", "units": "c"}"#
    );
    assert_eq!(calls[1].id, "call_DNYTawLBoN8fj3KN6qU9N1Ou");
    assert_eq!(
        calls[1].function.arguments,
        r#"{"ticker": "AAPL", "exchange": "NASDAQ"}"#
    );
}

#[tokio::test]
async fn n3_refusal_length_and_json_schema() {
    let up = MockUpstream::start().await;
    let l = leaf(&up);

    up.push(Reply::json(200, fixture("openai/chat_n3.resp.json")));
    let c = l
        .clone()
        .oneshot(chat(HI))
        .await
        .unwrap()
        .into_completion()
        .unwrap();
    assert_eq!(c.choices.len(), 3);
    assert_eq!(c.choices[2].index, 2);
    assert_eq!(
        c.choices[2].message.content.as_deref(),
        Some(r#"{"city":"San Francisco","temperature":63.0,"units":"f"}"#)
    );

    up.push(Reply::sse(fixture("openai/chat_stream_n3.sse.txt")));
    let c = l
        .clone()
        .oneshot(chat(HI_STREAM))
        .await
        .unwrap()
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    let texts: Vec<_> = c
        .choices
        .iter()
        .map(|ch| ch.message.content.clone().unwrap())
        .collect();
    assert_eq!(
        texts,
        vec![
            r#"{"city":"San Francisco","temperature":65,"units":"f"}"#,
            r#"{"city":"San Francisco","temperature":61,"units":"f"}"#,
            r#"{"city":"San Francisco","temperature":59,"units":"f"}"#,
        ]
    );

    up.push(Reply::json(200, fixture("openai/chat_refusal.resp.json")));
    let c = l
        .clone()
        .oneshot(chat(HI))
        .await
        .unwrap()
        .into_completion()
        .unwrap();
    assert_eq!(c.choices[0].message.content, None);
    assert_eq!(
        c.choices[0].message.refusal.as_deref(),
        Some("I'm very sorry, but I can't assist with that.")
    );

    up.push(Reply::sse(fixture("openai/chat_stream_refusal.sse.txt")));
    let c = l
        .clone()
        .oneshot(chat(HI_STREAM))
        .await
        .unwrap()
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    assert_eq!(
        c.choices[0].message.refusal.as_deref(),
        Some("I'm sorry, I can't assist with that request.")
    );

    up.push(Reply::json(200, fixture("openai/chat_length.resp.json")));
    let c = l
        .clone()
        .oneshot(chat(HI))
        .await
        .unwrap()
        .into_completion()
        .unwrap();
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Length));

    up.push(Reply::sse(fixture("openai/chat_stream_length.sse.txt")));
    let c = l
        .clone()
        .oneshot(chat(HI_STREAM))
        .await
        .unwrap()
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Length));
    assert_eq!(c.usage.unwrap().completion_tokens, 1);

    up.push(Reply::json(
        200,
        fixture("openai/chat_json_schema.resp.json"),
    ));
    let req = chat(
        r#"{"model":"m","messages":[{"role":"user","content":"weather"}],
            "response_format":{"type":"json_schema","json_schema":{"name":"Weather","strict":true,
              "schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}}}}"#,
    );
    let c = l.oneshot(req).await.unwrap().into_completion().unwrap();
    let v: serde_json::Value = serde_json::from_str(c.text().unwrap()).unwrap();
    assert_eq!(v["city"], "San Francisco");
    let sent = up.last().json();
    assert_eq!(sent["response_format"]["json_schema"]["name"], "Weather");
    assert_eq!(sent["response_format"]["json_schema"]["strict"], true);
}

#[tokio::test]
async fn every_error_fixture_maps_to_its_kind_and_status() {
    let up = MockUpstream::start().await;
    let l = leaf(&up);
    let cases: &[(&str, u16, ErrorKind)] = &[
        (
            "openai/error_400_context_length_exceeded.json",
            400,
            ErrorKind::ContextWindowExceeded,
        ),
        (
            "openai/error_400_param_not_supported.resp.json",
            400,
            ErrorKind::BadRequest,
        ),
        (
            "openai/error_400_unsupported_value.resp.json",
            400,
            ErrorKind::BadRequest,
        ),
        (
            "openai/error_401_invalid_api_key.json",
            401,
            ErrorKind::Authentication,
        ),
        (
            "openai/error_404_model_not_found.resp.json",
            404,
            ErrorKind::NotFound,
        ),
        (
            "openai/error_429_rate_limit_tokens.json",
            429,
            ErrorKind::RateLimited(LimitSource::Upstream),
        ),
        (
            "openai_compatible/groq_error_400_tool_use_failed.resp.json",
            400,
            ErrorKind::BadRequest,
        ),
        (
            "openai_compatible/groq_error_404_model.resp.json",
            404,
            ErrorKind::NotFound,
        ),
        (
            "openai_compatible/openrouter_error_429.resp.json",
            429,
            ErrorKind::RateLimited(LimitSource::Upstream),
        ),
    ];
    for (file, status, kind) in cases {
        let mut reply = Reply::json(*status, fixture(file));
        if *status == 429 {
            reply = reply.header("retry-after", "3");
        }
        up.push(reply);
        let err = l.clone().oneshot(chat(HI)).await.unwrap_err();
        assert_eq!(err.kind(), *kind, "{file}: {err:?}");
        assert_eq!(err.status().as_u16(), *status, "{file}");
        assert_eq!(err.provider(), Some("openai"), "{file}");
        assert!(!err.message().is_empty(), "{file}");
        if *status == 429 {
            assert_eq!(err.retry_after(), Some(Duration::from_secs(3)), "{file}");
            assert!(err.is_retryable());
        } else {
            assert!(!err.is_retryable(), "{file}");
        }
    }
    // The embeddings error fixture too.
    up.push(Reply::json(
        404,
        fixture("openai/embeddings_error_404.resp.json"),
    ));
    let err = l
        .oneshot(EmbeddingRequest::from_json(br#"{"model":"x","input":"a"}"#).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn server_errors_are_retryable_and_keep_their_status() {
    let up = MockUpstream::start().await;
    for (status, kind) in [
        (500, ErrorKind::Upstream(500)),
        (502, ErrorKind::Upstream(502)),
        (503, ErrorKind::ServiceUnavailable),
        (529, ErrorKind::ServiceUnavailable),
    ] {
        up.push(Reply::json(
            status,
            r#"{"error":{"message":"boom","type":"server_error"}}"#,
        ));
        let err = leaf(&up).oneshot(chat(HI)).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{status}");
        assert!(err.is_retryable(), "{status}");
    }
}

#[tokio::test]
async fn the_provider_key_never_appears_in_errors() {
    let up = MockUpstream::start().await;
    up.push(Reply::json(
        401,
        format!(r#"{{"error":{{"message":"Incorrect API key provided: {KEY}. Try again.","type":"invalid_request_error","code":"invalid_api_key"}}}}"#),
    ));
    let err = leaf(&up).oneshot(chat(HI)).await.unwrap_err();
    let shown = format!("{err} {err:?} {}", String::from_utf8_lossy(&err.to_json()));
    assert!(!shown.contains("0123456789"), "{shown}");
    assert!(!shown.contains(KEY), "{shown}");
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let up = MockUpstream::start().await;
    up.push(Reply::json(
        200,
        fixture("openai/embeddings_base64.resp.json"),
    ));
    let req = EmbeddingRequest::from_json(&fixture("openai/embeddings_base64.req.json")).unwrap();
    let resp = leaf(&up).oneshot(req).await.unwrap();
    assert!(matches!(resp.data[0].embedding, EmbeddingVector::Base64(_)));
    let floats = resp.data[0].embedding.to_floats().unwrap();
    assert!(floats.len() >= 256, "{}", floats.len());
    let sent = up.last();
    assert_eq!(sent.path, "/v1/embeddings");
    assert_eq!(sent.json()["encoding_format"], "base64");
    assert_eq!(sent.json()["model"], "gpt-4o-2024-08-06");
}

#[tokio::test]
async fn connection_refused_is_a_connection_error() {
    // Bind then drop a listener: nothing listens on that port afterwards.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cfg = OpenAiConfig::new("m").api_base(format!("http://{addr}/v1"));
    let err = OpenAi::new(cfg)
        .unwrap()
        .oneshot(chat(HI))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert_eq!(err.status().as_u16(), 502);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn silent_upstream_times_out() {
    let up = MockUpstream::start().await;
    let mut reply = Reply::json(200, "");
    reply.pieces.clear();
    reply.hang = true;
    up.push(reply);
    let t = LeafTimeouts {
        request: Duration::from_millis(300),
        first_byte: Duration::from_millis(300),
        idle: Duration::from_millis(300),
    };
    let err = leaf_with(&up, t).oneshot(chat(HI)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout(TimeoutKind::Total));
    assert_eq!(err.status().as_u16(), 408);
}

#[tokio::test]
async fn stream_that_goes_silent_ends_with_idle_timeout_after_its_chunks() {
    let up = MockUpstream::start().await;
    let text = fixture("openai/chat_stream_text.sse.txt");
    let mut reply = Reply::sse(text[..text.len() / 2].to_vec());
    reply.hang = true;
    up.push(reply);
    let t = LeafTimeouts {
        idle: Duration::from_millis(300),
        ..LeafTimeouts::default()
    };
    let mut s = leaf_with(&up, t)
        .oneshot(chat(HI_STREAM))
        .await
        .unwrap()
        .into_stream()
        .unwrap();
    use futures_util::StreamExt;
    let mut chunks = 0;
    let err = loop {
        match s.next().await.expect("the stream ends with an error") {
            Ok(_) => chunks += 1,
            Err(e) => break e,
        }
    };
    assert!(chunks > 3, "{chunks}");
    assert_eq!(err.kind(), ErrorKind::Timeout(TimeoutKind::Idle));
    assert!(s.next().await.is_none());
}

#[tokio::test]
async fn truncated_and_malformed_streams_are_errors_not_fake_stops() {
    let up = MockUpstream::start().await;
    let text = fixture("openai/chat_stream_text.sse.txt");
    up.push(Reply::sse(text[..text.len() / 2].to_vec()));
    let s = leaf(&up)
        .oneshot(chat(HI_STREAM))
        .await
        .unwrap()
        .into_stream()
        .unwrap();
    let err = s.collect_completion().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);

    up.push(Reply::sse("data: {not json}\n\n"));
    let s = leaf(&up)
        .oneshot(chat(HI_STREAM))
        .await
        .unwrap()
        .into_stream()
        .unwrap();
    let err = s.collect_completion().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadGateway);
}

#[tokio::test]
async fn in_band_stream_errors_surface_as_errors() {
    let up = MockUpstream::start().await;
    up.push(Reply::sse(fixture(
        "openai_compatible/openrouter_stream_error_in_band.sse.txt",
    )));
    let s = leaf(&up)
        .oneshot(chat(HI_STREAM))
        .await
        .unwrap()
        .into_stream()
        .unwrap();
    assert!(s.collect_completion().await.is_err());
}
