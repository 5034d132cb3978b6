//! The store's encryption and its keys: the key file a first backup makes,
//! keys added, listed and removed, and a store without encryption.

use std::fs;

use super::*;

#[test]
fn the_first_backup_makes_an_encrypted_store_with_a_private_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let source = work.path().join("src");
    fs::create_dir_all(&source).expect("mkdir");
    fs::write(source.join("a"), "alpha").expect("write");
    let first = ns(&data, &["backup", source.to_str().expect("utf-8")]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("KEEP A COPY"), "{}", stderr(&first));
    let key_file = data.join("store.key");
    let mode = fs::metadata(&key_file)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let config = fs::read_to_string(data.join("store/config")).expect("config");
    assert!(config.contains("xchacha20-poly1305"), "{config}");

    let export = ns(&data, &["store", "key", "export"]);
    assert!(export.status.success(), "{}", stderr(&export));
    assert_eq!(stdout(&export), fs::read_to_string(&key_file).expect("key"));

    // Moved away, the key file's absence is a clear error, not a prompt.
    fs::rename(&key_file, work.path().join("kept.key")).expect("move");
    let locked = ns(&data, &["snapshots"]);
    assert_eq!(locked.status.code(), Some(1));
    assert!(
        stderr(&locked).contains("is encrypted"),
        "{}",
        stderr(&locked)
    );
    let wrong = ns_env(&data, &["snapshots"], &[("NIGHTSHIFT_PASSPHRASE", "guess")]);
    assert!(
        stderr(&wrong).contains("no key of the store"),
        "{}",
        stderr(&wrong)
    );
    let passphrase = fs::read_to_string(work.path().join("kept.key")).expect("key");
    let right = ns_env(
        &data,
        &["snapshots", "--json"],
        &[("NIGHTSHIFT_PASSPHRASE", passphrase.trim())],
    );
    assert_eq!(json(&right).as_array().map(Vec::len), Some(1));
}

#[test]
fn keys_are_added_listed_and_removed_and_no_encryption_is_honoured() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let env = [("NIGHTSHIFT_PASSPHRASE", "first passphrase")];
    let init = ns_env(&data, &["store", "init"], &env);
    assert!(init.status.success(), "{}", stderr(&init));
    assert!(
        !data.join("store.key").exists(),
        "a configured passphrase needs no key file"
    );
    let add = ns_env(
        &data,
        &["store", "key", "add"],
        &[
            ("NIGHTSHIFT_PASSPHRASE", "first passphrase"),
            ("NIGHTSHIFT_NEW_PASSPHRASE", "second passphrase"),
        ],
    );
    assert!(add.status.success(), "{}", stderr(&add));
    let listed = json(&ns_env(
        &data,
        &["store", "key", "list", "--json"],
        &[("NIGHTSHIFT_PASSPHRASE", "second passphrase")],
    ));
    let ids: Vec<String> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|k| k["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let added = stdout(&add)
        .trim()
        .trim_start_matches("added key ")
        .to_string();
    let first = ids
        .iter()
        .find(|id| !id.starts_with(&added))
        .expect("first key");
    let remove = ns_env(&data, &["store", "key", "remove", &first[..8]], &env);
    assert!(remove.status.success(), "{}", stderr(&remove));
    let old = ns_env(&data, &["snapshots"], &env);
    assert_eq!(
        old.status.code(),
        Some(1),
        "the removed passphrase no longer opens"
    );

    let plain = work.path().join("plain");
    let made = ns(&plain, &["store", "init", "--no-encryption"]);
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(!plain.join("store.key").exists());
    let config = fs::read_to_string(plain.join("store/config")).expect("config");
    assert!(config.contains("encryption = \"none\""), "{config}");
}
