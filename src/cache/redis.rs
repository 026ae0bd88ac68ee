//! [`RedisBackend`]: cached answers in Redis, shared by every replica.
//!
//! Entries are plain string keys `<namespace>:<cache key>` with a `PX` expiry.
//! Every operation is bounded by a short timeout; after a failure the backend
//! is considered down for `retry_after` and operations fail at once, so an
//! outage costs one timeout, not one per request. The layer turns every
//! failure into a cache miss (and a metric), never an error or a hang.

use super::CacheKey;
use super::backend::{CacheBackend, unavailable};
use crate::error::Error;
use crate::provider::BoxFuture;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings of a [`RedisBackend`].
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Key prefix: entries are `<namespace>:<cache key>`; `flush` deletes
    /// exactly the keys under it (default `tollgate:cache`).
    pub namespace: String,
    /// Longest wait for one command (default 250 ms).
    pub op_timeout: Duration,
    /// Longest wait for a connection (default 500 ms).
    pub connect_timeout: Duration,
    /// After a failure, how long to skip Redis (answer misses at once) before
    /// trying again (default 1 s).
    pub retry_after: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            namespace: "tollgate:cache".to_owned(),
            op_timeout: Duration::from_millis(250),
            connect_timeout: Duration::from_millis(500),
            retry_after: Duration::from_secs(1),
        }
    }
}

/// The Redis backend. See the [module docs](self).
///
/// ```no_run
/// use tollgate::cache::{CacheConfig, RedisBackend, RedisOptions, ResponseCache};
///
/// let backend = RedisBackend::open("redis://127.0.0.1:6379", RedisOptions::default()).unwrap();
/// let cache = ResponseCache::new(backend, CacheConfig::default());
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    shared: Arc<Shared>,
}

struct Shared {
    client: redis::Client,
    options: RedisOptions,
    conn: Mutex<Option<ConnectionManager>>,
    epoch: Instant,
    /// Milliseconds after `epoch` until which Redis is skipped.
    down_until: AtomicU64,
    down: AtomicBool,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection info may hold a password: show only the address.
        f.debug_struct("RedisBackend")
            .field("addr", &self.shared.client.get_connection_info().addr())
            .field("namespace", &self.shared.options.namespace)
            .finish()
    }
}

impl RedisBackend {
    /// A backend over `client` (no connection is made until first use).
    pub fn new(client: redis::Client, options: RedisOptions) -> Self {
        RedisBackend {
            shared: Arc::new(Shared {
                client,
                options,
                conn: Mutex::new(None),
                epoch: Instant::now(),
                down_until: AtomicU64::new(0),
                down: AtomicBool::new(false),
            }),
        }
    }

    /// A backend for a `redis://[user][:password@]host[:port][/db]` URL.
    pub fn open(url: &str, options: RedisOptions) -> Result<Self, Error> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::bad_request(format!("invalid Redis URL: {}", e.category())))?;
        Ok(RedisBackend::new(client, options))
    }

    /// A backend for `host:port` with optional credentials and database.
    pub fn connect_to(
        host: &str,
        port: u16,
        username: Option<&str>,
        password: Option<&str>,
        db: i64,
        options: RedisOptions,
    ) -> Result<Self, Error> {
        let mut settings = redis::RedisConnectionInfo::default().set_db(db);
        if let Some(u) = username {
            settings = settings.set_username(u);
        }
        if let Some(p) = password {
            settings = settings.set_password(p);
        }
        let info = redis::IntoConnectionInfo::into_connection_info((host.to_owned(), port))
            .map_err(|e| Error::bad_request(format!("invalid Redis address: {}", e.category())))?
            .set_redis_settings(settings);
        let client = redis::Client::open(info)
            .map_err(|e| Error::bad_request(format!("invalid Redis address: {}", e.category())))?;
        Ok(RedisBackend::new(client, options))
    }

    /// The settings.
    pub fn options(&self) -> &RedisOptions {
        &self.shared.options
    }

    fn redis_key(&self, key: CacheKey) -> String {
        format!("{}:{}", self.shared.options.namespace, key)
    }
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn connection(&self) -> Result<ConnectionManager, Error> {
        if self.now_ms() < self.down_until.load(Ordering::Relaxed) {
            return Err(unavailable("redis cache is unavailable (retrying shortly)"));
        }
        let mut slot = self
            .conn
            .lock()
            .map_err(|_| unavailable("redis cache connection lock poisoned"))?;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(self.options.op_timeout))
            .set_number_of_retries(1)
            .set_max_delay(self.options.retry_after);
        let c = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(|e| unavailable(format!("redis cache connection failed: {}", e.category())))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    fn failed(&self, op: &'static str, why: &str) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(self.options.retry_after.as_millis()).unwrap_or(1000));
        self.down_until.store(until, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                op,
                error = why,
                retry_after_ms = self.options.retry_after.as_millis() as u64,
                "redis cache unavailable: serving without the cache"
            );
        }
    }

    fn succeeded(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("redis cache reachable again");
        }
    }

    /// Runs one operation with a connection, bounded by `limit`.
    async fn run<T, F, Fut>(&self, op: &'static str, limit: Duration, f: F) -> Result<T, Error>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection()?;
        match tokio::time::timeout(limit, f(conn)).await {
            Ok(Ok(v)) => {
                self.succeeded();
                Ok(v)
            }
            Ok(Err(e)) => {
                let why = e.to_string();
                self.failed(op, &why);
                Err(unavailable(format!("redis cache {op} failed: {why}")))
            }
            Err(_) => {
                self.failed(op, "timed out");
                Err(unavailable(format!("redis cache {op} timed out")))
            }
        }
    }

    /// The bound of one command: connecting (on first use or after an outage) plus answering.
    fn limit(&self) -> Duration {
        self.options.op_timeout + self.options.connect_timeout
    }
}

