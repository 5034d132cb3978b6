//! Host-key verification against OpenSSH `known_hosts` files.
//!
//! Entries are parsed with `ssh-key`'s parser (re-exported by russh), one line
//! at a time so that a changed or revoked key can be reported with its file
//! and line. Host patterns follow OpenSSH: comma lists, `*` and `?`
//! wildcards, `!` negations, `[host]:port` for other ports, and hashed names
//! (`|1|salt|hash`, HMAC-SHA1). The wildcard matcher is written here because
//! OpenSSH's patterns have no character classes, so a glob crate would read
//! the brackets of `[host]:port` wrongly.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use russh::keys::{HashAlg, PublicKey};

/// What the known_hosts files say about a presented host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    /// No entry for this host with this key type.
    Unknown,
    /// The host is known with a different key of the same type.
    Changed {
        file: PathBuf,
        line: usize,
    },
    Revoked {
        file: PathBuf,
        line: usize,
    },
}

#[derive(Debug, Clone)]
struct Line {
    file: PathBuf,
    number: usize,
    entry: Entry,
}

/// Every entry of one or more known_hosts files, in order.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    lines: Vec<Line>,
    /// Where `nightshift hosts trust` records new keys.
    own: Option<PathBuf>,
}

impl KnownHosts {
    /// Reads the project's own file (where trusted keys are recorded) and
    /// any others; a missing file is an empty one, a line that does not
    /// parse is skipped with a warning, as OpenSSH does.
    pub fn load(own: &Path, others: &[PathBuf]) -> std::io::Result<Self> {
        let mut hosts = Self {
            lines: Vec::new(),
            own: Some(own.to_path_buf()),
        };
        for path in std::iter::once(own).chain(others.iter().map(PathBuf::as_path)) {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            hosts.add_text(path, &text);
        }
        Ok(hosts)
    }

    fn add_text(&mut self, path: &Path, text: &str) {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            match line.parse::<Entry>() {
                Ok(entry) => self.lines.push(Line {
                    file: path.to_path_buf(),
                    number: i + 1,
                    entry,
                }),
                Err(err) => {
                    tracing::warn!(file = %path.display(), line = i + 1, %err, "skipping unreadable known_hosts line")
                }
            }
        }
    }

    /// Parses known_hosts text as if read from `path` (for tests and tools).
    pub fn from_text(path: &Path, text: &str) -> Self {
        let mut hosts = Self::default();
        hosts.add_text(path, text);
        hosts
    }

    /// The file new keys are recorded in.
    pub fn own_file(&self) -> Option<&Path> {
        self.own.as_deref()
    }

    /// Judges the key `host` presented on `port`.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        let name = host_key_name(host, port);
        let matching: Vec<&Line> = self
            .lines
            .iter()
            .filter(|l| matches_host(l.entry.host_patterns(), &name))
            .collect();
        let same_key = |l: &&&Line| l.entry.public_key().key_data() == key.key_data();
        if let Some(l) = matching
            .iter()
            .find(|l| l.entry.marker() == Some(&Marker::Revoked) && same_key(l))
        {
            return Verdict::Revoked {
                file: l.file.clone(),
                line: l.number,
            };
        }
        let plain: Vec<&&Line> = matching
            .iter()
            .filter(|l| l.entry.marker().is_none())
            .collect();
        if plain.iter().any(same_key) {
            return Verdict::Trusted;
        }
        match plain
            .iter()
            .find(|l| l.entry.public_key().algorithm() == key.algorithm())
        {
            Some(l) => Verdict::Changed {
                file: l.file.clone(),
                line: l.number,
            },
            None => Verdict::Unknown,
        }
    }

    /// Appends `key` for `host:port` to the project's own file.
    pub fn record(&mut self, host: &str, port: u16, key: &PublicKey) -> std::io::Result<PathBuf> {
        let path = self
            .own
            .clone()
            .ok_or_else(|| std::io::Error::other("no known_hosts file to record keys in"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        use std::os::unix::fs::OpenOptionsExt;
        let mut public = key.clone();
        public.set_comment("");
        let line = format!(
            "{} {}",
            host_key_name(host, port),
            public.to_openssh().map_err(std::io::Error::other)?
        );
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        writeln!(file, "{}", line.trim_end())?;
        file.sync_all()?;
        let text = std::fs::read_to_string(&path)?;
        self.lines.retain(|l| l.file != path);
        self.add_text(&path, &text);
        Ok(path)
    }
}

/// How OpenSSH names a host in known_hosts: `host`, or `[host]:port`.
pub fn host_key_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

fn matches_host(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                return false;
            };
            mac.update(name.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(patterns) => {
            let mut matched = false;
            for pattern in patterns {
                match pattern.strip_prefix('!') {
                    Some(negated) if wildcard(negated, name) => return false,
                    Some(_) => {}
                    None => matched |= wildcard(pattern, name),
                }
            }
            matched
        }
    }
}

