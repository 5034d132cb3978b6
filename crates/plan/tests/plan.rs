//! The plan crate from the outside: the shipped examples check clean, and no
//! input, however mangled, panics the parser or the validator.

use std::path::{Path, PathBuf};

use nightshift_plan::{Config, check_paths};
use proptest::prelude::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example_config() -> (PathBuf, Config) {
    let path = repo().join("deploy/nightshift.example.toml");
    let config = Config::load(&path).expect("example config loads");
    (path, config)
}

#[test]
fn the_shipped_examples_check_clean() {
    let (path, config) = example_config();
    let report = check_paths(&[], Some(&path), &config).expect("readable");
    let problems: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(report.files.len() >= 8, "{:?}", report.files);
}

/// Every shipped TOML file, for the mutation runs below.
fn shipped_files() -> Vec<(PathBuf, String)> {
    ["playbooks", "schedules", "deploy"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(repo().join(dir)).expect("dir"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read");
            (p, text)
        })
        .collect()
}

/// Writes a one-file plan tree of the right kind around `text` and checks it.
fn check_mangled(original: &Path, text: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kind_dir = original
        .parent()
        .and_then(Path::file_name)
        .expect("dir name");
    let target = dir
        .path()
        .join(kind_dir)
        .join(original.file_name().expect("file name"));
    std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
    std::fs::write(&target, text).expect("write");
    let config = Config {
        inventory: None,
        playbooks: dir.path().join("playbooks"),
        schedules: dir.path().join("schedules"),
        ..Config::default()
    };
    // Errors are expected; a panic is the failure.
    let _ = check_paths(&[target], None, &config);
}

fn mutation() -> impl Strategy<Value = (usize, usize, usize, String)> {
    (any::<usize>(), any::<usize>(), 0usize..8, "\\PC{0,6}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn mangled_examples_never_panic(file in any::<usize>(), edits in prop::collection::vec(mutation(), 1..4)) {
        let files = shipped_files();
        let (path, text) = &files[file % files.len()];
        let mut text: Vec<char> = text.chars().collect();
        for (at, _, cut, insert) in edits {
            let at = at % (text.len() + 1);
            let end = (at + cut).min(text.len());
            text.splice(at..end, insert.chars());
        }
        let text: String = text.into_iter().collect();
        check_mangled(path, &text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check_mangled(Path::new("playbooks/x.toml"), &text);
        check_mangled(Path::new("schedules/x.toml"), &text);
        check_mangled(Path::new("deploy/inventory.toml"), &text);
    }
}

#[test]
fn files_are_what_their_directory_says_whatever_their_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("plays")).expect("mkdir");
    std::fs::create_dir_all(root.join("cron.d/team")).expect("mkdir");
    std::fs::write(
        root.join("plays/inventory-audit.toml"),
        "name = \"inventory-audit\"\ntargets = [\"localhost\"]\n[[steps]]\nname = \"s\"\ncommand = \"true\"\n",
    )
    .expect("write");
    std::fs::write(
        root.join("cron.d/team/nightly.toml"),
        "[[schedule]]\nplaybook = \"inventory-audit\"\ncron = \"0 2 * * *\"\ntimezone = \"UTC\"\nwindow = \"night\"\n\
         [windows.night]\nstart = \"01:00\"\nend = \"05:00\"\n",
    )
    .expect("write");
    let config = Config {
        inventory: None,
        playbooks: root.join("plays"),
        schedules: root.join("cron.d"),
        ..Config::default()
    };
    let report = check_paths(&[], None, &config).expect("readable");
    let problems: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let kinds: Vec<_> = report.files.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            nightshift_plan::FileKind::Playbook,
            nightshift_plan::FileKind::Schedule
        ]
    );
}

/// One generated step: any mix of actions, a condition right or wrong, a
/// verify with any mix of its fields.
fn step() -> impl Strategy<Value = String> {
    let actions = prop::collection::vec(
        prop::sample::select(vec![
            "command = \"true\"",
            "update = {}",
            "backup = { paths = [\"/etc\"] }",
            "backup = { exclude = [\"*.tmp\"] }",
            "verify = { command = \"true\", expect_output = \"ok\" }",
            "verify = { command = \"true\", expect_output = \"ok(\" }",
            "verify = { backup_check = true }",
            "verify = { restore_test = true, retries = 2 }",
            "verify = { command = \"true\", restore_test = true }",
            "verify = {}",
            "reboot = { when = \"required\" }",
        ]),
        0..3,
    );
    let when = prop::sample::select(vec![
        "",
        "when = \"changed\"",
        "when = \"chagned\"",
        "when = \"not failed:s0\"",
        "when = \"ok:s9\"",
        "when = \"ok\"",
    ]);
    (actions, when).prop_map(|(actions, when)| format!("{when}\n{}\n", actions.join("\n")))
}

