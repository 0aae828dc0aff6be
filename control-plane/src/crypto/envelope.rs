//! Envelope encryption, composed from one well-kept AEAD (XChaCha20-Poly1305,
//! the `chacha20poly1305` crate) and the operating system's random numbers —
//! no other construction.
//!
//! - A secret version's value is sealed with a fresh random 256-bit data key
//!   and a random 192-bit nonce; the associated data binds the secret's name
//!   and version, so a ciphertext copied to another row does not open.
//! - The data key is sealed (wrapped) with the master key; its associated
//!   data binds the master key's id and the same name and version.
//! - The audit log's HMAC key is wrapped with the master key the same way.
//! - A key check (a constant sealed under the master key) tells at start
//!   whether a presented master key is the one the store was sealed with.
//!
//! Everything here is pure apart from drawing random bytes; keys and
//! plaintexts live in `Zeroizing` buffers and never show in `Debug`.

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::fmt;
use zeroize::Zeroizing;

/// Length of every key: master, data and audit keys are 256 bits.
pub const KEY_LEN: usize = 32;
/// Length of an XChaCha20-Poly1305 nonce; random nonces of this size never
/// realistically repeat.
pub const NONCE_LEN: usize = 24;

/// What can go wrong sealing or opening. Messages never hold key material
/// or plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The authentication tag did not verify: wrong key, altered bytes, or
    /// bytes that belong to another row.
    #[error("authentication failed: wrong key, or the sealed bytes were altered or moved")]
    Unauthentic,
    /// A stored nonce or key has the wrong length.
    #[error("{what} is {len} bytes long, not {expected}")]
    BadLength {
        what: &'static str,
        len: usize,
        expected: usize,
    },
    /// The operating system could not supply random bytes.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// A 256-bit key, wiped from memory when dropped.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; KEY_LEN]>);

impl SecretKey {
    /// A fresh random key from the operating system.
    pub fn random() -> Result<SecretKey, CryptoError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(key.as_mut())?;
        Ok(SecretKey(key))
    }

    /// Takes exactly [`KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<SecretKey, CryptoError> {
        let array: [u8; KEY_LEN] = bytes.try_into().map_err(|_| CryptoError::BadLength {
            what: "a key",
            len: bytes.len(),
            expected: KEY_LEN,
        })?;
        Ok(SecretKey(Zeroizing::new(array)))
    }

    /// The key's bytes (for wrapping it, or handing it to an HMAC).
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(self.0.as_slice()))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(REDACTED)")
    }
}

/// The public name of a master key: `mk-` and 16 hex digits of a
/// domain-separated SHA-256 of the key. Stored next to everything the key
/// seals, shown in messages; it reveals nothing usable about the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    fn of(key: &SecretKey) -> KeyId {
        let mut hash = Sha256::new();
        hash.update(b"argosy/master-key-id/v1\n");
        hash.update(key.expose());
        KeyId(format!("mk-{}", &hex::encode(hash.finalize())[..16]))
    }

    /// A key id read back from the store.
    pub fn from_stored(text: &str) -> KeyId {
        KeyId(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The master key with its id. Only the keyring holds one.
#[derive(Clone)]
pub struct MasterKey {
    id: KeyId,
    key: SecretKey,
}

impl MasterKey {
    pub fn new(key: SecretKey) -> MasterKey {
        MasterKey {
            id: KeyId::of(&key),
            key,
        }
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The key's bytes, for writing the key file.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        self.key.expose()
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A data key sealed under a master key, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub master_key_id: KeyId,
    pub nonce: Vec<u8>,
    pub wrapped: Vec<u8>,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("master_key_id", &self.master_key_id)
            .finish_non_exhaustive()
    }
}

/// A sealed secret value with its wrapped data key, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    pub data_key: WrappedKey,
}

impl fmt::Debug for SealedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedValue")
            .field("data_key", &self.data_key)
            .finish_non_exhaustive()
    }
}

/// The key check stored in `settings`: a constant sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCheck {
    pub key_id: KeyId,
    pub nonce: Vec<u8>,
    pub sealed: Vec<u8>,
}

const KEY_CHECK_PLAINTEXT: &[u8] = b"argosy master key check v1";

