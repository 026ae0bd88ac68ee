//! Prices, limits and capabilities of models, and the cost of a call.
//!
//! The bundled table is LiteLLM's model price map (`data/model_prices.json`,
//! from the `litellm` 1.110.2 package on PyPI, MIT licensed; see
//! `data/SOURCE.md`), pruned to what tollgate uses with every price kept as
//! exact decimal text. It is parsed once, on first use. Nothing is ever
//! fetched from the network.
//!
//! Look-up follows LiteLLM: bare names for OpenAI and Anthropic models
//! (`gpt-4o`, `claude-sonnet-4-6`), `provider/model` keys for others
//! (`mistral/mistral-large-latest`), the provider prefix stripped and checked
//! against the entry's provider otherwise (`vertex_ai/gemini-2.0-flash`),
//! Bedrock's cross-region prefixes (`us.`, `eu.`, …) removed.
//!
//! ```
//! use tollgate::pricing;
//! use tollgate::Usage;
//!
//! let info = pricing::model_info("gpt-4o").unwrap();
//! assert_eq!(info.max_output_tokens, Some(16_384));
//! // 1,000 prompt tokens (400 of them cached) and 200 completion tokens:
//! let usage = Usage::new(1_000, 200).with_cached(400);
//! let (prompt, completion) = pricing::cost_per_token("openai/gpt-4o", &usage).unwrap();
//! // 600 × $2.50/M + 400 × $1.25/M, and 200 × $10/M
//! assert_eq!(prompt.to_string(), "0.002");
//! assert_eq!(completion.to_string(), "0.002");
//! ```

mod money;

pub use money::{ParseUsdError, Usd};

use crate::types::{ChatCompletion, Usage};
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

static BUNDLED_JSON: &str = include_str!("../../data/model_prices.json");

/// A set of per-token prices (one tier, or one service tier).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TokenPrices {
    /// Per input token.
    pub input: Option<Usd>,
    /// Per output token.
    pub output: Option<Usd>,
    /// Per input token read from the provider's prompt cache.
    pub cache_read: Option<Usd>,
    /// Per input token written to the provider's prompt cache.
    pub cache_write: Option<Usd>,
}

impl TokenPrices {
    fn overlay(&self, over: &TokenPrices) -> TokenPrices {
        TokenPrices {
            input: over.input.or(self.input),
            output: over.output.or(self.output),
            cache_read: over.cache_read.or(self.cache_read),
            cache_write: over.cache_write.or(self.cache_write),
        }
    }

    fn is_empty(&self) -> bool {
        self.input.is_none()
            && self.output.is_none()
            && self.cache_read.is_none()
            && self.cache_write.is_none()
    }
}

/// What a model can do (the `supports_*` flags of the table).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Tool / function calling.
    pub function_calling: bool,
    /// Several tool calls in one turn.
    pub parallel_function_calling: bool,
    /// `tool_choice`.
    pub tool_choice: bool,
    /// Image input.
    pub vision: bool,
    /// Reasoning / thinking.
    pub reasoning: bool,
    /// Provider prompt caching.
    pub prompt_caching: bool,
    /// `response_format` with a JSON schema.
    pub response_schema: bool,
    /// System messages.
    pub system_messages: bool,
    /// PDF input.
    pub pdf_input: bool,
    /// Audio input.
    pub audio_input: bool,
    /// Audio output.
    pub audio_output: bool,
    /// Web search.
    pub web_search: bool,
}

