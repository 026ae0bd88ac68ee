//! The Bedrock Converse response parser and event-stream translator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use tollgate::provider::BedrockConfig;
use tollgate::provider::bedrock::BedrockProtocol;

static PROTOCOL: LazyLock<BedrockProtocol> = LazyLock::new(|| {
    BedrockProtocol::new(BedrockConfig::new(
        "anthropic.claude-3-haiku-20240307-v1:0",
        "us-east-1",
    ))
    .unwrap()
});

fuzz_target!(|data: &[u8]| tollgate_fuzz::provider(&*PROTOCOL, data));
