//! tollgate in-process, like LiteLLM's `completion()`.
//!
//!     cargo run --example sdk
//!
//! Runs offline on the mock provider. With `OPENAI_API_KEY` set, the
//! `gpt-4o-mini` group is served by OpenAI instead.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use futures_util::StreamExt;
use tollgate::provider::{Mock, MockConfig, OpenAi, OpenAiConfig};
use tollgate::types::{Message, Tool};
use tollgate::{Client, Secret};

#[tokio::main]
async fn main() -> Result<(), tollgate::Error> {
    let builder = Client::builder();
    let builder = match std::env::var("OPENAI_API_KEY") {
        Ok(key) => builder.model(
            "gpt-4o-mini",
            OpenAi::new(OpenAiConfig::new("gpt-4o-mini").api_key(Secret::new(key)))?,
        ),
        Err(_) => builder.model(
            "gpt-4o-mini",
            Mock::new(MockConfig::new("mock/gpt-4o-mini")),
        ),
    };
    let client = builder.build();

    // One call.
    let answer = client
        .completion(
            "gpt-4o-mini",
            vec![
                Message::system("You are terse."),
                Message::user("What is tollgate?"),
            ],
        )
        .temperature(0.2)
        .max_tokens(100)
        .await?;
    println!("answer: {}", answer.text().unwrap_or_default());
    if let Some(u) = &answer.usage {
        println!(
            "usage: {} prompt + {} completion tokens",
            u.prompt_tokens, u.completion_tokens
        );
    }

    // Streaming.
    let mut stream = client
        .completion("gpt-4o-mini", vec![Message::user("Count to five.")])
        .stream()
        .await?;
    print!("stream: ");
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        for choice in &chunk.choices {
            if let Some(t) = &choice.delta.content {
                print!("{t}");
            }
        }
        if let Some(u) = &chunk.usage {
            print!("  [{} tokens]", u.total_tokens);
        }
    }
    println!();

    // Tools.
    let weather = Tool::function(
        "get_weather",
        "Current weather in a city",
        serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    );
    let resp = client
        .completion("gpt-4o-mini", vec![Message::user("Weather in Oslo?")])
        .tools(vec![weather])
        .await?;
    println!("finish_reason: {:?}", resp.choices[0].finish_reason);
    Ok(())
}
