//! LiteLLM's management API over a [`Store`]: `/key/*`, `/team/*`,
//! `/user/*`, `/customer/*` (and `/end_user/*`), `/spend/logs` and
//! `/global/spend*`, with LiteLLM's request and response JSON.
//!
//! # Who may do what
//!
//! | caller | may |
//! | --- | --- |
//! | master key, keys of `proxy_admin` users | everything |
//! | keys of `proxy_admin_viewer` users | every read (`GET`) route |
//! | keys of `internal_user` users | create keys for themselves (never more than the calling key has: models, budget, rate limits, expiry, team), change, block, regenerate and delete their own keys, read their own keys, user, teams and spend |
//! | keys of `internal_user_viewer` users | read their own keys, user and spend |
//! | other keys | `GET /key/info` of themselves, `GET /spend/logs` of themselves |
//! | anyone, when no master key is configured | read routes only |
//!
//! Every field is validated before anything is written (see
//! `validate.rs`): ids and aliases are at most 256 bytes without control
//! characters, quotes, `;`, `\`, `<` or `>`; JSON objects at most 8 KiB;
//! money between 0 and 10⁹ dollars. A refused request changes nothing.

mod keys;
mod org;
mod spend;

use super::auth::AccessGroups;
use super::entities::{UserRecord, UserRole};
use super::keys::{KeyRecord, hash_key, is_hash, is_well_formed_key};
use super::rows::dollars;
use super::time::{iso, now_secs};
use super::validate::Fields;
use super::{EndUserDirectory, KeyAuth, Store};
use crate::auth::{Identity, Role};
use crate::error::{Error, ErrorKind};
use http::Method;
use serde_json::{Map, Value, json};

/// The management API. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct ManagementApi {
    store: Store,
    auth: Option<KeyAuth>,
    end_users: Option<EndUserDirectory>,
    access_groups: AccessGroups,
    global_max_budget: Option<f64>,
}

/// Who is calling, as far as management is concerned.
enum Caller {
    /// No master key is configured: read-only.
    Open,
    /// The master key or a `proxy_admin` user's key.
    Admin(String),
    /// A `proxy_admin_viewer` user's key.
    Viewer,
    /// An `internal_user` (writes own keys) or `internal_user_viewer`.
    User {
        key: Box<KeyRecord>,
        user: Box<UserRecord>,
        identity: Box<Identity>,
        can_write: bool,
    },
    /// Any other key.
    Key(Box<KeyRecord>),
}

impl Caller {
    /// The `created_by` / `updated_by` label.
    fn label(&self) -> String {
        match self {
            Caller::Admin(by) => by.clone(),
            Caller::User { user, .. } => user.user_id.clone(),
            Caller::Key(k) => k.key_name.clone(),
            Caller::Open | Caller::Viewer => "anonymous".to_owned(),
        }
    }

    fn is_admin(&self) -> bool {
        matches!(self, Caller::Admin(_))
    }

    fn can_read_all(&self) -> bool {
        matches!(self, Caller::Admin(_) | Caller::Viewer | Caller::Open)
    }

    /// The caller's own user id, for self-scoped routes.
    fn own_user(&self) -> Option<&str> {
        match self {
            Caller::User { user, .. } => Some(&user.user_id),
            _ => None,
        }
    }
}

fn forbidden(what: &str) -> Error {
    Error::new(
        ErrorKind::PermissionDenied,
        format!("not allowed: {what} needs the master key or an admin key"),
    )
}

fn not_found(what: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("{what} not found"))
}

/// Pages: `page` from 1, `size` up to 1000.
fn page(f: &Fields, size_name: &str, default: i64) -> Result<(i64, i64), Error> {
    let page = f.count("page")?.unwrap_or(1).max(1);
    let size = f.count(size_name)?.unwrap_or(default).clamp(1, 1000);
    Ok((page, size))
}

/// A key given as `sk-…` or as its hash → the hash.
fn key_param(name: &'static str, v: &str) -> Result<String, Error> {
    if is_hash(v) {
        Ok(v.to_owned())
    } else if is_well_formed_key(v) {
        Ok(hash_key(v))
    } else {
        Err(Error::bad_request(format!("`{name}` is not a key")).with_param(name))
    }
}

impl ManagementApi {
    /// The API over `store`.
    pub fn new(store: Store) -> Self {
        ManagementApi {
            store,
            auth: None,
            end_users: None,
            access_groups: AccessGroups::default(),
            global_max_budget: None,
        }
    }

    /// Invalidates `auth`'s cache on every change (takes effect at once on
    /// this replica) and expands access groups as it does.
    pub fn with_auth(mut self, auth: KeyAuth, access_groups: AccessGroups) -> Self {
        self.auth = Some(auth);
        self.access_groups = access_groups;
        self
    }

    /// Invalidates the end-user cache on customer changes.
    pub fn with_end_users(mut self, end_users: EndUserDirectory) -> Self {
        self.end_users = Some(end_users);
        self
    }

