//! Strict reading of management requests: every field is checked for type,
//! size and characters before anything touches the database, and errors name
//! the field without echoing its value.

use super::rows::ModelBudgetSpec;
use crate::error::Error;
use crate::limits::BudgetWindow;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Longest id, alias, model name, tag or email.
pub(crate) const MAX_TEXT: usize = 256;
/// Most entries in a list field (`models`, `tags`, `keys`, …).
pub(crate) const MAX_LIST: usize = 256;
/// Largest JSON object field (`metadata`, `aliases`, …), serialized.
pub(crate) const MAX_OBJECT: usize = 8 * 1024;
/// Largest budget, in dollars.
pub(crate) const MAX_MONEY: f64 = 1e9;
/// Largest rate limit.
pub(crate) const MAX_COUNT: i64 = 1_000_000_000_000_000;

/// Characters refused in ids and short texts besides control characters:
/// quotes, statement separators and markup. Queries are parameterised, so
/// these are harmless to the database; refusing them keeps ids safe to show
/// in logs, UIs and shells.
const FORBIDDEN: &[char] = &['\'', '"', '`', ';', '\\', '<', '>'];

fn invalid(name: &str, what: &str) -> Error {
    Error::bad_request(format!("`{name}` {what}")).with_param(name.to_owned())
}

/// Checks a short text (id, alias, model, tag): 1–256 bytes, no control
/// characters, no quotes, `;`, `\`, `<` or `>`.
pub(crate) fn check_text(name: &str, s: &str) -> Result<(), Error> {
    if s.is_empty() {
        return Err(invalid(name, "must not be empty"));
    }
    if s.len() > MAX_TEXT {
        return Err(invalid(name, "is too long (at most 256 bytes)"));
    }
    if s.chars().any(|c| c.is_control() || FORBIDDEN.contains(&c)) {
        return Err(invalid(
            name,
            "contains a character that is not allowed (control characters, quotes, `;`, `\\`, `<`, `>`)",
        ));
    }
    Ok(())
}

/// A request's fields: the JSON body, or the query string (values as text).
#[derive(Debug, Default)]
pub(crate) struct Fields(pub(crate) Map<String, Value>);

