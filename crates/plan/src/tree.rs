use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{Config, Diagnostic, PlanError, Playbook, ScheduleFile, Source};

/// What a file in the plan tree is, told by where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Config,
    Playbook,
    Schedule,
}

impl FileKind {
    fn of(path: &Path) -> Self {
        let in_dir = |name: &str| {
            path.parent()
                .and_then(Path::file_name)
                .is_some_and(|dir| dir == name)
        };
        if path
            .file_name()
            .is_some_and(|n| n == crate::DEFAULT_CONFIG_FILE)
        {
            Self::Config
        } else if in_dir("schedules") {
            Self::Schedule
        } else {
            Self::Playbook
        }
    }
}

/// The outcome of checking a tree: every problem in one pass.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub files: Vec<(PathBuf, FileKind)>,
    pub diagnostics: Vec<Diagnostic>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// How many distinct files hold at least one problem.
    pub fn files_with_errors(&self) -> usize {
        let mut files: Vec<_> = self.diagnostics.iter().map(|d| &d.file).collect();
        files.dedup();
        files.len()
    }
}

/// Checks files and directories (every `*.toml` below them). With no paths,
/// checks what the config points at.
pub fn check_paths(paths: &[PathBuf], config: &Config) -> Result<CheckReport, PlanError> {
    let roots = if paths.is_empty() {
        vec![config.playbooks.clone(), config.schedules.clone()]
    } else {
        paths.to_vec()
    };
    let mut report = CheckReport::default();
    for path in toml_files(&roots)? {
        let kind = FileKind::of(&path);
        let source = Source::read(&path)?;
        if let Err(diagnostic) = check_source(&source, kind) {
            report.diagnostics.push(*diagnostic);
        }
        report.files.push((path, kind));
    }
    Ok(report)
}

fn check_source(source: &Source, kind: FileKind) -> Result<(), Box<Diagnostic>> {
    match kind {
        FileKind::Config => Config::parse(source).map(drop),
        FileKind::Schedule => source.parse::<ScheduleFile>().map(drop),
        FileKind::Playbook => check_playbook(source),
    }
}

fn check_playbook(source: &Source) -> Result<(), Box<Diagnostic>> {
    let playbook: Playbook = source.parse()?;
    for step in &playbook.steps {
        let actions = step.actions();
        if actions.len() != 1 {
            let at = source.text.find(&format!("\"{}\"", step.name)).unwrap_or(0);
            let found = if actions.is_empty() {
                "none".to_string()
            } else {
                actions.join(", ")
            };
            return Err(Box::new(
                source
                    .error(
                        at..at + step.name.len() + 2,
                        format!("step `{}` must have exactly one action", step.name),
                    )
                    .with_help(format!(
                        "found {found}; choose one of command, update, backup, verify, reboot"
                    )),
            ));
        }
    }
    Ok(())
}

fn toml_files(roots: &[PathBuf]) -> Result<Vec<PathBuf>, PlanError> {
    let mut files = Vec::new();
    for root in roots {
        if root.is_dir() {
            let entries = std::fs::read_dir(root).map_err(|source| PlanError::Read {
                path: root.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> =
                entries.filter_map(Result::ok).map(|e| e.path()).collect();
            found.sort();
            files.extend(toml_files_in(found)?);
        } else {
            files.push(root.clone());
        }
    }
    Ok(files)
}

fn toml_files_in(found: Vec<PathBuf>) -> Result<Vec<PathBuf>, PlanError> {
    let mut files = Vec::new();
    for path in found {
        if path.is_dir() {
            files.extend(toml_files(&[path])?);
        } else if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_broken_file_in_one_pass() {
        let dir = tempfile::tempdir().expect("tempdir");
        let playbooks = dir.path().join("playbooks");
        let schedules = dir.path().join("schedules");
        std::fs::create_dir_all(&playbooks).expect("mkdir");
        std::fs::create_dir_all(&schedules).expect("mkdir");
        std::fs::write(
            playbooks.join("a.toml"),
            "name = \"a\"\ntargets = []\nserail = 1\nsteps = []\n",
        )
        .expect("write");
        std::fs::write(
            playbooks.join("b.toml"),
            "name = \"b\"\ntargets = []\nsteps = []\n",
        )
        .expect("write");
        std::fs::write(schedules.join("s.toml"), "[[schedule]]\nplaybook = 3\n").expect("write");
        let config = Config {
            playbooks,
            schedules,
            inventory: None,
        };
        let report = check_paths(&[], &config).expect("readable");
        assert_eq!(report.files.len(), 3);
        assert_eq!(report.diagnostics.len(), 2);
        assert_eq!(report.diagnostics[0].message, "unknown key `serail`");
        assert_eq!(report.diagnostics[0].line, 3);
        assert_eq!(report.files_with_errors(), 2);
    }
}
