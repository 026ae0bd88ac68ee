use super::*;
use crate::auth::Role;
use crate::context::RequestId;
use crate::cost::CostLayer;
use crate::error::ErrorKind;
use crate::observe::{CompletionRecord, ObserveLayer, RecordSink};
use crate::provider::{Mock, MockConfig};
use crate::stream::{ChunkResult, StreamEnd, StreamObserver};
use crate::types::{ChatChunk, ChunkChoice, Delta, FinishReason};
use futures_util::StreamExt;
use serde_json::json;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use tower::ServiceExt;

/// The mock leaf, counting the calls that reach it.
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

impl Service<EmbeddingRequest> for Upstream {
    type Response = EmbeddingOutput;
    type Error = Error;
    type Future = BoxFuture<Result<EmbeddingOutput, Error>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.mock.call(req)
    }
}

fn config() -> CacheConfig {
    CacheConfig {
        clock: Clock::tokio(),
        ..CacheConfig::default()
    }
}

fn memory(config: CacheConfig) -> ResponseCache {
    ResponseCache::in_memory(16 << 20, config)
}

fn req(json: serde_json::Value) -> ChatRequest {
    ChatRequest::from_json(json.to_string().as_bytes()).unwrap()
}

fn hello() -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]})
}

fn with(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

async fn ask(svc: &Cache<Upstream>, r: ChatRequest) -> ChatResponse {
    svc.clone().oneshot(r).await.unwrap()
}

fn hit(resp: &ChatResponse) -> Option<CacheHit> {
    resp.meta.extensions.get::<CacheHit>().copied()
}

fn identity(team: Option<&str>, key_hash: Option<&str>) -> Identity {
    let mut id = Identity::anonymous();
    id.role = Role::Key;
    id.team_id = team.map(Arc::from);
    id.key_hash = key_hash.map(Arc::from);
    id
}

fn as_caller(mut r: ChatRequest, id: Identity) -> ChatRequest {
    r.extensions.insert(id);
    r
}

#[tokio::test]
async fn identical_requests_hit_and_near_identical_miss() {
    let up = Upstream::new();
    let cache = memory(config());
    let svc = cache.layer().layer(up.clone());

    let first = ask(&svc, req(hello())).await;
    assert!(hit(&first).is_none());
    let second = ask(&svc, req(hello())).await;
    let h = hit(&second).expect("second identical request is a hit");
    assert_eq!(up.calls(), 1);
    assert_eq!(
        second.completion(),
        first.completion(),
        "the same answer, id included"
    );
    assert_eq!(h.age, Duration::ZERO);

    // Near-identical: one thing that changes the answer differs.
    for near in [
        json!({"model": "m", "messages": [{"role": "user", "content": "hello!"}]}),
        with(hello(), json!({"temperature": 0.5})),
        with(hello(), json!({"max_tokens": 3})),
        with(
            hello(),
            json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
        ),
        with(hello(), json!({"response_format": {"type": "json_object"}})),
        with(hello(), json!({"model": "other"})),
    ] {
        let before = up.calls();
        let resp = ask(&svc, req(near.clone())).await;
        assert!(hit(&resp).is_none(), "{near}");
        assert_eq!(up.calls(), before + 1, "{near}");
    }
    let s = cache.stats();
    assert_eq!((s.hits, s.writes), (1, 7));
}

#[tokio::test]
async fn what_does_not_change_the_answer_does_not_change_the_key() {
    let up = Upstream::new();
    let svc = memory(config()).layer().layer(up.clone());
    ask(&svc, req(hello())).await;
    for same in [
        with(
            hello(),
            json!({"user": "alice", "metadata": {"trace_id": "t-1", "tags": ["x"]}}),
        ),
        with(
            hello(),
            json!({"tags": ["a"], "num_retries": 2, "timeout": 30}),
        ),
    ] {
        let mut r = req(same.clone());
        r.extensions.insert(RequestId(Arc::from("another-request")));
        assert!(hit(&ask(&svc, r).await).is_some(), "{same}");
    }
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn tenants_never_read_each_others_answers() {
    let up = Upstream::new();
    let svc = memory(config()).layer().layer(up.clone());
    let key_a = identity(None, Some("hash-a"));
    let key_b = identity(None, Some("hash-b"));
    let team_1 = identity(Some("team-1"), Some("hash-c"));
    let team_1_other_key = identity(Some("team-1"), Some("hash-d"));
    let team_2 = identity(Some("team-2"), Some("hash-e"));

    ask(&svc, as_caller(req(hello()), key_a.clone())).await;
    assert!(hit(&ask(&svc, as_caller(req(hello()), key_a)).await).is_some());
    for other in [key_b, team_1.clone(), team_2.clone()] {
        let before = up.calls();
        let r = ask(&svc, as_caller(req(hello()), other.clone())).await;
        assert!(hit(&r).is_none(), "{other:?} read another tenant's answer");
        assert_eq!(up.calls(), before + 1);
    }
    // Keys of one team share the team's answers.
    assert!(hit(&ask(&svc, as_caller(req(hello()), team_1_other_key)).await).is_some());
    // Anonymous and the master key share the gateway's, not a tenant's.
    let before = up.calls();
    ask(&svc, req(hello())).await;
    assert_eq!(up.calls(), before + 1);
    let admin = as_caller(req(hello()), Identity::admin("sk-master-123456789"));
    assert!(hit(&ask(&svc, admin).await).is_some());
}

#[tokio::test]
async fn shared_scope_shares_across_tenants() {
    let up = Upstream::new();
    let cfg = CacheConfig {
        scope: CacheScope::Shared,
        ..config()
    };
    let svc = memory(cfg).layer().layer(up.clone());
    ask(
        &svc,
        as_caller(req(hello()), identity(Some("t1"), Some("a"))),
    )
    .await;
    let r = ask(
        &svc,
        as_caller(req(hello()), identity(Some("t2"), Some("b"))),
    )
    .await;
    assert!(hit(&r).is_some());
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn a_key_that_cannot_be_told_apart_is_not_cached() {
    let up = Upstream::new();
    let svc = memory(config()).layer().layer(up.clone());
    for _ in 0..2 {
        let r = ask(&svc, as_caller(req(hello()), identity(None, None))).await;
        assert!(hit(&r).is_none());
    }
    assert_eq!(up.calls(), 2);
}

#[tokio::test]
async fn no_cache_skips_the_lookup_but_stores_the_fresh_answer() {
    let up = Upstream::new();
    let svc = memory(config()).layer().layer(up.clone());
    let old = ask(&svc, req(hello())).await;
    let fresh = ask(
        &svc,
        req(with(hello(), json!({"cache": {"no-cache": true}}))),
    )
    .await;
    assert!(hit(&fresh).is_none());
    assert_eq!(up.calls(), 2);
    assert_ne!(old.completion().unwrap().id, fresh.completion().unwrap().id);
    // The fresh answer replaced the old one.
    let again = ask(&svc, req(hello())).await;
    assert!(hit(&again).is_some());
    assert_eq!(
        again.completion().unwrap().id,
        fresh.completion().unwrap().id
    );
}

#[tokio::test]
async fn no_store_does_not_store() {
    let up = Upstream::new();
    let svc = memory(config()).layer().layer(up.clone());
    let no_store = || req(with(hello(), json!({"cache": {"no-store": true}})));
    ask(&svc, no_store()).await;
    assert!(hit(&ask(&svc, req(hello())).await).is_none());
    assert_eq!(up.calls(), 2);
    // It may still read what others stored.
    assert!(hit(&ask(&svc, no_store()).await).is_some());
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_the_default_ttl() {
    let up = Upstream::new();
    let cfg = CacheConfig {
        ttl: Duration::from_secs(60),
        ..config()
    };
    let svc = memory(cfg).layer().layer(up.clone());
    ask(&svc, req(hello())).await;
    tokio::time::advance(Duration::from_secs(59)).await;
    let r = ask(&svc, req(hello())).await;
    assert_eq!(hit(&r).unwrap().age, Duration::from_secs(59));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(
        hit(&ask(&svc, req(hello())).await).is_none(),
        "expired at 60 s"
    );
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn ttl_control_sets_the_lifetime_of_one_answer() {
    let up = Upstream::new();
    let svc = memory(config()).layer().layer(up.clone());
    ask(&svc, req(with(hello(), json!({"cache": {"ttl": 5}})))).await;
    tokio::time::advance(Duration::from_millis(4_900)).await;
    assert!(hit(&ask(&svc, req(hello())).await).is_some());
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(hit(&ask(&svc, req(hello())).await).is_none());
    // ttl 0: nothing is stored.
    let other = json!({"model": "m", "messages": [{"role": "user", "content": "bye"}]});
    ask(&svc, req(with(other.clone(), json!({"cache": {"ttl": 0}})))).await;
    assert!(hit(&ask(&svc, req(other)).await).is_none());
}

#[tokio::test(start_paused = true)]
async fn s_maxage_accepts_only_young_enough_answers() {
    let up = Upstream::new();
    let svc = memory(config()).layer().layer(up.clone());
    ask(&svc, req(hello())).await;
    tokio::time::advance(Duration::from_secs(30)).await;
    let young = ask(&svc, req(with(hello(), json!({"cache": {"s-maxage": 30}})))).await;
    assert!(hit(&young).is_some());
    let strict = ask(&svc, req(with(hello(), json!({"cache": {"s-maxage": 29}})))).await;
    assert!(hit(&strict).is_none());
    assert_eq!(up.calls(), 2);
    // The fresh answer replaced the old one: it is young now.
    let after = ask(&svc, req(with(hello(), json!({"cache": {"s-maxage": 1}})))).await;
    assert_eq!(hit(&after).unwrap().age, Duration::ZERO);
}

#[tokio::test]
async fn namespaces_are_separate_caches() {
    let up = Upstream::new();
    let svc = memory(config()).layer().layer(up.clone());
    let ns = |n: &str| req(with(hello(), json!({"cache": {"namespace": n}})));
    ask(&svc, ns("a")).await;
    assert!(hit(&ask(&svc, ns("a")).await).is_some());
    assert!(hit(&ask(&svc, ns("b")).await).is_none());
    assert!(hit(&ask(&svc, req(hello())).await).is_none());
    assert_eq!(up.calls(), 3);
}

#[tokio::test]
async fn default_off_caches_only_when_asked() {
    let up = Upstream::new();
    let cfg = CacheConfig {
        mode: CacheMode::DefaultOff,
        ..config()
    };
    let svc = memory(cfg).layer().layer(up.clone());
    ask(&svc, req(hello())).await;
    assert!(hit(&ask(&svc, req(hello())).await).is_none());
    let opt_in = || req(with(hello(), json!({"cache": {"use-cache": true}})));
    ask(&svc, opt_in()).await;
    assert!(hit(&ask(&svc, opt_in()).await).is_some());
    assert!(
        hit(&ask(&svc, req(hello())).await).is_none(),
        "still off by default"
    );
    assert_eq!(up.calls(), 4);
}

#[tokio::test]
async fn use_cache_false_opts_out_when_default_on() {
    let up = Upstream::new();
    let svc = memory(config()).layer().layer(up.clone());
    ask(&svc, req(hello())).await;
    let out = ask(
        &svc,
        req(with(hello(), json!({"cache": {"use-cache": false}}))),
    )
    .await;
    assert!(hit(&out).is_none());
    assert_eq!(up.calls(), 2);
}

#[tokio::test]
async fn denied_controls_are_refused_before_anything_happens() {
    let up = Upstream::new();
    let svc = memory(config()).layer().layer(up.clone());
    let mut r = req(with(hello(), json!({"cache": {"no-cache": true}})));
    r.extensions
        .insert(CacheControlsPolicy::only(["ttl", "s-maxage"]));
    let err = svc.clone().oneshot(r).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(err.param(), Some("cache"));
    assert_eq!(up.calls(), 0);
    // Allowed controls pass; no controls at all always pass.
    let mut r = req(with(hello(), json!({"cache": {"ttl": 9}})));
    r.extensions
        .insert(CacheControlsPolicy::only(["ttl", "s-maxage"]));
    svc.clone().oneshot(r).await.unwrap();
    let mut r = req(hello());
    r.extensions.insert(CacheControlsPolicy::deny_all());
    assert!(hit(&svc.clone().oneshot(r).await.unwrap()).is_some());
    // A malformed control is a 400.
    let err = svc
        .clone()
        .oneshot(req(with(hello(), json!({"cache": {"ttl": "long"}}))))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
}

#[tokio::test]
async fn client_side_credentials_bypass_the_cache() {
    let up = Upstream::new();
    let svc = memory(config()).layer().layer(up.clone());
    let own = || req(with(hello(), json!({"api_base": "http://127.0.0.1:9/v1"})));
    ask(&svc, own()).await;
    assert!(hit(&ask(&svc, own()).await).is_none());
    assert!(hit(&ask(&svc, req(hello())).await).is_none());
}

#[tokio::test]
async fn errors_are_not_cached() {
    let up = Upstream::new();
    let svc = memory(config()).layer().layer(up.clone());
    let failing = || {
        req(with(
            hello(),
            json!({"mock_response": "litellm.RateLimitError"}),
        ))
    };
    for _ in 0..2 {
        let e = svc.clone().oneshot(failing()).await.unwrap_err();
        assert!(e.is_rate_limited());
    }
    assert_eq!(up.calls(), 2);
}

async fn collect(resp: ChatResponse) -> Vec<ChatChunk> {
    let mut s = resp.into_stream().unwrap();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.push(c.unwrap());
    }
    out
}

/// The completion the chunks describe, without the cost a priced usage chunk carries.
fn assemble(chunks: &[ChatChunk]) -> ChatCompletion {
    let mut agg = ChunkAggregator::default();
    for c in chunks {
        agg.push(c);
    }
    let mut c = agg.finish();
    if let Some(u) = c.usage.as_mut() {
        u.extra.remove("cost");
    }
    c
}

#[tokio::test]
async fn a_stream_replays_the_original_streams_content() {
    let up = Upstream::new();
    let svc = memory(config()).layer().layer(up.clone());
    let body = with(
        hello(),
        json!({
                "stream": true, "stream_options": {"include_usage": true}, "n": 2,
                "mock_response": {"content": "Sunny and warm today",
                  "tool_calls": [{"id": "call_1", "type": "function",
                                  "function": {"name": "weather", "arguments": "{\"city\":\"SF\"}"}}]}
        }),
    );
    let streamed = || req(body.clone());
    let original = collect(ask(&svc, streamed()).await).await;
    let resp = ask(&svc, streamed()).await;
    assert!(hit(&resp).is_some());
    let replayed = collect(resp).await;
    assert_eq!(up.calls(), 1);
    assert_eq!(assemble(&replayed), assemble(&original));
    let text = assemble(&replayed);
    assert_eq!(text.choices.len(), 2);
    assert_eq!(
        text.choices[1].message.content.as_deref(),
        Some("Sunny and warm today")
    );
    assert_eq!(
        text.choices[0].message.tool_calls.as_ref().unwrap()[0]
            .function
            .arguments,
        "{\"city\":\"SF\"}"
    );
    let last = replayed.last().unwrap();
    assert!(last.is_usage_only(), "the replay ends with the usage chunk");
    let usage = last.usage.as_ref().unwrap();
    assert_eq!(
        usage.extra.get("cost").map(|c| c.get()),
        Some("0.0"),
        "costs nothing"
    );
    let original_usage = original.last().unwrap().usage.as_ref().unwrap();
    assert_eq!(
        (usage.prompt_tokens, usage.completion_tokens),
        (
            original_usage.prompt_tokens,
            original_usage.completion_tokens
        )
    );
    // A complete request reads the streamed answer too, and the reverse.
    let complete = ask(&svc, req(with(body.clone(), json!({"stream": false})))).await;
    assert!(hit(&complete).is_some());
    assert_eq!(complete.completion().unwrap(), &assemble(&original));
}

#[tokio::test]
async fn a_complete_answer_is_replayed_to_a_streaming_request() {
    let up = Upstream::new();
    let svc = memory(config()).layer().layer(up.clone());
    let first = ask(&svc, req(hello())).await;
    let resp = ask(&svc, req(with(hello(), json!({"stream": true})))).await;
    assert!(hit(&resp).is_some());
    let chunks = collect(resp).await;
    assert_eq!(&assemble(&chunks), first.completion().unwrap());
}

/// A service whose streams are scripted per call.
#[derive(Clone)]
struct Scripted {
    calls: Arc<AtomicUsize>,
    script: Arc<dyn Fn() -> Vec<ChunkResult> + Send + Sync>,
}

impl Service<ChatRequest> for Scripted {
    type Response = ChatResponse;
    type Error = Error;
    type Future = std::future::Ready<Result<ChatResponse, Error>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: ChatRequest) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(ChatResponse::stream(ChatStream::from_results((self
            .script)(
        )))))
    }
}

fn text(t: &str) -> ChatChunk {
    ChatChunk::new("c", "m", 1).with_choice(ChunkChoice::new(0, Delta::text(t)))
}

fn finish() -> ChatChunk {
    ChatChunk::new("c", "m", 1).with_choice(ChunkChoice::finish(0, FinishReason::Stop))
}

async fn stored_after(script: fn() -> Vec<ChunkResult>, read_all: bool) -> bool {
    let up = Scripted {
        calls: Arc::default(),
        script: Arc::new(script),
    };
    let svc = memory(config()).layer().layer(up.clone());
    let r = || req(with(hello(), json!({"stream": true})));
    let mut s = svc
        .clone()
        .oneshot(r())
        .await
        .unwrap()
        .into_stream()
        .unwrap();
    if read_all {
        while s.next().await.is_some() {}
    } else {
        s.next().await;
    }
    drop(s);
    let second = svc.clone().oneshot(r()).await.unwrap();
    hit(&second).is_some()
}

#[tokio::test]
async fn only_streams_that_completed_normally_are_stored() {
    assert!(stored_after(|| vec![Ok(text("a")), Ok(finish())], true).await);
    assert!(
        !stored_after(
            || vec![
                Ok(text("a")),
                Err(Error::new(ErrorKind::Connection, "reset"))
            ],
            true
        )
        .await,
        "a failed stream"
    );
    assert!(
        !stored_after(|| vec![Ok(text("a")), Ok(finish())], false).await,
        "a stream the client abandoned"
    );
    assert!(
        !stored_after(|| vec![Ok(text("a"))], true).await,
        "a stream that ended without a finish reason"
    );
}

#[derive(Default)]
struct Records(Mutex<Vec<CompletionRecord>>);

impl RecordSink for Records {
    fn record(&self, r: &CompletionRecord) {
        self.0.lock().unwrap().push(r.clone());
    }
}

#[tokio::test]
async fn hits_cost_nothing_and_are_recorded_as_hits() {
    let records = Arc::new(Records::default());
    let cache = memory(config());
    let svc = ObserveLayer::new(records.clone()).layer(cache.layer().layer(
        CostLayer::for_model("openai/gpt-4o-mini").layer(Mock::new(MockConfig::new("mock/m"))),
    ));
    for stream in [false, false, true] {
        let resp = svc
            .clone()
            .oneshot(req(with(hello(), json!({"stream": stream}))))
            .await
            .unwrap();
        if stream {
            assert_eq!(
                crate::cost::of(&resp).and_then(|c| c.total()),
                Some(Usd::ZERO),
                "a replayed stream is settled at $0 up front"
            );
            collect(resp).await;
        }
    }
    let recs = records.0.lock().unwrap();
    assert_eq!(recs.len(), 3);
    assert!(!recs[0].cache_hit);
    assert!(recs[0].cost.unwrap() > Usd::ZERO);
    for r in &recs[1..] {
        assert!(r.cache_hit, "{r:?}");
        assert_eq!(r.cost, Some(Usd::ZERO));
        assert_eq!(
            r.usage, recs[0].usage,
            "the answer's usage is still reported"
        );
    }
}

/// A backend that always fails.
struct Broken;

impl CacheBackend for Broken {
    fn name(&self) -> &'static str {
        "broken"
    }
    fn get(&self, _: CacheKey) -> BoxFuture<Result<Option<bytes::Bytes>, Error>> {
        Box::pin(async { Err(backend::unavailable("down")) })
    }
    fn set(&self, _: CacheKey, _: bytes::Bytes, _: Duration) -> BoxFuture<Result<(), Error>> {
        Box::pin(async { Err(backend::unavailable("down")) })
    }
    fn delete(&self, _: Vec<CacheKey>) -> BoxFuture<Result<u64, Error>> {
        Box::pin(async { Err(backend::unavailable("down")) })
    }
    fn flush(&self) -> BoxFuture<Result<(), Error>> {
        Box::pin(async { Err(backend::unavailable("down")) })
    }
    fn ping(&self) -> BoxFuture<Result<(), Error>> {
        Box::pin(async { Err(backend::unavailable("down")) })
    }
}

