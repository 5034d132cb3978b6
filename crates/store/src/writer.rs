//! Getting new chunks into packs on disk.
//!
//! A [`Sink`] names every chunk and passes on only the new ones, each once.
//! Callers that read many files compress in their own thread (one reader per
//! core already keeps every core busy); callers with one stream hand raw
//! chunks to a pool of compressors. One packer thread appends compressed
//! chunks to the open data or tree pack, written straight to a temporary
//! file, so no pack is ever held in memory; a finisher thread fsyncs and
//! renames full packs, so a slow disk flush does not stall the pipeline.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::ChunkId;
use crate::chunker::Chunker;
use crate::config::ChunkerConfig;
use crate::crypto::{Crypto, random};
use crate::error::{IoContext, Result};
use crate::index::{Index, IndexFile};
use crate::pack::{self, Blob, BlobKind, PACK_MAGIC, PackId};
use crate::repo::{Store, TempFile};

pub(crate) type Compressor = zstd::bulk::Compressor<'static>;

/// What a backup added to the store.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub index: IndexFile,
    pub chunks: u64,
    pub raw: u64,
    pub stored: u64,
}

struct RawChunk {
    id: ChunkId,
    kind: BlobKind,
    data: Vec<u8>,
}

struct PackedChunk {
    id: ChunkId,
    kind: BlobKind,
    compressed: bool,
    raw_len: u64,
    stored: Vec<u8>,
}

impl PackedChunk {
    fn new(
        id: ChunkId,
        kind: BlobKind,
        data: &[u8],
        compressor: &mut Compressor,
        crypto: &Crypto,
    ) -> Self {
        let (stored, compressed) = pack::encode(data, compressor, crypto);
        Self {
            id,
            kind,
            compressed,
            raw_len: data.len() as u64,
            stored,
        }
    }
}

/// Where chunks go: known ones are only named, new ones are compressed and
/// packed, each once even when two files hold it.
pub(crate) struct Sink<'a> {
    known: &'a Index,
    claimed: Mutex<HashSet<ChunkId>>,
    raw: Sender<RawChunk>,
    packed: Sender<PackedChunk>,
    failed: &'a AtomicBool,
    level: i32,
    crypto: &'a Crypto,
    chunker: ChunkerConfig,
}

impl Sink<'_> {
    /// Stores a chunk if it is new; `compressor` compresses it in this
    /// thread, without one it goes to the pool.
    pub fn put(
        &self,
        kind: BlobKind,
        data: Vec<u8>,
        compressor: Option<&mut Compressor>,
    ) -> ChunkId {
        let id = self.crypto.chunk_id(&data);
        if self.known.contains_live(&id) || !self.claimed.lock().expect("not poisoned").insert(id) {
            return id;
        }
        // A closed channel means the packer failed; its error is reported.
        let _ = match compressor {
            Some(compressor) => self
                .packed
                .send(PackedChunk::new(id, kind, &data, compressor, self.crypto))
                .is_ok(),
            None => self.raw.send(RawChunk { id, kind, data }).is_ok(),
        };
        id
    }

    /// A chunker with the store's parameters and gear seed.
    pub fn chunker(&self) -> Chunker {
        Chunker::with_seed(self.chunker, self.crypto.chunker_seed())
    }

    pub fn compressor(&self) -> Compressor {
        Compressor::new(self.level).expect("a valid zstd level")
    }

    /// Whether writing failed, so readers can stop early.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

