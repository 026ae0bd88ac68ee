//! The Anthropic `/v1/messages` body parser and its translation to a chat request.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = tollgate::edge::fuzzing::messages_request(data) {
        let _ = serde_json::to_vec(req.body());
    }
});
