//! The control plane inside the proxy: where keys and spend live, virtual-key
//! authentication, the spend writer, and the management routes.
//!
//! # Where the database is
//!
//! 1. `general_settings.database_url`, else the `DATABASE_URL` environment
//!    variable: `postgresql://…` (many replicas) or `sqlite://path`;
//! 2. otherwise a SQLite file `tollgate.db` next to the config file;
//! 3. without a config file (`tollgate`, `tollgate --model …`): the SQLite file
//!    `tollgate-demo.db` in the system's temporary directory.
//!
//! The schema is migrated at start-up (under a lock on PostgreSQL, so
//! replicas can start together) unless
//! `general_settings.disable_prisma_schema_update` is true; `tollgate migrate`
//! runs the migrations explicitly. `tollgate --no-database` (or
//! `TOLLGATE_NO_DATABASE=1`) runs without any database: no virtual keys, no
//! spend logs.
//!
//! # Settings read (LiteLLM's names)
//!
//! `general_settings`: `database_url`, `database_connection_pool_limit`
//! (default 10), `database_connection_timeout` (seconds, default 5),
//! `allow_requests_on_db_unavailable` (default false),
//! `proxy_batch_write_at` (seconds between spend-log writes, default 10),
//! `disable_prisma_schema_update`. `litellm_settings.max_budget` is shown by
//! `/global/spend`.

use super::config::{ConfigError, ProxyConfig};
use crate::auth::Authenticate;
use crate::edge::EdgeBody;
use crate::error::{BoxError, Error, ErrorKind};
use crate::limits::{EndUsers, SpendHistory};
use crate::provider::BoxFuture;
use crate::store::{
    AccessGroups, EndUserDirectory, KeyAuth, KeyAuthConfig, ManagementApi, SpendWriter,
    SpendWriterConfig, Store, StoreOptions,
};
use bytes::Bytes;
use http::HeaderValue;
use serde_json::Value;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Largest management request body.
const MAX_BODY: usize = 64 * 1024;

fn general<'a>(config: &'a ProxyConfig, key: &str) -> Option<&'a Value> {
    config
        .general_settings
        .other
        .get(key)
        .filter(|v| !v.is_null())
}

fn bool_setting(config: &ProxyConfig, key: &str) -> Result<bool, ConfigError> {
    match general(config, key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(ConfigError(format!(
            "general_settings.{key}: expected true or false"
        ))),
    }
}

fn secs_setting(config: &ProxyConfig, key: &str) -> Result<Option<Duration>, ConfigError> {
    let v = match general(config, key) {
        None => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match v {
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s.min(86_400.0)))),
        _ => Err(ConfigError(format!(
            "general_settings.{key}: expected a positive number of seconds"
        ))),
    }
}

/// How to open the proxy's database (see the [module docs](self)).
pub fn store_options(
    config: &ProxyConfig,
    config_path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<StoreOptions, ConfigError> {
    let url = match general(config, "database_url") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        Some(Value::String(_)) | None => match env("DATABASE_URL") {
            Some(u) if !u.trim().is_empty() => u.trim().to_owned(),
            _ => match config_path {
                Some(p) => p
                    .parent()
                    .map_or_else(|| Path::new(".").to_path_buf(), Path::to_path_buf)
                    .join("tollgate.db")
                    .to_string_lossy()
                    .into_owned(),
                None => std::env::temp_dir()
                    .join("tollgate-demo.db")
                    .to_string_lossy()
                    .into_owned(),
            },
        },
        Some(_) => {
            return Err(ConfigError(
                "general_settings.database_url: expected a URL string".to_owned(),
            ));
        }
    };
    let mut options = StoreOptions::new(url);
    match general(config, "database_connection_pool_limit") {
        None => {}
        Some(v) => {
            options.max_connections = v
                .as_u64()
                .filter(|n| (1..=1000).contains(n))
                .map(|n| n as u32)
                .ok_or_else(|| {
                    ConfigError(
                        "general_settings.database_connection_pool_limit: expected a whole number from 1 to 1000"
                            .to_owned(),
                    )
                })?;
        }
    }
    if let Some(t) = secs_setting(config, "database_connection_timeout")? {
        options.acquire_timeout = t;
    }
    options.migrate = !bool_setting(config, "disable_prisma_schema_update")?;
    Ok(options)
}

