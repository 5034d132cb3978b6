//! Putting a restore in place on a host without writing through a link
//! that someone else made.
//!
//! A user who can write into the target tree can plant a symbolic link
//! where the snapshot has a directory, or swap a directory for one while the
//! restore runs; `tar -x` would follow it, and with `--become` root would
//! write wherever the link points. So the stream is unpacked into a private
//! staging directory (mode 0700, created by the restore, inside the target so
//! it is on the same file system), and its entries are then renamed into
//! place by a script that enters each existing directory of the target one
//! level at a time, refuses a link, and checks with `pwd -P` that it stands
//! where it meant to; every rename is then relative to that directory, and a
//! rename never follows the name it replaces. A directory that does not
//! exist at the target is moved in whole, in one rename.
//!
//! The same script, run without moving anything, is the conflict check, so
//! the check and the move agree on every name. Names travel inside the
//! script as single-quoted raw bytes (any byte but NUL), and the host answers
//! with entry numbers, never with names, so nothing is lost to decoding or to
//! a newline in a name. Only POSIX sh and GNU coreutils are needed.

use std::fmt::Write as _;

/// One entry of a restore, as the stream and the scripts name it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The path relative to the target, for messages (lossy).
    pub path: String,
    /// The same path as raw bytes.
    pub raw: Vec<u8>,
    /// The entry holding this one, by index; `None` for a top entry.
    pub parent: Option<usize>,
    pub dir: bool,
    pub file: bool,
    pub size: u64,
}

impl Entry {
    fn name(&self) -> &[u8] {
        match self.raw.iter().rposition(|&b| b == b'/') {
            Some(at) => &self.raw[at + 1..],
            None => &self.raw,
        }
    }
}

/// Whether the script only looks or also moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Reports what is in the way; changes nothing.
    Check,
    /// Renames the staged entries into place, then removes the staging dir.
    Move,
}

/// The shell functions every script starts with. `$1` is an entry's
/// number, `$2` its name, `$3` its path in the staging directory.
const PRELUDE: &str = r#"set -u
say() { printf '%s %s\n' "$1" "$2" >&2; }
here() { h=$(pwd -P && echo .); h=${h%??}; }
enter() {
  here; p=$h
  cd -P -- "./$2" 2>/dev/null && here && [ "$h" = "$p/$2" ] && return 0
  say raced "$1"; return 1
}
put() {
  [ "$M" = move ] || return 0
  mv -n -T -- "$src/$3" "./$2" 2>/dev/null
  if [ -e "$src/$3" ] || [ -L "$src/$3" ]; then say kept "$1"; fi
}
replace() { [ "$M" = move ] && [ "$O" = 1 ]; }
other() {
  if replace; then rm -f -- "./$2" && put "$@"; else say exists "$1"; fi
}
f() {
  if [ -d "./$2" ] && [ ! -L "./$2" ]; then say blocked "$1"; return 0; fi
  if [ -e "./$2" ] || [ -L "./$2" ]; then
    if replace; then mv -f -T -- "$src/$3" "./$2" 2>/dev/null || say failed "$1"
    else say exists "$1"; fi
    return 0
  fi
  put "$@"
}
"#;

/// The script that checks (or performs) putting `entries`, staged in
/// `staging` under `target`, into place. It is read by `sh -s`.
pub(crate) fn script(
    entries: &[Entry],
    target: &str,
    staging: &str,
    pass: Pass,
    overwrite: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(PRELUDE.len() + entries.len() * 64);
    out.extend_from_slice(PRELUDE.as_bytes());
    let mut head = String::new();
    let _ = writeln!(
        head,
        "M={}; O={}",
        if pass == Pass::Move { "move" } else { "check" },
        u8::from(overwrite)
    );
    let _ = writeln!(head, "echo \"cpus $(nproc 2>/dev/null || echo 1)\" >&2");
    head.push_str("cd -P -- ");
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&quote(target.as_bytes()));
    let mut head = String::new();
    let _ = writeln!(head, " 2>/dev/null || {{ say gone -; exit 0; }}");
    let _ = writeln!(head, "here; src=\"$h/{staging}\"");
    if pass == Pass::Move {
        // Only a directory this user made, that no one else can write
        // into, is taken for the staging directory.
        let _ = writeln!(
            head,
            "[ \"$(stat -c %u:%a -- \"$src\" 2>/dev/null)\" = \"$(id -u):700\" ] || {{ say unsafe -; exit 3; }}"
        );
    }
    out.extend_from_slice(head.as_bytes());
    let mut children = vec![Vec::new(); entries.len()];
    let mut tops = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        match entry.parent {
            Some(parent) => children[parent].push(index),
            None => tops.push(index),
        }
    }
    for top in tops {
        emit(&mut out, entries, &children, top);
    }
    if pass == Pass::Move {
        out.extend_from_slice(b"cd / && rm -rf -- \"$src\"\n");
    }
    out
}

