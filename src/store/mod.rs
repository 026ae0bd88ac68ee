//! The control plane's storage: virtual keys, teams, internal users, end
//! users (customers) and spend logs, in SQLite or PostgreSQL.
//!
//! One [`Store`] handle (a connection pool) serves everything. The schema and
//! the queries are the same on both backends (only type names differ in the
//! migrations); every query is a static string with bound parameters.
//!
//! What the rest of the gateway uses:
//!
//! - [`KeyAuth`]: an [`Authenticate`](crate::auth::Authenticate) that turns a
//!   virtual key into an [`Identity`](crate::auth::Identity) — answered from
//!   memory; the database is read only on a cache miss.
//! - [`SpendWriter`]: a [`RecordSink`](crate::observe::RecordSink) that queues
//!   every [`CompletionRecord`](crate::observe::CompletionRecord) and writes
//!   spend logs, spend columns and daily rollups in bounded batches from a
//!   background task.
//! - [`Store`] implements [`SpendHistory`](crate::limits::SpendHistory), and
//!   [`EndUserDirectory`] implements [`EndUsers`](crate::limits::EndUsers),
//!   for the budget ledger.
//! - [`ManagementApi`]: LiteLLM's `/key/*`, `/team/*`, `/user/*`,
//!   `/customer/*`, `/spend/logs` and `/global/spend*` routes.
//!
//! ```no_run
//! use tollgate::store::{Store, StoreOptions};
//!
//! # async fn run() -> Result<(), tollgate::Error> {
//! // A SQLite file, created and migrated if needed …
//! let store = Store::open(&StoreOptions::new("sqlite:///var/lib/tollgate/tollgate.db")).await?;
//! // … or PostgreSQL, shared by every replica.
//! let store = Store::open(&StoreOptions::new("postgres://tollgate@db/tollgate")).await?;
//! # let _ = store; Ok(()) }
//! ```
//!
//! Money is kept in whole picodollars in 64-bit columns (a single request or a
//! single day of one key's spend can hold up to about $9.2 million; larger
//! values saturate), and sums are computed without overflow.

mod api;
mod auth;
mod changes;
mod entities;
mod history;
mod keys;
mod rows;
mod spend;
mod time;
mod validate;
mod writer;

pub use api::ManagementApi;
pub use auth::{AccessGroups, KeyAuth, KeyAuthConfig};
pub use entities::{EndUserRecord, Member, TeamRecord, UserRecord, UserRole};
pub use history::EndUserDirectory;
pub use keys::{KeyRecord, generate_key, hash_key};
pub use rows::{LimitFields, ModelBudgetSpec};
pub use spend::{KeyHash, SpendFilter, SpendLog, SpendRow};
pub use writer::{SpendWriter, SpendWriterConfig, WriterStats};

use crate::error::{Error, ErrorKind};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Which database a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (one replica).
    Sqlite,
    /// PostgreSQL (any number of replicas).
    Postgres,
}

/// How to open a [`Store`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// `postgres://…` / `postgresql://…`, `sqlite://path`, `sqlite:path`, or a
    /// plain file path (SQLite).
    pub url: String,
    /// Pool size (LiteLLM's `database_connection_pool_limit`).
    pub max_connections: u32,
    /// How long a query waits for a free connection (and the first connect).
    pub acquire_timeout: Duration,
    /// Run the embedded migrations when opening (default `true`).
    pub migrate: bool,
}

impl StoreOptions {
    /// Options for `url` with the defaults: 10 connections, 5 s acquire
    /// timeout, migrations on.
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            migrate: true,
        }
    }

    /// The backend `url` selects.
    pub fn backend(&self) -> Backend {
        let u = self.url.trim_start();
        if u.starts_with("postgres://") || u.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// A handle to the control-plane database (cheap to clone).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    shown: String,
}

pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` (in an async block: `?` and `return` apply to it) with `$p`
/// bound to the concrete pool of `$store`. The body is compiled once per
/// backend, so the same query text and binds serve both.
macro_rules! on_pool {
    ($store:expr, |$p:ident| $body:expr) => {
        match &$store.inner.pool {
            $crate::store::Pool::Sqlite($p) => (async { $body }).await,
            $crate::store::Pool::Postgres($p) => (async { $body }).await,
        }
    };
}
pub(crate) use on_pool;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("database", &self.inner.shown)
            .finish()
    }
}

impl Store {
    /// Connects (creating a SQLite file if needed) and, unless
    /// `options.migrate` is off, brings the schema up to date. Concurrent
    /// starts are safe: PostgreSQL migrations run under an advisory lock.
    pub async fn open(options: &StoreOptions) -> Result<Store, Error> {
        let shown = describe_url(&options.url);
        let pool = match options.backend() {
            Backend::Postgres => {
                let connect = PgConnectOptions::from_str(options.url.trim()).map_err(|e| {
                    Error::bad_request(format!("the database URL {shown} is not valid"))
                        .with_source(e)
                })?;
                let pool = PgPoolOptions::new()
                    .max_connections(options.max_connections.max(1))
                    .acquire_timeout(options.acquire_timeout)
                    .connect_with(connect)
                    .await
                    .map_err(|e| unavailable(&shown, e))?;
                Pool::Postgres(pool)
            }
            Backend::Sqlite => {
                let u = options.url.trim();
                let connect = if u.starts_with("sqlite:") {
                    SqliteConnectOptions::from_str(u).map_err(|e| {
                        Error::bad_request(format!("the database URL {shown} is not valid"))
                            .with_source(e)
                    })?
                } else {
                    SqliteConnectOptions::new().filename(u)
                };
                let connect = connect
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // WAL + NORMAL: a committed batch survives a process kill.
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5));
                let pool = SqlitePoolOptions::new()
                    .max_connections(options.max_connections.clamp(1, 16))
                    .acquire_timeout(options.acquire_timeout)
                    .connect_with(connect)
                    .await
                    .map_err(|e| unavailable(&shown, e))?;
                Pool::Sqlite(pool)
            }
        };
        let store = Store {
            inner: Arc::new(Inner { pool, shown }),
        };
        if options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Applies the embedded migrations that are not applied yet (what
    /// `tollgate migrate` runs).
    pub async fn migrate(&self) -> Result<(), Error> {
        let migrator = migrator(self.backend());
        let mut last = None;
        // Two SQLite processes racing on a fresh file: the loser sees the
        // winner's migration on its retry.
        for _ in 0..3 {
            let result = on_pool!(self, |p| migrator.run(p).await);
            match result {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        let e = last.map(|e| e.to_string()).unwrap_or_default();
        tracing::error!(database = %self.inner.shown, error = %e, "database migration failed");
        Err(Error::new(
            ErrorKind::ServiceUnavailable,
            format!("could not migrate the database {}: {e}", self.inner.shown),
        ))
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self.inner.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The database, for logs: the URL without its password.
    pub fn describe(&self) -> &str {
        &self.inner.shown
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), Error> {
        on_pool!(self, |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(db_err)
    }

    /// Closes the pool (waits for connections in use to come back).
    pub async fn close(&self) {
        on_pool!(self, |p| p.close().await);
    }
}

fn migrator(backend: Backend) -> Migrator {
    let scripts: [(&'static str, &str); 3] = match backend {
        Backend::Sqlite => [
            (
                include_str!("../../migrations/sqlite/0001_init.sql"),
                "init",
            ),
            (
                include_str!("../../migrations/sqlite/0002_allowed_cache_controls.sql"),
                "allowed cache controls",
            ),
            (
                include_str!("../../migrations/sqlite/0003_partial_scope_indexes.sql"),
                "partial scope indexes",
            ),
        ],
        Backend::Postgres => [
            (
                include_str!("../../migrations/postgres/0001_init.sql"),
                "init",
            ),
            (
                include_str!("../../migrations/postgres/0002_allowed_cache_controls.sql"),
                "allowed cache controls",
            ),
            (
                include_str!("../../migrations/postgres/0003_partial_scope_indexes.sql"),
                "partial scope indexes",
            ),
        ],
    };
    let migrations = scripts
        .into_iter()
        .zip(1..)
        .map(|((sql, name), version)| {
            Migration::new(
                version,
                name.to_owned().into(),
                MigrationType::Simple,
                sqlx::SqlSafeStr::into_sql_str(sql),
                false,
            )
        })
        .collect();
    let mut m = Migrator::with_migrations(migrations);
    m.dangerous_set_table_name("tollgate_migrations");
    m
}

/// A database URL without its password (and query string).
fn describe_url(url: &str) -> String {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.split('?').next().unwrap_or(url).to_owned();
    };
    let rest = rest.split('?').next().unwrap_or(rest);
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{user}@{host}")
        }
        None => rest.to_owned(),
    };
    format!("{scheme}://{rest}")
}

fn unavailable(shown: &str, e: sqlx::Error) -> Error {
    tracing::error!(database = %shown, error = %e, "cannot open the database");
    Error::new(
        ErrorKind::ServiceUnavailable,
        format!("cannot open the database {shown}: {e}"),
    )
    .with_source(e)
}

/// A database failure as a client-facing error: no SQL, no values.
pub(crate) fn db_err(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => {
            tracing::warn!(error = %e, "database unavailable");
            Error::new(ErrorKind::ServiceUnavailable, "the database is unavailable").with_source(e)
        }
        _ => {
            tracing::warn!(error = %e, "database error");
            Error::internal("database error").with_source(e)
        }
    }
}

/// Whether `e` is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_passwords() {
        assert_eq!(
            describe_url("postgres://u:secret@db:5432/x?sslmode=require"),
            "postgres://u@db:5432/x"
        );
        assert_eq!(describe_url("postgresql://db/x"), "postgresql://db/x");
        assert_eq!(
            describe_url("sqlite:///tmp/a.db?mode=rwc"),
            "sqlite:///tmp/a.db"
        );
        assert_eq!(describe_url("/tmp/a.db"), "/tmp/a.db");
        assert_eq!(
            StoreOptions::new("postgresql://x").backend(),
            Backend::Postgres
        );
        assert_eq!(StoreOptions::new("tollgate.db").backend(), Backend::Sqlite);
    }
}
