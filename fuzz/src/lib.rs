//! Shared drivers for the fuzz targets.

use std::collections::VecDeque;
use tollgate::ChatRequest;
use tollgate::provider::Protocol;

/// A small valid chat request, streamed or not.
pub fn request(stream: bool) -> ChatRequest {
    let body = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
    );
    ChatRequest::from_json(body.as_bytes()).expect("a valid request")
}

/// Piece sizes taken from the first byte, so the fuzzer also explores where
/// network reads split the body.
pub fn split(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => (usize::from(b % 97) + 1, rest),
        None => (1, data),
    }
}

/// Runs one provider's non-streamed parser and stream decoder over `data`.
/// Any outcome but a panic (or a hang, or unbounded memory) is fine.
pub fn provider<P: Protocol>(protocol: &P, data: &[u8]) {
    let (piece, body) = split(data);
    let plain = request(false);
    let _ = protocol.parse_completion(&plain, body);

    let streamed = request(true);
    let mut decoder = protocol.stream_decoder(&streamed);
    let mut out = VecDeque::new();
    for chunk in body.chunks(piece) {
        if decoder.feed(chunk, &mut out).is_err() || decoder.is_done() {
            return;
        }
        out.clear();
    }
    let _ = decoder.finish(&mut out);
}
