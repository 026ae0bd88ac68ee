//! The `tollgate` binary end to end: spawned as a process on a free port.

mod common;

use common::{Client, MockUpstream, Proxy, Reply, cut_stream_after_first_event, fixture, sse_data};
use http_body_util::BodyExt;
use std::time::Duration;

const MASTER: &str = "sk-master-e2e-0123456789";
const UPSTREAM_KEY: &str = "sk-upstream-e2e-abcdefghij";

fn config(upstream: &MockUpstream) -> String {
    format!(
        r#"
model_list:
  - model_name: demo
    litellm_params:
      model: mock/demo
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o-2024-08-06
      api_base: {base}/v1
      api_key: os.environ/E2E_UPSTREAM_KEY
      temperature: 0.3
    model_info:
      id: gpt-4o-primary
router_settings:
  model_group_alias:
    gpt4: gpt-4o
general_settings:
  master_key: os.environ/E2E_MASTER
"#,
        base = upstream.base()
    )
}

fn auth() -> [(&'static str, &'static str); 1] {
    [("authorization", "Bearer sk-master-e2e-0123456789")]
}

async fn start() -> (MockUpstream, Proxy) {
    let up = MockUpstream::start().await;
    let proxy = Proxy::start(
        &config(&up),
        &[("E2E_UPSTREAM_KEY", UPSTREAM_KEY), ("E2E_MASTER", MASTER)],
    );
    (up, proxy)
}

#[tokio::test]
async fn chat_through_the_proxy_to_an_upstream_with_the_configured_key() {
    let (up, proxy) = start().await;
    let c = Client::new();
    up.push(
        Reply::json(200, fixture("openai/chat_text.resp.json"))
            .header("x-ratelimit-remaining-requests", "42"),
    );
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            r#"{"model":"gpt4","messages":[{"role":"user","content":"hi"}],"metadata":{"tags":["t1"]}}"#,
            &auth(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["model"], "gpt4", "the name the client asked for");
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("I'm unable")
    );
    assert_eq!(a.headers["x-litellm-model-id"], "gpt-4o-primary");
    assert_eq!(
        a.headers["x-litellm-model-api-base"],
        format!("{}/v1", up.base()).as_str()
    );
    assert_eq!(
        a.headers["llm_provider-x-ratelimit-remaining-requests"],
        "42"
    );

    let got = up.last();
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(
        got.version,
        http::Version::HTTP_11,
        "HTTP/1.1 to a plain-HTTP upstream by default"
    );
    assert_eq!(
        got.headers["authorization"],
        format!("Bearer {UPSTREAM_KEY}").as_str(),
        "the upstream gets the configured key, never the client's"
    );
    let body = got.json();
    assert_eq!(body["model"], "gpt-4o-2024-08-06");
    assert_eq!(body["temperature"], 0.3, "deployment params are forwarded");
    assert!(
        body.get("metadata").is_none(),
        "gateway fields stay in the gateway"
    );
}

/// `--upstream-http2` (here through its environment variable): calls reach a
/// plain-HTTP upstream over HTTP/2 (h2c), many at once on one connection,
/// streams included.
#[tokio::test]
async fn upstream_http2_speaks_h2c_and_shares_one_connection() {
    let up = MockUpstream::start().await;
    let proxy = Proxy::start(
        &config(&up),
        &[
            ("E2E_UPSTREAM_KEY", UPSTREAM_KEY),
            ("E2E_MASTER", MASTER),
            ("TOLLGATE_UPSTREAM_HTTP2", "true"),
        ],
    );
    let c = Client::new();
    for _ in 0..9 {
        up.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
    }
    let url = proxy.url("/v1/chat/completions");
    let body = r#"{"model":"gpt4","messages":[{"role":"user","content":"hi"}]}"#;
    let headers = auth();
    // One call opens the connection (calls racing a cold pool may each
    // dial: hyper does not promise one connection then); the next eight, at
    // once, share it — over HTTP/1.1 each would need its own.
    assert_eq!(c.post_json(&url, body, &headers).await.status, 200);
    let calls = (0..8).map(|_| c.post_json(&url, body, &headers));
    for a in futures_util::future::join_all(calls).await {
        assert_eq!(a.status, 200, "{}", a.text());
    }
    up.push(Reply::sse(fixture("openai/chat_stream_text.sse.txt")));
    let s = c
        .post_json(
            &url,
            r#"{"model":"gpt4","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            &auth(),
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.text());
    assert!(s.text().ends_with("data: [DONE]\n\n"), "{}", s.text());
    let got = up.received();
    assert_eq!(got.len(), 10);
    assert!(
        got.iter().all(|r| r.version == http::Version::HTTP_2),
        "every call over HTTP/2"
    );
    assert_eq!(
        up.connections(),
        1,
        "one upstream connection for all ten calls"
    );
}

