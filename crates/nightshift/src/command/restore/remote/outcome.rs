//! What a restore found at its target, what landed there with its proof,
//! and how both are recorded in the catalog and told to the technician.

use super::RestoreArgs;
use super::*;
use crate::settings::Settings;
use indicatif::HumanBytes;
use nightshift_engine::restore::Answer;
use nightshift_store::SnapshotEntry;
use serde_json::json;

/// Files and links the restore would write that exist at the target.
#[derive(Debug, Default)]
pub(crate) struct Existing {
    pub count: u64,
    /// The first few of them.
    pub first: Vec<String>,
    /// Directories of the snapshot that are symbolic links at the target:
    /// writing into them could land outside it, so these are refused even
    /// with `--overwrite`.
    pub linked: Vec<String>,
}

impl Existing {
    /// What the check pass found in the way, with names for messages.
    pub(super) fn from_answer(answer: &Answer, entries: &[Entry]) -> Self {
        let named = |indexes: &[usize]| -> Vec<String> {
            indexes
                .iter()
                .filter_map(|&i| entries.get(i))
                .map(|e| e.path.escape_debug().to_string())
                .collect()
        };
        let mut in_way = answer.exists.clone();
        in_way.extend(&answer.blocked);
        Self {
            count: in_way.len() as u64,
            first: named(&in_way[..in_way.len().min(5)]),
            linked: named(&answer.linked),
        }
    }

    /// With `--dry-run`, says what would be written and what is in the way
    /// and returns `true` (nothing more to do); otherwise refuses when
    /// something is in the way and `--overwrite` was not given.
    pub fn gate(
        &self,
        entries: &[Entry],
        snapshot: &SnapshotEntry,
        target: &str,
        args: &RestoreArgs,
    ) -> anyhow::Result<bool> {
        if args.dry_run {
            let files: Vec<&Entry> = entries.iter().filter(|e| e.file).collect();
            eprintln!(
                "would restore {} entries ({} files, {}) of snapshot {} to {target}; {} of them exist there{}",
                entries.len(),
                files.len(),
                HumanBytes(files.iter().map(|e| e.size).sum()),
                snapshot.short_id(),
                self.count,
                if self.count > 0 && !args.overwrite {
                    " (the restore would refuse without --overwrite)"
                } else {
                    ""
                }
            );
            for path in &self.first {
                eprintln!("  exists: {path}");
            }
            for path in &self.linked {
                eprintln!("  a symbolic link where the snapshot has a directory (refused): {path}");
            }
            return Ok(true);
        }
        anyhow::ensure!(
            self.linked.is_empty(),
            "{} under {target} {} a symbolic link where the snapshot has a directory; \
             nothing was written, because a restore never writes through a link; \
             remove the link or restore to another directory",
            self.linked.join(", "),
            if self.linked.len() == 1 { "is" } else { "are" }
        );
        anyhow::ensure!(
            self.count == 0 || args.overwrite,
            "{} files already exist under {target} ({}{}); nothing was written; add --overwrite to replace them",
            self.count,
            self.first.join(", "),
            if self.count > self.first.len() as u64 {
                ", …"
            } else {
                ""
            }
        );
        Ok(false)
    }
}

/// Writes a restore, whatever its outcome (`failed` when it failed as a
/// whole), to the catalog's restores table and the audit log.
pub(crate) fn record(
    settings: &Settings,
    snapshot: &SnapshotEntry,
    path: &str,
    target: &Destination,
    operator: &str,
    landed: &Landed,
    failed: Option<&anyhow::Error>,
) {
    let ok = failed.is_none() && landed.ok();
    let outcome = if ok {
        "ok"
    } else if landed.files > 0 {
        "partial"
    } else {
        "failed"
    };
    let verified = if ok && landed.files > 0 && landed.verified == landed.files {
        "all"
    } else if landed.verified > 0 {
        "some"
    } else {
        "none"
    };
    let error = failed.map(|err| format!("{err:#}")).or_else(|| {
        landed.differ.first().map(|f| {
            format!(
                "{} files differ on the host, first {f}",
                landed.differ.len()
            )
        })
    });
    let row = nightshift_catalog::RestoreRecord {
        at: chrono::Utc::now(),
        operator: operator.to_string(),
        snapshot: snapshot.id.clone(),
        paths: vec![path.to_string()],
        target_host: target.host.clone(),
        target_path: target.dir.clone(),
        files: landed.files,
        bytes: landed.bytes,
        outcome: outcome.into(),
        verified: verified.into(),
        error,
    };
    crate::record::note(settings, "restore", |c| async move {
        let id = c.record_restore(&row).await?;
        let arguments = json!({
            "restore": id,
            "snapshot": row.snapshot,
            "path": row.paths,
            "to": format!("{}:{}", row.target_host, row.target_path),
        });
        c.audit(&row.operator, "restore", &arguments, &row.outcome)
            .await?;
        Ok(())
    });
}

pub(super) fn report(
    snapshot: &SnapshotEntry,
    path: &str,
    target: &Destination,
    landed: &Landed,
    json: bool,
    keep_privileges: bool,
) -> anyhow::Result<()> {
    for (entry, error) in &landed.failed {
        eprintln!("error: {entry}: {error}");
    }
    for file in landed.differ.iter().take(10) {
        eprintln!("error: {file} differs on {} from the snapshot", target.host);
    }
    if json {
        let value = json!({
            "snapshot": snapshot.id,
            "path": path,
            "target": format!("{}:{}", target.host, target.dir),
            "files": landed.files,
            "bytes": landed.bytes,
            "verified": landed.verified,
            "differ": landed.differ,
            "failed": landed.failed.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
            "dropped": landed.dropped,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "snapshot {} ({}, {}) · {path}",
        snapshot.short_id(),
        snapshot.snapshot.host,
        snapshot.snapshot.time.format("%Y-%m-%d %H:%M UTC"),
    );
    let verdict = if landed.ok() {
        "all verified (SHA-256 on the target)".to_string()
    } else {
        format!(
            "{} verified, {} differ, {} could not be restored",
            landed.verified,
            landed.differ.len(),
            landed.failed.len()
        )
    };
    println!(
        "{} files, {} restored to {}:{}, {verdict}",
        landed.files,
        HumanBytes(landed.bytes),
        target.host,
        target.dir
    );
    if let Some(dropped) = crate::command::restore::dropped_line(&landed.dropped, keep_privileges) {
        println!("{dropped}");
    }
    Ok(())
}
