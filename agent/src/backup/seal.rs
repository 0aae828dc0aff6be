//! The artifact format: a fixed header, then the compressed dump sealed in
//! 64 KiB chunks with XChaCha20-Poly1305 STREAM (or stored as it is when the
//! policy has no key). Pure: push-style [`Sealer`] and [`Opener`] fed
//! byte slices, each holding at most one chunk, no I/O.
//!
//! Layout (all of it is what the manifest's sha256 covers):
//!
//! ```text
//! "ARGOSY-BACKUP\n"  14 bytes  magic
//! version             1 byte   1
//! cipher              1 byte   0 = none, 1 = xchacha20poly1305-stream
//! salt               16 bytes  random (zero with `none`)
//! nonce prefix       19 bytes  random (zero with `none`)
//! key check          16 bytes  HKDF-SHA256(key, salt, "argosy backup v1 key check")
//! body                         chunks of 64 KiB plaintext + 16-byte tag;
//!                              the last one (0..=64 KiB) carries STREAM's
//!                              last-chunk flag
//! ```
//!
//! The chunk key is HKDF-SHA256(secret bytes, salt, "argosy backup v1");
//! every chunk authenticates the whole header as associated data. Because
//! only the last chunk carries the flag, a stream cut at a chunk boundary
//! is told apart from a corrupted one. With `none` the body is the
//! compressed dump itself; truncation is then caught by the manifest's
//! size and hash.

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::stream::{NewStream, StreamBE32, StreamPrimitive};
use hkdf::Hkdf;
use rand::RngCore as _;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The first bytes of every artifact.
pub const MAGIC: &[u8; 14] = b"ARGOSY-BACKUP\n";
/// The format version this agent writes and reads.
pub const VERSION: u8 = 1;
/// Plaintext bytes per sealed chunk.
pub const CHUNK: usize = 64 * 1024;
/// The Poly1305 tag each sealed chunk carries.
pub const TAG: usize = 16;
/// A full sealed chunk on disk.
pub const SEALED_CHUNK: usize = CHUNK + TAG;
const SALT: usize = 16;
const NONCE_PREFIX: usize = 19;
const KEY_CHECK: usize = 16;
/// The header's length: magic, version, cipher, salt, nonce prefix, key check.
pub const HEADER_LEN: usize = MAGIC.len() + 2 + SALT + NONCE_PREFIX + KEY_CHECK;
/// Keys shorter than this are refused when sealing: HKDF does not
/// stretch a weak secret.
pub const MIN_KEY_BYTES: usize = 16;

const KEY_INFO: &[u8] = b"argosy backup v1";
const KEY_CHECK_INFO: &[u8] = b"argosy backup v1 key check";

/// How an artifact's body is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// Stored as it is (the policy has no encryption key).
    None,
    /// XChaCha20-Poly1305 STREAM (BE32 counter) over 64 KiB chunks.
    XChaCha20Poly1305Stream,
}

impl Cipher {
    fn id(self) -> u8 {
        match self {
            Self::None => 0,
            Self::XChaCha20Poly1305Stream => 1,
        }
    }

    fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Self::None),
            1 => Some(Self::XChaCha20Poly1305Stream),
            _ => None,
        }
    }

    /// The name the manifest records (`encryption`).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::XChaCha20Poly1305Stream => "xchacha20poly1305-stream",
        }
    }

    /// The cipher a manifest's `encryption` names (empty: `none`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "" | "none" => Some(Self::None),
            "xchacha20poly1305-stream" => Some(Self::XChaCha20Poly1305Stream),
            _ => None,
        }
    }
}

