//! The official `openai` Python SDK against the proxy binary.
//!
//! Needs a Python with `openai` installed: `TOLLGATE_PYTHON`, else `.venv/bin/python`
//! (`.ci/run` creates it). Skipped with a message when absent, unless
//! `TOLLGATE_REQUIRE_SERVICES=1`.

mod common;

use common::{MockUpstream, Proxy, Reply, fixture, python_with};
use std::process::Command;

#[tokio::test]
async fn openai_python_sdk_against_the_proxy() {
    let python = match python_with("openai") {
        Ok(p) => p,
        Err(why) if !common::services_required() => {
            eprintln!(
                "SKIPPED openai_python_sdk_against_the_proxy: {why} (run .ci/run, or set TOLLGATE_PYTHON)"
            );
            return;
        }
        Err(why) => panic!("{why}"),
    };
    let json_up = MockUpstream::start().await;
    json_up.always(Reply::json(200, fixture("openai/chat_tool_call.resp.json")));
    let stream_up = MockUpstream::start().await;
    stream_up.always(Reply::sse(fixture("openai/chat_stream_tool_call.sse.txt")));
    let config = format!(
        r#"
model_list:
  - model_name: demo
    litellm_params: {{model: mock/demo}}
  - model_name: up-json
    litellm_params: {{model: openai/gpt-4o, api_base: "{}/v1", api_key: sk-up}}
  - model_name: up-stream
    litellm_params: {{model: openai/gpt-4o, api_base: "{}/v1", api_key: sk-up}}
general_settings:
  master_key: sk-sdk-test-key-123
"#,
        json_up.base(),
        stream_up.base()
    );
    let proxy = Proxy::start(&config, &[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/openai_sdk_e2e.py"
    );
    let out = tokio::task::spawn_blocking({
        let base = proxy.base.clone();
        move || {
            Command::new(python)
                .arg(script)
                .env("TOLLGATE_BASE_URL", base)
                .env("TOLLGATE_KEY", "sk-sdk-test-key-123")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK script failed\nstdout: {stdout}\nstderr: {stderr}\nproxy logs: {}",
        proxy.logs()
    );
    assert!(stdout.starts_with("ok "), "{stdout}");
    // The streamed request asked the upstream for usage; the client never saw it unasked.
    let sent = stream_up.last().json();
    assert_eq!(sent["stream_options"]["include_usage"], true);
}
