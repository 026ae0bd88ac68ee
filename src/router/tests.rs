use super::*;
use crate::error::{ErrorKind, LimitSource};
use crate::provider::{Mock, MockConfig};
use crate::types::DeploymentInfo;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// A deployment whose answers are scripted: each call pops the next outcome
/// (`Ok` answers with the mock; `Err` fails with that error), with a delay.
#[derive(Clone)]
struct Scripted {
    script: Arc<Mutex<VecDeque<Result<(), Error>>>>,
    calls: Arc<AtomicU32>,
    delay: Duration,
    mock: Mock,
}

impl Scripted {
    fn new(id: &str) -> Self {
        Scripted {
            script: Arc::default(),
            calls: Arc::default(),
            delay: Duration::ZERO,
            mock: Mock::new(MockConfig::new(&format!("mock/{id}"))),
        }
    }

    fn fail_next(&self, n: usize, err: Error) -> &Self {
        let mut s = self.script.lock().unwrap();
        for _ in 0..n {
            s.push_back(Err(err.clone()));
        }
        self
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<ChatRequest> for Scripted {
    type Response = ChatResponse;
    type Error = Error;
    type Future = BoxFuture<Result<ChatResponse, Error>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: ChatRequest) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let next = self.script.lock().unwrap().pop_front().unwrap_or(Ok(()));
        let delay = self.delay;
        let mock = self.mock.clone();
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            next?;
            mock.oneshot(req).await
        })
    }
}

fn deployment(group: &str, id: &str, svc: Scripted) -> Deployment {
    let info = DeploymentInfo {
        id: Arc::from(id),
        model_group: Arc::from(group),
        model: Arc::from(format!("mock/{id}")),
        provider: Arc::from("mock"),
        api_base: None,
    };
    Deployment::new(Arc::new(info), svc)
}

fn req(model: &str) -> ChatRequest {
    ChatRequest::from_json(
        format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
            .as_bytes(),
    )
    .unwrap()
}

async fn served_by(router: &Router, model: &str) -> Result<String, Error> {
    let resp = router.clone().oneshot(req(model)).await?;
    Ok(resp.meta.deployment.unwrap().id.to_string())
}

fn upstream(kind: ErrorKind) -> Error {
    Error::new(kind, "upstream said no").with_provider("mock")
}

