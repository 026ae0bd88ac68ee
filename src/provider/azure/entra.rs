//! Microsoft Entra ID (Azure AD) tokens by the OAuth 2.0 client-credentials flow.
//!
//! `POST {authority_host}/{tenant_id}/oauth2/v2.0/token` with
//! `grant_type=client_credentials`, the client id and secret and the scope
//! (`https://cognitiveservices.azure.com/.default` for Azure OpenAI) answers
//! `{"token_type":"Bearer","expires_in":3599,"access_token":"…"}`.
//!
//! [`EntraTokenSource`] caches the token and fetches a new one shortly before
//! the old one expires (the refresh margin, at most half the token's
//! lifetime). Only one fetch runs at a time: callers that find the token due
//! while another caller is already fetching wait for that fetch instead of
//! starting their own, or keep using the old token while it is still valid.

use crate::Secret;
use crate::error::{Error, ErrorKind, LimitSource, TimeoutKind};
use crate::provider::bedrock::sigv4::uri_encode;
use crate::transport::HttpClient;
use bytes::Bytes;
use http::{HeaderValue, Method, Uri};
use http_body::Body as _;
use serde::Deserialize;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The scope of Azure OpenAI (Cognitive Services) tokens.
pub const DEFAULT_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// The public-cloud Entra ID authority.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// How long before expiry a token is replaced (capped at half its lifetime).
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Longest wait for the token endpoint.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 << 10;

/// An Entra ID app registration (service principal) and where to get its tokens.
#[derive(Clone)]
pub struct EntraCredentials {
    /// The directory (tenant) id, a GUID or a domain such as `contoso.onmicrosoft.com`.
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// The token scope (default [`DEFAULT_SCOPE`]).
    pub scope: String,
    /// The authority (default [`DEFAULT_AUTHORITY_HOST`]; sovereign clouds and tests change it).
    pub authority_host: String,
    /// How long before expiry the token is refreshed (default [`DEFAULT_REFRESH_MARGIN`]).
    pub refresh_margin: Duration,
}

impl std::fmt::Debug for EntraCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraCredentials")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("scope", &self.scope)
            .field("authority_host", &self.authority_host)
            .finish()
    }
}

