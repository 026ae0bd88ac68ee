//! [`Error`]: the one error type of the whole stack.
//!
//! Every failure — a client mistake, a gateway limit, an upstream refusal, a
//! dropped connection — is an [`Error`] with an [`ErrorKind`]. Each kind maps
//! to exactly one HTTP status and an OpenAI error body at the edge, so an
//! OpenAI SDK raises the same exception class it would against OpenAI. The
//! message is written for humans and is not API; match on [`Error::kind`].
//!
//! Messages never carry secrets: constructors that take upstream text scrub
//! anything that looks like a credential (see [`crate::util::redact`]).

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Who refused a request for being over a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitSource {
    /// The upstream provider (a 429 from it). Retryable, possibly elsewhere.
    Upstream,
    /// tollgate's own rate limits. Not retried: retrying would defeat the limit.
    Gateway,
}

/// Which deadline passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    /// Establishing the connection.
    Connect,
    /// Waiting for the first byte / first token.
    FirstByte,
    /// Silence between two stream chunks.
    Idle,
    /// The whole request.
    Total,
}

impl TimeoutKind {
    fn describe(self) -> &'static str {
        match self {
            TimeoutKind::Connect => "connecting to the upstream timed out",
            TimeoutKind::FirstByte => "the upstream did not start answering in time",
            TimeoutKind::Idle => "the upstream stream went silent for too long",
            TimeoutKind::Total => "the request took longer than its timeout",
        }
    }
}

/// The class of an [`Error`], mirroring OpenAI's and LiteLLM's exception classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 400: the request is malformed or invalid.
    BadRequest,
    /// 400: the request uses a parameter the provider does not support (and `drop_params` is off).
    UnsupportedParams,
    /// 400: the prompt does not fit the model's context window.
    ContextWindowExceeded,
    /// 400: refused by a content filter.
    ContentPolicy,
    /// 401: missing or invalid credentials.
    Authentication,
    /// 403: the credentials may not do this.
    PermissionDenied,
    /// 404: unknown model, route or object.
    NotFound,
    /// 405: wrong HTTP method for the route.
    MethodNotAllowed,
    /// 408: a deadline passed.
    Timeout(TimeoutKind),
    /// 413: the request body is too large.
    PayloadTooLarge,
    /// 415: the request body is not JSON.
    UnsupportedMediaType,
    /// 422: the upstream could not process the request.
    UnprocessableEntity,
    /// 429: over a rate limit.
    RateLimited(LimitSource),
    /// 429: over a budget.
    BudgetExceeded,
    /// 500: a bug or an unexpected state in the gateway.
    Internal,
    /// An upstream error status with no more specific class (409, 500, 504, …).
    Upstream(u16),
    /// 502: the upstream answered with something that is not its protocol.
    BadGateway,
    /// 502: the upstream could not be reached or the connection broke.
    Connection,
    /// 503: the upstream (or every deployment) is unavailable or overloaded.
    ServiceUnavailable,
}

