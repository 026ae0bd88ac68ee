//! Callbacks: exporters that receive every record off the request path.
//!
//! A [`Callback`] does I/O — an OTLP export, a webhook POST, a file append.
//! It never runs on a request: [`CallbackQueue`] (a [`RecordSink`]) puts each
//! record into one bounded queue per callback with a non-blocking send, and a
//! worker task per callback takes records out in batches (whatever has
//! queued up, at most [`CallbackSet::batch_size`]). A slow or stuck callback
//! only fills its own queue; when the queue is full, further records for that
//! callback are dropped and counted (`tollgate_callback_dropped_total`, and
//! [`CallbackQueue::dropped`]) — requests never wait and memory stays bounded.
//!
//! ```
//! use tollgate::observe::callback::{Callback, CallbackFuture, CallbackSet, Event, Filter};
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! #[derive(Default)]
//! struct Count(AtomicUsize);
//! impl Callback for Count {
//!     fn name(&self) -> &str { "count" }
//!     fn handle<'a>(&'a self, batch: &'a [Event]) -> CallbackFuture<'a> {
//!         self.0.fetch_add(batch.len(), Ordering::SeqCst);
//!         Box::pin(async { Ok(()) })
//!     }
//! }
//!
//! # tokio_test::block_on(async {
//! let count = Arc::new(Count::default());
//! let (queue, runner) = CallbackSet::new().callback(count.clone(), Filter::All).build();
//! let workers = runner.spawn();
//! // `queue` is a RecordSink: hand it to an ObserveLayer.
//! # drop(queue);
//! workers.shutdown(std::time::Duration::from_secs(1)).await;
//! # });
//! ```

use super::metrics::CallbackHandles;
use super::{AttemptRecord, CompletionRecord, RecordSink, RecordStatus};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// What a callback receives.
#[derive(Clone, Debug)]
pub enum Event {
    /// A request's record.
    Record(Arc<CompletionRecord>),
    /// An upstream attempt's record (only to callbacks that
    /// [want them](Callback::wants_attempts)).
    Attempt(Arc<AttemptRecord>),
}

/// The future a callback returns for a batch.
pub type CallbackFuture<'a> = Pin<Box<dyn Future<Output = Result<(), CallbackError>> + Send + 'a>>;

/// A batch a callback could not deliver (after its own retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackError(pub String);

impl std::fmt::Display for CallbackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CallbackError {}

/// An exporter of records. See the [module docs](self).
pub trait Callback: Send + Sync + 'static {
    /// A short name (a metric label and in logs): `otel`, `generic_api`, ….
    fn name(&self) -> &str;

    /// Whether it also wants [`Event::Attempt`]s (default: no).
    fn wants_attempts(&self) -> bool {
        false
    }

    /// Delivers a batch. Retries are the callback's own business; an error
    /// counts the batch's records as failed.
    fn handle<'a>(&'a self, batch: &'a [Event]) -> CallbackFuture<'a>;

    /// Flushes anything buffered (on shutdown).
    fn flush(&self) -> CallbackFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

/// Which records a callback gets (LiteLLM's `success_callback`,
/// `failure_callback`, `callbacks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Every record.
    All,
    /// Successful requests only.
    Success,
    /// Failed and cancelled requests only.
    Failure,
}

impl Filter {
    fn wants(self, r: &CompletionRecord) -> bool {
        match self {
            Filter::All => true,
            Filter::Success => r.status == RecordStatus::Success,
            Filter::Failure => r.status != RecordStatus::Success,
        }
    }
}

struct Lane {
    name: Arc<str>,
    filter: Filter,
    attempts: bool,
    tx: mpsc::Sender<Event>,
    handles: CallbackHandles,
    dropped: AtomicU64,
    queued: AtomicU64,
}

impl Lane {
    fn send(&self, e: Event) {
        match self.tx.try_send(e) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::Relaxed);
                self.handles.queued.increment(1);
                self.handles.depth.increment(1.0);
            }
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.handles.dropped.increment(1);
            }
        }
    }
}

/// Builds a [`CallbackQueue`] and its [`CallbackRunner`].
pub struct CallbackSet {
    callbacks: Vec<(Arc<dyn Callback>, Filter)>,
    capacity: usize,
    batch_size: usize,
}

impl Default for CallbackSet {
    fn default() -> Self {
        CallbackSet::new()
    }
}

impl CallbackSet {
    /// No callbacks yet; queues of 10 000 records, batches of up to 512.
    pub fn new() -> Self {
        CallbackSet {
            callbacks: Vec::new(),
            capacity: 10_000,
            batch_size: 512,
        }
    }

    /// Adds a callback that gets the records `filter` lets through.
    pub fn callback(mut self, callback: Arc<dyn Callback>, filter: Filter) -> Self {
        self.callbacks.push((callback, filter));
        self
    }

