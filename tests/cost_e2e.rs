//! Every request gets a usage and a cost: complete, streamed, cut off upstream,
//! or abandoned by the client — through the real OpenAI leaf and the proxy.

mod common;

use common::{Client, MockUpstream, Proxy, Reply, fixture, sse_data};
use futures_util::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate::cost::CostLayer;
use tollgate::observe::{CompletionRecord, ObserveLayer, RecordSink, RecordStatus};
use tollgate::provider::{OpenAi, OpenAiConfig};
use tollgate::router::{Deployment, Router};
use tollgate::{ChatRequest, Secret};
use tower::{Layer, ServiceExt};

#[derive(Default)]
struct Collect(Mutex<Vec<CompletionRecord>>);

impl RecordSink for Collect {
    fn record(&self, r: &CompletionRecord) {
        self.0.lock().unwrap().push(r.clone());
    }
}

/// Observe → Router → Cost → OpenAI leaf, priced as `model`.
fn stack(
    up: &MockUpstream,
    model: &str,
    sink: Arc<Collect>,
) -> impl tower::Service<ChatRequest, Response = tollgate::ChatResponse, Error = tollgate::Error> + Clone
{
    let leaf = OpenAi::new(
        OpenAiConfig::new(model.trim_start_matches("openai/"))
            .api_base(format!("{}/v1", up.base()))
            .api_key(Secret::new("sk-test")),
    )
    .unwrap();
    let priced = CostLayer::for_model(model).layer(leaf.clone());
    let info = leaf.info().clone();
    let mut info = (*info).clone();
    info.model_group = Arc::from("g");
    let router = Router::builder()
        .deployment(Deployment::new(Arc::new(info), priced))
        .build();
    ObserveLayer::new(sink).layer(router)
}