impl Fields {
    /// A JSON object body; an empty body is an empty object.
    pub(crate) fn from_json(bytes: &[u8]) -> Result<Fields, Error> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Fields::default());
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => Ok(Fields(m)),
            Ok(_) => Err(Error::bad_request("the request body must be a JSON object")),
            Err(_) => Err(Error::bad_request("the request body is not valid JSON")),
        }
    }

    /// `a=1&b=x%20y` (percent-decoded, `+` as space). Repeated names keep the first.
    pub(crate) fn from_query(query: Option<&str>) -> Result<Fields, Error> {
        let mut m = Map::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(k).ok_or_else(|| Error::bad_request("the query string is not valid"))?;
            let v = decode(v).ok_or_else(|| Error::bad_request("the query string is not valid"))?;
            m.entry(k).or_insert(Value::String(v));
        }
        Ok(Fields(m))
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// Whether the field is present and not null.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A short text (see [`check_text`]).
    pub(crate) fn text(&self, name: &str) -> Result<Option<String>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => {
                check_text(name, s)?;
                Ok(Some(s.clone()))
            }
            Some(_) => Err(invalid(name, "must be a string")),
        }
    }

    /// A required short text.
    pub(crate) fn require_text(&self, name: &str) -> Result<String, Error> {
        self.text(name)?.ok_or_else(|| invalid(name, "is required"))
    }

    /// A list of short texts (a single string counts as a list of one).
    pub(crate) fn list(&self, name: &str) -> Result<Option<Vec<String>>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => {
                check_text(name, s)?;
                Ok(Some(vec![s.clone()]))
            }
            Some(Value::Array(items)) => {
                if items.len() > MAX_LIST {
                    return Err(invalid(name, "has too many entries (at most 256)"));
                }
                let mut out: Vec<String> = Vec::with_capacity(items.len());
                for item in items {
                    let Value::String(s) = item else {
                        return Err(invalid(name, "must be a list of strings"));
                    };
                    check_text(name, s)?;
                    if !out.contains(s) {
                        out.push(s.clone());
                    }
                }
                Ok(Some(out))
            }
            Some(_) => Err(invalid(name, "must be a list of strings")),
        }
    }

    /// An amount of dollars: a number or a numeric string, 0 to 10⁹.
    pub(crate) fn money(&self, name: &str) -> Result<Option<f64>, Error> {
        let v = match self.get(name) {
            None => return Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) if s.len() <= 64 => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match v {
            Some(x) if x.is_finite() && (0.0..=MAX_MONEY).contains(&x) => Ok(Some(x)),
            _ => Err(invalid(
                name,
                "must be a number of dollars between 0 and 1000000000",
            )),
        }
    }

    /// A non-negative whole number (rpm, tpm, parallel requests, pages).
    pub(crate) fn count(&self, name: &str) -> Result<Option<i64>, Error> {
        let v = match self.get(name) {
            None => return Ok(None),
            Some(Value::Number(n)) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e18)
                    .map(|f| f as i64)
            }),
            Some(Value::String(s)) if s.len() <= 24 => s.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        match v {
            Some(n) if (0..=MAX_COUNT).contains(&n) => Ok(Some(n)),
            _ => Err(invalid(name, "must be a non-negative whole number")),
        }
    }

    /// `true` / `false` (also the strings `"true"` / `"false"` from a query).
    pub(crate) fn boolean(&self, name: &str) -> Result<Option<bool>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(invalid(name, "must be true or false")),
        }
    }

    /// A JSON object of at most 8 KiB (`metadata`, `aliases`, `config`).
    pub(crate) fn object(&self, name: &str) -> Result<Option<Map<String, Value>>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(m)) => {
                let size = serde_json::to_vec(m).map_or(usize::MAX, |v| v.len());
                if size > MAX_OBJECT {
                    return Err(invalid(name, "is too large (at most 8 KiB of JSON)"));
                }
                if contains_nul(&Value::Object(m.clone())) {
                    return Err(invalid(name, "must not contain NUL characters"));
                }
                Ok(Some(m.clone()))
            }
            Some(_) => Err(invalid(name, "must be a JSON object")),
        }
    }

    /// A budget window (`budget_duration`): `30s`, `1h`, `1d`, `1mo`, `daily`, …
    /// Returned in its canonical form.
    pub(crate) fn window(&self, name: &str) -> Result<Option<String>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.len() <= 32 => s
                .parse::<BudgetWindow>()
                .map(|w| Some(w.to_string()))
                .map_err(|_| {
                    invalid(
                        name,
                        "must be a duration such as 30s, 1h, 1d, 7d, 1mo, daily or monthly",
                    )
                }),
            Some(_) => Err(invalid(
                name,
                "must be a duration such as 30s, 1h, 1d, 7d, 1mo, daily or monthly",
            )),
        }
    }

    /// A key lifetime (`duration`): `Some(None)` means "no expiry".
    pub(crate) fn lifetime(&self, name: &str) -> Result<Option<Option<BudgetWindow>>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.len() <= 32 => super::time::parse_lifetime(s).map(Some),
            Some(_) => Err(invalid(
                name,
                "must be a duration such as 30m, 1h, 30d or 1mo",
            )),
        }
    }

    /// `{"model": n}` (`model_rpm_limit`, `model_tpm_limit`).
    pub(crate) fn count_map(&self, name: &str) -> Result<Option<BTreeMap<String, i64>>, Error> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let Value::Object(m) = v else {
            return Err(invalid(name, "must be an object of model → number"));
        };
        if m.len() > MAX_LIST {
            return Err(invalid(name, "has too many entries (at most 256)"));
        }
        let mut out = BTreeMap::new();
        for (model, n) in m {
            check_text(name, model)?;
            let n = Fields(Map::from_iter([(name.to_owned(), n.clone())]))
                .count(name)?
                .ok_or_else(|| invalid(name, "must be an object of model → number"))?;
            out.insert(model.clone(), n);
        }
        Ok(Some(out))
    }

    /// LiteLLM's `model_max_budget`: `{"gpt-4o": 10}` or
    /// `{"gpt-4o": {"budget_limit": 10, "time_period": "1d"}}` (also
    /// `max_budget` / `budget_duration` as the inner names).
    pub(crate) fn model_budgets(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, ModelBudgetSpec>>, Error> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let Value::Object(m) = v else {
            return Err(invalid(name, "must be an object of model → budget"));
        };
        if m.len() > MAX_LIST {
            return Err(invalid(name, "has too many entries (at most 256)"));
        }
        let mut out = BTreeMap::new();
        for (model, spec) in m {
            check_text(name, model)?;
            let inner = match spec {
                Value::Object(o) => Fields(o.clone()),
                other => Fields(Map::from_iter([("budget_limit".to_owned(), other.clone())])),
            };
            let limit = match inner.money("budget_limit") {
                Ok(Some(x)) => Some(x),
                Ok(None) => inner.money("max_budget").map_err(|_| {
                    invalid(name, "entries need a `budget_limit` number of dollars")
                })?,
                Err(_) => {
                    return Err(invalid(
                        name,
                        "entries need a `budget_limit` number of dollars",
                    ));
                }
            }
            .ok_or_else(|| invalid(name, "entries need a `budget_limit` number of dollars"))?;
            let period = match inner.window("time_period") {
                Ok(Some(p)) => Some(p),
                Ok(None) => inner
                    .window("budget_duration")
                    .map_err(|_| invalid(name, "has an invalid `time_period`"))?,
                Err(_) => return Err(invalid(name, "has an invalid `time_period`")),
            };
            out.insert(
                model.clone(),
                ModelBudgetSpec {
                    budget_limit: limit,
                    time_period: period,
                },
            );
        }
        Ok(Some(out))
    }
}