impl Store {
    /// Runs `work` with a sink backed by `pool` compressor threads, one
    /// packer and one finisher; returns what `work` returned and what was
    /// written. Chunks live in `known` are not stored again. Nothing is
    /// visible in the index until the caller writes the index file.
    pub(crate) fn with_writer<T>(
        &self,
        known: &Index,
        pool: usize,
        work: impl FnOnce(&Sink<'_>) -> Result<T>,
    ) -> Result<(T, Written)> {
        let level = self.config().compression.level;
        let depth = 2 * pool.max(2);
        let (raw_tx, raw_rx) = bounded::<RawChunk>(depth);
        let (packed_tx, packed_rx) = bounded::<PackedChunk>(depth);
        let (full_tx, full_rx) = unbounded::<FullPack>();
        let failed = AtomicBool::new(false);
        thread::scope(|scope| {
            for _ in 0..pool {
                let (rx, tx) = (raw_rx.clone(), packed_tx.clone());
                let crypto = self.crypto();
                scope.spawn(move || compress(rx, tx, level, crypto));
            }
            drop(raw_rx);
            let packer = scope.spawn(|| self.pack(packed_rx, full_tx, &failed));
            let finisher = scope.spawn(|| self.finish_packs(full_rx, &failed));
            let sink = Sink {
                known,
                claimed: Mutex::default(),
                raw: raw_tx,
                packed: packed_tx,
                failed: &failed,
                level,
                crypto: self.crypto(),
                chunker: self.config().chunker,
            };
            let outcome = work(&sink);
            drop(sink);
            let packed = packer.join().expect("the packer does not panic");
            let index = finisher.join().expect("the finisher does not panic");
            let mut written = packed?;
            written.index = index?;
            Ok((outcome?, written))
        })
    }

    /// Appends chunks to the open data or tree pack; hands full packs on.
    fn pack(
        &self,
        rx: Receiver<PackedChunk>,
        full: Sender<FullPack>,
        failed: &AtomicBool,
    ) -> Result<Written> {
        let target = u64::from(self.config().pack.target_size);
        // In an encrypted store, chunks are written in shuffled order (a
        // window of 8), so the sequence of sizes in a pack does not follow
        // the files they came from.
        let shuffle = if matches!(self.crypto(), Crypto::None) {
            1
        } else {
            8
        };
        let mut open: [Option<OpenPack>; 2] = [None, None];
        let mut written = Written::default();
        let mut step = |chunk: PackedChunk, written: &mut Written| -> Result<()> {
            let longest = chunk.raw_len.max(chunk.stored.len() as u64);
            if longest > u64::from(pack::MAX_BLOB_LEN) {
                // Only a tree can grow this large: one directory's entries.
                return Err(crate::StoreError::BlobTooLarge {
                    id: chunk.id,
                    len: longest,
                });
            }
            let slot = &mut open[usize::from(chunk.kind == BlobKind::Tree)];
            if slot.is_none() {
                *slot = Some(OpenPack::create(self)?);
            }
            let pack = slot.as_mut().expect("just opened");
            written.chunks += 1;
            written.raw += chunk.raw_len;
            written.stored += chunk.stored.len() as u64;
            pack.push(chunk, shuffle)?;
            if pack.len >= target {
                let _ = full.send(slot.take().expect("open").close(self.crypto())?);
            }
            Ok(())
        };
        for chunk in &rx {
            if let Err(err) = step(chunk, &mut written) {
                failed.store(true, Ordering::Relaxed);
                // Drain so no sender blocks, then report.
                rx.iter().for_each(drop);
                return Err(err);
            }
        }
        for pack in open.into_iter().flatten() {
            let _ = full.send(pack.close(self.crypto())?);
        }
        Ok(written)
    }

    /// Fsyncs and renames each full pack into place.
    fn finish_packs(&self, rx: Receiver<FullPack>, failed: &AtomicBool) -> Result<IndexFile> {
        let mut index = IndexFile::default();
        for pack in &rx {
            let relative = Store::pack_relative(pack.id);
            if let Err(err) = self.install(pack.tmp, &pack.file, &relative) {
                failed.store(true, Ordering::Relaxed);
                rx.iter().for_each(drop);
                return Err(err);
            }
            index.packs.push((pack.id, pack.blobs));
        }
        Ok(index)
    }
}

fn compress(rx: Receiver<RawChunk>, tx: Sender<PackedChunk>, level: i32, crypto: &Crypto) {
    let mut compressor = Compressor::new(level).expect("a valid zstd level");
    for chunk in rx {
        let packed = PackedChunk::new(chunk.id, chunk.kind, &chunk.data, &mut compressor, crypto);
        if tx.send(packed).is_err() {
            return;
        }
    }
}

/// A pack being written to its temporary file, hashed as it goes.
struct OpenPack {
    tmp: TempFile,
    out: BufWriter<File>,
    hasher: blake3::Hasher,
    len: u64,
    blobs: Vec<Blob>,
    /// Chunks not yet written, when writing in shuffled order.
    waiting: Vec<PackedChunk>,
}

/// A pack whose bytes are all written, waiting for fsync and rename.
struct FullPack {
    tmp: TempFile,
    file: File,
    id: PackId,
    blobs: Vec<Blob>,
}

impl OpenPack {
    fn create(store: &Store) -> Result<Self> {
        let (tmp, file) = store.temp_file()?;
        let mut pack = Self {
            tmp,
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: blake3::Hasher::new(),
            len: 0,
            blobs: Vec::new(),
            waiting: Vec::new(),
        };
        pack.write(PACK_MAGIC)?;
        Ok(pack)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).at("writing", self.tmp.path())?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Queues a chunk; once `window` are waiting, writes one at random.
    fn push(&mut self, chunk: PackedChunk, window: usize) -> Result<()> {
        self.waiting.push(chunk);
        if self.waiting.len() >= window {
            self.write_one()?;
        }
        Ok(())
    }

