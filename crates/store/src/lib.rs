//! The backup repository, as a pure library.
//!
//! Backups are split into content-defined chunks, each named by the BLAKE3
//! hash of its plaintext, compressed with zstd and stored once however many
//! hosts hold the same bytes. The store knows nothing of SSH or SQL: it is fed
//! byte streams and file trees, so it can be tested and benchmarked on local
//! data alone, and a lost catalog never loses a backup.

mod chunk;

pub use chunk::{ChunkId, ChunkIdError};
