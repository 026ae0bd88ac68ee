#![doc = include_str!("../README.md")]

pub mod auth;
pub mod cache;
pub mod client;
pub mod context;
pub mod cost;
pub mod edge;
pub mod error;
pub mod fallback;
pub mod limits;
pub mod observe;
pub mod pricing;
pub mod provider;
#[cfg(feature = "proxy")]
pub mod proxy;
pub mod retry;
pub mod router;
pub mod secret;
pub mod sse;
#[cfg(feature = "sql")]
pub mod store;
pub mod stream;
pub mod timeout;
pub mod tokens;
pub mod transport;
pub mod types;
pub mod util;

pub use client::Client;
pub use error::{Error, ErrorKind};
pub use secret::Secret;
pub use types::{
    ChatChunk, ChatCompletion, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse,
    Usage,
};
