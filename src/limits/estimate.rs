//! The worst case a call can cost, for budget reservations, and the tokens it
//! will count against tokens-per-minute limits.

use crate::pricing::{ModelPrice, Usd};
use crate::tokens;
use crate::types::{ChatRequest, ChatRequestBody, EmbeddingInput, EmbeddingRequest, Usage};
use std::sync::Arc;

/// Output tokens assumed when neither the request (`max_tokens`) nor the
/// price table (the model's output limit) bounds them.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 8_192;

/// Prices the worst case of a call before it is made.
pub trait CostEstimator: Send + Sync + 'static {
    /// The most a chat call can cost, given its counted prompt; `None` when
    /// the model has no known price (nothing is reserved).
    fn worst_case_chat(&self, req: &ChatRequest, prompt_tokens: u64) -> Option<Usd>;

    /// The most an embeddings call can cost, given its counted input.
    fn worst_case_embedding(&self, req: &EmbeddingRequest, input_tokens: u64) -> Option<Usd>;

    /// The model whose tokenizer counts prompts for `model_group`.
    fn tokenizer_model<'a>(&'a self, model_group: &'a str) -> &'a str {
        model_group
    }
}

/// A [`CostEstimator`] over price-table entries per model group: the worst
/// case is the dearest deployment's (a router may pick any of them, a
/// fallback may move to another group).
///
/// ```
/// use tollgate::limits::{CostEstimator, PriceEstimator};
/// use tollgate::ChatRequest;
///
/// let prices = tollgate::pricing::model_info("openai/gpt-4o-mini").unwrap();
/// let est = PriceEstimator::new().group("fast", "openai/gpt-4o-mini", Some(prices));
/// let req = ChatRequest::from_json(br#"{"model":"fast","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
/// // 10 prompt tokens at $0.15/M plus 100 output tokens at $0.60/M.
/// assert_eq!(est.worst_case_chat(&req, 10).unwrap().to_string(), "0.0000615");
/// ```
#[derive(Clone, Debug, Default)]
pub struct PriceEstimator {
    groups: crate::util::FastMap<String, Group>,
    default_max_output: Option<u64>,
}

#[derive(Clone, Debug, Default)]
struct Group {
    tokenizer: String,
    prices: Vec<Arc<ModelPrice>>,
    /// A deployment without a price: the worst case is unknown.
    unpriced: bool,
}

impl PriceEstimator {
    /// No groups yet.
    pub fn new() -> Self {
        PriceEstimator::default()
    }

    /// Adds a deployment of `group` (`model` is its provider model string,
    /// used for token counting; `price` its price entry, if known).
    pub fn group(mut self, group: &str, model: &str, price: Option<ModelPrice>) -> Self {
        self.add(group, model, price.map(Arc::new));
        self
    }

    /// Adds a deployment of `group` in place.
    pub fn add(&mut self, group: &str, model: &str, price: Option<Arc<ModelPrice>>) {
        let g = self
            .groups
            .entry(group.to_owned())
            .or_insert_with(|| Group {
                tokenizer: model.to_owned(),
                ..Group::default()
            });
        match price.filter(|p| p.is_priced()) {
            Some(p) => g.prices.push(p),
            None => g.unpriced = true,
        }
    }

    /// Makes `group` also cover the prices of `other` (its fallbacks).
    pub fn include_fallback(&mut self, group: &str, other: &str) {
        if let Some(extra) = self.groups.get(other).cloned()
            && let Some(g) = self.groups.get_mut(group)
        {
            g.prices.extend(extra.prices);
        }
    }

    /// Output tokens assumed when nothing bounds them
    /// (default [`DEFAULT_MAX_OUTPUT_TOKENS`]).
    pub fn default_max_output(mut self, tokens: u64) -> Self {
        self.default_max_output = Some(tokens);
        self
    }

    fn worst(&self, model: &str, usage_for: impl Fn(&ModelPrice) -> Usage) -> Option<Usd> {
        let g = self.groups.get(model)?;
        worst_case_of(g.prices.iter().map(|p| &**p), usage_for)
    }
}

/// The dearest cost of a call over `prices` (one per deployment that may
/// serve it), with the usage each would bill (`usage_for`). The prompt is
/// priced both as plain input and as written to a provider cache
/// (Anthropic bills that at 1.25×), whichever is dearer.
pub fn worst_case_of<'a>(
    prices: impl Iterator<Item = &'a ModelPrice>,
    usage_for: impl Fn(&ModelPrice) -> Usage,
) -> Option<Usd> {
    prices
        .filter_map(|p| {
            let usage = usage_for(p);
            let plain = p.cost(&usage, 0.0, None).map(|(a, b)| a + b);
            let prompt = usage.prompt_tokens;
            let written = p
                .cost(&usage.clone().with_cache_write(prompt), 0.0, None)
                .map(|(a, b)| a + b);
            plain.max(written)
        })
        .max()
}

/// The output tokens a chat call may bill: `asked` (the request's
/// `max_tokens`) clamped to the model's `limit`, the limit when nothing was
/// asked, `fallback` when neither is known.
pub fn worst_output(asked: Option<u64>, limit: Option<u64>, fallback: u64) -> u64 {
    match (asked, limit) {
        (Some(a), Some(l)) => a.min(l),
        (Some(a), None) => a,
        (None, Some(l)) => l,
        (None, None) => fallback,
    }
}

impl CostEstimator for PriceEstimator {
    fn worst_case_chat(&self, req: &ChatRequest, prompt_tokens: u64) -> Option<Usd> {
        let asked = req.output_limit().map(u64::from);
        let fallback = self.default_max_output.unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS);
        self.worst(&req.model, |p| {
            Usage::new(
                prompt_tokens,
                worst_output(asked, p.output_limit(), fallback),
            )
        })
    }

    fn worst_case_embedding(&self, req: &EmbeddingRequest, input_tokens: u64) -> Option<Usd> {
        self.worst(&req.model, |_| Usage::new(input_tokens, 0))
    }

    fn tokenizer_model<'a>(&'a self, model_group: &'a str) -> &'a str {
        self.groups
            .get(model_group)
            .map_or(model_group, |g| g.tokenizer.as_str())
    }
}

/// An upper estimate of a chat prompt's tokens: exact for OpenAI models,
/// the BPE estimate plus its documented error bound (35% or 10 tokens) for
/// the rest.
pub fn prompt_upper_bound(tokenizer_model: &str, count: u64) -> u64 {
    if tokens::is_exact(tokenizer_model) {
        count
    } else {
        count + (count * 35).div_ceil(100).max(10)
    }
}

/// Counts a chat prompt for limits: inline when small, on the blocking pool
/// when large.
pub async fn count_prompt(tokenizer_model: &str, body: Arc<ChatRequestBody>) -> u64 {
    let n = if tokens::prompt_bytes(&body) < tokens::INLINE_COUNT_BYTES {
        tokens::count_request(tokenizer_model, &body)
    } else {
        tokens::count_request_async(tokenizer_model, body).await
    };
    prompt_upper_bound(tokenizer_model, n)
}

/// Counts an embeddings input for limits.
pub fn count_embedding_input(tokenizer_model: &str, input: &EmbeddingInput) -> u64 {
    let n = match input {
        EmbeddingInput::Tokens(t) => return t.len() as u64,
        EmbeddingInput::TokenBatches(b) => return b.iter().map(|t| t.len() as u64).sum(),
        other => other
            .texts()
            .iter()
            .map(|t| tokens::completion_fallback(tokenizer_model, t))
            .sum(),
    };
    prompt_upper_bound(tokenizer_model, n)
}
