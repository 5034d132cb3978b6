//! Opening the catalog for a command, and noting in it what a command did.

use crate::settings::Settings;
use nightshift_catalog::{CATALOG_FILE, Catalog, SnapshotRecord};
use std::future::Future;

/// Runs `work` on the catalog under the data dir, on a small runtime.
pub fn with_catalog<T, F>(settings: &Settings, work: impl FnOnce(Catalog) -> F) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let catalog = Catalog::open(&settings.ensure_data_dir()?.join(CATALOG_FILE)).await?;
        let result = work(catalog.clone()).await;
        catalog.close().await;
        result
    })
}

/// The store's snapshots as catalog rows, with what repair found damaged.
pub fn snapshot_records(store: &nightshift_store::Store) -> anyhow::Result<Vec<SnapshotRecord>> {
    let damaged = store.damaged_snapshots();
    Ok(store
        .snapshots()?
        .into_iter()
        .map(|e| {
            let damaged_paths = damaged.get(&e.id).map(|d| d.lost.len() as u64);
            record(&e, damaged_paths)
        })
        .collect())
}

pub fn record(
    entry: &nightshift_store::SnapshotEntry,
    damaged_paths: Option<u64>,
) -> SnapshotRecord {
    nightshift_engine::snapshot_row(entry, None, damaged_paths)
}

/// Records what a command did in the catalog without failing the
/// command: the store is the truth, and `catalog rebuild-snapshots`
/// catches the catalog up.
pub fn note<F>(settings: &Settings, what: &str, work: impl FnOnce(Catalog) -> F)
where
    F: Future<Output = anyhow::Result<()>>,
{
    if let Err(err) = with_catalog(settings, work) {
        eprintln!("warning: could not record the {what} in the catalog: {err:#}");
    }
}
