//! `/spend/logs` and `/global/spend*`.

use super::{Caller, ManagementApi, forbidden, key_param};
use crate::error::Error;
use crate::limits::ScopeKind;
use crate::pricing::Usd;
use crate::store::spend::{SpendFilter, day_text, today, usd_json};
use crate::store::time::parse_datetime;
use crate::store::validate::Fields;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// One day of `/spend/logs?start_date&end_date`: total, the JSON being
/// built, and spend per user, model and key.
type Day = (
    Usd,
    Map<String, Value>,
    BTreeMap<String, Usd>,
    BTreeMap<String, Usd>,
    BTreeMap<String, Usd>,
);

/// Reports over "the last 30 days" include today and the 29 days before.
const REPORT_DAYS: i64 = 30;

impl ManagementApi {
    fn read_all(caller: &Caller, route: &str) -> Result<(), Error> {
        if caller.can_read_all() {
            Ok(())
        } else {
            Err(forbidden(route))
        }
    }

    pub(super) async fn spend_logs(&self, caller: &Caller, q: &Fields) -> Result<Value, Error> {
        let mut filter = SpendFilter {
            user_id: q.text("user_id")?,
            team_id: q.text("team_id")?,
            end_user: q.text("end_user")?,
            request_id: q.text("request_id")?,
            ..SpendFilter::default()
        };
        if let Some(k) = q.text("api_key")? {
            let hash = key_param("api_key", &k)?;
            match self.store.key(&hash).await? {
                Some(rec) => filter.key_id = Some(rec.key_id),
                None => return Ok(json!([])),
            }
        }
        match caller {
            _ if caller.can_read_all() => {}
            Caller::User { .. } => filter.user_id = caller.own_user().map(str::to_owned),
            Caller::Key(own) => {
                if filter.key_id.as_ref().is_some_and(|k| *k != own.key_id) {
                    return Ok(json!([]));
                }
                filter.key_id = Some(own.key_id.clone());
            }
            _ => return Err(forbidden("/spend/logs")),
        }
        let start = q
            .text("start_date")?
            .map(|s| parse_datetime(&s, "start_date"))
            .transpose()?;
        let end = q
            .text("end_date")?
            .map(|s| parse_datetime(&s, "end_date"))
            .transpose()?;
        if let (Some(start), Some(end)) = (start, end) {
            // LiteLLM's daily view: one entry per day from start to end.
            let (from_day, to_day) = (start.div_euclid(86_400), end.div_euclid(86_400));
            if to_day < from_day || to_day - from_day > 3660 {
                return Err(Error::bad_request(
                    "`end_date` must be on or after `start_date`, within 10 years",
                )
                .with_param("end_date"));
            }
            filter.start_ms = Some(from_day * 86_400_000);
            filter.end_ms = Some((to_day + 1) * 86_400_000);
            let rows = self.store.daily_log_spend(&filter).await?;
            let mut days: BTreeMap<i64, Day> = BTreeMap::new();
            for d in from_day..=to_day {
                days.insert(d, Default::default());
            }
            for (day, key, user, model, spend) in rows {
                let e = days.entry(day).or_default();
                e.0 += spend;
                *e.2.entry(user).or_default() += spend;
                *e.3.entry(model).or_default() += spend;
                if !key.is_empty() {
                    *e.4.entry(key).or_default() += spend;
                }
            }
            let out: Vec<Value> = days
                .into_iter()
                .map(|(day, (total, mut m, users, models, keys))| {
                    m.insert("startTime".into(), json!(day_text(day)));
                    m.insert("spend".into(), json!(usd_json(total)));
                    let map = |b: BTreeMap<String, Usd>| {
                        Value::Object(
                            b.into_iter()
                                .map(|(k, v)| (k, json!(usd_json(v))))
                                .collect(),
                        )
                    };
                    m.insert("users".into(), map(users));
                    m.insert("models".into(), map(models));
                    m.insert("api_keys".into(), map(keys));
                    Value::Object(m)
                })
                .collect();
            return Ok(Value::Array(out));
        }
        filter.start_ms = start.map(|s| s.saturating_mul(1000));
        filter.end_ms = end.map(|e| e.saturating_mul(1000));
        let limit = q.count("limit")?.unwrap_or(1000).clamp(1, 10_000);
        let logs = self.store.spend_logs(&filter, limit).await?;
        Ok(Value::Array(logs.iter().map(|l| l.to_json()).collect()))
    }

    pub(super) async fn global_spend(&self, caller: &Caller) -> Result<Value, Error> {
        Self::read_all(caller, "/global/spend")?;
        let total = self
            .store
            .spent_from(ScopeKind::Global, "", None, 0)
            .await?;
        Ok(json!({ "spend": usd_json(total), "max_budget": self.global_max_budget }))
    }

