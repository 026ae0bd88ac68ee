//! Costs of recorded usage, checked against values worked out by hand from
//! the price table (the table's prices are quoted in each comment).

use super::*;

fn usd(s: &str) -> Usd {
    s.parse().unwrap()
}

fn cost(model: &str, usage: &Usage) -> (String, String) {
    let (p, c) = cost_per_token(model, usage).unwrap_or_else(|| panic!("no price for {model}"));
    (p.to_string(), c.to_string())
}

#[test]
fn openai_plain_usage_from_the_recorded_exchange() {
    // openai/chat_text.http.txt: gpt-3.5-turbo-0125, prompt 13, completion 31.
    // $0.50/M in, $1.50/M out: 13 × 0.0000005 = 0.0000065; 31 × 0.0000015 = 0.0000465.
    assert_eq!(
        cost("openai/gpt-3.5-turbo-0125", &Usage::new(13, 31)),
        ("0.0000065".into(), "0.0000465".into())
    );
    // Bare OpenAI names work too.
    assert_eq!(
        cost("gpt-3.5-turbo-0125", &Usage::new(13, 31)).1,
        "0.0000465"
    );
}

#[test]
fn openai_cached_tokens_are_cheaper() {
    // gpt-4o-2024-08-06: in $2.50/M, cached read $1.25/M, out $10/M.
    // 2006 prompt of which 1920 cached: 86 × 0.0000025 + 1920 × 0.00000125 = 0.000215 + 0.0024.
    let u = Usage::new(2006, 300).with_cached(1920);
    assert_eq!(
        cost("openai/gpt-4o-2024-08-06", &u),
        ("0.002615".into(), "0.003".into())
    );
}

#[test]
fn anthropic_cache_read_from_the_recorded_usage() {
    // anthropic/prompt_cache_hit.resp.json: claude-sonnet-4-5-20250929, input_tokens 3,
    // cache_read_input_tokens 1111, output 406 → prompt 1114 (1111 cached).
    // in $3/M, cache read $0.30/M, out $15/M: 3 × 0.000003 + 1111 × 0.0000003 = 0.000009 + 0.0003333.
    let u = Usage::new(1114, 406).with_cached(1111);
    assert_eq!(
        cost("anthropic/claude-sonnet-4-5-20250929", &u),
        ("0.0003423".into(), "0.00609".into())
    );
}

#[test]
fn bedrock_cache_write_and_read_from_the_recorded_usage() {
    // bedrock/converse_prompt_cache_write.resp.json on us.anthropic.claude-sonnet-4-5-20250929-v1:0:
    // inputTokens 2, cacheWriteInputTokens 1322, outputTokens 5 → prompt 1324 (1322 written).
    // us. prices: in $3.30/M, cache write $4.125/M, cache read $0.33/M, out $16.50/M.
    // 2 × 0.0000033 + 1322 × 0.000004125 = 0.0000066 + 0.00545325.
    let model = "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0";
    let write = Usage::new(1324, 5).with_cache_write(1322);
    assert_eq!(
        cost(model, &write),
        ("0.00545985".into(), "0.0000825".into())
    );
    // The read: 2 × 0.0000033 + 1322 × 0.00000033 = 0.0000066 + 0.00043626.
    let read = Usage::new(1324, 5).with_cached(1322);
    assert_eq!(
        cost(model, &read),
        ("0.00044286".into(), "0.0000825".into())
    );
    // Without the region prefix the base (no uplift) price applies: 100,000 × $3/M.
    let base = "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0";
    assert_eq!(cost(base, &Usage::new(100_000, 0)).0, "0.3");
}

#[test]
fn gemini_thinking_tokens_from_the_recorded_usage() {
    // gemini/generate_text.resp.json (gemini-2.5-flash): prompt 9, candidates 9, thoughts 34
    // → completion 43 of which 34 reasoning. in $0.30/M, out and reasoning $2.50/M.
    let u = Usage::new(9, 43).with_reasoning(34);
    assert_eq!(
        cost("gemini/gemini-2.5-flash", &u),
        ("0.0000027".into(), "0.0001075".into())
    );
}