impl ErrorKind {
    /// The HTTP status this kind is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest
            | ErrorKind::UnsupportedParams
            | ErrorKind::ContextWindowExceeded
            | ErrorKind::ContentPolicy => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::UnprocessableEntity => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::RateLimited(_) | ErrorKind::BudgetExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Upstream(s) => match StatusCode::from_u16(s) {
                Ok(code) if code.is_client_error() || code.is_server_error() => code,
                _ => StatusCode::BAD_GATEWAY,
            },
            ErrorKind::BadGateway | ErrorKind::Connection => StatusCode::BAD_GATEWAY,
            ErrorKind::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The OpenAI error `type` for this kind.
    pub fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::Timeout(_) => "timeout",
            ErrorKind::RateLimited(_) => "rate_limit_error",
            ErrorKind::BudgetExceeded => "budget_exceeded",
            ErrorKind::Internal
            | ErrorKind::BadGateway
            | ErrorKind::Connection
            | ErrorKind::ServiceUnavailable => "api_error",
            ErrorKind::Upstream(s) if s >= 500 => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// LiteLLM's exception class name (used by `retry_policy`, `allowed_fails_policy`
    /// and `mock_response: "litellm.<Class>"`).
    pub fn litellm_class(self) -> &'static str {
        match self {
            ErrorKind::BadRequest
            | ErrorKind::MethodNotAllowed
            | ErrorKind::PayloadTooLarge
            | ErrorKind::UnsupportedMediaType => "BadRequestError",
            ErrorKind::UnsupportedParams => "UnsupportedParamsError",
            ErrorKind::ContextWindowExceeded => "ContextWindowExceededError",
            ErrorKind::ContentPolicy => "ContentPolicyViolationError",
            ErrorKind::Authentication => "AuthenticationError",
            ErrorKind::PermissionDenied => "PermissionDeniedError",
            ErrorKind::NotFound => "NotFoundError",
            ErrorKind::Timeout(_) => "Timeout",
            ErrorKind::UnprocessableEntity => "UnprocessableEntityError",
            ErrorKind::RateLimited(_) => "RateLimitError",
            ErrorKind::BudgetExceeded => "BudgetExceededError",
            ErrorKind::Internal | ErrorKind::Upstream(_) => "InternalServerError",
            ErrorKind::BadGateway => "BadGatewayError",
            ErrorKind::Connection => "APIConnectionError",
            ErrorKind::ServiceUnavailable => "ServiceUnavailableError",
        }
    }

    /// The kind LiteLLM's class name stands for (the inverse of [`ErrorKind::litellm_class`]).
    pub fn from_litellm_class(name: &str) -> Option<ErrorKind> {
        let name = name.strip_prefix("litellm.").unwrap_or(name);
        Some(match name {
            "BadRequestError" => ErrorKind::BadRequest,
            "UnsupportedParamsError" => ErrorKind::UnsupportedParams,
            "ContextWindowExceededError" => ErrorKind::ContextWindowExceeded,
            "ContentPolicyViolationError" => ErrorKind::ContentPolicy,
            "AuthenticationError" => ErrorKind::Authentication,
            "PermissionDeniedError" => ErrorKind::PermissionDenied,
            "NotFoundError" => ErrorKind::NotFound,
            "Timeout" | "APITimeoutError" => ErrorKind::Timeout(TimeoutKind::Total),
            "UnprocessableEntityError" => ErrorKind::UnprocessableEntity,
            "RateLimitError" => ErrorKind::RateLimited(LimitSource::Upstream),
            "BudgetExceededError" => ErrorKind::BudgetExceeded,
            "InternalServerError" | "APIError" => ErrorKind::Upstream(500),
            "BadGatewayError" => ErrorKind::BadGateway,
            "APIConnectionError" => ErrorKind::Connection,
            "ServiceUnavailableError" => ErrorKind::ServiceUnavailable,
            _ => return None,
        })
    }

    /// Whether a request failing this way may succeed if sent again
    /// (408, 409, 429 from upstream, 5xx, connection failures).
    pub fn is_retryable(self) -> bool {
        match self {
            ErrorKind::RateLimited(LimitSource::Upstream)
            | ErrorKind::Timeout(_)
            | ErrorKind::BadGateway
            | ErrorKind::Connection
            | ErrorKind::ServiceUnavailable => true,
            ErrorKind::Upstream(s) => s == 408 || s == 409 || s == 429 || s >= 500,
            _ => false,
        }
    }

    fn default_code(self) -> Option<&'static str> {
        Some(match self {
            ErrorKind::ContextWindowExceeded => "context_length_exceeded",
            ErrorKind::ContentPolicy => "content_policy_violation",
            ErrorKind::UnsupportedParams => "unsupported_parameter",
            ErrorKind::RateLimited(_) => "rate_limit_exceeded",
            ErrorKind::BudgetExceeded => "budget_exceeded",
            _ => return None,
        })
    }
}

