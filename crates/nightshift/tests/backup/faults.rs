//! Faults for real: `kill -9` of backup and prune at many moments. After
//! each, `check` passes, no partial snapshot is listed, and nothing a
//! snapshot needs is lost.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{json, noise, ns};
use crate::common::stderr;

/// A fixed sequence of kill delays, so a failure can be replayed: the
/// seed and the delay are in every assertion message.
struct Moments(u64);

impl Moments {
    fn next(&mut self, below: Duration) -> Duration {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let fraction = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        below.mul_f64(fraction)
    }
}

fn spawn(data: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(args)
        .env("NIGHTSHIFT_DATA_DIR", data)
        .env_remove("NIGHTSHIFT_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nightshift starts")
}

/// Kills the child after `after` unless it finished first; returns whether
/// it finished (successfully) on its own.
fn kill_after(mut child: Child, after: Duration) -> bool {
    let deadline = Instant::now() + after;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut text = String::new();
            if let Some(mut err) = child.stderr.take() {
                std::io::Read::read_to_string(&mut err, &mut text).expect("stderr");
            }
            assert!(status.success(), "the process failed on its own: {text}");
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    false
}

fn write_files(dir: &Path, range: std::ops::Range<u64>, seed: u64, len: usize) {
    for n in range {
        fs::write(dir.join(format!("f{n:02}")), noise(len, seed * 100 + n)).expect("write");
    }
}

fn check_ok(data: &Path, read_data: bool, context: &str) -> serde_json::Value {
    let mut args = vec!["store", "check", "--json"];
    if read_data {
        args.push("--read-data");
    }
    let report = json(&ns(data, &args));
    assert_eq!(report["ok"], true, "{context}: {report}");
    report
}

fn snapshot_count(data: &Path) -> usize {
    json(&ns(data, &["snapshots", "--json"]))
        .as_array()
        .expect("a list")
        .len()
}

