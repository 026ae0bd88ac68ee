#![allow(missing_docs)] // criterion_group! generates an undocumented function
//! Per-request overhead of each layer, and of the full library stack, around
//! a leaf that answers at once. Run with `cargo bench --bench layers`.
//!
//! The leaf returns a prebuilt completion (a clone: two small allocations),
//! so the numbers are what the layers add, not what a provider costs.
//!
//! Like the proxy binary, the bench allocates with mimalloc (the default
//! `mimalloc` feature); `--no-default-features --features proxy,tiktoken`
//! measures the same stack on the system allocator.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use tollgate::auth::Identity;
use tollgate::cost::CostLayer;
use tollgate::fallback::{FallbackConfig, FallbackLayer};
use tollgate::limits::{
    BudgetLayer, LimitScopes, Limits, MemoryLedger, MemoryRateLimiter, PriceEstimator,
    RateLimitLayer, Scope, ScopeKind, Subject, Subjects,
};
use tollgate::observe::{CompletionRecord, ObserveLayer, RecordSink};
use tollgate::pricing::Usd;
use tollgate::retry::{RetryLayer, RetryPolicy};
use tollgate::router::{Deployment, Router};
use tollgate::timeout::{TimeoutLayer, Timeouts};
use tollgate::types::{
    ChatCompletion, ChatResponse, Choice, DeploymentInfo, FinishReason, ResponseMessage,
};
use tollgate::{ChatRequest, Error, Usage};
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

type Chat = BoxCloneService<ChatRequest, ChatResponse, Error>;

/// A leaf that answers immediately with a fixed completion.
#[derive(Clone)]
struct Instant(Arc<ChatCompletion>);

impl Service<ChatRequest> for Instant {
    type Response = ChatResponse;
    type Error = Error;
    type Future = std::future::Ready<Result<ChatResponse, Error>>;
    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Error>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: ChatRequest) -> Self::Future {
        std::future::ready(Ok(ChatResponse::complete((*self.0).clone())))
    }
}

fn leaf() -> Instant {
    let mut c = ChatCompletion::new("chatcmpl-1", "gpt-4o-mini", 1_700_000_000);
    c.choices.push(Choice::new(
        0,
        ResponseMessage::text("Hello there!"),
        FinishReason::Stop,
    ));
    c.usage = Some(Usage::new(12, 3));
    Instant(Arc::new(c))
}

struct Discard;
impl RecordSink for Discard {
    fn record(&self, r: &CompletionRecord) {
        black_box(r);
    }

    fn wants_attempts(&self) -> bool {
        false
    }
}

fn request(identity: &Identity) -> ChatRequest {
    let mut r = ChatRequest::from_json(
        br#"{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"user","content":"Say hello in one short sentence."}]}"#,
    )
    .unwrap();
    r.extensions.insert(identity.clone());
    r
}

fn key_identity() -> Identity {
    let mut id = Identity::anonymous();
    id.key_hash = Some("0123456789abcdef".into());
    id.key_alias = Some("bench".into());
    let limits = Limits::none()
        .with_max_budget(Usd::from_f64(1e9).unwrap())
        .with_rpm(u64::MAX / 4)
        .with_tpm(u64::MAX / 4);
    // Named as the proxy's key auth names it.
    id.subjects = Subjects::from(vec![
        Subject::new(Scope::new(ScopeKind::Key, "0123456789abcdef"), limits, 0)
            .with_label("key bench"),
    ]);
    id
}

fn router<S>(inner: S) -> Router
where
    S: Service<ChatRequest, Response = ChatResponse, Error = Error> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let info = Arc::new(DeploymentInfo {
        id: "d1".into(),
        model_group: "gpt-4o-mini".into(),
        model: "openai/gpt-4o-mini".into(),
        provider: "openai".into(),
        api_base: None,
    });
    Router::builder()
        .deployment(Deployment::new(info, inner))
        .build()
}

fn estimator() -> Arc<PriceEstimator> {
    Arc::new(PriceEstimator::new().group(
        "gpt-4o-mini",
        "openai/gpt-4o-mini",
        tollgate::pricing::model_info("openai/gpt-4o-mini"),
    ))
}

fn bench_one(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    svc: Chat,
    identity: &Identity,
) {
    c.bench_function(name, |b| {
        b.to_async(rt).iter(|| {
            let svc = svc.clone();
            let req = request(identity);
            async move { black_box(svc.oneshot(req).await.unwrap()) }
        })
    });
}

