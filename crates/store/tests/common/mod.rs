//! Shared pieces of the store tests: a store with small chunks, trees of
//! files to back up, and a comparison of two directory trees.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use nightshift_store::{
    BackupOptions, ChunkerConfig, DEFAULT_CHUNKER, Encryption, PackConfig, Passphrase, Progress,
    RestoreOptions, Store, StoreConfig,
};

/// Chunks of 1–16 KiB, so small test files span many chunks.
pub const SMALL_CHUNKS: ChunkerConfig = ChunkerConfig {
    min_size: 1024,
    avg_size: 4096,
    max_size: 16384,
    ..DEFAULT_CHUNKER
};

pub fn passphrase() -> Passphrase {
    Passphrase::new("test passphrase")
}

/// An encrypted store (the default) with small chunks and packs.
pub fn small_store(root: &Path) -> Store {
    Store::init(root, small_config(), Some(&passphrase())).expect("init store")
}

/// The same, unencrypted (`--no-encryption`).
pub fn plain_store(root: &Path) -> Store {
    let mut config = small_config();
    config.encryption = Encryption::None;
    Store::init(root, config, None).expect("init store")
}

fn small_config() -> StoreConfig {
    let mut config = StoreConfig::new(String::new());
    config.chunker = SMALL_CHUNKS;
    config.pack = PackConfig {
        target_size: 1 << 20,
    };
    config
}

pub fn reopen(root: &Path) -> Store {
    Store::open(root, Some(&passphrase())).expect("open store")
}

pub fn options() -> BackupOptions {
    BackupOptions {
        host: "localhost".into(),
        ..BackupOptions::default()
    }
}

pub fn backup(store: &mut Store, path: &Path) -> nightshift_store::BackupOutcome {
    let outcome = store
        .backup_paths(&[path.to_path_buf()], &options(), &Progress::default())
        .expect("backup");
    assert!(outcome.skipped.is_empty(), "{:?}", outcome.skipped);
    outcome
}

/// `count` files `f0`, `f1`, … of `len` bytes of noise, seeded by number.
pub fn noise_files(dir: &Path, count: u64, len: usize) {
    fs::create_dir_all(dir).expect("mkdir");
    for n in 0..count {
        fs::write(dir.join(format!("f{n}")), noise(len, n)).expect("write");
    }
}

/// Deterministic bytes that do not compress.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What a tree holds, as comparable facts: per relative path, the kind,
/// permission bits, mtime, content or link target, and which hard-link
/// group the file belongs to.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub mtime: i64,
    /// BLAKE3 of the content or link target, and its length.
    pub data: (String, usize),
    pub link_group: Option<usize>,
}

pub fn describe(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut groups = HashMap::new();
    walk(root, root, &mut out, &mut groups);
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<PathBuf, Entry>,
    groups: &mut HashMap<(u64, u64), usize>,
) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let meta = fs::symlink_metadata(&path).expect("lstat");
        let relative = path.strip_prefix(root).expect("inside").to_path_buf();
        let (kind, data) = if meta.is_dir() {
            walk(root, &path, out, groups);
            ("dir", Vec::new())
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).expect("readlink");
            ("symlink", target.into_os_string().into_encoded_bytes())
        } else {
            ("file", fs::read(&path).expect("read"))
        };
        let link_group = (meta.is_file() && meta.nlink() > 1).then(|| {
            let next = groups.len();
            *groups.entry((meta.dev(), meta.ino())).or_insert(next)
        });
        out.insert(
            relative,
            Entry {
                kind,
                mode: if kind == "symlink" {
                    0
                } else {
                    meta.permissions().mode() & 0o7777
                },
                mtime: meta.mtime(),
                data: (blake3::hash(&data).to_hex()[..16].to_string(), data.len()),
                link_group,
            },
        );
    }
}

/// A tree with everything that is hard to get right.
pub fn awkward_tree(root: &Path) {
    let deep = root.join("a/b/c/d/e/f/g/h");
    fs::create_dir_all(&deep).unwrap();
    fs::create_dir_all(root.join("empty dir")).unwrap();
    fs::write(deep.join("deep.txt"), b"down here").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("big.bin"), noise(200_000, 7)).unwrap();
    fs::write(root.join("zeros"), vec![0u8; 100_000]).unwrap();
    fs::write(root.join("café ☕"), "unicode").unwrap();
    fs::write(root.join("new\nline"), "a newline in the name").unwrap();
    fs::write(root.join("script.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("script.sh"), fs::Permissions::from_mode(0o4751)).unwrap();
    symlink("big.bin", root.join("link")).unwrap();
    symlink("/nonexistent/target", root.join("dangling")).unwrap();
    fs::hard_link(root.join("big.bin"), root.join("a/hard")).unwrap();
    filetime::set_file_mtime(
        root.join("empty"),
        filetime::FileTime::from_unix_time(1_000_000_000, 0),
    )
    .unwrap();
}

/// Everything kept as recorded, setuid bits and owners included.
pub const KEEP: RestoreOptions = RestoreOptions {
    keep_privileges: true,
};

/// A whole-snapshot restore that keeps everything as recorded.
pub fn restore_all(store: &Store, id: &str, target: &Path) -> nightshift_store::RestoreOutcome {
    let snapshot = store.find_snapshot(id).unwrap();
    store
        .restore_to_dir(&snapshot, "/", target, 0, &Progress::default(), KEEP)
        .unwrap()
}

/// Where the backed-up directory lands inside a whole-snapshot restore.
pub fn landed(target: &Path, source: &Path) -> std::path::PathBuf {
    target.join(source.strip_prefix("/").unwrap())
}
