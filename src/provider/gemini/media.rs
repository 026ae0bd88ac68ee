//! Remote images: what to do with an `https://` image URL Gemini cannot read.
//!
//! Gemini reads Cloud Storage (`gs://`), its own Files API and YouTube URLs
//! itself; Vertex AI also reads public `http(s)` URLs. For any other URL the
//! bytes must be sent inline, so someone has to download them. Doing that from
//! the gateway is a server-side request forgery risk, so it is **off** by
//! default ([`ImageUrls::Refuse`]: a clear 400 tells the client to send a data
//! URL). When enabled ([`ImageUrls::Fetch`]) the fetcher:
//!
//! * accepts `http` and `https` URLs only;
//! * refuses hosts that resolve to loopback, private (RFC 1918, unique-local),
//!   link-local (cloud metadata endpoints live there), carrier-grade NAT,
//!   multicast, broadcast, documentation or unspecified addresses — checked on
//!   the addresses the connection actually uses, so a DNS answer cannot change
//!   between the check and the connect;
//! * follows no redirects (a 3xx is an error);
//! * reads at most [`FetchPolicy::max_bytes`] per image and
//!   [`MAX_IMAGES`] images per request, within the call's deadline;
//! * requires an `image/*` content type.

use crate::error::{Error, ErrorKind};
use crate::types::{ChatRequestBody, Content, PartType};
use bytes::Bytes;
use http::{Method, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Most remote images fetched for one request.
pub const MAX_IMAGES: usize = 16;

/// What a Gemini leaf does with an `http(s)` image URL Google cannot read itself.
///
/// Gemini reads Cloud Storage (`gs://`), its own Files API and YouTube URLs
/// itself, and Vertex AI also reads public `http(s)` URLs. For any other URL
/// the bytes must be sent inline, so someone has to download them. Doing that
/// from the gateway is a server-side request forgery risk, so it is off by
/// default on Gemini ([`ImageUrls::Refuse`]: a clear 400 asks for a data URL).
/// With [`ImageUrls::Fetch`] the leaf downloads the image itself: `http` and
/// `https` only; hosts resolving to loopback, private, link-local (cloud
/// metadata), carrier-grade NAT, multicast, broadcast, documentation or
/// unspecified addresses are refused (checked on the addresses the connection
/// really uses, so a DNS answer cannot change in between); no redirects are
/// followed; at most [`FetchPolicy::max_bytes`] per image and [`MAX_IMAGES`]
/// images per request, within the call's deadline; the answer must be an
/// image.
#[derive(Clone, Debug, Default)]
pub enum ImageUrls {
    /// Refuse the request with a 400 asking for a data URL (the default on Gemini).
    #[default]
    Refuse,
    /// Download the image and send it inline (see above).
    Fetch(FetchPolicy),
    /// Send the URL as `fileData` and let Google fetch it (the default on Vertex AI,
    /// which reads public URLs).
    PassUri,
}

/// Limits of image fetching.
#[derive(Clone, Debug)]
pub struct FetchPolicy {
    /// Largest image accepted, in bytes.
    pub max_bytes: usize,
    /// Which resolved addresses may be connected to. The default,
    /// [`is_public_address`], refuses every non-public range.
    pub allow_address: fn(IpAddr) -> bool,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            max_bytes: 20 << 20,
            allow_address: is_public_address,
        }
    }
}

/// Whether `ip` is a public unicast address (the only kind image fetching may reach).
///
/// ```
/// use tollgate::provider::gemini::is_public_address;
/// assert!(is_public_address("142.250.74.46".parse().unwrap()));
/// assert!(!is_public_address("127.0.0.1".parse().unwrap()));
/// assert!(!is_public_address("169.254.169.254".parse().unwrap())); // cloud metadata
/// assert!(!is_public_address("10.1.2.3".parse().unwrap()));
/// assert!(!is_public_address("::ffff:192.168.0.1".parse().unwrap()));
/// assert!(!is_public_address("fd00::1".parse().unwrap()));
/// ```
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_v4(v4);
            }
            let seg = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
                || (seg[0] & 0xffc0) == 0xfe80 // link local
                || (seg[0] & 0xffc0) == 0xfec0 // site local (deprecated)
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || (seg[0] == 0x0064 && seg[1] == 0xff9b) // NAT64 (may reach private v4)
                || (seg[0] == 0x2002)) // 6to4 (may embed a private v4)
        }
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10 carrier-grade NAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24 protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15 benchmarking
        || o[0] >= 240) // reserved
}

