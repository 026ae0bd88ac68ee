//! The `/v1/chat/completions` body parser and checks, and the re-serialisation
//! every accepted request goes through on its way upstream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = tollgate::edge::fuzzing::chat_request(data) {
        let _ = serde_json::to_vec(req.body());
    }
});
