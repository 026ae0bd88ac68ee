//! Routing and reliability end to end: the proxy binary against
//! fault-injecting upstreams (two deployments of one group, plus fallback
//! groups), asserting attempts, the deployment that served, and what the
//! client got.

mod common;

use bytes::Bytes;
use common::{Answer, Client, MockUpstream, Proxy, Reply, fixture, refused_base, sse_data};
use std::time::{Duration, Instant};

const KEY: &str = "sk-master-reliability-0123";

/// Two upstreams serving group `gpt-4o` (`dep-a` first by `order`, `dep-b`
/// the overflow) and one serving group `claude`.
struct Rig {
    a: MockUpstream,
    b: MockUpstream,
    c: MockUpstream,
    proxy: Proxy,
}

fn deployment(group: &str, id: &str, base: &str, order: u32) -> String {
    format!(
        "  - model_name: {group}
    litellm_params:
      model: openai/{group}-upstream
      api_base: {base}/v1
      api_key: sk-upstream-{id}
      order: {order}
    model_info:
      id: {id}
"
    )
}

/// Starts the rig; `settings` is appended under `router_settings:`.
async fn rig(settings: &str) -> Rig {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let c = MockUpstream::start().await;
    let proxy = start_proxy(&[&a.base(), &b.base(), &c.base()], settings);
    Rig { a, b, c, proxy }
}

fn start_proxy(bases: &[&str; 3], settings: &str) -> Proxy {
    let yaml = format!(
        "model_list:\n{}{}{}router_settings:\n  retry_after: 0.01\n{settings}general_settings:\n  master_key: {KEY}\n",
        deployment("gpt-4o", "dep-a", bases[0], 1),
        deployment("gpt-4o", "dep-b", bases[1], 2),
        deployment("claude", "dep-c", bases[2], 1),
    );
    Proxy::start(&yaml, &[])
}

fn ok_json() -> Reply {
    Reply::json(200, fixture("openai/chat_text.resp.json"))
}

fn ok_sse() -> Reply {
    Reply::sse(fixture("openai/chat_stream_text.sse.txt"))
}

fn error_json(status: u16, message: &str) -> Reply {
    Reply::json(
        status,
        format!(r#"{{"error":{{"message":"{message}","type":"server_error","code":null}}}}"#),
    )
}

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
const STREAM: &str =
    r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

impl Rig {
    async fn chat(&self, body: &str) -> Answer {
        Client::new()
            .post_json(
                &self.proxy.url("/v1/chat/completions"),
                body,
                &[("authorization", &format!("Bearer {KEY}"))],
            )
            .await
    }
}

impl Rig {
    /// Streams a chat request; once the first whole event has arrived, runs
    /// `then`, and reads the rest.
    async fn chat_stream_then(&self, body: &str, then: impl FnOnce()) -> Answer {
        use http_body_util::{BodyExt, Full};
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let req = http::Request::post(self.proxy.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {KEY}"))
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let (parts, mut incoming) = client.request(req).await.unwrap().into_parts();
        let mut got = Vec::new();
        let mut then = Some(then);
        while let Some(frame) = incoming.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data() {
                got.extend_from_slice(&data);
            }
            if got.windows(2).any(|w| w == b"\n\n")
                && let Some(f) = then.take()
            {
                f();
            }
        }
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: got.into(),
        }
    }
}

fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .unwrap_or_else(|| panic!("no `{name}` header: {:?}", a.headers))
        .to_str()
        .unwrap()
}

fn served_by(a: &Answer) -> &str {
    header(a, "x-litellm-model-id")
}

fn retries(a: &Answer) -> &str {
    header(a, "x-litellm-attempted-retries")
}

fn fallbacks(a: &Answer) -> &str {
    header(a, "x-litellm-attempted-fallbacks")
}

/// The error object of an OpenAI-style error body.
fn error_of(a: &Answer) -> serde_json::Value {
    let v = a.json();
    assert!(v["error"]["message"].is_string(), "{v}");
    v["error"].clone()
}

fn stream_events(a: &Answer) -> Vec<String> {
    sse_data(&a.text())
}