/// Prices, limits and capabilities of one model.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ModelPrice {
    /// The table key it was found under.
    pub key: String,
    /// LiteLLM's provider name for the entry.
    pub provider: Option<String>,
    /// `chat`, `embedding`, `completion`, `image_generation`, …
    pub mode: Option<String>,
    /// Context window.
    pub max_input_tokens: Option<u64>,
    /// Longest answer.
    pub max_output_tokens: Option<u64>,
    /// Legacy limit (some entries only have this).
    pub max_tokens: Option<u64>,
    /// Standard per-token prices.
    pub tokens: TokenPrices,
    /// Per reasoning token, when priced apart from output.
    pub output_reasoning: Option<Usd>,
    /// Per audio input token.
    pub input_audio: Option<Usd>,
    /// Per audio output token.
    pub output_audio: Option<Usd>,
    /// Per second of request time (input side).
    pub input_per_second: Option<Usd>,
    /// Per second of request time (output side).
    pub output_per_second: Option<Usd>,
    /// Prices that apply when the prompt is longer than the threshold (sorted by threshold).
    pub tiers: Vec<(u64, TokenPrices)>,
    /// `service_tier: priority` prices.
    pub priority: TokenPrices,
    /// `service_tier: flex` prices.
    pub flex: TokenPrices,
    /// Capability flags.
    pub supports: Capabilities,
}

/// The usual name for [`ModelPrice`] when it is read for its limits and flags.
pub type ModelInfo = ModelPrice;

fn price_of(v: &Value) -> Option<Usd> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

