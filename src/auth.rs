//! Who is calling: credentials from headers, checked by an [`Authenticate`].
//!
//! The HTTP edge takes the caller's key from the first of these headers that
//! is present: `Authorization: Bearer <key>`, `x-litellm-api-key`, `api-key`,
//! `x-api-key`, `x-goog-api-key`; hands it to the configured [`Authenticate`];
//! and puts the resulting [`Identity`] in the request's extensions. Every
//! credential failure gets the same 401 body, whatever the reason.

use crate::Secret;
use crate::error::Error;
use crate::limits::Subjects;
use crate::provider::BoxFuture;
use http::HeaderMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// What kind of caller this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// No authentication is configured: everyone is this.
    Anonymous,
    /// The master key: every route, every model.
    Admin,
    /// A virtual key with its own limits.
    Key,
}

/// The authenticated caller, attached to every request.
///
/// Its `Debug` form leaves out the key hash: identities end up in logs.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The caller's role.
    pub role: Role,
    /// The hex SHA-256 of the virtual key: its id in storage. Not for logs.
    pub key_hash: Option<Arc<str>>,
    /// A short, non-secret display form of the key (`sk-...abcd`).
    pub key_display: Option<Arc<str>>,
    /// The key's alias.
    pub key_alias: Option<Arc<str>>,
    /// The key's team.
    pub team_id: Option<Arc<str>>,
    /// The key's internal user.
    pub user_id: Option<Arc<str>>,
    /// Models the key may use (`None`: all).
    pub models: Option<Arc<[String]>>,
    /// The key's, team's and user's limits (see [`crate::limits`]).
    pub subjects: Subjects,
    /// The cache controls the caller may use (LiteLLM's
    /// `allowed_cache_controls`; `None`: all).
    pub allowed_cache_controls: Option<Arc<[String]>>,
}

impl Identity {
    /// The identity of an unauthenticated gateway.
    pub fn anonymous() -> Self {
        Identity {
            role: Role::Anonymous,
            key_hash: None,
            key_display: None,
            key_alias: None,
            team_id: None,
            user_id: None,
            models: None,
            subjects: Subjects::none(),
            allowed_cache_controls: None,
        }
    }

    /// The master key's identity.
    pub fn admin(key: &str) -> Self {
        Identity {
            role: Role::Admin,
            key_display: Some(display_key(key).into()),
            ..Identity::anonymous()
        }
    }

    /// Whether this identity may manage the gateway.
    pub fn is_admin(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Anonymous)
    }

    /// Whether this identity may call `model`.
    pub fn may_use(&self, model: &str) -> bool {
        match &self.models {
            None => true,
            Some(list) => list.is_empty() || list.iter().any(|m| m == model || m == "*"),
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("role", &self.role)
            .field("key_display", &self.key_display)
            .field("key_alias", &self.key_alias)
            .field("team_id", &self.team_id)
            .field("user_id", &self.user_id)
            .field("models", &self.models)
            .field("subjects", &self.subjects.0.len())
            .finish_non_exhaustive()
    }
}

/// A short display form of a key: its first 3 and last 4 characters.
///
/// ```
/// assert_eq!(tollgate::auth::display_key("sk-1234567890abcd"), "sk-...abcd");
/// assert_eq!(tollgate::auth::display_key("short"), "...");
/// ```
pub fn display_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 12 {
        return "...".to_owned();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}...{tail}")
}

/// The caller's key from the request headers (see the [module docs](self)).
/// `None` if absent or malformed.
pub fn credential(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?.trim();
        let (scheme, rest) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim())
            .filter(|k| !k.is_empty());
    }
    for name in [
        "x-litellm-api-key",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
    ] {
        if let Some(v) = headers.get(name) {
            let v = v.to_str().ok()?.trim();
            let v = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .unwrap_or(v)
                .trim();
            return (!v.is_empty()).then_some(v);
        }
    }
    None
}

/// Checks a credential. Implementations should answer from memory
/// ([`AuthFuture::ready`]) and go to storage only on a cache miss.
pub trait Authenticate: Send + Sync + 'static {
    /// Authenticates `credential` (the key from the headers, if any).
    fn authenticate(&self, credential: Option<&str>) -> AuthFuture;
}