impl EntraCredentials {
    /// Credentials with the default scope, authority and refresh margin.
    pub fn new(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> Self {
        EntraCredentials {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret,
            scope: DEFAULT_SCOPE.to_owned(),
            authority_host: DEFAULT_AUTHORITY_HOST.to_owned(),
            refresh_margin: DEFAULT_REFRESH_MARGIN,
        }
    }

    /// The token endpoint (`{authority}/{tenant}/oauth2/v2.0/token`).
    ///
    /// ```
    /// use tollgate::provider::azure::EntraCredentials;
    /// use tollgate::Secret;
    ///
    /// let c = EntraCredentials::new("contoso.onmicrosoft.com", "app", Secret::new("s"));
    /// assert_eq!(
    ///     c.token_uri().unwrap(),
    ///     "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    /// );
    /// // The tenant can not change the path.
    /// assert!(EntraCredentials::new("../x", "app", Secret::new("s")).token_uri().is_err());
    /// ```
    pub fn token_uri(&self) -> Result<Uri, Error> {
        let tenant = &self.tenant_id;
        let valid = !tenant.is_empty()
            && tenant.len() <= 256
            && tenant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !tenant.starts_with('.');
        if !valid {
            return Err(Error::bad_request(
                "the Entra ID tenant_id must be a GUID or a domain name",
            ));
        }
        if self.client_id.is_empty() || self.client_secret.is_empty() {
            return Err(Error::bad_request(
                "Entra ID authentication needs tenant_id, client_id and client_secret",
            ));
        }
        let uri = crate::provider::openai::join_uri(
            &self.authority_host,
            &format!("/{tenant}/oauth2/v2.0/token"),
        )
        .map_err(|_| {
            Error::bad_request("the Entra ID authority host must be an http:// or https:// URL")
        })?;
        if uri.query().is_some() {
            return Err(Error::bad_request(
                "the Entra ID authority host must not have a query string",
            ));
        }
        Ok(uri)
    }

    /// The form body of the token request (holds the client secret).
    fn form(&self) -> Bytes {
        let pairs = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("scope", self.scope.as_str()),
        ];
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", uri_encode(v, false)))
            .collect::<Vec<_>>()
            .join("&");
        Bytes::from(body)
    }
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

/// A cached, self-refreshing Entra ID access token (see the [module docs](self)).
pub struct EntraTokenSource {
    uri: Uri,
    form: Bytes,
    margin: Duration,
    client: HttpClient,
    secrets: Vec<Secret>,
    state: Mutex<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for EntraTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraTokenSource")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct TokenError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

impl EntraTokenSource {
    /// A token source for `credentials`, fetching through `client`.
    pub fn new(credentials: &EntraCredentials, client: HttpClient) -> Result<Self, Error> {
        Ok(EntraTokenSource {
            uri: credentials.token_uri()?,
            form: credentials.form(),
            margin: credentials.refresh_margin,
            client,
            secrets: vec![credentials.client_secret.clone()],
            state: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How many tokens were fetched so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Cached>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached token if it has not expired (it may be due for refresh).
    pub fn current(&self) -> Option<Secret> {
        let now = Instant::now();
        self.lock()
            .as_ref()
            .filter(|c| now < c.expires_at)
            .map(|c| c.token.clone())
    }

    /// The cached token if it is not yet due for refresh.
    fn fresh(&self) -> Option<Secret> {
        let now = Instant::now();
        self.lock()
            .as_ref()
            .filter(|c| now < c.refresh_at)
            .map(|c| c.token.clone())
    }

    /// A valid token: the cached one, or a new one (one fetch at a time).
    pub async fn token(&self) -> Result<Secret, Error> {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let _guard = match self.refresh.try_lock() {
            Ok(g) => g,
            Err(_) => {
                // Someone is fetching: an old token that still works is good enough.
                if let Some(t) = self.current() {
                    return Ok(t);
                }
                self.refresh.lock().await
            }
        };
        // The fetch we waited for may have brought a fresh token.
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        match self.fetch().await {
            Ok(t) => Ok(t),
            // A failed refresh of a token that still works is not worth failing the call.
            Err(e) => self.current().ok_or(e),
        }
    }

    async fn fetch(&self) -> Result<Secret, Error> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut req = http::Request::new(self.form.clone());
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        let h = req.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
        );
        let started = Instant::now();
        let deadline = started + TOKEN_TIMEOUT;
        let resp = tokio::time::timeout_at(deadline, self.client.send(req))
            .await
            .map_err(|_| Error::timeout(TimeoutKind::Total))?
            .map_err(|e| {
                Error::new(
                    e.kind(),
                    format!(
                        "could not reach the Entra ID token endpoint: {}",
                        e.message()
                    ),
                )
            })?;
        let (parts, mut body) = resp.into_parts();
        let read = async {
            let mut buf = Vec::new();
            while let Some(frame) =
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                let Ok(frame) = frame else { break };
                if let Ok(data) = frame.into_data() {
                    let room = MAX_TOKEN_RESPONSE.saturating_sub(buf.len());
                    buf.extend_from_slice(&data[..data.len().min(room)]);
                    if room <= data.len() {
                        break;
                    }
                }
            }
            buf
        };
        let bytes = tokio::time::timeout_at(deadline, read)
            .await
            .map_err(|_| Error::timeout(TimeoutKind::Total))?;
        if !parts.status.is_success() {
            return Err(self.error(parts.status, &parts.headers, &bytes));
        }
        let parsed: TokenResponse = serde_json::from_slice(&bytes).map_err(|_| {
            Error::new(
                ErrorKind::BadGateway,
                "the Entra ID token endpoint answered with something that is not a token",
            )
        })?;
        let Some(token) = parsed.access_token.filter(|t| !t.is_empty()) else {
            return Err(Error::new(
                ErrorKind::BadGateway,
                "the Entra ID token endpoint answered without an access_token",
            ));
        };
        if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(Error::new(
                ErrorKind::BadGateway,
                "the Entra ID access token contains invalid characters",
            ));
        }
        let lifetime = parsed
            .expires_in
            .as_ref()
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
            .map(|s| Duration::from_secs(s.min(86_400)))
            .unwrap_or(Duration::from_secs(3600));
        let margin = self.margin.min(lifetime / 2);
        let token = Secret::new(token);
        *self.lock() = Some(Cached {
            token: token.clone(),
            refresh_at: started + lifetime.saturating_sub(margin),
            expires_at: started + lifetime,
        });
        Ok(token)
    }

    fn error(&self, status: http::StatusCode, headers: &http::HeaderMap, body: &[u8]) -> Error {
        let parsed: TokenError = serde_json::from_slice(body).unwrap_or_default();
        let secrets: Vec<&str> = self.secrets.iter().map(Secret::expose).collect();
        let detail = parsed
            .error_description
            .or(parsed.error.clone())
            .unwrap_or_else(|| format!("HTTP {status}"));
        let kind = match status.as_u16() {
            429 => ErrorKind::RateLimited(LimitSource::Upstream),
            500..=599 => ErrorKind::ServiceUnavailable,
            _ => ErrorKind::Authentication,
        };
        let mut err = Error::from_upstream(
            kind,
            &format!("Microsoft Entra ID refused the token request: {detail}"),
            &secrets,
        );
        if let Some(code) = parsed.error {
            err = err.with_code(crate::util::redact(&code, &secrets).into_owned());
        }
        if let Some(after) = crate::provider::retry_after(headers) {
            err = err.with_retry_after(after);
        }
        err
    }
}
