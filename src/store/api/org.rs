//! `/team/*`, `/user/*`, `/customer/*`.

use super::{Caller, ManagementApi, forbidden, not_found, page};
use crate::auth::display_key;
use crate::error::{Error, ErrorKind};
use crate::store::entities::{EndUserRecord, Member, TeamRecord, UserRecord, UserRole};
use crate::store::keys::{KeyFilter, KeyRecord, generate_key, hash_key};
use crate::store::rows::dollars;
use crate::store::time::{add_window, iso, now_secs};
use crate::store::validate::{Fields, check_text};
use serde_json::{Map, Value, json};

fn busy() -> Error {
    Error::new(
        ErrorKind::ServiceUnavailable,
        "the record is being changed concurrently; try again",
    )
}

fn member_role(v: Option<&Value>) -> Result<String, Error> {
    match v.and_then(Value::as_str) {
        None | Some("user") => Ok("user".to_owned()),
        Some("admin") => Ok("admin".to_owned()),
        Some(_) => Err(
            Error::bad_request("a member's `role` must be `admin` or `user`").with_param("role"),
        ),
    }
}

impl ManagementApi {
    fn admin_only(caller: &Caller, route: &str) -> Result<(), Error> {
        if caller.is_admin() {
            Ok(())
        } else {
            Err(forbidden(route))
        }
    }

    /// Checks a member entry `{user_id | user_email, role}` without
    /// touching the database.
    fn parse_member(v: &Value) -> Result<(Option<String>, Option<String>, String), Error> {
        let Value::Object(m) = v else {
            return Err(Error::bad_request(
                "each member must be an object with `user_id` or `user_email`",
            )
            .with_param("member"));
        };
        let f = Fields(m.clone());
        let role = member_role(m.get("role"))?;
        let (id, email) = (f.text("user_id")?, f.text("user_email")?);
        if id.is_none() && email.is_none() {
            return Err(
                Error::bad_request("each member needs `user_id` or `user_email`")
                    .with_param("member"),
            );
        }
        Ok((id, email, role))
    }

    /// Checks every member entry, then resolves them to users, creating the
    /// missing ones (as LiteLLM does).
    async fn resolve_members(&self, entries: &[Value]) -> Result<Vec<Member>, Error> {
        let parsed = entries
            .iter()
            .map(Self::parse_member)
            .collect::<Result<Vec<_>, _>>()?;
        let mut out: Vec<Member> = Vec::new();
        for (id, email, role) in parsed {
            let user_id = match (id, email) {
                (Some(id), email) => {
                    if self.store.user(&id).await?.is_none() {
                        let mut u =
                            UserRecord::new(id.clone(), UserRole::InternalUserViewer, now_secs());
                        u.user_email = email;
                        // Created concurrently: fine.
                        if let Err(e) = self.store.insert_user(&u).await
                            && e.status().as_u16() != 400
                        {
                            return Err(e);
                        }
                    }
                    id
                }
                (None, Some(email)) => match self.store.user_by_email(&email).await? {
                    Some(u) => u.user_id,
                    None => {
                        let id = uuid::Uuid::new_v4().to_string();
                        let mut u =
                            UserRecord::new(id.clone(), UserRole::InternalUserViewer, now_secs());
                        u.user_email = Some(email);
                        self.store.insert_user(&u).await?;
                        id
                    }
                },
                (None, None) => continue,
            };
            match out.iter_mut().find(|x| x.user_id == user_id) {
                Some(existing) => existing.role = role,
                None => out.push(Member { user_id, role }),
            }
        }
        Ok(out)
    }

    /// The member entries of a `/team/new` request.
    fn member_entries(f: &Fields) -> Result<Vec<Value>, Error> {
        let mut entries: Vec<Value> = Vec::new();
        if let Some(v) = f.0.get("members_with_roles").filter(|v| !v.is_null()) {
            let Value::Array(items) = v else {
                return Err(Error::bad_request("`members_with_roles` must be a list")
                    .with_param("members_with_roles"));
            };
            if items.len() > 256 {
                return Err(
                    Error::bad_request("`members_with_roles` has too many entries")
                        .with_param("members_with_roles"),
                );
            }
            entries.extend(items.iter().cloned());
        }
        for (name, role) in [("members", "user"), ("admins", "admin")] {
            for id in f.list(name)?.unwrap_or_default() {
                entries.push(json!({"user_id": id, "role": role}));
            }
        }
        Ok(entries)
    }

