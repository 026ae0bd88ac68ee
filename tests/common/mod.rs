//! Test support: a programmable upstream server on 127.0.0.1:0, the proxy
//! binary as a child process, and a small HTTP client.
#![allow(dead_code, unreachable_pub, missing_docs)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(fixture_path(path)).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

pub fn fixture_path(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/protocols")
        .join(path)
}

/// A config whose one model costs exactly $0.001 per token, answered by
/// `chat_text.resp.json` (14 prompt + 37 completion tokens = $0.051).
pub fn priced_config(up: &MockUpstream, extra: &str) -> String {
    format!(
        r#"
model_list:
  - model_name: g
    litellm_params:
      model: openai/gpt-4o-2024-08-06
      api_base: "{base}/v1"
      api_key: sk-upstream
    model_info:
      input_cost_per_token: 0.001
      output_cost_per_token: 0.001
      max_output_tokens: 1000
router_settings:
  num_retries: 0
{extra}
"#,
        base = up.base()
    )
}

/// What the upstream received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: http::Method,
    pub version: http::Version,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("upstream got JSON")
    }
}

/// One programmed answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Body pieces, each sent after its delay.
    pub pieces: Vec<(Duration, Bytes)>,
    /// Never finish the body after the pieces (a silent upstream).
    pub hang: bool,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            pieces: vec![(Duration::ZERO, body.into())],
            hang: false,
        }
    }

    pub fn sse(body: impl Into<Bytes>) -> Self {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            pieces: vec![(Duration::ZERO, body.into())],
            hang: false,
        }
    }

    /// SSE sent in pieces of `size` bytes with `gap` between them.
    pub fn sse_chunked(body: &[u8], size: usize, gap: Duration) -> Self {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            pieces: body
                .chunks(size)
                .map(|c| (gap, Bytes::copy_from_slice(c)))
                .collect(),
            hang: false,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// An SSE stream that sends `body`, then stays open and silent forever.
    pub fn sse_stall(body: impl Into<Bytes>) -> Self {
        let mut r = Reply::sse(body);
        r.hang = true;
        r
    }

    /// Sends the head (`status`, SSE or JSON by `content_type`) and `prefix`,
    /// then resets the connection (TCP RST) in the middle of the body.
    pub fn reset_mid_body(status: u16, content_type: &str, prefix: impl Into<Bytes>) -> Self {
        Reply {
            status,
            headers: vec![
                ("content-type".into(), content_type.into()),
                (FAULT_HEADER.into(), "reset".into()),
            ],
            pieces: vec![(Duration::ZERO, prefix.into())],
            hang: false,
        }
    }

    /// Like [`Reply::reset_mid_body`], but the reset waits for
    /// [`MockUpstream::release`] (e.g. until the client saw the first chunk).
    pub fn reset_when_released(status: u16, content_type: &str, prefix: impl Into<Bytes>) -> Self {
        let mut r = Reply::reset_mid_body(status, content_type, prefix);
        for (k, v) in &mut r.headers {
            if k == FAULT_HEADER {
                *v = "reset-on-release".into();
            }
        }
        r
    }

    /// Reads the request, then never sends a response head.
    pub fn no_head() -> Self {
        Reply {
            status: 200,
            headers: vec![(FAULT_HEADER.into(), "no-head".into())],
            pieces: Vec::new(),
            hang: true,
        }
    }

    fn fault(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == FAULT_HEADER)
            .map(|(_, v)| v.as_str())
    }
}

/// Marks a fault mode on a [`Reply`]; never sent on the wire.
const FAULT_HEADER: &str = "x-mock-fault";

/// A base URL where nothing listens (connection refused).
pub fn refused_base() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

#[derive(Default)]
struct State {
    replies: VecDeque<Reply>,
    fallback: Option<Reply>,
    received: Vec<Received>,
    release: Arc<tokio::sync::Notify>,
    connections: usize,
    connected: Arc<tokio::sync::Notify>,
}

