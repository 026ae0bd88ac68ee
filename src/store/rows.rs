//! Reading rows the same way on both backends, and the budget and limit
//! fields keys, teams, users and end users share.

use super::validate::Fields;
use crate::error::Error;
use crate::limits::{BudgetWindow, Limits, ModelBudget};
use crate::pricing::Usd;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::Row;
use std::collections::BTreeMap;

/// Column access shared by SQLite and PostgreSQL rows.
pub(crate) trait Get {
    fn text(&self, c: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, c: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, c: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, c: &str) -> Result<Option<i64>, sqlx::Error>;
    fn opt_float(&self, c: &str) -> Result<Option<f64>, sqlx::Error>;
    fn flag(&self, c: &str) -> Result<bool, sqlx::Error>;
}

macro_rules! impl_get {
    ($row:ty) => {
        impl Get for $row {
            fn text(&self, c: &str) -> Result<String, sqlx::Error> {
                self.try_get(c)
            }
            fn opt_text(&self, c: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(c)
            }
            fn int(&self, c: &str) -> Result<i64, sqlx::Error> {
                self.try_get(c)
            }
            fn opt_int(&self, c: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(c)
            }
            fn opt_float(&self, c: &str) -> Result<Option<f64>, sqlx::Error> {
                self.try_get(c)
            }
            fn flag(&self, c: &str) -> Result<bool, sqlx::Error> {
                self.try_get(c)
            }
        }
    };
}
impl_get!(sqlx::sqlite::SqliteRow);
impl_get!(sqlx::postgres::PgRow);

/// A JSON text column as a value (malformed text reads as `default`).
pub(crate) fn json_col(r: &impl Get, c: &str, default: Value) -> Result<Value, sqlx::Error> {
    Ok(serde_json::from_str(&r.text(c)?).unwrap_or(default))
}

/// A JSON text column holding a list of strings.
pub(crate) fn list_col(r: &impl Get, c: &str) -> Result<Vec<String>, sqlx::Error> {
    Ok(serde_json::from_str(&r.text(c)?).unwrap_or_default())
}

/// A JSON text column holding an object.
pub(crate) fn object_col(r: &impl Get, c: &str) -> Result<Map<String, Value>, sqlx::Error> {
    Ok(serde_json::from_str(&r.text(c)?).unwrap_or_default())
}

/// Serializes a value for a JSON text column.
pub(crate) fn to_json_text<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// One per-model budget, as LiteLLM writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelBudgetSpec {
    /// Dollars.
    pub budget_limit: f64,
    /// Window (`1d`, `1mo`, …); `None`: never resets.
    #[serde(default)]
    pub time_period: Option<String>,
}

/// The budget and rate-limit fields keys, teams, users and end users share.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LimitFields {
    /// Hard budget in dollars.
    pub max_budget: Option<f64>,
    /// Soft budget (alerts only).
    pub soft_budget: Option<f64>,
    /// Budget window (`30s`, `1h`, `1d`, `1mo`, …).
    pub budget_duration: Option<String>,
    /// Where budget windows start, and the last spend reset (Unix seconds).
    pub budget_start: i64,
    /// Tokens per minute.
    pub tpm_limit: Option<i64>,
    /// Requests per minute.
    pub rpm_limit: Option<i64>,
    /// Requests in flight.
    pub max_parallel_requests: Option<i64>,
    /// Per-model budgets.
    pub model_max_budget: BTreeMap<String, ModelBudgetSpec>,
    /// Per-model requests per minute.
    pub model_rpm_limit: BTreeMap<String, i64>,
    /// Per-model tokens per minute.
    pub model_tpm_limit: BTreeMap<String, i64>,
}

impl LimitFields {
    /// Reads the columns every limited table has.
    pub(crate) fn from_row(r: &impl Get, per_model: bool) -> Result<Self, sqlx::Error> {
        let map = |c: &str| -> Result<Value, sqlx::Error> {
            if per_model {
                json_col(r, c, json!({}))
            } else {
                Ok(json!({}))
            }
        };
        Ok(LimitFields {
            max_budget: r.opt_float("max_budget")?,
            soft_budget: r.opt_float("soft_budget")?,
            budget_duration: r.opt_text("budget_duration")?,
            budget_start: r.int("budget_start")?,
            tpm_limit: r.opt_int("tpm_limit")?,
            rpm_limit: r.opt_int("rpm_limit")?,
            max_parallel_requests: r.opt_int("max_parallel_requests")?,
            model_max_budget: serde_json::from_value(map("model_max_budget")?).unwrap_or_default(),
            model_rpm_limit: serde_json::from_value(map("model_rpm_limit")?).unwrap_or_default(),
            model_tpm_limit: serde_json::from_value(map("model_tpm_limit")?).unwrap_or_default(),
        })
    }

