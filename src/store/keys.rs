//! Virtual keys: records, hashing, generation and their queries.

use super::rows::{Get, LimitFields, list_col, object_col, to_json_text};
use super::{Store, db_err, is_unique_violation, on_pool};
use crate::error::Error;
use serde_json::{Map, Value};

/// The lowercase hex SHA-256 of a key: its id in storage (as LiteLLM stores it).
///
/// ```
/// assert_eq!(
///     tollgate::store::hash_key("abc"),
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// ```
pub fn hash_key(key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A fresh virtual key: `sk-` and 32 URL-safe characters (192 random bits
/// from the operating system's CSPRNG).
pub fn generate_key() -> Result<String, Error> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::internal("the system random number generator failed"))?;
    Ok(format!(
        "sk-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// Whether `s` looks like a stored key hash (64 lowercase hex digits).
pub(crate) fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `s` can be a virtual key at all: `sk-` then 1–253 printable ASCII
/// characters. Anything else is refused without a lookup.
pub(crate) fn is_well_formed_key(s: &str) -> bool {
    s.len() > 3 && s.len() <= 256 && s.starts_with("sk-") && s.bytes().all(|b| b.is_ascii_graphic())
}

/// One virtual key, as stored. Its `Debug` form leaves out the hash.
#[derive(Clone, PartialEq)]
pub struct KeyRecord {
    /// The key's SHA-256 (hex). Changes on regeneration.
    pub token: String,
    /// A stable id that survives regeneration (spend history follows it).
    pub key_id: String,
    /// Display form (`sk-...abcd`).
    pub key_name: String,
    /// Unique alias.
    pub key_alias: Option<String>,
    /// Owning internal user.
    pub user_id: Option<String>,
    /// Team.
    pub team_id: Option<String>,
    /// Models and access groups the key may use (empty: all the team allows).
    pub models: Vec<String>,
    /// Model aliases (stored, shown; not applied to requests yet).
    pub aliases: Map<String, Value>,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
    /// Tags (stored and shown).
    pub tags: Vec<String>,
    /// The cache controls the key's requests may use (empty: all).
    pub allowed_cache_controls: Vec<String>,
    /// Budgets and limits.
    pub limits: LimitFields,
    /// Spend since `limits.budget_start`, picodollars.
    pub spend_pico: i64,
    /// Refused while true.
    pub blocked: bool,
    /// Expiry (Unix seconds).
    pub expires: Option<i64>,
    /// Creation time.
    pub created_at: i64,
    /// Who created it (`master_key`, a user id, or a key display form).
    pub created_by: Option<String>,
    /// Last change.
    pub updated_at: i64,
    /// Who changed it last.
    pub updated_by: Option<String>,
    /// Optimistic-concurrency counter.
    pub version: i64,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("key_id", &self.key_id)
            .field("key_name", &self.key_name)
            .field("key_alias", &self.key_alias)
            .field("user_id", &self.user_id)
            .field("team_id", &self.team_id)
            .field("models", &self.models)
            .field("blocked", &self.blocked)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl KeyRecord {
    /// A new record for the key with hash `token`, created now.
    pub fn new(token: String, key_name: String, now: i64) -> Self {
        KeyRecord {
            token,
            key_id: uuid::Uuid::now_v7().to_string(),
            key_name,
            key_alias: None,
            user_id: None,
            team_id: None,
            models: Vec::new(),
            aliases: Map::new(),
            metadata: Map::new(),
            tags: Vec::new(),
            allowed_cache_controls: Vec::new(),
            limits: LimitFields {
                budget_start: now,
                ..LimitFields::default()
            },
            spend_pico: 0,
            blocked: false,
            expires: None,
            created_at: now,
            created_by: None,
            updated_at: now,
            updated_by: None,
            version: 0,
        }
    }

    /// Whether the key has expired at `now`.
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }

    fn from_row(r: &impl Get) -> Result<Self, sqlx::Error> {
        Ok(KeyRecord {
            token: r.text("token")?,
            key_id: r.text("key_id")?,
            key_name: r.text("key_name")?,
            key_alias: r.opt_text("key_alias")?,
            user_id: r.opt_text("user_id")?,
            team_id: r.opt_text("team_id")?,
            models: list_col(r, "models")?,
            aliases: object_col(r, "aliases")?,
            metadata: object_col(r, "metadata")?,
            tags: list_col(r, "tags")?,
            allowed_cache_controls: list_col(r, "allowed_cache_controls")?,
            limits: LimitFields::from_row(r, true)?,
            spend_pico: r.int("spend_pico")?,
            blocked: r.flag("blocked")?,
            expires: r.opt_int("expires")?,
            created_at: r.int("created_at")?,
            created_by: r.opt_text("created_by")?,
            updated_at: r.int("updated_at")?,
            updated_by: r.opt_text("updated_by")?,
            version: r.int("version")?,
        })
    }
}

macro_rules! key_cols {
    () => {
        "token, key_id, key_name, key_alias, user_id, team_id, models, aliases, metadata, tags, \
         max_budget, soft_budget, budget_duration, budget_start, tpm_limit, rpm_limit, \
         max_parallel_requests, model_max_budget, model_rpm_limit, model_tpm_limit, spend_pico, \
         blocked, expires, created_at, created_by, updated_at, updated_by, version, \
         allowed_cache_controls"
    };
}

const INSERT_KEY: &str = concat!(
    "INSERT INTO tollgate_keys (",
    key_cols!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29)"
);

const UPDATE_KEY: &str = "UPDATE tollgate_keys SET key_alias = $2, user_id = $3, team_id = $4, \
     models = $5, aliases = $6, metadata = $7, tags = $8, max_budget = $9, soft_budget = $10, \
     budget_duration = $11, budget_start = $12, tpm_limit = $13, rpm_limit = $14, \
     max_parallel_requests = $15, model_max_budget = $16, model_rpm_limit = $17, \
     model_tpm_limit = $18, blocked = $19, expires = $20, updated_at = $21, updated_by = $22, \
     allowed_cache_controls = $24, version = version + 1 WHERE token = $1 AND version = $23";

const SELECT_KEY: &str = concat!(
    "SELECT ",
    key_cols!(),
    " FROM tollgate_keys WHERE token = $1"
);
const SELECT_KEY_BY_ALIAS: &str = concat!(
    "SELECT ",
    key_cols!(),
    " FROM tollgate_keys WHERE key_alias = $1"
);
const LIST_KEYS: &str = concat!(
    "SELECT ",
    key_cols!(),
    " FROM tollgate_keys WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR team_id = $2) \
     AND ($3 IS NULL OR key_alias = $3) ORDER BY created_at DESC, key_id LIMIT $4 OFFSET $5"
);
const COUNT_KEYS: &str = "SELECT COUNT(*) AS n FROM tollgate_keys WHERE ($1 IS NULL OR user_id = $1) \
     AND ($2 IS NULL OR team_id = $2) AND ($3 IS NULL OR key_alias = $3)";

/// Filters for [`Store::list_keys`].
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyFilter {
    pub(crate) user_id: Option<String>,
    pub(crate) team_id: Option<String>,
    pub(crate) key_alias: Option<String>,
}

/// Binds the record's columns in `key_cols!` order.
macro_rules! bind_key {
    ($q:expr, $k:expr) => {{
        let k = $k;
        let l = &k.limits;
        $q.bind(k.token.clone())
            .bind(k.key_id.clone())
            .bind(k.key_name.clone())
            .bind(k.key_alias.clone())
            .bind(k.user_id.clone())
            .bind(k.team_id.clone())
            .bind(to_json_text(&k.models))
            .bind(to_json_text(&k.aliases))
            .bind(to_json_text(&k.metadata))
            .bind(to_json_text(&k.tags))
            .bind(l.max_budget)
            .bind(l.soft_budget)
            .bind(l.budget_duration.clone())
            .bind(l.budget_start)
            .bind(l.tpm_limit)
            .bind(l.rpm_limit)
            .bind(l.max_parallel_requests)
            .bind(to_json_text(&l.model_max_budget))
            .bind(to_json_text(&l.model_rpm_limit))
            .bind(to_json_text(&l.model_tpm_limit))
            .bind(k.spend_pico)
            .bind(k.blocked)
            .bind(k.expires)
            .bind(k.created_at)
            .bind(k.created_by.clone())
            .bind(k.updated_at)
            .bind(k.updated_by.clone())
            .bind(k.version)
            .bind(to_json_text(&k.allowed_cache_controls))
    }};
}

pub(super) const CHANGE: &str = "INSERT INTO tollgate_changes (kind, id, at) VALUES ($1, $2, $3)";

/// Why a write was refused.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// A unique value (key alias, id) is taken.
    Duplicate,
    /// The database failed.
    Db(Error),
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        if is_unique_violation(&e) {
            WriteError::Duplicate
        } else {
            WriteError::Db(db_err(e))
        }
    }
}