fn restore_matches(data: &Path, snapshot: &str, source: &Path, target: &Path) {
    let _ = fs::remove_dir_all(target);
    let out = ns(
        data,
        &["restore", snapshot, "--to", target.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let landed = target.join(source.strip_prefix("/").expect("absolute"));
    for entry in fs::read_dir(source).expect("source") {
        let entry = entry.expect("entry");
        let restored = fs::read(landed.join(entry.file_name())).expect("restored file");
        assert!(
            restored == fs::read(entry.path()).expect("source file"),
            "{} differs after restore",
            entry.path().display()
        );
    }
}

/// A temporary dir with an empty data dir whose store has 1 MiB packs,
/// and an empty source dir.
fn small_pack_store() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let work = tempfile::tempdir().expect("tempdir");
    let (data, source) = (work.path().join("data"), work.path().join("src"));
    fs::create_dir_all(&source).expect("mkdir");
    let init = ns(&data, &["store", "init", "--pack-size", "1"]);
    assert!(init.status.success(), "{}", stderr(&init));
    (work, data, source)
}

#[test]
fn backups_killed_at_twenty_moments_leave_a_sound_store_whose_packs_are_reused() {
    let (work, data, source) = small_pack_store();
    let src = source.to_str().expect("utf-8");

    // How long one whole backup takes here, on a scratch store.
    write_files(&source, 0..12, 1, 2 << 20);
    let scratch = work.path().join("scratch");
    let started = Instant::now();
    json(&ns(&scratch, &["backup", src, "--json"]));
    let whole = started.elapsed();

    let mut moments = Moments(20_261_124);
    let (mut completed, mut generation) = (0, 1);
    let mut distinct_bytes: u64 = 12 * (2 << 20);
    for round in 0..20 {
        let after = moments.next(whole.mul_f64(0.8));
        let context = format!("round {round}, killed after {after:?}");
        let finished = kill_after(spawn(&data, &["backup", src]), after);
        let listed = snapshot_count(&data);
        // Killed after writing its snapshot but before exiting, a backup
        // is whole; otherwise it must not be listed at all.
        assert!(
            listed == completed + 1 || !finished && listed == completed,
            "{context}: {listed} snapshots listed after {completed} whole backups"
        );
        if listed > completed {
            completed = listed;
            // New data, so the next backups have something to write.
            generation += 1;
            write_files(&source, 0..4, generation, 2 << 20);
            distinct_bytes += 4 * (2 << 20);
        }
        check_ok(&data, false, &context);
    }
    assert!(
        completed <= 15,
        "only {} of 20 backups were killed mid-way",
        20 - completed
    );
    let last = json(&ns(&data, &["backup", src, "--json"]));
    let report = check_ok(&data, true, "after the last backup");
    let unindexed: Vec<_> = report["problems"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|p| {
            p["message"]
                .as_str()
                .is_some_and(|m| m.contains("in no index"))
        })
        .collect();
    assert!(
        unindexed.is_empty(),
        "every whole pack of a killed backup was taken into the index: {unindexed:?}"
    );
    let stats = json(&ns(&data, &["store", "stats", "--json"]));
    let on_disk = stats["pack_bytes_on_disk"].as_u64().expect("a size");
    assert!(
        on_disk < distinct_bytes + distinct_bytes / 10,
        "no chunk of a killed backup was stored twice: {on_disk} bytes of packs for {distinct_bytes} bytes of distinct data"
    );
    let id = last["id"].as_str().expect("an id");
    restore_matches(&data, id, &source, &work.path().join("restored"));
}

#[test]
fn prune_killed_at_random_moments_loses_nothing_a_snapshot_needs() {
    let (work, data, source) = small_pack_store();
    let src = source.to_str().expect("utf-8");
    // Six generations of small files in which half the files change:
    // after forgetting the oldest three, packs are partly needed, so
    // prune repacks as well as marks.
    write_files(&source, 0..64, 0, 160 << 10);
    let mut pick = Moments(3);
    for generation in 1..=6 {
        for n in 0..64 {
            if pick.next(Duration::from_secs(1)) < Duration::from_millis(400) {
                write_files(&source, n..n + 1, generation, 160 << 10);
            }
        }
        json(&ns(&data, &["backup", src, "--json"]));
    }
    let forget = ns(&data, &["forget", "--keep-last", "3"]);
    assert!(forget.status.success(), "{}", stderr(&forget));
    let kept: Vec<String> = json(&ns(&data, &["snapshots", "--json"]))
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["id"].as_str().expect("an id").to_string())
        .collect();
    assert_eq!(kept.len(), 3);

    let started = Instant::now();
    let dry = json(&ns(&data, &["store", "prune", "--dry-run", "--json"]));
    let whole = started.elapsed() * 3;
    assert!(
        dry["repacked"]["packs"].as_u64() > Some(0) && dry["marked"]["packs"].as_u64() > Some(0),
        "the store gives prune work to do: {dry}"
    );
    let mut moments = Moments(7);
    let mut killed = 0;
    for round in 0..10 {
        let after = moments.next(whole);
        let context = format!("prune round {round}, killed after {after:?}");
        let prune = spawn(&data, &["store", "prune", "--delete-delay", "0s"]);
        killed += usize::from(!kill_after(prune, after));
        check_ok(&data, false, &context);
        assert_eq!(snapshot_count(&data), 3, "{context}");
    }
    assert!(
        killed >= 3,
        "only {killed} of 10 prunes were killed mid-way"
    );
    for _ in 0..2 {
        let out = ns(&data, &["store", "prune", "--delete-delay", "0s"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let report = json(&ns(
        &data,
        &["store", "prune", "--delete-delay", "0s", "--json"],
    ));
    assert_eq!(
        (
            report["marked"]["packs"].as_u64(),
            report["pending"]["packs"].as_u64()
        ),
        (Some(0), Some(0)),
        "prune finished its work: {report}"
    );
    check_ok(&data, true, "after the last prune");
    let latest = kept.last().expect("a snapshot");
    restore_matches(&data, latest, &source, &work.path().join("restored"));
    for id in &kept {
        let target = work.path().join(format!("r-{id}"));
        let out = ns(
            &data,
            &["restore", id, "--to", target.to_str().expect("utf-8")],
        );
        assert!(out.status.success(), "snapshot {id}: {}", stderr(&out));
    }
}

#[test]
fn a_truncated_pack_is_named_by_check_and_repair_records_the_damaged_snapshot() {
    let (work, data, source) = small_pack_store();
    let src = source.to_str().expect("utf-8");
    write_files(&source, 0..24, 9, 100 << 10);
    let id = json(&ns(&data, &["backup", src, "--json"]))["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let packs = data.join("store/data");
    let biggest = fs::read_dir(&packs)
        .expect("packs")
        .flat_map(|dir| fs::read_dir(dir.expect("dir").path()).expect("pack dir"))
        .map(|pack| pack.expect("pack").path())
        .max_by_key(|pack| fs::metadata(pack).expect("size").len())
        .expect("a pack");
    let name = biggest
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&biggest)
        .expect("open");
    let len = file.metadata().expect("size").len();
    file.set_len(len / 2).expect("truncate");

    let check = ns(&data, &["store", "check", "--read-data"]);
    assert!(!check.status.success(), "damage fails the check");
    let text = super::stdout(&check);
    assert!(text.contains(&name), "check names the pack: {text}");
    assert!(
        text.contains(&id[..8]) && text.contains(src),
        "and the snapshot and files: {text}"
    );

    let repair = json(&ns(&data, &["store", "repair", "--json"]));
    assert_eq!(repair["damaged_packs"][0][0], name.as_str(), "{repair}");
    let lost = repair["damaged_snapshots"][&id].as_array().expect("paths");
    assert!(!lost.is_empty() && lost.len() < 24, "{repair}");
    assert!(data.join("store/damaged").join(&name).exists());

    let listed = json(&ns(&data, &["snapshots", "--json"]));
    assert_eq!(listed[0]["damaged_paths"], lost.len(), "{listed}");
    check_ok(&data, true, "after repair the damage is known");
    let target = work.path().join("restored");
    let restore = ns(
        &data,
        &["restore", &id, "--to", target.to_str().expect("utf-8")],
    );
    assert!(
        !restore.status.success(),
        "a restore that lost files says so"
    );
    let restored = target.join(source.strip_prefix("/").expect("absolute"));
    let whole = (0..24)
        .filter(|n| {
            fs::read(restored.join(format!("f{n:02}"))).ok() == Some(noise(100 << 10, 900 + n))
        })
        .count();
    assert_eq!(
        whole,
        24 - lost.len(),
        "every file repair did not list is whole"
    );
}

/// A tmpfs of a given size, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// Mounts one, or says why it cannot (not root, no mount rights):
    /// the test is then skipped, except in CI, where it is required.
    fn mount(at: &Path, mib: u32) -> Option<Self> {
        fs::create_dir_all(at).expect("mkdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Self(at.to_path_buf())),
            other => {
                let why = format!("cannot mount a tmpfs: {other:?}");
                assert!(
                    std::env::var("CI").is_err(),
                    "{why}; CI must run this test as root"
                );
                eprintln!("skipped: {why}");
                None
            }
        }
    }

    fn grow(&self, mib: u32) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.0)
            .output()
            .expect("mount runs");
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_the_backup_cleanly_and_the_next_one_after_space_is_freed_works() {
    let work = tempfile::tempdir().expect("tempdir");
    let Some(disk) = SmallDisk::mount(&work.path().join("disk"), 12) else {
        return;
    };
    let data = work.path().join("disk/data");
    let source = work.path().join("src");
    fs::create_dir_all(&source).expect("mkdir");
    write_files(&source, 0..12, 4, 2 << 20);
    let src = source.to_str().expect("utf-8");
    let init = ns(&data, &["store", "init", "--pack-size", "1"]);
    assert!(init.status.success(), "{}", stderr(&init));

    let full = ns(&data, &["backup", src]);
    assert!(!full.status.success(), "24 MiB do not fit on 12 MiB");
    let message = stderr(&full);
    assert!(
        message.contains("no space left on the disk holding")
            && message.contains("no snapshot was written"),
        "{message}"
    );
    assert_eq!(snapshot_count(&data), 0, "no partial snapshot");
    check_ok(&data, true, "after the disk filled up");
    let leftovers = fs::read_dir(data.join("store/tmp")).expect("tmp").count();
    assert_eq!(leftovers, 0, "the failed backup removed its partial files");

    disk.grow(64);
    let last = json(&ns(&data, &["backup", src, "--json"]));
    assert!(
        last["summary"]["new_bytes_raw"].as_u64() < Some(24 << 20),
        "the packs written before the disk filled are reused: {last}"
    );
    check_ok(&data, true, "after space was freed");
    let id = last["id"].as_str().expect("an id");
    restore_matches(&data, id, &source, &work.path().join("restored"));
}

#[test]
fn rebuild_index_replaces_a_garbage_index_file_from_the_packs() {
    let (work, data, source) = small_pack_store();
    let src = source.to_str().expect("utf-8");
    write_files(&source, 0..6, 4, 300 << 10);
    let id = json(&ns(&data, &["backup", src, "--json"]))["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let index = data.join("store/index");
    for entry in fs::read_dir(&index).expect("index dir") {
        fs::write(entry.expect("entry").path(), b"not an index").expect("garble");
    }
    let broken = ns(&data, &["snapshots"]);
    assert!(!broken.status.success(), "a garbage index is an error");

    let rebuilt = ns(&data, &["store", "rebuild-index"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    assert_eq!(fs::read_dir(&index).expect("index dir").count(), 1);
    check_ok(&data, true, "after rebuild-index");
    restore_matches(&data, &id, &source, &work.path().join("restored"));
}
