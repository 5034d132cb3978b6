//! Restores of snapshots no backup would write, and of targets changed
//! while a restore runs.

mod crafted {
    //! Snapshots no backup would write: entries named to climb out of the
    //! restore target. Restores refuse them, name them, and write nothing
    //! outside the target.

    use super::super::*;
    use crate::config::StoreConfig;

    fn crafted_store(root: &Path) -> (Store, SnapshotEntry) {
        let mut config = StoreConfig::new(String::new());
        config.encryption = crate::config::Encryption::None;
        let mut store = Store::init(root, config, None).expect("init");
        let snapshot = store
            .write_crafted_snapshot("web1", "site", &["../escaped", "..", "a/b", "fine"])
            .expect("a crafted snapshot");
        (store, snapshot)
    }

    #[test]
    fn escaping_entries_are_refused_and_nothing_lands_outside() {
        let work = tempfile::tempdir().expect("tempdir");
        let (store, snapshot) = crafted_store(&work.path().join("store"));
        let target = work.path().join("target");
        let outcome = store
            .restore_to_dir(
                &snapshot,
                "/",
                &target,
                1,
                &Progress::default(),
                RestoreOptions::default(),
            )
            .expect("restore");
        assert_eq!(outcome.failed.len(), 3, "{:?}", outcome.failed);
        assert!(
            outcome
                .failed
                .iter()
                .all(|(_, why)| why.contains("would land outside the target directory")),
            "{:?}",
            outcome.failed
        );
        assert!(target.join("site/fine").is_file());
        assert!(!work.path().join("escaped").exists(), "nothing climbed out");
        assert!(!target.join("escaped").exists());
        assert!(!target.join("site/a").exists());

        let mut tar = Vec::new();
        let outcome = store
            .restore_to_tar(&snapshot, "/", &mut tar, RestoreOptions::default())
            .expect("tar");
        assert_eq!(outcome.failed.len(), 3);
        let names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["site", "site/fine"]);
        assert_eq!(
            outcome.digests.len(),
            1,
            "only the file that is written is hashed"
        );
    }
}

pub(super) mod swap {
    //! A restore whose directory is swapped for a symbolic link to a
    //! directory outside the target between planning and writing, as a
    //! user who can write into the target could. The swap happens in a
    //! deterministic test-only hook (`#[cfg(test)]`), run on the restoring
    //! thread after the plan is made and before any content is written.

    use std::cell::RefCell;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    use std::path::PathBuf;

    use super::super::*;
    use crate::backup::BackupOptions;
    use crate::config::{ChunkerConfig, DEFAULT_CHUNKER, StoreConfig};

    thread_local! {
        static HOOK: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    }

    /// Runs (once) what the test on this thread set up, if anything.
    pub(in crate::restore) fn between_planning_and_writing() {
        if let Some(hook) = HOOK.with(|h| h.borrow_mut().take()) {
            hook();
        }
    }

    fn noise(len: usize, seed: u64) -> Vec<u8> {
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

    /// A store holding one backup of `site/` under `work`: a directory
    /// `conf.d` with a small file, a file written in several units and a
    /// subdirectory, and `index.html` beside it.
    pub(super) fn site_backup(work: &Path) -> (Store, SnapshotEntry, PathBuf) {
        let source = work.join("site");
        let conf = source.join("conf.d");
        fs::create_dir_all(conf.join("sub")).expect("mkdir");
        fs::write(conf.join("app.conf"), "listen 80;\n").expect("write");
        // Many small chunks: written as several units at offsets.
        fs::write(conf.join("big.bin"), noise(300_000, 1)).expect("write");
        fs::write(conf.join("sub/deep.txt"), "deep").expect("write");
        fs::write(source.join("index.html"), "hi").expect("write");
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o777)).expect("chmod");
        fs::set_permissions(conf.join("app.conf"), fs::Permissions::from_mode(0o666))
            .expect("chmod");

