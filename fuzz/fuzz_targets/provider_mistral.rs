//! The Mistral response parser and stream translator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use tollgate::provider::MistralConfig;
use tollgate::provider::mistral::MistralProtocol;

static PROTOCOL: LazyLock<MistralProtocol> =
    LazyLock::new(|| MistralProtocol::new(MistralConfig::new("mistral-small-latest")).unwrap());

fuzz_target!(|data: &[u8]| tollgate_fuzz::provider(&*PROTOCOL, data));
