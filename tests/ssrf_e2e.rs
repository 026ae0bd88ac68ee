//! Server-side request forgery through the real `tollgate` binary: no request
//! field (`api_base`, `base_url`, `api_key`, `api_version`, `extra_headers`,
//! image URLs) makes tollgate connect anywhere the operator did not configure,
//! or send a configured key to a host the caller chose. A second "attacker"
//! mock upstream counts every request it gets; it must get none.

mod common;

use common::{Client, MockUpstream, Proxy, Reply, fixture};

const MASTER: &str = "sk-master-ssrf-0123456789";
const UPSTREAM_KEY: &str = "sk-upstream-ssrf-abcdefghij";
const GEMINI_KEY: &str = "AIzaSsrfTestKey0123456789";

fn config(up: &MockUpstream, allow_client_credentials: bool) -> String {
    format!(
        r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {base}/v1
      api_key: os.environ/SSRF_UPSTREAM_KEY
  - model_name: claude
    litellm_params:
      model: anthropic/claude-haiku-4-5
      api_base: {base}
      api_key: os.environ/SSRF_UPSTREAM_KEY
  - model_name: gemini
    litellm_params:
      model: gemini/gemini-2.5-flash
      api_base: {base}
      api_key: os.environ/SSRF_GEMINI_KEY
  - model_name: gemini-fetching
    litellm_params:
      model: gemini/gemini-2.5-flash
      api_base: {base}
      api_key: os.environ/SSRF_GEMINI_KEY
      fetch_image_urls: true
  - model_name: embed
    litellm_params:
      model: openai/text-embedding-3-small
      api_base: {base}/v1
      api_key: os.environ/SSRF_UPSTREAM_KEY
general_settings:
  master_key: os.environ/SSRF_MASTER
  allow_client_side_credentials: {allow_client_credentials}
"#,
        base = up.base()
    )
}

async fn start(allow_client_credentials: bool) -> (MockUpstream, MockUpstream, Proxy) {
    let up = MockUpstream::start().await;
    let attacker = MockUpstream::start().await;
    attacker.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let proxy = Proxy::start(
        &config(&up, allow_client_credentials),
        &[
            ("SSRF_UPSTREAM_KEY", UPSTREAM_KEY),
            ("SSRF_GEMINI_KEY", GEMINI_KEY),
            ("SSRF_MASTER", MASTER),
        ],
    );
    (up, attacker, proxy)
}

async fn post(proxy: &Proxy, path: &str, body: &serde_json::Value) -> common::Answer {
    Client::new()
        .post_json(
            &proxy.url(path),
            &body.to_string(),
            &[("authorization", "Bearer sk-master-ssrf-0123456789")],
        )
        .await
}

/// Request fields that would point the call at another host or carry other
/// credentials, each aimed at the attacker.
fn hostile_fields(attacker: &MockUpstream) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("api_base", format!("{}/v1", attacker.base()).into()),
        ("base_url", format!("{}/v1", attacker.base()).into()),
        ("api_key", "sk-attacker-chosen-key".into()),
        ("api_version", "2099-01-01".into()),
        (
            "extra_headers",
            serde_json::json!({"host": attacker.addr.to_string(), "x-forwarded-host": "evil"}),
        ),
    ]
}