fn emit(out: &mut Vec<u8>, entries: &[Entry], children: &[Vec<usize>], index: usize) {
    let entry = &entries[index];
    let (name, path) = (quote(entry.name()), quote(&entry.raw));
    let line = |out: &mut Vec<u8>, parts: &[&[u8]]| {
        for part in parts {
            out.extend_from_slice(part);
        }
        out.push(b'\n');
    };
    let number = index.to_string();
    let n = number.as_bytes();
    if !entry.dir {
        line(out, &[b"f ", n, b" ", &name, b" ", &path]);
        return;
    }
    line(out, &[b"if [ -L ./", &name[..], b" ]; then say linked ", n]);
    line(
        out,
        &[
            b"elif [ -d ./",
            &name[..],
            b" ]; then (enter ",
            n,
            b" ",
            &name,
            b" || exit 0",
        ],
    );
    for &child in &children[index] {
        emit(out, entries, children, child);
    }
    line(out, &[b")"]);
    line(
        out,
        &[
            b"elif [ -e ./",
            &name[..],
            b" ]; then other ",
            n,
            b" ",
            &name,
            b" ",
            &path,
        ],
    );
    line(out, &[b"else put ", n, b" ", &name, b" ", &path, b"; fi"]);
}

/// `'bytes'`, with each `'` written as `'\''`: sh takes every other byte
/// inside single quotes as it is.
fn quote(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.push(b'\'');
    for &b in bytes {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// What the host said about the entries, by kind.
#[derive(Debug, Default)]
pub struct Answer {
    /// Files and links that exist where the restore writes.
    pub exists: Vec<usize>,
    /// Directories of the snapshot that are symbolic links at the target.
    pub linked: Vec<usize>,
    /// Directories at the target where the snapshot has a file.
    pub blocked: Vec<usize>,
    /// Entries not put in place: something appeared there meanwhile, a
    /// directory changed under the script, or a rename failed.
    pub not_placed: Vec<(usize, &'static str)>,
    pub cpus: usize,
    /// The target did not exist.
    pub gone: bool,
    /// Lines that are none of these (errors of the shell or its tools).
    pub other: Vec<String>,
}

impl Answer {
    pub(crate) fn read(stderr: &[u8], pass: Pass) -> Self {
        let mut answer = Self {
            cpus: 1,
            ..Self::default()
        };
        for line in stderr.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let text = String::from_utf8_lossy(line);
            let Some((kind, value)) = text.split_once(' ') else {
                answer.other.push(text.into_owned());
                continue;
            };
            let index = value.parse::<usize>().ok();
            match (kind, index) {
                ("cpus", Some(n)) => answer.cpus = n.max(1),
                ("exists", Some(i)) if pass == Pass::Check => answer.exists.push(i),
                ("exists", Some(i)) => answer
                    .not_placed
                    .push((i, "it appeared at the target during the restore; it was kept")),
                ("linked", Some(i)) if pass == Pass::Check => answer.linked.push(i),
                ("linked", Some(i)) => answer
                    .not_placed
                    .push((i, "a symbolic link appeared where the snapshot has a directory")),
                ("blocked", Some(i)) if pass == Pass::Check => answer.blocked.push(i),
                ("blocked", Some(i)) => answer
                    .not_placed
                    .push((i, "a directory is where the snapshot has a file")),
                ("raced", Some(i)) => answer.not_placed.push((
                    i,
                    "the directory changed while the restore entered it (a link or a move); nothing written below it",
                )),
                ("kept", Some(i)) => answer
                    .not_placed
                    .push((i, "something appeared there during the restore; it was kept")),
                ("failed", Some(i)) => answer.not_placed.push((i, "it could not be renamed into place")),
                ("gone", _) => answer.gone = true,
                _ => answer.other.push(text.into_owned()),
            }
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(raw: &[u8], parent: Option<usize>, dir: bool) -> Entry {
        Entry {
            path: String::from_utf8_lossy(raw).into_owned(),
            raw: raw.to_vec(),
            parent,
            dir,
            file: !dir,
            size: 0,
        }
    }

    #[test]
    fn names_are_quoted_as_raw_bytes() {
        assert_eq!(quote(b"it's"), b"'it'\\''s'");
        assert_eq!(quote(b"a\nb\t\xff-"), b"'a\nb\t\xff-'");
    }

    #[test]
    fn a_directory_is_entered_or_moved_whole_and_files_are_put_one_by_one() {
        let entries = [
            entry(b"site", None, true),
            entry(b"site/co\nnf", Some(0), true),
            entry(b"site/co\nnf/a", Some(1), false),
        ];
        let text = script(&entries, "/srv/r", ".stage", Pass::Move, false);
        let text = String::from_utf8(text).expect("utf-8 here");
        assert!(text.contains("M=move; O=0\n"), "{text}");
        assert!(
            text.contains("if [ -L ./'site' ]; then say linked 0\n"),
            "{text}"
        );
        assert!(
            text.contains("(enter 1 'co\nnf' || exit 0\nf 2 'a' 'site/co\nnf/a'\n)"),
            "{text}"
        );
        assert!(text.contains("else put 0 'site' 'site'; fi\n"), "{text}");
        assert!(text.ends_with("cd / && rm -rf -- \"$src\"\n"), "{text}");
    }

    /// The move pass on this machine's own sh: a link planted after the
    /// check where the snapshot has a directory (its name of odd bytes) is
    /// refused, nothing lands where it points, and the rest is placed.
    #[test]
    fn a_link_planted_after_the_check_is_never_written_through() {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::PermissionsExt;
        let work = tempfile::tempdir().expect("tempdir");
        let (target, outside) = (work.path().join("target"), work.path().join("outside"));
        let odd: &[u8] = b"-co\tn\xff\nf";
        let odd_os = std::ffi::OsStr::from_bytes(odd);
        let staging = target.join(".stage");
        std::fs::create_dir_all(staging.join("site").join(odd_os)).expect("mkdir");
        std::fs::create_dir_all(staging.join("site/new")).expect("mkdir");
        std::fs::write(staging.join("site").join(odd_os).join("x"), "x").expect("write");
        std::fs::write(staging.join("site/new/y"), "y").expect("write");
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::create_dir_all(target.join("site")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, target.join("site").join(odd_os)).expect("link");
        let mut linked = b"site/".to_vec();
        linked.extend_from_slice(odd);
        let mut linked_x = linked.clone();
        linked_x.extend_from_slice(b"/x");
        let entries = [
            entry(b"site", None, true),
            entry(&linked, Some(0), true),
            entry(&linked_x, Some(1), false),
            entry(b"site/new", Some(0), true),
            entry(b"site/new/y", Some(3), false),
        ];
        for overwrite in [false, true] {
            let text = script(
                &entries,
                target.to_str().expect("utf-8"),
                ".stage",
                Pass::Move,
                overwrite,
            );
            let mut sh = std::process::Command::new("sh")
                .arg("-s")
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("sh");
            use std::io::Write;
            sh.stdin
                .take()
                .expect("stdin")
                .write_all(&text)
                .expect("script");
            let out = sh.wait_with_output().expect("sh ends");
            let answer = Answer::read(&out.stderr, Pass::Move);
            assert_eq!(
                answer
                    .not_placed
                    .iter()
                    .map(|(i, _)| *i)
                    .collect::<Vec<_>>(),
                [1],
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0);
            if overwrite {
                assert_eq!(
                    std::fs::read_to_string(target.join("site/new/y")).expect("replaced"),
                    "y2"
                );
            } else {
                assert_eq!(
                    std::fs::read_to_string(target.join("site/new/y")).expect("placed"),
                    "y"
                );
                assert!(!staging.exists(), "the staging directory is removed");
                std::fs::create_dir_all(staging.join("site").join(odd_os)).expect("mkdir");
                std::fs::write(staging.join("site").join(odd_os).join("x"), "x").expect("write");
                std::fs::create_dir_all(staging.join("site/new")).expect("mkdir");
                std::fs::write(staging.join("site/new/y"), "y2").expect("write");
                std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700))
                    .expect("chmod");
            }
        }
    }

    #[test]
    fn answers_are_read_by_entry_number() {
        let stderr = b"cpus 4\nexists 3\nlinked 1\nkept 7\nmv: odd\n";
        let check = Answer::read(stderr, Pass::Check);
        assert_eq!(
            (check.cpus, check.exists.clone(), check.linked.clone()),
            (4, vec![3], vec![1])
        );
        assert_eq!(check.other, ["mv: odd"]);
        let moved = Answer::read(stderr, Pass::Move);
        assert_eq!(
            moved.not_placed.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            [3, 1, 7]
        );
    }
}