/// A programmable upstream (HTTP/1.1, and HTTP/2 with prior knowledge).
#[derive(Clone)]
pub struct MockUpstream {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl MockUpstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                {
                    let mut st = st.lock().unwrap();
                    st.connections += 1;
                    st.connected.notify_waiters();
                }
                let st = st.clone();
                // A second handle on the socket, to reset it on demand.
                let socket = {
                    use std::os::fd::AsFd;
                    stream
                        .as_fd()
                        .try_clone_to_owned()
                        .ok()
                        .map(|fd| Arc::new(std::net::TcpStream::from(fd)))
                };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                        let st = st.clone();
                        let socket = socket.clone();
                        async move { Ok::<_, Infallible>(answer(st, socket, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        MockUpstream { addr, state }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues a reply for the next request.
    pub fn push(&self, reply: Reply) {
        self.state.lock().unwrap().replies.push_back(reply);
    }

    /// The reply when the queue is empty.
    pub fn always(&self, reply: Reply) {
        self.state.lock().unwrap().fallback = Some(reply);
    }

    /// Lets a [`Reply::reset_when_released`] reset its connection.
    pub fn release(&self) {
        self.state.lock().unwrap().release.notify_one();
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Waits until `n` connections have been accepted (panics after `limit`).
    pub async fn wait_for_connections(&self, n: usize, limit: Duration) {
        let connected = self.state.lock().unwrap().connected.clone();
        tokio::time::timeout(limit, async {
            loop {
                let accepted = connected.notified();
                if self.connections() >= n {
                    return;
                }
                accepted.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} upstream connections within {limit:?}"));
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn last(&self) -> Received {
        self.received()
            .pop()
            .expect("the upstream received a request")
    }
}

type ReplyBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

async fn answer(
    state: Arc<Mutex<State>>,
    socket: Option<Arc<std::net::TcpStream>>,
    req: http::Request<Incoming>,
) -> http::Response<ReplyBody> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (reply, release) = {
        let mut s = state.lock().unwrap();
        let release = s.release.clone();
        s.received.push(Received {
            method: parts.method,
            version: parts.version,
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: parts.headers,
            body,
        });
        let reply = s
            .replies
            .pop_front()
            .or_else(|| s.fallback.clone())
            .unwrap_or_else(|| Reply::json(500, r#"{"error":{"message":"no reply programmed"}}"#));
        (reply, release)
    };
    let fault = reply.fault().map(str::to_owned);
    if fault.as_deref() == Some("no-head") {
        // The request was read; the response never starts.
        std::future::pending::<()>().await;
    }
    // After the pieces: reset the connection instead of ending the body.
    let gated = fault.as_deref() == Some("reset-on-release");
    let reset = (fault.as_deref() == Some("reset") || gated)
        .then(|| socket.map(|s| (s, gated.then_some(release))))
        .flatten();
    let hang = reply.hang;
    let pieces = reply.pieces;
    let stream = futures_util::stream::unfold(
        (pieces.into_iter(), hang, reset),
        |(mut it, hang, reset)| async move {
            match it.next() {
                Some((delay, bytes)) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok(Frame::data(bytes)), (it, hang, reset)))
                }
                None if reset.is_some() => {
                    if let Some((_, Some(gate))) = &reset {
                        gate.notified().await;
                    }
                    if let Some(s) = reset.as_ref().and_then(|(s, _)| s.try_clone().ok()) {
                        // Closing with a zero linger sends RST instead of FIN.
                        let _ = tokio::net::TcpSocket::from_std_stream(s).set_zero_linger();
                    }
                    Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "mock reset",
                        )),
                        (it, hang, None),
                    ))
                }
                None if hang => {
                    std::future::pending::<()>().await;
                    None
                }
                None => None,
            }
        },
    );
    let mut resp = http::Response::new(BodyExt::boxed(StreamBody::new(stream)));
    *resp.status_mut() = http::StatusCode::from_u16(reply.status).unwrap();
    for (k, v) in reply.headers.into_iter().filter(|(k, _)| k != FAULT_HEADER) {
        resp.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}

/// A minimal HTTP client for tests.
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    pub fn new() -> Self {
        Client {
            inner: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .inner
            .request(req.body(Full::new(body.into())).unwrap())
            .await
            .expect("request sent");
        let (parts, body) = resp.into_parts();
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    pub async fn post_json(&self, url: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.send("POST", url, &h, body.to_owned()).await
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Answer {
        self.send("GET", url, headers, Bytes::new()).await
    }
}

/// The proxy binary running as a child process.
pub struct Proxy {
    pub child: Child,
    pub base: String,
    pub stderr: Arc<Mutex<String>>,
    _dir: Option<TempDir>,
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tollgate-{tag}-{}-{}",
            std::process::id(),
            uuid_like()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    t ^ N
        .fetch_add(1, Ordering::SeqCst)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Proxy {
    /// Starts the proxy with `yaml` as its config on a free port and waits until it listens.
    pub fn start(yaml: &str, env: &[(&str, &str)]) -> Proxy {
        let dir = TempDir::new("proxy");
        let mut p = Proxy::start_in(&dir.0, yaml, &[], env);
        p._dir = Some(dir);
        p
    }

    /// Writes `yaml` to `dir/config.yaml` (a SQLite database, if any, goes
    /// next to it), starts the proxy on it on a free port with `extra` flags,
    /// and waits until it listens.
    pub fn start_in(dir: &Path, yaml: &str, extra: &[&str], env: &[(&str, &str)]) -> Proxy {
        Proxy::try_start_in(dir, yaml, extra, env)
            .unwrap_or_else(|e| panic!("proxy did not start: {e}"))
    }

    /// [`Proxy::start_in`], or `Err(stderr)` if it exits before listening.
    pub fn try_start_in(
        dir: &Path,
        yaml: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Proxy, String> {
        let path = dir.join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut args = vec![
            "--config",
            path.to_str().unwrap(),
            "--port",
            "0",
            "--host",
            "127.0.0.1",
        ];
        args.extend_from_slice(extra);
        Proxy::spawn(&args, env)
    }

    /// Runs the binary with `args`; `Err(stderr)` if it exits before listening.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Result<Proxy, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.args(args)
            .env_remove("RUST_LOG")
            .env_remove("TOLLGATE_CONFIG")
            .env_remove("PORT")
            .env_remove("HOST")
            // Services only when a test asks for them: a proxy that picked up
            // CI's REDIS_URL or DATABASE_URL would share state across runs.
            .env_remove("REDIS_URL")
            .env_remove("REDIS_HOST")
            .env_remove("REDIS_PORT")
            .env_remove("REDIS_PASSWORD")
            .env_remove("REDIS_USERNAME")
            .env_remove("DATABASE_URL")
            .env("TOLLGATE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tollgate");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let err_buf = Arc::new(Mutex::new(String::new()));
        let eb = err_buf.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut b = eb.lock().unwrap();
                b.push_str(&line);
                b.push('\n');
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("tollgate listening on ") {
                let base = url.trim().to_owned();
                std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
                return Ok(Proxy {
                    child,
                    base,
                    stderr: err_buf,
                    _dir: None,
                });
            }
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        // Give the stderr reader a moment to drain what the process wrote before exiting.
        for _ in 0..50 {
            if !err_buf.lock().unwrap().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!("exited with {status}: {}", err_buf.lock().unwrap()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The directory holding the config (and the SQLite database) of a proxy
    /// started with [`Proxy::start`].
    pub fn dir(&self) -> Option<&std::path::Path> {
        self._dir.as_ref().map(|d| d.0.as_path())
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the logs contain `needle` (polling), or panics after `limit`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let start = std::time::Instant::now();
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            assert!(
                start.elapsed() < limit,
                "log line `{needle}` never came: {logs}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether tests that need an external service must fail instead of skipping.
/// Posts a streamed chat request to the proxy over a connection of its own,
/// reads until the first SSE event, and cuts the stream (closes the
/// connection). Panics unless the answer is a 200 that starts streaming
/// within 10 s.
pub async fn cut_stream_after_first_event(proxy: &Proxy, authorization: &str, body: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = proxy.base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\nauthorization: {authorization}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(body.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
            .await
            .expect("the stream starts")
            .unwrap();
        assert!(
            n > 0,
            "closed before the first event: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
}

pub fn services_required() -> bool {
    std::env::var("TOLLGATE_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v == "true")
}

/// The Redis URL (`REDIS_URL`, default `redis://127.0.0.1:6379`) when Redis
/// answers a PING; otherwise `None` after printing why — or a panic when
/// services are required.
pub async fn redis_or_skip(test: &str) -> Option<String> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let reachable = match tollgate::limits::RedisConn::new(&url, "probe") {
        Ok(c) => c.ping().await.is_ok(),
        Err(_) => false,
    };
    if reachable {
        return Some(url);
    }
    assert!(
        !services_required(),
        "{test}: Redis is required but {url} is unreachable"
    );
    eprintln!("SKIPPED {test}: Redis at {url} is unreachable (set REDIS_URL)");
    None
}

/// Splits an SSE body into its `data:` payloads.
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| {
            let data: Vec<&str> = e
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// A Python that can `import <modules>` (`TOLLGATE_PYTHON`, else `.venv/bin/python`).
pub fn python_with(modules: &str) -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = std::env::var_os("TOLLGATE_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/.venv/bin/python"
        ))])
        .collect();
    for py in &candidates {
        let ok = Command::new(py)
            .args(["-c", &format!("import {modules}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(py.clone());
        }
    }
    Err(format!("no Python with `{modules}` at {candidates:?}"))
}

/// Runs `tests/python/<script>` against the proxy, or skips (returns `false`)
/// when no suitable Python exists and services are not required.
pub async fn run_python(
    test: &str,
    modules: &str,
    script: &str,
    proxy: &Proxy,
    key: &str,
    args: &[String],
) -> bool {
    let python = match python_with(modules) {
        Ok(p) => p,
        Err(why) if !services_required() => {
            eprintln!("SKIPPED {test}: {why} (run ./scripts/test, or set TOLLGATE_PYTHON)");
            return false;
        }
        Err(why) => panic!("{why}"),
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let base = proxy.base.clone();
    let key = key.to_owned();
    let args = args.to_vec();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(path)
            .args(args)
            .env("TOLLGATE_BASE_URL", base)
            .env("TOLLGATE_KEY", key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed\nstdout: {stdout}\nstderr: {stderr}\nproxy logs: {}",
        proxy.logs()
    );
    assert!(stdout.contains("ok "), "{stdout}");
    true
}