fn uint_of(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// Parses `above_200k_tokens` / `above_1m_tokens` into a token count.
fn tier_threshold(suffix: &str) -> Option<u64> {
    let n = suffix.strip_prefix("above_")?.strip_suffix("_tokens")?;
    let (digits, mult) = if let Some(d) = n.strip_suffix('k') {
        (d, 1_000)
    } else if let Some(d) = n.strip_suffix('m') {
        (d, 1_000_000)
    } else {
        (n, 1)
    };
    digits.parse::<u64>().ok().map(|v| v * mult)
}

impl ModelPrice {
    /// Builds an entry from one JSON object of LiteLLM's table format.
    pub fn from_json(key: &str, v: &serde_json::Map<String, Value>) -> ModelPrice {
        let mut m = ModelPrice {
            key: key.to_owned(),
            ..Default::default()
        };
        let mut tiers: HashMap<u64, TokenPrices> = HashMap::new();
        for (field, value) in v {
            let f = field.as_str();
            match f {
                "litellm_provider" => m.provider = value.as_str().map(str::to_owned),
                "mode" => m.mode = value.as_str().map(str::to_owned),
                "max_input_tokens" => m.max_input_tokens = uint_of(value),
                "max_output_tokens" => m.max_output_tokens = uint_of(value),
                "max_tokens" => m.max_tokens = uint_of(value),
                "input_cost_per_token" => m.tokens.input = price_of(value),
                "output_cost_per_token" => m.tokens.output = price_of(value),
                "cache_read_input_token_cost" => m.tokens.cache_read = price_of(value),
                "cache_creation_input_token_cost" => m.tokens.cache_write = price_of(value),
                "output_cost_per_reasoning_token" => m.output_reasoning = price_of(value),
                "input_cost_per_audio_token" => m.input_audio = price_of(value),
                "output_cost_per_audio_token" => m.output_audio = price_of(value),
                "input_cost_per_second" => m.input_per_second = price_of(value),
                "output_cost_per_second" => m.output_per_second = price_of(value),
                "input_cost_per_token_priority" => m.priority.input = price_of(value),
                "output_cost_per_token_priority" => m.priority.output = price_of(value),
                "cache_read_input_token_cost_priority" => m.priority.cache_read = price_of(value),
                "input_cost_per_token_flex" => m.flex.input = price_of(value),
                "output_cost_per_token_flex" => m.flex.output = price_of(value),
                "cache_read_input_token_cost_flex" => m.flex.cache_read = price_of(value),
                "supports_function_calling" => {
                    m.supports.function_calling = value == &Value::Bool(true)
                }
                "supports_parallel_function_calling" => {
                    m.supports.parallel_function_calling = value == &Value::Bool(true)
                }
                "supports_tool_choice" => m.supports.tool_choice = value == &Value::Bool(true),
                "supports_vision" => m.supports.vision = value == &Value::Bool(true),
                "supports_reasoning" => m.supports.reasoning = value == &Value::Bool(true),
                "supports_prompt_caching" => {
                    m.supports.prompt_caching = value == &Value::Bool(true)
                }
                "supports_response_schema" => {
                    m.supports.response_schema = value == &Value::Bool(true)
                }
                "supports_system_messages" => {
                    m.supports.system_messages = value == &Value::Bool(true)
                }
                "supports_pdf_input" => m.supports.pdf_input = value == &Value::Bool(true),
                "supports_audio_input" => m.supports.audio_input = value == &Value::Bool(true),
                "supports_audio_output" => m.supports.audio_output = value == &Value::Bool(true),
                "supports_web_search" => m.supports.web_search = value == &Value::Bool(true),
                _ => {
                    // Context tiers: `input_cost_per_token_above_200k_tokens` and friends.
                    let tiered = [
                        ("input_cost_per_token_", 0),
                        ("output_cost_per_token_", 1),
                        ("cache_read_input_token_cost_", 2),
                        ("cache_creation_input_token_cost_", 3),
                    ];
                    for (prefix, slot) in tiered {
                        if let Some(threshold) = f.strip_prefix(prefix).and_then(tier_threshold) {
                            let t = tiers.entry(threshold).or_default();
                            let p = price_of(value);
                            match slot {
                                0 => t.input = p,
                                1 => t.output = p,
                                2 => t.cache_read = p,
                                _ => t.cache_write = p,
                            }
                        }
                    }
                }
            }
        }
        let mut tiers: Vec<(u64, TokenPrices)> = tiers.into_iter().collect();
        tiers.sort_by_key(|(t, _)| *t);
        m.tiers = tiers;
        m
    }

    /// The longest answer the model can give.
    pub fn output_limit(&self) -> Option<u64> {
        self.max_output_tokens.or(self.max_tokens)
    }

    /// Whether the table knows any price for this model.
    pub fn is_priced(&self) -> bool {
        !self.tokens.is_empty()
            || self.input_per_second.is_some()
            || self.output_per_second.is_some()
    }

    /// This entry with every price set in `over` replacing its own.
    pub fn overlay(&self, over: &ModelPrice) -> ModelPrice {
        let mut m = self.clone();
        m.tokens = self.tokens.overlay(&over.tokens);
        m.output_reasoning = over.output_reasoning.or(m.output_reasoning);
        m.input_audio = over.input_audio.or(m.input_audio);
        m.output_audio = over.output_audio.or(m.output_audio);
        m.input_per_second = over.input_per_second.or(m.input_per_second);
        m.output_per_second = over.output_per_second.or(m.output_per_second);
        m.max_input_tokens = over.max_input_tokens.or(m.max_input_tokens);
        m.max_output_tokens = over.max_output_tokens.or(m.max_output_tokens);
        if !over.tiers.is_empty() {
            m.tiers.clone_from(&over.tiers);
        }
        if !over.priority.is_empty() {
            m.priority = m.priority.overlay(&over.priority);
        }
        if !over.flex.is_empty() {
            m.flex = m.flex.overlay(&over.flex);
        }
        m
    }

    /// The cost of `usage` as (prompt, completion), or `None` if the model has no price.
    ///
    /// `seconds` is the request's duration (for per-second pricing);
    /// `service_tier` picks `priority` / `flex` prices when the table has them.
    pub fn cost(
        &self,
        usage: &Usage,
        seconds: f64,
        service_tier: Option<&str>,
    ) -> Option<(Usd, Usd)> {
        if !self.is_priced() {
            return None;
        }
        let prompt = usage.prompt_tokens;
        // Context tier: the highest threshold the prompt exceeds applies to the whole request.
        let mut prices = self.tokens.clone();
        if let Some((_, tier)) = self.tiers.iter().rev().find(|(t, _)| prompt > *t) {
            prices = prices.overlay(tier);
        }
        match service_tier {
            Some("priority") if !self.priority.is_empty() => {
                prices = prices.overlay(&self.priority)
            }
            Some("flex") if !self.flex.is_empty() => prices = prices.overlay(&self.flex),
            _ => {}
        }
        let cached = usage.cached_tokens().min(prompt);
        let written = usage.cache_write_tokens().min(prompt - cached);
        let audio_in = usage
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.audio_tokens)
            .unwrap_or(0)
            .min(prompt - cached - written);
        let plain = prompt - cached - written - audio_in;

        let mut prompt_cost = Usd::ZERO;
        let mut completion_cost = Usd::ZERO;
        if let Some(input) = prices.input {
            prompt_cost = input * plain
                + prices.cache_read.unwrap_or(input) * cached
                + prices.cache_write.unwrap_or(input) * written
                + self.input_audio.unwrap_or(input) * audio_in;
        } else if let Some(per_s) = self.input_per_second {
            prompt_cost = per_s.times_f64(seconds);
        }
        let completion = usage.completion_tokens;
        let reasoning = usage.reasoning_tokens().min(completion);
        let audio_out = usage
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.audio_tokens)
            .unwrap_or(0)
            .min(completion - reasoning);
        if let Some(output) = prices.output {
            let text = completion - reasoning - audio_out;
            completion_cost = output * text
                + self.output_reasoning.unwrap_or(output) * reasoning
                + self.output_audio.unwrap_or(output) * audio_out;
        } else if let Some(per_s) = self.output_per_second {
            completion_cost = per_s.times_f64(seconds);
        }
        Some((prompt_cost, completion_cost))
    }
}