/// Checks the database settings without opening anything (`--check`).
pub fn check_settings(
    config: &ProxyConfig,
    config_path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    store_options(config, config_path, env)?;
    bool_setting(config, "allow_requests_on_db_unavailable")?;
    secs_setting(config, "proxy_batch_write_at")?;
    Ok(())
}

/// Model access groups from `model_info.access_groups`.
pub fn access_groups(config: &ProxyConfig) -> AccessGroups {
    let mut groups = AccessGroups::default();
    for entry in &config.model_list {
        if let Some(Value::Array(list)) = entry.model_info.get("access_groups") {
            for g in list.iter().filter_map(Value::as_str) {
                groups.add(g, &entry.model_name);
            }
        }
    }
    groups
}

/// The running control plane of a proxy.
pub struct ControlPlane {
    /// The database.
    pub store: Store,
    /// Virtual-key authentication (when a master key is configured).
    pub auth: Option<KeyAuth>,
    /// The spend-log writer (a record sink).
    pub writer: SpendWriter,
    /// End users' limits.
    pub end_users: EndUserDirectory,
    /// The management routes.
    pub api: Arc<ManagementApi>,
    feed: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("store", &self.store)
            .field("virtual_keys", &self.auth.is_some())
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts key authentication, the spend writer and the change feed over
    /// `store`. Must run inside a tokio runtime.
    pub fn start(config: &ProxyConfig, store: Store) -> Result<ControlPlane, ConfigError> {
        let allow = bool_setting(config, "allow_requests_on_db_unavailable")?;
        let groups = access_groups(config);
        let auth = config
            .general_settings
            .master_key
            .as_ref()
            .filter(|k| !k.expose().is_empty())
            .map(|k| {
                KeyAuth::new(
                    store.clone(),
                    KeyAuthConfig {
                        master_key: Some(k.clone()),
                        access_groups: groups.clone(),
                        allow_requests_on_db_unavailable: allow,
                        ..KeyAuthConfig::default()
                    },
                )
            });
        let mut writer_config = SpendWriterConfig::default();
        if let Some(every) = secs_setting(config, "proxy_batch_write_at")? {
            writer_config.interval = every;
        }
        let writer = SpendWriter::spawn(store.clone(), writer_config);
        let end_users = EndUserDirectory::new(store.clone(), allow);
        let global_budget = config
            .litellm_settings
            .other
            .get("max_budget")
            .and_then(Value::as_f64);
        let mut api = ManagementApi::new(store.clone())
            .with_end_users(end_users.clone())
            .with_global_budget(global_budget);
        if let Some(a) = &auth {
            api = api.with_auth(a.clone(), groups);
        }
        let feed = store.follow_changes(
            auth.clone(),
            Some(end_users.clone()),
            Duration::from_secs(2),
        );
        Ok(ControlPlane {
            store,
            auth,
            writer,
            end_users,
            api: Arc::new(api),
            feed,
        })
    }

    /// The authenticator for the API: virtual keys and the master key.
    pub fn authenticator(&self) -> Option<Arc<dyn Authenticate>> {
        self.auth
            .clone()
            .map(|a| Arc::new(a) as Arc<dyn Authenticate>)
    }

    /// Spend history for the budget ledger.
    pub fn history(&self) -> Arc<dyn SpendHistory> {
        Arc::new(self.store.clone())
    }

    /// End users' limits for the budget and rate-limit layers.
    pub fn end_user_limits(&self) -> Arc<dyn EndUsers> {
        Arc::new(self.end_users.clone())
    }

    /// Writes every queued spend row (waiting at most `grace`), then stops.
    pub async fn shutdown(&self, grace: Duration) {
        self.feed.abort();
        self.writer.shutdown(grace).await;
        self.store.close().await;
    }
}

