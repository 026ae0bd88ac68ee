//! [`KeyAuth`]: virtual keys → [`Identity`], from memory.
//!
//! # What a request costs
//!
//! A cached key costs one SHA-256 of the credential, one lookup in a bounded
//! in-memory map, an expiry check and a clone of the prebuilt [`Identity`]
//! (reference-count bumps): about a microsecond, no I/O. The database is read
//! only when a key is not cached: at most once per key at a time (concurrent
//! requests for the same key share one lookup), at most `lookup_concurrency`
//! lookups at once, and unknown keys are remembered briefly in a bounded
//! negative cache — so a flood of random keys can neither hammer the
//! database nor grow memory without bound.
//!
//! # Freshness
//!
//! Entries are refreshed in the background once they are `ttl` old, while the
//! old answer keeps serving. Changes made through this process's management
//! API take effect at once; changes made on another replica take effect
//! within one poll of the change feed (2 s by default). If a refresh fails
//! because the database is down, the key keeps working only when
//! `allow_requests_on_db_unavailable` is set; otherwise it is refused with a
//! 503 until the database answers again.
//!
//! # Refusals
//!
//! Missing, malformed, unknown, expired and blocked keys, keys of blocked or
//! deleted teams, and revoked (deleted, regenerated) keys all get the same
//! 401 body. The master key is compared in constant time; a virtual key is
//! looked up by its SHA-256, which reveals nothing about the key through
//! timing.