/// The answer of an [`Authenticate`]: ready now, or later.
pub struct AuthFuture(AuthInner);

enum AuthInner {
    Ready(Option<Result<Identity, Error>>),
    Pending(BoxFuture<Result<Identity, Error>>),
}

impl AuthFuture {
    /// An answer available now (no allocation).
    pub fn ready(result: Result<Identity, Error>) -> Self {
        AuthFuture(AuthInner::Ready(Some(result)))
    }

    /// An answer that needs I/O.
    pub fn pending(fut: impl Future<Output = Result<Identity, Error>> + Send + 'static) -> Self {
        AuthFuture(AuthInner::Pending(Box::pin(fut)))
    }
}

impl Future for AuthFuture {
    type Output = Result<Identity, Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            AuthInner::Ready(r) => Poll::Ready(
                r.take()
                    .unwrap_or_else(|| Err(Error::internal("auth future polled after completion"))),
            ),
            AuthInner::Pending(f) => f.as_mut().poll(cx),
        }
    }
}

/// No authentication: every caller is [`Role::Anonymous`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAuth;

impl Authenticate for NoAuth {
    fn authenticate(&self, _: Option<&str>) -> AuthFuture {
        AuthFuture::ready(Ok(Identity::anonymous()))
    }
}

/// Only the master key is accepted (compared in constant time).
///
/// ```
/// use tollgate::auth::{Authenticate, MasterKey, Role};
/// use tollgate::Secret;
///
/// # tokio_test::block_on(async {
/// let auth = MasterKey::new(Secret::new("sk-master-123456"));
/// assert_eq!(auth.authenticate(Some("sk-master-123456")).await.unwrap().role, Role::Admin);
/// assert_eq!(auth.authenticate(Some("sk-master-123457")).await.unwrap_err().status().as_u16(), 401);
/// assert!(auth.authenticate(None).await.is_err());
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct MasterKey {
    key: Secret,
    identity: Identity,
}

impl MasterKey {
    /// Accepts only `key`.
    pub fn new(key: Secret) -> Self {
        let identity = Identity::admin(key.expose());
        MasterKey { key, identity }
    }

    /// Whether `candidate` is the master key.
    pub fn matches(&self, candidate: &str) -> bool {
        self.key.matches(candidate)
    }
}

impl Authenticate for MasterKey {
    fn authenticate(&self, credential: Option<&str>) -> AuthFuture {
        AuthFuture::ready(match credential {
            Some(c) if self.key.matches(c) => Ok(self.identity.clone()),
            _ => Err(Error::unauthorized()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn credential_headers() {
        assert_eq!(
            credential(&headers(&[("authorization", "Bearer k1")])),
            Some("k1")
        );
        assert_eq!(
            credential(&headers(&[("authorization", "bearer  k1 ")])),
            Some("k1")
        );
        assert_eq!(
            credential(&headers(&[("authorization", "Basic abc")])),
            None
        );
        assert_eq!(credential(&headers(&[("authorization", "Bearer ")])), None);
        assert_eq!(
            credential(&headers(&[("x-litellm-api-key", "Bearer k2")])),
            Some("k2")
        );
        assert_eq!(credential(&headers(&[("api-key", "k3")])), Some("k3"));
        assert_eq!(credential(&headers(&[("x-api-key", "k4")])), Some("k4"));
        assert_eq!(
            credential(&headers(&[("x-goog-api-key", "k5")])),
            Some("k5")
        );
        assert_eq!(credential(&headers(&[])), None);
        // Authorization wins when present, even if malformed.
        assert_eq!(
            credential(&headers(&[
                ("authorization", "Token x"),
                ("x-api-key", "k4")
            ])),
            None
        );
    }

    #[test]
    fn model_allow_list() {
        let mut id = Identity::anonymous();
        assert!(id.may_use("x"));
        id.models = Some(Arc::from(vec!["a".to_owned()]));
        assert!(id.may_use("a"));
        assert!(!id.may_use("b"));
    }
}
