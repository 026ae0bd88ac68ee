//! A spare upstream connection per host, connected before it is needed.
//!
//! The pool answers most requests with an idle connection. It has none when
//! every connection is busy, or when the last request's stream was cut: an
//! HTTP/1.1 connection whose response was not read to its end cannot carry
//! another request, so it is closed. Such a request waits for a TCP (and TLS)
//! handshake before its first byte goes up.
//!
//! [`SpareConnector`] wraps the connector the pool calls. Once a host needs a
//! second new connection within the keep time, the connector opens one more in
//! the background and keeps it unused. The next request that finds no idle
//! pooled connection takes it, already connected and handshaken, and another
//! one is opened behind it. So a host that churns connections has at most one
//! connection waiting, and a host connected once (a one-off call) has none.
//!
//! Spares are kept per runtime: a spare's socket is registered with the I/O
//! driver of the runtime that connected it, so only requests on that runtime
//! take it, and it is closed when that runtime shuts down.
//!
//! A spare is kept for the keep time, then closed. Before one is handed out,
//! its socket is peeked at without waiting: a server that closed it (end of
//! file, reset, or on plain HTTP bytes nobody asked for) fails that check,
//! and the request connects anew.

use crate::util::FastMap;
use hyper::Uri;
use hyper::rt::{Read, ReadBuf};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

/// Hosts tracked at once; past this, new hosts get no spare.
const MAX_HOSTS: usize = 64;

/// A connector that keeps one connected, unused connection per busy host.
pub(crate) struct SpareConnector<C: Service<Uri>> {
    inner: C,
    shared: Arc<Shared<C::Response>>,
}

