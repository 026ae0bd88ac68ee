//! Request checks the edge makes before any upstream call: client mistakes get
//! a 400 naming the field instead of a provider's error (or money spent).

use super::EdgeConfig;
use crate::error::Error;
use crate::types::{ChatRequest, EmbeddingRequest, Role};

fn field(param: &str, message: String) -> Error {
    Error::bad_request(message).with_param(param)
}

fn range(param: &str, value: Option<f64>, lo: f64, hi: f64) -> Result<(), Error> {
    match value {
        Some(v) if !(lo..=hi).contains(&v) || !v.is_finite() => Err(field(
            param,
            format!("`{param}` must be between {lo} and {hi}, got {v}"),
        )),
        _ => Ok(()),
    }
}

fn credentials(fields: &[&str], config: &EdgeConfig) -> Result<(), Error> {
    match fields.first() {
        Some(f) if !config.allow_client_credentials => Err(field(
            f,
            format!(
                "`{f}` is not allowed in the request body: provider credentials and addresses \
                 come from the gateway's configuration"
            ),
        )),
        _ => Ok(()),
    }
}

/// Checks a chat request.
pub(super) fn chat(req: &ChatRequest, config: &EdgeConfig) -> Result<(), Error> {
    if req.model.trim().is_empty() {
        return Err(field("model", "`model` must not be empty".to_owned()));
    }
    if req.messages.is_empty() {
        return Err(field(
            "messages",
            "`messages` must contain at least one message".to_owned(),
        ));
    }
    for (i, m) in req.messages.iter().enumerate() {
        if m.role == Role::Tool && m.tool_call_id.is_none() {
            return Err(field(
                "messages",
                format!("`messages[{i}]` has role `tool` but no `tool_call_id`"),
            ));
        }
        if let Role::Other(r) = &m.role {
            let shown: String = r.chars().take(40).collect();
            return Err(field(
                "messages",
                format!(
                    "`messages[{i}].role` is `{shown}`; expected system, developer, user, assistant, tool or function"
                ),
            ));
        }
    }
    range("temperature", req.temperature, 0.0, 2.0)?;
    range("top_p", req.top_p, 0.0, 1.0)?;
    range("presence_penalty", req.presence_penalty, -2.0, 2.0)?;
    range("frequency_penalty", req.frequency_penalty, -2.0, 2.0)?;
    if let Some(n) = req.n
        && !(1..=128).contains(&n)
    {
        return Err(field(
            "n",
            format!("`n` must be between 1 and 128, got {n}"),
        ));
    }
    for (name, v) in [
        ("max_tokens", req.max_tokens),
        ("max_completion_tokens", req.max_completion_tokens),
    ] {
        if v == Some(0) {
            return Err(field(name, format!("`{name}` must be at least 1")));
        }
    }
    if req.stream_options.is_some() && !req.is_stream() {
        return Err(field(
            "stream_options",
            "`stream_options` is only allowed when `stream` is true".to_owned(),
        ));
    }
    if let Some(t) = req.timeout
        && (!t.is_finite() || t <= 0.0)
    {
        return Err(field(
            "timeout",
            "`timeout` must be a positive number of seconds".to_owned(),
        ));
    }
    credentials(&req.client_credential_fields(), config)
}

/// Checks an embeddings request.
pub(super) fn embeddings(req: &EmbeddingRequest, config: &EdgeConfig) -> Result<(), Error> {
    if req.model.trim().is_empty() {
        return Err(field("model", "`model` must not be empty".to_owned()));
    }
    if req.input.is_empty() {
        return Err(field("input", "`input` must not be empty".to_owned()));
    }
    if let Some(f) = &req.encoding_format
        && f != "float"
        && f != "base64"
    {
        let shown: String = f.chars().take(40).collect();
        return Err(field(
            "encoding_format",
            format!("`encoding_format` must be `float` or `base64`, got `{shown}`"),
        ));
    }
    credentials(&req.client_credential_fields(), config)
}
