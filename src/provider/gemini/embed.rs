//! Embeddings through `batchEmbedContents` (pure translation).
//!
//! One request per call: every input string becomes one
//! `{"model":"models/<m>","content":{"parts":[{"text":…}]}}` entry.
//! `dimensions` → `outputDimensionality`; the Gemini fields `task_type`
//! (`taskType`) and `title` may be passed as extra request fields (or set in
//! `litellm_params`). Token-id inputs are refused: Gemini embeds text.
//! `encoding_format: "base64"` is honoured here (little-endian `f32`, as
//! OpenAI sends it). Gemini reports no token counts for embeddings, so
//! `usage` is an estimate (four characters per token), as LiteLLM's is.

use super::wire::{BatchEmbedRequest, BatchEmbedResponse, Content, EmbedContentRequest, Part};
use crate::error::{Error, ErrorKind};
use crate::types::{
    Embedding, EmbeddingInput, EmbeddingRequestBody, EmbeddingResponse, EmbeddingUsage, Extra,
};

/// The request body. `model_path` is `models/<model>`.
pub(crate) fn body(
    model_path: &str,
    req: &EmbeddingRequestBody,
    defaults: &Extra,
) -> Result<Vec<u8>, Error> {
    let texts = texts(req)?;
    let extra = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| req.extra.get(n))
            .or_else(|| names.iter().find_map(|n| defaults.get(n)))
    };
    let task_type = extra(&["task_type", "taskType"]);
    let title = extra(&["title"]);
    let body = BatchEmbedRequest {
        requests: texts
            .into_iter()
            .map(|t| EmbedContentRequest {
                model: model_path,
                content: Content {
                    role: None,
                    parts: vec![Part::text(t)],
                },
                task_type,
                title,
                output_dimensionality: req.dimensions,
            })
            .collect(),
    };
    serde_json::to_vec(&body)
        .map_err(|e| Error::internal(format!("could not encode the request: {e}")))
}

/// The OpenAI answer for a `batchEmbedContents` answer.
pub(crate) fn parse(
    req: &EmbeddingRequestBody,
    body: &[u8],
    model: &str,
) -> Result<EmbeddingResponse, Error> {
    let resp: BatchEmbedResponse = serde_json::from_slice(body).map_err(|e| {
        Error::new(
            ErrorKind::BadGateway,
            format!("the upstream embeddings answer is not valid: {e}"),
        )
    })?;
    let values = resp.embeddings.into_iter().map(|e| e.values).collect();
    finish(req, values, model, None)
}

/// Vertex AI `:predict` body for text-embedding models (**(doc)**: Vertex AI's
/// text-embeddings reference; no recorded sample):
/// `{"instances":[{"content":…,"task_type":…,"title":…}],"parameters":{"outputDimensionality":N}}`.
pub(crate) fn vertex_body(req: &EmbeddingRequestBody, defaults: &Extra) -> Result<Vec<u8>, Error> {
    let texts = texts(req)?;
    let extra = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| req.extra.get(n))
            .or_else(|| names.iter().find_map(|n| defaults.get(n)))
    };
    let task_type = extra(&["task_type", "taskType"]);
    let title = extra(&["title"]);
    let body = VertexPredictRequest {
        instances: texts
            .into_iter()
            .map(|content| VertexInstance {
                content,
                task_type,
                title,
            })
            .collect(),
        parameters: req.dimensions.map(|d| VertexParameters {
            output_dimensionality: d,
        }),
    };
    serde_json::to_vec(&body)
        .map_err(|e| Error::internal(format!("could not encode the request: {e}")))
}

/// The OpenAI answer for a Vertex AI `:predict` embeddings answer; usage is
/// the sum of `statistics.token_count` (estimated when absent).
pub(crate) fn vertex_parse(
    req: &EmbeddingRequestBody,
    body: &[u8],
    model: &str,
) -> Result<EmbeddingResponse, Error> {
    let resp: VertexPredictResponse = serde_json::from_slice(body).map_err(|e| {
        Error::new(
            ErrorKind::BadGateway,
            format!("the upstream embeddings answer is not valid: {e}"),
        )
    })?;
    let counted: Option<u64> = resp
        .predictions
        .iter()
        .map(|p| p.embeddings.statistics.as_ref().and_then(|s| s.token_count))
        .sum();
    let values = resp
        .predictions
        .into_iter()
        .map(|p| p.embeddings.values)
        .collect();
    finish(req, values, model, counted)
}

fn texts(req: &EmbeddingRequestBody) -> Result<Vec<&str>, Error> {
    let texts = match &req.input {
        EmbeddingInput::Text(_) | EmbeddingInput::Texts(_) => req.input.texts(),
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) => {
            return Err(Error::bad_request(
                "Gemini embeds text: send `input` as a string or a list of strings, not token ids",
            )
            .with_param("input"));
        }
    };
    if texts.is_empty() {
        return Err(Error::bad_request("`input` is empty").with_param("input"));
    }
    Ok(texts)
}

fn finish(
    req: &EmbeddingRequestBody,
    vectors: Vec<Vec<f64>>,
    model: &str,
    counted: Option<u64>,
) -> Result<EmbeddingResponse, Error> {
    if vectors.len() != req.input.len() {
        return Err(Error::new(
            ErrorKind::BadGateway,
            format!(
                "the upstream returned {} embeddings for {} inputs",
                vectors.len(),
                req.input.len()
            ),
        ));
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
        .collect::<Vec<_>>();
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

#[derive(serde::Serialize)]
struct VertexPredictRequest<'a> {
    instances: Vec<VertexInstance<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<VertexParameters>,
}

#[derive(serde::Serialize)]
struct VertexInstance<'a> {
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_type: Option<&'a serde_json::value::RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a serde_json::value::RawValue>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct VertexParameters {
    output_dimensionality: u32,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct VertexPredictResponse {
    predictions: Vec<VertexPrediction>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct VertexPrediction {
    embeddings: VertexEmbedding,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct VertexEmbedding {
    values: Vec<f64>,
    statistics: Option<VertexStatistics>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct VertexStatistics {
    token_count: Option<u64>,
}