fn fill_random(buffer: &mut [u8]) -> Result<(), CryptoError> {
    OsRng
        .try_fill_bytes(buffer)
        .map_err(|e| CryptoError::Random(e.to_string()))
}

fn random_nonce() -> Result<Vec<u8>, CryptoError> {
    let mut nonce = vec![0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    Ok(nonce)
}

fn nonce_of<'a>(what: &'static str, nonce: &'a [u8]) -> Result<&'a XNonce, CryptoError> {
    if nonce.len() == NONCE_LEN {
        Ok(XNonce::from_slice(nonce))
    } else {
        Err(CryptoError::BadLength {
            what,
            len: nonce.len(),
            expected: NONCE_LEN,
        })
    }
}

/// Associated data: a purpose label and fields joined by newlines. The
/// fields (secret names, key ids) cannot hold a newline, so no two inputs
/// encode alike.
fn associated_data(purpose: &str, fields: &[&str]) -> Vec<u8> {
    let mut aad = format!("argosy/{purpose}/v1");
    for field in fields {
        aad.push('\n');
        aad.push_str(field);
    }
    aad.into_bytes()
}

fn value_aad(name: &str, version: u32) -> Vec<u8> {
    associated_data("secret-value", &[name, &version.to_string()])
}

fn data_key_aad(master_key_id: &KeyId, name: &str, version: u32) -> Vec<u8> {
    associated_data(
        "data-key",
        &[master_key_id.as_str(), name, &version.to_string()],
    )
}

fn seal(key: &SecretKey, aad: &[u8], plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let nonce = random_nonce()?;
    let sealed = key
        .cipher()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Unauthentic)?;
    Ok((nonce, sealed))
}

fn open(
    key: &SecretKey,
    aad: &[u8],
    what: &'static str,
    nonce: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    key.cipher()
        .decrypt(nonce_of(what, nonce)?, Payload { msg: sealed, aad })
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Unauthentic)
}

fn wrap_data_key(
    master: &MasterKey,
    data_key: &SecretKey,
    name: &str,
    version: u32,
) -> Result<WrappedKey, CryptoError> {
    let aad = data_key_aad(&master.id, name, version);
    let (nonce, wrapped) = seal(&master.key, &aad, data_key.expose())?;
    Ok(WrappedKey {
        master_key_id: master.id.clone(),
        nonce,
        wrapped,
    })
}

fn unwrap_data_key(
    master: &MasterKey,
    wrapped: &WrappedKey,
    name: &str,
    version: u32,
) -> Result<SecretKey, CryptoError> {
    let aad = data_key_aad(&master.id, name, version);
    let bytes = open(
        &master.key,
        &aad,
        "a data key nonce",
        &wrapped.nonce,
        &wrapped.wrapped,
    )?;
    SecretKey::from_bytes(&bytes)
}

/// Seals version `version` of secret `name` under a fresh data key wrapped
/// by `master`.
pub fn seal_value(
    master: &MasterKey,
    name: &str,
    version: u32,
    plaintext: &[u8],
) -> Result<SealedValue, CryptoError> {
    let data_key = SecretKey::random()?;
    let (nonce, ciphertext) = seal(&data_key, &value_aad(name, version), plaintext)?;
    Ok(SealedValue {
        ciphertext,
        nonce,
        data_key: wrap_data_key(master, &data_key, name, version)?,
    })
}

/// Opens what [`seal_value`] sealed for the same name and version.
/// `master` must be the key named by `sealed.data_key.master_key_id`.
pub fn open_value(
    master: &MasterKey,
    sealed: &SealedValue,
    name: &str,
    version: u32,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let data_key = unwrap_data_key(master, &sealed.data_key, name, version)?;
    open(
        &data_key,
        &value_aad(name, version),
        "a value nonce",
        &sealed.nonce,
        &sealed.ciphertext,
    )
}

/// Re-seals a wrapped data key from `old` to `new` master key; the value's
/// ciphertext is untouched.
pub fn rewrap_data_key(
    old: &MasterKey,
    new: &MasterKey,
    wrapped: &WrappedKey,
    name: &str,
    version: u32,
) -> Result<WrappedKey, CryptoError> {
    let data_key = unwrap_data_key(old, wrapped, name, version)?;
    wrap_data_key(new, &data_key, name, version)
}

