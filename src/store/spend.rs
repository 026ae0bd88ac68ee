//! Spend logs and daily rollups: writing batches, summing spend, reports.

use super::rows::{Get, dollars, list_col, pico_column, to_json_text};
use super::time::{date_of_day, day_of, iso_ms};
use super::{Store, db_err, on_pool};
use crate::error::Error;
use crate::limits::ScopeKind;
use crate::observe::{CompletionRecord, RecordStatus};
use crate::pricing::Usd;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::UNIX_EPOCH;

/// One spend-log row, ready to write. Every text is bounded and free of
/// control characters (client-supplied values such as the end user or the
/// model name cannot break a batch).
#[derive(Clone, Debug, PartialEq)]
pub struct SpendRow {
    /// The row's own id (a retried batch never counts twice).
    pub id: String,
    /// The gateway's request id.
    pub request_id: String,
    /// `chat`, `embedding`, …
    pub call_type: String,
    /// The key's hash, for key-authenticated requests: used to find the key's
    /// stable id when the row is written, never stored.
    pub key_hash: Option<KeyHash>,
    /// The key's display form (`sk-...abcd`): what the row shows as `api_key`.
    pub key_display: Option<String>,
    /// The key's team.
    pub team_id: Option<String>,
    /// The key's internal user.
    pub user_id: Option<String>,
    /// The end user (`user` field).
    pub end_user: Option<String>,
    /// The model as requested.
    pub model: String,
    /// The model group that served (else as requested).
    pub model_group: String,
    /// The deployment id.
    pub model_id: Option<String>,
    /// The provider.
    pub provider: Option<String>,
    /// The deployment's base URL (no credentials).
    pub api_base: Option<String>,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// Cost; `None` when no price is known.
    pub spend: Option<Usd>,
    /// Start (Unix ms).
    pub start_ms: i64,
    /// End (Unix ms).
    pub end_ms: i64,
    /// Time to first token (ms since start).
    pub ttft_ms: Option<i64>,
    /// `success`, `failure` or `cancelled`.
    pub status: &'static str,
    /// HTTP status the client got.
    pub http_status: i64,
    /// LiteLLM's error class, on failure.
    pub error_class: Option<String>,
    /// Request tags.
    pub tags: Vec<String>,
    /// Served from the cache.
    pub cache_hit: bool,
    /// Streamed.
    pub stream: bool,
    /// Usage estimated (stream cut before the provider reported it).
    pub usage_estimated: bool,
    /// Upstream attempts.
    pub attempts: i64,
}

/// A key hash kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyHash(pub String);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHash(…)")
    }
}

/// A bounded, printable copy of client- or config-supplied text.
fn clean(s: &str, max: usize) -> String {
    // Most text (model names, ids) is short printable ASCII: copied whole.
    if s.len() <= max && s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        if c.is_control() {
            continue;
        }
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

fn clean_opt(s: Option<&str>, max: usize) -> Option<String> {
    s.map(|s| clean(s, max)).filter(|s| !s.is_empty())
}

impl SpendRow {
    /// The row for a finished request.
    pub fn from_record(r: &CompletionRecord) -> SpendRow {
        let start_ms = r
            .start_time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let usage = r.usage.as_ref();
        let tokens = |n: Option<u64>| n.map_or(0, |n| n.min(i64::MAX as u64) as i64);
        let model = clean(&r.model, 256);
        let dep = r.deployment.as_deref();
        SpendRow {
            id: uuid::Uuid::now_v7().to_string(),
            request_id: clean(&r.request_id, 128),
            call_type: clean(r.call_type, 32),
            key_hash: r
                .identity
                .key_hash
                .as_deref()
                .map(|h| KeyHash(clean(h, 64))),
            key_display: clean_opt(r.identity.key_display.as_deref(), 32),
            team_id: clean_opt(r.identity.team_id.as_deref(), 256),
            user_id: clean_opt(r.identity.user_id.as_deref(), 256),
            end_user: clean_opt(r.end_user.as_deref(), 256),
            model_group: dep.map_or_else(|| model.clone(), |d| clean(&d.model_group, 256)),
            model,
            model_id: dep.map(|d| clean(&d.id, 256)),
            provider: dep.map(|d| clean(&d.provider, 64)),
            api_base: dep.and_then(|d| clean_opt(d.api_base.as_deref(), 512)),
            prompt_tokens: tokens(usage.map(|u| u.prompt_tokens)),
            completion_tokens: tokens(usage.map(|u| u.completion_tokens)),
            spend: r.cost,
            start_ms,
            end_ms: start_ms.saturating_add(r.latency.as_millis().min(i64::MAX as u128) as i64),
            ttft_ms: r
                .time_to_first_token
                .map(|d| d.as_millis().min(i64::MAX as u128) as i64),
            status: match r.status {
                RecordStatus::Success => "success",
                RecordStatus::Failure => "failure",
                RecordStatus::Cancelled => "cancelled",
            },
            http_status: i64::from(r.http_status),
            error_class: r.error.as_ref().map(|e| e.class.to_owned()),
            tags: r.tags.iter().take(32).map(|t| clean(t, 128)).collect(),
            cache_hit: r.cache_hit,
            stream: r.stream,
            usage_estimated: r.usage_estimated,
            attempts: i64::from(r.attempts),
        }
    }
}

/// The spend log's columns, in the order they are bound.
const LOG_COLUMNS: &str = "id, request_id, call_type, api_key, key_id, team_id, user_id, \
     end_user, model, model_group, model_id, provider, api_base, prompt_tokens, \
     completion_tokens, total_tokens, spend_pico, start_ms, end_ms, ttft_ms, status, \
     http_status, error_class, tags, cache_hit, stream, usage_estimated, attempts";
const LOG_ARITY: usize = 28;
/// Log rows per `INSERT` on PostgreSQL (28 parameters each, well under its
/// limit): one round trip per 64 rows. SQLite runs in process, where a
/// cached one-row statement is cheapest: a long statement is parsed anew for
/// each batch size, and binding by name is quadratic in its parameters.
const PG_LOG_ROWS_PER_INSERT: usize = 64;

/// `INSERT … VALUES (…), (…) … ON CONFLICT (id) DO NOTHING RETURNING id` for
/// `rows` rows (PostgreSQL): one statement per chunk of a batch, and the ids
/// it returns are the rows that were new.
fn insert_logs_sql(rows: usize) -> std::borrow::Cow<'static, str> {
    build_insert_logs_sql(rows).into()
}

