//! The service record of the fleet.
//!
//! Every run, job and step nightshift performs is written to a SQLite file
//! through sqlx, so sysadmins can debug from it, reports can be computed from
//! it, and auditors can be shown it. This crate owns the connection settings,
//! the migrations (from the top-level `migrations/` directory, embedded at
//! build time) and typed access to the records; it knows nothing of SSH or
//! chunk formats.
//!
//! A statement built with `format!` only ever joins the catalog's own
//! constants (column lists, status sets, ids it generated); values from
//! outside are always bound. Such statements are wrapped in
//! `sqlx::AssertSqlSafe`, which is what that wrapper asserts.

mod compliance;
mod daemon;
mod orphans;
mod query;
mod record;
mod state;

pub use compliance::{AppliedUpdate, FailedJob, HostFacts, HostTrail, PendingUpdate};
pub use daemon::{
    DeferredHost, Figures, FireOutcome, FireRecord, FireRow, LastRun, Lease, NewTrigger,
    TriggerRow, TriggerState,
};
pub use orphans::Interrupted;
pub use query::{HistoryEvent, HostState, JobDetail, RunDetail, RunFilter, RunRow, StepRow};
pub use record::{
    FinishedJob, FinishedStep, JobId, JobStatus, NewRun, OUTPUT_EDGE, RunCause, RunId, RunStatus,
    StepEnd, StepId, StepKind, StepStatus, Trigger,
};
pub use state::{PackageChange, PackageState, RestoreRecord, SnapshotRecord, Verification};

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The catalog's file name inside the data directory.
pub const CATALOG_FILE: &str = "catalog.sqlite";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "cannot open the catalog {path}: {source}; check the data directory's permissions and free space"
    )]
    Open { path: PathBuf, source: sqlx::Error },
    #[error(
        "cannot bring the catalog {path} up to date: {source}; it may come from a newer nightshift, or be damaged (keep a copy before repairing it)"
    )]
    Migrate {
        path: PathBuf,
        source: sqlx::migrate::MigrateError,
    },
    #[error("catalog query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// A copy of `value` with every field whose name suggests a secret
/// replaced, at any depth.
pub fn redacted(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    const SECRET: [&str; 5] = ["passphrase", "password", "token", "secret", "key"];
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(name, v)| {
                    let lower = name.to_ascii_lowercase();
                    if SECRET.iter().any(|s| lower.contains(s)) {
                        (name.clone(), Value::String("[redacted]".into()))
                    } else {
                        (name.clone(), redacted(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

/// Holds `CATALOG.lock` exclusively while migrations run.
async fn migration_lock(path: &Path) -> std::io::Result<std::fs::File> {
    let lock = path.with_extension("lock");
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(lock)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// One line of the audit log.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub at: String,
    pub actor: String,
    pub action: String,
    /// JSON, secrets redacted.
    pub arguments: String,
    pub outcome: String,
}

/// How much of the catalog file each reader maps (SQLite's `mmap_size`;
/// the build allows up to 64 GiB, see `.cargo/config.toml`).
const READER_MMAP: u64 = 64 << 30;

/// A time as the catalog stores it: UTC, RFC 3339 with milliseconds, so
/// text order is time order.
pub fn stamp(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// An open catalog: one writer connection and a pool of readers, both on the
/// same WAL-mode SQLite file.
#[derive(Debug, Clone)]
pub struct Catalog {
    path: PathBuf,
    writer: SqlitePool,
    readers: SqlitePool,
}

impl Catalog {
    /// Opens (creating if needed) and migrates the catalog at `path`.
    pub async fn open(path: &Path) -> Result<Self, CatalogError> {
        let open_err = |source| CatalogError::Open {
            path: path.to_path_buf(),
            source,
        };
        create_private(path).map_err(|err| open_err(sqlx::Error::Io(err)))?;
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // A report's statements take seconds on a large catalog by
            // design: that is for the debug log, not a warning to the user.
            .log_slow_statements(tracing::log::LevelFilter::Debug, Duration::from_secs(1));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(open_err)?;
        // SQLite has no advisory lock for sqlx to take, so two processes
        // opening a new catalog at once (a daemon and a `status`) would both
        // migrate it: a lock file beside it lets one go at a time.
        let guard = migration_lock(path)
            .await
            .map_err(|source| CatalogError::Open {
                path: path.to_path_buf(),
                source: sqlx::Error::Io(source),
            })?;
        let migrated = MIGRATOR.run(&writer).await;
        drop(guard);
        migrated.map_err(|source| CatalogError::Migrate {
            path: path.to_path_buf(),
            source,
        })?;
        // Readers map the file rather than copy pages through read(2) into
        // a private 2 MiB cache each: a report's thousands of index seeks
        // per moment otherwise spend as long in the kernel as in SQLite.
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_slow_level(tracing::log::LevelFilter::Debug)
            .connect_with(
                options
                    .read_only(true)
                    .pragma("mmap_size", READER_MMAP.to_string()),
            )
            .await
            .map_err(open_err)?;
        tracing::debug!(path = %path.display(), "catalog open");
        Ok(Self {
            path: path.to_path_buf(),
            writer,
            readers,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The newest migration applied, which is the schema version.
    pub async fn schema_version(&self) -> Result<i64, CatalogError> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.readers)
                .await?;
        Ok(version.unwrap_or(0))
    }

    /// The schema version this build of nightshift expects.
    pub fn expected_schema_version() -> i64 {
        MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// Appends one entry to the audit log. Arguments whose names suggest a
    /// secret (passphrase, password, token, secret, key) are replaced by
    /// `"[redacted]"` before anything is written.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        arguments: &serde_json::Value,
        outcome: &str,
    ) -> Result<i64, CatalogError> {
        let id = sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor, action, arguments, outcome)
             VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?, ?, ?, ?) RETURNING id",
        )
        .bind(actor)
        .bind(action)
        .bind(redacted(arguments).to_string())
        .bind(outcome)
        .fetch_one(&self.writer)
        .await?;
        Ok(id)
    }

    /// The newest audit entries, newest first: (at, actor, action,
    /// arguments as JSON, outcome).
    pub async fn audit_entries(&self, limit: u32) -> Result<Vec<AuditEntry>, CatalogError> {
        Ok(sqlx::query_as(
            "SELECT at, actor, action, arguments, outcome FROM audit_log ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.readers)
        .await?)
    }

    /// How many audit entries exist.
    pub async fn audit_len(&self) -> Result<i64, CatalogError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&self.readers)
            .await?)
    }

    pub async fn close(self) {
        self.writer.close().await;
        self.readers.close().await;
    }
}

/// Creates the catalog file readable by its owner alone, whatever the
/// umask, before SQLite opens it: it holds step output and the audit log.
/// SQLite gives its WAL and shared-memory files the same mode.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map(drop),
    }
}
