use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::Duration;

/// A maintenance playbook: which hosts, how many at a time, and the ordered
/// steps to run on each.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Host names, `group:NAME`, globs, and exclusions such as `!db3`.
    pub targets: Vec<String>,
    #[serde(default)]
    pub serial: Option<Serial>,
    #[serde(default)]
    pub max_failures: Option<Threshold>,
    /// Per-host time limit for the whole playbook.
    #[serde(default)]
    pub timeout: Option<Duration>,
    #[serde(default, rename = "become")]
    pub become_root: bool,
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    pub steps: Vec<Step>,
}

/// One step; exactly one of the action tables is set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    #[serde(default)]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub retries: u32,
    #[serde(default)]
    pub continue_on_error: bool,
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    pub command: Option<toml::Value>,
    #[serde(default)]
    pub update: Option<toml::Value>,
    #[serde(default)]
    pub backup: Option<toml::Value>,
    #[serde(default)]
    pub verify: Option<toml::Value>,
    #[serde(default)]
    pub reboot: Option<toml::Value>,
}

impl Step {
    /// The names of the action tables this step sets.
    pub fn actions(&self) -> Vec<&'static str> {
        [
            ("command", self.command.is_some()),
            ("update", self.update.is_some()),
            ("backup", self.backup.is_some()),
            ("verify", self.verify.is_some()),
            ("reboot", self.reboot.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// How many hosts, or what share of them, a rollout batch holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Count(usize),
    Percent(f64),
}

impl Threshold {
    /// The threshold applied to `total` hosts; a percentage rounds down but
    /// never below one host.
    pub fn of(self, total: usize) -> usize {
        match self {
            Self::Count(n) => n,
            Self::Percent(p) => (((total as f64) * p / 100.0).floor() as usize).max(1),
        }
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(i64),
            Text(String),
        }
        use serde::de::Error;
        match Raw::deserialize(deserializer)? {
            Raw::Count(n) if n >= 0 => Ok(Self::Count(n as usize)),
            Raw::Count(n) => Err(D::Error::custom(format!(
                "{n} is negative; give a host count or a percentage like \"10%\""
            ))),
            Raw::Text(text) => parse_percent(&text)
                .map(Self::Percent)
                .map_err(D::Error::custom),
        }
    }
}

fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().strip_suffix('%').ok_or_else(|| {
        format!("`{text}` is neither a host count nor a percentage; write 3 or \"25%\"")
    })?;
    match number.trim().parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("`{text}` is not a percentage between 0% and 100%")),
    }
}

/// Batch sizes of a rollout: one size for every batch, or a list for canary
/// rollouts such as `[1, "10%", "100%"]` whose last entry repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct Serial(pub Vec<Threshold>);

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(Threshold),
            Many(Vec<Threshold>),
        }
        match Raw::deserialize(deserializer)? {
            Raw::One(t) => Ok(Self(vec![t])),
            Raw::Many(list) if !list.is_empty() => Ok(Self(list)),
            Raw::Many(_) => Err(serde::de::Error::custom(
                "`serial` is an empty list; give at least one batch size",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_down_but_never_to_zero() {
        assert_eq!(Threshold::Percent(25.0).of(12), 3);
        assert_eq!(Threshold::Percent(10.0).of(5), 1);
        assert_eq!(Threshold::Count(2).of(100), 2);
    }

    #[test]
    fn parses_canary_serial() {
        let playbook: Playbook = toml::from_str(
            "name = \"p\"\ntargets = [\"all\"]\nserial = [1, \"10%\", \"100%\"]\n[[steps]]\nname = \"s\"\ncommand = \"true\"\n",
        )
        .expect("valid playbook");
        assert_eq!(
            playbook.serial,
            Some(Serial(vec![
                Threshold::Count(1),
                Threshold::Percent(10.0),
                Threshold::Percent(100.0)
            ]))
        );
        assert_eq!(playbook.steps[0].actions(), vec!["command"]);
    }
}