#[test]
fn a_broken_backend_is_a_counted_miss_never_an_error() {
    let recorded = crate::observe::metrics::recorded::Recorded::default();
    recorded.block_on(async {
        let up = Upstream::new();
        let cache = ResponseCache::new(Broken, config());
        let svc = cache.layer().layer(up.clone());
        for _ in 0..2 {
            let r = ask(&svc, req(hello())).await;
            assert!(hit(&r).is_none());
            assert!(r.completion().unwrap().text().is_some());
        }
        assert_eq!(up.calls(), 2);
        assert_eq!(
            cache.stats().errors,
            4,
            "two failed lookups, two failed writes"
        );
        assert!(cache.ping().await.is_err(), "the admin sees the outage");
    });
    assert_eq!(
        recorded.counter("tollgate_cache_errors_total{backend=broken,op=get}"),
        Some(2)
    );
    assert_eq!(
        recorded.counter("tollgate_cache_errors_total{backend=broken,op=set}"),
        Some(2)
    );
    assert_eq!(
        recorded.counter("tollgate_cache_misses_total{call_type=chat}"),
        Some(2)
    );
}

#[test]
fn hits_misses_and_writes_are_counted_in_metrics() {
    let recorded = crate::observe::metrics::recorded::Recorded::default();
    recorded.block_on(async {
        let svc = memory(config()).layer().layer(Upstream::new());
        for _ in 0..3 {
            ask(&svc, req(hello())).await;
        }
    });
    assert_eq!(
        recorded.counter("tollgate_cache_misses_total{call_type=chat}"),
        Some(1)
    );
    assert_eq!(
        recorded.counter("tollgate_cache_writes_total{call_type=chat}"),
        Some(1)
    );
    assert_eq!(
        recorded.counter("tollgate_cache_hits_total{call_type=chat}"),
        Some(2)
    );
}

