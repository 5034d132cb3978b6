use std::collections::BTreeMap;

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::Duration;

/// A checked playbook: which hosts, how many at a time, and the ordered
/// steps to run on each. Only [`crate::load`] makes one, so every name it
/// refers to exists and every string in it has been parsed.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub name: String,
    pub description: Option<String>,
    /// The file it was read from.
    pub file: PathBuf,
    /// Host names, `group:NAME`, globs, `all`, and exclusions such as `!db3`.
    pub targets: Vec<String>,
    pub serial: Option<Serial>,
    pub max_failures: Option<Threshold>,
    /// Per-host time limit for the whole playbook.
    pub timeout: Option<Duration>,
    /// Run commands through sudo.
    pub become_root: bool,
    pub vars: BTreeMap<String, toml::Value>,
    pub steps: Vec<Step>,
}

/// One step of a playbook, and the one thing it does.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub timeout: Option<Duration>,
    pub retries: u32,
    /// Pause between attempts.
    pub delay: Option<Duration>,
    pub continue_on_error: bool,
    /// Always run this step as `--check` would: report, change nothing.
    pub check: bool,
    /// A condition on earlier outcomes.
    pub when: Option<Condition>,
    pub action: Action,
}

/// What a step does: exactly one of these, as the check insists.
#[derive(Debug, Clone)]
pub enum Action {
    /// A shell command; fails on a non-zero exit.
    Command(String),
    Update(Update),
    Backup(Backup),
    Verify(Verify),
    Reboot(Reboot),
}

/// Package updates through the host's package manager.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// Only updates from the distribution's security archive.
    #[serde(default)]
    pub security_only: bool,
    /// Package name patterns never upgraded.
    #[serde(default)]
    pub hold: Vec<String>,
    /// When not empty, only these package name patterns are upgraded.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Package name patterns never upgraded, like `hold`, without holding
    /// them in the package manager.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// Files and command output pulled into the store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Named command-output streams, such as a database dump.
    #[serde(default)]
    pub streams: Vec<Stream>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// After a successful backup, forget the host's snapshots by its
    /// inventory retention policy (`[hosts.X.backup]` or its groups'). The
    /// engine that runs playbooks applies it (issue 8); parsed and checked
    /// here.
    #[serde(default)]
    pub forget: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    pub name: String,
    pub command: String,
}

/// A check that the host is healthy, or that its backups are sound: one of
/// the three.
#[derive(Debug, Clone)]
pub enum Verify {
    Command(HealthCheck),
    /// Check this host's latest snapshot in the store.
    BackupCheck,
    /// Restore this host's latest snapshot to a scratch place and compare.
    RestoreTest,
}

/// A command whose exit status, and optionally output, says the host is
/// healthy.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub command: String,
    pub expect_exit: i32,
    /// What the command's output must match, compiled.
    pub expect_output: Option<regex::Regex>,
    pub retries: u32,
    pub delay: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reboot {
    pub when: RebootWhen,
    /// How long to wait for the host to come back.
    #[serde(default)]
    pub wait: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RebootWhen {
    Always,
    /// Only when the host says a reboot is required.
    Required,
}

/// What a step's `when` can ask of earlier steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub negated: bool,
    pub outcome: Outcome,
    /// A named earlier step, or any earlier step.
    pub step: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Changed,
    Failed,
    Ok,
    RebootRequired,
}

impl Condition {
    pub const HELP: &'static str = "write `changed`, `failed`, `reboot_required`, or `changed:STEP`, `failed:STEP`, `ok:STEP`, `reboot_required:STEP`, optionally after `not `";

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (negated, rest) = match text.strip_prefix("not ") {
            Some(rest) => (true, rest.trim()),
            None => (false, text),
        };
        let (word, step) = match rest.split_once(':') {
            Some((word, step)) => (word, Some(step.trim().to_string())),
            None => (rest, None),
        };
        let outcome = match (word, &step) {
            ("changed", _) => Outcome::Changed,
            ("failed", _) => Outcome::Failed,
            ("ok", Some(_)) => Outcome::Ok,
            ("reboot_required", _) => Outcome::RebootRequired,
            _ => return Err(format!("`{text}` is not a condition; {}", Self::HELP)),
        };
        Ok(Self {
            negated,
            outcome,
            step,
        })
    }
}

/// How many hosts, or what share of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Count(usize),
    Percent(f64),
}

impl Threshold {
    /// A batch size for `total` hosts: a percentage rounds down but never
    /// below one host, so a rollout always moves.
    pub fn of(self, total: usize) -> usize {
        match self {
            Self::Count(n) => n.max(1),
            Self::Percent(p) => (((total as f64) * p / 100.0).floor() as usize).max(1),
        }
    }

    /// A failure limit for `total` hosts: a percentage rounds down, and
    /// `0` or `"0%"` tolerates no failure at all.
    pub fn limit(self, total: usize) -> usize {
        match self {
            Self::Count(n) => n,
            Self::Percent(p) => ((total as f64) * p / 100.0).floor() as usize,
        }
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(deserializer)? {
            toml::Value::Integer(n) if n >= 0 => Ok(Self::Count(n as usize)),
            toml::Value::Integer(n) => Err(D::Error::custom(format!(
                "{n} is negative; give a host count or a percentage like \"10%\""
            ))),
            toml::Value::String(text) => parse_percent(&text)
                .map(Self::Percent)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "expected a host count or a percentage like \"25%\", found {}",
                other.type_str()
            ))),
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
        use serde::de::{Error, IntoDeserializer};
        let value = toml::Value::deserialize(deserializer)?;
        let items = match value {
            toml::Value::Array(items) if items.is_empty() => {
                return Err(D::Error::custom(
                    "`serial` is an empty list; give at least one batch size",
                ));
            }
            toml::Value::Array(items) => items,
            one => vec![one],
        };
        items
            .into_iter()
            .map(|item| Threshold::deserialize(item.into_deserializer()).map_err(D::Error::custom))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
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
        assert_eq!(Threshold::Percent(0.0).limit(50), 0);
        assert_eq!(Threshold::Percent(10.0).limit(25), 2);
    }

    #[test]
    fn parses_canary_serial() {
        let playbook: crate::written::Playbook = toml::from_str(
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

    #[test]
    fn conditions_read_like_sentences() {
        assert_eq!(
            Condition::parse("not changed:security updates"),
            Ok(Condition {
                negated: true,
                outcome: Outcome::Changed,
                step: Some("security updates".into())
            })
        );
        assert_eq!(
            Condition::parse("reboot_required").map(|c| c.outcome),
            Ok(Outcome::RebootRequired)
        );
        assert!(Condition::parse("ok").is_err());
        assert!(Condition::parse("rebooted").is_err());
    }
}