    /// The gateway budget shown by `/global/spend` (`litellm_settings.max_budget`).
    pub fn with_global_budget(mut self, max_budget: Option<f64>) -> Self {
        self.global_max_budget = max_budget;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether `path` is one of this API's routes.
    pub fn is_route(path: &str) -> bool {
        let p = path.trim_end_matches('/');
        if p.starts_with("/key/") {
            return true;
        }
        matches!(
            p,
            "/team/new"
                | "/team/update"
                | "/team/delete"
                | "/team/info"
                | "/team/list"
                | "/team/member_add"
                | "/team/member_delete"
                | "/team/block"
                | "/team/unblock"
                | "/user/new"
                | "/user/update"
                | "/user/delete"
                | "/user/info"
                | "/user/list"
                | "/spend/logs"
                | "/global/spend"
                | "/global/spend/keys"
                | "/global/spend/teams"
                | "/global/spend/models"
                | "/global/spend/end_users"
                | "/global/spend/reset"
        ) || p.starts_with("/customer/")
            || p.starts_with("/end_user/")
    }

    /// Serves one management request. `body` is the raw JSON body (may be
    /// empty), `query` the raw query string.
    pub async fn handle(
        &self,
        identity: &Identity,
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Value, Error> {
        let path = path.trim_end_matches('/');
        let read = *method == Method::GET || *method == Method::HEAD;
        let write = *method == Method::POST || *method == Method::DELETE;
        let wrong_method = || {
            Error::new(
                ErrorKind::MethodNotAllowed,
                format!("{method} is not allowed on this route"),
            )
        };
        let caller = self.caller(identity).await?;
        let q = Fields::from_query(query)?;
        let b = || Fields::from_json(body);
        // Path-parameter routes: /key/{key}/regenerate, /key/{key}/reset_spend.
        if let Some(rest) = path.strip_prefix("/key/")
            && let Some((key, action)) = rest.split_once('/')
            && matches!(action, "regenerate" | "reset_spend")
        {
            if !write {
                return Err(wrong_method());
            }
            let key = Fields::from_query(Some(&format!("key={key}")))?.require_text("key")?;
            let hash = key_param("key", &key)?;
            let f = b()?;
            return if action == "regenerate" {
                self.key_regenerate(&caller, &hash, &f).await
            } else {
                self.key_reset_spend(&caller, &key, &hash, &f).await
            };
        }
        let path = path
            .strip_prefix("/end_user")
            .map_or_else(|| path.to_owned(), |rest| format!("/customer{rest}"));
        match path.as_str() {
            "/key/generate" if write => self.key_generate(&caller, &b()?).await,
            "/key/update" if write => self.key_update(&caller, &b()?).await,
            "/key/delete" if write => self.key_delete(&caller, &b()?).await,
            "/key/block" if write => self.key_block(&caller, &b()?, true).await,
            "/key/unblock" if write => self.key_block(&caller, &b()?, false).await,
            "/key/regenerate" if write => {
                let f = b()?;
                let key = f.require_text("key")?;
                let hash = key_param("key", &key)?;
                self.key_regenerate(&caller, &hash, &f).await
            }
            "/key/info" if read => self.key_info(&caller, identity, &q).await,
            "/key/list" if read => self.key_list(&caller, &q).await,
            "/team/new" if write => self.team_new(&caller, &b()?).await,
            "/team/update" if write => self.team_update(&caller, &b()?).await,
            "/team/delete" if write => self.team_delete(&caller, &b()?).await,
            "/team/block" if write => self.team_block(&caller, &b()?, true).await,
            "/team/unblock" if write => self.team_block(&caller, &b()?, false).await,
            "/team/member_add" if write => self.team_member_add(&caller, &b()?).await,
            "/team/member_delete" if write => self.team_member_delete(&caller, &b()?).await,
            "/team/info" if read => self.team_info(&caller, &q).await,
            "/team/list" if read => self.team_list(&caller, &q).await,
            "/user/new" if write => self.user_new(&caller, &b()?).await,
            "/user/update" if write => self.user_update(&caller, &b()?).await,
            "/user/delete" if write => self.user_delete(&caller, &b()?).await,
            "/user/info" if read => self.user_info(&caller, &q).await,
            "/user/list" if read => self.user_list(&caller, &q).await,
            "/customer/new" if write => self.customer_new(&caller, &b()?).await,
            "/customer/update" if write => self.customer_update(&caller, &b()?).await,
            "/customer/delete" if write => self.customer_delete(&caller, &b()?).await,
            "/customer/block" if write => self.customer_block(&caller, &b()?, true).await,
            "/customer/unblock" if write => self.customer_block(&caller, &b()?, false).await,
            "/customer/info" if read => self.customer_info(&caller, &q).await,
            "/customer/list" if read => self.customer_list(&caller, &q).await,
            "/spend/logs" if read => self.spend_logs(&caller, &q).await,
            "/global/spend" if read => self.global_spend(&caller).await,
            "/global/spend/keys" if read => self.global_spend_keys(&caller, &q).await,
            "/global/spend/teams" if read => self.global_spend_teams(&caller).await,
            "/global/spend/models" if read => self.global_spend_models(&caller, &q).await,
            "/global/spend/end_users" if read || write => {
                let f = if write { b()? } else { q };
                self.global_spend_end_users(&caller, &f).await
            }
            "/global/spend/reset" if write => self.global_spend_reset(&caller).await,
            p if ManagementApi::is_route(p) => {
                if [
                    "/key/generate",
                    "/key/update",
                    "/key/delete",
                    "/key/block",
                    "/key/unblock",
                    "/key/regenerate",
                    "/key/info",
                    "/key/list",
                    "/team/new",
                    "/team/update",
                    "/team/delete",
                    "/team/block",
                    "/team/unblock",
                    "/team/member_add",
                    "/team/member_delete",
                    "/team/info",
                    "/team/list",
                    "/user/new",
                    "/user/update",
                    "/user/delete",
                    "/user/info",
                    "/user/list",
                    "/customer/new",
                    "/customer/update",
                    "/customer/delete",
                    "/customer/block",
                    "/customer/unblock",
                    "/customer/info",
                    "/customer/list",
                    "/spend/logs",
                    "/global/spend",
                    "/global/spend/keys",
                    "/global/spend/teams",
                    "/global/spend/models",
                    "/global/spend/reset",
                ]
                .contains(&p)
                {
                    Err(wrong_method())
                } else {
                    Err(Error::new(ErrorKind::NotFound, "no such management route"))
                }
            }
            _ => Err(Error::new(ErrorKind::NotFound, "no such management route")),
        }
    }

    async fn caller(&self, identity: &Identity) -> Result<Caller, Error> {
        match identity.role {
            Role::Anonymous => Ok(Caller::Open),
            Role::Admin => Ok(Caller::Admin(match &identity.user_id {
                Some(u) if identity.key_hash.is_some() => u.to_string(),
                _ => "master_key".to_owned(),
            })),
            Role::Key => {
                let Some(hash) = &identity.key_hash else {
                    return Err(Error::unauthorized());
                };
                let key = self
                    .store
                    .key(hash)
                    .await?
                    .ok_or_else(Error::unauthorized)?;
                let user = match &key.user_id {
                    Some(u) => self.store.user(u).await?,
                    None => None,
                };
                Ok(match user {
                    Some(u) if u.user_role == UserRole::ProxyAdmin => Caller::Admin(u.user_id),
                    Some(u) if u.user_role == UserRole::ProxyAdminViewer => Caller::Viewer,
                    Some(u) => Caller::User {
                        can_write: u.user_role == UserRole::InternalUser,
                        key: Box::new(key),
                        user: Box::new(u),
                        identity: Box::new(identity.clone()),
                    },
                    None => Caller::Key(Box::new(key)),
                })
            }
        }
    }

    fn invalidate_key(&self, hash: &str) {
        if let Some(a) = &self.auth {
            a.invalidate_key(hash);
        }
    }

    fn invalidate_all(&self) {
        if let Some(a) = &self.auth {
            a.invalidate_all();
        }
    }

    /// A key's spend in its current budget window (since its last reset
    /// when it has no window).
    async fn key_spend(&self, k: &KeyRecord, now: i64) -> Result<f64, Error> {
        if k.limits.budget_duration.is_none() {
            return Ok(dollars(i128::from(k.spend_pico)));
        }
        let from = k.limits.window_start(now);
        let spent = self
            .store
            .spent_from(crate::limits::ScopeKind::Key, &k.key_id, None, from)
            .await?;
        Ok(spent.as_f64())
    }

    /// LiteLLM's key object (`LiteLLM_VerificationToken`), spend included.
    async fn key_json(&self, k: &KeyRecord, with_token: bool) -> Result<Map<String, Value>, Error> {
        let now = now_secs();
        let mut m = Map::new();
        if with_token {
            m.insert("token".into(), json!(k.token));
        }
        m.insert("key_id".into(), json!(k.key_id));
        m.insert("key_name".into(), json!(k.key_name));
        m.insert("key_alias".into(), json!(k.key_alias));
        m.insert("spend".into(), json!(self.key_spend(k, now).await?));
        m.insert("expires".into(), json!(k.expires.map(iso)));
        m.insert("models".into(), json!(k.models));
        m.insert("aliases".into(), Value::Object(k.aliases.clone()));
        m.insert("config".into(), json!({}));
        m.insert("permissions".into(), json!({}));
        m.insert("user_id".into(), json!(k.user_id));
        m.insert("team_id".into(), json!(k.team_id));
        m.insert("metadata".into(), Value::Object(k.metadata.clone()));
        m.insert("tags".into(), json!(k.tags));
        m.insert("blocked".into(), json!(k.blocked));
        m.insert(
            "allowed_cache_controls".into(),
            json!(k.allowed_cache_controls),
        );
        k.limits.write_json(&mut m, now, true);
        m.insert("created_at".into(), json!(iso(k.created_at)));
        m.insert("created_by".into(), json!(k.created_by));
        m.insert("updated_at".into(), json!(iso(k.updated_at)));
        m.insert("updated_by".into(), json!(k.updated_by));
        Ok(m)
    }
}