/// Each stream cut by its client closes its HTTP/1.1 upstream connection.
/// By default the host then gets a spare connection (one more than the
/// requests needed); `--upstream-spare 0` (here its environment variable)
/// keeps none.
#[tokio::test]
async fn cut_streams_leave_a_spare_upstream_connection_unless_switched_off() {
    let fixture = fixture("openai/chat_stream_text.sse.txt");
    let text = String::from_utf8(fixture).unwrap();
    let first_event = format!("{}\n\n", text.split("\n\n").next().unwrap());
    for (keep, expected) in [("5", 4), ("0", 3)] {
        let up = MockUpstream::start().await;
        let proxy = Proxy::start(
            &config(&up),
            &[
                ("E2E_UPSTREAM_KEY", UPSTREAM_KEY),
                ("E2E_MASTER", MASTER),
                ("TOLLGATE_UPSTREAM_SPARE", keep),
            ],
        );
        for _ in 0..3 {
            up.push(Reply::sse_stall(first_event.clone()));
            cut_stream_after_first_event(
                &proxy,
                &format!("Bearer {MASTER}"),
                r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
            )
            .await;
        }
        // Three cut streams took three connections; with spares on, the
        // second one's spare makes a fourth (the third request takes it and
        // another is opened, or connects beside it).
        up.wait_for_connections(expected, Duration::from_secs(10))
            .await;
        assert_eq!(
            up.connections(),
            expected,
            "upstream connections with a {keep} s spare"
        );
        assert_eq!(
            up.received().len(),
            3,
            "the spare carried no request of its own"
        );
    }
}

#[tokio::test]
async fn streaming_through_the_proxy() {
    let (up, proxy) = start().await;
    up.push(Reply::sse_chunked(
        &fixture("openai/chat_stream_text.sse.txt"),
        50,
        Duration::ZERO,
    ));
    let a = Client::new()
        .post_json(
            &proxy.url("/v1/chat/completions"),
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
            &auth(),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "text/event-stream");
    let events = sse_data(&a.text());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let mut text = String::new();
    for e in &events[..events.len() - 1] {
        let v: serde_json::Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["model"], "gpt-4o");
        assert!(v.get("usage").is_none(), "usage only when asked");
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
    }
    assert!(text.ends_with("or a weather app."), "{text}");
}

#[tokio::test]
async fn auth_models_and_health() {
    let (_up, proxy) = start().await;
    let c = Client::new();
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            r#"{"model":"demo","messages":[{"role":"user","content":"x"}]}"#,
            &[],
        )
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["error"]["type"], "authentication_error");
    let a = c
        .post_json(
            &proxy.url("/chat/completions"),
            r#"{"model":"demo","messages":[{"role":"user","content":"x"}]}"#,
            &[("x-api-key", MASTER)],
        )
        .await;
    assert_eq!(a.status, 200);

    let a = c.get(&proxy.url("/v1/models"), &auth()).await;
    let ids: Vec<String> = a.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec!["demo", "gpt-4o", "gpt4"]);

    let a = c.get(&proxy.url("/health/liveliness"), &[]).await;
    assert_eq!(a.status, 200);
    let a = c.get(&proxy.url("/health/readiness"), &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["status"], "healthy");
}

