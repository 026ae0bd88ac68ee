//! Stream translation against every recorded Anthropic transcript, whole,
//! one byte at a time, and split at random points.

use super::*;
use crate::provider::StreamDecoder;
use crate::provider::sse_stream::SseStreamDecoder;
use crate::stream::ChunkAggregator;
use crate::types::{ChatCompletion, Role};
use proptest::prelude::*;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/protocols/anthropic/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The SSE body of the recorded streaming exchange.
fn http_sse_body(path: &str) -> Vec<u8> {
    let text = String::from_utf8(fixture(path)).unwrap();
    let resp = text.split("<<< RESPONSE").nth(1).unwrap();
    let body = resp
        .trim_start()
        .lines()
        .skip_while(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    format!("{}\n\n", body.trim()).into_bytes()
}

const TRANSCRIPTS: &[&str] = &[
    "stream_tool_use.sse.txt",
    "stream_text_after_tool.sse.txt",
    "stream_text_and_tool_use.sse.txt",
    "stream_max_tokens_partial_json.sse.txt",
    "stream_refusal.sse.txt",
    "stream_thinking.sse.txt",
    "stream_error_event.sse.txt",
];

fn transcript(name: &str) -> Vec<u8> {
    if name == "stream_text.http.txt" {
        http_sse_body(name)
    } else {
        fixture(name)
    }
}

fn decode_pieces(pieces: &[&[u8]], native: bool) -> (Vec<ChatChunk>, Result<(), Error>) {
    let mut d = SseStreamDecoder::new(Translator::new(
        vec![Secret::new("sk-ant-key-0123456789")],
        native,
        false,
    ));
    let mut out = VecDeque::new();
    let mut result = Ok(());
    for p in pieces {
        if d.is_done() {
            break;
        }
        if let Err(e) = d.feed(p, &mut out) {
            result = Err(e);
            break;
        }
    }
    if result.is_ok() {
        result = d.finish(&mut out);
    }
    let chunks = out
        .into_iter()
        .map(|mut c| {
            c.created = 0;
            c
        })
        .collect();
    (chunks, result)
}

fn decode(bytes: &[u8]) -> (Vec<ChatChunk>, Result<(), Error>) {
    decode_pieces(&[bytes], false)
}

/// Every chunk has the same id, model and created; the first is the role
/// chunk; exactly one chunk finishes; the last one is the usage chunk.
fn check_shape(chunks: &[ChatChunk], id: &str, model: &str) {
    assert!(chunks.len() >= 3, "{chunks:?}");
    for c in chunks {
        assert_eq!(c.id, id);
        assert_eq!(c.model, model);
        assert_eq!(c.created, chunks[0].created);
        assert_eq!(c.object, "chat.completion.chunk");
    }
    assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
    let finishing = chunks
        .iter()
        .filter(|c| c.choices.iter().any(|ch| ch.finish_reason.is_some()))
        .count();
    assert_eq!(finishing, 1);
    let last = chunks.last().unwrap();
    assert!(last.is_usage_only(), "{last:?}");
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c.usage.is_none()));
}

fn aggregate(chunks: &[ChatChunk]) -> ChatCompletion {
    let mut agg = ChunkAggregator::default();
    for c in chunks {
        agg.push(c);
    }
    agg.finish()
}

fn usage(c: &ChatCompletion) -> (u64, u64, u64, u64) {
    let u = c.usage.as_ref().unwrap();
    (
        u.prompt_tokens,
        u.completion_tokens,
        u.total_tokens,
        u.cached_tokens(),
    )
}

#[test]
fn text_stream_with_ping_between_deltas() {
    let (chunks, r) = decode(&http_sse_body("stream_text.http.txt"));
    r.unwrap();
    check_shape(
        &chunks,
        "msg_01Ju7oPaDmjgrhWq8gNP4AUj",
        "claude-3-opus-20240229",
    );
    let c = aggregate(&chunks);
    assert_eq!(c.text(), Some("1\n2\n3\n4\n5"));
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    // input 15 from message_start; output 13 replaces the 3 of message_start.
    assert_eq!(usage(&c), (15, 13, 28, 0));
}

