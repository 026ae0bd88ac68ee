//! The SDK face of routing and reliability: `Client` calls with per-call
//! `fallbacks`, `num_retries` and `timeout`, against leaves that fail on purpose.

use futures_util::StreamExt;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tollgate::client::Client;
use tollgate::error::{Error, ErrorKind};
use tollgate::provider::{BoxFuture, Mock, MockConfig};
use tollgate::router::Deployment;
use tollgate::stream::ChatStream;
use tollgate::types::{ChatRequest, ChatResponse, Message};
use tower::{Service, ServiceExt};

/// How a scripted failure is delivered.
#[derive(Clone, Copy, Debug)]
enum How {
    /// The call fails.
    Error,
    /// The call answers a stream whose first item is the error.
    StreamBeforeFirstChunk,
    /// The call answers a stream: one good chunk, then the error.
    StreamAfterFirstChunk,
    /// The call never answers.
    Hang,
}

/// A leaf of group `name` that fails `failures` times (as `how`), then
/// answers like the mock provider. Every call is logged in `log`.
#[derive(Clone)]
struct Scripted {
    name: String,
    failures: Arc<Mutex<VecDeque<Error>>>,
    how: How,
    log: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn deployment(name: &str, failures: Vec<Error>, how: How, log: &Log) -> Deployment {
        let leaf = Scripted {
            name: name.to_owned(),
            failures: Arc::new(Mutex::new(failures.into())),
            how,
            log: log.0.clone(),
        };
        let info = MockConfig::new(&format!("mock/{name}")).info;
        Deployment::new(info, leaf)
    }
}

impl Service<ChatRequest> for Scripted {
    type Response = ChatResponse;
    type Error = Error;
    type Future = BoxFuture<Result<ChatResponse, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        self.log.lock().unwrap().push(self.name.clone());
        let failure = self.failures.lock().unwrap().pop_front();
        let how = self.how;
        let mock = Mock::new(MockConfig::new(&format!("mock/{}", self.name)));
        Box::pin(async move {
            let Some(err) = failure else {
                return mock.oneshot(req).await;
            };
            match how {
                How::Error => Err(err),
                How::Hang => std::future::pending().await,
                How::StreamBeforeFirstChunk => Ok(ChatResponse::stream(ChatStream::from_results(
                    vec![Err(err)],
                ))),
                How::StreamAfterFirstChunk => {
                    let good = mock.oneshot(req).await?.into_stream().ok().unwrap();
                    Ok(ChatResponse::stream(ChatStream::new(
                        good.take(1).chain(futures_util::stream::iter([Err(err)])),
                    )))
                }
            }
        })
    }
}

#[derive(Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn upstream(status: u16) -> Error {
    Error::new(
        ErrorKind::Upstream(status),
        format!("upstream said {status}"),
    )
    .with_provider("test")
}

fn n_failures(n: usize, status: u16) -> Vec<Error> {
    (0..n).map(|_| upstream(status)).collect()
}

fn hi() -> Vec<Message> {
    vec![Message::user("hi")]
}

#[tokio::test(start_paused = true)]
async fn fallbacks_are_tried_in_order_and_the_answer_keeps_the_asked_name() {
    let log = Log::default();
    let client = Client::builder()
        .deployment(Scripted::deployment(
            "gpt-4o",
            n_failures(9, 500),
            How::Error,
            &log,
        ))
        .deployment(Scripted::deployment(
            "claude-sonnet",
            n_failures(9, 503),
            How::Error,
            &log,
        ))
        .deployment(Scripted::deployment(
            "gemini-flash",
            vec![],
            How::Error,
            &log,
        ))
        .build();
    let resp = client
        .completion("gpt-4o", hi())
        .fallbacks(["claude-sonnet", "gemini-flash"])
        .num_retries(0)
        .send()
        .await
        .unwrap();
    assert_eq!(log.calls(), ["gpt-4o", "claude-sonnet", "gemini-flash"]);
    let served = resp.meta.deployment.clone().unwrap();
    assert_eq!(&*served.model_group, "gemini-flash");
    assert_eq!(resp.meta.fallbacks, 2);
    assert_eq!(resp.meta.attempts, 3);
    assert_eq!(resp.into_completion().unwrap().model, "gpt-4o");
}

#[tokio::test(start_paused = true)]
async fn the_builders_fallbacks_apply_and_a_calls_own_list_replaces_them() {
    let log = Log::default();
    let client = Client::builder()
        .deployment(Scripted::deployment(
            "gpt-4o",
            n_failures(9, 500),
            How::Error,
            &log,
        ))
        .deployment(Scripted::deployment(
            "claude-sonnet",
            vec![],
            How::Error,
            &log,
        ))
        .deployment(Scripted::deployment(
            "gemini-flash",
            vec![],
            How::Error,
            &log,
        ))
        .fallbacks("gpt-4o", ["claude-sonnet"])
        .num_retries(0)
        .build();
    let resp = client.completion("gpt-4o", hi()).send().await.unwrap();
    assert_eq!(&*resp.meta.deployment.unwrap().model_group, "claude-sonnet");
    let resp = client
        .completion("gpt-4o", hi())
        .fallbacks(["gemini-flash"])
        .send()
        .await
        .unwrap();
    assert_eq!(&*resp.meta.deployment.unwrap().model_group, "gemini-flash");
    assert_eq!(
        log.calls(),
        ["gpt-4o", "claude-sonnet", "gpt-4o", "gemini-flash"]
    );
}