    /// Records each callback's queue holds at most (at least 1).
    pub fn capacity(mut self, records: usize) -> Self {
        self.capacity = records.max(1);
        self
    }

    /// Largest batch handed to a callback at once (at least 1).
    pub fn batch_size(mut self, records: usize) -> Self {
        self.batch_size = records.max(1);
        self
    }

    /// Whether no callback was added.
    pub fn is_empty(&self) -> bool {
        self.callbacks.is_empty()
    }

    /// The queue (a [`RecordSink`]) and the runner that drains it.
    pub fn build(self) -> (CallbackQueue, CallbackRunner) {
        let mut lanes = Vec::new();
        let mut workers = Vec::new();
        for (cb, filter) in self.callbacks {
            let (tx, rx) = mpsc::channel(self.capacity);
            let name: Arc<str> = Arc::from(cb.name());
            let handles = CallbackHandles::new(&name);
            lanes.push(Lane {
                name: name.clone(),
                filter,
                attempts: cb.wants_attempts(),
                tx,
                handles: handles.clone(),
                dropped: AtomicU64::new(0),
                queued: AtomicU64::new(0),
            });
            workers.push(Worker {
                callback: cb,
                rx,
                handles,
                batch_size: self.batch_size,
            });
        }
        let any_attempts = lanes.iter().any(|l| l.attempts);
        (
            CallbackQueue {
                lanes: Arc::new(lanes),
                any_attempts,
            },
            CallbackRunner { workers },
        )
    }
}

/// The [`RecordSink`] side: a non-blocking send per record and callback.
#[derive(Clone)]
pub struct CallbackQueue {
    lanes: Arc<Vec<Lane>>,
    any_attempts: bool,
}

impl std::fmt::Debug for CallbackQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.lanes.iter().map(|l| &*l.name))
            .finish()
    }
}

impl CallbackQueue {
    fn lane(&self, name: &str) -> Option<&Lane> {
        self.lanes.iter().find(|l| &*l.name == name)
    }

    /// Records dropped so far because `callback`'s queue was full.
    pub fn dropped(&self, callback: &str) -> u64 {
        self.lane(callback)
            .map_or(0, |l| l.dropped.load(Ordering::Relaxed))
    }

    /// Records queued so far for `callback`.
    pub fn queued(&self, callback: &str) -> u64 {
        self.lane(callback)
            .map_or(0, |l| l.queued.load(Ordering::Relaxed))
    }

    /// Records waiting in `callback`'s queue now.
    pub fn depth(&self, callback: &str) -> usize {
        self.lane(callback)
            .map_or(0, |l| l.tx.max_capacity() - l.tx.capacity())
    }

    /// The callbacks' names.
    pub fn names(&self) -> Vec<String> {
        self.lanes.iter().map(|l| l.name.to_string()).collect()
    }
}

impl RecordSink for CallbackQueue {
    fn record(&self, record: &CompletionRecord) {
        let mut shared: Option<Arc<CompletionRecord>> = None;
        for lane in self.lanes.iter().filter(|l| l.filter.wants(record)) {
            let r = shared.get_or_insert_with(|| Arc::new(record.clone()));
            lane.send(Event::Record(r.clone()));
        }
    }

    fn wants_attempts(&self) -> bool {
        self.any_attempts
    }

    fn attempt(&self, attempt: &AttemptRecord) {
        if !self.any_attempts {
            return;
        }
        let shared = Arc::new(attempt.clone());
        for lane in self.lanes.iter().filter(|l| l.attempts) {
            lane.send(Event::Attempt(shared.clone()));
        }
    }
}

struct Worker {
    callback: Arc<dyn Callback>,
    rx: mpsc::Receiver<Event>,
    handles: CallbackHandles,
    batch_size: usize,
}

impl Worker {
    async fn deliver(&self, batch: &[Event]) {
        if let Err(e) = self.callback.handle(batch).await {
            self.handles.failed.increment(batch.len() as u64);
            tracing::warn!(callback = self.callback.name(), records = batch.len(), error = %e, "callback failed");
        }
    }

    async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            let got = tokio::select! {
                biased;
                n = self.rx.recv_many(&mut batch, self.batch_size) => n,
                _ = stop.changed() => 0,
            };
            if got == 0 {
                break;
            }
            self.handles.depth.decrement(got as f64);
            self.deliver(&batch).await;
            batch.clear();
        }
        // Shutting down: deliver what is already queued, then flush.
        while let Ok(e) = self.rx.try_recv() {
            batch.push(e);
            if batch.len() == self.batch_size {
                self.handles.depth.decrement(batch.len() as f64);
                self.deliver(&batch).await;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.handles.depth.decrement(batch.len() as f64);
            self.deliver(&batch).await;
        }
        let _ = self.callback.flush().await;
    }
}