/// A table of model prices: the bundled one, plus whatever was added.
#[derive(Clone, Debug, Default)]
pub struct PriceTable {
    entries: HashMap<String, Arc<ModelPrice>>,
}

/// Known provider names of the table for a LiteLLM provider prefix.
fn provider_matches(prefix: &str, entry_provider: Option<&str>) -> bool {
    let Some(p) = entry_provider else {
        return false;
    };
    match prefix {
        // The mock provider is priced as the model it stands in for.
        "mock" => true,
        "openai" | "text-completion-openai" => p == "openai" || p == "text-completion-openai",
        "vertex_ai" | "vertex_ai_beta" => p.starts_with("vertex_ai"),
        "bedrock" | "bedrock_converse" => p == "bedrock" || p == "bedrock_converse",
        "cohere" | "cohere_chat" => p == "cohere" || p == "cohere_chat",
        other => p == other,
    }
}

const BEDROCK_REGION_PREFIXES: &[&str] =
    &["us.", "eu.", "apac.", "jp.", "au.", "global.", "us-gov."];

impl PriceTable {
    /// The bundled table (parsed once per process; this returns a clone of it).
    pub fn bundled() -> PriceTable {
        bundled().clone()
    }

    /// An empty table.
    pub fn empty() -> PriceTable {
        PriceTable::default()
    }

    /// Parses a table in LiteLLM's JSON format (a map of model → entry).
    pub fn from_json(text: &str) -> Result<PriceTable, serde_json::Error> {
        let map: serde_json::Map<String, Value> = serde_json::from_str(text)?;
        let mut t = PriceTable::default();
        for (k, v) in map {
            if let Value::Object(o) = v
                && k != "sample_spec"
            {
                t.entries
                    .insert(k.clone(), Arc::new(ModelPrice::from_json(&k, &o)));
            }
        }
        Ok(t)
    }

    /// Adds or replaces entries from `other` (a user price file over the bundled table).
    pub fn merge(&mut self, other: PriceTable) {
        self.entries.extend(other.entries);
    }

