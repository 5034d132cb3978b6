use serde::{Deserialize, Serialize};

use crate::crypto::MasterKey;
use crate::error::{Result, StoreError};

/// The repository format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// A store's `config` file. Everything here shapes the bytes on disk, so it
/// is fixed when the store is created: changing the chunker would stop new
/// backups from deduplicating against old ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub version: u32,
    /// Random identity of this store, so two stores are never confused.
    pub id: String,
    /// How objects are sealed; `none` only when asked for.
    #[serde(default)]
    pub encryption: Encryption,
    pub chunker: ChunkerConfig,
    pub compression: CompressionConfig,
    pub pack: PackConfig,
    /// Keyed BLAKE3 of the rest of this config under a key derived from
    /// the master key, in hex; encrypted stores only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encryption {
    #[default]
    #[serde(rename = "none")]
    None,
    #[serde(rename = "xchacha20-poly1305")]
    XChaCha20Poly1305,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerConfig {
    /// Always `fastcdc-2020`: the pinned fastcdc crate's v2020 cut function.
    pub algorithm: ChunkerAlgorithm,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
    /// FastCDC's normalization level (0 to 3).
    pub normalization: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkerAlgorithm {
    #[serde(rename = "fastcdc-2020")]
    FastCdc2020,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    /// zstd level; a chunk that does not shrink is stored raw.
    pub level: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackConfig {
    /// A pack is closed once its blobs reach this many bytes.
    pub target_size: u32,
}

/// Chosen by measuring on the benchmark data (see BENCHMARKS.md, "chunker
/// parameters").
pub const DEFAULT_CHUNKER: ChunkerConfig = ChunkerConfig {
    algorithm: ChunkerAlgorithm::FastCdc2020,
    min_size: 128 * 1024,
    avg_size: 512 * 1024,
    max_size: 4 * 1024 * 1024,
    normalization: 1,
};

pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;

impl StoreConfig {
    pub fn new(id: String) -> Self {
        Self {
            version: FORMAT_VERSION,
            id,
            encryption: Encryption::XChaCha20Poly1305,
            chunker: DEFAULT_CHUNKER,
            compression: CompressionConfig { level: 3 },
            pack: PackConfig {
                target_size: DEFAULT_PACK_SIZE,
            },
            authentication: None,
        }
    }

    /// The tag that authenticates this config under `master`: a keyed
    /// hash of its TOML without the tag itself.
    pub fn authentication_tag(&self, master: &MasterKey) -> String {
        let bare = Self {
            authentication: None,
            ..self.clone()
        };
        let text = toml::to_string(&bare).expect("the config serializes");
        let key = master.derive("nightshift store config authentication v1");
        blake3::keyed_hash(&key, text.as_bytes())
            .to_hex()
            .to_string()
    }

    /// Refuses settings the format cannot carry or the chunker rejects.
    pub fn validate(&self) -> Result<()> {
        let c = &self.chunker;
        let bad = |what: String| Err(StoreError::Setting(what));
        if !(64..=1 << 20).contains(&c.min_size)
            || !(256..=1 << 22).contains(&c.avg_size)
            || !(1024..=1 << 23).contains(&c.max_size)
        {
            return bad(format!(
                "chunk sizes {}/{}/{} are outside the limits (min 64 B–1 MiB, avg 256 B–4 MiB, max 1 KiB–8 MiB)",
                c.min_size, c.avg_size, c.max_size
            ));
        }
        if !(c.min_size < c.avg_size && c.avg_size < c.max_size) {
            return bad("chunk sizes must grow: min < avg < max".into());
        }
        if c.normalization > 3 {
            return bad("chunker normalization is 0 to 3".into());
        }
        if !(1..=22).contains(&self.compression.level) {
            return bad(format!(
                "zstd level {} is outside 1–22",
                self.compression.level
            ));
        }
        // Offsets in the index have 30 bits; a pack may run past its target
        // by a few chunks, so targets stay well below 1 GiB.
        if !(1 << 20..=1 << 29).contains(&self.pack.target_size) {
            return bad("pack target size must be 1 MiB to 512 MiB".into());
        }
        Ok(())
    }
}
