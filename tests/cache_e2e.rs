//! The response cache through the `tollgate` binary: LiteLLM's config keys,
//! hits that never reach the upstream, SSE replay, the admin routes, two
//! proxies sharing Redis, and a Redis outage that changes nothing but speed.

mod common;

use common::{Answer, Client, MockUpstream, Proxy, Reply, fixture, sse_data};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const MASTER: &str = "sk-master-cache-0123456789";

fn auth() -> [(&'static str, &'static str); 1] {
    [("authorization", "Bearer sk-master-cache-0123456789")]
}

fn config(up: &MockUpstream, cache_params: &str) -> String {
    format!(
        r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o-2024-08-06
      api_base: {base}/v1
      api_key: sk-upstream-cache-abcdefghij
  - model_name: embed
    litellm_params:
      model: openai/text-embedding-3-small
      api_base: {base}/v1
      api_key: sk-upstream-cache-abcdefghij
litellm_settings:
  cache: true
  cache_params:
{cache_params}
general_settings:
  master_key: {MASTER}
"#,
        base = up.base()
    )
}

fn chat_paths(up: &MockUpstream) -> usize {
    up.received()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .count()
}

async fn chat(proxy: &Proxy, body: &Value) -> Answer {
    let a = Client::new()
        .post_json(
            &proxy.url("/v1/chat/completions"),
            &body.to_string(),
            &auth(),
        )
        .await;
    assert_eq!(a.status, 200, "{}\n{}", a.text(), proxy.logs());
    a
}

fn hello() -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "What's the weather like in SF?"}]})
}

#[tokio::test]
async fn local_cache_serves_hits_and_the_admin_routes_manage_it() {
    let up = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let proxy = Proxy::start(&config(&up, "    type: local\n    ttl: 600"), &[]);
    let c = Client::new();

    let first = chat(&proxy, &hello()).await;
    assert!(first.headers.get("x-litellm-cache-key").is_none());
    let second = chat(&proxy, &hello()).await;
    assert_eq!(
        chat_paths(&up),
        1,
        "the second request never reached the upstream"
    );
    let key = second.headers["x-litellm-cache-key"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(key.len(), 64);
    assert_eq!(second.json(), first.json());
    assert_eq!(second.headers["x-litellm-response-cost"], "0");

    // Per-request control: no-cache goes upstream.
    let mut fresh = hello();
    fresh["cache"] = json!({"no-cache": true});
    chat(&proxy, &fresh).await;
    assert_eq!(chat_paths(&up), 2);

    // Admin routes: master key only.
    let ping = c.get(&proxy.url("/cache/ping"), &auth()).await;
    assert_eq!(ping.status, 200, "{}", ping.text());
    assert_eq!(ping.json()["status"], "healthy");
    assert_eq!(ping.json()["cache_type"], "local");
    let denied = c
        .get(
            &proxy.url("/cache/ping"),
            &[("authorization", "Bearer sk-not-the-master-key")],
        )
        .await;
    assert_eq!(denied.status, 401);
    let bad = c
        .post_json(&proxy.url("/cache/delete"), r#"{"keys":["nope"]}"#, &auth())
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.json()["error"]["param"], "keys");

    let deleted = c
        .post_json(
            &proxy.url("/cache/delete"),
            &json!({"keys": [key]}).to_string(),
            &auth(),
        )
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json(), json!({"status": "success", "deleted": 1}));
    chat(&proxy, &hello()).await;
    assert_eq!(chat_paths(&up), 3, "deleted: fetched again");
    assert!(
        chat(&proxy, &hello())
            .await
            .headers
            .contains_key("x-litellm-cache-key")
    );
    let flushed = c
        .post_json(&proxy.url("/cache/flushall"), "{}", &auth())
        .await;
    assert_eq!(flushed.status, 200, "{}", flushed.text());
    chat(&proxy, &hello()).await;
    assert_eq!(chat_paths(&up), 4, "flushed: fetched again");

    let ready = c.get(&proxy.url("/health/readiness"), &[]).await;
    assert_eq!(ready.json()["cache"], "local");
}

/// The text and the usage of an SSE body, and whether it ended with `[DONE]`.
fn sse_content(body: &str) -> (String, Option<Value>, bool) {
    let mut text = String::new();
    let mut usage = None;
    let mut done = false;
    for data in sse_data(body) {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if !v["usage"].is_null() {
            usage = Some(v["usage"].clone());
        }
    }
    (text, usage, done)
}

#[tokio::test]
async fn a_cached_stream_replays_as_sse_with_the_same_content() {
    let up = MockUpstream::start().await;
    up.always(Reply::sse(fixture("openai/chat_stream_text.sse.txt")));
    let proxy = Proxy::start(&config(&up, "    type: local"), &[]);
    let mut body = hello();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});

    let original = chat(&proxy, &body).await;
    let replay = chat(&proxy, &body).await;
    assert_eq!(chat_paths(&up), 1);
    assert!(replay.headers.contains_key("x-litellm-cache-key"));
    assert_eq!(replay.headers["content-type"], "text/event-stream");
    let (text, usage, done) = sse_content(&original.text());
    assert!(done && text.starts_with("I'm"), "{}", original.text());
    let (replayed_text, replayed_usage, replayed_done) = sse_content(&replay.text());
    assert_eq!(replayed_text, text);
    assert!(replayed_done, "{}", replay.text());
    let (u, ru) = (usage.unwrap(), replayed_usage.unwrap());
    assert_eq!(ru["prompt_tokens"], u["prompt_tokens"]);
    assert_eq!(ru["completion_tokens"], u["completion_tokens"]);
    assert_eq!(ru["cost"], 0.0, "a replay costs nothing");

    // Without include_usage the replay carries no usage chunk, like any stream.
    body["stream_options"] = json!({"include_usage": false});
    let plain = chat(&proxy, &body).await;
    let (plain_text, plain_usage, _) = sse_content(&plain.text());
    assert_eq!(plain_text, text);
    assert!(plain_usage.is_none());
    // And a complete request is served from the streamed answer.
    let complete = chat(&proxy, &hello()).await;
    assert_eq!(
        complete.json()["choices"][0]["message"]["content"].as_str(),
        Some(text.as_str())
    );
    assert_eq!(chat_paths(&up), 1);
}

