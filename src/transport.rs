//! The pooled HTTP client every provider leaf sends through.
//!
//! One `hyper-util` client per process (or per gateway): a connection pool
//! keyed by host, rustls with the webpki roots, HTTP/1.1 and HTTP/2 (chosen by
//! ALPN), `TCP_NODELAY` on every socket (without it, keep-alive requests meet
//! Nagle's algorithm and delayed ACKs and gain ~40 ms each), and a connect
//! timeout, and a spare connection for hosts that churn connections
//! (`spare`). Redirects are never followed.

use crate::error::{Error, ErrorKind, TimeoutKind};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

mod spare;
use spare::SpareConnector;

/// Settings of the upstream HTTP client.
#[derive(Clone, Debug)]
pub struct HttpClientConfig {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// Offer HTTP/2 in ALPN (TLS upstreams).
    pub http2: bool,
    /// HTTP/2 keep-alive ping interval (detects dead connections).
    pub http2_keep_alive: Option<Duration>,
    /// Speak HTTP/2 to every upstream without negotiating it (on plain HTTP:
    /// h2c with prior knowledge), so concurrent calls to one host share a
    /// connection instead of holding one socket each. Every upstream must
    /// accept HTTP/2.
    pub http2_prior_knowledge: bool,
    /// Keep one connected, unused connection per upstream host that opens
    /// connections again and again (streams cut before their end, bursts
    /// past the pool), for at most this long, so the next request that finds
    /// no idle pooled connection skips the TCP and TLS handshakes. A host
    /// connected once gets none. `None` or a zero duration (and HTTP/2 with
    /// prior knowledge, where one connection carries every request) keeps
    /// none.
    pub spare_connection: Option<Duration>,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        HttpClientConfig {
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 256,
            http2: true,
            http2_keep_alive: Some(Duration::from_secs(30)),
            http2_prior_knowledge: false,
            spare_connection: Some(Duration::from_secs(2)),
        }
    }
}

/// A cheap-to-clone handle on a pooled HTTP/1.1 + HTTP/2 client.
///
/// ```
/// use tollgate::transport::{HttpClient, HttpClientConfig};
///
/// let client = HttpClient::new(HttpClientConfig::default());
/// let same_pool = client.clone();
/// # drop(same_pool);
/// ```
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<SpareConnector<HttpsConnector<HttpConnector>>, Full<Bytes>>,
    connect_timeout: Duration,
    #[cfg(test)]
    spare: SpareConnector<HttpsConnector<HttpConnector>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Builds a client.
    pub fn new(config: HttpClientConfig) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let https = if config.http2 {
            builder.enable_http1().enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };

        let keep = match config.spare_connection {
            Some(keep) if !config.http2_prior_knowledge => keep,
            _ => Duration::ZERO,
        };
        let https = SpareConnector::new(https, keep);

        let mut b = Client::builder(TokioExecutor::new());
        b.pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .retry_canceled_requests(true);
        if config.http2_prior_knowledge {
            b.http2_only(true);
        }
        if let Some(ka) = config.http2_keep_alive {
            b.http2_keep_alive_interval(ka)
                .http2_keep_alive_timeout(Duration::from_secs(20));
        }
        HttpClient {
            #[cfg(test)]
            spare: https.clone(),
            inner: b.build(https),
            connect_timeout: config.connect_timeout,
        }
    }

    /// The process-wide default client (created on first use).
    pub fn shared() -> HttpClient {
        static SHARED: OnceLock<HttpClient> = OnceLock::new();
        SHARED
            .get_or_init(|| HttpClient::new(HttpClientConfig::default()))
            .clone()
    }

    /// The configured connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Sends a request and returns the response head with a streaming body.
    /// Connection failures are `Connection` errors; a connect timeout is
    /// `Timeout(Connect)`.
    pub async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Incoming>, Error> {
        let request = request.map(Full::new);
        self.inner.request(request).await.map_err(classify)
    }
}

fn classify(err: hyper_util::client::legacy::Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return Error::timeout(TimeoutKind::Connect);
        }
        source = e.source();
    }
    let what = if err.is_connect() {
        "could not connect to the upstream"
    } else {
        "the upstream connection failed"
    };
    // The hyper error text names no credentials; it is kept as the source only.
    Error::new(ErrorKind::Connection, what).with_source(err)
}