/// Log rows per `INSERT` on SQLite (28 parameters each: 700, under the 999
/// of the oldest SQLite builds). The rest of a batch goes one row at a time,
/// so only two statements are ever prepared.
const SQLITE_LOG_ROWS_PER_INSERT: usize = 25;

/// SQLite's insert of one or [`SQLITE_LOG_ROWS_PER_INSERT`] rows: positional
/// `?` parameters (SQLite finds a named `$n` by walking the statement's
/// parameter list, for each one), and no `RETURNING` (which builds a
/// temporary b-tree per statement). Which rows were new follows from the
/// changed-row count (see `write_spend_tx`).
fn insert_logs_sqlite_sql(rows: usize) -> &'static str {
    static ONE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static MANY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let build = || {
        let one = format!("({})", vec!["?"; LOG_ARITY].join(", "));
        format!(
            "INSERT INTO tollgate_spend_logs ({LOG_COLUMNS}) VALUES {} ON CONFLICT (id) DO NOTHING",
            vec![one; rows].join(", ")
        )
    };
    debug_assert!(rows == 1 || rows == SQLITE_LOG_ROWS_PER_INSERT);
    if rows == 1 { &ONE } else { &MANY }.get_or_init(build)
}

/// The row ranges of a batch, one per `INSERT`: PostgreSQL's in chunks of
/// [`PG_LOG_ROWS_PER_INSERT`]; SQLite's in chunks of
/// [`SQLITE_LOG_ROWS_PER_INSERT`] (only when `many`) and then one by one.
fn insert_ranges(len: usize, sqlite: bool, many: bool) -> Vec<std::ops::Range<usize>> {
    let per = match (sqlite, many) {
        (false, _) => PG_LOG_ROWS_PER_INSERT,
        (true, true) => SQLITE_LOG_ROWS_PER_INSERT,
        (true, false) => 1,
    };
    let whole = if sqlite { len - len % per } else { len };
    let mut out: Vec<_> = (0..whole)
        .step_by(per)
        .map(|i| i..(i + per).min(whole))
        .collect();
    out.extend((whole..len).map(|i| i..i + 1));
    out
}

fn build_insert_logs_sql(rows: usize) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(400 + rows * LOG_ARITY * 5);
    sql.push_str("INSERT INTO tollgate_spend_logs (");
    sql.push_str(LOG_COLUMNS);
    sql.push_str(") VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..LOG_ARITY {
            let sep = if c == 0 { "" } else { ", " };
            let _ = write!(sql, "{sep}${}", r * LOG_ARITY + c + 1);
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
    sql
}

const ADD_SPEND_KEY: &str = "UPDATE tollgate_keys SET spend_pico = CASE WHEN spend_pico > \
     9223372036854775807 - $1 THEN 9223372036854775807 ELSE spend_pico + $1 END WHERE key_id = $2";
const ADD_SPEND_TEAM: &str = "UPDATE tollgate_teams SET spend_pico = CASE WHEN spend_pico > \
     9223372036854775807 - $1 THEN 9223372036854775807 ELSE spend_pico + $1 END WHERE team_id = $2";
const ADD_SPEND_USER: &str = "UPDATE tollgate_users SET spend_pico = CASE WHEN spend_pico > \
     9223372036854775807 - $1 THEN 9223372036854775807 ELSE spend_pico + $1 END WHERE user_id = $2";
// An end user first seen in a spend row is anchored at the epoch: its budget
// windows (if it gets any) count every request, the first one included.
const ADD_SPEND_END_USER: &str = "INSERT INTO tollgate_end_users (user_id, budget_start, \
     spend_pico, created_at, updated_at) VALUES ($2, 0, $1, $3, $3) ON CONFLICT (user_id) DO \
     UPDATE SET spend_pico = CASE WHEN tollgate_end_users.spend_pico > 9223372036854775807 - \
     excluded.spend_pico THEN 9223372036854775807 ELSE tollgate_end_users.spend_pico + \
     excluded.spend_pico END";
