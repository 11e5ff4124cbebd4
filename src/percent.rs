//! A share of users, 0–100% in hundredths of a percent, so that comparing
//! "already at 5%" is exact and "2.5%" survives a round trip.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(u32);

impl Percent {
    pub const FULL: Percent = Percent(10_000);

    /// Hundredths of a percent: 5% is 500.
    pub fn from_hundredths(hundredths: u32) -> Option<Percent> {
        (hundredths <= 10_000).then_some(Percent(hundredths))
    }

    pub fn hundredths(self) -> u32 {
        self.0
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 100.0
    }

    pub fn is_full(self) -> bool {
        self == Self::FULL
    }
}

impl FromStr for Percent {
    type Err = String;

    /// Accepts `5`, `5%`, `2.5`, `0.25`; at most two decimals, 0 to 100.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("`{text}` is not a percentage: use a number from 0 to 100 with at most two decimals, like 5 or 2.5")
        };
        let digits = text.trim().trim_end_matches('%').trim();
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || fraction.is_empty()
            || whole.len() > 3
            || fraction.len() > 2
            || !all_digits(whole)
            || !all_digits(fraction)
        {
            return Err(bad());
        }
        let whole: u32 = whole.parse().map_err(|_| bad())?;
        let fraction: u32 = format!("{fraction:0<2}").parse().map_err(|_| bad())?;
        Percent::from_hundredths(whole * 100 + fraction)
            .ok_or_else(|| format!("`{text}` is outside 0–100: a percentage of users is at most 100"))
    }
}

/// In JSON a percentage is a plain number: 5, 2.5.
impl serde::Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_f64())
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.0 / 100, self.0 % 100);
        match fraction {
            0 => write!(f, "{whole}"),
            f10 if f10 % 10 == 0 => write!(f, "{whole}.{}", f10 / 10),
            _ => write!(f, "{whole}.{fraction:02}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for (text, hundredths, shown) in [
            ("5", 500, "5"),
            ("5%", 500, "5"),
            ("2.5", 250, "2.5"),
            ("0.25", 25, "0.25"),
            ("100", 10_000, "100"),
            ("0", 0, "0"),
        ] {
            let p: Percent = text.parse().unwrap();
            assert_eq!(p.hundredths(), hundredths, "{text}");
            assert_eq!(p.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn rejects_out_of_range_and_junk() {
        for text in ["101", "100.01", "-1", "abc", "", "1.234", "5.", ".5", "1e2"] {
            assert!(text.parse::<Percent>().is_err(), "{text} should be rejected");
        }
    }
}
