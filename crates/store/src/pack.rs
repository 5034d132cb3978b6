//! Pack files: many compressed chunks in one file, with a header at the end
//! that lists them, so the index can always be rebuilt from the packs alone.

use std::fmt;
use std::str::FromStr;

use crate::ChunkId;

/// First bytes of every pack file (format version 1).
pub const PACK_MAGIC: &[u8; 8] = b"NSPACK\x00\x01";
/// Last bytes of every pack file.
pub const PACK_END: &[u8; 8] = b"NSPKEND\x01";
/// One header entry: kind, flags, two reserved bytes, stored length, chunk id.
pub const ENTRY_LEN: usize = 40;
/// Entry count, BLAKE3 of the header entries, end magic.
pub const TRAILER_LEN: usize = 4 + 32 + 8;

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
    pub fn push(&mut self, id: ChunkId, kind: BlobKind, compressed: bool, stored: &[u8]) {
        let offset = u32::try_from(self.bytes.len()).expect("packs stay under 4 GiB");
        let stored_len = u32::try_from(stored.len()).expect("chunks stay under 4 GiB");
        self.bytes.extend_from_slice(stored);
        self.blobs.push(Blob {
            id,
            kind,
            compressed,
            offset,
            stored_len,
        });
    }

    /// Appends the header and trailer: the finished pack and its blobs.
    pub fn finish(mut self) -> (Vec<u8>, Vec<Blob>) {
        self.bytes.extend(header(&self.blobs));
        (self.bytes, self.blobs)
    }
}

/// A pack's header and trailer, written after its blobs.
pub fn header(blobs: &[Blob]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(blobs.len() * ENTRY_LEN + TRAILER_LEN);
    for blob in blobs {
        bytes.push(match blob.kind {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        });
        bytes.push(u8::from(blob.compressed));
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&blob.stored_len.to_le_bytes());
        bytes.extend_from_slice(blob.id.as_bytes());
    }
    let hash = blake3::hash(&bytes);
    let count = u32::try_from(blobs.len()).expect("fewer than 4 billion blobs");
    bytes.extend_from_slice(&count.to_le_bytes());
    bytes.extend_from_slice(hash.as_bytes());
    bytes.extend_from_slice(PACK_END);
    bytes
}

/// Reads the blob list from a pack's tail. `tail` must hold at least the
/// trailer; if it holds too little of the header, `Err(Some(n))` asks for the
/// last `n` bytes of the pack instead. `Err(None)` means the pack is damaged.
pub fn parse_header(tail: &[u8], pack_len: u64) -> Result<Vec<Blob>, Option<usize>> {
    let Some(trailer_at) = tail.len().checked_sub(TRAILER_LEN) else {
        return Err(Some(TRAILER_LEN));
    };
    let trailer = &tail[trailer_at..];
    if &trailer[36..] != PACK_END {
        return Err(None);
    }
    let count = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes")) as usize;
    let header_len = count * ENTRY_LEN;
    let needed = header_len + TRAILER_LEN;
    if needed as u64 > pack_len.saturating_sub(PACK_MAGIC.len() as u64) {
        return Err(None);
    }
    let Some(header_at) = trailer_at.checked_sub(header_len) else {
        return Err(Some(needed));
    };
    let header = &tail[header_at..trailer_at];
    if blake3::hash(header).as_bytes() != &trailer[4..36] {
        return Err(None);
    }
    let mut offset = PACK_MAGIC.len() as u64;
    let blobs_end = pack_len - needed as u64;
    let mut blobs = Vec::with_capacity(count);
    for entry in header.chunks_exact(ENTRY_LEN) {
        let kind = match entry[0] {
            0 => BlobKind::Data,
            1 => BlobKind::Tree,
            _ => return Err(None),
        };
        let stored_len = u32::from_le_bytes(entry[4..8].try_into().expect("4 bytes"));
        let id = ChunkId::from_bytes(entry[8..40].try_into().expect("32 bytes"));
        blobs.push(Blob {
            id,
            kind,
            compressed: entry[1] & 1 == 1,
            offset: u32::try_from(offset).map_err(|_| None)?,
            stored_len,
        });
        offset += u64::from(stored_len);
    }
    if offset != blobs_end {
        return Err(None);
    }
    Ok(blobs)
}

/// Compresses a chunk for storage, or keeps it raw when zstd saves less
/// than 1/32 of it. Returns the stored bytes and whether they are compressed.
pub fn encode(raw: &[u8], compressor: &mut zstd::bulk::Compressor<'_>) -> (Vec<u8>, bool) {
    match compressor.compress(raw) {
        Ok(packed) if packed.len() < raw.len() - raw.len() / 32 => (packed, true),
        _ => (raw.to_vec(), false),
    }
}

/// Undoes [`encode`] and checks the result against the chunk's id.
pub fn decode(id: ChunkId, stored: &[u8], compressed: bool) -> Result<Vec<u8>, String> {
    let raw = if compressed {
        let size = zstd::zstd_safe::get_frame_content_size(stored)
            .ok()
            .flatten()
            .ok_or_else(|| "its zstd frame header is unreadable".to_string())?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&n| n <= 1 << 26)
            .ok_or_else(|| format!("its zstd frame claims {size} bytes"))?;
        zstd::bulk::decompress(stored, size).map_err(|err| format!("zstd: {err}"))?
    } else {
        stored.to_vec()
    };
    if id.matches(&raw) {
        Ok(raw)
    } else {
        Err("its content does not match its BLAKE3 id".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let mut builder = PackBuilder::default();
        let mut compressor = zstd::bulk::Compressor::new(3).expect("zstd");
        let chunks: [&[u8]; 3] = [b"alpha", &[7u8; 5000], b""];
        for chunk in chunks {
            let (stored, compressed) = encode(chunk, &mut compressor);
            builder.push(ChunkId::of(chunk), BlobKind::Data, compressed, &stored);
        }
        let (bytes, blobs) = builder.finish();
        let parsed = parse_header(&bytes, bytes.len() as u64).expect("header");
        assert_eq!(parsed, blobs);
        assert!(blobs[1].compressed, "a run of equal bytes compresses");
        assert!(!blobs[0].compressed, "five bytes do not");
        for (blob, chunk) in blobs.iter().zip(chunks) {
            let at = blob.offset as usize;
            let stored = &bytes[at..at + blob.stored_len as usize];
            assert_eq!(
                decode(blob.id, stored, blob.compressed).as_deref(),
                Ok(chunk)
            );
        }
    }

    #[test]
    fn a_short_tail_asks_for_more_and_a_damaged_one_is_refused() {
        let mut builder = PackBuilder::default();
        builder.push(ChunkId::of(b"x"), BlobKind::Tree, false, b"x");
        let (mut bytes, _) = builder.finish();
        let len = bytes.len() as u64;
        assert_eq!(
            parse_header(&bytes[bytes.len() - TRAILER_LEN..], len),
            Err(Some(ENTRY_LEN + TRAILER_LEN))
        );
        let at = bytes.len() - TRAILER_LEN - 1;
        bytes[at] ^= 1;
        assert_eq!(parse_header(&bytes, len), Err(None));
    }

    #[test]
    fn decode_names_a_flipped_byte() {
        let data = vec![3u8; 10_000];
        let mut compressor = zstd::bulk::Compressor::new(3).expect("zstd");
        let (mut stored, compressed) = encode(&data, &mut compressor);
        let last = stored.len() - 1;
        stored[last] ^= 0x40;
        assert!(decode(ChunkId::of(&data), &stored, compressed).is_err());
    }
}