/// The error of every tollgate service and layer.
///
/// ```
/// use tollgate::{Error, ErrorKind};
///
/// let err = Error::model_not_found("gpt-5-turbo-ultra");
/// assert_eq!(err.kind(), ErrorKind::NotFound);
/// assert_eq!(err.status().as_u16(), 404);
/// let body: serde_json::Value = serde_json::from_slice(&err.to_json()).unwrap();
/// assert_eq!(body["error"]["code"], "model_not_found");
/// assert_eq!(body["error"]["type"], "not_found_error");
/// assert_eq!(body["error"]["param"], "model");
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: Cow<'static, str>,
    param: Option<String>,
    code: Option<Cow<'static, str>>,
    provider: Option<Arc<str>>,
    deployment: Option<Arc<str>>,
    retry_after: Option<Duration>,
    retryable: Option<bool>,
    headers: Option<HeaderMap>,
    alternatives: bool,
    attempts: u32,
    fallbacks: u32,
    source: Option<BoxError>,
}

impl Error {
    /// An error of `kind` with a message. The message must not contain secrets;
    /// use [`Error::from_upstream`] for text that came from a provider.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                param: None,
                code: None,
                provider: None,
                deployment: None,
                retry_after: None,
                retryable: None,
                headers: None,
                alternatives: false,
                attempts: 0,
                fallbacks: 0,
                source: None,
            }),
        }
    }

    /// An error built from an upstream's message, with credentials scrubbed.
    pub fn from_upstream(kind: ErrorKind, message: &str, secrets: &[&str]) -> Self {
        Error::new(kind, crate::util::redact(message, secrets).into_owned())
    }

    /// 400 `invalid_request_error`.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Error::new(ErrorKind::BadRequest, message)
    }

    /// 404 `model_not_found` for a model name the gateway does not serve.
    pub fn model_not_found(model: &str) -> Self {
        let shown: String = model.chars().take(200).collect();
        Error::new(
            ErrorKind::NotFound,
            format!("The model `{shown}` does not exist or you do not have access to it."),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    /// 401 with the constant body used for every credential failure.
    pub fn unauthorized() -> Self {
        Error::new(
            ErrorKind::Authentication,
            "Authentication failed: missing, invalid, expired or blocked API key.",
        )
        .with_code("invalid_api_key")
    }

    /// 500, for states that should not happen.
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    /// 408 for the given deadline.
    pub fn timeout(kind: TimeoutKind) -> Self {
        Error::new(ErrorKind::Timeout(kind), kind.describe()).with_code("timeout")
    }

    /// The class of the error.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The human-readable message (not API: do not match on it).
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The HTTP status the edge answers with.
    pub fn status(&self) -> StatusCode {
        self.inner.kind.status()
    }

    /// The request field at fault, if known.
    pub fn param(&self) -> Option<&str> {
        self.inner.param.as_deref()
    }

    /// The specific error code (`model_not_found`, `context_length_exceeded`, …).
    pub fn code(&self) -> Option<&str> {
        self.inner
            .code
            .as_deref()
            .or_else(|| self.inner.kind.default_code())
    }

    /// The provider that produced the error, if it came from upstream.
    pub fn provider(&self) -> Option<&str> {
        self.inner.provider.as_deref()
    }

    /// The deployment that produced the error.
    pub fn deployment(&self) -> Option<&str> {
        self.inner.deployment.as_deref()
    }

    /// How long to wait before retrying, when known (`Retry-After`, reset headers, `retryDelay`).
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// Headers to send back with the error (rate-limit headers).
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.inner.headers.as_ref()
    }

    /// Whether the router knows another deployment of the same group that could
    /// serve a retry right away (so a retry need not wait for `retry_after`).
    pub fn alternatives_available(&self) -> bool {
        self.inner.alternatives
    }

    /// Marks whether other deployments could serve a retry (set by the router).
    pub fn with_alternatives(mut self, available: bool) -> Self {
        self.inner.alternatives = available;
        self
    }

    /// Upstream attempts made before giving up (set by the retry layer; 0 if unknown).
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// Records the attempts made.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.inner.attempts = attempts;
        self
    }

    /// Fallback model groups tried before giving up (set by the fallback layer).
    pub fn fallbacks(&self) -> u32 {
        self.inner.fallbacks
    }

    /// Records the fallbacks tried.
    pub fn with_fallbacks(mut self, fallbacks: u32) -> Self {
        self.inner.fallbacks = fallbacks;
        self
    }

    /// Whether sending the request again may succeed: the upstream's own
    /// verdict when it gave one ([`Error::with_retryable`], e.g. Anthropic's
    /// `x-should-retry`), else [`ErrorKind::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        self.inner
            .retryable
            .unwrap_or_else(|| self.inner.kind.is_retryable())
    }

    /// Whether this is a timeout of any kind.
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Timeout(_))
    }

    /// Whether this is a rate-limit refusal (from upstream or the gateway).
    pub fn is_rate_limited(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::RateLimited(_))
    }

    /// Sets the request field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.inner.param = Some(param.into());
        self
    }

    /// Sets the error code.
    pub fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.inner.code = Some(code.into());
        self
    }

    /// Sets the provider.
    pub fn with_provider(mut self, provider: impl Into<Arc<str>>) -> Self {
        self.inner.provider = Some(provider.into());
        self
    }

    /// Sets the deployment.
    pub fn with_deployment(mut self, deployment: impl Into<Arc<str>>) -> Self {
        self.inner.deployment = Some(deployment.into());
        self
    }

    /// Sets the retry delay.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.inner.retry_after = Some(after);
        self
    }

    /// Overrides whether the request may be retried (an upstream's explicit
    /// verdict, such as Anthropic's `x-should-retry` header).
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.inner.retryable = Some(retryable);
        self
    }

    /// Sets headers to send back.
    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.inner.headers = Some(headers);
        self
    }

    /// Sets the underlying cause (kept for `source()`, never shown to clients).
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// Replaces the message.
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.inner.message = message.into();
        self
    }

    /// The OpenAI error object: `{"message", "type", "param", "code"}`.
    pub fn to_openai_object(&self) -> serde_json::Value {
        serde_json::to_value(self.wire()).unwrap_or(serde_json::Value::Null)
    }

    fn wire(&self) -> WireError<'_> {
        WireError {
            message: self.message(),
            kind: self.inner.kind.openai_type(),
            param: self.param(),
            code: match self.code() {
                Some(c) => Cow::Borrowed(c),
                None => Cow::Owned(self.status().as_str().to_owned()),
            },
        }
    }

    /// The OpenAI error body `{"error": {...}}` as bytes.
    pub fn to_json(&self) -> Bytes {
        #[derive(serde::Serialize)]
        struct Envelope<'a> {
            error: WireError<'a>,
        }
        let body = Envelope { error: self.wire() };
        Bytes::from(serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"error":{"message":"internal error","type":"api_error","param":null,"code":"500"}}"#
                .to_vec()
        }))
    }
}

