//! Embeddings: [`EmbeddingRequest`] and [`EmbeddingResponse`].

use super::wire::wire_object;
use crate::Secret;
use crate::error::Error;
use http::Extensions;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// An embeddings request travelling through the layers (body shared, like [`crate::ChatRequest`]).
///
/// ```
/// use tollgate::EmbeddingRequest;
///
/// let req = EmbeddingRequest::from_json(
///     br#"{"model":"text-embedding-3-small","input":["a","b"],"encoding_format":"base64"}"#,
/// ).unwrap();
/// assert_eq!(req.input.len(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct EmbeddingRequest {
    body: Arc<EmbeddingRequestBody>,
    /// Request-scoped context.
    pub extensions: Extensions,
}

impl EmbeddingRequest {
    /// Wraps a body.
    pub fn new(body: EmbeddingRequestBody) -> Self {
        EmbeddingRequest {
            body: Arc::new(body),
            extensions: Extensions::new(),
        }
    }

    /// Parses a JSON body.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        super::parse_json::<EmbeddingRequestBody>(bytes).map(EmbeddingRequest::new)
    }

    /// The body.
    pub fn body(&self) -> &EmbeddingRequestBody {
        &self.body
    }

    /// Mutable access, copying a shared body first.
    pub fn body_mut(&mut self) -> &mut EmbeddingRequestBody {
        Arc::make_mut(&mut self.body)
    }
}

impl Deref for EmbeddingRequest {
    type Target = EmbeddingRequestBody;
    fn deref(&self) -> &EmbeddingRequestBody {
        &self.body
    }
}

wire_object! {
    /// The OpenAI embeddings request body.
    #[derive(Clone, Debug, PartialEq)]
    pub struct EmbeddingRequestBody {
        required {
            /// Model (group) name.
            pub model: String = "model",
            /// What to embed.
            pub input: EmbeddingInput = "input",
        }
        optional {
            /// `float` (default) or `base64`.
            pub encoding_format: String = "encoding_format",
            /// Output dimensions (models that support it).
            pub dimensions: u32 = "dimensions",
            /// End-user id.
            pub user: String = "user",
        }
        local {
            /// LiteLLM metadata; never forwarded.
            pub metadata: serde_json::Map<String, Value> = "metadata",
            /// Canned answer for tests.
            pub mock_response: Value = "mock_response",
            /// Per-request timeout in seconds.
            pub timeout: f64 = "timeout",
            /// Per-request retry count.
            pub num_retries: u32 = "num_retries",
            /// Request tags.
            pub tags: Vec<String> = "tags",
            /// Client-side provider key: refused unless allowed.
            pub api_key: Secret = "api_key",
            /// Client-side base URL: refused unless allowed.
            pub api_base: String = "api_base",
            /// Alias of `api_base`.
            pub base_url: String = "base_url",
            /// Per-request cache controls (see [`crate::cache`]).
            pub cache: Value = "cache",
        }
    }
}

impl EmbeddingRequestBody {
    /// A request for `input` on `model`.
    pub fn new(model: impl Into<String>, input: EmbeddingInput) -> Self {
        EmbeddingRequestBody {
            model: model.into(),
            input,
            encoding_format: None,
            dimensions: None,
            user: None,
            metadata: None,
            mock_response: None,
            timeout: None,
            num_retries: None,
            tags: None,
            api_key: None,
            api_base: None,
            base_url: None,
            cache: None,
            extra: Default::default(),
        }
    }

    /// Names of client-side credential fields present.
    pub fn client_credential_fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.api_key.is_some() {
            out.push("api_key");
        }
        if self.api_base.is_some() {
            out.push("api_base");
        }
        if self.base_url.is_some() {
            out.push("base_url");
        }
        out
    }

    /// Whether the client asked for base64 vectors.
    pub fn wants_base64(&self) -> bool {
        self.encoding_format.as_deref() == Some("base64")
    }
}