    /// Applies the fields a request sets (absent or `null`: unchanged).
    pub(crate) fn apply(&mut self, f: &Fields) -> Result<(), Error> {
        if let Some(v) = f.money("max_budget")? {
            self.max_budget = Some(v);
        }
        if let Some(v) = f.money("soft_budget")? {
            self.soft_budget = Some(v);
        }
        if let Some(v) = f.window("budget_duration")? {
            self.budget_duration = Some(v);
        }
        if let Some(v) = f.count("tpm_limit")? {
            self.tpm_limit = Some(v);
        }
        if let Some(v) = f.count("rpm_limit")? {
            self.rpm_limit = Some(v);
        }
        if let Some(v) = f.count("max_parallel_requests")? {
            self.max_parallel_requests = Some(v);
        }
        if let Some(v) = f.model_budgets("model_max_budget")? {
            self.model_max_budget = v;
        }
        if let Some(v) = f.count_map("model_rpm_limit")? {
            self.model_rpm_limit = v;
        }
        if let Some(v) = f.count_map("model_tpm_limit")? {
            self.model_tpm_limit = v;
        }
        Ok(())
    }

    /// The limits the ledger enforces.
    pub fn limits(&self) -> Limits {
        let window = |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<BudgetWindow>().ok());
        let count = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
        let mut l = Limits::none();
        l.max_budget = self.max_budget.and_then(Usd::from_f64);
        l.soft_budget = self.soft_budget.and_then(Usd::from_f64);
        l.budget_window = window(&self.budget_duration);
        l.rpm = count(self.rpm_limit);
        l.tpm = count(self.tpm_limit);
        l.max_parallel = self
            .max_parallel_requests
            .and_then(|n| u32::try_from(n).ok());
        for (m, b) in &self.model_max_budget {
            if let Some(usd) = Usd::from_f64(b.budget_limit) {
                l.model_budgets.insert(
                    m.clone(),
                    ModelBudget {
                        max_budget: usd,
                        window: window(&b.time_period),
                    },
                );
            }
        }
        for (m, n) in &self.model_rpm_limit {
            if let Some(n) = count(Some(*n)) {
                l.model_rpm.insert(m.clone(), n);
            }
        }
        for (m, n) in &self.model_tpm_limit {
            if let Some(n) = count(Some(*n)) {
                l.model_tpm.insert(m.clone(), n);
            }
        }
        l
    }

    /// The end of the current budget window, if there is one (LiteLLM's
    /// `budget_reset_at`).
    pub fn budget_reset_at(&self, now: i64) -> Option<i64> {
        let w: BudgetWindow = self.budget_duration.as_deref()?.parse().ok()?;
        let win = w.window_at(self.budget_start.max(0) as u64, now.max(0) as u64);
        Some(win.end.min(i64::MAX as u64) as i64)
    }

    /// Where the current budget window starts (the last reset when there is
    /// no window).
    pub fn window_start(&self, now: i64) -> i64 {
        match self
            .budget_duration
            .as_deref()
            .and_then(|s| s.parse::<BudgetWindow>().ok())
        {
            Some(w) => w
                .window_at(self.budget_start.max(0) as u64, now.max(0) as u64)
                .start
                .min(i64::MAX as u64) as i64,
            None => self.budget_start,
        }
    }

    /// The JSON fields, LiteLLM's names.
    pub(crate) fn write_json(&self, out: &mut Map<String, Value>, now: i64, per_model: bool) {
        out.insert("max_budget".into(), json!(self.max_budget));
        out.insert("soft_budget".into(), json!(self.soft_budget));
        out.insert("budget_duration".into(), json!(self.budget_duration));
        out.insert(
            "budget_reset_at".into(),
            json!(self.budget_reset_at(now).map(super::time::iso)),
        );
        out.insert("tpm_limit".into(), json!(self.tpm_limit));
        out.insert("rpm_limit".into(), json!(self.rpm_limit));
        out.insert(
            "max_parallel_requests".into(),
            json!(self.max_parallel_requests),
        );
        if per_model {
            out.insert("model_max_budget".into(), json!(self.model_max_budget));
            out.insert("model_rpm_limit".into(), json!(self.model_rpm_limit));
            out.insert("model_tpm_limit".into(), json!(self.model_tpm_limit));
        }
    }
}

/// Picodollars (a spend column) as dollars for JSON.
pub(crate) fn dollars(pico: i128) -> f64 {
    Usd::from_pico(pico).as_f64()
}

/// Clamps exact money into a 64-bit column.
pub(crate) fn pico_column(usd: Usd) -> i64 {
    usd.pico().clamp(0, i128::from(i64::MAX)) as i64
}
