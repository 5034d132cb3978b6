//! The index: where each chunk lives. In memory it is one sorted array of
//! 46-byte entries (id, pack number, offset and flags, stored and plaintext
//! lengths), searched by bisection within a bucket; on disk,
//! zstd-compressed, sealed index files, one per backup.

use std::collections::HashMap;
use std::io::Read;

use crate::ChunkId;
use crate::crypto::Crypto;
use crate::pack::{Blob, BlobKind, PackId};

/// First bytes of every index file (format version 1).
pub const INDEX_MAGIC: &[u8; 8] = b"NSINDEX\x01";

const COMPRESSED: u32 = 1 << 31;
const TREE: u32 = 1 << 30;
const OFFSET_MASK: u32 = TREE - 1;
const LEN_MASK: u64 = crate::pack::MAX_BLOB_LEN as u64;

/// Packed to two-byte alignment, so an entry is 46 bytes, not 48.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(2))]
struct Entry {
    id: [u8; 32],
    pack: u32,
    /// Offset in the low 30 bits, then the tree and compressed flags.
    offset_flags: u32,
    /// Stored length (low 24 bits) and plaintext length (next 24 bits).
    lens: [u16; 3],
}

impl Entry {
    fn lens(&self) -> (u32, u32) {
        let [a, b, c] = self.lens;
        let v = u64::from(a) | u64::from(b) << 16 | u64::from(c) << 32;
        ((v & LEN_MASK) as u32, (v >> 24 & LEN_MASK) as u32)
    }
}

/// Where a chunk is: which pack, and its blob there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub blob: Blob,
}

/// The chunks of the packs one backup wrote, as stored in one index file;
/// prune writes one file for the whole store that replaces the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFile {
    pub packs: Vec<(PackId, Vec<Blob>)>,
    /// Packs of `packs` that prune marked for deletion, and when (Unix
    /// seconds). They stay readable; backups no longer store into them.
    pub marked: Vec<(PackId, i64)>,
    /// Names of the index files this one replaces: readers ignore them.
    pub supersedes: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<PackId>,
    /// When each pack was marked for deletion (Unix seconds), 0 if live.
    marks: Vec<i64>,
    entries: Vec<Entry>,
    /// For each value of an id's first two bytes, where its entries start
    /// in `entries`: a lookup bisects one bucket (about 150 entries at ten
    /// million chunks) instead of the whole array. 256 KiB, once.
    buckets: Vec<u32>,
}

impl Index {
    pub fn from_files(files: impl IntoIterator<Item = IndexFile>) -> Self {
        let mut index = Self::default();
        for file in files {
            index.extend(file);
        }
        index.seal();
        index
    }

    pub(crate) fn extend(&mut self, file: IndexFile) {
        let marked: HashMap<PackId, i64> = file.marked.into_iter().collect();
        for (pack, blobs) in file.packs {
            let number = u32::try_from(self.packs.len()).expect("fewer than 4 billion packs");
            self.packs.push(pack);
            self.marks.push(marked.get(&pack).copied().unwrap_or(0));
            self.entries.extend(blobs.iter().map(|blob| {
                let v = u64::from(blob.stored_len) & LEN_MASK
                    | (u64::from(blob.raw_len) & LEN_MASK) << 24;
                Entry {
                    id: *blob.id.as_bytes(),
                    pack: number,
                    offset_flags: (blob.offset & OFFSET_MASK)
                        | if blob.compressed { COMPRESSED } else { 0 }
                        | if blob.kind == BlobKind::Tree { TREE } else { 0 },
                    lens: [v as u16, (v >> 16) as u16, (v >> 32) as u16],
                }
            }));
        }
    }

    /// Gives each pack one number (a pack listed by two files is live if
    /// either says so), sorts the entries and drops duplicates: a chunk
    /// stored twice is found in a live pack before a marked one.
    pub(crate) fn seal(&mut self) {
        self.merge_packs();
        self.entries.sort_unstable_by_key(|e| e.id);
        // Marks are looked up only for duplicates, which are rare, so the
        // sort itself stays a plain one by id.
        let marks = &self.marks;
        self.entries.dedup_by(|later, kept| {
            if later.id != kept.id {
                return false;
            }
            let marked = |e: &Entry| marks[e.pack as usize] != 0;
            if marked(kept) && !marked(later) {
                std::mem::swap(later, kept);
            }
            true
        });
        self.entries.shrink_to_fit();
        self.packs.shrink_to_fit();
        self.marks.shrink_to_fit();
        self.buckets = vec![0; (1 << 16) + 1];
        for entry in &self.entries {
            self.buckets[bucket(&entry.id) + 1] += 1;
        }
        for at in 1..self.buckets.len() {
            self.buckets[at] += self.buckets[at - 1];
        }
    }