fn layers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    tollgate::tokens::warm_up();
    let anon = Identity::anonymous();
    let key = key_identity();
    let base: Chat = BoxCloneService::new(leaf());
    bench_one(c, &rt, "leaf alone (baseline)", base.clone(), &anon);
    bench_one(
        c,
        &rt,
        "cost",
        BoxCloneService::new(CostLayer::for_model("openai/gpt-4o-mini").layer(leaf())),
        &anon,
    );
    bench_one(
        c,
        &rt,
        "timeout",
        BoxCloneService::new(
            TimeoutLayer::new(Timeouts {
                total: Some(Duration::from_secs(600)),
                ..Timeouts::default()
            })
            .layer(leaf()),
        ),
        &anon,
    );
    bench_one(
        c,
        &rt,
        "router",
        BoxCloneService::new(router(leaf())),
        &anon,
    );
    bench_one(
        c,
        &rt,
        "retry",
        BoxCloneService::new(RetryLayer::new(RetryPolicy::default()).layer(leaf())),
        &anon,
    );
    bench_one(
        c,
        &rt,
        "fallback",
        BoxCloneService::new(FallbackLayer::new(FallbackConfig::default()).layer(base.clone())),
        &anon,
    );
    bench_one(
        c,
        &rt,
        "observe",
        BoxCloneService::new(ObserveLayer::new(Arc::new(Discard)).layer(leaf())),
        &anon,
    );
    let ledger = MemoryLedger::new();
    bench_one(
        c,
        &rt,
        "budget (key budget, in memory)",
        BoxCloneService::new(
            BudgetLayer::new(Arc::new(ledger.clone()), estimator(), LimitScopes::new())
                .layer(base.clone()),
        ),
        &key,
    );
    bench_one(
        c,
        &rt,
        "rate limit (key rpm + tpm, in memory)",
        BoxCloneService::new(
            RateLimitLayer::new(
                Arc::new(MemoryRateLimiter::new()),
                estimator(),
                LimitScopes::new(),
            )
            .layer(base.clone()),
        ),
        &key,
    );
    // Everything, as the proxy stacks it.
    let per_deployment = TimeoutLayer::new(Timeouts {
        total: Some(Duration::from_secs(600)),
        ..Timeouts::default()
    })
    .layer(CostLayer::for_model("openai/gpt-4o-mini").layer(leaf()));
    let full: Chat = BoxCloneService::new(
        ObserveLayer::new(Arc::new(Discard)).layer(
            RateLimitLayer::new(
                Arc::new(MemoryRateLimiter::new()),
                estimator(),
                LimitScopes::new(),
            )
            .layer(
                BudgetLayer::new(
                    Arc::new(MemoryLedger::new()),
                    estimator(),
                    LimitScopes::new(),
                )
                .layer(
                    FallbackLayer::new(FallbackConfig::default()).layer(
                        RetryLayer::new(RetryPolicy::default()).layer(router(per_deployment)),
                    ),
                ),
            ),
        ),
    );
    bench_one(c, &rt, "full stack, anonymous", full.clone(), &anon);
    bench_one(c, &rt, "full stack, key with budget and limits", full, &key);
}

/// Checking a virtual key that is already cached: a SHA-256 and a map
/// look-up, no I/O (the database is closed before measuring).
fn cached_key_auth(c: &mut Criterion) {
    use tollgate::auth::Authenticate;
    use tollgate::store::{KeyAuth, KeyAuthConfig, ManagementApi, Store, StoreOptions};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("tollgate-bench-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let master = "sk-bench-master";
    let (auth, key, store) = rt.block_on(async {
        let store = Store::open(&StoreOptions::new(url)).await.unwrap();
        let config = KeyAuthConfig {
            master_key: Some(tollgate::Secret::new(master)),
            ..KeyAuthConfig::default()
        };
        let auth = KeyAuth::new(store.clone(), config);
        let api = ManagementApi::new(store.clone());
        let made = api
            .handle(
                &Identity::admin(master),
                &http::Method::POST,
                "/key/generate",
                None,
                br#"{"models": ["gpt-4o-mini"], "max_budget": 10, "rpm_limit": 1000}"#,
            )
            .await
            .unwrap();
        let key = made["key"].as_str().unwrap().to_owned();
        auth.authenticate(Some(&key)).await.unwrap();
        (auth, key, store)
    });
    rt.block_on(store.close());
    c.bench_function("auth (cached virtual key)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(auth.authenticate(Some(&key)).await.unwrap()) })
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, layers, cached_key_auth);
criterion_main!(benches);