/// Escapes glob characters so a namespace matches only itself in `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl CacheBackend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn get(&self, key: CacheKey) -> BoxFuture<Result<Option<Bytes>, Error>> {
        let shared = self.shared.clone();
        let k = self.redis_key(key);
        Box::pin(async move {
            let limit = shared.limit();
            shared
                .run("get", limit, |mut c| async move {
                    redis::cmd("GET")
                        .arg(&k)
                        .query_async::<Option<Vec<u8>>>(&mut c)
                        .await
                })
                .await
                .map(|v| v.map(Bytes::from))
        })
    }

    fn set(&self, key: CacheKey, value: Bytes, ttl: Duration) -> BoxFuture<Result<(), Error>> {
        let shared = self.shared.clone();
        let k = self.redis_key(key);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        Box::pin(async move {
            let limit = shared.limit();
            shared
                .run("set", limit, |mut c| async move {
                    redis::cmd("SET")
                        .arg(&k)
                        .arg(value.as_ref())
                        .arg("PX")
                        .arg(ms)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await
        })
    }

    fn delete(&self, keys: Vec<CacheKey>) -> BoxFuture<Result<u64, Error>> {
        let shared = self.shared.clone();
        let names: Vec<String> = keys.into_iter().map(|k| self.redis_key(k)).collect();
        Box::pin(async move {
            if names.is_empty() {
                return Ok(0);
            }
            let limit = shared.limit();
            shared
                .run("delete", limit, |mut c| async move {
                    redis::cmd("DEL")
                        .arg(&names)
                        .query_async::<u64>(&mut c)
                        .await
                })
                .await
        })
    }

    fn flush(&self) -> BoxFuture<Result<(), Error>> {
        let shared = self.shared.clone();
        let pattern = format!("{}:*", glob_escape(&shared.options.namespace));
        Box::pin(async move {
            // An admin operation over possibly many keys: a longer bound.
            shared
                .run("flush", Duration::from_secs(60), |mut c| async move {
                    let mut cursor: u64 = 0;
                    loop {
                        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut c)
                            .await?;
                        if !keys.is_empty() {
                            redis::cmd("UNLINK")
                                .arg(&keys)
                                .query_async::<u64>(&mut c)
                                .await?;
                        }
                        if next == 0 {
                            return Ok(());
                        }
                        cursor = next;
                    }
                })
                .await
        })
    }

    fn ping(&self) -> BoxFuture<Result<(), Error>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            // An explicit check: try even while marked down.
            shared.down_until.store(0, Ordering::Relaxed);
            let limit = shared.limit();
            shared
                .run("ping", limit, |mut c| async move {
                    redis::cmd("PING").query_async::<String>(&mut c).await
                })
                .await
                .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_globs_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(glob_escape("tollgate:cache"), "tollgate:cache");
    }

    #[test]
    fn debug_hides_credentials() {
        let b = RedisBackend::connect_to(
            "127.0.0.1",
            6379,
            Some("u"),
            Some("s3cret-pass"),
            0,
            RedisOptions::default(),
        )
        .unwrap();
        let shown = format!("{b:?}");
        assert!(!shown.contains("s3cret-pass"), "{shown}");
        assert!(shown.contains("6379"), "{shown}");
    }
}
