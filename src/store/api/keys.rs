//! `/key/*`.

use super::{Caller, ManagementApi, forbidden, key_param, not_found, page};
use crate::auth::display_key;
use crate::error::Error;
use crate::limits::BudgetWindow;
use crate::store::auth::allows;
use crate::store::keys::{
    KeyFilter, KeyRecord, WriteError, generate_key, hash_key, is_well_formed_key,
};
use crate::store::time::{add_window, now_secs};
use crate::store::validate::Fields;
use serde_json::{Value, json};

fn escalation(what: &str) -> Error {
    super::Error::new(
        crate::error::ErrorKind::PermissionDenied,
        format!("a key cannot grant more than its creator has: {what}"),
    )
}

impl ManagementApi {
    /// Applies the key fields of a generate/update/regenerate request.
    fn apply_key_fields(&self, k: &mut KeyRecord, f: &Fields, now: i64) -> Result<(), Error> {
        if let Some(v) = f.text("key_alias")? {
            k.key_alias = Some(v);
        }
        if let Some(v) = f.list("models")? {
            k.models = v;
        }
        if let Some(v) = f.object("aliases")? {
            k.aliases = v;
        }
        if let Some(v) = f.object("metadata")? {
            k.metadata = v;
        }
        if let Some(v) = f.list("tags")? {
            k.tags = v;
        }
        k.limits.apply(f)?;
        if let Some(v) = f.boolean("blocked")? {
            k.blocked = v;
        }
        if let Some(life) = f.lifetime("duration")? {
            k.expires = life.map(|w| add_window(now, w));
        }
        // Accepted for compatibility; only validated.
        for name in ["config", "permissions"] {
            f.object(name)?;
        }
        if let Some(v) = f.list("allowed_cache_controls")? {
            if let Some(bad) = v
                .iter()
                .find(|c| !crate::cache::CACHE_CONTROLS.contains(&c.as_str()))
            {
                return Err(Error::bad_request(format!(
                    "`allowed_cache_controls` names an unknown cache control {bad:?}; known: {}",
                    crate::cache::CACHE_CONTROLS.join(", ")
                ))
                .with_param("allowed_cache_controls"));
            }
            k.allowed_cache_controls = v;
        }
        Ok(())
    }

    /// Checks the key's team (exists; the key's models within the team's).
    async fn check_team(&self, k: &KeyRecord) -> Result<(), Error> {
        let Some(team_id) = &k.team_id else {
            return Ok(());
        };
        let team = self.store.team(team_id).await?.ok_or_else(|| {
            Error::bad_request("`team_id` does not name an existing team").with_param("team_id")
        })?;
        if let (Some(team_models), Some(key_models)) = (
            self.access_groups.expand(&team.models),
            self.access_groups.expand(&k.models),
        ) && key_models.iter().any(|m| !allows(&team_models, m))
        {
            return Err(
                Error::bad_request("`models` must be within the team's models")
                    .with_param("models"),
            );
        }
        Ok(())
    }