    fn merge_packs(&mut self) {
        let mut first: HashMap<PackId, u32> = HashMap::with_capacity(self.packs.len());
        let mut renumber = Vec::with_capacity(self.packs.len());
        let (mut packs, mut marks) = (Vec::new(), Vec::<i64>::new());
        for (&pack, &mark) in self.packs.iter().zip(&self.marks) {
            let number = *first.entry(pack).or_insert_with(|| {
                packs.push(pack);
                marks.push(mark);
                (packs.len() - 1) as u32
            });
            if mark == 0 {
                marks[number as usize] = 0;
            }
            renumber.push(number);
        }
        if packs.len() != self.packs.len() {
            for entry in &mut self.entries {
                entry.pack = renumber[entry.pack as usize];
            }
        }
        (self.packs, self.marks) = (packs, marks);
    }

    /// Adds the packs of a finished backup.
    pub fn merge(&mut self, file: IndexFile) {
        self.extend(file);
        self.seal();
    }

    pub fn get(&self, id: &ChunkId) -> Option<Location> {
        self.position(id).map(|at| self.location(&self.entries[at]))
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.get(id).is_some()
    }

    /// Whether the chunk is in a pack not marked for deletion: only such
    /// chunks may be named by a new snapshot without storing them again.
    pub fn contains_live(&self, id: &ChunkId) -> bool {
        self.position(id)
            .is_some_and(|at| self.marks[self.entries[at].pack as usize] == 0)
    }

    /// The chunk's place in the sorted entries: a dense number for bitsets.
    pub fn position(&self, id: &ChunkId) -> Option<usize> {
        let b = bucket(id.as_bytes());
        let (start, end) = match self.buckets.get(b..b + 2) {
            Some(&[start, end]) => (start as usize, end as usize),
            _ => return None,
        };
        let at = self.entries[start..end]
            .binary_search_by(|e| e.id.cmp(id.as_bytes()))
            .ok()?;
        Some(start + at)
    }

    /// When the pack was marked for deletion (Unix seconds), if it was.
    pub fn marked(&self, pack: usize) -> Option<i64> {
        self.marks.get(pack).copied().filter(|&m| m != 0)
    }

    /// The entry at `position`, and its pack's number.
    pub fn at(&self, position: usize) -> (usize, Location) {
        let entry = &self.entries[position];
        (entry.pack as usize, self.location(entry))
    }

    /// Replaces the marks of the first `marks.len()` packs (by number);
    /// takes effect on lookups at the next [`Index::merge`].
    pub(crate) fn set_marks(&mut self, marks: &[i64]) {
        self.marks[..marks.len()].copy_from_slice(marks);
    }

    /// The whole index as one file, with the packs `keep` keeps.
    pub fn to_file(&self, keep: impl Fn(usize) -> bool) -> IndexFile {
        let mut blobs: Vec<Vec<Blob>> = vec![Vec::new(); self.packs.len()];
        for entry in &self.entries {
            blobs[entry.pack as usize].push(self.location(entry).blob);
        }
        let mut file = IndexFile::default();
        for (number, mut list) in blobs.into_iter().enumerate() {
            if !keep(number) {
                continue;
            }
            list.sort_unstable_by_key(|b| b.offset);
            let pack = self.packs[number];
            if self.marks[number] != 0 {
                file.marked.push((pack, self.marks[number]));
            }
            file.packs.push((pack, list));
        }
        file
    }