    async fn team_spend(&self, t: &TeamRecord, now: i64) -> Result<f64, Error> {
        if t.limits.budget_duration.is_none() {
            return Ok(dollars(i128::from(t.spend_pico)));
        }
        let from = t.limits.window_start(now);
        Ok(self
            .store
            .spent_from(crate::limits::ScopeKind::Team, &t.team_id, None, from)
            .await?
            .as_f64())
    }

    async fn team_json(&self, t: &TeamRecord) -> Result<Value, Error> {
        let now = now_secs();
        let mut m = Map::new();
        m.insert("team_id".into(), json!(t.team_id));
        m.insert("team_alias".into(), json!(t.team_alias));
        m.insert("organization_id".into(), Value::Null);
        m.insert("models".into(), json!(t.models));
        m.insert("metadata".into(), Value::Object(t.metadata.clone()));
        m.insert("tags".into(), json!(t.tags));
        m.insert("spend".into(), json!(self.team_spend(t, now).await?));
        m.insert("blocked".into(), json!(t.blocked));
        t.limits.write_json(&mut m, now, true);
        m.insert(
            "members_with_roles".into(),
            json!(
                t.members
                    .iter()
                    .map(|x| json!({"user_id": x.user_id, "role": x.role, "user_email": null}))
                    .collect::<Vec<_>>()
            ),
        );
        m.insert(
            "admins".into(),
            json!(
                t.members
                    .iter()
                    .filter(|x| x.role == "admin")
                    .map(|x| &x.user_id)
                    .collect::<Vec<_>>()
            ),
        );
        m.insert(
            "members".into(),
            json!(t.members.iter().map(|x| &x.user_id).collect::<Vec<_>>()),
        );
        m.insert("created_at".into(), json!(iso(t.created_at)));
        m.insert("updated_at".into(), json!(iso(t.updated_at)));
        Ok(Value::Object(m))
    }

    fn apply_team_fields(t: &mut TeamRecord, f: &Fields) -> Result<(), Error> {
        if let Some(v) = f.text("team_alias")? {
            t.team_alias = Some(v);
        }
        if let Some(v) = f.list("models")? {
            t.models = v;
        }
        if let Some(v) = f.object("metadata")? {
            t.metadata = v;
        }
        if let Some(v) = f.list("tags")? {
            t.tags = v;
        }
        t.limits.apply(f)?;
        if let Some(v) = f.boolean("blocked")? {
            t.blocked = v;
        }
        Ok(())
    }

    pub(super) async fn team_new(&self, caller: &Caller, f: &Fields) -> Result<Value, Error> {
        Self::admin_only(caller, "/team/new")?;
        let now = now_secs();
        let id = f
            .text("team_id")?
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut t = TeamRecord::new(id, now);
        Self::apply_team_fields(&mut t, f)?;
        let entries = Self::member_entries(f)?;
        for e in &entries {
            Self::parse_member(e)?;
        }
        if self.store.team(&t.team_id).await?.is_some() {
            return Err(
                Error::bad_request("a team with this `team_id` already exists")
                    .with_param("team_id"),
            );
        }
        t.members = self.resolve_members(&entries).await?;
        self.store.insert_team(&t).await?;
        let t = self
            .store
            .team(&t.team_id)
            .await?
            .ok_or_else(|| not_found("team"))?;
        self.team_json(&t).await
    }

    async fn change_team(
        &self,
        team_id: &str,
        change: impl Fn(&mut TeamRecord) -> Result<(), Error>,
    ) -> Result<TeamRecord, Error> {
        for _ in 0..5 {
            let mut t = self
                .store
                .team(team_id)
                .await?
                .ok_or_else(|| not_found("team"))?;
            change(&mut t)?;
            if self.store.update_team(&t).await? {
                self.invalidate_all();
                return self
                    .store
                    .team(team_id)
                    .await?
                    .ok_or_else(|| not_found("team"));
            }
        }
        Err(busy())
    }

    pub(super) async fn team_update(&self, caller: &Caller, f: &Fields) -> Result<Value, Error> {
        Self::admin_only(caller, "/team/update")?;
        let id = f.require_text("team_id")?;
        let t = self
            .change_team(&id, |t| Self::apply_team_fields(t, f))
            .await?;
        Ok(json!({ "team_id": id, "data": self.team_json(&t).await? }))
    }