#[tokio::test]
async fn old_format_and_corrupt_entries_are_misses() {
    let up = Upstream::new();
    let mem = MemoryBackend::new(1 << 20);
    let cache = ResponseCache::new(mem.clone(), config());
    let svc = cache.layer().layer(up.clone());
    let first = ask(&svc, req(hello())).await;
    let key = hit(&ask(&svc, req(hello())).await).unwrap().key;
    let stored = mem.get(key).await.unwrap().unwrap();
    let old = String::from_utf8(stored.to_vec())
        .unwrap()
        .replacen("\"v\":1", "\"v\":0", 1);
    for bad in [
        old.into_bytes(),
        b"\xff\xfe not json".to_vec(),
        b"{}".to_vec(),
    ] {
        mem.set(key, bad.into(), Duration::from_secs(60))
            .await
            .unwrap();
        let before = up.calls();
        let r = ask(&svc, req(hello())).await;
        assert!(hit(&r).is_none());
        assert_eq!(up.calls(), before + 1);
        assert_ne!(r.completion().unwrap().id, first.completion().unwrap().id);
    }
}

#[tokio::test]
async fn oversized_answers_are_not_stored() {
    let up = Upstream::new();
    let cfg = CacheConfig {
        max_entry_bytes: 64,
        ..config()
    };
    let svc = memory(cfg).layer().layer(up.clone());
    ask(&svc, req(hello())).await;
    assert!(hit(&ask(&svc, req(hello())).await).is_none());
}

