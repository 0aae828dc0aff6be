//! Secrets encrypted at rest: envelope encryption of secret values
//! (`envelope`), where the master key comes from (`master_key`), the
//! keyring's decisions (`plan`), the keyring that unseals the store at
//! start, holds the audit log's key and rotates the master key while
//! serving (`keyring`), and the secret API the rest of the control plane
//! uses, `cp.secrets` (`vault`).
//!
//! Only the well-kept `chacha20poly1305` (XChaCha20-Poly1305) and `argon2`
//! (argon2id) crates do cryptography here; this module composes them.

pub mod envelope;
pub mod keyring;
pub mod master_key;
pub mod plan;
pub mod vault;

pub use envelope::KeyId;
pub use keyring::{Keyring, RotateError, Rotated, UnsealError};
pub use master_key::{KeyError, KeySource, KeySourceFlags, SecretText, SourceKind};
pub use plan::{RotationRefused, RotationRequest};
pub use vault::{
    DEFAULT_VERSIONS_KEPT, SecretChanged, SecretError, SecretSet, SecretValue, SecretVault, SetMode,
};
