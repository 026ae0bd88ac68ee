//! Teams (with members), internal users and end users (customers).

use super::keys::{CHANGE, WriteError};
use super::rows::{Get, LimitFields, json_col, list_col, object_col, to_json_text};
use super::{Store, db_err, on_pool};
use crate::error::Error;
use serde_json::{Map, Value, json};

/// The statements that delete one kind of key owner and what it owns.
struct Owner {
    delete: &'static str,
    delete_members: &'static str,
    select_keys: &'static str,
    delete_keys: &'static str,
    /// Its kind in the change feed.
    change: &'static str,
}

const TEAM_OWNER: Owner = Owner {
    delete: "DELETE FROM tollgate_teams WHERE team_id = $1",
    delete_members: "DELETE FROM tollgate_team_members WHERE team_id = $1",
    select_keys: "SELECT token FROM tollgate_keys WHERE team_id = $1",
    delete_keys: "DELETE FROM tollgate_keys WHERE team_id = $1",
    change: "team",
};

const USER_OWNER: Owner = Owner {
    delete: "DELETE FROM tollgate_users WHERE user_id = $1",
    delete_members: "DELETE FROM tollgate_team_members WHERE user_id = $1",
    select_keys: "SELECT token FROM tollgate_keys WHERE user_id = $1",
    delete_keys: "DELETE FROM tollgate_keys WHERE user_id = $1",
    change: "user",
};

/// A team member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The internal user.
    pub user_id: String,
    /// `admin` or `user`.
    pub role: String,
}

/// A team, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct TeamRecord {
    /// Id.
    pub team_id: String,
    /// Display name.
    pub team_alias: Option<String>,
    /// Models the team's keys may use (empty: all).
    pub models: Vec<String>,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
    /// Tags.
    pub tags: Vec<String>,
    /// Budgets and limits shared by all the team's keys.
    pub limits: LimitFields,
    /// Spend since `limits.budget_start`, picodollars.
    pub spend_pico: i64,
    /// Every key of a blocked team is refused.
    pub blocked: bool,
    /// Members.
    pub members: Vec<Member>,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
    /// Optimistic-concurrency counter.
    pub version: i64,
}

impl TeamRecord {
    /// A new team created now.
    pub fn new(team_id: String, now: i64) -> Self {
        TeamRecord {
            team_id,
            team_alias: None,
            models: Vec::new(),
            metadata: Map::new(),
            tags: Vec::new(),
            limits: LimitFields {
                budget_start: now,
                ..LimitFields::default()
            },
            spend_pico: 0,
            blocked: false,
            members: Vec::new(),
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }

    fn from_row(r: &impl Get) -> Result<Self, sqlx::Error> {
        Ok(TeamRecord {
            team_id: r.text("team_id")?,
            team_alias: r.opt_text("team_alias")?,
            models: list_col(r, "models")?,
            metadata: object_col(r, "metadata")?,
            tags: list_col(r, "tags")?,
            limits: LimitFields::from_row(r, true)?,
            spend_pico: r.int("spend_pico")?,
            blocked: r.flag("blocked")?,
            members: Vec::new(),
            created_at: r.int("created_at")?,
            updated_at: r.int("updated_at")?,
            version: r.int("version")?,
        })
    }
}

/// What an internal user may do (LiteLLM's `user_role`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserRole {
    /// Everything, like the master key.
    ProxyAdmin,
    /// Read every key, team, user and spend record; change nothing.
    ProxyAdminViewer,
    /// Create, change and delete their own keys; read their own spend.
    InternalUser,
    /// Read their own keys and spend.
    InternalUserViewer,
}

