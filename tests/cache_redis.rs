//! The response cache over a real Redis (`REDIS_URL`, default
//! redis://127.0.0.1:6379): shared between replicas, versioned, namespaced,
//! and an outage is a miss, never an error or a hang.
#![cfg(feature = "redis")]

mod common;

use futures_util::StreamExt;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tollgate::cache::{
    CacheConfig, CacheHit, CacheLayer, RedisBackend, RedisOptions, ResponseCache,
};
use tollgate::provider::{BoxFuture, Mock, MockConfig};
use tollgate::stream::ChunkAggregator;
use tollgate::{ChatRequest, ChatResponse, Error};
use tower::{Layer, Service, ServiceExt};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A connection for the test's own checks, or `None` (skip) when Redis is not there.
async fn redis_or_skip(test: &str) -> Option<redis::aio::MultiplexedConnection> {
    let url = redis_url();
    let conn = async {
        let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
        tokio::time::timeout(
            Duration::from_secs(2),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())
    }
    .await;
    match conn {
        Ok(c) => Some(c),
        Err(e) if !common::services_required() => {
            eprintln!("SKIPPED {test}: Redis at {url} is not reachable ({e})");
            None
        }
        Err(e) => panic!("Redis at {url} is required (TOLLGATE_REQUIRE_SERVICES=1): {e}"),
    }
}

/// A namespace no other test (or run) uses.
fn namespace(test: &str) -> String {
    format!(
        "tollgate-test:{test}:{}:{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn options(ns: &str) -> RedisOptions {
    RedisOptions {
        namespace: ns.to_owned(),
        ..RedisOptions::default()
    }
}

/// One replica's cache over its own Redis client.
fn replica(ns: &str) -> ResponseCache {
    let backend = RedisBackend::open(&redis_url(), options(ns)).unwrap();
    ResponseCache::new(backend, CacheConfig::default())
}

/// The mock leaf, counting the calls that reach it (shared by every replica).
#[derive(Clone)]
struct Upstream {
    calls: Arc<AtomicUsize>,
    mock: Mock,
}

impl Upstream {
    fn new() -> Self {
        Upstream {
            calls: Arc::default(),
            mock: Mock::new(MockConfig::new("mock/m")),
        }
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<ChatRequest> for Upstream {
    type Response = ChatResponse;
    type Error = Error;
    type Future = BoxFuture<Result<ChatResponse, Error>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: ChatRequest) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.mock.call(req)
    }
}

fn req(body: serde_json::Value) -> ChatRequest {
    ChatRequest::from_json(body.to_string().as_bytes()).unwrap()
}

fn hello() -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hello redis"}]})
}

async fn ask<S>(svc: &S, r: ChatRequest) -> ChatResponse
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error> + Clone,
{
    svc.clone().oneshot(r).await.unwrap()
}

fn hit(r: &ChatResponse) -> Option<CacheHit> {
    r.meta.extensions.get::<CacheHit>().copied()
}

#[tokio::test]
async fn replicas_sharing_redis_share_hits() {
    let Some(_) = redis_or_skip("replicas_sharing_redis_share_hits").await else {
        return;
    };
    let ns = namespace("share");
    let up = Upstream::new();
    let a = CacheLayer::new(replica(&ns)).layer(up.clone());
    let b = CacheLayer::new(replica(&ns)).layer(up.clone());

    let first = ask(&a, req(hello())).await;
    assert!(hit(&first).is_none());
    let from_b = ask(&b, req(hello())).await;
    assert!(
        hit(&from_b).is_some(),
        "replica b reads what replica a stored"
    );
    assert_eq!(from_b.completion(), first.completion());
    assert_eq!(up.calls(), 1);

    // Near-identical requests miss on every replica.
    let near = json!({"model": "m", "messages": [{"role": "user", "content": "hello redis!"}]});
    assert!(hit(&ask(&b, req(near)).await).is_none());
    assert_eq!(up.calls(), 2);

    // Another namespace is another cache.
    let c = CacheLayer::new(replica(&namespace("other"))).layer(up.clone());
    assert!(hit(&ask(&c, req(hello())).await).is_none());
}

