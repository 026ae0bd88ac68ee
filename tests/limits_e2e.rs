//! Budgets through the proxy binary: the gateway-wide budget, end-user
//! budgets, and one budget shared by two proxies through Redis.

mod common;

use common::{Client, MockUpstream, Proxy, Reply, fixture, redis_or_skip};

fn config(up: &MockUpstream, extra: &str) -> String {
    common::priced_config(up, extra)
}

/// The request whose worst case equals its actual cost: the prompt counts 14
/// tokens (as the upstream reports) and `max_tokens` is the 37 it answers.
fn body(user: Option<&str>) -> String {
    let user = user
        .map(|u| format!(r#","user":"{u}""#))
        .unwrap_or_default();
    format!(
        r#"{{"model":"g","max_tokens":37,"messages":[{{"role":"user","content":"What's the weather like in SF?"}}]{user}}}"#
    )
}

async fn fire(proxies: &[&Proxy], n: usize, user: Option<&str>) -> (usize, Vec<serde_json::Value>) {
    let client = Client::new();
    let mut tasks = Vec::new();
    for i in 0..n {
        let url = proxies[i % proxies.len()].url("/v1/chat/completions");
        let client = client.clone();
        let body = body(user);
        tasks.push(tokio::spawn(async move {
            client.post_json(&url, &body, &[]).await
        }));
    }
    let (mut ok, mut refusals) = (0, Vec::new());
    for t in tasks {
        let a = t.await.unwrap();
        match a.status {
            200 => ok += 1,
            429 => refusals.push(a.json()),
            s => panic!("unexpected {s}: {}", a.text()),
        }
    }
    (ok, refusals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_budget_holds_under_concurrency() {
    let up = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    // Ten calls' worth.
    let proxy = Proxy::start(&config(&up, "litellm_settings:\n  max_budget: 0.51"), &[]);
    let (ok, refusals) = fire(&[&proxy], 60, None).await;
    assert_eq!(ok, 10, "exactly ten $0.051 calls fit in $0.51");
    assert_eq!(
        up.received().len(),
        10,
        "refused calls never reach the upstream"
    );
    let e = &refusals[0]["error"];
    assert_eq!(e["type"], "budget_exceeded");
    assert!(
        e["message"].as_str().unwrap().contains("the gateway"),
        "{e}"
    );
}

#[tokio::test]
async fn end_users_each_have_their_own_budget() {
    let up = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let proxy = Proxy::start(
        &config(&up, "litellm_settings:\n  max_end_user_budget: 0.102"),
        &[],
    );
    let (ok_a, refused_a) = fire(&[&proxy], 5, Some("alice")).await;
    assert_eq!((ok_a, refused_a.len()), (2, 3));
    assert!(
        refused_a[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("end user alice")
    );
    let (ok_b, _) = fire(&[&proxy], 1, Some("bob")).await;
    assert_eq!(ok_b, 1, "bob's budget is his own");
    // Without a `user`, no end-user budget applies.
    let (ok_anon, _) = fire(&[&proxy], 3, None).await;
    assert_eq!(ok_anon, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_share_one_budget_through_redis() {
    let Some(url) = redis_or_skip("two_proxies_share_one_budget_through_redis").await else {
        return;
    };
    let up = MockUpstream::start().await;
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let ns = format!("e2e-{}", uuid::Uuid::now_v7().simple());
    let extra = format!(
        "litellm_settings:\n  max_budget: 0.51\ngeneral_settings:\n  redis_namespace: {ns}"
    );
    let env = [("REDIS_URL", url.as_str())];
    let a = Proxy::start(&config(&up, &extra), &env);
    let b = Proxy::start(&config(&up, &extra), &env);
    let (ok, _) = fire(&[&a, &b], 60, None).await;
    assert_eq!(ok, 10, "one $0.51 budget across both proxies");
    assert_eq!(up.received().len(), 10);
    // Both see the exhausted budget afterwards.
    for p in [&a, &b] {
        let (ok, _) = fire(&[p], 1, None).await;
        assert_eq!(ok, 0);
    }
}