/// The workers of a [`CallbackQueue`], not yet running.
pub struct CallbackRunner {
    workers: Vec<Worker>,
}

impl CallbackRunner {
    /// Starts one task per callback (inside a Tokio runtime).
    pub fn spawn(self) -> CallbackWorkers {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let tasks = self
            .workers
            .into_iter()
            .map(|w| tokio::spawn(w.run(rx.clone())))
            .collect();
        CallbackWorkers { stop, tasks }
    }
}

/// Running callback workers.
pub struct CallbackWorkers {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl CallbackWorkers {
    /// Delivers what is queued and flushes, for at most `grace`; then stops.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let aborts: Vec<_> = self.tasks.iter().map(|t| t.abort_handle()).collect();
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            for t in aborts {
                t.abort();
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::Identity;
    use crate::observe::trace::SpanIds;
    use std::sync::atomic::AtomicUsize;
    use std::time::SystemTime;

    pub(crate) fn record(status: RecordStatus) -> CompletionRecord {
        CompletionRecord {
            request_id: Arc::from("r1"),
            call_type: "chat",
            model: "m".into(),
            deployment: None,
            stream: false,
            start_time: SystemTime::now(),
            latency: Duration::from_millis(5),
            time_to_first_token: None,
            upstream_latency: None,
            usage: None,
            usage_estimated: false,
            cost: None,
            status,
            http_status: 200,
            error: None,
            finish_reason: None,
            attempts: 1,
            fallbacks: 0,
            cache_hit: false,
            tags: Vec::new(),
            end_user: None,
            identity: Identity::anonymous(),
            trace: SpanIds::default(),
            overhead: None,
            params: Default::default(),
            content: None,
        }
    }

    /// Never finishes a batch.
    struct Stuck(AtomicUsize);
    impl Callback for Stuck {
        fn name(&self) -> &str {
            "stuck"
        }
        fn handle<'a>(&'a self, _: &'a [Event]) -> CallbackFuture<'a> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::pending())
        }
    }

    #[derive(Default)]
    struct Collect(std::sync::Mutex<Vec<RecordStatus>>);
    impl Callback for Collect {
        fn name(&self) -> &str {
            "collect"
        }
        fn handle<'a>(&'a self, batch: &'a [Event]) -> CallbackFuture<'a> {
            for e in batch {
                if let Event::Record(r) = e {
                    self.0.lock().unwrap().push(r.status);
                }
            }
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn a_stuck_callback_never_slows_records_and_its_queue_stays_bounded() {
        let stuck = Arc::new(Stuck(AtomicUsize::new(0)));
        let collect = Arc::new(Collect::default());
        let (queue, runner) = CallbackSet::new()
            .capacity(100)
            .batch_size(10)
            .callback(stuck.clone(), Filter::All)
            .callback(collect.clone(), Filter::All)
            .build();
        let workers = runner.spawn();
        // Let the stuck worker take its first batch and hang on it.
        queue.record(&record(RecordStatus::Success));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while stuck.0.load(Ordering::SeqCst) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the worker never started"
            );
            tokio::task::yield_now().await;
        }
        let r = record(RecordStatus::Success);
        let started = std::time::Instant::now();
        for _ in 0..100_000 {
            queue.record(&r);
        }
        let took = started.elapsed();
        // 100k non-blocking sends; a blocking one would never return.
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert_eq!(queue.depth("stuck"), 100, "bounded at its capacity");
        assert_eq!(queue.queued("stuck"), 101);
        assert_eq!(queue.dropped("stuck"), 100_000 - 100);
        // The other callback is not held up by the stuck one.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got = collect.0.lock().unwrap().len() as u64;
            if got == queue.queued("collect") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "collect got {got}");
            tokio::task::yield_now().await;
        }
        assert!(queue.queued("collect") >= 100);
        // Shutdown gives up on the stuck one within the grace period.
        let started = std::time::Instant::now();
        workers.shutdown(Duration::from_millis(200)).await;
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn filters_split_success_and_failure_and_shutdown_drains() {
        let ok = Arc::new(Collect::default());
        let (queue, runner) = CallbackSet::new()
            .callback(ok.clone(), Filter::Failure)
            .build();
        queue.record(&record(RecordStatus::Success));
        queue.record(&record(RecordStatus::Failure));
        queue.record(&record(RecordStatus::Cancelled));
        // Not yet running: shutdown still delivers what was queued.
        runner.spawn().shutdown(Duration::from_secs(5)).await;
        assert_eq!(
            *ok.0.lock().unwrap(),
            vec![RecordStatus::Failure, RecordStatus::Cancelled]
        );
    }
}
