//! [`CacheKey`]: the SHA-256 of everything that changes an answer.
//!
//! The key of a request is a hash over, in order and each length-delimited:
//! the format version, the call type, the tenant scope, the request's
//! namespace, and the request body as it would go upstream minus the fields
//! that do not change the answer. The body is serialised straight into the
//! hasher: no JSON text is built.

use crate::auth::{Identity, Role};
use crate::types::{ChatRequestBody, EmbeddingRequestBody};
use serde::Serializer as _;
use serde::ser::SerializeMap;
use std::fmt;
use std::io;

/// Chat fields that never change the answer: how it is delivered (`stream`,
/// `stream_options`), who asked (`user`, `safety_identifier`), and upstream
/// bookkeeping (`prompt_cache_key`, `store`).
pub(crate) const CHAT_IGNORED: &[&str] = &[
    "stream",
    "stream_options",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "store",
];

/// Embedding fields that never change the answer.
pub(crate) const EMBEDDING_IGNORED: &[&str] = &["user"];

/// Domain separator: bump the version when the key derivation changes, so
/// old entries are never read under new rules.
const DOMAIN: &[u8] = b"tollgate.cache.v1";

/// A cache key: the SHA-256 of a request's answer-relevant content, shown as
/// 64 lowercase hex digits (the `x-litellm-cache-key` header).
///
/// ```
/// use tollgate::cache::CacheKey;
///
/// let hex = "586bf3f3c1bf5aecb55bd9996494d3bbc69eb58397163add6d49537762a7548d";
/// let key: CacheKey = hex.parse().unwrap();
/// assert_eq!(key.to_string(), hex);
/// assert!("not-a-key".parse::<CacheKey>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        crate::util::hex(&self.0)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.to_hex())
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidCacheKey;

impl fmt::Display for InvalidCacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a cache key is 64 hexadecimal digits")
    }
}

impl std::error::Error for InvalidCacheKey {}

impl std::str::FromStr for CacheKey {
    type Err = InvalidCacheKey;
    fn from_str(s: &str) -> Result<Self, InvalidCacheKey> {
        let s = s.trim();
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(InvalidCacheKey);
        }
        let nibble = |c: u8| -> Result<u8, InvalidCacheKey> {
            match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(InvalidCacheKey),
            }
        };
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(CacheKey(out))
    }
}