/// The OpenAI error object, in OpenAI's key order.
#[derive(serde::Serialize)]
struct WireError<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    code: Cow<'a, str>,
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(p) = &self.inner.param {
            d.field("param", p);
        }
        if let Some(c) = &self.inner.code {
            d.field("code", c);
        }
        if let Some(p) = &self.inner.provider {
            d.field("provider", p);
        }
        if let Some(dep) = &self.inner.deployment {
            d.field("deployment", dep);
        }
        if let Some(r) = &self.inner.retry_after {
            d.field("retry_after", r);
        }
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|s| &**s as &(dyn std::error::Error + 'static))
    }
}

impl Clone for Error {
    /// Clones everything but the `source` chain (sources are not `Clone`).
    fn clone(&self) -> Self {
        Error {
            inner: Box::new(Inner {
                kind: self.inner.kind,
                message: self.inner.message.clone(),
                param: self.inner.param.clone(),
                code: self.inner.code.clone(),
                provider: self.inner.provider.clone(),
                deployment: self.inner.deployment.clone(),
                retry_after: self.inner.retry_after,
                retryable: self.inner.retryable,
                headers: self.inner.headers.clone(),
                alternatives: self.inner.alternatives,
                attempts: self.inner.attempts,
                fallbacks: self.inner.fallbacks,
                source: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_status_and_a_type() {
        let kinds = [
            (ErrorKind::BadRequest, 400, "invalid_request_error"),
            (ErrorKind::UnsupportedParams, 400, "invalid_request_error"),
            (
                ErrorKind::ContextWindowExceeded,
                400,
                "invalid_request_error",
            ),
            (ErrorKind::ContentPolicy, 400, "invalid_request_error"),
            (ErrorKind::Authentication, 401, "authentication_error"),
            (ErrorKind::PermissionDenied, 403, "permission_error"),
            (ErrorKind::NotFound, 404, "not_found_error"),
            (ErrorKind::MethodNotAllowed, 405, "invalid_request_error"),
            (ErrorKind::Timeout(TimeoutKind::Total), 408, "timeout"),
            (ErrorKind::PayloadTooLarge, 413, "invalid_request_error"),
            (
                ErrorKind::UnsupportedMediaType,
                415,
                "invalid_request_error",
            ),
            (ErrorKind::UnprocessableEntity, 422, "invalid_request_error"),
            (
                ErrorKind::RateLimited(LimitSource::Upstream),
                429,
                "rate_limit_error",
            ),
            (ErrorKind::BudgetExceeded, 429, "budget_exceeded"),
            (ErrorKind::Internal, 500, "api_error"),
            (ErrorKind::Upstream(409), 409, "invalid_request_error"),
            (ErrorKind::Upstream(504), 504, "api_error"),
            (ErrorKind::Upstream(200), 502, "invalid_request_error"),
            (ErrorKind::BadGateway, 502, "api_error"),
            (ErrorKind::Connection, 502, "api_error"),
            (ErrorKind::ServiceUnavailable, 503, "api_error"),
        ];
        for (kind, status, ty) in kinds {
            assert_eq!(kind.status().as_u16(), status, "{kind:?}");
            assert_eq!(kind.openai_type(), ty, "{kind:?}");
        }
    }

    #[test]
    fn retryable_kinds() {
        assert!(ErrorKind::RateLimited(LimitSource::Upstream).is_retryable());
        assert!(!ErrorKind::RateLimited(LimitSource::Gateway).is_retryable());
        assert!(ErrorKind::Upstream(500).is_retryable());
        assert!(ErrorKind::Upstream(409).is_retryable());
        assert!(!ErrorKind::Upstream(418).is_retryable());
        assert!(!ErrorKind::ContextWindowExceeded.is_retryable());
        assert!(!ErrorKind::Authentication.is_retryable());
        assert!(ErrorKind::Timeout(TimeoutKind::FirstByte).is_retryable());
        let e = Error::new(ErrorKind::Upstream(500), "x");
        assert!(e.is_retryable());
        assert!(!e.clone().with_retryable(false).is_retryable());
        assert!(
            Error::new(ErrorKind::Upstream(418), "x")
                .with_retryable(true)
                .is_retryable()
        );
    }

    #[test]
    fn body_shape_and_fallback_code() {
        let e = Error::new(ErrorKind::ServiceUnavailable, "down");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error":{"message":"down","type":"api_error","param":null,"code":"503"}})
        );
    }

    #[test]
    fn upstream_text_is_scrubbed() {
        let e = Error::from_upstream(
            ErrorKind::Authentication,
            "Incorrect API key provided: sk-proj-abcdefghijklmnop1234. Also secret-xyz.",
            &["secret-xyz"],
        );
        assert!(!e.message().contains("abcdefghijklmnop"), "{}", e.message());
        assert!(!e.message().contains("secret-xyz"), "{}", e.message());
    }

    #[test]
    fn litellm_classes_round_trip() {
        for kind in [
            ErrorKind::BadRequest,
            ErrorKind::ContextWindowExceeded,
            ErrorKind::ContentPolicy,
            ErrorKind::Authentication,
            ErrorKind::NotFound,
            ErrorKind::RateLimited(LimitSource::Upstream),
            ErrorKind::ServiceUnavailable,
            ErrorKind::Connection,
        ] {
            assert_eq!(
                ErrorKind::from_litellm_class(kind.litellm_class()),
                Some(kind)
            );
        }
        assert_eq!(
            ErrorKind::from_litellm_class("litellm.RateLimitError"),
            Some(ErrorKind::RateLimited(LimitSource::Upstream))
        );
    }
}
