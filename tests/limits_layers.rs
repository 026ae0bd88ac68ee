//! BudgetLayer and RateLimitLayer around real leaves: money settles exactly
//! once on every path, and limits hold under concurrency.

use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tollgate::auth::Identity;
use tollgate::cost::{CallCost, CostLayer};
use tollgate::limits::{
    BudgetLayer, BudgetLine, Ledger, LimitScopes, Limits, MemoryLedger, MemoryRateLimiter,
    PriceEstimator, RateLimitLayer, Scope, ScopeKind, Subject, Subjects,
};
use tollgate::pricing::{ModelPrice, Usd};
use tollgate::provider::{Mock, MockConfig};
use tollgate::types::ChatBody;
use tollgate::{ChatRequest, ErrorKind};
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

type Chat = BoxCloneService<ChatRequest, tollgate::ChatResponse, tollgate::Error>;

/// $1 per 1000 prompt tokens, $2 per 1000 completion tokens, 50 output max.
fn price() -> ModelPrice {
    let v = serde_json::json!({
        "input_cost_per_token": 0.001,
        "output_cost_per_token": 0.002,
        "max_output_tokens": 50,
        "litellm_provider": "mock",
        "mode": "chat"
    });
    ModelPrice::from_json("mock/m", v.as_object().unwrap())
}

fn leaf(delay: Duration, chunk_delay: Duration) -> Chat {
    let mut cfg = MockConfig::new("mock/m");
    cfg.response = Some(serde_json::json!("one two three four five six"));
    cfg.delay = delay;
    cfg.chunk_delay = chunk_delay;
    BoxCloneService::new(CostLayer::new("mock/m", Some(price())).layer(Mock::new(cfg)))
}

fn estimator() -> Arc<PriceEstimator> {
    Arc::new(PriceEstimator::new().group("m", "mock/m", Some(price())))
}

fn key_identity(limits: Limits) -> Identity {
    let mut id = Identity::anonymous();
    id.key_hash = Some("abc123".into());
    id.key_alias = Some("team-bot".into());
    id.subjects = Subjects::from(vec![Subject::new(
        Scope::new(ScopeKind::Key, "abc123"),
        limits,
        0,
    )]);
    id
}

fn key_line(max: Usd) -> BudgetLine {
    BudgetLine {
        scope: Scope::new(ScopeKind::Key, "abc123"),
        model: None,
        label: "key team-bot".into(),
        max_budget: Some(max),
        soft_budget: None,
        window: None,
        budget_start: 0,
    }
}

fn request(identity: &Identity, stream: bool) -> ChatRequest {
    let body = serde_json::json!({
        "model": "m",
        "max_tokens": 20,
        "stream": stream,
        "messages": [{"role": "user", "content": "count to six"}]
    });
    let mut req = ChatRequest::from_json(body.to_string().as_bytes()).unwrap();
    req.extensions.insert(identity.clone());
    req
}

fn with_budget(ledger: &MemoryLedger, inner: Chat) -> Chat {
    BoxCloneService::new(
        BudgetLayer::new(Arc::new(ledger.clone()), estimator(), LimitScopes::new()).layer(inner),
    )
}

/// What one call of `request` costs (from an unlimited stack).
async fn one_call_cost() -> Usd {
    let resp = leaf(Duration::ZERO, Duration::ZERO)
        .oneshot(request(&Identity::anonymous(), false))
        .await
        .unwrap();
    resp.meta
        .extensions
        .get::<CallCost>()
        .unwrap()
        .total()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_never_overspend() {
    let cost = one_call_cost().await;
    let budget = Usd::from_pico(cost.pico() * 10);
    let ledger = MemoryLedger::new();
    let identity = key_identity(Limits::none().with_max_budget(budget));
    let svc = with_budget(&ledger, leaf(Duration::from_millis(20), Duration::ZERO));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let svc = svc.clone();
        let req = request(&identity, false);
        tasks.push(tokio::spawn(async move { svc.oneshot(req).await }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::BudgetExceeded, "{e}");
                assert!(e.message().contains("key team-bot"), "{}", e.message());
                assert!(!e.message().contains("abc123"), "the key hash leaked");
                refused += 1;
            }
        }
    }
    let b = ledger.balance(&key_line(budget)).await.unwrap();
    assert!(ok <= 10, "{ok} calls succeeded on a budget for 10");
    assert!(ok >= 1);
    assert_eq!(ok + refused, 200);
    assert_eq!(
        b.spent,
        Usd::from_pico(cost.pico() * ok as i128),
        "spend is exact"
    );
    assert!(b.spent <= budget);
    assert_eq!(b.reserved, Usd::ZERO, "every reservation settled");
}