/// Whose cache a request reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope<'a> {
    /// One cache for everyone (`CacheScope::Shared`).
    Shared,
    /// Callers without a tenant: anonymous and the master key.
    Gateway,
    /// Every key of a team.
    Team(&'a str),
    /// One virtual key (by its hash).
    Key(&'a str),
}

impl<'a> Scope<'a> {
    /// The tenant scope of `identity`; `None` when it cannot be told apart
    /// from others (a virtual key without a hash or a team): such requests
    /// are not cached.
    pub(crate) fn of(identity: Option<&'a Identity>) -> Option<Scope<'a>> {
        let Some(id) = identity else {
            return Some(Scope::Gateway);
        };
        match id.role {
            Role::Anonymous | Role::Admin => Some(Scope::Gateway),
            Role::Key => {
                if let Some(team) = id.team_id.as_deref() {
                    Some(Scope::Team(team))
                } else {
                    id.key_hash.as_deref().map(Scope::Key)
                }
            }
        }
    }

    fn write(self, h: &mut Hasher) {
        match self {
            Scope::Shared => h.field(b"shared"),
            Scope::Gateway => h.field(b"gateway"),
            Scope::Team(t) => {
                h.field(b"team");
                h.field(t.as_bytes());
            }
            Scope::Key(k) => {
                h.field(b"key");
                h.field(k.as_bytes());
            }
        }
    }
}

struct Hasher(ring::digest::Context);

impl Hasher {
    fn new(call_type: &str, scope: Scope<'_>, namespace: Option<&str>) -> Hasher {
        let mut h = Hasher(ring::digest::Context::new(&ring::digest::SHA256));
        h.field(DOMAIN);
        h.field(call_type.as_bytes());
        scope.write(&mut h);
        match namespace {
            Some(ns) => {
                h.field(b"ns");
                h.field(ns.as_bytes());
            }
            None => h.field(b""),
        }
        h
    }

    /// A length-delimited field, so that no two different inputs hash alike.
    fn field(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn finish(self) -> CacheKey {
        let digest = self.0.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        CacheKey(out)
    }
}

impl io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The key of a chat request.
pub(crate) fn chat(
    body: &ChatRequestBody,
    scope: Scope<'_>,
    namespace: Option<&str>,
) -> serde_json::Result<CacheKey> {
    let mut h = Hasher::new("chat", scope, namespace);
    {
        let mut ser = serde_json::Serializer::new(&mut h);
        let mut map = ser.serialize_map(None)?;
        body.serialize_entries(&mut map, CHAT_IGNORED)?;
        // Gateway-only fields that still change what comes back.
        if let Some(v) = &body.mock_response {
            map.serialize_entry("mock_response", v)?;
        }
        if let Some(v) = &body.drop_params {
            map.serialize_entry("drop_params", v)?;
        }
        if let Some(v) = &body.additional_drop_params {
            map.serialize_entry("additional_drop_params", v)?;
        }
        map.end()?;
    }
    Ok(h.finish())
}

/// The key of an embeddings request.
pub(crate) fn embedding(
    body: &EmbeddingRequestBody,
    scope: Scope<'_>,
    namespace: Option<&str>,
) -> serde_json::Result<CacheKey> {
    let mut h = Hasher::new("embedding", scope, namespace);
    {
        let mut ser = serde_json::Serializer::new(&mut h);
        let mut map = ser.serialize_map(None)?;
        body.serialize_entries(&mut map, EMBEDDING_IGNORED)?;
        if let Some(v) = &body.mock_response {
            map.serialize_entry("mock_response", v)?;
        }
        map.end()?;
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> ChatRequestBody {
        serde_json::from_str(json).unwrap()
    }

    fn key(json: &str) -> CacheKey {
        chat(&body(json), Scope::Gateway, None).unwrap()
    }

    const BASE: &str =
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2}"#;

    #[test]
    fn same_answer_same_key() {
        let k = key(BASE);
        assert_eq!(k, key(BASE));
        for same in [
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"user":"alice","metadata":{"trace":"x","tags":["a"]}}"#,
            r#"{"temperature":0.2,"messages":[{"content":"hi","role":"user"}],"model":"m"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.20,"tags":["t"],"num_retries":3,"cache":{"ttl":5}}"#,
        ] {
            assert_eq!(key(same), k, "{same}");
        }
    }

    #[test]
    fn anything_that_changes_the_answer_changes_the_key() {
        let k = key(BASE);
        for differs in [
            r#"{"model":"m2","messages":[{"role":"user","content":"hi"}],"temperature":0.2}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi!"}],"temperature":0.2}"#,
            r#"{"model":"m","messages":[{"role":"system","content":"hi"}],"temperature":0.2}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.3}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"top_p":0.5}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"seed":1}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"max_tokens":5}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"n":2}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"response_format":{"type":"json_object"}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"tools":[{"type":"function","function":{"name":"f"}}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"tool_choice":"none"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"stop":"x"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"reasoning_effort":"low"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"x_vendor":1}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"mock_response":"other"}"#,
        ] {
            assert_ne!(key(differs), k, "{differs}");
        }
    }

    #[test]
    fn scope_and_namespace_separate_keys() {
        let b = body(BASE);
        let all = [
            chat(&b, Scope::Gateway, None).unwrap(),
            chat(&b, Scope::Shared, None).unwrap(),
            chat(&b, Scope::Team("t1"), None).unwrap(),
            chat(&b, Scope::Team("t2"), None).unwrap(),
            chat(&b, Scope::Key("t1"), None).unwrap(),
            chat(&b, Scope::Gateway, Some("a")).unwrap(),
            chat(&b, Scope::Gateway, Some("b")).unwrap(),
            chat(&b, Scope::Gateway, Some("")).unwrap(),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn scope_of_identities() {
        assert_eq!(Scope::of(None), Some(Scope::Gateway));
        assert_eq!(
            Scope::of(Some(&Identity::anonymous())),
            Some(Scope::Gateway)
        );
        assert_eq!(
            Scope::of(Some(&Identity::admin("sk-master-1234567"))),
            Some(Scope::Gateway)
        );
        let mut key = Identity::anonymous();
        key.role = Role::Key;
        assert_eq!(
            Scope::of(Some(&key)),
            None,
            "an unidentifiable key is not cached"
        );
        key.key_hash = Some("h1".into());
        assert_eq!(Scope::of(Some(&key)), Some(Scope::Key("h1")));
        key.team_id = Some("t".into());
        assert_eq!(Scope::of(Some(&key)), Some(Scope::Team("t")));
    }

    #[test]
    fn embedding_keys() {
        let e = |j: &str| {
            embedding(
                &serde_json::from_str::<EmbeddingRequestBody>(j).unwrap(),
                Scope::Gateway,
                None,
            )
            .unwrap()
        };
        let k = e(r#"{"model":"e","input":["a"]}"#);
        assert_eq!(
            k,
            e(r#"{"model":"e","input":["a"],"user":"u","metadata":{}}"#)
        );
        assert_ne!(k, e(r#"{"model":"e","input":["b"]}"#));
        assert_ne!(k, e(r#"{"model":"e","input":"a"}"#));
        assert_ne!(k, e(r#"{"model":"e","input":["a"],"dimensions":8}"#));
        assert_ne!(
            k,
            e(r#"{"model":"e","input":["a"],"encoding_format":"base64"}"#)
        );
        let c = chat(&body(BASE), Scope::Gateway, None).unwrap();
        assert_ne!(k, c);
    }

    #[test]
    fn hex_round_trip_and_garbage() {
        let k = key(BASE);
        assert_eq!(k.to_hex().parse::<CacheKey>().unwrap(), k);
        assert_eq!(k.to_hex().to_uppercase().parse::<CacheKey>().unwrap(), k);
        for bad in ["", "zz", &"g".repeat(64), &"a".repeat(63), &"é".repeat(32)] {
            assert!(bad.parse::<CacheKey>().is_err(), "{bad}");
        }
    }
}