const ADD_ROLLUP: &str = "INSERT INTO tollgate_daily_spend (day, scope, scope_id, model, \
     spend_pico, prompt_tokens, completion_tokens, requests, successes, failures) VALUES ($1, $2, \
     $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (day, scope, scope_id, model) DO UPDATE SET \
     spend_pico = CASE WHEN tollgate_daily_spend.spend_pico > 9223372036854775807 - \
     excluded.spend_pico THEN 9223372036854775807 ELSE tollgate_daily_spend.spend_pico + \
     excluded.spend_pico END, prompt_tokens = tollgate_daily_spend.prompt_tokens + \
     excluded.prompt_tokens, completion_tokens = tollgate_daily_spend.completion_tokens + \
     excluded.completion_tokens, requests = tollgate_daily_spend.requests + excluded.requests, \
     successes = tollgate_daily_spend.successes + excluded.successes, failures = \
     tollgate_daily_spend.failures + excluded.failures";

#[derive(Default, Clone, Copy)]
struct Totals {
    spend: i128,
    prompt: i64,
    completion: i64,
    requests: i64,
    successes: i64,
    failures: i64,
}

impl Totals {
    fn add(&mut self, r: &SpendRow) {
        self.spend += r.spend.map_or(0, Usd::pico).max(0);
        self.prompt = self.prompt.saturating_add(r.prompt_tokens);
        self.completion = self.completion.saturating_add(r.completion_tokens);
        self.requests += 1;
        if r.status == "success" {
            self.successes += 1;
        } else {
            self.failures += 1;
        }
    }
}

fn sum_parts(hi: i64, lo: i64) -> Usd {
    Usd::from_pico(i128::from(hi) * 1_000_000 + i128::from(lo))
}

/// Sums of picodollars without overflow: whole micro-dollars and the rest.
macro_rules! money_sum {
    () => {
        "CAST(COALESCE(SUM(spend_pico / 1000000), 0) AS BIGINT) AS hi, \
         CAST(COALESCE(SUM(spend_pico % 1000000), 0) AS BIGINT) AS lo"
    };
}

macro_rules! partial_sum {
    ($filter:literal) => {
        concat!(
            "SELECT ",
            money_sum!(),
            " FROM tollgate_spend_logs WHERE start_ms >= $1 AND start_ms < $2 AND ($3 IS NULL OR \
             model_group = $3)",
            $filter
        )
    };
}

const PARTIAL_GLOBAL: &str = partial_sum!("");
const PARTIAL_KEY: &str = partial_sum!(" AND key_id = $4");
const PARTIAL_TEAM: &str = partial_sum!(" AND team_id = $4");
const PARTIAL_USER: &str = partial_sum!(" AND user_id = $4");
const PARTIAL_END_USER: &str = partial_sum!(" AND end_user = $4");
/// The rollup scope name and the partial-day log sum of a scope kind.
fn partial_sum_sql(kind: ScopeKind) -> (&'static str, &'static str) {
    match kind {
        ScopeKind::Global => ("global", PARTIAL_GLOBAL),
        ScopeKind::Key => ("key", PARTIAL_KEY),
        ScopeKind::Team => ("team", PARTIAL_TEAM),
        ScopeKind::User => ("user", PARTIAL_USER),
        ScopeKind::EndUser => ("end_user", PARTIAL_END_USER),
    }
}

const ROLLUP_SUM: &str = concat!(
    "SELECT ",
    money_sum!(),
    " FROM tollgate_daily_spend WHERE scope = $1 AND scope_id = $2 AND day >= $3 AND ($4 IS NULL \
     OR model = $4)"
);

/// Filters of `/spend/logs`.
#[derive(Clone, Debug, Default)]
pub struct SpendFilter {
    /// The key's stable id.
    pub key_id: Option<String>,
    /// Internal user.
    pub user_id: Option<String>,
    /// Team.
    pub team_id: Option<String>,
    /// End user.
    pub end_user: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// From (Unix ms, inclusive).
    pub start_ms: Option<i64>,
    /// To (Unix ms, exclusive).
    pub end_ms: Option<i64>,
}

const SELECT_LOGS: &str = "SELECT id, request_id, call_type, api_key, key_id, team_id, user_id, \
     end_user, model, model_group, model_id, provider, api_base, prompt_tokens, \
     completion_tokens, total_tokens, spend_pico, start_ms, end_ms, ttft_ms, status, http_status, \
     error_class, tags, cache_hit, stream, usage_estimated, attempts FROM tollgate_spend_logs";