impl UserRole {
    /// LiteLLM's name.
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::ProxyAdmin => "proxy_admin",
            UserRole::ProxyAdminViewer => "proxy_admin_viewer",
            UserRole::InternalUser => "internal_user",
            UserRole::InternalUserViewer => "internal_user_viewer",
        }
    }

    /// Parses LiteLLM's names (`admin` is accepted for `proxy_admin`).
    pub fn parse(s: &str) -> Option<UserRole> {
        Some(match s {
            "proxy_admin" | "admin" => UserRole::ProxyAdmin,
            "proxy_admin_viewer" => UserRole::ProxyAdminViewer,
            "internal_user" | "app_owner" => UserRole::InternalUser,
            "internal_user_viewer" | "app_user" => UserRole::InternalUserViewer,
            _ => return None,
        })
    }
}

/// An internal user, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct UserRecord {
    /// Id.
    pub user_id: String,
    /// Display name.
    pub user_alias: Option<String>,
    /// Email.
    pub user_email: Option<String>,
    /// Role.
    pub user_role: UserRole,
    /// Models the user's keys may use (empty: all).
    pub models: Vec<String>,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
    /// Budgets and limits across all the user's keys.
    pub limits: LimitFields,
    /// Spend since `limits.budget_start`, picodollars.
    pub spend_pico: i64,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
    /// Optimistic-concurrency counter.
    pub version: i64,
}

impl UserRecord {
    /// A new user created now.
    pub fn new(user_id: String, role: UserRole, now: i64) -> Self {
        UserRecord {
            user_id,
            user_alias: None,
            user_email: None,
            user_role: role,
            models: Vec::new(),
            metadata: Map::new(),
            limits: LimitFields {
                budget_start: now,
                ..LimitFields::default()
            },
            spend_pico: 0,
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }

    fn from_row(r: &impl Get) -> Result<Self, sqlx::Error> {
        Ok(UserRecord {
            user_id: r.text("user_id")?,
            user_alias: r.opt_text("user_alias")?,
            user_email: r.opt_text("user_email")?,
            user_role: UserRole::parse(&r.text("user_role")?)
                .unwrap_or(UserRole::InternalUserViewer),
            models: list_col(r, "models")?,
            metadata: object_col(r, "metadata")?,
            limits: LimitFields::from_row(r, true)?,
            spend_pico: r.int("spend_pico")?,
            created_at: r.int("created_at")?,
            updated_at: r.int("updated_at")?,
            version: r.int("version")?,
        })
    }
}

/// An end user (LiteLLM's customer: the request's `user` field), as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct EndUserRecord {
    /// Id (the `user` value).
    pub user_id: String,
    /// Display name.
    pub alias: Option<String>,
    /// Requests naming a blocked end user are refused.
    pub blocked: bool,
    /// Budgets and limits (`model_max_budget` is the only per-model one).
    pub limits: LimitFields,
    /// LiteLLM's `allowed_model_region` (stored, shown).
    pub allowed_model_region: Option<String>,
    /// LiteLLM's `default_model` (stored, shown).
    pub default_model: Option<String>,
    /// Spend since `limits.budget_start`, picodollars.
    pub spend_pico: i64,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
    /// Optimistic-concurrency counter.
    pub version: i64,
}