#[test]
fn tool_use_stream() {
    let (chunks, r) = decode(&fixture("stream_tool_use.sse.txt"));
    r.unwrap();
    check_shape(
        &chunks,
        "msg_01AusY9WEbCaj3N7Tv5J4YjH",
        "claude-haiku-4-5-20251001",
    );
    // The first tool delta carries index, id, type, name and empty arguments.
    let first_tool = chunks
        .iter()
        .find_map(|c| c.choices[0].delta.tool_calls.as_ref())
        .unwrap();
    assert_eq!(
        first_tool[0],
        ToolCallDelta::start(0, "toolu_018acGYLtfR52q9yDbWaEdQZ", "get_weather")
    );
    // Later deltas: only index and a fragment (the empty first fragment is skipped).
    let fragments: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.tool_calls.as_ref())
        .skip(1)
        .map(|t| {
            assert_eq!(t[0].index, 0);
            assert!(t[0].id.is_none() && t[0].kind.is_none());
            assert!(t[0].function.as_ref().unwrap().name.is_none());
            t[0].function
                .as_ref()
                .unwrap()
                .arguments
                .as_deref()
                .unwrap()
        })
        .collect();
    assert_eq!(
        fragments,
        vec![
            "{\"",
            "loca",
            "tio",
            "n\": ",
            "\"San Fr",
            "anci",
            "sco, CA\"",
            ", \"",
            "units\": \"f\"}"
        ]
    );
    let c = aggregate(&chunks);
    let calls = c.choices[0].message.tool_calls.as_ref().unwrap();
    assert_eq!(calls[0].id, "toolu_018acGYLtfR52q9yDbWaEdQZ");
    assert_eq!(calls[0].function.name, "get_weather");
    assert_eq!(
        calls[0].function.arguments,
        r#"{"location": "San Francisco, CA", "units": "f"}"#
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    // output_tokens is cumulative: 74 replaces message_start's 26.
    assert_eq!(usage(&c), (656, 74, 730, 0));
}

#[test]
fn text_then_tool_counts_tool_calls_not_blocks() {
    let (chunks, r) = decode(&fixture("stream_text_and_tool_use.sse.txt"));
    r.unwrap();
    check_shape(
        &chunks,
        "msg_019Q1hrJbZG26Fb9BQhrkHEr",
        "claude-sonnet-4-20250514",
    );
    let c = aggregate(&chunks);
    assert_eq!(
        c.text(),
        Some("I'll check the current weather in Paris for you.")
    );
    let calls = c.choices[0].message.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, "toolu_01NRLabsLyVHZPKxbKvkfSMn");
    assert_eq!(calls[0].function.arguments, r#"{"location": "Paris"}"#);
    // Anthropic's block index is 1; the OpenAI tool index is 0.
    assert!(
        chunks
            .iter()
            .filter_map(|c| c.choices.first()?.delta.tool_calls.as_ref())
            .all(|t| t[0].index == 0)
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(usage(&c), (377, 65, 442, 0));
}

#[test]
fn text_after_tool_result() {
    let (chunks, r) = decode(&fixture("stream_text_after_tool.sse.txt"));
    r.unwrap();
    check_shape(
        &chunks,
        "msg_016HxyUMAncysqX7dn1kWNRx",
        "claude-haiku-4-5-20251001",
    );
    let c = aggregate(&chunks);
    assert_eq!(
        c.text(),
        Some(
            "The weather in San Francisco, CA is currently:\n- **Temperature:** 68°F\n- **Condition:** Sunny\n\nIt's a nice sunny day!"
        )
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(usage(&c), (770, 38, 808, 0));
}

#[test]
fn max_tokens_inside_a_tool_call_keeps_the_partial_arguments() {
    let (chunks, r) = decode(&fixture("stream_max_tokens_partial_json.sse.txt"));
    r.unwrap();
    check_shape(
        &chunks,
        "msg_01UdjYBBipA9omjYhicnevgq",
        "claude-3-7-sonnet-20250219",
    );
    let c = aggregate(&chunks);
    assert_eq!(
        c.text(),
        Some(
            "I'll create a comprehensive tax guide for someone with multiple W2s and save it in a file called taxes.txt. Let me do that for you now."
        )
    );
    let calls = c.choices[0].message.tool_calls.as_ref().unwrap();
    assert_eq!(calls[0].id, "toolu_01EKqbqmZrGRXy18eN7m9kvY");
    assert_eq!(calls[0].function.name, "make_file");
    assert_eq!(
        calls[0].function.arguments,
        "{\"filename\": \"taxes.txt\", \"lines_of_text\": [\n\"# COMPREHENSIVE TAX GUIDE FOR INDIVIDUALS WITH MULTIPLE W-2s\",\n\"\",\n\"## INTRODUCTION\",\n\"\",\n\"Filing taxes"
    );
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Length));
    assert_eq!(usage(&c), (450, 124, 574, 0));
}