fn error_response(e: &Error) -> http::Response<EdgeBody> {
    let mut resp = http::Response::new(EdgeBody::full(e.to_json()));
    *resp.status_mut() = e.status();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Serves one management request: authenticate, read the body (at most
/// 64 KiB, 30 s), answer JSON.
pub(crate) fn serve<B>(
    api: Arc<ManagementApi>,
    auth: Arc<dyn Authenticate>,
    req: http::Request<B>,
) -> BoxFuture<Result<http::Response<EdgeBody>, Infallible>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Box::pin(async move {
        let (parts, body) = req.into_parts();
        let result = async {
            let identity = auth
                .authenticate(crate::auth::credential(&parts.headers))
                .await?;
            let bytes = read_body(body).await?;
            api.handle(
                &identity,
                &parts.method,
                parts.uri.path(),
                parts.uri.query(),
                &bytes,
            )
            .await
        }
        .await;
        Ok(match result {
            Ok(v) => {
                let mut resp =
                    http::Response::new(EdgeBody::full(serde_json::to_vec(&v).unwrap_or_default()));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp
            }
            Err(e) => error_response(&e),
        })
    })
}

async fn read_body<B>(body: B) -> Result<Bytes, Error>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    let collected = tokio::time::timeout(Duration::from_secs(30), limited.collect())
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::Timeout(crate::error::TimeoutKind::Total),
                "the request body was not received in time",
            )
        })?
        .map_err(|_| {
            Error::new(
                ErrorKind::PayloadTooLarge,
                format!("a management request body is at most {MAX_BODY} bytes"),
            )
        })?;
    Ok(collected.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with(settings: Value) -> ProxyConfig {
        let mut c = ProxyConfig::default();
        if let Value::Object(m) = settings {
            c.general_settings.other = m;
        }
        c
    }

    #[test]
    fn where_the_database_is() {
        let none = |_: &str| None;
        let env = |k: &str| (k == "DATABASE_URL").then(|| "postgres://db/env".to_owned());
        let cfg = Path::new("/etc/tollgate/config.yaml");
        let o = store_options(&with(json!({})), Some(cfg), &none).unwrap();
        assert_eq!(o.url, "/etc/tollgate/tollgate.db");
        assert!(o.migrate);
        assert_eq!(
            store_options(&with(json!({})), Some(cfg), &env)
                .unwrap()
                .url,
            "postgres://db/env"
        );
        let o = store_options(
            &with(
                json!({"database_url": "postgresql://db/cfg", "database_connection_pool_limit": 3,
                         "database_connection_timeout": 2.5, "disable_prisma_schema_update": true}),
            ),
            Some(cfg),
            &env,
        )
        .unwrap();
        assert_eq!(
            o.url, "postgresql://db/cfg",
            "the config wins over DATABASE_URL"
        );
        assert_eq!(o.max_connections, 3);
        assert_eq!(o.acquire_timeout, Duration::from_millis(2500));
        assert!(!o.migrate);
        let demo = store_options(&with(json!({})), None, &none).unwrap();
        assert!(demo.url.ends_with("tollgate-demo.db"));
    }

    #[test]
    fn bad_settings_are_config_errors() {
        let none = |_: &str| None;
        for bad in [
            json!({"database_url": 5}),
            json!({"database_connection_pool_limit": 0}),
            json!({"database_connection_timeout": "soon"}),
            json!({"proxy_batch_write_at": -1}),
            json!({"allow_requests_on_db_unavailable": "maybe"}),
        ] {
            assert!(
                check_settings(&with(bad.clone()), None, &none).is_err(),
                "{bad}"
            );
        }
        assert!(check_settings(&with(json!({"proxy_batch_write_at": 60})), None, &none).is_ok());
    }

    #[test]
    fn access_groups_come_from_model_info() {
        let yaml = "model_list:\n  - model_name: a\n    litellm_params: {model: mock/a}\n    model_info: {access_groups: [beta]}\n  - model_name: b\n    litellm_params: {model: mock/b}\n    model_info: {access_groups: [beta, gamma]}\n";
        let loaded = super::super::config::load_str(yaml, Path::new("c.yaml"), &|_| None).unwrap();
        let g = access_groups(&loaded.config);
        assert_eq!(
            g.expand(&["beta".to_owned()]),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(g.expand(&["gamma".to_owned()]), Some(vec!["b".to_owned()]));
    }
}