impl<C: Service<Uri> + Clone> Clone for SpareConnector<C> {
    fn clone(&self) -> Self {
        SpareConnector {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

struct Shared<T> {
    keep: Duration,
    hosts: Mutex<FastMap<Box<str>, Host<T>>>,
    /// Told each time a spare is put in place.
    #[cfg(test)]
    placed: tokio::sync::Notify,
}

struct Host<T> {
    /// The spare and its number (an expiry closes only the spare it was set
    /// for, not a later one).
    spare: Option<(T, u64)>,
    /// A background connect is under way.
    filling: bool,
    /// When a request last asked for a new connection.
    last_connect: Instant,
    next_number: u64,
}

impl<T> Host<T> {
    fn idle(&self, now: Instant, keep: Duration) -> bool {
        self.spare.is_none() && !self.filling && now.duration_since(self.last_connect) > keep
    }
}

impl<C> SpareConnector<C>
where
    C: Service<Uri> + Clone + Send + 'static,
    C::Response: StillOpen + Unpin + Send + 'static,
    C::Future: Send,
{
    /// Wraps `inner`; a spare is kept unused for at most `keep`.
    pub(crate) fn new(inner: C, keep: Duration) -> Self {
        SpareConnector {
            inner,
            shared: Arc::new(Shared {
                keep,
                hosts: Mutex::new(FastMap::default()),
                #[cfg(test)]
                placed: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Takes the host's spare if it has one, and says whether a new spare
    /// should be opened for it.
    fn take(&self, key: &str) -> (Option<C::Response>, Option<u64>) {
        if self.shared.keep.is_zero() {
            return (None, None);
        }
        let now = Instant::now();
        let keep = self.shared.keep;
        let mut hosts = self
            .shared
            .hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !hosts.contains_key(key) {
            if hosts.len() >= MAX_HOSTS {
                hosts.retain(|_, host| !host.idle(now, keep));
            }
            if hosts.len() < MAX_HOSTS {
                hosts.insert(
                    key.into(),
                    Host {
                        spare: None,
                        filling: false,
                        last_connect: now,
                        next_number: 0,
                    },
                );
            }
            // A first connect (or one past the host limit) opens no spare.
            return (None, None);
        }
        let host = hosts.get_mut(key).expect("checked above");
        let churning = now.duration_since(host.last_connect) <= keep;
        host.last_connect = now;
        let taken = host.spare.take().map(|(conn, _)| conn);
        let fill = if churning && !host.filling {
            host.filling = true;
            host.next_number += 1;
            Some(host.next_number)
        } else {
            None
        };
        (taken, fill)
    }

    /// Opens a spare for `key` in the background, keeps it for the keep time,
    /// then closes it if it is still unused.
    fn fill(&self, key: &str, uri: Uri, number: u64) {
        let placement = Placement {
            shared: self.shared.clone(),
            key: key.into(),
            number,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // the placement's drop ends the fill
        };
        let inner = self.inner.clone();
        runtime.spawn(async move {
            // The placement ends the fill when this task ends, however it
            // ends: after the keep time, on a failed connect, or dropped with
            // its runtime, whose I/O driver the spare's socket is registered
            // with (no other runtime could drive it).
            let placement = placement;
            // After the request that asked for a connection has gone on its
            // way: a connect before it would hold up its first byte.
            tokio::task::yield_now().await;
            let connected = inner.oneshot(uri).await;
            let shared = &placement.shared;
            let placed = with_host(shared, &placement.key, |host| {
                host.filling = false;
                match connected {
                    Ok(conn) => {
                        host.spare = Some((conn, number));
                        true
                    }
                    Err(_) => false,
                }
            });
            if placed == Some(true) {
                #[cfg(test)]
                shared.placed.notify_one();
                tokio::time::sleep(shared.keep).await;
            }
        });
    }

    /// Waits until a spare is put in place (one not yet waited for).
    #[cfg(test)]
    pub(crate) async fn placed(&self) {
        self.shared.placed.notified().await;
    }

    #[cfg(test)]
    fn has_spare_or_filling(&self, uri: &Uri) -> bool {
        host_key(uri)
            .and_then(|key| with_host(&self.shared, &key, |h| h.spare.is_some() || h.filling))
            .unwrap_or(false)
    }
}

fn with_host<T, R>(shared: &Shared<T>, key: &str, f: impl FnOnce(&mut Host<T>) -> R) -> Option<R> {
    let mut hosts = shared.hosts.lock().unwrap_or_else(PoisonError::into_inner);
    hosts.get_mut(key).map(f)
}

/// One fill of a host's spare; dropped, it ends that fill: clears the
/// host's "filling" mark if the fill was still connecting, and closes the
/// spare it placed if nobody took it.
struct Placement<T> {
    shared: Arc<Shared<T>>,
    key: Box<str>,
    number: u64,
}

impl<T> Drop for Placement<T> {
    fn drop(&mut self) {
        let number = self.number;
        with_host(&self.shared, &self.key, |host| {
            if host.filling && host.next_number == number {
                host.filling = false;
            }
            if matches!(host.spare, Some((_, n)) if n == number) {
                host.spare = None;
            }
        });
    }
}

/// A spare's key: the runtime that opens it and the pool's key for the
/// destination (scheme and authority). A spare's socket is registered with
/// the I/O driver of the runtime whose task connected it, so it is handed
/// only to requests on that runtime: a request on another could not count on
/// it outliving its runtime. No runtime, no spare.
fn host_key(uri: &Uri) -> Option<String> {
    let runtime = tokio::runtime::Handle::try_current().ok()?.id();
    Some(format!(
        "{runtime}/{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or("")
    ))
}

/// A connection that can tell, without waiting, whether its server has
/// closed it.
pub(crate) trait StillOpen {
    /// Whether the connection, which nobody has written to, is still open.
    fn still_open(&mut self) -> bool;
}

impl StillOpen for MaybeHttpsStream<TokioIo<TcpStream>> {
    fn still_open(&mut self) -> bool {
        match self {
            MaybeHttpsStream::Http(io) => socket_open(io.inner()).unwrap_or(false),
            MaybeHttpsStream::Https(tls) => {
                // TLS first reads what has come (a TLS 1.3 server sends
                // session tickets after the handshake); a close or an alert
                // shows here when the runtime already knows the socket is
                // readable.
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                let mut cx = Context::from_waker(Waker::noop());
                if !matches!(
                    Pin::new(&mut *tls).poll_read(&mut cx, buf.unfilled()),
                    Poll::Pending
                ) {
                    return false;
                }
                // Then the socket itself, which knows of an end of file or a
                // reset before the runtime does. Unread bytes may be a ticket
                // or an alert; the connection is taken as open.
                let tcp = tls.inner().get_ref().0.inner().inner();
                socket_open(tcp).unwrap_or(true)
            }
        }
    }
}

/// Peeks at a socket without waiting: `Some(true)` when nothing has come
/// (open and quiet), `Some(false)` at end of file or on an error, `None`
/// when bytes are waiting.
fn socket_open(tcp: &TcpStream) -> Option<bool> {
    let mut byte = [std::mem::MaybeUninit::uninit()];
    match socket2::SockRef::from(tcp).peek(&mut byte) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(true),
        Err(_) | Ok(0) => Some(false),
        Ok(_) => None,
    }
}

impl<C> Service<Uri> for SpareConnector<C>
where
    C: Service<Uri> + Clone + Send + 'static,
    C::Response: StillOpen + Unpin + Send + 'static,
    C::Future: Send + Unpin,
{
    type Response = C::Response;
    type Error = C::Error;
    type Future = Connecting<C::Future, C::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (taken, fill) = match host_key(&uri) {
            Some(key) => {
                let (taken, fill) = self.take(&key);
                (taken, fill.map(|number| (key, number)))
            }
            None => (None, None),
        };
        if let Some((key, number)) = fill {
            self.fill(&key, uri.clone(), number);
        }
        if let Some(mut conn) = taken
            && conn.still_open()
        {
            return Connecting::Spare(Some(conn));
        }
        Connecting::New(self.inner.call(uri))
    }
}

/// The connector's future: a spare at once, or a new connection.
pub(crate) enum Connecting<F, T> {
    Spare(Option<T>),
    New(F),
}

impl<F, T, E> Future for Connecting<F, T>
where
    F: Future<Output = Result<T, E>> + Unpin,
    T: Unpin,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Connecting::Spare(conn) => Poll::Ready(Ok(conn.take().expect("polled after ready"))),
            Connecting::New(future) => Pin::new(future).poll(cx),
        }
    }
}

#[cfg(test)]
mod tests;
