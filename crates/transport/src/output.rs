use std::fmt;

/// How a command on a host ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    /// Killed by a signal, by name (`TERM`, `KILL`).
    Signal(String),
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        *self == Self::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit {code}"),
            Self::Signal(name) => write!(f, "killed by SIG{name}"),
        }
    }
}

/// Which stream a line of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A stream's output kept within bounds: its first and last bytes, and how
/// much was left out between them. Commands such as `apt-get upgrade` print
/// megabytes; the catalog and the terminal need the start and the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    total: u64,
}

impl Captured {
    /// Bytes kept at each end.
    pub const KEEP: usize = 32 * 1024;

    pub fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = Self::KEEP.saturating_sub(self.head.len());
        let (head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(head);
        self.tail.extend(rest);
        let excess = self.tail.len().saturating_sub(Self::KEEP);
        self.tail.drain(..excess);
    }

    /// Everything seen, in bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes dropped from the middle.
    pub fn omitted(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }

    pub fn head(&self) -> &[u8] {
        &self.head
    }

    pub fn tail(&self) -> Vec<u8> {
        self.tail.iter().copied().collect()
    }

    /// The kept text, with a marker where bytes were left out.
    pub fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.omitted() > 0 {
            text.push_str(&format!("\n[... {} bytes omitted ...]\n", self.omitted()));
        }
        text.push_str(&String::from_utf8_lossy(&self.tail()));
        text
    }
}

/// What a finished command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Captured,
    pub stderr: Captured,
}

/// Splits a byte stream into lines for live display, whatever the chunking.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    pub(crate) fn feed(&mut self, bytes: &[u8], mut each: impl FnMut(&str)) {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            each(String::from_utf8_lossy(&line[..line.len() - 1]).trim_end_matches('\r'));
        }
        if self.partial.len() > Captured::KEEP {
            let line: Vec<u8> = std::mem::take(&mut self.partial);
            each(&String::from_utf8_lossy(&line));
        }
    }

    pub(crate) fn finish(&mut self, mut each: impl FnMut(&str)) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            each(&String::from_utf8_lossy(&line));
        }
    }
}

/// A POSIX shell word that stands for `text` exactly.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_head_and_tail_of_long_output() {
        let mut c = Captured::default();
        let chunk = vec![b'x'; 10_000];
        for _ in 0..20 {
            c.push(&chunk);
        }
        c.push(b"END");
        assert_eq!(c.total(), 200_003);
        assert_eq!(c.head().len(), Captured::KEEP);
        assert!(c.tail().ends_with(b"END"));
        assert_eq!(c.omitted(), 200_003 - 2 * Captured::KEEP as u64);
        assert!(c.text().contains("bytes omitted"));
    }

    #[test]
    fn lines_survive_any_chunking() {
        let mut lines = Lines::default();
        let mut seen = Vec::new();
        for chunk in [&b"one\ntw"[..], b"o\r\n", b"three"] {
            lines.feed(chunk, |l| seen.push(l.to_string()));
        }
        lines.finish(|l| seen.push(l.to_string()));
        assert_eq!(seen, ["one", "two", "three"]);
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
