use super::*;
use crate::transport::{HttpClient, HttpClientConfig};
use bytes::Bytes;
use std::collections::HashSet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What the upstream saw, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    /// Connection `n` was accepted (numbered from 0).
    Accepted(usize),
    /// Connection `n` was closed by the client.
    ClosedByClient(usize),
    /// Connection `n` was closed by the server, as asked.
    ClosedByServer(usize),
}

/// An HTTP/1.1 upstream on a port: each request is answered with a chunked
/// stream whose head names the connection (`x-conn`) and which never ends,
/// so the client has to cut it. `Upstream::close` makes the server close a
/// connection it has not had a request on.
struct Upstream {
    url: String,
    seen: mpsc::UnboundedReceiver<Seen>,
    closers: Arc<Mutex<FastMap<usize, tokio::sync::oneshot::Sender<()>>>>,
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/v1/chat/completions",
            listener.local_addr().unwrap()
        );
        let (tx, seen) = mpsc::unbounded_channel();
        let closers: Arc<Mutex<FastMap<usize, _>>> = Arc::default();
        let kept = closers.clone();
        tokio::spawn(async move {
            for n in 0.. {
                let (socket, _) = listener.accept().await.unwrap();
                let (close, closed) = tokio::sync::oneshot::channel();
                kept.lock().unwrap().insert(n, close);
                let _ = tx.send(Seen::Accepted(n));
                tokio::spawn(serve(n, socket, closed, tx.clone()));
            }
        });
        Upstream { url, seen, closers }
    }

    /// Waits for the next connection the upstream accepts.
    async fn next_accept(&mut self) -> usize {
        loop {
            if let Seen::Accepted(n) = self.next().await {
                return n;
            }
        }
    }

    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("the upstream sees something within 10 s")
            .unwrap()
    }

    /// Closes connection `n` from the server's side, and waits until it is.
    async fn close(&mut self, n: usize) {
        let close = self.closers.lock().unwrap().remove(&n).unwrap();
        close.send(()).unwrap();
        while self.next().await != Seen::ClosedByServer(n) {}
    }
}

async fn serve(
    n: usize,
    mut socket: tokio::net::TcpStream,
    mut close: tokio::sync::oneshot::Receiver<()>,
    tx: mpsc::UnboundedSender<Seen>,
) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        tokio::select! {
            read = socket.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Seen::ClosedByClient(n));
                    return;
                }
                Ok(k) => got.extend_from_slice(&buf[..k]),
            },
            _ = &mut close => {
                drop(socket);
                let _ = tx.send(Seen::ClosedByServer(n));
                return;
            }
        }
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-conn: {n}\r\n\
         transfer-encoding: chunked\r\n\r\n6\r\ndata:\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    // Holds the stream open until the client cuts it.
    while !matches!(socket.read(&mut buf).await, Ok(0) | Err(_)) {}
    let _ = tx.send(Seen::ClosedByClient(n));
}

fn client(keep: Option<Duration>) -> HttpClient {
    HttpClient::new(HttpClientConfig {
        spare_connection: keep,
        ..HttpClientConfig::default()
    })
}