use super::Store;
use super::entities::{TeamRecord, UserRecord, UserRole};
use super::keys::{KeyRecord, hash_key, is_well_formed_key};
use crate::Secret;
use crate::auth::{AuthFuture, Authenticate, Identity, MasterKey, Role};
use crate::error::{Error, ErrorKind};
use crate::limits::{Scope, ScopeKind, Subject, Subjects};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Model access groups: group name → model names (from `model_info.access_groups`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessGroups(pub HashMap<String, Vec<String>>);

impl AccessGroups {
    /// Adds `model` to `group`.
    pub fn add(&mut self, group: &str, model: &str) {
        let list = self.0.entry(group.to_owned()).or_default();
        if !list.iter().any(|m| m == model) {
            list.push(model.to_owned());
        }
    }

    /// A key's, team's or user's `models` with access groups expanded;
    /// `None` when it does not restrict (empty, or `all-proxy-models`).
    pub fn expand(&self, models: &[String]) -> Option<Vec<String>> {
        if models.is_empty() || models.iter().any(|m| m == "all-proxy-models") {
            return None;
        }
        let mut out: Vec<String> = Vec::new();
        for m in models {
            match self.0.get(m) {
                Some(group) => {
                    for g in group {
                        if !out.contains(g) {
                            out.push(g.clone());
                        }
                    }
                }
                None => {
                    if !out.contains(m) {
                        out.push(m.clone());
                    }
                }
            }
        }
        Some(out)
    }
}

/// Whether the allow-list `list` lets `model` through (`*` and `prefix/*` patterns too).
pub(crate) fn allows(list: &[String], model: &str) -> bool {
    list.iter().any(|m| {
        m == model
            || m == "*"
            || m.strip_suffix('*')
                .is_some_and(|prefix| !prefix.is_empty() && model.starts_with(prefix))
    })
}

/// A model no request can name: an intersection that left nothing.
const NO_MODEL: &str = "\u{0}no-models";

/// The models allowed by every restricting list (`None`: no restriction).
pub(crate) fn intersect(lists: &[Option<Vec<String>>]) -> Option<Vec<String>> {
    let mut acc: Option<Vec<String>> = None;
    for list in lists.iter().flatten() {
        acc = Some(match acc {
            None => list.clone(),
            Some(prev) => {
                let mut out: Vec<String> =
                    prev.iter().filter(|m| allows(list, m)).cloned().collect();
                for m in list {
                    if allows(&prev, m) && !out.contains(m) {
                        out.push(m.clone());
                    }
                }
                out
            }
        });
    }
    acc.map(|v| {
        if v.is_empty() {
            vec![NO_MODEL.to_owned()]
        } else {
            v
        }
    })
}

/// Settings of [`KeyAuth`].
#[derive(Clone, Debug)]
pub struct KeyAuthConfig {
    /// The master key (admin on every route).
    pub master_key: Option<Secret>,
    /// Model access groups.
    pub access_groups: AccessGroups,
    /// How long a cached key is used before it is refreshed in the background.
    pub ttl: Duration,
    /// Keep serving cached keys when the database cannot be reached
    /// (LiteLLM's `allow_requests_on_db_unavailable`).
    pub allow_requests_on_db_unavailable: bool,
    /// Most keys cached.
    pub max_entries: u64,
    /// How long an unknown key is remembered as unknown.
    pub negative_ttl: Duration,
    /// Most unknown keys remembered.
    pub negative_max_entries: u64,
    /// Most database lookups at once.
    pub lookup_concurrency: usize,
    /// How long a request waits for a lookup slot before a 503.
    pub lookup_wait: Duration,
}

impl Default for KeyAuthConfig {
    fn default() -> Self {
        KeyAuthConfig {
            master_key: None,
            access_groups: AccessGroups::default(),
            ttl: Duration::from_secs(60),
            allow_requests_on_db_unavailable: false,
            max_entries: 100_000,
            negative_ttl: Duration::from_secs(10),
            negative_max_entries: 10_000,
            lookup_concurrency: 16,
            lookup_wait: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
enum Outcome {
    /// The key works: its identity and expiry.
    Valid(Identity, Option<i64>),
    /// The key exists but is refused (blocked, team blocked or gone).
    Refused,
}

struct Entry {
    outcome: Outcome,
    fetched: Instant,
    refreshing: AtomicBool,
    /// The last refresh could not reach the database.
    stale: bool,
}

type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;
type Lookup = Arc<tokio::sync::OnceCell<Result<Option<Arc<Entry>>, Error>>>;

struct Inner {
    store: Store,
    master: Option<(MasterKey, Identity)>,
    config: KeyAuthConfig,
    cache: moka::sync::Cache<String, Arc<Entry>>,
    negative: moka::sync::Cache<String, ()>,
    lookups: tokio::sync::Semaphore,
    inflight: Mutex<HashMap<String, Lookup>>,
    clock: Clock,
}

/// Virtual-key authentication backed by a [`Store`]. See the [module docs](self).
///
/// ```no_run
/// use tollgate::auth::Authenticate;
/// use tollgate::store::{KeyAuth, KeyAuthConfig, Store, StoreOptions};
///
/// # async fn run() -> Result<(), tollgate::Error> {
/// let store = Store::open(&StoreOptions::new("sqlite:///tmp/tollgate.db")).await?;
/// let auth = KeyAuth::new(store, KeyAuthConfig::default());
/// let who = auth.authenticate(Some("sk-…")).await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KeyAuth {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KeyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAuth")
            .field("store", &self.inner.store)
            .field("cached", &self.inner.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl KeyAuth {
    /// Authentication over `store`.
    pub fn new(store: Store, config: KeyAuthConfig) -> Self {
        KeyAuth::build(store, config, Arc::new(super::time::now_secs))
    }

    /// The same, with a clock (Unix seconds) for expiry checks: for tests.
    pub fn with_clock(
        store: Store,
        config: KeyAuthConfig,
        clock: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> Self {
        KeyAuth::build(store, config, Arc::new(clock))
    }

    fn build(store: Store, config: KeyAuthConfig, clock: Clock) -> Self {
        let master = config
            .master_key
            .clone()
            .filter(|k| !k.expose().is_empty())
            .map(|k| {
                let id = Identity::admin(k.expose());
                (MasterKey::new(k), id)
            });
        KeyAuth {
            inner: Arc::new(Inner {
                store,
                master,
                cache: moka::sync::Cache::builder()
                    .max_capacity(config.max_entries)
                    .build(),
                negative: moka::sync::Cache::builder()
                    .max_capacity(config.negative_max_entries)
                    .time_to_live(config.negative_ttl)
                    .build(),
                lookups: tokio::sync::Semaphore::new(config.lookup_concurrency.max(1)),
                inflight: Mutex::new(HashMap::new()),
                clock,
                config,
            }),
        }
    }

    /// The store behind it.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Whether `credential` is the master key.
    pub fn is_master(&self, credential: &str) -> bool {
        self.inner
            .master
            .as_ref()
            .is_some_and(|(m, _)| m.matches(credential))
    }

    /// Drops what is cached about the key with this hash.
    pub fn invalidate_key(&self, hash: &str) {
        self.inner.cache.invalidate(hash);
        self.inner.negative.invalidate(hash);
    }

    /// Drops every cached key (after a team or user change).
    pub fn invalidate_all(&self) {
        self.inner.cache.invalidate_all();
    }

    /// Applies one change-feed entry.
    pub(crate) fn on_change(&self, kind: &str, id: &str) {
        match kind {
            "key" => self.invalidate_key(id),
            _ => self.invalidate_all(),
        }
    }

    /// How many keys are cached (for tests and metrics).
    pub fn cached_keys(&self) -> u64 {
        self.inner.cache.run_pending_tasks();
        self.inner.cache.entry_count()
    }

    fn answer(&self, entry: &Entry) -> Result<Identity, Error> {
        if entry.stale && !self.inner.config.allow_requests_on_db_unavailable {
            return Err(key_store_down());
        }
        match &entry.outcome {
            Outcome::Valid(id, expires) => {
                if expires.is_some_and(|e| (self.inner.clock)() >= e) {
                    Err(Error::unauthorized())
                } else {
                    Ok(id.clone())
                }
            }
            Outcome::Refused => Err(Error::unauthorized()),
        }
    }

    /// Starts a background refresh of a stale entry (one at a time per key).
    fn refresh(&self, hash: String, entry: &Arc<Entry>) {
        if entry.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            entry.refreshing.store(false, Ordering::Release);
            return;
        };
        let this = self.clone();
        let old = entry.clone();
        rt.spawn(async move {
            match this.load(&hash).await {
                Ok(Some(fresh)) => this.inner.cache.insert(hash, fresh),
                Ok(None) => {
                    this.inner.cache.invalidate(&hash);
                    this.inner.negative.insert(hash, ());
                }
                Err(_) => {
                    // Keep the old answer, marked stale; try again in 2 s.
                    let retry = this.inner.config.ttl.saturating_sub(Duration::from_secs(2));
                    let fetched = Instant::now()
                        .checked_sub(retry)
                        .unwrap_or_else(Instant::now);
                    this.inner.cache.insert(
                        hash,
                        Arc::new(Entry {
                            outcome: old.outcome.clone(),
                            fetched,
                            refreshing: AtomicBool::new(false),
                            stale: true,
                        }),
                    );
                }
            }
        });
    }

    /// Reads a key (and its team and user) from the database.
    async fn load(&self, hash: &str) -> Result<Option<Arc<Entry>>, Error> {
        let inner = &self.inner;
        let _permit = tokio::time::timeout(inner.config.lookup_wait, inner.lookups.acquire())
            .await
            .map_err(|_| key_store_down())?
            .map_err(|_| key_store_down())?;
        let store = &inner.store;
        let Some(key) = store.key(hash).await.map_err(|_| key_store_down())? else {
            return Ok(None);
        };
        let team = match &key.team_id {
            Some(t) => store.team(t).await.map_err(|_| key_store_down())?,
            None => None,
        };
        let user = match &key.user_id {
            Some(u) => store.user(u).await.map_err(|_| key_store_down())?,
            None => None,
        };
        let outcome = build_identity(
            &key,
            team.as_ref(),
            user.as_ref(),
            &inner.config.access_groups,
        );
        Ok(Some(Arc::new(Entry {
            outcome,
            fetched: Instant::now(),
            refreshing: AtomicBool::new(false),
            stale: false,
        })))
    }

    /// The slow path: one shared lookup per key.
    async fn miss(self, hash: String) -> Result<Identity, Error> {
        let cell = {
            let mut m = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            m.entry(hash.clone()).or_default().clone()
        };
        // Forgets the shared lookup however this request ends (a dropped
        // request must not leave an entry behind).
        let _guard = Inflight {
            auth: &self,
            hash: &hash,
            cell: &cell,
        };
        let result = cell
            .get_or_init(|| async {
                if let Some(hit) = self.inner.cache.get(&hash) {
                    return Ok(Some(hit));
                }
                let loaded = self.load(&hash).await;
                match &loaded {
                    Ok(Some(e)) => self.inner.cache.insert(hash.clone(), e.clone()),
                    Ok(None) => self.inner.negative.insert(hash.clone(), ()),
                    Err(_) => {}
                }
                loaded
            })
            .await
            .clone();
        match result? {
            Some(entry) => self.answer(&entry),
            None => Err(Error::unauthorized()),
        }
    }
}

struct Inflight<'a> {
    auth: &'a KeyAuth,
    hash: &'a str,
    cell: &'a Lookup,
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        let mut m = self
            .auth
            .inner
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Only the requests still waiting hold the cell besides the map.
        if m.get(self.hash).is_some_and(|c| Arc::ptr_eq(c, self.cell))
            && Arc::strong_count(self.cell) <= 2
        {
            m.remove(self.hash);
        }
    }
}

fn key_store_down() -> Error {
    Error::new(
        ErrorKind::ServiceUnavailable,
        "the key store is unavailable; try again shortly",
    )
}

/// The identity of a key, given its team and user.
fn build_identity(
    key: &KeyRecord,
    team: Option<&TeamRecord>,
    user: Option<&UserRecord>,
    groups: &AccessGroups,
) -> Outcome {
    if key.blocked || team.is_some_and(|t| t.blocked) || (key.team_id.is_some() && team.is_none()) {
        return Outcome::Refused;
    }
    let team_models = team.and_then(|t| groups.expand(&t.models));
    let key_models = if key.models.iter().any(|m| m == "all-team-models") {
        team_models.clone()
    } else {
        groups.expand(&key.models)
    };
    let user_models = user.and_then(|u| groups.expand(&u.models));
    let models = intersect(&[key_models, team_models, user_models]);
    // Keys are named by alias or display form in errors and logs, never by hash.
    let key_name = key.key_alias.as_deref().unwrap_or(key.key_name.as_str());
    let mut subjects = vec![
        Subject::new(
            Scope::new(ScopeKind::Key, key.token.as_str()),
            key.limits.limits(),
            key.limits.budget_start.max(0) as u64,
        )
        .with_label(format!("key {key_name}")),
    ];
    if let Some(t) = team {
        subjects.push(Subject::new(
            Scope::new(ScopeKind::Team, t.team_id.as_str()),
            t.limits.limits(),
            t.limits.budget_start.max(0) as u64,
        ));
    }
    if let Some(u) = user {
        subjects.push(Subject::new(
            Scope::new(ScopeKind::User, u.user_id.as_str()),
            u.limits.limits(),
            u.limits.budget_start.max(0) as u64,
        ));
    }
    let role = if user.is_some_and(|u| u.user_role == UserRole::ProxyAdmin) {
        Role::Admin
    } else {
        Role::Key
    };
    let identity = Identity {
        role,
        key_hash: Some(key.token.as_str().into()),
        key_display: Some(key.key_name.as_str().into()),
        key_alias: key.key_alias.as_deref().map(Into::into),
        team_id: key.team_id.as_deref().map(Into::into),
        user_id: key.user_id.as_deref().map(Into::into),
        models: models.map(Into::into),
        subjects: Subjects::from(subjects),
        allowed_cache_controls: (!key.allowed_cache_controls.is_empty())
            .then(|| key.allowed_cache_controls.clone().into()),
    };
    Outcome::Valid(identity, key.expires)
}

impl Authenticate for KeyAuth {
    fn authenticate(&self, credential: Option<&str>) -> AuthFuture {
        let Some(c) = credential else {
            return AuthFuture::ready(Err(Error::unauthorized()));
        };
        if let Some((m, id)) = &self.inner.master
            && m.matches(c)
        {
            return AuthFuture::ready(Ok(id.clone()));
        }
        if !is_well_formed_key(c) {
            return AuthFuture::ready(Err(Error::unauthorized()));
        }
        let hash = hash_key(c);
        if let Some(entry) = self.inner.cache.get(&hash) {
            if entry.fetched.elapsed() >= self.inner.config.ttl {
                self.refresh(hash, &entry);
            }
            return AuthFuture::ready(self.answer(&entry));
        }
        if self.inner.negative.contains_key(&hash) {
            return AuthFuture::ready(Err(Error::unauthorized()));
        }
        AuthFuture::pending(self.clone().miss(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn access_groups_and_intersections() {
        let mut g = AccessGroups::default();
        g.add("beta", "m1");
        g.add("beta", "m2");
        assert_eq!(g.expand(&[]), None);
        assert_eq!(g.expand(&v(&["all-proxy-models"])), None);
        assert_eq!(g.expand(&v(&["beta", "m3"])), Some(v(&["m1", "m2", "m3"])));
        assert_eq!(intersect(&[None, None]), None);
        assert_eq!(
            intersect(&[Some(v(&["a", "b"])), None]),
            Some(v(&["a", "b"]))
        );
        assert_eq!(
            intersect(&[Some(v(&["a", "b"])), Some(v(&["b", "c"]))]),
            Some(v(&["b"]))
        );
        assert_eq!(
            intersect(&[Some(v(&["openai/gpt-4o"])), Some(v(&["openai/*"]))]),
            Some(v(&["openai/gpt-4o"]))
        );
        let none = intersect(&[Some(v(&["a"])), Some(v(&["b"]))]).unwrap();
        let mut id = Identity::anonymous();
        id.models = Some(none.into());
        assert!(!id.may_use("a") && !id.may_use("b") && !id.may_use(""));
    }
}
