use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::inventory::Inventory;
use crate::{Config, Diagnostic, Plan, PlanError, Source, written};

/// What a file in the plan tree is, told by its name and where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Config,
    Inventory,
    Playbook,
    Schedule,
}

impl FileKind {
    /// Files under the config's `playbooks` and `schedules` directories are
    /// what those directories say, and the config's `inventory` is the
    /// inventory, whatever their names. Files named on the command line
    /// outside them are told by name: `nightshift*.toml` is a config,
    /// `inventory*.toml` an inventory, anything in a directory called
    /// `schedules` a schedules file, the rest playbooks.
    fn of(path: &Path, config: &Config, config_file: Option<&Path>) -> Self {
        let here = canonical(path);
        let under = |dir: &Path| here.starts_with(canonical(dir));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if config
            .inventory
            .as_deref()
            .is_some_and(|inv| here == canonical(inv))
        {
            Self::Inventory
        } else if config_file.is_some_and(|c| here == canonical(c)) {
            Self::Config
        } else if under(&config.schedules) {
            Self::Schedule
        } else if under(&config.playbooks) {
            Self::Playbook
        } else if name == crate::DEFAULT_CONFIG_FILE || name.starts_with("nightshift.") {
            Self::Config
        } else if name.starts_with("inventory") {
            Self::Inventory
        } else if path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|d| d == "schedules")
        {
            Self::Schedule
        } else {
            Self::Playbook
        }
    }
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// A parsed file with its text, so later checks can point into it.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub source: Source,
    pub value: T,
}

/// Everything a sysadmin wrote, parsed but not yet checked: the input of
/// [`crate::check`], and of nothing else.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub playbooks: Vec<Loaded<written::Playbook>>,
    pub schedules: Vec<Loaded<written::ScheduleFile>>,
    /// `None` means the embedded default: `localhost` alone.
    pub inventory: Option<Loaded<Inventory>>,
    /// Names of playbooks whose files have errors: they exist, so a
    /// schedule naming one is not wrong too.
    pub broken_playbooks: Vec<String>,
    /// The config file and its `[[exception]]`s, when it has some.
    pub config: Option<(Source, Vec<crate::Exception>)>,
}

impl Written {
    /// The inventory in force: the file's, or the embedded one.
    pub fn inventory(&self) -> std::borrow::Cow<'_, Inventory> {
        match &self.inventory {
            Some(loaded) => std::borrow::Cow::Borrowed(&loaded.value),
            None => std::borrow::Cow::Owned(Inventory::embedded()),
        }
    }

    pub fn playbook_names(&self) -> impl Iterator<Item = &str> + Clone {
        self.playbooks
            .iter()
            .map(|p| p.value.name.get_ref().as_str())
    }
}

/// The outcome of checking a tree: every problem in one pass.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub files: Vec<CheckedFile>,
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckedFile {
    pub path: PathBuf,
    pub kind: FileKind,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// How many distinct files hold at least one problem.
    pub fn files_with_errors(&self) -> usize {
        let files: std::collections::BTreeSet<_> =
            self.diagnostics.iter().map(|d| &d.file).collect();
        files.len()
    }
}

/// The plan the config names, checked: what every command runs on. A plan
/// with any problem is refused whole, with every diagnostic, so nothing
/// runs that `nightshift check` refuses.
pub fn load(config_file: Option<&Path>, config: &Config) -> Result<Plan, PlanError> {
    match examine(config_file, config, &[])? {
        (Some(plan), _) => Ok(plan),
        (None, report) => Err(PlanError::Rejected(Box::new(report))),
    }
}

/// Reads and checks the tree the config names plus any `extra` files or
/// directories: the checked plan when there is no problem, and the report.
fn examine(
    config_file: Option<&Path>,
    config: &Config,
    extra: &[PathBuf],
) -> Result<(Option<Plan>, CheckReport), PlanError> {
    let (written, report) = read(config_file, config, extra)?;
    Ok(finish(written, report))
}

/// Checks a plan given as texts rather than files, each with its kind: what
/// a test has, or a front end checking an upload.
pub fn from_sources(
    sources: impl IntoIterator<Item = (FileKind, Source)>,
) -> Result<Plan, PlanError> {
    let mut written = Written::default();
    let mut report = CheckReport::default();
    for (kind, source) in sources {
        let path = source.path.clone();
        if let Err(found) = add(&mut written, source, kind) {
            report.diagnostics.extend(found);
        }
        report.files.push(CheckedFile { path, kind });
    }
    match finish(written, report) {
        (Some(plan), _) => Ok(plan),
        (None, report) => Err(PlanError::Rejected(Box::new(report))),
    }
}

/// The checked plan when nothing is wrong, and the report either way.
fn finish(written: Written, mut report: CheckReport) -> (Option<Plan>, CheckReport) {
    let plan = match crate::check::check(written, report.files.clone()) {
        Ok(plan) => report.diagnostics.is_empty().then_some(plan),
        Err(found) => {
            report.diagnostics.extend(found);
            None
        }
    };
    report
        .diagnostics
        .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    (plan, report)
}