#[test]
fn reasoning_tokens_priced_apart() {
    // dashscope/qwen-turbo: out $0.20/M, reasoning $0.50/M, in $0.05/M.
    // 100 completion (60 reasoning): 40 × 0.0000002 + 60 × 0.0000005 = 0.000008 + 0.00003.
    let u = Usage::new(1000, 100).with_reasoning(60);
    assert_eq!(
        cost("dashscope/qwen-turbo", &u),
        ("0.00005".into(), "0.000038".into())
    );
}

#[test]
fn long_context_tier_applies_to_the_whole_request() {
    // gemini-2.5-pro (vertex): in $1.25/M, out $10/M; above 200k prompt tokens: in $2.50/M, out $15/M.
    let short = Usage::new(200_000, 1000);
    assert_eq!(
        cost("vertex_ai/gemini-2.5-pro", &short),
        ("0.25".into(), "0.01".into())
    );
    let long = Usage::new(250_000, 1000);
    assert_eq!(
        cost("vertex_ai/gemini-2.5-pro", &long),
        ("0.625".into(), "0.015".into())
    );
}

#[test]
fn per_second_pricing() {
    // assemblyai/best: $0.00003333 per second of input.
    let m = model_info("assemblyai/best").unwrap();
    let (p, c) = m.cost(&Usage::default(), 10.0, None).unwrap();
    assert_eq!(p, usd("0.0003333"));
    assert_eq!(c, Usd::ZERO);
}

#[test]
fn embeddings_and_service_tiers() {
    // text-embedding-3-small: $0.02/M.
    assert_eq!(
        cost("text-embedding-3-small", &Usage::new(1000, 0)).0,
        "0.00002"
    );
    // gpt-4o priority: in $4.25/M, out $17/M.
    let m = model_info("gpt-4o").unwrap();
    let (p, c) = m
        .cost(&Usage::new(1_000_000, 1_000_000), 0.0, Some("priority"))
        .unwrap();
    assert_eq!((p.to_string(), c.to_string()), ("4.25".into(), "17".into()));
}

#[test]
fn unknown_models_have_no_price() {
    assert!(cost_per_token("hosted_vllm/my-own-model", &Usage::new(1, 1)).is_none());
    assert!(model_info("not-a-model").is_none());
    // A provider prefix must agree with the entry's provider.
    assert!(PriceTable::bundled().lookup("groq/gpt-4o").is_none());
}

#[test]
fn limits_and_flags() {
    let c = model_info("claude-sonnet-4-5-20250929").unwrap();
    assert_eq!(c.provider.as_deref(), Some("anthropic"));
    assert_eq!(c.output_limit(), Some(64_000));
    assert!(c.supports.prompt_caching && c.supports.vision && c.supports.function_calling);
    assert!(PriceTable::bundled().len() > 4000);
}

#[test]
fn overrides_and_user_tables() {
    let base = model_info("gpt-4o").unwrap();
    let over = ModelPrice {
        tokens: TokenPrices {
            input: Some(usd("0.000001")),
            ..Default::default()
        },
        ..Default::default()
    };
    let m = base.overlay(&over);
    assert_eq!(m.tokens.input, Some(usd("0.000001")));
    assert_eq!(m.tokens.output, base.tokens.output, "unset prices are kept");

    let mut t = PriceTable::bundled();
    t.merge(
        PriceTable::from_json(r#"{"my-model":{"input_cost_per_token":3e-06,"output_cost_per_token":"0.00001","litellm_provider":"openai"}}"#)
            .unwrap(),
    );
    let mine = t.lookup("openai/my-model").unwrap();
    assert_eq!(mine.tokens.input, Some(usd("0.000003")));
}

#[test]
fn a_million_summed_costs_are_exact() {
    // 1,000,000 requests of 1,234 prompt + 567 completion tokens on gpt-4o-mini
    // ($0.15/M in, $0.60/M out) cost 1,234 × 0.00000015 + 567 × 0.0000006
    // = 0.0001851 + 0.0003402 = 0.0005253 each, so 525.3 in total — exactly.
    let m = model_info("gpt-4o-mini").unwrap();
    let u = Usage::new(1234, 567);
    let mut total = Usd::ZERO;
    for _ in 0..1_000_000 {
        let (p, c) = m.cost(&u, 0.0, None).unwrap();
        total += p + c;
    }
    assert_eq!(total.to_string(), "525.3");
    // The same sum in floating point drifts.
    let f: f64 = (0..1_000_000).map(|_| 0.0005253f64).sum();
    assert_ne!(f, 525.3);
}