/// OpenSSH's `match_pattern`: `*` any run, `?` any one character,
/// case-insensitive as host names are.
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (
        pattern.to_ascii_lowercase().chars().collect(),
        name.to_ascii_lowercase().chars().collect(),
    );
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A key's fingerprint the way OpenSSH prints it: `SHA256:...`.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The short key type OpenSSH shows in parentheses: `ED25519`, `ECDSA`, `RSA`.
pub fn key_type(key: &PublicKey) -> KeyType<'_> {
    KeyType(key)
}

#[derive(Debug)]
pub struct KeyType<'a>(&'a PublicKey);

impl fmt::Display for KeyType<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.0.algorithm().as_str().to_ascii_uppercase();
        let short = if name.contains("ED25519") {
            "ED25519"
        } else if name.contains("ECDSA") {
            "ECDSA"
        } else if name.contains("RSA") {
            "RSA"
        } else {
            name.as_str()
        };
        f.write_str(short)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMvRDuXjPXlZK9YbEaxTY8Wol7dVbfTFBRtsD2ghCt2b";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHlHFLNoUaJdxi3p9pEU5ZRu3AOsl6DLZzErqB9U4Lh2";

    fn key(text: &str) -> PublicKey {
        text.parse().expect("public key")
    }

    fn hosts(text: &str) -> KnownHosts {
        KnownHosts::from_text(Path::new("known_hosts"), text)
    }

    #[test]
    fn trusts_a_listed_key_and_refuses_others() {
        let known = hosts(&format!("web1,10.0.0.1 {ED}\n[web2]:2222 {ED}\n"));
        assert_eq!(known.check("web1", 22, &key(ED)), Verdict::Trusted);
        assert_eq!(known.check("10.0.0.1", 22, &key(ED)), Verdict::Trusted);
        assert_eq!(known.check("web2", 2222, &key(ED)), Verdict::Trusted);
        assert_eq!(known.check("web2", 22, &key(ED)), Verdict::Unknown);
        assert_eq!(
            known.check("web1", 22, &key(ED2)),
            Verdict::Changed {
                file: "known_hosts".into(),
                line: 1
            }
        );
    }

    #[test]
    fn honours_revoked_wildcards_and_negations() {
        let known = hosts(&format!(
            "# comment\n\n*.example.org,!bad.example.org {ED}\n@revoked * {ED2}\n"
        ));
        assert_eq!(known.check("a.example.org", 22, &key(ED)), Verdict::Trusted);
        assert_eq!(
            known.check("bad.example.org", 22, &key(ED)),
            Verdict::Unknown
        );
        assert_eq!(
            known.check("a.example.org", 22, &key(ED2)),
            Verdict::Revoked {
                file: "known_hosts".into(),
                line: 4
            }
        );
    }

    #[test]
    fn matches_hashed_names() {
        // `ssh-keygen -H` output for "web1" with a fixed salt.
        let salt = [7u8; 20];
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&salt).expect("hmac");
        mac.update(b"web1");
        let hash = mac.finalize().into_bytes();
        use russh::keys::ssh_encoding::base64::{Base64, Encoding};
        let line = format!(
            "|1|{}|{} {ED}\n",
            Base64::encode_string(&salt),
            Base64::encode_string(&hash)
        );
        let known = hosts(&line);
        assert_eq!(known.check("web1", 22, &key(ED)), Verdict::Trusted);
        assert_eq!(known.check("web2", 22, &key(ED)), Verdict::Unknown);
    }

    #[test]
    fn wildcards_follow_openssh() {
        assert!(wildcard("web?.example.*", "WEB1.example.org"));
        assert!(wildcard("[10.0.0.*]:2222", "[10.0.0.5]:2222"));
        assert!(!wildcard("web?", "web10"));
        assert!(wildcard("*", ""));
    }
}