#[test]
fn refusal_is_content_filter() {
    let (chunks, r) = decode(&fixture("stream_refusal.sse.txt"));
    r.unwrap();
    check_shape(
        &chunks,
        "msg_01RefusalTestMessage123456789",
        "claude-opus-4-7",
    );
    let c = aggregate(&chunks);
    assert_eq!(
        c.choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );
    assert_eq!(usage(&c), (20, 0, 20, 0));
}

#[test]
fn thinking_stream_reasoning_and_signed_block() {
    let (chunks, r) = decode(&fixture("stream_thinking.sse.txt"));
    r.unwrap();
    check_shape(
        &chunks,
        "msg_01ALwQ87pTS7hH1PjSdC9wJD",
        "claude-sonnet-4-20250514",
    );
    let c = aggregate(&chunks);
    let reasoning = "This is a straightforward question about pedestrian safety. I should provide clear, helpful advice about how to safely cross a street. This is basic safety information that could help prevent accidents.";
    assert_eq!(
        c.choices[0].message.reasoning_content.as_deref(),
        Some(reasoning)
    );
    let text = c.text().unwrap();
    assert!(
        text.starts_with("Here are the basic steps for safely crossing the street:\n\n**At"),
        "{text}"
    );
    assert!(
        text.ends_with(" prioritize safety over speed when crossing streets."),
        "{text}"
    );
    // The signature arrives once, with the whole thinking text, in `thinking_blocks`.
    let signed: Vec<&ChatChunk> = chunks
        .iter()
        .filter(|c| {
            c.choices
                .first()
                .is_some_and(|ch| ch.delta.extra.contains("thinking_blocks"))
        })
        .collect();
    assert_eq!(signed.len(), 1);
    let blocks: serde_json::Value = serde_json::from_str(
        signed[0].choices[0]
            .delta
            .extra
            .get("thinking_blocks")
            .unwrap()
            .get(),
    )
    .unwrap();
    assert_eq!(blocks[0]["type"], "thinking");
    assert_eq!(blocks[0]["thinking"], reasoning);
    let sig = blocks[0]["signature"].as_str().unwrap();
    assert!(sig.starts_with("EvMCCkYICxgCKkCHP2cSuEdcJK/0rFwqES/ecn+VurRpNTwI4XNyM0vnNfGs"));
    assert!(sig.ends_with("JbmyhGxb7XsYeb1vgb7wwzDvP/UhjfQYAQ=="));
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(usage(&c), (43, 282, 325, 0));
}

#[test]
fn error_event_is_an_error_item() {
    let (chunks, r) = decode(&fixture("stream_error_event.sse.txt"));
    assert!(chunks.is_empty());
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ServiceUnavailable);
    assert_eq!(err.code(), Some("overloaded_error"));
    assert_eq!(err.message(), "Overloaded");
}

#[test]
fn cut_streams_are_connection_errors() {
    for name in TRANSCRIPTS.iter().copied().chain(["stream_text.http.txt"]) {
        if name == "stream_error_event.sse.txt" {
            continue;
        }
        let bytes = transcript(name);
        let stop = String::from_utf8_lossy(&bytes)
            .find("event: message_stop")
            .unwrap();
        let (chunks, r) = decode(&bytes[..stop]);
        assert!(!chunks.is_empty(), "{name}");
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Connection, "{name}");
        assert!(chunks.iter().all(|c| c.usage.is_none()), "{name}");
    }
    // Half an event at the end is a cut too, not a parse error.
    let bytes = fixture("stream_tool_use.sse.txt");
    let (_, r) = decode(&bytes[..bytes.len() - 20]);
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Connection);
}

