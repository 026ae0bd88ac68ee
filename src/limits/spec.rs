//! What a key, team, user or end user may spend and how fast it may call.

use crate::error::Error;
use crate::pricing::Usd;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The limits of one scope (a key, team, internal user, end user, or the
/// whole gateway). `None` means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Limits {
    /// Hard budget: requests whose worst case does not fit are refused.
    pub max_budget: Option<Usd>,
    /// Soft budget: crossing it raises an alert, nothing is refused.
    pub soft_budget: Option<Usd>,
    /// How often the budget starts over (`None`: never).
    pub budget_window: Option<BudgetWindow>,
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per minute.
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    pub max_parallel: Option<u32>,
    /// Per-model budgets (by model group name).
    pub model_budgets: BTreeMap<String, ModelBudget>,
    /// Per-model requests per minute.
    pub model_rpm: BTreeMap<String, u64>,
    /// Per-model tokens per minute.
    pub model_tpm: BTreeMap<String, u64>,
}

impl Limits {
    /// No limits at all.
    pub fn none() -> Self {
        Limits::default()
    }

    /// Whether nothing is limited (the layers skip such scopes for free).
    pub fn is_unlimited(&self) -> bool {
        self.max_budget.is_none()
            && self.soft_budget.is_none()
            && self.rpm.is_none()
            && self.tpm.is_none()
            && self.max_parallel.is_none()
            && self.model_budgets.is_empty()
            && self.model_rpm.is_empty()
            && self.model_tpm.is_empty()
    }

    /// Sets the hard budget.
    pub fn with_max_budget(mut self, usd: Usd) -> Self {
        self.max_budget = Some(usd);
        self
    }

    /// Sets the soft budget.
    pub fn with_soft_budget(mut self, usd: Usd) -> Self {
        self.soft_budget = Some(usd);
        self
    }

    /// Sets the budget window.
    pub fn with_budget_window(mut self, window: BudgetWindow) -> Self {
        self.budget_window = Some(window);
        self
    }

    /// Sets requests per minute.
    pub fn with_rpm(mut self, rpm: u64) -> Self {
        self.rpm = Some(rpm);
        self
    }

    /// Sets tokens per minute.
    pub fn with_tpm(mut self, tpm: u64) -> Self {
        self.tpm = Some(tpm);
        self
    }

    /// Sets the parallel-request cap.
    pub fn with_max_parallel(mut self, n: u32) -> Self {
        self.max_parallel = Some(n);
        self
    }

    /// Adds a per-model budget.
    pub fn with_model_budget(mut self, model: impl Into<String>, budget: ModelBudget) -> Self {
        self.model_budgets.insert(model.into(), budget);
        self
    }

    /// Adds a per-model rpm limit.
    pub fn with_model_rpm(mut self, model: impl Into<String>, rpm: u64) -> Self {
        self.model_rpm.insert(model.into(), rpm);
        self
    }

    /// Adds a per-model tpm limit.
    pub fn with_model_tpm(mut self, model: impl Into<String>, tpm: u64) -> Self {
        self.model_tpm.insert(model.into(), tpm);
        self
    }
}

/// A budget for one model within a scope (LiteLLM's `model_max_budget`
/// entries: `{"gpt-4o": {"budget_limit": 10, "time_period": "1d"}}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelBudget {
    /// The limit.
    pub max_budget: Usd,
    /// Its window (`None`: never resets).
    pub window: Option<BudgetWindow>,
}

/// How often a budget starts over: a fixed number of seconds or of calendar
/// months. Windows are anchored at the scope's budget start (its creation or
/// its last explicit reset), so a `1d` budget created at 09:30 resets every
/// day at 09:30 UTC, exactly.
///
/// Parses LiteLLM's forms: `30s`, `15m`, `1h`, `1d`, `7d`, `2w`, `1mo`, and
/// the aliases `daily`, `weekly`, `monthly`, `yearly`.
///
/// ```
/// use tollgate::limits::BudgetWindow;
/// assert_eq!("30s".parse::<BudgetWindow>().unwrap(), BudgetWindow::Seconds(30));
/// assert_eq!("daily".parse::<BudgetWindow>().unwrap(), BudgetWindow::Seconds(86_400));
/// assert_eq!("1mo".parse::<BudgetWindow>().unwrap(), BudgetWindow::Months(1));
/// assert!("1x".parse::<BudgetWindow>().is_err());
/// // Windows anchored at 2026-01-31 00:00 UTC, monthly: the next starts on Feb 28.
/// let anchor = 1_769_817_600; // 2026-01-31T00:00:00Z
/// let w = BudgetWindow::Months(1).window_at(anchor, anchor + 86_400);
/// assert_eq!(w.start, anchor);
/// assert_eq!(w.end, 1_772_236_800); // 2026-02-28T00:00:00Z
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BudgetWindow {
    /// A fixed length in seconds (at least 1).
    Seconds(u64),
    /// A number of calendar months (at least 1).
    Months(u32),
}

