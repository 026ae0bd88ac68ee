//! The stored form of a cached answer, and its replay as a stream.
//!
//! An entry is compact JSON:
//! `{"v":1,"kind":"chat","at":<stored, unix ms>,"exp":<expires, unix ms>,"body":{…}}`.
//! `v` is the format version: an entry of another version (or anything that
//! does not parse) reads as a miss, never as a wrong answer. The times come
//! from the cache's [`Clock`](super::Clock), so expiry and `s-maxage` are
//! decided by tollgate on every read, whatever the backend's own eviction.

use crate::types::{
    ChatChunk, ChatCompletion, ChunkChoice, Delta, EmbeddingResponse, FunctionCallDelta, Role,
    ToolCallDelta,
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The format version written into every entry.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// What kind of answer an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Chat,
    Embedding,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::Embedding => "embedding",
        }
    }
}

#[derive(Serialize)]
struct Out<'a, T> {
    v: u32,
    kind: &'static str,
    at: u64,
    exp: u64,
    body: &'a T,
}

#[derive(Deserialize)]
struct In<'a> {
    v: u32,
    kind: &'a str,
    at: u64,
    exp: u64,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// Encodes an answer stored at `at` that expires at `exp` (unix ms).
pub(crate) fn encode<T: Serialize>(kind: Kind, at: u64, exp: u64, body: &T) -> Option<Bytes> {
    serde_json::to_vec(&Out {
        v: FORMAT_VERSION,
        kind: kind.as_str(),
        at,
        exp,
        body,
    })
    .ok()
    .map(Bytes::from)
}

/// A decoded entry header and its body text.
pub(crate) struct Decoded<'a> {
    /// When it was stored (unix ms).
    pub(crate) at: u64,
    /// When it expires (unix ms).
    pub(crate) exp: u64,
    body: &'a str,
}

/// An answer the cache stores.
pub(crate) trait Answer: Sized {
    /// Its kind.
    const KIND: Kind;
    /// Parses the body of a decoded entry.
    fn parse(d: &Decoded<'_>) -> Option<Self>;
}

impl Answer for ChatCompletion {
    const KIND: Kind = Kind::Chat;
    fn parse(d: &Decoded<'_>) -> Option<Self> {
        serde_json::from_str(d.body).ok()
    }
}

impl Answer for EmbeddingResponse {
    const KIND: Kind = Kind::Embedding;
    fn parse(d: &Decoded<'_>) -> Option<Self> {
        serde_json::from_str(d.body).ok()
    }
}

/// Reads an entry of `kind`; `None` for another version, another kind, or garbage.
pub(crate) fn decode(kind: Kind, bytes: &[u8]) -> Option<Decoded<'_>> {
    let e: In<'_> = serde_json::from_slice(bytes).ok()?;
    (e.v == FORMAT_VERSION && e.kind == kind.as_str()).then(|| Decoded {
        at: e.at,
        exp: e.exp,
        body: e.body.get(),
    })
}

/// Turns a stored completion back into a stream: per choice one chunk with
/// the whole message (role, content, reasoning, refusal, tool calls) and one
/// with its finish reason, then the usage chunk. Assembled again, the chunks
/// give back the same completion.
pub(crate) fn replay(c: &ChatCompletion) -> Vec<ChatChunk> {
    let base = || {
        let mut chunk = ChatChunk::new(c.id.clone(), c.model.clone(), c.created);
        chunk.system_fingerprint.clone_from(&c.system_fingerprint);
        chunk.service_tier.clone_from(&c.service_tier);
        chunk
    };
    let mut out = Vec::with_capacity(c.choices.len() * 2 + 1);
    for choice in &c.choices {
        let m = &choice.message;
        let tool_calls: Option<Vec<ToolCallDelta>> = m.tool_calls.as_ref().map(|calls| {
            calls
                .iter()
                .enumerate()
                .map(|(i, call)| {
                    let mut d = ToolCallDelta::start(
                        u32::try_from(i).unwrap_or(u32::MAX),
                        call.id.clone(),
                        call.function.name.clone(),
                    );
                    if let Some(f) = d.function.as_mut() {
                        f.arguments = Some(call.function.arguments.clone());
                    }
                    d
                })
                .collect()
        });
        let delta = Delta {
            role: Some(Role::Assistant),
            content: match (&m.content, &tool_calls, &m.refusal) {
                (Some(t), _, _) => Some(t.clone()),
                (None, None, None) => Some(String::new()),
                _ => None,
            },
            refusal: m.refusal.clone(),
            tool_calls,
            function_call: m.function_call.as_ref().map(|f| FunctionCallDelta {
                name: Some(f.name.clone()),
                arguments: Some(f.arguments.clone()),
                extra: Default::default(),
            }),
            reasoning_content: m.reasoning_content.clone(),
            extra: Default::default(),
        };
        let mut first = ChunkChoice::new(choice.index, delta);
        first.logprobs.clone_from(&choice.logprobs);
        out.push(base().with_choice(first));
        if let Some(reason) = &choice.finish_reason {
            out.push(base().with_choice(ChunkChoice::finish(choice.index, reason.clone())));
        }
    }
    if let Some(usage) = &c.usage {
        let mut chunk = base();
        chunk.usage = Some(usage.clone());
        out.push(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::ChunkAggregator;

    fn completion(json: &str) -> ChatCompletion {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn round_trip_and_versioning() {
        let c = completion(
            r#"{"id":"c","model":"m","created":5,"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#,
        );
        let bytes = encode(Kind::Chat, 10, 20, &c).unwrap();
        let d = decode(Kind::Chat, &bytes).unwrap();
        assert_eq!((d.at, d.exp), (10, 20));
        assert_eq!(ChatCompletion::parse(&d).unwrap(), c);
        assert!(decode(Kind::Embedding, &bytes).is_none(), "other kind");
        let v2 = String::from_utf8(bytes.to_vec())
            .unwrap()
            .replace("\"v\":1", "\"v\":2");
        assert!(decode(Kind::Chat, v2.as_bytes()).is_none(), "other version");
        assert!(decode(Kind::Chat, b"\x00garbage").is_none());
        assert!(decode(Kind::Chat, b"{}").is_none());
    }

    #[test]
    fn replay_reassembles_to_the_same_completion() {
        let c = completion(
            r#"{"id":"c","model":"m","created":5,"system_fingerprint":"fp","choices":[
              {"index":0,"message":{"role":"assistant","content":"Hello there","reasoning_content":"think"},"finish_reason":"stop"},
              {"index":1,"message":{"role":"assistant","content":null,"tool_calls":[
                {"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},
                {"id":"call_2","type":"function","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}],
              "usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        );
        let chunks = replay(&c);
        assert!(chunks.last().unwrap().is_usage_only());
        let mut agg = ChunkAggregator::default();
        for ch in &chunks {
            agg.push(ch);
        }
        assert_eq!(agg.finish(), c);
    }

    #[test]
    fn empty_message_still_opens_with_the_role() {
        let c = completion(
            r#"{"id":"c","model":"m","created":5,"choices":[{"index":0,"message":{"role":"assistant","content":null},"finish_reason":"length"}]}"#,
        );
        let chunks = replay(&c);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].choices[0].delta.content.as_deref(), Some(""));
    }
}
