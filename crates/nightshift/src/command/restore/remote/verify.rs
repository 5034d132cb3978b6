//! The proof of a restore: SHA-256 of every file that landed, computed on
//! the host with what it has and compared with the hashes taken as the
//! store wrote the stream.

use std::collections::HashMap;

use nightshift_transport::{Host, shell_quote};
use tokio::io::AsyncReadExt;

use super::command;

/// At most this many hashing processes per host: beyond it the disk, not
/// the CPU, is what they wait for.
const MAX_HASHERS: usize = 8;

/// SHA-256 of every regular file under `dir` on the host, by its path
/// relative to `dir` as raw bytes.
///
/// The host hashes with `openssl dgst` when it has it (several times
/// faster than coreutils' `sha256sum` on most CPUs) and with `sha256sum`
/// otherwise, in one process per CPU, each over its share of the files
/// (`split -n r/K/N`) on its own channel, so their outputs never mix.
pub(super) async fn hashes(
    host: &Host,
    dir: &str,
    become_root: bool,
    cpus: usize,
) -> anyhow::Result<HashMap<Vec<u8>, String>> {
    let workers = cpus.clamp(1, MAX_HASHERS);
    let lines = (1..=workers).map(|k| {
        let share = if workers == 1 {
            String::new()
        } else {
            format!(" | split -t '\\0' -n r/{k}/{workers}")
        };
        let line = format!(
            "cd -P -- {} && if command -v openssl >/dev/null 2>&1; then h='openssl dgst -sha256 -r'; \
             else h=sha256sum; fi; \
             find . -type f -print0{share} | xargs -0 -r $h",
            shell_quote(dir),
        );
        share_of(host, command(line, become_root))
    });
    let shares = futures::future::try_join_all(lines).await?;
    Ok(shares.into_iter().flatten().collect())
}

async fn share_of(
    host: &Host,
    command: nightshift_transport::Command,
) -> anyhow::Result<Vec<(Vec<u8>, String)>> {
    let mut reading = host.read_stream(&command).await?;
    let mut text = Vec::new();
    reading.read_to_end(&mut text).await?;
    let out = reading.finish().await?;
    anyhow::ensure!(
        out.status.success(),
        "hashing what landed failed: {}",
        out.stderr.text().trim()
    );
    Ok(text.split(|&b| b == b'\n').filter_map(parse_sum).collect())
}

/// One line of `sha256sum` (`HASH  ./PATH`) or `openssl dgst -r`
/// (`HASH *./PATH`); both start with a backslash and escape the path's
/// backslashes, newlines (and carriage returns, in newer coreutils) when
/// it has any. Paths are bytes: a name need not be UTF-8.
fn parse_sum(line: &[u8]) -> Option<(Vec<u8>, String)> {
    let (escaped, line) = match line.strip_prefix(b"\\") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (hash, path) = line.split_at_checked(64)?;
    let hash = std::str::from_utf8(hash).ok()?;
    if !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let path = path
        .strip_prefix(b"  ")
        .or_else(|| path.strip_prefix(b" *"))?;
    let path = path.strip_prefix(b"./").unwrap_or(path);
    let path = if escaped {
        unescape(path)
    } else {
        path.to_vec()
    };
    Some((path, hash.to_string()))
}

/// Undoes `\n`, `\r` and `\\` in one pass, so `\\n` reads as a backslash
/// and an `n`.
fn unescape(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut bytes = path.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        let unescaped = match (b, bytes.peek()) {
            (b'\\', Some(b'n')) => Some(b'\n'),
            (b'\\', Some(b'r')) => Some(b'\r'),
            (b'\\', Some(b'\\')) => Some(b'\\'),
            _ => None,
        };
        match unescaped {
            Some(c) => {
                out.push(c);
                bytes.next();
            }
            None => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_sum;

    const HASH: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

    #[test]
    fn reads_sha256sum_and_openssl_lines() {
        let plain = format!("{HASH}  ./etc/x y");
        let openssl = format!("{HASH} *./etc/x y");
        for line in [plain, openssl] {
            assert_eq!(
                parse_sum(line.as_bytes()),
                Some((b"etc/x y".to_vec(), HASH.to_string()))
            );
        }
    }

    #[test]
    fn undoes_the_escaping_of_newlines_and_backslashes() {
        let line = format!("\\{HASH}  ./a\\nb\\\\nc\\rd");
        assert_eq!(
            parse_sum(line.as_bytes()),
            Some((b"a\nb\\nc\rd".to_vec(), HASH.to_string()))
        );
    }

    #[test]
    fn keeps_names_that_are_not_utf8_and_tabs_as_bytes() {
        let mut line = format!("{HASH}  ./caf").into_bytes();
        line.extend_from_slice(b"\xe9\tx");
        assert_eq!(
            parse_sum(&line),
            Some((b"caf\xe9\tx".to_vec(), HASH.to_string()))
        );
    }

    #[test]
    fn ignores_what_is_not_a_digest_line() {
        for line in ["sha256sum: ./x: Permission denied", "", "short  ./x"] {
            assert_eq!(parse_sum(line.as_bytes()), None, "{line}");
        }
    }
}
