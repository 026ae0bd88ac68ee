//! Budgets and rate limits in a real Redis, shared by several "replicas"
//! (independent ledgers and limiters with their own connections).

use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate::limits::{
    BudgetLine, BudgetWindow, Ledger, ManualClock, MemoryLedger, RateCheck, RateKind, RateLimiter,
    RedisConn, RedisLedger, RedisRateLimiter, Scope, ScopeKind, SpendHistory, SystemClock,
};
use tollgate::pricing::Usd;
use tollgate::provider::BoxFuture;
use tollgate::{Error, ErrorKind};

/// The Redis URL, or `None` (with the reason printed) when there is none and
/// the run does not require services.
async fn redis_url() -> Option<String> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let reachable = match RedisConn::new(&url, "probe") {
        Ok(c) => c.ping().await.is_ok(),
        Err(_) => false,
    };
    if reachable {
        return Some(url);
    }
    if std::env::var("TOLLGATE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("Redis is required (TOLLGATE_REQUIRE_SERVICES=1) but {url} is unreachable");
    }
    eprintln!("skipping: Redis at {url} is unreachable (set REDIS_URL)");
    None
}

fn namespace() -> String {
    format!("test-{}", uuid::Uuid::now_v7().simple())
}

fn usd(d: f64) -> Usd {
    Usd::from_f64(d).unwrap()
}

fn line(max: f64) -> BudgetLine {
    BudgetLine {
        scope: Scope::new(ScopeKind::Key, "hash1"),
        model: None,
        label: "key bot".into(),
        max_budget: Some(usd(max)),
        soft_budget: None,
        window: None,
        budget_start: 0,
    }
}

