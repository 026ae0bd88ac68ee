//! Virtual keys, the management API and spend logs through the real proxy
//! binary, on its SQLite file (and PostgreSQL when it is there).

mod common;
mod db;

use common::{Client, Proxy};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const MASTER: &str = "sk-e2e-master-key";

fn config(extra_general: &str) -> String {
    format!(
        r#"
model_list:
  - model_name: demo
    litellm_params:
      model: mock/demo
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
  - model_name: other
    litellm_params:
      model: mock/other
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
general_settings:
  master_key: {MASTER}
{extra_general}
"#
    )
}

/// Starts the binary on `config` written into `dir` (kept across restarts).
fn start_in(dir: &std::path::Path, yaml: &str, env: &[(&str, &str)]) -> Proxy {
    let env: Vec<(&str, &str)> = [("DATABASE_URL", "")]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    Proxy::start_in(dir, yaml, &["--graceful-timeout", "10"], &env)
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

async fn admin(c: &Client, p: &Proxy, method: &str, path: &str, body: Value) -> Value {
    let auth = bearer(MASTER);
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let a = if method == "GET" {
        c.get(&p.url(path), &h).await
    } else {
        c.send(method, &p.url(path), &h, body.to_string()).await
    };
    assert_eq!(a.status, 200, "{method} {path}: {}", a.text());
    a.json()
}

async fn chat(c: &Client, p: &Proxy, key: &str, model: &str, stream: bool) -> common::Answer {
    let body = json!({
        "model": model, "stream": stream, "user": "cust-e2e",
        "messages": [{"role": "user", "content": "hello there"}],
    });
    c.post_json(
        &p.url("/v1/chat/completions"),
        &body.to_string(),
        &[("authorization", &bearer(key))],
    )
    .await
}

/// Waits until `cond` holds (polling), or panics after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "never happened within {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn litellm_script_drives_the_management_api() {
    let dir = db::TestDb::sqlite();
    let p = start_in(&dir.dir, &config("  proxy_batch_write_at: 0.2"), &[]);
    common::run_python(
        "litellm_script_drives_the_management_api",
        "openai",
        "keys_litellm.py",
        &p,
        MASTER,
        &[],
    )
    .await;
}