#[tokio::test]
async fn streams_settle_at_their_end_with_their_cost() {
    let ledger = MemoryLedger::new();
    let budget = Usd::from_f64(100.0).unwrap();
    let identity = key_identity(Limits::none().with_max_budget(budget));
    let svc = with_budget(&ledger, leaf(Duration::ZERO, Duration::ZERO));
    let resp = svc.oneshot(request(&identity, true)).await.unwrap();
    // In flight while the stream is open: the worst case is held.
    let held = ledger.balance(&key_line(budget)).await.unwrap();
    assert!(held.reserved > Usd::ZERO);
    assert_eq!(held.spent, Usd::ZERO);
    let ChatBody::Stream(mut s) = resp.body else {
        panic!("not a stream")
    };
    let mut usage = None;
    while let Some(chunk) = s.next().await {
        if let Some(u) = chunk.unwrap().usage {
            usage = Some(u);
        }
    }
    let b = ledger.balance(&key_line(budget)).await.unwrap();
    assert_eq!(b.reserved, Usd::ZERO);
    let u = usage.unwrap();
    // $0.001 per prompt token, $0.002 per completion token.
    let expected = Usd::from_f64(0.001).unwrap() * u.prompt_tokens
        + Usd::from_f64(0.002).unwrap() * u.completion_tokens;
    assert_eq!(b.spent, expected);
}

#[tokio::test]
async fn a_stream_dropped_half_way_is_billed_for_what_arrived() {
    let ledger = MemoryLedger::new();
    let budget = Usd::from_f64(100.0).unwrap();
    let identity = key_identity(Limits::none().with_max_budget(budget));
    let svc = with_budget(&ledger, leaf(Duration::ZERO, Duration::from_millis(5)));
    let resp = svc.oneshot(request(&identity, true)).await.unwrap();
    let ChatBody::Stream(mut s) = resp.body else {
        panic!("not a stream")
    };
    s.next().await.unwrap().unwrap();
    s.next().await.unwrap().unwrap();
    drop(s);
    let b = ledger.balance(&key_line(budget)).await.unwrap();
    assert_eq!(b.reserved, Usd::ZERO);
    // The prompt at least was sent and is billed.
    assert!(
        b.spent >= Usd::from_f64(0.001).unwrap() * 4,
        "{:?}",
        b.spent
    );
}

