//! A share of users from 0 to 100%, exact to 18 decimals, so that "already at 5%" compares
//! exactly and a service's `33.333` is shown and compared as it was read.

use std::fmt;
use std::str::FromStr;

/// Units of 10^-18 of a percent: 100% fits a u128 with room to spare.
const SCALE_DIGITS: usize = 18;
const SCALE: u128 = 1_000_000_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(u128);

impl Percent {
    pub const ZERO: Percent = Percent(0);
    pub const FULL: Percent = Percent(100 * SCALE);

    /// Hundredths of a percent: 5% is 500.
    pub fn from_hundredths(hundredths: u32) -> Option<Percent> {
        (hundredths <= 10_000).then(|| Percent(u128::from(hundredths) * SCALE / 100))
    }

    /// `part` of `whole` as a percentage, rounded to the nearest unit; None when `whole` is 0
    /// or `part` exceeds it.
    pub fn from_ratio(part: u128, whole: u128) -> Option<Percent> {
        if whole == 0 || part > whole {
            return None;
        }
        let scaled = part.checked_mul(100 * SCALE)?;
        Some(Percent((scaled + whole / 2) / whole))
    }

    /// Any plain decimal from 0 to 100, with up to 18 decimals: how services report a share
    /// (`"33.333"`, `"5"`, `"2.50"`). None for anything else.
    pub fn parse_decimal(text: &str) -> Option<Percent> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || (text.contains('.') && fraction.is_empty()) {
            return None;
        }
        let fraction = fraction.trim_end_matches('0');
        if fraction.len() > SCALE_DIGITS {
            return None;
        }
        let whole: u128 = whole.trim_start_matches('0').parse().unwrap_or(0);
        if whole > 100 {
            return None;
        }
        let fraction: u128 = format!("{fraction:0<SCALE_DIGITS$}").parse().ok()?;
        let value = whole * SCALE + fraction;
        (value <= Self::FULL.0).then_some(Percent(value))
    }

    /// Hundredths of a percent, when the share is a whole number of them (every share a
    /// runbook can ask for is).
    pub fn hundredths(self) -> Option<u32> {
        let unit = SCALE / 100;
        self.0.is_multiple_of(unit).then(|| (self.0 / unit) as u32)
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / SCALE as f64
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn is_full(self) -> bool {
        self == Self::FULL
    }
}

impl FromStr for Percent {
    type Err = String;

    /// A runbook's percentage: `5`, `5%`, `2.5`, `0.25`; at most two decimals, 0 to 100.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let shown = crate::echo::clip(text);
        let bad = || {
            format!(
                "`{shown}` is not a percentage: use a number from 0 to 100 with at most two decimals, like 5 or 2.5"
            )
        };
        let digits = text.trim().strip_suffix('%').unwrap_or(text.trim()).trim();
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.len() > 3 || fraction.len() > 2 {
            return Err(bad());
        }
        let percent = Percent::parse_decimal(digits);
        match percent {
            Some(percent) => Ok(percent),
            None if whole.bytes().all(|b| b.is_ascii_digit()) && !whole.is_empty() && !digits.ends_with('.') => {
                match fraction.bytes().all(|b| b.is_ascii_digit()) {
                    true => Err(format!("`{shown}` is outside 0–100: a percentage of users is at most 100")),
                    false => Err(bad()),
                }
            }
            None => Err(bad()),
        }
    }
}

/// In JSON a percentage is a plain number (5, 2.5) when a number reads back exactly, and a
/// decimal string (`"33.333333333333333333"`) only for the shares a number cannot hold.
impl serde::Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let number = self.as_f64();
        match Percent::parse_decimal(&number.to_string()) == Some(*self) {
            true => serializer.serialize_f64(number),
            false => serializer.serialize_str(&self.to_string()),
        }
    }
}