    pub(super) async fn team_block(
        &self,
        caller: &Caller,
        f: &Fields,
        block: bool,
    ) -> Result<Value, Error> {
        Self::admin_only(caller, "blocking teams")?;
        let id = f.require_text("team_id")?;
        let t = self
            .change_team(&id, |t| {
                t.blocked = block;
                Ok(())
            })
            .await?;
        self.team_json(&t).await
    }

    pub(super) async fn team_delete(&self, caller: &Caller, f: &Fields) -> Result<Value, Error> {
        Self::admin_only(caller, "/team/delete")?;
        let ids = f.list("team_ids")?.unwrap_or_default();
        if ids.is_empty() {
            return Err(Error::bad_request("send `team_ids`").with_param("team_ids"));
        }
        let deleted = self.store.delete_teams(&ids).await?;
        if deleted.is_empty() {
            return Err(not_found("team"));
        }
        self.invalidate_all();
        Ok(json!({ "deleted_teams": deleted }))
    }

    pub(super) async fn team_member_add(
        &self,
        caller: &Caller,
        f: &Fields,
    ) -> Result<Value, Error> {
        Self::admin_only(caller, "/team/member_add")?;
        let id = f.require_text("team_id")?;
        if self.store.team(&id).await?.is_none() {
            return Err(not_found("team"));
        }
        let entries: Vec<Value> = match f.0.get("member") {
            Some(Value::Array(items)) if items.len() <= 256 => items.clone(),
            Some(Value::Array(_)) => {
                return Err(
                    Error::bad_request("`member` has too many entries").with_param("member")
                );
            }
            Some(v @ Value::Object(_)) => vec![v.clone()],
            _ => return Err(Error::bad_request("send `member`").with_param("member")),
        };
        let members = self.resolve_members(&entries).await?;
        self.store.upsert_members(&id, &members).await?;
        self.invalidate_all();
        let t = self
            .store
            .team(&id)
            .await?
            .ok_or_else(|| not_found("team"))?;
        let mut out = match self.team_json(&t).await? {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let mut users = Vec::new();
        for m in &members {
            if let Some(u) = self.store.user(&m.user_id).await? {
                users.push(self.user_json(&u).await?);
            }
        }
        out.insert("updated_users".into(), json!(users));
        out.insert(
            "updated_team_memberships".into(),
            json!(
                members
                    .iter()
                    .map(|m| json!({"team_id": id, "user_id": m.user_id, "role": m.role}))
                    .collect::<Vec<_>>()
            ),
        );
        Ok(Value::Object(out))
    }

    pub(super) async fn team_member_delete(
        &self,
        caller: &Caller,
        f: &Fields,
    ) -> Result<Value, Error> {
        Self::admin_only(caller, "/team/member_delete")?;
        let id = f.require_text("team_id")?;
        let user = match (f.text("user_id")?, f.text("user_email")?) {
            (Some(u), _) => u,
            (None, Some(e)) => self
                .store
                .user_by_email(&e)
                .await?
                .map(|u| u.user_id)
                .ok_or_else(|| not_found("user"))?,
            (None, None) => {
                return Err(
                    Error::bad_request("send `user_id` or `user_email`").with_param("user_id")
                );
            }
        };
        if self.store.team(&id).await?.is_none() {
            return Err(not_found("team"));
        }
        if self.store.remove_members(&id, &[user]).await? == 0 {
            return Err(not_found("team member"));
        }
        self.invalidate_all();
        let t = self
            .store
            .team(&id)
            .await?
            .ok_or_else(|| not_found("team"))?;
        self.team_json(&t).await
    }

    pub(super) async fn team_info(&self, caller: &Caller, q: &Fields) -> Result<Value, Error> {
        let id = q.require_text("team_id")?;
        let t = self
            .store
            .team(&id)
            .await?
            .ok_or_else(|| not_found("team"))?;
        let allowed = caller.can_read_all()
            || caller
                .own_user()
                .is_some_and(|u| t.members.iter().any(|m| m.user_id == u));
        if !allowed {
            return Err(not_found("team"));
        }
        let filter = KeyFilter {
            team_id: Some(id.clone()),
            ..KeyFilter::default()
        };
        let (keys, _) = self.store.list_keys(&filter, 1000, 0).await?;
        let mut shown = Vec::with_capacity(keys.len());
        for k in &keys {
            shown.push(Value::Object(
                self.key_json(k, caller.can_read_all()).await?,
            ));
        }
        Ok(json!({
            "team_id": id,
            "team_info": self.team_json(&t).await?,
            "keys": shown,
            "team_memberships": [],
        }))
    }

    pub(super) async fn team_list(&self, caller: &Caller, q: &Fields) -> Result<Value, Error> {
        let user = match caller {
            _ if caller.can_read_all() => q.text("user_id")?,
            Caller::User { .. } => caller.own_user().map(str::to_owned),
            _ => return Err(forbidden("/team/list")),
        };
        let (page, size) = page(q, "page_size", 1000)?;
        let teams = self
            .store
            .list_teams(user.as_deref(), size, (page - 1) * size)
            .await?;
        let mut out = Vec::with_capacity(teams.len());
        for t in &teams {
            out.push(self.team_json(t).await?);
        }
        Ok(Value::Array(out))
    }

    // ---------------------------------------------------------------- users

    async fn user_json(&self, u: &UserRecord) -> Result<Value, Error> {
        let now = now_secs();
        let spend = if u.limits.budget_duration.is_none() {
            dollars(i128::from(u.spend_pico))
        } else {
            self.store
                .spent_from(
                    crate::limits::ScopeKind::User,
                    &u.user_id,
                    None,
                    u.limits.window_start(now),
                )
                .await?
                .as_f64()
        };
        let teams: Vec<String> = self
            .store
            .list_teams(Some(&u.user_id), 1000, 0)
            .await?
            .into_iter()
            .map(|t| t.team_id)
            .collect();
        let mut m = Map::new();
        m.insert("user_id".into(), json!(u.user_id));
        m.insert("user_alias".into(), json!(u.user_alias));
        m.insert("user_email".into(), json!(u.user_email));
        m.insert("user_role".into(), json!(u.user_role.as_str()));
        m.insert("models".into(), json!(u.models));
        m.insert("metadata".into(), Value::Object(u.metadata.clone()));
        m.insert("spend".into(), json!(spend));
        m.insert("teams".into(), json!(teams));
        u.limits.write_json(&mut m, now, true);
        m.insert("created_at".into(), json!(iso(u.created_at)));
        m.insert("updated_at".into(), json!(iso(u.updated_at)));
        Ok(Value::Object(m))
    }

    fn apply_user_fields(u: &mut UserRecord, f: &Fields) -> Result<(), Error> {
        if let Some(v) = f.text("user_alias")? {
            u.user_alias = Some(v);
        }
        if let Some(v) = f.text("user_email")? {
            u.user_email = Some(v);
        }
        if let Some(r) = f.text("user_role")? {
            u.user_role = UserRole::parse(&r).ok_or_else(|| {
                Error::bad_request(
                    "`user_role` must be proxy_admin, proxy_admin_viewer, internal_user or internal_user_viewer",
                )
                .with_param("user_role")
            })?;
        }
        if let Some(v) = f.list("models")? {
            u.models = v;
        }
        if let Some(v) = f.object("metadata")? {
            u.metadata = v;
        }
        u.limits.apply(f)
    }

    pub(super) async fn user_new(&self, caller: &Caller, f: &Fields) -> Result<Value, Error> {
        Self::admin_only(caller, "/user/new")?;
        let now = now_secs();
        let id = f
            .text("user_id")?
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut u = UserRecord::new(id.clone(), UserRole::InternalUser, now);
        Self::apply_user_fields(&mut u, f)?;
        // Teams: ids or {team_id, user_role}; they must exist.
        let mut teams: Vec<Member> = Vec::new();
        let mut team_ids: Vec<String> = Vec::new();
        match f.0.get("teams") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) if items.len() <= 256 => {
                for item in items {
                    let (team, role) = match item {
                        Value::String(s) => (s.clone(), "user".to_owned()),
                        Value::Object(o) => {
                            let tf = Fields(o.clone());
                            (
                                tf.require_text("team_id")?,
                                member_role(o.get("user_role"))?,
                            )
                        }
                        _ => {
                            return Err(Error::bad_request("`teams` must list team ids")
                                .with_param("teams"));
                        }
                    };
                    check_text("teams", &team)?;
                    team_ids.push(team.clone());
                    teams.push(Member {
                        user_id: team,
                        role,
                    });
                }
            }
            Some(_) => {
                return Err(Error::bad_request("`teams` must list team ids").with_param("teams"));
            }
        }
        for t in &team_ids {
            if self.store.team(t).await?.is_none() {
                return Err(
                    Error::bad_request("`teams` names a team that does not exist")
                        .with_param("teams"),
                );
            }
        }
        let auto_key = f.boolean("auto_create_key")?.unwrap_or(true);
        // The key LiteLLM creates along: validate before writing anything.
        let key = if auto_key {
            let key = generate_key()?;
            let mut k = KeyRecord::new(hash_key(&key), display_key(&key), now);
            k.user_id = Some(id.clone());
            k.team_id = f.text("team_id")?;
            k.key_alias = f.text("key_alias")?;
            if let Some(v) = f.list("models")? {
                k.models = v;
            }
            if let Some(life) = f.lifetime("duration")? {
                k.expires = life.map(|w| add_window(now, w));
            }
            k.created_by = Some(caller.label());
            if let Some(t) = &k.team_id
                && self.store.team(t).await?.is_none()
            {
                return Err(
                    Error::bad_request("`team_id` does not name an existing team")
                        .with_param("team_id"),
                );
            }
            Some((key, k))
        } else {
            None
        };
        self.store.insert_user(&u).await?;
        for m in &teams {
            self.store
                .upsert_members(
                    &m.user_id,
                    &[Member {
                        user_id: id.clone(),
                        role: m.role.clone(),
                    }],
                )
                .await?;
        }
        let mut out = match self.user_json(&u).await? {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        if let Some((key, k)) = key {
            self.store.insert_key(&k).await?;
            self.invalidate_key(&k.token);
            out.insert("key".into(), json!(key));
            out.insert("token".into(), json!(k.token));
            out.insert("key_name".into(), json!(k.key_name));
            out.insert("key_alias".into(), json!(k.key_alias));
            out.insert("team_id".into(), json!(k.team_id));
            out.insert("expires".into(), json!(k.expires.map(iso)));
        }
        Ok(Value::Object(out))
    }

