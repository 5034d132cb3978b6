//! The schedules the daemon keeps: a checked plan's enabled ones, each once.

use std::collections::BTreeSet;

use nightshift_plan::{Plan, Schedule};

/// The enabled schedules of `plan`. Every one of them resolves: the plan
/// was checked whole, so none is dropped here. A schedule written twice
/// (same key) is kept once, as it fires once.
pub fn entries(plan: &Plan) -> Vec<Schedule> {
    let mut keys = BTreeSet::new();
    plan.schedules
        .iter()
        .filter(|s| s.enabled && keys.insert(s.key.clone()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use nightshift_plan::{FileKind, Source};

    use super::*;

    #[test]
    fn disabled_schedules_are_left_out_and_a_repeated_one_is_kept_once() {
        let schedule = |cron: &str, enabled: bool| {
            format!(
                "[[schedule]]\nplaybook = \"p\"\ncron = \"{cron}\"\ntimezone = \"UTC\"\nwindow = \"w\"\nenabled = {enabled}\n"
            )
        };
        let text = [
            schedule("0 2 * * *", true),
            schedule("0 3 * * *", false),
            schedule("0 2 * * *", true),
            "[windows.w]\nstart = \"01:00\"\nend = \"05:00\"\n".to_string(),
        ]
        .concat();
        let playbook = "name = \"p\"\ntargets = [\"localhost\"]\n[[steps]]\nname = \"s\"\ncommand = \"true\"\n";
        let plan = nightshift_plan::from_sources([
            (FileKind::Schedule, Source::new("schedules/s.toml", text)),
            (
                FileKind::Playbook,
                Source::new("playbooks/p.toml", playbook),
            ),
        ])
        .expect("the plan checks");
        assert_eq!(plan.schedules.len(), 3);
        let keys: Vec<String> = entries(&plan).into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["p|0 2 * * *|UTC|w"]);
    }
}
