//! The storage traits the budget ledger reads: [`SpendHistory`] over the
//! spend logs and rollups, [`EndUsers`] over the customers table.

use super::Store;
use super::entities::EndUserRecord;
use crate::error::{Error, ErrorKind};
use crate::limits::{EndUsers, Scope, ScopeKind, SpendHistory, Subject};
use crate::pricing::Usd;
use crate::provider::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

impl SpendHistory for Store {
    /// What `scope` spent since `since` (and since its last explicit spend
    /// reset), from the durable spend logs and daily rollups. A key's history
    /// follows its stable id, so regenerating a key does not reset its budget.
    fn spent(
        &self,
        scope: &Scope,
        model: Option<&str>,
        since: Option<u64>,
    ) -> BoxFuture<Result<Usd, Error>> {
        let store = self.clone();
        let scope = scope.clone();
        let model = model.map(str::to_owned);
        Box::pin(async move {
            let since = since.map_or(0, |s| s.min(i64::MAX as u64) as i64);
            let model = model.as_deref();
            match scope.kind {
                ScopeKind::Global => store.spent_from(ScopeKind::Global, "", model, since).await,
                ScopeKind::Key => match store.key(&scope.id).await? {
                    Some(k) => {
                        let from = since.max(k.limits.budget_start);
                        store
                            .spent_from(ScopeKind::Key, &k.key_id, model, from)
                            .await
                    }
                    None => Ok(Usd::ZERO),
                },
                ScopeKind::Team => {
                    let reset = store.team(&scope.id).await?.map(|t| t.limits.budget_start);
                    let from = since.max(reset.unwrap_or(0));
                    store
                        .spent_from(ScopeKind::Team, &scope.id, model, from)
                        .await
                }
                ScopeKind::User => {
                    let reset = store.user(&scope.id).await?.map(|u| u.limits.budget_start);
                    let from = since.max(reset.unwrap_or(0));
                    store
                        .spent_from(ScopeKind::User, &scope.id, model, from)
                        .await
                }
                ScopeKind::EndUser => {
                    let reset = store
                        .end_user(&scope.id)
                        .await?
                        .map(|u| u.limits.budget_start);
                    let from = since.max(reset.unwrap_or(0));
                    store
                        .spent_from(ScopeKind::EndUser, &scope.id, model, from)
                        .await
                }
            }
        })
    }
}

/// End users' limits from the customers table, cached in memory (bounded,
/// 30 s; dropped at once when changed through this process's management
/// API, within seconds when changed on another replica).
#[derive(Clone)]
pub struct EndUserDirectory {
    store: Store,
    cache: moka::sync::Cache<String, Arc<Known>>,
    fail_open: bool,
}

/// What is cached about an end user: the answer, ready to clone.
enum Known {
    Unknown,
    Blocked,
    Limited(Subject),
}

impl std::fmt::Debug for EndUserDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndUserDirectory")
            .field("store", &self.store)
            .field("cached", &self.cache.entry_count())
            .finish()
    }
}

impl EndUserDirectory {
    /// A directory over `store`. With `fail_open` (LiteLLM's
    /// `allow_requests_on_db_unavailable`), an end user that cannot be
    /// looked up is treated as unknown instead of failing the request.
    pub fn new(store: Store, fail_open: bool) -> Self {
        EndUserDirectory {
            store,
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
            fail_open,
        }
    }

    /// Forgets what is cached about `id`.
    pub fn invalidate(&self, id: &str) {
        self.cache.invalidate(id);
    }

    /// Forgets everything cached.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    fn known(rec: Option<EndUserRecord>) -> Known {
        match rec {
            None => Known::Unknown,
            Some(r) if r.blocked => Known::Blocked,
            Some(r) => Known::Limited(Subject::new(
                Scope::new(ScopeKind::EndUser, r.user_id.as_str()),
                r.limits.limits(),
                r.limits.budget_start.max(0) as u64,
            )),
        }
    }

    fn answer(id: &str, known: &Known) -> Result<Option<Subject>, Error> {
        match known {
            Known::Unknown => Ok(None),
            Known::Limited(s) => Ok(Some(s.clone())),
            Known::Blocked => {
                let shown: String = id.chars().take(64).filter(|c| !c.is_control()).collect();
                Err(Error::new(
                    ErrorKind::PermissionDenied,
                    format!("the end user `{shown}` is blocked from making requests"),
                )
                .with_code("end_user_blocked")
                .with_param("user"))
            }
        }
    }
}

impl EndUsers for EndUserDirectory {
    fn end_user(&self, id: &str) -> BoxFuture<Result<Option<Subject>, Error>> {
        if let Some(hit) = self.cache.get(id) {
            let answer = Self::answer(id, &hit);
            return Box::pin(std::future::ready(answer));
        }
        let this = self.clone();
        let id = id.to_owned();
        Box::pin(async move {
            if id.is_empty() || id.len() > 256 || id.contains('\0') {
                return Ok(None);
            }
            match this.store.end_user(&id).await {
                Ok(rec) => {
                    let known = Arc::new(Self::known(rec));
                    this.cache.insert(id.clone(), known.clone());
                    Self::answer(&id, &known)
                }
                Err(_) if this.fail_open => Ok(None),
                Err(e) => Err(e),
            }
        })
    }
}
