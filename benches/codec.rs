#![allow(missing_docs)] // criterion_group! generates an undocumented function
//! The codec work on every request: parsing a chat request (typical, 100 KB,
//! 1 MB), serialising a completion, and decoding a recorded OpenAI stream
//! chunk by chunk (SSE framing + chunk JSON).
//!
//!     cargo bench --bench codec

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate::sse::SseDecoder;
use tollgate::{ChatChunk, ChatCompletion, ChatRequest};

fn fixture(path: &str) -> Vec<u8> {
    let p = format!(
        "{}/tests/fixtures/protocols/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// A chat request whose user message is `size` bytes of text, with the
/// usual parameters and one tool.
fn request_body(size: usize) -> Vec<u8> {
    let text: String = "The quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(size)
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": text}
        ],
        "temperature": 0.2, "max_tokens": 256, "stream": false, "user": "customer-42",
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "metadata": {"tags": ["bench"]}
    }))
    .unwrap()
}

fn completion(size: usize) -> ChatCompletion {
    let mut c: ChatCompletion =
        serde_json::from_slice(&fixture("openai/chat_text.resp.json")).unwrap();
    let text: String = "token ".chars().cycle().take(size).collect();
    c.choices[0].message.content = Some(text);
    c
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse chat request");
    for (name, size) in [
        ("typical", 200),
        ("100 KB", 100 * 1024),
        ("1 MB", 1024 * 1024),
    ] {
        let body = request_body(size);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| black_box(ChatRequest::from_json(black_box(body)).unwrap()))
        });
    }
    g.finish();
}

fn serialise(c: &mut Criterion) {
    let mut g = c.benchmark_group("serialise completion");
    for (name, size) in [("typical", 200), ("100 KB", 100 * 1024)] {
        let done = completion(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &done, |b, done| {
            b.iter(|| black_box(serde_json::to_vec(black_box(done)).unwrap()))
        });
    }
    g.finish();
}

fn stream(c: &mut Criterion) {
    let sse = fixture("openai/chat_stream_text.sse.txt");
    let events = {
        let mut d = SseDecoder::default();
        d.push(&sse);
        let mut n = 0u64;
        while d.next_event().unwrap().is_some() {
            n += 1;
        }
        n
    };
    let mut g = c.benchmark_group("openai stream");
    g.throughput(Throughput::Elements(events));
    g.bench_function("SSE framing + chunk JSON, per recorded stream", |b| {
        b.iter(|| {
            let mut d = SseDecoder::default();
            d.push(black_box(&sse));
            let mut chunks = 0;
            while let Some(ev) = d.next_event().unwrap() {
                if ev.data != "[DONE]" {
                    let chunk: ChatChunk = serde_json::from_str(&ev.data).unwrap();
                    chunks += chunk.choices.len();
                }
            }
            black_box(chunks)
        })
    });
    g.finish();
}

/// Each provider's recorded stream, translated to OpenAI chunks by its
/// decoder (framing, parsing, translation), fed in 512-byte network reads.
/// Throughput is in output chunks: the time per element is the cost of one
/// translated chunk.
fn provider_streams(c: &mut Criterion) {
    use std::collections::VecDeque;
    use tollgate::provider::anthropic::AnthropicProtocol;
    use tollgate::provider::bedrock::BedrockProtocol;
    use tollgate::provider::cohere::CohereProtocol;
    use tollgate::provider::mistral::MistralProtocol;
    use tollgate::provider::{
        AnthropicConfig, BedrockConfig, CohereConfig, GeminiConfig, GeminiProtocol, MistralConfig,
        OpenAiConfig, OpenAiProtocol, Protocol,
    };
    let req = ChatRequest::from_json(
        br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .unwrap();
    let cases: Vec<(&str, Box<dyn Protocol>, Vec<u8>)> = vec![
        (
            "openai",
            Box::new(OpenAiProtocol::new(OpenAiConfig::new("gpt-4o")).unwrap()),
            fixture("openai/chat_stream_tool_call.sse.txt"),
        ),
        (
            "anthropic",
            Box::new(AnthropicProtocol::new(AnthropicConfig::new("claude-haiku-4-5")).unwrap()),
            fixture("anthropic/stream_text_and_tool_use.sse.txt"),
        ),
        (
            "gemini",
            Box::new(GeminiProtocol::new(GeminiConfig::new("gemini-2.5-flash")).unwrap()),
            fixture("gemini/stream_text.sse.txt"),
        ),
        (
            "bedrock (event-stream)",
            Box::new(
                BedrockProtocol::new(BedrockConfig::new(
                    "anthropic.claude-3-5-haiku-20241022-v1:0",
                    "us-east-1",
                ))
                .unwrap(),
            ),
            fixture("bedrock/converse_stream_claude_text.eventstream.bin"),
        ),
        (
            "mistral",
            Box::new(MistralProtocol::new(MistralConfig::new("magistral-medium-latest")).unwrap()),
            fixture("mistral/stream_thinking.sse.txt"),
        ),
        (
            "cohere",
            Box::new(CohereProtocol::new(CohereConfig::new("command-a-03-2025")).unwrap()),
            fixture("cohere/cohere-tool-call.sse.derived.txt"),
        ),
    ];
    let mut g = c.benchmark_group("provider stream translation");
    for (name, protocol, body) in &cases {
        let run = || {
            let mut decoder = protocol.stream_decoder(&req);
            let mut out = VecDeque::new();
            let mut chunks = 0u64;
            for piece in body.chunks(512) {
                decoder.feed(piece, &mut out).unwrap();
                chunks += out.len() as u64;
                out.clear();
            }
            decoder.finish(&mut out).unwrap();
            chunks + out.len() as u64
        };
        g.throughput(Throughput::Elements(run().max(1)));
        g.bench_function(*name, |b| b.iter(|| black_box(run())));
    }
    g.finish();
}

criterion_group!(benches, parse, serialise, stream, provider_streams);
criterion_main!(benches);