        let mut config = StoreConfig::new(String::new());
        config.encryption = crate::config::Encryption::None;
        config.chunker = ChunkerConfig {
            min_size: 1024,
            avg_size: 4096,
            max_size: 16384,
            ..DEFAULT_CHUNKER
        };
        let mut store = Store::init(&work.join("store"), config, None).expect("init");
        let options = BackupOptions {
            host: "localhost".into(),
            ..BackupOptions::default()
        };
        let snapshot = store
            .backup_paths(
                std::slice::from_ref(&source),
                &options,
                &Progress::default(),
            )
            .expect("backup")
            .snapshot;
        (store, snapshot, source)
    }

    #[test]
    fn a_directory_swapped_for_another_mid_restore_is_not_written_into() {
        let work = tempfile::tempdir().expect("tempdir");
        let (store, snapshot, source) = site_backup(work.path());
        let target = work.path().join("target");
        let planned = target.join("site/conf.d");
        let moved = target.join("moved");
        let (from, to) = (planned.clone(), moved.clone());
        HOOK.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                fs::rename(&from, &to).expect("move");
                fs::create_dir(&from).expect("mkdir");
            }));
        });
        let outcome = store
            .restore_to_dir(
                &snapshot,
                &source.display().to_string(),
                &target,
                2,
                &Progress::default(),
                RestoreOptions::default(),
            )
            .expect("restore");
        assert_eq!(fs::read_dir(&planned).expect("there").count(), 0);
        assert!(
            outcome
                .failed
                .iter()
                .all(|(p, why)| p.contains("site/conf.d")
                    && why.contains("not the directory the restore made or checked")),
            "{:?}",
            outcome.failed
        );
        assert_eq!(outcome.failed.len(), 5, "{:?}", outcome.failed);
        assert_eq!(
            fs::read(target.join("site/index.html")).expect("restored"),
            b"hi"
        );
    }

    #[test]
    fn a_directory_swapped_for_a_link_mid_restore_sends_nothing_outside() {
        let work = tempfile::tempdir().expect("tempdir");
        let (store, snapshot, source) = site_backup(work.path());

        // Outside the target: a directory with files of the same names.
        let outside = work.path().join("outside");
        fs::create_dir_all(&outside).expect("mkdir");
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).expect("chmod");
        for name in ["app.conf", "big.bin"] {
            fs::write(outside.join(name), "untouched").expect("write");
            fs::set_permissions(outside.join(name), fs::Permissions::from_mode(0o600))
                .expect("chmod");
        }
        let before = |path: &Path| {
            let meta = fs::symlink_metadata(path).expect("there");
            (meta.mode(), meta.mtime(), meta.mtime_nsec(), meta.len())
        };
        let was = [
            before(&outside),
            before(&outside.join("app.conf")),
            before(&outside.join("big.bin")),
        ];

        let target = work.path().join("target");
        let planned = target.join("site/conf.d");
        let link_to = outside.clone();
        HOOK.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                assert!(planned.is_dir(), "planning made the directory");
                fs::remove_dir_all(&planned).expect("rm");
                symlink(&link_to, &planned).expect("symlink");
            }));
        });
        let outcome = store
            .restore_to_dir(
                &snapshot,
                &source.display().to_string(),
                &target,
                2,
                &Progress::default(),
                RestoreOptions::default(),
            )
            .expect("restore");

        let now = [
            before(&outside),
            before(&outside.join("app.conf")),
            before(&outside.join("big.bin")),
        ];
        let mut left: Vec<String> = fs::read_dir(&outside)
            .expect("outside")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["app.conf", "big.bin"], "nothing new outside");
        assert_eq!(now, was, "nothing outside written or chmod'ed");
        assert_eq!(
            fs::read(outside.join("app.conf")).expect("read"),
            b"untouched"
        );
        assert_eq!(
            fs::read(outside.join("big.bin")).expect("read"),
            b"untouched"
        );
        assert!(
            fs::symlink_metadata(target.join("site/conf.d"))
                .expect("there")
                .file_type()
                .is_symlink(),
            "the link is left for the technician to see"
        );
        assert_eq!(
            fs::read(target.join("site/index.html")).expect("restored"),
            b"hi"
        );
        let failed: Vec<&str> = outcome.failed.iter().map(|(p, _)| p.as_str()).collect();
        assert!(
            !failed.is_empty() && failed.iter().all(|p| p.contains("site/conf.d")),
            "{:?}",
            outcome.failed
        );
    }
}

mod selected {
    //! A tar stream of chosen files only, as a restore test samples them.

    use super::super::*;
    use super::swap::site_backup;

    #[test]
    fn only_the_chosen_files_and_the_directories_above_them_are_streamed() {
        let work = tempfile::tempdir().expect("tempdir");
        let (store, snapshot, source) = site_backup(work.path());
        let site = source.strip_prefix("/").expect("absolute");
        let raw = |rel: &str| site.join(rel).as_os_str().as_bytes().to_vec();
        let chosen: BTreeSet<Vec<u8>> = [raw("conf.d/sub/deep.txt"), raw("index.html")].into();
        let mut tar = Vec::new();
        let outcome = store
            .restore_files_to_tar(&snapshot, &chosen, &mut tar, RestoreOptions::default())
            .expect("tar");
        assert_eq!((outcome.files, outcome.bytes), (2, 6));
        let digests: BTreeSet<Vec<u8>> = outcome.digests.into_iter().map(|(p, _)| p).collect();
        assert_eq!(digests, chosen);
        let names: Vec<Vec<u8>> = tar::Archive::new(&tar[..])
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry").path_bytes().into_owned())
            .collect();
        assert!(names.contains(&raw("conf.d/sub")), "the directories above");
        assert!(!names.contains(&raw("conf.d/app.conf")), "not chosen");
        assert!(!names.contains(&raw("conf.d/big.bin")), "not chosen");
        assert_eq!(names.len(), site.components().count() + 4, "{names:?}");
    }
}