/// The first half of the recorded stream: three chunks, no `[DONE]`.
fn half_stream() -> String {
    let text = String::from_utf8(fixture("openai/chat_stream_text.sse.txt")).unwrap();
    let events: Vec<&str> = text.split("\n\n").collect();
    format!("{}\n\n", events[..3].join("\n\n"))
}

/// A streamed answer that started (200, the first chunks) and then ended
/// with an in-band error event naming `message`, without `[DONE]`.
fn assert_in_band_error(a: &Answer, kind: &str, message: &str) {
    assert_eq!(a.status, 200, "{}", a.text());
    let events = stream_events(a);
    assert!(events.len() >= 2, "{events:?}");
    let first: serde_json::Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["model"], "gpt-4o", "{first}");
    let last = events.last().unwrap();
    assert_ne!(last, "[DONE]", "a failed stream must not claim to be done");
    let err: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(err["error"]["type"], kind, "{err}");
    let got = err["error"]["message"].as_str().unwrap();
    assert!(got.contains(message), "`{got}` does not say `{message}`");
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
}

const DEFAULTS: &str = "  num_retries: 2\n  timeout: 2\n  stream_timeout: 0.5\n";
const COOL_AT_ONCE: &str = "  num_retries: 2\n  timeout: 2\n  stream_timeout: 0.5\n  allowed_fails: 0\n  cooldown_time: 30\n";

// ------------------------------------------------------ status faults

#[tokio::test]
async fn a_429_with_retry_after_cools_the_deployment_and_the_retry_goes_to_the_other() {
    let r = rig(DEFAULTS).await;
    r.a.always(error_json(429, "slow down").header("retry-after", "20"));
    r.b.always(ok_json());
    let t = Instant::now();
    let a = r.chat(CHAT).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "dep-b");
    assert_eq!(retries(&a), "1");
    assert_eq!(fallbacks(&a), "0");
    assert_eq!(a.json()["model"], "gpt-4o");
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 1));
    // Another deployment was free: the retry did not wait for the 20 s.
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // The 429 cooled dep-a down: the next request goes straight to dep-b.
    let a = r.chat(CHAT).await;
    assert_eq!(served_by(&a), "dep-b");
    assert_eq!(retries(&a), "0");
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 2));
}

#[tokio::test]
async fn server_errors_are_retried_num_retries_times_then_returned_as_they_are() {
    for (status, code) in [(500u16, "500"), (503, "503")] {
        let r = rig(DEFAULTS).await;
        r.a.always(error_json(status, "the upstream broke"));
        r.b.always(ok_json());
        let a = r.chat(CHAT).await;
        assert_eq!(a.status, status, "{}", a.text());
        let e = error_of(&a);
        assert_eq!(e["message"], "the upstream broke");
        assert_eq!(e["type"], "api_error");
        assert_eq!(e["code"], code);
        assert_eq!(retries(&a), "2", "the error tells how often it was retried");
        // Three attempts (num_retries: 2), all on dep-a: `order` keeps the
        // overflow deployment out while dep-a is under `allowed_fails` (3).
        assert_eq!((r.a.received().len(), r.b.received().len()), (3, 0));
    }
}

#[tokio::test]
async fn a_server_error_past_allowed_fails_moves_the_retry_to_the_other_deployment() {
    let r = rig(COOL_AT_ONCE).await;
    r.a.always(error_json(500, "the upstream broke"));
    r.b.always(ok_json());
    let a = r.chat(CHAT).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "dep-b");
    assert_eq!(retries(&a), "1");
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 1));
}

#[tokio::test]
async fn a_529_overloaded_cools_the_deployment_at_once_like_a_rate_limit() {
    // Default allowed_fails (3): a 5xx would keep dep-a in; an overload does not.
    let r = rig(DEFAULTS).await;
    r.a.always(error_json(529, "Overloaded"));
    r.b.always(ok_json());
    let a = r.chat(CHAT).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "dep-b");
    assert_eq!(retries(&a), "1");
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 1));
    // With nowhere else to go, the client sees the overload as a 503.
    let r = rig(DEFAULTS).await;
    r.a.always(error_json(529, "Overloaded"));
    r.b.always(error_json(529, "Overloaded"));
    let a = r
        .chat(r#"{"model":"gpt-4o","num_retries":0,"messages":[{"role":"user","content":"hi"}]}"#)
        .await;
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(error_of(&a)["code"], "overloaded");
    assert_eq!(r.a.received().len() + r.b.received().len(), 1);
}