#[tokio::test(start_paused = true)]
async fn num_retries_sets_how_many_attempts_a_call_gets() {
    let log = Log::default();
    let client = Client::builder()
        .deployment(Scripted::deployment(
            "gpt-4o",
            n_failures(2, 500),
            How::Error,
            &log,
        ))
        .build();
    let resp = client
        .completion("gpt-4o", hi())
        .num_retries(2)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.meta.attempts, 3);
    assert_eq!(log.calls().len(), 3);

    let log = Log::default();
    let client = Client::builder()
        .deployment(Scripted::deployment(
            "gpt-4o",
            n_failures(5, 503),
            How::Error,
            &log,
        ))
        .num_retries(4)
        .build();
    let err = client
        .completion("gpt-4o", hi())
        .num_retries(1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream(503));
    assert_eq!(err.attempts(), 2, "the call's num_retries wins");
    assert_eq!(log.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn bad_requests_are_never_retried() {
    let log = Log::default();
    let client = Client::builder()
        .deployment(Scripted::deployment(
            "gpt-4o",
            n_failures(1, 400),
            How::Error,
            &log,
        ))
        .build();
    let err = client
        .completion("gpt-4o", hi())
        .num_retries(5)
        .await
        .unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(log.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_calls_timeout_fires_and_bounds_every_attempt() {
    let log = Log::default();
    let client = Client::builder()
        .deployment(Scripted::deployment(
            "gpt-4o",
            n_failures(9, 500),
            How::Hang,
            &log,
        ))
        .build();
    let started = Instant::now();
    let err = client
        .completion("gpt-4o", hi())
        .timeout(Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Timeout(_)), "{err:?}");
    assert_eq!(err.status(), 408);
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert_eq!(
        log.calls().len(),
        1,
        "the hanging attempt held the whole budget"
    );

    // The builder's timeout applies when the call sets none; the call's may shorten it.
    let log = Log::default();
    let client = Client::builder()
        .deployment(Scripted::deployment(
            "gpt-4o",
            n_failures(9, 500),
            How::Hang,
            &log,
        ))
        .timeout(Duration::from_secs(10))
        .build();
    let started = Instant::now();
    let err = client.completion("gpt-4o", hi()).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Timeout(_)), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    let started = Instant::now();
    client
        .completion("gpt-4o", hi())
        .timeout(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    let started = Instant::now();
    client
        .completion("gpt-4o", hi())
        .timeout(Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(10),
        "a call may only shorten it"
    );
    // Streams too.
    let started = Instant::now();
    let err = client
        .completion("gpt-4o", hi())
        .stream()
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Timeout(_)), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_the_calls_timeout() {
    let log = Log::default();
    let client = Client::builder()
        .deployment(Scripted::deployment(
            "gpt-4o",
            n_failures(1000, 500),
            How::Error,
            &log,
        ))
        .build();
    let started = Instant::now();
    let err = client
        .completion("gpt-4o", hi())
        .num_retries(1000)
        .timeout(Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() <= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // No wait is started that would end past the deadline: the caller gets
    // the last upstream error, not a timeout.
    assert_eq!(err.kind(), ErrorKind::Upstream(500), "{err:?}");
    assert!(log.calls().len() < 1000);
}

#[tokio::test(start_paused = true)]
async fn a_stream_falls_back_before_its_first_chunk() {
    let log = Log::default();
    let client = Client::builder()
        .deployment(Scripted::deployment(
            "gpt-4o",
            n_failures(9, 500),
            How::StreamBeforeFirstChunk,
            &log,
        ))
        .deployment(Scripted::deployment(
            "claude-sonnet",
            vec![],
            How::Error,
            &log,
        ))
        .build();
    let resp = client
        .completion("gpt-4o", hi())
        .fallbacks(["claude-sonnet"])
        .num_retries(1)
        .stream_response()
        .await
        .unwrap();
    assert_eq!(
        &*resp.meta.deployment.clone().unwrap().model_group,
        "claude-sonnet"
    );
    assert_eq!(resp.meta.fallbacks, 1);
    assert_eq!(log.calls(), ["gpt-4o", "gpt-4o", "claude-sonnet"]);
    let chunks: Vec<_> = resp.into_stream().unwrap().collect().await;
    assert!(chunks.len() > 1);
    for c in chunks {
        assert_eq!(c.unwrap().model, "gpt-4o");
    }
}

#[tokio::test(start_paused = true)]
async fn after_the_first_chunk_a_stream_failure_is_in_band_and_nothing_is_retried() {
    let log = Log::default();
    let client = Client::builder()
        .deployment(Scripted::deployment(
            "gpt-4o",
            n_failures(1, 500),
            How::StreamAfterFirstChunk,
            &log,
        ))
        .deployment(Scripted::deployment(
            "claude-sonnet",
            vec![],
            How::Error,
            &log,
        ))
        .build();
    let mut stream = client
        .completion("gpt-4o", hi())
        .fallbacks(["claude-sonnet"])
        .num_retries(3)
        .stream()
        .await
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.model, "gpt-4o");
    let err = stream.next().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream(500));
    assert!(stream.next().await.is_none());
    assert_eq!(log.calls(), ["gpt-4o"]);
}