    fn location(&self, entry: &Entry) -> Location {
        let (flags, pack) = (entry.offset_flags, entry.pack);
        let (stored_len, raw_len) = entry.lens();
        Location {
            pack: self.packs[pack as usize],
            blob: Blob {
                id: ChunkId::from_bytes(entry.id),
                kind: if flags & TREE == 0 {
                    BlobKind::Data
                } else {
                    BlobKind::Tree
                },
                compressed: flags & COMPRESSED != 0,
                offset: flags & OFFSET_MASK,
                stored_len,
                raw_len,
            },
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn packs(&self) -> &[PackId] {
        &self.packs
    }

    /// Packs marked for deletion by prune, and when.
    pub fn marked_packs(&self) -> impl Iterator<Item = (PackId, i64)> + '_ {
        self.packs
            .iter()
            .zip(&self.marks)
            .filter(|(_, m)| **m != 0)
            .map(|(p, m)| (*p, *m))
    }

    pub fn iter(&self) -> impl Iterator<Item = Location> + '_ {
        self.entries.iter().map(|e| self.location(e))
    }

    /// Heap bytes held, for `store stats` and the index benchmark.
    pub fn memory_bytes(&self) -> usize {
        self.entries.capacity() * size_of::<Entry>()
            + self.packs.capacity() * (size_of::<PackId>() + size_of::<i64>())
            + self.buckets.capacity() * size_of::<u32>()
    }
}

fn bucket(id: &[u8; 32]) -> usize {
    usize::from(u16::from_be_bytes([id[0], id[1]]))
}

impl IndexFile {
    /// The file's bytes: magic, then the zstd-compressed body, sealed.
    pub fn encode(&self, crypto: &Crypto) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for (pack, blobs) in &self.packs {
            body.extend_from_slice(&pack.0);
            body.extend_from_slice(&(blobs.len() as u32).to_le_bytes());
            for blob in blobs {
                body.push(u8::from(blob.kind == BlobKind::Tree));
                body.push(u8::from(blob.compressed));
                body.extend_from_slice(&blob.offset.to_le_bytes());
                body.extend_from_slice(&blob.stored_len.to_le_bytes());
                body.extend_from_slice(&blob.raw_len.to_le_bytes());
                body.extend_from_slice(blob.id.as_bytes());
            }
        }
        body.extend_from_slice(&(self.marked.len() as u32).to_le_bytes());
        for (pack, time) in &self.marked {
            body.extend_from_slice(&pack.0);
            body.extend_from_slice(&time.to_le_bytes());
        }
        let names: Vec<ChunkId> = self
            .supersedes
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        body.extend_from_slice(&(names.len() as u32).to_le_bytes());
        for id in names {
            body.extend_from_slice(id.as_bytes());
        }
        // As in packs: no two index files are ever the same file, so a
        // backup can never recreate, under its name, one prune deletes.
        // Readers ignore what follows the superseded list.
        body.extend_from_slice(&crate::crypto::random::<16>());
        let mut bytes = INDEX_MAGIC.to_vec();
        bytes
            .extend(crypto.seal(&zstd::encode_all(&body[..], 3).expect("compressing into memory")));
        bytes
    }

    /// Parses an index file; the error says what is wrong with it.
    pub fn decode(bytes: &[u8], crypto: &Crypto) -> Result<Self, String> {
        let sealed = bytes
            .strip_prefix(INDEX_MAGIC)
            .ok_or("it does not start with the index magic")?;
        let body = crypto.open(sealed)?;
        let mut body = zstd::Decoder::new(&body[..]).map_err(|e| format!("zstd: {e}"))?;
        let mut file = Self::default();
        let packs = read_u32(&mut body)?;
        for _ in 0..packs {
            let pack = PackId(read_array(&mut body)?);
            let count = read_u32(&mut body)?;
            let mut blobs = Vec::with_capacity(count.min(1 << 20) as usize);
            for _ in 0..count {
                let [kind, flags] = read_array(&mut body)?;
                blobs.push(Blob {
                    kind: match kind {
                        0 => BlobKind::Data,
                        1 => BlobKind::Tree,
                        other => return Err(format!("unknown blob kind {other}")),
                    },
                    compressed: flags & 1 == 1,
                    offset: read_u32(&mut body)?,
                    stored_len: read_u32(&mut body)?,
                    raw_len: read_u32(&mut body)?,
                    id: ChunkId::from_bytes(read_array(&mut body)?),
                });
            }
            file.packs.push((pack, blobs));
        }
        for _ in 0..read_u32(&mut body)? {
            let pack = PackId(read_array(&mut body)?);
            file.marked
                .push((pack, i64::from_le_bytes(read_array(&mut body)?)));
        }
        for _ in 0..read_u32(&mut body)? {
            file.supersedes
                .push(ChunkId::from_bytes(read_array(&mut body)?).to_string());
        }
        Ok(file)
    }
}

