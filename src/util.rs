//! Small helpers shared across modules.

use std::borrow::Cow;

/// A hash map for the hot path: foldhash, seeded per map, instead of std's
/// SipHash-1-3 (which cost ~70 instructions per lookup on the limit and
/// budget maps, several lookups per request). Keys there include
/// client-supplied text (end-user ids); foldhash's `quality` variant with a
/// random seed keeps collisions unpredictable.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::quality::RandomState>;

/// Writes `bytes` as lowercase hex into `out`, which must be twice as long.
pub(crate) fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    debug_assert_eq!(out.len(), bytes.len() * 2);
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
}

/// `bytes` as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    hex_into(&mut out, bytes);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Prefixes of credential formats that must never appear in text we show:
/// OpenAI / Anthropic / Groq / xAI / Hugging Face keys, Google API keys, AWS access keys.
const KEY_PREFIXES: &[&str] = &[
    "sk-", "sk_", "gsk_", "xai-", "hf_", "AIza", "AKIA", "ASIA", "Bearer ", "bearer ",
];

/// Removes credentials from text that will be shown to someone: every
/// occurrence of a known secret, and any token that looks like an API key
/// (`sk-…`, `AIza…`, `AKIA…`, `Bearer …`) — including partially masked ones
/// such as OpenAI's `sk-proj-abc***xyz`.
///
/// ```
/// use tollgate::util::redact;
///
/// let s = redact("Incorrect API key provided: sk-proj-ab12****wxyz.", &[]);
/// assert_eq!(s, "Incorrect API key provided: <redacted>.");
/// assert_eq!(redact("key my-secret-1 failed", &["my-secret-1"]), "key <redacted> failed");
/// assert_eq!(redact("nothing to hide", &[]), "nothing to hide");
/// ```
pub fn redact<'a>(text: &'a str, secrets: &[&str]) -> Cow<'a, str> {
    let mut out: Cow<'a, str> = Cow::Borrowed(text);
    for secret in secrets {
        if secret.len() >= 4 && out.contains(secret) {
            out = Cow::Owned(out.replace(secret, "<redacted>"));
        }
    }
    if !KEY_PREFIXES.iter().any(|p| out.contains(p)) {
        return out;
    }
    let src = out.as_ref();
    let mut result = String::with_capacity(src.len());
    let mut i = 0;
    let bytes = src.as_bytes();
    while i < src.len() {
        let at_boundary = i == 0 || !is_key_char(bytes[i - 1]);
        let hit = if at_boundary {
            KEY_PREFIXES.iter().find(|p| src[i..].starts_with(**p))
        } else {
            None
        };
        if let Some(prefix) = hit {
            let start = i + prefix.len();
            let mut end = start;
            while end < src.len() && is_key_char(bytes[end]) {
                end += 1;
            }
            // Trailing sentence punctuation is not part of the key.
            while end > start && bytes[end - 1] == b'.' {
                end -= 1;
            }
            if end - start >= 6 {
                result.push_str("<redacted>");
                i = end;
                continue;
            }
        }
        let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
        result.push(ch);
        i += ch.len_utf8().max(1);
    }
    Cow::Owned(result)
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*' | b'.' | b'/' | b'+' | b'=')
}

/// Standard base64 with padding.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard or URL-safe base64, padded or not.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let trimmed = text.trim_end_matches('=');
    STANDARD
        .decode(text)
        .ok()
        .or_else(|| URL_SAFE_NO_PAD.decode(trimmed).ok())
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Edit distance between two short strings (for "did you mean" suggestions).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 4);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A request extension that counts its clones: how often a layer copied
/// the request it carries.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Copies(pub(crate) std::sync::Arc<std::sync::atomic::AtomicUsize>);

#[cfg(test)]
impl Copies {
    pub(crate) fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
impl Clone for Copies {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Copies(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_key_shapes() {
        assert_eq!(
            redact("use sk-ant-api03-AAAAAAAA now", &[]),
            "use <redacted> now"
        );
        assert_eq!(redact("AIzaSyD-1234567890abcdef", &[]), "<redacted>");
        assert_eq!(
            redact("Authorization: Bearer abcdefgh12", &[]),
            "Authorization: <redacted>"
        );
        // Not a key: too short after the prefix, or inside a word.
        assert_eq!(redact("task-sk-1", &[]), "task-sk-1");
        assert_eq!(redact("desk-top", &[]), "desk-top");
        assert_eq!(redact("ünïcödé sk-x", &[]), "ünïcödé sk-x");
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            closest("modle_list", ["model_list", "router_settings"]),
            Some("model_list")
        );
        assert_eq!(closest("zzz", ["model_list"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn base64_both_alphabets() {
        let data = [0xfbu8, 0xff, 0x00, 0x10];
        let std = base64_encode(&data);
        assert_eq!(base64_decode(&std).unwrap(), data);
        assert_eq!(base64_decode("-_8AEA").unwrap(), data);
    }
}