fn generated_plan() -> impl Strategy<Value = (String, String)> {
    let targets = prop::sample::select(vec!["\"localhost\"", "\"group:web\"", "\"nosuch\"", ""]);
    let cron = prop::sample::select(vec!["0 2 * * *", "0 25 * * *", "0 12 * * *", "@hourly"]);
    let zone = prop::sample::select(vec!["UTC", "Europe/Berln", "Asia/Tokyo"]);
    let window = prop::sample::select(vec!["night", "nights"]);
    let playbook = prop::sample::select(vec!["generated", "generatd"]);
    (
        targets,
        prop::collection::vec(step(), 0..4),
        (playbook, cron, zone, window),
    )
        .prop_map(|(targets, steps, (playbook, cron, zone, window))| {
            let mut text = format!("name = \"generated\"\ntargets = [{targets}]\n");
            for (i, step) in steps.iter().enumerate() {
                text.push_str(&format!("\n[[steps]]\nname = \"s{i}\"\n{step}"));
            }
            let schedules = format!(
                "[[schedule]]\nplaybook = \"{playbook}\"\ncron = \"{cron}\"\ntimezone = \"{zone}\"\nwindow = \"{window}\"\n\n\
                 [windows.night]\nstart = \"01:00\"\nend = \"05:00\"\n"
            );
            (text, schedules)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The plan every command loads and the plan `check` passes are one: a
    /// plan that loads checks clean, and a plan `check` refuses is refused
    /// by `load` with the very same diagnostics.
    #[test]
    fn load_refuses_exactly_what_check_refuses((playbook, schedules) in generated_plan()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("playbooks")).expect("mkdir");
        std::fs::create_dir_all(root.join("schedules")).expect("mkdir");
        std::fs::write(root.join("playbooks/generated.toml"), &playbook).expect("write");
        std::fs::write(root.join("schedules/generated.toml"), &schedules).expect("write");
        let config = Config {
            inventory: None,
            playbooks: root.join("playbooks"),
            schedules: root.join("schedules"),
            ..Config::default()
        };
        let report = check_paths(&[], None, &config).expect("readable");
        match nightshift_plan::load(None, &config) {
            Ok(plan) => {
                prop_assert!(report.is_clean(), "loaded, yet check says: {:?}", report.diagnostics);
                prop_assert_eq!(plan.playbooks.len(), 1);
                prop_assert_eq!(plan.schedules.len(), 1);
            }
            Err(nightshift_plan::PlanError::Rejected(refused)) => {
                prop_assert!(!report.is_clean());
                let shown = |r: &nightshift_plan::CheckReport| -> Vec<String> {
                    r.diagnostics.iter().map(ToString::to_string).collect()
                };
                prop_assert_eq!(shown(&refused), shown(&report));
            }
            Err(other) => prop_assert!(false, "unexpected error: {other}"),
        }
    }
}

#[test]
fn a_checked_plan_holds_parsed_values_not_strings() {
    use nightshift_plan::{Action, FileKind, Outcome, Source, Verify};
    let playbook = r#"
name = "p"
targets = ["localhost"]
[[steps]]
name = "patch"
update = { security_only = true }
[[steps]]
name = "healthy"
when = "not failed:patch"
verify = { command = "curl -fsS localhost", expect_output = "^ok$", retries = 2 }
[[steps]]
name = "proof"
verify = { restore_test = true }
"#;
    let schedules = r#"
[[schedule]]
playbook = "p"
cron = "30 1 * * Tue"
timezone = "Europe/Berlin"
window = "nights"
catch_up = "once"

[[schedule]]
playbook = "p"
cron = "0 2 * * Sat"
timezone = "Asia/Tokyo"
window = "patch-weekend"
enabled = false

[windows.nights]
days = ["Mon", "Tue"]
start = "01:00"
end = "05:00"

[windows.patch-weekend]
monthly = "Saturday after second Tuesday"
start = "01:00"
end = "07:00"
timezone = "UTC"
"#;
    let plan = nightshift_plan::from_sources([
        (
            FileKind::Playbook,
            Source::new("playbooks/p.toml", playbook),
        ),
        (
            FileKind::Schedule,
            Source::new("schedules/s.toml", schedules),
        ),
    ])
    .expect("the plan checks");
    let steps = &plan.playbooks[0].steps;
    assert!(matches!(&steps[0].action, Action::Update(u) if u.security_only));
    let when = steps[1].when.as_ref().expect("a condition");
    assert!(when.negated && when.outcome == Outcome::Failed);
    assert_eq!(when.step.as_deref(), Some("patch"));
    let Action::Verify(Verify::Command(health)) = &steps[1].action else {
        panic!("a health command: {:?}", steps[1].action)
    };
    let pattern = health.expect_output.as_ref().expect("a pattern");
    assert!(pattern.is_match("ok") && !pattern.is_match("not ok"));
    assert_eq!(health.retries, 2);
    assert!(matches!(
        steps[2].action,
        Action::Verify(Verify::RestoreTest)
    ));

    let [nights, weekend] = plan.schedules.as_slice() else {
        panic!("two schedules: {:?}", plan.schedules)
    };
    assert_eq!(nights.key, "p|30 1 * * Tue|Europe/Berlin|nights");
    assert_eq!(nights.timezone, chrono_tz::Europe::Berlin);
    // A window that names no zone is read in the schedule's.
    assert_eq!(nights.window.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(
        nights.window.days,
        [chrono::Weekday::Mon, chrono::Weekday::Tue]
    );
    assert_eq!(nights.catch_up, Some(nightshift_plan::CatchUp::Once));
    // One that names its own keeps it.
    assert_eq!(weekend.window.timezone, chrono_tz::UTC);
    assert_eq!(
        weekend.window.monthly,
        Some("second Tuesday + 4 days".parse().expect("rule"))
    );
    assert!(!weekend.enabled);
}