/// One budget window: `[start, end)` in Unix seconds, with its sequence number
/// (0 for the window that starts at the anchor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// Sequence number since the anchor.
    pub index: u64,
    /// First second of the window.
    pub start: u64,
    /// First second after it.
    pub end: u64,
}

impl BudgetWindow {
    /// The window containing `now` for a budget anchored at `anchor` (both
    /// Unix seconds). A `now` before the anchor falls in window 0.
    pub fn window_at(self, anchor: u64, now: u64) -> Window {
        let now = now.max(anchor);
        match self {
            BudgetWindow::Seconds(len) => {
                let len = len.max(1);
                let index = (now - anchor) / len;
                let start = anchor.saturating_add(index.saturating_mul(len));
                Window {
                    index,
                    start,
                    end: start.saturating_add(len),
                }
            }
            BudgetWindow::Months(n) => {
                let n = u64::from(n.max(1));
                let (ay, am, _) = civil_from_unix(anchor);
                let (ny, nm, _) = civil_from_unix(now);
                let months_between = ((ny - ay) * 12 + (nm as i64 - am as i64)).max(0) as u64;
                let mut index = months_between / n;
                // The boundary of `index` may still lie after `now` (day or
                // time of day not reached yet this month).
                while index > 0 && add_months(anchor, index * n) > now {
                    index -= 1;
                }
                while add_months(anchor, (index + 1) * n) <= now {
                    index += 1;
                }
                Window {
                    index,
                    start: add_months(anchor, index * n),
                    end: add_months(anchor, (index + 1) * n),
                }
            }
        }
    }

    /// The window's nominal length in seconds (months count as 30 days);
    /// for TTLs and display.
    pub fn approx_secs(self) -> u64 {
        match self {
            BudgetWindow::Seconds(s) => s,
            BudgetWindow::Months(m) => u64::from(m) * 30 * 86_400,
        }
    }
}

impl FromStr for BudgetWindow {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let t = s.trim();
        let bad = || {
            Error::bad_request(format!(
                "invalid budget_duration {t:?}: use a number with s, m, h, d, w or mo (e.g. 30s, 1h, 1d, 1mo), or daily, weekly, monthly"
            ))
            .with_param("budget_duration")
        };
        let alias = match t.to_ascii_lowercase().as_str() {
            "daily" => Some(BudgetWindow::Seconds(86_400)),
            "weekly" => Some(BudgetWindow::Seconds(7 * 86_400)),
            "monthly" => Some(BudgetWindow::Months(1)),
            "yearly" | "annually" => Some(BudgetWindow::Months(12)),
            _ => None,
        };
        if let Some(a) = alias {
            return Ok(a);
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        let secs = |mult: u64| {
            n.checked_mul(mult)
                .map(BudgetWindow::Seconds)
                .ok_or_else(bad)
        };
        match unit.trim() {
            "s" => secs(1),
            "m" | "min" => secs(60),
            "h" => secs(3_600),
            "d" => secs(86_400),
            "w" => secs(7 * 86_400),
            "mo" => u32::try_from(n)
                .ok()
                .filter(|m| *m <= 1200)
                .map(BudgetWindow::Months)
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for BudgetWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BudgetWindow::Seconds(s) if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            BudgetWindow::Seconds(s) if s % 3_600 == 0 => write!(f, "{}h", s / 3_600),
            BudgetWindow::Seconds(s) if s % 60 == 0 => write!(f, "{}m", s / 60),
            BudgetWindow::Seconds(s) => write!(f, "{s}s"),
            BudgetWindow::Months(m) => write!(f, "{m}mo"),
        }
    }
}