/// A media type for a URL from its file extension.
pub(crate) fn guess_mime(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "mov" => "video/mov",
        "txt" => "text/plain",
        _ => return None,
    })
}

/// Images downloaded for one request (URL → media type and base64 data),
/// kept in the request's extensions between `prepare_chat` and `chat_request`.
#[derive(Clone, Debug, Default)]
pub(crate) struct FetchedMedia {
    items: Vec<(String, String, String)>,
}

impl FetchedMedia {
    pub(crate) fn get(&self, url: &str) -> Option<(&str, &str)> {
        self.items
            .iter()
            .find(|(u, _, _)| u == url)
            .map(|(_, m, d)| (m.as_str(), d.as_str()))
    }
}

/// The `http(s)` image URLs of a request that need fetching.
pub(crate) fn remote_image_urls(body: &ChatRequestBody) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for m in &body.messages {
        let Some(Content::Parts(parts)) = &m.content else {
            continue;
        };
        for p in parts {
            if p.kind != PartType::ImageUrl {
                continue;
            }
            if let Some(img) = &p.image_url {
                let u = img.url.as_str();
                let remote = (u.starts_with("https://") || u.starts_with("http://"))
                    && !u.starts_with("https://generativelanguage.googleapis.com/")
                    && !u.starts_with("https://www.youtube.com/")
                    && !u.starts_with("https://youtube.com/")
                    && !u.starts_with("https://youtu.be/");
                if remote && !out.contains(&u) {
                    out.push(u);
                }
            }
        }
    }
    out
}

/// A resolver that only returns allowed addresses.
#[derive(Clone)]
struct FilteringResolver {
    inner: GaiResolver,
    allow: fn(IpAddr) -> bool,
}

type ResolveFuture =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, std::io::Error>> + Send>>;

impl tower::Service<Name> for FilteringResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = ResolveFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let fut = self.inner.call(name);
        let allow = self.allow;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = fut.await?.filter(|a| allow(a.ip())).collect();
            if addrs.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the host resolves only to addresses image fetching may not reach",
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

/// Downloads images under a [`FetchPolicy`].
#[derive(Clone)]
pub(crate) struct ImageFetcher {
    client: Client<HttpsConnector<HttpConnector<FilteringResolver>>, Full<Bytes>>,
    policy: FetchPolicy,
}

impl std::fmt::Debug for ImageFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageFetcher")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn fetch_error(url: &str, why: impl std::fmt::Display) -> Error {
    let shown: String = url.chars().take(200).collect();
    Error::bad_request(format!("could not fetch the image `{shown}`: {why}")).with_param("messages")
}

