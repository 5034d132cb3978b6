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
