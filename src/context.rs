//! Request-scoped context carried in [`crate::ChatRequest::extensions`].
//!
//! The edge and the layers put these in; inner layers and leaves read them.
//! None of them is ever sent upstream.

use std::sync::Arc;
use tokio::time::Instant;

/// The gateway's id for one request (also returned as `x-request-id` and
/// `x-litellm-call-id`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    /// A fresh, time-ordered id (`chatcmpl`-style prefix-free UUIDv7).
    pub fn generate() -> Self {
        // Hex-encoded on the stack: no formatter, one allocation.
        let mut buf = uuid::Uuid::encode_buffer();
        RequestId(Arc::from(
            &*uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf),
        ))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The instant by which the whole request must be answered. Layers and leaves
/// never wait past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// Time left, zero if passed.
    pub fn remaining(&self) -> std::time::Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// When the request entered the gateway.
#[derive(Clone, Copy, Debug)]
pub struct Received(pub Instant);

/// Tags attached to the request (from `metadata.tags`, `tags` or the `x-litellm-tags` header).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tags(pub Arc<[String]>);

/// The upstream model a wildcard deployment serves for this request (the
/// deployment's LiteLLM model string with the wildcard filled in, e.g.
/// `openai/gpt-4o` for a request for `openai/gpt-4o` routed to `openai/*`).
/// Leaves use it in place of their configured model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamModel(pub Arc<str>);

impl UpstreamModel {
    /// The model after the provider prefix.
    pub fn model(&self) -> &str {
        crate::provider::ProviderKind::parse(&self.0).1
    }
}

/// Response headers a layer of your own adds, written to the client as they
/// are. Lives in `ResponseMeta::extensions`. (Rate limits travel as
/// [`RateLimitState`](crate::limits::RateLimitState), rendered at the edge.)
#[derive(Clone, Debug, Default)]
pub struct GatewayHeaders(pub http::HeaderMap);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_lowercase_hyphenated_time_ordered_uuid_v7s() {
        let ids: Vec<RequestId> = (0..64).map(|_| RequestId::generate()).collect();
        for id in &ids {
            let s = id.as_str();
            assert_eq!(s.len(), 36, "{s}");
            assert_eq!(s, s.to_ascii_lowercase());
            let u = uuid::Uuid::parse_str(s).unwrap();
            assert_eq!(u.get_version_num(), 7, "{s}");
            assert_eq!(u.hyphenated().to_string(), s);
        }
        // Time-ordered (v7's counter orders ids within one millisecond).
        assert!(ids.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
    }
}