#[tokio::test]
async fn entries_carry_their_ttl_in_redis_and_a_version() {
    let Some(mut conn) = redis_or_skip("entries_carry_their_ttl_in_redis_and_a_version").await
    else {
        return;
    };
    let ns = namespace("ttl");
    let up = Upstream::new();
    let svc = CacheLayer::new(replica(&ns)).layer(up.clone());
    ask(
        &svc,
        req(json!({"model": "m", "messages": [{"role": "user", "content": "hello redis"}], "cache": {"ttl": 42}})),
    )
    .await;
    let key = hit(&ask(&svc, req(hello())).await).unwrap().key;
    let redis_key = format!("{ns}:{key}");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&redis_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (40_000..=42_000).contains(&pttl),
        "Redis expires the entry with the request's ttl: {pttl}"
    );
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(&redis_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(v["v"], 1);
    assert_eq!(v["kind"], "chat");

    // An entry of another format version is a miss, then overwritten.
    let mut other = v.clone();
    other["v"] = json!(99);
    let _: () = redis::cmd("SET")
        .arg(&redis_key)
        .arg(other.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(hit(&ask(&svc, req(hello())).await).is_none());
    assert_eq!(up.calls(), 2);
    assert!(hit(&ask(&svc, req(hello())).await).is_some());
}

#[tokio::test]
async fn streams_are_stored_and_replayed_through_redis() {
    let Some(_) = redis_or_skip("streams_are_stored_and_replayed_through_redis").await else {
        return;
    };
    let ns = namespace("stream");
    let up = Upstream::new();
    let a = CacheLayer::new(replica(&ns)).layer(up.clone());
    let b = CacheLayer::new(replica(&ns)).layer(up.clone());
    let streamed = || {
        req(json!({
            "model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "stream me"}],
            "mock_response": "one two three four"
        }))
    };
    let collect = |r: ChatResponse| async move {
        let mut s = r.into_stream().unwrap();
        let mut agg = ChunkAggregator::default();
        let mut last = None;
        while let Some(c) = s.next().await {
            let c = c.unwrap();
            agg.push(&c);
            last = Some(c);
        }
        let mut c = agg.finish();
        // A replay states its cost ($0) in the usage chunk; the answer is the same.
        let cost = c.usage.as_mut().and_then(|u| u.extra.remove("cost"));
        (c, last.unwrap(), cost.map(|c| c.get().to_owned()))
    };
    let (original, _, _) = collect(ask(&a, streamed()).await).await;
    let replay = ask(&b, streamed()).await;
    assert!(hit(&replay).is_some());
    let (replayed, last, cost) = collect(replay).await;
    assert_eq!(replayed, original);
    assert_eq!(cost.as_deref(), Some("0.0"));
    assert_eq!(replayed.text(), Some("one two three four"));
    assert!(last.is_usage_only());
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn delete_and_flush_touch_only_this_cache() {
    let Some(mut conn) = redis_or_skip("delete_and_flush_touch_only_this_cache").await else {
        return;
    };
    let ns = namespace("admin");
    let cache = replica(&ns);
    let up = Upstream::new();
    let svc = CacheLayer::new(cache.clone()).layer(up.clone());
    let bystander = format!("{ns}-bystander:key");
    let _: () = redis::cmd("SET")
        .arg(&bystander)
        .arg("keep me")
        .arg("EX")
        .arg(60)
        .query_async(&mut conn)
        .await
        .unwrap();

    cache.ping().await.unwrap();
    ask(&svc, req(hello())).await;
    let other = json!({"model": "m", "messages": [{"role": "user", "content": "other"}]});
    ask(&svc, req(other.clone())).await;
    let key = hit(&ask(&svc, req(hello())).await).unwrap().key;
    assert_eq!(cache.delete(&[key]).await.unwrap(), 1);
    assert!(hit(&ask(&svc, req(hello())).await).is_none());
    assert!(hit(&ask(&svc, req(other.clone())).await).is_some());
    cache.flush().await.unwrap();
    assert!(hit(&ask(&svc, req(other)).await).is_none());
    let kept: Option<String> = redis::cmd("GET")
        .arg(&bystander)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("keep me"), "flush is not FLUSHALL");
}

/// Requests through a cache whose Redis does not answer: all served, none
/// held for long. The bounds are generous (the configured timeouts are a
/// fraction of them) so a loaded CI machine does not trip them; a hang would.
async fn served_despite(backend: RedisBackend, what: &str) {
    let up = Upstream::new();
    let cache = ResponseCache::new(backend, CacheConfig::default());
    let svc = CacheLayer::new(cache.clone()).layer(up.clone());
    let started = Instant::now();
    for i in 0..20 {
        let one = Instant::now();
        let r = ask(&svc, req(hello())).await;
        assert!(hit(&r).is_none());
        assert!(r.completion().unwrap().text().is_some());
        assert!(
            one.elapsed() < Duration::from_secs(5),
            "{what}: request {i} took {:?}",
            one.elapsed()
        );
    }
    assert_eq!(up.calls(), 20);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{what}: 20 requests took {:?}",
        started.elapsed()
    );
    assert!(cache.stats().errors > 0, "{what}: the outage is counted");
    assert!(
        cache.ping().await.is_err(),
        "{what}: ping reports the outage"
    );
}

#[tokio::test]
async fn redis_down_is_a_miss_with_bounded_latency() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let backend = RedisBackend::open(
        &format!("redis://127.0.0.1:{port}"),
        options(&namespace("down")),
    )
    .unwrap();
    served_despite(backend, "closed port").await;
}

#[tokio::test]
async fn a_redis_that_never_answers_is_a_miss_with_bounded_latency() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            keep.lock().unwrap().push(s);
        }
    });
    let backend = RedisBackend::open(
        &format!("redis://127.0.0.1:{port}"),
        options(&namespace("silent")),
    )
    .unwrap();
    served_despite(backend, "silent server").await;
}