#[tokio::test]
async fn embeddings_are_cached_too() {
    let up = MockUpstream::start().await;
    up.always(Reply::json(
        200,
        fixture("openai/embeddings_base64.resp.json"),
    ));
    let proxy = Proxy::start(&config(&up, "    type: local"), &[]);
    let c = Client::new();
    let body = r#"{"model":"embed","input":["hello"],"encoding_format":"base64"}"#;
    let a = c
        .post_json(&proxy.url("/v1/embeddings"), body, &auth())
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let b = c
        .post_json(&proxy.url("/v1/embeddings"), body, &auth())
        .await;
    assert_eq!(b.status, 200);
    assert!(b.headers.contains_key("x-litellm-cache-key"));
    assert_eq!(b.json()["data"], a.json()["data"]);
    assert_eq!(up.received().len(), 1);
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn redis_reachable(test: &str) -> bool {
    let url = redis_url();
    let hostport = url
        .trim_start_matches("redis://")
        .split(['/', '?'])
        .next()
        .unwrap_or("")
        .rsplit('@')
        .next()
        .unwrap_or("")
        .to_owned();
    let ok = std::net::ToSocketAddrs::to_socket_addrs(&hostport)
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
        });
    if !ok {
        assert!(
            !common::services_required(),
            "Redis at {url} is required (TOLLGATE_REQUIRE_SERVICES=1)"
        );
        eprintln!("SKIPPED {test}: Redis at {url} is not reachable");
    }
    ok
}

fn unique(tag: &str) -> String {
    format!(
        "tollgate-e2e:{tag}:{}:{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn two_proxies_sharing_redis_share_hits() {
    if !redis_reachable("two_proxies_sharing_redis_share_hits") {
        return;
    }
    let up = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let params = format!("    type: redis\n    namespace: {}", unique("two"));
    let yaml = config(&up, &params);
    let env = [("REDIS_URL", redis_url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = Proxy::start(&yaml, &env);
    let b = Proxy::start(&yaml, &env);

    let first = chat(&a, &hello()).await;
    assert!(first.headers.get("x-litellm-cache-key").is_none());
    let from_b = chat(&b, &hello()).await;
    assert_eq!(chat_paths(&up), 1, "proxy b answered from proxy a's entry");
    assert!(from_b.headers.contains_key("x-litellm-cache-key"));
    assert_eq!(from_b.json(), first.json());

    // A delete on one proxy is seen by the other.
    let key = from_b.headers["x-litellm-cache-key"].to_str().unwrap();
    let deleted = Client::new()
        .post_json(
            &a.url("/cache/delete"),
            &json!({"keys": [key]}).to_string(),
            &auth(),
        )
        .await;
    assert_eq!(deleted.json()["deleted"], 1, "{}", deleted.text());
    chat(&b, &hello()).await;
    assert_eq!(chat_paths(&up), 2);
    let ping = Client::new().get(&b.url("/cache/ping"), &auth()).await;
    assert_eq!(ping.status, 200, "{}", ping.text());
    assert_eq!(ping.json()["cache_type"], "redis");
    Client::new()
        .post_json(&a.url("/cache/flushall"), "{}", &auth())
        .await;
}

#[tokio::test]
async fn with_redis_down_requests_are_still_served() {
    let up = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let params =
        format!("    type: redis\n    host: 127.0.0.1\n    port: {port}\n    socket_timeout: 0.2");
    let proxy = Proxy::start(&config(&up, &params), &[]);
    let started = Instant::now();
    for _ in 0..5 {
        let a = chat(&proxy, &hello()).await;
        assert!(!a.headers.contains_key("x-litellm-cache-key"));
    }
    assert_eq!(chat_paths(&up), 5);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let ping = Client::new().get(&proxy.url("/cache/ping"), &auth()).await;
    assert_eq!(ping.status, 503, "{}", ping.text());
    proxy.wait_for_log("redis cache unavailable", Duration::from_secs(5));
}

#[tokio::test]
async fn default_off_caches_only_requests_that_opt_in() {
    let up = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let proxy = Proxy::start(&config(&up, "    type: local\n    mode: default_off"), &[]);
    chat(&proxy, &hello()).await;
    chat(&proxy, &hello()).await;
    assert_eq!(chat_paths(&up), 2);
    let mut opt_in = hello();
    opt_in["cache"] = json!({"use-cache": true});
    chat(&proxy, &opt_in).await;
    let hit = chat(&proxy, &opt_in).await;
    assert!(hit.headers.contains_key("x-litellm-cache-key"));
    assert_eq!(chat_paths(&up), 3);
}
