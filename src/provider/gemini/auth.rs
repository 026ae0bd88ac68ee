//! Google OAuth access tokens (Vertex AI's `Authorization: Bearer`).
//!
//! A [`TokenSource`] hands out a valid token. The usual one is
//! [`CachedToken`] over [`GoogleAuth`]: the token is fetched once, cached, and
//! refreshed shortly before it expires (five minutes, or half its lifetime if
//! that is shorter); concurrent callers wait for a single refresh instead of
//! each starting one. A failed refresh is reported to the callers waiting for
//! it (and, for one second, to new ones) without a new request each, and a
//! still-valid token keeps being served while a refresh fails.
//!
//! [`GoogleAuth`] speaks three of Google's credential kinds:
//!
//! * `service_account` JSON: an RS256-signed JWT (signed with `ring`) is
//!   exchanged at the credentials' `token_uri` (`grant_type=…jwt-bearer`);
//! * `authorized_user` JSON (what `gcloud auth application-default login`
//!   writes): the refresh token is exchanged at `token_uri`;
//! * the metadata server of Google Cloud runtimes (GCE, GKE, Cloud Run).
//!
//! Nothing here reads the environment or logs key material: errors name the
//! failure and Google's error code, never the key, the assertion or a token.

use crate::Secret;
use crate::error::{Error, ErrorKind};
use crate::transport::HttpClient;
use bytes::Bytes;
use http::{Method, Uri};
use http_body_util::BodyExt;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// The OAuth scope Vertex AI needs.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Google's default token endpoint.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The metadata server of Google Cloud runtimes.
pub const METADATA_BASE: &str = "http://metadata.google.internal";

/// A future that borrows its source.
pub type TokenFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Gives out a valid OAuth access token.
pub trait TokenSource: Send + Sync + 'static {
    /// A token valid for at least a few minutes. Failures are `Authentication` errors.
    fn token(&self) -> TokenFuture<'_, Secret>;
}

/// A fixed token (from `gcloud auth print-access-token`, or tests). Never refreshed.
#[derive(Clone, Debug)]
pub struct StaticToken(pub Secret);

impl TokenSource for StaticToken {
    fn token(&self) -> TokenFuture<'_, Secret> {
        let t = self.0.clone();
        Box::pin(async move { Ok(t) })
    }
}

/// A newly obtained token and how long it lives.
#[derive(Clone, Debug)]
pub struct FreshToken {
    /// The access token.
    pub token: Secret,
    /// Its lifetime from now.
    pub expires_in: Duration,
}

/// Obtains fresh tokens (wrapped in [`CachedToken`] to be a [`TokenSource`]).
pub trait TokenFetcher: Send + Sync + 'static {
    /// Requests a new token.
    fn fetch(&self) -> TokenFuture<'_, FreshToken>;
}

/// How long a failed refresh is reported to new callers without a new attempt.
const FAILURE_HOLD: Duration = Duration::from_secs(1);

struct Cached {
    token: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

/// Caches a [`TokenFetcher`]'s token: refreshed before it expires, one refresh
/// at a time (see the [module docs](self)). Uses tokio's clock, so tests can
/// pause and advance time.
pub struct CachedToken<F> {
    fetcher: F,
    cache: Mutex<Option<Cached>>,
    refresh: tokio::sync::Mutex<Option<(Instant, String)>>,
}

impl<F> std::fmt::Debug for CachedToken<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CachedToken(<redacted>)")
    }
}

impl<F: TokenFetcher> CachedToken<F> {
    /// Wraps a fetcher.
    pub fn new(fetcher: F) -> Self {
        CachedToken {
            fetcher,
            cache: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(None),
        }
    }

    /// The fetcher.
    pub fn fetcher(&self) -> &F {
        &self.fetcher
    }

    fn cached(&self, need_fresh: bool) -> Option<Secret> {
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let c = cache.as_ref()?;
        let now = Instant::now();
        let limit = if need_fresh {
            c.refresh_at
        } else {
            c.expires_at
        };
        (now < limit).then(|| c.token.clone())
    }