#[tokio::test]
async fn bad_requests_and_auth_failures_are_never_retried() {
    let r = rig(DEFAULTS).await;
    r.a.push(Reply::json(
        400,
        r#"{"error":{"message":"Invalid value for 'temperature'","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}"#,
    ));
    r.a.push(Reply::json(
        401,
        r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
    ));
    r.a.always(ok_json());
    r.b.always(ok_json());
    let a = r.chat(CHAT).await;
    assert_eq!(a.status, 400, "{}", a.text());
    let e = error_of(&a);
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["param"], "temperature");
    assert_eq!(retries(&a), "0");
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 0));
    let a = r.chat(CHAT).await;
    assert_eq!(a.status, 401, "{}", a.text());
    assert!(
        error_of(&a)["message"]
            .as_str()
            .unwrap()
            .contains("API key"),
        "{}",
        a.text()
    );
    assert_eq!((r.a.received().len(), r.b.received().len()), (2, 0));
    // The 401 took dep-a out: the next request is served by dep-b.
    let a = r.chat(CHAT).await;
    assert_eq!(served_by(&a), "dep-b");
    assert_eq!((r.a.received().len(), r.b.received().len()), (2, 1));
}

#[tokio::test]
async fn num_retries_and_retry_policy_set_the_attempt_count() {
    let r = rig("  num_retries: 1\n  allowed_fails: 100\n").await;
    r.a.always(error_json(500, "down"));
    let a = r.chat(CHAT).await;
    assert_eq!(a.status, 500);
    assert_eq!(r.a.received().len(), 2, "num_retries: 1 → two attempts");
    assert_eq!(retries(&a), "1");
    // A request's own num_retries wins over the configured one.
    let a = r
        .chat(r#"{"model":"gpt-4o","num_retries":3,"messages":[{"role":"user","content":"hi"}]}"#)
        .await;
    assert_eq!(a.status, 500);
    assert_eq!(r.a.received().len(), 2 + 4);
    assert_eq!(retries(&a), "3");

    let r = rig("  num_retries: 1\n  allowed_fails: 100\n  retry_policy: {InternalServerErrorRetries: 4, RateLimitErrorRetries: 0}\n").await;
    r.a.always(error_json(500, "down"));
    let a = r.chat(CHAT).await;
    assert_eq!(a.status, 500);
    assert_eq!(
        r.a.received().len(),
        5,
        "InternalServerErrorRetries: 4 → five attempts"
    );
    r.b.always(error_json(429, "slow down"));
    r.a.push(error_json(429, "slow down"));
    let before = r.a.received().len() + r.b.received().len();
    let a = r.chat(CHAT).await;
    assert_eq!(a.status, 429, "{}", a.text());
    assert_eq!(
        r.a.received().len() + r.b.received().len() - before,
        1,
        "RateLimitErrorRetries: 0"
    );
}

// ------------------------------------------------------ connection faults

#[tokio::test]
async fn connection_refused_moves_to_the_other_deployment() {
    let dead = refused_base();
    let b = MockUpstream::start().await;
    let c = MockUpstream::start().await;
    b.always(ok_json());
    let proxy = start_proxy(&[&dead, &b.base(), &c.base()], COOL_AT_ONCE);
    let r = Rig {
        a: MockUpstream::start().await,
        b,
        c,
        proxy,
    };
    let a = r.chat(CHAT).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "dep-b");
    assert_eq!(retries(&a), "1");
    assert_eq!(r.b.received().len(), 1);

    // With nothing listening anywhere, the client gets a 502 saying so.
    let dead2 = refused_base();
    let proxy = start_proxy(&[&dead, &dead2, &r.c.base()], DEFAULTS);
    let a = Client::new()
        .post_json(
            &proxy.url("/v1/chat/completions"),
            CHAT,
            &[("authorization", &format!("Bearer {KEY}"))],
        )
        .await;
    assert_eq!(a.status, 502, "{}", a.text());
    let e = error_of(&a);
    assert_eq!(e["message"], "could not connect to the upstream");
    assert_eq!(e["type"], "api_error");
}

