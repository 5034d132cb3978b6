//! What nightshift does to a machine when something around it is hostile
//! or concurrent: several commands creating one store, a store whose config
//! was rewritten, a data dir under a loose umask.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{command_in, in_data_dir, json, stderr};

/// `nightshift ARGS` on `data`, started but not waited for.
fn spawn(data: &Path, args: &[&str]) -> std::process::Child {
    command_in(data, args, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nightshift starts")
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in fs::read_dir(&at).expect("list").flatten() {
            let path = entry.path();
            if entry.file_type().expect("type").is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn concurrent_first_backups_make_one_store_that_holds_them_all() {
    const N: usize = 4;
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let sources: Vec<String> = (0..N)
        .map(|i| {
            let dir = work.path().join(format!("site{i}"));
            fs::create_dir_all(&dir).expect("mkdir");
            fs::write(dir.join("page.html"), format!("page {i}\n").repeat(1000)).expect("write");
            dir.to_str().expect("utf-8").to_string()
        })
        .collect();
    let children: Vec<_> = sources
        .iter()
        .map(|src| spawn(&data, &["backup", src, "--json"]))
        .collect();
    let ids: Vec<String> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("waits");
            assert!(
                out.status.success(),
                "every backup lands in the one store: {}",
                stderr(&out)
            );
            let made: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
            made["id"].as_str().expect("an id").to_string()
        })
        .collect();
    let check = json(&in_data_dir(
        &data,
        &["store", "check", "--read-data", "--json"],
        &[],
    ));
    assert_eq!(check["ok"], true, "{check}");
    let listed = json(&in_data_dir(&data, &["snapshots", "--json"], &[]));
    assert_eq!(listed.as_array().map(Vec::len), Some(N), "{listed}");
    for (i, (src, id)) in sources.iter().zip(&ids).enumerate() {
        let target = work.path().join(format!("restored{i}"));
        let spec = format!("{id}:{src}");
        let restored = in_data_dir(
            &data,
            &["restore", &spec, "--to", target.to_str().expect("utf-8")],
            &[],
        );
        assert!(restored.status.success(), "{}", stderr(&restored));
        assert_eq!(
            fs::read_to_string(target.join(format!("site{i}/page.html"))).expect("restored"),
            format!("page {i}\n").repeat(1000)
        );
    }
}

#[test]
fn a_store_rewritten_to_say_unencrypted_is_refused_and_nothing_is_written_in_clear() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let source = work.path().join("secrets");
    fs::create_dir_all(&source).expect("mkdir");
    fs::write(source.join("payroll.txt"), "first\n").expect("write");
    let src = source.to_str().expect("utf-8");
    let first = in_data_dir(&data, &["backup", src], &[]);
    assert!(first.status.success(), "{}", stderr(&first));

    // Someone with write access to the store turns encryption off and
    // removes everything that would give it away.
    let store = data.join("store");
    let config = fs::read_to_string(store.join("config")).expect("config");
    let downgraded: String = config
        .lines()
        .filter(|l| !l.starts_with("authentication"))
        .map(|l| {
            if l.starts_with("encryption") {
                "encryption = \"none\"\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fs::write(store.join("config"), downgraded).expect("rewrite");
    for dir in ["keys", "index", "snapshots", "data"] {
        fs::remove_dir_all(store.join(dir)).expect("empty");
        fs::create_dir(store.join(dir)).expect("mkdir");
    }
    const CANARY: &str = "CANARY-7f3a91c2-salaries";
    fs::write(source.join("payroll.txt"), CANARY).expect("write");

    // With the generated key file beside the store, and with a passphrase
    // in the environment: refused either way.
    for env in [vec![], vec![("NIGHTSHIFT_PASSPHRASE", "typed passphrase")]] {
        if !env.is_empty() {
            fs::remove_file(data.join("store.key")).expect("key file");
        }
        let second = in_data_dir(&data, &["backup", src], &env);
        assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
        assert!(
            stderr(&second)
                .contains("says it is not encrypted, but a passphrase or key file is configured"),
            "{}",
            stderr(&second)
        );
    }
    for file in files_under(&store) {
        let bytes = fs::read(&file).expect("read");
        assert!(
            !contains(&bytes, CANARY.as_bytes()) && !contains(&bytes, b"payroll"),
            "{} holds plaintext",
            file.display()
        );
    }
}

#[test]
fn a_changed_store_config_fails_authentication() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let source = work.path().join("site");
    fs::create_dir_all(&source).expect("mkdir");
    fs::write(source.join("a"), "a\n").expect("write");
    let src = source.to_str().expect("utf-8");
    assert!(in_data_dir(&data, &["backup", src], &[]).status.success());
    let path = data.join("store/config");
    let config = fs::read_to_string(&path).expect("config");
    assert!(config.contains("authentication = "), "{config}");
    fs::write(&path, config.replace("level = 3", "level = 19")).expect("rewrite");
    let refused = in_data_dir(&data, &["snapshots"], &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("fails authentication under the store's key"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn the_data_dir_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let source = work.path().join("site");
    fs::create_dir_all(&source).expect("mkdir");
    fs::write(source.join("a"), "a\n").expect("write");
    // A umask of 0 would give everything 0777/0666.
    let out = Command::new("sh")
        .args(["-c", "umask 0 && exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_nightshift"))
        .args(["backup", source.to_str().expect("utf-8")])
        .env("NIGHTSHIFT_DATA_DIR", &data)
        .env_remove("NIGHTSHIFT_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let mut seen = 0;
    let mut stack = vec![data.clone()];
    while let Some(at) = stack.pop() {
        let mode = fs::symlink_metadata(&at)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{} is {:o}", at.display(), mode & 0o777);
        seen += 1;
        if at.is_dir() {
            stack.extend(fs::read_dir(&at).expect("list").flatten().map(|e| e.path()));
        }
    }
    assert!(
        seen > 10,
        "the catalog, the key file and the store were looked at"
    );

    // A data dir someone made readable gets a warning naming the fix.
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).expect("chmod");
    let warned = in_data_dir(&data, &["runs", "--json"], &[]);
    assert!(warned.status.success(), "{}", stderr(&warned));
    assert!(
        stderr(&warned).contains(&format!("run `chmod 700 {}`", data.display())),
        "{}",
        stderr(&warned)
    );
}
