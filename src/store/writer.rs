//! [`SpendWriter`]: completion records → spend logs, in bounded batches.
//!
//! `record` never blocks and never allocates more than one row: the row goes
//! into a bounded queue (a full queue drops it and counts the drop). A
//! background task collects rows and writes a batch every `interval`
//! (LiteLLM's `proxy_batch_write_at`, default 10 s) or as soon as `max_batch`
//! rows are waiting, in one transaction with the spend columns and daily
//! rollups.
//!
//! # What a crash can lose
//!
//! Rows are in memory from the end of their request until their batch
//! commits. A graceful shutdown ([`SpendWriter::shutdown`]) writes them all. A
//! hard kill (SIGKILL, OOM, power loss of a SQLite host) loses the rows of
//! requests that finished in the last `interval` plus the time of the write
//! in progress — at most `capacity + max_batch` rows. Nothing committed is
//! lost (SQLite runs in WAL mode with `synchronous=NORMAL`; a process kill
//! cannot undo a commit).
//!
//! # When the database stalls
//!
//! A failing batch is kept and retried every `interval`; while it is pending
//! the queue fills up to `capacity` and further rows are dropped and counted
//! ([`WriterStats::dropped`]) — memory stays bounded and requests never wait.
//! A batch that keeps failing on a data error (not a connection error) is
//! written row by row, and only the rows the database refuses are dropped
//! ([`WriterStats::rejected`]).

use super::Store;
use super::spend::SpendRow;
use crate::observe::{CompletionRecord, RecordSink};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Settings of a [`SpendWriter`].
#[derive(Clone, Debug)]
pub struct SpendWriterConfig {
    /// How often queued rows are written (LiteLLM's `proxy_batch_write_at`).
    pub interval: Duration,
    /// Rows per transaction; a full batch is written at once.
    pub max_batch: usize,
    /// Rows that may wait in memory; more are dropped (and counted).
    pub capacity: usize,
}

impl Default for SpendWriterConfig {
    fn default() -> Self {
        SpendWriterConfig {
            interval: Duration::from_secs(10),
            max_batch: 500,
            capacity: 10_000,
        }
    }
}

/// Counters of a [`SpendWriter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Rows accepted into the queue.
    pub queued: u64,
    /// Rows committed.
    pub written: u64,
    /// Rows dropped because the queue was full (or the writer stopped).
    pub dropped: u64,
    /// Rows the database refused (data errors), dropped.
    pub rejected: u64,
    /// Batch writes that failed (and were retried).
    pub failed_writes: u64,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    failed_writes: AtomicU64,
}

enum Control {
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// A [`RecordSink`] that writes spend logs. See the [module docs](self).
#[derive(Clone)]
pub struct SpendWriter {
    rows: mpsc::Sender<SpendRow>,
    control: mpsc::Sender<Control>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for SpendWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpendWriter")
            .field("stats", &self.stats())
            .finish()
    }
}

impl SpendWriter {
    /// Starts the writer's background task on the current tokio runtime.
    pub fn spawn(store: Store, config: SpendWriterConfig) -> SpendWriter {
        let capacity = config.capacity.max(1);
        let (rows, rx) = mpsc::channel(capacity);
        let (control, control_rx) = mpsc::channel(16);
        let counters = Arc::new(Counters::default());
        let task = Task {
            store,
            interval: config.interval.max(Duration::from_millis(10)),
            max_batch: config.max_batch.max(1),
            rows: rx,
            control: control_rx,
            counters: counters.clone(),
            batch: Vec::new(),
            failures: 0,
        };
        tokio::spawn(task.run());
        SpendWriter {
            rows,
            control,
            counters,
        }
    }

    /// The counters.
    pub fn stats(&self) -> WriterStats {
        let c = &self.counters;
        WriterStats {
            queued: c.queued.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            failed_writes: c.failed_writes.load(Ordering::Relaxed),
        }
    }