#[tokio::test]
async fn every_bad_key_gets_the_same_401() {
    let dir = db::TestDb::sqlite();
    let p = start_in(&dir.dir, &config(""), &[]);
    let c = Client::new();
    let new_key = |body: Value| {
        let (c, p) = (&c, &p);
        async move {
            admin(c, p, "POST", "/key/generate", body).await["key"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let good = new_key(json!({"models": ["demo"]})).await;
    // Every accepted header form works.
    for header in [
        "authorization",
        "x-litellm-api-key",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
    ] {
        let v = if header == "authorization" {
            bearer(&good)
        } else {
            good.clone()
        };
        let body = json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]});
        let a = c
            .post_json(
                &p.url("/v1/chat/completions"),
                &body.to_string(),
                &[(header, &v)],
            )
            .await;
        assert_eq!(a.status, 200, "{header}: {}", a.text());
    }
    let expiring = new_key(json!({"duration": "1s"})).await;
    let blocked = new_key(json!({})).await;
    admin(&c, &p, "POST", "/key/block", json!({"key": blocked})).await;
    let deleted = new_key(json!({})).await;
    admin(&c, &p, "POST", "/key/delete", json!({"keys": [deleted]})).await;
    let regenerated = new_key(json!({})).await;
    admin(
        &c,
        &p,
        "POST",
        "/key/regenerate",
        json!({"key": regenerated}),
    )
    .await;
    admin(&c, &p, "POST", "/team/new", json!({"team_id": "frozen"})).await;
    let frozen = new_key(json!({"team_id": "frozen"})).await;
    admin(&c, &p, "POST", "/team/block", json!({"team_id": "frozen"})).await;
    // Expiry: wait (bounded) for the key's second to pass.
    eventually("the 1s key expires", Duration::from_secs(10), || {
        let (c, p, k) = (&c, &p, expiring.clone());
        async move { chat(c, p, &k, "demo", false).await.status == 401 }
    })
    .await;

    let long = format!("sk-{}", "a".repeat(10 * 1024));
    let sql = "sk-'; DROP TABLE tollgate_keys; --";
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no header", vec![]),
        ("empty bearer", vec![("authorization", "Bearer ".into())]),
        (
            "basic auth",
            vec![("authorization", "Basic dXNlcjpwYXNz".into())],
        ),
        ("malformed", vec![("authorization", bearer("not-a-key"))]),
        (
            "unknown",
            vec![("authorization", bearer("sk-unknown-000000000000000000000"))],
        ),
        ("sql in x-api-key", vec![("x-api-key", sql.into())]),
        ("10 KB in api-key", vec![("api-key", long.clone())]),
        (
            "master key typo",
            vec![("authorization", bearer("sk-e2e-master-kez"))],
        ),
        ("expired", vec![("authorization", bearer(&expiring))]),
        ("blocked", vec![("authorization", bearer(&blocked))]),
        ("deleted", vec![("authorization", bearer(&deleted))]),
        ("regenerated", vec![("authorization", bearer(&regenerated))]),
        ("team blocked", vec![("authorization", bearer(&frozen))]),
    ];
    let body =
        json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let mut first: Option<bytes::Bytes> = None;
    for (what, headers) in &cases {
        let mut h: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        h.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
        for path in ["/v1/chat/completions", "/key/info", "/v1/models"] {
            let a = if path == "/v1/chat/completions" {
                c.send("POST", &p.url(path), &h, body.clone()).await
            } else {
                c.get(&p.url(path), &h).await
            };
            assert_eq!(a.status, 401, "{what} on {path}: {}", a.text());
            match &first {
                None => first = Some(a.body.clone()),
                Some(f) => assert_eq!(&a.body, f, "{what} on {path}: every 401 has the same body"),
            }
        }
    }
    let text = String::from_utf8_lossy(first.as_ref().unwrap()).to_string();
    assert!(text.contains("authentication_error"), "{text}");
    assert!(
        !p.logs().contains(&good) && !p.logs().contains(sql),
        "keys never reach the logs"
    );
}