    async fn get(&self) -> Result<Secret, Error> {
        if let Some(t) = self.cached(true) {
            return Ok(t);
        }
        let mut failure = self.refresh.lock().await;
        // Someone else may have refreshed while this caller waited.
        if let Some(t) = self.cached(true) {
            return Ok(t);
        }
        if let Some((at, message)) = failure.as_ref()
            && at.elapsed() < FAILURE_HOLD
        {
            return self
                .cached(false)
                .ok_or_else(|| Error::new(ErrorKind::Authentication, message.clone()));
        }
        match self.fetcher.fetch().await {
            Ok(fresh) => {
                let now = Instant::now();
                let margin = Duration::from_secs(300).min(fresh.expires_in / 2);
                let mut cache = self
                    .cache
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *cache = Some(Cached {
                    token: fresh.token.clone(),
                    refresh_at: now + fresh.expires_in.saturating_sub(margin),
                    expires_at: now + fresh.expires_in,
                });
                *failure = None;
                Ok(fresh.token)
            }
            Err(e) => {
                *failure = Some((Instant::now(), e.message().to_owned()));
                // A token that has not expired yet still works.
                match self.cached(false) {
                    Some(t) => Ok(t),
                    None => Err(e),
                }
            }
        }
    }
}

impl<F: TokenFetcher> TokenSource for CachedToken<F> {
    fn token(&self) -> TokenFuture<'_, Secret> {
        Box::pin(self.get())
    }
}

// ---------------------------------------------------------------------------
// Credentials.

/// Google credentials, parsed from a credentials JSON file (or the metadata server).
#[derive(Clone)]
pub enum GoogleCredentials {
    /// A service-account key.
    ServiceAccount(ServiceAccount),
    /// An end-user refresh token (`gcloud auth application-default login`).
    AuthorizedUser(AuthorizedUser),
    /// The metadata server at this base URL.
    MetadataServer(String),
}

impl std::fmt::Debug for GoogleCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GoogleCredentials::ServiceAccount(sa) => f
                .debug_struct("ServiceAccount")
                .field("client_email", &sa.client_email)
                .finish_non_exhaustive(),
            GoogleCredentials::AuthorizedUser(_) => f.write_str("AuthorizedUser(<redacted>)"),
            GoogleCredentials::MetadataServer(base) => {
                f.debug_tuple("MetadataServer").field(base).finish()
            }
        }
    }
}

/// A service account: who it is and its RSA key.
#[derive(Clone)]
pub struct ServiceAccount {
    /// `client_email`: the JWT issuer.
    pub client_email: String,
    /// `private_key_id`: the JWT `kid`.
    pub private_key_id: Option<String>,
    /// `token_uri`: where the JWT is exchanged (and its audience).
    pub token_uri: String,
    /// `project_id`.
    pub project_id: Option<String>,
    key: Arc<RsaKeyPair>,
}

/// An end user's OAuth client and refresh token.
#[derive(Clone)]
pub struct AuthorizedUser {
    client_id: String,
    client_secret: Secret,
    refresh_token: Secret,
    token_uri: String,
    /// `quota_project_id`.
    pub quota_project_id: Option<String>,
}

#[derive(Deserialize)]
struct CredentialsFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
    project_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    quota_project_id: Option<String>,
}

fn creds_error(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::Authentication, message)
}

fn check_uri(uri: &str) -> Result<(), Error> {
    match uri.parse::<Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Ok(()),
        _ => Err(creds_error(
            "the Google credentials' `token_uri` is not an http(s) URL",
        )),
    }
}

/// Parses an RSA private key in PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
fn rsa_key(pem: &str) -> Result<RsaKeyPair, Error> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| creds_error("the service account's `private_key` is not a PEM private key"))?;
    let key = match &der {
        PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
        PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
        _ => {
            return Err(creds_error(
                "the service account's `private_key` is not an RSA key",
            ));
        }
    };
    key.map_err(|_| creds_error("the service account's `private_key` is not a usable RSA key"))
}