/// Unix seconds → (year, month 1..=12, seconds into the month).
fn civil_from_unix(t: u64) -> (i64, u32, u64) {
    let days = (t / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    (y, m, (u64::from(d) - 1) * 86_400 + t % 86_400)
}

/// `t` plus `months` calendar months, the day clamped to the target month's
/// length (Jan 31 + 1 month = Feb 28/29), the time of day kept.
fn add_months(t: u64, months: u64) -> u64 {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let (y, m, d) = civil_from_days(days);
    let total = y * 12 + i64::from(m - 1) + months as i64;
    let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
    let nd = d.min(days_in_month(ny, nm));
    let nd_days = days_from_civil(ny, nm, nd);
    (nd_days.max(0) as u64) * 86_400 + secs
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

// Howard Hinnant's public-domain civil calendar algorithms.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_31_2026: u64 = 1_769_817_600;

    #[test]
    fn parses_litellm_durations() {
        for (s, w) in [
            ("30s", BudgetWindow::Seconds(30)),
            ("15m", BudgetWindow::Seconds(900)),
            ("1h", BudgetWindow::Seconds(3_600)),
            ("1d", BudgetWindow::Seconds(86_400)),
            ("7d", BudgetWindow::Seconds(604_800)),
            ("2w", BudgetWindow::Seconds(1_209_600)),
            ("1mo", BudgetWindow::Months(1)),
            ("3mo", BudgetWindow::Months(3)),
            ("daily", BudgetWindow::Seconds(86_400)),
            ("Monthly", BudgetWindow::Months(1)),
        ] {
            assert_eq!(s.parse::<BudgetWindow>().unwrap(), w, "{s}");
        }
        for bad in [
            "",
            "0d",
            "d",
            "1x",
            "-1d",
            "1.5h",
            "99999999999999999999d",
            "1 mo x",
        ] {
            let e = bad.parse::<BudgetWindow>().unwrap_err();
            assert_eq!(e.param(), Some("budget_duration"), "{bad}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["30s", "15m", "1h", "1d", "1mo"] {
            assert_eq!(s.parse::<BudgetWindow>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn fixed_windows_are_exact() {
        let w = BudgetWindow::Seconds(30);
        assert_eq!(
            w.window_at(1000, 1000),
            Window {
                index: 0,
                start: 1000,
                end: 1030
            }
        );
        assert_eq!(w.window_at(1000, 1029).index, 0);
        assert_eq!(
            w.window_at(1000, 1030),
            Window {
                index: 1,
                start: 1030,
                end: 1060
            }
        );
        assert_eq!(w.window_at(1000, 999).index, 0);
    }

    #[test]
    fn calendar_conversions() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2026, 1, 31) * 86_400, JAN_31_2026 as i64);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        for d in -800_000..800_000i64 {
            if d % 997 == 0 {
                let (y, m, dd) = civil_from_days(d);
                assert_eq!(days_from_civil(y, m, dd), d);
            }
        }
    }

    #[test]
    fn monthly_windows_clamp_and_keep_the_time_of_day() {
        let anchor = JAN_31_2026 + 9 * 3_600 + 30 * 60; // Jan 31 09:30
        let m = BudgetWindow::Months(1);
        let feb28_0930 = days_from_civil(2026, 2, 28) as u64 * 86_400 + 34_200;
        let mar31_0930 = days_from_civil(2026, 3, 31) as u64 * 86_400 + 34_200;
        assert_eq!(m.window_at(anchor, anchor).end, feb28_0930);
        assert_eq!(m.window_at(anchor, feb28_0930 - 1).index, 0);
        assert_eq!(
            m.window_at(anchor, feb28_0930),
            Window {
                index: 1,
                start: feb28_0930,
                end: mar31_0930
            }
        );
        // A year later, leap years included.
        let later = m.window_at(anchor, days_from_civil(2028, 3, 1) as u64 * 86_400);
        assert_eq!(
            later.start,
            days_from_civil(2028, 2, 29) as u64 * 86_400 + 34_200
        );
        assert_eq!(later.index, 25);
        // Quarterly.
        let q = BudgetWindow::Months(3).window_at(anchor, mar31_0930);
        assert_eq!(q.index, 0);
        assert_eq!(q.end, days_from_civil(2026, 4, 30) as u64 * 86_400 + 34_200);
    }
}
