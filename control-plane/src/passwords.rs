//! Users' passwords: argon2id hashes stored as PHC strings, verification in
//! constant time, the length rule, and a dummy hash so that a login for an
//! unknown user name costs as much as one with a wrong password.
//!
//! Hashing is deliberately slow (tens of milliseconds); async callers run it
//! on a blocking thread.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;
use std::sync::LazyLock;

/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted, in bytes (bounds the hashing work).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A password that cannot be used, or a hash that cannot be made. Never
/// contains the password.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error(
        "the password is too short ({chars} characters): use at least {MIN_PASSWORD_CHARS}; a few unrelated words make a good one"
    )]
    TooShort { chars: usize },
    #[error("the password is too long: use at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// The hasher: argon2id with the OWASP-recommended cost (19 MiB, 2 passes,
/// one lane). Verification reads the cost from the stored PHC string, so
/// raising it later keeps old hashes working.
fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// Whether `password` may be set: at least [`MIN_PASSWORD_CHARS`]
/// characters and at most [`MAX_PASSWORD_BYTES`] bytes.
pub fn check_password_rules(password: &str) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort { chars });
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// Checks the rules and hashes `password` with a fresh random salt into a
/// PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    check_password_rules(password)?;
    hash_unchecked(password)
}

fn hash_unchecked(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rand::rng().fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// A hash of a random password nobody knows, made once with the same cost
/// as real hashes: checking a password against it takes as long as against
/// a user's own.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let unguessable = crate::secrets::random_id(32);
    hash_unchecked(&unguessable).unwrap_or_default()
});

/// Whether `password` matches the stored PHC string `stored`; with no
/// stored hash (an unknown user) or an unreadable one, the password is
/// checked against a dummy hash and refused, so every refusal costs the
/// same. The comparison of the derived keys is constant-time.
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        // No stored password is this long; refuse after the same work.
        let _ = verify_against(&DUMMY_HASH, "");
        return false;
    }
    match stored.map(PasswordHash::new) {
        Some(Ok(hash)) => hasher().verify_password(password.as_bytes(), &hash).is_ok(),
        Some(Err(_)) | None => {
            let _ = verify_against(&DUMMY_HASH, password);
            false
        }
    }
}

fn verify_against(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc)
        .is_ok_and(|hash| hasher().verify_password(password.as_bytes(), &hash).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const GOOD: &str = "correct horse battery staple";

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password(GOOD).unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hash.contains(GOOD));
        assert!(verify_password(GOOD, Some(&hash)));
        assert!(!verify_password(
            "correct horse battery stapler",
            Some(&hash)
        ));
        assert!(!verify_password("", Some(&hash)));
    }

    #[test]
    fn each_hash_has_its_own_salt() {
        let a = hash_password(GOOD).unwrap();
        let b = hash_password(GOOD).unwrap();
        assert_ne!(a, b);
        assert!(verify_password(GOOD, Some(&a)) && verify_password(GOOD, Some(&b)));
    }

    #[test]
    fn unknown_users_and_damaged_hashes_are_refused() {
        assert!(!verify_password(GOOD, None));
        assert!(!verify_password(GOOD, Some("not a PHC string")));
        assert!(!verify_password(GOOD, Some("")));
        assert!(!verify_password(&"x".repeat(MAX_PASSWORD_BYTES + 1), None));
    }

    #[test]
    fn an_unknown_user_costs_about_as_much_as_a_wrong_password() {
        let hash = hash_password(GOOD).unwrap();
        LazyLock::force(&DUMMY_HASH);
        let time = |stored: Option<&str>| {
            let start = Instant::now();
            for _ in 0..3 {
                assert!(!verify_password("wrong password!", stored));
            }
            start.elapsed()
        };
        let (known, unknown) = (time(Some(&hash)), time(None));
        let ratio = unknown.as_secs_f64() / known.as_secs_f64();
        // Both run the same argon2id work; a shortcut would be 1000× faster.
        assert!(
            (0.3..3.0).contains(&ratio),
            "unknown user {unknown:?} vs wrong password {known:?}"
        );
    }

    #[test]
    fn length_rules() {
        assert_eq!(
            check_password_rules("short"),
            Err(PasswordError::TooShort { chars: 5 })
        );
        // Characters, not bytes: 11 two-byte characters are still too short.
        assert_eq!(
            check_password_rules(&"é".repeat(11)),
            Err(PasswordError::TooShort { chars: 11 })
        );
        assert_eq!(check_password_rules(&"é".repeat(12)), Ok(()));
        assert_eq!(check_password_rules("exactly12chr"), Ok(()));
        assert_eq!(
            check_password_rules(&"x".repeat(MAX_PASSWORD_BYTES + 1)),
            Err(PasswordError::TooLong)
        );
        assert!(matches!(
            hash_password("too short"),
            Err(PasswordError::TooShort { .. })
        ));
        let message = PasswordError::TooShort { chars: 3 }.to_string();
        assert!(message.contains("at least 12"), "{message}");
    }
}
