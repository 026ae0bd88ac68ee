//! The change feed: every management write appends `(kind, id)` to
//! `tollgate_changes` in its own transaction; each replica polls the table
//! and drops what it cached about those ids, so a key blocked or deleted on
//! one replica stops working on the others within one poll interval.
//!
//! Sequence numbers can commit out of order under concurrency, so the poll
//! reads by time with an overlap and remembers which changes it has applied.

use super::rows::Get;
use super::{Store, on_pool};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Something cached changed: `(kind, id)` with kind `key` (id: key hash),
/// `team`, `user`, `end_user` or `all`.
pub(crate) type ChangeListener = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// How far back each poll looks (covers transactions that commit late and
/// clock differences between replicas).
const OVERLAP_SECS: i64 = 30;

impl Store {
    /// Keeps the caches of `auth` and `end_users` in step with changes made
    /// on other replicas: polls the change feed every `every` (2 s is a good
    /// value) until the returned task is aborted.
    pub fn follow_changes(
        &self,
        auth: Option<super::KeyAuth>,
        end_users: Option<super::EndUserDirectory>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        self.spawn_change_feed(
            every,
            Arc::new(move |kind: &str, id: &str| {
                if let Some(a) = &auth {
                    a.on_change(kind, id);
                }
                if let Some(d) = &end_users {
                    match kind {
                        "end_user" => d.invalidate(id),
                        "all" => d.invalidate_all(),
                        _ => {}
                    }
                }
            }),
        )
    }

    /// Polls the change feed every `every` and calls `listener` for each new
    /// change, until the returned task is aborted. Old changes (over a day)
    /// are pruned now and then.
    pub(crate) fn spawn_change_feed(
        &self,
        every: Duration,
        listener: ChangeListener,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut seen: HashMap<i64, i64> = HashMap::new();
            let mut since = super::time::now_secs() - OVERLAP_SECS;
            let mut polls: u64 = 0;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                polls += 1;
                let now = super::time::now_secs();
                match store.changes_since(since).await {
                    Ok(rows) => {
                        let mut dirty: HashSet<(String, String)> = HashSet::new();
                        for (seq, kind, id, at) in rows {
                            if seen.insert(seq, at).is_none() {
                                dirty.insert((kind, id));
                            }
                        }
                        for (kind, id) in &dirty {
                            listener(kind, id);
                        }
                        since = now - OVERLAP_SECS;
                        seen.retain(|_, at| *at >= since - OVERLAP_SECS);
                    }
                    Err(e) => tracing::debug!(error = %e, "change feed poll failed"),
                }
                if polls.is_multiple_of(1800) {
                    let _ = store.prune_changes(now - 86_400).await;
                }
            }
        })
    }

    async fn changes_since(
        &self,
        since: i64,
    ) -> Result<Vec<(i64, String, String, i64)>, sqlx::Error> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT seq, kind, id, at FROM tollgate_changes WHERE at >= $1 ORDER BY seq LIMIT 10000",
            )
            .bind(since)
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| Ok((r.int("seq")?, r.text("kind")?, r.text("id")?, r.int("at")?)))
                .collect()
        })
    }

    async fn prune_changes(&self, before: i64) -> Result<(), sqlx::Error> {
        on_pool!(self, |p| {
            sqlx::query("DELETE FROM tollgate_changes WHERE at < $1")
                .bind(before)
                .execute(p)
                .await
                .map(|_| ())
        })
    }
}
