use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ChunkId;

/// What one backup saw: written last, so a snapshot that exists is complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub time: DateTime<Utc>,
    pub host: String,
    /// Absolute paths backed up, or `stream:NAME` / `tar:NAME` for streams.
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Root directory listing: the paths appear in it with their full
    /// directory structure, as they were on the host.
    pub tree: ChunkId,
    pub summary: Summary,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    /// Files whose chunk list was taken from the parent without reading.
    pub files_unchanged: u64,
    pub bytes_read: u64,
    /// Total size of the files in the snapshot.
    pub bytes_total: u64,
    pub new_chunks: u64,
    /// New chunk bytes before and after compression.
    pub new_bytes_raw: u64,
    pub new_bytes_stored: u64,
    pub duration_secs: f64,
}

impl Summary {
    /// How much smaller the new data got through zstd (1.0 when none is new).
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.new_bytes_raw, self.new_bytes_stored)
    }

    /// How much of what was read was already stored.
    pub fn dedup_ratio(&self) -> f64 {
        ratio(self.bytes_read, self.new_bytes_raw)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// A snapshot with the id it is stored under.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotEntry {
    pub id: String,
    pub snapshot: Snapshot,
}

impl SnapshotEntry {
    pub fn short_id(&self) -> &str {
        self.id.get(..8).unwrap_or(&self.id)
    }
}
