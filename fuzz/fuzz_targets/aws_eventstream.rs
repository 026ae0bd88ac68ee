//! The AWS event-stream decoder: any bytes, split anywhere, never panic, and
//! a split body yields the same messages as the whole one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::provider::bedrock::eventstream::EventStreamDecoder;

fn decode(body: &[u8], piece: usize) -> (Vec<String>, bool) {
    let mut d = EventStreamDecoder::with_max_frame(1 << 16);
    let mut out = Vec::new();
    for chunk in body.chunks(piece.max(1)) {
        d.push(chunk);
        loop {
            match d.next_message() {
                Ok(Some(m)) => out.push(format!("{m:?}")),
                Ok(None) => break,
                Err(_) => return (out, false),
            }
        }
    }
    let clean = d.finish().is_ok();
    (out, clean)
}

fuzz_target!(|data: &[u8]| {
    let (piece, body) = tollgate_fuzz::split(data);
    let whole = decode(body, body.len());
    let split = decode(body, piece);
    assert_eq!(whole, split, "splitting the body changed the messages");
});