/// Why an artifact could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "the encryption key is {0} bytes; use a random key of at least {MIN_KEY_BYTES} bytes (e.g. `openssl rand -base64 32`)"
    )]
    WeakKey(usize),
    #[error(
        "this is not an Argosy backup artifact: it does not start with the ARGOSY-BACKUP header"
    )]
    NotArtifact,
    #[error("the artifact is format version {0}, which this agent cannot read: upgrade the agent")]
    UnsupportedVersion(u8),
    #[error("the artifact names an unknown cipher (id {0}): its header is corrupted")]
    UnknownCipher(u8),
    #[error(
        "the artifact's header says it is sealed with {found}, but {expected} was expected: its header is corrupted"
    )]
    CipherMismatch {
        found: &'static str,
        expected: &'static str,
    },
    #[error(
        "the artifact's header is corrupted: an unencrypted artifact must have no salt, nonce or key check"
    )]
    HeaderCorrupted,
    #[error(
        "the encryption key does not open this artifact (its key check differs): use the key the backup was taken with"
    )]
    WrongKey,
    #[error(
        "chunk {index} (at byte {offset}) does not authenticate: the artifact is corrupted{}",
        if *.last { " or cut short inside its last chunk" } else { "" }
    )]
    CorruptedChunk { index: u64, offset: u64, last: bool },
    #[error("the artifact ends after {bytes} bytes, before its last chunk: it is truncated")]
    Truncated { bytes: u64 },
    #[error("the artifact has more than 2^32 chunks, more than the format can seal")]
    TooLong,
}

type Stream = StreamBE32<XChaCha20Poly1305>;

/// The chunk key and the key check for `secret` and `salt`.
fn derive(secret: &[u8], salt: &[u8]) -> (Zeroizing<[u8; 32]>, [u8; KEY_CHECK]) {
    let hkdf = Hkdf::<Sha256>::new(Some(salt), secret);
    let mut key = Zeroizing::new([0u8; 32]);
    let mut check = [0u8; KEY_CHECK];
    // Both lengths are far below HKDF-SHA256's limit of 255 × 32 bytes.
    hkdf.expand(KEY_INFO, key.as_mut_slice())
        .and_then(|()| hkdf.expand(KEY_CHECK_INFO, &mut check))
        .unwrap_or_else(|_| unreachable!("32 and 16 bytes are valid HKDF-SHA256 lengths"));
    (key, check)
}

fn stream(key: &[u8; 32], nonce_prefix: &[u8]) -> Stream {
    let aead = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(key));
    Stream::from_aead(aead, GenericArray::from_slice(nonce_prefix))
}

/// Compares without stopping at the first difference.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Sealing {
    stream: Stream,
    position: u32,
    /// Plaintext of the chunk being filled; sealed in place.
    pending: Vec<u8>,
}

/// Seals a stream of compressed bytes into an artifact. Feed it with
/// [`Sealer::push`], end it with [`Sealer::finish`]; each appends the
/// artifact's next bytes (the header first) to `out`.
pub struct Sealer {
    header: [u8; HEADER_LEN],
    header_written: bool,
    sealing: Option<Sealing>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("cipher", &self.cipher())
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer with a fresh salt and nonce; `key` `None` stores the bytes
    /// unencrypted (cipher `none`).
    pub fn new(key: Option<&[u8]>) -> Result<Self, SealError> {
        let mut salt = [0u8; SALT];
        let mut nonce_prefix = [0u8; NONCE_PREFIX];
        let mut rng = rand::rng();
        rng.fill_bytes(&mut salt);
        rng.fill_bytes(&mut nonce_prefix);
        Self::with_randomness(key, salt, nonce_prefix)
    }

