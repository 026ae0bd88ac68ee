//! Hostile HTTP input through the real `tollgate` binary: oversized and slow
//! bodies, slow headers, pathological JSON, header injection, odd `Host`
//! headers, URL metacharacters in model names, HTTP/2 stream floods. Each case
//! has one exact answer, and the process is still healthy afterwards.

mod common;

use common::{Client, MockUpstream, Proxy, Reply, fixture};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MASTER: &str = "sk-master-hostile-0123456789";
const UPSTREAM_KEY: &str = "sk-upstream-hostile-abcdefghij";
const AZURE_VERSION: &str = "2024-10-21";

/// An OpenAI deployment, and wildcard OpenAI, Azure and Gemini deployments
/// (where the client's model name becomes part of the upstream request).
fn config(up: &MockUpstream) -> String {
    format!(
        r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {base}/v1
      api_key: os.environ/HOSTILE_UPSTREAM_KEY
  - model_name: openai/*
    litellm_params:
      model: openai/*
      api_base: {base}/v1
      api_key: os.environ/HOSTILE_UPSTREAM_KEY
  - model_name: azure/*
    litellm_params:
      model: azure/*
      api_base: "{base}"
      api_key: os.environ/HOSTILE_UPSTREAM_KEY
      api_version: "{AZURE_VERSION}"
  - model_name: gemini/*
    litellm_params:
      model: gemini/*
      api_base: "{base}"
      api_key: os.environ/HOSTILE_UPSTREAM_KEY
general_settings:
  master_key: os.environ/HOSTILE_MASTER
  max_request_size_mb: 0.25
"#,
        base = up.base()
    )
}

/// The body limit above, in bytes.
const LIMIT: usize = 256 * 1024;

async fn start_with(env: &[(&str, &str)]) -> (MockUpstream, Proxy) {
    let up = MockUpstream::start().await;
    let mut all = vec![
        ("HOSTILE_UPSTREAM_KEY", UPSTREAM_KEY),
        ("HOSTILE_MASTER", MASTER),
    ];
    all.extend_from_slice(env);
    let proxy = Proxy::start(&config(&up), &all);
    (up, proxy)
}

async fn start() -> (MockUpstream, Proxy) {
    start_with(&[]).await
}

fn auth() -> [(&'static str, &'static str); 1] {
    [("authorization", "Bearer sk-master-hostile-0123456789")]
}

fn addr(proxy: &Proxy) -> String {
    proxy.base.trim_start_matches("http://").to_owned()
}

/// The proxy answers its liveness probe, and the upstream key never showed up
/// in its logs.
async fn assert_healthy(proxy: &Proxy) {
    let a = Client::new()
        .get(&proxy.url("/health/liveliness"), &[])
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(!proxy.logs().contains(UPSTREAM_KEY));
}

/// Asserts an OpenAI error body with `status`, `type` and (if given) `param`.
fn assert_error(a: &common::Answer, status: u16, kind: &str, param: Option<&str>) {
    assert_eq!(a.status, status, "{}", a.text());
    let v = a.json();
    assert_eq!(v["error"]["type"], kind, "{v}");
    if let Some(p) = param {
        assert_eq!(v["error"]["param"], p, "{v}");
    }
    let text = a.text();
    assert!(
        !text.contains(UPSTREAM_KEY) && !text.contains(MASTER),
        "{text}"
    );
}

/// A parsed HTTP/1.1 answer read off a raw socket.
struct RawAnswer {
    status: u16,
    head: String,
    body: String,
}

/// Reads one HTTP/1.1 response (headers + a `content-length` body) from `s`,
/// or `None` if the connection closed first. Gives up after `limit`.
async fn read_answer(s: &mut TcpStream, limit: Duration) -> Option<RawAnswer> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < end + 4 + len {
                    let n = s.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[end + 4..]).into_owned();
                let status = head.split(' ').nth(1)?.parse().ok()?;
                return Some(RawAnswer { status, head, body });
            }
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .expect("the proxy answered (or closed) in time")
}

fn error_type(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"]["type"].as_str().unwrap_or_default().to_owned()
}

/// Sends a chat request over a raw socket with `extra` header lines.
async fn raw_chat(proxy: &Proxy, extra: &str) -> RawAnswer {
    raw_chat_to(proxy, "x", extra).await
}

async fn raw_chat_to(proxy: &Proxy, host: &str, extra: &str) -> RawAnswer {
    let mut s = TcpStream::connect(addr(proxy)).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {MASTER}\r\n\
         content-type: application/json\r\n{extra}content-length: {}\r\n\r\n{CHAT}",
        CHAT.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    read_answer(&mut s, Duration::from_secs(10))
        .await
        .expect("an answer")
}

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body_is_sent() {
    let (up, proxy) = start().await;
    let mut s = TcpStream::connect(addr(&proxy)).await.unwrap();
    // Headers only: 100 MiB announced, not one byte of it sent.
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {MASTER}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        100 << 20
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let a = read_answer(&mut s, Duration::from_secs(10))
        .await
        .expect("an answer");
    assert_eq!(a.status, 413, "{}", a.head);
    assert_eq!(error_type(&a.body), "invalid_request_error");
    assert!(a.body.contains(&LIMIT.to_string()), "{}", a.body);
    assert!(up.received().is_empty());
    assert_healthy(&proxy).await;
}

#[tokio::test]
async fn a_chunked_body_growing_past_the_limit_is_refused_while_it_streams() {
    let (up, proxy) = start().await;
    let mut s = TcpStream::connect(addr(&proxy)).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {MASTER}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // Just over the limit, then stop without the final chunk: the answer must
    // come although the body never ends.
    let piece = vec![b' '; 64 * 1024];
    for _ in 0..(LIMIT / piece.len() + 1) {
        s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await
            .unwrap();
        s.write_all(&piece).await.unwrap();
        s.write_all(b"\r\n").await.unwrap();
    }
    let a = read_answer(&mut s, Duration::from_secs(10))
        .await
        .expect("an answer");
    assert_eq!(a.status, 413, "{}", a.head);
    assert_eq!(error_type(&a.body), "invalid_request_error");
    assert!(up.received().is_empty());
    assert_healthy(&proxy).await;
}

#[tokio::test]
async fn a_slow_loris_body_times_out_with_408() {
    let (up, proxy) = start_with(&[("TOLLGATE_BODY_READ_TIMEOUT", "1")]).await;
    let mut s = TcpStream::connect(addr(&proxy)).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {MASTER}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        CHAT.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&CHAT.as_bytes()[..10]).await.unwrap();
    // The rest never comes.
    let started = Instant::now();
    let a = read_answer(&mut s, Duration::from_secs(20))
        .await
        .expect("an answer");
    assert_eq!(a.status, 408, "{}", a.head);
    assert_eq!(error_type(&a.body), "timeout");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(up.received().is_empty());
    assert_healthy(&proxy).await;
}

#[tokio::test]
async fn slow_loris_headers_are_cut_off() {
    let (_up, proxy) = start_with(&[("TOLLGATE_HEADER_READ_TIMEOUT", "1")]).await;
    let mut s = TcpStream::connect(addr(&proxy)).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // The headers never end: the server closes the connection (hyper may
    // first write a 408).
    match read_answer(&mut s, Duration::from_secs(20)).await {
        None => {}
        Some(a) => assert_eq!(a.status, 408, "{}", a.head),
    }
    assert_healthy(&proxy).await;
}

/// Posts `body` to the chat route as the master key.
async fn chat(proxy: &Proxy, body: impl Into<bytes::Bytes>) -> common::Answer {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(&auth());
    Client::new()
        .send("POST", &proxy.url("/v1/chat/completions"), &h, body)
        .await
}

#[tokio::test]
async fn pathological_json_gets_400_naming_the_field() {
    let (up, proxy) = start().await;
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));

    // 10,000 levels in an unknown field, in a known field, and as the body.
    for body in [
        format!(
            r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"hi"}}],"x":{}}}"#,
            deep(10_000)
        ),
        format!(
            r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":{}}}]}}"#,
            deep(10_000)
        ),
        deep(10_000),
        format!(
            r#"{{"model":"gpt-4o","messages":[{}]}}"#,
            "{\"a\":".repeat(10_000)
        ),
    ] {
        let a = chat(&proxy, body).await;
        assert_error(&a, 400, "invalid_request_error", None);
    }

    // Invalid UTF-8 inside a string and outside one.
    let mut bad = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"caf"#.to_vec();
    bad.extend_from_slice(&[0xC3, 0x28, 0xFF]);
    bad.extend_from_slice(br#""}]}"#);
    assert_error(&chat(&proxy, bad).await, 400, "invalid_request_error", None);
    assert_error(
        &chat(&proxy, vec![0xFF, 0xFE, b'{', b'}']).await,
        400,
        "invalid_request_error",
        None,
    );

    // Duplicate keys: ambiguous, so refused (a second `model` could otherwise
    // pass one check and route as another).
    let a = chat(
        &proxy,
        r#"{"model":"gpt-4o","model":"openai/other","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_error(&a, 400, "invalid_request_error", Some("model"));

    // Huge numbers.
    for (field, value) in [
        ("max_tokens", "1e400"),
        ("max_tokens", "340282366920938463463374607431768211457"),
        ("max_tokens", "-1"),
        ("temperature", "1e308"),
        ("n", "18446744073709551616"),
        ("seed", "1e999"),
    ] {
        let body = format!(
            r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"hi"}}],"{field}":{value}}}"#
        );
        let a = chat(&proxy, body).await;
        assert_error(&a, 400, "invalid_request_error", Some(field));
    }

    // Wrong types, each named.
    for (field, body) in [
        (
            "model",
            r#"{"model":5,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
        ("messages", r#"{"model":"gpt-4o","messages":"hi"}"#),
        (
            "messages",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":7}]}"#,
        ),
        (
            "messages",
            r#"{"model":"gpt-4o","messages":[{"role":3,"content":"hi"}]}"#,
        ),
        (
            "temperature",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#,
        ),
        (
            "stream",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":"yes"}"#,
        ),
        (
            "max_tokens",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":[1]}"#,
        ),
        (
            "tools",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"tools":{"a":1}}"#,
        ),
        (
            "stop",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stop":5}"#,
        ),
        (
            "user",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"user":{}}"#,
        ),
    ] {
        let a = chat(&proxy, body).await;
        assert_error(&a, 400, "invalid_request_error", Some(field));
    }

    // Not an object at all.
    for body in ["null", "[]", "\"x\"", "1"] {
        assert_error(
            &chat(&proxy, body).await,
            400,
            "invalid_request_error",
            None,
        );
    }

    assert!(
        up.received().is_empty(),
        "nothing reached the upstream: {:?}",
        up.received()
    );
    assert_healthy(&proxy).await;
}

#[tokio::test]
async fn the_messages_route_refuses_pathological_json_too() {
    let (up, proxy) = start().await;
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(&auth());
    let c = Client::new();
    for body in [
        format!(
            r#"{{"model":"gpt-4o","max_tokens":5,"messages":[{{"role":"user","content":{}{}}}]}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        ),
        r#"{"model":"gpt-4o","max_tokens":5,"max_tokens":6,"messages":[]}"#.to_owned(),
        r#"{"model":"gpt-4o","max_tokens":1e400,"messages":[{"role":"user","content":"hi"}]}"#
            .to_owned(),
        r#"{"model":"gpt-4o","max_tokens":5,"messages":"hi"}"#.to_owned(),
    ] {
        let a = c.send("POST", &proxy.url("/v1/messages"), &h, body).await;
        assert_eq!(a.status, 400, "{}", a.text());
        // Anthropic's error shape on its route.
        assert_eq!(a.json()["type"], "error", "{}", a.text());
        assert_eq!(a.json()["error"]["type"], "invalid_request_error");
    }
    assert!(up.received().is_empty());
    assert_healthy(&proxy).await;
}

#[tokio::test]
async fn every_json_route_refuses_pathological_json() {
    let (up, proxy) = start().await;
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(&auth());
    let c = Client::new();
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let mut invalid_utf8 = br#"{"model":"gpt-4o","input":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xFF, 0xFE, b'"', b'}']);
    for path in [
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/messages/count_tokens",
        "/utils/token_counter",
        "/spend/calculate",
    ] {
        for body in [
            format!(r#"{{"model":"gpt-4o","messages":{deep},"input":{deep}}}"#).into_bytes(),
            invalid_utf8.clone(),
            br#"{"model":"gpt-4o","model":"x","input":"a","messages":[]}"#.to_vec(),
            br#"{"model":["gpt-4o"],"input":"a","messages":[]}"#.to_vec(),
            b"{".to_vec(),
        ] {
            let a = c.send("POST", &proxy.url(path), &h, body.clone()).await;
            assert_eq!(
                a.status,
                400,
                "{path} {}: {}",
                String::from_utf8_lossy(&body[..body.len().min(60)]),
                a.text()
            );
            assert_eq!(a.json()["error"]["type"], "invalid_request_error", "{path}");
        }
    }
    assert!(up.received().is_empty());
    assert_healthy(&proxy).await;
}

#[tokio::test]
async fn header_injection_is_refused_and_never_reflected() {
    let (up, proxy) = start().await;
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));

    // CR inside a header value, obsolete line folding, CR/LF inside a
    // header name: hyper refuses the request before tollgate sees it.
    for injected in [
        "x-request-id: a\rSet-Cookie: pwned=1\r\n",
        "x-request-id: a\r\n set-cookie: pwned=1\r\n",
        "x-request-\r\nid: a\r\n",
    ] {
        let a = raw_chat(&proxy, injected).await;
        assert_eq!(a.status, 400, "{injected:?}: {}", a.head);
        assert!(!a.head.to_ascii_lowercase().contains("pwned"), "{}", a.head);
    }
    assert!(up.received().is_empty());
    // A bare LF ends a header line (as in most HTTP/1.1 parsers): these are
    // two request headers, and neither is echoed or forwarded.
    let a = raw_chat(&proxy, "x-request-id: a\nset-cookie: pwned=1\r\n").await;
    assert_eq!(a.status, 200, "{}", a.head);
    assert!(!a.head.to_ascii_lowercase().contains("pwned"), "{}", a.head);
    assert!(up.last().headers.get("set-cookie").is_none());

    // CR/LF that arrive inside JSON strings (model name, request id in
    // metadata, tags) must not become headers anywhere.
    let c = Client::new();
    let mut h = vec![
        ("content-type", "application/json"),
        ("x-request-id", "id-with-no-crlf"),
    ];
    h.extend_from_slice(&auth());
    let a = c
        .send(
            "POST",
            &proxy.url("/v1/chat/completions"),
            &h,
            r#"{"model":"openai/gpt\r\nx-injected: 1","messages":[{"role":"user","content":"hi"}],"metadata":{"tags":["t\r\nx-injected: 2"]},"user":"u\r\nx-injected: 3"}"#,
        )
        .await;
    assert!(a.headers.get("x-injected").is_none());
    for (name, value) in &a.headers {
        let v = value.as_bytes();
        assert!(
            !v.contains(&b'\r') && !v.contains(&b'\n'),
            "{name}: {value:?}"
        );
    }
    for r in up.received() {
        assert!(r.headers.get("x-injected").is_none(), "{:?}", r.headers);
    }
    assert_healthy(&proxy).await;
}

#[tokio::test]
async fn host_headers_with_url_metacharacters_change_nothing() {
    let (up, proxy) = start().await;
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    for host in [
        "evil.example/x",
        "evil.example?x=1",
        "evil.example#frag",
        "evil.example/../../v2?#",
    ] {
        let a = raw_chat_to(&proxy, host, "").await;
        // The Host header plays no part in routing or in upstream URLs.
        assert_eq!(a.status, 200, "{host}: {}", a.head);
        assert!(
            !a.head.contains("evil") && !a.body.contains("evil"),
            "{}",
            a.head
        );
    }
    // Every one reached the configured upstream, on the expected path.
    let got = up.received();
    assert_eq!(got.len(), 4);
    for r in got {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.headers["host"].to_str().unwrap(), up.addr.to_string());
    }
    assert_healthy(&proxy).await;
}

/// Model names that try to leave their place in the upstream URL.
const HOSTILE_NAMES: &[&str] = &[
    "../../evil",
    "..",
    ".",
    "x/../../evil",
    "x?api-version=evil&key=steal",
    "x#frag",
    "x%2F..%2F..%2Fevil",
    "%2e%2e",
    "x/y",
    "x y",
    "x\\..\\evil",
    "x:streamGenerateContent?alt=sse&key=steal",
    "x@evil.example",
    "//evil.example/x",
    "http://evil.example/x",
];

#[tokio::test]
async fn model_names_cannot_change_the_upstream_url() {
    let (up, proxy) = start().await;
    let c = Client::new();
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(&auth());
    for provider in ["openai", "azure", "gemini"] {
        up.always(match provider {
            "gemini" => Reply::json(200, fixture("gemini/generate_text.resp.json")),
            "azure" => Reply::json(200, fixture("azure/chat_text.resp.json")),
            _ => Reply::json(200, fixture("openai/chat_text.resp.json")),
        });
        for name in HOSTILE_NAMES {
            let model = format!("{provider}/{name}");
            let body = serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": "hi"}],
            })
            .to_string();
            let before = up.received().len();
            let a = c
                .send("POST", &proxy.url("/v1/chat/completions"), &h, body)
                .await;
            let got = up.received();
            // Either refused as a bad model name, or sent to the one
            // expected path with the name inside a single segment.
            match a.status {
                400 => {
                    assert_error(&a, 400, "invalid_request_error", None);
                    assert_eq!(got.len(), before, "{model}: refused but sent");
                }
                200 => {
                    assert_eq!(got.len(), before + 1, "{model}");
                    let path = &got[before].path;
                    assert_upstream_path(provider, path, &model);
                }
                s => panic!("{model}: unexpected {s}: {}", a.text()),
            }
        }
    }
    // Every request that reached the upstream came with the configured key
    // and to the configured host.
    for r in up.received() {
        assert_eq!(
            r.headers.get("host").unwrap().to_str().unwrap(),
            up.addr.to_string(),
            "{r:?}"
        );
    }
    assert_healthy(&proxy).await;
}

/// `path` is the one URL the provider's chat call may use, with the model in
/// one segment that has no path, query or fragment syntax left in it.
fn assert_upstream_path(provider: &str, path: &str, model: &str) {
    let (path_only, query) = path.split_once('?').unwrap_or((path, ""));
    assert!(!path.contains('#'), "{model}: {path}");
    let segments: Vec<&str> = path_only.split('/').skip(1).collect();
    for s in &segments {
        let decoded = s.replace("%2e", ".").replace("%2E", ".");
        assert!(decoded != "." && decoded != "..", "{model}: {path}");
        assert!(!s.contains('\\'), "{model}: {path}");
    }
    match provider {
        "openai" => {
            assert_eq!(path, "/v1/chat/completions", "{model}");
        }
        "azure" => {
            assert_eq!(segments.len(), 5, "{model}: {path}");
            assert_eq!(segments[..2], ["openai", "deployments"], "{model}: {path}");
            assert_eq!(segments[3..], ["chat", "completions"], "{model}: {path}");
            assert_eq!(
                query,
                format!("api-version={AZURE_VERSION}"),
                "{model}: {path}"
            );
        }
        "gemini" => {
            assert_eq!(segments.len(), 3, "{model}: {path}");
            assert_eq!(segments[..2], ["v1beta", "models"], "{model}: {path}");
            // The client's model, not the wildcard, in one segment.
            let name = model.strip_prefix("gemini/").unwrap();
            assert_eq!(
                segments[2],
                format!("{}:generateContent", encode_segment(name)),
                "{model}: {path}"
            );
            assert_eq!(segments[2].matches(':').count(), 1, "{model}: {path}");
            assert!(query.is_empty(), "{model}: {path}");
        }
        _ => unreachable!(),
    }
}

/// Percent-encodes everything but unreserved characters (and `@`).
fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn http2_stream_floods_are_bounded() {
    let (up, proxy) = start().await;
    up.always(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let pid = proxy.child.id();
    let rss_before = rss_kib(pid);

    // h2c with prior knowledge: many streams opened and reset at once,
    // on several connections.
    for _ in 0..5 {
        let tcp = TcpStream::connect(addr(&proxy)).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.expect("h2c handshake");
        let conn = tokio::spawn(conn);
        let mut opened = 0;
        for _ in 0..2_000 {
            let req = http::Request::post(format!("{}/v1/chat/completions", proxy.base))
                .header("authorization", format!("Bearer {MASTER}"))
                .header("content-type", "application/json")
                .body(())
                .unwrap();
            let ready =
                match tokio::time::timeout(Duration::from_secs(5), client.clone().ready()).await {
                    Ok(Ok(c)) => c,
                    _ => break,
                };
            client = ready;
            match client.send_request(req, false) {
                Ok((_resp, mut stream)) => {
                    opened += 1;
                    let _ = stream.send_data(bytes::Bytes::from_static(b"{\"mo"), false);
                    stream.send_reset(h2::Reason::CANCEL);
                }
                Err(_) => break,
            }
        }
        assert!(opened > 0);
        drop(client);
        // The server ends the connection (GOAWAY for too many resets) or the
        // client finishes it; either way it ends.
        let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
    }

    // A well-behaved h2 request still works on a fresh connection.
    let tcp = TcpStream::connect(addr(&proxy)).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::post(format!("{}/v1/chat/completions", proxy.base))
        .header("authorization", format!("Bearer {MASTER}"))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (resp, mut stream) = client.send_request(req, false).unwrap();
    stream
        .send_data(bytes::Bytes::from_static(CHAT.as_bytes()), true)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);

    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert_healthy(&proxy).await;
}

/// Resident memory of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}
