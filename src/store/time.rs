//! Unix times in and out of the management API (UTC, ISO 8601).

use crate::error::Error;
use crate::limits::BudgetWindow;
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix seconds.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The UTC day (days since 1970-01-01) of a Unix second.
pub(crate) fn day_of(secs: i64) -> i64 {
    secs.div_euclid(86_400)
}

/// `2024-01-18T23:52:09+00:00`
pub(crate) fn iso(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        t / 3600,
        (t / 60) % 60,
        t % 60
    )
}

/// `2024-01-18T23:52:09.125000+00:00`
pub(crate) fn iso_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let base = iso(secs);
    let (head, _) = base.split_at(19);
    format!("{head}.{frac:03}000+00:00")
}

/// `2024-01-18`
pub(crate) fn date_of_day(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS[.fff][Z|+00:00]`
/// (UTC) into Unix seconds.
pub(crate) fn parse_datetime(s: &str, param: &'static str) -> Result<i64, Error> {
    let bad = || {
        Error::bad_request(format!(
            "`{param}` must be a date (YYYY-MM-DD) or a UTC date-time (YYYY-MM-DDTHH:MM:SS)"
        ))
        .with_param(param)
    };
    let s = s.trim();
    if s.len() < 10 || !s.is_char_boundary(10) {
        return Err(bad());
    }
    let (date, rest) = s.split_at(10);
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let num = |t: &str, len: usize| -> Result<i64, Error> {
        if t.len() == len && t.bytes().all(|b| b.is_ascii_digit()) {
            t.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (y, m, d) = (num(y, 4)?, num(m, 2)?, num(d, 2)?);
    if !(1..=12).contains(&m) || d < 1 || d > i64::from(days_in_month(y, m as u32)) {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, m as u32, d as u32) * 86_400;
    if rest.is_empty() {
        return Ok(secs);
    }
    let rest = rest
        .strip_prefix('T')
        .or_else(|| rest.strip_prefix(' '))
        .ok_or_else(bad)?;
    if rest.len() < 8 || !rest.is_char_boundary(8) {
        return Err(bad());
    }
    let (hms, tail) = rest.split_at(8);
    let mut t = hms.split(':');
    let (Some(h), Some(mi), Some(se), None) = (t.next(), t.next(), t.next(), t.next()) else {
        return Err(bad());
    };
    let (h, mi, se) = (num(h, 2)?, num(mi, 2)?, num(se, 2)?);
    if h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    secs += h * 3600 + mi * 60 + se;
    let tail = match tail.strip_prefix('.') {
        Some(f) => f.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => tail,
    };
    match tail {
        "" | "Z" | "z" | "+00:00" | "+0000" | "-00:00" => Ok(secs),
        _ => Err(bad()),
    }
}

/// A key lifetime (`duration`): `30s`, `20m`, `1h`, `30d`, `2w`, `1mo`, …;
/// `None` for no expiry (`null`, empty, `permanent`, `never`).
pub(crate) fn parse_lifetime(s: &str) -> Result<Option<BudgetWindow>, Error> {
    let t = s.trim();
    if t.is_empty()
        || t.eq_ignore_ascii_case("permanent")
        || t.eq_ignore_ascii_case("never")
        || t.eq_ignore_ascii_case("none")
    {
        return Ok(None);
    }
    // LiteLLM also accepts `30min`.
    let t = t
        .strip_suffix("min")
        .map_or_else(|| t.to_owned(), |n| format!("{n}m"));
    t.parse::<BudgetWindow>().map(Some).map_err(|_| {
        Error::bad_request(
            "invalid `duration`: use a number with s, m, h, d, w or mo (e.g. 30m, 1h, 30d, 1mo)",
        )
        .with_param("duration")
    })
}

/// `from` plus one `window`, in Unix seconds.
pub(crate) fn add_window(from: i64, window: BudgetWindow) -> i64 {
    let from = from.max(0) as u64;
    window.window_at(from, from).end.min(i64::MAX as u64) as i64
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

    #[test]
    fn formats_and_parses() {
        assert_eq!(iso(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(iso(1_705_621_929), "2024-01-18T23:52:09+00:00");
        assert_eq!(
            iso_ms(1_705_621_929_125),
            "2024-01-18T23:52:09.125000+00:00"
        );
        assert_eq!(date_of_day(19_740), "2024-01-18");
        assert_eq!(parse_datetime("2024-01-18", "d").unwrap(), 1_705_536_000);
        for s in [
            "2024-01-18T23:52:09",
            "2024-01-18 23:52:09",
            "2024-01-18T23:52:09Z",
            "2024-01-18T23:52:09.125000+00:00",
        ] {
            assert_eq!(parse_datetime(s, "d").unwrap(), 1_705_621_929, "{s}");
        }
        for s in [
            "",
            "2024",
            "2024-13-01",
            "2024-02-30",
            "2024-01-18T25:00:00",
            "x024-01-18",
            "2024-01-18T23:52:09+02:00",
            "2024-01-18é",
            "2024-01-1\0",
        ] {
            assert!(parse_datetime(s, "d").is_err(), "{s:?}");
        }
    }

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("").unwrap(), None);
        assert_eq!(parse_lifetime("permanent").unwrap(), None);
        assert_eq!(
            parse_lifetime("30min").unwrap(),
            Some(BudgetWindow::Seconds(1800))
        );
        assert_eq!(
            parse_lifetime("1h").unwrap(),
            Some(BudgetWindow::Seconds(3600))
        );
        assert!(parse_lifetime("soon").is_err());
        assert_eq!(add_window(1000, BudgetWindow::Seconds(30)), 1030);
    }
}
