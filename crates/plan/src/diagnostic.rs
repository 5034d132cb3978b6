use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A file's text kept with its path, so every problem can be shown in place.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
        }
    }

    pub fn read(path: &Path) -> Result<Self, crate::PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| crate::PlanError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::new(path, text))
    }

    /// The largest char boundary at or below `offset`, within the text.
    fn boundary(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }

    /// One-based line and column (in characters) of a byte offset.
    pub fn locate(&self, offset: usize) -> (usize, usize) {
        let offset = self.boundary(offset);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    fn line_text(&self, line: usize) -> &str {
        self.text.lines().nth(line - 1).unwrap_or("")
    }

    /// Parses TOML into `T`, turning a syntax or shape error into a
    /// diagnostic at the offending key or value.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, Box<Diagnostic>> {
        toml::from_str(&self.text).map_err(|err| Box::new(self.diagnose_toml(&err)))
    }

    /// Like [`Source::parse`], but goes on after a shape error to find the
    /// others in the same file: the `key = value` line holding an error is
    /// blanked (byte offsets kept) and the text parsed again. Recovery stops
    /// at anything it cannot take out cleanly (a syntax error, a value
    /// spanning lines), and a "missing field" for a key it took out is not
    /// reported, so every diagnostic is one the author would see anyway.
    pub fn parse_all<T: serde::de::DeserializeOwned>(&self) -> Result<T, Vec<Diagnostic>> {
        let mut err = match toml::from_str(&self.text) {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let mut found = vec![self.diagnose_toml(&err)];
        let mut text = self.text.clone();
        let mut taken_out = Vec::new();
        for _ in 0..64 {
            let Some(key) = blank_statement(&mut text, &err) else {
                break;
            };
            taken_out.push(format!("missing field `{key}`"));
            err = match toml::from_str::<T>(&text) {
                Ok(_) => break,
                Err(next) => next,
            };
            let diagnostic = self.diagnose_toml(&err);
            if taken_out.iter().any(|m| err.message().contains(m.as_str()))
                || found.contains(&diagnostic)
            {
                break;
            }
            found.push(diagnostic);
        }
        found.sort_by_key(|d| (d.line, d.column));
        Err(found)
    }

    fn diagnose_toml(&self, err: &toml::de::Error) -> Diagnostic {
        let message = err.message().trim_end().to_string();
        let span = err.span().unwrap_or(0..0);
        match unknown_field(&message) {
            Some((field, expected)) => {
                let help = match suggest(&field, &expected) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("expected one of {}", expected.join(", ")),
                };
                self.error(span, format!("unknown key `{field}`"))
                    .with_help(help)
            }
            None => self.error(span, message),
        }
    }

    /// An error at a byte span of this file.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let start = self.boundary(span.start);
        let span = start..self.boundary(span.end).max(start);
        let (line, column) = self.locate(span.start);
        let text = self.line_text(line);
        let mut message = message.into();
        let snippet = if looks_secret(text) {
            for value in secret_values(text) {
                message = message.replace(value, "***");
            }
            message = blank_quoted(&message);
            None
        } else {
            Some(text.to_string())
        };
        let width = self.text[span.clone()]
            .lines()
            .next()
            .map_or(1, |s| s.chars().count().max(1));
        Diagnostic {
            file: self.path.clone(),
            line,
            column,
            width,
            message,
            help: None,
            snippet,
        }
    }
}

/// One problem found in a file, with its place and, where possible, a way out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// How many characters the underline covers.
    pub width: usize,
    pub message: String,
    pub help: Option<String>,
    /// The offending source line; `None` when it holds a secret.
    pub snippet: Option<String>,
}

impl Diagnostic {
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    /// rustc's layout: the message, the place, the line and an underline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        writeln!(
            f,
            "  --> {}:{}:{}",
            self.file.display(),
            self.line,
            self.column
        )?;
        let gutter = self.line.to_string().len();
        let pad = " ".repeat(gutter);
        match &self.snippet {
            Some(snippet) => {
                writeln!(f, "{pad} |")?;
                writeln!(f, "{} | {snippet}", self.line)?;
                let indent = " ".repeat(self.column.saturating_sub(1));
                let marks = "^".repeat(self.width);
                match &self.help {
                    Some(help) => writeln!(f, "{pad} | {indent}{marks} {help}"),
                    None => writeln!(f, "{pad} | {indent}{marks}"),
                }
            }
            None => {
                writeln!(f, "{pad} | (line not shown: it holds a secret)")?;
                match &self.help {
                    Some(help) => writeln!(f, "{pad} = help: {help}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Replaces the one-line `key = value` statement holding `err` with spaces;
/// the statement's key, or `None` when there is no such clean statement.
fn blank_statement(text: &mut String, err: &toml::de::Error) -> Option<String> {
    let span = err.span()?;
    if span.start > text.len() || !text.is_char_boundary(span.start) {
        return None;
    }
    let start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let end = text[span.start..]
        .find('\n')
        .map_or(text.len(), |i| span.start + i);
    if span.end > end {
        return None;
    }
    let (key, value) = text[start..end].split_once('=')?;
    let key = key.trim().trim_matches('"').to_string();
    let plain_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if !plain_key || !balanced(value) {
        return None;
    }
    text.replace_range(start..end, &" ".repeat(end - start));
    Some(key)
}

/// Whether a one-line TOML value closes every string, array and table it
/// opens.
fn balanced(value: &str) -> bool {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in value.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' | '{' => depth += 1,
                ']' | '}' => depth -= 1,
                '#' => break,
                _ => {}
            },
        }
        if depth < 0 {
            return false;
        }
    }
    quote.is_none() && depth == 0
}

/// Pulls the field and the accepted names out of serde's
/// "unknown field `x`, expected one of `a`, `b`" message.
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((field.to_string(), expected))
}

/// The closest name, if close enough to be a typo: one edit (a swap counts
/// as one) for short names, two for longer ones, or a strong Jaro-Winkler
/// likeness, which catches prefixes such as `serail`/`serial`.
pub(crate) fn suggest(field: &str, expected: &[String]) -> Option<String> {
    let allowed = if field.chars().count() > 6 { 2 } else { 1 };
    expected
        .iter()
        .map(|name| {
            let edits = strsim::damerau_levenshtein(field, name);
            let likeness = strsim::jaro_winkler(field, name);
            (edits, likeness, name)
        })
        .filter(|(edits, likeness, _)| *edits <= allowed || *likeness > 0.8)
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, name)| name.clone())
}