#[tokio::test]
async fn the_master_key_and_upstream_key_never_appear_in_logs() {
    let (up, proxy) = start().await;
    up.push(Reply::json(
        401,
        format!(r#"{{"error":{{"message":"bad key {UPSTREAM_KEY}"}}}}"#),
    ));
    let a = Client::new()
        .post_json(
            &proxy.url("/v1/chat/completions"),
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}"#,
            &auth(),
        )
        .await;
    assert_eq!(a.status, 401);
    assert!(!a.text().contains("abcdefghij"), "{}", a.text());
    // The request's log line is written; the check below is not vacuous.
    let logs = proxy.wait_for_log("AuthenticationError", Duration::from_secs(10));
    assert!(!logs.contains("abcdefghij"), "{logs}");
    assert!(!logs.contains("0123456789"), "{logs}");
}

#[test]
fn bad_config_exits_2_with_the_exact_error() {
    let dir = common::TempDir::new("badcfg");
    let path = dir.0.join("config.yaml");
    std::fs::write(&path, "model_list: []\ngeneral_setings:\n  master_key: x\n").unwrap();
    let err = Proxy::spawn(&["--config", path.to_str().unwrap(), "--port", "0"], &[])
        .err()
        .unwrap();
    assert!(err.contains("exit status: 2"), "{err}");
    assert!(
        err.contains(&format!(
            "tollgate: config error: {}:2:1: unknown key `general_setings` in the top level; did you mean `general_settings`?",
            path.display()
        )),
        "{err}"
    );

    std::fs::write(
        &path,
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n      api_key: os.environ/TOLLGATE_TEST_UNSET_VAR\n",
    )
    .unwrap();
    let err = Proxy::spawn(&["--config", path.to_str().unwrap(), "--port", "0"], &[])
        .err()
        .unwrap();
    assert!(
        err.contains("environment variable `TOLLGATE_TEST_UNSET_VAR` is not set"),
        "{err}"
    );

    let err = Proxy::spawn(&["--config", "/nonexistent/tollgate.yaml"], &[])
        .err()
        .unwrap();
    assert!(
        err.contains("cannot read config file /nonexistent/tollgate.yaml"),
        "{err}"
    );
}

#[test]
fn check_flag_validates_without_serving() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config.yaml"),
            "--check",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("config OK"));
}

#[tokio::test]
async fn model_flag_without_config_and_the_open_warning() {
    let proxy = Proxy::spawn(
        &["--model", "mock/tiny", "--port", "0", "--host", "127.0.0.1"],
        &[],
    )
    .unwrap();
    let c = Client::new();
    for name in ["mock/tiny", "tiny"] {
        let a = c
            .post_json(
                &proxy.url("/v1/chat/completions"),
                &format!(r#"{{"model":"{name}","messages":[{{"role":"user","content":"x"}}]}}"#),
                &[],
            )
            .await;
        assert_eq!(a.status, 200, "{name}: {}", a.text());
    }
    proxy.wait_for_log("NO MASTER KEY", Duration::from_secs(10));
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_stream_finish_and_stops_accepting() {
    let (up, proxy) = start().await;
    // 20 pieces, 100 ms apart: the stream lasts about two seconds.
    let sse = fixture("openai/chat_stream_text.sse.txt");
    let size = sse.len().div_ceil(20);
    up.push(Reply::sse_chunked(&sse, size, Duration::from_millis(100)));

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::post(proxy.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {MASTER}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    // Wait for the first bytes, then ask the proxy to stop.
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(!first.is_empty());
    proxy.signal("TERM");
    let mut all = first.to_vec();
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.unwrap().into_data() {
            all.extend_from_slice(&d);
        }
    }
    let text = String::from_utf8(all).unwrap();
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "the stream finished: {text}"
    );

    // The process exits on its own once drained.
    let mut child = proxy;
    let status = tokio::task::spawn_blocking(move || {
        let s = child.child.wait().unwrap();
        (s, child)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "{status}");
}