#[tokio::test(flavor = "current_thread")]
async fn weighted_shuffle_matches_weights_within_two_percent() {
    fastrand::seed(7);
    let router = Router::builder()
        .deployment(deployment("g", "a", Scripted::new("a")).weight(1.0))
        .deployment(deployment("g", "b", Scripted::new("b")).weight(3.0))
        .deployment(deployment("g", "c", Scripted::new("c")).weight(6.0))
        .build();
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..10_000 {
        *counts
            .entry(served_by(&router, "g").await.unwrap())
            .or_default() += 1;
    }
    for (id, want) in [("a", 0.1), ("b", 0.3), ("c", 0.6)] {
        let got = f64::from(counts[id]) / 10_000.0;
        assert!(
            (got - want).abs() < 0.02,
            "{id}: {got} vs {want} ({counts:?})"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn rpm_is_the_shuffle_weight_when_no_weight_is_given() {
    fastrand::seed(11);
    let router = Router::builder()
        .deployment(deployment("g", "a", Scripted::new("a")).rpm(100_000))
        .deployment(deployment("g", "b", Scripted::new("b")).rpm(300_000))
        .build();
    let mut b = 0;
    for _ in 0..10_000 {
        if served_by(&router, "g").await.unwrap() == "b" {
            b += 1;
        }
    }
    let share = f64::from(b) / 10_000.0;
    assert!((share - 0.75).abs() < 0.02, "{share}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_deployment_cools_down_then_comes_back() {
    let bad = Scripted::new("bad");
    bad.fail_next(4, upstream(ErrorKind::Upstream(500)));
    let good = Scripted::new("good");
    let router = Router::builder()
        .deployment(deployment("g", "bad", bad.clone()).order(1))
        .deployment(deployment("g", "good", good.clone()).order(2))
        .build();
    // allowed_fails = 3: the fourth failure in a minute cools it down.
    for _ in 0..4 {
        let err = router.clone().oneshot(req("g")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Upstream(500));
    }
    let bad_stats = router.group("g").unwrap().deployments[0].stats();
    assert_eq!(bad_stats.cooldown_remaining(), Some(Duration::from_secs(5)));
    assert_eq!(bad_stats.last_error().as_deref(), Some("upstream said no"));
    // While it cools down the overflow deployment serves.
    assert_eq!(served_by(&router, "g").await.unwrap(), "good");
    tokio::time::advance(Duration::from_secs(5)).await;
    // Back in: the lowest order serves again (the probe succeeds).
    assert_eq!(served_by(&router, "g").await.unwrap(), "bad");
    assert_eq!(bad.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn all_cooling_down_is_429_with_retry_after_and_the_last_error() {
    let a = Scripted::new("a");
    a.fail_next(
        1,
        upstream(ErrorKind::RateLimited(LimitSource::Upstream))
            .with_retry_after(Duration::from_secs(20)),
    );
    let b = Scripted::new("b");
    b.fail_next(
        1,
        upstream(ErrorKind::Authentication).with_message("invalid x-api-key"),
    );
    let router = Router::builder()
        .deployment(deployment("g", "a", a).order(1))
        .deployment(deployment("g", "b", b).order(2))
        .build();
    let first = router.clone().oneshot(req("g")).await.unwrap_err();
    assert!(first.alternatives_available(), "b could still serve");
    let second = router.clone().oneshot(req("g")).await.unwrap_err();
    assert_eq!(second.kind(), ErrorKind::Authentication);
    assert!(!second.alternatives_available());
    let err = router.clone().oneshot(req("g")).await.unwrap_err();
    assert_eq!(err.status().as_u16(), 429);
    assert_eq!(err.code(), Some("deployments_cooling_down"));
    // b cools for 5 s (auth), a for 20 s (its Retry-After): the first recovery is in 5 s.
    assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
    assert!(
        err.message().contains("invalid x-api-key"),
        "{}",
        err.message()
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(served_by(&router, "g").await.unwrap(), "b");
}

#[tokio::test(start_paused = true)]
async fn a_single_deployment_is_never_cooled_down() {
    let only = Scripted::new("only");
    only.fail_next(10, upstream(ErrorKind::RateLimited(LimitSource::Upstream)));
    let router = Router::builder()
        .deployment(deployment("g", "only", only.clone()))
        .build();
    for _ in 0..10 {
        assert!(
            router
                .clone()
                .oneshot(req("g"))
                .await
                .unwrap_err()
                .is_rate_limited()
        );
    }
    assert_eq!(only.calls(), 10);
    assert!(
        router.group("g").unwrap().deployments[0]
            .stats()
            .cooldown_remaining()
            .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn usage_based_routing_never_exceeds_rpm() {
    let router = Router::builder()
        .strategy(Strategy::UsageBased)
        .deployment(deployment("g", "small", Scripted::new("small")).rpm(5))
        .deployment(deployment("g", "big", Scripted::new("big")).rpm(10))
        .build();
    let mut counts: HashMap<String, u32> = HashMap::new();
    let mut refused = 0;
    for _ in 0..20 {
        match served_by(&router, "g").await {
            Ok(id) => *counts.entry(id).or_default() += 1,
            Err(e) => {
                assert_eq!(e.code(), Some("deployment_capacity"));
                assert_eq!(e.status().as_u16(), 429);
                refused += 1;
            }
        }
    }
    assert_eq!(counts["small"], 5);
    assert_eq!(counts["big"], 10);
    assert_eq!(refused, 5);
    // A new minute, new room.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(served_by(&router, "g").await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn latency_based_routing_moves_traffic_away_from_a_slow_deployment() {
    let mut slow = Scripted::new("slow");
    slow.delay = Duration::from_millis(900);
    let mut fast = Scripted::new("fast");
    fast.delay = Duration::from_millis(100);
    let router = Router::builder()
        .strategy(Strategy::LatencyBased { buffer: 0.1 })
        .deployment(deployment("g", "slow", slow.clone()))
        .deployment(deployment("g", "fast", fast.clone()))
        .build();
    for _ in 0..50 {
        served_by(&router, "g").await.unwrap();
    }
    // Both were tried once to measure them; after that the fast one takes everything.
    assert_eq!(slow.calls(), 1);
    assert_eq!(fast.calls(), 49);
}

#[tokio::test]
async fn least_busy_prefers_idle_deployments() {
    // Both deployments hold every request, so each pick sees the other's load:
    // least-busy must alternate and end balanced whatever its tie-breaking is
    // (a random or sticky pick would pile up on one side).
    let mut a = Scripted::new("a");
    a.delay = Duration::from_secs(3600);
    let mut b = Scripted::new("b");
    b.delay = Duration::from_secs(3600);
    let router = Router::builder()
        .strategy(Strategy::LeastBusy)
        .deployment(deployment("g", "a", a.clone()))
        .deployment(deployment("g", "b", b.clone()))
        .build();
    let in_flight = |i: usize| {
        router.group("g").unwrap().deployments[i]
            .stats()
            .in_flight()
    };
    let mut pending = Vec::new();
    for n in 1..=8u32 {
        let r = router.clone();
        pending.push(tokio::spawn(async move { served_by(&r, "g").await }));
        // Current-thread runtime: the spawned task runs to its first await
        // (where the pick is made) before this one resumes.
        for _ in 0..1000 {
            if in_flight(0) + in_flight(1) == n {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(in_flight(0) + in_flight(1), n, "request {n} never started");
        assert!(in_flight(0).abs_diff(in_flight(1)) <= 1, "after {n} picks");
    }
    assert_eq!((in_flight(0), in_flight(1)), (4, 4));
    for p in pending {
        p.abort();
    }
}

#[tokio::test]
async fn max_parallel_requests_is_a_cap_and_slots_are_released_on_cancel() {
    let mut slow = Scripted::new("slow");
    slow.delay = Duration::from_secs(3600);
    let router = Router::builder()
        .deployment(deployment("g", "slow", slow).max_parallel_requests(2))
        .build();
    let r1 = router.clone();
    let h1 = tokio::spawn(async move { served_by(&r1, "g").await });
    let r2 = router.clone();
    let h2 = tokio::spawn(async move { served_by(&r2, "g").await });
    while router.group("g").unwrap().deployments[0]
        .stats()
        .in_flight()
        < 2
    {
        tokio::task::yield_now().await;
    }
    let err = served_by(&router, "g").await.unwrap_err();
    assert_eq!(err.code(), Some("deployment_capacity"));
    h1.abort();
    h2.abort();
    let _ = h1.await;
    let _ = h2.await;
    assert_eq!(
        router.group("g").unwrap().deployments[0]
            .stats()
            .in_flight(),
        0
    );
}

#[tokio::test]
async fn wildcards_most_specific_wins_and_fill_in_the_model() {
    let router = Router::builder()
        .deployment(deployment("*", "any", Scripted::new("any")))
        .deployment({
            let mut d = deployment("openai/*", "openai", Scripted::new("openai"));
            let mut info = (*d.info).clone();
            info.model = Arc::from("openai/*");
            d.info = Arc::new(info);
            d
        })
        .deployment(deployment("openai/gpt-4o", "exact", Scripted::new("exact")))
        .build();
    assert_eq!(served_by(&router, "openai/gpt-4o").await.unwrap(), "exact");
    assert_eq!(
        served_by(&router, "openai/gpt-4.1").await.unwrap(),
        "openai"
    );
    assert_eq!(served_by(&router, "claude-x").await.unwrap(), "any");
    let (group, cap) = router.resolve("openai/o3").unwrap();
    assert_eq!((&*group.name, cap), ("openai/*", Some("o3")));
    assert!(router.models().iter().all(|m| !m.id.contains('*')));
}

#[tokio::test]
async fn tag_filtering() {
    let tagged = |id: &str, tags: &[&str]| {
        deployment("g", id, Scripted::new(id)).tags(tags.iter().map(|t| (*t).to_owned()).collect())
    };
    let router = Router::builder()
        .config(RouterConfig {
            enable_tag_filtering: true,
            ..RouterConfig::default()
        })
        .deployment(tagged("paid", &["paid"]))
        .deployment(tagged("free", &["free", "default"]))
        .build();
    let with_tags = |tags: &[&str]| {
        let mut r = req("g");
        r.extensions.insert(Tags(
            tags.iter()
                .map(|t| (*t).to_owned())
                .collect::<Vec<_>>()
                .into(),
        ));
        r
    };
    for _ in 0..20 {
        let resp = router.clone().oneshot(with_tags(&["paid"])).await.unwrap();
        assert_eq!(&*resp.meta.deployment.unwrap().id, "paid");
        // Unknown tags and no tags go to the `default` deployment.
        let resp = router.clone().oneshot(with_tags(&["other"])).await.unwrap();
        assert_eq!(&*resp.meta.deployment.unwrap().id, "free");
        assert_eq!(served_by(&router, "g").await.unwrap(), "free");
    }
}

#[tokio::test]
async fn pre_call_checks_skip_small_context_windows() {
    let sized = |id: &str, window: u64| {
        let mut d = deployment("g", id, Scripted::new(id));
        d.price = Some(Arc::new(crate::pricing::ModelPrice {
            max_input_tokens: Some(window),
            ..Default::default()
        }));
        d
    };
    let router = Router::builder()
        .config(RouterConfig {
            pre_call_checks: true,
            ..RouterConfig::default()
        })
        .deployment(sized("small", 50).order(1))
        .deployment(sized("large", 5_000).order(2))
        .build();
    let long = "word ".repeat(200);
    let body = format!(r#"{{"model":"g","messages":[{{"role":"user","content":"{long}"}}]}}"#);
    let resp = router
        .clone()
        .oneshot(ChatRequest::from_json(body.as_bytes()).unwrap())
        .await
        .unwrap();
    assert_eq!(&*resp.meta.deployment.unwrap().id, "large");
    let huge = "word ".repeat(10_000);
    let body = format!(r#"{{"model":"g","messages":[{{"role":"user","content":"{huge}"}}]}}"#);
    let err = router
        .clone()
        .oneshot(ChatRequest::from_json(body.as_bytes()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextWindowExceeded);
    assert_eq!(err.status().as_u16(), 400);
}

#[tokio::test]
async fn unknown_model_is_404_and_stream_model_is_renamed() {
    let r = Router::builder()
        .deployment(Deployment::chat("g", Mock::new(MockConfig::new("mock/x"))))
        .alias("alias", "g")
        .alias("dangling", "nope")
        .hidden_alias("secret-name", "g")
        .build();
    let err = r.clone().oneshot(req("nope")).await.unwrap_err();
    assert_eq!(err.status().as_u16(), 404);
    assert_eq!(err.code(), Some("model_not_found"));
    let resp = r
        .clone()
        .oneshot(
            ChatRequest::from_json(br#"{"model":"alias","messages":[],"stream":true}"#).unwrap(),
        )
        .await
        .unwrap();
    let c = resp
        .into_stream()
        .unwrap()
        .collect_completion()
        .await
        .unwrap();
    assert_eq!(c.model, "alias");
    let ids: Vec<_> = r.models().into_iter().map(|m| m.id).collect();
    assert_eq!(ids, vec!["alias", "g"]);
    assert!(r.group("secret-name").is_some());
}

#[tokio::test(start_paused = true)]
async fn a_stream_failing_midway_counts_against_the_deployment() {
    use crate::stream::ChatStream;
    #[derive(Clone)]
    struct Breaks;
    impl Service<ChatRequest> for Breaks {
        type Response = ChatResponse;
        type Error = Error;
        type Future = std::future::Ready<Result<ChatResponse, Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: ChatRequest) -> Self::Future {
            std::future::ready(Ok(ChatResponse::stream(ChatStream::from_results(vec![
                Err(Error::new(ErrorKind::Connection, "reset").with_provider("mock")),
            ]))))
        }
    }
    let info = |id: &str| {
        Arc::new(DeploymentInfo {
            id: Arc::from(id),
            model_group: Arc::from("g"),
            model: Arc::from("mock/x"),
            provider: Arc::from("mock"),
            api_base: None,
        })
    };
    let router = Router::builder()
        .deployment(Deployment::new(info("breaks"), Breaks).order(1))
        .deployment(Deployment::new(info("spare"), Breaks).order(2))
        .build();
    for _ in 0..4 {
        let s = router
            .clone()
            .oneshot(
                ChatRequest::from_json(br#"{"model":"g","messages":[],"stream":true}"#).unwrap(),
            )
            .await
            .unwrap()
            .into_stream()
            .unwrap();
        assert!(s.collect_completion().await.is_err());
    }
    assert!(
        router.group("g").unwrap().deployments[0]
            .stats()
            .cooldown_remaining()
            .is_some()
    );
    assert_eq!(
        router.group("g").unwrap().deployments[0]
            .stats()
            .in_flight(),
        0
    );
}

/// Answers a stream whose first item is an error that names no provider
/// (as a stream decoder's or an idle timer's errors do).
#[derive(Clone)]
struct BrokenStream;

impl Service<ChatRequest> for BrokenStream {
    type Response = ChatResponse;
    type Error = Error;
    type Future = BoxFuture<Result<ChatResponse, Error>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: ChatRequest) -> Self::Future {
        Box::pin(async {
            Ok(ChatResponse::stream(ChatStream::from_results(vec![Err(
                Error::new(
                    ErrorKind::BadGateway,
                    "the upstream stream chunk is not valid",
                ),
            )])))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_deployments_stream_errors_are_blamed_on_it_and_count_towards_its_cooldown() {
    use futures_util::StreamExt;
    let info = DeploymentInfo {
        id: Arc::from("a"),
        model_group: Arc::from("g"),
        model: Arc::from("mock/a"),
        provider: Arc::from("openai"),
        api_base: None,
    };
    let router = Router::builder()
        .deployment(Deployment::new(Arc::new(info), BrokenStream).order(1))
        .deployment(deployment("g", "b", Scripted::new("b")).order(2))
        .build();
    // allowed_fails = 3: four broken streams cool `a` down.
    for _ in 0..4 {
        let resp = router.clone().oneshot(req("g")).await.unwrap();
        assert_eq!(&*resp.meta.deployment.as_ref().unwrap().id, "a");
        let mut stream = resp.into_stream().ok().unwrap();
        let err = stream.next().await.unwrap().unwrap_err();
        assert_eq!(err.provider(), Some("openai"));
        assert_eq!(err.deployment(), Some("a"));
        assert!(stream.next().await.is_none());
    }
    assert_eq!(served_by(&router, "g").await.unwrap(), "b");
}