impl GoogleCredentials {
    /// Parses a credentials JSON document (`service_account` or `authorized_user`).
    /// Errors never quote the document.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let f: CredentialsFile = serde_json::from_str(text)
            .map_err(|_| creds_error("the Google credentials are not valid JSON"))?;
        let missing = |what: &str| creds_error(format!("the Google credentials have no `{what}`"));
        match f.kind.as_deref() {
            Some("service_account") => {
                let pem = f.private_key.ok_or_else(|| missing("private_key"))?;
                let token_uri = f.token_uri.unwrap_or_else(|| GOOGLE_TOKEN_URI.to_owned());
                check_uri(&token_uri)?;
                Ok(GoogleCredentials::ServiceAccount(ServiceAccount {
                    client_email: f.client_email.ok_or_else(|| missing("client_email"))?,
                    private_key_id: f.private_key_id,
                    token_uri,
                    project_id: f.project_id,
                    key: Arc::new(rsa_key(&pem)?),
                }))
            }
            Some("authorized_user") => {
                let token_uri = f.token_uri.unwrap_or_else(|| GOOGLE_TOKEN_URI.to_owned());
                check_uri(&token_uri)?;
                Ok(GoogleCredentials::AuthorizedUser(AuthorizedUser {
                    client_id: f.client_id.ok_or_else(|| missing("client_id"))?,
                    client_secret: Secret::new(
                        f.client_secret.ok_or_else(|| missing("client_secret"))?,
                    ),
                    refresh_token: Secret::new(
                        f.refresh_token.ok_or_else(|| missing("refresh_token"))?,
                    ),
                    token_uri,
                    quota_project_id: f.quota_project_id,
                }))
            }
            Some(other) => Err(creds_error(format!(
                "Google credentials of type `{}` are not supported (use a service account or authorized_user JSON)",
                other.chars().take(40).collect::<String>()
            ))),
            None => Err(missing("type")),
        }
    }

    /// The project the credentials belong to, if they say.
    pub fn project_id(&self) -> Option<&str> {
        match self {
            GoogleCredentials::ServiceAccount(sa) => sa.project_id.as_deref(),
            GoogleCredentials::AuthorizedUser(u) => u.quota_project_id.as_deref(),
            GoogleCredentials::MetadataServer(_) => None,
        }
    }

    /// A stable identity for sharing one token cache between deployments.
    fn cache_key(&self) -> Vec<u8> {
        let text = match self {
            GoogleCredentials::ServiceAccount(sa) => format!(
                "sa\0{}\0{}\0{}",
                sa.client_email,
                sa.private_key_id.as_deref().unwrap_or(""),
                sa.token_uri
            ),
            GoogleCredentials::AuthorizedUser(u) => format!(
                "user\0{}\0{}\0{}",
                u.client_id,
                u.token_uri,
                u.refresh_token.expose()
            ),
            GoogleCredentials::MetadataServer(base) => format!("metadata\0{base}"),
        };
        ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
            .as_ref()
            .to_vec()
    }
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl ServiceAccount {
    /// The signed JWT assertion for the token request, issued at `now_unix`
    /// (valid one hour; audience `token_uri`; scope cloud-platform).
    pub fn assertion(&self, now_unix: u64) -> Result<String, Error> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = serde_json::Value::String(kid.clone());
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": CLOUD_PLATFORM_SCOPE,
            "aud": self.token_uri,
            "iat": now_unix,
            "exp": now_unix + 3600,
        });
        let mut input = b64url(header.to_string().as_bytes());
        input.push('.');
        input.push_str(&b64url(claims.to_string().as_bytes()));
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| creds_error("signing the service-account assertion failed"))?;
        input.push('.');
        input.push_str(&b64url(&sig));
        Ok(input)
    }
}

/// Percent-encodes a form value (`application/x-www-form-urlencoded`).
fn form(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Fetches tokens for [`GoogleCredentials`] over an [`HttpClient`].
#[derive(Clone)]
pub struct GoogleAuth {
    creds: GoogleCredentials,
    client: HttpClient,
}

impl std::fmt::Debug for GoogleAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleAuth")
            .field("credentials", &self.creds)
            .finish_non_exhaustive()
    }
}

