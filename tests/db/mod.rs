//! Real databases for tests: a SQLite file in a temporary directory, or a
//! fresh schema in the PostgreSQL at `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped afterwards. PostgreSQL
//! tests skip with a printed reason when the server is unreachable, and fail
//! instead when `TOLLGATE_REQUIRE_SERVICES=1`.
#![allow(dead_code, unreachable_pub, missing_docs)]

use sqlx::Connection;
use std::path::PathBuf;
use std::time::Duration;
use tollgate::store::{Store, StoreOptions};

pub const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn services_required() -> bool {
    std::env::var("TOLLGATE_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v == "true")
}

fn pg_base() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| PG_DEFAULT.to_owned())
}

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    format!(
        "{tag}_{}_{:x}",
        std::process::id(),
        t ^ N
            .fetch_add(1, Ordering::SeqCst)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
    )
}

/// A database for one test.
pub struct TestDb {
    /// What to give `Store::open` / `general_settings.database_url`.
    pub url: String,
    /// `sqlite` or `postgres`.
    pub kind: &'static str,
    /// The directory of the SQLite file (or a scratch directory for PostgreSQL).
    pub dir: PathBuf,
    schema: Option<String>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(unique("tollgate-db"));
        std::fs::create_dir_all(&dir).unwrap();
        TestDb {
            url: format!("sqlite://{}", dir.join("tollgate.db").display()),
            kind: "sqlite",
            dir,
            schema: None,
        }
    }

    /// A fresh schema, or `None` (after printing why) when PostgreSQL is not there.
    pub async fn postgres(test: &str) -> Option<TestDb> {
        let base = pg_base();
        let conn =
            tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&base)).await;
        let mut conn = match conn {
            Ok(Ok(c)) => c,
            other => {
                let why = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_owned(),
                };
                if services_required() {
                    panic!("{test}: PostgreSQL at {base} is required: {why}");
                }
                eprintln!("SKIPPED {test}: PostgreSQL at {base} is unreachable: {why}");
                return None;
            }
        };
        let schema = unique("t").to_lowercase();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .expect("create schema");
        let _ = conn.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let dir = std::env::temp_dir().join(unique("tollgate-pg"));
        std::fs::create_dir_all(&dir).unwrap();
        Some(TestDb {
            url: format!("{base}{sep}options[search_path]={schema}"),
            kind: "postgres",
            dir,
            schema: Some(schema),
        })
    }

    pub async fn open(&self) -> Store {
        Store::open(&StoreOptions::new(self.url.clone()))
            .await
            .unwrap_or_else(|e| panic!("open {}: {e:?}", self.kind))
    }

    /// Runs one SQL statement directly (for checks and for stalling the database).
    pub async fn exec(&self, sql: &str) {
        let store = self.open().await;
        drop(store);
        match self.kind {
            "sqlite" => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            _ => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    }

    /// `SELECT COUNT(*)` of a table.
    pub async fn count(&self, table: &str) -> i64 {
        use sqlx::Row;
        let sql = format!("SELECT COUNT(*) AS n FROM {table}");
        match self.kind {
            "sqlite" => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                let r = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                r.get::<i64, _>("n")
            }
            _ => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                let r = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                r.get::<i64, _>("n")
            }
        }
    }

    /// Every row of every tollgate table, as text, for "nothing changed" checks.
    pub async fn snapshot(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in [
            "tollgate_keys",
            "tollgate_teams",
            "tollgate_team_members",
            "tollgate_users",
            "tollgate_end_users",
            "tollgate_spend_logs",
            "tollgate_daily_spend",
        ] {
            out.push(format!("{t}: {}", self.count(t).await));
        }
        let store = self.open().await;
        let (keys, _) = {
            let api = tollgate::store::ManagementApi::new(store.clone());
            let v = api
                .handle(
                    &tollgate::auth::Identity::admin("sk-test-master"),
                    &http::Method::GET,
                    "/key/list",
                    Some("return_full_object=true&size=1000"),
                    b"",
                )
                .await
                .unwrap();
            (v, ())
        };
        out.push(keys.to_string());
        store.close().await;
        out
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(schema) = self.schema.take() {
            let base = pg_base();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&base).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA IF EXISTS {schema} CASCADE"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// Defines `$name::sqlite` and `$name::postgres` tests running `$body(db)`.
#[macro_export]
macro_rules! on_both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = db::TestDb::sqlite();
                ($body)(db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = db::TestDb::postgres(concat!(stringify!($name), "::postgres")).await
                else {
                    return;
                };
                ($body)(db).await;
            }
        }
    };
}

/// Holds a write lock on the spend logs from another connection, so that
/// writers stall (SQLite: they time out as "database is locked"; PostgreSQL:
/// they wait on the lock).
pub enum Staller {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection, String),
}

impl Staller {
    pub async fn start(db: &TestDb) -> Staller {
        match db.kind {
            "sqlite" => {
                let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut c)
                    .await
                    .unwrap();
                Staller::Sqlite(c)
            }
            _ => {
                let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::query("BEGIN").execute(&mut c).await.unwrap();
                sqlx::query("LOCK TABLE tollgate_spend_logs IN ACCESS EXCLUSIVE MODE")
                    .execute(&mut c)
                    .await
                    .unwrap();
                Staller::Postgres(c, db.url.clone())
            }
        }
    }

    /// Whether the writer has run into the lock.
    pub async fn writer_is_stuck(&self, writer: &tollgate::store::SpendWriter) -> bool {
        use sqlx::Row;
        match self {
            Staller::Sqlite(_) => writer.stats().failed_writes >= 1,
            Staller::Postgres(_, url) => {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                let r = sqlx::query(
                    "SELECT COUNT(*) AS n FROM pg_locks WHERE NOT granted AND relation = 'tollgate_spend_logs'::regclass",
                )
                .fetch_one(&mut c)
                .await
                .unwrap();
                r.get::<i64, _>("n") > 0
            }
        }
    }

    pub async fn release(self) {
        match self {
            Staller::Sqlite(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
            }
            Staller::Postgres(mut c, _) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
            }
        }
    }
}
