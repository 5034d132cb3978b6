//! Encrypted stores: nothing readable on disk, passphrases, keys, and a
//! config edited to turn encryption off.

use std::fs;
use std::path::Path;

use nightshift_store::{Progress, RestoreOptions, Store, StoreError};

use crate::common::*;

/// Every file under `root`, concatenated.
fn all_bytes(root: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.extend(fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn an_encrypted_store_shows_neither_content_nor_names() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    fs::create_dir_all(&source).unwrap();
    let secret = noise(50_000, 77);
    fs::write(source.join("payroll-2026.csv"), &secret).unwrap();
    let probe = &secret[20_000..20_064];
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);

    let sealed_root = work.path().join("sealed");
    let mut sealed = small_store(&sealed_root);
    let outcome = backup(&mut sealed, &source);
    let bytes = all_bytes(&sealed_root);
    assert!(
        !contains(&bytes, probe),
        "file content readable in the store"
    );
    assert!(
        !contains(&bytes, b"payroll-2026"),
        "file name readable in the store"
    );
    assert!(
        !contains(&bytes, outcome.snapshot.snapshot.host.as_bytes()),
        "host readable"
    );

    // The same check sees the content in an unencrypted store, so it can
    // fail. (Names are in zstd-compressed trees there, so not comparable.)
    let plain_root = work.path().join("plain");
    let mut plain = plain_store(&plain_root);
    backup(&mut plain, &source);
    let bytes = all_bytes(&plain_root);
    assert!(contains(&bytes, probe));
    let target = work.path().join("target");
    let snapshot = plain.find_snapshot("latest").unwrap();
    plain
        .restore_to_dir(
            &snapshot,
            "/",
            &target,
            0,
            &Progress::default(),
            RestoreOptions::default(),
        )
        .unwrap();
    assert_eq!(
        fs::read(landed(&target, &source).join("payroll-2026.csv")).unwrap(),
        secret
    );
}

#[test]
fn a_wrong_or_missing_passphrase_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    small_store(&root);
    let wrong = Store::open(&root, Some(&nightshift_store::Passphrase::new("guess"))).unwrap_err();
    assert!(
        matches!(wrong, StoreError::WrongPassphrase { .. }),
        "{wrong}"
    );
    assert!(wrong.to_string().contains("no key of the store"), "{wrong}");
    let missing = Store::open(&root, None).unwrap_err();
    assert!(
        matches!(missing, StoreError::PassphraseNeeded { .. }),
        "{missing}"
    );
    assert!(
        missing.to_string().contains("NIGHTSHIFT_PASSPHRASE"),
        "{missing}"
    );
}

#[test]
fn keys_can_be_added_and_removed_but_not_the_last() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let store = small_store(&root);
    let second = nightshift_store::Passphrase::new("second key");
    let added = store.add_key(&second).unwrap();
    assert_eq!(store.keys().unwrap().len(), 2);
    let first = store
        .keys()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .find(|id| *id != added)
        .unwrap();
    store.remove_key(&first[..8]).unwrap();
    assert!(
        Store::open(&root, Some(&passphrase())).is_err(),
        "the removed key no longer opens"
    );
    let reopened = Store::open(&root, Some(&second)).unwrap();
    let last = reopened.remove_key(&added[..8]).unwrap_err();
    assert!(matches!(last, StoreError::LastKey), "{last}");
}

#[test]
fn a_config_edited_to_turn_encryption_off_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    small_store(&root);
    let config = fs::read_to_string(root.join("config")).unwrap();
    fs::write(
        root.join("config"),
        config.replace("xchacha20-poly1305", "none"),
    )
    .unwrap();
    let err = Store::open(&root, None).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("the config was changed"), "{err}");
}