    /// Adds or replaces one entry.
    pub fn register(&mut self, name: &str, price: ModelPrice) {
        let mut price = price;
        price.key = name.to_owned();
        self.entries.insert(name.to_owned(), Arc::new(price));
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry under exactly `key`.
    pub fn get(&self, key: &str) -> Option<&Arc<ModelPrice>> {
        self.entries.get(key)
    }

    /// Finds a model by a LiteLLM model string (see the [module docs](self)).
    pub fn lookup(&self, model: &str) -> Option<&Arc<ModelPrice>> {
        if let Some(e) = self.entries.get(model) {
            return Some(e);
        }
        let (prefix, rest) = model.split_once('/')?;
        // Bedrock: route prefixes (`converse/`, `invoke/`) and ARNs (the
        // inference profile or model id is the last path segment).
        let rest = if prefix.starts_with("bedrock") {
            let r = rest
                .strip_prefix("converse/")
                .or_else(|| rest.strip_prefix("invoke/"))
                .unwrap_or(rest);
            if r.starts_with("arn:") {
                r.rsplit('/').next().unwrap_or(r)
            } else {
                r
            }
        } else {
            rest
        };
        let candidates = std::iter::once(rest).chain(
            BEDROCK_REGION_PREFIXES
                .iter()
                .filter_map(move |r| rest.strip_prefix(r)),
        );
        for name in candidates {
            if let Some(e) = self.entries.get(name)
                && provider_matches(prefix, e.provider.as_deref())
            {
                return Some(e);
            }
            let keyed = format!("{prefix}/{name}");
            if let Some(e) = self.entries.get(&keyed) {
                return Some(e);
            }
        }
        None
    }
}

fn bundled() -> &'static PriceTable {
    static TABLE: OnceLock<PriceTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        PriceTable::from_json(BUNDLED_JSON).expect("the bundled price table is valid JSON")
    })
}

/// Runtime additions made with [`register_model`].
fn registered() -> &'static RwLock<PriceTable> {
    static EXTRA: OnceLock<RwLock<PriceTable>> = OnceLock::new();
    EXTRA.get_or_init(|| RwLock::new(PriceTable::empty()))
}

/// Adds a model (or replaces its prices) for the free functions of this module,
/// like LiteLLM's `register_model`.
///
/// ```
/// use tollgate::pricing::{self, ModelPrice, TokenPrices};
///
/// pricing::register_model("my-finetune", ModelPrice {
///     tokens: TokenPrices { input: "0.000001".parse().ok(), output: "0.000002".parse().ok(), ..Default::default() },
///     ..Default::default()
/// });
/// let (p, c) = pricing::cost_per_token("my-finetune", &tollgate::Usage::new(10, 5)).unwrap();
/// assert_eq!((p + c).to_string(), "0.00002");
/// ```
pub fn register_model(name: &str, price: ModelPrice) {
    let mut t = registered()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    t.register(name, price);
}

/// Prices, limits and capabilities of a model, from runtime registrations or
/// the bundled table.
pub fn model_info(model: &str) -> Option<ModelInfo> {
    {
        let extra = registered()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = extra.lookup(model) {
            return Some((**e).clone());
        }
    }
    bundled().lookup(model).map(|e| (**e).clone())
}

/// The cost of `usage` on `model` as (prompt, completion), like LiteLLM's
/// `cost_per_token`. `None` when the model has no known price.
pub fn cost_per_token(model: &str, usage: &Usage) -> Option<(Usd, Usd)> {
    let info = model_info(model);
    match info {
        Some(i) => i.cost(usage, 0.0, None),
        None => {
            warn_unpriced(model);
            None
        }
    }
}

/// The cost of a completion from its `model` and `usage`, like LiteLLM's
/// `completion_cost`. `None` when the model is unknown or usage is missing.
/// (A routed response's `model` is the client's name for it; read the cost the
/// cost layer attached to the response instead.)
pub fn completion_cost(completion: &ChatCompletion) -> Option<Usd> {
    let usage = completion.usage.as_ref()?;
    let info = model_info(&completion.model)?;
    info.cost(usage, 0.0, completion.service_tier.as_deref())
        .map(|(p, c)| p + c)
}

/// Logs once per model that its price is unknown.
pub(crate) fn warn_unpriced(model: &str) {
    static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let set = WARNED.get_or_init(|| Mutex::new(HashSet::new()));
    let mut set = set
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if set.len() < 10_000 && set.insert(model.to_owned()) {
        tracing::warn!(
            model,
            "no price is known for this model: its cost is reported as unknown"
        );
    }
}

#[cfg(test)]
mod tests;