fn contains_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(contains_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(v: Value) -> Fields {
        match v {
            Value::Object(m) => Fields(m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn texts() {
        let x =
            f(json!({"a": "team-1", "b": "x'; DROP TABLE t; --", "c": "a\u{0}b", "d": 5, "e": ""}));
        assert_eq!(x.text("a").unwrap().as_deref(), Some("team-1"));
        assert!(x.text("b").is_err());
        assert!(x.text("c").is_err());
        assert!(x.text("d").is_err());
        assert!(x.text("e").is_err());
        assert_eq!(x.text("missing").unwrap(), None);
        let long = f(json!({"a": "x".repeat(10_000)}));
        let e = long.text("a").unwrap_err();
        assert_eq!(e.param(), Some("a"));
        assert!(!e.message().contains("xxxx"));
    }

    #[test]
    fn numbers() {
        let x = f(json!({"a": 1.5, "b": "2", "c": -1, "d": "NaN", "e": 1e20, "f": 3, "g": "x"}));
        assert_eq!(x.money("a").unwrap(), Some(1.5));
        assert_eq!(x.money("b").unwrap(), Some(2.0));
        assert!(x.money("c").is_err());
        assert!(x.money("d").is_err());
        assert!(x.money("e").is_err());
        assert_eq!(x.count("f").unwrap(), Some(3));
        assert!(x.count("a").is_err());
        assert!(x.count("g").is_err());
    }

    #[test]
    fn model_budgets_both_forms() {
        let x =
            f(json!({"m": {"gpt-4o": 10, "mini": {"budget_limit": "0.5", "time_period": "1d"}}}));
        let b = x.model_budgets("m").unwrap().unwrap();
        assert_eq!(b["gpt-4o"].budget_limit, 10.0);
        assert_eq!(b["gpt-4o"].time_period, None);
        assert_eq!(b["mini"].time_period.as_deref(), Some("1d"));
        assert!(
            f(json!({"m": {"x": {"time_period": "1d"}}}))
                .model_budgets("m")
                .is_err()
        );
        assert!(
            f(json!({"m": {"x": {"budget_limit": 1, "time_period": "1y"}}}))
                .model_budgets("m")
                .is_err()
        );
    }

    #[test]
    fn queries() {
        let q = Fields::from_query(Some("key=sk-a%2Bb&page=2&x=a+b&key=other")).unwrap();
        assert_eq!(q.text("key").unwrap().as_deref(), Some("sk-a+b"));
        assert_eq!(q.count("page").unwrap(), Some(2));
        assert_eq!(q.text("x").unwrap().as_deref(), Some("a b"));
        assert!(Fields::from_query(Some("a=%ff")).is_err());
        assert!(Fields::from_query(Some("a=%4")).is_err());
        assert!(Fields::from_json(b"[1]").is_err());
        assert!(Fields::from_json(b"").unwrap().0.is_empty());
    }

    #[test]
    fn objects_are_bounded() {
        let x =
            f(json!({"m": {"k": "v".repeat(10_000)}, "n": {"k": "a\u{0}"}, "o": {"ok": [1, 2]}}));
        assert!(x.object("m").is_err());
        assert!(x.object("n").is_err());
        assert!(x.object("o").unwrap().is_some());
    }
}