    /// Bounds a key an internal user makes or changes by the key they call
    /// with: same user and team, models within theirs, budgets, rate limits
    /// and expiry no larger.
    fn bound_to_caller(&self, caller: &Caller, k: &mut KeyRecord, f: &Fields) -> Result<(), Error> {
        let Caller::User {
            key: own,
            user,
            identity,
            ..
        } = caller
        else {
            return Ok(());
        };
        if f.has("key") && f.has("new_key") {
            return Err(escalation("only admins choose key values"));
        }
        match &k.user_id {
            Some(u) if *u != user.user_id => return Err(escalation("`user_id` must be your own")),
            _ => k.user_id = Some(user.user_id.clone()),
        }
        if k.team_id.is_some() && k.team_id != own.team_id {
            return Err(escalation("`team_id` must be your key's team"));
        }
        k.team_id.clone_from(&own.team_id);
        if k.models.is_empty() {
            k.models.clone_from(&own.models);
        } else if let Some(mine) = &identity.models {
            let theirs = self.access_groups.expand(&k.models).unwrap_or_default();
            if theirs.is_empty() || theirs.iter().any(|m| !allows(mine, m)) {
                return Err(escalation("`models` must be within your key's models"));
            }
        }
        let own_l = &own.limits;
        let l = &mut k.limits;
        if let Some(cap) = own_l.max_budget {
            match l.max_budget {
                None => l.max_budget = Some(cap),
                Some(b) if b > cap => return Err(escalation("`max_budget` above your key's")),
                _ => {}
            }
            let window =
                |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<BudgetWindow>().ok());
            if let Some(own_w) = window(&own_l.budget_duration) {
                match window(&l.budget_duration) {
                    None if f.has("budget_duration") => {}
                    None => l.budget_duration.clone_from(&own_l.budget_duration),
                    Some(w) if w.approx_secs() < own_w.approx_secs() => {
                        return Err(escalation("`budget_duration` shorter than your key's"));
                    }
                    _ => {}
                }
            }
        }
        for (cap, mine, name) in [
            (own_l.tpm_limit, &mut l.tpm_limit, "tpm_limit"),
            (own_l.rpm_limit, &mut l.rpm_limit, "rpm_limit"),
            (
                own_l.max_parallel_requests,
                &mut l.max_parallel_requests,
                "max_parallel_requests",
            ),
        ] {
            if let Some(cap) = cap {
                match *mine {
                    None => *mine = Some(cap),
                    Some(v) if v > cap => {
                        return Err(escalation(&format!("`{name}` above your key's")));
                    }
                    _ => {}
                }
            }
        }
        if let Some(cap) = own.expires {
            match k.expires {
                None => k.expires = Some(cap),
                Some(e) if e > cap => {
                    return Err(escalation("`duration` beyond your key's expiry"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Loads a key the caller may change.
    async fn own_key(&self, caller: &Caller, hash: &str) -> Result<KeyRecord, Error> {
        let k = self
            .store
            .key(hash)
            .await?
            .ok_or_else(|| not_found("key"))?;
        match caller {
            Caller::Admin(_) => Ok(k),
            Caller::User {
                user,
                can_write: true,
                ..
            } if k.user_id.as_deref() == Some(&user.user_id) => Ok(k),
            Caller::User {
                can_write: true, ..
            } => Err(not_found("key")),
            _ => Err(forbidden("changing keys")),
        }
    }

    pub(super) async fn key_generate(&self, caller: &Caller, f: &Fields) -> Result<Value, Error> {
        match caller {
            Caller::Admin(_)
            | Caller::User {
                can_write: true, ..
            } => {}
            _ => return Err(forbidden("/key/generate")),
        }
        let now = now_secs();
        let key = match f.text("key")? {
            Some(k) if caller.is_admin() => {
                if !is_well_formed_key(&k) {
                    return Err(Error::bad_request("a custom `key` must start with `sk-`")
                        .with_param("key"));
                }
                k
            }
            Some(_) => return Err(escalation("only admins choose key values")),
            None => generate_key()?,
        };
        if f.money("spend")?.is_some_and(|s| s != 0.0) {
            return Err(Error::bad_request("a new key's `spend` can only be 0").with_param("spend"));
        }
        let hash = hash_key(&key);
        let mut k = KeyRecord::new(hash.clone(), display_key(&key), now);
        k.user_id = f.text("user_id")?;
        k.team_id = f.text("team_id")?;
        self.apply_key_fields(&mut k, f, now)?;
        self.bound_to_caller(caller, &mut k, f)?;
        self.check_team(&k).await?;
        k.created_by = Some(caller.label());
        k.updated_by = k.created_by.clone();
        self.store.insert_key(&k).await?;
        self.invalidate_key(&hash);
        let mut out = self.key_json(&k, true).await?;
        out.insert("key".into(), json!(key));
        out.insert("token_id".into(), json!(hash));
        Ok(Value::Object(out))
    }

    pub(super) async fn key_update(&self, caller: &Caller, f: &Fields) -> Result<Value, Error> {
        let given = f.require_text("key")?;
        let hash = key_param("key", &given)?;
        if !caller.is_admin() && (f.has("user_id") || f.has("team_id")) {
            let k = self.own_key(caller, &hash).await?;
            if f.text("user_id")?.is_some_and(|u| Some(u) != k.user_id)
                || f.text("team_id")?.is_some_and(|t| Some(t) != k.team_id)
            {
                return Err(forbidden("moving a key to another user or team"));
            }
        }
        let reset = match f.money("spend")? {
            None => false,
            Some(0.0) => true,
            Some(_) => {
                return Err(Error::bad_request("`spend` can only be set to 0 (a reset)")
                    .with_param("spend"));
            }
        };
        for _ in 0..5 {
            let mut k = self.own_key(caller, &hash).await?;
            let now = now_secs();
            if caller.is_admin() {
                if let Some(u) = f.text("user_id")? {
                    k.user_id = Some(u);
                }
                if let Some(t) = f.text("team_id")? {
                    k.team_id = Some(t);
                }
            }
            self.apply_key_fields(&mut k, f, now)?;
            self.bound_to_caller(caller, &mut k, f)?;
            self.check_team(&k).await?;
            k.updated_by = Some(caller.label());
            match self.store.update_key(&k).await {
                Ok(true) => {
                    if reset {
                        self.store.reset_key_spend(&hash).await?;
                    }
                    self.invalidate_key(&hash);
                    let k = self
                        .store
                        .key(&hash)
                        .await?
                        .ok_or_else(|| not_found("key"))?;
                    let mut out = self.key_json(&k, false).await?;
                    out.insert("key".into(), json!(given));
                    return Ok(Value::Object(out));
                }
                Ok(false) => continue,
                Err(WriteError::Duplicate) => {
                    return Err(
                        Error::bad_request("a key with this `key_alias` already exists")
                            .with_param("key_alias"),
                    );
                }
                Err(WriteError::Db(e)) => return Err(e),
            }
        }
        Err(Error::new(
            crate::error::ErrorKind::ServiceUnavailable,
            "the key is being changed concurrently; try again",
        ))
    }

    pub(super) async fn key_delete(&self, caller: &Caller, f: &Fields) -> Result<Value, Error> {
        let keys = f.list("keys")?.unwrap_or_default();
        let aliases = f.list("key_aliases")?.unwrap_or_default();
        if keys.is_empty() && aliases.is_empty() {
            return Err(Error::bad_request("send `keys` or `key_aliases`").with_param("keys"));
        }
        let mut targets: Vec<(String, String)> = Vec::new();
        for given in keys {
            let hash = key_param("keys", &given)?;
            let k = self.own_key(caller, &hash).await?;
            targets.push((k.token, given));
        }
        for alias in aliases {
            let k = self
                .store
                .key_by_alias(&alias)
                .await?
                .ok_or_else(|| not_found("key"))?;
            let k = self.own_key(caller, &k.token).await?;
            targets.push((k.token, alias));
        }
        let hashes: Vec<String> = targets.iter().map(|(h, _)| h.clone()).collect();
        let deleted = self.store.delete_keys(&hashes).await?;
        for h in &deleted {
            self.invalidate_key(h);
        }
        let shown: Vec<&String> = targets
            .iter()
            .filter(|(h, _)| deleted.contains(h))
            .map(|(_, g)| g)
            .collect();
        Ok(json!({ "deleted_keys": shown }))
    }

    pub(super) async fn key_block(
        &self,
        caller: &Caller,
        f: &Fields,
        block: bool,
    ) -> Result<Value, Error> {
        let given = f.require_text("key")?;
        let hash = key_param("key", &given)?;
        for _ in 0..5 {
            let mut k = self.own_key(caller, &hash).await?;
            k.blocked = block;
            k.updated_by = Some(caller.label());
            match self.store.update_key(&k).await {
                Ok(true) => {
                    self.invalidate_key(&hash);
                    let k = self
                        .store
                        .key(&hash)
                        .await?
                        .ok_or_else(|| not_found("key"))?;
                    return Ok(Value::Object(self.key_json(&k, true).await?));
                }
                Ok(false) | Err(WriteError::Duplicate) => continue,
                Err(WriteError::Db(e)) => return Err(e),
            }
        }
        Err(Error::new(
            crate::error::ErrorKind::ServiceUnavailable,
            "the key is being changed concurrently; try again",
        ))
    }

    pub(super) async fn key_regenerate(
        &self,
        caller: &Caller,
        hash: &str,
        f: &Fields,
    ) -> Result<Value, Error> {
        self.own_key(caller, hash).await?;
        let key = match f.text("new_key")? {
            Some(k) if caller.is_admin() => {
                if !is_well_formed_key(&k) {
                    return Err(
                        Error::bad_request("`new_key` must start with `sk-`").with_param("new_key")
                    );
                }
                k
            }
            Some(_) => return Err(escalation("only admins choose key values")),
            None => generate_key()?,
        };
        let new_hash = hash_key(&key);
        match self.store.rekey(hash, &new_hash, &display_key(&key)).await {
            Ok(true) => {}
            Ok(false) => return Err(not_found("key")),
            Err(WriteError::Duplicate) => {
                return Err(Error::bad_request("`new_key` is already in use").with_param("new_key"));
            }
            Err(WriteError::Db(e)) => return Err(e),
        }
        self.invalidate_key(hash);
        self.invalidate_key(&new_hash);
        // Field changes sent along (max_budget, models, …).
        let changes = f.0.keys().any(|k| !matches!(k.as_str(), "key" | "new_key"));
        if changes {
            let mut k = self
                .store
                .key(&new_hash)
                .await?
                .ok_or_else(|| not_found("key"))?;
            self.apply_key_fields(&mut k, f, now_secs())?;
            self.bound_to_caller(caller, &mut k, f)?;
            self.check_team(&k).await?;
            k.updated_by = Some(caller.label());
            match self.store.update_key(&k).await {
                Ok(_) => {}
                Err(WriteError::Duplicate) => {
                    return Err(
                        Error::bad_request("a key with this `key_alias` already exists")
                            .with_param("key_alias"),
                    );
                }
                Err(WriteError::Db(e)) => return Err(e),
            }
            self.invalidate_key(&new_hash);
        }
        let k = self
            .store
            .key(&new_hash)
            .await?
            .ok_or_else(|| not_found("key"))?;
        let mut out = self.key_json(&k, true).await?;
        out.insert("key".into(), json!(key));
        out.insert("token_id".into(), json!(new_hash));
        Ok(Value::Object(out))
    }

    pub(super) async fn key_reset_spend(
        &self,
        caller: &Caller,
        given: &str,
        hash: &str,
        f: &Fields,
    ) -> Result<Value, Error> {
        if !caller.is_admin() {
            return Err(forbidden("resetting spend"));
        }
        match f.money("reset_to")? {
            Some(0.0) => {}
            _ => {
                return Err(Error::bad_request("`reset_to` must be 0").with_param("reset_to"));
            }
        }
        if !self.store.reset_key_spend(hash).await? {
            return Err(not_found("key"));
        }
        self.invalidate_key(hash);
        let k = self
            .store
            .key(hash)
            .await?
            .ok_or_else(|| not_found("key"))?;
        let mut out = self.key_json(&k, false).await?;
        out.insert("key".into(), json!(given));
        Ok(Value::Object(out))
    }

    pub(super) async fn key_info(
        &self,
        caller: &Caller,
        identity: &crate::auth::Identity,
        q: &Fields,
    ) -> Result<Value, Error> {
        let (given, hash) = match q.text("key")? {
            Some(k) => {
                let h = key_param("key", &k)?;
                (k, h)
            }
            None => match &identity.key_hash {
                Some(h) => (
                    identity.key_display.as_deref().unwrap_or("").to_owned(),
                    h.to_string(),
                ),
                None => return Err(Error::bad_request("send `key`").with_param("key")),
            },
        };
        let k = self
            .store
            .key(&hash)
            .await?
            .ok_or_else(|| not_found("key"))?;
        let allowed = match caller {
            _ if caller.can_read_all() => true,
            Caller::User { user, .. } => k.user_id.as_deref() == Some(&user.user_id),
            Caller::Key(own) => own.token == k.token,
            _ => false,
        };
        if !allowed {
            return Err(not_found("key"));
        }
        let info = self.key_json(&k, false).await?;
        Ok(json!({ "key": given, "info": info }))
    }

    pub(super) async fn key_list(&self, caller: &Caller, q: &Fields) -> Result<Value, Error> {
        let mut filter = KeyFilter {
            user_id: q.text("user_id")?,
            team_id: q.text("team_id")?,
            key_alias: q.text("key_alias")?,
        };
        match caller {
            _ if caller.can_read_all() => {}
            Caller::User { .. } => filter.user_id = caller.own_user().map(str::to_owned),
            _ => return Err(forbidden("/key/list")),
        }
        let (page, size) = page(q, "size", 10)?;
        let full = q.boolean("return_full_object")?.unwrap_or(false);
        let (keys, total) = self
            .store
            .list_keys(&filter, size, (page - 1) * size)
            .await?;
        let mut out = Vec::with_capacity(keys.len());
        for k in &keys {
            out.push(if full {
                Value::Object(self.key_json(k, true).await?)
            } else {
                json!(k.token)
            });
        }
        Ok(json!({
            "keys": out,
            "total_count": total,
            "current_page": page,
            "total_pages": (total + size - 1) / size,
        }))
    }
}