/// Sends a streamed request, reads the head and returns the connection that
/// served it; the stream is then cut (its body dropped unread).
async fn cut_stream(client: &HttpClient, url: &str) -> usize {
    let request = http::Request::post(url)
        .body(Bytes::from_static(b"{}"))
        .unwrap();
    let response = client.send(request).await.expect("the upstream answers");
    response.headers()["x-conn"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits until the client holds a spare.
async fn placed(client: &HttpClient) {
    tokio::time::timeout(Duration::from_secs(10), client.spare.placed())
        .await
        .expect("a spare is put in place within 10 s");
}

#[tokio::test]
async fn a_host_that_churns_connections_gets_a_spare_that_the_next_request_takes() {
    let mut up = Upstream::start().await;
    let client = client(Some(Duration::from_secs(60)));

    assert_eq!(cut_stream(&client, &up.url).await, 0);
    assert_eq!(up.next_accept().await, 0);
    // A second new connection within the keep time: the host churns, so a
    // spare is opened beside it (connections 1 and 2, in either order).
    let second = cut_stream(&client, &up.url).await;
    assert_eq!(up.next_accept().await + up.next_accept().await, 3);
    placed(&client).await;
    let spare = 3 - second;

    // The next request goes up the spare, connected before it was sent, and
    // another spare is opened behind it.
    assert_eq!(cut_stream(&client, &up.url).await, spare);
    assert_eq!(up.next_accept().await, 3, "the spare is replaced");
    placed(&client).await;
    assert_eq!(cut_stream(&client, &up.url).await, 3);
}

#[tokio::test]
async fn a_spare_the_server_closed_is_passed_over() {
    let mut up = Upstream::start().await;
    let client = client(Some(Duration::from_secs(60)));
    assert_eq!(cut_stream(&client, &up.url).await, 0);
    let second = cut_stream(&client, &up.url).await;
    placed(&client).await;
    up.close(3 - second).await;
    // Sent up the closed spare, this request would fail; it connects anew
    // (connection 3 or 4: its replacement spare races it).
    let served = cut_stream(&client, &up.url).await;
    assert!(served == 3 || served == 4, "served on {served}");
}

#[tokio::test]
async fn an_unused_spare_is_closed_after_the_keep_time() {
    let mut up = Upstream::start().await;
    let client = client(Some(Duration::from_millis(200)));
    assert_eq!(cut_stream(&client, &up.url).await, 0);
    cut_stream(&client, &up.url).await;
    // Connections 0 and 1 are cut by the client; the spare is closed by the
    // client too once its keep time is over, without any request.
    let mut closed = HashSet::new();
    while closed.len() < 3 {
        if let Seen::ClosedByClient(n) = up.next().await {
            closed.insert(n);
        }
    }
    assert_eq!(closed, HashSet::from([0, 1, 2]));
}

#[tokio::test]
async fn a_host_connected_once_or_with_spares_off_gets_none() {
    let up = Upstream::start().await;
    let uri: Uri = up.url.parse().unwrap();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();

    let mut once = SpareConnector::new(https.clone(), Duration::from_secs(60));
    let conn = once.call(uri.clone()).await.unwrap();
    assert!(
        !once.has_spare_or_filling(&uri),
        "one connect opens no spare"
    );
    drop(conn);
    let second = once.call(uri.clone()).await.unwrap();
    assert!(once.has_spare_or_filling(&uri), "a second connect does");
    drop(second);

    let mut off = SpareConnector::new(https, Duration::ZERO);
    for _ in 0..3 {
        drop(off.call(uri.clone()).await.unwrap());
    }
    assert!(!off.has_spare_or_filling(&uri));
}

#[tokio::test(start_paused = true)]
async fn hosts_past_the_limit_get_no_spare_until_others_go_idle() {
    // Only the host bookkeeping is exercised (no key here is connected
    // twice, so nothing is dialled); the clock is the runtime's, paused.
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let spare = SpareConnector::new(https, Duration::from_secs(60));
    let key = |port: usize| format!("http://127.0.0.1:{}", 1000 + port);
    for port in 0..MAX_HOSTS + 10 {
        let (taken, fill) = spare.take(&key(port));
        assert!(taken.is_none() && fill.is_none());
    }
    let tracked = |k: &str| spare.shared.hosts.lock().unwrap().contains_key(k);
    assert_eq!(spare.shared.hosts.lock().unwrap().len(), MAX_HOSTS);
    assert!(!tracked(&key(MAX_HOSTS)), "past the limit: not tracked");

    // Once the tracked hosts have gone a keep time without a connect, they
    // make room for new ones.
    tokio::time::advance(Duration::from_secs(61)).await;
    spare.take(&key(MAX_HOSTS + 20));
    assert!(tracked(&key(MAX_HOSTS + 20)));
    assert_eq!(spare.shared.hosts.lock().unwrap().len(), 1);
}

/// A spare belongs to the runtime that opened it (its socket is registered
/// with that runtime's I/O driver): it is closed when that runtime goes, and
/// a request on another runtime connects anew.
#[test]
fn a_spare_goes_with_the_runtime_that_opened_it() {
    let server = tokio::runtime::Runtime::new().unwrap();
    let mut up = server.block_on(Upstream::start());
    let client = client(Some(Duration::from_secs(60)));

    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let second = first.block_on(async {
        assert_eq!(cut_stream(&client, &up.url).await, 0);
        let second = cut_stream(&client, &up.url).await;
        placed(&client).await;
        second
    });
    drop(first);
    let spare = 3 - second;
    server.block_on(async {
        let mut closed = HashSet::new();
        while !closed.contains(&spare) {
            if let Seen::ClosedByClient(n) = up.next().await {
                closed.insert(n);
            }
        }
    });

    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let served = other.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), cut_stream(&client, &up.url))
            .await
            .expect("answered within 10 s")
    });
    assert_eq!(served, 3, "a new connection");
}

/// Two runtimes alive at once, one client: each gets its own spare, and a
/// request takes only its own runtime's.
#[test]
fn each_runtime_takes_only_its_own_spares() {
    let server = tokio::runtime::Runtime::new().unwrap();
    let mut up = server.block_on(Upstream::start());
    let client = client(Some(Duration::from_secs(60)));
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let (a, b) = (runtime(), runtime());

    // Runtime a churns: connections 0 and 1, and a spare (1 or 2).
    let second = a.block_on(async {
        cut_stream(&client, &up.url).await;
        let second = cut_stream(&client, &up.url).await;
        placed(&client).await;
        second
    });
    server.block_on(async {
        for n in 0..3 {
            assert_eq!(up.next_accept().await, n);
        }
    });
    // Runtime b does not take a's spare (whose socket only a's driver, idle
    // outside `a.block_on`, would ever wake): its request connects anew.
    let served = b.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), cut_stream(&client, &up.url))
            .await
            .expect("answered within 10 s")
    });
    assert_eq!(served, 3);
    // Runtime a still has its spare, connected before this request.
    assert_eq!(a.block_on(cut_stream(&client, &up.url)), 3 - second);
}