fn req(stream: bool) -> ChatRequest {
    ChatRequest::from_json(
        format!(
            r#"{{"model":"g","messages":[{{"role":"user","content":"What's the weather like in SF?"}}],"stream":{stream}}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

#[tokio::test]
async fn complete_answer_is_billed_exactly() {
    let up = MockUpstream::start().await;
    up.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let sink = Arc::new(Collect::default());
    stack(&up, "openai/gpt-4o-2024-08-06", sink.clone())
        .oneshot(req(false))
        .await
        .unwrap();
    let r = sink.0.lock().unwrap()[0].clone();
    // chat_text.resp.json: 14 prompt, 37 completion; gpt-4o-2024-08-06: $2.50/M in, $10/M out
    // → 14 × 0.0000025 + 37 × 0.00001 = 0.000035 + 0.00037.
    assert_eq!(r.cost.unwrap().to_string(), "0.000405");
    assert!(!r.usage_estimated);
}

#[tokio::test]
async fn stream_cut_upstream_after_n_chunks_is_billed_from_what_arrived() {
    let up = MockUpstream::start().await;
    let sse = fixture("openai/chat_stream_text.sse.txt");
    // The connection ends after ~40% of the stream: no finish, no usage, no [DONE].
    up.push(Reply::sse(sse[..sse.len() * 2 / 5].to_vec()));
    let sink = Arc::new(Collect::default());
    let resp = stack(&up, "openai/gpt-4o-2024-08-06", sink.clone())
        .oneshot(req(true))
        .await
        .unwrap();
    let mut s = resp.into_stream().unwrap();
    let mut chunks = 0;
    while let Some(item) = s.next().await {
        if item.is_err() {
            break;
        }
        chunks += 1;
    }
    assert!(chunks >= 3, "{chunks}");
    drop(s);
    let recs = sink.0.lock().unwrap();
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.status, RecordStatus::Failure);
    assert!(r.usage_estimated);
    let u = r.usage.as_ref().unwrap();
    assert!(u.prompt_tokens > 0 && u.completion_tokens > 0, "{u:?}");
    assert!(r.cost.unwrap().pico() > 0, "never $0");
}

#[tokio::test]
async fn client_disconnect_mid_stream_is_billed_from_what_arrived() {
    let up = MockUpstream::start().await;
    let sse = fixture("openai/chat_stream_text.sse.txt");
    // A slow upstream: the client leaves after a few chunks.
    up.push(Reply::sse_chunked(&sse, 200, Duration::from_millis(30)));
    let sink = Arc::new(Collect::default());
    let resp = stack(&up, "openai/gpt-4o-2024-08-06", sink.clone())
        .oneshot(req(true))
        .await
        .unwrap();
    let mut s = resp.into_stream().unwrap();
    for _ in 0..4 {
        s.next().await.unwrap().unwrap();
    }
    drop(s);
    let recs = sink.0.lock().unwrap();
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.status, RecordStatus::Cancelled);
    assert!(r.usage_estimated);
    assert!(r.usage.as_ref().unwrap().completion_tokens > 0);
    assert!(r.cost.unwrap().pico() > 0);
}

const CONFIG: &str = r#"
model_list:
  - model_name: gpt35
    litellm_params:
      model: openai/gpt-3.5-turbo-0125
      api_base: UPSTREAM/v1
      api_key: sk-up
  - model_name: custom
    litellm_params:
      model: hosted_vllm/llama
      api_base: UPSTREAM
    model_info:
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
  - model_name: filepriced
    litellm_params:
      model: hosted_vllm/from-file
      api_base: UPSTREAM
general_settings:
  master_key: sk-cost-test-key-0001
"#;

const AUTH: [(&str, &str); 1] = [("authorization", "Bearer sk-cost-test-key-0001")];

async fn proxy(extra_args: &[&str]) -> (MockUpstream, Proxy, common::TempDir) {
    let up = MockUpstream::start().await;
    let dir = common::TempDir::new("cost");
    let prices = dir.0.join("prices.json");
    std::fs::write(
        &prices,
        r#"{"hosted_vllm/from-file":{"input_cost_per_token":"0.00001","output_cost_per_token":"0.00002","litellm_provider":"hosted_vllm","max_input_tokens":8192}}"#,
    )
    .unwrap();
    let price_arg = format!("--price-file={}", prices.display());
    let mut args = vec![price_arg.as_str()];
    args.extend_from_slice(extra_args);
    let p = Proxy::start_in(&dir.0, &CONFIG.replace("UPSTREAM", &up.base()), &args, &[]);
    (up, p, dir)
}

#[tokio::test]
async fn proxy_reports_cost_in_headers_usage_chunk_and_routes() {
    let (up, proxy, _dir) = proxy(&[]).await;
    let c = Client::new();

    // Non-streamed: x-litellm-response-cost. chat_text.http.txt usage on gpt-3.5-turbo-0125:
    // 13 × 0.0000005 + 31 × 0.0000015 = 0.000053.
    let text = String::from_utf8(fixture("openai/chat_text.http.txt"))
        .unwrap()
        .replace("\r\n", "\n");
    let body = text
        .split("<<< RESPONSE")
        .nth(1)
        .unwrap()
        .split_once("\n\n")
        .unwrap()
        .1
        .trim()
        .to_owned();
    up.push(Reply::json(200, body));
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            r#"{"model":"gpt35","messages":[{"role":"user","content":"Hello, how are you?"}]}"#,
            &AUTH,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.headers["x-litellm-response-cost"], "0.000053");

    // Streamed with usage asked for: the usage chunk carries the cost, and an SSE comment too.
    // chat_stream_text usage: 14 prompt + 30 completion → 0.000007 + 0.000045.
    up.push(Reply::sse(fixture("openai/chat_stream_text.sse.txt")));
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            r#"{"model":"gpt35","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}"#,
            &AUTH,
        )
        .await;
    let text = a.text();
    assert!(
        text.contains(": x-litellm-response-cost 0.000052\n\ndata: [DONE]"),
        "{text}"
    );
    let usage_chunk = sse_data(&text)
        .into_iter()
        .find(|e| e.contains("\"usage\""))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&usage_chunk).unwrap();
    assert_eq!(v["usage"]["cost"], 0.000052);

    // Deployment prices from model_info.
    up.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            r#"{"model":"custom","messages":[{"role":"user","content":"x"}]}"#,
            &AUTH,
        )
        .await;
    // 14 × 0.000001 + 37 × 0.000002 = 0.000014 + 0.000074.
    assert_eq!(a.headers["x-litellm-response-cost"], "0.000088");

    // Prices from the --price-file.
    up.push(Reply::json(200, fixture("openai/chat_text.resp.json")));
    let a = c
        .post_json(
            &proxy.url("/v1/chat/completions"),
            r#"{"model":"filepriced","messages":[{"role":"user","content":"x"}]}"#,
            &AUTH,
        )
        .await;
    // 14 × 0.00001 + 37 × 0.00002 = 0.00014 + 0.00074.
    assert_eq!(a.headers["x-litellm-response-cost"], "0.00088");

    // Embeddings are priced too: embeddings_base64 usage on the custom deployment ($1/M in).
    up.push(Reply::json(
        200,
        fixture("openai/embeddings_base64.resp.json"),
    ));
    let a = c
        .post_json(
            &proxy.url("/v1/embeddings"),
            r#"{"model":"custom","input":"hello"}"#,
            &AUTH,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let tokens =
        serde_json::from_slice::<serde_json::Value>(&fixture("openai/embeddings_base64.resp.json"))
            .unwrap()["usage"]["prompt_tokens"]
            .as_u64()
            .unwrap();
    assert_eq!(
        a.headers["x-litellm-response-cost"].to_str().unwrap(),
        tollgate::pricing::Usd::from_pico(1_000_000 * i128::from(tokens)).to_string()
    );

    // /utils/token_counter, exact for an OpenAI model: "Hello, how are you?" is 13 as a chat prompt.
    let a = c
        .post_json(
            &proxy.url("/utils/token_counter"),
            r#"{"model":"gpt35","messages":[{"role":"user","content":"Hello, how are you?"}]}"#,
            &AUTH,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["total_tokens"], 13);
    assert_eq!(v["model_used"], "openai/gpt-3.5-turbo-0125");
    assert_eq!(v["tokenizer_type"], "openai_tokenizer");

    // /spend/calculate from a completion: 14 × 0.0000005 + 37 × 0.0000015 = 0.000007 + 0.0000555.
    let completion = String::from_utf8(fixture("openai/chat_text.resp.json")).unwrap();
    let a = c
        .post_json(
            &proxy.url("/spend/calculate"),
            &format!(r#"{{"model":"gpt35","completion_response":{completion}}}"#),
            &AUTH,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["cost"], 0.0000625);

    // /model/info: limits, prices, no secrets.
    let a = c.get(&proxy.url("/model/info"), &AUTH).await;
    assert_eq!(a.status, 200);
    let text = a.text();
    assert!(!text.contains("sk-up"), "{text}");
    let v = a.json();
    let gpt35 = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model_name"] == "gpt35")
        .unwrap();
    assert_eq!(gpt35["model_info"]["input_cost_per_token"], 0.0000005);
    assert_eq!(gpt35["model_info"]["max_input_tokens"], 16385);
    assert_eq!(
        gpt35["litellm_params"]["model"],
        "openai/gpt-3.5-turbo-0125"
    );
    let from_file = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model_name"] == "filepriced")
        .unwrap();
    assert_eq!(from_file["model_info"]["max_input_tokens"], 8192);
    let a = c.get(&proxy.url("/v1/model/info"), &[]).await;
    assert_eq!(a.status, 401, "the routes need a key");
}

#[test]
fn unreadable_price_file_is_a_clear_error() {
    let dir = common::TempDir::new("badprice");
    let cfg = dir.0.join("config.yaml");
    std::fs::write(&cfg, "model_list: []\n").unwrap();
    let err = Proxy::spawn(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--price-file",
            "/nonexistent/prices.json",
        ],
        &[],
    )
    .err()
    .unwrap();
    assert!(
        err.contains("cannot read the price file /nonexistent/prices.json"),
        "{err}"
    );
}