impl ImageFetcher {
    pub(crate) fn new(policy: FetchPolicy) -> Self {
        let mut http = HttpConnector::new_with_resolver(FilteringResolver {
            inner: GaiResolver::new(),
            allow: policy.allow_address,
        });
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let https = match rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
        {
            Ok(b) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(b.with_root_certificates(roots).with_no_client_auth())
                .https_or_http()
                .enable_http1()
                .wrap_connector(http),
            // The ring provider always supports TLS 1.2/1.3; fall back to the defaults.
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_webpki_roots()
                .https_or_http()
                .enable_http1()
                .wrap_connector(http),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        ImageFetcher { client, policy }
    }

    /// Fetches every remote image of `body` (concurrently).
    pub(crate) async fn fetch_all(&self, body: &ChatRequestBody) -> Result<FetchedMedia, Error> {
        let urls = remote_image_urls(body);
        if urls.len() > MAX_IMAGES {
            return Err(Error::bad_request(format!(
                "at most {MAX_IMAGES} image URLs may be fetched per request; send the others as data URLs"
            ))
            .with_param("messages"));
        }
        let fetched =
            futures_util::future::try_join_all(urls.iter().map(|u| self.fetch(u))).await?;
        Ok(FetchedMedia {
            items: urls
                .iter()
                .zip(fetched)
                .map(|(u, (mime, data))| ((*u).to_owned(), mime, data))
                .collect(),
        })
    }

    /// Fetches one image: (media type, base64 data).
    pub(crate) async fn fetch(&self, url: &str) -> Result<(String, String), Error> {
        let uri: Uri = url
            .parse()
            .map_err(|_| fetch_error(url, "not a valid URL"))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(fetch_error(url, "only http and https URLs are fetched")),
        }
        let Some(host) = uri.host() else {
            return Err(fetch_error(url, "the URL has no host"));
        };
        // IP literals skip the resolver: check them here.
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>()
            && !(self.policy.allow_address)(ip)
        {
            return Err(fetch_error(url, "the address is not allowed"));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(fetch_error(url, "URLs with credentials are not fetched"));
        }
        let mut req = http::Request::new(Full::new(Bytes::new()));
        *req.method_mut() = Method::GET;
        *req.uri_mut() = uri;
        req.headers_mut().insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
        );
        req.headers_mut().insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("image/*"),
        );
        let resp = self.client.request(req).await.map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if let Some(io) = s.downcast_ref::<std::io::Error>()
                    && io.kind() == std::io::ErrorKind::PermissionDenied
                {
                    return fetch_error(url, "the host's address is not allowed");
                }
                source = s.source();
            }
            fetch_error(url, "the connection failed")
        })?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(fetch_error(
                url,
                "it answered with a redirect, which is not followed",
            ));
        }
        if status != StatusCode::OK {
            return Err(fetch_error(url, format_args!("it answered {status}")));
        }
        let declared = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        // A declared image type wins; an undeclared or generic one is guessed
        // from the URL; any other declared type is not an image.
        let mime = match declared.as_deref() {
            Some(m) if m.starts_with("image/") => Some(m.to_owned()),
            None | Some("" | "application/octet-stream" | "binary/octet-stream") => guess_mime(url)
                .filter(|m| m.starts_with("image/"))
                .map(str::to_owned),
            Some(_) => None,
        }
        .ok_or_else(|| fetch_error(url, "it is not an image"))?;
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.map_err(|_| fetch_error(url, "the download broke off"))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > self.policy.max_bytes {
                    return Err(Error::new(
                        ErrorKind::PayloadTooLarge,
                        format!(
                            "the image `{}` is larger than {} bytes",
                            url.chars().take(200).collect::<String>(),
                            self.policy.max_bytes
                        ),
                    )
                    .with_param("messages"));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok((mime, crate::util::base64_encode(&buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_ranges() {
        for bad in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public_address(bad.parse().unwrap()), "{bad}");
        }
        for good in ["8.8.8.8", "142.250.74.46", "2a00:1450:4001:82b::200e"] {
            assert!(is_public_address(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn mime_guesses() {
        assert_eq!(guess_mime("gs://b/x.PNG"), Some("image/png"));
        assert_eq!(guess_mime("https://h/a.jpeg?x=1.gif"), Some("image/jpeg"));
        assert_eq!(guess_mime("https://h/a"), None);
    }

    #[tokio::test]
    async fn loopback_and_bad_schemes_are_refused_before_connecting() {
        let f = ImageFetcher::new(FetchPolicy::default());
        for url in [
            "http://127.0.0.1:1/x.png",
            "http://[::1]:1/x.png",
            "http://169.254.169.254/latest/meta-data",
            "file:///etc/passwd",
            "http://user:pw@example.com/x.png",
        ] {
            let err = f.fetch(url).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadRequest, "{url}: {err:?}");
        }
        // A name that resolves to loopback is refused by the resolver.
        let err = f.fetch("http://localhost:9/x.png").await.unwrap_err();
        assert!(err.message().contains("not allowed"), "{}", err.message());
    }
}
