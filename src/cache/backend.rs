//! Where cached answers live: the [`CacheBackend`] trait and the in-process
//! [`MemoryBackend`].

use super::CacheKey;
use crate::error::{Error, ErrorKind};
use crate::provider::BoxFuture;
use bytes::Bytes;
use std::time::Duration;

/// A store of encoded answers by key.
///
/// Backends hold bytes and evict on their own schedule; the cache layer
/// decides freshness itself from the times inside each entry, so every
/// backend has the same semantics. Operations must be bounded in time: a
/// backend that cannot answer returns an error quickly (the layer counts it
/// and treats it as a miss), it never hangs.
pub trait CacheBackend: Send + Sync + 'static {
    /// A short name for logs and `/cache/ping` (`local`, `redis`).
    fn name(&self) -> &'static str;

    /// The stored value, if any.
    fn get(&self, key: CacheKey) -> BoxFuture<Result<Option<Bytes>, Error>>;

    /// Stores `value` for `ttl`.
    fn set(&self, key: CacheKey, value: Bytes, ttl: Duration) -> BoxFuture<Result<(), Error>>;

    /// Deletes `keys`; returns how many existed.
    fn delete(&self, keys: Vec<CacheKey>) -> BoxFuture<Result<u64, Error>>;

    /// Deletes every entry of this cache (and nothing else).
    fn flush(&self) -> BoxFuture<Result<(), Error>>;

    /// Checks the backend can be reached.
    fn ping(&self) -> BoxFuture<Result<(), Error>>;
}

/// An error of a cache backend (never shown to API clients).
#[cfg_attr(not(any(feature = "redis", test)), allow(dead_code))]
pub(crate) fn unavailable(what: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::ServiceUnavailable, what)
}

#[derive(Clone)]
struct Stored {
    bytes: Bytes,
    ttl: Duration,
}

struct PerEntryTtl;

impl moka::Expiry<CacheKey, Stored> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _: &CacheKey,
        value: &Stored,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _: &CacheKey,
        value: &Stored,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The in-process backend: a [moka] cache bounded by the total size of its
/// entries in bytes, each entry evicted after its TTL.
///
/// ```
/// use tollgate::cache::{CacheBackend, MemoryBackend};
///
/// # tokio_test::block_on(async {
/// let mem = MemoryBackend::new(64 << 20);
/// assert_eq!(mem.name(), "local");
/// assert!(mem.ping().await.is_ok());
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryBackend {
    cache: moka::future::Cache<CacheKey, Stored>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("entries", &self.cache.entry_count())
            .field("bytes", &self.cache.weighted_size())
            .finish()
    }
}

/// Bookkeeping bytes counted per entry besides its value.
const ENTRY_OVERHEAD: usize = 96;

impl MemoryBackend {
    /// A cache holding at most `max_bytes` of entries.
    pub fn new(max_bytes: u64) -> Self {
        MemoryBackend {
            cache: moka::future::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_: &CacheKey, v: &Stored| {
                    u32::try_from(v.bytes.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .expire_after(PerEntryTtl)
                .build(),
        }
    }

    /// Entries held now (approximate: eviction runs in the background).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }
}

impl CacheBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    fn get(&self, key: CacheKey) -> BoxFuture<Result<Option<Bytes>, Error>> {
        let cache = self.cache.clone();
        Box::pin(async move { Ok(cache.get(&key).await.map(|s| s.bytes)) })
    }

    fn set(&self, key: CacheKey, value: Bytes, ttl: Duration) -> BoxFuture<Result<(), Error>> {
        let cache = self.cache.clone();
        Box::pin(async move {
            cache.insert(key, Stored { bytes: value, ttl }).await;
            Ok(())
        })
    }

    fn delete(&self, keys: Vec<CacheKey>) -> BoxFuture<Result<u64, Error>> {
        let cache = self.cache.clone();
        Box::pin(async move {
            let mut n = 0;
            for k in keys {
                if cache.remove(&k).await.is_some() {
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    fn flush(&self) -> BoxFuture<Result<(), Error>> {
        self.cache.invalidate_all();
        Box::pin(async { Ok(()) })
    }

    fn ping(&self) -> BoxFuture<Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
}