#[test]
fn garbage_never_panics() {
    for input in [
        &b"event: message_start\ndata: {not json}\n\n"[..],
        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":99,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"x\"}}\n\n",
        b"data: {\"type\":\"message_stop\"}\n\n",
        b"event: content_block_start\ndata: {\"type\":\"content_block_start\"}\n\n",
        b"\xff\xfe\n\n",
    ] {
        let _ = decode(input);
    }
    // An event without an `event:` line is named by its type.
    let (chunks, r) = decode(b"data: {\"type\":\"message_stop\"}\n\n");
    r.unwrap();
    assert!(chunks.last().unwrap().is_usage_only());
}

#[test]
fn native_mode_carries_every_event_verbatim() {
    for name in TRANSCRIPTS.iter().copied().chain(["stream_text.http.txt"]) {
        if name == "stream_error_event.sse.txt" {
            continue;
        }
        let bytes = transcript(name);
        let (plain, _) = decode(&bytes);
        let (native, r) = decode_pieces(&[&bytes], true);
        r.unwrap();
        // The OpenAI chunks are the same (plus empty carriers).
        let stripped: Vec<ChatChunk> = native
            .iter()
            .cloned()
            .map(|mut c| {
                c.extra.remove(NATIVE_EVENT_FIELD);
                c
            })
            .filter(|c| !(c.choices.is_empty() && c.usage.is_none()))
            .collect();
        assert_eq!(stripped, plain, "{name}");
        // Every upstream event, in order, with its data as sent.
        let mut sse = crate::sse::SseDecoder::new();
        sse.push(&bytes);
        let mut expected = Vec::new();
        while let Some(ev) = sse.next_event().unwrap() {
            expected.push((ev.event.unwrap(), ev.data.trim().to_owned()));
        }
        while let Some(ev) = sse.finish().unwrap() {
            expected.push((ev.event.unwrap(), ev.data.trim().to_owned()));
        }
        let carried: Vec<(String, String)> = native
            .iter()
            .filter_map(|c| c.extra.get(NATIVE_EVENT_FIELD))
            .map(|raw| {
                #[derive(serde::Deserialize)]
                struct Carried<'a> {
                    event: String,
                    #[serde(borrow)]
                    data: &'a RawValue,
                }
                let c: Carried<'_> = serde_json::from_str(raw.get()).unwrap();
                (c.event, c.data.get().to_owned())
            })
            .collect();
        assert_eq!(carried, expected, "{name}");
    }
}

#[test]
fn byte_at_a_time_is_the_same_as_whole() {
    for name in TRANSCRIPTS.iter().copied().chain(["stream_text.http.txt"]) {
        let bytes = transcript(name);
        let (whole, r1) = decode(&bytes);
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        let (split, r2) = decode_pieces(&singles, false);
        assert_eq!(split, whole, "{name}");
        assert_eq!(r1.is_ok(), r2.is_ok(), "{name}");
        let (nat_whole, _) = decode_pieces(&[&bytes], true);
        let (nat_split, _) = decode_pieces(&singles, true);
        assert_eq!(nat_split, nat_whole, "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_split_decodes_the_same(
        which in 0..TRANSCRIPTS.len() + 1,
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..24),
    ) {
        let name = TRANSCRIPTS.get(which).copied().unwrap_or("stream_text.http.txt");
        let bytes = transcript(name);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut pieces = Vec::new();
        let mut last = 0;
        for p in points {
            pieces.push(&bytes[last..p]);
            last = p;
        }
        pieces.push(&bytes[last..]);
        let (whole, r1) = decode(&bytes);
        let (split, r2) = decode_pieces(&pieces, false);
        prop_assert_eq!(split, whole);
        prop_assert_eq!(r1.is_ok(), r2.is_ok());
    }
}