/// Wraps the audit log's HMAC key under `master`.
pub fn wrap_audit_key(
    master: &MasterKey,
    audit_key: &SecretKey,
) -> Result<WrappedKey, CryptoError> {
    let aad = associated_data("audit-key", &[master.id.as_str()]);
    let (nonce, wrapped) = seal(&master.key, &aad, audit_key.expose())?;
    Ok(WrappedKey {
        master_key_id: master.id.clone(),
        nonce,
        wrapped,
    })
}

/// Opens what [`wrap_audit_key`] wrapped.
pub fn unwrap_audit_key(
    master: &MasterKey,
    wrapped: &WrappedKey,
) -> Result<SecretKey, CryptoError> {
    let aad = associated_data("audit-key", &[master.id.as_str()]);
    let bytes = open(
        &master.key,
        &aad,
        "the audit key nonce",
        &wrapped.nonce,
        &wrapped.wrapped,
    )?;
    SecretKey::from_bytes(&bytes)
}

/// A fresh key check for `master`.
pub fn key_check(master: &MasterKey) -> Result<KeyCheck, CryptoError> {
    let aad = associated_data("key-check", &[master.id.as_str()]);
    let (nonce, sealed) = seal(&master.key, &aad, KEY_CHECK_PLAINTEXT)?;
    Ok(KeyCheck {
        key_id: master.id.clone(),
        nonce,
        sealed,
    })
}

