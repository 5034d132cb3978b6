//! Pack files: many compressed, sealed chunks in one file, with a sealed
//! header at the end that lists them, so the index can always be rebuilt
//! from the packs alone.

use std::fmt;
use std::str::FromStr;

use crate::ChunkId;
use crate::crypto::Crypto;

/// First bytes of every pack file (format version 1).
pub const PACK_MAGIC: &[u8; 8] = b"NSPACK\x00\x01";
/// Last bytes of every pack file.
pub const PACK_END: &[u8; 8] = b"NSPKEND\x01";
/// One header entry: kind, flags, two reserved bytes, stored length,
/// plaintext length, chunk id.
pub const ENTRY_LEN: usize = 44;
/// Length of the sealed header, end magic.
pub const TRAILER_LEN: usize = 4 + 8;
/// Random bytes after a header's entries, so that no two packs are ever
/// the same file, even in an unencrypted store where the same chunks
/// would otherwise pack to the same bytes (and a backup's new pack could
/// replace, under the same name, one that prune is about to delete).
pub const SALT_LEN: usize = 16;
/// The largest a blob may be, stored or raw: what an index entry can hold
/// (24 bits). Lengths read from a pack or an index file are checked against
/// it before anything is allocated for them.
pub const MAX_BLOB_LEN: u32 = (1 << 24) - 1;

/// What a chunk holds: file content, or a directory listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobKind {
    Data,
    Tree,
}

/// A chunk's place in a pack, as the pack's header and the index record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blob {
    pub id: ChunkId,
    pub kind: BlobKind,
    pub compressed: bool,
    pub offset: u32,
    pub stored_len: u32,
    /// Length of the chunk's plaintext.
    pub raw_len: u32,
}

/// A pack's name: the BLAKE3 hash of the whole file, so a pack can be
/// checked without the index.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackId(pub [u8; 32]);

impl PackId {
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackId({self})")
    }
}

impl serde::Serialize for PackId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl FromStr for PackId {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let id: ChunkId = text.parse().map_err(|_| ())?;
        Ok(Self(*id.as_bytes()))
    }
}

/// Builds one pack in memory; [`PackBuilder::finish`] returns its bytes.
/// Backups stream packs to disk instead; this serves tests.
#[cfg(test)]
#[derive(Debug)]
pub struct PackBuilder {
    bytes: Vec<u8>,
    blobs: Vec<Blob>,
}

#[cfg(test)]
impl Default for PackBuilder {
    fn default() -> Self {
        Self {
            bytes: PACK_MAGIC.to_vec(),
            blobs: Vec::new(),
        }
    }
}

#[cfg(test)]
impl PackBuilder {
    pub fn push(
        &mut self,
        id: ChunkId,
        kind: BlobKind,
        compressed: bool,
        raw_len: u32,
        stored: &[u8],
    ) {
        let offset = u32::try_from(self.bytes.len()).expect("packs stay under 4 GiB");
        let stored_len = u32::try_from(stored.len()).expect("chunks stay under 4 GiB");
        self.bytes.extend_from_slice(stored);
        self.blobs.push(Blob {
            id,
            kind,
            compressed,
            offset,
            stored_len,
            raw_len,
        });
    }

    /// Appends the header and trailer: the finished pack and its blobs.
    pub fn finish(mut self, crypto: &Crypto) -> (Vec<u8>, Vec<Blob>) {
        self.bytes.extend(header(&self.blobs, crypto));
        (self.bytes, self.blobs)
    }
}

/// A pack's sealed header and its trailer, written after its blobs: the
/// entries, a random salt and their BLAKE3 hash (which catches damage in
/// unsealed stores), sealed, then the sealed length and the end magic.
pub fn header(blobs: &[Blob], crypto: &Crypto) -> Vec<u8> {
    let mut plain = Vec::with_capacity(blobs.len() * ENTRY_LEN + SALT_LEN + 32);
    for blob in blobs {
        plain.push(match blob.kind {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        });
        plain.push(u8::from(blob.compressed));
        plain.extend_from_slice(&[0, 0]);
        plain.extend_from_slice(&blob.stored_len.to_le_bytes());
        plain.extend_from_slice(&blob.raw_len.to_le_bytes());
        plain.extend_from_slice(blob.id.as_bytes());
    }
    plain.extend_from_slice(&crate::crypto::random::<SALT_LEN>());
    let hash = blake3::hash(&plain);
    plain.extend_from_slice(hash.as_bytes());
    let mut bytes = crypto.seal(&plain);
    let sealed_len = u32::try_from(bytes.len()).expect("headers stay under 4 GiB");
    bytes.extend_from_slice(&sealed_len.to_le_bytes());
    bytes.extend_from_slice(PACK_END);
    bytes
}

