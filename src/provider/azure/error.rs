//! Azure OpenAI errors: OpenAI's envelope with a string `code`, content-filter
//! 400s, and retry hints in `retry-after-ms`, `retry-after` or the message.

use crate::error::{Error, LimitSource};
use http::{HeaderMap, StatusCode};
use std::time::Duration;

/// Maps an Azure OpenAI error response to an [`Error`].
///
/// Everything OpenAI's mapping does (see
/// [`crate::provider::openai::error_from_response`]: `code: "content_filter"`
/// → `ContentPolicy`, string codes kept, credentials scrubbed), plus: a 429
/// without a `Retry-After` header takes its hint from the message ("Please
/// retry after 86400 seconds").
pub fn error_from_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Error {
    let err = crate::provider::openai::error_from_response(status, headers, body, secrets);
    if err.retry_after().is_none()
        && err.kind() == crate::ErrorKind::RateLimited(LimitSource::Upstream)
        && let Some(after) = retry_after_in_message(err.message())
    {
        return err.with_retry_after(after);
    }
    err
}

/// The `N` of "retry after N second(s)" in an Azure message.
fn retry_after_in_message(message: &str) -> Option<Duration> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find("retry after ")? + "retry after ".len();
    let rest = lower.get(at..)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let secs: u64 = digits.parse().ok()?;
    rest.get(digits.len()..)?
        .trim_start()
        .starts_with("second")
        .then(|| Duration::from_secs(secs.min(86_400)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_hints() {
        assert_eq!(
            retry_after_in_message("… Please retry after 86400 seconds. Please go here"),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            retry_after_in_message("Please retry after 1 second."),
            Some(Duration::from_secs(1))
        );
        assert_eq!(retry_after_in_message("retry after a while"), None);
        assert_eq!(retry_after_in_message("retry after 5 minutes"), None);
        assert_eq!(retry_after_in_message("Rate limit"), None);
    }
}
