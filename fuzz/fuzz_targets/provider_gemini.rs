//! The Gemini response parser and stream translator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use tollgate::provider::{GeminiConfig, GeminiProtocol};

static PROTOCOL: LazyLock<GeminiProtocol> =
    LazyLock::new(|| GeminiProtocol::new(GeminiConfig::new("gemini-2.5-flash")).unwrap());

fuzz_target!(|data: &[u8]| tollgate_fuzz::provider(&*PROTOCOL, data));