    fn with_randomness(
        key: Option<&[u8]>,
        salt: [u8; SALT],
        nonce_prefix: [u8; NONCE_PREFIX],
    ) -> Result<Self, SealError> {
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        header[MAGIC.len()] = VERSION;
        let Some(secret) = key else {
            header[MAGIC.len() + 1] = Cipher::None.id();
            return Ok(Self {
                header,
                header_written: false,
                sealing: None,
            });
        };
        if secret.len() < MIN_KEY_BYTES {
            return Err(SealError::WeakKey(secret.len()));
        }
        let (chunk_key, check) = derive(secret, &salt);
        let fields = &mut header[MAGIC.len() + 1..];
        fields[0] = Cipher::XChaCha20Poly1305Stream.id();
        fields[1..1 + SALT].copy_from_slice(&salt);
        fields[1 + SALT..1 + SALT + NONCE_PREFIX].copy_from_slice(&nonce_prefix);
        fields[1 + SALT + NONCE_PREFIX..].copy_from_slice(&check);
        Ok(Self {
            header,
            header_written: false,
            sealing: Some(Sealing {
                stream: stream(&chunk_key, &nonce_prefix),
                position: 0,
                pending: Vec::with_capacity(SEALED_CHUNK),
            }),
        })
    }

    /// The cipher this sealer uses.
    pub fn cipher(&self) -> Cipher {
        if self.sealing.is_some() {
            Cipher::XChaCha20Poly1305Stream
        } else {
            Cipher::None
        }
    }

    fn write_header(&mut self, out: &mut Vec<u8>) {
        if !self.header_written {
            out.extend_from_slice(&self.header);
            self.header_written = true;
        }
    }

    /// Takes the next plaintext bytes; appends whatever is sealed so far.
    pub fn push(&mut self, mut plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        self.write_header(out);
        let Some(sealing) = &mut self.sealing else {
            out.extend_from_slice(plaintext);
            return Ok(());
        };
        while !plaintext.is_empty() {
            // A full chunk is sealed only once more data shows it is not the last.
            if sealing.pending.len() == CHUNK {
                sealing.seal(&self.header, false, out)?;
            }
            let take = (CHUNK - sealing.pending.len()).min(plaintext.len());
            sealing.pending.extend_from_slice(&plaintext[..take]);
            plaintext = &plaintext[take..];
        }
        Ok(())
    }

    /// Seals the last chunk (possibly empty) and appends it.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), SealError> {
        self.write_header(out);
        match &mut self.sealing {
            Some(sealing) => sealing.seal(&self.header, true, out),
            None => Ok(()),
        }
    }
}

impl Sealing {
    fn seal(&mut self, header: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), SealError> {
        self.stream
            .encrypt_in_place(self.position, last, header, &mut self.pending)
            .map_err(|_| SealError::TooLong)?;
        out.extend_from_slice(&self.pending);
        self.pending.clear();
        if !last {
            self.position = self.position.checked_add(1).ok_or(SealError::TooLong)?;
        }
        Ok(())
    }
}

enum Reading {
    /// Collecting the header, with the secret to check it against.
    Header(Option<Zeroizing<Vec<u8>>>),
    Plain,
    Sealed {
        header: [u8; HEADER_LEN],
        stream: Box<Stream>,
        position: u32,
    },
}

/// Opens an artifact: checks its header against the expected key, then
/// authenticates and decrypts chunk by chunk. Feed it with
/// [`Opener::push`], end it with [`Opener::finish`]; each appends the
/// plaintext recovered so far to `out`.
pub struct Opener {
    expected: Cipher,
    reading: Reading,
    /// Header bytes, or the sealed chunk being collected.
    buffer: Vec<u8>,
    /// Artifact bytes taken in.
    bytes: u64,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("expected", &self.expected)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// An opener for an artifact sealed with `key` (`None`: one stored
    /// with cipher `none`).
    pub fn new(key: Option<&[u8]>) -> Self {
        Self {
            expected: if key.is_some() {
                Cipher::XChaCha20Poly1305Stream
            } else {
                Cipher::None
            },
            reading: Reading::Header(key.map(|k| Zeroizing::new(k.to_vec()))),
            buffer: Vec::with_capacity(HEADER_LEN),
            bytes: 0,
        }
    }

