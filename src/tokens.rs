//! Token estimates used when a provider does not report usage.
//!
//! A fast heuristic (about four characters of English per token, plus a
//! small per-message overhead as in OpenAI's chat format). It is the fallback
//! for the mock provider and for streams cut before their usage arrives.

use crate::types::{ChatRequestBody, Content};

/// Estimated tokens of a text: one per four characters, rounded up.
///
/// ```
/// assert_eq!(tollgate::tokens::estimate_text("Hello there"), 3);
/// assert_eq!(tollgate::tokens::estimate_text(""), 0);
/// ```
pub fn estimate_text(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Estimated prompt tokens of a chat request: text of every message and tool
/// definition, plus 3 tokens per message and 3 for the reply priming.
pub fn estimate_prompt(body: &ChatRequestBody) -> u64 {
    let mut total = 3u64;
    for m in &body.messages {
        total += 3;
        match &m.content {
            Some(Content::Text(t)) => total += estimate_text(t),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    if let Some(t) = &p.text {
                        total += estimate_text(t);
                    } else if p.image_url.is_some() {
                        // OpenAI's low-detail image cost.
                        total += 85;
                    }
                }
            }
            None => {}
        }
        for call in m.tool_calls.iter().flatten() {
            total += estimate_text(&call.function.name) + estimate_text(&call.function.arguments);
        }
    }
    for tool in body.tools.iter().flatten() {
        if let Some(f) = &tool.function {
            total += estimate_text(&f.name)
                + f.description.as_deref().map_or(0, estimate_text)
                + f.parameters
                    .as_ref()
                    .map_or(0, |p| estimate_text(&p.to_string()));
        }
    }
    total
}
