//! [`Usd`]: exact money.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul, Sub, SubAssign};

/// Picodollars per dollar.
const SCALE: i128 = 1_000_000_000_000;

/// An amount of US dollars, exact to the picodollar (10⁻¹² USD).
///
/// Token prices go down to about 10⁻¹⁰ USD, so every price in the table is a
/// whole number of picodollars and every cost — tokens × price — is exact.
/// Sums never drift, however many requests they add up.
///
/// ```
/// use tollgate::pricing::Usd;
///
/// let price: Usd = "0.0000025".parse().unwrap(); // $2.50 per million tokens
/// let cost = price * 1_234u64;
/// assert_eq!(cost.to_string(), "0.003085");
/// let many: Usd = std::iter::repeat(Usd::from_pico(1)).take(1_000_000).sum();
/// assert_eq!(many.to_string(), "0.000001");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(i128);

impl Usd {
    /// Zero dollars.
    pub const ZERO: Usd = Usd(0);

    /// From picodollars.
    pub const fn from_pico(pico: i128) -> Usd {
        Usd(pico)
    }

    /// In picodollars.
    pub const fn pico(self) -> i128 {
        self.0
    }

    /// From a float number of dollars, rounded to the picodollar (for
    /// configuration values that arrive as floats).
    pub fn from_f64(dollars: f64) -> Option<Usd> {
        if !dollars.is_finite() {
            return None;
        }
        let pico = (dollars * SCALE as f64).round();
        (pico.abs() < 1e36).then_some(Usd(pico as i128))
    }

    /// As a float number of dollars (for display and metrics only).
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / SCALE as f64
    }

    /// Whether the amount is zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Multiplies by a (possibly fractional) quantity such as seconds, rounding to the picodollar.
    pub fn times_f64(self, quantity: f64) -> Usd {
        if !quantity.is_finite() {
            return Usd::ZERO;
        }
        Usd((self.0 as f64 * quantity).round() as i128)
    }

    /// Saturating subtraction at zero.
    pub fn saturating_sub(self, other: Usd) -> Usd {
        Usd((self.0 - other.0).max(0))
    }
}

/// A malformed decimal amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseUsdError;

impl fmt::Display for ParseUsdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a decimal amount of dollars")
    }
}

impl std::error::Error for ParseUsdError {}

impl std::str::FromStr for Usd {
    type Err = ParseUsdError;

    /// Parses decimal text (`0.0000025`, `2.5e-06`, `5E-8`, `-1`) exactly,
    /// rounding half away from zero to the picodollar.
    fn from_str(s: &str) -> Result<Usd, ParseUsdError> {
        let s = s.trim();
        let (mantissa, exp) = match s.find(['e', 'E']) {
            Some(i) => (
                &s[..i],
                s[i + 1..].parse::<i32>().map_err(|_| ParseUsdError)?,
            ),
            None => (s, 0),
        };
        let (neg, digits) = match mantissa.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
        };
        let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(ParseUsdError);
        }
        if !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ParseUsdError);
        }
        // value = 0.<all digits> × 10^(len(int) + exp); we want value × 10^12.
        let all: Vec<u8> = int_part
            .bytes()
            .chain(frac_part.bytes())
            .map(|b| b - b'0')
            .collect();
        let point = int_part.len() as i64 + i64::from(exp) + 12;
        let mut pico: i128 = 0;
        for (i, d) in all.iter().enumerate() {
            let i = i as i64;
            if i < point {
                pico = pico
                    .checked_mul(10)
                    .and_then(|p| p.checked_add(i128::from(*d)))
                    .ok_or(ParseUsdError)?;
            } else if i == point {
                if *d >= 5 {
                    pico += 1;
                }
                break;
            }
        }
        // Digits that end before the decimal point of the result: scale up.
        let used = all.len() as i64;
        if used < point {
            for _ in 0..(point - used) {
                pico = pico.checked_mul(10).ok_or(ParseUsdError)?;
            }
        }
        Ok(Usd(if neg { -pico } else { pico }))
    }
}

impl fmt::Display for Usd {
    /// Plain decimal dollars with trailing zeros removed (`0.003085`, `12`, `-0.5`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let int = abs / SCALE as u128;
        let frac = abs % SCALE as u128;
        if frac == 0 {
            write!(f, "{sign}{int}")
        } else {
            let frac = format!("{frac:012}");
            write!(f, "{sign}{int}.{}", frac.trim_end_matches('0'))
        }
    }
}

impl Serialize for Usd {
    /// As a JSON number of dollars (what LiteLLM's APIs return).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Usd;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount of dollars")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Usd, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Usd, E> {
                // Through the shortest decimal text of the float: `3e-06` stays exactly 3 µ$.
                format!("{v:e}").parse().map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Usd, E> {
                Ok(Usd(i128::from(v) * SCALE))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Usd, E> {
                Ok(Usd(i128::from(v) * SCALE))
            }
        }
        d.deserialize_any(V)
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, o: Usd) -> Usd {
        Usd(self.0 + o.0)
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, o: Usd) {
        self.0 += o.0;
    }
}

impl Sub for Usd {
    type Output = Usd;
    fn sub(self, o: Usd) -> Usd {
        Usd(self.0 - o.0)
    }
}

impl SubAssign for Usd {
    fn sub_assign(&mut self, o: Usd) {
        self.0 -= o.0;
    }
}

impl Mul<u64> for Usd {
    type Output = Usd;
    fn mul(self, n: u64) -> Usd {
        Usd(self.0 * i128::from(n))
    }
}

impl Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, Add::add)
    }
}

impl<'a> Sum<&'a Usd> for Usd {
    fn sum<I: Iterator<Item = &'a Usd>>(iter: I) -> Usd {
        iter.copied().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> i128 {
        s.parse::<Usd>().unwrap().pico()
    }

    #[test]
    fn parses_every_spelling_exactly() {
        assert_eq!(p("0.0000025"), 2_500_000);
        assert_eq!(p("2.5e-06"), 2_500_000);
        assert_eq!(p("2.5E-6"), 2_500_000);
        assert_eq!(p("5E-8"), 50_000);
        assert_eq!(p("1.3E-10"), 130);
        assert_eq!(p("3"), 3_000_000_000_000);
        assert_eq!(p("0.06"), 60_000_000_000);
        assert_eq!(p("-0.5"), -500_000_000_000);
        assert_eq!(p("1e3"), 1_000_000_000_000_000);
        // Float artefacts round to the picodollar.
        assert_eq!(p("0.0000029999900000000002"), 2_999_990);
        assert_eq!(p("8.39233E-8"), 83_923);
        assert_eq!(p("0.0000000000005"), 1, "half rounds away from zero");
        for bad in ["", ".", "abc", "1.2.3", "1e", "--1", "1e99999999999"] {
            assert!(bad.parse::<Usd>().is_err(), "{bad}");
        }
    }

    #[test]
    fn display_and_serde() {
        assert_eq!(Usd::from_pico(3_085_000_000).to_string(), "0.003085");
        assert_eq!(Usd::from_pico(-500_000_000_000).to_string(), "-0.5");
        assert_eq!(Usd::from_pico(12 * SCALE).to_string(), "12");
        let u: Usd = serde_json::from_str("3e-06").unwrap();
        assert_eq!(u.pico(), 3_000_000);
        let u: Usd = serde_json::from_str("\"0.1\"").unwrap();
        assert_eq!(u.pico(), 100_000_000_000);
        assert_eq!(
            serde_json::to_string(&Usd::from_pico(1_500_000_000_000)).unwrap(),
            "1.5"
        );
    }
}