#[tokio::test]
async fn models_outside_a_key_are_refused_without_revealing_which_exist() {
    let dir = db::TestDb::sqlite();
    let p = start_in(&dir.dir, &config(""), &[]);
    let c = Client::new();
    let key = admin(&c, &p, "POST", "/key/generate", json!({"models": ["demo"]})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(chat(&c, &p, &key, "demo", false).await.status, 200);
    let exists = chat(&c, &p, &key, "other", false).await;
    let missing = chat(&c, &p, &key, "no-such-model", false).await;
    assert_eq!((exists.status, missing.status), (403, 403));
    let shape = |a: &common::Answer| {
        let mut v = a.json();
        v["error"]["message"] = Value::Null;
        v
    };
    assert_eq!(
        shape(&exists),
        shape(&missing),
        "same refusal for a real and a made-up model"
    );
    let auth = bearer(&key);
    let models = c
        .get(&p.url("/v1/models"), &[("authorization", &auth)])
        .await
        .json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["demo"]);
    let a = c
        .get(&p.url("/v1/models/other"), &[("authorization", &auth)])
        .await;
    let b = c
        .get(
            &p.url("/v1/models/no-such-model"),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!((a.status, b.status), (404, 404));
}

#[tokio::test]
async fn management_routes_need_an_admin() {
    let dir = db::TestDb::sqlite();
    let p = start_in(&dir.dir, &config(""), &[]);
    let c = Client::new();
    let key = admin(&c, &p, "POST", "/key/generate", json!({})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = bearer(&key);
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    for (method, path, body) in [
        ("POST", "/key/generate", json!({"models": ["demo"]})),
        ("POST", "/team/new", json!({"team_id": "t"})),
        (
            "POST",
            "/user/new",
            json!({"user_id": "u", "user_role": "proxy_admin"}),
        ),
        ("POST", "/customer/new", json!({"user_id": "c"})),
        ("POST", "/global/spend/reset", json!({})),
    ] {
        let a = c.send(method, &p.url(path), &h, body.to_string()).await;
        assert_eq!(a.status, 403, "{path}: {}", a.text());
    }
    for path in [
        "/key/list",
        "/team/list",
        "/user/list",
        "/global/spend",
        "/global/spend/keys",
        "/customer/list",
    ] {
        let a = c.get(&p.url(path), &h).await;
        assert_eq!(a.status, 403, "{path}: {}", a.text());
    }
    assert_eq!(c.get(&p.url("/key/list"), &[]).await.status, 401);
    let own = c.get(&p.url("/key/info"), &h).await;
    assert_eq!(
        own.status,
        200,
        "a key may read its own info: {}",
        own.text()
    );
    // Oversized and malformed management bodies: clean 4xx, nothing changed.
    let before = admin(&c, &p, "GET", "/key/list", Value::Null).await["total_count"].clone();
    let m = bearer(MASTER);
    let mh = [
        ("authorization", m.as_str()),
        ("content-type", "application/json"),
    ];
    let huge = json!({"key_alias": "x".repeat(100 * 1024)}).to_string();
    assert_eq!(
        c.send("POST", &p.url("/key/generate"), &mh, huge)
            .await
            .status,
        413
    );
    for body in [
        "{",
        "[]",
        "{\"key_alias\": \"a';--\"}",
        "{\"max_budget\": -5}",
        "{\"models\": [1]}",
    ] {
        let st = c
            .send("POST", &p.url("/key/generate"), &mh, body.to_owned())
            .await
            .status;
        assert_eq!(st, 400, "{body}");
    }
    assert_eq!(
        admin(&c, &p, "GET", "/key/list", Value::Null).await["total_count"],
        before
    );
}

#[tokio::test]
async fn graceful_shutdown_loses_no_spend_rows() {
    let dir = db::TestDb::sqlite();
    // A long batch interval: nothing is written before the shutdown.
    let yaml = config("  proxy_batch_write_at: 3600");
    let p = start_in(&dir.dir, &yaml, &[]);
    let c = Client::new();
    let key = admin(&c, &p, "POST", "/key/generate", json!({})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let n = 40;
    for i in 0..n {
        let a = chat(&c, &p, &key, "demo", i % 2 == 0).await;
        assert_eq!(a.status, 200);
    }
    assert_eq!(dir.count("tollgate_spend_logs").await, 0, "still queued");
    p.signal("TERM");
    let mut p = p;
    let status = p.child.wait().unwrap();
    assert!(status.success(), "{status}: {}", p.logs());
    assert!(p.logs().contains("spend logs flushed"), "{}", p.logs());
    assert_eq!(dir.count("tollgate_spend_logs").await, n);
    // The key's spend is in the database too, and a restarted proxy shows it.
    let p = start_in(&dir.dir, &yaml, &[]);
    let info = admin(&c, &p, "GET", &format!("/key/info?key={key}"), Value::Null).await;
    assert!(info["info"]["spend"].as_f64().unwrap() > 0.0, "{info}");
    let logs = admin(
        &c,
        &p,
        "GET",
        &format!("/spend/logs?api_key={key}"),
        Value::Null,
    )
    .await;
    assert_eq!(logs.as_array().unwrap().len() as i64, n);
}

/// What a SIGKILL can lose: the rows of requests that finished within the
/// last `proxy_batch_write_at` seconds (plus the write in progress). Rows
/// older than that are committed.
#[tokio::test]
async fn sigkill_loses_at_most_the_last_batch_window() {
    let dir = db::TestDb::sqlite();
    let yaml = config("  proxy_batch_write_at: 1");
    let p = start_in(&dir.dir, &yaml, &[]);
    let c = Client::new();
    let key = admin(&c, &p, "POST", "/key/generate", json!({})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let n = 30;
    for i in 0..n {
        assert_eq!(chat(&c, &p, &key, "demo", i % 3 == 0).await.status, 200);
    }
    // Durable within the window (1 s) plus the write: bounded wait for the rows.
    let took = eventually(
        "the first rows are committed",
        Duration::from_secs(6),
        || {
            let d = &dir;
            async move { d.count("tollgate_spend_logs").await == n }
        },
    )
    .await;
    assert!(
        took < Duration::from_secs(3),
        "rows took {took:?} to be durable with a 1 s window"
    );
    let m = 30;
    for _ in 0..m {
        assert_eq!(chat(&c, &p, &key, "demo", false).await.status, 200);
    }
    p.signal("KILL");
    let mut p = p;
    let _ = p.child.wait();
    let after = dir.count("tollgate_spend_logs").await;
    assert!(
        after >= n,
        "rows older than the window survive a SIGKILL: {after} < {n}"
    );
    assert!(after <= n + m, "{after}");
    eprintln!(
        "SIGKILL right after {m} requests lost {} of them (window: 1 s)",
        n + m - after
    );
    // The restarted proxy sees exactly what was committed.
    let p = start_in(&dir.dir, &yaml, &[]);
    let logs = admin(
        &c,
        &p,
        "GET",
        &format!("/spend/logs?api_key={key}&limit=1000"),
        Value::Null,
    )
    .await;
    assert_eq!(logs.as_array().unwrap().len() as i64, after);
    assert_eq!(chat(&c, &p, &key, "demo", false).await.status, 200);
}

#[tokio::test]
async fn migrate_subcommand_and_disabled_start_up_migrations() {
    let dir = db::TestDb::sqlite();
    let path = dir.dir.join("config.yaml");
    std::fs::write(&path, config("  disable_prisma_schema_update: true")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["migrate", "--config", path.to_str().unwrap()])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("migrated "));
    let scripts = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count() as i64;
    assert_eq!(
        dir.count("tollgate_migrations").await,
        scripts,
        "each migration once"
    );
    let p = start_in(
        &dir.dir,
        &config("  disable_prisma_schema_update: true"),
        &[],
    );
    let c = Client::new();
    let key = admin(&c, &p, "POST", "/key/generate", json!({})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(chat(&c, &p, &key, "demo", false).await.status, 200);
}

#[tokio::test]
async fn without_a_database_there_are_no_management_routes() {
    let dir = db::TestDb::sqlite();
    let p = Proxy::start_in(&dir.dir, &config(""), &["--no-database"], &[]);
    let c = Client::new();
    assert_eq!(chat(&c, &p, MASTER, "demo", false).await.status, 200);
    let auth = bearer(MASTER);
    assert_eq!(
        c.get(&p.url("/key/list"), &[("authorization", &auth)])
            .await
            .status,
        404
    );
    assert!(!dir.dir.join("tollgate.db").exists());
}

/// Two replicas on one PostgreSQL: they start together (migrations under a
/// lock), share keys, see each other's blocks within seconds, and both
/// write spend to the same logs.
#[tokio::test]
async fn postgres_replicas_share_keys_and_spend() {
    let Some(db) = db::TestDb::postgres("postgres_replicas_share_keys_and_spend").await else {
        return;
    };
    let yaml = config("  proxy_batch_write_at: 0.2");
    let dir_a = db::TestDb::sqlite();
    let dir_b = db::TestDb::sqlite();
    let url = db.url.clone();
    let (a, b) = std::thread::scope(|s| {
        let ha = s.spawn(|| start_in(&dir_a.dir, &yaml, &[("DATABASE_URL", &url)]));
        let hb = s.spawn(|| start_in(&dir_b.dir, &yaml, &[("DATABASE_URL", &url)]));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert!(
        !dir_a.dir.join("tollgate.db").exists(),
        "DATABASE_URL wins over the SQLite default"
    );
    let c = Client::new();
    let key = admin(
        &c,
        &a,
        "POST",
        "/key/generate",
        json!({"key_alias": "shared"}),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        chat(&c, &b, &key, "demo", false).await.status,
        200,
        "a key made on A works on B"
    );
    assert_eq!(chat(&c, &a, &key, "demo", true).await.status, 200);
    admin(&c, &a, "POST", "/key/block", json!({"key": key})).await;
    assert_eq!(chat(&c, &a, &key, "demo", false).await.status, 401);
    // Probe with /v1/models: authenticated, but no spend.
    let took = eventually(
        "replica B refuses the key blocked on A",
        Duration::from_secs(10),
        || {
            let (c, b, auth) = (&c, &b, bearer(&key));
            async move {
                c.get(&b.url("/v1/models"), &[("authorization", &auth)])
                    .await
                    .status
                    == 401
            }
        },
    )
    .await;
    assert_eq!(chat(&c, &b, &key, "demo", false).await.status, 401);
    eprintln!("a block on replica A reached replica B in {took:?}");
    eventually(
        "both replicas' spend rows are in the shared logs",
        Duration::from_secs(10),
        || {
            let d = &db;
            async move { d.count("tollgate_spend_logs").await == 2 }
        },
    )
    .await;
    let logs = admin(
        &c,
        &b,
        "GET",
        &format!("/spend/logs?api_key={key}"),
        Value::Null,
    )
    .await;
    assert_eq!(logs.as_array().unwrap().len(), 2);
}

/// A key's `allowed_cache_controls` limits which per-request cache controls
/// its requests may use (LiteLLM's rule: an empty list allows all).
#[tokio::test]
async fn a_keys_allowed_cache_controls_are_enforced() {
    let dir = db::TestDb::sqlite();
    let yaml = format!("{}litellm_settings:\n  cache: true\n", config(""));
    let p = start_in(&dir.dir, &yaml, &[]);
    let c = Client::new();
    let auth = bearer(MASTER);
    let refused = c
        .post_json(
            &p.url("/key/generate"),
            r#"{"allowed_cache_controls": ["no-cache", "sudo"]}"#,
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(refused.json()["error"]["param"], "allowed_cache_controls");

    let made = admin(
        &c,
        &p,
        "POST",
        "/key/generate",
        json!({"allowed_cache_controls": ["no-cache"]}),
    )
    .await;
    let key = made["key"].as_str().unwrap().to_owned();
    let info = admin(&c, &p, "GET", &format!("/key/info?key={key}"), Value::Null).await;
    assert_eq!(info["info"]["allowed_cache_controls"], json!(["no-cache"]));
    let open = admin(&c, &p, "POST", "/key/generate", json!({})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();

    let ask = |key: String, cache: Value| {
        let (c, url) = (c.clone(), p.url("/v1/chat/completions"));
        async move {
            let body = json!({
                "model": "demo", "cache": cache,
                "messages": [{"role": "user", "content": "cache me"}],
            });
            c.post_json(&url, &body.to_string(), &[("authorization", &bearer(&key))])
                .await
        }
    };
    assert_eq!(
        ask(key.clone(), json!({"no-cache": true})).await.status,
        200
    );
    let denied = ask(key.clone(), json!({"ttl": 60})).await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    let e = denied.json()["error"].clone();
    assert!(e["message"].as_str().unwrap().contains("ttl"), "{e}");
    assert!(!denied.text().contains(&key));
    // A key without the restriction may use any control.
    assert_eq!(ask(open, json!({"ttl": 60})).await.status, 200);
    // Restricting an existing key takes effect on its next request.
    admin(
        &c,
        &p,
        "POST",
        "/key/update",
        json!({"key": key, "allowed_cache_controls": []}),
    )
    .await;
    assert_eq!(ask(key, json!({"ttl": 60})).await.status, 200);
}