fn assert_no_secret(a: &common::Answer) {
    let text = a.text();
    for secret in [UPSTREAM_KEY, GEMINI_KEY, MASTER] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[tokio::test]
async fn client_side_credentials_are_refused_by_default() {
    let (up, attacker, proxy) = start(false).await;
    for (field, value) in hostile_fields(&attacker) {
        for (path, mut body) in [
            (
                "/v1/chat/completions",
                serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
            ),
            (
                "/v1/embeddings",
                serde_json::json!({"model": "embed", "input": "hi"}),
            ),
        ] {
            if path == "/v1/embeddings" && matches!(field, "api_version" | "extra_headers") {
                continue;
            }
            body[field] = value.clone();
            let a = post(&proxy, path, &body).await;
            assert_eq!(a.status, 400, "{field} on {path}: {}", a.text());
            let v = a.json();
            assert_eq!(v["error"]["type"], "invalid_request_error");
            assert_eq!(v["error"]["param"], field, "{v}");
            assert_no_secret(&a);
        }
    }
    assert!(attacker.received().is_empty(), "{:?}", attacker.received());
    assert!(up.received().is_empty());
}

#[tokio::test]
async fn allowed_client_side_credentials_never_redirect_the_call_or_the_key() {
    let (up, attacker, proxy) = start(true).await;
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let mut sent = 0;
    for (field, value) in hostile_fields(&attacker) {
        let mut body = serde_json::json!({
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "hi"}],
        });
        body[field] = value;
        let a = post(&proxy, "/v1/chat/completions", &body).await;
        assert_eq!(a.status, 200, "{field}: {}", a.text());
        assert_no_secret(&a);
        sent += 1;
        // The configured upstream, path and key; the caller's values nowhere.
        let got = up.last();
        assert_eq!(got.path, "/v1/chat/completions", "{field}");
        assert_eq!(got.headers["host"].to_str().unwrap(), up.addr.to_string());
        assert_eq!(
            got.headers["authorization"].to_str().unwrap(),
            format!("Bearer {UPSTREAM_KEY}")
        );
        assert!(got.headers.get("x-forwarded-host").is_none());
        let upstream_body = got.json();
        for f in [
            "api_base",
            "base_url",
            "api_key",
            "api_version",
            "extra_headers",
        ] {
            assert!(
                upstream_body.get(f).is_none(),
                "{f} forwarded: {upstream_body}"
            );
        }
    }
    assert_eq!(up.received().len(), sent);
    assert!(attacker.received().is_empty(), "{:?}", attacker.received());
}

#[tokio::test]
async fn image_urls_are_never_fetched_from_private_addresses() {
    let (up, attacker, proxy) = start(false).await;
    let image = |url: String| {
        serde_json::json!([{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": url}},
        ]}])
    };
    let urls = [
        format!("{}/cat.png", attacker.base()),
        format!("http://localhost:{}/cat.png", attacker.addr.port()),
        format!("http://[::ffff:127.0.0.1]:{}/cat.png", attacker.addr.port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/cat.png".to_owned(),
        format!("file:///etc/passwd#{}", attacker.addr),
        format!("gopher://{}/x", attacker.addr),
    ];

    // Gemini cannot read arbitrary URLs itself; by default the leaf refuses
    // them instead of downloading.
    for url in &urls {
        let body = serde_json::json!({"model": "gemini", "messages": image(url.clone())});
        let a = post(&proxy, "/v1/chat/completions", &body).await;
        assert_eq!(a.status, 400, "{url}: {}", a.text());
        assert_eq!(a.json()["error"]["type"], "invalid_request_error");
        assert_no_secret(&a);
    }
    // With fetching on, loopback, private, link-local addresses and other
    // schemes are still refused.
    for url in &urls {
        let body = serde_json::json!({"model": "gemini-fetching", "messages": image(url.clone())});
        let a = post(&proxy, "/v1/chat/completions", &body).await;
        assert_eq!(a.status, 400, "{url}: {}", a.text());
        assert_eq!(a.json()["error"]["type"], "invalid_request_error");
        assert_no_secret(&a);
    }
    assert!(up.received().is_empty(), "{:?}", up.received());

    // OpenAI and Anthropic read image URLs themselves: tollgate passes the
    // URL along and connects only to the configured upstream.
    up.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let body = serde_json::json!({"model": "gpt-4o", "messages": image(urls[0].clone())});
    let a = post(&proxy, "/v1/chat/completions", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(up.last().path, "/v1/chat/completions");
    up.push(Reply::json(200, fixture("anthropic/tool_use.resp.json")));
    let body = serde_json::json!({"model": "claude", "messages": image(urls[0].clone())});
    let a = post(&proxy, "/v1/chat/completions", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(up.last().path, "/v1/messages");

    assert!(attacker.received().is_empty(), "{:?}", attacker.received());
}

#[tokio::test]
async fn upstream_redirects_are_not_followed() {
    let (up, attacker, proxy) = start(false).await;
    // The configured upstream answers with a redirect to the attacker: the
    // key must not follow it.
    up.always(Reply::json(307, "{}").header(
        "location",
        &format!("{}/v1/chat/completions", attacker.base()),
    ));
    let body =
        serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let a = post(&proxy, "/v1/chat/completions", &body).await;
    assert!(a.status >= 400, "{}", a.text());
    assert!(a.json()["error"]["type"].is_string(), "{}", a.text());
    assert_no_secret(&a);
    assert!(
        !a.text().contains(&attacker.addr.to_string()),
        "{}",
        a.text()
    );
    assert!(!up.received().is_empty());
    assert!(attacker.received().is_empty(), "{:?}", attacker.received());
}
