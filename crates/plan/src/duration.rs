use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// A span of time as sysadmins write it: `45m`, `1h30m`, `10s`, `2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// Parses a span where zero means "at once", such as a delay.
    pub fn parse_allowing_zero(text: &str) -> Result<std::time::Duration, String> {
        humantime::parse_duration(text.trim())
            .map_err(|_| format!("bad duration `{text}`; write it like `45m`, `1h30m` or `10s`"))
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parsed = Self::parse_allowing_zero(text)?;
        if parsed.is_zero() {
            return Err(format!(
                "duration `{text}` is zero; give a positive time such as `30s`"
            ));
        }
        Ok(Self(parsed))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_sysadmins_write() {
        let minutes = |m: u64| Duration(std::time::Duration::from_secs(m * 60));
        assert_eq!("45m".parse::<Duration>(), Ok(minutes(45)));
        assert_eq!("1h30m".parse::<Duration>(), Ok(minutes(90)));
        assert_eq!("1h 30m".parse::<Duration>(), Ok(minutes(90)));
    }

    #[test]
    fn refuses_nonsense_with_an_example() {
        let err = "45 minutes please"
            .parse::<Duration>()
            .expect_err("nonsense");
        assert!(err.contains("write it like `45m`"), "{err}");
        assert!("0s".parse::<Duration>().is_err());
    }
}
