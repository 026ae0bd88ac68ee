//! The OpenAI (and OpenAI-compatible) response parser and stream translator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use tollgate::provider::{OpenAiConfig, OpenAiProtocol};

static PROTOCOL: LazyLock<OpenAiProtocol> =
    LazyLock::new(|| OpenAiProtocol::new(OpenAiConfig::new("gpt-4o-mini")).unwrap());

fuzz_target!(|data: &[u8]| tollgate_fuzz::provider(&*PROTOCOL, data));