/// Why a pack's header could not be read from the tail given.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Give the last this many bytes of the pack.
    NeedMore(usize),
    Damaged(String),
}

/// Reads the blob list from a pack's tail (the last bytes of a pack of
/// `pack_len` bytes).
pub fn parse_header(tail: &[u8], pack_len: u64, crypto: &Crypto) -> Result<Vec<Blob>, HeaderError> {
    let damaged = |what: &str| HeaderError::Damaged(what.into());
    let Some(trailer_at) = tail.len().checked_sub(TRAILER_LEN) else {
        return Err(HeaderError::NeedMore(TRAILER_LEN));
    };
    let trailer = &tail[trailer_at..];
    if &trailer[4..] != PACK_END {
        return Err(damaged(
            "it does not end with the pack end mark (truncated?)",
        ));
    }
    let sealed_len = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes")) as usize;
    let needed = sealed_len + TRAILER_LEN;
    if needed as u64 > pack_len.saturating_sub(PACK_MAGIC.len() as u64) {
        return Err(damaged("its header length is larger than the pack"));
    }
    let Some(header_at) = trailer_at.checked_sub(sealed_len) else {
        return Err(HeaderError::NeedMore(needed));
    };
    let plain = crypto
        .open(&tail[header_at..trailer_at])
        .map_err(|what| HeaderError::Damaged(format!("its header: {what}")))?;
    let Some(hashed_len) = plain.len().checked_sub(32) else {
        return Err(damaged("its header is too short"));
    };
    let (hashed, hash) = plain.split_at(hashed_len);
    if blake3::hash(hashed).as_bytes() != hash {
        return Err(damaged("its header does not match its hash"));
    }
    // Packs written before the salt have entries only; 16 is not a
    // multiple of 44, so the two layouts cannot be confused.
    let entries = match hashed_len % ENTRY_LEN {
        0 => hashed,
        SALT_LEN => &hashed[..hashed_len - SALT_LEN],
        _ => return Err(damaged("its header's length fits no layout")),
    };
    let mut offset = PACK_MAGIC.len() as u64;
    let mut blobs = Vec::with_capacity(entries.len() / ENTRY_LEN);
    for entry in entries.chunks_exact(ENTRY_LEN) {
        let kind = match entry[0] {
            0 => BlobKind::Data,
            1 => BlobKind::Tree,
            _ => return Err(damaged("its header names an unknown blob kind")),
        };
        let stored_len = u32::from_le_bytes(entry[4..8].try_into().expect("4 bytes"));
        let raw_len = u32::from_le_bytes(entry[8..12].try_into().expect("4 bytes"));
        blobs.push(Blob {
            id: ChunkId::from_bytes(entry[12..44].try_into().expect("32 bytes")),
            kind,
            compressed: entry[1] & 1 == 1,
            offset: u32::try_from(offset).map_err(|_| damaged("it is larger than 4 GiB"))?,
            stored_len,
            raw_len,
        });
        offset += u64::from(stored_len);
    }
    if offset != pack_len - needed as u64 {
        return Err(damaged("its blobs do not add up to its length"));
    }
    Ok(blobs)
}

/// Compresses a chunk for storage, or keeps it raw when zstd saves less
/// than 1/32 of it, then seals it. Returns the stored bytes and whether
/// they are compressed.
pub fn encode(
    raw: &[u8],
    compressor: &mut zstd::bulk::Compressor<'_>,
    crypto: &Crypto,
) -> (Vec<u8>, bool) {
    match compressor.compress(raw) {
        Ok(packed) if packed.len() < raw.len() - raw.len() / 32 => (crypto.seal(&packed), true),
        _ => (crypto.seal(raw), false),
    }
}

