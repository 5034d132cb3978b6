//! The backup repository, as a pure library.
//!
//! Backups are split into content-defined chunks, each named by the BLAKE3
//! hash of its plaintext, compressed with zstd and stored once however many
//! hosts hold the same bytes. The store knows nothing of SSH or SQL: it is fed
//! byte streams and file trees, so it can be tested and benchmarked on local
//! data alone, and a lost catalog never loses a backup. The on-disk format is
//! described in `FORMAT.md` next to this crate.

mod backup;
mod check;
mod chunk;
mod chunker;
mod compare;
mod config;
mod crypto;
mod error;
mod forget;
mod index;
mod lock;
mod pack;
mod prune;
mod reference;
mod remote;
mod repair;
mod repo;
mod restore;
mod snapshot;
mod tree;
mod verified;
mod writer;

pub use backup::{BackupOptions, BackupOutcome, Progress, Skipped, Stat};
pub use check::{CheckOptions, CheckReport, Problem};
pub use chunk::{ChunkId, ChunkIdError};
pub use chunker::{Chunker, Chunks};
pub use compare::{Change, Difference, Version};
pub use config::{
    ChunkerAlgorithm, ChunkerConfig, CompressionConfig, DEFAULT_CHUNKER, DEFAULT_PACK_SIZE,
    Encryption, FORMAT_VERSION, PackConfig, StoreConfig,
};
pub use crypto::{Crypto, KeyFile, MasterKey, Passphrase};
pub use error::{Result, StoreError};
pub use forget::{Decision, RetentionPolicy, decide};
pub use index::{Index, IndexFile, Location};
pub use lock::{Lock, LockInfo, LockKind, RemovedLock};
pub use pack::{Blob, BlobKind, PackId};
pub use prune::{Packs, PruneOptions, PruneReport};
pub use reference::{SnapshotRef, split_path};
pub use remote::{BadEntry, Entry, Listing, RemoteOptions, RemotePlan, StreamSource, remote_paths};
pub use repair::{Damage, RepairReport};
pub use repo::{PackFiles, Store};
pub use restore::{Dropped, RestoreOptions, RestoreOutcome};
pub use snapshot::{Snapshot, SnapshotEntry, Summary};
pub use tree::{Node, NodeKind, Tree};
pub use verified::VerificationStatus;