    /// Totals per scope id over the last 30 days, largest first.
    async fn top(&self, scope: &'static str) -> Result<Vec<(String, Usd, i64)>, Error> {
        let to = today();
        let rows = self
            .store
            .rollups(scope, None, to - (REPORT_DAYS - 1), to)
            .await?;
        let mut sums: BTreeMap<String, (Usd, i64)> = BTreeMap::new();
        for r in rows {
            let id = if scope == "global" {
                r.model
            } else {
                r.scope_id
            };
            let e = sums.entry(id).or_default();
            e.0 += r.spend;
            e.1 += r.requests;
        }
        let mut v: Vec<(String, Usd, i64)> =
            sums.into_iter().map(|(k, (s, n))| (k, s, n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(v)
    }

    pub(super) async fn global_spend_keys(
        &self,
        caller: &Caller,
        q: &Fields,
    ) -> Result<Value, Error> {
        Self::read_all(caller, "/global/spend/keys")?;
        let limit = q.count("limit")?.unwrap_or(10).clamp(1, 1000) as usize;
        let mut out = Vec::new();
        for (key_id, spend, _) in self.top("key").await?.into_iter().take(limit) {
            let names = self.store.key_names(&key_id).await?;
            let (name, alias) = match names {
                Some((_, name, alias)) => (Some(name), alias),
                None => (None, None),
            };
            out.push(json!({
                "api_key": name,
                "key_id": key_id,
                "key_name": name,
                "key_alias": alias,
                "total_spend": usd_json(spend),
            }));
        }
        Ok(Value::Array(out))
    }

    pub(super) async fn global_spend_teams(&self, caller: &Caller) -> Result<Value, Error> {
        Self::read_all(caller, "/global/spend/teams")?;
        let to = today();
        let rows = self
            .store
            .rollups("team", None, to - (REPORT_DAYS - 1), to)
            .await?;
        let mut alias: BTreeMap<String, String> = BTreeMap::new();
        for r in &rows {
            if !alias.contains_key(&r.scope_id) {
                let name = self
                    .store
                    .team(&r.scope_id)
                    .await?
                    .and_then(|t| t.team_alias)
                    .unwrap_or_else(|| r.scope_id.clone());
                alias.insert(r.scope_id.clone(), name);
            }
        }
        let mut by_day: BTreeMap<i64, BTreeMap<String, Usd>> = BTreeMap::new();
        let mut totals: BTreeMap<String, Usd> = BTreeMap::new();
        for r in &rows {
            let name = alias.get(&r.scope_id).cloned().unwrap_or_default();
            *by_day
                .entry(r.day)
                .or_default()
                .entry(name.clone())
                .or_default() += r.spend;
            *totals.entry(name).or_default() += r.spend;
        }
        let daily: Vec<Value> = by_day
            .into_iter()
            .map(|(day, teams)| {
                let mut m = Map::new();
                m.insert("date".into(), json!(day_text(day)));
                for (t, s) in teams {
                    m.insert(t, json!(usd_json(s)));
                }
                Value::Object(m)
            })
            .collect();
        let mut per_team: Vec<(String, Usd)> = totals.into_iter().collect();
        per_team.sort_by_key(|t| std::cmp::Reverse(t.1));
        Ok(json!({
            "daily_spend": daily,
            "teams": per_team.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
            "total_spend_per_team": per_team
                .iter()
                .take(10)
                .map(|(t, s)| json!({"team_id": t, "total_spend": usd_json(*s)}))
                .collect::<Vec<_>>(),
        }))
    }

    pub(super) async fn global_spend_models(
        &self,
        caller: &Caller,
        q: &Fields,
    ) -> Result<Value, Error> {
        Self::read_all(caller, "/global/spend/models")?;
        let limit = q.count("limit")?.unwrap_or(10).clamp(1, 1000) as usize;
        Ok(Value::Array(
            self.top("global")
                .await?
                .into_iter()
                .take(limit)
                .map(|(model, spend, _)| json!({"model": model, "total_spend": usd_json(spend)}))
                .collect(),
        ))
    }

    pub(super) async fn global_spend_end_users(
        &self,
        caller: &Caller,
        f: &Fields,
    ) -> Result<Value, Error> {
        Self::read_all(caller, "/global/spend/end_users")?;
        if f.has("api_key") {
            return Err(Error::bad_request(
                "filtering end-user spend by `api_key` is not supported",
            )
            .with_param("api_key"));
        }
        Ok(Value::Array(
            self.top("end_user")
                .await?
                .into_iter()
                .take(100)
                .map(|(u, spend, n)| json!({"end_user": u, "total_count": n, "total_spend": usd_json(spend)}))
                .collect(),
        ))
    }

    pub(super) async fn global_spend_reset(&self, caller: &Caller) -> Result<Value, Error> {
        if !caller.is_admin() {
            return Err(forbidden("/global/spend/reset"));
        }
        self.store.reset_all_spend().await?;
        self.invalidate_all();
        Ok(json!({
            "message": "Spend for all API Keys and Teams reset successfully",
            "status": "success",
        }))
    }
}
