//! The Cohere v2 response parser and stream translator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use tollgate::provider::CohereConfig;
use tollgate::provider::cohere::CohereProtocol;

static PROTOCOL: LazyLock<CohereProtocol> =
    LazyLock::new(|| CohereProtocol::new(CohereConfig::new("command-a-03-2025")).unwrap());

fuzz_target!(|data: &[u8]| tollgate_fuzz::provider(&*PROTOCOL, data));
