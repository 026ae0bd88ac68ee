//! The LiteLLM `config.yaml` loader: any text is a config or a `ConfigError`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Includes resolve next to a directory that does not exist, and the
    // environment is empty: the loader reads nothing outside the input.
    let env = |_: &str| None;
    let _ = tollgate::proxy::config::load_str(
        text,
        Path::new("/nonexistent/tollgate-fuzz/config.yaml"),
        &env,
    );
});