/// Whether `master` is the key `check` was made with.
pub fn key_matches(master: &MasterKey, check: &KeyCheck) -> bool {
    if master.id != check.key_id {
        return false;
    }
    let aad = associated_data("key-check", &[master.id.as_str()]);
    open(
        &master.key,
        &aad,
        "the key check nonce",
        &check.nonce,
        &check.sealed,
    )
    .is_ok_and(|plain| plain.as_slice() == KEY_CHECK_PLAINTEXT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::new(SecretKey::random().unwrap())
    }

    #[test]
    fn a_value_round_trips() {
        let master = master();
        let sealed = seal_value(&master, "crm/db-password", 3, b"hunter2").unwrap();
        assert_eq!(sealed.nonce.len(), NONCE_LEN);
        assert_eq!(sealed.data_key.master_key_id, *master.id());
        assert_ne!(sealed.ciphertext, b"hunter2");
        let opened = open_value(&master, &sealed, "crm/db-password", 3).unwrap();
        assert_eq!(opened.as_slice(), b"hunter2");
    }

    #[test]
    fn every_version_has_its_own_data_key_and_nonce() {
        let master = master();
        let a = seal_value(&master, "a", 1, b"same").unwrap();
        let b = seal_value(&master, "a", 1, b"same").unwrap();
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.data_key.wrapped, b.data_key.wrapped);
    }

    #[test]
    fn the_wrong_master_key_does_not_open() {
        let sealed = seal_value(&master(), "a", 1, b"v").unwrap();
        assert_eq!(
            open_value(&master(), &sealed, "a", 1).unwrap_err(),
            CryptoError::Unauthentic
        );
    }

    #[test]
    fn a_ciphertext_moved_to_another_name_or_version_does_not_open() {
        let master = master();
        let sealed = seal_value(&master, "crm/db", 2, b"v").unwrap();
        for (name, version) in [("crm/db2", 2), ("crm/db", 1), ("crm/db", 3), ("other", 2)] {
            assert_eq!(
                open_value(&master, &sealed, name, version).unwrap_err(),
                CryptoError::Unauthentic,
                "{name} v{version}"
            );
        }
        // Only the value moved, with the right row's data key: still refused.
        let other = seal_value(&master, "crm/other", 2, b"w").unwrap();
        let spliced = SealedValue {
            data_key: other.data_key.clone(),
            ..sealed.clone()
        };
        assert!(open_value(&master, &spliced, "crm/other", 2).is_err());
    }

    #[test]
    fn tampered_bytes_do_not_open() {
        let master = master();
        let sealed = seal_value(&master, "a", 1, b"value").unwrap();
        let flip = |bytes: &[u8], at: usize| {
            let mut copy = bytes.to_vec();
            copy[at] ^= 1;
            copy
        };
        let cases = [
            SealedValue {
                ciphertext: flip(&sealed.ciphertext, 0),
                ..sealed.clone()
            },
            SealedValue {
                nonce: flip(&sealed.nonce, 5),
                ..sealed.clone()
            },
            SealedValue {
                data_key: WrappedKey {
                    wrapped: flip(&sealed.data_key.wrapped, 7),
                    ..sealed.data_key.clone()
                },
                ..sealed.clone()
            },
            SealedValue {
                data_key: WrappedKey {
                    nonce: flip(&sealed.data_key.nonce, 0),
                    ..sealed.data_key.clone()
                },
                ..sealed.clone()
            },
        ];
        for case in cases {
            assert_eq!(
                open_value(&master, &case, "a", 1).unwrap_err(),
                CryptoError::Unauthentic
            );
        }
        let short = SealedValue {
            nonce: vec![0; 12],
            ..sealed
        };
        assert_eq!(
            open_value(&master, &short, "a", 1).unwrap_err(),
            CryptoError::BadLength {
                what: "a value nonce",
                len: 12,
                expected: NONCE_LEN
            }
        );
    }

    #[test]
    fn rewrapping_moves_a_data_key_to_a_new_master_key() {
        let (old, new) = (master(), master());
        let sealed = seal_value(&old, "a", 4, b"kept").unwrap();
        let rewrapped = rewrap_data_key(&old, &new, &sealed.data_key, "a", 4).unwrap();
        assert_eq!(rewrapped.master_key_id, *new.id());
        let moved = SealedValue {
            data_key: rewrapped,
            ..sealed.clone()
        };
        assert_eq!(
            open_value(&new, &moved, "a", 4).unwrap().as_slice(),
            b"kept"
        );
        assert!(open_value(&old, &moved, "a", 4).is_err());
        assert!(rewrap_data_key(&new, &old, &sealed.data_key, "a", 4).is_err());
    }

    #[test]
    fn the_audit_key_round_trips_and_needs_its_master_key() {
        let (master, other) = (master(), master());
        let audit = SecretKey::random().unwrap();
        let wrapped = wrap_audit_key(&master, &audit).unwrap();
        assert_eq!(
            unwrap_audit_key(&master, &wrapped).unwrap().expose(),
            audit.expose()
        );
        assert!(unwrap_audit_key(&other, &wrapped).is_err());
    }

    #[test]
    fn the_key_check_tells_the_right_key_from_a_wrong_one() {
        let (master, other) = (master(), master());
        let check = key_check(&master).unwrap();
        assert_eq!(check.key_id, *master.id());
        assert!(key_matches(&master, &check));
        assert!(!key_matches(&other, &check));
        // A check whose id was edited to the other key's id still fails.
        let relabelled = KeyCheck {
            key_id: other.id().clone(),
            ..check
        };
        assert!(!key_matches(&other, &relabelled));
    }

    #[test]
    fn key_ids_are_stable_and_distinct() {
        let key = SecretKey::from_bytes(&[7; KEY_LEN]).unwrap();
        let id = MasterKey::new(key.clone()).id().clone();
        assert_eq!(id, MasterKey::new(key).id().clone());
        assert!(
            id.as_str().starts_with("mk-") && id.as_str().len() == 19,
            "{id}"
        );
        assert_ne!(
            id,
            MasterKey::new(SecretKey::from_bytes(&[8; KEY_LEN]).unwrap())
                .id()
                .clone()
        );
        assert!(SecretKey::from_bytes(&[0; 31]).is_err());
    }

    #[test]
    fn debug_output_redacts_keys_and_ciphertexts() {
        let master = MasterKey::new(SecretKey::from_bytes(&[0xAB; KEY_LEN]).unwrap());
        let sealed = seal_value(&master, "a", 1, b"plaintext").unwrap();
        let shown = format!("{master:?} {sealed:?} {:?}", SecretKey::random().unwrap());
        assert!(!shown.contains("171, 171"), "{shown}"); // 0xAB as a byte list
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert!(shown.contains("REDACTED") && shown.contains(master.id().as_str()));
    }
}