impl SpendFilter {
    /// The filters of `/spend/logs`, by column.
    fn log_filters(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("key_id", self.key_id.as_deref()),
            ("user_id", self.user_id.as_deref()),
            ("team_id", self.team_id.as_deref()),
            ("end_user", self.end_user.as_deref()),
            ("request_id", self.request_id.as_deref()),
        ]
    }

    /// The filters of the daily spend report (no team or end user there).
    fn daily_filters(&self) -> [(&'static str, Option<&str>); 3] {
        [
            ("key_id", self.key_id.as_deref()),
            ("user_id", self.user_id.as_deref()),
            ("request_id", self.request_id.as_deref()),
        ]
    }
}

/// ` WHERE start_ms >= $1 AND start_ms < $2 AND col = $3 …` for the filters
/// that are set, and their values to bind after the two bounds. Only the
/// present filters are in the SQL: a `($n IS NULL OR col = $n)` term cannot
/// use `col`'s index (SQLite plans before it sees the values), so a lookup by
/// request id or key would walk every row in the time range.
fn where_clause<'a>(filters: &[(&'static str, Option<&'a str>)]) -> (String, Vec<&'a str>) {
    use std::fmt::Write;
    let mut sql = String::from(" WHERE start_ms >= $1 AND start_ms < $2");
    let mut values = Vec::new();
    for &(col, value) in filters {
        if let Some(v) = value {
            values.push(v);
            let _ = write!(sql, " AND {col} = ${}", values.len() + 2);
        }
    }
    (sql, values)
}

/// `SELECT_LOGS` for `filter`, newest first; the limit is the last parameter.
fn select_logs_sql(filter: &SpendFilter) -> (String, Vec<&str>) {
    let (clause, values) = where_clause(&filter.log_filters());
    let sql = format!(
        "{SELECT_LOGS}{clause} ORDER BY start_ms DESC, id DESC LIMIT ${}",
        values.len() + 3
    );
    (sql, values)
}

/// The daily spend per (day, key display, user, model group) for `filter`.
fn daily_log_spend_sql(filter: &SpendFilter) -> (String, Vec<&str>) {
    let (clause, values) = where_clause(&filter.daily_filters());
    let sql = format!(
        concat!(
            "SELECT start_ms / 86400000 AS day, COALESCE(api_key, '') AS api_key, \
             COALESCE(user_id, '') AS user_id, model_group, ",
            money_sum!(),
            " FROM tollgate_spend_logs{} GROUP BY start_ms / 86400000, COALESCE(api_key, ''), \
             COALESCE(user_id, ''), model_group ORDER BY 1"
        ),
        clause
    );
    (sql, values)
}

/// A stored spend-log row.
#[derive(Clone, Debug, PartialEq)]
pub struct SpendLog {
    /// The row.
    pub row: SpendRow,
    /// The key's stable id.
    pub key_id: Option<String>,
}

impl SpendLog {
    fn from_row(r: &impl Get) -> Result<Self, sqlx::Error> {
        let status = match r.text("status")?.as_str() {
            "success" => "success",
            "failure" => "failure",
            _ => "cancelled",
        };
        Ok(SpendLog {
            key_id: r.opt_text("key_id")?,
            row: SpendRow {
                id: r.text("id")?,
                request_id: r.text("request_id")?,
                call_type: r.text("call_type")?,
                key_hash: None,
                key_display: r.opt_text("api_key")?,
                team_id: r.opt_text("team_id")?,
                user_id: r.opt_text("user_id")?,
                end_user: r.opt_text("end_user")?,
                model: r.text("model")?,
                model_group: r.text("model_group")?,
                model_id: r.opt_text("model_id")?,
                provider: r.opt_text("provider")?,
                api_base: r.opt_text("api_base")?,
                prompt_tokens: r.int("prompt_tokens")?,
                completion_tokens: r.int("completion_tokens")?,
                spend: r
                    .opt_int("spend_pico")?
                    .map(|p| Usd::from_pico(i128::from(p))),
                start_ms: r.int("start_ms")?,
                end_ms: r.int("end_ms")?,
                ttft_ms: r.opt_int("ttft_ms")?,
                status,
                http_status: r.int("http_status")?,
                error_class: r.opt_text("error_class")?,
                tags: list_col(r, "tags")?,
                cache_hit: r.flag("cache_hit")?,
                stream: r.flag("stream")?,
                usage_estimated: r.flag("usage_estimated")?,
                attempts: r.int("attempts")?,
            },
        })
    }

    /// LiteLLM's `LiteLLM_SpendLogs` JSON shape.
    pub fn to_json(&self) -> Value {
        let r = &self.row;
        json!({
            "request_id": r.request_id,
            "call_type": r.call_type,
            "api_key": r.key_display.clone().unwrap_or_default(),
            "key_id": self.key_id,
            "spend": r.spend.map_or(0.0, Usd::as_f64),
            "total_tokens": r.prompt_tokens.saturating_add(r.completion_tokens),
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "startTime": iso_ms(r.start_ms),
            "endTime": iso_ms(r.end_ms),
            "completionStartTime": r.ttft_ms.map(|t| iso_ms(r.start_ms.saturating_add(t))),
            "model": r.model,
            "model_id": r.model_id,
            "model_group": r.model_group,
            "custom_llm_provider": r.provider,
            "api_base": r.api_base,
            "user": r.user_id.clone().unwrap_or_default(),
            "team_id": r.team_id,
            "end_user": r.end_user.clone().unwrap_or_default(),
            "request_tags": r.tags,
            "cache_hit": if r.cache_hit { "True" } else { "False" },
            "status": r.status,
            "metadata": {
                "status": r.status,
                "http_status": r.http_status,
                "error_class": r.error_class,
                "stream": r.stream,
                "usage_estimated": r.usage_estimated,
                "attempts": r.attempts,
                "spend_known": r.spend.is_some(),
            },
        })
    }
}