fn read_array<const N: usize>(source: &mut impl Read) -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    source
        .read_exact(&mut bytes)
        .map_err(|e| format!("it ends early ({e})"))?;
    Ok(bytes)
}

fn read_u32(source: &mut impl Read) -> Result<u32, String> {
    read_array(source).map(u32::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: u32) -> Blob {
        Blob {
            id: ChunkId::of(&n.to_le_bytes()),
            kind: if n.is_multiple_of(2) {
                BlobKind::Data
            } else {
                BlobKind::Tree
            },
            compressed: n.is_multiple_of(3),
            offset: 8 + n * 100,
            stored_len: 100,
            raw_len: 4000 + n,
        }
    }

    #[test]
    fn entries_take_46_bytes() {
        assert_eq!(size_of::<Entry>(), 46);
    }

    #[test]
    fn file_round_trips_and_lookups_find_every_blob() {
        let file = IndexFile {
            packs: vec![
                (PackId([1; 32]), (0..50).map(blob).collect()),
                (PackId([2; 32]), (50..80).map(blob).collect()),
            ],
            marked: vec![(PackId([2; 32]), 1_700_000_000)],
            supersedes: vec![ChunkId::of(b"old index").to_string()],
        };
        let crypto = Crypto::sealed(&crate::crypto::MasterKey::generate());
        let decoded = IndexFile::decode(&file.encode(&crypto), &crypto).expect("decode");
        assert_eq!(decoded, file);
        let index = Index::from_files([decoded]);
        assert_eq!(index.len(), 80);
        for n in 0..80 {
            let location = index.get(&blob(n).id).expect("indexed");
            assert_eq!(location.blob, blob(n));
            assert_eq!(location.pack, PackId([if n < 50 { 1 } else { 2 }; 32]));
        }
        assert!(index.get(&ChunkId::of(b"absent")).is_none());
        assert!(index.contains_live(&blob(10).id));
        assert!(!index.contains_live(&blob(60).id), "pack 2 is marked");
        assert_eq!(
            index.marked_packs().collect::<Vec<_>>(),
            [(PackId([2; 32]), 1_700_000_000)]
        );
    }

    #[test]
    fn a_chunk_in_a_live_and_a_marked_pack_is_found_in_the_live_one() {
        let marked = IndexFile {
            packs: vec![(PackId([1; 32]), vec![blob(1), blob(2)])],
            marked: vec![(PackId([1; 32]), 5)],
            ..IndexFile::default()
        };
        let live = IndexFile {
            packs: vec![(PackId([2; 32]), vec![blob(2)])],
            ..IndexFile::default()
        };
        let index = Index::from_files([marked.clone(), live]);
        assert_eq!(
            index.get(&blob(2).id).map(|l| l.pack),
            Some(PackId([2; 32]))
        );
        assert!(index.contains_live(&blob(2).id));
        assert!(!index.contains_live(&blob(1).id));
        // The same pack listed live by another file is live.
        let relisted = IndexFile {
            packs: vec![(PackId([1; 32]), vec![blob(1)])],
            ..IndexFile::default()
        };
        let index = Index::from_files([marked, relisted]);
        assert_eq!(index.packs().len(), 1);
        assert!(index.contains_live(&blob(1).id));
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn the_same_entries_never_encode_to_the_same_file() {
        let file = IndexFile {
            packs: vec![(PackId([1; 32]), vec![blob(1)])],
            ..IndexFile::default()
        };
        let (first, second) = (file.encode(&Crypto::None), file.encode(&Crypto::None));
        assert_ne!(first, second);
        assert_eq!(
            IndexFile::decode(&second, &Crypto::None).as_ref(),
            Ok(&file)
        );
    }

    #[test]
    fn truncated_file_is_refused() {
        let file = IndexFile {
            packs: vec![(PackId([1; 32]), vec![blob(1)])],
            ..IndexFile::default()
        };
        let bytes = file.encode(&Crypto::None);
        assert!(IndexFile::decode(&bytes[..bytes.len() - 3], &Crypto::None).is_err());
        assert!(IndexFile::decode(b"garbage", &Crypto::None).is_err());
    }
}