    /// Takes the artifact's next bytes; appends the plaintext opened so far.
    pub fn push(&mut self, mut artifact: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        self.bytes += artifact.len() as u64;
        if let Reading::Header(_) = self.reading {
            let take = (HEADER_LEN - self.buffer.len()).min(artifact.len());
            self.buffer.extend_from_slice(&artifact[..take]);
            artifact = &artifact[take..];
            let magic = self.buffer.len().min(MAGIC.len());
            if self.buffer[..magic] != MAGIC[..magic] {
                return Err(SealError::NotArtifact);
            }
            if self.buffer.len() < HEADER_LEN {
                return Ok(());
            }
            self.read_header()?;
        }
        match &mut self.reading {
            Reading::Header(_) => Ok(()),
            Reading::Plain => {
                out.extend_from_slice(artifact);
                Ok(())
            }
            Reading::Sealed {
                header,
                stream,
                position,
            } => {
                while !artifact.is_empty() {
                    // A full chunk followed by more bytes is not the last one.
                    if self.buffer.len() == SEALED_CHUNK {
                        open_chunk(stream, header, position, false, &mut self.buffer, out)?;
                    }
                    let take = (SEALED_CHUNK - self.buffer.len()).min(artifact.len());
                    self.buffer.extend_from_slice(&artifact[..take]);
                    artifact = &artifact[take..];
                }
                Ok(())
            }
        }
    }

    fn read_header(&mut self) -> Result<(), SealError> {
        let Reading::Header(secret) = std::mem::replace(&mut self.reading, Reading::Plain) else {
            return Ok(());
        };
        let header: [u8; HEADER_LEN] = self.buffer[..HEADER_LEN]
            .try_into()
            .unwrap_or_else(|_| unreachable!("the header is collected in full first"));
        self.buffer.clear();
        let version = header[MAGIC.len()];
        if version != VERSION {
            return Err(SealError::UnsupportedVersion(version));
        }
        let id = header[MAGIC.len() + 1];
        let cipher = Cipher::from_id(id).ok_or(SealError::UnknownCipher(id))?;
        if cipher != self.expected {
            return Err(SealError::CipherMismatch {
                found: cipher.name(),
                expected: self.expected.name(),
            });
        }
        let fields = &header[MAGIC.len() + 2..];
        let (salt, rest) = fields.split_at(SALT);
        let (nonce_prefix, check) = rest.split_at(NONCE_PREFIX);
        match (cipher, secret) {
            (Cipher::None, _) => {
                if fields.iter().any(|b| *b != 0) {
                    return Err(SealError::HeaderCorrupted);
                }
                self.reading = Reading::Plain;
            }
            (Cipher::XChaCha20Poly1305Stream, Some(secret)) => {
                let (key, expected_check) = derive(&secret, salt);
                if !same_bytes(&expected_check, check) {
                    return Err(SealError::WrongKey);
                }
                self.buffer.reserve(SEALED_CHUNK);
                self.reading = Reading::Sealed {
                    header,
                    stream: Box::new(stream(&key, nonce_prefix)),
                    position: 0,
                };
            }
            (Cipher::XChaCha20Poly1305Stream, None) => {
                unreachable!("an opener without a key expects cipher none")
            }
        }
        Ok(())
    }

    /// The artifact ended: opens its last chunk, or says why it cannot.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), SealError> {
        let bytes = self.bytes;
        match &mut self.reading {
            Reading::Header(_) => Err(SealError::Truncated { bytes }),
            Reading::Plain => Ok(()),
            Reading::Sealed {
                header,
                stream,
                position,
            } => {
                if self.buffer.len() < TAG {
                    return Err(SealError::Truncated { bytes });
                }
                let mut as_middle = self.buffer.clone();
                match open_chunk(stream, header, position, true, &mut self.buffer, out) {
                    Ok(()) => Ok(()),
                    // A chunk that opens as a middle one: the last is missing.
                    Err(_)
                        if stream
                            .decrypt_in_place(*position, false, header, &mut as_middle)
                            .is_ok() =>
                    {
                        Err(SealError::Truncated { bytes })
                    }
                    Err(error) => Err(error),
                }
            }
        }
    }
}

