//! The route inventory against the real proxy: every route in
//! `tollgate::proxy::inventory::ROUTES` is called without a key, with a plain
//! virtual key and with the master key (on a proxy with a SQLite database),
//! and must answer as its declared [`Access`] says. Paths that are not
//! declared — LiteLLM routes tollgate does not serve, near misses of declared
//! ones — must be 404 for everyone, before authentication.

mod common;

use common::{Answer, Client, Proxy, TempDir};
use serde_json::json;
use tollgate::proxy::inventory::{Access, ROUTES};

const MASTER: &str = "sk-inventory-master-0123456789";

fn start(dir: &std::path::Path) -> Proxy {
    let yaml = format!(
        r#"
model_list:
  - model_name: demo
    litellm_params:
      model: mock/demo
  - model_name: demo-embedding
    litellm_params:
      model: mock/demo-embedding
litellm_settings:
  callbacks: ["prometheus"]
  require_auth_for_metrics_endpoint: true
  cache: true
general_settings:
  master_key: {MASTER}
"#
    );
    // The SQLite database next to the config.
    Proxy::start_in(dir, &yaml, &[], &[("DATABASE_URL", "")])
}

/// A body that gets past routing and authentication on each route (the
/// handler may still refuse it; that is not what this test checks). Routes
/// that act on a key or a team get one the plain virtual key does not own.
fn body_for(path: &str, target: &Target) -> String {
    match path {
        "/key/update" => json!({"key": target.key, "max_budget": 10}).to_string(),
        "/key/delete" => json!({"keys": [target.key]}).to_string(),
        "/key/block" | "/key/unblock" | "/key/regenerate" => json!({"key": target.key}).to_string(),
        p if p.ends_with("chat/completions") => {
            json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}).to_string()
        }
        p if p.ends_with("embeddings") => {
            json!({"model": "demo-embedding", "input": "hi"}).to_string()
        }
        p if p.contains("messages") => json!({
            "model": "demo", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]
        })
        .to_string(),
        "/utils/token_counter" | "/spend/calculate" => {
            json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}).to_string()
        }
        _ => "{}".to_owned(),
    }
}

/// What the routes that act on something act on.
struct Target {
    key: String,
    team: String,
}

impl Target {
    fn none() -> Self {
        Target {
            key: String::new(),
            team: String::new(),
        }
    }
}

async fn call(c: &Client, p: &Proxy, method: &str, path: &str, key: Option<&str>) -> Answer {
    call_on(c, p, method, path, key, &Target::none()).await
}

async fn call_on(
    c: &Client,
    p: &Proxy,
    method: &str,
    path: &str,
    key: Option<&str>,
    target: &Target,
) -> Answer {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut h = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        h.push(("authorization", a.as_str()));
    }
    let body = if method == "GET" {
        String::new()
    } else {
        body_for(path, target)
    };
    let url = match path {
        "/team/info" => format!("{path}?team_id={}", target.team),
        _ => path.to_owned(),
    };
    c.send(method, &p.url(&url), &h, body).await
}

#[tokio::test]
async fn every_route_answers_as_its_declared_access() {
    let dir = TempDir::new("inventory");
    let proxy = start(&dir.0);
    let c = Client::new();

    // A plain virtual key: no team, no user, no admin role.
    let a = c
        .post_json(
            &proxy.url("/key/generate"),
            r#"{"models":["demo","demo-embedding"]}"#,
            &[("authorization", &format!("Bearer {MASTER}"))],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let virtual_key = a.json()["key"].as_str().unwrap().to_owned();
    let master = [("authorization", format!("Bearer {MASTER}"))];
    let master = [(master[0].0, master[0].1.as_str())];
    let team = c
        .post_json(
            &proxy.url("/team/new"),
            r#"{"team_alias":"inventory"}"#,
            &master,
        )
        .await
        .json()["team_id"]
        .as_str()
        .expect("a team")
        .to_owned();

    let mut report = Vec::new();
    for route in ROUTES {
        // A fresh key of someone else's for each route (the master key's
        // call may delete or regenerate it).
        let other_key = c
            .post_json(&proxy.url("/key/generate"), "{}", &master)
            .await
            .json()["key"]
            .as_str()
            .unwrap()
            .to_owned();
        let target = Target {
            key: other_key.clone(),
            team: team.clone(),
        };
        let path = route
            .path
            .replace("{key}", &other_key)
            .replace("{model*}", "demo");
        for method in route.methods {
            let none = call_on(&c, &proxy, method, &path, None, &target).await;
            let plain = call_on(&c, &proxy, method, &path, Some(&virtual_key), &target).await;
            let master = call_on(&c, &proxy, method, &path, Some(MASTER), &target).await;
            let got = [none.status, plain.status, master.status];
            // 401 without a key, 403 for a key without the right, anything
            // else (200, or the handler's own 4xx) means "let through".
            let through = |s: u16| s != 401 && s != 403 && s != 404 && s != 405;
            let ok = match route.access {
                Access::Public => got.iter().all(|s| through(*s)),
                // A virtual key is let in; for things outside its scope (another
                // key's, another team's) the handler may then say 403 or 404.
                Access::Key => {
                    none.status == 401
                        && plain.status != 401
                        && plain.status != 405
                        && through(master.status)
                }
                // With require_auth_for_metrics_endpoint, as configured above.
                Access::Admin | Access::Metrics => {
                    none.status == 401 && plain.status == 403 && through(master.status)
                }
            };
            if !ok {
                report.push(format!(
                    "{method} {} declared {:?}, got none={} virtual={} master={} ({})",
                    route.path,
                    route.access,
                    none.status,
                    plain.status,
                    master.status,
                    master.text().chars().take(200).collect::<String>()
                ));
            }
            // Whatever the answer, it is JSON or Prometheus text, never a panic.
            assert!(
                master.status < 500 || master.status == 503,
                "{method} {path}: {}",
                master.text()
            );
        }
    }
    assert!(
        report.is_empty(),
        "routes not as declared:\n{}",
        report.join("\n")
    );
    assert_eq!(
        c.get(&proxy.url("/health/liveliness"), &[]).await.status,
        200
    );
}

#[tokio::test]
async fn undeclared_paths_are_404_for_everyone() {
    let dir = TempDir::new("inventory-404");
    let proxy = start(&dir.0);
    let c = Client::new();
    // LiteLLM routes tollgate does not serve, near misses, traversal.
    let paths = [
        "/admin",
        "/debug",
        "/docs",
        "/openapi.json",
        "/routes",
        "/v1/files",
        "/v1/completions",
        "/v1/audio/speech",
        "/v1/images/generations",
        "/v1/responses",
        "/v2/chat/completions",
        "/v1/chat/completions/x",
        "/team/available",
        "/user/available_roles",
        "/customer/whatever",
        "/end_user/x",
        "/key/a/b/c",
        "/key/health",
        "/health/services",
        "/health/test_connection",
        "/cache/ping/x",
        "/global/spend/logs",
        "/spend/keys",
        "/config/update",
        "/model/new",
        "/model/delete",
        "/v1/../key/generate",
        "/%2e%2e/key/list",
        "/key/list/..",
    ];
    for path in paths {
        for key in [None, Some(MASTER)] {
            for method in ["GET", "POST"] {
                let a = call(&c, &proxy, method, path, key).await;
                assert_eq!(a.status, 404, "{method} {path} ({key:?}): {}", a.text());
                assert_eq!(a.json()["error"]["type"], "not_found_error", "{}", a.text());
            }
        }
    }
}
