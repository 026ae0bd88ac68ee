//! The Anthropic response parser and stream translator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use tollgate::provider::AnthropicConfig;
use tollgate::provider::anthropic::AnthropicProtocol;

static PROTOCOL: LazyLock<AnthropicProtocol> =
    LazyLock::new(|| AnthropicProtocol::new(AnthropicConfig::new("claude-haiku-4-5")).unwrap());

fuzz_target!(|data: &[u8]| tollgate_fuzz::provider(&*PROTOCOL, data));