/// Reads either form back: a number through its shortest decimal, a string exactly.
impl<'de> serde::Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(f64),
            Text(String),
        }
        let text = match Written::deserialize(deserializer)? {
            Written::Number(number) => number.to_string(),
            Written::Text(text) => text,
        };
        Percent::parse_decimal(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a percentage from 0 to 100")))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.0 / SCALE, self.0 % SCALE);
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let fraction = format!("{fraction:0>SCALE_DIGITS$}");
        write!(f, "{whole}.{}", fraction.trim_end_matches('0'))
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
            assert_eq!(p.hundredths(), Some(hundredths), "{text}");
            assert_eq!(p.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn rejects_out_of_range_and_junk() {
        for text in ["101", "100.01", "-1", "abc", "", "1.234", "5.", ".5", "1e2", "5%%", "0x10"] {
            assert!(text.parse::<Percent>().is_err(), "{text} should be rejected");
        }
        assert!("101".parse::<Percent>().unwrap_err().contains("outside 0–100"));
    }

    #[test]
    fn service_decimals_are_read_exactly() {
        let third = Percent::parse_decimal("33.333").unwrap();
        assert_eq!(third.to_string(), "33.333");
        assert_eq!(third.hundredths(), None, "not a share a runbook can ask for");
        assert!(third > "33.33".parse().unwrap() && third < "33.34".parse().unwrap());
        assert_eq!(Percent::parse_decimal("2.50"), "2.5".parse().ok());
        assert_eq!(Percent::parse_decimal("100.000"), Some(Percent::FULL));
        for junk in ["100.1", "1e2", "", ".", "5.", "-5", "1.0000000000000000001"] {
            assert_eq!(Percent::parse_decimal(junk), None, "{junk}");
        }
        assert_eq!(Percent::from_ratio(1, 3).unwrap().to_string(), "33.333333333333333333");
        assert_eq!(Percent::from_ratio(5_000, 100_000).unwrap().to_string(), "5");
    }

    #[test]
    fn json_reads_back_exactly_and_reads_older_numbers() {
        for text in ["0", "5", "2.5", "33.333", "100", "33.333333333333333333", "0.000000000000000001"] {
            let percent = Percent::parse_decimal(text).unwrap();
            let json = serde_json::to_string(&percent).unwrap();
            assert_eq!(serde_json::from_str::<Percent>(&json).unwrap(), percent, "{text} as {json}");
        }
        assert_eq!(serde_json::to_string(&Percent::parse_decimal("33.333").unwrap()).unwrap(), "33.333");
        assert_eq!(serde_json::from_str::<Percent>("5.0").unwrap().to_string(), "5");
        assert_eq!(serde_json::from_str::<Percent>("100").unwrap(), Percent::FULL);
        for junk in ["-1", "100.5", "\"abc\"", "null"] {
            assert!(serde_json::from_str::<Percent>(junk).is_err(), "{junk}");
        }
    }

    proptest::proptest! {
        /// Every share a runbook can ask for prints as text that reads back as itself.
        #[test]
        fn every_hundredth_prints_and_reads_back(hundredths in 0u32..=10_000) {
            let percent = Percent::from_hundredths(hundredths).unwrap();
            let shown = percent.to_string();
            proptest::prop_assert_eq!(shown.parse::<Percent>().ok(), Some(percent));
            proptest::prop_assert_eq!(format!("{shown}%").parse::<Percent>().ok(), Some(percent));
            proptest::prop_assert_eq!(Percent::parse_decimal(&shown), Some(percent));
        }

        /// Any text is read or refused, never a panic; what reads is within 0 to 100.
        #[test]
        fn any_text_reads_within_range_or_is_refused(text in "\\PC{0,12}|[0-9.%eE+-]{0,12}") {
            if let Ok(percent) = text.parse::<Percent>() {
                proptest::prop_assert!(percent <= Percent::FULL);
            }
            if let Some(percent) = Percent::parse_decimal(&text) {
                proptest::prop_assert!(percent <= Percent::FULL);
            }
        }
    }
}