    pub(super) async fn user_update(&self, caller: &Caller, f: &Fields) -> Result<Value, Error> {
        Self::admin_only(caller, "/user/update")?;
        let id = match (f.text("user_id")?, f.text("user_email")?) {
            (Some(id), _) => id,
            (None, Some(e)) => self
                .store
                .user_by_email(&e)
                .await?
                .map(|u| u.user_id)
                .ok_or_else(|| not_found("user"))?,
            (None, None) => {
                return Err(
                    Error::bad_request("send `user_id` or `user_email`").with_param("user_id")
                );
            }
        };
        for _ in 0..5 {
            let mut u = self
                .store
                .user(&id)
                .await?
                .ok_or_else(|| not_found("user"))?;
            // `user_email` identifies the user when `user_id` is absent.
            let email = u.user_email.clone();
            Self::apply_user_fields(&mut u, f)?;
            if !f.has("user_id") {
                u.user_email = email;
            }
            if self.store.update_user(&u).await? {
                self.invalidate_all();
                let u = self
                    .store
                    .user(&id)
                    .await?
                    .ok_or_else(|| not_found("user"))?;
                return self.user_json(&u).await;
            }
        }
        Err(busy())
    }

    pub(super) async fn user_delete(&self, caller: &Caller, f: &Fields) -> Result<Value, Error> {
        Self::admin_only(caller, "/user/delete")?;
        let ids = f.list("user_ids")?.unwrap_or_default();
        if ids.is_empty() {
            return Err(Error::bad_request("send `user_ids`").with_param("user_ids"));
        }
        let deleted = self.store.delete_users(&ids).await?;
        if deleted.is_empty() {
            return Err(not_found("user"));
        }
        self.invalidate_all();
        Ok(json!({ "deleted_users": deleted }))
    }