/// One row of a spend report.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ReportRow {
    pub(crate) day: i64,
    pub(crate) scope_id: String,
    pub(crate) model: String,
    pub(crate) spend: Usd,
    pub(crate) prompt_tokens: i64,
    pub(crate) completion_tokens: i64,
    pub(crate) requests: i64,
}

impl Store {
    /// Writes a batch of spend rows in one transaction: the log rows (a row
    /// already written is skipped), the spend columns of keys, teams, users
    /// and end users (created if new), and the daily rollups. Returns how
    /// many rows were new.
    pub async fn write_spend(&self, rows: &[SpendRow]) -> Result<usize, Error> {
        self.write_spend_inner(rows).await.map_err(db_err)
    }

    pub(crate) async fn write_spend_inner(&self, rows: &[SpendRow]) -> Result<usize, sqlx::Error> {
        if rows.is_empty() {
            return Ok(0);
        }
        match self.write_spend_tx(rows, true).await? {
            Some(n) => Ok(n),
            // Some rows of a many-row SQLite insert were there already (a
            // batch retried after its commit): again, row by row, which
            // tells each row's fate.
            None => Ok(self.write_spend_tx(rows, false).await?.unwrap_or(0)),
        }
    }

    /// One transaction writing `rows`; `None` (rolled back) when a many-row
    /// SQLite insert found some of its rows written before, as it cannot
    /// tell which. Never `None` without `many`.
    async fn write_spend_tx(
        &self,
        rows: &[SpendRow],
        many: bool,
    ) -> Result<Option<usize>, sqlx::Error> {
        let now = super::time::now_secs();
        let sqlite = self.backend() == super::Backend::Sqlite;
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            // The keys' stable ids, by hash.
            let mut key_ids: BTreeMap<String, Option<String>> = BTreeMap::new();
            for h in rows
                .iter()
                .filter_map(|r| r.key_hash.as_ref().map(|k| &k.0))
            {
                if !key_ids.contains_key(h) {
                    let id = sqlx::query("SELECT key_id FROM tollgate_keys WHERE token = $1")
                        .bind(h.clone())
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|r| r.text("key_id"))
                        .transpose()?;
                    key_ids.insert(h.clone(), id);
                }
            }
            let mut entity: BTreeMap<(u8, String), i128> = BTreeMap::new();
            let mut rollup: BTreeMap<(i64, &'static str, String, String), Totals> = BTreeMap::new();
            let key_id_of = |r: &SpendRow| -> Option<String> {
                r.key_hash
                    .as_ref()
                    .and_then(|h| key_ids.get(&h.0).cloned().flatten())
            };
            // Each row's key id, looked up once (bound in the insert, then
            // used for the rollups of the rows that were new).
            let row_key_ids: Vec<Option<String>> = rows.iter().map(key_id_of).collect();
            // The log rows, many per statement; the ids returned are the new ones.
            let mut new_ids: HashSet<String> = HashSet::with_capacity(rows.len());
            for range in insert_ranges(rows.len(), sqlite, many) {
                let (chunk, chunk_key_ids) = (&rows[range.clone()], &row_key_ids[range]);
                // Built from constants and placeholders only.
                let mut q = sqlx::query(sqlx::AssertSqlSafe(if sqlite {
                    insert_logs_sqlite_sql(chunk.len()).into()
                } else {
                    insert_logs_sql(chunk.len())
                }));
                for (r, key_id) in chunk.iter().zip(chunk_key_ids) {
                    q = q
                        .bind(r.id.clone())
                        .bind(r.request_id.clone())
                        .bind(r.call_type.clone())
                        .bind(r.key_display.clone())
                        .bind(key_id.clone())
                        .bind(r.team_id.clone())
                        .bind(r.user_id.clone())
                        .bind(r.end_user.clone())
                        .bind(r.model.clone())
                        .bind(r.model_group.clone())
                        .bind(r.model_id.clone())
                        .bind(r.provider.clone())
                        .bind(r.api_base.clone())
                        .bind(r.prompt_tokens)
                        .bind(r.completion_tokens)
                        .bind(r.prompt_tokens.saturating_add(r.completion_tokens))
                        .bind(r.spend.map(pico_column))
                        .bind(r.start_ms)
                        .bind(r.end_ms)
                        .bind(r.ttft_ms)
                        .bind(r.status)
                        .bind(r.http_status)
                        .bind(r.error_class.clone())
                        .bind(to_json_text(&r.tags))
                        .bind(r.cache_hit)
                        .bind(r.stream)
                        .bind(r.usage_estimated)
                        .bind(r.attempts);
                }
                if sqlite {
                    let added = q.execute(&mut *tx).await?.rows_affected();
                    if added == chunk.len() as u64 {
                        new_ids.extend(chunk.iter().map(|r| r.id.clone()));
                    } else if chunk.len() > 1 {
                        tx.rollback().await?;
                        return Ok(None);
                    }
                } else {
                    for row in q.fetch_all(&mut *tx).await? {
                        new_ids.insert(row.text("id")?);
                    }
                }
            }
            let mut written = 0usize;
            for (r, key_id) in rows.iter().zip(&row_key_ids) {
                // Written before (a retried batch): already counted.
                if !new_ids.remove(&r.id) {
                    continue;
                }
                let spend = r.spend.map(pico_column);
                written += 1;
                let pico = i128::from(spend.unwrap_or(0));
                let day = day_of(r.start_ms.div_euclid(1000));
                let mut scopes: Vec<(&'static str, String)> = vec![("global", String::new())];
                if let Some(k) = key_id {
                    *entity.entry((0, k.clone())).or_default() += pico;
                    scopes.push(("key", k.clone()));
                }
                if let Some(t) = &r.team_id {
                    *entity.entry((1, t.clone())).or_default() += pico;
                    scopes.push(("team", t.clone()));
                }
                if let Some(u) = &r.user_id {
                    *entity.entry((2, u.clone())).or_default() += pico;
                    scopes.push(("user", u.clone()));
                }
                if let Some(e) = &r.end_user {
                    *entity.entry((3, e.clone())).or_default() += pico;
                    scopes.push(("end_user", e.clone()));
                }
                for (scope, id) in scopes {
                    rollup
                        .entry((day, scope, id, r.model_group.clone()))
                        .or_default()
                        .add(r);
                }
            }
            for ((kind, id), pico) in &entity {
                let sql = match kind {
                    0 => ADD_SPEND_KEY,
                    1 => ADD_SPEND_TEAM,
                    2 => ADD_SPEND_USER,
                    _ => ADD_SPEND_END_USER,
                };
                let q = sqlx::query(sql)
                    .bind((*pico).clamp(0, i128::from(i64::MAX)) as i64)
                    .bind(id.clone());
                let q = if *kind == 3 { q.bind(now) } else { q };
                q.execute(&mut *tx).await?;
            }
            for ((day, scope, id, model), t) in &rollup {
                sqlx::query(ADD_ROLLUP)
                    .bind(*day)
                    .bind(*scope)
                    .bind(id.clone())
                    .bind(model.clone())
                    .bind(t.spend.clamp(0, i128::from(i64::MAX)) as i64)
                    .bind(t.prompt)
                    .bind(t.completion)
                    .bind(t.requests)
                    .bind(t.successes)
                    .bind(t.failures)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Some(written))
        })
    }

    /// What a scope spent from `from` (Unix seconds) on, optionally on one
    /// model group: whole days from the rollups, the partial first day from
    /// the logs. `id` is the key's stable id for [`ScopeKind::Key`].
    pub(crate) async fn spent_from(
        &self,
        kind: ScopeKind,
        id: &str,
        model: Option<&str>,
        from: i64,
    ) -> Result<Usd, Error> {
        let from = from.max(0);
        let first_full_day = (from + 86_399).div_euclid(86_400);
        let (scope, partial) = partial_sum_sql(kind);
        let scope_id = if kind == ScopeKind::Global { "" } else { id };
        let model = model.map(str::to_owned);
        on_pool!(self, |p| {
            let r = sqlx::query(ROLLUP_SUM)
                .bind(scope)
                .bind(scope_id)
                .bind(first_full_day)
                .bind(model.clone())
                .fetch_one(p)
                .await?;
            let mut total = sum_parts(r.int("hi")?, r.int("lo")?);
            let end_ms = first_full_day.saturating_mul(86_400_000);
            let from_ms = from.saturating_mul(1000);
            if from_ms < end_ms {
                let q = sqlx::query(partial)
                    .bind(from_ms)
                    .bind(end_ms)
                    .bind(model.clone());
                let q = if kind == ScopeKind::Global {
                    q
                } else {
                    q.bind(scope_id)
                };
                let r = q.fetch_one(p).await?;
                total += sum_parts(r.int("hi")?, r.int("lo")?);
            }
            Ok::<_, sqlx::Error>(total)
        })
        .map_err(db_err)
    }

    /// How the database would run the log part of a budget-window sum for a
    /// scope of `kind` (SQLite's `EXPLAIN QUERY PLAN` details, or
    /// PostgreSQL's `EXPLAIN` lines with sequential scans disabled, so that
    /// any usable index shows). For tests and diagnosis: the sum must be
    /// served by the scope's index, not by a scan of every log row.
    #[doc(hidden)]
    pub async fn budget_window_plan(&self, kind: ScopeKind) -> Result<String, Error> {
        let (_, partial) = partial_sum_sql(kind);
        let sql = format!(
            "EXPLAIN {}{partial}",
            match self.backend() {
                super::Backend::Sqlite => "QUERY PLAN ",
                super::Backend::Postgres => "",
            }
        );
        let lines = on_pool!(self, |p| {
            // In a transaction rolled back at the end: `SET LOCAL` ends with
            // it, so the pooled connection never keeps the setting.
            let mut tx = p.begin().await?;
            if self.backend() == super::Backend::Postgres {
                sqlx::query("SET LOCAL enable_seqscan = off")
                    .execute(&mut *tx)
                    .await?;
            }
            let q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(0_i64)
                .bind(86_400_000_i64)
                .bind(None::<String>);
            let q = if kind == ScopeKind::Global {
                q
            } else {
                q.bind("some-scope-id")
            };
            let rows = q.fetch_all(&mut *tx).await?;
            tx.rollback().await?;
            rows.iter()
                .map(|r| {
                    use sqlx::Row;
                    r.try_get::<String, _>(r.columns().len() - 1)
                })
                .collect::<Result<Vec<String>, sqlx::Error>>()
        })
        .map_err(db_err)?;
        Ok(lines.join("\n"))
    }

    /// Spend-log rows matching `filter`, newest first, at most `limit`.
    pub async fn spend_logs(
        &self,
        filter: &SpendFilter,
        limit: i64,
    ) -> Result<Vec<SpendLog>, Error> {
        let (sql, values) = select_logs_sql(filter);
        on_pool!(self, |p| {
            // Built from constants and numbered placeholders only.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(filter.start_ms.unwrap_or(0))
                .bind(filter.end_ms.unwrap_or(i64::MAX));
            for v in &values {
                q = q.bind(*v);
            }
            let rows = q.bind(limit).fetch_all(p).await?;
            rows.iter()
                .map(SpendLog::from_row)
                .collect::<Result<Vec<_>, sqlx::Error>>()
        })
        .map_err(db_err)
    }

    /// How many spend-log rows there are.
    pub async fn spend_log_count(&self) -> Result<i64, Error> {
        on_pool!(self, |p| {
            let r = sqlx::query("SELECT COUNT(*) AS n FROM tollgate_spend_logs")
                .fetch_one(p)
                .await?;
            r.int("n")
        })
        .map_err(db_err)
    }

    /// Daily rollups of `scope` from `from_day` on, optionally of one scope id.
    pub(crate) async fn rollups(
        &self,
        scope: &'static str,
        scope_id: Option<&str>,
        from_day: i64,
        to_day: i64,
    ) -> Result<Vec<ReportRow>, Error> {
        on_pool!(self, |p| {
            let rows = sqlx::query(concat!(
                "SELECT day, scope_id, model, ",
                money_sum!(),
                ", CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
                 CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
                 CAST(SUM(requests) AS BIGINT) AS requests FROM tollgate_daily_spend \
                 WHERE scope = $1 AND ($2 IS NULL OR scope_id = $2) AND day >= $3 AND day <= $4 \
                 GROUP BY day, scope_id, model ORDER BY day, scope_id, model"
            ))
            .bind(scope)
            .bind(scope_id.map(str::to_owned))
            .bind(from_day)
            .bind(to_day)
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(ReportRow {
                        day: r.int("day")?,
                        scope_id: r.text("scope_id")?,
                        model: r.text("model")?,
                        spend: sum_parts(r.int("hi")?, r.int("lo")?),
                        prompt_tokens: r.int("prompt_tokens")?,
                        completion_tokens: r.int("completion_tokens")?,
                        requests: r.int("requests")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
        })
        .map_err(db_err)
    }

    /// Daily spend per (key display, user, model group) from the logs, for
    /// `/spend/logs?start_date&end_date`.
    pub(crate) async fn daily_log_spend(
        &self,
        filter: &SpendFilter,
    ) -> Result<Vec<(i64, String, String, String, Usd)>, Error> {
        let (sql, values) = daily_log_spend_sql(filter);
        on_pool!(self, |p| {
            // Built from constants and numbered placeholders only.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(filter.start_ms.unwrap_or(0))
                .bind(filter.end_ms.unwrap_or(i64::MAX));
            for v in &values {
                q = q.bind(*v);
            }
            let rows = q.fetch_all(p).await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.int("day")?,
                        r.text("api_key")?,
                        r.text("user_id")?,
                        r.text("model_group")?,
                        sum_parts(r.int("hi")?, r.int("lo")?),
                    ))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
        })
        .map_err(db_err)
    }

    /// The display name and alias of the key with stable id `key_id`.
    pub(crate) async fn key_names(
        &self,
        key_id: &str,
    ) -> Result<Option<(String, String, Option<String>)>, Error> {
        on_pool!(self, |p| {
            let r = sqlx::query(
                "SELECT token, key_name, key_alias FROM tollgate_keys WHERE key_id = $1",
            )
            .bind(key_id)
            .fetch_optional(p)
            .await?;
            r.map(|r| {
                Ok((
                    r.text("token")?,
                    r.text("key_name")?,
                    r.opt_text("key_alias")?,
                ))
            })
            .transpose()
        })
        .map_err(db_err)
    }
}

