//! Encryption at rest.
//!
//! A store has one random master key: 32 bytes for XChaCha20-Poly1305, 32
//! for keyed BLAKE3 chunk ids (so an id says nothing about content to
//! someone without the key), and a seed for the chunker's gear table (so cut
//! points, and with them chunk sizes, cannot be matched against known
//! files). Each key file under `keys/` holds the master key sealed with a
//! key derived from a passphrase by Argon2id; any one passphrase opens the
//! store. XChaCha20's 192-bit nonces are drawn at random for every sealed
//! object, with no counter to keep and no birthday bound in reach.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::ChunkId;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;

/// A passphrase or key-file content; never printed.
#[derive(Clone)]
pub struct Passphrase(String);

impl Passphrase {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// 32 random bytes as hex: the content of a generated key file.
    pub fn generate() -> Self {
        Self(hex(&random::<32>()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// The store's secrets. Generated once; wrapped by every key file.
#[derive(Clone)]
pub struct MasterKey {
    seal: [u8; 32],
    ids: [u8; 32],
    chunker_seed: u64,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        Self {
            seal: random(),
            ids: random(),
            chunker_seed: u64::from_le_bytes(random()),
        }
    }

    /// A key for one purpose, derived so it reveals nothing of the others.
    pub(crate) fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.to_bytes())
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(72);
        bytes.extend_from_slice(&self.seal);
        bytes.extend_from_slice(&self.ids);
        bytes.extend_from_slice(&self.chunker_seed.to_le_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (bytes.len() == 72).then(|| Self {
            seal: bytes[..32].try_into().expect("32 bytes"),
            ids: bytes[32..64].try_into().expect("32 bytes"),
            chunker_seed: u64::from_le_bytes(bytes[64..].try_into().expect("8 bytes")),
        })
    }
}

/// How a store's objects are sealed and its chunks named.
#[derive(Clone)]
pub enum Crypto {
    /// Plain BLAKE3 ids, nothing sealed (`--no-encryption`).
    None,
    Sealed {
        cipher: Box<XChaCha20Poly1305>,
        ids: [u8; 32],
        chunker_seed: u64,
    },
}

impl fmt::Debug for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Crypto::None => "Crypto::None",
            Crypto::Sealed { .. } => "Crypto::Sealed",
        })
    }
}

impl Crypto {
    pub fn sealed(key: &MasterKey) -> Self {
        Crypto::Sealed {
            cipher: Box::new(XChaCha20Poly1305::new(&key.seal.into())),
            ids: key.ids,
            chunker_seed: key.chunker_seed,
        }
    }

    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        match self {
            Crypto::None => ChunkId::of(plaintext),
            Crypto::Sealed { ids, .. } => {
                ChunkId::from_bytes(*blake3::keyed_hash(ids, plaintext).as_bytes())
            }
        }
    }

    /// The seed of the chunker's gear table: 0 (fastcdc's own) unsealed.
    pub fn chunker_seed(&self) -> u64 {
        match self {
            Crypto::None => 0,
            Crypto::Sealed { chunker_seed, .. } => *chunker_seed,
        }
    }

    /// Bytes sealing adds to an object.
    pub fn overhead(&self) -> usize {
        match self {
            Crypto::None => 0,
            Crypto::Sealed { .. } => NONCE_LEN + TAG_LEN,
        }
    }

    /// `nonce || ciphertext || tag`, or the bytes themselves unsealed.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        match self {
            Crypto::None => plaintext.to_vec(),
            Crypto::Sealed { cipher, .. } => seal_with(cipher, plaintext),
        }
    }

    /// Undoes [`Crypto::seal`]; fails if a single bit was changed.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Crypto::None => Ok(sealed.to_vec()),
            Crypto::Sealed { cipher, .. } => open_with(cipher, sealed)
                .ok_or_else(|| "it fails authentication (damaged or not of this store)".into()),
        }
    }
}

fn seal_with(cipher: &XChaCha20Poly1305, plaintext: &[u8]) -> Vec<u8> {
    let nonce = random::<NONCE_LEN>();
    let body = cipher
        .encrypt(&XNonce::from(nonce), plaintext)
        .expect("sealing into memory cannot fail");
    let mut out = Vec::with_capacity(NONCE_LEN + body.len());
    out.extend_from_slice(&nonce);
    out.extend(body);
    out
}

fn open_with(cipher: &XChaCha20Poly1305, sealed: &[u8]) -> Option<Vec<u8>> {
    let nonce: [u8; NONCE_LEN] = sealed.get(..NONCE_LEN)?.try_into().ok()?;
    cipher
        .decrypt(&XNonce::from(nonce), &sealed[NONCE_LEN..])
        .ok()
}

/// One key file: the master key sealed under a passphrase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    pub created: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub host: String,
    pub kdf: Kdf,
    /// Hex of `nonce || sealed master key || tag`.
    pub master: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kdf {
    pub algorithm: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub salt: String,
}