/// Parses every file of the tree; files that do not parse become
/// diagnostics, the rest the written plan.
fn read(
    config_file: Option<&Path>,
    config: &Config,
    extra: &[PathBuf],
) -> Result<(Written, CheckReport), PlanError> {
    let mut roots: Vec<PathBuf> = config_file.map(Path::to_path_buf).into_iter().collect();
    roots.extend([config.playbooks.clone(), config.schedules.clone()]);
    roots.extend(config.inventory.clone());
    roots.extend(extra.iter().cloned());
    let mut written = Written::default();
    let mut report = CheckReport::default();
    let mut seen = std::collections::BTreeSet::new();
    for path in toml_files(&roots)? {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
        if !seen.insert(canonical) {
            continue;
        }
        let kind = FileKind::of(&path, config, config_file);
        let source = match Source::read(&path) {
            Ok(source) => source,
            Err(PlanError::Read { path, source }) if config.inventory.as_ref() == Some(&path) => {
                report
                    .diagnostics
                    .push(missing_inventory(config_file, &path, &source));
                continue;
            }
            Err(err) => return Err(err),
        };
        if let Err(found) = add(&mut written, source, kind) {
            report.diagnostics.extend(found);
        }
        report.files.push(CheckedFile { path, kind });
    }
    if let Some(file) = config_file.filter(|_| !config.exceptions.is_empty()) {
        written.config = Some((Source::read(file)?, config.exceptions.clone()));
    }
    Ok((written, report))
}

fn missing_inventory(config_file: Option<&Path>, path: &Path, err: &std::io::Error) -> Diagnostic {
    let message = format!("inventory {} cannot be read: {err}", path.display());
    match config_file.and_then(|f| Source::read(f).ok()) {
        Some(config) => {
            let at = config.text.find("inventory").unwrap_or(0);
            config
                .error(at..at + "inventory".len(), message)
                .with_help("create it, or remove `inventory` to manage only localhost")
        }
        None => Source::new(path, "").error(0..0, message),
    }
}

fn add(plan: &mut Written, source: Source, kind: FileKind) -> Result<(), Vec<Diagnostic>> {
    match kind {
        FileKind::Config => source.parse_all::<Config>().map(drop),
        FileKind::Inventory => {
            if let Some(first) = &plan.inventory {
                return Err(vec![
                    source
                        .error(0..0, "a second inventory file")
                        .with_help(format!(
                            "{} is already the inventory; name one in the config's `inventory`",
                            first.source.path.display()
                        )),
                ]);
            }
            let value = source.parse_all()?;
            plan.inventory = Some(Loaded { source, value });
            Ok(())
        }
        FileKind::Schedule => {
            let value = source.parse_all()?;
            plan.schedules.push(Loaded { source, value });
            Ok(())
        }
        FileKind::Playbook => match source.parse_all() {
            Ok(value) => {
                plan.playbooks.push(Loaded { source, value });
                Ok(())
            }
            Err(found) => {
                // Its name still counts, so schedules naming it are not
                // told it does not exist.
                if let Some(name) = toml::from_str::<toml::Table>(&source.text)
                    .ok()
                    .and_then(|t| t.get("name").and_then(|n| n.as_str().map(str::to_string)))
                {
                    plan.broken_playbooks.push(name);
                }
                Err(found)
            }
        },
    }
}

/// Checks files and directories (every `*.toml` below them) in the context
/// of the tree the config names; with no paths, checks that whole tree.
pub fn check_paths(
    paths: &[PathBuf],
    config_file: Option<&Path>,
    config: &Config,
) -> Result<CheckReport, PlanError> {
    let (_, mut report) = examine(config_file, config, paths)?;
    if !paths.is_empty() {
        let wanted: std::collections::BTreeSet<PathBuf> = toml_files(paths)?
            .into_iter()
            .map(|p| p.canonicalize().unwrap_or(p))
            .collect();
        let keep =
            |p: &Path| wanted.contains(&p.canonicalize().unwrap_or_else(|_| p.to_path_buf()));
        report.files.retain(|f| keep(&f.path));
        report.diagnostics.retain(|d| keep(&d.file));
    }
    Ok(report)
}

fn toml_files(roots: &[PathBuf]) -> Result<Vec<PathBuf>, PlanError> {
    let mut files = Vec::new();
    for root in roots {
        if !root.is_dir() {
            if root.exists() || !is_default_dir(root) {
                files.push(root.clone());
            }
            continue;
        }
        let entries = std::fs::read_dir(root).map_err(|source| PlanError::Read {
            path: root.clone(),
            source,
        })?;
        let mut found: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        found.sort();
        for path in found {
            if path.is_dir() {
                files.extend(toml_files(&[path])?);
            } else if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    Ok(files)
}

/// A missing `playbooks/` or `schedules/` directory is an empty plan, not an
/// error: a fresh machine has neither.
fn is_default_dir(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n == "playbooks" || n == "schedules")
}