/// Embedding input: one string, several strings, one token array or several.
#[derive(Clone, Debug, PartialEq)]
pub enum EmbeddingInput {
    /// `"text"`
    Text(String),
    /// `["a", "b"]`
    Texts(Vec<String>),
    /// `[1, 2, 3]`
    Tokens(Vec<u32>),
    /// `[[1, 2], [3]]`
    TokenBatches(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    /// How many vectors the answer will hold.
    pub fn len(&self) -> usize {
        match self {
            EmbeddingInput::Text(_) | EmbeddingInput::Tokens(_) => 1,
            EmbeddingInput::Texts(v) => v.len(),
            EmbeddingInput::TokenBatches(v) => v.len(),
        }
    }

    /// Whether there is nothing to embed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The texts, when the input is text.
    pub fn texts(&self) -> Vec<&str> {
        match self {
            EmbeddingInput::Text(s) => vec![s.as_str()],
            EmbeddingInput::Texts(v) => v.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

impl Serialize for EmbeddingInput {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EmbeddingInput::Text(t) => s.serialize_str(t),
            EmbeddingInput::Texts(v) => v.serialize(s),
            EmbeddingInput::Tokens(v) => v.serialize(s),
            EmbeddingInput::TokenBatches(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for EmbeddingInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EmbeddingInput;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, an array of strings, or token arrays")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EmbeddingInput, E> {
                Ok(EmbeddingInput::Text(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EmbeddingInput, A::Error> {
                // Decide the shape from the first element, then require the rest to match.
                let first: Option<Value> = seq.next_element()?;
                let Some(first) = first else {
                    return Ok(EmbeddingInput::Texts(Vec::new()));
                };
                fn token<E: de::Error>(v: &Value) -> Result<u32, E> {
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| E::custom("token ids must be non-negative integers"))
                }
                match first {
                    Value::String(s) => {
                        let mut out = vec![s];
                        while let Some(s) = seq.next_element::<String>()? {
                            out.push(s);
                        }
                        Ok(EmbeddingInput::Texts(out))
                    }
                    Value::Number(_) => {
                        let mut out = vec![token(&first)?];
                        while let Some(n) = seq.next_element::<u32>()? {
                            out.push(n);
                        }
                        Ok(EmbeddingInput::Tokens(out))
                    }
                    Value::Array(a) => {
                        let mut out = vec![a.iter().map(token).collect::<Result<Vec<_>, _>>()?];
                        while let Some(v) = seq.next_element::<Vec<u32>>()? {
                            out.push(v);
                        }
                        Ok(EmbeddingInput::TokenBatches(out))
                    }
                    _ => Err(de::Error::custom(
                        "input items must be strings or token ids",
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

wire_object! {
    /// The embeddings response.
    #[derive(Clone, Debug, PartialEq)]
    pub struct EmbeddingResponse {
        defaulted {
            /// Always `list`.
            pub object: String = "object" => "list".to_owned(),
            /// One vector per input, in input order.
            pub data: Vec<Embedding> = "data" => Vec::new(),
            /// The model.
            pub model: String = "model" => String::new(),
        }
        optional {
            /// Token usage.
            pub usage: EmbeddingUsage = "usage",
        }
    }
}

wire_object! {
    /// One embedding vector.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Embedding {
        required {
            /// The vector.
            pub embedding: EmbeddingVector = "embedding",
        }
        defaulted {
            /// Always `embedding`.
            pub object: String = "object" => "embedding".to_owned(),
            /// Position of the input.
            pub index: u32 = "index" => 0,
        }
    }
}

impl Embedding {
    /// A float vector at `index`.
    pub fn floats(index: u32, values: Vec<f64>) -> Self {
        Embedding {
            object: "embedding".to_owned(),
            index,
            embedding: EmbeddingVector::Float(values),
            extra: Default::default(),
        }
    }
}

/// An embedding: floats, or base64 of little-endian `f32`s.
#[derive(Clone, Debug, PartialEq)]
pub enum EmbeddingVector {
    /// `[0.1, -0.2, …]`
    Float(Vec<f64>),
    /// Base64 of little-endian `f32` values.
    Base64(String),
}

impl EmbeddingVector {
    /// Converts a float vector to base64 (little-endian `f32`), as OpenAI sends it.
    pub fn to_base64(&self) -> EmbeddingVector {
        match self {
            EmbeddingVector::Base64(s) => EmbeddingVector::Base64(s.clone()),
            EmbeddingVector::Float(v) => {
                let mut bytes = Vec::with_capacity(v.len() * 4);
                for x in v {
                    bytes.extend_from_slice(&(*x as f32).to_le_bytes());
                }
                EmbeddingVector::Base64(crate::util::base64_encode(&bytes))
            }
        }
    }

    /// Decodes to floats (base64 input is decoded as little-endian `f32`).
    pub fn to_floats(&self) -> Option<Vec<f64>> {
        match self {
            EmbeddingVector::Float(v) => Some(v.clone()),
            EmbeddingVector::Base64(s) => {
                let bytes = crate::util::base64_decode(s)?;
                if bytes.len() % 4 != 0 {
                    return None;
                }
                Some(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                        .collect(),
                )
            }
        }
    }
}

impl Serialize for EmbeddingVector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EmbeddingVector::Float(v) => v.serialize(s),
            EmbeddingVector::Base64(b) => s.serialize_str(b),
        }
    }
}

impl<'de> Deserialize<'de> for EmbeddingVector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EmbeddingVector;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of numbers or a base64 string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EmbeddingVector, E> {
                Ok(EmbeddingVector::Base64(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EmbeddingVector, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1536));
                while let Some(x) = seq.next_element()? {
                    out.push(x);
                }
                Ok(EmbeddingVector::Float(out))
            }
        }
        d.deserialize_any(V)
    }
}

wire_object! {
    /// Embedding token usage.
    #[derive(Clone, Debug, PartialEq, Default)]
    pub struct EmbeddingUsage {
        defaulted {
            /// Input tokens.
            pub prompt_tokens: u64 = "prompt_tokens" => 0,
            /// Same as `prompt_tokens`.
            pub total_tokens: u64 = "total_tokens" => 0,
        }
    }
}
