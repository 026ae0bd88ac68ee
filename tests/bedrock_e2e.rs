//! Bedrock end to end: the proxy binary in front of a local Bedrock mock,
//! driven by the official `openai` Python SDK (`tests/python/provider_e2e.py`).

mod common;

use bytes::Bytes;
use common::{MockUpstream, Proxy, Reply, fixture, run_python};
use serde_json::json;
use std::time::Duration;

const KEY: &str = "sk-bedrock-e2e-master-key";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn eventstream(body: &[u8]) -> Reply {
    Reply {
        status: 200,
        headers: vec![(
            "content-type".into(),
            "application/vnd.amazon.eventstream".into(),
        )],
        pieces: body
            .chunks(97)
            .map(|c| (Duration::ZERO, Bytes::copy_from_slice(c)))
            .collect(),
        hang: false,
    }
}

fn aws_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(status, json!({ "message": message }).to_string()).header(
        "x-amzn-ErrorType",
        &format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
    )
}

#[tokio::test]
async fn openai_sdk_through_the_proxy_to_bedrock() {
    use tollgate::provider::bedrock::eventstream::Message;
    let up = MockUpstream::start().await;
    let config = format!(
        r#"
model_list:
  - model_name: claude
    litellm_params:
      model: bedrock/us.anthropic.claude-3-5-haiku-20241022-v1:0
      aws_bedrock_runtime_endpoint: "{base}"
      aws_region_name: us-east-1
      aws_access_key_id: os.environ/E2E_AWS_KEY_ID
      aws_secret_access_key: os.environ/E2E_AWS_SECRET
  - model_name: nova-key
    litellm_params:
      model: bedrock/amazon.nova-lite-v1:0
      api_base: "{base}"
      api_key: os.environ/E2E_BEDROCK_API_KEY
general_settings:
  master_key: {KEY}
# The mock answers the cases in order: no retries may consume the next case's answer.
router_settings:
  num_retries: 0
"#,
        base = up.base()
    );
    let proxy = Proxy::start(
        &config,
        &[
            ("E2E_AWS_KEY_ID", "AKIDEXAMPLE"),
            ("E2E_AWS_SECRET", SECRET),
            ("E2E_BEDROCK_API_KEY", "ABSKe2ebedrockkey0123"),
            ("AWS_REGION", "eu-north-1"),
        ],
    );

    let mut exception_stream = Message::event("messageStart", br#"{"role":"assistant"}"#).encode();
    exception_stream.extend(
        Message::event(
            "contentBlockDelta",
            br#"{"contentBlockIndex":0,"delta":{"text":"Par"},"p":"abcd"}"#,
        )
        .encode(),
    );
    exception_stream.extend(
        Message::exception(
            "throttlingException",
            br#"{"message":"Too many tokens, please wait before trying again."}"#,
        )
        .encode(),
    );
    // Replies, in the order of the cases below.
    up.push(Reply::json(200, fixture("bedrock/converse_text.resp.json")));
    up.push(eventstream(&fixture(
        "bedrock/converse_stream_text_after_tool.eventstream.bin",
    )));
    up.push(Reply::json(
        200,
        fixture("bedrock/converse_tool_use.resp.json"),
    ));
    up.push(eventstream(&fixture(
        "bedrock/converse_stream_text_then_tool_use.eventstream.bin",
    )));
    up.push(Reply::json(
        200,
        fixture("bedrock/converse_tool_result_followup.resp.json"),
    ));
    up.push(Reply::json(200, fixture("bedrock/converse_text.resp.json")));
    up.push(aws_error(
        429,
        "ThrottlingException",
        "Too many tokens, please wait before trying again.",
    ));
    up.push(aws_error(
        400,
        "ValidationException",
        "The provided model identifier is invalid.",
    ));
    up.push(aws_error(
        403,
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    ));
    up.push(eventstream(&exception_stream));
    up.push(Reply::json(200, fixture("bedrock/converse_text.resp.json")));

    let png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let cases = json!([
        {"kind": "text", "model": "claude",
         "expect_text": "Hello! How can I assist you today? Whether you have questions, need information, or just want to chat, I'm here to help."},
        {"kind": "stream", "model": "claude", "usage": true,
         "expect_text": "The current temperature in Paris, the capital of France, is 30°C."},
        {"kind": "tools", "model": "claude", "expect_tool": "get_weather", "expect_args": {"city": "Paris"}},
        {"kind": "stream_tools", "model": "claude", "expect_tool": "get_temperature", "expect_args": {"city": "Paris"}},
        {"kind": "text", "model": "claude", "tools": true,
         "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "tooluse_8ZVLMmsdearTDSS0unN07z", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "tooluse_8ZVLMmsdearTDSS0unN07z", "content": "Weather in Paris: Sunny, 22°C"}],
         "expect_contains": "sunny with a temperature of 22°C"},
        {"kind": "image", "model": "claude", "image_url": png, "expect_contains": "Hello!"},
        {"kind": "error", "model": "claude", "expect_status": 429},
        {"kind": "error", "model": "claude", "expect_status": 400, "stream": true},
        {"kind": "error", "model": "claude", "expect_status": 403},
        {"kind": "stream_error", "model": "claude", "expect_contains": "Too many tokens", "expect_text": "Par"},
        {"kind": "text", "model": "nova-key", "expect_contains": "Hello!"}
    ]);
    if !run_python(
        "openai_sdk_through_the_proxy_to_bedrock",
        "openai",
        "provider_e2e.py",
        &proxy,
        KEY,
        &[cases.to_string()],
    )
    .await
    {
        return;
    }

    let got = up.received();
    assert_eq!(got.len(), 11, "one upstream call per case");
    let claude = "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0";
    for (i, g) in got.iter().enumerate().take(10) {
        let auth = g.headers["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                && auth.contains("/us-east-1/bedrock/aws4_request"),
            "case {i}: {auth}"
        );
        assert!(g.path.starts_with(claude), "case {i}: {}", g.path);
        assert!(
            !String::from_utf8_lossy(&g.body).contains(KEY),
            "the client's key never goes upstream"
        );
    }
    assert!(got[1].path.ends_with("/converse-stream"));
    assert!(got[3].path.ends_with("/converse-stream"));
    assert!(got[2].path.ends_with("/converse"));
    // Tools went into toolConfig; the tool result into one user turn.
    assert_eq!(
        got[2].json()["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "get_weather"
    );
    let follow = got[4].json();
    assert_eq!(
        follow["messages"][1]["content"][0]["toolUse"]["input"],
        json!({"city": "Paris"})
    );
    assert_eq!(
        follow["messages"][2]["content"][0]["toolResult"]["content"][0]["text"],
        "Weather in Paris: Sunny, 22°C"
    );
    // The image travelled as bytes.
    let image = got[5].json();
    assert_eq!(image["messages"][0]["content"][1]["image"]["format"], "png");
    assert_eq!(
        image["messages"][0]["content"][1]["image"]["source"]["bytes"],
        png.trim_start_matches("data:image/png;base64,")
    );
    // The API-key deployment: a bearer token and no SigV4 headers.
    let nova = &got[10];
    assert_eq!(nova.path, "/model/amazon.nova-lite-v1%3A0/converse");
    assert_eq!(
        nova.headers["authorization"],
        "Bearer ABSKe2ebedrockkey0123"
    );
    assert!(nova.headers.get("x-amz-date").is_none());
    assert!(!proxy.logs().contains(SECRET));
}

/// `/v1/embeddings` through the proxy to Bedrock InvokeModel: a Titan model
/// (one signed call per input, token counts summed) and a Cohere model (one
/// call for the batch), with the official `openai` SDK.
#[tokio::test]
async fn openai_sdk_embeddings_through_the_proxy_to_bedrock() {
    let up = MockUpstream::start().await;
    let config = format!(
        r#"
model_list:
  - model_name: titan
    litellm_params:
      model: bedrock/amazon.titan-embed-text-v2:0
      aws_bedrock_runtime_endpoint: "{base}"
      aws_region_name: us-east-1
      aws_access_key_id: AKIDEXAMPLE
      aws_secret_access_key: os.environ/E2E_AWS_SECRET
  - model_name: cohere
    litellm_params:
      model: bedrock/cohere.embed-english-v3
      aws_bedrock_runtime_endpoint: "{base}"
      aws_region_name: eu-west-1
      aws_access_key_id: AKIDEXAMPLE
      aws_secret_access_key: os.environ/E2E_AWS_SECRET
      input_type: search_query
general_settings:
  master_key: {KEY}
router_settings:
  num_retries: 0
"#,
        base = up.base()
    );
    let proxy = Proxy::start(&config, &[("E2E_AWS_SECRET", SECRET)]);
    up.push(Reply::json(
        200,
        r#"{"embedding":[0.5,-0.25,0.125],"inputTextTokenCount":2}"#,
    ));
    up.push(Reply::json(
        200,
        r#"{"embedding":[0.75,0.5,-0.5],"inputTextTokenCount":3}"#,
    ));
    up.push(Reply::json(
        200,
        r#"{"embedding":[0.25,0.25,0.25],"inputTextTokenCount":1}"#,
    ));
    up.push(Reply::json(
        200,
        r#"{"id":"e1","embeddings":[[0.1,0.2],[0.3,0.4]],"response_type":"embeddings_floats","texts":["a","b"]}"#,
    ));
    up.push(aws_error(
        400,
        "ValidationException",
        "Malformed input request: expected maxLength: 50000",
    ));
    let cases = json!([
        {"kind": "embeddings", "model": "titan", "input": ["first text", "second"], "expect_count": 2,
         "expect_dims": 3, "expect_first": [0.5, -0.25, 0.125]},
        {"kind": "embeddings", "model": "titan", "input": "one", "expect_count": 1, "encoding_format": null,
         "expect_first": [0.25, 0.25, 0.25]},
        {"kind": "embeddings", "model": "cohere", "input": ["a", "b"], "expect_count": 2, "expect_first": [0.1, 0.2]},
        {"kind": "error", "model": "cohere", "expect_status": 400},
    ]);
    if !run_python(
        "openai_sdk_embeddings_through_the_proxy_to_bedrock",
        "openai",
        "provider_e2e.py",
        &proxy,
        KEY,
        &[cases.to_string()],
    )
    .await
    {
        return;
    }
    let got = up.received();
    assert_eq!(
        got.len(),
        5,
        "two Titan calls for two inputs, then one each"
    );
    for g in &got[..3] {
        assert_eq!(g.path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
        let auth = g.headers["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                && auth.contains("/us-east-1/bedrock/aws4_request"),
            "{auth}"
        );
        assert!(g.headers.get("x-amz-date").is_some());
        assert!(!String::from_utf8_lossy(&g.body).contains(KEY));
    }
    assert_eq!(got[0].json(), json!({"inputText": "first text"}));
    assert_eq!(got[1].json(), json!({"inputText": "second"}));
    assert_eq!(got[2].json(), json!({"inputText": "one"}));
    assert_eq!(got[3].path, "/model/cohere.embed-english-v3/invoke");
    assert!(
        got[3].headers["authorization"]
            .to_str()
            .unwrap()
            .contains("/eu-west-1/bedrock/aws4_request")
    );
    assert_eq!(
        got[3].json(),
        json!({"texts": ["a", "b"], "input_type": "search_query"})
    );
    assert!(!proxy.logs().contains(SECRET));
}

const STS_ANSWER: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROA3XFRBF535PLBIFPI4:tollgate-e2e</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/bedrock-invoke/tollgate-e2e</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIATEMPORARYKEY0001</AccessKeyId>
      <SecretAccessKey>temporary/secret+key0123456789</SecretAccessKey>
      <SessionToken>FwoGZXIvYXdzEJr//////////wEaDtemporary+token=</SessionToken>
      <Expiration>2026-11-25T20:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#;

/// `aws_role_name` + `aws_session_name`: the proxy assumes the role at a local
/// STS (signed with the source keys, service `sts`), signs Bedrock calls with
/// the temporary credentials, and asks STS once for several calls.
#[tokio::test]
async fn assumed_role_credentials_from_sts_sign_bedrock_calls() {
    let sts = MockUpstream::start().await;
    let up = MockUpstream::start().await;
    sts.always(Reply::json(200, STS_ANSWER).header("content-type", "text/xml"));
    let config = format!(
        r#"
model_list:
  - model_name: claude
    litellm_params:
      model: bedrock/anthropic.claude-3-haiku-20240307-v1:0
      aws_bedrock_runtime_endpoint: "{base}"
      aws_region_name: us-east-1
      aws_access_key_id: AKIDSOURCEKEY
      aws_secret_access_key: os.environ/E2E_AWS_SECRET
      aws_role_name: arn:aws:iam::123456789012:role/bedrock-invoke
      aws_session_name: tollgate-e2e
      aws_sts_endpoint: "{sts}"
general_settings:
  master_key: {KEY}
router_settings:
  num_retries: 0
"#,
        base = up.base(),
        sts = sts.base()
    );
    let proxy = Proxy::start(&config, &[("E2E_AWS_SECRET", SECRET)]);
    let client = common::Client::new();
    for _ in 0..2 {
        up.push(Reply::json(200, fixture("bedrock/converse_text.resp.json")));
        let answer = client
            .post_json(
                &proxy.url("/v1/chat/completions"),
                r#"{"model":"claude","messages":[{"role":"user","content":"Hello"}]}"#,
                &[("authorization", &format!("Bearer {KEY}"))],
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert!(
            answer.json()["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .starts_with("Hello!")
        );
    }

    let calls = sts.received();
    assert_eq!(calls.len(), 1, "the temporary credentials are cached");
    let call = &calls[0];
    assert_eq!(call.method, http::Method::POST);
    assert_eq!(call.path, "/");
    let form = String::from_utf8(call.body.to_vec()).unwrap();
    assert_eq!(
        form,
        "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fbedrock-invoke&RoleSessionName=tollgate-e2e&DurationSeconds=3600"
    );
    let auth = call.headers["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDSOURCEKEY/")
            && auth.contains("/us-east-1/sts/aws4_request"),
        "{auth}"
    );

    let got = up.received();
    assert_eq!(got.len(), 2);
    for g in &got {
        let auth = g.headers["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=ASIATEMPORARYKEY0001/")
                && auth.contains("/us-east-1/bedrock/aws4_request"),
            "{auth}"
        );
        assert_eq!(
            g.headers["x-amz-security-token"],
            "FwoGZXIvYXdzEJr//////////wEaDtemporary+token="
        );
    }
    let logs = proxy.logs();
    assert!(!logs.contains(SECRET));
    assert!(!logs.contains("temporary/secret+key0123456789"));
}

/// STS refusing the role is a 401 naming STS's code, with no secret in it.
#[tokio::test]
async fn a_refused_role_is_an_authentication_error() {
    use tollgate::provider::bedrock::{
        AssumeRole, AssumeRoleConfig, AwsCredentials, Bedrock, BedrockAuth, BedrockConfig,
    };
    use tower::ServiceExt;
    let sts = MockUpstream::start().await;
    let up = MockUpstream::start().await;
    sts.push(Reply::json(
        403,
        r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/x is not authorized to perform: sts:AssumeRole</Message></Error><RequestId>1</RequestId></ErrorResponse>"#,
    ));
    let role = AssumeRole::new(AssumeRoleConfig {
        role_arn: "arn:aws:iam::123456789012:role/r".into(),
        session_name: "s".into(),
        source: AwsCredentials::new("AKIDSOURCEKEY", tollgate::Secret::new(SECRET)),
        region: "eu-west-1".into(),
        endpoint: Some(sts.base()),
        duration: std::time::Duration::from_secs(900),
        client: None,
    })
    .unwrap();
    let leaf = Bedrock::new(
        BedrockConfig::new("anthropic.claude-3-haiku-20240307-v1:0", "eu-west-1")
            .endpoint(up.base())
            .auth(BedrockAuth::AssumeRole(std::sync::Arc::new(role))),
    )
    .unwrap();
    let req = tollgate::ChatRequest::from_json(
        br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .unwrap();
    let err = leaf.oneshot(req).await.unwrap_err();
    assert_eq!(err.kind(), tollgate::ErrorKind::Authentication);
    assert!(err.message().contains("AccessDenied"), "{}", err.message());
    assert!(!err.message().contains(SECRET));
    assert!(up.received().is_empty(), "nothing is sent unsigned");
    assert!(
        sts.received()[0].headers["authorization"]
            .to_str()
            .unwrap()
            .contains("/eu-west-1/sts/aws4_request")
    );
}

/// The cached credentials are used until five minutes before they expire,
/// then fetched again.
#[tokio::test]
async fn assumed_role_credentials_are_refreshed_before_they_expire() {
    use std::time::Duration;
    use tollgate::provider::bedrock::{AssumeRole, AssumeRoleConfig, AwsCredentials};
    let sts = MockUpstream::start().await;
    sts.always(Reply::json(200, STS_ANSWER));
    let role = AssumeRole::new(AssumeRoleConfig {
        role_arn: "arn:aws:iam::123456789012:role/r".into(),
        session_name: "s".into(),
        source: AwsCredentials::new("AKIDSOURCEKEY", tollgate::Secret::new(SECRET)),
        region: "us-east-1".into(),
        endpoint: Some(sts.base()),
        duration: Duration::from_secs(900),
        client: None,
    })
    .unwrap();
    let first = role.credentials().await.unwrap();
    assert_eq!(first.access_key_id, "ASIATEMPORARYKEY0001");
    role.credentials().await.unwrap();
    assert_eq!(sts.received().len(), 1);
    // Jump the clock (paused only for the jump, so the sockets run in real time).
    let jump = |secs| async move {
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(secs)).await;
        tokio::time::resume();
    };
    jump(900 - 300 - 5).await;
    role.credentials().await.unwrap();
    assert_eq!(sts.received().len(), 1, "still fresh");
    jump(10).await;
    role.credentials().await.unwrap();
    assert_eq!(sts.received().len(), 2, "refreshed before expiry");
}