impl EndUserRecord {
    /// A new end user created now.
    pub fn new(user_id: String, now: i64) -> Self {
        EndUserRecord {
            user_id,
            alias: None,
            blocked: false,
            limits: LimitFields {
                budget_start: now,
                ..LimitFields::default()
            },
            allowed_model_region: None,
            default_model: None,
            spend_pico: 0,
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }

    fn from_row(r: &impl Get) -> Result<Self, sqlx::Error> {
        let mut limits = LimitFields::from_row(r, false)?;
        limits.model_max_budget =
            serde_json::from_value(json_col(r, "model_max_budget", json!({}))?).unwrap_or_default();
        Ok(EndUserRecord {
            user_id: r.text("user_id")?,
            alias: r.opt_text("alias")?,
            blocked: r.flag("blocked")?,
            limits,
            allowed_model_region: r.opt_text("allowed_model_region")?,
            default_model: r.opt_text("default_model")?,
            spend_pico: r.int("spend_pico")?,
            created_at: r.int("created_at")?,
            updated_at: r.int("updated_at")?,
            version: r.int("version")?,
        })
    }
}

macro_rules! limit_cols {
    () => {
        "max_budget, soft_budget, budget_duration, budget_start, tpm_limit, rpm_limit, \
         max_parallel_requests"
    };
}

macro_rules! team_cols {
    () => {
        concat!(
            "team_id, team_alias, models, metadata, tags, ",
            limit_cols!(),
            ", model_max_budget, model_rpm_limit, model_tpm_limit, spend_pico, blocked, \
             created_at, updated_at, version"
        )
    };
}

macro_rules! user_cols {
    () => {
        concat!(
            "user_id, user_alias, user_email, user_role, models, metadata, ",
            limit_cols!(),
            ", model_max_budget, model_rpm_limit, model_tpm_limit, spend_pico, created_at, \
             updated_at, version"
        )
    };
}

macro_rules! end_user_cols {
    () => {
        concat!(
            "user_id, alias, blocked, ",
            limit_cols!(),
            ", model_max_budget, allowed_model_region, default_model, spend_pico, created_at, \
             updated_at, version"
        )
    };
}

macro_rules! bind_limits {
    ($q:expr, $l:expr) => {{
        let l = $l;
        $q.bind(l.max_budget)
            .bind(l.soft_budget)
            .bind(l.budget_duration.clone())
            .bind(l.budget_start)
            .bind(l.tpm_limit)
            .bind(l.rpm_limit)
            .bind(l.max_parallel_requests)
    }};
}

const INSERT_TEAM: &str = concat!(
    "INSERT INTO tollgate_teams (",
    team_cols!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20)"
);
const UPDATE_TEAM: &str = "UPDATE tollgate_teams SET team_alias = $2, models = $3, metadata = $4, \
     tags = $5, max_budget = $6, soft_budget = $7, budget_duration = $8, budget_start = $9, \
     tpm_limit = $10, rpm_limit = $11, max_parallel_requests = $12, model_max_budget = $13, \
     model_rpm_limit = $14, model_tpm_limit = $15, blocked = $16, updated_at = $17, \
     version = version + 1 WHERE team_id = $1 AND version = $18";
const SELECT_TEAM: &str = concat!(
    "SELECT ",
    team_cols!(),
    " FROM tollgate_teams WHERE team_id = $1"
);
const LIST_TEAMS: &str = concat!(
    "SELECT ",
    team_cols!(),
    " FROM tollgate_teams ORDER BY created_at, team_id LIMIT $1 OFFSET $2"
);
const LIST_TEAMS_OF_USER: &str = concat!(
    "SELECT ",
    team_cols!(),
    " FROM tollgate_teams WHERE team_id IN (SELECT team_id FROM tollgate_team_members \
     WHERE user_id = $1) ORDER BY created_at, team_id LIMIT $2 OFFSET $3"
);
const SELECT_MEMBERS: &str =
    "SELECT user_id, role FROM tollgate_team_members WHERE team_id = $1 ORDER BY added_at, user_id";
const UPSERT_MEMBER: &str = "INSERT INTO tollgate_team_members (team_id, user_id, role, added_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role";

const INSERT_USER: &str = concat!(
    "INSERT INTO tollgate_users (",
    user_cols!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20)"
);
const UPDATE_USER: &str = "UPDATE tollgate_users SET user_alias = $2, user_email = $3, \
     user_role = $4, models = $5, metadata = $6, max_budget = $7, soft_budget = $8, \
     budget_duration = $9, budget_start = $10, tpm_limit = $11, rpm_limit = $12, \
     max_parallel_requests = $13, model_max_budget = $14, model_rpm_limit = $15, \
     model_tpm_limit = $16, updated_at = $17, version = version + 1 \
     WHERE user_id = $1 AND version = $18";