#[tokio::test]
async fn a_connection_reset_mid_body_is_retried_on_the_other_deployment() {
    let r = rig(COOL_AT_ONCE).await;
    r.a.always(Reply::reset_mid_body(
        200,
        "application/json",
        &b"{\"id\":\"chatcmpl-1\",\"choices\":["[..],
    ));
    r.b.always(ok_json());
    let a = r.chat(CHAT).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "dep-b");
    assert_eq!(retries(&a), "1");
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 1));

    let r = rig(DEFAULTS).await;
    r.a.always(Reply::reset_mid_body(
        200,
        "application/json",
        &b"{\"id\":"[..],
    ));
    let a = r.chat(CHAT).await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert_eq!(error_of(&a)["message"], "the upstream connection failed");
    assert_eq!(r.a.received().len(), 3);
}

#[tokio::test]
async fn a_response_that_never_starts_times_out_and_the_retry_goes_elsewhere() {
    // Not streamed: the total `timeout` (2 s) bounds the attempt.
    let r = rig(DEFAULTS).await;
    r.a.always(Reply::no_head());
    let t = Instant::now();
    let a = r
        .chat(r#"{"model":"gpt-4o","num_retries":0,"messages":[{"role":"user","content":"hi"}]}"#)
        .await;
    let took = t.elapsed();
    assert_eq!(a.status, 408, "{}", a.text());
    let e = error_of(&a);
    assert_eq!(e["type"], "timeout");
    assert_eq!(e["message"], "the request took longer than its timeout");
    assert_eq!(r.a.received().len(), 1);
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(15),
        "{took:?}"
    );

    // Streamed: `stream_timeout` (0.5 s) fires first; dep-a cools, dep-b answers.
    let r = rig(COOL_AT_ONCE).await;
    r.a.always(Reply::no_head());
    r.b.always(ok_sse());
    let t = Instant::now();
    let a = r.chat(STREAM).await;
    let took = t.elapsed();
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "dep-b");
    assert_eq!(retries(&a), "1");
    assert_eq!(stream_events(&a).last().unwrap(), "[DONE]");
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 1));
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(10),
        "{took:?}"
    );

    // Nowhere to go: the first-byte timeout is the client's answer.
    let r = rig(DEFAULTS).await;
    r.a.always(Reply::no_head());
    let a = r.chat(r#"{"model":"gpt-4o","stream":true,"num_retries":0,"messages":[{"role":"user","content":"hi"}]}"#).await;
    assert_eq!(a.status, 408, "{}", a.text());
    assert_eq!(
        error_of(&a)["message"],
        "the upstream did not start answering in time"
    );
}

// ------------------------------------------------------ stream faults

#[tokio::test]
async fn a_stream_that_goes_silent_mid_way_ends_with_an_idle_timeout_event() {
    let r = rig(DEFAULTS).await;
    r.a.always(Reply::sse_stall(half_stream()));
    r.b.always(ok_sse());
    let t = Instant::now();
    let a = r.chat(STREAM).await;
    let took = t.elapsed();
    assert_in_band_error(&a, "timeout", "went silent");
    assert_eq!(served_by(&a), "dep-a");
    // The first chunk reached the client: no retry, no fallback.
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 0));
    // The idle timeout follows `timeout` (2 s) here.
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(15),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_stream_that_goes_silent_before_its_first_chunk_is_retried() {
    let r = rig(COOL_AT_ONCE).await;
    r.a.always(Reply::sse_stall(""));
    r.b.always(ok_sse());
    let a = r.chat(STREAM).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "dep-b");
    assert_eq!(stream_events(&a).last().unwrap(), "[DONE]");
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 1));
}

#[tokio::test]
async fn a_truncated_stream_ends_with_an_error_event_not_done() {
    let r = rig(DEFAULTS).await;
    r.a.always(Reply::sse(half_stream()));
    r.b.always(ok_sse());
    let a = r.chat(STREAM).await;
    assert_in_band_error(&a, "api_error", "closed the stream before it finished");
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 0));
}