#[tokio::test]
async fn delete_and_flush_remove_entries() {
    let up = Upstream::new();
    let cache = memory(config());
    let svc = cache.layer().layer(up.clone());
    let other = json!({"model": "m", "messages": [{"role": "user", "content": "other"}]});
    ask(&svc, req(hello())).await;
    ask(&svc, req(other.clone())).await;
    let key = hit(&ask(&svc, req(hello())).await).unwrap().key;
    assert_eq!(cache.delete(&[key, key]).await.unwrap(), 1);
    assert!(hit(&ask(&svc, req(hello())).await).is_none());
    assert!(hit(&ask(&svc, req(other.clone())).await).is_some());
    cache.flush().await.unwrap();
    assert!(hit(&ask(&svc, req(other)).await).is_none());
    assert!(cache.ping().await.is_ok());
}

#[tokio::test]
async fn embeddings_hit_and_miss() {
    let up = Upstream::new();
    let cache = memory(config());
    let svc = cache.layer().layer(up.clone());
    let emb = |input: &str| {
        EmbeddingRequest::from_json(
            json!({"model": "e", "input": [input]})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    };
    let first = svc.clone().oneshot(emb("a")).await.unwrap();
    let second = svc.clone().oneshot(emb("a")).await.unwrap();
    assert!(second.meta.extensions.get::<CacheHit>().is_some());
    // Floats come back within one unit in the last place (serde_json's default float parsing).
    let floats = |o: &EmbeddingOutput| o.body.data[0].embedding.to_floats().unwrap();
    assert_eq!(floats(&second).len(), floats(&first).len());
    for (a, b) in floats(&first).iter().zip(floats(&second)) {
        assert!((a - b).abs() <= a.abs() * 1e-15, "{a} vs {b}");
    }
    assert_eq!(second.body.usage, first.body.usage);
    let cost = second.meta.extensions.get::<CallCost>().unwrap();
    assert_eq!(cost.total(), Some(Usd::ZERO));
    let third = svc.clone().oneshot(emb("b")).await.unwrap();
    assert!(third.meta.extensions.get::<CacheHit>().is_none());
    assert_eq!(up.calls(), 2);
    // Controls work for embeddings too.
    let mut r = EmbeddingRequest::from_json(
        json!({"model": "e", "input": ["a"], "cache": {"no-cache": true}})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    r.extensions.insert(Identity::anonymous());
    let fresh = svc.clone().oneshot(r).await.unwrap();
    assert!(fresh.meta.extensions.get::<CacheHit>().is_none());
    assert_eq!(up.calls(), 3);
}

#[tokio::test]
async fn turned_off_call_types_pass_through() {
    let up = Upstream::new();
    let cfg = CacheConfig {
        chat: false,
        ..config()
    };
    let svc = memory(cfg).layer().layer(up.clone());
    ask(&svc, req(hello())).await;
    assert!(hit(&ask(&svc, req(hello())).await).is_none());
    assert_eq!(up.calls(), 2);
}

/// Observes when the stream handed to the client ends, to check the store
/// happened before the end was reported.
struct EndsAfterStore(ResponseCache, Arc<Mutex<Option<u64>>>);

impl StreamObserver for EndsAfterStore {
    fn on_end(self, end: StreamEnd<'_>) {
        assert!(matches!(end, StreamEnd::Completed));
        *self.1.lock().unwrap() = Some(self.0.stats().writes);
    }
}

#[tokio::test]
async fn a_streamed_answer_is_stored_before_the_stream_ends() {
    let up = Upstream::new();
    let cache = memory(config());
    let svc = cache.layer().layer(up.clone());
    let seen = Arc::new(Mutex::new(None));
    let resp = ask(&svc, req(with(hello(), json!({"stream": true})))).await;
    let mut s = resp
        .into_stream()
        .unwrap()
        .observe(EndsAfterStore(cache.clone(), seen.clone()));
    while s.next().await.is_some() {}
    assert_eq!(*seen.lock().unwrap(), Some(1));
}