const SELECT_USER: &str = concat!(
    "SELECT ",
    user_cols!(),
    " FROM tollgate_users WHERE user_id = $1"
);
const SELECT_USER_BY_EMAIL: &str = concat!(
    "SELECT ",
    user_cols!(),
    " FROM tollgate_users WHERE user_email = $1"
);
const LIST_USERS: &str = concat!(
    "SELECT ",
    user_cols!(),
    " FROM tollgate_users WHERE ($1 IS NULL OR user_role = $1) ORDER BY created_at, user_id \
     LIMIT $2 OFFSET $3"
);
const COUNT_USERS: &str =
    "SELECT COUNT(*) AS n FROM tollgate_users WHERE ($1 IS NULL OR user_role = $1)";

const INSERT_END_USER: &str = concat!(
    "INSERT INTO tollgate_end_users (",
    end_user_cols!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
);
const UPDATE_END_USER: &str = "UPDATE tollgate_end_users SET alias = $2, blocked = $3, \
     max_budget = $4, soft_budget = $5, budget_duration = $6, budget_start = $7, tpm_limit = $8, \
     rpm_limit = $9, max_parallel_requests = $10, model_max_budget = $11, \
     allowed_model_region = $12, default_model = $13, updated_at = $14, version = version + 1 \
     WHERE user_id = $1 AND version = $15";
const SELECT_END_USER: &str = concat!(
    "SELECT ",
    end_user_cols!(),
    " FROM tollgate_end_users WHERE user_id = $1"
);
const LIST_END_USERS: &str = concat!(
    "SELECT ",
    end_user_cols!(),
    " FROM tollgate_end_users ORDER BY created_at, user_id LIMIT $1 OFFSET $2"
);

fn dup(what: &'static str, param: &'static str) -> impl Fn(WriteError) -> Error {
    move |e| match e {
        WriteError::Duplicate => {
            Error::bad_request(format!("{what} already exists")).with_param(param)
        }
        WriteError::Db(e) => e,
    }
}

impl Store {
    // ---------------------------------------------------------------- teams

    /// Stores a new team and its members. 400 if the id is taken.
    pub async fn insert_team(&self, team: &TeamRecord) -> Result<(), Error> {
        let now = super::time::now_secs();
        let r: Result<(), WriteError> = on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let l = &team.limits;
            let q = sqlx::query(INSERT_TEAM)
                .bind(team.team_id.clone())
                .bind(team.team_alias.clone())
                .bind(to_json_text(&team.models))
                .bind(to_json_text(&team.metadata))
                .bind(to_json_text(&team.tags));
            bind_limits!(q, l)
                .bind(to_json_text(&l.model_max_budget))
                .bind(to_json_text(&l.model_rpm_limit))
                .bind(to_json_text(&l.model_tpm_limit))
                .bind(team.spend_pico)
                .bind(team.blocked)
                .bind(team.created_at)
                .bind(team.updated_at)
                .bind(team.version)
                .execute(&mut *tx)
                .await?;
            for m in &team.members {
                sqlx::query(UPSERT_MEMBER)
                    .bind(team.team_id.clone())
                    .bind(m.user_id.clone())
                    .bind(m.role.clone())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(CHANGE)
                .bind("team")
                .bind(team.team_id.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        });
        r.map_err(dup("a team with this `team_id`", "team_id"))
    }

    /// The team with this id, with its members.
    pub async fn team(&self, team_id: &str) -> Result<Option<TeamRecord>, Error> {
        on_pool!(self, |p| {
            let Some(r) = sqlx::query(SELECT_TEAM)
                .bind(team_id)
                .fetch_optional(p)
                .await?
            else {
                return Ok(None);
            };
            let mut team = TeamRecord::from_row(&r)?;
            for m in sqlx::query(SELECT_MEMBERS)
                .bind(team_id)
                .fetch_all(p)
                .await?
            {
                team.members.push(Member {
                    user_id: m.text("user_id")?,
                    role: m.text("role")?,
                });
            }
            Ok::<_, sqlx::Error>(Some(team))
        })
        .map_err(db_err)
    }