    fn write_one(&mut self) -> Result<()> {
        let pick = (u64::from_le_bytes(random()) % self.waiting.len() as u64) as usize;
        let chunk = self.waiting.swap_remove(pick);
        self.write_blob(&chunk)
    }

    fn write_blob(&mut self, chunk: &PackedChunk) -> Result<()> {
        let blob = Blob {
            id: chunk.id,
            kind: chunk.kind,
            compressed: chunk.compressed,
            offset: u32::try_from(self.len).expect("packs stay under 4 GiB"),
            stored_len: u32::try_from(chunk.stored.len()).expect("chunks stay under 4 GiB"),
            raw_len: u32::try_from(chunk.raw_len).expect("chunks stay under 4 GiB"),
        };
        self.write(&chunk.stored)?;
        self.blobs.push(blob);
        Ok(())
    }

    fn close(mut self, crypto: &Crypto) -> Result<FullPack> {
        while !self.waiting.is_empty() {
            self.write_one()?;
        }
        let header = pack::header(&self.blobs, crypto);
        self.write(&header)?;
        let file = self
            .out
            .into_inner()
            .map_err(|err| err.into_error())
            .at("writing", self.tmp.path())?;
        Ok(FullPack {
            tmp: self.tmp,
            file,
            id: PackId(*self.hasher.finalize().as_bytes()),
            blobs: self.blobs,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Encryption, StoreConfig};
    use crate::{BackupOptions, Progress, Store, StoreError};

    /// A directory whose entries make a tree chunk larger than an index
    /// entry can hold fails the backup by name, instead of storing a tree
    /// no one could read back.
    #[test]
    fn a_tree_too_large_to_index_fails_the_backup_clearly() {
        let work = tempfile::tempdir().expect("tempdir");
        let wide = work.path().join("wide");
        std::fs::create_dir(&wide).expect("mkdir");
        let long = "n".repeat(230);
        for i in 0..60_000 {
            std::fs::File::create(wide.join(format!("{long}{i:05}"))).expect("create");
        }
        let mut config = StoreConfig::new(String::new());
        config.encryption = Encryption::None;
        let mut store = Store::init(&work.path().join("store"), config, None).expect("init");
        let options = BackupOptions {
            host: "localhost".into(),
            ..BackupOptions::default()
        };
        let failed = store.backup_paths(&[wide], &options, &Progress::default());
        assert!(
            matches!(failed, Err(StoreError::BlobTooLarge { len, .. }) if len > 16 << 20),
            "{failed:?}"
        );
        assert!(store.snapshots().expect("list").is_empty());
    }
}
