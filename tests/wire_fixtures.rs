//! Every OpenAI and OpenAI-compatible recorded body parses into tollgate's
//! types and serialises back without losing anything (unknown fields are
//! kept verbatim; only `null`-valued optional keys may be left out).

mod common;

use serde_json::Value;
use tollgate::sse::SseDecoder;
use tollgate::types::{
    ChatChunk, ChatCompletion, ChatRequestBody, EmbeddingRequestBody, EmbeddingResponse,
};

/// Drops `null` members of objects, recursively (absent and null mean the same).
fn normalise(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, normalise(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(normalise).collect()),
        other => other,
    }
}

/// Keys tollgate fills in with their default when a provider leaves them out
/// (clients of the OpenAI format expect them). Nothing else may be added.
fn is_filled_default(key: &str, value: &Value) -> bool {
    matches!(
        (key, value),
        ("type", Value::String(_))
            | ("object", Value::String(_))
            | ("index", Value::Number(_))
            | ("arguments", Value::String(_))
            | ("role", Value::String(_))
            | ("created", Value::Number(_))
            | ("id", Value::String(_))
            | ("model", Value::String(_))
            | ("choices", Value::Array(_))
    )
}

/// `back` holds everything `original` holds, with the same values; it may add
/// only filled-in defaults.
fn assert_preserved(original: &Value, back: &Value, path: &str) {
    match (original, back) {
        (Value::Object(o), Value::Object(b)) => {
            for (k, v) in o {
                let Some(bv) = b.get(k) else {
                    panic!("{path}.{k} was lost");
                };
                assert_preserved(v, bv, &format!("{path}.{k}"));
            }
            for (k, v) in b {
                assert!(
                    o.contains_key(k) || is_filled_default(k, v),
                    "{path}.{k} = {v} was added"
                );
            }
        }
        (Value::Array(o), Value::Array(b)) => {
            assert_eq!(o.len(), b.len(), "{path}: array length");
            for (i, (a, bb)) in o.iter().zip(b).enumerate() {
                assert_preserved(a, bb, &format!("{path}[{i}]"));
            }
        }
        // A typed number may change spelling (`0` → `0.0`), never value.
        (Value::Number(a), Value::Number(b)) => {
            assert_eq!(a.as_f64(), b.as_f64(), "{path}");
        }
        (a, b) => assert_eq!(a, b, "{path}"),
    }
}

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(name: &str, json: &[u8]) {
    let original: Value = serde_json::from_slice(json).unwrap_or_else(|e| panic!("{name}: {e}"));
    let typed: T = serde_json::from_slice(json).unwrap_or_else(|e| panic!("{name}: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_preserved(&normalise(original), &normalise(back), name);
}

fn files(dir: &str, suffix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(common::fixture_path(dir))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    out.sort();
    out
}

fn is_error(name: &str) -> bool {
    name.rsplit('/')
        .next()
        .unwrap_or(name)
        .starts_with("error_")
        || name.contains("_error_")
}

#[test]
fn completion_bodies_round_trip() {
    let mut n = 0;
    for dir in ["openai", "openai_compatible", "azure", "mistral"] {
        for f in files(dir, ".resp.json") {
            if is_error(&f) || f.contains("embed") {
                continue;
            }
            round_trip::<ChatCompletion>(&f, &common::fixture(&f));
            n += 1;
        }
    }
    assert!(n >= 15, "only {n} completion fixtures");
}

#[test]
fn request_bodies_round_trip() {
    let mut n = 0;
    for dir in ["openai", "openai_compatible", "azure", "mistral"] {
        for f in files(dir, ".req.json") {
            if f.contains("embed") {
                round_trip::<EmbeddingRequestBody>(&f, &common::fixture(&f));
            } else {
                round_trip::<ChatRequestBody>(&f, &common::fixture(&f));
            }
            n += 1;
        }
    }
    assert!(n >= 20, "only {n} request fixtures");
}

#[test]
fn embedding_bodies_round_trip() {
    round_trip::<EmbeddingResponse>(
        "openai/embeddings_base64.resp.json",
        &common::fixture("openai/embeddings_base64.resp.json"),
    );
}

#[test]
fn raw_http_bodies_round_trip() {
    for f in [
        "openai/chat_text.http.txt",
        "openai/chat_image_input.http.txt",
    ] {
        let text = String::from_utf8(common::fixture(f))
            .unwrap()
            .replace("\r\n", "\n");
        let (req, resp) = text.split_once("<<< RESPONSE").unwrap();
        let req_body = req.split_once("\n\n").unwrap().1.trim();
        round_trip::<ChatRequestBody>(f, req_body.as_bytes());
        let resp_body = resp.split_once("\n\n").unwrap().1.trim();
        round_trip::<ChatCompletion>(f, resp_body.as_bytes());
    }
}

#[test]
fn stream_chunks_round_trip() {
    let mut n = 0;
    for dir in ["openai", "openai_compatible", "azure"] {
        for f in files(dir, ".sse.txt") {
            let mut dec = SseDecoder::new();
            dec.push(&common::fixture(&f));
            let mut events = Vec::new();
            while let Some(e) = dec.next_event().unwrap() {
                events.push(e);
            }
            while let Some(e) = dec.finish().unwrap() {
                events.push(e);
            }
            for e in events {
                if e.is_done()
                    || e.event.as_deref() == Some("error")
                    || e.data.contains("\"error\"")
                {
                    continue;
                }
                round_trip::<ChatChunk>(&f, e.data.as_bytes());
                n += 1;
            }
        }
        for f in files(dir, ".chunks.jsonl") {
            for line in String::from_utf8(common::fixture(&f)).unwrap().lines() {
                if !line.trim().is_empty() {
                    round_trip::<ChatChunk>(&f, line.as_bytes());
                    n += 1;
                }
            }
        }
    }
    assert!(n >= 100, "only {n} chunks");
}