    /// Teams (of `user_id` when given), oldest first, with members.
    pub(crate) async fn list_teams(
        &self,
        user_id: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<TeamRecord>, Error> {
        let rows: Vec<TeamRecord> = on_pool!(self, |p| {
            let rows = match user_id {
                Some(u) => {
                    sqlx::query(LIST_TEAMS_OF_USER)
                        .bind(u)
                        .bind(limit)
                        .bind(offset)
                        .fetch_all(p)
                        .await?
                }
                None => {
                    sqlx::query(LIST_TEAMS)
                        .bind(limit)
                        .bind(offset)
                        .fetch_all(p)
                        .await?
                }
            };
            rows.iter()
                .map(TeamRecord::from_row)
                .collect::<Result<Vec<_>, sqlx::Error>>()
        })
        .map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for mut t in rows {
            t.members = self.members(&t.team_id).await?;
            out.push(t);
        }
        Ok(out)
    }

    async fn members(&self, team_id: &str) -> Result<Vec<Member>, Error> {
        on_pool!(self, |p| {
            let rows = sqlx::query(SELECT_MEMBERS)
                .bind(team_id)
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|m| {
                    Ok(Member {
                        user_id: m.text("user_id")?,
                        role: m.text("role")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
        })
        .map_err(db_err)
    }

    /// Writes a team's fields if unchanged since read (`Ok(false)` otherwise).
    pub(crate) async fn update_team(&self, team: &TeamRecord) -> Result<bool, Error> {
        let now = super::time::now_secs();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let l = &team.limits;
            let n = sqlx::query(UPDATE_TEAM)
                .bind(team.team_id.clone())
                .bind(team.team_alias.clone())
                .bind(to_json_text(&team.models))
                .bind(to_json_text(&team.metadata))
                .bind(to_json_text(&team.tags))
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
                .bind(team.blocked)
                .bind(now)
                .bind(team.version)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Ok(false);
            }
            sqlx::query(CHANGE)
                .bind("team")
                .bind(team.team_id.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(true)
        })
        .map_err(db_err)
    }

    /// Adds (or re-roles) members of a team.
    pub(crate) async fn upsert_members(
        &self,
        team_id: &str,
        members: &[Member],
    ) -> Result<(), Error> {
        let now = super::time::now_secs();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            for m in members {
                sqlx::query(UPSERT_MEMBER)
                    .bind(team_id)
                    .bind(m.user_id.clone())
                    .bind(m.role.clone())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(CHANGE)
                .bind("team")
                .bind(team_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        })
        .map_err(db_err)
    }

    /// Removes members from a team; returns how many were members.
    pub(crate) async fn remove_members(
        &self,
        team_id: &str,
        users: &[String],
    ) -> Result<u64, Error> {
        let now = super::time::now_secs();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let mut n = 0;
            for u in users {
                n += sqlx::query(
                    "DELETE FROM tollgate_team_members WHERE team_id = $1 AND user_id = $2",
                )
                .bind(team_id)
                .bind(u.clone())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            sqlx::query(CHANGE)
                .bind("team")
                .bind(team_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        })
        .map_err(db_err)
    }

    /// Deletes teams with their memberships and keys; returns the ids that existed.
    pub async fn delete_teams(&self, ids: &[String]) -> Result<Vec<String>, Error> {
        self.delete_owners(&TEAM_OWNER, ids).await
    }

    /// Deletes owners of keys (teams or users) with their memberships and
    /// keys, telling other replicas through the change feed; returns the ids
    /// that existed.
    async fn delete_owners(&self, o: &Owner, ids: &[String]) -> Result<Vec<String>, Error> {
        let now = super::time::now_secs();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let mut deleted = Vec::new();
            for id in ids {
                let n = sqlx::query(o.delete)
                    .bind(id.clone())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    continue;
                }
                sqlx::query(o.delete_members)
                    .bind(id.clone())
                    .execute(&mut *tx)
                    .await?;
                let tokens = sqlx::query(o.select_keys)
                    .bind(id.clone())
                    .fetch_all(&mut *tx)
                    .await?;
                for t in &tokens {
                    sqlx::query(CHANGE)
                        .bind("key")
                        .bind(t.text("token")?)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(o.delete_keys)
                    .bind(id.clone())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(CHANGE)
                    .bind(o.change)
                    .bind(id.clone())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                deleted.push(id.clone());
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(deleted)
        })
        .map_err(db_err)
    }

    // ---------------------------------------------------------------- users

    /// Stores a new internal user. 400 if the id is taken.
    pub async fn insert_user(&self, user: &UserRecord) -> Result<(), Error> {
        let now = super::time::now_secs();
        let r: Result<(), WriteError> = on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let l = &user.limits;
            let q = sqlx::query(INSERT_USER)
                .bind(user.user_id.clone())
                .bind(user.user_alias.clone())
                .bind(user.user_email.clone())
                .bind(user.user_role.as_str())
                .bind(to_json_text(&user.models))
                .bind(to_json_text(&user.metadata));
            bind_limits!(q, l)
                .bind(to_json_text(&l.model_max_budget))
                .bind(to_json_text(&l.model_rpm_limit))
                .bind(to_json_text(&l.model_tpm_limit))
                .bind(user.spend_pico)
                .bind(user.created_at)
                .bind(user.updated_at)
                .bind(user.version)
                .execute(&mut *tx)
                .await?;
            sqlx::query(CHANGE)
                .bind("user")
                .bind(user.user_id.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        });
        r.map_err(dup("a user with this `user_id`", "user_id"))
    }