#[tokio::test]
async fn a_connection_reset_mid_stream_after_the_first_chunk_is_an_in_band_error() {
    let r = rig(DEFAULTS).await;
    // The reset comes once the client has the first chunk.
    r.a.always(Reply::reset_when_released(
        200,
        "text/event-stream",
        half_stream(),
    ));
    r.b.always(ok_sse());
    let a = r.chat_stream_then(STREAM, || r.a.release()).await;
    assert_in_band_error(
        &a,
        "api_error",
        "connection broke in the middle of the stream",
    );
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 0));

    // A reset before any chunk is retried like any failure.
    let r = rig(COOL_AT_ONCE).await;
    r.a.always(Reply::reset_mid_body(200, "text/event-stream", ""));
    r.b.always(ok_sse());
    let a = r.chat(STREAM).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "dep-b");
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 1));
}

#[tokio::test]
async fn malformed_sse_is_retried_before_the_first_chunk_and_in_band_after() {
    let r = rig(COOL_AT_ONCE).await;
    r.a.always(Reply::sse("data: {not json\n\n"));
    r.b.always(ok_sse());
    let a = r.chat(STREAM).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "dep-b");
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 1));

    let r = rig(DEFAULTS).await;
    r.a.always(Reply::sse(format!("{}data: {{not json\n\n", half_stream())));
    r.b.always(ok_sse());
    let a = r.chat(STREAM).await;
    assert_in_band_error(&a, "api_error", "stream chunk is not valid");
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 0));

    // Only malformed SSE anywhere: a 502 that says what was wrong.
    let r = rig(DEFAULTS).await;
    r.a.always(Reply::sse("data: {not json\n\n"));
    let a = r.chat(r#"{"model":"gpt-4o","stream":true,"num_retries":0,"messages":[{"role":"user","content":"hi"}]}"#).await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert!(
        error_of(&a)["message"]
            .as_str()
            .unwrap()
            .contains("stream chunk is not valid"),
        "{}",
        a.text()
    );
}

// ------------------------------------------------------ cooldowns

#[tokio::test]
async fn a_deployment_failing_allowed_fails_times_is_skipped_for_cooldown_time_then_used_again() {
    let r = rig("  num_retries: 2\n  allowed_fails: 1\n  cooldown_time: 1\n").await;
    r.a.push(error_json(500, "down"));
    r.a.push(error_json(500, "down"));
    r.a.always(ok_json());
    r.b.always(ok_json());
    let cooled_at = Instant::now();
    let a = r.chat(CHAT).await;
    // dep-a: fail 1 (allowed), fail 2 (cooled down); the third attempt is dep-b's.
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "dep-b");
    assert_eq!(retries(&a), "2");
    assert_eq!((r.a.received().len(), r.b.received().len()), (2, 1));
    // While cooling down, dep-a is skipped; then it serves again.
    let mut skipped = 0;
    loop {
        let a = r.chat(CHAT).await;
        assert_eq!(a.status, 200, "{}", a.text());
        if served_by(&a) == "dep-a" {
            break;
        }
        skipped += 1;
        assert!(
            cooled_at.elapsed() < Duration::from_secs(20),
            "dep-a never came back"
        );
        // Paced by the proxy's answers, not by a timer.
    }
    let back = cooled_at.elapsed();
    assert!(skipped >= 1, "dep-a was not skipped at all");
    assert!(
        back >= Duration::from_millis(900),
        "dep-a came back after {back:?}, before its cooldown"
    );
    assert_eq!(r.a.received().len(), 3);
}

#[tokio::test]
async fn when_every_deployment_cools_down_the_client_gets_429_naming_the_last_upstream_error() {
    let r = rig(COOL_AT_ONCE).await;
    r.a.always(error_json(503, "dep-a is down for maintenance"));
    r.b.always(error_json(503, "dep-b is down for maintenance"));
    let a = r.chat(CHAT).await;
    assert_eq!(a.status, 429, "{}", a.text());
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 1));
    let after: u64 = header(&a, "retry-after").parse().unwrap();
    assert!((1..=30).contains(&after), "retry-after {after}");
    let e = error_of(&a);
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("dep-b is down for maintenance"),
        "{message}"
    );
    // Later requests do not reach the upstreams at all.
    let t = Instant::now();
    let a = r.chat(CHAT).await;
    assert_eq!(a.status, 429, "{}", a.text());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "held for the cooldown: {:?}",
        t.elapsed()
    );
    assert_eq!((r.a.received().len(), r.b.received().len()), (1, 1));
}