    pub(super) async fn user_info(&self, caller: &Caller, q: &Fields) -> Result<Value, Error> {
        let id = match (q.text("user_id")?, caller.own_user()) {
            (Some(id), _) if caller.can_read_all() => id,
            (Some(id), Some(own)) if id == own => id,
            (None, Some(own)) => own.to_owned(),
            (None, None) if caller.can_read_all() => {
                return Err(Error::bad_request("send `user_id`").with_param("user_id"));
            }
            (Some(_), Some(_)) => return Err(not_found("user")),
            _ => return Err(forbidden("/user/info")),
        };
        let u = self
            .store
            .user(&id)
            .await?
            .ok_or_else(|| not_found("user"))?;
        let (keys, _) = self
            .store
            .list_keys(
                &KeyFilter {
                    user_id: Some(id.clone()),
                    ..KeyFilter::default()
                },
                1000,
                0,
            )
            .await?;
        let mut shown = Vec::with_capacity(keys.len());
        for k in &keys {
            shown.push(Value::Object(self.key_json(k, true).await?));
        }
        let mut teams = Vec::new();
        for t in self.store.list_teams(Some(&id), 1000, 0).await? {
            teams.push(self.team_json(&t).await?);
        }
        Ok(json!({
            "user_id": id,
            "user_info": self.user_json(&u).await?,
            "keys": shown,
            "teams": teams,
        }))
    }