    /// Queues a row (never blocks). `false` if it was dropped.
    pub fn push(&self, row: SpendRow) -> bool {
        match self.rows.try_send(row) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() || n.is_multiple_of(1000) {
                    tracing::warn!(
                        dropped = n,
                        "spend log queue is full (the database is slow or unreachable): dropping spend rows"
                    );
                }
                false
            }
        }
    }

    /// Writes everything queued so far; returns when it is committed (or
    /// when a write failed: the rows stay queued for the next attempt).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Writes everything queued and stops the task, waiting at most `grace`
    /// for the database. Later rows are dropped (and counted).
    pub async fn shutdown(&self, grace: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Shutdown(tx)).await.is_ok() {
            let _ = tokio::time::timeout(grace, rx).await;
        }
        let stats = self.stats();
        tracing::info!(
            written = stats.written,
            dropped = stats.dropped,
            rejected = stats.rejected,
            "spend logs flushed"
        );
    }
}

impl RecordSink for SpendWriter {
    fn wants_attempts(&self) -> bool {
        false
    }

    fn record(&self, record: &CompletionRecord) {
        self.push(SpendRow::from_record(record));
    }
}

struct Task {
    store: Store,
    interval: Duration,
    max_batch: usize,
    rows: mpsc::Receiver<SpendRow>,
    control: mpsc::Receiver<Control>,
    counters: Arc<Counters>,
    batch: Vec<SpendRow>,
    failures: u32,
}

impl Task {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                biased;
                c = self.control.recv() => match c {
                    Some(Control::Flush(ack)) => {
                        self.drain().await;
                        let _ = ack.send(());
                    }
                    Some(Control::Shutdown(ack)) => {
                        self.rows.close();
                        self.drain().await;
                        let _ = ack.send(());
                        return;
                    }
                    None => {
                        self.drain().await;
                        return;
                    }
                },
                row = self.rows.recv(), if self.batch.len() < self.max_batch => match row {
                    Some(r) => {
                        self.batch.push(r);
                        if self.batch.len() >= self.max_batch && self.failures == 0 {
                            self.write().await;
                        }
                    }
                    None => {
                        self.drain().await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    if !self.batch.is_empty() {
                        self.write().await;
                    }
                }
            }
        }
    }

    /// Writes the pending batch and everything queued, batch by batch; stops
    /// at the first batch that cannot be written.
    async fn drain(&mut self) {
        loop {
            while self.batch.len() < self.max_batch {
                match self.rows.try_recv() {
                    Ok(r) => self.batch.push(r),
                    Err(_) => break,
                }
            }
            if self.batch.is_empty() {
                return;
            }
            if !self.write().await {
                return;
            }
        }
    }

    /// Writes the pending batch; `true` if it is done with it.
    async fn write(&mut self) -> bool {
        match self.store.write_spend_inner(&self.batch).await {
            Ok(n) => {
                self.counters.written.fetch_add(n as u64, Ordering::Relaxed);
                self.batch.clear();
                self.failures = 0;
                true
            }
            Err(e) => {
                self.failures += 1;
                self.counters.failed_writes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    error = %e,
                    rows = self.batch.len(),
                    attempt = self.failures,
                    "writing spend logs failed; will retry"
                );
                if self.failures >= 3 && is_data_error(&e) {
                    self.write_one_by_one().await
                } else {
                    false
                }
            }
        }
    }

    /// After repeated data errors: rows one at a time, dropping the ones the
    /// database refuses. Stops (keeping the rest) on a connection error.
    async fn write_one_by_one(&mut self) -> bool {
        let rows = std::mem::take(&mut self.batch);
        let mut rest = rows.into_iter();
        while let Some(row) = rest.next() {
            match self
                .store
                .write_spend_inner(std::slice::from_ref(&row))
                .await
            {
                Ok(n) => {
                    self.counters.written.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if is_data_error(&e) => {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, request_id = %row.request_id, "the database refused a spend row; dropped");
                }
                Err(_) => {
                    self.batch.push(row);
                    self.batch.extend(rest);
                    return false;
                }
            }
        }
        self.failures = 0;
        true
    }
}

/// Whether the database refused the data itself (as opposed to being busy,
/// locked, deadlocked or unreachable, which a retry can fix).
fn is_data_error(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(d) = e else {
        return false;
    };
    let code = d.code();
    !matches!(
        code.as_deref(),
        // PostgreSQL: serialization failure, deadlock, lock timeout, cancel,
        // shutdown; SQLite: busy, locked (and their extended codes).
        Some(
            "40001"
                | "40P01"
                | "55P03"
                | "57014"
                | "57P01"
                | "57P03"
                | "5"
                | "6"
                | "261"
                | "262"
                | "517"
                | "773"
        )
    )
}