// ------------------------------------------------------ fallbacks

fn claude_json() -> Reply {
    Reply::json(200, fixture("openai/chat_text.resp.json"))
}

#[tokio::test]
async fn fallbacks_run_after_the_retries_and_keep_the_requested_model_name() {
    let r =
        rig("  num_retries: 1\n  allowed_fails: 100\n  fallbacks: [{gpt-4o: [claude]}]\n").await;
    r.a.always(error_json(500, "down"));
    r.c.push(claude_json());
    r.c.push(ok_sse());
    let a = r.chat(CHAT).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "dep-c");
    assert_eq!(fallbacks(&a), "1");
    assert_eq!(retries(&a), "2", "two attempts on gpt-4o, then claude");
    assert_eq!(a.json()["model"], "gpt-4o", "the name the client asked for");
    assert_eq!(r.a.received().len(), 2);
    assert_eq!(r.c.last().json()["model"], "claude-upstream");

    // Streams fall back before their first chunk, renamed too.
    let a = r.chat(STREAM).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "dep-c");
    assert_eq!(fallbacks(&a), "1");
    let events = stream_events(&a);
    assert_eq!(events.last().unwrap(), "[DONE]");
    for e in &events[..events.len() - 1] {
        let v: serde_json::Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["model"], "gpt-4o", "{v}");
    }
}

#[tokio::test]
async fn context_window_and_content_policy_errors_use_their_own_fallback_lists() {
    let r = rig("  context_window_fallbacks: [{gpt-4o: [claude]}]\n  content_policy_fallbacks: [{gpt-4o: [claude]}]\n").await;
    r.a.push(Reply::json(
        400,
        r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
    ));
    r.a.push(Reply::json(
        400,
        r#"{"error":{"message":"Your request was rejected by the safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#,
    ));
    r.c.always(claude_json());
    for _ in 0..2 {
        let a = r.chat(CHAT).await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(served_by(&a), "dep-c");
        assert_eq!(fallbacks(&a), "1");
        assert_eq!(a.json()["model"], "gpt-4o");
    }
    // Neither is retried on gpt-4o.
    assert_eq!(
        (
            r.a.received().len(),
            r.b.received().len(),
            r.c.received().len()
        ),
        (2, 0, 2)
    );

    // A plain 500 is not a context-window error: no list applies.
    r.a.always(error_json(500, "down"));
    let a = r
        .chat(r#"{"model":"gpt-4o","num_retries":0,"messages":[{"role":"user","content":"hi"}]}"#)
        .await;
    assert_eq!(a.status, 500, "{}", a.text());
    assert_eq!(r.c.received().len(), 2);
}

#[tokio::test]
async fn a_requests_own_fallbacks_are_used() {
    let r = rig(DEFAULTS).await;
    r.a.always(error_json(500, "down"));
    r.b.always(error_json(500, "down"));
    r.c.always(claude_json());
    let a = r
        .chat(r#"{"model":"gpt-4o","num_retries":0,"fallbacks":["claude"],"messages":[{"role":"user","content":"hi"}]}"#)
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "dep-c");
    assert_eq!(fallbacks(&a), "1");
    assert_eq!(a.json()["model"], "gpt-4o");
    assert!(
        r.c.last().json().get("fallbacks").is_none(),
        "not forwarded upstream"
    );
    // Every group fails: the message names the groups tried.
    r.c.always(error_json(500, "claude down too"));
    let a = r
        .chat(r#"{"model":"gpt-4o","num_retries":0,"fallbacks":["claude"],"messages":[{"role":"user","content":"hi"}]}"#)
        .await;
    assert_eq!(a.status, 500, "{}", a.text());
    let message = error_of(&a)["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("claude down too") && message.contains("claude"),
        "{message}"
    );
}