    pub(super) async fn user_list(&self, caller: &Caller, q: &Fields) -> Result<Value, Error> {
        if !caller.can_read_all() {
            return Err(forbidden("/user/list"));
        }
        let role = match q.text("role")?.or(q.text("user_role")?) {
            None => None,
            Some(r) => Some(
                UserRole::parse(&r)
                    .ok_or_else(|| Error::bad_request("unknown `role`").with_param("role"))?,
            ),
        };
        let (page, size) = page(q, "page_size", 25)?;
        let (users, total) = self.store.list_users(role, size, (page - 1) * size).await?;
        let mut out = Vec::with_capacity(users.len());
        for u in &users {
            out.push(self.user_json(u).await?);
        }
        Ok(json!({
            "users": out,
            "total": total,
            "page": page,
            "page_size": size,
            "total_pages": (total + size - 1) / size,
        }))
    }

    // ------------------------------------------------------------ customers

    async fn customer_json(&self, e: &EndUserRecord) -> Result<Value, Error> {
        let now = now_secs();
        let spend = if e.limits.budget_duration.is_none() {
            dollars(i128::from(e.spend_pico))
        } else {
            self.store
                .spent_from(
                    crate::limits::ScopeKind::EndUser,
                    &e.user_id,
                    None,
                    e.limits.window_start(now),
                )
                .await?
                .as_f64()
        };
        let l = &e.limits;
        let has_budget = l.max_budget.is_some()
            || l.soft_budget.is_some()
            || l.tpm_limit.is_some()
            || l.rpm_limit.is_some()
            || l.max_parallel_requests.is_some()
            || !l.model_max_budget.is_empty();
        let budget = if has_budget {
            let mut b = Map::new();
            l.write_json(&mut b, now, false);
            b.insert("model_max_budget".into(), json!(l.model_max_budget));
            Value::Object(b)
        } else {
            Value::Null
        };
        Ok(json!({
            "user_id": e.user_id,
            "alias": e.alias,
            "blocked": e.blocked,
            "spend": spend,
            "allowed_model_region": e.allowed_model_region,
            "default_model": e.default_model,
            "budget_id": null,
            "litellm_budget_table": budget,
            "created_at": iso(e.created_at),
            "updated_at": iso(e.updated_at),
        }))
    }

    fn apply_customer_fields(e: &mut EndUserRecord, f: &Fields) -> Result<(), Error> {
        if f.has("budget_id") {
            return Err(Error::bad_request(
                "`budget_id` (shared budget tables) is not supported; set `max_budget` and the other limits on the customer",
            )
            .with_param("budget_id"));
        }
        if let Some(v) = f.text("alias")? {
            e.alias = Some(v);
        }
        if let Some(v) = f.boolean("blocked")? {
            e.blocked = v;
        }
        if let Some(r) = f.text("allowed_model_region")? {
            if r != "eu" && r != "us" {
                return Err(
                    Error::bad_request("`allowed_model_region` must be `eu` or `us`")
                        .with_param("allowed_model_region"),
                );
            }
            e.allowed_model_region = Some(r);
        }
        if let Some(v) = f.text("default_model")? {
            e.default_model = Some(v);
        }
        for name in ["model_rpm_limit", "model_tpm_limit"] {
            if f.has(name) {
                return Err(
                    Error::bad_request(format!("`{name}` is not supported on customers"))
                        .with_param(name),
                );
            }
        }
        e.limits.apply(f)
    }

    fn invalidate_end_user(&self, id: &str) {
        if let Some(d) = &self.end_users {
            d.invalidate(id);
        }
    }