/// Today (UTC days since the epoch).
pub(crate) fn today() -> i64 {
    day_of(super::time::now_secs())
}

/// A report's day as `YYYY-MM-DD`.
pub(crate) fn day_text(day: i64) -> String {
    date_of_day(day)
}

/// Dollars for JSON, exact sums rounded once.
pub(crate) fn usd_json(u: Usd) -> f64 {
    dollars(u.pico())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's plan of a spend-log query built for `filter`.
    async fn plan(store: &Store, sql: &str, values: &[&str], limit: bool) -> String {
        super::super::on_pool!(store, |p| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .bind(0_i64)
                .bind(i64::MAX);
            for v in values {
                q = q.bind(*v);
            }
            if limit {
                q = q.bind(100_i64);
            }
            let rows = q.fetch_all(p).await.unwrap();
            rows.iter()
                .map(|r| {
                    use sqlx::Row;
                    r.get::<String, _>(3)
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    // A lookup by request id, key, team, user or end user reads that
    // column's index, not every row in the time range.
    #[tokio::test]
    async fn log_queries_use_the_index_of_their_filter() {
        let dir = std::env::temp_dir().join(format!("tollgate-plan-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("t.db").display());
        let store = Store::open(&super::super::StoreOptions::new(url))
            .await
            .unwrap();
        let one = |col: &str| {
            let mut f = SpendFilter::default();
            let v = Some("x".to_owned());
            match col {
                "key_id" => f.key_id = v,
                "user_id" => f.user_id = v,
                "team_id" => f.team_id = v,
                "end_user" => f.end_user = v,
                _ => f.request_id = v,
            }
            f
        };
        for (col, index) in [
            ("request_id", "tollgate_spend_logs_request"),
            ("key_id", "tollgate_spend_logs_key"),
            ("team_id", "tollgate_spend_logs_team"),
            ("user_id", "tollgate_spend_logs_user"),
            ("end_user", "tollgate_spend_logs_end_user"),
        ] {
            let filter = one(col);
            let (sql, values) = select_logs_sql(&filter);
            let p = plan(&store, &sql, &values, true).await;
            assert!(p.contains(index), "/spend/logs by {col}: {p}");
            if filter
                .daily_filters()
                .iter()
                .any(|&(c, v)| c == col && v.is_some())
            {
                let (sql, values) = daily_log_spend_sql(&filter);
                let p = plan(&store, &sql, &values, false).await;
                assert!(p.contains(index), "daily spend by {col}: {p}");
            }
        }
        let none = SpendFilter::default();
        let (sql, values) = select_logs_sql(&none);
        assert!(values.is_empty());
        let p = plan(&store, &sql, &values, true).await;
        assert!(p.contains("tollgate_spend_logs_start"), "{p}");
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn where_clauses_number_their_placeholders_in_order() {
        let f = SpendFilter {
            key_id: Some("k".into()),
            request_id: Some("r".into()),
            ..SpendFilter::default()
        };
        let (sql, values) = select_logs_sql(&f);
        assert!(sql.ends_with(
            " WHERE start_ms >= $1 AND start_ms < $2 AND key_id = $3 AND request_id = $4 \
             ORDER BY start_ms DESC, id DESC LIMIT $5"
        ));
        assert_eq!(values, ["k", "r"]);
        let with_team = SpendFilter {
            team_id: Some("t".into()),
            ..f
        };
        let (sql, values) = daily_log_spend_sql(&with_team);
        assert!(sql.contains(
            " WHERE start_ms >= $1 AND start_ms < $2 AND key_id = $3 AND request_id = $4 GROUP BY"
        ));
        assert_eq!(
            values,
            ["k", "r"],
            "the daily report does not filter by team"
        );
    }

    #[test]
    fn insert_ranges_cover_each_row_once() {
        let r = |len, sqlite, many| insert_ranges(len, sqlite, many);
        assert!(r(0, true, true).is_empty());
        assert_eq!(r(3, true, true), vec![0..1, 1..2, 2..3]);
        assert_eq!(r(52, true, true), vec![0..25, 25..50, 50..51, 51..52]);
        assert_eq!(r(3, true, false), vec![0..1, 1..2, 2..3]);
        assert_eq!(r(130, false, true), vec![0..64, 64..128, 128..130]);
        assert_eq!(r(5, false, false), vec![0..5]);
        for len in 0..200 {
            for (sqlite, many) in [(true, true), (true, false), (false, true)] {
                let ranges = r(len, sqlite, many);
                let rows: Vec<usize> = ranges.iter().flat_map(|x| x.clone()).collect();
                assert_eq!(rows, (0..len).collect::<Vec<_>>());
                if sqlite {
                    assert!(ranges.iter().all(|x| x.len() == 1 || x.len() == 25));
                }
            }
        }
    }

    #[test]
    fn clean_bounds_and_strips() {
        assert_eq!(clean("a\u{0}b\nc", 10), "abc");
        assert_eq!(clean("ééé", 5), "éé");
        assert_eq!(clean(&"x".repeat(10_000), 256).len(), 256);
        assert_eq!(sum_parts(2, 5).pico(), 2_000_005);
    }
}