impl KeyFile {
    /// Wraps `master` under `passphrase` with Argon2id at OWASP's
    /// recommended cost (46 MiB, one pass): about 40 ms here, paid on
    /// every command that opens the store.
    pub fn wrap(master: &MasterKey, passphrase: &Passphrase, host: &str) -> Self {
        let kdf = Kdf {
            algorithm: "argon2id".into(),
            memory_kib: 46 * 1024,
            iterations: 1,
            parallelism: 1,
            salt: hex(&random::<16>()),
        };
        let cipher = kdf.cipher(passphrase).expect("fixed parameters are valid");
        Self {
            created: chrono::Utc::now(),
            host: host.into(),
            master: hex(&seal_with(&cipher, &master.to_bytes())),
            kdf,
        }
    }

    /// The master key, if `passphrase` is this key's.
    pub fn unwrap(&self, passphrase: &Passphrase) -> Option<MasterKey> {
        let cipher = self.kdf.cipher(passphrase)?;
        let sealed = unhex(&self.master)?;
        MasterKey::from_bytes(&open_with(&cipher, &sealed)?)
    }
}

/// The most a key file may ask of Argon2id: a key file is only as
/// trusted as the folder it sits in, and one planted with a huge cost would
/// take the machine's memory or hours of CPU to try.
const MAX_KDF_MEMORY_KIB: u32 = 1 << 20;
const MAX_KDF_ITERATIONS: u32 = 16;
const MAX_KDF_PARALLELISM: u32 = 16;

impl Kdf {
    /// Why these parameters are refused, if they are.
    pub fn out_of_bounds(&self) -> Option<String> {
        if self.algorithm != "argon2id" {
            return Some(format!("unknown algorithm `{}`", self.algorithm));
        }
        (self.memory_kib > MAX_KDF_MEMORY_KIB
            || self.iterations > MAX_KDF_ITERATIONS
            || self.parallelism > MAX_KDF_PARALLELISM)
            .then(|| {
                format!(
                    "argon2id with {} KiB, {} passes, {} lanes is beyond the limits ({} KiB, {} passes, {} lanes)",
                    self.memory_kib,
                    self.iterations,
                    self.parallelism,
                    MAX_KDF_MEMORY_KIB,
                    MAX_KDF_ITERATIONS,
                    MAX_KDF_PARALLELISM
                )
            })
    }

    fn cipher(&self, passphrase: &Passphrase) -> Option<XChaCha20Poly1305> {
        if self.out_of_bounds().is_some() {
            return None;
        }
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .ok()?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = [0u8; 32];
        argon
            .hash_password_into(
                passphrase.expose().as_bytes(),
                &unhex(&self.salt)?,
                &mut key,
            )
            .ok()?;
        Some(XChaCha20Poly1305::new(&key.into()))
    }
}

pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the system's random source works");
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_opens_with_its_passphrase_only() {
        let master = MasterKey::generate();
        let file = KeyFile::wrap(&master, &Passphrase::new("correct horse"), "ctl");
        let opened = file
            .unwrap(&Passphrase::new("correct horse"))
            .expect("opens");
        assert_eq!(opened.to_bytes(), master.to_bytes());
        assert!(file.unwrap(&Passphrase::new("wrong horse")).is_none());
    }

    #[test]
    fn sealed_objects_fail_when_touched() {
        let crypto = Crypto::sealed(&MasterKey::generate());
        let mut sealed = crypto.seal(b"snapshot");
        assert_eq!(sealed.len(), 8 + crypto.overhead());
        assert_eq!(crypto.open(&sealed).as_deref(), Ok(&b"snapshot"[..]));
        sealed[30] ^= 1;
        assert!(crypto.open(&sealed).is_err());
        let other = Crypto::sealed(&MasterKey::generate());
        assert!(other.open(&crypto.seal(b"x")).is_err());
    }

    #[test]
    fn keyed_ids_differ_from_plain_ones() {
        let crypto = Crypto::sealed(&MasterKey::generate());
        assert_ne!(crypto.chunk_id(b"data"), ChunkId::of(b"data"));
        assert_eq!(Crypto::None.chunk_id(b"data"), ChunkId::of(b"data"));
    }

    #[test]
    fn a_key_file_demanding_too_much_of_argon2_is_refused() {
        let master = MasterKey::generate();
        let passphrase = Passphrase::new("correct horse");
        let mut file = KeyFile::wrap(&master, &passphrase, "ctl");
        file.kdf.memory_kib = u32::MAX;
        assert!(file.kdf.out_of_bounds().is_some());
        assert!(file.unwrap(&passphrase).is_none(), "refused before hashing");
        let mut file = KeyFile::wrap(&master, &passphrase, "ctl");
        file.kdf.iterations = 1_000_000;
        assert!(file.unwrap(&passphrase).is_none());
    }

    #[test]
    fn passphrases_do_not_print() {
        assert_eq!(
            format!("{:?}", Passphrase::new("s3cret")),
            "Passphrase(<redacted>)"
        );
    }
}