    pub(super) async fn customer_new(&self, caller: &Caller, f: &Fields) -> Result<Value, Error> {
        Self::admin_only(caller, "/customer/new")?;
        let id = f.require_text("user_id")?;
        let mut e = EndUserRecord::new(id.clone(), now_secs());
        Self::apply_customer_fields(&mut e, f)?;
        if f.money("spend")?.is_some_and(|s| s != 0.0) {
            return Err(
                Error::bad_request("a new customer's `spend` can only be 0").with_param("spend")
            );
        }
        self.store.insert_end_user(&e).await?;
        self.invalidate_end_user(&id);
        let e = self
            .store
            .end_user(&id)
            .await?
            .ok_or_else(|| not_found("customer"))?;
        self.customer_json(&e).await
    }

    async fn change_customer(
        &self,
        id: &str,
        create: bool,
        change: impl Fn(&mut EndUserRecord) -> Result<(), Error>,
    ) -> Result<EndUserRecord, Error> {
        for _ in 0..5 {
            let existing = self.store.end_user(id).await?;
            let Some(mut e) = existing else {
                if !create {
                    return Err(not_found("customer"));
                }
                let mut e = EndUserRecord::new(id.to_owned(), now_secs());
                change(&mut e)?;
                match self.store.insert_end_user(&e).await {
                    Ok(()) => {
                        self.invalidate_end_user(id);
                        return Ok(e);
                    }
                    Err(err) if err.status().as_u16() == 400 => continue,
                    Err(err) => return Err(err),
                }
            };
            change(&mut e)?;
            if self.store.update_end_user(&e).await? {
                self.invalidate_end_user(id);
                return self
                    .store
                    .end_user(id)
                    .await?
                    .ok_or_else(|| not_found("customer"));
            }
        }
        Err(busy())
    }

    pub(super) async fn customer_update(
        &self,
        caller: &Caller,
        f: &Fields,
    ) -> Result<Value, Error> {
        Self::admin_only(caller, "/customer/update")?;
        let id = f.require_text("user_id")?;
        let e = self
            .change_customer(&id, false, |e| Self::apply_customer_fields(e, f))
            .await?;
        self.customer_json(&e).await
    }

    pub(super) async fn customer_block(
        &self,
        caller: &Caller,
        f: &Fields,
        block: bool,
    ) -> Result<Value, Error> {
        Self::admin_only(caller, "blocking customers")?;
        let ids = f.list("user_ids")?.unwrap_or_default();
        if ids.is_empty() {
            return Err(Error::bad_request("send `user_ids`").with_param("user_ids"));
        }
        for id in &ids {
            self.change_customer(id, true, |e| {
                e.blocked = block;
                Ok(())
            })
            .await?;
        }
        let key = if block {
            "blocked_users"
        } else {
            "unblocked_users"
        };
        Ok(json!({ key: ids }))
    }

    pub(super) async fn customer_delete(
        &self,
        caller: &Caller,
        f: &Fields,
    ) -> Result<Value, Error> {
        Self::admin_only(caller, "/customer/delete")?;
        let ids = f.list("user_ids")?.unwrap_or_default();
        if ids.is_empty() {
            return Err(Error::bad_request("send `user_ids`").with_param("user_ids"));
        }
        let deleted = self.store.delete_end_users(&ids).await?;
        if deleted.is_empty() {
            return Err(not_found("customer"));
        }
        for id in &deleted {
            self.invalidate_end_user(id);
        }
        Ok(json!({ "deleted_customers": deleted }))
    }

    pub(super) async fn customer_info(&self, caller: &Caller, q: &Fields) -> Result<Value, Error> {
        if !caller.can_read_all() {
            return Err(forbidden("/customer/info"));
        }
        let id = match q.text("end_user_id")? {
            Some(id) => id,
            None => q.require_text("user_id")?,
        };
        let e = self
            .store
            .end_user(&id)
            .await?
            .ok_or_else(|| not_found("customer"))?;
        self.customer_json(&e).await
    }

    pub(super) async fn customer_list(&self, caller: &Caller, q: &Fields) -> Result<Value, Error> {
        if !caller.can_read_all() {
            return Err(forbidden("/customer/list"));
        }
        let (page, size) = page(q, "page_size", 1000)?;
        let list = self.store.list_end_users(size, (page - 1) * size).await?;
        let mut out = Vec::with_capacity(list.len());
        for e in &list {
            out.push(self.customer_json(e).await?);
        }
        Ok(Value::Array(out))
    }
}
