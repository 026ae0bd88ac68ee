//! Virtual-key budgets and rate limits through the proxy binary, on every
//! backend: SQLite (one replica), PostgreSQL (one replica), and two replicas
//! sharing PostgreSQL + Redis. Every request is priced exactly: the model
//! costs $0.001 per token and the upstream answers `chat_text.resp.json`
//! (14 prompt + 37 completion tokens = $0.051), or `chat_stream_text.sse.txt`
//! for streams (14 + 30 = $0.044).

mod common;
mod db;

use common::{
    Answer, Client, MockUpstream, Proxy, Reply, cut_stream_after_first_event, fixture,
    redis_or_skip,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const MASTER: &str = "sk-budget-e2e-master";
const CALL: f64 = 0.051;
const STREAM_CALL: f64 = 0.044;

fn config(up: &MockUpstream, extra_general: &str) -> String {
    common::priced_config(
        up,
        &format!(
            "general_settings:\n  master_key: {MASTER}\n  proxy_batch_write_at: 0.2\n{extra_general}"
        ),
    )
}

/// Starts a replica with its own directory (its SQLite file when no
/// `DATABASE_URL` is given).
fn start(dir: &std::path::Path, yaml: &str, env: &[(&str, &str)]) -> Proxy {
    Proxy::start_in(dir, yaml, &[], env)
}

/// Two replicas sharing PostgreSQL and Redis (a fresh namespace), started at
/// the same time, each in its own directory (kept until the proxies stop).
fn two_replicas(up: &MockUpstream, pg_url: &str, redis: &str) -> ([db::TestDb; 2], Proxy, Proxy) {
    let yaml = config(up, &namespace());
    let env = [("DATABASE_URL", pg_url), ("REDIS_URL", redis)];
    let dirs = [db::TestDb::sqlite(), db::TestDb::sqlite()];
    let (a, b) = std::thread::scope(|s| {
        let ha = s.spawn(|| start(&dirs[0].dir, &yaml, &env));
        let hb = s.spawn(|| start(&dirs[1].dir, &yaml, &env));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    (dirs, a, b)
}

async fn admin(c: &Client, p: &Proxy, path: &str, body: Value) -> Value {
    let auth = format!("Bearer {MASTER}");
    let a = if body.is_null() {
        c.get(&p.url(path), &[("authorization", &auth)]).await
    } else {
        c.post_json(&p.url(path), &body.to_string(), &[("authorization", &auth)])
            .await
    };
    assert_eq!(a.status, 200, "{path}: {}", a.text());
    a.json()
}

async fn new_key(c: &Client, p: &Proxy, fields: Value) -> String {
    admin(c, p, "/key/generate", fields).await["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A request whose worst case equals its actual cost: 14 prompt tokens and
/// `max_tokens` 37, as the upstream answers.
fn body(stream: bool) -> String {
    json!({
        "model": "g", "max_tokens": 37, "stream": stream,
        "messages": [{"role": "user", "content": "What's the weather like in SF?"}],
    })
    .to_string()
}

async fn chat(c: &Client, p: &Proxy, key: &str) -> Answer {
    c.post_json(
        &p.url("/v1/chat/completions"),
        &body(false),
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await
}

/// Fires `n` concurrent requests spread over `proxies`; the answers in order.
async fn burst(proxies: &[&Proxy], key: &str, n: usize) -> Vec<Answer> {
    let c = Client::new();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (c, url, auth) = (
                c.clone(),
                proxies[i % proxies.len()].url("/v1/chat/completions"),
                format!("Bearer {key}"),
            );
            tokio::spawn(async move {
                c.post_json(&url, &body(false), &[("authorization", &auth)])
                    .await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn count(answers: &[Answer], status: u16) -> usize {
    answers.iter().filter(|a| a.status == status).count()
}

fn assert_only(answers: &[Answer], allowed: &[u16]) {
    for a in answers {
        assert!(
            allowed.contains(&a.status),
            "unexpected {}: {}",
            a.status,
            a.text()
        );
    }
}

/// The key's recorded spend (`/key/info`).
async fn key_spend(c: &Client, p: &Proxy, key: &str) -> f64 {
    admin(c, p, &format!("/key/info?key={key}"), Value::Null).await["info"]["spend"]
        .as_f64()
        .unwrap_or(0.0)
}

/// Polls until the key's recorded spend is `want` (the spend writer batches).
async fn await_spend(c: &Client, p: &Proxy, key: &str, want: f64) {
    let start = Instant::now();
    loop {
        let got = key_spend(c, p, key).await;
        if (got - want).abs() < 1e-9 {
            return;
        }
        assert!(
            got <= want + 1e-9,
            "recorded spend {got} went past the expected {want}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the key's spend stayed at {got}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn namespace() -> String {
    format!("  redis_namespace: kb-{}", uuid::Uuid::now_v7().simple())
}

/// 200 concurrent requests against a key whose budget fits ten: exactly ten
/// reach the upstream and succeed, the rest get `budget_exceeded`, the
/// recorded spend is exactly ten calls, and nothing stays reserved (raising
/// the budget by two calls lets exactly two more through).
async fn key_budget_holds(proxies: &[&Proxy], up: &MockUpstream) {
    let c = Client::new();
    // Ten calls ($0.51) fit; the eleventh's worst case ($0.051) does not fit
    // the $0.03 left.
    let key = new_key(&c, proxies[0], json!({"max_budget": 0.54})).await;
    let answers = burst(proxies, &key, 200).await;
    assert_only(&answers, &[200, 429]);
    assert_eq!(count(&answers, 200), 10, "exactly ten calls fit the budget");
    assert_eq!(up.received().len(), 10, "refused calls never go upstream");
    let refusal = answers.iter().find(|a| a.status == 429).unwrap().json();
    assert_eq!(refusal["error"]["type"], "budget_exceeded", "{refusal}");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("key"),
        "{refusal}"
    );
    assert!(
        !refusal.to_string().contains(&key),
        "an error never carries the key"
    );
    await_spend(&c, proxies[0], &key, 10.0 * CALL).await;

    // Every reservation settled: two more calls' worth admits exactly two.
    admin(
        &c,
        proxies[0],
        "/key/update",
        json!({"key": key, "max_budget": 0.54 + 2.0 * CALL}),
    )
    .await;
    // Replicas learn of the update within seconds; poll the one that made it.
    let more = burst(&proxies[..1], &key, 6).await;
    assert_only(&more, &[200, 429]);
    assert_eq!(count(&more, 200), 2, "no reservation was left behind");
    await_spend(&c, proxies[0], &key, 12.0 * CALL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_budget_holds_under_200_concurrent_requests_on_sqlite() {
    let up = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let dir = db::TestDb::sqlite();
    let p = start(&dir.dir, &config(&up, ""), &[]);
    assert!(dir.dir.join("tollgate.db").exists(), "the SQLite default");
    key_budget_holds(&[&p], &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_budget_holds_under_200_concurrent_requests_on_postgres() {
    let Some(pg) = db::TestDb::postgres("key_budget_holds_on_postgres").await else {
        return;
    };
    let up = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let p = start(&pg.dir, &config(&up, ""), &[("DATABASE_URL", &pg.url)]);
    key_budget_holds(&[&p], &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_budget_holds_across_two_replicas_sharing_postgres_and_redis() {
    let Some(pg) = db::TestDb::postgres("key_budget_two_replicas").await else {
        return;
    };
    let Some(redis) = redis_or_skip("key_budget_two_replicas").await else {
        return;
    };
    let up = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let (_dirs, a, b) = two_replicas(&up, &pg.url, &redis);
    key_budget_holds(&[&a, &b], &up).await;
}

/// A streamed request, an upstream failure and a client that hangs up
/// mid-stream each settle their reservation: the recorded spend is exactly
/// what the upstream reported, and the whole rest of the budget is usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_failed_and_cancelled_requests_settle() {
    let up = MockUpstream::start().await;
    let dir = db::TestDb::sqlite();
    let p = start(&dir.dir, &config(&up, ""), &[]);
    let c = Client::new();
    let budget = 0.2;
    let key = new_key(&c, &p, json!({"max_budget": budget})).await;
    let auth = format!("Bearer {key}");
    let sse = fixture("openai/chat_stream_text.sse.txt");

    // 1. A whole stream: billed what the upstream's usage chunk says.
    up.push(Reply::sse(sse.clone()));
    let a = c
        .post_json(
            &p.url("/v1/chat/completions"),
            &body(true),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains("data: [DONE]"));
    await_spend(&c, &p, &key, STREAM_CALL).await;

    // 2. An upstream failure: the client gets the error, nothing is billed.
    up.push(Reply::json(
        500,
        r#"{"error":{"message":"boom","type":"server_error"}}"#,
    ));
    let a = chat(&c, &p, &key).await;
    assert_eq!(a.status, 500, "{}", a.text());

    // 3. The client hangs up after the first bytes of a slow stream: the
    // gateway finishes reading the upstream and bills it in full.
    up.push(Reply::sse_chunked(&sse, 64, Duration::from_millis(40)));
    cut_stream_after_first_event(&p, &auth, &body(true)).await;
    // Billed from what the gateway relayed before the cut: at least the
    // prompt, at most the reserved worst case.
    let spend = {
        let start = Instant::now();
        loop {
            let logs = admin(&c, &p, &format!("/spend/logs?api_key={key}"), Value::Null).await;
            if logs.as_array().unwrap().len() == 3 {
                break key_spend(&c, &p, &key).await;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the hung-up stream never got its spend row: {logs}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let cut = spend - STREAM_CALL;
    assert!(
        (0.014 - 1e-9..=CALL + 1e-9).contains(&cut),
        "the cut stream cost {cut}: between its prompt and its worst case"
    );

    // Nothing stays reserved: what is left ($0.105 to $0.142) admits exactly
    // two $0.051 calls.
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let answers = burst(&[&p], &key, 5).await;
    assert_only(&answers, &[200, 429]);
    assert_eq!(count(&answers, 200), 2);
    await_spend(&c, &p, &key, spend + 2.0 * CALL).await;
    let logs = admin(&c, &p, &format!("/spend/logs?api_key={key}"), Value::Null).await;
    let statuses: Vec<&str> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap_or(""))
        .collect();
    assert!(
        statuses.iter().filter(|s| **s == "success").count() >= 3,
        "{logs}"
    );
    assert!(
        statuses.contains(&"failure"),
        "the failed call has its spend row: {logs}"
    );
}

/// A key's `rpm_limit` of 60 holds across two replicas sharing Redis: a
/// burst of 150 split over both admits exactly 60 in the minute, and the
/// refusals carry `retry-after` and LiteLLM's rate-limit headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rpm_limit_holds_across_two_replicas_sharing_redis() {
    let Some(pg) = db::TestDb::postgres("key_rpm_two_replicas").await else {
        return;
    };
    let Some(redis) = redis_or_skip("key_rpm_two_replicas").await else {
        return;
    };
    let up = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let (_dirs, a, b) = two_replicas(&up, &pg.url, &redis);
    let c = Client::new();
    let key = new_key(&c, &a, json!({"rpm_limit": 60})).await;
    let answers = burst(&[&a, &b], &key, 150).await;
    assert_only(&answers, &[200, 429]);
    assert_eq!(count(&answers, 200), 60, "one limit for both replicas");
    assert_eq!(up.received().len(), 60);
    let ok = answers.iter().find(|a| a.status == 200).unwrap();
    assert_eq!(ok.headers["x-ratelimit-limit-requests"], "60");
    let refused = answers.iter().find(|a| a.status == 429).unwrap();
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Counted in 5-second slots, so a full minute frees up within 65 s.
    assert!((1..=65).contains(&retry), "retry-after {retry}");
    assert_eq!(refused.headers["x-ratelimit-remaining-requests"], "0");
    assert_eq!(refused.json()["error"]["type"], "rate_limit_error");
}