/// Undoes [`encode`] and checks the result against the chunk's id.
pub fn decode(blob: &Blob, stored: &[u8], crypto: &Crypto) -> Result<Vec<u8>, String> {
    // An unencrypted store's lengths are not authenticated: a forged one
    // must not size an allocation.
    if blob.raw_len > MAX_BLOB_LEN {
        return Err(format!(
            "its length, {} bytes, is beyond the limit",
            blob.raw_len
        ));
    }
    let opened = crypto.open(stored)?;
    let raw = if blob.compressed {
        zstd::bulk::decompress(&opened, blob.raw_len as usize)
            .map_err(|err| format!("zstd: {err}"))?
    } else {
        opened
    };
    if raw.len() == blob.raw_len as usize && crypto.chunk_id(&raw) == blob.id {
        Ok(raw)
    } else {
        Err("its content does not match its id".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn both() -> [Crypto; 2] {
        [Crypto::None, Crypto::sealed(&MasterKey::generate())]
    }

    #[test]
    fn header_round_trips() {
        for crypto in both() {
            let mut builder = PackBuilder::default();
            let mut compressor = zstd::bulk::Compressor::new(3).expect("zstd");
            let chunks: [&[u8]; 3] = [b"alpha", &[7u8; 5000], b""];
            for chunk in chunks {
                let (stored, compressed) = encode(chunk, &mut compressor, &crypto);
                let id = crypto.chunk_id(chunk);
                builder.push(id, BlobKind::Data, compressed, chunk.len() as u32, &stored);
            }
            let (bytes, blobs) = builder.finish(&crypto);
            let parsed = parse_header(&bytes, bytes.len() as u64, &crypto).expect("header");
            assert_eq!(parsed, blobs);
            assert!(blobs[1].compressed, "a run of equal bytes compresses");
            assert!(!blobs[0].compressed, "five bytes do not");
            for (blob, chunk) in blobs.iter().zip(chunks) {
                let at = blob.offset as usize;
                let stored = &bytes[at..at + blob.stored_len as usize];
                assert_eq!(decode(blob, stored, &crypto).as_deref(), Ok(chunk));
            }
        }
    }

    #[test]
    fn the_same_chunks_never_pack_to_the_same_file() {
        let pack = || {
            let mut builder = PackBuilder::default();
            builder.push(ChunkId::of(b"x"), BlobKind::Data, false, 1, b"x");
            builder.finish(&Crypto::None).0
        };
        let (first, second) = (pack(), pack());
        assert_ne!(PackId::of(&first), PackId::of(&second));
        for bytes in [first, second] {
            let blobs = parse_header(&bytes, bytes.len() as u64, &Crypto::None).expect("header");
            assert_eq!(blobs.len(), 1);
        }
    }

    #[test]
    fn a_pack_written_before_the_salt_still_reads() {
        let stored = b"x";
        let mut entries = vec![0u8, 0, 0, 0];
        entries.extend_from_slice(&1u32.to_le_bytes());
        entries.extend_from_slice(&1u32.to_le_bytes());
        entries.extend_from_slice(ChunkId::of(b"x").as_bytes());
        let mut plain = entries.clone();
        plain.extend_from_slice(blake3::hash(&entries).as_bytes());
        let mut bytes = PACK_MAGIC.to_vec();
        bytes.extend_from_slice(stored);
        bytes.extend_from_slice(&plain);
        bytes.extend_from_slice(&(plain.len() as u32).to_le_bytes());
        bytes.extend_from_slice(PACK_END);
        let blobs = parse_header(&bytes, bytes.len() as u64, &Crypto::None).expect("header");
        assert_eq!(blobs[0].id, ChunkId::of(b"x"));
        assert_eq!(blobs[0].offset, 8);
    }

    #[test]
    fn a_short_tail_asks_for_more_and_a_damaged_one_is_refused() {
        for crypto in both() {
            let mut builder = PackBuilder::default();
            builder.push(
                ChunkId::of(b"x"),
                BlobKind::Tree,
                false,
                1,
                &crypto.seal(b"x"),
            );
            let (mut bytes, _) = builder.finish(&crypto);
            let len = bytes.len() as u64;
            let tail = &bytes[bytes.len() - TRAILER_LEN..];
            assert!(matches!(
                parse_header(tail, len, &crypto),
                Err(HeaderError::NeedMore(_))
            ));
            let at = bytes.len() - TRAILER_LEN - 1;
            bytes[at] ^= 1;
            assert!(matches!(
                parse_header(&bytes, len, &crypto),
                Err(HeaderError::Damaged(_))
            ));
        }
    }

    /// An unencrypted store's lengths are not authenticated: a forged
    /// length must be refused before anything is allocated for it.
    #[test]
    fn a_forged_blob_length_is_refused_before_allocation() {
        let blob = Blob {
            id: ChunkId::of(b"x"),
            kind: BlobKind::Data,
            compressed: true,
            offset: 8,
            stored_len: 1,
            raw_len: u32::MAX,
        };
        let refused = decode(&blob, b"x", &Crypto::None);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("beyond the limit")),
            "{refused:?}"
        );
    }

    #[test]
    fn decode_names_a_flipped_byte() {
        for crypto in both() {
            let data = vec![3u8; 10_000];
            let mut compressor = zstd::bulk::Compressor::new(3).expect("zstd");
            let (mut stored, compressed) = encode(&data, &mut compressor, &crypto);
            let blob = Blob {
                id: crypto.chunk_id(&data),
                kind: BlobKind::Data,
                compressed,
                offset: 8,
                stored_len: stored.len() as u32,
                raw_len: 10_000,
            };
            let last = stored.len() - 1;
            stored[last] ^= 0x40;
            assert!(decode(&blob, &stored, &crypto).is_err());
        }
    }
}
