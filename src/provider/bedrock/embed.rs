//! Bedrock embeddings through InvokeModel (`POST /model/{id}/invoke`, SigV4).
//!
//! Two model families, as LiteLLM serves them:
//!
//! * **Amazon Titan** (`amazon.titan-embed-text-v2:0`, `amazon.titan-embed-text-v1`,
//!   `amazon.titan-embed-image-v1`): one text per call,
//!   `{"inputText": …, "dimensions": N, "normalize": …}`; the answer
//!   `{"embedding": […], "inputTextTokenCount": N}` gives the usage. A list of
//!   inputs is sent as one call per input, in order (as LiteLLM does), by
//!   [`BedrockEmbeddings`], and the answers are joined with their token counts summed.
//! * **Cohere** (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`,
//!   `cohere.embed-v4:0`): all texts in one call,
//!   `{"texts": […], "input_type": …}` (`input_type` from the request or the
//!   deployment, default `search_document`; `truncate`, `embedding_types` and,
//!   from `dimensions`, `output_dimension` pass through); the answer's
//!   `embeddings` is a list of vectors or `{"float": […]}`. Cohere reports no
//!   token count in the body, so usage is an estimate (four characters per
//!   token).
//!
//! Token-id inputs are refused (both embed text), as is an empty input.
//! `encoding_format: "base64"` is honoured here (little-endian `f32`).

use super::Bedrock;
use crate::error::{Error, ErrorKind};
use crate::types::{
    Embedding, EmbeddingInput, EmbeddingOutput, EmbeddingRequest, EmbeddingRequestBody,
    EmbeddingResponse, EmbeddingUsage, Extra,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The embedding models Bedrock serves through InvokeModel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbedFamily {
    /// Amazon Titan embeddings: one text per call.
    Titan,
    /// Cohere Embed: a batch of texts per call.
    Cohere,
}

impl EmbedFamily {
    /// The family of a model id, inference-profile id or ARN; `None` for a
    /// model that is not a known embedding model.
    pub fn of(model: &str) -> Option<EmbedFamily> {
        let id = model.rsplit('/').next().unwrap_or(model);
        if id.contains("amazon.titan-embed") {
            Some(EmbedFamily::Titan)
        } else if id.contains("cohere.embed") {
            Some(EmbedFamily::Cohere)
        } else {
            None
        }
    }
}

fn texts(req: &EmbeddingRequestBody) -> Result<Vec<&str>, Error> {
    let texts = match &req.input {
        EmbeddingInput::Text(_) | EmbeddingInput::Texts(_) => req.input.texts(),
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) => {
            return Err(Error::bad_request(
                "Bedrock embedding models embed text: send `input` as a string or a list of strings, not token ids",
            )
            .with_param("input"));
        }
    };
    if texts.is_empty() {
        return Err(Error::bad_request("`input` is empty").with_param("input"));
    }
    Ok(texts)
}

/// A provider field from the request, else the deployment's default.
fn field(req: &EmbeddingRequestBody, defaults: &Extra, name: &str) -> Result<Option<Value>, Error> {
    let raw = req.extra.get(name).or_else(|| defaults.get(name));
    raw.map(|r| {
        serde_json::from_str(r.get()).map_err(|e| {
            Error::bad_request(format!("`{name}` is not valid JSON: {e}")).with_param(name)
        })
    })
    .transpose()
}

/// The InvokeModel body for `req`.
pub(crate) fn body(
    family: EmbedFamily,
    req: &EmbeddingRequestBody,
    defaults: &Extra,
) -> Result<Vec<u8>, Error> {
    let texts = texts(req)?;
    let mut out = Map::new();
    match family {
        EmbedFamily::Titan => {
            let [text] = texts.as_slice() else {
                return Err(Error::internal(
                    "Titan embeds one text per call (the batch was not split)",
                ));
            };
            out.insert("inputText".into(), Value::from(*text));
            if let Some(d) = req.dimensions {
                out.insert("dimensions".into(), Value::from(d));
            }
            for name in ["normalize", "embeddingTypes", "embeddingConfig"] {
                if let Some(v) = field(req, defaults, name)? {
                    out.insert(name.into(), v);
                }
            }
        }
        EmbedFamily::Cohere => {
            out.insert("texts".into(), Value::from(texts));
            let input_type = field(req, defaults, "input_type")?
                .unwrap_or_else(|| Value::from("search_document"));
            out.insert("input_type".into(), input_type);
            for name in ["truncate", "embedding_types"] {
                if let Some(v) = field(req, defaults, name)? {
                    out.insert(name.into(), v);
                }
            }
            if let Some(d) = req.dimensions {
                out.insert("output_dimension".into(), Value::from(d));
            }
        }
    }
    serde_json::to_vec(&Value::Object(out))
        .map_err(|e| Error::internal(format!("could not encode the request: {e}")))
}