    /// The internal user with this id.
    pub async fn user(&self, user_id: &str) -> Result<Option<UserRecord>, Error> {
        self.user_where(SELECT_USER, user_id).await
    }

    /// The internal user with this email.
    pub(crate) async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, Error> {
        self.user_where(SELECT_USER_BY_EMAIL, email).await
    }

    async fn user_where(&self, sql: &'static str, v: &str) -> Result<Option<UserRecord>, Error> {
        on_pool!(self, |p| {
            match sqlx::query(sql).bind(v).fetch_optional(p).await {
                Ok(Some(r)) => UserRecord::from_row(&r).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(db_err)
    }

    /// Writes a user's fields if unchanged since read (`Ok(false)` otherwise).
    pub(crate) async fn update_user(&self, user: &UserRecord) -> Result<bool, Error> {
        let now = super::time::now_secs();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let l = &user.limits;
            let n = sqlx::query(UPDATE_USER)
                .bind(user.user_id.clone())
                .bind(user.user_alias.clone())
                .bind(user.user_email.clone())
                .bind(user.user_role.as_str())
                .bind(to_json_text(&user.models))
                .bind(to_json_text(&user.metadata))
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
                .bind(now)
                .bind(user.version)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Ok(false);
            }
            sqlx::query(CHANGE)
                .bind("user")
                .bind(user.user_id.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(true)
        })
        .map_err(db_err)
    }

    /// Internal users (with `role` when given), oldest first, and their count.
    pub(crate) async fn list_users(
        &self,
        role: Option<UserRole>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<UserRecord>, i64), Error> {
        let role = role.map(UserRole::as_str);
        on_pool!(self, |p| {
            let rows = sqlx::query(LIST_USERS)
                .bind(role)
                .bind(limit)
                .bind(offset)
                .fetch_all(p)
                .await?;
            let n = sqlx::query(COUNT_USERS).bind(role).fetch_one(p).await?;
            let users = rows
                .iter()
                .map(UserRecord::from_row)
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, sqlx::Error>((users, n.int("n")?))
        })
        .map_err(db_err)
    }

    /// Deletes users with their keys and memberships; returns the ids that existed.
    pub async fn delete_users(&self, ids: &[String]) -> Result<Vec<String>, Error> {
        self.delete_owners(&USER_OWNER, ids).await
    }

    // ------------------------------------------------------------ end users

    /// Stores a new end user. 400 if the id is taken.
    pub async fn insert_end_user(&self, e: &EndUserRecord) -> Result<(), Error> {
        let now = super::time::now_secs();
        let r: Result<(), WriteError> = on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let q = sqlx::query(INSERT_END_USER)
                .bind(e.user_id.clone())
                .bind(e.alias.clone())
                .bind(e.blocked);
            bind_limits!(q, &e.limits)
                .bind(to_json_text(&e.limits.model_max_budget))
                .bind(e.allowed_model_region.clone())
                .bind(e.default_model.clone())
                .bind(e.spend_pico)
                .bind(e.created_at)
                .bind(e.updated_at)
                .bind(e.version)
                .execute(&mut *tx)
                .await?;
            sqlx::query(CHANGE)
                .bind("end_user")
                .bind(e.user_id.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        });
        r.map_err(dup("a customer with this `user_id`", "user_id"))
    }