/// How long one token request may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

impl GoogleAuth {
    /// Token fetching for `creds` through `client`.
    pub fn new(creds: GoogleCredentials, client: HttpClient) -> Self {
        GoogleAuth { creds, client }
    }

    /// A cached, shared token source for `creds`: deployments using the same
    /// credentials share one cache (and one refresh).
    pub fn shared_source(creds: GoogleCredentials, client: HttpClient) -> Arc<dyn TokenSource> {
        type Registry = Mutex<HashMap<Vec<u8>, Weak<CachedToken<GoogleAuth>>>>;
        static REGISTRY: OnceLock<Registry> = OnceLock::new();
        let key = creds.cache_key();
        let mut map = REGISTRY
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        let source = Arc::new(CachedToken::new(GoogleAuth::new(creds, client)));
        map.insert(key, Arc::downgrade(&source));
        source
    }

    async fn request(&self, req: http::Request<Bytes>) -> Result<FreshToken, Error> {
        let secrets: Vec<String> = match &self.creds {
            GoogleCredentials::AuthorizedUser(u) => vec![
                u.client_secret.expose().to_owned(),
                u.refresh_token.expose().to_owned(),
            ],
            _ => Vec::new(),
        };
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let call = async {
            let resp = self.client.send(req).await?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), 64 << 10)
                .collect()
                .await
                .map_err(|_| creds_error("reading Google's token answer failed"))?
                .to_bytes();
            Ok::<_, Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(TOKEN_TIMEOUT, call)
            .await
            .map_err(|_| creds_error("Google's token endpoint did not answer in time"))?
            .map_err(|e| {
                creds_error(format!(
                    "could not reach Google's token endpoint ({})",
                    e.message()
                ))
            })?;
        let parsed: Option<TokenResponse> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            let detail = parsed
                .as_ref()
                .map(|p| {
                    let code = p.error.as_deref().unwrap_or("error");
                    match p.error_description.as_deref() {
                        Some(d) => format!("{code}: {d}"),
                        None => code.to_owned(),
                    }
                })
                .unwrap_or_else(|| format!("HTTP {status}"));
            let detail: String = detail.chars().take(300).collect();
            return Err(Error::from_upstream(
                ErrorKind::Authentication,
                &format!("Google refused the credentials ({detail})"),
                &secrets,
            ));
        }
        let parsed =
            parsed.ok_or_else(|| creds_error("Google's token answer is not valid JSON"))?;
        let token = parsed
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| creds_error("Google's token answer has no access_token"))?;
        Ok(FreshToken {
            token: Secret::new(token),
            expires_in: Duration::from_secs(parsed.expires_in.unwrap_or(3600).clamp(1, 86_400)),
        })
    }

    fn form_post(uri: &str, body: String) -> Result<http::Request<Bytes>, Error> {
        let uri: Uri = uri
            .parse()
            .map_err(|_| creds_error("the Google credentials' `token_uri` is not a URL"))?;
        let mut req = http::Request::new(Bytes::from(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        Ok(req)
    }
}

impl TokenFetcher for GoogleAuth {
    fn fetch(&self) -> TokenFuture<'_, FreshToken> {
        Box::pin(async move {
            let req = match &self.creds {
                GoogleCredentials::ServiceAccount(sa) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    let jwt = sa.assertion(now)?;
                    let body = format!(
                        "grant_type={}&assertion={}",
                        form("urn:ietf:params:oauth:grant-type:jwt-bearer"),
                        form(&jwt)
                    );
                    Self::form_post(&sa.token_uri, body)?
                }
                GoogleCredentials::AuthorizedUser(u) => {
                    let body = format!(
                        "grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
                        form(&u.client_id),
                        form(u.client_secret.expose()),
                        form(u.refresh_token.expose())
                    );
                    Self::form_post(&u.token_uri, body)?
                }
                GoogleCredentials::MetadataServer(base) => {
                    let uri: Uri = format!(
                        "{}/computeMetadata/v1/instance/service-accounts/default/token",
                        base.trim_end_matches('/')
                    )
                    .parse()
                    .map_err(|_| creds_error("the metadata server address is not a URL"))?;
                    let mut req = http::Request::new(Bytes::new());
                    *req.uri_mut() = uri;
                    req.headers_mut().insert(
                        http::HeaderName::from_static("metadata-flavor"),
                        http::HeaderValue::from_static("Google"),
                    );
                    req
                }
            };
            self.request(req).await.map_err(|e| {
                if matches!(self.creds, GoogleCredentials::MetadataServer(_)) {
                    creds_error(format!(
                        "no Google credentials: set vertex_credentials or GOOGLE_APPLICATION_CREDENTIALS, or run on Google Cloud ({})",
                        e.message()
                    ))
                } else {
                    e
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        calls: Arc<AtomicUsize>,
        lifetime: Duration,
        fail: bool,
    }

    impl TokenFetcher for Counting {
        fn fetch(&self) -> TokenFuture<'_, FreshToken> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
                // Take a while, so concurrent callers overlap.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if self.fail {
                    return Err(creds_error("refused"));
                }
                Ok(FreshToken {
                    token: Secret::new(format!("token-{n}")),
                    expires_in: self.lifetime,
                })
            })
        }
    }

    fn counting(lifetime: Duration) -> (CachedToken<Counting>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        (
            CachedToken::new(Counting {
                calls: calls.clone(),
                lifetime,
                fail: false,
            }),
            calls,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn cached_then_refreshed_before_expiry() {
        let (src, calls) = counting(Duration::from_secs(3600));
        assert_eq!(src.token().await.unwrap().expose(), "token-1");
        tokio::time::advance(Duration::from_secs(3000)).await;
        assert_eq!(src.token().await.unwrap().expose(), "token-1");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Inside the five-minute margin: refreshed although still valid.
        tokio::time::advance(Duration::from_secs(301)).await;
        assert_eq!(src.token().await.unwrap().expose(), "token-2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Short-lived tokens refresh at half their life.
        let (short, calls) = counting(Duration::from_secs(60));
        short.token().await.unwrap();
        tokio::time::advance(Duration::from_secs(29)).await;
        short.token().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(short.token().await.unwrap().expose(), "token-2");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_refresh() {
        let (src, calls) = counting(Duration::from_secs(3600));
        let src = Arc::new(src);
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let s = src.clone();
                tokio::spawn(async move { s.token().await.unwrap().expose().to_owned() })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), "token-1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_shared_briefly_then_retried() {
        let calls = Arc::new(AtomicUsize::new(0));
        let src = Arc::new(CachedToken::new(Counting {
            calls: calls.clone(),
            lifetime: Duration::from_secs(3600),
            fail: true,
        }));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = src.clone();
                tokio::spawn(async move { s.token().await.unwrap_err().kind() })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), ErrorKind::Authentication);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(src.token().await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn bad_credentials_are_clean_errors() {
        for (text, needle) in [
            ("not json", "not valid JSON"),
            (
                r#"{"type":"service_account","client_email":"a@b"}"#,
                "private_key",
            ),
            (
                r#"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#,
                "RSA key",
            ),
            (r#"{"type":"external_account"}"#, "not supported"),
            (
                r#"{"type":"authorized_user","client_id":"c","client_secret":"s","refresh_token":"r","token_uri":"file:///x"}"#,
                "token_uri",
            ),
        ] {
            let e = GoogleCredentials::from_json(text).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Authentication);
            assert!(e.message().contains(needle), "{text}: {}", e.message());
            assert!(!e.message().contains("AAAA"));
        }
    }

    #[test]
    fn form_encoding() {
        assert_eq!(form("urn:ietf:params"), "urn%3Aietf%3Aparams");
        assert_eq!(form("a b+c/d="), "a%20b%2Bc%2Fd%3D");
    }
}