struct FixedHistory(Usd);
impl SpendHistory for FixedHistory {
    fn spent(&self, _: &Scope, _: Option<&str>, _: Option<u64>) -> BoxFuture<Result<Usd, Error>> {
        Box::pin(std::future::ready(Ok(self.0)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_overspend_one_budget() {
    let Some(url) = redis_url().await else { return };
    let ns = namespace();
    let replicas: Vec<RedisLedger> = (0..2)
        .map(|_| RedisLedger::new(RedisConn::new(&url, &ns).unwrap(), MemoryLedger::builder()))
        .collect();
    let lines: Arc<[BudgetLine]> = Arc::from(vec![line(1.0)]);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let ledger = replicas[i % 2].clone();
        let lines = lines.clone();
        tasks.push(tokio::spawn(async move {
            match ledger.reserve(lines, usd(0.1)).await {
                Ok(r) => {
                    tokio::task::yield_now().await;
                    ledger.settle(r, usd(0.1));
                    Ok(true)
                }
                Err(e) if e.kind() == ErrorKind::BudgetExceeded => Ok(false),
                Err(e) => Err(e),
            }
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap().unwrap());
    }
    for r in &replicas {
        r.flush().await;
    }
    let b = replicas[0].balance(&line(1.0)).await.unwrap();
    assert_eq!(ok, 10, "$1 holds exactly ten $0.10 calls");
    assert_eq!(b.spent, usd(1.0));
    assert_eq!(b.reserved, Usd::ZERO);
}

#[tokio::test]
async fn history_seeds_a_new_line_once() {
    let Some(url) = redis_url().await else { return };
    let ns = namespace();
    let ledger = RedisLedger::new(
        RedisConn::new(&url, &ns).unwrap(),
        MemoryLedger::builder().history(Arc::new(FixedHistory(usd(0.95)))),
    );
    let lines: Arc<[BudgetLine]> = Arc::from(vec![line(1.0)]);
    let e = ledger.reserve(lines.clone(), usd(0.1)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BudgetExceeded);
    assert!(e.message().contains("key bot"));
    let r = ledger.reserve(lines.clone(), usd(0.05)).await.unwrap();
    ledger.settle(r, usd(0.01));
    ledger.flush().await;
    // A second replica with a different (stale) history sees Redis, not it.
    let other = RedisLedger::new(
        RedisConn::new(&url, &ns).unwrap(),
        MemoryLedger::builder().history(Arc::new(FixedHistory(Usd::ZERO))),
    );
    assert_eq!(other.balance(&line(1.0)).await.unwrap().spent, usd(0.96));
}

#[tokio::test]
async fn windows_reset_exactly_on_time_in_redis() {
    let Some(url) = redis_url().await else { return };
    let ns = namespace();
    let clock = ManualClock::new(2_000_000);
    let ledger = RedisLedger::new(
        RedisConn::new(&url, &ns).unwrap(),
        MemoryLedger::builder().clock(Arc::new(clock.clone())),
    );
    let mut l = line(1.0);
    l.window = Some((BudgetWindow::Seconds(30), 2_000));
    let lines: Arc<[BudgetLine]> = Arc::from(vec![l.clone()]);
    let r = ledger.reserve(lines.clone(), usd(1.0)).await.unwrap();
    ledger.settle(r, usd(1.0));
    ledger.flush().await;
    clock.set_ms(2_029_999);
    assert!(ledger.reserve(lines.clone(), usd(0.01)).await.is_err());
    clock.set_ms(2_030_000);
    let r = ledger.reserve(lines.clone(), usd(1.0)).await.unwrap();
    ledger.settle(r, usd(0.25));
    ledger.flush().await;
    let b = ledger.balance(&l).await.unwrap();
    assert_eq!(
        (b.spent, b.reserved, b.window.unwrap().index),
        (usd(0.25), Usd::ZERO, 1)
    );
}

#[tokio::test]
async fn a_dead_replicas_reservations_expire() {
    let Some(url) = redis_url().await else { return };
    let ns = namespace();
    let clock = ManualClock::new(5_000_000);
    let dead = RedisLedger::new(
        RedisConn::new(&url, &ns).unwrap(),
        MemoryLedger::builder().clock(Arc::new(clock.clone())),
    )
    .reservation_ttl(Duration::from_secs(60));
    let lines: Arc<[BudgetLine]> = Arc::from(vec![line(1.0)]);
    // The replica dies holding $0.90: the settlement never comes.
    std::mem::forget(dead.reserve(lines.clone(), usd(0.9)).await.unwrap());
    let alive = RedisLedger::new(
        RedisConn::new(&url, &ns).unwrap(),
        MemoryLedger::builder().clock(Arc::new(clock.clone())),
    );
    assert!(alive.reserve(lines.clone(), usd(0.2)).await.is_err());
    clock.advance_ms(60_001);
    let r = alive.reserve(lines.clone(), usd(0.2)).await.unwrap();
    alive.settle(r, usd(0.2));
    alive.flush().await;
    let b = alive.balance(&line(1.0)).await.unwrap();
    assert_eq!((b.spent, b.reserved), (usd(0.2), Usd::ZERO));
}

fn rpm(limit: u64) -> RateCheck {
    RateCheck {
        scope: Scope::new(ScopeKind::Team, "t1"),
        model: None,
        label: "team t1".into(),
        kind: RateKind::Requests,
        limit,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_enforce_one_rpm_limit() {
    let Some(url) = redis_url().await else { return };
    let ns = namespace();
    let limiters: Vec<RedisRateLimiter> = (0..2)
        .map(|_| RedisRateLimiter::new(RedisConn::new(&url, &ns).unwrap(), Arc::new(SystemClock)))
        .collect();
    let checks: Arc<[RateCheck]> = Arc::from(vec![rpm(60)]);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let l = limiters[i % 2].clone();
        let c = checks.clone();
        tasks.push(tokio::spawn(async move {
            match l.acquire(c, 0).await {
                Ok(g) => {
                    l.finish(g, None);
                    Ok(true)
                }
                Err(e) if e.status().as_u16() == 429 => {
                    assert!(e.retry_after().is_some());
                    Ok(false)
                }
                Err(e) => Err(e),
            }
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap().unwrap());
    }
    assert_eq!(ok, 60, "one limit of 60 across both replicas");
}

#[tokio::test]
async fn parallel_slots_and_token_corrections_in_redis() {
    let Some(url) = redis_url().await else { return };
    let ns = namespace();
    let clock = ManualClock::new(9 * 60_000 + 1_000);
    let limiter =
        RedisRateLimiter::new(RedisConn::new(&url, &ns).unwrap(), Arc::new(clock.clone()));
    let mut par = rpm(1);
    par.kind = RateKind::Parallel;
    let mut tpm = rpm(1_000);
    tpm.kind = RateKind::Tokens;
    let both: Arc<[RateCheck]> = Arc::from(vec![par.clone(), tpm.clone()]);
    let g = limiter.acquire(both.clone(), 900).await.unwrap();
    assert_eq!(g.remaining[0].remaining, 100);
    let e = limiter.acquire(both.clone(), 10).await.unwrap_err();
    assert!(
        e.message().contains("1 parallel requests"),
        "{}",
        e.message()
    );
    limiter.finish(g, Some(100));
    limiter.flush().await;
    // The slot is free and only the 100 tokens actually used still count.
    let g = limiter.acquire(both.clone(), 800).await.unwrap();
    assert_eq!(g.remaining[0].remaining, 100);
    limiter.finish(g, None);
    limiter.flush().await;
}

#[tokio::test]
async fn redis_down_fails_closed_for_budgets_and_fast() {
    // A port nobody listens on.
    let sock = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    drop(sock);
    let url = format!("redis://127.0.0.1:{port}");
    let ledger = RedisLedger::new(
        RedisConn::new(&url, "down").unwrap(),
        MemoryLedger::builder(),
    );
    let started = Instant::now();
    let e = ledger
        .reserve(Arc::from(vec![line(1.0)]), usd(0.1))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServiceUnavailable);
    assert!(!e.message().contains(&port.to_string()), "{}", e.message());
    assert!(started.elapsed() < Duration::from_secs(5));
    let limiter =
        RedisRateLimiter::new(RedisConn::new(&url, "down").unwrap(), Arc::new(SystemClock));
    assert_eq!(
        limiter
            .acquire(Arc::from(vec![rpm(5)]), 0)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::ServiceUnavailable
    );
    let open = RedisRateLimiter::new(RedisConn::new(&url, "down").unwrap(), Arc::new(SystemClock))
        .fail_open(true);
    let g = open.acquire(Arc::from(vec![rpm(5)]), 0).await.unwrap();
    open.finish(g, None);
}

#[tokio::test]
async fn cooldowns_started_by_one_replica_reach_the_others() {
    use tollgate::limits::SharedCooldowns;
    use tollgate::provider::{Mock, MockConfig};
    use tollgate::router::{Deployment, Router};
    use tower::ServiceExt;
    let Some(url) = redis_url().await else { return };
    let ns = namespace();
    let replica = || {
        let mut bad = MockConfig::new("mock/bad");
        bad.response = Some(serde_json::json!("litellm.AuthenticationError: revoked"));
        let good = MockConfig::new("mock/good");
        let dep = |cfg: MockConfig| {
            let mut info = (*cfg.info).clone();
            info.model_group = "g".into();
            Deployment::new(Arc::new(info), Mock::new(cfg))
        };
        Router::builder()
            .deployment(dep(bad))
            .deployment(dep(good))
            .build()
    };
    let (a, b) = (replica(), replica());
    let share_a = SharedCooldowns::new(RedisConn::new(&url, &ns).unwrap());
    let share_b = SharedCooldowns::new(RedisConn::new(&url, &ns).unwrap());
    a.set_cooldown_sink(Arc::new(share_a));
    let cooling = |r: &Router| {
        r.group("g").unwrap().deployments[0]
            .stats()
            .cooldown_remaining()
            .is_some()
    };
    // Replica A meets the revoked key (an auth error cools down at once).
    for _ in 0..20 {
        let req = tollgate::ChatRequest::from_json(
            br#"{"model":"g","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        let _ = a.clone().oneshot(req).await;
        if cooling(&a) {
            break;
        }
    }
    assert!(cooling(&a));
    assert!(!cooling(&b));
    // B learns it at its next sync (poll until the write has landed).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cooling(&b) && Instant::now() < deadline {
        share_b.sync(&b).await.unwrap();
        tokio::task::yield_now().await;
    }
    assert!(cooling(&b), "replica B never learned of the cooldown");
    let left = b.group("g").unwrap().deployments[0]
        .stats()
        .cooldown_remaining()
        .unwrap();
    assert!(
        left <= Duration::from_secs(5) + Duration::from_millis(100),
        "{left:?}"
    );
}