#[derive(Deserialize)]
struct TitanResponse {
    embedding: Vec<f64>,
    #[serde(default, rename = "inputTextTokenCount")]
    input_text_token_count: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CohereEmbeddings {
    List(Vec<Vec<f64>>),
    ByType { float: Vec<Vec<f64>> },
}

#[derive(Deserialize)]
struct CohereResponse {
    embeddings: CohereEmbeddings,
}

fn bad_answer(e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::BadGateway,
        format!("the upstream embeddings answer is not valid: {e}"),
    )
}

/// The OpenAI answer for an InvokeModel embeddings answer.
pub(crate) fn parse(
    family: EmbedFamily,
    req: &EmbeddingRequestBody,
    body: &[u8],
    model: &str,
) -> Result<EmbeddingResponse, Error> {
    let (vectors, counted) = match family {
        EmbedFamily::Titan => {
            let r: TitanResponse = serde_json::from_slice(body).map_err(bad_answer)?;
            (vec![r.embedding], r.input_text_token_count)
        }
        EmbedFamily::Cohere => {
            let r: CohereResponse = serde_json::from_slice(body).map_err(bad_answer)?;
            let vectors = match r.embeddings {
                CohereEmbeddings::List(v) | CohereEmbeddings::ByType { float: v } => v,
            };
            (vectors, None)
        }
    };
    if vectors.len() != req.input.len() {
        return Err(bad_answer(format_args!(
            "{} embeddings for {} inputs",
            vectors.len(),
            req.input.len()
        )));
    }
    let base64 = req.wants_base64();
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(i, values)| {
            let mut emb = Embedding::floats(u32::try_from(i).unwrap_or(u32::MAX), values);
            if base64 {
                emb.embedding = emb.embedding.to_base64();
            }
            emb
        })
        .collect();
    let tokens = counted.unwrap_or_else(|| {
        req.input
            .texts()
            .iter()
            .map(|t| crate::tokens::estimate_text(t))
            .sum()
    });
    Ok(EmbeddingResponse {
        object: "list".to_owned(),
        data,
        model: model.to_owned(),
        usage: Some(EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
            extra: Default::default(),
        }),
        extra: Default::default(),
    })
}

/// The embeddings service of a Bedrock deployment: the [`Bedrock`] leaf, with
/// a list of inputs to a Titan model sent as one call per input (in order)
/// and joined into one answer (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct BedrockEmbeddings {
    leaf: Bedrock,
    split: bool,
}

impl BedrockEmbeddings {
    /// Wraps a leaf; `model` decides whether batches are split.
    pub fn new(leaf: Bedrock, model: &str) -> Self {
        BedrockEmbeddings {
            leaf,
            split: EmbedFamily::of(model) == Some(EmbedFamily::Titan),
        }
    }
}

type EmbedFuture = Pin<Box<dyn Future<Output = Result<EmbeddingOutput, Error>> + Send>>;