fn open_chunk(
    stream: &Stream,
    header: &[u8],
    position: &mut u32,
    last: bool,
    buffer: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), SealError> {
    stream
        .decrypt_in_place(*position, last, header, buffer)
        .map_err(|_| SealError::CorruptedChunk {
            index: u64::from(*position),
            offset: (HEADER_LEN + *position as usize * SEALED_CHUNK) as u64,
            last,
        })?;
    out.extend_from_slice(buffer);
    buffer.clear();
    if !last {
        *position = position.checked_add(1).ok_or(SealError::TooLong)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"correct horse battery staple 42!";

    fn data(len: usize) -> Vec<u8> {
        // Not compressible and not periodic at the chunk size.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// Seals `plain` fed in pieces of `piece` bytes.
    fn seal(key: Option<&[u8]>, plain: &[u8], piece: usize) -> Vec<u8> {
        let mut sealer = Sealer::new(key).unwrap();
        let mut out = Vec::new();
        for part in plain.chunks(piece.max(1)) {
            sealer.push(part, &mut out).unwrap();
        }
        sealer.finish(&mut out).unwrap();
        out
    }

    /// Opens `artifact` fed in pieces of `piece` bytes.
    fn open(key: Option<&[u8]>, artifact: &[u8], piece: usize) -> Result<Vec<u8>, SealError> {
        let mut opener = Opener::new(key);
        let mut out = Vec::new();
        for part in artifact.chunks(piece.max(1)) {
            opener.push(part, &mut out)?;
        }
        opener.finish(&mut out)?;
        Ok(out)
    }

    fn sealed_len(plain: usize) -> usize {
        // Full chunks that are followed by more, then the last (0..=CHUNK).
        let middle = plain.saturating_sub(1) / CHUNK;
        HEADER_LEN + middle * SEALED_CHUNK + (plain - middle * CHUNK) + TAG
    }

    #[test]
    fn round_trips_at_every_chunk_boundary() {
        for len in [
            0,
            1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            2 * CHUNK,
            3 * 1024 * 1024 + 17,
        ] {
            let plain = data(len);
            for piece in [7, 4096, CHUNK, SEALED_CHUNK + 3, 1 << 20] {
                let artifact = seal(Some(KEY), &plain, piece);
                assert_eq!(artifact.len(), sealed_len(len), "len {len}");
                assert_eq!(&artifact[..MAGIC.len()], MAGIC);
                for open_piece in [5, 1000, SEALED_CHUNK, 1 << 20] {
                    assert_eq!(
                        open(Some(KEY), &artifact, open_piece).unwrap(),
                        plain,
                        "len {len} sealed in {piece}, opened in {open_piece}"
                    );
                }
            }
        }
    }

    #[test]
    fn each_artifact_gets_its_own_salt_and_nonce() {
        let plain = data(100);
        let a = seal(Some(KEY), &plain, 100);
        let b = seal(Some(KEY), &plain, 100);
        assert_ne!(a[MAGIC.len() + 2..], b[MAGIC.len() + 2..]);
        assert_eq!(open(Some(KEY), &b, 9).unwrap(), plain);
    }

    #[test]
    fn the_none_cipher_stores_the_bytes_behind_the_same_header() {
        for len in [0, 1, CHUNK, CHUNK + 1] {
            let plain = data(len);
            let artifact = seal(None, &plain, 1000);
            assert_eq!(artifact.len(), HEADER_LEN + len);
            assert_eq!(&artifact[HEADER_LEN..], plain.as_slice());
            assert_eq!(artifact[MAGIC.len() + 1], 0);
            assert_eq!(open(None, &artifact, 33).unwrap(), plain);
        }
        assert_eq!(Sealer::new(None).unwrap().cipher().name(), "none");
        assert_eq!(
            Sealer::new(Some(KEY)).unwrap().cipher().name(),
            "xchacha20poly1305-stream"
        );
        assert_eq!(Cipher::from_name(""), Some(Cipher::None));
        assert_eq!(
            Cipher::from_name("xchacha20poly1305-stream"),
            Some(Cipher::XChaCha20Poly1305Stream)
        );
        assert_eq!(Cipher::from_name("rot13"), None);
    }

    #[test]
    fn a_wrong_or_missing_key_is_named() {
        let artifact = seal(Some(KEY), &data(10), 10);
        assert_eq!(
            open(Some(b"another key of 32 bytes, wrong!!"), &artifact, 100),
            Err(SealError::WrongKey)
        );
        // The key check fails on the header, before any chunk.
        let mut opener = Opener::new(Some(b"wrong key, sixteen+"));
        assert_eq!(
            opener.push(&artifact[..HEADER_LEN], &mut Vec::new()),
            Err(SealError::WrongKey)
        );
        assert_eq!(
            open(None, &artifact, 100),
            Err(SealError::CipherMismatch {
                found: "xchacha20poly1305-stream",
                expected: "none"
            })
        );
        let plain = seal(None, &data(10), 10);
        assert_eq!(
            open(Some(KEY), &plain, 100),
            Err(SealError::CipherMismatch {
                found: "none",
                expected: "xchacha20poly1305-stream"
            })
        );
        assert_eq!(
            Sealer::new(Some(b"short")).unwrap_err(),
            SealError::WeakKey(5)
        );
        assert_eq!(
            SealError::WrongKey.to_string(),
            "the encryption key does not open this artifact (its key check differs): use the key the backup was taken with"
        );
    }

    #[test]
    fn a_flipped_byte_in_each_region_is_caught() {
        let plain = data(3 * CHUNK + 100);
        let artifact = seal(Some(KEY), &plain, CHUNK);
        let flipped = |at: usize| {
            let mut copy = artifact.clone();
            copy[at] ^= 0x01;
            open(Some(KEY), &copy, 10_000)
        };
        let body = |chunk: usize| HEADER_LEN + chunk * SEALED_CHUNK;
        let cases: Vec<(usize, SealError)> = vec![
            (0, SealError::NotArtifact),
            (MAGIC.len() - 1, SealError::NotArtifact),
            (MAGIC.len(), SealError::UnsupportedVersion(VERSION ^ 1)),
            (
                MAGIC.len() + 1,
                SealError::CipherMismatch {
                    found: "none",
                    expected: "xchacha20poly1305-stream",
                },
            ),
            (MAGIC.len() + 2, SealError::WrongKey),
            (MAGIC.len() + 2 + SALT - 1, SealError::WrongKey),
            (
                MAGIC.len() + 2 + SALT,
                SealError::CorruptedChunk {
                    index: 0,
                    offset: HEADER_LEN as u64,
                    last: false,
                },
            ),
            (HEADER_LEN - KEY_CHECK, SealError::WrongKey),
            (HEADER_LEN - 1, SealError::WrongKey),
            (
                body(0),
                SealError::CorruptedChunk {
                    index: 0,
                    offset: body(0) as u64,
                    last: false,
                },
            ),
            (
                body(1) + 500,
                SealError::CorruptedChunk {
                    index: 1,
                    offset: body(1) as u64,
                    last: false,
                },
            ),
            // The tag of a middle chunk.
            (
                body(3) - 1,
                SealError::CorruptedChunk {
                    index: 2,
                    offset: body(2) as u64,
                    last: false,
                },
            ),
            (
                body(3),
                SealError::CorruptedChunk {
                    index: 3,
                    offset: body(3) as u64,
                    last: true,
                },
            ),
            (
                artifact.len() - 1,
                SealError::CorruptedChunk {
                    index: 3,
                    offset: body(3) as u64,
                    last: true,
                },
            ),
        ];
        for (at, expected) in cases {
            assert_eq!(flipped(at), Err(expected), "flipped byte {at}");
        }
        let mut unknown = artifact.clone();
        unknown[MAGIC.len() + 1] = 9;
        assert_eq!(
            open(Some(KEY), &unknown, 100),
            Err(SealError::UnknownCipher(9))
        );

        // An unencrypted artifact has nothing random in its header.
        let mut plain_artifact = seal(None, b"abc", 3);
        plain_artifact[MAGIC.len() + 5] = 1;
        assert_eq!(
            open(None, &plain_artifact, 3),
            Err(SealError::HeaderCorrupted)
        );
        assert_eq!(
            open(None, b"PK\x03\x04 a zip file", 4),
            Err(SealError::NotArtifact)
        );
        assert_eq!(
            open(Some(KEY), b"-- PostgreSQL database dump", 100),
            Err(SealError::NotArtifact)
        );
    }

    #[test]
    fn a_cut_at_every_chunk_boundary_is_truncation() {
        let plain = data(4 * CHUNK + 10);
        let artifact = seal(Some(KEY), &plain, 4096);
        let cut = |at: usize| open(Some(KEY), &artifact[..at], 3000);
        for at in [
            0,
            1,
            MAGIC.len(),
            HEADER_LEN - 1,
            HEADER_LEN,
            HEADER_LEN + TAG - 1,
        ] {
            assert_eq!(
                cut(at),
                Err(SealError::Truncated { bytes: at as u64 }),
                "cut at {at}"
            );
        }
        for chunks in 1..=4 {
            let at = HEADER_LEN + chunks * SEALED_CHUNK;
            assert_eq!(
                cut(at),
                Err(SealError::Truncated { bytes: at as u64 }),
                "cut after chunk {chunks}"
            );
        }
        // A cut inside a chunk cannot be told from damage to it.
        let inside = HEADER_LEN + SEALED_CHUNK + 100;
        assert_eq!(
            cut(inside),
            Err(SealError::CorruptedChunk {
                index: 1,
                offset: (HEADER_LEN + SEALED_CHUNK) as u64,
                last: true
            })
        );
        assert_eq!(
            SealError::CorruptedChunk {
                index: 1,
                offset: 65619,
                last: true
            }
            .to_string(),
            "chunk 1 (at byte 65619) does not authenticate: the artifact is corrupted or cut short inside its last chunk"
        );
        // An exact multiple of the chunk size: the last chunk is full.
        let exact = seal(Some(KEY), &data(2 * CHUNK), CHUNK);
        assert_eq!(exact.len(), HEADER_LEN + 2 * SEALED_CHUNK);
        assert_eq!(
            open(Some(KEY), &exact[..HEADER_LEN + SEALED_CHUNK], 777),
            Err(SealError::Truncated {
                bytes: (HEADER_LEN + SEALED_CHUNK) as u64
            })
        );
        // Appended bytes make the real last chunk a middle one.
        let mut longer = exact.clone();
        longer.extend_from_slice(&[0u8; 40]);
        assert!(matches!(
            open(Some(KEY), &longer, 1000),
            Err(SealError::CorruptedChunk { .. })
        ));
    }

    #[test]
    fn memory_stays_within_a_chunk() {
        let mut sealer = Sealer::new(Some(KEY)).unwrap();
        let mut out = Vec::new();
        let piece = data(10_000);
        for _ in 0..100 {
            sealer.push(&piece, &mut out).unwrap();
            assert!(out.len() <= HEADER_LEN + 2 * SEALED_CHUNK);
            out.clear();
            let pending = sealer.sealing.as_ref().unwrap().pending.capacity();
            assert!(pending <= SEALED_CHUNK, "{pending}");
        }
    }
}