#[tokio::test]
async fn failures_and_dropped_futures_release_the_reservation() {
    let ledger = MemoryLedger::new();
    let budget = Usd::from_f64(100.0).unwrap();
    let identity = key_identity(Limits::none().with_max_budget(budget));
    // An upstream error: nothing billed.
    let mut cfg = MockConfig::new("mock/m");
    cfg.response = Some(serde_json::json!("litellm.InternalServerError: boom"));
    let failing =
        BoxCloneService::new(CostLayer::new("mock/m", Some(price())).layer(Mock::new(cfg)));
    let err = with_budget(&ledger, failing)
        .oneshot(request(&identity, false))
        .await
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 500);
    let b = ledger.balance(&key_line(budget)).await.unwrap();
    assert_eq!((b.spent, b.reserved), (Usd::ZERO, Usd::ZERO));
    // A caller that gives up mid-call.
    let mut svc = with_budget(&ledger, leaf(Duration::from_secs(3600), Duration::ZERO));
    let fut = svc.ready().await.unwrap().call(request(&identity, false));
    let task = tokio::spawn(fut);
    // Wait (bounded) until the reservation is held, then cancel.
    for _ in 0..1000 {
        if ledger.balance(&key_line(budget)).await.unwrap().reserved > Usd::ZERO {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(ledger.balance(&key_line(budget)).await.unwrap().reserved > Usd::ZERO);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let b = ledger.balance(&key_line(budget)).await.unwrap();
    assert_eq!((b.spent, b.reserved), (Usd::ZERO, Usd::ZERO));
}

#[tokio::test]
async fn requests_without_limits_pass_untouched() {
    let ledger = MemoryLedger::new();
    let svc = with_budget(&ledger, leaf(Duration::ZERO, Duration::ZERO));
    let resp = svc
        .oneshot(request(&Identity::anonymous(), false))
        .await
        .unwrap();
    assert!(resp.meta.extensions.get::<CallCost>().is_some());
}

#[tokio::test]
async fn per_model_and_global_budgets_apply_too() {
    let ledger = MemoryLedger::new();
    let cost = one_call_cost().await;
    // The key may spend three calls' worth on model m (less, counting the
    // worst case held for the next one); the gateway has plenty.
    let limits = Limits::none().with_model_budget(
        "m",
        tollgate::limits::ModelBudget {
            max_budget: Usd::from_pico(cost.pico() * 3),
            window: None,
        },
    );
    let identity = key_identity(limits);
    let scopes =
        LimitScopes::new().global(Limits::none().with_max_budget(Usd::from_f64(1000.0).unwrap()));
    let svc = BoxCloneService::new(
        BudgetLayer::new(Arc::new(ledger.clone()), estimator(), scopes)
            .layer(leaf(Duration::ZERO, Duration::ZERO)),
    );
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..5 {
        match svc.clone().oneshot(request(&identity, false)).await {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::BudgetExceeded);
                assert!(e.message().contains("for model m"), "{}", e.message());
                refused += 1;
            }
        }
    }
    assert!((1..=3).contains(&ok) && refused >= 2, "{ok} {refused}");
    let global = BudgetLine {
        scope: Scope::global(),
        model: None,
        label: "the gateway".into(),
        max_budget: Some(Usd::from_f64(1000.0).unwrap()),
        soft_budget: None,
        window: None,
        budget_start: 0,
    };
    assert_eq!(
        ledger.balance(&global).await.unwrap().spent,
        Usd::from_pico(cost.pico() * ok)
    );
}

#[tokio::test]
async fn rate_limits_refuse_with_retry_after_and_report_what_is_left() {
    let limiter = MemoryRateLimiter::new();
    let identity = key_identity(Limits::none().with_rpm(3).with_tpm(100_000));
    let svc = BoxCloneService::new(
        RateLimitLayer::new(Arc::new(limiter), estimator(), LimitScopes::new())
            .layer(leaf(Duration::ZERO, Duration::ZERO)),
    );
    for left in [2u64, 1, 0] {
        let resp = svc
            .clone()
            .oneshot(request(&identity, false))
            .await
            .unwrap();
        let h = resp
            .meta
            .extensions
            .get::<tollgate::limits::RateLimitState>()
            .unwrap()
            .headers();
        assert_eq!(
            h["x-ratelimit-remaining-requests"],
            left.to_string().as_str()
        );
        assert_eq!(h["x-ratelimit-limit-requests"], "3");
        assert_eq!(h["x-ratelimit-limit-tokens"], "100000");
    }
    let err = svc
        .clone()
        .oneshot(request(&identity, false))
        .await
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 429);
    assert!(!err.kind().is_retryable(), "gateway limits are not retried");
    assert!(err.retry_after().unwrap() >= Duration::from_secs(1));
    assert!(
        err.message().contains("key team-bot") && err.message().contains("3 requests per minute")
    );
}

#[tokio::test]
async fn parallel_limit_frees_slots_when_streams_end() {
    let limiter = MemoryRateLimiter::new();
    let identity = key_identity(Limits::none().with_max_parallel(1));
    let svc = BoxCloneService::new(
        RateLimitLayer::new(Arc::new(limiter), estimator(), LimitScopes::new())
            .layer(leaf(Duration::ZERO, Duration::ZERO)),
    );
    let first = svc.clone().oneshot(request(&identity, true)).await.unwrap();
    let err = svc
        .clone()
        .oneshot(request(&identity, true))
        .await
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 429);
    assert!(err.message().contains("1 parallel requests"));
    let ChatBody::Stream(mut s) = first.body else {
        panic!()
    };
    while s.next().await.is_some() {}
    drop(s);
    svc.clone().oneshot(request(&identity, true)).await.unwrap();
}