impl Store {
    /// Stores a new key. Fails with a 400 if its alias is taken.
    pub async fn insert_key(&self, key: &KeyRecord) -> Result<(), Error> {
        self.insert_key_inner(key).await.map_err(|e| match e {
            WriteError::Duplicate => {
                Error::bad_request("a key with this `key_alias` already exists")
                    .with_param("key_alias")
            }
            WriteError::Db(e) => e,
        })
    }

    async fn insert_key_inner(&self, key: &KeyRecord) -> Result<(), WriteError> {
        let now = super::time::now_secs();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            bind_key!(sqlx::query(INSERT_KEY), key)
                .execute(&mut *tx)
                .await?;
            sqlx::query(CHANGE)
                .bind("key")
                .bind(key.token.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The key with hash `token`.
    pub async fn key(&self, token: &str) -> Result<Option<KeyRecord>, Error> {
        on_pool!(self, |p| {
            match sqlx::query(SELECT_KEY).bind(token).fetch_optional(p).await {
                Ok(Some(r)) => KeyRecord::from_row(&r).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(db_err)
    }

    /// The key with this alias.
    pub async fn key_by_alias(&self, alias: &str) -> Result<Option<KeyRecord>, Error> {
        on_pool!(self, |p| {
            match sqlx::query(SELECT_KEY_BY_ALIAS)
                .bind(alias)
                .fetch_optional(p)
                .await
            {
                Ok(Some(r)) => KeyRecord::from_row(&r).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(db_err)
    }

    /// Writes `key`'s mutable fields if nobody changed it since it was read
    /// (`Ok(false)` otherwise). Spend and the hash are not touched.
    pub(crate) async fn update_key(&self, key: &KeyRecord) -> Result<bool, WriteError> {
        let now = super::time::now_secs();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let l = &key.limits;
            let done = sqlx::query(UPDATE_KEY)
                .bind(key.token.clone())
                .bind(key.key_alias.clone())
                .bind(key.user_id.clone())
                .bind(key.team_id.clone())
                .bind(to_json_text(&key.models))
                .bind(to_json_text(&key.aliases))
                .bind(to_json_text(&key.metadata))
                .bind(to_json_text(&key.tags))
                .bind(l.max_budget)
                .bind(l.soft_budget)
                .bind(l.budget_duration.clone())
                .bind(l.budget_start)
                .bind(l.tpm_limit)
                .bind(l.rpm_limit)
                .bind(l.max_parallel_requests)
                .bind(to_json_text(&l.model_max_budget))
                .bind(to_json_text(&l.model_rpm_limit))
                .bind(to_json_text(&l.model_tpm_limit))
                .bind(key.blocked)
                .bind(key.expires)
                .bind(now)
                .bind(key.updated_by.clone())
                .bind(key.version)
                .bind(to_json_text(&key.allowed_cache_controls))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if done == 0 {
                return Ok(false);
            }
            sqlx::query(CHANGE)
                .bind("key")
                .bind(key.token.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Gives the key with hash `old` the new hash `new` and display name.
    /// `Ok(false)` if there is no such key.
    pub(crate) async fn rekey(&self, old: &str, new: &str, name: &str) -> Result<bool, WriteError> {
        let now = super::time::now_secs();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let done = sqlx::query(
                "UPDATE tollgate_keys SET token = $2, key_name = $3, updated_at = $4, \
                 version = version + 1 WHERE token = $1",
            )
            .bind(old)
            .bind(new)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 0 {
                return Ok(false);
            }
            for t in [old, new] {
                sqlx::query(CHANGE)
                    .bind("key")
                    .bind(t)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Deletes the keys with these hashes; returns the hashes that existed.
    pub async fn delete_keys(&self, tokens: &[String]) -> Result<Vec<String>, Error> {
        let now = super::time::now_secs();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let mut deleted = Vec::new();
            for t in tokens {
                let n = sqlx::query("DELETE FROM tollgate_keys WHERE token = $1")
                    .bind(t.clone())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n > 0 {
                    deleted.push(t.clone());
                    sqlx::query(CHANGE)
                        .bind("key")
                        .bind(t.clone())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(deleted)
        })
        .map_err(db_err)
    }

    /// Zeroes a key's spend and restarts its budget windows now.
    pub(crate) async fn reset_key_spend(&self, token: &str) -> Result<bool, Error> {
        let now = super::time::now_secs();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let n = sqlx::query(
                "UPDATE tollgate_keys SET spend_pico = 0, budget_start = $2, updated_at = $2, \
                 version = version + 1 WHERE token = $1",
            )
            .bind(token)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(CHANGE)
                .bind("key")
                .bind(token)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n > 0)
        })
        .map_err(db_err)
    }

    /// Keys matching `filter`, newest first, with the total count.
    pub(crate) async fn list_keys(
        &self,
        filter: &KeyFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<KeyRecord>, i64), Error> {
        on_pool!(self, |p| {
            let rows = sqlx::query(LIST_KEYS)
                .bind(filter.user_id.clone())
                .bind(filter.team_id.clone())
                .bind(filter.key_alias.clone())
                .bind(limit)
                .bind(offset)
                .fetch_all(p)
                .await?;
            let total: i64 = {
                let r = sqlx::query(COUNT_KEYS)
                    .bind(filter.user_id.clone())
                    .bind(filter.team_id.clone())
                    .bind(filter.key_alias.clone())
                    .fetch_one(p)
                    .await?;
                r.int("n")?
            };
            let keys = rows
                .iter()
                .map(KeyRecord::from_row)
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, sqlx::Error>((keys, total))
        })
        .map_err(db_err)
    }
}
