//! The proof of a restore: SHA-256 of every file that landed, computed on
//! the host and compared with the hashes taken as the store wrote the
//! stream.
//!
//! Names are bytes, so they are read exactly. With `openssl dgst` (first:
//! it uses the CPU's SHA extensions), whose lines escape a newline but not
//! a backslash, no name is read back from a line: each digest is paired
//! with its NUL-terminated name by position (see [`read_sums`]). Without it,
//! `sha256sum -z` (NUL after each line, names as they are), and last
//! `sha256sum`'s escaped lines (a leading `\`, and `\\`, `\n`, `\r` in the
//! name), undone here.

use std::collections::HashMap;

use nightshift_transport::{Host, shell_quote};
use tokio::io::AsyncReadExt;

use super::{Commands, RestoreError};

/// At most this many hashing processes per host: beyond it the disk, not
/// the CPU, is what they wait for.
const MAX_HASHERS: usize = 8;

/// SHA-256 of every regular file under `dir` on the host, by its path
/// relative to `dir` as raw bytes.
///
/// The host hashes in one process per CPU, each over its share of the
/// files (`split -n r/K/N`) on its own channel, so their outputs never mix.
/// All of them start before any is read, and all are read together.
pub(super) async fn hashes(
    host: &Host,
    dir: &str,
    commands: &Commands,
    cpus: usize,
) -> Result<HashMap<Vec<u8>, String>, RestoreError> {
    let workers = cpus.clamp(1, MAX_HASHERS);
    let mut readings = Vec::with_capacity(workers);
    for k in 1..=workers {
        let share = if workers == 1 {
            String::new()
        } else {
            format!(" | split -t '\\0' -n r/{k}/{workers}")
        };
        let line = format!(
            "cd -P -- {} && if openssl dgst -sha256 -r /dev/null >/dev/null 2>&1; then \
             printf 'openssl\\0'; find . -type f -print0{share} | \
             xargs -0 -r sh -c 'printf \"%s\\0\" \"$#\" \"$@\"; exec openssl dgst -sha256 -r \"$@\"' sh; \
             else if sha256sum -z /dev/null >/dev/null 2>&1; then h='sha256sum -z'; \
             else h=sha256sum; fi; \
             find . -type f -print0{share} | xargs -0 -r $h; fi",
            shell_quote(dir),
        );
        readings.push(host.read_stream(&commands.command(line)).await?);
    }
    // Read all at once: the host's answers share one connection, and a
    // channel left unread while another is read to its end can hold up
    // what arrives behind it on the connection, that channel's end too.
    let outputs = futures::future::join_all(readings.into_iter().map(|mut reading| async move {
        let mut text = Vec::new();
        let read = reading.read_to_end(&mut text).await;
        (text, read, reading.finish().await)
    }))
    .await;
    let mut found = HashMap::new();
    for (text, read, out) in outputs {
        let out = out?;
        if !out.status.success() {
            return Err(RestoreError::Hashing(out.stderr.text().trim().to_string()));
        }
        read.map_err(|err| RestoreError::Hashing(err.to_string()))?;
        found.extend(read_sums(&text));
    }
    Ok(found)
}

/// Every digest the host printed, by name. With `openssl` (first, for
/// its speed: it uses the CPU's SHA extensions) each batch of files comes
/// as its count and names, NUL-terminated, then one line per file in the
/// same order, so a digest is paired with its name by position and the
/// line's own copy of the name (escaped in a way that cannot tell every
/// name apart) is not read. Otherwise `sha256sum`'s lines: NUL-terminated
/// (`-z`, names as they are) when there is a NUL, escaped lines otherwise.
pub(super) fn read_sums(text: &[u8]) -> Vec<(Vec<u8>, String)> {
    if let Some(batches) = text.strip_prefix(b"openssl\0") {
        return read_paired(batches);
    }
    let end = if text.contains(&0) { 0 } else { b'\n' };
    text.split(move |&b| b == end)
        .filter_map(parse_sum)
        .collect()
}

/// `COUNT\0NAME\0…` then COUNT lines `[\\]HASH *NAME`, batch after batch.
/// A line that is not a digest pairs with nothing; a shortfall ends it.
fn read_paired(mut rest: &[u8]) -> Vec<(Vec<u8>, String)> {
    fn field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let end = bytes.iter().position(|&b| b == 0)?;
        Some((&bytes[..end], &bytes[end + 1..]))
    }
    let mut out = Vec::new();
    while let Some((count, after)) = field(rest) {
        let Some(count) = std::str::from_utf8(count)
            .ok()
            .and_then(|c| c.parse::<usize>().ok())
        else {
            break;
        };
        rest = after;
        let mut names = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let Some((name, after)) = field(rest) else {
                return out;
            };
            names.push(name.strip_prefix(b"./").unwrap_or(name));
            rest = after;
        }
        for name in names {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let line = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or_default();
            let line = line.strip_prefix(b"\\").unwrap_or(line);
            if let Some(hash) = line
                .get(..64)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            {
                out.push((name.to_vec(), String::from_utf8_lossy(hash).into_owned()));
            }
        }
    }
    out
}

/// One line of `sha256sum` (`HASH  ./PATH`) or `openssl dgst -r`
/// (`HASH *./PATH`); both start with a backslash and escape the path's
/// backslashes, newlines (and carriage returns, in newer coreutils) when
/// it has any. Paths are bytes: a name need not be UTF-8.
pub(super) fn parse_sum(line: &[u8]) -> Option<(Vec<u8>, String)> {
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
    use super::{parse_sum, read_sums};

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

    /// What this machine's own `sha256sum`, with `-z` and without,
    /// prints for names with backslashes and newlines reads back as those
    /// names.
    #[test]
    fn reads_the_real_tools_output_for_names_with_backslashes_and_newlines() {
        use std::os::unix::ffi::OsStrExt;
        let work = tempfile::tempdir().expect("tempdir");
        let names: [&[u8]; 3] = [b"back\\slash\nnew\\n", b"\\n", b"plain"];
        for name in names {
            let path = work.path().join(std::ffi::OsStr::from_bytes(name));
            std::fs::write(path, "a").expect("write");
        }
        let openssl = "printf 'openssl\\0'; find . -type f -print0 | xargs -0 -r -n 2 sh -c \
            'printf \"%s\\0\" \"$#\" \"$@\"; exec openssl dgst -sha256 -r \"$@\"' sh";
        for tool in ["xargs -0 sha256sum -z", "xargs -0 sha256sum", "openssl"] {
            let line = match tool {
                "openssl" => openssl.to_string(),
                _ => format!("find . -type f -print0 | {tool}"),
            };
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(line)
                .current_dir(work.path())
                .output()
                .expect("sh");
            assert!(out.status.success(), "{tool}");
            let mut parsed = read_sums(&out.stdout);
            parsed.sort();
            let mut expected: Vec<_> = names
                .iter()
                .map(|n| (n.to_vec(), HASH.to_string()))
                .collect();
            expected.sort();
            assert_eq!(parsed, expected, "{tool}");
        }
    }
}