    /// The end user with this id.
    pub async fn end_user(&self, user_id: &str) -> Result<Option<EndUserRecord>, Error> {
        on_pool!(self, |p| {
            match sqlx::query(SELECT_END_USER)
                .bind(user_id)
                .fetch_optional(p)
                .await
            {
                Ok(Some(r)) => EndUserRecord::from_row(&r).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(db_err)
    }

    /// Writes an end user's fields if unchanged since read (`Ok(false)` otherwise).
    pub(crate) async fn update_end_user(&self, e: &EndUserRecord) -> Result<bool, Error> {
        let now = super::time::now_secs();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let l = &e.limits;
            let n = sqlx::query(UPDATE_END_USER)
                .bind(e.user_id.clone())
                .bind(e.alias.clone())
                .bind(e.blocked)
                .bind(l.max_budget)
                .bind(l.soft_budget)
                .bind(l.budget_duration.clone())
                .bind(l.budget_start)
                .bind(l.tpm_limit)
                .bind(l.rpm_limit)
                .bind(l.max_parallel_requests)
                .bind(to_json_text(&l.model_max_budget))
                .bind(e.allowed_model_region.clone())
                .bind(e.default_model.clone())
                .bind(now)
                .bind(e.version)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Ok(false);
            }
            sqlx::query(CHANGE)
                .bind("end_user")
                .bind(e.user_id.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(true)
        })
        .map_err(db_err)
    }

    /// End users, oldest first.
    pub(crate) async fn list_end_users(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<EndUserRecord>, Error> {
        on_pool!(self, |p| {
            let rows = sqlx::query(LIST_END_USERS)
                .bind(limit)
                .bind(offset)
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(EndUserRecord::from_row)
                .collect::<Result<Vec<_>, sqlx::Error>>()
        })
        .map_err(db_err)
    }

    /// Deletes end users; returns the ids that existed.
    pub async fn delete_end_users(&self, ids: &[String]) -> Result<Vec<String>, Error> {
        let now = super::time::now_secs();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let mut deleted = Vec::new();
            for id in ids {
                let n = sqlx::query("DELETE FROM tollgate_end_users WHERE user_id = $1")
                    .bind(id.clone())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n > 0 {
                    sqlx::query(CHANGE)
                        .bind("end_user")
                        .bind(id.clone())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    deleted.push(id.clone());
                }
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(deleted)
        })
        .map_err(db_err)
    }

    /// Zeroes the spend of every key and team and restarts their budget
    /// windows now (LiteLLM's `/global/spend/reset`; spend logs are kept).
    pub(crate) async fn reset_all_spend(&self) -> Result<(), Error> {
        let now = super::time::now_secs();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            for sql in [
                "UPDATE tollgate_keys SET spend_pico = 0, budget_start = $1, version = version + 1",
                "UPDATE tollgate_teams SET spend_pico = 0, budget_start = $1, version = version + 1",
            ] {
                sqlx::query(sql).bind(now).execute(&mut *tx).await?;
            }
            sqlx::query(CHANGE)
                .bind("all")
                .bind("")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        })
        .map_err(db_err)
    }
}