impl tower::Service<EmbeddingRequest> for BedrockEmbeddings {
    type Response = EmbeddingOutput;
    type Error = Error;
    type Future = EmbedFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: EmbeddingRequest) -> Self::Future {
        let many = matches!(&req.input, EmbeddingInput::Texts(v) if v.len() > 1);
        if !self.split || !many || req.mock_response.is_some() {
            return self.leaf.embed(req);
        }
        let leaf = self.leaf.clone();
        Box::pin(async move {
            let EmbeddingInput::Texts(all) = req.input.clone() else {
                return Err(Error::internal("the batch changed shape"));
            };
            let mut answers = Vec::with_capacity(all.len());
            for text in all {
                let mut one = req.clone();
                one.body_mut().input = EmbeddingInput::Text(text);
                answers.push(leaf.embed(one).await?);
            }
            let mut answers = answers.into_iter();
            let Some(mut out) = answers.next() else {
                return Err(Error::internal("no answer for a non-empty batch"));
            };
            for (i, answer) in answers.enumerate() {
                let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
                for mut emb in answer.body.data {
                    emb.index = index;
                    out.body.data.push(emb);
                }
                if let (Some(total), Some(u)) = (out.body.usage.as_mut(), answer.body.usage) {
                    total.prompt_tokens += u.prompt_tokens;
                    total.total_tokens += u.total_tokens;
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EmbeddingVector;

    fn req(json: &str) -> EmbeddingRequest {
        EmbeddingRequest::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn families() {
        assert_eq!(
            EmbedFamily::of("amazon.titan-embed-text-v2:0"),
            Some(EmbedFamily::Titan)
        );
        assert_eq!(
            EmbedFamily::of("us.cohere.embed-v4:0"),
            Some(EmbedFamily::Cohere)
        );
        assert_eq!(
            EmbedFamily::of("arn:aws:bedrock:us-east-1::foundation-model/cohere.embed-english-v3"),
            Some(EmbedFamily::Cohere)
        );
        assert_eq!(
            EmbedFamily::of("anthropic.claude-3-haiku-20240307-v1:0"),
            None
        );
    }

    #[test]
    fn titan_body_and_answer() {
        let r = req(r#"{"model":"e","input":"hello","dimensions":256,"normalize":true}"#);
        let sent: Value =
            serde_json::from_slice(&body(EmbedFamily::Titan, r.body(), &Extra::new()).unwrap())
                .unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"inputText": "hello", "dimensions": 256, "normalize": true})
        );
        let out = parse(
            EmbedFamily::Titan,
            r.body(),
            br#"{"embedding":[0.5,-0.25],"inputTextTokenCount":3}"#,
            "amazon.titan-embed-text-v2:0",
        )
        .unwrap();
        assert_eq!(
            out.data[0].embedding,
            EmbeddingVector::Float(vec![0.5, -0.25])
        );
        assert_eq!(out.usage.unwrap().prompt_tokens, 3);
        // Unsplit batches and token ids are refused, never sent half.
        assert!(
            body_err(r#"{"model":"e","input":["a","b"]}"#, EmbedFamily::Titan).contains("one text")
        );
        assert!(
            body_err(r#"{"model":"e","input":[1,2]}"#, EmbedFamily::Titan).contains("token ids")
        );
        assert!(body_err(r#"{"model":"e","input":[]}"#, EmbedFamily::Cohere).contains("empty"));
        // A malformed answer is a 502, not a panic.
        let e = parse(EmbedFamily::Titan, r.body(), b"{}", "m").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadGateway);
    }

    fn body_err(json: &str, family: EmbedFamily) -> String {
        body(family, req(json).body(), &Extra::new())
            .unwrap_err()
            .message()
            .to_owned()
    }

    #[test]
    fn cohere_body_and_both_answer_shapes() {
        let r = req(r#"{"model":"e","input":["a","b"],"encoding_format":"base64"}"#);
        let mut defaults = Extra::new();
        defaults.insert("input_type", "search_query").unwrap();
        let sent: Value =
            serde_json::from_slice(&body(EmbedFamily::Cohere, r.body(), &defaults).unwrap())
                .unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"texts": ["a", "b"], "input_type": "search_query"})
        );
        let plain = parse(
            EmbedFamily::Cohere,
            r.body(),
            br#"{"id":"x","embeddings":[[1.0],[2.0]],"response_type":"embeddings_floats","texts":["a","b"]}"#,
            "cohere.embed-english-v3",
        )
        .unwrap();
        assert_eq!(plain.data.len(), 2);
        assert_eq!(plain.data[1].index, 1);
        assert_eq!(
            plain.data[1].embedding,
            EmbeddingVector::Float(vec![2.0]).to_base64()
        );
        assert!(plain.usage.unwrap().prompt_tokens > 0);
        let typed = parse(
            EmbedFamily::Cohere,
            r.body(),
            br#"{"embeddings":{"float":[[1.0],[2.0]]},"response_type":"embeddings_by_type"}"#,
            "cohere.embed-v4:0",
        )
        .unwrap();
        assert_eq!(typed.data.len(), 2);
        // Fewer vectors than inputs is an upstream fault.
        let e = parse(
            EmbedFamily::Cohere,
            r.body(),
            br#"{"embeddings":[[1.0]]}"#,
            "m",
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadGateway);
        let r = req(r#"{"model":"e","input":"a","input_type":"classification","dimensions":512}"#);
        let sent: Value =
            serde_json::from_slice(&body(EmbedFamily::Cohere, r.body(), &defaults).unwrap())
                .unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"texts": ["a"], "input_type": "classification", "output_dimension": 512})
        );
    }
}