const SECRET_WORDS: [&str; 13] = [
    // Webhook URLs carry their token in the path.
    "webh",
    "hook",
    "url",
    "pass",
    "pwd",
    "token",
    "secret",
    "private",
    "key",
    "credential",
    "auth",
    "cookie",
    "signature",
];

/// Whether a line assigns a key that looks secret, anywhere on it (inline
/// tables included), or holds key material.
fn looks_secret(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    let keys = lower.split('=').rev().skip(1).map(|before| {
        before
            .trim_end()
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '"'))
            .next()
            .unwrap_or("")
            .to_string()
    });
    keys.into_iter()
        .any(|key| SECRET_WORDS.iter().any(|w| key.contains(w)))
        || line.contains("PRIVATE KEY")
}

/// A message with every double-quoted part blanked: TOML's type errors quote
/// the offending value, which on a secret line (or a multi-line string
/// starting there) is the secret.
fn blank_quoted(message: &str) -> String {
    message
        .split('"')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { "***" } else { part })
        .collect::<Vec<_>>()
        .join("\"")
}

/// The values a secret line assigns, so they can be blanked out of messages.
fn secret_values(line: &str) -> Vec<&str> {
    line.split('=')
        .skip(1)
        .map(|value| value.trim().trim_start_matches(['"', '\'']))
        .map(|value| {
            value
                .split(['"', '\'', ',', '}'])
                .next()
                .unwrap_or("")
                .trim()
        })
        .filter(|value| value.len() >= 3)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns() {
        let source = Source::new("a.toml", "a = 1\nbb = 2\n");
        assert_eq!(source.locate(0), (1, 1));
        assert_eq!(source.locate(6), (2, 1));
        assert_eq!(source.locate(9), (2, 4));
    }

    #[test]
    fn never_echoes_a_secret_in_an_inline_table_or_a_message() {
        let source = Source::new("a.toml", "vars = { db_password = \"hunter2\" }\n");
        let diagnostic = source.error(0..4, "invalid value \"hunter2\"");
        assert_eq!(diagnostic.snippet, None);
        assert!(!diagnostic.to_string().contains("hunter2"), "{diagnostic}");
        assert!(!looks_secret("name = \"token ring\""));
        let source = Source::new("a.toml", "ssh_key = \"\"\"\n-----BEGIN\nabc\n\"\"\"\n");
        let diagnostic = source.error(
            10..30,
            "invalid type: string \"-----BEGIN\\nabc\", expected u16",
        );
        assert!(!diagnostic.to_string().contains("abc"), "{diagnostic}");
        assert!(looks_secret("db_passwd = 1") && looks_secret("apikey = 1"));
    }

    #[test]
    fn finds_every_shape_error_in_one_file() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Play {
            name: String,
            retries: u32,
            timeout: Option<String>,
        }
        let source = Source::new(
            "p.toml",
            "name = \"p\"\nserail = 1\nretries = \"many\"\ntimeout = 5\n",
        );
        let found = source.parse_all::<Play>().expect_err("three errors");
        let lines: Vec<usize> = found.iter().map(|d| d.line).collect();
        assert_eq!(lines, [2, 3, 4], "{found:?}");
        // Taking out a required key reports no invented "missing field".
        let source = Source::new("p.toml", "name = 5\nretries = 1\n");
        assert_eq!(source.parse_all::<Play>().expect_err("one error").len(), 1);
        // A syntax error stops recovery.
        let source = Source::new("p.toml", "name = \"p\nretries = \"x\"\n");
        assert_eq!(source.parse_all::<Play>().expect_err("syntax").len(), 1);
    }

    #[test]
    fn never_echoes_a_secret_line() {
        let source = Source::new("a.toml", "password = \"hunter2\"\n");
        let diagnostic = source.error(0..8, "bad");
        assert_eq!(diagnostic.snippet, None);
        assert!(!diagnostic.to_string().contains("hunter2"));
    }

    #[test]
    fn suggests_the_nearest_key() {
        let expected = vec!["serial".to_string(), "steps".to_string()];
        assert_eq!(suggest("serail", &expected).as_deref(), Some("serial"));
        assert_eq!(suggest("zzz", &expected), None);
        let groups = vec!["web".to_string(), "db".to_string()];
        assert_eq!(suggest("wbe", &groups).as_deref(), Some("web"));
    }
}
